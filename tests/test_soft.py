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
    assert res.score_map.shape == res.temperature.shape == res.lipschitz.shape == (6,)
    hard = res.score_map == "hardmax"
    assert np.all(np.isinf(res.lipschitz[hard]))
    const = np.where(res.score_map == "softmax", math.sqrt(2) / 4, math.sqrt(0.5))
    np.testing.assert_allclose(
        res.lipschitz[~hard], (const * res.temperature)[~hard], rtol=1e-12
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
    L_score = math.sqrt(2) / 4 * t * 1.0  # softmax constant * t * ||w||
    configs = {
        "bonferroni_multi": base,
        "top_mono": base.recertify(
            interval=TopClass(EmpiricalBernstein()), radius="mono"
        ),
        "cpm_multi": base.recertify(interval=ClassPartitioning(EmpiricalBernstein())),
        "margin": base.recertify(radius="margin"),
        "lip_paper": base.recertify(lipschitz=L_score),
        "lip_envelope": base.recertify(lipschitz=L_score, radius_method="envelope"),
    }  # fmt: skip
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
    from smoothlearn.smoothed import _call_lipschitz_estimator

    module = _Logit2(_W, _B)
    est = lipschitz.SpectralProductLipschitz()
    assert getattr(est, "guaranteed", True)
    # the logit map x -> (0, w.x + b) has constant ||w|| = 1
    assert _call_lipschitz_estimator(est, module.lin) >= 1.0 - 1e-9
