"""The timm ConvNeXt adapter: units, downsample transitions, layer scale and forward fidelity."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from torch import nn

timm = pytest.importorskip("timm")

from resnet_probe.adapters import build_topology  # noqa: E402
from resnet_probe.adapters import convnext as adapter  # noqa: E402
from resnet_probe.analyses.paths import count_paths, unraveled_graph  # noqa: E402
from resnet_probe.errors import AdapterError  # noqa: E402
from resnet_probe.executor import Executor, Plan  # noqa: E402
from resnet_probe.structure import identity  # noqa: E402

from .timm_models import assert_forward_equals_model, image  # noqa: E402


def make(name: str = "convnext_atto", **kwargs: Any) -> nn.Module:
    """A random ConvNeXt with a layer scale of order 1 (timm's 1e-6 init would hide the branches)."""
    torch.manual_seed(0)
    model = timm.create_model(name, num_classes=10, **kwargs)
    g = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for m in model.modules():
            if getattr(m, "gamma", None) is not None and isinstance(m.gamma, nn.Parameter):
                m.gamma.copy_(0.5 + torch.rand(m.gamma.shape, generator=g))
            if isinstance(m, nn.LayerNorm) or type(m).__name__ == "LayerNorm2d":
                m.weight.copy_(0.5 + torch.rand(m.weight.shape, generator=g))
                m.bias.copy_(0.1 * torch.randn(m.bias.shape, generator=g))
    return model.eval()


def test_convnext_atto_units_and_transitions() -> None:
    model = timm.create_model("convnext_atto")
    topo = adapter.build(model)
    assert topo.family == "convnext" and topo.n_units == 12
    assert [len(s) for s in topo.stages()] == [2, 2, 6, 2]
    assert sorted(topo.transitions) == [2, 4, 10]
    for index, stage in zip((2, 4, 10), (1, 2, 3), strict=True):
        assert topo.transitions[index] is model.stages[stage].downsample
        assert topo.units[index].name == f"stages.{stage}.blocks.0"
    assert [(u.in_channels, u.out_channels) for u in topo.units[1:3]] == [(40, 40), (80, 80)]
    for unit in topo.units:
        assert unit.shortcut_kind == "identity" and unit.post is identity and unit.deletable
        assert not unit.downsampling and unit.stride == 1
        assert unit.module is model.get_submodule(unit.name)
        ((name, module),) = unit.responses
        assert name == f"{unit.name}.norm" and module is unit.module.norm


def test_path_graph_counts_transitions_as_single_edges() -> None:
    topo = adapter.build(timm.create_model("convnext_atto"))
    g = unraveled_graph(topo)
    assert sum(1 for *_, k in g.edges(keys=True) if k == "transition") == 3
    assert count_paths(g) == [1, 12, 66, 220, 495, 792, 924, 792, 495, 220, 66, 12, 1]


def test_notes() -> None:
    atto = adapter.build(timm.create_model("convnext_atto"))
    for note in (adapter.PRENORM_NOTE, adapter.TRANSITION_NOTE, adapter.LAYER_SCALE_NOTE, adapter.HEAD_NOTE):
        assert note in atto.notes
    assert adapter.CHANNELS_LAST_NOTE not in atto.notes  # atto runs its MLP as 1x1 convs
    assert adapter.CHANNELS_LAST_NOTE in adapter.build(timm.create_model("convnext_atto", conv_mlp=False)).notes
    v2 = adapter.build(timm.create_model("convnextv2_atto"))
    assert adapter.GRN_NOTE in v2.notes and adapter.LAYER_SCALE_NOTE not in v2.notes


@pytest.mark.parametrize(
    ("name", "kwargs"),
    [
        ("convnext_atto", {}),  # conv MLP, channels first
        ("convnext_atto", {"conv_mlp": False}),  # channels-last LayerNorm + Linear MLP
        ("convnext_atto", {"ls_init_value": None}),  # no layer scale
        ("convnext_atto", {"head_norm_first": True}),  # norm_pre before the pooling head
        ("convnextv2_atto", {}),  # global response norm
        ("convnext_atto_ols", {}),  # overlapping stem
    ],
)
def test_forward_equals_model(name: str, kwargs: dict[str, Any]) -> None:
    model = make(name, **kwargs)
    topo = adapter.build(model)
    assert_forward_equals_model(model, topo, image())


def test_layer_scale_is_in_the_residual_branch() -> None:
    model = make()
    topo = adapter.build(model)
    unit = topo.units[0]
    block: Any = unit.module
    with torch.no_grad():
        h = topo.stem(image())
        before = unit.residual(h)
        block.gamma.mul_(2.0)
        try:
            after = unit.residual(h)
        finally:
            block.gamma.div_(2.0)
        torch.testing.assert_close(after, 2 * before)
        assert torch.equal(unit.forward_deleted(h), h)  # pre-norm: deletion is the identity


def test_executor_deletes_each_unit_and_keeps_the_model() -> None:
    model = make()
    state = {k: v.clone() for k, v in model.state_dict().items()}
    topo = adapter.build(model)
    x = image()
    plans = [Plan()] + [Plan.delete(i) for i in range(topo.n_units)]
    outs = Executor(topo).run_plans(x, plans, reduce=lambda z: z.clone())
    with torch.no_grad():
        torch.testing.assert_close(outs[0], model(x), rtol=0, atol=1e-5)
        # Deleting unit 2 (first of stage 2) by hand: the downsample transition still runs.
        h = model.stem(x)
        h = model.stages[0](h)
        h = model.stages[1].downsample(h)
        h = model.stages[1].blocks[1](h)
        h = model.stages[3](model.stages[2](h))
        torch.testing.assert_close(outs[3], model.forward_head(h), rtol=0, atol=1e-5)
    assert all(not torch.allclose(outs[0], o) for o in outs[1:])
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in state.items())


def test_matches_and_dispatch() -> None:
    model = timm.create_model("convnext_atto")
    assert adapter.matches(model) and build_topology(model).family == "convnext"
    assert not adapter.matches(timm.create_model("resnet18"))
    with pytest.raises(AdapterError, match="not a timm ConvNeXt"):
        adapter.build(nn.Sequential())
