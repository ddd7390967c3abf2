"""The JSONL journal: durable items, torn last lines ignored, other runs and damaged lines refused."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from resnet_probe.errors import OutputError
from resnet_probe.journal import AnyItem, Journal, NormsItem, ScoreItem, item_schema


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


# --- every line checked against the schema of the run's items ------------------------------

SCORE = {"correct": 3, "n": 4, "loss_sum": 1.5, "hits": "Bw==", "stopped": False}  # images 0, 1, 2 right


def _journal_with(tmp_path: Path, schema: type, lines: list[str], images: int | None = 4) -> tuple[Path, bytes]:
    path = tmp_path / "progress.jsonl"
    j = Journal(path, {"run": 1}, resume=False, schema=schema, images=images)
    j.add({"deleted": [0]}, SCORE) if schema is ScoreItem else j.add(0, [0.5, 1.0])
    with path.open("a", encoding="utf-8", newline="") as fh:
        fh.writelines(line + "\n" for line in lines)
    return path, path.read_bytes()


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        ('{"key": [1], "value": {"correct": 999, "n": 4, "loss_sum": 1.0}}', "correct 999 exceeds n 4"),
        ('{"key": [1], "value": {"correct": -1, "n": 4, "loss_sum": 1.0}}', "value.correct: Input should be greater"),
        ('{"key": [1], "value": {"correct": "3", "n": 4, "loss_sum": 1.0}}', "correct: Input should be a valid int"),
        ('{"key": [1], "value": {"correct": 3.0, "n": 4, "loss_sum": 1.0}}', "correct: Input should be a valid int"),
        ('{"key": [1], "value": {"correct": true, "n": 4, "loss_sum": 1.0}}', "correct: Input should be a valid int"),
        ('{"key": [1], "value": {"correct": 3, "n": 4, "loss_sum": NaN}}', "NaN is not a finite number"),
        ('{"key": [1], "value": {"correct": 3, "n": 4, "loss_sum": 1e999}}', "1e999 overflows a float"),
        ('{"key": [1], "value": {"correct": 3, "n": 4, "loss_sum": -2.0}}', "value.loss_sum: Input should be greater"),
        ('{"key": [1], "value": {"correct": 3, "n": 5, "loss_sum": 1.0}}', "n 5 does not match the run's 4 images"),
        ('{"key": [1], "value": {"correct": 2, "n": 4, "loss_sum": 1, "hits": "Bw=="}}', "hits mark 3 images correct"),
        ('{"key": [1], "value": {"correct": 2, "n": 4, "loss_sum": 1.0, "hits": "!!"}}', "not valid base64"),
        ('{"key": [1], "value": {"correct": 2, "n": 4, "loss_sum": 1.0, "evil": 1}}', "value.evil: Extra inputs"),
        ('{"key": [1], "value": {"n": 4, "loss_sum": 1.0}}', "value.correct: Field required"),
        ('{"key": [1]}', 'expected an object {"key": ..., "value": ...}'),
        ('[1, 2]', 'expected an object {"key": ..., "value": ...}'),
        ('{"key": [1], "value": 3', "not a finite JSON line"),
        ("", "not a finite JSON line"),
        ('{"key": {"deleted": [0]}, "value": {"correct": 1, "n": 4, "loss_sum": 1.0}}', "a second, different value"),
    ],
    ids=[
        "correct-above-n", "correct-negative", "correct-string", "correct-float", "correct-bool", "nan", "overflow",
        "negative-loss", "n-not-the-images", "hits-disagree", "hits-not-base64", "extra-field", "missing-field",
        "no-value", "not-an-object", "malformed", "empty-line", "key-twice",
    ],
)
def test_bad_score_line_refuses_the_journal_naming_its_line(tmp_path: Path, line: str, reason: str) -> None:
    path, before = _journal_with(tmp_path, ScoreItem, [line, '{"key": [9], "value": ' + json.dumps(SCORE) + "}"])
    with pytest.raises(OutputError) as exc:
        Journal(path, {"run": 1}, resume=True, schema=ScoreItem, images=4)
    message = str(exc.value)
    assert message.startswith(f"--resume: {path} line 3: ") and reason in message, message
    assert "\n" not in message and message.endswith("rerun with --force instead of --resume to start over")
    assert path.read_bytes() == before  # refused, never appended to


def test_binary_line_in_the_middle_is_refused(tmp_path: Path) -> None:
    path, _ = _journal_with(tmp_path, ScoreItem, [])
    with path.open("ab") as fh:
        fh.write(b"\x00\xff\xfe garbage\n" + b'{"key": [9], "value": ' + json.dumps(SCORE).encode() + b"}\n")
    before = path.read_bytes()
    with pytest.raises(OutputError, match=r"line 3: not UTF-8 text \(byte 1\)"):
        Journal(path, {"run": 1}, resume=True, schema=ScoreItem, images=4)
    assert path.read_bytes() == before


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        ('{"key": 1, "value": [0.5, -1.0]}', "value.1: Input should be greater than or equal to 0"),
        ('{"key": 1, "value": []}', "value: List should have at least 1 item"),
        ('{"key": 1, "value": ["0.5"]}', "value.0: Input should be a valid number"),
        ('{"key": -1, "value": [0.5]}', "key: Input should be greater than or equal to 0"),
        ('{"key": "1", "value": [0.5]}', "key: Input should be a valid integer"),
        ('{"key": 1, "value": {"correct": 1}}', "value: Input should be a valid list"),
    ],
    ids=["negative-norm", "no-norms", "norm-string", "negative-key", "string-key", "a-score"],
)
def test_bad_gradient_line_is_refused(tmp_path: Path, line: str, reason: str) -> None:
    path, before = _journal_with(tmp_path, NormsItem, [line])
    with pytest.raises(OutputError) as exc:
        Journal(path, {"run": 1}, resume=True, schema=NormsItem)
    assert f"line 3: {reason}" in str(exc.value), str(exc.value)
    assert path.read_bytes() == before


def test_torn_tail_is_cut_before_the_next_append(tmp_path: Path) -> None:
    path, _ = _journal_with(tmp_path, ScoreItem, [])
    with path.open("a") as fh:
        fh.write('{"key": [2, 3], "val')  # killed mid-write
    resumed = Journal(path, {"run": 1}, resume=True, schema=ScoreItem, images=4)
    assert resumed.has({"deleted": [0]}) and len(resumed.done) == 1
    resumed.add([5], SCORE)
    lines = path.read_text().splitlines()
    assert len(lines) == 3 and all(json.loads(line) for line in lines)  # no torn text glued onto a line
    again = Journal(path, {"run": 1}, resume=True, schema=ScoreItem, images=4)
    assert again.get([5]) == SCORE


def test_a_value_the_schema_refuses_is_never_written(tmp_path: Path) -> None:
    path, before = _journal_with(tmp_path, ScoreItem, [])
    j = Journal(path, {"run": 1}, resume=True, schema=ScoreItem, images=4)
    for bad in ({**SCORE, "correct": 5}, {**SCORE, "loss_sum": float("nan")}):
        with pytest.raises(ValueError):
            j.add([7], bad)
    assert path.read_bytes() == before and not j.has([7])


def test_an_empty_journal_is_a_run_that_finished_nothing(tmp_path: Path) -> None:
    path = tmp_path / "progress.jsonl"
    path.write_bytes(b'{"identity": {"ru')  # killed while writing its first line
    j = Journal(path, {"run": 1}, resume=True, schema=ScoreItem)
    assert j.done == {}
    j.add([1], SCORE | {"hits": None})
    assert Journal(path, {"run": 1}, resume=True, schema=ScoreItem).get([1])["correct"] == 3


def test_each_resumable_analysis_has_a_schema() -> None:
    from resnet_probe.plugins import get_analysis

    assert item_schema(get_analysis("lesion").journal_item) is ScoreItem
    assert item_schema(get_analysis("reorder").journal_item) is ScoreItem
    assert item_schema(get_analysis("gradients").journal_item) is NormsItem and item_schema(None) is AnyItem
