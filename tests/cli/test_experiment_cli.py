"""`resnet-probe experiment` end to end on tiny recipes, in a private cache."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from .helpers import run_cli

TINY = ["--iters", "2", "--limit", "32", "--batch-size", "16", "--device", "cpu"]
ROW_FIELDS = {"model", "depth", "residual", "family", "seed", "params", "test_error", "train_error", "epochs"}


@pytest.fixture()
def home(tmp_path: Path, monkeypatch) -> Path:
    monkeypatch.setenv("RESNET_PROBE_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


def test_depth_experiment_then_cached_rerun(capsys, home: Path, tmp_path: Path) -> None:
    out = tmp_path / "depth"
    r = run_cli(capsys, "experiment", "depth", "--depths", "20,32", "--repeats", "2", *TINY, "--out", out)
    assert r.code == 0, r.err
    assert "8 runs trained, 0 from the cache" in r.out and "[8/8] resnet32 seed 1: trained" in r.out
    doc = json.loads((out / "results.json").read_text())
    assert doc["analysis"] == "experiment" and doc["model"]["spec"] == "depth"
    result = doc["result"]
    assert ROW_FIELDS <= set(result["runs"][0])
    assert [(x["model"], x["seed"], x["depth"], x["residual"]) for x in result["runs"][:4]] == [
        ("plain20", 0, 20, False), ("plain20", 1, 20, False), ("resnet20", 0, 20, True), ("resnet20", 1, 20, True)]
    cells = {c["cell"]: c for c in result["cells"]}
    plain = [x["test_error"] for x in result["runs"] if x["model"] == "plain32"]
    assert cells["plain-32"]["test_error_mean"] == pytest.approx(sum(plain) / 2)
    assert cells["plain-32"]["test_error_best"] == min(plain) and cells["plain-32"]["repeats"] == 2
    assert {(t["a"], t["b"]) for t in result["comparisons"]} == {
        ("ResNet-20", "plain-20"), ("ResNet-32", "plain-32"), ("plain-32", "plain-20"), ("ResNet-32", "ResNet-20")}
    html = (out / "report.html").read_text()
    assert html.count("<svg") == 2 and "Paired tests" in html and "He et al." in html
    said = " ".join(r.out.split()).lower()  # the reading answers from the numbers
    assert "plain-32 trains to" in said and ("resnet-32 beats resnet-20" in said or "resnet-32 does not beat" in said)
    assert (out / "results.csv").read_text().count("\n") == 9  # a header and one row per run

    r = run_cli(capsys, "experiment", "depth", "--depths", "20,32", "--repeats", "2", *TINY, "--out", out)
    assert r.code == 2 and "pass --force" in r.err
    r = run_cli(capsys, "experiment", "depth", "--depths", "20,32", "--repeats", "2", *TINY, "--out", out, "--force")
    assert r.code == 0, r.err
    assert "0 runs trained, 8 from the cache" in r.out
    again = json.loads((out / "results.json").read_text())
    assert again["result"] == result and again["extra"]["cached_runs"] == 8

    (out / "report.html").unlink()
    r = run_cli(capsys, "experiment", "depth", "--depths", "20,32", "--repeats", "2", *TINY, "--out", out, "--force",
                "--no-train")  # a re-render from the cache alone
    assert r.code == 0 and (out / "report.html").read_text().count("<svg") == 2
    (out / "report.html").unlink()
    r = run_cli(capsys, "report", out / "results.json")  # and from results.json alone
    assert r.code == 0, r.err
    assert (out / "report.html").read_text().count("<svg") == 2


def test_blocks_with_named_nets_and_analyses_then(capsys, home: Path, tmp_path: Path) -> None:
    out = tmp_path / "blocks"
    r = run_cli(capsys, "experiment", "blocks", "--models", "resnet20", "--models", "preact_resnet20", *TINY,
                "--then", "lesion,std", "--out", out)
    assert r.code == 0, r.err
    doc = json.loads((out / "results.json").read_text())["result"]
    assert [c["model"] for c in doc["cells"]] == ["resnet20", "preact_resnet20"]
    assert all(c["flops"] > 0 and c["inference_images_per_s"] > 0 for c in doc["cells"])
    assert doc["then"][0] == {"lesion": "then/resnet20-s0/lesion/report.html",
                              "response-std": "then/resnet20-s0/response-std/report.html"}
    for links in doc["then"]:
        for path in links.values():
            assert (out / path).is_file()
    lesion = json.loads((out / "then" / "resnet20-s0" / "lesion" / "results.json").read_text())
    assert lesion["model"]["checkpoint"] == doc["runs"][0]["checkpoint"]  # the experiment's own trained net
    html = (out / "report.html").read_text()
    assert '<a href="then/preact_resnet20-s0/lesion/report.html">' in html
    assert html.count("<svg") == 3  # errors per cell, cost, curves


def test_shortcut_experiment_skips_what_the_zoo_lacks(capsys, home: Path, tmp_path: Path) -> None:
    r = run_cli(capsys, "experiment", "shortcut", "--depth", "1202", *TINY, "--no-train", "--out", tmp_path / "s")
    assert r.code == 2 and "--no-train: 12 of 12 runs are not in the cache" in r.err


def test_shortcut_experiment_on_digits_defaults_to_depth_56(capsys, home: Path, tmp_path: Path) -> None:
    r = run_cli(capsys, "experiment", "shortcut", *TINY, "--no-train", "--out", tmp_path / "s")
    assert r.code == 2 and "runs are not in the cache (plain56 seed 0, resnet56 seed 0" in r.err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["experiment", "width"], "unknown experiment 'width'; valid: depth, shortcut, blocks"),
        (["experiment", "shortcut", "--depths", "20"], "--depths is not an option of `experiment shortcut`"),
        (["experiment", "depth", "--depths", "20,x"], "--depths '20,x': expected whole numbers"),
        (["experiment", "depth", "--depths", "21"], "no basic-block resnet21 in the zoo"),
        (["experiment", "depth", "--depths", "20", "--iters", "0"], "Invalid value for '--iters': 0 is outside"),
        (["experiment", "depth", "--depths", "20", "--then", "lesoin"], "unknown analysis 'lesoin'"),
        (["experiment", "depth", "--depths", "20", "--no-train"], "--no-train: 2 of 2 runs are not in the cache"),
    ],
)
def test_user_errors_are_one_line(capsys, home: Path, tmp_path: Path, args: list[str], message: str) -> None:
    r = run_cli(capsys, *args, "--out", tmp_path / "x", "--device", "cpu")
    assert r.code == 2 and message in r.err and len(r.err.strip().splitlines()) == 1, r.err
    assert not (tmp_path / "x").exists()
