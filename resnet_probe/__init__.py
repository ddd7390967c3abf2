"""resnet-probe: open up trained residual networks and measure how they really work."""

from importlib import metadata as _metadata

try:
    __version__ = _metadata.version("resnet-probe")
except _metadata.PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0"

__all__ = ["__version__"]
