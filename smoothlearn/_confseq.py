r"""Anytime-valid confidence sequences for a [0, 1]-bounded mean, by betting.

The numeric core of :mod:`smoothlearn.sequential`.  Everything here is a pure,
vectorised function of the sufficient statistics ``(k, n)`` (the count of
successes, or the sum of [0, 1]-valued scores, after ``n`` draws), so the
bounds of many inputs are computed at once and can be recomputed from stored
statistics.

The capital process
-------------------
To test :math:`H_0: \mu \le m` a gambler starts with capital 1 and, before
each draw :math:`X_i \in [0, 1]`, bets a fraction of it that the mean exceeds
``m``: the capital is multiplied by :math:`1 + \lambda (X_i - m)` with
:math:`\lambda \in [0, 1/m)`.  Writing :math:`\lambda = \theta / m` with the
*Kelly fraction* :math:`\theta \in [0, 1)`, on Bernoulli draws the capital
after ``n`` draws with ``k`` successes is

.. math::

    K_n^\theta(m) = \Big(1 + \theta\,\frac{1 - m}{m}\Big)^{k} (1 - \theta)^{n - k}.

The mixture over :math:`\theta \sim \mathrm{Uniform}(0, 1)` has a closed
form: the substitution :math:`q = m + (1 - m)\theta` turns it into the
likelihood ratio of :math:`\mathrm{Bernoulli}(q)` against
:math:`\mathrm{Bernoulli}(m)`, mixed over a uniform prior on :math:`q \in
[m, 1]`,

.. math::

    K_n(m) = \int_0^1 K_n^\theta(m)\, d\theta
           = \frac{B(k + 1, n - k + 1)\,\bigl(1 - I_m(k + 1, n - k + 1)\bigr)}
                  {m^k (1 - m)^{n - k + 1}},

with :math:`B` the beta function and :math:`I_m` the regularised incomplete
beta function.

Validity for the composite null
-------------------------------
For every :math:`\theta` and every :math:`x \in [0, 1]`, the map
:math:`x \mapsto a^x b^{1-x}` with :math:`a = 1 + \theta(1-m)/m`,
:math:`b = 1 - \theta` is convex, so it lies below its chord:
:math:`a^x b^{1 - x} \le x a + (1 - x) b = 1 + \frac{\theta}{m}(x - m)`.
Hence, for *any* draws in [0, 1] whose conditional mean is at most ``m``,

.. math::

    E\big[a^{X_i} b^{1 - X_i} \mid \mathcal F_{i-1}\big]
    \le 1 + \frac{\theta}{m}\,(E[X_i \mid \mathcal F_{i-1}] - m) \le 1,

so each :math:`K_n^\theta(m) = a^{k} b^{n - k}` (``k`` the running sum) is a
non-negative supermartingale with :math:`K_0 = 1`, and so is the mixture
(Tonelli).  For Bernoulli draws the chord bound is an equality, the capital
is the exact mixture likelihood ratio, and it is a martingale at
:math:`\mu = m`.  Composite null: the prior sits on :math:`q \ge m` (bets
:math:`\theta \ge 0`), which is what makes every :math:`\mu \le m`, not only
the boundary :math:`\mu = m`, a supermartingale; a prior with mass on
:math:`q < m` would not be valid for :math:`\mu < m`.

Ville's inequality (Ville 1939) then gives
:math:`P(\exists n: K_n(m) \ge 1/\alpha) \le \alpha`, **simultaneously over
all n**: the test may be run after every batch and stopped at any
data-dependent time.

Confidence sequence
-------------------
:math:`L_n = \inf\{m : K_n(m) < 1/\alpha\}` is a lower confidence sequence:
if :math:`\mu < L_n` then :math:`K_n(\mu) \ge 1/\alpha`, so
:math:`P(\exists n: \mu < L_n) \le \alpha`.  For each :math:`\theta`,
:math:`K_n^\theta(m)` is non-increasing in ``m`` (both :math:`a` and
:math:`b` are), hence so is the mixture, and :math:`L_n` is found by
bisection; the bisection returns the lower end of its bracket, where
:math:`K_n \ge 1/\alpha` was checked, so rounding only errs on the safe side.
Upper sequences follow by reflection (:math:`X \mapsto 1 - X`).

References
----------
.. [1] Waudby-Smith & Ramdas, "Estimating means of bounded random variables
   by betting", JRSSB 86(1), 2024.
.. [2] Ville, "Étude critique de la notion de collectif", 1939.
.. [3] Robbins, "Statistical methods related to the law of the iterated
   logarithm", Ann. Math. Statist. 41, 1970 (mixture martingales).
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy.special import betaincc, betaln, xlog1py, xlogy

__all__: list[str] = []

# Root finding: stop once the bracket is this narrow (absolute, on the mean).
_XTOL = 1e-13
_MAX_ITER = 100


def _log_capital(k: ArrayLike, n: ArrayLike, m: ArrayLike) -> NDArray[np.float64]:
    r"""Log of the uniform-mixture betting capital against :math:`\mu \le m`.

    Parameters
    ----------
    k : array-like
        Running sum of the [0, 1]-valued draws (count of successes).
    n : array-like
        Number of draws.
    m : array-like
        Null value, in (0, 1).

    Returns
    -------
    log_capital : ndarray
        :math:`\log K_n(m)` (see the module docstring); ``-inf`` where the
        capital underflows, never NaN (undefined points read as no evidence).
    """
    k = np.asarray(k, dtype=np.float64)
    n = np.asarray(n, dtype=np.float64)
    m = np.asarray(m, dtype=np.float64)
    a = k + 1.0
    b = n - k + 1.0
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        out = betaln(a, b) + np.log(betaincc(a, b, m)) - xlogy(k, m) - xlog1py(b, -m)
    return np.where(np.isnan(out), -np.inf, out)


def _log_capital_and_slope(
    k: NDArray[np.float64], n: NDArray[np.float64], m: NDArray[np.float64]
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    r""":math:`\log K_n(m)` and its derivative in ``m`` (for Newton's method).

    With :math:`a = k + 1`, :math:`b = n - k + 1` and :math:`Q = 1 - I_m(a, b)`,
    :math:`\frac{d}{dm} \log Q = -m^{a-1} (1 - m)^{b-1} / (B(a, b)\, Q)`, so

    .. math::

        \frac{d}{dm}\log K_n(m) = -\frac{m^{a-1}(1-m)^{b-1}}{B(a, b)\,Q}
        - \frac{k}{m} + \frac{b}{1 - m}.
    """
    a = k + 1.0
    b = n - k + 1.0
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        beta = betaln(a, b)
        log_q = np.log(betaincc(a, b, m))
        value = beta + log_q - xlogy(k, m) - xlog1py(b, -m)
        slope = (
            -np.exp(xlogy(k, m) + xlog1py(b - 1.0, -m) - beta - log_q)
            - k / m
            + b / (1.0 - m)
        )
    return np.where(np.isnan(value), -np.inf, value), slope


def _lower_sequence(
    k: ArrayLike, n: ArrayLike, alpha: ArrayLike
) -> NDArray[np.float64]:
    r"""Anytime-valid lower confidence bound :math:`L_n` on a [0, 1] mean.

    ``P(exists n: mu < L_n) <= alpha`` (module docstring).  Vectorised over
    broadcast ``k``, ``n``, ``alpha``.

    Notes
    -----
    Since :math:`K_n(m)` is non-increasing in ``m``, *any* ``m`` at which
    :math:`K_n(m) \ge 1/\alpha` has been checked is at most :math:`L_n`, so
    returning such a point is valid whatever the numerical accuracy.

    The root of :math:`f(m) = \log K_n(m) - \log(1/\alpha)` is found by
    Newton's method from the left.  :math:`\log K_n` is convex in ``m``
    (each :math:`\log K_n^\theta` is, since
    :math:`\frac{d^2}{dm^2}\log(\theta + m(1 - \theta)) - \frac{d^2}{dm^2}
    \log m \ge 0`, and sums of log-convex functions are log-convex), so the
    tangent lies below :math:`f` and every Newton iterate started where
    :math:`f \ge 0` stays at or below the root: each iterate is a valid bound,
    and is checked numerically before it is accepted.  The start is the
    first of :math:`\hat p - j w` (:math:`j = 2, 5`, :math:`w` a
    Bernstein-like width) where :math:`f \ge 0`; where none is, a
    bisection on ``[0, k/n]`` is used.  ``k / n`` is always above the root:
    :math:`K_n(k/n) \le 1 < 1/\alpha` because every likelihood ratio against
    the maximum-likelihood mean is at most 1.
    """
    k, n, alpha = np.broadcast_arrays(
        np.asarray(k, dtype=np.float64),
        np.asarray(n, dtype=np.float64),
        np.asarray(alpha, dtype=np.float64),
    )
    shape = k.shape
    k, n = k.ravel(), n.ravel()
    threshold = -np.log(alpha.ravel())
    out = np.zeros(k.shape)
    # k = 0: K_n(m) <= 1 / (n + 1) < 1 / alpha for every m, the bound is 0.
    todo = np.flatnonzero(k > 0)
    if todo.size:
        out[todo] = _newton_from_left(k[todo], n[todo], threshold[todo])
    return out.reshape(shape)


def _newton_from_left(
    k: NDArray[np.float64], n: NDArray[np.float64], threshold: NDArray[np.float64]
) -> NDArray[np.float64]:
    """Largest checked ``m`` with ``log K_n(m) >= threshold`` (all k > 0)."""
    p_hat = k / n
    c = threshold + np.log1p(n)
    width = np.sqrt(2.0 * p_hat * (1.0 - p_hat) * c / n) + c / n
    x = np.zeros(k.size)
    f = np.full(k.size, np.nan)
    slope = np.full(k.size, np.nan)
    todo = np.arange(k.size)
    for mult in (2.0, 5.0):
        cand = p_hat[todo] - mult * width[todo]
        fc, sc = _log_capital_and_slope(k[todo], n[todo], cand)
        ok = (cand > 0) & (fc >= threshold[todo])
        x[todo[ok]], f[todo[ok]], slope[todo[ok]] = cand[ok], fc[ok], sc[ok]
        todo = todo[~ok]
    if todo.size:
        x[todo] = _bisect(k[todo], n[todo], threshold[todo], p_hat[todo])
        f[todo], slope[todo] = _log_capital_and_slope(k[todo], n[todo], x[todo])
    active = np.flatnonzero(x > 0)
    for _ in range(_MAX_ITER):
        with np.errstate(divide="ignore", invalid="ignore"):
            step = -(f[active] - threshold[active]) / slope[active]
        tol = np.minimum(_XTOL, 1e-9 * (1.0 - x[active]))
        go = (step > tol) & np.isfinite(step)
        active, step = active[go], step[go]
        if active.size == 0:
            break
        new = x[active] + step
        f_new, s_new = _log_capital_and_slope(k[active], n[active], new)
        # Convexity keeps exact iterates below the root; rounding may not, so
        # each one is checked and the iteration ends where a check fails.
        accept = (new < 1.0) & (f_new >= threshold[active])
        active = active[accept]
        x[active], f[active], slope[active] = new[accept], f_new[accept], s_new[accept]
    return x


def _bisect(
    k: NDArray[np.float64],
    n: NDArray[np.float64],
    threshold: NDArray[np.float64],
    hi: NDArray[np.float64],
) -> NDArray[np.float64]:
    """Bisection fallback on ``log m``: a checked point below the root, or 0.

    The bracket is ``[1e-300, hi]`` (geometric midpoints, so tiny roots, e.g.
    one success in many draws, are found too); 0 where even ``1e-300`` is
    above the root.
    """
    tiny = 1e-300
    log_lo = np.full(k.size, np.log(tiny))
    log_hi = np.log(hi)
    ok_lo = _log_capital(k, n, tiny) >= threshold
    for _ in range(64):
        mid = 0.5 * (log_lo + log_hi)
        reject = _log_capital(k, n, np.exp(mid)) >= threshold
        log_lo = np.where(reject, mid, log_lo)
        log_hi = np.where(reject, log_hi, mid)
    return np.where(ok_lo, np.exp(log_lo), 0.0)


def _upper_sequence(
    k: ArrayLike, n: ArrayLike, alpha: ArrayLike
) -> NDArray[np.float64]:
    """Anytime-valid upper bound, by reflection ``X -> 1 - X``."""
    k = np.asarray(k, dtype=np.float64)
    n = np.asarray(n, dtype=np.float64)
    return 1.0 - _lower_sequence(n - k, n, alpha)


def _min_draws(threshold: float, alpha: float, n_max: int) -> int:
    """Fewest draws after which all-success data can show ``mu > threshold``.

    The smallest ``n <= n_max`` with ``log K_n(threshold) >= log(1/alpha)``
    when ``k = n`` (the capital grows with ``n`` then); ``n_max`` when none.
    Used to size the first batch: no earlier look can certify anything.
    """
    grid = np.unique(np.geomspace(1, n_max, 400).astype(np.int64))
    ok = _log_capital(grid, grid, threshold) >= -np.log(alpha)
    if not ok.any():
        return int(n_max)
    first = int(np.argmax(ok))
    lo = int(grid[max(first - 1, 0)])
    cand = np.arange(lo, int(grid[first]) + 1)
    ok = _log_capital(cand, cand, threshold) >= -np.log(alpha)
    return int(cand[np.argmax(ok)])
