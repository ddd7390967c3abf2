"""User-facing errors: every ProbeError becomes one red line and exit code 2 in the CLI."""

from __future__ import annotations


class ProbeError(Exception):
    """A mistake in what the user asked for; the message is the whole explanation."""


class UnknownModelError(ProbeError):
    """A model name that no registry or source knows."""


class CheckpointError(ProbeError):
    """A checkpoint that is missing, unreadable, unsafe or does not fit the model."""


class DataError(ProbeError):
    """A data set that is missing, empty or malformed."""


class PlanError(ProbeError):
    """An analysis plan that does not fit the model (unit index out of range, ...)."""


class OfflineError(ProbeError):
    """Something needs the network (weights, data) and the network is not there."""


class DeviceError(ProbeError):
    """A device that is not available."""


class OutputError(ProbeError):
    """An output location that cannot be written or would overwrite a report."""


class AdapterError(ProbeError):
    """A model whose residual structure no adapter understands."""


class ModelError(ProbeError):
    """A model object that cannot be studied: its forward fails or does not return (batch, classes) logits."""


class MetricError(ProbeError):
    """A metric that is unknown, or a metric callable that fails or returns the wrong values."""
