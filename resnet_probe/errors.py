"""User-facing errors: every ProbeError becomes one red line and exit code 2 in the CLI."""

from __future__ import annotations


def first_line(exc: BaseException, limit: int = 160) -> str:
    """``Type: first line of the message``, shortened."""
    text = str(exc).strip().splitlines()
    first = " ".join(text[0].split()) if text else ""
    first = first if len(first) <= limit else first[: limit - 3] + "..."
    return f"{type(exc).__name__}: {first}" if first else type(exc).__name__


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
