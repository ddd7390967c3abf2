"""Reordering (Veit et al. Fig. 5b): one full forward per reordered network vs shared prefixes.

    python benchmarks/reorder.py --model resnet56 --swaps 1:20 --samples 10 --batch 128 --device auto

``samples`` orders per swap count, drawn as the reorder study draws them; synthetic
CIFAR-shaped batches, random weights. Prints naive time, ours, the ratio, peak memory and the
residual-branch count that bounds the ratio; exits non-zero when the two disagree.
``--also-stack W`` adds a row for stacked configurations (width W).
"""

from __future__ import annotations

import sys

from common import run_sampled_plans, sampled_plans_parser

from resnet_probe.analyses.lesion import check_samples, parse_range
from resnet_probe.analyses.reorder import MAX_SWAPS, random_orders
from resnet_probe.executor import Plan
from resnet_probe.structure import Topology


def main(argv: list[str] | None = None) -> int:
    """Draw the orders, time both ways, print the table."""
    parser = sampled_plans_parser(__doc__, "--swaps", "swap counts", 10, "orders per swap count")
    args = parser.parse_args(argv)

    def draw(topology: Topology) -> list[Plan]:
        swaps = parse_range(args.swaps, "--swaps", 1, MAX_SWAPS)
        drawn = random_orders(topology, swaps, check_samples(args.samples), args.seed)
        return [Plan(order=order) for _, order in drawn]

    return run_sampled_plans(args, f"reordered networks (swaps {args.swaps} x {args.samples})", draw)


if __name__ == "__main__":
    sys.exit(main())
