"""resnet_probe.stats against independent computations: closed forms, scipy, hand-worked cases, simulation."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
from scipy import optimize
from scipy import stats as sps

from resnet_probe.stats import (
    CsMethod,
    bootstrap_interval,
    bootstrap_mean_interval,
    confidence_sequence,
    confidence_sequence_bounds,
    expected_stopping_n,
    holm,
    mcnemar_exact,
    pack_bits,
    paired_counts,
    stop_when_width,
    unpack_bits,
    wilson_interval,
)

METHODS: tuple[CsMethod, ...] = ("beta", "normal")


def _wilson_by_quadratic(correct: int, n: int, confidence: float) -> tuple[float, float]:
    """Wilson's bounds as the roots of (p_hat - p)^2 = z^2 p (1 - p) / n, a different route from the module's."""
    z = sps.norm.ppf(1 - (1 - confidence) / 2)
    p_hat = correct / n
    a, b, c = 1 + z * z / n, -(2 * p_hat + z * z / n), p_hat * p_hat
    disc = math.sqrt(b * b - 4 * a * c)
    return (-b - disc) / (2 * a), (-b + disc) / (2 * a)


# --- Wilson -----------------------------------------------------------------------------------------------------


def test_wilson_hand_checked_case() -> None:
    lo, hi = wilson_interval(776, 846, 0.95)
    ref_lo, ref_hi = _wilson_by_quadratic(776, 846, 0.95)
    assert lo == pytest.approx(ref_lo, abs=1e-9) and hi == pytest.approx(ref_hi, abs=1e-9)
    assert (lo, hi) == pytest.approx((0.8967537771768485, 0.9339894075339802), abs=1e-9)


@pytest.mark.parametrize("correct, n", [(0, 1), (1, 1), (0, 10), (3, 10), (10, 10), (776, 846), (9300, 10000)])
@pytest.mark.parametrize("confidence", [0.8, 0.95, 0.99])
def test_wilson_matches_scipy_and_closed_form(correct: int, n: int, confidence: float) -> None:
    ref = sps.binomtest(correct, n).proportion_ci(confidence, method="wilson")
    lo, hi = wilson_interval(correct, n, confidence)
    assert lo == pytest.approx(ref.low, abs=1e-12) and hi == pytest.approx(ref.high, abs=1e-12)
    q_lo, q_hi = _wilson_by_quadratic(correct, n, confidence)
    assert lo == pytest.approx(max(0.0, q_lo), abs=1e-9) and hi == pytest.approx(min(1.0, q_hi), abs=1e-9)
    assert 0.0 <= lo <= correct / n <= hi <= 1.0


def test_wilson_empty_and_invalid() -> None:
    assert wilson_interval(0, 0) == (0.0, 1.0)
    bad: list[tuple[Any, ...]] = [(5, 4), (-1, 4), (1.5, 4), (1, 4, 0.0), (1, 4, 1.0), (True, 4)]
    for args in bad:
        with pytest.raises(ValueError):
            wilson_interval(*args)


# --- McNemar, paired counts, Holm -------------------------------------------------------------------------------


def test_mcnemar_hand_computed() -> None:
    assert mcnemar_exact(3, 0) == pytest.approx(0.25, abs=1e-15)
    assert mcnemar_exact(0, 3) == pytest.approx(0.25, abs=1e-15)
    assert mcnemar_exact(5, 1) == pytest.approx(2 * (math.comb(6, 0) + math.comb(6, 1)) / 2**6, abs=1e-15)
    assert mcnemar_exact(5, 1) == pytest.approx(0.21875, abs=1e-15)
    assert mcnemar_exact(0, 0) == 1.0
    assert mcnemar_exact(4, 4) == 1.0
    # 12 vs 3 by direct binomial tail: 2 * sum_{k<=3} C(15, k) / 2^15.
    assert mcnemar_exact(12, 3) == pytest.approx(2 * sum(math.comb(15, k) for k in range(4)) / 2**15, abs=1e-15)
    with pytest.raises(ValueError):
        mcnemar_exact(-1, 2)


def test_paired_counts() -> None:
    a = np.array([True, True, False, False, True, False])
    b = np.array([True, False, True, False, False, False])
    assert paired_counts(a, b) == (2, 1)
    assert paired_counts(b, a) == (1, 2)
    assert paired_counts(a.astype(np.uint8), b.astype(int)) == (2, 1)
    with pytest.raises(ValueError):
        paired_counts(a, b[:-1])
    with pytest.raises(ValueError):
        paired_counts(np.array([0.5, 1.0]), np.array([True, False]))


def test_holm_hand_worked() -> None:
    assert holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02], abs=1e-15)
    assert holm([]) == []
    assert holm([0.2]) == pytest.approx([0.2])
    assert holm([0.5, 0.6, 0.01]) == pytest.approx([1.0, 1.0, 0.03])


def test_holm_monotone_and_capped() -> None:
    p = np.random.default_rng(3).uniform(0, 0.3, size=25)
    adjusted = np.array(holm(p.tolist()))
    order = np.argsort(p)
    assert (np.diff(adjusted[order]) >= 0).all()
    assert (adjusted >= p).all() and (adjusted <= 1.0).all()
    for bad in ([0.1, float("nan")], [1.2], [-0.1]):
        with pytest.raises(ValueError):
            holm(bad)


# --- packed correctness ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("length", [0, 1, 7, 8, 9, 846])
def test_pack_round_trip(length: int) -> None:
    bits = np.random.default_rng(length).random(length) < 0.9
    text = pack_bits(bits)
    assert isinstance(text, str)
    out = unpack_bits(text, length)
    assert out.dtype == np.bool_ and out.shape == (length,)
    assert np.array_equal(out, bits)


def test_pack_documented_bit_order() -> None:
    # Little-endian: image i is bit (i % 8) of byte (i // 8).
    assert pack_bits(np.array([True] + [False] * 7 + [True])) == "AQE="
    assert pack_bits(np.array([False, True])) == "Ag=="
    assert pack_bits(np.array([], dtype=bool)) == ""


def test_unpack_rejects_bad_input() -> None:
    text = pack_bits(np.ones(846, dtype=bool))
    for n in (845 - 8, 900):  # wrong byte count
        with pytest.raises(ValueError):
            unpack_bits(text, n)
    with pytest.raises(ValueError):  # same byte count, but set bits beyond n
        unpack_bits(text, 842)
    with pytest.raises(ValueError):
        unpack_bits("not base64!", 8)
    with pytest.raises(ValueError):
        unpack_bits(text, -1)


# --- bootstrap ----------------------------------------------------------------------------------------------------


def test_bootstrap_mean_deterministic_and_contains_mean() -> None:
    values = np.random.default_rng(11).normal(0.9, 0.02, size=40).tolist()
    first = bootstrap_mean_interval(values, seed=7)
    assert first == bootstrap_mean_interval(values, seed=7)
    assert first != bootstrap_mean_interval(values, seed=8)
    lo, hi = first
    assert lo < float(np.mean(values)) < hi
    # Roughly the normal-theory interval for a mean of 40 values.
    se = np.std(values, ddof=1) / math.sqrt(len(values))
    assert hi - lo == pytest.approx(2 * 1.96 * se, rel=0.2)


def test_bootstrap_edge_cases() -> None:
    assert bootstrap_mean_interval([0.5]) == (0.5, 0.5)
    assert bootstrap_mean_interval([1.0, 1.0, 1.0]) == (1.0, 1.0)
    for bad in ([], [1.0, float("nan")]):
        with pytest.raises(ValueError):
            bootstrap_mean_interval(bad)
    with pytest.raises(ValueError):
        bootstrap_mean_interval([1.0, 2.0], resamples=0)


def test_bootstrap_interval_general_matches_mean_case() -> None:
    values = np.random.default_rng(5).random(30)
    general = bootstrap_interval(values, np.mean, seed=3, resamples=500)
    assert general == pytest.approx(bootstrap_mean_interval(values.tolist(), seed=3, resamples=500), abs=1e-12)
    # 2-D: rows are resampled together, so a statistic of column 0 sees the same resamples as the 1-D case.
    rows = np.column_stack([values, 1 - values])
    two_d = bootstrap_interval(rows, lambda a: float(a[:, 0].mean()), seed=3, resamples=500)
    assert two_d == pytest.approx(general, abs=1e-12)
    assert bootstrap_interval(rows[:1], lambda a: float(a.sum())) == (1.0, 1.0)


# --- confidence sequences ---------------------------------------------------------------------------------------


def _normal_mixture_reference(correct: int, n: int, alpha: float, planned_n: int) -> tuple[float, float]:
    """Howard et al. (2021) eq. (14) with rho minimising the boundary at t = planned_n, solved by brentq here."""
    x = optimize.brentq(lambda x: x - math.log1p(x) - 2 * math.log(1 / alpha), 1e-9, 1e3)
    rho = 0.25 * planned_n / x
    v = 0.25 * n
    radius = math.sqrt((v + rho) * math.log((v + rho) / (rho * alpha**2))) / n
    return max(0.0, correct / n - radius), min(1.0, correct / n + radius)


@pytest.mark.parametrize("correct, n, planned_n", [(776, 846, 1000), (50, 100, 1000), (9300, 10000, 5000)])
def test_normal_mixture_matches_closed_form(correct: int, n: int, planned_n: int) -> None:
    got = confidence_sequence(correct, n, planned_n=planned_n, method="normal")
    assert got == pytest.approx(_normal_mixture_reference(correct, n, 0.05, planned_n), abs=1e-12)


def test_normal_mixture_rho_is_tightest_at_planned_n() -> None:
    def radius(n: int, rho: float) -> float:
        return math.sqrt((n / 4 + rho) * math.log((n / 4 + rho) / (rho * 0.05**2)))

    lo, hi = confidence_sequence(500, 1000, planned_n=1000, method="normal")
    rho = (0.25 * 1000) / optimize.brentq(lambda x: x - math.log1p(x) - 2 * math.log(20), 1e-9, 1e3)
    assert (hi - lo) / 2 * 1000 == pytest.approx(radius(1000, rho), rel=1e-12)
    assert radius(1000, rho) < min(radius(1000, rho * 1.05), radius(1000, rho / 1.05))


def test_beta_mixture_endpoints_solve_robbins_equation() -> None:
    # Robbins (1970): p is excluded once (n + 1) * Binomial(n, p).pmf(S) <= alpha; computed here with scipy.stats.
    lo, hi = confidence_sequence(776, 846)
    for end in (lo, hi):
        assert 847 * sps.binom.pmf(776, 846, end) == pytest.approx(0.05, rel=1e-6)
    assert 847 * sps.binom.pmf(776, 846, lo + 1e-4) > 0.05 > 847 * sps.binom.pmf(776, 846, lo - 1e-4)
    assert 847 * sps.binom.pmf(776, 846, hi - 1e-4) > 0.05 > 847 * sps.binom.pmf(776, 846, hi + 1e-4)
    # All correct: the upper end is 1 and the lower solves (n + 1) p^n = alpha.
    lo, hi = confidence_sequence(50, 50)
    assert hi == 1.0 and lo == pytest.approx((0.05 / 51) ** (1 / 50), abs=1e-12)


def _time_uniform_coverage(p: float, streams: int, length: int, seed: int) -> dict[str, float]:
    """Fraction of simulated streams whose true p stays inside the CS after every single observation."""
    rng = np.random.default_rng(seed)
    correct = np.cumsum(rng.random((streams, length)) < p, axis=1)
    n = np.broadcast_to(np.arange(1, length + 1), correct.shape)
    # The CS depends only on (correct, n): evaluate each distinct pair once.
    keys, inverse = np.unique(n * (length + 1) + correct, return_inverse=True)
    coverage: dict[str, float] = {}
    for method in METHODS:
        lo, hi = confidence_sequence_bounds(keys % (length + 1), keys // (length + 1), 0.95, method=method)
        inside = ((lo <= p) & (p <= hi))[inverse.reshape(correct.shape)]
        coverage[method] = float(inside.all(axis=1).mean())
    return coverage


@pytest.mark.parametrize("p", [0.5, 0.9, 0.93])
def test_confidence_sequence_time_uniform_coverage(p: float) -> None:
    coverage = _time_uniform_coverage(p, streams=2000, length=2000, seed=int(p * 1000))
    for method in METHODS:
        assert coverage[method] >= 0.95, (method, coverage)


def test_pointwise_intervals_would_fail_time_uniformly() -> None:
    # Control for the simulation: checking the fixed-n Wilson interval at every n loses far more than 5% of streams.
    rng = np.random.default_rng(1)
    correct = np.cumsum(rng.random((500, 2000)) < 0.9, axis=1)
    n = np.arange(1, 2001)
    z = sps.norm.ppf(0.975)
    p_hat = correct / n
    centre = (p_hat + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * np.sqrt(p_hat * (1 - p_hat) / n + z * z / (4 * n * n))
    covered = (np.abs(centre - 0.9) <= half).all(axis=1).mean()
    assert covered < 0.8


@pytest.mark.parametrize("method", METHODS)
def test_confidence_sequence_wider_than_wilson_and_shrinking(method: CsMethod) -> None:
    halves = []
    for n in (50, 100, 846, 1000, 10000, 50000):
        for p in (0.0, 0.3, 0.5, 0.93, 1.0):
            correct = round(p * n)
            lo, hi = confidence_sequence(correct, n, method=method)
            w_lo, w_hi = wilson_interval(correct, n)
            assert lo <= correct / n <= hi
            assert hi - lo > w_hi - w_lo
        lo, hi = confidence_sequence(round(0.93 * n), n, method=method)
        halves.append((hi - lo) / 2)
    assert (np.diff(halves) < 0).all()
    assert confidence_sequence(0, 0, method=method) == (0.0, 1.0)


def test_confidence_sequence_beta_beats_normal_at_high_accuracy() -> None:
    beta = confidence_sequence(9300, 10000)
    normal = confidence_sequence(9300, 10000, method="normal")
    assert beta[1] - beta[0] < 0.7 * (normal[1] - normal[0])


def test_confidence_sequence_validation() -> None:
    bad: list[dict[str, Any]] = [{"method": "hoeffding"}, {"planned_n": 0}, {"confidence": 1.0}]
    for kwargs in bad:
        with pytest.raises(ValueError):
            confidence_sequence(5, 10, **kwargs)
    with pytest.raises(ValueError):
        confidence_sequence(11, 10)
    with pytest.raises(ValueError):
        confidence_sequence_bounds(np.array([0.5]), np.array([1]))


@pytest.mark.parametrize("method", METHODS)
def test_expected_stopping_n_inverts_half_width(method: CsMethod) -> None:
    lo, hi = confidence_sequence(900, 1000, method=method)
    tolerance = (hi - lo) / 2
    assert expected_stopping_n(0.9, tolerance, method=method) == 1000
    assert expected_stopping_n(0.9, tolerance * 1.000001, method=method) <= 1000
    assert expected_stopping_n(0.9, tolerance / 2, method=method) > 3000
    assert expected_stopping_n(0.9, 0.5, method=method) == 0


def test_stop_when_width() -> None:
    done = stop_when_width(0.025)
    assert not done(93, 100)
    assert done(1860, 2000)
    n = expected_stopping_n(0.5, 0.025)
    assert done(n // 2, n) and not done(n // 4, n // 2)
    with pytest.raises(ValueError):
        stop_when_width(0.0)
    with pytest.raises(ValueError):
        stop_when_width(0.01, method="nope")  # type: ignore[arg-type]
