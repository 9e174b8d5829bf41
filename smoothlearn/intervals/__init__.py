"""Confidence bounds: binomial and bounded-mean intervals, multi-class procedures."""

from ._base import ClassBounds, IntervalEstimator, MultiClassProcedure

__all__ = ["ClassBounds", "IntervalEstimator", "MultiClassProcedure"]
