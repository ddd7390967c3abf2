"""Report content for lesion studies (Veit et al. 2016, Fig. 3 and 5a)."""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass
from typing import Sequence

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
from resnet_probe.reports.findings import lesion_finding, random_k_finding

from resnet_probe.analyses.lesion import Baseline, LesionConfig, LesionResult, LesionStudy, UnitInfo
from resnet_probe.metrics import perplexity
from resnet_probe.results import RunRecord
from resnet_probe.stats import PERMUTATION_RESAMPLES, unpack_bits

FIG_WIDTH = 9.0  # room for the legend right of the axes
ORDINALS = ("first", "second", "third", "fourth", "fifth", "sixth", "seventh", "eighth", "ninth", "tenth")


@dataclass(frozen=True)
class Scale:
    """How the study's metric is shown: test error in % for hits and shares (``mean``), the mean itself for a
    loss (lower is better); ``floats``: the paired test is the sign-flip permutation, not McNemar."""

    metric: str = "top1"
    loss: bool = False
    floats: bool = False

    @classmethod
    def of(cls, result: LesionResult) -> Scale:
        return cls(result.metric, result.metric_kind == "loss", result.metric_kind != "hit")

    def y(self, value: float) -> float:
        """The plotted number: error in % (hits), the mean loss (losses)."""
        return value if self.loss else 100 * (1 - value)

    @property
    def label(self) -> str:
        if self.loss:
            return f"mean {self.metric} per example (lower is better)"
        return "test error (%)" if self.metric == "top1" else f"{self.metric} error (%)"

    @property
    def noun(self) -> str:
        if self.loss:
            return f"mean {self.metric}"
        return "accuracy" if self.metric == "top1" else f"{self.metric} accuracy"

    def value(self, v: float) -> str:
        return f"{v:.4f}" if self.loss else pct(v)

    def interval(self, ci: Sequence[float]) -> str:
        return f"[{ci[0]:.4f}, {ci[1]:.4f}]" if self.loss else interval_text(ci)

    def harm(self, base: float, v: float) -> float:
        """How much worse ``v`` is than ``base``: points of accuracy lost, or the rise of the loss."""
        return v - base if self.loss else 100 * (base - v)

    def harm_column(self) -> str:
        return f"rise of the mean {self.metric}" if self.loss else "cost (points)"

    def harm_cell(self, harm: float) -> str:
        return f"{harm:+.4f}" if self.loss else f"{harm:+.2f}"

    def cost(self, harm: float) -> str:
        """``costs 12.3 points`` / ``gains 1.6 points``, or ``raises the mean loss by 0.412``."""
        if not self.loss:
            return cost(harm)
        return f"lowers the mean {self.metric} by {-harm:.3f}" if harm < 0 else (
            f"raises the mean {self.metric} by {harm:.3f}")



def _class_cells(row: Baseline | LesionConfig, scale: Scale) -> list[object]:
    """correct, images, cross-entropy; the first and last blank where the targets are not class indices."""
    if row.hits is None and scale.floats:
        return ["", row.n, ""]
    return [row.correct, row.n, f"{row.loss:.4f}"]


def _studies(result: LesionResult, record: RunRecord) -> list[tuple[str, LesionStudy]]:
    """(label, study) of the main model and every compared one."""
    main = str(record.model.get("spec", "model"))
    return [(main, result.study)] + [(c.spec or f"compare {i + 1}", c) for i, c in enumerate(result.compare)]


def _labelled(result: LesionResult, record: RunRecord) -> list[tuple[str, LesionStudy]]:
    """Studies with their model names, numbered where two share one (other checkpoints)."""
    studies = _studies(result, record)
    names = [n for n, _ in studies]
    out = []
    for i, (name, study) in enumerate(studies):
        out.append((name if names.count(name) == 1 else f"{name} #{names[: i + 1].count(name)}", study))
    return out


def position_in_stage(unit: UnitInfo, units: Sequence[UnitInfo]) -> str:
    """``the first unit of stage 2`` or ``unit 12 of stage 3``."""
    members = [u.index for u in units if u.stage == unit.stage]
    pos = members.index(unit.index)
    if pos < len(ORDINALS):
        return f"the {ORDINALS[pos]} unit of stage {unit.stage}"
    return f"unit {pos + 1} of stage {unit.stage}"


def describe_unit(unit: UnitInfo, units: Sequence[UnitInfo]) -> str:
    """``unit 3 (layer2.0, the first unit of stage 2: downsampling, zero-pad shortcut)``."""
    kind = "no shortcut" if unit.shortcut == "none" else f"{unit.shortcut} shortcut"
    what = f"downsampling, {kind}" if unit.downsampling else kind
    return f"unit {unit.index} ({unit.name}, {position_in_stage(unit, units)}: {what})"


def zero_pad_clause(unit: UnitInfo) -> str:
    """Why deleting an option-A downsampling unit hurts: its output is partly zero."""
    zero = unit.out_channels - unit.in_channels
    share = "half" if 2 * zero == unit.out_channels else f"{zero} of {unit.out_channels}"
    return (
        f"its zero-pad shortcut carries only {unit.in_channels} of its {unit.out_channels} channels, "
        f"so deleting it leaves {share} of its output channels zero"
    )


def _single(study: LesionStudy) -> list[tuple[int, float]]:
    """(unit index, metric value) of every single-unit configuration."""
    return [(c.deleted[0], c.score) for c in study.configs if len(c.deleted) == 1]


def _legend_outside(ax: Axes) -> None:
    """Legend right of the axes: inside, it hides the spikes it should explain."""
    ax.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0)


def _draw_sweep(ax: Axes, result: LesionResult, record: RunRecord) -> None:
    scale = Scale.of(result)
    studies = _labelled(result, record)
    palette = sns.color_palette("deep", len(studies))
    units = result.units
    for s, first in enumerate(stage[0] for stage in _stages(units)):
        if s:
            ax.axvline(first - 0.5, color="grey", linestyle=":", linewidth=1)
    for i in result.skipped:
        ax.axvspan(i - 0.4, i + 0.4, color="grey", alpha=0.2,
                   label="cannot be deleted (skipped)" if i == result.skipped[0] else None)
    for n, ((label, study), color) in enumerate(zip(studies, palette, strict=True)):
        points = _single(study)
        error = {i: scale.y(a) for i, a in points}
        # NaN at skipped units breaks the line there instead of bridging them.
        x = list(range(len(study.units)))
        ax.plot(x, [error.get(i, math.nan) for i in x], marker="o", markersize=5, color=color,
                label=f"{label}: one unit deleted")
        # Wilson intervals of the error, and hollow markers where the change is not significant.
        bars = [(c.deleted[0], scale.y(c.score), *sorted((scale.y(c.ci[0]), scale.y(c.ci[1]))), c.significant)
                for c in study.configs if len(c.deleted) == 1]
        ax.errorbar([b[0] for b in bars], [b[1] for b in bars],
                    yerr=[[b[1] - b[2] for b in bars], [b[3] - b[1] for b in bars]],
                    fmt="none", ecolor=color, elinewidth=1, capsize=2, alpha=0.7)
        same = [b for b in bars if not b[4]]
        if same:
            ax.scatter([b[0] for b in same], [b[1] for b in same], marker="o", s=36, facecolor="white",
                       edgecolor=color, zorder=4, label=f"{label}: not significant (Holm)")
        ax.axhline(scale.y(study.baseline.score), color=color, linestyle="--", linewidth=1,
                   label=f"{label}: no deletion")
        down = [(i, scale.y(a)) for i, a in points if study.units[i].downsampling]
        if down:
            ax.scatter([d[0] for d in down], [d[1] for d in down], marker="^", s=90, color=color,
                       edgecolor="black", zorder=5, label=f"{label}: downsampling unit")
            if n == 0:  # names of the main model only: overlays would collide
                for i, e in down:
                    ax.annotate(study.units[i].name, (i, e), textcoords="offset points", xytext=(6, 4),
                                fontsize="small")
    ax.set_xlabel("deleted unit (index; dotted lines: stage boundaries)")
    ax.set_ylabel(scale.label)
    if len(units) <= 30:
        ax.set_xticks([u.index for u in units])
    else:
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    _legend_outside(ax)


def _draw_set(ax: Axes, result: LesionResult, record: RunRecord) -> None:
    scale = Scale.of(result)
    models: list[str] = []
    errors: list[float] = []
    kinds: list[str] = []
    for label, study in _labelled(result, record):
        models += [label, label]
        errors += [scale.y(study.baseline.score), scale.y(study.configs[0].score)]
        kinds += ["no deletion", "set deleted"]
    sns.barplot(x=models, y=errors, hue=kinds, ax=ax)
    ax.set_ylabel(scale.label)
    ax.set_xlabel("")


def _draw_random(ax: Axes, result: LesionResult, record: RunRecord) -> None:
    scale = Scale.of(result)
    studies = [(label, s) for label, s in _labelled(result, record) if s.random_k]
    for (label, study), color in zip(studies, sns.color_palette("deep", len(studies)), strict=True):
        k = [r.k for r in study.random_k]
        mean = [scale.y(r.mean_accuracy) for r in study.random_k]
        sns.lineplot(x=k, y=mean, ax=ax, marker="o", color=color, label=f"{label}: mean of random sets")
        # Each set as a faint point; the bootstrap interval of the mean as a band where 5+ sets make one.
        for r in study.random_k:
            ax.scatter([r.k] * len(r.accuracies), [scale.y(a) for a in r.accuracies], s=8, color=color,
                       alpha=0.25, linewidths=0)
        banded = [r for r in study.random_k if r.samples >= MIN_BAND]
        if banded:
            ax.fill_between([r.k for r in banded], [min(scale.y(r.ci[0]), scale.y(r.ci[1])) for r in banded],
                            [max(scale.y(r.ci[0]), scale.y(r.ci[1])) for r in banded], color=color, alpha=0.2,
                            label=f"{label}: {level_of(record)} bootstrap interval of the mean")
        ax.axhline(scale.y(study.baseline.score), color=color, linestyle="--", linewidth=1,
                   label=f"{label}: no deletion")
    ax.set_xlabel("number of deleted units k")
    ax.set_ylabel(scale.label)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    _legend_outside(ax)


def _stages(units: Sequence[UnitInfo]) -> list[list[int]]:
    stages: dict[int, list[int]] = {}
    for u in units:
        stages.setdefault(u.stage, []).append(u.index)
    return [stages[k] for k in sorted(stages)]


@register(LesionResult)
def lesion_figures(result: LesionResult, record: RunRecord) -> list[Figure]:
    """Error per deleted unit (Fig. 3) or for the deleted set, and error per random k (Fig. 5a)."""
    figs = []
    scale = Scale.of(result)
    what = scale.label[0].upper() + scale.label[1:]
    others = " Other colours: the compared models." if result.compare else ""
    if result.sweep:
        figs.append(Figure(
            f"{what} after deleting one residual unit at a time (Veit et al. 2016, Fig. 3): dashed, "
            "the unchanged model; triangles, downsampling units; dotted, stage boundaries." + others,
            lambda axes: _draw_sweep(axes[0], result, record),
            width=FIG_WIDTH,
        ))
    else:
        figs.append(Figure(
            f"{what} with units {', '.join(result.configs[0].names)} deleted together, "
            "against the unchanged model." + others,
            lambda axes: _draw_set(axes[0], result, record),
        ))
    if result.random_k:
        samples = result.random_k[0].samples
        figs.append(Figure(
            f"{what} after deleting k random units, {samples} random sets per k (Veit et al. 2016, Fig. 5a): "
            f"the mean, with its bootstrap interval as a band where {MIN_BAND} or more sets make one; faint, "
            "each set; dashed, the unchanged model." + others,
            lambda axes: _draw_random(axes[0], result, record),
            width=FIG_WIDTH,
        ))
    return figs


@register(LesionResult)
def lesion_tables(result: LesionResult, record: RunRecord) -> list[Table]:
    """Baselines, every deleted configuration, and the random-k statistics."""
    studies = _labelled(result, record)
    scale = Scale.of(result)
    tables = [Table(
        "Unchanged models",
        ["model", scale.noun, f"{level_of(record)} interval", "correct", "images", "loss"],
        [[label, scale.value(s.baseline.score), scale.interval(s.baseline.ci), *_class_cells(s.baseline, scale)]
         for label, s in studies],
    )]
    test = "sign-flip permutation, Holm" if scale.floats else "McNemar, Holm"
    for label, s in studies:
        base = s.baseline.score
        rows = []
        for c in s.configs:
            units = [s.units[i] for i in c.deleted]
            rows.append([
                ", ".join(map(str, c.deleted)), ", ".join(c.names),
                ", ".join(sorted({str(u.stage) for u in units})),
                "yes" if any(u.downsampling for u in units) else "",
                ", ".join(sorted({u.shortcut for u in units})),
                scale.value(c.score), scale.interval(c.ci), *_class_cells(c, scale)[:2],
                scale.harm_cell(scale.harm(base, c.score)), p_text(c.p_adjusted), "yes" if c.significant else "no",
                _class_cells(c, scale)[2],
            ])
        title = "Single-unit deletions" if result.sweep else "Deleted set"
        tables.append(Table(
            f"{title}: {label}",
            ["deleted", "names", "stage", "downsampling", "shortcut", scale.noun, f"{level_of(record)} interval",
             "correct", "images", scale.harm_column(), f"p ({test})", "significant", "loss"],
            rows,
        ))
        if s.random_k:
            tables.append(Table(
                f"Random deletions: {label}",
                ["k", "sets", f"mean {scale.noun}", f"{level_of(record)} bootstrap interval",
                 "std" + ("" if scale.loss else " (points)"), f"mean {scale.harm_column()}", "sets significant (Holm)"],
                [[r.k, r.samples, scale.value(r.mean_accuracy), scale.interval(r.ci),
                  f"{r.std_accuracy:.4f}" if scale.loss else f"{100 * r.std_accuracy:.2f}",
                  scale.harm_cell(scale.harm(base, r.mean_accuracy)), f"{r.significant}/{r.samples}"]
                 for r in s.random_k],
            ))
    return tables


def _names(units: Sequence[UnitInfo]) -> str:
    return ", ".join(f"{u.index} ({u.name})" for u in units)


def cost(points: float) -> str:
    """``costs 12.3 points`` or, for a deletion that helps, ``gains 1.6 points``."""
    return f"gains {-points:.1f} points" if points < -0.05 else f"costs {abs(points):.1f} points"


def _study_reading(
    label: str, study: LesionStudy, sweep: bool, main: bool, record: RunRecord, scale: Scale
) -> list[str]:
    base = study.baseline.score
    units = study.units
    lead = "Deleting" if main else f"In {label}, deleting"
    out: list[str] = []
    test = (
        "a sign-flip permutation test of the mean difference per example, Holm-adjusted" if scale.floats
        else "exact McNemar test on the images one of the two gets right, Holm-adjusted"
    )
    if sweep:
        costs = {c.deleted[0]: scale.harm(base, c.score) for c in study.configs}
        median = statistics.median(costs.values())
        down = [u for u in units if u.downsampling]
        keep = [i for i in costs if not units[i].downsampling]
        worst = max(keep, key=costs.__getitem__) if keep else None
        tail = (
            f"; the worst deletion of a unit that keeps the shape is {describe_unit(units[worst], units)}, "
            f"which {scale.cost(costs[worst])}" if worst is not None else ""
        )
        # The headline first (the demo's index shows only the first sentence).
        median_config = sorted(study.configs, key=lambda c: costs[c.deleted[0]])[len(study.configs) // 2]
        known = "" if median_config.significant else (
            f", which {median_config.n} {examples_word(record)} cannot tell from zero")
        of = "" if scale.loss else f" of {scale.noun}"
        out.append(
            f"{label}: the median single deletion {scale.cost(median)}{of} "
            f"(unchanged: {scale.value(base)}, {level_of(record)} interval {scale.interval(study.baseline.ci)})"
            f"{known}{tail}."
        )
        significant = sum(c.significant for c in study.configs)
        out.append(
            f"{significant} of {len(study.configs)} single deletions of {label} differ significantly from the "
            f"unchanged model ({test})."
        )
        for u in down:
            if u.index not in costs:
                continue
            text = f"{lead} {describe_unit(u, units)} {scale.cost(costs[u.index])}"
            if u.shortcut == "zero-pad":
                text += f": {zero_pad_clause(u)}"
            out.append(text + ".")
        if down:
            out.append(f"Downsampling units of {label}: {_names(down)}.")
        if study.skipped:
            skipped = [units[i] for i in study.skipped]
            out.append(
                f"Units {_names(skipped)} of {label} change shape and have no shortcut: deleting them "
                "is not defined, so the sweep skips them."
            )
    else:
        c = study.configs[0]
        deleted = [units[i] for i in c.deleted]
        together = " together" if len(deleted) > 1 else ""
        verdict = "significant" if c.significant else "not significant"
        name = "sign-flip" if scale.floats else "McNemar"
        out.append(
            f"{lead} {', '.join(describe_unit(u, units) for u in deleted)}{together} "
            f"{scale.cost(scale.harm(base, c.score))} ({scale.value(base)} → {scale.value(c.score)}, "
            f"{scale.interval(c.ci)}; {name} p = {p_text(c.p_adjusted)}, {verdict})."
        )
        for u in deleted:
            if u.downsampling and u.shortcut == "zero-pad":
                out.append(f"Unit {u.index} ({u.name}) of {label}: {zero_pad_clause(u)}.")
    if study.random_k:
        lo, hi = study.random_k[0], study.random_k[-1]
        out.append(
            f"{label}: deleting k random units ({lo.samples} sets per k) leaves a mean {scale.noun} of "
            f"{scale.value(lo.mean_accuracy)} ({scale.interval(lo.ci)}) at k = {lo.k}"
            + (f" and {scale.value(hi.mean_accuracy)} ({scale.interval(hi.ci)}) at k = {hi.k}." if hi.k != lo.k
               else ".")
        )
    return out


def _findings(study: LesionStudy, sweep: bool, record: RunRecord) -> list[str]:
    """Veit et al.'s Fig. 3 and Fig. 5a findings with this run's verdicts (hit metrics with per-image hits)."""
    out = []
    b = study.baseline
    singles = [c for c in study.configs if len(c.deleted) == 1 and c.hits is not None]
    if sweep and b.hits is not None and singles:
        base = unpack_bits(b.hits, b.n)
        found = lesion_finding(
            base, [unpack_bits(c.hits or "", c.n) for c in singles],
            [study.units[c.deleted[0]].downsampling for c in singles], level_value(record), record,
        )
        if found:
            out.append(found)
    if study.random_k:
        found = random_k_finding([r.k for r in study.random_k], [r.accuracies for r in study.random_k],
                                 [r.ci for r in study.random_k], level_value(record), record)
        if found:
            out.append(found)
    return out


def perplexity_sentence(study: LesionStudy, sweep: bool) -> str:
    """The mean token loss as perplexity, exp(loss): the unit language-model papers report (equal-length sequences)."""
    b = study.baseline
    text = (f"As perplexity (exp of the mean token loss): unchanged {perplexity(b.score):.2f} "
            f"(interval [{perplexity(b.ci[0]):.2f}, {perplexity(b.ci[1]):.2f}])")
    if study.configs:
        worst = max(study.configs, key=lambda c: c.score)
        which = "the worst single deletion" if sweep else "with the deletion"
        text += f", {which} {perplexity(worst.score):.2f} (units {', '.join(worst.names)})"
    return text + "."


def loss_sample_sentence(n: int, tests: int, metric: str, record: RunRecord) -> str:
    """What the paired tests of a loss metric rest on, and the smallest p their resampling can give.

    For token ids, the examples are sequences (their mean token loss): tokens of one sequence are
    not independent, so the sentence counts both.
    """
    floor = 1 / (PERMUTATION_RESAMPLES + 1)
    alpha = (1 - level_value(record)) / max(tests, 1)
    can = (
        f"Holm's first threshold over {tests} tests is {alpha:.2g}, above it" if alpha > floor
        else f"Holm's first threshold over {tests} tests is {alpha:.2g}, below it: no test of this run can be "
        "significant; run fewer configurations"
    )
    data = record.data or {}
    tokens = ""
    if data.get("tokens"):
        tokens = f"; {data['tokens']} tokens, {int(data.get('seq_len', 0)) - 1} of each sequence predicted"
    return (
        f"Sample size: each paired test compares the {metric} of the same {n} {examples_word(record)}{tokens} "
        f"(a sign-flip permutation of the {n} differences, {PERMUTATION_RESAMPLES} random sign patterns: no p "
        f"below {floor:.2g}); {can}."
    )


def examples_word(record: RunRecord) -> str:
    """What one example is: an image, a sequence of tokens, or an example passed in."""
    data = record.data or {}
    if data.get("tokens"):
        return "sequences"
    return "examples" if data.get("preprocessed") else "images"


@register(LesionResult)
def lesion_reading(result: LesionResult, record: RunRecord) -> list[str]:
    """The cost of deleting each downsampling unit, the median deletion, the random-k trend."""
    out = []
    for i, (label, study) in enumerate(_labelled(result, record)):
        sentences = _study_reading(label, study, result.sweep, i == 0, record, Scale.of(result))
        if i == 0 and result.metric_kind == "hit":
            # The paper's finding right after the headline, so a reader sees them together.
            sentences[1:1] = _findings(study, result.sweep, record)
        out += sentences
    study = result.study
    tests = len(study.configs) + sum(r.samples for r in study.random_k)
    if result.metric_kind != "hit":
        out.append(loss_sample_sentence(study.baseline.n, tests, result.metric, record))
    if result.metric == "loss" and (record.data or {}).get("tokens"):
        out.append(perplexity_sentence(study, result.sweep))
    else:
        out.append(sample_size_sentence(study.baseline.n, tests, record))
    adaptive = adaptive_sentence([c.n for c in study.configs], study.baseline.n, record)
    return out + ([adaptive] if adaptive else [])
