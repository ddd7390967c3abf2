"""Identity-mappings variants (He et al. 2016): references per variant, unit view, Table 4 sizes."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from resnet_probe.models.zoo import identity_mappings as im

from ._helpers import n_params, randomise_bn, within

# (in_planes, planes, stride): identity unit, downsampling unit with projection.
SHAPES = [(8, 8, 1), (8, 16, 2)]


def _block(variant: str, in_planes: int, planes: int, stride: int, seed: int = 0) -> im.VariantBlock:
    torch.manual_seed(seed)
    block = randomise_bn(im.VariantBlock(variant, in_planes, planes, stride), seed=seed + 1)
    if block.gate is not None:
        with torch.no_grad():  # a milder gate bias than -6 so the gate's both sides matter in the check
            block.gate.bias.uniform_(-2.0, 1.0)
    return block.eval()


def _bn(bn: nn.BatchNorm2d, x: torch.Tensor) -> torch.Tensor:
    return F.batch_norm(x, bn.running_mean, bn.running_var, bn.weight, bn.bias, False, 0.0, bn.eps)


def _conv(conv: nn.Conv2d, x: torch.Tensor) -> torch.Tensor:
    return F.conv2d(x, conv.weight, conv.bias, conv.stride, conv.padding)


def _proj(block: im.VariantBlock, x: torch.Tensor) -> torch.Tensor:
    conv, bn = block.projection[0], block.projection[1]
    return _bn(bn, _conv(conv, x))


def _reference(block: im.VariantBlock, x: torch.Tensor) -> torch.Tensor:
    """Each unit written out from Fig. 2 / Fig. 4 with the block's own weights (eval mode)."""
    v = block.variant
    c1, b1, c2, b2 = block.conv1, block.bn1, block.conv2, block.bn2
    if v == "full_preact":
        pre = F.relu(_bn(b1, x))
        a = x if block.projection is None else _proj(block, pre)
        return a + _conv(c2, F.relu(_bn(b2, _conv(c1, pre))))
    if v == "relu_preact":
        pre = F.relu(x)
        a = x if block.projection is None else _proj(block, pre)
        return a + _bn(b2, _conv(c2, F.relu(_bn(b1, _conv(c1, pre)))))
    a = x if block.projection is None else _proj(block, x)
    f = _bn(b2, _conv(c2, F.relu(_bn(b1, _conv(c1, x)))))
    if v in ("original", "dropout_shortcut", "conv_shortcut"):  # eval: dropout is the identity
        return F.relu(a + f)
    if v == "const_scaling":
        return F.relu(0.5 * a + 0.5 * f)
    if v == "exclusive_gating":
        g = torch.sigmoid(_conv(block.gate, x))
        return F.relu((1 - g) * a + g * f)
    if v == "shortcut_gating":
        g = torch.sigmoid(_conv(block.gate, x))
        return F.relu((1 - g) * a + f)
    if v == "bn_after_add":
        return F.relu(_bn(block.bn_add, a + f))
    if v == "relu_before_add":
        return a + F.relu(f)
    raise AssertionError(v)


@pytest.mark.parametrize("shape", SHAPES, ids=["identity", "downsample"])
@pytest.mark.parametrize("variant", im.VARIANTS)
def test_variant_block_matches_reference(variant: str, shape) -> None:
    in_planes, planes, stride = shape
    block = _block(variant, in_planes, planes, stride)
    x = torch.randn(2, in_planes, 8, 8)
    with torch.no_grad():
        out = block(x)
        assert out.shape == (2, planes, 8 // stride, 8 // stride)
        torch.testing.assert_close(out, _reference(block, x))
        a, b, g = block.shortcut(x), block.branch(x), block.gates(x)
        assert torch.equal(out, block.merge(a, b, g))
        if variant not in im.GATED_VARIANTS:
            assert g is None
            assert torch.equal(out, block.merge(a, b))


@pytest.mark.parametrize("variant", im.VARIANTS)
def test_variant_block_structure(variant: str) -> None:
    down = im.VariantBlock(variant, 8, 16, 2)
    same = im.VariantBlock(variant, 16, 16, 1)
    # Every variant projects (1x1 stride-2 conv + BN) at a downsampling unit.
    assert isinstance(down.projection[0], nn.Conv2d) and down.projection[0].stride == (2, 2)
    assert down.projection[0].kernel_size == (1, 1) and isinstance(down.projection[1], nn.BatchNorm2d)
    assert (same.projection is not None) == (variant == "conv_shortcut")
    assert same.response_convs == (same.conv1, same.conv2)
    expected = (same.bn2,) if variant == "full_preact" else (same.bn1, same.bn2)
    assert same.response_bns == expected
    if variant in im.GATED_VARIANTS:
        assert same.gate.kernel_size == (1, 1) and same.gate.bias is not None
        assert torch.all(same.gate.bias == -6.0)
        assert down.gate.stride == (2, 2)
    else:
        assert same.gate is None


def test_gates_and_lesion() -> None:
    x = torch.randn(2, 8, 8, 8)
    ex = _block("exclusive_gating", 8, 8, 1)
    sc = _block("shortcut_gating", 8, 8, 1)
    with torch.no_grad():
        gs, gb = ex.gates(x)
        torch.testing.assert_close(gs + gb, torch.ones_like(gs))
        gs2, gb2 = sc.gates(x)
        assert gb2 is None and torch.all((gs2 > 0) & (gs2 < 1))
        with pytest.raises(ValueError):
            ex.merge(ex.shortcut(x), ex.branch(x))
        # Deleting the unit: the branch replaced by zeros leaves the gated shortcut.
        lesioned = ex.merge(ex.shortcut(x), torch.zeros_like(x), ex.gates(x))
        torch.testing.assert_close(lesioned, F.relu(gs * x))
    # At init (b_g = -6) the shortcut gate 1 - g is close to 1.
    torch.manual_seed(0)
    fresh = im.VariantBlock("shortcut_gating", 8, 8, 1).eval()
    with torch.no_grad():
        assert fresh.gates(x)[0].mean() > 0.95


def test_dropout_shortcut_modes() -> None:
    block = _block("dropout_shortcut", 8, 8, 1)
    x = torch.randn(2, 8, 8, 8)
    assert torch.equal(block.shortcut(x), x)  # eval: identity
    block.train()
    torch.manual_seed(0)
    s = block.shortcut(x)
    kept = s != 0
    torch.testing.assert_close(s[kept], 2.0 * x[kept])  # inverted dropout scales kept entries by 1/(1-p)
    assert 0.3 < kept.float().mean() < 0.7


@pytest.mark.parametrize("variant", im.VARIANTS)
def test_variant_resnet_forward(variant: str) -> None:
    torch.manual_seed(0)
    model = im.variant_resnet(8, variant).eval()
    assert isinstance(model, im.CifarVariantResNet)
    assert len(model.layer1) == len(model.layer2) == len(model.layer3) == 1
    assert (model.bn1 is None) == (variant == "full_preact")
    assert (model.bn is not None) == (variant == "full_preact")
    with torch.no_grad():
        out = model(torch.randn(2, 3, 32, 32))
    assert out.shape == (2, 10) and torch.isfinite(out).all()


@pytest.mark.parametrize("variant", im.VARIANTS)
def test_variant_resnet_reference(variant: str) -> None:
    torch.manual_seed(3)
    model = randomise_bn(im.variant_resnet(14, variant), seed=4).eval()
    for block in model.blocks:
        if block.gate is not None:
            with torch.no_grad():  # both sides of every gate matter in the check
                block.gate.bias.uniform_(-2.0, 1.0)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        h = _conv(model.conv1, x)
        if variant not in im.PREACT_VARIANTS:
            h = F.relu(_bn(model.bn1, h))
        elif variant == "relu_preact":
            h = _bn(model.bn1, h)
        for block in model.blocks:
            h = _reference(block, h)
        if variant == "full_preact":
            h = F.relu(_bn(model.bn, h))
        elif variant == "relu_preact":
            h = F.relu(h)
        torch.testing.assert_close(model(x), model.linear(h.mean((2, 3))))


def test_resnet110_size_and_bad_args() -> None:
    count = n_params(im.variant_resnet(110, "original"))
    assert count == 1_730_714 and within(count, 1.7)
    with pytest.raises(ValueError):
        im.variant_resnet(21, "original")
    with pytest.raises(ValueError):
        im.variant_resnet(20, "nope")
    with pytest.raises(ValueError):
        im.CifarBottleneckResNet(165)


TABLE4 = [
    (im.resnet164, 1.7, 1_704_154, False),
    (im.preact_resnet164, 1.7, 1_704_154, True),
    (im.preact_resnet1001, 10.2, 10_328_602, True),
]


@pytest.mark.parametrize("builder,millions,exact,preact", TABLE4, ids=[t[0].__name__ for t in TABLE4])
def test_table4_parameter_counts(builder, millions, exact, preact) -> None:
    model = builder()
    count = n_params(model)
    assert count == exact
    assert within(count, millions), f"{builder.__name__}: {count} vs {millions}M"
    assert model.preact == preact
    assert (model.bn1 is None) == preact and (model.bn is not None) == preact
    assert [layer[0].out_planes for layer in (model.layer1, model.layer2, model.layer3)] == [64, 128, 256]


@pytest.mark.parametrize("builder", [im.resnet164, im.preact_resnet164])
def test_bottleneck_forward(builder) -> None:
    torch.manual_seed(0)
    model = builder().eval()
    with torch.no_grad():
        out = model(torch.randn(2, 3, 32, 32))
    assert out.shape == (2, 10) and torch.isfinite(out).all()


@pytest.mark.parametrize("preact", [False, True])
@pytest.mark.parametrize("shape", [(16, 16, 1), (64, 16, 1), (64, 32, 2)], ids=["first", "identity", "down"])
def test_bottleneck_block_reference(preact: bool, shape) -> None:
    in_planes, planes, stride = shape
    torch.manual_seed(5)
    blk = randomise_bn(im.BottleneckBlock(in_planes, planes, stride, preact), seed=6).eval()
    x = torch.randn(2, in_planes, 8, 8)
    with torch.no_grad():
        if preact:
            pre = F.relu(_bn(blk.bn1, x))
            f = _conv(blk.conv1, pre)
            f = _conv(blk.conv2, F.relu(_bn(blk.bn2, f)))
            f = _conv(blk.conv3, F.relu(_bn(blk.bn3, f)))
            a = x if blk.projection is None else _bn(blk.projection[1], _conv(blk.projection[0], pre))
            ref = a + f
        else:
            f = F.relu(_bn(blk.bn1, _conv(blk.conv1, x)))
            f = F.relu(_bn(blk.bn2, _conv(blk.conv2, f)))
            f = _bn(blk.bn3, _conv(blk.conv3, f))
            a = x if blk.projection is None else _bn(blk.projection[1], _conv(blk.projection[0], x))
            ref = F.relu(a + f)
        out = blk(x)
        assert out.shape == (2, 4 * planes, 8 // stride, 8 // stride)
        torch.testing.assert_close(out, ref)
        assert blk.gates(x) is None
        assert torch.equal(out, blk.merge(blk.shortcut(x), blk.branch(x), blk.gates(x)))
        assert (blk.projection is None) == (in_planes == 4 * planes and stride == 1)
        assert blk.response_convs == (blk.conv2,) and blk.conv2.kernel_size == (3, 3)
        assert blk.response_bns == ((blk.bn3,) if preact else (blk.bn2,))
