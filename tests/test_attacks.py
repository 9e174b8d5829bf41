"""Tests of smoothlearn.attacks: PGD on the smoothed classifier, empirical accuracy.

The sanity checks rest on one exact fact: for a linear base classifier the
hard smoothed classifier has the same decision boundary (``P(w.(x + d) + b >
0) > 1/2`` iff ``w.x + b > 0``), so the optimal l2 attack of budget ``eps``
moves every input by ``eps`` straight towards the hyperplane, and the robust
accuracy at radius ``r`` is the fraction of inputs farther than ``r`` from it.
"""

import numpy as np
import pytest
import torch
from conftest import make_linear_module
from sklearn.linear_model import LogisticRegression
from sklearn.utils._param_validation import InvalidParameterError

from smoothlearn import SmoothedClassifier
from smoothlearn.attacks import (
    PGD,
    GapReport,
    SmoothAdvPGD,
    empirical_robust_accuracy,
    empirical_robust_accuracy_curve,
    gap_report,
)
from smoothlearn.metrics import certified_accuracy_curve

D = 5
SIGMA = 0.25


def _hyperplane(seed=0):
    """Unit normal ``w`` and offset ``b`` of the boundary ``w.x + b = 0`` in R^5."""
    gen = np.random.default_rng(seed)
    w = gen.standard_normal(D)
    return w / np.linalg.norm(w), 0.3


def _linear_clf(w, b, scale=4.0, **params):
    """Smoothed classifier of the linear base model: class 1 where w.x + b > 0.

    Logits ``(-s (w.x + b) / 2, s (w.x + b) / 2)``: their difference is
    ``s (w.x + b)``, ``s`` times the signed distance to the boundary.
    """
    half = scale * np.asarray(w) / 2
    module = make_linear_module(
        np.stack([-half, half]), [-scale * b / 2, scale * b / 2]
    )
    defaults = dict(sigma=SIGMA, n=2000, alpha=0.001, random_state=0)
    defaults.update(params)
    return SmoothedClassifier(module, **defaults)


def _at_distance(w, b, distance, n_inputs, seed=1):
    """Inputs at signed distance ``+-distance`` from the boundary, and labels."""
    gen = np.random.default_rng(seed)
    Z = gen.standard_normal((n_inputs, D))
    Z -= np.outer(Z @ w + b, w)  # projected onto the hyperplane
    side = np.where(np.arange(n_inputs) % 2 == 0, 1.0, -1.0)
    X = Z + np.outer(side * np.asarray(distance), w)
    return X.astype(np.float32), (side > 0).astype(np.int64)


def _signed_margin(X, w, b, y):
    """Distance to the boundary, positive on the side of the label ``y``."""
    return (X.astype(np.float64) @ w + b) * np.where(y == 1, 1.0, -1.0)


# --------------------------------------------------------------------------
# Linear model: the attack is exact
# --------------------------------------------------------------------------
@pytest.mark.parametrize(
    "attack",
    [SmoothAdvPGD(n_steps=10, n_noise=4, random_state=0), PGD(n_steps=10)],
    ids=["smoothadv", "pgd"],
)
def test_linear_attack_moves_straight_to_the_boundary(attack):
    w, b = _hyperplane()
    distance = np.linspace(0.2, 1.5, 20)
    X, y = _at_distance(w, b, distance, 20)
    clf = _linear_clf(w, b).fit(X, y)
    eps = 0.6
    X_adv = attack.generate(clf, X, y, radius=eps)
    # optimal for a linear boundary: margin drops by exactly eps, moved by eps
    np.testing.assert_allclose(
        _signed_margin(X_adv, w, b, y), distance - eps, atol=2e-4
    )
    np.testing.assert_allclose(np.linalg.norm(X_adv - X, axis=1), eps, rtol=1e-4)


def test_linear_attack_flips_predict_just_beyond_the_boundary_distance():
    # 40 inputs at distance 1 from the boundary. With sigma=0.25 and n=2000 an
    # input 0.15 from the boundary has pA = Phi(0.6) = 0.73: PREDICT answers
    # that side unless n_A < 1074, about 12 standard deviations away, so
    # "all 40" can fail only through a wrong attack.
    w, b = _hyperplane()
    X, y = _at_distance(w, b, 1.0, 40)
    clf = _linear_clf(w, b).fit(X, y)
    attack = SmoothAdvPGD(n_steps=10, n_noise=8, random_state=0)
    below = clf.predict(attack.generate(clf, X, y, radius=0.85))
    beyond = clf.predict(attack.generate(clf, X, y, radius=1.15))
    np.testing.assert_array_equal(below, y)
    np.testing.assert_array_equal(beyond, 1 - y)
    assert empirical_robust_accuracy(clf, X, y, 0.85, attack=attack) == 1.0
    assert empirical_robust_accuracy(clf, X, y, 1.15, attack=attack) == 0.0


@pytest.mark.slow
def test_linear_empirical_curve_matches_the_exact_robust_accuracy_and_certificates():
    # Exact robust accuracy at r: fraction of inputs farther than r. PREDICT
    # (n_predict=10000, alpha=0.001) answers the label at margin >= 0.05
    # (pA >= Phi(0.2) = 0.579: n_A >= 5165 needed, 5793 expected, 12 sd) and
    # never returns it at margin <= -0.02 (pA <= 0.468: 4681 expected, 10 sd),
    # so the empirical curve lies between the exact curves at r + 0.05 and
    # r - 0.02.
    w, b = _hyperplane()
    gen = np.random.default_rng(2)
    X = gen.standard_normal((80, D)).astype(np.float32)
    y = (X.astype(np.float64) @ w + b > 0).astype(np.int64)
    margin = _signed_margin(X, w, b, y)
    clf = _linear_clf(w, b, n=1000).fit(X, y)
    radii = np.linspace(0.0, 1.0, 6)
    attack = SmoothAdvPGD(n_steps=8, n_noise=4, random_state=0)
    r, emp = empirical_robust_accuracy_curve(
        clf, X, y, radii[::-1], attack=attack, n_predict=10_000
    )
    np.testing.assert_array_equal(r, radii)
    exact_hi = (margin[:, None] > radii - 0.02).mean(axis=0)
    exact_lo = (margin[:, None] > radii + 0.05).mean(axis=0)
    assert np.all(emp <= exact_hi) and np.all(emp >= exact_lo), (emp, exact_lo)
    assert np.all(np.diff(emp) <= 0)

    # Certificates (n=1000) must stay below the attack judged with 10x the draws.
    res = clf.certify(X)
    for procedure, kind in [("top_class", "mono"), ("cpm", "multi")]:
        _, cert = certified_accuracy_curve(
            y, res.recertify(interval=procedure, radius=kind), radii
        )
        assert np.all(cert <= emp), (procedure, cert, emp)
        assert np.all(cert <= exact_hi)


def test_gap_report_on_linear_model():
    w, b = _hyperplane()
    gen = np.random.default_rng(3)
    X = gen.standard_normal((40, D)).astype(np.float32)
    y = (X.astype(np.float64) @ w + b > 0).astype(np.int64)
    clf = _linear_clf(w, b, n=1000).fit(X, y)
    attack = SmoothAdvPGD(n_steps=6, n_noise=4, random_state=0)
    report = gap_report(clf, X, y, radii=(0.5, 0.25), attack=attack, n_predict=10_000)
    assert isinstance(report, GapReport)
    np.testing.assert_array_equal(report.radii, [0.25, 0.5])
    assert set(report.certified) == {"certified_cohen", "certified_cpm"}
    assert set(report.gap_closed) == {"gap_closed_cpm"}
    for acc in report.certified.values():
        assert np.all(acc <= report.empirical)
    # the columns are what the metrics give on the stored certificates
    res = clf.certify(X)
    _, cohen = certified_accuracy_curve(y, res, report.radii)
    np.testing.assert_array_equal(report.certified["certified_cohen"], cohen)
    _, emp = empirical_robust_accuracy_curve(
        clf, X, y, report.radii, attack=attack, n_predict=10_000
    )
    np.testing.assert_array_equal(report.empirical, emp)
    rows = report.rows()
    assert [row["radius"] for row in rows] == [0.25, 0.5]
    assert set(rows[0]) == {
        "radius",
        "certified_cohen",
        "certified_cpm",
        "empirical",
        "gap_closed_cpm",
    }
    gap = report.empirical - cohen
    cpm = report.certified["certified_cpm"]
    expected = np.where(gap > 0, (cpm - cohen) / np.where(gap > 0, gap, 1), np.nan)
    np.testing.assert_array_equal(report.gap_closed["gap_closed_cpm"], expected)
    table = report.to_markdown()
    assert table.splitlines()[0].startswith("| radius | certified (Cohen")
    assert len(table.splitlines()) == 4
    assert str(report) == table
    # a precomputed result gives the same report; a soft or mismatched one fails
    again = gap_report(
        clf, X, y, (0.25, 0.5), attack=attack, n_predict=10_000, result=res
    )
    np.testing.assert_array_equal(again.certified["certified_cpm"], cpm)
    with pytest.raises(ValueError, match="'result' parameter"):
        gap_report(clf, X[:5], y[:5], attack=attack, result=res)


def test_curves_plot_on_one_axes():
    pytest.importorskip("matplotlib")
    from matplotlib.figure import Figure

    from smoothlearn.plotting import plot_certified_accuracy

    w, b = _hyperplane()
    X, y = _at_distance(w, b, np.linspace(0.1, 1.0, 10), 10)
    clf = _linear_clf(w, b, n=500).fit(X, y)
    curve = empirical_robust_accuracy_curve(
        clf, X, y, [0.0, 0.5], attack=PGD(n_steps=3)
    )
    ax = plot_certified_accuracy(
        {"certified": clf.certify(X), "empirical": curve}, y, ax=Figure().add_subplot()
    )
    assert [line.get_label() for line in ax.get_lines()] == ["certified", "empirical"]


# --------------------------------------------------------------------------
# Mechanics: budget, seeds, model state, validation
# --------------------------------------------------------------------------
class _SmallNet(torch.nn.Module):
    def __init__(self):
        super().__init__()
        gen = torch.Generator().manual_seed(0)
        self.body = torch.nn.Sequential(
            torch.nn.Linear(D, 16), torch.nn.Tanh(), torch.nn.Dropout(0.5)
        )
        self.head = torch.nn.Linear(16, 3)
        with torch.no_grad():
            for p in self.parameters():
                p.copy_(torch.randn(p.shape, generator=gen))

    def forward(self, X):
        return self.head(self.body(X))


@pytest.fixture
def small():
    gen = np.random.default_rng(4)
    X = gen.standard_normal((12, D)).astype(np.float32)
    module = _SmallNet()
    with torch.no_grad():
        y = module.eval()(torch.from_numpy(X)).argmax(1).numpy()
    module.train()  # the attack must put it in eval mode and restore this
    clf = SmoothedClassifier(module, sigma=SIGMA, n=200, random_state=0)
    return clf.fit(X, np.arange(12) % 3), X, y, module


def test_budget_seeds_and_model_state_restored(small):
    clf, X, y, module = small
    module.head.bias.requires_grad_(False)
    flags = [p.requires_grad for p in module.parameters()]
    global_state = torch.get_rng_state()
    attack = SmoothAdvPGD(n_steps=5, n_noise=4, batch_size=20, random_state=1)
    X1 = attack.generate(clf, X, y, radius=0.3)
    # the global torch generator is untouched; eval mode and flags restored
    assert torch.equal(torch.get_rng_state(), global_state)
    assert module.training and all(m.training for m in module.modules())
    assert [p.requires_grad for p in module.parameters()] == flags
    assert X1.dtype == X.dtype and X1.shape == X.shape
    assert np.all(np.linalg.norm(X1 - X, axis=1) <= 0.3 * (1 + 1e-5))
    assert np.all(np.linalg.norm(X1 - X, axis=1) > 0.29)  # it used its budget
    # same seed, same result; another seed moves differently (noisy gradients)
    np.testing.assert_array_equal(attack.generate(clf, X, y, radius=0.3), X1)
    X2 = attack.set_params(random_state=2).generate(clf, X, y, radius=0.3)
    assert not np.allclose(X2, X1)
    # radius 0 is the identity
    np.testing.assert_array_equal(attack.generate(clf, X, y, radius=0.0), X)


def test_attack_raises_the_smoothed_loss(small):
    # SmoothAdv must lower the smoothed probability of the true class, judged
    # with 4000 fresh draws (far more than its 8 per step).
    clf, X, y, _ = small
    X_adv = SmoothAdvPGD(n_steps=10, n_noise=8, random_state=0).generate(
        clf, X, y, radius=0.5
    )
    judge = clf.set_params(n=4000, random_state=5)
    rows = np.arange(len(y))
    before = judge.predict_proba(X)[rows, y]
    after = judge.predict_proba(X_adv)[rows, y]
    assert np.mean(after) < np.mean(before) - 0.1
    assert np.all(after <= before + 0.05)


def test_skorch_base_model(tiny_net, blobs3):
    # an initialized (untrained) skorch net, used as is: gradients flow
    # through its module_ and the module's state is restored
    from sklearn.frozen import FrozenEstimator

    X, y = blobs3
    net = tiny_net().initialize()
    clf = SmoothedClassifier(
        FrozenEstimator(net), sigma=SIGMA, n=300, random_state=0
    ).fit(X, y)
    X_adv = SmoothAdvPGD(n_steps=4, n_noise=4, random_state=0).generate(
        clf, X[:10], y[:10], radius=0.5
    )
    assert np.all(np.linalg.norm(X_adv - X[:10], axis=1) <= 0.5 * (1 + 1e-5))
    assert not np.allclose(X_adv, X[:10])
    assert all(p.requires_grad for p in net.module_.parameters())
    assert net.module_.training
    acc = empirical_robust_accuracy(
        clf, X[:10], y[:10], [0.5, 0.0], attack=PGD(n_steps=3)
    )
    assert acc.shape == (2,) and acc[1] >= acc[0]


def test_validation(small):
    clf, X, y, _ = small
    attack = SmoothAdvPGD(n_steps=2, n_noise=2, random_state=0)
    with pytest.raises(InvalidParameterError, match="n_steps"):
        SmoothAdvPGD(n_steps=0).generate(clf, X, y, radius=0.1)
    with pytest.raises(InvalidParameterError, match="n_noise"):
        SmoothAdvPGD(n_noise=0).generate(clf, X, y, radius=0.1)
    with pytest.raises(ValueError, match="'radius' parameter"):
        attack.generate(clf, X, y, radius=-0.1)
    with pytest.raises(ValueError, match="'radius' parameter"):
        attack.generate(clf, X, y, radius=float("nan"))
    with pytest.raises(ValueError, match="'y' parameter"):
        attack.generate(clf, X, y[:3], radius=0.1)
    with pytest.raises(ValueError, match="not among the classifier's classes_"):
        attack.generate(clf, X, y + 7, radius=0.1)
    with pytest.raises(ValueError, match="'radii' parameter"):
        empirical_robust_accuracy_curve(clf, X, y, [], attack=attack)
    with pytest.raises(ValueError, match="'n_predict' parameter"):
        empirical_robust_accuracy(clf, X, y, 0.1, attack=attack, n_predict=0)
    with pytest.raises(ValueError, match="'attack' parameter"):
        empirical_robust_accuracy(clf, X, y, 0.1, attack="pgd")
    with pytest.raises(ValueError, match="must be a SmoothedClassifier"):
        attack.generate(LogisticRegression(), X, y, radius=0.1)
    from sklearn.exceptions import NotFittedError

    with pytest.raises(NotFittedError):
        attack.generate(SmoothedClassifier(_SmallNet()), X, y, radius=0.1)


def test_scikit_learn_base_model_is_refused(blobs3):
    X, y = blobs3
    clf = SmoothedClassifier(LogisticRegression(), n=100, random_state=0).fit(X, y)
    with pytest.raises(ValueError, match="needs gradients of the base model"):
        SmoothAdvPGD().generate(clf, X, y, radius=0.1)
    with pytest.raises(ValueError, match="needs gradients of the base model"):
        gap_report(clf, X, y)


# --------------------------------------------------------------------------
# A small digits CNN: certified <= empirical
# --------------------------------------------------------------------------
class _TinyDigitsCNN(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.features = torch.nn.Sequential(
            torch.nn.Conv2d(1, 8, 3, padding=1),
            torch.nn.ReLU(),
            torch.nn.MaxPool2d(2),
            torch.nn.Flatten(),
        )
        self.classifier = torch.nn.Linear(8 * 16, 10)

    def forward(self, X):
        return self.classifier(self.features(X.reshape(-1, 1, 8, 8)))


@pytest.mark.slow
def test_digits_cnn_certified_below_empirical():
    # Certificates from n=500 draws; attacks judged by PREDICT with 3000. A
    # violation needs a certificate failure (alpha=0.001 per input) or PREDICT
    # abstaining inside a certified ball, where its band is sqrt(6) times
    # narrower than CERTIFY's slack.
    from sklearn.datasets import load_digits
    from skorch import NeuralNetClassifier

    X, y = load_digits(return_X_y=True)
    X = (X / 16.0).astype(np.float32)
    net = NeuralNetClassifier(
        _TinyDigitsCNN,
        criterion=torch.nn.CrossEntropyLoss,  # the module returns logits
        max_epochs=6,
        lr=1e-2,
        optimizer=torch.optim.Adam,
        batch_size=64,
        train_split=None,
        iterator_train__shuffle=True,
        verbose=0,
    )
    clf = SmoothedClassifier(
        net, sigma=SIGMA, n=500, alpha=0.001, batch_size=4096, random_state=0
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        clf.fit(X[:1000], y[:1000])
    X_test, y_test = X[1200:1224], y[1200:1224]
    attack = SmoothAdvPGD(n_steps=6, n_noise=8, random_state=0)
    report = gap_report(
        clf, X_test, y_test, radii=(0.25, 0.5), attack=attack, n_predict=3000
    )
    assert report.certified["certified_cohen"][0] > 0.3  # the model learned
    for acc in report.certified.values():
        assert np.all(acc <= report.empirical), report.to_markdown()
    # the attack breaks something a clean PREDICT gets right
    assert report.empirical[-1] < empirical_robust_accuracy(
        clf, X_test, y_test, 0.0, n_predict=3000
    )
