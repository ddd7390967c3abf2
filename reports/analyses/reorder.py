"""Report content for the reordering study (Veit et al. 2016, Fig. 5b)."""

from __future__ import annotations

import statistics

import numpy as np
import seaborn as sns
from matplotlib.axes import Axes
from matplotlib.ticker import MaxNLocator
from resnet_probe.reports.content import Figure, Table, pct, register

from resnet_probe.analyses.reorder import ReorderConfig, ReorderResult
from resnet_probe.results import RunRecord


def _by_k(result: ReorderResult) -> dict[int, list[ReorderConfig]]:
    out: dict[int, list[ReorderConfig]] = {}
    for c in result.configs:
        out.setdefault(c.swaps, []).append(c)
    return dict(sorted(out.items()))


def _draw_scatter(ax: Axes, result: ReorderResult) -> None:
    sns.scatterplot(
        x=[c.kendall_tau for c in result.configs],
        y=[100 * (1 - c.accuracy) for c in result.configs],
        hue=[c.swaps for c in result.configs],
        palette="viridis", ax=ax, s=40, alpha=0.8, edgecolor="none",
    )
    ax.axhline(100 * (1 - result.baseline.accuracy), color="black", linestyle="--", linewidth=1,
               label="original order")
    ax.set_xlabel("Kendall τ between the original and the new order")
    ax.set_ylabel("test error (%)")
    ax.invert_xaxis()  # left to right: more and more shuffled, as in Veit et al.
    ax.legend(title="swaps k", fontsize="small", loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0)


def _draw_per_k(ax: Axes, result: ReorderResult) -> None:
    groups = _by_k(result)
    k = list(groups)
    errs = [np.asarray([100 * (1 - c.accuracy) for c in cs]) for cs in groups.values()]
    mean = [float(e.mean()) for e in errs]
    std = [float(e.std(ddof=1)) if len(e) > 1 else 0.0 for e in errs]
    sns.lineplot(x=k, y=mean, ax=ax, marker="o", label="mean over orders")
    low = [m - s for m, s in zip(mean, std, strict=True)]
    high = [m + s for m, s in zip(mean, std, strict=True)]
    ax.fill_between(k, low, high, alpha=0.2)
    ax.axhline(100 * (1 - result.baseline.accuracy), color="black", linestyle="--", linewidth=1,
               label="original order")
    ax.set_xlabel("random swaps k")
    ax.set_ylabel("test error (%)")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.legend(fontsize="small")


@register(ReorderResult)
def reorder_figures(result: ReorderResult, record: RunRecord) -> list[Figure]:
    """Error against Kendall tau, coloured by swaps (Fig. 5b), and error per swap count."""
    return [
        Figure(
            "Test error of reordered networks against Kendall τ of their unit order, coloured by the "
            "number of random swaps k (Veit et al. 2016, Fig. 5b); dashed, the original order.",
            lambda axes: _draw_scatter(axes[0], result),
            width=8.0,
        ),
        Figure(
            "Test error per number of swaps: mean ± one standard deviation over the random orders.",
            lambda axes: _draw_per_k(axes[0], result),
            width=8.0,
        ),
    ]


def _moved(order: tuple[int, ...]) -> str:
    return " ".join(f"{u}@{p}" for p, u in enumerate(order) if u != p) or "none"


@register(ReorderResult)
def reorder_tables(result: ReorderResult, record: RunRecord) -> list[Table]:
    """Per swap count statistics and every reordered configuration."""
    base = result.baseline
    names = [u.name for u in result.units]
    summary = Table(
        "Per number of swaps",
        ["swaps k", "orders", "mean τ", "mean accuracy", "std accuracy", "worst accuracy", "mean cost (points)"],
        [
            [k, len(cs), f"{statistics.fmean(c.kendall_tau for c in cs):.3f}",
             pct(statistics.fmean(c.accuracy for c in cs)),
             f"{100 * statistics.stdev(c.accuracy for c in cs):.2f}" if len(cs) > 1 else "0.00",
             pct(min(c.accuracy for c in cs)),
             f"{100 * (base.accuracy - statistics.fmean(c.accuracy for c in cs)):+.2f}"]
            for k, cs in _by_k(result).items()
        ],
    )
    groups = Table(
        "Units that may trade places",
        ["group", "units"],
        [[i + 1, ", ".join(f"{u} ({names[u]})" for u in g)] for i, g in enumerate(result.swappable)],
    )
    configs = Table(
        "Reordered networks (moved units as unit@position)",
        ["swaps k", "moved", "Kendall τ", "accuracy", "correct", "loss"],
        [[c.swaps, _moved(c.order), f"{c.kendall_tau:.3f}", pct(c.accuracy), c.correct, f"{c.loss:.4f}"]
         for c in result.configs],
    )
    return [summary, groups, configs]


@register(ReorderResult)
def reorder_reading(result: ReorderResult, record: RunRecord) -> list[str]:
    """How accuracy falls as the order moves away from the original, and what may move."""
    base = result.baseline.accuracy
    groups = _by_k(result)
    lo_k, hi_k = min(groups), max(groups)
    mean = {k: statistics.fmean(c.accuracy for c in cs) for k, cs in groups.items()}
    taus = [c.kendall_tau for c in result.configs]
    out = [
        f"{record.model.get('spec', 'The model')} reaches {pct(base)} in its original order; after "
        f"{lo_k} random swap{'s' if lo_k != 1 else ''} the mean accuracy is {pct(mean[lo_k])}"
        + (f", after {hi_k} swaps {pct(mean[hi_k])}" if hi_k != lo_k else "")
        + f" (Kendall τ from {max(taus):.2f} down to {min(taus):.2f})."
    ]
    accs = [c.accuracy for c in result.configs]
    if len(set(taus)) > 1 and len(set(accs)) > 1:
        r = float(np.corrcoef(taus, accs)[0, 1])
        trend = (
            "accuracy falls as the order moves away from the original (lower τ)" if r > 0
            else "accuracy does not fall as the order moves away from the original"
        )
        out.append(
            f"Across all {len(result.configs)} reordered networks the correlation between Kendall τ "
            f"and accuracy is {r:+.2f}: {trend}."
        )
    down = [u for u in result.units if u.downsampling]
    if down:
        out.append(
            "Only units of one stage with equal shapes trade places; the downsampling units "
            + ", ".join(f"{u.index} ({u.name})" for u in down) + " stay where they are."
        )
    return out
