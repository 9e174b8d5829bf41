"""The smoothed classifier: a scikit-learn meta-estimator around any classifier."""

from __future__ import annotations

import math
import warnings
from contextlib import nullcontext, suppress
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

from ._rounding import round_up
from .intervals import PROCEDURES
from .models import (
    _is_skorch_binary,
    _is_skorch_net,
    _module_device,
    _NoisyCollate,
    _replicas,
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
    radius : {"mono", "multi", "margin"}, default="mono"
        ``"mono"``: ``sigma * Phi^-1(pA_lower)`` (Cohen's CERTIFY);
        ``"multi"``: ``sigma / 2 * (Phi^-1(pA_lower) - Phi^-1(pB_upper))``;
        ``"margin"`` (soft smoothing only): the LVM margin radius
        ``(pA_lower - pB_upper) * sigma * sqrt(pi / 2)`` on multi-class
        bounds.  With ``lipschitz`` set, ``"mono"``/``"multi"`` become
        :func:`~smoothlearn.radius.lipschitz_radius` of that kind.
    smoothing : {"hard", "soft"}, default="hard"
        ``"hard"`` counts the base model's argmax.  ``"soft"`` averages the
        class scores ``S(t * z)`` of a simplex map ``S`` of the logits ``z``
        (torch/skorch: the module's raw outputs; scikit-learn:
        ``log(predict_proba)``) and bounds their means with a bounded-mean
        interval: ``interval=None`` then means
        ``TopClass(binomial=EmpiricalBernstein())``, and a procedure whose
        interval requires counts raises.
    simplex_map : {"softmax", "sparsemax", "hardmax"}, default="softmax"
        The map ``S`` of soft smoothing (see :mod:`smoothlearn.soft`);
        ``"hardmax"`` is the one-hot argmax (hard counts, bounded as means).
        Ignored when ``temperature="auto"`` or ``smoothing="hard"``.
    temperature : float or "auto", default=1.0
        Inverse temperature ``t > 0`` multiplying the logits.  ``"auto"``
        chooses, per input and on the ``n0`` selection draws only, the
        (map, t) among softmax and sparsemax on 12 log-spaced ``t`` in
        [0.1, 50] and hardmax that maximises the plug-in radius (see Notes).
    lipschitz : LipschitzEstimator or float, default=None
        For soft smoothing, a guaranteed bound on the l2 Lipschitz constant
        of the model's *logits* (a ``LipschitzEstimator`` with
        ``guaranteed=True``, or the number itself).  The certificate then
        uses :func:`~smoothlearn.radius.lipschitz_radius` with the constant
        of the averaged class score,
        ``L_score = simplex_map_constant * t * L_logits``.  None: Cohen's
        radius.  Refused with hard counts (``smoothing="hard"`` or
        ``simplex_map="hardmax"``) and for estimators that are estimates
        (``guaranteed=False``).
    radius_method : {"paper", "envelope"}, default="paper"
        Form of the Lipschitz-aware radius: the paper's local form or the
        exact worst-case envelope (:func:`~smoothlearn.radius.lipschitz_radius`).
    batch_size : int, default=1024
        Number of noisy samples per forward pass; many inputs share a batch.
        Memory grows with it; results do not depend on it.
    noise_augment : bool or int, default=True
        Whether :meth:`fit` trains the base model on noisy inputs at
        ``sigma``.  An int ``k`` trains on ``k`` noisy copies of the data per
        pass (``True`` is one).  Ignored for pre-trained models.
    device : str, torch.device or list of them, default=None
        Where a torch model computes and the noise is drawn.  None: the
        skorch net's ``device`` or the module's parameters' device.  For a
        skorch net trained by :meth:`fit` it sets the clone's device; a
        pre-trained module must already live there.  Scikit-learn models run
        on the CPU.  A list (e.g. ``["cuda:0", "cuda:1"]``) runs hard
        certification, :meth:`predict` and :meth:`predict_proba` with one
        worker thread per entry, each with its own copy of the model
        (``copy.deepcopy``, moved there), taking chunks of inputs as it
        frees up; results are identical to one device.  The first entry
        plays the role of a single device (where a pre-trained module must
        live, where :meth:`fit` trains a skorch net, where soft and
        sequential certification run); entries must be of one type (and
        GPUs of one model, since the noise torch draws for a seed depends
        on it).
    memory_format : {"auto", "contiguous", "channels_last"}, default="auto"
        Layout in which 4-D image batches ``(N, C, H, W)`` reach a torch
        model: ``"channels_last"`` passes them in :data:`torch.channels_last`
        layout (often faster for convolutions on CPU and GPU; the module
        itself is not converted), ``"contiguous"`` as built.  ``"auto"``
        times both before the first batch of a model and input shape in
        this process (about two seconds, or 5% of a long call) and keeps
        the faster one for the life of the process (the default layout for
        a model that fails on channels_last strides).  The noise and the
        inputs' values are the same in both layouts; a convolution may round
        its last bits differently in each, which can move an argmax at an
        exact tie, so for bit-identical results across processes and
        machines name the layout.  Other inputs, and scikit-learn models,
        are unaffected.
    precision : {None, "bfloat16", "float16"}, default=None
        Run the torch model's forward pass under :func:`torch.autocast` in
        that dtype (a float32 model; both run on CPU in torch 2.13, bfloat16
        on GPUs of compute capability 8.0 and later; an unsupported one is a
        ``ValueError``).  This changes the base classifier to its
        reduced-precision version: certificates stay sound, for the
        classifier that ran, and may differ from float32 ones (more ties
        between logits, resolved to the lowest class).  The noise and
        ``x + sigma * d`` stay in the model's dtype.  None: the model's
        dtype.
    random_state : int, RandomState instance or None, default=None
        Source of all the noise (training augmentation and Monte Carlo).  An
        int gives the same noise, hence the same results, at every call.
        The base model's own randomness (weight init, shuffling) follows the
        base model's settings.
    n_jobs : int, default=None
        Number of joblib workers over which :meth:`certify`, :meth:`predict`
        and :meth:`predict_proba` split the inputs (hard smoothing; soft
        certification runs in the calling process).  None means 1 unless
        inside a :func:`joblib.parallel_config` context, -1 all processors;
        under ``joblib.parallel_config(backend="dask")`` the chunks run on
        the Dask cluster.  The noise of an input depends on the seed and the
        input's own values only, so results are identical to a serial run.
        With a list of devices there is one worker per device, and
        ``n_jobs`` must be None or the list's length.
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

    Soft smoothing (Delattre et al. 2024) certifies
    :math:`\arg\max_c \tilde f_c`, :math:`\tilde f_c(x) = E[S(t z(x+d))_c]`.
    Selection: for every candidate (map, t) the procedure is applied to the
    ``n0`` selection sums rescaled to ``n`` draws (the bounds ``n`` draws with
    the same means and variances would give, at the procedure's per-bound
    level), the radius in use is computed with the candidate's own
    Lipschitz constant, and the candidate with the largest one is kept
    (first on ties).  The ``n`` estimation draws then use that candidate and
    only bound it.  Everything chosen is a function of the selection draws,
    independent of the estimation draws, so the total failure probability is
    ``alpha`` with no correction for the number of candidates; taking the
    best radius over candidates on the estimation draws, as the released LVM
    code does, would not be valid.  With CPM a merged bucket's upper bound
    bounds each of its classes' means, and each class score is
    ``L_score``-Lipschitz, so the Lipschitz-aware multi radius with the
    per-class constant is sound.

    PREDICT: ``n`` draws, top two counts :math:`n_A \ge n_B`; returns the top
    class when the two-sided binomial test of :math:`n_A` out of
    :math:`n_A + n_B` at 1/2 has p-value :math:`\le \alpha`, else abstains; it
    returns a class other than :math:`g(x)` with probability at most
    ``alpha``.

    The noise of an input depends on ``random_state``, on the input's own
    values (a hash of them), on the stage (selection, estimation, predict)
    and on the draw index, never on its position in ``X``, on the other
    inputs or on ``batch_size``: ``certify(X)[i]`` equals
    ``certify(X[[i]])``, and two identical inputs get identical noise.  As
    with any fixed seed, the guarantee is for inputs chosen without
    knowledge of ``random_state`` (someone who knows it could search for
    inputs with lucky noise); ``random_state=None`` draws a fresh seed.
    Scikit-learn base models make one numpy round trip per batch on the CPU.

    References
    ----------
    .. [1] Cohen, Rosenfeld & Kolter, "Certified Adversarial Robustness via
       Randomized Smoothing", ICML 2019.
    .. [2] Delattre, Caillon, Barthélemy, Fagnou & Allauzen, "Bridging the
       Theoretical Gap in Randomized Smoothing", AISTATS 2025.
    .. [3] Delattre, Araujo, Barthélemy & Allauzen, "The Lipschitz-Variance-
       Margin Tradeoff for Enhanced Randomized Smoothing", ICLR 2024.
    .. [4] Maurer & Pontil, "Empirical Bernstein Bounds and Sample Variance
       Penalization", COLT 2009.
    .. [5] Martins & Astudillo, "From Softmax to Sparsemax", ICML 2016.

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
        "radius": [StrOptions({"mono", "multi", "margin"})],
        "smoothing": [StrOptions({"hard", "soft"})],
        "simplex_map": [StrOptions({"softmax", "sparsemax", "hardmax"})],
        "temperature": [
            Interval(Real, 0, None, closed="neither"),
            StrOptions({"auto"}),
        ],
        "lipschitz": "no_validation",  # checked in _check_params
        "radius_method": [StrOptions({"paper", "envelope"})],
        "batch_size": [Interval(Integral, 1, None, closed="left")],
        "noise_augment": ["boolean", Interval(Integral, 1, None, closed="left")],
        "device": [None, str, torch.device, list, tuple],
        "memory_format": [StrOptions({"auto", "contiguous", "channels_last"})],
        "precision": [None, StrOptions({"bfloat16", "float16"})],
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
        simplex_map="softmax",
        temperature=1.0,
        lipschitz=None,
        radius_method="paper",
        batch_size=1024,
        noise_augment=True,
        device=None,
        memory_format="auto",
        precision=None,
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
        self.simplex_map = simplex_map
        self.temperature = temperature
        self.lipschitz = lipschitz
        self.radius_method = radius_method
        self.batch_size = batch_size
        self.noise_augment = noise_augment
        self.device = device
        self.memory_format = memory_format
        self.precision = precision
        self.random_state = random_state
        self.n_jobs = n_jobs
        self.verbose = verbose

    # ------------------------------------------------------------------
    # validation helpers
    # ------------------------------------------------------------------
    def _check_params(self) -> None:
        """Relations and reserved values the constraints cannot express."""
        for name in ("sigma", "n0", "n", "batch_size"):
            # scikit-learn's Interval takes bools for numbers; a flag is a typo
            if isinstance(getattr(self, name), bool | np.bool_):
                raise ValueError(
                    f"The {name!r} parameter of SmoothedClassifier must be a "
                    f"number, not a bool. Got {getattr(self, name)!r} instead."
                )
        self._check_devices()
        inner = self.estimator
        if isinstance(inner, FrozenEstimator):
            inner = inner.estimator
        if not (isinstance(inner, torch.nn.Module) or _is_skorch_net(inner)):
            for name, default in (("precision", None), ("memory_format", "auto")):
                if getattr(self, name) != default:
                    raise ValueError(
                        f"The {name!r} parameter of SmoothedClassifier applies to "
                        f"torch models; it must be {default!r} for "
                        f"{type(inner).__name__}. Got {getattr(self, name)!r} "
                        "instead."
                    )
        if not math.isfinite(self.sigma):
            raise ValueError(
                "The 'sigma' parameter of SmoothedClassifier must be a float in the "
                f"range (0, inf). Got {self.sigma!r} instead."
            )
        lip = self.lipschitz
        if lip is not None and (
            isinstance(lip, bool)
            or (isinstance(lip, Real) and not (0 < lip < math.inf))
            or not isinstance(lip, Real | BaseEstimator)
        ):
            raise ValueError(
                "The 'lipschitz' parameter of SmoothedClassifier must be None, a "
                "float in the range (0, inf) or a LipschitzEstimator. Got "
                f"{lip!r} instead."
            )
        hard_counts = self.smoothing == "hard" or (
            self.simplex_map == "hardmax" and self.temperature != "auto"
        )
        if self.lipschitz is not None and hard_counts:
            raise ValueError(
                "The 'lipschitz' parameter of SmoothedClassifier must be None with "
                "hard counts (smoothing='hard' or simplex_map='hardmax'): a "
                "Lipschitz-aware radius needs bounds on the mean of a Lipschitz "
                "[0, 1]-valued score. Use smoothing='soft' with softmax or sparsemax."
            )
        if (
            self.lipschitz is not None
            and getattr(self.lipschitz, "guaranteed", True) is False
        ):
            raise ValueError(
                "The 'lipschitz' parameter of SmoothedClassifier must be a "
                f"guaranteed upper bound; {type(self.lipschitz).__name__} is an "
                "estimate (guaranteed=False) and cannot be used in a certificate."
            )
        if self.radius == "margin" and self.smoothing != "soft":
            raise ValueError(
                "The 'radius' parameter of SmoothedClassifier may be 'margin' only "
                "with smoothing='soft'."
            )

    def _check_devices(self) -> None:
        """``device`` parses; a list is of one type and agrees with n_jobs."""
        devices = self._devices()
        if not isinstance(self.device, list | tuple):
            return
        types = sorted({d.type for d in devices})
        if len(types) > 1:
            raise ValueError(
                "The 'device' parameter of SmoothedClassifier must list devices "
                "of one type (the noise drawn for a seed differs between device "
                f"types). Got {self.device!r} instead."
            )
        if self.n_jobs is not None and self.n_jobs != len(devices):
            raise ValueError(
                "The 'n_jobs' parameter of SmoothedClassifier must be None or "
                f"{len(devices)} when 'device' lists {len(devices)} devices (one "
                f"worker per device). Got {self.n_jobs!r} instead."
            )

    def _devices(self) -> list[torch.device] | None:
        """``device`` as a list of torch devices (None when it is None)."""
        if self.device is None:
            return None
        listed = isinstance(self.device, list | tuple)
        entries = list(self.device) if listed else [self.device]
        devices = []
        for entry in entries:
            if isinstance(entry, str):
                with suppress(RuntimeError):  # left a str: reported below
                    entry = torch.device(entry)
            if not isinstance(entry, torch.device):
                devices = []
                break
            devices.append(entry)
        if not devices:
            raise ValueError(
                "The 'device' parameter of SmoothedClassifier must be None, a "
                "torch.device or a device string such as 'cpu' or 'cuda:0', or a "
                f"non-empty list of them. Got {self.device!r} instead."
            )
        return devices

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
            adapter = _TorchAdapter(inner, 2, self._module_device(inner))
            classes = self._module_classes(adapter, X, y)
        elif _is_skorch_net(inner):
            classes = self._fit_skorch(inner, frozen, X, y, root, fit_params)
        else:
            classes = self._fit_sklearn(inner, frozen, X, y, root, fit_params)
        self.classes_ = np.asarray(classes)
        self.abstain_label_ = _abstain_label(self.classes_)
        return self

    def _device(self):
        """The single device, or the first of a list (None when unset)."""
        devices = self._devices()
        return None if devices is None else devices[0]

    def _module_device(self, module):
        """The device of a pre-trained module, checked against ``device``."""
        device = self._device()
        module_device = _module_device(module)
        has_params = any(True for _ in module.parameters())
        if (
            device is not None
            and has_params
            and (device.type, device.index or 0)
            != (module_device.type, module_device.index or 0)
        ):
            raise ValueError(
                f"The 'device' parameter of SmoothedClassifier ({device}) differs "
                f"from the module's device ({module_device}); move the module first "
                "(module.to(device))."
            )
        return device

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
        if self.device is not None and any(d.type != "cpu" for d in self._devices()):
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
            if self.device is not None and self._device() != torch.device(net.device):
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
            net.set_params(device=str(self._device()))
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
        options = {"memory_format": self.memory_format, "precision": self.precision}
        if isinstance(inner, torch.nn.Module):
            device = self._module_device(inner)
            return _TorchAdapter(inner, n_classes, device, **options)
        if _is_skorch_net(inner):
            return _SkorchAdapter(inner, n_classes, **options)
        return _SklearnAdapter(est, self.classes_)

    def _adapters(self):
        """The adapter, or one per entry of a device list (copies after the first)."""
        adapter = self._adapter()
        if not isinstance(self.device, list | tuple) or len(self.device) < 2:
            return adapter
        return _replicas(adapter, self._devices())

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

    def _gather(self, X, stages, desc, checkpoint=None):
        """Hard counts of every stage, over ``n_jobs`` workers, checkpointed."""
        from ._parallel import gather_statistics

        with self._progress(X.shape[0], desc) as bar:
            return gather_statistics(
                self._adapters(),
                X,
                stages=[(stage, n_draws, "hard") for stage, n_draws in stages],
                sigma=self.sigma,
                seed=_root_seed(self.random_state),
                batch_size=self.batch_size,
                n_jobs=self.n_jobs,
                checkpoint=checkpoint,
                checkpoint_meta={"smoothing": "hard"},
                seed_from_checkpoint=self.random_state is None,
                progress=None if bar is None else bar.update,
            )

    def _predict_counts(self, X) -> NDArray[np.int64]:
        stats = self._gather(X, [(STAGE_PREDICT, self.n)], "predict")
        return stats[STAGE_PREDICT][0]

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

    def certify(self, X: ArrayLike, checkpoint=None) -> CertificationResult:
        """Certify every input: prediction and certified l2 radius (Cohen's CERTIFY).

        Parameters
        ----------
        X : array-like of shape (n_inputs, \\*input_shape)
        checkpoint : str or path-like, default=None
            File (``.npz``) where the counts of finished inputs are written
            atomically as the run goes (hard smoothing).  If it exists, the
            run resumes from it and redoes no finished input; a checkpoint
            written with another model, ``X``, ``sigma``, ``n0``, ``n`` or
            seed is refused with a ``ValueError`` naming what differs.
            ``alpha``, ``interval`` and ``radius`` act after sampling and may
            change between runs.  The file is kept: the same call again
            returns the stored result without a forward pass.  With
            ``random_state=None`` a resumed run continues the stored seed.

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
        if self.smoothing == "soft":
            if checkpoint is not None:
                raise ValueError(
                    "The 'checkpoint' parameter of SmoothedClassifier.certify "
                    "needs smoothing='hard'; soft certification selects its "
                    "score per input between the two stages and is not "
                    "checkpointed."
                )
            return self._certify_soft(X)
        procedure = _resolve_procedure(self.interval)
        stats = self._gather(
            X,
            [(STAGE_SELECTION, self.n0), (STAGE_ESTIMATION, self.n)],
            "certify",
            checkpoint,
        )
        selection = stats[STAGE_SELECTION][0]
        estimation, estimation_sq = stats[STAGE_ESTIMATION]
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

    def _logit_lipschitz(self) -> float | None:
        """Bound on the l2 Lipschitz constant of the logits (once per call)."""
        if self.lipschitz is None:
            return None
        if isinstance(self.lipschitz, Real):
            return float(self.lipschitz)
        est = self.estimator_
        inner = est.estimator if isinstance(est, FrozenEstimator) else est
        module = getattr(inner, "module_", inner)
        value = _call_lipschitz_estimator(self.lipschitz, module)
        if len(self.classes_) == 2 and self._n_outputs_raw() == 1:
            value *= math.sqrt(2.0)  # one logit l is read as (-l, l)
        return value

    def _n_outputs_raw(self) -> int:
        adapter = self._adapter()
        if not isinstance(adapter, _TorchAdapter):
            return len(self.classes_)
        X = np.zeros((1, *self.input_shape_), dtype=np.float32)
        with torch.inference_mode(), adapter.evaluating():
            out = adapter._forward(
                torch.from_numpy(X).to(adapter.device, adapter.dtype)
            )
        return 1 if out.ndim == 1 or out.shape[-1] == 1 else int(out.shape[-1])

    def _certify_soft(self, X) -> CertificationResult:
        """Soft CERTIFY: (class, map, t) on the n0 draws, bounds on the n draws."""
        from .intervals import EmpiricalBernstein, TopClass
        from .soft import (
            _CODE,
            _CandidateAccumulator,
            _default_grid,
            _LogitAdapter,
            _PerInputScore,
            _select_candidates,
            simplex_map_constant,
        )

        if self.interval is None:
            procedure = TopClass(binomial=EmpiricalBernstein())
        else:
            procedure = _resolve_procedure(self.interval)
        L_logits = self._logit_lipschitz()
        if self.temperature == "auto":
            candidates = _default_grid()
        else:
            candidates = [(self.simplex_map, float(self.temperature))]
        n_classes = len(self.classes_)
        constants = None
        if L_logits is not None:
            constants = np.array(
                [
                    simplex_map_constant(m, n_classes) * t * L_logits
                    for m, t in candidates
                ]
            )
        adapter = _LogitAdapter(self._adapter())
        root = _root_seed(self.random_state)
        n_inputs = X.shape[0]
        acc = _CandidateAccumulator(candidates, n_inputs, n_classes, adapter.device)
        with self._progress(n_inputs, "selection") as bar:
            sample_statistics(
                adapter,
                X,
                self.n0,
                self.sigma,
                stage=STAGE_SELECTION,
                seed=root,
                batch_size=self.batch_size,
                score=acc,
                progress=None if bar is None else bar.update,
            )
        sums = acc.sums.cpu().numpy()
        sums_sq = acc.sums_sq.cpu().numpy()
        if len(candidates) == 1:
            chosen = np.zeros(n_inputs, dtype=np.int64)
        else:
            chosen = _select_candidates(
                sums,
                sums_sq,
                self.n0,
                self.n,
                self.alpha,
                procedure,
                self.radius,
                self.sigma,
                constants,
                self.radius_method,
            )
        rows = np.arange(n_inputs)
        maps = np.array([m for m, _ in candidates])[chosen]
        temps = np.array([t for _, t in candidates], dtype=np.float64)[chosen]
        codes = np.array([_CODE[m] for m in maps], dtype=np.int64)
        score = _PerInputScore(codes, temps, adapter.device)
        with self._progress(n_inputs, "estimation") as bar:
            estimation, estimation_sq = sample_statistics(
                adapter,
                X,
                self.n,
                self.sigma,
                stage=STAGE_ESTIMATION,
                seed=root,
                batch_size=self.batch_size,
                score=score,
                progress=None if bar is None else bar.update,
            )
        return CertificationResult.from_statistics(
            selection=sums[chosen, rows],
            estimation=estimation,
            estimation_sq=estimation_sq,
            n0=self.n0,
            n=self.n,
            sigma=self.sigma,
            alpha=self.alpha,
            classes=self.classes_,
            interval=procedure,
            radius=self.radius,
            smoothing="soft",
            abstain_label=self.abstain_label_,
            lipschitz=None if constants is None else constants[chosen],
            radius_method=self.radius_method,
            score_map=maps,
            temperature=temps,
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


def _call_lipschitz_estimator(estimator, module) -> float:
    """The logits' Lipschitz bound from a guaranteed ``LipschitzEstimator``."""
    if not getattr(estimator, "guaranteed", False):
        raise ValueError(
            "The 'lipschitz' parameter of SmoothedClassifier must give a "
            f"guaranteed upper bound to enter a certificate; {estimator!r} "
            "only estimates the constant (guaranteed=False). Use "
            "SpectralProductLipschitz or ConstantLipschitz."
        )
    method = getattr(estimator, "logit_constant", None)
    if not callable(method):
        raise ValueError(
            "The 'lipschitz' parameter of SmoothedClassifier must be a "
            "LipschitzEstimator or a float > 0. Got "
            f"{estimator!r} instead."
        )
    value = float(np.max(np.asarray(method(module), dtype=np.float64)))
    if not value > 0:
        raise ValueError(
            f"The 'lipschitz' estimator returned {value!r}; a bound > 0 is needed."
        )
    return value


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
