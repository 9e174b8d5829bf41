"""Tests of smoothlearn.radius: Cohen's radius, the ramp offset s0 and the
Lipschitz-aware radii of Delattre et al. (AISTATS 2025)."""

import numpy as np
import pytest
from scipy.integrate import quad
from scipy.optimize import brentq
from scipy.special import ndtr, ndtri
from scipy.stats import norm

from smoothlearn import radius
from smoothlearn.radius import (
    abstained,
    gaussian_radius,
    lipschitz_radius,
    margin_radius,
    smoothed_lipschitz_constant,
    solve_s0,
)

EPS = np.finfo(np.float64).eps


# ---------------------------------------------------------------------------
# Independent references
# ---------------------------------------------------------------------------


def s0_reference(p, sigma, L):
    """s0 by adaptive quadrature and Brent's method (scipy), one point at a time.

    Solves L * int_{s0}^{s0 + 1/L} Phi(s / sigma) ds = 1 - p, the ramp equation
    written with 1 - p so that p close to 1 keeps its relative precision; the
    bracket [c - 1/L, c], c = -sigma Phi^{-1}(p), always contains the root.
    """

    def excess(s0):
        hi = s0 + 1.0 / L
        points = [0.0] if s0 < 0.0 < hi else None
        val, _ = quad(
            lambda s: ndtr(s / sigma),
            s0,
            hi,
            epsabs=0.0,
            epsrel=1e-13,
            limit=200,
            points=points,
        )
        return L * val - (1.0 - p)

    c = -sigma * ndtri(p)
    return brentq(excess, c - 1.0 / L, c, xtol=1e-14, rtol=4 * EPS, maxiter=200)


def ramp_smoothed(s0, sigma, L):
    """E[clip(L (sigma Z - s0), 0, 1)] in closed form (plain scipy.stats)."""

    def psi(t):
        return t * norm.cdf(t) + norm.pdf(t)

    return 1.0 - L * sigma * (psi((s0 + 1.0 / L) / sigma) - psi(s0 / sigma))


def random_grid(rng, n, L_range=(0.01, 100.0)):
    p = rng.uniform(0.501, 0.99999, n)
    sigma = rng.uniform(0.05, 2.0, n)
    L = np.exp(rng.uniform(np.log(L_range[0]), np.log(L_range[1]), n))
    return p, sigma, L


# ---------------------------------------------------------------------------
# Cohen's radius
# ---------------------------------------------------------------------------


def test_gaussian_radius_values_and_abstention():
    # sigma/2 (Phi^-1(0.9) - Phi^-1(0.05)) with scipy.stats.norm.ppf
    expected = 0.25 * (norm.ppf(0.9) - norm.ppf(0.05))
    assert gaussian_radius(0.9, 0.05, sigma=0.5) == pytest.approx(expected, rel=1e-14)
    assert gaussian_radius(0.4, sigma=0.5, kind="mono") == 0.0
    assert gaussian_radius(0.3, 0.4, sigma=0.5) == 0.0
    assert gaussian_radius(1.0, sigma=0.5, kind="mono") == np.inf
    assert gaussian_radius(0.5, 0.0, sigma=0.5) == np.inf
    np.testing.assert_array_equal(
        abstained([0.4, 0.5, 0.6], kind="mono"), [True, False, False]
    )


# ---------------------------------------------------------------------------
# solve_s0
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "p, L, expected",
    [
        # SCIENCE.md section 2.5, sigma = 0.5 (matches the authors' quad solver).
        (0.9, 2.0, -0.9172115404),
        (0.99, 0.5, -2.6801175816),
        (0.6, 10.0, -0.1768847047),
    ],
)
def test_solve_s0_science_vectors(p, L, expected):
    assert solve_s0(p, 0.5, L) == pytest.approx(expected, abs=6e-11)


def test_solve_s0_matches_quadrature_reference():
    rng = np.random.default_rng(0)
    p, sigma, L = random_grid(rng, 40)
    ref = np.array([s0_reference(*args) for args in zip(p, sigma, L, strict=True)])
    np.testing.assert_allclose(solve_s0(p, sigma, L), ref, rtol=0, atol=1e-10)


@pytest.mark.slow
def test_solve_s0_matches_quadrature_reference_large_grid():
    rng = np.random.default_rng(1)
    p, sigma, L = random_grid(rng, 1500)
    ref = np.array([s0_reference(*args) for args in zip(p, sigma, L, strict=True)])
    np.testing.assert_allclose(solve_s0(p, sigma, L), ref, rtol=0, atol=1e-10)


@pytest.mark.parametrize("p", [0.501, 0.6, 0.9, 0.99, 0.99999])
def test_solve_s0_small_L(p):
    # 1/L = 2000 sigma: the authors' +-5 sigma bracket fails here.
    ref = s0_reference(p, 0.5, 0.001)
    assert solve_s0(p, 0.5, 0.001) == pytest.approx(ref, rel=1e-13, abs=1e-10)


def test_solve_s0_near_half_and_one():
    # Near p = 1/2 and p = 1 (p < 1/2 via the symmetry, checked below).
    p = np.array([0.5 + 1e-12, 0.5 + 1e-6, 1 - 1e-8, 1 - 1e-12])
    for sigma, L in [(0.5, 2.0), (0.25, 0.1), (1.0, 30.0)]:
        ref = np.array([s0_reference(pi, sigma, L) for pi in p])
        np.testing.assert_allclose(solve_s0(p, sigma, L), ref, rtol=0, atol=1e-10)


def test_solve_s0_symmetry():
    rng = np.random.default_rng(2)
    p, sigma, L = random_grid(rng, 2000, L_range=(1e-3, 1e8))
    p = np.concatenate([p, 1 - 10.0 ** rng.uniform(-15, -3, 200)])
    sigma, L = np.resize(sigma, p.size), np.resize(L, p.size)
    # 1 - p is exact in floating point for p >= 1/2.
    lhs = solve_s0(1.0 - p, sigma, L)
    rhs = -1.0 / L - solve_s0(p, sigma, L)
    scale = np.maximum(sigma, np.abs(lhs))
    assert np.all(np.abs(lhs - rhs) <= 1e-13 * scale)


def test_solve_s0_special_values():
    sigma, L = 0.5, 2.0
    assert solve_s0(0.5, sigma, L) == -1.0 / (2 * L)
    assert solve_s0(1.0, sigma, L) == -np.inf
    assert solve_s0(0.0, sigma, L) == np.inf
    p = np.array([0.0, 0.1, 0.5, 0.9, 1.0])
    # L = inf is the Cohen limit, exactly.
    np.testing.assert_array_equal(solve_s0(p, sigma, np.inf), -sigma * ndtri(p))
    # Tiny probabilities (a pB_upper) stay finite and monotone.
    s = solve_s0([1e-300, 1e-200, 1e-100], sigma, L)
    assert np.all(np.isfinite(s)) and np.all(np.diff(s) < 0)


def test_solve_s0_large_L_sigma_tends_to_cohen():
    # The Cohen limit -sigma Phi^-1(p) - 1/(2L) errs by sigma |z| a^2 / 24 + O(a^4),
    # a = 1 / (L sigma).
    p = np.array([0.51, 0.9, 0.999, 1 - 1e-12])
    z = ndtri(p)
    for L_sigma in [1e3, 1e5, 1e6, 1e9]:
        sigma = 0.5
        L = L_sigma / sigma
        a = 1.0 / L_sigma
        cohen = -sigma * z - 0.5 / L
        s0 = solve_s0(p, sigma, L)
        bound = sigma * np.abs(z) * a * a / 24 * 1.01 + 4 * EPS * np.abs(s0)
        assert np.all(np.abs(s0 - cohen) <= bound)
        if L_sigma >= 1e6:
            assert np.all(np.abs(s0 - cohen) <= 1e-12 * sigma)


@pytest.mark.parametrize(
    "switch, lower, upper",
    [("_A_CLOSED", "closed", "series"), ("_A_SERIES", "series", "exact")],
)
def test_solve_s0_regimes_agree_at_switch(monkeypatch, switch, lower, upper):
    # Evaluate the same a with the regime on either side of the switch point
    # (moving the threshold) and check that both agree: continuity.
    a = getattr(radius, switch)
    p = np.array([0.500001, 0.6, 0.9, 0.999, 1 - 1e-9, 1 - 1e-15, 1e-100, 0.3])
    a_arr = np.full(p.shape, a)
    base = radius._kappa_gamma(p, a_arr)
    monkeypatch.setattr(radius, switch, a * 0.5)  # a now above the threshold
    other = radius._kappa_gamma(p, a_arr)
    names = ("kappa", "gamma", "z", "s0")
    # gamma's exact form has a relative rounding error up to ~1e-12 deep in the
    # tails at this a (log_ndtr differences); kappa and s0 agree to ~1e-14.
    for name, x, y in zip(names, base, other, strict=True):
        rtol = 1e-12 if name == "gamma" else 1e-13
        np.testing.assert_allclose(x, y, rtol=rtol, atol=1e-14, err_msg=name)


def test_solve_s0_continuous_across_switch_points():
    p = np.array([0.51, 0.9, 0.99999, 1 - 1e-12])
    for a in (radius._A_CLOSED, radius._A_SERIES):
        for sigma in (0.05, 1.0):
            # s0 + 1/(2L) = -sigma kappa varies only at O(a^2) with L.
            L_below, L_above = (1 + 1e-9) / (a * sigma), (1 - 1e-9) / (a * sigma)
            below = solve_s0(p, sigma, L_below) + 0.5 / L_below
            above = solve_s0(p, sigma, L_above) + 0.5 / L_above
            assert np.all(np.abs(below - above) <= 1e-13 * np.maximum(1, np.abs(below)))


@pytest.mark.parametrize(
    "kwargs, name",
    [
        ({"p": np.nan}, "'p'"),
        ({"p": 1.2}, "'p'"),
        ({"p": -0.1}, "'p'"),
        ({"sigma": 0.0}, "'sigma'"),
        ({"sigma": -1.0}, "'sigma'"),
        ({"sigma": np.inf}, "'sigma'"),
        ({"sigma": np.nan}, "'sigma'"),
        ({"L": 0.0}, "'L'"),
        ({"L": -2.0}, "'L'"),
        ({"L": np.nan}, "'L'"),
        ({"L": "big"}, "'L'"),
        ({"p": [0.6, 0.7], "L": [1.0, 2.0, 3.0]}, "broadcast"),
    ],
)
def test_solve_s0_bad_input(kwargs, name):
    args = {"p": 0.9, "sigma": 0.5, "L": 1.0, **kwargs}
    with pytest.raises(ValueError, match=name):
        solve_s0(**args)


def test_solve_s0_underflowing_product():
    with pytest.raises(ValueError, match="underflows"):
        solve_s0(0.9, 1e-200, 1e-200)


# ---------------------------------------------------------------------------
# lipschitz_radius
# ---------------------------------------------------------------------------

# SCIENCE.md section 2.5 table, sigma = 0.5: Cohen / paper R_monoLip / envelope
# R*_mono, rounded to 3 decimals (derived there with quad + brentq).
SCIENCE_TABLE = [
    (0.25, 0.6, 0.127, 0.392, 0.400),
    (0.25, 0.9, 0.641, 1.216, 1.679),
    (0.25, 0.999, 1.545, 1.929, 3.011),
    (0.5, 0.8, 0.421, 0.637, 0.679),
    (1.0, 0.9, 0.641, 0.733, 0.743),
    (1.0, 0.99, 1.163, 1.289, 1.331),
    (2.0, 0.999, 1.545, 1.597, 1.605),
    (4.0, 0.99, 1.163, 1.175, 1.175),
    (10.0, 0.8, 0.421, 0.422, 0.422),
]


@pytest.mark.parametrize("L, p, cohen, paper, envelope", SCIENCE_TABLE)
def test_lipschitz_radius_science_table(L, p, cohen, paper, envelope):
    sigma = 0.5
    assert gaussian_radius(p, sigma=sigma, kind="mono") == pytest.approx(
        cohen, abs=5e-4
    )
    r_paper = lipschitz_radius(p, sigma=sigma, L=L, kind="mono")
    r_env = lipschitz_radius(p, sigma=sigma, L=L, kind="mono", method="envelope")
    assert r_paper == pytest.approx(paper, abs=5e-4)
    assert r_env == pytest.approx(envelope, abs=5e-4)


@pytest.mark.parametrize(
    "L, pA, pB, paper, envelope, cohen",
    [
        # SCIENCE.md section 2.6, sigma = 0.5 (code / envelope / Cohen).
        (0.25, 0.7, 0.2, 0.868, 1.007, 0.342),
        (1.0, 0.9, 0.05, 0.832, 0.846, 0.732),
    ],
)
def test_lipschitz_radius_science_multi(L, pA, pB, paper, envelope, cohen):
    sigma = 0.5
    assert lipschitz_radius(pA, pB, sigma, L) == pytest.approx(paper, abs=5e-4)
    assert lipschitz_radius(pA, pB, sigma, L, method="envelope") == pytest.approx(
        envelope, abs=5e-4
    )
    assert gaussian_radius(pA, pB, sigma) == pytest.approx(cohen, abs=5e-4)


def test_lipschitz_radius_multi_converges_for_large_L():
    # SCIENCE.md section 2.6 says that at L = 4 (sigma = 0.5) "the three agree to
    # 1e-4"; recomputed here, the paper and envelope forms agree to 1e-4 but both
    # exceed Cohen's radius by about 1% (L sigma = 2; the gain is second order
    # in 1 / (L sigma)), shrinking to 1e-4 relative by L sigma = 40.
    paper = lipschitz_radius(0.9, 0.05, 0.5, 4.0)
    env = lipschitz_radius(0.9, 0.05, 0.5, 4.0, method="envelope")
    cohen = gaussian_radius(0.9, 0.05, 0.5)
    assert abs(paper - env) < 1e-4
    assert 1.005 < paper / cohen < 1.015
    paper = lipschitz_radius(0.9, 0.05, 0.5, 100.0)
    assert paper / cohen - 1 < 1e-4


def test_lipschitz_radius_small_L_limit():
    # SCIENCE.md section 2.5, sigma = 0.5, L = 0.05: the paper's rho = 0 form is
    # not monotone in p (4.50, then 2.48), the envelope tends to (p - 1/2) / L.
    paper = lipschitz_radius([0.9, 0.99], sigma=0.5, L=0.05, kind="mono")
    env = lipschitz_radius(
        [0.9, 0.99], sigma=0.5, L=0.05, kind="mono", method="envelope"
    )
    np.testing.assert_allclose(paper, [4.50, 2.48], atol=5e-3)
    np.testing.assert_allclose(env, [8.00, 10.00], atol=5e-3)
    # Smoothing only lowers the Lipschitz constant: at least the plain
    # Lipschitz certificate (p - 1/2) / L.
    assert np.all(env >= (np.array([0.9, 0.99]) - 0.5) / 0.05)


def test_lipschitz_radius_L_inf_is_cohen():
    rng = np.random.default_rng(3)
    pA = rng.uniform(0, 1, 500)
    pB = rng.uniform(0, 1, 500) * (1 - pA)
    sigma = rng.uniform(0.05, 2, 500)
    for kind in ("mono", "multi"):
        cohen = gaussian_radius(pA, pB, sigma, kind=kind)
        for method in ("paper", "envelope"):
            r = lipschitz_radius(pA, pB, sigma, np.inf, kind=kind, method=method)
            np.testing.assert_array_equal(r, cohen)


@pytest.mark.parametrize("seed", range(5))
def test_lipschitz_radius_properties(seed):
    rng = np.random.default_rng(seed)
    n = 2000
    pA = np.sort(rng.uniform(0.3, 1.0, n))
    pB = rng.uniform(0, 0.7, n)
    sigma = rng.uniform(0.05, 2.0)
    L = np.exp(rng.uniform(np.log(0.01), np.log(100)))
    tol = 1e-12 * sigma
    for kind in ("mono", "multi"):
        cohen = gaussian_radius(pA, pB, sigma, kind=kind)
        paper = lipschitz_radius(pA, pB, sigma, L, kind=kind)
        env = lipschitz_radius(pA, pB, sigma, L, kind=kind, method="envelope")
        assert np.all(paper >= 0) and np.all(env >= 0)
        assert np.all(paper >= cohen)
        assert np.all(env >= cohen)
        assert np.all(env >= paper - tol * (1 + paper))
        # Same abstention rule as Cohen's radius.
        np.testing.assert_array_equal(paper == 0, cohen == 0)
        np.testing.assert_array_equal(env == 0, cohen == 0)
        np.testing.assert_array_equal(abstained(pA, pB, kind=kind), cohen == 0)
    # Monotone in pA_lower (pA sorted) with pB fixed, and in pB_upper: always
    # for the envelope form; for the paper's form when L sigma >= 0.1 (below
    # about 0.07 it is not monotone, see test_lipschitz_radius_small_L_limit).
    pB0 = 0.05
    methods = ("paper", "envelope") if L * sigma >= 0.1 else ("envelope",)
    for method in methods:
        r = lipschitz_radius(pA, pB0, sigma, L, method=method)
        assert np.all(np.diff(r) >= -tol)
        r = lipschitz_radius(0.8, np.sort(pB), sigma, L, method=method)
        assert np.all(np.diff(r) <= tol)
    # Envelope mono is monotone in pA for every L (the paper's form need not be,
    # see test_lipschitz_radius_small_L_limit).
    r = lipschitz_radius(pA, None, sigma, L, kind="mono", method="envelope")
    assert np.all(np.diff(r) >= -tol)


@pytest.mark.parametrize("seed", range(3))
def test_lipschitz_radius_mono_is_multi_with_complement(seed):
    rng = np.random.default_rng(seed)
    pA = rng.uniform(0.5, 1.0, 300)
    sigma, L = rng.uniform(0.05, 2), np.exp(rng.uniform(-4, 4))
    for method in ("paper", "envelope"):
        mono = lipschitz_radius(pA, None, sigma, L, kind="mono", method=method)
        multi = lipschitz_radius(pA, 1 - pA, sigma, L, method=method)
        np.testing.assert_allclose(mono, multi, rtol=1e-12, atol=1e-14)


def test_lipschitz_radius_tends_to_cohen_for_large_L_sigma():
    rng = np.random.default_rng(4)
    pA = rng.uniform(0.5, 1 - 1e-9, 500)
    pB = rng.uniform(0, 1, 500) * (1 - pA)
    sigma = 0.25
    for kind in ("mono", "multi"):
        cohen = gaussian_radius(pA, pB, sigma, kind=kind)
        for method in ("paper", "envelope"):
            r = lipschitz_radius(pA, pB, sigma, 1e6 / sigma, kind=kind, method=method)
            np.testing.assert_allclose(r, cohen, rtol=1e-10, atol=1e-13)


def test_paper_radius_below_envelope_on_dense_grid():
    # The paper's rho = 0 radius is sound because it is <= the envelope radius,
    # which follows from G being nondecreasing in |p - 1/2| (G(p) = G(1 - p)).
    # Check both on a dense grid of a = 1/(L sigma) and p.
    a = np.logspace(-3, 4, 29)[:, None]
    u = np.linspace(0, 1, 1001)[1:-1]
    p = np.unique(np.concatenate([0.5 + 0.5 * u, 1 - np.logspace(-3, -14, 200)]))
    kappa, gamma, z, _ = radius._kappa_gamma(p[None, :], a)
    # gamma = sigma G is nondecreasing in p on [1/2, 1), up to rounding.
    assert np.all(np.diff(gamma, axis=1) >= -1e-12 * gamma[:, 1:])
    np.testing.assert_allclose(
        radius._kappa_gamma(1 - p[None, :], a)[1], gamma, rtol=1e-11
    )
    # Mono: Phi^-1(p) / G <= kappa = R*_mono / sigma.
    assert np.all(z / gamma <= kappa + 1e-12 * (1 + kappa))
    # Multi, over pairs (pA, pB) with pB below and above 1/2.
    sigma = 1.0
    for a_val in (1e-2, 0.3, 3.0, 100.0):
        pA = p[::9][:, None]
        pB = np.concatenate([1 - p[::13], p[::13]])[None, :]
        pB = pB[pB <= pA.min()][None, :]
        L = 1.0 / (a_val * sigma)
        paper = lipschitz_radius(pA, pB, sigma, L)
        env = lipschitz_radius(pA, pB, sigma, L, method="envelope")
        assert np.all(paper <= env + 1e-12 * (1 + env))


def test_paper_multi_with_large_pB_falls_back_to_cohen():
    # pB_upper > 1/2 (loose bounds): the paper's formula alone is below Cohen's
    # here (and even negative); the larger, also valid, radius is returned.
    sigma, L, pA, pB = 0.5, 0.05, 0.99, 0.9

    def term(p):  # Phi^-1(p) / G(p), G = gamma / sigma
        return ndtri(p) / (radius._kappa_gamma(p, 1 / (L * sigma))[1] / sigma)

    assert 0.5 * (term(pA) - term(pB)) < 0
    assert lipschitz_radius(pA, pB, sigma, L) == gaussian_radius(pA, pB, sigma)


def test_lipschitz_radius_special_values():
    sigma, L = 0.5, 1.0
    for method in ("paper", "envelope"):
        r = lipschitz_radius(
            [1.0, 0.0, 0.5, 0.4, 0.6], None, sigma, L, kind="mono", method=method
        )
        np.testing.assert_array_equal(r, [np.inf, 0.0, 0.0, 0.0, r[-1]])
        assert 0 < r[-1] < np.inf
        r = lipschitz_radius(
            [0.7, 0.0, 1.0, 0.3, 0.4], [0.0, 0.0, 1.0, 0.4, 0.4], sigma, L,
            method=method,
        )  # fmt: skip
        np.testing.assert_array_equal(r, [np.inf, 0.0, 0.0, 0.0, 0.0])


def test_lipschitz_radius_broadcasts():
    r = lipschitz_radius([[0.9], [0.8]], [0.05, 0.1, 0.2], sigma=[0.25, 0.5, 1.0], L=2)
    assert r.shape == (2, 3)
    assert isinstance(lipschitz_radius(0.9, 0.05, 0.5, 2.0), float)


@pytest.mark.parametrize(
    "kwargs, name",
    [
        ({"pA_lower": 1.5}, "'pA_lower'"),
        ({"pB_upper": np.nan}, "'pB_upper'"),
        ({"sigma": 0}, "'sigma'"),
        ({"L": -1}, "'L'"),
        ({"L": np.nan}, "'L'"),
        ({"kind": "binary"}, "'kind'"),
        ({"method": "exact"}, "'method'"),
        ({"pB_upper": None}, "'pB_upper'"),
    ],
)
def test_lipschitz_radius_bad_input(kwargs, name):
    args = {"pA_lower": 0.9, "pB_upper": 0.05, "sigma": 0.5, "L": 1.0, **kwargs}
    with pytest.raises(ValueError, match=name):
        lipschitz_radius(**args)


# ---------------------------------------------------------------------------
# One-dimensional worst case: the ramp
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("seed", range(4))
def test_ramp_worst_case_mono(seed):
    # f(t) = clip(L (t - s0), 0, 1) with s0 = s0(pA): its smoothing at x = 0 is
    # pA; moving x by -R shifts s0 by +R.  At every certified radius the
    # smoothed score is still >= 1/2; slightly beyond the envelope radius it is
    # below 1/2 (the envelope radius is tight).
    rng = np.random.default_rng(seed)
    pA = rng.uniform(0.55, 0.999, 20)
    sigma = rng.uniform(0.1, 1.5)
    L = np.exp(rng.uniform(np.log(0.05), np.log(20)))
    s0 = solve_s0(pA, sigma, L)
    np.testing.assert_allclose(ramp_smoothed(s0, sigma, L), pA, atol=1e-12)
    paper = lipschitz_radius(pA, None, sigma, L, kind="mono")
    env = lipschitz_radius(pA, None, sigma, L, kind="mono", method="envelope")
    assert np.all(ramp_smoothed(s0 + paper, sigma, L) >= 0.5 - 1e-12)
    assert np.all(ramp_smoothed(s0 + env, sigma, L) >= 0.5 - 1e-12)
    beyond = env * (1 + 1e-6) + 1e-6 * sigma
    assert np.all(ramp_smoothed(s0 + beyond, sigma, L) < 0.5)


@pytest.mark.parametrize("seed", range(4))
def test_ramp_worst_case_multi(seed):
    # Class A: increasing ramp with smoothed value pA; class B: decreasing ramp
    # with smoothed value pB.  Moving x by -R: A's score is p(s0A + R) and B's is
    # p(s0B - R).  A stays on top up to the multi radii and loses just beyond
    # the envelope radius.
    rng = np.random.default_rng(seed)
    pA = rng.uniform(0.4, 0.99, 20)
    pB = rng.uniform(0.0, 1.0, 20) * np.minimum(pA, 1 - pA)
    sigma = rng.uniform(0.1, 1.5)
    L = np.exp(rng.uniform(np.log(0.05), np.log(20)))
    s0A, s0B = solve_s0(pA, sigma, L), solve_s0(pB, sigma, L)
    for method in ("paper", "envelope"):
        R = lipschitz_radius(pA, pB, sigma, L, method=method)
        gap = ramp_smoothed(s0A + R, sigma, L) - ramp_smoothed(s0B - R, sigma, L)
        assert np.all(gap >= -1e-12)
    beyond = R * (1 + 1e-6) + 1e-6 * sigma
    gap = ramp_smoothed(s0A + beyond, sigma, L) - ramp_smoothed(s0B - beyond, sigma, L)
    assert np.all(gap < 0)


# ---------------------------------------------------------------------------
# Smoothed Lipschitz constants and the margin radius
# ---------------------------------------------------------------------------


def test_smoothed_lipschitz_constant_values():
    # SCIENCE.md section 2.3: sigma = 0.5, r = 1, L = 1: LVM code 0.9545, tight 0.6827.
    assert smoothed_lipschitz_constant(1.0, 0.5) == pytest.approx(0.6827, abs=5e-5)
    assert smoothed_lipschitz_constant(1.0, 0.5, form="lvm") == pytest.approx(
        0.9545, abs=5e-5
    )
    L = np.array([1e-3, 0.1, 1.0, 10.0, 1e3, 1e8, np.inf])
    for r in (1.0, 2.5):
        tight = smoothed_lipschitz_constant(L, 0.5, r)
        lvm = smoothed_lipschitz_constant(L, 0.5, r, form="lvm")
        assert np.all(tight <= lvm) and np.all(tight <= L) and np.all(lvm <= L)
        assert np.all(np.diff(tight) >= 0) and np.all(np.diff(lvm) >= 0)
        # L -> inf: Salman et al.'s constants.
        assert tight[-1] == pytest.approx(r / (0.5 * np.sqrt(2 * np.pi)), rel=1e-15)
        assert lvm[-1] == pytest.approx(r * np.sqrt(2 / np.pi) / 0.5, rel=1e-15)
        np.testing.assert_allclose(tight[-2:-1], tight[-1], rtol=1e-12)
        # L -> 0: smoothing cannot raise the constant, and keeps it.
        assert tight[0] == pytest.approx(1e-3, rel=1e-12)


def test_smoothed_lipschitz_constant_is_attained_by_centred_ramp():
    # Derivative at 0 of the smoothing of a ramp of slope L and height r centred
    # at 0, by central finite differences of the closed form.
    sigma, r = 0.7, 1.0
    for L in (0.3, 1.0, 5.0):
        s0 = -r / (2 * L)

        def smoothed(x, s0=s0, L=L):
            return ramp_smoothed(s0 - x, sigma, L)

        h = 1e-5
        slope = (smoothed(h) - smoothed(-h)) / (2 * h)
        assert slope == pytest.approx(
            smoothed_lipschitz_constant(L, sigma, r), rel=1e-7
        )


def test_smoothed_lipschitz_constant_bad_input():
    with pytest.raises(ValueError, match="'form'"):
        smoothed_lipschitz_constant(1.0, 0.5, form="code")
    with pytest.raises(ValueError, match="'r'"):
        smoothed_lipschitz_constant(1.0, 0.5, r=0.0)
    with pytest.raises(ValueError, match="'L'"):
        smoothed_lipschitz_constant(0.0, 0.5)


def test_margin_radius():
    assert margin_radius(0.9, 0.05, 0.5) == pytest.approx(
        0.85 * 0.5 * np.sqrt(np.pi / 2), rel=1e-15
    )
    assert margin_radius(0.3, 0.4, 0.5) == 0.0
    rng = np.random.default_rng(5)
    pA = rng.uniform(0, 1, 1000)
    pB = rng.uniform(0, 1, 1000) * (1 - pA)
    # Never above Cohen's multi radius; equal to first order at 1/2.
    assert np.all(margin_radius(pA, pB, 0.5) <= gaussian_radius(pA, pB, 0.5) + 1e-15)
    assert margin_radius(0.5 + 1e-6, 0.5 - 1e-6, 1.0) == pytest.approx(
        gaussian_radius(0.5 + 1e-6, 0.5 - 1e-6, 1.0), rel=1e-9
    )
