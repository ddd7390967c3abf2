"""`resnet-probe eval` end to end on the real fixtures, and its user errors."""

from __future__ import annotations

import json
from pathlib import Path

from .helpers import run_cli


def test_eval_fixture_checkpoint_scores_776_of_846(capsys, fixtures_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    r = run_cli(
        capsys, "eval", "--model", "zoo:resnet20",
        "--checkpoint", fixtures_dir / "resnet20-12fca82f.th",
        "--data", fixtures_dir / "cifar10_test_first846.npz",
        "--out", out, "--device", "cpu",
    )
    assert r.code == 0, r.err
    assert "776/846" in r.out
    doc = json.loads((out / "results.json").read_text())
    assert doc["analysis"] == "evaluate"
    assert doc["result"]["correct"] == 776 and doc["result"]["n"] == 846
    assert abs(doc["result"]["accuracy"] - 0.9173) < 1e-4
    assert doc["model"]["spec"] == "zoo:resnet20"
    assert doc["model"]["units"] == 9 and doc["model"]["params"] == 269_722
    assert doc["model"]["checkpoint_sha256"].startswith("12fca82f")
    assert doc["data"]["n"] == 846
    assert "torch" in doc["versions"]
    html = (out / "report.html").read_text()
    assert "776 of 846" in html and "12fca82f" in html


def test_eval_refuses_to_overwrite_a_report(capsys, fixtures_dir: Path, tmp_path: Path) -> None:
    (tmp_path / "report.html").write_text("old")
    r = run_cli(capsys, "eval", "--model", "resnet20", "--random-init", "--limit", "8", "--out", tmp_path)
    assert r.code == 2
    assert "--force" in r.err and "Traceback" not in r.err
    assert (tmp_path / "report.html").read_text() == "old"


def test_unknown_model_is_one_line_exit_2(capsys, tmp_path: Path) -> None:
    r = run_cli(capsys, "eval", "--model", "resnet21", "--out", tmp_path / "x")
    assert r.code == 2
    assert "resnet21" in r.err and "resnet20" in r.err
    assert len(r.err.strip().splitlines()) == 1
    assert not (tmp_path / "x").exists()


def test_models_lists_the_zoo_as_json(capsys) -> None:
    r = run_cli(capsys, "models", "resnet*", "--json")
    assert r.code == 0
    rows = {row["name"]: row for row in json.loads(r.out)}
    assert rows["resnet110"]["units"] == 54
    assert rows["resnet20"]["params"] == 269_722
    assert "plain20" not in rows


def test_report_rerenders_from_results_json(capsys, tmp_path: Path) -> None:
    out = tmp_path / "run"
    assert run_cli(capsys, "eval", "--model", "resnet20", "--random-init", "--limit", "16", "--out", out).code == 0
    (out / "report.html").unlink()
    r = run_cli(capsys, "report", out / "results.json", "--title", "Re-rendered")
    assert r.code == 0, r.err
    assert "<title>Re-rendered</title>" in (out / "report.html").read_text()


def test_eval_with_a_tolerance_stops_early_and_says_what_it_saved(capsys, tmp_path: Path) -> None:
    from resnet_probe.stats import confidence_sequence

    out = tmp_path / "run"
    r = run_cli(capsys, "eval", "--model", "resnet20", "--dataset", "cifar10-sample", "--tolerance", "0.05",
                "--batch-size", "100", "--device", "cpu", "--out", out)
    assert r.code == 0, r.err
    doc = json.loads((out / "results.json").read_text())
    res = doc["result"]
    assert doc["extra"]["tolerance"] == 0.05
    lo, hi = confidence_sequence(res["correct"], res["n"], 0.95)
    assert res["n"] in range(100, 846, 100) and (hi - lo) / 2 <= 0.05
    assert tuple(res["ci"]) == (lo, hi) and lo <= 776 / 846 <= hi  # the exact accuracy on all 846
    assert "Adaptive evaluation (--tolerance 0.05): 1 of 1 configurations stopped" in " ".join(r.out.split())
    r = run_cli(capsys, "eval", "--model", "resnet20", "--dataset", "cifar10-sample", "--tolerance", "0.7")
    assert r.code == 2 and "--tolerance" in r.err and len(r.err.strip().splitlines()) == 1
