"""From runs to answers: the cells' mean ± std and best, and paired tests between cells."""

from __future__ import annotations

import statistics
from typing import Sequence

from resnet_probe.experiments.grid import Cell, Grid
from resnet_probe.experiments.papers import published
from resnet_probe.experiments.result import Comparison, ExperimentCell, ExperimentRun
from resnet_probe.stats import holm, mcnemar_exact, paired_counts, unpack_bits, wilson_interval


def error_interval(correct: int, n: int, confidence: float) -> tuple[float, float]:
    """Wilson interval of an error rate (one minus the accuracy's interval)."""
    lo, hi = wilson_interval(correct, n, confidence)
    return 1.0 - hi, 1.0 - lo


def _spread(values: Sequence[float]) -> float | None:
    return statistics.stdev(values) if len(values) > 1 else None


def _mean_or_none(values: Sequence[float | None]) -> float | None:
    known = [v for v in values if v is not None]
    return statistics.fmean(known) if known else None


def summarise_cell(cell: Cell, runs: Sequence[ExperimentRun], experiment: str, dataset: str,
                   confidence: float) -> ExperimentCell:
    """Mean, sample std and best (lowest) error over a cell's repeats; Wilson over their pooled images."""
    tests = [r.test_error for r in runs]
    trains = [r.train_error for r in runs]
    paper = published(experiment, cell.model, cell.kind) if dataset == "cifar10" else None
    return ExperimentCell(
        cell=cell.label, model=cell.model, kind=cell.kind, family=runs[0].family, depth=runs[0].depth,
        residual=runs[0].residual, params=runs[0].params, flops=runs[0].flops, repeats=len(runs),
        seeds=tuple(r.seed for r in runs),
        test_error_mean=statistics.fmean(tests), test_error_std=_spread(tests), test_error_best=min(tests),
        test_ci=error_interval(sum(_correct(r, "test") for r in runs), sum(r.test_n for r in runs), confidence),
        train_error_mean=statistics.fmean(trains), train_error_std=_spread(trains), train_error_best=min(trains),
        train_ci=error_interval(sum(_correct(r, "train") for r in runs), sum(r.train_n for r in runs), confidence),
        train_images_per_s=_mean_or_none([r.train_images_per_s for r in runs]),
        inference_images_per_s=statistics.fmean(r.inference_images_per_s for r in runs),
        paper_error=None if paper is None else paper.error,
        paper=None if paper is None else paper.text(),
    )


def _correct(run: ExperimentRun, split: str) -> int:
    n = run.test_n if split == "test" else run.train_n
    return round((1.0 - (run.test_error if split == "test" else run.train_error)) * n)


def compare(grid: Grid, runs: Sequence[ExperimentRun], confidence: float) -> list[Comparison]:
    """McNemar for every pair of the grid on both splits, seed i with seed i, Holm over them all."""
    by_cell: dict[str, list[ExperimentRun]] = {}
    for run in runs:
        by_cell.setdefault(run.cell, []).append(run)
    raw = []
    for a, b in grid.pairs:
        if a not in by_cell or b not in by_cell:
            continue
        runs_a = sorted(by_cell[a], key=lambda r: r.seed)
        runs_b = {r.seed: r for r in by_cell[b]}
        matched = [(ra, runs_b[ra.seed]) for ra in runs_a if ra.seed in runs_b]
        for split in ("test", "train"):
            a_only = b_only = 0
            for ra, rb in matched:
                n = ra.test_n if split == "test" else ra.train_n
                hits_a = unpack_bits(ra.test_hits if split == "test" else ra.train_hits, n)
                hits_b = unpack_bits(rb.test_hits if split == "test" else rb.train_hits, n)
                da, db = paired_counts(hits_a, hits_b)
                a_only, b_only = a_only + da, b_only + db
            err = "test_error" if split == "test" else "train_error"
            raw.append((a, b, split, statistics.fmean(getattr(r, err) for r, _ in matched),
                        statistics.fmean(getattr(r, err) for _, r in matched), a_only, b_only, len(matched),
                        mcnemar_exact(a_only, b_only)))
    adjusted = holm([r[-1] for r in raw]) if raw else []
    alpha = 1.0 - confidence
    return [Comparison(a, b, split, ea, eb, ao, bo, pairs, p, ph, ph < alpha)
            for (a, b, split, ea, eb, ao, bo, pairs, p), ph in zip(raw, adjusted, strict=True)]
