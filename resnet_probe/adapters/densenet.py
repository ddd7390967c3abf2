"""Adapter for DenseNets: the zoo's CIFAR DenseNets and timm's ``DenseNet`` (densenet121, ...).

Every dense layer is a unit joined by concatenation: ``y = cat([x, H(x)], 1)``. Its shortcut
passes every earlier feature map on unchanged (the identity), its residual branch ``H`` makes
the ``k`` new maps, so a dense block of L layers unravels into every chain of its layers:
2^L paths, C(L, k) through k of them. The transitions between blocks are transitions of the
topology. This module never imports timm itself: a timm model can only exist once timm is
imported.
"""

from __future__ import annotations

import sys
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from resnet_probe.errors import AdapterError
from resnet_probe.models.zoo.densenet import CifarDenseNet, DenseLayer
from resnet_probe.models.zoo.families import DENSENET
from resnet_probe.structure import Fn, Topology, Unit, identity, relu

TIMM_FAMILY = "timm-densenet"
_TIMM_MODULE = "timm.models.densenet"

CONCAT_NOTE = (
    "Dense layers are units joined by concatenation: y = cat([x, H(x)], 1). The shortcut passes every earlier "
    "feature map on unchanged, the residual branch H adds the layer's k new maps; deleting a layer sets those k "
    "maps to zero and keeps the shape (later layers see zeros there). A path-gradient route through a layer's "
    "branch passes its new maps, through its shortcut the maps it passes on."
)
TRANSITION_NOTE = (
    "The transition layers between dense blocks (BN-ReLU-1x1 conv-2x2 avg pool) are transitions: one "
    "non-deletable edge on every path."
)
REORDER_NOTE = "Every layer adds k channels, so no two layers have equal shapes: reordering has nothing to swap."
RESPONSE_NOTE = (
    "Responses: the output of each layer's 3x3 conv, the k new maps as they are concatenated. No BN follows that "
    "conv inside the layer (DenseNet is pre-activation: each later layer normalises the maps with its own first "
    "BN), so the raw conv output is taken."
)
DROP_NOTE = "Dropout after each dense layer is part of its residual branch (the identity in eval mode)."


def matches(model: nn.Module) -> bool:
    """Whether ``model`` is a zoo CIFAR DenseNet or a timm ``DenseNet``; never imports timm."""
    if isinstance(model, CifarDenseNet):
        return True
    densenet = sys.modules.get(_TIMM_MODULE)
    return densenet is not None and isinstance(model, densenet.DenseNet)


def build(model: nn.Module) -> Topology:
    """The topology of a DenseNet: stem, dense layers (with transitions before blocks 2..), head."""
    if isinstance(model, CifarDenseNet):
        return _build_zoo(model)
    densenet = sys.modules.get(_TIMM_MODULE)
    if densenet is not None and isinstance(model, densenet.DenseNet):
        return _build_timm(model, densenet)
    raise AdapterError(f"not a DenseNet: {type(model).__name__}")


def _dense_unit(
    index: int, name: str, stage: int, layer: nn.Module, in_channels: int, residual: Fn, conv: nn.Conv2d
) -> Unit:
    """A dense layer as a concatenating unit; ``conv`` is its 3x3 conv, whose output is the new maps."""
    growth = int(conv.out_channels)
    return Unit(
        index=index,
        name=name,
        stage=stage,
        in_channels=in_channels,
        out_channels=in_channels + growth,
        stride=1,
        # The channel count grows by concatenation, the representation is not resampled.
        downsampling=False,
        shortcut_kind="identity",
        shortcut=identity,
        residual=residual,
        post=identity,
        module=layer,
        responses=((f"{name}.{_conv_name(layer, conv)}", conv),),
        join="concat",
        residual_channels=growth,
    )


def _conv_name(layer: nn.Module, conv: nn.Module) -> str:
    return next(n for n, m in layer.named_children() if m is conv)


def _build_zoo(model: CifarDenseNet) -> Topology:
    units: list[Unit] = []
    transitions: dict[int, Fn] = {}
    for b, block in enumerate(model.blocks):
        if b > 0:
            transitions[len(units)] = model.transitions[b - 1]
        for i, layer in enumerate(block.children()):
            if not isinstance(layer, DenseLayer):
                raise AdapterError(f"blocks.{b}.{i} is a {type(layer).__name__}, expected a DenseLayer")
            units.append(_dense_unit(
                len(units), f"blocks.{b}.{i}", b + 1, layer, layer.in_channels, layer.branch, layer.response_conv
            ))

    def head(x: Tensor) -> Tensor:
        return model.classifier(torch.flatten(F.adaptive_avg_pool2d(relu(model.norm(x)), 1), 1))

    return Topology(
        DENSENET, model.stem, tuple(units), head, model, transitions=transitions,
        notes=(CONCAT_NOTE, TRANSITION_NOTE, REORDER_NOTE, RESPONSE_NOTE),
        stem_responses=(("stem", model.stem),),
    )


def _build_timm(model: Any, densenet: Any) -> Topology:
    """timm's ``features``: stem modules, ``denseblockN`` / ``transitionN``, then ``norm5``; the head after."""
    stem: list[nn.Module] = []
    units: list[Unit] = []
    transitions: dict[int, Fn] = {}
    after: list[nn.Module] = []
    pending: nn.Module | None = None
    stage = 0
    for child_name, child in model.features.named_children():
        if type(child) is densenet.DenseBlock:
            stage += 1
            if pending is not None:
                transitions[len(units)] = pending
                pending = None
            for layer_name, layer in child.items():
                # Exact type: a subclass may override forward, which these callables re-trace.
                if type(layer) is not densenet.DenseLayer:
                    raise AdapterError(f"features.{child_name}.{layer_name} is a {type(layer).__name__}")
                name = f"features.{child_name}.{layer_name}"
                units.append(_dense_unit(
                    len(units), name, stage, layer, int(layer.norm1.num_features), _timm_residual(layer), layer.conv2
                ))
        elif type(child) is densenet.DenseTransition:
            pending = child
        elif units:
            after.append(child)
        else:
            stem.append(child)
    if not units or pending is not None:
        raise AdapterError("this timm DenseNet does not end with a dense block and its norm (pruned?)")

    def run_stem(x: Tensor) -> Tensor:
        for m in stem:
            x = m(x)
        return x

    def head(x: Tensor) -> Tensor:
        for m in after:
            x = m(x)
        return model.forward_head(x)

    notes = [CONCAT_NOTE, TRANSITION_NOTE, REORDER_NOTE, RESPONSE_NOTE]
    if any(getattr(u.module, "drop_rate", 0.0) > 0 for u in units):
        notes.append(DROP_NOTE)
    return Topology(TIMM_FAMILY, run_stem, tuple(units), head, model, transitions=transitions, notes=tuple(notes))


def _timm_residual(layer: Any) -> Fn:
    """timm's ``DenseLayer.forward`` on the concatenated input: norm1 conv1 norm2 conv2, dropout."""

    def residual(x: Tensor) -> Tensor:
        new = layer.conv2(layer.norm2(layer.conv1(layer.norm1(x))))
        if layer.drop_rate > 0:
            new = F.dropout(new, p=layer.drop_rate, training=layer.training)
        return new

    return residual
