"""``smoothlearn recertify``: new certificates from a saved result, no model."""

from __future__ import annotations

# The command's parts, not API: the public name is smoothlearn.cli.main.
__all__: list[str] = []

import time
import warnings
from pathlib import Path

from ._common import (
    _DATA_FILE,
    _first_line,
    _help,
    _parameter_docs,
    _probability,
    _radius_value,
    _UserError,
)
from ._inputs import _load_npz
from ._tables import _approximate_note, _default_radii, _format_table, _row


def add_parser(subparsers) -> None:
    """Add ``recertify`` and its options to the command's subparsers."""
    from ..intervals import PROCEDURES
    from ..result import CertificationResult

    rdocs = _parameter_docs(CertificationResult.recertify)
    recert = subparsers.add_parser(
        "recertify",
        help="recompute certificates from a saved result, without the model",
        description=(
            "Recompute the certificates of a saved CertificationResult "
            "(smoothlearn certify --output, or CertificationResult.save) with "
            "another multi-class procedure, alpha or radius, from its stored "
            "statistics: no model and no new draws. Prints the stored and the "
            "new certificates side by side."
        ),
    )
    recert.add_argument(
        "result",
        type=Path,
        metavar="RESULT.npz",
        help="A result saved by CertificationResult.save.",
    )
    recert.add_argument(
        "--interval",
        choices=sorted(PROCEDURES),
        default=None,
        help=_help(rdocs, "interval"),
    )
    recert.add_argument(
        "--alpha", type=_probability, default=None, help=_help(rdocs, "alpha")
    )
    recert.add_argument(
        "--radius", choices=("mono", "multi"), default=None, help=_help(rdocs, "radius")
    )
    recert.add_argument(
        "--data",
        type=Path,
        metavar="FILE.npz",
        help="A .npz with the true labels y of the certified inputs "
        f"(e.g. {_DATA_FILE} of certify --output), to report "
        "certified accuracy.",
    )
    recert.add_argument(
        "--radii",
        type=_radius_value,
        nargs="+",
        default=None,
        metavar="R",
        help="Radii of the table (default: 0, sigma, 2 sigma, 3 sigma).",
    )
    recert.add_argument(
        "--output",
        type=Path,
        metavar="FILE.npz",
        help="Save the recertified result there.",
    )
    recert.set_defaults(func=run)


def run(args) -> int:
    """Run ``smoothlearn recertify``; return the exit status."""
    from .. import ApproximateCertificateWarning, CertificationResult

    if not args.result.is_file():
        raise _UserError(f"result file not found: {args.result}")
    try:
        stored = CertificationResult.load(args.result)
    except (OSError, ValueError, KeyError) as exc:
        raise _UserError(
            f"cannot read {args.result} as a saved CertificationResult: "
            f"{_first_line(exc)}"
        ) from None
    y = None
    if args.data is not None:
        _, y = _load_npz(args.data, need_X=False)
        if len(y) != stored.n_inputs:
            raise _UserError(
                f"{args.data} has {len(y)} labels but {args.result} holds "
                f"{stored.n_inputs} certified inputs"
            )
    t = time.perf_counter()
    with warnings.catch_warnings():
        # the table labels such rows and its footer says what that means
        warnings.simplefilter("ignore", ApproximateCertificateWarning)
        new = stored.recertify(
            alpha=args.alpha, interval=args.interval, radius=args.radius
        )
    seconds = time.perf_counter() - t
    radii = args.radii if args.radii is not None else _default_radii(stored.sigma)

    def describe(res):
        return f"{type(res.interval).__name__}, {res.kind}, alpha={res.alpha:g}"

    rows = [
        _row("stored: " + describe(stored), y, stored, radii, 0.0),
        _row("new:    " + describe(new), y, new, radii, seconds),
    ]
    print(_format_table(rows, radii, labelled=y is not None))
    print(
        f"{stored.n_inputs} inputs, sigma={stored.sigma:g}, n0={stored.n0}, "
        f"n={stored.n}; recertified from the stored statistics (no model, no new "
        "draws)."
        + (
            ""
            if y is not None
            else " Pass --data with the labels y for certified accuracy."
        )
        + _approximate_note([stored, new])
    )
    if args.output is not None:
        try:
            new.save(args.output)
        except OSError as exc:
            raise _UserError(
                f"cannot write {args.output}: {_first_line(exc)}"
            ) from None
    return 0
