"""Images per second of each analysis at each batch size: why the CLI probes instead of fixing one.

    python benchmarks/batch_sizes.py --model resnet56 --images 1024 --rounds 2

Runs what the CLI's runner runs (the private folded NHWC copy of a random-weight zoo model,
synthetic CIFAR-shaped images) for ``evaluate`` (one plain forward), ``lesion`` (the
single-delete sweep, prefixes shared) and ``response-std`` (unfolded, every response
captured), each at every candidate batch size of the device, best of ``--rounds``; prints
images per second, each size against the best one, the size the probe would keep, and how
much a fixed 256 would lose.
"""

from __future__ import annotations

import argparse
from typing import Any

import torch
from common import add_device_args, setup

from resnet_probe.analyses.base import RunContext
from resnet_probe.analyses.evaluate import EvaluateAnalysis
from resnet_probe.analyses.lesion import LesionAnalysis
from resnet_probe.analyses.response_std import ResponseStdAnalysis
from resnet_probe.batch_probe import candidates, measure
from resnet_probe.data.preprocessing import Preprocessing
from resnet_probe.data.source import TensorSource
from resnet_probe.models.load import load_model
from resnet_probe.runner import make_executor
from resnet_probe.settings import RunSettings

STUDIES: list[tuple[str, Any, dict[str, Any]]] = [
    ("evaluate", EvaluateAnalysis, {}),
    ("lesion (single deletions)", LesionAnalysis, {}),
    ("response-std", ResponseStdAnalysis, {}),
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="resnet56")
    parser.add_argument("--images", type=int, default=1024, help="synthetic images (at least the largest size)")
    parser.add_argument("--rounds", type=int, default=2, help="repeats of each size; the best is kept")
    add_device_args(parser, "cpu")
    args = parser.parse_args()
    device = setup(args)
    loaded = load_model(f"zoo:{args.model}", weights="random", num_classes=10)
    gen = torch.Generator().manual_seed(0)
    data = TensorSource(
        name="synthetic", split="test", num_classes=10, classes=tuple(map(str, range(10))), image_size=32,
        default_preprocessing=Preprocessing((0.5,) * 3, (0.25,) * 3, 32, "dataset"),
        images=torch.randint(0, 256, (args.images, 3, 32, 32), dtype=torch.uint8, generator=gen),
        labels=torch.randint(0, 10, (args.images,), generator=gen),
    )
    settings = RunSettings(model=args.model, precision=args.precision)
    sizes = candidates(device)
    print(f"{args.model} on {device}, {torch.get_num_threads()} threads, {args.precision}; best of {args.rounds}")
    for name, kind, options in STUDIES:
        analysis = kind()
        executor = make_executor(loaded, device, settings, fold=not analysis.needs_layer_outputs)
        ctx = RunContext(loaded=loaded, executor=executor, data=data)
        best: dict[int, float] = {}
        for _ in range(args.rounds):
            for b, rate in measure(ctx, analysis, options, sizes).items():
                best[b] = max(best.get(b, 0.0), rate)
        top = max(best, key=best.__getitem__)
        row = "  ".join(f"{b}: {best[b]:7.1f} ({best[b] / best[top]:4.2f})" for b in sizes if b in best)
        loss = 1 - best.get(256, best[top]) / best[top]
        print(f"{name:28s} images/s  {row}   keeps {top}; a fixed 256 loses {loss:.0%}")


if __name__ == "__main__":
    main()
