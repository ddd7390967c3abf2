"""Image folders (ImageNet val layout: one sub-folder per class), streamed through a DataLoader."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from PIL import Image, UnidentifiedImageError
from torch.utils.data import DataLoader, Dataset

from resnet_probe.data.preprocessing import IMAGENET_MEAN, IMAGENET_STD, Preprocessing
from resnet_probe.data.source import (
    Batch,
    DataSource,
    Normaliser,
    check_batch_size,
    check_shard,
    pad_crop_flip,
    shard_batches,
)
from resnet_probe.errors import DataError

CROP_PCT = 0.875  # resize to size/0.875 then centre-crop: the torchvision/timm eval convention
IMAGENET_SIZE = 224
IMAGENET_CLASSES = 1000
_WNID = re.compile(r"^n\d{8}$")


class _Images(Dataset):
    """(path, label) pairs read as RGB and transformed; top level so DataLoader workers can pickle it.

    An image that does not decode comes back as ``(None, label, path, reason)`` instead of
    raising: an exception raised in a worker process reaches the caller as a multi-line
    wrapper, and the caller must name the file in one line.
    """

    def __init__(self, samples: tuple[tuple[str, int], ...], transform: Any) -> None:
        self.samples = samples
        self.transform = transform

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i: int) -> tuple[torch.Tensor | None, int, str, str]:
        path, label = self.samples[i]
        try:
            with Image.open(path) as im:
                return self.transform(im.convert("RGB")), label, path, ""
        except Exception as exc:  # a hostile file makes PIL raise almost anything
            return None, label, path, _decode_failure(exc)


def _decode_failure(exc: BaseException) -> str:
    if isinstance(exc, UnidentifiedImageError):
        return "not an image format PIL can read"
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _collate(items: list[tuple[torch.Tensor | None, int, str, str]]) -> tuple[Any, Any]:
    """A batch ``(x, y)``, or ``(path, reason)`` of its first image that did not decode."""
    for _x, _y, path, reason in items:
        if reason:
            return path, reason
    images = torch.stack([x for x, *_ in items if x is not None])
    return images, torch.tensor([y for _, y, *_ in items], dtype=torch.int64)


@dataclass(frozen=True, eq=False, kw_only=True)
class FolderSource(DataSource):
    """Image files with labels, decoded, resized and centre-cropped on the fly."""

    samples: tuple[tuple[str, int], ...] = field(repr=False)
    workers: int = 0  # DataLoader processes decoding images; 0 decodes in this process

    def __len__(self) -> int:
        return len(self.samples)

    def sizes(self, preprocessing: Preprocessing | None = None) -> tuple[int, int]:
        """The shorter side every image is resized to, and the centre crop's side."""
        prep = preprocessing or self.default_preprocessing
        crop = prep.input_size or self.default_preprocessing.input_size or IMAGENET_SIZE
        return int(crop / CROP_PCT), crop

    def batches(
        self,
        batch_size: int,
        preprocessing: Preprocessing | None = None,
        device: str | torch.device = "cpu",
        augment: bool = False,
        shuffle: bool = False,
        seed: int = 0,
        workers: int | None = None,
        shard: tuple[int, int] = (0, 1),
    ) -> Iterator[Batch]:
        """Yield float32 ``(x, y)`` normalised with ``preprocessing`` (default: the data set's)."""
        from torchvision import transforms as T

        check_batch_size(batch_size)
        check_shard(shard, augment)
        prep = preprocessing or self.default_preprocessing
        resize, crop = self.sizes(prep)
        transform = T.Compose([T.Resize(resize), T.CenterCrop(crop), T.PILToTensor()])
        dev = torch.device(device)
        norm = Normaliser(prep, dev)
        n = len(self.samples)
        order = torch.randperm(n, generator=torch.Generator().manual_seed(seed)) if shuffle else None
        # Only this rank's batches are ever decoded.
        loader = DataLoader(
            _Images(self.samples, transform),
            batch_sampler=shard_batches(n, batch_size, order, shard),
            num_workers=self.workers if workers is None else workers,
            pin_memory=dev.type == "cuda",
            collate_fn=_collate,
        )
        # separate from the loader's generator so augmentation does not depend on worker count
        aug = torch.Generator().manual_seed(seed + 1)
        for x, y in loader:
            if isinstance(x, str):
                raise DataError(f"image folder {self.path}: cannot decode {x} ({y}); repair or remove that file")
            if augment:
                x = pad_crop_flip(x, aug)
            yield norm(x), y.to(dev)


def scan(root: Path) -> tuple[list[str], list[tuple[str, int]]]:
    """Class folder names and (file, class index) pairs, sorted, as torchvision's ImageFolder finds them."""
    from torchvision.datasets.folder import IMG_EXTENSIONS, find_classes, make_dataset

    try:
        classes, to_idx = find_classes(str(root))
        samples = make_dataset(str(root), to_idx, extensions=IMG_EXTENSIONS)
    except FileNotFoundError as e:
        raise DataError(f"image folder {root}: {str(e).splitlines()[0]}") from None
    return classes, samples


def is_wnid_folder(classes: list[str]) -> bool:
    """Whether every class folder is named by an ImageNet WordNet id (n01440764, ...)."""
    return bool(classes) and all(_WNID.match(c) for c in classes)


def _imagenet_wnids() -> list[str]:
    try:
        from timm.data import ImageNetInfo
    except ImportError:
        raise DataError(
            "mapping a partial ImageNet folder to the 1000 standard labels needs timm's class list; "
            "pip install timm, or use a folder with all 1000 class folders"
        ) from None
    return list(ImageNetInfo().label_names())


def _imagenet_labels(root: Path, classes: list[str]) -> tuple[tuple[str, ...], list[int]]:
    """The 1000 ImageNet class names and, per folder class, its standard index."""
    if len(classes) == IMAGENET_CLASSES:
        return tuple(classes), list(range(IMAGENET_CLASSES))  # sorted wnids are the standard order
    if not is_wnid_folder(classes):
        raise DataError(
            f"ImageNet folder {root} has {len(classes)} class folders not named by WordNet id; "
            f"expected all {IMAGENET_CLASSES} classes or folders named like n01440764"
        )
    wnids = _imagenet_wnids()
    index = {w: i for i, w in enumerate(wnids)}
    unknown = [c for c in classes if c not in index]
    if unknown:
        raise DataError(f"ImageNet folder {root}: unknown WordNet ids {', '.join(unknown[:5])}")
    return tuple(wnids), [index[c] for c in classes]


def _balanced_first(samples: list[tuple[str, int]], limit: int | None) -> list[tuple[str, int]]:
    """The first ``limit`` samples taken class by class in turn, kept in folder order."""
    if limit is None or limit >= len(samples):
        return samples
    # folders are sorted by class: a plain prefix would hold only the first few classes
    seen: dict[int, int] = {}
    ranks = []
    for pos, (_, label) in enumerate(samples):
        ranks.append((seen.get(label, 0), label, pos))
        seen[label] = seen.get(label, 0) + 1
    keep = sorted(pos for _, _, pos in sorted(ranks)[:limit])
    return [samples[p] for p in keep]


def load_folder(root: Path, dataset: str | None, split: str, limit: int | None) -> FolderSource:
    """An ImageFolder as a source; ImageNet labels when asked for or when folders are WordNet ids."""
    classes, samples = scan(root)
    if dataset == "imagenet" or (dataset is None and is_wnid_folder(classes)):
        name, (names, to_global) = "imagenet", _imagenet_labels(root, classes)
        samples = [(p, to_global[c]) for p, c in samples]
    else:
        name, names = f"folder:{root.name}", tuple(classes)
    return FolderSource(
        name=name,
        split=split,
        num_classes=len(names),
        classes=names,
        image_size=0,
        default_preprocessing=Preprocessing(IMAGENET_MEAN, IMAGENET_STD, IMAGENET_SIZE, "dataset"),
        path=str(root),
        samples=tuple(_balanced_first(samples, limit)),
    )
