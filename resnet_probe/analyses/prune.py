"""Depth pruning: choose residual units to remove on a calibration split, remove them for real, report on the rest.

The run's data is split once, by a permutation seeded with the run's seed, into a calibration
part (where the units are chosen) and a disjoint evaluation part (where the pruned model is
judged), so the accuracy reported is not the one the choice was tuned on. Three ways to choose
``remove`` units among those that keep the shape (not downsampling, same channels, stride 1):

* ``greedy`` (SLEB's search, Song et al. 2024): ``remove`` rounds; each round scores every
  remaining candidate added to the units already chosen (one :func:`score_plans` call, so the
  executor shares prefixes) and keeps the one that hurts least;
* ``lesion``: every single deletion scored once, the ``remove`` cheapest taken together;
* ``last``: the last ``remove`` candidates in network order (no data needed to choose).

The chosen units are then removed structurally from a deep copy of the model (their modules
taken out of the parent ``nn.Sequential``), so parameters, FLOPs and time really fall. Deleting
a unit in the executor keeps ``merge(shortcut(x), 0)``; for a post-activation unit that is
``relu(x)``, which a removed block does not apply. The copy's outputs are compared with the
masked ones on one batch and both accuracies are measured, so a difference is reported, not hidden.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import statistics
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Sequence

import numpy as np
import torch
from torch import Tensor, nn

if TYPE_CHECKING:
    import pandas as pd

from resnet_probe.analyses.base import METRIC, Analysis, Option, RunContext
from resnet_probe.data import DataSource
from resnet_probe.data.given import GivenSource
from resnet_probe.data.source import TensorSource
from resnet_probe.errors import PlanError
from resnet_probe.executor import Executor, Plan
from resnet_probe.metrics import LOSS, Metric, MetricLike, concrete_name, resolve_metric
from resnet_probe.results import Result
from resnet_probe.scoring import Score, interval, paired_tests, score_plans
from resnet_probe.structure import Topology, Unit, identity

METHODS = ("greedy", "lesion", "last")
LATENCY_REPEATS = 7
MATCH_ATOL = 1e-4
_HOOK_DICTS = (
    "_forward_hooks", "_forward_pre_hooks", "_forward_hooks_with_kwargs", "_forward_hooks_always_called",
    "_forward_pre_hooks_with_kwargs", "_backward_hooks", "_backward_pre_hooks",
)


@dataclass(frozen=True)
class Candidate:
    """One candidate scored in a round on the calibration split: the metric's value and mean cross-entropy."""

    unit: int
    value: float
    loss: float


@dataclass(frozen=True)
class PruneStep:
    """The ``k``-th chosen unit and the calibration score of the first ``k`` chosen units deleted together.

    ``candidates``: what the round that chose it scored (greedy: every remaining candidate with the
    units chosen before; lesion: every single deletion, on step 1 only; last: none).
    """

    k: int
    unit: int
    name: str
    value: float
    accuracy: float
    loss: float
    candidates: tuple[Candidate, ...] = ()


@dataclass(frozen=True)
class Evaluation:
    """One model on the evaluation split: accuracy with its interval, and its paired test against the unpruned one."""

    model: str  # "unpruned", "masked" (executor deletion) or "removed" (the structural copy)
    accuracy: float
    correct: int
    n: int
    loss: float
    value: float
    ci: tuple[float, float] = (0.0, 1.0)
    lost: int = 0
    gained: int = 0
    p_value: float = 1.0
    significant: bool = False


@dataclass(frozen=True)
class ModelCost:
    """Parameters, FLOPs of one forward of one example, and the median wall-clock time of a batch-1 forward."""

    params: int
    flops: int
    latency_ms: float


@dataclass(frozen=True)
class PruneResult(Result):
    """Which units were chosen and how, the pruned model's accuracy on held-out data, and what it costs to run."""

    analysis: ClassVar[str] = "prune"
    method: str
    remove: int
    chosen: tuple[int, ...]
    names: tuple[str, ...]
    candidates: tuple[int, ...]
    calibration_n: int
    evaluation_n: int
    seed: int
    split_sha256: str  # of the calibration indices, in order (resnet_probe.analyses.prune.split_indices)
    calibration_base: float  # the metric's value of the unpruned model on the calibration split
    steps: tuple[PruneStep, ...]
    evaluations: tuple[Evaluation, ...]  # unpruned, masked, and removed where the removal was made
    before: ModelCost
    after: ModelCost | None
    structural: bool
    removed_equals_masked: bool
    max_abs_difference: float | None = None  # removed vs masked logits on one evaluation batch
    saved: str | None = None
    notes: tuple[str, ...] = ()
    metric: str = "top1"
    metric_kind: str = "hit"
    confidence: float = 0.95

    def evaluation(self, model: str) -> Evaluation | None:
        """The evaluation of ``"unpruned"``, ``"masked"`` or ``"removed"``, if there is one."""
        return next((e for e in self.evaluations if e.model == model), None)

    def to_frame(self) -> pd.DataFrame:
        """One row per removal step (calibration) and one per evaluated model (evaluation)."""
        import pandas as pd

        rows: list[dict[str, Any]] = [
            {"split": "calibration", "model": f"{s.k} removed", "k": s.k, "unit": s.unit, "name": s.name,
             "accuracy": s.accuracy, "value": s.value, "loss": s.loss, "n": self.calibration_n}
            for s in self.steps
        ]
        for e in self.evaluations:
            cost = self.before if e.model == "unpruned" else self.after if e.model == "removed" else None
            rows.append({
                "split": "evaluation", "model": e.model, "k": 0 if e.model == "unpruned" else self.remove,
                "unit": None, "name": "", "accuracy": e.accuracy, "value": e.value, "loss": e.loss, "n": e.n,
                "ci_low": e.ci[0], "ci_high": e.ci[1], "p": e.p_value,
                "params": cost.params if cost else None, "flops": cost.flops if cost else None,
                "latency_ms": cost.latency_ms if cost else None,
            })
        frame = pd.DataFrame(rows)
        frame.attrs["metric"] = self.metric
        return frame


def split_indices(n: int, calibration: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Calibration and evaluation indices of ``n`` examples: a permutation seeded by ``seed``, each part sorted."""
    n_cal = int(round(calibration * n))
    if n_cal < 1 or n_cal > n - 1:
        raise PlanError(
            f"prune: calibration {calibration:g} of {n} examples leaves {'no calibration' if n_cal < 1 else 'no'}"
            f"{'' if n_cal < 1 else ' evaluation'} examples; use more data or a calibration share nearer 0.5"
        )
    perm = np.random.default_rng([seed, 11]).permutation(n)
    return np.sort(perm[:n_cal]), np.sort(perm[n_cal:])


def subset(data: DataSource, indices: np.ndarray) -> DataSource:
    """The examples ``indices`` of an in-memory source (images held as tensors, or an ``(x, y)`` pair passed in)."""
    idx = torch.as_tensor(indices, dtype=torch.int64)
    if isinstance(data, TensorSource):
        return dataclasses.replace(data, images=data.images[idx], labels=data.labels[idx])
    if isinstance(data, GivenSource) and data.kind == "tensors":
        x, y = data.obj
        return dataclasses.replace(data, obj=(x[idx.to(x.device)], y[idx.to(y.device)]), length=len(indices))
    kind = data.kind if isinstance(data, GivenSource) else type(data).__name__
    raise PlanError(
        f"prune: cannot split {data.name} ({kind}) into calibration and evaluation parts; pass a data set held "
        "in memory (cifar10-sample, digits, an npz file) or an (x, y) pair of tensors"
    )


def candidate_units(topology: Topology) -> list[int]:
    """Units whose removal keeps every shape: deletable, not downsampling, same channels, stride 1."""
    return [
        u.index for u in topology.units
        if u.deletable and not u.downsampling and u.in_channels == u.out_channels and u.stride == 1
        and u.join == "sum"
    ]


def _harm(base: float, value: float, loss_kind: bool) -> float:
    """How much worse ``value`` is than ``base`` (lower value is better for a loss metric)."""
    return value - base if loss_kind else base - value


def _order(scored: Sequence[tuple[int, Score]], base: float, loss_kind: bool) -> list[tuple[int, Score]]:
    """Least harmful first; ties broken by the lower cross-entropy, then network order."""
    return sorted(scored, key=lambda t: (_harm(base, t[1].value, loss_kind), t[1].loss, t[0]))


def _parent_slot(model: nn.Module, module: nn.Module) -> tuple[str, int] | None:
    """``(path of the parent nn.Sequential, position)`` of ``module`` inside ``model``, or None."""
    for path, parent in model.named_modules():
        if isinstance(parent, nn.Sequential):
            for pos, child in enumerate(parent):
                if child is module:
                    return path, pos
    return None


def _strip_hooks(model: nn.Module) -> None:
    """A copy must not carry the user's hooks into what it runs, measures or saves."""
    for m in model.modules():
        for attr in _HOOK_DICTS:
            hooks = getattr(m, attr, None)
            if isinstance(hooks, dict):
                hooks.clear()


def remove_units(model: nn.Module, units: Sequence[Unit]) -> nn.Module:
    """A deep copy of ``model`` (eval mode, no hooks) without the modules of ``units``.

    Each unit's module must be an element of an ``nn.Sequential`` of ``model`` (a PlanError otherwise).
    """
    slots = []
    for unit in units:
        slot = _parent_slot(model, unit.module)
        if slot is None:
            raise PlanError(f"unit {unit.index} ({unit.name}) is not an element of an nn.Sequential: "
                            "it cannot be removed from the module tree")
        slots.append(slot)
    pruned = copy.deepcopy(model).eval()
    _strip_hooks(pruned)
    parents = dict(pruned.named_modules())
    by_parent: dict[str, set[int]] = {}
    for path, pos in slots:
        by_parent.setdefault(path, set()).add(pos)
    for path, drop in by_parent.items():
        old = parents[path]
        kept = [child for pos, child in enumerate(old) if pos not in drop]
        new = nn.Sequential(*kept)
        if path:
            owner_path, _, attr = path.rpartition(".")
            setattr(parents[owner_path], attr, new)
        else:  # the model itself is the Sequential
            pruned = new.eval()
    return pruned


def measure_cost(model: nn.Module, x: Tensor, repeats: int = LATENCY_REPEATS) -> ModelCost:
    """Parameters, FLOPs of one forward of ``x[:1]`` and the median time of a batch-1 forward (after one warm-up)."""
    from torch.utils.flop_counter import FlopCounterMode

    one = x[:1]
    with torch.inference_mode():
        counter = FlopCounterMode(display=False)
        with counter:
            model(one)
        flops = int(counter.get_total_flops())
        times = []
        for _ in range(repeats + 1):
            if one.is_cuda:
                torch.cuda.synchronize(one.device)
            start = time.perf_counter()
            model(one)
            if one.is_cuda:
                torch.cuda.synchronize(one.device)
            times.append(time.perf_counter() - start)
    return ModelCost(sum(p.numel() for p in model.parameters()), flops, 1000 * statistics.median(times[1:]))


def save_program(model: nn.Module, example: Tensor, path: str | Path) -> Path:
    """``model`` as a torch.export program with a dynamic batch, written to ``path`` (on the CPU)."""
    cpu = copy.deepcopy(model).cpu().float().eval()
    # Two examples: export specialises a size-1 dimension to the constant 1.
    x = example[:1].detach().cpu().float().repeat(2, *([1] * (example.dim() - 1)))
    program = torch.export.export(cpu, (x,), dynamic_shapes=({0: torch.export.Dim("batch")},))
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    torch.export.save(program, str(target))
    return target


def _evaluation(name: str, score: Score, confidence: float, test: Any | None) -> Evaluation:
    return Evaluation(
        name, score.accuracy, score.correct, score.n, score.loss, score.value, interval(score, confidence),
        test.lost if test else 0, test.gained if test else 0, test.p_value if test else 1.0,
        bool(test.significant) if test else False,
    )


class PruneAnalysis(Analysis):
    """Choose units to remove on a calibration split, remove them structurally, evaluate on the held-out rest."""

    name = "prune"
    description = "depth pruning: remove residual units, a smaller and faster model, accuracy on held-out data"
    result_type = PruneResult
    options = (
        Option("remove", int, 1, "residual units to remove", 1, 10_000),
        Option("method", str, "greedy", "how to choose them: greedy (SLEB) | lesion (cheapest single deletions) | "
               "last (the last candidates)"),
        Option("calibration", float, 0.5, "share of the data the units are chosen on; the rest evaluates",
               1e-6, 1 - 1e-6),
        Option("save", str, None, "write the pruned model here as a torch.export program (.pt2)"),
        METRIC,
    )

    def run(
        self,
        ctx: RunContext,
        remove: int = 1,
        method: str = "greedy",
        calibration: float = 0.5,
        save: str | None = None,
        metric: MetricLike = "auto",
        **options: Any,
    ) -> PruneResult:
        """Choose ``remove`` units by ``method`` on a calibration share of the data and evaluate on the rest.

        Example:
            >>> PruneAnalysis().run(ctx, remove=2, method="greedy", calibration=0.5, save="pruned.pt2")
        """
        if options:
            raise PlanError(
                f"prune: unknown options {', '.join(sorted(options))}; valid: remove, method, calibration, save, metric"
            )
        checked = self.check_options({"remove": remove, "calibration": calibration})
        remove, calibration = checked["remove"], float(checked["calibration"])
        if calibration <= 0 or calibration >= 1:
            raise PlanError(f"calibration {calibration!r}: must be a share strictly between 0 and 1")
        if method not in METHODS:
            raise PlanError(f"prune: unknown method {method!r}; valid: {', '.join(METHODS)}")
        data = ctx.require_data(self.name)
        loaded, executor = ctx.loaded, ctx.executor
        topology = loaded.topology
        pool = candidate_units(topology)
        if remove > len(pool):
            raise PlanError(
                f"prune: remove {remove} is more than the {len(pool)} units of {loaded.spec} that keep the shape "
                f"(not downsampling): at most {len(pool)}"
            )
        cal_idx, eval_idx = split_indices(len(data), calibration, ctx.seed)
        cal_data, eval_data = subset(data, cal_idx), subset(data, eval_idx)
        chosen_metric = resolve_metric(metric)

        def score(source: DataSource, plans: Sequence[Plan], what: str) -> list[Score]:
            with ctx.progress(f"prune {what}", len(source)) as advance:
                return score_plans(executor, source, plans, batch_size=ctx.batch_size,
                                   preprocessing=ctx.preprocessing, progress=advance, metric=chosen_metric)

        chosen, steps, cal_base = self._choose(method, remove, pool, topology, cal_data, score, chosen_metric)
        units = [topology.units[i] for i in chosen]

        base, masked = score(eval_data, [Plan(), Plan.delete(*chosen)], "evaluation")
        level = ctx.confidence
        evaluations = [_evaluation("unpruned", base, level, None)]
        notes: list[str] = []
        x, _ = next(iter(eval_data.batches(ctx.batch_size, ctx.preprocessing, executor.device)))
        if not isinstance(x, Tensor):
            raise PlanError("prune: the model's inputs must be one tensor to remove units and measure the copy")
        full = copy.deepcopy(loaded.model).eval()
        _strip_hooks(full)
        full = full.to(executor.device)
        before = measure_cost(full, x)
        del full
        try:
            pruned: nn.Module | None = remove_units(loaded.model, units).to(executor.device)
        except PlanError as exc:
            pruned = None
            notes.append(f"{exc}; only the masked evaluation is reported")
        after = None
        equal = False
        max_diff = None
        saved = None
        if pruned is None:
            tests = paired_tests(base, [masked], level, seed=ctx.seed)
            evaluations.append(_evaluation("masked", masked, level, tests[0]))
        else:
            plain = Topology("pruned", pruned, (), lambda h: h, pruned)
            removed_executor = Executor(plain, executor.device, executor.precision, channels_last=False)
            with torch.inference_mode():
                masked_out = executor.forward(x, Plan.delete(*chosen)).float()
                removed_out = removed_executor.forward(x).float()
            max_diff = float((masked_out - removed_out).abs().max())
            equal = bool(torch.allclose(masked_out, removed_out, atol=MATCH_ATOL, rtol=1e-5))
            with ctx.progress("prune removed model", len(eval_data)) as advance:
                (removed,) = score_plans(removed_executor, eval_data, [Plan()], batch_size=ctx.batch_size,
                                         preprocessing=ctx.preprocessing, progress=advance, metric=chosen_metric)
            tests = paired_tests(base, [masked, removed], level, seed=ctx.seed)
            evaluations += [_evaluation("masked", masked, level, tests[0]),
                            _evaluation("removed", removed, level, tests[1])]
            if not equal:
                post = [u.name for u in units if u.post is not identity]
                notes.append(
                    f"the removed model differs from the masked deletion (max |logit difference| {max_diff:.3g}): "
                    + (f"units {', '.join(post)} apply an activation after the sum, which deletion keeps and "
                       "removal drops; " if post else "")
                    + "the removed model's own accuracy is the one to trust"
                )
            after = measure_cost(pruned, x)
            if save is not None:
                saved = str(save_program(pruned, x, save))
        if save is not None and saved is None:
            notes.append(f"not saved to {save}: the units could not be removed from the module tree")
        kind = "loss" if base.kind == LOSS else "hit"
        return PruneResult(
            method, remove, tuple(chosen), tuple(u.name for u in units), tuple(pool), len(cal_idx), len(eval_idx),
            ctx.seed, hashlib.sha256(np.asarray(cal_idx, dtype=np.int64).tobytes()).hexdigest(), cal_base,
            tuple(steps), tuple(evaluations), before, after, pruned is not None, equal, max_diff, saved,
            tuple(notes), concrete_name(chosen_metric.name, kind), kind, level,
        )

    @staticmethod
    def _choose(
        method: str, remove: int, pool: list[int], topology: Topology, cal_data: DataSource,
        score: Any, metric: Metric,
    ) -> tuple[list[int], list[PruneStep], float]:
        """The chosen units in the order chosen, a step per unit, and the unpruned calibration value."""
        names = {u.index: u.name for u in topology.units}
        chosen: list[int] = []
        steps: list[PruneStep] = []
        if method == "greedy":
            base_value = 0.0
            loss_kind = metric.kind == LOSS
            for k in range(1, remove + 1):
                left = [i for i in pool if i not in chosen]
                plans = ([Plan()] if k == 1 else []) + [Plan.delete(*chosen, i) for i in left]
                scores = score(cal_data, plans, f"calibration round {k}")
                if k == 1:
                    base_score, scores = scores[0], scores[1:]
                    base_value, loss_kind = base_score.value, base_score.kind == LOSS
                best, best_score = _order(list(zip(left, scores, strict=True)), base_value, loss_kind)[0]
                chosen.append(best)
                steps.append(PruneStep(
                    k, best, names[best], best_score.value, best_score.accuracy, best_score.loss,
                    tuple(Candidate(i, s.value, s.loss) for i, s in zip(left, scores, strict=True)),
                ))
            return chosen, steps, base_value
        singles: tuple[Candidate, ...] = ()
        if method == "lesion":
            scores = score(cal_data, [Plan()] + [Plan.delete(i) for i in pool], "calibration single deletions")
            base_score, singles_scored = scores[0], list(zip(pool, scores[1:], strict=True))
            ranked = _order(singles_scored, base_score.value, base_score.kind == LOSS)
            chosen = [i for i, _ in ranked[:remove]]
            singles = tuple(Candidate(i, s.value, s.loss) for i, s in singles_scored)
            cumulative = score(cal_data, [Plan.delete(*chosen[:k]) for k in range(1, remove + 1)],
                               "calibration chosen sets")
        else:  # last
            chosen = pool[-remove:]
            scores = score(cal_data, [Plan()] + [Plan.delete(*chosen[:k]) for k in range(1, remove + 1)],
                           "calibration chosen sets")
            base_score, cumulative = scores[0], scores[1:]
        for k, (i, s) in enumerate(zip(chosen, cumulative, strict=True), start=1):
            steps.append(PruneStep(k, i, names[i], s.value, s.accuracy, s.loss, singles if k == 1 else ()))
        return chosen, steps, base_score.value
