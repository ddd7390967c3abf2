"""A model the user already holds: their own ``nn.Module`` (any class), taken as it is.

The topology comes from the class adapters, else from graph discovery
(:func:`resnet_probe.adapters.build_topology`). The module is never changed: it is not put
in eval mode, moved or copied here (the executor switches modes inside a context manager
and restores every module's own flag), and no hook is left on it.
"""

from __future__ import annotations

from typing import Any, Sequence

import torch
from torch import nn

from resnet_probe.adapters import build_topology
from resnet_probe.errors import ModelError, first_line
from resnet_probe.models.loaded import LoadedModel
from resnet_probe.models.spec import ModelSpec
from resnet_probe.structure import Topology

#: the spec source of a module passed in from Python
SOURCE = "module"


def module_spec(module: nn.Module, name: str | None = None) -> ModelSpec:
    """``module:ClassName`` (or ``module:NAME``): how results.json names a module passed in."""
    return ModelSpec(SOURCE, name or type(module).__name__)


def from_module(
    module: nn.Module,
    *,
    units: Sequence[str] | None = None,
    name: str | None = None,
    spec: ModelSpec | None = None,
    metadata: dict[str, Any] | None = None,
) -> LoadedModel:
    """Wrap ``module`` for analysis; ``units`` (module names, in order) overrides discovery.

    Example:
        >>> lm = from_module(torchvision.models.resnet18())
        >>> lm.topology.n_units
        8
    """
    if not isinstance(module, nn.Module):
        raise ModelError(f"expected a torch.nn.Module, got {type(module).__name__}")
    topology = build_topology(module) if units is None else topology_from_units(module, units)
    return LoadedModel(
        model=module,
        spec=spec or module_spec(module, name),
        topology=topology,
        num_classes=0,  # known after the first forward: check_output reads it from the logits
        preprocessing=None,
        metadata={"weights": "as given", **(metadata or {})},
    )


def topology_from_units(module: nn.Module, units: Sequence[str]) -> Topology:
    """The topology with exactly the units ``units`` names (see :mod:`resnet_probe.adapters.named`)."""
    from resnet_probe.adapters.named import build_named

    return build_named(module, list(units))


def check_output(loaded: LoadedModel, x: torch.Tensor) -> int:
    """Run the unchanged topology on a small batch; the number of classes its logits have.

    A forward that raises, or logits that are not (batch, classes), is a :class:`ModelError`
    naming the model, before any analysis starts.
    """
    from resnet_probe.executor import Executor, Plan

    executor = Executor(loaded.topology, x.device)
    try:
        logits = executor.forward(x, Plan())
    except Exception as exc:  # the user's forward may raise anything
        raise ModelError(
            f"{loaded.spec}: the forward pass fails on a batch of shape {tuple(x.shape)} "
            f"({first_line(exc)})"
        ) from None
    language = isinstance(logits, torch.Tensor) and logits.dim() == 3 and x.dim() == 2 and not x.is_floating_point()
    if not isinstance(logits, torch.Tensor) or (logits.dim() != 2 and not language) or logits.shape[0] != x.shape[0]:
        shape = tuple(logits.shape) if isinstance(logits, torch.Tensor) else type(logits).__name__
        raise ModelError(
            f"{loaded.spec}: the forward pass returns {shape} for a batch of {x.shape[0]}; expected logits "
            f"(batch, classes), or (batch, seq, vocab) for token ids"
        )
    return int(logits.shape[-1])
