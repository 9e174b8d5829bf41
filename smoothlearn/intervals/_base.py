"""Abstract bases of the interval hierarchy.

Two families live here:

* :class:`IntervalEstimator`: one-sided and two-sided confidence bounds on
  the mean of i.i.d. [0, 1]-valued variables, from their sufficient
  statistics ``(k, n, sum_sq)``.  For Bernoulli draws ``k`` is the count of
  successes and ``sum_sq = k``; for soft scores ``k`` is the sum of the scores
  and ``sum_sq`` the sum of their squares.
* :class:`MultiClassProcedure`: turns the selection and estimation statistics
  of many inputs at once into the chosen class, ``pA_lower`` and
  ``pB_upper``, with a total failure probability ``alpha``.
"""

from __future__ import annotations

from abc import ABCMeta, abstractmethod
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
from numpy.typing import ArrayLike, NDArray
from sklearn.base import BaseEstimator

from .._rounding import BOUND_RTOL, EPS, round_down, round_up
from .._validation import (
    MAX_DRAWS,
    _as_float_array,
    check_alpha,
    check_kind,
    check_max_draws,
    check_scalar_alpha,
    check_sufficient_statistics,
)

__all__ = ["BoundPlan", "ClassBounds", "IntervalEstimator", "MultiClassProcedure"]


class IntervalEstimator(BaseEstimator, metaclass=ABCMeta):
    """Base class of confidence bounds on a mean of [0, 1]-valued draws.

    Subclasses implement :meth:`_lower` on validated, broadcast float arrays.
    The upper bound follows by reflection: the upper bound on the mean of
    ``X`` is one minus the lower bound on the mean of ``1 - X``, whose
    sufficient statistics are ``(n - k, n, n - 2 k + sum_sq)``.

    Every method takes ``alpha`` as the **total** failure probability of the
    statement it returns: ``lower`` holds with probability at least
    ``1 - alpha``, ``upper`` likewise, and ``interval`` misses on either side
    with total probability at most ``alpha`` (``alpha / 2`` per side).

    Attributes
    ----------
    requires_counts : bool
        True for methods defined only for Bernoulli counts (integer ``k``,
        ``sum_sq`` ignored); False for bounded-mean methods that accept sums
        of [0, 1]-valued scores.
    guaranteed : bool
        True when each one-sided bound holds with probability at least
        ``1 - alpha`` for every true mean and every ``n`` (exact or
        conservative methods); False for approximate (asymptotic) methods.
    max_n : int
        Largest number of draws the method accepts; larger ``n`` raises a
        ValueError naming ``n``.  ``2**53`` (counts exact in float64) unless
        the method's numerics are known to degrade earlier.
    """

    requires_counts: bool = True
    guaranteed: bool = False
    max_n: int = MAX_DRAWS
    # The parameters' constraints (scikit-learn's _param_validation), checked
    # once per public call by _validate_params(), never per element.
    _parameter_constraints: ClassVar[dict] = {}
    # Relative margin by which every bound is rounded outward: more than the
    # floating-point error of the method's formula (see smoothlearn._rounding).
    _rtol: float = BOUND_RTOL
    # True when the bounds depend on (k, n, alpha) only, not on sum_sq, and are
    # non-decreasing in k.  Multi-class procedures then bound only the largest
    # competing statistic, since max_b upper(k_b) = upper(max_b k_b).
    _monotone_in_k: bool = False

    @abstractmethod
    def _lower(
        self,
        k: NDArray[np.float64],
        n: NDArray[np.float64],
        alpha: NDArray[np.float64],
        sum_sq: NDArray[np.float64],
    ) -> NDArray[np.float64]:
        """One-sided lower bound on validated, broadcast arrays."""

    def _upper(self, k, n, alpha, sum_sq):
        # Rounding the reflected lower bound down first keeps the upper bound
        # positive when the lower one rounds to 1 (1 - x would give 0).
        reflected = self._lower(n - k, n, alpha, n - 2.0 * k + sum_sq)
        return 1.0 - round_down(reflected, self._rtol)

    def _sum_error(self, k, n, sum_sq):
        """Absolute error of a mean of ``n`` float64 scores (0 for counts).

        Sums of [0, 1]-valued scores carry a relative error of at most
        ``n eps`` (Higham's gamma_n for recursive summation), so their mean
        is off by at most ``n eps`` in absolute terms.  Bernoulli draws
        (``sum_sq == k``, as ``x**2 = x`` on {0, 1}) are exact integers.
        """
        if self.requires_counts:
            return 0.0
        return np.where(sum_sq != k, n * EPS, 0.0)

    def _lower_out(self, k, n, alpha, sum_sq):
        """:meth:`_lower` rounded outward (down), in [0, 1]."""
        out = round_down(self._lower(k, n, alpha, sum_sq), self._rtol)
        return np.maximum(out - self._sum_error(k, n, sum_sq), 0.0)

    def _upper_out(self, k, n, alpha, sum_sq):
        """:meth:`_upper` rounded outward (up), in [0, 1]."""
        out = round_up(self._upper(k, n, alpha, sum_sq), self._rtol)
        return np.minimum(out + self._sum_error(k, n, sum_sq), 1.0)

    def _validate(self, k, n, alpha, sum_sq):
        self._validate_params()
        k, n, sum_sq = check_sufficient_statistics(
            k, n, sum_sq, integer=self.requires_counts
        )
        check_max_draws(n, self.max_n, type(self).__name__)
        alpha = check_alpha(alpha)
        try:
            k, n, alpha, sum_sq = np.broadcast_arrays(k, n, alpha, sum_sq)
        except ValueError as exc:
            raise ValueError(
                f"The 'alpha' parameter of shape {np.shape(alpha)} cannot be "
                f"broadcast against the statistics of shape {np.shape(k)}."
            ) from exc
        return k, n, alpha, sum_sq

    @staticmethod
    def _finish(bound):
        bound = np.clip(bound, 0.0, 1.0)
        return bound[()] if bound.ndim == 0 else bound

    def lower(
        self, k: ArrayLike, n: ArrayLike, alpha: ArrayLike, sum_sq: ArrayLike = None
    ) -> NDArray[np.float64]:
        """One-sided lower confidence bound on the mean.

        Parameters
        ----------
        k : array-like
            Count of successes, or sum of [0, 1]-valued scores.
        n : array-like of int
            Number of draws.
        alpha : float or array-like
            Failure probability of the bound: ``P(mean < lower) <= alpha``.
        sum_sq : array-like, default=None
            Sum of squared scores; None for Bernoulli draws.

        Returns
        -------
        lower : ndarray of float, in [0, 1], broadcast shape of the inputs
        """
        k, n, alpha, sum_sq = self._validate(k, n, alpha, sum_sq)
        return self._finish(self._lower_out(k, n, alpha, sum_sq))

    def upper(
        self, k: ArrayLike, n: ArrayLike, alpha: ArrayLike, sum_sq: ArrayLike = None
    ) -> NDArray[np.float64]:
        """One-sided upper confidence bound on the mean.

        Parameters are those of :meth:`lower`; ``P(mean > upper) <= alpha``.
        """
        k, n, alpha, sum_sq = self._validate(k, n, alpha, sum_sq)
        return self._finish(self._upper_out(k, n, alpha, sum_sq))

    def interval(
        self, k: ArrayLike, n: ArrayLike, alpha: ArrayLike, sum_sq: ArrayLike = None
    ) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
        """Two-sided confidence interval with total miss probability ``alpha``.

        Each side is a one-sided bound at ``alpha / 2``.

        Returns
        -------
        lower, upper : ndarrays of float, in [0, 1]
        """
        k, n, alpha, sum_sq = self._validate(k, n, alpha, sum_sq)
        half = alpha / 2.0
        return (
            self._finish(self._lower_out(k, n, half, sum_sq)),
            self._finish(self._upper_out(k, n, half, sum_sq)),
        )


@dataclass(frozen=True)
class ClassBounds:
    """What a multi-class procedure returns, per input.

    Attributes
    ----------
    prediction : ndarray of shape (n_inputs,), dtype int
        The class chosen on the selection statistics.
    pA_lower : ndarray of shape (n_inputs,)
        Lower confidence bound on the smoothed score of ``prediction``.
    pB_upper : ndarray of shape (n_inputs,)
        Upper confidence bound on the smoothed score of every other class.
    n_bounds : ndarray of shape (n_inputs,), dtype int
        Number of one-sided bounds ``alpha`` was split over (union bound).
    """

    prediction: NDArray[np.int64]
    pA_lower: NDArray[np.float64]
    pB_upper: NDArray[np.float64]
    n_bounds: NDArray[np.int64]


@dataclass(frozen=True)
class BoundPlan:
    r"""Which class-score combinations a procedure bounds, chosen before estimation.

    A multi-class procedure decides everything but the bounds themselves on
    the selection statistics: the predicted class, and for
    :class:`~smoothlearn.intervals.ClassPartitioning` the buckets.  A plan
    records that decision, so that an engine can accumulate, while it draws,
    exactly what the bounds need: for a betting interval the capital of each
    *bounded quantity*, in memory independent of the number of draws.

    Quantity ``q`` of input ``i`` is the sum of the class scores
    ``sum_c members[i, q, c] s_c``, a [0, 1]-valued score (the scores lie on
    the simplex).  Quantity 0 is the predicted class and gets a **lower**
    bound (``pA_lower``); the others get **upper** bounds and ``pB_upper`` is
    their maximum.  Every bound is at level ``alpha / n_bounds``.  A plan
    with a single quantity (:class:`~smoothlearn.intervals.TopClass`, or
    ``kind="mono"``) returns ``pB_upper = 1 - pA_lower``.

    Attributes
    ----------
    prediction : ndarray of shape (n_inputs,), dtype int
        The class chosen on the selection statistics.
    members : ndarray of shape (n_inputs, n_quantities, n_classes), dtype bool
        The classes summed in each quantity.
    valid : ndarray of shape (n_inputs, n_quantities), dtype bool
        Which quantities exist for each input (CPM's number of buckets
        varies); invalid ones have no member and are ignored.
    n_bounds : ndarray of shape (n_inputs,), dtype int
        The number of one-sided bounds ``alpha`` is split over.
    kind : {"multi", "mono"}
        The radius kind the plan was made for.

    See Also
    --------
    MultiClassProcedure.plan, MultiClassProcedure.bound_from_states
    """

    prediction: NDArray[np.int64]
    members: NDArray[np.bool_]
    valid: NDArray[np.bool_]
    n_bounds: NDArray[np.int64]
    kind: str

    @property
    def n_quantities(self) -> int:
        """Quantities per input (the largest number over inputs)."""
        return int(self.members.shape[1])

    def sides(self) -> NDArray[np.str_]:
        """Side of each bound, shape (n_inputs, n_quantities).

        ``"lower"`` for quantity 0, ``"upper"`` for the others: the ``side``
        argument of :meth:`BettingInterval.new_state
        <smoothlearn.intervals.BettingInterval.new_state>`.
        """
        side = np.full(self.valid.shape, "upper", dtype="<U5")
        side[:, 0] = "lower"
        return side

    def design_alpha(self, alpha: float) -> NDArray[np.float64]:
        """Level of each bound at total failure probability ``alpha``.

        Shape (n_inputs, 1): ``alpha / n_bounds``, the level to tune bets for.
        """
        alpha = check_scalar_alpha(alpha)
        return (alpha / self.n_bounds)[:, None]

    def draws(self, scores: ArrayLike) -> NDArray[np.float64]:
        """The draws of every quantity from a batch of class scores.

        Parameters
        ----------
        scores : array-like of shape (n_inputs, b, n_classes)
            ``b`` draws of the [0, 1]-valued class scores of every input (on
            the simplex), in the order they were made.

        Returns
        -------
        ndarray of shape (n_inputs, n_quantities, b)
            The quantities' draws in [0, 1], in the same order (invalid
            quantities are 0).  A sum of ``|b|`` float64 scores is off by at
            most ``n_classes`` ulps, which :meth:`MultiClassProcedure.
            bound_from_states` adds to every bound.
        """
        s = _as_float_array(scores, "scores")
        n_inputs, _, n_classes = self.members.shape
        if s.ndim != 3 or s.shape[0] != n_inputs or s.shape[2] != n_classes:
            raise ValueError(
                "The 'scores' parameter must have shape (n_inputs, b, n_classes) = "
                f"({n_inputs}, b, {n_classes}). Got {s.shape} instead."
            )
        if not np.all(np.isfinite(s)) or np.any((s < 0) | (s > 1)):
            raise ValueError("The 'scores' parameter must hold scores in [0, 1].")
        out = np.einsum("ibc,iqc->iqb", s, self.members.astype(np.float64))
        # The exact sum is at most 1 (simplex); clipping moves toward it.
        return np.minimum(out, 1.0)

    def statistics(
        self, estimation: ArrayLike, estimation_sq: ArrayLike = None
    ) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
        """Sufficient statistics of every quantity, from per-class statistics.

        Parameters
        ----------
        estimation : array-like of shape (n_inputs, n_classes)
            Per-class sums (counts for hard smoothing).
        estimation_sq : array-like of shape (n_inputs, n_classes), default=None
            Per-class sums of squares; None for hard counts.

        Returns
        -------
        sums, sums_sq : ndarrays of shape (n_inputs, n_quantities)
            A bucket's sum is the sum of its classes'.  Its sum of squares is
            not (the cross terms are unknown) and is replaced by the valid
            upper bound ``min(sum, |b| sum_c sum_sq_c)``, as in
            :class:`~smoothlearn.intervals.ClassPartitioning`; for hard counts
            it equals the sum.
        """
        est = _as_float_array(estimation, "estimation")
        if est.shape != self.members.shape[::2]:
            raise ValueError(
                "The 'estimation' parameter must have shape (n_inputs, n_classes) = "
                f"{self.members.shape[::2]}. Got {est.shape} instead."
            )
        w = self.members.astype(np.float64)
        sums = np.einsum("ic,iqc->iq", est, w)
        if estimation_sq is None:
            return sums, sums.copy()
        sq = _as_float_array(estimation_sq, "estimation_sq")
        if sq.shape != est.shape:
            raise ValueError(
                "The 'estimation_sq' parameter must have the shape of 'estimation' "
                f"{est.shape}. Got {sq.shape} instead."
            )
        size = w.sum(axis=2)
        merged = np.minimum(sums, size * np.einsum("ic,iqc->iq", sq, w))
        return sums, np.where(size > 1, merged, np.einsum("ic,iqc->iq", sq, w))


class MultiClassProcedure(BaseEstimator, metaclass=ABCMeta):
    """Base class of the multi-class confidence procedures.

    A procedure takes, for many inputs at once, the selection statistics
    (from ``n0`` draws, used only to choose) and the independent estimation
    statistics (from ``n`` draws, used only to bound), and returns the chosen
    class with ``pA_lower`` and ``pB_upper`` such that, with probability at
    least ``1 - alpha`` over the estimation draws, ``pA_lower <= p_A`` and
    ``pB_upper >= max_{c != A} p_c`` both hold.

    Parameters
    ----------
    binomial : IntervalEstimator, default=None
        The interval used for every one-sided bound; None means
        :class:`~smoothlearn.intervals.ClopperPearson`.  Use
        :class:`~smoothlearn.intervals.Hoeffding` or
        :class:`~smoothlearn.intervals.EmpiricalBernstein` for soft scores.
    """

    # Subclasses narrow str to the exact aliases of the interval methods.
    _parameter_constraints: ClassVar[dict] = {
        "binomial": [None, str, IntervalEstimator],
    }

    def __init__(self, binomial=None):
        self.binomial = binomial

    @abstractmethod
    def bound(
        self,
        selection: ArrayLike,
        estimation: ArrayLike,
        n: ArrayLike,
        alpha: float,
        *,
        estimation_sq: ArrayLike = None,
        kind: str = "multi",
    ) -> ClassBounds:
        """Choose a class and bound it, for many inputs at once.

        Parameters
        ----------
        selection : array-like of shape (n_inputs, n_classes)
            Selection statistics (counts or score sums over ``n0`` draws).
        estimation : array-like of shape (n_inputs, n_classes)
            Estimation statistics (counts or score sums over ``n`` draws).
        n : int or array-like of shape (n_inputs,)
            Number of estimation draws.
        alpha : float
            Total failure probability of the returned bounds.
        estimation_sq : array-like of shape (n_inputs, n_classes), default=None
            Sums of squared scores; None for hard counts.
        kind : {"multi", "mono"}, default="multi"
            ``"mono"`` needs only ``pA_lower`` (one bound at ``alpha``) and
            returns ``pB_upper = 1 - pA_lower``.

        Returns
        -------
        ClassBounds
        """

    def plan(self, selection: ArrayLike, *, kind: str = "multi") -> BoundPlan:
        """What the procedure will bound, decided on the selection statistics.

        Parameters
        ----------
        selection : array-like of shape (n_inputs, n_classes)
            Selection statistics (counts or score sums over ``n0`` draws).
        kind : {"multi", "mono"}, default="multi"

        Returns
        -------
        BoundPlan
            Given the same statistics, :meth:`bound` and
            :meth:`bound_from_states` on this plan bound the same quantities
            at the same levels and return the same :class:`ClassBounds`.
        """
        raise NotImplementedError(
            f"{type(self).__name__} does not implement plan(): its bounds can "
            "only be computed from sufficient statistics with bound()."
        )

    def bound_from_states(
        self, plan: BoundPlan, states, alpha: float, *, kind: str | None = None
    ) -> ClassBounds:
        r"""The procedure's bounds from per-quantity one-sided bounds.

        Parameters
        ----------
        plan : BoundPlan
            From :meth:`plan` on the selection statistics.
        states : object with a ``bound(alpha)`` method
            Returns, for an array ``alpha`` of shape (n_inputs, 1), the
            one-sided bounds of shape (n_inputs, n_quantities) on each
            quantity of the plan, on the side of :meth:`BoundPlan.sides`,
            each failing with probability at most its ``alpha``; e.g. a
            :class:`~smoothlearn.intervals.BettingState` made with
            ``side=plan.sides()`` and fed :meth:`BoundPlan.draws`.
        alpha : float
            Total failure probability, in (0, 1); each bound gets
            ``alpha / plan.n_bounds``.  Any value is valid, whatever level
            the states were tuned for.
        kind : {"multi", "mono"}, default=None
            None uses ``plan.kind``.  ``"mono"`` spends all of ``alpha`` on
            quantity 0 and returns ``pB_upper = 1 - pA_lower``; a plan made
            for ``"mono"`` has no upper bounds, so ``"multi"`` needs a
            ``"multi"`` plan.

        Returns
        -------
        ClassBounds
            Every bound is widened by ``n_classes`` ulps, the rounding of the
            quantities' draws (:meth:`BoundPlan.draws`).

        Notes
        -----
        Valid by the union bound over the ``n_bounds`` one-sided bounds,
        conditional on the selection draws (which fixed the plan).  A
        bucket's mean bounds each of its classes', so the largest upper bound
        over the quantities other than 0 bounds :math:`\max_{c \ne A} p_c`.
        """
        self._validate_params()
        if not isinstance(plan, BoundPlan):
            raise ValueError(
                f"The 'plan' parameter must be a BoundPlan. Got {plan!r} instead."
            )
        alpha = check_scalar_alpha(alpha)
        kind = plan.kind if kind is None else check_kind(kind)
        if kind == "multi" and plan.kind == "mono":
            raise ValueError(
                "The 'kind' parameter must be 'mono' for a plan made with "
                "kind='mono'. Got 'multi' instead."
            )
        n_inputs, n_q, n_classes = plan.members.shape
        mono = kind == "mono" or n_q == 1
        n_bounds = np.ones(n_inputs, np.int64) if mono else plan.n_bounds
        level = (alpha / n_bounds)[:, None]
        b = np.asarray(states.bound(level), dtype=np.float64)
        if b.shape != (n_inputs, n_q):
            raise ValueError(
                "The 'states' parameter must give bounds of shape (n_inputs, "
                f"n_quantities) = {(n_inputs, n_q)}. Got {b.shape} instead."
            )
        slack = n_classes * EPS
        pA = np.maximum(b[:, 0] - slack, 0.0)
        if mono:
            pB = 1.0 - pA
        else:
            upper = np.where(plan.valid[:, 1:], b[:, 1:], -np.inf)
            pB = np.minimum(upper.max(axis=1) + slack, 1.0)
        return ClassBounds(plan.prediction.copy(), pA, pB, n_bounds.copy())
