r"""Numeric core of the fixed-``n`` betting bounds (no validation here).

Everything is vectorised over rows: one row is one sequence of [0, 1]-valued
draws (one bounded quantity of one input).  The public objects and the proofs
are in :mod:`smoothlearn.intervals._betting`.

Conventions
-----------
* ``caps``: the truncations :math:`c_1, \dots, c_J \in (0, 1)`; strategy ``j``
  bets :math:`\lambda_i(m) = \min(\hat\lambda_i, c_j / m)`.
* The capital of a row is the average of the ``J`` strategies' capitals; its
  log is ``logsumexp_j(log K_j) - log J``.
* A *checked* point is a null mean ``m`` whose computed log-capital is at
  least ``log(1/alpha)`` plus :func:`_margin`, the bound on its
  floating-point error.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray
from scipy.special import logsumexp

__all__: list[str] = []

EPS = float(np.finfo(np.float64).eps)
#: Regularisation of the running mean and variance: one fake observation with
#: mean 1/2 and variance 1/4 (Waudby-Smith & Ramdas 2024, eq. (26)-(27)).
PRIOR_MEAN = 0.5
PRIOR_VAR = 0.25
#: Betting factors multiplied together before one logarithm.  Each factor
#: lies in [1 - c, 1 + c / m], so 8 of them stay in the float64 range for
#: every c <= 1 - 1e-30 and m >= 1e-30.
_GROUP = 8
#: Largest number of elements of one temporary factor array.
_CHUNK = 1 << 17


def plugin_bets(
    x: NDArray[np.float64],
    t0: int,
    sum0: NDArray[np.float64],
    dev0: NDArray[np.float64],
    n: float,
    threshold: NDArray[np.float64],
) -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.float64]]:
    r"""Predictable plug-in bets of a batch of draws, and the updated statistics.

    Parameters
    ----------
    x : ndarray of shape (R, b)
        The draws of the batch, in order, following ``t0`` earlier draws.
    t0 : int
        Number of earlier draws.
    sum0, dev0 : ndarrays of shape (R,)
        Running sum of the earlier draws and
        :math:`D_{t_0} = \sum_{i \le t_0} (X_i - \hat\mu_i)^2`.
    n : float
        Planned number of draws.
    threshold : ndarray of shape (R,)
        :math:`\log(1/\alpha_d)`, the level the bets are tuned for.

    Returns
    -------
    lam : ndarray of shape (R, b)
        :math:`\hat\lambda_t = \sqrt{2 \log(1/\alpha_d) / (n \hat\sigma^2_{t-1})}`
        with :math:`\hat\mu_t = (1/2 + \sum_{i \le t} X_i)/(t + 1)` and
        :math:`\hat\sigma^2_{t} = (1/4 + \sum_{i \le t}(X_i - \hat\mu_i)^2)/(t + 1)`:
        each bet uses the draws before it only.
    sum1, dev1 : ndarrays of shape (R,)
        The running statistics after the batch.
    """
    b = x.shape[1]
    t = t0 + np.arange(1, b + 1, dtype=np.float64)
    running = sum0[:, None] + np.cumsum(x, axis=1)
    mu = (PRIOR_MEAN + running) / (t + 1.0)
    dev = dev0[:, None] + np.cumsum((x - mu) ** 2, axis=1)
    dev_prev = np.concatenate([dev0[:, None], dev[:, :-1]], axis=1)
    var_prev = (PRIOR_VAR + dev_prev) / t  # sigma^2_{t-1} >= 1/(4t) > 0
    lam = np.sqrt(2.0 * threshold[:, None] / (n * var_prev))
    return lam, running[:, -1], dev[:, -1]


def log_capital(
    x: NDArray[np.float64],
    lam: NDArray[np.float64],
    m: NDArray[np.float64],
    caps: NDArray[np.float64],
    slopes: bool = False,
):
    r"""Per-strategy log-capital of a batch of draws at many null means.

    Parameters
    ----------
    x, lam : ndarrays of shape (R, b)
        Draws and their bets :math:`\hat\lambda_i`.
    m : ndarray of shape (R, G)
        Null means in [0, 1] (``m = 0`` bets :math:`\hat\lambda_i` untruncated).
    caps : ndarray of shape (J,)
    slopes : bool, default=False
        Also return the sums ``A`` and ``B`` of :func:`regrid`.

    Returns
    -------
    log_k : ndarray of shape (R, J, G)
        :math:`\sum_i \log f_i`, :math:`f_i = 1 + \min(\hat\lambda_i, c_j/m)(X_i - m)`.
    A, B : ndarrays of shape (R, J, G), only with ``slopes=True``
        :math:`\sum_i r_i / f_i` and :math:`\sum_i (r_i / f_i)^2`, with the
        rate :math:`r_i = \hat\lambda_i` where the bet is not truncated and
        :math:`r_i = (c_j/m) \min(X_i/m, 1)` where it is.
    """
    rows, b = x.shape
    g_pts = m.shape[1]
    n_caps = caps.size
    pad = (-b) % _GROUP
    if pad:
        # Padding with lam = 0 multiplies the capital by exactly 1.
        x = np.concatenate([x, np.zeros((rows, pad))], axis=1)
        lam = np.concatenate([lam, np.zeros((rows, pad))], axis=1)
        b += pad
    out = np.zeros((rows, n_caps, g_pts))
    if slopes:
        sum_a, sum_b = np.zeros_like(out), np.zeros_like(out)
    per_row = n_caps * g_pts
    step_b = max(_GROUP, (_CHUNK // max(per_row, 1)) // _GROUP * _GROUP)
    step_b = min(step_b, b)
    step_r = max(1, _CHUNK // (per_row * step_b))
    with np.errstate(divide="ignore"):
        cap_m = caps[None, :, None, None] / m[:, None, :, None]  # (R, J, G, 1)
    for r0 in range(0, rows, step_r):  # chunks bound memory, not a hot loop
        r1 = min(rows, r0 + step_r)
        ms = m[r0:r1, None, :, None]
        cm = cap_m[r0:r1]
        for d0 in range(0, b, step_b):
            d1 = min(b, d0 + step_b)
            xs = x[r0:r1, None, None, d0:d1]
            diff = xs - ms  # (r, 1, G, B): the same for every strategy
            lam_b = lam[r0:r1, None, None, d0:d1]
            f = np.minimum(lam_b, cm)  # the bet, then the factor, in place
            if slopes:
                truncated = lam_b > cm
                rate = f.copy()
                with np.errstate(divide="ignore", invalid="ignore"):
                    ratio = np.minimum(xs / ms, 1.0)
                np.multiply(f, ratio, out=rate, where=truncated)
            np.multiply(f, diff, out=f)
            f += 1.0
            if slopes:
                np.divide(rate, f, out=rate)
                sum_a[r0:r1] += rate.sum(axis=-1)
                np.multiply(rate, rate, out=rate)
                sum_b[r0:r1] += rate.sum(axis=-1)
            f = f.reshape(r1 - r0, n_caps, g_pts, (d1 - d0) // _GROUP, _GROUP)
            out[r0:r1] += np.log(f.prod(axis=-1)).sum(axis=-1)
    if slopes:
        return out, sum_a, sum_b
    return out


def mixture(log_k: NDArray[np.float64], axis: int = 1) -> NDArray[np.float64]:
    """Log of the equal-weight average of the strategies' capitals."""
    return logsumexp(log_k, axis=axis) - np.log(log_k.shape[axis])


def margin(
    t: float | NDArray[np.float64], m: NDArray[np.float64], cap_max: float
) -> NDArray[np.float64]:
    r"""Bound on the floating-point error of a computed log-capital.

    Each factor :math:`1 + \lambda (x - m)` is computed with a relative error
    of a few ulps, a product of :data:`_GROUP` of them with at most
    ``2 * _GROUP`` ulps, and each logarithm and sum adds an error relative to
    the magnitude of the terms, which is at most
    :math:`T = \max(-\log(1 - c), \log(1 + c / m))` per draw.  Over ``t``
    draws and the mixture the error is below ``64 eps (t + 1)(1 + T)``.
    """
    # At m = 0 the bets are the finite plug-in ones; 1e-300 keeps T finite.
    per_draw = np.maximum(
        -np.log1p(-cap_max), np.log1p(cap_max / np.maximum(m, 1e-300))
    )
    return 64.0 * EPS * (np.asarray(t, dtype=np.float64) + 1.0) * (1.0 + per_draw)


def lower_from_draws(
    x: NDArray[np.float64],
    threshold: NDArray[np.float64],
    threshold_design: NDArray[np.float64],
    caps: NDArray[np.float64],
    max_iter: int = 200,
) -> NDArray[np.float64]:
    r"""Largest checked null mean of each row (0 where none), by root finding.

    Parameters
    ----------
    x : ndarray of shape (R, n)
        The draws of each row, in order.
    threshold : ndarray of shape (R,)
        :math:`\log(1/\alpha)`.
    threshold_design : ndarray of shape (R,)
        :math:`\log(1/\alpha_d)`, the level the bets are tuned for.
    caps : ndarray of shape (J,)

    Notes
    -----
    The log-capital is non-increasing in ``m`` and below ``-log(1/alpha)`` at
    ``m = 1``, so the rejected null means form an interval ``[0, L]``.  The
    root of :math:`\log K_n(m) - \log(1/\alpha) - \mathrm{margin}` is
    bracketed by ``lo`` (checked, or the trivial bound 0) and ``hi``
    (not checked) and found by the Illinois variant of regula falsi with a
    bisection step whenever a step fails to halve the bracket; ``lo`` is
    returned, so the numerical accuracy of the root only affects tightness.
    """
    rows, n = x.shape
    if rows == 0:
        return np.zeros(0)
    lam, _, _ = plugin_bets(x, 0, np.zeros(rows), np.zeros(rows), n, threshold_design)
    cap_max = float(np.max(caps))

    def f(idx, m):
        lk = mixture(log_capital(x[idx], lam[idx], m[:, None], caps), axis=1)[:, 0]
        return lk - threshold[idx] - margin(n, m, cap_max)

    lo = np.zeros(rows)
    hi = np.ones(rows)
    every = np.arange(rows)
    f_lo = f(every, lo)
    f_hi = np.full(rows, -1.0)  # f(1) <= -log(1/alpha) < 0: never evaluated
    # Where even m = 0 is not rejected, nothing is: the bound is 0.
    active = np.flatnonzero(f_lo >= 0.0)
    last = np.zeros(rows, dtype=np.int8)  # +1: lo moved last, -1: hi moved last
    width = hi - lo
    for it in range(max_iter):
        lo_a, hi_a = lo[active], hi[active]
        tol = 1e-10 * np.minimum(hi_a, 1.0 - lo_a)
        keep = hi_a - lo_a > np.maximum(tol, 4.0 * EPS * hi_a)
        active = active[keep]
        if active.size == 0:
            break
        lo_a, hi_a = lo[active], hi[active]
        fl, fh = f_lo[active], f_hi[active]
        with np.errstate(divide="ignore", invalid="ignore"):
            m = lo_a + fl * (hi_a - lo_a) / (fl - fh)
        # Bisect on every third step, when the secant leaves the bracket, or
        # when the last step did not halve the bracket.
        slow = (hi_a - lo_a) > 0.5 * width[active]
        bisect = (it % 3 == 2) | slow | ~np.isfinite(m) | (m <= lo_a) | (m >= hi_a)
        m = np.where(bisect, 0.5 * (lo_a + hi_a), m)
        width[active] = hi_a - lo_a
        fm = f(active, m)
        rej = fm >= 0.0
        # Illinois: halve the stale end's value when the same end moves twice.
        same_lo = rej & (last[active] == 1)
        same_hi = ~rej & (last[active] == -1)
        f_hi[active] = np.where(rej, np.where(same_lo, fh / 2, fh), fm)
        f_lo[active] = np.where(rej, fm, np.where(same_hi, fl / 2, fl))
        lo[active] = np.where(rej, m, lo_a)
        hi[active] = np.where(rej, hi_a, m)
        last[active] = np.where(rej, 1, -1)
    return lo


# ---------------------------------------------------------------------------
# The order-free bound from the sufficient statistics (sum, sum_sq, n)
# ---------------------------------------------------------------------------
def _psi(c: NDArray[np.float64]) -> NDArray[np.float64]:
    r"""An upper bound on :math:`\psi(c) = (-\log(1 - c) - c)/c^2`, c in [0, 1).

    :math:`\psi(c) = \sum_{k \ge 0} c^k/(k + 2)`; below ``c = 1e-3`` the
    series is bounded by its first three terms plus :math:`c^3/(5(1-c))`,
    above it the closed form (relative error below 1e-12) is inflated by
    1e-9.
    """
    c = np.asarray(c, dtype=np.float64)
    small = c < 1e-3
    cs = np.where(small, 0.5, c)  # any value the closed form handles
    closed = (-np.log1p(-cs) - cs) / (cs * cs) * (1.0 + 1e-9)
    series = 0.5 + c / 3.0 + c * c / 4.0 + c**3 / (5.0 * (1.0 - c))
    return np.where(small, series, closed)


def order_free_components(
    n: NDArray[np.float64], cap: float
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    r"""Constant bets and weights of the order-free mixture, per row.

    Half the weight is on the bet :math:`\lambda = c/m` (``inf`` here, then
    truncated), half spread evenly over :math:`\lambda_0 2^j`,
    :math:`j = 0, \dots, J - 1`, with :math:`\lambda_0 = \sqrt{2/n}` and
    ``J`` the first with :math:`\lambda_0 2^{J-1} \ge c`.  The
    Chernoff-optimal bet for variance ``v`` at level ``alpha`` is
    :math:`\sqrt{2\log(1/\alpha)/(n v)} \ge \sqrt{8 \log(1/\alpha)/n}`,
    inside that range for every ``alpha <= 0.88``.  The bets do not depend on
    ``alpha``, so neither does the capital, and the bound shrinks as
    ``alpha`` grows.

    Returns
    -------
    lams, weights : ndarrays of shape (R, J_max + 1)
    """
    lam0 = np.sqrt(2.0 / n)
    n_var = np.ceil(np.log2(np.maximum(cap / lam0, 1.0))).astype(int) + 1
    j_max = int(n_var.max())
    j = np.arange(j_max)[None, :]
    lams = lam0[:, None] * 2.0**j
    w = np.where(j < n_var[:, None], 0.5 / n_var[:, None], 0.0)
    lams = np.concatenate([lams, np.full((lam0.size, 1), np.inf)], axis=1)
    w = np.concatenate([w, np.full((lam0.size, 1), 0.5)], axis=1)
    return lams, w


def order_free_log_capital(
    s: NDArray[np.float64],
    q: NDArray[np.float64],
    n: NDArray[np.float64],
    m: NDArray[np.float64],
    lams: NDArray[np.float64],
    weights: NDArray[np.float64],
    cap: float,
) -> NDArray[np.float64]:
    r"""A lower bound on the order-free mixture's log-capital, minus its error.

    With :math:`\lambda_j(m) = \min(\lambda_j, c/m)`, :math:`S` the sum,
    :math:`Q(m) = \sum_i (X_i - m)^2` (from ``sum_sq``) and Fan's inequality
    :math:`\log(1 + y) \ge y - \psi(c') y^2` for :math:`y \ge -c'`,

    .. math::

        \log \sum_j w_j \prod_i (1 + \lambda_j(m)(X_i - m)) \ge
        \log \sum_j w_j \exp\bigl(\lambda_j(m)(S - n m)
        - \psi(\lambda_j(m)\, m)\, \lambda_j(m)^2 Q(m)\bigr).

    Vectorised over rows (``s``, ``q``, ``n``, ``m`` of shape (R,)).
    """
    with np.errstate(divide="ignore", over="ignore"):
        lam = np.minimum(lams, cap / m[:, None])
    # At m = 0 the bet c/m is infinite: that strategy is left out (weight kept).
    finite = np.isfinite(lam)
    lam = np.where(finite, lam, 0.0)
    # Q(m) rounded up: sum_sq - 2 m S + n m^2 loses up to a few ulps of its terms.
    terms = q + 2.0 * m * s + n * m * m
    qm = np.maximum(q - 2.0 * m * s + n * m * m, 0.0) + 8.0 * EPS * terms
    with np.errstate(over="ignore", invalid="ignore"):
        # Huge bets (m near 0) may overflow: such a strategy counts as no
        # evidence (exponent -inf), which is conservative.
        lin = lam * (s - n * m)[:, None]
        quad = _psi(lam * m[:, None]) * lam * lam * qm[:, None]
        ok = finite & np.isfinite(lin) & np.isfinite(quad)
        e = np.where(ok, lin - quad, -np.inf)
        top = np.max(e, axis=1, keepdims=True)
        top = np.where(np.isfinite(top), top, 0.0)
        with np.errstate(divide="ignore"):
            out = top[:, 0] + np.log(np.sum(weights * np.exp(e - top), axis=1))
        # S - n m is off by up to 2 ulps of S + n m; the rest is relative.
        cancel = np.max(np.where(ok, lam, 0.0), axis=1) * 4.0 * EPS * (s + n * m)
        scale = np.max(np.where(ok, np.abs(lin) + quad, 0.0), axis=1)
    return out - 1e-12 * (1.0 + scale) - cancel


def order_free_lower(
    s: NDArray[np.float64],
    q: NDArray[np.float64],
    n: NDArray[np.float64],
    threshold: NDArray[np.float64],
    cap: float,
    n_iter: int = 120,
) -> NDArray[np.float64]:
    """Largest checked null mean of the order-free mixture, by bisection.

    The bracket is ``[0, S/n]``: at the sample mean every exponent is
    ``-psi lambda^2 Q <= 0``, so the mixture is at most 1 and ``S/n`` is never
    rejected; ``lo`` only moves to checked points.
    """
    s, q, n, threshold = (np.ravel(a) for a in (s, q, n, threshold))
    if s.size == 0:
        return np.zeros(0)
    lams, w = order_free_components(n, cap)
    lo = np.zeros(s.size)
    hi = s / n
    active = np.flatnonzero(hi > 0.0)
    for _ in range(n_iter):
        if active.size == 0:
            break
        a = active
        mid = 0.5 * (lo[a] + hi[a])
        moved = (mid > lo[a]) & (mid < hi[a])  # False at float resolution
        rej = order_free_log_capital(s[a], q[a], n[a], mid, lams[a], w[a], cap)
        rej = (rej >= threshold[a]) & moved
        lo[a] = np.where(rej, mid, lo[a])
        hi[a] = np.where(rej | ~moved, hi[a], mid)
        # Stop at a relative 1e-12 of the distance to the nearer end.
        tol = 1e-12 * np.minimum(hi[a], 1.0 - lo[a])
        active = a[(hi[a] - lo[a] > tol) & moved]
    return lo


# ---------------------------------------------------------------------------
# The adaptive grid of a streaming state
# ---------------------------------------------------------------------------
#: Logit of the outermost anchors: 1e-9 and 1 - 1e-9.
_ANCHOR_LOGIT = 20.7


def anchor_grid(size: int) -> NDArray[np.float64]:
    """Fixed null means shared by every row: logit-spaced in [1e-9, 1 - 1e-9]."""
    z = np.linspace(-_ANCHOR_LOGIT, _ANCHOR_LOGIT, size)
    return 1.0 / (1.0 + np.exp(-z))


def _crossing(all_m, pred, tau):
    """Bracket of the predicted crossing of ``tau``: (last point reaching it,
    first point above that one below it); 0 and 1 where there is none."""
    reach = pred >= tau[:, None]
    lo = np.max(np.where(reach, all_m, 0.0), axis=1)
    below = (pred < tau[:, None]) & (all_m > lo[:, None])
    hi = np.min(np.where(below, all_m, 1.0), axis=1)
    return lo, hi


def regrid(
    m: NDArray[np.float64],
    log_k: NDArray[np.float64],
    sum_a: NDArray[np.float64],
    sum_b: NDArray[np.float64],
    n_fixed: int,
    t: int,
    n: int,
    threshold: NDArray[np.float64],
    spread: NDArray[np.float64],
) -> None:
    r"""Move the movable points of each row to where its bound is expected.

    In place on ``m``, ``log_k``, ``sum_a``, ``sum_b`` (shapes (R, G) and
    (R, J, G)); the first ``n_fixed`` points of each row never move.

    *Where.*  ``n / t`` times the current log-capital predicts the final one;
    ``spread`` (the standard deviation of the final mean given the current
    one) widens each predicted range on both sides.  Half the movable points
    go uniformly over the predicted crossings of :math:`\log(1/\alpha_d)
    / 1.5` to :math:`1.5 \log(1/\alpha_d)`, half over :math:`\log(1/\alpha_d)
    / 4` to :math:`2 \log(1/\alpha_d) + 4` (other levels, for
    recertification).

    *Capital of a new point.*  A target within half a spacing of an existing
    point takes that point exactly.  Otherwise it is a new point
    :math:`m' = m - \delta` below the nearest existing point ``m`` above it,
    and starts from

    .. math::

        \log K_t(m') \ge \log \check K_t(m)
            + \max\bigl(0, \delta A - \tfrac12 \delta^2 B\bigr),

    where :math:`\check K_t(m)` is the stored capital of ``m`` and ``A``,
    ``B`` the sums of :math:`r_i / f_i(m)` and :math:`(r_i/f_i(m))^2` over the
    draws since ``m`` was created (:func:`log_capital`), continued from
    the point it was itself expanded from (see the comment in the code).
    Per draw,
    :math:`f_i(m') \ge f_i(m) + r_i \delta`: equality where the bet is not
    truncated at ``m`` (it is not at :math:`m' < m` either).  Where it is
    truncated (:math:`\lambda = c/m`): if :math:`X_i \ge m'` the bet at
    ``m'`` is at least :math:`c/m` on the excess :math:`X_i - m' = X_i - m +
    \delta \ge 0`, so :math:`f_i(m') \ge f_i(m) + (c/m)\delta`; if
    :math:`X_i < m'` the bet at ``m'`` is at most :math:`c/m'` on a negative
    excess, so :math:`f_i(m') \ge 1 - c + c X_i/m' = f_i(m) + c X_i
    \delta/(m m') \ge f_i(m) + (c X_i/m^2)\delta`; and
    :math:`(c/m)\min(X_i/m, 1)` is below both rates where each applies.
    Then :math:`\log(1 + y) \ge \max(0, y - y^2/2)` for
    :math:`y = r_i\delta / f_i(m) \ge 0`; for the draws before ``m`` was
    created, monotonicity.  So every stored capital stays a lower bound on
    the true one, and bounds read from it stay valid.  ``A`` is rounded
    down and ``B`` up by their floating-point error.
    """
    rows, g_all = m.shape
    n_dense = g_all - n_fixed
    order = np.argsort(m, axis=1, kind="stable")
    m_s = np.take_along_axis(m, order, axis=1)
    o3 = order[:, None, :]
    lk_s = np.take_along_axis(log_k, o3, axis=2)
    a_s = np.take_along_axis(sum_a, o3, axis=2)
    b_s = np.take_along_axis(sum_b, o3, axis=2)
    pred = mixture(lk_s) * (n / t)
    lo_edge, hi_edge = float(m[0, 0]), float(m[0, n_fixed - 1])
    half = n_dense // 2
    parts = []
    for size, t_hi, t_lo in (
        (half, 1.5 * threshold, threshold / 1.5),
        (n_dense - half, 2.0 * threshold + 4.0, threshold / 4.0),
    ):
        a, _ = _crossing(m_s, pred, t_hi)
        _, b = _crossing(m_s, pred, t_lo)
        a = np.clip(a - spread, lo_edge, hi_edge)
        b = np.clip(np.maximum(b + spread, a), lo_edge, hi_edge)
        u = np.linspace(0.0, 1.0, size)[None, :]
        parts.append(a[:, None] + u * (b - a)[:, None])
    targets = np.sort(np.concatenate(parts, axis=1), axis=1)
    gaps = np.diff(targets, axis=1)
    left = np.concatenate([np.full((rows, 1), np.inf), gaps], axis=1)
    right = np.concatenate([gaps, np.full((rows, 1), np.inf)], axis=1)
    tol = 0.5 * np.minimum(left, right)
    tol = np.where(np.isfinite(tol), tol, 0.0)

    idx = np.empty((rows, n_dense), dtype=np.intp)
    step = max(1, _CHUNK // (n_dense * g_all))
    for r0 in range(0, rows, step):  # chunks bound memory
        r1 = min(rows, r0 + step)
        idx[r0:r1] = np.sum(m_s[r0:r1, None, :] < targets[r0:r1, :, None], axis=2)
    up = np.minimum(idx, g_all - 1)
    down = np.maximum(idx - 1, 0)
    m_up = np.take_along_axis(m_s, up, axis=1)
    m_down = np.take_along_axis(m_s, down, axis=1)
    d_up = m_up - targets
    d_down = targets - m_down
    snap_up = (idx >= g_all) | ((d_up <= tol) & ((d_up <= d_down) | (idx == 0)))
    snap_down = ~snap_up & (idx > 0) & (d_down <= tol)
    snapped = snap_up | snap_down
    source = np.where(snap_down, down, up)
    new_m = np.where(snap_up, m_up, np.where(snap_down, m_down, targets))
    src3 = source[:, None, :]
    new_lk = np.take_along_axis(lk_s, src3, axis=2)
    new_a = np.take_along_axis(a_s, src3, axis=2)
    new_b = np.take_along_axis(b_s, src3, axis=2)
    slack = 64.0 * EPS * (t + 1.0)
    a_low, b_high = new_a * (1.0 - slack), new_b * (1.0 + slack)
    delta = np.where(snapped, 0.0, m_up - new_m)[:, None, :]
    gain = delta * a_low - 0.5 * delta**2 * b_high
    fresh = ~snapped[:, None, :]
    new_lk = np.where(fresh, new_lk + np.maximum(gain, 0.0), new_lk)
    # The expansion continues from the new point: with h(d) = d A - d^2 B / 2,
    # h(delta + d) = h(delta) + d (A - delta B) - d^2 B / 2, so a later point
    # d below this one may use (A - delta B, B) for the draws so far.  Where
    # that does not hold (h(delta) clipped at 0, or a negative slope), the
    # sums restart from 0 (monotonicity alone).
    slope = a_low - delta * b_high
    carry = fresh & (gain >= 0.0) & (slope >= 0.0)
    new_a = np.where(fresh, np.where(carry, slope, 0.0), new_a)
    new_b = np.where(fresh, np.where(carry, b_high, 0.0), new_b)
    m[:, n_fixed:] = new_m
    log_k[:, :, n_fixed:] = new_lk
    sum_a[:, :, n_fixed:] = new_a
    sum_b[:, :, n_fixed:] = new_b
