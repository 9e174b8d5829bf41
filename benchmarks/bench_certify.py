"""Benchmark: throughput and memory of certification with smoothlearn's engine.

Measured side by side in one run, on the same small digits CNN (8x8 inputs,
random weights: the timings do not depend on them) and the same inputs:

* **engine vs raw forward**: noisy samples per second of
  :func:`smoothlearn.sampling.sample_statistics` (noise on device, packing,
  counting) against the bare forward pass of the model over the same number
  of samples with the same batch size (pre-built inputs, no noise, no
  counting).  Target: ratio >= 0.9.
* **certify vs reference loop**: :meth:`SmoothedClassifier.certify` (``n0``
  selection + ``n`` estimation draws per input) against a faithful
  re-implementation of the reference CERTIFY of Cohen et al.'s
  ``locuslab/smoothing`` ``core.py``: one input at a time, ``x.repeat`` +
  ``randn_like`` per batch, counts through a Python loop, statsmodels'
  ``proportion_confint``.  Target: ratio >= 3 on CPU.  The same comparison
  on a small MLP for tabular data shows the regime where per-batch overhead
  dominates.
* **peak memory**: resident set size (``ru_maxrss``, which sees torch's
  allocations) of a fresh process certifying with ``n = 10,000`` and with
  ``n = 100,000``.  Target: within 10% of each other.  The quick mode
  leaves this row to ``bench_scaling`` (peak memory for n = 1,000 and
  100,000), since two fresh processes would be most of its time.

Run ``python benchmarks/bench_certify.py [--quick] [--threads T]``.
"""

from __future__ import annotations

import argparse
import math
import resource
import subprocess
import sys
import time

import numpy as np
import torch
from scipy.stats import norm
from sklearn.datasets import load_digits

from smoothlearn import SmoothedClassifier
from smoothlearn.models import _TorchAdapter
from smoothlearn.sampling import sample_statistics


class DigitsCNN(torch.nn.Module):
    """Two 3x3 convolutions, max-pool, two dense layers (as in the tests)."""

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


def _mlp():
    return torch.nn.Sequential(
        torch.nn.Flatten(),
        torch.nn.Linear(64, 64),
        torch.nn.ReLU(),
        torch.nn.Linear(64, 10),
    )


def _digits(n_inputs):
    X, _ = load_digits(return_X_y=True)
    return (X[:n_inputs] / 16.0).reshape(-1, 1, 8, 8).astype(np.float32)


# ---------------------------------------------------------------------------
# The reference: Cohen et al.'s core.py, CPU, one input at a time
# ---------------------------------------------------------------------------
class ReferenceSmooth:
    """Faithful re-implementation of ``locuslab/smoothing`` ``core.Smooth``."""

    ABSTAIN = -1

    def __init__(self, base_classifier, num_classes, sigma):
        self.base_classifier = base_classifier
        self.num_classes = num_classes
        self.sigma = sigma

    def certify(self, x, n0, n, alpha, batch_size):
        from statsmodels.stats.proportion import proportion_confint

        self.base_classifier.eval()
        counts_selection = self._sample_noise(x, n0, batch_size)
        c_hat = counts_selection.argmax().item()
        counts_estimation = self._sample_noise(x, n, batch_size)
        n_a = counts_estimation[c_hat].item()
        p_a_bar = proportion_confint(n_a, n, alpha=2 * alpha, method="beta")[0]
        if p_a_bar < 0.5:
            return ReferenceSmooth.ABSTAIN, 0.0
        return c_hat, self.sigma * norm.ppf(p_a_bar)

    def _sample_noise(self, x, num, batch_size):
        with torch.no_grad():
            counts = np.zeros(self.num_classes, dtype=int)
            remaining = num
            for _ in range(math.ceil(num / batch_size)):
                this_batch_size = min(batch_size, remaining)
                remaining -= this_batch_size
                batch = x.repeat((this_batch_size, 1, 1, 1))
                noise = torch.randn_like(batch) * self.sigma
                predictions = self.base_classifier(batch + noise).argmax(1)
                counts += self._count_arr(predictions.cpu().numpy(), self.num_classes)
            return counts

    def _count_arr(self, arr, length):
        counts = np.zeros(length, dtype=int)
        for idx in arr:
            counts[idx] += 1
        return counts


# ---------------------------------------------------------------------------
# Measurements
# ---------------------------------------------------------------------------
def _best_of_interleaved(fns, repeats):
    """Minimum time of each function over ``repeats`` rounds.

    Each round runs every function once, in turn, so that a slow spell of a
    shared machine hits all of them alike; the minimum is the least noisy
    estimate of the cost.
    """
    best = [math.inf] * len(fns)
    for _ in range(repeats):
        for i, fn in enumerate(fns):
            start = time.perf_counter()
            fn()
            best[i] = min(best[i], time.perf_counter() - start)
    return best


def _raw_forward(model, X, n, batch_size):
    """Forward passes over n noisy copies of every input, inputs pre-built."""
    total = X.shape[0] * n
    rows = min(batch_size, total)
    gen = torch.Generator().manual_seed(0)
    batch = torch.from_numpy(X[:1]).repeat(rows, 1, 1, 1)
    batch += 0.25 * torch.randn(batch.shape, generator=gen)

    def run():
        with torch.inference_mode():
            done = 0
            while done < total:
                b = min(rows, total - done)
                model(batch[:b]).argmax(1)
                done += b

    return run


def _throughput_rows(name, model, X, n0, n, batch_size, repeats):
    model.eval()
    sigma = 0.25
    total = X.shape[0] * n
    adapter = _TorchAdapter(model, 10)

    clf = SmoothedClassifier(
        model, sigma=sigma, n0=n0, n=n, batch_size=batch_size, random_state=0
    ).fit(X, np.arange(X.shape[0]) % 10)
    ref = ReferenceSmooth(model, 10, sigma)
    X_t = torch.from_numpy(X)
    t_raw, t_engine, t_certify, t_ref = _best_of_interleaved(
        [
            _raw_forward(model, X, n, batch_size),
            lambda: sample_statistics(
                adapter, X, n, sigma, stage=1, seed=0, batch_size=batch_size
            ),
            lambda: clf.certify(X),
            lambda: [
                ref.certify(X_t[i], n0, n, 0.001, batch_size) for i in range(len(X))
            ],
        ],
        repeats,
    )
    total_certify = X.shape[0] * (n0 + n)
    setting = f"{name}, {X.shape[0]} inputs, n0={n0}, n={n}, batch {batch_size}"
    return [
        {
            "name": f"engine vs raw forward: {setting}",
            "baseline_s": t_raw,
            "smoothlearn_s": t_engine,
            "ratio": t_raw / t_engine,
            "samples_per_s": total / t_engine,
            "baseline_samples_per_s": total / t_raw,
            "notes": f"speed-up, target >= 0.9; {total / t_engine:,.0f} noisy "
            f"samples/s vs {total / t_raw:,.0f}",
        },
        {
            "name": f"certify vs reference CERTIFY loop: {setting}",
            "baseline_s": t_ref,
            "smoothlearn_s": t_certify,
            "ratio": t_ref / t_certify,
            "samples_per_s": total_certify / t_certify,
            "baseline_samples_per_s": total_certify / t_ref,
            "notes": (
                "speed-up, target >= 3; " if name == "digits CNN" else "speed-up; "
            )
            + f"{total_certify / t_certify:,.0f} samples/s vs "
            f"{total_certify / t_ref:,.0f}",
        },
    ]


def _memory_child(n):
    """Certify 4 inputs with n draws in this (fresh) process; print peak RSS KiB."""
    torch.manual_seed(0)
    X = _digits(4)
    clf = SmoothedClassifier(DigitsCNN(), n0=100, n=n, batch_size=1000, random_state=0)
    clf.fit(X, np.arange(4))
    clf.certify(X)
    print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)


def _peak_rss(n, threads):
    out = subprocess.run(
        [sys.executable, __file__, "--memory-child", str(n), "--threads", str(threads)],
        check=True,
        capture_output=True,
        text=True,
    )
    return int(out.stdout.strip().splitlines()[-1]) / 1024.0  # MiB


def _memory_row(threads: int) -> dict:
    """Peak RSS of fresh processes certifying with n = 10,000 and 100,000."""
    n_small, n_large = 10_000, 100_000
    rss_small, rss_large = _peak_rss(n_small, threads), _peak_rss(n_large, threads)
    return {
        "name": f"peak RSS, n={n_large:,} vs n={n_small:,} (digits CNN, "
        "4 inputs, batch 1000, fresh process)",
        "baseline_s": None,
        "smoothlearn_s": None,
        "ratio": rss_large / rss_small,
        "n_small": n_small,
        "n_large": n_large,
        "rss_mib_small": rss_small,
        "rss_mib_large": rss_large,
        "notes": f"target <= 1.1; {rss_large:.0f} MiB vs {rss_small:.0f} MiB",
    }


def run(quick: bool = False, threads: int | None = None) -> list[dict]:
    """Measure every row; return them as dicts (see the module docstring)."""
    if threads:
        torch.set_num_threads(threads)
    threads = torch.get_num_threads()
    torch.manual_seed(0)
    # Many short rounds: identical timings vary several-fold on a shared
    # machine, and the minimum over interleaved rounds is what is compared.
    repeats = 7 if quick else 5
    n_inputs, n = (5, 1_000) if quick else (50, 10_000)
    X = _digits(n_inputs)
    rows = _throughput_rows("digits CNN", DigitsCNN(), X, 100, n, 1000, repeats)
    rows += _throughput_rows("tabular MLP", _mlp(), X, 100, n, 1000, repeats)
    if not quick:
        # Two fresh processes (torch imports) would be most of the quick
        # mode; bench_scaling measures peak memory against n in it.
        rows.append(_memory_row(threads))
    for row in rows:
        row["threads"] = threads
    return rows


def _markdown(rows):
    lines = [
        "| measure | baseline (s) | smoothlearn (s) | ratio | notes |",
        "|---|---:|---:|---:|---|",
    ]
    for r in rows:
        times = [
            "" if r[k] is None else f"{r[k]:.3g}"
            for k in ("baseline_s", "smoothlearn_s")
        ]
        cells = [r["name"], *times, f"{r['ratio']:.2f}", r["notes"]]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes")
    parser.add_argument("--threads", type=int, default=0, help="torch threads")
    parser.add_argument("--memory-child", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.memory_child:
        if args.threads:
            torch.set_num_threads(args.threads)
        _memory_child(args.memory_child)
        return
    rows = run(quick=args.quick, threads=args.threads or None)
    print(f"torch threads: {rows[0]['threads']}\n")
    print(_markdown(rows))


if __name__ == "__main__":
    main()
