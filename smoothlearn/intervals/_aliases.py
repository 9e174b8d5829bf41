"""Exact string aliases of the interval methods (used by the procedures)."""

from __future__ import annotations

from ._base import IntervalEstimator
from ._betting import BettingInterval
from ._binomial import AgrestiCoull, ClopperPearson, Jeffreys, Wilson
from ._bounded import EmpiricalBernstein, Hoeffding
from ._sequence import BettingConfidenceSequence

__all__ = ["INTERVALS", "get_interval"]

#: Exact string aliases of the interval methods.
INTERVALS = {
    "clopper_pearson": ClopperPearson,
    "wilson": Wilson,
    "agresti_coull": AgrestiCoull,
    "jeffreys": Jeffreys,
    "hoeffding": Hoeffding,
    "empirical_bernstein": EmpiricalBernstein,
    "betting": BettingInterval,
    "betting_sequence": BettingConfidenceSequence,
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
        ``"betting"`` (:class:`BettingInterval`), ``"betting_sequence"``
        (:class:`BettingConfidenceSequence`).

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
