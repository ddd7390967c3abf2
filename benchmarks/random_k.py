"""Random-k lesion (Veit et al. Fig. 5a): one full forward per configuration vs shared prefixes.

    python benchmarks/random_k.py --model resnet56 --k 1:20 --samples 20 --batch 128 --device auto

``samples`` random sets of k deleted units for every k in the range, drawn as the lesion
study draws them; synthetic CIFAR-shaped batches, random weights. Prints naive time, ours,
the ratio, peak memory and the residual-branch count that bounds the ratio; exits non-zero
when the two disagree. ``--also-stack W`` adds a row for stacked configurations (width W).
"""

from __future__ import annotations

import argparse
import sys

from common import add_device_args, batches_of, compare_plans, describe, executor_options, setup

from resnet_probe.analyses.lesion import check_samples, deletable_units, parse_range, random_sets
from resnet_probe.executor import Executor, Plan
from resnet_probe.load import load_model


def main(argv: list[str] | None = None) -> int:
    """Draw the configurations, time both ways, print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="resnet56", help="zoo model (default resnet56)")
    parser.add_argument("--k", default="1:20", help="deleted-set sizes A:B (default 1:20)")
    parser.add_argument("--samples", type=int, default=20, help="random sets per k (default 20)")
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
    k_range = parse_range(args.k, "--k", 1, len(deletable_units(loaded.topology)))
    drawn = random_sets(loaded.topology, k_range, check_samples(args.samples), args.seed)
    plans = [Plan.delete(*s) for _, s in drawn]
    batches = batches_of(args.batches, args.batch, device)
    print(f"{args.model}: {executor.n_units} units, {len(plans)} random-k configurations (k {args.k} x "
          f"{args.samples}), {args.batch * args.batches} images in {args.batches} batches of {args.batch}, "
          f"stack width {executor.stack_width(batches[0])}, {args.precision}, {describe(device)}")
    return compare_plans(executor, batches, plans, args.rounds, args.also_stack)


if __name__ == "__main__":
    sys.exit(main())
