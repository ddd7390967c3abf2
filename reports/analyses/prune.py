"""Report content for depth pruning: what was removed, what it keeps on held-out data, what it saves."""

from __future__ import annotations

from matplotlib.axes import Axes
from matplotlib.ticker import MaxNLocator
from resnet_probe.reports.content import Figure, Table, interval_text, level_of, p_text, pct, register

from resnet_probe.analyses.prune import Evaluation, PruneResult
from resnet_probe.results import RunRecord

LABELS = {"unpruned": "unpruned", "masked": "units deleted (executor)", "removed": "units removed (smaller model)"}


def _value(result: PruneResult, v: float) -> str:
    return f"{v:.4f}" if result.metric_kind == "loss" else pct(v)


def _interval(result: PruneResult, ci: tuple[float, float]) -> str:
    return f"[{ci[0]:.4f}, {ci[1]:.4f}]" if result.metric_kind == "loss" else interval_text(ci)


def _y(result: PruneResult, v: float) -> float:
    """Error in % for hits, the mean loss for a loss metric."""
    return v if result.metric_kind == "loss" else 100 * (1 - v)


def _ylabel(result: PruneResult) -> str:
    return f"mean {result.metric} (lower is better)" if result.metric_kind == "loss" else "error (%)"


def _draw_steps(ax: Axes, result: PruneResult) -> None:
    import seaborn as sns

    k = [0] + [s.k for s in result.steps]
    y = [_y(result, result.calibration_base)] + [_y(result, s.value) for s in result.steps]
    sns.lineplot(x=k, y=y, marker="o", ax=ax, label=f"calibration ({result.calibration_n} examples)")
    for s in result.steps:
        ax.annotate(s.name, (s.k, _y(result, s.value)), textcoords="offset points", xytext=(6, 4), fontsize="small")
    colours = sns.color_palette("deep", 3)
    for e, colour in zip(result.evaluations, colours, strict=False):
        at = 0 if e.model == "unpruned" else result.remove
        lo, hi = sorted((_y(result, e.ci[0]), _y(result, e.ci[1])))
        ax.errorbar([at], [_y(result, e.value)], yerr=[[_y(result, e.value) - lo], [hi - _y(result, e.value)]],
                    fmt="s", color=colour, capsize=3, label=f"evaluation: {LABELS[e.model]}")
    ax.set_xlabel("units removed")
    ax.set_ylabel(_ylabel(result))
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.legend(fontsize="small")


def _draw_cost(ax: Axes, result: PruneResult) -> None:
    import seaborn as sns

    assert result.after is not None
    kinds = ["parameters", "FLOPs per example", "batch-1 latency"]
    before = [result.before.params, result.before.flops, result.before.latency_ms]
    after = [result.after.params, result.after.flops, result.after.latency_ms]
    share = [100 * a / b if b else 0.0 for a, b in zip(after, before, strict=True)]
    sns.barplot(x=kinds, y=share, ax=ax, color=sns.color_palette("deep")[1])
    ax.axhline(100, color="grey", linestyle="--", linewidth=1)
    ax.set_ylabel("pruned as % of unpruned")
    ax.set_xlabel("")


@register(PruneResult)
def prune_figures(result: PruneResult, record: RunRecord) -> list[Figure]:
    """The calibration curve of the chosen removals with the held-out evaluation; the cost kept."""
    figs = [Figure(
        f"{_ylabel(result)[0].upper()}{_ylabel(result)[1:]} on the calibration split as the {result.method} "
        f"choice removes units one by one (line), and on the held-out evaluation split "
        f"({result.evaluation_n} examples) with {level_of(record)} intervals (squares).",
        lambda axes: _draw_steps(axes[0], result),
    )]
    if result.after is not None:
        figs.append(Figure(
            "Parameters, FLOPs of one forward of one example and median batch-1 latency of the smaller model, "
            "as a share of the unpruned model (dashed: 100 %).",
            lambda axes: _draw_cost(axes[0], result),
        ))
    return figs


def _row(result: PruneResult, e: Evaluation) -> list[object]:
    return [LABELS[e.model], _value(result, e.value), _interval(result, e.ci), e.correct, e.n, f"{e.loss:.4f}",
            "" if e.model == "unpruned" else f"{e.lost} / {e.gained}",
            "" if e.model == "unpruned" else p_text(e.p_value),
            "" if e.model == "unpruned" else ("yes" if e.significant else "no")]


@register(PruneResult)
def prune_tables(result: PruneResult, record: RunRecord) -> list[Table]:
    """The chosen units step by step, the evaluation of each model, and the costs."""
    noun = f"mean {result.metric}" if result.metric_kind == "loss" else "accuracy"
    tables = [
        Table(
            f"Units chosen on the calibration split ({result.calibration_n} examples, method {result.method})",
            ["step", "unit", "name", f"calibration {noun} with the first k removed", "loss"],
            [[0, "", "(none)", _value(result, result.calibration_base), ""]]
            + [[s.k, s.unit, s.name, _value(result, s.value), f"{s.loss:.4f}"] for s in result.steps],
        ),
        Table(
            f"Evaluation split ({result.evaluation_n} examples, disjoint from the calibration split)",
            ["model", noun, f"{level_of(record)} interval", "correct", "examples", "loss", "lost / gained",
             "p (paired, Holm)", "significant"],
            [_row(result, e) for e in result.evaluations],
        ),
    ]
    b, a = result.before, result.after
    tables.append(Table(
        "What the model costs",
        ["model", "parameters", "FLOPs per example", "batch-1 latency (ms, median)"],
        [["unpruned", f"{b.params:,}", f"{b.flops:,}", f"{b.latency_ms:.2f}"]]
        + ([["pruned", f"{a.params:,}", f"{a.flops:,}", f"{a.latency_ms:.2f}"]] if a is not None else []),
    ))
    return tables


def _p(p: float) -> str:
    text = p_text(p)
    return text if text.startswith("<") else f"= {text}"


@register(PruneResult)
def prune_reading(result: PruneResult, record: RunRecord) -> list[str]:
    """What was removed, what it costs in accuracy on held-out data and whether that is told from zero."""
    base = result.evaluation("unpruned")
    final = result.evaluation("removed") or result.evaluation("masked")
    assert base is not None and final is not None
    loss = result.metric_kind == "loss"
    change = (final.value - base.value) if loss else 100 * (base.value - final.value)
    what = f"raises the mean {result.metric} by {change:.4f}" if loss else (
        f"costs {change:.2f} points" if change >= 0 else f"gains {-change:.2f} points")
    units = ", ".join(f"{i} ({n})" for i, n in zip(result.chosen, result.names, strict=True))
    out = [
        f"Removing {result.remove} unit{'s' if result.remove != 1 else ''} chosen by {result.method} ({units}) "
        f"{what} on the {final.n} held-out examples: {_value(result, base.value)} "
        f"{_interval(result, base.ci)} → {_value(result, final.value)} {_interval(result, final.ci)}.",
        f"The drop is {'distinguishable' if final.significant else 'not distinguishable'} from zero on "
        f"{final.n} examples (paired test p {_p(final.p_value)}, {final.lost} lost, {final.gained} "
        f"gained, {level_of(record)} level)"
        + ("." if final.significant else "; more evaluation data would be needed to tell a small drop from none."),
        f"Units were chosen on {result.calibration_n} examples and judged on {result.evaluation_n} others "
        f"(split seeded with {result.seed}), so the evaluation is not the number the choice was tuned on.",
    ]
    if result.after is not None:
        b, a = result.before, result.after
        out.append(
            f"The smaller model has {a.params:,} parameters (unpruned {b.params:,}, {100 * a.params / b.params:.0f} %) "
            f"and {a.flops / 1e6:.1f} MFLOPs per example (unpruned {b.flops / 1e6:.1f}, "
            f"{100 * a.flops / b.flops:.0f} %); a batch-1 forward took {a.latency_ms:.2f} ms against "
            f"{b.latency_ms:.2f} ms (median, this machine)."
        )
        if result.removed_equals_masked:
            out.append("Removing the modules gives the same outputs as deleting the units in the executor "
                       f"(max |logit difference| {result.max_abs_difference or 0.0:.2g} on one batch).")
        else:
            out.append(
                "Removing the modules does not give the executor's deletion "
                f"(max |logit difference| {result.max_abs_difference or 0.0:.3g}): deletion keeps the activation "
                "after the sum, removal drops it; both accuracies are in the table, the removed model's is yours."
            )
    if result.saved:
        out.append(f"The smaller model is saved as a torch.export program at {result.saved} (dynamic batch; its "
                   "inputs are preprocessed as the unpruned model's were).")
    return out + list(result.notes)
