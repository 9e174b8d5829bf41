"""The smoothed classifier: a scikit-learn meta-estimator around any classifier."""

from __future__ import annotations

import math
from numbers import Integral, Real
from typing import ClassVar

import numpy as np
import torch
from numpy.typing import ArrayLike, NDArray
from sklearn.base import (
    BaseEstimator,
    ClassifierMixin,
    MetaEstimatorMixin,
    _fit_context,
)
from sklearn.frozen import FrozenEstimator
from sklearn.utils._param_validation import HasMethods, Interval, StrOptions
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, validate_data

from ._drivers import (
    _predict_p_values,
    _warn_if_n_too_small_predict,
    certify_hard,
    gather,
    predict_counts,
)
from ._inputs import as_source, is_data_set
from ._soft_paths import (
    _soft_predict_answered,
    _soft_predict_interval,
    _warn_if_n_too_small_soft_predict,
    certify_soft,
    logit_lipschitz,
    soft_predict_statistics,
    soft_procedure,
    soft_selection,
)
from ._training import fit_base_model
from .intervals import PROCEDURES
from .models import (
    _check_devices,
    _is_skorch_net,
    _parse_devices,
    _replicas,
    make_adapter,
)
from .result import (
    CertificationResult,
    _abstain_label,
    _labels,
    _warn_if_n_too_small,
)
from .sampling import (
    _root_seed,
)

__all__ = ["SmoothedClassifier"]


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
        also the number of draws of :meth:`predict` and :meth:`predict_proba`
        (soft smoothing: after the same ``n0`` selection draws as
        :meth:`certify`).
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
        ``TopClass(binomial=BettingInterval())``, the tightest guaranteed
        bound (from the estimation draws in their order, see
        :ref:`betting`), and a procedure whose interval requires counts
        raises.
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
        ``L_score = simplex_map_constant * t * L_logits`` (``inf``, hence
        Cohen's radius, for inputs whose map is hardmax).  For a binary
        module with one logit ``l`` (read as the logits ``(-l, l)``), the
        bound is that of ``l`` and ``L_logits`` is ``sqrt(2)`` times it.  The
        result stores ``L_logits`` in ``lipschitz`` and each input's
        ``L_score`` in ``score_lipschitz``.  None: Cohen's
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
        and :meth:`predict_proba` split the inputs (hard and soft smoothing,
        and the rounds of sequential certification: one engine serves
        them all).  None means 1 unless
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
    ``alpha``.  With soft smoothing, :meth:`predict` answers for the soft
    classifier that :meth:`certify` certifies: the class and (map, t) chosen
    on the same ``n0`` selection draws, returned only if, on ``n`` fresh
    draws, a lower confidence bound at level ``alpha`` on each paired margin
    :math:`(1 + f_A - f_c)/2` exceeds 1/2 (see :meth:`predict`); and
    :meth:`predict_proba` returns the soft class-score means.

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
        _check_devices(self.device, self.n_jobs)
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

    def _validate_X(self, X) -> NDArray:
        check_is_fitted(self)
        self._validate_params()
        self._check_params()
        if is_data_set(X):
            # a torch Dataset or DataLoader: read lazily, a chunk at a time;
            # each loaded item is checked (shape, finite) as it arrives
            X = as_source(X)
        else:
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
        self.estimator_, classes = fit_base_model(
            self.estimator,
            X,
            y,
            sigma=self.sigma,
            noise_augment=self.noise_augment,
            device=self._device(),
            seed=_root_seed(self.random_state),
            fit_params=fit_params,
        )
        self.classes_ = np.asarray(classes)
        self.abstain_label_ = _abstain_label(self.classes_)
        return self

    def _device(self):
        """The single device, or the first of a list (None when unset)."""
        devices = _parse_devices(self.device)
        return None if devices is None else devices[0]

    # ------------------------------------------------------------------
    # Monte Carlo
    # ------------------------------------------------------------------
    def _adapter(self):
        return make_adapter(
            self.estimator_,
            self.classes_,
            device=self._device(),
            memory_format=self.memory_format,
            precision=self.precision,
        )

    def _adapters(self):
        """The adapter, or one per entry of a device list (copies after the first)."""
        adapter = self._adapter()
        if not isinstance(self.device, list | tuple) or len(self.device) < 2:
            return adapter
        return _replicas(adapter, _parse_devices(self.device))

    def _gather(
        self, X, stages, desc, checkpoint=None, seed=None, meta=None, every=10.0
    ):
        """The engine with this classifier's parameters (see ``_drivers.gather``)."""
        return gather(
            self._adapters,
            X,
            stages,
            desc,
            sigma=self.sigma,
            random_state=self.random_state,
            batch_size=self.batch_size,
            n_jobs=self.n_jobs,
            verbose=self.verbose,
            checkpoint=checkpoint,
            seed=seed,
            meta=meta,
            every=every,
        )

    # ------------------------------------------------------------------
    # public prediction API
    # ------------------------------------------------------------------
    def predict(self, X: ArrayLike) -> NDArray:
        r"""The smoothed class, or the abstain label (wrong with probability <= alpha).

        ``smoothing="hard"``: Cohen's PREDICT for
        :math:`g(x) = \arg\max_c P(f(x + d) = c)`.  ``smoothing="soft"``: the
        class of the soft smoothed classifier that :meth:`certify` certifies,
        :math:`g(x) = \arg\max_c \tilde f_c(x)`, by a paired test of its
        candidate class against every other class (see Notes).

        Parameters
        ----------
        X : array-like of shape (n_inputs, \*input_shape), torch Dataset or DataLoader
            The inputs; a map-style ``Dataset`` (items ``x``, ``(x,)`` or
            ``(x, y)``) or a ``DataLoader`` over one (``shuffle=False``) is
            read a chunk at a time, with the same results (see
            :mod:`smoothlearn.datasets`).

        Returns
        -------
        y_pred : ndarray of shape (n_inputs,)
            Labels of ``classes_``; ``abstain_label_`` (``-1`` for integer
            labels) where the test does not separate the class from the
            others at level ``alpha``.

        Notes
        -----
        *Hard* (Cohen's PREDICT): ``n`` draws per input, the same draws as
        :meth:`predict_proba` for the same ``random_state``.  With the two top
        counts :math:`n_A \ge n_B`, the top class is returned when the
        two-sided p-value ``min(1, 2 * BinomCDF(n_B; n_A + n_B, 1/2))`` is at
        most ``alpha``; a class is returned with probability at most
        ``alpha`` of differing from :math:`g(x)`.

        *Soft*: :math:`\tilde f_c(x) = E[S(t\,z(x + d))_c]`, with each
        input's simplex map and temperature :math:`(S, t)` and its candidate
        class :math:`A` (the argmax of the selection means of that score)
        chosen on the ``n0`` selection draws exactly as :meth:`certify`
        chooses them: for the same integer ``random_state`` they are the same
        draws, so the same :math:`(S, t)` (``certify(X).score_map`` and
        ``temperature``) and the same class (``certify(X).prediction`` where
        it does not abstain, the argmax of ``certify(X).selection``).  ``n``
        fresh draws (the predict stage, independent of the selection and
        estimation draws) give, for every class :math:`c \ne A`, the paired
        margins

        .. math::

            D_c = \frac{1 + f_A - f_c}{2} \in [0, 1], \qquad
            E[D_c] = \frac{1 + \tilde f_A(x) - \tilde f_c(x)}{2},

        with :math:`f = S(t\,z(x + d))`, and :math:`A` is returned iff for
        every :math:`c \ne A` the one-sided lower confidence bound on
        :math:`E[D_c]` at level ``alpha`` exceeds 1/2, else the input
        abstains.  The bound is the procedure's interval when it is a
        guaranteed bounded-mean interval (empirical Bernstein by default,
        Hoeffding, the betting confidence sequence), empirical Bernstein
        otherwise; a procedure whose interval requires counts is refused, as
        by :meth:`certify`.

        Validity: given the selection draws, :math:`A` and :math:`(S, t)` are
        fixed and the predict draws i.i.d.  If :math:`A` is not the unique
        maximiser of :math:`\tilde f`, a fixed class :math:`c^* \ne A` has
        :math:`\tilde f_{c^*} \ge \tilde f_A`, i.e. :math:`E[D_{c^*}] \le
        1/2`, and returning :math:`A` needs the bound on :math:`E[D_{c^*}]`
        to exceed 1/2, an event of probability at most ``alpha``.  Only that
        one pair can make an answer wrong, so each test runs at the full
        ``alpha`` with no split over classes: a class is returned with
        probability at most ``alpha`` (total) of differing from
        :math:`g(x)` (conservative, as the intervals are).  With one class
        there is nothing to separate and the class is returned.  Soft
        prediction runs over ``n_jobs`` workers like hard prediction.

        Examples
        --------
        >>> from sklearn.datasets import load_iris
        >>> from sklearn.linear_model import LogisticRegression
        >>> from smoothlearn import SmoothedClassifier
        >>> X, y = load_iris(return_X_y=True)
        >>> clf = SmoothedClassifier(LogisticRegression(max_iter=1000),
        ...                          smoothing="soft", n=1000, random_state=0)
        >>> clf.fit(X, y).predict(X[[0, 50, 100]])
        array([0, 1, 2])
        """
        X = self._validate_X(X)
        if self.smoothing == "soft":
            procedure = soft_procedure(self.interval)
            interval = _soft_predict_interval(procedure)
            if len(self.classes_) > 1:
                _warn_if_n_too_small_soft_predict(self.n, self.alpha, interval)
            s = self._soft_selection(X)
            top, _, d_sums, d_sums_sq = soft_predict_statistics(
                self._gather, X, s, self.n
            )
            answered = _soft_predict_answered(
                top, d_sums, d_sums_sq, self.n, self.alpha, interval
            )
            return _labels(self.classes_, top, ~answered, self.abstain_label_)
        _warn_if_n_too_small_predict(self.n, self.alpha)
        counts = predict_counts(self._gather, X, self.n)
        top, p_value = _predict_p_values(counts)
        return _labels(
            self.classes_, top, ~(p_value <= self.alpha), self.abstain_label_
        )

    def predict_proba(self, X: ArrayLike) -> NDArray[np.float64]:
        r"""Smoothed class scores: hard frequencies, or soft class-score means.

        Parameters
        ----------
        X : array-like of shape (n_inputs, \*input_shape), torch Dataset or DataLoader
            The inputs; a map-style ``Dataset`` (items ``x``, ``(x,)`` or
            ``(x, y)``) or a ``DataLoader`` over one (``shuffle=False``) is
            read a chunk at a time, with the same results (see
            :mod:`smoothlearn.datasets`).

        Returns
        -------
        proba : ndarray of shape (n_inputs, n_classes)
            ``smoothing="hard"``: the fraction of ``n`` noisy draws whose
            base prediction is each class, estimating ``P(f(x + d) = c)``;
            rows sum to 1.  ``smoothing="soft"``: the mean over ``n`` draws of
            the class scores :math:`S(t\,z(x + d))_c`, with each input's
            :math:`(S, t)` chosen on the ``n0`` selection draws as
            :meth:`certify` chooses it, estimating
            :math:`\tilde f_c(x) = E[S(t\,z(x + d))_c]`, the scores whose
            argmax :meth:`certify` certifies; rows sum to 1 up to rounding.

        Notes
        -----
        Point estimates, with no confidence statement.  They come from the
        same draws as :meth:`predict` for the same integer ``random_state``
        (soft: the same selection and predict draws), so where
        :meth:`predict` answers, its class is the argmax of this row (soft:
        its lower bound on each margin is at most the margin's empirical
        mean, so the class's mean is the strict maximum).
        """
        X = self._validate_X(X)
        if self.smoothing == "soft":
            _soft_predict_interval(soft_procedure(self.interval))  # as predict
            s = self._soft_selection(X)
            _, sums, _, _ = soft_predict_statistics(self._gather, X, s, self.n)
            return sums / float(self.n)
        counts = predict_counts(self._gather, X, self.n)
        return counts / float(self.n)

    def certify(
        self, X: ArrayLike, checkpoint=None, checkpoint_every: float = 10.0
    ) -> CertificationResult:
        """Certify every input: prediction and certified l2 radius (Cohen's CERTIFY).

        Parameters
        ----------
        X : array-like of shape (n_inputs, \\*input_shape), torch Dataset or DataLoader
            The inputs; a map-style ``Dataset`` (items ``x``, ``(x,)`` or
            ``(x, y)``) or a ``DataLoader`` over one (``shuffle=False``) is
            read a chunk at a time, with the same results (see
            :mod:`smoothlearn.datasets`).
        checkpoint : str or path-like, default=None
            File (``.npz``) where the statistics of finished inputs are
            written atomically as the run goes.  If it exists, the run
            resumes from it and redoes no finished input; a checkpoint
            written with another model, ``X``, ``sigma``, ``n0``, ``n`` or
            seed is refused with a ``ValueError`` naming what differs.  With
            hard smoothing ``alpha``, ``interval`` and ``radius`` act after
            sampling and may change between runs.  With soft smoothing the
            selection stage (every candidate's sums) is stored first; the
            estimation stage records a hash of the (map, t) chosen from it,
            which a resumed run recomputes from the stored selection sums, so
            a change that alters the choice (``alpha``, ``interval``,
            ``radius``, ``lipschitz``...) is refused once estimation draws
            are stored.  The file is kept: the same call again
            returns the stored result without a forward pass.  With
            ``random_state=None`` a resumed run continues the stored seed.
        checkpoint_every : float, default=10.0
            With a checkpoint, about how many seconds of sampling a killed
            run may lose, whatever ``n``, the model's speed or the number of
            inputs: the run sizes its work by the throughput it measures
            and rewrites the file about this often, storing an input whose
            own draws take longer part-way (its accumulated statistics and
            the state of its noise generator), so resuming stays exact.  In
            parallel (``n_jobs > 1``, Dask, several devices) the work runs
            in rounds of one such unit per worker, stored after each round.
            Does not change the result.

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
        if (
            isinstance(checkpoint_every, bool)
            or not isinstance(checkpoint_every, Real)
            or not 0 < checkpoint_every < math.inf
        ):
            raise ValueError(
                "The 'checkpoint_every' parameter of SmoothedClassifier.certify "
                f"must be a float > 0 (seconds). Got {checkpoint_every!r} instead."
            )
        if self.smoothing == "soft":
            return certify_soft(
                self._gather,
                X,
                self._soft_selection(X, checkpoint, checkpoint_every),
                n0=self.n0,
                n=self.n,
                sigma=self.sigma,
                alpha=self.alpha,
                classes=self.classes_,
                radius=self.radius,
                abstain_label=self.abstain_label_,
                radius_method=self.radius_method,
                checkpoint=checkpoint,
                every=checkpoint_every,
            )
        return certify_hard(
            self._gather,
            X,
            n0=self.n0,
            n=self.n,
            sigma=self.sigma,
            alpha=self.alpha,
            classes=self.classes_,
            interval=self.interval,
            radius=self.radius,
            abstain_label=self.abstain_label_,
            checkpoint=checkpoint,
            every=checkpoint_every,
        )

    def _soft_selection(self, X, checkpoint=None, every=10.0):
        """Soft selection pass of :meth:`certify` and :meth:`predict` (same draws)."""
        return soft_selection(
            self._gather,
            X,
            procedure=soft_procedure(self.interval),
            L_logits=_logit_lipschitz_of(self),
            n_classes=len(self.classes_),
            simplex_map=self.simplex_map,
            temperature=self.temperature,
            n0=self.n0,
            n=self.n,
            alpha=self.alpha,
            radius=self.radius,
            sigma=self.sigma,
            radius_method=self.radius_method,
            random_state=self.random_state,
            checkpoint=checkpoint,
            every=every,
        )

    def score(self, X: ArrayLike, y: ArrayLike, sample_weight=None) -> float:
        """Accuracy of :meth:`predict`; an abstention counts as an error.

        With ``smoothing="soft"`` this is the accuracy of the soft smoothed
        classifier's answers (:meth:`predict`), the classifier that
        :meth:`certify` certifies.

        Parameters
        ----------
        X : array-like of shape (n_inputs, \\*input_shape), torch Dataset or DataLoader
            The inputs; a map-style ``Dataset`` (items ``x``, ``(x,)`` or
            ``(x, y)``) or a ``DataLoader`` over one (``shuffle=False``) is
            read a chunk at a time, with the same results (see
            :mod:`smoothlearn.datasets`).
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


def _engine_fields(clf: SmoothedClassifier, X, stages, *, seed: int, desc: str):
    """The engine of a fitted classifier (its workers, devices, progress).

    For other modules (sequential certification): ``stages`` as in
    :func:`~smoothlearn._parallel.gather_fields`; returns its fields.
    """
    return clf._gather(X, stages, desc, seed=seed)


def _check_fitted_input(clf: SmoothedClassifier, X: ArrayLike) -> NDArray:
    """``X`` validated for a fitted classifier, for the modules that take one.

    The sequential certifier and the attacks check their inputs as the
    classifier's own methods do (fitted, parameters valid, inputs of the
    shape seen at fit) through this function, never through its methods.

    Returns
    -------
    X : ndarray of shape (n_inputs, \\*input_shape) or InputSource
        Float64 or float32; a torch Dataset or DataLoader comes back as a
        lazily loaded :class:`~smoothlearn.datasets.InputSource` (its first
        item's shape checked, the others checked as they are read).
    """
    return clf._validate_X(X)


def _logit_lipschitz_of(clf: SmoothedClassifier) -> float | None:
    """The guaranteed constant of a fitted classifier's logits, or None.

    What its own soft certification uses (a number, or a guaranteed
    estimator's bound of the fitted module, times sqrt(2) for one logit), for
    the modules that certify with a fitted classifier, never through its
    methods.
    """
    return logit_lipschitz(
        clf.lipschitz, clf.estimator_, clf.input_shape_, len(clf.classes_), clf._adapter
    )
