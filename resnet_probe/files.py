"""Files the tool writes and where it keeps them: atomic writes, JSON documents, the home folder."""

from __future__ import annotations

import contextlib
import json
import math
import os
import tempfile
from pathlib import Path
from typing import Any, Iterator

from resnet_probe.errors import OutputError

ENV_HOME = "RESNET_PROBE_HOME"


def home() -> Path:
    """``$RESNET_PROBE_HOME`` if set, else ``~/.cache/resnet-probe``: weights, checkpoints, data."""
    env = os.environ.get(ENV_HOME)
    return Path(env).expanduser() if env else Path.home() / ".cache" / "resnet-probe"


@contextlib.contextmanager
def atomic_target(path: Path) -> Iterator[Path]:
    """A temporary path beside ``path``, renamed onto it when the block succeeds, removed if not.

    Readers never see a half-written file, whatever writes it (text, safetensors, matplotlib).
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as exc:
        raise OutputError(f"cannot write to {path.parent}: {exc.strerror or exc}") from None
    os.close(fd)
    try:
        yield Path(tmp)
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; reports are for sharing
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def atomic_write_text(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` whole or not at all."""
    with atomic_target(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_json(path: Path, doc: dict[str, Any]) -> None:
    """Atomically write a JSON document (keys in the schema's order, which reads better than sorted)."""
    atomic_write_text(path, json.dumps(doc, indent=2, allow_nan=False) + "\n")


def _no_constant(token: str) -> float:
    raise ValueError(f"{token} is not a finite number")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"{text} overflows a float")
    return value


def loads_finite(text: str) -> Any:
    """JSON as the tool writes it: no NaN, no Infinity, no number that overflows a float (ValueError)."""
    try:
        return json.loads(text, parse_constant=_no_constant, parse_float=_finite_float)
    except RecursionError:
        raise ValueError("nested too deeply") from None


def read_json(path: Path) -> dict[str, Any]:
    """Read a results.json; a missing, malformed or non-finite file is a user error."""
    path = Path(path)
    if path.is_dir():
        raise OutputError(f"{path} is a directory; expected a results.json file")
    try:
        doc = loads_finite(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise OutputError(f"{path}: no such file") from None
    except UnicodeDecodeError as exc:
        raise OutputError(f"{path}: not UTF-8 text (byte {exc.start}); expected a results.json") from None
    except (OSError, ValueError) as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise OutputError(f"{path}: not a readable JSON file of finite numbers ({first})") from None
    if not isinstance(doc, dict):
        raise OutputError(f"{path}: not a resnet-probe results.json (a JSON {type(doc).__name__}, not an object)")
    return doc
