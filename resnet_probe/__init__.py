"""resnet-probe: open up trained residual networks and measure how they really work.

``import resnet_probe as rp`` is the Python face (:mod:`resnet_probe.api`): ``rp.load_model``,
``rp.load_data``, one function per analysis and ``rp.run`` for plugins. The names load on first
use, so that importing the package (and its CLI) does not import torch.
"""

from __future__ import annotations

from importlib import import_module
from importlib import metadata as _metadata
from typing import Any

try:
    __version__ = _metadata.version("resnet-probe")
except _metadata.PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0"

_API = ("load_model", "load_data", "run", "evaluate", "lesion", "reorder", "paths", "gradients", "response_std")
__all__ = ["__version__", *_API]


def __getattr__(name: str) -> Any:
    if name in _API:
        return getattr(import_module("resnet_probe.api"), name)
    raise AttributeError(f"module 'resnet_probe' has no attribute {name!r}")
