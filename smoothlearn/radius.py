"""Certified l2 radii of the smoothed classifier, vectorised.

Cohen's radii live here (:func:`gaussian_radius`); the Lipschitz-aware radii
of Delattre et al. (2025) are added by :func:`lipschitz_radius` and
:func:`solve_s0`.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy.special import erf, erfcx, log_ndtr, ndtri

from ._rounding import LIPSCHITZ_RTOL, RADIUS_RTOL
from ._validation import _as_float_array, check_kind, check_probability

__all__ = [
    "abstained",
    "gaussian_radius",
    "lipschitz_radius",
    "margin_radius",
    "smoothed_lipschitz_constant",
    "solve_s0",
]


def _check_positive_array(x, name: str) -> NDArray[np.float64]:
    """A numeric array with at least one entry; bools are refused."""
    if isinstance(x, bool | np.bool_) or (
        isinstance(x, np.ndarray) and x.dtype == np.bool_
    ):
        raise ValueError(f"The {name!r} parameter must be a float. Got {x!r}.")
    arr = _as_float_array(x, name)
    if arr.size == 0:
        raise ValueError(f"The {name!r} parameter must not be empty.")
    return arr


def _check_sigma(sigma: ArrayLike) -> NDArray[np.float64]:
    s = _check_positive_array(sigma, "sigma")
    if not np.all(np.isfinite(s)) or np.any(s <= 0):
        raise ValueError(
            f"The 'sigma' parameter must be a float in the range (0, inf). "
            f"Got {sigma!r} instead."
        )
    return s


def _check_bounds(pA_lower, pB_upper, kind):
    kind = check_kind(kind)
    pA = check_probability(pA_lower, "pA_lower")
    if kind == "mono":
        pB = 1.0 - pA if pB_upper is None else check_probability(pB_upper, "pB_upper")
    else:
        if pB_upper is None:
            raise ValueError(
                "The 'pB_upper' parameter is required when kind='multi'; pass "
                "kind='mono' to use pB_upper = 1 - pA_lower."
            )
        pB = check_probability(pB_upper, "pB_upper")
    try:
        pA, pB = np.broadcast_arrays(pA, pB)
    except ValueError as exc:
        raise ValueError(
            f"Shapes of 'pA_lower' {np.shape(pA)} and 'pB_upper' {np.shape(pB)} "
            "cannot be broadcast together."
        ) from exc
    return pA, pB, kind


def _cohen_raw(pA, pB, sigma, kind):
    """Signed Cohen radius (negative or NaN where the procedure abstains)."""
    with np.errstate(invalid="ignore"):
        if kind == "mono":
            return sigma * ndtri(pA)
        return 0.5 * sigma * (ndtri(pA) - ndtri(pB))


def _cohen_slack(pA, pB, sigma, kind):
    """Bound on the rounding error of :func:`_cohen_raw` (see _rounding)."""
    with np.errstate(invalid="ignore"):
        if kind == "mono":
            return RADIUS_RTOL * sigma * np.abs(ndtri(pA))
        return RADIUS_RTOL * sigma * (np.abs(ndtri(pA)) + np.abs(ndtri(pB)))


def _round_radius(raw, slack):
    """``raw - slack`` clipped at 0; 0 where ``raw`` is negative or NaN.

    An infinite radius (a bound of exactly 0 or 1) stays infinite.
    """
    with np.errstate(invalid="ignore"):
        inner = np.where(np.isposinf(raw), raw, np.maximum(raw - slack, 0.0))
        return np.where(raw >= 0, inner, 0.0)


def abstained(
    pA_lower: ArrayLike, pB_upper: ArrayLike | None = None, kind: str = "multi"
) -> NDArray[np.bool_]:
    """Where the certification procedure abstains.

    The rule is Cohen's: ``mono`` abstains where ``pA_lower < 1/2`` and
    ``multi`` where ``pA_lower < pB_upper`` (a negative radius); at equality
    the class is returned with radius 0.  ``pA_lower = 0`` always abstains.
    Lipschitz-aware radii have the same sign as Cohen's, so they share it.

    Returns
    -------
    abstained : ndarray of bool
    """
    pA, pB, kind = _check_bounds(pA_lower, pB_upper, kind)
    raw = _cohen_raw(pA, pB, 1.0, kind)
    out = ~(raw >= 0)
    return out[()] if out.ndim == 0 else out


def gaussian_radius(
    pA_lower: ArrayLike,
    pB_upper: ArrayLike | None = None,
    sigma: ArrayLike = 1.0,
    kind: str = "multi",
) -> NDArray[np.float64]:
    r"""Cohen's certified l2 radius of the Gaussian-smoothed classifier.

    Parameters
    ----------
    pA_lower : array-like
        Lower confidence bound on the probability of the top class.
    pB_upper : array-like or None
        Upper confidence bound on the probability of every other class.
        Ignored (and may be None) when ``kind="mono"``.
    sigma : float or array-like
        Standard deviation of the Gaussian noise, > 0.
    kind : {"multi", "mono"}, default="multi"
        ``"multi"`` is Cohen's Theorem 1, ``"mono"`` its binary special case
        with ``pB_upper = 1 - pA_lower``.

    Returns
    -------
    radius : ndarray of float
        The radius, 0 where the procedure abstains (see :func:`abstained`).

    Notes
    -----
    .. math::

        R_{multi} = \frac{\sigma}{2}\left(\Phi^{-1}(\underline{p_A})
                    - \Phi^{-1}(\overline{p_B})\right), \qquad
        R_{mono} = \sigma\,\Phi^{-1}(\underline{p_A}).

    The prediction of the smoothed classifier is constant within ``radius``
    whenever the bounds hold, whatever the base classifier.

    The computed radius is rounded down by ``32 eps sigma (|z_A| + |z_B|)``
    (``z = Phi^{-1}`` of the bounds), more than the error of the float64
    arithmetic, so rounding never makes it larger than the exact value.

    References
    ----------
    .. [1] Cohen, Rosenfeld & Kolter, "Certified Adversarial Robustness via
       Randomized Smoothing", ICML 2019, Theorem 1.

    Examples
    --------
    >>> from smoothlearn.radius import gaussian_radius
    >>> round(float(gaussian_radius(0.9, 0.05, sigma=0.5)), 6)
    0.731601
    >>> float(gaussian_radius(0.4, sigma=0.5, kind="mono"))
    0.0
    """
    pA, pB, kind = _check_bounds(pA_lower, pB_upper, kind)
    sigma = _check_sigma(sigma)
    raw = _cohen_raw(pA, pB, sigma, kind)
    out = _round_radius(raw, _cohen_slack(pA, pB, sigma, kind))
    return out[()] if out.ndim == 0 else out


# ---------------------------------------------------------------------------
# Lipschitz-aware radii (Delattre et al., AISTATS 2025)
# ---------------------------------------------------------------------------
#
# Everything below works in units of sigma.  With a = 1/(L sigma) (the width of
# the worst-case ramp in sigma units, 0 when L = inf) and h = a/2, the ramp
# equation p = 1 - L int_{s0}^{s0+1/L} Phi(s/sigma) ds says that the average of
# Phi over the window [c - h, c + h] equals m = min(p, 1 - p), where c is the
# window's midpoint:
#
#     A(c) := (psi(c + h) - psi(c - h)) / a = m,   psi(t) = t Phi(t) + phi(t).
#
# For p >= 1/2, s0 = sigma (c - h); for p < 1/2 the mirror image gives
# s0 = -sigma (c + h).  Both are s0 = -sigma kappa - 1/(2L) with the
# "Lipschitz-aware quantile" kappa(p) = sign(p - 1/2) (-c), which is odd in
# p - 1/2 and tends to Phi^{-1}(p) as a -> 0.  A is increasing and log-concave
# in c (the convolution of two log-concave functions), and
# zm - h <= c <= zm with zm = Phi^{-1}(m) <= 0 (the upper end is Jensen's
# inequality, Phi being convex on (-inf, 0]), so Newton's method on log A is
# globally convergent and the bracket makes it safe.

_MAXITER = 100
# a <= _A_CLOSED: kappa from the Cohen limit plus its two next terms in a^2
# (omitted term O(a^6 |z|^5) < 1e-16 sigma for every finite quantile |z| < 38.5).
_A_CLOSED = 1e-4
# a <= _A_SERIES: midpoint (Taylor) series for A; a > _A_SERIES: the exact psi
# difference, whose cancellation error in c is about 1.2 eps / a (3e-14 here).
_A_SERIES = 1e-2
_EPS = np.finfo(np.float64).eps
_LOG_SQRT_2PI = 0.5 * np.log(2.0 * np.pi)
_SQRT_HALF_PI = np.sqrt(0.5 * np.pi)
_SQRT_HALF = np.sqrt(0.5)
# 1 / (2k + 1)! for k = 1..5 (midpoint series coefficients).
_SERIES_COEF = np.array([1 / 6, 1 / 120, 1 / 5040, 1 / 362880, 1 / 39916800])
_METHODS = ("paper", "envelope")


def _check_L(L: ArrayLike) -> NDArray[np.float64]:
    arr = _check_positive_array(L, "L")
    if np.any(arr <= 0):
        raise ValueError(
            f"The 'L' parameter must be a float in the range (0, inf]. "
            f"Got {L!r} instead."
        )
    return arr


def _check_method(method: str) -> str:
    if not isinstance(method, str) or method not in _METHODS:
        raise ValueError(
            f"The 'method' parameter must be a str among {{'envelope', 'paper'}}. "
            f"Got {method!r} instead."
        )
    return method


def _broadcast(**arrays):
    try:
        return np.broadcast_arrays(*arrays.values())
    except ValueError as exc:
        shapes = ", ".join(f"{k!r} {np.shape(v)}" for k, v in arrays.items())
        raise ValueError(f"Shapes of {shapes} cannot be broadcast together.") from exc


def _ramp_width(L: NDArray[np.float64], sigma: NDArray[np.float64]):
    """a = 1 / (L sigma) in sigma units; 0 where L is infinite."""
    with np.errstate(divide="ignore", over="ignore"):
        a = 1.0 / (L * sigma)
    if not np.all(np.isfinite(a)):
        raise ValueError(
            "The product 'L' * 'sigma' underflows: 1 / (L * sigma) is not a "
            "finite float. Rescale the inputs."
        )
    return a


def _log_phi(x):
    return -0.5 * x * x - _LOG_SQRT_2PI


def _log_psi_Phi(t):
    """log psi(t) and log Phi(t), psi(t) = t Phi(t) + phi(t), for every real t.

    With ``x = |t|`` and the Mills ratio ``M(x) = Phi(-x) / phi(x)`` (from
    ``erfcx``, one special-function call for both signs):
    ``Phi(-x) = phi(x) M``, ``psi(-x) = phi(x) (1 - x M)``,
    ``Phi(x) = 1 - phi(x) M`` and ``psi(x) = x + psi(-x)``.  For large ``x``
    the asymptotic series of ``1 - x M`` avoids its cancellation.
    """
    t = np.asarray(t, dtype=np.float64)
    x = np.abs(t)
    M = _SQRT_HALF_PI * erfcx(x * _SQRT_HALF)
    w = 1.0 - x * M
    big = x > 60.0
    if np.any(big):
        y = 1.0 / (x[big] * x[big])
        # sum_{k>=1} (-1)^(k+1) (2k-1)!! y^k, six terms (relative error < 1e-16).
        w[big] = y * (1 - y * (3 - y * (15 - y * (105 - y * (945 - y * 10395)))))
    lphi = _log_phi(x)
    phi = np.exp(lphi)
    neg = t < 0
    log_psi = np.where(neg, lphi + np.log(w), np.log(x + phi * w))
    log_Phi = np.where(neg, lphi + np.log(M), np.log1p(-phi * M))
    return log_psi, log_Phi


def _psi_inverse_start(log_y):
    """Approximate solution of psi(t) = y = exp(log_y) (a start for Newton)."""
    log_y = np.asarray(log_y, dtype=np.float64)
    out = np.empty_like(log_y)
    big = log_y >= np.log(0.4)
    yb = np.exp(log_y[big])
    # psi(t) = t + psi(-t), and psi(-t) is tiny for large t.
    out[big] = yb - np.exp(_log_psi_Phi(-yb)[0])
    # psi(-x) ~ phi(x) / (x^2 + 3) for large x: two fixed-point steps.
    c = -2.0 * (log_y[~big] + _LOG_SQRT_2PI)
    x2 = np.maximum(c, 0.0)
    for _ in range(2):
        x2 = np.maximum(c - 2.0 * np.log(x2 + 3.0), 0.0)
    out[~big] = -np.sqrt(x2)
    return out


def _log_diff(log_hi, log_lo):
    """log(exp(log_hi) - exp(log_lo)) for log_hi > log_lo."""
    return log_hi + np.log(-np.expm1(log_lo - log_hi))


def _hermite(c):
    """Probabilists' Hermite polynomials He_0..He_10 at c."""
    he = [np.ones_like(c), c]
    for n in range(1, 10):
        he.append(c * he[n] - n * he[n - 1])
    return he


def _series_terms(c, h):
    """(R - S, T) of the midpoint series, R = Phi(c)/phi(c).

    A(c) = phi(c) (R - S) and (Phi(c + h) - Phi(c - h)) / (2h) = phi(c) T.
    """
    he = _hermite(c)
    h2 = h * h
    S = np.zeros_like(c)
    T = np.ones_like(c)
    hk = np.ones_like(c)
    for k in range(1, 6):
        hk = hk * h2
        S = S + _SERIES_COEF[k - 1] * hk * he[2 * k - 1]
        T = T + _SERIES_COEF[k - 1] * hk * he[2 * k]
    R = _SQRT_HALF_PI * erfcx(-c / np.sqrt(2.0))
    return R - S, T


def _residual_series(c, h, logm):
    RS, T = _series_terms(c, h)
    log_phi, log_RS = _log_phi(c), np.log(RS)
    F = log_phi + log_RS - logm
    return F, T / RS, np.abs(log_phi) + np.abs(log_RS) + np.abs(logm) + 4.0


def _residual_exact(t, h, logm):
    # In terms of the window's top t = c + h (well conditioned for large a).
    a = 2.0 * h
    log_psi_hi, log_Phi_hi = _log_psi_Phi(t)
    log_psi_lo, log_Phi_lo = _log_psi_Phi(t - a)
    log_D = _log_diff(log_psi_hi, log_psi_lo)
    log_dPhi = _log_diff(log_Phi_hi, log_Phi_lo)
    log_a = np.log(a)
    F = log_D - log_a - logm
    # Rounding scale of F: its terms, plus the cancellation in psi_hi - psi_lo.
    amplification = np.exp(log_psi_lo - log_D)
    F_scale = np.abs(log_D) + np.abs(log_a) + np.abs(logm) + 4.0
    F_scale += (np.abs(log_psi_hi) + np.abs(log_psi_lo) + 4.0) * amplification
    return F, np.exp(log_dPhi - log_D), F_scale


def _newton(residual, c, lo, hi, h, logm):
    """Safeguarded Newton on F(c) = log A(c) - log m, vectorised.

    F is increasing and concave in ``c`` (or in the shifted variable
    ``c + h``), ``lo <= root <= hi``; steps that leave the bracket are replaced
    by bisection.  Only unconverged entries are updated.
    """
    c, lo, hi = c.copy(), lo.copy(), hi.copy()
    idx = np.arange(c.size)
    for _ in range(_MAXITER):
        if idx.size == 0:
            break
        ci = c[idx]
        F, dF, F_scale = residual(ci, h[idx], logm[idx])
        hi_i = np.where(F > 0, ci, hi[idx])
        lo_i = np.where(F < 0, ci, lo[idx])
        with np.errstate(divide="ignore", invalid="ignore"):
            new = ci - F / dF
        scale = np.maximum(1.0, np.abs(ci))
        # Converged when the Newton correction is at rounding level (tested
        # before the safeguard, which would otherwise bisect away from it).
        done = np.abs(F) <= 16.0 * _EPS * F_scale  # F at its rounding level
        done |= np.abs(new - ci) <= 1e-15 * scale
        narrow = (hi_i - lo_i) <= 64.0 * _EPS * scale
        bad = ~((new >= lo_i) & (new <= hi_i)) & ~done
        new = np.where(bad | narrow, 0.5 * (lo_i + hi_i), new)
        new = np.where(F == 0, ci, new)
        done |= narrow
        c[idx], lo[idx], hi[idx] = new, lo_i, hi_i
        idx = idx[~done]
    return c


def _closed_form(zm, a):
    """Window midpoint c for a narrow ramp: Cohen's limit and two corrections.

    From the midpoint series Phi(c) - phi(c) [He_1(c) h^2/6 + He_3(c) h^4/120]
    = m, inverted to order a^4 (h = a/2); the next term is O(a^6 |zm|^5).
    """
    a2 = a * a
    with np.errstate(invalid="ignore"):
        return zm * (1.0 + a2 / 24.0 + a2 * a2 * (1.0 / 5760.0 - zm * zm / 2880.0))


#: Block length of the vectorised solver: temporaries of 8192 doubles (64 KiB)
#: stay in the allocator's heap and the cache, where arrays of 1e5 and more
#: are mapped and page-faulted afresh by every ufunc.
_BLOCK = 8192


def _kappa_gamma(p, a):
    """:func:`_kappa_gamma_block` over blocks of ``_BLOCK`` entries."""
    p, a = np.broadcast_arrays(np.asarray(p, np.float64), np.asarray(a, np.float64))
    if p.size <= _BLOCK:
        return _kappa_gamma_block(p, a)
    shape = p.shape
    p, a = p.ravel(), a.ravel()
    parts = [
        _kappa_gamma_block(p[i : i + _BLOCK], a[i : i + _BLOCK])
        for i in range(0, p.size, _BLOCK)
    ]
    return tuple(np.concatenate(col).reshape(shape) for col in zip(*parts, strict=True))


def _kappa_gamma_block(p, a):
    """Lipschitz-aware quantile, local constant and ramp offset.

    ``p`` in [0, 1] and ``a = 1/(L sigma)`` in [0, inf), broadcast float
    arrays.  Returns ``kappa`` (``s0 = -sigma kappa - 1/(2L)``; ``kappa`` is
    odd in ``p - 1/2`` and ``>= |Phi^{-1}(p)|`` in absolute value),
    ``gamma = sigma G(p)`` in (0, 1] (the paper's local constant of
    ``Phi^{-1} o f~``; ``G(p) = G(1 - p)``), ``z = Phi^{-1}(p)`` and
    ``s0 / sigma`` computed without the cancellation of the first formula.
    """
    p, a = np.broadcast_arrays(np.asarray(p, np.float64), np.asarray(a, np.float64))
    shape = p.shape
    p, a = p.ravel(), a.ravel()
    z = ndtri(p)
    zm = -np.abs(z)  # Phi^{-1}(m), m = min(p, 1 - p) (exact for p >= 1/2)
    m = np.where(p > 0.5, 1.0 - p, p)
    h = 0.5 * a
    c = zm.copy()  # window midpoint
    top = zm + h  # window top, c + h
    gamma = np.ones_like(p)
    interior = (m > 0) & (m < 0.5)
    with np.errstate(divide="ignore"):
        logm = np.log(m)

    # Closed form: the Cohen limit c = zm and its next two terms in a^2.
    c_closed = _closed_form(zm, a)
    sel = interior & (a > 0) & (a <= _A_CLOSED)
    c[sel] = c_closed[sel]
    # Midpoint series, by safeguarded Newton on c.
    sel = interior & (a > _A_CLOSED) & (a <= _A_SERIES)
    if np.any(sel):
        zs = zm[sel]
        c[sel] = _newton(_residual_series, zs, zs - h[sel], zs, h[sel], logm[sel])
    small = a <= _A_SERIES
    c[m == 0.5] = 0.0
    # The root is provably in [zm - h, zm]; clip rounding noise to it, so that
    # |kappa| >= |Phi^{-1}(p)| (the envelope radius is >= Cohen's).
    c = np.clip(c, zm - h, zm)
    top[small] = c[small] + h[small]
    # Exact psi difference, by safeguarded Newton on the window top.
    big = interior & ~small
    if np.any(big):
        zb, hb = zm[big], h[big]
        # Start from the closed form for narrow ramps; for wide ones from
        # psi^{-1}(a m), which is left of the root (psi(t) >= a m there) and
        # close to it.  F is concave, so Newton from the left is monotone.
        start = np.where(
            hb < 2.0,
            c_closed[big] + hb,
            np.maximum(zb, _psi_inverse_start(np.log(2.0 * hb) + logm[big])),
        )
        start = np.clip(start, zb, zb + hb)
        top[big] = _newton(_residual_exact, start, zb, zb + hb, hb, logm[big])
    top[(m == 0.5) & ~small] = h[(m == 0.5) & ~small]
    top = np.clip(top, zm, zm + h)
    c[~small] = top[~small] - h[~small]

    # gamma = (Phi(c + h) - Phi(c - h)) / (a phi(zm)) = sigma G(p).
    sel = (m > 0) & (a > 0) & small
    _, T = _series_terms(c[sel], h[sel])
    cs, zs = c[sel], zm[sel]
    gamma[sel] = T * np.exp(0.5 * (zs - cs) * (zs + cs))
    sel = (m > 0) & ~small
    tb, ab = top[sel], a[sel]
    log_dPhi = _log_diff(log_ndtr(tb), log_ndtr(tb - ab))
    gamma[sel] = np.exp(log_dPhi - np.log(ab) - _log_phi(zm[sel]))
    # Salman et al.: Phi^{-1} o f~ is 1/sigma-Lipschitz, so gamma <= 1.
    gamma = np.minimum(gamma, 1.0)

    upper = p >= 0.5
    kappa = np.where(upper, -c, c)
    # s0 / sigma: the window's bottom for p >= 1/2, minus its top (mirror) else.
    with np.errstate(invalid="ignore"):
        s0 = np.where(upper, top - a, -top)
    s0[m == 0] = np.where(upper[m == 0], -np.inf, np.inf)
    out = (kappa, gamma, z, s0)
    return tuple(x.reshape(shape) for x in out)


def solve_s0(p: ArrayLike, sigma: ArrayLike, L: ArrayLike) -> NDArray[np.float64]:
    r"""Offset of the worst-case ramp whose Gaussian smoothing equals ``p``.

    Solves, for ``s0``,

    .. math::

        p = 1 - L \int_{s_0}^{s_0 + 1/L} \Phi(s/\sigma)\,ds
          = 1 - L\sigma\left[\psi\!\left(\tfrac{s_0 + 1/L}{\sigma}\right)
            - \psi\!\left(\tfrac{s_0}{\sigma}\right)\right],
        \qquad \psi(t) = t\Phi(t) + \varphi(t),

    i.e. ``p = E[f(sigma Z)]`` for the ramp ``f(t) = clip(L (t - s0), 0, 1)``,
    the one-dimensional worst case of an ``L``-Lipschitz [0, 1]-valued score.
    Vectorised over the broadcast arrays, and quadrature-free.

    Parameters
    ----------
    p : array-like
        Smoothed value(s) of the score, in [0, 1].
    sigma : float or array-like
        Standard deviation of the Gaussian noise, > 0.
    L : float or array-like
        l2 Lipschitz constant of the [0, 1]-valued score, in (0, inf].
        ``L = inf`` (a step, i.e. a hard classifier) gives the Cohen limit
        ``s0 = -sigma Phi^{-1}(p)`` exactly.

    Returns
    -------
    s0 : ndarray of float (or float for scalar inputs)
        Broadcast shape of the inputs.  ``p = 1`` gives ``-inf`` and
        ``p = 0`` gives ``+inf`` (the ramp is pushed off to infinity).

    Notes
    -----
    Write ``a = 1/(L sigma)`` and ``m = min(p, 1 - p)``.  The equation says
    that the mean of :math:`\Phi` over a window of width ``a`` with midpoint
    ``c`` equals ``m``; then ``s0 = -sigma kappa - 1/(2L)`` with
    ``kappa = sign(p - 1/2) (-c)``.  Working with ``m`` (``1 - p`` is exact in
    floating point for ``p >= 1/2``) keeps full relative precision near 0 and
    1, and gives the symmetry ``s0(1 - p) = -1/L - s0(p)`` exactly.  The
    window mean is increasing and log-concave in ``c`` and
    ``Phi^{-1}(m) - a/2 <= c <= Phi^{-1}(m)`` (a refinement of the bracket
    ``[c0 - 1/L, c0]``, ``c0 = -sigma Phi^{-1}(p)``), so safeguarded Newton
    on the logarithm, with bisection fallback, converges from the Cohen
    starting point in a few iterations.  Three regimes keep 1e-13 accuracy:

    * ``a > 1e-2`` (``L sigma < 100``): the exact difference of
      :math:`\psi` in log form (``log_ndtr``, ``erfcx``, ``expm1``), whose
      cancellation error is about ``1.2 eps / a`` in ``c``;
    * ``1e-4 < a <= 1e-2``: the midpoint Taylor series of the window mean in
      Hermite polynomials (five terms);
    * ``a <= 1e-4`` (``L sigma >= 1e4``): the Cohen limit with its next two
      terms, ``kappa = z (1 + a^2/24 + a^4 (1/5760 - z^2/2880))``,
      ``z = Phi^{-1}(p)``.  The bare limit ``s0 = -sigma z - 1/(2L)`` errs by
      ``sigma |z| a^2 / 24``, below ``1e-12 sigma`` only for
      ``L sigma >= 1.3e6`` (with ``|z| <= 38.5``), while the plain
      :math:`\psi` difference already loses ``2e-10 sigma`` there; the
      corrected limit is exact to rounding from ``L sigma = 1e4`` on.

    References
    ----------
    .. [1] Delattre, Caillon, Barthélemy, Fagnou & Allauzen, "Bridging the
       Theoretical Gap in Randomized Smoothing", AISTATS 2025.

    Examples
    --------
    >>> from smoothlearn.radius import solve_s0
    >>> round(float(solve_s0(0.9, sigma=0.5, L=2.0)), 10)
    -0.9172115404
    >>> float(solve_s0(0.5, sigma=0.5, L=2.0))  # s0(1/2) = -1/(2L)
    -0.25
    """
    p = check_probability(p, "p")
    sigma = _check_sigma(sigma)
    L = _check_L(L)
    p, sigma, L = _broadcast(p=p, sigma=sigma, L=L)
    a = _ramp_width(L, sigma)
    _, _, _, s0 = _kappa_gamma(p, a)
    out = sigma * s0
    return out[()] if out.ndim == 0 else out


def lipschitz_radius(
    pA_lower: ArrayLike,
    pB_upper: ArrayLike | None = None,
    sigma: ArrayLike = 1.0,
    L: ArrayLike = np.inf,
    kind: str = "multi",
    method: str = "paper",
) -> NDArray[np.float64]:
    r"""Certified l2 radius of a smoothed classifier with L-Lipschitz scores.

    Parameters
    ----------
    pA_lower : array-like
        Lower confidence bound on the smoothed score ``E[f_A(x + d)]`` of the
        top class.
    pB_upper : array-like or None
        Upper confidence bound on the smoothed score of every other class.
        Ignored (and may be None) when ``kind="mono"``.
    sigma : float or array-like, default=1.0
        Standard deviation of the Gaussian noise, > 0.
    L : float or array-like, default=inf
        l2 Lipschitz constant of every [0, 1]-valued class score ``f_c``, in
        (0, inf].  ``inf`` gives Cohen's radius exactly.
    kind : {"multi", "mono"}, default="multi"
        ``"mono"`` uses ``pB_upper = 1 - pA_lower``.
    method : {"paper", "envelope"}, default="paper"
        ``"paper"`` is the local form of Delattre et al. (2025),
        ``R_monoLip`` and ``R_multiLip``; ``"envelope"`` the exact
        worst-case form (tighter, see Notes).

    Returns
    -------
    radius : ndarray of float (or float for scalar inputs)
        0 where the procedure abstains (the rule of :func:`abstained`, as for
        :func:`gaussian_radius`).  ``pA_lower = 1`` (mono) or
        ``pB_upper = 0 < pA_lower`` (multi) give ``inf``, like Cohen's
        radius: a class of smoothed probability 0 at ``x`` has probability 0
        everywhere.

    Notes
    -----
    **Validity.** The bounds must be confidence bounds on the means of the
    *same* [0, 1]-valued, ``L``-Lipschitz class scores (soft smoothing).
    Bounds from hard argmax counts pair only with ``L = inf``.  ``mono``
    further needs the scores to sum to at most 1 (a simplex map).

    With ``s0`` from :func:`solve_s0`, ``a = 1/(L sigma)`` and the local
    Lipschitz constant of :math:`\Phi^{-1}\circ\tilde f` at a point where
    :math:`\tilde f = p`,

    .. math::

        G(p) = \frac{L\,[\Phi((s_0 + 1/L)/\sigma) - \Phi(s_0/\sigma)]}
                    {\varphi(\Phi^{-1}(p))} \le \frac{1}{\sigma},

    the paper's radii are

    .. math::

        R_{monoLip} = \frac{\Phi^{-1}(\underline{p_A})}{G(\underline{p_A})},
        \qquad
        R_{multiLip} = \frac12\left[\frac{\Phi^{-1}(\underline{p_A})}
            {G(\underline{p_A})} - \frac{\Phi^{-1}(\overline{p_B})}
            {G(\overline{p_B})}\right],

    and the envelope radii are

    .. math::

        R^*_{mono} = -s_0(\underline{p_A}) - \frac{1}{2L}, \qquad
        R^*_{multi} = \frac{s_0(\overline{p_B}) - s_0(\underline{p_A})}{2}.

    The envelope form is the one with a complete proof: along any unit-speed
    path, :math:`|d\tilde f_c/dt| \le g(\tilde f_c)` with
    :math:`g(p) = G(p)\,\varphi(\Phi^{-1}(p))` (the ramp maximises the
    derivative of the smoothed score at a given value), and
    :math:`\int dp/g(p) = -\Delta s_0`; comparing with this ODE, the score of
    class A stays above 1/2 (mono), or above every other class (multi), up to
    :math:`R^*`.  The bound is attained by the ramp, so :math:`R^*` is tight
    given ``(pA_lower, L)``, and it is nondecreasing in ``pA_lower``.  The
    paper's form evaluates the local constant
    at ``x`` only (radius ``rho = 0`` in the paper); it is sound because
    ``G`` is nondecreasing in ``|p - 1/2|``, which gives
    ``R_paper <= R*`` (checked numerically on a dense grid in the test-suite;
    not proved here).  Both tend to Cohen's radius as ``L sigma -> inf``
    (``inf`` is exact) and both are >= it, since ``G <= 1/sigma``.  For
    ``L sigma`` below about 0.07 the paper's form is not monotone in
    ``pA_lower`` (it tends to
    :math:`\Phi^{-1}(p)\varphi(\Phi^{-1}(p))/L` as ``L sigma -> 0``, while the
    envelope form tends to ``(pA_lower - 1/2)/L``).  When
    ``pB_upper > 1/2`` (possible only when ``pA_lower + pB_upper > 1``) the
    paper's multi formula can fall below Cohen's; Cohen's radius is valid
    too, so the larger of the two is returned.  For scores on the simplex,
    passing ``min(pB_upper, 1 - pA_lower)`` as ``pB_upper`` is also valid and
    never worse.

    The returned radius is ``max(R - 1e-12 (R + sigma), Cohen's rounded
    radius)``: the solver's error (about 1e-13 sigma) can only shrink it.

    References
    ----------
    .. [1] Delattre, Caillon, Barthélemy, Fagnou & Allauzen, "Bridging the
       Theoretical Gap in Randomized Smoothing", AISTATS 2025.
    .. [2] Cohen, Rosenfeld & Kolter, "Certified Adversarial Robustness via
       Randomized Smoothing", ICML 2019.

    Examples
    --------
    >>> from smoothlearn.radius import gaussian_radius, lipschitz_radius
    >>> round(float(gaussian_radius(0.9, sigma=0.5, kind="mono")), 4)
    0.6408
    >>> round(float(lipschitz_radius(0.9, sigma=0.5, L=1.0, kind="mono")), 4)
    0.7327
    >>> round(float(lipschitz_radius(0.9, sigma=0.5, L=1.0, kind="mono",
    ...                              method="envelope")), 4)
    0.7431
    """
    pA, pB, kind = _check_bounds(pA_lower, pB_upper, kind)
    method = _check_method(method)
    sigma = _check_sigma(sigma)
    L = _check_L(L)
    pA, pB, sigma, L = _broadcast(pA_lower=pA, pB_upper=pB, sigma=sigma, L=L)
    a = _ramp_width(L, sigma)
    cohen = _cohen_raw(pA, pB, sigma, kind)
    kA, gA, zA, _ = _kappa_gamma(pA, a)
    with np.errstate(invalid="ignore"):
        if kind == "mono":
            raw = sigma * kA if method == "envelope" else sigma * (zA / gA)
        elif method == "envelope":
            kB, _, _, _ = _kappa_gamma(pB, a)
            raw = 0.5 * sigma * (kA - kB)
        else:
            _, gB, zB, _ = _kappa_gamma(pB, a)
            raw = 0.5 * sigma * (zA / gA - zB / gB)
        # Rounded down by more than the solver's error (1e-13 sigma), and
        # never below Cohen's radius, which is valid whatever L.
        lip = _round_radius(raw, LIPSCHITZ_RTOL * (np.abs(raw) + sigma))
        rounded_cohen = _round_radius(cohen, _cohen_slack(pA, pB, sigma, kind))
        out = np.where(cohen >= 0, np.fmax(lip, rounded_cohen), 0.0)
    return out[()] if out.ndim == 0 else out


def smoothed_lipschitz_constant(
    L: ArrayLike, sigma: ArrayLike, r: ArrayLike = 1.0, *, form: str = "tight"
) -> NDArray[np.float64]:
    r"""Lipschitz constant of the Gaussian smoothing of an L-Lipschitz map.

    Parameters
    ----------
    L : float or array-like
        l2 Lipschitz constant of ``f: R^d -> [0, r]``, in (0, inf].
    sigma : float or array-like
        Standard deviation of the Gaussian noise, > 0.
    r : float or array-like, default=1.0
        Length of the range of ``f``, > 0.
    form : {"tight", "lvm"}, default="tight"
        ``"tight"`` is the sharp constant
        :math:`L\,\mathrm{erf}(r / (2\sqrt2 L\sigma))`; ``"lvm"`` is the
        expression of the LVM code, :math:`L\,\mathrm{erf}(r/(\sqrt2 L\sigma))`,
        valid but looser (it is the sharp value for a range of length ``2r``).

    Returns
    -------
    lip : ndarray of float (or float for scalar inputs)
        An upper bound on the l2 Lipschitz constant of
        :math:`\tilde f(x) = E[f(x + \delta)]`, :math:`\delta\sim N(0,\sigma^2 I)`.

    Notes
    -----
    The directional derivative of :math:`\tilde f` is maximised by a ramp of
    slope ``L`` and height ``r`` centred on the Gaussian, which gives
    :math:`L[\Phi(r/(2L\sigma)) - \Phi(-r/(2L\sigma))]
    = L\,\mathrm{erf}(r/(2\sqrt2 L\sigma))`.  Both forms are ``<= L`` and tend,
    as ``L -> inf``, to Salman et al.'s constants ``r / (sigma sqrt(2 pi))``
    (tight) and ``r sqrt(2/pi) / sigma`` (LVM); ``L = inf`` returns these.

    References
    ----------
    .. [1] Delattre, Araujo, Barthélemy & Allauzen, "The Lipschitz-Variance-
       Margin Tradeoff for Enhanced Randomized Smoothing", ICLR 2024.
    .. [2] Salman et al., "Provably Robust Deep Learning via Adversarially
       Trained Smoothed Classifiers", NeurIPS 2019.

    Examples
    --------
    >>> from smoothlearn.radius import smoothed_lipschitz_constant
    >>> round(float(smoothed_lipschitz_constant(1.0, 0.5)), 4)
    0.6827
    >>> round(float(smoothed_lipschitz_constant(1.0, 0.5, form="lvm")), 4)
    0.9545
    """
    if not isinstance(form, str) or form not in ("tight", "lvm"):
        raise ValueError(
            f"The 'form' parameter must be a str among {{'lvm', 'tight'}}. "
            f"Got {form!r} instead."
        )
    L = _check_L(L)
    sigma = _check_sigma(sigma)
    r = _as_float_array(r, "r")
    if not np.all(np.isfinite(r)) or np.any(r <= 0):
        raise ValueError(
            f"The 'r' parameter must be a float in the range (0, inf). "
            f"Got {r!r} instead."
        )
    L, sigma, r = _broadcast(L=L, sigma=sigma, r=r)
    width = r / np.sqrt(2.0) if form == "lvm" else r / (2.0 * np.sqrt(2.0))
    limit = (2.0 / np.sqrt(np.pi)) * width / sigma  # L erf(x / L) -> 2 x / sqrt(pi)
    with np.errstate(invalid="ignore", divide="ignore"):
        out = np.where(np.isinf(L), limit, L * erf(width / (L * sigma)))
    return out[()] if out.ndim == 0 else out


def margin_radius(
    pA_lower: ArrayLike, pB_upper: ArrayLike, sigma: ArrayLike = 1.0
) -> NDArray[np.float64]:
    r"""Margin radius of the soft smoothed classifier (LVM code's ``radius2``).

    Parameters
    ----------
    pA_lower : array-like
        Lower confidence bound on the smoothed score of the top class.
    pB_upper : array-like
        Upper confidence bound on the smoothed score of every other class.
    sigma : float or array-like, default=1.0
        Standard deviation of the Gaussian noise, > 0.

    Returns
    -------
    radius : ndarray of float (or float for scalar inputs)
        :math:`(\underline{p_A} - \overline{p_B})\,\sigma\sqrt{\pi/2}`; 0 where
        ``pA_lower < pB_upper`` (abstain).

    Notes
    -----
    For [0, 1]-valued scores, ``f_A - f_B`` takes values in [-1, 1], so its
    smoothing is :math:`\sqrt{2/\pi}/\sigma`-Lipschitz (Salman et al.); the
    smoothed margin stays positive within margin / that constant.  Since
    :math:`\Phi^{-1}` has slope at least :math:`\sqrt{2\pi}`, this radius never
    exceeds Cohen's multi radius (they agree to first order near
    ``pA_lower = pB_upper = 1/2``); it is provided for comparison with the LVM
    paper.

    References
    ----------
    .. [1] Delattre, Araujo, Barthélemy & Allauzen, "The Lipschitz-Variance-
       Margin Tradeoff for Enhanced Randomized Smoothing", ICLR 2024.

    Examples
    --------
    >>> from smoothlearn.radius import margin_radius
    >>> round(float(margin_radius(0.9, 0.05, sigma=0.5)), 6)
    0.532659
    """
    pA, pB, _ = _check_bounds(pA_lower, pB_upper, "multi")
    sigma = _check_sigma(sigma)
    pA, pB, sigma = _broadcast(pA_lower=pA, pB_upper=pB, sigma=sigma)
    margin = pA - pB
    raw = margin * sigma * np.sqrt(0.5 * np.pi)
    out = _round_radius(raw, RADIUS_RTOL * sigma * (pA + pB))
    return out[()] if out.ndim == 0 else out
