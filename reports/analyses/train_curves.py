"""Report content for training curves (He et al. 2015, Figs. 1 and 6)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from matplotlib.axes import Axes
from matplotlib.ticker import PercentFormatter
from resnet_probe.reports.content import Figure, Table, pct, register

from resnet_probe.analyses.train_curves import TrainCurvesResult, TrainRun
from resnet_probe.results import RunRecord

if TYPE_CHECKING:
    import pandas as pd


def _label(run: TrainRun) -> str:
    return run.spec.removeprefix("zoo:")


def _frame(runs: list[TrainRun]) -> pd.DataFrame:
    import pandas as pd

    rows = []
    for run in runs:
        for h in run.history:
            for split in ("train", "test"):
                value = h.get(f"{split}_error")
                if value is not None:
                    rows.append({"model": _label(run), "iteration": h["iteration"], "split": split, "error": value})
    return pd.DataFrame(rows, columns=["model", "iteration", "split", "error"])


@register(TrainCurvesResult)
def train_curves_figures(result: TrainCurvesResult, record: RunRecord) -> list[Figure]:
    """Error vs iteration, train dashed and test solid; plain and residual nets side by side."""
    import seaborn as sns

    by_depth = sorted(result.runs, key=lambda r: (r.depth or 0, r.spec))
    groups = [
        ("plain", [r for r in by_depth if not r.residual]),
        ("residual", [r for r in by_depth if r.residual]),
    ]
    groups = [(name, runs) for name, runs in groups if runs]
    if not groups:
        return []

    def draw(axes: list[Axes]) -> None:
        for ax, (name, runs) in zip(axes, groups, strict=True):
            frame = _frame(runs)
            sns.lineplot(
                data=frame,
                x="iteration",
                y="error",
                hue="model",
                hue_order=[_label(r) for r in runs],
                style="split",
                style_order=["test", "train"],
                dashes={"test": "", "train": (4, 2)},
                ax=ax,
                linewidth=1.4,
            )
            ax.set_title(f"{name} nets" if len(groups) > 1 else "training curves")
            ax.yaxis.set_major_formatter(PercentFormatter(1.0))
            ax.set_ylabel("error")
            ax.set_ylim(bottom=0)

    caption = (
        "Error against iteration (He et al. 2015, Figs. 1 and 6): dashed training error (augmented batches, "
        "training mode, averaged over each epoch), solid test error after each epoch."
    )
    return [Figure(caption, draw, panels=len(groups), width=5.5 * len(groups) + 1, height=4.2)]


@register(TrainCurvesResult)
def train_curves_tables(result: TrainCurvesResult, record: RunRecord) -> list[Table]:
    """One row per run: length, final and best errors, time."""
    rows = []
    for run in result.runs:
        tests = [h["test_error"] for h in run.history if h.get("test_error") is not None]
        rows.append(
            [
                _label(run),
                run.dataset,
                "residual" if run.residual else "plain",
                len(run.history),
                run.iterations,
                pct(run.final_train_error),
                pct(run.final_test_error),
                pct(min(tests) if tests else None),
                round(sum(h.get("seconds") or 0.0 for h in run.history), 1),
            ]
        )
    columns = [
        "model",
        "dataset",
        "kind",
        "epochs",
        "iterations",
        "final train error",
        "final test error",
        "best test error",
        "seconds",
    ]
    return [Table("Training runs", columns, rows)]


@register(TrainCurvesResult)
def train_curves_reading(result: TrainCurvesResult, record: RunRecord) -> list[str]:
    """Final errors, residual vs plain at equal depth, and plain nets against depth (degradation)."""
    sentences: list[str] = []
    per_run = []
    for run in result.runs:
        per_run.append(
            f"{_label(run)} trained {run.iterations} iterations ({len(run.history)} epochs) on {run.dataset}: "
            f"final training error {pct(run.final_train_error)}, test error {pct(run.final_test_error)}."
        )
    plain = {r.depth: r for r in result.runs if not r.residual and r.depth}
    for res in result.runs:
        if not res.residual or res.depth is None or res.depth not in plain:
            continue
        twin = plain[res.depth]
        if res.final_test_error is not None and twin.final_test_error is not None:
            better = res.final_test_error < twin.final_test_error
            sentences.append(
                f"At depth {res.depth} the residual net ends {'below' if better else 'above'} its plain twin "
                f"({pct(res.final_test_error)} vs {pct(twin.final_test_error)} test error)."
            )
    ranked = sorted(
        (r for r in result.runs if not r.residual and r.depth and r.final_train_error is not None),
        key=lambda r: r.depth or 0,
    )
    if len(ranked) > 1:
        deep, shallow = ranked[-1], ranked[0]
        worse = (deep.final_train_error or 0) > (shallow.final_train_error or 0)
        sentences.insert(0,
            f"Plain nets: {_label(deep)} ends with {'higher' if worse else 'lower'} training error than "
            f"{_label(shallow)} ({pct(deep.final_train_error)} vs {pct(shallow.final_train_error)})"
            + ("; that is He et al.'s degradation problem (deeper plain nets train worse)." if worse else ".")
        )
    # The comparisons first (the demo's index shows the first sentence), then each run.
    return sentences + per_run


