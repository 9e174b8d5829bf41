"""Tools for statisticians: exact coverage and width of interval methods, and
Monte-Carlo validity of multi-class procedures.

On Bernoulli draws, coverage and expected width of a bound computed from the
count are exact, by summing the binomial probability mass function over
every outcome ``k = 0, ..., n`` (no simulation).  A bound that uses more than
the count (the order of the draws, for the betting interval, or the sum of
squares of [0, 1]-valued scores) and any law other than Bernoulli need
simulation (:func:`simulated_coverage`), as does the validity of a
multi-class procedure, which depends on the joint multinomial law of the
selection and estimation draws; both report a Clopper-Pearson confidence
bound on the failure rate and a binomial test.
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
    "SimulatedCoverageResult",
    "ValidityResult",
    "WidthResult",
    "binomial_coverage",
    "expected_width",
    "procedure_validity",
    "simulated_coverage",
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


@dataclass(frozen=True)
class SimulatedCoverageResult:
    """Monte-Carlo coverage and width of an interval method on a [0, 1] law.

    Attributes
    ----------
    interval : IntervalEstimator
    law : object
        The law of the draws (a frozen ``scipy.stats`` distribution).
    mean : float
        Its true mean.
    n : int
        Draws per trial.
    alpha : float
        Failure probability passed to the method.
    side : {"lower", "upper", "two-sided"}
    from_draws : bool
        Whether the bounds used the draws in order (methods with
        ``accepts_draws``, e.g. :class:`~smoothlearn.intervals.BettingInterval`)
        or their sufficient statistics ``(sum, sum_sq, n)``.
    n_trials : int
    n_failures : int
        Trials whose statement does not hold at the true mean.
    failure_rate : float
        ``n_failures / n_trials``; a valid method has expectation at most
        ``alpha``.
    failure_rate_upper : float
        One-sided Clopper-Pearson upper bound on the failure probability at
        confidence ``confidence_level``.
    p_value : float
        Binomial test of ``H0: failure probability <= alpha``,
        ``P(Binomial(n_trials, alpha) >= n_failures)``.
    median_width, mean_width : float
        Of ``upper - lower`` (two-sided), ``mean_hat - lower`` (lower) or
        ``upper - mean_hat`` (upper), with ``mean_hat`` the sample mean.
    confidence_level : float
    """

    interval: IntervalEstimator
    law: object
    mean: float
    n: int
    alpha: float
    side: str
    from_draws: bool
    n_trials: int
    n_failures: int
    failure_rate: float
    failure_rate_upper: float
    p_value: float
    median_width: float
    mean_width: float
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


def _resolve_interval(interval) -> IntervalEstimator:
    """An interval instance, an alias of INTERVALS, or ``"betting_sequence"``."""
    if isinstance(interval, str) and interval == "betting_sequence":
        from .sequential import BettingConfidenceSequence

        return BettingConfidenceSequence()
    return get_interval(interval)


def _check_law(law):
    """A law with ``rvs``, ``mean`` and a support inside [0, 1]."""
    try:
        lo, hi = (float(v) for v in law.support())
        mean = float(law.mean())
        if not callable(law.rvs):
            raise TypeError
    except (AttributeError, TypeError, ValueError):
        raise ValueError(
            "The 'law' parameter must be a frozen scipy.stats distribution (with "
            f"rvs, mean and support). Got {law!r} instead."
        ) from None
    if not (0.0 <= lo <= hi <= 1.0) or not np.isfinite(mean):
        raise ValueError(
            "The 'law' parameter must have its support in [0, 1]: the bounds are "
            f"for [0, 1]-valued draws. Got support [{lo}, {hi}] instead."
        )
    return mean


def simulated_coverage(
    interval: IntervalEstimator | str,
    law,
    n: int,
    alpha: float,
    n_trials: int,
    *,
    side: str = "lower",
    confidence_level: float = 0.95,
    batch_size: int | None = None,
    random_state=None,
) -> SimulatedCoverageResult:
    r"""Monte-Carlo coverage and width of an interval method on any [0, 1] law.

    Each trial draws ``n`` i.i.d. values from ``law`` and computes the
    method's bound; the statement fails when it excludes the true mean.
    Methods that use the order of the draws (``accepts_draws``, such as
    :class:`~smoothlearn.intervals.BettingInterval`) get the draws; the
    others get ``(sum, n, sum_sq)``, and binomial methods (``requires_counts``)
    only accept 0/1 draws.

    Parameters
    ----------
    interval : IntervalEstimator or str
        An instance, an alias of :data:`~smoothlearn.intervals.INTERVALS`, or
        ``"betting_sequence"`` for
        :class:`~smoothlearn.sequential.BettingConfidenceSequence`.
    law : frozen scipy.stats distribution
        The law of the draws, with support in [0, 1]: e.g.
        ``scipy.stats.bernoulli(0.99)``, ``scipy.stats.beta(95, 5)``, or a
        two-point law ``scipy.stats.rv_discrete(values=([0.1, 1], [0.03,
        0.97]))``.
    n : int
        Draws per trial.
    alpha : float
        Failure probability passed to the method, in (0, 1) (for
        ``"two-sided"``, the total of both sides).
    n_trials : int
        Number of independent trials.
    side : {"lower", "upper", "two-sided"}, default="lower"
    confidence_level : float, default=0.95
        Confidence of the upper bound on the failure probability.
    batch_size : int, default=None
        Trials simulated at once; None keeps about 2,000,000 draws in memory.
    random_state : int, RandomState instance or None, default=None

    Returns
    -------
    SimulatedCoverageResult

    Notes
    -----
    ``failure_rate_upper`` is the one-sided Clopper-Pearson bound on the
    failure probability and ``p_value`` the exact binomial test of
    :math:`H_0: P(\text{fail}) \le \alpha`: a guaranteed method has
    ``p_value`` below a threshold ``t`` with probability at most ``t``
    (the false-alarm rate of declaring it invalid).

    Examples
    --------
    >>> from scipy.stats import beta
    >>> from smoothlearn.stats import simulated_coverage
    >>> res = simulated_coverage("betting", beta(95, 5), n=500, alpha=0.05,
    ...                          n_trials=400, random_state=0)
    >>> bool(res.failure_rate <= 0.05), bool(res.p_value > 1e-6), res.from_draws
    (True, True, True)
    """
    interval = _resolve_interval(interval)
    mean = _check_law(law)
    n = _check_int(n, "n", 1)
    alpha = check_scalar_alpha(alpha)
    n_trials = _check_int(n_trials, "n_trials", 1)
    side = _check_side(side)
    confidence_level = check_scalar_alpha(confidence_level, "confidence_level")
    if batch_size is None:
        batch_size = max(1, 2_000_000 // n)
    batch_size = _check_int(batch_size, "batch_size", 1)
    rng = check_random_state(random_state)
    from_draws = bool(getattr(interval, "accepts_draws", False))

    fails = 0
    widths = []
    for start in range(0, n_trials, batch_size):  # batches bound memory
        size = min(batch_size, n_trials - start)
        x = np.asarray(law.rvs(size=(size, n), random_state=rng), dtype=np.float64)
        if interval.requires_counts and not np.all((x == 0.0) | (x == 1.0)):
            raise ValueError(
                f"The 'interval' parameter {type(interval).__name__} needs "
                "Bernoulli draws (counts); the 'law' parameter gave values other "
                "than 0 and 1."
            )
        k, sq = x.sum(axis=1), (x * x).sum(axis=1)
        if from_draws:
            lower, upper = interval.lower_from_draws, interval.upper_from_draws
            lo = lower(x, alpha) if side == "lower" else None
            hi = upper(x, alpha) if side == "upper" else None
            if side == "two-sided":
                lo, hi = interval.interval_from_draws(x, alpha)
        else:
            sq_arg = None if interval.requires_counts else sq
            lo = interval.lower(k, n, alpha, sq_arg) if side == "lower" else None
            hi = interval.upper(k, n, alpha, sq_arg) if side == "upper" else None
            if side == "two-sided":
                lo, hi = interval.interval(k, n, alpha, sq_arg)
        ok = np.ones(size, dtype=bool)
        if lo is not None:
            ok &= np.atleast_1d(lo) <= mean
        if hi is not None:
            ok &= np.atleast_1d(hi) >= mean
        fails += int(np.sum(~ok))
        if side == "two-sided":
            widths.append(np.atleast_1d(hi) - np.atleast_1d(lo))
        elif side == "lower":
            widths.append(k / n - np.atleast_1d(lo))
        else:
            widths.append(np.atleast_1d(hi) - k / n)

    w = np.concatenate(widths)
    rate_upper = float(ClopperPearson().upper(fails, n_trials, 1.0 - confidence_level))
    return SimulatedCoverageResult(
        interval=interval,
        law=law,
        mean=mean,
        n=n,
        alpha=alpha,
        side=side,
        from_draws=from_draws,
        n_trials=n_trials,
        n_failures=fails,
        failure_rate=fails / n_trials,
        failure_rate_upper=rate_upper,
        p_value=float(binom.sf(fails - 1, n_trials, alpha)),
        median_width=float(np.median(w)),
        mean_width=float(np.mean(w)),
        confidence_level=confidence_level,
    )
