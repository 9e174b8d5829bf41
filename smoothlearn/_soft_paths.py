"""Soft smoothing's drivers: selection, certification and PREDICT's draws.

Plain functions of explicit arguments, called by
:class:`~smoothlearn.SmoothedClassifier`: ``gather`` is the classifier's
engine (``gather(X, stages, desc, checkpoint=None, seed=None, meta=None,
every=10.0)`` returning the fields of every ``(stage, n_draws, statistic)``,
see :func:`~smoothlearn._parallel.gather_fields`), the other arguments are
its parameters and fitted attributes.  The logits' Lipschitz constant that
soft certificates use, and soft PREDICT's margin test, are here as well.
"""

from __future__ import annotations

import math
import os
import warnings
from numbers import Real
from typing import NamedTuple

import numpy as np
from numpy.typing import NDArray
from sklearn.frozen import FrozenEstimator

from .result import (
    CertificationResult,
    _derive_score_lipschitz,
    _procedure_binomial,
    _resolve_procedure,
)
from .sampling import STAGE_ESTIMATION, STAGE_PREDICT, _root_seed

#: What determines soft statistics beyond X, model, sigma, seed, stages.
SOFT_META = {"smoothing": "soft"}


class _SoftSelection(NamedTuple):
    """What the soft selection pass chose, per input (see ``soft_selection``)."""

    procedure: object
    L_logits: float | None
    constants: NDArray | None  # score constant of every candidate, or None
    root: int
    sums: NDArray  # (n_candidates, n_inputs, n_classes) selection sums
    chosen: NDArray  # (n_inputs,) index of each input's candidate
    maps: NDArray  # (n_inputs,) simplex map names
    temps: NDArray  # (n_inputs,) temperatures
    codes: NDArray  # (n_inputs,) simplex map codes


def soft_procedure(interval):
    """The multi-class procedure of soft smoothing (None: TopClass with betting)."""
    from .intervals import BettingInterval, TopClass

    if interval is None:
        return TopClass(binomial=BettingInterval())
    return _resolve_procedure(interval)


def _call_lipschitz_estimator(estimator, module, sample=None) -> float:
    """The logits' Lipschitz bound from a guaranteed ``LipschitzEstimator``."""
    if not getattr(estimator, "guaranteed", False):
        raise ValueError(
            "The 'lipschitz' parameter of SmoothedClassifier must give a "
            f"guaranteed upper bound to enter a certificate; {estimator!r} "
            "only estimates the constant (guaranteed=False). Use "
            "SpectralProductLipschitz or ConstantLipschitz."
        )
    method = getattr(estimator, "logit_constant", None)
    if not callable(method):
        raise ValueError(
            "The 'lipschitz' parameter of SmoothedClassifier must be a "
            "LipschitzEstimator or a float > 0. Got "
            f"{estimator!r} instead."
        )
    value = float(np.max(np.asarray(method(module, sample), dtype=np.float64)))
    if not value > 0:
        raise ValueError(
            f"The 'lipschitz' estimator returned {value!r}; a bound > 0 is needed."
        )
    return value


def logit_lipschitz(
    lipschitz, estimator, input_shape, n_classes: int, adapter
) -> float | None:
    """The guaranteed Lipschitz constant of the logits the simplex map sees.

    ``lipschitz`` is the classifier's parameter, ``estimator`` its fitted
    ``estimator_``, ``adapter`` a callable returning its adapter (built only
    for two classes).  The constant is that of the logits the simplex map
    sees, which is what :class:`~smoothlearn.CertificationResult` stores and
    :meth:`~smoothlearn.CertificationResult.recertify` takes: a binary
    module with one logit ``l`` is read as ``(-l, l)``, whose constant is
    ``sqrt(2)`` times that of ``l``, whether ``lipschitz`` is a number or
    an estimator (both bound the module's own output).
    """
    if lipschitz is None:
        return None
    if isinstance(lipschitz, Real):
        value = float(lipschitz)
    else:
        inner = (
            estimator.estimator if isinstance(estimator, FrozenEstimator) else estimator
        )
        module = getattr(inner, "module_", inner)
        # a zero input of the fitted shape: graph-walking bounds (traced
        # ResNets) need the shape; the bound itself is global
        sample = np.zeros((1, *input_shape), dtype=np.float32)
        value = _call_lipschitz_estimator(lipschitz, module, sample)
    probe = np.zeros((1, *input_shape), dtype=np.float32)
    if n_classes == 2 and adapter().n_raw_outputs(probe) == 1:
        value *= math.sqrt(2.0)  # one logit l is read as (-l, l)
    return value


def _stored_seed(checkpoint, default: int) -> int:
    """The root seed stored in an existing checkpoint (``random_state=None``).

    Soft certification runs the engine once per stage with an explicit seed,
    so the stored seed is read here, before the first stage.
    """
    from ._checkpoint import _Checkpoint

    if not os.path.isfile(os.fspath(checkpoint)):
        return default
    try:
        return _Checkpoint._read(os.fspath(checkpoint)).seed
    except (ValueError, KeyError):
        return default  # the engine reports the damaged file


def soft_selection(
    gather,
    X,
    *,
    procedure,
    L_logits,
    n_classes: int,
    simplex_map,
    temperature,
    n0: int,
    n: int,
    alpha: float,
    radius: str,
    sigma: float,
    radius_method: str,
    random_state,
    checkpoint=None,
    every: float = 10.0,
    seed: int | None = None,
) -> _SoftSelection:
    """Soft selection pass: each input's (map, t) and sums on the n0 draws.

    Shared by ``certify``, ``predict`` and sequential certification, so
    that with the same ``random_state`` they use the same selection draws,
    hence the same (map, t) and the same candidate class per input (``seed``:
    the root seed itself, for a caller that drew it already).
    """
    from .soft import _default_grid, _select_simplex_maps

    if temperature == "auto":
        candidates = _default_grid()
    else:
        candidates = [(simplex_map, float(temperature))]
    # each candidate's class-score constant, by the rule from_statistics
    # applies to the chosen one: simplex_map_constant * t * L_logits
    constants = _derive_score_lipschitz(
        L_logits,
        len(candidates),
        n_classes,
        "soft",
        np.array([m for m, _ in candidates]),
        np.array([t for _, t in candidates], dtype=np.float64),
    )
    if seed is not None:  # a caller that draws its own root (sequential)
        root = int(seed)
    else:
        root = _root_seed(random_state)
        if checkpoint is not None and random_state is None:
            root = _stored_seed(checkpoint, root)

    def draw(stage, n_draws, statistic):
        stats = gather(
            X,
            [(stage, n_draws, statistic)],
            "selection",
            checkpoint,
            seed=root,
            meta=dict(SOFT_META),
            every=every,
        )
        return stats[stage]

    sel = _select_simplex_maps(
        draw,
        X,
        candidates,
        n0=n0,
        n=n,
        alpha=alpha,
        procedure=procedure,
        kind=radius,
        sigma=sigma,
        constants=constants,
        radius_method=radius_method,
    )
    return _SoftSelection(
        procedure, L_logits, constants, root, sel.sums,
        sel.chosen, sel.maps, sel.temps, sel.codes,
    )  # fmt: skip


def certify_soft(
    gather,
    X,
    s: _SoftSelection,
    *,
    n0: int,
    n: int,
    sigma: float,
    alpha: float,
    classes,
    radius: str,
    abstain_label,
    radius_method: str,
    checkpoint=None,
    every: float = 10.0,
) -> CertificationResult:
    """Soft CERTIFY: (class, map, t) on the n0 draws, bounds on the n draws.

    ``s`` is the selection (:func:`soft_selection`, with the same
    ``checkpoint``).  Both stages go through the engine; with a checkpoint,
    the selection fields are stored first, and the estimation stage's
    statistic holds a hash of the (map, t) chosen from them, which a resumed
    run recomputes from the stored selection sums and the checkpoint checks.
    """
    from .intervals import BettingInterval
    from .soft import _BettingScoreSums, _ChosenScoreSums

    procedure, L_logits = s.procedure, s.L_logits
    sums, chosen, maps, temps = s.sums, s.chosen, s.maps, s.temps
    rows = np.arange(X.shape[0])
    selection = sums[chosen, rows]
    statistic = _ChosenScoreSums(s.codes, temps)
    binomial = _procedure_binomial(procedure)
    plan = None
    if isinstance(binomial, BettingInterval):
        # the bounded quantities are fixed by the selection draws: follow
        # each one's estimation draws in order (bound_from_states)
        kind = "multi" if radius == "margin" else radius
        try:
            plan = procedure.plan(selection, kind=kind)
        except NotImplementedError:  # a procedure without plan: sums only
            plan = None
        if plan is not None:
            statistic = _BettingScoreSums(s.codes, temps, binomial, plan, n, alpha)
    stats = gather(
        X,
        [(STAGE_ESTIMATION, n, statistic)],
        "estimation",
        checkpoint,
        seed=s.root,
        meta=dict(SOFT_META),
        every=every,
    )[STAGE_ESTIMATION]
    estimation, estimation_sq = stats["sums"], stats["sums_sq"]
    betting_state = None if plan is None else statistic.betting_state(stats)
    return CertificationResult.from_statistics(
        selection=selection,
        estimation=estimation,
        estimation_sq=estimation_sq,
        n0=n0,
        n=n,
        sigma=sigma,
        alpha=alpha,
        classes=classes,
        interval=procedure,
        radius=radius,
        smoothing="soft",
        abstain_label=abstain_label,
        # the logits' constant: from_statistics derives each input's
        # class-score constant from its map and temperature (the rule of
        # the selection's `constants`, in one place for certify and recertify)
        lipschitz=L_logits,
        radius_method=radius_method,
        score_map=maps,
        temperature=temps,
        betting_state=betting_state,
        _warn=False,
        _stacklevel=4,
    )


def soft_predict_statistics(gather, X, s: _SoftSelection, n: int):
    """Soft PREDICT's draws: candidate class, score sums and margin statistics.

    ``s`` is the selection (:func:`soft_selection`).  Returns ``top``
    (n_inputs,), the class-score sums and the sums and sums of squares of
    the margins ``D_c = (1 + f_top - f_c) / 2``, each ``(n_inputs,
    n_classes)``, over ``n`` draws of the predict stage.
    """
    from .soft import _PredictMargins

    rows = np.arange(X.shape[0])
    # the class certify selects: the first maximum of the selection sums
    top = np.argmax(s.sums[s.chosen, rows], axis=1).astype(np.int64)
    statistic = _PredictMargins(s.codes, s.temps, top)
    stats = gather(X, [(STAGE_PREDICT, n, statistic)], "predict", seed=s.root)[
        STAGE_PREDICT
    ]
    return top, stats["sums"], stats["d_sums"], stats["d_sums_sq"]


def _soft_predict_interval(procedure):
    """The guaranteed bounded-mean interval of soft PREDICT's margin test.

    The procedure's own interval when it is a guaranteed bounded-mean one,
    empirical Bernstein when the procedure has none or an approximate one;
    an interval that requires counts is refused, as soft certification does.
    """
    from .intervals import EmpiricalBernstein
    from .result import _procedure_binomial

    binomial = _procedure_binomial(procedure)
    if binomial is None:
        return EmpiricalBernstein()
    if binomial.requires_counts:
        raise ValueError(
            f"The 'interval' procedure {procedure!r} uses an interval that "
            "requires integer counts, but smoothing='soft' averages scores: use "
            "a bounded-mean interval, e.g. TopClass(binomial=EmpiricalBernstein())."
        )
    return binomial if binomial.guaranteed else EmpiricalBernstein()


def _soft_predict_answered(
    top: NDArray, d_sums: NDArray, d_sums_sq: NDArray, n: int, alpha: float, interval
) -> NDArray[np.bool_]:
    """Rows where every margin ``D_c`` (c != top) has a lower bound above 1/2.

    Each one-sided bound is at the full ``alpha``: only the pair of ``top``
    and the true top class can make an answer wrong (see ``predict``).
    """
    lower = np.asarray(
        interval.lower(d_sums, n, alpha, sum_sq=d_sums_sq), dtype=np.float64
    ).reshape(d_sums.shape)
    lower[np.arange(len(top)), top] = np.inf  # D_top = 1/2 is no test
    return np.all(lower > 0.5, axis=1)


def _min_draws_soft_predict(alpha: float, interval) -> int | None:
    """Smallest ``n`` at which soft PREDICT can answer (None: none up to ``max_n``).

    The most favourable draws have every margin equal to 1 (``f_A = 1``),
    whose lower bound is the largest an interval gives at that ``n``.
    """

    def answers(n: int) -> bool:
        return bool(interval.lower(n, n, alpha, sum_sq=n) > 0.5)

    n_max = int(getattr(interval, "max_n", 2**53))
    hi = 1
    while not answers(hi):
        if hi >= n_max:
            return None
        hi = min(2 * hi, n_max)
    lo = hi // 2  # answers(lo) is False (or lo = 0)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (lo, mid) if answers(mid) else (mid, hi)
    return hi


def _warn_if_n_too_small_soft_predict(n: int, alpha: float, interval) -> None:
    """Soft PREDICT never answers when even unanimous margins of 1 fail the test."""
    if interval.lower(n, n, alpha, sum_sq=n) > 0.5:
        return
    n_min = _min_draws_soft_predict(alpha, interval)
    smallest = (
        f"The smallest n that can answer is {n_min}."
        if n_min is not None
        else "No n can answer with this interval."
    )
    warnings.warn(
        f"n={n} draws are too few for the soft predict to return any class at "
        f"alpha={alpha}: even if class A gets score 1 on every draw, the "
        f"{type(interval).__name__} lower bound on its margins does not exceed "
        f"1/2. {smallest}",
        UserWarning,
        stacklevel=3,
    )
