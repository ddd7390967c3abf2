"""Accuracy and loss of many plans over a data set, one pass over the data."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Collection, Sequence

import numpy as np
import torch
from torch import Tensor

from resnet_probe import distributed
from resnet_probe.data import DataSource
from resnet_probe.data.preprocessing import Preprocessing
from resnet_probe.errors import PlanError
from resnet_probe.executor import Executor, Plan
from resnet_probe.stats import (
    confidence_sequence,
    holm,
    mcnemar_exact,
    pack_bits,
    paired_counts,
    unpack_bits,
    wilson_interval,
)


@dataclass(frozen=True)
class Score:
    """Correct predictions, images and summed cross-entropy of one plan.

    ``hits`` is the per-image correctness in data order, packed (:func:`stats.pack_bits`), so
    that paired tests against another plan on the same images can be computed and recomputed.
    """

    correct: int
    n: int
    loss_sum: float
    hits: str | None = None
    stopped: bool = False  # scored adaptively and stopped before the last image

    @property
    def correct_mask(self) -> np.ndarray:
        """Per-image correctness as booleans."""
        if self.hits is None:
            raise ValueError("this score carries no per-image correctness")
        return unpack_bits(self.hits, self.n)

    @property
    def accuracy(self) -> float:
        """Fraction correct."""
        return self.correct / self.n if self.n else 0.0

    @property
    def loss(self) -> float:
        """Mean cross-entropy."""
        return self.loss_sum / self.n if self.n else 0.0


@dataclass(frozen=True)
class Stopping:
    """Adaptive evaluation: stop scoring a plan once its accuracy is known to within ``tolerance``.

    The images are visited in an order shuffled with ``seed`` (a stream of exchangeable draws,
    not, say, an ImageFolder sorted by class), and after every batch each running plan's
    anytime-valid confidence sequence (:func:`resnet_probe.stats.confidence_sequence`) is
    checked; one whose half-width is at most ``tolerance`` stops. Checking after every batch
    is what a confidence sequence allows and a Wilson interval does not.
    """

    tolerance: float
    confidence: float = 0.95
    seed: int = 0

    def __post_init__(self) -> None:
        if not 0 < self.tolerance < 0.5:
            raise PlanError(f"tolerance must lie in (0, 0.5), got {self.tolerance}")

    def done(self, correct: int, n: int) -> bool:
        """Whether a plan with ``correct`` of ``n`` right may stop."""
        lo, hi = confidence_sequence(correct, n, self.confidence)
        return (hi - lo) / 2 <= self.tolerance


def score_plans(
    executor: Executor,
    data: DataSource,
    plans: Sequence[Plan],
    *,
    batch_size: int = 256,
    preprocessing: Preprocessing | None = None,
    progress: Callable[[int], None] | None = None,
    stop: Stopping | None = None,
    always: Collection[int] = (),
) -> list[Score]:
    """Score every plan on every image; batches outside, prefix-shared plans inside.

    With ``stop``, plans stop as :class:`Stopping` says (those in ``always``, e.g. the
    unchanged model, run to the end) and the plans still running share their prefixes.
    """
    if stop is not None:
        return _score_until_known(
            executor, data, plans, stop, set(always), batch_size=batch_size, preprocessing=preprocessing,
            progress=progress,
        )
    local: list[tuple[int, tuple[np.ndarray, list[float], int]]] = []
    batches = distributed.my_batches(data, batch_size, preprocessing=preprocessing, device=executor.device)
    for index, (x, y) in batches:
        y = y.to(executor.device)
        batch_hits, ce_all = _score_batch(executor, x, y, plans)
        local.append((index, (batch_hits, ce_all, int(y.shape[0]))))
        if progress is not None:
            progress(int(y.shape[0]) * distributed.world())
    # Sums in batch order on every rank: the same numbers as one process, bit for bit.
    loss = [0.0] * len(plans)
    n = 0
    parts: list[np.ndarray] = []
    for batch_hits, ce_all, size in distributed.gather_ordered(local):
        for i, ce in enumerate(ce_all):
            loss[i] += ce
        parts.append(batch_hits)
        n += size
    hits = np.concatenate(parts, axis=1) if parts else np.zeros((len(plans), 0), bool)
    return [Score(int(h.sum()), n, ce, pack_bits(h)) for h, ce in zip(hits, loss, strict=True)]


def _score_batch(executor: Executor, x: Tensor, y: Tensor, plans: Sequence[Plan]) -> tuple[np.ndarray, list[float]]:
    """Per-image correctness (plans x images) and summed cross-entropy of each plan on one batch."""

    def reduce(logits: Tensor) -> tuple[Tensor, Tensor]:
        logits = logits.float()
        return logits.argmax(dim=1) == y, torch.nn.functional.cross_entropy(logits, y, reduction="sum")

    per_plan = executor.run_plans(x, plans, reduce)
    # One device-to-host copy per batch, not two syncs per plan: on a GPU each sync would
    # drain the queue of work the executor had launched ahead.
    batch_hits = torch.stack([h for h, _ in per_plan]).cpu().numpy() if per_plan else np.zeros((0, len(y)), bool)
    ce_all = torch.stack([c for _, c in per_plan]).tolist() if per_plan else []
    return batch_hits, ce_all


def _score_until_known(
    executor: Executor,
    data: DataSource,
    plans: Sequence[Plan],
    stop: Stopping,
    always: set[int],
    *,
    batch_size: int,
    preprocessing: Preprocessing | None,
    progress: Callable[[int], None] | None,
) -> list[Score]:
    """:func:`score_plans` with stopping: ``hits`` are in the seeded visiting order, the same for every plan."""
    if distributed.world() > 1:
        raise PlanError("--tolerance scores in one process (each plan's stop depends on all images before it)")
    correct = [0] * len(plans)
    seen = [0] * len(plans)
    loss = [0.0] * len(plans)
    parts: list[list[np.ndarray]] = [[] for _ in plans]
    running = list(range(len(plans)))
    batches = data.batches(batch_size, preprocessing, executor.device, shuffle=True, seed=stop.seed)
    for x, y in batches:
        if not running:
            break
        y = y.to(executor.device)
        batch_hits, ce_all = _score_batch(executor, x, y, [plans[i] for i in running])
        for i, h, ce in zip(running, batch_hits, ce_all, strict=True):
            correct[i] += int(h.sum())
            seen[i] += int(h.shape[0])
            loss[i] += ce
            parts[i].append(h)
        if progress is not None:
            progress(int(y.shape[0]))
        running = [i for i in running if i in always or not stop.done(correct[i], seen[i])]
    total = len(data)
    return [
        Score(c, m, ce, pack_bits(np.concatenate(p) if p else np.zeros(0, bool)), stopped=m < total)
        for c, m, ce, p in zip(correct, seen, loss, parts, strict=True)
    ]


@dataclass(frozen=True)
class Paired:
    """One configuration against the unchanged model on the same images (exact McNemar, Holm-adjusted).

    ``lost``: images the unchanged model gets right and the configuration wrong; ``gained``: the reverse.
    """

    lost: int
    gained: int
    p_value: float
    p_adjusted: float
    significant: bool


def paired_tests(base: Score, scores: Sequence[Score], confidence: float) -> list[Paired]:
    """Exact McNemar of every score against ``base``, Holm's adjustment over all of them together.

    A score that stopped early (adaptive evaluation) is paired with ``base`` on the images it saw,
    the first ones of the same visiting order.
    """
    ref = base.correct_mask
    counts = [paired_counts(ref[: s.n], s.correct_mask) for s in scores]
    p = [mcnemar_exact(lost, gained) for lost, gained in counts]
    adjusted = holm(p)
    return [
        Paired(lost, gained, pv, pa, pa < 1 - confidence)
        for (lost, gained), pv, pa in zip(counts, p, adjusted, strict=True)
    ]


def interval(score: Score, confidence: float) -> tuple[float, float]:
    """The interval of a score's accuracy: Wilson's for a fixed number of images, the
    anytime-valid confidence sequence (the one its stop was decided on) when it stopped early."""
    if score.stopped:
        return confidence_sequence(score.correct, score.n, confidence)
    return wilson_interval(score.correct, score.n, confidence)
