"""`resnet-probe response-std` (alias `std-report`): layer-response std of several models (He et al. Fig. 7)."""

from __future__ import annotations

from resnet_probe.cli import options as o
from resnet_probe.cli.console import print_reading, run_command
from resnet_probe.cli.train import Models
from resnet_probe.cli.training import ensure_trained

from resnet_probe.models.spec import parse_with_checkpoint
from resnet_probe.settings import RunSettings

FIG7_MODELS: tuple[str, ...] = ("plain20", "plain56", "resnet20", "resnet56", "resnet110")


def response_std(
    models: Models = None,
    dataset: o.Dataset = None,
    data: o.Data = None,
    limit: o.Limit = None,
    batch_size: o.BatchSize = 256,
    device: o.Device = "auto",
    seed: o.Seed = 0,
    out_dir: o.Out = None,
    force: o.Force = False,
    title: o.Title = None,
    random_init: o.RandomInit = False,
    download: o.Download = False,
    precision: o.Precision = "fp32",
    split: o.Split = "test",
    workers: o.Workers = 0,
    train_missing: o.TrainMissing = True,
) -> None:
    """Std of every 3x3 conv's response after BN, per model; default: plain20/56, resnet20/56/110.

    A model without =CHECKPOINT comes from the cache; on digits a missing one is trained first.

    Example: resnet-probe std-report --model plain20 --model resnet20=ckpt.safetensors
    """
    texts = list(models) if models else list(FIG7_MODELS)
    parsed = [parse_with_checkpoint(t) for t in texts]
    if train_missing and not random_init and data is None:
        ensure_trained([s for s, ckpt in parsed if ckpt is None], dataset or "digits", seed, device, download)
    (first, first_ckpt), rest = parsed[0], texts[1:]
    settings = RunSettings(
        model=str(first),
        checkpoint=first_ckpt,
        dataset=dataset,
        data=data,
        limit=limit,
        batch_size=batch_size,
        device=device,
        seed=seed,
        out=out_dir,
        force=force,
        title=title,
        random_init=random_init,
        download=download,
        precision=precision,
        split=split,
        workers=workers,
        train_missing=train_missing,
    )
    record, result = run_command("response-std", settings, {}, compare=rest)
    print_reading(record, result)
