"""Interrupted long runs resume from DIR/progress.jsonl and give the uninterrupted run's results.json."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any, Callable

import pytest

from resnet_probe.analyses import resumable
from resnet_probe.journal import PAUSE_ENV

from .cli.helpers import run_cli
from .deadlines import deadline, wait_for

TINY = ("--random-init", "--dataset", "digits", "--device", "cpu", "--seed", "3")
# Several chunks of 16 configurations over 32 images: seconds of work, so a kill lands mid-run.
LESION = ("lesion", "--model", "resnet20", *TINY, "--limit", "32", "--batch-size", "16",
          "--random-k", "1:4", "--samples", "8")
# 25 batches of 8 path samples, each journaled.
GRADIENTS = ("gradients", "--model", "resnet20", *TINY, "--limit", "64", "--batch-size", "8", "--samples", "20")
REORDER = ("reorder", "--model", "resnet20", *TINY, "--limit", "32", "--batch-size", "16",
           "--swaps", "1:4", "--samples", "10")
# What the steps take on a fast machine, rounded well up; tests.deadlines makes hang guards of them.
START_S = 30.0  # interpreter, imports, data, model and the first journaled items (about 3 s)
EXIT_S = 10.0  # from the signal to the process' exit (under 1 s)


def _results(out: Path) -> dict[str, Any]:
    doc = json.loads((out / "results.json").read_text())
    doc.pop("wall_time_s")
    return doc


def _items(journal: Path) -> int:
    """Finished items in a progress file: whole JSON lines after the identity line."""
    try:
        lines = journal.read_text().splitlines()[1:]
    except FileNotFoundError:
        return 0
    count = 0
    for line in lines:
        try:
            json.loads(line)
        except ValueError:
            continue  # the torn last line of a killed run
        count += 1
    return count


def _ctrl_c_interrupts() -> None:
    """In the child: SIGINT raises KeyboardInterrupt even where pytest runs with SIGINT ignored.

    A shell without job control (``nox -s tests &`` in a CI script, nohup) starts its background
    jobs with SIGINT ignored, and Python installs no KeyboardInterrupt handler for an ignored
    SIGINT: the Ctrl-C would be lost and the run would wait out its pause instead.
    """
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _interrupt(args: tuple[str, ...], out: Path, sig: int, after_items: int) -> subprocess.CompletedProcess[str]:
    """Run the CLI in a subprocess, held after ``after_items`` journaled items, and send ``sig`` then."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", PAUSE_ENV: str(after_items)}
    cmd = [sys.executable, "-m", "resnet_probe.cli.app", *args, "--out", str(out)]
    proc = subprocess.Popen(cmd, env=env, cwd=out.parent, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=_ctrl_c_interrupts)
    try:
        # The event: the run holds after its journaled items (imports, data and model first).
        wait_for((out / "progress.jsonl.paused").exists, proc, START_S, f"{after_items} journaled items")
        proc.send_signal(sig)
        stdout, stderr = proc.communicate(timeout=deadline(EXIT_S))  # the event: the process' exit
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return subprocess.CompletedProcess(cmd, proc.returncode, stdout, stderr)


def _count_scored(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Record how many plans each score_plans call of the resumable scorer gets."""
    sizes: list[int] = []
    real = resumable.score_plans

    def counting(executor: Any, data: Any, plans: Any, **kwargs: Any) -> Any:
        sizes.append(len(plans))
        return real(executor, data, plans, **kwargs)

    monkeypatch.setattr(resumable, "score_plans", counting)
    return sizes


def test_lesion_killed_then_resumed_equals_uninterrupted(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    stopped = tmp_path / "stopped"
    proc = _interrupt(LESION, stopped, signal.SIGKILL, after_items=1)
    assert proc.returncode == -signal.SIGKILL
    assert not (stopped / "results.json").exists() and not (stopped / "report.html").exists()
    journal = stopped / "progress.jsonl"
    done_before = _items(journal)
    assert done_before >= 1

    again = run_cli(capsys, *LESION, "--out", stopped)  # without --resume: refused, progress kept
    assert again.code == 2 and "--resume" in again.err
    assert _items(journal) == done_before

    sizes = _count_scored(monkeypatch)
    r = run_cli(capsys, *LESION, "--out", stopped, "--resume")
    assert r.code == 0, r.err
    resumed_sizes = list(sizes)
    assert not journal.exists()  # removed once results.json is written

    sizes.clear()
    whole = tmp_path / "whole"
    assert run_cli(capsys, *LESION, "--out", whole).code == 0
    assert _results(stopped) == _results(whole)
    # The resumed run scored exactly what the killed one had not journaled.
    assert sum(resumed_sizes) == sum(sizes) - min(done_before, sum(sizes))
    assert all(n <= resumable.CHUNK for n in sizes) and len(sizes) >= 3


def test_gradients_interrupted_with_ctrl_c_then_resumed_equals_uninterrupted(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    stopped = tmp_path / "stopped"
    proc = _interrupt(GRADIENTS, stopped, signal.SIGINT, after_items=3)
    assert proc.returncode == 130, proc.stderr[-2000:]
    assert "interrupted" in proc.stderr and "Traceback" not in proc.stderr
    assert not (stopped / "results.json").exists()
    done_before = _items(stopped / "progress.jsonl")
    assert 3 <= done_before < 25

    r = run_cli(capsys, *GRADIENTS, "--out", stopped, "--resume")
    assert r.code == 0, r.err
    whole = tmp_path / "whole"
    assert run_cli(capsys, *GRADIENTS, "--out", whole).code == 0
    resumed, fresh = _results(stopped), _results(whole)
    assert resumed == fresh
    assert sum(row["samples"] for row in fresh["result"]["lengths"]) == 200


def _interrupt_in_process(monkeypatch: pytest.MonkeyPatch, on_call: int) -> Callable[[], None]:
    """Make the resumable scorer's ``on_call``-th score_plans call raise KeyboardInterrupt."""
    real = resumable.score_plans
    calls: list[int] = []

    def interrupted(executor: Any, data: Any, plans: Any, **kwargs: Any) -> Any:
        calls.append(len(plans))
        if len(calls) == on_call:
            raise KeyboardInterrupt
        return real(executor, data, plans, **kwargs)

    monkeypatch.setattr(resumable, "score_plans", interrupted)
    return lambda: monkeypatch.setattr(resumable, "score_plans", real)


def test_reorder_interrupted_then_resumed_equals_uninterrupted(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    stopped = tmp_path / "stopped"
    restore = _interrupt_in_process(monkeypatch, on_call=2)
    r = run_cli(capsys, *REORDER, "--out", stopped)
    assert r.code == 130 and "interrupted" in r.err
    assert _items(stopped / "progress.jsonl") == resumable.CHUNK  # the first chunk, nothing of the second
    assert not (stopped / "results.json").exists()
    restore()

    sizes = _count_scored(monkeypatch)
    assert run_cli(capsys, *REORDER, "--out", stopped, "--resume").code == 0
    resumed = sum(sizes)
    sizes.clear()
    assert run_cli(capsys, *REORDER, "--out", tmp_path / "whole").code == 0
    assert _results(stopped) == _results(tmp_path / "whole")
    assert resumed == sum(sizes) - resumable.CHUNK  # only the missing configurations were scored
    assert not (stopped / "progress.jsonl").exists()


def test_resume_with_other_options_is_refused(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
                                              tmp_path: Path) -> None:
    stopped = tmp_path / "stopped"
    _interrupt_in_process(monkeypatch, on_call=2)
    assert run_cli(capsys, *REORDER, "--out", stopped).code == 130
    r = run_cli(capsys, *REORDER[:-1], "11", "--out", stopped, "--resume")  # --samples 11, not 10
    assert r.code == 2
    assert r.err.strip().splitlines() == [
        f"error: --resume: {stopped / 'progress.jsonl'} belongs to a different run (other model, data or options); "
        "rerun with --force instead of --resume to start over"
    ]
    assert _items(stopped / "progress.jsonl") == resumable.CHUNK
