"""Scale out on torch.distributed: shard work by rank, gather to every rank in a fixed order.

Under ``torchrun`` every rank runs the same command. Work items (data batches, sampled
configurations) are numbered the same way on every rank; rank r takes the items with
``index % world == r``; the per-item results are gathered and put back in index order, so
every reduction runs in exactly the single-process order and the JSON is identical.
Without ``torchrun`` (no ``WORLD_SIZE`` in the environment) this is a no-op.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any, Iterator, TypeVar

import torch
import torch.distributed as dist

if TYPE_CHECKING:
    from resnet_probe.data.source import Batch, DataSource

T = TypeVar("T")


def init_from_env() -> bool:
    """Join the process group torchrun describes (gloo on CPU, nccl on CUDA); False if none."""
    if dist.is_available() and dist.is_initialized():
        return True
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1 or not dist.is_available():
        return False
    backend = "nccl" if torch.cuda.is_available() else "gloo"
    if backend == "nccl":
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    dist.init_process_group(backend=backend)
    return True


def world() -> int:
    """Number of ranks (1 without torch.distributed)."""
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def rank() -> int:
    """This process' rank (0 without torch.distributed)."""
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def is_main() -> bool:
    """Whether this rank writes reports and prints results."""
    return rank() == 0


def local_device_index() -> int:
    """The GPU index torchrun assigned to this rank."""
    return int(os.environ.get("LOCAL_RANK", "0"))


def my_batches(data: DataSource, batch_size: int, **kwargs: Any) -> Iterator[tuple[int, Batch]]:
    """``(index, batch)`` for this rank's batches of ``data``; the others are never loaded."""
    w, r = world(), rank()
    for j, batch in enumerate(data.batches(batch_size, shard=(r, w), **kwargs)):
        yield r + j * w, batch


def gather_ordered(local: list[tuple[int, T]]) -> list[T]:
    """Every rank's ``(index, value)`` pairs merged and sorted by index, on every rank."""
    if world() == 1:
        return [v for _, v in sorted(local, key=lambda iv: iv[0])]
    parts: list[list[tuple[int, T]] | None] = [None] * world()
    dist.all_gather_object(parts, local)
    merged = [pair for part in parts if part for pair in part]
    return [v for _, v in sorted(merged, key=lambda iv: iv[0])]


def barrier() -> None:
    """Wait for every rank (no-op alone)."""
    if world() > 1:
        dist.barrier()
