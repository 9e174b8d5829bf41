"""Scaling of ``SmoothedClassifier.certify``: time and peak memory.

Certifies with a digits-sized CNN (random fixed weights: throughput and memory
do not depend on what the model learned) as ``n`` grows (1e3 ... 1e5) and as
the number of inputs grows.  In the full mode each configuration runs in a
fresh subprocess so that its peak resident memory (``ru_maxrss``, which sees
torch's allocations, unlike ``tracemalloc``) is its own; the quick mode runs
them all in one subprocess, ``n`` increasing first (a peak never decreases,
so one that stays put as ``n`` grows still shows flat memory; the peaks of
the later rows over inputs are then cumulative).  The claim checked: memory
is flat in ``n`` (O(batch_size x input size)), time is linear in ``n`` and in
the number of inputs.

Run ``python benchmarks/bench_scaling.py [--quick]``.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys

_CHILD = r"""
import json, resource, sys, time
import numpy as np, torch
from smoothlearn import SmoothedClassifier

device, repeats = sys.argv[1], int(sys.argv[3])
torch.manual_seed(0)
model = torch.nn.Sequential(
    torch.nn.Conv2d(1, 16, 3, padding=1), torch.nn.ReLU(),
    torch.nn.Conv2d(16, 32, 3, padding=1, stride=2), torch.nn.ReLU(),
    torch.nn.Flatten(), torch.nn.Linear(32 * 4 * 4, 10),
).to(device)
for n, n_inputs in json.loads(sys.argv[2]):
    X = np.random.default_rng(0).random((n_inputs, 1, 8, 8), dtype=np.float32)
    y = np.arange(n_inputs) % 10
    clf = SmoothedClassifier(model, sigma=0.25, n0=100, n=n, batch_size=1000,
                             device=device, random_state=0).fit(X, y)
    clf.certify(X[:1])  # warm-up
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    elapsed = float("inf")
    for _ in range(repeats):  # the best of several: shared machines stall
        t0 = time.perf_counter()
        clf.certify(X)
        elapsed = min(elapsed, time.perf_counter() - t0)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"time_s": elapsed, "peak_rss_mb": peak / 1024,
                      "warm_rss_mb": base / 1024}), flush=True)
"""


def _measure(configs: list[tuple[int, int]], device: str, repeats: int) -> list[dict]:
    """Time and peak RSS of certify for each ``(n, n_inputs)``, in one process.

    The peak resident set size of a process never decreases, so configurations
    sharing a process must come in increasing size; a peak that stays put as
    ``n`` grows shows memory flat in ``n`` as well as separate processes do.
    """
    out = subprocess.run(
        [sys.executable, "-c", _CHILD, device, json.dumps(configs), str(repeats)],
        capture_output=True,
        text=True,
        check=True,
    )
    lines = out.stdout.strip().splitlines()[-len(configs) :]
    return [json.loads(line) for line in lines]


def _measure_all(configs, device, separate: bool, repeats: int) -> dict:
    if separate:  # one fresh process per configuration
        return {c: _measure([c], device, repeats)[0] for c in configs}
    measured = _measure(list(configs), device, repeats)
    return dict(zip(configs, measured, strict=True))


def run(quick: bool = False, device: str = "cpu") -> list[dict]:
    """Rows of the scaling benchmark (see the module docstring)."""
    # Full mode: each point in a fresh process.  Quick mode: one process for
    # all points in increasing size (torch's import would be most of it).
    ns = (1_000, 10_000, 100_000)
    n_inputs_n = 2 if quick else 10
    inputs = (8, 32, 128) if quick else (16, 64, 256)
    n_fixed = 1_000
    configs = [(n, n_inputs_n) for n in ns] + [(n_fixed, m) for m in inputs]
    measured = _measure_all(
        list(dict.fromkeys(configs)),
        device,
        separate=not quick,
        repeats=2 if quick else 3,
    )
    rows = []
    by_n = {n: measured[(n, n_inputs_n)] for n in ns}
    lo, hi = by_n[ns[0]], by_n[ns[-1]]
    for n in ns:
        r = by_n[n]
        rows.append(
            {
                "name": f"certify {n_inputs_n} inputs, n={n:,}",
                "baseline_s": None,
                "smoothlearn_s": r["time_s"],
                "ratio": None,
                "notes": f"peak RSS {r['peak_rss_mb']:.0f} MB",
                **r,
            }
        )
    rows.append(
        {
            "name": f"peak memory n={ns[-1]:,} / n={ns[0]:,}",
            "baseline_s": None,
            "smoothlearn_s": None,
            "ratio": hi["peak_rss_mb"] / lo["peak_rss_mb"],
            "notes": "target: within 10% (flat in n)",
        }
    )
    rows.append(
        {
            "name": f"time n={ns[-1]:,} / n={ns[0]:,}",
            "baseline_s": lo["time_s"],
            "smoothlearn_s": hi["time_s"],
            "ratio": hi["time_s"] / lo["time_s"],
            "notes": f"linear would be {ns[-1] / ns[0]:.0f} (plus the fixed n0 cost)",
        }
    )
    by_inputs = {m: measured[(n_fixed, m)] for m in inputs}
    for m in inputs:
        r = by_inputs[m]
        rows.append(
            {
                "name": f"certify {m} inputs, n={n_fixed:,}",
                "baseline_s": None,
                "smoothlearn_s": r["time_s"],
                "ratio": None,
                "notes": f"peak RSS {r['peak_rss_mb']:.0f} MB; "
                f"{m * (n_fixed + 100) / r['time_s']:,.0f} samples/s",
                **r,
            }
        )
    return rows


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description="certify scaling in n and inputs")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args(argv)
    rows = run(quick=args.quick, device=args.device)
    print("| what | time (s) | ratio | notes |")
    print("|---|---:|---:|---|")
    for r in rows:
        t = r["smoothlearn_s"]
        ratio = r["ratio"]
        print(
            f"| {r['name']} | {'' if t is None else f'{t:.3g}'} | "
            f"{'' if ratio is None else f'{ratio:.3g}'} | {r['notes']} |"
        )


if __name__ == "__main__":
    main()
