"""`resnet-probe lesion` and `reorder` end to end, re-rendering, and --delete mistakes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from .helpers import run_cli

TINY = ("--random-init", "--dataset", "digits", "--limit", "16", "--device", "cpu", "--batch-size", "8")


def test_lesion_sweep_random_k_and_compare_end_to_end(capsys, tmp_path: Path) -> None:
    out = tmp_path / "run"
    r = run_cli(
        capsys, "lesion", "--model", "resnet20", *TINY, "--random-k", "1:3", "--samples", "2",
        "--compare", "resnet20_b", "--seed", "5", "--out", out,
    )
    assert r.code == 0, r.err
    assert "lesion zoo:resnet20" in r.out and "layer2.0 (downsampling)" in r.out
    assert "Downsampling units of zoo:resnet20: 3 (layer2.0), 6 (layer3.0)." in r.out.replace("\n", " ")
    doc = json.loads((out / "results.json").read_text())
    assert doc["analysis"] == "lesion" and doc["seed"] == 5
    assert doc["options"] == {"delete": None, "random_k": "1:3", "samples": 2, "metric": "auto",
                              "compare": ["resnet20_b"]}
    res = doc["result"]
    assert res["baseline"]["n"] == 16
    assert [c["deleted"] for c in res["configs"]] == [[i] for i in range(9)]
    assert [r["k"] for r in res["random_k"]] == [1, 2, 3]
    assert res["compare"][0]["spec"] == "zoo:resnet20_b"
    assert len(res["compare"][0]["configs"]) == 9
    assert doc["extra"]["notes"] and "zero" in doc["extra"]["notes"][0]
    html = (out / "report.html").read_text()
    assert html.count("<svg") == 2 and "zoo:resnet20_b" in html

    (out / "report.html").unlink()
    r = run_cli(capsys, "report", out / "results.json", "--title", "Again")
    assert r.code == 0, r.err
    again = (out / "report.html").read_text()
    assert "<title>Again</title>" in again
    assert "Downsampling units of zoo:resnet20: 3 (layer2.0), 6 (layer3.0)." in again
    assert again.count("<svg") == 2


def test_lesion_delete_set(capsys, tmp_path: Path) -> None:
    out = tmp_path / "set"
    r = run_cli(capsys, "lesion", "--model", "resnet20", *TINY, "--delete", "7,layer2.0", "--out", out)
    assert r.code == 0, r.err
    res = json.loads((out / "results.json").read_text())["result"]
    assert res["sweep"] is False
    assert [(c["deleted"], c["names"]) for c in res["configs"]] == [([3, 7], ["layer2.0", "layer3.1"])]
    assert res["random_k"] == []
    assert "layer2.0 (downsampling), layer3.1" in r.out


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("9", "'9': unit index out of range; valid: indices 0..8"),
        ("-1", "'-1': negative unit index"),
        ("3,3", "unit 3 (layer2.0) is given twice"),
        ("two", "'two': not a unit index or name"),
        ("2.5", "'2.5': not a unit index or name"),
        ("layer4.0", "'layer4.0': not a unit index or name; valid: indices 0..8 or names layer1.0..layer3.2"),
    ],
)
def test_bad_delete_exits_2_with_one_line_and_no_files(capsys, tmp_path: Path, value: str, expected: str) -> None:
    out = tmp_path / "bad"
    r = run_cli(capsys, "lesion", "--model", "resnet20", *TINY, f"--delete={value}", "--out", out)
    assert r.code == 2
    assert expected in r.err
    assert len(r.err.strip().splitlines()) == 1 and "Traceback" not in r.err
    assert not out.exists()


def test_bad_random_k_exits_2(capsys, tmp_path: Path) -> None:
    r = run_cli(capsys, "lesion", "--model", "resnet20", *TINY, "--random-k", "3:20", "--out", tmp_path / "x")
    assert r.code == 2 and "random_k '3:20': out of range; write A:B or K with 1 <= A <= B <= 9" in r.err
    assert not (tmp_path / "x").exists()


def test_reorder_end_to_end(capsys, tmp_path: Path) -> None:
    out = tmp_path / "reorder"
    r = run_cli(capsys, "reorder", "--model", "resnet20", *TINY, "--swaps", "1:3", "--samples", "2", "--out", out)
    assert r.code == 0, r.err
    assert "reorder zoo:resnet20" in r.out and "mean τ" in r.out
    doc = json.loads((out / "results.json").read_text())
    res = doc["result"]
    assert [c["swaps"] for c in res["configs"]] == [1, 1, 2, 2, 3, 3]
    assert all(sorted(c["order"]) == list(range(9)) for c in res["configs"])
    assert all(c["order"][3] == 3 and c["order"][6] == 6 for c in res["configs"])
    (out / "report.html").unlink()
    assert run_cli(capsys, "report", out / "results.json").code == 0
    assert (out / "report.html").read_text().count("<svg") == 2
    bad = run_cli(capsys, "reorder", "--model", "resnet20", *TINY, "--swaps", "0:2", "--out", tmp_path / "y")
    assert bad.code == 2 and "swaps '0:2'" in bad.err and not (tmp_path / "y").exists()


def test_lesion_runs_as_a_plugin(capsys, tmp_path: Path) -> None:
    out = tmp_path / "plugin"
    r = run_cli(capsys, "run", "lesion", "--model", "resnet20", "--random-init", "--limit", "8",
                "--device", "cpu", "--set", "delete=[3]", "--out", out)
    assert r.code == 0, r.err
    res = json.loads((out / "results.json").read_text())["result"]
    assert [c["names"] for c in res["configs"]] == [["layer2.0"]]
    assert "half of its output channels zero" in r.out.replace("\n", " ")


def test_a_model_missing_on_digits_is_trained_first_unless_no_train(capsys, tmp_path: Path, monkeypatch) -> None:
    from resnet_probe.models import cache
    from resnet_probe.training import recipe

    monkeypatch.setenv("RESNET_PROBE_HOME", str(tmp_path / "home"))
    monkeypatch.setattr(recipe, "DIGITS_EPOCHS", 1)  # the mechanics, not the accuracy
    small = ("--limit", "24", "--device", "cpu", "--batch-size", "8")
    r = run_cli(capsys, "lesion", "--model", "resnet20", "--delete", "3", *small, "--no-train", "--out", tmp_path / "a")
    assert r.code == 2 and len(r.err.strip().splitlines()) == 1
    assert "no trained or published weights for zoo:resnet20 on digits" in r.err
    assert not (tmp_path / "a").exists() and cache.find_trained("resnet20", "digits") is None

    r = run_cli(capsys, "lesion", "--model", "resnet20", "--delete", "3", *small, "--out", tmp_path / "b")
    assert r.code == 0, r.err
    said = " ".join(r.out.split())
    assert "training 1 model(s) on digits first (no cached checkpoint; --no-train refuses): resnet20" in said
    ckpt = cache.find_trained("resnet20", "digits")
    doc = json.loads((tmp_path / "b" / "results.json").read_text())
    assert ckpt is not None and doc["model"]["checkpoint"] == str(ckpt) and doc["model"]["weights"] == "cache"
    assert [c["deleted"] for c in doc["result"]["configs"]] == [[3]]

    r = run_cli(capsys, "lesion", "--model", "resnet20", "--delete", "3", *small, "--out", tmp_path / "c")
    assert r.code == 0 and "training" not in r.out  # the cached one is used
    again = json.loads((tmp_path / "c" / "results.json").read_text())
    assert again["result"] == doc["result"]


def test_a_taken_out_is_refused_before_any_training(capsys, tmp_path: Path, monkeypatch) -> None:
    from resnet_probe.models import cache

    monkeypatch.setenv("RESNET_PROBE_HOME", str(tmp_path / "home"))
    taken = tmp_path / "taken"
    taken.mkdir()
    (taken / "results.json").write_text("{}")
    r = run_cli(capsys, "lesion", "--model", "resnet20", "--delete", "3", "--out", taken)
    assert r.code == 2 and len(r.err.strip().splitlines()) == 1 and "--force" in r.err
    assert "training" not in r.out and cache.find_trained("resnet20", "digits") is None
