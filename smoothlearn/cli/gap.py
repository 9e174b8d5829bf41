"""``smoothlearn gap``: certified accuracy next to the accuracy an attack leaves."""

from __future__ import annotations

# The command's parts, not API: the public name is smoothlearn.cli.main.
__all__: list[str] = []

import time

from ._common import (
    _add_classifier_arguments,
    _first_line,
    _note,
    _parameter_docs,
    _positive_int,
    _UserError,
)
from ._inputs import _fitted_classifier, _progress_verbose


def add_parser(subparsers) -> None:
    """Add ``gap`` and its options to the command's subparsers."""
    from .._demo import ARCHITECTURES
    from ..smoothed import SmoothedClassifier

    docs = _parameter_docs(SmoothedClassifier)
    gap = subparsers.add_parser(
        "gap",
        help="certified accuracy next to the accuracy an attack leaves",
        description=(
            "Per radius: certified accuracy with Cohen's procedure and with the "
            "paper's (CPM, multi radius), the empirical robust accuracy under an "
            "l2 attack on the smoothed classifier (SmoothAdv PGD, or PGD on the "
            "base model) judged by PREDICT with fresh noise, and the share of "
            "the gap between Cohen's certificate and the attack that the "
            "paper's closes. Certified accuracy can never exceed the empirical "
            "one (up to the failure probability alpha). Without --data and "
            "--model, uses the demo's CNN on scikit-learn's digits."
        ),
    )
    g = _add_classifier_arguments(
        gap, docs, ARCHITECTURES, max_inputs=100, radii="0.25 0.5 0.75 1.0"
    )
    g = gap.add_argument_group("attack")
    g.add_argument(
        "--attack",
        choices=("smoothadv", "pgd"),
        default="smoothadv",
        help="SmoothAdv PGD on the smoothed classifier (Salman et al. 2019), "
        "or plain PGD on the base model (default: %(default)s).",
    )
    g.add_argument(
        "--steps",
        type=_positive_int,
        default=20,
        help="Gradient steps of the attack (default: %(default)s).",
    )
    g.add_argument(
        "--noise-draws",
        type=_positive_int,
        default=16,
        help="SmoothAdv's noise draws per input and step (default: %(default)s).",
    )
    g.add_argument(
        "--n-predict",
        type=_positive_int,
        default=None,
        help="Draws of the PREDICT that judges each attacked input (default: --n).",
    )
    gap.set_defaults(func=run)


def run(args) -> int:
    """Run ``smoothlearn gap``; return the exit status."""
    from ..attacks import PGD, SmoothAdvPGD, gap_report

    verbose = _progress_verbose(args)
    clf, X, y, source, t_fit = _fitted_classifier(args, verbose=verbose)
    if args.attack == "smoothadv":
        attack = SmoothAdvPGD(
            n_steps=args.steps, n_noise=args.noise_draws, random_state=args.seed
        )
        what = f"SmoothAdv PGD, {args.steps} steps x {args.noise_draws} noise draws"
    else:
        attack = PGD(n_steps=args.steps)
        what = f"PGD on the base model, {args.steps} steps"
    radii = args.radii if args.radii is not None else [0.25, 0.5, 0.75, 1.0]
    n_predict = args.n if args.n_predict is None else args.n_predict
    _note(
        args,
        f"Certifying {len(X)} inputs, then attacking them at {len(radii)} radii "
        f"({what})...",
    )
    t1 = time.perf_counter()
    try:
        report = gap_report(
            clf, X, y, radii=radii, attack=attack, n_predict=args.n_predict
        )
    except RuntimeError as exc:
        raise _UserError(f"the model failed: {_first_line(exc)}") from None
    seconds = time.perf_counter() - t1
    print(report.to_markdown())
    print(
        f"{source}; sigma={args.sigma:g}, n0={args.n0}, n={args.n}, "
        f"alpha={args.alpha:g}; attack: {what}, judged by PREDICT with "
        f"{n_predict} fresh draws.\n"
        f"time: fit {t_fit:.1f}s, certify and attack {seconds:.1f}s."
    )
    return 0
