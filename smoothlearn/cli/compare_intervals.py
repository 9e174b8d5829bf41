"""``smoothlearn compare-intervals``: coverage and width of the interval methods.

Exact coverage from sums over the binomial law (:mod:`smoothlearn.stats`), or
simulated coverage on any law on [0, 1] with ``--law``.
"""

from __future__ import annotations

# The command's parts, not API: the public name is smoothlearn.cli.main.
__all__: list[str] = []

import sys
from pathlib import Path

import numpy as np

from ._common import _first_line, _law, _positive_int, _probability, _UserError
from ._tables import _print_table


def add_parser(subparsers) -> None:
    """Add ``compare-intervals`` and its options to the command's subparsers."""
    from ..intervals import INTERVALS

    cmp_ = subparsers.add_parser(
        "compare-intervals",
        help="coverage and width of the interval methods",
        description=(
            "Exact coverage probability and expected width of the interval "
            "methods on Bernoulli draws over a grid of true probabilities p, for "
            "each n (smoothlearn.stats: sums over the binomial law, no "
            "simulation; a method that needs more than the count gets its bound "
            "from the count). With --law: simulated coverage and width on any "
            "[0, 1] law, each method getting what it uses (the betting interval "
            "the draws in order). A guaranteed method never has coverage below "
            "1 - alpha."
        ),
    )
    names = [*sorted(INTERVALS), "betting_sequence"]
    cmp_.add_argument(
        "--intervals",
        nargs="+",
        choices=names,
        default=None,
        metavar="NAME",
        help=f"Interval methods, among: {', '.join(names)} (default: "
        "clopper_pearson wilson agresti_coull jeffreys hoeffding; with --law: "
        "hoeffding empirical_bernstein betting betting_sequence, and "
        "clopper_pearson on Bernoulli laws).",
    )
    cmp_.add_argument(
        "--law",
        nargs="+",
        type=_law,
        default=None,
        metavar="LAW",
        help="Simulate draws from these laws on [0, 1] instead: bernoulli:P, "
        "beta:A,B, two-point:A,B,P (B with probability P, else A), uniform.",
    )
    cmp_.add_argument(
        "--trials",
        type=_positive_int,
        default=2000,
        help="Simulated trials per row with --law (default: %(default)s).",
    )
    cmp_.add_argument(
        "--seed",
        type=int,
        default=0,
        help="Seed of the simulation with --law (default: %(default)s).",
    )
    cmp_.add_argument(
        "--n",
        type=_positive_int,
        nargs="+",
        default=[10, 100, 1000],
        help="Numbers of draws (default: %(default)s).",
    )
    cmp_.add_argument(
        "--alpha",
        type=_probability,
        default=0.05,
        help="Failure probability of each bound (default: %(default)s).",
    )
    cmp_.add_argument(
        "--side",
        choices=("lower", "upper", "two-sided"),
        default="lower",
        help="One-sided lower or upper bound, or two-sided interval "
        "(default: %(default)s).",
    )
    cmp_.add_argument(
        "--grid",
        type=_positive_int,
        default=199,
        help="Number of values of p, evenly spaced in (0, 1) (default: %(default)s).",
    )
    cmp_.add_argument(
        "--output",
        type=Path,
        metavar="FILE.png",
        help="Also draw coverage and width against p (needs matplotlib).",
    )
    cmp_.set_defaults(func=run)


def _compare_simulated(args) -> int:
    """compare-intervals --law: Monte-Carlo coverage and width on [0, 1] laws."""
    from ..stats import _resolve_interval, simulated_coverage

    if args.output is not None:
        raise _UserError("--output draws the exact (binomial) mode only, not --law")
    cols = ["law", "interval", "guaranteed", "n", "failures", "rate"]
    cols += ["rate upper", "p-value", "median width"]
    body = []
    for label, law, bernoulli in args.law:
        names = args.intervals
        if names is None:
            names = ["hoeffding", "empirical_bernstein", "betting", "betting_sequence"]
            names = (["clopper_pearson"] if bernoulli else []) + names
        for name in names:
            method = _resolve_interval(name)
            if method.requires_counts and not bernoulli:
                continue  # binomial methods need 0/1 draws
            for n in args.n:
                res = simulated_coverage(
                    method,
                    law,
                    n,
                    args.alpha,
                    args.trials,
                    side=args.side,
                    random_state=args.seed,
                )
                body.append(
                    [
                        label,
                        name,
                        "yes" if method.guaranteed else "no",
                        str(n),
                        str(res.n_failures),
                        f"{res.failure_rate:.4f}",
                        f"{res.failure_rate_upper:.4f}",
                        f"{res.p_value:.3g}",
                        f"{res.median_width:.5f}",
                    ]
                )
    _print_table(cols, body)
    what = {
        "lower": "one-sided lower bound",
        "upper": "one-sided upper bound",
        "two-sided": "two-sided interval",
    }[args.side]
    print(
        f"Simulated failures of the {what} at alpha={args.alpha:g} over "
        f"{args.trials} trials per row (seed {args.seed}); 'rate upper' is the 95% "
        "Clopper-Pearson bound on the failure probability and 'p-value' the "
        "binomial test of failure probability <= alpha. Width is "
        + (
            "upper - lower."
            if args.side == "two-sided"
            else "the median distance of the bound from the sample mean."
        )
    )
    return 0


def run(args) -> int:
    """Run ``smoothlearn compare-intervals``; return the exit status."""
    from ..stats import _resolve_interval, binomial_coverage, expected_width

    if args.law is not None:
        return _compare_simulated(args)
    if args.intervals is None:
        args.intervals = [
            "clopper_pearson",
            "wilson",
            "agresti_coull",
            "jeffreys",
            "hoeffding",
        ]
    p = np.linspace(0.0, 1.0, args.grid + 2)[1:-1]
    width_side = "two-sided" if args.side == "two-sided" else args.side
    cols = [
        "interval",
        "guaranteed",
        "n",
        "min coverage",
        "at p",
        "mean coverage",
        "mean width",
    ]
    body = []
    for name in args.intervals:
        method = _resolve_interval(name)
        for n in args.n:
            cov = binomial_coverage(method, p, n, args.alpha, side=args.side)
            width = expected_width(method, p, n, args.alpha, side=width_side).width
            i = int(np.argmin(cov.coverage))
            body.append(
                [
                    name,
                    "yes" if method.guaranteed else "no",
                    str(n),
                    f"{cov.min_coverage:.4f}",
                    f"{p[i]:.3f}",
                    f"{np.mean(cov.coverage):.4f}",
                    f"{np.mean(width):.4f}",
                ]
            )
    _print_table(cols, body)
    what = {
        "lower": "one-sided lower bound",
        "upper": "one-sided upper bound",
        "two-sided": "two-sided interval",
    }[args.side]
    print(
        f"Exact coverage of the {what} at alpha={args.alpha:g} (nominal "
        f"{1 - args.alpha:g}) over {args.grid} values of p in (0, 1); width is "
        + (
            "upper - lower."
            if args.side == "two-sided"
            else "the mean distance of the bound from k/n."
        )
    )
    if args.output is not None:
        try:
            from matplotlib.figure import Figure
        except ImportError:
            raise _UserError(
                'the plot needs matplotlib: pip install "smoothlearn[plot]"'
            ) from None
        from ..intervals import INTERVALS
        from ..plotting import plot_interval_coverage, plot_interval_width

        ns = args.n
        methods = [
            name if name in INTERVALS else _resolve_interval(name)
            for name in args.intervals
        ]
        fig = Figure(figsize=(4.2 * len(ns), 6.5), layout="constrained")
        axes = fig.subplots(2, len(ns), squeeze=False)
        for j, n in enumerate(ns):
            plot_interval_coverage(
                methods, n, args.alpha, p=p, side=args.side, ax=axes[0, j]
            )
            plot_interval_width(
                methods, n, args.alpha, p=p, side=width_side, ax=axes[1, j]
            )
            axes[0, j].set_title(f"n = {n}")
            lo = min(1 - 4 * args.alpha, axes[0, j].get_ylim()[0])
            axes[0, j].set_ylim(max(lo, 1 - 10 * args.alpha), 1.0)
        try:
            fig.savefig(args.output, dpi=110)
        except OSError as exc:
            raise _UserError(
                f"cannot write {args.output}: {_first_line(exc)}"
            ) from None
        print(f"Saved {args.output}.", file=sys.stderr)
    return 0
