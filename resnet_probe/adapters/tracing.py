"""Trace a model with torch.fx the way discovery needs it, and say in one line why not when it fails.

The tracer takes timm's and torchvision's own fx helpers where they are imported: the
functions timm registers as not traceable (``timm.layers.get_notrace_functions``) and
torchvision's ``torchvision.ops`` namespace are wrapped as single calls, and the generic layers
of ``timm.layers`` and ``torchvision.ops`` that they list as leaves are kept as single calls.
timm's model-specific leaves (``NormFreeBlock``, ``MobileVitBlock``, ...) are not: several of
them hold the very residual additions discovery looks for, so they are traced through, and
only a module whose own forward cannot be traced becomes a single call (an *opaque* module,
named in the topology's notes). This module never imports timm or torchvision itself.
"""

from __future__ import annotations

import inspect
import math
import sys
from dataclasses import dataclass
from typing import Any, Callable

from torch import fx, nn

from resnet_probe.errors import AdapterError, first_line

# Leaf lists of these packages are generic layers (convs with same-padding, norm + act, pools):
# no residual addition lies inside one of them.
_LEAF_PACKAGES: tuple[str, ...] = ("timm.layers.", "torchvision.ops.")


@dataclass(frozen=True)
class Traced:
    """A traced model and the modules that had to stay single calls, as ``(path, type, reason)``."""

    graph_module: fx.GraphModule
    opaque: tuple[tuple[str, str, str], ...]


def refuse(model: nn.Module, reason: str) -> AdapterError:
    """The one-line error for a model that discovery cannot read."""
    reason = " ".join(reason.split())
    return AdapterError(
        f"could not find residual units in {type(model).__name__} by tracing: {reason}; "
        "write an adapter (see resnet_probe/adapters/)"
    )


def trace(model: nn.Module) -> Traced:
    """``model`` traced in eval mode, optional forward arguments fixed to their defaults.

    Example:
        >>> traced = trace(timm.create_model("regnety_002"))
        >>> traced.opaque
        ()
    """
    concrete = _concrete_args(model)
    tracer = _Tracer(_leaf_types(), _autowrap_modules(), _autowrap_functions())
    flags = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        graph = tracer.trace(model, concrete_args=concrete or None)
    except Exception as exc:  # fx raises anything from TraceError to the model's own errors
        stopped = f"; inside it, {_describe(tracer.opaque)} could not be traced either" if tracer.opaque else ""
        raise refuse(
            model, f"torch.fx cannot trace {type(model).__name__}.forward itself ({first_line(exc)}){stopped}"
        ) from None
    finally:
        for m, flag in flags:
            m.training = flag
    gm = fx.GraphModule(tracer.root, graph, class_name=f"{type(model).__name__}Traced")
    return Traced(gm, tuple(tracer.opaque))


def _describe(opaque: list[tuple[str, str, str]]) -> str:
    path, kind, reason = opaque[0]
    more = f" (and {len(opaque) - 1} more)" if len(opaque) > 1 else ""
    return f"{path} ({kind}: {reason}){more}"


def _concrete_args(model: nn.Module) -> dict[str, Any]:
    """Every forward argument after the first, fixed to its default."""
    try:
        params = list(inspect.signature(model.forward).parameters.values())
    except (TypeError, ValueError):
        return {}
    concrete: dict[str, Any] = {}
    for p in params[1:]:
        if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            continue
        if p.default is p.empty:
            raise refuse(model, f"forward takes more than one input ({p.name!r} has no default)")
        concrete[p.name] = p.default
    return concrete


def _leaf_types() -> tuple[type, ...]:
    types: list[type] = []
    timm_layers = sys.modules.get("timm.layers")
    if timm_layers is not None and hasattr(timm_layers, "get_notrace_modules"):
        types += timm_layers.get_notrace_modules()
    if "torchvision.ops" in sys.modules:
        from torchvision.models.feature_extraction import _get_leaf_modules_for_ops

        types += _get_leaf_modules_for_ops()
    return tuple(t for t in types if isinstance(t, type) and t.__module__.startswith(_LEAF_PACKAGES))


def _autowrap_modules() -> tuple[Any, ...]:
    ops = sys.modules.get("torchvision.ops")
    return (math,) if ops is None else (math, ops)


def _autowrap_functions() -> tuple[Callable[..., Any], ...]:
    timm_layers = sys.modules.get("timm.layers")
    if timm_layers is None or not hasattr(timm_layers, "get_notrace_functions"):
        return ()
    # fx wraps a function through the globals of the module that defines it: names only, no lambdas.
    return tuple(f for f in timm_layers.get_notrace_functions() if callable(f) and hasattr(f, "__globals__"))


class _Tracer(fx.Tracer):
    """Library leaves as single calls; a submodule whose forward fails to trace becomes one too."""

    def __init__(
        self,
        leaf_types: tuple[type, ...],
        autowrap_modules: tuple[Any, ...],
        autowrap_functions: tuple[Callable[..., Any], ...],
    ) -> None:
        super().__init__(autowrap_modules=autowrap_modules, autowrap_functions=autowrap_functions)
        self.leaf_types = leaf_types
        self.opaque: list[tuple[str, str, str]] = []
        self._opaque_paths: set[str] = set()

    def is_leaf_module(self, m: nn.Module, module_qualified_name: str) -> bool:
        return (
            module_qualified_name in self._opaque_paths
            or isinstance(m, self.leaf_types)
            or super().is_leaf_module(m, module_qualified_name)
        )

    def call_module(
        self, m: nn.Module, forward: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Any:
        depth = len(self.module_stack)
        try:
            return super().call_module(m, forward, args, kwargs)
        except Exception as exc:  # the module's own code failed on proxies: call it whole instead
            path = self.path_of_module(m)
            if path in self._opaque_paths:
                raise
            while len(self.module_stack) > depth:
                self.module_stack.popitem(last=True)
            # Nodes the failed attempt left behind feed nothing; discovery drops dead code.
            self._opaque_paths.add(path)
            self.opaque.append((path, type(m).__name__, first_line(exc, 100)))
            return super().call_module(m, forward, args, kwargs)
