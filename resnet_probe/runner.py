"""Run an analysis: open its model and data, execute it, and write its run directory.

Everything the ``resnet-probe`` commands do that is not parsing or printing: the seed, the
torchrun start-up, the journal that ``--resume`` reads, the run record, and results.json +
results.csv + report.html + figures/. The Python API (``resnet_probe.api``) calls
:func:`execute` directly on objects it already holds.
"""

from __future__ import annotations

import logging
import time
from dataclasses import replace
from pathlib import Path
from typing import Any, Sequence

import torch
from torch import nn

from resnet_probe import distributed
from resnet_probe.adapters import build_topology
from resnet_probe.analyses.base import Analysis, ProgressFactory, RunContext, no_progress
from resnet_probe.batch_probe import BatchChoice, choose_batch_size
from resnet_probe.bounds import MAX_SEED, describe
from resnet_probe.data import DataSource, FolderSource, load_data
from resnet_probe.data.given import GivenSource
from resnet_probe.data.preprocessing import Preprocessing
from resnet_probe.errors import DataError, ProbeError
from resnet_probe.executor import Executor, resolve_device
from resnet_probe.inference import prefers_channels_last
from resnet_probe.journal import Journal, item_schema, recorded_batch_size
from resnet_probe.layout_probe import LayoutChoice, choose_layout, private_model
from resnet_probe.machine import cpu, native, precision_warning
from resnet_probe.models.load import load_model
from resnet_probe.models.loaded import LoadedModel
from resnet_probe.models.module import check_output
from resnet_probe.models.spec import FILE_SOURCES, ModelSpec, parse_with_checkpoint
from resnet_probe.results import Result, RunRecord
from resnet_probe.rundir import JOURNAL, claim_run_directory, jsonable, write_run
from resnet_probe.settings import BATCH_SIZE, RunSettings


def open_data(settings: RunSettings) -> DataSource:
    """The data source the settings name."""
    if settings.batch_size is not None and settings.batch_size < 1:
        raise DataError(f"--batch-size {settings.batch_size}: must be at least 1")
    return load_data(
        settings.dataset, settings.data, split=settings.split, limit=settings.limit, download=settings.download,
        workers=settings.workers,
    )


def open_model(
    spec: ModelSpec, checkpoint: Path | None, settings: RunSettings, data: DataSource | None,
    needs_weights: bool = True,
) -> LoadedModel:
    """Load a model that fits the data (class count, cached weights for that data set)."""
    mode = settings.weights
    if not needs_weights and checkpoint is None and mode == "auto":
        mode = "random"  # structure-only analyses (paths) must work offline without weights
    num_classes = data.num_classes if data is not None and mode != "pretrained" else None
    loaded = load_model(
        spec, checkpoint=checkpoint, weights=mode,
        dataset=data.name if data is not None else settings.dataset, num_classes=num_classes,
    )
    if settings.mean is not None or settings.std is not None:
        loaded = replace(loaded, preprocessing=option_preprocessing(settings, loaded.preprocessing))
    if data is not None and loaded.preprocessing is None and spec.source in FILE_SOURCES \
            and not isinstance(data, GivenSource):
        prep = data.default_preprocessing
        logging.getLogger("resnet_probe").warning(
            "%s carries no preprocessing: its images are normalised with %s's mean %s and std %s; pass --mean and "
            "--std if it was trained with others", spec, data.name, ",".join(f"{v:.4g}" for v in prep.mean),
            ",".join(f"{v:.4g}" for v in prep.std),
        )
    if data is not None and not loaded.num_classes:
        # a model from a file or your code: its class count is what its logits show
        x, _ = next(iter(data.batches(2, loaded.preprocessing)))
        loaded = replace(loaded, num_classes=check_output(loaded, x[:2]))
    if data is not None and data.num_classes > loaded.num_classes:
        raise DataError(f"{data.name} has {data.num_classes} classes but {spec} predicts {loaded.num_classes}")
    return loaded


def option_preprocessing(settings: RunSettings, own: Preprocessing | None) -> Preprocessing:
    """``--mean``/``--std`` as the preprocessing (both needed, one value per channel, std > 0)."""
    if settings.mean is None or settings.std is None:
        raise DataError("--mean and --std go together: give both, one value per channel (e.g. 0.49,0.48,0.45)")
    if len(settings.mean) != len(settings.std) or not settings.mean:
        raise DataError(f"--mean has {len(settings.mean)} values and --std {len(settings.std)}; give one per channel")
    if any(not (v > 0) or v != v for v in settings.std) or any(v != v for v in settings.mean):
        raise DataError(f"--std {','.join(map(str, settings.std))}: every value must be a number above 0")
    size = own.input_size if own is not None else None
    return Preprocessing(tuple(settings.mean), tuple(settings.std), size, source="option")


def make_executor(
    loaded: LoadedModel, device: torch.device, settings: RunSettings, *, fold: bool = True,
    layout: LayoutChoice | None = None,
) -> Executor:
    """The executor of one model the runner loaded, on the fastest exact fp32 path the device has.

    It runs a private copy (the loaded model stays as loaded: its parameter count and any hook
    on it keep their meaning) in ``layout`` (NHWC or not, BatchNorm folded or not: see
    :mod:`resnet_probe.layout_probe`); without one, every BatchNorm after a convolution is folded
    unless ``fold`` is False (analyses that capture BN outputs) and NHWC where the device prefers
    it, unless ``settings.channels_last`` says otherwise. Predictions equal the plain model's up
    to float rounding (tests/test_inference.py).
    """
    if layout is None:
        nhwc = prefers_channels_last(device) if settings.channels_last is None else settings.channels_last
        layout = LayoutChoice(nhwc, fold, "default")
    model = private_model(loaded, device, layout.channels_last, layout.folded and fold)
    return _executor(model, device, settings, layout.channels_last)


def _executor(model: nn.Module, device: torch.device, settings: RunSettings, channels_last: bool) -> Executor:
    return Executor(
        build_topology(model), device, settings.precision, compile=settings.compile, channels_last=channels_last
    )


def run_layout(loaded: LoadedModel, device: torch.device, settings: RunSettings, data: DataSource | None,
               fold: bool) -> LayoutChoice:
    """The layout this run's model copy uses: the option, the cached choice, or timed now."""
    prep = loaded.preprocessing or (data.default_preprocessing if data is not None else None)
    return choose_layout(
        loaded, device, settings.precision, data, prep, fold=fold, channels_last=settings.channels_last,
        build=lambda model, nhwc: _executor(model, device, replace(settings, compile=False), nhwc),
    )


def preprocessing_record(loaded: LoadedModel, data: DataSource | None) -> dict[str, Any] | None:
    """What the run did to every image before ``loaded`` saw it, and where that came from (results.json)."""
    prep = loaded.preprocessing or (data.default_preprocessing if data is not None else None)
    if prep is None:
        return None
    if isinstance(data, GivenSource):
        return {"mean": [], "std": [], "input_size": None, "resize": None, "crop": None, "source": "given",
                "from": "the data as passed in, already preprocessed: nothing was scaled, resized or normalised"}
    resize, crop = data.sizes(prep) if isinstance(data, FolderSource) else (prep.input_size, None)
    meta = loaded.metadata
    origin = {
        "weights": f"the published-weights table ({meta.get('source') or meta.get('published_weights')})",
        "checkpoint": f"the checkpoint ({meta.get('checkpoint_format')} format)",
        "dataset": f"the data set {data.name}" if data is not None else "the data set",
        "option": "--mean/--std",
    }.get(prep.source, f"the {prep.source} pretrained configuration")
    if prep.source == "weights" and meta.get("weights") in ("checkpoint", "cache"):
        fmt, name = meta.get("checkpoint_format"), Path(str(loaded.checkpoint)).name
        origin += f", the weights recognised in {fmt} file {name}"
    return {"mean": list(prep.mean), "std": list(prep.std), "input_size": prep.input_size, "resize": resize,
            "crop": crop, "source": prep.source, "from": origin}


def provenance(loaded: LoadedModel) -> dict[str, Any]:
    """Where the weights come from, for the reading's first sentence (results.json ``model.provenance``)."""
    meta = loaded.metadata
    weights = str(meta.get("weights") or "unknown")
    out: dict[str, Any] = {"weights": weights}
    if meta.get("published_weights") or meta.get("url"):
        out |= {"kind": "published", "source": meta.get("source") or weights,
                "file": meta.get("published_weights") or Path(str(loaded.checkpoint)).name}
    elif weights == "random":
        out["kind"] = "random"
    elif weights == "pretrained":
        out["kind"] = "pretrained"
    elif weights == "hugging face":
        out |= {"kind": "hf", "path": meta.get("hf_path"), "architecture": meta.get("architecture")}
    elif isinstance(meta.get("train_args"), dict):
        args = meta["train_args"]
        out |= {"kind": "trained", "dataset": meta.get("dataset"), "iterations": args.get("iters"),
                "test_accuracy": meta.get("accuracy"), "test_size": args.get("test_size"),
                "cache": weights == "cache"}
    elif loaded.checkpoint is not None and weights != "export program":
        out |= {"kind": "checkpoint", "file": Path(loaded.checkpoint).name, "format": meta.get("checkpoint_format")}
    else:
        out["kind"] = {"export program": "export", "as given": "module"}.get(weights, "built")
    return out


def check_seed(seed: object) -> int:
    """A whole-number seed in 0..MAX_SEED (what numpy and torch both take)."""
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed <= MAX_SEED:
        raise ProbeError(f"--seed {seed!r}: must be a whole number with {describe(0, MAX_SEED)}")
    return seed


def execute(
    analysis: Analysis,
    loaded: LoadedModel,
    executor: Executor,
    data: DataSource | None,
    settings: RunSettings,
    options: dict[str, Any],
    *,
    compare: Sequence[tuple[LoadedModel, Executor]] = (),
    compare_names: Sequence[str] = (),
    journal: Journal | None = None,
    progress: ProgressFactory = no_progress,
) -> Result:
    """Run ``analysis`` on objects already open; the result carries its run record (``result.run``)."""
    started = time.perf_counter()
    options = analysis.check_options(options)
    ctx = RunContext(
        loaded=loaded,
        executor=executor,
        data=data,
        batch_size=settings.batch_size or BATCH_SIZE,
        seed=settings.seed,
        progress=progress,
        compare=tuple(compare),
        journal=journal,
        confidence=settings.confidence,
        tolerance=settings.tolerance,
    )
    result = analysis.run(ctx, **options)
    stored = jsonable(options) | ({"compare": list(compare_names)} if compare_names else {})
    record = RunRecord(
        analysis=analysis.name,
        model=loaded.describe()
        | {
            "weights": loaded.metadata.get("weights"),
            "checkpoint_format": loaded.metadata.get("checkpoint_format"),
            "preprocessing": preprocessing_record(loaded, data),
            "provenance": provenance(loaded),
        },
        data=data.describe() if data is not None else None,
        seed=settings.seed,
        device=str(executor.device),
        result=result.to_dict(),
        wall_time_s=round(time.perf_counter() - started, 3),
        title=settings.title,
        options=stored,
        extra={"notes": list(loaded.topology.notes), "confidence": settings.confidence,
               "unread_additions": loaded.topology.unread}
        | ({"cpu": cpu() | {"native": native(settings.precision)}} if executor.device.type == "cpu" else {})
        | ({"tolerance": settings.tolerance} if settings.tolerance is not None else {}),
    )
    return replace(result, run=record)


def run_analysis(
    analysis: Analysis,
    settings: RunSettings,
    options: dict[str, Any],
    *,
    compare: Sequence[str] = (),
    progress: ProgressFactory = no_progress,
) -> tuple[Path, RunRecord, Result]:
    """Run one analysis end to end into its run directory; returns the directory, record and result.

    The directory is locked from before the first check of its contents until the run ends
    (:func:`resnet_probe.rundir.claim_run_directory`): a second run into it is refused at once.
    """
    started = time.perf_counter()
    check_seed(settings.seed)
    distributed.init_from_env()
    if settings.resume and distributed.world() > 1:
        raise ProbeError("--resume works in single-process runs only; rerun without torchrun")
    with claim_run_directory(
        settings.out, analysis.name, settings.model, settings.force, settings.resume, lock=distributed.is_main()
    ) as out_dir:
        return _run_into(out_dir, analysis, settings, options, compare, progress, started)


def _run_into(
    out_dir: Path,
    analysis: Analysis,
    settings: RunSettings,
    options: dict[str, Any],
    compare: Sequence[str],
    progress: ProgressFactory,
    started: float,
) -> tuple[Path, RunRecord, Result]:
    device = resolve_device(settings.device)
    if device.type == "cuda" and distributed.world() > 1:
        device = torch.device("cuda", distributed.local_device_index())
    if device.type == "cpu":
        warning = precision_warning(settings.precision)
        if warning is not None:
            logging.getLogger("resnet_probe").warning("%s", warning)
    data = open_data(settings) if analysis.needs_data else None
    torch.manual_seed(settings.seed)  # random-init weights are part of what the seed fixes
    loaded = open_model(settings.model_spec, settings.checkpoint, settings, data, analysis.needs_weights)
    fold = not analysis.needs_layer_outputs
    layout = run_layout(loaded, device, settings, data, fold=fold)
    compared = []
    for text in compare:
        spec, ckpt = parse_with_checkpoint(text)
        other = open_model(spec, ckpt, settings, data)
        compared.append((other, make_executor(other, device, settings, fold=fold, layout=layout)))
    executor = make_executor(loaded, device, settings, fold=fold, layout=layout)
    probe_ctx = RunContext(
        loaded=loaded, executor=executor, data=data, seed=settings.seed, compare=tuple(compared),
        confidence=settings.confidence,
    )
    resumed = recorded_batch_size(out_dir / JOURNAL) if settings.resume and settings.batch_size is None else None
    batch = (
        BatchChoice(resumed, "journal") if resumed is not None
        else choose_batch_size(analysis, probe_ctx, options, settings.batch_size)
    )
    settings = replace(settings, batch_size=batch.size)
    journal = None
    if analysis.resumable and distributed.world() == 1:
        identity = {
            "analysis": analysis.name,
            "models": [
                m.describe() | {"preprocessing": preprocessing_record(m, data)}
                for m in [loaded, *(c for c, _ in compared)]
            ],
            "data": data.describe() if data is not None else None,
            "seed": settings.seed, "batch_size": settings.batch_size, "precision": settings.precision,
            "device": str(device), "options": jsonable(options),
        }
        journal = Journal(
            out_dir / JOURNAL, identity, resume=settings.resume, schema=item_schema(analysis.journal_item),
            images=len(data) if data is not None else None,
        )
    result = execute(
        analysis, loaded, executor, data, settings, options,
        compare=compared, compare_names=compare, journal=journal,
        progress=progress if distributed.is_main() else no_progress,
    )
    assert result.run is not None
    record = replace(
        result.run, wall_time_s=round(time.perf_counter() - started, 3),
        extra=result.run.extra | {"batch_size": batch.to_dict(), "layout": layout.to_dict()},
    )
    result = replace(result, run=record)
    if distributed.is_main():
        write_run(out_dir, record, result)
        if journal is not None:
            journal.close()
    distributed.barrier()
    return out_dir, record, result
