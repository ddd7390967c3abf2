"""Report content for the unraveled view: paths by length (Veit et al. Fig. 6a)."""

from __future__ import annotations

import math
from typing import Sequence

import seaborn as sns
from matplotlib.axes import Axes
from resnet_probe.reports.content import Figure, Table, register

from resnet_probe.analyses.paths import PATH_SHARE, PathsResult
from resnet_probe.results import RunRecord

FULL_TABLE_UNITS = 120  # beyond this, the per-length table keeps the 95 % window only
FLOAT_SAFE_BITS = 1000  # ints below 2^1000 convert to float without overflow


def big_int(value: int) -> str:
    """An exact int, grouped by thousands; a power of two also as ``2^m``; huge ones shortened."""
    text = f"{value:,}"
    if len(text) > 40:
        digits = str(value)
        text = f"{digits[0]}.{digits[1:4]}e{len(digits) - 1} ({len(digits)} digits)"
    if value > 1 and value & (value - 1) == 0:
        text = f"2^{value.bit_length() - 1} = {text}"
    return text


def binomial_reference(counts: Sequence[int]) -> list[int]:
    """C(m, k - p) for a chain of m residual and p plain units: what the counts should be."""
    p = next(i for i, c in enumerate(counts) if c)
    m = len(counts) - 1 - p
    return [math.comb(m, k - p) if k >= p else 0 for k in range(len(counts))]


def matches_binomial(result: PathsResult) -> bool:
    """Whether the graph's counts equal the binomial exactly."""
    return list(result.counts) == binomial_reference(result.counts)


def _series(counts: Sequence[int]) -> tuple[list[float], bool]:
    """Counts as floats for plotting, or their log10 where they pass float range."""
    if max(counts).bit_length() < FLOAT_SAFE_BITS:
        return [float(c) for c in counts], False
    return [math.log10(c) if c else float("nan") for c in counts], True


def _draw_distribution(ax: Axes, result: PathsResult, log_y: bool) -> None:
    ks = list(range(len(result.counts)))
    values, as_log10 = _series(result.counts)
    reference, _ = _series(binomial_reference(result.counts))
    a, b = result.window_95
    ax.axvspan(a - 0.5, b + 0.5, color="tab:orange", alpha=0.15, label=f"95 % of paths: {a}–{b}")
    sns.lineplot(x=ks, y=values, ax=ax, color="tab:blue", marker="o" if len(ks) <= 60 else None,
                 label="paths (graph count)")
    sns.lineplot(x=ks, y=reference, ax=ax, color="black", linestyle="--", linewidth=1,
                 label="binomial")
    ax.set_xlabel("path length (residual branches passed)")
    if as_log10:
        ax.set_ylabel("log10 number of paths")
    else:
        ax.set_ylabel("number of paths")
        if log_y:
            ax.set_yscale("log")
    ax.set_title("log scale" if log_y or as_log10 else "linear scale")
    ax.legend(fontsize="small")


@register(PathsResult)
def paths_figures(result: PathsResult, record: RunRecord) -> list[Figure]:
    """Fig. 6a: number of paths per length, linear and log y, with the binomial."""

    def draw(axes: list[Axes]) -> None:
        _draw_distribution(axes[0], result, log_y=False)
        _draw_distribution(axes[1], result, log_y=True)

    return [
        Figure(
            f"Paths of the unraveled view by number of residual branches passed "
            f"({result.n_units} units, {big_int(result.total_paths)} paths); "
            f"dashed: the binomial; shaded: the shortest length window holding 95 % of the paths "
            f"(Veit et al. 2016, Fig. 6a).",
            draw,
            panels=2,
            width=11.0,
        )
    ]


@register(PathsResult)
def paths_tables(result: PathsResult, record: RunRecord) -> list[Table]:
    """Summary numbers and the exact count per length."""
    a, b = result.window_95
    summary = Table(
        "Unraveled view",
        ["quantity", "value"],
        [
            ["units", result.n_units],
            ["total paths", big_int(result.total_paths)],
            ["mean length", f"{result.mean_length:.4f}"],
            ["std of length", f"{result.std_length:.4f}"],
            ["95 % window", f"{a}–{b}"],
            ["counts equal the binomial", "yes" if matches_binomial(result) else "no"],
        ],
    )
    ks = range(len(result.counts))
    if result.n_units > FULL_TABLE_UNITS:
        ks = range(a, b + 1)
        caption = f"Paths per length, inside the 95 % window {a}–{b} (exact counts)"
    else:
        caption = "Paths per length (exact counts)"
    rows = [
        [k, big_int(result.counts[k]), f"{100 * result.counts[k] / result.total_paths:.4g} %"]
        for k in ks
    ]
    return [summary, Table(caption, ["length k", "paths", "share"], rows)]


@register(PathsResult)
def paths_reading(result: PathsResult, record: RunRecord) -> list[str]:
    """Total paths, how their lengths spread, and where 95 % of them lie."""
    spec = record.model.get("spec", "the model")
    n = result.n_units
    if result.total_paths == 1:
        return [f"{spec} has no shortcuts: its only path runs through all {n} units."]
    a, b = result.window_95
    binomial = (
        "the number of paths through k residual branches is exactly the binomial C(n, k)"
        if matches_binomial(result)
        else "the counts differ from the binomial"
    )
    return [
        f"{spec} unravels into {big_int(result.total_paths)} paths through {n} units; "
        f"counted on the network's graph, {binomial}.",
        f"Path lengths have mean {result.mean_length:.2f} and standard deviation "
        f"{result.std_length:.2f}; {100 * PATH_SHARE:.0f} % of the paths pass through "
        f"{a}–{b} residual branches, so very short and very long paths are rare.",
    ]
