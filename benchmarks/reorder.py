"""Reordering (Veit et al. Fig. 5b): one full forward per reordered network vs shared prefixes.

    python benchmarks/reorder.py --model resnet56 --swaps 1:20 --samples 10 --batch 128 --device auto

``samples`` orders per swap count, drawn as the reorder study draws them; synthetic
CIFAR-shaped batches, random weights. Prints naive time, ours, the ratio, peak memory and the
residual-branch count that bounds the ratio; exits non-zero when the two disagree.
``--also-stack W`` adds a row for stacked configurations (width W).
"""

from __future__ import annotations

import argparse
import sys

from common import add_device_args, batches_of, compare_plans, describe, executor_options, setup

from resnet_probe.analyses.lesion import check_samples, parse_range
from resnet_probe.analyses.reorder import MAX_SWAPS, random_orders
from resnet_probe.executor import Executor, Plan
from resnet_probe.load import load_model


def main(argv: list[str] | None = None) -> int:
    """Draw the orders, time both ways, print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="resnet56", help="zoo model (default resnet56)")
    parser.add_argument("--swaps", default="1:20", help="swap counts A:B (default 1:20)")
    parser.add_argument("--samples", type=int, default=10, help="orders per swap count (default 10)")
    parser.add_argument("--batch", type=int, default=128, help="images per batch")
    parser.add_argument("--batches", type=int, default=1, help="number of batches")
    parser.add_argument("--rounds", type=int, default=2, help="interleaved timing rounds")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--also-stack", type=int, default=0, help="add a stacked row of this width")
    add_device_args(parser)
    args = parser.parse_args(argv)
    device = setup(args)
    loaded = load_model(f"zoo:{args.model}", weights="random")
    executor = Executor(loaded.topology, device, **executor_options(args))
    drawn = random_orders(
        loaded.topology, parse_range(args.swaps, "--swaps", 1, MAX_SWAPS), check_samples(args.samples), args.seed
    )
    plans = [Plan(order=order) for _, order in drawn]
    batches = batches_of(args.batches, args.batch, device)
    print(f"{args.model}: {executor.n_units} units, {len(plans)} reordered networks (swaps {args.swaps} x "
          f"{args.samples}), {args.batch * args.batches} images in {args.batches} batches of {args.batch}, "
          f"stack width {executor.stack_width(batches[0])}, {args.precision}, {describe(device)}")
    return compare_plans(executor, batches, plans, args.rounds, args.also_stack)


if __name__ == "__main__":
    sys.exit(main())
