"""Accuracy and loss of many plans over a data set, one pass over the data."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
import torch
from torch import Tensor

from resnet_probe import distributed
from resnet_probe.data import DataSource
from resnet_probe.data.preprocessing import Preprocessing
from resnet_probe.executor import Executor, Plan
from resnet_probe.stats import holm, mcnemar_exact, pack_bits, paired_counts, unpack_bits, wilson_interval


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


def score_plans(
    executor: Executor,
    data: DataSource,
    plans: Sequence[Plan],
    *,
    batch_size: int = 256,
    preprocessing: Preprocessing | None = None,
    progress: Callable[[int], None] | None = None,
) -> list[Score]:
    """Score every plan on every image; batches outside, prefix-shared plans inside."""
    local: list[tuple[int, tuple[np.ndarray, list[float], int]]] = []
    batches = distributed.my_batches(data, batch_size, preprocessing=preprocessing, device=executor.device)
    for index, (x, y) in batches:
        y = y.to(executor.device)

        def reduce(logits: Tensor, y: Tensor = y) -> tuple[Tensor, Tensor]:
            logits = logits.float()
            hits = logits.argmax(dim=1) == y
            ce = torch.nn.functional.cross_entropy(logits, y, reduction="sum")
            return hits, ce

        per_plan = executor.run_plans(x, plans, reduce)
        # One device-to-host copy per batch, not two syncs per plan: on a GPU each sync would
        # drain the queue of work the executor had launched ahead.
        batch_hits = torch.stack([h for h, _ in per_plan]).cpu().numpy() if per_plan else np.zeros((0, len(y)), bool)
        ce_all = torch.stack([c for _, c in per_plan]).tolist() if per_plan else []
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
    """Exact McNemar of every score against ``base``, Holm's adjustment over all of them together."""
    ref = base.correct_mask
    counts = [paired_counts(ref, s.correct_mask) for s in scores]
    p = [mcnemar_exact(lost, gained) for lost, gained in counts]
    adjusted = holm(p)
    return [
        Paired(lost, gained, pv, pa, pa < 1 - confidence)
        for (lost, gained), pv, pa in zip(counts, p, adjusted, strict=True)
    ]


def interval(score: Score, confidence: float) -> tuple[float, float]:
    """The Wilson score interval of a score's accuracy."""
    return wilson_interval(score.correct, score.n, confidence)
