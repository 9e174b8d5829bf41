"""Matplotlib figures for certification results, interval methods and radii.

matplotlib is an optional dependency (``pip install "smoothlearn[plot]"``),
imported inside each function.  Every function draws on the Axes it is given
(a new figure when ``ax=None``), returns that Axes, and leaves global state
alone: no ``plt.show()``, no style or ``rcParams`` changes.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence

import numpy as np
from numpy.typing import ArrayLike

__all__ = [
    "plot_certified_accuracy",
    "plot_interval_coverage",
    "plot_interval_width",
    "plot_lipschitz_gain",
    "plot_radius_histogram",
]

#: The binomial interval methods drawn when ``intervals=None``.
_DEFAULT_INTERVALS = (
    "clopper_pearson",
    "wilson",
    "agresti_coull",
    "jeffreys",
    "hoeffding",
)


def _pyplot():
    try:
        import matplotlib.pyplot as plt
    except ImportError as exc:  # pragma: no cover - exercised without matplotlib
        raise ImportError(
            "smoothlearn.plotting requires matplotlib, which is not installed. "
            'Install the plot extra: pip install "smoothlearn[plot]".'
        ) from exc
    return plt


def _get_ax(ax):
    plt = _pyplot()  # also raises the clear ImportError when ax is given
    if ax is None:
        _, ax = plt.subplots()
    return ax


def _is_result(obj) -> bool:
    # Duck typing keeps this module free of an import cycle with result.py.
    return hasattr(obj, "radius") and hasattr(obj, "prediction")


def _is_log(obj) -> bool:
    # A smoothlearn.zoo.CertifyLog (duck typing: zoo imports torch).
    return hasattr(obj, "certified_accuracy_curve") and hasattr(obj, "correct")


def _is_curve(obj) -> bool:
    if not isinstance(obj, tuple | list) or len(obj) != 2:
        return False
    if any(_is_result(o) or _is_log(o) for o in obj):
        return False
    try:
        radii, acc = (np.asarray(o, dtype=float) for o in obj)
    except (TypeError, ValueError):
        return False
    return radii.ndim == 1 and radii.shape == acc.shape


def _as_items(curves, labels):
    """Normalise the ``curves`` argument to a list of (label, item) pairs."""
    if isinstance(curves, Mapping):
        items = list(curves.values())
        keys = [str(k) for k in curves]
    elif _is_result(curves) or _is_log(curves) or _is_curve(curves):
        items, keys = [curves], [None]
    elif isinstance(curves, Sequence) and not isinstance(curves, str):
        items, keys = list(curves), [None] * len(curves)
    else:
        raise TypeError(
            "Expected a CertificationResult, a CertifyLog, a (radii, accuracy) "
            f"tuple, or a list or dict of them. Got {type(curves).__name__} instead."
        )
    if not items:
        raise ValueError("Nothing to plot: 'curves' is empty.")
    if labels is not None:
        labels = [labels] if isinstance(labels, str) else list(labels)
        if len(labels) != len(items):
            raise ValueError(
                f"The 'labels' parameter has {len(labels)} entries for "
                f"{len(items)} curves."
            )
        keys = [str(lab) for lab in labels]
    return [
        (
            _mark_approximate(
                key if key is not None else _default_label(item, i), item
            ),
            item,
        )
        for i, (key, item) in enumerate(zip(keys, items, strict=True))
    ]


def _mark_approximate(label: str, item) -> str:
    """The label, with " (approximate)" for a result that is not guaranteed."""
    approximate = _is_result(item) and getattr(item, "guaranteed", True) is False
    if approximate and not label.endswith(" (approximate)"):
        return label + " (approximate)"
    return label


def _default_label(item, i):
    interval, kind = getattr(item, "interval", None), getattr(item, "kind", None)
    if _is_result(item) and interval is not None and kind is not None:
        return f"{type(interval).__name__}, {kind}"
    if _is_log(item) and getattr(item, "source", None):
        return os.path.basename(item.source)
    return f"curve {i}"


def plot_certified_accuracy(
    curves,
    y: ArrayLike | None = None,
    *,
    labels: Sequence[str] | None = None,
    max_radius: float | None = None,
    ax=None,
    **plot_kwargs,
):
    """Plot certified accuracy against the l2 radius, several curves on one axes.

    Parameters
    ----------
    curves : CertificationResult, CertifyLog, tuple or list or dict of them
        What to draw: a :class:`~smoothlearn.CertificationResult` (``y`` is
        then required), a published log (a :class:`~smoothlearn.zoo.CertifyLog`
        from :func:`~smoothlearn.zoo.read_certify_log`, which carries its own
        labels), a ``(radii, accuracy)`` pair of 1-D arrays (for example from
        :func:`smoothlearn.metrics.certified_accuracy_curve`), or a list of
        these, or a dict ``{label: curve}``: a published log beside a new
        result is ``plot_certified_accuracy({"published": log, "mine":
        result}, y)``.
    y : array-like of shape (n_samples,), default=None
        True labels of the certified inputs; needed for results.
    labels : list of str, default=None
        One legend entry per curve.  Defaults to the dict keys, to the
        interval and radius stored in each result, or to a log's file name.
        A result whose bounds are approximate
        (:attr:`CertificationResult.guaranteed
        <smoothlearn.CertificationResult.guaranteed>` False) gets
        " (approximate)" appended to its entry.
    max_radius : float, default=None
        Right end of the radius axis; defaults to the largest finite radius.
    ax : matplotlib Axes, default=None
        Axes to draw on; a new figure is created when None.
    **plot_kwargs
        Passed to ``Axes.plot`` for every curve.

    Returns
    -------
    ax : matplotlib Axes

    Notes
    -----
    The certified accuracy at radius ``r`` is the fraction of inputs whose
    prediction is correct (abstentions count as wrong) and whose certified
    radius is at least ``r``.  It is a non-increasing step function of
    ``r``, continuous from the left; results and logs are drawn exactly, as
    steps that drop at every distinct certified radius.

    Examples
    --------
    >>> from matplotlib.figure import Figure
    >>> from smoothlearn.plotting import plot_certified_accuracy
    >>> ax = plot_certified_accuracy(
    ...     {"A": ([0.0, 0.25, 0.5], [0.9, 0.7, 0.4]),
    ...      "B": ([0.0, 0.25, 0.5], [0.8, 0.7, 0.6])},
    ...     ax=Figure().add_subplot())
    >>> [line.get_label() for line in ax.get_lines()]
    ['A', 'B']
    """
    ax = _get_ax(ax)
    right = 0.0
    for label, item in _as_items(curves, labels):
        if _is_result(item) or _is_log(item):
            if _is_log(item):
                radii, acc = item.certified_accuracy_curve()
            elif y is None:
                raise ValueError(
                    "The 'y' parameter is required to plot the certified "
                    "accuracy of a CertificationResult."
                )
            else:
                from .metrics import certified_accuracy_curve

                radii, acc = certified_accuracy_curve(y, item)
            # accuracy(r) counts radii >= r: constant on (r_i, r_{i+1}], then
            # it drops to 0 after the largest radius.
            radii, acc = np.append(radii, radii[-1]), np.append(acc, 0.0)
            drawstyle = "steps-pre"
        else:
            radii, acc = (np.asarray(a, dtype=float) for a in item)
            drawstyle = plot_kwargs.get("drawstyle", "default")
        radii, acc = np.asarray(radii, float), np.asarray(acc, float)
        finite = np.isfinite(radii)
        if finite.any():
            right = max(right, float(radii[finite].max()))
        kwargs = {"drawstyle": drawstyle, **plot_kwargs, "label": label}
        ax.plot(radii, acc, **kwargs)
    ax.set_xlabel(r"$\ell_2$ radius $r$")
    ax.set_ylabel("certified accuracy")
    ax.set_xlim(0.0, max_radius if max_radius is not None else max(right, 1e-3))
    ax.set_ylim(0.0, 1.0)
    # A fixed corner: loc="best" searches over every plotted point and warns
    # when that takes over a second (long step curves on a loaded machine).
    ax.legend(loc="upper right")
    return ax


def plot_radius_histogram(
    results,
    y: ArrayLike | None = None,
    *,
    labels: Sequence[str] | None = None,
    bins: int | ArrayLike = 20,
    ax=None,
    **hist_kwargs,
):
    """Histogram of the certified radii of one or several results.

    Abstentions (radius 0 with no class) are left out; when ``y`` is given,
    so are wrong predictions, since their radius certifies a wrong class.

    Parameters
    ----------
    results : CertificationResult, list or dict of them
        Each must have ``radius`` and ``abstained`` arrays (and
        ``prediction`` when ``y`` is given).
    y : array-like of shape (n_samples,), default=None
        True labels; when given only correct predictions are counted.
    labels : list of str, default=None
        One legend entry per result (" (approximate)" appended for a result
        that is not guaranteed).
    bins : int or array-like, default=20
        Number of bins, or bin edges, shared by all results.
    ax : matplotlib Axes, default=None
        Axes to draw on; a new figure is created when None.
    **hist_kwargs
        Passed to ``Axes.hist``.

    Returns
    -------
    ax : matplotlib Axes

    Examples
    --------
    >>> from matplotlib.figure import Figure
    >>> import numpy as np
    >>> from types import SimpleNamespace
    >>> from smoothlearn.plotting import plot_radius_histogram
    >>> res = SimpleNamespace(radius=np.array([0.0, 0.3, 0.6]),
    ...                       prediction=np.array([-1, 1, 2]),
    ...                       abstained=np.array([True, False, False]))
    >>> ax = plot_radius_histogram(res, bins=[0, 0.5, 1.0],
    ...                            ax=Figure().add_subplot())
    >>> ax.get_ylabel()
    'certified inputs'
    """
    ax = _get_ax(ax)
    items = _as_items(results, labels)
    kept = []
    for label, res in items:
        if not _is_result(res):
            raise TypeError(
                "plot_radius_histogram expects CertificationResult objects. "
                f"Got {type(res).__name__} instead."
            )
        radius = np.asarray(res.radius, dtype=float)
        keep = ~np.asarray(getattr(res, "abstained", radius <= 0), dtype=bool)
        if y is not None:
            keep &= np.asarray(res.prediction) == np.asarray(y)
        r = radius[keep]
        kept.append((label, r[np.isfinite(r)]))
    if np.ndim(bins) == 0:
        top = max((float(r.max()) for _, r in kept if r.size), default=1.0)
        bins = np.linspace(0.0, top if top > 0 else 1.0, int(bins) + 1)
    for label, r in kept:
        kwargs = {"histtype": "step", "linewidth": 1.5, **hist_kwargs}
        ax.hist(r, bins=bins, label=label, **kwargs)
    ax.set_xlabel(r"certified $\ell_2$ radius")
    ax.set_ylabel("correct inputs" if y is not None else "certified inputs")
    ax.legend(loc="upper right")
    return ax


def _interval_items(intervals):
    from .intervals import get_interval

    if intervals is None:
        intervals = _DEFAULT_INTERVALS
    elif isinstance(intervals, str) or not isinstance(intervals, Sequence):
        intervals = [intervals]
    return [
        (m if isinstance(m, str) else type(m).__name__, get_interval(m))
        for m in intervals
    ]


def _p_grid(p, n_points=400):
    if p is None:
        return np.linspace(0.001, 0.999, n_points)
    return np.asarray(p, dtype=float).ravel()


def plot_interval_coverage(
    intervals=None,
    n: int = 100,
    alpha: float = 0.05,
    *,
    p: ArrayLike | None = None,
    side: str = "lower",
    ax=None,
    **plot_kwargs,
):
    """Exact coverage of interval methods against the true probability ``p``.

    Parameters
    ----------
    intervals : list of IntervalEstimator or str, default=None
        Methods or their aliases (see :data:`smoothlearn.intervals.INTERVALS`);
        None draws Clopper-Pearson, Wilson, Agresti-Coull, Jeffreys and
        Hoeffding.
    n : int, default=100
        Number of Bernoulli draws.
    alpha : float, default=0.05
        Failure probability given to each method; the nominal coverage
        ``1 - alpha`` is drawn as a dashed line.
    p : array-like, default=None
        Grid of true probabilities; 400 points in [0.001, 0.999] when None.
    side : {"lower", "upper", "two-sided"}, default="lower"
        Which statement's coverage to draw (see
        :func:`smoothlearn.stats.binomial_coverage`).
    ax : matplotlib Axes, default=None
        Axes to draw on; a new figure is created when None.
    **plot_kwargs
        Passed to ``Axes.plot``.

    Returns
    -------
    ax : matplotlib Axes

    Notes
    -----
    The coverage is computed exactly by
    :func:`smoothlearn.stats.binomial_coverage` (a sum over the binomial
    law, no simulation).  Guaranteed methods stay above the dashed line for
    every ``p``; approximate ones dip below it.

    Examples
    --------
    >>> from matplotlib.figure import Figure
    >>> from smoothlearn.plotting import plot_interval_coverage
    >>> ax = plot_interval_coverage(["clopper_pearson", "wilson"], n=50,
    ...                             alpha=0.05, p=[0.1, 0.5, 0.9],
    ...                             ax=Figure().add_subplot())
    >>> len(ax.get_lines())
    3
    """
    from .stats import binomial_coverage

    ax = _get_ax(ax)
    grid = _p_grid(p)
    for label, method in _interval_items(intervals):
        cov = binomial_coverage(method, grid, n, alpha, side=side).coverage
        ax.plot(grid, cov, label=label, **plot_kwargs)
    ax.axhline(
        1.0 - alpha,
        color="black",
        linestyle="--",
        linewidth=1,
        label=rf"$1 - \alpha$ = {1.0 - alpha:g}",
    )
    ax.set_xlabel("true probability $p$")
    ax.set_ylabel(f"exact coverage ({side}, n = {n})")
    ax.legend(loc="lower right")
    return ax


def plot_interval_width(
    intervals=None,
    n: int = 100,
    alpha: float = 0.05,
    *,
    p: ArrayLike | None = None,
    side: str = "two-sided",
    ax=None,
    **plot_kwargs,
):
    """Exact expected width of interval methods against the true probability.

    Parameters
    ----------
    intervals : list of IntervalEstimator or str, default=None
        Methods or their aliases; None draws the methods of
        :func:`plot_interval_coverage`.
    n : int, default=100
        Number of Bernoulli draws.
    alpha : float, default=0.05
        Failure probability given to each method.
    p : array-like, default=None
        Grid of true probabilities; 400 points in [0.001, 0.999] when None.
    side : {"two-sided", "lower", "upper"}, default="two-sided"
        See :func:`smoothlearn.stats.expected_width`: the full width, or the
        distance of the one-sided bound from ``k / n``.
    ax : matplotlib Axes, default=None
        Axes to draw on; a new figure is created when None.
    **plot_kwargs
        Passed to ``Axes.plot``.

    Returns
    -------
    ax : matplotlib Axes

    Examples
    --------
    >>> from matplotlib.figure import Figure
    >>> from smoothlearn.plotting import plot_interval_width
    >>> ax = plot_interval_width("wilson", n=50, p=[0.1, 0.5],
    ...                          ax=Figure().add_subplot())
    >>> ax.get_lines()[0].get_label()
    'wilson'
    """
    from .stats import expected_width

    ax = _get_ax(ax)
    grid = _p_grid(p)
    for label, method in _interval_items(intervals):
        width = expected_width(method, grid, n, alpha, side=side).width
        ax.plot(grid, width, label=label, **plot_kwargs)
    ax.set_xlabel("true probability $p$")
    ax.set_ylabel(f"exact expected width ({side}, n = {n})")
    ax.set_ylim(bottom=0.0)
    ax.legend(loc="lower center")
    return ax


def plot_lipschitz_gain(
    sigma: float = 0.5,
    L: ArrayLike | None = None,
    pA_lower: ArrayLike = (0.6, 0.8, 0.9, 0.99),
    pB_upper: ArrayLike | None = None,
    *,
    method: str = "paper",
    ax=None,
    **plot_kwargs,
):
    """Gain of the Lipschitz-aware radius over Cohen's, against ``L * sigma``.

    Draws ``lipschitz_radius / gaussian_radius`` for each bound, with ``L``
    on a log axis in units of ``1 / sigma``.  The ratio tends to 1 as
    ``L * sigma`` grows: a Lipschitz constant only helps when the class
    scores are smooth at the scale of the noise (``L * sigma`` of about 2 or
    less).

    Parameters
    ----------
    sigma : float, default=0.5
        Standard deviation of the Gaussian noise.
    L : array-like, default=None
        Grid of Lipschitz constants; ``logspace(-1.5, 2, 200) / sigma`` when
        None.
    pA_lower : array-like, default=(0.6, 0.8, 0.9, 0.99)
        Lower bounds on the top-class score; one curve each.
    pB_upper : array-like, default=None
        Upper bounds on the other classes, matching ``pA_lower``; None draws
        the mono radius (``kind="mono"``), otherwise the multi radius.
    method : {"paper", "envelope"}, default="paper"
        Passed to :func:`smoothlearn.radius.lipschitz_radius`.
    ax : matplotlib Axes, default=None
        Axes to draw on; a new figure is created when None.
    **plot_kwargs
        Passed to ``Axes.plot``.

    Returns
    -------
    ax : matplotlib Axes

    Examples
    --------
    >>> from matplotlib.figure import Figure
    >>> from smoothlearn.plotting import plot_lipschitz_gain
    >>> ax = plot_lipschitz_gain(0.5, pA_lower=[0.9], ax=Figure().add_subplot())
    >>> ax.get_xscale()
    'log'
    """
    from .radius import gaussian_radius, lipschitz_radius

    ax = _get_ax(ax)
    L_grid = (
        np.logspace(-1.5, 2.0, 200) / sigma
        if L is None
        else np.asarray(L, dtype=float).ravel()
    )
    pA = np.atleast_1d(np.asarray(pA_lower, dtype=float))
    kind = "mono" if pB_upper is None else "multi"
    pB = (
        np.full_like(pA, np.nan)
        if pB_upper is None
        else np.broadcast_to(np.asarray(pB_upper, dtype=float), pA.shape)
    )
    for a, b in zip(pA, pB, strict=True):
        b_arg = None if kind == "mono" else b
        cohen = gaussian_radius(a, b_arg, sigma=sigma, kind=kind)
        lip = lipschitz_radius(
            a, b_arg, sigma=sigma, L=L_grid, kind=kind, method=method
        )
        label = (
            rf"$\underline{{p_A}}$ = {a:g}"
            if kind == "mono"
            else rf"$\underline{{p_A}}$ = {a:g}, $\overline{{p_B}}$ = {b:g}"
        )
        with np.errstate(divide="ignore", invalid="ignore"):
            ratio = np.where(cohen > 0, lip / cohen, np.nan)
        ax.plot(L_grid * sigma, ratio, label=label, **plot_kwargs)
    ax.axhline(1.0, color="black", linestyle="--", linewidth=1)
    ax.set_xscale("log")
    ax.set_xlabel(r"$L\,\sigma$")
    ax.set_ylabel(f"Lipschitz radius / Cohen radius ({kind}, {method})")
    ax.legend(loc="upper right")
    return ax
