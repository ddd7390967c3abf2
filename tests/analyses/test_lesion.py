"""Lesion studies: parsing and validation, random sets, scores, JSON, and the real fixtures."""

from __future__ import annotations

import contextlib
import json
import statistics
from pathlib import Path

import numpy as np
import pytest
import torch
from resnet_probe.reports import render_report

from resnet_probe.analyses.base import RunContext
from resnet_probe.analyses.lesion import (
    LesionAnalysis,
    LesionResult,
    parse_delete,
    parse_range,
    random_sets,
)
from resnet_probe.data import load_data
from resnet_probe.errors import PlanError
from resnet_probe.executor import Executor, Plan
from resnet_probe.models.load import load_model
from resnet_probe.models.loaded import LoadedModel
from resnet_probe.results import RunRecord
from resnet_probe.scoring import score_plans


def _loaded(name: str, seed: int = 0) -> LoadedModel:
    torch.manual_seed(seed)
    return load_model(f"zoo:{name}", weights="random")


def _ctx(lm: LoadedModel, seed: int = 0, limit: int = 24, compare: tuple = ()) -> RunContext:
    data = load_data("digits", limit=limit)
    return RunContext(lm, Executor(lm.topology, "cpu"), data, batch_size=16, seed=seed, compare=compare)


@pytest.fixture(scope="module")
def resnet20() -> LoadedModel:
    return _loaded("resnet20")


def test_parse_delete_takes_indices_and_names(resnet20: LoadedModel) -> None:
    topo = resnet20.topology
    assert parse_delete("3", topo) == (3,)
    assert parse_delete("7, 3 ,layer1.0", topo) == (0, 3, 7)
    assert parse_delete("layer2.0,layer3.0", topo) == (3, 6)
    assert parse_delete([8, "layer1.1"], topo) == (1, 8)
    assert parse_delete(5, topo) == (5,)
    for bad in (True, 2.0, {"3": 1}):
        with pytest.raises(PlanError, match="not a list of units"):
            parse_delete(bad, topo)


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("9", "delete '9': unit index out of range; valid: indices 0..8 or names layer1.0..layer3.2"),
        ("-1", "delete '-1': negative unit index; valid: indices 0..8"),
        ("3,3", "delete '3': unit 3 (layer2.0) is given twice"),
        ("3,layer2.0", "delete 'layer2.0': unit 3 (layer2.0) is given twice"),
        ("2.5", "delete '2.5': not a unit index or name; valid: indices 0..8"),
        ("layer4.0", "delete 'layer4.0': not a unit index or name; valid: indices 0..8 or names layer1.0"),
        ("", "no units given"),
        ("1,,2", "empty entry"),
    ],
)
def test_parse_delete_rejects_bad_values_in_one_line(resnet20: LoadedModel, spec: str, message: str) -> None:
    with pytest.raises(PlanError) as info:
        parse_delete(spec, resnet20.topology)
    assert message in str(info.value)
    assert "\n" not in str(info.value)


def test_plain_nets_cannot_delete_shape_changing_units() -> None:
    topo = _loaded("plain20").topology
    with pytest.raises(PlanError, match=r"unit 6 \(layer3.0\) is a plain unit that changes shape.*0..2, 4, 5, 7, 8"):
        parse_delete("1,layer3.0", topo)
    assert parse_delete("1,4", topo) == (1, 4)


def test_parse_range() -> None:
    assert parse_range("1:20", "random_k", 1, 54) == (1, 20)
    assert parse_range("4", "random_k", 1, 54) == (4, 4)
    assert parse_range((2, 3), "random_k", 1, 54) == (2, 3)
    for bad in ("0:3", "5:2", "1:55", "a:b", "1:"):
        with pytest.raises(PlanError, match="random_k"):
            parse_range(bad, "random_k", 1, 54)


def test_random_sets_are_reproducible_from_the_seed(resnet20: LoadedModel) -> None:
    topo = resnet20.topology
    a = random_sets(topo, (1, 6), 5, seed=0)
    assert a == random_sets(topo, (1, 6), 5, seed=0)
    assert a != random_sets(topo, (1, 6), 5, seed=1)
    assert [k for k, _ in a] == [k for k in range(1, 7) for _ in range(5)]
    for k, s in a:
        assert len(s) == len(set(s)) == k and list(s) == sorted(s) and all(0 <= i < 9 for i in s)
    plain = random_sets(_loaded("plain20").topology, (1, 7), 20, seed=0)
    assert all(3 not in s and 6 not in s for _, s in plain)
    assert {s for k, s in plain if k == 7} == {(0, 1, 2, 4, 5, 7, 8)}


def test_sweep_and_random_k_match_direct_scores(resnet20: LoadedModel) -> None:
    ctx = _ctx(resnet20)
    result = LesionAnalysis().run(ctx, random_k="1:3", samples=4)
    assert result.sweep and result.skipped == ()
    assert [c.deleted for c in result.configs] == [(i,) for i in range(9)]
    assert [c.names for c in result.configs][3] == ("layer2.0",)
    assert [u.name for u in result.units if u.downsampling] == ["layer2.0", "layer3.0"]
    assert [u.shortcut for u in result.units if u.downsampling] == ["zero-pad", "zero-pad"]
    plans = [Plan()] + [Plan.delete(i) for i in range(9)]
    direct = [score_plans(ctx.executor, ctx.data, [p], batch_size=7)[0] for p in plans]
    assert result.baseline.correct == direct[0].correct and result.baseline.n == 24
    assert [c.correct for c in result.configs] == [s.correct for s in direct[1:]]
    for c, s in zip(result.configs, direct[1:], strict=True):
        assert c.loss == pytest.approx(s.loss, rel=1e-5)
    sets = random_sets(resnet20.topology, (1, 3), 4, seed=0)
    assert [(r.k, r.samples) for r in result.random_k] == [(1, 4), (2, 4), (3, 4)]
    for r in result.random_k:
        acc = [score_plans(ctx.executor, ctx.data, [Plan.delete(*s)])[0].accuracy for k, s in sets if k == r.k]
        assert r.mean_accuracy == pytest.approx(statistics.fmean(acc), abs=1e-12)
        assert r.std_accuracy == pytest.approx(statistics.stdev(acc), abs=1e-12)


def test_result_json_round_trip_and_seed(resnet20: LoadedModel) -> None:
    a = LesionAnalysis().run(_ctx(resnet20, seed=4), random_k="2:5", samples=3)
    doc = json.loads(json.dumps(a.to_dict()))
    assert set(doc) >= {"baseline", "configs", "random_k", "units", "compare"}
    assert set(doc["baseline"]) == {"accuracy", "correct", "n", "loss", "ci", "hits", "value", "values", "kind"}
    assert set(doc["configs"][0]) == {"deleted", "names", "accuracy", "correct", "loss", "ci", "p_value",
                                      "p_adjusted", "significant", "hits", "n", "value", "values"}
    assert set(doc["random_k"][0]) == {"k", "samples", "mean_accuracy", "std_accuracy", "ci", "accuracies",
                                       "significant"}
    assert set(doc["units"][0]) >= {"index", "name", "stage", "downsampling", "shortcut"}
    assert LesionResult.from_dict(doc) == a
    again = LesionAnalysis().run(_ctx(resnet20, seed=4), random_k="2:5", samples=3)
    assert json.dumps(again.to_dict()) == json.dumps(a.to_dict())


def test_delete_set_and_compare() -> None:
    lm = _loaded("resnet20")
    other = _loaded("resnet20_b", seed=1)
    ctx = _ctx(lm, compare=((other, Executor(other.topology, "cpu")),))
    result = LesionAnalysis().run(ctx, delete="layer3.0,1", random_k="1:2", samples=2)
    assert not result.sweep
    assert [(c.deleted, c.names) for c in result.configs] == [((1, 6), ("layer1.1", "layer3.0"))]
    (cmp,) = result.compare
    assert cmp.spec == "zoo:resnet20_b"
    assert [c.deleted for c in cmp.configs] == [(1, 6)]
    assert [u.shortcut for u in cmp.units if u.downsampling] == ["projection", "projection"]
    direct = score_plans(ctx.compare[0][1], ctx.data, [Plan(), Plan.delete(1, 6)])
    assert (cmp.baseline.correct, cmp.configs[0].correct) == (direct[0].correct, direct[1].correct)
    doc = json.loads(json.dumps(result.to_dict()))
    assert doc["compare"][0]["spec"] == "zoo:resnet20_b"
    assert LesionResult.from_dict(doc) == result
    with pytest.raises(PlanError, match="unknown options"):
        LesionAnalysis().run(ctx, deleet="3")


def test_plain_net_sweep_skips_shape_changing_units() -> None:
    result = LesionAnalysis().run(_ctx(_loaded("plain20"), limit=8))
    assert result.skipped == (3, 6)
    assert [c.deleted[0] for c in result.configs] == [0, 1, 2, 4, 5, 7, 8]
    record = RunRecord("lesion", {"spec": "zoo:plain20"}, None, 0, "cpu", result.to_dict())
    html = render_report(record, result)
    assert "3 (layer2.0), 6 (layer3.0) of zoo:plain20 change shape and have no shortcut" in html


@pytest.fixture(scope="module")
def fixture_sweep(fixtures_dir: Path) -> tuple[LesionResult, str]:
    """The full single-unit sweep of the trained ResNet-20 on the 846 fixture images, rendered."""
    lm = load_model("zoo:resnet20", checkpoint=fixtures_dir / "resnet20-12fca82f.th")
    data = load_data(data=fixtures_dir / "cifar10_test_first846.npz")
    ctx = RunContext(lm, Executor(lm.topology, "cpu"), data, batch_size=846)
    result = LesionAnalysis().run(ctx)
    record = RunRecord(
        "lesion", lm.describe(), data.describe(), 0, "cpu", result.to_dict(),
        extra={"notes": list(lm.topology.notes)},
    )
    return result, render_report(record, result)


def test_fixture_sweep_baseline_and_downsampling_spikes(fixture_sweep: tuple[LesionResult, str]) -> None:
    result, _ = fixture_sweep
    assert (result.baseline.correct, result.baseline.n) == (776, 846)
    cost = {c.deleted[0]: result.baseline.accuracy - c.accuracy for c in result.configs}
    median = statistics.median(cost.values())
    assert cost[3] > median and cost[6] > median
    assert min(cost[3], cost[6]) > 0.3 > median  # Veit Fig. 3: spikes only at downsampling
    assert all(c > 0 for c in cost.values())


def test_fixture_report_names_the_downsampling_units(fixture_sweep: tuple[LesionResult, str]) -> None:
    _, html = fixture_sweep
    assert "Downsampling units of zoo:resnet20: 3 (layer2.0), 6 (layer3.0)." in html
    assert "Deleting unit 3 (layer2.0, the first unit of stage 2: downsampling, zero-pad shortcut) costs" in html
    assert "Deleting unit 6 (layer3.0, the first unit of stage 3: downsampling, zero-pad shortcut) costs" in html
    assert "leaves half of its output channels zero" in html
    assert "the median single deletion costs" in html
    assert html.count("<svg") == 1


def test_options_are_checked_on_every_model_before_any_scoring() -> None:
    started: list[str] = []

    @contextlib.contextmanager
    def progress(description: str, _total: int):
        started.append(description)
        yield lambda _n: None

    big, small = _loaded("resnet32"), _loaded("resnet20")
    ctx = RunContext(
        big, Executor(big.topology, "cpu"), load_data("digits", limit=8), progress=progress,
        compare=((small, Executor(small.topology, "cpu")),),
    )
    with pytest.raises(PlanError, match="delete '12': unit index out of range; valid: indices 0..8"):
        LesionAnalysis().run(ctx, delete="12")
    assert started == []
    LesionAnalysis().run(ctx, delete="8")
    assert started == ["lesion zoo:resnet32", "lesion zoo:resnet20"]


def test_every_deletion_carries_its_interval_and_paired_test(resnet20: LoadedModel) -> None:
    """Recomputed here from the packed per-image correctness with scipy: Wilson, exact McNemar, Holm."""
    from scipy.stats import binomtest

    from resnet_probe.stats import unpack_bits

    result = LesionAnalysis().run(_ctx(resnet20), random_k="2:3", samples=5)
    base = unpack_bits(result.baseline.hits, result.baseline.n)
    assert int(base.sum()) == result.baseline.correct
    ci = binomtest(result.baseline.correct, result.baseline.n).proportion_ci(0.95, method="wilson")
    assert result.baseline.ci == pytest.approx((ci.low, ci.high), abs=1e-12)
    p = []
    for c in result.configs:
        mask = unpack_bits(c.hits, result.baseline.n)
        assert int(mask.sum()) == c.correct
        lost, gained = int((base & ~mask).sum()), int((mask & ~base).sum())
        expected = binomtest(lost, lost + gained, 0.5).pvalue if lost + gained else 1.0
        assert c.p_value == pytest.approx(expected, rel=1e-12)
        p.append(c.p_value)
    # Holm by hand over the single deletions and the 10 random sets, read from the sorted p-values
    m = len(p) + 10
    assert all(c.p_adjusted >= c.p_value for c in result.configs)
    smallest = min(result.configs, key=lambda c: c.p_value)
    assert smallest.p_adjusted == pytest.approx(min(1.0, m * smallest.p_value), rel=1e-9)
    assert all(c.significant == (c.p_adjusted < 0.05) for c in result.configs)
    for r in result.random_k:
        assert r.ci[0] <= r.mean_accuracy <= r.ci[1] and len(r.accuracies) == 5
        assert 0.0 <= r.ci[0] and r.ci[1] <= 1.0


def test_adaptive_evaluation_stops_each_plan_once_its_confidence_sequence_is_narrow() -> None:
    """A stoppable copy of the unchanged model sees a prefix of the always-run one's images, and stops at
    the first batch boundary where the confidence sequence of that prefix is within the tolerance."""
    from resnet_probe.scoring import Stopping
    from resnet_probe.stats import confidence_sequence, unpack_bits

    lm = _loaded("resnet20", seed=3)
    data = load_data("digits", limit=200)
    stop = Stopping(0.2, 0.95, seed=4)
    full, early, deleted = score_plans(
        Executor(lm.topology, "cpu"), data, [Plan(), Plan(), Plan.delete(2)], batch_size=16, stop=stop, always=[0]
    )
    assert full.n == 200 and not full.stopped
    ref = unpack_bits(full.hits, 200)
    boundaries = range(16, 201, 16)
    first = next(m for m in boundaries if stop.done(int(ref[:m].sum()), m))
    assert early.n == first < 200 and early.stopped
    np.testing.assert_array_equal(early.correct_mask, ref[:first])
    assert deleted.n < 200 and stop.done(deleted.correct, deleted.n)
    assert not stop.done(*(int(deleted.correct_mask[: deleted.n - 16].sum()), deleted.n - 16))
    from resnet_probe.scoring import interval

    assert interval(early, 0.95) == confidence_sequence(early.correct, early.n, 0.95)
    # The visiting order is the seeded shuffle: other seeds visit other images first.
    (other,) = score_plans(Executor(lm.topology, "cpu"), data, [Plan()], batch_size=16, stop=Stopping(0.2, seed=5))
    assert other.hits != early.hits or other.n != early.n


def test_adaptive_lesion_on_the_real_resnet20_brackets_the_full_data_accuracies(
    fixtures_dir: Path, fixture_sweep: tuple[LesionResult, str]
) -> None:
    exact, _ = fixture_sweep
    lm = load_model("zoo:resnet20", checkpoint=fixtures_dir / "resnet20-12fca82f.th")
    data = load_data(data=fixtures_dir / "cifar10_test_first846.npz")
    ctx = RunContext(lm, Executor(lm.topology, "cpu"), data, batch_size=64, tolerance=0.05)
    result = LesionAnalysis().run(ctx)
    assert (result.baseline.correct, result.baseline.n) == (776, 846)  # the reference runs on every image
    full = {c.deleted: c.accuracy for c in exact.configs}
    kept = [c for c in result.configs if full[c.deleted] > 0.85]
    assert sum(c.n < 846 for c in kept) >= 0.75 * len(kept)
    for c in result.configs:
        assert c.ci[0] <= full[c.deleted] <= c.ci[1], c.deleted
        assert c.n % 64 == 0 or c.n == 846
    frame = result.to_frame()
    assert sorted(frame["n"][frame["kind"] == "set"]) == sorted(c.n for c in result.configs)


def test_sample_counts_are_bounded_in_the_api_as_on_the_cli(resnet20: LoadedModel) -> None:
    from resnet_probe.analyses.gradients import GradientsAnalysis

    for bad in (0, 10_001, 10**12):
        with pytest.raises(PlanError, match=r"samples .*1 <= x <= 10000"):
            LesionAnalysis().run(_ctx(resnet20), random_k="1:2", samples=bad)
        with pytest.raises(PlanError, match=r"--samples .*1 <= x <= 10000"):
            GradientsAnalysis().run(_ctx(resnet20), samples=bad)
