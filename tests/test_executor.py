"""The executor against hand-built forwards: plans, prefix reuse, reordering, no mutation."""

from __future__ import annotations

import dataclasses
import random

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from resnet_probe.errors import DeviceError, PlanError
from resnet_probe.executor import Executor, Plan, resolve_device, validate_plan
from resnet_probe.models.load import load_model
from resnet_probe.models.zoo.cifar import CifarResNet
from resnet_probe.structure import Topology

MODELS = ("resnet20", "resnet20_b", "resnet20_c", "plain20", "preact_resnet20")


def _randomise_bn(model: nn.Module, seed: int) -> None:
    """Running statistics away from (0, 1), so that a skipped BN would show."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.copy_(0.1 * torch.randn(m.num_features, generator=gen))
                m.running_var.copy_(0.5 + torch.rand(m.num_features, generator=gen))
                m.weight.copy_(1 + 0.1 * torch.randn(m.num_features, generator=gen))
                m.bias.copy_(0.1 * torch.randn(m.num_features, generator=gen))


def _model(name: str) -> tuple[nn.Module, Topology]:
    torch.manual_seed(0)
    lm = load_model(f"zoo:{name}", weights="random")
    _randomise_bn(lm.model, 1)
    lm.model.eval()
    return lm.model, lm.topology


@pytest.fixture(scope="module")
def x() -> Tensor:
    return torch.randn(4, 3, 32, 32, generator=torch.Generator().manual_seed(2))


def _blocks(model: nn.Module) -> list[nn.Module]:
    return [b for s in (1, 2, 3) for b in getattr(model, f"layer{s}")]


def hand_forward(model: CifarResNet, x: Tensor, deleted: set[int] = frozenset(), order=None) -> Tensor:
    """A post-activation CIFAR net written out over its modules, without the topology."""
    blocks = _blocks(model)
    order = list(order) if order is not None else list(range(len(blocks)))
    with torch.no_grad():
        h = F.relu(model.bn1(model.conv1(x)))
        for u in order:
            b = blocks[u]
            if u in deleted:
                h = F.relu(b.shortcut(h)) if b.shortcut is not None else h
                continue
            r = b.bn2(b.conv2(F.relu(b.bn1(b.conv1(h)))))
            h = F.relu(r + b.shortcut(h)) if b.shortcut is not None else F.relu(r)
        return model.linear(F.avg_pool2d(h, h.size(3)).flatten(1))


def naive_forward(topology: Topology, x: Tensor, plan: Plan) -> Tensor:
    """One plan, start to end, no sharing: the reference for the prefix-reusing executor."""
    with torch.inference_mode():
        h = topology.stem(x)
        for pos, (u, deleted) in enumerate(plan.steps(topology.n_units)):
            if pos in topology.transitions:
                h = topology.transitions[pos](h)
            unit = topology.units[u]
            h = unit.forward_deleted(h) if deleted else unit.forward(h)
        return topology.head(h)


@pytest.mark.parametrize("name", MODELS)
def test_empty_plan_equals_the_model(name: str, x: Tensor) -> None:
    model, topology = _model(name)
    with torch.no_grad():
        expected = model(x)
    got = Executor(topology, "cpu").forward(x)
    assert got.shape == (4, 10)
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-5)


@pytest.mark.parametrize("name", ("resnet20", "resnet20_b", "resnet20_c", "plain20"))
def test_deleting_a_unit_equals_a_hand_built_forward_without_its_branch(name: str, x: Tensor) -> None:
    model, topology = _model(name)
    ex = Executor(topology, "cpu")
    torch.testing.assert_close(ex.forward(x), hand_forward(model, x), rtol=0, atol=1e-5)
    for i, unit in enumerate(topology.units):
        if not unit.deletable:
            continue
        got = ex.forward(x, Plan.delete(i))
        want = hand_forward(model, x, {i})
        torch.testing.assert_close(got, want, rtol=0, atol=1e-5)
        assert not torch.allclose(got, hand_forward(model, x), atol=1e-4), f"deleting unit {i} changed nothing"
    both = hand_forward(model, x, {1, 7})
    torch.testing.assert_close(ex.forward(x, Plan.delete(1, 7)), both, rtol=0, atol=1e-5)


def test_option_a_deletion_zeroes_the_padded_channels(x: Tensor) -> None:
    _, topology = _model("resnet20")
    unit = topology.units[3]
    h = torch.randn(2, 16, 32, 32)
    out = unit.forward_deleted(h)
    assert out.shape == (2, 32, 16, 16)
    assert torch.count_nonzero(out[:, :8]) == 0 and torch.count_nonzero(out[:, 24:]) == 0
    assert torch.equal(out[:, 8:24], torch.relu(h[:, :, ::2, ::2]))


def test_reordered_plan_equals_a_hand_built_reordered_forward(x: Tensor) -> None:
    model, topology = _model("resnet20")
    ex = Executor(topology, "cpu")
    order = (2, 0, 1, 3, 5, 4, 6, 8, 7)
    got = ex.forward(x, Plan(order=order))
    torch.testing.assert_close(got, hand_forward(model, x, order=order), rtol=0, atol=1e-5)
    assert not torch.allclose(got, ex.forward(x), atol=1e-4)
    deleted = ex.forward(x, Plan(deleted=frozenset({0, 8}), order=order))
    torch.testing.assert_close(deleted, hand_forward(model, x, {0, 8}, order), rtol=0, atol=1e-5)


def _study_plans(topology: Topology, seed: int = 3) -> list[Plan]:
    """A lesion + reorder study's worth of plans: sweep, random sets, reorders, duplicates."""
    rng = random.Random(seed)
    n = topology.n_units
    deletable = [u.index for u in topology.units if u.deletable]
    plans = [Plan()] + [Plan.delete(i) for i in deletable]
    for k in (2, 3, 5):
        for _ in range(4):
            plans.append(Plan.delete(*rng.sample(deletable, k)))
    groups = [(0, 1, 2), (4, 5), (7, 8)]
    for _ in range(6):
        order = list(range(n))
        for _ in range(rng.randint(1, 4)):
            g = rng.choice(groups)
            a, b = rng.sample(g, 2)
            order[a], order[b] = order[b], order[a]
        plans.append(Plan(order=tuple(order)))
        plans.append(Plan(deleted=frozenset({rng.choice(deletable)}), order=tuple(order)))
    return plans + plans[:3]


@pytest.mark.parametrize("name", ("resnet20", "plain20"))
def test_prefix_reuse_gives_exactly_the_naive_numbers(name: str, x: Tensor) -> None:
    _, topology = _model(name)
    plans = _study_plans(topology)
    got = Executor(topology, "cpu").run_plans(x, plans, reduce=lambda z: z.clone())
    assert len(got) == len(plans)
    for plan, logits in zip(plans, got, strict=True):
        assert torch.equal(logits, naive_forward(topology, x, plan)), plan


def test_single_delete_sweep_shares_prefixes(x: Tensor) -> None:
    _, topology = _model("resnet20")
    calls = [0]

    def counting(fn):
        def residual(h: Tensor) -> Tensor:
            calls[0] += 1
            return fn(h)

        return residual

    units = tuple(dataclasses.replace(u, residual=counting(u.residual)) for u in topology.units)
    counted = dataclasses.replace(topology, units=units)
    n = counted.n_units
    Executor(counted, "cpu").run_plans(x, [Plan()] + [Plan.delete(i) for i in range(n)], reduce=lambda z: 0)
    # Spine: n residual branches; the branch deleting unit i runs only units i+1..n-1.
    assert calls[0] == n + sum(n - 1 - i for i in range(n)) == 45
    calls[0] = 0
    for i in range(n):
        Executor(counted, "cpu").run_plans(x, [Plan.delete(i)], reduce=lambda z: 0)
    assert calls[0] == n * (n - 1) == 72


def _snapshot(model: nn.Module) -> dict[str, Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict(keep_vars=True).items()}


def _no_hooks(model: nn.Module) -> None:
    for name, m in model.named_modules():
        assert not m._forward_hooks, name
        assert not m._forward_pre_hooks, name
        assert not m._backward_hooks, name
        assert not getattr(m, "_forward_hooks_with_kwargs", {}), name


def _untouched(model: nn.Module, before: dict[str, Tensor], flags: dict[str, bool]) -> None:
    after = model.state_dict()
    assert before.keys() == after.keys()
    for k, v in before.items():
        assert torch.equal(v, after[k]), k
    for p in model.parameters():
        assert p.grad is None
    assert {n: m.training for n, m in model.named_modules()} == flags
    _no_hooks(model)


def test_runs_leave_the_model_untouched_even_when_they_raise(x: Tensor) -> None:
    model, topology = _model("resnet20")
    model.train()
    model.layer2[1].eval()  # a mixed state that must come back exactly
    flags = {n: m.training for n, m in model.named_modules()}
    before = _snapshot(model)
    ex = Executor(topology, "cpu")

    ex.run_plans(x, _study_plans(topology), reduce=lambda z: z.argmax(1))
    seen: list[str] = []
    ex.capture(x, lambda name, out: seen.append(name), Plan.delete(4))
    assert len(seen) == 1 + 2 * (topology.n_units - 1)  # the stem BN; the deleted unit's BNs do not run
    routes = torch.randint(0, 2, (x.shape[0], topology.n_units))
    norms = ex.routed_input_grad_norms(x, torch.arange(x.shape[0]), routes)
    assert norms.shape == (x.shape[0],) and bool((norms > 0).all())
    _untouched(model, before, flags)

    def bad_reduce(_z: Tensor) -> None:
        raise RuntimeError("reduce failed")

    with pytest.raises(RuntimeError, match="reduce failed"):
        ex.run_plans(x, [Plan(), Plan.delete(2)], reduce=bad_reduce)
    _untouched(model, before, flags)

    def bad_sink(_name: str, _out: Tensor) -> None:
        raise RuntimeError("sink failed")

    with pytest.raises(RuntimeError, match="sink failed"):
        ex.capture(x, bad_sink)
    _untouched(model, before, flags)
    with pytest.raises(PlanError):
        ex.run_plans(x, [Plan(), Plan.delete(99)], reduce=lambda z: z)
    _untouched(model, before, flags)


def test_plan_validation_errors() -> None:
    _, topology = _model("resnet20")
    _, plain = _model("plain20")
    validate_plan(Plan(deleted=frozenset({0, 8}), order=(1, 0, 2, 3, 4, 5, 6, 8, 7)), topology)
    cases = [
        (Plan.delete(9), topology, "unit index 9 out of range; this model has units 0..8"),
        (Plan.delete(-1), topology, "unit index -1 out of range"),
        (Plan.delete(3), plain, "layer2.0"),
        (Plan(order=(0, 1, 2)), topology, "permutation of 0..8"),
        (Plan(order=(0, 1, 2, 3, 4, 5, 6, 7, 7)), topology, "permutation of 0..8"),
        (Plan(order=(0, 1, 3, 2, 4, 5, 6, 7, 8)), topology, "shapes differ"),
    ]
    for plan, topo, message in cases:
        with pytest.raises(PlanError, match=message) as info:
            validate_plan(plan, topo)
        assert "\n" not in str(info.value)
    with pytest.raises(PlanError, match="precision"):
        Executor(topology, "cpu", precision="fp8")
    with pytest.raises(PlanError, match="routes must have shape"):
        Executor(topology, "cpu").forward_routed(torch.zeros(2, 3, 32, 32), torch.zeros(2, 3))
    with pytest.raises(DeviceError, match="tpu"):
        resolve_device("tpu")


def test_plan_steps() -> None:
    assert Plan.delete(1).steps(3) == ((0, False), (1, True), (2, False))
    assert Plan(frozenset({2}), (2, 0, 1)).steps(3) == ((2, True), (0, False), (1, False))
