"""Beyond CIFAR ResNets: every family runs the same analyses and leaves the model as it was.

One model per adapter (timm ResNetV2, ConvNeXt, ViT, and the torch.fx fallback on a
hand-written residual CNN), random weights, tiny images: unit counts, fidelity of the
topology, path counts against the binomial, and the lesion, path-gradient and response-std
analyses run through a :class:`RunContext` on a few images.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable

import pytest
import torch
from torch import Tensor, nn

timm = pytest.importorskip("timm")

from resnet_probe.adapters import build_topology  # noqa: E402
from resnet_probe.analyses.base import RunContext  # noqa: E402
from resnet_probe.analyses.gradients import GradientsAnalysis  # noqa: E402
from resnet_probe.analyses.lesion import LesionAnalysis  # noqa: E402
from resnet_probe.analyses.paths import count_paths, unraveled_graph  # noqa: E402
from resnet_probe.analyses.response_std import ResponseStdAnalysis  # noqa: E402
from resnet_probe.data.source import TensorSource  # noqa: E402
from resnet_probe.executor import Executor  # noqa: E402
from resnet_probe.models.loaded import LoadedModel, Preprocessing  # noqa: E402
from resnet_probe.models.spec import ModelSpec  # noqa: E402

N_IMAGES = 4
PREP = Preprocessing(mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25), input_size=None, source="timm")


class ResidualCNN(nn.Module):
    """A hand-written residual CNN no named adapter knows: the fx fallback reads it."""

    def __init__(self, classes: int = 10) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8), nn.ReLU())
        self.units = nn.ModuleList(self._branch(8, 8, 1) for _ in range(2))
        self.down = self._branch(8, 16, 2)
        self.proj = nn.Sequential(nn.Conv2d(8, 16, 1, stride=2, bias=False), nn.BatchNorm2d(16))
        self.last = self._branch(16, 16, 1)
        self.fc = nn.Linear(16, classes)

    @staticmethod
    def _branch(cin: int, cout: int, stride: int) -> nn.Sequential:
        return nn.Sequential(
            nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(),
            nn.Conv2d(cout, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout),
        )

    def forward(self, x: Tensor) -> Tensor:
        x = self.stem(x)
        for unit in self.units:
            x = torch.relu(x + unit(x))
        x = torch.relu(self.proj(x) + self.down(x))
        x = torch.relu(x + self.last(x))
        return self.fc(x.mean(dim=(2, 3)))


@dataclass(frozen=True)
class Family:
    """One model per adapter, with the image size it runs on and its expected unit count."""

    family: str
    spec: ModelSpec
    make: Callable[[], nn.Module]
    size: int
    units: int


FAMILIES = {
    "resnetv2": Family(
        "timm-resnetv2", ModelSpec("timm", "resnetv2_50"),
        lambda: timm.create_model("resnetv2_50", num_classes=10), 64, 16,
    ),
    "convnext": Family(
        "convnext", ModelSpec("timm", "convnext_atto"),
        lambda: timm.create_model("convnext_atto", num_classes=10, ls_init_value=0.5), 64, 12,
    ),
    "vit": Family(
        "vit", ModelSpec("timm", "vit_tiny_patch16_224"),
        lambda: timm.create_model("vit_tiny_patch16_224", num_classes=10, img_size=32, init_values=0.5), 32, 24,
    ),
    "fx": Family("fx", ModelSpec("custom", "ResidualCNN"), ResidualCNN, 32, 4),
}


def randomize(model: nn.Module, seed: int = 0) -> nn.Module:
    """Random norm statistics and affines, so that no branch is (near) zero."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.copy_(0.1 * torch.randn(m.num_features, generator=g))
                m.running_var.copy_(0.5 + torch.rand(m.num_features, generator=g))
            if isinstance(m, (nn.BatchNorm2d, nn.GroupNorm, nn.LayerNorm)) and m.weight is not None:
                m.weight.copy_(0.5 + 0.5 * torch.rand(m.weight.shape, generator=g))
    return model.eval()


@pytest.fixture(scope="module", params=sorted(FAMILIES))
def case(request: pytest.FixtureRequest) -> tuple[Family, LoadedModel, TensorSource]:
    """A loaded random-weight model of one family and four random images of its size."""
    fam = FAMILIES[request.param]
    torch.manual_seed(0)
    model = randomize(fam.make())
    loaded = LoadedModel(model, fam.spec, build_topology(model), num_classes=10, preprocessing=PREP)
    g = torch.Generator().manual_seed(1)
    data = TensorSource(
        name="random", split="test", num_classes=10, classes=tuple(str(i) for i in range(10)),
        image_size=fam.size, default_preprocessing=PREP,
        images=torch.randint(0, 256, (N_IMAGES, 3, fam.size, fam.size), dtype=torch.uint8, generator=g),
        labels=torch.randint(0, 10, (N_IMAGES,), generator=g),
    )
    return fam, loaded, data


def inputs(data: TensorSource) -> tuple[Tensor, Tensor]:
    """The whole (tiny) data set as one normalised batch."""
    ((x, y),) = list(data.batches(N_IMAGES))
    return x, y


def test_unit_count_and_forward_fidelity(case: tuple[Family, LoadedModel, TensorSource]) -> None:
    fam, loaded, data = case
    topo = loaded.topology
    assert topo.family == fam.family and topo.n_units == fam.units
    assert topo.notes  # every adapter explains its family's specifics
    x, _ = inputs(data)
    with torch.no_grad():
        expected = loaded.model(x)
        got = topo.forward(x)
    assert expected.shape == (N_IMAGES, 10)
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-5)


def test_path_counts_are_binomial(case: tuple[Family, LoadedModel, TensorSource]) -> None:
    _, loaded, _ = case
    n = loaded.topology.n_units
    counts = count_paths(unraveled_graph(loaded.topology))
    assert counts == [math.comb(n, k) for k in range(n + 1)]
    assert sum(counts) == 2**n


def snapshot(model: nn.Module) -> dict[str, Any]:
    """Everything an analysis must leave as it was: values, flags and hooks."""
    return {
        "state": {k: v.clone() for k, v in model.state_dict().items()},
        "training": [m.training for m in model.modules()],
        "hooks": sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in model.modules()),
        "grads": [p.grad for p in model.parameters()],
    }


def assert_untouched(model: nn.Module, before: dict[str, Any]) -> None:
    """Parameters and buffers bit-identical, flags restored, no hooks, no gradients."""
    after = snapshot(model)
    assert after["state"].keys() == before["state"].keys()
    assert all(torch.equal(after["state"][k], v) for k, v in before["state"].items())
    assert after["training"] == before["training"]
    assert after["hooks"] == before["hooks"] == 0
    assert all(g is None for g in after["grads"])


def test_lesion_gradients_and_responses_run_and_leave_the_model_untouched(
    case: tuple[Family, LoadedModel, TensorSource],
) -> None:
    fam, loaded, data = case
    model = loaded.model.train()  # the analyses switch to eval mode and must switch back
    try:
        before = snapshot(model)
        ctx = RunContext(loaded=loaded, executor=Executor(loaded.topology), data=data, batch_size=N_IMAGES)
        lesion = LesionAnalysis().run(ctx)
        grads = GradientsAnalysis().run(ctx, samples=3, k="1:3")
        assert_untouched(model, before)
        responses = ResponseStdAnalysis().run(ctx) if fam.family != "fx" else None
        assert_untouched(model, before)
    finally:
        model.eval()

    n = fam.units
    x, y = inputs(data)
    with torch.no_grad():
        correct = int((model(x).argmax(1) == y).sum())
    assert (lesion.baseline.n, lesion.baseline.correct) == (N_IMAGES, correct)
    assert [c.deleted for c in lesion.configs] == [(i,) for i in range(n)]
    assert [c.names for c in lesion.configs] == [(u.name,) for u in loaded.topology.units]
    assert all(0 <= c.correct <= N_IMAGES and math.isfinite(c.loss) for c in lesion.configs)
    # Deleting a branch changes the loss of these images (no branch is zero).
    assert all(c.loss != lesion.baseline.loss for c in lesion.configs)

    assert grads.n_units == n and [row.k for row in grads.lengths] == [1, 2, 3]
    assert [row.paths for row in grads.lengths] == [math.comb(n, k) for k in (1, 2, 3)]
    assert all(row.samples == 3 and math.isfinite(row.mean_norm) for row in grads.lengths)
    assert sum(row.share for row in grads.lengths) == pytest.approx(1.0)

    if responses is not None:
        (measured,) = responses.models
        names = [name for u in loaded.topology.units for name, _ in u.responses]
        assert [layer.name for layer in measured.layers] == names
        assert all(math.isfinite(layer.std) and layer.std > 0 for layer in measured.layers)
        # The overall std does not depend on the layout: (B, C, H, W), (B, H, W, C) or (B, tokens, dim).
        seen: dict[str, Tensor] = {}
        Executor(loaded.topology).capture(x, lambda name, out: seen.setdefault(name, out.double()))
        for layer in (measured.layers[0], measured.layers[-1]):
            assert layer.std == pytest.approx(float(seen[layer.name].std(unbiased=False)), rel=1e-6)
