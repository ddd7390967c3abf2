"""Train a zoo (or tv/timm) network with He et al. 2015's recipe, resumably, into the cache.

The checkpoint lands where ``load_model`` looks first (:func:`cache.trained_checkpoint_path`),
with the per-epoch log in its metadata (``history``). After every epoch the whole run state
is written next to it, so a killed run continues with ``resume=True`` and ends with the same
weights as an uninterrupted one (bit-identical on CPU): the learning rate is a function of the
iteration, and each epoch's shuffle and crops come from a generator seeded by (seed, epoch).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable, Iterator

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from resnet_probe.data import DataSource
from resnet_probe.data.preprocessing import Preprocessing
from resnet_probe.data.source import CIFAR_PAD
from resnet_probe.errors import DataError, DeviceError, ProbeError
from resnet_probe.executor import resolve_device
from resnet_probe.models import cache
from resnet_probe.models.checkpoints import save_checkpoint
from resnet_probe.models.load import load_model
from resnet_probe.models.spec import ModelSpec, parse
from resnet_probe.training.recipe import Recipe, iters_per_epoch, model_recipe
from resnet_probe.training.state import load_state, restore_rng, resume_path, save_state

TRAIN_PRECISIONS: tuple[str, ...] = ("auto", "fp32", "bf16", "fp16")


@dataclass(frozen=True)
class TrainStatus:
    """What a progress callback sees: ``event`` is start, step, epoch or end.

    ``loss`` and ``accuracy`` run over the current epoch's training batches so far; ``record``
    is the epoch's log line on ``epoch`` events (its resume state is already on disk then).
    """

    event: str
    epoch: int
    epochs: int
    iteration: int
    iters: int
    lr: float
    loss: float = math.nan
    accuracy: float = math.nan
    record: dict[str, Any] | None = None


Progress = Callable[[TrainStatus], None]


@dataclass(frozen=True)
class TrainResult:
    """Where the checkpoint went, the per-epoch history and the final test numbers."""

    spec: str
    dataset: str
    checkpoint: Path
    recipe: Recipe
    history: tuple[dict[str, Any], ...]
    iterations: int
    seconds: float
    test_accuracy: float | None
    test_loss: float | None
    resumed_from_epoch: int = 0


def train_model(
    spec: ModelSpec | str,
    data_train: DataSource,
    data_test: DataSource | None = None,
    *,
    epochs: int | None = None,
    iters: int | None = None,
    lr: float | None = None,
    batch_size: int | None = None,
    recipe: Recipe | None = None,
    seed: int = 0,
    device: str = "auto",
    precision: str = "auto",
    progress: Progress | None = None,
    resume: bool = False,
    checkpoint_path: str | Path | None = None,
    dataset: str | None = None,
) -> TrainResult:
    """Train ``spec`` from scratch (or resume it) and save it where ``load_model`` finds it.

    ``recipe`` replaces the model's own (:func:`model_recipe`; then ``epochs``, ``iters``,
    ``lr`` and ``batch_size`` must be None): an experiment trains every net of a grid alike.
    ``dataset`` names the cache folder (default ``data_train.name``); ``precision`` "auto" is
    bf16 autocast on CUDA (fp16 with a GradScaler where bf16 is missing) and fp32 on CPU;
    "bf16" on the CPU is autocast too (weights and optimizer stay fp32).

    Example:
        >>> result = train_model("resnet20", load_data("digits", split="train"), load_data("digits"))
        >>> result.test_accuracy  # about 0.98 after the 5-epoch digits recipe
    """
    spec = parse(spec) if isinstance(spec, str) else spec
    dataset = dataset or data_train.name
    if data_test is not None and data_test.num_classes != data_train.num_classes:
        raise DataError(
            f"test set has {data_test.num_classes} classes, training set {data_train.num_classes}; use one data set"
        )
    if recipe is not None and (epochs, iters, lr, batch_size) != (None, None, None, None):
        raise ProbeError("train_model: pass a recipe or its overrides (epochs, iters, lr, batch_size), not both")
    run = _setup(spec, data_train, dataset, recipe, seed, resolve_device(device), precision,
                 epochs=epochs, iters=iters, lr=lr, batch_size=batch_size)
    path = Path(checkpoint_path) if checkpoint_path is not None else cache.trained_checkpoint_path(spec, dataset)
    state_path = resume_path(path)

    start_epoch, iteration, seconds = 0, 0, 0.0
    history: list[dict[str, Any]] = []
    if resume:
        start_epoch, iteration, history, seconds = _resume(state_path, run.identity, run.model, run.optimizer,
                                                           run.scaler)
    recipe = run.recipe
    total_epochs = recipe.epochs(len(data_train))
    emit = progress or (lambda _status: None)
    emit(TrainStatus("start", start_epoch, total_epochs, iteration, recipe.iters, recipe.lr_at(iteration)))
    run.model.train()
    for epoch in range(start_epoch, total_epochs):
        started = time.perf_counter()
        iteration, loss_sum, correct, seen = _train_epoch(run, data_train, seed, epoch, iteration, total_epochs, emit)
        test_loss, test_acc = _evaluate(run.model, data_test, run.prep, run.device, run.amp, recipe.batch_size)
        elapsed = time.perf_counter() - started
        seconds += elapsed
        train_loss, train_acc = (loss_sum / seen, correct / seen) if seen else (math.nan, math.nan)
        record: dict[str, Any] = {
            "epoch": epoch + 1,
            "iteration": iteration,
            "lr": recipe.lr_at(max(iteration - 1, 0)),
            "train_loss": train_loss if seen else None,
            "train_error": 1 - train_acc if seen else None,
            "test_loss": test_loss,
            "test_error": None if test_acc is None else 1 - test_acc,
            "seconds": round(elapsed, 3),
        }
        history.append(record)
        meta = {
            **run.identity,
            "epoch": epoch + 1,
            "iteration": iteration,
            "history": history,
            "seconds": seconds,
            "scaler": run.scaler.state_dict() if run.scaler.is_enabled() else None,
        }
        save_state(state_path, run.model, run.optimizer, meta)
        emit(
            TrainStatus(
                "epoch", epoch, total_epochs, iteration, recipe.iters, record["lr"], train_loss, train_acc, record
            )
        )
    result = _save_trained(run, spec, dataset, path, data_train, data_test, history, iteration, seconds, seed)
    state_path.unlink(missing_ok=True)
    final = history[-1] if history else {}
    emit(
        TrainStatus(
            "end", total_epochs, total_epochs, iteration, recipe.iters, recipe.lr_at(iteration - 1), record=final
        )
    )
    return replace(result, resumed_from_epoch=start_epoch)


@dataclass
class _Run:
    """What one training holds: the model being trained, its recipe, optimiser, scaler and the run's identity."""

    model: nn.Module
    recipe: Recipe
    optimizer: torch.optim.Optimizer
    scaler: torch.amp.GradScaler
    device: torch.device
    amp: torch.dtype | None
    prep: Preprocessing
    identity: dict[str, Any]


def _setup(
    spec: ModelSpec, data_train: DataSource, dataset: str, recipe: Recipe | None, seed: int, dev: torch.device,
    precision: str, **overrides: Any,
) -> _Run:
    """The randomly initialised model (its weights depend on the seed only), on the device, with its recipe."""
    amp = _precision(precision, dev)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        loaded = load_model(spec, weights="random", num_classes=data_train.num_classes)
    model = loaded.model
    if recipe is None:
        recipe = model_recipe(loaded, dataset, len(data_train), **overrides)
    model.to(dev)
    if _channels_last(dev, amp):
        model.to(memory_format=torch.channels_last)
    optimizer = torch.optim.SGD(
        model.parameters(), lr=recipe.lr, momentum=recipe.momentum, weight_decay=recipe.weight_decay
    )
    scaler = torch.amp.GradScaler(dev.type, enabled=amp == torch.float16)
    identity = {
        "spec": str(spec), "dataset": dataset, "seed": seed, "train_size": len(data_train),
        "recipe": recipe.to_dict(),
    }
    return _Run(model, recipe, optimizer, scaler, dev, amp, data_train.default_preprocessing, identity)


def _train_epoch(
    run: _Run, data_train: DataSource, seed: int, epoch: int, iteration: int, total_epochs: int,
    emit: Progress,
) -> tuple[int, float, int, int]:
    """One pass over the training set (to the recipe's last iteration): iteration, summed loss, hits, images."""
    recipe = run.recipe
    loss_sum, correct, seen = 0.0, 0, 0
    for x, y in _epoch_batches(data_train, recipe, run.prep, run.device, seed, epoch):
        if iteration >= recipe.iters:
            break
        lr_now = recipe.lr_at(iteration)
        for group in run.optimizer.param_groups:
            group["lr"] = lr_now
        loss, hits = _step(run.model, run.optimizer, run.scaler, x, y, run.amp, run.device)
        iteration += 1
        loss_sum += loss * y.shape[0]
        correct += hits
        seen += int(y.shape[0])
        emit(TrainStatus("step", epoch, total_epochs, iteration, recipe.iters, lr_now, loss_sum / seen, correct / seen))
    return iteration, loss_sum, correct, seen


def _save_trained(
    run: _Run, spec: ModelSpec, dataset: str, path: Path, data_train: DataSource, data_test: DataSource | None,
    history: list[dict[str, Any]], iteration: int, seconds: float, seed: int,
) -> TrainResult:
    """The trained model saved where ``load_model`` finds it, with its recipe and history; what it reached."""
    final = history[-1] if history else {}
    test_error = final.get("test_error")
    train_args = {
        **run.recipe.to_dict(),
        "seed": seed,
        "device": str(run.device),
        "precision": _precision_name(run.amp),
        "train_size": len(data_train),
        "test_size": len(data_test) if data_test is not None else None,
        "seconds": round(seconds, 3),
    }
    accuracy = None if test_error is None else 1 - test_error
    save_checkpoint(
        path, run.model, spec, dataset=dataset, num_classes=data_train.num_classes, preprocessing=run.prep,
        accuracy=accuracy, train_args=train_args, history=history,
    )
    return TrainResult(
        spec=str(spec),
        dataset=dataset,
        checkpoint=path,
        recipe=run.recipe,
        history=tuple(history),
        iterations=iteration,
        seconds=seconds,
        test_accuracy=accuracy,
        test_loss=final.get("test_loss"),
        resumed_from_epoch=0,
    )


def _precision(name: str, dev: torch.device) -> torch.dtype | None:
    """The autocast dtype: "auto" is fp32 on the CPU (bit-stable defaults); bf16 is opt-in there."""
    if name not in TRAIN_PRECISIONS:
        raise ProbeError(f"unknown precision {name!r}; valid: {', '.join(TRAIN_PRECISIONS)}")
    if dev.type != "cuda":
        if name == "fp16":
            raise DeviceError(f"--precision fp16: fp16 training needs a GPU; use bf16, fp32 or auto on {dev}")
        return torch.bfloat16 if name == "bf16" else None
    if name == "auto":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}[name]


def _channels_last(dev: torch.device, amp: torch.dtype | None) -> bool:
    # Measured on a 2-core AMX Xeon: bf16 convolutions run fastest channels-last (DenseNet-BC-100
    # step 0.57 s -> 0.47 s); CPU fp32 (the default) stays NCHW, so its trained weights stay bit-identical.
    return dev.type == "cuda" or amp is not None


def _precision_name(dtype: torch.dtype | None) -> str:
    return {None: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}[dtype]


def _resume(
    state_path: Path,
    identity: dict[str, Any],
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scaler: torch.amp.GradScaler,
) -> tuple[int, int, list[dict[str, Any]], float]:
    """Load the saved state into model, optimizer and scaler; returns epoch, iteration, history, seconds."""
    if not state_path.is_file():
        raise ProbeError(f"nothing to resume: no run state at {state_path}; train without --resume to start afresh")
    state = load_state(state_path)
    saved = {**{k: v for k, v in state.meta.items() if k != "recipe"}, **(state.meta.get("recipe") or {})}
    for key, want in {**{k: v for k, v in identity.items() if k != "recipe"}, **identity["recipe"]}.items():
        if saved.get(key) != want:
            raise ProbeError(
                f"cannot resume {state_path.name}: it was started with {key}={saved.get(key)!r}, "
                f"this run has {key}={want!r}; train without --resume to start afresh"
            )
    model.load_state_dict(state.model, strict=True)
    optimizer.load_state_dict(state.optimizer)
    if scaler.is_enabled() and state.meta.get("scaler"):
        scaler.load_state_dict(state.meta["scaler"])
    restore_rng(state.rng)
    return (
        int(state.meta["epoch"]),
        int(state.meta["iteration"]),
        list(state.meta["history"]),
        float(state.meta["seconds"]),
    )


def _epoch_seed(seed: int, epoch: int) -> int:
    """Each epoch's own shuffle/augmentation seed, independent of where a run was resumed."""
    return seed * 1_000_003 + epoch


def _epoch_batches(
    data: DataSource, recipe: Recipe, prep: Preprocessing, dev: torch.device, seed: int, epoch: int
) -> Iterator[tuple[Tensor, Tensor]]:
    """Shuffled, augmented training batches of one epoch."""
    s = _epoch_seed(seed, epoch)
    batches = data.batches(
        recipe.batch_size, preprocessing=prep, device=dev, augment=recipe.augment == "crop-flip", shuffle=True, seed=s
    )
    if recipe.augment != "crop":
        yield from batches
        return
    gen = torch.Generator().manual_seed(s + 1)
    # Zero padding in pixel space is -mean/std after normalisation.
    fill = torch.tensor([-m / sd for m, sd in zip(prep.mean, prep.std, strict=True)], device=dev).view(1, -1, 1, 1)
    for x, y in batches:
        yield random_crop(x, gen, fill), y


def random_crop(x: Tensor, gen: torch.Generator, fill: Tensor, pad: int = CIFAR_PAD) -> Tensor:
    """Pad each image by ``pad`` with ``fill`` and crop a random window of the original size."""
    b, c, h, w = x.shape
    padded = F.pad(x - fill, (pad, pad, pad, pad)) + fill
    oy = torch.randint(0, 2 * pad + 1, (b,), generator=gen).to(x.device)
    ox = torch.randint(0, 2 * pad + 1, (b,), generator=gen).to(x.device)
    rows = (oy[:, None] + torch.arange(h, device=x.device))[:, None, :, None]
    cols = (ox[:, None] + torch.arange(w, device=x.device))[:, None, None, :]
    batch = torch.arange(b, device=x.device)[:, None, None, None]
    chans = torch.arange(c, device=x.device)[None, :, None, None]
    return padded[batch, chans, rows, cols]


def _step(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scaler: torch.amp.GradScaler,
    x: Tensor,
    y: Tensor,
    amp: torch.dtype | None,
    dev: torch.device,
) -> tuple[float, int]:
    """One SGD step; returns the batch's mean loss and its correct predictions."""
    if _channels_last(dev, amp):
        x = x.contiguous(memory_format=torch.channels_last)
    with torch.autocast(dev.type, dtype=amp, enabled=amp is not None):
        logits = model(x)
    loss = F.cross_entropy(logits.float(), y)
    optimizer.zero_grad(set_to_none=True)
    scaler.scale(loss).backward()
    scaler.step(optimizer)
    scaler.update()
    return float(loss.detach()), int((logits.detach().argmax(dim=1) == y).sum())


def _evaluate(
    model: nn.Module,
    data: DataSource | None,
    prep: Preprocessing,
    dev: torch.device,
    amp: torch.dtype | None,
    batch_size: int,
) -> tuple[float | None, float | None]:
    """Mean cross-entropy and accuracy on the test set in eval mode; training mode restored."""
    if data is None:
        return None, None
    model.eval()
    loss_sum, correct, n = 0.0, 0, 0
    try:
        with torch.inference_mode(), torch.autocast(dev.type, dtype=amp, enabled=amp is not None):
            for x, y in data.batches(max(batch_size, 256), preprocessing=prep, device=dev):
                if _channels_last(dev, amp):
                    x = x.contiguous(memory_format=torch.channels_last)
                logits = model(x).float()
                loss_sum += float(F.cross_entropy(logits, y, reduction="sum"))
                correct += int((logits.argmax(dim=1) == y).sum())
                n += int(y.shape[0])
    finally:
        model.train()
    return loss_sum / n, correct / n


__all__ = ["TrainResult", "TrainStatus", "train_model", "random_crop", "iters_per_epoch", "TRAIN_PRECISIONS"]
