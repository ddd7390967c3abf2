"""The batch-size probe: it times the analysis' own work, keeps the fastest size, caches it per case."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import torch

import resnet_probe as rp
from resnet_probe import batch_probe, distributed
from resnet_probe.analyses.base import RunContext
from resnet_probe.analyses.evaluate import EvaluateAnalysis
from resnet_probe.batch_probe import BatchChoice, Head, choose_batch_size
from resnet_probe.executor import Executor
from resnet_probe.results import Result
from resnet_probe.runner import run_analysis
from resnet_probe.settings import BATCH_SIZE, RunSettings

from .cli.helpers import run_cli


class CountingEvaluate(EvaluateAnalysis):
    """Evaluate, remembering the images and batch size of every run."""

    def __init__(self) -> None:
        self.runs: list[tuple[int, int]] = []

    def run(self, ctx: RunContext, **options: Any) -> Result:
        assert ctx.data is not None
        self.runs.append((len(ctx.data), ctx.batch_size))
        return super().run(ctx, **options)


@pytest.fixture(scope="module")
def digits() -> rp.data.DataSource:
    return rp.load_data("digits")  # 500 images


@pytest.fixture(scope="module")
def context(digits: rp.data.DataSource) -> RunContext:
    torch.manual_seed(0)
    loaded = rp.load_model("resnet20", weights="random", num_classes=10)
    return RunContext(loaded=loaded, executor=Executor(loaded.topology, "cpu"), data=digits)


@pytest.fixture
def small_candidates(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """Candidates 16 and 32, so the 500 digits qualify (4 x 32 <= 500); a private cache."""
    monkeypatch.setattr(batch_probe, "CPU_CANDIDATES", (16, 32))
    monkeypatch.setenv("RESNET_PROBE_HOME", str(tmp_path))
    return tmp_path / "batch-sizes.json"


def test_head_yields_exactly_the_first_n_images(digits: rp.data.DataSource) -> None:
    head = Head.of(digits, 70)
    got = list(head.batches(32))
    assert [int(y.shape[0]) for _, y in got] == [32, 32, 6]
    want_x, want_y = next(iter(digits.batches(70)))
    assert torch.equal(torch.cat([x for x, _ in got]), want_x)
    assert torch.equal(torch.cat([y for _, y in got]), want_y)
    assert len(head) == 70 and head.num_classes == digits.num_classes


def test_a_given_size_is_kept_and_a_small_data_set_takes_the_default(context: RunContext) -> None:
    analysis = CountingEvaluate()
    assert choose_batch_size(analysis, context, {}, 48) == BatchChoice(48, "option")
    # 500 images are fewer than 4 x 256: probing would cost too much of the run
    assert choose_batch_size(analysis, context, {}, None) == BatchChoice(BATCH_SIZE, "default")
    assert analysis.runs == []


def test_the_probe_times_each_size_on_the_analysis_keeps_the_fastest_and_caches_it(
    context: RunContext, small_candidates: Path
) -> None:
    analysis = CountingEvaluate()
    first = choose_batch_size(analysis, context, {}, None)
    assert first.source == "probe"
    # one untimed warm-up at the smallest size, then each size once, each on exactly its own images
    assert analysis.runs == [(16, 16), (16, 16), (32, 32)]
    assert set(first.images_per_s) == {16, 32} and all(v > 0 for v in first.images_per_s.values())
    assert first.size == max(first.images_per_s, key=first.images_per_s.__getitem__)

    analysis.runs.clear()
    again = choose_batch_size(analysis, context, {}, None)
    assert analysis.runs == []
    assert (again.size, again.source) == (first.size, "cache")
    assert again.images_per_s == pytest.approx(first.images_per_s, abs=0.05)
    doc = json.loads(small_candidates.read_text())
    assert [entry["size"] for entry in doc.values()] == [first.size]


def test_the_cache_is_per_case_threads_options_and_precision(context: RunContext, small_candidates: Path) -> None:
    analysis = CountingEvaluate()
    choose_batch_size(analysis, context, {}, None)
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(threads + 1)
        assert choose_batch_size(analysis, context, {}, None).source == "probe"
    finally:
        torch.set_num_threads(threads)
    bf16 = RunContext(
        loaded=context.loaded, executor=Executor(context.loaded.topology, "cpu", "bf16"), data=context.data
    )
    assert choose_batch_size(analysis, bf16, {}, None).source == "probe"
    assert choose_batch_size(analysis, context, {}, None).source == "cache"
    assert len(json.loads(small_candidates.read_text())) == 3


def test_a_broken_cache_file_is_probed_again_not_trusted(context: RunContext, small_candidates: Path) -> None:
    small_candidates.parent.mkdir(parents=True, exist_ok=True)
    small_candidates.write_text("{not json")
    assert choose_batch_size(CountingEvaluate(), context, {}, None).source == "probe"
    doc = json.loads(small_candidates.read_text())  # rewritten whole
    for bad in ({"size": 0}, {"size": True}, {"size": 16, "images_per_s": {"x": 1.0}}, [16], "16"):
        small_candidates.write_text(json.dumps({key: bad for key in doc}))
        assert choose_batch_size(CountingEvaluate(), context, {}, None).source == "probe", bad


def test_ranks_under_torchrun_take_the_default_so_they_batch_alike(
    context: RunContext, small_candidates: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(distributed, "world", lambda: 2)
    assert choose_batch_size(CountingEvaluate(), context, {}, None) == BatchChoice(BATCH_SIZE, "default")


def test_analyses_whose_work_does_not_grow_with_the_images_are_not_probed(
    context: RunContext, small_candidates: Path
) -> None:
    from resnet_probe.analyses.gradients import GradientsAnalysis

    assert GradientsAnalysis.batch_probe is False
    assert choose_batch_size(GradientsAnalysis(), context, {}, None) == BatchChoice(BATCH_SIZE, "default")


def test_the_run_record_says_which_size_ran_and_why(tmp_path: Path, small_candidates: Path) -> None:
    common = {"model": "resnet20", "dataset": "digits", "random_init": True, "device": "cpu"}
    _, record, _ = run_analysis(EvaluateAnalysis(), RunSettings(**common, out=tmp_path / "a"), {})
    assert record.extra["batch_size"]["from"] == "probe"
    assert record.extra["batch_size"]["size"] in (16, 32)
    _, record, result = run_analysis(EvaluateAnalysis(), RunSettings(**common, out=tmp_path / "b", batch_size=100), {})
    assert record.extra["batch_size"] == {"size": 100, "from": "option"}
    saved = json.loads((tmp_path / "b" / "results.json").read_text())
    assert saved["extra"]["batch_size"] == {"size": 100, "from": "option"}


def test_a_resumed_run_batches_as_its_journal_says_without_probing(
    tmp_path: Path, small_candidates: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from resnet_probe.analyses.lesion import LesionAnalysis
    from resnet_probe.journal import Journal, recorded_batch_size

    settings = RunSettings(model="resnet20", dataset="digits", random_init=True, device="cpu", out=tmp_path / "run")
    add = Journal.add

    def add_then_die(self: Journal, key: Any, value: Any) -> None:
        add(self, key, value)
        if len(self.done) == 2:
            raise KeyboardInterrupt  # as Ctrl-C after two finished configurations

    monkeypatch.setattr(Journal, "add", add_then_die)
    with pytest.raises(KeyboardInterrupt):
        run_analysis(LesionAnalysis(), settings, {"delete": "1,2,3"})
    probed = recorded_batch_size(tmp_path / "run" / "progress.jsonl")
    assert probed in (16, 32)

    monkeypatch.setattr(Journal, "add", add)
    small_candidates.unlink()  # the cache is gone: only the journal knows the size

    def no_probe(*_args: Any, **_kwargs: Any) -> dict[int, float]:
        raise AssertionError("a resumed run must not probe")

    monkeypatch.setattr(batch_probe, "measure", no_probe)
    _, record, _ = run_analysis(LesionAnalysis(), replace(settings, resume=True), {"delete": "1,2,3"})
    assert record.extra["batch_size"] == {"size": probed, "from": "journal"}


def test_recorded_batch_size_of_a_missing_or_broken_journal_is_unknown(tmp_path: Path) -> None:
    from resnet_probe.journal import recorded_batch_size

    assert recorded_batch_size(tmp_path / "none.jsonl") is None
    (tmp_path / "bad.jsonl").write_text('{"identity": {"batch_size": true}}\n')
    assert recorded_batch_size(tmp_path / "bad.jsonl") is None
    (tmp_path / "torn.jsonl").write_bytes(b'{"ident')
    assert recorded_batch_size(tmp_path / "torn.jsonl") is None


def test_the_cli_says_when_it_probed_and_then_reuses_the_size(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, small_candidates: Path
) -> None:
    args = ("eval", "--model", "resnet20", "--random-init", "--dataset", "digits")
    first = run_cli(capsys, *args, "--out", tmp_path / "a")
    assert first.code == 0, first.err
    line = next(ln for ln in first.out.splitlines() if ln.startswith("batch size"))
    assert "the fastest of a timed probe" in line and "16:" in line and "32:" in line
    again = run_cli(capsys, *args, "--out", tmp_path / "b")
    assert again.code == 0 and "timed probe" not in again.out
    saved = json.loads((tmp_path / "b" / "results.json").read_text())["extra"]["batch_size"]
    assert saved["from"] == "cache" and saved["size"] == int(line.split()[2].rstrip(":"))
