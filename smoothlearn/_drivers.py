"""The classifier's calls of the engine: progress bar, hard CERTIFY and PREDICT.

Plain functions of explicit arguments, called by
:class:`~smoothlearn.SmoothedClassifier` (the soft paths are in
:mod:`smoothlearn._soft_paths`): :func:`gather` runs
:func:`~smoothlearn._parallel.gather_fields` with the classifier's
parameters; the drivers take that call as ``gather``.
"""

from __future__ import annotations

import math
import warnings
from contextlib import nullcontext

import numpy as np
from numpy.typing import NDArray
from scipy.stats import binom

from ._rounding import round_up
from .result import CertificationResult, _resolve_procedure
from .sampling import STAGE_ESTIMATION, STAGE_PREDICT, STAGE_SELECTION, _root_seed


def progress_bar(verbose, total: int, desc: str):
    """A tqdm bar over ``total`` inputs when ``verbose``, else a null context."""
    if not verbose:
        return nullcontext(None)
    try:
        from tqdm.auto import tqdm
    except ImportError as exc:  # pragma: no cover - tqdm is a test extra
        raise ImportError(
            "verbose > 0 shows a progress bar with tqdm: "
            "pip install 'smoothlearn[progress]'."
        ) from exc
    return tqdm(total=total, desc=desc, unit="input")


def gather(
    make_adapters,
    X,
    stages,
    desc: str,
    *,
    sigma: float,
    random_state,
    batch_size: int,
    n_jobs,
    verbose,
    checkpoint=None,
    seed=None,
    meta=None,
    every: float = 10.0,
):
    """Fields of every ``(stage, n_draws, statistic)``: the one engine.

    Over ``n_jobs`` workers or the devices of a list (``make_adapters()``
    returns one adapter, or one per device), with progress and an optional checkpoint
    (``meta``: what else determines the statistics); ``seed`` defaults to a
    root drawn from ``random_state``.
    """
    from ._parallel import gather_fields

    with progress_bar(verbose, X.shape[0], desc) as bar:
        return gather_fields(
            make_adapters(),
            X,
            stages=stages,
            sigma=sigma,
            seed=_root_seed(random_state) if seed is None else seed,
            batch_size=batch_size,
            n_jobs=n_jobs,
            checkpoint=checkpoint,
            checkpoint_meta={"smoothing": "hard"} if meta is None else meta,
            seed_from_checkpoint=random_state is None and seed is None,
            progress=None if bar is None else bar.update,
            checkpoint_every=every,
        )


def predict_counts(gather, X, n: int) -> NDArray[np.int64]:
    """Hard PREDICT's class counts over ``n`` draws of the predict stage."""
    stats = gather(X, [(STAGE_PREDICT, n, "hard")], "predict")
    return stats[STAGE_PREDICT]["sums"]


def certify_hard(
    gather,
    X,
    *,
    n0: int,
    n: int,
    sigma: float,
    alpha: float,
    classes,
    interval,
    radius: str,
    abstain_label,
    checkpoint=None,
    every: float = 10.0,
) -> CertificationResult:
    """Cohen's CERTIFY with hard counts: selection on n0 draws, bounds on n."""
    procedure = _resolve_procedure(interval)
    stats = gather(
        X,
        [(STAGE_SELECTION, n0, "hard"), (STAGE_ESTIMATION, n, "hard")],
        "certify",
        checkpoint,
        every=every,
    )
    selection = stats[STAGE_SELECTION]["sums"]
    estimation = stats[STAGE_ESTIMATION]["sums"]
    estimation_sq = estimation.copy()
    return CertificationResult.from_statistics(
        selection=selection,
        estimation=estimation,
        estimation_sq=estimation_sq,
        n0=n0,
        n=n,
        sigma=sigma,
        alpha=alpha,
        classes=classes,
        interval=procedure,
        radius=radius,
        smoothing="hard",
        abstain_label=abstain_label,
        _warn=False,
        _stacklevel=4,  # certify_hard, certify, the caller
    )


def _predict_p_values(counts: NDArray) -> tuple[NDArray, NDArray]:
    """Top class and two-sided binomial p-value of Cohen's PREDICT, per row.

    ``p = min(1, 2 * BinomCDF(n_B; n_A + n_B, 1/2))`` with ``n_A >= n_B`` the
    two largest counts: scipy's ``binomtest(n_A, n_A + n_B, 0.5).pvalue``,
    vectorised (the null distribution is symmetric), rounded up by 16 ulps.
    """
    counts = np.asarray(counts)
    order = np.argsort(-counts, axis=1, kind="stable")
    top = order[:, 0]
    rows = np.arange(counts.shape[0])
    n_a = counts[rows, top]
    n_b = counts[rows, order[:, 1]] if counts.shape[1] > 1 else np.zeros_like(n_a)
    p_value = np.minimum(1.0, 2.0 * binom.cdf(n_b, n_a + n_b, 0.5))
    # Rounded up by more than the error of the binomial CDF (a few ulps), so
    # a p-value that is above alpha in exact arithmetic never answers.
    return top.astype(np.int64), round_up(p_value)


def _warn_if_n_too_small_predict(n: int, alpha: float) -> None:
    """PREDICT never answers when even ``n`` votes out of ``n`` fail the test."""
    if 2.0 * 0.5**n > alpha:
        n_min = max(1, math.ceil(math.log2(2.0 / alpha)))
        while 2.0 * 0.5**n_min > alpha:
            n_min += 1
        warnings.warn(
            f"n={n} draws are too few for predict to return any class at "
            f"alpha={alpha}: even a unanimous vote has p-value 2 * 0.5**n > alpha. "
            f"The smallest n that can answer is {n_min}.",
            UserWarning,
            stacklevel=3,
        )
