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
from resnet_probe.structure import Topology, identity


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


class CrossStage(nn.Module):
    """A CSP stage: residual units on one half of the channels while the other half waits for the concatenation."""

    def __init__(self) -> None:
        super().__init__()
        self.a, self.b, self.f = nn.Linear(4, 2), nn.Linear(4, 2), nn.Linear(2, 2)

    def forward(self, x: Tensor) -> Tensor:
        a, b = self.a(x), self.b(x)
        b = b + self.f(b)
        return torch.cat([a, b], 1)


@pytest.mark.parametrize(
    ("model", "inner"), [(Nested(), "1 residual addition closes"), (GlobalSkip(), "2 residual additions close")]
)
def test_residuals_that_close_no_unit_stay_inside_the_unit_that_holds_them(model: nn.Module, inner: str) -> None:
    """A residual inside a residual branch (or a skip over two units) is part of the one unit around it."""
    topo = adapter.build(model)
    assert topo.n_units == 1 and topo.units[0].shortcut_kind == "identity"
    note = next(n for n in topo.notes if "no unit" in n)
    assert note.startswith(inner) and "inside residual branches, as part of them" in note and "in unit unit0" in note
    x = rows()
    with torch.no_grad():
        assert torch.equal(topo.forward(x), model(x))
        assert torch.equal(topo.units[0].forward_deleted(x), x)


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


class SizeCarried(nn.Module):
    """Token units that carry the grid size (H, W) of an earlier map past their additions (PVT, Twins)."""

    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Conv2d(3, 4, 2, stride=2)
        self.f, self.g = nn.Linear(4, 4), nn.Linear(4, 4)

    def forward(self, x: Tensor) -> Tensor:
        x = self.embed(x)
        h, w = x.shape[2:]
        x = x.flatten(2).transpose(1, 2)
        x = x + self.f(x)
        x = x + self.g(x)
        return x.transpose(1, 2).reshape(x.shape[0], 4, h, w)


class Pair(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.f = nn.Linear(4, 4)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        return x + self.f(x), x


@pytest.mark.parametrize(
    ("model", "reason"),
    [
        (CrossStage(), "no addition closes a unit: add in the model's own forward is one, but the output of a"),
        (Branchy(), "torch.fx cannot trace Branchy.forward itself (TraceError: symbolically traced variables"),
        (TwoInputs(), "forward takes more than one input ('y' has no default)"),
        (Twins(), "no addition closes a unit"),  # a(x) + b(x): two parallel branches, no residual unit
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


class Gate(nn.Module):
    """Python control flow on a tensor value inside a submodule: fx cannot trace into it."""

    def __init__(self) -> None:
        super().__init__()
        self.f = nn.Linear(4, 4)

    def forward(self, x: Tensor) -> Tensor:
        return self.f(x) if x.sum() > -1e9 else -self.f(x)


class WithGate(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a, self.gate, self.b = nn.Linear(4, 4), Gate(), nn.Linear(4, 4)

    def forward(self, x: Tensor) -> Tensor:
        x = x + self.a(x)
        x = x + self.gate(torch.relu(x))
        return x + self.b(x)


def test_a_submodule_fx_cannot_trace_runs_whole_and_is_named() -> None:
    model = WithGate().eval()
    topo = adapter.build(model)
    assert [u.name for u in topo.units] == ["a", "gate", "b"]
    assert any("cannot trace into gate (Gate)" in n and "TraceError" in n for n in topo.notes)
    x = rows()
    with torch.no_grad():
        assert torch.equal(topo.forward(x), model(x))
        torch.testing.assert_close(Executor(topo).forward(x, Plan.delete(1)), x + model.a(x) + model.b(x + model.a(x)))


class InPlace(nn.Module):
    """``out = f(x); out.relu_(); out += x``: writes whose results are not assigned."""

    def __init__(self) -> None:
        super().__init__()
        self.f, self.g = nn.Linear(4, 4), nn.Linear(4, 4)

    def forward(self, x: Tensor) -> Tensor:
        out = self.f(x)
        out.relu_()
        out += x
        y = self.g(out)
        y.mul_(0.5)
        return y


def test_in_place_writes_are_read_as_data_flow() -> None:
    model = InPlace().eval()
    topo = adapter.build(model)
    assert topo.n_units == 1 and topo.units[0].shortcut_kind == "identity"
    x = rows()
    with torch.no_grad():
        assert torch.equal(topo.forward(x), model(x))
        h = x.clone()
        topo.units[0].forward(h)
        assert torch.equal(h, x)  # the unit's input is never written


class Tokens(nn.Module):
    """``B, N, C = x.shape`` read before a unit's addition and used after it, as timm's Swin blocks do."""

    def __init__(self) -> None:
        super().__init__()
        self.f, self.g, self.head = nn.Linear(4, 4), nn.Linear(4, 4), nn.Linear(4, 3)

    def forward(self, x: Tensor) -> Tensor:
        b, n, c = x.shape
        x = x.reshape(b, n // 2, 2, c)
        x = x + self.f(x)
        x = x.reshape(b, n, c)
        x = x + self.g(x)
        return self.head(x.mean(1))


def test_sizes_are_recomputed_from_each_units_input() -> None:
    model = Tokens().eval()
    topo = adapter.build(model)
    assert topo.n_units == 2 and adapter.LAYOUT_NOTE in topo.notes
    for batch in (2, 5):  # any batch size, not the one of a trace
        x = torch.randn(batch, 6, 4)
        with torch.no_grad():
            assert torch.equal(topo.forward(x), model(x))
            expected = model.head((x + model.f(x.reshape(batch, 3, 2, 4)).reshape(batch, 6, 4)).mean(1))
            torch.testing.assert_close(Executor(topo).forward(x, Plan.delete(1)), expected)


def test_sizes_carried_past_units_are_measured_per_resolution() -> None:
    """PVT-like: H, W of the patch grid are read once and used after both units; the stem measures them."""
    torch.manual_seed(0)
    model = SizeCarried().eval()
    topo = adapter.build(model)
    assert topo.n_units == 2 and [u.name for u in topo.units] == ["f", "g"]
    for shape in [(2, 3, 8, 8), (3, 3, 6, 10), (2, 3, 8, 8)]:  # resolutions come and go
        x = torch.randn(*shape)
        with torch.no_grad():
            assert torch.equal(topo.forward(x), model(x))
    ex = Executor(topo, stack=3)  # three plans in one batch: sizes that grow with the batch follow
    x = torch.randn(2, 3, 8, 8)
    got = ex.run_plans(x, [Plan(), Plan.delete(0), Plan.delete(1)], reduce=lambda z: z.clone())
    with torch.no_grad():
        h = model.embed(x).flatten(2).transpose(1, 2)
        without_f = h + model.g(h)
        expected = [model(x), without_f.transpose(1, 2).reshape(2, 4, 4, 4)]
    torch.testing.assert_close(got[0], expected[0], rtol=0, atol=1e-6)
    torch.testing.assert_close(got[1], expected[1], rtol=0, atol=1e-6)


def test_a_unit_that_needs_measured_sizes_says_so_before_the_stem_ran() -> None:
    topo = adapter.build(SizeCarried().eval())
    with pytest.raises(AdapterError, match="run the stem first"):
        topo.head(torch.randn(2, 4, 4))
