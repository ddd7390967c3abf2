"""Adapter for torchvision's ``ResNet`` (resnet18..152, wide_resnet*, resnext*).

The callables re-trace ``BasicBlock.forward`` / ``Bottleneck.forward`` over the block's own
submodules, so the executor can run the shortcut and the residual branch apart.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

import torch
from torch import Tensor, nn

from resnet_probe.adapters.stages import collect_units
from resnet_probe.errors import AdapterError
from resnet_probe.structure import Fn, Topology, Unit, identity, relu

if TYPE_CHECKING:
    from torchvision.models.resnet import BasicBlock, Bottleneck

FAMILY = "torchvision-resnet"
_MODULE = "torchvision.models.resnet"

POST_NOTE = "Post-activation units (He et al. 2015): y = relu(shortcut(x) + residual(x))."
PROJECTION_NOTE = "Projection shortcuts (1x1 conv + BN) at downsampling units, identity elsewhere (option B)."
BASIC_NOTE = "Basic units: two 3x3 convs per unit; the responses are the outputs of bn1 and bn2."
BOTTLENECK_NOTE = (
    "Bottleneck units: one 3x3 conv per unit (conv2, which carries the stride); the responses are its BN (bn2) outputs."
)


def matches(model: nn.Module) -> bool:
    """Whether ``model`` is a torchvision ``ResNet`` of BasicBlock / Bottleneck blocks."""
    # A torchvision ResNet cannot exist unless its module is already imported.
    resnet = sys.modules.get(_MODULE)
    if resnet is None or not isinstance(model, resnet.ResNet):
        return False
    # Exact block types: the quantizable subclasses merge through FloatFunctional, for discovery to read.
    blocks = [b for stage in (1, 2, 3, 4) for b in getattr(model, f"layer{stage}", ())]
    return all(type(b) in (resnet.BasicBlock, resnet.Bottleneck) for b in blocks)


def build(model: nn.Module) -> Topology:
    """The topology of a torchvision ``ResNet``."""
    from torchvision.models import resnet as tv

    if not isinstance(model, tv.ResNet):
        raise AdapterError(f"not a torchvision ResNet: {type(model).__name__}")
    units = collect_units(
        model, {tv.BasicBlock: _basic_unit, tv.Bottleneck: _bottleneck_unit}, "torchvision"
    )

    def stem(x: Tensor) -> Tensor:
        return model.maxpool(relu(model.bn1(model.conv1(x))))

    def head(x: Tensor) -> Tensor:
        return model.fc(torch.flatten(model.avgpool(x), 1))

    notes = [POST_NOTE]
    if any(u.shortcut_kind == "projection" for u in units):
        notes.append(PROJECTION_NOTE)
    kinds = {type(u.module) for u in units}
    if tv.BasicBlock in kinds:
        notes.append(BASIC_NOTE)
    if tv.Bottleneck in kinds:
        notes.append(BOTTLENECK_NOTE)
    return Topology(FAMILY, stem, tuple(units), head, model, notes=tuple(notes))


def _shortcut(block: BasicBlock | Bottleneck) -> tuple[str, Fn]:
    """The shortcut kind and callable of a block."""
    if block.downsample is None:
        return "identity", identity
    return "projection", block.downsample


def _basic_unit(index: int, name: str, stage: int, block: BasicBlock) -> Unit:
    """A BasicBlock: ``relu(shortcut(x) + bn2(conv2(relu(bn1(conv1(x))))))``."""

    # Out-of-place ReLUs keep the captured BN outputs intact.
    def residual(x: Tensor) -> Tensor:
        return block.bn2(block.conv2(relu(block.bn1(block.conv1(x)))))

    kind, shortcut = _shortcut(block)
    in_ch, out_ch, stride = block.conv1.in_channels, block.conv2.out_channels, int(block.stride)
    return Unit(
        index=index,
        name=name,
        stage=stage,
        in_channels=in_ch,
        out_channels=out_ch,
        stride=stride,
        downsampling=stride != 1 or in_ch != out_ch,
        shortcut_kind=kind,
        shortcut=shortcut,
        residual=residual,
        post=relu,
        module=block,
        responses=((f"{name}.bn1", block.bn1), (f"{name}.bn2", block.bn2)),
    )


def _bottleneck_unit(index: int, name: str, stage: int, block: Bottleneck) -> Unit:
    """A Bottleneck: 1x1 -> 3x3 (strided) -> 1x1, each followed by BN."""

    def residual(x: Tensor) -> Tensor:
        h = relu(block.bn1(block.conv1(x)))
        h = relu(block.bn2(block.conv2(h)))
        return block.bn3(block.conv3(h))

    kind, shortcut = _shortcut(block)
    in_ch, out_ch, stride = block.conv1.in_channels, block.conv3.out_channels, int(block.stride)
    return Unit(
        index=index,
        name=name,
        stage=stage,
        in_channels=in_ch,
        out_channels=out_ch,
        stride=stride,
        downsampling=stride != 1 or in_ch != out_ch,
        shortcut_kind=kind,
        shortcut=shortcut,
        residual=residual,
        post=relu,
        module=block,
        responses=((f"{name}.bn2", block.bn2),),
    )
