"""Model registry: builders registered by decorator, looked up by name, listed by fnmatch.

Torch-free: an entry carries its unit and parameter counts (tests check them against the
built model), so ``resnet-probe models`` lists the zoo without importing torch. The zoo
registers into this module (``resnet_probe.models.zoo``); this module imports no model.
"""

from __future__ import annotations

import fnmatch
import re
from dataclasses import dataclass
from typing import Any, Callable, TypeVar

from resnet_probe.errors import UnknownModelError


@dataclass(frozen=True)
class ModelEntry:
    """A registered zoo model: how to build it and what it is."""

    name: str
    family: str
    builder: Callable[..., Any]
    description: str
    units: int
    params: int  # with the default 10 classes
    default_dataset: str = "cifar10"


_REGISTRY: dict[str, ModelEntry] = {}
B = TypeVar("B", bound=Callable[..., Any])


def register_model(
    family: str,
    *,
    units: int,
    params: int,
    description: str = "",
    default_dataset: str = "cifar10",
    name: str | None = None,
) -> Callable[[B], B]:
    """Register a builder ``fn(num_classes=10) -> nn.Module`` under its function name (or ``name``)."""

    def decorator(fn: B) -> B:
        key = name or fn.__name__
        if key in _REGISTRY:
            raise ValueError(f"model {key!r} is already registered")
        doc = description or ((fn.__doc__ or "").strip().splitlines() or [""])[0]
        _REGISTRY[key] = ModelEntry(key, family, fn, doc, units, params, default_dataset)
        return fn

    return decorator


def list_models(pattern: str = "*") -> list[str]:
    """Names of registered zoo models matching a shell-style pattern, sorted naturally."""
    names = [n for n in _REGISTRY if fnmatch.fnmatchcase(n, pattern)]
    return sorted(names, key=natural_key)


def get_entry(name: str) -> ModelEntry:
    """The registry entry of a zoo model; an unknown name lists the valid ones."""
    try:
        return _REGISTRY[name]
    except KeyError:
        valid = ", ".join(list_models())
        raise UnknownModelError(f"unknown zoo model {name!r}; valid: {valid} (see `resnet-probe models`)") from None


def natural_key(name: str) -> tuple[Any, ...]:
    """Sort key that orders ``resnet20`` before ``resnet110``."""
    return tuple(int(t) if t.isdigit() else t for t in re.split(r"(\d+)", name))
