"""Training recipes: He et al. 2015's CIFAR schedule and a short one for the embedded digits.

A recipe is a pure description: every learning rate is a function of the iteration alone, so
a resumed run needs nothing but the iteration count to continue the schedule exactly.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

from resnet_probe.errors import ProbeError
from resnet_probe.models.zoo.families import BOTTLENECK, DENSENET

AUGMENTS: tuple[str, ...] = ("crop-flip", "crop", "none")
SCHEDULES: tuple[str, ...] = ("step", "cosine")

# He et al. 2015, Sec. 4.2: batch 128, lr 0.1 divided by 10 at 32k and 48k, stop at 64k.
HE_ITERS = 64_000
HE_MILESTONES = (0.5, 0.75)  # 32k and 48k of 64k, kept as fractions when the length changes
HE_WARMUP_DEPTH = 110  # "for the 110-layer net ... 0.01 to warm up ... about 400 iterations"
HE_WARMUP_ITERS = 400

# Digits: 1,297 training images of an easy task; 5 epochs of batch 32 (205 steps), cosine
# decay, seed 0. Test accuracy measured per peak lr (and with one warm-up epoch at lr/10):
#   lr 0.05:           resnet20 99.0 %, plain20 98.8 %, resnet56 28.0 % (diverged), plain56 28.8 %
#   lr 0.05 + warm-up: resnet56 98.2 %, resnet110 19.2 % (diverged), plain56 39.4 %
#   lr 0.02:           resnet20 98.2 %, resnet56 99.2 %, resnet110 95.8 %, plain56 28.6 %
# so 0.02 without warm-up: every ResNet trains. Plain-56 barely trains in 205 steps at any of
# these rates (He et al.'s degradation problem); on an idle 2-core CPU (2 threads) the demo's
# run gave plain20 97.4 %, plain56 48.0 %, resnet20 98.6 %, resnet56 98.8 %: a net this close
# to not training lands differently when the thread count changes the order of float sums.
# Batch 128 needs 8 epochs for 96 % (resnet20); horizontal flips cost ~15 points (a mirrored
# 2 is not a 2): digits are only padded and cropped.
DIGITS_EPOCHS = 5
DIGITS_BATCH = 32
DIGITS_LR = 0.02
# Bottleneck depths (ResNet-164, pre-activation 164 and 1001) do not train on that recipe:
# resnet164 10.0 %, preact_resnet164 40.6 % after 205 steps at 0.02. At init the original
# ResNet-164's gradient norm is 1,699 (resnet110: 31), almost all of it in the stem and the
# first stage (each post-activation unit multiplies the backward signal by about 1.2), so small
# rates only crawl and high ones thrash. He et al.'s answer works: a warm-up, then a higher
# rate, given more steps. Measured, seed 0, 1 thread, digits test accuracy, one warm-up epoch
# at lr/10, cosine, 10 epochs (410 steps) unless said:
#   lr 0.01 (5 epochs, no warm-up): resnet164 19.2 %
#   lr 0.02 (2 warm-up epochs):     resnet164 54.6 %
#   lr 0.05:                        resnet164 83.2 % (15 epochs: 83.4 %), preact_resnet164 99.2 %
#   lr 0.1:                         resnet164 22.2 %, preact_resnet164 98.8 %
# and through the CLI (2 threads) at 0.05: preact_resnet164 99.2 %, resnet164 22.6 %. Three
# warm-up epochs of 12 do not fix it: resnet164 94.8 % (2 threads) / 18.4 % (1 thread),
# preact_resnet164 98.6 %. Nor do a linear warm-up over 2 epochs (34.0 %, bf16), He et al.'s
# adaptive one (lr/10 until the running training error is under 80 %, reached at step 177:
# 74.4 %, bf16) or clipping the gradient norm at 2 (27.0 %, bf16); the default 410 steps in
# bf16 give 20.8 % and 23.6 % (seeds 0, 1). What works is time: 40 epochs (1,640 steps) reach
# 96.0 % (bf16, seed 0, 1 thread) and 99.2 % (fp32, the default, 1 thread), so the original
# bottleneck net gets four times the long recipe: the Identity-Mappings paper's point (the pre-activation
# twin needs 410 steps for 99.2 %) in small.
DIGITS_DEEP_DEPTH = 164
DIGITS_DEEP_EPOCHS = 10
DIGITS_DEEP_LR = 0.05
# DenseNets at any depth crawl on the short recipe: densenet40_k12 85.8 %, densenet_bc100_k12
# 79.8 % after 205 steps at 0.02. On the long one (fp32, 1 thread): densenet40_k12 98.4 %,
# densenet_bc100_k12 98.8 % (Huang et al. train them at 0.1 with batch 64).
DIGITS_LONG_FAMILIES = frozenset({DENSENET})
DIGITS_LONG_EPOCHS: dict[str, int] = {BOTTLENECK: 40}  # families whose long recipe runs longer still
# Four of He et al. 2016's unit variants (the zoo's `variant`) are far from trained after the
# short recipe's 205 steps; they need more of the same recipe (lr 0.02, cosine over the longer
# run). Digits test accuracy at depth 20, seed 0, 1 thread, by epochs of 41 steps:
#   const_scaling     5: 46.0 %   20: 99.4 %   40: 100.0 %
#   bn_after_add      5: 71.8 %   20: 99.2 %
#   dropout_shortcut  5: 10.0 %   20: 65.0 %   40: 97.0 %   (He et al.: "fail" at depth 110)
#   exclusive_gating  5: 29.0 %   20: 51.2 %   40: 86.8 %   80: 98.6 %
# (exclusive gating's bias -6 opens the branch to sigmoid(-6) = 0.25 % at init, so the gate and
# the branch crawl at a low rate; at lr 0.1 20 epochs give 98.8 %, but a rate that high makes
# the deeper nets diverge.) Each variant under 90 % after 205 steps gets the shortest length
# measured at depth 20 that reached 95 %, at every depth; the others train in 205 steps
# (shortcut_gating 98.0 %, conv_shortcut 93.2 %, relu_before_add and relu_preact 97.2 %). At
# depth 56, each on its default: const_scaling 98.4 %, bn_after_add 98.6 %, exclusive_gating
# 99.4 %, but dropout_shortcut still 10.0 % (79 % training error with dropout on): the paper's
# "fail", which more steps do not undo.
DIGITS_VARIANT_EPOCHS: dict[str, int] = {
    "const_scaling": 20,
    "bn_after_add": 20,
    "dropout_shortcut": 40,
    "exclusive_gating": 80,
}


@dataclass(frozen=True)
class Recipe:
    """SGD settings and a learning-rate schedule over a fixed number of iterations."""

    name: str
    lr: float
    iters: int
    batch_size: int
    schedule: str = "step"
    milestones: tuple[int, ...] = ()  # iterations at which a step schedule divides lr by 10
    warmup_iters: int = 0
    warmup_lr: float = 0.0
    momentum: float = 0.9
    weight_decay: float = 1e-4
    augment: str = "crop-flip"

    def __post_init__(self) -> None:
        if self.augment not in AUGMENTS:
            raise ProbeError(f"unknown augmentation {self.augment!r}; valid: {', '.join(AUGMENTS)}")
        if self.schedule not in SCHEDULES:
            raise ProbeError(f"unknown schedule {self.schedule!r}; valid: {', '.join(SCHEDULES)}")
        if self.iters < 1:
            raise ProbeError(f"a training run needs at least 1 iteration, got {self.iters}")
        if not self.lr > 0:
            raise ProbeError(f"--lr {self.lr}: the learning rate must be positive")
        if self.batch_size < 1:
            raise ProbeError(f"batch size must be at least 1, got {self.batch_size}")

    def lr_at(self, iteration: int) -> float:
        """The learning rate of the step that starts at ``iteration`` (0-based)."""
        if iteration < self.warmup_iters:
            return self.warmup_lr
        if self.schedule == "cosine":
            return self.lr * 0.5 * (1.0 + math.cos(math.pi * iteration / self.iters))
        return self.lr * 0.1 ** sum(iteration >= m for m in self.milestones)

    def epochs(self, train_size: int) -> int:
        """Passes over ``train_size`` images needed for :attr:`iters` (the last may be partial)."""
        return math.ceil(self.iters / iters_per_epoch(train_size, self.batch_size))

    def to_dict(self) -> dict[str, Any]:
        """JSON form (the checkpoint's ``train_args``)."""
        d = asdict(self)
        d["milestones"] = list(self.milestones)
        return d


def iters_per_epoch(train_size: int, batch_size: int) -> int:
    """Steps in one pass; the last, smaller batch counts as one."""
    if train_size < 1:
        raise ProbeError("the training set is empty")
    return math.ceil(train_size / batch_size)


def choose_recipe(
    dataset: str,
    train_size: int,
    *,
    depth: int | None = None,
    family: str | None = None,
    variant: str | None = None,
    epochs: int | None = None,
    iters: int | None = None,
    lr: float | None = None,
    batch_size: int | None = None,
) -> Recipe:
    """The digits recipe for ``digits``, He et al.'s for anything else.

    On digits, bottleneck depths and DenseNets (``family``) get the long one: warmed up, higher
    and longer (the original post-activation bottleneck family four times longer again); the
    unit variants that optimise slowly (``variant``, :data:`DIGITS_VARIANT_EPOCHS`) run longer.
    Overrides apply to either.

    Example:
        >>> choose_recipe("cifar10", 50_000, depth=110).lr_at(0)  # warm-up
        0.01
    """
    if epochs is not None and iters is not None:
        raise ProbeError("--epochs and --iters exclude each other; pass one")
    if epochs is not None and epochs < 1:
        raise ProbeError(f"--epochs {epochs}: must be at least 1")
    if iters is not None and iters < 1:
        raise ProbeError(f"--iters {iters}: must be at least 1")
    if dataset == "digits":
        bs = batch_size or DIGITS_BATCH
        per_epoch = iters_per_epoch(train_size, bs)
        deep = (depth is not None and depth >= DIGITS_DEEP_DEPTH) or family in DIGITS_LONG_FAMILIES
        own = DIGITS_LONG_EPOCHS.get(family or "", DIGITS_DEEP_EPOCHS) if deep else DIGITS_EPOCHS
        own = max(own, DIGITS_VARIANT_EPOCHS.get(variant or "", 0))
        total = iters or per_epoch * (epochs or own)
        base = lr or (DIGITS_DEEP_LR if deep else DIGITS_LR)
        warm = per_epoch if deep and total > per_epoch else 0
        return Recipe("digits", base, total, bs, "cosine", (), warm, base / 10, augment="crop")
    bs = batch_size or 128
    total = iters or (iters_per_epoch(train_size, bs) * epochs if epochs else HE_ITERS)
    base = lr or 0.1
    milestones = tuple(int(round(f * total)) for f in HE_MILESTONES)
    warm = HE_WARMUP_ITERS if depth is not None and depth >= HE_WARMUP_DEPTH and total > HE_WARMUP_ITERS else 0
    return Recipe("he2015", base, total, bs, "step", milestones, warm, base / 10, augment="crop-flip")


def model_recipe(
    loaded: Any,
    dataset: str,
    train_size: int,
    *,
    epochs: int | None = None,
    iters: int | None = None,
    lr: float | None = None,
    batch_size: int | None = None,
    variant_length: bool = True,
) -> Recipe:
    """:func:`choose_recipe` for a loaded model: its ``depth`` and ``variant`` attributes (if any) and its family.

    ``variant_length=False`` leaves the unit variants at their base recipe's length: an
    experiment grid measures them at the budget its reference needs, as He et al. 2016 did.
    """
    depth = getattr(loaded.model, "depth", None)
    variant = getattr(loaded.model, "variant", None) if variant_length else None
    return choose_recipe(
        dataset,
        train_size,
        depth=depth if isinstance(depth, int) else None,
        family=loaded.topology.family,
        variant=variant if isinstance(variant, str) else None,
        epochs=epochs,
        iters=iters,
        lr=lr,
        batch_size=batch_size,
    )
