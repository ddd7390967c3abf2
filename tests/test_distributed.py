"""Analyses under torchrun: 2 CPU ranks on gloo give the single-process JSON exactly."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from resnet_probe import distributed

from .deadlines import deadline

RUN_S = 60.0  # one CLI run, single or 2 ranks, on a fast machine, rounded well up (under 10 s)


def test_alone_every_batch_is_mine() -> None:
    from resnet_probe.data import load_data

    assert distributed.world() == 1 and distributed.is_main()
    batches = list(distributed.my_batches(load_data(limit=10), 4))
    assert [i for i, _ in batches] == [0, 1, 2] and [len(y) for _, (_, y) in batches] == [4, 4, 2]
    assert distributed.gather_ordered([(2, "c"), (0, "a"), (1, "b")]) == ["a", "b", "c"]


def _cli(args: list[str], nproc: int, tmp: Path) -> dict:
    env = os.environ | {"OMP_NUM_THREADS": "1", "RESNET_PROBE_HOME": str(tmp / "home")}
    out = tmp / f"run{nproc}"
    if nproc == 1:
        cmd = [sys.executable, "-m", "resnet_probe.cli.app", *args, "--out", str(out)]
    else:
        cmd = [
            sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", str(nproc),
            "--master-port", "29517", "-m", "resnet_probe.cli.app", *args, "--out", str(out),
        ]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=deadline(RUN_S))
    assert proc.returncode == 0, proc.stderr[-2000:]
    doc = json.loads((out / "results.json").read_text())
    for key in ("wall_time_s", "device"):
        doc.pop(key)
    return doc


@pytest.mark.slow  # the lesion case of test_sharded_analyses_equal_single_process runs the same path by default
@pytest.mark.skipif(shutil.which("torchrun") is None and sys.platform == "win32", reason="no torchrun")
def test_eval_under_torchrun_equals_single_process(tmp_path: Path) -> None:
    args = ["eval", "--model", "resnet20", "--random-init", "--limit", "96", "--batch-size", "16", "--device", "cpu"]
    single = _cli(args, 1, tmp_path)
    double = _cli(args, 2, tmp_path)
    assert double["result"] == single["result"]
    assert double == single


@pytest.mark.parametrize(
    "args",
    [
        # 13 images in batches of 5: 3 batches a pass, 30 samples cycle through them 2.3 times
        pytest.param(["gradients", "--model", "resnet20", "--samples", "10", "--k", "0,3,9", "--batch-size", "5",
                      "--limit", "13"], marks=pytest.mark.slow),
        pytest.param(["std-report", "--model", "resnet20", "--model", "plain20", "--batch-size", "12", "--limit", "35"],
                     marks=pytest.mark.slow),
        # The quickest of the three (half their time): the one torchrun run of the default session.
        ["lesion", "--model", "resnet20", "--random-k", "2:3", "--samples", "2", "--batch-size", "16", "--limit", "35"],
    ],
    ids=["gradients", "std-report", "lesion"],
)
def test_sharded_analyses_equal_single_process(args: list[str], tmp_path: Path) -> None:
    """Each rank takes its own batches (an odd number of them), every rank gets the same JSON."""
    args = [*args, "--random-init", "--device", "cpu"]
    single = _cli(args, 1, tmp_path)
    double = _cli(args, 2, tmp_path)
    assert double == single
