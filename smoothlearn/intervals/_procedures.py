"""Multi-class confidence procedures: TopClass (Cohen), Bonferroni and CPM.

Each procedure chooses a class per input from the selection statistics alone
and bounds it from the independent estimation statistics, for many inputs at
once, so that with probability at least ``1 - alpha`` over the estimation
draws both ``pA_lower <= p_A`` and ``pB_upper >= max_{c != A} p_c`` hold.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np
from numpy.typing import ArrayLike, NDArray
from sklearn.utils._param_validation import StrOptions

from .._validation import (
    _as_float_array,
    check_class_statistics,
    check_kind,
    check_max_draws,
    check_scalar_alpha,
)
from ._aliases import INTERVALS, get_interval
from ._base import BoundPlan, ClassBounds, IntervalEstimator, MultiClassProcedure

__all__ = ["Bonferroni", "ClassPartitioning", "TopClass"]


#: The constraints of every procedure: None, an exact alias or an instance.
_BINOMIAL_CONSTRAINTS: dict = {
    "binomial": [None, StrOptions(set(INTERVALS)), IntervalEstimator],
}


def _resolve_binomial(procedure: MultiClassProcedure) -> IntervalEstimator:
    procedure._validate_params()
    binomial = procedure.binomial
    if binomial is None or isinstance(binomial, str):
        try:
            return get_interval(binomial)
        except ValueError as exc:
            raise ValueError(
                f"The 'binomial' parameter of {type(procedure).__name__} is "
                f"invalid: {exc}"
            ) from None
    if not isinstance(binomial, IntervalEstimator):
        raise ValueError(
            f"The 'binomial' parameter of {type(procedure).__name__} must be an "
            f"instance of IntervalEstimator, a str or None. Got {binomial!r} "
            "instead."
        )
    binomial._validate_params()
    return binomial


def _bound(binomial, side, k, n, alpha, sum_sq):
    """One-sided bounds, rounded outward, on arrays already validated."""
    k, n, alpha, sum_sq = np.broadcast_arrays(k, n, alpha, sum_sq)
    method = binomial._lower_out if side == "lower" else binomial._upper_out
    return method(k, n, alpha, sum_sq)


def _prepare(procedure, selection, estimation, n, alpha, estimation_sq, kind):
    binomial = _resolve_binomial(procedure)
    kind = check_kind(kind)
    alpha = check_scalar_alpha(alpha)
    sel, est, n_rows, sq = check_class_statistics(
        selection, estimation, n, estimation_sq, integer=binomial.requires_counts
    )
    check_max_draws(n_rows, binomial.max_n, type(binomial).__name__)
    if sq is None:
        # Hard counts: every class score is Bernoulli, so sum_sq = sum.
        sq = est
    return binomial, kind, alpha, sel, est, n_rows, sq


def _top_class_bounds(binomial, sel, est, n_rows, sq, alpha):
    """Cohen's single bound at ``alpha`` on the selected class."""
    prediction = np.argmax(sel, axis=1)  # first maximum: lowest index on ties
    rows = np.arange(sel.shape[0])
    pA = _bound(
        binomial,
        "lower",
        est[rows, prediction],
        n_rows,
        alpha,
        sq[rows, prediction],
    )
    ones = np.ones(sel.shape[0], dtype=np.int64)
    return ClassBounds(prediction.astype(np.int64), pA, 1.0 - pA, ones)


def _check_selection(selection) -> NDArray[np.float64]:
    sel = _as_float_array(selection, "selection")
    if sel.ndim != 2 or sel.shape[1] < 2:
        raise ValueError(
            "The 'selection' parameter must be a 2-D array of shape (n_inputs, "
            f"n_classes) with n_classes >= 2. Got an array of shape {sel.shape} "
            "instead."
        )
    if not np.all(np.isfinite(sel)) or np.any(sel < 0):
        raise ValueError(
            "The 'selection' parameter must hold finite, non-negative statistics."
        )
    return sel


def _top_class_plan(sel, kind) -> BoundPlan:
    """One quantity, the selected class (lowest index on ties)."""
    n_inputs, n_classes = sel.shape
    prediction = np.argmax(sel, axis=1).astype(np.int64)
    members = np.zeros((n_inputs, 1, n_classes), dtype=bool)
    members[np.arange(n_inputs), 0, prediction] = True
    ones = np.ones(n_inputs, dtype=np.int64)
    return BoundPlan(prediction, members, np.ones((n_inputs, 1), bool), ones, kind)


_PLAN_DOC = """
        Parameters
        ----------
        selection : array-like of shape (n_inputs, n_classes)
            Selection statistics from ``n0`` draws (counts or score sums).
        kind : {"multi", "mono"}, default="multi"
            ``"mono"`` plans one lower bound on the chosen class.

        Returns
        -------
        BoundPlan
            The quantities that :meth:`bound` would bound on the same
            selection statistics; :meth:`bound_from_states` turns their
            one-sided bounds into the same :class:`ClassBounds`.
"""


_BOUND_DOC = """
        Parameters
        ----------
        selection : array-like of shape (n_inputs, n_classes)
            Selection statistics from ``n0`` draws (counts or score sums),
            used only to choose the class (and the partition).
        estimation : array-like of shape (n_inputs, n_classes)
            Independent estimation statistics from ``n`` draws, each row
            summing to at most ``n``; integer counts when the interval
            requires them.
        n : int or array-like of shape (n_inputs,)
            Number of estimation draws.
        alpha : float
            Total failure probability of the returned bounds, in (0, 1):
            ``P(pA_lower > p_A or pB_upper < max_{c != A} p_c) <= alpha``.
        estimation_sq : array-like of shape (n_inputs, n_classes), default=None
            Sums of squared scores (soft smoothing); None for hard counts.
        kind : {"multi", "mono"}, default="multi"
            ``"mono"`` spends all of ``alpha`` on one lower bound on the
            chosen class and returns ``pB_upper = 1 - pA_lower``.

        Returns
        -------
        ClassBounds
            ``prediction``, ``pA_lower``, ``pB_upper`` and ``n_bounds``, each
            of shape (n_inputs,).
"""


class TopClass(MultiClassProcedure):
    r"""Cohen et al.'s procedure: one lower bound, ``pB_upper = 1 - pA_lower``.

    The class is the argmax of the selection statistics (lowest index on
    ties); ``pA_lower`` is one lower bound at ``alpha`` on its estimation
    statistic.  This is CERTIFY of Cohen et al. (2019) and the default of
    :class:`~smoothlearn.SmoothedClassifier`.

    Parameters
    ----------
    binomial : IntervalEstimator or str, default=None
        The interval of the bound; None means
        :class:`~smoothlearn.intervals.ClopperPearson`.

    Notes
    -----
    .. math::

        \hat c_A = \arg\max_c c^0_c, \qquad
        \underline{p_A} = \mathrm{lower}(c_{\hat c_A}, n, \alpha), \qquad
        \overline{p_B} = 1 - \underline{p_A}.

    Valid because scores lie on the simplex: :math:`\max_{c \ne A} p_c \le
    1 - p_A`.  ``kind`` does not change the result (``n_bounds = 1``).
    Coverage is exact or conservative as the interval is (see its
    ``guaranteed`` attribute).

    References
    ----------
    .. [1] Cohen, Rosenfeld & Kolter, "Certified Adversarial Robustness via
       Randomized Smoothing", ICML 2019, Algorithm CERTIFY.

    Examples
    --------
    >>> import numpy as np
    >>> from smoothlearn.intervals import TopClass
    >>> b = TopClass().bound([[60, 40]], [[58_000, 42_000]], 100_000, alpha=0.001)
    >>> b.prediction, b.pA_lower.round(6), b.n_bounds
    (array([0]), array([0.575167]), array([1]))
    """

    _parameter_constraints: ClassVar[dict] = _BINOMIAL_CONSTRAINTS

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
        binomial, kind, alpha, sel, est, n_rows, sq = _prepare(
            self, selection, estimation, n, alpha, estimation_sq, kind
        )
        return _top_class_bounds(binomial, sel, est, n_rows, sq, alpha)

    bound.__doc__ = "Choose the top class and bound it.\n" + _BOUND_DOC

    def plan(self, selection: ArrayLike, *, kind: str = "multi") -> BoundPlan:
        self._validate_params()
        return _top_class_plan(_check_selection(selection), check_kind(kind))

    plan.__doc__ = "The top class, to be bounded from below.\n" + _PLAN_DOC


class Bonferroni(MultiClassProcedure):
    r"""Bonferroni procedure: every class bounded at ``alpha / K``.

    The class is the argmax of the selection statistics (lowest index on
    ties).  With ``kind="multi"`` the ``K`` one-sided bounds (a lower bound
    on the chosen class, an upper bound on each other class) each get
    ``alpha / K``, and ``pB_upper`` is the largest upper bound.  With
    ``kind="mono"`` it is Cohen's single bound at ``alpha``.

    Parameters
    ----------
    binomial : IntervalEstimator or str, default=None
        The interval of every bound; None means
        :class:`~smoothlearn.intervals.ClopperPearson`.

    Notes
    -----
    .. math::

        \underline{p_A} = \mathrm{lower}(c_{\hat c_A}, n, \alpha / K), \qquad
        \overline{p_B} = \max_{c \ne \hat c_A} \mathrm{upper}(c_c, n, \alpha / K).

    Valid by the union bound over the ``K`` bounds (conditional on the
    selection draws, which are independent of the estimation draws).  When
    the interval is non-decreasing in the count (binomial methods,
    Hoeffding), the maximum is computed as one bound on the largest
    competing count, which gives the same value.

    References
    ----------
    .. [1] Delattre et al., "Bridging the Theoretical Gap in Randomized
       Smoothing", AISTATS 2025 (the Bonferroni baseline).

    Examples
    --------
    >>> from smoothlearn.intervals import Bonferroni
    >>> b = Bonferroni().bound([[60, 30, 10]], [[58_000, 32_000, 10_000]],
    ...                        100_000, alpha=0.001)
    >>> b.pA_lower.round(6), b.pB_upper.round(6), b.n_bounds
    (array([0.574678]), array([0.325039]), array([3]))
    """

    _parameter_constraints: ClassVar[dict] = _BINOMIAL_CONSTRAINTS

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
        binomial, kind, alpha, sel, est, n_rows, sq = _prepare(
            self, selection, estimation, n, alpha, estimation_sq, kind
        )
        if kind == "mono":
            return _top_class_bounds(binomial, sel, est, n_rows, sq, alpha)
        n_inputs, n_classes = est.shape
        prediction = np.argmax(sel, axis=1)
        rows = np.arange(n_inputs)
        alpha_each = alpha / n_classes
        pA = _bound(
            binomial,
            "lower",
            est[rows, prediction],
            n_rows,
            alpha_each,
            sq[rows, prediction],
        )
        if binomial._monotone_in_k:
            # The largest upper bound is the bound on the largest competitor.
            others = est.copy()
            others[rows, prediction] = -np.inf
            runner = others.argmax(axis=1)
            top = others[rows, runner]
            # its own sum of squares: for soft sums (sum_sq != sum) the bound
            # then keeps the float-summation slack n * eps on the mean
            pB = _bound(binomial, "upper", top, n_rows, alpha_each, sq[rows, runner])
        else:
            upper = _bound(binomial, "upper", est, n_rows[:, None], alpha_each, sq)
            upper[rows, prediction] = -np.inf
            pB = upper.max(axis=1)
        n_bounds = np.full(n_inputs, n_classes, dtype=np.int64)
        return ClassBounds(prediction.astype(np.int64), pA, pB, n_bounds)

    bound.__doc__ = "Choose the top class and bound every class.\n" + _BOUND_DOC

    def plan(self, selection: ArrayLike, *, kind: str = "multi") -> BoundPlan:
        self._validate_params()
        sel, kind = _check_selection(selection), check_kind(kind)
        if kind == "mono":
            return _top_class_plan(sel, kind)
        n_inputs, n_classes = sel.shape
        prediction = np.argmax(sel, axis=1).astype(np.int64)
        # Quantity 0 is the prediction, then the other classes in index order.
        others = np.argsort(
            np.where(np.arange(n_classes) == prediction[:, None], -1, 0),
            axis=1,
            kind="stable",
        )
        members = np.zeros((n_inputs, n_classes, n_classes), dtype=bool)
        rows = np.arange(n_inputs)[:, None]
        members[rows, np.arange(n_classes)[None, :], others] = True
        n_bounds = np.full(n_inputs, n_classes, dtype=np.int64)
        valid = np.ones((n_inputs, n_classes), dtype=bool)
        return BoundPlan(prediction, members, valid, n_bounds, kind)

    plan.__doc__ = "The top class and every other class.\n" + _PLAN_DOC


class ClassPartitioning(MultiClassProcedure):
    r"""Class Partitioning Method (CPM) of Delattre et al. (2025).

    The classes are grouped into a few buckets chosen on the selection
    statistics only, and ``alpha`` is split over the buckets instead of over
    all classes.

    Parameters
    ----------
    binomial : IntervalEstimator or str, default=None
        The interval of every bound; None means
        :class:`~smoothlearn.intervals.ClopperPearson`.

    Notes
    -----
    Per input, with the selection statistics :math:`c^0` (``kind="multi"``):

    1. Sort the classes by :math:`c^0` descending, ties by lowest index
       first.  :math:`I_1` (the prediction) and :math:`I_2` are the first two
       classes; :math:`M` holds the rest.
    2. Buckets :math:`\{I_1\}`, :math:`\{I_2\}`; then, while
       :math:`\sum_{c \in M} c^0_c > c^0_{I_2}` and :math:`M \ne \emptyset`,
       move the largest class of :math:`M` into its own singleton bucket.
    3. What remains of :math:`M`, if anything, is one merged bucket.
    4. With ``k`` buckets, :math:`\underline{p_A}` is the lower bound on
       bucket :math:`\{I_1\}` at ``alpha / k`` and :math:`\overline{p_B}` the
       largest upper bound at ``alpha / k`` over the other buckets; a bucket's
       statistic is the sum of its classes' estimation statistics.

    Since the peeling condition is monotone along the sorted row, the number
    of singletons is a count over suffix sums, which vectorises over inputs.
    When the interval's bound is non-decreasing in the count (every binomial
    method, and Hoeffding), only the largest competing bucket is bounded:
    :math:`\max_b \mathrm{upper}(n_b) = \mathrm{upper}(\max_b n_b)`.
    Valid by the union bound over the ``k`` bounds, conditional on the
    selection draws; a bucket's probability bounds each of its classes', so
    :math:`\overline{p_B} \ge \max_{c \ne A} p_c`.  ``kind="mono"`` is
    Cohen's single bound at ``alpha`` (``n_bounds = 1``), the paper's Rmono.

    *Soft scores* (``estimation_sq`` given): a merged bucket's sum of squares
    is not the sum of its classes' (cross terms are unknown), so the merged
    bucket uses the upper bound :math:`\min(s_b, |b| \sum_{c \in b} q_c)`
    with :math:`s_b` its sum and :math:`q_c` the classes' sums of squares
    (bucket scores lie in [0, 1] so :math:`y^2 \le y`, and
    :math:`(\sum_c x_c)^2 \le |b| \sum_c x_c^2`).  A larger sum of squares only
    widens a variance-adaptive bound (empirical Bernstein's shift increases
    with the variance), so this stays valid; Hoeffding ignores it.

    References
    ----------
    .. [1] Delattre, Caillon, Barthélemy, Fagnou & Allauzen, "Bridging the
       Theoretical Gap in Randomized Smoothing", AISTATS 2025.

    Examples
    --------
    >>> from smoothlearn.intervals import ClassPartitioning
    >>> sel = [[60, 20, 8, 7, 3, 2, 0, 0, 0, 0]]
    >>> est = [[58000, 21000, 8000, 6500, 3500, 2000, 400, 300, 200, 100]]
    >>> b = ClassPartitioning().bound(sel, est, 100_000, alpha=0.001)
    >>> b.pA_lower.round(6), b.pB_upper.round(6), b.n_bounds
    (array([0.574678]), array([0.214411]), array([3]))
    """

    _parameter_constraints: ClassVar[dict] = _BINOMIAL_CONSTRAINTS

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
        soft = estimation_sq is not None
        binomial, kind, alpha, sel, est, n_rows, sq = _prepare(
            self, selection, estimation, n, alpha, estimation_sq, kind
        )
        if kind == "mono":
            return _top_class_bounds(binomial, sel, est, n_rows, sq, alpha)
        return _cpm(binomial, sel, est, n_rows, sq, alpha, soft)

    bound.__doc__ = "Partition the classes and bound the buckets.\n" + _BOUND_DOC

    def plan(self, selection: ArrayLike, *, kind: str = "multi") -> BoundPlan:
        self._validate_params()
        sel, kind = _check_selection(selection), check_kind(kind)
        if kind == "mono":
            return _top_class_plan(sel, kind)
        n_inputs, n_classes = sel.shape
        order, merged_start, n_buckets = _cpm_partition(sel)
        # Quantity q < merged_start is the class at sorted position q; the
        # merged bucket (if any) holds sorted positions merged_start, ...
        pos = np.arange(n_classes)[None, :]
        bucket = np.minimum(pos, merged_start[:, None])  # bucket of each position
        members = np.zeros((n_inputs, n_classes, n_classes), dtype=bool)
        rows = np.arange(n_inputs)[:, None]
        members[rows, bucket, order] = True
        valid = pos < n_buckets[:, None]
        prediction = order[:, 0].astype(np.int64)
        return BoundPlan(prediction, members, valid, n_buckets.astype(np.int64), kind)

    plan.__doc__ = "The top class and the buckets.\n" + _PLAN_DOC


def _cpm_partition(
    sel: NDArray[np.float64],
) -> tuple[NDArray[np.intp], NDArray[np.intp], NDArray[np.intp]]:
    """CPM's buckets: the class order, the merged bucket's start, the count.

    Returns the classes sorted by selection statistic (descending, lowest
    index first on ties), the first sorted position of the merged bucket
    (``n_classes`` when there is none) and the number of buckets.
    """
    n_classes = sel.shape[1]
    order = np.argsort(-sel, axis=1, kind="stable")
    s = np.take_along_axis(sel, order, axis=1)
    s_suffix = np.cumsum(s[:, ::-1], axis=1)[:, ::-1]
    # Classes at sorted positions 2, 3, ... are peeled while the selection mass
    # from there on exceeds that of I2; suffix sums are non-increasing, so the
    # peeled positions form a prefix and their number is a count.
    n_peeled = np.sum(s_suffix[:, 2:] > s[:, 1:2], axis=1)
    merged_start = 2 + n_peeled  # first sorted position of the merged bucket
    has_merged = merged_start < n_classes
    return order, merged_start, merged_start + has_merged


def _cpm(
    binomial: IntervalEstimator,
    sel: NDArray[np.float64],
    est: NDArray[np.float64],
    n_rows: NDArray[np.float64],
    sq: NDArray[np.float64],
    alpha: float,
    soft: bool,
) -> ClassBounds:
    """Vectorised CPM over inputs (see :class:`ClassPartitioning`)."""
    n_classes = est.shape[1]
    order, merged_start, n_buckets = _cpm_partition(sel)
    e = np.take_along_axis(est, order, axis=1)
    q = np.take_along_axis(sq, order, axis=1)

    def suffix(a):
        return np.cumsum(a[:, ::-1], axis=1)[:, ::-1]

    # Bucket statistics at sorted positions 1..K-1: a singleton's own value,
    # the merged bucket's suffix sum at its start, nothing after it.
    pos = np.arange(1, n_classes)[None, :]
    start = merged_start[:, None]
    singleton = pos < start
    valid = pos <= start
    e_suffix = suffix(e)[:, 1:]
    stat = np.where(singleton, e[:, 1:], np.minimum(e_suffix, n_rows[:, None]))
    if soft:
        merged_size = n_classes - start
        sq_merged = np.minimum(e_suffix, merged_size * suffix(q)[:, 1:])
        sq_merged = np.where(merged_size == 1, q[:, 1:], sq_merged)
        stat_sq = np.where(singleton, q[:, 1:], sq_merged)
    else:
        stat_sq = stat  # one-hot counts: every bucket score is Bernoulli

    alpha_bucket = alpha / n_buckets
    if binomial._monotone_in_k:
        # All buckets of a row share n and alpha / k, and the bound is
        # non-decreasing in the statistic: bound the largest bucket only.
        masked = np.where(valid, stat, -np.inf)
        runner = masked.argmax(axis=1)
        rows_b = np.arange(masked.shape[0])
        top = masked[rows_b, runner]
        # its own sum of squares keeps the soft sums' summation slack
        pB = _bound(
            binomial, "upper", top, n_rows, alpha_bucket, stat_sq[rows_b, runner]
        )
    else:
        n_mat = np.broadcast_to(n_rows[:, None], valid.shape)
        a_mat = np.broadcast_to(alpha_bucket[:, None], valid.shape)
        upper = np.full(valid.shape, -np.inf)
        upper[valid] = _bound(
            binomial, "upper", stat[valid], n_mat[valid], a_mat[valid], stat_sq[valid]
        )
        pB = upper.max(axis=1)
    pA = _bound(binomial, "lower", e[:, 0], n_rows, alpha_bucket, q[:, 0])
    prediction = order[:, 0].astype(np.int64)
    return ClassBounds(prediction, pA, pB, n_buckets.astype(np.int64))
