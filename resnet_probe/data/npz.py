"""Labelled images in one .npz file: ``images`` uint8 (N, H, W, 3), ``labels`` integer (N,)."""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np
import torch

from resnet_probe.data.known import NUM_CLASSES, class_names, default_preprocessing
from resnet_probe.data.preprocessing import Preprocessing
from resnet_probe.data.source import TensorSource, channel_stats, check_labels
from resnet_probe.errors import DataError

EXPECTED = "'images' uint8 (N, H, W, 3) and 'labels' integer (N,)"
DEFAULT_CLASSES = 10


def _read(path: Path) -> tuple[np.ndarray, np.ndarray, tuple[str, ...] | None]:
    try:
        loaded = np.load(path, allow_pickle=False)
        if not isinstance(loaded, np.lib.npyio.NpzFile):  # a .npy array saved under an .npz name
            raise DataError(f"{path} holds a single array, not an .npz archive; expected {EXPECTED}")
        with loaded as f:
            missing = [k for k in ("images", "labels") if k not in f.files]
            if missing:
                raise DataError(
                    f"{path.name} has keys {', '.join(f.files) or '(none)'} but lacks "
                    f"{', '.join(missing)}; expected {EXPECTED}"
                )
            names = tuple(str(c) for c in f["classes"]) if "classes" in f.files else None
            return f["images"], f["labels"], names
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as e:  # EOFError: an empty file
        raise DataError(f"cannot read {path} as .npz ({e}); expected {EXPECTED}") from None


def load_npz(path: Path, dataset: str | None, split: str) -> TensorSource:
    """An .npz file as a source; a named ``dataset`` fixes the class count and the statistics."""
    images, labels, names = _read(path)
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[-1] != 3:
        raise DataError(
            f"{path.name}: 'images' is {images.dtype} {images.shape}; expected uint8 (N, H, W, 3)"
        )
    if labels.ndim != 1 or not (np.issubdtype(labels.dtype, np.integer) and labels.dtype != np.bool_):
        raise DataError(f"{path.name}: 'labels' is {labels.dtype} {labels.shape}; expected integer (N,)")
    if len(labels) != len(images):
        raise DataError(
            f"{path.name}: {len(images)} images but {len(labels)} labels; expected one label per image"
        )
    if len(images) == 0:
        raise DataError(f"{path.name} holds no images; expected {EXPECTED}")
    y = torch.from_numpy(labels.astype(np.int64))
    if dataset is not None:
        num_classes = NUM_CLASSES[dataset]
    else:
        num_classes = max(DEFAULT_CLASSES, int(y.max()) + 1, len(names or ()))
    where = f"{path.name}" + (f" as {dataset}" if dataset else "")
    check_labels(y, num_classes, where)
    x = torch.from_numpy(np.ascontiguousarray(images.transpose(0, 3, 1, 2)))
    if dataset is not None:
        prep = default_preprocessing(dataset)
        names = names or class_names(dataset)
    else:
        # no named data set: the file's own statistics are the only honest default
        mean, std = channel_stats(x)
        prep = Preprocessing(mean, std, None, "dataset")
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
        labels=y,
    )
