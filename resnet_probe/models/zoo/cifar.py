"""CIFAR ResNets of He et al. 2015 (§4.2), their plain twins, and pre-activation ResNets.

Module and parameter names follow akamaster/pytorch_resnet_cifar10 so that its checkpoints
load strictly: ``conv1, bn1, layer{1,2,3}.{i}.{conv1,bn1,conv2,bn2}, linear``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from resnet_probe.models.zoo.families import PLAIN, PREACT, RESNET

SHORTCUT_OPTIONS: tuple[str, ...] = ("A", "B", "C")
STAGE_PLANES: tuple[int, ...] = (16, 32, 64)


def _weights_init(m: nn.Module) -> None:
    """Kaiming-normal conv and linear weights, as akamaster does."""
    if isinstance(m, (nn.Linear, nn.Conv2d)):
        nn.init.kaiming_normal_(m.weight)


def _conv3x3(in_planes: int, planes: int, stride: int = 1) -> nn.Conv2d:
    """3x3 convolution with padding 1 and no bias."""
    return nn.Conv2d(in_planes, planes, kernel_size=3, stride=stride, padding=1, bias=False)


def _projection(in_planes: int, planes: int, stride: int) -> nn.Sequential:
    """1x1 convolution + BN shortcut (options B and C)."""
    return nn.Sequential(
        nn.Conv2d(in_planes, planes, kernel_size=1, stride=stride, bias=False),
        nn.BatchNorm2d(planes),
    )


class PadShortcut(nn.Module):
    """Option A: stride-2 subsample, then zero-pad ``planes // 4`` channels on each side."""

    def __init__(self, planes: int) -> None:
        super().__init__()
        self.pad = planes // 4

    def forward(self, x: Tensor) -> Tensor:
        """Subsampled input with zero channels before and after."""
        return F.pad(x[:, :, ::2, ::2], (0, 0, 0, 0, self.pad, self.pad), "constant", 0.0)

    def extra_repr(self) -> str:
        return f"pad={self.pad}"


class BasicBlock(nn.Module):
    """Post-activation unit ``relu(shortcut(x) + bn2(conv2(relu(bn1(conv1(x))))))``.

    ``option`` is the shortcut option 'A', 'B', 'C', or None for a plain unit (no shortcut).
    """

    def __init__(self, in_planes: int, planes: int, stride: int = 1, option: str | None = "A"):
        super().__init__()
        self.conv1 = _conv3x3(in_planes, planes, stride)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = _conv3x3(planes, planes)
        self.bn2 = nn.BatchNorm2d(planes)
        self.shortcut: nn.Module | None
        changes_shape = stride != 1 or in_planes != planes
        if option is None:
            self.shortcut = None
        elif option == "A" and changes_shape:
            self.shortcut = PadShortcut(planes)
        elif option == "C" or (option == "B" and changes_shape):
            self.shortcut = _projection(in_planes, planes, stride)
        elif option in SHORTCUT_OPTIONS:
            self.shortcut = nn.Identity()
        else:
            raise ValueError(f"unknown shortcut option {option!r}; use one of A, B, C or None")

    def forward(self, x: Tensor) -> Tensor:
        """The unit's output."""
        out = self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x)))))
        if self.shortcut is not None:
            out = self.shortcut(x) + out
        return F.relu(out)


class PreActBlock(nn.Module):
    """Pre-activation unit ``x + conv2(relu(bn2(conv1(relu(bn1(x))))))`` (He et al. 2016).

    At a downsampling unit the shortcut is a 1x1 stride-2 convolution of ``relu(bn1(x))``.
    """

    def __init__(self, in_planes: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_planes)
        self.conv1 = _conv3x3(in_planes, planes, stride)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv2 = _conv3x3(planes, planes)
        self.projects = stride != 1 or in_planes != planes
        self.shortcut: nn.Module = (
            nn.Conv2d(in_planes, planes, kernel_size=1, stride=stride, bias=False) if self.projects else nn.Identity()
        )

    def forward(self, x: Tensor) -> Tensor:
        """The unit's output."""
        pre = F.relu(self.bn1(x))
        short = self.shortcut(pre) if self.projects else self.shortcut(x)
        return short + self.conv2(F.relu(self.bn2(self.conv1(pre))))


def _stages(block: type[nn.Module], n: int, **kwargs: object) -> list[nn.Sequential]:
    """Three stages of ``n`` units with 16, 32, 64 planes; stride 2 at stages 2 and 3."""
    stages: list[nn.Sequential] = []
    in_planes = STAGE_PLANES[0]
    for s, planes in enumerate(STAGE_PLANES):
        units = []
        for i in range(n):
            stride = 2 if s > 0 and i == 0 else 1
            units.append(block(in_planes, planes, stride, **kwargs))
            in_planes = planes
        stages.append(nn.Sequential(*units))
    return stages


class CifarResNet(nn.Module):
    """A 6n+2-layer post-activation CIFAR ResNet (option A/B/C) or plain net (option None)."""

    preact = False

    def __init__(self, n: int, num_classes: int = 10, option: str | None = "A") -> None:
        super().__init__()
        self.n = n
        self.depth = 6 * n + 2
        self.shortcut_option = option
        self.conv1 = _conv3x3(3, STAGE_PLANES[0])
        self.bn1 = nn.BatchNorm2d(STAGE_PLANES[0])
        self.layer1, self.layer2, self.layer3 = _stages(BasicBlock, n, option=option)
        self.linear = nn.Linear(STAGE_PLANES[-1], num_classes)
        self.apply(_weights_init)

    @property
    def family(self) -> str:
        """Registry family: ``cifar-resnet`` or ``cifar-plain``."""
        return PLAIN if self.shortcut_option is None else RESNET

    def forward(self, x: Tensor) -> Tensor:
        """Class logits."""
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.layer3(self.layer2(self.layer1(out)))
        out = F.avg_pool2d(out, out.size(3))
        return self.linear(torch.flatten(out, 1))


class PreActCifarResNet(nn.Module):
    """A 6n+2-layer pre-activation CIFAR ResNet: conv stem, units, then bn-relu-pool-linear."""

    preact = True
    shortcut_option = "B"
    family = PREACT

    def __init__(self, n: int, num_classes: int = 10) -> None:
        super().__init__()
        self.n = n
        self.depth = 6 * n + 2
        self.conv1 = _conv3x3(3, STAGE_PLANES[0])
        self.layer1, self.layer2, self.layer3 = _stages(PreActBlock, n)
        self.bn = nn.BatchNorm2d(STAGE_PLANES[-1])
        self.linear = nn.Linear(STAGE_PLANES[-1], num_classes)
        self.apply(_weights_init)

    def forward(self, x: Tensor) -> Tensor:
        """Class logits."""
        out = self.layer3(self.layer2(self.layer1(self.conv1(x))))
        out = F.relu(self.bn(out))
        out = F.avg_pool2d(out, out.size(3))
        return self.linear(torch.flatten(out, 1))
