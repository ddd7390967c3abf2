"""Shared helpers of the benchmark scripts: threads, timing, peak memory, synthetic data, tables.

Peak memory is measured the same way everywhere: on a GPU ``torch.cuda.max_memory_allocated``
above what was allocated before the call; on the CPU the process's resident set, sampled
every millisecond from /proc, above its level before the call. Timings interleave the
methods in rounds and report the best round: other work on a shared machine only ever slows
a call down, so the minimum is the least disturbed measurement (the median is printed too).
"""

from __future__ import annotations

import argparse
import os
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Generic, Sequence, TypeVar

import torch

from resnet_probe.data.preprocessing import Preprocessing
from resnet_probe.data.source import TensorSource
from resnet_probe.executor import Executor, Plan, resolve_device
from resnet_probe.models.load import load_model
from resnet_probe.structure import Topology

T = TypeVar("T")
MiB = 2**20
CIFAR_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR_STD = (0.2470, 0.2435, 0.2616)


def add_device_args(parser: argparse.ArgumentParser, device: str = "auto") -> None:
    """``--device``, ``--threads``, ``--precision``, ``--stack``, ``--channels-last``, ``--compile``."""
    parser.add_argument("--device", default=device, help=f"auto | cpu | cuda | cuda:N (default {device})")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    parser.add_argument("--precision", default="fp32", help="fp32 | bf16 | fp16 (autocast)")
    parser.add_argument(
        "--stack", type=int, default=None,
        help="configurations per stacked call (1: off; default: auto, on for CUDA only)",
    )
    parser.add_argument(
        "--channels-last", choices=("auto", "on", "off"), default="auto",
        help="NHWC model copy (auto: CUDA only)",
    )
    parser.add_argument("--compile", default="", help="torch.compile backend for the residual branches (e.g. inductor)")


def setup(args: argparse.Namespace) -> torch.device:
    """Apply ``--threads``, seed torch, and resolve ``--device``."""
    if getattr(args, "threads", 0):
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    return resolve_device(args.device)


def executor_options(args: argparse.Namespace) -> dict[str, Any]:
    """The Executor keyword arguments the device options ask for."""
    channels_last = {"auto": None, "on": True, "off": False}[getattr(args, "channels_last", "auto")]
    return {
        "precision": getattr(args, "precision", "fp32"),
        "stack": getattr(args, "stack", None),
        "channels_last": channels_last,
        "compile": getattr(args, "compile", "") or False,
    }


def describe(device: torch.device) -> str:
    """Device, threads and torch version, for the first line of every report."""
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else f"{torch.get_num_threads()} CPU threads"
    return f"device {device} ({where}), torch {torch.__version__}"


def sync(device: torch.device) -> None:
    """Wait for queued GPU work, so that a timer stops after it."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def rss_bytes() -> int:
    """The resident set of this process."""
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


@dataclass
class Measurement(Generic[T]):
    """Wall seconds and peak bytes above the starting level of one call, and what it returned."""

    seconds: float
    peak: int
    value: T


def measure(fn: Callable[[], T], device: torch.device) -> Measurement[T]:
    """Time one call of ``fn`` and take its peak memory (see the module docstring)."""
    if device.type == "cuda":
        sync(device)
        torch.cuda.reset_peak_memory_stats(device)
        base = torch.cuda.memory_allocated(device)
        start = time.perf_counter()
        value = fn()
        sync(device)
        return Measurement(time.perf_counter() - start, torch.cuda.max_memory_allocated(device) - base, value)
    base, peak, done = rss_bytes(), [0], threading.Event()

    def sample() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], rss_bytes())
            time.sleep(0.001)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    start = time.perf_counter()
    try:
        value = fn()
    finally:
        seconds = time.perf_counter() - start
        done.set()
        sampler.join()
    return Measurement(seconds, max(peak[0], rss_bytes()) - base, value)


@dataclass
class Timing(Generic[T]):
    """Every round of one method: seconds, peak bytes, and the value of its last call."""

    seconds: list[float] = field(default_factory=list)
    peaks: list[int] = field(default_factory=list)
    value: Any = None

    @property
    def best(self) -> float:
        """The fastest round."""
        return min(self.seconds)

    @property
    def median(self) -> float:
        """The median round."""
        s = sorted(self.seconds)
        return s[len(s) // 2] if len(s) % 2 else (s[len(s) // 2 - 1] + s[len(s) // 2]) / 2

    @property
    def peak(self) -> int:
        """The largest peak over the rounds."""
        return max(self.peaks)


def interleaved(methods: dict[str, Callable[[], Any]], device: torch.device, rounds: int) -> dict[str, Timing]:
    """Run every method once per round, in turn, after one untimed warm-up call each."""
    for fn in methods.values():
        fn()
    timings: dict[str, Timing] = {name: Timing() for name in methods}
    for _ in range(rounds):
        for name, fn in methods.items():
            m = measure(fn, device)
            timings[name].seconds.append(m.seconds)
            timings[name].peaks.append(m.peak)
            timings[name].value = m.value
    return timings


def counted_flops(fn: Callable[[], Any]) -> int:
    """FLOPs torch runs in one call of ``fn`` (``torch.utils.flop_counter``: convolutions and matmuls)."""
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        fn()
    return int(counter.get_total_flops())


def print_table(
    timings: dict[str, Timing], naive: str, ours: Sequence[str], unit: str = "s", flops: dict[str, float] | None = None
) -> None:
    """One row per method (best, median, peak MiB, GFLOP/s where ``flops`` gives each method's total), then
    each of ``ours`` as a ratio against ``naive``."""
    width = max(len(name) for name in timings)
    rate = f" {'GFLOP/s':>8s}" if flops else ""
    print(f"  {'':{width}s} {'best ' + unit:>10s} {'median ' + unit:>10s} {'peak MiB':>9s}{rate}")
    for name, t in timings.items():
        achieved = f" {flops[name] / t.best / 1e9:8.1f}" if flops else ""
        print(f"  {name:{width}s} {t.best:10.3f} {t.median:10.3f} {t.peak / MiB:9.1f}{achieved}")
    for name in ours:
        n, o = timings[naive], timings[name]
        print(f"  speed-up of {name} over {naive}: {n.best / o.best:.2f}x (median {n.median / o.median:.2f}x)")


def synthetic_cifar(n: int, seed: int = 0, num_classes: int = 10) -> TensorSource:
    """``n`` random CIFAR-shaped uint8 images with random labels: enough for timing."""
    gen = torch.Generator().manual_seed(seed)
    return TensorSource(
        name="synthetic",
        split="test",
        num_classes=num_classes,
        classes=tuple(str(i) for i in range(num_classes)),
        image_size=32,
        default_preprocessing=Preprocessing(mean=CIFAR_MEAN, std=CIFAR_STD),
        images=torch.randint(0, 256, (n, 3, 32, 32), dtype=torch.uint8, generator=gen),
        labels=torch.randint(0, num_classes, (n,), generator=gen),
    )


def batches_of(n_batches: int, batch: int, device: torch.device, seed: int = 1) -> list[torch.Tensor]:
    """Normalised-looking random CIFAR-shaped float batches already on ``device``."""
    gen = torch.Generator().manual_seed(seed)
    return [torch.randn(batch, 3, 32, 32, generator=gen).to(device) for _ in range(n_batches)]


def naive_and_ours(
    executor: Executor, batches: Sequence[torch.Tensor], plans: Sequence[Plan]
) -> dict[str, Callable[[], list[list[torch.Tensor]]]]:
    """The two ways to get every plan's logits: one run per plan, and one shared run of all."""

    def keep(z: torch.Tensor) -> torch.Tensor:
        return z.float()

    def naive() -> list[list[torch.Tensor]]:
        return [[executor.run_plans(x, [p], keep)[0] for p in plans] for x in batches]

    def ours() -> list[list[torch.Tensor]]:
        return [executor.run_plans(x, plans, keep) for x in batches]

    return {"naive": naive, "ours": ours}


def max_difference(a: list[list[torch.Tensor]], b: list[list[torch.Tensor]]) -> float:
    """Largest absolute difference between two runs' logits, plan by plan."""
    return max(
        float((x - y).abs().max()) for xs, ys in zip(a, b, strict=True) for x, y in zip(xs, ys, strict=True)
    )


def trie_work(plans: Sequence[Plan], n_units: int) -> tuple[int, int]:
    """Residual branches run one plan at a time and with shared prefixes (distinct prefixes).

    The ratio of the two is the speed-up prefix reuse can give at best, when residual
    branches are the whole cost.
    """
    naive = shared = 0
    seen: set[tuple[tuple[int, bool], ...]] = set()
    for plan in plans:
        steps = plan.steps(n_units)
        naive += sum(1 for _, deleted in steps if not deleted)
        for i in range(1, n_units + 1):
            prefix = steps[:i]
            if prefix not in seen:
                seen.add(prefix)
                shared += 0 if prefix[-1][1] else 1
    return naive, shared


def compare_plans(
    executor: Executor,
    batches: Sequence[torch.Tensor],
    plans: Sequence[Plan],
    rounds: int,
    also_stack: int = 0,
) -> int:
    """Time naive against shared (and stacked) runs of ``plans``; print the table; 1 if they disagree."""
    device = executor.device
    ways = naive_and_ours(executor, batches, plans)
    methods = {"naive (one forward per configuration)": ways["naive"], "ours (shared prefixes)": ways["ours"]}
    if also_stack > 1:
        stacked = Executor(
            executor.topology, device, executor.precision, stack=also_stack, channels_last=executor.channels_last
        )
        methods[f"ours, stacked x{also_stack}"] = naive_and_ours(stacked, batches, plans)["ours"]
    timings = interleaved(methods, device, rounds)
    names = list(methods)
    # FLOPs of each way, counted on one image and scaled: the work is linear in the batch.
    one = [batches[0][:1]]
    per_image = {"naive": counted_flops(naive_and_ours(executor, one, plans)["naive"]),
                 "ours": counted_flops(naive_and_ours(executor, one, plans)["ours"])}
    images = sum(len(b) for b in batches)
    flops = {name: images * per_image["naive" if name == names[0] else "ours"] for name in names}
    print_table(timings, names[0], names[1:], flops=flops)
    naive_units, shared_units = trie_work(plans, executor.n_units)
    print(f"  residual branches run: naive {naive_units}, shared {shared_units} "
          f"({naive_units / shared_units:.2f}x fewer: the bound when they are the whole cost)")
    diff = max(max_difference(timings[names[0]].value, timings[name].value) for name in names[1:])
    print(f"  logits agree: max |naive - ours| = {diff:.3g}")
    return 0 if diff <= 1e-4 else 1


def sampled_plans_parser(
    doc: str, range_flag: str, range_help: str, samples: int, samples_help: str
) -> argparse.ArgumentParser:
    """Arguments of a study of sampled configurations (random-k, reorder) timed against the naive way."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--model", default="resnet56", help="zoo model (default resnet56)")
    parser.add_argument(range_flag, default="1:20", help=f"{range_help} A:B (default 1:20)")
    parser.add_argument("--samples", type=int, default=samples, help=f"{samples_help} (default {samples})")
    parser.add_argument("--batch", type=int, default=128, help="images per batch")
    parser.add_argument("--batches", type=int, default=1, help="number of batches")
    parser.add_argument("--rounds", type=int, default=2, help="interleaved timing rounds")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--also-stack", type=int, default=0, help="add a stacked row of this width")
    add_device_args(parser)
    return parser


def run_sampled_plans(args: argparse.Namespace, what: str, draw: Callable[[Topology], list[Plan]]) -> int:
    """Draw the plans on a random-weight zoo model, print what runs, time naive against ours."""
    device = setup(args)
    loaded = load_model(f"zoo:{args.model}", weights="random")
    executor = Executor(loaded.topology, device, **executor_options(args))
    plans = draw(loaded.topology)
    batches = batches_of(args.batches, args.batch, device)
    print(f"{args.model}: {executor.n_units} units, {len(plans)} {what}, {args.batch * args.batches} images in "
          f"{args.batches} batches of {args.batch}, stack width {executor.stack_width(batches[0])}, "
          f"{args.precision}, {describe(device)}")
    return compare_plans(executor, batches, plans, args.rounds, args.also_stack)
