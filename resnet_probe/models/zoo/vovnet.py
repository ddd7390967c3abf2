"""VoVNet (OSA modules) for CIFAR: VoVNetV1 and VoVNetV2 (eSE + identity residual).

Papers:

* Lee, Hwang, Lee, Bae & Park 2019, "An Energy and GPU-Computation Efficient Backbone
  Network for Real-Time Object Detection" (VoVNet, One-Shot Aggregation).
* Lee & Park 2020, "CenterMask: Real-Time Anchor-Free Instance Segmentation" (VoVNetV2:
  identity residual around the OSA module and effective Squeeze-Excitation, eSE).

OSA module (:class:`OSAModule`)
    A chain of ``L`` 3x3 conv-BN-ReLU layers of ``stage_channels`` outputs each (the first takes
    the module input, layer ``i`` takes layer ``i-1``'s output); the module input and all ``L``
    outputs are concatenated *once* and aggregated by a 1x1 conv-BN-ReLU to ``concat_channels``;
    then (VoVNetV2) eSE, ``y * hsigmoid(fc(avgpool(y)))`` with ``fc`` a 1x1 conv C->C with bias
    and ``hsigmoid(z) = relu6(z + 3) / 6``; then (VoVNetV2) ``+ x`` when input and output
    channels agree. There is no ReLU after the residual addition, as in the reference code.

There is no published CIFAR VoVNet; the sizes chosen here
    * stem: one 3x3 conv-BN-ReLU, 3 -> 32 channels at 32x32 (the CIFAR ResNets' single 3x3 stem;
      ImageNet VoVNet's three-conv stride-4 stem would throw away most of a 32x32 image);
    * 3 stages at 32x32, 16x16 and 8x8 (like the CIFAR ResNets and DenseNets);
      stage channels (per 3x3 layer) 40 / 48 / 56, concat (module output) channels 64 / 96 / 128;
    * ``L = 4`` 3x3 layers per OSA module, 2 OSA modules per stage.

    Why: the target is ~0.8M parameters, to compare with ResNet-56 (0.85M) and DenseNet-BC-100
    (0.8M), with *the same widths* for V1 and V2 so that the two differ only by eSE and the
    identity residual. eSE adds ``C^2 + C`` parameters per module, so the plain net sits a little
    below 0.8M and the eSE net a little above: 767,274 and 827,242 parameters (10 classes),
    -4.1 % and +3.4 %. The shape follows VoVNet-19/27-slim at CIFAR scale: stage channels grow
    slowly (+8 per stage, slim: +16) while the concat output grows faster (x1.5, x1.33), and
    ``concat_channels`` exceeds ``stage_channels`` in every stage. ``L = 4`` sits between
    VoVNet-19's 3 and VoVNet-27/39/57's 5. Two modules per stage (not one) so that VoVNetV2's
    identity residual exists at all: it needs ``in == out`` channels, true only for the second
    module of a stage. Depth: 1 stem conv + 3 stages x 2 modules x (4 + 1) convs + linear = 32
    weighted layers.

Downsampling: stages 2 and 3 start with a parameter-free 2x2 max pool of stride 2
(``downsamples[1]``, ``downsamples[2]``; ``downsamples[0]`` is ``nn.Identity``). VoVNet itself
downsamples between stages with max pooling (3x3, stride 2, ceil mode), never with a strided
conv, so every OSA module keeps stride 1 and its chain/aggregate decomposition stays simple; on
the even 32/16 feature maps the 2x2/2 pool halves exactly.

eSE placement: :func:`vovnet_ese_cifar` puts eSE in *every* OSA module (the CenterMask paper's
description, Fig. 2). The reference implementations differ: timm applies it to the last module of
each stage only, and the official code's flag logic switches it off in stages of more than one
module. ``CifarVoVNet(ese="last")`` gives timm's placement.

Init as the VoVNet reference classification code: kaiming-normal conv weights, BN weight 1 bias 0,
conv (eSE) and linear biases 0.
"""

from __future__ import annotations

from typing import List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = [
    "EffectiveSE",
    "OSAModule",
    "CifarVoVNet",
    "vovnet_cifar",
    "vovnet_ese_cifar",
    "STEM_CHANNELS",
    "STAGE_CHANNELS",
    "CONCAT_CHANNELS",
    "LAYERS_PER_MODULE",
    "MODULES_PER_STAGE",
]

STEM_CHANNELS = 32
STAGE_CHANNELS: Tuple[int, ...] = (40, 48, 56)
CONCAT_CHANNELS: Tuple[int, ...] = (64, 96, 128)
LAYERS_PER_MODULE = 4
MODULES_PER_STAGE = 2
ESE_PLACEMENTS: Tuple[str, ...] = ("none", "all", "last")


def _conv_bn_relu(in_channels: int, out_channels: int, kernel_size: int) -> nn.Sequential:
    """``Sequential(conv (no bias), BN, ReLU)``; the ReLU is not in-place so BN outputs can be hooked."""
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, kernel_size, padding=kernel_size // 2, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=False),
    )


class EffectiveSE(nn.Module):
    """eSE (CenterMask): ``x * hardsigmoid(fc(global_avg_pool(x)))``, ``fc`` a 1x1 conv C->C with bias."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.fc = nn.Conv2d(channels, channels, kernel_size=1, bias=True)

    def gate(self, x: Tensor) -> Tensor:
        """The per-channel scale in [0, 1], shape ``(N, C, 1, 1)``."""
        return F.hardsigmoid(self.fc(F.adaptive_avg_pool2d(x, 1)))

    def forward(self, x: Tensor) -> Tensor:
        return x * self.gate(x)


class OSAModule(nn.Module):
    """One-Shot Aggregation module; ``forward(x) = aggregate(x, chain(x))``.

    ``layers``: ModuleList of ``L`` ``Sequential(conv3x3, BN, ReLU)``; ``concat``: the 1x1
    ``Sequential(conv, BN, ReLU)`` aggregation; ``ese``: :class:`EffectiveSE` or None;
    ``identity``: whether ``x`` is added to the output (requires ``in_channels == concat_channels``).
    """

    def __init__(
        self,
        in_channels: int,
        stage_channels: int,
        concat_channels: int,
        num_layers: int,
        ese: bool = False,
        identity: bool = False,
    ) -> None:
        super().__init__()
        if num_layers < 1:
            raise ValueError(f"an OSA module needs at least one layer, got {num_layers}")
        if identity and in_channels != concat_channels:
            raise ValueError(
                f"identity residual needs in_channels == concat_channels, got {in_channels} != {concat_channels}"
            )
        self.in_channels = in_channels
        self.stage_channels = stage_channels
        self.concat_channels = concat_channels
        self.num_layers = num_layers
        self.identity = identity
        self.layers = nn.ModuleList(
            _conv_bn_relu(in_channels if i == 0 else stage_channels, stage_channels, 3) for i in range(num_layers)
        )
        self.concat = _conv_bn_relu(in_channels + num_layers * stage_channels, concat_channels, 1)
        self.ese: Optional[EffectiveSE] = EffectiveSE(concat_channels) if ese else None

    @property
    def out_channels(self) -> int:
        return self.concat_channels

    @property
    def response_bns(self) -> Tuple[nn.BatchNorm2d, ...]:
        """The BN right after each of the ``L`` 3x3 convs, in chain order."""
        return tuple(m for m in self.layers.modules() if isinstance(m, nn.BatchNorm2d))

    @property
    def response_convs(self) -> Tuple[nn.Conv2d, ...]:
        """The ``L`` 3x3 convs, in chain order."""
        return tuple(m for m in self.layers.modules() if isinstance(m, nn.Conv2d))

    def chain(self, x: Tensor) -> List[Tensor]:
        """The ``L`` layer outputs (after ReLU); layer ``i`` is fed layer ``i-1``'s output."""
        outputs: List[Tensor] = []
        h = x
        for layer in self.layers:
            h = layer(h)
            outputs.append(h)
        return outputs

    def aggregate(self, x: Tensor, outputs: Sequence[Tensor]) -> Tensor:
        """``concat(cat([x, *outputs], 1))``, then eSE if any, then ``+ x`` if ``identity``."""
        if len(outputs) != self.num_layers:
            raise ValueError(f"expected {self.num_layers} layer outputs, got {len(outputs)}")
        y = self.concat(torch.cat([x, *outputs], 1))
        if self.ese is not None:
            y = self.ese(y)
        if self.identity:
            y = y + x
        return y

    def forward(self, x: Tensor) -> Tensor:
        return self.aggregate(x, self.chain(x))

    def extra_repr(self) -> str:
        return (
            f"in_channels={self.in_channels}, stage_channels={self.stage_channels}, "
            f"concat_channels={self.concat_channels}, num_layers={self.num_layers}, identity={self.identity}"
        )


class CifarVoVNet(nn.Module):
    """VoVNet for 32x32 inputs: stem, 3 stages of OSA modules, global average pool, linear.

    ``forward``: ``stem``; for stage ``i``: ``downsamples[i]`` then ``stages[i]``; global average
    pool; ``classifier``. ``stem`` is ``Sequential(conv3x3, BN, ReLU)``; ``stages`` is a ModuleList
    of ``nn.Sequential`` of :class:`OSAModule`; ``downsamples`` is a ModuleList with
    ``nn.Identity`` at index 0 and ``nn.MaxPool2d(2, 2)`` after.

    ``ese``: ``"none"`` (VoVNetV1), ``"all"`` (every module) or ``"last"`` (last module of each
    stage, timm's placement). ``identity``: residual around every module with ``in == out``
    channels (all but the first of each stage).
    """

    def __init__(
        self,
        stage_channels: Sequence[int] = STAGE_CHANNELS,
        concat_channels: Sequence[int] = CONCAT_CHANNELS,
        layers_per_module: int = LAYERS_PER_MODULE,
        modules_per_stage: int = MODULES_PER_STAGE,
        stem_channels: int = STEM_CHANNELS,
        ese: str = "none",
        identity: bool = False,
        num_classes: int = 10,
    ) -> None:
        super().__init__()
        if len(stage_channels) != len(concat_channels):
            raise ValueError("stage_channels and concat_channels need one entry per stage")
        if ese not in ESE_PLACEMENTS:
            raise ValueError(f"unknown eSE placement {ese!r}; use one of {ESE_PLACEMENTS}")
        if modules_per_stage < 1:
            raise ValueError(f"modules_per_stage must be >= 1, got {modules_per_stage}")
        self.stage_channels = tuple(stage_channels)
        self.concat_channels = tuple(concat_channels)
        self.layers_per_module = layers_per_module
        self.modules_per_stage = modules_per_stage
        self.stem_channels = stem_channels
        self.ese = ese
        self.identity = identity
        self.num_classes = num_classes

        self.stem = _conv_bn_relu(3, stem_channels, 3)
        downsamples: List[nn.Module] = []
        stages: List[nn.Sequential] = []
        channels = stem_channels
        for i, (s, c) in enumerate(zip(self.stage_channels, self.concat_channels, strict=True)):
            downsamples.append(nn.Identity() if i == 0 else nn.MaxPool2d(kernel_size=2, stride=2))
            modules = []
            for j in range(modules_per_stage):
                use_ese = ese == "all" or (ese == "last" and j == modules_per_stage - 1)
                modules.append(OSAModule(
                    channels, s, c, layers_per_module, ese=use_ese, identity=identity and channels == c,
                ))
                channels = c
            stages.append(nn.Sequential(*modules))
        self.downsamples = nn.ModuleList(downsamples)
        self.stages = nn.ModuleList(stages)
        self.classifier = nn.Linear(channels, num_classes)
        self.num_features = channels
        self._init_weights()

    def _init_weights(self) -> None:
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.zeros_(m.bias)

    @property
    def osa_modules(self) -> Tuple[OSAModule, ...]:
        """Every OSA module, stage by stage."""
        return tuple(m for m in self.stages.modules() if isinstance(m, OSAModule))

    def features(self, x: Tensor) -> Tensor:
        """The pooled ``num_features``-vector before the classifier."""
        x = self.stem(x)
        for down, stage in zip(self.downsamples, self.stages, strict=True):
            x = stage(down(x))
        return torch.flatten(F.adaptive_avg_pool2d(x, 1), 1)

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(self.features(x))


def vovnet_cifar(num_classes: int = 10) -> CifarVoVNet:
    """VoVNetV1 (plain OSA modules) at the CIFAR sizes of the module docstring: 767,274 parameters."""
    return CifarVoVNet(ese="none", identity=False, num_classes=num_classes)


def vovnet_ese_cifar(num_classes: int = 10) -> CifarVoVNet:
    """VoVNetV2 (eSE in every module + identity residual) at the same sizes: 827,242 parameters."""
    return CifarVoVNet(ese="all", identity=True, num_classes=num_classes)
