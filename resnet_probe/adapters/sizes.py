"""Sizes a part reads from tensors it never sees (a patch grid's H and W), per input resolution.

Token models such as PVT, Twins or CoaT read ``H, W`` from a feature map once and use them
blocks later, after the map became a sequence of tokens: no single tensor between two of their
residual additions carries them. A part that needs such a size asks this table, which the stem
fills: the first time an input of a new resolution arrives, the traced graph is run on zeros
of that resolution with batch 1 and batch 2, and each size is kept as its two values (constant,
or growing with the batch). A part then reads its size for its own batch, so stacked
configurations (a batch of several plans at once) read their sizes right too.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, fx, nn

from resnet_probe.errors import AdapterError


class SizeTable(nn.Module):
    """Values of size reads, measured per input resolution; called by parts as ``sizes(name, input, x)``."""

    def __init__(self, gm: fx.GraphModule, needed: set[fx.Node]) -> None:
        super().__init__()
        self._gm = [gm]  # in a list: not a submodule (its parameters are the model's)
        self._needed = needed
        self.watched: dict[str, fx.Node] = {}
        self._cache: dict[tuple[Any, ...], dict[str, tuple[Any, Any]]] = {}
        self._current: dict[str, tuple[Any, Any]] | None = None

    def watch(self, node: fx.Node) -> str:
        """Measure ``node`` from now on; its name is the key parts ask for."""
        self.watched[node.name] = node
        return node.name

    def observe(self, x: Tensor) -> None:
        """The model input of the next forward: measure its resolution once."""
        key = (tuple(x.shape[1:]), x.dtype, x.device)
        if key not in self._cache:
            self._cache[key] = self._measure(x)
        self._current = self._cache[key]

    def _measure(self, x: Tensor) -> dict[str, tuple[Any, Any]]:
        gm = self._gm[0]
        runs = []
        flags = [(m, m.training) for m in gm.modules()]
        gm.eval()  # never update BN statistics with a probe
        try:
            with torch.no_grad():
                for batch in (1, 2):
                    recorder = _Recorder(gm, self._needed, set(self.watched.values()))
                    recorder.run(x.new_zeros((batch, *x.shape[1:])))
                    runs.append(recorder.seen)
        finally:
            for m, flag in flags:
                m.training = flag
        return {name: (runs[0][node], runs[1][node]) for name, node in self.watched.items()}

    def forward(self, name: str, inp: str, x: Tensor) -> Any:
        if self._current is None:
            raise AdapterError("a unit read by tracing needs sizes that the stem measures: run the stem first")
        v1, v2 = self._current[name]
        d1, d2 = self._current[inp]
        n = x.shape[0]
        if v1 == v2:
            return v1
        if d2 != 2 * d1 or n % d1:
            raise AdapterError(f"size {name} grows with the batch, but the input of this part does not")
        return _scaled(v1, v2, n // d1)


def _scaled(v1: Any, v2: Any, k: int) -> Any:
    """The value at ``k`` times batch 1, for values linear in the batch size."""
    if isinstance(v1, (tuple, list)):
        out = [_scaled(a, b, k) for a, b in zip(v1, v2, strict=True)]
        return torch.Size(out) if isinstance(v1, torch.Size) else type(v1)(out)
    if isinstance(v1, int) and isinstance(v2, int):
        return v1 + (v2 - v1) * (k - 1)
    raise AdapterError(f"a size that changes with the batch is not a whole number: {v1!r}, {v2!r}")


class _Recorder(fx.Interpreter):
    """Runs the live nodes of a traced graph and keeps the values of the watched ones."""

    def __init__(self, gm: fx.GraphModule, needed: set[fx.Node], watched: set[fx.Node]) -> None:
        super().__init__(gm, garbage_collect_values=True)
        self.needed, self.watched = needed, watched
        self.seen: dict[fx.Node, Any] = {}

    def run_node(self, n: fx.Node) -> Any:
        if n not in self.needed:
            return None
        value = super().run_node(n)
        if n in self.watched:
            self.seen[n] = _shape_of(value)
        return value


def _shape_of(value: Any) -> Any:
    """A part-input tensor is kept as its batch size; sizes as they are."""
    return int(value.shape[0]) if isinstance(value, Tensor) else value


class Observing(nn.Module):
    """The stem: tells the table each input's resolution, then runs."""

    def __init__(self, stem: Any, table: SizeTable) -> None:
        super().__init__()
        self.stem, self.table = stem, table

    def forward(self, x: Tensor) -> Tensor:
        self.table.observe(x)
        out: Tensor = self.stem(x)
        return out
