r"""Certify Cohen et al.'s released models with the papers' protocol.

The setting of Cohen, Rosenfeld & Kolter (ICML 2019) and of Delattre et al.
(AISTATS 2025): the released CIFAR-10 ResNet-110 and ImageNet ResNet-50
checkpoints, trained with Gaussian noise at sigma in {0.12, 0.25, 0.5, 1.0}
(ImageNet: {0.25, 0.5, 1.0}), every 20th CIFAR-10 / every 100th ImageNet
test image, ``n0 = 100``, ``n = 100,000``, ``alpha = 0.001``.  Per
(dataset, sigma), one :class:`~smoothlearn.SmoothedClassifier` around the
checkpoint certifies every image once with hard counts; the rows below are
then recertified from those counts, with no new draws:

* ``cohen``: Cohen et al.'s CERTIFY (Clopper-Pearson on the top class, the
  mono radius); its log compares line by line with their published logs;
* ``bonferroni``: Clopper-Pearson on every class at ``alpha / K``, the multi
  radius;
* ``cpm``: the Class Partitioning Method of Delattre et al., multi radius.

A second pass (``--hard-only`` skips it) averages the softmax of the logits
at inverse temperature ``t`` (soft smoothing) over the same noise, bounded
with CPM and empirical Bernstein:

* ``soft``: Cohen's multi radius on those bounds;
* ``lipschitz`` / ``lipschitz_envelope``: the Lipschitz-aware radius (the
  paper's form, and the exact worst-case envelope) with the *guaranteed*
  constant of the logits from
  ``SpectralProductLipschitz().logit_constant(model, x)``, composed with the
  softmax's: ``L_score = sqrt(2) / 4 * t * L_logits``.  Where that
  estimator cannot bound the model yet, the rows say so (``n/a``) and
  ``--recertify`` fills them later from the saved statistics, without
  drawing again.

Outputs, under ``--output``, per dataset and sigma
(``cifar10/noise_0.25/``): one Cohen-format log per row (``cohen.tsv``,
...), the statistics (``hard.npz``, ``soft.npz``: saved
:class:`~smoothlearn.CertificationResult`, recertifiable) and the image
indices, labels and seconds per image (``images.npz``); per dataset, the
Markdown tables of certified accuracy at the paper's radii and the ACR
(``table.md``, also printed) and ``summary.json``.  A killed run continues
with ``--resume``: the noise of an image depends on the seed and the image
only, so the result equals an uninterrupted run's.

Usage on a GPU (the data and the checkpoints are local; nothing is
downloaded)::

    python benchmarks/paper_protocol.py --dataset cifar10 --root ~/data \
        --checkpoint-dir ~/smoothing --device cuda --output runs/protocol

and ``python benchmarks/paper_protocol.py --smoke --output /tmp/smoke``
runs everything end to end on the CPU in seconds: random weights, synthetic
images, ``n0 = 10``, ``n = 200``.  See the documentation page "Certifying
the released models".
"""

from __future__ import annotations

import argparse
import codecs
import dataclasses
import hashlib
import json
import math
import os
import pickle
import sys
import time
import warnings
from pathlib import Path
from typing import ClassVar

import numpy as np
import torch
from torch import nn

from smoothlearn import CertificationResult, SmoothedClassifier
from smoothlearn.intervals import (
    Bonferroni,
    ClassPartitioning,
    ClopperPearson,
    EmpiricalBernstein,
    TopClass,
)
from smoothlearn.lipschitz import Normalize, SpectralProductLipschitz
from smoothlearn.metrics import average_certified_radius, certified_accuracy
from smoothlearn.soft import simplex_map_constant
from smoothlearn.zoo import (
    get_architecture,
    load_checkpoint,
    read_certify_log,
    write_certify_log,
)

# Cohen et al.'s datasets.py (zoo.py holds the same values).
_CIFAR10_MEAN, _CIFAR10_STD = (0.4914, 0.4822, 0.4465), (0.2023, 0.1994, 0.2010)
_IMAGENET_MEAN, _IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)

#: md5 of CIFAR-10's python ``test_batch`` (the file torchvision checks too).
CIFAR10_TEST_BATCH_MD5 = "40351d587109b95175f43aff81a1287e"


@dataclasses.dataclass(frozen=True)
class DatasetSpec:
    """What the protocol fixes per data set."""

    name: str
    title: str
    arch_dir: str  # the folder of Cohen et al.'s models/ and data/certify/
    n_test: int
    skip: int
    shape: tuple
    n_classes: int
    sigmas: tuple
    radii: tuple
    mean: tuple
    std: tuple
    smoke_arch: str
    smoke_shape: tuple
    smoke_images: int


DATASETS = {
    "cifar10": DatasetSpec(
        name="cifar10",
        title="CIFAR-10",
        arch_dir="resnet110",
        n_test=10_000,
        skip=20,
        shape=(3, 32, 32),
        n_classes=10,
        sigmas=(0.12, 0.25, 0.5, 1.0),
        radii=(0.0, 0.25, 0.5, 0.75, 1.0, 1.25, 1.5, 2.0, 2.5, 3.0),
        mean=_CIFAR10_MEAN,
        std=_CIFAR10_STD,
        smoke_arch="cifar_resnet20",
        smoke_shape=(3, 32, 32),
        smoke_images=3,
    ),
    "imagenet": DatasetSpec(
        name="imagenet",
        title="ImageNet",
        arch_dir="resnet50",
        n_test=50_000,
        skip=100,
        shape=(3, 224, 224),
        n_classes=1000,
        # Cohen et al. released ImageNet models at these three levels only.
        sigmas=(0.25, 0.5, 1.0),
        radii=(0.0, 0.5, 1.0, 1.5, 2.0, 2.5, 3.0),
        mean=_IMAGENET_MEAN,
        std=_IMAGENET_STD,
        smoke_arch="resnet50",
        # ResNet-50's pooling is adaptive: 32 x 32 runs through every stage.
        smoke_shape=(3, 32, 32),
        smoke_images=2,
    ),
}

#: The certificates, in the order of the tables: (key, description).
ROWS = (
    ("cohen", "Cohen et al.: TopClass/Clopper-Pearson, mono"),
    ("bonferroni", "Bonferroni/Clopper-Pearson, multi"),
    ("cpm", "CPM/Clopper-Pearson, multi"),
    ("soft", "soft (softmax): CPM/Bernstein, multi"),
    ("lipschitz", "soft + Lipschitz-aware, paper form"),
    ("lipschitz_envelope", "soft + Lipschitz-aware, envelope form"),
)
HARD_ROWS = ("cohen", "bonferroni", "cpm")
SOFT_ROWS = ("soft", "lipschitz", "lipschitz_envelope")


class ProtocolError(Exception):
    """A problem with the user's setup (data, checkpoints, options)."""


def _log(args, message: str) -> None:
    if args.verbose:
        print(message, file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------
# Data
# ---------------------------------------------------------------------------
_RECONSTRUCT = np.empty(0).__reduce__()[0]  # numpy's array unpickling helper


class _ArrayUnpickler(pickle.Unpickler):
    """An unpickler that rebuilds numpy arrays and plain containers only.

    CIFAR-10's python files are pickles of ``{'data': uint8 array, 'labels':
    list, ...}`` written by Python 2.  Unpickling runs whatever callable a
    file names; this one resolves only the four globals such a file needs
    (numpy's array reconstruction, ``ndarray``, ``dtype`` and
    ``_codecs.encode``, which a Python 3 protocol-2 pickle uses for bytes)
    and refuses every other, so a file that is not what it claims cannot run
    code.
    """

    _ALLOWED: ClassVar[dict] = {
        ("numpy.core.multiarray", "_reconstruct"): _RECONSTRUCT,
        ("numpy._core.multiarray", "_reconstruct"): _RECONSTRUCT,
        ("numpy", "ndarray"): np.ndarray,
        ("numpy", "dtype"): np.dtype,
        ("_codecs", "encode"): codecs.encode,
    }

    def find_class(self, module, name):
        try:
            return self._ALLOWED[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(
                f"refused to load the global {module}.{name}: a CIFAR-10 batch "
                "holds numpy arrays and lists only"
            ) from None


def _cifar10_batch_path(root: Path) -> Path:
    for path in (
        root / "cifar-10-batches-py" / "test_batch",
        root / "test_batch",
    ):
        if path.is_file():
            return path
    raise ProtocolError(
        f"No CIFAR-10 test set under {str(root)!r}: expected the file "
        "cifar-10-batches-py/test_batch (the extracted 'CIFAR-10 python "
        "version' archive of https://www.cs.toronto.edu/~kriz/cifar.html, "
        "torchvision's CIFAR10 root layout). Nothing is downloaded."
    )


def load_cifar10_test(root) -> tuple[np.ndarray, np.ndarray]:
    """CIFAR-10's 10,000 test images and labels from the python ``test_batch``.

    Parameters
    ----------
    root : str or path-like
        The folder holding ``cifar-10-batches-py/`` (what
        ``torchvision.datasets.CIFAR10(root)`` takes), or that folder itself.

    Returns
    -------
    images : ndarray of shape (10000, 3, 32, 32), dtype uint8
    labels : ndarray of shape (10000,), dtype int64

    Notes
    -----
    The file is a pickle; it is read with an unpickler that rebuilds numpy
    arrays and plain containers and refuses any other global, so it runs no
    code from the file (torchvision's ``CIFAR10`` checks the md5, then
    calls ``pickle.load`` on the same file).  A file whose md5 is not the
    official one is read with a warning.  The pixels ``images / 255`` in
    float32 are those of ``CIFAR10(root, train=False,
    transform=ToTensor())``: torchvision reshapes the same rows to
    (N, 3, 32, 32) and ``ToTensor`` divides the uint8 values by 255 in
    float32.
    """
    path = _cifar10_batch_path(Path(root))
    raw = path.read_bytes()
    if hashlib.md5(raw, usedforsecurity=False).hexdigest() != CIFAR10_TEST_BATCH_MD5:
        warnings.warn(
            f"{str(path)!r} is not the official CIFAR-10 test_batch (its md5 "
            f"differs from {CIFAR10_TEST_BATCH_MD5}); certifying it anyway.",
            UserWarning,
            stacklevel=2,
        )
    import io

    try:
        entry = _ArrayUnpickler(io.BytesIO(raw), encoding="latin1").load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError) as exc:
        raise ProtocolError(
            f"Cannot read {str(path)!r} as a CIFAR-10 batch: {exc}"
        ) from exc
    data = entry.get("data") if isinstance(entry, dict) else None
    labels = entry.get("labels") if isinstance(entry, dict) else None
    if (
        not isinstance(data, np.ndarray)
        or data.dtype != np.uint8
        or data.ndim != 2
        or data.shape[1] != 3 * 32 * 32
        or not isinstance(labels, list)
        or len(labels) != data.shape[0]
    ):
        raise ProtocolError(
            f"{str(path)!r} is not a CIFAR-10 batch: expected a dict with a uint8 "
            "'data' array of shape (N, 3072) and a list of N 'labels'."
        )
    labels = np.asarray(labels)
    if labels.dtype.kind not in "iu" or labels.min() < 0 or labels.max() > 9:
        raise ProtocolError(f"{str(path)!r} holds labels outside 0..9.")
    return data.reshape(-1, 3, 32, 32), labels.astype(np.int64)


def _imagenet_val(root: Path):
    """torchvision's ImageFolder on ``root/val`` with Cohen et al.'s test transform."""
    try:
        from torchvision import datasets, transforms
    except Exception as exc:  # not installed, or built for another torch
        raise ProtocolError(
            "Reading ImageNet needs torchvision (ImageFolder and its JPEG "
            "transforms), built for the installed torch; it failed to import: "
            f"{type(exc).__name__}: {exc}. Install the torchvision that matches "
            "your torch (https://pytorch.org/get-started/locally/)."
        ) from exc
    val = root / "val"
    if not val.is_dir():
        raise ProtocolError(
            f"No ImageNet validation set at {str(val)!r}: pass --root, the folder "
            "holding val/ with one sub-folder per class (n01440764/, ...), as "
            "Cohen et al.'s IMAGENET_DIR. Nothing is downloaded."
        )
    transform = transforms.Compose(
        [transforms.Resize(256), transforms.CenterCrop(224), transforms.ToTensor()]
    )
    return datasets.ImageFolder(str(val), transform)


class ImageSource:
    """The images to certify, fetched a few at a time.

    Parameters
    ----------
    name : str
        A description for the summary.
    indices : ndarray of shape (n_images,)
        Indices of the certified images in their data set.
    fetch : callable
        ``fetch(indices) -> (X, y)``: float32 images with pixels in [0, 1],
        shape (m, C, H, W), and int64 labels.
    shape : tuple of int
        The shape of one image.
    """

    def __init__(self, name, indices, fetch, shape):
        self.name = name
        self.indices = np.asarray(indices, dtype=np.int64)
        self.fetch = fetch
        self.shape = tuple(shape)


def _selected(n_total: int, skip: int, max_images) -> np.ndarray:
    idx = np.arange(0, n_total, skip, dtype=np.int64)
    return idx if max_images is None else idx[:max_images]


def make_source(args, spec: DatasetSpec) -> ImageSource:
    """Synthetic images (``--smoke``), CIFAR-10's test_batch or ImageNet's val."""
    if args.smoke:
        shape, seed, skip = spec.smoke_shape, args.seed, args.skip
        labeler = smoke_model(spec, args.smoke_model, seed)

        def fetch_synthetic(indices):
            # Each image is a function of its index, so a resumed run sees the
            # same ones.  Labels: the smoke model's clean prediction on every
            # other image, another class on the rest, so that the tables hold
            # both certified-correct and wrong rows.
            X = np.stack(
                [
                    np.random.default_rng([seed, int(i)]).random(shape, np.float32)
                    for i in indices
                ]
            )
            with torch.no_grad():
                pred = labeler(torch.from_numpy(X)).argmax(1).numpy()
            even = (np.asarray(indices) // skip) % 2 == 0
            return X, np.where(even, pred, (pred + 1) % spec.n_classes)

        indices = _selected(spec.n_test, args.skip, args.max_images)
        return ImageSource("synthetic (smoke)", indices, fetch_synthetic, shape)
    if args.root is None:
        raise ProtocolError(
            f"--root is required for {spec.title}: the local folder of the data set."
        )
    root = Path(args.root).expanduser()
    if spec.name == "cifar10":
        images, labels = load_cifar10_test(root)

        def fetch_cifar(indices):
            X = images[indices].astype(np.float32) / np.float32(255.0)
            return X, labels[indices]

        indices = _selected(len(labels), args.skip, args.max_images)
        return ImageSource(str(root), indices, fetch_cifar, spec.shape)
    dataset = _imagenet_val(root)

    def fetch_imagenet(indices):
        items = [dataset[int(i)] for i in indices]
        X = torch.stack([x for x, _ in items]).numpy().astype(np.float32)
        return X, np.array([label for _, label in items], dtype=np.int64)

    indices = _selected(len(dataset), args.skip, args.max_images)
    return ImageSource(str(root / "val"), indices, fetch_imagenet, spec.shape)


# ---------------------------------------------------------------------------
# Models
# ---------------------------------------------------------------------------
def checkpoint_path(args, spec: DatasetSpec, sigma: float) -> Path:
    """``--checkpoint``, or Cohen et al.'s layout under ``--checkpoint-dir``.

    ``models/<dataset>/<arch>/noise_<sigma:.2f>/checkpoint.pth.tar``, looked
    for under ``--checkpoint-dir`` and under ``--checkpoint-dir/models``.
    """
    if args.checkpoint is not None:
        path = Path(args.checkpoint).expanduser()
        if not path.is_file():
            raise ProtocolError(f"No checkpoint at {str(path)!r}.")
        return path
    if args.checkpoint_dir is None:
        raise ProtocolError(
            "Pass --checkpoint-dir (the folder holding Cohen et al.'s models/) or "
            "--checkpoint, or --smoke for random weights."
        )
    rel = Path(spec.name, spec.arch_dir, f"noise_{sigma:.2f}", "checkpoint.pth.tar")
    base = Path(args.checkpoint_dir).expanduser()
    tried = [base / rel, base / "models" / rel]
    for path in tried:
        if path.is_file():
            return path
    raise ProtocolError(
        f"No checkpoint for sigma = {sigma}: looked for "
        + " and ".join(repr(str(p)) for p in tried)
        + ". Cohen et al.'s models are linked from the README of "
        "https://github.com/locuslab/smoothing; download and extract them "
        "yourself (nothing here downloads)."
    )


def smoke_model(spec: DatasetSpec, kind: str, seed: int) -> nn.Module:
    """A random-weight model for ``--smoke`` (eval mode, on the CPU).

    ``kind="zoo"``: the released architecture of the data set's smoke run
    (``cifar_resnet20`` or ``resnet50``), normalisation first.  ``"plain"``:
    a small sequential CNN with the same input normalisation, made of layers
    that :class:`~smoothlearn.lipschitz.SpectralProductLipschitz` bounds
    today, so the Lipschitz-aware rows run end to end.
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        if kind == "zoo":
            model = get_architecture(spec.smoke_arch, spec.n_classes)
        else:
            model = nn.Sequential(
                Normalize(spec.mean, spec.std),
                nn.Conv2d(3, 8, 3, stride=2, padding=1),
                nn.BatchNorm2d(8),
                nn.ReLU(),
                nn.Conv2d(8, 16, 3, stride=2, padding=1),
                nn.ReLU(),
                nn.AdaptiveAvgPool2d(1),
                nn.Flatten(),
                nn.Linear(16, spec.n_classes),
            )
    return model.eval()


def build_model(args, spec: DatasetSpec, sigma: float) -> tuple[nn.Module, str]:
    """The model to certify at ``sigma`` on ``args.device``, and its description."""
    if args.smoke:
        name = spec.smoke_arch if args.smoke_model == "zoo" else "plain CNN"
        model = smoke_model(spec, args.smoke_model, args.seed).to(args.device)
        return model, f"{name}, random weights (smoke, seed {args.seed})"
    path = checkpoint_path(args, spec, sigma)
    try:
        model = load_checkpoint(path, map_location=args.device)
    except ValueError as exc:
        raise ProtocolError(str(exc)) from exc
    return model, str(path)


def logit_lipschitz_constant(model: nn.Module, shape) -> tuple[float | None, str]:
    """Guaranteed l2 Lipschitz bound of the logits, or why there is none.

    ``SpectralProductLipschitz().logit_constant(model, x)`` with ``x`` one
    zero image of ``shape`` (it only records the layers' input shapes).  A
    model with a layer it has no rule for (today: the zoo's ResNets) gives
    ``(None, reason)``.

    Returns
    -------
    L : float or None
        The bound (``inf`` when it overflows float64), or None.
    note : str
        How it was obtained, or why it is missing.
    """
    x = torch.zeros((1, *shape))
    try:
        L = SpectralProductLipschitz().logit_constant(model, x)
    except ValueError as exc:
        return None, f"SpectralProductLipschitz cannot bound this model yet: {exc}"
    return float(L), "SpectralProductLipschitz().logit_constant (guaranteed)"


# ---------------------------------------------------------------------------
# Certification
# ---------------------------------------------------------------------------
def _take(result: CertificationResult, rows) -> CertificationResult:
    """The certificates of the given rows (recomputed from their statistics)."""
    rows = np.asarray(rows, dtype=np.int64)
    return CertificationResult.from_statistics(
        selection=result.selection[rows],
        estimation=result.estimation[rows],
        estimation_sq=result.estimation_sq[rows],
        n0=result.n0,
        n=result.n,
        sigma=result.sigma,
        alpha=result.alpha,
        classes=result.classes,
        interval=result.interval,
        radius=result.kind,
        smoothing=result.smoothing,
        abstain_label=result.abstain_label,
        lipschitz=result.lipschitz,  # the logits' constant: one number
        radius_method=result.radius_method,
        score_map=None if result.score_map is None else result.score_map[rows],
        temperature=None if result.temperature is None else result.temperature[rows],
    )


def _stack(results: list) -> CertificationResult:
    """One result from the results of consecutive chunks of images."""
    first = results[0]
    if len(results) == 1:
        return first

    def cat(name):
        parts = [getattr(r, name) for r in results]
        return None if parts[0] is None else np.concatenate(parts)

    return CertificationResult.from_statistics(
        selection=cat("selection"),
        estimation=cat("estimation"),
        estimation_sq=cat("estimation_sq"),
        n0=first.n0,
        n=first.n,
        sigma=first.sigma,
        alpha=first.alpha,
        classes=first.classes,
        interval=first.interval,
        radius=first.kind,
        smoothing=first.smoothing,
        abstain_label=first.abstain_label,
        lipschitz=first.lipschitz,  # the logits' constant: one number
        radius_method=first.radius_method,
        score_map=cat("score_map"),
        temperature=cat("temperature"),
    )


def _save_atomic(path: Path, save) -> None:
    tmp = path.with_name(path.stem + ".tmp.npz")
    save(tmp)
    os.replace(tmp, path)


def _fingerprint(args, spec, sigma, model_name, shape) -> dict:
    """What a resumed run must share with the stored one."""
    return {
        "dataset": spec.name,
        "sigma": float(sigma),
        "n0": int(args.n0),
        "n": int(args.n),
        "alpha": float(args.alpha),
        "seed": int(args.seed),
        "skip": int(args.skip),
        "temperature": float(args.temperature),
        "soft": not args.hard_only,
        "model": model_name,
        # CPU and CUDA generators draw different noise from the same seed.
        "device_type": torch.device(args.device).type,
        "image_shape": list(shape),
    }


def _load_state(out: Path) -> dict | None:
    if not (out / "images.npz").is_file():
        return None
    with np.load(out / "images.npz", allow_pickle=False) as f:
        state = {k: f[k] for k in f.files}
    state["meta"] = json.loads(str(state["meta"]))
    k = len(state["idx"])
    hard = CertificationResult.load(out / "hard.npz")
    # The statistics are saved before images.npz, so they hold at least its
    # k rows; a run killed in between left one more row, dropped here.
    state["hard"] = hard if hard.n_inputs == k else _take(hard, range(k))
    if (out / "soft.npz").is_file():
        soft = CertificationResult.load(out / "soft.npz")
        state["soft"] = soft if soft.n_inputs == k else _take(soft, range(k))
    else:
        state["soft"] = None
    return state


def _save_state(out: Path, meta, idx, label, t_hard, t_soft, hard, soft) -> None:
    _save_atomic(out / "hard.npz", hard.save)
    if soft is not None:
        _save_atomic(out / "soft.npz", soft.save)

    def save_images(path):
        np.savez(
            path,
            meta=np.array(json.dumps(meta)),
            idx=np.asarray(idx, dtype=np.int64),
            label=np.asarray(label, dtype=np.int64),
            time_hard=np.asarray(t_hard, dtype=np.float64),
            time_soft=np.asarray(t_soft, dtype=np.float64),
        )

    _save_atomic(out / "images.npz", save_images)


def certify_sigma(args, spec, sigma, model, model_name, source, out: Path) -> dict:
    """Certify the images at ``sigma``: hard counts, then soft scores.

    Saves the statistics after every chunk of ``--chunk`` images, so a
    killed run loses at most one chunk; with ``--resume`` it continues
    after the images already stored.

    Returns
    -------
    state : dict
        ``idx``, ``label``, ``time_hard``, ``time_soft`` (seconds per image),
        ``hard`` and ``soft`` (:class:`~smoothlearn.CertificationResult`;
        soft is None with ``--hard-only``) and ``meta``.
    """
    meta = _fingerprint(args, spec, sigma, model_name, source.shape)
    stored = dict(meta, data=source.name)
    state = _load_state(out)
    if state is not None and not args.resume:
        if not args.overwrite:
            raise ProtocolError(
                f"{str(out)!r} already holds results: pass --resume to continue "
                "them or --overwrite to start again."
            )
        state = None
    if state is not None:
        differ = sorted(k for k in meta if state["meta"].get(k) != meta[k])
        if differ:
            raise ProtocolError(
                f"Cannot resume {str(out)!r}: the stored run differs in "
                + ", ".join(
                    f"{k} ({state['meta'].get(k)!r} != {meta[k]!r})" for k in differ
                )
                + "."
            )
        done = len(state["idx"])
        if not np.array_equal(state["idx"], source.indices[:done]):
            raise ProtocolError(
                f"Cannot resume {str(out)!r}: its images are not the first {done} "
                "of this run (another --skip?)."
            )
    out.mkdir(parents=True, exist_ok=True)
    common = dict(
        sigma=sigma,
        n0=args.n0,
        n=args.n,
        alpha=args.alpha,
        batch_size=args.batch_size,
        device=args.device,
        random_state=args.seed,
        # "auto" times both layouts per process: the fastest, but the last
        # bits of a convolution (hence of a soft sum) may differ between runs;
        # smoke runs, compared bit for bit in the tests, fix the layout.
        memory_format=args.memory_format or ("contiguous" if args.smoke else "auto"),
    )
    probe_X = np.zeros((1, *source.shape), dtype=np.float32)
    # A bare torch module is used as is; fit only reads its output width.
    hard_clf = SmoothedClassifier(
        model, interval=TopClass(ClopperPearson()), radius="mono", **common
    ).fit(probe_X, [0])
    soft_clf = None
    if not args.hard_only:
        soft_clf = SmoothedClassifier(
            model,
            smoothing="soft",
            simplex_map="softmax",
            temperature=args.temperature,
            interval=ClassPartitioning(EmpiricalBernstein()),
            radius="multi",
            **common,
        ).fit(probe_X, [0])

    if state is None:
        idx, label, t_hard, t_soft = [], [], [], []
        hard = soft = None
    else:
        idx, label = state["idx"].tolist(), state["label"].tolist()
        t_hard, t_soft = state["time_hard"].tolist(), state["time_soft"].tolist()
        hard, soft = state["hard"], state["soft"]
    todo = source.indices[len(idx) :]
    for start in range(0, len(todo), args.chunk):
        chunk = todo[start : start + args.chunk]
        X, y = source.fetch(chunk)
        t0 = time.perf_counter()
        new = hard_clf.certify(X)
        seconds = (time.perf_counter() - t0) / len(chunk)
        hard = new if hard is None else _stack([hard, new])
        t_hard += [seconds] * len(chunk)
        if soft_clf is not None:
            t0 = time.perf_counter()
            new_soft = soft_clf.certify(X)
            t_soft += [(time.perf_counter() - t0) / len(chunk)] * len(chunk)
            soft = new_soft if soft is None else _stack([soft, new_soft])
        else:
            t_soft += [math.nan] * len(chunk)
        idx += chunk.tolist()
        label += y.tolist()
        _save_state(out, stored, idx, label, t_hard, t_soft, hard, soft)
        for i, lab, pred, rad in zip(chunk, y, new.prediction, new.radius, strict=True):
            _log(
                args,
                f"{spec.name} sigma={sigma:g} image {i} ({len(idx)}/"
                f"{len(source.indices)}): label {lab} predict {pred} radius "
                f"{rad:.3f}, {seconds:.2f} s per image (hard)",
            )
    if not idx:
        raise ProtocolError("No image to certify (--max-images 0?).")
    return _load_state(out)


# ---------------------------------------------------------------------------
# Rows, tables, logs
# ---------------------------------------------------------------------------
def certificate_rows(
    hard: CertificationResult,
    soft: CertificationResult | None,
    L_logits: float | None,
    temperature: float,
) -> dict:
    """Every row's certificates, recertified from the stored statistics.

    Parameters
    ----------
    hard : CertificationResult
        Cohen's CERTIFY on hard counts (TopClass/Clopper-Pearson, mono).
    soft : CertificationResult or None
        Soft smoothing (softmax at ``temperature``), CPM/empirical Bernstein,
        multi, without a Lipschitz constant; None skips the soft rows.
    L_logits : float or None
        Guaranteed bound of the logits' l2 Lipschitz constant; None leaves
        the Lipschitz rows out (None values).
    temperature : float
        The softmax's inverse temperature ``t``.

    Returns
    -------
    rows : dict
        ``{key: CertificationResult or None}`` for the keys of :data:`ROWS`.
    """
    rows = {
        "cohen": hard,
        "bonferroni": hard.recertify(
            interval=Bonferroni(ClopperPearson()), radius="multi"
        ),
        "cpm": hard.recertify(
            interval=ClassPartitioning(ClopperPearson()), radius="multi"
        ),
        "soft": soft,
        "lipschitz": None,
        "lipschitz_envelope": None,
    }
    if soft is not None and L_logits is not None:
        # recertify takes the logits' constant; each input's class-score
        # constant follows from its map and temperature (score_constant)
        rows["lipschitz"] = soft.recertify(lipschitz=L_logits, radius_method="paper")
        rows["lipschitz_envelope"] = soft.recertify(
            lipschitz=L_logits, radius_method="envelope"
        )
    return rows


def score_constant(L_logits: float, temperature: float, n_classes: int) -> float:
    """l2 Lipschitz constant of a softmax class score: ``sqrt(2)/4 * t * L``."""
    with np.errstate(over="ignore"):
        value = simplex_map_constant("softmax", n_classes) * temperature * L_logits
    return float(value)


def _summary_row(result, y, radii) -> dict:
    acc = certified_accuracy(y, result, list(radii))
    return {
        "certified_accuracy": [float(a) for a in acc],
        "acr": float(average_certified_radius(y, result)),
        "abstain": float(np.mean(result.abstained)),
    }


def _log_row(log, radii) -> dict:
    return {
        "certified_accuracy": [float(a) for a in log.certified_accuracy(list(radii))],
        "acr": float(log.average_certified_radius()),
        "abstain": float(np.mean(log.abstained)),
    }


def published_path(args, spec: DatasetSpec, sigma: float, n_sigmas: int) -> Path | None:
    """The published log for ``sigma``: the ``--published-log`` file or layout."""
    if args.published_log is None:
        return None
    given = Path(args.published_log).expanduser()
    if given.is_file():
        if n_sigmas > 1:
            raise ProtocolError(
                "--published-log names one file but several sigmas run: pass one "
                "--sigma, or the folder of Cohen et al.'s data/certify/."
            )
        return given
    rel = Path(
        spec.name, spec.arch_dir, f"noise_{sigma:.2f}", "test", f"sigma_{sigma:.2f}"
    )
    tried = [given / rel, given / "certify" / rel, given / "data" / "certify" / rel]
    for path in tried:
        if path.is_file():
            return path
    raise ProtocolError(
        f"No published log for sigma = {sigma}: looked for "
        + ", ".join(repr(str(p)) for p in tried)
        + " (Cohen et al.'s repository, data/certify/)."
    )


def compare_with_published(ours, published) -> dict:
    """Line-by-line comparison of two Cohen-format logs on their common images.

    Returns
    -------
    comparison : dict
        ``common`` (images in both), ``same_prediction`` (fraction of them
        with the same ``predict``, abstentions included),
        ``both_certified`` (same class, neither abstained) and
        ``mean_abs_radius_difference`` over those (NaN if none).
    """
    common, i_ours, i_pub = np.intersect1d(ours.idx, published.idx, return_indices=True)
    same = ours.predict[i_ours] == published.predict[i_pub]
    both = same & ~ours.abstained[i_ours]
    diff = np.abs(ours.radius[i_ours] - published.radius[i_pub])[both]
    return {
        "common": len(common),
        "same_prediction": float(same.mean()) if len(common) else math.nan,
        "both_certified": int(both.sum()),
        "mean_abs_radius_difference": float(diff.mean()) if diff.size else math.nan,
    }


def _fmt_table(title, radii, rows: dict, notes) -> str:
    head = (
        "| certificate | "
        + " | ".join(f"r={r:g}" for r in radii)
        + " | ACR | abstain |"
    )
    lines = [f"### {title}", "", head, "|---|" + "---|" * (len(radii) + 2)]
    for label, row in rows.items():
        if row is None:
            cells = ["n/a"] * (len(radii) + 2)
        else:
            cells = [f"{a:.3f}" for a in row["certified_accuracy"]]
            cells += [f"{row['acr']:.3f}", f"{row['abstain']:.3f}"]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    lines.append("")
    lines += [f"* {note}" for note in notes]
    return "\n".join(lines) + "\n"


def report_sigma(args, spec, sigma, state, get_model, out: Path, published) -> dict:
    """Rows, logs, the Markdown table and the plot of one (dataset, sigma).

    ``get_model()`` returns the certified model; it is called only for the
    Lipschitz constant.
    """
    y, idx, meta = state["label"], state["idx"], state["meta"]
    t = meta["temperature"]  # the soft statistics' own temperature
    notes = []
    L_logits, L_note = None, "not computed (--no-lipschitz)"
    if state["soft"] is None:
        L_note = "no soft statistics (--hard-only)"
    elif not args.no_lipschitz:
        model, name = get_model()
        if name != meta["model"]:
            raise ProtocolError(
                f"The statistics in {str(out)!r} are of the model {meta['model']!r}, "
                f"not {name!r}: its Lipschitz constant would not apply."
            )
        L_logits, L_note = logit_lipschitz_constant(model, meta["image_shape"])
    rows = certificate_rows(state["hard"], state["soft"], L_logits, t)
    summary = {
        "sigma": sigma,
        "n_images": len(y),
        "run": meta,
        "rows": {},
        "lipschitz": {},
    }
    for key, result in rows.items():
        if result is None:
            summary["rows"][key] = None
            (out / f"{key}.tsv").unlink(missing_ok=True)  # from an earlier report
            continue
        summary["rows"][key] = _summary_row(result, y, spec.radii)
        seconds = state["time_hard"] if key in HARD_ROWS else state["time_soft"]
        write_certify_log(result, y, out / f"{key}.tsv", idx=idx, time=seconds)
    summary["seconds_per_image"] = {
        "hard": float(np.median(state["time_hard"])),
        "soft": float(np.median(state["time_soft"]))
        if state["soft"] is not None
        else None,
    }
    summary["lipschitz"] = {"L_logits": L_logits, "note": L_note}
    if L_logits is not None:
        L_score = score_constant(L_logits, t, spec.n_classes)
        summary["lipschitz"].update(L_score=L_score, L_score_sigma=L_score * sigma)
        notes.append(
            f"L_logits = {L_logits:.4g} ({L_note}); softmax at "
            f"t = {t:g}: "
            f"L_score = sqrt(2)/4 t L_logits = {L_score:.4g}, L_score sigma = "
            f"{L_score * sigma:.4g} (the Lipschitz-aware radius gains over Cohen's "
            "only when L_score sigma is below about 2)."
        )
    elif state["soft"] is not None:
        notes.append(f"Lipschitz-aware rows n/a: {L_note}")
    else:
        notes.append("soft and Lipschitz-aware rows n/a: --hard-only.")
    table_rows = {dict(ROWS)[k]: summary["rows"][k] for k, _ in ROWS}
    if published is not None:
        pub = read_certify_log(published)
        ours = read_certify_log(out / "cohen.tsv")
        table_rows[f"published: {published.name}, all {len(pub)} images"] = _log_row(
            pub, spec.radii
        )
        comparison = compare_with_published(ours, pub)
        summary["published"] = {
            "path": str(published),
            "all": _log_row(pub, spec.radii),
            "comparison": comparison,
        }
        notes.append(
            f"Against the published log ({published}): {comparison['common']} common "
            f"images, same prediction on {comparison['same_prediction']:.3f}, mean "
            f"|radius difference| {comparison['mean_abs_radius_difference']:.4f} "
            f"on the {comparison['both_certified']} certified by both (NaN: none)."
        )
    times = summary["seconds_per_image"]
    notes.append(
        f"{len(y)} images ({meta['data']}, --skip {meta['skip']}), "
        f"n0 = {meta['n0']}, n = {meta['n']}, alpha = {meta['alpha']}; median "
        f"seconds per image: {times['hard']:.3g} (hard)"
        + (f", {times['soft']:.3g} (soft)" if times["soft"] is not None else "")
        + f"; model: {state['meta']['model']}."
    )
    title = f"{spec.title}, sigma = {sigma:g}"
    summary["table"] = _fmt_table(title, spec.radii, table_rows, notes)
    if args.plot:
        _plot(out / "certified_accuracy.png", rows, y, published, title)
    return summary


def _plot(path: Path, rows: dict, y, published, title) -> None:
    try:
        from matplotlib.figure import Figure
    except ImportError:
        warnings.warn("--plot needs matplotlib; no plot written.", UserWarning)
        return
    from smoothlearn.plotting import plot_certified_accuracy

    curves = {dict(ROWS)[k]: r for k, r in rows.items() if r is not None}
    if published is not None:
        curves = {
            f"published ({published.name})": read_certify_log(published),
            **curves,
        }
    fig = Figure(figsize=(7, 4.5))
    ax = plot_certified_accuracy(curves, y, ax=fig.add_subplot())
    ax.set_title(title)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


# ---------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------
def _sigma_list(text: str) -> list[float]:
    try:
        values = [float(v) for v in text.replace(",", " ").split()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a list of floats: {text!r}") from None
    if not values or any(not (0 < v < math.inf) for v in values):
        raise argparse.ArgumentTypeError(f"sigmas must be > 0: {text!r}")
    return values


def make_parser() -> argparse.ArgumentParser:
    """The command-line options (see the module docstring)."""
    p = argparse.ArgumentParser(
        description=__doc__.splitlines()[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--dataset", choices=sorted(DATASETS), default="cifar10")
    p.add_argument(
        "--root",
        help="local data folder (CIFAR-10: holds "
        "cifar-10-batches-py/; ImageNet: holds val/)",
    )
    p.add_argument(
        "--checkpoint-dir",
        help="folder holding Cohen et al.'s "
        "models/<dataset>/<arch>/noise_<sigma>/checkpoint.pth.tar",
    )
    p.add_argument("--checkpoint", help="one checkpoint file (with one --sigma)")
    p.add_argument(
        "--sigma",
        type=_sigma_list,
        default=None,
        help="noise levels, e.g. '0.25 0.5' (default: the released ones)",
    )
    p.add_argument(
        "--skip",
        type=int,
        default=None,
        help="certify every skip-th test image (default 20 / 100)",
    )
    p.add_argument("--max-images", type=int, default=None, help="stop after this many")
    p.add_argument("--n0", type=int, default=None, help="selection draws (100)")
    p.add_argument("--n", type=int, default=None, help="estimation draws (100,000)")
    p.add_argument("--alpha", type=float, default=0.001)
    p.add_argument(
        "--temperature",
        type=float,
        default=1.0,
        help="softmax inverse temperature of the soft rows",
    )
    p.add_argument("--batch-size", type=int, default=400)
    p.add_argument(
        "--chunk",
        type=int,
        default=1,
        help="images per certify call (and per saved step)",
    )
    p.add_argument("--device", default=None, help="cuda when available, else cpu")
    p.add_argument(
        "--memory-format",
        choices=("auto", "contiguous", "channels_last"),
        default=None,
        help="layout of image batches (default: auto; contiguous with --smoke)",
    )
    p.add_argument("--seed", type=int, default=0, help="random_state of the noise")
    p.add_argument("--output", required=True, help="folder for logs, tables, stats")
    p.add_argument(
        "--hard-only",
        action="store_true",
        help="skip the soft pass (halves the time; no soft/Lipschitz rows)",
    )
    p.add_argument(
        "--no-lipschitz",
        action="store_true",
        help="do not compute the Lipschitz constant",
    )
    p.add_argument(
        "--published-log",
        help="a published log (one --sigma) or Cohen et al.'s data/certify/",
    )
    p.add_argument("--plot", action="store_true", help="write certified_accuracy.png")
    p.add_argument("--resume", action="store_true", help="continue stored results")
    p.add_argument("--overwrite", action="store_true", help="replace stored results")
    p.add_argument(
        "--recertify",
        action="store_true",
        help="no draws: rebuild rows, logs and tables from stored statistics",
    )
    p.add_argument(
        "--smoke",
        action="store_true",
        help="random weights, synthetic images, tiny n, on the CPU",
    )
    p.add_argument(
        "--smoke-model",
        choices=("zoo", "plain"),
        default="zoo",
        help="smoke model: the released architecture, or a small CNN "
        "that SpectralProductLipschitz bounds today",
    )
    p.add_argument("--verbose", action="store_true", help="progress on stderr")
    return p


def _resolve(args, parser) -> DatasetSpec:
    spec = DATASETS[args.dataset]
    if args.sigma is None:
        args.sigma = list(spec.sigmas)
    if args.skip is None:
        args.skip = spec.skip
    if args.n0 is None:
        args.n0 = 10 if args.smoke else 100
    if args.n is None:
        args.n = 200 if args.smoke else 100_000
    if args.max_images is None and args.smoke:
        args.max_images = spec.smoke_images
    if args.device is None:
        args.device = "cuda" if torch.cuda.is_available() and not args.smoke else "cpu"
    for name in ("skip", "n0", "n", "batch_size", "chunk"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be >= 1")
    if args.max_images is not None and args.max_images < 1:
        parser.error("--max-images must be >= 1")
    if not 0 < args.alpha < 1:
        parser.error("--alpha must be in (0, 1)")
    if not 0 < args.temperature < math.inf:
        parser.error("--temperature must be > 0")
    if args.checkpoint is not None and len(args.sigma) > 1:
        parser.error("--checkpoint names one model: pass one --sigma")
    if args.resume and args.overwrite:
        parser.error("--resume and --overwrite exclude each other")
    return spec


def main(argv=None) -> dict:
    """Run the protocol; print the tables; return the summary (also saved)."""
    parser = make_parser()
    args = parser.parse_args(argv)
    spec = _resolve(args, parser)
    try:
        return _run(args, spec)
    except ProtocolError as exc:
        parser.exit(2, f"{parser.prog}: error: {exc}\n")


def _run(args, spec: DatasetSpec) -> dict:
    root_out = Path(args.output).expanduser() / spec.name
    source = None if args.recertify else make_source(args, spec)
    summaries = []
    for sigma in args.sigma:
        out = root_out / f"noise_{sigma:.2f}"
        published = published_path(args, spec, sigma, len(args.sigma))
        loaded = {}

        def get_model(sigma=sigma, loaded=loaded):
            if "model" not in loaded:
                loaded["model"] = build_model(args, spec, sigma)
            return loaded["model"]

        if args.recertify:
            state = _load_state(out)
            if state is None:
                raise ProtocolError(f"--recertify: no stored results in {str(out)!r}.")
        else:
            model, model_name = get_model()
            state = certify_sigma(args, spec, sigma, model, model_name, source, out)
        summaries.append(
            report_sigma(args, spec, sigma, state, get_model, out, published)
        )
        loaded.clear()  # one model in memory at a time
    tables = "\n".join(s["table"] for s in summaries)
    header = f"# {spec.title}: certified accuracy per radius and ACR\n\n"
    (root_out / "table.md").write_text(header + tables, encoding="utf-8")
    summary = {
        "dataset": spec.name,
        "radii": list(spec.radii),
        "recertified": args.recertify,
        "sigmas": summaries,
    }
    (root_out / "summary.json").write_text(
        json.dumps(summary, indent=1, allow_nan=True), encoding="utf-8"
    )
    print(header + tables)
    return summary


if __name__ == "__main__":
    main()
