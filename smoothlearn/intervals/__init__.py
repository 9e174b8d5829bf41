"""Confidence bounds: binomial and bounded-mean intervals, multi-class procedures."""

from ._base import BoundPlan, ClassBounds, IntervalEstimator, MultiClassProcedure
from ._betting import BettingInterval, BettingState
from ._binomial import AgrestiCoull, ClopperPearson, Jeffreys, Wilson
from ._bounded import EmpiricalBernstein, Hoeffding
from ._procedures import Bonferroni, ClassPartitioning, TopClass
from ._registry import INTERVALS, PROCEDURES, get_interval, get_procedure
from ._sequence import BettingConfidenceSequence

__all__ = [
    "INTERVALS",
    "PROCEDURES",
    "AgrestiCoull",
    "BettingConfidenceSequence",
    "BettingInterval",
    "BettingState",
    "Bonferroni",
    "BoundPlan",
    "ClassBounds",
    "ClassPartitioning",
    "ClopperPearson",
    "EmpiricalBernstein",
    "Hoeffding",
    "IntervalEstimator",
    "Jeffreys",
    "MultiClassProcedure",
    "TopClass",
    "Wilson",
    "get_interval",
    "get_procedure",
]
