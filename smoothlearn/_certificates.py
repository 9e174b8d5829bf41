r"""From statistics to certificates: the one pure function every path uses.

Fixed-``n`` certification (:meth:`SmoothedClassifier.certify
<smoothlearn.SmoothedClassifier.certify>`), recertification
(:meth:`CertificationResult.recertify
<smoothlearn.CertificationResult.recertify>`,
:meth:`CertificationResult.from_statistics
<smoothlearn.CertificationResult.from_statistics>`), the per-input choice of
a simplex map in soft smoothing (on the selection draws) and sequential
certification (after every round, and in its recertification) all turn
statistics into certificates through :func:`certify_statistics`: the
multi-class procedure bounds the chosen class and its competitors, then the
radius formula in use (Cohen's, the margin radius, or the Lipschitz-aware
radius of each input's class-score constant) turns the bounds into a
radius.  A new radius or procedure is therefore written once and works in
every mode.

The function is pure: arrays in, arrays out, no model and no randomness.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray

from .radius import abstained, gaussian_radius, lipschitz_radius, margin_radius

__all__ = ["Certificates", "certify_statistics", "radius_of_bounds"]


@dataclass(frozen=True)
class Certificates:
    """Certificates of many inputs, as :func:`certify_statistics` returns them.

    Attributes
    ----------
    prediction : ndarray of shape (n_inputs,), dtype int
        Column index of the chosen class (chosen on the selection statistics).
    pA_lower, pB_upper : ndarray of shape (n_inputs,)
        The procedure's bounds.
    n_bounds : ndarray of shape (n_inputs,), dtype int
        Number of one-sided bounds ``alpha`` was split over.
    radius : ndarray of shape (n_inputs,)
        Certified radius, 0 where abstained.
    raw_radius : ndarray of shape (n_inputs,)
        The radius formula before abstentions are set to 0 (negative, or
        ``-inf``, where the bounds certify nothing); what the per-input
        choices rank and what sequential decisions compare with a target.
    abstained : ndarray of shape (n_inputs,), dtype bool
        Where no certificate is given.
    """

    prediction: NDArray[np.int64]
    pA_lower: NDArray[np.float64]
    pB_upper: NDArray[np.float64]
    n_bounds: NDArray[np.int64]
    radius: NDArray[np.float64]
    raw_radius: NDArray[np.float64]
    abstained: NDArray[np.bool_]


def radius_of_bounds(
    pA_lower: ArrayLike,
    pB_upper: ArrayLike,
    sigma: float,
    kind: str,
    score_lipschitz: ArrayLike | None = None,
    radius_method: str = "paper",
) -> NDArray[np.float64]:
    r"""The radius formula in use, from the bounds (no abstention applied).

    Parameters
    ----------
    pA_lower, pB_upper : array-like of shape (n_inputs,)
        Bounds of a multi-class procedure.
    sigma : float
        Standard deviation of the noise.
    kind : {"mono", "multi", "margin"}
        Cohen's mono or multi radius, or the LVM margin radius.
    score_lipschitz : float or array-like of shape (n_inputs,), default=None
        l2 Lipschitz constant of each input's [0, 1]-valued class score.
        None: Cohen's radius.  Otherwise
        :func:`~smoothlearn.radius.lipschitz_radius` of that kind (``inf``
        rows get Cohen's radius exactly).  Ignored by ``"margin"``.
    radius_method : {"paper", "envelope"}, default="paper"
        Form of the Lipschitz-aware radius.

    Returns
    -------
    radius : ndarray of shape (n_inputs,)
    """
    pA = np.asarray(pA_lower, dtype=np.float64)
    pB = np.asarray(pB_upper, dtype=np.float64)
    if kind == "margin":
        rad = margin_radius(pA, pB, sigma)
    elif score_lipschitz is None:
        rad = gaussian_radius(pA, pB, sigma, kind)
    else:
        rad = lipschitz_radius(
            pA, pB, sigma, score_lipschitz, kind=kind, method=radius_method
        )
    return np.asarray(rad, dtype=np.float64).reshape(pA.shape)


def certify_statistics(
    procedure,
    selection: ArrayLike,
    estimation: ArrayLike,
    n: ArrayLike,
    alpha: float,
    *,
    sigma: float,
    kind: str = "mono",
    estimation_sq: ArrayLike | None = None,
    score_lipschitz: ArrayLike | None = None,
    radius_method: str = "paper",
    bounds=None,
) -> Certificates:
    r"""Bounds, then radii, of many inputs from their statistics.

    Parameters
    ----------
    procedure : MultiClassProcedure
        Chooses the class on ``selection`` and bounds it on ``estimation``
        at total failure probability ``alpha`` per input.
    selection, estimation : array-like of shape (n_inputs, n_classes)
        Selection and (independent) estimation statistics.
    n : int or array-like of shape (n_inputs,)
        Estimation draws per input (per input in sequential certification).
    alpha : float
        Total failure probability of each input's certificate.
    sigma : float
        Standard deviation of the noise.
    kind : {"mono", "multi", "margin"}, default="mono"
        The radius formula; ``"margin"`` bounds as ``"multi"``.
    estimation_sq : array-like of shape (n_inputs, n_classes), default=None
        Sums of squared scores (soft smoothing); None for counts.
    score_lipschitz : float or array-like of shape (n_inputs,), default=None
        Each input's class-score constant (see :func:`radius_of_bounds`).
    radius_method : {"paper", "envelope"}, default="paper"
        Form of the Lipschitz-aware radius.
    bounds : ClassBounds, default=None
        The procedure's bounds when they were computed otherwise than from
        the sufficient statistics (e.g. by
        :meth:`~smoothlearn.intervals.MultiClassProcedure.bound_from_states`
        from betting states of the same estimation draws); None calls
        ``procedure.bound``.

    Returns
    -------
    Certificates

    Notes
    -----
    With probability at least :math:`1 - \alpha` over the estimation draws
    the procedure's bounds hold, and then every radius formula returned here
    is a valid certificate: Cohen's (Theorem 1 of Cohen et al. 2019), the
    margin radius, or the Lipschitz-aware radius when each class score is
    ``score_lipschitz``-Lipschitz (Delattre et al. 2025).  Abstention
    follows the procedure's kind (:func:`~smoothlearn.radius.abstained`).
    """
    proc_kind = "multi" if kind == "margin" else kind
    if bounds is None:
        bounds = procedure.bound(
            selection, estimation, n, alpha, estimation_sq=estimation_sq, kind=proc_kind
        )
    pA = np.asarray(bounds.pA_lower, dtype=np.float64)
    pB = np.asarray(bounds.pB_upper, dtype=np.float64)
    abst = np.asarray(abstained(pA, pB, proc_kind), dtype=bool).reshape(pA.shape)
    raw = radius_of_bounds(pA, pB, sigma, kind, score_lipschitz, radius_method)
    return Certificates(
        prediction=np.asarray(bounds.prediction, dtype=np.int64),
        pA_lower=pA,
        pB_upper=pB,
        n_bounds=np.asarray(bounds.n_bounds, dtype=np.int64),
        radius=np.where(abst, 0.0, raw),
        raw_radius=raw,
        abstained=abst,
    )
