"""Tests of smoothlearn.stats: exact coverage, expected width, Monte-Carlo validity."""

import dataclasses

import numpy as np
import pytest
from scipy.stats import binom
from statsmodels.stats.proportion import proportion_confint

from smoothlearn.intervals import ClopperPearson, IntervalEstimator, TopClass, Wilson
from smoothlearn.stats import (
    CoverageResult,
    ValidityResult,
    WidthResult,
    _pmf_expectation,
    binomial_coverage,
    expected_width,
    procedure_validity,
)


def _brute(method, p, n, alpha, side):
    """Coverage and width by an explicit sum, bounds from statsmodels."""
    k = np.arange(n + 1)
    # statsmodels' alpha is two-sided: 2 * alpha gives one-sided bounds at alpha.
    a = alpha if side == "two-sided" else 2 * alpha
    lo, hi = proportion_confint(k, n, alpha=a, method=method)
    # Wilson's bounds at k = 0 and k = n are exactly 0 and 1 mathematically;
    # statsmodels leaves float rounding there (e.g. 1e-17), smoothlearn does not.
    lo = np.where(k == 0, 0.0, lo)
    hi = np.where(k == n, 1.0, hi)
    if side == "lower":
        hi = np.ones(n + 1)
    if side == "upper":
        lo = np.zeros(n + 1)
    cov, wid = [], []
    for pi in np.atleast_1d(p):
        pmf = binom.pmf(k, n, pi)
        cov.append(np.sum(pmf * ((lo <= pi) & (pi <= hi))))
        w = {"two-sided": hi - lo, "lower": k / n - lo, "upper": hi - k / n}[side]
        wid.append(np.sum(pmf * w))
    return np.array(cov), np.array(wid)


@pytest.mark.parametrize("side", ["lower", "upper", "two-sided"])
@pytest.mark.parametrize(
    ("method", "cls"), [("beta", "clopper_pearson"), ("wilson", Wilson())]
)
def test_coverage_and_width_match_brute_force(side, method, cls):
    p = np.array([0.0, 0.013, 0.2, 0.5, 0.77, 0.99, 1.0])
    for n in (1, 9, 40):
        cov_ref, wid_ref = _brute(method, p, n, 0.05, side)
        cov = binomial_coverage(cls, p, n, 0.05, side)
        wid = expected_width(cls, p, n, 0.05, side)
        np.testing.assert_allclose(cov.coverage, cov_ref, atol=1e-12)
        np.testing.assert_allclose(wid.width, wid_ref, atol=1e-12)


def test_coverage_known_values():
    # At p = 0 every draw gives k = 0, where CP's upper bound is
    # 1 - alpha**(1/n) > 0, so the coverage is 1.
    assert binomial_coverage("clopper_pearson", 0.0, 10, 0.05, "upper").coverage == 1
    # CP lower bound, n = 1, k = 1: lower = alpha; fails iff p < alpha, so at
    # p = alpha / 2 coverage = P(k = 0) = 1 - alpha / 2.
    res = binomial_coverage(ClopperPearson(), 0.025, 1, 0.05, "lower")
    np.testing.assert_allclose(res.coverage, 1 - 0.025)


def test_result_objects():
    p = np.linspace(0, 1, 12).reshape(3, 4)
    res = binomial_coverage("clopper_pearson", p, 20, 0.05)
    assert isinstance(res, CoverageResult)
    assert res.coverage.shape == (3, 4) and res.side == "lower" and res.n == 20
    assert isinstance(res.interval, ClopperPearson)
    assert res.valid and res.min_coverage >= 0.95
    with pytest.raises(dataclasses.FrozenInstanceError):
        res.alpha = 0.1
    w = expected_width("wilson", p, 20, 0.05)
    assert isinstance(w, WidthResult) and w.width.shape == (3, 4)
    assert w.side == "two-sided"
    # Wilson is not guaranteed: its result says so on a fine grid.
    assert not binomial_coverage("wilson", np.linspace(0, 1, 501), 20, 0.05).valid


class _Zigzag(IntervalEstimator):
    """CP lower bound, lowered at odd k: still valid, but not monotone in k."""

    def _lower(self, k, n, alpha, sum_sq):
        cp = ClopperPearson()._lower(k, n, alpha, sum_sq)
        return np.where(k % 2 == 1, 0.5 * cp, cp)


def test_non_monotone_bounds_use_the_pmf_sum(monkeypatch):
    monkeypatch.setattr("smoothlearn.stats._CHUNK", 100)  # many p chunks
    p = np.linspace(0, 1, 41)
    k = np.arange(31)
    lo = _Zigzag().lower(k, 30, 0.05)
    assert np.any(np.diff(lo) < 0)
    ref = [np.sum(binom.pmf(k, 30, pi)[lo <= pi]) for pi in p]
    res = binomial_coverage(_Zigzag(), p, 30, 0.05, "lower")
    np.testing.assert_allclose(res.coverage, ref, atol=1e-12)
    assert res.valid


def test_fast_path_equals_pmf_sum_at_large_n():
    # n + 1 = 5,001 outcomes: the CDF fast path against the pmf sum.
    n, p = 5_000, np.linspace(0.3, 0.7, 7)
    k = np.arange(n + 1)
    cp = ClopperPearson()
    for side in ("lower", "upper", "two-sided"):
        lo, hi = cp.interval(k, n, 0.001)
        lo = cp.lower(k, n, 0.001) if side == "lower" else lo
        hi = cp.upper(k, n, 0.001) if side == "upper" else hi
        lo = lo if side != "upper" else np.zeros(n + 1)
        hi = hi if side != "lower" else np.ones(n + 1)
        ref = _pmf_expectation(
            lambda kk, pc, lo=lo, hi=hi: (
                (lo[kk.astype(int)] <= pc) & (hi[kk.astype(int)] >= pc)
            ),
            p,
            n,
        )
        res = binomial_coverage(cp, p, n, 0.001, side)
        np.testing.assert_allclose(res.coverage, ref, atol=1e-12)
        assert res.valid


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"p": 1.5}, "'p' parameter must hold probabilities"),
        ({"p": np.nan}, "'p' parameter contains NaN"),
        ({"n": 0}, "'n' parameter must be an int >= 1"),
        ({"n": 10.0}, "'n' parameter must be an int >= 1"),
        ({"alpha": 0}, "'alpha' parameter"),
        ({"side": "both"}, "'side' parameter"),
        ({"interval": "beta"}, "'interval' parameter"),
    ],
)
def test_coverage_bad_input(kwargs, match):
    args = {"interval": "clopper_pearson", "p": 0.5, "n": 10, "alpha": 0.05}
    args.update(kwargs)
    for func in (binomial_coverage, expected_width):
        with pytest.raises(ValueError, match=match):
            func(**args)


def test_procedure_validity_counts_and_bounds():
    res = procedure_validity(
        TopClass(), [0.5, 0.3, 0.2], 50, 200, 0.2, 3000, random_state=0
    )
    assert isinstance(res, ValidityResult)
    assert res.n_trials == 3000 and res.failure_rate == res.n_failures / 3000
    # Derived statistics, recomputed independently.
    np.testing.assert_allclose(
        res.failure_rate_upper,
        proportion_confint(res.n_failures, 3000, alpha=0.1, method="beta")[1],
    )
    np.testing.assert_allclose(res.p_value, binom.sf(res.n_failures - 1, 3000, 0.2))
    assert res.n_radius_failures <= res.n_failures
    # Reproducible from the seed.
    again = procedure_validity(
        TopClass(), [0.5, 0.3, 0.2], 50, 200, 0.2, 3000, random_state=0
    )
    for field in ("n_failures", "n_radius_failures", "p_value"):
        assert getattr(again, field) == getattr(res, field)


def test_procedure_validity_failure_definition():
    # Top class p = 0.5 with n = 200 and alpha = 0.2: TopClass fails exactly when
    # the CP lower bound on the selected class exceeds its probability, which
    # happens with probability P(lower(K) > 0.5) = P(K >= k*) for the class 0
    # when selected; checked against the exact rate with a 6-sd tolerance.
    res = procedure_validity(
        TopClass(), [0.5, 0.5], 1, 200, 0.2, 20_000, kind="mono", random_state=1
    )
    k = np.arange(201)
    exact = binom.pmf(k, 200, 0.5)[ClopperPearson().lower(k, 200, 0.2) > 0.5].sum()
    sd = np.sqrt(exact * (1 - exact) / 20_000)
    assert abs(res.failure_rate - exact) < 6 * sd
    assert exact <= 0.2


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"p": [0.5, 0.6]}, "'p' parameter must be a 1-D array"),
        ({"p": [1.0]}, "'p' parameter must be a 1-D array"),
        ({"n0": 0}, "'n0' parameter"),
        ({"n_trials": 1.5}, "'n_trials' parameter"),
        ({"alpha": 2.0}, "'alpha' parameter"),
        ({"kind": "bi"}, "'kind' parameter"),
        ({"procedure": "naive"}, "'procedure' parameter"),
        ({"confidence_level": 1.0}, "'confidence_level' parameter"),
    ],
)
def test_procedure_validity_bad_input(kwargs, match):
    args = {
        "procedure": "cpm",
        "p": [0.5, 0.5],
        "n0": 10,
        "n": 10,
        "alpha": 0.1,
        "n_trials": 10,
    }
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        procedure_validity(**args)


def test_simulated_coverage_against_exact_binomial():
    # On Bernoulli draws a count-based method has an exact coverage: the
    # simulated failure count is Binomial(n_trials, 1 - coverage).
    from scipy.stats import bernoulli, binom

    from smoothlearn.stats import simulated_coverage

    n, alpha, trials = 60, 0.1, 3000
    exact = binomial_coverage("wilson", [0.8], n, alpha).coverage[0]
    res = simulated_coverage("wilson", bernoulli(0.8), n, alpha, trials, random_state=1)
    assert not res.from_draws and res.mean == 0.8
    # Two-sided 1e-6 acceptance region of the binomial count.
    lo, hi = binom.ppf([5e-7, 1 - 5e-7], trials, 1 - exact)
    assert lo <= res.n_failures <= hi
    assert res.failure_rate_upper >= res.failure_rate
    assert 0 < res.median_width < 0.3


def test_simulated_coverage_betting_uses_the_draws():
    from scipy.stats import beta, rv_discrete

    from smoothlearn.stats import simulated_coverage

    law = rv_discrete(values=([0.1, 1.0], [0.05, 0.95]))
    draws = simulated_coverage("betting", law, 300, 0.05, 300, random_state=0)
    sums = simulated_coverage(
        "empirical_bernstein", law, 300, 0.05, 300, random_state=0
    )
    assert draws.from_draws and not sums.from_draws
    assert draws.median_width < sums.median_width
    seq = simulated_coverage(
        "betting_sequence", beta(2, 2), 100, 0.05, 50, side="upper"
    )
    assert seq.n_trials == 50 and 0 < seq.median_width < 1
    with pytest.raises(ValueError, match="'law'"):
        simulated_coverage("betting", beta(2, 2, loc=1), 10, 0.05, 10)
    with pytest.raises(ValueError, match="'law'"):
        simulated_coverage("betting", 0.5, 10, 0.05, 10)
    with pytest.raises(ValueError, match="'interval'"):
        simulated_coverage("clopper_pearson", beta(2, 2), 10, 0.05, 10)
    with pytest.raises(ValueError, match="'n_trials'"):
        simulated_coverage("betting", beta(2, 2), 10, 0.05, 0)
