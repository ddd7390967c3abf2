"""Shared ``Annotated`` option aliases, so every command spells its options the same way."""

from __future__ import annotations

import copy
import functools
import inspect
from dataclasses import fields
from pathlib import Path
from typing import Annotated, Any, Callable, Optional, get_args, get_origin

import typer

from resnet_probe.bounds import (
    MAX_BATCH_SIZE,
    MAX_EPOCHS,
    MAX_ITERS,
    MAX_LR,
    MAX_SAMPLES,
    MAX_SEED,
    MAX_WORKERS,
    MIN_LR,
)
from resnet_probe.settings import CONFIDENCE, RunSettings

Model = Annotated[str, typer.Option("--model", "-m", help="Model: resnet110, zoo:resnet56, tv:resnet50, timm:resnet50.a1_in1k; a torch.export file net.pt2; or your own code, path/to/file.py:factory or package.module:factory (this imports and RUNS that code, as torch.hub does; then --checkpoint).")]
Checkpoint = Annotated[Optional[Path], typer.Option("--checkpoint", "-c", help="Weights file (our format, state_dict, safetensors, akamaster).")]
Dataset = Annotated[Optional[str], typer.Option("--dataset", "-d", help="cifar10 | cifar10-sample (846 real test images, shipped) | cifar100 | imagenet | digits (default: digits, embedded, offline).")]
Data = Annotated[Optional[Path], typer.Option("--data", help="CIFAR root, ImageFolder, or .npz with images (N,H,W,3) uint8 and labels.")]
Limit = Annotated[Optional[int], typer.Option("--limit", min=1, help="Use only the first N images (read no further).")]
BatchSize = Annotated[Optional[int], typer.Option("--batch-size", "-b", min=1, max=MAX_BATCH_SIZE, help="Images per batch (default: on 1,024+ images the fastest of a few sizes, timed on this analysis and cached per model, device, threads and precision; else 256).")]
Device = Annotated[str, typer.Option("--device", help="auto | cpu | cuda | cuda:N.")]
Seed = Annotated[
    int, typer.Option("--seed", min=0, max=MAX_SEED, help="Seed for every random choice (what numpy and torch both take).")
]
Out = Annotated[Optional[Path], typer.Option("--out", "-o", help="Run directory for report.html and results.json (default: a new one under ./probe-reports/).")]
Force = Annotated[bool, typer.Option("--force", help="Overwrite a report already in --out.")]
Resume = Annotated[bool, typer.Option("--resume", help="Continue the interrupted run in --out from its progress.jsonl.")]
Title = Annotated[Optional[str], typer.Option("--title", help="Report title.")]
RandomInit = Annotated[bool, typer.Option("--random-init", help="Use random weights (no checkpoint needed).")]
Pretrained = Annotated[bool, typer.Option("--pretrained", help="Download the source's pretrained weights (tv:, timm:).")]
Download = Annotated[bool, typer.Option("--download", help="Download the data set through torchvision if missing.")]
Precision = Annotated[str, typer.Option("--precision", help="fp32 | bf16 | fp16 (autocast; fp32 default).")]
Split = Annotated[str, typer.Option("--split", help="Data split: test | train.")]
Workers = Annotated[
    int,
    typer.Option(
        "--workers", min=0, max=MAX_WORKERS, help="Processes decoding an image folder (ImageNet) in parallel; 0: none."
    ),
]
ChannelsLast = Annotated[
    Optional[bool],
    typer.Option(
        "--channels-last/--no-channels-last",
        help="NHWC layout: faster convolutions on GPUs and most CPUs, on a private copy (default: on with CUDA).",
    ),
]
Confidence = Annotated[float, typer.Option("--confidence", min=0.5, max=0.999, help="Level of every interval; a paired test is significant when its Holm-adjusted p < 1 - level.")]
Tolerance = Annotated[
    Optional[float],
    typer.Option(
        "--tolerance",
        min=0.001,
        max=0.499,
        help="Adaptive evaluation: stop scoring a configuration once an anytime-valid confidence sequence "
        "gives its accuracy to +-T (e.g. 0.02); images visited in a seeded random order. Default: every image.",
    ),
]
TrainMissing = Annotated[
    bool,
    typer.Option(
        "--train-missing/--no-train",
        help="On digits, train a zoo model that has no cached weights first (default); --no-train stops instead.",
    ),
]
def _floats(value: Optional[str]) -> Optional[tuple[float, ...]]:
    """``0.49,0.48,0.45`` as a tuple of floats (a typer callback: its return is the option's value)."""
    if value is None:
        return None
    try:
        return tuple(float(v) for v in value.split(","))
    except ValueError:
        raise typer.BadParameter(f"{value!r} is not a comma-separated list of numbers (e.g. 0.49,0.48,0.45)") from None


Mean = Annotated[Optional[str], typer.Option("--mean", callback=_floats, help="Per-channel mean on the [0, 1] scale, e.g. 0.4914,0.4822,0.4465, for a model file that carries no preprocessing (with --std).")]
Std = Annotated[Optional[str], typer.Option("--std", callback=_floats, help="Per-channel std on the [0, 1] scale, e.g. 0.247,0.243,0.261 (with --mean).")]
Compile = Annotated[bool, typer.Option("--compile", help="torch.compile the residual branches (inductor): minutes to start, for long GPU runs.")]

# The training recipe's overrides (train, experiment), bounded: a long training is no place to
# find out late that --iters 0 fails.
Epochs = Annotated[Optional[int], typer.Option("--epochs", min=1, max=MAX_EPOCHS, help="Passes over the training set (default: the recipe's).")]
Iters = Annotated[Optional[int], typer.Option("--iters", min=1, max=MAX_ITERS, help="Total iterations; He et al.: 64000 (lr / 10 at 50 % and 75 %).")]
LearningRate = Annotated[Optional[float], typer.Option("--lr", min=MIN_LR, max=MAX_LR, help="Peak learning rate (default: 0.1; digits 0.02, 0.05 from depth 164 after a warm-up epoch).")]
TrainBatch = Annotated[Optional[int], typer.Option("--batch-size", "-b", min=1, max=MAX_BATCH_SIZE, help="Images per step (default: 128; digits 32).")]
TrainPrecision = Annotated[
    str, typer.Option("--precision", help="auto | fp32 | bf16 | fp16 (auto: bf16 on GPU, fp32 on CPU; bf16 also runs on CPU, fp16 GPU only).")
]


def _shared(
    model: Model,
    checkpoint: Checkpoint = None,
    dataset: Dataset = None,
    data: Data = None,
    limit: Limit = None,
    batch_size: BatchSize = None,
    device: Device = "auto",
    seed: Seed = 0,
    out: Out = None,
    force: Force = False,
    resume: Resume = False,
    title: Title = None,
    random_init: RandomInit = False,
    pretrained: Pretrained = False,
    download: Download = False,
    precision: Precision = "fp32",
    split: Split = "test",
    compile: Compile = False,
    workers: Workers = 0,
    channels_last: ChannelsLast = None,
    confidence: Confidence = CONFIDENCE,
    tolerance: Tolerance = None,
    train_missing: TrainMissing = True,
    mean: Mean = None,
    std: Std = None,
) -> None:
    """The typer parameters of :class:`RunSettings`, declared once (never called)."""


SHARED = {name: p for name, p in inspect.signature(_shared, eval_str=True).parameters.items()}
assert set(SHARED) == {f.name for f in fields(RunSettings)} - {"spec"}  # spec: parsed from --model

#: bounds of the options a command declares itself, by parameter name: ``--samples`` of lesion,
#: reorder and gradients (random sets per k, orders per k, paths per length) like reorder's --swaps
OWN_BOUNDS: dict[str, tuple[int, int]] = {"samples": (1, MAX_SAMPLES)}

Metric = Annotated[str, typer.Option("--metric", help="What each configuration is scored by: auto (top1; loss for a language model) | top1 | top5 (hits: Wilson interval, exact McNemar) | loss (cross-entropy per image, or mean token loss per sequence: t interval, paired sign-flip test; lower is better) | next_token (a language model's share of next tokens predicted right per sequence; t interval, sign-flip test; higher is better).")]


def _bounded(param: inspect.Parameter) -> inspect.Parameter:
    """``param`` with the range :data:`OWN_BOUNDS` gives its name, unless the command set one itself."""
    bounds = OWN_BOUNDS.get(param.name)
    if bounds is None or get_origin(param.annotation) is not Annotated:
        return param
    base, *extras = get_args(param.annotation)
    infos = [e for e in extras if isinstance(e, typer.models.OptionInfo)]
    if len(infos) != 1 or infos[0].min is not None or infos[0].max is not None:
        return param
    info = copy.copy(infos[0])
    info.min, info.max = bounds
    return param.replace(annotation=Annotated[base, info])


def with_common(
    *, batch_size: int | None = None, omit: tuple[str, ...] = ()
) -> Callable[[Callable[..., None]], Callable[..., None]]:
    """Give a command every :class:`RunSettings` option; it receives them as ``settings: RunSettings``.

    The command declares only its own options next to ``settings``; typer sees ``--model``
    first, then those, then the shared ones (``omit`` drops some, e.g. ``resume`` where the
    analysis cannot resume).
    """
    unknown = set(omit) - set(SHARED)
    if unknown or "model" in omit:
        raise ValueError(f"cannot omit {sorted(unknown) or ['model']}")

    def decorate(command: Callable[..., None]) -> Callable[..., None]:
        own = [
            _bounded(p) for name, p in inspect.signature(command, eval_str=True).parameters.items() if name != "settings"
        ]
        shared = [
            p.replace(default=batch_size) if name == "batch_size" else p
            for name, p in SHARED.items()
            if name not in omit and name != "model"
        ]
        required = [p for p in own if p.default is inspect.Parameter.empty]
        optional = [p for p in own if p.default is not inspect.Parameter.empty]
        ordered = [*required, SHARED["model"], *optional, *shared]
        params = [p.replace(kind=inspect.Parameter.KEYWORD_ONLY) for p in ordered]

        @functools.wraps(command)
        def wrapper(**kwargs: Any) -> None:
            values = {name: kwargs.pop(name) for name in list(kwargs) if name in SHARED}
            return command(settings=RunSettings(**values), **kwargs)

        wrapper.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
        wrapper.__annotations__ = {p.name: p.annotation for p in params}
        return wrapper

    return decorate
