"""The Identity-Mappings adapter: every variant and bottleneck net equals its model, unit by unit."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch

from resnet_probe.adapters import build_topology
from resnet_probe.adapters import identity_mappings as adapter
from resnet_probe.models.registry import get_entry, list_models
from resnet_probe.structure import identity, relu
from tests.adapters.test_cifar import randomized

FAMILIES = ("cifar-resnet-variant", "cifar-bottleneck", "cifar-preact-bottleneck")
NAMES = [n for n in list_models() if get_entry(n).family in FAMILIES and "1202" not in n and "1001" not in n]


@pytest.fixture(autouse=True, scope="module")
def _single_thread() -> Iterator[None]:
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.mark.parametrize("name", NAMES)
def test_topology_forward_equals_model(name: str) -> None:
    model = randomized(name)
    for block in model.blocks:
        if getattr(block, "gate", None) is not None:
            with torch.no_grad():  # both sides of every gate matter in the check
                block.gate.bias.uniform_(-2.0, 1.0)
    t = build_topology(model)
    assert (t.family, t.n_units) == (get_entry(name).family, get_entry(name).units)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        expected = model(x)
        h = t.stem(x)
        for unit in t.units:
            out = unit.forward(h)
            torch.testing.assert_close(out, unit.module(h), atol=1e-5, rtol=0)
            h = out
        got = t.head(h)
    assert expected.abs().max() > 1e-2 and expected.std() > 1e-3
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=0)
    torch.testing.assert_close(t.forward(x), expected, atol=1e-5, rtol=0)


@pytest.mark.parametrize(
    ("variant", "kind", "post"),
    [
        ("const_scaling", "scaled", relu),
        ("exclusive_gating", "gated", relu),
        ("shortcut_gating", "gated", relu),
        ("conv_shortcut", "projection", relu),
        ("dropout_shortcut", "dropout", relu),
        ("relu_before_add", "identity", identity),
        ("relu_preact", "identity", identity),
    ],
)
def test_kinds_posts_and_notes(variant: str, kind: str, post: object) -> None:
    model = get_entry(f"resnet20_{variant}").builder()
    t = adapter.build(model)
    assert [u.shortcut_kind for u in t.units if not u.downsampling] == [kind] * 7
    assert [u.shortcut_kind for u in t.units if u.downsampling] == ["projection"] * 2
    assert all(u.post is post for u in t.units)
    assert t.notes[0] == adapter.MERGE_NOTES[variant]
    assert [n for n, _ in t.units[0].responses] == ["layer1.0.bn1", "layer1.0.bn2"]
    assert t.stem_responses == (("bn1", model.bn1),)


def test_bn_after_add_merges_through_the_bn() -> None:
    model = randomized("resnet20_bn_after_add")
    unit = adapter.build(model).units[4]
    h = torch.randn(2, 32, 16, 16)
    with torch.no_grad():
        assert torch.equal(unit.merge(h, None), torch.relu(model.layer2[1].bn_add(h)))


def test_bottleneck_layouts() -> None:
    post = adapter.build(get_entry("resnet164").builder())
    pre = adapter.build(get_entry("preact_resnet164").builder())
    for t in (post, pre):
        assert t.n_units == 54
        assert [u.index for u in t.units if u.shortcut_kind == "projection"] == [0, 18, 36]
        assert [u.out_channels for u in t.units[::18]] == [64, 128, 256]
    assert [n for n, _ in post.units[1].responses] == ["layer1.1.bn2"]
    assert [n for n, _ in pre.units[1].responses] == ["layer1.1.bn3"]
    assert all(u.post is relu for u in post.units) and all(u.post is identity for u in pre.units)
    assert pre.stem_responses[0][0] == "conv1" and post.stem_responses[0][0] == "bn1"


def test_preact_resnet1001_has_333_units() -> None:
    t = build_topology(get_entry("preact_resnet1001").builder())
    assert t.n_units == 333 == get_entry("preact_resnet1001").units
    assert t.family == "cifar-preact-bottleneck"
