"""The CIFAR adapter: unit layout, shortcut kinds, equivalence with the model, deletion."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

from resnet_probe.adapters import build_topology
from resnet_probe.adapters import cifar as adapter
from resnet_probe.models.registry import get_entry, list_models
from resnet_probe.structure import Topology, identity, relu
from tests.models.zoo.test_cifar import HE_2015, cifar_fixture_batch, load_akamaster_resnet20


@pytest.fixture(autouse=True, scope="module")
def _single_thread() -> Iterator[None]:
    """One intra-op thread: these tiny convs thrash with more when the cores are shared."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def randomized(name: str, seed: int = 0) -> Any:
    """A zoo model in eval mode with non-trivial BN statistics and affine parameters."""
    torch.manual_seed(seed)
    model = get_entry(name).builder()
    bns = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    # Calibrate running stats on one batch (cumulative average = that batch's stats) so
    # that deep plain nets neither explode nor vanish, then perturb them.
    for bn in bns:
        bn.momentum = None
    model.train()
    with torch.no_grad():
        model(torch.randn(8, 3, 32, 32))
        for bn in bns:
            assert bn.running_mean is not None and bn.running_var is not None
            bn.running_mean.add_(torch.empty_like(bn.running_mean).uniform_(-0.2, 0.2))
            bn.running_var.mul_(torch.empty_like(bn.running_var).uniform_(0.8, 1.25))
            bn.weight.uniform_(0.5, 1.5)
            bn.bias.uniform_(-0.5, 0.5)
    return model.eval()


def topo(name: str) -> Topology:
    """Topology of a freshly built zoo model."""
    return adapter.build(get_entry(name).builder())


def test_matches_only_zoo_models() -> None:
    assert adapter.matches(get_entry("resnet20").builder())
    assert adapter.matches(get_entry("preact_resnet20").builder())
    assert not adapter.matches(nn.Sequential(nn.Conv2d(3, 16, 3)))
    assert build_topology(get_entry("plain20").builder()).family == "cifar-plain"


def test_resnet20_layout() -> None:
    t = topo("resnet20")
    assert t.n_units == 9
    assert [u.index for u in t.units] == list(range(9))
    assert [u.name for u in t.units] == [f"layer{s}.{i}" for s in (1, 2, 3) for i in range(3)]
    assert [u.stage for u in t.units] == [1, 1, 1, 2, 2, 2, 3, 3, 3]
    assert [u.index for u in t.units if u.downsampling] == [3, 6]
    assert [u.in_channels for u in t.units] == [16, 16, 16, 16, 32, 32, 32, 64, 64]
    assert [u.out_channels for u in t.units] == [16, 16, 16, 32, 32, 32, 64, 64, 64]
    assert [u.stride for u in t.units] == [1, 1, 1, 2, 1, 1, 2, 1, 1]
    assert t.stages() == [[0, 1, 2], [3, 4, 5], [6, 7, 8]]
    assert t.family == "cifar-resnet"


def test_resnet110_layout() -> None:
    t = topo("resnet110")
    assert t.n_units == 54
    assert [u.index for u in t.units if u.downsampling] == [18, 36]
    assert t.units[18].name == "layer2.0" and t.units[53].name == "layer3.17"
    assert t.unit_by_name("layer3.0").index == 36


@pytest.mark.parametrize(
    ("name", "down_kind", "other_kind"),
    [
        ("resnet20", "zero-pad", "identity"),
        ("resnet20_b", "projection", "identity"),
        ("resnet20_c", "projection", "projection"),
        ("plain20", "none", "none"),
        ("preact_resnet20", "projection", "identity"),
    ],
)
def test_shortcut_kinds(name: str, down_kind: str, other_kind: str) -> None:
    t = topo(name)
    for unit in t.units:
        assert unit.shortcut_kind == (down_kind if unit.downsampling else other_kind), unit.name


def test_families_posts_and_notes() -> None:
    assert topo("resnet20").notes == (adapter.OPTION_A_NOTE,)
    assert "half of its output channels zero" in adapter.OPTION_A_NOTE
    assert topo("resnet20_b").notes == () and topo("plain20").notes == ()
    assert topo("preact_resnet20").family == "cifar-preact"
    assert all(u.post is relu for u in topo("plain20").units)
    assert all(u.post is relu for u in topo("resnet20_c").units)
    assert all(u.post is identity for u in topo("preact_resnet20").units)


def test_plain_units() -> None:
    t = topo("plain56")
    assert t.family == "cifar-plain"
    assert all(u.shortcut is None for u in t.units)
    assert [u.index for u in t.units if not u.deletable] == [9, 18]
    x = torch.randn(2, 16, 32, 32)
    assert torch.equal(t.units[0].forward_deleted(x), x)
    with pytest.raises(ValueError, match="cannot be deleted"):
        t.units[9].forward_deleted(x)


def test_responses() -> None:
    model: Any = get_entry("resnet20").builder()
    unit = adapter.build(model).units[4]
    assert unit.responses == (
        ("layer2.1.bn1", model.layer2[1].bn1),
        ("layer2.1.bn2", model.layer2[1].bn2),
    )
    assert unit.module is model.layer2[1]
    pre: Any = get_entry("preact_resnet20").builder()
    names = [n for n, _ in adapter.build(pre).units[0].responses]
    assert names == ["layer1.0.conv1", "layer1.0.conv2"]
    assert adapter.build(pre).units[0].responses[1][1] is pre.layer1[0].conv2


def test_response_hooks_fire_and_bn2_is_the_residual() -> None:
    model = randomized("resnet20")
    t = adapter.build(model)
    captured: dict[str, torch.Tensor] = {}
    handles = [
        module.register_forward_hook(lambda m, i, o, key=key: captured.__setitem__(key, o))
        for u in t.units
        for key, module in u.responses
    ]
    try:
        x = torch.randn(2, 3, 32, 32)
        with torch.no_grad():
            t.forward(x)
            h = t.stem(x)
            for u in t.units[:3]:
                h = u.forward(h)
            residual = t.units[3].residual(h)
    finally:
        for handle in handles:
            handle.remove()
    assert len(captured) == 18
    assert torch.equal(captured["layer2.0.bn2"], residual)


@pytest.mark.parametrize("name", [n for n in list_models() if "1202" not in n and get_entry(n).family in HE_2015])
def test_topology_forward_equals_model(name: str) -> None:
    model = randomized(name)
    t = adapter.build(model)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        expected = model(x)
        got = t.forward(x)
        h = t.stem(x)
        for unit in t.units:
            unit_out = unit.forward(h)
            torch.testing.assert_close(unit_out, unit.module(h), atol=1e-5, rtol=0)
            h = unit_out
    assert expected.abs().max() > 1e-2 and expected.std() > 1e-3  # not a vacuous comparison
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=0)


def test_deleted_identity_unit_is_relu() -> None:
    t = adapter.build(randomized("resnet20"))
    x = torch.randn(2, 16, 32, 32)
    assert torch.equal(t.units[1].forward_deleted(x), torch.relu(x))
    assert torch.equal(t.units[1].forward_deleted(x), relu(x))


def test_deleted_option_a_unit_zeroes_half_the_channels() -> None:
    t = adapter.build(randomized("resnet56"))
    unit = t.units[9]
    assert unit.shortcut_kind == "zero-pad" and unit.downsampling
    x = torch.randn(2, 16, 32, 32)
    y = unit.forward_deleted(x)
    assert y.shape == (2, 32, 16, 16)
    zero = [c for c in range(32) if not y[:, c].any()]
    assert zero == list(range(8)) + list(range(24, 32))
    assert torch.equal(y[:, 8:24], torch.relu(x[:, :, ::2, ::2]))
    unit3 = t.units[18]
    y3 = unit3.forward_deleted(torch.randn(2, 32, 16, 16))
    assert [c for c in range(64) if not y3[:, c].any()] == list(range(16)) + list(range(48, 64))


def test_deleted_preact_projection_unit() -> None:
    model = randomized("preact_resnet20")
    unit = adapter.build(model).units[3]
    block = model.layer2[0]
    x = torch.randn(2, 16, 32, 32)
    with torch.no_grad():
        expected = block.shortcut(torch.relu(block.bn1(x)))
        assert torch.equal(unit.forward_deleted(x), expected)
        assert unit.forward_deleted(x).shape == (2, 32, 16, 16)
        x1 = torch.randn(2, 32, 16, 16)
        assert torch.equal(adapter.build(model).units[4].forward_deleted(x1), x1)


def test_build_leaves_model_untouched() -> None:
    model = randomized("resnet20_b")
    before = {k: v.clone() for k, v in model.state_dict().items()}
    t = adapter.build(model)
    with torch.no_grad():
        t.forward(torch.randn(2, 3, 32, 32))
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert not model.training
    assert all(not m._forward_hooks for m in model.modules())


def test_topology_matches_real_checkpoint(fixtures_dir: Path) -> None:
    model = load_akamaster_resnet20(fixtures_dir)
    x, labels = cifar_fixture_batch(fixtures_dir)
    t = adapter.build(model)
    with torch.no_grad():
        expected = model(x)
        got = t.forward(x)
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=0)
    assert int((got.argmax(1) == labels).sum()) == 776
