"""Tests of SmoothedClassifier (smoothlearn/smoothed.py)."""

import warnings

import numpy as np
import pytest
import torch
from conftest import IntervalClassifier
from scipy.special import ndtri
from scipy.stats import binom, binomtest, norm
from sklearn.base import clone
from sklearn.exceptions import NotFittedError
from sklearn.frozen import FrozenEstimator
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import LinearSVC
from statsmodels.stats.proportion import proportion_confint

from smoothlearn import CertificationResult, SmoothedClassifier
from smoothlearn.intervals import Bonferroni, ClassPartitioning
from smoothlearn.models import _TorchAdapter
from smoothlearn.sampling import STAGE_ESTIMATION, _root_seed, sample_statistics
from smoothlearn.smoothed import _predict_p_values

FAST = dict(n0=20, n=200, alpha=0.01, random_state=0)


def _lr_clf(estimator=None, **kwargs):
    params = dict(FAST)
    params.update(kwargs)
    return SmoothedClassifier(estimator or LogisticRegression(), **params)


# ---------------------------------------------------------------------------
# Cohen's procedures, against independent implementations
# ---------------------------------------------------------------------------
def test_predict_p_values_match_scipy_binomtest():
    rng = np.random.default_rng(0)
    counts = rng.multinomial(60, [0.5, 0.3, 0.2], size=300)
    counts[:5] = [[30, 30, 0], [60, 0, 0], [0, 0, 60], [20, 20, 20], [1, 0, 59]]
    top, p = _predict_p_values(counts)
    for row, (t, pv) in enumerate(zip(top, p, strict=True)):
        order = np.argsort(-counts[row], kind="stable")
        n_a, n_b = counts[row, order[0]], counts[row, order[1]]
        assert t == order[0]
        ref = binomtest(int(n_a), int(n_a + n_b), 0.5).pvalue
        assert pv == pytest.approx(ref, rel=1e-9, abs=1e-300)


def test_certify_is_cohen_certify(linear3, blobs3):
    """Default certify = Cohen's CERTIFY on the sampler's counts.

    Reference: statsmodels proportion_confint(k, n, alpha=2*alpha, "beta")[0]
    (Cohen et al.'s code), radius sigma * Phi^-1(pA_lower), abstain below 1/2.
    """
    X, y = blobs3
    X = X[::10]
    clf = SmoothedClassifier(linear3, sigma=0.5, n0=50, n=500, random_state=3)
    res = clf.fit(X, y[::10]).certify(X)
    adapter = _TorchAdapter(linear3, 3)
    root = _root_seed(3)
    sel, _ = sample_statistics(adapter, X, 50, 0.5, stage=0, seed=root)
    est, _ = sample_statistics(adapter, X, 500, 0.5, stage=STAGE_ESTIMATION, seed=root)
    np.testing.assert_array_equal(res.selection, sel)
    np.testing.assert_array_equal(res.estimation, est)
    c_hat = sel.argmax(1)
    k = est[np.arange(len(X)), c_hat]
    p_lower = proportion_confint(k, 500, alpha=2 * 0.001, method="beta")[0]
    # Bounds leave the library rounded outward by a relative 1e-9.
    np.testing.assert_allclose(res.pA_lower, p_lower, rtol=2e-9)
    assert np.all(res.pA_lower <= p_lower)
    abstain = p_lower < 0.5
    np.testing.assert_array_equal(res.abstained, abstain)
    np.testing.assert_allclose(res.radius, np.where(abstain, 0, 0.5 * ndtri(p_lower)))
    np.testing.assert_array_equal(res.prediction, np.where(abstain, -1, c_hat))


def test_predict_proba_and_predict_share_draws(linear3, blobs3):
    X, y = blobs3
    clf = SmoothedClassifier(linear3, sigma=1.0, n=100, alpha=0.001, random_state=1)
    clf.fit(X, y)
    # the blobs are clear-cut; points near the origin are not
    X = np.vstack([X, np.float32(0.05) * X[:20]])
    y = np.concatenate([y, y[:20]])
    proba = clf.predict_proba(X)
    np.testing.assert_allclose(proba.sum(1), 1.0)
    pred = clf.predict(X)
    top, p = _predict_p_values(np.rint(proba * 100).astype(int))
    answered = p <= 0.001
    np.testing.assert_array_equal(pred[answered], top[answered])
    np.testing.assert_array_equal(pred[~answered], -1)
    assert answered.any() and (~answered).any()
    # score: accuracy with abstentions counted wrong
    assert clf.score(X, y) == pytest.approx(np.mean(pred == y))


# ---------------------------------------------------------------------------
# Determinism, recertify, save/load
# ---------------------------------------------------------------------------
def test_same_seed_same_result_whatever_batch_size(linear3, blobs3):
    X, y = blobs3
    X, y = X[::20], y[::20]
    results = [
        SmoothedClassifier(
            linear3, sigma=0.5, n0=30, n=1500, batch_size=b, random_state=7
        )
        .fit(X, y)
        .certify(X)
        for b in (7, 64, 1000)
    ]
    assert results[0] == results[1] == results[2]
    clf = SmoothedClassifier(linear3, sigma=0.5, n=300, batch_size=33, random_state=7)
    clf.fit(X, y)
    np.testing.assert_array_equal(
        clf.predict(X), clf.set_params(batch_size=999).predict(X)
    )


@pytest.mark.parametrize("smoothing", ["hard", "soft"])
def test_certify_is_invariant_to_order_and_subset(linear3, blobs3, smoothing):
    """certify(X[perm]) is the permuted certify(X); certify(X[[i]]) is row i."""
    X, y = blobs3
    X, y = X[::10], y[::10]
    clf = SmoothedClassifier(
        linear3, sigma=0.5, n0=30, n=800, smoothing=smoothing, random_state=3
    ).fit(X, y)
    ref = clf.certify(X)
    perm = np.random.default_rng(0).permutation(len(X))
    permuted = clf.certify(X[perm])
    for name in ("prediction", "radius", "pA_lower", "estimation", "selection"):
        np.testing.assert_array_equal(getattr(permuted, name), getattr(ref, name)[perm])
    for i in (0, 5, len(X) - 1):
        alone = clf.certify(X[[i]])
        np.testing.assert_array_equal(alone.estimation[0], ref.estimation[i])
        assert alone.radius[0] == ref.radius[i]
    np.testing.assert_array_equal(clf.predict(X[perm]), clf.predict(X)[perm])


def test_random_state_semantics(linear3, blobs3):
    X, y = blobs3
    X = X[:5]
    clf = SmoothedClassifier(linear3, sigma=1.0, n0=20, n=500, random_state=0)
    clf.fit(X, y[:5])
    assert clf.certify(X) == clf.certify(X)  # an int: reproducible
    clf.set_params(random_state=np.random.RandomState(0))
    a, b = clf.certify(X), clf.certify(X)  # a RandomState advances
    assert not np.array_equal(a.estimation, b.estimation)
    clf.set_params(random_state=None)
    assert not np.array_equal(clf.certify(X).estimation, clf.certify(X).estimation)


@pytest.mark.parametrize(
    "new",
    [
        dict(alpha=0.05),
        dict(interval="cpm", radius="multi"),
        dict(interval=Bonferroni(), radius="multi", alpha=0.01),
    ],
)
def test_recertify_equals_certify_with_same_seed(linear3, blobs3, new):
    X, y = blobs3
    X = X[::6]
    clf = SmoothedClassifier(linear3, sigma=1.0, n0=30, n=400, random_state=5)
    res = clf.fit(X, y[::6]).certify(X)
    fresh = clf.set_params(**new).certify(X)
    assert res.recertify(**new) == fresh


def test_save_load_round_trip_of_a_certificate(linear3, blobs3, tmp_path):
    X, y = blobs3
    clf = SmoothedClassifier(
        linear3,
        sigma=0.5,
        n=300,
        interval=ClassPartitioning(),
        radius="multi",
        random_state=0,
    )
    res = clf.fit(X, y).certify(X[:10])
    res.save(tmp_path / "r.npz")
    assert CertificationResult.load(tmp_path / "r.npz") == res


# ---------------------------------------------------------------------------
# Base-model kinds and fit
# ---------------------------------------------------------------------------
def test_bare_module_is_used_as_is(linear3, blobs3):
    X, y = blobs3
    before = [p.detach().clone() for p in linear3.parameters()]
    linear3.train()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no warning for a pre-trained model
        clf = SmoothedClassifier(linear3, n0=10, n=50, random_state=0).fit(X, y)
    assert clf.estimator_ is linear3
    for p, q in zip(before, linear3.parameters(), strict=True):
        assert torch.equal(p, q)
    assert linear3.training  # train/eval state restored after the probe
    clf.certify(X[:2])
    assert linear3.training
    np.testing.assert_array_equal(clf.classes_, [0, 1, 2])
    assert clf.n_features_in_ == 2 and clf.input_shape_ == (2,)


def test_bare_module_classes_rule(linear3, blobs3):
    X, y = blobs3
    # labels are the sorted classes when their number matches the outputs
    clf = SmoothedClassifier(linear3, n0=10, n=50).fit(X, np.array(["a", "b", "c"])[y])
    np.testing.assert_array_equal(clf.classes_, ["a", "b", "c"])
    # integer labels covering only some outputs: output i is class i
    clf = SmoothedClassifier(linear3, n0=10, n=50).fit(X[y < 2], y[y < 2])
    np.testing.assert_array_equal(clf.classes_, [0, 1, 2])
    with pytest.raises(ValueError, match="'estimator' returns 3 class scores"):
        SmoothedClassifier(linear3).fit(X[y < 2], np.array(["a", "b"])[y[y < 2]])


def test_sklearn_model_is_cloned_and_trained_on_noisy_copies():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(60, 3))
    y = (X[:, 0] > 0).astype(int)
    base = LogisticRegression()
    clf = _lr_clf(estimator=base, sigma=0.5).fit(X, y)
    assert not hasattr(base, "coef_")  # the user's model is not touched
    clean = LogisticRegression().fit(X, y)
    assert not np.allclose(clf.estimator_.coef_, clean.coef_)
    # the same noise as documented: X + sigma * N(0, I), seeded by random_state
    clf2 = _lr_clf(estimator=base, sigma=0.5).fit(X, y)
    np.testing.assert_array_equal(clf.estimator_.coef_, clf2.estimator_.coef_)
    # several noisy copies, with per-sample fit parameters repeated
    clf3 = _lr_clf(sigma=0.5, noise_augment=3).fit(X, y, sample_weight=np.ones(60))
    assert clf3.estimator_.n_features_in_ == 3


def test_noise_augment_false_warns_for_trained_models():
    X = np.random.default_rng(0).normal(size=(40, 2))
    y = (X[:, 0] > 0).astype(int)
    with pytest.warns(UserWarning, match="noise_augment=False"):
        clf = _lr_clf(noise_augment=False).fit(X, y)
    np.testing.assert_allclose(
        clf.estimator_.coef_, LogisticRegression().fit(X, y).coef_
    )


def test_frozen_sklearn_model_is_not_refitted():
    X = np.random.default_rng(0).normal(size=(40, 2))
    y = (X[:, 0] > 0).astype(int)
    fitted = LogisticRegression().fit(X, y)
    coef = fitted.coef_.copy()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        clf = SmoothedClassifier(FrozenEstimator(fitted), **FAST).fit(X * 100, 1 - y)
    np.testing.assert_array_equal(fitted.coef_, coef)
    assert clf.estimator_.estimator is fitted
    clf.certify(X[:3])
    with pytest.raises(NotFittedError):
        SmoothedClassifier(FrozenEstimator(LogisticRegression())).fit(X, y)


def test_skorch_net_is_trained_with_fresh_noise(tiny_net, blobs3):
    from smoothlearn.models import _NoisyCollate

    X, y = blobs3
    net = tiny_net(max_epochs=3)
    torch.manual_seed(0)
    clf = SmoothedClassifier(net, sigma=0.25, **FAST).fit(X, y)
    assert not hasattr(net, "module_")  # the user's net is left unfitted
    collate = clf.estimator_.iterator_train__collate_fn
    assert isinstance(collate, _NoisyCollate) and collate.sigma == 0.25
    assert clf.score(X, y) > 0.9
    res = clf.certify(X[:6])
    assert res.estimation.shape == (6, 3)


def test_skorch_string_labels_are_encoded(tiny_net, blobs3):
    X, y = blobs3
    labels = np.array(["x", "y", "z"])[y]
    torch.manual_seed(0)
    clf = SmoothedClassifier(tiny_net(max_epochs=5), **FAST).fit(X, labels)
    np.testing.assert_array_equal(clf.classes_, ["x", "y", "z"])
    assert clf.abstain_label_ == "abstain"
    pred = clf.predict(X)
    assert set(pred) <= {"x", "y", "z", "abstain"}
    assert np.mean(pred == labels) > 0.9


def test_frozen_skorch_net(tiny_net, blobs3):
    X, y = blobs3
    torch.manual_seed(0)
    net = tiny_net(max_epochs=5).fit(X, y)
    weights = net.module_.net[1].weight.detach().clone()
    clf = SmoothedClassifier(FrozenEstimator(net), **FAST).fit(X, y)
    assert torch.equal(net.module_.net[1].weight, weights)
    np.testing.assert_array_equal(clf.classes_, [0, 1, 2])
    assert clf.score(X, y) > 0.9
    with pytest.raises(ValueError, match="not initialized"):
        SmoothedClassifier(FrozenEstimator(tiny_net())).fit(X, y)


def test_nd_inputs_images(tiny_net):
    rng = np.random.default_rng(0)
    y = np.repeat([0, 1, 2], 20)
    X = (rng.normal(size=(60, 1, 2, 2)) + y[:, None, None, None]).astype(np.float32)
    torch.manual_seed(0)
    clf = SmoothedClassifier(tiny_net(n_in=4), **FAST).fit(X, y)
    assert clf.input_shape_ == (1, 2, 2)
    assert clf.certify(X[:4]).n_inputs == 4
    # a scikit-learn model sees flattened inputs
    clf_lr = _lr_clf().fit(X, y)
    assert clf_lr.estimator_.n_features_in_ == 4
    assert clf_lr.predict(X[:3]).shape == (3,)
    with pytest.raises(ValueError, match="inputs of shape"):
        clf_lr.predict(X[:3, :, :1])


def test_labels_minus_one_and_one():
    X = np.random.default_rng(0).normal(size=(60, 2))
    y = np.where(X[:, 0] > 0, 1, -1)
    clf = _lr_clf(n=20, alpha=1e-6).fit(X, y)  # n=20 cannot answer at 1e-6
    assert clf.abstain_label_ == -2
    with pytest.warns(UserWarning, match="too few for predict"):
        pred = clf.predict(X[:5])
    np.testing.assert_array_equal(pred, -2)


def test_progress_bar_only_when_verbose(linear3, blobs3, capsys):
    X, y = blobs3
    clf = SmoothedClassifier(linear3, n0=10, n=50, random_state=0).fit(X, y)
    clf.certify(X[:4])
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err == ""
    clf.set_params(verbose=1).certify(X[:4])
    captured = capsys.readouterr()
    assert captured.out == "" and "certify" in captured.err


# ---------------------------------------------------------------------------
# Bad input
# ---------------------------------------------------------------------------
@pytest.mark.parametrize(
    "params, match",
    [
        (dict(sigma=0.0), "'sigma' parameter of SmoothedClassifier must be"),
        (dict(sigma=-1.0), "'sigma'"),
        (dict(sigma=np.inf), "'sigma'"),
        (dict(n0=0), "'n0' parameter"),
        (dict(n=0), "'n' parameter"),
        (dict(alpha=0.0), "'alpha' parameter"),
        (dict(alpha=1.0), "'alpha' parameter"),
        (dict(interval="cohen"), "'interval' parameter.*'cpm'"),
        (dict(radius="max"), "'radius' parameter"),
        (dict(batch_size=0), "'batch_size' parameter"),
        (dict(smoothing="fuzzy"), "'smoothing' parameter"),
        (dict(lipschitz=1.0), "'lipschitz' parameter.*hard counts"),
        (dict(smoothing="soft", lipschitz=-1.0), "'lipschitz' parameter"),
    ],
)
def test_bad_parameters_name_the_parameter(params, match):
    X = np.random.default_rng(0).normal(size=(20, 2))
    y = (X[:, 0] > 0).astype(int)
    with pytest.raises(ValueError, match=match):
        _lr_clf(**params).fit(X, y)


def test_estimator_without_a_way_to_classify():
    with pytest.raises(ValueError, match="'estimator' parameter"):
        SmoothedClassifier(StandardScaler()).fit([[0.0], [1.0]], [0, 1])


def test_bad_X():
    X = np.random.default_rng(0).normal(size=(20, 2))
    y = (X[:, 0] > 0).astype(int)
    clf = _lr_clf()
    with pytest.raises(NotFittedError):
        clf.certify(X)
    with pytest.raises(NotFittedError):
        clf.predict(X)
    with pytest.raises(NotFittedError):
        clf.predict_proba(X)
    X_nan = X.copy()
    X_nan[0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        clf.fit(X_nan, y)
    clf.fit(X, y)
    with pytest.raises(ValueError, match="infinity"):
        clf.certify(np.full((1, 2), np.inf))
    with pytest.raises(ValueError, match="2 features"):
        clf.certify(X[:, :1])


def test_device_must_match_a_pretrained_module(linear3, blobs3):
    X, y = blobs3
    clf = SmoothedClassifier(linear3, device="meta", n0=10, n=50)
    with pytest.raises(ValueError, match="differs from the module's device"):
        clf.fit(X, y)
    clf = SmoothedClassifier(linear3, n0=10, n=50).fit(X, y)
    with pytest.raises(ValueError, match="differs from the module's device"):
        clf.set_params(device="meta").certify(X[:1])
    with pytest.raises(ValueError, match="'device'"):
        _lr_clf(device="meta").fit(X, y)


def test_warns_when_n_too_small_to_certify(linear3, blobs3):
    X, y = blobs3
    clf = SmoothedClassifier(linear3, n0=5, n=5, alpha=0.001).fit(X, y)
    with pytest.warns(UserWarning, match="smallest n that can certify at all is 10"):
        res = clf.certify(X[:2])
    assert res.abstained.all()


# ---------------------------------------------------------------------------
# scikit-learn API
# ---------------------------------------------------------------------------
def test_get_params_clone_and_pipeline():
    clf = _lr_clf(estimator=LogisticRegression(C=0.5))
    params = clf.get_params(deep=True)
    assert params["estimator__C"] == 0.5 and params["sigma"] == 0.25
    clf.set_params(estimator__C=2.0, sigma=0.5)
    cloned = clone(clf)
    assert cloned.estimator.C == 2.0 and cloned.sigma == 0.5
    assert cloned.estimator is not clf.estimator
    X = np.random.default_rng(0).normal(size=(60, 2)) * 50 + 20
    y = (X[:, 0] > 20).astype(int)
    pipe = make_pipeline(StandardScaler(), _lr_clf(sigma=0.1))
    assert pipe.fit(X, y).score(X, y) > 0.8
    assert pipe.predict(X[:4]).shape == (4,)


def test_linear_svc_without_predict_proba_works():
    X = np.random.default_rng(0).normal(size=(60, 2))
    y = (X[:, 0] > 0).astype(int)
    clf = SmoothedClassifier(LinearSVC(), **FAST).fit(X, y)
    assert clf.certify(X[:3]).n_inputs == 3


# ---------------------------------------------------------------------------
# Soundness on a base classifier whose smoothed classifier is known exactly
# ---------------------------------------------------------------------------
def _smoothed_probabilities(u, thresholds, sigma):
    """P(class k) of IntervalClassifier at projection u (one row per u)."""
    edges = np.r_[-np.inf, thresholds, np.inf]
    return np.diff(norm.cdf((edges[None, :] - np.asarray(u)[:, None]) / sigma), axis=1)


def _failures(res, u, thresholds, sigma, step=1e-4):
    """Certificates that are wrong: wrong class, or radius beyond the true one.

    The smoothed classifier depends on u = w.x only (||w|| = 1), so its true
    robust radius at x is the distance from u to the nearest u' where the
    argmax of the analytic probabilities changes; boundaries are located on a
    grid of the given step and only violations beyond one step are counted.
    """
    grid = np.arange(-6.0, 6.0, step)
    g_grid = _smoothed_probabilities(grid, thresholds, sigma).argmax(1)
    change = np.flatnonzero(g_grid[1:] != g_grid[:-1])
    boundaries = (grid[change] + grid[change + 1]) / 2
    g = _smoothed_probabilities(u, thresholds, sigma).argmax(1)
    dist = np.abs(u[:, None] - boundaries[None, :]).min(1)
    wrong = (res.prediction != g) | (res.radius > dist + step)
    return ~res.abstained & wrong


SOUNDNESS_CASES = [
    ([0.2], None, "mono"),  # binary linear classifier, Cohen's CERTIFY
    ([-1.0, -0.3, 0.3, 1.0], None, "mono"),
    ([-1.0, -0.3, 0.3, 1.0], "bonferroni", "multi"),
    ([-1.0, -0.3, 0.3, 1.0], "cpm", "multi"),
]


def _bound_failures(res, u, thresholds, sigma):
    """Inputs whose bounds miss: pA_lower > p_A or pB_upper < max_{c != A} p_c."""
    p = _smoothed_probabilities(u, thresholds, sigma)
    rows = np.arange(len(u))
    chosen = res.selection.argmax(1)  # every procedure here picks the top class
    p_a = p[rows, chosen]
    p_other = p.copy()
    p_other[rows, chosen] = -np.inf
    return (res.pA_lower > p_a) | (res.pB_upper < p_other.max(1))


@pytest.mark.slow
@pytest.mark.parametrize("thresholds, interval, radius", SOUNDNESS_CASES)
def test_certificates_are_sound(thresholds, interval, radius):
    """Wrong certificates and missed bounds are no more frequent than alpha allows.

    Base classifier: class k where t_k <= w.x < t_{k+1} (linear boundaries),
    whose smoothed probabilities are Phi-differences, so both the true class
    probabilities and the true robust radius of the smoothed classifier are
    known.  Each input's statement fails with probability <= alpha
    independently of the others (own noise streams), so the number of
    failures F over m inputs is stochastically below Binomial(m, alpha); each
    check fails when P(Binomial(m, alpha) >= F) < 1e-3, so this test's
    false-alarm rate is at most 2e-3.  alpha = 0.05 and n = 200 keep failures
    observable: on the same statistics, a procedure spending 10 * alpha is
    caught (shown for the bounds, and for the radius of the binary case where
    Cohen's radius is exact).
    """
    sigma, alpha, m = 0.5, 0.05, 3000
    w = np.array([0.6, 0.8])  # unit norm
    rng = np.random.default_rng(12)
    u = rng.uniform(-2.0, 2.0, m)
    orth = np.array([-0.8, 0.6])
    X = (u[:, None] * w + rng.normal(size=(m, 1)) * orth).astype(np.float32)
    u_x = X.astype(np.float64) @ w
    model = IntervalClassifier(w, thresholds)
    y = np.searchsorted(thresholds, u_x)
    clf = SmoothedClassifier(
        model,
        sigma=sigma,
        n0=20,
        n=200,
        alpha=alpha,
        interval=interval,
        radius=radius,
        batch_size=8192,
        random_state=0,
    ).fit(X, y)
    res = clf.certify(X)
    assert (~res.abstained).mean() > 0.3  # the certificates say something

    def too_many(n_fail):
        return binom.sf(n_fail - 1, m, alpha) < 1e-3

    n_wrong = int(_failures(res, u_x, thresholds, sigma).sum())
    n_missed = int(_bound_failures(res, u_x, thresholds, sigma).sum())
    assert not too_many(n_wrong), n_wrong
    assert not too_many(n_missed), n_missed
    # power: spending 10 * alpha is caught by the same checks
    loose = res.recertify(alpha=10 * alpha)
    assert too_many(int(_bound_failures(loose, u_x, thresholds, sigma).sum()))
    if len(thresholds) == 1:
        assert too_many(int(_failures(loose, u_x, thresholds, sigma).sum()))


# ---------------------------------------------------------------------------
# Memory layout, reduced precision and device lists
# ---------------------------------------------------------------------------
def _small_cnn():
    """A CNN on 3x6x6 images whose logits are bit-identical in both layouts
    on CPU (checked in test_sampling on its batches)."""
    torch.manual_seed(0)
    return torch.nn.Sequential(
        torch.nn.Conv2d(3, 4, 3),
        torch.nn.ReLU(),
        torch.nn.Flatten(),
        torch.nn.Linear(4 * 4 * 4, 3),
    )


def _images3(n=6):
    X = np.random.default_rng(0).random((n, 3, 6, 6), dtype=np.float32)
    return X, np.arange(n) % 3


def _certify_and_predict(clf, X):
    return clf.certify(X), clf.predict(X), clf.predict_proba(X)


def _assert_same_outputs(a, b):
    assert a[0] == b[0]
    np.testing.assert_array_equal(a[1], b[1])
    np.testing.assert_array_equal(a[2], b[2])


@pytest.mark.parametrize(
    "params",
    [
        dict(memory_format="channels_last"),
        dict(memory_format="auto"),
        dict(device=["cpu", "cpu"]),
        dict(device=("cpu", torch.device("cpu")), n_jobs=2),
        dict(device=["cpu", "cpu", "cpu"], memory_format="channels_last"),
    ],
)
def test_layout_and_device_list_give_identical_results(params):
    X, y = _images3()
    model = _small_cnn()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    base = dict(sigma=0.5, n0=30, n=400, random_state=0, batch_size=97)
    reference = SmoothedClassifier(model, memory_format="contiguous", **base)
    expected = _certify_and_predict(reference.fit(X, y), X)
    clf = SmoothedClassifier(model, **base, **params).fit(X, y)
    _assert_same_outputs(_certify_and_predict(clf, X), expected)
    # the user's module is untouched: values, layout, training flag
    assert model.training
    for key, value in model.state_dict().items():
        assert torch.equal(value, before[key]) and value.is_contiguous()


def test_device_list_with_a_frozen_skorch_net(tiny_net, blobs3):
    X, y = blobs3
    torch.manual_seed(0)
    net = tiny_net(max_epochs=2).fit(X, y)
    base = dict(n0=20, n=300, random_state=0, batch_size=64)
    one = SmoothedClassifier(FrozenEstimator(net), **base).fit(X, y)
    two = SmoothedClassifier(FrozenEstimator(net), device=["cpu", "cpu"], **base)
    two.fit(X, y)
    _assert_same_outputs(_certify_and_predict(two, X), _certify_and_predict(one, X))


def test_device_list_with_a_scikit_learn_model():
    X = np.random.default_rng(0).normal(size=(30, 2))
    y = (X[:, 0] > 0).astype(int)
    one = _lr_clf().fit(X, y)
    two = _lr_clf(device=["cpu", "cpu"]).fit(X, y)
    _assert_same_outputs(_certify_and_predict(two, X), _certify_and_predict(one, X))


def test_bfloat16_is_the_classifier_that_ran():
    """precision="bfloat16" certifies the module run under CPU autocast: the
    same result as a float32 SmoothedClassifier around that autocast module."""

    class Autocast(torch.nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, x):
            with torch.autocast("cpu", dtype=torch.bfloat16):
                return self.inner(x).float()

    X, y = _images3()
    model = _small_cnn()
    base = dict(sigma=0.5, n0=30, n=400, random_state=0)
    clf = SmoothedClassifier(model, precision="bfloat16", **base).fit(X, y)
    by_hand = SmoothedClassifier(Autocast(model), **base).fit(X, y)
    _assert_same_outputs(_certify_and_predict(clf, X), _certify_and_predict(by_hand, X))
    soft = dict(smoothing="soft", **base)
    assert SmoothedClassifier(model, precision="bfloat16", **soft).fit(X, y).certify(
        X
    ) == SmoothedClassifier(Autocast(model), **soft).fit(X, y).certify(X)


@pytest.mark.parametrize(
    "params, match",
    [
        (dict(device=[]), "'device' parameter of SmoothedClassifier"),
        (dict(device=["cpu", 3]), "'device' parameter of SmoothedClassifier"),
        (dict(device=["cpu", "gpu:x"]), "'device' parameter of SmoothedClassifier"),
        (dict(device=[["cpu"]]), "'device' parameter of SmoothedClassifier"),
        (dict(device=["cpu", "meta"]), r"'device' parameter.*one type"),
        (dict(device=["cpu", "cpu"], n_jobs=3), r"'n_jobs' parameter.*None or 2"),
        (dict(device=["cpu", "cpu"], n_jobs=-1), "'n_jobs' parameter"),
        (dict(memory_format="nhwc"), "'memory_format' parameter"),
        (dict(precision="float64"), "'precision' parameter"),
    ],
)
def test_bad_device_layout_precision_name_the_parameter(linear3, blobs3, params, match):
    X, y = blobs3
    with pytest.raises(ValueError, match=match):
        SmoothedClassifier(linear3, **params).fit(X, y)


def test_layout_and_precision_are_for_torch_models(linear3, blobs3):
    X, y = blobs3
    for params in (dict(precision="bfloat16"), dict(memory_format="channels_last")):
        with pytest.raises(ValueError, match="applies to torch models"):
            _lr_clf(**params).fit(X, y)
    with pytest.raises(ValueError, match="'device'"):
        _lr_clf(device=["cpu", "meta"]).fit(X, y)
    with pytest.raises(ValueError, match=r"'precision'.*float32 model"):
        SmoothedClassifier(linear3.double(), precision="float16", n=50).fit(
            X.astype(np.float64), y
        ).certify(X[:1])
