"""Report content for the unraveled view: paths by length (Veit et al. Fig. 6a).

The reference is always a ResNet: a chain of m two-path units, C(m, k - p) paths of length k
(p the layers every path passes, m the rest up to the longest path). A ResNet or DenseNet
matches it exactly; a VoVNet, whose OSA modules hold L+1 paths each, does not, and the report
then compares the two as shares of all paths.
"""

from __future__ import annotations

import math
from fractions import Fraction
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


def reference_units(counts: Sequence[int]) -> int:
    """m: the units of the ResNet that the counts are compared with (same range of lengths)."""
    p = next(i for i, c in enumerate(counts) if c)
    return len(counts) - 1 - p


def shares(counts: Sequence[int]) -> list[float]:
    """Each count as a share of all paths, exactly divided then rounded once."""
    total = sum(counts)
    return [float(Fraction(c, total)) for c in counts]


def reference_moments(counts: Sequence[int]) -> tuple[float, float]:
    """Mean and std of the reference ResNet's path lengths: p + m/2 and sqrt(m)/2."""
    m = reference_units(counts)
    p = len(counts) - 1 - m
    return p + m / 2, math.sqrt(m) / 2


def _series(counts: Sequence[int]) -> tuple[list[float], bool]:
    """Counts as floats for plotting, or their log10 where they pass float range."""
    if max(counts).bit_length() < FLOAT_SAFE_BITS:
        return [float(c) for c in counts], False
    return [math.log10(c) if c else float("nan") for c in counts], True


def _draw_distribution(ax: Axes, result: PathsResult, log_y: bool) -> None:
    ks = list(range(len(result.counts)))
    reference_counts = binomial_reference(result.counts)
    as_shares = sum(reference_counts) != result.total_paths
    if as_shares:
        # Different totals (a VoVNet against its ResNet): only the shares compare.
        values, reference, as_log10 = shares(result.counts), shares(reference_counts), False
    else:
        values, as_log10 = _series(result.counts)
        reference, _ = _series(reference_counts)
    a, b = result.window_95
    ax.axvspan(a - 0.5, b + 0.5, color="tab:orange", alpha=0.15, label=f"95 % of paths: {a}–{b}")
    sns.lineplot(x=ks, y=values, ax=ax, color="tab:blue", marker="o" if len(ks) <= 60 else None,
                 label="paths (graph count)")
    m = reference_units(result.counts)
    sns.lineplot(x=ks, y=reference, ax=ax, color="black", linestyle="--", linewidth=1,
                 label=f"ResNet of {m} units (binomial)" if as_shares else "binomial")
    ax.set_xlabel("path length (residual branches passed)")
    if as_log10:
        ax.set_ylabel("log10 number of paths")
    else:
        ax.set_ylabel("share of paths" if as_shares else "number of paths")
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

    if sum(binomial_reference(result.counts)) == result.total_paths:
        dashed = "dashed: the binomial"
    else:
        m = reference_units(result.counts)
        dashed = f"plotted as shares of all paths; dashed: a ResNet of {m} units, C({m}, k) of its 2^{m} paths"
    return [
        Figure(
            f"Paths of the unraveled view by number of residual branches passed "
            f"({result.n_units} units, {big_int(result.total_paths)} paths); "
            f"{dashed}; shaded: the shortest length window holding 95 % of the paths "
            f"(Veit et al. 2016, Fig. 6a).",
            draw,
            panels=2,
            width=11.0,
        )
    ]


@register(PathsResult)
def paths_tables(result: PathsResult, record: RunRecord) -> list[Table]:
    """Summary numbers and the exact count per length (with the ResNet's shares where they differ)."""
    a, b = result.window_95
    binomial = matches_binomial(result)
    rows: list[list[object]] = [
        ["units", result.n_units],
        ["total paths", big_int(result.total_paths)],
        ["mean length", f"{result.mean_length:.4f}"],
        ["std of length", f"{result.std_length:.4f}"],
        ["95 % window", f"{a}–{b}"],
        ["counts equal the binomial", "yes" if binomial else "no"],
    ]
    m = reference_units(result.counts)
    if not binomial:
        mean, std = reference_moments(result.counts)
        rows += [
            [f"ResNet of {m} units (the same lengths): paths", big_int(2**m)],
            [f"ResNet of {m} units: mean / std of length", f"{mean:.4f} / {std:.4f}"],
            [f"ResNet of {result.n_units} units (the same unit count): paths", big_int(2**result.n_units)],
        ]
    summary = Table("Unraveled view", ["quantity", "value"], rows)
    ks = range(len(result.counts))
    if len(result.counts) - 1 > FULL_TABLE_UNITS:
        ks = range(a, b + 1)
        caption = f"Paths per length, inside the 95 % window {a}–{b} (exact counts)"
    else:
        caption = "Paths per length (exact counts)"
    header = ["length k", "paths", "share"]
    mine, theirs = shares(result.counts), shares(binomial_reference(result.counts))
    if not binomial:
        header += [f"ResNet of {m} units: share", "difference"]
    per_length: list[list[object]] = []
    for k in ks:
        row: list[object] = [k, big_int(result.counts[k]), f"{100 * result.counts[k] / result.total_paths:.4g} %"]
        if not binomial:
            row += [f"{100 * theirs[k]:.4g} %", f"{100 * (mine[k] - theirs[k]):+.3g} pp"]
        per_length.append(row)
    return [summary, Table(caption, header, per_length)]


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
    sentences = [
        f"{spec} unravels into {big_int(result.total_paths)} paths through {n} units; "
        f"counted on the network's graph, {binomial}.",
        f"Path lengths have mean {result.mean_length:.2f} and standard deviation "
        f"{result.std_length:.2f}; {100 * PATH_SHARE:.0f} % of the paths pass through "
        f"{a}–{b} residual branches, so very short and very long paths are rare.",
    ]
    if not matches_binomial(result):
        sentences.append(_against_resnet(result))
    return sentences


def _against_resnet(result: PathsResult) -> str:
    """How the counts differ from the ResNet whose paths span the same lengths."""
    m = reference_units(result.counts)
    mean, std = reference_moments(result.counts)
    mine, theirs = shares(result.counts), shares(binomial_reference(result.counts))
    k = max(range(len(mine)), key=lambda i: abs(mine[i] - theirs[i]))
    spread = "wider" if result.std_length > std else "narrower"
    return (
        f"A ResNet of {m} units has paths over the same lengths, {big_int(2**m)} of them, C({m}, k) of length k: "
        f"their lengths have mean {mean:.2f} and std {std:.2f}, so the lengths here spread {spread} "
        f"(std {result.std_length:.2f}); the shares differ most at length {k} "
        f"({100 * mine[k]:.3g} % here, {100 * theirs[k]:.3g} % there). A ResNet of the same {result.n_units} "
        f"units would have only {big_int(2**result.n_units)} paths, of lengths 0–{result.n_units}."
    )
