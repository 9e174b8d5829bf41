r"""The literature's released models and result logs.

Randomized-smoothing papers since Cohen, Rosenfeld & Kolter (2019) build on
their released CIFAR-10 ResNet-110 and ImageNet ResNet-50 checkpoints, and
report results as the tab-separated logs their ``certify.py`` writes.  This
module reads both, without torchvision and without a download:

* :func:`get_architecture` builds the released architectures
  (:data:`ARCHITECTURES`): ``"cifar_resnet20"`` and ``"cifar_resnet110"``
  (the CIFAR ResNet of He et al. with basic blocks, depth ``6n + 2``, 16/32/64
  channels and a 1x1 convolution + batch norm shortcut where the shape
  changes, as in Cohen et al.'s ``archs/cifar_resnet.py``) and ``"resnet50"``
  (torchvision's ImageNet ResNet-50, rebuilt here in torchvision's state-dict
  layout).  Each is wrapped, as in Cohen et al.'s ``get_architecture``, as
  ``torch.nn.Sequential(NormalizeLayer(mean, std), network)``: the
  normalisation is the first layer because the noise is added to the image in
  [0, 1], before it, so radii are in pixel units.
* :func:`load_checkpoint` loads a released ``checkpoint.pth.tar`` (a dict
  ``{'epoch', 'arch', 'state_dict', 'optimizer'}``) with
  ``torch.load(weights_only=True)``, which runs no pickled code, and returns
  the model in eval mode.
* :func:`read_certify_log` and :func:`write_certify_log` read and write the
  ``idx label predict radius correct time`` logs, so a published result can
  be compared with, and plotted beside
  (:func:`smoothlearn.plotting.plot_certified_accuracy`), a new
  :class:`~smoothlearn.CertificationResult`.

Nothing here downloads: the checkpoints are distributed by their authors
(Cohen et al.'s README links them), and the user passes a local path.

References
----------
.. [1] Cohen, Rosenfeld & Kolter, "Certified Adversarial Robustness via
   Randomized Smoothing", ICML 2019; code, models and logs at
   https://github.com/locuslab/smoothing.
.. [2] He, Zhang, Ren & Sun, "Deep Residual Learning for Image Recognition",
   CVPR 2016.
.. [3] Salman et al., "Provably Robust Deep Learning via Adversarially
   Trained Smoothed Classifiers", NeurIPS 2019 (SmoothAdv: the same
   architectures, with an input-centring first layer).
"""

from __future__ import annotations

import datetime
import math
import numbers
import os
import re
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from os import PathLike

import numpy as np
import torch
from numpy.typing import ArrayLike, NDArray
from torch import nn

from .metrics import _check_radii
from .result import CertificationResult

__all__ = [
    "ARCHITECTURES",
    "CertifyLog",
    "NormalizeLayer",
    "get_architecture",
    "load_checkpoint",
    "read_certify_log",
    "write_certify_log",
]

#: Names accepted by :func:`get_architecture` and found in the ``'arch'``
#: entry of the released checkpoints.
ARCHITECTURES = ("cifar_resnet20", "cifar_resnet110", "resnet50")

# Cohen et al.'s datasets.py: the channel statistics their models were
# trained with (the CIFAR-10 "std" values are the ones the community copied
# from an early script, not the pixel standard deviations; they are what the
# checkpoints expect).
_CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
_CIFAR10_STD = (0.2023, 0.1994, 0.2010)
_IMAGENET_MEAN = (0.485, 0.456, 0.406)
_IMAGENET_STD = (0.229, 0.224, 0.225)

# name -> (dataset statistics, default number of classes)
_ARCH_SPECS = {
    "cifar_resnet20": ((_CIFAR10_MEAN, _CIFAR10_STD), 10),
    "cifar_resnet110": ((_CIFAR10_MEAN, _CIFAR10_STD), 10),
    "resnet50": ((_IMAGENET_MEAN, _IMAGENET_STD), 1000),
}

_NORMALIZATIONS = ("standardize", "center")

# Prefixes removed from checkpoint keys, in this order: DataParallel around
# the whole model, the Sequential index of the network behind the
# normalisation layer, DataParallel around the network (Cohen's ImageNet
# ResNet-50: '1.module.conv1.weight').
_KEY_PREFIXES = ("module.", "1.", "module.")


# ---------------------------------------------------------------------------
# Input normalisation
# ---------------------------------------------------------------------------
class NormalizeLayer(nn.Module):
    r"""Per-channel input normalisation ``(x - mean) / std`` of image batches.

    The first layer of every model of :func:`get_architecture`, as in Cohen
    et al.'s code: smoothing noise is added to the raw image (pixels in
    [0, 1]) and normalised with it, so certified radii are in pixel units.

    Parameters
    ----------
    mean : array-like of shape (n_channels,)
        Channel means, subtracted.
    std : array-like of shape (n_channels,)
        Channel scales, > 0; all ones for input centring (SmoothAdv).

    Attributes
    ----------
    mean, std : torch.Tensor of shape (n_channels,)
        Buffers: they follow the module's ``.to(device, dtype)`` but are not
        part of its ``state_dict`` (the released checkpoints hold no entry for
        this layer, so they load with ``strict=True``).

    Notes
    -----
    Inputs have shape ``(batch, n_channels, height, width)``.  The map is
    affine with the diagonal linear part :math:`\mathrm{diag}(1/\mathrm{std}_c)`,
    so its l2 Lipschitz constant is

    .. math::

        \mathrm{Lip} = \frac{1}{\min_c \mathrm{std}_c},

    which a bound of the whole model's constant (in the units of the noise)
    must include: about 5.02 for CIFAR-10's statistics and 4.46 for
    ImageNet's.

    Examples
    --------
    >>> import torch
    >>> from smoothlearn.zoo import NormalizeLayer
    >>> layer = NormalizeLayer([0.5, 0.5, 0.5], [0.25, 0.5, 1.0])
    >>> layer(torch.full((1, 3, 1, 1), 1.0)).flatten()
    tensor([2.0000, 1.0000, 0.5000])
    >>> list(layer.state_dict())
    []
    """

    def __init__(self, mean: ArrayLike, std: ArrayLike):
        super().__init__()
        mean_t = _channel_vector(mean, "mean")
        std_t = _channel_vector(std, "std")
        if mean_t.shape != std_t.shape:
            raise ValueError(
                "The 'mean' and 'std' parameters of NormalizeLayer must have one "
                f"entry per channel each. Got {mean_t.numel()} and {std_t.numel()} "
                "entries instead."
            )
        if not bool(torch.all(std_t > 0)):
            raise ValueError(
                "The 'std' parameter of NormalizeLayer must hold positive values. "
                f"Got {std_t.tolist()} instead."
            )
        self.register_buffer("mean", mean_t, persistent=False)
        self.register_buffer("std", std_t, persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(x - mean) / std`` per channel; ``x`` of shape (batch, C, H, W)."""
        # Indexing with None (not x.dim()) keeps the layer traceable by torch.fx.
        return (x - self.mean[:, None, None]) / self.std[:, None, None]

    def extra_repr(self) -> str:
        """The channel statistics, shown by ``repr``."""
        mean = ", ".join(f"{v:.4g}" for v in self.mean.tolist())
        std = ", ".join(f"{v:.4g}" for v in self.std.tolist())
        return f"mean=({mean}), std=({std})"


def _channel_vector(values, name: str) -> torch.Tensor:
    try:
        t = torch.as_tensor(np.asarray(values, dtype=np.float64), dtype=torch.float32)
    except (TypeError, ValueError) as exc:
        raise ValueError(
            f"The {name!r} parameter of NormalizeLayer must be a sequence of floats. "
            f"Got {values!r} instead."
        ) from exc
    if t.dim() != 1 or t.numel() == 0 or not bool(torch.all(torch.isfinite(t))):
        raise ValueError(
            f"The {name!r} parameter of NormalizeLayer must be a non-empty 1-D "
            f"sequence of finite floats (one per channel). Got {values!r} instead."
        )
    return t


# ---------------------------------------------------------------------------
# Residual networks, in the state-dict layout of the released checkpoints
# ---------------------------------------------------------------------------
class _BasicBlock(nn.Module):
    """conv3x3-BN-ReLU-conv3x3-BN, plus the shortcut, then ReLU."""

    expansion = 1

    def __init__(self, inplanes, planes, stride=1, downsample=None):
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU()
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = downsample

    def forward(self, x):
        shortcut = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + shortcut)


class _Bottleneck(nn.Module):
    """torchvision's bottleneck: 1x1, 3x3 (with the stride), 1x1 x4 channels."""

    expansion = 4

    def __init__(self, inplanes, planes, stride=1, downsample=None):
        super().__init__()
        width = planes * self.expansion
        self.conv1 = nn.Conv2d(inplanes, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, width, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(width)
        self.relu = nn.ReLU()
        self.downsample = downsample

    def forward(self, x):
        shortcut = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + shortcut)


def _make_stage(block, inplanes: int, planes: int, blocks: int, stride: int):
    """``blocks`` blocks; the first changes the shape (1x1 conv + BN shortcut)."""
    downsample = None
    if stride != 1 or inplanes != planes * block.expansion:
        downsample = nn.Sequential(
            nn.Conv2d(inplanes, planes * block.expansion, 1, stride, bias=False),
            nn.BatchNorm2d(planes * block.expansion),
        )
    layers = [block(inplanes, planes, stride, downsample)]
    inplanes = planes * block.expansion
    layers += [block(inplanes, planes) for _ in range(1, blocks)]
    return nn.Sequential(*layers), inplanes


def _init_weights(model: nn.Module) -> None:
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


class _CifarResNet(nn.Module):
    """He et al.'s CIFAR ResNet of depth ``6n + 2`` (Cohen's ``cifar_resnet``)."""

    def __init__(self, depth: int, num_classes: int = 10):
        super().__init__()
        n = (depth - 2) // 6
        self.conv1 = nn.Conv2d(3, 16, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        self.relu = nn.ReLU()
        self.layer1, inplanes = _make_stage(_BasicBlock, 16, 16, n, 1)
        self.layer2, inplanes = _make_stage(_BasicBlock, inplanes, 32, n, 2)
        self.layer3, inplanes = _make_stage(_BasicBlock, inplanes, 64, n, 2)
        # A fixed 8x8 window, as released: 32x32 inputs end at 8x8 here.
        self.avgpool = nn.AvgPool2d(8)
        self.fc = nn.Linear(inplanes, num_classes)
        _init_weights(self)

    def forward(self, x):
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.layer3(self.layer2(self.layer1(x)))
        return self.fc(torch.flatten(self.avgpool(x), 1))


class _ImageNetResNet(nn.Module):
    """torchvision's ResNet with bottleneck blocks (ResNet-50: [3, 4, 6, 3])."""

    def __init__(self, layers=(3, 4, 6, 3), num_classes: int = 1000):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU()
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        inplanes = 64
        self.layer1, inplanes = _make_stage(_Bottleneck, inplanes, 64, layers[0], 1)
        self.layer2, inplanes = _make_stage(_Bottleneck, inplanes, 128, layers[1], 2)
        self.layer3, inplanes = _make_stage(_Bottleneck, inplanes, 256, layers[2], 2)
        self.layer4, inplanes = _make_stage(_Bottleneck, inplanes, 512, layers[3], 2)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(inplanes, num_classes)
        _init_weights(self)

    def forward(self, x):
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(self.avgpool(x), 1))


def _check_arch(name, param: str = "name") -> str:
    if not isinstance(name, str) or name not in ARCHITECTURES:
        valid = ", ".join(repr(a) for a in ARCHITECTURES)
        raise ValueError(
            f"The {param!r} parameter must be a str among {{{valid}}}. "
            f"Got {name!r} instead."
        )
    return name


def get_architecture(
    name: str, num_classes: int | None = None, *, normalization: str = "standardize"
) -> nn.Sequential:
    """A released architecture with random weights, its normalisation first.

    Parameters
    ----------
    name : {"cifar_resnet20", "cifar_resnet110", "resnet50"}
        ``"cifar_resnet20"`` and ``"cifar_resnet110"``: He et al.'s CIFAR
        ResNets (basic blocks, depth ``6n + 2``, 16/32/64 channels, 1x1
        convolution + batch norm shortcuts, 8x8 average pooling) with
        CIFAR-10's channel statistics, for 3x32x32 images.  ``"resnet50"``:
        torchvision's ResNet-50 (bottleneck blocks [3, 4, 6, 3], the stride
        in the 3x3 convolution) with ImageNet's statistics, for 3x224x224
        images (any size >= 32 runs: the pooling is adaptive).
    num_classes : int, default=None
        Outputs of the last layer; 10 for the CIFAR networks and 1000 for
        ResNet-50 when None.
    normalization : {"standardize", "center"}, default="standardize"
        First layer: ``(x - mean) / std`` as in Cohen et al., or ``x - mean``
        (std of ones) as in SmoothAdv (Salman et al. 2019), whose
        checkpoints share these layouts.  The checkpoints cannot tell the
        two apart: pass the one the model was trained with.

    Returns
    -------
    model : torch.nn.Sequential
        ``Sequential(NormalizeLayer, network)``, in training mode like any
        new module; its ``state_dict`` keys are those of the released
        checkpoints without DataParallel (``'1.conv1.weight'``,
        ``'1.layer1.0.bn1.running_mean'``, ..., ``'1.fc.bias'``).

    Examples
    --------
    >>> import torch
    >>> from smoothlearn.zoo import get_architecture
    >>> model = get_architecture("cifar_resnet20").eval()
    >>> model(torch.rand(2, 3, 32, 32)).shape
    torch.Size([2, 10])
    >>> sum(p.numel() for p in model.parameters())
    272474
    >>> next(iter(model.state_dict()))
    '1.conv1.weight'
    """
    _check_arch(name)
    (mean, std), default_classes = _ARCH_SPECS[name]
    if num_classes is None:
        num_classes = default_classes
    elif (
        isinstance(num_classes, bool | np.bool_)
        or not isinstance(num_classes, numbers.Integral)
        or num_classes < 1
    ):
        raise ValueError(
            "The 'num_classes' parameter must be a positive int or None. "
            f"Got {num_classes!r} instead."
        )
    if not isinstance(normalization, str) or normalization not in _NORMALIZATIONS:
        raise ValueError(
            "The 'normalization' parameter must be a str among {'center', "
            f"'standardize'}}. Got {normalization!r} instead."
        )
    if normalization == "center":
        std = (1.0,) * len(mean)
    if name == "resnet50":
        network = _ImageNetResNet((3, 4, 6, 3), int(num_classes))
    else:
        network = _CifarResNet(int(name.removeprefix("cifar_resnet")), int(num_classes))
    return nn.Sequential(NormalizeLayer(mean, std), network)


# ---------------------------------------------------------------------------
# Checkpoints
# ---------------------------------------------------------------------------
def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _network_keys(state_dict: Mapping, path) -> dict:
    """The state dict with the released prefixes removed (see _KEY_PREFIXES)."""
    out: dict = {}
    for key, value in state_dict.items():
        if not isinstance(key, str) or not isinstance(value, torch.Tensor):
            raise ValueError(
                f"The checkpoint {path!r} is not a checkpoint of a torch module: its "
                f"'state_dict' maps {key!r} to a {type(value).__name__}, not a "
                "tensor."
            )
        short = key
        for prefix in _KEY_PREFIXES:
            short = short.removeprefix(prefix)
        if short in out:
            raise ValueError(
                f"The checkpoint {path!r} holds the parameter {short!r} twice (under "
                "different prefixes); it is not a single model."
            )
        out[short] = value
    return out


def _examples(keys) -> str:
    keys = sorted(keys)
    shown = ", ".join(repr(k) for k in keys[:3])
    return shown + (", ..." if len(keys) > 3 else "")


def load_checkpoint(
    path: str | PathLike,
    *,
    arch: str | None = None,
    normalization: str = "standardize",
    map_location="cpu",
) -> nn.Sequential:
    """Load a released checkpoint (Cohen et al., SmoothAdv) into its architecture.

    Parameters
    ----------
    path : str or path-like
        A local ``checkpoint.pth.tar``: a dict with ``'arch'`` and
        ``'state_dict'`` (the released files also hold ``'epoch'`` and
        ``'optimizer'``, which are ignored), or a bare state dict of tensors
        together with ``arch``.  Never downloaded.
    arch : {"cifar_resnet20", "cifar_resnet110", "resnet50"}, default=None
        The architecture; None reads the checkpoint's ``'arch'`` entry.  When
        both are given they must agree.
    normalization : {"standardize", "center"}, default="standardize"
        The first layer (see :func:`get_architecture`): ``"standardize"`` for
        Cohen et al.'s models, ``"center"`` for SmoothAdv's.
    map_location : str, torch.device, dict or callable, default="cpu"
        Passed to :func:`torch.load`; when a device (str or
        :class:`torch.device`), the model is moved there too.

    Returns
    -------
    model : torch.nn.Sequential
        ``Sequential(NormalizeLayer, network)`` in eval mode (batch norm uses
        its running statistics), taking images with pixels in [0, 1].

    Raises
    ------
    FileNotFoundError
        When ``path`` does not exist.
    ValueError
        When the file is not a torch checkpoint readable with
        ``weights_only=True``, has no ``'state_dict'``, names an unknown
        architecture, or its keys or shapes do not match the architecture
        (the message lists some missing and unexpected keys).

    Notes
    -----
    The file is read with ``torch.load(weights_only=True)``, which rebuilds
    tensors and plain containers only and runs no code from the file.  Keys
    are matched after removing the prefixes ``'module.'`` (DataParallel) and
    ``'1.'`` (the network's index behind the normalisation layer), so
    ``'1.conv1.weight'`` (Cohen's CIFAR models), ``'1.module.conv1.weight'``
    (their ImageNet ResNet-50, saved under DataParallel) and a bare
    torchvision ``'conv1.weight'`` all load.  The number of classes is read
    from the shape of ``'fc.weight'``.

    Examples
    --------
    >>> import os, tempfile, torch
    >>> from smoothlearn.zoo import get_architecture, load_checkpoint
    >>> model = get_architecture("cifar_resnet20")
    >>> path = os.path.join(tempfile.mkdtemp(), "checkpoint.pth.tar")
    >>> torch.save({"epoch": 90, "arch": "cifar_resnet20",
    ...             "state_dict": model.state_dict(), "optimizer": {}}, path)
    >>> loaded = load_checkpoint(path)
    >>> loaded.training
    False
    >>> x = torch.rand(1, 3, 32, 32)
    >>> torch.equal(loaded(x), model.eval()(x))
    True
    """
    try:
        checkpoint = torch.load(path, map_location=map_location, weights_only=True)
    except FileNotFoundError:
        raise
    except Exception as exc:  # torch raises several types for a bad file
        raise ValueError(
            f"Cannot read {os.fspath(path)!r} as a torch checkpoint with "
            f"torch.load(weights_only=True): {_first_line(exc)}"
        ) from exc
    path = os.fspath(path)
    if not isinstance(checkpoint, Mapping):
        raise ValueError(
            f"The file {path!r} is not a checkpoint: expected a dict with 'arch' and "
            f"'state_dict' entries. Got a {type(checkpoint).__name__} instead."
        )
    if "state_dict" in checkpoint:
        state_dict, saved_arch = checkpoint["state_dict"], checkpoint.get("arch")
    elif checkpoint and all(isinstance(v, torch.Tensor) for v in checkpoint.values()):
        state_dict, saved_arch = checkpoint, None  # a bare state dict
    else:
        raise ValueError(
            f"The file {path!r} is not a checkpoint: expected a dict with a "
            f"'state_dict' entry (or a state dict of tensors). Got the keys "
            f"{_examples(map(str, checkpoint))} instead."
        )
    if not isinstance(state_dict, Mapping):
        raise ValueError(
            f"The 'state_dict' entry of {path!r} must be a dict of tensors. Got a "
            f"{type(state_dict).__name__} instead."
        )
    if arch is None:
        if saved_arch is None:
            raise ValueError(
                f"The checkpoint {path!r} does not say its architecture (no 'arch' "
                "entry): pass arch= among " + ", ".join(map(repr, ARCHITECTURES)) + "."
            )
        if not isinstance(saved_arch, str) or saved_arch not in ARCHITECTURES:
            raise ValueError(
                f"The checkpoint {path!r} is of the architecture {saved_arch!r}, which "
                "smoothlearn.zoo does not build; it builds "
                + ", ".join(map(repr, ARCHITECTURES))
                + "."
            )
        arch = saved_arch
    else:
        _check_arch(arch, "arch")
        if saved_arch is not None and saved_arch != arch:
            raise ValueError(
                f"The 'arch' parameter is {arch!r} but the checkpoint {path!r} says "
                f"{saved_arch!r}."
            )
    weights = _network_keys(state_dict, path)
    fc = weights.get("fc.weight")
    num_classes = int(fc.shape[0]) if fc is not None and fc.dim() == 2 else None
    model = get_architecture(arch, num_classes, normalization=normalization)
    try:
        missing, unexpected = model[1].load_state_dict(weights, strict=False)
    except RuntimeError as exc:  # shape mismatches
        details = " ".join(line.strip() for line in str(exc).splitlines()[1:4])
        raise ValueError(
            f"The checkpoint {path!r} does not match the architecture {arch!r}: "
            f"{details}"
        ) from exc
    if missing or unexpected:
        raise ValueError(
            f"The checkpoint {path!r} does not match the architecture {arch!r}: "
            f"{len(missing)} missing keys ({_examples(missing)}) and "
            f"{len(unexpected)} unexpected keys ({_examples(unexpected)}), compared "
            "after removing the prefixes 'module.' (DataParallel) and '1.' (the "
            "network behind the normalisation layer)."
        )
    if isinstance(map_location, str | torch.device):
        model = model.to(map_location)
    return model.eval()


# ---------------------------------------------------------------------------
# Cohen-format certification logs
# ---------------------------------------------------------------------------
_LOG_COLUMNS = ("idx", "label", "predict", "radius", "correct", "time")
_TIMEDELTA = re.compile(
    r"^(?:(?P<days>-?\d+) days?, )?(?P<h>\d+):(?P<m>\d{1,2}):(?P<s>\d{1,2}(?:\.\d*)?)$"
)


def _parse_time(text: str) -> float:
    """Seconds from ``'15.4'`` or from ``str(timedelta)`` (``'0:00:15.123456'``)."""
    try:
        return float(text)
    except ValueError:
        pass
    match = _TIMEDELTA.match(text)
    if match is None:
        raise ValueError(text)
    days = int(match["days"] or 0)
    return (
        days * 86400.0
        + int(match["h"]) * 3600.0
        + int(match["m"]) * 60.0
        + float(match["s"])
    )


def _format_time(seconds: float) -> str:
    if not math.isfinite(seconds):
        return repr(float(seconds))
    return str(datetime.timedelta(seconds=float(seconds)))


def _integer_labels(values, name: str) -> NDArray[np.int64]:
    arr = np.asarray(values)
    ok = arr.dtype.kind in "iu" or (
        arr.dtype.kind == "f"
        and bool(np.all(np.isfinite(arr)))
        and bool(np.all(arr == np.round(arr)))
    )
    if not ok or (arr.size and arr.min() < 0):
        raise ValueError(
            f"The {name!r} parameter must hold class indices (integers >= 0): a "
            "Cohen-format log has integer labels and uses -1 for an abstention. "
            f"Got {arr[:5].tolist()!r}{' ...' if arr.size > 5 else ''} instead."
        )
    return arr.astype(np.int64)


@dataclass(frozen=True, eq=False)
class CertifyLog:
    r"""A certification log in the format of Cohen et al.'s ``certify.py``.

    One row per certified input; read one with :func:`read_certify_log`,
    write one with :func:`write_certify_log` or :meth:`write`, turn a result
    into one with :meth:`from_result`.

    Attributes
    ----------
    idx : ndarray of shape (n_inputs,), dtype int64
        Index of the input in its data set (every 20th CIFAR-10 test image
        in the published CIFAR-10 logs: 0, 20, ..., 9980).
    label : ndarray of shape (n_inputs,), dtype int64
        True class.
    predict : ndarray of shape (n_inputs,), dtype int64
        Certified class, -1 for an abstention.
    radius : ndarray of shape (n_inputs,), dtype float64
        Certified l2 radius (0 for an abstention).
    correct : ndarray of shape (n_inputs,), dtype bool
        The log's ``correct`` column: the prediction equals the label.
    time : ndarray of shape (n_inputs,), dtype float64
        Seconds spent on the input (NaN when the log has no time column).
    source : str or None
        The file the log was read from.

    Notes
    -----
    The certified accuracy at radius :math:`r` is

    .. math::

        \frac{1}{m} \sum_i 1[\text{correct}_i,\ \text{predict}_i \ne -1,\
        \text{radius}_i \ge r],

    with ``>=``, as in Cohen et al.'s ``analyze.py``
    (``df["correct"] & (df["radius"] >= radius)``) and in
    :func:`smoothlearn.metrics.certified_accuracy`; abstentions count as
    wrong.  ``certify.py`` writes the radius with 3 significant digits
    (``'{:.3}'``), rounded to nearest: a published radius may exceed the
    computed one by half a unit in its last digit, so accuracies at a radius
    equal to a logged value can differ from the unrounded run's.

    Examples
    --------
    >>> from smoothlearn.zoo import CertifyLog
    >>> log = CertifyLog(idx=[0, 20, 40], label=[3, 7, 4], predict=[3, -1, 4],
    ...                  radius=[0.378, 0.0, 0.341], correct=[1, 0, 1])
    >>> log.certified_accuracy([0.0, 0.35])
    array([0.66666667, 0.33333333])
    >>> round(log.average_certified_radius(), 4)
    0.2397
    """

    idx: NDArray[np.int64]
    label: NDArray[np.int64]
    predict: NDArray[np.int64]
    radius: NDArray[np.float64]
    correct: NDArray[np.bool_]
    time: NDArray[np.float64] | None = None
    source: str | None = None

    def __post_init__(self):
        radius = np.asarray(self.radius, dtype=np.float64)
        if radius.ndim != 1:
            raise ValueError(
                "The 'radius' parameter of CertifyLog must be 1-D. Got shape "
                f"{radius.shape} instead."
            )
        m = radius.shape[0]
        time = np.full(m, np.nan) if self.time is None else self.time
        columns = {
            "idx": (self.idx, np.int64),
            "label": (self.label, np.int64),
            "predict": (self.predict, np.int64),
            "correct": (self.correct, np.bool_),
            "time": (time, np.float64),
        }
        for name, (values, dtype) in columns.items():
            arr = np.asarray(values)
            if arr.shape != (m,):
                raise ValueError(
                    f"The {name!r} parameter of CertifyLog must have shape ({m},), "
                    f"like 'radius'. Got {arr.shape} instead."
                )
            object.__setattr__(self, name, arr.astype(dtype))
        if np.any(np.isnan(radius)) or np.any(radius < 0):
            raise ValueError(
                "The 'radius' parameter of CertifyLog must hold radii >= 0."
            )
        object.__setattr__(self, "radius", radius)

    @property
    def n_inputs(self) -> int:
        """Number of rows."""
        return int(self.radius.shape[0])

    def __len__(self) -> int:
        return self.n_inputs

    @property
    def abstained(self) -> NDArray[np.bool_]:
        """Where ``predict == -1``."""
        return self.predict == -1

    def __repr__(self) -> str:
        where = f", source={self.source!r}" if self.source is not None else ""
        return f"CertifyLog(n_inputs={self.n_inputs}{where})"

    def _certified_correct(self) -> NDArray[np.bool_]:
        return self.correct & ~self.abstained

    def certified_accuracy(self, radius: ArrayLike = 0.0) -> float | NDArray:
        """Fraction of rows certified correct at l2 radius ``radius``.

        Parameters
        ----------
        radius : float or array-like of shape (n_radii,), default=0.0
            Radius or radii, >= 0.

        Returns
        -------
        accuracy : float or ndarray of shape (n_radii,)
            ``mean(correct & (predict != -1) & (radius_i >= r))``.
        """
        r = _check_radii(radius)
        if self.n_inputs == 0:
            raise ValueError("The log holds no inputs.")
        ok = self._certified_correct()[:, None] & (
            self.radius[:, None] >= r.reshape(1, -1)
        )
        acc = ok.mean(axis=0)
        return float(acc[0]) if r.ndim == 0 else acc.reshape(r.shape)

    def average_certified_radius(self) -> float:
        """Average certified radius: the mean of ``radius * correct`` (ACR)."""
        if self.n_inputs == 0:
            raise ValueError("The log holds no inputs.")
        return float(np.mean(np.where(self._certified_correct(), self.radius, 0.0)))

    def certified_accuracy_curve(
        self, radii: ArrayLike | None = None
    ) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
        """Certified accuracy against the radius.

        Parameters
        ----------
        radii : array-like of shape (n_radii,), default=None
            Where to evaluate; None uses 0 and every distinct radius of a
            correct row (where the step curve drops).

        Returns
        -------
        radii : ndarray of shape (n_radii,)
            Sorted radii.
        accuracy : ndarray of shape (n_radii,)
        """
        if radii is None:
            radii = np.unique(
                np.concatenate([[0.0], self.radius[self._certified_correct()]])
            )
        else:
            radii = np.sort(_check_radii(radii, "radii").ravel())
        return radii, np.asarray(self.certified_accuracy(radii), dtype=np.float64)

    @classmethod
    def from_result(
        cls,
        result: CertificationResult,
        y: ArrayLike,
        *,
        idx: ArrayLike | None = None,
        time: ArrayLike | None = None,
    ) -> CertifyLog:
        """The log of a :class:`~smoothlearn.CertificationResult`.

        Parameters
        ----------
        result : CertificationResult
            Certificates of ``n_inputs`` inputs with integer class labels.
        y : array-like of shape (n_inputs,)
            True labels (class indices, integers >= 0).
        idx : array-like of shape (n_inputs,), default=None
            Index of each input in its data set; ``0, 1, ..., n_inputs - 1``
            when None (pass ``np.arange(0, 10000, 20)`` for every 20th image).
        time : float or array-like of shape (n_inputs,), default=None
            Seconds per input; 0 when None.

        Returns
        -------
        log : CertifyLog
        """
        if not isinstance(result, CertificationResult):
            raise TypeError(
                "The 'result' parameter must be a CertificationResult. "
                f"Got {type(result).__name__} instead."
            )
        m = result.n_inputs
        y_arr = np.asarray(y)
        if y_arr.shape != (m,):
            raise ValueError(
                f"The 'y' parameter must have shape ({m},), one label per certified "
                f"input. Got {y_arr.shape} instead."
            )
        label = _integer_labels(y_arr, "y")
        abstained = np.asarray(result.abstained, dtype=bool)
        kept = np.asarray(result.prediction)[~abstained]
        predict = np.full(m, -1, dtype=np.int64)
        predict[~abstained] = _integer_labels(kept, "result.prediction")
        if idx is None:
            idx_arr = np.arange(m, dtype=np.int64)
        else:
            idx_arr = np.asarray(idx)
            if idx_arr.shape != (m,) or idx_arr.dtype.kind not in "iu":
                raise ValueError(
                    f"The 'idx' parameter must be an int array of shape ({m},). "
                    f"Got {idx_arr.dtype} of shape {idx_arr.shape} instead."
                )
        if time is None:
            time_arr = np.zeros(m)
        else:
            try:
                time_arr = np.broadcast_to(np.asarray(time, dtype=np.float64), (m,))
            except (TypeError, ValueError) as exc:
                raise ValueError(
                    "The 'time' parameter must be a float or an array of shape "
                    f"({m},) of seconds. Got {time!r} instead."
                ) from exc
            if np.any(~np.isfinite(time_arr)) or np.any(time_arr < 0):
                raise ValueError(
                    "The 'time' parameter must hold finite seconds >= 0. "
                    f"Got {time!r} instead."
                )
        radius = np.where(abstained, 0.0, np.asarray(result.radius, dtype=np.float64))
        return cls(
            idx=idx_arr,
            label=label,
            predict=predict,
            radius=radius,
            correct=(predict == label) & ~abstained,
            time=np.array(time_arr, dtype=np.float64),
        )

    def write(self, path: str | PathLike) -> None:
        """Write the log in Cohen et al.'s format (tab-separated, header first).

        The radius is written with all its digits (``repr``), so it reads
        back exactly; the time as ``str(datetime.timedelta)``, as
        ``certify.py`` does.

        Parameters
        ----------
        path : str or path-like
        """
        lines = ["\t".join(_LOG_COLUMNS)]
        for i, lab, pred, rad, cor, sec in zip(
            self.idx.tolist(),
            self.label.tolist(),
            self.predict.tolist(),
            self.radius.tolist(),
            self.correct.tolist(),
            self.time.tolist(),
            strict=True,
        ):
            lines.append(
                f"{i}\t{lab}\t{pred}\t{rad!r}\t{int(cor)}\t{_format_time(sec)}"
            )
        with open(path, "w", encoding="utf-8", newline="\n") as f:
            f.write("\n".join(lines) + "\n")


def read_certify_log(path: str | PathLike) -> CertifyLog:
    """Read a log written by Cohen et al.'s ``certify.py`` (or a compatible one).

    Parameters
    ----------
    path : str or path-like
        A tab-separated text file whose header names the columns ``idx label
        predict radius correct time`` (``time`` may be missing; other extra
        columns are ignored).  ``predict`` is -1 for an abstention; ``time``
        is seconds (``15.4``) or a :class:`datetime.timedelta` string
        (``0:00:15.123456``).

    Returns
    -------
    log : CertifyLog

    Raises
    ------
    ValueError
        When the header lacks a column or a row cannot be parsed (the message
        gives the line number).

    Warns
    -----
    UserWarning
        When the ``correct`` column disagrees with ``predict == label`` on
        some rows (the column is used as written).

    Examples
    --------
    >>> import os, tempfile
    >>> from smoothlearn.zoo import read_certify_log
    >>> path = os.path.join(tempfile.mkdtemp(), "sigma_0.25")
    >>> with open(path, "w") as f:
    ...     _ = f.write("idx\\tlabel\\tpredict\\tradius\\tcorrect\\ttime\\n"
    ...                 "0\\t3\\t3\\t0.378\\t1\\t0:00:15.4\\n"
    ...                 "20\\t7\\t-1\\t0.0\\t0\\t0:00:15.6\\n")
    >>> log = read_certify_log(path)
    >>> log.predict, log.time
    (array([ 3, -1]), array([15.4, 15.6]))
    >>> log.certified_accuracy(0.25)
    0.5
    """
    path = os.fspath(path)
    with open(path, encoding="utf-8") as f:
        lines = [(n, line.rstrip("\r\n")) for n, line in enumerate(f, start=1)]
    lines = [(n, line) for n, line in lines if line.strip()]
    expected = "\t".join(_LOG_COLUMNS)
    if not lines:
        raise ValueError(
            f"The log {path!r} is empty; expected the header {expected!r}."
        )
    header = [h.strip() for h in lines[0][1].split("\t")]
    missing = [c for c in _LOG_COLUMNS[:5] if c not in header]
    if missing:
        raise ValueError(
            f"The log {path!r} is not in Cohen et al.'s format: its header "
            f"{lines[0][1]!r} lacks the columns {missing}; expected the tab-separated "
            f"header {expected!r}."
        )
    pos = {c: header.index(c) for c in _LOG_COLUMNS if c in header}
    parsers = {
        "idx": int,
        "label": int,
        "predict": int,
        "radius": float,
        "correct": int,
        "time": _parse_time,
    }
    values: dict[str, list] = {c: [] for c in pos}
    for number, line in lines[1:]:
        fields = [v.strip() for v in line.split("\t")]
        if len(fields) != len(header):
            raise ValueError(
                f"Line {number} of the log {path!r} has {len(fields)} tab-separated "
                f"fields; the header has {len(header)}."
            )
        for column, i in pos.items():
            try:
                values[column].append(parsers[column](fields[i]))
            except ValueError:
                raise ValueError(
                    f"Line {number} of the log {path!r}: cannot read the "
                    f"{column!r} value {fields[i]!r}."
                ) from None
        if values["correct"][-1] not in (0, 1):
            raise ValueError(
                f"Line {number} of the log {path!r}: the 'correct' value must be 0 "
                f"or 1. Got {fields[pos['correct']]!r} instead."
            )
        if not values["radius"][-1] >= 0:
            raise ValueError(
                f"Line {number} of the log {path!r}: the radius must be >= 0. Got "
                f"{fields[pos['radius']]!r} instead."
            )
    log = CertifyLog(
        idx=np.array(values["idx"], dtype=np.int64),
        label=np.array(values["label"], dtype=np.int64),
        predict=np.array(values["predict"], dtype=np.int64),
        radius=np.array(values["radius"], dtype=np.float64),
        correct=np.array(values["correct"], dtype=bool),
        time=np.array(values["time"], dtype=np.float64) if "time" in pos else None,
        source=path,
    )
    disagree = int(np.sum(log.correct != ((log.predict == log.label) & ~log.abstained)))
    if disagree:
        warnings.warn(
            f"In the log {path!r}, the 'correct' column disagrees with "
            f"predict == label on {disagree} rows; certified accuracy uses the "
            "'correct' column as written (and counts abstentions as wrong).",
            UserWarning,
            stacklevel=2,
        )
    return log


def write_certify_log(
    result: CertificationResult,
    y: ArrayLike,
    path: str | PathLike,
    *,
    idx: ArrayLike | None = None,
    time: ArrayLike | None = None,
) -> CertifyLog:
    """Write a result as a log in Cohen et al.'s format.

    Parameters
    ----------
    result : CertificationResult
        Certificates with integer class labels (class indices).
    y : array-like of shape (n_inputs,)
        True labels.
    path : str or path-like
        Where to write; an existing file is replaced.
    idx : array-like of shape (n_inputs,), default=None
        Index of each input in its data set; ``0, ..., n_inputs - 1`` when
        None.
    time : float or array-like of shape (n_inputs,), default=None
        Seconds per input (written as ``0:00:15.400000``); 0 when None.

    Returns
    -------
    log : CertifyLog
        What was written (:meth:`CertifyLog.from_result`).

    Examples
    --------
    >>> import os, tempfile
    >>> from smoothlearn import CertificationResult
    >>> from smoothlearn.zoo import read_certify_log, write_certify_log
    >>> res = CertificationResult.from_statistics(
    ...     selection=[[100, 0], [40, 60]], estimation=[[990, 10], [500, 500]],
    ...     n0=100, n=1000, sigma=0.25, alpha=0.001)
    >>> path = os.path.join(tempfile.mkdtemp(), "log.tsv")
    >>> _ = write_certify_log(res, [0, 1], path, idx=[0, 20])
    >>> with open(path) as f:
    ...     print(f.read().replace("\\t", " "), end="")
    idx label predict radius correct time
    0 0 0 0.4945023912092699 1 0:00:00
    20 1 -1 0.0 0 0:00:00
    >>> float(read_certify_log(path).radius[0]) == float(res.radius[0])
    True
    """
    log = CertifyLog.from_result(result, y, idx=idx, time=time)
    log.write(path)
    return log
