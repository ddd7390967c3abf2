"""Data sources: labelled images that come out as normalised float batches on a device."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from resnet_probe.data.preprocessing import Preprocessing
from resnet_probe.errors import DataError

Batch = tuple[Tensor, Tensor]
CIFAR_PAD = 4  # He et al. 2015, Sec. 4.2


@dataclass(frozen=True, eq=False)
class DataSource(ABC):
    """A labelled image set with its standard preprocessing; iterate it with :meth:`batches`."""

    name: str
    split: str
    num_classes: int
    classes: tuple[str, ...]
    image_size: int  # native square side; 0 when the images vary (folders)
    default_preprocessing: Preprocessing
    path: str | None = None

    @abstractmethod
    def __len__(self) -> int: ...

    @abstractmethod
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
        """Yield float32 ``(x, y)`` normalised with ``preprocessing`` (default: the data set's).

        ``workers``: decoding processes where the source decodes files (default: the number
        it was opened with).

        ``shard=(rank, world)`` yields only batches ``j`` with ``j % world == rank`` (the
        others are neither read nor normalised); every rank must pass the same other arguments.
        """

    def describe(self) -> dict[str, Any]:
        """The ``data`` block of results.json."""
        return {
            "dataset": self.name,
            "split": self.split,
            "n": len(self),
            "num_classes": self.num_classes,
            "path": self.path,
        }


@dataclass(frozen=True, eq=False, kw_only=True)
class TensorSource(DataSource):
    """Images held in memory as uint8 (N, 3, H, W) with int64 labels (N,)."""

    images: Tensor = field(repr=False)
    labels: Tensor = field(repr=False)

    def __post_init__(self) -> None:
        im, lab = self.images, self.labels
        if im.dtype != torch.uint8 or im.dim() != 4 or im.shape[1] != 3:
            raise DataError(f"images must be uint8 (N, 3, H, W), got {im.dtype} {tuple(im.shape)}")
        if lab.dtype != torch.int64 or lab.shape != (im.shape[0],):
            raise DataError(f"labels must be int64 ({im.shape[0]},), got {lab.dtype} {tuple(lab.shape)}")
        check_labels(lab, self.num_classes, self.name)

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def batches(
        self,
        batch_size: int,
        preprocessing: Preprocessing | None = None,
        device: str | torch.device = "cpu",
        augment: bool = False,
        shuffle: bool = False,
        seed: int = 0,
        workers: int | None = None,  # in memory: nothing to decode
        shard: tuple[int, int] = (0, 1),
    ) -> Iterator[Batch]:
        """Yield float32 ``(x, y)`` normalised with ``preprocessing`` (default: the data set's)."""
        check_batch_size(batch_size)
        rank, world = check_shard(shard, augment)
        prep = preprocessing or self.default_preprocessing
        dev = torch.device(device)
        norm = Normaliser(prep, dev, channels=self.images.shape[1])
        gen = torch.Generator().manual_seed(seed)
        n = len(self)
        order = torch.randperm(n, generator=gen) if shuffle else None
        images, labels = self.images, self.labels
        # On a GPU: the whole uint8 set uploaded once when it fits (augmentation draws on the
        # CPU, so it stays there), else each batch pinned and copied without blocking.
        resident = dev.type == "cuda" and not augment and fits_on_device(images, dev)
        if resident:
            images, labels = images.to(dev), labels.to(dev)
        pin = dev.type == "cuda" and not resident
        for start in range(rank * batch_size, n, world * batch_size):
            if order is None:
                x, y = images[start : start + batch_size], labels[start : start + batch_size]
            else:
                idx = order[start : start + batch_size]
                idx = idx.to(dev) if resident else idx
                x, y = images[idx], labels[idx]
            if augment:
                x = pad_crop_flip(x, gen)
            if pin:
                x, y = x.pin_memory(), y.pin_memory()
            yield norm(x), y.to(norm.device, non_blocking=True)


RESIDENT_SHARE = 0.25  # of the free GPU memory a data set may take to be kept there whole


def fits_on_device(images: Tensor, device: torch.device) -> bool:
    """Whether ``images`` take under :data:`RESIDENT_SHARE` of the free memory of a CUDA device."""
    free, _total = torch.cuda.mem_get_info(device)
    return images.numel() * images.element_size() < RESIDENT_SHARE * free


def check_batch_size(batch_size: int) -> None:
    """Reject a batch size below 1."""
    if batch_size < 1:
        raise DataError(f"batch size must be at least 1, got {batch_size}")


def check_shard(shard: tuple[int, int], augment: bool) -> tuple[int, int]:
    """Validate ``(rank, world)``; augmentation draws per batch, so it is never sharded."""
    rank, world = shard
    if world < 1 or not 0 <= rank < world:
        raise ValueError(f"shard {shard}: expected (rank, world) with 0 <= rank < world")
    if augment and world > 1:
        raise ValueError("augmented batches are drawn in sequence and cannot be sharded")
    return rank, world


def shard_batches(n: int, batch_size: int, order: Tensor | None, shard: tuple[int, int]) -> list[list[int]]:
    """Image indices of the batches ``j`` with ``j % world == rank``, in order."""
    rank, world = shard
    index = order if order is not None else torch.arange(n)
    return [index[s : s + batch_size].tolist() for s in range(rank * batch_size, n, world * batch_size)]


def check_labels(labels: Tensor, num_classes: int, where: str) -> None:
    """Reject labels outside [0, num_classes), naming the first few offenders."""
    bad = labels[(labels < 0) | (labels >= num_classes)]
    if bad.numel():
        values = ", ".join(str(v) for v in bad.unique()[:5].tolist())
        raise DataError(
            f"{where}: {bad.numel()} labels outside [0, {num_classes}) (e.g. {values}); "
            f"expected class indices below {num_classes}"
        )


class Normaliser:
    """uint8 batch → float32 on ``device``, resized to ``input_size`` if set, then (x − mean)/std."""

    def __init__(self, prep: Preprocessing, device: torch.device, channels: int = 3) -> None:
        if len(prep.mean) != channels or len(prep.std) != channels:
            raise DataError(
                f"preprocessing has {len(prep.mean)} means and {len(prep.std)} stds; "
                f"the images have {channels} channels"
            )
        self.device = device
        self.size = prep.input_size
        self.mean = torch.tensor(prep.mean, dtype=torch.float32, device=device).view(1, -1, 1, 1)
        self.std = torch.tensor(prep.std, dtype=torch.float32, device=device).view(1, -1, 1, 1)

    def __call__(self, x: Tensor) -> Tensor:
        # move as uint8: a quarter of the bytes of float32
        x = x.to(self.device, non_blocking=True).float().div_(255.0)
        if self.size and tuple(x.shape[-2:]) != (self.size, self.size):
            x = F.interpolate(
                x, size=(self.size, self.size), mode="bilinear", align_corners=False, antialias=True
            )
        return x.sub_(self.mean).div_(self.std)


def pad_crop_flip(x: Tensor, gen: torch.Generator, pad: int = CIFAR_PAD) -> Tensor:
    """He et al. augmentation on a uint8 batch: zero-pad ``pad``, random crop back, random h-flip."""
    b, c, h, w = x.shape
    # zero in pixel space (black), as torchvision's RandomCrop(32, padding=4) before Normalize
    padded = F.pad(x, (pad, pad, pad, pad))
    oy = torch.randint(0, 2 * pad + 1, (b,), generator=gen)
    ox = torch.randint(0, 2 * pad + 1, (b,), generator=gen)
    flip = torch.rand(b, generator=gen) < 0.5
    rows = oy[:, None] + torch.arange(h)
    cols_fwd = ox[:, None] + torch.arange(w)
    cols = torch.where(flip[:, None], cols_fwd.flip(1), cols_fwd)
    # one gather does crop and flip for the whole batch
    return padded[
        torch.arange(b)[:, None, None, None],
        torch.arange(c)[None, :, None, None],
        rows[:, None, :, None],
        cols[:, None, None, :],
    ]


def channel_stats(images: Tensor) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and std of uint8 (N, C, H, W) images on the [0, 1] scale, in float64."""
    x = images.double().div_(255.0).transpose(0, 1).reshape(images.shape[1], -1)
    return tuple(x.mean(1).tolist()), tuple(x.std(1).tolist())
