"""Data sets for every analysis: one :func:`load_data` call gives a :class:`DataSource`.

Without arguments it is the embedded offline default, scikit-learn's handwritten digits
adapted to 3x32x32; CIFAR-10/100 come from a torchvision root, ImageNet from an image
folder, anything else from an ``.npz`` file. Text for language models (``pystdlib``) comes as
windows of ``seq_len`` token ids (data/text.py).
"""

from __future__ import annotations

import hashlib
from dataclasses import replace
from pathlib import Path

from resnet_probe.data.folder import FolderSource, load_folder
from resnet_probe.data.given import given_source
from resnet_probe.data.known import (
    CIFAR,
    DATASETS,
    NUM_CLASSES,
    SAMPLE,
    SAMPLE_FILE,
    SAMPLE_SHA256,
    TEXT_DATASETS,
    cifar_in,
    cifar_root,
    data_home,
    load_cifar,
    load_digits,
)
from resnet_probe.data.npz import load_npz
from resnet_probe.data.source import DataSource, TensorSource, pad_crop_flip
from resnet_probe.data.text import PYSTDLIB, SEQ_LEN, check_seq_len, load_pystdlib
from resnet_probe.errors import DataError

__all__ = [
    "DATASETS",
    "NUM_CLASSES",
    "SPLITS",
    "DataSource",
    "FolderSource",
    "TensorSource",
    "data_home",
    "load_data",
    "pad_crop_flip",
]

SPLITS = ("train", "test")
LAYOUTS = (
    "a .npy of token ids (sequences, tokens), "
    "a CIFAR root (a folder holding cifar-10-batches-py or cifar-100-python), "
    "an image folder (one sub-folder of images per class, ImageNet val layout) "
    "or an .npz file with 'images' uint8 (N, H, W, 3) and 'labels' (N,)"
)


def load_data(
    dataset: str | None = None,
    data: str | Path | None = None,
    *,
    split: str = "test",
    limit: int | None = None,
    download: bool = False,
    image_size: int | None = None,
    workers: int = 0,
    seq_len: int | None = None,
    seed: int = 0,
) -> DataSource:
    """Open a data set by name, by path, or both; ``limit`` keeps the first N images (or token windows).

    ``workers`` DataLoader processes decode an image folder (in-memory sets ignore it).
    Text is cut into windows of ``seq_len`` tokens (default 128); a train split's windows are
    permuted with ``seed``, a test split's stay in order.

    Example:
        >>> src = load_data("cifar10", "shared/fixtures/cifar10_test_first846.npz", limit=100)
        >>> x, y = next(src.batches(50))  # float32 (50, 3, 32, 32), int64 (50,)
        >>> ids = load_data("pystdlib", split="test", seq_len=128)  # byte ids (N, 128)
    """
    if dataset is not None and dataset not in DATASETS:
        raise DataError(f"unknown dataset {dataset!r}; expected one of {', '.join(DATASETS)}")
    if split not in SPLITS:
        raise DataError(f"unknown split {split!r}; expected one of {', '.join(SPLITS)}")
    if limit is not None and limit < 1:
        raise DataError(f"limit must be at least 1, got {limit}")
    if workers < 0:
        raise DataError(f"workers must be 0 or more, got {workers}")
    if image_size is not None and image_size < 1:
        raise DataError(f"image size must be at least 1, got {image_size}")
    if seq_len is not None:
        check_seq_len(seq_len)
    if data is not None:
        source = _from_path(Path(data).expanduser(), dataset, split, download, limit)
    elif dataset in (None, "digits"):
        source = load_digits(split)
    elif dataset == SAMPLE:
        source = load_sample(split, limit)
    elif dataset == PYSTDLIB:
        source = load_pystdlib(split, seq_len=seq_len or SEQ_LEN, seed=seed, limit=limit)
    elif dataset == "imagenet":
        raise DataError(
            "imagenet needs --data PATH: an image folder in ImageNet val layout (one sub-folder per class)"
        )
    else:
        source = load_cifar(dataset, None, split, download)
    if isinstance(source, TensorSource) and limit is not None and limit < len(source):
        # clone so the full set can be freed
        source = replace(source, images=source.images[:limit].clone(), labels=source.labels[:limit].clone())
    if isinstance(source, FolderSource) and workers:
        source = replace(source, workers=workers)
    if image_size is not None:
        source = replace(
            source, default_preprocessing=replace(source.default_preprocessing, input_size=image_size)
        )
    return source


def _from_path(path: Path, dataset: str | None, split: str, download: bool, limit: int | None) -> DataSource:
    if dataset in ("digits", SAMPLE, *TEXT_DATASETS):
        raise DataError(f"{dataset} is built in and takes no --data path")
    if path.is_file():
        if path.suffix.lower() == ".npy":
            return load_token_ids(path, limit)
        if path.suffix.lower() != ".npz":
            raise DataError(f"{path} is not an .npz or .npy file; expected {LAYOUTS}")
        return load_npz(path, dataset, split, limit)
    if not path.is_dir():
        raise DataError(f"{path} does not exist; expected {LAYOUTS}")
    root = cifar_root(path)
    present = cifar_in(root)
    if dataset in CIFAR:
        return load_cifar(dataset, root, split, download)
    if dataset is None and len(present) == 1:
        return load_cifar(present[0], root, split, download)
    if dataset is None and len(present) > 1:
        raise DataError(f"{root} holds both {' and '.join(present)}; pick one with --dataset")
    if not any(path.iterdir()):
        raise DataError(f"{path} is empty; expected {LAYOUTS}")
    if not any(p.is_dir() for p in path.iterdir()):
        raise DataError(f"{path} has no class sub-folders; expected {LAYOUTS}")
    return load_folder(path, dataset, split, limit)


def load_token_ids(path: Path, limit: int | None = None) -> DataSource:
    """Token ids of a causal language model, (sequences, tokens) integers in an ``.npy`` (read without pickles)."""
    import numpy as np
    import torch

    try:
        ids = np.load(path, allow_pickle=False, mmap_mode="r")
    except (ValueError, OSError) as exc:
        raise DataError(f"{path} is not a readable .npy of token ids ({' '.join(str(exc).split())[:160]})") from None
    if ids.ndim != 2 or ids.dtype.kind not in "iu" or ids.shape[1] < 2 or ids.shape[0] < 1:
        raise DataError(
            f"{path} holds {ids.dtype} {tuple(ids.shape)}; expected integer token ids (sequences, tokens >= 2)"
        )
    rows = ids[:limit] if limit is not None else ids
    tokens = torch.from_numpy(np.array(rows, dtype=np.int64))
    if int(tokens.min()) < 0:
        raise DataError(f"{path} holds negative token ids")
    source = given_source(tokens)
    return replace(source, path=str(path))


def load_sample(split: str, limit: int | None = None) -> TensorSource:
    """The shipped sample: the first 846 CIFAR-10 test images, pixel-exact (test split only)."""
    if split != "test":
        raise DataError(f"{SAMPLE} is 846 CIFAR-10 *test* images; it has no {split!r} split")
    digest = hashlib.sha256(SAMPLE_FILE.read_bytes()).hexdigest()
    if digest != SAMPLE_SHA256:
        raise DataError(f"the shipped sample {SAMPLE_FILE} is damaged (sha256 {digest[:12]}…); reinstall resnet-probe")
    return load_npz(SAMPLE_FILE, SAMPLE, split, limit)
