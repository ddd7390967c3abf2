"""Adapter for the zoo's He et al. 2016 nets: the unit variants and the bottleneck ResNets.

A variant's unit is read as a sum of two terms that carry their own scale or gate:
``shortcut(x) = g_s(x) * s(x)`` and ``residual(x) = g_b(x) * F(x)``, with the variant's
post-addition step (ReLU, BN + ReLU, nothing) as ``post``. Deleting a unit then removes the
scaled or gated branch and keeps the scaled or gated shortcut, and a path-gradient route
takes one whole term (gate included). The callables are written out over the block's
submodules so the executor can run the two terms apart.
"""

from __future__ import annotations

from typing import TypeVar

import torch
from torch import Tensor, nn

from resnet_probe.errors import AdapterError
from resnet_probe.models.zoo.families import BOTTLENECK, PREACT_BOTTLENECK, VARIANT
from resnet_probe.models.zoo.identity_mappings import (
    CONST_SCALE,
    BottleneckBlock,
    CifarBottleneckResNet,
    CifarVariantResNet,
    VariantBlock,
)
from resnet_probe.structure import Fn, Topology, Unit, identity, relu

PROJECTION_NOTE = (
    "Downsampling units project their shortcut with a 1x1 stride-2 conv + BN (option B); the variant's "
    "scale, gate or dropout applies to the projected shortcut as well."
)
MERGE_NOTES: dict[str, str] = {
    "original": "Original units (Fig. 2a): y = relu(shortcut(x) + F(x)).",
    "const_scaling": (
        "Constant scaling (Fig. 2b): y = relu(0.5 shortcut(x) + 0.5 F(x)), read as the sum of the terms "
        "0.5 shortcut(x) and 0.5 F(x); deleting a unit keeps relu(0.5 shortcut(x)), so the signal halves "
        "at every deleted unit."
    ),
    "exclusive_gating": (
        "Exclusive gating (Fig. 2c): y = relu((1 - g(x)) shortcut(x) + g(x) F(x)), g = sigmoid(1x1 conv(x)). "
        "Each gate belongs to the term it scales: deleting a unit keeps relu((1 - g(x)) shortcut(x)), and a "
        "path-gradient route passes the whole gated term, the gate's own gradient included."
    ),
    "shortcut_gating": (
        "Shortcut-only gating (Fig. 2d): y = relu((1 - g(x)) shortcut(x) + F(x)), g = sigmoid(1x1 conv(x)); "
        "the gate belongs to the shortcut term: deleting a unit keeps relu((1 - g(x)) shortcut(x))."
    ),
    "conv_shortcut": (
        "1x1 conv shortcuts (Fig. 2e): every shortcut is a 1x1 conv + BN projection; deleting a unit keeps "
        "relu(projection(x))."
    ),
    "dropout_shortcut": (
        "Dropout shortcuts (Fig. 2f): the shortcut is dropout(x, 0.5), the identity in eval mode, where every "
        "analysis runs: these units then compute relu(x + F(x)), but the BNs after them keep statistics "
        "gathered with the dropped, x2-scaled shortcut, so eval mode sees a variance shift that training "
        "never saw (accuracies here can sit far below the same weights' with dropout on)."
    ),
    "bn_after_add": (
        "BN after addition (Fig. 4b): y = relu(BN(shortcut(x) + F(x))); the BN belongs to the merge, so "
        "deleting a unit gives relu(BN(shortcut(x)))."
    ),
    "relu_before_add": (
        "ReLU before addition (Fig. 4c): y = shortcut(x) + relu(F(x)); the ReLU is part of the residual "
        "branch and nothing follows the addition, so deleting a unit keeps its shortcut alone."
    ),
    "relu_preact": (
        "ReLU-only pre-activation (Fig. 4d): y = shortcut(x) + F(relu(x)); nothing follows the addition. "
        "The stem ends with BN (no ReLU) and the head starts with the last ReLU."
    ),
    "full_preact": (
        "Full pre-activation (Fig. 4e): y = shortcut(x) + F(x), F starting with BN-ReLU; nothing follows "
        "the addition."
    ),
}
B = TypeVar("B", VariantBlock, BottleneckBlock)
POST_RESPONSE_NOTE = "Responses: the BN output of each 3x3 conv (bn1, bn2), before the ReLU or the addition."
PREACT_RESPONSE_NOTE = (
    "Responses (full pre-activation): the raw 3x3 conv outputs (conv1, conv2), as for preact_resnet*: "
    "each BN comes before a conv here, so conv2's output is what the unit adds to its shortcut."
)
BOTTLENECK_PROJECTION_NOTE = (
    "Projection shortcuts (1x1 conv + BN) where the shape changes: the first unit (16 -> 64 channels, stride 1) "
    "and the two downsampling units; the pre-activation ones read relu(bn1(x))."
)
BOTTLENECK_NOTES = {
    False: "Bottleneck units (1x1-3x3-1x1, Table 4): y = relu(shortcut(x) + F(x)); responses: the BN after "
           "the 3x3 conv (bn2), before its ReLU.",
    True: "Pre-activation bottleneck units (1x1-3x3-1x1, Table 4): y = shortcut(x) + F(x), nothing after the "
          "addition; responses: the BN right after the 3x3 conv (bn3), before its ReLU.",
}


def matches(model: nn.Module) -> bool:
    """Whether ``model`` is a zoo variant or bottleneck ResNet."""
    return isinstance(model, (CifarVariantResNet, CifarBottleneckResNet))


def build(model: nn.Module) -> Topology:
    """The topology of a variant or bottleneck CIFAR ResNet."""
    if isinstance(model, CifarVariantResNet):
        return _build_variant(model)
    if isinstance(model, CifarBottleneckResNet):
        return _build_bottleneck(model)
    raise AdapterError(f"not a zoo variant or bottleneck ResNet: {type(model).__name__}")


def _blocks(model: nn.Module, kind: type[B]) -> list[tuple[str, int, B]]:
    """``(name, stage, block)`` for every unit in network order."""
    out: list[tuple[str, int, B]] = []
    for s in (1, 2, 3):
        for i, block in enumerate(getattr(model, f"layer{s}")):
            if not isinstance(block, kind):
                raise AdapterError(f"layer{s}.{i} is a {type(block).__name__}, expected a {kind.__name__}")
            out.append((f"layer{s}.{i}", s, block))
    return out


def _build_variant(model: CifarVariantResNet) -> Topology:
    """He et al. 2016 Fig. 2 / Fig. 4 units: scaled, gated, projected, dropped or re-ordered activations."""
    units = tuple(
        _variant_unit(index, name, stage, block)
        for index, (name, stage, block) in enumerate(_blocks(model, VariantBlock))
    )
    preact = model.variant == "full_preact"
    stem_responses = (("conv1", model.conv1),) if model.bn1 is None else (("bn1", model.bn1),)
    notes = (MERGE_NOTES[model.variant], PROJECTION_NOTE, PREACT_RESPONSE_NOTE if preact else POST_RESPONSE_NOTE)
    return Topology(VARIANT, model.stem, units, model.head, model, notes=notes, stem_responses=stem_responses)


def _variant_unit(index: int, name: str, stage: int, block: VariantBlock) -> Unit:
    """One variant unit: the scale or gate goes with the term it multiplies."""
    v = block.variant

    def gate(x: Tensor) -> Tensor:
        assert block.gate is not None
        return torch.sigmoid(block.gate(x))

    def shortcut(x: Tensor) -> Tensor:
        a = block.shortcut(x)
        if v == "const_scaling":
            return CONST_SCALE * a
        if block.gate is not None:
            return (1.0 - gate(x)) * a
        return a

    def residual(x: Tensor) -> Tensor:
        b = block.branch(x)
        if v == "const_scaling":
            return CONST_SCALE * b
        if v == "exclusive_gating":
            return gate(x) * b
        return b

    post: Fn
    if v == "bn_after_add":
        bn_add = block.bn_add
        assert bn_add is not None

        def post(z: Tensor) -> Tensor:
            return relu(bn_add(z))

    elif v in ("relu_before_add", "relu_preact", "full_preact"):
        post = identity
    else:
        post = relu
    responses: tuple[tuple[str, nn.Module], ...]
    if v == "full_preact":
        responses = ((f"{name}.conv1", block.conv1), (f"{name}.conv2", block.conv2))
    else:
        responses = ((f"{name}.bn1", block.bn1), (f"{name}.bn2", block.bn2))
    return Unit(
        index=index,
        name=name,
        stage=stage,
        in_channels=block.in_planes,
        out_channels=block.planes,
        stride=block.stride,
        downsampling=block.stride != 1 or block.in_planes != block.planes,
        shortcut_kind=_variant_kind(block),
        shortcut=shortcut,
        residual=residual,
        post=post,
        module=block,
        responses=responses,
    )


def _variant_kind(block: VariantBlock) -> str:
    """A projection where there is one, else what the variant does to the identity."""
    if block.projection is not None:
        return "projection"
    if block.variant == "const_scaling":
        return "scaled"
    if block.gate is not None:
        return "gated"
    if block.drop is not None:
        return "dropout"
    return "identity"


def _build_bottleneck(model: CifarBottleneckResNet) -> Topology:
    """Table 4's bottleneck ResNets, post- or full pre-activation."""
    units = tuple(
        _bottleneck_unit(index, name, stage, block)
        for index, (name, stage, block) in enumerate(_blocks(model, BottleneckBlock))
    )
    stem_responses = (("conv1", model.conv1),) if model.bn1 is None else (("bn1", model.bn1),)
    family = PREACT_BOTTLENECK if model.preact else BOTTLENECK
    notes = (BOTTLENECK_NOTES[model.preact], BOTTLENECK_PROJECTION_NOTE)
    return Topology(family, model.stem, units, model.head, model, notes=notes, stem_responses=stem_responses)


def _bottleneck_unit(index: int, name: str, stage: int, block: BottleneckBlock) -> Unit:
    """One bottleneck unit; the pre-activation projection reads relu(bn1(x)) (block.shortcut does)."""
    bn = block.bn3 if block.preact else block.bn2
    return Unit(
        index=index,
        name=name,
        stage=stage,
        in_channels=block.in_planes,
        out_channels=block.out_planes,
        stride=block.stride,
        downsampling=block.stride != 1 or block.in_planes != block.out_planes,
        shortcut_kind="identity" if block.projection is None else "projection",
        shortcut=block.shortcut,
        residual=block.branch,
        post=identity if block.preact else relu,
        module=block,
        responses=((f"{name}.{'bn3' if block.preact else 'bn2'}", bn),),
    )
