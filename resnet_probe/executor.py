"""The one place that runs residual units.

A run takes the topology, a batch and a :class:`Plan` (deleted units, unit order); several
plans run together share the computation of their common prefix, so a single-delete sweep
costs about (n+1)/2 full passes instead of n while memory stays O(batch). Path-gradient
routes and response captures are arguments of a run too; nothing is monkey-patched and no
hook outlives a call.

Speed options, all off on the CPU by default and none changing what is computed:

- ``stack``: sibling branches of the prefix trie that run the same step are concatenated
  along the batch and run as one call (on a GPU a CIFAR-sized net leaves the device mostly
  idle at one batch per call). Per-plan results equal the unstacked ones up to the
  convolution's own batch-size-dependent rounding (bit-identical on the CPU in our tests).
- ``channels_last``: model copy and inputs in NHWC, the layout tensor cores want. It pays on
  this project's 2-core Xeon as well (oneDNN; a ResNet-56 forward of 256 CIFAR images,
  measured in issue #17: 0.70 s NCHW against 0.59 s NHWC in fp32), but it runs a private copy, so hooks on the
  caller's modules see nothing and logits move by float rounding (~1e-5). The Python API asks
  for it with ``channels_last=True`` (only CUDA turns it on by itself); the CLI's runner, which
  owns its model, runs NHWC with BatchNorm folded into the convolutions by default
  (:func:`resnet_probe.runner.make_executor`).
- ``compile``: ``torch.compile`` of every unit's residual branch.
- ``precision``: autocast to bf16 or fp16, never chosen by the executor itself. Documented
  tolerance of bf16 against fp32 (tests/test_executor_speed_features.py): logits within 0.5 in
  absolute value, accuracy within 1 percentage point; measured on the CPU with the trained
  ResNet-20 and the 846 shipped images: 0.32 at most (logits up to 40), 2 predictions flip, 778
  correct against 776. On CPUs with AVX512-BF16 / AMX (this project's machines) bf16
  convolutions are native and fast: a ResNet-56 forward of 256 images takes 0.39 s NCHW,
  0.26 s NHWC, against 0.70 / 0.59 s in fp32 (issue #17); the single-delete sweep of the shipped ResNet-56
  on 846 images moves no count by more than 4 images (0.5 points). On CPUs without them bf16
  is emulated and slow: measure before you choose it.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
from dataclasses import dataclass
from typing import Callable, Iterator, Sequence, TypeVar

import torch
from torch import Tensor, nn

from resnet_probe.errors import DeviceError, PlanError
from resnet_probe.structure import Topology

T = TypeVar("T")
Step = tuple[int, bool]  # (unit index, deleted)

PRECISIONS: dict[str, torch.dtype | None] = {
    "fp32": None,
    "bf16": torch.bfloat16,
    "fp16": torch.float16,
}
# Input elements per stacked call when ``stack`` is automatic on CUDA: about 5,500 CIFAR
# images, enough to fill an H100 with a ResNet-110 while ImageNet-sized batches stay unstacked.
STACK_ELEMENTS = 1 << 24


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
        self,
        topology: Topology,
        device: str | torch.device = "cpu",
        precision: str = "fp32",
        *,
        stack: int | None = None,
        channels_last: bool | None = None,
        compile: bool | str = False,
    ) -> None:
        self.device = device if isinstance(device, torch.device) else resolve_device(device)
        if precision not in PRECISIONS:
            raise PlanError(f"unknown precision {precision!r}; valid: {', '.join(PRECISIONS)}")
        self.precision = precision
        if stack is not None and (isinstance(stack, bool) or not isinstance(stack, int) or stack < 1):
            raise PlanError(f"stack {stack!r}: must be a whole number of configurations >= 1 (1: off) or None (auto)")
        self.stack = stack
        self.channels_last = self.device.type == "cuda" if channels_last is None else bool(channels_last)
        current = _model_device(topology.model)
        moves = current is not None and current.type != self.device.type
        if moves or (self.channels_last and not _is_channels_last(topology.model)):
            # Moving or re-laying out would mutate the caller's model: run a private copy instead.
            model = copy.deepcopy(topology.model).to(self.device)
            if self.channels_last:
                model = model.to(memory_format=torch.channels_last)
            topology = topology.rebind(model)
        self.compile_backend = _compile_backend(compile)
        if self.compile_backend is not None:
            topology = _compiled(topology, self.compile_backend)
        self.topology = topology

    def stack_width(self, x: Tensor) -> int:
        """How many branches one stacked call may hold for this batch (1: no stacking)."""
        if self.stack is not None:
            return self.stack
        if self.device.type != "cuda":
            return 1
        return max(1, STACK_ELEMENTS // max(1, x.numel()))

    def _input(self, x: Tensor) -> Tensor:
        x = x.to(self.device, non_blocking=True)
        if self.channels_last and x.dim() == 4:
            x = x.contiguous(memory_format=torch.channels_last)
        return x

    @contextlib.contextmanager
    def _compile_limits(self) -> Iterator[None]:
        if self.compile_backend is None:
            yield
            return
        import torch._dynamo

        # Every unit of an adapter shares one residual function, so dynamo counts each unit
        # shape, grad mode and batch size as a recompile of that one frame; the default limit
        # of 8 would silently send the later units back to eager.
        with torch._dynamo.config.patch(recompile_limit=max(64, 8 * self.n_units)):
            yield

    @property
    def n_units(self) -> int:
        """Number of residual units."""
        return self.topology.n_units

    @contextlib.contextmanager
    def _autocast(self) -> Iterator[None]:
        dtype = PRECISIONS[self.precision]
        with self._compile_limits():
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

        Depth-first over the prefix trie with an explicit stack of *bundles*: branches at the
        same position, at most :meth:`stack_width` of them, each step run once over the
        concatenation of the branches that take it. With width 1 (the CPU default) a bundle is
        one branch and at most one activation per open branch point is alive.
        """
        n = self.n_units
        for plan in plans:
            validate_plan(plan, self.topology)
        all_steps = [p.steps(n) for p in plans]
        results: list[T | None] = [None] * len(plans)
        width = self.stack_width(x)
        with eval_mode(self.topology.model), torch.inference_mode(), self._autocast():
            stem = self.topology.stem(self._input(x))
            stack: list[tuple[int, list[tuple[Tensor, list[int]]]]] = [(0, [(stem, list(range(len(plans))))])]
            while stack:
                pos, bundle = stack.pop()
                while pos < n:
                    tasks = [
                        (h, step, ids)
                        for h, group in bundle
                        for step, ids in _group_by_step(group, all_steps, pos).items()
                    ]
                    if len(tasks) > width:
                        # The smallest groups run now; the largest (the spine) waits on the stack
                        # with activations that exist already, so waiting costs no memory.
                        tasks.sort(key=lambda t: len(t[2]))
                        stack.append((pos, [(h, ids) for h, _, ids in tasks[width:]]))
                        tasks = tasks[:width]
                    bundle = self._stacked_step(pos, tasks)
                    pos += 1
                heads = _stacked(self.topology.head, [h for h, _ in bundle])
                for (_, ids), logits in zip(bundle, heads, strict=True):
                    value = reduce(logits)
                    for i in ids:
                        results[i] = value
        return results  # type: ignore[return-value]

    def _stacked_step(
        self, pos: int, tasks: list[tuple[Tensor, Step, list[int]]]
    ) -> list[tuple[Tensor, list[int]]]:
        """Run each task's step, one call per distinct step over the tasks that share it."""
        by_step: dict[Step, list[int]] = {}
        for t, (_, step, _) in enumerate(tasks):
            by_step.setdefault(step, []).append(t)
        out: list[tuple[Tensor, list[int]] | None] = [None] * len(tasks)
        for step, members in by_step.items():

            def run_step(h: Tensor, step: Step = step) -> Tensor:
                return self._step(h, pos, *step)

            outputs = _stacked(run_step, [tasks[t][0] for t in members])
            for t, h in zip(members, outputs, strict=True):
                out[t] = (h, tasks[t][2])
        return out  # type: ignore[return-value]

    def forward_routed(self, x: Tensor, routes: Tensor) -> Tensor:
        """Logits whose backward pass follows one path per sample (Veit et al. Sec. 4.2).

        ``routes`` is a (batch, n_units) 0/1 tensor: 1 lets sample b's gradient through the
        residual branch of unit i only, 0 through its shortcut only. ``detach`` does not
        change forward values, so the logits equal the unchanged model's; only the backward
        pass is routed. Needs eval-mode BN so that samples stay independent. The routed terms
        meet in the unit's own merge, so a concatenating unit (a DenseNet layer) routes too: its
        passed-on features carry the gradient on route 0, its new features on route 1. A unit
        with its own wiring (an OSA module, whose paths pass 0..L convs) has no such pair: a
        PlanError says so before anything runs.
        """
        if routes.shape != (x.shape[0], self.n_units):
            raise PlanError(f"routes must have shape (batch, {self.n_units}), got {tuple(routes.shape)}")
        wired = next((u for u in self.topology.units if u.wiring), None)
        if wired is not None:
            longest = sum(e.length for e in wired.wiring)
            raise PlanError(
                f"path gradients cannot route through {wired.name} ({self.topology.family}): a route takes each "
                f"unit's shortcut or its residual branch, and this unit's paths pass 0 to {longest} residual "
                "layers of one chain, so a route's path length is undefined"
            )
        h = self.topology.stem(self._input(x))
        for pos, unit in enumerate(self.topology.units):
            transition = self.topology.transitions.get(pos)
            if transition is not None:
                h = transition(h)
            f = unit.residual(h)
            if unit.shortcut is None:
                h = unit.merge(None, f)
                continue
            s = unit.shortcut(h)
            a = routes[:, pos].to(f.dtype).reshape(-1, *([1] * (f.dim() - 1)))
            h = unit.merge((1 - a) * s + a * s.detach(), a * f + (1 - a) * f.detach())
        return self.topology.head(h)

    def routed_input_grad_norms(self, x: Tensor, y: Tensor, routes: Tensor) -> Tensor:
        """L2 norm of each sample's input gradient of its own cross-entropy, routed."""
        with eval_mode(self.topology.model), torch.enable_grad(), self._autocast():
            x = self._input(x).detach().requires_grad_(True)
            logits = self.forward_routed(x, routes.to(self.device))
            # Summed per-sample losses: each sample's input gradient is its own.
            loss = nn.functional.cross_entropy(logits.float(), y.to(self.device), reduction="sum")
            (grad,) = torch.autograd.grad(loss, x)
        return grad.flatten(1).float().norm(dim=1)

    def response_modules(self) -> list[tuple[str, nn.Module]]:
        """The stem's and every unit's response layers, in network order."""
        units = [pair for unit in self.topology.units for pair in unit.responses]
        return [*self.topology.stem_responses, *units]

    def capture(self, x: Tensor, sink: Callable[[str, Tensor], None], plan: Plan | None = None) -> Tensor:
        """Run one plan and hand every response layer's output to ``sink``; returns logits."""
        with capture_outputs(self.response_modules(), sink):
            return self.forward(x, plan)


def _group_by_step(ids: list[int], all_steps: list[tuple[Step, ...]], pos: int) -> dict[Step, list[int]]:
    """The plans of one branch split by the step they take at ``pos``, in first-seen order."""
    groups: dict[Step, list[int]] = {}
    for i in ids:
        groups.setdefault(all_steps[i][pos], []).append(i)
    return groups


def _stacked(fn: Callable[[Tensor], Tensor], inputs: list[Tensor]) -> list[Tensor]:
    """``[fn(h) for h in inputs]`` as one call on their concatenation along the batch."""
    if len(inputs) == 1:
        return [fn(inputs[0])]
    sizes = [int(h.shape[0]) for h in inputs]
    return list(fn(torch.cat(inputs)).split(sizes))


def _is_channels_last(model: nn.Module) -> bool:
    """Whether every 4-d parameter is already NHWC (then no copy is needed)."""
    return all(p.is_contiguous(memory_format=torch.channels_last) for p in model.parameters() if p.dim() == 4)


def _compile_backend(option: bool | str) -> str | None:
    """``compile=True`` is inductor; a string names a torch.compile backend; False is off."""
    if option is False or option is None:
        return None
    if option is True:
        return "inductor"
    if isinstance(option, str) and option:
        import torch._dynamo

        valid = torch._dynamo.list_backends(exclude_tags=())
        if option not in valid:
            raise PlanError(f"unknown compile backend {option!r}; valid: {', '.join(sorted(valid))}")
        return option
    raise PlanError(f"compile {option!r}: must be True, False or a torch.compile backend name")


def _compiled(topology: Topology, backend: str) -> Topology:
    """The topology with every residual branch (the units' whole cost) under torch.compile."""
    units = tuple(
        dataclasses.replace(u, residual=torch.compile(u.residual, backend=backend)) for u in topology.units
    )
    return dataclasses.replace(topology, units=units)
