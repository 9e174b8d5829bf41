"""Binomial confidence bounds: Clopper-Pearson, Wilson, Agresti-Coull, Jeffreys.

All four take integer counts ``k`` of successes among ``n`` Bernoulli draws
and broadcast over arrays of any shape.  ``alpha`` is the failure probability
of the statement returned: one-sided for :meth:`lower` and :meth:`upper`,
total (``alpha / 2`` per side) for :meth:`interval`.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray
from scipy.special import betainccinv, betaincinv, ndtri

from ._base import IntervalEstimator

__all__ = ["AgrestiCoull", "ClopperPearson", "Jeffreys", "Wilson"]


def _z(alpha: NDArray[np.float64]) -> NDArray[np.float64]:
    """One-sided normal quantile ``Phi^{-1}(1 - alpha)``, accurate for tiny alpha."""
    return -ndtri(alpha)


class ClopperPearson(IntervalEstimator):
    r"""Clopper-Pearson ("exact") binomial confidence bounds.

    The bounds invert the binomial test: the lower bound is the smallest
    ``p`` that a one-sided test at level ``alpha`` does not reject.

    Notes
    -----
    With :math:`B_q(a, b)` the ``q``-quantile of the Beta distribution,

    .. math::

        \underline{p} = B_{\alpha}(k, n - k + 1) \;(0 \text{ if } k = 0),
        \qquad
        \overline{p} = B_{1 - \alpha}(k + 1, n - k) \;(1 \text{ if } k = n).

    **Guaranteed** (``guaranteed = True``): each one-sided bound fails with
    probability at most ``alpha`` for every true ``p`` and every ``n``
    (conservative: the coverage is at least, and generally above,
    ``1 - alpha``).  ``lower(k, n, alpha)`` equals statsmodels'
    ``proportion_confint(k, n, alpha=2 * alpha, method="beta")[0]``, the call
    of Cohen et al.'s code: smoothlearn's ``alpha`` is the failure
    probability of the one bound it returns.

    References
    ----------
    .. [1] Clopper & Pearson, "The use of confidence or fiducial limits
       illustrated in the case of the binomial", Biometrika 26 (1934).
    .. [2] Cohen, Rosenfeld & Kolter, "Certified Adversarial Robustness via
       Randomized Smoothing", ICML 2019.

    Examples
    --------
    >>> from smoothlearn.intervals import ClopperPearson
    >>> cp = ClopperPearson()
    >>> round(float(cp.lower(99_000, 100_000, alpha=0.001)), 6)
    0.988989
    >>> cp.lower([0, 5, 10], 10, alpha=0.05).round(4)
    array([0.    , 0.2224, 0.7411])
    >>> lo, hi = cp.interval(50_000, 100_000, alpha=0.002)
    >>> round(float(lo), 6), round(float(hi), 6)
    (0.495109, 0.504891)
    """

    requires_counts = True
    guaranteed = True
    _monotone_in_k = True
    #: Beyond 2**40 draws scipy's incomplete-beta inverse (Boost) is not
    #: accurate to the last bits: lower(k) > lower(k + 1) by 1.5e-10 at
    #: n ~ 2**53 and by 1e-13 at n ~ 6e14, found by random search; none in
    #: 2,000,000 random (k, n, alpha) with 2**30 <= n <= 2**40, alpha >= 1e-120.
    max_n = 2**40
    #: Boost's Beta inverses stop short of full precision: against 35-digit
    #: mpmath roots they err by up to 360 ulps (n <= 500) and 560 ulps
    #: (n <= 5,000), in either direction; every bound is moved outward by a
    #: relative 1e-10 (450,000 ulps), invisible in a radius.
    _rtol = 1e-10

    def _lower(self, k, n, alpha, sum_sq):
        pos = k > 0
        out = betaincinv(np.where(pos, k, 1.0), n - k + 1.0, alpha)
        # For alpha below ~1e-150 scipy's inverse returns NaN where the bound
        # is tiny; 0 is then the (valid, conservative) lower bound.
        return np.where(pos & ~np.isnan(out), out, 0.0)

    def _upper(self, k, n, alpha, sum_sq):
        # Direct complementary inverse: accurate for small upper bounds too.
        below = k < n
        out = betainccinv(k + 1.0, np.where(below, n - k, 1.0), alpha)
        return np.where(below & ~np.isnan(out), out, 1.0)  # NaN: see _lower


class Wilson(IntervalEstimator):
    r"""Wilson score binomial confidence bounds (one-sided).

    Notes
    -----
    With :math:`\hat p = k / n` and :math:`z = \Phi^{-1}(1 - \alpha)`,

    .. math::

        \underline{p} = \frac{\hat p + \frac{z^2}{2n}
            - z\sqrt{\frac{\hat p(1 - \hat p)}{n} + \frac{z^2}{4n^2}}}
            {1 + z^2 / n},

    and the upper bound by symmetry (``+`` in front of the root).  The lower
    bound is 0 at ``k = 0`` and the upper bound 1 at ``k = n``.

    **Approximate** (``guaranteed = False``): the coverage is ``1 - alpha``
    only asymptotically; for some ``p`` and ``n`` it is below ``1 - alpha``.
    Do not use it where a certificate must hold; see
    :func:`smoothlearn.stats.binomial_coverage`.  Matches statsmodels'
    ``proportion_confint(k, n, alpha=2 * alpha, method="wilson")``.

    References
    ----------
    .. [1] Wilson, "Probable inference, the law of succession, and statistical
       inference", JASA 22 (1927).
    .. [2] Brown, Cai & DasGupta, "Interval estimation for a binomial
       proportion", Statistical Science 16 (2001).

    Examples
    --------
    >>> from smoothlearn.intervals import Wilson
    >>> round(float(Wilson().lower(5, 10, alpha=0.05)), 4)
    0.2693
    """

    requires_counts = True
    guaranteed = False
    _monotone_in_k = True

    def _lower(self, k, n, alpha, sum_sq):
        z = _z(alpha)
        z2 = z * z
        p = k / n
        root = z * np.sqrt(p * (1.0 - p) / n + z2 / (4.0 * n * n))
        out = (p + z2 / (2.0 * n) - root) / (1.0 + z2 / n)
        return np.where(k > 0, out, 0.0)


class AgrestiCoull(IntervalEstimator):
    r"""Agresti-Coull ("add z^2/2 successes and failures") binomial bounds.

    Notes
    -----
    With :math:`z = \Phi^{-1}(1 - \alpha)`, :math:`\tilde n = n + z^2` and
    :math:`\tilde p = (k + z^2 / 2) / \tilde n`,

    .. math::

        \underline{p} = \tilde p - z \sqrt{\tilde p (1 - \tilde p) / \tilde n},

    clipped to [0, 1], the upper bound with ``+``; the lower bound is 0 at
    ``k = 0`` and the upper bound 1 at ``k = n``.

    **Approximate** (``guaranteed = False``): asymptotic coverage
    ``1 - alpha``, not guaranteed for every ``p`` and ``n``.  Matches
    statsmodels' ``proportion_confint(k, n, alpha=2 * alpha,
    method="agresti_coull")``.

    References
    ----------
    .. [1] Agresti & Coull, "Approximate is better than 'exact' for interval
       estimation of binomial proportions", The American Statistician 52 (1998).

    Examples
    --------
    >>> from smoothlearn.intervals import AgrestiCoull
    >>> round(float(AgrestiCoull().upper(5, 10, alpha=0.05)), 4)
    0.7307
    """

    requires_counts = True
    guaranteed = False
    _monotone_in_k = True

    def _lower(self, k, n, alpha, sum_sq):
        z = _z(alpha)
        z2 = z * z
        n_tilde = n + z2
        p_tilde = (k + z2 / 2.0) / n_tilde
        out = p_tilde - z * np.sqrt(p_tilde * (1.0 - p_tilde) / n_tilde)
        return np.where(k > 0, out, 0.0)


class Jeffreys(IntervalEstimator):
    r"""Jeffreys (Bayesian, Beta(1/2, 1/2) prior) binomial bounds.

    Notes
    -----
    .. math::

        \underline{p} = B_{\alpha}(k + \tfrac12, n - k + \tfrac12)
        \;(0 \text{ if } k = 0), \qquad
        \overline{p} = B_{1 - \alpha}(k + \tfrac12, n - k + \tfrac12)
        \;(1 \text{ if } k = n),

    the quantiles of the Jeffreys posterior, with the usual boundary
    convention of Brown, Cai & DasGupta (2001).  statsmodels'
    ``method="jeffreys"`` omits that convention (its lower bound at ``k = 0``
    is positive); elsewhere the two agree.

    **Approximate** (``guaranteed = False``): coverage close to ``1 - alpha``
    on average over ``p`` but below it for some ``p`` and ``n``.

    References
    ----------
    .. [1] Brown, Cai & DasGupta, "Interval estimation for a binomial
       proportion", Statistical Science 16 (2001).

    Examples
    --------
    >>> from smoothlearn.intervals import Jeffreys
    >>> Jeffreys().lower([0, 3], 10, alpha=0.05).round(4)
    array([0.    , 0.1173])
    """

    requires_counts = True
    guaranteed = False
    _monotone_in_k = True
    max_n = 2**40  # the Beta inverse of ClopperPearson: see there
    _rtol = 1e-10  # likewise

    def _lower(self, k, n, alpha, sum_sq):
        pos = k > 0
        out = betaincinv(k + 0.5, n - k + 0.5, alpha)
        return np.where(pos & ~np.isnan(out), out, 0.0)  # NaN: tiny alpha

    def _upper(self, k, n, alpha, sum_sq):
        below = k < n
        out = betainccinv(k + 0.5, n - k + 0.5, alpha)
        return np.where(below & ~np.isnan(out), out, 1.0)  # NaN: tiny alpha
