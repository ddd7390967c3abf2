"""Run an experiment: the grid's runs over the cache (shared out over torchrun ranks), then its run directory.

Every rank numbers the grid's runs the same way and trains (or reads from the cache) those with
``index % world == rank``, one at a time; the finished runs are gathered in grid order, so the
result is the single-process one. Rank 0 writes results.json, results.csv, report.html and
figures/; ``then`` analyses run on every trained net, all ranks together, each into its own
run directory under ``then/``.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable, Sequence

from resnet_probe import distributed
from resnet_probe.analyses.base import ProgressFactory as AnalysisProgress
from resnet_probe.analyses.base import no_progress
from resnet_probe.data import DataSource, load_data
from resnet_probe.errors import CheckpointError, DataError
from resnet_probe.experiments.grid import QUESTIONS, Cell, Grid
from resnet_probe.experiments.result import ExperimentResult, ExperimentRun
from resnet_probe.experiments.runs import (
    CHECKPOINT,
    ProgressFactory,
    TrainOptions,
    cache_key,
    cached,
    data_identity,
    grid_recipe,
    run_folder,
    train_and_measure,
)
from resnet_probe.experiments.summary import compare, error_interval, summarise_cell
from resnet_probe.results import RunRecord
from resnet_probe.settings import CONFIDENCE, RunSettings

Log = Callable[[str], None]


@dataclass(frozen=True)
class ExperimentSettings:
    """How an experiment runs its grid: seeds, recipe overrides, interval level, whether it may train."""

    repeats: int = 1
    seed: int = 0
    options: TrainOptions = TrainOptions()
    confidence: float = CONFIDENCE
    train_missing: bool = True


@dataclass(frozen=True)
class Outcome:
    """What an experiment did besides its result: runs trained now, runs read from the cache."""

    trained: int
    cached: int
    seconds: float


def open_splits(
    dataset: str | None, data: Path | None, limit: int | None, download: bool
) -> tuple[DataSource, DataSource]:
    """Training and test split of one data set (the first ``limit`` images of each)."""
    train = load_data(dataset, data, split="train", limit=limit, download=download)
    if data is not None and train.name not in ("cifar10", "cifar100"):
        raise DataError(f"{data} is one split; an experiment trains and tests: use digits, cifar10 or cifar100")
    return train, load_data(dataset, data, split="test", limit=limit, download=download)


def check_then(names: Sequence[str]) -> tuple[str, ...]:
    """The analyses of ``--then``, each installed (aliases resolved; ``std`` is response-std), before any training."""
    from resnet_probe.plugins import get_analysis

    return tuple(dict.fromkeys(get_analysis("response-std" if n == "std" else n).name for n in names))


def run_experiment(
    grid: Grid,
    train: DataSource,
    test: DataSource,
    settings: ExperimentSettings = ExperimentSettings(),
    *,
    progress: ProgressFactory | None = None,
    log: Log | None = None,
) -> tuple[ExperimentResult, Outcome]:
    """Train what the cache lacks of ``grid`` x ``repeats`` seeds and summarise it (no files but the cache).

    Example:
        >>> train, test = open_splits("digits", None, None, False)
        >>> result, outcome = run_experiment(depth_grid((20, 32)), train, test, ExperimentSettings(repeats=2))
        >>> result.cell("plain-32").train_error_mean
    """
    from resnet_probe.executor import resolve_device

    started = time.perf_counter()
    repeats, seed, options, confidence = settings.repeats, settings.seed, settings.options, settings.confidence
    distributed.init_from_env()
    if distributed.world() > 1 and resolve_device(options.device).type == "cuda":
        options = replace(options, device=f"cuda:{distributed.local_device_index()}")  # one GPU per rank
    data = data_identity(train, test)
    recipe = grid_recipe([cell.model for cell in grid.cells], train, options)
    plan = []
    for cell, s in grid.runs(repeats, seed):
        key = cache_key(cell.model, data, recipe, s)
        plan.append((cell, s, key, run_folder(train.name, cell.model, key)))
    missing = [f"{cell.model} seed {s}" for cell, s, _, folder in plan if cached(folder) is None]
    if missing and not settings.train_missing:
        raise CheckpointError(
            f"--no-train: {len(missing)} of {len(plan)} runs are not in the cache ({', '.join(missing[:4])}"
            f"{', ...' if len(missing) > 4 else ''}); rerun without --no-train to train them"
        )
    say = log if log is not None and distributed.is_main() else (lambda _text: None)
    shown = progress if distributed.is_main() else None
    say(f"{grid.experiment}: {len(plan)} runs, {len(plan) - len(missing)} in the cache, {len(missing)} to train")
    local: list[tuple[int, tuple[str, dict[str, Any]]]] = []
    world, rank = distributed.world(), distributed.rank()
    for index, (cell, s, _key, folder) in enumerate(plan):
        if index % world != rank:
            continue
        doc = cached(folder)
        status = "cached"
        if doc is None:
            doc = train_and_measure(cell.model, s, train, test, recipe, folder, options, shown)
            status = "trained"
        local.append((index, (status, doc)))
        say(f"[{index + 1}/{len(plan)}] {cell.model} seed {s}: {status}, "
            f"test error {100 * (1 - doc['test_correct'] / doc['test_n']):.2f} %")
    done = distributed.gather_ordered(local)
    runs = [_row(cell, s, key, folder, doc, confidence) for (cell, s, key, folder), (_, doc) in zip(plan, done,
                                                                                                    strict=True)]
    cells = []
    for cell in grid.cells:
        members = [r for r in runs if r.cell == cell.label]
        cells.append(summarise_cell(cell, members, grid.experiment, train.name, confidence))
    result = ExperimentResult(
        experiment=grid.experiment, question=QUESTIONS[grid.experiment], dataset=train.name, repeats=repeats,
        runs=tuple(runs), cells=tuple(cells), comparisons=tuple(compare(grid, runs, confidence)),
        skipped=grid.skipped,
    )
    trained = sum(status == "trained" for status, _ in done)
    return result, Outcome(trained, len(done) - trained, time.perf_counter() - started)


def _row(cell: Cell, seed: int, key: str, folder: Path, doc: dict[str, Any], confidence: float) -> ExperimentRun:
    history = tuple(dict(h) for h in doc["history"])
    last = history[-1] if history else {}
    return ExperimentRun(
        cell=cell.label, model=cell.model, kind=cell.kind, family=doc["family"], depth=doc["depth"],
        residual=doc["residual"], seed=seed, params=doc["params"], flops=doc["flops"], epochs=len(history),
        iterations=doc["iterations"], recipe=dict(doc["recipe"]),
        test_error=1 - doc["test_correct"] / doc["test_n"],
        test_ci=error_interval(doc["test_correct"], doc["test_n"], confidence), test_n=doc["test_n"],
        test_hits=doc["test_hits"],
        train_error=1 - doc["train_correct"] / doc["train_n"],
        train_ci=error_interval(doc["train_correct"], doc["train_n"], confidence), train_n=doc["train_n"],
        train_hits=doc["train_hits"], train_error_running=last.get("train_error"), history=history,
        seconds=doc["seconds"], train_images_per_s=doc["train_images_per_s"],
        inference_images_per_s=doc["inference_images_per_s"], device=doc["device"], key=key,
        checkpoint=str(folder / CHECKPOINT),
    )


def slug(text: str) -> str:
    """A folder name for a cell label."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", text).strip("-").lower() or "cell"


def run_then(
    result: ExperimentResult,
    names: Sequence[str],
    out_dir: Path,
    base: RunSettings,
    progress: AnalysisProgress = no_progress,
) -> tuple[dict[str, str], ...]:
    """Run each analysis of ``names`` on every trained net; per run, analysis -> report path relative to ``out_dir``."""
    from resnet_probe.plugins import get_analysis
    from resnet_probe.runner import run_analysis

    links = []
    for run in result.runs:
        reports = {}
        for name in names:
            target = out_dir / "then" / f"{slug(run.cell)}-s{run.seed}" / name
            settings = replace(base, model=f"zoo:{run.model}", checkpoint=Path(run.checkpoint), out=target,
                               train_missing=False, random_init=False, pretrained=False)
            run_analysis(get_analysis(name)(), settings, {}, progress=progress)
            reports[name] = (target / "report.html").relative_to(out_dir).as_posix()
        links.append(reports)
    return tuple(links)


def experiment_record(
    result: ExperimentResult, test: DataSource, *, seed: int, device: str, options: dict[str, Any],
    title: str | None, outcome: Outcome, confidence: float,
) -> RunRecord:
    """The results.json record around an experiment's result."""
    return RunRecord(
        analysis="experiment",
        model={"spec": result.experiment, "family": None, "units": 0, "params": 0},
        data=test.describe(),
        seed=seed,
        device=device,
        result=result.to_dict(),
        wall_time_s=round(outcome.seconds, 3),
        title=title or f"experiment {result.experiment}: {result.question}",
        options=options,
        extra={"notes": list(result.skipped), "confidence": confidence, "trained_runs": outcome.trained,
               "cached_runs": outcome.cached},
    )


def run_into(
    out: Path | None,
    grid: Grid,
    train: DataSource,
    test: DataSource,
    settings: ExperimentSettings = ExperimentSettings(),
    *,
    force: bool = False,
    then: Sequence[str] = (),
    then_settings: RunSettings | None = None,
    title: str | None = None,
    stored_options: dict[str, Any] | None = None,
    progress: ProgressFactory | None = None,
    then_progress: AnalysisProgress = no_progress,
    log: Log | None = None,
) -> tuple[Path, ExperimentResult, Outcome]:
    """Run the experiment into its run directory (checked and locked before any training); rank 0 writes it."""
    from resnet_probe.executor import resolve_device
    from resnet_probe.rundir import claim_run_directory, write_run

    started = time.perf_counter()
    names = check_then(then)
    distributed.init_from_env()
    with claim_run_directory(out, "experiment", grid.experiment, force, lock=distributed.is_main()) as out_dir:
        result, outcome = run_experiment(grid, train, test, settings, progress=progress, log=log)
        if names:
            base = then_settings or RunSettings(
                model="", dataset=train.name, device=settings.options.device, seed=settings.seed
            )
            result = replace(result, then=run_then(result, names, out_dir, base, then_progress))
        outcome = replace(outcome, seconds=time.perf_counter() - started)
        record = experiment_record(
            result, test, seed=settings.seed, device=str(resolve_device(settings.options.device)),
            options=stored_options or {}, title=title, outcome=outcome, confidence=settings.confidence,
        )
        result = replace(result, run=record)
        if distributed.is_main():
            write_run(out_dir, record, result)
        distributed.barrier()
    return out_dir, result, outcome
