"""Input validation shared by the numeric modules.

Every public numeric function validates its inputs here, so that bad input
always gets a :class:`ValueError` naming the offending parameter, in
scikit-learn's wording.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, NDArray

__all__ = [
    "check_alpha",
    "check_class_statistics",
    "check_kind",
    "check_probability",
    "check_scalar_alpha",
    "check_sufficient_statistics",
]


def check_alpha(alpha: ArrayLike, name: str = "alpha") -> NDArray[np.float64]:
    """Validate a failure probability: every entry finite and in the open (0, 1).

    Returns
    -------
    alpha : ndarray of float64
    """
    if isinstance(alpha, bool | np.bool_):
        raise ValueError(
            f"The {name!r} parameter must be a float in the open interval (0, 1). "
            f"Got {alpha!r} instead."
        )
    try:
        a = np.asarray(alpha, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ValueError(
            f"The {name!r} parameter must be a float in the open interval (0, 1). "
            f"Got {alpha!r} instead."
        ) from exc
    if a.size == 0 or not np.all((a > 0) & (a < 1)):
        raise ValueError(
            f"The {name!r} parameter must be a float in the open interval (0, 1). "
            f"Got {alpha!r} instead."
        )
    return a


def _as_float_array(x: ArrayLike, name: str) -> NDArray[np.float64]:
    if isinstance(x, str | bytes):
        raise ValueError(f"The {name!r} parameter must be numeric. Got {x!r} instead.")
    try:
        arr = np.asarray(x)
    except (ValueError, TypeError) as exc:  # ragged nested sequences
        raise ValueError(
            f"The {name!r} parameter must be a numeric array of a regular shape "
            f"({exc})."
        ) from exc
    if arr.dtype == object or not (
        np.issubdtype(arr.dtype, np.number) or np.issubdtype(arr.dtype, np.bool_)
    ):
        raise ValueError(
            f"The {name!r} parameter must be numeric. Got dtype {arr.dtype} instead."
        )
    if np.issubdtype(arr.dtype, np.complexfloating):
        raise ValueError(f"The {name!r} parameter must be real, got complex values.")
    arr = arr.astype(np.float64, copy=False)
    if np.isnan(arr).any():
        raise ValueError(f"The {name!r} parameter contains NaN.")
    return arr


#: Largest number of draws: counts up to 2**53 are exact in float64, and the
#: interval formulas lose their meaning beyond (the Beta inverse and the
#: normal approximations over- and underflow).
MAX_DRAWS = 2**53


def _check_exact_counts(n_arr: NDArray[np.float64], name: str) -> None:
    if np.any(n_arr > MAX_DRAWS):
        raise ValueError(
            f"The {name!r} parameter must hold integers <= 2**53 (counts exact "
            f"in float64). Got {float(np.max(n_arr)):.3g} instead."
        )


def check_max_draws(n: NDArray[np.float64], max_n: int, method: str, name="n"):
    """Refuse draw counts beyond the range where ``method`` is accurate."""
    if max_n < MAX_DRAWS and np.any(n > max_n):
        raise ValueError(
            f"The {name!r} parameter must hold integers <= 2**{max_n.bit_length() - 1} "
            f"for {method}: beyond, the accuracy of scipy's incomplete beta "
            f"function, which this bound rests on, is not verified and the "
            f"bound could be optimistic. Got {float(np.max(n)):.3g} instead."
        )


def check_sufficient_statistics(
    k: ArrayLike,
    n: ArrayLike,
    sum_sq: ArrayLike | None = None,
    *,
    integer: bool = True,
    k_name: str = "k",
    n_name: str = "n",
    sum_sq_name: str = "sum_sq",
) -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.float64] | None]:
    """Validate and broadcast the sufficient statistics of a bounded mean.

    Parameters
    ----------
    k : array-like
        Number of successes (``integer=True``) or sum of [0, 1]-valued scores.
    n : array-like
        Number of draws; a positive integer.
    sum_sq : array-like or None
        Sum of squared scores. ``None`` means Bernoulli data (``sum_sq = k``).
    integer : bool, default=True
        Whether ``k`` must hold integer counts.

    Returns
    -------
    k, n, sum_sq : ndarrays of float64, broadcast to a common shape
        ``sum_sq`` is filled with ``k`` when it was None.
    """
    k_arr = _as_float_array(k, k_name)
    n_arr = _as_float_array(n, n_name)
    if not np.all(np.isfinite(n_arr)) or np.any(n_arr < 1):
        raise ValueError(
            f"The {n_name!r} parameter must hold integers >= 1. Got {n!r} instead."
        )
    if np.any(n_arr != np.floor(n_arr)):
        raise ValueError(
            f"The {n_name!r} parameter must hold integers >= 1. Got non-integer "
            "values instead."
        )
    _check_exact_counts(n_arr, n_name)
    if not np.all(np.isfinite(k_arr)):
        raise ValueError(f"The {k_name!r} parameter contains inf.")
    if np.any(k_arr < 0):
        raise ValueError(
            f"The {k_name!r} parameter must be non-negative. Got negative values."
        )
    if integer and np.any(k_arr != np.floor(k_arr)):
        raise ValueError(
            f"The {k_name!r} parameter must hold integer counts for a binomial "
            "interval. Got non-integer values; use Hoeffding or EmpiricalBernstein "
            "for sums of [0, 1]-valued scores."
        )
    arrays = [k_arr, n_arr]
    if sum_sq is not None:
        arrays.append(_as_float_array(sum_sq, sum_sq_name))
    try:
        arrays = np.broadcast_arrays(*arrays)
    except ValueError as exc:
        names = ", ".join(
            f"{nm!r} {np.shape(a)}"
            for nm, a in zip((k_name, n_name, sum_sq_name), arrays, strict=False)
        )
        raise ValueError(f"Shapes of {names} cannot be broadcast together.") from exc
    k_arr, n_arr = arrays[0], arrays[1]
    if np.any(k_arr > n_arr):
        raise ValueError(
            f"The {k_name!r} parameter must not exceed {n_name!r}: got {k_name} > "
            f"{n_name} for some entries."
        )
    if sum_sq is None:
        sq = k_arr
    else:
        sq = arrays[2]
        if not np.all(np.isfinite(sq)) or np.any(sq < 0):
            raise ValueError(
                f"The {sum_sq_name!r} parameter must be finite and non-negative."
            )
        # For scores in [0, 1]: sum_sq <= sum and sum^2 / n <= sum_sq (Cauchy-Schwarz);
        # a small relative tolerance absorbs float accumulation error.
        tol = 1e-9 * np.maximum(n_arr, 1.0)
        if np.any(sq > k_arr + tol) or np.any(k_arr * k_arr / n_arr > sq + tol):
            raise ValueError(
                f"The {sum_sq_name!r} parameter is inconsistent with {k_name!r} and "
                f"{n_name!r} for [0, 1]-valued scores (need {k_name}**2/{n_name} <= "
                f"{sum_sq_name} <= {k_name})."
            )
    return k_arr, n_arr, sq


def check_probability(p: ArrayLike, name: str) -> NDArray[np.float64]:
    """Validate an array of probabilities in the closed [0, 1] (NaN refused)."""
    arr = _as_float_array(p, name)
    if np.any((arr < 0) | (arr > 1)):
        raise ValueError(
            f"The {name!r} parameter must hold probabilities in [0, 1]. "
            f"Got values outside that range."
        )
    return arr


_KINDS = ("multi", "mono")


def check_kind(kind: str, name: str = "kind") -> str:
    """Validate the radius kind: the exact string ``"multi"`` or ``"mono"``."""
    if not isinstance(kind, str) or kind not in _KINDS:
        raise ValueError(
            f"The {name!r} parameter must be a str among {{'mono', 'multi'}}. "
            f"Got {kind!r} instead."
        )
    return kind


def check_scalar_alpha(alpha: float, name: str = "alpha") -> float:
    """Validate a single failure probability in the open (0, 1); return a float."""
    a = check_alpha(alpha, name)
    if a.ndim != 0:
        raise ValueError(
            f"The {name!r} parameter must be a float in the open interval (0, 1). "
            f"Got an array of shape {a.shape} instead."
        )
    return float(a)


def check_class_statistics(
    selection: ArrayLike,
    estimation: ArrayLike,
    n: ArrayLike,
    estimation_sq: ArrayLike | None = None,
    *,
    integer: bool = True,
) -> tuple[
    NDArray[np.float64],
    NDArray[np.float64],
    NDArray[np.float64],
    NDArray[np.float64] | None,
]:
    """Validate the per-class statistics of many inputs for a multi-class procedure.

    Parameters
    ----------
    selection : array-like of shape (n_inputs, n_classes)
        Selection statistics: non-negative, finite (counts or score sums).
    estimation : array-like of shape (n_inputs, n_classes)
        Estimation statistics: per entry in ``[0, n]``, each row summing to at
        most ``n`` (one-hot counts or scores on the probability simplex).
    n : int or array-like of shape (n_inputs,)
        Number of estimation draws per input.
    estimation_sq : array-like of shape (n_inputs, n_classes) or None
        Sums of squared scores; None for hard counts.
    integer : bool, default=True
        Whether ``estimation`` must hold integer counts (binomial intervals).

    Returns
    -------
    selection, estimation : ndarrays of shape (n_inputs, n_classes)
    n : ndarray of shape (n_inputs,)
    estimation_sq : ndarray of shape (n_inputs, n_classes) or None
    """
    sel = _as_float_array(selection, "selection")
    est = _as_float_array(estimation, "estimation")
    for arr, nm in ((sel, "selection"), (est, "estimation")):
        if arr.ndim != 2:
            raise ValueError(
                f"The {nm!r} parameter must be a 2-D array of shape (n_inputs, "
                f"n_classes). Got an array of shape {arr.shape} instead."
            )
    if sel.shape != est.shape:
        raise ValueError(
            f"The 'selection' and 'estimation' parameters must have the same shape "
            f"(n_inputs, n_classes). Got {sel.shape} and {est.shape} instead."
        )
    if sel.shape[1] < 2:
        raise ValueError(
            "The 'selection' and 'estimation' parameters must have n_classes >= 2 "
            f"columns. Got {sel.shape[1]} instead."
        )
    if not np.all(np.isfinite(sel)) or np.any(sel < 0):
        raise ValueError(
            "The 'selection' parameter must hold finite, non-negative statistics."
        )
    n_arr = _as_float_array(n, "n")
    if n_arr.ndim > 1 or (n_arr.ndim == 1 and n_arr.shape[0] != est.shape[0]):
        raise ValueError(
            "The 'n' parameter must be an int or an array of shape (n_inputs,) = "
            f"({est.shape[0]},). Got shape {n_arr.shape} instead."
        )
    if (
        not np.all(np.isfinite(n_arr))
        or np.any(n_arr < 1)
        or np.any(n_arr != np.floor(n_arr))
    ):
        raise ValueError(
            f"The 'n' parameter must hold integers >= 1. Got {n!r} instead."
        )
    _check_exact_counts(n_arr, "n")
    sq = None
    if estimation_sq is not None:
        sq = _as_float_array(estimation_sq, "estimation_sq")
        if sq.shape != est.shape:
            raise ValueError(
                "The 'estimation_sq' parameter must have the shape of 'estimation' "
                f"{est.shape}. Got {sq.shape} instead."
            )
    n_col = np.broadcast_to(n_arr, est.shape[:1])[:, None]
    est, n_b, sq_checked = check_sufficient_statistics(
        est,
        n_col,
        sq,
        integer=integer,
        k_name="estimation",
        n_name="n",
        sum_sq_name="estimation_sq",
    )
    n_rows = n_b[:, 0].copy()
    # Scores live on the probability simplex (one-hot for hard counts), so each
    # row sums to at most n; the relative slack absorbs the rounding of float32
    # probability vectors (each sums to 1 within a few 1e-8).
    if np.any(est.sum(axis=1) > n_rows * (1.0 + 1e-6)):
        raise ValueError(
            "The 'estimation' parameter must have rows summing to at most 'n' "
            "(class scores on the probability simplex). Got larger row sums."
        )
    return sel, est, n_rows, (None if sq is None else sq_checked)
