"""The benchmark scripts still run and their two ways still agree (tiny sizes; nothing is timed here).

Slow (`nox -s slow`, run by CI): each is a whole process or several, a minute in all, and what they compare
(shared-prefix, stacked and batched runs against the plain forward) the executor, scoring and inference
tests check in-process.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from .deadlines import deadline

pytestmark = pytest.mark.slow
BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
CPU = ["--device", "cpu", "--threads", "1"]
# What a script takes on a fast machine, rounded well up (the smoke sizes: 2-10 s; cli_vs_loop: about 30 s).
SCRIPT_S = 60.0
WHOLE_PROCESS_S = 90.0


@pytest.mark.parametrize(
    ("script", "argv", "expect"),
    [
        ("lesion_sweep", ["--model", "resnet20", "--batch", "8", "--rounds", "1"], "logits identical"),
        ("random_k", ["--model", "resnet20", "--k", "1:3", "--samples", "2", "--batch", "8", "--rounds", "1",
                      "--also-stack", "3"], "logits agree"),
        ("reorder", ["--model", "resnet20", "--swaps", "1:2", "--samples", "2", "--batch", "8", "--rounds", "1"],
         "logits agree"),
        ("path_gradients", ["--model", "resnet20", "--batch-size", "4", "--rounds", "1", "--images-per-round", "2"],
         "speed-up of batched routing"),
        ("response_std", ["--model", "resnet20", "--limit", "24", "--batch-size", "8", "--rounds", "1"],
         "largest relative difference"),
        ("batch_sizes", ["--model", "resnet20", "--images", "256", "--rounds", "1"], "a fixed 256 loses"),
        ("train_step", ["--model", "resnet20", "--batch", "4", "--steps", "1", "--rounds", "1"],
         "train --precision bf16"),
        ("veit_suite", ["--model", "resnet20", "--images", "16", "--batch-size", "8", "--grad-batch-size", "8",
                        "--random-k", "1:2", "--random-k-samples", "1", "--swaps", "1:2", "--swap-samples", "1",
                        "--grad-samples", "1"], "total"),
    ],
)
def test_benchmark_runs_and_agrees(script: str, argv: list[str], expect: str) -> None:
    # As a user runs them: a script of its own (lesion_sweep spawns a process per mode).
    proc = subprocess.run(
        [sys.executable, str(BENCHMARKS / f"{script}.py"), *argv, *CPU],
        capture_output=True, text=True, timeout=deadline(SCRIPT_S), env=os.environ | {"OMP_NUM_THREADS": "1"},
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert expect in proc.stdout


def test_whole_process_benchmark_agrees_with_the_plain_loop(tmp_path: Path) -> None:
    """The shipped ResNet-20's sweep as a plain PyTorch loop and as `resnet-probe lesion`, fp32 and bf16."""
    proc = subprocess.run(
        [sys.executable, str(BENCHMARKS / "cli_vs_loop.py"), "--model", "resnet20"],
        capture_output=True, text=True, timeout=deadline(WHOLE_PROCESS_S),
        env=os.environ | {"OMP_NUM_THREADS": "1", "RESNET_PROBE_HOME": str(tmp_path)},
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "counts vs the loop: max difference 0 images (allowed 1)" in proc.stdout  # fp32: the same predictions
    assert "bound: prefix sharing 1.83x fewer FLOPs" in proc.stdout  # 10 configurations of 9 units
    assert "of the bound; fixed cost" in proc.stdout and "one forward of 256 images: NCHW" in proc.stdout
