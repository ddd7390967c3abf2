"""Time a full single-delete sweep: one full forward per configuration vs the prefix-reusing executor.

    python benchmarks/lesion_sweep.py --model resnet56 --batch 256 --batches 4 --device auto

Synthetic CIFAR-shaped batches, random weights. Each mode runs in its own fresh process so
that its peak memory is its own: CUDA ``max_memory_allocated`` on a GPU, peak RSS growth
(``ru_maxrss`` minus the RSS before the sweep) on the CPU. The logits of every configuration
must agree between the two modes; the script exits non-zero when they do not.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import resource
import sys
import time
from typing import Any

import torch

from resnet_probe.executor import Executor, Plan, resolve_device
from resnet_probe.load import load_model

MODES = ("naive", "prefix")


def _rss_bytes() -> int:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * resource.getpagesize()


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure(mode: str, args: argparse.Namespace) -> dict[str, Any]:
    """Run the sweep one way; returns seconds, peak memory in bytes and every plan's logits."""
    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    torch.manual_seed(0)
    loaded = load_model(f"zoo:{args.model}", weights="random")
    loaded.model.to(device)
    ex = Executor(loaded.topology, device)
    n = ex.n_units
    plans = [Plan()] + [Plan.delete(i) for i in range(n) if loaded.topology.units[i].deletable]
    gen = torch.Generator().manual_seed(1)
    batches = [torch.randn(args.batch, 3, 32, 32, generator=gen).to(device) for _ in range(args.batches)]
    ex.forward(batches[0][:8])  # warm-up: kernel selection, allocator
    _sync(device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        before = torch.cuda.memory_allocated(device)
    else:
        before = _rss_bytes()

    def keep(z: torch.Tensor) -> torch.Tensor:
        return z.float().cpu()

    start = time.perf_counter()
    outputs: list[list[torch.Tensor]] = []
    for x in batches:
        if mode == "naive":
            outputs.append([ex.run_plans(x, [p], keep)[0] for p in plans])
        else:
            outputs.append(ex.run_plans(x, plans, keep))
    _sync(device)
    seconds = time.perf_counter() - start
    if device.type == "cuda":
        peak = torch.cuda.max_memory_allocated(device) - before
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - before
    return {
        "seconds": seconds, "peak": peak, "plans": len(plans), "units": n, "device": str(device),
        # numpy, not tensors: a tensor crosses processes as a shared-memory handle that dies
        # with the child.
        "threads": torch.get_num_threads(), "logits": [torch.stack(o).numpy() for o in outputs],
    }


def _child(mode: str, args: argparse.Namespace, queue: Any) -> None:
    queue.put(measure(mode, args))


def main(argv: list[str] | None = None) -> int:
    """Both modes, each in a fresh process; print times, ratio, peak memory and agreement."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="resnet56", help="zoo model (default resnet56)")
    parser.add_argument("--batch", type=int, default=256, help="images per batch")
    parser.add_argument("--batches", type=int, default=4, help="number of batches")
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    args = parser.parse_args(argv)
    ctx = mp.get_context("spawn")
    runs = {}
    for mode in MODES:
        queue = ctx.Queue()
        proc = ctx.Process(target=_child, args=(mode, args, queue))
        proc.start()
        runs[mode] = queue.get()
        proc.join()
    naive, prefix = runs["naive"], runs["prefix"]
    pairs = list(zip(naive["logits"], prefix["logits"], strict=True))
    diff = max(float(abs(a - b).max()) for a, b in pairs)
    identical = all((a == b).all() for a, b in pairs)
    images = args.batch * args.batches
    what = "CUDA max_memory_allocated" if naive["device"].startswith("cuda") else "peak RSS growth"
    print(f"{args.model}: {naive['units']} units, {naive['plans']} configurations (baseline + single deletions), "
          f"{images} images in {args.batches} batches of {args.batch}, device {naive['device']}, "
          f"{naive['threads']} CPU threads")
    print(f"naive  (one full forward per configuration): {naive['seconds']:8.2f} s   "
          f"{what} {naive['peak'] / 2**20:8.1f} MiB")
    print(f"prefix (executor, shared prefixes):          {prefix['seconds']:8.2f} s   "
          f"{what} {prefix['peak'] / 2**20:8.1f} MiB")
    n = naive["units"]
    # Residual branches run: naive n (baseline) + n (n - 1); shared: n + (n - 1) + ... + 0.
    ideal = (n * n) / (n + n * (n - 1) / 2)
    print(f"speed-up {naive['seconds'] / prefix['seconds']:.2f}x (residual branches run: {ideal:.2f}x fewer)")
    print(f"logits {'identical' if identical else 'differ'}: max |naive - prefix| = {diff:.3g}")
    return 0 if diff <= 1e-4 else 1


if __name__ == "__main__":
    sys.exit(main())
