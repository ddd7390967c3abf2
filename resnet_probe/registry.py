"""Model registry: builders registered by decorator, looked up by name, listed by fnmatch."""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass
from typing import Callable, TypeVar

from torch import nn

from .errors import UnknownModelError


@dataclass(frozen=True)
class ModelEntry:
    """A registered zoo model: how to build it and what it is."""

    name: str
    family: str
    builder: Callable[..., nn.Module]
    description: str
    default_dataset: str = "cifar10"


_REGISTRY: dict[str, ModelEntry] = {}
B = TypeVar("B", bound=Callable[..., nn.Module])


def register_model(
    family: str, description: str = "", default_dataset: str = "cifar10", name: str | None = None
) -> Callable[[B], B]:
    """Register a builder ``fn(num_classes=10) -> nn.Module`` under its function name."""

    def decorator(fn: B) -> B:
        key = name or fn.__name__
        if key in _REGISTRY:
            raise ValueError(f"model {key!r} is already registered")
        doc = description or ((fn.__doc__ or "").strip().splitlines() or [""])[0]
        _REGISTRY[key] = ModelEntry(key, family, fn, doc, default_dataset)
        return fn

    return decorator


def list_models(pattern: str = "*") -> list[str]:
    """Names of registered zoo models matching a shell-style pattern, sorted naturally."""
    _ensure_loaded()
    names = [n for n in _REGISTRY if fnmatch.fnmatchcase(n, pattern)]
    return sorted(names, key=_natural_key)


def get_entry(name: str) -> ModelEntry:
    """The registry entry of a zoo model; an unknown name lists the valid ones."""
    _ensure_loaded()
    try:
        return _REGISTRY[name]
    except KeyError:
        valid = ", ".join(list_models())
        raise UnknownModelError(
            f"unknown zoo model {name!r}; valid: {valid} (see `resnet-probe models`)"
        ) from None


def _natural_key(name: str) -> tuple[object, ...]:
    import re

    return tuple(int(t) if t.isdigit() else t for t in re.split(r"(\d+)", name))


def _ensure_loaded() -> None:
    from . import zoo  # noqa: F401  (registers the built-in models)
