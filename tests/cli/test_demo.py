"""`resnet-probe demo` end to end on a small configuration: every report and the index."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from resnet_probe.data import load_data
from resnet_probe.training.loop import train_model

from .helpers import run_cli


def test_demo_writes_every_report_and_an_index(capsys, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from resnet_probe.cli import demo

    monkeypatch.setenv("RESNET_PROBE_HOME", str(tmp_path / "home"))
    # Real, very short trainings into the cache, so the demo reuses them instead of training.
    train_src, test_src = load_data("digits", split="train", limit=64), load_data("digits", limit=32)
    for name in ("plain20", "resnet20"):
        train_model(name, train_src, test_src, iters=2, dataset="digits", device="cpu")
    monkeypatch.setattr(demo, "STUDIED", "resnet20")  # the shipped ResNet-20 on the shipped sample
    monkeypatch.setattr(demo, "STD_SET", ("plain20", "resnet20"))

    r = run_cli(capsys, "demo", "--out", tmp_path / "demo", "--limit", "24", "--device", "cpu")
    assert r.code == 0, r.err
    index = (tmp_path / "demo" / "index.html").read_text()
    folders = ["lesion", "reorder", "paths", "gradients", "std", "training"]
    for folder in folders:
        assert f'href="{folder}/report.html"' in index
        doc = json.loads((tmp_path / "demo" / folder / "results.json").read_text())
        assert (tmp_path / "demo" / folder / "report.html").stat().st_size > 1000
        if folder not in ("paths", "training"):
            assert doc["data"]["n"] == 24
            assert doc["data"]["dataset"] == ("digits" if folder == "std" else "cifar10-sample")
    lesion = json.loads((tmp_path / "demo" / "lesion" / "results.json").read_text())["result"]
    assert len(lesion["configs"]) == 9 and [r["k"] for r in lesion["random_k"]] == list(range(1, 7))
    paths = json.loads((tmp_path / "demo" / "paths" / "results.json").read_text())["result"]
    assert paths["total_paths"] == 2**9
