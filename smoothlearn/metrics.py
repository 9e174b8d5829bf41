"""Certified metrics: certified accuracy, average certified radius, scorers.

An input counts as certified-correct at radius ``r`` when the certificate did
not abstain, its prediction equals the true label, and its certified radius
is at least ``r``.  An abstention always counts as wrong.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, NDArray

from ._validation import _as_float_array
from .result import CertificationResult

__all__ = [
    "average_certified_radius",
    "certified_accuracy",
    "certified_accuracy_curve",
    "make_certified_scorer",
]


def _correct(y: ArrayLike, result: CertificationResult) -> NDArray[np.bool_]:
    if not isinstance(result, CertificationResult):
        raise TypeError(
            "The 'result' parameter must be a CertificationResult. "
            f"Got {type(result).__name__} instead."
        )
    y = np.asarray(y)
    if y.shape != (result.n_inputs,):
        raise ValueError(
            f"The 'y' parameter must have shape ({result.n_inputs},), one label per "
            f"certified input. Got {y.shape} instead."
        )
    return ~result.abstained & np.asarray(result.prediction == y, dtype=bool)


def _check_radii(radius: ArrayLike, name: str = "radius") -> NDArray[np.float64]:
    r = _as_float_array(radius, name)
    if np.any(r < 0):
        raise ValueError(
            f"The {name!r} parameter must be non-negative (a float or an array). "
            f"Got {radius!r} instead."
        )
    return r


def certified_accuracy(
    y: ArrayLike, result: CertificationResult, radius: ArrayLike = 0.0
) -> float | NDArray[np.float64]:
    r"""Fraction of inputs certified correct at l2 radius ``radius``.

    Parameters
    ----------
    y : array-like of shape (n_inputs,)
        True labels of the certified inputs.
    result : CertificationResult
        What :meth:`SmoothedClassifier.certify
        <smoothlearn.SmoothedClassifier.certify>` returned for them.
    radius : float or array-like of shape (n_radii,), default=0.0
        Radius or radii, >= 0.

    Returns
    -------
    accuracy : float or ndarray of shape (n_radii,)
        :math:`\frac{1}{m}\sum_i 1[\hat y_i = y_i,\ R_i \ge r]`; abstentions
        count as wrong.

    Examples
    --------
    >>> from smoothlearn import CertificationResult
    >>> from smoothlearn.metrics import certified_accuracy
    >>> res = CertificationResult.from_statistics(
    ...     selection=[[100, 0], [100, 0], [50, 50]],
    ...     estimation=[[1000, 0], [900, 100], [500, 500]],
    ...     n0=100, n=1000, sigma=0.5, alpha=0.001)
    >>> res.radius.round(3)
    array([1.232, 0.557, 0.   ])
    >>> certified_accuracy([0, 0, 0], res, [0.0, 1.0])
    array([0.66666667, 0.33333333])
    """
    correct = _correct(y, result)
    r = _check_radii(radius)
    if correct.size == 0:
        raise ValueError("The 'result' holds no inputs.")
    ok = correct[:, None] & (result.radius[:, None] >= r.reshape(1, -1))
    acc = ok.mean(axis=0)
    return float(acc[0]) if r.ndim == 0 else acc.reshape(r.shape)


def average_certified_radius(y: ArrayLike, result: CertificationResult) -> float:
    r"""Average certified radius (ACR): mean of the radius of correct inputs.

    Parameters
    ----------
    y : array-like of shape (n_inputs,)
        True labels.
    result : CertificationResult

    Returns
    -------
    acr : float
        :math:`\frac{1}{m}\sum_i R_i\,1[\hat y_i = y_i]` (0 for wrong or
        abstained inputs).

    Examples
    --------
    >>> from smoothlearn import CertificationResult
    >>> from smoothlearn.metrics import average_certified_radius
    >>> res = CertificationResult.from_statistics(
    ...     selection=[[100, 0], [0, 100]], estimation=[[900, 100], [100, 900]],
    ...     n0=100, n=1000, sigma=0.5, alpha=0.001)
    >>> round(average_certified_radius([0, 0], res), 4)
    0.2786
    """
    correct = _correct(y, result)
    if correct.size == 0:
        raise ValueError("The 'result' holds no inputs.")
    return float(np.mean(np.where(correct, result.radius, 0.0)))


def certified_accuracy_curve(
    y: ArrayLike, result: CertificationResult, radii: ArrayLike | None = None
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Certified accuracy as a function of the radius.

    Parameters
    ----------
    y : array-like of shape (n_inputs,)
        True labels.
    result : CertificationResult
    radii : array-like of shape (n_radii,), default=None
        Radii at which to evaluate; None uses 0 and every distinct certified
        radius of a correct input (the points where the step curve drops).

    Returns
    -------
    radii : ndarray of shape (n_radii,)
        Sorted radii.
    accuracy : ndarray of shape (n_radii,)
        Certified accuracy at each radius (non-increasing).

    Examples
    --------
    >>> from smoothlearn import CertificationResult
    >>> from smoothlearn.metrics import certified_accuracy_curve
    >>> res = CertificationResult.from_statistics(
    ...     selection=[[100, 0], [100, 0]], estimation=[[1000, 0], [900, 100]],
    ...     n0=100, n=1000, sigma=0.5, alpha=0.001)
    >>> r, acc = certified_accuracy_curve([0, 0], res)
    >>> r.round(3), acc
    (array([0.   , 0.557, 1.232]), array([1. , 1. , 0.5]))
    """
    correct = _correct(y, result)
    if radii is None:
        radii = np.unique(np.concatenate([[0.0], result.radius[correct]]))
    else:
        radii = np.sort(_check_radii(radii, "radii").ravel())
    return radii, np.asarray(certified_accuracy(y, result, radii), dtype=np.float64)


class _CertifiedScorer:
    """Scorer ``(estimator, X, y) -> certified accuracy at a radius``."""

    def __init__(self, radius: float = 0.0):
        self.radius = radius

    def __repr__(self) -> str:
        return f"make_certified_scorer(radius={self.radius!r})"

    def __call__(self, estimator, X, y, sample_weight=None) -> float:
        final, Xt = estimator, X
        if not hasattr(final, "certify") and hasattr(final, "steps"):
            # a Pipeline: transform through every step but the last
            Xt = final[:-1].transform(X)
            final = final[-1]
        if not hasattr(final, "certify"):
            raise TypeError(
                "make_certified_scorer needs an estimator with a 'certify' method "
                f"(a SmoothedClassifier, or a Pipeline ending in one); got "
                f"{type(estimator).__name__}."
            )
        result = final.certify(Xt)
        correct = _correct(y, result) & (result.radius >= self.radius)
        return float(np.average(correct, weights=sample_weight))


def make_certified_scorer(radius: float = 0.0) -> _CertifiedScorer:
    """A scikit-learn scorer: certified accuracy at ``radius``.

    Use it as ``scoring=`` in :func:`~sklearn.model_selection.cross_val_score`
    or :class:`~sklearn.model_selection.GridSearchCV`; it calls the
    estimator's ``certify`` (through a :class:`~sklearn.pipeline.Pipeline`'s
    transforms when the smoothed classifier is its last step).

    Parameters
    ----------
    radius : float, default=0.0
        The l2 radius, >= 0.

    Returns
    -------
    scorer : callable
        ``scorer(estimator, X, y, sample_weight=None) -> float``; greater is
        better.

    Examples
    --------
    >>> from sklearn.datasets import load_iris
    >>> from sklearn.linear_model import LogisticRegression
    >>> from sklearn.model_selection import cross_val_score
    >>> from smoothlearn import SmoothedClassifier
    >>> from smoothlearn.metrics import make_certified_scorer
    >>> X, y = load_iris(return_X_y=True)
    >>> clf = SmoothedClassifier(LogisticRegression(max_iter=1000), n0=20, n=200,
    ...                          alpha=0.01, random_state=0)
    >>> scores = cross_val_score(clf, X, y, cv=3,
    ...                          scoring=make_certified_scorer(radius=0.25))
    >>> scores.shape
    (3,)
    """
    r = _check_radii(radius)
    if r.ndim != 0:
        raise ValueError(
            f"The 'radius' parameter must be a single float. Got {radius!r} instead."
        )
    return _CertifiedScorer(float(r))
