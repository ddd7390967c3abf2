"""One run per run directory: an O_EXCL lock file for the whole run, refused at once, stale locks taken over."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from resnet_probe.errors import OutputError
from resnet_probe.journal import PAUSE_ENV
from resnet_probe.rundir import claim_run_directory
from resnet_probe.runlock import LOCK, RunLock, is_stale, read_holder

from .cli.helpers import run_cli
from .deadlines import deadline, wait_for

TINY = ("--model", "resnet20", "--random-init", "--dataset", "digits", "--device", "cpu", "--seed", "3")
# Journals an item per configuration: the pause holds the run after its first one.
REORDER = ("reorder", *TINY, "--limit", "32", "--batch-size", "16", "--swaps", "1:4", "--samples", "10")
EVAL = ("eval", *TINY, "--limit", "8", "--batch-size", "8")
# What the steps take on a fast machine, rounded well up; tests.deadlines makes hang guards of them.
START_S = 30.0  # interpreter, imports, data, model and the first journaled item (about 3 s)
FINISH_S = 30.0  # the rest of the run, its report included (about 3 s)


def _snapshot(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _numbers(out: Path) -> dict[str, Any]:
    """What a run computed: results.json without its timings."""
    doc = json.loads((out / "results.json").read_text())
    return {k: doc[k] for k in ("analysis", "model", "data", "seed", "options", "result")}


def _dead_pid() -> int:
    """The pid of a process that has exited and been reaped."""
    done = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    return int(done.stdout)


def _lock_file(out: Path, **fields: Any) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    holder = {"pid": _dead_pid(), "host": socket.gethostname(), "started": "2026-01-01T00:00:00+00:00"} | fields
    (out / LOCK).write_text(json.dumps(holder) + "\n")
    return out / LOCK


def test_two_runs_into_one_out_one_is_refused_the_other_intact(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    out = tmp_path / "one-out"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", PAUSE_ENV: "1"}
    cmd = [sys.executable, "-m", "resnet_probe.cli.app", *REORDER, "--out", str(out)]
    first = subprocess.Popen(cmd, env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    marker = out / "progress.jsonl.paused"
    try:
        # The event: the first run is held mid-run, lock taken, one item journaled.
        wait_for(marker.exists, first, START_S, "the first run's first journaled item")
        holder = read_holder(out / LOCK)
        assert holder is not None and holder["pid"] == first.pid
        before = _snapshot(out)

        second = run_cli(capsys, *REORDER, "--out", out)
        assert second.code == 2 and "Traceback" not in second.err
        lines = second.err.strip().splitlines()
        assert lines == [
            f"error: --out {out} is in use by another run (pid {first.pid} on {socket.gethostname()}, "
            f"started {holder['started']}); wait for it to end or choose another --out"
        ]
        assert _snapshot(out) == before  # the refused run wrote nothing, removed nothing

        marker.unlink()  # let the first run go on
        stdout, stderr = first.communicate(timeout=deadline(FINISH_S))
    finally:
        if first.poll() is None:
            first.kill()
            first.wait()
    assert first.returncode == 0, stderr[-2000:]
    assert sorted(p.name for p in out.iterdir()) == ["figures", "report.html", "results.csv", "results.json"]
    alone = tmp_path / "alone"
    assert run_cli(capsys, *REORDER, "--out", alone).code == 0
    assert _numbers(out) == _numbers(alone)


def test_lock_is_held_during_the_run_and_gone_after(capsys: pytest.CaptureFixture[str], tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[dict[str, Any] | None] = []
    from resnet_probe import rundir

    real = rundir.write_run

    def spying(out_dir: Path, *args: Any) -> Any:
        seen.append(read_holder(out_dir / LOCK))
        return real(out_dir, *args)

    monkeypatch.setattr(rundir, "write_run", spying)
    monkeypatch.setattr("resnet_probe.runner.write_run", spying)
    out = tmp_path / "run"
    assert run_cli(capsys, *EVAL, "--out", out).code == 0
    assert seen and seen[0] is not None and seen[0]["pid"] == os.getpid()
    assert not (out / LOCK).exists()


def test_stale_lock_of_a_dead_process_is_taken_over_with_a_line(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    out = tmp_path / "run"
    lock = _lock_file(out)
    pid = json.loads(lock.read_text())["pid"]
    r = run_cli(capsys, *EVAL, "--out", out)
    assert r.code == 0, r.err
    assert f"{lock}: taking over the stale lock of pid {pid} (started 2026-01-01T00:00:00+00:00)" in r.err
    assert "Traceback" not in r.err
    assert (out / "results.json").is_file() and not lock.exists()


def test_a_reused_pid_does_not_keep_a_lock_alive(tmp_path: Path) -> None:
    lock = _lock_file(tmp_path, pid=os.getpid(), process_start=1)  # our pid, but we started later
    held = read_holder(lock)
    assert held is not None and is_stale(held)
    with RunLock(tmp_path) as taken:
        held = read_holder(lock)
        assert held is not None and held["token"] == taken.token and held["pid"] == os.getpid()
    assert not lock.exists()


@pytest.mark.parametrize(
    ("fields", "fragment"),
    [
        ({"pid": os.getppid()}, "is in use by another run (pid"),  # alive: the process that runs pytest
        ({"host": "elsewhere.example"}, "on elsewhere.example"),  # another machine: nothing is certain
    ],
    ids=["live-process", "other-host"],
)
def test_live_or_unknowable_lock_is_refused(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, fields: dict[str, Any], fragment: str
) -> None:
    out = tmp_path / "run"
    lock = _lock_file(out, **fields)
    before = _snapshot(out)
    r = run_cli(capsys, *EVAL, "--out", out)
    assert r.code == 2 and "Traceback" not in r.err
    lines = r.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and fragment in lines[0], lines
    assert _snapshot(out) == before and lock.exists()


def test_empty_lock_is_refused_naming_the_file(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    out = tmp_path / "run"
    out.mkdir()
    (out / LOCK).write_text("")
    r = run_cli(capsys, *EVAL, "--out", out)
    assert r.code == 2
    assert r.err.strip().splitlines() == [
        f"error: --out {out} is locked by {out / LOCK}, which names no process; "
        f"if no run writes there, delete {out / LOCK}"
    ]


def test_lock_released_when_the_run_fails(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    out = tmp_path / "deep" / "run"
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    args = ("eval", "--model", "resnet20", "--checkpoint", bad, "--dataset", "digits", "--limit", "8")
    r = run_cli(capsys, *args, "--out", out)
    assert r.code == 2 and "not a checkpoint" in r.err
    assert not (tmp_path / "deep").exists()  # the folders the claim made are gone again, lock included
    existing = tmp_path / "existing"
    existing.mkdir()
    assert run_cli(capsys, *args, "--out", existing).code == 2
    assert list(existing.iterdir()) == []


def test_lock_released_when_interrupted_journal_kept(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from resnet_probe.analyses import resumable

    real = resumable.score_plans
    calls: list[int] = []

    def interrupted(*args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(resumable, "score_plans", interrupted)
    out = tmp_path / "run"
    assert run_cli(capsys, *REORDER, "--out", out).code == 130
    assert sorted(p.name for p in out.iterdir()) == ["progress.jsonl"]
    monkeypatch.setattr(resumable, "score_plans", real)
    assert run_cli(capsys, *REORDER, "--out", out, "--resume").code == 0


def test_api_save_into_a_locked_directory_is_refused(tmp_path: Path) -> None:
    import resnet_probe as rp

    result = rp.evaluate(rp.load_model("resnet20", weights="random"), rp.load_data("digits", limit=8))
    target = tmp_path / "x"
    target.mkdir()
    with RunLock(target):
        with pytest.raises(OutputError, match="in use by another run"):
            result.save(target)
        assert [p.name for p in target.iterdir()] == [LOCK]
    assert list(target.iterdir()) == []
    assert (result.save(target) / "results.json").is_file()
    assert not (target / LOCK).exists()


def test_claim_without_lock_only_checks(tmp_path: Path) -> None:
    with claim_run_directory(tmp_path / "rank1", "evaluate", "resnet20", force=False, lock=False) as out:
        assert not out.exists()  # the other ranks of a torchrun job neither create nor lock
