"""Gradient per path length (Veit et al. 2016, Sec. 4.2 and Fig. 6b/6c).

Each path sample is one image whose backward pass goes through the residual branch of k
randomly chosen units and through the shortcut of all others; its value is the L2 norm of
the gradient at the network input. Routes are per sample (the detach identity in
:meth:`Executor.forward_routed`), so one forward/backward of a batch yields a whole batch of
path samples, of any mix of lengths. BatchNorm runs in eval mode: batch statistics would
couple the samples of a batch.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, ClassVar, Iterator, Sequence

import numpy as np
import torch
from torch import Tensor

if TYPE_CHECKING:
    import pandas as pd

from resnet_probe import distributed
from resnet_probe.analyses.base import Analysis, Option, RunContext
from resnet_probe.analyses.paths import shortest_window
from resnet_probe.bounds import MAX_SAMPLES, check_samples
from resnet_probe.data import DataSource
from resnet_probe.data.preprocessing import Preprocessing
from resnet_probe.errors import PlanError
from resnet_probe.executor import Executor
from resnet_probe.journal import Journal, NormsItem
from resnet_probe.results import Result
from resnet_probe.settings import CONFIDENCE, EFFECTIVE_SHARE, GRADIENT_SAMPLES
from resnet_probe.stats import bootstrap_mean_interval
from resnet_probe.structure import Topology

LONG_PATH = 20  # Veit et al.: paths longer than ~20 modules carry almost no gradient
RESAMPLES = 1000  # bootstrap resamples of the effective range


def routable_units(topology: Topology) -> list[int]:
    """Indices of the units with a shortcut: the only ones a route can choose between."""
    return [u.index for u in topology.units if u.shortcut is not None]


def parse_lengths(spec: str | int | Sequence[int] | None, n: int) -> tuple[int, ...]:
    """Path lengths to sample: None is 0..n; ``"K"``, ``"A:B"`` (inclusive) or ``"1,3,5:9"``.

    Example:
        >>> parse_lengths("1:3,7", 54)
        (1, 2, 3, 7)
    """
    if spec is None:
        return tuple(range(n + 1))
    hint = f"write K, A:B (inclusive) or a comma list, with lengths in 0..{n}"
    ks: set[int] = set()
    if isinstance(spec, int):
        ks.add(spec)
    elif isinstance(spec, str):
        for part in (p.strip() for p in spec.split(",")):
            lo, sep, hi = part.partition(":")
            try:
                a = int(lo)
                b = int(hi) if sep else a
            except ValueError:
                raise PlanError(f"--k {spec!r}: {part!r} is not a length; {hint}") from None
            if b < a:
                raise PlanError(f"--k {spec!r}: range {part!r} is empty; {hint}")
            ks.update(range(a, b + 1))
    else:
        try:
            ks.update(int(k) for k in spec)
        except (TypeError, ValueError):
            raise PlanError(f"--k {spec!r}: not a list of lengths; {hint}") from None
    bad = sorted(k for k in ks if not 0 <= k <= n)
    if bad or not ks:
        what = f"length {bad[0]} is out of range" if bad else "no lengths given"
        raise PlanError(f"--k {spec!r}: {what}; this model has {n} residual units; {hint}")
    return tuple(sorted(ks))


def job_lengths(ks: Sequence[int], samples: int, seed: int) -> np.ndarray:
    """The length of every path sample, ``samples`` per k, in a seeded random order.

    Shuffled so that every batch mixes lengths and every length sees images from all over
    the data set (images are taken in order, cycling).
    """
    jobs = np.repeat(np.asarray(ks, dtype=np.int64), samples)
    return np.random.default_rng(seed).permutation(jobs)


def draw_routes(lengths: np.ndarray, units: Sequence[int], n_units: int, rng: np.random.Generator) -> Tensor:
    """A (batch, n_units) 0/1 route per sample: exactly ``lengths[b]`` of ``units`` set to 1."""
    b = len(lengths)
    # Rank of a uniform random key per unit: the k lowest ranks are a uniform k-subset.
    ranks = np.argsort(np.argsort(rng.random((b, len(units))), axis=1), axis=1)
    chosen = ranks < lengths[:, None]
    routes = np.zeros((b, n_units), dtype=np.float32)
    routes[:, np.asarray(units, dtype=np.int64)] = chosen
    return torch.from_numpy(routes)


def sample_norms(
    executor: Executor,
    data: DataSource,
    lengths: np.ndarray,
    *,
    seed: int = 0,
    batch_size: int = 128,
    preprocessing: Preprocessing | None = None,
    progress: Callable[[int], None] | None = None,
    journal: Journal | None = None,
) -> np.ndarray:
    """Input-gradient norm of every path sample; ``lengths[j]`` is sample j's path length.

    Sample j takes image ``j mod len(data)``: the data set's batches in order, over and over,
    the last one cut short when the samples run out. The routes come from a generator seeded
    with ``seed``, batch after batch, so the whole run is a function of the seed. Under
    torchrun each rank takes the data batches ``j`` with ``j % world == rank`` (every rank
    still draws every route, to stay in step) and the norms are gathered in order. With a
    ``journal``, every finished batch is recorded under its running index and a batch an
    earlier run recorded is read back instead of recomputed.
    """
    units = routable_units(executor.topology)
    if not units:
        raise PlanError("gradients need residual units: this model has no shortcuts to route around")
    n_images = len(data)
    if n_images == 0:
        raise PlanError(f"{data.name} holds no images to take gradients of")
    per_pass = math.ceil(n_images / batch_size)
    world, rank = distributed.world(), distributed.rank()
    rng = np.random.default_rng([seed, 1])
    local: list[tuple[int, tuple[int, list[float]]]] = []
    done = 0
    mine: Iterator[tuple[int, tuple[Tensor, Tensor]]] = iter(())
    for index in itertools.count():
        if done >= len(lengths):
            break
        j = index % per_pass
        if j == 0:
            mine = distributed.my_batches(data, batch_size, preprocessing=preprocessing, device=executor.device)
        b = min(batch_size, n_images - j * batch_size, len(lengths) - done)
        routes = draw_routes(lengths[done : done + b], units, executor.n_units, rng)
        if j % world == rank:
            if journal is not None and journal.has(index):
                values = journal.get(index)
                next(mine)
            else:
                batch_j, (x, y) = next(mine)
                assert batch_j == j, (batch_j, j)
                values = executor.routed_input_grad_norms(x[:b], y[:b], routes).double().cpu().tolist()
                if journal is not None:
                    journal.add(index, values)
            local.append((index, (done, values)))
            if progress is not None:
                progress(b * world)
        done += b
    norms = np.empty(len(lengths), dtype=np.float64)
    for start, values in distributed.gather_ordered(local):
        norms[start : start + len(values)] = values
    return norms


@dataclass(frozen=True)
class LengthGradient:
    """Gradient statistics of the paths through exactly k residual branches."""

    k: int
    samples: int
    mean_norm: float
    std_norm: float
    paths: int
    total: float | None  # mean_norm * paths; None only where it passes float range
    log10_total: float | None  # None where mean_norm is 0
    share: float
    ci: tuple[float, float] = (0.0, 0.0)  # seeded bootstrap interval of mean_norm over the samples


@dataclass(frozen=True)
class GradientsResult(Result):
    """Mean input-gradient norm per path length, total gradient per length, effective range.

    ``effective_range_ci``: bootstrap intervals of the range's two ends, from resampling the
    path samples of every length (the range recomputed on each resample).
    """

    analysis: ClassVar[str] = "gradients"
    lengths: tuple[LengthGradient, ...]
    effective_range: tuple[int, int]
    share: float
    share_longer_than_20: float
    n_units: int
    effective_range_ci: tuple[tuple[int, int], tuple[int, int]] = ((0, 0), (0, 0))

    @classmethod
    def upgraded(cls, d: dict[str, Any]) -> dict[str, Any]:
        """Files before the range's intervals: each end's interval is the end itself."""
        if "effective_range_ci" in d:
            return d
        lo, hi = d["effective_range"]
        return {**d, "effective_range_ci": [[lo, lo], [hi, hi]]}

    def to_frame(self) -> pd.DataFrame:
        """One row per sampled path length: mean and std of the input-gradient norm, paths, total, share."""
        import pandas as pd

        frame = pd.DataFrame([dataclasses.asdict(g) for g in self.lengths])
        frame[["ci_low", "ci_high"]] = pd.DataFrame(frame.pop("ci").tolist(), index=frame.index)
        return frame


def shares_of(means: np.ndarray, log10_paths: np.ndarray) -> np.ndarray:
    """Each length's share of the total gradient, sum over lengths of mean norm x C(n, k), along the last axis.

    In log space: C(n, k) for n in the hundreds is past float range. A zero mean has share 0.
    """
    with np.errstate(divide="ignore"):
        logs = np.log10(means) + log10_paths
    top = logs.max(axis=-1, keepdims=True)
    if not np.isfinite(top).all():
        raise PlanError("every sampled input gradient is zero: nothing to share out")
    weights = 10.0 ** (logs - top)
    return weights / weights.sum(axis=-1, keepdims=True)


def summarise(
    ks: Sequence[int],
    lengths: np.ndarray,
    norms: np.ndarray,
    n: int,
    share: float,
    *,
    confidence: float = CONFIDENCE,
    seed: int = 0,
    resamples: int = RESAMPLES,
) -> GradientsResult:
    """Per-length statistics with bootstrap intervals, totals (log-safe), shares and the effective range.

    The bootstrap resamples each length's path samples (seed ``seed + k`` for the interval of
    its mean; one generator seeded with ``seed`` for the effective range's ends).
    """
    groups = [norms[lengths == k] for k in ks]
    # math.log10 takes ints of any size: C(1200, 600) is far past float range.
    log10_paths = np.asarray([math.log10(math.comb(n, k)) for k in ks])
    means = np.asarray([v.mean() for v in groups])
    shares = shares_of(means, log10_paths)
    lo, hi = shortest_window(shares.tolist(), share)
    rng = np.random.default_rng([seed, 11])
    boot = np.stack([v[rng.integers(0, len(v), size=(resamples, len(v)))].mean(axis=1) for v in groups], axis=1)
    windows = np.asarray([shortest_window(row.tolist(), share) for row in shares_of(boot, log10_paths)])
    q = [(1 - confidence) / 2, (1 + confidence) / 2]
    ends = tuple(
        tuple(int(ks[int(i)]) for i in np.quantile(windows[:, side], q, method="inverted_cdf")) for side in (0, 1)
    )
    out = []
    for k, v, mean, sh in zip(ks, groups, means, shares, strict=True):
        paths = math.comb(n, k)
        log_total = math.log10(mean) + math.log10(paths) if mean > 0 else None
        out.append(LengthGradient(
            k=k, samples=len(v), mean_norm=float(mean), std_norm=float(v.std(ddof=1)) if len(v) > 1 else 0.0,
            paths=paths, total=_from_log10(log_total), log10_total=log_total, share=float(sh),
            ci=bootstrap_mean_interval(v.tolist(), confidence, seed=seed + k),
        ))
    longer = float(sum(sh for k, sh in zip(ks, shares, strict=True) if k > LONG_PATH))
    return GradientsResult(
        lengths=tuple(out),
        effective_range=(int(ks[lo]), int(ks[hi])),
        share=share,
        share_longer_than_20=longer,
        n_units=n,
        effective_range_ci=ends,  # type: ignore[arg-type]
    )


def _from_log10(log10_value: float | None) -> float | None:
    """``10 ** log10_value``; 0.0 for None (a zero mean), None past float range."""
    if log10_value is None:
        return 0.0
    try:
        return 10.0**log10_value
    except OverflowError:
        return None


class GradientsAnalysis(Analysis):
    """How much gradient the paths of each length carry (Veit et al. Fig. 6b/6c)."""

    name = "gradients"
    description = "input-gradient norm per path length and the effective paths (Veit et al. Fig. 6b/c)"
    result_type = GradientsResult
    resumable = True
    journal_item = NormsItem
    options = (
        Option("samples", int, GRADIENT_SAMPLES, "path samples per length (Veit et al.: 1000)", 1, MAX_SAMPLES),
        Option("k", str, None, "path lengths: K, A:B (inclusive) or a comma list; default 0..n"),
        Option("share", float, EFFECTIVE_SHARE, "share of the total gradient the effective range holds", 0.0, 1.0),
    )

    def run(
        self,
        ctx: RunContext,
        samples: int = GRADIENT_SAMPLES,
        k: str | int | Sequence[int] | None = None,
        share: float = EFFECTIVE_SHARE,
        **options: Any,
    ) -> GradientsResult:
        """Sample ``samples`` paths per length in ``k`` (default 0..n) and summarise them."""
        if options:
            raise PlanError(f"gradients takes no option {sorted(options)[0]!r}; valid: samples, k, share")
        check_samples(samples, "--samples")
        if not 0 < share <= 1:
            raise PlanError(f"--share {share}: must lie in (0, 1], e.g. 0.9")
        data = ctx.require_data(self.name)
        n = len(routable_units(ctx.executor.topology))
        if n == 0:
            raise PlanError("gradients need residual units: this model has no shortcuts to route around")
        ks = parse_lengths(k, n)
        x, _ = next(iter(data.batches(1, ctx.preprocessing)))
        if not (isinstance(x, torch.Tensor) and x.is_floating_point()):
            raise PlanError(
                "gradients take the gradient at the network's input, which must be float (images); for token ids "
                "(a language model) the gradient at the embeddings is not built yet"
            )
        lengths = job_lengths(ks, samples, ctx.seed)
        with ctx.progress("path gradients", len(lengths)) as advance:
            norms = sample_norms(
                ctx.executor, data, lengths, seed=ctx.seed, batch_size=ctx.batch_size,
                preprocessing=ctx.preprocessing, progress=advance, journal=ctx.journal,
            )
        return summarise(ks, lengths, norms, n, share, confidence=ctx.confidence, seed=ctx.seed)
