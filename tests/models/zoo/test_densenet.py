"""DenseNet for CIFAR: Table 2 parameter counts, shapes, and the DenseLayer unit view."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from resnet_probe.models.zoo import densenet as dn

from ._helpers import n_params, randomise_bn, within

TABLE2 = [  # builder, params in Table 2 (millions), depth, k, bottleneck, layers per block
    (dn.densenet40_k12, 1.0, 40, 12, False, 12),
    (dn.densenet100_k12, 7.0, 100, 12, False, 32),
    (dn.densenet_bc100_k12, 0.8, 100, 12, True, 16),
    (dn.densenet_bc250_k24, 15.3, 250, 24, True, 41),
    (dn.densenet_bc190_k40, 25.6, 190, 40, True, 31),
]
EXACT = {
    "densenet40_k12": 1_019_722,
    "densenet100_k12": 6_979_642,
    "densenet_bc100_k12": 769_162,
    "densenet_bc250_k24": 15_324_406,
    "densenet_bc190_k40": 25_624_430,
}
FORWARD = [dn.densenet40_k12, dn.densenet100_k12, dn.densenet_bc100_k12]  # the two biggest: count only


@pytest.mark.parametrize("builder,millions,depth,k,bc,layers", TABLE2, ids=[t[0].__name__ for t in TABLE2])
def test_table2_parameter_counts(builder, millions, depth, k, bc, layers) -> None:
    model = builder()
    count = n_params(model)
    assert within(count, millions), f"{builder.__name__}: {count} vs {millions}M"
    assert count == EXACT[builder.__name__]
    assert (model.depth, model.growth_rate, model.bottleneck) == (depth, k, bc)
    assert model.compression == (0.5 if bc else 1.0)
    assert len(model.blocks) == 3 and len(model.transitions) == 2
    assert all(isinstance(b, dn.DenseBlock) and len(b) == layers for b in model.blocks)
    assert all(isinstance(t, dn.Transition) for t in model.transitions)
    assert model.stem.out_channels == (2 * k if bc else 16)
    assert isinstance(model.norm, nn.BatchNorm2d) and isinstance(model.classifier, nn.Linear)
    assert len(model.response_convs) == 3 * layers
    assert all(c.kernel_size == (3, 3) and c.out_channels == k for c in model.response_convs)


@pytest.mark.parametrize("builder", FORWARD, ids=[b.__name__ for b in FORWARD])
def test_forward_shape(builder) -> None:
    torch.manual_seed(0)
    model = builder().eval()
    with torch.no_grad():
        out = model(torch.randn(2, 3, 32, 32))
    assert out.shape == (2, 10)
    assert torch.isfinite(out).all()


def test_num_classes_and_bad_depth() -> None:
    assert dn.densenet_bc100_k12(num_classes=100).classifier.out_features == 100
    with pytest.raises(ValueError):
        dn.CifarDenseNet(41, 12)
    with pytest.raises(ValueError):
        dn.CifarDenseNet(42, 12, bottleneck=True)


def test_init() -> None:
    torch.manual_seed(0)
    model = dn.densenet_bc100_k12()
    assert all(torch.all(m.weight == 1) and torch.all(m.bias == 0)
               for m in model.modules() if isinstance(m, nn.BatchNorm2d))
    assert torch.all(model.classifier.bias == 0)
    w = model.blocks[2][0].conv2.weight  # 3x3, 12 outputs: std sqrt(2 / (9 * 12))
    assert abs(w.std().item() - (2 / (9 * 12)) ** 0.5) < 0.02


def _reference_branch(layer: dn.DenseLayer, x: torch.Tensor) -> torch.Tensor:
    if layer.bottleneck:
        h = F.conv2d(F.relu(layer.norm1(x)), layer.conv1.weight)
        return F.conv2d(F.relu(layer.norm2(h)), layer.conv2.weight, padding=1)
    return F.conv2d(F.relu(layer.norm1(x)), layer.conv1.weight, padding=1)


@pytest.mark.parametrize("bottleneck", [False, True])
def test_dense_layer_unit_view(bottleneck: bool) -> None:
    torch.manual_seed(1)
    layer = randomise_bn(dn.DenseLayer(10, 6, bottleneck)).eval()
    x = torch.randn(2, 10, 8, 8)
    with torch.no_grad():
        new = layer.branch(x)
        out = layer(x)
        assert new.shape == (2, 6, 8, 8)
        assert torch.equal(out, torch.cat([x, new], 1))
        assert torch.equal(out, layer.merge(x, new))
        torch.testing.assert_close(new, _reference_branch(layer, x))
        assert layer.response_convs == (layer.conv2 if bottleneck else layer.conv1,)
        seen = []
        handle = layer.response_convs[0].register_forward_hook(lambda m, i, o: seen.append(o))
        layer(x)
        handle.remove()
        assert torch.equal(seen[0], new)


@pytest.mark.parametrize("bottleneck", [False, True])
@pytest.mark.parametrize("zeroed", [0, 2, 3])
def test_dense_block_with_one_branch_zeroed(bottleneck: bool, zeroed: int) -> None:
    torch.manual_seed(2)
    num_layers, c0, k = 4, 8, 5
    block = randomise_bn(dn.DenseBlock(num_layers, c0, k, bottleneck), seed=3).eval()
    x = torch.randn(2, c0, 8, 8)

    # Hand-written loop: the reference computation, zeroing layer `zeroed`'s new features.
    h = x
    for i, layer in enumerate(block):
        new = _reference_branch(layer, h)
        if i == zeroed:
            new = torch.zeros_like(new)
        h = torch.cat([h, new], 1)
    assert h.shape == (2, c0 + num_layers * k, 8, 8)

    with torch.no_grad():
        # The same through the unit view.
        u = x
        for i, layer in enumerate(block):
            new = layer.branch(u)
            u = layer.merge(u, torch.zeros_like(new) if i == zeroed else new)
        torch.testing.assert_close(u, h)
        # And through a hook on the layer's response conv, with the block's own forward.
        handle = block[zeroed].response_convs[0].register_forward_hook(lambda m, i, o: torch.zeros_like(o))
        hooked = block(x)
        handle.remove()
        torch.testing.assert_close(hooked, h)
        assert not torch.allclose(block(x), h)


def test_transition_and_model_forward_reference() -> None:
    torch.manual_seed(4)
    model = randomise_bn(dn.CifarDenseNet(10, 4, bottleneck=True, compression=0.5), seed=5).eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        h = model.stem(x)
        for i, block in enumerate(model.blocks):
            for layer in block:
                h = torch.cat([h, _reference_branch(layer, h)], 1)
            if i < 2:
                t = model.transitions[i]
                assert t.out_channels == h.shape[1] // 2
                h = F.avg_pool2d(F.conv2d(F.relu(t.norm(h)), t.conv.weight), 2)
        ref = model.classifier(F.relu(model.norm(h)).mean((2, 3)))
        torch.testing.assert_close(model(x), ref)
