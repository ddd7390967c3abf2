"""The resumable state of a training run: one safetensors file, written atomically per epoch.

Tensors (weights, buffers, momentum buffers, RNG states) are safetensors entries; everything
else (epoch, iteration, history, recipe, optimizer hyper-parameters, grad-scaler scalars) is
JSON in the header. Nothing is pickled, so reading it back runs no code.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from resnet_probe.errors import CheckpointError
from resnet_probe.files import atomic_target

STATE_FORMAT = 1
STATE_KEY = "resnet_probe_resume"
SUFFIX = ".resume.safetensors"


def resume_path(checkpoint: Path) -> Path:
    """Where the run that writes ``checkpoint`` keeps its resume state (``NAME.resume.safetensors``)."""
    checkpoint = Path(checkpoint)
    stem = checkpoint.name.removesuffix(".safetensors") if checkpoint.suffix == ".safetensors" else checkpoint.name
    return checkpoint.with_name(stem + SUFFIX)


@dataclass(frozen=True, eq=False)
class RunState:
    """What a resumed run restores: tensors and the JSON-able rest."""

    model: dict[str, Tensor]
    optimizer: dict[str, Any]
    rng: dict[str, Tensor]
    meta: dict[str, Any]


def save_state(
    path: Path,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    meta: dict[str, Any],
) -> None:
    """Write model, optimizer, RNG states and ``meta`` to ``path`` via a temporary file and a rename."""
    from safetensors.torch import save_file

    tensors: dict[str, Tensor] = {f"model/{k}": v for k, v in model.state_dict().items()}
    opt = optimizer.state_dict()
    scalars: dict[str, dict[str, Any]] = {}
    for index, slots in opt["state"].items():
        for name, value in slots.items():
            if isinstance(value, Tensor):
                tensors[f"optim/{index}/{name}"] = value
            else:
                scalars.setdefault(str(index), {})[name] = value
    tensors["rng/cpu"] = torch.get_rng_state()
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        for d, s in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"rng/cuda/{d}"] = s
    header = {
        **meta,
        "format": STATE_FORMAT,
        "param_groups": opt["param_groups"],
        "optim_scalars": scalars,
    }
    # safetensors refuses shared storage and non-contiguous tensors: clone everything to CPU.
    tensors = {k: v.detach().to("cpu").contiguous().clone() for k, v in tensors.items()}
    path = Path(path)
    with atomic_target(path) as tmp:
        save_file(tensors, str(tmp), metadata={STATE_KEY: json.dumps(header)})


def load_state(path: Path) -> RunState:
    """Read a resume state back; an unreadable or foreign file is a one-line CheckpointError."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt", device="cpu") as fh:
            header = fh.metadata() or {}
            tensors = {k: fh.get_tensor(k) for k in fh.keys()}
        meta = json.loads(header[STATE_KEY])
    except (KeyError, ValueError) as exc:
        raise CheckpointError(f"{path} is not a resnet-probe resume state ({exc})") from None
    except Exception as exc:  # safetensors' own error types
        raise CheckpointError(f"cannot read resume state {path}: {' '.join(str(exc).split())}") from None
    if meta.get("format") != STATE_FORMAT:
        raise CheckpointError(f"resume state {path} has format {meta.get('format')!r}; expected {STATE_FORMAT}")
    model = {k.removeprefix("model/"): v for k, v in tensors.items() if k.startswith("model/")}
    state: dict[int, dict[str, Any]] = {}
    for key, value in tensors.items():
        if key.startswith("optim/"):
            _, index, name = key.split("/", 2)
            state.setdefault(int(index), {})[name] = value
    for index, slots in meta.pop("optim_scalars", {}).items():
        state.setdefault(int(index), {}).update(slots)
    optimizer = {"state": state, "param_groups": meta.pop("param_groups")}
    rng = {k.removeprefix("rng/"): v for k, v in tensors.items() if k.startswith("rng/")}
    return RunState(model, optimizer, rng, meta)


def restore_rng(rng: dict[str, Tensor]) -> None:
    """Put the saved CPU (and, where present, CUDA) generator states back."""
    if "cpu" in rng:
        torch.set_rng_state(rng["cpu"])
    cuda = [rng[k] for k in sorted((k for k in rng if k.startswith("cuda/")), key=lambda k: int(k[5:]))]
    if cuda and torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(cuda)
