"""The ``smoothlearn`` command: certify, gap, recertify, compare-intervals.

A thin layer over the public API.  The parser is built when :func:`main`
runs, never at import.  Tables go to standard output; progress and notes to
standard error; a bad input is one line ``smoothlearn: error: ...`` on
standard error and exit status 2, never a traceback.

One module per subcommand (:mod:`~smoothlearn.cli.certify`,
:mod:`~smoothlearn.cli.gap`, :mod:`~smoothlearn.cli.recertify`,
:mod:`~smoothlearn.cli.compare_intervals`), each with ``add_parser(subparsers)``
and ``run(args)``; the pieces they share live in private modules (``_common``:
errors, help texts from the docstrings, argument types; ``_inputs``: data,
model and the demo; ``_tables``: tables and plots).
"""

from __future__ import annotations

import argparse
import sys

from . import certify, compare_intervals, gap, recertify
from ._common import _EXIT_ERROR, _PROG, _first_line, _UserError

__all__ = ["main"]

#: The subcommands, in the order of ``smoothlearn --help``.
_COMMANDS = (certify, gap, recertify, compare_intervals)


def _build_parser() -> argparse.ArgumentParser:
    from .. import __version__

    summary = (__doc__ or "").splitlines()[0]
    parser = argparse.ArgumentParser(
        prog=_PROG,
        description="Randomized-smoothing certification of classifiers "
        "(Cohen et al. 2019; Delattre et al. 2025). " + summary.split(":")[0] + ".",
    )
    parser.add_argument(
        "--version", action="version", version=f"%(prog)s {__version__}"
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for command in _COMMANDS:
        command.add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the ``smoothlearn`` command; return its exit status.

    Parameters
    ----------
    argv : list of str, default=None
        The arguments after the program name; None reads ``sys.argv[1:]``.

    Returns
    -------
    status : int
        0 on success, 2 for a bad command line or a bad input (reported on
        one line of standard error), 130 when interrupted.
    """
    parser = _build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except (_UserError, ValueError, ImportError) as exc:
        # ValueError: the library's own parameter and data checks, whose
        # messages name the parameter; ImportError: a missing optional extra.
        print(f"{_PROG}: error: {_first_line(exc)}", file=sys.stderr)
        return _EXIT_ERROR
    except KeyboardInterrupt:
        print(f"{_PROG}: interrupted", file=sys.stderr)
        return 130
