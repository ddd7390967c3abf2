"""Accuracy and loss of many plans over a data set, one pass over the data."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import torch
from torch import Tensor

from . import distributed
from .data import DataSource
from .executor import Executor, Plan
from .loaded import Preprocessing


@dataclass(frozen=True)
class Score:
    """Correct predictions, images and summed cross-entropy of one plan."""

    correct: int
    n: int
    loss_sum: float

    @property
    def accuracy(self) -> float:
        """Fraction correct."""
        return self.correct / self.n if self.n else 0.0

    @property
    def loss(self) -> float:
        """Mean cross-entropy."""
        return self.loss_sum / self.n if self.n else 0.0

    def to_dict(self) -> dict[str, float | int]:
        """The ``{"accuracy", "correct", "n", "loss"}`` block of results.json."""
        return {"accuracy": self.accuracy, "correct": self.correct, "n": self.n, "loss": self.loss}


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
    local: list[tuple[int, list[tuple[int, float]]]] = []
    batches = distributed.my_batches(data, batch_size, preprocessing=preprocessing, device=executor.device)
    for index, (x, y) in batches:
        y = y.to(executor.device)

        def reduce(logits: Tensor, y: Tensor = y) -> tuple[Tensor, Tensor]:
            logits = logits.float()
            hits = (logits.argmax(dim=1) == y).sum()
            ce = torch.nn.functional.cross_entropy(logits, y, reduction="sum")
            return hits, ce

        per_plan = executor.run_plans(x, plans, reduce)
        # One device-to-host copy per batch, not two syncs per plan: on a GPU each sync would
        # drain the queue of work the executor had launched ahead.
        hits_all = torch.stack([h for h, _ in per_plan]).tolist() if per_plan else []
        ce_all = torch.stack([c for _, c in per_plan]).tolist() if per_plan else []
        local.append((index, list(zip(hits_all, ce_all, strict=True)) + [(int(y.shape[0]), 0.0)]))
        if progress is not None:
            progress(int(y.shape[0]) * distributed.world())
    # Sums in batch order on every rank: the same numbers as one process, bit for bit.
    correct = [0] * len(plans)
    loss = [0.0] * len(plans)
    n = 0
    for sums in distributed.gather_ordered(local):
        for i, (hits, ce) in enumerate(sums[:-1]):
            correct[i] += hits
            loss[i] += ce
        n += sums[-1][0]
    return [Score(hits, n, ce) for hits, ce in zip(correct, loss, strict=True)]
