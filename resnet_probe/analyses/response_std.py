"""Layer-response std (He et al. 2015, Fig. 7): one streaming float64 pass per model.

The response of a layer is each 3x3 conv's output after its BN, before the ReLU or the
addition (``Unit.responses``). Where no BN follows the conv inside the unit (full
pre-activation units, DenseNet layers) the adapters take the conv's own output; each
model's ``tensor`` records which of the two was taken, for the report to say. Its std is
taken over every element the evaluation set produces there (images x channels x
positions) and per channel. Activations are never
stored: each batch is reduced to per-channel (count, mean, M2) and merged into running
totals with Chan et al.'s parallel update, so memory stays O(channels) per layer.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Iterable

import torch
from torch import Tensor, nn

if TYPE_CHECKING:
    import pandas as pd

from resnet_probe import distributed
from resnet_probe.analyses.base import Advance, Analysis, RunContext
from resnet_probe.data import DataSource
from resnet_probe.data.preprocessing import Preprocessing
from resnet_probe.errors import ProbeError
from resnet_probe.executor import Executor
from resnet_probe.models.loaded import LoadedModel
from resnet_probe.results import Result
from resnet_probe.structure import Topology

STEM = "stem"  # the `unit` of the stem's responses
# A norm layer's output; nn.Identity is the hook point inside a norm-act layer (timm's BatchNormAct2d
# applies its ReLU in place after it), where an adapter reads the norm's output before the act.
NORMS = (nn.modules.batchnorm._NormBase, nn.GroupNorm, nn.LayerNorm, nn.Identity)


class Moments:
    """Running per-channel count, mean and M2 of one layer's responses, in float64."""

    def __init__(self, channels: int, device: torch.device) -> None:
        self.count = 0  # elements per channel; the same for every channel
        self.mean = torch.zeros(channels, dtype=torch.float64, device=device)
        self.m2 = torch.zeros(channels, dtype=torch.float64, device=device)

    def check(self, x: Tensor) -> None:
        """Reject responses that are not shaped (batch, channels, *spatial)."""
        if x.dim() < 2 or x.shape[1] != self.mean.numel():
            raise ValueError(f"expected (batch, {self.mean.numel()}, ...) responses, got {tuple(x.shape)}")

    def update(self, x: Tensor) -> None:
        """Fold in one batch of responses shaped (batch, channels, *spatial)."""
        self.check(x)
        self.merge(*batch_moments(x))

    def merge(self, n_b: int, mean_b: Tensor, m2_b: Tensor) -> None:
        """Chan et al.: combine (count, mean, M2) of two disjoint parts exactly."""
        if n_b == 0:
            return
        mean_b, m2_b = mean_b.to(self.mean.device), m2_b.to(self.mean.device)
        n_a = self.count
        n = n_a + n_b
        delta = mean_b - self.mean
        self.mean += delta * (n_b / n)
        self.m2 += m2_b + delta.square() * (n_a * n_b / n)
        self.count = n

    def channel_std(self) -> list[float]:
        """Population std of every channel."""
        return (self.m2 / self.count).sqrt().tolist() if self.count else []

    def std(self) -> float:
        """Population std over all elements: the channels merged as equal-sized parts."""
        if not self.count:
            return float("nan")
        channels = self.mean.numel()
        grand = self.mean.mean()
        m2 = self.m2.sum() + self.count * (self.mean - grand).square().sum()
        return float((m2 / (self.count * channels)).sqrt())


def batch_moments(x: Tensor) -> tuple[int, Tensor, Tensor]:
    """Per-channel (count, mean, M2) of one batch of responses, in float64."""
    n_b = x.numel() // x.shape[1]
    if n_b == 0:
        empty = torch.zeros(x.shape[1], dtype=torch.float64, device=x.device)
        return 0, empty, empty
    dims = [0, *range(2, x.dim())]
    # One fused float64 pass (Welford inside) per batch; no transposed copy.
    var_b, mean_b = torch.var_mean(x.detach().to(torch.float64), dim=dims, correction=0)
    return n_b, mean_b, var_b * n_b


@dataclass(frozen=True)
class LayerStd:
    """The response std of one layer: overall and per channel."""

    unit: str
    name: str
    std: float
    channel_std: tuple[float, ...]


@dataclass(frozen=True)
class ModelStd:
    """Every response layer of one model, in network order."""

    spec: str
    family: str
    depth: int | None
    residual: bool
    checkpoint: str | None
    layers: tuple[LayerStd, ...]
    accuracy: float | None = None  # test accuracy `train` recorded in the checkpoint, if any
    tensor: str = ""  # the units' responses: "norm" (after BN), "conv" (the conv's own output) or "mixed"

    @property
    def stds(self) -> list[float]:
        """The overall std of each layer, in network order."""
        return [layer.std for layer in self.layers]


@dataclass(frozen=True)
class ResponseStdResult(Result):
    """Response stds of one or more models over the same images."""

    analysis: ClassVar[str] = "response-std"
    models: tuple[ModelStd, ...]
    n_images: int = 0

    def to_frame(self) -> pd.DataFrame:
        """One row per response layer of every model, in network order."""
        import pandas as pd

        return pd.DataFrame([
            {"model": m.spec, "family": m.family, "residual": m.residual, "position": i, "unit": layer.unit,
             "layer": layer.name, "std": layer.std}
            for m in self.models for i, layer in enumerate(m.layers)
        ])


def response_std(
    executor: Executor,
    data: DataSource,
    *,
    batch_size: int = 256,
    preprocessing: Preprocessing | None = None,
    progress: Advance | None = None,
) -> tuple[list[tuple[str, str, Moments]], int]:
    """Stream ``data`` through the model once; per response layer (unit, name, moments), and images.

    Example:
        >>> lm = load_model("zoo:resnet20", weights="random")
        >>> layers, n = response_std(Executor(lm.topology), load_data(limit=64))
        >>> unit, name, moments = layers[0]  # "layer1.0", "layer1.0.bn1", moments.std()
    """
    topology = executor.topology
    owners = [(STEM, name) for name, _ in topology.stem_responses]
    owners += [(unit.name, name) for unit in topology.units for name, _ in unit.responses]
    if not owners:
        raise ProbeError(f"{executor.topology.family} exposes no response layers; response-std needs them")
    last = {name for unit in topology.units if unit.responses_channels_last for name, _ in unit.responses}
    moments: dict[str, Moments] = {}
    alone = distributed.world() == 1
    n = 0
    # Under torchrun each rank reduces its own batches; the per-batch moments are merged in
    # batch order on every rank, the same merges as one process makes, so the floats agree.
    local: list[tuple[int, tuple[int, dict[str, tuple[int, Tensor, Tensor]]]]] = []
    for index, (x, _) in distributed.my_batches(data, batch_size, preprocessing=preprocessing, device=executor.device):
        found: dict[str, tuple[int, Tensor, Tensor]] = {}

        def sink(name: str, output: Tensor, found: dict[str, tuple[int, Tensor, Tensor]] = found) -> None:
            if name in last:
                output = output.movedim(-1, 1)
            if name in moments:
                moments[name].check(output)
            found[name] = batch_moments(output)

        executor.capture(x, sink)
        if alone:
            n += int(x.shape[0])
            merge(moments, found, executor.device)
        else:
            local.append((index, (int(x.shape[0]), {k: (c, m.cpu(), v.cpu()) for k, (c, m, v) in found.items()})))
        if progress is not None:
            progress(int(x.shape[0]) * distributed.world())
    if not alone:
        for images, found in distributed.gather_ordered(local):
            n += images
            merge(moments, found, executor.device)
    return [(unit, name, moments[name]) for unit, name in owners], n


def merge(moments: dict[str, Moments], found: dict[str, tuple[int, Tensor, Tensor]], device: torch.device) -> None:
    """Fold one batch's per-layer (count, mean, M2) into the running moments."""
    # Outside the executor's inference mode: running totals must stay ordinary tensors.
    for name, (count, mean, m2) in found.items():
        if name not in moments:
            moments[name] = Moments(mean.numel(), device)
        moments[name].merge(count, mean, m2)


def measure(
    loaded: LoadedModel,
    executor: Executor,
    data: DataSource,
    *,
    batch_size: int = 256,
    progress: Advance | None = None,
) -> ModelStd:
    """The response stds of one loaded model as a tensor-free :class:`ModelStd`."""
    layers, _ = response_std(
        executor, data, batch_size=batch_size, preprocessing=loaded.preprocessing, progress=progress
    )
    return ModelStd(
        spec=str(loaded.spec),
        family=loaded.topology.family,
        depth=_depth(loaded),
        residual=any(u.shortcut_kind != "none" for u in loaded.topology.units),
        checkpoint=loaded.checkpoint,
        layers=tuple(LayerStd(u, name, m.std(), tuple(m.channel_std())) for u, name, m in layers),
        accuracy=_recorded_accuracy(loaded),
        tensor=response_tensor(loaded.topology),
    )


def response_tensor(topology: Topology) -> str:
    """Which tensor the units' responses are: a norm layer's output, a conv's own output, or a mix."""
    kinds = {
        "conv" if isinstance(m, nn.Conv2d) else "norm" if isinstance(m, NORMS) else "mixed"
        for unit in topology.units
        for _, m in unit.responses
    }
    return kinds.pop() if len(kinds) == 1 else "mixed"


def _recorded_accuracy(loaded: LoadedModel) -> float | None:
    """The test accuracy our own checkpoints carry (``train`` writes it), else None."""
    value = loaded.metadata.get("accuracy") if loaded.metadata.get("checkpoint_format") == "resnet-probe" else None
    return float(value) if isinstance(value, (int, float)) else None


def _depth(loaded: LoadedModel) -> int | None:
    depth = getattr(loaded.model, "depth", None)
    return int(depth) if isinstance(depth, int) else None


class ResponseStdAnalysis(Analysis):
    """He et al. Fig. 7: std of every 3x3 conv's response, the main model and every compared one."""

    name = "response-std"
    description = "std of each 3x3 conv's response after BN (He et al. 2015 Fig. 7), several models"
    result_type = ResponseStdResult
    batch_probe = True
    needs_layer_outputs = True

    def run(self, ctx: RunContext, **options: Any) -> ResponseStdResult:
        """Measure ``ctx.loaded`` and every ``ctx.compare`` model on the same data."""
        if options:
            raise TypeError(f"unexpected options: {', '.join(sorted(options))}")
        data = ctx.require_data(self.name)
        models: list[ModelStd] = []
        for loaded, executor in _all(ctx):
            with ctx.progress(f"response std {loaded.spec}", len(data)) as advance:
                models.append(measure(loaded, executor, data, batch_size=ctx.batch_size, progress=advance))
        return ResponseStdResult(models=tuple(models), n_images=len(data))


def _all(ctx: RunContext) -> Iterable[tuple[LoadedModel, Executor]]:
    yield ctx.loaded, ctx.executor
    yield from ctx.compare
