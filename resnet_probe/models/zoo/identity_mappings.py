"""The residual-unit variants of He, Zhang, Ren & Sun 2016, "Identity Mappings in Deep Residual
Networks" (Fig. 2, Fig. 4, Tables 1, 2 and 4), as CIFAR ResNets.

Basic-block nets (:class:`CifarVariantResNet`, depth ``6n + 2``): a 3x3 conv to 16 channels, three
stages of ``n`` :class:`VariantBlock` s with 16 / 32 / 64 channels at 32x32 / 16x16 / 8x8, global
average pool, linear. Stages 2 and 3 start with a stride-2 unit. Bottleneck nets
(:class:`CifarBottleneckResNet`, depth ``9n + 2``, Table 4): units 1x1-3x3-1x1 with stage widths
16 / 32 / 64 and 4x expansion (outputs 64 / 128 / 256).

Shortcuts when the shape changes: every variant uses a 1x1 projection (stride 2 at the two
downsampling units, and stride 1 at the bottleneck nets' first 16 -> 64 unit) followed by BN,
the projection shortcut of the paper's implementation (fb.resnet.torch option B: conv + BN).
Note: the authors' pre-activation code (KaimingHe/resnet-1k-layers) uses a bare 1x1 conv
there, without BN; pass ``projection_bn=False`` to get that (2 * C parameters fewer per
projection). In the pre-activation forms the projection reads the pre-activated input
(``relu(bn1(x))``, "common BN, ReLU" of that code; ``relu(x)`` for ``relu_preact``); an identity
shortcut always carries the raw ``x``.

Unit view (uniform for all variants and for :class:`BottleneckBlock`)::

    forward(x) == merge(shortcut(x), branch(x), gates(x))

* ``shortcut(x) -> Tensor``: the shortcut path *before* any scaling or gating (identity,
  projection, the 1x1 conv of ``conv_shortcut``, or the dropout of ``dropout_shortcut``).
* ``branch(x) -> Tensor``: the residual function ``F(x)``, up to but excluding the addition.
* ``gates(x) -> (g_shortcut, g_branch) | None``: the multiplicative gates that depend on the
  input; ``None`` for ungated variants. ``exclusive_gating``: ``(1 - g, g)``;
  ``shortcut_gating``: ``(1 - g, None)`` (None = no gate on that path); ``g = sigmoid(gate(x))``.
* ``merge(a, b, gates=None) -> Tensor``: combines shortcut ``a`` and branch ``b``, including any
  constant scaling, the gates, the post-addition BN and the post-addition ReLU. Deleting a unit
  is ``merge(shortcut(x), zeros_like(branch(x)), gates(x))``.

Variants (``VARIANTS``), with the paper's figure and the merge rule:

=================  ========  =====================================================================
variant            figure    unit
=================  ========  =====================================================================
original           2(a),4(a) ``relu(a + b)``, ``b = bn2(conv2(relu(bn1(conv1(x)))))``
const_scaling      2(b)      ``relu(0.5 a + 0.5 b)`` (Table 1's only trainable constant row)
exclusive_gating   2(c)      ``relu((1 - g) a + g b)``, gate bias init -6 (best in Table 1: 8.70 %)
shortcut_gating    2(d)      ``relu((1 - g) a + b)``, gate bias init -6 (best in Table 1: 6.91 %;
                             init 0 gives 12.86 %)
conv_shortcut      2(e)      ``relu(bn(conv1x1(x)) + b)`` on every unit
dropout_shortcut   2(f)      ``relu(dropout_0.5(a) + b)``
bn_after_add       4(b)      ``relu(bn_add(a + b))``
relu_before_add    4(c)      ``a + relu(bn2(conv2(relu(bn1(conv1(x))))))``, no ReLU after the add
relu_preact        4(d)      ``a + bn2(conv2(relu(bn1(conv1(relu(x))))))``
full_preact        4(e)      ``a + conv2(relu(bn2(conv1(relu(bn1(x))))))``
=================  ========  =====================================================================

The scalings, gates and dropout apply at the projection units too (to the projected shortcut).
Gates are 1x1 convs ``in_planes -> planes`` with bias (stride 2 at a downsampling unit), one gate
per output channel and position, ``g(x) = sigmoid(W_g x + b_g)``; the weights get the same He
init as the other convs, the bias ``b_g = gate_bias`` (default -6, see above), so at init
``1 - g ~ 1``: the shortcut is nearly an identity, as the paper's highway-style init intends.

``dropout_shortcut``: ``nn.Dropout(0.5)`` on the shortcut. PyTorch's dropout is *inverted*: in
training the kept entries are multiplied by ``1 / (1 - p) = 2``, so the shortcut's expectation is
``x``; in eval mode the dropout is the identity and the unit computes ``relu(a + b)`` exactly like
``original``. The paper's reading ("a scale of lambda with an expectation of 0.5 on the shortcut")
is of the unscaled Bernoulli mask; that scale is what training sees per sample, not what eval does.
Eval mode also shifts the variance every BN after such a unit saw in training (its running
statistics were gathered with the masked, x2-scaled shortcut). Measured on digits (seed 0, 1
thread): ``resnet20_dropout_shortcut`` after the default 205 steps ends at 75 % training error
(with dropout on) and chance in eval mode, the paper's "fails to converge" in small; after 820
steps (``--epochs 20``) it reaches 16.8 % training error, 91.8 % test accuracy averaging 8 passes
with dropout on, but 35.0 % in eval mode, where every analysis runs. Its digits default is
therefore 1,640 steps (``--epochs 40``, the recipe's cosine stretched over them), which end at
2.8 % training error and 97.0 % test accuracy in eval mode: at depth 20 the variance shift
closes. ``resnet56_dropout_shortcut`` does not train in those 1,640 steps (79 % training error
with dropout on, 10.0 % test accuracy): the paper's "fail" at depth 110 holds from 56.

``response_bns`` (per block): the BNs *inside the block* that directly follow a 3x3 conv.
Post-activation variants and ``relu_preact``: ``(bn1, bn2)`` (after ``conv1`` and ``conv2``; for
``bn_after_add`` ``bn_add`` is not included). ``full_preact``: ``(bn2,)``, the pre-activation BN
of ``conv2`` that normalises ``conv1``'s output; ``conv2``'s output is normalised only after the
addition, by the next block's ``bn1`` (or the model's final ``bn``), which belongs to another
module, so it is not listed. ``response_convs`` always lists the block's 3x3 convs
``(conv1, conv2)`` so an analysis can hook the raw conv outputs instead.
:class:`BottleneckBlock`: ``response_convs = (conv2,)`` (its 3x3), ``response_bns = (bn2,)``
post-activation, ``(bn3,)`` pre-activation.

Model layout: ``conv1`` (3x3, 3 -> 16), ``bn1`` (after ``conv1``; ``None`` for ``full_preact`` and
pre-activation bottleneck nets, whose first unit's ``bn1`` plays that role, as in the authors'
code), ``layer1..layer3`` (``nn.Sequential`` of blocks), ``bn`` (final BN before the ReLU and
pooling, pre-activation only; ``None`` otherwise), ``linear``. The stem is ``relu(bn1(conv1(x)))``
for the post-activation variants and ``bn1(conv1(x))`` for ``relu_preact`` (its first unit starts
with a ReLU; the net ends with a plain ReLU before pooling, the paper's "extra activation after the
last addition", and has no final BN). ``full_preact``: stem ``conv1`` only, final
``relu(bn(.))``.

Strides: the basic blocks stride their first 3x3 conv; the post-activation bottleneck strides its
3x3 conv (fb.resnet.torch), the pre-activation bottleneck its first 1x1 conv (resnet-1k-layers).

Init as the authors' code: conv weights ``N(0, 2 / (k * k * out_channels))`` (He, fan-out), BN
weight 1 bias 0, linear bias 0.

Parameter counts (10 classes), Table 4: ``resnet164`` 1,704,154 and ``preact_resnet164``
1,704,154 (1.7M), ``preact_resnet1001`` 10,328,602 (10.2M; +1.3 %). ResNet-110 (any variant
without extra shortcut parameters) has 1,730,714.
"""

from __future__ import annotations

from typing import Optional, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = [
    "VARIANTS",
    "PREACT_VARIANTS",
    "GATED_VARIANTS",
    "DEFAULT_GATE_BIAS",
    "VariantBlock",
    "BottleneckBlock",
    "CifarVariantResNet",
    "CifarBottleneckResNet",
    "variant_resnet",
    "resnet164",
    "preact_resnet164",
    "preact_resnet1001",
]

VARIANTS: Tuple[str, ...] = (
    "original",
    "const_scaling",
    "exclusive_gating",
    "shortcut_gating",
    "conv_shortcut",
    "dropout_shortcut",
    "bn_after_add",
    "relu_before_add",
    "relu_preact",
    "full_preact",
)
PREACT_VARIANTS: Tuple[str, ...] = ("relu_preact", "full_preact")
GATED_VARIANTS: Tuple[str, ...] = ("exclusive_gating", "shortcut_gating")
# Table 1 (ResNet-110, CIFAR-10): exclusive gating fails for b_g in 0..-5, 8.70 % at -6, 9.81 % at -7;
# shortcut-only gating 12.86 % at b_g = 0 and 6.91 % at b_g = -6. -6 is the best reported for both.
DEFAULT_GATE_BIAS = {"exclusive_gating": -6.0, "shortcut_gating": -6.0}
CONST_SCALE = 0.5  # Table 1: constant scaling 0.5 on the shortcut and 0.5 on F (12.35 %)
STAGE_PLANES: Tuple[int, ...] = (16, 32, 64)

Gates = Optional[Tuple[Optional[Tensor], Optional[Tensor]]]


def _conv3x3(in_planes: int, planes: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_planes, planes, kernel_size=3, stride=stride, padding=1, bias=False)


def _conv1x1(in_planes: int, planes: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_planes, planes, kernel_size=1, stride=stride, bias=False)


def _projection(in_planes: int, planes: int, stride: int, bn: bool = True) -> nn.Sequential:
    """1x1 conv (stride ``stride``) + BN (unless ``bn`` is False)."""
    layers: list[nn.Module] = [_conv1x1(in_planes, planes, stride)]
    if bn:
        layers.append(nn.BatchNorm2d(planes))
    return nn.Sequential(*layers)


def _he_init(model: nn.Module) -> None:
    """Authors' init; gate biases are set afterwards by the blocks themselves."""
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear):
            nn.init.zeros_(m.bias)


class VariantBlock(nn.Module):
    """A basic (two 3x3 convs) residual unit in one of the paper's ``VARIANTS``.

    ``forward(x) == merge(shortcut(x), branch(x), gates(x))``; see the module docstring.
    Submodules: ``conv1``, ``bn1``, ``conv2``, ``bn2`` (for ``full_preact`` ``bn1`` is over
    ``in_planes`` and precedes ``conv1``); ``projection`` (Sequential 1x1 conv + BN, or None);
    ``gate`` (1x1 conv with bias, gating variants); ``drop`` (``dropout_shortcut``); ``bn_add``
    (``bn_after_add``).
    """

    def __init__(
        self,
        variant: str,
        in_planes: int,
        planes: int,
        stride: int = 1,
        gate_bias: Optional[float] = None,
        dropout_p: float = 0.5,
        projection_bn: bool = True,
    ) -> None:
        super().__init__()
        if variant not in VARIANTS:
            raise ValueError(f"unknown variant {variant!r}; use one of {VARIANTS}")
        self.variant = variant
        self.in_planes = in_planes
        self.planes = planes
        self.stride = stride
        self.preact = variant in PREACT_VARIANTS
        if variant == "full_preact":
            self.bn1 = nn.BatchNorm2d(in_planes)
            self.conv1 = _conv3x3(in_planes, planes, stride)
            self.bn2 = nn.BatchNorm2d(planes)
            self.conv2 = _conv3x3(planes, planes)
        else:
            self.conv1 = _conv3x3(in_planes, planes, stride)
            self.bn1 = nn.BatchNorm2d(planes)
            self.conv2 = _conv3x3(planes, planes)
            self.bn2 = nn.BatchNorm2d(planes)
        changes_shape = stride != 1 or in_planes != planes
        self.projection: Optional[nn.Sequential] = (
            _projection(in_planes, planes, stride, projection_bn)
            if changes_shape or variant == "conv_shortcut" else None
        )
        self.gate: Optional[nn.Conv2d] = None
        self.gate_bias: Optional[float] = None
        if variant in GATED_VARIANTS:
            self.gate_bias = DEFAULT_GATE_BIAS[variant] if gate_bias is None else float(gate_bias)
            self.gate = nn.Conv2d(in_planes, planes, kernel_size=1, stride=stride, bias=True)
        self.drop: Optional[nn.Dropout] = nn.Dropout(dropout_p) if variant == "dropout_shortcut" else None
        self.bn_add: Optional[nn.BatchNorm2d] = nn.BatchNorm2d(planes) if variant == "bn_after_add" else None
        _he_init(self)
        self.reset_gate_bias()

    def reset_gate_bias(self) -> None:
        """Set the gate bias to ``gate_bias`` (the init of Table 1); no-op without a gate."""
        if self.gate is not None and self.gate.bias is not None and self.gate_bias is not None:
            nn.init.constant_(self.gate.bias, self.gate_bias)

    @property
    def response_convs(self) -> Tuple[nn.Conv2d, ...]:
        """The two 3x3 convs ``(conv1, conv2)``."""
        return (self.conv1, self.conv2)

    @property
    def response_bns(self) -> Tuple[nn.BatchNorm2d, ...]:
        """BNs inside the block directly after a 3x3 conv: ``(bn1, bn2)``, or ``(bn2,)`` for full_preact."""
        if self.variant == "full_preact":
            return (self.bn2,)
        return (self.bn1, self.bn2)

    def _preactivate(self, x: Tensor) -> Tensor:
        """The shared pre-activation of the pre-activation variants (identity otherwise)."""
        if self.variant == "full_preact":
            return F.relu(self.bn1(x))
        if self.variant == "relu_preact":
            return F.relu(x)
        return x

    def shortcut(self, x: Tensor) -> Tensor:
        """The shortcut path before scaling or gating."""
        if self.projection is None:
            out = x
        else:
            out = self.projection(self._preactivate(x))
        if self.drop is not None:
            out = self.drop(out)
        return out

    def branch(self, x: Tensor) -> Tensor:
        """The residual function ``F(x)``, up to the addition."""
        v = self.variant
        if v == "full_preact":
            return self.conv2(F.relu(self.bn2(self.conv1(F.relu(self.bn1(x))))))
        if v == "relu_preact":
            return self.bn2(self.conv2(F.relu(self.bn1(self.conv1(F.relu(x))))))
        out = self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x)))))
        if v == "relu_before_add":
            out = F.relu(out)
        return out

    def gates(self, x: Tensor) -> Gates:
        """``(g_shortcut, g_branch)`` from the input, or None for ungated variants."""
        if self.gate is None:
            return None
        g = torch.sigmoid(self.gate(x))
        if self.variant == "exclusive_gating":
            return (1.0 - g, g)
        return (1.0 - g, None)

    def merge(self, a: Tensor, b: Tensor, gates: Gates = None) -> Tensor:
        """Combine shortcut ``a`` and branch ``b`` (``gates`` from :meth:`gates`, needed when gated)."""
        v = self.variant
        if v in GATED_VARIANTS:
            if gates is None:
                raise ValueError(f"{v} needs merge(a, b, gates(x)); got gates=None")
            g_a, g_b = gates
            if g_a is not None:
                a = g_a * a
            if g_b is not None:
                b = g_b * b
            return F.relu(a + b)
        if v == "const_scaling":
            return F.relu(CONST_SCALE * a + CONST_SCALE * b)
        if v == "bn_after_add":
            assert self.bn_add is not None
            return F.relu(self.bn_add(a + b))
        if v in ("relu_before_add", "relu_preact", "full_preact"):
            return a + b
        return F.relu(a + b)  # original, conv_shortcut, dropout_shortcut

    def forward(self, x: Tensor) -> Tensor:
        return self.merge(self.shortcut(x), self.branch(x), self.gates(x))

    def extra_repr(self) -> str:
        return f"variant={self.variant!r}, in_planes={self.in_planes}, planes={self.planes}, stride={self.stride}"


class BottleneckBlock(nn.Module):
    """1x1 (planes) - 3x3 (planes) - 1x1 (4 * planes) unit, post-activation or full pre-activation.

    Post-activation (``preact=False``): ``relu(a + bn3(conv3(relu(bn2(conv2(relu(bn1(conv1(x)))))))))``,
    stride on ``conv2``. Pre-activation: ``a + conv3(relu(bn3(conv2(relu(bn2(conv1(relu(bn1(x)))))))))``,
    stride on ``conv1``, projection on ``relu(bn1(x))``. Same unit view as :class:`VariantBlock`
    (``gates`` always returns None).
    """

    expansion = 4

    def __init__(
        self, in_planes: int, planes: int, stride: int = 1, preact: bool = False, projection_bn: bool = True
    ) -> None:
        super().__init__()
        self.in_planes = in_planes
        self.planes = planes
        self.out_planes = self.expansion * planes
        self.stride = stride
        self.preact = preact
        if preact:
            self.bn1 = nn.BatchNorm2d(in_planes)
            self.conv1 = _conv1x1(in_planes, planes, stride)
            self.bn2 = nn.BatchNorm2d(planes)
            self.conv2 = _conv3x3(planes, planes)
            self.bn3 = nn.BatchNorm2d(planes)
            self.conv3 = _conv1x1(planes, self.out_planes)
        else:
            self.conv1 = _conv1x1(in_planes, planes)
            self.bn1 = nn.BatchNorm2d(planes)
            self.conv2 = _conv3x3(planes, planes, stride)
            self.bn2 = nn.BatchNorm2d(planes)
            self.conv3 = _conv1x1(planes, self.out_planes)
            self.bn3 = nn.BatchNorm2d(self.out_planes)
        changes_shape = stride != 1 or in_planes != self.out_planes
        self.projection: Optional[nn.Sequential] = (
            _projection(in_planes, self.out_planes, stride, projection_bn) if changes_shape else None
        )
        _he_init(self)

    @property
    def response_convs(self) -> Tuple[nn.Conv2d, ...]:
        """The 3x3 conv ``(conv2,)``."""
        return (self.conv2,)

    @property
    def response_bns(self) -> Tuple[nn.BatchNorm2d, ...]:
        """The BN right after the 3x3 conv: ``(bn2,)`` post-activation, ``(bn3,)`` pre-activation."""
        return (self.bn3,) if self.preact else (self.bn2,)

    def shortcut(self, x: Tensor) -> Tensor:
        if self.projection is None:
            return x
        return self.projection(F.relu(self.bn1(x)) if self.preact else x)

    def branch(self, x: Tensor) -> Tensor:
        if self.preact:
            out = self.conv1(F.relu(self.bn1(x)))
            out = self.conv2(F.relu(self.bn2(out)))
            return self.conv3(F.relu(self.bn3(out)))
        out = F.relu(self.bn1(self.conv1(x)))
        out = F.relu(self.bn2(self.conv2(out)))
        return self.bn3(self.conv3(out))

    def gates(self, x: Tensor) -> Gates:
        """Always None: no gates (kept for the uniform unit view)."""
        return None

    def merge(self, a: Tensor, b: Tensor, gates: Gates = None) -> Tensor:
        return a + b if self.preact else F.relu(a + b)

    def forward(self, x: Tensor) -> Tensor:
        return self.merge(self.shortcut(x), self.branch(x), self.gates(x))

    def extra_repr(self) -> str:
        return f"in_planes={self.in_planes}, planes={self.planes}, stride={self.stride}, preact={self.preact}"


class CifarVariantResNet(nn.Module):
    """A CIFAR ResNet of depth ``6n + 2`` built from ``VariantBlock(variant, ...)``.

    ``conv1``, ``bn1`` (None for full_preact), ``layer1..layer3``, ``bn`` (full_preact only, else
    None), ``linear``. See the module docstring for the stem and head of each variant.
    """

    def __init__(
        self,
        depth: int,
        variant: str = "original",
        num_classes: int = 10,
        gate_bias: Optional[float] = None,
        dropout_p: float = 0.5,
        projection_bn: bool = True,
    ) -> None:
        super().__init__()
        if variant not in VARIANTS:
            raise ValueError(f"unknown variant {variant!r}; use one of {VARIANTS}")
        if depth < 8 or (depth - 2) % 6:
            raise ValueError(f"depth must be 6n+2 with n >= 1, got {depth}")
        self.depth = depth
        self.variant = variant
        self.num_blocks = (depth - 2) // 6
        self.num_classes = num_classes
        self.conv1 = _conv3x3(3, STAGE_PLANES[0])
        self.bn1: Optional[nn.BatchNorm2d] = None if variant == "full_preact" else nn.BatchNorm2d(STAGE_PLANES[0])
        in_planes = STAGE_PLANES[0]
        layers = []
        for i, planes in enumerate(STAGE_PLANES):
            blocks = []
            for j in range(self.num_blocks):
                stride = 2 if (i > 0 and j == 0) else 1
                blocks.append(VariantBlock(variant, in_planes, planes, stride, gate_bias, dropout_p, projection_bn))
                in_planes = planes
            layers.append(nn.Sequential(*blocks))
        self.layer1: nn.Sequential = layers[0]
        self.layer2: nn.Sequential = layers[1]
        self.layer3: nn.Sequential = layers[2]
        self.bn: Optional[nn.BatchNorm2d] = nn.BatchNorm2d(in_planes) if variant == "full_preact" else None
        self.linear = nn.Linear(in_planes, num_classes)
        _he_init(self)
        for block in self.blocks:
            block.reset_gate_bias()

    @property
    def blocks(self) -> Tuple[VariantBlock, ...]:
        """Every unit, stage by stage."""
        return tuple(m for m in self.modules() if isinstance(m, VariantBlock))

    def stem(self, x: Tensor) -> Tensor:
        out = self.conv1(x)
        if self.bn1 is not None:
            out = self.bn1(out)
            if self.variant != "relu_preact":
                out = F.relu(out)
        return out

    def head(self, x: Tensor) -> Tensor:
        """Final activation (pre-activation variants), global average pool, linear."""
        if self.bn is not None:
            x = F.relu(self.bn(x))
        elif self.variant == "relu_preact":
            x = F.relu(x)
        return self.linear(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))

    def forward(self, x: Tensor) -> Tensor:
        x = self.stem(x)
        x = self.layer3(self.layer2(self.layer1(x)))
        return self.head(x)

    def extra_repr(self) -> str:
        return f"depth={self.depth}, variant={self.variant!r}"


class CifarBottleneckResNet(nn.Module):
    """A CIFAR bottleneck ResNet of depth ``9n + 2`` (Table 4), post- or full pre-activation.

    ``conv1``, ``bn1`` (post-activation only, else None), ``layer1..layer3`` (``nn.Sequential`` of
    :class:`BottleneckBlock`, outputs 64 / 128 / 256), ``bn`` (pre-activation only, else None),
    ``linear``.
    """

    def __init__(self, depth: int, preact: bool = False, num_classes: int = 10, projection_bn: bool = True) -> None:
        super().__init__()
        if depth < 11 or (depth - 2) % 9:
            raise ValueError(f"depth must be 9n+2 with n >= 1, got {depth}")
        self.depth = depth
        self.preact = preact
        self.variant = "full_preact" if preact else "original"
        self.num_blocks = (depth - 2) // 9
        self.num_classes = num_classes
        self.conv1 = _conv3x3(3, STAGE_PLANES[0])
        self.bn1: Optional[nn.BatchNorm2d] = None if preact else nn.BatchNorm2d(STAGE_PLANES[0])
        in_planes = STAGE_PLANES[0]
        layers = []
        for i, planes in enumerate(STAGE_PLANES):
            blocks = []
            for j in range(self.num_blocks):
                stride = 2 if (i > 0 and j == 0) else 1
                block = BottleneckBlock(in_planes, planes, stride, preact, projection_bn)
                blocks.append(block)
                in_planes = block.out_planes
            layers.append(nn.Sequential(*blocks))
        self.layer1: nn.Sequential = layers[0]
        self.layer2: nn.Sequential = layers[1]
        self.layer3: nn.Sequential = layers[2]
        self.bn: Optional[nn.BatchNorm2d] = nn.BatchNorm2d(in_planes) if preact else None
        self.linear = nn.Linear(in_planes, num_classes)
        _he_init(self)

    @property
    def blocks(self) -> Tuple[BottleneckBlock, ...]:
        return tuple(m for m in self.modules() if isinstance(m, BottleneckBlock))

    def stem(self, x: Tensor) -> Tensor:
        out = self.conv1(x)
        if self.bn1 is not None:
            out = F.relu(self.bn1(out))
        return out

    def head(self, x: Tensor) -> Tensor:
        if self.bn is not None:
            x = F.relu(self.bn(x))
        return self.linear(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))

    def forward(self, x: Tensor) -> Tensor:
        x = self.stem(x)
        x = self.layer3(self.layer2(self.layer1(x)))
        return self.head(x)

    def extra_repr(self) -> str:
        return f"depth={self.depth}, preact={self.preact}"


def variant_resnet(depth: int, variant: str, num_classes: int = 10) -> CifarVariantResNet:
    """``CifarVariantResNet(depth, variant, num_classes)``; the paper's Tables 1-2 use depth 110."""
    return CifarVariantResNet(depth, variant, num_classes)


def resnet164(num_classes: int = 10) -> CifarBottleneckResNet:
    """Original (post-activation) bottleneck ResNet-164, 1.7M parameters in Table 4."""
    return CifarBottleneckResNet(164, preact=False, num_classes=num_classes)


def preact_resnet164(num_classes: int = 10) -> CifarBottleneckResNet:
    """Full pre-activation bottleneck ResNet-164, 1.7M parameters in Table 4."""
    return CifarBottleneckResNet(164, preact=True, num_classes=num_classes)


def preact_resnet1001(num_classes: int = 10) -> CifarBottleneckResNet:
    """Full pre-activation bottleneck ResNet-1001, 10.2M parameters in Table 4."""
    return CifarBottleneckResNet(1001, preact=True, num_classes=num_classes)
