"""The estimators: the base class, a user constant, the spectral product
and the local gradient estimate."""

from __future__ import annotations

import math
import numbers
from abc import ABCMeta, abstractmethod
from numbers import Integral, Real
from typing import ClassVar

import numpy as np
import torch
from numpy.typing import NDArray
from sklearn.base import BaseEstimator
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import Interval, StrOptions
from torch import nn
from torch.nn.utils.parametrize import type_before_parametrizations

from ..models import _eval_mode, _is_skorch_net, _module_device, _module_dtype
from ..soft import SIMPLEX_MAPS, simplex_map_constant, simplex_scores
from ._graph import _graph_bound, _is_torch_layer, _trace
from ._rules import _CONSTANT_LAYERS, _RULES, _Context

__all__ = [
    "ConstantLipschitz",
    "LipschitzEstimator",
    "LocalGradientLipschitz",
    "SpectralProductLipschitz",
]


def _unwrap(model) -> nn.Module:
    """The torch module of a skorch net or a bare module."""
    if _is_skorch_net(model):
        if not hasattr(model, "module_"):
            raise ValueError(
                "The skorch net is not initialized: call net.initialize() or fit "
                "it before estimating its Lipschitz constant."
            )
        return model.module_
    if isinstance(model, nn.Module):
        return model
    raise ValueError(
        "The 'model' parameter must be a torch.nn.Module or a skorch net. "
        f"Got {type(model).__name__} instead."
    )


def _check_map(simplex_map, temperature, n_classes) -> float:
    """Lipschitz constant of one class score of ``S(t .)`` (logits -> score)."""
    if not isinstance(simplex_map, str) or simplex_map not in SIMPLEX_MAPS:
        raise ValueError(
            "The 'simplex_map' parameter must be a str among "
            f"{set(SIMPLEX_MAPS)}. Got {simplex_map!r} instead."
        )
    if (
        isinstance(temperature, bool)
        or not isinstance(temperature, numbers.Real)
        or not 0 < temperature < math.inf
    ):
        raise ValueError(
            "The 'temperature' parameter must be a float in the range (0, inf). "
            f"Got {temperature!r} instead."
        )
    if n_classes is None:
        # sqrt(1 - 1/K) < 1 for every K: the bound for an unknown K.
        const = (
            1.0 if simplex_map == "sparsemax" else simplex_map_constant(simplex_map, 2)
        )
    else:
        if not isinstance(n_classes, numbers.Integral) or n_classes < 2:
            raise ValueError(
                "The 'n_classes' parameter must be an int >= 2 or None. "
                f"Got {n_classes!r} instead."
            )
        const = simplex_map_constant(simplex_map, int(n_classes))
    return const * float(temperature)


class LipschitzEstimator(BaseEstimator, metaclass=ABCMeta):
    """Base class of the estimators of a model's l2 Lipschitz constant.

    Subclasses implement :meth:`logit_constant`, the constant of the logits
    ``x -> z(x)``; :meth:`estimate` composes it with the simplex map.

    Attributes
    ----------
    guaranteed : bool
        True when the returned numbers are upper bounds (usable in a
        certificate), False for estimates.
    """

    guaranteed: bool = True

    @abstractmethod
    def logit_constant(self, model, X=None) -> float | NDArray[np.float64]:
        """Lipschitz constant of the logits ``x -> z(x)`` (l2 to l2).

        Parameters
        ----------
        model : torch.nn.Module or skorch net
            The base model, returning logits.
        X : array-like of shape (n_inputs, ...), default=None
            Inputs, for estimators that need a sample or are local.

        Returns
        -------
        L : float or ndarray of shape (n_inputs,)
        """

    def estimate(
        self,
        model,
        X=None,
        *,
        simplex_map: str = "softmax",
        temperature: float = 1.0,
        n_classes: int | None = None,
    ) -> float | NDArray[np.float64]:
        r"""Lipschitz constant of each [0, 1]-valued class score ``S(t z(x))_c``.

        Parameters
        ----------
        model : torch.nn.Module or skorch net
            The base model, returning logits.
        X : array-like of shape (n_inputs, ...), default=None
            Inputs, for estimators that need a sample or are local.
        simplex_map : {"softmax", "sparsemax", "hardmax"}, default="softmax"
            The simplex map ``S``.
        temperature : float, default=1.0
            Inverse temperature ``t > 0`` multiplying the logits.
        n_classes : int or None, default=None
            Number of classes ``K`` (sparsemax's constant
            :math:`\sqrt{1 - 1/K}`); None uses 1, valid for every ``K``.

        Returns
        -------
        L : float or ndarray of shape (n_inputs,)
            ``simplex_map_constant * temperature * logit_constant``; ``inf``
            for hardmax (its scores are discontinuous).
        """
        const = _check_map(simplex_map, temperature, n_classes)
        L = self.logit_constant(model, X)
        with np.errstate(invalid="ignore"):
            out = const * np.asarray(L, dtype=np.float64)
        return float(out) if out.ndim == 0 else out


class ConstantLipschitz(LipschitzEstimator):
    """The user's own Lipschitz constant, of the logits or of the class score.

    Parameters
    ----------
    L : float, default=1.0
        The constant, in (0, inf].  It must be an upper bound in the units of
        the model's input (the space the noise is added to).
    target : {"logits", "score"}, default="logits"
        What ``L`` bounds: the logits map ``x -> z(x)`` (then
        :meth:`estimate` composes it with the simplex map), or directly every
        [0, 1]-valued class score as used in the certificate (then
        :meth:`estimate` returns it whatever the map, except hardmax, and
        :meth:`logit_constant` is undefined).

    Examples
    --------
    >>> from smoothlearn.lipschitz import ConstantLipschitz
    >>> est = ConstantLipschitz(L=2.0)
    >>> est.logit_constant(None)
    2.0
    >>> round(est.estimate(None, simplex_map="softmax", temperature=0.5), 6)
    0.353553
    """

    guaranteed = True

    # (0, inf]: the range is open on the right only for a finite bound.
    _parameter_constraints: ClassVar[dict] = {
        "L": [Interval(Real, 0, None, closed="neither")],
        "target": [StrOptions({"logits", "score"})],
    }

    def __init__(self, L: float = 1.0, target: str = "logits"):
        self.L = L
        self.target = target

    def _check(self) -> float:
        self._validate_params()
        L = self.L
        if isinstance(L, bool) or not isinstance(L, numbers.Real) or not L > 0:
            raise ValueError(
                "The 'L' parameter of ConstantLipschitz must be a float in the "
                f"range (0, inf]. Got {L!r} instead."
            )
        if self.target not in ("logits", "score"):
            raise ValueError(
                "The 'target' parameter of ConstantLipschitz must be a str among "
                f"{{'logits', 'score'}}. Got {self.target!r} instead."
            )
        return float(L)

    def logit_constant(self, model=None, X=None) -> float:
        """The constant of the logits (``target="logits"`` only)."""
        L = self._check()
        if self.target != "logits":
            raise ValueError(
                "ConstantLipschitz(target='score') bounds the class scores, not "
                "the logits; a logits constant cannot be recovered from it."
            )
        return L

    def estimate(
        self, model=None, X=None, *, simplex_map="softmax", temperature=1.0,
        n_classes=None,
    ):  # fmt: skip
        L = self._check()
        const = _check_map(simplex_map, temperature, n_classes)
        if self.target == "logits":
            return const * L
        return math.inf if simplex_map == "hardmax" else L


class SpectralProductLipschitz(LipschitzEstimator):
    r"""Guaranteed upper bound from certified per-layer bounds along the graph.

    The model's ``forward`` is traced with :func:`torch.fx.symbolic_trace`
    (layers that have a rule stay leaves) and walked in execution order.
    Every node :math:`v` gets :math:`L_v`, an upper bound on the l2 Lipschitz
    constant of the map from the input :math:`x` to the value of :math:`v`:

    .. math::

        L_x = 1, \qquad L_{h(u)} = \mathrm{Lip}(h)\, L_u, \qquad
        L_{\sum_i c_i u_i} = \sum_i |c_i|\, L_{u_i},

    the chain rule for a layer :math:`h` applied to one node (each
    :math:`\mathrm{Lip}(h)` a certified bound, never a few power iterations)
    and the triangle inequality for sums, such as the residual addition
    :math:`\mathrm{Lip}(f + g) \le \mathrm{Lip}(f) + \mathrm{Lip}(g)` of a
    ResNet block along its two paths.  For a plain composition this is the
    product :math:`\prod_i \mathrm{Lip}(h_i)` (Gouk et al. 2021).
    :meth:`logit_constant` returns the bound of the output node, the logits;
    :meth:`estimate` multiplies it by the simplex map's constant and the
    temperature.

    Parameters
    ----------
    input_shape : tuple of int or None, default=None
        Shape of one input (without the batch dimension).  Convolutions,
        pooling, additions (broadcasting) and constants computed from the
        input's shape need a forward pass on a sample: the first row of ``X``
        when given, else zeros of this shape.
    rules : dict or None, default=None
        Extra layer rules ``{module_type: rule}``, consulted first (by
        ``isinstance``); modules of these types are leaves of the trace.
        ``rule(module, bound) -> float``, where ``bound(child)`` returns the
        bound of a child module and ``bound.input_shape(module)`` its
        recorded input shape.  This is the hook for modules torch.fx cannot
        trace (data-dependent control flow) and for layers without a built-in
        rule.  A rule for ``Conv*``, ``Linear`` or ``BatchNorm*`` also turns
        off their fusion (see Notes).
    assume_sequential : bool, default=False
        For a module that torch.fx cannot trace and that has no rule: treat
        it as the composition of its children in registration order (what
        the PUB code does for every module).  The result is then a bound only
        if the forward really is that composition; by default such modules
        are refused.  ``nn.Sequential`` is that composition by definition.
    max_matrix_size : int, default=2**22
        Largest number of entries of an explicit operator matrix (exact
        SVD).  Larger linear layers use Gram iteration, larger convolutions
        the Fourier bound.
    conv_method : {"auto", "explicit", "fourier", "taps"}, default="auto"
        ``"explicit"``: exact spectral norm of the convolution on the recorded
        input shape (SVD of its matrix).  ``"fourier"``: exact norm of a
        circular convolution on a zero-extended grid, an upper bound for the
        zero-padded, strided operator.  ``"taps"``: sum over kernel taps of
        the spectral norms of the channel-mixing matrices (needs no shape,
        loosest).  ``"auto"``: explicit when the matrix has at most
        ``max_matrix_size`` entries, else Fourier; 1x1 kernels always get
        their exact norm, the channel-mixing matrix's.
    gram_iterations : int, default=12
        Gram iterations for linear layers too large for an SVD.

    Notes
    -----
    **Layers** (all in float64, each norm inflated by a relative 1e-9 to
    cover rounding): ``Linear``, the spectral norm (SVD, or Gram iteration
    above ``max_matrix_size``); ``Conv1d``/``Conv2d`` as the true operator,
    stride, zero padding, dilation and groups included (``conv_method``).
    Both shortcuts of the convolution bounds are restrictions, of norm at
    most 1: subsampling (stride) keeps some outputs of the stride-1
    convolution, so a stride-1 bound of the same kernel also bounds the
    strided one; and zero padding makes the convolution the restriction of
    a circular convolution on a zero-extended grid of
    :math:`n + p_{left} + p_{right} + d(k - 1)` positions per dimension,
    whose norm the DFT gives exactly (Sedghi et al. 2019); with a stride,
    its polyphase form is exact on that grid (tighter than the stride-1
    bound).  ``BatchNorm1d/2d`` in eval mode,
    :math:`\max_c |\gamma_c| / \sqrt{\mathrm{var}_c + \epsilon}`; a
    convolution or linear layer read only by an eval batch norm is bounded
    with it as one linear map :math:`\mathrm{diag}(s) W`
    (:math:`\|\mathrm{diag}(s) W\| \le \max|s|\,\|W\|`, never looser);
    average pooling (also adaptive, e.g. to 1x1: :math:`1/\sqrt{HW}`), the
    exact norm of its separable operator; max pooling, the square root of
    the largest number of windows that share a pixel (1 when kernel ==
    stride, 2 for torchvision's 3x3 / stride 2); activations with their
    maximal slope (ReLU 1, Sigmoid 1/4, GELU 1.1289, SiLU 1.1, ...);
    ``Flatten``, ``Dropout`` (eval), ``Identity``, reshapes, permutations,
    slicing: 1; :class:`Normalize`: ``1 / min std``.

    **Functions and methods** of a traced forward: ``+``/``-``
    (``torch.add``, in-place forms) sum the bounds of their input-dependent
    operands, times :math:`\sqrt{\#out/\#operand}` for an operand that is
    broadcast (each entry then appears that many times); a product with a
    constant scales by :math:`\max|c|`, a quotient by :math:`1/\min|c|`, so
    a normalisation :math:`(x - \mu)/\sigma` per channel (Cohen et al.'s
    ``NormalizeLayer``, torchvision's ``Normalize``) gives
    :math:`1/\min\sigma`; ``torch.cat``/``stack``
    :math:`\sqrt{\sum_i L_i^2}`; ``mean``/``sum`` over :math:`m` entries
    :math:`1/\sqrt m` / :math:`\sqrt m`; ``F.relu`` and the other
    activations, ``F.linear``, ``@`` and ``F.conv1d``/``conv2d`` with constant
    weights, ``F.*pool*``, ``F.pad`` (zeros), ``F.batch_norm`` (eval),
    ``torch.flatten``, ``view``/``reshape``/``permute``/``x[...]``,
    ``expand``/``repeat`` (:math:`\sqrt{\#out/\#in}`), ``split``/``chunk``.
    Values that depend only on the input's shape (``x.size(0)``) are
    constants.  Anything else (a product of two input-dependent tensors, an
    operation without a rule, an in-place write the graph would hide) raises
    a ``ValueError`` naming the node and the operation: a missing rule is
    never read as a small constant.  The model is evaluated in eval mode
    (dropout off, batch norm with running statistics), the mode of
    certification, and is assumed to process the rows of a batch
    independently, as the certification engine does.

    The bound is loose for deep networks (the per-layer bounds ignore how
    layers align; SCIENCE.md section 4), but it is guaranteed.

    References
    ----------
    .. [1] Gouk, Frank, Pfahringer & Cree, "Regularisation of Neural
       Networks by Enforcing Lipschitz Continuity", Machine Learning 110,
       2021.
    .. [2] Delattre, Barthélemy, Araujo & Allauzen, "Efficient Bound of
       Lipschitz Constant for Convolutional Layers by Gram Iteration",
       ICML 2023.
    .. [3] Sedghi, Gupta & Long, "The Singular Values of Convolutional
       Layers", ICLR 2019.
    .. [4] Cohen, Rosenfeld & Kolter, "Certified Adversarial Robustness via
       Randomized Smoothing", ICML 2019 (the ``NormalizeLayer`` first in
       their models, so that noise is added in pixel space).

    Examples
    --------
    >>> import torch
    >>> from smoothlearn.lipschitz import SpectralProductLipschitz
    >>> net = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.ReLU())
    >>> with torch.no_grad():
    ...     _ = net[0].weight.copy_(torch.tensor([[3.0, 0.0], [0.0, 1.0]]))
    >>> round(SpectralProductLipschitz().logit_constant(net), 6)
    3.0

    A residual block written as a plain module is traced: the bound of
    ``x + W x`` is ``1 + ||W||`` (here exact, ``W`` being positive
    semi-definite).

    >>> class Block(torch.nn.Module):
    ...     def __init__(self):
    ...         super().__init__()
    ...         self.lin = torch.nn.Linear(2, 2, bias=False)
    ...
    ...     def forward(self, x):
    ...         return x + self.lin(x)
    >>> block = Block()
    >>> with torch.no_grad():
    ...     _ = block.lin.weight.copy_(torch.tensor([[2.0, 0.0], [0.0, 0.5]]))
    >>> round(SpectralProductLipschitz(input_shape=(2,)).logit_constant(block), 6)
    3.0
    """

    guaranteed = True

    _parameter_constraints: ClassVar[dict] = {
        "input_shape": [None, "array-like"],
        "rules": [None, dict],
        "assume_sequential": ["boolean"],
        "max_matrix_size": [Interval(Integral, 1, None, closed="left")],
        "conv_method": [StrOptions({"auto", "explicit", "fourier", "taps"})],
        "gram_iterations": [Interval(Integral, 1, None, closed="left")],
    }

    def __init__(
        self,
        input_shape=None,
        rules=None,
        assume_sequential: bool = False,
        max_matrix_size: int = 2**22,
        conv_method: str = "auto",
        gram_iterations: int = 12,
    ):
        self.input_shape = input_shape
        self.rules = rules
        self.assume_sequential = assume_sequential
        self.max_matrix_size = max_matrix_size
        self.conv_method = conv_method
        self.gram_iterations = gram_iterations

    def _check_params(self):
        self._validate_params()
        if self.conv_method not in ("auto", "explicit", "fourier", "taps"):
            raise ValueError(
                "The 'conv_method' parameter of SpectralProductLipschitz must be a "
                "str among {'auto', 'explicit', 'fourier', 'taps'}. Got "
                f"{self.conv_method!r} instead."
            )
        for name in ("max_matrix_size", "gram_iterations"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, numbers.Integral) or v < 1:
                raise ValueError(
                    f"The {name!r} parameter of SpectralProductLipschitz must be an "
                    f"int >= 1. Got {v!r} instead."
                )
        if self.rules is not None and not (
            isinstance(self.rules, dict)
            and all(isinstance(t, type) and callable(f) for t, f in self.rules.items())
        ):
            raise ValueError(
                "The 'rules' parameter of SpectralProductLipschitz must be a dict "
                f"{{module_type: callable}} or None. Got {self.rules!r} instead."
            )

    def _sample(self, module, X):
        """One input (a batch of one) on the module's device, or None."""
        if X is None and self.input_shape is None:
            return None
        device, dtype = _module_device(module), _module_dtype(module)
        if X is not None:
            sample = torch.as_tensor(np.asarray(X[:1]) if not torch.is_tensor(X)
                                     else X[:1])  # fmt: skip
        else:
            sample = torch.zeros((1, *tuple(self.input_shape)))
        return sample.to(device=device, dtype=dtype)

    def _record(self, module, sample):
        """Shapes of every submodule and inputs of the traceable ones.

        One forward pass on ``sample`` (eval mode, no gradient): the input and
        output shapes of each module's first call, and a copy of the
        arguments of each module that may be traced (containers and the
        user's own modules), which a graph walk needs for its constants.
        """
        shapes, inputs = {}, {}
        if sample is None:
            return shapes, inputs

        def pre_hook(mod, args):
            if id(mod) not in inputs and not _is_torch_layer(mod):
                inputs[id(mod)] = tuple(
                    a.detach().clone() if torch.is_tensor(a) else a for a in args
                )

        def hook(mod, args, output):
            if args and torch.is_tensor(args[0]) and torch.is_tensor(output):
                shapes.setdefault(
                    id(mod), (tuple(args[0].shape[1:]), tuple(output.shape[1:]))
                )

        handles = []
        try:
            for m in module.modules():
                handles.append(m.register_forward_pre_hook(pre_hook))
                handles.append(m.register_forward_hook(hook))
            module(sample.clone())
        finally:
            for h in handles:
                h.remove()
        inputs[id(module)] = (sample,)
        return shapes, inputs

    def _user_types(self) -> tuple[type, ...]:
        return tuple(self.rules or ())

    def _bound(self, module: nn.Module, ctx: _Context) -> float:
        """Bound of one module: its rule, else the graph walk of its forward."""
        for typ, rule in (self.rules or {}).items():
            if isinstance(module, typ):
                return float(rule(module, ctx))
        typ = type_before_parametrizations(module)
        if typ in _RULES and typ is not nn.Sequential:
            return float(_RULES[typ](module, ctx))
        if typ in _CONSTANT_LAYERS:
            return _CONSTANT_LAYERS[typ]
        if _is_torch_layer(module):
            raise ValueError(
                f"SpectralProductLipschitz has no rule for the layer type "
                f"{typ.__name__!r}; register one with rules={{{typ.__name__}: fn}}."
            )
        try:
            gm = _trace(module, self._user_types())
        except Exception as exc:  # tracing runs the user's code: any error
            reason = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
            reason = f"{type(exc).__name__}: {reason}" if reason else type(exc).__name__
        else:
            return _graph_bound(self, ctx, module, gm, ctx.inputs.get(id(module)))
        children = list(module.children())
        if typ is nn.Sequential or (children and self.assume_sequential):
            out = 1.0
            for child in children:
                out *= ctx(child)
            return out
        raise ValueError(
            f"SpectralProductLipschitz cannot bound a {typ.__name__}: torch.fx "
            f"cannot trace its forward ({reason}). Register a rule with "
            f"rules={{{typ.__name__}: fn}}"
            + (
                ", or pass assume_sequential=True if the forward applies the "
                "children in registration order."
                if children
                else "."
            )
        )

    def logit_constant(self, model, X=None) -> float:
        """Guaranteed upper bound on the l2 Lipschitz constant of the logits.

        Parameters
        ----------
        model : torch.nn.Module or skorch net
            Evaluated in eval mode (dropout off, batch norm with its running
            statistics); its training flags are restored afterwards.
        X : array-like of shape (n_inputs, ...), default=None
            Only its first row is used: one forward pass on it records the
            input shape of every layer and the constants of the traced graph
            (``input_shape`` does the same with zeros).

        Returns
        -------
        L : float
        """
        self._check_params()
        module = _unwrap(model)
        sample = self._sample(module, X)
        # Weights are read in eval mode, the mode of certification: a
        # parametrized weight (spectral_norm) is then the one used in the
        # forward, not a fresh power-iteration step.
        with _eval_mode(module), torch.no_grad():
            ctx = _Context(self, *self._record(module, sample))
            return self._bound(module, ctx)


class LocalGradientLipschitz(LipschitzEstimator):
    """Estimate of the local Lipschitz constant around each input (NOT a bound).

    The largest l2 norm of the gradient of a class score (or of the logits'
    Jacobian, for :meth:`logit_constant`) over the input itself and
    ``n_samples`` points drawn uniformly in the l2 ball of radius ``radius``
    around it, computed with torch autograd on the model's device, many
    points per batch.  A maximum over finitely many points is a LOWER
    estimate of the local constant on that ball, and says nothing about the
    constant elsewhere, so ``guaranteed = False``: ``SmoothedClassifier``
    refuses it in a certificate.  It is a diagnostic (how far is a global
    bound from what the model does near the data?), the "local Lipschitz"
    direction that Delattre et al. (2025) leave open.

    Parameters
    ----------
    n_samples : int, default=16
        Random points per input, besides the input itself.
    radius : float, default=0.25
        Radius of the l2 ball the points are drawn in, in input units.
    batch_size : int, default=256
        Points per forward/backward pass.
    random_state : int, RandomState instance or None, default=None
        Seeds the points.

    Notes
    -----
    One backward pass per class (``K`` passes per batch): the per-class
    gradient norms are needed, and a Jacobian of ``K`` rows has no cheaper
    exact route in reverse mode.  Models are evaluated in eval mode.

    Examples
    --------
    >>> import numpy as np, torch
    >>> from smoothlearn.lipschitz import LocalGradientLipschitz
    >>> lin = torch.nn.Linear(2, 3)
    >>> X = np.zeros((4, 2), dtype=np.float32)
    >>> est = LocalGradientLipschitz(n_samples=2, random_state=0)
    >>> L = est.logit_constant(lin, X)  # the Jacobian of a linear map is W
    >>> bool(np.allclose(L, torch.linalg.matrix_norm(lin.weight, 2).item()))
    True
    """

    guaranteed = False

    _parameter_constraints: ClassVar[dict] = {
        "n_samples": [Interval(Integral, 0, None, closed="left")],
        # finite: the hand check below also rejects inf
        "radius": [Interval(Real, 0, None, closed="left")],
        "batch_size": [Interval(Integral, 1, None, closed="left")],
        "random_state": ["random_state"],
    }

    def __init__(
        self,
        n_samples: int = 16,
        radius: float = 0.25,
        batch_size: int = 256,
        random_state=None,
    ):
        self.n_samples = n_samples
        self.radius = radius
        self.batch_size = batch_size
        self.random_state = random_state

    def _check_params(self):
        self._validate_params()
        for name, low in (("n_samples", 0), ("batch_size", 1)):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, numbers.Integral) or v < low:
                raise ValueError(
                    f"The {name!r} parameter of LocalGradientLipschitz must be an "
                    f"int >= {low}. Got {v!r} instead."
                )
        r = self.radius
        if (
            isinstance(r, bool)
            or not isinstance(r, numbers.Real)
            or not 0 <= r < math.inf
        ):
            raise ValueError(
                "The 'radius' parameter of LocalGradientLipschitz must be a float "
                f"in the range [0, inf). Got {r!r} instead."
            )

    def _max_norms(self, model, X, score_fn, jacobian_norm: bool):
        self._check_params()
        if X is None:
            raise ValueError("LocalGradientLipschitz needs the inputs X.")
        module = _unwrap(model)
        device, dtype = _module_device(module), _module_dtype(module)
        X = X.detach() if torch.is_tensor(X) else torch.as_tensor(np.asarray(X))
        X = X.to(device=device, dtype=dtype)
        n = X.shape[0]
        d = int(np.prod(X.shape[1:]))
        P = self.n_samples + 1
        rng = check_random_state(self.random_state)
        gen = torch.Generator(device=device).manual_seed(int(rng.randint(2**31 - 1)))
        per = max(1, self.batch_size // P)
        out = np.empty(n)
        with _eval_mode(module):
            for start in range(0, n, per):
                xb = X[start : start + per]
                m = xb.shape[0]
                direction = torch.randn((m, P, d), generator=gen, device=device,
                                        dtype=dtype)  # fmt: skip
                direction /= direction.norm(dim=2, keepdim=True)
                u = torch.rand((m, P, 1), generator=gen, device=device, dtype=dtype)
                offset = direction * (self.radius * u ** (1.0 / d))
                offset[:, 0] = 0.0  # the input itself
                pts = (xb.reshape(m, 1, d) + offset).reshape(m * P, *X.shape[1:])
                pts.requires_grad_(True)
                scores = score_fn(module(pts))
                K = scores.shape[1]
                grads = []
                for c in range(K):
                    (g,) = torch.autograd.grad(
                        scores[:, c].sum(), pts, retain_graph=c < K - 1
                    )
                    grads.append(g.reshape(m * P, d))
                J = torch.stack(grads, dim=1)  # (m P, K, d)
                if jacobian_norm:
                    norms = torch.linalg.matrix_norm(J.double(), ord=2)
                else:
                    norms = J.double().norm(dim=2).amax(dim=1)
                out[start : start + m] = norms.reshape(m, P).amax(dim=1).cpu().numpy()
        return out

    def logit_constant(self, model, X=None) -> NDArray[np.float64]:
        """Largest spectral norm of the logits' Jacobian near each input.

        Returns
        -------
        L : ndarray of shape (n_inputs,)
            An estimate (a lower one), not a bound.
        """
        return self._max_norms(model, X, lambda z: z, jacobian_norm=True)

    def estimate(
        self, model, X=None, *, simplex_map="softmax", temperature=1.0,
        n_classes=None,
    ) -> NDArray[np.float64]:  # fmt: skip
        """Largest gradient norm of a class score ``S(t z)_c`` near each input.

        The simplex map enters directly (the gradients are those of the
        scores), so this is usually well below the composed constant.

        Returns
        -------
        L : ndarray of shape (n_inputs,)
            An estimate (a lower one), not a bound; ``inf`` for hardmax.
        """
        _check_map(simplex_map, temperature, n_classes)
        if simplex_map == "hardmax":
            n = 0 if X is None else len(X)
            return np.full(n, np.inf)
        return self._max_norms(
            model,
            X,
            lambda z: simplex_scores(z, simplex_map, float(temperature)),
            jacobian_norm=False,
        )
