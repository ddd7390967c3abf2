"""DenseNets for CIFAR (Huang et al. 2017, "Densely Connected Convolutional Networks").

Follows Sec. 3 ("Implementation Details") and Sec. 4.1/4.2 of the paper and its reference
Torch code (liuzhuang13/DenseNet):

* an initial 3x3 convolution with 16 output channels (``2 * k`` for DenseNet-BC) on the
  32x32 input;
* three dense blocks with ``L`` layers each, ``L = (depth - 4) / 3`` for the plain DenseNet
  and ``L = (depth - 4) / 6`` for DenseNet-BC (every BC layer holds two convolutions);
* a dense layer's composite function ``H`` is BN-ReLU-3x3 conv (``k`` outputs), or for the
  bottleneck (B) version BN-ReLU-1x1 conv (``4k`` outputs)-BN-ReLU-3x3 conv (``k`` outputs);
  its ``k`` new feature maps are concatenated to its input;
* a transition layer between two blocks: BN-ReLU-1x1 conv-2x2 average pool (stride 2); the
  1x1 conv keeps the channel count (plain DenseNet) or compresses it to
  ``floor(theta * channels)`` with ``theta = 0.5`` (the C in BC);
* after the last block: BN-ReLU-global average pool-linear classifier.

All convolutions are bias-free, as in the reference code. Dropout (the paper's C10/C100
setting without data augmentation) is not included: these are the C10+/C100+ networks.

Parameter counts (10 classes) against Table 2 of the paper:

=====================  =========  ==========
builder                 this code  Table 2
=====================  =========  ==========
densenet40_k12          1,019,722   1.0M
densenet100_k12         6,979,642   7.0M
densenet_bc100_k12        769,162   0.8M
densenet_bc250_k24     15,324,406  15.3M
densenet_bc190_k40     25,624,430  25.6M
=====================  =========  ==========

Unit view: every dense layer is a :class:`DenseLayer` whose ``forward(x)`` is
``merge(x, branch(x))`` with ``branch(x)`` the ``k`` new feature maps and
``merge(x, new) = torch.cat([x, new], 1)``. In a DenseNet no BN belongs to the 3x3 conv
that produces a layer's new features (they are normalised by the *next* layers' first BNs,
each with its own statistics), so a layer exposes ``response_convs``: a tuple holding its
3x3 convolution, whose output *is* ``branch(x)``.
"""

from __future__ import annotations

import math
from typing import Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = [
    "DenseLayer",
    "DenseBlock",
    "Transition",
    "CifarDenseNet",
    "densenet40_k12",
    "densenet100_k12",
    "densenet_bc100_k12",
    "densenet_bc250_k24",
    "densenet_bc190_k40",
]


class DenseLayer(nn.Module):
    """One dense layer: ``forward(x) = cat([x, H(x)], 1)`` with ``H`` the composite function.

    Plain: ``H = conv1(relu(norm1(x)))`` with ``conv1`` 3x3, ``growth_rate`` outputs.
    Bottleneck: ``H = conv2(relu(norm2(conv1(relu(norm1(x))))))`` with ``conv1`` 1x1 to
    ``4 * growth_rate`` channels and ``conv2`` 3x3 to ``growth_rate`` channels.
    """

    def __init__(self, in_channels: int, growth_rate: int, bottleneck: bool = False) -> None:
        super().__init__()
        self.in_channels = in_channels
        self.growth_rate = growth_rate
        self.bottleneck = bottleneck
        self.norm1 = nn.BatchNorm2d(in_channels)
        if bottleneck:
            inter = 4 * growth_rate
            self.conv1 = nn.Conv2d(in_channels, inter, kernel_size=1, bias=False)
            self.norm2 = nn.BatchNorm2d(inter)
            self.conv2 = nn.Conv2d(inter, growth_rate, kernel_size=3, padding=1, bias=False)
        else:
            self.conv1 = nn.Conv2d(in_channels, growth_rate, kernel_size=3, padding=1, bias=False)

    @property
    def out_channels(self) -> int:
        """Channels after the concatenation: ``in_channels + growth_rate``."""
        return self.in_channels + self.growth_rate

    @property
    def response_conv(self) -> nn.Conv2d:
        """The 3x3 convolution whose output is ``branch(x)``."""
        return self.conv2 if self.bottleneck else self.conv1

    @property
    def response_convs(self) -> Tuple[nn.Conv2d, ...]:
        """``(response_conv,)``: the layer's 3x3 convolution(s), to hook their outputs."""
        return (self.response_conv,)

    def branch(self, x: Tensor) -> Tensor:
        """The ``growth_rate`` new feature maps ``H(x)``."""
        out = self.conv1(F.relu(self.norm1(x)))
        if self.bottleneck:
            out = self.conv2(F.relu(self.norm2(out)))
        return out

    def merge(self, x: Tensor, new: Tensor) -> Tensor:
        """``torch.cat([x, new], 1)``: the layer's input followed by its new feature maps."""
        return torch.cat([x, new], 1)

    def forward(self, x: Tensor) -> Tensor:
        return self.merge(x, self.branch(x))

    def extra_repr(self) -> str:
        return f"in_channels={self.in_channels}, growth_rate={self.growth_rate}, bottleneck={self.bottleneck}"


class DenseBlock(nn.Sequential):
    """``num_layers`` :class:`DenseLayer` s in sequence; layer ``i`` sees ``in + i * k`` channels."""

    def __init__(self, num_layers: int, in_channels: int, growth_rate: int, bottleneck: bool = False) -> None:
        super().__init__(*[
            DenseLayer(in_channels + i * growth_rate, growth_rate, bottleneck) for i in range(num_layers)
        ])
        self.in_channels = in_channels
        self.growth_rate = growth_rate
        self.out_channels = in_channels + num_layers * growth_rate


class Transition(nn.Module):
    """BN-ReLU-1x1 conv-2x2 average pool (stride 2) between two dense blocks."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.norm = nn.BatchNorm2d(in_channels)
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size=1, bias=False)
        self.pool = nn.AvgPool2d(kernel_size=2, stride=2)

    def forward(self, x: Tensor) -> Tensor:
        return self.pool(self.conv(F.relu(self.norm(x))))


class CifarDenseNet(nn.Module):
    """A 3-block DenseNet (or DenseNet-BC) for 32x32 inputs.

    Attributes: ``stem`` (first 3x3 conv), ``blocks`` (ModuleList of 3 :class:`DenseBlock`),
    ``transitions`` (ModuleList of 2 :class:`Transition`), ``norm`` (final BN), ``classifier``
    (Linear), and ``depth``, ``growth_rate``, ``bottleneck``, ``compression``.
    ``forward``: stem, block1, transition1, block2, transition2, block3, norm, ReLU, global
    average pool, classifier.
    """

    def __init__(
        self,
        depth: int,
        growth_rate: int,
        bottleneck: bool = False,
        compression: float = 1.0,
        num_classes: int = 10,
    ) -> None:
        super().__init__()
        per_layer = 6 if bottleneck else 3
        if depth < 4 + per_layer or (depth - 4) % per_layer:
            raise ValueError(
                f"depth must be {per_layer}L+4 with L >= 1 for "
                f"{'DenseNet-BC' if bottleneck else 'DenseNet'}, got {depth}"
            )
        if not 0.0 < compression <= 1.0:
            raise ValueError(f"compression must lie in (0, 1], got {compression}")
        self.depth = depth
        self.growth_rate = growth_rate
        self.bottleneck = bottleneck
        self.compression = compression
        self.num_layers = (depth - 4) // per_layer
        self.num_classes = num_classes

        channels = 2 * growth_rate if bottleneck else 16
        self.stem = nn.Conv2d(3, channels, kernel_size=3, padding=1, bias=False)
        blocks, transitions = [], []
        for i in range(3):
            block = DenseBlock(self.num_layers, channels, growth_rate, bottleneck)
            blocks.append(block)
            channels = block.out_channels
            if i < 2:
                out = int(math.floor(compression * channels))
                transitions.append(Transition(channels, out))
                channels = out
        self.blocks = nn.ModuleList(blocks)
        self.transitions = nn.ModuleList(transitions)
        self.norm = nn.BatchNorm2d(channels)
        self.classifier = nn.Linear(channels, num_classes)
        self.num_features = channels
        self._init_weights()

    def _init_weights(self) -> None:
        """He init as the reference code: conv ~ N(0, 2 / (k*k*out)), BN (1, 0), linear bias 0."""
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.zeros_(m.bias)

    @property
    def layers(self) -> Tuple[DenseLayer, ...]:
        """Every dense layer, block by block."""
        return tuple(m for m in self.blocks.modules() if isinstance(m, DenseLayer))

    @property
    def response_convs(self) -> Tuple[nn.Conv2d, ...]:
        """The 3x3 conv of every dense layer, block by block."""
        return tuple(layer.response_conv for layer in self.layers)

    def features(self, x: Tensor) -> Tensor:
        """The pooled ``num_features``-vector before the classifier."""
        x = self.stem(x)
        for i, block in enumerate(self.blocks):
            x = block(x)
            if i < len(self.transitions):
                x = self.transitions[i](x)
        x = F.relu(self.norm(x))
        return torch.flatten(F.adaptive_avg_pool2d(x, 1), 1)

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(self.features(x))

    def extra_repr(self) -> str:
        return (
            f"depth={self.depth}, growth_rate={self.growth_rate}, bottleneck={self.bottleneck}, "
            f"compression={self.compression}"
        )


def densenet40_k12(num_classes: int = 10) -> CifarDenseNet:
    """DenseNet (L=40, k=12): 3 blocks of 12 layers, 1.0M parameters in Table 2."""
    return CifarDenseNet(40, 12, bottleneck=False, compression=1.0, num_classes=num_classes)


def densenet100_k12(num_classes: int = 10) -> CifarDenseNet:
    """DenseNet (L=100, k=12): 3 blocks of 32 layers, 7.0M parameters in Table 2."""
    return CifarDenseNet(100, 12, bottleneck=False, compression=1.0, num_classes=num_classes)


def densenet_bc100_k12(num_classes: int = 10) -> CifarDenseNet:
    """DenseNet-BC (L=100, k=12): 3 blocks of 16 bottleneck layers, 0.8M parameters in Table 2."""
    return CifarDenseNet(100, 12, bottleneck=True, compression=0.5, num_classes=num_classes)


def densenet_bc250_k24(num_classes: int = 10) -> CifarDenseNet:
    """DenseNet-BC (L=250, k=24): 3 blocks of 41 bottleneck layers, 15.3M parameters in Table 2."""
    return CifarDenseNet(250, 24, bottleneck=True, compression=0.5, num_classes=num_classes)


def densenet_bc190_k40(num_classes: int = 10) -> CifarDenseNet:
    """DenseNet-BC (L=190, k=40): 3 blocks of 31 bottleneck layers, 25.6M parameters in Table 2."""
    return CifarDenseNet(190, 40, bottleneck=True, compression=0.5, num_classes=num_classes)
