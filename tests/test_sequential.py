"""Tests of sequential certification (smoothlearn/sequential.py, _confseq.py).

Three kinds: reference values from independent computations (numerical
quadrature of the defining integral, closed forms, brute-force bisection);
properties over seeds; and validity by simulation (marked slow), each with
its own false-alarm rate stated.
"""

from dataclasses import replace

import numpy as np
import pytest
from conftest import make_linear_module
from scipy.integrate import quad
from scipy.special import ndtr, ndtri
from scipy.stats import binom

from smoothlearn import CertificationResult, SmoothedClassifier
from smoothlearn._confseq import (
    _log_capital,
    _log_capital_and_slope,
    _lower_sequence,
    _min_draws,
    _upper_sequence,
)
from smoothlearn._rounding import round_down
from smoothlearn.intervals import (
    Bonferroni,
    ClassPartitioning,
    ClopperPearson,
    TopClass,
)
from smoothlearn.sequential import (
    BettingConfidenceSequence,
    SequentialCertificationResult,
    SequentialCertifier,
    _first_batch,
    _run_sequential,
    _schedule,
)


# ---------------------------------------------------------------------------
# The capital and the confidence sequence
# ---------------------------------------------------------------------------
@pytest.mark.parametrize(
    "k, n, m",
    [(7, 10, 0.4), (3.3, 10, 0.2), (90, 100, 0.8), (0, 5, 0.3), (400, 400, 0.97)],
)
def test_log_capital_matches_quadrature(k, n, m):
    # Reference: the defining mixture integral over the Kelly fraction theta,
    # integrated numerically by scipy.integrate.quad (independent of the
    # closed form through the incomplete beta function).
    def integrand(theta):
        return (1 + theta * (1 - m) / m) ** k * (1 - theta) ** (n - k)

    ref = np.log(quad(integrand, 0, 1, epsabs=0, epsrel=1e-12, limit=200)[0])
    assert _log_capital(k, n, m) == pytest.approx(ref, rel=1e-9, abs=1e-9)


def test_log_capital_all_successes_closed_form():
    # k = n: int_0^1 (1 + theta c)^n dtheta = ((1 + c)^(n + 1) - 1) / ((n + 1) c)
    # with c = (1 - m) / m, i.e. 1 + c = 1 / m.
    n, m = np.array([1.0, 10.0, 300.0]), 0.9
    c = (1 - m) / m
    ref = np.log(((1 + c) ** (n + 1) - 1) / ((n + 1) * c))
    np.testing.assert_allclose(_log_capital(n, n, m), ref, rtol=1e-12)


def test_capital_is_one_at_start_and_slope_matches_finite_differences(rng):
    assert _log_capital(0, 0, 0.3) == pytest.approx(0.0, abs=1e-14)
    n = rng.integers(1, 5000, 50).astype(float)
    k = rng.binomial(n.astype(int), 0.7).astype(float) + 1
    n += 1
    m = k / n * rng.uniform(0.5, 0.99, 50)  # where the root finder works
    _, slope = _log_capital_and_slope(k, n, m)
    h = 1e-6
    fd = (_log_capital(k, n, m + h) - _log_capital(k, n, m - h)) / (2 * h)
    np.testing.assert_allclose(slope, fd, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("seed", range(3))
def test_capital_is_decreasing_and_log_convex_in_m(seed):
    # The two properties the root finder relies on (proved in _confseq).
    gen = np.random.default_rng(seed)
    n = float(gen.integers(1, 20_000))
    k = float(gen.binomial(int(n), gen.uniform()))
    # Below the empirical mean, where the root finder works (above it the
    # capital underflows and its logarithm is rounding noise).
    m = np.linspace(0.001, 0.999, 999)
    m = m[m < max(k, 1) / n]
    f = _log_capital(k, n, m)
    finite = np.isfinite(f)
    assert np.all(np.diff(f[finite]) <= 1e-9 * np.maximum(1, np.abs(f[finite][1:])))
    second = f[finite][2:] - 2 * f[finite][1:-1] + f[finite][:-2]
    assert np.all(second >= -1e-7 * np.maximum(1, np.abs(f[finite][1:-1])))


def _bisect_reference(k, n, alpha, iters=200):
    """Plain bisection on the capital (independent of the Newton solver)."""
    lo, hi = 0.0, 1.0
    for _ in range(iters):
        mid = 0.5 * (lo + hi)
        if _log_capital(k, n, mid) >= -np.log(alpha):
            lo = mid
        else:
            hi = mid
    return lo if k > 0 else 0.0


@pytest.mark.parametrize(
    "k, n, alpha",
    [
        (99_000, 100_000, 1e-3),
        (100_000, 100_000, 1e-3),
        (5, 5, 0.05),
        (1, 3, 0.2),
        (0, 10, 0.01),
        (250.5, 1000, 1e-4),
        (1, 50_000, 1e-3),
    ],
)
def test_lower_matches_bisection(k, n, alpha):
    got = _lower_sequence(k, n, alpha)
    ref = _bisect_reference(k, n, alpha)
    assert got <= ref + 1e-15  # never above the exact infimum
    assert got == pytest.approx(ref, abs=1e-8)


@pytest.mark.parametrize("seed", range(3))
def test_bounds_are_valid_points_and_tight(seed):
    gen = np.random.default_rng(seed)
    n = gen.integers(1, 100_000, 2000).astype(float)
    k = gen.binomial(n.astype(int), gen.uniform(0, 1, 2000)).astype(float)
    alpha = 10.0 ** gen.uniform(-6, -1, 2000)
    low = _lower_sequence(k, n, alpha)
    up = _upper_sequence(k, n, alpha)
    pos = k > 0
    # Checked point: the capital at the bound reaches 1/alpha ...
    assert np.all(_log_capital(k, n, low)[pos] >= -np.log(alpha[pos]))
    # ... and slightly above it does not (tight to ~1e-7 relative: the Newton
    # iteration ends where rounding noise in log K_n, ~1e-11, hides progress).
    above = np.minimum(low + 1e-7 * np.maximum(low, 1e-3), 1 - 1e-15)
    assert np.all(_log_capital(k, n, above)[pos] < -np.log(alpha[pos]))
    # The bounds bracket the empirical mean, which the sequence never excludes.
    assert np.all(low <= k / n) and np.all(k / n <= up)


def test_bounds_increase_with_k():
    # Declared by _monotone_in_k (the procedures then bound only the largest
    # competitor): the capital of every bet increases with k.
    k = np.arange(0, 501)
    for alpha in (1e-6, 0.05):
        assert np.all(np.diff(_lower_sequence(k, 500, alpha)) > 0)
        assert np.all(np.diff(_upper_sequence(k, 500, alpha)) > 0)


def test_estimator_api_lower_upper_interval():
    cs = BettingConfidenceSequence()
    k, n = np.array([0, 3, 60, 100]), 100
    # Both sides are rounded outward by 16 ulps (smoothlearn._rounding).
    low, up = _lower_sequence(k, n, 0.01), 1 - _lower_sequence(n - k, n, 0.01)
    np.testing.assert_array_equal(cs.lower(k, n, 0.01), round_down(low))
    assert np.all(cs.lower(k, n, 0.01)[k > 0] < low[k > 0])
    np.testing.assert_allclose(cs.upper(k, n, 0.01), up, atol=1e-14, rtol=0)
    assert np.all(cs.upper(k, n, 0.01)[k < n] > up[k < n])
    lo, hi = cs.interval(k, n, 0.02)
    np.testing.assert_array_equal(lo, cs.lower(k, n, 0.01))
    np.testing.assert_array_equal(hi, cs.upper(k, n, 0.01))
    assert cs.anytime_valid and cs.guaranteed and not cs.requires_counts
    # Sums of [0, 1] scores are accepted.
    assert 0 < cs.lower(42.5, 100, 0.05) < 0.425


def test_price_against_clopper_pearson_at_fixed_n():
    # The time-uniform sequence is wider than the fixed-n Clopper-Pearson bound
    # at the same (k, n, alpha), but only a little at n = 100,000.
    cs, cp = BettingConfidenceSequence(), ClopperPearson()
    k = np.array([50_000, 90_000, 99_000, 99_900, 100_000])
    seq, fixed = cs.lower(k, 100_000, 1e-3), cp.lower(k, 100_000, 1e-3)
    assert np.all(seq < fixed)
    shrink = ndtri(seq[1:]) / ndtri(fixed[1:])  # Cohen mono radius ratio
    assert np.all(shrink > 0.97)


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda cs: cs.lower(5, 10, 0.0), "alpha"),
        (lambda cs: cs.lower(5, 10, 1.5), "alpha"),
        (lambda cs: cs.lower(11, 10, 0.1), "must not exceed"),
        (lambda cs: cs.lower(-1, 10, 0.1), "non-negative"),
        (lambda cs: cs.capital(5, 10, m=1.0), "'m'"),
        (lambda cs: cs.capital(5, 0, m=0.5), "'n'"),
    ],
)
def test_input_validation(call, match):
    with pytest.raises(ValueError, match=match):
        call(BettingConfidenceSequence())


def test_min_draws_and_schedule():
    p_star = ndtr(2.0)
    n1 = _min_draws(p_star, 5e-4, 100_000)
    assert _log_capital(n1, n1, p_star) >= np.log(2000)
    assert _log_capital(n1 - 1, n1 - 1, p_star) < np.log(2000)
    assert _min_draws(p_star, 5e-4, 10) == 10  # cannot certify within budget
    s = _schedule(57, 100_000, 1.25)
    assert s[0] == 57 and s[-1] == 100_000 and np.all(np.diff(s) > 0)
    assert np.all(s[1:-1] / s[:-2] >= 1.25 - 1e-12)
    assert _first_batch(np.array([0.5, 0.25]), 0.25, 5e-4, 100_000) == _min_draws(
        ndtr(1.0), 5e-4, 100_000
    )


# ---------------------------------------------------------------------------
# The engine on synthetic draws
# ---------------------------------------------------------------------------
def _multinomial_draw(probs, gen):
    def draw(indices, m, round_index):
        counts = gen.multinomial(m, probs[indices])
        return counts, counts

    return draw


def _run(
    probs,
    gen,
    *,
    target_radius=(0.25, 0.5),
    procedure=None,
    kind="mono",
    sigma=0.5,
    alpha=0.002,
    n_max=100_000,
    growth=1.25,
    radius_tol=0.01,
    share=0.5,
    selection=None,
    draw=None,
    soft=False,
):
    probs = np.asarray(probs, dtype=float)
    if selection is None:
        selection = gen.multinomial(100, probs)
    procedure = procedure or TopClass(binomial=BettingConfidenceSequence())
    r = None if target_radius is None else np.asarray(target_radius, float)
    a_r = alpha if r is None else alpha * share
    return _run_sequential(
        draw or _multinomial_draw(probs, gen),
        selection,
        procedure=procedure,
        kind=kind,
        sigma=sigma,
        target_radius=r,
        alpha_robust=a_r,
        alpha_not_robust=alpha - a_r,
        n_max=n_max,
        n_first=_first_batch(r, sigma, a_r, n_max),
        batch_growth=growth,
        radius_tol=radius_tol,
        soft=soft,
    )


def test_engine_decides_easy_inputs_with_few_draws(rng):
    p = np.array([0.999, 0.99, 0.95, 0.6, 0.5])
    out = _run(np.stack([p, 1 - p], 1), rng)
    # sigma = 0.5: thresholds Phi(0.5) = 0.69 and Phi(1) = 0.84.
    np.testing.assert_array_equal(
        out["decisions"], [[1, 1], [1, 1], [1, 1], [-1, -1], [-1, -1]]
    )
    assert np.all(out["n_draws"] <= 2_000)
    # The certificate agrees with the decisions and is a valid mono radius.
    assert np.all(out["radius"][:3] >= 0.5) and np.all(out["radius"][3:] < 0.25)
    np.testing.assert_array_equal(out["estimation"].sum(1), out["n_draws"])


def test_engine_spends_the_budget_only_near_the_threshold(rng):
    p_star = ndtr(1.0)
    p = np.array([p_star, 0.999])
    out = _run(np.stack([p, 1 - p], 1), rng, target_radius=[0.5], n_max=5_000)
    assert out["n_draws"][0] == 5_000 and out["decisions"][0, 0] == 0
    assert out["n_draws"][1] < 1_000 and out["decisions"][1, 0] == 1


def test_engine_is_deterministic_given_the_draws():
    probs = np.array([[0.97, 0.03], [0.8, 0.2], [0.5, 0.5]])
    a = _run(probs, np.random.default_rng(3))
    b = _run(probs, np.random.default_rng(3))
    for key in a:
        np.testing.assert_array_equal(a[key], b[key])


def test_engine_largest_radius_mode(rng):
    probs = np.array([[0.9, 0.1, 0.0], [0.75, 0.25, 0.0], [0.4, 0.35, 0.25]])
    out = _run(probs, rng, target_radius=None, radius_tol=0.02)
    assert out["decisions"].shape == (3, 0)
    # The input predicted to abstain stops early; radii are below the exact ones.
    assert out["abstained"][2] and out["n_draws"][2] < 1_000
    exact = 0.5 * np.array([1.2815516, 0.6744898])
    assert np.all(out["radius"][:2] < exact) and np.all(out["radius"][:2] > 0)


@pytest.mark.parametrize("procedure", [Bonferroni, ClassPartitioning, TopClass])
def test_engine_multi_kind_with_each_procedure(rng, procedure):
    probs = np.array(
        [[0.98, 0.01, 0.01, 0.0], [0.5, 0.45, 0.03, 0.02], [0.9, 0.06, 0.02, 0.02]]
    )
    out = _run(
        probs,
        rng,
        procedure=procedure(binomial=BettingConfidenceSequence()),
        kind="multi",
        target_radius=[0.25],
    )
    # Exact multi radii at sigma 0.5: 1.16, 0.03, 0.86 (above / below 0.25).
    np.testing.assert_array_equal(out["decisions"][:, 0], [1, -1, 1])
    assert np.all(out["n_draws"] < 20_000)


def test_engine_soft_scores(rng):
    # [0, 1]-valued scores (two classes, rows on the simplex): sums and sums of
    # squares are accumulated and the bounded-mean sequence applies.
    means = np.array([0.95, 0.6])

    def draw(indices, m, round_index):
        s = rng.beta(
            20 * means[indices, None],
            20 * (1 - means[indices, None]),
            size=(indices.size, m),
        )
        sums = np.stack([s.sum(1), (1 - s).sum(1)], 1)
        sq = np.stack([(s * s).sum(1), ((1 - s) ** 2).sum(1)], 1)
        return sums, sq

    probs = np.stack([means, 1 - means], 1)
    out = _run(probs, rng, draw=draw, soft=True, target_radius=[0.25])
    np.testing.assert_array_equal(out["decisions"][:, 0], [1, -1])
    assert np.all(out["estimation_sq"] <= out["estimation"] + 1e-9)


# ---------------------------------------------------------------------------
# The certifier on a real (tiny) model
# ---------------------------------------------------------------------------
@pytest.fixture
def fitted(linear3, blobs3):
    X, y = blobs3
    clf = SmoothedClassifier(
        linear3, sigma=0.5, n=2_000, random_state=0, batch_size=512
    )
    return clf.fit(X, y), X[::12], y[::12]


def test_certifier_returns_a_certification_result(fitted):
    clf, X, _ = fitted
    res = SequentialCertifier(clf, target_radius=[0.25, 0.5], n_max=20_000).certify(X)
    assert isinstance(res, CertificationResult)
    assert isinstance(res, SequentialCertificationResult)
    assert res.n_draws.shape == (len(X),) and np.all(res.n_draws <= 20_000)
    np.testing.assert_array_equal(res.estimation.sum(1), res.n_draws)
    assert res.alpha == pytest.approx(0.0005) and res.alpha_not_robust == 0.0005
    # The certificate agrees with the decisions.
    robust = res.decisions == 1
    radius = np.broadcast_to(res.radius[:, None], robust.shape)
    target = np.broadcast_to(res.target_radius, robust.shape)
    assert np.all(radius[robust] >= target[robust])
    assert np.all(res.abstained == (res.prediction == -1))
    # Same selection stream as the fixed-n certify: same predicted classes.
    fixed = clf.certify(X)
    np.testing.assert_array_equal(res.selection, fixed.selection)
    agree = ~res.abstained & ~fixed.abstained
    np.testing.assert_array_equal(res.prediction[agree], fixed.prediction[agree])
    assert "median_draws" in repr(res)


def test_certifier_recertify_and_save(fitted, tmp_path):
    clf, X, _ = fitted
    res = SequentialCertifier(clf, target_radius=0.25, n_max=5_000).certify(X)
    again = res.recertify()
    np.testing.assert_allclose(again.radius, res.radius)
    np.testing.assert_array_equal(again.decisions, res.decisions)
    looser = res.recertify(alpha=1e-6)
    assert np.all(looser.radius <= res.radius)
    with pytest.raises(ValueError, match="anytime-valid"):
        res.recertify(interval=TopClass(binomial=ClopperPearson()))
    with pytest.raises(ValueError, match="anytime-valid"):
        res.recertify(interval="cpm")
    multi = res.recertify(
        interval=ClassPartitioning(binomial=BettingConfidenceSequence()),
        radius="multi",
    )
    assert multi.kind == "multi" and np.all(multi.n_bounds >= 2)


def _same_result(a, b):
    for name in (
        "prediction",
        "radius",
        "pA_lower",
        "pB_upper",
        "abstained",
        "n_bounds",
        "selection",
        "estimation",
        "n_draws",
        "target_radius",
        "decisions",
    ):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name))
    assert (a.n, a.n0, a.alpha, a.alpha_not_robust, a.kind, a.sigma) == (
        b.n,
        b.n0,
        b.alpha,
        b.alpha_not_robust,
        b.kind,
        b.sigma,
    )


def test_sequential_result_save_and_load_round_trip(fitted, tmp_path):
    clf, X, _ = fitted
    # Points at distances 0.17 ... 2.6 from the decision boundary: the ones
    # near r = 0.25 need many more draws than the others.
    X = np.array([[t, 0.0] for t in (0.2, 0.3, 0.4, 1.0, 3.0)], dtype=np.float32)
    res = SequentialCertifier(clf, target_radius=[0.25, 0.5], n_max=5_000).certify(X)
    assert len(set(res.n_draws.tolist())) > 1  # per-input draw counts
    path = tmp_path / "seq.npz"
    res.save(path)
    # Either entry point gives the sequential class back: a plain result
    # would recertify every input as if it had used n_max draws.
    for loader in (SequentialCertificationResult, CertificationResult):
        back = loader.load(path)
        assert type(back) is SequentialCertificationResult
        _same_result(back, res)
        assert isinstance(back.interval.binomial, BettingConfidenceSequence)
        _same_result(back.recertify(), res.recertify())
    # A fixed-n file is not silently read as sequential.
    fixed = tmp_path / "fixed.npz"
    clf.certify(X).save(fixed)
    with pytest.raises(ValueError, match="fixed-n result"):
        SequentialCertificationResult.load(fixed)


@pytest.mark.parametrize(
    "damage",
    ["n_draws_too_large", "n_draws_shape", "decisions_values", "missing_decisions"],
)
def test_damaged_sequential_result_is_refused(fitted, tmp_path, damage):
    clf, X, _ = fitted
    res = SequentialCertifier(clf, target_radius=0.25, n_max=2_000).certify(X)
    path = tmp_path / "seq.npz"
    res.save(path)
    with np.load(path) as f:
        arrays = dict(f)
    if damage == "n_draws_too_large":
        arrays["n_draws"] = arrays["n_draws"] + 10**6
    elif damage == "n_draws_shape":
        arrays["n_draws"] = arrays["n_draws"][:-1]
    elif damage == "decisions_values":
        arrays["decisions"] = arrays["decisions"] + 3
    else:
        del arrays["decisions"]
    np.savez(path, **arrays)
    with pytest.raises(ValueError, match="sequential result file"):
        CertificationResult.load(path)


def test_certifier_largest_radius_mode_and_determinism(fitted):
    clf, X, _ = fitted
    seq = SequentialCertifier(clf, n_max=2_000, radius_tol=0.05)
    a, b = seq.certify(X), seq.certify(X)
    np.testing.assert_array_equal(a.radius, b.radius)
    np.testing.assert_array_equal(a.n_draws, b.n_draws)
    assert a.decisions.shape == (len(X), 0) and a.alpha == clf.alpha


def test_certifier_keeps_an_anytime_valid_procedure_and_replaces_others(fitted):
    clf, X, _ = fitted
    clf.set_params(interval="cpm", radius="multi")
    res = SequentialCertifier(clf, target_radius=0.25, n_max=2_000).certify(X)
    assert isinstance(res.interval, ClassPartitioning)
    assert isinstance(res.interval.binomial, BettingConfidenceSequence)
    assert clf.interval == "cpm"  # the classifier is not modified


@pytest.mark.parametrize(
    "params, match",
    [
        ({"target_radius": -0.1}, "target_radius"),
        ({"target_radius": [0.1, np.nan]}, "target_radius"),
        ({"robust_share": 1.0}, "robust_share"),
        ({"n_max": 0}, "n_max"),
        ({"batch_growth": 1.0}, "batch_growth"),
        ({"alpha": 0.0}, "alpha"),
    ],
)
def test_certifier_parameter_validation(fitted, params, match):
    clf, X, _ = fitted
    with pytest.raises(ValueError, match=match):
        SequentialCertifier(clf, **params).certify(X)


def test_certifier_refuses_unfitted_and_estimated_lipschitz(linear3, blobs3):
    from sklearn.exceptions import NotFittedError

    from smoothlearn.lipschitz import LocalGradientLipschitz

    X, y = blobs3
    with pytest.raises(NotFittedError):
        SequentialCertifier(SmoothedClassifier(linear3)).certify(X)
    clf = SmoothedClassifier(linear3, smoothing="soft", random_state=0).fit(X, y)
    # An estimate of the constant cannot enter a certificate, sequential or not
    # (a guaranteed one can: test_sequential_soft_lipschitz_is_sound...).
    clf.set_params(lipschitz=LocalGradientLipschitz())
    with pytest.raises(ValueError, match="guaranteed"):
        SequentialCertifier(clf).certify(X)


@pytest.mark.parametrize("temperature", [1.0, "auto"])
def test_certifier_soft_smoothing(linear3, blobs3, temperature):
    X, y = blobs3
    clf = SmoothedClassifier(
        linear3,
        sigma=0.5,
        smoothing="soft",
        temperature=temperature,
        random_state=0,
    ).fit(X, y)
    res = SequentialCertifier(clf, target_radius=0.25, n_max=3_000).certify(X[::12])
    assert res.smoothing == "soft" and res.score_map.shape == (10,)
    assert np.all(res.estimation_sq <= res.estimation + 1e-9)
    np.testing.assert_allclose(res.estimation.sum(1), res.n_draws, rtol=1e-9)
    assert np.any(res.decisions == 1) and np.all(res.n_draws <= 3_000)
    np.testing.assert_allclose(res.recertify().radius, res.radius)


def test_certifier_clones_and_prints(fitted):
    from sklearn.base import clone

    clf, _, _ = fitted
    seq = SequentialCertifier(clf, target_radius=0.5)
    assert clone(seq).get_params()["target_radius"] == 0.5
    assert "SequentialCertifier" in repr(seq)


# ---------------------------------------------------------------------------
# Validity by simulation
# ---------------------------------------------------------------------------
def _max_failures(n_trials, rate, false_alarm=1e-4):
    """Largest failure count a valid procedure produces with prob >= 1 - 1e-4.

    If the true failure probability is at most ``rate``, the count exceeds
    ``binom.ppf(1 - false_alarm, n_trials, rate)`` with probability at most
    ``false_alarm``: this is the test's own false-alarm rate (1e-4).
    """
    return int(binom.ppf(1 - false_alarm, n_trials, rate))


def _critical_sums(rejects, horizon, upper):
    """Smallest sum s in [0, upper(n)] with rejects(s, n), for n = 1..horizon.

    ``rejects`` must be monotone in s (true from some s on); horizon + 1
    where it is never true.  Vectorised bisection over n.
    """
    n = np.arange(1, horizon + 1, dtype=float)
    top = upper(n)
    lo, hi = np.full(horizon, -1.0), top.copy()  # rejects(hi) or hi = top
    never = ~rejects(top, n)
    for _ in range(60):
        mid = np.floor(0.5 * (lo + hi)) if upper is _counts else 0.5 * (lo + hi)
        ok = rejects(mid, n)
        hi, lo = np.where(ok, mid, hi), np.where(ok, lo, mid)
    return np.where(never, horizon + 1, hi)


def _counts(n):
    return n


@pytest.mark.slow
@pytest.mark.parametrize("p", [0.5, 0.9, 0.99])
def test_time_uniform_coverage_bernoulli(p):
    # Each of 4000 paths of 2000 Bernoulli(p) draws is checked at EVERY n: the
    # lower sequence at alpha = 0.05 may exclude p at some n on at most 5 % of
    # the paths (Ville).  Since the capital increases with k, "L_n > p" is
    # "S_n >= c_n" for a critical count c_n computed once per n.
    alpha, n_paths, horizon = 0.05, 4000, 2000
    gen = np.random.default_rng(int(p * 1000))
    critical = _critical_sums(
        lambda k, n: _log_capital(k, n, p) >= -np.log(alpha), horizon, _counts
    )
    paths = np.cumsum(gen.random((n_paths, horizon)) < p, axis=1)
    fails = np.any(paths >= critical[None, :], axis=1).sum()
    assert fails <= _max_failures(n_paths, alpha)
    # Negative control: a fixed-n Clopper-Pearson bound checked at every n is
    # NOT valid under continuous monitoring; the same test catches it.
    cp = ClopperPearson()
    cp_critical = _critical_sums(
        lambda k, n: cp.lower(np.clip(k, 0, n), n, alpha) > p, horizon, _counts
    )
    cp_fails = np.any(paths >= cp_critical[None, :], axis=1).sum()
    assert cp_fails > 2 * _max_failures(n_paths, alpha)


@pytest.mark.slow
def test_time_uniform_coverage_bounded_scores():
    # [0, 1]-valued scores with mean exactly m (a Beta law, a two-point law,
    # Bernoulli), 3000 paths each checked at every n <= 1000; alpha = 0.05.
    # The capital increases with the running sum, so a critical sum per n
    # (bisection on the real line) replaces evaluating every path.
    alpha, n_paths, horizon, m = 0.05, 3000, 1000, 0.8
    gen = np.random.default_rng(1)
    critical = _critical_sums(
        lambda s, n: _log_capital(s, n, m) >= -np.log(alpha),
        horizon,
        lambda n: n.astype(float),
    )
    samplers = [
        lambda size: gen.beta(4 * m, 4 * (1 - m), size=size),
        lambda size: np.where(gen.random(size) < 0.5, 0.6, 1.0),
        lambda size: (gen.random(size) < m).astype(float),
    ]
    for sample in samplers:
        sums = np.cumsum(sample((n_paths, horizon)), axis=1)
        fails = np.any(sums >= critical[None, :], axis=1).sum()
        assert fails <= _max_failures(n_paths, alpha)


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["mono", "multi"])
def test_decisions_at_the_threshold_are_rarely_wrong(kind):
    # True probabilities exactly at the decision boundary: every decision is
    # wrong there, so the rate of decisions estimates the error rate.  alpha =
    # 0.1 split 0.05 / 0.05; 2000 inputs, budget 2000 draws each.
    gen = np.random.default_rng(7)
    sigma, r, alpha, n_inputs = 0.5, 0.25, 0.1, 2000
    if kind == "mono":
        p_star = ndtr(r / sigma)
        probs = np.tile([p_star, 1 - p_star], (n_inputs, 1))
        procedure = TopClass(binomial=BettingConfidenceSequence())
    else:
        # Exact multi radius sigma/2 (Phi^-1(pA) - Phi^-1(pB)) equal to r.
        p_b = 0.2
        p_a = ndtr(2 * r / sigma + ndtri(p_b))
        probs = np.tile([p_a, p_b, 1 - p_a - p_b], (n_inputs, 1))
        procedure = ClassPartitioning(binomial=BettingConfidenceSequence())
    selection = np.tile([100, 50, 0], (n_inputs, 1))[:, : probs.shape[1]]
    out = _run(
        probs,
        gen,
        target_radius=[r],
        procedure=procedure,
        kind=kind,
        sigma=sigma,
        alpha=alpha,
        n_max=2000,
        selection=selection,
    )
    robust = (out["decisions"][:, 0] == 1).sum()
    not_robust = (out["decisions"][:, 0] == -1).sum()
    assert robust <= _max_failures(n_inputs, alpha / 2)
    assert not_robust <= _max_failures(n_inputs, alpha / 2)
    assert robust + not_robust <= _max_failures(n_inputs, alpha)


@pytest.mark.slow
def test_certificates_of_the_certifier_are_valid_on_a_known_model():
    # A linear binary model: class 1 iff x_0 > 0, so with noise sigma the exact
    # smoothed probability is Phi(x_0 / sigma) and the exact mono radius is
    # |x_0|.  40 inputs near the decision radius, alpha = 0.2: a certified
    # radius above |x_0| is a failure (rate <= 0.1 = alpha_robust).
    import torch

    module = torch.nn.Linear(1, 2)
    with torch.no_grad():
        module.weight.copy_(torch.tensor([[-1.0], [1.0]]))
        module.bias.zero_()
    x0 = np.linspace(0.2, 0.3, 40, dtype=np.float32)[:, None]
    clf = SmoothedClassifier(module, sigma=0.5, alpha=0.2, random_state=1)
    clf.fit(np.array([[-1.0], [1.0]], dtype=np.float32), [0, 1])
    res = SequentialCertifier(clf, target_radius=0.25, n_max=4000).certify(x0)
    fails = (~res.abstained & (res.radius > x0[:, 0])).sum()
    assert fails <= _max_failures(40, 0.1)
    wrong_robust = ((res.decisions[:, 0] == 1) & (x0[:, 0] < 0.25)).sum()
    wrong_not = ((res.decisions[:, 0] == -1) & (x0[:, 0] > 0.25)).sum()
    assert wrong_robust + wrong_not <= _max_failures(40, 0.2)


# ---------------------------------------------------------------------------
# recertify to another radius kind (issue 17, defect 1)
# ---------------------------------------------------------------------------
def _contradictions(res):
    """Decisions that contradict the result's own radius (never allowed)."""
    r = res.target_radius[None, :]
    radius = res.radius[:, None]
    return ((res.decisions == -1) & (radius >= r)) | (
        (res.decisions == 1) & (radius < r)
    )


def _wrong_decisions(decisions, target_radius, exact):
    """Per input: does any decision contradict the exact radius ``exact``?

    ``1`` claims exact >= certified >= r, ``-1`` claims exact < r.
    """
    r = np.asarray(target_radius)[None, :]
    exact = np.asarray(exact)[:, None]
    return np.any(
        ((decisions == 1) & (exact < r)) | ((decisions == -1) & (exact >= r)), 1
    )


# Thresholds of a 3-class IntervalClassifier whose smoothed probabilities at
# projection u = 0 and sigma = 1 are (0.7, 0.15, 0.15).
_THRESHOLDS_3 = np.array([ndtri(0.7), ndtri(0.85)])


def _threshold_probabilities(u, sigma=1.0):
    """P(class k) of the threshold model at projection u (one row per u)."""
    edges = np.r_[-np.inf, _THRESHOLDS_3, np.inf]
    return np.diff(ndtr((edges[None, :] - np.asarray(u, float)[:, None]) / sigma), 1)


def _exact_radii(probs, chosen, sigma=1.0):
    """Exact (infinite-draw) mono and multi radii of the chosen class."""
    rows = np.arange(len(probs))
    p_a = probs[rows, chosen]
    others = probs.copy()
    others[rows, chosen] = -np.inf
    mono = sigma * ndtri(p_a)
    multi = 0.5 * sigma * (ndtri(p_a) - ndtri(others.max(1)))
    return mono, multi


@pytest.fixture
def issue17_mono():
    """The reproduction of issue 17, defect 1: a "not robust" mono run.

    Class probabilities 0.7 / 0.15 / 0.15 under the noise (sigma = 1), so the
    exact mono radius is Phi^-1(0.7) = 0.524 and the exact multi radius
    (Phi^-1(0.7) - Phi^-1(0.15)) / 2 = 0.780, on either side of r = 0.65.
    The model reads the first coordinate only: the 200 inputs are at 0 there
    but distinct (second coordinate 0 ... 199), so their noise streams are
    independent whatever identifies a stream (position or content).
    """
    from conftest import IntervalClassifier

    model = IntervalClassifier([1.0, 0.0], _THRESHOLDS_3)
    X_fit = np.array([[-2.0, 0.0], [0.0, 0.0], [2.0, 0.0]], dtype=np.float32)
    clf = SmoothedClassifier(model, sigma=1.0, alpha=0.01, random_state=0)
    clf.fit(X_fit, [0, 1, 2])
    X = np.stack([np.zeros(200), np.arange(200.0)], 1).astype(np.float32)
    res = SequentialCertifier(clf, target_radius=0.65).certify(X)
    return res


def test_recertify_to_multi_does_not_keep_mono_not_robust(issue17_mono):
    res = issue17_mono
    mono, multi = ndtri(0.7), 0.5 * (ndtri(0.7) - ndtri(0.15))
    assert res.kind == "mono" and mono < 0.65 <= multi
    assert res.alpha == 0.005 and res.alpha_not_robust == 0.005
    # Each input's decisions are wrong with probability <= its share of alpha,
    # independently over the 200 inputs; a count above
    # binom.ppf(1 - 1e-6, 200, 0.005) = 8 has probability <= 1e-6 (this
    # check's false-alarm rate, and that of each check below).
    budget = int(binom.ppf(1 - 1e-6, 200, 0.005))
    assert budget == 8
    # The mono run: "not robust" is right (measured: all 200).
    assert (res.decisions == 1).sum() <= budget
    assert (res.decisions == -1).mean() > 0.9
    assert not _contradictions(res).any()

    cpm = ClassPartitioning(binomial=BettingConfidenceSequence())
    multi_res = res.recertify(radius="multi", interval=cpm)
    # Before the fix all 200 "not robust" were kept, 73 of them (36.5 %) next
    # to a certified multi radius >= 0.65.  Now no decision contradicts the
    # radius, and a -1 (wrong here: the exact multi radius is 0.780) is as
    # rare as alpha_not_robust allows (measured: none; 73 robust, 127
    # undecided).
    assert not _contradictions(multi_res).any()
    assert (multi_res.decisions == -1).sum() <= budget
    robust = multi_res.decisions[:, 0] == 1
    np.testing.assert_array_equal(robust, multi_res.radius >= 0.65)
    assert robust.sum() > 20  # the multi certificate does reach 0.65 often
    # The decisions are a function of the statistics, the kind and the
    # procedure: going back recomputes the mono run's decisions exactly.
    back = multi_res.recertify(
        radius="mono", interval=TopClass(binomial=BettingConfidenceSequence())
    )
    np.testing.assert_array_equal(back.decisions, res.decisions)
    np.testing.assert_array_equal(back.radius, res.radius)


def test_recertified_decisions_survive_save_and_load(issue17_mono, tmp_path):
    cpm = ClassPartitioning(binomial=BettingConfidenceSequence())
    multi_res = issue17_mono.recertify(radius="multi", interval=cpm, alpha=0.002)
    assert np.any(multi_res.decisions != issue17_mono.decisions)
    path = tmp_path / "recertified.npz"
    multi_res.save(path)
    back = CertificationResult.load(path)
    assert type(back) is SequentialCertificationResult
    _same_result(back, multi_res)
    assert back.kind == "multi" and back.alpha == 0.002
    # Recertifying the loaded result with its own settings changes nothing.
    _same_result(back.recertify(), multi_res)


def test_recertify_never_decides_not_robust_without_its_budget(issue17_mono):
    # alpha_not_robust = 0 (no "not robust" decision was ever allowed): the
    # recomputation may certify, never conclude "not robust".
    res = replace(issue17_mono, alpha_not_robust=0.0)
    for kind, procedure in (("mono", TopClass), ("multi", ClassPartitioning)):
        again = res.recertify(
            radius=kind, interval=procedure(binomial=BettingConfidenceSequence())
        )
        assert not np.any(again.decisions == -1)
        np.testing.assert_array_equal(again.decisions[:, 0] == 1, again.radius >= 0.65)


def _gamma_draw(probs, gen, concentration=3.0):
    """Soft scores: Dirichlet(concentration * p) draws, mean p, on the simplex."""

    def draw(indices, m, round_index):
        shape = concentration * probs[indices][:, None, :]
        g = gen.gamma(shape, size=(indices.size, m, probs.shape[1]))
        s = g / g.sum(2, keepdims=True)
        return s.sum(1), (s * s).sum(1)

    return draw


def _as_result(out, selection, procedure, *, kind, sigma, target, a_r, a_nr, soft):
    """The SequentialCertificationResult that certify builds from the engine."""
    abst = out["abstained"]
    return SequentialCertificationResult(
        prediction=np.where(abst, -1, out["prediction"]),
        radius=np.where(abst, 0.0, out["radius"]),
        pA_lower=out["pA_lower"],
        pB_upper=out["pB_upper"],
        abstained=abst,
        n_bounds=out["n_bounds"],
        selection=selection,
        estimation=out["estimation"],
        estimation_sq=out["estimation_sq"],
        n0=int(selection.sum(1).max()),
        n=int(out["n_draws"].max()),
        sigma=sigma,
        alpha=a_r,
        interval=procedure,
        kind=kind,
        smoothing="soft" if soft else "hard",
        classes=np.arange(selection.shape[1]),
        n_draws=out["n_draws"],
        target_radius=np.asarray(target, float),
        decisions=out["decisions"],
        alpha_not_robust=a_nr,
    )


@pytest.mark.parametrize("soft", [False, True], ids=["counts", "soft"])
@pytest.mark.parametrize("forward", ["mono", "multi"])
def test_recertified_decisions_are_valid_against_known_truth(forward, soft):
    """Wrong decisions after recertify to the other kind, against exact radii.

    The threshold model at 7 projections u, 250 inputs each: u = 0 (exact
    mono 0.524 < r = 0.65 < exact multi 0.780), the two points where the
    exact mono or the exact multi radius is r (plus and minus 1e-9, so one
    of the two answers is wrong there) and two easy points.  Hard counts are
    multinomial draws; soft scores are Dirichlet draws with the same means
    (the exact radii of the soft classifier are those of the means).  The
    engine runs in the ``forward`` kind with alpha = 0.2 (0.1 / 0.1); the
    result is recertified to the other kind.  An input's decisions are all
    right with probability >= 1 - alpha - alpha_not_robust = 0.8,
    independently over inputs, so the number of inputs with a wrong decision
    is stochastically below Binomial(1750, 0.2); the check fails when its
    upper tail is below 1e-6 (this test's false-alarm rate).  Keeping the
    forward run's "not robust" decisions (the defect) fails the same check
    for a mono run (negative control).
    """
    gen = np.random.default_rng(17 + soft + 2 * (forward == "multi"))
    sigma, r, alpha, a_nr = 1.0, np.array([0.4, 0.65]), 0.2, 0.1
    u_mono = ndtri(0.7) - 0.65  # exact mono radius Phi^-1(p_A) = 0.65
    u_multi = 0.1304169511009151  # exact multi radius 0.65 (brentq)
    u = np.repeat(
        [0.0, u_mono - 1e-9, u_mono + 1e-9, u_multi - 1e-9, u_multi + 1e-9, -1, 0.6],
        250,
    )
    probs = _threshold_probabilities(u, sigma)
    np.testing.assert_allclose(_exact_radii(probs[250:251], [0])[0], 0.65)
    np.testing.assert_allclose(_exact_radii(probs[750:751], [0])[1], 0.65)
    selection = gen.multinomial(100, probs)
    if soft:
        selection = selection.astype(float)
    procedures = {
        "mono": TopClass(binomial=BettingConfidenceSequence()),
        "multi": ClassPartitioning(binomial=BettingConfidenceSequence()),
    }
    new = "multi" if forward == "mono" else "mono"
    out = _run(
        probs,
        gen,
        target_radius=r,
        procedure=procedures[forward],
        kind=forward,
        sigma=sigma,
        alpha=alpha,
        n_max=4_000,
        selection=selection,
        draw=_gamma_draw(probs, gen) if soft else None,
        soft=soft,
    )
    res = _as_result(
        out,
        selection,
        procedures[forward],
        kind=forward,
        sigma=sigma,
        target=r,
        a_r=alpha - a_nr,
        a_nr=a_nr,
        soft=soft,
    )
    np.testing.assert_array_equal(res.recertify().decisions, res.decisions)
    again = res.recertify(radius=new, interval=procedures[new])
    assert again.kind == new and not _contradictions(again).any()
    # Truth of the chosen class (the selection's argmax, as every procedure).
    mono, multi = _exact_radii(probs, selection.argmax(1), sigma)
    exact = {"mono": mono, "multi": multi}
    n_inputs = len(u)

    def too_many(n_wrong):
        return binom.sf(n_wrong - 1, n_inputs, alpha) < 1e-6

    wrong = _wrong_decisions(again.decisions, r, exact[new]).sum()
    assert not too_many(wrong), wrong
    # The forward decisions were valid for their own kind.
    assert not too_many(_wrong_decisions(res.decisions, r, exact[forward]).sum())
    # Negative control: the old recertify kept the forward "not robust".
    kept = np.where(res.decisions == -1, -1, again.decisions)
    wrong_kept = _wrong_decisions(kept, r, exact[new]).sum()
    if forward == "mono":
        assert too_many(wrong_kept), wrong_kept
    else:
        # A multi "not robust" implies a mono one (mono <= multi radius).
        assert wrong_kept == wrong


def test_sequential_soft_lipschitz_is_sound_on_a_linear_model():
    """Sequential + soft + a guaranteed Lipschitz constant (issue 18).

    Logits z(x) = (0, a x_0): exactly a-Lipschitz.  The soft smoothed score
    of class 1 is E[sigmoid(t a (x_0 + sigma Z))], which is 1/2 exactly on
    x_0 = 0 (the logistic and the Gaussian are symmetric), so an input at
    x_0 = -d has true robust radius d, hard and soft alike.  The second
    coordinate is ignored by the model; it only makes the inputs (hence
    their noise streams) distinct.  Validity: a wrong certificate (class 1,
    or a radius above d), a wrong "robust at r" (r > d) or a wrong "not
    robust at r" (the exact Lipschitz-aware radius at the true pA is >= r)
    must be no more frequent than alpha = 0.1 allows: the test fails when
    more than binom.isf(1e-6, N, 0.1) inputs have any wrong claim (false
    alarm 1e-6).  The same statistics recertified with a constant 50 times
    too small (an invalid claim of smoothness) break that bound, so the test
    can fail.
    """
    from scipy import integrate
    from scipy.stats import binom, norm

    from smoothlearn.radius import lipschitz_radius

    a, sigma, t, alpha = 1.0, 0.5, 1.0, 0.1
    model = make_linear_module([[0.0, 0.0], [a, 0.0]], [0.0, 0.0])
    ds = np.array([0.3, 0.6])
    per = 60
    X = np.array([[-d, 1e-3 * i] for d in ds for i in range(per)], dtype=np.float32)
    true_d = np.repeat(ds, per)
    clf = SmoothedClassifier(
        model,
        sigma=sigma,
        n0=50,
        n=2000,
        smoothing="soft",
        temperature=t,
        lipschitz=a,
        random_state=0,
    ).fit(X, np.zeros(len(X), dtype=int))
    targets = np.array([0.25, 0.5, 0.9])
    res = SequentialCertifier(
        clf, target_radius=targets, n_max=10_000, alpha=alpha
    ).certify(X)
    L_score = np.sqrt(2.0) / 4.0 * t * a  # softmax's constant * t * L_logits
    np.testing.assert_allclose(res.score_lipschitz, L_score)
    assert res.lipschitz == a and res.radius_method == "paper"

    def smoothed_class0(x0):
        def integrand(z):
            return norm.pdf(z) / (1.0 + np.exp(-t * a * (x0 + sigma * z)))

        return 1.0 - integrate.quad(integrand, -12.0, 12.0, epsabs=1e-13)[0]

    p_true = np.array([smoothed_class0(-d) for d in true_d])

    def n_wrong(r):
        # "not robust" is about the exact certificate of the result's own kind
        exact = lipschitz_radius(p_true, None, sigma, r.score_lipschitz, kind="mono")
        bad = (r.prediction != 0) & ~r.abstained
        bad |= r.radius > true_d
        bad |= np.any((r.decisions == 1) & (targets[None, :] > true_d[:, None]), 1)
        bad |= np.any((r.decisions == -1) & (exact[:, None] >= targets[None, :]), 1)
        return int(bad.sum())

    limit = binom.isf(1e-6, len(X), alpha)
    assert n_wrong(res) <= limit
    # the Lipschitz term pays: certified radii above Cohen's on the same draws
    cohen = res.recertify(lipschitz=np.inf)
    assert np.all(cohen.score_lipschitz == np.inf)
    assert np.mean(res.radius > cohen.radius) > 0.9
    assert n_wrong(cohen) <= limit
    # negative control: an invalid (too small) constant is caught
    assert n_wrong(res.recertify(lipschitz=a / 50)) > limit
