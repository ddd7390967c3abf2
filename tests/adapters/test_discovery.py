"""Discovery on real timm / torchvision models: forward, deletion, unit counts from the models' own attributes.

Every model is built with random weights in eval mode at a small input. The topology's
forward must be the model's, bit for bit; deleting a unit must equal the model with that
unit's branch zeroed by a forward hook written here (not by the adapter); the unit count must
equal the count read from the blocks' own attributes (timm's ``has_skip``, torchvision's
``use_res_connect``, two per transformer block, ...).
"""

from __future__ import annotations

import contextlib
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import pytest
import timm
import torch
from torch import Tensor, nn
from torchvision import models as tv

from resnet_probe.adapters import build_topology
from resnet_probe.adapters import fx as adapter
from resnet_probe.analyses.paths import count_paths, unraveled_graph
from resnet_probe.executor import Executor, Plan
from resnet_probe.structure import Topology, identity

from ..cli.helpers import run_cli


@dataclass(frozen=True)
class Case:
    """A model, its input size, its unit count from its own attributes, and one branch to zero by hand."""

    build: Callable[[], nn.Module]
    size: int
    expected_units: Callable[[nn.Module], int]
    unit: str  # a discovered unit's name
    branch: str  # the submodule whose output is that unit's residual branch (zeroed: the branch removed)


def _timm(name: str, **kwargs: object) -> Callable[[], nn.Module]:
    return lambda: timm.create_model(name, pretrained=False, **kwargs)


def _skips(model: nn.Module, attr: str) -> int:
    return sum(bool(getattr(m, attr)) for m in model.modules() if hasattr(m, attr))


def _count(model: nn.Module, kind: type, per_block: int = 1) -> int:
    return per_block * sum(isinstance(m, kind) for m in model.modules())


CASES: dict[str, Case] = {
    "timm:deit_tiny": Case(
        _timm("deit_tiny_patch16_224", img_size=32, init_values=0.1, drop_path_rate=0.1), 32,
        lambda m: 2 * len(m.blocks), "blocks.5.mlp", "blocks.5.ls2",  # layer scale is part of the branch
    ),
    "timm:deit_tiny_distilled": Case(
        _timm("deit_tiny_distilled_patch16_224", img_size=32), 32,
        lambda m: 2 * len(m.blocks), "blocks.2.attn", "blocks.2.attn",
    ),
    "timm:regnety_002": Case(
        _timm("regnety_002"), 64,
        lambda m: sum(b.downsample is not None for b in m.modules() if type(b).__name__ == "Bottleneck"),
        "s3.b2", "s3.b2.conv3",
    ),
    "timm:efficientnet_b0": Case(
        _timm("efficientnet_b0"), 64, lambda m: _skips(m, "has_skip"), "blocks.5.2", "blocks.5.2.bn3",
    ),
    "timm:mobilenetv3_small_100": Case(
        _timm("mobilenetv3_small_100"), 64, lambda m: _skips(m, "has_skip"), "blocks.2.1", "blocks.2.1.bn3",
    ),
    "timm:swin": Case(
        _timm("swin_tiny_patch4_window7_224", img_size=64, window_size=2, depths=(2, 2, 2, 2), embed_dim=48,
              num_heads=(2, 2, 2, 2)), 64,
        lambda m: 2 * sum(len(s.blocks) for s in m.layers), "layers.2.blocks.1.attn", "layers.2.blocks.1.attn",
    ),
    "timm:mixer": Case(
        _timm("mixer_s16_224", img_size=64), 64,
        lambda m: 2 * len(m.blocks), "blocks.2.mlp_tokens", "blocks.2.mlp_tokens",
    ),
    "tv:mobilenet_v2": Case(
        lambda: tv.mobilenet_v2(), 32, lambda m: _skips(m, "use_res_connect"), "features.5", "features.5.conv",
    ),
    "tv:efficientnet_b0": Case(
        lambda: tv.efficientnet_b0(), 32, lambda m: _skips(m, "use_res_connect"), "features.6.2",
        "features.6.2.block",
    ),
    "tv:swin_t": Case(
        lambda: tv.swin_t(), 64,
        lambda m: _count(m, tv.swin_transformer.SwinTransformerBlock, per_block=2), "features.5.3.mlp",
        "features.5.3.mlp",
    ),
}


def lively(model: nn.Module, x: Tensor) -> nn.Module:
    """BN statistics of ``x`` itself, random BN scales and no zero-initialised layer: every branch matters.

    With random weights and unit running variances, activations of deep CNNs shrink to nothing
    (their output no longer depends on the input); the statistics of one batch keep them alive.
    """
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.reset_running_stats()
                m.momentum = None  # a cumulative average: after one batch, that batch's statistics
                m.weight.copy_(0.5 + 0.5 * torch.rand(m.num_features, generator=g))  # timm zero-inits last BNs
            elif isinstance(m, nn.Linear) and not m.weight.any():
                m.weight.normal_(0, 0.02, generator=g)  # zero-initialised heads (timm's Mixer)
        model.train()(x)
    return model.eval()


@pytest.fixture(scope="module", params=sorted(CASES))
def built(request: pytest.FixtureRequest) -> tuple[Case, nn.Module, Topology, Tensor]:
    case = CASES[request.param]
    torch.manual_seed(0)
    x = torch.randn(2, 3, case.size, case.size, generator=torch.Generator().manual_seed(1))
    model = lively(case.build(), x)
    return case, model, adapter.build(model), x  # discovery itself, also where a named adapter would win


@contextlib.contextmanager
def zeroed(module: nn.Module) -> Iterator[None]:
    """The module's output replaced by zeros: the residual branch it ends contributes nothing."""
    handle = module.register_forward_hook(lambda mod, args, out: torch.zeros_like(out))
    try:
        yield
    finally:
        handle.remove()


def test_discovered_forward_is_the_models(built: tuple[Case, nn.Module, Topology, Tensor]) -> None:
    _, model, topo, x = built
    with torch.no_grad():
        expected = model(x)
        assert torch.equal(topo.forward(x), expected)
        assert torch.equal(Executor(topo).forward(x), expected)


def test_unit_count_matches_the_models_own_attributes(built: tuple[Case, nn.Module, Topology, Tensor]) -> None:
    case, model, topo, _ = built
    assert topo.n_units == case.expected_units(model)
    assert len({u.name for u in topo.units}) == topo.n_units
    counts = count_paths(unraveled_graph(topo))
    assert sum(counts) == 2**topo.n_units and len(counts) == topo.n_units + 1  # one graph, every path


def test_deleting_a_unit_is_the_model_without_its_branch(built: tuple[Case, nn.Module, Topology, Tensor]) -> None:
    case, model, topo, x = built
    unit = topo.unit_by_name(case.unit)
    with torch.no_grad(), zeroed(model.get_submodule(case.branch)):
        expected = model(x)
    got = Executor(topo).forward(x, Plan.delete(unit.index))
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-6)
    with torch.no_grad():
        assert not torch.allclose(got, model(x))


@pytest.mark.parametrize(
    ("name", "family"),
    [("deit_tiny_patch16_224", "vit"), ("deit_tiny_distilled_patch16_224", "fx"), ("convnext_atto", "convnext"),
     ("resnet18", "timm-resnet"), ("resnest14d", "fx"), ("regnetx_002", "fx")],
)
def test_adapters_are_chosen_by_module_classes(name: str, family: str) -> None:
    """A hand-written adapter for the classes it reads (whatever the name), discovery for the rest."""
    with torch.device("meta"):  # structure only: no weights needed to choose
        model = timm.create_model(name, pretrained=False)
    from resnet_probe.adapters import ADAPTERS

    chosen = next(n for n in ADAPTERS if __import__(f"resnet_probe.adapters.{n}", fromlist=["x"]).matches(model))
    assert {"vit": "vit", "fx": "fx", "convnext": "convnext", "timm-resnet": "timm_resnet"}[family] == chosen


def test_transformer_blocks_are_two_units_named_after_their_branch() -> None:
    torch.manual_seed(0)
    model = timm.create_model("deit_tiny_patch16_224", img_size=32, init_values=0.1, drop_path_rate=0.1).eval()
    topo = adapter.build(model)  # the named ViT adapter would win in build_topology
    assert [u.name for u in topo.units[:4]] == ["blocks.0.attn", "blocks.0.mlp", "blocks.1.attn", "blocks.1.mlp"]
    assert all(u.shortcut_kind == "identity" and u.stage == 1 for u in topo.units)
    assert topo.units[0].module is model.blocks[0].attn
    residual = topo.units[1].residual
    assert isinstance(residual, torch.fx.GraphModule)
    used = {str(n.target) for n in residual.graph.nodes if n.op in ("call_module", "get_attr")}
    assert {"blocks.0.norm2.weight", "blocks.0.mlp.fc2", "blocks.0.ls2.gamma"} <= used  # layer scale included
    assert adapter.BRANCH_NOTE in topo.notes
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(topo.forward(x), model(x))


def test_patch_merging_and_sizes_carried_in_a_block() -> None:
    """timm's Swin: B, H, W, C read at a block's start are recomputed inside each of its two units."""
    case = CASES["timm:swin"]
    model = case.build().eval()
    topo = build_topology(model)
    assert adapter.LAYOUT_NOTE in topo.notes and adapter.TRANSITION_NOTE in topo.notes
    assert sorted(topo.transitions) == [4, 8, 12]  # patch merging opens stages 2-4
    assert [u.stage for u in topo.units] == [1] * 4 + [2] * 4 + [3] * 4 + [4] * 4
    x = torch.randn(3, 3, 64, 64)  # another batch size than the one a trace might have assumed
    with torch.no_grad():
        assert torch.equal(topo.forward(x), model(x))


def test_projection_shortcuts_and_post_activation() -> None:
    model = timm.create_model("regnety_002").eval()
    topo = build_topology(model)
    kinds = [u.shortcut_kind for u in topo.units]
    assert kinds.count("projection") == 4 and kinds[0] == "projection"  # the first block of each stage
    assert all(u.post is not identity for u in topo.units)  # act3 after every addition
    assert [u.stride for u in topo.units if u.shortcut_kind == "projection"] == [2, 2, 2, 2]


@pytest.mark.parametrize(
    ("spec", "units"),
    [("timm:deit_tiny_distilled_patch16_224", 24), ("timm:efficientnet_b0", 9), ("tv:swin_t", 24)],
)
def test_paths_command_on_discovered_models(capsys: pytest.CaptureFixture[str], tmp_path: Path, spec: str,
                                            units: int) -> None:
    r = run_cli(capsys, "paths", "--model", spec, "--out", tmp_path / "run")
    assert r.code == 0, r.err
    res = json.loads((tmp_path / "run" / "results.json").read_text())["result"]
    assert res["n_units"] == units and res["counts"] == [math.comb(units, k) for k in range(units + 1)]


@pytest.mark.parametrize(
    ("spec", "units"),
    [("tv:mobilenet_v2", 10), ("timm:regnety_002", 13), ("timm:deit_tiny_distilled_patch16_224", 24)],
)
def test_lesion_command_on_discovered_models(capsys: pytest.CaptureFixture[str], tmp_path: Path, spec: str,
                                             units: int) -> None:
    out = tmp_path / "run"
    r = run_cli(capsys, "lesion", "--random-init", "--model", spec, "--dataset", "digits", "--limit", "8",
                "--device", "cpu", "--out", out)
    assert r.code == 0, r.err
    doc = json.loads((out / "results.json").read_text())
    assert doc["model"]["family"] == "fx" and doc["model"]["units"] == units
    assert [u["index"] for u in doc["result"]["units"]] == list(range(units))
