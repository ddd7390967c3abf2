"""Tensor-free results with a JSON round trip, and the run record around them.

``results.json`` is ``{"analysis", "model", "data", "seed", "device", "versions",
"wall_time_s", "title", "options", "result"}``; ``result`` is the analysis' own dataclass as a
dict. Files are written to a temporary name and renamed, so nothing is ever written half.
"""

from __future__ import annotations

import dataclasses
import json
import os
import platform
import tempfile
from pathlib import Path
from typing import Any, ClassVar, TypeVar

from .errors import OutputError

R = TypeVar("R", bound="Result")


@dataclasses.dataclass(frozen=True)
class Result:
    """Base of every analysis result: plain data, no tensors."""

    analysis: ClassVar[str] = ""

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly dict (dataclasses, tuples and lists become dicts and lists)."""
        return _plain(dataclasses.asdict(self))

    @classmethod
    def from_dict(cls: type[R], d: dict[str, Any]) -> R:
        """Inverse of :meth:`to_dict` for flat results; nested ones override this."""
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})


def _plain(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {str(k): _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    if isinstance(obj, float) and obj != obj:  # NaN is not JSON
        return None
    return obj


@dataclasses.dataclass(frozen=True)
class RunRecord:
    """Everything results.json holds about one run."""

    analysis: str
    model: dict[str, Any]
    data: dict[str, Any] | None
    seed: int
    device: str
    result: dict[str, Any]
    wall_time_s: float = 0.0
    title: str | None = None
    options: dict[str, Any] = dataclasses.field(default_factory=dict)
    versions: dict[str, str] = dataclasses.field(default_factory=lambda: versions())
    extra: dict[str, Any] = dataclasses.field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """The results.json document."""
        return _plain(dataclasses.asdict(self))

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> RunRecord:
        """Read a results.json document back."""
        names = {f.name for f in dataclasses.fields(cls)}
        missing = {"analysis", "model", "result"} - set(d)
        if missing:
            raise OutputError(f"not a resnet-probe results.json: missing {', '.join(sorted(missing))}")
        return cls(**{k: v for k, v in d.items() if k in names} | {"seed": d.get("seed", 0),
                   "device": d.get("device", "cpu"), "data": d.get("data")})


def versions() -> dict[str, str]:
    """Versions of the pieces that decide the numbers."""
    from importlib import metadata

    out = {"python": platform.python_version()}
    for dist in ("resnet-probe", "torch", "torchvision", "timm", "numpy"):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            continue
    return out


def atomic_write_text(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` via a temporary file in the same folder and a rename."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as exc:
        raise OutputError(f"cannot write to {path.parent}: {exc.strerror or exc}") from None
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; reports are for sharing
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def write_json(path: Path, doc: dict[str, Any]) -> None:
    """Atomically write a JSON document (sorted keys off: the schema order reads better)."""
    atomic_write_text(path, json.dumps(doc, indent=2, allow_nan=False) + "\n")


def read_json(path: Path) -> dict[str, Any]:
    """Read a results.json; a missing or malformed file is a user error."""
    try:
        doc = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise OutputError(f"{path}: no such file") from None
    except (OSError, ValueError) as exc:
        raise OutputError(f"{path}: not a readable JSON file ({exc})") from None
    if not isinstance(doc, dict):
        raise OutputError(f"{path}: not a resnet-probe results.json")
    return doc
