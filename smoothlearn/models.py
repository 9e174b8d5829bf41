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

A torch adapter also carries how the model is run, none of which changes the
noise or the inputs' values:

* ``memory_format``: ``"channels_last"`` passes 4-D image batches to the
  module in :data:`torch.channels_last` layout (same values, other strides;
  torch reorders the convolution weights at each call, the module itself is
  never converted), ``"auto"`` lets :meth:`_TorchAdapter.choose_memory_format`
  time both layouts once per module and input shape;
* ``precision``: the forward pass runs under :func:`torch.autocast` in
  bfloat16 or float16, and its outputs are cast back, exactly, to the
  model's dtype;
* :meth:`_TorchAdapter.replicate` copies the model to another device, one
  copy per worker of a device list.
"""

from __future__ import annotations

import copy
import statistics
import sys
import time
import warnings
import weakref
from contextlib import contextmanager, suppress
from functools import partial

import numpy as np
import torch
from numpy.typing import NDArray
from sklearn.frozen import FrozenEstimator

from ._seeding import _block_seed

__all__: list[str] = []

#: Values of the ``memory_format`` parameter.
MEMORY_FORMATS = ("auto", "contiguous", "channels_last")

#: Values of the ``precision`` parameter (None: the model's own dtype).
PRECISIONS = {"bfloat16": torch.bfloat16, "float16": torch.float16}

#: The layout probe: seconds its forward passes should take in all, or the
#: share of the call's own forward passes if that is more; the smallest
#: number of rows it times, its rounds, and the margin by which
#: channels_last must win (a tie keeps the default layout, so two runs of a
#: model where both are as fast do not flip between the two).
_PROBE_SECONDS = 2.0
_PROBE_SHARE = 0.05
_PROBE_MIN_ROWS = 4
_PROBE_ROUNDS = 3
_PROBE_MARGIN = 0.05

#: The layout chosen per module, input shape, device, dtype and precision in
#: this process: ``module -> {key: "contiguous" | "channels_last"}``.  A
#: module keeps its layout for the life of the process, so every later call
#: runs the same floating-point computation (the layouts may round the last
#: bits of a convolution differently).
_LAYOUTS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


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


def _synchronize(device: torch.device) -> None:
    """Wait for the work queued on ``device`` (timing only; a no-op on CPU)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type != "cpu":
        sync = getattr(getattr(torch, device.type, None), "synchronize", None)
        if callable(sync):
            sync()


def _check_precision(precision, device: torch.device, dtype: torch.dtype) -> None:
    """Refuse a ``precision`` that autocast cannot run on ``device``."""
    if precision is None:
        return
    if precision not in PRECISIONS:
        raise ValueError(
            "The 'precision' parameter must be None, 'bfloat16' or 'float16'. Got "
            f"{precision!r} instead."
        )
    if dtype != torch.float32:
        raise ValueError(
            f"The 'precision' parameter ({precision!r}) needs a float32 model: "
            f"autocast leaves {dtype} computations unchanged. Got a {dtype} model."
        )
    if not torch.amp.is_autocast_available(device.type):
        raise ValueError(
            f"The 'precision' parameter ({precision!r}) needs torch.autocast, "
            f"which is not available on the {device.type!r} device."
        )
    # torch warns and disables autocast for a dtype the device does not
    # support (e.g. float64), or raises (bfloat16 on a pre-Ampere GPU).
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        try:
            torch.autocast(device.type, dtype=PRECISIONS[precision])
        except (RuntimeError, UserWarning) as exc:
            raise ValueError(
                f"The 'precision' parameter ({precision!r}) is not supported by "
                f"torch.autocast on the {device.type!r} device: {exc}"
            ) from exc


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
    memory_format : {"contiguous", "channels_last", "auto"}
        Layout in which 4-D batches reach the model (see the module docstring).
    """

    device: torch.device = torch.device("cpu")
    dtype: torch.dtype = torch.float32
    n_classes: int
    #: Whether ``log_probability`` has gradients with respect to the batch.
    differentiable: bool = False
    memory_format: str = "contiguous"

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

    def replicate(self, device) -> _BaseAdapter:
        """An adapter computing the same function on ``device`` (one per worker)."""
        if torch.device(device).type != "cpu":
            raise ValueError(
                f"The 'device' parameter must be 'cpu' for this model. Got {device!r} "
                "instead."
            )
        return self


def _first_output(out):
    if isinstance(out, tuple | list):
        out = out[0]
    return out


class _TorchAdapter(_BaseAdapter):
    """A bare :class:`torch.nn.Module` returning logits of shape ``(B, K)``.

    A module with a single output (shape ``(B,)`` or ``(B, 1)``) is a binary
    classifier returning one logit: class 1 where it is positive.  A module
    returning a tuple is read through its first element.

    Parameters
    ----------
    module : torch.nn.Module
    n_classes : int
    device : str or torch.device, default=None
        None: the device of the module's parameters.
    memory_format : {"contiguous", "channels_last", "auto"}, default="contiguous"
        Layout of 4-D batches; other batches are passed as they are.
        ``"auto"`` is resolved by :meth:`choose_memory_format` (the engine
        calls it before its first batch) and runs as ``"contiguous"`` until
        then.
    precision : {None, "bfloat16", "float16"}, default=None
        Run the forward pass under :func:`torch.autocast` in that dtype.
    """

    differentiable = True

    def __init__(
        self,
        module: torch.nn.Module,
        n_classes: int,
        device=None,
        *,
        memory_format: str = "contiguous",
        precision: str | None = None,
    ):
        if memory_format not in MEMORY_FORMATS:
            raise ValueError(
                "The 'memory_format' parameter must be one of "
                f"{', '.join(map(repr, MEMORY_FORMATS))}. Got {memory_format!r} "
                "instead."
            )
        self.module = module
        self.n_classes = int(n_classes)
        self.device = _module_device(module) if device is None else torch.device(device)
        self.dtype = _module_dtype(module)
        self.memory_format = memory_format
        _check_precision(precision, self.device, self.dtype)
        self.precision = precision

    def _call(self, batch):
        return self.module(batch)

    def _run(self, batch):
        """The module's first output on a batch already in its layout."""
        if self.precision is None:
            return _first_output(self._call(batch))
        with torch.autocast(self.device.type, dtype=PRECISIONS[self.precision]):
            out = _first_output(self._call(batch))
        # Exact: every bfloat16 or float16 value is a float32 value.
        return out.to(self.dtype) if out.is_floating_point() else out

    def _forward(self, batch):
        if batch.ndim == 4 and self.memory_format == "channels_last":
            batch = batch.contiguous(memory_format=torch.channels_last)
        return self._run(batch)

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

    def choose_memory_format(
        self, batch: torch.Tensor, total_rows: int | None = None
    ) -> str:
        """Resolve ``memory_format="auto"`` on a representative noisy batch.

        For a 4-D ``batch``, the layout already chosen for this module, input
        shape, device, dtype and precision in this process, or else the one
        a short timing probe finds faster: after one warm-up pass in each
        layout, :data:`_PROBE_ROUNDS` interleaved rounds time both layouts
        (the thread's CPU time on a CPU with one torch thread, else the wall
        clock, the device synchronized) on the same rows, and channels_last
        is kept when its median is at least :data:`_PROBE_MARGIN` below the
        contiguous one.  The rows are as many as fit
        :data:`_PROBE_SECONDS` in all, or :data:`_PROBE_SHARE` of the
        call's ``total_rows`` forward rows if that is more (at least
        :data:`_PROBE_MIN_ROWS`, at most the batch).  A module that fails
        on a channels_last batch keeps the default layout.  Other batches:
        ``"contiguous"``.  Sets and returns ``memory_format``; call it in
        eval and inference mode.

        Parameters
        ----------
        batch : torch.Tensor
            Noisy inputs like the call's (the probe's rows are its first).
        total_rows : int, default=None
            Rows the call will run through the model; None: ``len(batch)``.
        """
        if self.memory_format != "auto":
            return self.memory_format
        if batch.ndim != 4:
            self.memory_format = "contiguous"
            return self.memory_format
        key = (tuple(batch.shape[1:]), str(self.device), self.dtype, self.precision)
        chosen = _LAYOUTS.setdefault(self.module, {})
        if key not in chosen:
            rows = batch.shape[0] if total_rows is None else total_rows
            chosen[key] = self._probe_memory_format(batch, rows)
        self.memory_format = chosen[key]
        return self.memory_format

    def _probe_memory_format(self, batch: torch.Tensor, total_rows: int) -> str:
        # On a CPU with one torch thread, all the work is this thread's: its
        # CPU time does not swing with the load of the machine's other
        # processes, as the wall clock does.  Otherwise the wall clock (with
        # several threads, what the user waits for).
        clock = time.perf_counter
        if self.device.type == "cpu" and torch.get_num_threads() == 1:
            clock = time.thread_time

        def seconds(x):
            _synchronize(self.device)
            start = clock()
            self._run(x)
            _synchronize(self.device)
            return clock() - start

        last = batch.contiguous(memory_format=torch.channels_last)
        small = min(batch.shape[0], _PROBE_MIN_ROWS)
        seconds(batch[:small])  # one-time costs (kernel selection, caches)
        try:
            seconds(last[:small])
        except Exception:  # e.g. a .view() that needs the default strides
            return "contiguous"
        per_row = max(seconds(batch[:small]) / small, 1e-9)
        # Rows for 2 warm-ups and 2 x _PROBE_ROUNDS timed passes: what fits
        # _PROBE_SECONDS, or _PROBE_SHARE of the whole call if that is more
        # (a long run affords a probe on full batches, the most faithful).
        budget = max(_PROBE_SECONDS, _PROBE_SHARE * per_row * total_rows)
        passes = 2 + 2 * _PROBE_ROUNDS
        rows = int(min(batch.shape[0], max(small, budget / (passes * per_row))))
        x, x_last = batch[:rows], last[:rows]
        if rows > small:  # first-call costs of this batch size, in both layouts
            seconds(x)
            seconds(x_last)
        default, channels_last = [], []
        for _ in range(_PROBE_ROUNDS):
            default.append(seconds(x))
            channels_last.append(seconds(x_last))
        faster = statistics.median(channels_last) < (1 - _PROBE_MARGIN) * (
            statistics.median(default)
        )
        return "channels_last" if faster else "contiguous"

    def replicate(self, device) -> _TorchAdapter:
        """This adapter on ``device``, with its own deep copy of the module.

        The copy keeps the module's weights, buffers and train/eval flags;
        the original is not touched.
        """
        replica = copy.copy(self)
        replica.device = torch.device(device)
        replica.module = copy.deepcopy(self.module).to(replica.device)
        _check_precision(self.precision, replica.device, self.dtype)
        return replica


class _SkorchAdapter(_TorchAdapter):
    """A fitted skorch net: its ``module_`` on ``net.device``, read like skorch.

    The class is the argmax of the module output, as in
    ``NeuralNetClassifier.predict``; for a ``NeuralNetBinaryClassifier`` it is
    ``sigmoid(logit) > net.threshold``.  ``predict_scores`` applies the net's
    ``predict_nonlinearity`` (probabilities, as ``predict_proba`` returns);
    ``predict_logits`` is the module's raw output.  A replica on another
    device calls its own copy of ``module_`` (what ``net.infer`` does with a
    tensor, without moving it to ``net.device``).
    """

    def __init__(self, net, n_classes: int, **kwargs):
        self.net = net
        module = net.module_
        super().__init__(module, n_classes, device=torch.device(net.device), **kwargs)
        self.binary = _is_skorch_binary(net)

    def _call(self, batch):
        if self.module is self.net.module_:
            return self.net.infer(batch)
        return self.module(batch)

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


def _replicas(adapter: _BaseAdapter, devices) -> list[_BaseAdapter]:
    """One adapter per entry of ``devices``: ``adapter`` first, then copies.

    ``adapter`` serves the first device; every other entry gets
    :meth:`~_BaseAdapter.replicate` (a deep copy of a torch model, even on
    the same device, so no two workers share a module).  All entries must be
    of one device type, and GPUs of one model: chunks go to whichever device
    is free, and the noise that torch draws for a seed differs between
    device types (and between GPU models), so mixed devices would make the
    results depend on the scheduling.
    """
    devices = [torch.device(d) for d in devices]
    types = sorted({d.type for d in devices})
    if len(types) > 1:
        raise ValueError(
            "The 'device' parameter must list devices of one type, since the "
            "noise drawn for a seed differs between device types. Got "
            f"{[str(d) for d in devices]} instead."
        )
    if types == ["cuda"]:
        names = {torch.cuda.get_device_name(d) for d in devices}
        if len(names) > 1:
            raise ValueError(
                "The 'device' parameter must list GPUs of one model, since the "
                "noise drawn for a seed depends on the GPU. Got "
                f"{sorted(names)} instead."
            )
    return [adapter] + [adapter.replicate(d) for d in devices[1:]]


def _parse_devices(device) -> list[torch.device] | None:
    """The ``device`` parameter as a list of torch devices (None when None)."""
    if device is None:
        return None
    listed = isinstance(device, list | tuple)
    entries = list(device) if listed else [device]
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
            f"non-empty list of them. Got {device!r} instead."
        )
    return devices


def _check_devices(device, n_jobs) -> None:
    """``device`` parses; a list is of one type and agrees with ``n_jobs``."""
    devices = _parse_devices(device)
    if not isinstance(device, list | tuple):
        return
    types = sorted({d.type for d in devices})
    if len(types) > 1:
        raise ValueError(
            "The 'device' parameter of SmoothedClassifier must list devices "
            "of one type (the noise drawn for a seed differs between device "
            f"types). Got {device!r} instead."
        )
    if n_jobs is not None and n_jobs != len(devices):
        raise ValueError(
            "The 'n_jobs' parameter of SmoothedClassifier must be None or "
            f"{len(devices)} when 'device' lists {len(devices)} devices (one "
            f"worker per device). Got {n_jobs!r} instead."
        )


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


def make_adapter(
    estimator,
    classes,
    *,
    device=None,
    memory_format: str = "contiguous",
    precision: str | None = None,
) -> _BaseAdapter:
    """The adapter of a fitted base model.

    Reads public attributes only, so any module can build the adapter of a
    fitted :class:`~smoothlearn.SmoothedClassifier` from its fitted
    attributes and parameters: ``make_adapter(clf.estimator_, clf.classes_,
    device=clf.device, memory_format=clf.memory_format,
    precision=clf.precision)``.

    Parameters
    ----------
    estimator : object
        The fitted base model: a :class:`torch.nn.Module`, a skorch net, a
        scikit-learn classifier, or a ``FrozenEstimator`` around one.
    classes : array-like of shape (n_classes,)
        The class labels; output index ``i`` is ``classes[i]``.
    device : str, torch.device or list of them, default=None
        Where a bare module computes: None means its own device; another
        device than the module's is refused.  For a list (several devices),
        the first, where the model lives.
    memory_format : {"contiguous", "channels_last", "auto"}, default="contiguous"
        Layout of 4-D batches of torch and skorch models.
    precision : {None, "bfloat16", "float16"}, default=None
        Autocast dtype of the forward pass of torch and skorch models.

    Returns
    -------
    adapter : _BaseAdapter
    """
    if isinstance(device, list | tuple):
        device = device[0] if len(device) else None
    inner = estimator.estimator if isinstance(estimator, FrozenEstimator) else estimator
    options = {"memory_format": memory_format, "precision": precision}
    if isinstance(inner, torch.nn.Module):
        device = _check_module_device(inner, device)
        return _TorchAdapter(inner, len(classes), device, **options)
    if _is_skorch_net(inner):
        return _SkorchAdapter(inner, len(classes), **options)
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
