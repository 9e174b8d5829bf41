"""Check Clopper-Pearson bounds at huge n against exact binomial sums.

Usage::

    python benchmarks/beta_reference.py --seed 11 --seconds 600

Draws random ``n`` in [1e3, 2**40], a minority count ``m`` (log-uniform in
[1, 2000], or 0 one time in ten) and ``alpha`` in [1e-15, 0.5], and compares

* ``lower(n - m, n, alpha)``, the root of ``P(Bin(n, x) >= n - m) = alpha``,
  and its mirror ``upper(m, n, alpha)``,

with the root of the same equation computed by mpmath at 40 digits from
``P(Bin(n, 1 - x) <= m)``, a sum of ``m + 1`` positive terms (no
cancellation, exact at any ``n``).  It reports the largest relative error of
smoothlearn's checked root (``_beta_inverse``, before the outward margin) and
of scipy's bare ``betaincinv`` / ``betainccinv``, and counts final bounds on
the wrong side of the exact root, for smoothlearn and for the bare inverse
moved outward by the former margin of 1e-10.  This is the regime of
certification: pA near 1, pB near 0.  Run by hand (minutes); not a test.
"""

from __future__ import annotations

import argparse
import time

import mpmath as mp
import numpy as np
from scipy.special import betainccinv, betaincinv

from smoothlearn.intervals import ClopperPearson
from smoothlearn.intervals._binomial import _beta_inverse

mp.mp.dps = 40


def exact_root(n: int, m: int, alpha: float, x0: float):
    """Root of P(Bin(n, 1 - x) <= m) = alpha, bisected within x0 (1 +- 1e-7)."""

    def excess(x):
        term = mp.exp(n * mp.log(x))
        total, ratio = term, (1 - x) / x
        for j in range(m):
            term = term * (n - j) / (j + 1) * ratio
            total += term
        return total - alpha

    lo = mp.mpf(x0) * (1 - mp.mpf(1e-7))
    hi = min(mp.mpf(x0) * (1 + mp.mpf(1e-7)), mp.mpf(1))
    if not excess(lo) < 0 < excess(hi):
        return None
    for _ in range(50):
        mid = (lo + hi) / 2
        lo, hi = (lo, mid) if excess(mid) > 0 else (mid, hi)
    return lo


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--seconds", type=float, default=60.0)
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)
    cp = ClopperPearson()
    worst = {"smoothlearn": 0.0, "scipy": 0.0}
    unsound = {"smoothlearn": 0, "scipy + 1e-10": 0}
    done = skipped = 0
    start = time.monotonic()
    while time.monotonic() - start < args.seconds:
        n = int(10 ** rng.uniform(3, np.log10(2**40)))
        m = 0
        if rng.random() < 0.9:
            m = int(10 ** rng.uniform(0, np.log10(min(2000, n - 1))))
        alpha = float(10 ** rng.uniform(-15, np.log10(0.5)))
        a, b = float(n - m), float(m + 1)
        lo = float(_beta_inverse(a, b, alpha, upper=False))
        up = float(_beta_inverse(b, a, alpha, upper=True))
        root = exact_root(n, m, alpha, lo)
        if root is None:
            skipped += 1
            continue
        lo_bare, up_bare = betaincinv(a, b, alpha), betainccinv(b, a, alpha)
        for name, x, y in (("smoothlearn", lo, up), ("scipy", lo_bare, up_bare)):
            err = max(abs(x / root - 1), abs(y / (1 - root) - 1))
            worst[name] = max(worst[name], float(err))
        final_lo, final_up = cp.lower(n - m, n, alpha), cp.upper(m, n, alpha)
        unsound["smoothlearn"] += not (final_lo <= root and final_up >= 1 - root)
        old_lo, old_up = lo_bare * (1 - 1e-10), up_bare * (1 + 1e-10)
        unsound["scipy + 1e-10"] += not (old_lo <= root and old_up >= 1 - root)
        done += 1
    print(f"{done} cases ({skipped} skipped: root not bracketed), seed {args.seed}")
    for name, err in worst.items():
        print(f"  largest relative error of the root, {name}: {err:.3g}")
    for name, count in unsound.items():
        print(f"  final bounds on the wrong side, {name}: {count}")


if __name__ == "__main__":
    main()
