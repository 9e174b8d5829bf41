"""What certification returns: per-input certificates with their statistics.

:class:`CertificationResult` keeps the selection and estimation statistics
next to the certificates, so :meth:`CertificationResult.recertify` recomputes
the certificates for another ``alpha``, multi-class procedure or radius
without the model, and :meth:`CertificationResult.save` /
:meth:`CertificationResult.load` store everything in a plain ``.npz`` file
that is read back without pickle.
"""

from __future__ import annotations

import json
import math
import numbers
import os
import warnings
from dataclasses import dataclass, fields
from os import PathLike
from typing import ClassVar

import numpy as np
from numpy.typing import NDArray

from ._certificates import certify_statistics
from ._validation import MAX_DRAWS, check_kind, check_scalar_alpha
from .intervals import IntervalEstimator, MultiClassProcedure
from .intervals import _registry as _interval_registry

__all__ = ["ApproximateCertificateWarning", "CertificationResult"]


class ApproximateCertificateWarning(UserWarning):
    """Certificates computed with an approximate interval (``guaranteed=False``).

    Wilson, Agresti-Coull and Jeffreys have coverage close to ``1 - alpha``
    only on average or asymptotically: for some true probabilities a bound
    fails more often than ``alpha`` says, so a certificate built on them can
    be wrong with probability above ``alpha``.  They stay available for
    comparison; :attr:`CertificationResult.guaranteed` is False for their
    certificates, and tables, frames and plots label them "approximate".
    """


# 2: ``lipschitz`` is the logits' constant (in the JSON record) and the
# per-input class-score constants are the array ``score_lipschitz``; format 1
# stored the latter under ``lipschitz`` and is still read.
# 3: soft results certified with a BettingInterval may hold the betting
# states of their estimation draws, as arrays named ``betting_<key>``
# (see ``betting_state``); formats 1 and 2 are still read (no states).
_FORMAT_VERSION = 3
_READABLE_VERSIONS = (1, 2, 3)
_BETTING_PREFIX = "betting_"


# --------------------------------------------------------------------------
# Small shared helpers (also used by smoothlearn.smoothed)
# --------------------------------------------------------------------------
def _abstain_label(classes: NDArray):
    """The label that marks an abstention, given the class labels.

    ``-1`` for numeric labels, or ``min(classes) - 1`` when ``-1`` is itself a
    class; the string ``"abstain"`` for other labels, or None when
    ``"abstain"`` is itself a class.
    """
    classes = np.asarray(classes)
    if classes.dtype.kind in "iuf":
        if not np.any(classes == -1):
            return -1
        low = classes.min() - 1
        return low.item()
    if not any(isinstance(c, str) and c == "abstain" for c in classes.tolist()):
        return "abstain"
    return None


def _labels(classes: NDArray, index: NDArray, abstained: NDArray, abstain_label):
    """Labels ``classes[index]`` with ``abstain_label`` where ``abstained``."""
    classes = np.asarray(classes)
    if abstain_label is None:
        dtype = np.dtype(object)
    else:
        dtype = np.result_type(classes.dtype, np.asarray(abstain_label).dtype)
        if classes.dtype.kind == "b":
            dtype = np.dtype(np.int64)
    out = np.empty(len(index), dtype=dtype)
    safe = np.where(abstained, 0, index)
    out[...] = classes[safe] if len(classes) else abstain_label
    out[abstained] = abstain_label
    return out


def _resolve_procedure(interval, name: str = "interval") -> MultiClassProcedure:
    """A multi-class procedure from None, an exact alias or an object."""
    procedures = _interval_registry.PROCEDURES
    if interval is None:
        return _interval_registry.TopClass()
    if isinstance(interval, str):
        if interval in procedures:
            return procedures[interval]()
        valid = ", ".join(repr(a) for a in sorted(procedures))
        raise ValueError(
            f"The {name!r} parameter must be a MultiClassProcedure, None or a str "
            f"among {{{valid}}}. Got {interval!r} instead."
        )
    if not callable(getattr(interval, "bound", None)):
        raise ValueError(
            f"The {name!r} parameter must be a MultiClassProcedure (an object with "
            f"a 'bound' method), None or a str. Got {interval!r} instead."
        )
    return interval


def _check_radius_kind(radius) -> str:
    if isinstance(radius, str) and radius == "margin":
        return radius
    return check_kind(radius, "radius")


def _procedure_binomial(procedure):
    """The interval a procedure bounds with (None if it has no ``binomial``)."""
    if not hasattr(procedure, "binomial"):
        return None
    from .intervals._procedures import _resolve_binomial

    return _resolve_binomial(procedure)


def _procedure_guarantee(procedure) -> tuple[bool, str]:
    """Whether every bound of a procedure is guaranteed, and what decides it.

    The procedure's interval decides (its ``guaranteed`` attribute); a
    procedure may also declare ``guaranteed = False`` itself.  One without an
    interval (no ``binomial``) is guaranteed only if it declares
    ``guaranteed = True``.  The name is that of the interval, or of the
    procedure when the procedure decides.
    """
    binomial = _procedure_binomial(procedure)
    if binomial is None:
        return getattr(procedure, "guaranteed", False) is True, type(procedure).__name__
    if getattr(binomial, "guaranteed", False) is not True:
        return False, type(binomial).__name__
    if getattr(procedure, "guaranteed", True) is False:
        return False, type(procedure).__name__
    return True, type(binomial).__name__


def _warn_if_approximate(procedure, alpha: float, stacklevel: int) -> None:
    guaranteed, name = _procedure_guarantee(procedure)
    if not guaranteed:
        warnings.warn(
            f"The certificates use {name}, which is approximate (not "
            "guaranteed=True): the certificates are approximate, and their "
            "coverage is not guaranteed (a certificate can be wrong with "
            f"probability above alpha={alpha:g}). Use a guaranteed interval "
            "(ClopperPearson for counts; Hoeffding or EmpiricalBernstein for soft "
            "scores) for certificates; approximate intervals are for comparison.",
            ApproximateCertificateWarning,
            stacklevel=stacklevel,
        )


def _check_radius_method(method) -> str:
    if not isinstance(method, str) or method not in ("paper", "envelope"):
        raise ValueError(
            "The 'radius_method' parameter must be a str among {'envelope', "
            f"'paper'}}. Got {method!r} instead."
        )
    return method


def _logit_lipschitz_value(lipschitz) -> float | None:
    """The logits' l2 Lipschitz constant from a number or a guaranteed estimator.

    ``lipschitz`` means what it means in :class:`~smoothlearn.SmoothedClassifier`:
    a guaranteed bound on the constant of the logits, here those of the
    K-vector the simplex map sees.  A :class:`~smoothlearn.lipschitz.LipschitzEstimator`
    must be guaranteed and able to give its bound without the model (there is
    none here), as :class:`~smoothlearn.lipschitz.ConstantLipschitz` does.
    """
    if lipschitz is None:
        return None
    if isinstance(lipschitz, np.ndarray) and lipschitz.ndim == 0:
        lipschitz = lipschitz.item()
    if callable(getattr(lipschitz, "logit_constant", None)):
        name = type(lipschitz).__name__
        if getattr(lipschitz, "guaranteed", False) is not True:
            raise ValueError(
                "The 'lipschitz' parameter must be a guaranteed upper bound to enter "
                f"a certificate; {name} is an estimate (guaranteed=False) and "
                "cannot be used. Use SpectralProductLipschitz or ConstantLipschitz."
            )
        try:
            value = lipschitz.logit_constant(None)
        except Exception as exc:  # the estimator needs the model: say how to pass it
            raise ValueError(
                f"The 'lipschitz' parameter {lipschitz!r} cannot give its bound "
                f"without the model ({exc}). Certificates recomputed from stored "
                "statistics have no model: pass the number "
                "est.logit_constant(module) instead (times sqrt(2) for a binary "
                "module with one logit l, read as the logits (-l, l))."
            ) from exc
        value = np.asarray(value, dtype=np.float64)
        if value.size == 0 or np.any(np.isnan(value)) or not np.all(value > 0):
            raise ValueError(
                f"The 'lipschitz' estimator {name} returned {value!r}; a bound in "
                "(0, inf] is needed."
            )
        return float(np.max(value))
    if (
        isinstance(lipschitz, bool | np.bool_)
        or not isinstance(lipschitz, numbers.Real)
        or math.isnan(lipschitz)
        or not lipschitz > 0
    ):
        per_input = isinstance(lipschitz, np.ndarray | list | tuple)
        hint = (
            " Per-input constants are no longer accepted: the logits have one "
            "constant, and each input's class-score constant follows from its "
            "simplex map and temperature."
            if per_input
            else ""
        )
        raise ValueError(
            "The 'lipschitz' parameter must be None, a float in the range (0, inf] "
            "(a guaranteed l2 Lipschitz constant of the logits) or a "
            f"LipschitzEstimator with guaranteed=True. Got {lipschitz!r} "
            f"instead.{hint}"
        )
    return float(lipschitz)


def _derive_score_lipschitz(
    L_logits: float | None,
    n_inputs: int,
    n_classes: int,
    smoothing: str,
    score_map: NDArray | None,
    temperature: NDArray | None,
) -> NDArray[np.float64] | None:
    r"""The l2 Lipschitz constant of each input's [0, 1]-valued class score.

    ``simplex_map_constant(map, K) * t * L_logits`` per input, ``inf`` for
    hardmax rows and for hard counts (Cohen's radius); None when
    ``L_logits`` is None.  A finite constant with hard counts is refused, as
    is a finite constant for soft statistics whose map and temperature are
    unknown.
    """
    if L_logits is None:
        return None
    if smoothing == "hard":
        if math.isfinite(L_logits):
            raise ValueError(
                "The 'lipschitz' parameter must be None or inf with hard counts "
                "(smoothing='hard'): a Lipschitz-aware radius needs bounds on the "
                "mean of the same Lipschitz [0, 1]-valued score (smoothing='soft')."
            )
        return np.full(n_inputs, np.inf)
    if not math.isfinite(L_logits):
        return np.full(n_inputs, np.inf)
    if score_map is None or temperature is None:
        raise ValueError(
            "The 'lipschitz' parameter needs the simplex map and temperature of "
            "every input ('score_map' and 'temperature'): the Lipschitz constant "
            "of an input's class score is simplex_map_constant(map, K) * t * "
            "lipschitz, and these soft statistics do not say which map made them."
        )
    from .soft import simplex_map_constant

    const = np.empty(n_inputs, dtype=np.float64)
    for name in np.unique(score_map):  # a loop over at most three maps
        const[score_map == name] = simplex_map_constant(str(name), n_classes)
    # The order of certify's (map constant * t) * L_logits: the same float64.
    with np.errstate(over="ignore"):
        return const * temperature * L_logits


def _check_score_map(score_map, temperature, n_inputs: int):
    """The per-input simplex map and temperature (soft smoothing), checked."""
    from .soft import SIMPLEX_MAPS

    if score_map is not None:
        score_map = np.asarray(score_map, dtype=str)
        if score_map.shape != (n_inputs,) or not np.all(
            np.isin(score_map, SIMPLEX_MAPS)
        ):
            raise ValueError(
                f"The 'score_map' parameter must be None or an array of shape "
                f"({n_inputs},) of str among {set(SIMPLEX_MAPS)}. Got "
                f"{score_map!r} instead."
            )
    if temperature is not None:
        temperature = np.asarray(temperature, dtype=np.float64)
        if temperature.shape != (n_inputs,) or not np.all(
            np.isfinite(temperature) & (temperature > 0)
        ):
            raise ValueError(
                f"The 'temperature' parameter must be None or an array of shape "
                f"({n_inputs},) of floats in the range (0, inf). Got "
                f"{temperature!r} instead."
            )
    return score_map, temperature


def _legacy_score_lipschitz(score_lipschitz, score_map, smoothing):
    """Stored per-input score constants of a version-1 file, hardmax rows at inf."""
    L = np.array(score_lipschitz, dtype=np.float64)
    if smoothing == "hard":
        L[:] = np.inf
    elif score_map is not None:
        L[np.asarray(score_map) == "hardmax"] = np.inf
    return L


def _min_draws_to_certify(alpha: float) -> int:
    """Smallest ``n`` with ``alpha ** (1 / n) > 1/2``.

    With all ``n`` draws on one class, the one-sided Clopper-Pearson lower
    bound at ``alpha`` is ``alpha ** (1 / n)``; no radius is positive unless
    it exceeds 1/2, i.e. unless ``n > log2(1 / alpha)``.
    """
    return math.floor(math.log2(1.0 / alpha)) + 1


def _warn_if_n_too_small(n: int, alpha: float) -> None:
    n_min = _min_draws_to_certify(alpha)
    if n < n_min:
        warnings.warn(
            f"n={n} draws are too few for any certificate at alpha={alpha}: even "
            f"if all draws agree, the lower bound alpha**(1/n) does not exceed 1/2. "
            f"The smallest n that can certify at all is {n_min} (with "
            "Clopper-Pearson; other intervals need more).",
            UserWarning,
            stacklevel=3,
        )


# --------------------------------------------------------------------------
# Safe (pickle-free) encoding of strategy objects
# --------------------------------------------------------------------------
def _encode_value(value):
    if value is None or isinstance(value, bool | str):
        return value
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        return float(value)
    if isinstance(value, IntervalEstimator | MultiClassProcedure):
        return _encode_estimator(value)
    if isinstance(value, tuple | list) and all(
        v is None or isinstance(v, bool | str | numbers.Real) for v in value
    ):
        # e.g. BettingInterval(truncation=(0.75, 0.99)); restored as a tuple
        return {"tuple": [_encode_value(v) for v in value]}
    raise ValueError(
        f"Cannot store the parameter value {value!r} in a result file: only "
        "None, bool, int, float, str, tuples of those and smoothlearn interval "
        "objects are allowed."
    )


def _encode_estimator(estimator) -> dict:
    params = estimator.get_params(deep=False)
    return {
        "class": type(estimator).__name__,
        "params": {k: _encode_value(v) for k, v in sorted(params.items())},
    }


def _decode_value(value):
    if isinstance(value, dict) and set(value) == {"tuple"}:
        return tuple(value["tuple"])
    if isinstance(value, dict):
        return _decode_estimator(value)
    return value


def _decode_estimator(spec: dict):
    from . import intervals

    name = spec.get("class")
    cls = getattr(intervals, name, None) if name in intervals.__all__ else None
    if not (
        isinstance(cls, type)
        and issubclass(cls, IntervalEstimator | MultiClassProcedure)
    ):
        raise ValueError(
            f"Unknown interval class {name!r} in the result file; only the "
            "classes of smoothlearn.intervals can be loaded. Pass the procedure "
            "to recertify(interval=...) instead."
        )
    params = {k: _decode_value(v) for k, v in spec.get("params", {}).items()}
    return cls(**params)


def _json_scalar(value):
    if isinstance(value, np.generic):
        return value.item()
    return value


# --------------------------------------------------------------------------
# The result
# --------------------------------------------------------------------------
def _check_draws(value, name: str) -> int:
    """A number of Monte-Carlo draws: an int in [1, 2**53] (bools refused)."""
    if (
        isinstance(value, bool | np.bool_)
        or not isinstance(value, numbers.Integral)
        or not 1 <= value <= MAX_DRAWS
    ):
        raise ValueError(
            f"The {name!r} parameter must be an int in the range [1, 2**53]. "
            f"Got {value!r} instead."
        )
    return int(value)


def _check_betting_state(betting_state, n_inputs: int, n_classes: int, n: int):
    """Validate stored betting states; returns (plan, state) or None."""
    if betting_state is None:
        return None
    from ._betting_accumulator import unpack

    if not isinstance(betting_state, dict):
        raise ValueError(
            "The 'betting_state' parameter must be a dict of arrays (the "
            f"'betting_state' of a CertificationResult) or None. Got "
            f"{type(betting_state).__name__} instead."
        )
    plan, state = unpack(betting_state)
    if plan.members.shape[0] != n_inputs or plan.members.shape[2] != n_classes:
        raise ValueError(
            "The 'betting_state' parameter must hold one plan row per input and "
            f"{n_classes} classes. Got a plan of shape {plan.members.shape} for "
            f"{n_inputs} inputs instead."
        )
    fed = np.broadcast_to(np.asarray(state.n_draws), plan.valid.shape)[plan.valid]
    if state.n != n or np.any(fed != n):
        raise ValueError(
            f"The 'betting_state' parameter must hold states fed the n={n} "
            "estimation draws of every planned quantity."
        )
    return plan, state


class _StateView:
    """The stored states read for another plan's quantities (``index`` into them)."""

    def __init__(self, state, index):
        self.state, self.index = state, index

    def bound(self, alpha):
        return np.take_along_axis(self.state.bound(alpha), self.index, axis=1)


def _match_quantities(new, old) -> NDArray[np.intp] | None:
    """Where each quantity of plan ``new`` is in plan ``old`` (None: not all are).

    A quantity matches when it sums the same classes and has the same side
    (quantity 0 is the lower bound on the prediction, the others upper).
    """
    n_inputs, n_new, n_classes = new.members.shape
    n_old = old.members.shape[1]
    if old.members.shape[0] != n_inputs or old.members.shape[2] != n_classes:
        return None
    index = np.zeros((n_inputs, n_new), dtype=np.intp)
    same_side = (np.arange(n_new)[:, None] == 0) == (np.arange(n_old)[None, :] == 0)
    step = max(1, (1 << 24) // max(1, n_new * n_old * n_classes))
    for i0 in range(0, n_inputs, step):  # chunks bound memory
        i1 = min(n_inputs, i0 + step)
        eq = np.all(
            new.members[i0:i1, :, None, :] == old.members[i0:i1, None, :, :], axis=-1
        )
        eq &= old.valid[i0:i1, None, :] & same_side[None]
        if not np.all(eq.any(axis=-1) | ~new.valid[i0:i1]):
            return None
        index[i0:i1] = np.argmax(eq, axis=-1)
    return index


def _betting_bounds(procedure, selection, stored, alpha: float, kind: str):
    """The procedure's bounds from stored betting states, or None.

    None when there are no states, when the procedure's interval is not a
    :class:`~smoothlearn.intervals.BettingInterval` with the states'
    truncations, when the procedure has no ``plan``, or when one of the
    quantities it bounds (on its side) was not followed by a state.
    """
    from .intervals import BettingInterval

    if stored is None:
        return None
    old_plan, state = stored
    binomial = _procedure_binomial(procedure)
    if not isinstance(binomial, BettingInterval):
        return None
    if not np.array_equal(binomial._caps(), state._caps):
        return None
    proc_kind = "multi" if kind == "margin" else kind
    try:
        plan = procedure.plan(selection, kind=proc_kind)
    except NotImplementedError:
        return None
    if not np.array_equal(plan.prediction, old_plan.prediction):
        return None
    index = _match_quantities(plan, old_plan)
    if index is None:
        return None
    return procedure.bound_from_states(
        plan, _StateView(state, index), alpha, kind=proc_kind
    )


@dataclass(frozen=True, eq=False)
class CertificationResult:
    r"""Certificates of many inputs, with the statistics they were computed from.

    Returned by :meth:`SmoothedClassifier.certify
    <smoothlearn.SmoothedClassifier.certify>`.  With probability at least
    ``1 - alpha`` (over the estimation noise of one input), a non-abstained
    input's smoothed prediction is constant within ``radius`` of it.

    Attributes
    ----------
    prediction : ndarray of shape (n_inputs,)
        Predicted labels; ``abstain_label`` where the procedure abstained.
    radius : ndarray of shape (n_inputs,)
        Certified l2 radius, 0 where abstained.
    pA_lower : ndarray of shape (n_inputs,)
        Lower confidence bound on the smoothed probability of the prediction.
    pB_upper : ndarray of shape (n_inputs,)
        Upper confidence bound on that of every other class
        (``1 - pA_lower`` for the mono radius).
    abstained : ndarray of shape (n_inputs,), dtype bool
        Where no certificate is given.
    n_bounds : ndarray of shape (n_inputs,), dtype int
        Number of one-sided bounds ``alpha`` was split over.
    selection : ndarray of shape (n_inputs, n_classes)
        Selection statistics (class counts over the ``n0`` selection draws).
    estimation : ndarray of shape (n_inputs, n_classes)
        Estimation statistics over the ``n`` independent estimation draws
        (counts for ``smoothing="hard"``, sums of class scores for soft).
    estimation_sq : ndarray of shape (n_inputs, n_classes)
        Sums of squared class scores (equal to ``estimation`` for counts).
    n0, n : int
        Number of selection and estimation draws per input.
    sigma : float
        Standard deviation of the smoothing noise.
    alpha : float
        Total failure probability of each input's certificate.
    interval : MultiClassProcedure
        The multi-class procedure that produced the bounds.
    kind : {"mono", "multi"}
        The radius formula (the ``radius`` parameter of the classifier).
    smoothing : {"hard", "soft"}
        What the statistics count.
    classes : ndarray of shape (n_classes,)
        Class labels; column ``c`` of the statistics is ``classes[c]``.
    abstain_label : object
        The label in ``prediction`` that marks an abstention.
    lipschitz : float or None
        The guaranteed l2 Lipschitz constant of the logits the certificates
        used, as given (the ``lipschitz`` parameter of
        :class:`~smoothlearn.SmoothedClassifier`, :meth:`from_statistics` or
        :meth:`recertify`): the constant of the K-vector of logits ``z`` that
        the simplex map sees (for a binary module with one logit ``l``, read
        as ``(-l, l)``, ``sqrt(2)`` times the constant of ``l``).  None: no
        Lipschitz-aware radius (also for files of format 1, which stored only
        ``score_lipschitz``).
    score_lipschitz : ndarray of shape (n_inputs,) or None
        l2 Lipschitz constant of each input's [0, 1]-valued class score used
        for its radius: ``simplex_map_constant(score_map, K) * temperature *
        lipschitz`` (:func:`smoothlearn.soft.simplex_map_constant`), ``inf``
        on hardmax rows and with hard counts (Cohen's radius); None when
        ``lipschitz`` is None.
    score_map : ndarray of shape (n_inputs,) of str, or None
        Simplex map of each input (soft smoothing; None for hard).
    temperature : ndarray of shape (n_inputs,) or None
        Inverse temperature of each input's simplex map (None for hard).
    radius_method : {"paper", "envelope"}
        Form of the Lipschitz-aware radius (used where ``score_lipschitz`` is
        finite).
    guaranteed : bool
        Whether every bound behind the certificates is guaranteed: False
        when the procedure's interval is approximate (``guaranteed=False``:
        :class:`~smoothlearn.intervals.Wilson`,
        :class:`~smoothlearn.intervals.AgrestiCoull`,
        :class:`~smoothlearn.intervals.Jeffreys`), whose certificates may be
        wrong with probability above ``alpha``.  Such results are labelled
        "approximate" in :meth:`to_frame`, the command line's tables and
        :mod:`smoothlearn.plotting`, and computing them warns
        (:class:`~smoothlearn.ApproximateCertificateWarning`).  It follows
        from ``interval`` (a procedure without an interval is guaranteed only
        if it declares ``guaranteed = True``), so it survives :meth:`save` /
        :meth:`load` and follows :meth:`recertify`.
    betting_state : dict of str to ndarray, or None
        Soft results certified with a
        :class:`~smoothlearn.intervals.BettingInterval`: the betting states
        of the estimation draws of every quantity the procedure's
        :meth:`~smoothlearn.intervals.MultiClassProcedure.plan` bounds,
        packed with the plan as plain arrays with a leading input axis
        (keys ``plan_prediction``, ``plan_members``, ``plan_valid``,
        ``plan_n_bounds``, ``plan_kind`` and the
        :meth:`~smoothlearn.intervals.BettingState.to_dict` arrays).  The
        bounds come from them (:attr:`bounds_from_betting_state`) whenever
        the procedure bounds quantities they followed; :meth:`recertify`
        reads them at any ``alpha``.  None otherwise.

    Notes
    -----
    Cohen's radii (Theorem 1 of [1]_):

    .. math::

        R_{multi} = \frac{\sigma}{2}\left(\Phi^{-1}(\underline{p_A})
                    - \Phi^{-1}(\overline{p_B})\right), \qquad
        R_{mono} = \sigma\,\Phi^{-1}(\underline{p_A}).

    References
    ----------
    .. [1] Cohen, Rosenfeld & Kolter, "Certified Adversarial Robustness via
       Randomized Smoothing", ICML 2019.
    .. [2] Delattre et al., "Bridging the Theoretical Gap in Randomized
       Smoothing", AISTATS 2025.

    Examples
    --------
    >>> import numpy as np
    >>> from smoothlearn import CertificationResult
    >>> res = CertificationResult.from_statistics(
    ...     selection=[[95, 5, 0], [40, 35, 25]],
    ...     estimation=[[99_000, 900, 100], [41_000, 35_000, 24_000]],
    ...     n0=100, n=100_000, sigma=0.25, alpha=0.001, classes=[0, 1, 2])
    >>> res.prediction
    array([ 0, -1])
    >>> res.radius.round(4)
    array([0.5725, 0.    ])
    >>> res.recertify(interval="cpm", radius="multi").radius.round(4)
    array([0.5763, 0.0163])
    """

    prediction: NDArray
    radius: NDArray[np.float64]
    pA_lower: NDArray[np.float64]
    pB_upper: NDArray[np.float64]
    abstained: NDArray[np.bool_]
    n_bounds: NDArray[np.int64]
    selection: NDArray
    estimation: NDArray
    estimation_sq: NDArray
    n0: int
    n: int
    sigma: float
    alpha: float
    interval: MultiClassProcedure
    kind: str
    smoothing: str
    classes: NDArray
    abstain_label: object = -1
    lipschitz: float | None = None
    score_map: NDArray | None = None
    temperature: NDArray[np.float64] | None = None
    radius_method: str = "paper"
    score_lipschitz: NDArray[np.float64] | None = None
    betting_state: dict | None = None

    # The kind of result a file holds (meta["result_type"]); load() picks the
    # class of a file by it, through _RESULT_TYPES, so this module never
    # imports its subclasses.
    _result_type: ClassVar[str] = "fixed"

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        _RESULT_TYPES[cls._result_type] = cls

    # ------------------------------------------------------------------
    @classmethod
    def from_statistics(
        cls,
        *,
        selection,
        estimation,
        n0: int,
        n: int,
        sigma: float,
        alpha: float,
        classes=None,
        estimation_sq=None,
        interval=None,
        radius: str = "mono",
        smoothing: str = "hard",
        abstain_label="auto",
        lipschitz=None,
        radius_method: str = "paper",
        score_map=None,
        temperature=None,
        betting_state=None,
        _warn: bool = True,
        _stored_score_lipschitz=None,
        _stacklevel: int = 2,
    ) -> CertificationResult:
        """Certify from stored statistics: bounds, then radii.

        Parameters
        ----------
        selection : array-like of shape (n_inputs, n_classes)
            Selection statistics over ``n0`` draws.
        estimation : array-like of shape (n_inputs, n_classes)
            Independent estimation statistics over ``n`` draws.
        n0, n : int
            Number of selection and estimation draws per input.
        sigma : float
            Standard deviation of the noise, > 0.
        alpha : float
            Total failure probability of each input's certificate, in (0, 1).
        classes : array-like of shape (n_classes,), default=None
            Class labels; None means ``0 .. n_classes - 1``.
        estimation_sq : array-like of shape (n_inputs, n_classes), default=None
            Sums of squared scores (soft smoothing); None for counts.
        interval : MultiClassProcedure or str, default=None
            The multi-class procedure; None is Cohen's
            :class:`~smoothlearn.intervals.TopClass`.
        radius : {"mono", "multi", "margin"}, default="mono"
            The radius formula; ``"margin"`` (soft smoothing only) is
            :func:`~smoothlearn.radius.margin_radius` on multi-class bounds.
        smoothing : {"hard", "soft"}, default="hard"
            What the statistics count.
        abstain_label : object, default="auto"
            The label marking abstentions; "auto" applies the rule of
            :class:`~smoothlearn.SmoothedClassifier`.
        lipschitz : float or LipschitzEstimator, default=None
            What it means in :class:`~smoothlearn.SmoothedClassifier`: a
            guaranteed bound on the l2 Lipschitz constant of the *logits*, a
            float in (0, inf] or a
            :class:`~smoothlearn.lipschitz.LipschitzEstimator` with
            ``guaranteed=True`` that gives its bound without the model (e.g.
            :class:`~smoothlearn.lipschitz.ConstantLipschitz`; for one that
            needs the module, pass ``est.logit_constant(module)``).  It is the
            constant of the K-vector of logits the simplex map sees: for a
            binary module with one logit ``l`` (read as ``(-l, l)``), ``sqrt(2)``
            times the constant of ``l``.  Each input's class score then has
            the constant ``simplex_map_constant(score_map, K) * temperature *
            lipschitz`` (``inf`` on hardmax rows), and the radius is
            :func:`~smoothlearn.radius.lipschitz_radius` with it.  Soft
            smoothing only (a finite value with hard counts raises), and it
            needs ``score_map`` and ``temperature``; ``inf`` gives Cohen's
            radius.  None: Cohen's radius.
        radius_method : {"paper", "envelope"}, default="paper"
            Form of the Lipschitz-aware radius.
        score_map, temperature : array-like of shape (n_inputs,), default=None
            Simplex map (``"softmax"``, ``"sparsemax"`` or ``"hardmax"``) and
            inverse temperature of each input (soft smoothing): they give the
            Lipschitz constant of each input's class score.
        betting_state : dict of str to ndarray, default=None
            Soft smoothing with a
            :class:`~smoothlearn.intervals.BettingInterval`: the betting
            states of the same ``n`` estimation draws, packed with their plan
            (the :attr:`betting_state` of a result, or
            ``BettingAccumulator.result()``).  The bounds are read from them
            when the procedure's plan on ``selection`` bounds quantities they
            followed, on the same side, with the same truncations; otherwise
            (or with another interval) they come from the sufficient
            statistics (for a betting interval, its order-free bound).
            Stored in the result either way.

        Returns
        -------
        CertificationResult
        """
        from .radius import _check_sigma

        procedure = _resolve_procedure(interval)
        kind = _check_radius_kind(radius)
        alpha = check_scalar_alpha(alpha)
        sigma_f = float(_check_sigma(sigma))
        if smoothing not in ("hard", "soft"):
            raise ValueError(
                "The 'smoothing' parameter must be a str among {'hard', 'soft'}. "
                f"Got {smoothing!r} instead."
            )
        radius_method = _check_radius_method(radius_method)
        n = _check_draws(n, "n")
        n0 = _check_draws(n0, "n0")
        if kind == "margin" and smoothing != "soft":
            raise ValueError(
                "The 'radius' parameter 'margin' needs smoothing='soft' (bounds on "
                "the means of [0, 1]-valued scores)."
            )
        selection = np.asarray(selection)
        estimation = np.asarray(estimation)
        if estimation.ndim != 2 or selection.shape != estimation.shape:
            raise ValueError(
                "The 'selection' and 'estimation' statistics must be 2-D arrays of "
                f"the same shape (n_inputs, n_classes). Got {selection.shape} and "
                f"{estimation.shape}."
            )
        if estimation_sq is None:
            estimation_sq = estimation
        estimation_sq = np.asarray(estimation_sq)
        if classes is None:
            classes = np.arange(estimation.shape[1])
        classes = np.asarray(classes)
        if classes.shape != (estimation.shape[1],):
            raise ValueError(
                f"The 'classes' parameter must have shape ({estimation.shape[1]},), "
                f"one label per column of the statistics. Got {classes.shape}."
            )
        if isinstance(abstain_label, str) and abstain_label == "auto":
            abstain_label = _abstain_label(classes)
        if _warn:
            _warn_if_n_too_small(int(n), alpha)

        n_inputs = estimation.shape[0]
        score_map, temperature = _check_score_map(score_map, temperature, n_inputs)
        L_logits = _logit_lipschitz_value(lipschitz)
        if _stored_score_lipschitz is not None and L_logits is None:
            # recertify of a format-1 file: its stored per-input score constants
            L = _legacy_score_lipschitz(_stored_score_lipschitz, score_map, smoothing)
        else:
            L = _derive_score_lipschitz(
                L_logits, n_inputs, estimation.shape[1], smoothing, score_map,
                temperature,
            )  # fmt: skip
        if betting_state is not None and smoothing != "soft":
            raise ValueError(
                "The 'betting_state' parameter needs smoothing='soft' (betting "
                "states of [0, 1]-valued scores)."
            )
        stored = _check_betting_state(
            betting_state, n_inputs, estimation.shape[1], int(n)
        )
        if smoothing == "soft" and getattr(
            _procedure_binomial(procedure), "requires_counts", False
        ):
            raise ValueError(
                f"The 'interval' procedure {procedure!r} uses an interval that "
                "requires integer counts, but smoothing='soft' averages scores: use "
                "a bounded-mean interval, e.g. TopClass(binomial=EmpiricalBernstein())."
            )
        cert = certify_statistics(
            procedure,
            selection,
            estimation,
            int(n),
            alpha,
            sigma=sigma_f,
            kind=kind,
            estimation_sq=None if smoothing == "hard" else estimation_sq,
            score_lipschitz=L,
            radius_method=radius_method,
            bounds=_betting_bounds(procedure, selection, stored, alpha, kind),
        )
        abst = cert.abstained
        # once per call, pointing at the caller of from_statistics, recertify
        # or certify (_stacklevel counts the frames above this one)
        _warn_if_approximate(procedure, alpha, _stacklevel + 1)
        return cls(
            prediction=_labels(classes, cert.prediction, abst, abstain_label),
            radius=cert.radius,
            pA_lower=cert.pA_lower,
            pB_upper=cert.pB_upper,
            abstained=abst,
            n_bounds=cert.n_bounds,
            selection=selection,
            estimation=estimation,
            estimation_sq=estimation_sq,
            n0=int(n0),
            n=int(n),
            sigma=sigma_f,
            alpha=alpha,
            interval=procedure,
            kind=kind,
            smoothing=smoothing,
            classes=classes,
            abstain_label=abstain_label,
            lipschitz=L_logits,
            score_map=score_map,
            temperature=temperature,
            radius_method=radius_method,
            score_lipschitz=L,
            betting_state=None
            if betting_state is None
            else {k: np.asarray(v) for k, v in betting_state.items()},
        )

    # ------------------------------------------------------------------
    @property
    def bounds_from_betting_state(self) -> bool:
        """Whether the bounds were read from :attr:`betting_state`.

        True when the procedure's interval is a
        :class:`~smoothlearn.intervals.BettingInterval` with the states'
        truncations and every quantity its plan bounds was followed by a
        state on the same side; False when the bounds come from the
        sufficient statistics (for a betting interval, the order-free bound).
        """
        stored = _check_betting_state(
            self.betting_state, self.n_inputs, self.estimation.shape[1], self.n
        )
        proc_kind = "multi" if self.kind == "margin" else self.kind
        with np.errstate(all="ignore"):
            b = _betting_bounds(
                self.interval, self.selection, stored, self.alpha, proc_kind
            )
        return b is not None

    @property
    def n_inputs(self) -> int:
        """Number of certified inputs."""
        return int(self.radius.shape[0])

    def __len__(self) -> int:
        return self.n_inputs

    @property
    def guaranteed(self) -> bool:
        """Whether every bound behind the certificates is guaranteed."""
        return _procedure_guarantee(self.interval)[0]

    @property
    def certified(self) -> NDArray[np.bool_]:
        """Where a certificate is given (the complement of ``abstained``)."""
        return ~self.abstained

    def __repr__(self) -> str:
        return (
            f"CertificationResult(n_inputs={self.n_inputs}, "
            f"certified={int(self.certified.sum())}, sigma={self.sigma}, "
            f"alpha={self.alpha}, interval={self.interval!r}, "
            f"radius={self.kind!r}, n0={self.n0}, n={self.n}"
            + ("" if self.guaranteed else ", guaranteed=False (approximate)")
            + ")"
        )

    def __eq__(self, other) -> bool:
        if not isinstance(other, CertificationResult):
            return NotImplemented
        for f in fields(self):
            a, b = getattr(self, f.name), getattr(other, f.name)
            if f.name == "interval":
                if _encode_estimator(a) != _encode_estimator(b):
                    return False
            elif isinstance(a, dict) or isinstance(b, dict):
                if not (isinstance(a, dict) and isinstance(b, dict)) or set(a) != set(
                    b
                ):
                    return False
                if not all(np.array_equal(a[k], b[k]) for k in a):
                    return False
            elif isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
                a, b = np.asarray(a), np.asarray(b)
                if a.shape != b.shape or not np.all(
                    (a == b) | ((a != a) & (b != b))  # NaN-aware
                ):
                    return False
            elif a != b:
                return False
        return True

    __hash__ = None

    # ------------------------------------------------------------------
    def recertify(
        self, alpha=None, interval=None, radius=None, lipschitz=None, radius_method=None
    ) -> CertificationResult:
        r"""Recompute the certificates from the stored statistics, without the model.

        The result equals what :meth:`SmoothedClassifier.certify
        <smoothlearn.SmoothedClassifier.certify>` returns with the same
        ``random_state`` and the new parameters, since the noise does not
        depend on them.

        Parameters
        ----------
        alpha : float, default=None
            Total failure probability of each certificate; None keeps it.
        interval : MultiClassProcedure or str, default=None
            The multi-class procedure; None keeps it.
        radius : {"mono", "multi", "margin"}, default=None
            The radius formula; None keeps it.
        lipschitz : float or LipschitzEstimator, default=None
            What it means in :class:`~smoothlearn.SmoothedClassifier`: a
            guaranteed bound on the l2 Lipschitz constant of the model's
            *logits* (a float in (0, inf], or a
            :class:`~smoothlearn.lipschitz.LipschitzEstimator` with
            ``guaranteed=True`` that needs no model, such as
            :class:`~smoothlearn.lipschitz.ConstantLipschitz`; for one that
            needs the module, pass ``est.logit_constant(module)``).  It is
            the constant of the K-vector of logits the simplex map sees, the
            number stored in :attr:`lipschitz` by :meth:`certify
            <smoothlearn.SmoothedClassifier.certify>`: for a binary module
            with one logit ``l`` (read as ``(-l, l)``), ``sqrt(2)`` times the
            constant of ``l``.  Each input's class-score constant follows from
            its stored simplex map and temperature (``inf`` on hardmax rows:
            Cohen's radius there), and is stored in :attr:`score_lipschitz`.
            ``inf`` gives Cohen's radius everywhere; a finite value is refused
            for hard counts and for soft results without a stored
            ``score_map`` and ``temperature``.  None keeps the stored constant.
        radius_method : {"paper", "envelope"}, default=None
            Form of the Lipschitz-aware radius; None keeps it.

        Returns
        -------
        CertificationResult

        Notes
        -----
        The class, simplex map and temperature stay those chosen on the
        selection draws at :meth:`certify` time; they depend on the selection
        draws only, so bounds at a new ``alpha`` or with a new procedure are
        still valid.  A new Lipschitz constant changes only the radius
        formula: the class score of an input whose simplex map is hardmax is
        a step function, with an infinite constant whatever the logits'
        constant, so its radius stays Cohen's.

        Each recertification holds at its own ``alpha``.  Keeping, per input,
        the best of several recertifications :math:`C_1, \dots, C_J` of the
        same statistics (candidate :math:`j` failing on an event
        :math:`F_j` with :math:`P(F_j) \le \alpha_j`) is a selection:

        .. math::

            P(C_{\hat\jmath}\ \text{wrong}) \le P\Big(\bigcup_j F_j\Big)
            \le \sum_j \alpha_j .

        It is free (:math:`\max_j \alpha_j`) when the failure events are
        nested tails of the same counts: the same bounds read with another
        radius kind, the same procedure with another guaranteed interval
        monotone in the count at the same per-bound levels, or the same
        procedure at several ``alpha`` (report the largest).  Otherwise
        (another procedure or split of ``alpha``, soft intervals that read
        the sum of squares, repeated runs on fresh noise) certify each of the
        ``J`` candidates at ``alpha / J``.  See :ref:`soundness-recertify`.

        *Betting states.*  A soft result certified with a
        :class:`~smoothlearn.intervals.BettingInterval` (the soft default)
        keeps, in :attr:`betting_state`, the betting capital of the
        estimation draws of every quantity its procedure planned on the
        selection draws (the predicted class; with ``radius="multi"`` also
        Bonferroni's other classes or CPM's buckets).  Bets are predictable,
        so the capital gives a valid bound at every level: a new ``alpha``,
        ``radius`` (``"mono"`` reads quantity 0 of any plan),
        ``lipschitz`` or ``radius_method``, or another procedure whose plan
        bounds only quantities that were followed (e.g. TopClass from a
        Bonferroni result), is read from the states
        (:attr:`bounds_from_betting_state` is True), without the model.
        Where the states cannot serve (``radius="multi"`` from a
        ``"mono"`` result with Bonferroni or CPM, CPM from Bonferroni or the
        reverse when the buckets differ, a betting interval with other
        truncations, a procedure without ``plan``), the bounds come from the
        stored sums: for a betting interval its order-free bound (valid,
        looser), for another interval that interval.  The tightest
        (order-dependent) bounds for such a change need the model again:
        certify with the new procedure.  The states are kept in the result
        either way.

        Examples
        --------
        Two inputs certified with soft smoothing, one with softmax at ``t =
        2``, one with hardmax; logits that are 1-Lipschitz give the softmax
        row the score constant ``sqrt(2)/4 * 2 * 1`` and the hardmax row
        ``inf``:

        >>> from smoothlearn import CertificationResult
        >>> from smoothlearn.intervals import EmpiricalBernstein, TopClass
        >>> res = CertificationResult.from_statistics(
        ...     selection=[[9.0, 1.0], [10.0, 0.0]],
        ...     estimation=[[900.0, 100.0], [1000.0, 0.0]],
        ...     estimation_sq=[[820.0, 20.0], [1000.0, 0.0]],
        ...     n0=10, n=1000, sigma=0.5, alpha=0.001, smoothing="soft",
        ...     interval=TopClass(EmpiricalBernstein()),
        ...     score_map=["softmax", "hardmax"], temperature=[2.0, 1.0])
        >>> lip = res.recertify(lipschitz=1.0)
        >>> lip.lipschitz, lip.score_lipschitz.round(4)
        (1.0, array([0.7071,    inf]))
        >>> bool(lip.radius[0] > res.radius[0]), bool(lip.radius[1] == res.radius[1])
        (True, True)
        """
        stored = None
        if lipschitz is None and self.lipschitz is None:
            # format-1 files kept only the per-input constants of the scores
            stored = self.score_lipschitz
        return type(self).from_statistics(
            selection=self.selection,
            estimation=self.estimation,
            estimation_sq=self.estimation_sq,
            n0=self.n0,
            n=self.n,
            sigma=self.sigma,
            alpha=self.alpha if alpha is None else alpha,
            classes=self.classes,
            interval=self.interval if interval is None else interval,
            radius=self.kind if radius is None else radius,
            smoothing=self.smoothing,
            abstain_label=self.abstain_label,
            lipschitz=self.lipschitz if lipschitz is None else lipschitz,
            radius_method=self.radius_method
            if radius_method is None
            else radius_method,
            score_map=self.score_map,
            temperature=self.temperature,
            betting_state=self.betting_state,
            _stored_score_lipschitz=stored,
            _stacklevel=3,
        )

    # ------------------------------------------------------------------
    def save(self, path: str | PathLike) -> None:
        """Save to a ``.npz`` file that :meth:`load` reads back without pickle.

        Parameters
        ----------
        path : str or path-like
            Destination; numpy appends ``.npz`` when the name lacks it.

        Notes
        -----
        Labels are stored as a plain numpy array: object-dtype labels must be
        all strings (they come back as a unicode array).  The procedure is
        stored as its class name and parameters (JSON), and rebuilt only from
        the classes of :mod:`smoothlearn.intervals`.
        """
        meta, arrays = self._npz_payload()
        np.savez(path, meta=np.array(json.dumps(meta)), **arrays)

    def _npz_payload(self) -> tuple[dict, dict]:
        """The JSON record and the arrays that :meth:`save` writes."""
        classes = _plain_array(self.classes, "classes")
        meta = {
            "format_version": _FORMAT_VERSION,
            "result_type": self._result_type,
            "n0": self.n0,
            "n": self.n,
            "sigma": self.sigma,
            "alpha": self.alpha,
            "interval": _encode_estimator(self.interval),
            "kind": self.kind,
            "smoothing": self.smoothing,
            "abstain_label": _json_scalar(self.abstain_label),
            "radius_method": self.radius_method,
            "lipschitz": self.lipschitz,
            "guaranteed": self.guaranteed,
        }
        optional = {
            name: np.asarray(value)
            for name, value in (
                ("score_lipschitz", self.score_lipschitz),
                ("score_map", self.score_map),
                ("temperature", self.temperature),
            )
            if value is not None
        }
        index = _class_index(self.prediction, self.classes, self.abstained)
        arrays = dict(
            classes=classes,
            prediction_index=index,
            radius=self.radius,
            pA_lower=self.pA_lower,
            pB_upper=self.pB_upper,
            abstained=self.abstained,
            n_bounds=self.n_bounds,
            selection=self.selection,
            estimation=self.estimation,
            estimation_sq=self.estimation_sq,
            **optional,
        )
        if self.betting_state is not None:
            arrays.update(
                {
                    _BETTING_PREFIX + k: np.asarray(v)
                    for k, v in self.betting_state.items()
                }
            )
        return meta, arrays

    @classmethod
    def load(cls, path: str | PathLike) -> CertificationResult:
        """Load a result written by :meth:`save` (``allow_pickle=False``).

        Parameters
        ----------
        path : str or path-like

        Returns
        -------
        CertificationResult
            A :class:`~smoothlearn.sequential.SequentialCertificationResult`
            when the file holds one (its inputs used different numbers of
            draws, which a plain result cannot represent).
        """
        from ._checkpoint import load_npz

        arrays = load_npz(path, what="result file")
        try:
            meta = json.loads(str(arrays.pop("meta")))
            version = meta.get("format_version")
        except (KeyError, ValueError, AttributeError) as exc:
            raise ValueError(
                f"{os.fspath(path)!r} is not a smoothlearn result file (no "
                "readable 'meta' record)."
            ) from exc
        if version not in _READABLE_VERSIONS:
            raise ValueError(
                f"Unsupported result file format {version!r} in {os.fspath(path)!r}."
            )
        missing = {"classes", "prediction_index", "abstained", "radius"} - set(arrays)
        if missing:
            raise ValueError(
                f"{os.fspath(path)!r} is not a complete smoothlearn result file "
                f"(missing {sorted(missing)})."
            )
        result_type = meta.get("result_type", "fixed")
        target = _RESULT_TYPES.get(result_type)
        if target is None:
            raise ValueError(
                f"{os.fspath(path)!r} holds a result of unknown type {result_type!r}."
            )
        if cls is CertificationResult:
            # e.g. a sequential file: a plain result would recertify it with
            # n_max draws for every input.
            cls = target
        elif cls is not target:
            raise ValueError(
                f"{os.fspath(path)!r} holds a "
                f"{'fixed-n' if result_type == 'fixed' else result_type} result; "
                f"load it with {target.__name__}.load or CertificationResult.load."
            )
        fields = cls._fields_from_npz(path, arrays, meta)
        result = cls(**fields)
        stored = meta.get("guaranteed")
        if version >= 2 and stored is not result.guaranteed:
            raise ValueError(
                f"{os.fspath(path)!r} is an inconsistent result file: it says "
                f"guaranteed={stored!r}, but its interval "
                f"{_procedure_guarantee(result.interval)[1]} implies "
                f"guaranteed={result.guaranteed}."
            )
        return result

    @classmethod
    def _fields_from_npz(cls, path, arrays: dict, meta: dict) -> dict:
        """Constructor arguments from the arrays and JSON record of a file."""
        classes = arrays.pop("classes")
        index = arrays.pop("prediction_index")
        abstained = arrays["abstained"]
        abstain_label = meta["abstain_label"]
        if meta.get("format_version") == 1:
            # format 1: 'lipschitz' held the per-input class-score constants
            lipschitz, score_lipschitz = None, arrays.get("lipschitz")
        else:
            lipschitz, score_lipschitz = (
                meta.get("lipschitz"),
                arrays.get("score_lipschitz"),
            )
            _check_stored_lipschitz(path, lipschitz, score_lipschitz, meta, arrays)
        return dict(
            prediction=_labels(classes, index, abstained, abstain_label),
            radius=arrays["radius"],
            pA_lower=arrays["pA_lower"],
            pB_upper=arrays["pB_upper"],
            abstained=abstained,
            n_bounds=arrays["n_bounds"],
            selection=arrays["selection"],
            estimation=arrays["estimation"],
            estimation_sq=arrays["estimation_sq"],
            n0=int(meta["n0"]),
            n=int(meta["n"]),
            sigma=float(meta["sigma"]),
            alpha=float(meta["alpha"]),
            interval=_decode_estimator(meta["interval"]),
            kind=meta["kind"],
            smoothing=meta["smoothing"],
            classes=classes,
            abstain_label=abstain_label,
            lipschitz=lipschitz,
            score_map=arrays.get("score_map"),
            temperature=arrays.get("temperature"),
            radius_method=meta.get("radius_method", "paper"),
            score_lipschitz=score_lipschitz,
            betting_state={
                k[len(_BETTING_PREFIX) :]: v
                for k, v in arrays.items()
                if k.startswith(_BETTING_PREFIX)
            }
            or None,
        )

    def to_frame(self):
        """One row per input: the certificate, its bounds and whether it is guaranteed.

        Columns ``prediction``, ``radius``, ``pA_lower``, ``pB_upper``,
        ``abstained``, ``n_bounds`` and ``guaranteed`` (:attr:`guaranteed` on
        every row: False marks an approximate certificate, from an interval
        with ``guaranteed=False``).

        Soft results add the columns ``score_map`` and ``temperature``; with
        a Lipschitz-aware radius, ``lipschitz`` (the logits' constant, the
        same on every row; absent for format-1 files) and ``score_lipschitz``
        (each input's class-score constant, ``inf`` on hardmax rows).

        Returns
        -------
        pandas.DataFrame
        """
        try:
            import pandas as pd
        except ImportError as exc:  # pragma: no cover - pandas is a test extra
            raise ImportError(
                "CertificationResult.to_frame needs pandas: "
                "pip install 'smoothlearn[pandas]'."
            ) from exc
        frame = pd.DataFrame(
            {
                "prediction": self.prediction,
                "radius": self.radius,
                "pA_lower": self.pA_lower,
                "pB_upper": self.pB_upper,
                "abstained": self.abstained,
                "n_bounds": self.n_bounds,
                "guaranteed": np.full(self.n_inputs, self.guaranteed),
            }
        )
        # soft smoothing: each input's simplex map, temperature and constants
        for name in ("score_map", "temperature", "lipschitz", "score_lipschitz"):
            value = getattr(self, name)
            if value is not None:
                frame[name] = value
        return frame


#: Result classes by the ``result_type`` of their files (see ``load``).
_RESULT_TYPES: dict[str, type] = {"fixed": CertificationResult}


def _check_stored_lipschitz(path, lipschitz, score_lipschitz, meta, arrays) -> None:
    """Refuse a file whose score constants do not follow from its logits' constant."""
    where = os.fspath(path)
    if lipschitz is None:
        if score_lipschitz is not None:
            raise ValueError(
                f"{where!r} is an inconsistent result file: per-input class-score "
                "constants without the logits' constant they follow from."
            )
        return
    try:
        n_inputs = arrays["radius"].shape[0]
        expected = _derive_score_lipschitz(
            _logit_lipschitz_value(lipschitz),
            n_inputs,
            arrays["estimation"].shape[1],
            meta["smoothing"],
            *_check_score_map(
                arrays.get("score_map"), arrays.get("temperature"), n_inputs
            ),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(
            f"{where!r} is an inconsistent result file: its Lipschitz constant "
            f"{lipschitz!r} cannot give its inputs' class-score constants ({exc})."
        ) from exc
    if score_lipschitz is None or not np.array_equal(score_lipschitz, expected):
        raise ValueError(
            f"{where!r} is an inconsistent result file: its per-input class-score "
            "constants ('score_lipschitz') are not simplex_map_constant * "
            f"temperature * lipschitz for lipschitz={lipschitz!r}."
        )


def _plain_array(values, name: str) -> NDArray:
    arr = np.asarray(values)
    if arr.dtype == object:
        items = arr.tolist()
        if not all(isinstance(v, str) for v in items):
            raise ValueError(
                f"Cannot save {name!r} of object dtype unless every label is a str."
            )
        arr = np.asarray(items, dtype=str)
    return arr


def _class_index(prediction, classes, abstained) -> NDArray[np.int64]:
    """Column index of each predicted label, -1 where abstained."""
    classes = np.asarray(classes)
    keep = ~np.asarray(abstained, dtype=bool)
    out = np.full(len(prediction), -1, dtype=np.int64)
    if keep.any():
        sorter = np.argsort(classes, kind="stable")
        labels = np.asarray(prediction)[keep].astype(classes.dtype)
        pos = np.searchsorted(classes, labels, sorter=sorter)
        out[keep] = sorter[np.minimum(pos, len(classes) - 1)]
    return out
