"""Reading and writing checkpoints: our safetensors format, plain state dicts, akamaster's files.

Every torch file is read with ``weights_only=True`` and every state dict is loaded strictly:
``strict=False`` with an unstripped ``module.`` prefix silently gives a 10 %-accuracy model.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import pickle
import re
import struct
import warnings
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import torch
from torch import Tensor, nn

from resnet_probe.data.preprocessing import IMAGENET_MEAN, IMAGENET_STD, Preprocessing
from resnet_probe.errors import CheckpointError
from resnet_probe.files import atomic_target
from resnet_probe.models.spec import ModelSpec

FORMAT_VERSION = 1
METADATA_KEY = "resnet_probe"
# Keys under which training scripts commonly wrap the state dict.
WRAPPER_KEYS: tuple[str, ...] = ("state_dict", "model", "model_state_dict")
_SHOW = 3  # keys named per category in a mismatch message


@dataclass(frozen=True, eq=False)
class CheckpointData:
    """A checkpoint's tensors, its metadata, its preprocessing (if it knows it) and its hash."""

    state_dict: dict[str, Tensor]
    metadata: dict[str, Any]
    preprocessing: Preprocessing | None
    sha256: str
    format: str = field(default="state_dict")  # "resnet-probe", "safetensors", "state_dict", "akamaster"


def file_sha256(path: str | Path, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def save_checkpoint(
    path: str | Path,
    model: nn.Module,
    spec: ModelSpec | str,
    *,
    dataset: str,
    num_classes: int,
    preprocessing: Preprocessing | None,
    accuracy: float | None = None,
    train_args: Mapping[str, Any] | None = None,
    history: list[dict[str, Any]] | None = None,
    extra: Mapping[str, Any] | None = None,
) -> Path:
    """Write ``model``'s state dict and its metadata as one safetensors file, atomically."""
    from safetensors.torch import save_file

    path = Path(path)
    meta: dict[str, Any] = {
        "format": FORMAT_VERSION,
        "spec": str(spec),
        "dataset": dataset,
        "num_classes": int(num_classes),
        "preprocessing": preprocessing.to_dict() if preprocessing is not None else None,
        "accuracy": accuracy,
        "train_args": dict(train_args) if train_args is not None else None,
        "history": list(history) if history is not None else [],
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "torch": torch.__version__,
    }
    if extra:
        clash = sorted(set(extra) & set(meta))
        if clash:
            raise ValueError(f"extra metadata may not redefine {', '.join(clash)}")
        meta.update(extra)
    # safetensors refuses tensors that share storage; clones make every entry independent.
    tensors = {k: v.detach().to("cpu").contiguous().clone() for k, v in model.state_dict().items()}
    header = {METADATA_KEY: json.dumps(meta, default=str)}
    with atomic_target(path) as tmp:
        save_file(tensors, str(tmp), metadata=header)
    return path


def read_checkpoint(path: str | Path) -> CheckpointData:
    """Read any supported checkpoint file; every failure is a one-line :class:`CheckpointError`."""
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"checkpoint {path} does not exist")
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} is not a file")
    try:
        sha = file_sha256(path)
    except OSError as exc:
        raise CheckpointError(f"cannot read checkpoint {path}: {exc.strerror or exc}") from None
    if _looks_like_safetensors(path):
        return _read_safetensors(path, sha)
    return _read_torch(path, sha)


def apply_state_dict(model: nn.Module, state_dict: Mapping[str, Tensor], where: str) -> None:
    """Load strictly; a mismatch raises one line opening with ``where``.

    ``where`` names the checkpoint and the model, e.g. ``checkpoint x.th does not fit zoo:resnet56``.
    """
    own = model.state_dict()
    sd = dict(state_dict)
    # BatchNorm fills a missing step counter itself for old checkpoints (akamaster's have none);
    # doing it here keeps that independent of the state dict's _metadata versions.
    for key, value in own.items():
        if key.endswith(".num_batches_tracked") and key not in sd:
            sd[key] = torch.zeros_like(value)
    missing = [k for k in own if k not in sd]
    unexpected = [k for k in sd if k not in own]
    shapes = [
        f"{k} (checkpoint {tuple(sd[k].shape)}, model {tuple(own[k].shape)})"
        for k in own
        if k in sd and isinstance(sd[k], Tensor) and sd[k].shape != own[k].shape
    ]
    parts = [
        f"{label} {_first(keys)}"
        for label, keys in (("missing", missing), ("unexpected", unexpected), ("shape mismatch", shapes))
        if keys
    ]
    if parts:
        raise CheckpointError(f"{where}: " + "; ".join(parts))
    try:
        model.load_state_dict(sd, strict=True)
    except RuntimeError as exc:
        raise CheckpointError(f"{where}: {_one_line(exc)}") from None


def check_weights(model: nn.Module, state_dict: Mapping[str, Tensor], name: str) -> None:
    """Refuse weights that load but mean nothing: an integer dtype where the model has floats, NaN or Inf.

    ``load_state_dict`` would cast int64 weights to float silently, and NaN weights evaluate to
    chance accuracy with a NaN loss; both are refused, naming the first tensors.
    """
    own = model.state_dict()
    common = [k for k in own if k in state_dict and isinstance(state_dict[k], Tensor)]
    integer = [
        f"{k} ({state_dict[k].dtype})"
        for k in common
        if own[k].is_floating_point() and not state_dict[k].is_floating_point()
    ]
    if integer:
        raise CheckpointError(
            f"{name} holds non-floating weights: {_first(integer)}; expected float tensors (float32, float16, ...)"
        )
    bad = [k for k in common if state_dict[k].is_floating_point() and not bool(torch.isfinite(state_dict[k]).all())]
    if bad:
        raise CheckpointError(f"{name} holds NaN or Inf in {_first(bad)}; expected finite weights")


def tensors_sha256(state_dict: Mapping[str, Tensor]) -> str:
    """Hex sha256 of the weights themselves (names, dtypes, shapes, bytes), whatever file they came in.

    The same weights saved as akamaster's .th, a plain state dict or safetensors give one digest;
    BatchNorm's step counters are left out (akamaster's files have none, a re-saved model has zeros).
    """
    digest = hashlib.sha256()
    for key in sorted(state_dict):
        if key.endswith(".num_batches_tracked"):
            continue
        t = state_dict[key].detach().to("cpu").contiguous()
        digest.update(f"{key}|{t.dtype}|{tuple(t.shape)}|".encode())
        digest.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def _first(keys: list[str]) -> str:
    shown = ", ".join(keys[:_SHOW])
    return shown + (f", ... (+{len(keys) - _SHOW} more)" if len(keys) > _SHOW else "")


def _one_line(exc: BaseException, limit: int = 300) -> str:
    text = " ".join(str(exc).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _looks_like_safetensors(path: Path) -> bool:
    # safetensors: 8-byte little-endian header length, then a JSON object.
    if path.suffix == ".safetensors":
        return True
    with open(path, "rb") as fh:
        head = fh.read(9)
    if len(head) < 9 or head[8:9] != b"{":
        return False
    (n,) = struct.unpack("<Q", head[:8])
    return 0 < n <= path.stat().st_size - 8


def _read_safetensors(path: Path, sha: str) -> CheckpointData:
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt", device="cpu") as fh:
            header = fh.metadata() or {}
            tensors = {k: fh.get_tensor(k) for k in fh.keys()}
    except Exception as exc:  # safetensors raises its own SafetensorError and OSError subclasses
        raise CheckpointError(f"cannot read safetensors checkpoint {path}: {_one_line(exc)}") from None
    if METADATA_KEY not in header:
        return CheckpointData(tensors, {}, None, sha, "safetensors")
    try:
        meta = json.loads(header[METADATA_KEY])
        if not isinstance(meta, dict):
            raise ValueError("not a JSON object")
        prep = Preprocessing.from_dict(meta["preprocessing"]) if meta.get("preprocessing") else None
    except (ValueError, KeyError, TypeError) as exc:
        raise CheckpointError(f"checkpoint {path} has malformed resnet_probe metadata: {exc}") from None
    if meta.get("format") != FORMAT_VERSION:
        raise CheckpointError(
            f"checkpoint {path} has resnet_probe format {meta.get('format')!r}; "
            f"this version reads format {FORMAT_VERSION}"
        )
    return CheckpointData(tensors, meta, prep, sha, "resnet-probe")


def _read_torch(path: Path, sha: str) -> CheckpointData:
    try:
        with warnings.catch_warnings():
            # Hostile or foreign pickles trigger a protocol warning right before the refusal.
            warnings.filterwarnings("ignore", message="Detected pickle protocol")
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        if "weights only load failed" in str(exc).lower():
            raise CheckpointError(f"refused to load {path}: {_refusal(str(exc))} (weights_only=True)") from None
        raise CheckpointError(f"{path} is not a checkpoint ({_why(exc)})") from None
    except (EOFError, zipfile.BadZipFile) as exc:
        raise CheckpointError(f"checkpoint {path} is truncated or corrupt ({_why(exc)})") from None
    except Exception as exc:  # the weights-only unpickler meets malformed bytes with any error type
        raise CheckpointError(
            f"cannot read checkpoint {path}: truncated, corrupt or not a checkpoint ({_why(exc)})"
        ) from None
    return _unwrap(obj, path, sha)


def _refusal(message: str) -> str:
    """Why the weights-only unpickler refused a file, in a few words."""
    found = re.search(r"GLOBAL ([\w.]+)", message)
    if found:
        return f"it would import {found.group(1)}, i.e. run code, not only read tensors"
    found = re.search(r"Unsupported operand (\d+)", message)
    if found:
        return f"not a checkpoint of plain tensors (pickle opcode {found.group(1)} is not allowed)"
    return "it contains code/objects, not only tensors"


def _why(exc: BaseException) -> str:
    text = _one_line(exc, 160)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _unwrap(obj: object, path: Path, sha: str) -> CheckpointData:
    if not isinstance(obj, dict) or not obj:
        raise CheckpointError(f"{path} is not a checkpoint: expected a state dict, got {type(obj).__name__}")
    if _is_state_dict(obj):
        return CheckpointData(_strip_module(obj), {}, None, sha, "state_dict")
    key = next((k for k in WRAPPER_KEYS if k in obj and _is_state_dict(obj[k])), None)
    if key is None:
        raise CheckpointError(
            f"{path} is not a checkpoint: a dict without tensors under any of {', '.join(WRAPPER_KEYS)}"
        )
    meta = {k: v for k, v in obj.items() if k != key and isinstance(v, (int, float, str, bool))}
    if "best_prec1" in obj and key == "state_dict":
        # akamaster/pytorch_resnet_cifar10 normalises CIFAR input with ImageNet statistics.
        prep = Preprocessing(IMAGENET_MEAN, IMAGENET_STD, None, "checkpoint")
        return CheckpointData(_strip_module(obj[key]), meta, prep, sha, "akamaster")
    return CheckpointData(_strip_module(obj[key]), meta, None, sha, "state_dict")


def _is_state_dict(obj: object) -> bool:
    return (
        isinstance(obj, dict)
        and bool(obj)
        and all(isinstance(k, str) and isinstance(v, Tensor) for k, v in obj.items())
    )


def _strip_module(sd: dict[str, Tensor]) -> dict[str, Tensor]:
    # Saved from DataParallel / DistributedDataParallel: every key starts with "module.".
    if all(k.startswith("module.") for k in sd):
        return {k[len("module.") :]: v for k, v in sd.items()}
    return dict(sd)
