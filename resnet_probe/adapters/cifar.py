"""Adapter for the CIFAR zoo: post-activation ResNets (A/B/C), plain nets and pre-act ResNets.

The callables are written out here over the submodules rather than delegated to
``block.forward``, so that the executor can run the shortcut and the residual branch apart.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from resnet_probe.errors import AdapterError
from resnet_probe.models.zoo.cifar import BasicBlock, CifarResNet, PadShortcut, PreActBlock, PreActCifarResNet
from resnet_probe.structure import Fn, Topology, Unit, identity, relu

OPTION_A_NOTE = (
    "Option-A downsampling units have a zero-pad shortcut: deleting one leaves half of its output channels zero."
)


def matches(model: nn.Module) -> bool:
    """Whether ``model`` is one of the CIFAR zoo networks."""
    return isinstance(model, (CifarResNet, PreActCifarResNet))


def build(model: nn.Module) -> Topology:
    """The topology of a CIFAR zoo network."""
    if isinstance(model, PreActCifarResNet):
        return _build_preact(model)
    if isinstance(model, CifarResNet):
        return _build_post(model)
    raise AdapterError(f"not a CIFAR zoo network: {type(model).__name__}")


def _blocks(model: nn.Module) -> list[tuple[str, int, nn.Module]]:
    """``(name, stage, block)`` for every unit in network order, named as in the state dict."""
    return [(f"layer{s}.{i}", s, block) for s in (1, 2, 3) for i, block in enumerate(getattr(model, f"layer{s}"))]


def _pooled_linear(linear: nn.Linear, x: Tensor) -> Tensor:
    """Global average pool, flatten, linear: the zoo models' classifier."""
    return linear(torch.flatten(F.avg_pool2d(x, x.size(3)), 1))


def _build_post(model: CifarResNet) -> Topology:
    """Post-activation ResNet or plain net: ``relu(shortcut(x) + bn2(conv2(...)))``."""
    units = tuple(_post_unit(index, name, stage, block) for index, (name, stage, block) in enumerate(_blocks(model)))

    def stem(x: Tensor) -> Tensor:
        return relu(model.bn1(model.conv1(x)))

    def head(x: Tensor) -> Tensor:
        return _pooled_linear(model.linear, x)

    notes = (OPTION_A_NOTE,) if model.shortcut_option == "A" else ()
    return Topology(model.family, stem, units, head, model, notes=notes, stem_responses=(("bn1", model.bn1),))


def _post_unit(index: int, name: str, stage: int, block: nn.Module) -> Unit:
    """One post-activation (or plain) unit."""
    if not isinstance(block, BasicBlock):
        raise AdapterError(f"{name} is a {type(block).__name__}, expected a BasicBlock")

    def residual(x: Tensor) -> Tensor:
        return block.bn2(block.conv2(relu(block.bn1(block.conv1(x)))))

    shortcut: Fn | None
    if block.shortcut is None:
        kind, shortcut = "none", None
    elif isinstance(block.shortcut, nn.Identity):
        kind, shortcut = "identity", identity
    elif isinstance(block.shortcut, PadShortcut):
        kind, shortcut = "zero-pad", block.shortcut
    else:
        kind, shortcut = "projection", block.shortcut
    return Unit(
        index=index,
        name=name,
        stage=stage,
        in_channels=block.conv1.in_channels,
        out_channels=block.conv2.out_channels,
        stride=_stride(block.conv1),
        downsampling=_downsampling(block.conv1, block.conv2),
        shortcut_kind=kind,
        shortcut=shortcut,
        residual=residual,
        post=relu,
        module=block,
        responses=((f"{name}.bn1", block.bn1), (f"{name}.bn2", block.bn2)),
    )


def _build_preact(model: PreActCifarResNet) -> Topology:
    """Pre-activation ResNet: ``shortcut(x) + conv2(relu(bn2(conv1(relu(bn1(x))))))``."""
    units = tuple(_preact_unit(index, name, stage, block) for index, (name, stage, block) in enumerate(_blocks(model)))

    def head(x: Tensor) -> Tensor:
        return _pooled_linear(model.linear, relu(model.bn(x)))

    return Topology(model.family, model.conv1, units, head, model, stem_responses=(("conv1", model.conv1),))


def _preact_unit(index: int, name: str, stage: int, block: nn.Module) -> Unit:
    """One pre-activation unit; a projection shortcut sees the pre-activated input."""
    if not isinstance(block, PreActBlock):
        raise AdapterError(f"{name} is a {type(block).__name__}, expected a PreActBlock")

    def residual(x: Tensor) -> Tensor:
        return block.conv2(relu(block.bn2(block.conv1(relu(block.bn1(x))))))

    def projection(x: Tensor) -> Tensor:
        return block.shortcut(relu(block.bn1(x)))

    shortcut: Fn = projection if block.projects else identity
    return Unit(
        index=index,
        name=name,
        stage=stage,
        in_channels=block.conv1.in_channels,
        out_channels=block.conv2.out_channels,
        stride=_stride(block.conv1),
        downsampling=_downsampling(block.conv1, block.conv2),
        shortcut_kind="projection" if block.projects else "identity",
        shortcut=shortcut,
        residual=residual,
        post=identity,
        module=block,
        # No BN follows a pre-act 3x3 conv: its response is the conv output itself.
        responses=((f"{name}.conv1", block.conv1), (f"{name}.conv2", block.conv2)),
    )


def _stride(conv: nn.Conv2d) -> int:
    """The (square) stride of a convolution."""
    stride = conv.stride
    return int(stride[0] if isinstance(stride, tuple) else stride)


def _downsampling(conv1: nn.Conv2d, conv2: nn.Conv2d) -> bool:
    """A unit downsamples when it strides or changes the channel count."""
    return _stride(conv1) != 1 or conv1.in_channels != conv2.out_channels
