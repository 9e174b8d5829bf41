"""``smoothlearn certify``: certify a classifier and compare the procedures.

Certifies the inputs once, with the chosen multi-class procedure and radius,
and recertifies the same statistics with Cohen's procedure and the paper's
for the other rows of the table.
"""

from __future__ import annotations

# The command's parts, not API: the public name is smoothlearn.cli.main.
__all__: list[str] = []

import time
from pathlib import Path

import numpy as np

from ._common import (
    _DATA_FILE,
    _PLOT_FILE,
    _RESULT_FILE,
    _TABLE_FILE,
    _add_classifier_arguments,
    _first_line,
    _help,
    _note,
    _parameter_docs,
    _UserError,
)
from ._inputs import _fitted_classifier, _progress_verbose
from ._tables import _approximate_note, _default_radii, _format_table, _row, _save_plot

#: The rows of the comparison table: Cohen's procedure and the paper's.
_COMPARISONS = (
    ("Cohen (top_class, mono)", "top_class", "mono"),
    ("Bonferroni, multi", "bonferroni", "multi"),
    ("CPM, multi (paper)", "cpm", "multi"),
)


def add_parser(subparsers) -> None:
    """Add ``certify`` and its options to the command's subparsers."""
    from .._demo import ARCHITECTURES
    from ..intervals import PROCEDURES
    from ..smoothed import SmoothedClassifier

    docs = _parameter_docs(SmoothedClassifier)
    certify = subparsers.add_parser(
        "certify",
        help="certify a classifier (default: a small CNN on scikit-learn's digits)",
        description=(
            "Certify the inputs of a classifier with randomized smoothing and "
            "print certified accuracy, average certified radius (ACR) and "
            "abstain rate for Cohen's procedure and the paper's. Without --data "
            "and --model, trains a small CNN with Gaussian noise augmentation "
            "on scikit-learn's digits (no download) and certifies the held-out "
            "split. The same estimation draws serve every row of the table "
            "(the other rows are recertified from the stored statistics)."
        ),
    )
    g = _add_classifier_arguments(certify, docs, ARCHITECTURES)
    g.add_argument(
        "--interval",
        choices=sorted(PROCEDURES),
        default="top_class",
        help=_help(
            docs,
            "interval",
            "The result saved by --output "
            "uses it; the table shows it next to Cohen's and "
            "the paper's.",
        ),
    )
    g.add_argument(
        "--radius",
        choices=("mono", "multi"),
        default="mono",
        help=_help(docs, "radius"),
    )
    g = certify.add_argument_group("output")
    g.add_argument(
        "--output",
        type=Path,
        metavar="DIR",
        help=f"Directory for {_RESULT_FILE} (the CertificationResult), "
        f"{_DATA_FILE} (the certified X, y), {_PLOT_FILE} and "
        f"{_TABLE_FILE}.",
    )
    certify.set_defaults(func=run)


def run(args) -> int:
    """Run ``smoothlearn certify``; return the exit status."""
    verbose = _progress_verbose(args)
    clf, X, y, source, t_fit = _fitted_classifier(
        args, interval=args.interval, radius=args.radius, verbose=verbose
    )
    _note(
        args,
        f"Certifying {len(X)} inputs with n0={args.n0}, n={args.n} noisy draws each...",
    )
    t1 = time.perf_counter()
    try:
        result = clf.certify(X)
    except RuntimeError as exc:
        raise _UserError(
            f"the model failed during certification: {_first_line(exc)}"
        ) from None
    t_cert = time.perf_counter() - t1

    radii = args.radii if args.radii is not None else _default_radii(args.sigma)
    alias = {"class_partitioning": "cpm"}.get(args.interval, args.interval)
    rows, curves = [], {}
    label_mine = next(
        (lab for lab, i, r in _COMPARISONS if (i, r) == (alias, args.radius)),
        f"{args.interval}, {args.radius} (yours)",
    )
    rows.append(_row(label_mine, y, result, radii, t_cert))
    curves[label_mine] = result
    for label, interval, kind in _COMPARISONS:
        if label == label_mine:
            continue
        t = time.perf_counter()
        other = result.recertify(interval=interval, radius=kind)
        rows.append(_row(label, y, other, radii, time.perf_counter() - t))
        curves[label] = other
    order = [lab for lab, _, _ in _COMPARISONS]
    rows.sort(key=lambda r: order.index(r["method"]) if r["method"] in order else -1)

    table = _format_table(rows, radii, labelled=True)
    n_draws = len(X) * (args.n0 + args.n)
    footer = (
        f"{source}; sigma={args.sigma:g}, n0={args.n0}, n={args.n}, "
        f"alpha={args.alpha:g} (each certificate is wrong with probability at "
        f"most alpha).\n"
        f"time: fit {t_fit:.1f}s, certify {t_cert:.1f}s ({n_draws / t_cert:,.0f} "
        f"noisy draws/s); the other rows are recertified from the same draws."
        + _approximate_note(curves.values())
    )
    print(table)
    print(footer)
    if args.output is not None:
        out = args.output
        try:
            out.mkdir(parents=True, exist_ok=True)
            result.save(out / _RESULT_FILE)
            np.savez(out / _DATA_FILE, X=X, y=y)
            (out / _TABLE_FILE).write_text(table + "\n" + footer + "\n")
        except OSError as exc:
            raise _UserError(f"cannot write to {out}: {_first_line(exc)}") from None
        _save_plot(out / _PLOT_FILE, curves, y, xmax=max(3.5 * args.sigma, max(radii)))
        _note(
            args,
            f"Saved {out / _RESULT_FILE}, {out / _DATA_FILE}, "
            f"{out / _PLOT_FILE} and {out / _TABLE_FILE}.",
        )
    return 0
