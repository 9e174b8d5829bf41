"""Tests of the certified metrics and the scorer (smoothlearn/metrics.py)."""

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV, cross_val_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from smoothlearn import CertificationResult, SmoothedClassifier
from smoothlearn.metrics import (
    average_certified_radius,
    certified_accuracy,
    certified_accuracy_curve,
    make_certified_scorer,
)


@pytest.fixture
def result():
    # radii: 0.5 * Phi^-1(CP lower bound); input 3 abstains (50/50)
    return CertificationResult.from_statistics(
        selection=[[100, 0], [100, 0], [0, 100], [50, 50]],
        estimation=[[1000, 0], [900, 100], [50, 950], [500, 500]],
        n0=100,
        n=1000,
        sigma=0.5,
        alpha=0.001,
    )


def test_certified_accuracy_counts_correct_and_large_enough(result):
    y = np.array([0, 0, 0, 0])  # input 2 predicts 1 (wrong), input 3 abstains
    r = result.radius
    assert r[0] > r[1] > 0 and r[3] == 0 and result.abstained[3]
    assert certified_accuracy(y, result) == 0.5
    assert certified_accuracy(y, result, r[1]) == 0.5  # radius >= r counts
    assert certified_accuracy(y, result, r[1] + 1e-9) == 0.25
    acc = certified_accuracy(y, result, [0.0, r[0], 10.0])
    np.testing.assert_array_equal(acc, [0.5, 0.25, 0.0])
    # an abstention counts as wrong even if its label would match
    y_abstain = np.array([0, 0, 1, result.abstain_label])
    assert certified_accuracy(y_abstain, result) == 0.75


def test_average_certified_radius(result):
    y = np.array([0, 0, 1, 0])
    expected = (result.radius[0] + result.radius[1] + result.radius[2]) / 4
    assert average_certified_radius(y, result) == pytest.approx(expected)
    assert average_certified_radius([1, 1, 0, 0], result) == 0.0


def test_curve_is_a_non_increasing_step_function(result):
    y = np.array([0, 0, 1, 0])
    radii, acc = certified_accuracy_curve(y, result)
    assert radii[0] == 0 and np.all(np.diff(radii) > 0)
    assert np.all(np.diff(acc) <= 0)
    np.testing.assert_array_equal(acc, certified_accuracy(y, result, radii))
    radii2, _ = certified_accuracy_curve(y, result, radii=[1.0, 0.0])
    np.testing.assert_array_equal(radii2, [0.0, 1.0])


def test_bad_inputs(result):
    with pytest.raises(ValueError, match="'y'"):
        certified_accuracy([0, 1], result)
    with pytest.raises(ValueError, match="'radius'"):
        certified_accuracy([0] * 4, result, -1.0)
    with pytest.raises(TypeError, match="CertificationResult"):
        certified_accuracy([0] * 4, np.zeros(4))
    with pytest.raises(ValueError, match="single float"):
        make_certified_scorer([0.1, 0.2])


def _data():
    rng = np.random.default_rng(0)
    y = np.repeat([0, 1], 40)
    X = np.c_[3.0 * y - 1.5, np.zeros(80)] + 0.5 * rng.standard_normal((80, 2))
    return X * 10 + 5, y  # unscaled: the Pipeline's StandardScaler matters


def test_scorer_in_cross_val_score_and_pipeline():
    X, y = _data()
    clf = SmoothedClassifier(
        LogisticRegression(), n0=10, n=100, alpha=0.01, random_state=0
    )
    pipe = make_pipeline(StandardScaler(), clf)
    scorer = make_certified_scorer(radius=0.25)
    scores = cross_val_score(pipe, X, y, cv=2, scoring=scorer)
    assert scores.shape == (2,) and np.all(scores > 0.7)
    # the scorer equals certified_accuracy on the certify result
    pipe.fit(X, y)
    res = pipe[-1].certify(pipe[0].transform(X))
    assert scorer(pipe, X, y) == certified_accuracy(y, res, 0.25)
    with pytest.raises(TypeError, match="certify"):
        scorer(LogisticRegression().fit(X, y), X, y)
    assert "radius=0.25" in repr(scorer)


def test_scorer_in_grid_search_over_sigma_and_base_parameters():
    X, y = _data()
    X = StandardScaler().fit_transform(X)
    clf = SmoothedClassifier(
        LogisticRegression(), n0=10, n=100, alpha=0.01, random_state=0
    )
    grid = GridSearchCV(
        clf,
        {"sigma": [0.1, 0.5], "estimator__C": [0.01, 1.0]},
        scoring=make_certified_scorer(radius=0.25),
        cv=2,
    )
    grid.fit(X, y)
    assert set(grid.best_params_) == {"sigma", "estimator__C"}
    assert grid.cv_results_["mean_test_score"].shape == (4,)
    best_c = grid.best_params_["estimator__C"]
    assert best_c == grid.best_estimator_.estimator_.C
