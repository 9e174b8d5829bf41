"""The gap between certified and empirical robust accuracy.

A certificate is a lower bound on the robust accuracy of the smoothed
classifier; an attack (``_pgd.py`` next to this module) gives an upper
bound.  This module judges the attacks and puts both numbers side by side:

* :func:`empirical_robust_accuracy` and
  :func:`empirical_robust_accuracy_curve`: the fraction of inputs whose
  smoothed prediction (Cohen's PREDICT, fresh noise) survives the attack, in
  the same form as :func:`smoothlearn.metrics.certified_accuracy` and
  :func:`smoothlearn.metrics.certified_accuracy_curve`;
* :func:`gap_report`: per radius, certified accuracy with Cohen's procedure,
  with the paper's (CPM and the multi radius; Lipschitz-aware radii when the
  classifier has them), the empirical robust accuracy, and the share of the
  gap the paper's certificates close.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from numbers import Integral

import numpy as np
from numpy.typing import ArrayLike, NDArray

from .._inputs import InputSource
from ..metrics import certified_accuracy
from ..result import CertificationResult
from ..smoothed import _check_fitted_input
from ._pgd import SmoothAdvPGD, _check_smoothed, _class_index

__all__ = [
    "GapReport",
    "empirical_robust_accuracy",
    "empirical_robust_accuracy_curve",
    "gap_report",
]


# --------------------------------------------------------------------------
# Empirical robust accuracy
# --------------------------------------------------------------------------
def _check_attack(attack):
    if attack is None:
        return SmoothAdvPGD()
    if not callable(getattr(attack, "generate", None)):
        raise ValueError(
            "The 'attack' parameter must be None or an attack with a 'generate' "
            f"method (SmoothAdvPGD, PGD). Got {attack!r} instead."
        )
    return attack


def _check_radii_array(radii, name: str = "radii") -> NDArray[np.float64]:
    try:
        r = np.asarray(radii, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ValueError(
            f"The {name!r} parameter must hold non-negative finite floats. "
            f"Got {radii!r} instead."
        ) from exc
    if r.ndim > 1 or r.size == 0 or not np.all(np.isfinite(r) & (r >= 0)):
        raise ValueError(
            f"The {name!r} parameter must be a non-negative finite float or a "
            f"non-empty 1-D array of them. Got {radii!r} instead."
        )
    return r


def _judge(clf, n_predict):
    """The classifier whose PREDICT judges the attacks (``n_predict`` draws)."""
    if n_predict is None:
        return clf
    if isinstance(n_predict, bool) or not isinstance(n_predict, Integral | np.integer):
        raise ValueError(
            "The 'n_predict' parameter must be an int in the range [1, inf) or "
            f"None. Got {n_predict!r} instead."
        )
    if n_predict < 1:
        raise ValueError(
            "The 'n_predict' parameter must be an int in the range [1, inf) or "
            f"None. Got {n_predict!r} instead."
        )
    # a shallow copy shares the fitted model; only its number of draws differs
    return copy.copy(clf).set_params(n=int(n_predict))


def _robust_mask(clf, X, y, radii, attack, n_predict=None) -> NDArray[np.bool_]:
    """``(n_inputs, n_radii)``: PREDICT is right on x and on every attack up to r.

    ``radii`` are sorted; column ``k`` is True when PREDICT returns the true
    label on the clean input and on the attacked copies at every radius
    ``radii[j] <= radii[k]`` (any of them lies in the ball of radius
    ``radii[k]``).
    """
    attack = _check_attack(attack)
    _check_smoothed(clf, "empirical_robust_accuracy")
    judge = _judge(clf, n_predict)
    X = _check_fitted_input(clf, X)
    y = np.asarray(y)
    _class_index(clf, y, X.shape[0])
    if isinstance(X, InputSource):
        # A data set, a chunk at a time: the attack's noise is keyed by its
        # chunks' global positions and PREDICT's by the inputs' values, so
        # chunks that are whole multiples of the attack's give the same mask.
        adapter = _check_smoothed(clf, "empirical_robust_accuracy")
        step = attack._chunk(clf)
        size = step * max(1, X.chunk_size // step)
        return np.concatenate(
            [
                _robust_columns(
                    clf, judge, chunk, y[start : start + len(chunk)], radii,
                    attack, adapter, start,
                )
                for start, chunk in X.iter_chunks(size)
            ],
            axis=0,
        )  # fmt: skip
    ok = np.asarray(judge.predict(X) == y, dtype=bool)
    columns = []
    for r in radii:
        if r > 0.0:
            X_adv = attack.generate(clf, X, y, radius=float(r))
            ok = ok & np.asarray(judge.predict(X_adv) == y, dtype=bool)
        columns.append(ok)
    return np.stack(columns, axis=1)


def _robust_columns(clf, judge, X, y, radii, attack, adapter, offset):
    """:func:`_robust_mask` of the loaded chunk ``X``, at global position ``offset``."""
    attack._validate_params()
    target = _class_index(clf, y, X.shape[0])
    ok = np.asarray(judge.predict(X) == y, dtype=bool)
    columns = []
    for r in radii:
        if r > 0.0:
            X_adv = attack._attack(clf, adapter, X, target, float(r), offset)
            ok = ok & np.asarray(judge.predict(X_adv) == y, dtype=bool)
        columns.append(ok)
    return np.stack(columns, axis=1)


def empirical_robust_accuracy(
    clf,
    X: ArrayLike,
    y: ArrayLike,
    radius: ArrayLike = 0.0,
    *,
    attack=None,
    n_predict: int | None = None,
) -> float | NDArray[np.float64]:
    r"""Fraction of inputs whose smoothed prediction survives an l2 attack.

    The attack's success is judged by the classifier's own
    :meth:`~smoothlearn.SmoothedClassifier.predict` (Cohen's PREDICT, its own
    noise, independent of the attack's), never by the attack's estimate.

    Parameters
    ----------
    clf : SmoothedClassifier
        Fitted; its base model must be a torch module or a skorch net.
    X : array-like of shape (n_inputs, \*input_shape), torch Dataset or DataLoader
        Inputs; a data set is attacked a chunk at a time (see
        :mod:`smoothlearn.datasets`).
    y : array-like of shape (n_inputs,)
        True labels.
    radius : float or array-like of shape (n_radii,), default=0.0
        Attack budget(s) in l2 norm, >= 0.
    attack : SmoothAdvPGD or PGD, default=None
        The attack; None means ``SmoothAdvPGD()``.
    n_predict : int, default=None
        Draws of the PREDICT that judges the attacks; None uses ``clf.n``.

    Returns
    -------
    accuracy : float or ndarray of shape (n_radii,)
        :math:`\frac{1}{m}\sum_i 1[\mathrm{PREDICT}(x_i) = y_i \text{ and }
        \mathrm{PREDICT}(x^{adv}_{i,r'}) = y_i \ \forall r' \le r]`, ``r'``
        ranging over the given radii; an abstention counts as wrong, as in
        :func:`~smoothlearn.metrics.certified_accuracy`.

    See Also
    --------
    empirical_robust_accuracy_curve : the same over a grid of radii.
    smoothlearn.metrics.certified_accuracy : the certified lower bound.

    Notes
    -----
    An attack finds *some* adversarial inputs, so this is an upper bound on
    the true robust accuracy of PREDICT (up to PREDICT's own error rate
    ``alpha``), while certified accuracy is a lower bound.  A certificate at
    radius ``r`` says that the exact smoothed classifier keeps its class in
    the ball, not that a Monte-Carlo PREDICT answers there: PREDICT abstains
    where the two top classes are within about
    :math:`z_{1-\alpha/2} / (2\sqrt{n})` of each other, which with the same
    ``n`` and ``alpha`` is about as wide as CERTIFY's own slack.  To compare
    certified and empirical accuracy, judge with ``n_predict`` well above
    the ``n`` of the certificates (then certified <= empirical at every
    radius unless a certificate fails).  Each radius costs one attack and
    one PREDICT of ``n_predict`` draws per input.

    References
    ----------
    .. [1] Salman et al., "Provably Robust Deep Learning via Adversarially
       Trained Smoothed Classifiers", NeurIPS 2019.
    .. [2] Cohen, Rosenfeld & Kolter, "Certified Adversarial Robustness via
       Randomized Smoothing", ICML 2019.

    Examples
    --------
    >>> import numpy as np, torch
    >>> from smoothlearn import SmoothedClassifier
    >>> from smoothlearn.attacks import SmoothAdvPGD, empirical_robust_accuracy
    >>> model = torch.nn.Linear(1, 2)
    >>> with torch.no_grad():
    ...     _ = model.weight.copy_(torch.tensor([[-1.0], [1.0]]))
    ...     _ = model.bias.zero_()
    >>> X = np.array([[0.5], [1.0], [2.0]], dtype=np.float32)  # margins
    >>> y = np.array([1, 1, 1])
    >>> clf = SmoothedClassifier(model, sigma=0.25, n=1000, random_state=0)
    >>> clf = clf.fit(X, y)
    >>> empirical_robust_accuracy(clf, X, y, radius=0.75,
    ...     attack=SmoothAdvPGD(n_steps=5, n_noise=4, random_state=0))
    0.6666666666666666
    """
    r = _check_radii_array(radius, "radius")
    order = np.argsort(r.ravel(), kind="stable")
    sorted_r = r.ravel()[order]
    mask = _robust_mask(clf, X, y, sorted_r, attack, n_predict)
    acc = np.empty(sorted_r.shape, dtype=np.float64)
    acc[order] = mask.mean(axis=0)
    return float(acc[0]) if r.ndim == 0 else acc


def empirical_robust_accuracy_curve(
    clf,
    X: ArrayLike,
    y: ArrayLike,
    radii: ArrayLike,
    *,
    attack=None,
    n_predict: int | None = None,
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Empirical robust accuracy over a grid of radii, as a plottable curve.

    Same form as :func:`smoothlearn.metrics.certified_accuracy_curve`, so
    both go on one axes with
    :func:`smoothlearn.plotting.plot_certified_accuracy`.

    Parameters
    ----------
    clf : SmoothedClassifier
        Fitted; its base model must be a torch module or a skorch net.
    X : array-like of shape (n_inputs, \\*input_shape), torch Dataset or DataLoader
        Inputs; a data set is attacked a chunk at a time (see
        :mod:`smoothlearn.datasets`).
    y : array-like of shape (n_inputs,)
        True labels.
    radii : array-like of shape (n_radii,)
        Attack budgets, >= 0 (sorted on return).
    attack : SmoothAdvPGD or PGD, default=None
        The attack; None means ``SmoothAdvPGD()``.
    n_predict : int, default=None
        Draws of the PREDICT that judges the attacks; None uses ``clf.n``.

    Returns
    -------
    radii : ndarray of shape (n_radii,)
        Sorted radii.
    accuracy : ndarray of shape (n_radii,)
        Empirical robust accuracy at each radius (non-increasing: an input
        broken at a radius counts as broken at every larger one).

    Examples
    --------
    >>> import numpy as np, torch
    >>> from smoothlearn import SmoothedClassifier
    >>> from smoothlearn.attacks import PGD, empirical_robust_accuracy_curve
    >>> model = torch.nn.Linear(1, 2)
    >>> with torch.no_grad():
    ...     _ = model.weight.copy_(torch.tensor([[-1.0], [1.0]]))
    ...     _ = model.bias.zero_()
    >>> X = np.array([[0.5], [1.0], [2.0]], dtype=np.float32)
    >>> y = np.array([1, 1, 1])
    >>> clf = SmoothedClassifier(model, sigma=0.25, n=1000, random_state=0)
    >>> empirical_robust_accuracy_curve(clf.fit(X, y), X, y, [0.0, 0.75, 1.5],
    ...                                 attack=PGD(n_steps=5))
    (array([0.  , 0.75, 1.5 ]), array([1.        , 0.66666667, 0.33333333]))
    """
    r = _check_radii_array(radii)
    r = np.sort(r.ravel())
    mask = _robust_mask(clf, X, y, r, attack, n_predict)
    return r, mask.mean(axis=0).astype(np.float64)


# --------------------------------------------------------------------------
# The gap report
# --------------------------------------------------------------------------
#: Column keys of the certificates, and their Markdown headers.
_CERT_HEADERS = {
    "certified_cohen": "certified (Cohen: top class, mono)",
    "certified_cpm": "certified (CPM, multi)",
    "certified_lipschitz": "certified (Lipschitz)",
}


@dataclass(frozen=True, eq=False)
class GapReport:
    r"""Certified and empirical robust accuracy side by side, per radius.

    Returned by :func:`gap_report`.

    Attributes
    ----------
    radii : ndarray of shape (n_radii,)
        Sorted l2 radii.
    certified : dict of str to ndarray of shape (n_radii,)
        Certified accuracy per method: ``"certified_cohen"`` (Cohen's
        procedure: top class with Clopper-Pearson, mono radius),
        ``"certified_cpm"`` (class partitioning, multi radius), and
        ``"certified_lipschitz"`` when the classifier has Lipschitz-aware
        radii.
    empirical : ndarray of shape (n_radii,)
        Empirical robust accuracy under ``attack``.
    results : dict of str to CertificationResult
        The certificates behind each ``certified`` column (same keys), e.g.
        for :func:`smoothlearn.plotting.plot_certified_accuracy`.
    n_inputs : int
        Number of inputs.
    attack : object
        The attack used.

    Notes
    -----
    The gap closed by a method ``M`` at radius ``r`` is

    .. math::

        \frac{\mathrm{cert}_M(r) - \mathrm{cert}_{Cohen}(r)}
             {\mathrm{emp}(r) - \mathrm{cert}_{Cohen}(r)},

    defined (else NaN) where the empirical accuracy exceeds Cohen's
    certified accuracy: 0 means no gain over Cohen, 1 means the certificate
    reaches what the attack leaves.
    """

    radii: NDArray[np.float64]
    certified: dict
    empirical: NDArray[np.float64]
    results: dict = field(repr=False)
    n_inputs: int
    attack: object = None

    @property
    def gap_closed(self) -> dict:
        """Share of the Cohen-to-empirical gap closed, per non-Cohen method.

        Returns
        -------
        dict of str to ndarray of shape (n_radii,)
            Keys ``"gap_closed_cpm"`` (and ``"gap_closed_lipschitz"``); NaN
            where the empirical accuracy does not exceed Cohen's.
        """
        cohen = self.certified["certified_cohen"]
        gap = self.empirical - cohen
        out = {}
        for key, acc in self.certified.items():
            if key == "certified_cohen":
                continue
            with np.errstate(divide="ignore", invalid="ignore"):
                closed = np.where(gap > 0, (acc - cohen) / gap, np.nan)
            out["gap_closed_" + key.removeprefix("certified_")] = closed
        return out

    def curves(self) -> dict:
        """``{label: (radii, accuracy)}`` of every column, for plotting.

        Returns
        -------
        dict of str to tuple of two ndarrays of shape (n_radii,)
            Ready for :func:`smoothlearn.plotting.plot_certified_accuracy`.
        """
        out = {_CERT_HEADERS[k]: (self.radii, v) for k, v in self.certified.items()}
        out["empirical"] = (self.radii, self.empirical)
        return out

    def rows(self) -> list[dict]:
        """One dict per radius: radius, certified columns, empirical, gap closed.

        Returns
        -------
        list of dict
        """
        columns = {
            "radius": self.radii,
            **self.certified,
            "empirical": self.empirical,
            **self.gap_closed,
        }
        return [
            {k: float(v[i]) for k, v in columns.items()} for i in range(len(self.radii))
        ]

    def to_frame(self):
        """The rows as a :class:`pandas.DataFrame` (needs pandas).

        Returns
        -------
        pandas.DataFrame
        """
        try:
            import pandas as pd
        except ImportError as exc:  # pragma: no cover - pandas is a test extra
            raise ImportError(
                "GapReport.to_frame needs pandas: pip install 'smoothlearn[pandas]'."
            ) from exc
        return pd.DataFrame(self.rows())

    def to_markdown(self, digits: int = 3) -> str:
        """A Markdown table, one line per radius.

        Parameters
        ----------
        digits : int, default=3
            Decimals of the accuracies.

        Returns
        -------
        str
        """
        headers = ["radius", *(_CERT_HEADERS[k] for k in self.certified)]
        headers.append("empirical (attack)")
        gaps = self.gap_closed
        headers += [
            "gap closed (" + k.removeprefix("gap_closed_").replace("cpm", "CPM") + ")"
            for k in gaps
        ]

        def fmt(v):
            return "n/a" if not np.isfinite(v) else f"{v:.{digits}f}"

        lines = [
            "| " + " | ".join(headers) + " |",
            "|" + "|".join("---:" for _ in headers) + "|",
        ]
        for i, r in enumerate(self.radii):
            cells = [f"{r:g}"]
            cells += [fmt(acc[i]) for acc in self.certified.values()]
            cells.append(fmt(self.empirical[i]))
            cells += [fmt(g[i]) for g in gaps.values()]
            lines.append("| " + " | ".join(cells) + " |")
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.to_markdown()


def gap_report(
    clf,
    X: ArrayLike,
    y: ArrayLike,
    radii: ArrayLike = (0.25, 0.5, 0.75, 1.0),
    *,
    attack=None,
    n_predict: int | None = None,
    result: CertificationResult | None = None,
) -> GapReport:
    r"""Certified accuracy (Cohen's and the paper's) next to empirical robustness.

    Per radius: certified accuracy with Cohen's procedure (top class with
    Clopper-Pearson, mono radius), with the class-partitioning method and
    the multi radius of Delattre et al. (on the same statistics, through
    :meth:`CertificationResult.recertify`), with the classifier's
    Lipschitz-aware radii when it has them (``clf.lipschitz`` set), the
    empirical robust accuracy under an attack judged by PREDICT, and the
    share of the gap between Cohen's certificate and the attack that the
    paper's certificates close.

    Parameters
    ----------
    clf : SmoothedClassifier
        Fitted; its base model must be a torch module or a skorch net.
    X : array-like of shape (n_inputs, \*input_shape), torch Dataset or DataLoader
        Test inputs; a ``Dataset`` or ``DataLoader`` is certified and attacked
        a chunk at a time, with the same results (see
        :mod:`smoothlearn.datasets`).
    y : array-like of shape (n_inputs,)
        Their true labels (:func:`smoothlearn.datasets.targets` reads those
        of a data set).
    radii : array-like of shape (n_radii,), default=(0.25, 0.5, 0.75, 1.0)
        l2 radii, >= 0.
    attack : SmoothAdvPGD or PGD, default=None
        The attack; None means ``SmoothAdvPGD()``.
    n_predict : int, default=None
        Draws of the PREDICT that judges the attacks; None uses ``clf.n``.
    result : CertificationResult, default=None
        Hard-smoothing certificates of ``X`` already computed by
        ``clf.certify(X)`` (any procedure or radius: they are recomputed
        from its statistics); None certifies ``X`` here.

    Returns
    -------
    GapReport
        With ``to_markdown()``, ``rows()``, ``to_frame()`` and ``curves()``.

    Notes
    -----
    Cohen's and the CPM columns need hard (count) statistics: for a
    classifier with soft smoothing or a Lipschitz constant they certify the
    hard-smoothed classifier of the same base model (a shallow copy with
    ``smoothing="hard", lipschitz=None``), while the Lipschitz column is
    ``clf.certify(X)`` itself.  Each certificate holds with probability at
    least ``1 - clf.alpha`` per input.

    References
    ----------
    .. [1] Cohen, Rosenfeld & Kolter, "Certified Adversarial Robustness via
       Randomized Smoothing", ICML 2019.
    .. [2] Delattre, Caillon, Barthélemy, Fagnou & Allauzen, "Bridging the
       Theoretical Gap in Randomized Smoothing", AISTATS 2025.
    .. [3] Salman et al., "Provably Robust Deep Learning via Adversarially
       Trained Smoothed Classifiers", NeurIPS 2019.

    Examples
    --------
    >>> import numpy as np, torch
    >>> from smoothlearn import SmoothedClassifier
    >>> from smoothlearn.attacks import SmoothAdvPGD, gap_report
    >>> model = torch.nn.Linear(1, 2)
    >>> with torch.no_grad():
    ...     _ = model.weight.copy_(torch.tensor([[-1.0], [1.0]]))
    ...     _ = model.bias.zero_()
    >>> X = np.array([[0.5], [1.0], [2.0], [-1.0]], dtype=np.float32)
    >>> y = np.array([1, 1, 1, 0])
    >>> clf = SmoothedClassifier(model, sigma=0.5, n=2000, alpha=0.01,
    ...                          random_state=0).fit(X, y)
    >>> report = gap_report(clf, X, y, radii=[0.25, 0.75],
    ...     attack=SmoothAdvPGD(n_steps=5, n_noise=4, random_state=0))
    >>> print(report.to_markdown(2))  # doctest: +NORMALIZE_WHITESPACE
    | radius | certified (Cohen: top class, mono) | certified (CPM, multi) | empirical (attack) | gap closed (CPM) |
    |---:|---:|---:|---:|---:|
    | 0.25 | 1.00 | 1.00 | 1.00 | n/a |
    | 0.75 | 0.75 | 0.75 | 0.75 | n/a |
    """  # noqa: E501
    r = np.sort(_check_radii_array(radii).ravel())
    attack = _check_attack(attack)
    _check_smoothed(clf, "gap_report")
    X = _check_fitted_input(clf, X)
    y = np.asarray(y)
    _class_index(clf, y, X.shape[0])
    lipschitz = getattr(clf, "lipschitz", None)
    smoothing = getattr(clf, "smoothing", "hard")
    if result is None:
        hard = clf
        if smoothing != "hard" or lipschitz is not None:
            hard = copy.copy(clf).set_params(smoothing="hard", lipschitz=None)
        result = hard.certify(X)
    elif not isinstance(result, CertificationResult):
        raise ValueError(
            "The 'result' parameter must be a CertificationResult or None. "
            f"Got {type(result).__name__} instead."
        )
    if result.smoothing != "hard" or result.n_inputs != X.shape[0]:
        raise ValueError(
            "The 'result' parameter must hold hard-smoothing certificates of the "
            f"{X.shape[0]} inputs of X. Got {result.n_inputs} inputs with "
            f"smoothing={result.smoothing!r} instead."
        )
    results = {
        "certified_cohen": result.recertify(interval="top_class", radius="mono"),
        "certified_cpm": result.recertify(interval="cpm", radius="multi"),
    }
    if lipschitz is not None:
        results["certified_lipschitz"] = clf.certify(X)
    certified = {
        k: np.asarray(certified_accuracy(y, res, r), dtype=np.float64)
        for k, res in results.items()
    }
    mask = _robust_mask(clf, X, y, r, attack, n_predict)
    return GapReport(
        radii=r,
        certified=certified,
        empirical=mask.mean(axis=0).astype(np.float64),
        results=results,
        n_inputs=int(X.shape[0]),
        attack=attack,
    )
