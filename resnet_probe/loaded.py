"""What a loaded model carries: the network, its spec, its topology and its preprocessing."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from torch import nn

from .spec import ModelSpec
from .topology import Topology, count_params

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class Preprocessing:
    """How images become model input: scale to [0, 1], resize, normalise per channel."""

    mean: tuple[float, ...]
    std: tuple[float, ...]
    input_size: int | None = None  # square side; None keeps the data's own size
    source: str = "dataset"  # "checkpoint", "dataset", "timm", "torchvision"

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly form."""
        return {
            "mean": list(self.mean),
            "std": list(self.std),
            "input_size": self.input_size,
            "source": self.source,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Preprocessing:
        """Inverse of :meth:`to_dict`."""
        return cls(tuple(d["mean"]), tuple(d["std"]), d.get("input_size"), d.get("source", "dataset"))


@dataclass(frozen=True, eq=False)
class LoadedModel:
    """A model ready for analysis. ``preprocessing`` is None when only the data set knows it."""

    model: nn.Module
    spec: ModelSpec
    topology: Topology
    num_classes: int
    preprocessing: Preprocessing | None = None
    checkpoint: str | None = None
    checkpoint_sha256: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def params(self) -> int:
        """Number of parameters."""
        return count_params(self.model)

    def describe(self) -> dict[str, Any]:
        """The ``model`` block of results.json."""
        return {
            "spec": str(self.spec),
            "family": self.topology.family,
            "units": self.topology.n_units,
            "params": self.params,
            "checkpoint": self.checkpoint,
            "checkpoint_sha256": self.checkpoint_sha256,
        }
