"""Whole processes, side by side: a single-delete sweep as a plain PyTorch loop and as `resnet-probe lesion`.

    python benchmarks/cli_vs_loop.py --model resnet56 --rounds 1

The case of the issue: akamaster's trained ResNet-56 (shipped) on the 846 shipped CIFAR-10 test
images. Each method runs as its own process and is timed from outside (imports, loading,
rendering: what a user waits for); inside, each also reports its run alone (the loop's sweep;
resnet-probe's ``wall_time_s``: opening the data and the model, and the sweep). For every
method the table gives the total, the compute, the ratio against the plain loop, the FLOPs it
executed (``torch.utils.flop_counter`` on one image of the same work) and the GFLOP/s that
makes, against the peak this machine reaches in a large matmul of that precision (measured
here, not a datasheet number).

The bound: prefix sharing saves the loop's FLOPs over the shared sweep's, and the layout the
runner times and keeps (resnet_probe.layout_probe: NCHW/NHWC x BatchNorm folded or not) runs
each forward faster than the loop's plain NCHW model; the product of the two is the most the
sweep can gain over the loop in compute. The script prints each layout's forward time (batch
256), the bound, the fraction of it the whole process reaches, and the fixed cost (the whole
process minus its compute) against ``python -c "import torch"``. Exits non-zero when a
configuration's correct count differs from the loop's by more than one image (fp32) or an
accuracy by more than one point (bf16).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

HERE = Path(__file__).resolve().parent


def whole(cmd: list[str]) -> float:
    """Seconds one process takes from start to exit."""
    started = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - started


def sweep_flops(model: str) -> tuple[float, float, float]:
    """FLOPs per image of the plain loop (every configuration a full forward), of the shared sweep, of one forward."""
    from resnet_probe.executor import Executor, Plan
    from resnet_probe.models.load import load_model

    loaded = load_model(f"zoo:{model}", dataset="cifar10-sample")
    ex = Executor(loaded.topology, "cpu")
    plans = [Plan()] + [Plan.delete(i) for i in range(ex.n_units)]
    x = torch.randn(1, 3, 32, 32)
    with FlopCounterMode(display=False) as full:
        ex.forward(x)
    with FlopCounterMode(display=False) as shared:
        ex.run_plans(x, plans, lambda z: z)
    # The loop deletes a branch by skipping it: its passes cost a full forward less one branch.
    branch = []
    for i in range(ex.n_units):
        with FlopCounterMode(display=False) as one:
            ex.forward(x, Plan.delete(i))
        branch.append(one.get_total_flops())
    return float(full.get_total_flops() + sum(branch)), float(shared.get_total_flops()), float(full.get_total_flops())


def layout_seconds(model: str, batch: int = 256, repeats: int = 3) -> dict[str, float]:
    """One forward of ``batch`` images in every candidate layout, best of interleaved repeats."""
    from resnet_probe.adapters import build_topology
    from resnet_probe.executor import Executor
    from resnet_probe.layout_probe import CANDIDATES, layout_name, private_model
    from resnet_probe.models.load import load_model

    loaded = load_model(f"zoo:{model}", dataset="cifar10-sample")
    x = torch.randn(batch, 3, 32, 32)
    executors = {
        layout_name(c, f): Executor(build_topology(private_model(loaded, torch.device("cpu"), c, f)), "cpu",
                                    channels_last=c)
        for c, f in CANDIDATES
    }
    best = {name: float("inf") for name in executors}
    with torch.no_grad():
        for ex in executors.values():
            ex.forward(x)
        for _ in range(repeats):
            for name, ex in executors.items():
                started = time.perf_counter()
                ex.forward(x)
                best[name] = min(best[name], time.perf_counter() - started)
    return best


def peak_gflops(dtype: torch.dtype, size: int = 2048, repeats: int = 5) -> float:
    """GFLOP/s of a large matmul: the most this machine's torch reaches in this precision."""
    a, b = torch.randn(size, size, dtype=dtype), torch.randn(size, size, dtype=dtype)
    a @ b
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - started)
    return 2 * size**3 / best / 1e9


def main(argv: list[str] | None = None) -> int:
    """Run the loop and the CLI (fp32, bf16) as processes; print the table; check the counts."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="resnet56", choices=("resnet20", "resnet56"),
                        help="a net with weights shipped (offline): akamaster's ResNet-20 or ResNet-56")
    parser.add_argument("--rounds", type=int, default=1, help="interleaved rounds; the best total counts")
    args = parser.parse_args(argv)
    tmp = Path(tempfile.mkdtemp(prefix="probe-bench-"))
    loop_json = tmp / "loop.json"
    methods = {
        "plain loop fp32": [sys.executable, str(HERE / "plain_lesion_loop.py"), "--model", args.model,
                            "--json", str(loop_json)],
        "resnet-probe fp32": [sys.executable, "-m", "resnet_probe.cli.app", "lesion", "--model", args.model,
                              "--dataset", "cifar10-sample", "--out", str(tmp / "fp32"), "--force"],
        "resnet-probe bf16": [sys.executable, "-m", "resnet_probe.cli.app", "lesion", "--model", args.model,
                              "--dataset", "cifar10-sample", "--precision", "bf16", "--out", str(tmp / "bf16"),
                              "--force"],
    }
    totals: dict[str, list[float]] = {name: [] for name in methods}
    inside: dict[str, list[float]] = {name: [] for name in methods}
    counts: dict[str, dict[str, int]] = {}
    for _ in range(args.rounds):
        for name, cmd in methods.items():
            totals[name].append(whole(cmd))
            if name.startswith("plain"):
                loop = json.loads(loop_json.read_text())
                inside[name].append(float(loop["seconds"]))
                counts[name] = loop["counts"]
                continue
            doc = json.loads((tmp / name.rsplit(" ", 1)[-1] / "results.json").read_text())
            # The run itself: data, model, sweep (no imports, no report).
            inside[name].append(float(doc["wall_time_s"]))
            res = doc["result"]
            counts[name] = {"baseline": res["baseline"]["correct"]} | {
                str(c["deleted"][0]): c["correct"] for c in res["configs"]
            }
    base_counts = counts["plain loop fp32"]
    # Each method's fastest round, whole and inside alike: other work only ever slows a round down.
    compute = {name: min(values) for name, values in inside.items()}
    loop_flops, shared_flops, forward_flops = sweep_flops(args.model)
    images = 846
    peaks = {"fp32": peak_gflops(torch.float32), "bf16": peak_gflops(torch.bfloat16)}
    print(f"{args.model}, 846 CIFAR-10 images, single-delete sweep ({len(base_counts)} configurations); "
          f"{torch.get_num_threads()} threads; matmul peak fp32 {peaks['fp32']:.0f}, bf16 {peaks['bf16']:.0f} GFLOP/s")
    layouts = layout_seconds(args.model)
    chosen = json.loads((tmp / "fp32" / "results.json").read_text())["extra"].get("layout", {})
    print("one forward of 256 images: " + ", ".join(f"{k} {v:.3f} s" for k, v in layouts.items())
          + f"; the run kept {chosen.get('layout')} ({chosen.get('from')})")
    sharing = loop_flops / shared_flops
    # The layout's gain against the rate the loop itself reached (its model as a user holds it, NCHW).
    kept = layouts.get(str(chosen.get("layout")), layouts["NCHW"])
    loop_rate = loop_flops * images / min(inside["plain loop fp32"])
    speedup = forward_flops * 256 / kept / loop_rate
    bound = sharing * speedup
    kept_rate = forward_flops * 256 / kept
    print(f"bound: prefix sharing {sharing:.2f}x fewer FLOPs x the kept layout's {kept_rate / 1e9:.0f} GFLOP/s "
          f"over the loop's {loop_rate / 1e9:.0f} ({speedup:.2f}x) = {bound:.2f}x the plain loop's compute")
    print(f"{'method':<20} {'total s':>8} {'compute s':>10} {'ratio':>6} {'GFLOP':>7} {'GFLOP/s':>8} {'of peak':>8}")
    loop_total = min(totals["plain loop fp32"])
    failed = False
    for name in methods:
        flops = (loop_flops if name.startswith("plain") else shared_flops) * images / 1e9
        rate = flops / compute[name]
        peak = peaks["bf16" if "bf16" in name else "fp32"]
        total = min(totals[name])
        print(f"{name:<20} {total:>8.2f} {compute[name]:>10.2f} {loop_total / total:>5.2f}x {flops:>7.0f} "
              f"{rate:>8.1f} {100 * rate / peak:>7.1f}%")
        diffs = [abs(counts[name][k] - base_counts[k]) for k in base_counts]
        limit = 1 if "fp32" in name else 0.01 * images
        print(f"{'':<20} counts vs the loop: max difference {max(diffs)} images "
              f"(allowed {limit:g}); overhead {total - compute[name]:.2f} s")
        failed |= max(diffs) > limit
    torch_import = min(whole([sys.executable, "-c", "import torch"]) for _ in range(3))
    total = min(totals["resnet-probe fp32"])
    achieved = loop_total / total
    print(f"resnet-probe fp32 whole process: {achieved:.2f}x the loop = {100 * achieved / bound:.0f} % of the bound; "
          f"fixed cost {total - compute['resnet-probe fp32']:.2f} s = "
          f"{(total - compute['resnet-probe fp32']) / torch_import:.1f}x `python -c \"import torch\"` "
          f"({torch_import:.2f} s)")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
