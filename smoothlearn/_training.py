"""Training the base model on noisy inputs, and reading its classes, per backend.

What :meth:`SmoothedClassifier.fit <smoothlearn.SmoothedClassifier.fit>`
does with its ``estimator`` depends on the kind of base model:

* scikit-learn classifier: a clone is fitted on noisy copies of the data;
* skorch net: a clone is fitted with fresh noise on every training batch;
* ``FrozenEstimator`` around either, or a bare :class:`torch.nn.Module`:
  used as is, and only the classes are read (a module's from its output
  width and ``y``).

:func:`fit_base_model` dispatches; the classifier keeps its parameters and
their validation.  The noise comes from the ``STAGE_TRAIN`` streams of the
root seed, apart from the Monte-Carlo streams of certification.
"""

from __future__ import annotations

import warnings

import numpy as np
import torch
from numpy.typing import NDArray
from sklearn.base import clone
from sklearn.frozen import FrozenEstimator
from sklearn.utils import _safe_indexing
from sklearn.utils.validation import check_is_fitted

from ._seeding import STAGE_TRAIN, _block_seed
from .models import _is_skorch_binary, _is_skorch_net, _NoisyCollate, make_adapter

__all__: list[str] = []

# fit_base_model's warnings point at the caller of SmoothedClassifier.fit:
# this module's frames, SmoothedClassifier.fit and scikit-learn's _fit_context
# wrapper lie in between.
_FIT_STACKLEVEL = 6


def fit_base_model(
    estimator,
    X: NDArray,
    y: NDArray,
    *,
    sigma: float,
    noise_augment: bool | int,
    device,
    seed: int,
    fit_params: dict,
) -> tuple[object, NDArray]:
    """Fit (or adopt) the base model of a smoothed classifier.

    Parameters
    ----------
    estimator : object
        The ``estimator`` parameter of the smoothed classifier.
    X : ndarray of shape (n_samples, \\*input_shape)
        Validated training inputs.
    y : ndarray of shape (n_samples,)
        Validated class labels.
    sigma : float
        Standard deviation of the training noise.
    noise_augment : bool or int
        Number of noisy copies of the data (``True`` is one, ``False`` none:
        trained on ``X`` itself, with a warning).
    device : str, torch.device or None
        The ``device`` parameter of the smoothed classifier.
    seed : int
        Root seed of the noise.
    fit_params : dict
        Passed to the base estimator's ``fit``; per-sample arrays are
        repeated along with the noisy copies.

    Returns
    -------
    estimator_ : object
        The fitted base model (the module itself for a bare torch module,
        the ``FrozenEstimator`` for a frozen one).
    classes : ndarray of shape (n_classes,)
        Class labels; output index ``i`` of the base model is ``classes[i]``.
    """
    frozen = isinstance(estimator, FrozenEstimator)
    inner = estimator.estimator if frozen else estimator
    if isinstance(inner, torch.nn.Module):
        # the number of classes is not known yet: only the output width is read
        adapter = make_adapter(inner, (0, 1), device=device)
        return inner, _module_classes(adapter, X, y)
    if _is_skorch_net(inner):
        return _fit_skorch(
            estimator,
            inner,
            frozen,
            X,
            y,
            sigma,
            noise_augment,
            device,
            seed,
            fit_params,
        )
    return _fit_sklearn(
        estimator, inner, frozen, X, y, sigma, noise_augment, device, seed, fit_params
    )


def _training_copies(noise_augment: bool | int) -> int:
    if noise_augment is False:
        warnings.warn(
            "noise_augment=False: the base estimator is trained without noise, so "
            "the smoothed classifier will likely abstain often and certify small "
            "radii. Train with noise_augment=True (Gaussian noise at sigma).",
            UserWarning,
            stacklevel=_FIT_STACKLEVEL,
        )
        return 0
    return int(noise_augment)


def _augment(X, y, fit_params, copies, noisy, sigma, seed):
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
        rng = np.random.default_rng(_block_seed(seed, 0, STAGE_TRAIN, 0))
        noise = rng.standard_normal(X.shape)
        X = (X + sigma * noise).astype(X.dtype, copy=False)
    return X, y, fit_params


def _fit_sklearn(
    estimator, inner, frozen, X, y, sigma, noise_augment, device, seed, fit_params
):
    if device is not None and torch.device(device).type != "cpu":
        raise ValueError(
            "The 'device' parameter of SmoothedClassifier must be None or 'cpu' "
            f"for a scikit-learn base estimator. Got {device!r} instead."
        )
    X2 = X.reshape(X.shape[0], -1)
    if frozen:
        check_is_fitted(inner)
        fitted = estimator
    else:
        copies = _training_copies(noise_augment)
        Xa, ya, params = _augment(
            X2, y, fit_params, max(copies, 1), copies > 0, sigma, seed
        )
        fitted = clone(inner).fit(Xa, ya, **params)
    classes = getattr(fitted, "classes_", None)
    if classes is None:
        classes = np.unique(y)
    return fitted, classes


def _fit_skorch(
    estimator, net, frozen, X, y, sigma, noise_augment, device, seed, fit_params
):
    if frozen:
        if not getattr(net, "initialized_", False):
            raise ValueError(
                "The 'estimator' FrozenEstimator wraps a skorch net that is not "
                "initialized; fit it (or call initialize()) first."
            )
        if device is not None and torch.device(device) != torch.device(net.device):
            raise ValueError(
                f"The 'device' parameter of SmoothedClassifier ({device!r}) "
                f"differs from the frozen net's device ({net.device!r})."
            )
        try:
            classes = np.asarray(net.classes_)
        except AttributeError:
            classes = None
        adapter = make_adapter(net, (0, 1))  # only the output width is read
        return estimator, _module_classes(adapter, X, y, classes)

    net = clone(net)
    if device is not None:
        net.set_params(device=str(device))
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
    copies = _training_copies(noise_augment)
    Xa, ya, params = _augment(
        X.astype(np.float32, copy=False),
        y_enc,
        fit_params,
        max(copies, 1),
        False,
        sigma,
        seed,
    )
    if copies:
        collate = getattr(net, "iterator_train__collate_fn", None)
        net.set_params(
            iterator_train__collate_fn=_NoisyCollate(
                sigma, _block_seed(seed, 0, STAGE_TRAIN, 1), collate
            )
        )
    net.fit(Xa, ya, **params)
    n_out = make_adapter(net, classes).n_outputs(X)
    if n_out != len(classes):
        raise ValueError(
            f"The 'estimator' module returns {n_out} class scores but y has "
            f"{len(classes)} classes."
        )
    return net, classes


def _module_classes(adapter, X, y, classes=None):
    """Classes of a pre-trained torch model from its output width and y."""
    n_out = adapter.n_outputs(X)
    if classes is None:
        labels = np.unique(y)
        if len(labels) == n_out:
            classes = labels
        elif labels.dtype.kind in "iu" and labels.min() >= 0 and labels.max() < n_out:
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
