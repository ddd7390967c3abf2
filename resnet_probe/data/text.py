"""Text for language models: a byte tokenizer, the ``pystdlib`` data set, and windows of token ids.

A text becomes one stream of token ids, cut into non-overlapping windows of ``seq_len`` tokens (the
remainder that fills no window is dropped); each window is one example, its own target. The windows
of a test split stay in stream order; those of a train split are permuted with ``seed``, so that
``limit`` keeps a sample of the whole text. What was cut and from what (tokenizer, tokens, text
sha256, seq_len, seed) goes to results.json through :meth:`TextSource.describe`.

``pystdlib`` is the Python standard library's own source (data/sample/README.md): its test split is
shipped, its train split is read from the running interpreter's standard library.
"""

from __future__ import annotations

import hashlib
import lzma
import re
import sys
import sysconfig
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from resnet_probe.data.given import GIVEN, GivenSource
from resnet_probe.errors import DataError

BYTE_VOCAB = 256
BYTES = "bytes"  # the byte tokenizer's name in results.json
SEQ_LEN = 128  # default window of text data

PYSTDLIB = "pystdlib"
PYSTDLIB_FILE = Path(__file__).parent / "sample" / "pystdlib_test.txt.xz"
# of the .xz file; sample/build_pystdlib.py pins it
PYSTDLIB_SHA256 = "9759d3e87606f135be380b2242bf0415efffd98e5238583f078ada139cc6f631"
PYSTDLIB_PYTHON = "3.11.7"  # the interpreter whose standard library the shipped test split was cut from
HELD_OUT_MODULUS = 20  # a file is held out when sha256(relative path) % 20 == 0: about 5 %
EXCLUDED_DIRS = frozenset({"test", "tests", "idle_test", "site-packages", "dist-packages", "__pycache__"})
FILE_HEADER = "# ==== {path} ====\n"
_HEADER = re.compile(r"^# ==== (\S+) ====$", re.MULTILINE)


def encode_bytes(text: str) -> Tensor:
    """The UTF-8 bytes of ``text`` as a 1-D int64 tensor of ids below :data:`BYTE_VOCAB`."""
    raw = text.encode("utf-8")
    if not raw:
        return torch.empty(0, dtype=torch.int64)
    return torch.frombuffer(bytearray(raw), dtype=torch.uint8).to(torch.int64)


def decode_bytes(ids: Tensor | Sequence[int]) -> str:
    """The text of byte ids; a window cut inside a multi-byte character decodes it as U+FFFD."""
    values = ids.reshape(-1).tolist() if isinstance(ids, Tensor) else list(ids)
    if any(not 0 <= v < BYTE_VOCAB for v in values):
        raise DataError(f"byte ids must lie in [0, {BYTE_VOCAB}); got {min(values)}..{max(values)}")
    return bytes(values).decode("utf-8", errors="replace")


@dataclass(frozen=True, eq=False, kw_only=True)
class TextSource(GivenSource):
    """Windows of token ids (N, seq_len) cut from a text; ``text`` is what results.json records of the cut."""

    text: dict[str, Any] = field(default_factory=dict)

    @property
    def ids(self) -> Tensor:
        """The windows, int64 (N, seq_len)."""
        return self.obj[0]  # type: ignore[no-any-return]

    def describe(self) -> dict[str, Any]:
        """The ``data`` block of results.json: the windows and how they were cut."""
        ids = self.ids
        return super().describe() | {"tokens": int(ids.numel()), "seq_len": int(ids.shape[1])} | self.text


def windows(stream: Tensor, seq_len: int, *, shuffle: bool = False, seed: int = 0) -> Tensor:
    """Non-overlapping windows (N, seq_len) of a 1-D stream, in order or permuted with ``seed``."""
    check_seq_len(seq_len, int(stream.numel()))
    n = int(stream.numel()) // seq_len
    cut = stream[: n * seq_len].reshape(n, seq_len)
    if shuffle:
        cut = cut[torch.randperm(n, generator=torch.Generator().manual_seed(seed))]
    return cut.to(torch.int64).contiguous()


def check_seq_len(seq_len: int, tokens: int | None = None) -> None:
    """Reject a window shorter than 2 tokens (nothing to predict) or longer than the text."""
    if seq_len < 2:
        raise DataError(f"--seq-len {seq_len}: a window needs at least 2 tokens (one to predict from, one to predict)")
    if tokens is not None and seq_len > tokens:
        raise DataError(f"--seq-len {seq_len} is longer than the text ({tokens} tokens); pass a smaller --seq-len")


def text_source(
    stream: Tensor,
    *,
    name: str,
    split: str,
    seq_len: int,
    seed: int = 0,
    shuffle: bool = False,
    limit: int | None = None,
    path: str | None = None,
    info: dict[str, Any] | None = None,
) -> TextSource:
    """A :class:`TextSource` of the windows of ``stream``; ``info`` (tokenizer, sha256, ...) joins its record."""
    ids = windows(stream, seq_len, shuffle=shuffle, seed=seed)
    if limit is not None and limit < len(ids):
        ids = ids[:limit].clone()
    record = {"stream_tokens": int(stream.numel()), "windows": "shuffled" if shuffle else "in order", "seed": seed} | (
        info or {}
    )
    return TextSource(
        name=name,
        split=split,
        num_classes=0,
        classes=(),
        image_size=0,
        default_preprocessing=GIVEN,
        path=path,
        kind="tensors",
        obj=(ids, ids),
        length=int(ids.shape[0]),
        text=record,
    )


# --- pystdlib -------------------------------------------------------------------------------------


def is_held_out(relative: str) -> bool:
    """Whether a standard-library file (its path relative to the stdlib, with ``/``) is in the test split."""
    return int(hashlib.sha256(relative.encode("utf-8")).hexdigest(), 16) % HELD_OUT_MODULUS == 0


def stdlib_files(root: Path) -> list[tuple[str, Path]]:
    """The ``.py`` files of a standard library, sorted, without tests, site-packages and build folders."""
    out = []
    for p in root.rglob("*.py"):
        rel = p.relative_to(root).as_posix()
        parts = rel.split("/")
        if EXCLUDED_DIRS.intersection(parts[:-1]) or parts[-1].startswith("test_"):
            continue
        if parts[0].startswith("config-") or parts[0] == "lib-dynload":
            continue
        out.append((rel, p))
    return sorted(out)


def join_files(files: Iterable[tuple[str, str]]) -> str:
    """Files' texts in one, each after a ``# ==== path ====`` line and ending in a newline."""
    return "".join(FILE_HEADER.format(path=rel) + text + ("" if text.endswith("\n") else "\n") for rel, text in files)


def file_paths(text: str) -> list[str]:
    """The paths of the files :func:`join_files` joined into ``text``."""
    return _HEADER.findall(text)


def read_stdlib(root: Path, held_out: bool) -> tuple[str, int]:
    """The held-out (or the other) files of a standard library joined, and how many files it holds.

    Files that are not UTF-8 are skipped: a handful of tests only, which are excluded anyway.
    """
    chosen = []
    for rel, p in stdlib_files(root):
        if is_held_out(rel) != held_out:
            continue
        try:
            chosen.append((rel, p.read_text(encoding="utf-8")))
        except (UnicodeDecodeError, OSError):
            continue
    return join_files(chosen), len(chosen)


def pystdlib_test_text() -> str:
    """The shipped test split's text, checked against its pinned sha256."""
    raw = PYSTDLIB_FILE.read_bytes()
    digest = hashlib.sha256(raw).hexdigest()
    if digest != PYSTDLIB_SHA256:
        raise DataError(
            f"the shipped text {PYSTDLIB_FILE.name} is damaged (sha256 {digest[:12]}…); reinstall resnet-probe"
        )
    return lzma.decompress(raw).decode("utf-8")


@lru_cache(maxsize=2)
def _pystdlib_stream(split: str, root: str) -> tuple[Tensor, dict[str, Any]]:
    if split == "test":
        text = pystdlib_test_text()
        files, python = len(file_paths(text)), PYSTDLIB_PYTHON
    else:
        stdlib = Path(root)
        if not stdlib.is_dir():
            raise DataError(f"{PYSTDLIB} train reads the running Python's standard library; {stdlib} is not there")
        text, files = read_stdlib(stdlib, held_out=False)
        python = ".".join(map(str, sys.version_info[:3]))
    sha = hashlib.sha256(text.encode("utf-8")).hexdigest()
    info = {
        "tokenizer": BYTES,
        "vocab_size": BYTE_VOCAB,
        "files": files,
        "python": python,
        "text_sha256": sha,
        "licence": "PSF-2.0",
    }
    # uint8 in the cache: an eighth of the int64 windows cut from it
    return encode_bytes(text).to(torch.uint8), info


def load_pystdlib(
    split: str = "test", *, seq_len: int = SEQ_LEN, seed: int = 0, limit: int | None = None
) -> TextSource:
    """The Python standard library's source as byte windows: ``test`` shipped, ``train`` from this interpreter.

    Example:
        >>> src = load_pystdlib("test", seq_len=128)
        >>> src.ids.shape[1], src.describe()["tokenizer"]
        (128, 'bytes')
    """
    check_seq_len(seq_len)
    root = sysconfig.get_paths()["stdlib"]
    stream, info = _pystdlib_stream(split, root if split == "train" else "")
    path = str(PYSTDLIB_FILE) if split == "test" else root
    return text_source(
        stream,
        name=PYSTDLIB,
        split=split,
        seq_len=seq_len,
        seed=seed,
        shuffle=split == "train",
        limit=limit,
        path=path,
        info=dict(info),
    )
