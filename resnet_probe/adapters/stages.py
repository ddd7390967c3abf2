"""Walk the ``layer1..layer4`` stages that torchvision and timm ResNets share."""

from __future__ import annotations

from typing import Callable

from torch import nn

from resnet_probe.errors import AdapterError
from resnet_probe.structure import Unit

UnitBuilder = Callable[[int, str, int, nn.Module], Unit]


def collect_units(model: nn.Module, builders: dict[type, UnitBuilder], adapter: str) -> list[Unit]:
    """One unit per block of ``model.layer1..4``, built by the builder of the block's exact type.

    Exact types, not isinstance: a subclass may merge differently (torchvision's quantizable
    blocks use FloatFunctional) or override forward, which the builders re-trace.
    """
    units: list[Unit] = []
    for stage in (1, 2, 3, 4):
        for i, block in enumerate(getattr(model, f"layer{stage}")):
            name = f"layer{stage}.{i}"
            builder = builders.get(type(block))
            if builder is None:
                known = " and ".join(t.__name__ for t in builders)
                raise AdapterError(
                    f"{name} is a {type(block).__name__}; the {adapter} adapter understands {known} only"
                )
            units.append(builder(len(units), name, stage, block))
    return units
