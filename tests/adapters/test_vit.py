"""The timm ViT adapter: two units per block, pre-add responses, routes on tokens, fidelity."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from torch import nn

timm = pytest.importorskip("timm")

from timm.models import vision_transformer as vt  # noqa: E402

from resnet_probe.adapters import build_topology  # noqa: E402
from resnet_probe.adapters import vit as adapter  # noqa: E402
from resnet_probe.errors import AdapterError  # noqa: E402
from resnet_probe.executor import Executor, Plan  # noqa: E402
from resnet_probe.structure import identity  # noqa: E402


def tiny(**kwargs: Any) -> nn.Module:
    """A two-block ViT on 32x32 images (16 patches of 8x8), 10 classes, random weights."""
    torch.manual_seed(0)
    args: dict[str, Any] = dict(img_size=32, patch_size=8, embed_dim=32, depth=2, num_heads=2, num_classes=10)
    return vt.VisionTransformer(**{**args, **kwargs}).eval()


def image(seed: int = 1, n: int = 2) -> torch.Tensor:
    """Small random images."""
    return torch.randn(n, 3, 32, 32, generator=torch.Generator().manual_seed(seed))


def test_vit_tiny_has_24_units() -> None:
    model = timm.create_model("vit_tiny_patch16_224", img_size=32)
    topo = adapter.build(model)
    assert topo.family == "vit" and topo.n_units == 24
    assert [u.name for u in topo.units[:4]] == ["blocks.0.attn", "blocks.0.mlp", "blocks.1.attn", "blocks.1.mlp"]
    assert topo.stages() == [list(range(24))] and not topo.transitions
    for unit in topo.units:
        assert (unit.in_channels, unit.out_channels, unit.stride, unit.downsampling) == (192, 192, 1, False)
        assert unit.shortcut_kind == "identity" and unit.post is identity
        block = model.blocks[unit.index // 2]
        ((name, module),) = unit.responses
        ls = "ls1" if unit.name.endswith("attn") else "ls2"
        assert name == f"blocks.{unit.index // 2}.{ls}" and module is getattr(block, ls)
        assert model.get_submodule(name) is module


def test_notes() -> None:
    plain = adapter.build(tiny())
    for note in (adapter.TWO_UNITS_NOTE, adapter.PRENORM_NOTE, adapter.RESPONSE_NOTE, adapter.STEM_NOTE):
        assert note in plain.notes
    assert adapter.LAYER_SCALE_NOTE not in plain.notes
    assert adapter.LAYER_SCALE_NOTE in adapter.build(tiny(init_values=0.1)).notes
    post = adapter.build(tiny(block_fn=vt.ResPostBlock))
    assert adapter.POSTNORM_NOTE in post.notes and adapter.RESPONSE_POST_NOTE in post.notes


@pytest.mark.parametrize(
    "kwargs",
    [
        {},
        {"init_values": 0.3},  # layer scale
        {"reg_tokens": 2, "no_embed_class": True, "global_pool": "avg"},  # registers, pos embed without prefix
        {"class_token": False, "global_pool": "map"},  # attention-pool head
        {"pre_norm": True, "fc_norm": True, "global_pool": "avg"},  # norm_pre in the stem, fc_norm in the head
        {"dynamic_img_size": True},
        {"block_fn": vt.ResPostBlock, "init_values": 0.5},  # post-norm blocks
    ],
)
def test_forward_equals_model(kwargs: dict[str, Any]) -> None:
    model = tiny(**kwargs)
    topo = adapter.build(model)
    x = image()
    with torch.no_grad():
        expected, got = model(x), topo.forward(x)
    assert expected.shape == (2, 10) and expected.abs().max() > 1e-3
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-5)


def test_vit_tiny_forward_equals_model() -> None:
    model = timm.create_model("vit_tiny_patch16_224", img_size=32, num_classes=10).eval()
    with torch.no_grad():
        x = image()
        torch.testing.assert_close(adapter.build(model).forward(x), model(x), rtol=0, atol=1e-5)


def test_hybrid_backbone_belongs_to_the_stem() -> None:
    torch.manual_seed(0)
    model = timm.create_model("vit_tiny_r_s16_p8_224", img_size=64, num_classes=10).eval()
    topo = adapter.build(model)
    assert topo.n_units == 24 and adapter.HYBRID_NOTE in topo.notes
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        torch.testing.assert_close(topo.forward(x), model(x), rtol=0, atol=1e-5)


def test_responses_are_the_pre_add_branch_outputs() -> None:
    model = tiny(init_values=0.3)
    topo = adapter.build(model)
    seen: dict[str, torch.Tensor] = {}
    x = image()
    Executor(topo).capture(x, lambda name, out: seen.setdefault(name, out.clone()))
    assert list(seen) == ["blocks.0.ls1", "blocks.0.ls2", "blocks.1.ls1", "blocks.1.ls2"]
    with torch.no_grad():
        h = topo.stem(x)
        for unit, (name, _) in zip(topo.units, [r for u in topo.units for r in u.responses], strict=True):
            branch = unit.residual(h)
            torch.testing.assert_close(seen[name], branch, rtol=0, atol=0)
            assert branch.shape == (2, 17, 32)  # (batch, class token + 16 patches, dim)
            h = unit.forward(h)


def test_deleting_each_unit_skips_its_branch() -> None:
    model = tiny()
    topo = adapter.build(model)
    x = image()
    outs = Executor(topo).run_plans(x, [Plan.delete(i) for i in range(4)], reduce=lambda z: z.clone())
    with torch.no_grad():
        tokens = topo.stem(x)
        # blocks.1.attn deleted, by hand: block 0 whole, then only block 1's MLP half.
        b1 = model.blocks[1]
        h = model.blocks[0](tokens)
        h = h + b1.drop_path2(b1.ls2(b1.mlp(b1.norm2(h))))
        torch.testing.assert_close(outs[2], model.forward_head(model.norm(h)), rtol=0, atol=1e-5)
        full = model(x)
    assert all(not torch.allclose(o, full) for o in outs)


def test_routes_work_on_token_tensors() -> None:
    model = tiny(init_values=0.5)
    topo = adapter.build(model)
    ex = Executor(topo)
    n = topo.n_units
    x, y = image(n=2), torch.tensor([0, 3])
    x_req = x.clone().requires_grad_(True)
    loss = nn.functional.cross_entropy(model(x_req), y, reduction="sum")
    (expected,) = torch.autograd.grad(loss, x_req)
    # The backward pass is linear: the 2^n routed gradients add up to the whole gradient.
    total = torch.zeros_like(x)
    for code in range(2**n):
        routes = torch.tensor([[(code >> i) & 1 for i in range(n)]] * 2, dtype=torch.float32)
        xr = x.clone().requires_grad_(True)
        logits = ex.forward_routed(xr, routes)
        with torch.no_grad():
            torch.testing.assert_close(logits, model(x), rtol=0, atol=1e-5)
        (grad,) = torch.autograd.grad(nn.functional.cross_entropy(logits, y, reduction="sum"), xr)
        total += grad
    torch.testing.assert_close(total, expected, rtol=1e-4, atol=1e-6)
    norms = ex.routed_input_grad_norms(x, y, torch.tensor([[1.0, 0, 0, 0], [0, 0, 0, 0]]))
    mlp_only = ex.routed_input_grad_norms(x, y, torch.tensor([[0.0, 1, 0, 1], [0, 1, 0, 0]]))
    # Class-token pooling: without an attention unit the head sees the class token, never a patch.
    assert norms.shape == (2,) and norms[0] > 0 and norms[1] == 0
    assert mlp_only.tolist() == [0.0, 0.0]
    assert adapter.CLASS_TOKEN_NOTE in topo.notes
    assert all(p.grad is None for p in model.parameters())


def test_parallel_blocks_are_refused() -> None:
    model = tiny(block_fn=vt.ParallelScalingBlock)
    with pytest.raises(AdapterError) as exc:
        adapter.build(model)
    message = str(exc.value)
    assert "\n" not in message and "ParallelScalingBlock" in message and "Block and ResPostBlock" in message
    assert not adapter.matches(model) and build_topology(model).family == "fx"  # discovery reads them instead


def test_matches_and_dispatch() -> None:
    model = tiny()
    assert adapter.matches(model) and build_topology(model).family == "vit"
    assert not adapter.matches(timm.create_model("resnet18"))
    with pytest.raises(AdapterError, match="not a timm VisionTransformer"):
        adapter.build(nn.Sequential())
