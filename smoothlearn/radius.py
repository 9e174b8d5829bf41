"""Certified l2 radii of the smoothed classifier, vectorised.

Cohen's radii live here (:func:`gaussian_radius`); the Lipschitz-aware radii
of Delattre et al. (2025) are added by :func:`lipschitz_radius` and
:func:`solve_s0`.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy.special import ndtri

from ._validation import _as_float_array, check_probability

__all__ = ["gaussian_radius"]

_KINDS = ("multi", "mono")


def _check_kind(kind: str) -> str:
    if not isinstance(kind, str) or kind not in _KINDS:
        raise ValueError(
            f"The 'kind' parameter must be a str among {{'mono', 'multi'}}. "
            f"Got {kind!r} instead."
        )
    return kind


def _check_sigma(sigma: ArrayLike) -> NDArray[np.float64]:
    s = _as_float_array(sigma, "sigma")
    if not np.all(np.isfinite(s)) or np.any(s <= 0):
        raise ValueError(
            f"The 'sigma' parameter must be a float in the range (0, inf). "
            f"Got {sigma!r} instead."
        )
    return s


def _check_bounds(pA_lower, pB_upper, kind):
    kind = _check_kind(kind)
    pA = check_probability(pA_lower, "pA_lower")
    if kind == "mono":
        pB = 1.0 - pA if pB_upper is None else check_probability(pB_upper, "pB_upper")
    else:
        if pB_upper is None:
            raise ValueError(
                "The 'pB_upper' parameter is required when kind='multi'; pass "
                "kind='mono' to use pB_upper = 1 - pA_lower."
            )
        pB = check_probability(pB_upper, "pB_upper")
    try:
        pA, pB = np.broadcast_arrays(pA, pB)
    except ValueError as exc:
        raise ValueError(
            f"Shapes of 'pA_lower' {np.shape(pA)} and 'pB_upper' {np.shape(pB)} "
            "cannot be broadcast together."
        ) from exc
    return pA, pB, kind


def _cohen_raw(pA, pB, sigma, kind):
    """Signed Cohen radius (negative or NaN where the procedure abstains)."""
    with np.errstate(invalid="ignore"):
        if kind == "mono":
            return sigma * ndtri(pA)
        return 0.5 * sigma * (ndtri(pA) - ndtri(pB))


def abstained(
    pA_lower: ArrayLike, pB_upper: ArrayLike | None = None, kind: str = "multi"
) -> NDArray[np.bool_]:
    """Where the certification procedure abstains.

    The rule is Cohen's: ``mono`` abstains where ``pA_lower < 1/2`` and
    ``multi`` where ``pA_lower < pB_upper`` (a negative radius); at equality
    the class is returned with radius 0.  ``pA_lower = 0`` always abstains.
    Lipschitz-aware radii have the same sign as Cohen's, so they share it.

    Returns
    -------
    abstained : ndarray of bool
    """
    pA, pB, kind = _check_bounds(pA_lower, pB_upper, kind)
    raw = _cohen_raw(pA, pB, 1.0, kind)
    out = ~(raw >= 0)
    return out[()] if out.ndim == 0 else out


def gaussian_radius(
    pA_lower: ArrayLike,
    pB_upper: ArrayLike | None = None,
    sigma: ArrayLike = 1.0,
    kind: str = "multi",
) -> NDArray[np.float64]:
    r"""Cohen's certified l2 radius of the Gaussian-smoothed classifier.

    Parameters
    ----------
    pA_lower : array-like
        Lower confidence bound on the probability of the top class.
    pB_upper : array-like or None
        Upper confidence bound on the probability of every other class.
        Ignored (and may be None) when ``kind="mono"``.
    sigma : float or array-like
        Standard deviation of the Gaussian noise, > 0.
    kind : {"multi", "mono"}, default="multi"
        ``"multi"`` is Cohen's Theorem 1, ``"mono"`` its binary special case
        with ``pB_upper = 1 - pA_lower``.

    Returns
    -------
    radius : ndarray of float
        The radius, 0 where the procedure abstains (see :func:`abstained`).

    Notes
    -----
    .. math::

        R_{multi} = \frac{\sigma}{2}\left(\Phi^{-1}(\underline{p_A})
                    - \Phi^{-1}(\overline{p_B})\right), \qquad
        R_{mono} = \sigma\,\Phi^{-1}(\underline{p_A}).

    The prediction of the smoothed classifier is constant within ``radius``
    whenever the bounds hold, whatever the base classifier.

    References
    ----------
    .. [1] Cohen, Rosenfeld & Kolter, "Certified Adversarial Robustness via
       Randomized Smoothing", ICML 2019, Theorem 1.

    Examples
    --------
    >>> from smoothlearn.radius import gaussian_radius
    >>> round(float(gaussian_radius(0.9, 0.05, sigma=0.5)), 6)
    0.731601
    >>> float(gaussian_radius(0.4, sigma=0.5, kind="mono"))
    0.0
    """
    pA, pB, kind = _check_bounds(pA_lower, pB_upper, kind)
    sigma = _check_sigma(sigma)
    raw = _cohen_raw(pA, pB, sigma, kind)
    out = np.where(raw >= 0, raw, 0.0)
    return out[()] if out.ndim == 0 else out
