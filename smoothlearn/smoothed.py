"""The smoothed classifier: a scikit-learn meta-estimator around any classifier."""

from __future__ import annotations

import math
import warnings
from contextlib import nullcontext
from numbers import Integral, Real
from typing import ClassVar

import numpy as np
import torch
from numpy.typing import ArrayLike, NDArray
from scipy.stats import binom
from sklearn.base import (
    BaseEstimator,
    ClassifierMixin,
    MetaEstimatorMixin,
    _fit_context,
    clone,
)
from sklearn.frozen import FrozenEstimator
from sklearn.utils import _safe_indexing
from sklearn.utils._param_validation import HasMethods, Interval, StrOptions
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, validate_data

from .intervals import PROCEDURES
from .models import (
    _is_skorch_binary,
    _is_skorch_net,
    _module_device,
    _NoisyCollate,
    _SklearnAdapter,
    _SkorchAdapter,
    _TorchAdapter,
)
from .result import (
    CertificationResult,
    _abstain_label,
    _labels,
    _resolve_procedure,
    _warn_if_n_too_small,
)
from .sampling import (
    STAGE_ESTIMATION,
    STAGE_PREDICT,
    STAGE_SELECTION,
    STAGE_TRAIN,
    _block_seed,
    _root_seed,
    sample_statistics,
)

__all__ = ["SmoothedClassifier"]


def _predict_p_values(counts: NDArray) -> tuple[NDArray, NDArray]:
    """Top class and two-sided binomial p-value of Cohen's PREDICT, per row.

    ``p = min(1, 2 * BinomCDF(n_B; n_A + n_B, 1/2))`` with ``n_A >= n_B`` the
    two largest counts: scipy's ``binomtest(n_A, n_A + n_B, 0.5).pvalue``,
    vectorised (the null distribution is symmetric).
    """
    counts = np.asarray(counts)
    order = np.argsort(-counts, axis=1, kind="stable")
    top = order[:, 0]
    rows = np.arange(counts.shape[0])
    n_a = counts[rows, top]
    n_b = counts[rows, order[:, 1]] if counts.shape[1] > 1 else np.zeros_like(n_a)
    p_value = np.minimum(1.0, 2.0 * binom.cdf(n_b, n_a + n_b, 0.5))
    return top.astype(np.int64), p_value


class SmoothedClassifier(ClassifierMixin, MetaEstimatorMixin, BaseEstimator):
    r"""Randomized-smoothing classifier with certified l2 robustness.

    Wraps a base classifier ``f`` (a skorch net, a bare
    :class:`torch.nn.Module` or any scikit-learn classifier) into the smoothed
    classifier ``g(x) = argmax_c P(f(x + d) = c)``, ``d ~ N(0, sigma^2 I)``,
    estimated by Monte Carlo.  :meth:`certify` returns, per input, the
    prediction and an l2 radius within which it provably cannot change, with
    failure probability at most ``alpha``.

    The defaults reproduce Cohen et al. (2019) exactly (Clopper-Pearson bound
    on the top class, the mono radius); the tighter procedure of Delattre et
    al. (2025) is ``interval="cpm", radius="multi"``.

    Parameters
    ----------
    estimator : object
        The base classifier:

        * a skorch ``NeuralNet`` (e.g. ``NeuralNetClassifier``): ``fit``
          clones and trains it on noisy inputs; output ``i`` of its module is
          the class ``classes_[i]``;
        * a scikit-learn classifier with ``predict``: ``fit`` clones and
          trains it on noisy copies of the data;
        * ``sklearn.frozen.FrozenEstimator(model)`` around a fitted skorch
          net or scikit-learn classifier: used as is, never refitted;
        * a bare :class:`torch.nn.Module` returning logits ``(B, K)`` (or one
          logit ``(B,)``, positive for the second class): always treated as
          pre-trained and used as is; ``fit`` only reads the classes.
    sigma : float, default=0.25
        Standard deviation of the Gaussian noise, > 0.
    n0 : int, default=100
        Number of selection draws per input (they choose the class).
    n : int, default=100_000
        Number of estimation draws per input (they bound its probability);
        also the number of draws of :meth:`predict` and :meth:`predict_proba`.
    alpha : float, default=0.001
        Total failure probability of each input's certificate (and of each
        :meth:`predict` answer), in (0, 1).
    interval : MultiClassProcedure or str, default=None
        The multi-class confidence procedure: None means
        :class:`~smoothlearn.intervals.TopClass` with Clopper-Pearson
        (Cohen's CERTIFY), or an exact alias among ``"top_class"``,
        ``"bonferroni"``, ``"class_partitioning"``, ``"cpm"``.
    radius : {"mono", "multi"}, default="mono"
        ``"mono"``: ``sigma * Phi^-1(pA_lower)`` (Cohen's CERTIFY);
        ``"multi"``: ``sigma / 2 * (Phi^-1(pA_lower) - Phi^-1(pB_upper))``.
    smoothing : {"hard", "soft"}, default="hard"
        ``"hard"`` counts the base model's argmax.  ``"soft"`` is reserved
        for averaging probability vectors (not supported yet).
    lipschitz : None
        Reserved for Lipschitz-aware radii (not supported yet).
    batch_size : int, default=1024
        Number of noisy samples per forward pass; many inputs share a batch.
        Memory grows with it; results do not depend on it.
    noise_augment : bool or int, default=True
        Whether :meth:`fit` trains the base model on noisy inputs at
        ``sigma``.  An int ``k`` trains on ``k`` noisy copies of the data per
        pass (``True`` is one).  Ignored for pre-trained models.
    device : str or torch.device, default=None
        Where a torch model computes and the noise is drawn.  None: the
        skorch net's ``device`` or the module's parameters' device.  For a
        skorch net trained by :meth:`fit` it sets the clone's device; a
        pre-trained module must already live there.  Scikit-learn models run
        on the CPU.
    random_state : int, RandomState instance or None, default=None
        Source of all the noise (training augmentation and Monte Carlo).  An
        int gives the same noise, hence the same results, at every call.
        The base model's own randomness (weight init, shuffling) follows the
        base model's settings.
    n_jobs : int, default=None
        Reserved for parallel certification over inputs; computations
        currently run in the calling process (torch uses its own threads).
    verbose : int, default=0
        Show a tqdm progress bar over inputs when > 0 (needs tqdm).

    Attributes
    ----------
    estimator_ : object
        The fitted base model (the module itself for a bare torch module, the
        ``FrozenEstimator`` for a frozen one).
    classes_ : ndarray of shape (n_classes,)
        Class labels; output index ``i`` of the base model is ``classes_[i]``.
    abstain_label_ : object
        The label :meth:`predict` returns to abstain: ``-1``, or
        ``min(classes_) - 1`` if ``-1`` is a class; ``"abstain"`` for
        non-numeric labels (None if ``"abstain"`` is a class).
    input_shape_ : tuple of int
        Shape of one input, ``X.shape[1:]`` at fit.
    n_features_in_ : int
        ``X.shape[1]`` at fit.
    feature_names_in_ : ndarray of shape (n_features_in_,)
        Column names, when ``X`` was a DataFrame with string column names.

    See Also
    --------
    smoothlearn.CertificationResult : what :meth:`certify` returns.
    smoothlearn.metrics.certified_accuracy : certified accuracy at a radius.

    Notes
    -----
    CERTIFY: the class :math:`\hat c_A` is chosen from ``n0`` selection
    draws; ``n`` fresh draws give :math:`\underline{p_A}` (and
    :math:`\overline{p_B}`) by the multi-class procedure at total level
    ``alpha``, and the radius is

    .. math::

        R_{mono} = \sigma\,\Phi^{-1}(\underline{p_A}), \qquad
        R_{multi} = \frac{\sigma}{2}\left(\Phi^{-1}(\underline{p_A})
                    - \Phi^{-1}(\overline{p_B})\right).

    It abstains when the radius would be negative.  With probability at least
    ``1 - alpha`` a returned ``(class, radius)`` is correct (Cohen et al.,
    Theorem 1; Delattre et al. for the class-partitioning procedure).

    PREDICT: ``n`` draws, top two counts :math:`n_A \ge n_B`; returns the top
    class when the two-sided binomial test of :math:`n_A` out of
    :math:`n_A + n_B` at 1/2 has p-value :math:`\le \alpha`, else abstains; it
    returns a class other than :math:`g(x)` with probability at most
    ``alpha``.

    The noise of input ``i`` depends on ``random_state``, on ``i``'s position
    in ``X`` and on the stage (selection, estimation, predict), never on
    ``batch_size``.  Scikit-learn base models make one numpy round trip per
    batch on the CPU.

    References
    ----------
    .. [1] Cohen, Rosenfeld & Kolter, "Certified Adversarial Robustness via
       Randomized Smoothing", ICML 2019.
    .. [2] Delattre, Caillon, Barthélemy, Fagnou & Allauzen, "Bridging the
       Theoretical Gap in Randomized Smoothing", AISTATS 2025.

    Examples
    --------
    >>> from sklearn.datasets import load_iris
    >>> from sklearn.linear_model import LogisticRegression
    >>> from smoothlearn import SmoothedClassifier
    >>> X, y = load_iris(return_X_y=True)
    >>> clf = SmoothedClassifier(LogisticRegression(max_iter=1000), sigma=0.25,
    ...                          n=1000, random_state=0).fit(X, y)
    >>> res = clf.certify(X[:3])
    >>> res.prediction
    array([0, 0, 0])
    >>> bool((res.radius > 0.3).all())
    True
    """

    _parameter_constraints: ClassVar[dict] = {
        "estimator": [HasMethods(["predict"]), torch.nn.Module],
        "sigma": [Interval(Real, 0, None, closed="neither")],
        "n0": [Interval(Integral, 1, None, closed="left")],
        "n": [Interval(Integral, 1, None, closed="left")],
        "alpha": [Interval(Real, 0, 1, closed="neither")],
        "interval": [None, StrOptions(set(PROCEDURES)), HasMethods(["bound"])],
        "radius": [StrOptions({"mono", "multi"})],
        "smoothing": [StrOptions({"hard", "soft"})],
        "lipschitz": "no_validation",
        "batch_size": [Interval(Integral, 1, None, closed="left")],
        "noise_augment": ["boolean", Interval(Integral, 1, None, closed="left")],
        "device": [None, str, torch.device],
        "random_state": ["random_state"],
        "n_jobs": [None, Integral],
        "verbose": ["verbose"],
    }

    def __init__(
        self,
        estimator,
        *,
        sigma=0.25,
        n0=100,
        n=100_000,
        alpha=0.001,
        interval=None,
        radius="mono",
        smoothing="hard",
        lipschitz=None,
        batch_size=1024,
        noise_augment=True,
        device=None,
        random_state=None,
        n_jobs=None,
        verbose=0,
    ):
        self.estimator = estimator
        self.sigma = sigma
        self.n0 = n0
        self.n = n
        self.alpha = alpha
        self.interval = interval
        self.radius = radius
        self.smoothing = smoothing
        self.lipschitz = lipschitz
        self.batch_size = batch_size
        self.noise_augment = noise_augment
        self.device = device
        self.random_state = random_state
        self.n_jobs = n_jobs
        self.verbose = verbose

    # ------------------------------------------------------------------
    # validation helpers
    # ------------------------------------------------------------------
    def _check_params(self) -> None:
        """Relations and reserved values the constraints cannot express."""
        if not math.isfinite(self.sigma):
            raise ValueError(
                "The 'sigma' parameter of SmoothedClassifier must be a float in the "
                f"range (0, inf). Got {self.sigma!r} instead."
            )
        if self.smoothing != "hard":
            raise ValueError(
                "The 'smoothing' parameter of SmoothedClassifier: 'soft' is not "
                "supported yet; use smoothing='hard'."
            )
        if self.lipschitz is not None:
            raise ValueError(
                "The 'lipschitz' parameter of SmoothedClassifier is not supported "
                f"yet; only None (Cohen's radius) is. Got {self.lipschitz!r} instead."
            )

    def _validate_X(self, X) -> NDArray:
        check_is_fitted(self)
        self._validate_params()
        self._check_params()
        X = validate_data(
            self, X, reset=False, allow_nd=True, dtype=[np.float64, np.float32]
        )
        if X.shape[1:] != self.input_shape_:
            raise ValueError(
                f"X has inputs of shape {X.shape[1:]}, but SmoothedClassifier was "
                f"fitted with inputs of shape {self.input_shape_}."
            )
        return X

    # ------------------------------------------------------------------
    # fit
    # ------------------------------------------------------------------
    @_fit_context(
        # the base estimator is validated by its own fit
        prefer_skip_nested_validation=False
    )
    def fit(self, X: ArrayLike, y: ArrayLike, **fit_params) -> SmoothedClassifier:
        """Fit the base classifier on noise-augmented data (or adopt a pre-trained one).

        Parameters
        ----------
        X : array-like of shape (n_samples, \\*input_shape)
            Training inputs (tabular rows, signals, images...).
        y : array-like of shape (n_samples,)
            Class labels.
        **fit_params : dict
            Passed to the base estimator's ``fit``; per-sample arrays are
            repeated along with the noisy copies.

        Returns
        -------
        self : SmoothedClassifier
            The fitted classifier.

        Notes
        -----
        * scikit-learn classifier: a clone is fitted on
          ``int(noise_augment)`` copies of ``X``, each with its own fixed
          noise (or on ``X`` itself when ``noise_augment=False``).
        * skorch net: a clone is fitted with fresh noise added to every
          training batch of every epoch (through its
          ``iterator_train__collate_fn``, which ``estimator_`` keeps); inputs
          are cast to float32 and labels encoded as ``0 .. K-1`` (or by the
          net's ``classes``).
        * ``FrozenEstimator`` and bare torch modules are used as is.
        """
        self._check_params()
        X, y = validate_data(self, X, y, allow_nd=True, dtype=[np.float64, np.float32])
        check_classification_targets(y)
        self.input_shape_ = tuple(X.shape[1:])
        root = _root_seed(self.random_state)

        estimator = self.estimator
        frozen = isinstance(estimator, FrozenEstimator)
        inner = estimator.estimator if frozen else estimator
        if isinstance(inner, torch.nn.Module):
            self.estimator_ = inner
            classes = self._module_classes(
                _TorchAdapter(inner, 2, self._device()), X, y
            )
        elif _is_skorch_net(inner):
            classes = self._fit_skorch(inner, frozen, X, y, root, fit_params)
        else:
            classes = self._fit_sklearn(inner, frozen, X, y, root, fit_params)
        self.classes_ = np.asarray(classes)
        self.abstain_label_ = _abstain_label(self.classes_)
        return self

    def _device(self):
        return None if self.device is None else torch.device(self.device)

    def _training_copies(self, trains: bool) -> int:
        if not trains:
            return 0
        if self.noise_augment is False:
            warnings.warn(
                "noise_augment=False: the base estimator is trained without noise, so "
                "the smoothed classifier will likely abstain often and certify small "
                "radii. Train with noise_augment=True (Gaussian noise at sigma).",
                UserWarning,
                stacklevel=4,
            )
            return 0
        return int(self.noise_augment)

    def _augment(self, X, y, fit_params, copies, noisy, root):
        """``copies`` copies of (X, y, per-sample fit params), noisy if asked."""
        n_samples = X.shape[0]
        if copies > 1:
            index = np.tile(np.arange(n_samples), copies)
            X = X[index]
            y = y[index]
            fit_params = {
                k: _safe_indexing(v, index)
                if hasattr(v, "__len__")
                and not isinstance(v, str | dict)
                and len(v) == n_samples
                else v
                for k, v in fit_params.items()
            }
        if noisy:
            rng = np.random.default_rng(_block_seed(root, 0, STAGE_TRAIN, 0))
            noise = rng.standard_normal(X.shape)
            X = (X + self.sigma * noise).astype(X.dtype, copy=False)
        return X, y, fit_params

    def _fit_sklearn(self, inner, frozen, X, y, root, fit_params):
        if self.device is not None and torch.device(self.device).type != "cpu":
            raise ValueError(
                "The 'device' parameter of SmoothedClassifier must be None or 'cpu' "
                f"for a scikit-learn base estimator. Got {self.device!r} instead."
            )
        X2 = X.reshape(X.shape[0], -1)
        if frozen:
            check_is_fitted(inner)
            self.estimator_ = self.estimator
        else:
            copies = self._training_copies(trains=True)
            Xa, ya, params = self._augment(
                X2, y, fit_params, max(copies, 1), copies > 0, root
            )
            self.estimator_ = clone(inner).fit(Xa, ya, **params)
        classes = getattr(self.estimator_, "classes_", None)
        if classes is None:
            classes = np.unique(y)
        return classes

    def _fit_skorch(self, net, frozen, X, y, root, fit_params):
        if frozen:
            if not getattr(net, "initialized_", False):
                raise ValueError(
                    "The 'estimator' FrozenEstimator wraps a skorch net that is not "
                    "initialized; fit it (or call initialize()) first."
                )
            if self.device is not None and torch.device(self.device) != torch.device(
                net.device
            ):
                raise ValueError(
                    f"The 'device' parameter of SmoothedClassifier ({self.device!r}) "
                    f"differs from the frozen net's device ({net.device!r})."
                )
            self.estimator_ = self.estimator
            try:
                classes = np.asarray(net.classes_)
            except AttributeError:
                classes = None
            adapter = _SkorchAdapter(net, 2)
            return self._module_classes(adapter, X, y, classes)

        net = clone(net)
        if self.device is not None:
            net.set_params(device=str(self.device))
        classes = getattr(net, "classes", None)
        binary = _is_skorch_binary(net)
        if binary:
            classes = np.unique(y)
            if len(classes) != 2:
                raise ValueError(
                    "The 'estimator' is a NeuralNetBinaryClassifier but y has "
                    f"{len(classes)} classes."
                )
        elif classes is None or len(classes) == 0:
            classes = np.unique(y)
        classes = np.asarray(classes)
        y_index = _encode(y, classes)
        y_enc = y_index.astype(np.float32 if binary else np.int64)
        copies = self._training_copies(trains=True)
        Xa, ya, params = self._augment(
            X.astype(np.float32, copy=False),
            y_enc,
            fit_params,
            max(copies, 1),
            False,
            root,
        )
        if copies:
            collate = getattr(net, "iterator_train__collate_fn", None)
            seed = _block_seed(root, 0, STAGE_TRAIN, 1)
            net.set_params(
                iterator_train__collate_fn=_NoisyCollate(self.sigma, seed, collate)
            )
        net.fit(Xa, ya, **params)
        self.estimator_ = net
        adapter = _SkorchAdapter(net, len(classes))
        self._check_outputs(adapter, X, len(classes))
        return classes

    def _module_classes(self, adapter, X, y, classes=None):
        """Classes of a pre-trained torch model from its output width and y."""
        n_out = self._n_outputs(adapter, X)
        if classes is None:
            labels = np.unique(y)
            if len(labels) == n_out:
                classes = labels
            elif (
                labels.dtype.kind in "iu" and labels.min() >= 0 and labels.max() < n_out
            ):
                classes = np.arange(n_out)
            else:
                raise ValueError(
                    f"The 'estimator' returns {n_out} class scores but y has "
                    f"{len(labels)} classes {labels!r}; output i must be the i-th "
                    "sorted class, or y must hold integer classes in "
                    f"range({n_out})."
                )
        if len(classes) != n_out:
            raise ValueError(
                f"The 'estimator' returns {n_out} class scores but has "
                f"{len(classes)} classes."
            )
        return classes

    @staticmethod
    def _n_outputs(adapter, X) -> int:
        device = adapter.device
        with torch.inference_mode(), adapter.evaluating():
            probe = torch.from_numpy(np.ascontiguousarray(X[:1])).to(
                device, adapter.dtype
            )
            scores = adapter.predict_scores(probe)
        if scores.ndim != 2 or scores.shape[0] != 1:
            raise ValueError(
                "The 'estimator' must return class scores of shape (batch, "
                f"n_classes) or (batch,); got {tuple(scores.shape)} for one input."
            )
        return int(scores.shape[1])

    def _check_outputs(self, adapter, X, n_classes):
        n_out = self._n_outputs(adapter, X)
        if n_out != n_classes:
            raise ValueError(
                f"The 'estimator' module returns {n_out} class scores but y has "
                f"{n_classes} classes."
            )

    # ------------------------------------------------------------------
    # Monte Carlo
    # ------------------------------------------------------------------
    def _adapter(self):
        est = self.estimator_
        inner = est.estimator if isinstance(est, FrozenEstimator) else est
        n_classes = len(self.classes_)
        if isinstance(inner, torch.nn.Module):
            device = self._device()
            module_device = _module_device(inner)
            has_params = any(True for _ in inner.parameters())
            if (
                device is not None
                and has_params
                and (device.type, device.index or 0)
                != (module_device.type, module_device.index or 0)
            ):
                raise ValueError(
                    f"The 'device' parameter of SmoothedClassifier ({device}) "
                    f"differs from the module's device ({module_device}); move "
                    "the module first (module.to(device))."
                )
            return _TorchAdapter(inner, n_classes, device)
        if _is_skorch_net(inner):
            return _SkorchAdapter(inner, n_classes)
        return _SklearnAdapter(est, self.classes_)

    def _progress(self, total: int, desc: str):
        if not self.verbose:
            return nullcontext(None)
        try:
            from tqdm.auto import tqdm
        except ImportError as exc:  # pragma: no cover - tqdm is a test extra
            raise ImportError(
                "verbose > 0 shows a progress bar with tqdm: "
                "pip install 'smoothlearn[progress]'."
            ) from exc
        return tqdm(total=total, desc=desc, unit="input")

    def _statistics(self, X, n_draws, stage, root, bar):
        return sample_statistics(
            self._adapter(),
            X,
            n_draws,
            self.sigma,
            stage=stage,
            seed=root,
            batch_size=self.batch_size,
            progress=None if bar is None else bar.update,
        )

    def _predict_counts(self, X) -> NDArray[np.int64]:
        root = _root_seed(self.random_state)
        with self._progress(X.shape[0], "predict") as bar:
            counts, _ = self._statistics(X, self.n, STAGE_PREDICT, root, bar)
        return counts

    # ------------------------------------------------------------------
    # public prediction API
    # ------------------------------------------------------------------
    def predict(self, X: ArrayLike) -> NDArray:
        """Cohen's PREDICT: the smoothed class, or the abstain label.

        Parameters
        ----------
        X : array-like of shape (n_inputs, \\*input_shape)

        Returns
        -------
        y_pred : ndarray of shape (n_inputs,)
            Labels of ``classes_``; ``abstain_label_`` (``-1`` for integer
            labels) where the binomial test does not separate the two top
            classes at level ``alpha``.

        Notes
        -----
        Uses ``n`` draws per input, the same draws as :meth:`predict_proba`
        for the same ``random_state``.  The two-sided p-value is
        ``min(1, 2 * BinomCDF(n_B; n_A + n_B, 1/2))``; a class is returned with
        probability at most ``alpha`` of differing from the smoothed class.
        """
        X = self._validate_X(X)
        _warn_if_n_too_small_predict(self.n, self.alpha)
        counts = self._predict_counts(X)
        top, p_value = _predict_p_values(counts)
        return _labels(
            self.classes_, top, ~(p_value <= self.alpha), self.abstain_label_
        )

    def predict_proba(self, X: ArrayLike) -> NDArray[np.float64]:
        """Smoothed class frequencies: the fraction of ``n`` noisy draws per class.

        Parameters
        ----------
        X : array-like of shape (n_inputs, \\*input_shape)

        Returns
        -------
        proba : ndarray of shape (n_inputs, n_classes)
            Monte-Carlo estimates of ``P(f(x + d) = c)``; rows sum to 1.
        """
        counts = self._predict_counts(self._validate_X(X))
        return counts / float(self.n)

    def certify(self, X: ArrayLike) -> CertificationResult:
        """Certify every input: prediction and certified l2 radius (Cohen's CERTIFY).

        Parameters
        ----------
        X : array-like of shape (n_inputs, \\*input_shape)

        Returns
        -------
        CertificationResult
            Per-input ``prediction`` (``abstain_label_`` where abstained),
            ``radius``, ``pA_lower``, ``pB_upper``, ``abstained``, and the
            selection and estimation statistics, so the certificates can be
            recomputed with :meth:`CertificationResult.recertify`.

        Notes
        -----
        With probability at least ``1 - alpha`` over the noise, each
        non-abstained input's smoothed prediction equals ``prediction``
        within ``radius``.
        """
        X = self._validate_X(X)
        _warn_if_n_too_small(self.n, self.alpha)
        procedure = _resolve_procedure(self.interval)
        root = _root_seed(self.random_state)
        with self._progress(X.shape[0], "selection") as bar:
            selection, _ = self._statistics(X, self.n0, STAGE_SELECTION, root, bar)
        with self._progress(X.shape[0], "estimation") as bar:
            estimation, estimation_sq = self._statistics(
                X, self.n, STAGE_ESTIMATION, root, bar
            )
        return CertificationResult.from_statistics(
            selection=selection,
            estimation=estimation,
            estimation_sq=estimation_sq,
            n0=self.n0,
            n=self.n,
            sigma=self.sigma,
            alpha=self.alpha,
            classes=self.classes_,
            interval=procedure,
            radius=self.radius,
            smoothing=self.smoothing,
            abstain_label=self.abstain_label_,
            _warn=False,
        )

    def score(self, X: ArrayLike, y: ArrayLike, sample_weight=None) -> float:
        """Accuracy of :meth:`predict`; an abstention counts as an error.

        Parameters
        ----------
        X : array-like of shape (n_inputs, \\*input_shape)
        y : array-like of shape (n_inputs,)
        sample_weight : array-like of shape (n_inputs,), default=None

        Returns
        -------
        score : float
        """
        y_pred = self.predict(X)
        correct = np.asarray(y_pred == np.asarray(y), dtype=np.float64)
        return float(np.average(correct, weights=sample_weight))

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.sparse = False
        tags.input_tags.three_d_array = True
        tags.non_deterministic = not isinstance(self.random_state, Integral)
        return tags


def _encode(y: NDArray, classes: NDArray) -> NDArray[np.int64]:
    """Index of each label of ``y`` in ``classes`` (error if absent)."""
    sorter = np.argsort(classes, kind="stable")
    pos = np.minimum(np.searchsorted(classes, y, sorter=sorter), len(classes) - 1)
    index = sorter[pos]
    if not np.all(classes[index] == y):
        raise ValueError(
            "y holds labels that are not among the skorch net's 'classes'."
        )
    return index.astype(np.int64)


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
