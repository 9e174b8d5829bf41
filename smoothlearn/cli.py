"""The ``smoothlearn`` command: certify, gap, recertify, compare-intervals.

A thin layer over the public API.  The parser is built when :func:`main`
runs, never at import.  Tables go to standard output; progress and notes to
standard error; a bad input is one line ``smoothlearn: error: ...`` on
standard error and exit status 2, never a traceback.
"""

from __future__ import annotations

import argparse
import re
import sys
import time
import warnings
from pathlib import Path

import numpy as np

__all__ = ["main"]

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
# The parser (built at call time)
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


def _build_parser() -> argparse.ArgumentParser:
    from . import __version__
    from ._demo import ARCHITECTURES
    from .intervals import INTERVALS, PROCEDURES
    from .result import CertificationResult
    from .smoothed import SmoothedClassifier

    docs = _parameter_docs(SmoothedClassifier)
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

    # -- certify -------------------------------------------------------------
    certify = sub.add_parser(
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
    certify.set_defaults(func=_cmd_certify)

    # -- gap -----------------------------------------------------------------
    gap = sub.add_parser(
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
    gap.set_defaults(func=_cmd_gap)

    # -- recertify -----------------------------------------------------------
    rdocs = _parameter_docs(CertificationResult.recertify)
    recert = sub.add_parser(
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
    recert.set_defaults(func=_cmd_recertify)

    # -- compare-intervals -----------------------------------------------------
    cmp_ = sub.add_parser(
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
    cmp_.set_defaults(func=_cmd_compare_intervals)
    return parser


# ---------------------------------------------------------------------------
# Helpers shared by the commands
# ---------------------------------------------------------------------------
def _note(args, message: str) -> None:
    if not getattr(args, "quiet", False):
        print(message, file=sys.stderr, flush=True)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _load_npz(path: Path, need_X: bool) -> tuple[np.ndarray | None, np.ndarray]:
    """X and y from a user's .npz, checked; never unpickles."""
    if not path.is_file():
        raise _UserError(f"data file not found: {path}")
    try:
        with np.load(path, allow_pickle=False) as data:
            keys = set(data.files)
            missing = [k for k in (("X", "y") if need_X else ("y",)) if k not in keys]
            if missing:
                raise _UserError(
                    f"{path} has no array named {' or '.join(missing)} (it has: "
                    f"{', '.join(sorted(keys)) or 'nothing'})"
                )
            X = data["X"] if need_X else None
            y = data["y"]
    except _UserError:
        raise
    except (OSError, ValueError) as exc:
        raise _UserError(
            f"cannot read {path} as a .npz of arrays: {_first_line(exc)}"
        ) from None
    if y.ndim != 1:
        raise _UserError(
            f"y in {path} must be 1-D (one label per input), got shape {y.shape}"
        )
    if X is not None:
        if X.ndim < 2:
            raise _UserError(
                f"X in {path} must have shape (n_inputs, ...), got {X.shape}"
            )
        if X.shape[0] != y.shape[0]:
            raise _UserError(
                f"X and y in {path} have different lengths: {X.shape[0]} and "
                f"{y.shape[0]}"
            )
        if X.dtype.kind not in "iuf":
            raise _UserError(f"X in {path} must be numeric, got dtype {X.dtype}")
        if not np.all(np.isfinite(X)):
            raise _UserError(f"X in {path} contains NaN or infinite values")
    return X, y


def _load_model(path: Path, arch: str | None):
    """A torch module from TorchScript or a state dict; no arbitrary unpickling."""
    import zipfile

    import torch

    from ._demo import build_from_state_dict

    if not path.is_file():
        raise _UserError(f"model file not found: {path}")
    is_script = False
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as zf:
            names = zf.namelist()
        is_script = any(n.split("/")[1:2] == ["code"] for n in names) or any(
            n.endswith("/constants.pkl") for n in names
        )
    if is_script:
        try:
            with warnings.catch_warnings():
                # torch >= 2.9 deprecates TorchScript; it still loads it, and
                # a command-line user cannot act on the warning.
                warnings.simplefilter("ignore", DeprecationWarning)
                return torch.jit.load(str(path), map_location="cpu").eval()
        except (RuntimeError, ValueError) as exc:
            raise _UserError(
                f"cannot load TorchScript model {path}: {_first_line(exc)}"
            ) from None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several types for a bad file
        raise _UserError(
            f"cannot load {path} as TorchScript or as a state dict of tensors "
            f"(torch.load(weights_only=True)): {_first_line(exc)}"
        ) from None
    if arch is None:
        raise _UserError(
            f"{path} holds a state dict; say which architecture it belongs to with "
            "--arch, or save the model as TorchScript "
            "(torch.jit.script(model).save(...))"
        )
    try:
        return build_from_state_dict(arch, state)
    except ValueError as exc:
        raise _UserError(str(exc)) from None


def _default_radii(sigma: float) -> list[float]:
    return [round(float(sigma) * k, 6) for k in range(4)]


def _row(label, y, result, radii, seconds) -> dict:
    """Numbers of one table row, all from smoothlearn.metrics."""
    from .metrics import average_certified_radius, certified_accuracy

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
    from .result import _procedure_guarantee

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
    from .plotting import plot_certified_accuracy

    fig = Figure(figsize=(6.4, 4.2), layout="constrained")
    ax = plot_certified_accuracy(curves, y, ax=fig.add_subplot(), max_radius=xmax)
    ax.grid(alpha=0.3)
    fig.savefig(path, dpi=120)


# ---------------------------------------------------------------------------
# certify
# ---------------------------------------------------------------------------
def _progress_verbose(args) -> int:
    if args.quiet:
        return 0
    try:
        import tqdm  # noqa: F401
    except ImportError:
        _note(
            args,
            "note: install tqdm for a progress bar "
            '(pip install "smoothlearn[progress]")',
        )
        return 0
    return 1


def _fitted_classifier(args, **params):
    """The fitted SmoothedClassifier and the inputs of certify and gap.

    The demo (a CNN trained with noise on the digits) without --data/--model,
    the user's arrays and torch model with them.  Returns ``(clf, X, y,
    source, seconds)``, ``source`` describing the inputs for the footer.
    """
    from . import SmoothedClassifier

    if (args.data is None) != (args.model is None):
        raise _UserError("--data and --model go together (or neither, for the demo)")
    if args.arch is not None and args.model is None:
        raise _UserError("--arch applies to a state-dict --model")
    params = dict(
        sigma=args.sigma,
        n0=args.n0,
        n=args.n,
        alpha=args.alpha,
        batch_size=args.batch_size,
        device=args.device,
        random_state=args.seed,
        **params,
    )
    t0 = time.perf_counter()
    if args.data is None:
        from ._demo import fit_seeded, load_digits_split, make_digits_net

        X_train, X, y_train, y = load_digits_split(random_state=args.seed)
        _note(
            args,
            f"Training a small CNN on {len(X_train)} digits with Gaussian "
            f"noise (sigma={args.sigma:g}, {args.epochs} epochs)...",
        )
        net = make_digits_net(args.sigma, max_epochs=args.epochs, device=args.device)
        clf = SmoothedClassifier(net, **params)
        fit_seeded(clf, X_train, y_train, args.seed)
        source = "digits CNN, {n} held-out inputs"
    else:
        X, y = _load_npz(args.data, need_X=True)
        module = _load_model(args.model, args.arch)
        if args.device is not None:
            try:
                module = module.to(args.device)
            except (RuntimeError, ValueError) as exc:
                raise _UserError(
                    f"cannot use device {args.device!r}: {_first_line(exc)}"
                ) from None
        clf = SmoothedClassifier(module, **params)
        try:
            clf.fit(X, y)  # a pre-trained module: reads the classes, checks outputs
        except RuntimeError as exc:
            raise _UserError(
                f"the model cannot process inputs of shape {X.shape[1:]} from "
                f"{args.data}: {_first_line(exc)}"
            ) from None
        source = "{model} on {n} inputs of {data}"
    t_fit = time.perf_counter() - t0
    if args.max_inputs is not None:
        X, y = X[: args.max_inputs], y[: args.max_inputs]
    # the inputs certified, after --max-inputs
    source = source.format(
        n=len(X),
        model=getattr(args.model, "name", ""),
        data=getattr(args.data, "name", ""),
    )
    return clf, X, y, source, t_fit


def _cmd_certify(args) -> int:
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


# ---------------------------------------------------------------------------
# gap
# ---------------------------------------------------------------------------
def _cmd_gap(args) -> int:
    from .attacks import PGD, SmoothAdvPGD, gap_report

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


# ---------------------------------------------------------------------------
# recertify
# ---------------------------------------------------------------------------
def _cmd_recertify(args) -> int:
    from . import ApproximateCertificateWarning, CertificationResult

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


# ---------------------------------------------------------------------------
# compare-intervals
# ---------------------------------------------------------------------------
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


def _compare_simulated(args) -> int:
    """compare-intervals --law: Monte-Carlo coverage and width on [0, 1] laws."""
    from .stats import _resolve_interval, simulated_coverage

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


def _cmd_compare_intervals(args) -> int:
    from .stats import _resolve_interval, binomial_coverage, expected_width

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
        from .intervals import INTERVALS
        from .plotting import plot_interval_coverage, plot_interval_width

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


# ---------------------------------------------------------------------------
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
