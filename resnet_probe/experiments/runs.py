"""One run of a grid: its cache key, its folder in the cache, its training and its measurements.

A run is cached under ``home()/experiments/{dataset}/{model}/s{seed}-{digest}/`` where the
digest hashes (model, data, recipe, seed): any change to one of them is another run. The folder
holds ``model.safetensors`` (the trained net), ``model.resume.safetensors`` while it trains (the
loop's per-epoch state, so a killed run continues from its last epoch) and ``run.json`` (the
measurements), written last: a run is done when its run.json is there. ``run.lock`` is held
while a process trains it, so two experiments never train the same run at once.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, ContextManager, Iterator, Sequence

import numpy as np
import torch

from resnet_probe.data import DataSource
from resnet_probe.data.preprocessing import Preprocessing
from resnet_probe.errors import CheckpointError, OutputError
from resnet_probe.files import home, read_json, write_json
from resnet_probe.models.load import load_model
from resnet_probe.models.spec import parse
from resnet_probe.runlock import LOCK, RunLock, read_holder
from resnet_probe.stats import pack_bits
from resnet_probe.training.loop import Progress, TrainStatus
from resnet_probe.training.recipe import Recipe, iters_per_epoch, model_recipe
from resnet_probe.training.state import resume_path

CACHE_FORMAT = 1
RUN_FILE = "run.json"
CHECKPOINT = "model.safetensors"
EVAL_BATCH = 256

ProgressFactory = Callable[[str], ContextManager[Progress]]


@dataclass(frozen=True)
class TrainOptions:
    """What the recipe takes from the command line (None: the recipe's own) and where to train."""

    epochs: int | None = None
    iters: int | None = None
    lr: float | None = None
    batch_size: int | None = None
    device: str = "auto"
    precision: str = "auto"


def data_identity(train: DataSource, test: DataSource) -> dict[str, Any]:
    """What of the data decides a run: the set, its splits' sizes (``--limit`` changes them)."""
    return {"dataset": train.name, "path": train.path, "train_n": len(train), "test_n": len(test)}


def grid_recipe(models: Sequence[str], train: DataSource, options: TrainOptions) -> Recipe:
    """One recipe for every net of a grid, so that its cells differ in the net alone.

    Each net's own recipe (what ``train`` would give it: depth and family decide warm-up and
    length) is computed, and the longest of them trains them all: on digits the long recipe
    of the bottleneck depths and DenseNets, on CIFAR He et al.'s 400-iteration warm-up when the
    grid holds a 110-layer net. The extra digits epochs of the slowly optimising unit variants
    are left out: how far a variant gets in its reference's budget is what the shortcut
    experiment measures (He et al. 2016 trained every variant on the baseline's schedule), and
    one of them would otherwise make every cell 16 times as long.
    """

    def own(model: str) -> Recipe:
        with torch.random.fork_rng(devices=[]):
            loaded = load_model(model, weights="random", num_classes=train.num_classes)
        return model_recipe(
            loaded,
            train.name,
            len(train),
            epochs=options.epochs,
            iters=options.iters,
            lr=options.lr,
            batch_size=options.batch_size,
            variant_length=False,
        )

    return max((own(m) for m in dict.fromkeys(models)), key=lambda r: (r.iters, r.warmup_iters, r.lr))


def cache_key(model: str, data: dict[str, Any], recipe: Recipe, seed: int) -> str:
    """``s{seed}-{12 hex}``: the seed readable, the digest over everything that decides the weights."""
    doc = {"format": CACHE_FORMAT, "model": str(parse(model)), "data": data, "recipe": recipe.to_dict(), "seed": seed}
    digest = hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()[:12]
    return f"s{seed}-{digest}"


def run_folder(dataset: str, model: str, key: str) -> Path:
    """Where the run with ``key`` lives in the cache."""
    return home() / "experiments" / dataset / model / key


def cached(folder: Path) -> dict[str, Any] | None:
    """The measurements of a finished run, or None when it is not finished."""
    path = folder / RUN_FILE
    if not path.is_file():
        return None
    doc = read_json(path)
    if doc.get("format") != CACHE_FORMAT or not (folder / CHECKPOINT).is_file():
        return None
    return doc


def train_and_measure(
    model: str,
    seed: int,
    train: DataSource,
    test: DataSource,
    recipe: Recipe,
    folder: Path,
    options: TrainOptions,
    progress: ProgressFactory | None = None,
) -> dict[str, Any]:
    """Train the run (continuing a killed one), measure it and write its run.json; returns that."""
    from resnet_probe.training.loop import train_model

    folder.mkdir(parents=True, exist_ok=True)
    with _locked(folder, model, seed):
        done = cached(folder)
        if done is not None:  # another process finished it while this one waited
            return done
        checkpoint = folder / CHECKPOINT
        meter = _TrainMeter(len(train), recipe.batch_size)
        trained = _finished(checkpoint, recipe, seed)  # killed after saving the net, before run.json
        if trained is None:
            with progress(f"train {model} seed {seed}") if progress else _quiet() as shown:
                def report(status: TrainStatus) -> None:
                    meter(status)
                    shown(status)

                result = train_model(
                    model, train, test, recipe=recipe, seed=seed, device=options.device,
                    precision=options.precision, progress=report, resume=resume_path(checkpoint).is_file(),
                    checkpoint_path=checkpoint, dataset=train.name,
                )
            if result.recipe != recipe:
                raise CheckpointError(f"{model}: trained with {result.recipe}, expected {recipe}; this is a bug")
            trained = {"history": list(result.history), "iterations": result.iterations,
                       "seconds": round(result.seconds, 3)}
        doc = {"format": CACHE_FORMAT, "model": model, "seed": seed, "recipe": recipe.to_dict(), **trained,
               "train_images_per_s": meter.rate(), **measure(checkpoint, model, train, test, options.device)}
        write_json(folder / RUN_FILE, doc)
    return doc


@contextlib.contextmanager
def _locked(folder: Path, model: str, seed: int) -> Iterator[None]:
    """Hold the run's lock; a live holder is a one-line error that names the run, not an --out."""
    lock = RunLock(folder)
    try:
        lock.acquire()
    except OutputError:
        held = read_holder(folder / LOCK) or {}
        raise OutputError(
            f"{model} seed {seed} is being trained by another process (pid {held.get('pid')}, started "
            f"{held.get('started')}) in {folder}; wait for it, and rerun to use its result"
        ) from None
    try:
        yield
    finally:
        lock.release()


def _finished(checkpoint: Path, recipe: Recipe, seed: int) -> dict[str, Any] | None:
    """History, iterations and seconds of a finished checkpoint of this recipe and seed, else None."""
    from resnet_probe.models.checkpoints import read_checkpoint

    if not checkpoint.is_file() or resume_path(checkpoint).is_file():
        return None
    meta = read_checkpoint(checkpoint).metadata
    args = meta.get("train_args") or {}
    if args.get("seed") != seed or {k: args.get(k) for k in recipe.to_dict()} != recipe.to_dict():
        return None
    history = list(meta.get("history") or [])
    return {"history": history, "iterations": int(history[-1]["iteration"]) if history else 0,
            "seconds": float(args.get("seconds") or 0.0)}


class _TrainMeter:
    """Images per second of the optimisation steps alone (the per-epoch test pass is left out)."""

    def __init__(self, train_n: int, batch_size: int) -> None:
        self.train_n, self.batch_size = train_n, batch_size
        self.images, self.seconds, self.step = 0, 0.0, 0
        self.last = time.perf_counter()

    def __call__(self, status: TrainStatus) -> None:
        now = time.perf_counter()
        if status.event == "step":
            self.seconds += now - self.last
            self.images += min(self.batch_size, self.train_n - self.step * self.batch_size)
            self.step = (self.step + 1) % iters_per_epoch(self.train_n, self.batch_size)
        elif status.event in ("start", "epoch"):
            self.step = 0
        self.last = now

    def rate(self) -> float | None:
        return round(self.images / self.seconds, 2) if self.seconds > 0 and self.images else None


class _quiet:
    """A progress context that shows nothing."""

    def __enter__(self) -> Progress:
        return lambda _status: None

    def __exit__(self, *exc: object) -> None:
        return None


def measure(checkpoint: Path, model: str, train: DataSource, test: DataSource, device: str) -> dict[str, Any]:
    """Per-image correctness on both splits (eval mode, no augmentation), parameters, FLOPs, inference speed."""
    from torch.utils.flop_counter import FlopCounterMode

    from resnet_probe.executor import resolve_device

    dev = resolve_device(device)
    loaded = load_model(model, checkpoint=checkpoint, num_classes=train.num_classes)
    net = loaded.model.to(dev).eval()
    prep = loaded.preprocessing or train.default_preprocessing
    size = prep.input_size or test.image_size or 32
    with torch.inference_mode():
        probe = torch.zeros(1, 3, size, size, device=dev)
        with FlopCounterMode(display=False) as counter:
            net(probe)
        net(torch.zeros(min(EVAL_BATCH, len(test)), 3, size, size, device=dev))  # warm-up before timing
        test_hits, test_seconds = _correct(net, test, prep, dev)
        train_hits, _ = _correct(net, train, prep, dev)
    return {
        "params": loaded.params,
        "flops": int(counter.get_total_flops()),
        "depth": getattr(net, "depth", None) if isinstance(getattr(net, "depth", None), int) else None,
        "residual": any(u.shortcut_kind != "none" for u in loaded.topology.units),
        "family": loaded.topology.family,
        "device": str(dev),
        "test_n": int(test_hits.size), "test_correct": int(test_hits.sum()), "test_hits": pack_bits(test_hits),
        "train_n": int(train_hits.size), "train_correct": int(train_hits.sum()), "train_hits": pack_bits(train_hits),
        "inference_images_per_s": round(test_hits.size / test_seconds, 2) if test_seconds > 0 else 0.0,
    }


def _correct(
    net: torch.nn.Module, data: DataSource, prep: Preprocessing, dev: torch.device
) -> tuple[np.ndarray, float]:
    """Per-image correctness in data order and the seconds the forward passes took."""
    parts, seconds = [], 0.0
    for x, y in data.batches(EVAL_BATCH, preprocessing=prep, device=dev):
        started = time.perf_counter()
        hits = (net(x).argmax(dim=1) == y.to(dev)).cpu().numpy()  # the copy waits for the device
        seconds += time.perf_counter() - started
        parts.append(hits)
    return np.concatenate(parts) if parts else np.zeros(0, bool), seconds
