"""The published counterpart of a run: what the paper found, and whether these numbers agree.

Each function states one finding with the figure it is read from, then a verdict from the
statistics the run already computed (intervals and paired tests), never from thresholds typed
per model: *agrees* when the run's interval lies on the paper's side, *disagrees* when it
lies on the other side, *cannot tell* when it straddles the line on this many examples. Where
it disagrees, the sentence says what differs between this net and the paper's (training,
data, random weights), so the number is not quoted as a fact about the architecture.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from resnet_probe.results import RunRecord

VEIT = "Veit et al. 2016"
#: Veit et al. 2016 Sec. 4.1 call the change "not noticeable"; this is how this tool reads that, in points.
SMALL_POINTS = 2.0
AGREES, DISAGREES, CANNOT_TELL = "agrees", "disagrees", "cannot tell"


def verdict(low: float, high: float, line: float, paper_below: bool) -> str:
    """Where the interval [low, high] lies against ``line``: on the paper's side (below it when ``paper_below``)."""
    if (high <= line) if paper_below else (low >= line):
        return AGREES
    if (low > line) if paper_below else (high < line):
        return DISAGREES
    return CANNOT_TELL


def differences(record: RunRecord) -> str:
    """What sets this run apart from the papers' CIFAR-10 nets, for a verdict that disagrees or cannot tell."""
    prov = record.model.get("provenance")
    prov = prov if isinstance(prov, dict) else {}
    data = record.data or {}
    parts = []
    if prov.get("kind") == "trained":
        parts.append(f"this net was trained here for {prov.get('iterations')} iterations on {prov.get('dataset')} "
                     "(He et al.'s recipe: 64,000 iterations on CIFAR-10)")
    dataset = data.get("dataset")
    if dataset and dataset not in ("cifar10", "cifar10-sample"):
        parts.append(f"it is measured on {dataset}, not CIFAR-10")
    n = data.get("n")
    if isinstance(n, int) and n < 10_000:
        parts.append(f"on {n} examples, not the 10,000 CIFAR-10 test images")
    return "; ".join(parts)


def _with_why(text: str, found: str, record: RunRecord) -> str:
    prov = record.model.get("provenance")
    if isinstance(prov, dict) and prov.get("kind") == "random":
        # An untrained net can match a trained net's finding by accident (every unit is equally useless).
        return f"{text} This net is untrained (random weights): the paper's finding is about trained networks, so " \
               "this verdict says nothing about them."
    why = differences(record)
    if found == AGREES or not why:
        return text
    return f"{text} What differs from the paper: {why}."


def lesion_finding(
    base_hits: np.ndarray,
    config_hits: Sequence[np.ndarray],
    downsampling: Sequence[bool],
    confidence: float,
    record: RunRecord,
) -> str | None:
    """Veit et al. 2016 Fig. 3: a single deletion of a unit that keeps the shape barely changes the error.

    ``config_hits`` holds each single deletion's per-image hits (the sweep), ``downsampling`` whether
    that unit changes the shape. The verdict is on the median deletion's paired cost (points, t
    interval of the per-image difference): below :data:`SMALL_POINTS` agrees, above disagrees.
    """
    from resnet_probe.stats import mean_interval

    kept = [h for h, down in zip(config_hits, downsampling, strict=True) if not down]
    if not kept:
        return None
    costs = [(100 * (base_hits[: len(h)].mean() - h.mean()), h) for h in kept]
    costs.sort(key=lambda c: c[0])
    median, hits = costs[len(costs) // 2]
    d = 100 * (base_hits[: len(hits)].astype(float) - hits.astype(float))
    low, high = mean_interval(d, confidence)
    found = verdict(low, high, SMALL_POINTS, paper_below=True)
    claim = (f"{VEIT} (Sec. 4.1, Fig. 3: ResNet-110 on CIFAR-10) found that deleting one unit that keeps the shape "
             "leaves the test error nearly unchanged (read here as a cost under "
             f"{SMALL_POINTS:g} points)")
    measured = (f"here the median such deletion costs {median:+.2f} points (paired {100 * confidence:g} % interval "
                f"[{low:+.2f}, {high:+.2f}], {len(kept)} deletions)")
    said = {AGREES: "this run agrees", DISAGREES: "this run disagrees",
            CANNOT_TELL: f"on {len(hits)} images this run cannot tell"}[found]
    return _with_why(f"{claim}; {measured}: {said}.", found, record)


def random_k_finding(ks: Sequence[int], values: Sequence[Sequence[float]], cis: Sequence[tuple[float, float]],
                     confidence: float, record: RunRecord) -> str | None:
    """Veit et al. 2016 Fig. 5a: the error grows smoothly with the number of randomly deleted units.

    ``values[i]`` are the accuracies of the random sets at ``ks[i]``, ``cis[i]`` the interval of their
    mean. Agrees when Spearman's ρ between k and accuracy over every set is significantly negative
    and no cliff breaks the curve; a cliff is a step between neighbouring k whose two intervals do
    not overlap and that carries more than half the whole fall. Disagrees when ρ is significantly
    positive or the fall has such a cliff; cannot tell when ρ is not significant.
    """
    if len(ks) < 3:
        return None
    from scipy.stats import spearmanr

    xs = [k for k, v in zip(ks, values, strict=True) for _ in v]
    ys = [a for v in values for a in v]
    if len(set(ys)) < 2:
        return None
    rho, p = spearmanr(xs, ys)
    means = [float(np.mean(v)) for v in values]
    fall = means[0] - means[-1]
    cliffs = [i for i in range(len(ks) - 1)
              if fall > 0 and cis[i][0] > cis[i + 1][1] and means[i] - means[i + 1] > 0.5 * fall]
    significant = float(p) < 1 - confidence
    if significant and rho < 0 and not cliffs:
        found = AGREES
    elif significant and (rho > 0 or cliffs):
        found = DISAGREES
    else:
        found = CANNOT_TELL
    shape = "no step between neighbouring k both carries most of the fall and separates their intervals"
    if cliffs:
        i = cliffs[0]
        shape = (f"the step k = {ks[i]} → {ks[i + 1]} carries {100 * (means[i] - means[i + 1]) / fall:.0f} % of the "
                 "fall with intervals apart (a cliff)")
    said = {AGREES: "this run agrees", DISAGREES: "this run disagrees", CANNOT_TELL: "this run cannot tell"}[found]
    text = (f"{VEIT} (Fig. 5a) found the error growing smoothly with the number of deleted units; here Spearman's "
            f"ρ between k and accuracy over {len(ys)} random sets is {rho:+.2f} (p = {float(p):.2g}) and {shape}: "
            f"{said}.")
    return _with_why(text, found, record)


def gradients_finding(effective: tuple[int, int], ends_ci: tuple[tuple[int, int], tuple[int, int]],
                      n_units: int, record: RunRecord) -> str | None:
    """Veit et al. 2016 Fig. 6c: the gradient comes from paths much shorter than the typical path.

    ResNet-110 (54 units): paths of 5–17 units carry most of it, while half of all paths are
    longer than 27 = n/2. Agrees when the upper interval end of the effective window's longer
    end lies below n/2, disagrees when even its shorter end's lower interval end lies at or above it.
    """
    if n_units < 4:
        return None
    half = n_units / 2
    (a_lo, _a_hi), (_b_lo, b_hi) = ends_ci
    a, b = effective
    if b_hi < half:
        found = AGREES
    elif a_lo >= half:
        found = DISAGREES
    else:
        found = CANNOT_TELL
    said = {AGREES: "this run agrees", DISAGREES: "this run disagrees", CANNOT_TELL: "this run cannot tell"}[found]
    text = (f"{VEIT} (Fig. 6c, abstract) found the gradient of a ResNet-110 coming from short paths, 5–17 of its 54 "
            f"units (10–34 layers), while the typical path has n/2 = 27; here the window is {a}–{b} of {n_units} "
            f"units (interval of its longer end up to {b_hi}; n/2 = {half:g}): {said}.")
    return _with_why(text, found, record)
