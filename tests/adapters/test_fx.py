"""The torch.fx fallback: residual units of unknown chain-structured models, and clear refusals."""

from __future__ import annotations

import pytest
import torch
from torch import Tensor, nn
from torchvision import models

from resnet_probe.adapters import build_topology
from resnet_probe.adapters import fx as adapter
from resnet_probe.adapters import torchvision as tv_adapter
from resnet_probe.errors import AdapterError, ProbeError
from resnet_probe.executor import Executor, Plan
from resnet_probe.models.load import load_model
from resnet_probe.topology import Topology, identity


class ResidualMLP(nn.Module):
    """Three ``x = x + mlp_i(x)``, then ``relu(proj(x) + wide(x))``, a LayerNorm, ``relu(x + last(x))``."""

    def __init__(self, d: int = 8, hidden: int = 16, width: int = 12, classes: int = 3) -> None:
        super().__init__()
        self.inp = nn.Linear(4, d)
        self.blocks = nn.ModuleList(
            nn.Sequential(nn.Linear(d, hidden), nn.ReLU(), nn.Linear(hidden, d)) for _ in range(3)
        )
        self.proj = nn.Linear(d, width)
        self.wide = nn.Sequential(nn.Linear(d, hidden), nn.GELU(), nn.Dropout(0.5), nn.Linear(hidden, width))
        self.norm = nn.LayerNorm(width)
        self.last = nn.Linear(width, width)
        self.act = nn.ReLU(inplace=True)
        self.head = nn.Linear(width, classes)

    def forward(self, x: Tensor) -> Tensor:
        return self.run(x)

    def run(self, x: Tensor, skip: int | None = None) -> Tensor:
        """The forward pass, by hand, without the residual branch of unit ``skip``."""
        x = self.inp(x)
        for i, block in enumerate(self.blocks):
            x = x if i == skip else x + block(x)
        x = self.act(self.proj(x) if skip == 3 else self.proj(x) + self.wide(x))
        x = self.norm(x)
        x = self.act(x if skip == 4 else x + self.last(x))
        return self.head(x)


def mlp() -> ResidualMLP:
    """The residual MLP with fixed random weights, in eval mode."""
    torch.manual_seed(0)
    return ResidualMLP().eval()


def rows(n: int = 5, seed: int = 1) -> Tensor:
    """A small batch of 4-feature inputs."""
    return torch.randn(n, 4, generator=torch.Generator().manual_seed(seed))


def test_residual_mlp_units() -> None:
    model = mlp()
    topo = adapter.build(model)
    assert topo.family == "fx" and topo.n_units == 5
    assert [u.name for u in topo.units] == ["blocks.0", "blocks.1", "blocks.2", "wide", "last"]
    assert [u.shortcut_kind for u in topo.units] == ["identity"] * 3 + ["projection", "identity"]
    assert [u.stage for u in topo.units] == [1, 1, 1, 2, 3]
    assert sorted(topo.transitions) == [4]
    assert [(u.in_channels, u.out_channels) for u in topo.units] == [(8, 8)] * 3 + [(8, 12), (12, 12)]
    assert [u.post is identity for u in topo.units] == [True, True, True, False, False]
    assert topo.units[0].module is model.blocks[0] and topo.units[3].module is model.wide
    assert all(not u.responses for u in topo.units)
    for note in (adapter.FALLBACK_NOTE, adapter.POST_NOTE, adapter.TRANSITION_NOTE, adapter.PROJECTION_NOTE):
        assert note in topo.notes


def test_forward_equals_model() -> None:
    model = mlp()
    topo = adapter.build(model)
    x = rows()
    with torch.no_grad():
        expected = model(x)
        torch.testing.assert_close(topo.forward(x), expected, rtol=0, atol=1e-6)
        torch.testing.assert_close(Executor(topo).forward(x), expected, rtol=0, atol=1e-6)


@pytest.mark.parametrize("unit", range(5))
def test_deleting_a_unit_equals_the_forward_without_its_branch(unit: int) -> None:
    model = mlp()
    topo = adapter.build(model)
    x = rows()
    got = Executor(topo).forward(x, Plan.delete(unit))
    with torch.no_grad():
        expected, full = model.run(x, skip=unit), model(x)
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-6)
    assert not torch.allclose(got, full)


def test_in_place_post_never_writes_into_the_shared_input() -> None:
    model = mlp()
    topo = adapter.build(model)
    with torch.no_grad():
        h = torch.randn(5, 12)
        before = h.clone()
        deleted = topo.units[4].forward_deleted(h)  # post is ReLU(inplace=True) on the identity shortcut
        assert torch.equal(h, before) and torch.equal(deleted, torch.relu(before))
    assert model.act.inplace  # the model's own layer is untouched


def test_build_traces_in_eval_mode_and_restores_flags() -> None:
    model = mlp().train()
    state = {k: v.clone() for k, v in model.state_dict().items()}
    topo = adapter.build(model)
    assert all(m.training for m in model.modules())
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in state.items())
    x = rows()
    ex = Executor(topo)
    got = ex.forward(x)  # the executor runs in eval mode: dropout off
    with torch.no_grad():
        expected = model.eval()(x)
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-6)
    assert adapter.EVAL_NOTE in topo.notes


def test_dispatch_reaches_the_fallback_last() -> None:
    assert build_topology(mlp()).family == "fx"
    assert build_topology(models.resnet18()).family == "torchvision-resnet"  # a named adapter wins


def randomize_bn(model: nn.Module) -> nn.Module:
    """Random BN statistics and scales, so deleted branches are far from zero."""
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.copy_(0.1 * torch.randn(m.num_features, generator=g))
                m.running_var.copy_(0.5 + torch.rand(m.num_features, generator=g))
                m.weight.copy_(0.5 + 0.5 * torch.rand(m.num_features, generator=g))
    return model.eval()


@pytest.mark.parametrize("source", ["torchvision", "zoo"])
def test_fallback_agrees_with_the_named_adapter(source: str) -> None:
    """The fallback on a ResNet finds the adapter's units, and every single deletion agrees."""
    torch.manual_seed(0)
    if source == "torchvision":
        model = randomize_bn(models.resnet18(num_classes=10))
        named: Topology = tv_adapter.build(model)
    else:
        loaded = load_model("zoo:resnet20", weights="random")
        model, named = randomize_bn(loaded.model), loaded.topology
    traced = adapter.build(model)
    assert [u.name for u in traced.units] == [u.name for u in named.units]
    assert [u.shortcut_kind == "identity" for u in traced.units] == [
        u.shortcut_kind == "identity" for u in named.units
    ]
    assert all(u.post is not identity for u in traced.units)  # relu after every addition
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(2))
    plans = [Plan()] + [Plan.delete(i) for i in range(named.n_units)]
    a = Executor(named).run_plans(x, plans, reduce=lambda z: z.clone())
    b = Executor(traced).run_plans(x, plans, reduce=lambda z: z.clone())
    for p, q in zip(a, b, strict=True):
        torch.testing.assert_close(q, p, rtol=0, atol=1e-5)


class Nested(nn.Module):
    """``x + g(x + h(x))``: a residual inside a residual branch."""

    def __init__(self) -> None:
        super().__init__()
        self.h, self.g = nn.Linear(4, 4), nn.Linear(4, 4)

    def forward(self, x: Tensor) -> Tensor:
        return x + self.g(x + self.h(x))


class GlobalSkip(nn.Module):
    """Two units wrapped in one skip that spans both."""

    def __init__(self) -> None:
        super().__init__()
        self.f, self.g = nn.Linear(4, 4), nn.Linear(4, 4)

    def forward(self, x: Tensor) -> Tensor:
        y = x + self.f(x)
        y = y + self.g(y)
        return x + y


class Branchy(nn.Module):
    """Python control flow on a tensor value: not traceable."""

    def __init__(self) -> None:
        super().__init__()
        self.f = nn.Linear(4, 4)

    def forward(self, x: Tensor) -> Tensor:
        if x.sum() > 0:
            return x + self.f(x)
        return x


class TwoInputs(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.f = nn.Linear(4, 4)

    def forward(self, x: Tensor, y: Tensor) -> Tensor:
        return x + self.f(y)


class Twins(nn.Module):
    """``a(x) + b(x)`` with branches of one layer each: no way to tell the shortcut."""

    def __init__(self) -> None:
        super().__init__()
        self.a, self.b = nn.Linear(4, 4), nn.Linear(4, 4)

    def forward(self, x: Tensor) -> Tensor:
        return self.a(x) + self.b(x)


class Pair(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.f = nn.Linear(4, 4)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        return x + self.f(x), x


@pytest.mark.parametrize(
    ("model", "reason"),
    [
        (Nested(), "do not form a chain of units"),
        (GlobalSkip(), "do not form a chain of units"),
        (Branchy(), "torch.fx cannot trace it"),
        (TwoInputs(), "forward takes more than one input ('y' has no default)"),
        (Twins(), "cannot tell the shortcut from the residual branch"),
        (Pair(), "returns a tuple"),
        (nn.Sequential(nn.Linear(4, 4), nn.ReLU(), nn.Linear(4, 2)), "no addition of two computed values"),
    ],
)
def test_refusals_are_one_line(model: nn.Module, reason: str) -> None:
    with pytest.raises(AdapterError) as exc:
        build_topology(model)
    message = str(exc.value)
    assert isinstance(exc.value, ProbeError) and "\n" not in message
    assert message.startswith(f"could not find residual units in {type(model).__name__} by tracing: ")
    assert reason in message and message.endswith("write an adapter (see resnet_probe/adapters/)")
