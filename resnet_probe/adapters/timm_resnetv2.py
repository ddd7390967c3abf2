"""Adapter for timm's ``timm.models.resnetv2.ResNetV2`` (resnetv2_*, BiT): pre-activation ResNets.

A pre-activation unit (He et al. 2016) computes ``x_pre = norm1(x)`` (a norm-act layer), runs
the residual branch on ``x_pre`` and adds ``x`` itself, or at a projection unit
``downsample(x_pre)``; nothing follows the addition. The callables re-trace timm's
``PreActBottleneck.forward`` / ``PreActBasic.forward`` (and the post-activation
``Bottleneck`` that ``preact=False`` builds) over the block's own submodules. This module
never imports timm itself: a timm model can only exist once timm is imported.
"""

from __future__ import annotations

import sys
from typing import Any

from torch import Tensor, nn

from resnet_probe.adapters.timm_resnet import out_of_place
from resnet_probe.errors import AdapterError
from resnet_probe.structure import Fn, Topology, Unit, identity

FAMILY = "timm-resnetv2"
_MODULE = "timm.models.resnetv2"

PREACT_NOTE = (
    "Pre-activation units (He et al. 2016): y = shortcut(x) + residual(x) with nothing after the "
    "addition; each residual branch starts with a norm-act layer (norm1)."
)
PREACT_PROJECTION_NOTE = (
    "Projection shortcuts (1x1 conv) at the first unit of a stage read the pre-activated input "
    "norm1(x), so deleting such a unit keeps norm1 and the projection; elsewhere the shortcut is the "
    "identity and deleting a unit is the identity."
)
AVG_DOWN_NOTE = "ResNet-D shortcuts (2x2 avg-pool + 1x1 conv) are counted as projections."
HEAD_NORM_NOTE = "The final norm-act layer after the last unit belongs to the head (pre-activation nets end with it)."
STD_CONV_NOTE = "Convolutions are weight-standardised (StdConv2d, as in BiT): the conv normalises its own weights."
BOTTLENECK_NOTE = "Bottleneck units: the responses are the outputs of the 3x3 conv (conv2), which carries the stride."
BASIC_NOTE = "Basic units: the responses are the outputs of both 3x3 convs (conv1, conv2); conv1 carries the stride."
POST_NOTE = (
    "Post-activation bottleneck units (preact=False, as in ViT hybrids): y = act3(shortcut(x) + residual(x)); "
    "the responses are the outputs of the 3x3 conv's norm (norm2)."
)
DROP_NOTE = "DropPath is part of the residual branch (identity in eval mode)."


def matches(model: nn.Module) -> bool:
    """Whether ``model`` is a timm ``ResNetV2`` of the blocks the adapter reads; never imports timm."""
    resnetv2 = sys.modules.get(_MODULE)
    if resnetv2 is None or not isinstance(model, resnetv2.ResNetV2):
        return False
    known = (resnetv2.PreActBottleneck, resnetv2.PreActBasic, resnetv2.Bottleneck)
    return all(type(b) in known for stage in model.stages for b in stage.blocks)


def build(model: nn.Module) -> Topology:
    """The topology of a timm ``ResNetV2``."""
    resnetv2 = sys.modules.get(_MODULE)
    if resnetv2 is None or not isinstance(model, resnetv2.ResNetV2):
        raise AdapterError(f"not a timm ResNetV2: {type(model).__name__}")
    units: list[Unit] = []
    for s, stage in enumerate(model.stages):
        for i, block in enumerate(stage.blocks):
            name = f"stages.{s}.blocks.{i}"
            # Exact types: a subclass may override forward, which these callables re-trace.
            if type(block) is resnetv2.PreActBottleneck:
                units.append(_preact_bottleneck(len(units), name, s + 1, block))
            elif type(block) is resnetv2.PreActBasic:
                units.append(_preact_basic(len(units), name, s + 1, block))
            elif type(block) is resnetv2.Bottleneck:
                units.append(_post_bottleneck(len(units), name, s + 1, block))
            else:
                raise AdapterError(
                    f"{name} is a {type(block).__name__}; the timm ResNetV2 adapter understands "
                    "PreActBottleneck, PreActBasic and Bottleneck only"
                )
    if not units:
        raise AdapterError("this timm ResNetV2 has no residual units (pruned?)")

    def head(x: Tensor) -> Tensor:
        return model.forward_head(model.norm(x))

    return Topology(FAMILY, model.stem, tuple(units), head, model, notes=_notes(model, units))


def _preact_shortcut(block: Any) -> tuple[str, Fn]:
    """Identity, or the projection of the pre-activated input."""
    if block.downsample is None:
        return "identity", identity
    norm1, downsample = block.norm1, block.downsample

    def shortcut(x: Tensor) -> Tensor:
        return downsample(norm1(x))

    return "projection", shortcut


def _preact_bottleneck(index: int, name: str, stage: int, block: Any) -> Unit:
    """PreActBottleneck: norm1 conv1 norm2 conv2 norm3 conv3 drop_path; shortcut on norm1(x)."""

    def residual(x: Tensor) -> Tensor:
        h = block.conv1(block.norm1(x))
        h = block.conv2(block.norm2(h))
        return block.drop_path(block.conv3(block.norm3(h)))

    kind, shortcut = _preact_shortcut(block)
    return _unit(
        index, name, stage, block, kind, shortcut, residual, identity,
        block.conv1.in_channels, block.conv3.out_channels, block.conv2.stride,
        ((f"{name}.conv2", block.conv2),),
    )


def _preact_basic(index: int, name: str, stage: int, block: Any) -> Unit:
    """PreActBasic: norm1 conv1 norm2 conv2 drop_path; shortcut on norm1(x)."""

    def residual(x: Tensor) -> Tensor:
        h = block.conv1(block.norm1(x))
        return block.drop_path(block.conv2(block.norm2(h)))

    kind, shortcut = _preact_shortcut(block)
    return _unit(
        index, name, stage, block, kind, shortcut, residual, identity,
        block.conv1.in_channels, block.conv2.out_channels, block.conv1.stride,
        ((f"{name}.conv1", block.conv1), (f"{name}.conv2", block.conv2)),
    )


def _post_bottleneck(index: int, name: str, stage: int, block: Any) -> Unit:
    """Bottleneck (preact=False): conv1 norm1 conv2 norm2 conv3 norm3 drop_path, then act3 after the add."""

    def residual(x: Tensor) -> Tensor:
        h = block.norm1(block.conv1(x))
        h = block.norm2(block.conv2(h))
        return block.drop_path(block.norm3(block.conv3(h)))

    kind, shortcut = ("identity", identity) if block.downsample is None else ("projection", block.downsample)
    return _unit(
        index, name, stage, block, kind, shortcut, residual, out_of_place(block.act3),
        block.conv1.in_channels, block.conv3.out_channels, block.conv2.stride,
        ((f"{name}.norm2", block.norm2),),
    )


def _unit(
    index: int,
    name: str,
    stage: int,
    block: Any,
    kind: str,
    shortcut: Fn,
    residual: Fn,
    post: Fn,
    in_channels: int,
    out_channels: int,
    stride: Any,
    responses: tuple[tuple[str, nn.Module], ...],
) -> Unit:
    """The fields common to every block type."""
    stride = int(stride[0] if isinstance(stride, tuple) else stride)
    return Unit(
        index=index,
        name=name,
        stage=stage,
        in_channels=int(in_channels),
        out_channels=int(out_channels),
        stride=stride,
        downsampling=stride != 1 or in_channels != out_channels,
        shortcut_kind=kind,
        shortcut=shortcut,
        residual=residual,
        post=post,
        module=block,
        responses=responses,
    )


def _notes(model: Any, units: list[Unit]) -> tuple[str, ...]:
    """One sentence per family specific that this model has."""
    resnetv2 = sys.modules[_MODULE]
    blocks: list[Any] = [u.module for u in units]
    preact = [b for b in blocks if type(b) is not resnetv2.Bottleneck]
    notes = []
    if preact:
        notes += [PREACT_NOTE, PREACT_PROJECTION_NOTE]
    if len(preact) < len(blocks):
        notes.append(POST_NOTE)
    if any(b.downsample is not None and isinstance(b.downsample, resnetv2.DownsampleAvg) for b in blocks):
        notes.append(AVG_DOWN_NOTE)
    if not isinstance(model.norm, nn.Identity):
        notes.append(HEAD_NORM_NOTE)
    if any(type(b.conv1).__name__.startswith("StdConv") for b in blocks):
        notes.append(STD_CONV_NOTE)
    if any(type(b) is resnetv2.PreActBottleneck for b in blocks):
        notes.append(BOTTLENECK_NOTE)
    if any(type(b) is resnetv2.PreActBasic for b in blocks):
        notes.append(BASIC_NOTE)
    if any(not isinstance(b.drop_path, nn.Identity) for b in blocks):
        notes.append(DROP_NOTE)
    return tuple(notes)
