"""Adapter for timm's ``timm.models.convnext.ConvNeXt`` (convnext_*, convnextv2_*).

A ConvNeXt block is ``x + drop_path(gamma * mlp(norm(conv_dw(x))))``: a pre-norm unit with an
identity shortcut and nothing after the addition. The downsample layer (norm + strided conv)
that opens stages 2-4 is not residual: it becomes a transition, one non-deletable edge before
the stage's first unit. The callables re-trace timm's ``ConvNeXtBlock.forward`` over the
block's own submodules. This module never imports timm itself.
"""

from __future__ import annotations

import sys
from typing import Any

from torch import Tensor, nn

from resnet_probe.errors import AdapterError
from resnet_probe.structure import Fn, Topology, Unit, identity

FAMILY = "convnext"
_MODULE = "timm.models.convnext"

PRENORM_NOTE = (
    "Pre-norm units: y = x + residual(x), residual = depthwise 7x7 conv, norm, MLP; nothing follows the "
    "addition, so deleting a unit is the identity."
)
TRANSITION_NOTE = (
    "The downsample layers (norm + strided 2x2 conv) that open stages 2-4 are transitions: one "
    "non-deletable edge before the stage's first unit, on every path."
)
LAYER_SCALE_NOTE = "Layer scale (the learned per-channel gamma) multiplies the residual branch and is part of it."
RESPONSE_NOTE = "The responses are the outputs of the norm after each depthwise conv (block.norm)."
CHANNELS_LAST_NOTE = (
    "These blocks run their norm and MLP channels-last, so the responses are (batch, H, W, channels) tensors."
)
GRN_NOTE = "The MLP holds Global Response Normalisation (ConvNeXt-V2); it is part of the residual branch."
PROJECTION_NOTE = (
    "Some units change shape inside the block: their shortcut (avg-pool / 1x1 conv) counts as a projection."
)
HEAD_NOTE = "The head holds everything after the last unit: norm_pre, pooling, the head's norm and the classifier."
DROP_NOTE = "DropPath is part of the residual branch (identity in eval mode)."


def matches(model: nn.Module) -> bool:
    """Whether ``model`` is a timm ``ConvNeXt`` of ConvNeXtBlocks; never imports timm."""
    convnext = sys.modules.get(_MODULE)
    if convnext is None or not isinstance(model, convnext.ConvNeXt):
        return False
    return all(type(b) is convnext.ConvNeXtBlock for stage in model.stages for b in stage.blocks)


def build(model: nn.Module) -> Topology:
    """The topology of a timm ``ConvNeXt``: stem, transitions, units, head."""
    convnext = sys.modules.get(_MODULE)
    if convnext is None or not isinstance(model, convnext.ConvNeXt):
        raise AdapterError(f"not a timm ConvNeXt: {type(model).__name__}")
    units: list[Unit] = []
    transitions: dict[int, Fn] = {}
    pending: list[nn.Module] = []
    for s, stage in enumerate(model.stages):
        if not isinstance(stage.downsample, nn.Identity):
            pending.append(stage.downsample)
        for i, block in enumerate(stage.blocks):
            name = f"stages.{s}.blocks.{i}"
            # Exact type: a subclass may override forward, which these callables re-trace.
            if type(block) is not convnext.ConvNeXtBlock:
                raise AdapterError(
                    f"{name} is a {type(block).__name__}; the ConvNeXt adapter understands ConvNeXtBlock only"
                )
            if pending:
                transitions[len(units)] = _chain(pending)
                pending = []
            units.append(_unit(len(units), name, s + 1, block))
    if not units:
        raise AdapterError("this timm ConvNeXt has no residual units (pruned?)")
    tail = _chain(pending + [model.norm_pre])  # downsample layers of trailing empty stages

    def head(x: Tensor) -> Tensor:
        return model.forward_head(tail(x))

    return Topology(FAMILY, model.stem, tuple(units), head, model, transitions, _notes(model, units))


def _chain(layers: list[nn.Module]) -> Fn:
    """The layers one after the other, as one function."""
    if len(layers) == 1:
        return layers[0]

    def run(x: Tensor) -> Tensor:
        for layer in layers:
            x = layer(x)
        return x

    return run


def _unit(index: int, name: str, stage: int, block: Any) -> Unit:
    """One ConvNeXtBlock: conv_dw, norm, mlp (channels-last unless conv_mlp), gamma, drop_path."""
    gamma_shape = (1, -1, 1, 1)

    def residual(x: Tensor) -> Tensor:
        h = block.conv_dw(x)
        if block.use_conv_mlp:
            h = block.mlp(block.norm(h))
        else:
            h = block.mlp(block.norm(h.permute(0, 2, 3, 1))).permute(0, 3, 1, 2)
        if block.gamma is not None:
            h = h.mul(block.gamma.reshape(gamma_shape))
        return block.drop_path(h)

    if isinstance(block.shortcut, nn.Identity):
        kind, shortcut = "identity", identity
    else:
        kind, shortcut = "projection", block.shortcut
    conv = block.conv_dw
    stride = int(conv.stride[0])
    return Unit(
        index=index,
        name=name,
        stage=stage,
        in_channels=int(conv.in_channels),
        out_channels=int(conv.out_channels),
        stride=stride,
        downsampling=stride != 1 or conv.in_channels != conv.out_channels,
        shortcut_kind=kind,
        shortcut=shortcut,
        residual=residual,
        post=identity,
        module=block,
        responses=((f"{name}.norm", block.norm),),
        responses_channels_last=not block.use_conv_mlp,  # timm permutes to NHWC around a plain LayerNorm
    )


def _notes(model: Any, units: list[Unit]) -> tuple[str, ...]:
    """One sentence per family specific that this model has."""
    blocks: list[Any] = [u.module for u in units]
    notes = [PRENORM_NOTE]
    if any(not isinstance(stage.downsample, nn.Identity) for stage in model.stages):
        notes.append(TRANSITION_NOTE)
    if any(b.gamma is not None for b in blocks):
        notes.append(LAYER_SCALE_NOTE)
    notes.append(RESPONSE_NOTE)
    if any(not b.use_conv_mlp for b in blocks):
        notes.append(CHANNELS_LAST_NOTE)
    if any(type(b.mlp).__name__ == "GlobalResponseNormMlp" for b in blocks):
        notes.append(GRN_NOTE)
    if any(u.shortcut_kind == "projection" for u in units):
        notes.append(PROJECTION_NOTE)
    notes.append(HEAD_NOTE)
    if any(not isinstance(b.drop_path, nn.Identity) for b in blocks):
        notes.append(DROP_NOTE)
    return tuple(notes)
