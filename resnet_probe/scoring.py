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
from resnet_probe.errors import MetricError, PlanError
from resnet_probe.executor import Executor, Plan
from resnet_probe.metrics import AUTO, FLOATS, HIT, LOSS, Metric, class_targets, for_outputs, resolve_metric
from resnet_probe.stats import (
    confidence_sequence,
    holm,
    mcnemar_exact,
    mean_interval,
    pack_bits,
    pack_floats,
    paired_counts,
    paired_permutation_p,
    unpack_bits,
    unpack_floats,
    wilson_interval,
)


@dataclass(frozen=True)
class Score:
    """Hits (or a loss per example), images and summed cross-entropy of one plan.

    ``hits`` is the per-image hit of the metric (top-1 unless another hit metric was asked
    for) in data order, packed (:func:`stats.pack_bits`), so that paired tests against another
    plan on the same images can be computed and recomputed. With a loss metric (``kind ==
    "loss"``) ``values`` holds each example's value (:func:`stats.pack_floats`) and
    ``value_sum`` their sum; ``correct``/``hits`` are then top-1 where the targets are class
    indices. ``loss_sum`` is the summed cross-entropy where the targets are class indices, else 0.
    """

    correct: int
    n: int
    loss_sum: float
    hits: str | None = None
    stopped: bool = False  # scored adaptively and stopped before the last image
    kind: str = HIT
    values: str | None = None
    value_sum: float = 0.0

    @property
    def value(self) -> float:
        """The metric's mean over the examples: the share of hits, or the mean loss."""
        if self.kind in FLOATS:
            return self.value_sum / self.n if self.n else 0.0
        return self.accuracy

    @property
    def value_array(self) -> np.ndarray:
        """Each example's metric value (hits as 0/1)."""
        if self.kind in FLOATS:
            if self.values is None:
                raise ValueError("this score carries no per-example values")
            return unpack_floats(self.values, self.n)
        return self.correct_mask.astype(np.float64)

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
    metric: Metric | str | None = None,
) -> list[Score]:
    """Score every plan on every image; batches outside, prefix-shared plans inside.

    With ``stop``, plans stop as :class:`Stopping` says (those in ``always``, e.g. the
    unchanged model, run to the end) and the plans still running share their prefixes.
    ``metric`` (default ``auto``: top-1, or a causal LM's per-sequence token loss) decides what each example scores.
    """
    scorer = _Scorer(resolve_metric(metric))
    if stop is not None:
        if scorer.metric.kind in FLOATS:
            raise MetricError(
                f"adaptive evaluation (--tolerance) stops on an accuracy's interval; metric {scorer.metric.name!r} "
                "is a mean per example: score every example instead"
            )
        return _score_until_known(
            executor, data, plans, stop, set(always), batch_size=batch_size, preprocessing=preprocessing,
            progress=progress, scorer=scorer,
        )
    local: list[tuple[int, tuple[np.ndarray, np.ndarray | None, list[float], int]]] = []
    batches = distributed.my_batches(data, batch_size, preprocessing=preprocessing, device=executor.device)
    for index, (x, y) in batches:
        y = y.to(executor.device) if isinstance(y, Tensor) else y
        batch_hits, batch_values, ce_all = scorer.batch(executor, x, y, plans)
        size = int(batch_hits.shape[1])
        local.append((index, (batch_hits, batch_values, ce_all, size)))
        if progress is not None:
            progress(size * distributed.world())
    # Sums in batch order on every rank: the same numbers as one process, bit for bit.
    loss = [0.0] * len(plans)
    n = 0
    parts: list[np.ndarray] = []
    value_parts: list[np.ndarray] = []
    for batch_hits, batch_values, ce_all, size in distributed.gather_ordered(local):
        for i, ce in enumerate(ce_all):
            loss[i] += ce
        parts.append(batch_hits)
        if batch_values is not None:
            value_parts.append(batch_values)
        n += size
    hits = np.concatenate(parts, axis=1) if parts else np.zeros((len(plans), 0), bool)
    if scorer.metric.kind not in FLOATS:
        return [Score(int(h.sum()), n, ce, pack_bits(h)) for h, ce in zip(hits, loss, strict=True)]
    values = np.concatenate(value_parts, axis=1) if value_parts else np.zeros((len(plans), 0))
    return [
        Score(int(h.sum()), n, ce, pack_bits(h) if scorer.classes else None, kind=scorer.metric.kind or LOSS,
              values=pack_floats(v), value_sum=float(sum(v.tolist())))
        for h, v, ce in zip(hits, values, loss, strict=True)
    ]


class _Scorer:
    """The metric of one scoring call; a callable's kind (hit or loss) is fixed by its first values."""

    def __init__(self, metric: Metric) -> None:
        self.metric = metric
        self.classes = True  # the targets are class indices: top-1 and cross-entropy are defined

    def batch(
        self, executor: Executor, x: Tensor, y: object, plans: Sequence[Plan]
    ) -> tuple[np.ndarray, np.ndarray | None, list[float]]:
        """Hits (plans x examples), loss values (plans x examples, loss metrics) and summed cross-entropy."""
        metric = self.metric
        chosen: list[Metric] = []

        def reduce(logits: Tensor) -> tuple[Tensor, Tensor | None, Tensor]:
            logits = logits.float()
            concrete = for_outputs(metric, logits)
            chosen[:1] = [concrete]
            values = concrete.values(logits, y)
            try:
                target = class_targets(logits, y, "top-1")
            except MetricError:  # a callable's own targets (a named metric checked them already)
                target = None
            if target is None:
                self.classes = False
                hit = values if values.dtype == torch.bool else torch.zeros(len(values), dtype=torch.bool)
                return hit, (values if values.dtype != torch.bool else None), logits.new_zeros(())
            ce = torch.nn.functional.cross_entropy(logits, target, reduction="sum")
            if values.dtype == torch.bool:
                return values, None, ce
            return logits.argmax(dim=1) == target, values, ce

        per_plan = executor.run_plans(x, plans, reduce)
        if metric.name == AUTO and chosen:
            self.metric = metric = chosen[0]
        if metric.kind is None and per_plan:
            self.metric = metric = metric.with_kind(LOSS if per_plan[0][1] is not None else HIT)
        # One device-to-host copy per batch, not two syncs per plan: on a GPU each sync would
        # drain the queue of work the executor had launched ahead.
        if not per_plan:
            return np.zeros((0, 0), bool), None, []
        batch_hits = torch.stack([h for h, _, _ in per_plan]).cpu().numpy()
        values = None
        if metric.kind in FLOATS:
            values = torch.stack([v for _, v, _ in per_plan]).cpu().numpy()  # type: ignore[misc]
        ce_all = torch.stack([c for _, _, c in per_plan]).tolist()
        return batch_hits, values, ce_all


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
    scorer: _Scorer,
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
        y = y.to(executor.device) if isinstance(y, Tensor) else y
        batch_hits, _, ce_all = scorer.batch(executor, x, y, [plans[i] for i in running])
        for i, h, ce in zip(running, batch_hits, ce_all, strict=True):
            correct[i] += int(h.sum())
            seen[i] += int(h.shape[0])
            loss[i] += ce
            parts[i].append(h)
        if progress is not None:
            progress(int(batch_hits.shape[1]))
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


def paired_tests(base: Score, scores: Sequence[Score], confidence: float, seed: int = 0) -> list[Paired]:
    """Every score against ``base`` on the same examples, Holm's adjustment over all of them together.

    Hits: exact McNemar on the images one of the two gets right. Losses: a sign-flip permutation
    test of the mean difference per example (seeded); ``lost`` counts the examples whose loss
    rose (a mean metric's value fell), ``gained`` the reverse. A score that stopped early (adaptive evaluation) is
    paired with ``base`` on the images it saw, the first ones of the same visiting order.
    """
    if base.kind in FLOATS:
        ref_values = base.value_array
        counts, p = [], []
        for i, s in enumerate(scores):
            v = s.value_array
            d = v - ref_values[: s.n]
            worse, better = (d > 0, d < 0) if base.kind == LOSS else (d < 0, d > 0)
            counts.append((int(worse.sum()), int(better.sum())))
            p.append(paired_permutation_p(ref_values[: s.n], v, seed=seed + i))
    else:
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
    anytime-valid confidence sequence (the one its stop was decided on) when it stopped early; for a
    loss metric the t interval of the mean loss."""
    if score.kind in FLOATS:
        return mean_interval(score.value_array, confidence)
    if score.stopped:
        return confidence_sequence(score.correct, score.n, confidence)
    return wilson_interval(score.correct, score.n, confidence)
