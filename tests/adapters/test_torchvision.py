"""The torchvision ResNet adapter: unit structure, responses and forward fidelity."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn
from torchvision import models

from resnet_probe.adapters import build_topology
from resnet_probe.adapters import torchvision as adapter
from resnet_probe.errors import AdapterError

ROOT = Path(__file__).resolve().parents[2]


def randomize_norms(model: nn.Module, seed: int = 0) -> nn.Module:
    """Random BN statistics and affine parameters, so fidelity checks are not vacuous."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                n = m.num_features
                m.running_mean.copy_(0.1 * torch.randn(n, generator=g))
                m.running_var.copy_(0.5 + torch.rand(n, generator=g))
                m.weight.copy_(0.5 + 0.5 * torch.rand(n, generator=g))
                m.bias.copy_(0.1 * torch.randn(n, generator=g))
    return model.eval()


def tv(name: str) -> nn.Module:
    """A random-weight torchvision model with random BN statistics."""
    torch.manual_seed(0)
    return randomize_norms(models.get_model(name, weights=None, num_classes=10))


@pytest.mark.parametrize(
    ("name", "n_units", "per_stage", "downsampling"),
    [
        ("resnet18", 8, [2, 2, 2, 2], [2, 4, 6]),
        ("resnet34", 16, [3, 4, 6, 3], [3, 7, 13]),
        ("resnet50", 16, [3, 4, 6, 3], [0, 3, 7, 13]),
        ("resnet101", 33, [3, 4, 23, 3], [0, 3, 7, 30]),
    ],
)
def test_unit_structure(name: str, n_units: int, per_stage: list[int], downsampling: list[int]) -> None:
    topo = adapter.build(models.get_model(name, weights=None))
    assert topo.family == "torchvision-resnet"
    assert topo.n_units == n_units
    assert [len(s) for s in topo.stages()] == per_stage
    assert [u.index for u in topo.units] == list(range(n_units))
    assert [u.index for u in topo.units if u.downsampling] == downsampling
    assert [u.index for u in topo.units if u.shortcut_kind == "projection"] == downsampling
    assert all(u.shortcut_kind == "identity" for u in topo.units if not u.downsampling)
    assert [u.index for u in topo.units if u.stride == 2] == [i for i in downsampling if i != 0]


def test_resnet50_channels_and_names() -> None:
    topo = adapter.build(models.resnet50())
    first, down = topo.units[0], topo.units[3]
    assert (first.name, first.stage, first.in_channels, first.out_channels, first.stride) == (
        "layer1.0",
        1,
        64,
        256,
        1,
    )
    assert first.downsampling and first.shortcut_kind == "projection"
    assert (down.name, down.stage, down.in_channels, down.out_channels, down.stride) == (
        "layer2.0",
        2,
        256,
        512,
        2,
    )
    assert topo.units[-1].name == "layer4.2" and topo.units[-1].out_channels == 2048
    assert topo.unit_by_name("layer3.5").index == 12


def test_responses_are_bn_after_3x3_convs() -> None:
    r18, r50 = models.resnet18(), models.resnet50()
    basic, bottleneck = adapter.build(r18), adapter.build(r50)
    assert [n for n, _ in basic.units[0].responses] == ["layer1.0.bn1", "layer1.0.bn2"]
    assert [n for n, _ in bottleneck.units[5].responses] == ["layer2.2.bn2"]
    for model, topo in ((r18, basic), (r50, bottleneck)):
        for unit in topo.units:
            for name, module in unit.responses:
                assert model.get_submodule(name) is module
    assert sum(len(u.responses) for u in basic.units) == 16
    assert sum(len(u.responses) for u in bottleneck.units) == 16
    assert adapter.BASIC_NOTE in basic.notes and adapter.BOTTLENECK_NOTE in bottleneck.notes
    assert adapter.PROJECTION_NOTE in basic.notes


@pytest.mark.parametrize("name", ["resnet18", "resnet50", "resnext50_32x4d"])
def test_forward_equals_model(name: str) -> None:
    model = tv(name)
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    topo = adapter.build(model)
    with torch.no_grad():
        expected, got = model(x), topo.forward(x)
    assert expected.shape == (2, 10)
    assert expected.abs().max() > 1e-3  # random BN stats: a real signal, not zeros
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-5)


def test_deleting_residual_changes_output_and_keeps_input() -> None:
    model = tv("resnet18")
    topo = adapter.build(model)
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        h = topo.stem(x)
        for unit in topo.units:
            before = h.clone()
            full, deleted = unit.forward(h), unit.forward_deleted(h)
            assert torch.equal(h, before), f"{unit.name} wrote into its input"
            assert not torch.allclose(full, deleted)
            if unit.shortcut_kind == "identity":
                torch.testing.assert_close(deleted, torch.relu(h))
            h = full


def test_matches() -> None:
    assert adapter.matches(models.resnet18())
    assert not adapter.matches(nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU()))
    assert not adapter.matches(models.squeezenet1_1())
    with pytest.raises(AdapterError):
        adapter.build(nn.Sequential())


def test_dispatch_without_timm() -> None:
    code = (
        "import sys, torch\n"
        "from torchvision.models import resnet18\n"
        "from resnet_probe.adapters import build_topology\n"
        "assert build_topology(resnet18()).family == 'torchvision-resnet'\n"
        "assert 'timm' not in sys.modules, 'timm imported for a torchvision model'\n"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_build_topology_picks_this_adapter() -> None:
    assert build_topology(models.resnet34()).family == "torchvision-resnet"
