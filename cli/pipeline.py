"""The shared path of every analysis command: load, run, write results.json and report.html."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Sequence

import torch

from resnet_probe import distributed
from resnet_probe.analyses.base import Analysis, RunContext, no_progress
from resnet_probe.data import DataSource, load_data
from resnet_probe.errors import DataError, ProbeError
from resnet_probe.executor import Executor, resolve_device
from resnet_probe.journal import Journal
from resnet_probe.load import load_model
from resnet_probe.loaded import LoadedModel
from resnet_probe.results import Result, RunRecord, write_json
from resnet_probe.spec import parse, parse_with_checkpoint

from .console import err, out, rich_progress
from .options import Common
from .output import JOURNAL, run_directory


def weights_mode(common: Common) -> str:
    """Which weights load_model should use."""
    if common.random_init and common.pretrained:
        raise ProbeError("--random-init and --pretrained exclude each other")
    return "random" if common.random_init else "pretrained" if common.pretrained else "auto"


def open_data(common: Common) -> DataSource:
    """The data source of the shared options."""
    if common.batch_size < 1:
        raise DataError(f"--batch-size {common.batch_size}: must be at least 1")
    return load_data(
        common.dataset, common.data, split=common.split, limit=common.limit, download=common.download,
        workers=common.workers,
    )


def open_model(
    spec_text: str, checkpoint: Path | None, common: Common, data: DataSource | None,
    needs_weights: bool = True,
) -> LoadedModel:
    """Load a model that fits the data (class count, cached weights for that data set)."""
    spec = parse(spec_text)
    mode = weights_mode(common)
    if not needs_weights and checkpoint is None and mode == "auto":
        mode = "random"  # structure-only analyses (paths) must work offline without weights
    num_classes = data.num_classes if data is not None and mode != "pretrained" else None
    loaded = load_model(
        spec, checkpoint=checkpoint, weights=mode,
        dataset=data.name if data is not None else common.dataset, num_classes=num_classes,
    )
    if data is not None and data.num_classes > loaded.num_classes:
        raise DataError(
            f"{data.name} has {data.num_classes} classes but {spec} predicts {loaded.num_classes}"
        )
    return loaded


def _executor(loaded: LoadedModel, device: torch.device, common: Common) -> Executor:
    """The executor of one model with the speed options the user chose."""
    return Executor(
        _to(loaded, device), device, common.precision, compile=common.compile, channels_last=common.channels_last
    )


def run_analysis(
    analysis: Analysis,
    common: Common,
    options: dict[str, Any],
    *,
    compare: Sequence[str] = (),
) -> tuple[Path, RunRecord, Result]:
    """Run one analysis end to end; returns the run directory, the record and the result."""
    started = time.perf_counter()
    if isinstance(common.seed, bool) or not isinstance(common.seed, int) or common.seed < 0:
        raise ProbeError(f"--seed {common.seed!r}: must be a whole number >= 0")
    if distributed.init_from_env() and not distributed.is_main():
        out.quiet = True  # only rank 0 prints results
    out_dir = run_directory(common.out, analysis.name, common.model, common.force, common.resume)
    if common.resume and distributed.world() > 1:
        raise ProbeError("--resume works in single-process runs only; rerun without torchrun")
    device = resolve_device(common.device)
    if device.type == "cuda" and distributed.world() > 1:
        device = torch.device("cuda", distributed.local_device_index())
    data = open_data(common) if analysis.needs_data else None
    torch.manual_seed(common.seed)  # random-init weights are part of what the seed fixes
    loaded = open_model(common.model, common.checkpoint, common, data, analysis.needs_weights)
    compared = []
    for text in compare:
        spec, ckpt = parse_with_checkpoint(text)
        other = open_model(str(spec), ckpt, common, data)
        compared.append((other, _executor(other, device, common)))
    journal = None
    if analysis.resumable and distributed.world() == 1:
        identity = {
            "analysis": analysis.name,
            "models": [m.describe() for m in [loaded, *(c for c, _ in compared)]],
            "data": data.describe() if data is not None else None,
            "seed": common.seed, "batch_size": common.batch_size, "precision": common.precision,
            "device": str(device), "options": _jsonable(options),
        }
        journal = Journal(out_dir / JOURNAL, identity, resume=common.resume)
    ctx = RunContext(
        loaded=loaded,
        executor=_executor(loaded, device, common),
        data=data,
        batch_size=common.batch_size,
        seed=common.seed,
        progress=rich_progress if distributed.is_main() else no_progress,
        compare=tuple(compared),
        journal=journal,
    )
    result = analysis.run(ctx, **options)
    record = RunRecord(
        analysis=analysis.name,
        model=loaded.describe() | {"weights": loaded.metadata.get("weights")},
        data=data.describe() if data is not None else None,
        seed=common.seed,
        device=str(device),
        result=result.to_dict(),
        wall_time_s=round(time.perf_counter() - started, 3),
        title=common.title,
        options=_jsonable(options) | {"compare": list(compare)} if compare else _jsonable(options),
        extra={"notes": list(loaded.topology.notes)},
    )
    if distributed.is_main():
        write_outputs(out_dir, record, result)
        if journal is not None:
            journal.close()
    distributed.barrier()
    return out_dir, record, result


def write_outputs(out_dir: Path, record: RunRecord, result: Result) -> None:
    """results.json and report.html, each written whole or not at all."""
    from resnet_probe.reports import write_report

    write_json(out_dir / "results.json", record.to_dict())
    write_report(out_dir / "report.html", record, result, record.title)
    out.print(f"wrote {out_dir / 'report.html'} and results.json")


def _to(loaded: LoadedModel, device: Any) -> Any:
    # Our own freshly loaded model: moving it is not a mutation of anything the user holds.
    loaded.model.to(device)
    return loaded.topology


def _jsonable(options: dict[str, Any]) -> dict[str, Any]:
    return {k: (list(v) if isinstance(v, tuple) else v) for k, v in options.items()}


def print_reading(record: RunRecord, result: Result) -> None:
    """Print the report's plain-language reading to stdout."""
    from resnet_probe.reports import analyses as _  # noqa: F401
    from resnet_probe.reports import content

    for sentence in content.reading(result, record):
        out.print(sentence)


__all__ = ["run_analysis", "open_data", "open_model", "write_outputs", "print_reading", "err"]
