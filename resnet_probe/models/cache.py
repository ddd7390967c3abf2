"""Where resnet-probe keeps downloaded weights and the checkpoints that ``train`` writes."""

from __future__ import annotations

from pathlib import Path

from resnet_probe.files import home
from resnet_probe.models.spec import ModelSpec, parse

__all__ = ["home", "trained_checkpoint_path", "find_trained"]


def trained_checkpoint_path(spec: ModelSpec | str, dataset: str) -> Path:
    """Where ``train`` saves ``spec`` on ``dataset``: ``home()/checkpoints/{dataset}/{name}.safetensors``."""
    spec = parse(spec) if isinstance(spec, str) else spec
    # tv:resnet50 and timm:resnet50 must not share a file; zoo names stay bare.
    name = spec.name if spec.source == "zoo" else f"{spec.source}-{spec.full_name}"
    return home() / "checkpoints" / dataset / f"{name}.safetensors"


def find_trained(spec: ModelSpec | str, dataset: str) -> Path | None:
    """The cached trained checkpoint of ``spec`` on ``dataset``, or None."""
    path = trained_checkpoint_path(spec, dataset)
    return path if path.is_file() else None
