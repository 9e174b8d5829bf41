"""scikit-learn's common estimator checks on SmoothedClassifier."""

from sklearn.linear_model import LogisticRegression
from sklearn.utils.estimator_checks import parametrize_with_checks

from smoothlearn import SmoothedClassifier


def _estimators():
    # Fast checking parameters: few draws, a permissive alpha so that PREDICT
    # answers on clear-cut points, and a fixed random_state.  Soft smoothing has
    # its own predict and predict_proba (issue 17), so it is checked too.
    return [
        SmoothedClassifier(
            LogisticRegression(),
            n0=10,
            n=64,
            alpha=0.01,
            batch_size=4096,
            random_state=0,
            smoothing=smoothing,
        )
        for smoothing in ("hard", "soft")
    ]


def _expected_failed_checks(estimator):
    # The noise of an input is keyed by its values, not its position, so the
    # sample-order and subset invariance checks pass and are not listed here.
    return {
        "check_classifiers_train": (
            "predict is Cohen's PREDICT: it abstains (-1) where the binomial test "
            "cannot separate the two top classes, so it differs from the argmax of "
            "predict_proba on those inputs"
            if estimator.smoothing == "hard"
            else "soft predict abstains (-1) where the margin test cannot separate "
            "its class from every other, so it differs from the argmax of "
            "predict_proba on those inputs"
        ),
    }


@parametrize_with_checks(_estimators(), expected_failed_checks=_expected_failed_checks)
def test_sklearn_compatible_estimator(estimator, check):
    check(estimator)
