"""`resnet-probe paths` and `resnet-probe gradients` end to end, and their user errors."""

from __future__ import annotations

import json
import math
from pathlib import Path

import networkx as nx

from .helpers import run_cli


def test_paths_resnet56_offline_without_weights(capsys, tmp_path: Path) -> None:
    out = tmp_path / "run"
    graphml = tmp_path / "r56.graphml"
    r = run_cli(capsys, "paths", "--model", "resnet56", "--out", out, "--graphml", graphml)
    assert r.code == 0, r.err
    assert "2^27 = 134,217,728 paths through 27 units" in r.out
    doc = json.loads((out / "results.json").read_text())
    assert doc["analysis"] == "paths" and doc["data"] is None
    assert doc["model"]["weights"] == "random"
    res = doc["result"]
    assert res["n_units"] == 27 and res["total_paths"] == 2**27
    assert res["counts"] == [math.comb(27, k) for k in range(28)]
    assert res["mean_length"] == 13.5 and abs(res["std_length"] - math.sqrt(27 / 4)) < 1e-12
    assert res["window_95"] == [8, 18]
    g = nx.read_graphml(graphml)
    assert g.number_of_edges() == 54 and g.graph["total_paths"] == str(2**27)
    html = (out / "report.html").read_text()
    assert "<svg" in html and "binomial" in html and "134,217,728" in html


def test_paths_through_the_plugin_runner_and_report(capsys, tmp_path: Path) -> None:
    out = tmp_path / "plain"
    r = run_cli(capsys, "run", "paths", "--model", "plain20", "--out", out)
    assert r.code == 0, r.err
    assert "only path runs through all 9 units" in r.out
    doc = json.loads((out / "results.json").read_text())
    assert doc["result"]["counts"] == [0] * 9 + [1] and doc["result"]["total_paths"] == 1
    (out / "report.html").unlink()
    r = run_cli(capsys, "report", out / "results.json")
    assert r.code == 0, r.err
    assert "only path runs through all 9 units" in (out / "report.html").read_text()


def test_paths_user_errors_are_one_line(capsys, tmp_path: Path) -> None:
    r = run_cli(capsys, "paths", "--model", "resnet57", "--out", tmp_path / "x")
    assert r.code == 2 and "resnet57" in r.err and len(r.err.strip().splitlines()) == 1
    r = run_cli(capsys, "paths", "--model", "resnet20", "--out", tmp_path / "y", "--graphml", tmp_path)
    assert r.code == 2 and "is a directory" in r.err and "Traceback" not in r.err


def test_gradients_fixture_checkpoint(capsys, fixtures_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "grad"
    r = run_cli(
        capsys, "gradients", "--model", "zoo:resnet20",
        "--checkpoint", fixtures_dir / "resnet20-12fca82f.th",
        "--data", fixtures_dir / "cifar10_test_first846.npz",
        "--samples", "4", "--k", "0:9", "--share", "0.8", "--batch-size", "20",
        "--out", out, "--device", "cpu", "--seed", "1",
    )
    assert r.code == 0, r.err
    assert "80 % of the total gradient comes from paths of length" in r.out
    assert "eval mode" in r.out
    doc = json.loads((out / "results.json").read_text())
    assert doc["analysis"] == "gradients" and doc["seed"] == 1
    assert doc["options"] == {"samples": 4, "k": "0:9", "share": 0.8}
    res = doc["result"]
    assert res["n_units"] == 9 and res["share"] == 0.8
    assert [row["k"] for row in res["lengths"]] == list(range(10))
    assert [row["paths"] for row in res["lengths"]] == [math.comb(9, k) for k in range(10)]
    assert all(row["samples"] == 4 and row["mean_norm"] > 0 for row in res["lengths"])
    for row in res["lengths"]:
        assert abs(row["total"] - row["mean_norm"] * row["paths"]) <= 1e-9 * row["total"]
    assert abs(sum(row["share"] for row in res["lengths"]) - 1) < 1e-9
    lo, hi = res["effective_range"]
    assert 0 <= lo <= hi <= 9
    html = (out / "report.html").read_text()
    assert html.count("<svg") == 2 and "Effective paths" in html


def test_gradients_user_errors(capsys, tmp_path: Path) -> None:
    base = ["gradients", "--random-init", "--limit", "4", "--samples", "1", "--device", "cpu"]
    r = run_cli(capsys, *base, "--model", "resnet20", "--k", "3:12", "--out", tmp_path / "a")
    assert r.code == 2 and "length 10 is out of range" in r.err and "9 residual units" in r.err
    r = run_cli(capsys, *base, "--model", "plain20", "--out", tmp_path / "b")
    assert r.code == 2 and "gradients need residual units" in r.err
    r = run_cli(capsys, *base, "--model", "resnet20", "--share", "0", "--out", tmp_path / "c")
    assert r.code == 2 and "--share 0.0" in r.err
    assert len(r.err.strip().splitlines()) == 1 and "Traceback" not in r.err
    assert not any((tmp_path / d).exists() for d in "abc")
