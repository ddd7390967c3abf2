"""Reordering study: swap groups, random orders, Kendall tau, scores, JSON, seed."""

from __future__ import annotations

import itertools
import json

import pytest
import torch
from resnet_probe.reports import render_report

from resnet_probe.adapters import build_topology
from resnet_probe.analyses.base import RunContext
from resnet_probe.analyses.reorder import (
    ReorderAnalysis,
    ReorderResult,
    order_tau,
    random_orders,
    swap_groups,
    swap_pairs,
)
from resnet_probe.data import load_data
from resnet_probe.errors import PlanError
from resnet_probe.executor import Executor, Plan, validate_plan
from resnet_probe.models.load import load_model
from resnet_probe.models.loaded import LoadedModel
from resnet_probe.models.spec import ModelSpec
from resnet_probe.models.zoo.cifar import CifarResNet
from resnet_probe.results import RunRecord
from resnet_probe.scoring import score_plans


def _loaded(name: str) -> LoadedModel:
    torch.manual_seed(0)
    return load_model(f"zoo:{name}", weights="random")


def _ctx(lm: LoadedModel, seed: int = 0) -> RunContext:
    return RunContext(lm, Executor(lm.topology, "cpu"), load_data("digits", limit=16), batch_size=16, seed=seed)


@pytest.fixture(scope="module")
def resnet20() -> LoadedModel:
    return _loaded("resnet20")


def test_swap_groups_keep_downsampling_units_in_place(resnet20: LoadedModel) -> None:
    assert swap_groups(resnet20.topology) == [(0, 1, 2), (4, 5), (7, 8)]
    assert len(swap_pairs(resnet20.topology)) == 3 + 1 + 1
    assert [len(g) for g in swap_groups(_loaded("resnet56").topology)] == [9, 8, 8]
    assert swap_groups(_loaded("preact_resnet20").topology) == [(0, 1, 2), (4, 5), (7, 8)]


def test_a_net_without_two_equal_units_in_a_stage_is_refused() -> None:
    model = CifarResNet(1)  # one unit per stage: nothing can trade places
    topology = build_topology(model)
    with pytest.raises(PlanError, match="two units with equal shapes") as info:
        swap_pairs(topology)
    assert "\n" not in str(info.value)
    lm = LoadedModel(model, ModelSpec("zoo", "resnet8"), topology, 10)
    with pytest.raises(PlanError, match="two units with equal shapes"):
        ReorderAnalysis().run(_ctx(lm), swaps="1:3", samples=2)


def _inversions(order: tuple[int, ...]) -> int:
    return sum(1 for i, j in itertools.combinations(range(len(order)), 2) if order[i] > order[j])


def test_random_orders_are_valid_reproducible_and_tau_is_kendall(resnet20: LoadedModel) -> None:
    topo = resnet20.topology
    orders = random_orders(topo, (1, 6), 5, seed=0)
    assert orders == random_orders(topo, (1, 6), 5, seed=0)
    assert orders != random_orders(topo, (1, 6), 5, seed=1)
    assert [k for k, _ in orders] == [k for k in range(1, 7) for _ in range(5)]
    n = topo.n_units
    for _, order in orders:
        validate_plan(Plan(order=order), topo)
        assert order[3] == 3 and order[6] == 6
        assert set(order[0:3]) == {0, 1, 2} and set(order[4:6]) == {4, 5} and set(order[7:9]) == {7, 8}
        # No ties: tau = 1 - 4 * inversions / (n (n - 1)).
        assert order_tau(order) == pytest.approx(1 - 4 * _inversions(order) / (n * (n - 1)), abs=1e-12)
    assert order_tau(tuple(range(9))) == 1.0
    assert order_tau((1, 0, 2, 3, 4, 5, 6, 7, 8)) == pytest.approx(1 - 4 / 72)
    assert any(order != tuple(range(9)) for _, order in orders)


def test_reorder_scores_match_direct_scores_and_round_trip(resnet20: LoadedModel) -> None:
    ctx = _ctx(resnet20, seed=2)
    result = ReorderAnalysis().run(ctx, swaps="1:3", samples=3)
    assert len(result.configs) == 9 and [c.swaps for c in result.configs] == [1, 1, 1, 2, 2, 2, 3, 3, 3]
    assert result.swappable == ((0, 1, 2), (4, 5), (7, 8))
    orders = random_orders(resnet20.topology, (1, 3), 3, seed=2)
    assert [c.order for c in result.configs] == [o for _, o in orders]
    direct = score_plans(ctx.executor, ctx.data, [Plan()] + [Plan(order=o) for _, o in orders], batch_size=5)
    assert result.baseline.correct == direct[0].correct
    assert [c.correct for c in result.configs] == [s.correct for s in direct[1:]]
    assert all(-1.0 <= c.kendall_tau <= 1.0 for c in result.configs)
    doc = json.loads(json.dumps(result.to_dict()))
    assert set(doc["configs"][0]) == {"swaps", "order", "kendall_tau", "accuracy", "correct", "loss", "ci",
                                      "p_value", "p_adjusted", "significant", "hits", "n"}
    assert set(doc["baseline"]) == {"accuracy", "correct", "n", "loss", "ci", "hits", "value", "values", "kind"}
    assert ReorderResult.from_dict(doc) == result
    from resnet_probe.stats import bootstrap_mean_interval

    assert [r.k for r in result.per_swaps] == [1, 2, 3]
    for r in result.per_swaps:
        acc = [c.accuracy for c in result.configs if c.swaps == r.k]
        assert r.orders == 3 and r.mean_accuracy == pytest.approx(sum(acc) / 3)
        assert r.ci == bootstrap_mean_interval(acc, 0.95, seed=2 + r.k)
        assert r.significant == sum(c.significant for c in result.configs if c.swaps == r.k)
    again = ReorderAnalysis().run(_ctx(resnet20, seed=2), swaps="1:3", samples=3)
    assert json.dumps(again.to_dict()) == json.dumps(result.to_dict())
    other = ReorderAnalysis().run(_ctx(resnet20, seed=3), swaps="1:3", samples=3)
    assert [c.order for c in other.configs] != [c.order for c in result.configs]


def test_reorder_option_errors(resnet20: LoadedModel) -> None:
    for swaps in ("0:3", "4:2", "x", "1:100000"):
        with pytest.raises(PlanError, match="swaps"):
            ReorderAnalysis().run(_ctx(resnet20), swaps=swaps)
    with pytest.raises(PlanError, match="samples 0"):
        ReorderAnalysis().run(_ctx(resnet20), swaps="1:2", samples=0)


def test_reorder_report_reads_the_trend(resnet20: LoadedModel) -> None:
    result = ReorderAnalysis().run(_ctx(resnet20), swaps="1:4", samples=2)
    record = RunRecord("reorder", {"spec": "zoo:resnet20"}, None, 0, "cpu", result.to_dict())
    html = render_report(record, result)
    assert html.count("<svg") == 2
    assert "the downsampling units 3 (layer2.0), 6 (layer3.0) stay where they are" in html
    assert "zoo:resnet20 reaches" in html and "Kendall τ" in html


def test_reorder_per_swaps_band_needs_five_orders_and_reading_gives_the_sample_size(resnet20: LoadedModel) -> None:
    few = ReorderAnalysis().run(_ctx(resnet20), swaps="1:2", samples=2)
    many = ReorderAnalysis().run(_ctx(resnet20), swaps="1:2", samples=5)
    for result, bands in ((few, 0), (many, 1)):
        record = RunRecord("reorder", {"spec": "zoo:resnet20"}, None, 0, "cpu", result.to_dict())
        html = render_report(record, result)
        assert html.count("95 % bootstrap interval of the mean") == bands  # the legend entry of the band
        assert f"Sample size: with 16 images and {len(result.configs)} paired tests" in html
        assert "reordered networks differ significantly from the original order" in html
