"""Small-sample statistics for comparing models image by image: intervals, paired tests, anytime-valid accuracy."""

from __future__ import annotations

import base64
import math
import statistics
from typing import Callable, Literal, Sequence

import numpy as np
from numpy.typing import ArrayLike
from scipy import special

CsMethod = Literal["beta", "normal"]

# Bisection halvings per confidence-sequence endpoint: 64 takes a unit bracket below 1e-19, past double precision.
_BISECTION_STEPS = 64
# Largest n expected_stopping_n searches: beyond it counts stop being exact in float64.
_MAX_STOPPING_N = 2**53


def _check_confidence(confidence: float) -> float:
    if not isinstance(confidence, (int, float, np.floating)) or not 0.0 < float(confidence) < 1.0:
        raise ValueError(f"confidence must lie strictly between 0 and 1, got {confidence!r}")
    return float(confidence)


def _check_count(value: int, name: str) -> int:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)) or value < 0:
        raise ValueError(f"{name} must be a non-negative integer, got {value!r}")
    return int(value)


def _check_successes(correct: int, n: int) -> tuple[int, int]:
    correct, n = _check_count(correct, "correct"), _check_count(n, "n")
    if correct > n:
        raise ValueError(f"correct must not exceed n, got correct={correct}, n={n}")
    return correct, n


def _as_bool_vector(values: ArrayLike, name: str) -> np.ndarray:
    array = np.asarray(values)
    if array.ndim != 1:
        raise ValueError(f"{name} must be one-dimensional, got shape {array.shape}")
    if array.dtype == np.bool_:
        return array
    if array.size and not (np.issubdtype(array.dtype, np.integer) and np.isin(array, (0, 1)).all()):
        raise ValueError(f"{name} must be boolean (or 0/1 integers), got dtype {array.dtype}")
    return array.astype(bool)


def wilson_interval(correct: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson score interval for a binomial proportion, clipped to [0, 1].

    Example:
        >>> lo, hi = wilson_interval(776, 846)
        >>> round(lo, 4), round(hi, 4)
        (0.8968, 0.934)
    """
    correct, n = _check_successes(correct, n)
    confidence = _check_confidence(confidence)
    if n == 0:
        return 0.0, 1.0
    z = statistics.NormalDist().inv_cdf(0.5 + confidence / 2.0)
    p_hat = correct / n
    z2_n = z * z / n
    centre = (p_hat + z2_n / 2.0) / (1.0 + z2_n)
    half = z / (1.0 + z2_n) * math.sqrt(p_hat * (1.0 - p_hat) / n + z2_n / (4.0 * n))
    # At 0/n and n/n the end is exactly 0 or 1; centre -/+ half only reaches it up to rounding.
    lo = 0.0 if correct == 0 else max(0.0, centre - half)
    hi = 1.0 if correct == n else min(1.0, centre + half)
    return lo, hi


def mcnemar_exact(a_only: int, b_only: int) -> float:
    """Two-sided exact McNemar p-value from the discordant counts (1.0 when there are none).

    Example:
        >>> mcnemar_exact(5, 1)
        0.21875
    """
    a_only, b_only = _check_count(a_only, "a_only"), _check_count(b_only, "b_only")
    if a_only + b_only == 0:
        return 1.0
    # Binomial(n, 1/2) is symmetric, so the two-sided exact p (scipy's binomtest) is twice the
    # smaller tail; scipy.special's CDF spares the CLI the half second scipy.stats takes to import.
    return min(1.0, 2.0 * float(special.bdtr(min(a_only, b_only), a_only + b_only, 0.5)))


def paired_counts(a: np.ndarray, b: np.ndarray) -> tuple[int, int]:
    """Discordant counts (a right and b wrong, b right and a wrong) of two per-image correctness vectors."""
    a, b = _as_bool_vector(a, "a"), _as_bool_vector(b, "b")
    if a.shape != b.shape:
        raise ValueError(f"a and b must have the same length, got {a.shape[0]} and {b.shape[0]}")
    return int(np.count_nonzero(a & ~b)), int(np.count_nonzero(b & ~a))


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm-Bonferroni step-down adjusted p-values, in the input order.

    Example:
        >>> [round(p, 6) for p in holm([0.01, 0.04, 0.03, 0.005])]
        [0.03, 0.06, 0.06, 0.02]
    """
    p = np.asarray(p_values, dtype=float)
    if p.ndim != 1:
        raise ValueError(f"p_values must be a flat sequence, got shape {p.shape}")
    if np.isnan(p).any() or (p < 0).any() or (p > 1).any():
        raise ValueError("p_values must lie in [0, 1]")
    m = p.size
    order = np.argsort(p, kind="stable")
    # The running maximum keeps the step-down monotone: a hypothesis is never easier to reject than a smaller p.
    stepped = np.minimum(1.0, np.maximum.accumulate((m - np.arange(m)) * p[order]))
    adjusted = np.empty(m)
    adjusted[order] = stepped
    return adjusted.tolist()


def pack_bits(correct: np.ndarray) -> str:
    """Per-image correctness as base64 of np.packbits(bitorder="little"): image i is bit i % 8 of byte i // 8.

    Example:
        >>> pack_bits(np.array([True] + [False] * 7 + [True]))
        'AQE='
    """
    bits = _as_bool_vector(correct, "correct")
    return base64.b64encode(np.packbits(bits, bitorder="little").tobytes()).decode("ascii")


def _b64decode(text: str) -> bytes:
    """The bytes of a packed vector; ValueError for anything but valid base64 text."""
    if not isinstance(text, str):
        raise ValueError(f"text must be a str, got {type(text).__name__}")
    try:
        return base64.b64decode(text.encode("ascii"), validate=True)
    except (ValueError, UnicodeEncodeError) as exc:
        raise ValueError(f"not valid base64: {exc}") from None


def unpack_bits(text: str, n: int) -> np.ndarray:
    """Inverse of pack_bits for n images; raises ValueError on bad base64, wrong length or set padding bits."""
    n = _check_count(n, "n")
    raw = _b64decode(text)
    expected = (n + 7) // 8
    if len(raw) != expected:
        raise ValueError(f"{n} images need {expected} packed bytes, got {len(raw)}")
    bits = np.unpackbits(np.frombuffer(raw, dtype=np.uint8), bitorder="little").astype(bool)
    # Non-zero padding means the bits were packed for a longer vector: n is wrong.
    if bits[n:].any():
        raise ValueError(f"padding bits after image {n} are set: the packed vector is longer than n")
    return bits[:n]


def pack_floats(values: np.ndarray) -> str:
    """Per-example values (a continuous metric) as base64 of little-endian float64."""
    x = np.ascontiguousarray(np.asarray(values, dtype="<f8"))
    if x.ndim != 1:
        raise ValueError(f"values must be a flat vector, got shape {x.shape}")
    return base64.b64encode(x.tobytes()).decode("ascii")


def unpack_floats(text: str, n: int) -> np.ndarray:
    """Inverse of pack_floats for n values; raises ValueError on bad base64, a wrong length or non-finite values."""
    n = _check_count(n, "n")
    raw = _b64decode(text)
    if len(raw) != 8 * n:
        raise ValueError(f"{n} values need {8 * n} packed bytes, got {len(raw)}")
    x = np.frombuffer(raw, dtype="<f8").astype(np.float64)
    if not np.isfinite(x).all():
        raise ValueError("packed values hold NaN or infinity")
    return x


def mean_interval(values: ArrayLike, confidence: float = 0.95) -> tuple[float, float]:
    """Student-t interval of the mean of per-example values; (mean, mean) for fewer than 2 values or no spread.

    Example:
        >>> mean_interval([0.2, 0.4, 0.3, 0.5], 0.95)  # doctest: +ELLIPSIS
        (0.1445..., 0.5554...)
    """
    from scipy import stats as sps

    confidence = _check_confidence(confidence)
    x = np.asarray(values, dtype=float)
    if x.ndim != 1 or x.size == 0 or not np.isfinite(x).all():
        raise ValueError("values must be a non-empty flat sequence of finite numbers")
    mean = float(x.mean())
    if x.size < 2 or float(x.std()) == 0.0:
        return mean, mean
    lo, hi = sps.t.interval(confidence, x.size - 1, loc=mean, scale=sps.sem(x))
    return float(lo), float(hi)


#: random sign patterns of a paired permutation test (scipy's default)
PERMUTATION_RESAMPLES = 9999


def paired_permutation_p(
    a: ArrayLike, b: ArrayLike, *, seed: int = 0, resamples: int = PERMUTATION_RESAMPLES
) -> float:
    """Two-sided p of the mean difference ``b - a`` per example under sign flips (a paired permutation test).

    scipy.stats.permutation_test with permutation_type="samples": exact when all 2^n sign patterns fit in
    ``resamples`` (n <= 13 at the default), else seeded Monte Carlo (p never below 1 / (resamples + 1)).
    """
    from scipy import stats as sps

    x, y = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if x.shape != y.shape or x.ndim != 1:
        raise ValueError(f"paired values need equal flat shapes, got {x.shape} and {y.shape}")
    d = y - x
    if x.size == 0 or not np.any(d):
        return 1.0

    def mean_difference(p: np.ndarray, q: np.ndarray, axis: int) -> np.ndarray:
        return np.mean(q - p, axis=axis)

    res = sps.permutation_test(
        (x, y), mean_difference, permutation_type="samples", vectorized=True, n_resamples=resamples,
        alternative="two-sided", rng=np.random.default_rng(seed),
    )
    return float(min(1.0, res.pvalue))


def _resample_indices(n: int, seed: int, resamples: int) -> np.ndarray:
    if isinstance(resamples, bool) or not isinstance(resamples, (int, np.integer)) or resamples < 1:
        raise ValueError(f"resamples must be a positive integer, got {resamples!r}")
    return np.random.default_rng(seed).integers(0, n, size=(int(resamples), n))


def _percentiles(samples: np.ndarray, confidence: float) -> tuple[float, float]:
    lo, hi = np.quantile(samples, [(1.0 - confidence) / 2.0, (1.0 + confidence) / 2.0])
    return float(lo), float(hi)


def bootstrap_mean_interval(
    values: Sequence[float], confidence: float = 0.95, *, seed: int = 0, resamples: int = 2000
) -> tuple[float, float]:
    """Percentile-bootstrap interval of the mean, deterministic given seed; (mean, mean) for fewer than 2 values.

    Example:
        >>> lo, hi = bootstrap_mean_interval([0.91, 0.93, 0.92, 0.95, 0.90], seed=0)
        >>> lo <= 0.922 <= hi
        True
    """
    confidence = _check_confidence(confidence)
    x = np.asarray(values, dtype=float)
    if x.ndim != 1 or x.size == 0 or not np.isfinite(x).all():
        raise ValueError("values must be a non-empty flat sequence of finite numbers")
    if x.size < 2:
        mean = float(x.mean())
        return mean, mean
    means = x[_resample_indices(x.size, seed, resamples)].mean(axis=1)
    return _percentiles(means, confidence)


def bootstrap_interval(
    values: ArrayLike,
    statistic: Callable[[np.ndarray], float],
    confidence: float = 0.95,
    *,
    seed: int = 0,
    resamples: int = 2000,
) -> tuple[float, float]:
    """Percentile-bootstrap interval of statistic over resampled rows (axis 0) of a 1-D or 2-D array."""
    confidence = _check_confidence(confidence)
    x = np.asarray(values, dtype=float)
    if x.ndim not in (1, 2) or x.shape[0] == 0:
        raise ValueError(f"values must be a non-empty 1-D or 2-D array, got shape {x.shape}")
    if x.shape[0] < 2:
        value = float(statistic(x))
        return value, value
    indices = _resample_indices(x.shape[0], seed, resamples)
    samples = np.array([float(statistic(x[rows])) for rows in indices])
    if not np.isfinite(samples).all():
        raise ValueError("statistic returned a non-finite value on a bootstrap resample")
    return _percentiles(samples, confidence)


# ---------------------------------------------------------------------------------------------------------------
# Anytime-valid confidence sequences for an accuracy p observed one image at a time.
#
# Both constructions are "test every p with a non-negative martingale and keep the p's not rejected".  Under the
# true p, M_t(p) is a non-negative (super)martingale with M_0 = 1, so Ville's inequality (Ville 1939) gives
# P(exists t: M_t(p) >= 1/alpha) <= alpha: the set {p : M_t(p) < 1/alpha} covers p at every t simultaneously,
# hence also at any data-dependent stopping time ("stop once the interval is narrow enough" stays valid).
#
# method="beta" (default): Robbins' mixture of Bernoulli likelihood ratios over a uniform prior on the alternative
#   (Robbins 1970, "Statistical methods related to the law of the iterated logarithm", Ann. Math. Statist. 41(5),
#   section 3; Howard et al. 2021, Ann. Statist. 49(2), conjugate mixtures):
#       M_t(p) = int_0^1 q^S (1-q)^(t-S) dq / (p^S (1-p)^(t-S)) = 1 / ((t+1) * C(t, S) * p^S (1-p)^(t-S)),
#   so p is excluded once (t+1) * Binomial(t, p).pmf(S) <= alpha.  log M_t is strictly convex in p with its minimum
#   at S/t, so the kept set is an interval; its ends are found by bisection and the outer end of the final bracket
#   is returned, which errs on the wide (valid) side.  It uses the exact Bernoulli likelihood, so it adapts to the
#   variance p(1-p): about 1.8-2.3x the fixed-n Wilson half-width for any p (n <= 50k).  No tuning: planned_n unused.
#
# method="normal": the two-sided normal-mixture boundary of Howard, Ramdas, McAuliffe & Sekhon (2021),
#   "Time-uniform, nonparametric, nonasymptotic confidence sequences", Ann. Statist. 49(2), section 3.2, eq. (14):
#       |S_t - t p| < sqrt((V_t + rho) log((V_t + rho) / (rho alpha^2))),  V_t = t sigma^2,  sigma^2 = 1/4,
#   from mixing exp(lambda (S_t - t p) - lambda^2 V_t / 2) over lambda ~ N(0, 1/rho); Bernoulli increments are
#   1/4-sub-Gaussian by Hoeffding's lemma, whatever p is.  The boundary does not depend on p, so the set is the
#   interval S_t/t +- boundary/t.  rho only moves where it is tightest: we take the exact minimiser of the boundary
#   at V = sigma^2 planned_n (setting d/drho of the squared boundary to 0 gives x - log(1 + x) = 2 log(1/alpha) with
#   x = V / rho, i.e. x = -W_{-1}(-alpha^2 / e) - 1, about 8.21 at alpha = 0.05).  The simpler
#   rho = sigma^2 m / (2 log(1/alpha)) drops the log(1 + x) term: rho 1.37x too large, boundary 0.3% wider.
#   As sigma^2 = 1/4 is the worst case, this is ~3x Wilson at p = 0.93 and ~4.5x at p = 0.99, but ~1.55x at p = 0.5
#   near planned_n (where "beta" is ~1.8x).
# ---------------------------------------------------------------------------------------------------------------


def _normal_mixture_rho(alpha: float, planned_n: int) -> float:
    x = float(-special.lambertw(-alpha * alpha / math.e, k=-1).real) - 1.0
    return 0.25 * planned_n / x


def _cs_bounds(
    correct: np.ndarray, n: np.ndarray, alpha: float, planned_n: int, method: str
) -> tuple[np.ndarray, np.ndarray]:
    # correct and n are float arrays so expected_stopping_n can evaluate the CS at a fractional count p * n.
    correct, n = np.broadcast_arrays(np.asarray(correct, dtype=float), np.asarray(n, dtype=float))
    empty = n == 0
    safe_n = np.where(empty, 1.0, n)
    p_hat = correct / safe_n
    if method == "normal":
        rho = _normal_mixture_rho(alpha, planned_n)
        v_plus_rho = 0.25 * n + rho
        radius = np.sqrt(v_plus_rho * np.log(v_plus_rho / (rho * alpha**2)))
        lo, hi = p_hat - radius / safe_n, p_hat + radius / safe_n
    else:
        wrong = n - correct
        threshold = special.betaln(correct + 1.0, wrong + 1.0) + math.log(alpha)

        def kept(p: np.ndarray) -> np.ndarray:
            return special.xlogy(correct, p) + special.xlog1py(wrong, -p) > threshold

        # Lower end: bracket [out, in] = [0, p_hat]; upper end: [in, out] = [p_hat, 1].
        lo_out, lo_in = np.zeros_like(p_hat), p_hat.copy()
        hi_in, hi_out = p_hat.copy(), np.ones_like(p_hat)
        for _ in range(_BISECTION_STEPS):
            mid = (lo_out + lo_in) / 2.0
            inside = kept(mid)
            lo_in, lo_out = np.where(inside, mid, lo_in), np.where(inside, lo_out, mid)
            mid = (hi_in + hi_out) / 2.0
            inside = kept(mid)
            hi_in, hi_out = np.where(inside, mid, hi_in), np.where(inside, hi_out, mid)
        lo = np.where(correct == 0, 0.0, lo_out)
        hi = np.where(wrong == 0, 1.0, hi_out)
    lo = np.where(empty, 0.0, np.clip(lo, 0.0, 1.0))
    hi = np.where(empty, 1.0, np.clip(hi, 0.0, 1.0))
    return lo, hi


def _check_cs_options(confidence: float, planned_n: int, method: str) -> float:
    if method not in ("beta", "normal"):
        raise ValueError(f"method must be 'beta' or 'normal', got {method!r}")
    if _check_count(planned_n, "planned_n") == 0:
        raise ValueError("planned_n must be positive")
    return 1.0 - _check_confidence(confidence)


def confidence_sequence_bounds(
    correct: ArrayLike,
    n: ArrayLike,
    confidence: float = 0.95,
    *,
    planned_n: int = 1000,
    method: CsMethod = "beta",
) -> tuple[np.ndarray, np.ndarray]:
    """Vectorised confidence_sequence: element-wise (lower, upper) arrays for broadcastable counts."""
    alpha = _check_cs_options(confidence, planned_n, method)
    correct_a, n_a = np.asarray(correct), np.asarray(n)
    for name, array in (("correct", correct_a), ("n", n_a)):
        if array.dtype == np.bool_ or not np.issubdtype(array.dtype, np.integer):
            raise ValueError(f"{name} must hold integers, got dtype {array.dtype}")
    if (correct_a < 0).any() or (correct_a > n_a).any():
        raise ValueError("need 0 <= correct <= n element-wise")
    return _cs_bounds(correct_a, n_a, alpha, planned_n, method)


def confidence_sequence(
    correct: int,
    n: int,
    confidence: float = 0.95,
    *,
    planned_n: int = 1000,
    method: CsMethod = "beta",
) -> tuple[float, float]:
    """Anytime-valid interval for accuracy after n images: covers the true p at every n at once with prob >= confidence.

    method="beta" is Robbins' uniform-mixture likelihood-ratio sequence (no tuning); method="normal" is the
    Howard et al. (2021) sub-Gaussian normal mixture, tightest near planned_n.  See the comment block above.

    Example:
        >>> lo, hi = confidence_sequence(776, 846)
        >>> round(lo, 4), round(hi, 4)
        (0.8781, 0.9476)
    """
    correct, n = _check_successes(correct, n)
    lo, hi = confidence_sequence_bounds(correct, n, confidence, planned_n=planned_n, method=method)
    return float(lo), float(hi)


def stop_when_width(
    tolerance: float, confidence: float = 0.95, planned_n: int = 1000, *, method: CsMethod = "beta"
) -> Callable[[int, int], bool]:
    """Predicate (correct, n) -> True once the confidence-sequence half-width (hi - lo) / 2 is <= tolerance.

    Example:
        >>> done = stop_when_width(0.025)
        >>> done(186, 200), done(1860, 2000)
        (False, True)
    """
    if not isinstance(tolerance, (int, float, np.floating)) or not tolerance > 0:
        raise ValueError(f"tolerance must be positive, got {tolerance!r}")
    _check_cs_options(confidence, planned_n, method)

    def done(correct: int, n: int) -> bool:
        lo, hi = confidence_sequence(correct, n, confidence, planned_n=planned_n, method=method)
        return (hi - lo) / 2.0 <= tolerance

    return done


def expected_stopping_n(
    p: float, tolerance: float, confidence: float = 0.95, planned_n: int = 1000, *, method: CsMethod = "beta"
) -> int:
    """Smallest n whose confidence-sequence half-width is <= tolerance when the running accuracy equals p exactly.

    Deterministic approximation of when stop_when_width fires (it ignores sampling noise in the running accuracy);
    found by doubling then bisection, since the half-width at a fixed accuracy shrinks with n.

    Example:
        >>> expected_stopping_n(0.93, 0.01)
        10514
    """
    if not isinstance(p, (int, float, np.floating)) or not 0.0 <= p <= 1.0:
        raise ValueError(f"p must lie in [0, 1], got {p!r}")
    if not isinstance(tolerance, (int, float, np.floating)) or not tolerance > 0:
        raise ValueError(f"tolerance must be positive, got {tolerance!r}")
    alpha = _check_cs_options(confidence, planned_n, method)

    def fits(n: int) -> bool:
        lo, hi = _cs_bounds(np.array(p * n), np.array(float(n)), alpha, planned_n, method)
        return float(hi - lo) / 2.0 <= tolerance

    if fits(0):
        return 0
    upper = 1
    while not fits(upper):
        if upper >= _MAX_STOPPING_N:
            raise ValueError(f"tolerance {tolerance} is not reached below n = {_MAX_STOPPING_N}")
        upper *= 2
    lower = upper // 2  # fits(lower) is False (or lower == 0, already checked)
    while upper - lower > 1:
        middle = (lower + upper) // 2
        lower, upper = (lower, middle) if fits(middle) else (middle, upper)
    return upper
