"""Tests of the interval methods: references, properties, exact coverage, errors."""

import numpy as np
import pytest
from scipy.stats import beta, binomtest
from sklearn.base import clone
from statsmodels.stats.proportion import proportion_confint

from smoothlearn.intervals import (
    INTERVALS,
    AgrestiCoull,
    ClopperPearson,
    EmpiricalBernstein,
    Hoeffding,
    IntervalEstimator,
    Jeffreys,
    Wilson,
    get_interval,
)
from smoothlearn.stats import binomial_coverage

ALL = [ClopperPearson, Wilson, AgrestiCoull, Jeffreys, Hoeffding, EmpiricalBernstein]
GUARANTEED = [ClopperPearson, Hoeffding, EmpiricalBernstein]
APPROXIMATE = [Wilson, AgrestiCoull, Jeffreys]


def _random_counts(seed, size=2000, n_max=5000):
    rng = np.random.default_rng(seed)
    n = rng.integers(1, n_max, size=size)
    k = rng.integers(0, n + 1)
    # Make the edges k = 0 and k = n frequent.
    k[: size // 10] = 0
    k[size // 10 : size // 5] = n[size // 10 : size // 5]
    return k, n


# ---------------------------------------------------------------- references


@pytest.mark.parametrize("alpha", [0.05, 1e-3, 1e-8])
def test_clopper_pearson_matches_scipy_beta_ppf(alpha):
    # Reference: scipy.stats.beta.ppf, the textbook definition of the bounds.
    k, n = _random_counts(1)
    cp = ClopperPearson()
    lo_ref = np.where(k == 0, 0.0, beta.ppf(alpha, np.maximum(k, 1), n - k + 1))
    hi_ref = np.where(k == n, 1.0, beta.ppf(1 - alpha, k + 1, np.maximum(n - k, 1)))
    # rtol: the 1e-9 outward margin, plus the reference's own error (ppf at
    # 1 - alpha carries alpha with a relative error of eps / alpha).
    np.testing.assert_allclose(cp.lower(k, n, alpha), lo_ref, rtol=3e-9, atol=1e-14)
    np.testing.assert_allclose(cp.upper(k, n, alpha), hi_ref, rtol=3e-9, atol=1e-14)


@pytest.mark.parametrize(("k", "n"), [(0, 10), (3, 10), (10, 10), (417, 1000)])
@pytest.mark.parametrize("alpha", [0.05, 0.001])
def test_clopper_pearson_interval_matches_scipy_binomtest(k, n, alpha):
    # Reference: scipy.stats.binomtest(k, n).proportion_ci(confidence_level=1 - alpha,
    # method="exact"), the two-sided CP interval with alpha / 2 per side.
    ci = binomtest(k, n).proportion_ci(confidence_level=1 - alpha, method="exact")
    lo, hi = ClopperPearson().interval(k, n, alpha)
    # rtol: twice the 1e-9 outward margin of ClopperPearson.
    np.testing.assert_allclose([lo, hi], [ci.low, ci.high], rtol=2e-9, atol=1e-14)


@pytest.mark.parametrize(
    ("cls", "method"),
    [
        (ClopperPearson, "beta"),
        (Wilson, "wilson"),
        (AgrestiCoull, "agresti_coull"),
        (Jeffreys, "jeffreys"),
    ],
)
@pytest.mark.parametrize("alpha", [0.05, 0.001])
def test_binomial_matches_statsmodels(cls, method, alpha):
    # Reference: statsmodels proportion_confint.  Its alpha is two-sided (alpha / 2
    # per side), so proportion_confint(k, n, alpha=2 * alpha) gives our one-sided
    # bounds at alpha.  Convention difference: statsmodels' Jeffreys interval keeps
    # the Beta quantile at k = 0 (lower > 0) and k = n (upper < 1); ours uses the
    # Brown-Cai-DasGupta convention lower(0) = 0, upper(n) = 1, so those
    # entries are compared to 0 and 1 instead.
    k, n = _random_counts(2)
    lo_ref, hi_ref = proportion_confint(k, n, alpha=2 * alpha, method=method)
    if cls is Jeffreys:
        lo_ref = np.where(k == 0, 0.0, lo_ref)
        hi_ref = np.where(k == n, 1.0, hi_ref)
    est = cls()
    np.testing.assert_allclose(est.lower(k, n, alpha), lo_ref, rtol=1e-9, atol=1e-13)
    np.testing.assert_allclose(est.upper(k, n, alpha), hi_ref, rtol=1e-9, atol=1e-13)


@pytest.mark.parametrize(
    ("k", "n", "lo", "hi"),
    [
        # SCIENCE.md section 2.1 test vectors, one-sided alpha = 0.001.
        (99_000, 100_000, 0.988989, 0.990945),
        (50_000, 100_000, 0.495109, 0.504891),
        (20_000, 100_000, 0.196106, 0.203934),
        (9_000, 10_000, 0.890410, 0.909050),
    ],
)
def test_clopper_pearson_science_vectors(k, n, lo, hi):
    cp = ClopperPearson()
    assert abs(cp.lower(k, n, 0.001) - lo) < 1e-6
    assert abs(cp.upper(k, n, 0.001) - hi) < 1e-6


def test_clopper_pearson_science_edge_vectors():
    cp = ClopperPearson()
    # SCIENCE.md 2.1: k = 0, n = 1e5 -> upper 0.000069.
    assert abs(cp.upper(0, 100_000, 0.001) - 0.000069) < 1e-6
    # Cohen's radius cap: all n samples hit c_A -> lower = alpha**(1/n).
    np.testing.assert_allclose(cp.lower(100_000, 100_000, 0.001), 0.001 ** (1e-5))
    np.testing.assert_allclose(cp.upper(0, 100_000, 0.001), 1 - 0.001 ** (1e-5))


@pytest.mark.parametrize(
    ("std", "n", "n_classes", "shift"),
    # SCIENCE.md section 5.2 Bernstein test vectors: alpha = 0.001, delta = alpha/K.
    [
        (0.3, 100_000, 10, 0.004453),
        (0.05, 100_000, 10, 0.000935),
        (0.3, 10_000, 1000, 0.019546),
    ],
)
def test_empirical_bernstein_science_vectors(std, n, n_classes, shift):
    delta = 0.001 / n_classes
    mean = 0.5
    total = n * mean
    total_sq = (n - 1) * std**2 + n * mean**2  # unbiased variance std**2
    eb = EmpiricalBernstein()
    assert abs(eb.upper(total, n, delta, sum_sq=total_sq) - mean - shift) < 1e-6
    assert abs(mean - eb.lower(total, n, delta, sum_sq=total_sq) - shift) < 1e-6


def test_empirical_bernstein_formula():
    # Independent restatement of Maurer & Pontil (2009), Theorem 4, from raw draws.
    rng = np.random.default_rng(3)
    x = rng.beta(2.0, 5.0, size=500)
    alpha = 0.01
    var = np.var(x, ddof=1)
    log_term = np.log(2 / alpha)
    shift = np.sqrt(2 * var * log_term / x.size) + 7 * log_term / (3 * (x.size - 1))
    eb = EmpiricalBernstein()
    lo = eb.lower(x.sum(), x.size, alpha, sum_sq=np.sum(x**2))
    hi = eb.upper(x.sum(), x.size, alpha, sum_sq=np.sum(x**2))
    np.testing.assert_allclose([lo, hi], [x.mean() - shift, x.mean() + shift])
    # n = 1: the trivial bounds.
    assert eb.lower(0.7, 1, alpha, sum_sq=0.49) == 0.0
    assert eb.upper(0.7, 1, alpha, sum_sq=0.49) == 1.0


def test_empirical_bernstein_monotone_in_variance():
    # The soundness of the merged-bucket rule of ClassPartitioning rests on this:
    # a larger sum of squares (larger variance) never gives a tighter bound.
    n, total = 1000, 300.0
    sum_sq = np.linspace(total**2 / n, total, 50)
    eb = EmpiricalBernstein()
    assert np.all(np.diff(eb.lower(total, n, 0.01, sum_sq=sum_sq)) <= 0)
    assert np.all(np.diff(eb.upper(total, n, 0.01, sum_sq=sum_sq)) >= 0)
    # and for a low-variance sample it beats Hoeffding.
    lo_eb = eb.lower(total, n, 0.01, sum_sq=total**2 / n)
    assert lo_eb > Hoeffding().lower(total, n, 0.01)


def test_hoeffding_formula():
    k, n = _random_counts(4)
    alpha = 0.01
    shift = np.sqrt(np.log(1 / alpha) / (2 * n))
    h = Hoeffding()
    np.testing.assert_allclose(h.lower(k, n, alpha), np.clip(k / n - shift, 0, 1))
    np.testing.assert_allclose(h.upper(k, n, alpha), np.clip(k / n + shift, 0, 1))
    # Sums of soft scores are accepted.
    assert h.lower(10.5, 20, 0.5) == pytest.approx(10.5 / 20 - np.sqrt(np.log(2) / 40))


@pytest.mark.parametrize("cls", ALL)
def test_interval_is_two_one_sided_bounds_at_half_alpha(cls):
    k, n = _random_counts(5, size=300)
    est = cls()
    lo, hi = est.interval(k, n, 0.01)
    np.testing.assert_array_equal(lo, est.lower(k, n, 0.005))
    np.testing.assert_array_equal(hi, est.upper(k, n, 0.005))


# ---------------------------------------------------------------- properties


@pytest.mark.parametrize("cls", ALL)
@pytest.mark.parametrize("seed", range(3))
def test_properties(cls, seed):
    k, n = _random_counts(seed + 10, size=1000, n_max=300)
    est = cls()
    lo = est.lower(k, n, 0.01)
    hi = est.upper(k, n, 0.01)
    phat = k / n
    assert np.all((lo >= 0) & (lo <= phat + 1e-12))
    assert np.all((hi <= 1) & (hi >= phat - 1e-12))
    # Exact at the edges.
    assert np.all(lo[k == 0] == 0.0)
    assert np.all(hi[k == n] == 1.0)
    # Nested as alpha decreases.
    assert np.all(est.lower(k, n, 0.001) <= lo + 1e-15)
    assert np.all(est.upper(k, n, 0.001) >= hi - 1e-15)
    # Monotone in k for every n.
    n_fixed = int(n[0])
    kk = np.arange(n_fixed + 1)
    assert np.all(np.diff(est.lower(kk, n_fixed, 0.01)) >= -1e-15)
    assert np.all(np.diff(est.upper(kk, n_fixed, 0.01)) >= -1e-15)


@pytest.mark.parametrize("cls", ALL)
def test_broadcasting_and_scalars(cls):
    est = cls()
    out = est.lower(np.arange(6).reshape(2, 3), 10, np.array([[0.01], [0.1]]))
    assert out.shape == (2, 3)
    val = est.lower(3, 10, 0.05)
    assert isinstance(val, np.floating) and np.ndim(val) == 0
    lo, hi = est.interval(3, 10, 0.05)
    assert np.ndim(lo) == 0 and np.ndim(hi) == 0
    assert est.lower(np.empty(0), 10, 0.05).shape == (0,)


@pytest.mark.parametrize("cls", ALL)
def test_reflection_symmetry(cls):
    # upper(k, n) = 1 - lower(n - k, n) for Bernoulli draws (by symmetry).
    k, n = _random_counts(6, size=500)
    est = cls()
    # Both sides are rounded outward by the relative margin _rtol.
    np.testing.assert_allclose(
        est.upper(k, n, 0.01),
        1 - est.lower(n - k, n, 0.01),
        atol=1e-12 + 2 * est._rtol,
    )


def test_estimator_api_and_flags():
    for cls in ALL:
        est = cls()
        assert isinstance(est, IntervalEstimator)
        assert clone(est).get_params() == {}
        assert repr(est) == f"{cls.__name__}()"
        assert cls.guaranteed == (cls in GUARANTEED)
    assert ClopperPearson.requires_counts and Wilson.requires_counts
    assert not Hoeffding.requires_counts and not EmpiricalBernstein.requires_counts


def test_get_interval():
    for name, cls in INTERVALS.items():
        assert type(get_interval(name)) is cls
    assert isinstance(get_interval(None), ClopperPearson)
    w = Wilson()
    assert get_interval(w) is w
    with pytest.raises(ValueError, match=r"'interval' parameter.*'clopper_pearson'"):
        get_interval("clopper-pearson")
    with pytest.raises(ValueError, match="'interval' parameter"):
        get_interval(ClopperPearson)  # a class, not an instance


# ---------------------------------------------------------------- coverage


@pytest.mark.parametrize("side", ["lower", "upper", "two-sided"])
@pytest.mark.parametrize("alpha", [0.05, 0.001])
def test_clopper_pearson_exact_coverage(side, alpha):
    # Exact (pmf-summed) coverage >= 1 - alpha over a grid of p and n: this is the
    # guarantee, checked without simulation, so the test has no false-alarm rate
    # beyond floating-point rounding (slack 1e-12).
    p = np.concatenate([np.linspace(0, 1, 401), [1e-6, 1 - 1e-6]])
    for n in (1, 2, 3, 7, 20, 100, 500):
        res = binomial_coverage(ClopperPearson(), p, n, alpha, side)
        assert res.min_coverage >= 1 - alpha - 1e-12, (n, res.min_coverage)


@pytest.mark.parametrize("cls", [Hoeffding, EmpiricalBernstein])
@pytest.mark.parametrize("side", ["lower", "upper", "two-sided"])
def test_bounded_exact_coverage_on_bernoulli(cls, side):
    p = np.linspace(0, 1, 201)
    for n in (1, 2, 10, 100, 400):
        res = binomial_coverage(cls(), p, n, 0.05, side)
        assert res.valid, (n, res.min_coverage)


@pytest.mark.parametrize("cls", APPROXIMATE)
def test_approximate_methods_undercover_somewhere(cls):
    # guaranteed = False is not a formality: each approximate method has exact
    # coverage below 1 - alpha for some p (near the edges).
    p = np.linspace(0.001, 0.999, 999)
    res = binomial_coverage(cls(), p, 30, 0.05, "lower")
    assert res.min_coverage < 0.95 - 0.01


def test_empirical_bernstein_coverage_soft_scores_simulation():
    # Beta(2, 5) scores (mean 2/7), n = 30, alpha = 0.05 per side: 20,000 trials.
    # A valid bound fails with probability <= 0.05, so failures ~ Bin(20000, <=0.05)
    # (mean <= 1000, sd ~ 31); the threshold 1200 is a > 6 sd excess, so a valid
    # method fails this test with probability < 1e-9.
    rng = np.random.default_rng(7)
    x = rng.beta(2.0, 5.0, size=(20_000, 30))
    s, sq = x.sum(axis=1), (x**2).sum(axis=1)
    eb = EmpiricalBernstein()
    mean = 2 / 7
    assert np.sum(eb.lower(s, 30, 0.05, sum_sq=sq) > mean) <= 1200
    assert np.sum(eb.upper(s, 30, 0.05, sum_sq=sq) < mean) <= 1200
    # The bound adapts to the variance: tighter than Hoeffding here on average.
    assert np.mean(eb.lower(s, 30, 0.05, sum_sq=sq)) < mean


# ---------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    ("k", "n", "alpha", "match"),
    [
        (11, 10, 0.05, "'k' parameter must not exceed 'n'"),
        (-1, 10, 0.05, "'k' parameter must be non-negative"),
        (np.nan, 10, 0.05, "'k' parameter contains NaN"),
        (3, 0, 0.05, "'n' parameter must hold integers >= 1"),
        (3, 10.5, 0.05, "'n' parameter must hold integers >= 1"),
        (3, np.nan, 0.05, "'n' parameter contains NaN"),
        (3, 10, 0.0, "'alpha' parameter must be a float in the open interval"),
        (3, 10, 1.0, "'alpha' parameter must be a float in the open interval"),
        (3, 10, np.nan, "'alpha' parameter must be a float in the open interval"),
        ([1, 2], [10, 10, 10], 0.05, "cannot be broadcast"),
        ([1, 2], 10, [0.1, 0.1, 0.1], "'alpha' parameter of shape"),
        ("3", 10, 0.05, "'k' parameter must be numeric"),
    ],
)
def test_bad_input(k, n, alpha, match):
    for cls in ALL:
        est = cls()
        for method in (est.lower, est.upper, est.interval):
            with pytest.raises(ValueError, match=match):
                method(k, n, alpha)


@pytest.mark.parametrize("cls", [ClopperPearson, Wilson, AgrestiCoull, Jeffreys])
def test_binomial_methods_refuse_non_integer_counts(cls):
    with pytest.raises(ValueError, match="'k' parameter must hold integer counts"):
        cls().lower(2.5, 10, 0.05)


def test_bounded_methods_check_sum_sq():
    with pytest.raises(ValueError, match="'sum_sq' parameter is inconsistent"):
        EmpiricalBernstein().lower(5.0, 10, 0.05, sum_sq=6.0)  # sum_sq > sum
    with pytest.raises(ValueError, match="'sum_sq' parameter is inconsistent"):
        EmpiricalBernstein().lower(5.0, 10, 0.05, sum_sq=1.0)  # < sum**2 / n
