"""Labelled images in one .npz file: ``images`` uint8 (N, H, W, 3), ``labels`` integer (N,).

The file is validated before anything is allocated: the npy header of each member is read
from inside the zip (a few hundred bytes inflated, never the array), its shape and dtype
checked, its size checked against what the zip says the member holds and against the memory
this machine has available. Only the first ``limit`` images are then inflated, streamed in
chunks straight into the (N, 3, H, W) tensor, so neither a 12 GB zip bomb nor ``--limit 64``
of a huge file reads more than it uses.
"""

from __future__ import annotations

import math
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import numpy as np
import torch

from resnet_probe.bounds import MAX_CLASSES
from resnet_probe.data.known import NUM_CLASSES, class_names, default_preprocessing
from resnet_probe.data.preprocessing import Preprocessing
from resnet_probe.data.source import TensorSource, check_labels
from resnet_probe.errors import DataError

EXPECTED = "'images' uint8 (N, H, W, 3) and 'labels' integer (N,)"
DEFAULT_CLASSES = 10
MEMORY_SHARE = 0.8  # of the available memory one data file may take
CHUNK_BYTES = 4 << 20  # images inflated per step


@dataclass(frozen=True)
class _Member:
    """One array of the archive, as its npy header describes it."""

    key: str
    info: zipfile.ZipInfo
    shape: tuple[int, ...]
    dtype: np.dtype
    fortran: bool
    header_bytes: int

    @property
    def nbytes(self) -> int:
        return math.prod(self.shape) * self.dtype.itemsize


def available_memory() -> int | None:
    """Bytes this process may still allocate: MemAvailable, within a cgroup limit (Linux); None elsewhere."""
    found = []
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                found.append(int(line.split()[1]) * 1024)
    except (OSError, ValueError, IndexError):
        pass
    try:
        limit = Path("/sys/fs/cgroup/memory.max").read_text().strip()
        used = int(Path("/sys/fs/cgroup/memory.current").read_text())
        if limit != "max":
            found.append(int(limit) - used)
    except (OSError, ValueError):
        pass
    return min(found) if found else None


def _size(n: int) -> str:
    return f"{n / 1e9:.1f} GB" if n >= 1e9 else f"{n / 1e6:.1f} MB" if n >= 1e6 else f"{n:,} bytes"


def _header(zf: zipfile.ZipFile, info: zipfile.ZipInfo, where: str) -> _Member:
    key = info.filename.removesuffix(".npy")
    try:
        with zf.open(info) as fp:
            major, _minor = np.lib.format.read_magic(fp)
            read = np.lib.format.read_array_header_1_0 if major == 1 else np.lib.format.read_array_header_2_0
            shape, fortran, dtype = read(fp)
            offset = fp.tell()
    except (ValueError, OSError, EOFError, RuntimeError, zlib.error, zipfile.BadZipFile, NotImplementedError) as e:
        raise DataError(f"{where}: member {key!r} is not a readable npy array ({e}); expected {EXPECTED}") from None
    member = _Member(key, info, tuple(int(d) for d in shape), np.dtype(dtype), bool(fortran), offset)
    if member.dtype.hasobject:
        raise DataError(f"{where}: {key!r} holds Python objects, which are never unpickled; expected {EXPECTED}")
    if info.file_size < offset + member.nbytes:
        raise DataError(
            f"{where}: {key!r} claims {member.dtype} {member.shape} ({_size(member.nbytes)}) but the archive "
            f"holds {_size(max(info.file_size - offset, 0))} of it: truncated or corrupt"
        )
    return member


def _read(fp: IO[bytes], member: _Member, count: int, where: str) -> np.ndarray:
    """The next ``count`` bytes of a member, into a writable buffer."""
    out = np.empty(count, dtype=np.uint8)
    view, done = memoryview(out.data), 0
    try:
        while done < count:
            got = fp.readinto(view[done:])  # type: ignore[attr-defined]
            if not got:
                break
            done += got
    except (OSError, EOFError, zlib.error, zipfile.BadZipFile) as e:
        raise DataError(f"{where}: {member.key!r} does not inflate ({e}): truncated or corrupt") from None
    if done != count:
        raise DataError(f"{where}: {member.key!r} ends after {done} of {count} bytes: truncated or corrupt")
    return out


def _read_all(zf: zipfile.ZipFile, member: _Member, where: str) -> np.ndarray:
    """A small member (labels, class names) whole, in C order."""
    with zf.open(member.info) as fp:
        fp.read(member.header_bytes)
        raw = _read(fp, member, member.nbytes, where)
    flat = raw.view(member.dtype)
    if member.fortran:
        return np.ascontiguousarray(flat.reshape(member.shape[::-1]).T)
    return flat.reshape(member.shape)


def _check_memory(path: Path, needed: int, images: _Member, rows: int) -> None:
    free = available_memory()
    if free is None or needed <= MEMORY_SHARE * free:
        return
    per_image = max(images.nbytes // max(images.shape[0], 1), 1)
    fit = max(int((MEMORY_SHARE * free - (needed - rows * per_image)) // per_image), 0)
    raise DataError(
        f"{path.name}: {rows} images {images.dtype} {images.shape[1:]} need {_size(needed)}, more than "
        f"{MEMORY_SHARE:.0%} of the {_size(free)} of memory available; pass --limit N (about {fit} fit)"
    )


def _open_members(path: Path) -> tuple[zipfile.ZipFile, dict[str, _Member]]:
    with open(path, "rb") as fh:
        magic = fh.read(6)
    if magic == b"\x93NUMPY":
        raise DataError(f"{path} holds a single array, not an .npz archive; expected {EXPECTED}")
    try:
        zf = zipfile.ZipFile(path)
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as e:
        raise DataError(f"cannot read {path} as .npz ({e}); expected {EXPECTED}") from None
    try:
        members = {
            info.filename.removesuffix(".npy"): info for info in zf.infolist() if info.filename.endswith(".npy")
        }
        missing = [k for k in ("images", "labels") if k not in members]
        if missing:
            raise DataError(
                f"{path.name} has keys {', '.join(members) or '(none)'} but lacks "
                f"{', '.join(missing)}; expected {EXPECTED}"
            )
        wanted = ("images", "labels", "classes")
        return zf, {k: _header(zf, members[k], path.name) for k in wanted if k in members}
    except BaseException:
        zf.close()
        raise


def _images(zf: zipfile.ZipFile, member: _Member, rows: int, stats: bool, where: str) -> tuple[
    torch.Tensor, tuple[tuple[float, ...], tuple[float, ...]] | None
]:
    """The first ``rows`` images as uint8 (rows, 3, H, W); with ``stats``, every image's channel mean and std."""
    n, h, w, c = member.shape
    x = torch.empty((rows, c, h, w), dtype=torch.uint8)
    if member.fortran:  # column-major: no row is contiguous, so the whole array is read (memory checked)
        arr = _read_all(zf, member, where)
        x.copy_(torch.from_numpy(arr[:rows]).permute(0, 3, 1, 2))
        return x, _channel_stats(*_sums(arr), arr.size // c) if stats else None
    row_bytes = h * w * c
    step = max(1, CHUNK_BYTES // max(row_bytes, 1))
    total = np.zeros(c, dtype=np.int64)
    squares = np.zeros(c, dtype=np.int64)
    with zf.open(member.info) as fp:
        fp.read(member.header_bytes)
        # the file's own statistics are those of all its images: --limit changes which images are
        # scored, never how they are normalised
        end = n if stats else rows
        for start in range(0, end, step):
            count = min(step, end - start)
            chunk = _read(fp, member, count * row_bytes, where).reshape(count, h, w, c)
            if start < rows:
                keep = min(count, rows - start)
                x[start : start + keep] = torch.from_numpy(chunk[:keep]).permute(0, 3, 1, 2)
            if stats:
                s, q = _sums(chunk)
                total += s
                squares += q
    return x, _channel_stats(total, squares, n * h * w) if stats else None


def _sums(chunk: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    flat = chunk.reshape(-1, chunk.shape[-1]).astype(np.int64)
    return flat.sum(0), (flat * flat).sum(0)


def _channel_stats(total: np.ndarray, squares: np.ndarray, count: int) -> tuple[
    tuple[float, ...], tuple[float, ...]
]:
    """Mean and (unbiased) std per channel on the [0, 1] scale, from exact integer sums."""
    mean = tuple(int(s) / count / 255.0 for s in total)
    # n*Q - S^2 in integers: no cancellation; a constant channel (std 0) is only centred
    var = [(count * int(q) - int(s) ** 2) / (count * max(count - 1, 1)) for s, q in zip(total, squares, strict=True)]
    std = tuple(math.sqrt(v) / 255.0 if v > 0 else 1.0 for v in var)
    return mean, std


def load_npz(path: Path, dataset: str | None, split: str, limit: int | None = None) -> TensorSource:
    """An .npz file as a source; a named ``dataset`` fixes the class count and the statistics.

    Only the first ``limit`` images are read (all their labels are: they decide the class count).
    """
    zf, members = _open_members(path)
    with zf:
        images, labels = members["images"], members["labels"]
        if images.dtype != np.uint8 or len(images.shape) != 4 or images.shape[-1] != 3:
            raise DataError(
                f"{path.name}: 'images' is {images.dtype} {images.shape}; expected uint8 (N, H, W, 3)"
            )
        if len(labels.shape) != 1 or labels.dtype.kind not in "iu":
            raise DataError(f"{path.name}: 'labels' is {labels.dtype} {labels.shape}; expected integer (N,)")
        n = images.shape[0]
        if labels.shape[0] != n:
            raise DataError(f"{path.name}: {n} images but {labels.shape[0]} labels; expected one label per image")
        if n == 0:
            raise DataError(f"{path.name} holds no images; expected {EXPECTED}")
        rows = n if limit is None else min(limit, n)
        stats = dataset is None
        row_bytes = images.nbytes // n
        # the chunk being inflated, and its int64 copies when the file's statistics are summed
        extra = images.nbytes if images.fortran else CHUNK_BYTES * (17 if stats else 1)
        needed = rows * row_bytes + labels.nbytes + labels.shape[0] * 8 + extra
        if "classes" in members:
            needed += members["classes"].nbytes
        _check_memory(path, needed, images, rows)
        names = _class_names(zf, members.get("classes"), path.name)
        raw_labels = _read_all(zf, labels, path.name)
        where = f"{path.name}" + (f" as {dataset}" if dataset else "")
        num_classes = _num_classes(raw_labels, dataset, names, where)
        y = torch.from_numpy(raw_labels.astype(np.int64))
        check_labels(y, num_classes, where)
        x, own_stats = _images(zf, images, rows, stats, path.name)
    if own_stats is not None:
        # no named data set: the file's own statistics are the only honest default
        prep = Preprocessing(own_stats[0], own_stats[1], None, "dataset")
    else:
        assert dataset is not None
        prep = default_preprocessing(dataset)
        names = names or class_names(dataset)
    if names is None or len(names) != num_classes:
        names = tuple(str(i) for i in range(num_classes))
    h, w = x.shape[-2:]
    return TensorSource(
        name=dataset or f"npz:{path.name}",  # a named data set keeps its name: weights are cached by it
        split=split,
        num_classes=num_classes,
        classes=names,
        image_size=h if h == w else 0,
        default_preprocessing=prep,
        path=str(path),
        images=x,
        labels=y[:rows].clone() if rows < n else y,
    )


def _class_names(zf: zipfile.ZipFile, member: _Member | None, where: str) -> tuple[str, ...] | None:
    if member is None:
        return None
    if len(member.shape) != 1 or member.dtype.kind not in "US" or member.shape[0] > MAX_CLASSES:
        raise DataError(
            f"{where}: 'classes' is {member.dtype} {member.shape}; expected strings (C,) with C <= {MAX_CLASSES}"
        )
    return tuple(str(c) for c in _read_all(zf, member, where))


def _num_classes(labels: np.ndarray, dataset: str | None, names: tuple[str, ...] | None, where: str) -> int:
    """The class count: the named data set's, else what the labels and class names need (at most MAX_CLASSES)."""
    bound = NUM_CLASSES[dataset] if dataset is not None else MAX_CLASSES
    # in the labels' own dtype: a uint64 label of 2**63 + 5 must not wrap to a negative int64
    big = labels[labels >= bound]
    if big.size:
        values = ", ".join(str(int(v)) for v in np.unique(big)[:5])
        raise DataError(
            f"{where}: {big.size} labels outside [0, {bound}) (e.g. {values}); expected class indices below {bound}"
        )
    if dataset is not None:
        return bound
    return max(DEFAULT_CLASSES, int(labels.max()) + 1, len(names or ()))
