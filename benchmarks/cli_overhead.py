"""Where a short CLI run's time goes outside the computation.

    python benchmarks/cli_overhead.py --rounds 3

Runs ``resnet-probe lesion --model resnet20 --dataset cifar10-sample --limit 64 --delete 3``
(the shipped weights and images: almost no compute) as its own process under cProfile, times
the whole process from outside, and splits it into phases by the cumulative time of the
functions that own them. Best round of ``--rounds`` per phase (other work on a shared machine
only slows a phase down). What is left after the phases is interpreter start-up, the
command-line parsing and the exit.
"""

from __future__ import annotations

import argparse
import pstats
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# (phase, file suffix, function name): cumulative time of that function. Imports are counted
# where they happen (cProfile gives the outermost import its whole cumulative time), so a
# phase that imports lazily (the model loader's adapters) includes those imports too.
PHASES = [
    ("every import", "<frozen importlib._bootstrap>", "_find_and_load"),
    ("  of which: torch", "torch/__init__.py", "<module>"),
    ("open the data", "resnet_probe/runner.py", "open_data"),
    ("load the model (weights, adapter)", "resnet_probe/runner.py", "open_model"),
    ("private copy: fold BN, NHWC", "resnet_probe/runner.py", "make_executor"),
    ("batch size", "resnet_probe/batch_probe.py", "choose_batch_size"),
    ("the analysis (compute)", "resnet_probe/runner.py", "execute"),
    ("write the run (json, csv, report, figures)", "resnet_probe/rundir.py", "write_run"),
]


def phase_times(profile: Path) -> dict[str, float]:
    stats = pstats.Stats(str(profile)).stats  # type: ignore[attr-defined]
    found: dict[str, float] = {}
    for (path, _line, name), (_cc, _nc, _tt, cumulative, _callers) in stats.items():
        for phase, suffix, function in PHASES:
            if name == function and path.replace("\\", "/").endswith(suffix):
                found[phase] = max(found.get(phase, 0.0), cumulative)
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    best: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.rounds):
            profile = Path(tmp) / f"run{r}.prof"
            cmd = [
                sys.executable, "-m", "cProfile", "-o", str(profile), "-m", "resnet_probe.cli.app", "lesion",
                "--model", "resnet20", "--dataset", "cifar10-sample", "--limit", "64", "--delete", "3",
                "--out", str(Path(tmp) / f"out{r}"), "--no-train",
            ]
            subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
            plain = [sys.executable, *cmd[5:]]
            plain[plain.index("--out") + 1] += "-plain"
            started = time.perf_counter()
            subprocess.run(plain, check=True, stdout=subprocess.DEVNULL)
            whole = time.perf_counter() - started
            best["whole process"] = min(best.get("whole process", whole), whole)
            for phase, seconds in phase_times(profile).items():
                best[phase] = min(best.get(phase, seconds), seconds)
    print(f"best of {args.rounds} rounds, seconds (cProfile adds its own cost to every call)")
    print(f"{'whole process, not profiled':45s} {best['whole process']:6.2f}")
    for phase, _suffix, _function in PHASES:
        if phase in best:
            print(f"{phase:45s} {best[phase]:6.2f}")
    compute = best.get("the analysis (compute)", 0.0)
    print(f"{'outside the computation (unprofiled whole - compute)':45s} {best['whole process'] - compute:6.2f}")


if __name__ == "__main__":
    main()
