"""The embedded default job: a small CNN on scikit-learn's digits (no download).

Used by ``smoothlearn certify`` without ``--data``/``--model`` and by the
examples.  Private: the public entry points are the command and the API.

The data are scikit-learn's 8x8 handwritten digits (1,797 images, 10 classes,
bundled with scikit-learn), scaled to [0, 1] and flattened to 64 features, so
``sigma`` is in units of the full pixel range.  The split is stratified and
seeded.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

__all__: list[str] = []

#: Architectures a state dict can be loaded into (``--arch`` of the command).
ARCHITECTURES = ("digits_cnn", "mlp")


def load_digits_split(test_size: float = 0.25, random_state: int = 0):
    """Digits in [0, 1] as float32 rows of 64 pixels, split train/test.

    Returns
    -------
    X_train, X_test : ndarray of shape (n, 64), float32
    y_train, y_test : ndarray of shape (n,), int64
    """
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    X, y = load_digits(return_X_y=True)
    X = (X / 16.0).astype(np.float32)
    return train_test_split(
        X,
        y.astype(np.int64),
        test_size=test_size,
        stratify=y,
        random_state=random_state,
    )


class DigitsCNN(nn.Module):
    """A small all-convolutional network for 8x8 single-channel images.

    ``conv(1 -> w, 3x3, stride 2) - ReLU - conv(w -> 2w, 3x3, stride 2) -
    ReLU - linear(8w -> n_classes)``: strided convolutions instead of
    pooling (8x8 -> 4x4 -> 2x2), about 6,000 weights and 22,000
    multiply-adds per image at ``width=16``.  Inputs of shape ``(batch, 64)``
    or ``(batch, 1, 8, 8)`` are reshaped to images.

    Parameters
    ----------
    n_classes : int, default=10
    width : int, default=16
        Channels of the first convolution (the second has ``2 * width``).
    """

    def __init__(self, n_classes: int = 10, width: int = 16):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, width, 3, stride=2, padding=1),
            nn.ReLU(),
            nn.Conv2d(width, 2 * width, 3, stride=2, padding=1),
            nn.ReLU(),
            nn.Flatten(),
        )
        self.classifier = nn.Linear(2 * width * 4, n_classes)

    def forward(self, X):
        return self.classifier(self.features(X.reshape(-1, 1, 8, 8)))


def make_digits_net(
    sigma: float, *, max_epochs: int = 30, device: str | None = None, lr=2e-3
):
    """A skorch classifier around :class:`DigitsCNN`, for SmoothedClassifier.fit."""
    from skorch import NeuralNetClassifier

    return NeuralNetClassifier(
        DigitsCNN,
        max_epochs=max_epochs,
        lr=lr,
        criterion=nn.CrossEntropyLoss,  # the module returns logits
        optimizer=torch.optim.Adam,
        batch_size=64,
        train_split=None,
        iterator_train__shuffle=True,
        device=device or "cpu",
        verbose=0,
    )


def fit_seeded(clf, X, y, seed: int):
    """``clf.fit(X, y)`` with torch's global generator seeded, then restored.

    skorch draws weight initialisation and shuffling from torch's global
    generator; forking it makes the training reproducible without changing
    the caller's random state.
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return clf.fit(X, y)


def build_from_state_dict(arch: str, state_dict) -> nn.Module:
    """Build one of :data:`ARCHITECTURES` from the shapes of a state dict.

    * ``"digits_cnn"``: :class:`DigitsCNN`; ``width`` and ``n_classes`` are
      read from ``features.0.weight`` and ``classifier.weight``.
    * ``"mlp"``: ``nn.Sequential(Linear, ReLU, Linear, ..., Linear)`` with
      keys ``"<i>.weight"`` / ``"<i>.bias"`` at even indices ``i`` (the
      layout of ``torch.save(nn.Sequential(...).state_dict())``); sizes are
      read from the weight shapes.

    Raises
    ------
    ValueError
        If the keys or shapes do not fit the architecture.
    """
    if arch not in ARCHITECTURES:
        raise ValueError(
            f"Unknown architecture {arch!r}; choose one of {', '.join(ARCHITECTURES)}."
        )
    if not isinstance(state_dict, dict) or not all(
        isinstance(v, torch.Tensor) for v in state_dict.values()
    ):
        raise ValueError("The model file must hold a state dict of tensors.")
    try:
        if arch == "digits_cnn":
            width = state_dict["features.0.weight"].shape[0]
            n_classes = state_dict["classifier.weight"].shape[0]
            module = DigitsCNN(n_classes=n_classes, width=width)
        else:
            index = sorted(
                int(k.split(".")[0]) for k in state_dict if k.endswith(".weight")
            )
            if not index or index != list(range(0, 2 * len(index), 2)):
                raise KeyError("layers must be at indices 0, 2, 4, ...")
            layers: list[nn.Module] = []
            for j, i in enumerate(index):
                out_f, in_f = state_dict[f"{i}.weight"].shape
                layers.append(nn.Linear(in_f, out_f, bias=f"{i}.bias" in state_dict))
                if j < len(index) - 1:
                    layers.append(nn.ReLU())
            module = nn.Sequential(nn.Flatten(), *layers)
            state_dict = {
                f"{int(k.split('.')[0]) + 1}.{k.split('.', 1)[1]}": v
                for k, v in state_dict.items()
            }
        module.load_state_dict(state_dict)
    except (KeyError, ValueError, RuntimeError, IndexError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else repr(exc)
        raise ValueError(
            f"The state dict does not fit the {arch!r} architecture: {first}"
        ) from None
    return module.eval()
