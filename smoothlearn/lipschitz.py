r"""Lipschitz constants of a base model's class scores.

A Lipschitz-aware radius (:func:`smoothlearn.radius.lipschitz_radius`) needs
``L``, the l2 Lipschitz constant of every [0, 1]-valued class score
:math:`f_c(x) = S(t\,z(x))_c`, where :math:`z` are the model's logits,
:math:`t > 0` an inverse temperature and :math:`S` a simplex map.  By the chain
rule for Lipschitz maps,

.. math::

    \mathrm{Lip}(f_c) \le \mathrm{Lip}(S_c)\; t\; \mathrm{Lip}(z),

with :math:`\mathrm{Lip}(S_c) = \sqrt2/4` for softmax, :math:`\sqrt{1 - 1/K}`
for sparsemax and :math:`\infty` for hardmax
(:func:`smoothlearn.soft.simplex_map_constant`).  Every estimator here has

* ``logit_constant(model, X=None)``: the constant of the logits
  :math:`x \mapsto z(x)` (l2 to l2), what ``SmoothedClassifier(lipschitz=...)``
  takes;
* ``estimate(model, X=None, *, simplex_map="softmax", temperature=1.0)``: the
  constant of each class score after the simplex map;
* a class attribute ``guaranteed``: True for upper bounds, False for
  estimates, which must never enter a certificate.

The noise of randomized smoothing is added to the model's *input*, so the
constant must be in the units of that input: an input-normalisation layer
inside the model (e.g. :class:`Normalize`) contributes ``1 / min(std)``.
"""

from __future__ import annotations

import copy
import math
import numbers
from abc import ABCMeta, abstractmethod
from collections.abc import Callable

import numpy as np
import torch
from numpy.typing import NDArray
from sklearn.base import BaseEstimator
from sklearn.utils import check_random_state
from torch import nn
from torch.nn.utils.parametrize import type_before_parametrizations

from .models import _eval_mode, _is_skorch_net, _module_device, _module_dtype
from .soft import SIMPLEX_MAPS, simplex_map_constant, simplex_scores

__all__ = [
    "ConstantLipschitz",
    "LipschitzEstimator",
    "LocalGradientLipschitz",
    "Normalize",
    "Residual",
    "SpectralProductLipschitz",
]

# Relative margin added to every computed spectral norm: float64 SVD, FFT and
# matrix products are backward stable with relative errors of order n * eps
# (below 1e-11 for the sizes handled here), far below this margin.
_ROUNDING_MARGIN = 1e-9

# Activations and shape-only layers with their (tight or rounded-up) l2
# Lipschitz constants.  Elementwise maps are Lipschitz with the sup of |f'|.
_GELU_EXACT = 0.5 * (1.0 + math.erf(1.0)) + math.sqrt(2.0) * math.exp(-1.0) / math.sqrt(
    2.0 * math.pi
)  # Phi(sqrt 2) + sqrt 2 phi(sqrt 2) = 1.12890..., at x = sqrt 2
_CONSTANT_LAYERS: dict[type, float] = {
    nn.Identity: 1.0,
    nn.Flatten: 1.0,
    nn.Unflatten: 1.0,
    nn.Dropout: 1.0,  # eval mode
    nn.Dropout1d: 1.0,
    nn.Dropout2d: 1.0,
    nn.AlphaDropout: 1.0,
    nn.ReLU: 1.0,
    nn.ReLU6: 1.0,
    nn.Hardtanh: 1.0,
    nn.Tanh: 1.0,
    nn.Sigmoid: 0.25,
    nn.Softplus: 1.0,  # derivative sigmoid(beta x) < 1
    nn.Softsign: 1.0,
    nn.LogSigmoid: 1.0,
    nn.Tanhshrink: 1.0,  # derivative tanh(x)^2
    nn.CELU: 1.0,  # derivative exp(x / alpha) <= 1 for x < 0
    # 1/6, rounded up to float32's 1/6, the slope PyTorch's kernels use.
    nn.Hardsigmoid: 0.16666668,
    nn.Hardswish: 1.5,  # derivative (2x + 3) / 6 on [-3, 3]
    nn.SiLU: 1.1,  # max of sigma(x)(1 + x(1 - sigma(x))) = 1.0998 at x = 2.40
    nn.Mish: 1.09,  # max derivative 1.0886 at x = 1.22
}


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

    def __init__(self, L: float = 1.0, target: str = "logits"):
        self.L = L
        self.target = target

    def _check(self) -> float:
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


# ---------------------------------------------------------------------------
# Spectral norms: exact SVD, Gram iteration, Fourier bound for convolutions
# ---------------------------------------------------------------------------


def _matrix_norm(M: torch.Tensor) -> float:
    """Largest singular value (float64 SVD), inflated by the rounding margin."""
    M = M.detach().to("cpu", torch.float64)
    if M.numel() == 0:
        return 0.0
    return float(torch.linalg.matrix_norm(M, ord=2)) * (1.0 + _ROUNDING_MARGIN)


def _gram_bound(M: torch.Tensor, n_iter: int) -> float:
    r"""Gram iteration: a certified upper bound on the largest singular value.

    With :math:`G_0 = M` and :math:`G_{k+1} = G_k^\top G_k`,
    :math:`\sigma_1(M)^{2^k} = \sigma_1(G_k) \le \|G_k\|_F`; rescaling each
    iterate by its Frobenius norm avoids overflow (Delattre et al. 2023).
    """
    G = M.detach().to("cpu", torch.float64)
    if G.shape[0] < G.shape[1]:
        G = G.T
    log_scale = 0.0  # G_k = exp(log_scale) * G
    for _ in range(n_iter):
        fro = torch.linalg.norm(G)
        if fro == 0:
            return 0.0
        log_scale = 2.0 * (log_scale + math.log(float(fro)))
        G = G / fro
        G = G.T @ G
    log_bound = (log_scale + math.log(float(torch.linalg.norm(G)))) / 2.0**n_iter
    return math.exp(log_bound) * (1.0 + _ROUNDING_MARGIN)


def _conv_geometry(module):
    """(dims, kernel, stride, dilation, (pad_left, pad_right) per dim)."""
    dims = module.weight.dim() - 2
    k = tuple(module.weight.shape[2:])
    stride, dilation = tuple(module.stride), tuple(module.dilation)
    if isinstance(module.padding, str):
        if module.padding == "valid":
            pads = tuple((0, 0) for _ in range(dims))
        else:  # "same": total d (k - 1), the extra one on the right
            pads = tuple(
                (d * (kk - 1) // 2, d * (kk - 1) - d * (kk - 1) // 2)
                for d, kk in zip(dilation, k, strict=True)
            )
    else:
        pads = tuple((p, p) for p in module.padding)
    return dims, k, stride, dilation, pads


def _conv_fourier_bound(module, in_shape) -> float:
    r"""Certified bound on a zero-padded, strided convolution via a circular one.

    Embedding the input (an isometry) in a zero-extended grid of size ``N``
    per dimension, ``N >= n + p_left + p_right + d (k - 1)`` and a multiple of
    the stride ``s``, makes the zero-padded convolution a restriction of the
    strided circular convolution on that grid (restrictions have norm <= 1).
    Splitting the grid into its ``s`` polyphase components (``x_r[u] =
    x[s u + r]``) turns the strided circular convolution into a stride-1
    circular convolution on ``Z_{N/s}`` with ``s`` times more input channels,
    which the DFT block-diagonalises: its norm is the largest singular value
    of the ``(c_out, c_in s)`` matrices :math:`\hat K(\omega)` over the
    frequencies, computed exactly (batched SVD), per group.
    """
    dims, k, stride, dilation, pads = _conv_geometry(module)
    spatial = tuple(in_shape[1:])
    M = tuple(
        -(-(n + pl + pr + d * (kk - 1)) // s)
        for n, (pl, pr), d, kk, s in zip(
            spatial, pads, dilation, k, stride, strict=True
        )
    )
    W = module.weight.detach().to("cpu", torch.float64)
    g = module.groups
    W = W.reshape(g, W.shape[0] // g, *W.shape[1:])  # (g, out_g, in_g, *k)
    # kernel[g, out, in, r_1..r_dims, u_1..u_dims]: tap j reads x[s i + j d - p]
    # = x_r[i + a] with j d - p = s a + r.
    kernel = torch.zeros(*W.shape[:3], *stride, *M, dtype=torch.float64)
    for taps in np.ndindex(*k):
        offsets = [
            t * d - pl for t, d, (pl, _) in zip(taps, dilation, pads, strict=True)
        ]
        r = tuple(o % s for o, s in zip(offsets, stride, strict=True))
        a = tuple((o // s) % m for o, s, m in zip(offsets, stride, M, strict=True))
        kernel[(slice(None),) * 3 + r + a] += W[(slice(None),) * 3 + taps]
    spec = torch.fft.rfftn(kernel, dim=tuple(range(3 + dims, 3 + 2 * dims)))
    # (g, out_g, in_g, *s, *freq) -> (n_freq, g, out_g, in_g * prod(s))
    n_in = W.shape[2] * int(np.prod(stride))
    spec = spec.reshape(g, W.shape[1], n_in, -1).permute(3, 0, 1, 2)
    per = max(1, (1 << 22) // max(1, spec[0].numel()))
    best = 0.0
    for start in range(0, spec.shape[0], per):
        block = spec[start : start + per]
        best = max(best, float(torch.linalg.matrix_norm(block, ord=2).max()))
    return best * (1.0 + _ROUNDING_MARGIN)


def _explicit_operator(module, in_shape, chunk: int = 256) -> torch.Tensor:
    """Matrix of the linear part of ``module`` on inputs of ``in_shape``.

    Built by applying a float64 copy of the module to the basis vectors (and
    subtracting its value at 0, which removes a bias); exact for any padding
    mode, stride, dilation or grouping.
    """
    m = copy.deepcopy(module).to("cpu", torch.float64).eval()
    n_in = int(np.prod(in_shape))
    with torch.no_grad():
        zero = m(torch.zeros((1, *in_shape), dtype=torch.float64)).reshape(1, -1)
        cols = []
        for start in range(0, n_in, chunk):
            stop = min(n_in, start + chunk)
            basis = torch.zeros((stop - start, n_in), dtype=torch.float64)
            basis[torch.arange(stop - start), torch.arange(start, stop)] = 1.0
            cols.append(m(basis.reshape(-1, *in_shape)).reshape(stop - start, -1))
    return (torch.cat(cols) - zero).T  # (n_out, n_in)


def _conv_output_padding(module, in_shape):
    """``output_padding`` making ``conv_transpose`` the adjoint of ``module``."""
    _, k, stride, dilation, pads = _conv_geometry(module)
    out = []
    for n, kk, s, d, (pl, pr) in zip(
        in_shape[1:], k, stride, dilation, pads, strict=True
    ):
        n_out = (n + pl + pr - d * (kk - 1) - 1) // s + 1
        out.append(n - ((n_out - 1) * s - pl - pr + d * (kk - 1) + 1))
    return tuple(out)


def _conv_power_iteration(module, in_shape, n_iter: int = 100, generator=None) -> float:
    """Power iteration on ``A^T A`` with ``A`` = the convolution, a LOWER estimate.

    The adjoint is ``conv_transpose`` with the same stride, padding, dilation
    and groups and the ``output_padding`` that restores the input size
    (symmetric zero padding only).  Used as a check of the certified bounds;
    never as a bound itself.
    """
    dims, _, stride, dilation, pads = _conv_geometry(module)
    if any(pl != pr for pl, pr in pads) or module.padding_mode != "zeros":
        raise ValueError("power iteration needs symmetric zero padding")
    conv = (torch.nn.functional.conv1d, torch.nn.functional.conv2d)[dims - 1]
    convT = (
        torch.nn.functional.conv_transpose1d,
        torch.nn.functional.conv_transpose2d,
    )[dims - 1]
    W = module.weight.detach().to("cpu", torch.float64)
    pad = tuple(pl for pl, _ in pads)
    opad = _conv_output_padding(module, in_shape)
    x = torch.randn((1, *in_shape), dtype=torch.float64, generator=generator)
    x /= x.norm()
    sigma = 0.0
    for _ in range(n_iter):
        y = conv(x, W, None, stride, pad, dilation, module.groups)
        sigma = float(y.norm())
        x = convT(y, W, None, stride, pad, opad, module.groups, dilation)
        x /= x.norm()
    return sigma


class _Context:
    """What a layer rule sees: the recursion and the recorded shapes."""

    def __init__(self, estimator, shapes):
        self.estimator = estimator
        self.shapes = shapes

    def __call__(self, module: nn.Module) -> float:
        return self.estimator._bound(module, self)

    def input_shape(self, module: nn.Module) -> tuple[int, ...]:
        """Input shape of ``module`` (without the batch dimension)."""
        try:
            return self.shapes[id(module)][0]
        except KeyError:
            raise ValueError(
                f"SpectralProductLipschitz needs the input shape of the "
                f"{type(module).__name__} layer: pass X or input_shape."
            ) from None

    def output_shape(self, module: nn.Module) -> tuple[int, ...]:
        self.input_shape(module)
        return self.shapes[id(module)][1]


# ---------------------------------------------------------------------------
# Modules with a known structure
# ---------------------------------------------------------------------------


class Residual(nn.Module):
    """Residual block ``x -> main(x) + shortcut(x)`` (identity shortcut if None).

    :class:`SpectralProductLipschitz` bounds it by
    ``L(main) + L(shortcut)`` (``L(identity) = 1``).

    Parameters
    ----------
    main : torch.nn.Module
        The residual branch.
    shortcut : torch.nn.Module or None, default=None
        The skip branch (e.g. a 1x1 convolution); None is the identity.
    """

    def __init__(self, main: nn.Module, shortcut: nn.Module | None = None):
        super().__init__()
        self.main = main
        self.shortcut = shortcut

    def forward(self, x):
        return self.main(x) + (x if self.shortcut is None else self.shortcut(x))


class Normalize(nn.Module):
    """Input normalisation ``(x - mean) / std``, per channel (dimension 1).

    Its l2 Lipschitz constant is ``1 / min |std|``: noise added before it is
    scaled by up to that factor.

    Parameters
    ----------
    mean, std : array-like of shape (n_channels,) or float
    """

    def __init__(self, mean, std):
        super().__init__()
        self.register_buffer("mean", torch.as_tensor(mean, dtype=torch.float32))
        self.register_buffer("std", torch.as_tensor(std, dtype=torch.float32))

    def forward(self, x):
        shape = (1, -1) + (1,) * (x.dim() - 2) if self.mean.dim() else ()
        mean = self.mean.reshape(shape) if shape else self.mean
        std = self.std.reshape(shape) if shape else self.std
        return (x - mean) / std


# ---------------------------------------------------------------------------
# Layer rules
# ---------------------------------------------------------------------------


def _rule_batchnorm(m, ctx) -> float:
    if m.running_var is None:
        raise ValueError(
            f"{type(m).__name__} without running statistics "
            "(track_running_stats=False) normalises with batch statistics and "
            "has no per-input Lipschitz constant."
        )
    scale = 1.0 / torch.sqrt(m.running_var.detach().to("cpu", torch.float64) + m.eps)
    if m.weight is not None:
        scale = scale * m.weight.detach().to("cpu", torch.float64).abs()
    return float(scale.max()) * (1.0 + _ROUNDING_MARGIN) if scale.numel() else 0.0


def _rule_linear(m, ctx) -> float:
    est = ctx.estimator
    W = m.weight
    if W.numel() <= est.max_matrix_size:
        return _matrix_norm(W)
    return _gram_bound(W, est.gram_iterations)


def _rule_conv(m, ctx) -> float:
    est = ctx.estimator
    method = est.conv_method
    if method == "taps":
        # conv = sum over kernel taps of (shift o channel mixing): triangle
        # inequality, shifts (with zero padding and stride) have norm <= 1.
        if m.padding_mode != "zeros":
            raise ValueError("conv_method='taps' needs padding_mode='zeros'.")
        W = m.weight.detach().to("cpu", torch.float64)
        g = m.groups
        W = W.reshape(g, W.shape[0] // g, W.shape[1], -1).permute(3, 0, 1, 2)
        per_tap = torch.linalg.matrix_norm(W, ord=2).amax(dim=1)
        return float(per_tap.sum()) * (1.0 + _ROUNDING_MARGIN)
    in_shape = ctx.input_shape(m)
    out_shape = ctx.output_shape(m)
    size = int(np.prod(in_shape)) * max(int(np.prod(in_shape)), int(np.prod(out_shape)))
    if method == "explicit" or (method == "auto" and size <= est.max_matrix_size):
        return _matrix_norm(_explicit_operator(m, in_shape))
    if m.padding_mode != "zeros":
        raise ValueError(
            f"{type(m).__name__} with padding_mode={m.padding_mode!r} is bounded "
            "only through its explicit matrix, which exceeds max_matrix_size "
            f"({size} > {est.max_matrix_size}); raise max_matrix_size."
        )
    return _conv_fourier_bound(m, in_shape)


def _pool_1d_matrix(n, n_out, k, s, p, ceil_mode, count_include_pad, override):
    """Exact 1-D factor of PyTorch's average pooling (separable in 2-D)."""
    A = np.zeros((n_out, n))
    for o in range(n_out):
        start = o * s - p
        end = min(start + k, n + p)
        size = end - start
        lo, hi = max(start, 0), min(end, n)
        if override:
            div = 1.0
        elif count_include_pad:
            div = size
        else:
            div = hi - lo
        A[o, lo:hi] = 1.0 / div
    return A


def _adaptive_1d_matrix(n, n_out, average: bool):
    A = np.zeros((n_out, n))
    for o in range(n_out):
        lo, hi = (o * n) // n_out, -((-(o + 1) * n) // n_out)
        A[o, lo:hi] = 1.0 / (hi - lo) if average else 1.0
    return A


def _as_tuple(v, dims):
    return tuple(v) if isinstance(v, tuple | list) else (v,) * dims


def _rule_avgpool(m, ctx) -> float:
    dims = 1 if isinstance(m, nn.AvgPool1d) else 2
    in_shape, out_shape = ctx.input_shape(m), ctx.output_shape(m)
    k, s, p = (_as_tuple(v, dims) for v in (m.kernel_size, m.stride, m.padding))
    override = getattr(m, "divisor_override", None)
    norm = 1.0
    for i in range(dims):
        A = _pool_1d_matrix(
            in_shape[-dims + i], out_shape[-dims + i], k[i], s[i], p[i],
            m.ceil_mode, m.count_include_pad, override,
        )  # fmt: skip
        norm *= float(np.linalg.norm(A, 2))
    if override:
        norm /= override
    return norm * (1.0 + _ROUNDING_MARGIN)


def _rule_adaptive_avgpool(m, ctx) -> float:
    in_shape, out_shape = ctx.input_shape(m), ctx.output_shape(m)
    dims = 1 if isinstance(m, nn.AdaptiveAvgPool1d) else 2
    norm = 1.0
    for i in range(dims):
        A = _adaptive_1d_matrix(in_shape[-dims + i], out_shape[-dims + i], True)
        norm *= float(np.linalg.norm(A, 2))
    return norm * (1.0 + _ROUNDING_MARGIN)


def _rule_maxpool(m, ctx) -> float:
    # |max(a) - max(b)| <= max |a - b| <= ||a - b|| on each window, so the
    # squared output change is at most (windows containing a pixel) times the
    # squared input change: constant sqrt(max multiplicity), per dimension at
    # most min(k, floor((k - 1) d / s) + 1).  Equals 1 when kernel == stride.
    if m.return_indices:
        raise ValueError("MaxPool with return_indices=True is not supported.")
    dims = 1 if isinstance(m, nn.MaxPool1d) else 2
    k, s, d = (_as_tuple(v, dims) for v in (m.kernel_size, m.stride, m.dilation))
    mult = 1
    for kk, ss, dd in zip(k, s, d, strict=True):
        mult *= min(kk, (kk - 1) * dd // ss + 1)
    return math.sqrt(mult)


def _rule_adaptive_maxpool(m, ctx) -> float:
    if m.return_indices:
        raise ValueError("AdaptiveMaxPool with return_indices=True is not supported.")
    in_shape, out_shape = ctx.input_shape(m), ctx.output_shape(m)
    dims = 1 if isinstance(m, nn.AdaptiveMaxPool1d) else 2
    mult = 1
    for i in range(dims):
        A = _adaptive_1d_matrix(in_shape[-dims + i], out_shape[-dims + i], False)
        mult *= int(A.sum(axis=0).max())
    return math.sqrt(mult)


def _rule_leaky(m, ctx) -> float:
    return max(1.0, abs(float(m.negative_slope)))


def _rule_prelu(m, ctx) -> float:
    return max(1.0, float(m.weight.detach().abs().max()))


def _rule_elu(m, ctx) -> float:
    return max(1.0, float(m.alpha))


def _rule_selu(m, ctx) -> float:
    # scale * max(1, alpha), the slope of alpha * scale * exp(x) at 0-.
    return 1.0507009873554805 * 1.6732632423543772


def _rule_gelu(m, ctx) -> float:
    # exact: max of Phi(x) + x phi(x); tanh approximation: rounded-up maximum
    # 1.1289 (checked on a dense grid in the tests).
    return _GELU_EXACT * (1 + 1e-12) if m.approximate == "none" else 1.13


def _rule_normalize(m, ctx) -> float:
    return 1.0 / float(m.std.detach().abs().min())


def _rule_sequential(m, ctx) -> float:
    out = 1.0
    for child in m:
        out *= ctx(child)
    return out


def _rule_residual(m, ctx) -> float:
    return ctx(m.main) + (1.0 if m.shortcut is None else ctx(m.shortcut))


_RULES: dict[type, Callable] = {
    nn.Sequential: _rule_sequential,
    Residual: _rule_residual,
    Normalize: _rule_normalize,
    nn.Linear: _rule_linear,
    nn.Conv1d: _rule_conv,
    nn.Conv2d: _rule_conv,
    nn.BatchNorm1d: _rule_batchnorm,
    nn.BatchNorm2d: _rule_batchnorm,
    nn.AvgPool1d: _rule_avgpool,
    nn.AvgPool2d: _rule_avgpool,
    nn.AdaptiveAvgPool1d: _rule_adaptive_avgpool,
    nn.AdaptiveAvgPool2d: _rule_adaptive_avgpool,
    nn.MaxPool1d: _rule_maxpool,
    nn.MaxPool2d: _rule_maxpool,
    nn.AdaptiveMaxPool1d: _rule_adaptive_maxpool,
    nn.AdaptiveMaxPool2d: _rule_adaptive_maxpool,
    nn.LeakyReLU: _rule_leaky,
    nn.PReLU: _rule_prelu,
    nn.ELU: _rule_elu,
    nn.SELU: _rule_selu,
    nn.GELU: _rule_gelu,
}


class SpectralProductLipschitz(LipschitzEstimator):
    r"""Guaranteed upper bound: the product of certified per-layer bounds.

    For a composition :math:`z = h_m \circ \dots \circ h_1`,
    :math:`\mathrm{Lip}(z) \le \prod_i \mathrm{Lip}(h_i)`; each factor here is
    itself a guaranteed upper bound (never a few power iterations).
    :meth:`logit_constant` returns the bound for the logits,
    :meth:`estimate` multiplies it by the simplex map's constant and the
    temperature.

    Parameters
    ----------
    input_shape : tuple of int or None, default=None
        Shape of one input (without the batch dimension).  Convolutions and
        average pooling need the shapes of their inputs; they are recorded in
        one forward pass on a sample (the first row of ``X`` when given, else
        zeros of this shape).
    rules : dict or None, default=None
        Extra layer rules ``{module_type: rule}``, consulted first (by
        ``isinstance``), with ``rule(module, bound) -> float``, where
        ``bound(child)`` returns the bound of a child module and
        ``bound.input_shape(module)`` its recorded input shape.  This is the
        hook for residual blocks and other modules whose forward is not the
        composition of their children, e.g. for a torchvision ``BasicBlock``:
        ``lambda m, b: b(m.conv1) * b(m.bn1) * b(m.conv2) * b(m.bn2)
        + (b(m.downsample) if m.downsample is not None else 1.0)`` (times 1 for
        the final ReLU).
    assume_sequential : bool, default=False
        Treat a module with children that has no rule as the composition of
        its children in registration order (what the PUB code does).  The
        result is then a bound only if the forward really is that
        composition; by default such modules are refused.
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
        ``max_matrix_size`` entries, else Fourier.
    gram_iterations : int, default=12
        Gram iterations for linear layers too large for an SVD.

    Notes
    -----
    Layer rules (all in float64, each spectral norm inflated by a relative
    1e-9 to cover rounding): ``Linear`` (SVD or Gram iteration); ``Conv1d``/
    ``Conv2d`` as the true operator, stride, padding, dilation and groups
    included (see ``conv_method``); ``BatchNorm1d/2d`` in eval mode,
    ``max |gamma| / sqrt(running_var + eps)``; average pooling, the exact norm
    of its separable operator; max pooling, ``sqrt`` of the number of windows
    that share a pixel (1 when kernel == stride); activations with their
    maximal slope (ReLU 1, Sigmoid 1/4, GELU 1.1289, SiLU 1.1, ...);
    ``Flatten``, ``Dropout`` (eval), ``Identity``: 1; :class:`Normalize`:
    ``1 / min std``; ``nn.Sequential``: the product over its children in
    order; :class:`Residual`: ``L(main) + L(shortcut)``.  Dropout and
    BatchNorm are taken in eval mode, the mode of certification.  An unknown
    layer type raises a ``ValueError`` naming it.  The bound is loose for deep
    networks (the product ignores how layers align; SCIENCE.md section 4) but
    it is guaranteed.

    References
    ----------
    .. [1] Delattre, Barthélemy, Araujo & Allauzen, "Efficient Bound of
       Lipschitz Constant for Convolutional Layers by Gram Iteration",
       ICML 2023.
    .. [2] Sedghi, Gupta & Long, "The Singular Values of Convolutional
       Layers", ICLR 2019.

    Examples
    --------
    >>> import torch
    >>> from smoothlearn.lipschitz import SpectralProductLipschitz
    >>> net = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.ReLU())
    >>> with torch.no_grad():
    ...     _ = net[0].weight.copy_(torch.tensor([[3.0, 0.0], [0.0, 1.0]]))
    >>> round(SpectralProductLipschitz().logit_constant(net), 6)
    3.0
    """

    guaranteed = True

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

    def _record_shapes(self, module, X):
        """Input and output shapes of every submodule, from one forward pass."""
        if X is None and self.input_shape is None:
            return {}
        device, dtype = _module_device(module), _module_dtype(module)
        if X is not None:
            sample = torch.as_tensor(np.asarray(X[:1]) if not torch.is_tensor(X)
                                     else X[:1])  # fmt: skip
        else:
            sample = torch.zeros((1, *tuple(self.input_shape)))
        sample = sample.to(device=device, dtype=dtype)
        shapes = {}

        def hook(mod, args, output):
            if args and torch.is_tensor(args[0]) and torch.is_tensor(output):
                shapes.setdefault(
                    id(mod), (tuple(args[0].shape[1:]), tuple(output.shape[1:]))
                )

        handles = [m.register_forward_hook(hook) for m in module.modules()]
        try:
            with _eval_mode(module), torch.no_grad():
                module(sample)
        finally:
            for h in handles:
                h.remove()
        return shapes

    def _bound(self, module: nn.Module, ctx: _Context) -> float:
        for typ, rule in (self.rules or {}).items():
            if isinstance(module, typ):
                return float(rule(module, ctx))
        typ = type_before_parametrizations(module)
        if typ in _RULES:
            return float(_RULES[typ](module, ctx))
        if typ in _CONSTANT_LAYERS:
            return _CONSTANT_LAYERS[typ]
        children = list(module.children())
        if children and self.assume_sequential:
            out = 1.0
            for child in children:
                out *= ctx(child)
            return out
        if children:
            raise ValueError(
                f"SpectralProductLipschitz cannot bound a {typ.__name__}: its "
                "forward is not known to be the composition of its children. "
                f"Register a rule with rules={{{typ.__name__}: fn}}, or pass "
                "assume_sequential=True if the forward applies the children in "
                "registration order."
            )
        raise ValueError(
            f"SpectralProductLipschitz has no rule for the layer type "
            f"{typ.__name__!r}; register one with rules={{{typ.__name__}: fn}}."
        )

    def logit_constant(self, model, X=None) -> float:
        """Guaranteed upper bound on the l2 Lipschitz constant of the logits.

        Parameters
        ----------
        model : torch.nn.Module or skorch net
        X : array-like of shape (n_inputs, ...), default=None
            Only its first row is used, to record layer input shapes.

        Returns
        -------
        L : float
        """
        self._check_params()
        module = _unwrap(model)
        ctx = _Context(self, self._record_shapes(module, X))
        # Weights are read in eval mode, the mode of certification: a
        # parametrized weight (spectral_norm) is then the one used in the
        # forward, not a fresh power-iteration step.
        with _eval_mode(module), torch.no_grad():
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
