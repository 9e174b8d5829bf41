"""Outward rounding: floating point can shrink a certificate, never grow it.

References are computed with mpmath at 35 significant digits, independent of
scipy.  Each test also checks that the *unrounded* float64 value is on the
wrong side for some of the cases, so it can fail: without the rounding of
smoothlearn._rounding these tests do fail.
"""

from __future__ import annotations

import mpmath as mp
import numpy as np
import pytest
from scipy.special import ndtri
from scipy.stats import binomtest

from smoothlearn._rounding import RADIUS_RTOL, round_down, round_up
from smoothlearn.intervals import (
    Bonferroni,
    ClopperPearson,
    EmpiricalBernstein,
    Hoeffding,
    Jeffreys,
    Wilson,
)
from smoothlearn.radius import gaussian_radius, lipschitz_radius
from smoothlearn.smoothed import _predict_p_values

mp.mp.dps = 35


def _root(f, x0, increasing):
    """Root of a monotone mpmath function bracketed by x0 * (1 -+ 1e-9)."""
    lo = mp.mpf(x0) * (1 - mp.mpf(10) ** -9)
    hi = min(mp.mpf(x0) * (1 + mp.mpf(10) ** -9), mp.mpf(1))
    assert (f(lo) < 0) == increasing and (f(hi) > 0) == increasing
    for _ in range(45):  # bracket below 1e-22 relative
        mid = (lo + hi) / 2
        if (f(mid) > 0) == increasing:
            hi = mid
        else:
            lo = mid
    return lo, hi


def _cases(seed, size):
    rng = np.random.default_rng(seed)
    for _ in range(size):
        n = int(rng.integers(20, 400))
        k = int(rng.integers(1, n))
        yield k, n, float(10 ** rng.uniform(-30, np.log10(0.5)))


def test_clopper_pearson_is_never_optimistic():
    """lower <= exact root of I_p(k, n-k+1) = alpha, upper >= its mirror."""
    cp = ClopperPearson()
    raw_optimistic = 0
    for k, n, alpha in _cases(0, 24):
        raw = float(cp._lower(np.float64(k), np.float64(n), np.float64(alpha), None))

        def tail(x, k=k, n=n, alpha=alpha):
            return mp.betainc(k, n - k + 1, 0, x, regularized=True) - alpha

        lo, hi = _root(tail, raw, increasing=True)
        assert mp.mpf(float(cp.lower(k, n, alpha))) <= lo
        raw_optimistic += mp.mpf(float(raw)) > hi
        # Upper bound: P(Bin(n, p) <= k) = alpha, i.e. I_{1-p}(n-k, k+1) = alpha.
        up = float(cp.upper(k, n, alpha))

        def head(x, k=k, n=n, alpha=alpha):
            return mp.betainc(n - k, k + 1, 0, 1 - x, regularized=True) - alpha

        lo, hi = _root(head, up, increasing=False)
        assert mp.mpf(up) >= hi
    # scipy's Beta inverse alone lands above the root about half the time.
    assert raw_optimistic >= 3


def test_beta_quantile_margin_covers_the_measured_error():
    # 35-digit roots vs scipy: up to ~630 ulps measured (smoothlearn._rounding);
    # the 1e-10 margin is 450,000 ulps.
    for cls in (ClopperPearson, Jeffreys):
        assert cls._rtol >= 1e3 * 630 * np.finfo(float).eps / 2


def test_reflected_upper_bound_is_not_optimistic():
    # Wilson's upper bound is computed as 1 - lower(n - k).  At k = 0 the exact
    # value is z^2 / (n + z^2), 1e-15 at n = 2**53: an absolute error of one
    # ulp of 1 in the lower bound is a relative 10% of it.  Rounding the lower
    # bound outward before reflecting keeps the result above the exact one.
    n, alpha = 2**53, 0.001
    z = mp.sqrt(2) * mp.erfinv(1 - 2 * mp.mpf(alpha))
    exact = z**2 / (n + z**2)
    up = Wilson().upper(0, n, alpha)
    assert mp.mpf(float(up)) >= exact
    assert float(up) < 1e-14  # exact 1.06e-15, plus the 16-ulp margin of 1
    b = Bonferroni(binomial=Wilson()).bound([[90, 1]], [[n, 0]], n, alpha)
    assert np.isfinite(gaussian_radius(b.pA_lower, b.pB_upper, 1.0))


def test_round_helpers_move_outward_and_stay_in_unit_interval():
    p = np.array([0.0, 1e-300, 0.3, 1.0 - 1e-16, 1.0])
    assert np.all(round_down(p) <= p) and np.all(round_down(p)[1:] < p[1:])
    assert np.all(round_up(p) >= p) and np.all(round_up(p)[:-1] > p[:-1])
    for out in (round_down(p), round_up(p), round_down(p, 1e-10)):
        assert np.all((out >= 0) & (out <= 1))


def _exact_radius(pA, pB, sigma):
    z = lambda p: mp.sqrt(2) * mp.erfinv(2 * mp.mpf(p) - 1)  # noqa: E731
    return mp.mpf(sigma) / 2 * (z(pA) - z(pB))


def test_gaussian_radius_is_never_above_the_exact_one():
    rng = np.random.default_rng(1)
    raw_above = 0
    for _ in range(200):
        pA = float(rng.uniform(0.5, 1.0))
        pB = float(rng.uniform(1e-12, 1.0 - pA))
        sigma = float(rng.uniform(0.1, 2.0))
        exact = _exact_radius(pA, pB, sigma)
        assert mp.mpf(float(gaussian_radius(pA, pB, sigma))) <= exact
        assert mp.mpf(float(lipschitz_radius(pA, pB, sigma, np.inf))) <= exact
        raw = 0.5 * sigma * (ndtri(pA) - ndtri(pB))
        raw_above += mp.mpf(float(raw)) > exact
    assert raw_above >= 20  # the float64 formula alone errs both ways
    # The slack is tiny: a relative 3e-14 of a typical radius.
    r = gaussian_radius(0.99, 0.005, 0.5)
    assert 0 < float(_exact_radius(0.99, 0.005, 0.5)) - r < 3e-14 * r
    assert RADIUS_RTOL < 1e-14


@pytest.mark.parametrize("n_a,n_b", [(60, 40), (70, 30), (5, 0), (527, 473)])
def test_predict_p_value_is_never_below_the_exact_test(n_a, n_b):
    _, p = _predict_p_values(np.array([[n_a, n_b]]))
    assert p[0] >= binomtest(n_a, n_a + n_b, 0.5).pvalue
    exact = min(
        1,
        2
        * mp.fsum(mp.binomial(n_a + n_b, i) for i in range(n_b + 1))
        / mp.mpf(2) ** (n_a + n_b),
    )
    assert mp.mpf(float(p[0])) >= exact


def test_soft_score_bounds_cover_the_summation_error():
    # A float64 sum of n scores in [0, 1] is off by up to n eps relative, so
    # methods for soft scores move their bounds by n eps more.
    eps = np.finfo(float).eps
    for est in (Hoeffding(), EmpiricalBernstein()):
        k, n, sq = 61_234.5, 100_000, 40_000.25
        raw_lo = est._lower(*np.broadcast_arrays(k, n, 0.01, sq))
        assert est.lower(k, n, 0.01, sq) <= raw_lo - n * eps
        raw_up = est._upper(*np.broadcast_arrays(k, n, 0.01, sq))
        assert est.upper(k, n, 0.01, sq) >= raw_up + n * eps
    # Counts are exact: Clopper-Pearson pays only its relative margin.
    cp = ClopperPearson()
    raw = cp._lower(*np.broadcast_arrays(61_234.0, 100_000.0, 0.01, 0.0))
    assert raw - cp.lower(61_234, 100_000, 0.01) < 2e-10 * raw
