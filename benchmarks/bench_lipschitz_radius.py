"""Benchmark: vectorised Lipschitz-aware radii against per-point quad + brentq.

Run ``python benchmarks/bench_lipschitz_radius.py`` (add ``--quick`` for a
smaller run).  Prints a Markdown table.

:func:`smoothlearn.radius.lipschitz_radius` (paper and envelope forms, kind
``"multi"``) on 100,000 inputs with random ``pA_lower``, ``pB_upper``,
``sigma`` in [0.05, 2] and ``L`` in [0.01, 100] (log-uniform) is timed
against the approach of the authors' code: for each input, the ramp offsets
``s0(pA)`` and ``s0(pB)`` by ``scipy.integrate.quad`` inside
``scipy.optimize.brentq``, then the radius formula.  The baseline runs on a
subset and is scaled per input; both sides run in the same process, in
small interleaved pieces, each the best of a few tries, CPU time (shared
machines stall a process for whole seconds).  The largest absolute
difference between the two on the subset is reported and must be <= 1e-8.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from scipy.integrate import quad
from scipy.optimize import brentq
from scipy.special import ndtr, ndtri
from scipy.stats import norm

EPS = np.finfo(np.float64).eps


def _best_time(func, repeat):
    """Best of ``repeat`` runs, in CPU seconds of this single-threaded process."""
    best, out = np.inf, None
    for _ in range(repeat):
        start = time.process_time()
        out = func()
        best = min(best, time.process_time() - start)
    return best, out


def _s0_quad(p, sigma, L):
    """Ramp offset solving L int_{s0}^{s0 + 1/L} Phi(s / sigma) ds = 1 - p."""

    def excess(s0):
        hi = s0 + 1.0 / L
        points = [0.0] if s0 < 0.0 < hi else None
        val, _ = quad(
            lambda s: ndtr(s / sigma),
            s0,
            hi,
            epsabs=0.0,
            epsrel=1e-13,
            limit=200,
            points=points,
        )
        return L * val - (1.0 - p)

    c = -sigma * ndtri(p)
    return brentq(excess, c - 1.0 / L, c, xtol=1e-14, rtol=4 * EPS, maxiter=200)


def _radius_quad(pA, pB, sigma, L, method):
    """One input's multi-class radius from the quadrature offsets."""
    sA, sB = _s0_quad(pA, sigma, L), _s0_quad(pB, sigma, L)
    if method == "envelope":
        return 0.5 * (sB - sA)

    def ratio(p, s0):  # Phi^{-1}(p) / G(p)
        z = ndtri(p)
        G = L * (ndtr((s0 + 1.0 / L) / sigma) - ndtr(s0 / sigma)) / norm.pdf(z)
        return z / G

    cohen = 0.5 * sigma * (ndtri(pA) - ndtri(pB))
    return max(0.5 * (ratio(pA, sA) - ratio(pB, sB)), cohen)


def _inputs(n, seed=0):
    rng = np.random.default_rng(seed)
    pA = rng.uniform(0.501, 0.99999, size=n)
    pB = rng.uniform(1e-5, 1.0, size=n) * (1.0 - pA)  # pB < 1 - pA < 1/2
    sigma = rng.uniform(0.05, 2.0, size=n)
    L = np.exp(rng.uniform(np.log(0.01), np.log(100.0), size=n))
    return pA, pB, sigma, L


def _bench(method: str, quick: bool) -> dict:
    from smoothlearn.radius import lipschitz_radius

    n_inputs = 100_000
    n_base = 40 if quick else 1_000
    chunk, repeat = 20, 3
    pA, pB, sigma, L = _inputs(n_inputs)
    rows = list(zip(*(a[:n_base].tolist() for a in (pA, pB, sigma, L)), strict=True))

    def fast():
        return lipschitz_radius(pA, pB, sigma=sigma, L=L, method=method)

    # Shared machines stall processes for whole seconds: both sides are timed
    # in small interleaved pieces, each the best of `repeat` tries.
    t_fast, radius = _best_time(fast, 1)
    t_base_sub, ref = 0.0, []
    for start in range(0, n_base, chunk):
        piece = rows[start : start + chunk]
        t, out = _best_time(
            lambda p=piece: [_radius_quad(*r, method) for r in p], repeat
        )
        t_base_sub += t
        ref.extend(out)
        t_fast = min(t_fast, _best_time(fast, repeat)[0])
    err = float(np.max(np.abs(radius[:n_base] - np.array(ref))))
    t_base = t_base_sub * n_inputs / n_base
    return {
        "name": f"lipschitz_radius(method='{method}'), {n_inputs:,} inputs",
        "baseline_s": t_base,
        "smoothlearn_s": t_fast,
        "ratio": t_base / t_fast,
        "notes": (
            f"quad + brentq per input on {n_base:,} inputs, scaled; "
            f"max |diff| {err:.1e}"
        ),
        "max_abs_diff": err,
    }


def run(quick: bool = False) -> list[dict]:
    """Run the benchmark; one row per radius form.

    Rows hold ``name``, ``baseline_s`` (scaled to 100,000 inputs),
    ``smoothlearn_s``, ``ratio`` (baseline / smoothlearn), ``notes`` and
    ``max_abs_diff``.  Raises if the two sides differ by more than 1e-8.
    """
    rows = [_bench("paper", quick), _bench("envelope", quick)]
    for row in rows:
        if not row["max_abs_diff"] <= 1e-8:
            raise AssertionError(f"radii disagree with the quadrature: {row}")
    return rows


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller baseline subset")
    args = parser.parse_args(argv)
    print("| benchmark | baseline (s) | smoothlearn (s) | speed-up | notes |")
    print("|---|---:|---:|---:|---|")
    for r in run(quick=args.quick):
        print(
            f"| {r['name']} | {r['baseline_s']:.2f} | {r['smoothlearn_s']:.4f} | "
            f"{r['ratio']:.0f}x | {r['notes']} |"
        )


if __name__ == "__main__":
    main()
