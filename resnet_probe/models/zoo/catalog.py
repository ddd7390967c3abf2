"""Every zoo network with its family, unit and parameter counts (10 classes; tests build each and check).

Torch-free: each builder imports its architecture module when called.
"""

from __future__ import annotations

from functools import partial
from typing import Any

from resnet_probe.models.registry import register_model
from resnet_probe.models.zoo.families import PLAIN, PREACT, RESNET

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
PREACT_PARAMS = {20: 272_282, 56: 855_578, 110: 1_730_522}


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


_register_cifar()
