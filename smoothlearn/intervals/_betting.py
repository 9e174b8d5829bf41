r"""Betting confidence bounds on a [0, 1] mean for a fixed number of draws.

:class:`BettingInterval` is the fixed-``n`` betting confidence bound of
Waudby-Smith & Ramdas (2024) with predictable plug-in bets, and
:class:`BettingState` its streaming form: the capital of every bound on a
grid of candidate means, updated batch by batch, read at any ``alpha``.

The test supermartingale
------------------------
To test :math:`H_0(m): \mu \le m` a gambler starts with capital 1 and before
draw :math:`X_i \in [0, 1]` stakes :math:`\lambda_i(m) \ge 0` on
:math:`X_i > m`:

.. math::

    K_n(m) = \frac{1}{J} \sum_{j=1}^{J} \prod_{i=1}^{n}
             \bigl(1 + \lambda_{ij}(m)\,(X_i - m)\bigr), \qquad
    \lambda_{ij}(m) = \min\bigl(\hat\lambda_i,\; c_j / m\bigr),

with truncations :math:`0 < c_j < 1` (default ``(0.75, 0.99)``) and the
predictable plug-in bet (WSR 2024, Section 5, for a sample size ``n`` fixed
in advance)

.. math::

    \hat\lambda_i = \sqrt{\frac{2 \log(1/\alpha_d)}{n\, \hat\sigma^2_{i-1}}},
    \qquad
    \hat\mu_t = \frac{1/2 + \sum_{i \le t} X_i}{t + 1}, \quad
    \hat\sigma^2_t = \frac{1/4 + \sum_{i \le t} (X_i - \hat\mu_i)^2}{t + 1},

a function of :math:`X_1, \dots, X_{i-1}` only.  Each factor is at least
:math:`1 - c_j > 0` and, given the past, has expectation
:math:`1 + \lambda_{ij}(m)(E[X_i \mid \mathcal F_{i-1}] - m) \le 1` whenever
the conditional mean is at most ``m``, because :math:`\lambda_{ij}(m) \ge 0`
is fixed by the past.  So each product is a non-negative supermartingale
with initial value 1 under every law on [0, 1] with mean at most ``m`` (the
composite null, not only :math:`\mu = m`), and so is their average.  By
Ville's inequality :math:`P(\exists t: K_t(\mu) \ge 1/\alpha) \le \alpha`.

**Monotonicity.**  For each ``x`` in [0, 1] the factor
:math:`m \mapsto 1 + \min(\hat\lambda, c/m)(x - m)` is non-increasing: on
:math:`m \le c/\hat\lambda` it is :math:`1 + \hat\lambda(x - m)`, on
:math:`m \ge c/\hat\lambda` it is :math:`1 - c + c x / m`, both
non-increasing and equal at the switch.  Products and averages of positive
non-increasing functions are non-increasing, so :math:`K_n` is.

**The bound.**  ``L`` is any ``m`` at which :math:`K_n(m) \ge 1/\alpha` was
checked (0 if none).  If :math:`\mu < L` then :math:`K_n(\mu) \ge K_n(L) \ge
1/\alpha`, so :math:`P(\mu < L) \le \alpha`: the argument needs no grid
and holds off the points that were checked.  Upper bounds follow by
reflection :math:`X \mapsto 1 - X`.  Because the bets are predictable
whatever level :math:`\alpha_d` they were tuned for, the same capital gives a
valid bound at every ``alpha`` (recertification), only a less tight one
away from :math:`\alpha_d`; and, by Ville's inequality, at every number of
draws, not only ``n``.

References
----------
.. [1] Waudby-Smith & Ramdas, "Estimating means of bounded random variables
   by betting", JRSS-B 86(1), 2024 (discussion paper), Sections 4-5.
.. [2] Ville, "Étude critique de la notion de collectif", 1939.
.. [3] Fan, Grama & Liu, "Hoeffding's inequality for supermartingales",
   Stochastic Processes and their Applications 122, 2012 (the inequality
   :math:`\log(1 + y) \ge y - \psi(c) y^2` for :math:`y \ge -c`).
"""

from __future__ import annotations

from numbers import Integral, Real
from typing import ClassVar

import numpy as np
from numpy.typing import ArrayLike, NDArray
from sklearn.utils._param_validation import Interval

from .._rounding import round_down, round_up
from .._validation import _as_float_array, check_alpha
from . import _betting_core as core
from ._base import IntervalEstimator

__all__ = ["BettingInterval", "BettingState"]

#: Reflection x -> 1 - x rounds by at most half an ulp of 1.
_REFLECT_ERROR = 2.0**-53
_SIDES = ("lower", "upper", "both")
#: Half-width of the range of the final mean, in standard deviations, that
#: a regrid covers.
_SPREAD_Z = 2.5


def _regrid_schedule(n: int) -> NDArray[np.int64]:
    """Draw counts after which the movable points are moved.

    After ``t0, 2 t0, 4 t0, ...`` draws up to ``n / 2`` (``t0 = 64``, less
    for ``n < 512``), then after ``3n/4``, ``7n/8``, ``15n/16`` and
    ``31n/32``: the range of the final mean narrows as draws accumulate, and
    late moves give the finest grid where the bound ends up.
    """
    t0 = max(8, min(64, n // 8))
    early = t0 * 2 ** np.arange(48, dtype=np.int64)
    early = early[early <= n // 2]
    late = np.array([n - n // 2**k for k in range(2, 6) if n // 2**k >= t0])
    return np.unique(np.concatenate([early, late]).astype(np.int64))


def _check_draws(x: ArrayLike, name: str = "x") -> NDArray[np.float64]:
    """Validate draws: a numeric array of at least one dimension, in [0, 1]."""
    arr = _as_float_array(x, name)
    if arr.ndim == 0 or arr.shape[-1] == 0:
        raise ValueError(
            f"The {name!r} parameter must be an array of shape (..., n_draws) with "
            f"n_draws >= 1. Got shape {arr.shape} instead."
        )
    if not np.all(np.isfinite(arr)) or np.any((arr < 0) | (arr > 1)):
        raise ValueError(
            f"The {name!r} parameter must hold draws in [0, 1]: the betting bounds "
            "are valid for [0, 1]-valued scores only. Got values outside [0, 1] "
            "instead."
        )
    return arr


def _check_positive_int(value, name: str, owner: str, minimum: int = 1) -> int:
    if (
        isinstance(value, bool | np.bool_)
        or not isinstance(value, Integral)
        or value < minimum
    ):
        raise ValueError(
            f"The {name!r} parameter of {owner} must be an int >= {minimum}. Got "
            f"{value!r} instead."
        )
    return int(value)


class BettingInterval(IntervalEstimator):
    r"""Fixed-``n`` betting confidence bounds on the mean of [0, 1]-valued draws.

    The tightest guaranteed bound of the library for soft scores: variance
    adaptive like empirical Bernstein, close to Clopper-Pearson on Bernoulli
    draws, and valid for every law on [0, 1] and every ``n``.  It uses the
    **order** of the draws (its bets are predictable), so it has three
    entry points:

    * :meth:`lower_from_draws`, :meth:`upper_from_draws`,
      :meth:`interval_from_draws`: from the draws themselves, exactly (root
      finding on the capital);
    * :meth:`new_state`: a :class:`BettingState` that accumulates the capital
      batch by batch in memory independent of ``n`` and gives the bounds at
      any ``alpha`` afterwards (what a certification engine keeps);
    * :meth:`lower`, :meth:`upper`, :meth:`interval` (the
      :class:`IntervalEstimator` interface): from the sufficient statistics
      ``(k, n, sum_sq)`` alone, which carry no order, a valid *order-free*
      betting bound (see Notes), less tight than the two above.

    Parameters
    ----------
    truncation : tuple of float, default=(0.75, 0.99)
        The truncations :math:`c_j \in (0, 1)`: strategy ``j`` never stakes
        more than :math:`c_j / m`, and the bound uses the average of the
        strategies' capitals.  A small ``c`` protects against a rare low draw
        after many high ones; ``c`` near 1 approaches Clopper-Pearson when
        every draw is 1.  Averaging costs at most :math:`\log J` of evidence,
        and nothing where the truncations do not bind (variance-dominated
        data), see the betting page of the documentation for the numbers.
    n_grid : int, default=192
        Candidate means per bound in a :class:`BettingState`: a third on a
        fixed logit-spaced grid, two thirds moved to where the bound is
        expected.  Memory per bound is about ``(2 len(truncation) + 1)
        n_grid`` floats.

    Attributes
    ----------
    requires_counts : bool
        False: sums of [0, 1]-valued scores are accepted.
    guaranteed : bool
        True: every bound holds with probability at least ``1 - alpha`` for
        every law on [0, 1] and every ``n``.
    accepts_draws : bool
        True: the bounds from the draws (or a state) are tighter than those
        from the sufficient statistics.

    Notes
    -----
    *From the draws.*  With the capital :math:`K_n(m)` of the module
    docstring (predictable plug-in bets tuned for ``n`` and :math:`\alpha_d`,
    by default the ``alpha`` of the call), the lower bound is
    :math:`L = \sup\{m : K_n(m) \ge 1/\alpha\}`, found by root finding and
    returned at a point where :math:`K_n \ge 1/\alpha` was checked (with a
    margin for the floating-point error of the log-capital), then rounded
    down by 16 ulps.  :math:`K_n` is non-increasing in ``m``, so
    :math:`P(\mu < L) \le \alpha` for every law on [0, 1].  Upper bounds are
    :math:`1 - L` on the reflected draws :math:`1 - X`.

    *From the sufficient statistics* ``(k, n, sum_sq)`` (order unknown): the
    bets cannot depend on the data, so the capital is an average of constant
    bets, half the weight on :math:`\lambda = c/m` (:math:`c = \max_j c_j`)
    and half spread over :math:`\lambda_0 2^j`, :math:`\lambda_0 =
    \sqrt{2/n}`, up to ``c``; each truncated at :math:`c/m`, so the average
    is non-increasing in ``m``; none depends on ``alpha``, so the bound
    widens as ``alpha`` shrinks.  It depends on the draws through
    :math:`\prod_i (1 + \lambda (X_i - m))`, which Fan's inequality bounds
    below by :math:`\exp(\lambda(S - nm) - \psi(\lambda m)\lambda^2 Q(m))`
    with :math:`S` the sum, :math:`Q(m) = \mathrm{sum\_sq} - 2mS + nm^2` and
    :math:`\psi(c) = (-\log(1 - c) - c)/c^2`.  A mean at which this lower
    bound reaches :math:`1/\alpha` is rejected by the true capital, so the
    argument above applies.  It is tighter than empirical Bernstein for
    low-variance scores and means near 0 or 1, up to about 13 % looser for
    variance-dominated data at ``n >= 10,000``.

    **Coverage**: guaranteed and conservative (Ville's inequality and
    Markov's); from the draws it is even uniform over the number of draws.

    References
    ----------
    .. [1] Waudby-Smith & Ramdas, "Estimating means of bounded random
       variables by betting", JRSS-B 86(1), 2024.
    .. [2] Fan, Grama & Liu, "Hoeffding's inequality for supermartingales",
       Stoch. Proc. Appl. 122, 2012.

    Examples
    --------
    >>> import numpy as np
    >>> from smoothlearn.intervals import BettingInterval
    >>> rng = np.random.default_rng(0)
    >>> x = rng.beta(95 * 4.74, 5 * 4.74, size=10_000)  # mean .95, sd ~ .01
    >>> bet = BettingInterval()
    >>> lo = float(bet.lower_from_draws(x, alpha=0.001))
    >>> round(float(x.mean()) - lo, 5)  # empirical Bernstein: 0.00216
    0.00077

    All ones: within 10 % of Clopper-Pearson's distance to 1,
    :math:`1 - \alpha^{1/n}`.

    >>> d = 1 - float(bet.lower_from_draws(np.ones(10_000), alpha=0.001))
    >>> round(d / (1 - 0.001 ** (1 / 10_000)), 2)
    1.1

    Streaming, with the bound read at another level afterwards:

    >>> state = bet.new_state(shape=(), n=10_000, alpha=0.001)
    >>> for batch in np.split(x, 10):
    ...     state = state.update(batch)
    >>> round(float(state.lower(0.001)), 5), round(float(state.lower(0.01)), 5)
    (0.94905, 0.94928)

    The grid costs little: from the draws the same bounds are 0.94906 and
    0.94929.
    """

    requires_counts = False
    guaranteed = True
    accepts_draws = True

    # The values inside a tuple of caps are checked by _caps().
    _parameter_constraints: ClassVar[dict] = {
        "truncation": ["array-like", Interval(Real, 0, 1, closed="neither")],
        "n_grid": [Interval(Integral, 12, None, closed="left")],
    }

    def __init__(self, truncation=(0.75, 0.99), n_grid=192):
        self.truncation = truncation
        self.n_grid = n_grid

    # -- parameters ---------------------------------------------------------
    def _caps(self) -> NDArray[np.float64]:
        name = type(self).__name__
        try:
            caps = np.asarray(self.truncation, dtype=np.float64).ravel()
        except (TypeError, ValueError):
            caps = np.array([np.nan])
        if (
            isinstance(self.truncation, str | bytes | bool)
            or caps.size == 0
            or not np.all((caps > 0) & (caps <= 1 - 1e-12))
        ):
            raise ValueError(
                f"The 'truncation' parameter of {name} must be a non-empty tuple "
                f"of floats in the open interval (0, 1). Got {self.truncation!r} "
                "instead."
            )
        return caps

    def _grid_sizes(self) -> tuple[int, int]:
        size = _check_positive_int(self.n_grid, "n_grid", type(self).__name__, 12)
        n_anchor = size // 3
        return n_anchor, size - n_anchor

    # -- sufficient statistics: the order-free bound ------------------------
    def _lower(self, k, n, alpha, sum_sq):
        caps = self._caps()
        shape = k.shape
        out = core.order_free_lower(
            k.ravel(), sum_sq.ravel(), n.ravel(), -np.log(alpha.ravel()), caps.max()
        )
        return out.reshape(shape)

    # -- draws ----------------------------------------------------------------
    def _from_draws(self, x, alpha, alpha_design, name):
        self._validate_params()
        caps = self._caps()
        x = _check_draws(x)
        alpha = check_alpha(alpha)
        design = alpha if alpha_design is None else check_alpha(alpha_design, name)
        lead = x.shape[:-1]
        try:
            alpha = np.broadcast_to(alpha, lead)
            design = np.broadcast_to(design, lead)
        except ValueError as exc:
            raise ValueError(
                f"The 'alpha' and {name!r} parameters must broadcast to the shape "
                f"{lead} of the draws without their last axis. Got {np.shape(alpha)}"
                f" and {np.shape(design)} instead."
            ) from exc
        return caps, x.reshape(-1, x.shape[-1]), alpha.ravel(), design.ravel(), lead

    @staticmethod
    def _shape_out(out, lead):
        out = out.reshape(lead)
        return out[()] if out.ndim == 0 else out

    def lower_from_draws(
        self, x: ArrayLike, alpha: ArrayLike, *, alpha_design: ArrayLike = None
    ) -> NDArray[np.float64]:
        r"""One-sided lower confidence bound from the draws, in their order.

        Parameters
        ----------
        x : array-like of shape (..., n)
            The draws in [0, 1], in the order they were made (last axis).
        alpha : float or array-like broadcastable to ``x.shape[:-1]``
            Failure probability of each bound: ``P(mean < lower) <= alpha``.
        alpha_design : float or array-like, default=None
            The level the bets are tuned for; None means ``alpha``.  Any value
            gives a valid bound; the tightest is at ``alpha_design = alpha``.

        Returns
        -------
        lower : ndarray of shape ``x.shape[:-1]`` (a float for 1-D ``x``)
        """
        caps, rows, alpha, design, lead = self._from_draws(
            x, alpha, alpha_design, "alpha_design"
        )
        out = core.lower_from_draws(rows, -np.log(alpha), -np.log(design), caps)
        return self._shape_out(round_down(out), lead)

    def upper_from_draws(
        self, x: ArrayLike, alpha: ArrayLike, *, alpha_design: ArrayLike = None
    ) -> NDArray[np.float64]:
        """One-sided upper confidence bound from the draws, in their order.

        Parameters are those of :meth:`lower_from_draws`;
        ``P(mean > upper) <= alpha``.
        """
        caps, rows, alpha, design, lead = self._from_draws(
            x, alpha, alpha_design, "alpha_design"
        )
        low = core.lower_from_draws(1.0 - rows, -np.log(alpha), -np.log(design), caps)
        out = np.minimum(round_up(1.0 - low) + _REFLECT_ERROR, 1.0)
        return self._shape_out(out, lead)

    def interval_from_draws(
        self, x: ArrayLike, alpha: ArrayLike
    ) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
        """Two-sided interval from the draws: each side at ``alpha / 2``.

        Returns
        -------
        lower, upper : ndarrays of shape ``x.shape[:-1]``
        """
        half = check_alpha(alpha) / 2.0
        return self.lower_from_draws(x, half), self.upper_from_draws(x, half)

    # -- streaming ------------------------------------------------------------
    def new_state(
        self,
        shape: int | tuple[int, ...],
        n: int,
        alpha: ArrayLike,
        *,
        side: str | ArrayLike = "both",
    ) -> BettingState:
        """An empty :class:`BettingState` for bounds of the given shape.

        Parameters
        ----------
        shape : int or tuple of int
            Shape of the array of bounded quantities (e.g. ``(n_inputs,
            n_quantities)``); ``()`` for one.
        n : int
            Planned number of draws: the bets are tuned for it.  Any number
            of draws may be fed; the bounds stay valid.
        alpha : float or array-like broadcastable to ``shape``
            The level the bets are tuned for (:math:`\\alpha_d`); the state's
            bounds may be read at any level.
        side : {"lower", "upper", "both"} or array-like of those, default="both"
            Which one-sided bounds to keep: a string for all quantities, or
            an array of ``"lower"``/``"upper"`` broadcastable to ``shape``,
            one side per quantity (half the memory of ``"both"``).

        Returns
        -------
        BettingState
        """
        return BettingState(self, shape, n, alpha, side=side)


class BettingState:
    r"""Streaming betting capital of many one-sided bounds at once.

    Built by :meth:`BettingInterval.new_state`.  For every bounded quantity
    (an entry of ``shape``) and every kept side it holds the log-capital of
    each strategy on a grid of candidate means, the running sum and the
    running squared deviation that the predictable bets need, and nothing
    else: memory ``O(size x n_grid)``, independent of the number of draws.

    Feed the draws in order with :meth:`update`; read the bounds at any
    ``alpha`` with :meth:`lower`, :meth:`upper` or :meth:`bound`, as often as
    wanted.  Save with :meth:`to_dict`, restore with :meth:`from_dict`.

    Attributes
    ----------
    shape : tuple of int
        Shape of the array of bounded quantities.
    n : int
        Planned number of draws (the bets are tuned for it).
    n_draws : int or ndarray of shape ``shape``
        Draws fed so far (an array when quantities differ).
    side : ndarray of str of shape ``shape``, or str
        ``"both"``, or the kept side of each quantity.

    Notes
    -----
    *Grid.*  A bound is the largest grid point whose capital reaches
    :math:`1/\alpha`, so its resolution is the grid's.  A third of the points
    are fixed (logit-spaced in :math:`[10^{-9}, 1 - 10^{-9}]`); the others
    are moved, after ``64, 128, 256, ...`` draws (up to ``n / 2``) and after
    ``3n/4, ..., 31n/32`` draws, to where
    the capital extrapolated to ``n`` draws crosses the levels around
    :math:`\log(1/\alpha_d)`.  A moved point that lands between existing
    points starts from the capital of the existing point just above it, a
    lower bound on its own capital since the capital is non-increasing in
    the mean; so every stored capital is a lower bound on the true one and
    every bound read from the state is valid, whatever the grid (see
    :mod:`smoothlearn.intervals._betting`).  The grid only costs tightness:
    on the same draws a state's lower bound is not above
    :meth:`BettingInterval.lower_from_draws` (beyond the root finder's
    relative 1e-10) and, on the documentation's
    width table, below it by at most 2 % of the gap to the sample mean (4 %
    in one case).

    *Cost.*  Each draw costs ``J n_grid`` multiply-adds per quantity and
    side (``J`` truncations), with one logarithm per 8 draws.
    """

    def __init__(self, interval, shape, n, alpha, *, side="both"):
        interval._validate_params()
        caps = interval._caps()
        n_anchor, n_dense = interval._grid_sizes()
        if isinstance(shape, Integral) and not isinstance(shape, bool):
            shape = (int(shape),)
        try:
            shape = tuple(int(s) for s in shape)
        except TypeError:
            raise ValueError(
                "The 'shape' parameter must be an int or a tuple of ints. Got "
                f"{shape!r} instead."
            ) from None
        if any(s < 0 for s in shape):
            raise ValueError(
                f"The 'shape' parameter must hold non-negative ints. Got {shape!r} "
                "instead."
            )
        n = _check_positive_int(n, "n", "BettingState")
        alpha = np.broadcast_to(check_alpha(alpha), shape)
        size = int(np.prod(shape, dtype=np.int64))
        if isinstance(side, str):
            if side not in _SIDES:
                raise ValueError(
                    "The 'side' parameter must be 'lower', 'upper', 'both' or an "
                    f"array of 'lower'/'upper'. Got {side!r} instead."
                )
            per_entry = None
        else:
            per_entry = np.asarray(side)
            if not np.all(np.isin(per_entry, ("lower", "upper"))):
                raise ValueError(
                    "The 'side' parameter must be 'lower', 'upper', 'both' or an "
                    f"array of 'lower'/'upper'. Got {side!r} instead."
                )
            try:
                per_entry = np.broadcast_to(per_entry, shape).astype("<U5")
            except ValueError:
                raise ValueError(
                    f"The 'side' parameter of shape {per_entry.shape} cannot be "
                    f"broadcast to the shape {shape}."
                ) from None
        if per_entry is not None:
            reflect = (per_entry == "upper").ravel()
            source = np.arange(size)
        elif side == "both":
            reflect = np.r_[np.zeros(size, bool), np.ones(size, bool)]
            source = np.r_[np.arange(size), np.arange(size)]
        else:
            reflect = np.full(size, side == "upper")
            source = np.arange(size)
        rows = reflect.size
        self.shape = shape
        self.n = n
        self.side = side if per_entry is None else per_entry
        self._t = np.zeros(rows, dtype=np.int64)
        self._caps = caps
        self._alpha_design = alpha.ravel()[source].astype(np.float64)
        self._reflect = reflect
        self._source = source
        self._sum = np.zeros(rows)
        self._dev = np.zeros(rows)
        self._n_fixed = n_anchor
        # Until the first regrid the movable points are logit-spaced too.
        start = 1.0 / (1.0 + np.exp(-np.linspace(-12.0, 12.0, n_dense)))
        grid = np.concatenate([core.anchor_grid(n_anchor), start])
        self._m = np.tile(grid, (rows, 1))
        self._log_k = np.zeros((rows, caps.size, grid.size))
        self._sum_a = np.zeros_like(self._log_k)
        self._sum_b = np.zeros_like(self._log_k)
        self._schedule = _regrid_schedule(n)

    def __repr__(self) -> str:
        t = self.n_draws
        t = t if np.ndim(t) == 0 else f"{int(np.min(t))}..{int(np.max(t))}"
        side = self.side if isinstance(self.side, str) else "[per entry]"
        return f"BettingState(shape={self.shape}, n={self.n}, n_draws={t}, side={side})"

    # -- saving ---------------------------------------------------------------
    _ARRAYS = (
        "_caps",
        "_alpha_design",
        "_reflect",
        "_source",
        "_sum",
        "_dev",
        "_m",
        "_log_k",
        "_sum_a",
        "_sum_b",
        "_schedule",
        "_t",
    )

    def to_dict(self) -> dict[str, NDArray]:
        """The state as a dict of plain numpy arrays (for ``numpy.savez``).

        Returns
        -------
        dict of str to ndarray
            No object arrays, so ``numpy.load(..., allow_pickle=False)``
            reads it back; :meth:`from_dict` restores the state.
        """
        out = {
            name.lstrip("_"): np.asarray(getattr(self, name)) for name in self._ARRAYS
        }
        out["shape"] = np.asarray(self.shape, dtype=np.int64)
        out["n"] = np.asarray(self.n, dtype=np.int64)
        out["n_fixed"] = np.asarray(self._n_fixed, dtype=np.int64)
        out["side"] = np.asarray(self.side, dtype="<U5")
        return out

    @classmethod
    def from_dict(cls, arrays: dict[str, ArrayLike]) -> BettingState:
        """Restore a state saved by :meth:`to_dict`.

        Parameters
        ----------
        arrays : mapping of str to array-like
            What :meth:`to_dict` returned (e.g. the arrays of an ``.npz``).

        Returns
        -------
        BettingState
        """
        state = cls.__new__(cls)
        try:
            for name in cls._ARRAYS:
                setattr(state, name, np.array(arrays[name.lstrip("_")]))
            state.shape = tuple(int(v) for v in np.asarray(arrays["shape"]).ravel())
            state.n = int(arrays["n"])
            state._n_fixed = int(arrays["n_fixed"])
            side = np.asarray(arrays["side"]).astype("<U5")
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(
                f"The 'arrays' parameter must hold a saved BettingState: {exc}"
            ) from None
        state.side = str(side) if side.ndim == 0 else side
        rows = state._reflect.size
        if state._m.shape[0] != rows or state._log_k.shape != state._sum_a.shape:
            raise ValueError(
                "The 'arrays' parameter must hold a saved BettingState: inconsistent "
                "array shapes."
            )
        return state

    # -- feeding --------------------------------------------------------------
    def update(self, draws: ArrayLike, rows: ArrayLike = None) -> BettingState:
        """Feed the next draws, in order.

        Parameters
        ----------
        draws : array-like of shape ``shape + (b,)``, or ``(len(rows), b)``
            The next ``b`` draws of every quantity (or of the quantities in
            ``rows``), in [0, 1], in the order they were made.  A 1-D array is
            accepted for ``shape == ()``.
        rows : array-like of int, default=None
            Flat indices (into ``shape``) of the quantities fed, all with the
            same number of draws so far; None feeds every quantity.  An
            engine whose batches cut across inputs feeds each input's part
            of a batch this way.

        Returns
        -------
        self : BettingState
        """
        x = _check_draws(draws, "draws")
        size = self._t_entry_size()
        if rows is None:
            if x.shape[:-1] != self.shape:
                raise ValueError(
                    f"The 'draws' parameter must have shape {self.shape} + (b,). "
                    f"Got {x.shape} instead."
                )
            x = x.reshape(-1, x.shape[-1])[self._source]
            idx = None
        else:
            entries = self._check_rows(rows, size)
            if x.shape != (entries.size, x.shape[-1]):
                raise ValueError(
                    "The 'draws' parameter must have shape (len(rows), b) = "
                    f"({entries.size}, b). Got {x.shape} instead."
                )
            pos = np.full(size, -1)
            pos[entries] = np.arange(entries.size)
            idx = np.flatnonzero(pos[self._source] >= 0)
            x = x[pos[self._source[idx]]]
            if np.any(self._t[idx] != self._t[idx[0]]):
                raise ValueError(
                    "The 'rows' parameter must select quantities that have all "
                    "received the same number of draws; feed them in groups."
                )
        reflect = self._reflect if idx is None else self._reflect[idx]
        x = np.where(reflect[:, None], 1.0 - x, x)
        if idx is None:
            if self._t.size == 0:
                return self
            if np.any(self._t != self._t[0]):
                raise ValueError(
                    "The quantities of this BettingState have received different "
                    "numbers of draws; feed them with the 'rows' parameter."
                )
            self._feed(x, slice(None))
        else:
            self._feed(x, idx)
        return self

    def _feed(self, x, idx) -> None:
        """Process draws ``x`` (internal rows ``idx``, same count so far)."""
        names = ("_sum", "_dev", "_m", "_log_k", "_sum_a", "_sum_b")
        arr = {name: getattr(self, name)[idx] for name in names}  # views or copies
        threshold = -np.log(self._alpha_design[idx])
        t = int(self._t[idx][0]) if x.shape[0] else 0
        start, b = 0, x.shape[1]
        while start < b and x.shape[0]:
            later = self._schedule[self._schedule > t]
            stop = b if later.size == 0 else min(b, start + int(later[0]) - t)
            seg = x[:, start:stop]
            lam, arr["_sum"], arr["_dev"] = core.plugin_bets(
                seg, t, arr["_sum"], arr["_dev"], float(self.n), threshold
            )
            lk, sum_a, sum_b = core.log_capital(seg, lam, arr["_m"], self._caps, True)
            arr["_log_k"] += lk
            arr["_sum_a"] += sum_a
            arr["_sum_b"] += sum_b
            t += stop - start
            start = stop
            if later.size and t == later[0]:
                var = (core.PRIOR_VAR + arr["_dev"]) / (t + 1.0)
                spread = _SPREAD_Z * np.sqrt(var * max(self.n - t, 0)) / self.n
                core.regrid(
                    arr["_m"],
                    arr["_log_k"],
                    arr["_sum_a"],
                    arr["_sum_b"],
                    self._n_fixed,
                    t,
                    self.n,
                    threshold,
                    spread,
                )
        for name in names:
            getattr(self, name)[idx] = arr[name]
        self._t[idx] = t

    def _t_entry_size(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64))

    @staticmethod
    def _check_rows(rows, size) -> NDArray[np.intp]:
        try:
            r = np.asarray(rows)
            ok = r.ndim == 1 and r.size > 0 and np.issubdtype(r.dtype, np.integer)
        except (TypeError, ValueError):
            ok = False
        if not ok or np.any((r < 0) | (r >= size)) or np.unique(r).size != r.size:
            raise ValueError(
                "The 'rows' parameter must be a non-empty 1-D array of distinct "
                f"flat indices in [0, {size}). Got {rows!r} instead."
            )
        return r.astype(np.intp)

    @property
    def n_draws(self) -> NDArray[np.int64] | int:
        """Draws fed so far: an int when every quantity has had as many, else
        an array of shape ``shape``."""
        size = self._t_entry_size()
        per_entry = np.zeros(size, dtype=np.int64)
        per_entry[self._source] = self._t
        if size and np.all(per_entry == per_entry[0]):
            return int(per_entry[0])
        if size == 0:
            return 0
        return per_entry.reshape(self.shape)

    # -- reading --------------------------------------------------------------
    def _lower_rows(self, alpha, rows):
        """Largest checked grid point of the internal ``rows`` at ``alpha``."""
        grid = self._m[rows]
        lk = core.mixture(self._log_k[rows])
        need = -np.log(alpha)[:, None] + core.margin(
            self._t[rows][:, None], grid, float(self._caps.max())
        )
        return np.max(np.where(lk >= need, grid, 0.0), axis=1)

    def _side_rows(self, which: str) -> NDArray[np.intp]:
        size = int(np.prod(self.shape, dtype=np.int64))
        if isinstance(self.side, str):
            if self.side == "both":
                return np.arange(size) + (size if which == "upper" else 0)
            if self.side == which:
                return np.arange(size)
        kept = self.side if isinstance(self.side, str) else "per entry"
        raise ValueError(
            f"This BettingState keeps side={kept!r}; {which} bounds need "
            f"side={which!r} or 'both' (use bound() for per-entry sides)."
        )

    def _alpha(self, alpha) -> NDArray[np.float64]:
        a = check_alpha(alpha)
        try:
            return np.broadcast_to(a, self.shape).ravel()
        except ValueError:
            raise ValueError(
                f"The 'alpha' parameter of shape {a.shape} cannot be broadcast to "
                f"the shape {self.shape} of the state."
            ) from None

    def _finish(self, out):
        out = out.reshape(self.shape)
        return out[()] if out.ndim == 0 else out

    def lower(self, alpha: ArrayLike) -> NDArray[np.float64]:
        """Lower confidence bounds at level ``alpha``: ``P(mean < lower) <= alpha``.

        Parameters
        ----------
        alpha : float or array-like broadcastable to ``shape``

        Returns
        -------
        ndarray of shape ``shape`` (a float for ``shape == ()``)
        """
        rows = self._side_rows("lower")
        return self._finish(round_down(self._lower_rows(self._alpha(alpha), rows)))

    def upper(self, alpha: ArrayLike) -> NDArray[np.float64]:
        """Upper confidence bounds at level ``alpha``: ``P(mean > upper) <= alpha``.

        Parameters are those of :meth:`lower`.
        """
        rows = self._side_rows("upper")
        low = self._lower_rows(self._alpha(alpha), rows)
        return self._finish(np.minimum(round_up(1.0 - low) + _REFLECT_ERROR, 1.0))

    def bound(self, alpha: ArrayLike) -> NDArray[np.float64]:
        """The kept one-sided bound of each quantity (per-entry ``side``).

        A lower bound where the side is ``"lower"``, an upper bound where it
        is ``"upper"``, each failing with probability at most ``alpha``.
        """
        if isinstance(self.side, str):
            if self.side == "both":
                raise ValueError(
                    "bound() needs one side per quantity; this BettingState keeps "
                    "both: use lower() or upper()."
                )
            return self.lower(alpha) if self.side == "lower" else self.upper(alpha)
        low = self._lower_rows(self._alpha(alpha), np.arange(self._reflect.size))
        out = np.where(
            self._reflect,
            np.minimum(round_up(1.0 - low) + _REFLECT_ERROR, 1.0),
            round_down(low),
        )
        return self._finish(out)
