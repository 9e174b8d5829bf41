r"""Anytime-valid confidence sequence for a [0, 1] mean, by betting.

The interval of sequential certification (:mod:`smoothlearn.sequential`);
its numeric core, with the validity proof, is :mod:`smoothlearn._confseq`.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, NDArray

from .._confseq import _log_capital, _lower_sequence
from .._validation import check_alpha, check_sufficient_statistics
from ._base import IntervalEstimator

__all__ = ["BettingConfidenceSequence"]


class BettingConfidenceSequence(IntervalEstimator):
    r"""Anytime-valid confidence sequence for a [0, 1] mean, by betting.

    The bounds hold **simultaneously for every number of draws**:
    ``P(exists n: mean < lower(k_n, n, alpha)) <= alpha``, where ``k_n`` is
    the running count (or sum of [0, 1]-valued scores) after ``n`` draws.
    They may therefore be evaluated after every batch of draws and the
    sampling stopped at any data-dependent time (optional stopping), which a
    fixed-``n`` interval such as Clopper-Pearson does not allow.  At a single
    fixed ``n`` they are valid too, and somewhat wider than Clopper-Pearson:
    that width is the price of the time-uniform guarantee (see Notes).

    Accepts Bernoulli counts and sums of [0, 1]-valued scores (soft
    smoothing); ``sum_sq`` is accepted and ignored.

    Attributes
    ----------
    requires_counts : bool
        False: sums of [0, 1]-valued scores are accepted.
    guaranteed : bool
        True: the coverage holds for every true mean and every ``n``.
    anytime_valid : bool
        True: the coverage holds uniformly over ``n`` (any stopping rule).

    Notes
    -----
    The lower bound at level ``alpha`` is

    .. math::

        L_n = \inf\{m \in [0, 1] : K_n(m) < 1/\alpha\}, \qquad
        K_n(m) = \frac{B(k + 1, n - k + 1)\,\bigl(1 - I_m(k + 1, n - k + 1)\bigr)}
                      {m^k (1 - m)^{n - k + 1}},

    where :math:`K_n(m)` is the capital of a gambler who, against
    :math:`H_0: \mu \le m`, spreads a unit stake uniformly over the constant
    bets :math:`X \mapsto 1 + \frac{\theta}{m}(X - m)`, :math:`\theta \in
    [0, 1)` (equivalently: the Bernoulli likelihood ratio mixed over a uniform
    prior on :math:`q \in [m, 1]`).  :math:`K_n(m)` is a non-negative
    supermartingale with :math:`K_0 = 1` under every distribution on [0, 1]
    with mean at most ``m`` (a martingale for Bernoulli draws at mean
    ``m``), so by Ville's inequality
    :math:`P(\exists n: K_n(\mu) \ge 1/\alpha) \le \alpha`; and
    :math:`\mu < L_n` implies :math:`K_n(\mu) \ge 1/\alpha`.  The full
    argument, including why the composite null :math:`\mu \le m` is covered,
    is in :mod:`smoothlearn._confseq`.  The upper bound is the reflection
    ``1 - lower(n - k, n, alpha)``; :meth:`interval` spends ``alpha / 2`` per
    side.

    **Coverage**: guaranteed and time-uniform; exact in the sense of Ville's
    inequality for Bernoulli draws (the capital is a martingale), conservative
    for other [0, 1] scores (the bound then ignores that their variance is
    below :math:`\mu(1 - \mu)`).

    **Price of the time-uniform guarantee**: the mixture pays about
    :math:`\tfrac12 \log n` nats of evidence over a bet tuned to the true
    mean.  At ``n = 100,000`` and ``alpha = 0.001`` the lower bound is
    0.98856 for ``k = 99,000`` (Clopper-Pearson: 0.98899) and 0.99991 for
    ``k = n`` (Clopper-Pearson: 0.99993), i.e. a Cohen radius smaller by
    about 0.6 % and 1.8 % respectively.

    References
    ----------
    .. [1] Waudby-Smith & Ramdas, "Estimating means of bounded random
       variables by betting", JRSSB 86(1), 2024.
    .. [2] Robbins, "Statistical methods related to the law of the iterated
       logarithm", Ann. Math. Statist. 41, 1970.
    .. [3] Ville, "Étude critique de la notion de collectif", 1939.

    Examples
    --------
    >>> from smoothlearn.sequential import BettingConfidenceSequence
    >>> cs = BettingConfidenceSequence()
    >>> round(float(cs.lower(99_000, 100_000, alpha=0.001)), 5)
    0.98856
    >>> cs.lower([0, 50, 100], 100, alpha=0.05).round(4)
    array([0.   , 0.351, 0.956])
    >>> lo, hi = cs.interval(500, 1000, alpha=0.01)
    >>> round(float(lo), 4), round(float(hi), 4)
    (0.4372, 0.5628)

    Its e-value (the capital) against ``H0: mean <= m``:

    >>> round(float(cs.capital(60, 60, m=0.9)), 1)
    91.1
    """

    requires_counts = False
    guaranteed = True
    anytime_valid = True
    # K_n(m) increases with k (every bet does), so both bounds increase with k.
    _monotone_in_k = True

    def _lower(self, k, n, alpha, sum_sq):
        return _lower_sequence(k, n, alpha)

    def capital(self, k: ArrayLike, n: ArrayLike, m: ArrayLike) -> NDArray[np.float64]:
        r"""The betting capital :math:`K_n(m)` against :math:`H_0: \mu \le m`.

        An e-process: under :math:`H_0`, :math:`P(\exists n: K_n(m) \ge
        1/\alpha) \le \alpha`, so :math:`\min(1, 1/K_n(m))` is an anytime-valid
        p-value.

        Parameters
        ----------
        k : array-like
            Count of successes, or sum of [0, 1]-valued scores.
        n : array-like of int
            Number of draws.
        m : array-like
            Null value of the mean, in the open (0, 1).

        Returns
        -------
        capital : ndarray of float, broadcast shape of the inputs
        """
        k, n, _ = check_sufficient_statistics(k, n, None, integer=False)
        m = check_alpha(m, "m")  # the same open-(0, 1) check
        out = np.exp(_log_capital(k, n, m))
        return out[()] if out.ndim == 0 else out
