"""The timm ResNet adapter: unit structure, family specifics and forward fidelity."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

timm = pytest.importorskip("timm")

from resnet_probe.adapters import build_topology  # noqa: E402
from resnet_probe.adapters import timm_resnet as adapter  # noqa: E402
from resnet_probe.adapters import torchvision as tv_adapter  # noqa: E402

from .timm_models import assert_forward_equals_model, forward_both_seeded, image, make  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    ("name", "per_stage", "downsampling"),
    [
        ("resnet18", [2, 2, 2, 2], [2, 4, 6]),
        ("resnet50", [3, 4, 6, 3], [0, 3, 7, 13]),
        ("resnet26d", [2, 2, 2, 2], [0, 2, 4, 6]),
        ("seresnet18", [2, 2, 2, 2], [2, 4, 6]),
    ],
)
def test_unit_structure(name: str, per_stage: list[int], downsampling: list[int]) -> None:
    topo = adapter.build(timm.create_model(name))
    assert topo.family == "timm-resnet"
    assert topo.n_units == sum(per_stage)
    assert [len(s) for s in topo.stages()] == per_stage
    assert [u.index for u in topo.units if u.downsampling] == downsampling
    assert [u.index for u in topo.units if u.shortcut_kind == "projection"] == downsampling
    assert [u.index for u in topo.units if u.stride == 2] == [i for i in downsampling if i != 0]
    assert topo.units[0].name == "layer1.0" and topo.units[-1].stage == 4


def test_resnet50_units() -> None:
    topo = adapter.build(timm.create_model("resnet50"))
    assert topo.n_units == 16
    first = topo.units[0]
    assert (first.in_channels, first.out_channels, first.stride, first.downsampling) == (64, 256, 1, True)
    assert (topo.units[13].name, topo.units[13].in_channels, topo.units[13].out_channels) == (
        "layer4.0",
        1024,
        2048,
    )


def test_responses_and_notes() -> None:
    r18, r26d = timm.create_model("resnet18"), timm.create_model("resnet26d")
    basic, bottleneck = adapter.build(r18), adapter.build(r26d)
    assert [n for n, _ in basic.units[3].responses] == ["layer2.1.bn1", "layer2.1.bn2"]
    assert [n for n, _ in bottleneck.units[3].responses] == ["layer2.1.bn2"]
    for model, topo in ((r18, basic), (r26d, bottleneck)):
        for unit in topo.units:
            for name, module in unit.responses:
                assert model.get_submodule(name) is module
    assert adapter.BASIC_NOTE in basic.notes and adapter.DEEP_STEM_NOTE not in basic.notes
    for note in (adapter.BOTTLENECK_NOTE, adapter.DEEP_STEM_NOTE, adapter.AVG_DOWN_NOTE):
        assert note in bottleneck.notes
    assert adapter.ATTN_NOTE in adapter.build(timm.create_model("seresnet18")).notes
    assert adapter.AA_NOTE in adapter.build(timm.create_model("resnetblur18")).notes


@pytest.mark.parametrize(
    ("name", "kwargs"),
    [
        ("resnet18", {}),
        ("resnet50", {}),
        ("resnet26d", {}),  # deep stem, avg-pool downsample, bottleneck
        ("seresnet18", {}),  # squeeze-excitation in the residual branch
        ("ecaresnet26t", {}),  # tiered stem, ECA attention
        ("resnetblur18", {}),  # anti-aliased (blur pool) stride
        ("resnet50_gn", {}),  # GroupNorm
        ("resnet18", {"output_stride": 16}),  # dilated layer4
        ("resnet18", {"act_layer": "silu"}),  # a non-ReLU merge activation
    ],
)
def test_forward_equals_model(name: str, kwargs: dict[str, Any]) -> None:
    model = make(name, **kwargs)
    topo = adapter.build(model)
    assert_forward_equals_model(model, topo, image())


def test_training_mode_drop_path_and_drop_block_follow_timm() -> None:
    model = make("resnet26d", drop_path_rate=0.3, drop_block_rate=0.3).train()
    topo = adapter.build(model)
    assert adapter.DROP_NOTE in topo.notes
    x = image()
    expected, got = forward_both_seeded(model, topo, x)
    _, other = forward_both_seeded(model, topo, x, seed=6)
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-5)
    assert not torch.allclose(got, other)  # the stochastic layers really ran


def test_units_never_write_into_their_input() -> None:
    model = make("resnet26d", act_layer="silu")
    topo = adapter.build(model)
    with torch.no_grad():
        h = topo.stem(image())
        for unit in topo.units:
            before = h.clone()
            full = unit.forward(h)
            unit.forward_deleted(h)
            assert torch.equal(h, before), f"{unit.name} wrote into its input"
            h = full
    assert all(m.inplace for m in model.modules() if isinstance(m, nn.SiLU))  # the model is untouched


def test_out_of_place() -> None:
    x = torch.tensor([-1.0, 2.0])
    silu = nn.SiLU(inplace=True)
    y = adapter.out_of_place(silu)(x)
    assert torch.equal(x, torch.tensor([-1.0, 2.0])) and silu.inplace
    torch.testing.assert_close(y, torch.nn.functional.silu(torch.tensor([-1.0, 2.0])))
    assert adapter.out_of_place(nn.ReLU(inplace=True)) is adapter.relu


def test_matches() -> None:
    model = timm.create_model("test_resnet")
    assert adapter.matches(model) and not tv_adapter.matches(model)
    assert not adapter.matches(nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU()))
    assert not adapter.matches(timm.create_model("resnetv2_18"))  # pre-activation: not this family
    assert build_topology(model).family == "timm-resnet"


def _run(code: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)


def test_import_does_not_pull_timm() -> None:
    result = _run(
        "import sys\n"
        "from torch import nn\n"
        "import resnet_probe.adapters.timm_resnet as a\n"
        "from resnet_probe.adapters import build_topology\n"
        "from resnet_probe.errors import AdapterError\n"
        "assert not a.matches(nn.Sequential())\n"
        "try:\n"
        "    build_topology(nn.Sequential(nn.Linear(2, 2)))\n"
        "except AdapterError:\n"
        "    pass\n"
        "assert 'timm' not in sys.modules, 'timm was imported'\n"
    )
    assert result.returncode == 0, result.stderr
