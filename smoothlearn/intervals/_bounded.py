"""Bounded-mean confidence bounds: Hoeffding and empirical Bernstein.

Both bound the mean of i.i.d. [0, 1]-valued scores (soft class scores, or
Bernoulli draws) from the sufficient statistics ``(sum, sum_sq, n)``, and are
valid for every distribution on [0, 1] and every ``n``.
"""

from __future__ import annotations

import numpy as np

from ._base import IntervalEstimator

__all__ = ["EmpiricalBernstein", "Hoeffding"]


class Hoeffding(IntervalEstimator):
    r"""Hoeffding's confidence bounds on the mean of [0, 1]-valued draws.

    ``k`` is the sum of the draws (the count of successes for Bernoulli
    draws); ``sum_sq`` is accepted and ignored.

    Notes
    -----
    With :math:`\hat\mu = k / n`,

    .. math::

        \underline{\mu} = \hat\mu - \sqrt{\frac{\ln(1/\alpha)}{2n}}, \qquad
        \overline{\mu} = \hat\mu + \sqrt{\frac{\ln(1/\alpha)}{2n}},

    clipped to [0, 1].  **Guaranteed** (``guaranteed = True``): by
    Hoeffding's inequality :math:`P(\mu - \hat\mu \ge t) \le e^{-2nt^2}`,
    each one-sided bound fails with probability at most ``alpha`` for every
    distribution on [0, 1] and every ``n``; it is conservative, and much
    wider than Clopper-Pearson for counts far from ``n / 2``.

    References
    ----------
    .. [1] Hoeffding, "Probability inequalities for sums of bounded random
       variables", JASA 58 (1963), Theorem 1.

    Examples
    --------
    >>> from smoothlearn.intervals import Hoeffding
    >>> round(float(Hoeffding().lower(4200.5, 10_000, alpha=0.001)), 6)
    0.401465
    """

    requires_counts = False
    guaranteed = True
    _monotone_in_k = True

    def _lower(self, k, n, alpha, sum_sq):
        return k / n - np.sqrt(-np.log(alpha) / (2.0 * n))


class EmpiricalBernstein(IntervalEstimator):
    r"""Empirical Bernstein bounds (Maurer & Pontil 2009, Theorem 4).

    ``k`` is the sum of the [0, 1]-valued draws and ``sum_sq`` the sum of
    their squares (``None`` means Bernoulli draws, ``sum_sq = k``).

    Notes
    -----
    With :math:`\hat\mu = k / n`, the unbiased sample variance
    :math:`V = (\mathrm{sum\_sq} - k^2 / n) / (n - 1)` (clipped at 0 against
    rounding) and :math:`L = \ln(2 / \alpha)`,

    .. math::

        \underline{\mu} = \hat\mu - \sqrt{\frac{2 V L}{n}}
                          - \frac{7 L}{3 (n - 1)}, \qquad
        \overline{\mu} = \hat\mu + \sqrt{\frac{2 V L}{n}}
                         + \frac{7 L}{3 (n - 1)},

    clipped to [0, 1]; for ``n = 1`` the bounds are the trivial 0 and 1.
    Maurer & Pontil's Theorem 4 is a one-sided statement at confidence
    ``1 - delta`` whose ``ln(2 / delta)`` already pays for the union of the
    Bennett bound and the variance bound, so each one-sided bound here fails
    with probability at most ``alpha`` and :meth:`interval` splits ``alpha``
    over its two sides.  **Guaranteed** (``guaranteed = True``) for every
    distribution on [0, 1] and every ``n``; conservative.

    The shift grows with ``V``, so replacing ``sum_sq`` by any larger value
    (at most ``k``, since :math:`x^2 \le x` on [0, 1]) keeps the bound
    valid, only wider; the multi-class procedures use this for merged
    buckets.

    References
    ----------
    .. [1] Maurer & Pontil, "Empirical Bernstein bounds and sample variance
       penalization", COLT 2009, Theorem 4.
    .. [2] Delattre, Araujo, Barthélemy & Allauzen, "The Lipschitz-Variance-
       Margin Tradeoff for Enhanced Randomized Smoothing", ICLR 2024.

    Examples
    --------
    >>> from smoothlearn.intervals import EmpiricalBernstein
    >>> eb = EmpiricalBernstein()
    >>> n, mean, var = 100_000, 0.5, 0.09
    >>> total, total_sq = n * mean, (n - 1) * var + n * mean**2
    >>> round(float(eb.upper(total, n, alpha=1e-4, sum_sq=total_sq) - mean), 6)
    0.004453
    """

    requires_counts = False
    guaranteed = True

    def _lower(self, k, n, alpha, sum_sq):
        several = n > 1
        n_minus_1 = np.where(several, n - 1.0, 1.0)
        var = np.maximum((sum_sq - k * k / n) / n_minus_1, 0.0)
        log_term = np.log(2.0 / alpha)
        shift = np.sqrt(2.0 * var * log_term / n) + 7.0 * log_term / (3.0 * n_minus_1)
        return np.where(several, k / n - shift, 0.0)
