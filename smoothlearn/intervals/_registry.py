"""Exact string aliases of the interval methods and multi-class procedures."""

from __future__ import annotations

from ._aliases import INTERVALS, _resolve, get_interval
from ._base import MultiClassProcedure
from ._procedures import Bonferroni, ClassPartitioning, TopClass

__all__ = ["INTERVALS", "PROCEDURES", "get_interval", "get_procedure"]

#: Exact string aliases of the multi-class procedures ("cpm" is the paper's name).
PROCEDURES = {
    "top_class": TopClass,
    "bonferroni": Bonferroni,
    "class_partitioning": ClassPartitioning,
    "cpm": ClassPartitioning,
}


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
