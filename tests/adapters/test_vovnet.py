"""The VoVNet adapter: zoo CIFAR VoVNets and timm's VovNet, OSA modules as wired concatenating units."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor

from resnet_probe.adapters import build_topology
from resnet_probe.adapters import vovnet as adapter
from resnet_probe.analyses.paths import count_paths, unraveled_graph
from resnet_probe.executor import Executor, Plan
from resnet_probe.models.registry import get_entry
from tests.adapters.test_cifar import randomized
from tests.adapters.timm_models import assert_forward_equals_model, image, make
from tests.analyses.test_paths import uniform_product


@pytest.fixture(autouse=True, scope="module")
def _single_thread() -> Iterator[None]:
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.mark.parametrize("name", ["vovnet_cifar", "vovnet_ese_cifar"])
def test_zoo_layout_and_forward(name: str) -> None:
    model = randomized(name)
    t = build_topology(model)
    assert t.family == "cifar-vovnet" and t.n_units == 6 == get_entry(name).units
    assert [u.name for u in t.units] == [f"stages.{s}.{j}" for s in range(3) for j in range(2)]
    assert sorted(t.transitions) == [2, 4] and t.transitions[2] is model.downsamples[1]
    assert [u.residual_channels for u in t.units] == [160, 160, 192, 192, 224, 224]
    assert [u.downsampling for u in t.units] == [True, False] * 3
    assert all(u.join == "concat" and len(u.wiring) == 4 * 2 + 2 + (name == "vovnet_ese_cifar" and u.index % 2)
               for u in t.units)
    assert [n for n, _ in t.units[3].responses] == [f"stages.1.1.layers.{i}.1" for i in range(4)]
    assert t.stem_responses == (("stem.1", model.stem[1]),)
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


def test_osa_wiring_is_the_chain() -> None:
    edges = adapter.osa_wiring(3, identity_residual=True)
    assert [(e.source, e.target, e.length) for e in edges if e.kind == "chain"] == [
        ("in", "layer1", 1), ("layer1", "layer2", 1), ("layer2", "layer3", 1)
    ]
    assert sorted(e.source for e in edges if e.target == "concat") == ["in", "layer1", "layer2", "layer3"]
    assert [(e.source, e.target) for e in edges if e.kind == "identity"] == [("in", "concat"), ("in", "out")]
    reduced = adapter.osa_wiring(2, identity_residual=False, reduction=True)
    assert [(e.source, e.target) for e in reduced][:2] == [("in", "reduced"), ("in", "concat")]
    assert next(e for e in reduced if e.key == "chain.1").source == "reduced"


# --- timm ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "blocks", "layers", "identity"),
    [
        ("vovnet39a", 6, 5, [False] * 6),
        ("ese_vovnet39b", 6, 5, [False, False, False, True, False, True]),
        ("ese_vovnet19b_dw", 4, 3, [False] * 4),
    ],
)
def test_timm_vovnet_equals_the_model(name: str, blocks: int, layers: int, identity: list[bool]) -> None:
    model = make(name)
    t = build_topology(model)
    assert t.family == adapter.TIMM_FAMILY and t.n_units == blocks
    assert [u.wiring[-1].key == "identity" for u in t.units] == identity
    # the stages after the first open with a max pool: a transition each
    assert sorted(t.transitions) == [i for i, u in enumerate(t.units) if u.name.endswith("blocks.0")][1:]
    assert count_paths(unraveled_graph(t)) == uniform_product([layers] * blocks, identity)
    assert_forward_equals_model(model, t, image())
    if name == "ese_vovnet19b_dw":
        assert adapter.DEPTHWISE_NOTE in t.notes and all(u.wiring[0].key == "reduction" for u in t.units)


def test_timm_vovnet_deletion_and_responses() -> None:
    model = make("ese_vovnet39b")
    t = build_topology(model)
    x = image()
    block = model.stages[2].blocks[1]
    index = next(u.index for u in t.units if u.module is block)
    zero = [m.register_forward_hook(lambda _m, _i, out: torch.zeros_like(out)) for m in block.conv_mid]
    try:
        with torch.no_grad():
            want = model(x)
    finally:
        for h in zero:
            h.remove()
    torch.testing.assert_close(Executor(t, "cpu").forward(x, Plan.delete(index)), want, atol=1e-5, rtol=0)
    # the response is the BN output before timm's in-place ReLU: read when the hook fires
    seen: dict[str, Tensor] = {}
    Executor(t, "cpu").capture(x, lambda name, out: seen.setdefault(name, out.clone()))
    name = f"{t.units[index].name}.conv_mid.2.bn"
    assert name in seen and len(seen) == 3 + 5 * 6
    inputs: list[Tensor] = []
    conv_mid = block.conv_mid[2]
    handle = conv_mid.conv.register_forward_hook(lambda _m, _i, out: inputs.append(out))
    try:
        with torch.no_grad():
            model(x)
    finally:
        handle.remove()
    bn = conv_mid.bn
    want_bn = F.batch_norm(inputs[0], bn.running_mean, bn.running_var, bn.weight, bn.bias, False, 0.0, bn.eps)
    torch.testing.assert_close(seen[name], want_bn, atol=1e-5, rtol=0)
    assert (seen[name] < 0).any()  # not the ReLU's output
