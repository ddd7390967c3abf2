"""Time a full single-delete sweep: one full forward per configuration vs the prefix-reusing executor.

    python benchmarks/lesion_sweep.py --model resnet56 --batch 256 --batches 4 --device auto

Synthetic CIFAR-shaped batches, random weights. Each run of each mode is a fresh process so
that its peak memory is its own (measured as in ``common``: CUDA ``max_memory_allocated`` on
a GPU, sampled RSS growth on the CPU). The logits of every configuration must agree between
the modes; the script exits non-zero when they do not. ``--also-stack W`` adds a third mode,
the shared run with configurations stacked W at a time.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import sys
from typing import Any

import torch
from common import (
    MiB,
    add_device_args,
    batches_of,
    counted_flops,
    describe,
    executor_options,
    measure,
    setup,
    sync,
)

from resnet_probe.executor import Executor, Plan
from resnet_probe.models.load import load_model


def run_mode(mode: str, args: argparse.Namespace) -> dict[str, Any]:
    """Run the sweep one way; returns seconds, peak memory in bytes and every plan's logits."""
    device = setup(args)
    loaded = load_model(f"zoo:{args.model}", weights="random")
    options = executor_options(args)
    if mode.startswith("stacked"):
        options["stack"] = args.also_stack
    ex = Executor(loaded.topology, device, **options)
    plans = [Plan()] + [Plan.delete(i) for i in range(ex.n_units) if loaded.topology.units[i].deletable]
    batches = batches_of(args.batches, args.batch, device)
    ex.forward(batches[0][:8])  # warm-up: kernel selection, allocator
    sync(device)

    def keep(z: torch.Tensor) -> torch.Tensor:
        return z.float().cpu()

    def sweep() -> list[list[torch.Tensor]]:
        if mode == "naive":
            return [[ex.run_plans(x, [p], keep)[0] for p in plans] for x in batches]
        return [ex.run_plans(x, plans, keep) for x in batches]

    m = measure(sweep, device)
    one = [batches[0][:1]]
    if mode == "naive":
        flops = counted_flops(lambda: [ex.run_plans(x, [p], keep) for x in one for p in plans])
    else:
        flops = counted_flops(lambda: [ex.run_plans(x, plans, keep) for x in one])
    return {
        "flops": flops * args.batch * args.batches,
        "seconds": m.seconds, "peak": m.peak, "plans": len(plans), "units": ex.n_units,
        "describe": describe(device), "device": str(device),
        # numpy, not tensors: a tensor crosses processes as a shared-memory handle that dies
        # with the child.
        "logits": [torch.stack(o).numpy() for o in m.value],
    }


def _child(mode: str, args: argparse.Namespace, queue: Any) -> None:
    queue.put(run_mode(mode, args))


def main(argv: list[str] | None = None) -> int:
    """Every mode, each in a fresh process; print times, ratio, peak memory and agreement."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="resnet56", help="zoo model (default resnet56)")
    parser.add_argument("--batch", type=int, default=256, help="images per batch")
    parser.add_argument("--batches", type=int, default=4, help="number of batches")
    parser.add_argument("--rounds", type=int, default=1, help="interleaved timed runs per mode; the best counts")
    parser.add_argument("--also-stack", type=int, default=0, help="add a stacked mode of this width")
    add_device_args(parser)
    args = parser.parse_args(argv)
    modes = ["naive", "prefix"] + ([f"stacked x{args.also_stack}"] if args.also_stack > 1 else [])
    ctx = mp.get_context("spawn")
    runs: dict[str, dict[str, Any]] = {}
    # Interleaved rounds, best round per mode: other work on a shared machine only ever slows
    # a run down, and it comes and goes.
    for _ in range(args.rounds):
        for mode in modes:
            queue = ctx.Queue()
            proc = ctx.Process(target=_child, args=(mode, args, queue))
            proc.start()
            run = queue.get()
            proc.join()
            best = runs.setdefault(mode, run)
            best["peak"] = max(best["peak"], run["peak"])
            best["seconds"] = min(best["seconds"], run["seconds"])
    naive = runs["naive"]
    pairs = [(a, b) for mode in modes[1:] for a, b in zip(naive["logits"], runs[mode]["logits"], strict=True)]
    diff = max(float(abs(a - b).max()) for a, b in pairs)
    identical = all((a == b).all() for a, b in pairs)
    what = "CUDA max_memory_allocated" if naive["device"].startswith("cuda") else "peak RSS growth"
    print(f"{args.model}: {naive['units']} units, {naive['plans']} configurations (baseline + single deletions), "
          f"{args.batch * args.batches} images in {args.batches} batches of {args.batch}, {args.precision}, "
          f"{naive['describe']}")
    labels = {"naive": "naive  (one full forward per configuration)", "prefix": "prefix (executor, shared prefixes)"}
    for mode in modes:
        label = labels.get(mode, f"prefix, {mode}")
        rate = runs[mode]["flops"] / runs[mode]["seconds"] / 1e9
        print(f"{label:45s}: {runs[mode]['seconds']:8.2f} s   {what} {runs[mode]['peak'] / MiB:8.1f} MiB   "
              f"{rate:7.1f} GFLOP/s")
    n = naive["units"]
    # Residual branches run: naive n (baseline) + n (n - 1); shared: n + (n - 1) + ... + 0.
    ideal = (n * n) / (n + n * (n - 1) / 2)
    for mode in modes[1:]:
        print(f"speed-up of {mode} {naive['seconds'] / runs[mode]['seconds']:.2f}x "
              f"(residual branches run: {ideal:.2f}x fewer)")
    print(f"logits {'identical' if identical else 'differ'}: max |naive - other| = {diff:.3g}")
    return 0 if diff <= 1e-4 else 1


if __name__ == "__main__":
    sys.exit(main())
