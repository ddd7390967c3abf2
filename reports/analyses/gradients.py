"""Report content for the gradient per path length (Veit et al. Fig. 6b and 6c)."""

from __future__ import annotations

import math

import seaborn as sns
from matplotlib.axes import Axes
from resnet_probe.reports.analyses.paths import big_int
from resnet_probe.reports.content import Figure, Table, level_of, register
from resnet_probe.reports.findings import gradients_finding

from resnet_probe.analyses.gradients import LONG_PATH, GradientsResult
from resnet_probe.results import RunRecord

BN_NOTE = (
    "BatchNorm ran in eval mode (running statistics): batch statistics would couple the images "
    "of a batch, and each image follows its own path."
)


def _ks(result: GradientsResult) -> list[int]:
    return [row.k for row in result.lengths]


def _draw_mean(ax: Axes, result: GradientsResult, record: RunRecord) -> None:
    rows = [r for r in result.lengths if r.mean_norm > 0]
    sns.lineplot(x=[r.k for r in rows], y=[r.mean_norm for r in rows], ax=ax, marker="o", label="mean")
    # The bootstrap interval of each mean; a lower end of 0 has no place on a log axis.
    shown = [r for r in rows if r.ci[0] > 0]
    ax.errorbar([r.k for r in shown], [r.mean_norm for r in shown],
                yerr=[[r.mean_norm - r.ci[0] for r in shown], [r.ci[1] - r.mean_norm for r in shown]],
                fmt="none", elinewidth=1, capsize=2, alpha=0.7, label=f"{level_of(record)} bootstrap interval")
    ax.legend(fontsize="small")
    ax.set_yscale("log")
    ax.set_xlabel("path length k (residual branches in the backward pass)")
    ax.set_ylabel("mean input-gradient norm")


def _draw_total(ax: Axes, result: GradientsResult) -> None:
    a, b = result.effective_range
    ax.axvspan(a - 0.5, b + 0.5, color="tab:orange", alpha=0.15,
               label=f"{100 * result.share:.0f} % of the gradient: {a}–{b}")
    (a_lo, a_hi), (b_lo, b_hi) = result.effective_range_ci
    for lo, hi in ((a_lo, a_hi), (b_lo, b_hi)):
        ax.axvspan(lo - 0.5, hi + 0.5, ymin=0.0, ymax=0.04, color="tab:orange", alpha=0.6)
    if all(r.total is not None for r in result.lengths):
        y = [r.total for r in result.lengths]
        ax.set_ylabel("total gradient (mean norm × paths)")
    else:  # totals past float range: their shares have the same shape
        y = [100 * r.share for r in result.lengths]
        ax.set_ylabel("share of the total gradient (%)")
    sns.lineplot(x=_ks(result), y=y, ax=ax, marker="o", color="tab:blue", label="total gradient")
    ax.set_xlabel("path length k")
    twin = ax.twinx()
    counts = [r.paths for r in result.lengths]
    if max(counts).bit_length() < 1000:
        twin.plot(_ks(result), [float(c) for c in counts], color="grey", linestyle="--", linewidth=1,
                  label="number of paths")
        twin.set_ylabel("number of paths", color="grey")
    else:
        twin.plot(_ks(result), [math.log10(c) for c in counts], color="grey", linestyle="--",
                  linewidth=1, label="log10 number of paths")
        twin.set_ylabel("log10 number of paths", color="grey")
    twin.grid(False)
    handles, labels = ax.get_legend_handles_labels()
    h2, l2 = twin.get_legend_handles_labels()
    ax.legend(handles + h2, labels + l2, fontsize="small", loc="upper right")


@register(GradientsResult)
def path_gradients_figures(result: GradientsResult, record: RunRecord) -> list[Figure]:
    """Fig. 6b (mean norm per length, log y) and Fig. 6c (total per length, effective range)."""
    samples = sorted({r.samples for r in result.lengths})
    per_k = str(samples[0]) if len(samples) == 1 else f"{samples[0]}–{samples[-1]}"
    return [
        Figure(
            f"Mean norm of the input gradient along one path of length k, {per_k} path samples per "
            f"length, with the bootstrap interval of each mean (Veit et al. 2016, Fig. 6b). BatchNorm in eval mode.",
            lambda axes: _draw_mean(axes[0], result, record),
        ),
        Figure(
            "Total gradient per path length: mean norm × number of paths C(n, k); shaded, the "
            f"shortest window of lengths holding {100 * result.share:.0f} % of it (the effective "
            "paths), with the bootstrap intervals of its two ends as bars along the bottom; dashed, right axis: "
            "the number of paths (Veit et al. 2016, Fig. 6c).",
            lambda axes: _draw_total(axes[0], result),
            width=7.5,
        ),
    ]


@register(GradientsResult)
def path_gradients_tables(result: GradientsResult, record: RunRecord) -> list[Table]:
    """The effective range and the statistics of every length."""
    a, b = result.effective_range
    level = level_of(record)
    summary = Table(
        "Effective paths",
        ["quantity", "value"],
        [
            ["residual units n", result.n_units],
            [f"shortest window with {100 * result.share:.0f} % of the total gradient", f"{a}–{b}"],
            [f"{level} bootstrap interval of its ends", range_ends(result)],
            [f"share from paths longer than {LONG_PATH}", f"{100 * result.share_longer_than_20:.4g} %"],
        ],
    )
    rows = [
        [
            r.k, r.samples, f"{r.mean_norm:.4g}", f"[{r.ci[0]:.4g}, {r.ci[1]:.4g}]", f"{r.std_norm:.4g}",
            big_int(r.paths),
            f"{r.total:.4g}" if r.total is not None else f"1e{r.log10_total:.1f}",
            f"{100 * r.share:.4g} %",
        ]
        for r in result.lengths
    ]
    per_length = Table(
        "Gradient per path length",
        ["k", "samples", "mean norm", f"{level} bootstrap interval", "std norm", "paths C(n, k)", "total", "share"],
        rows,
    )
    return [summary, per_length]


@register(GradientsResult)
def path_gradients_reading(result: GradientsResult, record: RunRecord) -> list[str]:
    """Where the gradient comes from, how it changes with length, and the BN mode."""
    a, b = result.effective_range
    n = result.n_units
    lo, hi = result.lengths[0], result.lengths[-1]
    longer = (
        f"paths longer than {LONG_PATH} units carry {100 * result.share_longer_than_20:.2g} % of it"
        if n > LONG_PATH
        else f"this net has no paths longer than {LONG_PATH} units"
    )
    sentences = [
        f"{100 * result.share:.0f} % of the total gradient comes from paths of length {a}–{b} "
        f"out of {n} ({level_of(record)} bootstrap intervals of the ends: {range_ends(result)}); {longer}."
    ]
    found = gradients_finding(result.effective_range, result.effective_range_ci, n, record)
    if found:
        sentences.append(found)
    if lo.k != hi.k and lo.mean_norm > 0 and hi.mean_norm > 0:
        ratio = hi.mean_norm / lo.mean_norm
        trend = "falls" if ratio < 1 else "rises"
        factor = 1 / ratio if ratio < 1 else ratio
        peak = max(result.lengths, key=lambda r: r.share)
        apart = lo.ci[1] < hi.ci[0] or hi.ci[1] < lo.ci[0]
        support = (
            "" if apart else "; the two means' bootstrap intervals overlap, so these samples do not show a trend"
        )
        sentences.append(
            f"The mean gradient norm of one path {trend} from {lo.mean_norm:.3g} at length {lo.k} "
            f"to {hi.mean_norm:.3g} at length {hi.k} (a factor of {factor:.3g}{support}); weighted by the "
            f"number of paths, the total gradient peaks at length {peak.k} "
            f"({100 * peak.share:.2g} % of it)."
        )
    widest = max(result.lengths, key=lambda r: (r.ci[1] - r.ci[0]) / r.mean_norm if r.mean_norm > 0 else 0.0)
    if widest.mean_norm > 0:
        half = 50 * (widest.ci[1] - widest.ci[0]) / widest.mean_norm
        sentences.append(
            f"Sample size: with {widest.samples} path samples per length the widest interval of a mean is "
            f"±{half:.2g} % of it (length {widest.k}); four times the samples halve it."
        )
    sentences.append(BN_NOTE)
    return sentences


def range_ends(result: GradientsResult) -> str:
    """The bootstrap intervals of the effective range's two ends, as ``4–5 and 10–12``."""
    (a_lo, a_hi), (b_lo, b_hi) = result.effective_range_ci

    def span(lo: int, hi: int) -> str:
        return str(lo) if lo == hi else f"{lo}–{hi}"

    return f"{span(a_lo, a_hi)} and {span(b_lo, b_hi)}"
