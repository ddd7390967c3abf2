"""The batch size of a run, chosen by timing the analysis' own work at a few sizes, then cached.

The fastest batch depends on the work, not only on model and device: on this project's 2-core
Xeon (ResNet-56, ``python benchmarks/batch_sizes.py``) a plain forward and the lesion sweep run
fastest at 64 images and response-std, which captures every response, at 32, while bf16 makes
256 lose 13-24 %. So the probe runs the analysis itself, with its options, on the first ``b``
images for each candidate ``b`` (after one untimed warm-up run) and keeps the size with the
most images per second. The choice is cached in ``$RESNET_PROBE_HOME/batch-sizes.json`` per
model structure, input size, analysis and options, device, thread count, precision and layout,
so each such case pays the probe once.

A data set smaller than four times the largest candidate is not probed: the probe would cost
a large share of the run it is meant to speed up. Such runs take :data:`BATCH_SIZE`."""

from __future__ import annotations

import hashlib
import json
import os
import platform
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Iterator, Sequence

import torch

from resnet_probe import distributed
from resnet_probe.analyses.base import Analysis, RunContext, no_progress
from resnet_probe.data import DataSource
from resnet_probe.data.preprocessing import Preprocessing
from resnet_probe.data.source import Batch
from resnet_probe.executor import Executor
from resnet_probe.files import home, loads_finite, write_json
from resnet_probe.models.loaded import LoadedModel
from resnet_probe.settings import BATCH_SIZE

CPU_CANDIDATES = (32, 64, 128, 256)
CUDA_CANDIDATES = (64, 128, 256, 512, 1024)
#: a data set must hold this many times the largest candidate to be worth probing
PROBE_SHARE = 4
CACHE_FORMAT = 1


@dataclass(frozen=True)
class BatchChoice:
    """The batch size a run uses and where it came from (results.json ``batch_size``)."""

    size: int
    source: str  # "option" | "probe" | "cache" | "default" | "journal" (a resumed run keeps its size)
    images_per_s: dict[int, float] = field(default_factory=dict)  # what the probe measured

    def to_dict(self) -> dict[str, Any]:
        doc: dict[str, Any] = {"size": self.size, "from": self.source}
        if self.images_per_s:
            doc["images_per_s"] = {str(b): round(v, 1) for b, v in self.images_per_s.items()}
        return doc


def candidates(device: torch.device) -> tuple[int, ...]:
    """The sizes the probe tries on ``device``."""
    return CUDA_CANDIDATES if device.type == "cuda" else CPU_CANDIDATES


def cache_path() -> Path:
    """Where the chosen sizes are kept."""
    return home() / "batch-sizes.json"


def device_name(device: torch.device) -> str:
    """The processor the timings belong to (its model name, not only its kind)."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return f"{line.split(':', 1)[1].strip()} ({os.cpu_count()} cpus)"
    except OSError:
        pass
    return f"{platform.processor() or platform.machine()} ({os.cpu_count()} cpus)"


def probe_key(
    analysis: Analysis, loaded: LoadedModel, executor: Executor, data: DataSource, options: dict[str, Any],
    compare: Sequence[LoadedModel] = (),
) -> str:
    """What decides the fastest size: the work (structure, input, analysis, options) and the machine."""
    from resnet_probe.rundir import jsonable

    doc = {
        "format": CACHE_FORMAT,
        "analysis": analysis.name,
        "options": jsonable(options),
        "models": [{"spec": str(m.spec), "params": m.params, "units": m.topology.n_units} for m in (loaded, *compare)],
        "image_size": data.image_size,
        "device": device_name(executor.device),
        "threads": torch.get_num_threads() if executor.device.type == "cpu" else None,
        "precision": executor.precision,
        "channels_last": executor.channels_last,
    }
    return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()[:16]


def _read_cache() -> dict[str, Any]:
    try:
        doc = loads_finite(cache_path().read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}  # no cache yet, or one a crash or a person broke: probe again
    return doc if isinstance(doc, dict) else {}


def _cached(key: str) -> BatchChoice | None:
    entry = _read_cache().get(key)
    try:
        size = entry["size"]  # type: ignore[index]
        rates = {int(b): float(v) for b, v in entry.get("images_per_s", {}).items()}  # type: ignore[union-attr]
    except (KeyError, TypeError, ValueError, AttributeError):
        return None  # absent, or an entry someone edited into another shape: probe again
    if isinstance(size, bool) or not isinstance(size, int) or size < 1:
        return None
    return BatchChoice(size, "cache", rates)


def _remember(key: str, choice: BatchChoice) -> None:
    doc = _read_cache()
    doc[key] = {"size": choice.size, "images_per_s": {str(b): v for b, v in choice.images_per_s.items()}}
    write_json(cache_path(), doc)


@dataclass(frozen=True, eq=False, kw_only=True)
class Head(DataSource):
    """The first ``n`` images of ``source`` (read no further)."""

    source: DataSource = field(repr=False)
    n: int

    @classmethod
    def of(cls, source: DataSource, n: int) -> Head:
        return cls(
            name=source.name, split=source.split, num_classes=source.num_classes, classes=source.classes,
            image_size=source.image_size, default_preprocessing=source.default_preprocessing, path=source.path,
            source=source, n=min(n, len(source)),
        )

    def __len__(self) -> int:
        return self.n

    def batches(
        self,
        batch_size: int,
        preprocessing: Preprocessing | None = None,
        device: str | torch.device = "cpu",
        augment: bool = False,
        shuffle: bool = False,
        seed: int = 0,
        workers: int | None = None,
        shard: tuple[int, int] = (0, 1),
    ) -> Iterator[Batch]:
        left = self.n
        for x, y in self.source.batches(batch_size, preprocessing, device, augment, shuffle, seed, workers, shard):
            if left <= 0:
                return
            yield x[:left], y[:left]
            left -= int(y.shape[0])


def measure(ctx: RunContext, analysis: Analysis, options: dict[str, Any], sizes: Sequence[int]) -> dict[int, float]:
    """Images per second of ``analysis`` run on the first ``b`` images, for each ``b`` in ``sizes``."""
    data = ctx.require_data(analysis.name)
    quiet = replace(ctx, journal=None, tolerance=None, progress=no_progress)

    def once(b: int) -> float:
        run_ctx = replace(quiet, data=Head.of(data, b), batch_size=b)
        if ctx.executor.device.type == "cuda":
            torch.cuda.synchronize(ctx.executor.device)
        started = time.perf_counter()
        analysis.run(run_ctx, **options)
        if ctx.executor.device.type == "cuda":
            torch.cuda.synchronize(ctx.executor.device)
        return b / (time.perf_counter() - started)

    once(sizes[0])  # untimed: first-call allocations and kernel choices
    rates: dict[int, float] = {}
    for b in sizes:
        try:
            rates[b] = once(b)
        except torch.cuda.OutOfMemoryError:
            torch.cuda.empty_cache()
            break  # larger sizes fail too
    return rates


def choose_batch_size(
    analysis: Analysis, ctx: RunContext, options: dict[str, Any], requested: int | None,
) -> BatchChoice:
    """``requested`` when given; else the cached or freshly probed fastest size for this work."""
    if requested is not None:
        return BatchChoice(requested, "option")
    data = ctx.data
    sizes = candidates(ctx.executor.device)
    # Under torchrun every rank must batch alike, and timings taken on one rank while the
    # others wait say little: take the default.
    if data is None or not analysis.batch_probe or len(data) < PROBE_SHARE * max(sizes) or distributed.world() > 1:
        return BatchChoice(BATCH_SIZE, "default")
    key = probe_key(analysis, ctx.loaded, ctx.executor, data, options, [m for m, _ in ctx.compare])
    cached = _cached(key)
    if cached is not None:
        return cached
    rates = measure(ctx, analysis, options, sizes)
    if not rates:  # the smallest size ran out of memory after the warm-up: nothing to compare
        return BatchChoice(sizes[0], "probe")
    choice = BatchChoice(max(rates, key=lambda b: rates[b]), "probe", rates)
    _remember(key, choice)
    return choice
