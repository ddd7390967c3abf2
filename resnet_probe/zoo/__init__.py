"""The built-in model zoo; importing it registers every model."""

from __future__ import annotations

from . import cifar  # noqa: F401  (registers the CIFAR models)
