"""Benchmark: the betting interval against the other bounds on a [0, 1] mean.

Run ``python benchmarks/bench_betting.py`` (add ``--quick`` for a smaller
run, about a minute on two cores).  Prints Markdown tables:

* **Width**: the median, over replications, of the distance from the sample
  mean to the one-sided lower bound at ``alpha = 0.001``, for
  Clopper-Pearson (Bernoulli draws only), Hoeffding, empirical Bernstein, the
  anytime betting sequence (:class:`smoothlearn.sequential.
  BettingConfidenceSequence`) and the fixed-``n`` betting interval three
  ways: from the draws (``lower_from_draws``), from a
  :class:`~smoothlearn.intervals.BettingState` fed in 10 batches, and from
  the sufficient statistics alone (the order-free bound).  ``ratio`` is
  betting (draws) over empirical Bernstein.
* **Targets** of issue 20: at ``k = n`` the distance to 1 over
  Clopper-Pearson's (``1 - alpha**(1/n)``), target <= 1.3; for low-variance
  scores (mean .95, sd .01 and .02, ``n = 10,000``) the median gap over
  empirical Bernstein's, target <= 0.6.
* **Coverage**: the failure rate of the betting lower and upper bounds at
  ``alpha = 0.1`` (large enough for failures to be seen) on the hardest
  laws, with the one-sided binomial test of "failure probability <= alpha".
* **Truncation**: single truncations ``c`` against mixtures, the study
  behind the default ``truncation=(0.75, 0.99)``.
* **Cost**: ``BettingState.update`` against accumulating ``(sum, sum_sq)``.

Each benchmark row of :func:`run` follows ``benchmarks/run_all.py``.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

ALPHA = 0.001


def _laws(rng):
    """(label, true mean, sampler, Bernoulli?) of the width table."""

    def bern(p):
        return lambda s: (rng.random(s) < p) * 1.0

    def beta(mean, sd):
        c = mean * (1 - mean) / sd**2 - 1.0
        return lambda s: rng.beta(mean * c, (1 - mean) * c, s)

    return [
        ("Bernoulli(0.5)", 0.5, bern(0.5), True),
        ("Bernoulli(0.9)", 0.9, bern(0.9), True),
        ("Bernoulli(0.99)", 0.99, bern(0.99), True),
        ("Bernoulli(0.999)", 0.999, bern(0.999), True),
        ("all ones (k = n)", 1.0, lambda s: np.ones(s), True),
        ("Beta(0.5, 0.5)", 0.5, lambda s: rng.beta(0.5, 0.5, s), False),
        (
            "two-point {0.1, 1}, P(1) = 0.97",
            0.973,
            lambda s: np.where(rng.random(s) < 0.97, 1.0, 0.1),
            False,
        ),
        ("soft: mean .95, sd .01", 0.95, beta(0.95, 0.01), False),
        ("soft: mean .95, sd .02", 0.95, beta(0.95, 0.02), False),
        ("soft: mean .5, sd .01", 0.5, beta(0.5, 0.01), False),
    ]


def _methods():
    from smoothlearn.intervals import (
        BettingInterval,
        ClopperPearson,
        EmpiricalBernstein,
        Hoeffding,
    )
    from smoothlearn.sequential import BettingConfidenceSequence

    return (
        ClopperPearson(),
        Hoeffding(),
        EmpiricalBernstein(),
        BettingConfidenceSequence(),
        BettingInterval(),
    )


def width_table(quick: bool) -> list[dict]:
    """Median lower-bound gaps per (law, n) and method."""
    cp, hoeffding, eb, sequence, bet = _methods()
    rng = np.random.default_rng(0)
    sizes = (
        [(100, 5), (1000, 5), (10_000, 5)]
        if quick
        else [
            (100, 20),
            (1000, 20),
            (10_000, 10),
            (100_000, 5),
        ]
    )
    rows = []
    for n, reps in sizes:
        for label, _, draw, bernoulli in _laws(rng):
            x = draw((reps, n))
            k, sq = x.sum(1), (x * x).sum(1)
            mean = k / n
            gaps = {}
            if bernoulli:
                gaps["Clopper-Pearson"] = mean - cp.lower(np.round(k), n, ALPHA)
            gaps["Hoeffding"] = mean - hoeffding.lower(k, n, ALPHA, sq)
            gaps["empirical Bernstein"] = mean - eb.lower(k, n, ALPHA, sq)
            gaps["betting sequence"] = mean - sequence.lower(k, n, ALPHA)
            gaps["betting (draws)"] = mean - bet.lower_from_draws(x, ALPHA)
            state = bet.new_state(reps, n, ALPHA, side="lower")
            for part in np.array_split(x, 10, axis=1):
                state.update(part)
            gaps["betting (state)"] = mean - state.lower(ALPHA)
            gaps["betting (sums only)"] = mean - bet.lower(k, n, ALPHA, sq)
            med = {name: float(np.median(g)) for name, g in gaps.items()}
            rows.append({"law": label, "n": n, "reps": reps, "median_gap": med})
    return rows


def targets(quick: bool) -> dict:
    """The two target ratios of issue 20."""
    from smoothlearn.intervals import BettingInterval, EmpiricalBernstein

    bet, eb = BettingInterval(), EmpiricalBernstein()
    ones = {}
    for n in (100, 1000, 10_000) if quick else (100, 1000, 10_000, 100_000):
        for alpha in (0.001, 0.05):
            d = 1.0 - bet.lower_from_draws(np.ones(n), alpha)
            ones[(n, alpha)] = float(d / (1.0 - alpha ** (1.0 / n)))
    rng = np.random.default_rng(1)
    low = {}
    n = 10_000
    for sd in (0.01, 0.02):
        c = 0.95 * 0.05 / sd**2 - 1.0
        x = rng.beta(0.95 * c, 0.05 * c, (5 if quick else 20, n))
        gap = x.mean(1) - bet.lower_from_draws(x, ALPHA)
        gap_eb = x.mean(1) - eb.lower(x.sum(1), n, ALPHA, (x * x).sum(1))
        low[sd] = (float(np.median(gap / gap_eb)), float(np.median(gap_eb)))
    return {"ones": ones, "low_variance": low}


TRUNCATIONS = [
    (0.5,),
    (0.75,),
    (0.9,),
    (0.95,),
    (0.99,),
    (0.75, 0.99),
    (0.6, 0.9, 0.99),
    (0.5, 0.75, 0.9, 0.99),
]


def truncation_study(quick: bool) -> list[dict]:
    """Why ``truncation=(0.75, 0.99)``: single truncations against mixtures.

    Medians over paths at ``alpha = 0.001`` of the lower-bound gap over
    Clopper-Pearson's (Bernoulli laws) or empirical Bernstein's (soft).
    """
    from smoothlearn.intervals import (
        BettingInterval,
        ClopperPearson,
        EmpiricalBernstein,
    )

    cp, eb = ClopperPearson(), EmpiricalBernstein()
    rng = np.random.default_rng(4)
    reps, n = (4 if quick else 10), 10_000
    cases = [
        ("all ones, n=10,000 / CP", np.ones((1, n)), cp),
        ("Bernoulli(0.999), n=10,000 / CP", (rng.random((reps, n)) < 0.999) * 1.0, cp),
        ("Bernoulli(0.99), n=1,000 / CP", (rng.random((reps, 1000)) < 0.99) * 1.0, cp),
        ("Bernoulli(0.5), n=10,000 / CP", (rng.random((reps, n)) < 0.5) * 1.0, cp),
        ("mean .95, sd .01, n=10,000 / EB", rng.beta(450.3, 23.7, (reps, n)), eb),
    ]
    rows = []
    for trunc in TRUNCATIONS:
        bet = BettingInterval(truncation=trunc)
        ratios = {}
        for label, x, ref in cases:
            size = x.shape[1]
            k, sq = x.sum(1), (x * x).sum(1)
            gap_ref = k / size - ref.lower(
                k if ref is eb else np.round(k), size, ALPHA, sq if ref is eb else None
            )
            gap = k / size - bet.lower_from_draws(x, ALPHA)
            ratios[label] = float(np.median(gap / gap_ref))
        rows.append({"truncation": trunc, "ratios": ratios})
    return rows


def coverage(quick: bool) -> list[dict]:
    """Failure rates of the betting bounds from the draws at alpha = 0.1."""
    from scipy.stats import binom

    from smoothlearn.intervals import BettingInterval

    bet, alpha = BettingInterval(), 0.1
    rng = np.random.default_rng(2)
    laws = [law for law in _laws(rng) if law[0] != "all ones (k = n)"]
    laws = [laws[i] for i in (0, 3, 4, 5, 7)]  # Bernoulli .5/.999, Beta, 2-pt, soft
    sizes = (
        [(100, 1000), (1000, 300)]
        if quick
        else [
            (100, 4000),
            (1000, 2000),
            (10_000, 400),
        ]
    )
    rows = []
    for n, trials in sizes:
        for label, mu, draw, _ in laws:
            fails = {"lower": 0, "upper": 0}
            for start in range(0, trials, max(1, 1_000_000 // n)):
                x = draw((min(trials - start, max(1, 1_000_000 // n)), n))
                fails["lower"] += int(np.sum(bet.lower_from_draws(x, alpha) > mu))
                fails["upper"] += int(np.sum(bet.upper_from_draws(x, alpha) < mu))
            for side, f in fails.items():
                rows.append(
                    {
                        "law": label,
                        "n": n,
                        "side": side,
                        "trials": trials,
                        "failures": f,
                        "rate": f / trials,
                        "p_value": float(binom.sf(f - 1, trials, alpha)),
                    }
                )
    return rows


def cost(quick: bool) -> dict:
    """Seconds to feed n draws of R quantities: a state vs (sum, sum_sq)."""
    from smoothlearn.intervals import BettingInterval

    rows_q, n = (100, 2000) if quick else (300, 10_000)
    x = np.random.default_rng(3).random((rows_q, n))
    parts = np.array_split(x, 10, axis=1)
    start = time.process_time()
    s = np.zeros(rows_q)
    q = np.zeros(rows_q)
    for part in parts:
        s += part.sum(1)
        q += (part * part).sum(1)
    t_sums = time.process_time() - start
    start = time.process_time()
    state = BettingInterval().new_state(rows_q, n, ALPHA, side="lower")
    for part in parts:
        state.update(part)
    t_state = time.process_time() - start
    return {"quantities": rows_q, "n": n, "sums_s": t_sums, "state_s": t_state}


def run(quick: bool = False) -> list[dict]:
    """Rows in the ``run_all.py`` format, with the tables in extra keys."""
    widths = width_table(quick)
    goals = targets(quick)
    cover = coverage(quick)
    spent = cost(quick)
    study = truncation_study(quick)
    rows = []
    for r in widths:
        med = r["median_gap"]
        ratio = med["betting (draws)"] / med["empirical Bernstein"]
        rows.append(
            {
                "name": f"lower-bound gap, {r['law']}, n={r['n']:,}",
                "baseline_s": None,
                "smoothlearn_s": None,
                "ratio": ratio,
                "notes": "ratio: betting (draws) / empirical Bernstein; "
                + ", ".join(f"{k} {v:.3g}" for k, v in med.items()),
                **r,
            }
        )
    worst_ones = max(goals["ones"].values())
    rows.append(
        {
            "name": "target: k = n, distance to 1 / Clopper-Pearson's",
            "baseline_s": None,
            "smoothlearn_s": None,
            "ratio": worst_ones,
            "notes": "target <= 1.3; "
            + ", ".join(
                f"n={n:,} alpha={a:g}: {v:.3f}" for (n, a), v in goals["ones"].items()
            ),
        }
    )
    for sd, (ratio, gap_eb) in goals["low_variance"].items():
        rows.append(
            {
                "name": f"target: mean .95, sd {sd}, n=10,000, gap / EB's",
                "baseline_s": None,
                "smoothlearn_s": None,
                "ratio": ratio,
                "notes": f"target <= 0.6; EB's median gap {gap_eb:.5f}",
            }
        )
    worst = max(cover, key=lambda c: c["rate"])
    rows.append(
        {
            "name": "coverage of the betting bounds at alpha = 0.1",
            "baseline_s": None,
            "smoothlearn_s": None,
            "ratio": worst["rate"] / 0.1,
            "notes": f"largest failure rate / alpha over {len(cover)} cases "
            f"({worst['law']}, n={worst['n']:,}, {worst['side']}); smallest "
            f"binomial-test p-value {min(c['p_value'] for c in cover):.3g}",
            "coverage": cover,
        }
    )
    for r in study:
        rows.append(
            {
                "name": f"truncation={r['truncation']}",
                "baseline_s": None,
                "smoothlearn_s": None,
                "ratio": None,
                "notes": ", ".join(f"{k}: {v:.3f}" for k, v in r["ratios"].items()),
                **r,
            }
        )
    rows.append(
        {
            "name": f"BettingState.update vs (sum, sum_sq): {spent['quantities']} "
            f"quantities x {spent['n']:,} draws",
            "baseline_s": spent["sums_s"],
            "smoothlearn_s": spent["state_s"],
            "ratio": spent["state_s"] / max(spent["sums_s"], 1e-9),
            "notes": "ratio: state time / sums time (the price of the order); "
            f"{spent['quantities'] * spent['n'] / spent['state_s']:,.0f} draws/s",
        }
    )
    return rows


def _markdown(rows: list[dict]) -> str:
    widths = [r for r in rows if "median_gap" in r]
    names = [
        "Clopper-Pearson",
        "Hoeffding",
        "empirical Bernstein",
        "betting sequence",
        "betting (draws)",
        "betting (state)",
        "betting (sums only)",
    ]
    out = [
        "| law | n | " + " | ".join(names) + " | betting / EB |",
        "|---|---:|" + "---:|" * (len(names) + 1),
    ]
    for r in widths:
        med = r["median_gap"]
        cells = [f"{med[k]:.2e}" if k in med else "" for k in names]
        out.append(
            f"| {r['law']} | {r['n']:,} | "
            + " | ".join(cells)
            + f" | {r['ratio']:.3f} |"
        )
    out.append("")
    out.append("| what | ratio | notes |")
    out.append("|---|---:|---|")
    for r in rows:
        if "median_gap" not in r:
            ratio = "" if r["ratio"] is None else f"{r['ratio']:.3g}"
            out.append(f"| {r['name']} | {ratio} | {r['notes']} |")
    cover = next(r["coverage"] for r in rows if "coverage" in r)
    out.append("")
    out.append("| law | n | side | trials | failures | rate | p-value |")
    out.append("|---|---:|---|---:|---:|---:|---:|")
    for c in cover:
        out.append(
            f"| {c['law']} | {c['n']:,} | {c['side']} | {c['trials']:,} | "
            f"{c['failures']} | {c['rate']:.4f} | {c['p_value']:.3g} |"
        )
    return "\n".join(out)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller sizes")
    args = parser.parse_args(argv)
    print(_markdown(run(quick=args.quick)))


if __name__ == "__main__":
    main()
