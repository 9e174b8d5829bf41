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

from ._validation import MAX_DRAWS, check_kind, check_scalar_alpha
from .intervals import IntervalEstimator, MultiClassProcedure
from .intervals import _registry as _interval_registry
from .radius import abstained as _abstained
from .radius import gaussian_radius

__all__ = ["CertificationResult"]

_FORMAT_VERSION = 1


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


def _check_radius_method(method) -> str:
    if not isinstance(method, str) or method not in ("paper", "envelope"):
        raise ValueError(
            "The 'radius_method' parameter must be a str among {'envelope', "
            f"'paper'}}. Got {method!r} instead."
        )
    return method


def _check_score_lipschitz(lipschitz, n_inputs: int, smoothing: str):
    """None, or the per-input Lipschitz constants of the averaged class scores."""
    if lipschitz is None:
        return None
    L = np.asarray(lipschitz, dtype=np.float64)
    if L.ndim > 1 or (L.ndim == 1 and L.shape[0] != n_inputs):
        raise ValueError(
            "The 'lipschitz' parameter must be None, a float or an array of shape "
            f"(n_inputs,) = ({n_inputs},). Got shape {L.shape} instead."
        )
    if np.any(np.isnan(L)) or np.any(L <= 0):
        raise ValueError(
            "The 'lipschitz' parameter must hold Lipschitz constants in (0, inf]. "
            f"Got {lipschitz!r} instead."
        )
    if smoothing == "hard" and np.any(np.isfinite(L)):
        raise ValueError(
            "The 'lipschitz' parameter must be None or inf with hard counts "
            "(smoothing='hard'): a Lipschitz-aware radius needs bounds on the mean "
            "of the same Lipschitz [0, 1]-valued score (smoothing='soft')."
        )
    return np.broadcast_to(L, (n_inputs,)).copy()


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
    raise ValueError(
        f"Cannot store the parameter value {value!r} in a result file: only "
        "None, bool, int, float, str and smoothlearn interval objects are allowed."
    )


def _encode_estimator(estimator) -> dict:
    params = estimator.get_params(deep=False)
    return {
        "class": type(estimator).__name__,
        "params": {k: _encode_value(v) for k, v in sorted(params.items())},
    }


def _decode_value(value):
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
    lipschitz : ndarray of shape (n_inputs,) or None
        l2 Lipschitz constant of each input's averaged [0, 1]-valued class
        score (temperature included) used for the radius; ``inf`` or None:
        Cohen's radius.
    score_map : ndarray of shape (n_inputs,) of str, or None
        Simplex map of each input (soft smoothing; None for hard).
    temperature : ndarray of shape (n_inputs,) or None
        Inverse temperature of each input's simplex map (None for hard).
    radius_method : {"paper", "envelope"}
        Form of the Lipschitz-aware radius (used where ``lipschitz`` is finite).

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
    lipschitz: NDArray[np.float64] | None = None
    score_map: NDArray | None = None
    temperature: NDArray[np.float64] | None = None
    radius_method: str = "paper"

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
        _warn: bool = True,
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
        lipschitz : float or array-like of shape (n_inputs,), default=None
            l2 Lipschitz constant of the averaged [0, 1]-valued class score
            (soft smoothing only; finite values with hard counts raise).
            Where finite, the radius is
            :func:`~smoothlearn.radius.lipschitz_radius`.
        radius_method : {"paper", "envelope"}, default="paper"
            Form of the Lipschitz-aware radius.
        score_map, temperature : array-like of shape (n_inputs,), default=None
            Simplex map and inverse temperature of each input (soft
            smoothing), stored for the record.

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

        L = _check_score_lipschitz(lipschitz, estimation.shape[0], smoothing)
        if smoothing == "soft" and getattr(
            _procedure_binomial(procedure), "requires_counts", False
        ):
            raise ValueError(
                f"The 'interval' procedure {procedure!r} uses an interval that "
                "requires integer counts, but smoothing='soft' averages scores: use "
                "a bounded-mean interval, e.g. TopClass(binomial=EmpiricalBernstein())."
            )
        proc_kind = "multi" if kind == "margin" else kind
        bounds = procedure.bound(
            selection,
            estimation,
            int(n),
            alpha,
            estimation_sq=None if smoothing == "hard" else estimation_sq,
            kind=proc_kind,
        )
        pA = np.asarray(bounds.pA_lower, dtype=np.float64)
        pB = np.asarray(bounds.pB_upper, dtype=np.float64)
        abst = np.asarray(_abstained(pA, pB, proc_kind), dtype=bool).reshape(pA.shape)
        if kind == "margin" or L is not None:
            # helper B's radius functions (imported here, used only by soft radii)
            from .radius import lipschitz_radius, margin_radius
        if kind == "margin":
            rad = margin_radius(pA, pB, sigma_f)
        elif L is None:
            rad = gaussian_radius(pA, pB, sigma_f, kind)
        else:
            rad = lipschitz_radius(pA, pB, sigma_f, L, kind=kind, method=radius_method)
        rad = np.asarray(rad, dtype=np.float64).reshape(pA.shape)
        index = np.asarray(bounds.prediction, dtype=np.int64)
        return cls(
            prediction=_labels(classes, index, abst, abstain_label),
            radius=np.where(abst, 0.0, rad),
            pA_lower=pA,
            pB_upper=pB,
            abstained=abst,
            n_bounds=np.asarray(bounds.n_bounds, dtype=np.int64),
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
            lipschitz=L,
            score_map=None if score_map is None else np.asarray(score_map, dtype=str),
            temperature=None
            if temperature is None
            else np.asarray(temperature, dtype=np.float64),
            radius_method=radius_method,
        )

    # ------------------------------------------------------------------
    @property
    def n_inputs(self) -> int:
        """Number of certified inputs."""
        return int(self.radius.shape[0])

    def __len__(self) -> int:
        return self.n_inputs

    @property
    def certified(self) -> NDArray[np.bool_]:
        """Where a certificate is given (the complement of ``abstained``)."""
        return ~self.abstained

    def __repr__(self) -> str:
        return (
            f"CertificationResult(n_inputs={self.n_inputs}, "
            f"certified={int(self.certified.sum())}, sigma={self.sigma}, "
            f"alpha={self.alpha}, interval={self.interval!r}, "
            f"radius={self.kind!r}, n0={self.n0}, n={self.n})"
        )

    def __eq__(self, other) -> bool:
        if not isinstance(other, CertificationResult):
            return NotImplemented
        for f in fields(self):
            a, b = getattr(self, f.name), getattr(other, f.name)
            if f.name == "interval":
                if _encode_estimator(a) != _encode_estimator(b):
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
        """Recompute the certificates from the stored statistics, without the model.

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
        lipschitz : float or array-like of shape (n_inputs,), default=None
            l2 Lipschitz constant of the averaged [0, 1]-valued class score of
            each input (soft smoothing; the score's own constant, simplex map
            and temperature included, not the logits'); ``inf`` gives Cohen's
            radius; None keeps the stored constants.
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
        still valid.
        """
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
        }
        optional = {
            name: np.asarray(value)
            for name, value in (
                ("lipschitz", self.lipschitz),
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
        if version != _FORMAT_VERSION:
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
        return cls(**fields)

    @classmethod
    def _fields_from_npz(cls, path, arrays: dict, meta: dict) -> dict:
        """Constructor arguments from the arrays and JSON record of a file."""
        classes = arrays.pop("classes")
        index = arrays.pop("prediction_index")
        abstained = arrays["abstained"]
        abstain_label = meta["abstain_label"]
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
            lipschitz=arrays.get("lipschitz"),
            score_map=arrays.get("score_map"),
            temperature=arrays.get("temperature"),
            radius_method=meta.get("radius_method", "paper"),
        )

    def to_frame(self):
        """One row per input: prediction, radius, bounds, abstained, n_bounds.

        Soft results add the columns ``score_map``, ``temperature`` and
        (with a Lipschitz-aware radius) ``lipschitz``.

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
            }
        )
        # soft smoothing: each input's simplex map, temperature and constant
        for name in ("score_map", "temperature", "lipschitz"):
            value = getattr(self, name)
            if value is not None:
                frame[name] = value
        return frame


#: Result classes by the ``result_type`` of their files (see ``load``).
_RESULT_TYPES: dict[str, type] = {"fixed": CertificationResult}


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
