"""Benchmark: smoothlearn against IBM's Adversarial Robustness Toolbox (ART).

ART's ``PyTorchRandomizedSmoothing.certify`` is the best-known packaged
implementation of Cohen et al.'s CERTIFY.  Side by side in one run, on the
same digits CNN (trained here on noisy inputs for a few seconds, so that the
certificates mean something), the same held-out inputs and the same
``sigma``, ``n0``, ``n``, ``alpha`` and batch size:

* **time**: best of interleaved rounds of ``SmoothedClassifier.certify``
  and ``art...PyTorchRandomizedSmoothing.certify`` (one input at a time;
  ``n`` noisy copies built in numpy, predicted in batches through
  ``PyTorchClassifier``; Clopper-Pearson through statsmodels);
* **same certificates**: the two use independent noise, so their radii
  differ by Monte-Carlo noise only; the table reports each side's certified
  accuracy at r = 0.25 and 0.5 and the mean radius.

ART is optional (``pip install adversarial-robustness-toolbox``, or the
``benchmark`` extra); without it the row says so.

Run ``python benchmarks/bench_art.py [--quick]``.
"""

from __future__ import annotations

import argparse
import time
import warnings

import numpy as np
import torch
from bench_certify import DigitsCNN
from sklearn.datasets import load_digits

from smoothlearn import SmoothedClassifier

SIGMA, N0, ALPHA, BATCH = 0.25, 100, 0.001, 1000


def _trained_cnn(X, y, seed=0):
    """A DigitsCNN trained on Gaussian-noise-augmented inputs (about 5 s)."""
    torch.manual_seed(seed)
    model = DigitsCNN()
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    X_t, y_t = torch.from_numpy(X), torch.from_numpy(y)
    gen = torch.Generator().manual_seed(seed)
    for _ in range(30):
        perm = torch.randperm(len(X_t), generator=gen)
        for i in range(0, len(X_t), 64):
            idx = perm[i : i + 64]
            xb = X_t[idx] + SIGMA * torch.randn(X_t[idx].shape, generator=gen)
            loss = torch.nn.functional.cross_entropy(model(xb), y_t[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    return model.eval()


def _best_of_interleaved(fns, repeats):
    best, outs = [np.inf] * len(fns), [None] * len(fns)
    for _ in range(repeats):
        for i, fn in enumerate(fns):
            start = time.perf_counter()
            outs[i] = fn()
            best[i] = min(best[i], time.perf_counter() - start)
    return best, outs


def _summary(y, prediction, radius):
    """Certified accuracy at r = 0.25 and 0.5 (abstentions are -1) and mean radius."""
    correct = np.asarray(prediction) == y
    acc = [float(np.mean(correct & (np.asarray(radius) >= r))) for r in (0.25, 0.5)]
    return acc, float(np.mean(radius))


def run(quick: bool = False) -> list[dict]:
    """One row: smoothlearn's certify against ART's, same model and inputs."""
    try:
        import art
        from art.estimators.certification.randomized_smoothing import (
            PyTorchRandomizedSmoothing,
        )
    except ImportError:
        return [
            {
                "name": "certify vs IBM ART",
                "baseline_s": None,
                "smoothlearn_s": None,
                "ratio": None,
                "notes": "not run: pip install adversarial-robustness-toolbox",
            }
        ]
    X, y = load_digits(return_X_y=True)
    X = (X / 16.0).reshape(-1, 1, 8, 8).astype(np.float32)
    y = y.astype(np.int64)
    n_inputs, n, repeats = (10, 1_000, 3) if quick else (50, 10_000, 2)
    model = _trained_cnn(X[:1347], y[:1347])
    X_test, y_test = X[1347 : 1347 + n_inputs], y[1347 : 1347 + n_inputs]

    clf = SmoothedClassifier(
        model, sigma=SIGMA, n0=N0, n=n, alpha=ALPHA, batch_size=BATCH, random_state=0
    ).fit(X[:1347], y[:1347])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # ART's own deprecation noise
        rs = PyTorchRandomizedSmoothing(
            model,
            loss=torch.nn.CrossEntropyLoss(),
            input_shape=(1, 8, 8),
            nb_classes=10,
            device_type="cpu",
            sample_size=N0,
            scale=SIGMA,
            alpha=ALPHA,
        )

    def ours():
        res = clf.certify(X_test)
        return res.prediction, res.radius

    def theirs():
        np.random.seed(0)  # noqa: NPY002 (ART draws from the global generator)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            pred, radius = rs.certify(X_test, n=n, batch_size=BATCH)
        return pred, radius

    (t_art, t_ours), (out_art, out_ours) = _best_of_interleaved([theirs, ours], repeats)
    (acc_o, mean_o), (acc_a, mean_a) = (
        _summary(y_test, *out_ours),
        _summary(y_test, *out_art),
    )
    total = n_inputs * (N0 + n)
    return [
        {
            "name": (
                f"certify vs IBM ART {art.__version__} PyTorchRandomizedSmoothing: "
                f"digits CNN, {n_inputs} inputs, n0={N0}, n={n}, batch {BATCH}"
            ),
            "baseline_s": t_art,
            "smoothlearn_s": t_ours,
            "ratio": t_art / t_ours,
            "notes": (
                f"speed-up; {total / t_ours:,.0f} vs {total / t_art:,.0f} samples/s; "
                f"certified acc at r=0.25/0.5 {acc_o[0]:.2f}/{acc_o[1]:.2f} vs "
                f"{acc_a[0]:.2f}/{acc_a[1]:.2f}, mean radius {mean_o:.3f} vs "
                f"{mean_a:.3f} (independent noise)"
            ),
            "certified_accuracy": acc_o,
            "art_certified_accuracy": acc_a,
        }
    ]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    for row in run(quick=args.quick):
        print(row["name"])
        print(f"  ratio {row['ratio']}: {row['notes']}")


if __name__ == "__main__":
    main()
