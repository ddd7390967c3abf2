"""The JSONL journal: durable items, torn last lines ignored, other runs refused."""

from __future__ import annotations

from pathlib import Path

import pytest

from resnet_probe.errors import OutputError
from resnet_probe.journal import Journal


def test_resume_reads_finished_items_and_skips_a_torn_line(tmp_path: Path) -> None:
    path = tmp_path / "progress.jsonl"
    j = Journal(path, {"model": "resnet20", "k": [1, 3]}, resume=False)
    j.add([0, 1], {"accuracy": 0.5})
    j.add([1, 2], {"accuracy": 0.25})
    with path.open("a") as fh:
        fh.write('{"key": [2, 3], "val')  # killed mid-write
    again = Journal(path, {"model": "resnet20", "k": [1, 3]}, resume=True)
    assert again.has([0, 1]) and again.get([1, 2]) == {"accuracy": 0.25}
    assert not again.has([2, 3])
    assert len(again.done) == 2


def test_resume_of_another_run_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "progress.jsonl"
    Journal(path, {"model": "resnet20"}, resume=False).add(1, 2)
    with pytest.raises(OutputError, match="different run"):
        Journal(path, {"model": "resnet56"}, resume=True)


def test_without_resume_a_journal_starts_empty(tmp_path: Path) -> None:
    path = tmp_path / "progress.jsonl"
    Journal(path, {"a": 1}, resume=False).add("x", 1)
    fresh = Journal(path, {"a": 1}, resume=False)
    assert fresh.done == {}
    fresh.close()
    assert not path.exists()
