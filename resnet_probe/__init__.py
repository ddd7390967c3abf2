"""resnet-probe: open up trained residual networks and measure how they really work.

``import resnet_probe as rp`` is the Python face (:mod:`resnet_probe.api`): ``rp.load_model``,
``rp.load_data``, one function per analysis and ``rp.run`` for plugins. The names load on first
use, so that importing the package (and its CLI) does not import torch.
"""

from __future__ import annotations

from importlib import import_module
from importlib import metadata as _metadata
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # what editors and mypy see; at run time the names load on first use
    from resnet_probe.api import (
        Plan,
        evaluate,
        gradients,
        lesion,
        load_data,
        load_model,
        paths,
        prune,
        reorder,
        response_std,
        run,
        run_plans,
        topology,
    )

try:
    __version__ = _metadata.version("resnet-probe")
except _metadata.PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0"

__all__ = [
    "__version__", "load_model", "load_data", "topology", "Plan", "run_plans", "run", "evaluate", "lesion",
    "reorder", "paths", "gradients", "response_std", "prune",
]
_API = tuple(__all__[1:])


def __getattr__(name: str) -> Any:
    if name in _API:
        return getattr(import_module("resnet_probe.api"), name)
    raise AttributeError(f"module 'resnet_probe' has no attribute {name!r}")
