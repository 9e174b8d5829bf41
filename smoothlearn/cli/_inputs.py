"""Inputs of certify and gap: the user's arrays and model, or the demo."""

from __future__ import annotations

import time
import warnings
from pathlib import Path

import numpy as np

from ._common import _first_line, _note, _UserError


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

    from .._demo import build_from_state_dict

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


# ---------------------------------------------------------------------------
# The classifier of certify and gap
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
    from .. import SmoothedClassifier

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
        from .._demo import fit_seeded, load_digits_split, make_digits_net

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
