"""Shared fixtures: a tiny deterministic torch model and data."""

import numpy as np
import pytest
import torch

# The CI machine has 2 cores shared with other jobs: torch's intra-op thread pool
# then spins on tiny tensors and the many small forward passes of these tests
# slow down by 10x or more. One thread keeps the suite fast and predictable.
torch.set_num_threads(1)

#: Seconds any single test may run before it fails (pytest-timeout, from the
#: ``test`` extra).  The slowest test (an example) takes about four minutes on a loaded
#: 2-core machine; a test that hangs (e.g. a stuck worker pool) then fails
#: with its traceback instead of holding the whole run until CI gives up.
TEST_TIMEOUT_S = 1200


def pytest_collection_modifyitems(config, items):
    if not config.pluginmanager.hasplugin("timeout"):
        return  # pytest-timeout not installed: no per-test limit
    for item in items:
        if item.get_closest_marker("timeout") is None:
            item.add_marker(pytest.mark.timeout(TEST_TIMEOUT_S))


@pytest.fixture
def rng():
    return np.random.default_rng(0)


def make_linear_module(weight, bias) -> torch.nn.Linear:
    """A fixed ``torch.nn.Linear`` with weight ``(K, d)`` and bias ``(K,)``."""
    weight = torch.as_tensor(np.asarray(weight), dtype=torch.float32)
    module = torch.nn.Linear(weight.shape[1], weight.shape[0])
    with torch.no_grad():
        module.weight.copy_(weight)
        module.bias.copy_(torch.as_tensor(np.asarray(bias), dtype=torch.float32))
    return module


@pytest.fixture
def linear3():
    """Three-class argmax of a fixed linear map of R^2 (classes at 120 degrees)."""
    angles = np.deg2rad([0.0, 120.0, 240.0])
    weight = np.stack([np.cos(angles), np.sin(angles)], axis=1)
    return make_linear_module(weight, np.zeros(3))


@pytest.fixture
def linear2():
    """Binary linear classifier of R^3: class 1 where x0 + 2 x1 - 0.5 > 0."""
    w = np.array([1.0, 2.0, 0.0])
    return make_linear_module(np.stack([-w / 2, w / 2]), [0.25, -0.25])


@pytest.fixture
def blobs3():
    """Three well-separated float32 Gaussian blobs in R^2 (120 samples)."""
    gen = np.random.default_rng(0)
    angles = np.deg2rad([0.0, 120.0, 240.0])
    centers = 2.0 * np.stack([np.cos(angles), np.sin(angles)], axis=1)
    y = np.repeat(np.arange(3), 40)
    X = centers[y] + 0.3 * gen.standard_normal((120, 2))
    return X.astype(np.float32), y


class TinyMLP(torch.nn.Module):
    """Small MLP for skorch tests: ``n_in -> 16 -> n_out`` logits."""

    def __init__(self, n_in=2, n_out=3, dropout=0.0):
        super().__init__()
        self.net = torch.nn.Sequential(
            torch.nn.Flatten(),
            torch.nn.Linear(n_in, 16),
            torch.nn.ReLU(),
            torch.nn.Dropout(dropout),
            torch.nn.Linear(16, n_out),
        )

    def forward(self, X):
        return self.net(X)


@pytest.fixture
def tiny_net():
    """Factory of an unfitted, quiet skorch NeuralNetClassifier on TinyMLP."""
    from skorch import NeuralNetClassifier

    def make(n_in=2, n_out=3, **kwargs):
        params = dict(
            module=TinyMLP,
            module__n_in=n_in,
            module__n_out=n_out,
            criterion=torch.nn.CrossEntropyLoss,
            optimizer=torch.optim.Adam,
            lr=0.05,
            max_epochs=10,
            batch_size=32,
            train_split=None,
            verbose=0,
        )
        params.update(kwargs)
        return NeuralNetClassifier(**params)

    return make


class IntervalClassifier(torch.nn.Module):
    """Classes along one direction: class k where t_k <= w.x < t_{k+1}.

    Its smoothed class probabilities are analytic: with u = w.x / ||w||,
    ``P(class k) = Phi((t'_{k+1} - u) / sigma) - Phi((t'_k - u) / sigma)``,
    ``t' = t / ||w||``, so the true robust radius of the smoothed classifier
    is known (a test oracle for soundness).  Logit k is
    ``min(s - t_k, t_{k+1} - s)`` with ``s = w.x``, positive only for the
    true interval.
    """

    def __init__(self, w, thresholds):
        super().__init__()
        self.register_buffer("w", torch.as_tensor(np.asarray(w), dtype=torch.float32))
        t = torch.as_tensor(np.asarray(thresholds), dtype=torch.float32)
        inf = torch.tensor([float("inf")])
        self.register_buffer("lo", torch.cat([-inf, t]))
        self.register_buffer("hi", torch.cat([t, inf]))

    def forward(self, X):
        s = X.reshape(X.shape[0], -1) @ self.w
        return torch.minimum(s[:, None] - self.lo, self.hi - s[:, None])


class DigitsCNN(torch.nn.Module):
    """Small CNN for 8x8 digits: two 3x3 convolutions, max-pool, two dense layers."""

    def __init__(self):
        super().__init__()
        self.features = torch.nn.Sequential(
            torch.nn.Conv2d(1, 16, 3, padding=1),
            torch.nn.ReLU(),
            torch.nn.Conv2d(16, 32, 3, padding=1),
            torch.nn.ReLU(),
            torch.nn.MaxPool2d(2),
        )
        self.head = torch.nn.Sequential(
            torch.nn.Flatten(),
            torch.nn.Linear(32 * 4 * 4, 64),
            torch.nn.ReLU(),
            torch.nn.Linear(64, 10),
        )

    def forward(self, X):
        return self.head(self.features(X))
