"""Soft PREDICT answers for the classifier that soft CERTIFY certifies (issue 17.4).

The oracle is a 3-class model of one input coordinate whose hard and soft
smoothed classifiers disagree: logits ``(s u, |s u| - delta, -s u)`` of
``u = x + d``.  Class 1 is never the argmax (so the hard smoothed classifier
never picks it), but it holds about half of the softmax mass on every draw,
so the soft smoothed classifier picks it wherever neither sign of ``u``
dominates.  Its soft means are integrals over one Gaussian coordinate,
computed here by graded Gauss-Legendre quadrature (checked against
``scipy.integrate.quad``), independently of the library's maps.
"""

import warnings

import numpy as np
import pytest
import torch
from scipy import integrate
from scipy.special import ndtri
from scipy.stats import binom, norm

from smoothlearn import SmoothedClassifier
from smoothlearn.intervals import (
    BettingInterval,
    Bonferroni,
    EmpiricalBernstein,
    Hoeffding,
    TopClass,
)
from smoothlearn.sampling import STAGE_PREDICT, _root_seed, sample_statistics
from smoothlearn.smoothed import _soft_predict_answered
from smoothlearn.soft import _LogitAdapter

SHARPNESS, DELTA, SIGMA = 20.0, 0.08, 1.0
#: The tie of the two top soft classes (softmax, t = 1): E f_0 = E f_1 there.
X_TIE = 1.397967804051548


class HardVsSoft(torch.nn.Module):
    """Logits ``(s u, |s u| - delta, -s u)`` of ``u = x[:, 0]``, in float64."""

    def __init__(self):
        super().__init__()
        self.s = torch.nn.Parameter(
            torch.tensor(SHARPNESS, dtype=torch.float64), requires_grad=False
        )

    def forward(self, x):
        u = self.s * x[:, 0]
        return torch.stack([u, u.abs() - DELTA, -u], dim=1)


def _scores(u, simplex_map="softmax", t=1.0):
    """Class scores of the model at points ``u`` (numpy, independent of the library)."""
    z = np.stack([SHARPNESS * u, np.abs(SHARPNESS * u) - DELTA, -SHARPNESS * u], -1)
    if simplex_map == "hardmax":
        return np.eye(3)[np.argmax(z, axis=-1)]
    tz = t * z
    if simplex_map == "softmax":
        e = np.exp(tz - tz.max(axis=-1, keepdims=True))
        return e / e.sum(axis=-1, keepdims=True)
    # sparsemax: the threshold tau with sum(max(tz - tau, 0)) = 1, by bisection
    lo, hi = tz.max(axis=-1) - 1.0, tz.max(axis=-1)
    for _ in range(80):
        tau = 0.5 * (lo + hi)
        above = np.maximum(tz - tau[..., None], 0.0).sum(axis=-1) > 1.0
        lo, hi = np.where(above, tau, lo), np.where(above, hi, tau)
    return np.maximum(tz - 0.5 * (lo + hi)[..., None], 0.0)


def _kinks(simplex_map, t):
    """Points ``u != 0`` where the sparsemax support changes (scores kink there).

    Found on a log-spaced grid of ``|u|`` and refined by bisection on the
    support pattern; the softmax is smooth and hardmax jumps only at 0.
    """
    if simplex_map != "sparsemax":
        return np.empty(0)
    grid = np.geomspace(1e-9, 12.0, 4000)
    u = np.concatenate([-grid[::-1], grid])

    def pattern(v):
        return (_scores(v, simplex_map, t) > 0) @ np.array([1, 2, 4])

    cells = np.nonzero(np.diff(pattern(u)))[0]
    lo, hi = u[cells], u[cells + 1]
    left = pattern(lo)
    for _ in range(60):
        mid = 0.5 * (lo + hi)
        same = pattern(mid) == left
        lo, hi = np.where(same, mid, lo), np.where(same, hi, mid)
    return 0.5 * (lo + hi)


def _soft_means(x, simplex_map="softmax", t=1.0):
    """``E[S(t z(x + sigma xi))]``, ``xi ~ N(0, 1)``, for every ``x``: (len(x), 3).

    Gauss-Legendre (40 nodes per panel) on [-12, 12] in ``xi``, with panels
    graded geometrically towards the kink ``u = 0`` (``xi = -x / sigma``),
    where all the steepness of the scores sits, and panel edges at the other
    kinks of the scores, so that each panel integrates a smooth function.
    """
    nodes, weights = np.polynomial.legendre.leggauss(40)
    steps = np.array([0.0, 1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 0.1, 0.5, 2.0, 6.0, 24.0])
    kinks = _kinks(simplex_map, t)
    out = np.empty((len(x), 3))
    for i, xi0 in enumerate(-np.asarray(x, dtype=np.float64) / SIGMA):
        edges = np.concatenate([xi0 - steps, xi0 + steps, xi0 + kinks / SIGMA])
        edges = np.unique(np.clip(edges, -12.0, 12.0))
        a, b = edges[:-1, None], edges[1:, None]
        xi = (0.5 * (b - a) * nodes + 0.5 * (a + b)).ravel()
        w = (0.5 * (b - a) * weights).ravel() * norm.pdf(xi)
        out[i] = w @ _scores(x[i] + SIGMA * xi, simplex_map, t)
    return out


def _fit(**params):
    kw = dict(sigma=SIGMA, n0=100, n=100_000, alpha=0.001, batch_size=8192)
    kw.update(params)
    X = np.array([[-1.0], [0.0], [1.0]])
    return SmoothedClassifier(HardVsSoft(), **kw).fit(X, [0, 1, 2])


def _wrong(pred, truth):
    """Answers (not abstentions) that differ from the true class."""
    return int(np.sum((pred != -1) & (pred != truth)))


def test_reference_means_match_scipy_quad():
    """The oracle itself: graded Gauss-Legendre vs scipy's adaptive quadrature."""
    for x, simplex_map, t in [
        (X_TIE, "softmax", 1.0), (0.3, "sparsemax", 5.0), (-0.4, "sparsemax", 50.0),
    ]:  # fmt: skip
        kinks = [0.0, *_kinks(simplex_map, t)]
        ref = [
            integrate.quad(
                lambda u, c=c, m=simplex_map, t=t, x=x: (
                    _scores(np.array([u]), m, t)[0, c] * norm.pdf(u, x, SIGMA)
                ),
                x - 12 * SIGMA, x + 12 * SIGMA, points=kinks, epsabs=1e-14,
                epsrel=1e-13, limit=500,
            )[0]
            for c in range(3)
        ]  # fmt: skip
        np.testing.assert_allclose(
            _soft_means([x], simplex_map, t)[0], ref, rtol=0, atol=1e-11
        )
    # the tie of the validity test below
    means = _soft_means([X_TIE])[0]
    assert abs(means[0] - means[1]) < 1e-12 and means[2] < 0.05


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_issue_17_reproduction_predict_answers_the_certified_class(seed):
    """Hard frequencies (.547, 0, .453) whose softmax means favour class 1.

    Before the fix, soft ``predict`` counted hard argmaxes and said 0 at
    alpha = .001 while ``certify`` (Bonferroni with empirical Bernstein,
    multi radius) said 1 with radius about .2445.
    """
    x0 = SIGMA * ndtri(0.547)
    X = np.array([[x0]])
    truth = _soft_means([x0])[0]
    assert truth.argmax() == 1 and truth[1] - truth[0] > 0.15
    # what soft predict answered before (hard counts), still hard mode's answer
    hard = _fit(random_state=seed)
    assert hard.predict(X)[0] == 0
    np.testing.assert_allclose(hard.predict_proba(X)[0], [0.547, 0, 0.453], atol=0.01)

    soft = _fit(
        smoothing="soft", radius="multi", interval=Bonferroni(EmpiricalBernstein()),
        random_state=seed,
    )  # fmt: skip
    res = soft.certify(X)
    assert res.prediction[0] == 1
    assert 0.2 < res.radius[0] < 0.29
    # no certificate beyond the Cohen multi radius of the exact means
    exact = SIGMA / 2 * (ndtri(truth[1]) - ndtri(max(truth[0], truth[2])))
    assert res.radius[0] <= exact
    assert soft.predict(X)[0] == 1  # never 0; n = 100,000 separates .47 from .28
    proba = soft.predict_proba(X)[0]
    assert proba.argmax() == 1 == res.prediction[0]
    # the soft means, to Monte-Carlo precision (6 standard deviations of 1e5 draws)
    np.testing.assert_allclose(proba, truth, atol=6 * 0.5 / np.sqrt(1e5))


def test_soft_predict_is_valid_near_a_tie_and_hard_predict_is_not():
    """Wrong answers (a class other than the true soft argmax) at alpha = 0.05.

    400 inputs spread over [x* - 1, x* + 1] around the tie x* of the soft
    classes 0 and 1 (true gap |E f_0 - E f_1| up to 0.036), each with its own
    noise.  A valid procedure errs on each input with probability at most
    alpha, independently, so its number of wrong answers is stochastically
    below Binomial(400, 0.05); the test flags more than the 1 - 1e-3
    quantile of that law, a false-alarm rate below 1e-3.  Hard PREDICT,
    which soft ``predict`` used before the fix, answers class 0 left of the
    tie where the soft classifier says 1: the same criterion flags it.
    """
    alpha, n_inputs = 0.05, 400
    rng = np.random.default_rng(0)
    x = X_TIE + rng.uniform(-1.0, 1.0, n_inputs)
    truth = _soft_means(x).argmax(axis=1)
    assert 0.3 < np.mean(truth == 1) < 0.7  # both sides of the tie
    X = x[:, None]
    threshold = binom.isf(1e-3, n_inputs, alpha)
    params = dict(n0=50, n=1000, alpha=alpha, random_state=1)
    soft = _fit(smoothing="soft", **params).predict(X)
    assert _wrong(soft, truth) <= threshold
    assert np.sum(soft != -1) >= 150  # the test answers: it has power to fail
    hard = _fit(**params).predict(X)
    assert _wrong(hard, truth) > threshold  # the old answer fails this test


def test_auto_temperature_predict_matches_certify_selection():
    """With ``temperature="auto"`` predict answers for each input's chosen score.

    The (map, t) of every input is read from ``certify`` with the same
    ``random_state`` (the same selection draws), the truth is the argmax of
    that score's exact means, and wrong answers are flagged as above (false
    alarm below 1e-3).  Where predict answers, its class is certify's
    candidate class (the argmax of its selection statistics).
    """
    alpha, n_inputs = 0.05, 240
    x = np.random.default_rng(3).uniform(-1.0, 3.0, n_inputs)
    X = x[:, None]
    clf = _fit(
        smoothing="soft", temperature="auto", n0=50, n=600, alpha=alpha,
        random_state=4,
    )  # fmt: skip
    res = clf.certify(X)
    pred = clf.predict(X)
    truth = np.empty(n_inputs, dtype=np.int64)
    for m, t in set(zip(res.score_map, res.temperature, strict=True)):
        rows = (res.score_map == m) & (res.temperature == t)
        truth[rows] = _soft_means(x[rows], m, t).argmax(axis=1)
    assert len(set(res.score_map)) >= 2  # the choice is per input
    assert _wrong(pred, truth) <= binom.isf(1e-3, n_inputs, alpha)
    answered = pred != -1
    assert answered.sum() >= 60
    np.testing.assert_array_equal(
        pred[answered], res.selection.argmax(axis=1)[answered]
    )


def test_predict_proba_is_the_soft_means_and_score_counts_abstentions():
    x = np.linspace(-2.0, 3.0, 41)
    X = x[:, None]
    y = _soft_means(x).argmax(axis=1)
    clf = _fit(smoothing="soft", temperature=2.0, n0=50, n=4000, random_state=5)
    proba = clf.predict_proba(X)
    assert proba.shape == (41, 3)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=0, atol=1e-12)
    # exactly the means of softmax(2 z) over the n draws of the predict stage
    sums, _ = sample_statistics(
        _LogitAdapter(clf._adapter()), X, 4000, SIGMA, stage=STAGE_PREDICT,
        seed=_root_seed(5), score=lambda z: torch.softmax(2.0 * z.double(), dim=1),
    )  # fmt: skip
    np.testing.assert_allclose(proba, sums / 4000, rtol=1e-12, atol=1e-15)
    # and the exact means to Monte-Carlo precision (scores in [0, 1]: sd <= 1/2)
    np.testing.assert_allclose(
        proba, _soft_means(x, "softmax", 2.0), atol=6 * 0.5 / np.sqrt(4000)
    )
    pred = clf.predict(X)
    answered = pred != -1
    assert answered.any() and (~answered).any()
    # an answer is the strict argmax of predict_proba (same draws)
    np.testing.assert_array_equal(pred[answered], proba.argmax(axis=1)[answered])
    assert clf.score(X, y) == pytest.approx(np.mean(pred == y))
    assert clf.score(X, y) < np.mean(proba.argmax(axis=1) == y)  # abstain = wrong
    # soft statistics do not depend on the batch size
    np.testing.assert_array_equal(clf.set_params(batch_size=37).predict(X), pred)


def test_soft_predict_interval_choice_and_refusal():
    X = np.array([[0.0], [3.0]])  # soft classes 1 and 0, gaps about 0.1 and 0.2
    for interval in (None, TopClass(binomial=Hoeffding()), "cpm"):
        clf = _fit(
            smoothing="soft", temperature=5.0, n=4000, interval=interval,
            random_state=0,
        )  # fmt: skip
        if interval == "cpm":  # Clopper-Pearson needs counts: refused as certify does
            for method in (clf.predict, clf.predict_proba, clf.certify):
                with pytest.raises(ValueError, match="integer counts"):
                    method(X)
        else:
            np.testing.assert_array_equal(clf.predict(X), [1, 0])


def _first_n_answering(interval, alpha=0.001):
    """Smallest n whose all-ones margins bound above 1/2, by a linear scan."""
    return next(
        n for n in range(1, 10_000) if interval.lower(n, n, alpha, sum_sq=n) > 0.5
    )


@pytest.mark.parametrize(
    ("interval", "n_min"),
    [
        # 1 - 7 log(2 / alpha) / (3 (n - 1)) > 1/2  <=>  n > 1 + 14 log(2000) / 3
        (
            TopClass(binomial=EmpiricalBernstein()),
            int(np.floor(1 + 14 * np.log(2000) / 3)) + 1,
        ),
        # the soft default, TopClass(BettingInterval()): its order-free bound
        (None, _first_n_answering(BettingInterval())),
        # 1 - sqrt(log(1 / alpha) / (2 n)) > 1/2  <=>  n > 2 log(1000)
        (TopClass(binomial=Hoeffding()), int(np.floor(2 * np.log(1000))) + 1),
    ],
)
def test_warns_when_n_can_never_answer(interval, n_min):
    X = np.array([[-3.0], [3.0]])  # at t = 50: f_A near 1 on almost every draw
    clf = _fit(
        smoothing="soft", temperature=50.0, n=n_min - 1, interval=interval,
        random_state=0,
    )  # fmt: skip
    with pytest.warns(UserWarning, match=f"smallest n that can answer is {n_min}"):
        assert np.all(clf.predict(X) == -1)
    for n in (n_min, 4 * n_min):
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            pred = clf.set_params(n=n).predict(X)
    np.testing.assert_array_equal(pred, [2, 0])


def test_margin_test_edge_cases():
    eb = EmpiricalBernstein()
    # one class: nothing to separate, the class is returned
    assert _soft_predict_answered(
        np.array([0]), np.array([[5.0]]), np.array([[2.5]]), 10, 0.01, eb
    ).tolist() == [True]
    # 100 draws: D_1 = 1 on every draw but D_2 has mean 1/2 (no answer), then
    # D_1 = D_2 = 1 on every draw (an answer): every other class must separate
    d = np.array([[50.0, 100.0, 50.0], [50.0, 100.0, 100.0]])
    answered = _soft_predict_answered(np.array([0, 0]), d, d, 100, 0.01, eb)
    assert answered.tolist() == [False, True]
