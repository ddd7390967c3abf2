"""What a loaded model carries: the network, its spec, its topology and its preprocessing."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from torch import nn

from resnet_probe.data.preprocessing import Preprocessing
from resnet_probe.models.spec import ModelSpec
from resnet_probe.structure import Topology, count_params


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
