"""Report content for the reordering study (Veit et al. 2016, Fig. 5b)."""

from __future__ import annotations

import seaborn as sns
from matplotlib.axes import Axes
from matplotlib.ticker import MaxNLocator
from resnet_probe.reports.content import (
    MIN_BAND,
    Figure,
    Table,
    adaptive_sentence,
    interval_text,
    level_of,
    level_value,
    p_text,
    pct,
    register,
    sample_size_sentence,
)
from resnet_probe.reports.findings import differences

from resnet_probe.analyses.reorder import ReorderConfig, ReorderResult, SwapsSummary
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


def _draw_per_k(ax: Axes, result: ReorderResult, record: RunRecord) -> None:
    groups = _by_k(result)
    summary = result.per_swaps
    color = sns.color_palette("deep", 1)[0]
    sns.lineplot(x=[r.k for r in summary], y=[100 * (1 - r.mean_accuracy) for r in summary], ax=ax, marker="o",
                 color=color, label="mean over orders")
    # Each order as a faint point with its own interval; the mean's bootstrap interval as a band
    # only where enough orders make one (error = 100 - accuracy, so the band stays in [0, 100]).
    for k, cs in groups.items():
        err = [100 * (1 - c.accuracy) for c in cs]
        ax.errorbar([k] * len(cs), err, yerr=[[e - 100 * (1 - c.ci[1]) for e, c in zip(err, cs, strict=True)],
                                               [100 * (1 - c.ci[0]) - e for e, c in zip(err, cs, strict=True)]],
                    fmt="o", markersize=3, color=color, alpha=0.25, elinewidth=0.8)
    banded = [r for r in summary if r.orders >= MIN_BAND]
    if banded:
        ax.fill_between([r.k for r in banded], [100 * (1 - r.ci[1]) for r in banded],
                        [100 * (1 - r.ci[0]) for r in banded], color=color, alpha=0.2,
                        label=f"{level_of(record)} bootstrap interval of the mean")
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
            "Test error per number of swaps: the mean over the random orders, with its bootstrap interval as a "
            f"band where {MIN_BAND} or more orders make one; faint, each order with its own interval.",
            lambda axes: _draw_per_k(axes[0], result, record),
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
    groups_by_k = _by_k(result)
    level = level_of(record)
    summary = Table(
        "Per number of swaps",
        ["swaps k", "orders", "mean τ", "mean accuracy", f"{level} bootstrap interval", "std (points)",
         "worst accuracy", "mean cost (points)", "orders significant (Holm)"],
        [
            [r.k, r.orders, f"{r.mean_tau:.3f}", pct(r.mean_accuracy), interval_text(r.ci),
             f"{100 * r.std_accuracy:.2f}", pct(min(c.accuracy for c in groups_by_k[r.k])),
             f"{100 * (base.accuracy - r.mean_accuracy):+.2f}", f"{r.significant}/{r.orders}"]
            for r in result.per_swaps
        ],
    )
    groups = Table(
        "Units that may trade places",
        ["group", "units"],
        [[i + 1, ", ".join(f"{u} ({names[u]})" for u in g)] for i, g in enumerate(result.swappable)],
    )
    configs = Table(
        "Reordered networks (moved units as unit@position)",
        ["swaps k", "moved", "Kendall τ", "accuracy", f"{level} interval", "correct", "images",
         "p (McNemar, Holm)", "significant", "loss"],
        [[c.swaps, _moved(c.order), f"{c.kendall_tau:.3f}", pct(c.accuracy), interval_text(c.ci), c.correct, c.n,
          p_text(c.p_adjusted), "yes" if c.significant else "no", f"{c.loss:.4f}"]
         for c in result.configs],
    )
    return [summary, groups, configs]


@register(ReorderResult)
def reorder_reading(result: ReorderResult, record: RunRecord) -> list[str]:
    """How accuracy falls as the order moves away from the original, what is significant, and what may move."""
    base = result.baseline
    summary = {r.k: r for r in result.per_swaps}
    lo, hi = summary[min(summary)], summary[max(summary)]
    taus = [c.kendall_tau for c in result.configs]

    def at(r: SwapsSummary) -> str:
        return f"{pct(r.mean_accuracy)} ({interval_text(r.ci)}, {r.orders} orders)"

    out = [
        f"{record.model.get('spec', 'The model')} reaches {pct(base.accuracy)} ({interval_text(base.ci)}) in its "
        f"original order; after {lo.k} random swap{'s' if lo.k != 1 else ''} the mean accuracy is {at(lo)}"
        + (f", after {hi.k} swaps {at(hi)}" if hi.k != lo.k else "")
        + f" (Kendall τ from {max(taus):.2f} down to {min(taus):.2f})."
    ]
    significant = sum(c.significant for c in result.configs)
    out.append(
        f"{significant} of {len(result.configs)} reordered networks differ significantly from the original "
        "order (exact McNemar test on the images one of the two gets right, Holm-adjusted)."
    )
    accs = [c.accuracy for c in result.configs]
    if len(set(taus)) > 2 and len(set(accs)) > 1:
        from scipy.stats import spearmanr

        rho, p = spearmanr(taus, accs)
        trend = (
            "accuracy falls as the order moves away from the original (lower τ), as Veit et al. 2016 (Fig. 5b) "
            "report: this run agrees"
            if p < 1 - level_value(record) and rho > 0
            else "these orders do not show accuracy falling with τ, which Veit et al. 2016 (Fig. 5b) found: this "
            "run cannot tell" + (f" ({why})" if (why := differences(record)) else "")
        )
        out.append(
            f"Across the {len(result.configs)} reordered networks Spearman's ρ between Kendall τ and accuracy "
            f"is {rho:+.2f} (p = {p_text(float(p))}): {trend}."
        )
    down = [u for u in result.units if u.downsampling]
    if down:
        out.append(
            "Only units of one stage with equal shapes trade places; the downsampling units "
            + ", ".join(f"{u.index} ({u.name})" for u in down) + " stay where they are."
        )
    out.append(sample_size_sentence(base.n, len(result.configs), record))
    adaptive = adaptive_sentence([c.n for c in result.configs], base.n, record)
    return out + ([adaptive] if adaptive else [])
