"""Path samples per second: batched per-sample routing against one backward pass per path.

Three ways to get path samples (Veit et al. Sec. 4.2), one run, same model and images:

- batched: one forward/backward of B images, every image on its own random path (the
  executor's detach routing) -> B path samples per pass;
- naive, one image: one forward/backward of a single image per path sample;
- naive, one route per batch: Veit's procedure, B images all on the same path, one path
  sample per forward/backward.

Peak memory per call as in ``common`` (CUDA max_memory_allocated, or sampled RSS growth).

Run: python benchmarks/path_gradients.py --model resnet56 --batch-size 128
"""

from __future__ import annotations

import argparse
import sys

import numpy as np
import torch
from common import MiB, measure

from resnet_probe.analyses.gradients import draw_routes, routable_units
from resnet_probe.executor import Executor
from resnet_probe.models.load import load_model


def main(argv: list[str] | None = None) -> int:
    """Measure and print the three rates and the speed-ups of batched routing."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="resnet56")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--rounds", type=int, default=5, help="interleaved timing rounds")
    parser.add_argument("--images-per-round", type=int, default=16, help="naive one-image calls per round")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch default)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    loaded = load_model(args.model, weights="random")
    executor = Executor(loaded.topology, args.device)
    units = routable_units(executor.topology)
    n, b = executor.n_units, args.batch_size
    rng = np.random.default_rng(0)
    x = torch.randn(b, 3, 32, 32, device=executor.device)
    y = torch.randint(0, 10, (b,), device=executor.device)

    def batched() -> None:
        routes = draw_routes(rng.integers(0, n + 1, b), units, n, rng)
        executor.routed_input_grad_norms(x, y, routes)

    def one_image() -> None:
        routes = draw_routes(rng.integers(0, n + 1, 1), units, n, rng)
        executor.routed_input_grad_norms(x[:1], y[:1], routes)

    def one_route_per_batch() -> None:
        route = draw_routes(rng.integers(0, n + 1, 1), units, n, rng)
        executor.routed_input_grad_norms(x, y, route.expand(b, n))

    methods = {  # name: (call, path samples per call, calls per round)
        "batched routing": (batched, b, 1),
        "naive, one image per backward": (one_image, 1, args.images_per_round),
        "naive, one route per batch (Veit)": (one_route_per_batch, 1, 1),
    }
    for fn, _, _ in methods.values():  # warm-up
        fn()
    # Interleaved rounds, best round per method: other work on a shared machine only ever
    # slows a call down, so the minimum is the least disturbed measurement.
    times: dict[str, list[float]] = {name: [] for name in methods}
    peaks: dict[str, int] = {name: 0 for name in methods}
    for _ in range(args.rounds):
        for name, (fn, _, calls) in methods.items():
            runs = [measure(fn, executor.device) for _ in range(calls)]
            times[name].append(sum(m.seconds for m in runs) / calls)
            peaks[name] = max(peaks[name], *(m.peak for m in runs))
    rates = {name: methods[name][1] / min(ts) for name, ts in times.items()}
    medians = {name: methods[name][1] / float(np.median(ts)) for name, ts in times.items()}
    print(f"{args.model}: {n} units, batch {b}, device {executor.device}, "
          f"{torch.get_num_threads()} CPU threads, torch {torch.__version__}")
    print(f"  {'path samples/s':>50s} {'best round':>11s} {'median':>9s} {'s/call':>8s} {'peak MiB':>9s}")
    for name in methods:
        print(f"  {name:50s} {rates[name]:11.1f} {medians[name]:9.1f} {min(times[name]):8.3f} "
              f"{peaks[name] / MiB:9.1f}")
    for name in list(methods)[1:]:
        print(f"  speed-up of batched routing over {name:34s} {rates['batched routing'] / rates[name]:7.1f}x "
              f"(median {medians['batched routing'] / medians[name]:.1f}x)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
