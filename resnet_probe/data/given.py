"""Data the user already holds: an ``(x, y)`` tensor pair, a ``Dataset``, a ``DataLoader`` or any re-iterable.

Such data is taken as given: already preprocessed (nothing is scaled, resized or normalised;
results.json and the report say so), in its own dtype, with targets of whatever kind the
metric reads. Items are ``(x, y)`` pairs or dicts (``inputs=`` and ``targets=`` name the keys).

Every configuration of a run must see the same examples in the same order, or the paired
tests compare different images: a loader that shuffles is refused, and every pass over an
iterable is checked against the first one (the targets of each batch, by digest).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from resnet_probe.data.preprocessing import Preprocessing
from resnet_probe.data.source import Batch, DataSource, check_batch_size, check_shard
from resnet_probe.errors import DataError

ACCEPTED = (
    "a data set name or path, an (x, y) pair of tensors, token ids (a LongTensor (sequences, tokens)), a torch "
    "Dataset, or a DataLoader / re-iterable yielding (x, y) pairs or dicts"
)
#: what results.json records as the preprocessing of data passed in
GIVEN = Preprocessing((), (), None, source="given")


@dataclass(frozen=True, eq=False, kw_only=True)
class GivenSource(DataSource):
    """Examples as the user passed them: ``kind`` is ``"tensors"``, ``"dataset"`` or ``"loader"``."""

    kind: str
    obj: Any = field(repr=False)
    length: int
    inputs: str | int = 0
    targets: str | int = 1
    digests: list[str] = field(default_factory=list, repr=False)  # per batch of the first pass (loaders)

    def __len__(self) -> int:
        return self.length

    def describe(self) -> dict[str, Any]:
        """The ``data`` block of results.json."""
        doc = super().describe() | {"given": self.kind, "preprocessed": True}
        if self.name == "tokens":
            ids = self.obj[0]
            doc |= {"tokens": int(ids.numel()), "seq_len": int(ids.shape[1])}
        return doc

    def batches(
        self,
        batch_size: int,
        preprocessing: Preprocessing | None = None,  # given data is already preprocessed
        device: str | torch.device = "cpu",
        augment: bool = False,
        shuffle: bool = False,
        seed: int = 0,
        workers: int | None = None,
        shard: tuple[int, int] = (0, 1),
    ) -> Iterator[Batch]:
        """Yield ``(x, y)`` on ``device``: tensors and data sets in ``batch_size`` pieces, a loader's own batches."""
        check_batch_size(batch_size)
        rank, world = check_shard(shard, augment)
        if augment:
            raise DataError("data passed in is taken as given: it cannot be augmented for training")
        dev = torch.device(device)
        if self.kind == "loader":
            if shuffle:
                raise DataError(
                    f"adaptive evaluation visits the examples in a seeded random order; {self.name} can only be "
                    "iterated as it is: pass an (x, y) pair or a Dataset, or drop --tolerance"
                )
            yield from self._loader_batches(dev, rank, world)
            return
        n = len(self)
        order = torch.randperm(n, generator=torch.Generator().manual_seed(seed)) if shuffle else torch.arange(n)
        for start in range(rank * batch_size, n, world * batch_size):
            idx = order[start : start + batch_size]
            if self.kind == "tensors":
                x, y = self.obj
                yield _to(x[idx], dev), _to(y[idx], dev)
            else:
                items = [self.obj[int(i)] for i in idx]
                x, y = _pair(torch.utils.data.default_collate(items), self.inputs, self.targets, self.name)
                yield _to(x, dev), _to(y, dev)

    def _loader_batches(self, dev: torch.device, rank: int, world: int) -> Iterator[Batch]:
        first = not self.digests
        seen = 0
        for j, item in enumerate(self.obj):
            x, y = _pair(item, self.inputs, self.targets, self.name)
            digest = _digest(y)
            if first:
                self.digests.append(digest)
            elif j >= len(self.digests) or self.digests[j] != digest:
                raise DataError(
                    f"{self.name} gave other examples (or another order) at batch {j} than on its first pass; "
                    "every configuration must see the same examples: do not shuffle, or pass an (x, y) pair"
                )
            seen = j + 1
            if j % world == rank:
                yield _to(x, dev), _to(y, dev)
        if not first and seen != len(self.digests):
            raise DataError(f"{self.name} gave {seen} batches, {len(self.digests)} on its first pass")


def given_source(obj: Any, *, inputs: str | int | None = None, targets: str | int | None = None) -> GivenSource:
    """``obj`` as a data source, or a :class:`DataError` naming its type and what is accepted.

    Example:
        >>> src = given_source((x, y))               # tensors, already normalised
        >>> src = given_source(DataLoader(ds, 64), inputs="pixel_values", targets="label")
    """
    keys_in, keys_t = inputs if inputs is not None else 0, targets if targets is not None else 1
    if isinstance(obj, Tensor) and obj.dim() == 2 and not obj.is_floating_point() and not obj.is_complex():
        # token ids (sequences, tokens) of a causal language model: each sequence is its own target
        return GivenSource(
            name="tokens", split="given", num_classes=0, classes=(), image_size=0, default_preprocessing=GIVEN,
            kind="tensors", obj=(obj, obj), length=int(obj.shape[0]),
        )
    if isinstance(obj, (tuple, list)) and len(obj) == 2 and all(isinstance(t, Tensor) for t in obj):
        x, y = obj
        if x.dim() == 0 or y.dim() == 0 or x.shape[0] != y.shape[0]:
            raise DataError(
                f"an (x, y) pair needs one target per example: x has shape {tuple(x.shape)}, y {tuple(y.shape)}"
            )
        return GivenSource(
            name="tensors", split="given", num_classes=_classes(y), classes=(), image_size=_side(x),
            default_preprocessing=GIVEN, kind="tensors", obj=(x, y), length=int(x.shape[0]),
        )
    if isinstance(obj, torch.utils.data.Dataset) and not isinstance(obj, torch.utils.data.IterableDataset):
        if not hasattr(obj, "__len__"):
            raise DataError(f"{type(obj).__name__} has no len(); pass a DataLoader over it instead")
        n = len(obj)  # type: ignore[arg-type]
        if n < 1:
            raise DataError(f"{type(obj).__name__} is empty")
        name = type(obj).__name__
        x, y = _pair(torch.utils.data.default_collate([obj[0]]), keys_in, keys_t, name)
        return GivenSource(
            name=name, split="given", num_classes=0, classes=(), image_size=_side(x),
            default_preprocessing=GIVEN, kind="dataset", obj=obj, length=n, inputs=keys_in, targets=keys_t,
        )
    if isinstance(obj, torch.utils.data.DataLoader):
        _refuse_shuffling(obj)
    if isinstance(obj, Iterable) and not isinstance(obj, (str, bytes, Tensor, Mapping)):
        if iter(obj) is obj:
            raise DataError(
                f"a {type(obj).__name__} can be read only once and a study reads its data many times; "
                "pass a list, a DataLoader or a Dataset"
            )
        name = type(obj).__name__
        source = GivenSource(
            name=name, split="given", num_classes=0, classes=(), image_size=0, default_preprocessing=GIVEN,
            kind="loader", obj=obj, length=0, inputs=keys_in, targets=keys_t,
        )
        count = sum(_length(y) for _, y in source.batches(1))  # the first pass records the digests
        if count < 1:
            raise DataError(f"{name} yields no examples")
        object.__setattr__(source, "length", count)
        return source
    raise DataError(f"cannot read data from a {type(obj).__name__}; expected {ACCEPTED}")


def _refuse_shuffling(loader: torch.utils.data.DataLoader) -> None:
    if isinstance(loader.sampler, torch.utils.data.RandomSampler):
        raise DataError(
            "the DataLoader shuffles (shuffle=True): every configuration must see the same examples in the "
            "same order for the paired tests; pass shuffle=False"
        )


def _pair(item: Any, inputs: str | int, targets: str | int, where: str) -> tuple[Any, Any]:
    """``(x, y)`` out of one item: a pair, or a dict read at the two keys."""
    if isinstance(item, Mapping):
        missing = [k for k in (inputs, targets) if k not in item]
        if isinstance(inputs, int) and isinstance(targets, int):
            keys = ", ".join(map(repr, list(item)[:6]))
            raise DataError(f"{where} yields dicts (keys {keys}); name the two with inputs= and targets=")
        if missing:
            keys = ", ".join(map(repr, list(item)[:6]))
            raise DataError(f"{where} yields dicts without {missing[0]!r} (keys {keys}); set inputs= and targets=")
        return item[inputs], item[targets]
    if isinstance(item, (tuple, list)) and len(item) >= 2 and isinstance(inputs, int) and isinstance(targets, int):
        return item[inputs], item[targets]
    shown = f"a {type(item).__name__}" + (f" of {len(item)}" if isinstance(item, (tuple, list)) else "")
    raise DataError(f"{where} yields {shown}; expected (x, y) pairs or dicts (with inputs=/targets=)")


def _to(value: Any, device: torch.device) -> Any:
    return value.to(device, non_blocking=True) if isinstance(value, Tensor) else value


def _length(y: Any) -> int:
    if isinstance(y, Tensor):
        return int(y.shape[0]) if y.dim() else 1
    try:
        return len(y)
    except TypeError:
        raise DataError(f"targets of type {type(y).__name__} have no length; expected a tensor per batch") from None


def _digest(y: Any) -> str:
    if isinstance(y, Tensor):
        t = y.detach().cpu().contiguous()
        return hashlib.sha1(t.numpy().tobytes() + str(t.dtype).encode() + str(tuple(t.shape)).encode()).hexdigest()
    return hashlib.sha1(repr(y).encode()).hexdigest()


def _classes(y: Tensor) -> int:
    """Classes the targets show (max + 1) when they are class indices; 0 when they are not."""
    if y.dtype in (torch.int64, torch.int32, torch.int16, torch.uint8) and y.dim() == 1 and y.numel():
        return int(y.max()) + 1 if int(y.min()) >= 0 else 0
    return 0


def _side(x: Any) -> int:
    return int(x.shape[-1]) if isinstance(x, Tensor) and x.dim() == 4 and x.shape[-1] == x.shape[-2] else 0
