"""Tools for statisticians: exact coverage and width of interval methods, and
Monte-Carlo validity of multi-class procedures.

Coverage and expected width are computed exactly, by summing the binomial
probability mass function over every outcome ``k = 0, ..., n`` (no
simulation).  The validity of a multi-class procedure depends on the joint
multinomial law of the selection and estimation draws, so it is estimated by
simulation, with a Clopper-Pearson confidence bound on the failure rate.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy.special import ndtri
from scipy.stats import binom
from sklearn.utils import check_random_state

from ._validation import check_kind, check_probability, check_scalar_alpha
from .intervals._base import IntervalEstimator, MultiClassProcedure
from .intervals._binomial import ClopperPearson
from .intervals._registry import get_interval, get_procedure
from .radius import abstained, gaussian_radius

__all__ = [
    "CoverageResult",
    "ValidityResult",
    "WidthResult",
    "binomial_coverage",
    "expected_width",
    "procedure_validity",
]

_SIDES = ("lower", "upper", "two-sided")
_CHUNK = 2_000_000  # max entries of one (n_p, n + 1) pmf block


@dataclass(frozen=True)
class CoverageResult:
    """Exact coverage of an interval method.

    Attributes
    ----------
    interval : IntervalEstimator
    p : ndarray
        True success probabilities (the grid the coverage was computed on).
    n : int
    alpha : float
    side : {"lower", "upper", "two-sided"}
    coverage : ndarray of the shape of ``p``
        ``P_p(bound holds)``, exactly.
    """

    interval: IntervalEstimator
    p: NDArray[np.float64]
    n: int
    alpha: float
    side: str
    coverage: NDArray[np.float64]

    @property
    def min_coverage(self) -> float:
        """Smallest coverage over the grid of ``p``."""
        return float(np.min(self.coverage))

    @property
    def valid(self) -> bool:
        """Whether coverage >= 1 - alpha on the whole grid (1e-12 slack)."""
        return bool(self.min_coverage >= 1.0 - self.alpha - 1e-12)


@dataclass(frozen=True)
class WidthResult:
    """Exact expected width of an interval method.

    Attributes
    ----------
    interval : IntervalEstimator
    p : ndarray
    n : int
    alpha : float
    side : {"lower", "upper", "two-sided"}
    width : ndarray of the shape of ``p``
        ``E_p[upper - lower]`` (two-sided), ``E_p[k/n - lower]`` (lower) or
        ``E_p[upper - k/n]`` (upper), exactly.
    """

    interval: IntervalEstimator
    p: NDArray[np.float64]
    n: int
    alpha: float
    side: str
    width: NDArray[np.float64]


@dataclass(frozen=True)
class ValidityResult:
    """Monte-Carlo validity of a multi-class procedure.

    Attributes
    ----------
    procedure : MultiClassProcedure
    p : ndarray of shape (n_classes,)
        True class probabilities.
    n0, n : int
        Selection and estimation draws per trial.
    alpha : float
        The procedure's total failure probability.
    kind : {"multi", "mono"}
    n_trials : int
    n_failures : int
        Trials where a bound does not hold: ``pA_lower > p[prediction]`` or
        ``pB_upper < max_{c != prediction} p[c]``.  The procedure guarantees
        a failure probability of at most ``alpha``.
    n_radius_failures : int
        Trials that return a class (do not abstain) with a Cohen radius larger
        than the radius of the exact probabilities,
        ``sigma/2 (Phi^-1(p[prediction]) - Phi^-1(max other p))`` (negative
        when the prediction is not the top class).  Always at most
        ``n_failures``.
    failure_rate : float
        ``n_failures / n_trials``.
    failure_rate_upper : float
        One-sided Clopper-Pearson upper bound on the true failure rate at
        confidence ``confidence_level``.
    p_value : float
        One-sided binomial test of "failure probability <= alpha":
        ``P(Binomial(n_trials, alpha) >= n_failures)``.
    confidence_level : float
    """

    procedure: MultiClassProcedure
    p: NDArray[np.float64]
    n0: int
    n: int
    alpha: float
    kind: str
    n_trials: int
    n_failures: int
    n_radius_failures: int
    failure_rate: float
    failure_rate_upper: float
    p_value: float
    confidence_level: float


def _check_int(value, name: str, minimum: int) -> int:
    if (
        isinstance(value, bool | np.bool_)
        or not isinstance(value, int | np.integer)
        or value < minimum
    ):
        raise ValueError(
            f"The {name!r} parameter must be an int >= {minimum}. Got {value!r} "
            "instead."
        )
    return int(value)


def _check_side(side: str) -> str:
    if not isinstance(side, str) or side not in _SIDES:
        raise ValueError(
            "The 'side' parameter must be a str among {'lower', 'upper', "
            f"'two-sided'}}. Got {side!r} instead."
        )
    return side


def _bounds_for_all_k(interval, n, alpha, side):
    k = np.arange(n + 1, dtype=np.float64)
    if side == "lower":
        return np.atleast_1d(interval.lower(k, n, alpha)), None
    if side == "upper":
        return None, np.atleast_1d(interval.upper(k, n, alpha))
    lo, hi = interval.interval(k, n, alpha)
    return np.atleast_1d(lo), np.atleast_1d(hi)


def _pmf_expectation(values_fn, p_flat, n):
    """``sum_k pmf(k; n, p) * values_fn(k, p)`` for every p, in bounded chunks."""
    k = np.arange(n + 1, dtype=np.float64)
    out = np.empty(p_flat.shape)
    step = max(1, _CHUNK // (n + 1))
    for start in range(0, p_flat.size, step):  # chunks bound memory, not a hot loop
        pc = p_flat[start : start + step, None]
        out[start : start + step] = np.sum(
            binom.pmf(k[None, :], n, pc) * values_fn(k[None, :], pc), axis=1
        )
    return out


def _coverage_monotone(lo, hi, p, n):
    """Coverage when the bounds are non-decreasing in k: a range of outcomes.

    ``lo[k] <= p`` holds exactly for ``k <= k_max`` and ``hi[k] >= p`` exactly
    for ``k >= k_min``, so the coverage is ``P(k_min <= K <= k_max)``.
    """
    k_max = np.full(p.shape, n) if lo is None else np.searchsorted(lo, p, "right") - 1
    k_min = np.zeros(p.shape, int) if hi is None else np.searchsorted(hi, p, "left")
    # P(k_min <= K <= k_max), from whichever tail keeps the precision.
    with np.errstate(invalid="ignore"):
        cov = np.where(
            k_min <= 0,
            binom.cdf(k_max, n, p),
            binom.sf(k_min - 1, n, p) - binom.sf(k_max, n, p),
        )
    return np.where(k_max < k_min, 0.0, np.clip(cov, 0.0, 1.0))


def _prepare(interval, p, n, alpha, side):
    interval = get_interval(interval)
    p_arr = check_probability(p, "p")
    n = _check_int(n, "n", 1)
    alpha = check_scalar_alpha(alpha)
    side = _check_side(side)
    return interval, p_arr, n, alpha, side


def binomial_coverage(
    interval: IntervalEstimator | str,
    p: ArrayLike,
    n: int,
    alpha: float,
    side: str = "lower",
) -> CoverageResult:
    r"""Exact coverage probability of an interval method on Bernoulli draws.

    Parameters
    ----------
    interval : IntervalEstimator or str
        The method (an instance or an alias such as ``"wilson"``).
    p : array-like of float in [0, 1]
        True success probabilities; any shape.
    n : int
        Number of draws.
    alpha : float
        Failure probability passed to the method, in (0, 1).
    side : {"lower", "upper", "two-sided"}, default="lower"
        Which statement to evaluate: ``lower(k, n, alpha) <= p``,
        ``upper(k, n, alpha) >= p``, or both sides of ``interval(k, n,
        alpha)``.

    Returns
    -------
    CoverageResult
        With ``coverage`` of the shape of ``p``.

    Notes
    -----
    .. math::

        C(p) = \sum_{k=0}^{n} \binom{n}{k} p^k (1-p)^{n-k}\,
               \mathbb{1}\{\text{bound}(k) \text{ holds at } p\}.

    Exact up to floating-point rounding (about 1e-15).  The bounds are
    computed once for all ``k``.  When they are monotone in ``k`` (true of
    every method here) the covered outcomes form a range of ``k``, so the sum
    is a difference of binomial CDFs and costs ``O(n + p.size)``; otherwise
    the pmf is summed term by term, ``O(p.size * n)``.  A method with
    ``guaranteed = True`` has ``coverage >= 1 - alpha`` for every ``p``.

    Examples
    --------
    >>> from smoothlearn.stats import binomial_coverage
    >>> res = binomial_coverage("clopper_pearson", [0.1, 0.5, 0.9], 50, 0.05)
    >>> bool(res.valid), res.coverage.round(4)
    (True, array([0.9755, 0.9675, 0.9662]))
    """
    interval, p_arr, n, alpha, side = _prepare(interval, p, n, alpha, side)
    lo, hi = _bounds_for_all_k(interval, n, alpha, side)

    def covered(k, pc):
        ki = k.astype(np.intp)
        ok = np.ones(np.broadcast_shapes(k.shape, pc.shape), dtype=bool)
        if lo is not None:
            ok &= lo[ki] <= pc
        if hi is not None:
            ok &= hi[ki] >= pc
        return ok

    monotone = all(b is None or np.all(np.diff(b) >= 0) for b in (lo, hi))
    if monotone:
        cov = _coverage_monotone(lo, hi, p_arr, n)
    else:
        cov = _pmf_expectation(covered, p_arr.ravel(), n).reshape(p_arr.shape)
    return CoverageResult(interval, p_arr, n, alpha, side, np.minimum(cov, 1.0))


def expected_width(
    interval: IntervalEstimator | str,
    p: ArrayLike,
    n: int,
    alpha: float,
    side: str = "two-sided",
) -> WidthResult:
    r"""Exact expected width of an interval method on Bernoulli draws.

    Parameters
    ----------
    interval : IntervalEstimator or str
        The method (an instance or an alias).
    p : array-like of float in [0, 1]
        True success probabilities; any shape.
    n : int
        Number of draws.
    alpha : float
        Failure probability passed to the method, in (0, 1).
    side : {"two-sided", "lower", "upper"}, default="two-sided"
        ``"two-sided"``: ``E[upper - lower]`` of ``interval(k, n, alpha)``;
        ``"lower"``: ``E[k/n - lower(k, n, alpha)]``; ``"upper"``:
        ``E[upper(k, n, alpha) - k/n]`` (the distance from the point
        estimate, the price paid for confidence).

    Returns
    -------
    WidthResult
        With ``width`` of the shape of ``p``.

    Notes
    -----
    .. math::

        W(p) = \sum_{k=0}^{n} \binom{n}{k} p^k (1-p)^{n-k}\, w(k),

    computed exactly as in :func:`binomial_coverage`.

    Examples
    --------
    >>> from smoothlearn.stats import expected_width
    >>> w_cp = expected_width("clopper_pearson", 0.5, 100, 0.05).width
    >>> w_wi = expected_width("wilson", 0.5, 100, 0.05).width
    >>> bool(w_wi < w_cp)
    True
    """
    interval, p_arr, n, alpha, side = _prepare(interval, p, n, alpha, side)
    lo, hi = _bounds_for_all_k(interval, n, alpha, side)
    phat = np.arange(n + 1) / n
    if side == "two-sided":
        w = hi - lo
    elif side == "lower":
        w = phat - lo
    else:
        w = hi - phat

    def width(k, pc):
        return w[k.astype(np.intp)]

    out = _pmf_expectation(width, p_arr.ravel(), n).reshape(p_arr.shape)
    return WidthResult(interval, p_arr, n, alpha, side, out)


def procedure_validity(
    procedure: MultiClassProcedure | str,
    p: ArrayLike,
    n0: int,
    n: int,
    alpha: float,
    n_trials: int,
    *,
    kind: str = "multi",
    confidence_level: float = 0.95,
    batch_size: int = 100_000,
    random_state=None,
) -> ValidityResult:
    r"""Monte-Carlo failure rate of a multi-class procedure on hard counts.

    Each trial draws selection counts ~ Multinomial(``n0``, ``p``) and
    independent estimation counts ~ Multinomial(``n``, ``p``), runs
    ``procedure.bound(..., alpha, kind=kind)`` and checks the returned
    bounds against the true ``p``.

    Parameters
    ----------
    procedure : MultiClassProcedure or str
        The procedure (an instance or an alias such as ``"cpm"``).
    p : array-like of shape (n_classes,)
        True class probabilities, summing to 1.
    n0 : int
        Selection draws per trial.
    n : int
        Estimation draws per trial.
    alpha : float
        Total failure probability of the procedure, in (0, 1).
    n_trials : int
        Number of simulated trials.
    kind : {"multi", "mono"}, default="multi"
    confidence_level : float, default=0.95
        Confidence of the upper bound on the failure rate.
    batch_size : int, default=100_000
        Trials simulated and bounded at once (memory
        ``O(batch_size * n_classes)``).
    random_state : int, RandomState instance or None, default=None
        Seed of the simulation.

    Returns
    -------
    ValidityResult

    Notes
    -----
    A trial fails when :math:`\underline{p_A} > p_{\hat c_A}` or
    :math:`\overline{p_B} < \max_{c \ne \hat c_A} p_c`; a valid procedure
    fails with probability at most ``alpha``.  ``failure_rate_upper`` is the
    one-sided Clopper-Pearson bound on that probability and ``p_value`` the
    exact binomial test of ``H0: failure probability <= alpha``.

    Examples
    --------
    >>> from smoothlearn.stats import procedure_validity
    >>> res = procedure_validity("cpm", [0.5, 0.3, 0.2], n0=100, n=1000,
    ...                          alpha=0.05, n_trials=2000, random_state=0)
    >>> bool(res.failure_rate <= 0.05), bool(res.p_value > 1e-6)
    (True, True)
    """
    procedure = get_procedure(procedure)
    p_arr = check_probability(p, "p")
    if p_arr.ndim != 1 or p_arr.size < 2 or not np.isclose(p_arr.sum(), 1.0):
        raise ValueError(
            "The 'p' parameter must be a 1-D array of n_classes >= 2 class "
            f"probabilities summing to 1. Got {p!r} instead."
        )
    p_arr = p_arr / p_arr.sum()
    n0 = _check_int(n0, "n0", 1)
    n = _check_int(n, "n", 1)
    alpha = check_scalar_alpha(alpha)
    n_trials = _check_int(n_trials, "n_trials", 1)
    batch_size = _check_int(batch_size, "batch_size", 1)
    kind = check_kind(kind)
    confidence_level = check_scalar_alpha(confidence_level, "confidence_level")
    rng = check_random_state(random_state)

    # True runner-up probability for each possible prediction, and the radius
    # of the exact probabilities (Cohen's multi radius, sigma = 1).
    top = int(np.argmax(p_arr))
    others = np.full(p_arr.shape, p_arr[top])
    others[top] = np.max(np.delete(p_arr, top))
    with np.errstate(divide="ignore", invalid="ignore"):
        true_radius = 0.5 * (ndtri(p_arr) - ndtri(others))
    true_radius = np.where(np.isnan(true_radius), -np.inf, true_radius)

    n_failures = 0
    n_radius_failures = 0
    for start in range(0, n_trials, batch_size):  # batches bound memory
        size = min(batch_size, n_trials - start)
        selection = rng.multinomial(n0, p_arr, size=size)
        estimation = rng.multinomial(n, p_arr, size=size)
        b = procedure.bound(selection, estimation, n, alpha, kind=kind)
        fail = (b.pA_lower > p_arr[b.prediction]) | (b.pB_upper < others[b.prediction])
        n_failures += int(np.sum(fail))
        certified = ~abstained(b.pA_lower, b.pB_upper, kind)
        radius = gaussian_radius(b.pA_lower, b.pB_upper, 1.0, kind)
        n_radius_failures += int(
            np.sum(certified & (radius > true_radius[b.prediction]))
        )

    rate = n_failures / n_trials
    rate_upper = float(
        ClopperPearson().upper(n_failures, n_trials, 1.0 - confidence_level)
    )
    p_value = float(binom.sf(n_failures - 1, n_trials, alpha))
    return ValidityResult(
        procedure=procedure,
        p=p_arr,
        n0=n0,
        n=n,
        alpha=alpha,
        kind=kind,
        n_trials=n_trials,
        n_failures=n_failures,
        n_radius_failures=n_radius_failures,
        failure_rate=rate,
        failure_rate_upper=rate_upper,
        p_value=p_value,
        confidence_level=confidence_level,
    )
