"""VoVNet for CIFAR: sizes, shapes, and the OSAModule unit view."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from resnet_probe.models.zoo import vovnet as vv

from ._helpers import n_params, randomise_bn, within

BUILDERS = {"vovnet_cifar": (vv.vovnet_cifar, 767_274), "vovnet_ese_cifar": (vv.vovnet_ese_cifar, 827_242)}


@pytest.mark.parametrize("name", list(BUILDERS))
def test_size_and_forward(name: str) -> None:
    builder, exact = BUILDERS[name]
    torch.manual_seed(0)
    model = builder().eval()
    count = n_params(model)
    assert count == exact
    assert within(count, 0.8, tol=0.10), count
    assert len(model.stages) == 3 and len(model.downsamples) == 3
    assert isinstance(model.downsamples[0], nn.Identity)
    assert all(isinstance(d, nn.MaxPool2d) for d in model.downsamples[1:])
    assert all(isinstance(s, nn.Sequential) and len(s) == vv.MODULES_PER_STAGE for s in model.stages)
    assert isinstance(model.classifier, nn.Linear)
    with torch.no_grad():
        out = model(torch.randn(2, 3, 32, 32))
    assert out.shape == (2, 10) and torch.isfinite(out).all()


def test_v2_flags() -> None:
    v1, v2 = vv.vovnet_cifar(), vv.vovnet_ese_cifar()
    assert all(m.ese is None and not m.identity for m in v1.osa_modules)
    assert all(m.ese is not None for m in v2.osa_modules)
    assert [m.identity for m in v2.osa_modules] == [False, True] * 3
    last = vv.CifarVoVNet(ese="last", identity=True)
    assert [m.ese is not None for m in last.osa_modules] == [False, True] * 3
    assert vv.vovnet_cifar(num_classes=100).classifier.out_features == 100
    with pytest.raises(ValueError):
        vv.OSAModule(8, 4, 16, 2, identity=True)


def _reference(m: vv.OSAModule, x: torch.Tensor) -> torch.Tensor:
    """OSA by hand from the module's own convs and BNs (eval mode)."""
    h, outs = x, []
    for layer in m.layers:
        conv, bn = layer[0], layer[1]
        h = F.relu(bn(F.conv2d(h, conv.weight, padding=1)))
        outs.append(h)
    cat = torch.cat([x, *outs], 1)
    y = F.relu(m.concat[1](F.conv2d(cat, m.concat[0].weight)))
    if m.ese is not None:
        s = y.mean((2, 3), keepdim=True)
        s = F.conv2d(s, m.ese.fc.weight, m.ese.fc.bias)
        y = y * torch.clamp(s + 3.0, 0.0, 6.0) / 6.0
    if m.identity:
        y = y + x
    return y


@pytest.mark.parametrize("ese,identity", [(False, False), (True, False), (True, True), (False, True)])
def test_osa_module_unit_view(ese: bool, identity: bool) -> None:
    torch.manual_seed(1)
    c_in = 12 if identity else 7
    m = vv.OSAModule(c_in, 5, 12, 3, ese=ese, identity=identity)
    randomise_bn(m)
    if ese:
        with torch.no_grad():
            m.ese.fc.bias.normal_()  # make the eSE gate non-trivial
    m.eval()
    x = torch.randn(2, c_in, 8, 8)
    with torch.no_grad():
        outs = m.chain(x)
        assert len(outs) == 3 and all(o.shape == (2, 5, 8, 8) for o in outs)
        y = m(x)
        assert y.shape == (2, 12, 8, 8)
        assert torch.equal(y, m.aggregate(x, outs))
        torch.testing.assert_close(y, _reference(m, x))
        assert m.response_bns == tuple(layer[1] for layer in m.layers)
        assert all(isinstance(b, nn.BatchNorm2d) for b in m.response_bns)
        # A layer's output replaced by zeros downstream of the chain: aggregate uses exactly what it is given.
        zeroed = [outs[0], torch.zeros_like(outs[1]), outs[2]]
        assert not torch.allclose(m.aggregate(x, zeroed), y)


def test_model_forward_reference() -> None:
    torch.manual_seed(2)
    model = randomise_bn(vv.CifarVoVNet((4, 6, 8), (8, 12, 16), 2, 2, 6, ese="all", identity=True)).eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        h = model.stem(x)
        for i, stage in enumerate(model.stages):
            if i > 0:
                h = F.max_pool2d(h, 2, 2)
            for m in stage:
                h = _reference(m, h)
        assert h.shape == (2, 16, 8, 8)
        torch.testing.assert_close(model(x), model.classifier(h.mean((2, 3))))
