"""Every zoo network with its family, unit and parameter counts (10 classes; tests build each and check).

Torch-free: each builder imports its architecture module when called. Beyond He et al. 2015's
nets: the Identity-Mappings variants and bottleneck nets (He et al. 2016), DenseNets (Huang et
al. 2017, Table 2) and VoVNets (sizes in :mod:`resnet_probe.models.zoo.vovnet`).
"""

from __future__ import annotations

from functools import partial
from typing import Any

from resnet_probe.models.registry import register_model
from resnet_probe.models.zoo.families import (
    BOTTLENECK,
    DENSENET,
    PLAIN,
    PREACT,
    PREACT_BOTTLENECK,
    RESNET,
    VARIANT,
    VOVNET,
)

DEPTH_N = {20: 3, 32: 5, 44: 7, 56: 9, 110: 18, 1202: 200}
OPTION_TEXT = {
    "A": "option-A shortcuts",
    "B": "option-B projection shortcuts",
    "C": "option-C projection in every unit",
}
# (depth, option) -> parameters with 10 classes; option None is the plain twin.
PARAMS: dict[tuple[int, str | None], int] = {
    (20, "A"): 269_722, (32, "A"): 464_154, (44, "A"): 658_586, (56, "A"): 853_018,
    (110, "A"): 1_727_962, (1202, "A"): 19_421_274,
    (20, "B"): 272_474, (32, "B"): 466_906, (44, "B"): 661_338, (56, "B"): 855_770,
    (110, "B"): 1_730_714, (1202, "B"): 19_424_026,
    (20, "C"): 283_962, (32, "C"): 489_594, (44, "C"): 695_226, (56, "C"): 900_858,
    (110, "C"): 1_826_202, (1202, "C"): 20_538_714,
    (20, None): 269_722, (32, None): 464_154, (44, None): 658_586, (56, None): 853_018, (110, None): 1_727_962,
}  # fmt: skip
PREACT_PARAMS = {
    20: 272_282, 32: 466_714, 44: 661_146, 56: 855_578, 110: 1_730_522, 1202: 19_423_834,
}  # fmt: skip


def cifar_resnet(n: int, option: str | None, num_classes: int = 10) -> Any:
    """A 6n+2-layer CIFAR ResNet with shortcut option A/B/C, or its plain twin (option None)."""
    from resnet_probe.models.zoo.cifar import CifarResNet

    return CifarResNet(n, num_classes, option)


def preact_cifar_resnet(n: int, num_classes: int = 10) -> Any:
    """A 6n+2-layer pre-activation CIFAR ResNet (He et al. 2016)."""
    from resnet_probe.models.zoo.cifar import PreActCifarResNet

    return PreActCifarResNet(n, num_classes)


def _register_cifar() -> None:
    # He et al. 2015 Table 6: option A (zero-pad), B (projection where shapes change), C (everywhere).
    for option, suffix in (("A", ""), ("B", "_b"), ("C", "_c")):
        for depth, n in DEPTH_N.items():
            register_model(
                RESNET, units=3 * n, params=PARAMS[depth, option], name=f"resnet{depth}{suffix}",
                description=f"ResNet-{depth} (n={n}), {OPTION_TEXT[option]}",
            )(partial(cifar_resnet, n, option))
    # He et al. 2015 Fig. 6: the same layers without any shortcut.
    for depth, n in DEPTH_N.items():
        if (depth, None) in PARAMS:
            register_model(
                PLAIN, units=3 * n, params=PARAMS[depth, None], name=f"plain{depth}",
                description=f"Plain-{depth}: ResNet-{depth} without shortcuts",
            )(partial(cifar_resnet, n, None))
    # He et al. 2016, "Identity Mappings in Deep Residual Networks".
    for depth, params in PREACT_PARAMS.items():
        n = DEPTH_N[depth]
        register_model(
            PREACT, units=3 * n, params=params, name=f"preact_resnet{depth}",
            description=f"Pre-activation ResNet-{depth} (n={n}), He et al. 2016",
        )(partial(preact_cifar_resnet, n))


# He et al. 2016 Fig. 2 and 4: the variants of the unit; "original" is resnet{depth}_b (option B,
# which is what every variant does at a downsampling unit) and full pre-activation preact_resnet{depth}.
VARIANTS: dict[str, str] = {
    "const_scaling": "shortcut and branch scaled by 0.5 (Fig. 2b)",
    "exclusive_gating": "1-g(x) on the shortcut, g(x) on the branch, gate bias -6 (Fig. 2c)",
    "shortcut_gating": "1-g(x) on the shortcut only, gate bias -6 (Fig. 2d)",
    "conv_shortcut": "1x1 conv + BN on every shortcut (Fig. 2e)",
    "dropout_shortcut": "dropout 0.5 on the shortcut (Fig. 2f)",
    "bn_after_add": "BN after the addition (Fig. 4b)",
    "relu_before_add": "ReLU before the addition (Fig. 4c)",
    "relu_preact": "ReLU-only pre-activation (Fig. 4d)",
}
STAGE_PLANES = (16, 32, 64)


def _unit_shapes(n: int) -> list[tuple[int, int]]:
    """``(in, out)`` channels of the 3n basic units, in order."""
    shapes, cin = [], STAGE_PLANES[0]
    for c in STAGE_PLANES:
        for _ in range(n):
            shapes.append((cin, c))
            cin = c
    return shapes


def variant_params(depth: int, variant: str) -> int:
    """Parameters of ``resnet{depth}_{variant}``: option B's, plus what the variant adds per unit."""
    extra = 0
    for cin, c in _unit_shapes(DEPTH_N[depth]):
        if variant == "conv_shortcut" and cin == c:
            extra += c * c + 2 * c  # a 1x1 conv + BN where the others keep the identity
        elif variant in ("exclusive_gating", "shortcut_gating"):
            extra += cin * c + c  # the gate: a 1x1 conv with bias
        elif variant == "bn_after_add":
            extra += 2 * c
    return PARAMS[depth, "B"] + extra


# Huang et al. 2017, Table 2: name -> (depth, growth rate, DenseNet-BC, parameters here; Table 2 in the docstring).
DENSENETS: dict[str, tuple[int, int, bool, int]] = {
    "densenet40_k12": (40, 12, False, 1_019_722),  # 1.0M
    "densenet100_k12": (100, 12, False, 6_979_642),  # 7.0M
    "densenet_bc100_k12": (100, 12, True, 769_162),  # 0.8M
    "densenet_bc250_k24": (250, 24, True, 15_324_406),  # 15.3M
    "densenet_bc190_k40": (190, 40, True, 25_624_430),  # 25.6M
}
VOVNETS: dict[str, tuple[str, int]] = {
    "vovnet_cifar": ("VoVNetV1 for CIFAR: 6 OSA modules of 4 3x3 convs", 767_274),
    "vovnet_ese_cifar": ("VoVNetV2 for CIFAR: eSE and identity residual in the OSA modules", 827_242),
}
# He et al. 2016, Table 4: name -> (family, depth, parameters; 1.7M, 1.7M, 10.2M in the paper).
BOTTLENECKS: dict[str, tuple[str, int, int]] = {
    "resnet164": (BOTTLENECK, 164, 1_704_154),
    "preact_resnet164": (PREACT_BOTTLENECK, 164, 1_704_154),
    "preact_resnet1001": (PREACT_BOTTLENECK, 1001, 10_328_602),
}


def im_variant(depth: int, variant: str, num_classes: int = 10) -> Any:
    """A 6n+2-layer CIFAR ResNet whose units are one of He et al. 2016's variants."""
    from resnet_probe.models.zoo.identity_mappings import variant_resnet

    return variant_resnet(depth, variant, num_classes)


def zoo_builder(module: str, name: str, num_classes: int = 10) -> Any:
    """``resnet_probe.models.zoo.<module>.<name>(num_classes)``, imported when called."""
    import importlib

    return getattr(importlib.import_module(f"resnet_probe.models.zoo.{module}"), name)(num_classes=num_classes)


def _register_more() -> None:
    for variant, text in VARIANTS.items():
        for depth, n in DEPTH_N.items():
            register_model(
                VARIANT, units=3 * n, params=variant_params(depth, variant), name=f"resnet{depth}_{variant}",
                description=f"ResNet-{depth} (n={n}), {text}, He et al. 2016",
            )(partial(im_variant, depth, variant))
    for name, (family, depth, params) in BOTTLENECKS.items():
        kind = "pre-activation" if family == PREACT_BOTTLENECK else "original (post-activation)"
        register_model(
            family, units=3 * ((depth - 2) // 9), params=params, name=name,
            description=f"Bottleneck ResNet-{depth}, {kind}, He et al. 2016 Table 4",
        )(partial(zoo_builder, "identity_mappings", name))
    for name, (depth, k, bc, params) in DENSENETS.items():
        per_block = (depth - 4) // (6 if bc else 3)
        register_model(
            DENSENET, units=3 * per_block, params=params, name=name,
            description=f"DenseNet{'-BC' if bc else ''} (L={depth}, k={k}), Huang et al. 2017",
        )(partial(zoo_builder, "densenet", name))
    for name, (text, params) in VOVNETS.items():
        register_model(VOVNET, units=6, params=params, name=name, description=text)(
            partial(zoo_builder, "vovnet", name)
        )


_register_cifar()
_register_more()
