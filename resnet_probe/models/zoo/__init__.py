"""The built-in model zoo; importing it registers every model (torch is imported only to build one)."""

from __future__ import annotations

from resnet_probe.models.zoo import catalog  # noqa: F401  (registers the built-in models)
