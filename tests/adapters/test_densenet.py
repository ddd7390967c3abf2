"""The DenseNet adapter: zoo CIFAR DenseNets and timm's DenseNet, concatenating units, transitions."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch
from torch import Tensor

from resnet_probe.adapters import build_topology
from resnet_probe.adapters import densenet as adapter
from resnet_probe.executor import Executor, Plan
from resnet_probe.models.registry import get_entry
from resnet_probe.structure import identity
from tests.adapters.test_cifar import randomized
from tests.adapters.timm_models import assert_forward_equals_model, forward_both_seeded, image, make


@pytest.fixture(autouse=True, scope="module")
def _single_thread() -> Iterator[None]:
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.mark.parametrize(("name", "layers", "k"), [("densenet40_k12", 12, 12), ("densenet_bc100_k12", 16, 12)])
def test_zoo_layout_and_forward(name: str, layers: int, k: int) -> None:
    model = randomized(name)
    t = build_topology(model)
    assert t.family == "cifar-densenet" and t.n_units == 3 * layers == get_entry(name).units
    assert [u.stage for u in t.units] == [1] * layers + [2] * layers + [3] * layers
    assert sorted(t.transitions) == [layers, 2 * layers]
    assert t.transitions[layers] is model.transitions[0]
    assert all(u.join == "concat" and u.residual_channels == k and u.shortcut is identity for u in t.units)
    assert all(u.out_channels == u.in_channels + k and not u.downsampling for u in t.units)
    assert t.units[layers].in_channels == model.transitions[0].out_channels
    assert t.notes == (adapter.CONCAT_NOTE, adapter.TRANSITION_NOTE, adapter.REORDER_NOTE, adapter.RESPONSE_NOTE)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        expected = model(x)
        h = t.stem(x)
        for unit in t.units:
            if unit.index in t.transitions:
                h = t.transitions[unit.index](h)
            out = unit.forward(h)
            torch.testing.assert_close(out, unit.module(h), atol=1e-5, rtol=0)
            h = out
    assert expected.abs().max() > 1e-2
    torch.testing.assert_close(t.forward(x), expected, atol=1e-5, rtol=0)


def test_zoo_response_is_the_new_maps() -> None:
    model = randomized("densenet_bc100_k12")
    unit = build_topology(model).units[20]
    ((name, conv),) = unit.responses
    assert name == "blocks.1.4.conv2" and conv is model.blocks[1][4].conv2
    seen: list[Tensor] = []
    handle = conv.register_forward_hook(lambda _m, _i, out: seen.append(out))
    try:
        h = torch.randn(2, unit.in_channels, 16, 16)
        with torch.no_grad():
            out = unit.forward(h)
    finally:
        handle.remove()
    assert torch.equal(seen[0], out[:, unit.in_channels :])


@pytest.mark.parametrize(("name", "blocks"), [("densenet121", (6, 12, 24, 16)), ("densenetblur121d", (6, 12, 24, 16))])
def test_timm_densenet_equals_the_model(name: str, blocks: tuple[int, ...]) -> None:
    model = make(name)
    t = build_topology(model)
    assert t.family == adapter.TIMM_FAMILY and t.n_units == sum(blocks)
    starts = [sum(blocks[:i]) for i in range(1, len(blocks))]
    assert sorted(t.transitions) == starts
    assert t.units[0].name == "features.denseblock1.denselayer1"
    assert t.units[6].in_channels == model.features.transition1.conv.out_channels
    assert all(u.join == "concat" and u.residual_channels == 32 for u in t.units)
    assert_forward_equals_model(model, t, image())


def test_timm_densenet_deletion_equals_zeroed_new_maps() -> None:
    model = make("densenet121")
    t = build_topology(model)
    x = image()
    for index in (0, 10, 57):
        conv = t.units[index].responses[0][1]
        handle = conv.register_forward_hook(lambda _m, _i, out: torch.zeros_like(out))
        try:
            with torch.no_grad():
                want = model(x)
        finally:
            handle.remove()
        got = Executor(t, "cpu").forward(x, Plan.delete(index))
        torch.testing.assert_close(got, want, atol=1e-5, rtol=0)
        assert (got - model(x)).abs().max() > 1e-5


def test_timm_densenet_dropout_in_training_mode() -> None:
    model = make("densenet121", proj_drop_rate=0.2).train()
    t = build_topology(model)
    assert adapter.DROP_NOTE in t.notes
    expected, got = forward_both_seeded(model, t, image())
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=0)
