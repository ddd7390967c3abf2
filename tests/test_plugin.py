"""An outside analysis (tests/plugin/site: a package with its own entry points) gets a command, a report,
``--resume`` and ``rp.run``, from its module, its report module and two entry points alone."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from .deadlines import deadline, wait_for

SITE = Path(__file__).parent / "plugin" / "site"
ARGS = ("agreement", "--model", "resnet20", "--dataset", "cifar10-sample", "--limit", "64", "--batch-size", "32",
        "--first", "4")
START_S = 30.0  # imports, data, model and the first journaled items on a fast machine (a few seconds)


@pytest.fixture()
def installed(monkeypatch: pytest.MonkeyPatch) -> Path:
    """The plugin on sys.path, where importlib.metadata finds its entry points (as after pip install)."""
    monkeypatch.syspath_prepend(str(SITE))
    return SITE


def _env(**extra: str) -> dict[str, str]:
    path = os.pathsep.join([str(SITE), os.environ.get("PYTHONPATH", "")])
    return {**os.environ, "PYTHONPATH": path, "OMP_NUM_THREADS": "1", **extra}


def _cli(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "resnet_probe.cli.app", *args]
    return subprocess.run(cmd, capture_output=True, text=True, env=_env(**env), timeout=deadline(60), check=False)


def test_discovered_and_run_from_python(installed: Path) -> None:
    import resnet_probe as rp
    from resnet_probe.errors import PlanError
    from resnet_probe.plugins import discover

    info = next(p for p in discover() if p.name == "agreement")
    assert (info.package, info.version, info.error) == ("probe-agreement", "0.1", None)
    result = rp.run("agreement", "resnet20", "cifar10-sample", first=2, batch_size=128)
    assert result.n == 846 and result.units == ("layer1.0", "layer1.1")
    lesion = rp.lesion("resnet20", "cifar10-sample", delete="0")
    assert 0 < result.agree[0] <= 846 and lesion.configs[0].correct <= 846
    assert "fewest of any unit" in result._repr_html_()  # its report module, found by its entry point
    with pytest.raises(PlanError, match="unknown option 'last'; valid: first"):
        rp.run("agreement", "resnet20", "cifar10-sample", last=2)
    with pytest.raises(PlanError, match="first 0: must be a whole number with 1 <= x <= 100000"):
        rp.run("agreement", "resnet20", "cifar10-sample", first=0)


def test_a_generated_command_with_its_options_and_report(tmp_path: Path) -> None:
    help_text = _cli("agreement", "--help")
    assert help_text.returncode == 0 and "--first" in help_text.stdout and "--resume" in help_text.stdout
    out = tmp_path / "run"
    done = _cli(*ARGS, "--out", str(out))
    assert done.returncode == 0, done.stderr
    assert "fewest of any unit" in done.stdout
    doc = json.loads((out / "results.json").read_text())
    assert doc["analysis"] == "agreement" and doc["options"] == {"first": 4} and doc["result"]["n"] == 64
    html = (out / "report.html").read_text()
    assert "Predictions kept per deleted unit" in html and "fewest of any unit" in html
    bad = _cli("agreement", "--model", "resnet20", "--first", "0")
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and "--first" in bad.stderr


def test_killed_then_resumed_equals_uninterrupted(tmp_path: Path) -> None:
    whole = tmp_path / "whole"
    assert _cli(*ARGS, "--out", str(whole)).returncode == 0
    stopped = tmp_path / "stopped"
    from resnet_probe.journal import PAUSE_ENV

    cmd = [sys.executable, "-m", "resnet_probe.cli.app", *ARGS, "--out", str(stopped)]
    proc = subprocess.Popen(cmd, env=_env(**{PAUSE_ENV: "2"}), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    try:
        wait_for((stopped / "progress.jsonl.paused").exists, proc, START_S, "2 journaled units")
        proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=deadline(10))
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert not (stopped / "results.json").exists()
    assert len((stopped / "progress.jsonl").read_text().splitlines()) == 3  # identity + 2 units
    resumed = _cli(*ARGS, "--out", str(stopped), "--resume")
    assert resumed.returncode == 0, resumed.stderr
    first, again = (json.loads((d / "results.json").read_text()) for d in (whole, stopped))
    assert first["result"] == again["result"]
