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
        raw_up = float(cp._upper(np.float64(k), np.float64(n), np.float64(alpha), None))

        def head(x, k=k, n=n, alpha=alpha):
            return mp.betainc(n - k, k + 1, 0, 1 - x, regularized=True) - alpha

        lo, hi = _root(head, raw_up, increasing=False)
        assert mp.mpf(up) >= hi
    # scipy's Beta inverse alone lands above the root about half the time.
    assert raw_optimistic >= 3


def test_beta_quantile_margin_covers_the_measured_error():
    # Checked roots vs exact values: up to 9.1e-11 relative measured at
    # n <= 2**40 (the forward function's error); the margin is ten times it.
    for cls in (ClopperPearson, Jeffreys):
        assert cls._rtol >= 10 * 9.1e-11


@pytest.mark.parametrize(
    ("method", "k", "n", "alpha"),
    [
        (ClopperPearson(), 3, 5, 1e-120),  # scipy's inverse gives NaN here
        (ClopperPearson(), 2, 5, 1e-120),
        (Jeffreys(), 5, 5, 1e-300),  # b = 1/2 < 1 in the fallback
        (Jeffreys(), 3, 5, 1e-200),
    ],
)
def test_beta_inverse_nan_fallback_is_valid_and_tight(method, k, n, alpha):
    """Where scipy's Beta inverse fails the bound stays sound and useful.

    The exact lower bound solves I_p(a, b) = alpha; the returned value must
    not exceed it (the mpmath tail probability at it is <= alpha) and be
    within a factor 2 of it (not the trivial 0); the mirrored upper bound at
    n - k must not fall below its exact value (which float64 rounds to 1).
    """
    shift = 0.5 if isinstance(method, Jeffreys) else 0.0
    lo = float(method.lower(k, n, alpha))
    a, b = k + shift, n - k + (shift or 1.0)
    assert mp.betainc(a, b, 0, lo, regularized=True) <= alpha
    assert mp.betainc(a, b, 0, 2 * lo, regularized=True) > alpha
    up = float(method.upper(n - k, n, alpha))  # mirror image of lo
    assert mp.betainc(b, a, up, 1, regularized=True) <= alpha


def _binomial_cdf(m, n, p):
    """35-digit P(Bin(n, p) <= m): a sum of m + 1 positive terms, any n."""
    term = mp.exp(n * mp.log1p(-p))
    total, ratio = term, p / (1 - p)
    for j in range(m):
        term = term * (n - j) / (j + 1) * ratio
        total += term
    return total


def _cp_lower_root(k, n, alpha):
    """35-digit Clopper-Pearson lower bound: P(Bin(n, x) >= k) = alpha.

    Summed over the smaller side (k - 1 or n - k terms), so it is exact at any
    n when either count is small; the upper bound at n - k is one minus it.
    """
    if k <= n - k:
        tail = lambda x: 1 - _binomial_cdf(k - 1, n, x)  # noqa: E731
    else:
        tail = lambda x: _binomial_cdf(n - k, n, 1 - x)  # noqa: E731
    lo, hi = mp.mpf(0), mp.mpf(1)
    for _ in range(130):  # to below 1e-39 absolute
        mid = (lo + hi) / 2
        lo, hi = (lo, mid) if tail(mid) > alpha else (mid, hi)
    return lo


@pytest.mark.parametrize(
    ("k", "n", "alpha"),
    [
        (1999901122, 1999901123, 0.2527938363075802),  # upper(1): 3.5e-8 low
        (1000, 132579327, 0.25),  # scipy's lower is twice the root
        (1000, 7742984, 1.2035593867872457e-07),  # 4.2e-8 too high
    ],
)
def test_beta_inverse_is_checked_where_scipy_fails(k, n, alpha):
    """scipy's Beta inverse is wrong by far more than the 1e-9 margin here.

    Each case was found by a random search (the second by hypothesis: it
    broke monotonicity in k by a factor 2); smoothlearn must be sound and,
    before its outward rounding, within 5e-11 of the exact root (the forward
    ``betaincc`` is 4.4e-11 off at the first case, 2.2e-11 in the root).
    """
    from scipy.special import betainccinv, betaincinv

    from smoothlearn.intervals._binomial import _beta_inverse

    root = _cp_lower_root(k, n, alpha)
    a, b = float(k), float(n - k + 1)
    scipy_lo, scipy_up = betaincinv(a, b, alpha), betainccinv(b, a, alpha)
    scipy_err = max(abs(scipy_lo / root - 1), abs(scipy_up / (1 - root) - 1))
    assert scipy_err > 1e-8  # the failure this test is about is still there
    lo = _beta_inverse(a, b, alpha, upper=False)
    up = _beta_inverse(b, a, alpha, upper=True)
    assert abs(lo / root - 1) < 5e-11 and abs(up / (1 - root) - 1) < 5e-11
    cp = ClopperPearson()
    assert cp.lower(k, n, alpha) <= root
    assert cp.upper(n - k, n, alpha) >= 1 - root
    assert np.all(np.diff(cp.lower([k - 1, k, k + 1], n, alpha)) > 0)


def test_clopper_pearson_sound_at_huge_n_with_a_small_minority_count():
    """Random n up to 2**40, minority count m <= 300: sound and tight.

    This is the regime of certification (pA near 1, pB near 0).  With 30
    cases the test takes about a second; the closing note of the change
    reports the same check over tens of thousands of cases.
    """
    rng = np.random.default_rng(7)
    cp = ClopperPearson()
    for _ in range(30):
        n = int(10 ** rng.uniform(6, 12))
        m = int(10 ** rng.uniform(0, np.log10(300)))
        alpha = float(10 ** rng.uniform(-12, np.log10(0.5)))
        root = _cp_lower_root(n - m, n, alpha)
        lo, up = cp.lower(n - m, n, alpha), cp.upper(m, n, alpha)
        assert lo <= root and up >= 1 - root
        assert lo / root > 1 - 2e-9 and up / (1 - root) < 1 + 2e-9


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
    assert raw - cp.lower(61_234, 100_000, 0.01) < 2 * cp._rtol * raw
