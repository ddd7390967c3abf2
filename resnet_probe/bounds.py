"""The bounds of every number a run takes, in one place: the CLI states them in --help and checks them first.

Torch-free on purpose, like :mod:`resnet_probe.settings`: the CLI builds its options from here.
"""

from __future__ import annotations

from resnet_probe.errors import PlanError

#: largest --seed: numpy's legacy seeding takes < 2**32, torch < 2**64, so seed + small offsets fit both
MAX_SEED = 2**32 - 1
#: largest sample count per k (lesion --random-k, reorder) or per path length (gradients), as reorder's --swaps
MAX_SAMPLES = 10_000
#: largest --batch-size
MAX_BATCH_SIZE = 65_536
#: largest --workers (decoding processes)
MAX_WORKERS = 64
#: largest training --epochs and --iters
MAX_EPOCHS = 100_000
MAX_ITERS = 100_000_000
#: training --lr range
MIN_LR, MAX_LR = 1e-6, 10.0
#: most classes a data file may label (ImageNet-21k has 21,841)
MAX_CLASSES = 100_000


def describe(low: float | None, high: float | None) -> str:
    """A range as the error lines and README state it: ``0 <= x <= 4294967295``."""
    if low is None:
        return f"x <= {high}"
    if high is None:
        return f"x >= {low}"
    return f"{low} <= x <= {high}"


def check_samples(samples: object, option: str = "samples") -> int:
    """A sample count in 1..MAX_SAMPLES, for the API as the CLI's --help states it."""
    if isinstance(samples, bool) or not isinstance(samples, int) or not 1 <= samples <= MAX_SAMPLES:
        raise PlanError(f"{option} {samples!r}: must be a whole number with {describe(1, MAX_SAMPLES)}")
    return samples
