"""Where resnet-probe keeps downloaded weights and the checkpoints that ``train`` writes."""

from __future__ import annotations

import os
from pathlib import Path

from .spec import ModelSpec, parse

ENV_HOME = "RESNET_PROBE_HOME"


def home() -> Path:
    """``$RESNET_PROBE_HOME`` if set, else ``~/.cache/resnet-probe``."""
    env = os.environ.get(ENV_HOME)
    return Path(env).expanduser() if env else Path.home() / ".cache" / "resnet-probe"


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
