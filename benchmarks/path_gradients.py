"""Path samples per second: batched per-sample routing against one backward pass per path.

Three ways to get path samples (Veit et al. Sec. 4.2), one run, same model and images:

- batched: one forward/backward of B images, every image on its own random path (the
  executor's detach routing) -> B path samples per pass;
- naive, one image: one forward/backward of a single image per path sample;
- naive, one route per batch: Veit's procedure, B images all on the same path, one path
  sample per forward/backward.

Run: python benchmarks/path_gradients.py --model resnet56 --batch-size 128
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from resnet_probe.analyses.path_gradients import draw_routes, routable_units
from resnet_probe.executor import Executor
from resnet_probe.load import load_model


def _rate(fn, samples_per_call: int, calls: int, device: torch.device) -> float:
    """Path samples per second of ``calls`` calls of ``fn`` after one warm-up call."""
    fn()
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(calls):
        fn()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return samples_per_call * calls / (time.perf_counter() - start)


def main() -> None:
    """Measure and print the three rates and the speed-ups of batched routing."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="resnet56")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--batches", type=int, default=5, help="timed batched passes")
    parser.add_argument("--naive-calls", type=int, default=40, help="timed naive passes of each kind")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch default)")
    args = parser.parse_args()
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

    rates = {
        "batched routing": _rate(batched, b, args.batches, executor.device),
        "naive, one image per backward": _rate(one_image, 1, args.naive_calls, executor.device),
        "naive, one route per batch (Veit)": _rate(
            one_route_per_batch, 1, max(args.naive_calls // 8, 3), executor.device
        ),
    }
    print(f"{args.model}: {n} units, batch {b}, device {executor.device}, "
          f"{torch.get_num_threads()} CPU threads, torch {torch.__version__}")
    for name, rate in rates.items():
        print(f"  {name:36s} {rate:10.1f} path samples/s")
    fast = rates["batched routing"]
    for name in list(rates)[1:]:
        print(f"  speed-up over {name:22s} {fast / rates[name]:8.1f}x")


if __name__ == "__main__":
    main()
