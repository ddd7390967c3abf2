"""Lesion studies (Veit et al. 2016, Fig. 3 and 5a): delete residual units, measure accuracy.

Deleting a unit keeps its shortcut and drops its residual branch (``Unit.forward_deleted``).
Three kinds of configuration: every deletable unit alone (the sweep), one given set, and
``samples`` random sets of k units for each k in a range. All configurations of one model go
through one :func:`score_plans` call, so the executor shares their common prefixes; a run
with a journal (the CLI's progress.jsonl) scores them in chunks and can resume.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Sequence

import numpy as np

if TYPE_CHECKING:
    import pandas as pd

from resnet_probe.analyses.base import METRIC, Analysis, Option, RunContext
from resnet_probe.analyses.resumable import score_resumable
from resnet_probe.bounds import MAX_SAMPLES, check_samples
from resnet_probe.errors import PlanError
from resnet_probe.executor import Executor, Plan
from resnet_probe.journal import ScoreItem
from resnet_probe.metrics import Metric, MetricLike, concrete_name, perplexity, resolve_metric
from resnet_probe.models.loaded import LoadedModel
from resnet_probe.results import Result
from resnet_probe.scoring import Score, interval, paired_tests
from resnet_probe.settings import LESION_SAMPLES
from resnet_probe.stats import bootstrap_mean_interval
from resnet_probe.structure import Topology


@dataclass(frozen=True)
class Baseline:
    """Accuracy (with its Wilson interval), correct count, images and mean cross-entropy of the unchanged model.

    ``hits`` is the per-image correctness, packed (:func:`resnet_probe.stats.pack_bits`).
    """

    accuracy: float
    correct: int
    n: int
    loss: float
    ci: tuple[float, float] = (0.0, 1.0)
    hits: str | None = None
    value: float | None = None  # the metric's mean where it is not top-1 (``LesionResult.metric``)
    values: str | None = None  # a loss or mean metric's per-example values, packed (stats.pack_floats)
    kind: str = "hit"  # the metric's kind (resnet_probe.metrics KINDS)

    @classmethod
    def of(cls, score: Score, confidence: float) -> Baseline:
        """From an evaluation score; ``ci`` is the interval of the metric's value."""
        return cls(score.accuracy, score.correct, score.n, score.loss, interval(score, confidence), score.hits,
                   score.value, score.values, score.kind)

    @property
    def score(self) -> float:
        """The metric's value (the accuracy for top-1 studies of older files)."""
        return self.accuracy if self.value is None else self.value


@dataclass(frozen=True)
class UnitInfo:
    """What a report needs to know about one unit."""

    index: int
    name: str
    stage: int
    downsampling: bool
    shortcut: str
    in_channels: int
    out_channels: int


@dataclass(frozen=True)
class LesionConfig:
    """One deleted set, the accuracy without those residual branches, and its paired test against the baseline.

    ``p_value``: exact McNemar on the images one of the two gets right; ``p_adjusted``: Holm over
    every configuration of the run; ``significant``: ``p_adjusted < 1 - confidence``.
    """

    deleted: tuple[int, ...]
    names: tuple[str, ...]
    accuracy: float
    correct: int
    loss: float
    ci: tuple[float, float] = (0.0, 1.0)
    p_value: float = 1.0
    p_adjusted: float = 1.0
    significant: bool = False
    hits: str | None = None
    n: int = 0  # images scored: the baseline's, or fewer where adaptive evaluation stopped early
    value: float | None = None  # the metric's mean (``LesionResult.metric``); ``ci`` is its interval
    values: str | None = None  # a loss metric's per-example values, packed (stats.pack_floats)

    @property
    def score(self) -> float:
        """The metric's value (the accuracy for top-1 studies of older files)."""
        return self.accuracy if self.value is None else self.value


@dataclass(frozen=True)
class RandomK:
    """The metric over ``samples`` random sets of k deleted units (Veit et al. Fig. 5a).

    ``mean_accuracy`` and ``accuracies`` hold the metric's value (accuracy for hit metrics, the
    mean loss for loss metrics); ``ci``: seeded bootstrap interval of the mean over the sets;
    ``significant``: how many sets differ from the baseline after Holm's adjustment.
    """

    k: int
    samples: int
    mean_accuracy: float
    std_accuracy: float
    ci: tuple[float, float] = (0.0, 1.0)
    accuracies: tuple[float, ...] = ()
    significant: int = 0


@dataclass(frozen=True)
class LesionStudy:
    """The lesion study of one model; ``skipped`` are units that cannot be deleted."""

    baseline: Baseline
    configs: tuple[LesionConfig, ...]
    random_k: tuple[RandomK, ...]
    units: tuple[UnitInfo, ...]
    skipped: tuple[int, ...] = ()
    spec: str = ""


@dataclass(frozen=True)
class LesionResult(Result):
    """The study of the model (top-level fields) and of each ``--compare`` model."""

    analysis: ClassVar[str] = "lesion"
    baseline: Baseline
    configs: tuple[LesionConfig, ...]
    random_k: tuple[RandomK, ...]
    units: tuple[UnitInfo, ...]
    skipped: tuple[int, ...] = ()
    sweep: bool = True
    compare: tuple[LesionStudy, ...] = ()
    metric: str = "top1"  # what each configuration is scored by (resnet_probe.metrics)
    # "hit": higher is better, Wilson + McNemar; "loss": lower is better, t + sign flips; "mean": a loss's
    # statistics, higher is better (next_token)
    metric_kind: str = "hit"

    @property
    def higher_is_better(self) -> bool:
        """Whether a larger metric value is better (hits) or worse (losses)."""
        return self.metric_kind != "loss"

    @classmethod
    def upgraded(cls, d: dict[str, Any]) -> dict[str, Any]:
        """Configurations of files before adaptive evaluation carry no ``n``: the baseline's."""
        return {**with_baseline_n(d), "compare": [with_baseline_n(c) for c in d.get("compare", [])]}

    @property
    def study(self) -> LesionStudy:
        """The main model's study in the same shape as the compared ones."""
        return LesionStudy(self.baseline, self.configs, self.random_k, self.units, self.skipped)

    def to_frame(self) -> pd.DataFrame:
        """One row per configuration of every model: the baseline, each deleted set, each random set summary."""
        import pandas as pd

        rows = []
        # The metric's own column where it is neither "accuracy" (top-1) nor "loss" (cross-entropy).
        own = None if self.metric in ("top1", "loss") else self.metric

        def classes(row: Baseline | LesionConfig) -> dict[str, Any]:
            # No per-example hits beside a loss or mean metric: the targets are not class indices (token ids),
            # so top-1 accuracy and cross-entropy per image are undefined, not 0.
            if row.hits is None and self.metric_kind != "hit":
                out: dict[str, Any] = {"accuracy": None, "correct": None, "n": row.n, "loss": None}
            else:
                out = {"accuracy": row.accuracy, "correct": row.correct, "n": row.n, "loss": row.loss}
            if self.metric == "loss":
                out["loss"] = row.score  # the metric itself (a language model's per-sequence token loss)
                if row.hits is None:
                    out["perplexity"] = perplexity(row.score)
            return out | ({own: row.score} if own else {})

        for study in (self.study, *self.compare):
            spec = study.spec or (self.run.model.get("spec", "") if self.run is not None else "")
            b = study.baseline
            rows.append({"model": spec, "kind": "baseline", "k": 0, "deleted": "", "names": ""} | classes(b))
            for c in study.configs:
                rows.append({"model": spec, "kind": "set", "k": len(c.deleted),
                             "deleted": " ".join(map(str, c.deleted)), "names": " ".join(c.names)} | classes(c))
            for r in study.random_k:
                # a random-k row holds the mean of the metric over the sets, in the metric's own column
                mean = {"accuracy": None, "loss": None, own or ("accuracy" if self.metric == "top1" else "loss"):
                        r.mean_accuracy}
                rows.append({"model": spec, "kind": "random_k", "k": r.k, "deleted": f"{r.samples} random sets",
                             "names": "", "correct": None, "n": b.n} | mean)
        frame = pd.DataFrame(rows)
        frame.attrs["metric"] = self.metric
        return frame


def with_baseline_n(study: dict[str, Any]) -> dict[str, Any]:
    """A study's configurations with the baseline's ``n`` where they carry none (files before adaptive evaluation)."""
    n = study.get("baseline", {}).get("n", 0)
    return {**study, "configs": [{"n": n, **c} for c in study.get("configs", [])]}


def unit_infos(topology: Topology) -> tuple[UnitInfo, ...]:
    """Tensor-free descriptions of every unit."""
    return tuple(
        UnitInfo(u.index, u.name, u.stage, u.downsampling, u.shortcut_kind, u.in_channels, u.out_channels)
        for u in topology.units
    )


def deletable_units(topology: Topology) -> list[int]:
    """Indices of the units whose residual branch can be removed."""
    return [u.index for u in topology.units if u.deletable]


def parse_delete(spec: str | int | Sequence[int | str], topology: Topology) -> tuple[int, ...]:
    """Unit indices and names (``"3,7,layer2.0"``) as sorted, validated unit indices.

    Example:
        >>> parse_delete("3,layer3.0", load_model("zoo:resnet20", weights="random").topology)
        (3, 6)
    """
    n = topology.n_units
    names = [u.name for u in topology.units]
    valid = f"valid: indices 0..{n - 1} or names {names[0]}..{names[-1]}"
    if isinstance(spec, bool) or not isinstance(spec, (int, str, list, tuple)):
        raise PlanError(f"delete {spec!r}: not a list of units; {valid}")
    if isinstance(spec, int):
        tokens: list[str] = [str(spec)]
    elif isinstance(spec, str):
        tokens = [t.strip() for t in spec.split(",")]
    else:
        tokens = [str(t).strip() for t in spec]
    if not tokens or tokens == [""]:
        raise PlanError(f"delete {spec!r}: no units given; {valid}")
    chosen: list[int] = []
    for token in tokens:
        index = _unit_index(token, topology, valid)
        if index in chosen:
            raise PlanError(f"delete {token!r}: unit {index} ({names[index]}) is given twice")
        unit = topology.units[index]
        if not unit.deletable:
            raise PlanError(
                f"delete {token!r}: unit {index} ({unit.name}) is a plain unit that changes shape and "
                f"cannot be deleted; deletable: {_ranges(deletable_units(topology))}"
            )
        chosen.append(index)
    return tuple(sorted(chosen))


def _unit_index(token: str, topology: Topology, valid: str) -> int:
    n = topology.n_units
    if not token:
        raise PlanError(f"delete: empty entry in the list; {valid}")
    try:
        return topology.unit_by_name(token).index
    except KeyError:
        pass
    try:
        index = int(token)
    except ValueError:
        raise PlanError(f"delete {token!r}: not a unit index or name; {valid}") from None
    if index < 0:
        raise PlanError(f"delete {token!r}: negative unit index; {valid}")
    if index >= n:
        raise PlanError(f"delete {token!r}: unit index out of range; {valid}")
    return index


def _ranges(indices: Sequence[int]) -> str:
    """``[0, 1, 2, 4, 5]`` as ``0..2, 4, 5``."""
    runs: list[list[int]] = []
    for i in indices:
        if runs and runs[-1][-1] == i - 1:
            runs[-1].append(i)
        else:
            runs.append([i])
    return ", ".join(f"{r[0]}..{r[-1]}" if len(r) > 2 else ", ".join(map(str, r)) for r in runs)


def parse_range(spec: str | int | Sequence[int], option: str, low: int, high: int) -> tuple[int, int]:
    """``"A:B"`` (inclusive) or ``"K"`` as ``(A, B)`` with ``low <= A <= B <= high``."""
    hint = f"write A:B or K with {low} <= A <= B <= {high}"
    if isinstance(spec, bool):
        raise PlanError(f"{option} {spec!r}: not a range; {hint}")
    try:
        if isinstance(spec, str):
            lo, sep, hi = spec.strip().partition(":")
            a, b = int(lo), int(hi) if sep else int(lo)
        elif isinstance(spec, int):
            a = b = int(spec)
        else:
            a, b = (int(v) for v in spec)
    except (TypeError, ValueError):
        raise PlanError(f"{option} {spec!r}: not a range; {hint}") from None
    if not low <= a <= b <= high:
        raise PlanError(f"{option} {spec!r}: out of range; {hint}")
    return a, b


def random_sets(
    topology: Topology, k_range: tuple[int, int], samples: int, seed: int
) -> list[tuple[int, tuple[int, ...]]]:
    """``samples`` random k-sets of deletable units per k, as ``(k, sorted indices)``.

    The generator is seeded from ``seed`` alone, so two models with the same deletable units
    are lesioned with the very same sets (a paired comparison).
    """
    pool = np.asarray(deletable_units(topology), dtype=np.int64)
    rng = np.random.default_rng([seed, 5])
    out = []
    for k in range(k_range[0], k_range[1] + 1):
        for _ in range(samples):
            chosen = rng.choice(pool, size=k, replace=False)
            out.append((k, tuple(sorted(int(i) for i in chosen))))
    return out


@dataclass(frozen=True)
class LesionPlan:
    """What one model's study deletes: the sweep or the given set, then the random k-sets."""

    sets: tuple[tuple[int, ...], ...]
    drawn: tuple[tuple[int, tuple[int, ...]], ...]

    @property
    def plans(self) -> list[Plan]:
        """Baseline first, then every set, then every random set: one scoring call for all."""
        return [Plan()] + [Plan.delete(*s) for s in self.sets] + [Plan.delete(*s) for _, s in self.drawn]


def plan_study(
    loaded: LoadedModel,
    *,
    delete: str | int | Sequence[int | str] | None = None,
    random_k: str | int | Sequence[int] | None = None,
    samples: int = LESION_SAMPLES,
    seed: int = 0,
) -> LesionPlan:
    """Validate the options against one model and draw its random sets (no computation)."""
    topology = loaded.topology
    deletable = deletable_units(topology)
    if not deletable:
        raise PlanError(f"{loaded.spec} has no deletable units")
    sets = [(i,) for i in deletable] if delete is None else [parse_delete(delete, topology)]
    check_samples(samples)  # also without random_k: --samples 0 is a mistake either way
    drawn: list[tuple[int, tuple[int, ...]]] = []
    if random_k is not None:
        k_range = parse_range(random_k, "random_k", 1, len(deletable))
        drawn = random_sets(topology, k_range, samples, seed)
    return LesionPlan(tuple(sets), tuple(drawn))


def run_study(
    ctx: RunContext, loaded: LoadedModel, executor: Executor, plan: LesionPlan, model_index: int = 0,
    metric: Metric | None = None,
) -> LesionStudy:
    """Score one model's planned configurations (one pass over the data, or journaled chunks).

    Each configuration is journaled as ``{"model": model_index, "deleted": [...]}``.
    """
    data = ctx.require_data("lesion")
    topology = loaded.topology
    plans = plan.plans
    keys = [{"model": model_index, "deleted": sorted(p.deleted)} for p in plans]
    scores = score_resumable(
        executor, data, plans, keys, journal=ctx.journal, batch_size=ctx.batch_size,
        preprocessing=loaded.preprocessing, progress=ctx.progress, description=f"lesion {loaded.spec}",
        stop=ctx.stopping, always=[0], metric=metric,
    )
    n_sets = len(plan.sets)
    base, own, rand = scores[0], scores[1 : 1 + n_sets], scores[1 + n_sets :]
    level = ctx.confidence
    # One family for Holm: every configuration this run scored against this model's baseline.
    tests = paired_tests(base, scores[1:], level, seed=ctx.seed)
    configs = tuple(
        LesionConfig(
            s, tuple(topology.units[i].name for i in s), sc.accuracy, sc.correct, sc.loss, interval(sc, level),
            t.p_value, t.p_adjusted, t.significant, sc.hits, sc.n, sc.value, sc.values,
        )
        for s, sc, t in zip(plan.sets, own, tests[:n_sets], strict=True)
    )
    summary = []
    if plan.drawn:
        ks = np.asarray([k for k, _ in plan.drawn])
        acc = np.asarray([sc.value for sc in rand], dtype=np.float64)
        sig = np.asarray([t.significant for t in tests[n_sets:]], dtype=bool)
        for k in sorted(set(ks.tolist())):
            v = acc[ks == k]
            std = float(v.std(ddof=1)) if len(v) > 1 else 0.0
            ci = bootstrap_mean_interval(v.tolist(), level, seed=ctx.seed + int(k))
            summary.append(
                RandomK(int(k), int(len(v)), float(v.mean()), std, ci, tuple(v.tolist()), int(sig[ks == k].sum()))
            )
    skipped = tuple(u.index for u in topology.units if not u.deletable)
    return LesionStudy(
        Baseline.of(base, level), configs, tuple(summary), unit_infos(topology), skipped, str(loaded.spec)
    )


class LesionAnalysis(Analysis):
    """Delete residual units one at a time, as a set, or as random k-sets; score each."""

    name = "lesion"
    description = "accuracy after deleting residual units (Veit et al. 2016, Fig. 3 and 5a)"
    result_type = LesionResult
    batch_probe = True
    resumable = True
    journal_item = ScoreItem
    options = (
        Option("delete", str, None,
               "delete these units together: indices or names, e.g. 3,7,layer2.0 (default: each alone)"),
        Option("random_k", str, None, "also delete random sets of k units for k in A:B (Veit Fig. 5a)"),
        Option("samples", int, LESION_SAMPLES, "random sets per k", 1, MAX_SAMPLES),
        METRIC,
    )

    def run(
        self,
        ctx: RunContext,
        delete: str | int | Sequence[int | str] | None = None,
        random_k: str | int | Sequence[int] | None = None,
        samples: int = LESION_SAMPLES,
        metric: MetricLike = "auto",
        **options: Any,
    ) -> LesionResult:
        """The study of the model and of every compared model, same options and seed.

        ``metric``: ``"top1"`` (default), ``"top5"``, ``"loss"`` or a callable ``(outputs, targets)``
        giving one value per example (bools: hits; floats: losses).

        Example:
            >>> LesionAnalysis().run(ctx, delete="layer2.0", random_k="1:5", samples=10)
        """
        if options:
            raise PlanError(
                f"lesion: unknown options {', '.join(sorted(options))}; valid: delete, random_k, samples, metric"
            )
        ctx.require_data(self.name)
        chosen = resolve_metric(metric)
        models = [(ctx.loaded, ctx.executor), *ctx.compare]
        # Every model's options are checked before any of them is scored.
        plans = [
            plan_study(lm, delete=delete, random_k=random_k, samples=samples, seed=ctx.seed) for lm, _ in models
        ]
        own, *others = [
            run_study(ctx, lm, ex, p, i, chosen) for i, ((lm, ex), p) in enumerate(zip(models, plans, strict=True))
        ]
        kind = own.baseline.kind
        return LesionResult(
            own.baseline, own.configs, own.random_k, own.units, own.skipped, delete is None, tuple(others),
            metric=concrete_name(chosen.name, kind), metric_kind=kind,
        )
