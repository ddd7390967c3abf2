"""The one place that runs residual units.

A run takes the topology, a batch and a :class:`Plan` (deleted units, unit order); several
plans run together share the computation of their common prefix, so a single-delete sweep
costs about (n+1)/2 full passes instead of n while memory stays O(batch). Path-gradient
routes and response captures are arguments of a run too; nothing is monkey-patched and no
hook outlives a call.
"""

from __future__ import annotations

import contextlib
import copy
from dataclasses import dataclass
from typing import Callable, Iterator, Sequence, TypeVar

import torch
from torch import Tensor, nn

from .errors import DeviceError, PlanError
from .topology import Topology

T = TypeVar("T")
Step = tuple[int, bool]  # (unit index, deleted)

PRECISIONS: dict[str, torch.dtype | None] = {
    "fp32": None,
    "bf16": torch.bfloat16,
    "fp16": torch.float16,
}


@dataclass(frozen=True)
class Plan:
    """Which units are deleted and in which order the units run (None: original order)."""

    deleted: frozenset[int] = frozenset()
    order: tuple[int, ...] | None = None

    @classmethod
    def delete(cls, *indices: int) -> Plan:
        """A plan deleting the given units."""
        return cls(deleted=frozenset(indices))

    def steps(self, n_units: int) -> tuple[Step, ...]:
        """The plan as a sequence of (unit index, deleted) per position."""
        order = self.order if self.order is not None else tuple(range(n_units))
        return tuple((u, u in self.deleted) for u in order)


def resolve_device(name: str = "auto") -> torch.device:
    """``auto`` picks CUDA when present; asking for CUDA without it is a user error."""
    name = name.lower()
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise DeviceError(f"--device {name}: CUDA is not available here; use --device cpu or auto")
        return torch.device(name)
    if name == "cpu":
        return torch.device("cpu")
    raise DeviceError(f"unknown device {name!r}; valid: auto, cpu, cuda, cuda:N")


def validate_plan(plan: Plan, topology: Topology) -> None:
    """Raise PlanError when a plan does not fit the topology."""
    n = topology.n_units
    bad = sorted(i for i in plan.deleted if not 0 <= i < n)
    if bad:
        raise PlanError(f"unit index {bad[0]} out of range; this model has units 0..{n - 1}")
    for i in sorted(plan.deleted):
        if not topology.units[i].deletable:
            unit = topology.units[i]
            raise PlanError(
                f"unit {i} ({unit.name}) is a plain unit that changes shape and cannot be deleted"
            )
    if plan.order is not None:
        if sorted(plan.order) != list(range(n)):
            raise PlanError(f"unit order must be a permutation of 0..{n - 1}")
        for pos, u in enumerate(plan.order):
            a, b = topology.units[pos], topology.units[u]
            if (a.in_channels, a.out_channels, a.stride) != (b.in_channels, b.out_channels, b.stride):
                raise PlanError(f"unit {b.name} cannot run at position {pos}: shapes differ")


@contextlib.contextmanager
def eval_mode(model: nn.Module) -> Iterator[None]:
    """Eval mode for the duration, every module's own ``training`` flag restored after."""
    flags = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        yield
    finally:
        for m, flag in flags:
            m.training = flag


@contextlib.contextmanager
def capture_outputs(
    modules: Sequence[tuple[str, nn.Module]], sink: Callable[[str, Tensor], None]
) -> Iterator[None]:
    """Forward hooks that pass each module's output to ``sink``; removed in ``finally``."""
    handles = []
    try:
        for name, module in modules:
            handles.append(module.register_forward_hook(_hook(name, sink)))
        yield
    finally:
        for h in handles:
            h.remove()


def _hook(name: str, sink: Callable[[str, Tensor], None]) -> Callable[..., None]:
    def hook(_module: nn.Module, _inputs: object, output: Tensor) -> None:
        sink(name, output)

    return hook


def _model_device(model: nn.Module) -> torch.device | None:
    for p in model.parameters():
        return p.device
    return None


class Executor:
    """Runs a topology under plans, routes and captures.

    Example:
        >>> ex = Executor(loaded.topology)
        >>> logits = ex.run_plans(x, [Plan(), Plan.delete(3)], reduce=lambda z: z)
    """

    def __init__(
        self, topology: Topology, device: str | torch.device = "cpu", precision: str = "fp32"
    ) -> None:
        self.device = device if isinstance(device, torch.device) else resolve_device(device)
        if precision not in PRECISIONS:
            raise PlanError(f"unknown precision {precision!r}; valid: {', '.join(PRECISIONS)}")
        self.precision = precision
        current = _model_device(topology.model)
        if current is not None and current.type != self.device.type:
            # Moving would mutate the caller's model: run a private copy instead.
            from .adapters import build_topology

            topology = build_topology(copy.deepcopy(topology.model).to(self.device))
        self.topology = topology

    @property
    def n_units(self) -> int:
        """Number of residual units."""
        return self.topology.n_units

    @contextlib.contextmanager
    def _autocast(self) -> Iterator[None]:
        dtype = PRECISIONS[self.precision]
        if dtype is None:
            yield
        else:
            with torch.autocast(device_type=self.device.type, dtype=dtype):
                yield

    def _step(self, h: Tensor, pos: int, unit_index: int, deleted: bool) -> Tensor:
        transition = self.topology.transitions.get(pos)
        if transition is not None:
            h = transition(h)
        unit = self.topology.units[unit_index]
        return unit.forward_deleted(h) if deleted else unit.forward(h)

    def forward(self, x: Tensor, plan: Plan | None = None) -> Tensor:
        """Logits of one plan (no grad)."""
        return self.run_plans(x, [plan or Plan()], reduce=lambda z: z)[0]

    def run_plans(self, x: Tensor, plans: Sequence[Plan], reduce: Callable[[Tensor], T]) -> list[T]:
        """``reduce(logits)`` of every plan on one batch, sharing common prefixes.

        Depth-first over the prefix trie with an explicit stack: a branch is computed only
        when it is popped, so at most one activation per open branch point is alive.
        """
        n = self.n_units
        for plan in plans:
            validate_plan(plan, self.topology)
        all_steps = [p.steps(n) for p in plans]
        results: list[T | None] = [None] * len(plans)
        with eval_mode(self.topology.model), torch.inference_mode(), self._autocast():
            stem = self.topology.stem(x.to(self.device, non_blocking=True))
            stack: list[tuple[Tensor, int, list[int]]] = [(stem, 0, list(range(len(plans))))]
            while stack:
                h, pos, ids = stack.pop()
                while pos < n:
                    groups: dict[Step, list[int]] = {}
                    for i in ids:
                        groups.setdefault(all_steps[i][pos], []).append(i)
                    if len(groups) > 1:
                        # Depth first: the largest group (the spine) waits on the stack with
                        # this activation; the others are pushed above it and the smallest
                        # runs now, so at most one activation per open branch point is alive.
                        ordered = sorted(groups.values(), key=len, reverse=True)
                        for group in ordered[:-1]:
                            stack.append((h, pos, group))
                        ids = ordered[-1]
                    step = all_steps[ids[0]][pos]
                    h = self._step(h, pos, *step)
                    pos += 1
                value = reduce(self.topology.head(h))
                for i in ids:
                    results[i] = value
        return results  # type: ignore[return-value]

    def forward_routed(self, x: Tensor, routes: Tensor) -> Tensor:
        """Logits whose backward pass follows one path per sample (Veit et al. Sec. 4.2).

        ``routes`` is a (batch, n_units) 0/1 tensor: 1 lets sample b's gradient through the
        residual branch of unit i only, 0 through its shortcut only. ``detach`` does not
        change forward values, so the logits equal the unchanged model's; only the backward
        pass is routed. Needs eval-mode BN so that samples stay independent.
        """
        if routes.shape != (x.shape[0], self.n_units):
            raise PlanError(f"routes must have shape (batch, {self.n_units}), got {tuple(routes.shape)}")
        h = self.topology.stem(x)
        for pos, unit in enumerate(self.topology.units):
            transition = self.topology.transitions.get(pos)
            if transition is not None:
                h = transition(h)
            f = unit.residual(h)
            if unit.shortcut is None:
                h = unit.post(f)
                continue
            s = unit.shortcut(h)
            a = routes[:, pos].to(f.dtype).reshape(-1, *([1] * (f.dim() - 1)))
            h = unit.post(a * f + (1 - a) * f.detach() + (1 - a) * s + a * s.detach())
        return self.topology.head(h)

    def routed_input_grad_norms(self, x: Tensor, y: Tensor, routes: Tensor) -> Tensor:
        """L2 norm of each sample's input gradient of its own cross-entropy, routed."""
        with eval_mode(self.topology.model), torch.enable_grad(), self._autocast():
            x = x.to(self.device).detach().requires_grad_(True)
            logits = self.forward_routed(x, routes.to(self.device))
            # Summed per-sample losses: each sample's input gradient is its own.
            loss = nn.functional.cross_entropy(logits.float(), y.to(self.device), reduction="sum")
            (grad,) = torch.autograd.grad(loss, x)
        return grad.flatten(1).float().norm(dim=1)

    def response_modules(self) -> list[tuple[str, nn.Module]]:
        """Every unit's response layers, in network order."""
        return [pair for unit in self.topology.units for pair in unit.responses]

    def capture(self, x: Tensor, sink: Callable[[str, Tensor], None], plan: Plan | None = None) -> Tensor:
        """Run one plan and hand every response layer's output to ``sink``; returns logits."""
        with capture_outputs(self.response_modules(), sink):
            return self.forward(x, plan)
