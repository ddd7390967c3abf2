"""`resnet-probe std-report`: layer-response std of several models (He et al. 2015, Fig. 7)."""

from __future__ import annotations

from resnet_probe import cache
from resnet_probe.analyses.response_std import ResponseStdAnalysis
from resnet_probe.errors import CheckpointError
from resnet_probe.load import AKAMASTER_FILES
from resnet_probe.spec import ModelSpec, parse_with_checkpoint

from . import options as o
from .console import out
from .pipeline import print_reading, run_analysis
from .train import Models, fit, open_train_data

FIG7_MODELS: tuple[str, ...] = ("plain20", "plain56", "resnet20", "resnet56", "resnet110")


def std_report(
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
    common = o.Common(
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
    _, record, result = run_analysis(ResponseStdAnalysis(), common, {}, compare=rest)
    print_reading(record, result)


def ensure_trained(specs: list[ModelSpec], dataset: str, seed: int, device: str, download: bool) -> None:
    """Train the missing digits models now; elsewhere name the command that trains them."""
    missing = [s for s in dict.fromkeys(specs) if cache.find_trained(s, dataset) is None]
    if dataset != "digits":
        # akamaster's published CIFAR-10 ResNets stand in for a cached one (load_model's "auto").
        missing = [s for s in missing if not (dataset == "cifar10" and s.source == "zoo" and s.name in AKAMASTER_FILES)]
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
