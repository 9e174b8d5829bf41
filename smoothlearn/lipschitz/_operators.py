"""Certified operator norms: matrices, convolutions and pooling.

Every function returning a bound computes it in float64 and inflates it by
the relative ``_ROUNDING_MARGIN``; :func:`_conv_power_iteration` is the one
LOWER estimate, used by the tests to check the bounds.
"""

from __future__ import annotations

import copy
import math

import numpy as np
import torch

# Relative margin added to every computed spectral norm: float64 SVD, FFT and
# matrix products are backward stable with relative errors of order n * eps
# (below 1e-11 for the sizes handled here), far below this margin.
_ROUNDING_MARGIN = 1e-9


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


def _conv_matrix(module, in_shape) -> torch.Tensor:
    r"""Matrix of a zero-padded convolution (no bias), built from its kernel.

    With :math:`S^{(t)}_j[o, i] = 1` when input position :math:`i = s\,o + t\,d
    - p_{left}` along dimension :math:`j` (and inside the input), the
    operator is :math:`\sum_t W_t \otimes S^{(t_1)}_1 \otimes \dots`, one
    Kronecker term per kernel tap: the same matrix as :func:`_explicit_operator`
    (tested), without a forward pass per basis vector.
    """
    dims, k, stride, dilation, pads = _conv_geometry(module)
    spatial = tuple(in_shape[1:])
    W = module.weight.detach().to("cpu", torch.float64)
    g = module.groups
    c_out, c_in = W.shape[0], W.shape[1] * g
    if g > 1:  # block-diagonal channel mixing
        full = torch.zeros((c_out, c_in, *k), dtype=torch.float64)
        og, ig = c_out // g, c_in // g
        for j in range(g):
            full[j * og : (j + 1) * og, j * ig : (j + 1) * ig] = W[
                j * og : (j + 1) * og
            ]
        W = full
    sel = []
    for n, kk, s, d, (pl, pr) in zip(spatial, k, stride, dilation, pads, strict=True):
        n_out = (n + pl + pr - d * (kk - 1) - 1) // s + 1
        S = torch.zeros((kk, n_out, n), dtype=torch.float64)
        for t in range(kk):
            for o in range(n_out):
                i = s * o + t * d - pl
                if 0 <= i < n:
                    S[t, o, i] = 1.0
        sel.append(S)
    if dims == 1:
        A = torch.einsum("oct,tyY->oycY", W, sel[0])
    else:
        A = torch.einsum("octu,tyY,uxX->oyxcYX", W, sel[0], sel[1])
    n_out = int(np.prod(A.shape[: 1 + dims]))
    return A.reshape(n_out, -1)


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
