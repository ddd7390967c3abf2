"""The named data sets: CIFAR-10/100 (torchvision roots), ImageNet statistics, embedded digits, text (pystdlib)."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from resnet_probe.data.preprocessing import IMAGENET_MEAN, IMAGENET_STD, Preprocessing
from resnet_probe.data.source import TensorSource, channel_stats
from resnet_probe.errors import DataError
from resnet_probe.files import home

DATASETS = ("cifar10", "cifar10-sample", "cifar100", "imagenet", "digits", "pystdlib")
NUM_CLASSES = {"cifar10": 10, "cifar10-sample": 10, "cifar100": 100, "imagenet": 1000, "digits": 10}
# Token windows for language models (data/text.py): no classes, no image preprocessing.
TEXT_DATASETS = ("pystdlib",)
# The first 846 CIFAR-10 test images, shipped with the package (data/sample/README.md).
SAMPLE = "cifar10-sample"
SAMPLE_FILE = Path(__file__).parent / "sample" / "cifar10_test_first846.npz"
SAMPLE_SHA256 = "36ac1176ed210c9a24ab1846848116ea1f5a87e782555a64d487ea593658f3a5"
CIFAR = {  # name -> (title, torchvision folder, mean, std)
    "cifar10": ("CIFAR-10", "cifar-10-batches-py", (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
    "cifar100": ("CIFAR-100", "cifar-100-python", (0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)),
}
CIFAR_CLASSES = (
    "airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck",
)  # fmt: skip
DIGITS_SIZE = 32  # the CIFAR zoo's input side
DIGITS_TEST = 500


def data_home() -> Path:
    """Where named data sets live: ``home()/data``."""
    return home() / "data"


def default_preprocessing(dataset: str) -> Preprocessing:
    """A named data set's standard input statistics."""
    if dataset in CIFAR or dataset == SAMPLE:
        _, _, mean, std = CIFAR["cifar10" if dataset == SAMPLE else dataset]
        return Preprocessing(mean, std, None, "dataset")
    if dataset == "imagenet":
        return Preprocessing(IMAGENET_MEAN, IMAGENET_STD, 224, "dataset")
    if dataset == "digits":
        return _digits()[4]
    raise DataError(f"unknown dataset {dataset!r}; expected one of {', '.join(DATASETS)}")


def class_names(dataset: str) -> tuple[str, ...] | None:
    """Class names of a named data set when known without its files."""
    if dataset in ("cifar10", SAMPLE):
        return CIFAR_CLASSES
    if dataset == "digits":
        return tuple(str(i) for i in range(10))
    return None


def cifar_root(path: Path) -> Path:
    """Accept the torchvision root or the extracted batches folder itself."""
    return path.parent if path.name in {folder for _, folder, _, _ in CIFAR.values()} else path


def cifar_in(root: Path) -> list[str]:
    """The CIFAR data sets present under a torchvision root."""
    return [name for name, (_, folder, _, _) in CIFAR.items() if (root / folder).is_dir()]


def load_cifar(dataset: str, root: Path | None, split: str, download: bool) -> TensorSource:
    """CIFAR-10/100 from a torchvision root (default: :func:`data_home`), optionally downloading."""
    from torchvision import datasets

    title, folder, mean, std = CIFAR[dataset]
    explicit = root is not None
    root = cifar_root(root) if root is not None else data_home()
    if not (root / folder).is_dir() and not download:
        how = "pass --download" if explicit else "pass --download or --data PATH"
        raise DataError(f"{title} not found under {root} (no {folder}/); {how}")
    cls = datasets.CIFAR10 if dataset == "cifar10" else datasets.CIFAR100
    try:
        ds = cls(str(root), train=split == "train", download=download)
    except RuntimeError as e:  # torchvision's "not found or corrupted"
        raise DataError(f"{title} under {root} is incomplete or corrupted: {e}") from None
    except OSError as e:  # URLError is an OSError
        raise DataError(f"could not download {title} to {root} (offline?): {e}") from None
    images = torch.from_numpy(np.ascontiguousarray(ds.data.transpose(0, 3, 1, 2)))
    return TensorSource(
        name=dataset,
        split=split,
        num_classes=len(ds.classes),
        classes=tuple(ds.classes),
        image_size=images.shape[-1],
        default_preprocessing=Preprocessing(mean, std, None, "dataset"),
        path=str(root),
        images=images,
        labels=torch.as_tensor(ds.targets, dtype=torch.int64),
    )


@lru_cache(maxsize=1)
def _digits() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, Preprocessing]:
    """All 1,797 digits adapted to 3x32x32 uint8, labels, train and test indices, train statistics."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    raw = load_digits()
    labels = torch.as_tensor(raw.target, dtype=torch.int64)
    x = torch.as_tensor(raw.images, dtype=torch.float32).unsqueeze(1) * (255.0 / 16.0)
    x = F.interpolate(x, size=(DIGITS_SIZE, DIGITS_SIZE), mode="bilinear", align_corners=False)
    images = x.round_().clamp_(0, 255).to(torch.uint8).expand(-1, 3, -1, -1).contiguous()
    train, test = train_test_split(
        np.arange(len(labels)), test_size=DIGITS_TEST, random_state=0, stratify=raw.target
    )
    train_idx, test_idx = torch.as_tensor(np.sort(train)), torch.as_tensor(np.sort(test))
    mean, std = channel_stats(images[train_idx])
    return images, labels, train_idx, test_idx, Preprocessing(mean, std, None, "dataset")


def load_digits(split: str) -> TensorSource:
    """scikit-learn's bundled 8x8 digits, upsampled to 32x32 RGB; a fixed stratified split."""
    images, labels, train_idx, test_idx, prep = _digits()
    idx = train_idx if split == "train" else test_idx
    return TensorSource(
        name="digits",
        split=split,
        num_classes=10,
        classes=tuple(str(i) for i in range(10)),
        image_size=DIGITS_SIZE,
        default_preprocessing=prep,
        path=None,
        images=images[idx],
        labels=labels[idx],
    )

