"""Reordering study (Veit et al. 2016, Fig. 5b): swap units, measure accuracy against Kendall tau.

Only units with equal input and output shapes can trade places: same stage, not the
downsampling unit, same channels and stride. A new order comes from k random swaps of such
pairs applied one after the other; its distance from the original is Kendall's tau between
the two orders. All orders go through one :func:`score_plans` call (shared prefixes), or
journaled chunks of them when the run can resume.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Sequence

import numpy as np

if TYPE_CHECKING:
    import pandas as pd

from resnet_probe.analyses.base import Analysis, Option, RunContext
from resnet_probe.analyses.lesion import Baseline, UnitInfo, parse_range, unit_infos, with_baseline_n
from resnet_probe.analyses.resumable import score_resumable
from resnet_probe.bounds import MAX_SAMPLES, check_samples
from resnet_probe.errors import PlanError
from resnet_probe.executor import Plan, validate_plan
from resnet_probe.journal import ScoreItem
from resnet_probe.results import Result
from resnet_probe.scoring import interval, paired_tests
from resnet_probe.settings import REORDER_SAMPLES
from resnet_probe.stats import bootstrap_mean_interval
from resnet_probe.structure import Topology

MAX_SWAPS = 10_000


@dataclass(frozen=True)
class ReorderConfig:
    """One reordered network: how many swaps made it, the order, its tau and its accuracy."""

    swaps: int
    order: tuple[int, ...]
    kendall_tau: float
    accuracy: float
    correct: int
    loss: float
    ci: tuple[float, float] = (0.0, 1.0)
    p_value: float = 1.0
    p_adjusted: float = 1.0  # Holm over every order of the run
    significant: bool = False
    hits: str | None = None
    n: int = 0  # images scored: the baseline's, or fewer where adaptive evaluation stopped early


@dataclass(frozen=True)
class SwapsSummary:
    """The orders made by k swaps: mean tau and accuracy, the spread over orders, a bootstrap interval of the mean.

    ``significant``: how many of the orders differ from the original after Holm's adjustment.
    """

    k: int
    orders: int
    mean_tau: float
    mean_accuracy: float
    std_accuracy: float
    ci: tuple[float, float]
    significant: int


@dataclass(frozen=True)
class ReorderResult(Result):
    """Baseline, every reordered configuration, their summary per swap count and the units."""

    analysis: ClassVar[str] = "reorder"
    baseline: Baseline
    configs: tuple[ReorderConfig, ...]
    units: tuple[UnitInfo, ...]
    swappable: tuple[tuple[int, ...], ...] = ()
    per_swaps: tuple[SwapsSummary, ...] = ()

    @classmethod
    def upgraded(cls, d: dict[str, Any]) -> dict[str, Any]:
        """Configurations of files before adaptive evaluation carry no ``n``: the baseline's."""
        return with_baseline_n(d)

    def to_frame(self) -> pd.DataFrame:
        """One row per order: the original (0 swaps) and every reordered net."""
        import pandas as pd

        b = self.baseline
        rows = [{"swaps": 0, "order": " ".join(str(u.index) for u in self.units), "kendall_tau": 1.0,
                 "accuracy": b.accuracy, "correct": b.correct, "n": b.n, "loss": b.loss}]
        rows += [{"swaps": c.swaps, "order": " ".join(map(str, c.order)), "kendall_tau": c.kendall_tau,
                  "accuracy": c.accuracy, "correct": c.correct, "n": c.n, "loss": c.loss} for c in self.configs]
        return pd.DataFrame(rows)


def swap_groups(topology: Topology) -> list[tuple[int, ...]]:
    """Groups of units that may trade places: same stage and shapes, never downsampling."""
    groups: dict[tuple[int, int, int, int], list[int]] = {}
    for u in topology.units:
        if not u.downsampling:
            groups.setdefault((u.stage, u.in_channels, u.out_channels, u.stride), []).append(u.index)
    return [tuple(g) for g in groups.values() if len(g) > 1]


def swap_pairs(topology: Topology) -> list[tuple[int, int]]:
    """Every pair of positions whose units may be swapped; PlanError when there is none."""
    pairs = [(a, b) for g in swap_groups(topology) for i, a in enumerate(g) for b in g[i + 1 :]]
    if not pairs:
        raise PlanError(
            "reorder needs two units with equal shapes in one stage (not downsampling); "
            f"this {topology.family} network with {topology.n_units} units has none"
        )
    return pairs


def random_orders(
    topology: Topology, swap_range: tuple[int, int], samples: int, seed: int
) -> list[tuple[int, tuple[int, ...]]]:
    """``samples`` orders per swap count k, each k uniformly drawn swaps applied in turn."""
    pairs = swap_pairs(topology)
    rng = np.random.default_rng([seed, 7])
    out = []
    for k in range(swap_range[0], swap_range[1] + 1):
        for _ in range(samples):
            order = list(range(topology.n_units))
            for p in rng.integers(len(pairs), size=k):
                a, b = pairs[int(p)]
                order[a], order[b] = order[b], order[a]
            out.append((k, tuple(order)))
    return out


def order_tau(order: Sequence[int]) -> float:
    """Kendall's tau between the original order and ``order`` (1.0 when unchanged)."""
    if list(order) == sorted(order):
        return 1.0
    from scipy.stats import kendalltau  # scipy.stats takes seconds to import: only when needed

    return float(kendalltau(np.arange(len(order)), np.asarray(order))[0])


class ReorderAnalysis(Analysis):
    """Accuracy of the network with its units reordered by k random swaps."""

    name = "reorder"
    description = "accuracy after swapping units, against Kendall tau (Veit et al. 2016, Fig. 5b)"
    result_type = ReorderResult
    batch_probe = True
    resumable = True
    journal_item = ScoreItem
    options = (
        Option("swaps", str, "1:20", "numbers of random swaps: K or A:B (inclusive)"),
        Option("samples", int, REORDER_SAMPLES, "random orders per swap count", 1, MAX_SAMPLES),
    )

    def run(
        self,
        ctx: RunContext,
        swaps: str | int | Sequence[int] = "1:20",
        samples: int = REORDER_SAMPLES,
        **options: Any,
    ) -> ReorderResult:
        """Score the baseline and every reordered network in one pass over the data.

        Example:
            >>> ReorderAnalysis().run(ctx, swaps="1:20", samples=10)
        """
        if options:
            raise PlanError(f"reorder: unknown options {', '.join(sorted(options))}; valid: swaps, samples")
        data = ctx.require_data(self.name)
        topology = ctx.loaded.topology
        swap_pairs(topology)  # a net without swappable units fails before any range message
        k_range = parse_range(swaps, "swaps", 1, MAX_SWAPS)
        drawn = random_orders(topology, k_range, check_samples(samples), ctx.seed)
        plans = [Plan()] + [Plan(order=order) for _, order in drawn]
        for plan in plans:
            validate_plan(plan, topology)
        # Journal key: the order itself (the baseline is the identity order).
        keys = [{"order": list(p.order) if p.order is not None else list(range(topology.n_units))} for p in plans]
        scores = score_resumable(
            ctx.executor, data, plans, keys, journal=ctx.journal, batch_size=ctx.batch_size,
            preprocessing=ctx.preprocessing, progress=ctx.progress, description=f"reorder {ctx.loaded.spec}",
            stop=ctx.stopping, always=[0], metric="top1",  # reorder's report and summaries speak accuracy
        )
        level = ctx.confidence
        tests = paired_tests(scores[0], scores[1:], level)
        configs = tuple(
            ReorderConfig(
                k, order, order_tau(order), sc.accuracy, sc.correct, sc.loss, interval(sc, level),
                t.p_value, t.p_adjusted, t.significant, sc.hits, sc.n,
            )
            for (k, order), sc, t in zip(drawn, scores[1:], tests, strict=True)
        )
        return ReorderResult(
            Baseline.of(scores[0], level), configs, unit_infos(topology), tuple(swap_groups(topology)),
            summarise(configs, level, ctx.seed),
        )


def summarise(configs: Sequence[ReorderConfig], confidence: float, seed: int) -> tuple[SwapsSummary, ...]:
    """One :class:`SwapsSummary` per swap count; the bootstrap is seeded with ``seed + k``."""
    out = []
    for k in sorted({c.swaps for c in configs}):
        group = [c for c in configs if c.swaps == k]
        acc = np.asarray([c.accuracy for c in group], dtype=np.float64)
        out.append(SwapsSummary(
            k, len(group), float(np.mean([c.kendall_tau for c in group])), float(acc.mean()),
            float(acc.std(ddof=1)) if len(acc) > 1 else 0.0,
            bootstrap_mean_interval(acc.tolist(), confidence, seed=seed + k),
            sum(c.significant for c in group),
        ))
    return tuple(out)
