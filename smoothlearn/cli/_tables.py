"""The tables and plots the subcommands print and save."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ._common import _UserError


def _default_radii(sigma: float) -> list[float]:
    return [round(float(sigma) * k, 6) for k in range(4)]


def _row(label, y, result, radii, seconds) -> dict:
    """Numbers of one table row, all from smoothlearn.metrics."""
    from ..metrics import average_certified_radius, certified_accuracy

    if not getattr(result, "guaranteed", True):
        label += " (approximate)"  # an interval with guaranteed=False
    row = {
        "method": label,
        "abstain": float(np.mean(result.abstained)),
        "time": seconds,
    }
    if y is not None:
        acc = np.atleast_1d(certified_accuracy(y, result, np.asarray(radii)))
        row["acc"] = [float(a) for a in acc]
        row["acr"] = float(average_certified_radius(y, result))
    else:
        row["acc"] = [
            float(np.mean(result.certified & (result.radius >= r))) for r in radii
        ]
        row["acr"] = float(np.mean(result.radius))
    return row


def _approximate_note(results) -> str:
    """A footer line when some rows are approximate (else the empty string)."""
    from ..result import _procedure_guarantee

    names = sorted(
        {_procedure_guarantee(r.interval)[1] for r in results if not r.guaranteed}
    )
    if not names:
        return ""
    return (
        f"\nRows marked (approximate) use an interval without guaranteed "
        f"coverage ({', '.join(names)}): each of their certificates can be wrong "
        "with probability above alpha."
    )


def _format_table(rows, radii, labelled: bool) -> str:
    head = "certified accuracy" if labelled else "certified fraction"
    cols = (
        ["method"]
        + [f"r={r:g}" for r in radii]
        + ["ACR" if labelled else "mean R", "abstain", "time"]
    )
    body = []
    for row in rows:
        body.append(
            [row["method"]]
            + [f"{a:.3f}" for a in row["acc"]]
            + [f"{row['acr']:.3f}", f"{row['abstain']:.3f}", f"{row['time']:.2f}s"]
        )
    widths = [max(len(c), *(len(b[i]) for b in body)) for i, c in enumerate(cols)]

    def fmt(cells):
        return "  ".join(
            c.ljust(w) if i == 0 else c.rjust(w)
            for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        )

    span = sum(widths[1 : 1 + len(radii)]) + 2 * (len(radii) - 1)
    title = " " * (widths[0] + 2) + head.center(span)
    rule = "-" * len(fmt(cols))
    return "\n".join([title, fmt(cols), rule, *map(fmt, body)])


def _save_plot(path: Path, curves: dict, y, xmax: float) -> None:
    try:
        from matplotlib.figure import Figure
    except ImportError:
        raise _UserError(
            'saving the plot needs matplotlib: pip install "smoothlearn[plot]"'
        ) from None
    from ..plotting import plot_certified_accuracy

    fig = Figure(figsize=(6.4, 4.2), layout="constrained")
    ax = plot_certified_accuracy(curves, y, ax=fig.add_subplot(), max_radius=xmax)
    ax.grid(alpha=0.3)
    fig.savefig(path, dpi=120)


def _print_table(cols, body):
    widths = [max(len(c), *(len(b[i]) for b in body)) for i, c in enumerate(cols)]

    def fmt(cells):
        return "  ".join(
            c.ljust(w) if i == 0 else c.rjust(w)
            for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        )

    print(fmt(cols))
    print("-" * len(fmt(cols)))
    for b in body:
        print(fmt(b))
