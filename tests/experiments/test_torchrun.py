"""An experiment under torchrun: the runs are shared out over 2 gloo CPU ranks, the JSON is the single process'."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from resnet_probe.experiments.result import MACHINE_FIELDS

from ..deadlines import deadline

ARGS = ["experiment", "depth", "--depths", "20", "--repeats", "2", "--iters", "2", "--limit", "32",
        "--batch-size", "16", "--device", "cpu"]
RUN_S = 60.0  # the experiment, single or 2 ranks, on a fast machine, rounded well up (about 10 s)


def _experiment(nproc: int, tmp: Path) -> tuple[dict, str]:
    """results.json of the experiment run by ``nproc`` processes, each setup in its own cache."""
    home, out = tmp / f"home{nproc}", tmp / f"run{nproc}"
    env = os.environ | {"OMP_NUM_THREADS": "1", "RESNET_PROBE_HOME": str(home)}
    launcher = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", str(nproc),
                "--master-port", "29533"] if nproc > 1 else [sys.executable]
    cmd = [*launcher, "-m", "resnet_probe.cli.app", *ARGS, "--out", str(out)]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=deadline(RUN_S))
    assert proc.returncode == 0, proc.stderr[-2000:]
    doc = json.loads((out / "results.json").read_text())
    doc.pop("wall_time_s")
    for run in doc["result"]["runs"]:
        for key in MACHINE_FIELDS:
            run.pop(key)
        for epoch in run["history"]:
            epoch.pop("seconds")
    for cell in doc["result"]["cells"]:
        cell.pop("train_images_per_s"), cell.pop("inference_images_per_s")
    return doc, proc.stdout


@pytest.mark.slow  # torchrun itself runs by default in test_distributed; the grid's cache in test_cache
def test_two_ranks_share_the_grid_and_write_the_single_process_results(tmp_path: Path) -> None:
    single, _ = _experiment(1, tmp_path)
    double, stdout = _experiment(2, tmp_path)
    assert double == single
    assert double["extra"]["trained_runs"] == 4
    # Rank 0 logs the runs it trained itself: every other one of the grid.
    assert "[1/4] plain20 seed 0: trained" in stdout and "[3/4] resnet20 seed 0: trained" in stdout
    assert "[2/4]" not in stdout and stdout.count("wrote ") == 1
    # Between them the two ranks put every run of the grid into the cache.
    assert len(list((tmp_path / "home2" / "experiments" / "digits").glob("*/*/run.json"))) == 4
