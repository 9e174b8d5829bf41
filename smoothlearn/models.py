"""Adapters between the Monte-Carlo engine and the base classifier.

The sampler (:mod:`smoothlearn.sampling`) never talks to a model directly: it
asks an adapter for class indices (or score vectors) of a batch of noisy
inputs held as a :class:`torch.Tensor` on the adapter's device.  The rest of
the package goes through the same adapters: soft smoothing reads logits
(``predict_logits``), the attacks a differentiable log-probability
(``log_probability``), class discovery the number of outputs
(``n_outputs``).  :func:`make_adapter` builds the adapter of a fitted base
model from public attributes only.  One small adapter per kind of base
classifier:

* :class:`_TorchAdapter` for a bare :class:`torch.nn.Module`, used as is;
* :class:`_SkorchAdapter` for a fitted skorch ``NeuralNet`` (its ``module_``);
* :class:`_SklearnAdapter` for any scikit-learn classifier with ``predict``
  (the batch makes one round trip through numpy on the CPU: unavoidable, since
  scikit-learn models compute on numpy arrays).

Output index ``i`` of a torch or skorch model is the class ``classes_[i]`` of
the :class:`~smoothlearn.SmoothedClassifier`; a scikit-learn model's labels
are mapped to indices through its own ``classes_``.
"""

from __future__ import annotations

import sys
from contextlib import contextmanager
from functools import partial

import numpy as np
import torch
from numpy.typing import NDArray
from sklearn.frozen import FrozenEstimator

from ._seeding import _block_seed

__all__: list[str] = []


def _is_skorch_net(obj) -> bool:
    """Whether ``obj`` is a skorch ``NeuralNet`` (without importing skorch)."""
    skorch = sys.modules.get("skorch")
    return skorch is not None and isinstance(obj, skorch.NeuralNet)


def _is_skorch_binary(obj) -> bool:
    skorch = sys.modules.get("skorch")
    return skorch is not None and isinstance(obj, skorch.NeuralNetBinaryClassifier)


def _criterion(net):
    """The fitted criterion of a skorch net (unwrapped from ``torch.compile``)."""
    criterion = getattr(net, "criterion_", None)
    return getattr(criterion, "_orig_mod", criterion)


def _auto_nonlinearity(net) -> bool:
    nonlin = net.predict_nonlinearity
    return isinstance(nonlin, str) and nonlin == "auto"


def _sigmoid_2d(logit: torch.Tensor) -> torch.Tensor:
    return _probability_2d(torch.sigmoid(logit))


def _probability_2d(prob: torch.Tensor) -> torch.Tensor:
    return torch.stack((1 - prob, prob), 1)


def _identity(out: torch.Tensor) -> torch.Tensor:
    return out


def _skorch_nonlinearity(net):
    """The map a skorch net's ``predict_proba`` applies to its module's output.

    skorch's documented ``predict_nonlinearity``: a callable is used as is,
    None is the identity, and ``"auto"`` is inferred from the criterion
    (softmax for ``CrossEntropyLoss``, sigmoid then the two columns
    ``(1 - p, p)`` for ``BCEWithLogitsLoss``, the two columns for
    ``BCELoss``, the identity otherwise).  Read from the public ``criterion_``
    (skorch itself falls back to the identity for a net with several
    criteria).
    """
    nonlin = net.predict_nonlinearity
    if nonlin is None:
        return _identity
    if isinstance(nonlin, str) and nonlin == "auto":
        criterion = _criterion(net)
        if isinstance(criterion, torch.nn.CrossEntropyLoss):
            return partial(torch.softmax, dim=-1)
        if isinstance(criterion, torch.nn.BCEWithLogitsLoss):
            return _sigmoid_2d
        if isinstance(criterion, torch.nn.BCELoss):
            return _probability_2d
        return _identity
    if not callable(nonlin):
        raise TypeError("predict_nonlinearity has to be a callable, 'auto' or None")
    return nonlin


def _module_device(module: torch.nn.Module) -> torch.device:
    """Device of a module's first parameter or buffer; CPU if it has none."""
    for tensor in (*module.parameters(), *module.buffers()):
        return tensor.device
    return torch.device("cpu")


def _module_dtype(module: torch.nn.Module) -> torch.dtype:
    """Floating dtype of a module's first floating parameter; float32 if none."""
    for tensor in (*module.parameters(), *module.buffers()):
        if tensor.is_floating_point():
            return tensor.dtype
    return torch.float32


@contextmanager
def _eval_mode(module: torch.nn.Module):
    """Put every submodule in eval mode; restore each one's own state on exit."""
    states = [(m, m.training) for m in module.modules()]
    module.eval()
    try:
        yield
    finally:
        for m, training in states:
            m.training = training


class _BaseAdapter:
    """What the sampler needs from a base classifier.

    Attributes
    ----------
    device : torch.device
        Where batches must live (noise is generated there).
    dtype : torch.dtype
        Floating dtype of the batches.
    n_classes : int
        Number of classes ``K``; class indices are in ``range(K)``.
    """

    device: torch.device = torch.device("cpu")
    dtype: torch.dtype = torch.float32
    n_classes: int
    #: Whether ``log_probability`` has gradients with respect to the batch.
    differentiable: bool = False

    def predict_classes(self, batch: torch.Tensor) -> torch.Tensor:
        """Class indices of a batch: int64 tensor of shape ``(B,)`` on ``device``."""
        raise NotImplementedError

    def predict_scores(self, batch: torch.Tensor) -> torch.Tensor:
        """Score vectors of a batch: tensor of shape ``(B, K)`` on ``device``."""
        raise NotImplementedError

    def predict_logits(self, batch: torch.Tensor) -> torch.Tensor:
        """Logits of a batch, the input of soft smoothing's simplex map: ``(B, K)``."""
        raise NotImplementedError

    def log_probability(self, batch: torch.Tensor) -> torch.Tensor:
        """Differentiable float64 log-probabilities of a batch: ``(B, K)``."""
        raise ValueError(
            f"{type(self).__name__} has no gradients: attacks need a torch module "
            "or a skorch net."
        )

    def n_outputs(self, X: NDArray) -> int:
        """Number of class scores per input, read on the input ``X[:1]``.

        The width of ``predict_scores``: 2 for a module with one logit.
        """
        with torch.inference_mode(), self.evaluating():
            probe = torch.from_numpy(np.ascontiguousarray(X[:1])).to(
                self.device, self.dtype
            )
            scores = self.predict_scores(probe)
        if scores.ndim != 2 or scores.shape[0] != 1:
            raise ValueError(
                "The 'estimator' must return class scores of shape (batch, "
                f"n_classes) or (batch,); got {tuple(scores.shape)} for one input."
            )
        return int(scores.shape[1])

    def n_raw_outputs(self, X: NDArray) -> int:
        """Width of the model's own output on ``X[:1]``: 1 for a single logit.

        A model that gives one score per class returns ``n_classes``.
        """
        return self.n_classes

    @contextmanager
    def evaluating(self):
        """Context in which the model predicts (eval mode, restored on exit)."""
        yield


def _first_output(out):
    if isinstance(out, tuple | list):
        out = out[0]
    return out


class _TorchAdapter(_BaseAdapter):
    """A bare :class:`torch.nn.Module` returning logits of shape ``(B, K)``.

    A module with a single output (shape ``(B,)`` or ``(B, 1)``) is a binary
    classifier returning one logit: class 1 where it is positive.  A module
    returning a tuple is read through its first element.
    """

    differentiable = True

    def __init__(self, module: torch.nn.Module, n_classes: int, device=None):
        self.module = module
        self.n_classes = int(n_classes)
        self.device = _module_device(module) if device is None else torch.device(device)
        self.dtype = _module_dtype(module)

    def _forward(self, batch):
        return _first_output(self.module(batch))

    def predict_logits(self, batch):
        """The module's raw output ``(B, K)``; one logit ``l`` becomes ``(-l, l)``."""
        out = self._forward(batch)
        if out.ndim == 1 or (out.ndim == 2 and out.shape[1] == 1):
            logit = out.reshape(-1)
            return torch.stack((-logit, logit), dim=1)
        return out.reshape(out.shape[0], -1)

    def predict_scores(self, batch):
        return self.predict_logits(batch)

    def log_probability(self, batch):
        """``log_softmax`` of the logits, in float64 so that gradients survive."""
        return torch.log_softmax(self.predict_logits(batch).double(), dim=1)

    def n_raw_outputs(self, X):
        with torch.inference_mode(), self.evaluating():
            out = self._forward(
                torch.from_numpy(np.ascontiguousarray(X[:1])).to(
                    self.device, self.dtype
                )
            )
        return 1 if out.ndim == 1 or out.shape[-1] == 1 else int(out.shape[-1])

    def predict_classes(self, batch):
        out = self._forward(batch)
        if out.ndim == 1 or (out.ndim == 2 and out.shape[1] == 1):
            return (out.reshape(-1) > 0).long()
        # torch.argmax returns the first maximal index: ties go to the lowest class.
        return out.reshape(out.shape[0], -1).argmax(dim=1)

    @contextmanager
    def evaluating(self):
        with _eval_mode(self.module):
            yield


class _SkorchAdapter(_TorchAdapter):
    """A fitted skorch net: its ``module_`` on ``net.device``, read like skorch.

    The class is the argmax of the module output, as in
    ``NeuralNetClassifier.predict``; for a ``NeuralNetBinaryClassifier`` it is
    ``sigmoid(logit) > net.threshold``.  ``predict_scores`` applies the net's
    ``predict_nonlinearity`` (probabilities, as ``predict_proba`` returns);
    ``predict_logits`` is the module's raw output.
    """

    def __init__(self, net, n_classes: int):
        self.net = net
        module = net.module_
        super().__init__(module, n_classes, device=torch.device(net.device))
        self.binary = _is_skorch_binary(net)

    def _forward(self, batch):
        return _first_output(self.net.infer(batch))

    def predict_scores(self, batch):
        return _skorch_nonlinearity(self.net)(self._forward(batch))

    def log_probability(self, batch):
        """Log-probabilities of the net, differentiable, float64.

        With ``predict_nonlinearity="auto"`` and a cross-entropy criterion,
        ``log_softmax`` of the module's logits; with a BCE-with-logits
        criterion, ``(logsigmoid(-l), logsigmoid(l))`` of the logit ``l``;
        otherwise ``log`` of what ``predict_proba`` returns.
        """
        criterion = _criterion(self.net)
        if _auto_nonlinearity(self.net) and isinstance(
            criterion, torch.nn.BCEWithLogitsLoss
        ):
            logit = self._forward(batch).reshape(-1).double()
            return torch.stack(
                (
                    torch.nn.functional.logsigmoid(-logit),
                    torch.nn.functional.logsigmoid(logit),
                ),
                dim=1,
            )
        if _auto_nonlinearity(self.net) and isinstance(
            criterion, torch.nn.CrossEntropyLoss
        ):
            out = self._forward(batch)
            return torch.log_softmax(out.reshape(out.shape[0], -1).double(), 1)
        p = self.predict_scores(batch).double()
        return torch.log(p.reshape(p.shape[0], -1).clamp_min(1e-300))

    def predict_classes(self, batch):
        if self.binary:
            proba = torch.sigmoid(self._forward(batch).reshape(-1))
            return (proba > self.net.threshold).long()
        return super().predict_classes(batch)


class _SklearnAdapter(_BaseAdapter):
    """A fitted scikit-learn classifier, fed flattened float64 numpy batches.

    Its predicted labels are mapped to indices of ``classes`` (sorted, as a
    scikit-learn ``classes_``).  Batches are flattened to ``(B, n_features)``.
    """

    device = torch.device("cpu")
    dtype = torch.float64

    def __init__(self, estimator, classes: NDArray):
        self.estimator = estimator
        self.classes = np.asarray(classes)
        self.n_classes = len(self.classes)
        self._sorter = np.argsort(self.classes, kind="stable")

    def _to_numpy(self, batch):
        return batch.reshape(batch.shape[0], -1).numpy()

    def predict_classes(self, batch):
        labels = np.asarray(self.estimator.predict(self._to_numpy(batch)))
        pos = np.searchsorted(self.classes, labels, sorter=self._sorter)
        pos = np.minimum(pos, self.n_classes - 1)
        idx = self._sorter[pos]
        if not np.all(self.classes[idx] == labels):
            raise ValueError(
                "The 'estimator' predicted labels that are not in its classes_."
            )
        return torch.from_numpy(idx.astype(np.int64, copy=False))

    def predict_scores(self, batch):
        if not hasattr(self.estimator, "predict_proba"):
            raise ValueError(
                f"The 'estimator' {type(self.estimator).__name__} has no "
                "predict_proba, so it gives no score vectors."
            )
        proba = self.estimator.predict_proba(self._to_numpy(batch))
        return torch.from_numpy(np.ascontiguousarray(proba, dtype=np.float64))

    def predict_logits(self, batch):
        """``log(predict_proba)``: softmax at temperature 1 gives it back."""
        proba = self.predict_scores(batch).to(torch.float64)
        return torch.log(proba.clamp(min=1e-300))


def _check_module_device(module: torch.nn.Module, device) -> torch.device | None:
    """``device`` (None: the module's own), refused if it differs from the module's."""
    device = None if device is None else torch.device(device)
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


def make_adapter(estimator, classes, *, device=None) -> _BaseAdapter:
    """The adapter of a fitted base model.

    Reads public attributes only, so any module can build the adapter of a
    fitted :class:`~smoothlearn.SmoothedClassifier` from its fitted
    attributes: ``make_adapter(clf.estimator_, clf.classes_,
    device=clf.device)``.

    Parameters
    ----------
    estimator : object
        The fitted base model: a :class:`torch.nn.Module`, a skorch net, a
        scikit-learn classifier, or a ``FrozenEstimator`` around one.
    classes : array-like of shape (n_classes,)
        The class labels; output index ``i`` is ``classes[i]``.
    device : str or torch.device, default=None
        Where a bare module computes: None means its own device; another
        device than the module's is refused.

    Returns
    -------
    adapter : _BaseAdapter
    """
    inner = estimator.estimator if isinstance(estimator, FrozenEstimator) else estimator
    if isinstance(inner, torch.nn.Module):
        return _TorchAdapter(inner, len(classes), _check_module_device(inner, device))
    if _is_skorch_net(inner):
        return _SkorchAdapter(inner, len(classes))
    return _SklearnAdapter(estimator, classes)


class _NoisyCollate:
    """DataLoader ``collate_fn`` adding fresh Gaussian noise to training batches.

    Used as ``iterator_train__collate_fn`` of the skorch net that
    :meth:`SmoothedClassifier.fit <smoothlearn.SmoothedClassifier.fit>` trains,
    so every epoch sees new noise and the module itself is left unchanged.
    The batch is collated by ``collate_fn`` (default: torch's
    ``default_collate``) and must be ``(X, y)`` with ``X`` a floating tensor.

    Parameters
    ----------
    sigma : float
        Standard deviation of the noise.
    seed : int
        Seed of the torch generator (a DataLoader worker ``w`` mixes ``w`` in).
    collate_fn : callable, default=None
        The collate function to wrap.
    """

    def __init__(self, sigma: float, seed: int, collate_fn=None):
        self.sigma = sigma
        self.seed = seed
        self.collate_fn = collate_fn
        self._generator = None
        self._worker = None

    def _get_generator(self):
        info = torch.utils.data.get_worker_info()
        worker = None if info is None else info.id
        if self._generator is None or worker != self._worker:
            self._generator = torch.Generator()
            seed = self.seed if worker is None else _block_seed(self.seed, worker, 0, 0)
            self._generator.manual_seed(seed)
            self._worker = worker
        return self._generator

    def __call__(self, items):
        collate = self.collate_fn
        if collate is None:
            collate = torch.utils.data.default_collate
        batch = collate(items)
        X, *rest = batch
        if not (isinstance(X, torch.Tensor) and X.is_floating_point()):
            raise TypeError(
                "Noise augmentation needs training batches whose inputs are a "
                f"floating torch.Tensor; got {type(X).__name__}."
            )
        noise = torch.randn(X.shape, generator=self._get_generator(), dtype=X.dtype)
        noise = noise.to(X.device)
        return (X + self.sigma * noise, *rest)
