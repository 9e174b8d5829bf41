"""Layer rules: the certified Lipschitz bound of each known module type.

A rule is ``rule(module, ctx) -> float``; ``ctx(child)`` bounds a child
module and ``ctx.input_shape(module)`` gives its recorded input shape.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from contextlib import contextmanager

import numpy as np
import torch
from torch import nn

from ._layers import Normalize, Residual
from ._operators import (
    _ROUNDING_MARGIN,
    _adaptive_1d_matrix,
    _as_tuple,
    _conv_fourier_bound,
    _conv_geometry,
    _conv_matrix,
    _explicit_operator,
    _gram_bound,
    _matrix_norm,
    _pool_1d_matrix,
)

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


class _Context:
    """What a layer rule sees: the recursion and the recorded shapes.

    ``shapes[id(module)]`` is ``(input_shape, output_shape)`` of a module's
    first call and ``inputs[id(module)]`` the positional arguments of that
    call (a batch of one), recorded in one forward pass on a sample; a graph
    walk overrides the shapes with those of each call it bounds.
    """

    def __init__(self, estimator, shapes, inputs=None):
        self.estimator = estimator
        self.shapes = shapes
        self.inputs = {} if inputs is None else inputs

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

    @contextmanager
    def call_shapes(self, module: nn.Module, shapes):
        """Bound ``module`` with the shapes of one call (None: as recorded)."""
        key = id(module)
        saved = self.shapes.get(key)
        if shapes is not None:
            self.shapes[key] = shapes
        try:
            yield
        finally:
            if saved is None:
                self.shapes.pop(key, None)
            else:
                self.shapes[key] = saved


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


def _tap_sum(m) -> float:
    """Sum over kernel taps of the largest channel-mixing norm over groups.

    A convolution is the sum over taps of (zero-padded shift, strided) o
    (channel mixing); shifts and subsampling have norm <= 1, so this bounds it
    (triangle inequality), and equals it for a 1x1 kernel: the operator is
    then the mixing applied at the sampled pixels, zero elsewhere.
    """
    W = m.weight.detach().to("cpu", torch.float64)
    g = m.groups
    W = W.reshape(g, W.shape[0] // g, W.shape[1], -1).permute(3, 0, 1, 2)
    per_tap = torch.linalg.matrix_norm(W, ord=2).amax(dim=1)
    return float(per_tap.sum()) * (1.0 + _ROUNDING_MARGIN)


def _rule_conv(m, ctx) -> float:
    est = ctx.estimator
    method = est.conv_method
    if method == "taps":
        if m.padding_mode != "zeros":
            raise ValueError("conv_method='taps' needs padding_mode='zeros'.")
        return _tap_sum(m)
    if method != "explicit" and all(k == 1 for k in m.weight.shape[2:]):
        # 1x1 kernel: the exact norm, whatever the stride and input size,
        # unless a non-zero padding mode copies border pixels.
        _, _, _, _, pads = _conv_geometry(m)
        if m.padding_mode == "zeros" or not any(p for pair in pads for p in pair):
            return _tap_sum(m)
    in_shape = ctx.input_shape(m)
    out_shape = ctx.output_shape(m)
    size = int(np.prod(in_shape)) * int(np.prod(out_shape))  # matrix entries
    if method == "explicit" or (method == "auto" and size <= est.max_matrix_size):
        if m.padding_mode == "zeros" and len(in_shape) in (2, 3):
            return _matrix_norm(_conv_matrix(m, in_shape))
        return _matrix_norm(_explicit_operator(m, in_shape))
    if m.padding_mode != "zeros":
        raise ValueError(
            f"{type(m).__name__} with padding_mode={m.padding_mode!r} is bounded "
            "only through its explicit matrix, which exceeds max_matrix_size "
            f"({size} > {est.max_matrix_size}); raise max_matrix_size."
        )
    return _conv_fourier_bound(m, in_shape)


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
    return (1.0 + _ROUNDING_MARGIN) / float(m.std.detach().abs().min())


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
