"""`resnet-probe train` and `train-report` end to end, in a private cache."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from resnet_probe.models import cache
from resnet_probe.models.checkpoints import read_checkpoint

from .helpers import run_cli


@pytest.fixture()
def home(tmp_path: Path, monkeypatch) -> Path:
    """A fresh $RESNET_PROBE_HOME."""
    monkeypatch.setenv("RESNET_PROBE_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


def test_train_then_train_report(capsys, home: Path, tmp_path: Path) -> None:
    for model in ("plain20", "resnet20"):
        r = run_cli(capsys, "train", "--model", model, "--iters", "3", "--batch-size", "16", "--device", "cpu")
        assert r.code == 0, r.err
        assert f"saved zoo:{model} (digits, 3 iterations, 1 epochs" in r.out
        assert "epoch 1/1  it 3" in r.err  # the per-epoch log line
    ckpt = cache.trained_checkpoint_path("resnet20", "digits")
    assert ckpt == home / "checkpoints" / "digits" / "resnet20.safetensors"
    meta = read_checkpoint(ckpt).metadata
    assert meta["spec"] == "zoo:resnet20" and meta["train_args"]["batch_size"] == 16
    (entry,) = meta["history"]
    assert entry["iteration"] == 3 and 0 <= entry["test_error"] <= 1 and entry["train_loss"] > 0

    out = tmp_path / "curves"
    r = run_cli(capsys, "train-report", "--out", out)  # every run cached for digits
    assert r.code == 0, r.err
    doc = json.loads((out / "results.json").read_text())
    assert doc["analysis"] == "train-curves"
    runs = doc["result"]["runs"]
    assert [run["spec"] for run in runs] == ["zoo:plain20", "zoo:resnet20"]
    assert [run["residual"] for run in runs] == [False, True]
    assert runs[1]["history"] == meta["history"]
    html = (out / "report.html").read_text()
    assert html.count("<svg") == 1 and "plain nets" in html and "residual nets" in html
    assert "resnet20 trained 3 iterations (1 epochs) on digits" in r.out

    # Explicit SPEC=CHECKPOINT, and `report` can re-render it (the analysis is a plugin).
    out2 = tmp_path / "one"
    r = run_cli(capsys, "train-report", "--model", f"resnet20={ckpt}", "--out", out2)
    assert r.code == 0, r.err
    assert len(json.loads((out2 / "results.json").read_text())["result"]["runs"]) == 1
    (out2 / "report.html").unlink()
    assert run_cli(capsys, "report", out2 / "results.json").code == 0
    assert (out2 / "report.html").is_file()


def test_train_user_errors_are_one_line(capsys, home: Path, tmp_path: Path) -> None:
    r = run_cli(capsys, "train", "--model", "resnet20", "--epochs", "1", "--iters", "5")
    assert r.code == 2 and "exclude each other" in r.err and len(r.err.strip().splitlines()) == 1
    r = run_cli(capsys, "train", "--model", "resnet20", "--resume", "--iters", "1", "--device", "cpu")
    assert r.code == 2 and "nothing to resume" in r.err
    r = run_cli(capsys, "train", "--model", "resnet21", "--iters", "1")
    assert r.code == 2 and "resnet20" in r.err
    r = run_cli(capsys, "train-report", "--out", tmp_path / "none")
    assert r.code == 2 and "resnet-probe train --model MODEL --dataset digits" in r.err
    r = run_cli(capsys, "train-report", "--model", "plain56", "--out", tmp_path / "none")
    assert r.code == 2 and "`resnet-probe train --model plain56 --dataset digits`" in r.err
    assert not (tmp_path / "none").exists()


def test_train_out_writes_elsewhere_and_resumes(capsys, home: Path, tmp_path: Path) -> None:
    target = tmp_path / "mine.safetensors"
    args = ["train", "--model", "resnet20", "--epochs", "2", "--batch-size", "32", "--device", "cpu", "--out", target]
    # A finished run leaves no resume state behind, so --resume has nothing to continue.
    assert (
        run_cli(capsys, *args[:3], "--iters", "2", "--batch-size", "32", "--device", "cpu", "--out", target).code == 0
    )
    assert target.is_file() and not (home / "checkpoints").exists()
    r = run_cli(capsys, *args, "--resume")
    assert r.code == 2 and "nothing to resume" in r.err
