"""The whole Veit et al. suite on N synthetic CIFAR-sized images, study by study: the H100 figure.

    python benchmarks/veit_suite.py --model resnet110 --images 10000 --device auto --precision bf16

The studies run through the analysis classes and one RunContext, as ``resnet-probe`` runs them:

- lesion: every single deletion plus random k-sets (k 1..20 x 20), scored in one pass over
  the data, as ``resnet-probe lesion --random-k 1:20 --samples 20`` does (they share prefixes);
- reorder: 1..20 random swaps x 10 orders;
- gradients: 1,000 path samples for every path length 1..n (Veit et al. Sec. 4.2);
- response std: every 3x3 conv's response after BN, one streaming float64 pass.

Random weights and random images: the timing does not depend on them. A tiny warm-up run of
every study comes first (CUDA context, kernel choice, compilation) and is reported apart.
Per study: wall seconds and peak memory (as in ``common``); then the total. Issue 6 asks for
under 60 s on one H100 with ResNet-110 and 10,000 images.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from typing import Any, Callable

import torch
from common import MiB, add_device_args, describe, executor_options, measure, setup, synthetic_cifar

from resnet_probe.analyses.base import RunContext
from resnet_probe.analyses.gradients import GradientsAnalysis, routable_units
from resnet_probe.analyses.lesion import LesionAnalysis
from resnet_probe.analyses.reorder import ReorderAnalysis
from resnet_probe.analyses.response_std import ResponseStdAnalysis
from resnet_probe.executor import Executor
from resnet_probe.models.load import load_model
from resnet_probe.results import Result

STUDIES = ("lesion", "reorder", "gradients", "std")
TARGET_S = 60.0


def studies(args: argparse.Namespace, n_routable: int) -> dict[str, tuple[str, Callable[[RunContext], Result]]]:
    """Name -> (what it computes, how to run it on a context)."""
    k_lo, _, k_hi = args.random_k.partition(":")
    n_random = (int(k_hi or k_lo) - int(k_lo) + 1) * args.random_k_samples
    s_lo, _, s_hi = args.swaps.partition(":")
    n_orders = (int(s_hi or s_lo) - int(s_lo) + 1) * args.swap_samples
    return {
        "lesion": (
            f"single deletions + {n_random} random k-sets (k {args.random_k})",
            lambda ctx: LesionAnalysis().run(ctx, random_k=args.random_k, samples=args.random_k_samples),
        ),
        "reorder": (
            f"{n_orders} reordered networks (swaps {args.swaps})",
            lambda ctx: ReorderAnalysis().run(ctx, swaps=args.swaps, samples=args.swap_samples),
        ),
        "gradients": (
            f"{n_routable} lengths x {args.grad_samples} path samples",
            lambda ctx: GradientsAnalysis().run(
                dataclasses.replace(ctx, batch_size=args.grad_batch_size),
                samples=args.grad_samples, k=f"1:{n_routable}",
            ),
        ),
        "std": ("response std of every 3x3 conv", lambda ctx: ResponseStdAnalysis().run(ctx)),
    }


def main(argv: list[str] | None = None) -> int:
    """Warm up, then time every study and the total."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="resnet110", help="zoo model (default resnet110)")
    parser.add_argument("--images", type=int, default=10_000, help="synthetic CIFAR-sized images (default 10000)")
    parser.add_argument("--batch-size", type=int, default=1000, help="images per batch for the forward studies")
    parser.add_argument("--grad-batch-size", type=int, default=1000, help="path samples per backward pass")
    parser.add_argument("--random-k", default="1:20", help="lesion random-k range (default 1:20)")
    parser.add_argument("--random-k-samples", type=int, default=20, help="random sets per k (default 20)")
    parser.add_argument("--swaps", default="1:20", help="reorder swap counts (default 1:20)")
    parser.add_argument("--swap-samples", type=int, default=10, help="orders per swap count (default 10)")
    parser.add_argument("--grad-samples", type=int, default=1000, help="path samples per length (default 1000)")
    parser.add_argument("--studies", default=",".join(STUDIES), help=f"comma list out of {', '.join(STUDIES)}")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--cudnn-benchmark", action="store_true", help="let cuDNN time its kernels per shape")
    add_device_args(parser)
    args = parser.parse_args(argv)
    chosen = [s.strip() for s in args.studies.split(",") if s.strip()]
    unknown = sorted(set(chosen) - set(STUDIES))
    if unknown:
        parser.error(f"unknown studies {', '.join(unknown)}; choose from {', '.join(STUDIES)}")
    device = setup(args)
    torch.backends.cudnn.benchmark = args.cudnn_benchmark
    loaded = load_model(f"zoo:{args.model}", weights="random")
    loaded.model.to(device)  # our own freshly loaded model, as the CLI's pipeline does
    executor = Executor(loaded.topology, device, **executor_options(args))
    n = len(routable_units(executor.topology))
    data = synthetic_cifar(args.images, seed=args.seed)
    ctx = RunContext(loaded=loaded, executor=executor, data=data, batch_size=args.batch_size, seed=args.seed)
    plan = {name: study for name, study in studies(args, n).items() if name in chosen}
    x0 = torch.zeros(min(args.batch_size, args.images), 3, 32, 32)
    print(f"{args.model}: {executor.n_units} units, {args.images} synthetic images, batch {args.batch_size} "
          f"(gradients {args.grad_batch_size}), {args.precision}, stack width {executor.stack_width(x0)}, "
          f"channels_last {executor.channels_last}, compile {executor.compile_backend or 'off'}, {describe(device)}")

    warm_args = argparse.Namespace(**{
        **vars(args), "random_k": "1:2", "random_k_samples": 2, "swaps": "1:2", "swap_samples": 2, "grad_samples": 2,
    })
    warm_ctx = dataclasses.replace(ctx, data=synthetic_cifar(min(args.batch_size, args.images), seed=args.seed + 1))
    warm_plan = {name: study for name, study in studies(warm_args, n).items() if name in chosen}
    warm = measure(lambda: [run(warm_ctx) for _, run in warm_plan.values()], device)
    print(f"  warm-up on {len(warm_ctx.data)} images, not counted: {warm.seconds:.2f} s")

    total = 0.0
    rows: list[dict[str, Any]] = []
    print(f"  {'study':10s} {'seconds':>9s} {'peak MiB':>9s}  what")
    for name, (what, run) in plan.items():
        m = measure(lambda run=run: run(ctx), device)
        total += m.seconds
        rows.append({"study": name, "seconds": m.seconds, "peak": m.peak})
        print(f"  {name:10s} {m.seconds:9.2f} {m.peak / MiB:9.1f}  {what}", flush=True)
    print(f"  {'total':10s} {total:9.2f} {max(r['peak'] for r in rows) / MiB:9.1f}")
    if device.type == "cuda":
        verdict = "meets" if total < TARGET_S else "misses"
        print(f"  {verdict} the issue-6 target of {TARGET_S:.0f} s (ResNet-110, 10,000 images, one H100)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
