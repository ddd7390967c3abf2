"""`resnet-probe train` and `resnet-probe train-curves` (alias `train-report`): train into the cache, draw the curves."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Optional

import typer
from resnet_probe.cli import options as o
from resnet_probe.cli.console import print_reading, run_command
from resnet_probe.cli.training import fit, open_train_data

from resnet_probe.errors import CheckpointError
from resnet_probe.models import cache
from resnet_probe.models.spec import parse, parse_with_checkpoint
from resnet_probe.settings import RunSettings

if TYPE_CHECKING:
    from resnet_probe.models.spec import ModelSpec

Resume = Annotated[bool, typer.Option("--resume", help="Continue a killed run from its last finished epoch.")]
CheckpointOut = Annotated[
    Optional[Path],
    typer.Option("--out", "-o", help="Checkpoint file (default: the cache, where later commands find it)."),
]
Models = Annotated[Optional[list[str]], typer.Option("--model", "-m", help="SPEC[=CHECKPOINT]; repeat for several.")]


def train(
    model: o.Model,
    dataset: o.Dataset = None,
    data: o.Data = None,
    epochs: o.Epochs = None,
    iters: o.Iters = None,
    lr: o.LearningRate = None,
    batch_size: o.TrainBatch = None,
    seed: o.Seed = 0,
    device: o.Device = "auto",
    precision: o.TrainPrecision = "auto",
    resume: Resume = False,
    out_path: CheckpointOut = None,
    download: o.Download = False,
) -> None:
    """Train a model with He et al. 2015's CIFAR recipe (digits: a short one) into the cache.

    Example: resnet-probe train --model plain56 --dataset cifar10 --download
    """
    spec = parse(model)
    train_src, test_src = open_train_data(dataset, data, download)
    fit(
        spec,
        train_src,
        test_src,
        dataset=dataset or train_src.name,
        epochs=epochs,
        iters=iters,
        lr=lr,
        batch_size=batch_size,
        seed=seed,
        device=device,
        precision=precision,
        resume=resume,
        checkpoint_path=out_path,
    )


def train_curves(
    models: Models = None,
    dataset: o.Dataset = None,
    out_dir: o.Out = None,
    force: o.Force = False,
    title: o.Title = None,
) -> None:
    """Training curves of several runs from their checkpoints (default: every one cached for --dataset).

    Example: resnet-probe train-report --model plain20 --model resnet20 --dataset digits
    """
    key = dataset or "digits"
    runs = [_resolve(text, key) for text in models] if models else _cached_runs(key)
    first_spec, first_ckpt = runs[0]
    settings = RunSettings(str(first_spec), first_ckpt, dataset=key, out=out_dir, force=force, title=title, device="cpu")
    record, result = run_command("train-curves", settings, {}, compare=[f"{spec}={ckpt}" for spec, ckpt in runs[1:]])
    print_reading(record, result)


def _resolve(text: str, dataset: str) -> tuple[ModelSpec, Path]:
    spec, ckpt = parse_with_checkpoint(text)
    if ckpt is None:
        ckpt = cache.find_trained(spec, dataset)
        if ckpt is None:
            raise CheckpointError(
                f"no trained {spec} on {dataset} in {cache.home() / 'checkpoints'}; run "
                f"`resnet-probe train --model {spec.name} --dataset {dataset}` or pass {spec.name}=CHECKPOINT"
            )
    return spec, ckpt


def _cached_runs(dataset: str) -> list[tuple[ModelSpec, Path]]:
    from resnet_probe.models.checkpoints import read_checkpoint
    from resnet_probe.training.state import SUFFIX as RESUME_SUFFIX

    folder = cache.home() / "checkpoints" / dataset
    files = (
        sorted(p for p in folder.glob("*.safetensors") if not p.name.endswith(RESUME_SUFFIX)) if folder.is_dir() else []
    )
    runs = []
    for path in files:
        saved = read_checkpoint(path).metadata.get("spec")
        if saved:
            runs.append((parse(str(saved)), path))
    if not runs:
        raise CheckpointError(
            f"no trained checkpoints for {dataset} in {folder}; run "
            f"`resnet-probe train --model MODEL --dataset {dataset}` or pass --model SPEC=CHECKPOINT"
        )
    return runs


