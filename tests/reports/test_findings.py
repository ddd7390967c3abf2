"""The published counterpart: Veit et al.'s findings and this run's verdict from its own statistics."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from resnet_probe.reports.findings import (
    AGREES,
    CANNOT_TELL,
    DISAGREES,
    gradients_finding,
    lesion_finding,
    random_k_finding,
    verdict,
)

from resnet_probe.results import RunRecord
from tests.cli.helpers import run_cli


def _record(kind: str = "published", dataset: str = "cifar10", n: int = 10_000, **prov: object) -> RunRecord:
    model = {"spec": "zoo:resnet56", "provenance": {"kind": kind, "dataset": dataset, **prov}}
    return RunRecord("lesion", model, {"dataset": dataset, "n": n}, 0, "cpu", {})


def _hits(n: int, wrong: int, rng: np.random.Generator) -> np.ndarray:
    hits = np.ones(n, bool)
    hits[rng.choice(n, wrong, replace=False)] = False
    return hits


@pytest.mark.parametrize(("low", "high", "found"), [(0.1, 1.9, AGREES), (2.1, 5.0, DISAGREES), (1.0, 3.0, CANNOT_TELL)])
def test_verdict_by_where_the_interval_lies(low: float, high: float, found: str) -> None:
    assert verdict(low, high, 2.0, paper_below=True) == found


def test_lesion_agrees_when_single_deletions_cost_little() -> None:
    rng = np.random.default_rng(0)
    base = np.ones(10_000, bool)
    singles = [_hits(10_000, 50, rng) for _ in range(9)]  # each costs exactly 0.5 points
    text = lesion_finding(base, singles, [False] * 9, 0.95, _record())
    assert text is not None
    assert "median such deletion costs +0.50 points" in text and "this run agrees" in text
    assert "What differs" not in text


def test_lesion_disagrees_on_a_fragile_net_and_says_what_differs() -> None:
    rng = np.random.default_rng(1)
    base = np.ones(500, bool)
    singles = [_hits(500, 200, rng) for _ in range(5)] + [_hits(500, 500, rng)]  # 40 points each; one downsampling
    record = _record("trained", dataset="digits", n=500, iterations=205)
    text = lesion_finding(base, singles, [False] * 5 + [True], 0.95, record)
    assert text is not None
    assert "median such deletion costs +40.00 points" in text and "5 deletions" in text
    assert "this run disagrees" in text
    assert "trained here for 205 iterations on digits" in text and "measured on digits, not CIFAR-10" in text


def test_lesion_on_an_untrained_net_says_the_verdict_means_nothing() -> None:
    base = np.zeros(200, bool)
    singles = [np.zeros(200, bool) for _ in range(3)]  # an untrained net: nothing to lose
    text = lesion_finding(base, singles, [False] * 3, 0.95, _record("random", dataset="digits", n=200))
    assert text is not None and "untrained (random weights)" in text and "says nothing about them" in text


def test_random_k_smooth_fall_agrees_and_a_cliff_disagrees() -> None:
    ks = [1, 2, 3, 4]
    smooth = [[0.9, 0.91, 0.89], [0.85, 0.86, 0.84], [0.80, 0.81, 0.79], [0.75, 0.76, 0.74]]
    cis = [(min(v), max(v)) for v in smooth]
    text = random_k_finding(ks, smooth, cis, 0.95, _record())
    assert text is not None and "this run agrees" in text
    cliff = [[0.9, 0.91, 0.89], [0.89, 0.9, 0.88], [0.3, 0.31, 0.29], [0.28, 0.29, 0.27]]
    text = random_k_finding(ks, cliff, [(min(v), max(v)) for v in cliff], 0.95, _record())
    assert text is not None and "k = 2 → 3 carries" in text and "this run disagrees" in text


def test_gradients_short_paths_agree() -> None:
    text = gradients_finding((5, 17), ((4, 6), (15, 19)), 54, _record())
    assert text is not None and "window is 5–17 of 54" in text and "this run agrees" in text
    text = gradients_finding((28, 40), ((28, 30), (38, 42)), 54, _record())
    assert text is not None and "this run disagrees" in text


def _lesion_cli(capsys: pytest.CaptureFixture[str], tmp_path: Path, *args: str) -> str:
    run = run_cli(capsys, "lesion", *args, "--device", "cpu", "--out", str(tmp_path / "run"))
    assert run.code == 0, run.err
    return " ".join(run.out.split())


def test_untrained_lesion_run_begins_untrained_and_its_verdict_says_so(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    out = _lesion_cli(capsys, tmp_path, "--model", "resnet20", "--random-init", "--dataset", "digits",
                      "--limit", "64")
    assert "random, untrained weights" in out.split("Veit")[0]  # the provenance comes first
    assert "Veit et al. 2016 (Sec. 4.1, Fig. 3" in out
    assert "untrained (random weights): the paper's finding is about trained networks" in out


@pytest.mark.slow
def test_shipped_resnet56_lesion_states_veit_and_its_verdict(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    out = _lesion_cli(capsys, tmp_path, "--model", "resnet56", "--dataset", "cifar10-sample")
    assert "published weights" in out.split("Veit")[0]
    # akamaster's ResNet-56 on the 846 shipped images: the median single deletion costs 1.06 points with a
    # paired interval that straddles the 2-point line, so 846 images cannot tell
    assert "median such deletion costs +1.06 points (paired 95 % interval [-0.38, +2.51], 25 deletions)" in out
    assert "on 846 images this run cannot tell" in out
    assert "on 846 examples, not the 10,000 CIFAR-10 test images" in out
