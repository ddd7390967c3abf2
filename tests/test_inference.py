"""The runner's fast path: BatchNorm folded into convolutions, NHWC; same predictions, the loaded model untouched."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from resnet_probe.data import load_data
from resnet_probe.executor import Plan
from resnet_probe.inference import fold_batchnorm
from resnet_probe.models.load import load_model
from resnet_probe.runner import make_executor
from resnet_probe.settings import RunSettings


def _bn_count(model: nn.Module) -> int:
    return sum(isinstance(m, nn.BatchNorm2d) for m in model.modules())


@pytest.mark.parametrize("spec", ["zoo:resnet20", "zoo:preact_resnet20", "tv:resnet18"])
def test_folding_keeps_the_function_and_removes_every_bn_that_follows_a_conv(spec: str) -> None:
    torch.manual_seed(0)
    model = load_model(spec, weights="random", num_classes=10).model.eval()
    for m in model.modules():  # non-trivial running statistics, as a trained net has
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
            m.weight.data.uniform_(0.5, 1.5)
    folded = copy.deepcopy(model)
    n = fold_batchnorm(folded)
    before = _bn_count(model)
    # Pre-activation nets put BN before the conv: only the stem-free post-activation BNs fold.
    assert n == before - _bn_count(folded) and n > 0
    x = torch.randn(8, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(folded(x), model(x), atol=1e-4, rtol=1e-4)


def test_a_shared_conv_is_not_folded() -> None:
    class Twice(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv, self.bn = nn.Conv2d(3, 3, 3, padding=1), nn.BatchNorm2d(3)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.bn(self.conv(self.conv(x)))

    model = Twice().eval()
    assert fold_batchnorm(model) == 0 and isinstance(model.bn, nn.BatchNorm2d)


def test_the_runners_executor_gives_the_plain_models_predictions_and_leaves_it_untouched() -> None:
    loaded = load_model("zoo:resnet20", dataset="cifar10-sample")
    state = {k: v.clone() for k, v in loaded.model.state_dict().items()}
    data = load_data("cifar10-sample", limit=128)
    x, y = next(data.batches(128, loaded.preprocessing))
    plain = make_executor(loaded, torch.device("cpu"), RunSettings("resnet20", channels_last=False), fold=False)
    fast = make_executor(loaded, torch.device("cpu"), RunSettings("resnet20"))
    assert fast.channels_last and _bn_count(fast.topology.model) == 0
    for plan in (Plan(), Plan.delete(4), Plan(order=(0, 2, 1, 3, 4, 5, 6, 7, 8))):
        a, b = plain.forward(x, plan), fast.forward(x, plan)
        torch.testing.assert_close(b, a, atol=1e-4, rtol=1e-4)
        assert (a.argmax(1) == b.argmax(1)).all()
    assert all(torch.equal(v, loaded.model.state_dict()[k]) for k, v in state.items())
    assert _bn_count(loaded.model) == 19 and loaded.params == 269_722
