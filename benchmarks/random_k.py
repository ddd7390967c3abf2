"""Random-k lesion (Veit et al. Fig. 5a): one full forward per configuration vs shared prefixes.

    python benchmarks/random_k.py --model resnet56 --k 1:20 --samples 20 --batch 128 --device auto

``samples`` random sets of k deleted units for every k in the range, drawn as the lesion
study draws them; synthetic CIFAR-shaped batches, random weights. Prints naive time, ours,
the ratio, peak memory and the residual-branch count that bounds the ratio; exits non-zero
when the two disagree. ``--also-stack W`` adds a row for stacked configurations (width W).
"""

from __future__ import annotations

import sys

from common import run_sampled_plans, sampled_plans_parser

from resnet_probe.analyses.lesion import check_samples, deletable_units, parse_range, random_sets
from resnet_probe.executor import Plan
from resnet_probe.structure import Topology


def main(argv: list[str] | None = None) -> int:
    """Draw the configurations, time both ways, print the table."""
    parser = sampled_plans_parser(__doc__, "--k", "deleted-set sizes", 20, "random sets per k")
    args = parser.parse_args(argv)

    def draw(topology: Topology) -> list[Plan]:
        k_range = parse_range(args.k, "--k", 1, len(deletable_units(topology)))
        return [Plan.delete(*s) for _, s in random_sets(topology, k_range, check_samples(args.samples), args.seed)]

    return run_sampled_plans(args, f"random-k configurations (k {args.k} x {args.samples})", draw)


if __name__ == "__main__":
    sys.exit(main())
