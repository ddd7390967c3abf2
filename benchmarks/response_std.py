"""Layer-response std: the streaming float64 pass against collecting every activation.

Two ways to get He et al.'s Fig. 7 numbers, one run, same model and images:

- streaming: per batch and layer, per-channel (count, mean, M2) merged into running float64
  totals (Chan et al.); memory O(channels) per layer;
- naive: keep every response of every batch, then per layer ``torch.cat``, ``.double()`` and
  ``std``; memory O(images x activations);
- forward only: the same passes without any capture, the floor both pay.

Peak memory as in ``common``: the process's resident set (sampled every millisecond from
/proc on CPU) or ``torch.cuda.max_memory_allocated`` on a GPU, above what was in use before.

Run: python benchmarks/response_std.py --model resnet56 --limit 846
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch
from common import measure
from torch import Tensor

from resnet_probe.analyses.response_std import response_std
from resnet_probe.data import DataSource, load_data
from resnet_probe.executor import Executor
from resnet_probe.models.load import load_model

FIXTURE = Path(__file__).resolve().parents[2] / "shared" / "fixtures" / "cifar10_test_first846.npz"
Stds = dict[str, tuple[float, list[float]]]


def streaming(executor: Executor, data: DataSource, batch_size: int) -> Stds:
    """The library's one-pass reduction."""
    layers, _ = response_std(executor, data, batch_size=batch_size)
    return {name: (m.std(), m.channel_std()) for _, name, m in layers}


def naive(executor: Executor, data: DataSource, batch_size: int) -> Stds:
    """Store everything, concatenate, reduce."""
    kept: dict[str, list[Tensor]] = {}

    def sink(name: str, out: Tensor) -> None:
        kept.setdefault(name, []).append(out.clone())

    for x, _ in data.batches(batch_size, device=executor.device):
        executor.capture(x, sink)
    result = {}
    for name, chunks in kept.items():
        a = torch.cat(chunks).double()
        per_channel = a.transpose(0, 1).reshape(a.shape[1], -1).std(dim=1, unbiased=False)
        result[name] = (float(a.std(unbiased=False)), per_channel.tolist())
    return result


def forward_only(executor: Executor, data: DataSource, batch_size: int) -> Stds:
    """The same forward passes with no capture: the floor both ways pay."""
    for x, _ in data.batches(batch_size, device=executor.device):
        executor.forward(x)
    return {}


def main(argv: list[str] | None = None) -> int:
    """Time both ways in interleaved rounds and print time, ratio, peak memory and agreement."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="resnet56")
    parser.add_argument(
        "--data",
        default=str(FIXTURE) if FIXTURE.is_file() else None,
        help="an .npz of images (default: the CIFAR-10 fixture, else digits)",
    )
    parser.add_argument("--limit", type=int, default=None)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--rounds", type=int, default=3, help="interleaved timing rounds")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch default)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    data = load_data("cifar10" if args.data else None, args.data, limit=args.limit)
    loaded = load_model(args.model, weights="random", num_classes=data.num_classes)
    executor = Executor(loaded.topology, args.device)
    runners = {
        "streaming (Chan, float64)": streaming,
        "naive (store, cat, std)": naive,
        "forward only (reference)": forward_only,
    }
    methods = {name: (lambda run=run: run(executor, data, args.batch_size)) for name, run in runners.items()}
    warm = load_data("cifar10" if args.data else None, args.data, limit=args.batch_size)
    for run in runners.values():  # warm-up on one batch
        run(executor, warm, args.batch_size)
    times: dict[str, list[float]] = {name: [] for name in methods}
    peaks: dict[str, list[int]] = {name: [] for name in methods}
    outs: dict[str, Stds] = {}
    # Interleaved rounds, best round per method: other work on a shared machine only ever
    # slows a call down, so the minimum is the least disturbed measurement.
    for _ in range(args.rounds):
        for name, fn in methods.items():
            m = measure(fn, executor.device)
            outs[name] = m.value
            times[name].append(m.seconds)
            peaks[name].append(m.peak)
    (s_name, s_out), (n_name, n_out), _ = outs.items()
    rel = max(
        max(
            abs(s_out[k][0] - n_out[k][0]) / n_out[k][0],
            float(np.max(np.abs(np.subtract(s_out[k][1], n_out[k][1])) / np.array(n_out[k][1]))),
        )
        for k in s_out
    )
    print(
        f"{args.model}: {len(s_out)} response layers, {len(data)} images ({data.name}), batch {args.batch_size}, "
        f"device {executor.device}, {torch.get_num_threads()} CPU threads, torch {torch.__version__}"
    )
    print(f"  {'':28s} {'best s':>8s} {'median s':>9s} {'peak MiB':>9s}")
    for name in methods:
        print(
            f"  {name:28s} {min(times[name]):8.2f} {float(np.median(times[name])):9.2f} {max(peaks[name]) / 2**20:9.1f}"
        )
    print(
        f"  naive / streaming: time {min(times[n_name]) / min(times[s_name]):.2f}x, "
        f"peak memory {max(peaks[n_name]) / max(max(peaks[s_name]), 1):.1f}x"
    )
    floor = min(times["forward only (reference)"])
    print(
        f"  reduction overhead over the bare forward passes: streaming {min(times[s_name]) / floor - 1:+.0%}, "
        f"naive {min(times[n_name]) / floor - 1:+.0%}"
    )
    print(f"  largest relative difference between the two (overall and per-channel std): {rel:.2e}")
    return 0 if rel < 1e-9 else 1


if __name__ == "__main__":
    sys.exit(main())
