"""Adapter for timm's ``timm.models.resnet.ResNet`` (resnet*, resnet*d, seresnet*, resnext*, ...).

The callables re-trace timm's ``BasicBlock.forward`` / ``Bottleneck.forward`` over the block's
own submodules (drop_block, aa, se and drop_path included, in timm's order). This module
never imports timm itself: a timm model can only exist once timm is imported.
"""

from __future__ import annotations

import copy
import sys
from typing import Any

from torch import Tensor, nn

from resnet_probe.adapters.stages import collect_units
from resnet_probe.errors import AdapterError
from resnet_probe.structure import Fn, Topology, Unit, identity, relu

FAMILY = "timm-resnet"
_MODULE = "timm.models.resnet"

POST_NOTE = "Post-activation units (He et al. 2015): y = act(shortcut(x) + residual(x))."
PROJECTION_NOTE = "Projection shortcuts at downsampling units, identity elsewhere (option B)."
AVG_DOWN_NOTE = "ResNet-D shortcuts (2x2 avg-pool + 1x1 conv + BN) are counted as projections."
DEEP_STEM_NOTE = "The deep stem (three 3x3 convs) and the stem pooling belong to the stem."
BASIC_NOTE = "Basic units: two 3x3 convs per unit; the responses are the outputs of bn1 and bn2."
BOTTLENECK_NOTE = (
    "Bottleneck units: one 3x3 conv per unit (conv2, which carries the stride); "
    "the responses are its norm (bn2) outputs."
)
ATTN_NOTE = "SE/ECA attention is part of the residual branch, after its last norm layer."
AA_NOTE = "Anti-aliased units stride in a blur/avg pool after the 3x3 conv, inside the residual branch."
DROP_NOTE = "DropBlock / DropPath are part of the residual branch (identity in eval mode)."


def matches(model: nn.Module) -> bool:
    """Whether ``model`` is a timm ``ResNet`` of BasicBlock / Bottleneck blocks; never imports timm.

    Other blocks on timm's ResNet class (ResNeSt, Res2Net, selective kernels, ...) go to discovery.
    """
    resnet = sys.modules.get(_MODULE)
    if resnet is None or not isinstance(model, resnet.ResNet):
        return False
    blocks = [b for stage in (1, 2, 3, 4) for b in getattr(model, f"layer{stage}", ())]
    return all(type(b) in (resnet.BasicBlock, resnet.Bottleneck) for b in blocks)


def build(model: nn.Module) -> Topology:
    """The topology of a timm ``ResNet``."""
    resnet = sys.modules.get(_MODULE)
    if resnet is None or not isinstance(model, resnet.ResNet):
        raise AdapterError(f"not a timm ResNet: {type(model).__name__}")
    units = collect_units(
        model, {resnet.BasicBlock: _basic_unit, resnet.Bottleneck: _bottleneck_unit}, "timm"
    )
    if not units:
        raise AdapterError("this timm ResNet has no residual units (pruned?)")

    act1 = out_of_place(model.act1)

    def stem(x: Tensor) -> Tensor:
        return model.maxpool(act1(model.bn1(model.conv1(x))))

    return Topology(FAMILY, stem, tuple(units), model.forward_head, model, notes=_notes(model, units))


def out_of_place(act: nn.Module) -> Fn:
    """``act`` as a function that never writes into its input."""
    if type(act) is nn.ReLU:
        return relu
    if getattr(act, "inplace", False):
        # A shallow copy shares weights and hooks; only the flag differs.
        clone: Any = copy.copy(act)
        clone.inplace = False
        return clone
    return act


def _shortcut(block: Any) -> tuple[str, Fn]:
    """The shortcut kind and callable of a block."""
    if block.downsample is None:
        return "identity", identity
    return "projection", block.downsample


def _tail(block: Any) -> Fn:
    """The end of timm's residual branch after the last norm: se, then drop_path."""
    se, drop_path = block.se, block.drop_path

    def tail(x: Tensor) -> Tensor:
        if se is not None:
            x = se(x)
        if drop_path is not None:
            x = drop_path(x)
        return x

    return tail


def _basic_unit(index: int, name: str, stage: int, block: Any) -> Unit:
    """timm BasicBlock: conv1 bn1 drop_block act1 aa conv2 bn2 [se] [drop_path]."""
    act1, tail = out_of_place(block.act1), _tail(block)

    def residual(x: Tensor) -> Tensor:
        h = block.aa(act1(block.drop_block(block.bn1(block.conv1(x)))))
        return tail(block.bn2(block.conv2(h)))

    return _unit(
        index,
        name,
        stage,
        block,
        residual,
        block.conv2.out_channels,
        ((f"{name}.bn1", block.bn1), (f"{name}.bn2", block.bn2)),
    )


def _bottleneck_unit(index: int, name: str, stage: int, block: Any) -> Unit:
    """timm Bottleneck: conv1 bn1 act1 conv2 bn2 drop_block act2 aa conv3 bn3 [se] [drop_path]."""
    act1, act2, tail = out_of_place(block.act1), out_of_place(block.act2), _tail(block)

    def residual(x: Tensor) -> Tensor:
        h = act1(block.bn1(block.conv1(x)))
        h = block.aa(act2(block.drop_block(block.bn2(block.conv2(h)))))
        return tail(block.bn3(block.conv3(h)))

    return _unit(index, name, stage, block, residual, block.conv3.out_channels, ((f"{name}.bn2", block.bn2),))


def _unit(
    index: int,
    name: str,
    stage: int,
    block: Any,
    residual: Fn,
    out_channels: int,
    responses: tuple[tuple[str, nn.Module], ...],
) -> Unit:
    """The fields common to both block types."""
    kind, shortcut = _shortcut(block)
    in_channels, stride = block.conv1.in_channels, int(block.stride)
    last_act = block.act3 if hasattr(block, "act3") else block.act2
    return Unit(
        index=index,
        name=name,
        stage=stage,
        in_channels=in_channels,
        out_channels=out_channels,
        stride=stride,
        downsampling=stride != 1 or in_channels != out_channels,
        shortcut_kind=kind,
        shortcut=shortcut,
        residual=residual,
        post=out_of_place(last_act),
        module=block,
        responses=responses,
    )


def _notes(model: Any, units: list[Unit]) -> tuple[str, ...]:
    """One sentence per family specific that this model has."""
    resnet = sys.modules[_MODULE]
    blocks: list[Any] = [u.module for u in units]
    notes = [POST_NOTE]
    if isinstance(model.conv1, nn.Sequential):
        notes.append(DEEP_STEM_NOTE)
    if any(b.downsample is not None for b in blocks):
        notes.append(PROJECTION_NOTE)
    if any(b.downsample is not None and isinstance(b.downsample[0], nn.AvgPool2d) for b in blocks):
        notes.append(AVG_DOWN_NOTE)
    if any(type(b) is resnet.BasicBlock for b in blocks):
        notes.append(BASIC_NOTE)
    if any(type(b) is resnet.Bottleneck for b in blocks):
        notes.append(BOTTLENECK_NOTE)
    if any(b.se is not None for b in blocks):
        notes.append(ATTN_NOTE)
    if any(not isinstance(b.aa, nn.Identity) for b in blocks):
        notes.append(AA_NOTE)
    if any(b.drop_path is not None or not isinstance(b.drop_block, nn.Identity) for b in blocks):
        notes.append(DROP_NOTE)
    return tuple(notes)
