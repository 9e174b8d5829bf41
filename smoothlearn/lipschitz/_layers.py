"""Layers with a known Lipschitz structure, for users to put in their models.

:class:`~smoothlearn.lipschitz.SpectralProductLipschitz` bounds them without
tracing: :class:`Normalize` by ``1 / min |std|``, :class:`Residual` by
``L(main) + L(shortcut)``.
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["Normalize", "Residual"]


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
