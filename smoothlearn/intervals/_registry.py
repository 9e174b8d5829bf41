"""Exact string aliases of the interval methods and multi-class procedures."""

from __future__ import annotations

from ._base import IntervalEstimator, MultiClassProcedure
from ._betting import BettingInterval
from ._binomial import AgrestiCoull, ClopperPearson, Jeffreys, Wilson
from ._bounded import EmpiricalBernstein, Hoeffding
from ._procedures import Bonferroni, ClassPartitioning, TopClass

__all__ = ["INTERVALS", "PROCEDURES", "get_interval", "get_procedure"]

#: Exact string aliases of the interval methods.
INTERVALS = {
    "clopper_pearson": ClopperPearson,
    "wilson": Wilson,
    "agresti_coull": AgrestiCoull,
    "jeffreys": Jeffreys,
    "hoeffding": Hoeffding,
    "empirical_bernstein": EmpiricalBernstein,
    "betting": BettingInterval,
}

#: Exact string aliases of the multi-class procedures ("cpm" is the paper's name).
PROCEDURES = {
    "top_class": TopClass,
    "bonferroni": Bonferroni,
    "class_partitioning": ClassPartitioning,
    "cpm": ClassPartitioning,
}


def _resolve(obj, aliases, base, name, default):
    if obj is None:
        return default()
    if isinstance(obj, base):
        return obj
    if isinstance(obj, str) and obj in aliases:
        return aliases[obj]()
    valid = ", ".join(repr(a) for a in aliases)
    raise ValueError(
        f"The {name!r} parameter must be a {base.__name__} instance, None or a str "
        f"among {{{valid}}}. Got {obj!r} instead."
    )


def get_interval(interval: IntervalEstimator | str | None) -> IntervalEstimator:
    """Resolve an interval method from an exact string alias or an instance.

    Parameters
    ----------
    interval : IntervalEstimator, str or None
        An instance (returned unchanged), None (:class:`ClopperPearson`) or
        one of ``"clopper_pearson"``, ``"wilson"``, ``"agresti_coull"``,
        ``"jeffreys"``, ``"hoeffding"``, ``"empirical_bernstein"``,
        ``"betting"``.

    Returns
    -------
    IntervalEstimator

    Examples
    --------
    >>> from smoothlearn.intervals import get_interval
    >>> get_interval("empirical_bernstein")
    EmpiricalBernstein()
    """
    return _resolve(interval, INTERVALS, IntervalEstimator, "interval", ClopperPearson)


def get_procedure(
    procedure: MultiClassProcedure | str | None,
) -> MultiClassProcedure:
    """Resolve a multi-class procedure from an exact string alias or an instance.

    Parameters
    ----------
    procedure : MultiClassProcedure, str or None
        An instance (returned unchanged), None (:class:`TopClass`, Cohen's
        procedure) or one of ``"top_class"``, ``"bonferroni"``,
        ``"class_partitioning"``, ``"cpm"`` (the same as
        ``"class_partitioning"``).  Aliases build the procedure with its
        default Clopper-Pearson interval.

    Returns
    -------
    MultiClassProcedure

    Examples
    --------
    >>> from smoothlearn.intervals import get_procedure
    >>> get_procedure("cpm")
    ClassPartitioning()
    """
    return _resolve(procedure, PROCEDURES, MultiClassProcedure, "procedure", TopClass)
