"""Training on the spot for the CLI: the progress bar, and the digits models a run needs trained first."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterator, Sequence

from resnet_probe.cli.streams import err, out
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from resnet_probe.errors import CheckpointError
from resnet_probe.models import cache
from resnet_probe.models.spec import parse_with_checkpoint
from resnet_probe.settings import RunSettings, reads_digits

if TYPE_CHECKING:
    from resnet_probe.data import DataSource
    from resnet_probe.models.spec import ModelSpec
    from resnet_probe.training.loop import Progress as TrainCallback
    from resnet_probe.training.loop import TrainResult, TrainStatus


@contextlib.contextmanager
def training_progress(title: str) -> Iterator[TrainCallback]:
    """A rich bar over iterations with loss and accuracy, one stderr line per epoch."""
    with Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[stats]}"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=err,
        transient=True,
    ) as bar:
        task = bar.add_task(title, total=None, stats="")

        def report(s: TrainStatus) -> None:
            if s.event == "start":
                bar.update(task, total=s.iters, completed=s.iteration)
            elif s.event == "step":
                stats = f"epoch {s.epoch + 1}/{s.epochs} loss {s.loss:.3f} acc {100 * s.accuracy:.1f} % lr {s.lr:.3g}"
                bar.update(task, completed=s.iteration, stats=stats)
            elif s.event == "epoch" and s.record is not None:
                bar.console.print(epoch_line(s.record, s.epochs), markup=False, highlight=False)

        yield report


def epoch_line(r: dict, epochs: int) -> str:
    """One epoch of the history as a log line."""
    test = (
        f"test loss {r['test_loss']:.4f} err {100 * r['test_error']:.2f} %"
        if r.get("test_error") is not None
        else "no test set"
    )
    train = (
        f"train loss {r['train_loss']:.4f} err {100 * r['train_error']:.2f} %"
        if r.get("train_error") is not None
        else ""
    )
    return f"epoch {r['epoch']}/{epochs}  it {r['iteration']}  lr {r['lr']:.4g}  {train}  {test}  {r['seconds']:.1f} s"


def open_train_data(dataset: str | None, data: Path | None, download: bool) -> tuple[DataSource, DataSource | None]:
    """Training split and, where the source has one, the test split."""
    from resnet_probe.data import load_data

    train_src = load_data(dataset, data, split="train", download=download)
    if data is not None and train_src.name not in ("cifar10", "cifar100"):
        # An .npz file or an image folder is one split: there is no separate test set to score.
        err.print(f"{data} has no separate test split; training without test evaluation", markup=False)
        return train_src, None
    return train_src, load_data(dataset, data, split="test", download=download)


def fit(
    spec: ModelSpec, train_src: DataSource, test_src: DataSource | None, *, dataset: str, **kwargs: object
) -> TrainResult:
    """Train with the rich progress bar and print where the checkpoint went."""
    from resnet_probe.training.loop import train_model

    with training_progress(f"train {spec.name}") as report:
        result = train_model(spec, train_src, test_src, dataset=dataset, progress=report, **kwargs)  # type: ignore[arg-type]
    acc = "" if result.test_accuracy is None else f", test accuracy {100 * result.test_accuracy:.2f} %"
    out.print(
        f"saved {result.spec} ({result.dataset}, {result.iterations} iterations, {len(result.history)} epochs, "
        f"{result.seconds:.0f} s{acc}) to {result.checkpoint}",
        markup=False,
    )
    return result


def ensure_trained(
    specs: list[ModelSpec],
    dataset: str,
    seed: int,
    device: str,
    download: bool,
    before: Callable[[], None] | None = None,
) -> None:
    """Train the missing digits models now; elsewhere name the command that trains them."""
    from resnet_probe.models.weights import published

    missing = [s for s in dict.fromkeys(specs) if cache.find_trained(s, dataset) is None]
    if dataset != "digits":
        # akamaster's published CIFAR-10 ResNets stand in for a cached one (load_model's "auto").
        missing = [s for s in missing if not (s.source == "zoo" and published(s.name, dataset) is not None)]
        if missing:
            first = missing[0]
            more = f" (and the same for {', '.join(s.name for s in missing[1:])})" if missing[1:] else ""
            raise CheckpointError(
                f"no trained {first} on {dataset} in {cache.home() / 'checkpoints'}; run "
                f"`resnet-probe train --model {first.name} --dataset {dataset}` first{more}"
            )
        return
    if not missing:
        return
    if before is not None:
        before()  # e.g. check the run directory: a mistake there must not cost a training first
    out.print(
        f"training {len(missing)} model(s) on digits first (no cached checkpoint; --no-train refuses): "
        f"{', '.join(s.name for s in missing)}",
        markup=False,
    )
    train_src, test_src = open_train_data("digits", None, download)
    for spec in missing:
        fit(spec, train_src, test_src, dataset="digits", seed=seed, device=device)


def train_missing(
    settings: RunSettings, compare: Sequence[str] = (), before: Callable[[], None] | None = None
) -> None:
    """Before a run on digits: train the zoo models it names that have no weights yet."""
    if not settings.train_missing or not reads_digits(settings.dataset, settings.data) or settings.random_init or settings.pretrained:
        return
    specs = [] if settings.checkpoint is not None else [settings.model_spec]
    specs += [spec for spec, checkpoint in map(parse_with_checkpoint, compare) if checkpoint is None]
    zoo = [spec for spec in specs if spec.source == "zoo"]
    if zoo:
        ensure_trained(zoo, "digits", settings.seed, settings.device, download=False, before=before)
