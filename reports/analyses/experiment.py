"""Report content for experiments: errors against depth (He 2015 Fig. 6 / Table 6), curves (Fig. 1), cells, tests."""

from __future__ import annotations

from typing import TYPE_CHECKING, Sequence

from markupsafe import Markup, escape
from matplotlib.axes import Axes
from matplotlib.ticker import PercentFormatter
from resnet_probe.reports.content import (
    Figure,
    Table,
    interval_text,
    level_of,
    p_text,
    pct,
    register,
    sample_size_sentence,
)

from resnet_probe.experiments.grid import SHORTCUT_KINDS
from resnet_probe.experiments.papers import imagenet_options_text
from resnet_probe.experiments.result import Comparison, ExperimentCell, ExperimentResult
from resnet_probe.results import RunRecord
from resnet_probe.training.recipe import DIGITS_VARIANT_EPOCHS

if TYPE_CHECKING:
    import pandas as pd

SPLIT_DASHES = {"test": "", "train": (4, 2)}


def _band(c: ExperimentCell, split: str) -> tuple[float, float]:
    """Error bar half-widths below and above the mean: the seeds' std, or the Wilson interval for one seed."""
    mean = c.test_error_mean if split == "test" else c.train_error_mean
    std = c.test_error_std if split == "test" else c.train_error_std
    if std is not None:
        return std, std
    lo, hi = c.test_ci if split == "test" else c.train_ci
    return max(mean - lo, 0.0), max(hi - mean, 0.0)


def _bar_note(result: ExperimentResult, record: RunRecord) -> str:
    if result.repeats > 1:
        return f"bars: ± one std over {result.repeats} seeds"
    return f"bars: {level_of(record)} Wilson intervals (one seed)"


def _curves_frame(result: ExperimentResult) -> pd.DataFrame:
    import pandas as pd

    rows = [
        {"cell": run.cell, "seed": run.seed, "iteration": h["iteration"], "split": split, "error": h[f"{split}_error"]}
        for run in result.runs
        for h in run.history
        for split in ("train", "test")
        if h.get(f"{split}_error") is not None
    ]
    return pd.DataFrame(rows, columns=["cell", "seed", "iteration", "split", "error"])


def _depth_figure(result: ExperimentResult, record: RunRecord) -> Figure:
    def draw(axes: list[Axes]) -> None:
        ax = axes[0]
        for residual, colour in ((False, "tab:red"), (True, "tab:blue")):
            cells = sorted((c for c in result.cells if c.residual == residual and c.depth), key=lambda c: c.depth or 0)
            for split, style in (("test", "-o"), ("train", "--s")):
                if not cells:
                    continue
                means = [c.test_error_mean if split == "test" else c.train_error_mean for c in cells]
                bands = [_band(c, split) for c in cells]
                ax.errorbar([c.depth or 0 for c in cells], means, yerr=[[b[0] for b in bands], [b[1] for b in bands]],
                            fmt=style, color=colour, capsize=3, linewidth=1.4,
                            label=f"{'ResNet' if residual else 'plain'} {split}")
        ax.set_xlabel("depth (layers)")
        ax.set_ylabel("error")
        ax.yaxis.set_major_formatter(PercentFormatter(1.0))
        ax.set_ylim(bottom=0)
        ax.legend()

    caption = (f"Final error against depth (He et al. 2015, Fig. 6 and Table 6): solid test error, dashed training "
               f"error (eval mode, unaugmented training set); {_bar_note(result, record)}.")
    return Figure(caption, draw, width=6.8, height=4.4)


def _curves_figure(result: ExperimentResult) -> Figure | None:
    import seaborn as sns

    frame = _curves_frame(result)
    if frame.empty:
        return None
    if result.experiment == "depth":
        groups = [(name, [c.cell for c in result.cells if c.residual == flag]) for name, flag in
                  (("plain nets", False), ("residual nets", True))]
        groups = [(name, cells) for name, cells in groups if cells]
    else:
        groups = [("all cells", [c.cell for c in result.cells])]

    def draw(axes: list[Axes]) -> None:
        for ax, (name, cells) in zip(axes, groups, strict=True):
            sns.lineplot(data=frame[frame["cell"].isin(cells)], x="iteration", y="error", hue="cell", hue_order=cells,
                         style="split", style_order=["test", "train"], dashes=SPLIT_DASHES, ax=ax, linewidth=1.3,
                         marker="o", markersize=3,
                         errorbar="sd" if result.repeats > 1 else None)
            ax.set_title(name)
            ax.yaxis.set_major_formatter(PercentFormatter(1.0))
            ax.set_ylim(bottom=0)
            ax.legend(fontsize="x-small")

    caption = ("Training curves (He et al. 2015, Fig. 1): dashed training error (augmented batches, training mode, "
               "over each epoch), solid test error after each epoch"
               + (f"; mean and ± one std band over {result.repeats} seeds." if result.repeats > 1 else "."))
    return Figure(caption, draw, panels=len(groups), width=6.0 * len(groups) + 1.5, height=4.4)


def _cells_figure(result: ExperimentResult, record: RunRecord) -> Figure:
    cells = list(result.cells)

    def draw(axes: list[Axes]) -> None:
        ax = axes[0]
        ys = list(range(len(cells)))
        for split, colour, offset in (("test", "tab:blue", -0.15), ("train", "tab:orange", 0.15)):
            means = [c.test_error_mean if split == "test" else c.train_error_mean for c in cells]
            bands = [_band(c, split) for c in cells]
            ax.errorbar(means, [y + offset for y in ys], xerr=[[b[0] for b in bands], [b[1] for b in bands]],
                        fmt="o", color=colour, capsize=3, label=f"{split} error")
        papers = [(c.paper_error / 100, y) for c, y in zip(cells, ys, strict=True) if c.paper_error is not None]
        if papers:
            ax.scatter([p for p, _ in papers], [y for _, y in papers], marker="x", color="black",
                       label="paper (CIFAR-10)")
        ax.set_yticks(ys, [c.cell if c.cell == c.model else f"{c.cell} ({c.model})" for c in cells], fontsize="small")
        ax.invert_yaxis()
        ax.xaxis.set_major_formatter(PercentFormatter(1.0))
        ax.set_xlabel("error")
        ax.set_xlim(left=0)
        ax.legend(fontsize="small")

    caption = f"Final test and training error of every cell; {_bar_note(result, record)}."
    return Figure(caption, draw, width=9.0, height=1.2 + 0.42 * len(cells))


def _cost_figure(result: ExperimentResult) -> Figure:
    cells = list(result.cells)

    def draw(axes: list[Axes]) -> None:
        for ax, attr, label in ((axes[0], "params", "parameters (M)"), (axes[1], "flops", "forward MFLOPs per image")):
            for c in cells:
                ax.scatter(getattr(c, attr) / 1e6, c.test_error_mean, s=40)
                ax.annotate(c.cell, (getattr(c, attr) / 1e6, c.test_error_mean), fontsize="x-small",
                            xytext=(4, 3), textcoords="offset points")
            ax.set_xlabel(label)
            ax.set_ylabel("test error")
            ax.yaxis.set_major_formatter(PercentFormatter(1.0))
        ax = axes[2]
        ys = list(range(len(cells)))
        ax.barh([y - 0.2 for y in ys], [c.train_images_per_s or 0 for c in cells], height=0.4, label="training")
        ax.barh([y + 0.2 for y in ys], [c.inference_images_per_s for c in cells], height=0.4, label="inference")
        ax.set_yticks(ys, [c.cell for c in cells], fontsize="small")
        ax.invert_yaxis()
        ax.set_xlabel("images / s")
        ax.legend(fontsize="small")

    caption = ("Cost of each block: test error against parameters and against forward FLOPs (torch.utils."
               "flop_counter: convolutions and matrix products, 2 FLOPs per multiply-add), and measured training "
               "and inference throughput on this machine (images per second; a shared machine makes them noisy).")
    return Figure(caption, draw, panels=3, width=15.0, height=4.2)


@register(ExperimentResult)
def experiment_figures(result: ExperimentResult, record: RunRecord) -> list[Figure]:
    """Depth: error against depth; shortcut and blocks: errors per cell (blocks: their cost); all: curves."""
    figs = [_depth_figure(result, record)] if result.experiment == "depth" else [_cells_figure(result, record)]
    if result.experiment == "blocks":
        figs.append(_cost_figure(result))
    curves = _curves_figure(result)
    return figs + ([curves] if curves is not None else [])


def _mean_std(mean: float, std: float | None, best: float | None = None) -> str:
    text = f"{100 * mean:.2f}" + ("" if std is None else f" ± {100 * std:.2f}")
    return text + (f" (best {100 * best:.2f})" if best is not None else "") + " %"


@register(ExperimentResult)
def experiment_tables(result: ExperimentResult, record: RunRecord) -> list[Table]:
    """Cells (mean ± std, best, intervals, cost, paper), paired tests, every run, the analyses run on each."""
    many = result.repeats > 1
    level = level_of(record)
    paper = any(c.paper for c in result.cells)
    columns = ["cell", "model", "family", "params", "MFLOPs", "seeds", "training error", f"training {level} interval",
               "test error", f"test {level} interval", "train img/s", "inference img/s"]
    columns += ["paper (CIFAR-10)"] * paper
    cells = [
        [c.cell, c.model, c.family, f"{c.params:,}", f"{c.flops / 1e6:.1f}", c.repeats,
         _mean_std(c.train_error_mean, c.train_error_std, c.train_error_best if many else None),
         interval_text(c.train_ci), _mean_std(c.test_error_mean, c.test_error_std, c.test_error_best if many else None),
         interval_text(c.test_ci), "n/a" if c.train_images_per_s is None else f"{c.train_images_per_s:.0f}",
         f"{c.inference_images_per_s:.0f}"] + ([c.paper or ""] * paper)
        for c in result.cells
    ]
    tests = [
        [t.a, t.b, t.split, pct(t.a_error), pct(t.b_error), t.a_only, t.b_only, t.pairs, p_text(t.p), p_text(t.p_holm),
         "yes" if t.significant else "no"]
        for t in result.comparisons
    ]
    runs = [
        [r.cell, r.model, r.seed, r.recipe.get("name"), r.epochs, r.iterations, pct(r.train_error_running),
         f"{pct(r.train_error)} {interval_text(r.train_ci)}", f"{pct(r.test_error)} {interval_text(r.test_ci)}",
         f"{r.seconds:.1f}", r.device, r.key]
        for r in result.runs
    ]
    tables = [
        Table(f"Cells ({'mean ± std over seeds, and the best' if many else 'one seed'}; intervals over the pooled "
              "images of the cell's runs)", columns, cells),
        Table("Paired tests: exact McNemar on the images one cell gets right and the other wrong (seed i with "
              "seed i, summed), Holm-adjusted over all of them",
              ["cell a", "cell b", "split", "error a", "error b", "a only right", "b only right", "seed pairs", "p",
               "Holm p", f"significant at {level}"], tests),
        Table("Runs (cached by model, data, recipe and seed: the key)",
              ["cell", "model", "seed", "recipe", "epochs", "iterations", "last-epoch running training error",
               "training error (eval)", "test error", "seconds", "device", "key"], runs),
    ]
    if any(result.then):
        names = sorted({name for links in result.then for name in links})
        rows = [[r.cell, r.seed] + [_link(links.get(name)) for name in names]
                for r, links in zip(result.runs, result.then, strict=True)]
        tables.append(Table("Analyses of each trained net (--then)", ["cell", "seed", *names], rows))
    return tables


def _link(path: str | None) -> Markup | str:
    return "" if path is None else Markup('<a href="{0}">{0}</a>').format(escape(path))


def _test(result: ExperimentResult, a: str, b: str, split: str) -> Comparison | None:
    return next((t for t in result.comparisons if (t.a, t.b, t.split) == (a, b, split)), None)


def _p(t: Comparison | None, record: RunRecord) -> str:
    if t is None:
        return "no paired test"
    verdict = "significant" if t.significant else f"not significant at {level_of(record)}"
    shown = p_text(t.p_holm)
    return f"McNemar Holm p {shown if shown.startswith('<') else '= ' + shown}, {verdict}"


def _short_recipe(result: ExperimentResult) -> str:
    if result.dataset != "digits" or not result.runs:
        return ""
    r = result.runs[0]
    return (f" The digits recipe is {r.iterations} iterations of batch {r.recipe.get('batch_size')} on "
            f"{r.train_n} images (He et al.: 64,000 iterations on 50,000 CIFAR-10 images): such short training "
            "and so easy a task may not show what the papers found.")


def _depth_reading(result: ExperimentResult, record: RunRecord) -> list[str]:
    depths = sorted({c.depth for c in result.cells if c.depth})
    if len(depths) < 2:
        return ["One depth only: pass --depths with two or more depths to ask whether deeper is better."]
    lo, hi = depths[0], depths[-1]
    cells = {c.cell: c for c in result.cells}
    said, contradicted, unsure = [], [], []
    plain_lo, plain_hi = cells.get(f"plain-{lo}"), cells.get(f"plain-{hi}")
    if plain_lo and plain_hi:
        t = _test(result, f"plain-{hi}", f"plain-{lo}", "train")
        worse = plain_hi.train_error_mean > plain_lo.train_error_mean
        said.append(f"plain-{hi} trains to {'higher' if worse else 'lower'} training error than plain-{lo} "
                    f"({pct(plain_hi.train_error_mean)} vs {pct(plain_lo.train_error_mean)}; {_p(t, record)})")
        if not worse:
            contradicted.append("the deeper plain net does not train worse")
        elif t is not None and not t.significant:
            unsure.append("the plain nets' difference")
    res_lo, res_hi = cells[f"ResNet-{lo}"], cells[f"ResNet-{hi}"]
    t = _test(result, f"ResNet-{hi}", f"ResNet-{lo}", "test")
    better = res_hi.test_error_mean < res_lo.test_error_mean
    said.append(f"ResNet-{hi} {'beats' if better else 'does not beat'} ResNet-{lo} on test error "
                f"({pct(res_hi.test_error_mean)} vs {pct(res_lo.test_error_mean)}; {_p(t, record)})")
    if not better:
        contradicted.append("the deeper ResNet is not better")
    elif t is not None and not t.significant:
        unsure.append("the ResNets' difference")
    if contradicted:
        answer = (f"These numbers do not support He et al.'s answer (deeper plain nets train worse, deeper ResNets "
                  f"better): {'; '.join(contradicted)}. ")
    elif unsure:
        answer = (f"The direction is He et al.'s (deeper is worse without shortcuts, better with them), but "
                  f"{' and '.join(unsure)} could be chance. ")
    else:
        answer = "Deeper is not better without shortcuts, and better with them, as He et al. found: "
    doubt = bool(contradicted or unsure)
    joined = "; ".join(said)
    body = joined[0].upper() + joined[1:] if doubt else joined  # after a full stop, a new sentence
    sentences = [answer + body + "." + (_short_recipe(result) if doubt else "")]
    for d in depths:
        t = _test(result, f"ResNet-{d}", f"plain-{d}", "test")
        if t is not None:
            sentences.append(f"At depth {d} the ResNet's test error is {pct(t.a_error)} against the plain net's "
                             f"{pct(t.b_error)} ({_p(t, record)}).")
    if result.dataset == "cifar10":
        quoted = [f"{c.cell} {c.paper}" for c in result.cells if c.paper]
        if quoted:
            sentences.append("The paper's CIFAR-10 test errors: " + "; ".join(quoted) + ".")
    return sentences


def _ranked(cells: Sequence[ExperimentCell]) -> str:
    return ", ".join(f"{c.cell} {pct(c.test_error_mean)}" for c in sorted(cells, key=lambda c: c.test_error_mean))


UNTRAINED = 0.10  # a final training error above this: the net has not fit its training set with this recipe


def _unfit(cells: Sequence[ExperimentCell]) -> str:
    return ", ".join(f"{c.cell} ({pct(c.train_error_mean)} training error)" for c in cells)


def _shortcut_fit(result: ExperimentResult, reference: ExperimentCell | None) -> str | None:
    """What the training errors say of the comparisons with the original unit, or None when all fit."""
    unfit = [c for c in result.cells if c.train_error_mean > UNTRAINED]
    if reference is not None and reference in unfit:
        return (f"The original unit ({reference.cell}) itself has not fitted its training set with this recipe "
                f"({pct(reference.train_error_mean)} training error), so the variants' comparisons with it say more "
                "about the recipe's length than about the units." + _short_recipe(result))
    variants = [c for c in unfit if c.kind not in SHORTCUT_KINDS]
    if not variants:
        return None
    fitted = ("" if reference is None else
              f", where the original unit is ({pct(reference.train_error_mean)} training error)")
    longer = DIGITS_VARIANT_EPOCHS.values()
    return (f"Not fitted by this recipe{fitted}: {_unfit(variants)}. A higher training error at the same budget is "
            "what He et al. 2016 read as these units' optimisation difficulty; given more epochs they may still fit"
            + (f" (on digits the train command gives the slowest variants {min(longer)} to {max(longer)} epochs)."
               if result.dataset == "digits" else "."))


def _shortcut_reading(result: ExperimentResult, record: RunRecord) -> list[str]:
    by_kind = {c.kind: c for c in result.cells}
    sentences = []
    plain, a = by_kind.get("none"), by_kind.get("A")
    if plain is not None and a is not None:
        t_test = _test(result, plain.cell, a.cell, "test")
        t_train = _test(result, plain.cell, a.cell, "train")
        helps = a.test_error_mean < plain.test_error_mean
        trains = a.train_error_mean < plain.train_error_mean
        first = ("The shortcut works: " if helps and t_test is not None and t_test.significant else
                 "The shortcut helps, but within chance: " if helps else
                 "These numbers do not show the shortcut helping, unlike He et al.: ")
        sentences.append(first + f"with identity shortcuts the net ends at {pct(a.test_error_mean)} test error "
                         f"against {pct(plain.test_error_mean)} without ({_p(t_test, record)}), training error "
                         f"{pct(a.train_error_mean)} against {pct(plain.train_error_mean)} ({_p(t_train, record)})."
                         + ("" if helps and trains else " The shortcut matters more the deeper the net (He et al. "
                            "2015, Fig. 6): a larger --depth asks it where it counts." + _short_recipe(result)))
    options = [by_kind[k] for k in ("A", "B", "C") if k in by_kind]
    if len(options) > 1:
        tests = [f"{c.kind} vs A: {_p(_test(result, c.cell, a.cell, 'test'), record)}"
                 for c in options[1:] if a is not None]
        sentences.append(f"Options by test error: {_ranked(options)} ({'; '.join(tests)}). He et al. 2015 compare "
                         f"them on ImageNet only (Table 3, ResNet-34 top-1: {imagenet_options_text()}): B a little "
                         "better than A, C than B, all far better than plain.")
    variants = [c for c in result.cells if c.kind not in ("none", "A", "C")]
    reference = by_kind.get("B") or a
    if variants and reference is not None:
        best = min(variants, key=lambda c: c.test_error_mean)
        t = _test(result, best.cell, reference.cell, "test")
        head = (f"Among the original unit ({reference.cell}) and He et al. 2016's variants the lowest test error is "
                f"{best.cell} ({pct(best.test_error_mean)})")
        preact = by_kind.get("full_preact")
        if best.kind == "B" and preact is not None:
            verdict = (f"; as in He et al. 2016, nothing on the identity shortcut beats it, though full pre-activation "
                       f"({pct(preact.test_error_mean)}, {_p(_test(result, preact.cell, best.cell, 'test'), record)}) "
                       "does not beat it either, unlike there (6.37 % against 6.61 % at ResNet-110).")
        elif best.kind in ("B", "full_preact"):
            verdict = "; as in He et al. 2016, the identity shortcut and full pre-activation train best."
        elif t is not None and t.significant:
            verdict = (f", significantly below the original unit ({_p(t, record)}): these numbers do not support "
                       "He et al. 2016, who found the original unit and full pre-activation best.")
        else:
            verdict = (f", but not significantly below the original unit ({_p(t, record)}): these numbers do not "
                       "rank the variants, so they neither confirm nor refute He et al. 2016's answer (the "
                       "original unit and full pre-activation best).")
        worse = [x.a for x in result.comparisons
                 if x.split == "test" and x.significant and not x.a_better and x.b == reference.cell]
        sentences.append(head + verdict + (f" Significantly worse than the original unit: {', '.join(worse)}."
                                           if worse else " No variant is significantly worse than the original unit."))
        fit = _shortcut_fit(result, reference)
        if fit is not None:
            sentences.append(fit)
    return sentences


def _blocks_reading(result: ExperimentResult, record: RunRecord) -> list[str]:
    if not result.cells:
        return []
    base = result.cells[0]
    best = min(result.cells, key=lambda c: c.test_error_mean)
    tests = {t.a: t for t in result.comparisons if t.split == "test" and t.b == base.cell}
    below = [c for c in tests if tests[c].significant and not tests[c].a_better]
    above = [c for c in tests if tests[c].significant and tests[c].a_better]
    level = level_of(record)
    if best is base:
        rest = [c for c in tests if c not in below]
        answer = (f"Lowest test error: {base.cell} ({pct(base.test_error_mean)}), significantly below "
                  f"{' and '.join(below) or 'none of the others'} at {level}"
                  + (f", within chance of {' and '.join(rest)}" if rest else "") + ".")
    else:
        answer = (f"Lowest test error: {best.cell} ({pct(best.test_error_mean)}), against {base.cell}'s "
                  f"{pct(base.test_error_mean)} ({_p(tests.get(best.cell), record)}).")
        if above:
            answer += f" Significantly better than {base.cell}: {', '.join(above)}."
    matched = "at matched parameters" if base.kind == "basic residual" else "by net"
    params = ", ".join(f"{c.cell} {c.params / 1e6:.2f}M" for c in result.cells)
    sentences = [answer, f"Test error {matched} ({params}): {_ranked(result.cells)}."]
    unfit = [c for c in result.cells if c.train_error_mean > UNTRAINED]
    if unfit:
        sentences.append(
            f"Not fitted by this recipe: {_unfit(unfit)}; {'its' if len(unfit) == 1 else 'their'} test error says more "
            "about the recipe's length than about the block." + _short_recipe(result))
    fast = max(result.cells, key=lambda c: c.train_images_per_s or 0)
    sentences.append(
        "Cost: " + ", ".join(f"{c.cell} {c.flops / 1e6:.0f} MFLOPs, "
                             f"{'n/a' if c.train_images_per_s is None else f'{c.train_images_per_s:.0f}'} training / "
                             f"{c.inference_images_per_s:.0f} inference images/s" for c in result.cells)
        + f"; the fastest to train is {fast.cell}.")
    if result.dataset == "cifar10":
        quoted = [f"{c.cell} {c.paper}" for c in result.cells if c.paper]
        if quoted:
            sentences.append("The papers' CIFAR-10 test errors: " + "; ".join(quoted) + ".")
    return sentences


@register(ExperimentResult)
def experiment_reading(result: ExperimentResult, record: RunRecord) -> list[str]:
    """The experiment's question answered from its numbers, then what qualifies the answer."""
    reading = {"depth": _depth_reading, "shortcut": _shortcut_reading, "blocks": _blocks_reading}[result.experiment]
    sentences = reading(result, record) + [
        f"{result.question} {len(result.runs)} runs on {result.dataset}, {result.repeats} seed"
        f"{'s' if result.repeats > 1 else ''} per cell, every net trained with the same recipe."]
    if result.runs and result.comparisons:
        sentences.append(sample_size_sentence(result.runs[0].test_n, len(result.comparisons), record))
    sentences += [f"Skipped: {note}" for note in result.skipped]
    return sentences
