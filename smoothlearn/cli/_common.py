"""Shared pieces of the command's subcommands: errors, help, argument types.

Help texts come from the numpydoc docstrings of the public API
(:func:`_parameter_docs`), so the command and the API say the same thing.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

import numpy as np

_PROG = "smoothlearn"
_EXIT_ERROR = 2
_RESULT_FILE = "result.npz"
_DATA_FILE = "test_data.npz"
_PLOT_FILE = "certified_accuracy.png"
_TABLE_FILE = "table.txt"

#: The rows of the comparison table: Cohen's procedure and the paper's.
_COMPARISONS = (
    ("Cohen (top_class, mono)", "top_class", "mono"),
    ("Bonferroni, multi", "bonferroni", "multi"),
    ("CPM, multi (paper)", "cpm", "multi"),
)


class _UserError(Exception):
    """A problem with the user's input: reported on one line, exit status 2."""


# ---------------------------------------------------------------------------
# Help texts from the docstrings
# ---------------------------------------------------------------------------
_ROLE = re.compile(
    r":(?:class|func|meth|attr|mod|math|data|ref):`~?([^`<]*?)(?:\s*<[^>]*>)?`"
)


def _clean_rst(text: str) -> str:
    text = _ROLE.sub(lambda m: m.group(1).rsplit(".", 1)[-1], text)
    text = text.replace("``", "").replace("`", "")
    text = re.sub(r"\s+", " ", text).strip()
    return text.replace("%", "%%")  # argparse formats help with %


def _parameter_docs(obj) -> dict[str, str]:
    """Map parameter name -> first paragraph of its numpydoc description.

    A tiny reader of the numpydoc "Parameters" section (numpydoc itself is a
    docs-only dependency).
    """
    doc = getattr(obj, "__doc__", None) or ""
    lines = doc.expandtabs().splitlines()
    out: dict[str, str] = {}
    try:
        start = next(
            i
            for i, line in enumerate(lines[:-1])
            if line.strip() == "Parameters" and set(lines[i + 1].strip()) == {"-"}
        )
    except StopIteration:
        return out
    indent = None
    names: list[str] = []
    paragraph: list[str] = []
    done = False

    def flush():
        if names:
            for name in names:
                out[name] = _clean_rst(" ".join(paragraph))

    for line in lines[start + 2 :]:
        stripped = line.strip()
        if not stripped:
            done = bool(paragraph)  # keep only the first paragraph
            continue
        cur = len(line) - len(line.lstrip())
        if indent is None:
            indent = cur
        if cur < indent:
            break
        if cur == indent:
            if " : " not in stripped and set(stripped) != {"-"}:
                # next section header ("Returns" followed by dashes)
                break
            if set(stripped) == {"-"}:
                break
            flush()
            names = [n.strip() for n in stripped.split(" : ")[0].split(",")]
            paragraph, done = [], False
        elif not done:
            paragraph.append(stripped)
    flush()
    return out


def _help(docs: dict[str, str], name: str, extra: str = "") -> str:
    text = docs.get(name, "")
    if text and not text.endswith("."):
        text += "."
    return " ".join(t for t in (text, extra, "(default: %(default)s)") if t)


# ---------------------------------------------------------------------------
# Argument types
# ---------------------------------------------------------------------------
def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not np.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text}")
    return value


def _probability(text: str) -> float:
    value = _positive_float(text)
    if value >= 1:
        raise argparse.ArgumentTypeError(f"must be in (0, 1), got {text}")
    return value


def _law(text: str):
    """A law on [0, 1] from ``bernoulli:P``, ``beta:A,B``, ``two-point:A,B,P``
    or ``uniform``: (label, frozen scipy.stats distribution, is Bernoulli)."""
    from scipy import stats

    name, _, args = text.partition(":")
    try:
        values = [float(v) for v in args.split(",")] if args else []
    except ValueError:
        raise argparse.ArgumentTypeError(f"bad numbers in {text!r}") from None
    try:
        if name == "bernoulli" and len(values) == 1 and 0 <= values[0] <= 1:
            return text, stats.bernoulli(values[0]), True
        if name == "beta" and len(values) == 2 and min(values) > 0:
            return text, stats.beta(*values), False
        if name == "two-point" and len(values) == 3:
            a, b, p = values
            if 0 <= a < b <= 1 and 0 <= p <= 1:
                law = stats.rv_discrete(values=([a, b], [1 - p, p]))
                return text, law, a == 0 and b == 1
        if name == "uniform" and not values:
            return text, stats.uniform(), False
    except ValueError:
        pass
    raise argparse.ArgumentTypeError(
        f"{text!r} is not one of bernoulli:P, beta:A,B, two-point:A,B,P (0 <= A < "
        "B <= 1) or uniform"
    )


def _positive_int(text: str) -> int:
    try:
        value = int(text.replace("_", ""))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


def _radius_value(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not np.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError(f"must be a radius >= 0, got {text}")
    return value


# ---------------------------------------------------------------------------
# Options shared by certify and gap
# ---------------------------------------------------------------------------
def _add_classifier_arguments(
    sub, docs, architectures, *, max_inputs=None, radii="0, sigma, 2 sigma, 3 sigma"
):
    """Add the options of certify and gap: -q, smoothing, data and model, the demo.

    Returns the "smoothing and certification" group, for more options.
    """
    sub.add_argument(
        "-q",
        "--quiet",
        action="store_true",
        help="No progress bar or notes on standard error.",
    )
    g = smoothing = sub.add_argument_group("smoothing and certification")
    g.add_argument(
        "--sigma", type=_positive_float, default=0.25, help=_help(docs, "sigma")
    )
    g.add_argument("--n0", type=_positive_int, default=100, help=_help(docs, "n0"))
    g.add_argument(
        "--n",
        type=_positive_int,
        default=10_000,
        help=_help(
            docs, "n", "The command's default is 10,000 (Cohen et al. used 100,000)."
        ),
    )
    g.add_argument(
        "--alpha", type=_probability, default=0.001, help=_help(docs, "alpha")
    )
    g.add_argument(
        "--seed",
        type=int,
        default=0,
        help=_help(docs, "random_state", "Also seeds the demo's training and split."),
    )
    g.add_argument("--device", default=None, help=_help(docs, "device"))
    g.add_argument(
        "--batch-size", type=_positive_int, default=4096, help=_help(docs, "batch_size")
    )
    g.add_argument(
        "--radii",
        type=_radius_value,
        nargs="+",
        default=None,
        metavar="R",
        help=f"Radii of the table (default: {radii}).",
    )
    g.add_argument(
        "--max-inputs",
        type=_positive_int,
        default=max_inputs,
        metavar="M",
        help="Certify only the first M inputs (default: "
        + ("all" if max_inputs is None else f"{max_inputs}")
        + ").",
    )
    g = sub.add_argument_group("your own data and model")
    g.add_argument(
        "--data",
        type=Path,
        metavar="FILE.npz",
        help="A .npz file with arrays X (inputs, shape (n, ...)) and y "
        "(integer labels, shape (n,)); read without pickle.",
    )
    g.add_argument(
        "--model",
        type=Path,
        metavar="FILE.pt",
        help="A torch model: TorchScript (torch.jit.save), or a state "
        "dict (torch.save(module.state_dict())) with --arch; loaded "
        "without unpickling arbitrary objects. Output i must be the "
        "score of class i (or of the i-th sorted label of y).",
    )
    g.add_argument(
        "--arch",
        choices=architectures,
        default=None,
        help="Architecture of a state-dict model: 'digits_cnn' is the "
        "demo's CNN for 8x8 images; 'mlp' is nn.Sequential(Linear, "
        "ReLU, ..., Linear) with sizes read from the state dict.",
    )
    g = sub.add_argument_group("the demo (without --data/--model)")
    g.add_argument(
        "--epochs",
        type=_positive_int,
        default=30,
        help="Training epochs of the digits CNN (default: %(default)s).",
    )
    return smoothing


# ---------------------------------------------------------------------------
# Helpers shared by the commands
# ---------------------------------------------------------------------------
def _note(args, message: str) -> None:
    if not getattr(args, "quiet", False):
        print(message, file=sys.stderr, flush=True)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
