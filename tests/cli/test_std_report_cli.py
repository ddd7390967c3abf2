"""`resnet-probe std-report` end to end: several models, the cache, training on the spot."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from resnet_probe.models import cache
from resnet_probe.models.checkpoints import read_checkpoint
from resnet_probe.training import recipe

from .helpers import run_cli


@pytest.fixture()
def home(tmp_path: Path, monkeypatch) -> Path:
    """A fresh $RESNET_PROBE_HOME."""
    monkeypatch.setenv("RESNET_PROBE_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


def test_std_report_measures_every_model(capsys, tmp_path: Path) -> None:
    out = tmp_path / "std"
    r = run_cli(
        capsys,
        "std-report",
        "--model",
        "resnet20",
        "--model",
        "plain20",
        "--model",
        "resnet32",
        "--random-init",
        "--limit",
        "24",
        "--batch-size",
        "10",
        "--device",
        "cpu",
        "--out",
        out,
    )
    assert r.code == 0, r.err
    doc = json.loads((out / "results.json").read_text())
    assert doc["analysis"] == "response-std"
    assert doc["options"]["compare"] == ["plain20", "resnet32"]
    models = doc["result"]["models"]
    assert [m["spec"] for m in models] == ["zoo:resnet20", "zoo:plain20", "zoo:resnet32"]
    assert [len(m["layers"]) for m in models] == [19, 19, 31]  # the stem's conv, then 2 per unit
    stem, first = models[0]["layers"][:2]
    assert (stem["unit"], stem["name"], len(stem["channel_std"])) == ("stem", "bn1", 16)
    assert (first["unit"], first["name"], len(first["channel_std"])) == ("layer1.0", "layer1.0.bn1", 16)
    assert doc["result"]["n_images"] == 24
    assert "Mean response std: resnet20 " in r.out
    assert (out / "report.html").read_text().count("<svg") == 1


def test_missing_cifar_models_name_the_train_command(capsys, home: Path, tmp_path: Path) -> None:
    r = run_cli(capsys, "std-report", "--dataset", "cifar10", "--out", tmp_path / "x")
    assert r.code == 2
    assert "`resnet-probe train --model plain20 --dataset cifar10`" in r.err and "plain56" in r.err
    assert len(r.err.strip().splitlines()) == 1
    assert not (tmp_path / "x").exists()


def test_digits_models_are_trained_on_the_spot_then_reused(capsys, home: Path, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(recipe, "DIGITS_EPOCHS", 1)  # the mechanics, not the accuracy
    r = run_cli(
        capsys, "std-report", "--model", "resnet20", "--limit", "32", "--device", "cpu", "--out", tmp_path / "a"
    )
    assert r.code == 0, r.err
    assert "training 1 model(s) on digits first" in r.out and "saved zoo:resnet20 (digits, 41 iterations" in r.out
    ckpt = cache.find_trained("resnet20", "digits")
    assert ckpt is not None
    doc = json.loads((tmp_path / "a" / "results.json").read_text())
    assert doc["model"]["checkpoint"] == str(ckpt) and doc["model"]["weights"] == "cache"
    recorded = read_checkpoint(ckpt).metadata["accuracy"]
    assert 0 <= recorded <= 1 and doc["result"]["models"][0]["accuracy"] == recorded
    r = run_cli(
        capsys, "std-report", "--model", "resnet20", "--limit", "32", "--device", "cpu", "--out", tmp_path / "b"
    )
    assert r.code == 0 and "training" not in r.out
    again = json.loads((tmp_path / "b" / "results.json").read_text())
    assert again["result"] == doc["result"]
