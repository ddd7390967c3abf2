"""The timm ResNetV2 (pre-activation) adapter: units, shortcuts, deletion and forward fidelity."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from torch import nn

timm = pytest.importorskip("timm")

from timm.layers import BatchNormAct2d  # noqa: E402
from timm.models import resnetv2  # noqa: E402

from resnet_probe.adapters import build_topology, timm_resnet  # noqa: E402
from resnet_probe.adapters import timm_resnetv2 as adapter  # noqa: E402
from resnet_probe.errors import AdapterError  # noqa: E402
from resnet_probe.executor import Executor, Plan  # noqa: E402

from .timm_models import assert_forward_equals_model, forward_both_seeded, image, make, randomize_norms  # noqa: E402


def post_act_resnetv2() -> nn.Module:
    """A tiny ``preact=False`` ResNetV2 (the ViT-hybrid backbone's post-activation Bottleneck)."""
    torch.manual_seed(0)
    model = resnetv2.ResNetV2(
        layers=[1, 1, 1, 1], channels=(32, 64, 128, 256), stem_chs=16, preact=False,
        norm_layer=BatchNormAct2d, num_classes=10,
    )
    return randomize_norms(model)


def test_resnetv2_50_units() -> None:
    model = timm.create_model("resnetv2_50")
    topo = adapter.build(model)
    assert topo.family == "timm-resnetv2" and topo.n_units == 16
    assert [len(s) for s in topo.stages()] == [3, 4, 6, 3]
    assert [u.index for u in topo.units if u.shortcut_kind == "projection"] == [0, 3, 7, 13]
    assert [u.index for u in topo.units if u.stride == 2] == [3, 7, 13]
    assert [u.index for u in topo.units if u.downsampling] == [0, 3, 7, 13]
    assert {u.shortcut_kind for u in topo.units} == {"identity", "projection"}
    first, last = topo.units[0], topo.units[-1]
    assert (first.name, first.in_channels, first.out_channels) == ("stages.0.blocks.0", 64, 256)
    assert (last.name, last.stage, last.in_channels, last.out_channels) == ("stages.3.blocks.2", 4, 2048, 2048)
    assert [n for n, _ in topo.units[4].responses] == ["stages.1.blocks.1.conv2"]
    for unit in topo.units:
        assert unit.post is timm_resnet.identity
        assert unit.module is model.get_submodule(unit.name)
        for name, module in unit.responses:
            assert model.get_submodule(name) is module and module.kernel_size == (3, 3)


def test_basic_units_respond_at_both_convs() -> None:
    topo = adapter.build(timm.create_model("resnetv2_18"))
    assert topo.n_units == 8 and [len(s) for s in topo.stages()] == [2, 2, 2, 2]
    assert [u.index for u in topo.units if u.shortcut_kind == "projection"] == [2, 4, 6]
    assert [n for n, _ in topo.units[3].responses] == ["stages.1.blocks.1.conv1", "stages.1.blocks.1.conv2"]
    assert adapter.BASIC_NOTE in topo.notes and adapter.BOTTLENECK_NOTE not in topo.notes


def test_notes() -> None:
    plain = adapter.build(timm.create_model("resnetv2_50"))
    for note in (adapter.PREACT_NOTE, adapter.PREACT_PROJECTION_NOTE, adapter.HEAD_NORM_NOTE, adapter.BOTTLENECK_NOTE):
        assert note in plain.notes
    assert adapter.STD_CONV_NOTE not in plain.notes and adapter.AVG_DOWN_NOTE not in plain.notes
    assert adapter.STD_CONV_NOTE in adapter.build(timm.create_model("resnetv2_50x1_bit")).notes
    assert adapter.AVG_DOWN_NOTE in adapter.build(timm.create_model("resnetv2_50d")).notes
    post = adapter.build(post_act_resnetv2())
    assert post.notes[0] == adapter.POST_NOTE and adapter.PREACT_NOTE not in post.notes


@pytest.mark.parametrize(
    ("name", "kwargs"),
    [
        ("resnetv2_50", {}),
        ("resnetv2_18", {}),  # basic pre-activation units
        ("resnetv2_50x1_bit", {}),  # StdConv2d + GroupNorm, fixed-padding stem
        ("resnetv2_50d", {}),  # deep stem, avg-pool projection
        ("resnetv2_50d_evos", {}),  # EvoNorm
        ("resnetv2_18", {"output_stride": 16}),  # dilated last stage
    ],
)
def test_forward_equals_model(name: str, kwargs: dict[str, Any]) -> None:
    model = make(name, **kwargs)
    topo = adapter.build(model)
    assert_forward_equals_model(model, topo, image())


def test_post_activation_bottleneck_forward() -> None:
    model = post_act_resnetv2()
    topo = adapter.build(model)
    assert topo.n_units == 4 and all(u.shortcut_kind == "projection" for u in topo.units)
    assert [n for n, _ in topo.units[1].responses] == ["stages.1.blocks.0.norm2"]
    x = image()
    with torch.no_grad():
        torch.testing.assert_close(topo.forward(x), model(x), rtol=0, atol=1e-5)
        h = topo.stem(x)
        block = model.stages[0].blocks[0]
        # Deleting a post-activation unit keeps act3 after the projection.
        torch.testing.assert_close(topo.units[0].forward_deleted(h), torch.relu(block.downsample(h)))


def test_deletion_is_identity_or_preactivated_projection() -> None:
    model = make("resnetv2_50")
    topo = adapter.build(model)
    with torch.no_grad():
        h = topo.stem(image())
        for unit in topo.units:
            before = h.clone()
            full, deleted = unit.forward(h), unit.forward_deleted(h)
            assert torch.equal(h, before), f"{unit.name} wrote into its input"
            block: Any = unit.module
            if unit.shortcut_kind == "identity":
                assert torch.equal(deleted, h)
            else:
                torch.testing.assert_close(deleted, block.downsample(block.norm1(h)), rtol=0, atol=0)
            assert not torch.allclose(full, deleted)
            h = full


def test_executor_deletes_each_unit_without_touching_the_model() -> None:
    model = make("resnetv2_18")
    state = {k: v.clone() for k, v in model.state_dict().items()}
    topo = adapter.build(model)
    x = image()
    plans = [Plan()] + [Plan.delete(i) for i in range(topo.n_units)]
    outs = Executor(topo).run_plans(x, plans, reduce=lambda z: z.clone())
    with torch.no_grad():
        torch.testing.assert_close(outs[0], model(x), rtol=0, atol=1e-5)
    assert all(not torch.allclose(outs[0], o) for o in outs[1:])
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in state.items())
    assert all(not m._forward_hooks for m in model.modules())


def test_training_mode_drop_path_follows_timm() -> None:
    model = make("resnetv2_18", drop_path_rate=0.3).train()
    topo = adapter.build(model)
    assert adapter.DROP_NOTE in topo.notes
    expected, got = forward_both_seeded(model, topo, image())
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-5)


def test_matches_and_dispatch() -> None:
    model = timm.create_model("resnetv2_18")
    assert adapter.matches(model) and not timm_resnet.matches(model)
    assert not adapter.matches(timm.create_model("resnet18"))
    assert not adapter.matches(nn.Sequential(nn.Conv2d(3, 8, 3)))
    assert build_topology(model).family == "timm-resnetv2"
    with pytest.raises(AdapterError, match="not a timm ResNetV2"):
        adapter.build(nn.Sequential())
