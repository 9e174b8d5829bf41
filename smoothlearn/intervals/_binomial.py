"""Binomial confidence bounds: Clopper-Pearson, Wilson, Agresti-Coull, Jeffreys.

All four take integer counts ``k`` of successes among ``n`` Bernoulli draws
and broadcast over arrays of any shape.  ``alpha`` is the failure probability
of the statement returned: one-sided for :meth:`lower` and :meth:`upper`,
total (``alpha / 2`` per side) for :meth:`interval`.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray
from scipy.special import (
    betainc,
    betaincc,
    betainccinv,
    betaincinv,
    betaln,
    ndtri,
    xlog1py,
    xlogy,
)

from ._base import IntervalEstimator

__all__ = ["AgrestiCoull", "ClopperPearson", "Jeffreys", "Wilson"]


#: Relative error of scipy's Beta inverse, estimated by one Newton step on
#: the forward function, above which the inverse is recomputed by bisection.
_POLISH_RTOL = 1e-12
_BITS_OF_ONE = np.float64(1.0).view(np.int64)


def _beta_inverse(a, b, alpha, *, upper):
    r"""Root :math:`x` of :math:`I_x(a, b) = \alpha` (or of :math:`1 - I_x = \alpha`).

    scipy's ``betaincinv`` / ``betainccinv`` (Boost) are fast but not
    reliable for large ``a + b``: ``betaincinv(1000, 132578328, 0.25)``
    returns 1.52e-5, twice the root 7.38e-6 (``betainc`` there is 1.0), and
    errors of 1e-8 relative occur at ``n ~ 1e7``; for tiny ``alpha`` they
    may return NaN.  The forward functions ``betainc`` / ``betaincc`` are
    accurate (to ~1e-13 relative against mpmath at these points) and about
    20 times cheaper, so every root is checked: one Newton step
    :math:`\delta = (I_x - \alpha) / f(x)`, with :math:`f` the Beta density
    computed in logs, estimates its error, and where
    :math:`|\delta| > 10^{-12} x` (or the root is NaN) the root is
    recomputed by bisection on the float64 bit patterns of :math:`[0, 1]`
    (monotone as integers), 62 forward evaluations to the last ulp.  The
    bisection returns the largest ``x`` with :math:`I_x \le \alpha`
    (``upper=False``) or the smallest with :math:`1 - I_x \le \alpha`
    (``upper=True``): the side on which a lower, resp. upper, confidence
    bound is valid; a NaN from the forward function moves it to that side.
    """
    fwd, inv = (betaincc, betainccinv) if upper else (betainc, betaincinv)
    a, b, alpha = np.broadcast_arrays(a, b, alpha)
    x = inv(a, b, alpha)
    with np.errstate(all="ignore"):
        log_density = xlogy(a - 1.0, x) + xlog1py(b - 1.0, -x) - betaln(a, b)
        step = np.abs(fwd(a, b, x) - alpha) * np.exp(-log_density)
    bad = ~(step <= _POLISH_RTOL * x)  # NaN roots and NaN steps included
    if not bad.any():
        return x
    a, b, alpha = a[bad], b[bad], alpha[bad]
    lo = np.zeros(a.shape, np.int64)  # the bits of 0.0
    hi = np.full(a.shape, _BITS_OF_ONE)
    # lower: I(lo) <= alpha < I(hi); upper: Q(hi) <= alpha < Q(lo).
    for _ in range(64):
        if not (hi - lo > 1).any():
            break
        mid = lo + (hi - lo) // 2
        below = fwd(a, b, mid.view(np.float64)) <= alpha
        if upper:
            hi, lo = np.where(below, mid, hi), np.where(below, lo, mid)
        else:
            lo, hi = np.where(below, mid, lo), np.where(below, hi, mid)
    x = np.array(x)  # an array even for scalar input (a ufunc gives a scalar)
    x[bad] = (hi if upper else lo).view(np.float64)
    return x


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
    #: Beyond 2**40 draws the forward incomplete beta that checks every root
    #: (see ``_beta_inverse``) is not verified; 2**53 would be the float64
    #: limit of exact counts.
    max_n = 2**40
    #: Relative outward margin.  scipy's Beta inverses (Boost) err by up to
    #: 630 ulps against 35-digit mpmath roots for n <= 5,000, by 1e-8 at
    #: n ~ 1e9 and by a factor 2 at worst (``_beta_inverse``), which then
    #: checks and recomputes them against the forward function.  What is
    #: left is the forward function's own error: against exact binomial sums
    #: (5,725 random cases, n <= 2**40, min(k, n - k) <= 2,000) the roots are
    #: within 9.1e-11 relative; the margin is ten times that, invisible in a
    #: radius.
    _rtol = 1e-9

    def _lower(self, k, n, alpha, sum_sq):
        pos = k > 0
        out = _beta_inverse(np.where(pos, k, 1.0), n - k + 1.0, alpha, upper=False)
        return np.where(pos, out, 0.0)

    def _upper(self, k, n, alpha, sum_sq):
        # Direct complementary inverse: accurate for small upper bounds too.
        below = k < n
        out = _beta_inverse(k + 1.0, np.where(below, n - k, 1.0), alpha, upper=True)
        return np.where(below, out, 1.0)


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
        # (p + c - root) / (1 + z^2/n) with c = z^2/(2n), rationalised: the
        # numerator times (p + c + root) is p^2 (1 + z^2/n), so the bound is
        # p^2 / (p + c + root), free of the cancellation of the textbook form
        # near p = 1 (where that form was not even monotone in alpha).
        out = p * p / (p + z2 / (2.0 * n) + root)
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
        q_tilde = (n - k + z2 / 2.0) / n_tilde  # 1 - p_tilde, without cancellation
        root = z * np.sqrt(p_tilde * q_tilde / n_tilde)
        # For k >= n/2, 1 minus the distance to 1: near k = n (n ~ 2**53)
        # p_tilde itself rounds away most of that distance, and the bound was
        # not monotone in alpha there.  The branch depends on (k, n) only.
        out = np.where(2.0 * k >= n, 1.0 - (q_tilde + root), p_tilde - root)
        return np.where(k > 0, out, 0.0)

    def _upper(self, k, n, alpha, sum_sq):
        # The reflection 1 - lower(n - k) in closed form: with 1 - p_tilde(n - k)
        # = p_tilde(k) it is p_tilde(k) + z sqrt(...).  Computing it directly
        # avoids the cancellation of 1 - (1 - tiny) near k = 0, which at
        # n ~ 2**36 made the upper bound smaller at a smaller alpha.
        z = _z(alpha)
        z2 = z * z
        n_tilde = n + z2
        p_tilde = (k + z2 / 2.0) / n_tilde
        out = p_tilde + z * np.sqrt(p_tilde * (1.0 - p_tilde) / n_tilde)
        return np.where(k < n, out, 1.0)


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
    _rtol = 1e-9  # likewise

    def _lower(self, k, n, alpha, sum_sq):
        pos = k > 0
        out = _beta_inverse(k + 0.5, n - k + 0.5, alpha, upper=False)
        return np.where(pos, out, 0.0)

    def _upper(self, k, n, alpha, sum_sq):
        below = k < n
        out = _beta_inverse(k + 0.5, n - k + 0.5, alpha, upper=True)
        return np.where(below, out, 1.0)
