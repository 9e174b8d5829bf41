r"""Sequential certification: the same guarantees with a fraction of the draws.

Fixed-``n`` certification (Cohen et al. 2019) spends ``n = 100,000`` forward
passes on every input, including the many inputs whose answer is obvious
after a few hundred.  This module replaces the fixed-``n`` confidence bound
by an *anytime-valid confidence sequence*: a bound that holds simultaneously
at every sample size, so draws can be added in batches and the sampling
stopped as soon as the question is answered, with no multiple-testing
penalty for looking after every batch.

* :class:`BettingConfidenceSequence` is the confidence sequence, an
  :class:`~smoothlearn.intervals.IntervalEstimator` (so the multi-class
  procedures ``TopClass``, ``Bonferroni`` and ``ClassPartitioning`` take it
  as their ``binomial``), built from a mixture of betting martingales
  (Waudby-Smith & Ramdas 2024).
* :class:`SequentialCertifier` certifies with a fitted
  :class:`~smoothlearn.SmoothedClassifier`, drawing in growing batches and
  stopping each input when its question is decided ("robust at r?") or when
  its radius stops growing; all undecided inputs share each forward batch.
* :class:`SequentialCertificationResult` is what it returns: a
  :class:`~smoothlearn.CertificationResult` with the draws used per input
  and the decisions.

The numeric core, with the validity proof, is in :mod:`smoothlearn._confseq`.

References
----------
.. [1] Waudby-Smith & Ramdas, "Estimating means of bounded random variables
   by betting", JRSSB 86(1), 2024.
.. [2] Voráček, "Improving the Statistical Guarantees of Randomized
   Smoothing", NeurIPS 2024.
.. [3] Ville, "Étude critique de la notion de collectif", 1939.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from numbers import Integral, Real
from typing import ClassVar

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy.special import ndtr, ndtri
from sklearn.base import BaseEstimator, clone
from sklearn.utils._param_validation import HasMethods, Interval

from ._certificates import certify_statistics
from ._confseq import _log_capital, _min_draws
from ._soft_paths import soft_selection
from ._validation import (
    check_kind,
    check_scalar_alpha,
)
from .intervals import BettingConfidenceSequence
from .radius import abstained, lipschitz_radius
from .result import (
    CertificationResult,
    _check_radius_method,
    _derive_score_lipschitz,
    _labels,
    _logit_lipschitz_value,
    _resolve_procedure,
)
from .sampling import (
    STAGE_ESTIMATION,
    STAGE_SELECTION,
    _block_seed,
    _root_seed,
)
from .smoothed import _check_fitted_input, _engine_fields, _logit_lipschitz_of
from .soft import _ChosenScoreSums

__all__ = [
    "BettingConfidenceSequence",
    "SequentialCertificationResult",
    "SequentialCertifier",
]


# ---------------------------------------------------------------------------
# The sequential engine, independent of how draws are produced
# ---------------------------------------------------------------------------
def _schedule(n_first: int, n_max: int, growth: float) -> NDArray[np.int64]:
    """Cumulative draw counts after each round: geometric, ending at ``n_max``."""
    targets = [min(int(n_first), int(n_max))]
    while targets[-1] < n_max:
        nxt = max(targets[-1] + 1, int(np.ceil(targets[-1] * growth)))
        targets.append(min(nxt, int(n_max)))
    return np.asarray(targets, dtype=np.int64)


def _first_batch(
    target_radius: NDArray[np.float64] | None,
    sigma: float,
    alpha_robust: float,
    n_max: int,
) -> int:
    """Default size of the first estimation batch.

    With target radii: the fewest draws at which all-success data certify
    the smallest radius (no earlier look can certify anything).  Without:
    the fewest that can certify the mono radius ``sigma / 2``, at least 100.
    """
    if target_radius is None or target_radius.size == 0:
        return max(100, _min_draws(float(ndtr(0.5)), alpha_robust, n_max))
    p_star = float(ndtr(np.min(target_radius) / sigma))
    return _min_draws(p_star, alpha_robust, n_max)


def _runner_up(selection: NDArray, prediction: NDArray) -> NDArray[np.int64]:
    """The selection runner-up of each row (first maximum once A is removed)."""
    n_classes = selection.shape[1]
    mine = np.arange(n_classes)[None, :] == prediction[:, None]
    return np.argmax(np.where(mine, -np.inf, selection), axis=1)


def _certify_at(
    procedure,
    selection,
    est,
    est_sq,
    n,
    *,
    kind,
    sigma,
    alpha,
    score_lipschitz=None,
    radius_method="paper",
):
    """Bounds and raw radius of many inputs from their statistics (any n per row).

    :func:`~smoothlearn._certificates.certify_statistics`, the function of
    every certifying path; the radius is the formula before abstentions are
    set to 0 (what the decisions compare with a target radius).
    """
    cert = certify_statistics(
        procedure,
        selection,
        est,
        n,
        alpha,
        sigma=sigma,
        kind=kind,
        estimation_sq=est_sq,
        score_lipschitz=score_lipschitz,
        radius_method=radius_method,
    )
    return cert, np.atleast_1d(cert.raw_radius)


def _upper_radius(
    cs, est, n, prediction, runner_up, *, kind, sigma, alpha, score_lipschitz=None
) -> NDArray[np.float64]:
    r"""Anytime-valid upper bound on the exact (infinite-draw) radius.

    ``mono``: :math:`\sigma\Phi^{-1}(\overline{p_A})` with the upper sequence
    at ``alpha``.  ``multi``: :math:`\frac{\sigma}{2}(\Phi^{-1}(\overline{p_A})
    - \Phi^{-1}(\underline{p_{I_2}}))` with ``alpha / 2`` per sequence, since
    :math:`p_B = \max_{c \ne A} p_c \ge p_{I_2}` for the selection runner-up
    :math:`I_2`.  May be negative or infinite.

    Where an input's class score has a finite Lipschitz constant
    (``score_lipschitz``), the exact radius is the Lipschitz-aware one, and
    the bound is the envelope form :math:`R^*` at the same confidence values
    (:func:`~smoothlearn.radius.lipschitz_radius`, ``method="envelope"``):
    it is non-decreasing in :math:`p_A` and non-increasing in :math:`p_B`,
    and at least the paper's form (tests/test_radius.py checks both), so it
    bounds the exact radius of either form.  It is rounded up by
    :math:`10^{-9}(|R| + \sigma)`, far above its floating-point error.
    """
    rows = np.arange(est.shape[0])
    k_a = est[rows, prediction]
    if kind == "mono":
        u_a = cs.upper(k_a, n, alpha)
        l_b = None
        out = sigma * ndtri(u_a)
    else:
        u_a = cs.upper(k_a, n, alpha / 2.0)
        l_b = cs.lower(est[rows, runner_up], n, alpha / 2.0)
        with np.errstate(invalid="ignore"):
            out = 0.5 * sigma * (ndtri(u_a) - ndtri(l_b))
        out = np.where(np.isnan(out), np.inf, out)
    if score_lipschitz is None:
        return out
    L = np.broadcast_to(np.asarray(score_lipschitz, dtype=np.float64), out.shape)
    lip = np.isfinite(L)
    if not lip.any():
        return out
    env = lipschitz_radius(
        u_a[lip],
        None if l_b is None else l_b[lip],
        sigma,
        L[lip],
        kind=kind,
        method="envelope",
    )
    env = np.asarray(env, dtype=np.float64)
    out = np.array(out, dtype=np.float64)
    out[lip] = env + 1e-9 * (np.abs(env) + sigma)
    return out


def _decisions(low, up, target_radius) -> NDArray[np.int8]:
    """1 (robust: certified radius >= r), -1 (exact radius < r) or 0."""
    robust = low[:, None] >= target_radius[None, :]
    not_robust = up[:, None] < target_radius[None, :]
    return np.where(robust, 1, np.where(not_robust, -1, 0)).astype(np.int8)


def _may_decide(
    est,
    n,
    prediction,
    runner_up,
    *,
    kind,
    sigma,
    target_radius,
    alpha_robust,
    alpha_not_robust,
) -> NDArray[np.bool_]:
    r"""Cheap necessary condition for every target radius to be decided.

    One capital per radius and side instead of root finding, so rounds where
    nothing can be decided cost almost nothing.  With :math:`\hat p_{I_2}`
    the empirical frequency of the selection runner-up (a lower bound on
    every procedure's :math:`\overline{p_B}`, and an upper bound on the lower
    sequence of :math:`p_{I_2}`), "robust at r" needs
    :math:`\underline{p_A} \ge m_r = \Phi(2r/\sigma + \Phi^{-1}(\hat p_{I_2}))`
    (``multi``; :math:`m_r = \Phi(r / \sigma)` for ``mono``), hence
    :math:`K_n(m_r) \ge 1/\alpha_{robust}` (a procedure's per-bound level is
    at most ``alpha_robust``); "not robust at r" needs the reflected capital
    at :math:`1 - m_r` to reach :math:`1/\alpha_{not\,robust}` (``mono``) or
    :math:`2/\alpha_{not\,robust}` (``multi``).
    """
    rows = np.arange(est.shape[0])
    k_a = est[rows, prediction][:, None]
    if kind == "mono":
        m_r = np.broadcast_to(
            ndtr(target_radius / sigma)[None, :], (rows.size, target_radius.size)
        )
        alpha_up = alpha_not_robust
    else:
        p_b = est[rows, runner_up][:, None] / n
        with np.errstate(divide="ignore"):
            m_r = ndtr(2.0 * target_radius[None, :] / sigma + ndtri(p_b))
        alpha_up = alpha_not_robust / 2.0
    robust = _log_capital(k_a, n, m_r) >= -np.log(alpha_robust)
    with np.errstate(divide="ignore"):
        not_robust = _log_capital(n - k_a, n, 1.0 - m_r) >= -np.log(alpha_up)
    return np.all(robust | not_robust, axis=1)


def _run_sequential(
    draw,
    selection: NDArray,
    *,
    procedure,
    kind: str,
    sigma: float,
    target_radius: NDArray[np.float64] | None,
    alpha_robust: float,
    alpha_not_robust: float,
    n_max: int,
    n_first: int,
    batch_growth: float,
    radius_tol: float,
    soft: bool,
    score_lipschitz: NDArray[np.float64] | None = None,
    radius_method: str = "paper",
) -> dict:
    """Draw in rounds until each input is decided or its budget is spent.

    All undecided inputs advance together: in round ``j`` each gets the same
    number of fresh draws (the schedule :func:`_schedule`), so one call of
    ``draw`` packs all of them into full forward batches.

    Parameters
    ----------
    draw : callable
        ``draw(indices, m, round_index) -> (sums, sums_sq)``: ``m`` fresh
        draws for each input in ``indices`` (independent of all earlier
        draws), as arrays of shape ``(len(indices), n_classes)``.
    selection : ndarray of shape (n_inputs, n_classes)
        Selection statistics (fix the class and the buckets once for all).
    procedure : MultiClassProcedure
        Its ``binomial`` must be anytime-valid.
    target_radius : ndarray of shape (n_radii,) or None
        Decision mode when given, largest-radius mode when None.
    score_lipschitz : ndarray of shape (n_inputs,), default=None
        Each input's class-score constant (soft smoothing with a guaranteed
        constant of the logits): the certificates are then Lipschitz-aware
        radii of form ``radius_method``, and "not robust" compares with the
        Lipschitz-aware upper bound of :func:`_upper_radius`.

    Returns
    -------
    dict of per-input arrays: ``prediction`` (class index), ``pA_lower``,
    ``pB_upper``, ``radius``, ``abstained``, ``n_bounds``, ``estimation``,
    ``estimation_sq``, ``n_draws``, ``decisions`` (n_inputs, n_radii) in
    {1: robust, -1: not robust, 0: undecided}.
    """
    selection = np.asarray(selection)
    n_inputs, n_classes = selection.shape
    cs = procedure.binomial
    est = np.zeros((n_inputs, n_classes))
    est_sq = np.zeros((n_inputs, n_classes)) if soft else None
    n_used = np.zeros(n_inputs, dtype=np.int64)
    done = np.zeros(n_inputs, dtype=bool)
    pA = np.zeros(n_inputs)
    pB = np.ones(n_inputs)
    radius = np.zeros(n_inputs)
    n_bounds = np.ones(n_inputs, dtype=np.int64)
    prediction = np.argmax(selection, axis=1)  # first maximum, as the procedures
    runner_up = _runner_up(selection, prediction)
    decide = target_radius is not None
    decisions = np.zeros((n_inputs, 0 if not decide else target_radius.size), np.int8)

    previous = 0
    for round_index, target in enumerate(_schedule(n_first, n_max, batch_growth)):
        active = np.flatnonzero(~done)
        if active.size == 0:
            break
        sums, sums_sq = draw(active, int(target - previous), round_index)
        previous = int(target)
        est[active] += sums
        if soft:
            est_sq[active] += sums_sq
        n_used[active] = target
        last = target >= n_max
        cand = active
        if decide and not last:
            gate = _may_decide(
                est[active],
                target,
                prediction[active],
                runner_up[active],
                kind=kind,
                sigma=sigma,
                target_radius=target_radius,
                alpha_robust=alpha_robust,
                alpha_not_robust=alpha_not_robust,
            )
            if score_lipschitz is not None:
                # The cheap gate assumes Cohen's radius; a Lipschitz-aware
                # radius may decide earlier, so those inputs are always checked.
                gate |= np.isfinite(score_lipschitz[active])
            cand = active[gate]
        if cand.size == 0:
            continue
        n_cand = np.full(cand.size, target)
        cand_sq = None if not soft else est_sq[cand]
        cand_L = None if score_lipschitz is None else score_lipschitz[cand]
        b, low = _certify_at(
            procedure,
            selection[cand],
            est[cand],
            cand_sq,
            n_cand,
            kind=kind,
            sigma=sigma,
            alpha=alpha_robust,
            score_lipschitz=cand_L,
            radius_method=radius_method,
        )
        if decide:
            up = _upper_radius(
                cs,
                est[cand],
                n_cand,
                prediction[cand],
                runner_up[cand],
                kind=kind,
                sigma=sigma,
                alpha=alpha_not_robust,
                score_lipschitz=cand_L,
            )
            dec = _decisions(low, up, target_radius)
            stop = np.all(dec != 0, axis=1) | last
            decisions[cand[stop]] = dec[stop]
        else:
            # Typical-case projection: the same empirical means at n_max (shrunk
            # by a hair so rounding never puts a sum above n_max).
            scale = n_max / target * (1.0 - 1e-12)
            _, proj = _certify_at(
                procedure,
                selection[cand],
                est[cand] * scale,
                None if not soft else cand_sq * scale,
                np.full(cand.size, n_max),
                kind=kind,
                sigma=sigma,
                alpha=alpha_robust,
                score_lipschitz=cand_L,
                radius_method=radius_method,
            )
            stop = (proj - low < radius_tol) | last
        stopped = cand[stop]
        pA[stopped] = b.pA_lower[stop]
        pB[stopped] = b.pB_upper[stop]
        radius[stopped] = low[stop]
        n_bounds[stopped] = b.n_bounds[stop]
        done[stopped] = True
    return {
        "prediction": prediction,
        "pA_lower": pA,
        "pB_upper": pB,
        "radius": radius,
        "abstained": np.asarray(abstained(pA, pB, kind), dtype=bool).reshape(-1),
        "n_bounds": n_bounds,
        "estimation": est,
        "estimation_sq": est if not soft else est_sq,
        "n_draws": n_used,
        "decisions": decisions,
    }


# ---------------------------------------------------------------------------
# The result
# ---------------------------------------------------------------------------
@dataclass(frozen=True, eq=False)
class SequentialCertificationResult(CertificationResult):
    r"""A :class:`~smoothlearn.CertificationResult` from sequential certification.

    Every field of :class:`~smoothlearn.CertificationResult` keeps its
    meaning, except that the number of estimation draws differs per input:
    ``n`` is the budget ``n_max`` and ``n_draws`` the draws actually used.
    ``alpha`` is the failure probability of the certificate
    (``alpha_robust``).

    Attributes
    ----------
    n_draws : ndarray of shape (n_inputs,), dtype int
        Estimation draws used per input (the selection's ``n0`` excluded).
    target_radius : ndarray of shape (n_radii,)
        The radii that were decided; empty in largest-radius mode.
    decisions : ndarray of shape (n_inputs, n_radii), dtype int8
        Per input and target radius: ``1`` robust (certified radius
        ``>= r``), ``-1`` not robust (even the exact radius of the result's
        kind, with infinitely many draws, is below ``r``), ``0`` undecided
        within the budget.
    alpha_not_robust : float
        Failure probability of the "not robust" decisions (0 when none are
        made).  A decision of either kind is wrong with probability at most
        ``alpha + alpha_not_robust``.

    Notes
    -----
    :meth:`recertify` accepts only procedures whose interval is
    anytime-valid (``anytime_valid = True``, e.g.
    :class:`BettingConfidenceSequence`): the draws were stopped by a
    data-dependent rule, under which a fixed-``n`` interval such as
    Clopper-Pearson loses its guarantee.  It recomputes every decision for
    the new radius kind, procedure and ``alpha`` (see its Notes).
    """

    n_draws: NDArray[np.int64] | None = None
    target_radius: NDArray[np.float64] | None = None
    decisions: NDArray[np.int8] | None = None
    alpha_not_robust: float = 0.0

    def __repr__(self) -> str:
        return (
            f"SequentialCertificationResult(n_inputs={self.n_inputs}, "
            f"certified={int(self.certified.sum())}, sigma={self.sigma}, "
            f"alpha={self.alpha}, interval={self.interval!r}, "
            f"radius={self.kind!r}, n0={self.n0}, n_max={self.n}, "
            f"median_draws={float(np.median(self.n_draws)):g})"
        )

    def recertify(
        self, alpha=None, interval=None, radius=None, lipschitz=None, radius_method=None
    ) -> SequentialCertificationResult:
        r"""Recompute the certificates from the stored statistics.

        Parameters
        ----------
        alpha : float, default=None
            Failure probability of each certificate; None keeps it.  Any
            value is valid: the confidence sequences hold at every stopping
            time, including one chosen for another ``alpha``.
        interval : MultiClassProcedure or str, default=None
            The multi-class procedure; its interval must be anytime-valid.
            None keeps it.
        radius : {"mono", "multi"}, default=None
            The radius formula; None keeps it.
        lipschitz : float or LipschitzEstimator, default=None
            The guaranteed l2 Lipschitz constant of the logits, as in
            :meth:`CertificationResult.recertify
            <smoothlearn.CertificationResult.recertify>` (soft smoothing:
            each input's class-score constant follows from its stored simplex
            map and temperature; hardmax rows and hard counts get ``inf``);
            None keeps the stored constant.
        radius_method : {"paper", "envelope"}, default=None
            Form of the Lipschitz-aware radius; None keeps it.

        Returns
        -------
        SequentialCertificationResult
            Certificates and ``decisions`` both recomputed for the new
            procedure, radius kind and ``alpha``; ``alpha_not_robust`` is
            kept.

        Notes
        -----
        **The decisions are recomputed, none is kept.**  A decision answers a
        question about one radius kind: "not robust at r" (``-1``) claims
        that even the exact radius (infinitely many draws) of the stored
        kind is below ``r``, and the exact ``multi`` radius
        :math:`\frac{\sigma}{2}(\Phi^{-1}(p_A) - \Phi^{-1}(p_B))` exceeds
        the exact ``mono`` radius :math:`\sigma\Phi^{-1}(p_A)` whenever
        :math:`p_B < 1 - p_A`, so a ``-1`` of a ``mono`` run can be wrong
        for ``multi``.  Each input's decision at each target radius ``r``
        is therefore computed afresh from its stored statistics at its
        stopping time :math:`\tau` (``n_draws``), exactly as the forward
        run computes it:

        * ``1`` (robust) iff the new certified radius is at least ``r``;
        * ``-1`` (not robust) iff the anytime upper bound on the exact radius
          of the new kind is below ``r``: :math:`\sigma\Phi^{-1}(U_A)` with
          the new procedure's confidence sequence at ``alpha_not_robust``
          (``mono``), or :math:`\frac{\sigma}{2}(\Phi^{-1}(U_A) -
          \Phi^{-1}(L_{I_2}))` with ``alpha_not_robust / 2`` on each
          sequence, :math:`I_2` the selection runner-up (``multi``); never
          when ``alpha_not_robust`` is 0;
        * ``0`` otherwise.  ``1`` takes precedence, so no decision
          contradicts the returned radius.

        The class :math:`A` is the procedure's, which for ``TopClass``,
        ``Bonferroni`` and ``ClassPartitioning`` alike is the first maximum
        of the selection statistics (the forward run's class), and
        :math:`I_2` the first maximum of the others; for soft smoothing the
        statistics are sums of [0, 1]-valued scores, bounded by the same
        sequences.

        **Why the recomputation is valid.**  Conditional on the selection
        draws (which fix :math:`A`, :math:`I_2`, the procedure's buckets and,
        for soft smoothing, each input's map and temperature, and are
        independent of the estimation draws), each confidence sequence at
        level :math:`a` holds simultaneously at every :math:`n`:
        :math:`P(\exists n: p_A > U_n) \le a`, and likewise for the lower
        sequences.  On the event that it holds at every :math:`n`, it holds
        at :math:`n = \tau`, whatever rule chose :math:`\tau` (one made for
        another kind, procedure or ``alpha`` included).  Hence:

        * a ``1`` claims that the exact radius is at least the certified
          one, which is at least ``r``; it is wrong only if the new
          certificate's bounds fail at :math:`\tau`, probability at most the
          new ``alpha`` (the procedure's union bound over its anytime-valid
          bounds);
        * a ``-1`` claims that the exact radius is below ``r``; since
          :math:`p_B \ge p_{I_2}` and both radii increase with
          :math:`p_A` and decrease with :math:`p_B`, the exact radius is at
          most the upper bound unless :math:`p_A > U_A` or
          :math:`p_{I_2} < L_{I_2}` at :math:`\tau`, probability at most
          ``alpha_not_robust`` (``alpha_not_robust / 2`` per sequence for
          ``multi``).

        With a finite class-score constant the exact radius is the
        Lipschitz-aware one; the upper bound is then the envelope form at
        :math:`(U_A, L_{I_2})`, which is monotone in both and at least the
        paper's form (see :func:`_upper_radius`), so the same argument holds.

        So all decisions of an input, over all target radii, are correct
        with probability at least ``1 - alpha - alpha_not_robust``, with
        ``alpha`` the new certificate's level; the certificate itself needs
        only ``alpha``.  A fixed-``n`` interval has no such guarantee at
        :math:`\tau`, which is why it is refused.  Each recertified result
        is valid on its own; reporting the best of several recertifications
        of the same statistics is a selection among them.

        Examples
        --------
        >>> import numpy as np
        >>> from smoothlearn.intervals import ClassPartitioning, TopClass
        >>> from smoothlearn.sequential import (BettingConfidenceSequence,
        ...     SequentialCertificationResult)
        >>> cs = BettingConfidenceSequence()
        >>> res = SequentialCertificationResult(
        ...     prediction=np.array([0]), radius=np.zeros(1),
        ...     pA_lower=np.zeros(1), pB_upper=np.ones(1),
        ...     abstained=np.array([True]), n_bounds=np.ones(1, int),
        ...     selection=np.array([[70, 15, 15]]),
        ...     estimation=np.array([[7_000, 1_500, 1_500]]),
        ...     estimation_sq=np.array([[7_000, 1_500, 1_500]]),
        ...     n0=100, n=10_000, sigma=1.0, alpha=0.005,
        ...     interval=TopClass(binomial=cs), kind="mono",
        ...     smoothing="hard", classes=np.arange(3),
        ...     n_draws=np.array([10_000]), target_radius=np.array([0.65]),
        ...     decisions=np.zeros((1, 1), np.int8), alpha_not_robust=0.005)

        The mono radius is at most 0.58 (upper sequence): not robust at 0.65.

        >>> res.recertify().decisions
        array([[-1]], dtype=int8)

        The multi radius of the same statistics is certified above 0.65: the
        mono "not robust" must not survive the change of kind.

        >>> multi = res.recertify(radius="multi",
        ...                       interval=ClassPartitioning(binomial=cs))
        >>> multi.decisions, round(float(multi.radius[0]), 3)
        (array([[1]], dtype=int8), 0.719)
        """
        procedure = self.interval if interval is None else _resolve_procedure(interval)
        _check_anytime(procedure, "interval")
        kind = self.kind if radius is None else check_kind(radius, "radius")
        alpha = self.alpha if alpha is None else check_scalar_alpha(alpha)
        method = (
            self.radius_method
            if radius_method is None
            else _check_radius_method(radius_method)
        )
        L_logits = (
            self.lipschitz if lipschitz is None else _logit_lipschitz_value(lipschitz)
        )
        score_L = _derive_score_lipschitz(
            L_logits,
            self.n_inputs,
            self.estimation.shape[1],
            self.smoothing,
            self.score_map,
            self.temperature,
        )
        soft = self.smoothing == "soft"
        b, low = _certify_at(
            procedure,
            self.selection,
            self.estimation,
            self.estimation_sq if soft else None,
            self.n_draws,
            kind=kind,
            sigma=self.sigma,
            alpha=alpha,
            score_lipschitz=score_L,
            radius_method=method,
        )
        abst = np.asarray(abstained(b.pA_lower, b.pB_upper, kind), bool).reshape(-1)
        radius = np.where(abst, 0.0, low)
        # Every decision recomputed at each input's stopping time for the new
        # kind and procedure (see Notes); none is carried over.
        up = np.full(radius.shape, np.inf)
        if self.alpha_not_robust > 0 and self.target_radius.size > 0:
            prediction = np.asarray(b.prediction, dtype=np.int64)
            up = _upper_radius(
                procedure.binomial,
                self.estimation,
                self.n_draws,
                prediction,
                _runner_up(self.selection, prediction),
                kind=kind,
                sigma=self.sigma,
                alpha=self.alpha_not_robust,
                score_lipschitz=score_L,
            )
        decisions = _decisions(radius, up, self.target_radius)
        return replace(
            self,
            prediction=_labels(self.classes, b.prediction, abst, self.abstain_label),
            radius=radius,
            pA_lower=np.asarray(b.pA_lower, dtype=np.float64),
            pB_upper=np.asarray(b.pB_upper, dtype=np.float64),
            abstained=abst,
            n_bounds=np.asarray(b.n_bounds, dtype=np.int64),
            alpha=alpha,
            interval=procedure,
            kind=kind,
            decisions=decisions,
            lipschitz=L_logits,
            score_lipschitz=score_L,
            radius_method=method,
        )

    # Its inputs used different numbers of draws: loading a file of this kind
    # always gives this class (see CertificationResult.load).
    _result_type: ClassVar[str] = "sequential"

    def _npz_payload(self) -> tuple[dict, dict]:
        meta, arrays = super()._npz_payload()
        meta["alpha_not_robust"] = self.alpha_not_robust
        arrays.update(
            n_draws=np.asarray(self.n_draws, dtype=np.int64),
            target_radius=np.asarray(self.target_radius, dtype=np.float64),
            decisions=np.asarray(self.decisions, dtype=np.int8),
        )
        return meta, arrays

    @classmethod
    def _fields_from_npz(cls, path, arrays: dict, meta: dict) -> dict:
        fields = super()._fields_from_npz(path, arrays, meta)
        where = os.fspath(path)
        try:
            n_draws = arrays["n_draws"]
            target = arrays["target_radius"]
            decisions = arrays["decisions"]
            alpha_not_robust = float(meta["alpha_not_robust"])
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(
                f"{where!r} is not a complete sequential result file ({exc})."
            ) from exc
        n_inputs = fields["radius"].shape[0]
        ok = (
            n_draws.shape == (n_inputs,)
            and n_draws.dtype.kind in "iu"
            and np.all((n_draws >= 1) & (n_draws <= fields["n"]))
            and target.ndim == 1
            and np.all(np.isfinite(target) & (target >= 0))
            and decisions.shape == (n_inputs, target.size)
            and np.all(np.isin(decisions, (-1, 0, 1)))
            and 0.0 <= alpha_not_robust < 1.0
        )
        if not ok:
            raise ValueError(
                f"{where!r} is a damaged sequential result file: n_draws, "
                "target_radius, decisions or alpha_not_robust are inconsistent."
            )
        fields.update(
            n_draws=n_draws.astype(np.int64),
            target_radius=target.astype(np.float64),
            decisions=decisions.astype(np.int8),
            alpha_not_robust=alpha_not_robust,
        )
        return fields


def _check_anytime(procedure, name: str) -> None:
    binomial = getattr(procedure, "binomial", None)
    if not getattr(binomial, "anytime_valid", False):
        raise ValueError(
            f"The {name!r} parameter must use an anytime-valid interval for "
            "sequentially stopped draws, e.g. "
            "TopClass(binomial=BettingConfidenceSequence()). Got "
            f"{procedure!r} instead: a fixed-n interval loses its guarantee "
            "under a data-dependent stopping rule."
        )


# ---------------------------------------------------------------------------
# The certifier
# ---------------------------------------------------------------------------
class SequentialCertifier(BaseEstimator):
    r"""Sequential certification of a fitted :class:`~smoothlearn.SmoothedClassifier`.

    Instead of ``n`` draws for every input, each input gets draws in
    growing batches until an anytime-valid confidence sequence answers the
    question asked, or until its budget ``n_max`` is spent:

    * **decision mode** (``target_radius`` given): is the input robust at
      each radius ``r``?  It stops when every ``r`` is decided: *robust*
      (the certified radius is at least ``r``) or *not robust* (even with
      infinitely many draws the certificate would stay below ``r``).
    * **largest-radius mode** (``target_radius=None``): the largest radius
      certifiable within the budget; it stops when more draws are not
      expected to add more than ``radius_tol`` to the radius.

    A separate object rather than a ``sequential=True`` flag of
    ``SmoothedClassifier.certify``, because sequential certification has
    its own parameters (target radii, budget, alpha split, schedule), its own
    result (draws and decisions per input) and its own statistical contract
    (time-uniform bounds); the fitted classifier it wraps is not modified.

    Parameters
    ----------
    estimator : SmoothedClassifier
        A fitted smoothed classifier.  Its ``sigma``, ``n0``, ``interval``,
        ``radius``, ``batch_size`` and ``random_state`` are used; its ``n``
        is not (``n_max`` is the budget).  The interval of its procedure is
        replaced by :class:`BettingConfidenceSequence` unless it is already
        anytime-valid.
    target_radius : float, array-like of float or None, default=None
        Radii (> 0) to decide (sorted, duplicates removed, in the columns of
        the result's ``decisions``); None for the largest-radius mode.
    n_max : int, default=100_000
        Budget of estimation draws per input.
    alpha : float, default=None
        Total failure probability of each input's answer, in (0, 1); None
        uses the classifier's ``alpha``.  See Notes for the split.
    robust_share : float, default=0.5
        Share of ``alpha`` that guards the certificate (and the "robust"
        decisions) in decision mode; the rest guards the "not robust"
        decisions.  In largest-radius mode all of ``alpha`` guards the
        certificate.
    n_first : int, default=None
        Draws per input in the first estimation batch.  None: with target
        radii, the fewest draws that could certify the smallest one; else
        at least 100.
    batch_growth : float, default=1.25
        Ratio of the cumulative draws of consecutive batches, > 1.
    radius_tol : float, default=0.01
        Largest-radius mode: stop an input when its radius projected at
        ``n_max`` (same empirical frequencies) exceeds the current one by
        less than this.

    See Also
    --------
    BettingConfidenceSequence : the confidence sequence.
    smoothlearn.SmoothedClassifier.certify : fixed-``n`` certification.

    Notes
    -----
    **Guarantee.**  The procedure's bounds are computed with a confidence
    sequence, valid simultaneously at every number of draws, so the
    certificate at the data-dependent stopping time keeps the guarantee of
    Cohen's CERTIFY: with probability at least ``1 - alpha_robust`` an
    input's returned ``(class, radius)`` is correct.  The class (and the
    buckets of ``ClassPartitioning``) are fixed by the ``n0`` selection
    draws, independent of the estimation draws, so the union bound over the
    procedure's bounds holds uniformly in time too.

    **Alpha accounting** (decision mode).  With
    ``alpha_robust = robust_share * alpha`` and ``alpha_not_robust = alpha -
    alpha_robust``: "robust at r" is wrong only if the lower sequence fails
    (probability at most ``alpha_robust``), "not robust at r" only if the
    upper sequence fails (at most ``alpha_not_robust``; for
    ``radius="multi"`` it is split over the upper sequence of the top class
    and the lower sequence of the selection runner-up).  So each input's
    answers, over all target radii and all looks, are all correct with
    probability at least ``1 - alpha``, including at true probabilities
    exactly at a threshold :math:`p^* = \Phi(r/\sigma)`.  The certificate's
    soundness needs only ``alpha_robust``.  As with CERTIFY, the guarantee
    is per input.

    **Stopping** is free: any rule may use the data seen so far, since the
    bounds are time-uniform.  Inputs that stop are those whose answer is
    decided (decision mode) or whose radius is not expected to grow by
    ``radius_tol`` (largest-radius mode; a heuristic that costs only radius,
    never validity).

    **The trade.**  Time-uniformity costs about :math:`\tfrac12\log n` nats of
    evidence: at the same ``alpha`` and ``n`` the confidence sequence is
    slightly wider than Clopper-Pearson (radius about 1-2 % smaller at
    ``n = 100,000``), and in decision mode the certificate holds at
    ``alpha_robust < alpha``.  In exchange, easy inputs stop after a few
    hundred draws.

    **Supported**: hard and soft smoothing (soft: the (map, temperature)
    of each input is chosen on the ``n0`` selection draws as in
    :meth:`SmoothedClassifier.certify <smoothlearn.SmoothedClassifier.certify>`,
    and the confidence sequence bounds the mean of the [0, 1]-valued scores);
    ``TopClass``, ``Bonferroni`` and ``ClassPartitioning`` with
    ``radius="mono"`` or ``"multi"`` (any procedure with a ``binomial``
    parameter whose partition depends on the selection statistics only).
    Lipschitz-aware and margin radii raise an error: they need a
    sequential bound on the Lipschitz-aware quantities, not implemented.

    References
    ----------
    .. [1] Waudby-Smith & Ramdas, "Estimating means of bounded random
       variables by betting", JRSSB 86(1), 2024.
    .. [2] Voráček, "Improving the Statistical Guarantees of Randomized
       Smoothing", NeurIPS 2024.
    .. [3] Cohen, Rosenfeld & Kolter, "Certified Adversarial Robustness via
       Randomized Smoothing", ICML 2019.

    Examples
    --------
    >>> from sklearn.datasets import load_iris
    >>> from sklearn.linear_model import LogisticRegression
    >>> from smoothlearn import SmoothedClassifier
    >>> from smoothlearn.sequential import SequentialCertifier
    >>> X, y = load_iris(return_X_y=True)
    >>> clf = SmoothedClassifier(LogisticRegression(max_iter=1000), sigma=0.25,
    ...                          random_state=0).fit(X, y)
    >>> seq = SequentialCertifier(clf, target_radius=0.1, n_max=10_000)
    >>> res = seq.certify(X[:3])
    >>> res.decisions.ravel()
    array([1, 1, 1], dtype=int8)
    >>> bool((res.n_draws < 1_000).all())
    True
    """

    _parameter_constraints: ClassVar[dict] = {
        "estimator": [HasMethods(["certify"])],
        "target_radius": [None, Real, "array-like"],
        "n_max": [Interval(Integral, 1, None, closed="left")],
        "alpha": [None, Interval(Real, 0, 1, closed="neither")],
        "robust_share": [Interval(Real, 0, 1, closed="neither")],
        "n_first": [None, Interval(Integral, 1, None, closed="left")],
        "batch_growth": [Interval(Real, 1, None, closed="neither")],
        "radius_tol": [Interval(Real, 0, None, closed="left")],
    }

    def __init__(
        self,
        estimator,
        *,
        target_radius=None,
        n_max=100_000,
        alpha=None,
        robust_share=0.5,
        n_first=None,
        batch_growth=1.25,
        radius_tol=0.01,
    ):
        self.estimator = estimator
        self.target_radius = target_radius
        self.n_max = n_max
        self.alpha = alpha
        self.robust_share = robust_share
        self.n_first = n_first
        self.batch_growth = batch_growth
        self.radius_tol = radius_tol

    def _target_radius(self) -> NDArray[np.float64] | None:
        if self.target_radius is None:
            return None
        r = np.atleast_1d(np.asarray(self.target_radius, dtype=np.float64))
        if r.ndim != 1 or r.size == 0 or not np.all(np.isfinite(r) & (r > 0)):
            raise ValueError(
                "The 'target_radius' parameter of SequentialCertifier must be "
                "None, a float > 0 or a non-empty 1-D array of floats > 0. Got "
                f"{self.target_radius!r} instead."
            )
        return np.unique(r)

    def _procedure(self, clf):
        procedure = _resolve_procedure(clf.interval)
        if getattr(getattr(procedure, "binomial", None), "anytime_valid", False):
            return procedure
        if "binomial" not in procedure.get_params(deep=False):
            raise ValueError(
                "The 'interval' of the SmoothedClassifier must be a procedure "
                "with a 'binomial' parameter (TopClass, Bonferroni, "
                f"ClassPartitioning) for sequential certification. Got {procedure!r}."
            )
        return clone(procedure).set_params(binomial=BettingConfidenceSequence())

    @staticmethod
    def _check_supported(clf) -> None:
        if clf.radius not in ("mono", "multi"):
            raise ValueError(
                "SequentialCertifier supports the 'radius' kinds 'mono' and "
                f"'multi' of SmoothedClassifier. Got {clf.radius!r} instead."
            )

    def certify(self, X: ArrayLike) -> SequentialCertificationResult:
        """Certify every input sequentially.

        Parameters
        ----------
        X : array-like of shape (n_inputs, \\*input_shape), torch Dataset or DataLoader
            A ``Dataset`` or ``DataLoader`` is read a chunk at a time, once per
            round, with the same results (see :mod:`smoothlearn.datasets`).

        Returns
        -------
        SequentialCertificationResult
            The certificates (as :meth:`SmoothedClassifier.certify
            <smoothlearn.SmoothedClassifier.certify>`), the draws used per
            input (``n_draws``) and the decisions per target radius.
        """
        self._validate_params()
        clf = self.estimator
        X = _check_fitted_input(clf, X)  # fitted, parameters valid, shape as at fit
        self._check_supported(clf)
        target_radius = self._target_radius()
        alpha = float(clf.alpha if self.alpha is None else self.alpha)
        if target_radius is None:
            alpha_robust, alpha_not_robust = alpha, 0.0
        else:
            alpha_robust = alpha * float(self.robust_share)
            alpha_not_robust = alpha - alpha_robust
        procedure = self._procedure(clf)
        kind = clf.radius
        sigma = float(clf.sigma)
        n_max = int(self.n_max)
        n_first = self.n_first
        if n_first is None:
            n_first = _first_batch(target_radius, sigma, alpha_robust, n_max)

        soft = clf.smoothing == "soft"
        root = _root_seed(clf.random_state)
        L_logits = _logit_lipschitz_of(clf)  # None, or the logits' guaranteed bound
        score_lipschitz = None
        if soft:
            # the selection of SmoothedClassifier.certify (same function,
            # candidates and rule), for the budget n_max
            sel = soft_selection(
                lambda X_, stages, desc, checkpoint, seed, **_: _engine_fields(
                    clf, X_, stages, seed=seed, desc=desc
                ),
                X,
                procedure=procedure,
                L_logits=L_logits,
                n_classes=len(clf.classes_),
                simplex_map=clf.simplex_map,
                temperature=clf.temperature,
                n0=clf.n0,
                n=n_max,
                alpha=alpha_robust,
                radius=clf.radius,
                sigma=clf.sigma,
                radius_method=clf.radius_method,
                random_state=None,
                seed=root,
            )
            selection = sel.sums[sel.chosen, np.arange(X.shape[0])]
            score_map, temperature = sel.maps, sel.temps

            def statistic(indices=None, codes=sel.codes, temps=sel.temps):
                # the estimation statistic of X[indices], positions in it
                if indices is not None:
                    codes, temps = codes[indices], temps[indices]
                return _ChosenScoreSums(codes, temps)

            score_lipschitz = _derive_score_lipschitz(
                L_logits,
                X.shape[0],
                len(clf.classes_),
                "soft",
                score_map,
                temperature,
            )
        else:
            fields = _engine_fields(
                clf, X, [(STAGE_SELECTION, clf.n0, "hard")], seed=root, desc="selection"
            )
            selection = fields[STAGE_SELECTION]["sums"]
            score_map = temperature = None

        def draw(indices, m, round_index):
            # A fresh estimation stream per round: seeds derived from the root
            # and the round, so no draw is ever reused.  Each round is one
            # stage of the engine (workers, devices) over the active inputs.
            fields = _engine_fields(
                clf,
                X[indices],
                [(STAGE_ESTIMATION, m, statistic(indices) if soft else "hard")],
                seed=_block_seed(root, 0, STAGE_ESTIMATION, round_index),
                desc=f"round {round_index}",
            )[STAGE_ESTIMATION]
            sums = fields["sums"]
            return sums, fields["sums_sq"] if soft else sums.copy()

        out = _run_sequential(
            draw,
            selection,
            procedure=procedure,
            kind=kind,
            sigma=sigma,
            target_radius=target_radius,
            alpha_robust=alpha_robust,
            alpha_not_robust=alpha_not_robust,
            n_max=n_max,
            n_first=int(n_first),
            batch_growth=float(self.batch_growth),
            radius_tol=float(self.radius_tol),
            soft=soft,
            score_lipschitz=score_lipschitz,
            radius_method=clf.radius_method,
        )
        abst = out["abstained"]
        return SequentialCertificationResult(
            prediction=_labels(
                clf.classes_, out["prediction"], abst, clf.abstain_label_
            ),
            radius=np.where(abst, 0.0, out["radius"]),
            pA_lower=out["pA_lower"],
            pB_upper=out["pB_upper"],
            abstained=abst,
            n_bounds=out["n_bounds"],
            selection=selection,
            estimation=out["estimation"] if soft else out["estimation"].astype(int),
            estimation_sq=(
                out["estimation_sq"] if soft else out["estimation_sq"].astype(int)
            ),
            n0=int(clf.n0),
            n=n_max,
            sigma=sigma,
            alpha=alpha_robust,
            interval=procedure,
            kind=kind,
            smoothing=clf.smoothing,
            classes=clf.classes_,
            abstain_label=clf.abstain_label_,
            score_map=score_map,
            temperature=temperature,
            lipschitz=L_logits if soft else None,
            score_lipschitz=score_lipschitz,
            radius_method=clf.radius_method,
            n_draws=out["n_draws"],
            target_radius=(np.zeros(0) if target_radius is None else target_radius),
            decisions=out["decisions"],
            alpha_not_robust=alpha_not_robust,
        )
