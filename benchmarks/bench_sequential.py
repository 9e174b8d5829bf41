"""Benchmark: sequential certification against fixed n = 100,000, side by side.

Run ``python benchmarks/bench_sequential.py`` (add ``--quick`` for a smaller
run, under about two minutes on two cores).  Prints a Markdown table.  For
each data set the fixed-``n`` certificate (Cohen's CERTIFY: ``n0 = 100``
selection draws, then ``n = 100,000`` estimation draws, Clopper-Pearson at
``alpha = 0.001``) and the sequential certifier (same classifier, same
selection stream, budget ``n_max = 100,000``, total ``alpha = 0.001``) are
run in the same process, one after the other, and compared on

* estimation draws per input (mean, median; fixed ``n`` spends 100,000);
* the decision "certified at radius r": the fraction of inputs on which the
  two agree (an undecided sequential input counts as not certified);
* wall-clock time of ``certify`` (the whole call: selection, estimation,
  bounds) and the speed-up.

Data sets:

* ``synthetic``: a known model.  Inputs ``x`` in one dimension and the base
  classifier ``f(x) = 1[x > 0]`` (a fixed ``torch.nn.Linear``), so that a draw
  is exactly Bernoulli with ``p_A = Phi(|x| / sigma)``; the ``x`` are chosen
  so that ``p_A`` has a spread (uniform on [0.5, 1] for 40 %, concentrated near
  1 for 60 %).
* ``digits``: scikit-learn's 8x8 digits scaled to [0, 1], a small MLP trained
  with Gaussian noise augmentation (a few seconds), the held-out quarter
  certified.

The largest-radius mode (no target radius) is reported too, with the mean
certified radius of both methods.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

ALPHA = 0.001
N_FIXED = 100_000
RADII = (0.25, 0.5)


def _synthetic(n_inputs: int, sigma: float, seed: int = 0):
    import torch
    from scipy.special import ndtri

    gen = np.random.default_rng(seed)
    spread = gen.uniform(0.5, 1.0, n_inputs)
    confident = 1.0 - gen.beta(0.5, 200.0, n_inputs)
    p = np.where(gen.random(n_inputs) < 0.4, spread, confident)
    p = np.clip(p, 0.5, 1 - 1e-12)
    x = (sigma * ndtri(p)).astype(np.float32)[:, None]
    module = torch.nn.Linear(1, 2)
    with torch.no_grad():
        module.weight.copy_(torch.tensor([[-1.0], [1.0]]))
        module.bias.zero_()
    X_fit = np.array([[-1.0], [1.0]], dtype=np.float32)
    return module, X_fit, np.array([0, 1]), x, np.ones(n_inputs, dtype=int)


def _digits(sigma: float, n_test: int | None, seed: int = 0):
    import torch
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    X, y = load_digits(return_X_y=True)
    X = (X / 16.0).astype(np.float32)
    X_tr, X_te, y_tr, y_te = train_test_split(
        X, y, test_size=0.25, random_state=seed, stratify=y
    )
    torch.manual_seed(seed)
    module = torch.nn.Sequential(
        torch.nn.Linear(64, 128), torch.nn.ReLU(), torch.nn.Linear(128, 10)
    )
    opt = torch.optim.Adam(module.parameters(), lr=3e-3)
    Xt, yt = torch.from_numpy(X_tr), torch.from_numpy(y_tr)
    gen = torch.Generator().manual_seed(seed)
    for _ in range(60):  # noise-augmented training, full batch, a few seconds
        noisy = Xt + sigma * torch.randn(Xt.shape, generator=gen)
        loss = torch.nn.functional.cross_entropy(module(noisy), yt)
        opt.zero_grad()
        loss.backward()
        opt.step()
    module.eval()
    if n_test is not None:
        X_te, y_te = X_te[:n_test], y_te[:n_test]
    return module, X_tr, y_tr, X_te, y_te


def _compare(name, module, X_fit, y_fit, X, y, sigma):
    from smoothlearn import SmoothedClassifier
    from smoothlearn.sequential import SequentialCertifier

    clf = SmoothedClassifier(
        module, sigma=sigma, n=N_FIXED, alpha=ALPHA, batch_size=4096, random_state=0
    ).fit(X_fit, y_fit)
    start = time.perf_counter()
    fixed = clf.certify(X)
    t_fixed = time.perf_counter() - start
    rows = []
    for r in RADII:
        seq = SequentialCertifier(clf, target_radius=r, n_max=N_FIXED)
        start = time.perf_counter()
        res = seq.certify(X)
        t_seq = time.perf_counter() - start
        fixed_cert = ~fixed.abstained & (fixed.radius >= r)
        seq_cert = res.decisions[:, 0] == 1
        correct_fixed = fixed_cert & (fixed.prediction == y)
        correct_seq = seq_cert & (res.prediction == y)
        rows.append(
            {
                "data": name,
                "mode": f"decide r={r}",
                "inputs": len(X),
                "mean draws": float(res.n_draws.mean()),
                "median draws": float(np.median(res.n_draws)),
                "median / fixed": float(np.median(res.n_draws)) / N_FIXED,
                "same decision": float(np.mean(fixed_cert == seq_cert)),
                "undecided": float(np.mean(res.decisions[:, 0] == 0)),
                "cert. acc. fixed": float(correct_fixed.mean()),
                "cert. acc. seq": float(correct_seq.mean()),
                "time fixed (s)": t_fixed,
                "time seq (s)": t_seq,
                "speed-up": t_fixed / t_seq,
            }
        )
    seq = SequentialCertifier(clf, n_max=N_FIXED, radius_tol=0.05 * sigma)
    start = time.perf_counter()
    res = seq.certify(X)
    t_seq = time.perf_counter() - start
    rows.append(
        {
            "data": name,
            "mode": "largest radius",
            "inputs": len(X),
            "mean draws": float(res.n_draws.mean()),
            "median draws": float(np.median(res.n_draws)),
            "median / fixed": float(np.median(res.n_draws)) / N_FIXED,
            "mean radius fixed": float(fixed.radius.mean()),
            "mean radius seq": float(res.radius.mean()),
            "time fixed (s)": t_fixed,
            "time seq (s)": t_seq,
            "speed-up": t_fixed / t_seq,
        }
    )
    return rows


def run(quick: bool) -> list[dict]:
    """Run both data sets; one row per (data set, mode)."""
    import torch

    # One thread: both sides are timed alike, and a shared machine with
    # oversubscribed OpenMP threads would distort either.
    torch.set_num_threads(1)
    sigma = 0.5
    module, X_fit, y_fit, X, y = _synthetic(50 if quick else 1000, sigma)
    rows = _compare("synthetic", module, X_fit, y_fit, X, y, sigma)
    module, X_tr, y_tr, X_te, y_te = _digits(sigma, 20 if quick else None)
    rows += _compare("digits", module, X_tr, y_tr, X_te, y_te, sigma)
    return [_with_summary(row) for row in rows]


def _with_summary(row: dict) -> dict:
    """Add the keys of benchmarks/run_all.py's table (name, times, ratio, notes)."""
    if "same decision" in row:
        outcome = (
            f"same decision as fixed n {row['same decision']:.0%}, undecided "
            f"{row['undecided']:.0%}; certified accuracy {row['cert. acc. seq']:.3f}"
            f" vs {row['cert. acc. fixed']:.3f}"
        )
    else:
        outcome = (
            f"mean radius {row['mean radius seq']:.3f} vs "
            f"{row['mean radius fixed']:.3f} with fixed n"
        )
    summary = {
        "name": f"sequential vs fixed n={N_FIXED:,}: {row['data']}, {row['mode']}, "
        f"{row['inputs']} inputs",
        "baseline_s": row["time fixed (s)"],
        "smoothlearn_s": row["time seq (s)"],
        "ratio": row["speed-up"],
        "notes": f"speed-up; median draws {row['median draws']:,.0f} "
        f"({row['median / fixed']:.2%} of fixed n), mean "
        f"{row['mean draws']:,.0f}; {outcome}",
    }
    return {**row, **summary}


def _table(rows: list[dict]) -> str:
    cols = []
    for row in rows:
        cols += [c for c in row if c not in cols]

    def fmt(v):
        if v is None:
            return ""
        if isinstance(v, float):
            if abs(v) >= 100:
                return f"{v:,.0f}"
            return f"{v:.3g}"
        return str(v)

    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for row in rows:
        lines.append("| " + " | ".join(fmt(row.get(c)) for c in cols) + " |")
    return "\n".join(lines)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller run")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    rows = run(args.quick)
    summary = {"name", "baseline_s", "smoothlearn_s", "ratio", "notes"}
    print(_table([{k: v for k, v in r.items() if k not in summary} for r in rows]))
    print(
        f"\nalpha = {ALPHA} (sequential: total, split 1/2 robust, 1/2 not robust), "
        f"fixed n = {N_FIXED:,}, sigma = 0.5, total {time.perf_counter() - start:.0f} s"
    )


if __name__ == "__main__":
    main()
