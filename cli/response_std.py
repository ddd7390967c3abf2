"""`resnet-probe response-std` (alias `std-report`): layer-response std of several models (He et al. Fig. 7)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from resnet_probe.cli import options as o
from resnet_probe.cli.console import out, print_reading, run_command
from resnet_probe.cli.train import Models, fit, open_train_data

from resnet_probe.errors import CheckpointError
from resnet_probe.models import cache
from resnet_probe.models.spec import parse_with_checkpoint
from resnet_probe.settings import RunSettings

if TYPE_CHECKING:
    from resnet_probe.models.spec import ModelSpec

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
) -> None:
    """Std of every 3x3 conv's response after BN, per model; default: plain20/56, resnet20/56/110.

    A model without =CHECKPOINT comes from the cache; on digits a missing one is trained first.

    Example: resnet-probe std-report --model plain20 --model resnet20=ckpt.safetensors
    """
    texts = list(models) if models else list(FIG7_MODELS)
    parsed = [parse_with_checkpoint(t) for t in texts]
    if not random_init and data is None:
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
    )
    record, result = run_command("response-std", settings, {}, compare=rest)
    print_reading(record, result)


def ensure_trained(specs: list[ModelSpec], dataset: str, seed: int, device: str, download: bool) -> None:
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
    out.print(
        f"training {len(missing)} model(s) on digits first (no cached checkpoint): "
        f"{', '.join(s.name for s in missing)}",
        markup=False,
    )
    train_src, test_src = open_train_data("digits", None, download)
    for spec in missing:
        fit(spec, train_src, test_src, dataset="digits", seed=seed, device=device)
