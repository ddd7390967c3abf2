"""Units beyond the plain sum in the executor: dense layers, OSA modules, scaled and gated units.

Deletion, prefix sharing, reordering and path-gradient routes, each against a forward written
out by hand over the model's own weights.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from resnet_probe.analyses.base import RunContext
from resnet_probe.analyses.gradients import GradientsAnalysis
from resnet_probe.analyses.lesion import LesionAnalysis
from resnet_probe.analyses.reorder import ReorderAnalysis
from resnet_probe.data import load_data
from resnet_probe.errors import PlanError
from resnet_probe.executor import Executor, Plan, validate_plan
from resnet_probe.models.load import load_model
from resnet_probe.models.loaded import LoadedModel
from resnet_probe.models.zoo import densenet as dn
from tests.models.zoo._helpers import randomise_bn


@pytest.fixture(autouse=True, scope="module")
def _single_thread() -> Iterator[None]:
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _loaded(name: str, seed: int = 0) -> LoadedModel:
    torch.manual_seed(seed)
    lm = load_model(f"zoo:{name}", weights="random")
    randomise_bn(lm.model, seed + 1)
    lm.model.eval()
    return lm


def _bn(bn: nn.BatchNorm2d, x: Tensor) -> Tensor:
    return F.batch_norm(x, bn.running_mean, bn.running_var, bn.weight, bn.bias, False, 0.0, bn.eps)


def _new_maps(layer: dn.DenseLayer, h: Tensor) -> Tensor:
    """A dense layer's k new maps, from its weights."""
    if layer.bottleneck:
        h = F.conv2d(F.relu(_bn(layer.norm1, h)), layer.conv1.weight)
        return F.conv2d(F.relu(_bn(layer.norm2, h)), layer.conv2.weight, padding=1)
    return F.conv2d(F.relu(_bn(layer.norm1, h)), layer.conv1.weight, padding=1)


def dense_forward(model: Any, x: Tensor, zeroed: frozenset[int] = frozenset()) -> Tensor:
    """A CIFAR DenseNet written out layer by layer; the layers in ``zeroed`` add zeros instead of new maps."""
    with torch.no_grad():
        h = F.conv2d(x, model.stem.weight, padding=1)
        index = 0
        for b, block in enumerate(model.blocks):
            if b > 0:
                t = model.transitions[b - 1]
                h = F.avg_pool2d(F.conv2d(F.relu(_bn(t.norm, h)), t.conv.weight), 2)
            for layer in block:
                new = _new_maps(layer, h)
                h = torch.cat([h, torch.zeros_like(new) if index in zeroed else new], 1)
                index += 1
        return model.classifier(F.relu(_bn(model.norm, h)).mean((2, 3)))


@pytest.fixture(scope="module")
def x() -> Tensor:
    return torch.randn(3, 3, 32, 32, generator=torch.Generator().manual_seed(7))


# --- DenseNet: concatenating units ---------------------------------------------------------


@pytest.mark.parametrize("name", ["densenet40_k12", "densenet_bc100_k12"])
def test_densenet_deletion_zeroes_the_new_maps(name: str, x: Tensor) -> None:
    lm = _loaded(name)
    ex = Executor(lm.topology, "cpu")
    n = lm.topology.n_units
    torch.testing.assert_close(ex.forward(x), dense_forward(lm.model, x), rtol=0, atol=1e-5)
    for deleted in ({0}, {n // 3}, {n - 1}, {2, 5, n // 2}):
        got = ex.forward(x, Plan.delete(*deleted))
        want = dense_forward(lm.model, x, frozenset(deleted))
        torch.testing.assert_close(got, want, rtol=0, atol=1e-5)
        assert (got - ex.forward(x)).abs().max() > 1e-4  # the deletion changes the logits
    unit = lm.topology.units[4]
    h = torch.randn(2, unit.in_channels, 8, 8)
    out = unit.forward_deleted(h)
    assert out.shape == (2, unit.out_channels, 8, 8)
    assert torch.equal(out[:, : unit.in_channels], h) and not out[:, unit.in_channels :].any()


def test_densenet_prefix_sharing_equals_one_plan_at_a_time(x: Tensor) -> None:
    lm = _loaded("densenet40_k12")
    ex = Executor(lm.topology, "cpu")
    plans = [Plan()] + [Plan.delete(i) for i in range(0, 36, 5)] + [Plan.delete(3, 30)]
    shared = ex.run_plans(x, plans, reduce=lambda z: z.clone())
    for plan, logits in zip(plans, shared, strict=True):
        torch.testing.assert_close(logits, dense_forward(lm.model, x, plan.deleted), rtol=0, atol=1e-5)


def test_densenet_lesion_delete_equals_the_hand_written_forward() -> None:
    lm = _loaded("densenet40_k12")
    data = load_data("digits", limit=24)
    ctx = RunContext(lm, Executor(lm.topology, "cpu"), data, batch_size=8, seed=0)
    result = LesionAnalysis().run(ctx, delete="blocks.1.3")
    (config,) = result.configs
    assert config.deleted == (15,) and config.names == ("blocks.1.3",)
    correct = {"kept": 0, "deleted": 0}
    for xb, yb in data.batches(8, preprocessing=lm.preprocessing):
        correct["kept"] += int((dense_forward(lm.model, xb).argmax(1) == yb).sum())
        correct["deleted"] += int((dense_forward(lm.model, xb, frozenset({15})).argmax(1) == yb).sum())
    assert (result.baseline.correct, config.correct) == (correct["kept"], correct["deleted"])
    assert config.accuracy == correct["deleted"] / 24


def test_dense_layers_never_swap() -> None:
    lm = _loaded("densenet40_k12")
    order = list(range(36))
    order[1], order[2] = 2, 1
    with pytest.raises(PlanError, match="shapes differ"):
        validate_plan(Plan(order=tuple(order)), lm.topology)
    ctx = RunContext(lm, Executor(lm.topology, "cpu"), load_data("digits", limit=8), batch_size=8)
    with pytest.raises(PlanError, match="equal shapes"):
        ReorderAnalysis().run(ctx)


def _routed_reference(model: Any, x: Tensor, route: list[int]) -> Tensor:
    """The DenseNet with each layer's new maps (route 1) or its passed-on maps (route 0) detached."""
    h = F.conv2d(x, model.stem.weight, padding=1)
    index = 0
    for b, block in enumerate(model.blocks):
        if b > 0:
            h = model.transitions[b - 1](h)
        for layer in block:
            new = layer.branch(h)
            h = torch.cat([h.detach(), new] if route[index] else [h, new.detach()], 1)
            index += 1
    return model.classifier(F.relu(model.norm(h)).mean((2, 3)))


def test_densenet_routes_pass_the_new_or_the_passed_on_maps(x: Tensor) -> None:
    lm = _loaded("densenet40_k12")
    ex = Executor(lm.topology, "cpu")
    y = torch.tensor([1, 4, 7])
    gen = torch.Generator().manual_seed(3)
    routes = (torch.rand(3, 36, generator=gen) < 0.3).float()
    routes[0] = 0  # the length-0 path: the stem's output passed on to the head
    with torch.no_grad():
        torch.testing.assert_close(ex.forward_routed(x, routes), ex.forward(x), rtol=0, atol=1e-5)
    norms = ex.routed_input_grad_norms(x, y, routes)
    for b in range(3):
        xb = x[b : b + 1].clone().requires_grad_(True)
        loss = F.cross_entropy(_routed_reference(lm.model, xb, routes[b].int().tolist()), y[b : b + 1])
        (grad,) = torch.autograd.grad(loss, xb)
        torch.testing.assert_close(norms[b], grad.norm(), rtol=1e-4, atol=1e-8)
    assert norms.min() > 0


# --- VoVNet: OSA modules -------------------------------------------------------------------


def test_vovnet_deletion_keeps_the_length_zero_path(x: Tensor) -> None:
    lm = _loaded("vovnet_ese_cifar")
    ex = Executor(lm.topology, "cpu")
    with torch.no_grad():
        torch.testing.assert_close(ex.forward(x), lm.model(x), rtol=0, atol=1e-5)
        for deleted in (1, 2, 5):
            h = lm.model.stem(x)
            index = 0
            for down, stage in zip(lm.model.downsamples, lm.model.stages, strict=True):
                h = down(h)
                for m in stage:
                    outs = m.chain(h)
                    h = m.aggregate(h, [torch.zeros_like(o) for o in outs] if index == deleted else outs)
                    index += 1
            want = lm.model.classifier(h.mean((2, 3)))
            torch.testing.assert_close(ex.forward(x, Plan.delete(deleted)), want, rtol=0, atol=1e-5)


def test_vovnet_refuses_path_gradient_routes_in_one_line(x: Tensor) -> None:
    lm = _loaded("vovnet_cifar")
    ex = Executor(lm.topology, "cpu")
    with pytest.raises(PlanError, match=r"cannot route through stages\.0\.0 \(cifar-vovnet\).*0 to 4") as info:
        ex.routed_input_grad_norms(x, torch.zeros(3, dtype=torch.long), torch.zeros(3, 6))
    assert "\n" not in str(info.value)
    ctx = RunContext(lm, ex, load_data("digits", limit=4), batch_size=4)
    with pytest.raises(PlanError, match="cannot route through"):
        GradientsAnalysis().run(ctx, samples=2)


# --- Identity-Mappings variants: scaled and gated sums -------------------------------------


def test_gated_unit_deletion_keeps_the_gated_shortcut() -> None:
    lm = _loaded("resnet20_exclusive_gating")
    unit, block = lm.topology.units[1], lm.model.layer1[1]
    h = torch.randn(2, 16, 8, 8)
    with torch.no_grad():
        g = torch.sigmoid(F.conv2d(h, block.gate.weight, block.gate.bias))
        assert torch.equal(unit.forward_deleted(h), F.relu((1 - g) * h))
        torch.testing.assert_close(unit.forward(h), block(h), rtol=0, atol=0)
        scaled = _loaded("resnet20_const_scaling").topology.units[1]
        assert torch.equal(scaled.forward_deleted(h), F.relu(0.5 * h))
        bn = _loaded("resnet20_bn_after_add")
        torch.testing.assert_close(bn.topology.units[2].forward_deleted(h), F.relu(_bn(bn.model.layer1[2].bn_add, h)))
    assert [u.shortcut_kind for u in lm.topology.units[:4]] == ["gated", "gated", "gated", "projection"]


def test_gated_routes_take_the_whole_gated_term() -> None:
    lm = _loaded("resnet20_exclusive_gating")
    ex = Executor(lm.topology, "cpu")
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(4))
    y = torch.tensor([3, 8])
    routes = torch.zeros(2, 9)
    routes[1, [0, 4, 8]] = 1
    norms = ex.routed_input_grad_norms(x, y, routes)
    model = lm.model
    for b in range(2):
        xb = x[b : b + 1].clone().requires_grad_(True)
        h = model.stem(xb)
        for i, block in enumerate(model.blocks):
            g = torch.sigmoid(block.gate(h))
            short, branch = (1 - g) * block.shortcut(h), g * block.branch(h)
            h = F.relu(short.detach() + branch if routes[b, i] else short + branch.detach())
        (grad,) = torch.autograd.grad(F.cross_entropy(model.head(h), y[b : b + 1]), xb)
        torch.testing.assert_close(norms[b], grad.norm(), rtol=1e-4, atol=1e-8)
