"""Depth pruning on the shipped trained ResNet-20: split, the three choices, the smaller model, the saved program."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import torch

import resnet_probe as rp
from resnet_probe.analyses.prune import PruneResult, candidate_units, remove_units, split_indices, subset
from resnet_probe.errors import ProbeError
from resnet_probe.executor import Executor, Plan
from resnet_probe.models.loaded import LoadedModel
from resnet_probe.scoring import score_plans
from resnet_probe.structure import Topology


@pytest.fixture(scope="module")
def model() -> LoadedModel:
    return rp.load_model("resnet20")


@pytest.fixture(scope="module")
def data() -> rp.DataSource:
    return rp.load_data("cifar10-sample", limit=256)


@pytest.fixture(scope="module")
def greedy(model: LoadedModel, data: rp.DataSource) -> PruneResult:
    result = rp.run("prune", model, data, remove=2, method="greedy", batch_size=128)
    assert isinstance(result, PruneResult)
    return result


def _prune(model: LoadedModel, data: rp.DataSource, **options: object) -> PruneResult:
    result = rp.run("prune", model, data, batch_size=128, **options)
    assert isinstance(result, PruneResult)
    return result


def _eval_split(data: rp.DataSource, result: PruneResult) -> rp.DataSource:
    cal, ev = split_indices(len(data), 0.5, result.seed)
    return subset(data, ev)


def test_the_split_is_disjoint_complete_and_seeded() -> None:
    cal, ev = split_indices(256, 0.5, 0)
    assert len(cal) == len(ev) == 128
    assert not set(cal.tolist()) & set(ev.tolist())
    assert sorted(cal.tolist() + ev.tolist()) == list(range(256))
    again, _ = split_indices(256, 0.5, 0)
    other, _ = split_indices(256, 0.5, 1)
    assert np.array_equal(cal, again) and not np.array_equal(cal, other)


def test_the_result_records_the_split(greedy: PruneResult) -> None:
    assert (greedy.calibration_n, greedy.evaluation_n, greedy.seed) == (128, 128, 0)
    assert all(e.n == 128 for e in greedy.evaluations)


def test_subsets_of_tensor_pairs_passed_in() -> None:
    x, y = torch.randn(10, 3, 8, 8), torch.arange(10) % 3
    from resnet_probe.data.given import given_source

    part = subset(given_source((x, y)), np.array([1, 4, 7]))
    px, py = part.obj  # type: ignore[attr-defined]
    assert len(part) == 3 and torch.equal(px, x[[1, 4, 7]]) and torch.equal(py, y[[1, 4, 7]])


def test_last_chooses_the_last_two_units_that_keep_the_shape(model: LoadedModel, data: rp.DataSource) -> None:
    result = _prune(model, data, remove=2, method="last")
    keep = [u.index for u in model.topology.units if not u.downsampling]
    assert result.chosen == tuple(keep[-2:]) == (7, 8)
    assert result.names == ("layer3.1", "layer3.2")
    assert set(result.candidates) == set(keep) and 3 not in result.candidates and 6 not in result.candidates


def test_lesion_chooses_the_two_cheapest_single_deletions_on_the_calibration_split(
    model: LoadedModel, data: rp.DataSource
) -> None:
    result = _prune(model, data, remove=2, method="lesion")
    cal, _ = split_indices(len(data), 0.5, 0)
    pool = candidate_units(model.topology)
    scores = score_plans(Executor(model.topology), subset(data, cal), [Plan.delete(i) for i in pool],
                         batch_size=128, preprocessing=model.preprocessing)
    ranked = sorted(zip(pool, scores, strict=True), key=lambda t: (-t[1].accuracy, t[1].loss, t[0]))
    assert result.chosen == tuple(i for i, _ in ranked[:2])
    singles = {c.unit: c.value for c in result.steps[0].candidates}
    assert singles == {i: s.accuracy for i, s in zip(pool, scores, strict=True)}


def test_greedy_with_one_unit_is_lesion_with_one(model: LoadedModel, data: rp.DataSource) -> None:
    assert _prune(model, data, remove=1).chosen == _prune(model, data, remove=1, method="lesion").chosen


def test_greedy_rounds_each_keep_the_least_harmful_candidate(greedy: PruneResult) -> None:
    assert len(greedy.steps) == 2 and len(set(greedy.chosen)) == 2
    for step in greedy.steps:
        best = max(c.value for c in step.candidates)
        assert step.value == best
        assert step.unit not in greedy.chosen[: step.k - 1]
    assert len(greedy.steps[1].candidates) == len(greedy.candidates) - 1


def test_the_removed_model_is_smaller_and_its_accuracy_is_the_reported_one(
    model: LoadedModel, data: rp.DataSource, greedy: PruneResult
) -> None:
    assert greedy.structural and greedy.after is not None
    assert greedy.after.params < greedy.before.params and greedy.after.flops < greedy.before.flops
    units = [model.topology.units[i] for i in greedy.chosen]
    pruned = remove_units(model.model, units)
    # layer2.2 and layer1.1 are chosen on this split
    assert [len(list(pruned.get_submodule(f"layer{s}").children())) for s in (1, 2, 3)] == [2, 2, 3]
    assert sum(p.numel() for p in pruned.parameters()) == greedy.after.params
    plain = Topology("pruned", pruned, (), lambda h: h, pruned)
    (score,) = score_plans(Executor(plain), _eval_split(data, greedy), [Plan()], batch_size=128,
                           preprocessing=model.preprocessing)
    removed = greedy.evaluation("removed")
    assert removed is not None and (score.correct, score.n) == (removed.correct, removed.n)


def test_removal_equals_masking_for_these_post_activation_units(greedy: PruneResult) -> None:
    # Each unit's input is the previous relu's output, so the kept relu(x) of a deletion is x itself.
    assert greedy.removed_equals_masked and greedy.max_abs_difference is not None
    masked, removed = greedy.evaluation("masked"), greedy.evaluation("removed")
    assert masked is not None and removed is not None and masked.correct == removed.correct


def test_the_drop_is_tested_against_the_unpruned_model(greedy: PruneResult) -> None:
    base, removed = greedy.evaluation("unpruned"), greedy.evaluation("removed")
    assert base is not None and removed is not None
    assert base.ci[0] <= base.accuracy <= base.ci[1] and removed.ci[0] <= removed.accuracy <= removed.ci[1]
    assert 0 <= removed.p_value <= 1 and removed.lost >= 0 and removed.gained >= 0


def test_the_json_round_trip_and_the_frame(greedy: PruneResult) -> None:
    assert PruneResult.from_dict(json.loads(json.dumps(greedy.to_dict()))) == greedy
    frame = greedy.to_frame()
    assert list(frame["split"]) == ["calibration"] * 2 + ["evaluation"] * 3


def test_a_saved_program_reloads_with_the_same_accuracy(
    model: LoadedModel, data: rp.DataSource, tmp_path: Path
) -> None:
    path = tmp_path / "pruned.pt2"
    result = _prune(model, data, remove=2, method="last", save=str(path))
    assert result.saved == str(path) and path.exists()
    reloaded = rp.load_model(str(path))
    # The program holds the network only: its inputs are preprocessed as the unpruned model's were.
    reloaded = dataclasses.replace(reloaded, preprocessing=model.preprocessing)
    score = rp.evaluate(reloaded, _eval_split(data, result), batch_size=128)
    removed = result.evaluation("removed")
    assert removed is not None and (score.correct, score.n) == (removed.correct, removed.n)


@pytest.mark.parametrize("options", [
    {"method": "nope"}, {"remove": 0}, {"calibration": 1.5}, {"calibration": 0.0}, {"remove": 8},
    {"remove": "two"},
])
def test_bad_options_are_one_line(model: LoadedModel, data: rp.DataSource, options: dict[str, object]) -> None:
    with pytest.raises(ProbeError) as info:
        _prune(model, data, **options)
    assert "\n" not in str(info.value)
    if options.get("method") == "nope":
        assert "greedy, lesion, last" in str(info.value)
    if options.get("remove") == 8:  # 9 units, two of them downsampling
        assert "at most 7" in str(info.value)


def test_a_split_with_an_empty_part_is_refused() -> None:
    with pytest.raises(ProbeError, match="evaluation"):
        split_indices(3, 0.9, 0)


def test_the_users_model_is_untouched(model: LoadedModel, data: rp.DataSource, tmp_path: Path) -> None:
    before = {k: v.clone() for k, v in model.model.state_dict().items()}
    _prune(model, data, remove=1, method="last", save=str(tmp_path / "p.pt2"))
    after = model.model.state_dict()
    assert before.keys() == after.keys() and all(torch.equal(before[k], after[k]) for k in before)
    assert len(list(model.model.get_submodule("layer3").children())) == 3
    for m in model.model.modules():
        assert not m._forward_hooks and not m._forward_pre_hooks


class _Block(torch.nn.Module):
    """relu(x + conv(x)): a post-activation unit."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 3, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(x + self.conv(x))


class _Net(torch.nn.Module):
    """A stem without an activation, so a unit's input has negative values."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = torch.nn.Conv2d(3, 3, 1)
        self.blocks = torch.nn.Sequential(_Block(), _Block())
        self.head = torch.nn.Sequential(torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(3, 4))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.blocks(self.stem(x)))


def test_a_removal_that_is_not_the_masked_deletion_is_reported() -> None:
    from resnet_probe.analyses.base import RunContext
    from resnet_probe.analyses.prune import PruneAnalysis
    from resnet_probe.data.given import given_source
    from resnet_probe.models.module import module_spec
    from resnet_probe.structure import Unit, identity, relu

    torch.manual_seed(0)
    net = _Net().eval()
    blocks = list(net.blocks.children())
    units = tuple(
        Unit(i, f"blocks.{i}", 1, 3, 3, 1, False, "identity", identity, b.conv, relu, b)  # type: ignore[arg-type]
        for i, b in enumerate(blocks)
    )
    topology = Topology("hand", net.stem, units, net.head, net)
    assert torch.equal(topology.forward(torch.ones(1, 3, 4, 4)), net(torch.ones(1, 3, 4, 4)))
    loaded = LoadedModel(net, module_spec(net), topology, 4)
    x, y = torch.randn(40, 3, 4, 4), torch.arange(40) % 4
    ctx = RunContext(loaded=loaded, executor=Executor(topology), data=given_source((x, y)), batch_size=8)
    result = PruneAnalysis().run(ctx, remove=1, method="last")
    # unit 1's input is unit 0's relu output: deleting it (relu(x) = x) is removing it
    assert result.structural and result.chosen == (1,) and result.removed_equals_masked
    # unit 0's input comes from a stem without an activation: deleting it keeps relu(x), removing it does not
    only_first = Topology("hand", net.stem, units[:1], lambda h: net.head(blocks[1](h)), net)
    ctx0 = RunContext(loaded=dataclasses.replace(loaded, topology=only_first), executor=Executor(only_first),
                      data=given_source((x, y)), batch_size=8)
    result0 = PruneAnalysis().run(ctx0, remove=1, method="last")
    assert result0.chosen == (0,) and result0.structural
    assert not result0.removed_equals_masked and result0.max_abs_difference is not None
    assert result0.max_abs_difference > 1e-4
    assert any("activation after the sum" in n for n in result0.notes)
    masked, removed = result0.evaluation("masked"), result0.evaluation("removed")
    assert masked is not None and removed is not None and masked.n == removed.n == 20
