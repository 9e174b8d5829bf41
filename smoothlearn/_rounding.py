r"""Outward rounding: floating point may shrink a certificate, never grow it.

Every confidence bound and radius that leaves smoothlearn is computed in
float64 with special functions (``betaincinv``, ``ndtri``, ...) whose errors
have no fixed sign.  The helpers below move each number to the
safe side by more than that error, so the arithmetic can only make a
certificate smaller (see the "Floating point and the soundness of a
certificate" page of the documentation).

* A lower bound ``p`` becomes ``p - rtol |p| - tiny`` and an upper bound
  ``p + rtol |p| + tiny`` (``tiny = 16 * 2**-1022`` keeps a positive true
  bound positive), clipped to [0, 1].  ``rtol`` is a class attribute of each
  interval: 16 ulps (``16 * 2**-52``) for the closed forms (Wilson,
  Agresti-Coull, Hoeffding, empirical Bernstein) and the betting sequence,
  whose own error is a few ulps; 1e-9 for the Beta quantiles
  (Clopper-Pearson, Jeffreys), whose roots (scipy's ``betaincinv`` and
  ``betainccinv``, checked and if need be recomputed against the forward
  ``betainc``) were measured up to 9.1e-11 off exact values at n <= 2**40.
* A Gaussian radius :math:`R = \tfrac{\sigma}{2}(z_A - z_B)` (``z``
  quantiles by ``ndtri``, peak relative error below 1e-15) loses
  ``32 eps sigma (|z_A| + |z_B|)``: the error of the two quantiles, their
  difference and the products.
* A Lipschitz-aware radius loses ``1e-12 (R + sigma)``: its ramp equation is
  solved to about 1e-13 in units of sigma.

The cost is a few vectorised operations per input; the effect on a published
number is a relative 1e-9 at most.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

__all__: list[str] = []

EPS = float(np.finfo(np.float64).eps)
_BOUND_ULPS = 16.0
_TINY = 16.0 * 2.0**-1022
#: Slack of a Gaussian radius, per unit of sigma * (|z_A| + |z_B|).
RADIUS_RTOL = 32.0 * EPS
#: Slack of a Lipschitz-aware radius, per unit of (R + sigma).
LIPSCHITZ_RTOL = 1e-12


#: Default relative error margin of a confidence bound.
BOUND_RTOL = _BOUND_ULPS * EPS


def round_down(p: NDArray[np.float64], rtol: float = BOUND_RTOL) -> NDArray[np.float64]:
    """A lower bound in [0, 1] moved down by more than its rounding error."""
    with np.errstate(invalid="ignore"):
        return np.clip(p - rtol * np.abs(p) - _TINY, 0.0, 1.0)


def round_up(p: NDArray[np.float64], rtol: float = BOUND_RTOL) -> NDArray[np.float64]:
    """An upper bound in [0, 1] moved up by more than its rounding error."""
    with np.errstate(invalid="ignore"):
        return np.clip(p + rtol * np.abs(p) + _TINY, 0.0, 1.0)
