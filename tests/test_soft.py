"""Soft smoothing: simplex maps, refusals, stored statistics and validity."""

import math

import numpy as np
import pytest
import torch
from scipy.stats import binom

from smoothlearn import CertificationResult, SmoothedClassifier
from smoothlearn.intervals import (
    Bonferroni,
    ClassPartitioning,
    EmpiricalBernstein,
    TopClass,
)
from smoothlearn.soft import simplex_map_constant, simplex_scores, sparsemax


def _sparsemax_reference(z):
    """Projection onto the simplex by bisection on the threshold (no sorting)."""
    lo, hi = z.max() - 1.0, z.max()
    for _ in range(200):
        tau = 0.5 * (lo + hi)
        if np.maximum(z - tau, 0).sum() > 1:
            lo = tau
        else:
            hi = tau
    return np.maximum(z - 0.5 * (lo + hi), 0)


@pytest.mark.parametrize("seed", range(5))
def test_sparsemax_on_simplex_and_matches_reference(seed):
    rng = np.random.default_rng(seed)
    z = rng.normal(scale=rng.uniform(0.1, 5), size=(50, 7))
    p = sparsemax(torch.from_numpy(z)).numpy()
    assert np.all(p >= 0)
    np.testing.assert_allclose(p.sum(axis=1), 1.0, atol=1e-12)
    ref = np.array([_sparsemax_reference(row) for row in z])
    np.testing.assert_allclose(p, ref, atol=1e-10)
    # along another dim
    pt = sparsemax(torch.from_numpy(z.T.copy()), dim=0).numpy().T
    np.testing.assert_allclose(pt, p, atol=1e-12)


def test_sparsemax_jacobian_is_a_projection_of_rank_support_minus_one():
    z = torch.tensor([1.0, 0.8, 0.5, -2.0, -3.0], dtype=torch.float64)
    J = torch.autograd.functional.jacobian(sparsemax, z).numpy()
    support = int((sparsemax(z) > 0).sum())
    assert support == 3
    np.testing.assert_allclose(J @ J, J, atol=1e-12)
    np.testing.assert_allclose(J, J.T, atol=1e-12)
    assert np.linalg.matrix_rank(J) == support - 1
    # each row's norm is within the per-class constant sqrt(1 - 1/K)
    assert np.linalg.norm(J, axis=1).max() <= simplex_map_constant("sparsemax", 5)


@pytest.mark.parametrize("simplex_map", ["softmax", "sparsemax"])
def test_class_score_gradients_within_constant(simplex_map):
    rng = np.random.default_rng(0)
    bound = simplex_map_constant(simplex_map, 4)
    worst = 0.0
    for _ in range(200):
        z = torch.tensor(rng.normal(scale=2, size=4), requires_grad=True)
        c = int(rng.integers(4))
        simplex_scores(z[None], simplex_map, 1.0)[0, c].backward()
        worst = max(worst, float(z.grad.norm()))
    assert worst <= bound + 1e-12
    assert worst > 0.5 * bound  # the constant is not absurdly loose


def test_hardmax_is_one_hot_argmax():
    z = torch.tensor([[0.0, 2.0, 1.0], [3.0, 3.0, 0.0]])
    np.testing.assert_array_equal(
        simplex_scores(z, "hardmax").numpy(), [[0, 1, 0], [1, 0, 0]]
    )


class _Logit2(torch.nn.Module):
    """Logits (0, w.x + b): class 1 iff w.x + b > 0."""

    def __init__(self, w, b):
        super().__init__()
        self.lin = torch.nn.Linear(len(w), 1, dtype=torch.float64)
        with torch.no_grad():
            self.lin.weight.copy_(torch.tensor([w], dtype=torch.float64))
            self.lin.bias.fill_(b)

    def forward(self, x):
        out = self.lin(x)
        return torch.cat([torch.zeros_like(out), out], dim=1)


_W, _B = [0.6, -0.8, 0.0], 0.1  # ||w|| = 1


def _fit(X, **kw):
    params = dict(sigma=0.5, n0=50, n=500, smoothing="soft", random_state=0)
    params.update(kw)
    y = (X @ np.array(_W) + _B > 0).astype(int)
    y[:2] = [0, 1]
    return SmoothedClassifier(_Logit2(_W, _B), **params).fit(X, y)


def _inputs(n_inputs, seed=0):
    return np.random.default_rng(seed).normal(size=(n_inputs, 3))


def test_refusals():
    X = _inputs(4)
    with pytest.raises(ValueError, match="lipschitz"):
        _fit(X, smoothing="hard", lipschitz=1.0).certify(X)
    with pytest.raises(ValueError, match="lipschitz"):
        _fit(X, simplex_map="hardmax", lipschitz=1.0).certify(X)
    with pytest.raises(ValueError, match="integer counts"):
        _fit(X, interval="cpm").certify(X)
    with pytest.raises(ValueError, match="margin"):
        _fit(X, smoothing="hard", radius="margin").certify(X)

    class Estimate:  # an estimate, not a bound (like LocalGradientLipschitz)
        guaranteed = False

        def estimate(self, module):
            return 1.0

    from sklearn.base import BaseEstimator

    class EstimateLipschitz(Estimate, BaseEstimator):
        pass

    with pytest.raises(ValueError, match="guaranteed"):
        _fit(X, lipschitz=EstimateLipschitz()).certify(X)
    with pytest.raises(ValueError, match="lipschitz"):
        CertificationResult.from_statistics(
            selection=[[5, 5]], estimation=[[60, 40]], n0=10, n=100, sigma=1,
            alpha=0.01, lipschitz=2.0,
        )  # fmt: skip


def test_local_gradient_estimator_refused_if_available():
    lipschitz = pytest.importorskip("smoothlearn.lipschitz")
    X = _inputs(3)
    est = lipschitz.LocalGradientLipschitz()
    with pytest.raises(ValueError, match=r"guaranteed|estimate"):
        _fit(X, lipschitz=est).certify(X)


def test_soft_result_round_trip_and_recertify(tmp_path):
    X = _inputs(6)
    res = _fit(
        X, temperature="auto", lipschitz=1.0, radius="multi",
        interval=Bonferroni(EmpiricalBernstein()),
    ).certify(X)  # fmt: skip
    assert res.smoothing == "soft"
    # lipschitz: the logits' constant as given; score_lipschitz: each input's
    # class-score constant (issue 17: the two were one name)
    assert res.lipschitz == 1.0
    assert res.score_map.shape == res.temperature.shape == (6,)
    assert res.score_lipschitz.shape == (6,)
    hard = res.score_map == "hardmax"
    assert np.all(np.isinf(res.score_lipschitz[hard]))
    const = np.where(res.score_map == "softmax", math.sqrt(2) / 4, math.sqrt(0.5))
    np.testing.assert_allclose(
        res.score_lipschitz[~hard], (const * res.temperature)[~hard], rtol=1e-12
    )
    path = tmp_path / "soft.npz"
    res.save(path)
    assert CertificationResult.load(path) == res
    assert res.recertify() == res
    env = res.recertify(radius_method="envelope")
    assert np.all(env.radius >= res.radius - 1e-12)
    cohen = res.recertify(lipschitz=np.inf)
    assert np.all(cohen.radius <= res.radius + 1e-12)
    frame = res.to_frame()
    assert {"score_map", "temperature", "lipschitz"} <= set(frame.columns)


def _true_class1(m, t, sigma, norm_w):
    """E[sigmoid(t (m + sigma ||w|| Z))] by 80-point Gauss-Hermite quadrature."""
    x, wts = np.polynomial.hermite_e.hermegauss(80)
    vals = 1 / (1 + np.exp(-t * (m[:, None] + sigma * norm_w * x[None])))
    return vals @ wts / np.sqrt(2 * np.pi)


@pytest.mark.slow
def test_soft_certificates_are_valid_on_a_linear_model():
    """Failures (bound above the truth, wrong class, radius past |m| / ||w||).

    For logits ``(0, m)`` and softmax at temperature ``t``, the smoothed
    class-1 score is ``E[sigmoid(t (m + sigma Z))]`` (``||w|| = 1``), so the
    smoothed classifier's boundary is the hyperplane ``m = 0`` and the true
    robust radius is ``|m|``.  Each of the configurations below fails on an
    input with probability at most ``alpha = 0.05``; with 400 inputs the test
    flags a configuration when ``P(Binomial(400, 0.05) >= failures) < 1e-3``,
    so its false-alarm rate is below 1e-3 per configuration (< 6e-3 in all).
    """
    alpha, sigma, t = 0.05, 0.5, 2.0
    X = _inputs(400, seed=1) * 0.6
    m = X @ np.array(_W) + _B
    p1 = _true_class1(m, t, sigma, 1.0)
    truth = np.stack([1 - p1, p1], axis=1)
    clf = _fit(
        X, sigma=sigma, n=1000, alpha=alpha, temperature=t, radius="multi",
        interval=Bonferroni(EmpiricalBernstein()), batch_size=8192,
    )  # fmt: skip
    base = clf.certify(X)
    L_logits = 1.0  # the logits (0, w.x + b) are ||w|| = 1 Lipschitz
    L_score = math.sqrt(2) / 4 * t * L_logits  # softmax constant * t * ||w||
    configs = {
        "bonferroni_multi": base,
        "top_mono": base.recertify(
            interval=TopClass(EmpiricalBernstein()), radius="mono"
        ),
        "cpm_multi": base.recertify(interval=ClassPartitioning(EmpiricalBernstein())),
        "margin": base.recertify(radius="margin"),
        "lip_paper": base.recertify(lipschitz=L_logits),
        "lip_envelope": base.recertify(lipschitz=L_logits, radius_method="envelope"),
    }  # fmt: skip
    np.testing.assert_array_equal(configs["lip_paper"].score_lipschitz, L_score)
    threshold = binom.isf(1e-3, len(X), alpha)  # failures beyond this: flagged
    rows = np.arange(len(X))
    for name, res in configs.items():
        idx = np.where(res.abstained, 0, res.prediction).astype(int)
        pA, pB = truth[rows, idx], truth[rows, 1 - idx]
        fail = ~res.abstained & (
            (res.pA_lower > pA + 1e-12)
            | ((res.kind != "mono") & (res.pB_upper < pB - 1e-12))
            | (idx != (m > 0))
            | (res.radius > np.abs(m) + 1e-9)
        )
        assert fail.sum() <= threshold, (name, int(fail.sum()))
        assert (~res.abstained).sum() > 200, name  # the test has power
    # Lipschitz-aware radii are never smaller than Cohen's on the same bounds
    assert np.all(configs["lip_paper"].radius >= base.radius - 1e-12)
    assert np.all(configs["lip_envelope"].radius >= configs["lip_paper"].radius - 1e-9)


@pytest.mark.slow
def test_auto_temperature_valid_on_linear_model():
    """``temperature="auto"``: class and radius checked against ``|m| / ||w||``.

    Same false-alarm rate as above (< 1e-3): flagged when the number of
    wrong classes or radii beyond ``|m|`` exceeds the 1 - 1e-3 quantile of
    Binomial(300, alpha).
    """
    alpha = 0.05
    X = _inputs(300, seed=2) * 0.6
    m = X @ np.array(_W) + _B
    res = _fit(
        X, n=800, alpha=alpha, temperature="auto", lipschitz=1.0,
        radius="multi", radius_method="envelope",
        interval=Bonferroni(EmpiricalBernstein()), batch_size=8192,
    ).certify(X)  # fmt: skip
    idx = np.where(res.abstained, 0, res.prediction).astype(int)
    fail = ~res.abstained & ((idx != (m > 0)) | (res.radius > np.abs(m) + 1e-9))
    assert fail.sum() <= binom.isf(1e-3, len(X), alpha)
    assert len(set(res.score_map)) >= 2  # the choice really is per input


def test_spectral_product_bounds_the_linear_logit_map():
    lipschitz = pytest.importorskip("smoothlearn.lipschitz")
    from smoothlearn._soft_paths import _call_lipschitz_estimator

    module = _Logit2(_W, _B)
    est = lipschitz.SpectralProductLipschitz()
    assert getattr(est, "guaranteed", True)
    # the logit map x -> (0, w.x + b) has constant ||w|| = 1
    assert _call_lipschitz_estimator(est, module.lin) >= 1.0 - 1e-9


# ----------------------------------------------------------------------------
# Issue 17, defect 2: ``lipschitz`` is the logits' constant everywhere; the
# class-score constant of each input follows from its map and temperature.
# ----------------------------------------------------------------------------
class _ShiftedLogit(torch.nn.Module):
    """Logits ``(0, a x0 - a d)``: exactly a-Lipschitz, boundary at ``x0 = d``."""

    def __init__(self, a, d):
        super().__init__()
        self.a, self.d = a, d

    def forward(self, x):
        out = self.a * x[:, :1] - self.a * self.d
        return torch.cat([torch.zeros_like(out), out], dim=1)


def test_recertify_lipschitz_leaves_hardmax_rows_at_cohen_issue17():
    """The reproduction of issue 17, defect 2.

    At ``x = 0`` the class-1 probability is ``P(sigma Z > d) = 0.1`` hard and
    soft alike (the soft score is symmetric about the boundary), so the true
    robust radius is ``d = sigma Phi^-1(0.9) = 0.6408``.  The logits are too
    flat for any softmax or sparsemax to beat hardmax on the selection draws,
    so every input is certified with hardmax, a step function.  Before the
    fix, ``recertify(lipschitz=0.01)`` gave those rows a finite class-score
    constant and the radius 22.8; hardmax rows must keep Cohen's radius.
    """
    from scipy.stats import norm

    from smoothlearn.lipschitz import ConstantLipschitz
    from smoothlearn.radius import lipschitz_radius

    a, sigma, alpha = 0.01, 0.5, 0.001
    d = sigma * norm.ppf(0.9)  # 0.6408, the true radius of every input
    X = np.zeros((40, 3))
    clf = SmoothedClassifier(
        _ShiftedLogit(a, d), sigma=sigma, n=100_000, alpha=alpha,
        smoothing="soft", temperature="auto", random_state=0, batch_size=50_000,
    ).fit(X, np.arange(40) % 2)  # fmt: skip
    res = clf.certify(X)
    assert np.all(res.score_map == "hardmax")
    assert np.all(res.prediction == 0)
    assert np.all((res.radius > 0.6) & (res.radius <= d))
    for lip in (a, ConstantLipschitz(a)):
        rec = res.recertify(lipschitz=lip)
        assert rec.lipschitz == a
        assert np.all(np.isinf(rec.score_lipschitz))
        np.testing.assert_array_equal(rec.radius, res.radius)  # Cohen's radius
        assert np.all(rec.radius <= d)
    # the same rule in from_statistics
    direct = CertificationResult.from_statistics(
        selection=res.selection, estimation=res.estimation,
        estimation_sq=res.estimation_sq, n0=res.n0, n=res.n, sigma=sigma,
        alpha=alpha, interval=res.interval, smoothing="soft",
        score_map=res.score_map, temperature=res.temperature, lipschitz=a,
        betting_state=res.betting_state,
    )  # fmt: skip
    np.testing.assert_array_equal(direct.radius, res.radius)
    # what the defect did: the logits' constant used as the class score's
    wrong = lipschitz_radius(res.pA_lower, res.pB_upper, sigma, a, kind="mono")
    assert np.all(wrong > 20 * d)


def _softmax_statistics(rng, runs, n, m, t, sigma):
    """Sums and sums of squares of softmax(t (0, m + sigma Z)) over n draws."""
    s1 = 1.0 / (1.0 + np.exp(-t * (m + sigma * rng.standard_normal((runs, n)))))
    s = np.stack([1.0 - s1, s1], axis=-1)
    return s.sum(axis=1), (s * s).sum(axis=1)


@pytest.mark.parametrize("radius", ["mono", "multi"])
def test_recertify_with_the_true_logit_constant_is_valid(radius):
    """Softmax rows on a linear model whose smoothed score is known exactly.

    Logits ``(0, w.x + b)`` with ``||w|| = 1`` (the logits' constant ``L =
    1``), softmax at ``t = 2``: the smoothed class-1 score at margin ``m`` is
    ``E[sigmoid(t (m + sigma Z))]``, symmetric about ``m = 0``, so the smoothed
    classifier's boundary is ``m = 0`` and the true radius is ``|m|``.  Each
    run is one input certified from fresh draws; a run fails when it
    certifies a wrong class or a radius beyond ``|m|``, with probability at
    most ``alpha = 0.05``.  The test flags when ``P(Binomial(runs, alpha) >=
    failures) < 1e-3``: its false-alarm rate is below 1e-3 per (m, method)
    and below 1.2e-2 over the 12 checks of each radius kind.  A constant 5x
    too small (an unsound claim) is flagged, so the check has power.
    """
    t, sigma, alpha, runs, n, n0, L = 2.0, 0.5, 0.05, 500, 2000, 50, 1.0
    rng = np.random.default_rng(17)
    interval = (
        TopClass(EmpiricalBernstein())
        if radius == "mono"
        else Bonferroni(EmpiricalBernstein())
    )
    threshold = binom.isf(1e-3, runs, alpha)
    for m in (0.1, 0.3, 0.6):
        sel, _ = _softmax_statistics(rng, runs, n0, m, t, sigma)
        est, est_sq = _softmax_statistics(rng, runs, n, m, t, sigma)
        base = CertificationResult.from_statistics(
            selection=sel, estimation=est, estimation_sq=est_sq, n0=n0, n=n,
            sigma=sigma, alpha=alpha, interval=interval, radius=radius,
            smoothing="soft", score_map=np.full(runs, "softmax"),
            temperature=np.full(runs, t),
        )  # fmt: skip
        for method in ("paper", "envelope"):
            res = base.recertify(lipschitz=L, radius_method=method)
            # the score constant is the softmax constant * t * L_logits
            np.testing.assert_array_equal(
                res.score_lipschitz, simplex_map_constant("softmax", 2) * t * L
            )
            fail = ~res.abstained & ((res.prediction != 1) | (res.radius > m))
            assert fail.sum() <= threshold, (m, method, int(fail.sum()))
            assert np.all(res.radius >= base.radius - 1e-12)  # never below Cohen
            unsound = base.recertify(lipschitz=L / 5, radius_method=method)
            bad = ~unsound.abstained & (unsound.radius > m)
            assert bad.sum() > threshold, (m, method)  # the check has power


def test_one_logit_module_number_and_estimator_agree():
    """A binary module with one logit ``l`` is read as ``(-l, l)``.

    ``lipschitz`` bounds ``l``; the logits the softmax sees have ``sqrt(2)``
    times that constant, whether ``lipschitz`` is a number or an estimator,
    and softmax at ``t`` gives the class score ``sigmoid(2 t l)``, whose
    constant is ``t L / 2`` (tight for a linear ``l``).
    """
    from smoothlearn.lipschitz import ConstantLipschitz

    class OneLogit(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = torch.nn.Linear(3, 1, dtype=torch.float64)
            with torch.no_grad():
                self.lin.weight.copy_(torch.tensor([_W], dtype=torch.float64))
                self.lin.bias.fill_(_B)

        def forward(self, x):
            return self.lin(x)[:, 0]

    X = _inputs(5)
    y = np.array([0, 1, 0, 1, 0])
    t, L = 2.0, 1.0  # ||w|| = 1
    results = [
        SmoothedClassifier(
            OneLogit(), sigma=0.5, n0=50, n=500, smoothing="soft", temperature=t,
            lipschitz=lip, random_state=0,
        ).fit(X, y).certify(X)
        for lip in (L, ConstantLipschitz(L))
    ]  # fmt: skip
    for res in results:
        assert res.lipschitz == pytest.approx(math.sqrt(2) * L, rel=1e-15)
        np.testing.assert_allclose(res.score_lipschitz, t * L / 2, rtol=1e-15)
    assert results[0] == results[1]


def test_lipschitz_parameter_refusals():
    from sklearn.base import BaseEstimator

    from smoothlearn.lipschitz import (
        ConstantLipschitz,
        LocalGradientLipschitz,
        SpectralProductLipschitz,
    )

    soft = dict(
        selection=[[8.0, 2.0]], estimation=[[80.0, 20.0]],
        estimation_sq=[[70.0, 10.0]], n0=10, n=100, sigma=0.5, alpha=0.01,
        smoothing="soft", interval=TopClass(EmpiricalBernstein()),
    )  # fmt: skip
    mapped = dict(soft, score_map=["softmax"], temperature=[1.0])
    # soft statistics without their map and temperature: no score constant
    with pytest.raises(ValueError, match="'score_map' and 'temperature'"):
        CertificationResult.from_statistics(**soft, lipschitz=1.0)
    res = CertificationResult.from_statistics(**soft)
    with pytest.raises(ValueError, match="'score_map' and 'temperature'"):
        res.recertify(lipschitz=1.0)
    assert np.all(np.isinf(res.recertify(lipschitz=np.inf).score_lipschitz))
    # estimates, estimators that need the model, class-score constants
    with pytest.raises(ValueError, match="guaranteed"):
        CertificationResult.from_statistics(
            **mapped, lipschitz=LocalGradientLipschitz()
        )

    class Estimate(BaseEstimator):
        guaranteed = False

        def logit_constant(self, model=None, X=None):
            return 1.0

    with pytest.raises(ValueError, match="guaranteed"):
        CertificationResult.from_statistics(**mapped, lipschitz=Estimate())
    with pytest.raises(ValueError, match=r"logit_constant\(module\)"):
        CertificationResult.from_statistics(
            **mapped, lipschitz=SpectralProductLipschitz()
        )
    with pytest.raises(ValueError, match="class scores, not the logits"):
        CertificationResult.from_statistics(
            **mapped, lipschitz=ConstantLipschitz(1.0, target="score")
        )
    # one number: not per-input arrays, not 0, NaN, negative or a bool
    for bad in ([1.0], np.array([1.0]), 0.0, -1.0, np.nan, True, "1.0"):
        with pytest.raises(ValueError, match="'lipschitz' parameter"):
            CertificationResult.from_statistics(**mapped, lipschitz=bad)
    ok = CertificationResult.from_statistics(**mapped, lipschitz=np.float64(2.0))
    assert ok.lipschitz == 2.0 and isinstance(ok.lipschitz, float)
    np.testing.assert_array_equal(ok.score_lipschitz, [math.sqrt(2) / 4 * 2.0])
    with pytest.raises(ValueError, match="'score_map'"):
        CertificationResult.from_statistics(**dict(mapped, score_map=["tanh"]))
    with pytest.raises(ValueError, match="'temperature'"):
        CertificationResult.from_statistics(**dict(mapped, temperature=[0.0]))
