"""Safe persistence: pickle-free ``.npz`` reading, atomic writes, checkpoints.

Three pieces, used by :mod:`smoothlearn._parallel` and meant to be reused by
:meth:`CertificationResult.load <smoothlearn.CertificationResult.load>`:

* :func:`load_npz` reads every array of a ``.npz`` file with
  ``allow_pickle=False`` and turns any failure to read it (truncated file,
  bad CRC, not a zip, pickled content) into a :class:`ValueError` that names
  the file;
* :func:`atomic_savez` writes a ``.npz`` atomically: a temporary file in the
  same directory, flushed and ``fsync``-ed, then :func:`os.replace`-d onto
  the destination, so a reader (or a run killed at any moment) sees either
  the old file or the new one, never a torn one;
* :class:`_Checkpoint` keeps the per-chunk statistics of a certification run
  on disk, with a fingerprint of everything that determines them, so a
  killed run resumes with the same call and a different run is refused; a
  chunk of one input may be stored part-way (its fields over the draws done
  and the state of its noise generator), so an input longer than the
  flushing interval resumes where it stopped.
"""

from __future__ import annotations

import contextlib
import glob
import hashlib
import json
import os
import tempfile
from os import PathLike

import numpy as np
from numpy.typing import NDArray

__all__ = ["atomic_savez", "fingerprint_array", "fingerprint_model", "load_npz"]

#: Marker and version of the checkpoint file format.
_FORMAT = "smoothlearn-checkpoint"
_VERSION = 1

#: Names of the sampling stages, for messages.
_STAGE_NAMES = {0: "selection", 1: "estimation", 2: "predict", 3: "train"}


# --------------------------------------------------------------------------
# Reading and writing .npz files
# --------------------------------------------------------------------------
def load_npz(path: str | PathLike, *, what: str = "file") -> dict[str, NDArray]:
    """Read every array of a ``.npz`` file, without pickle.

    Parameters
    ----------
    path : str or path-like
        The file.
    what : str, default="file"
        What the file is, for error messages (e.g. ``"result file"``).

    Returns
    -------
    arrays : dict of str to ndarray
        Every array of the archive, read into memory.

    Raises
    ------
    FileNotFoundError
        If ``path`` does not exist.
    ValueError
        If the file cannot be read as a pickle-free ``.npz`` archive
        (truncated, corrupted, not a zip, holding object arrays); the message
        names the file.

    Examples
    --------
    >>> import numpy as np, os, tempfile
    >>> from smoothlearn._checkpoint import atomic_savez, load_npz
    >>> path = os.path.join(tempfile.mkdtemp(), "a.npz")
    >>> atomic_savez(path, {"x": np.arange(3)})
    >>> load_npz(path)["x"]
    array([0, 1, 2])
    """
    fspath = os.fspath(path)
    if not os.path.exists(fspath):
        raise FileNotFoundError(f"No such {what}: {fspath!r}")
    try:
        # Our own handle: np.load leaves its file open when the zip is damaged.
        with open(fspath, "rb") as handle:
            data = np.load(handle, allow_pickle=False)
            if not isinstance(data, np.lib.npyio.NpzFile):
                # np.load returns a bare array for a .npy file.
                raise ValueError("a single .npy array, not a .npz archive")
            with data:
                return {key: data[key] for key in data.files}
    except MemoryError:
        raise
    except Exception as exc:  # zipfile.BadZipFile, EOFError, OSError, zlib.error...
        raise ValueError(
            f"The {what} {fspath!r} is corrupted or truncated, or is not a .npz "
            f"archive of plain arrays: {type(exc).__name__}: {exc}"
        ) from exc


def _fsync_directory(directory: str) -> None:
    """Make a rename in ``directory`` durable (POSIX); a no-op where unsupported."""
    with contextlib.suppress(OSError, AttributeError):
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def atomic_savez(path: str | PathLike, arrays: dict[str, NDArray]) -> None:
    """Write ``arrays`` to the ``.npz`` file ``path`` atomically.

    Parameters
    ----------
    path : str or path-like
        Destination, used as given (no ``.npz`` suffix is appended).
    arrays : dict of str to array-like
        The arrays; object arrays are refused (the file must load without
        pickle).

    Notes
    -----
    The archive is written to a temporary file in the destination's
    directory, flushed, ``fsync``-ed and renamed onto ``path`` with
    :func:`os.replace` (atomic on POSIX and Windows), then the directory is
    ``fsync``-ed.  A process killed at any moment leaves either the previous
    file or the new one; at worst a stray ``.<name>.*.tmp`` file remains.
    """
    for name, value in arrays.items():
        if np.asarray(value).dtype.hasobject:
            raise ValueError(
                f"Cannot store the array {name!r} of object dtype: files must load "
                "without pickle."
            )
    fspath = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(fspath))
    base = os.path.basename(fspath)
    fd, tmp = tempfile.mkstemp(prefix=f".{base}.", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **arrays)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, fspath)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    _fsync_directory(directory)


# --------------------------------------------------------------------------
# Fingerprints
# --------------------------------------------------------------------------
def fingerprint_array(X: NDArray) -> dict:
    """Shape, dtype and SHA-256 of the bytes of an array (C order).

    Parameters
    ----------
    X : ndarray or InputSource
        A data set (:class:`~smoothlearn.datasets.InputSource`) is hashed
        chunk by chunk, to the digest of the array of its inputs.

    Returns
    -------
    fingerprint : dict
        ``{"shape": [...], "dtype": str, "sha256": str}``, JSON-serialisable.
    """
    if hasattr(X, "iter_chunks"):  # a data set: the same hash, chunk by chunk
        h = hashlib.sha256()
        for _, chunk in X.iter_chunks():
            h.update(memoryview(np.ascontiguousarray(chunk).reshape(-1)).cast("B"))
        return {"shape": list(X.shape), "dtype": X.dtype.str, "sha256": h.hexdigest()}
    X = np.ascontiguousarray(X)
    digest = hashlib.sha256(memoryview(X.reshape(-1)).cast("B")).hexdigest()
    return {"shape": list(X.shape), "dtype": X.dtype.str, "sha256": digest}


def _hash_torch_module(module, h) -> None:
    import torch

    h.update(f"{type(module).__module__}.{type(module).__qualname__}".encode())
    for name, tensor in module.state_dict().items():
        t = tensor.detach().to("cpu").contiguous().reshape(-1)
        h.update(f"|{name}|{t.dtype}|{tuple(tensor.shape)}|".encode())
        if t.numel():
            h.update(t.view(torch.uint8).numpy().tobytes())


def fingerprint_model(adapter) -> str | None:
    """A hash identifying the base model behind an adapter (None if unknown).

    Torch and skorch models are hashed through their ``state_dict`` (names,
    dtypes, shapes and bytes) and class; scikit-learn models through
    :func:`joblib.hash`.  Computed once per call with a checkpoint.

    Parameters
    ----------
    adapter : object
        An adapter of :mod:`smoothlearn.models`.

    Returns
    -------
    fingerprint : str or None
        A hex digest, or None when the model cannot be hashed (then the
        checkpoint cannot tell two models apart).
    """
    import joblib

    h = hashlib.sha256()
    h.update(f"{type(adapter).__qualname__}|{adapter.n_classes}|".encode())
    net = getattr(adapter, "net", None)
    module = getattr(adapter, "module", None)
    estimator = getattr(adapter, "estimator", None)
    try:
        if net is not None:
            h.update(f"{type(net).__qualname__}|".encode())
            h.update(repr(getattr(net, "threshold", None)).encode())
            _hash_torch_module(net.module_, h)
        elif module is not None:
            _hash_torch_module(module, h)
        elif estimator is not None:
            h.update(joblib.hash(estimator).encode())
            h.update(joblib.hash(np.asarray(adapter.classes)).encode())
        else:
            h.update(joblib.hash(adapter).encode())
    except Exception:  # an unpicklable or exotic model: no identity check
        return None
    return h.hexdigest()


# --------------------------------------------------------------------------
# The checkpoint of a certification run
# --------------------------------------------------------------------------
def _stage_fields(spec: dict, n_classes: int) -> dict[str, tuple[tuple, np.dtype]]:
    """The fields of a stage's specification: name -> (trailing shape, dtype)."""
    fields = spec.get("fields")
    if fields is None:  # the counts (and sums of squares) of version-1 stages
        dtype = np.dtype(np.int64 if spec["hard"] else np.float64)
        names = ["sums"] if spec["hard"] else ["sums", "sums_sq"]
        return {name: ((int(n_classes),), dtype) for name in names}
    return {
        name: (tuple(int(d) for d in tail), np.dtype(dtype))
        for name, (tail, dtype) in fields.items()
    }


def _describe(stage: int) -> str:
    return f"stage {stage} ({_STAGE_NAMES.get(stage, 'custom')})"


class _Checkpoint:
    """Per-chunk statistics of one run, mirrored to a ``.npz`` file.

    The file holds a JSON ``meta`` record (format, fingerprint, chunk
    boundaries, per-stage specification: draws, the statistic's key and its
    fields) and, per stage ``s``, one array ``<field>_s`` of shape
    ``(n_inputs, *shape)`` per field of the stage's statistic (see
    :class:`smoothlearn.sampling.Statistic`; e.g. ``sums_s`` for hard counts,
    ``sums_s`` and ``sums_sq_s`` for soft scores) and the boolean ``done_s``
    of shape ``(n_chunks,)``.  Rows of chunks not done are zero and never
    read.

    Chunks of one input may also be stored part-way (:meth:`record_partial`,
    several at once in a parallel run): ``meta["partials"]`` then lists
    ``{"chunk": c, "draws": {stage: draws done}}`` per such chunk, the
    input's rows hold the fields accumulated over those draws and
    ``state_s_c`` the noise generator's state after them (for each stage
    not finished), so a resumed run continues the input's draws where they
    stopped.  Recording the chunk clears its entry.  (A file with the
    single ``meta["partial"]`` and ``state_s`` of the first version is read
    as such a list.)

    Use :meth:`open`, then :meth:`record_partial` and :meth:`record` as
    chunks progress, and :meth:`statistics` at the end.
    """

    def __init__(self, path, meta, arrays):
        self.path = os.fspath(path)
        self.meta = meta
        self.arrays = arrays

    # ------------------------------------------------------------------
    @classmethod
    def open(
        cls,
        path: str | PathLike,
        *,
        fingerprint: dict,
        stages: dict[int, dict],
        n_classes: int,
        n_inputs: int,
        bounds: NDArray,
        seed_from_checkpoint: bool = False,
    ) -> _Checkpoint:
        """Resume from ``path`` if it exists (refusing a different run), else start.

        Parameters
        ----------
        path : str or path-like
        fingerprint : dict
            JSON-serialisable description of everything, besides the stages,
            that determines the statistics; must contain ``"seed"``.
        stages : dict of int to dict
            Per stage: ``{"n_draws": int, "score": str or JSON value,
            "hard": bool, "fields": {name: [shape, dtype str]}}`` (without
            ``"fields"``: ``sums``, and ``sums_sq`` unless hard, of shape
            ``(n_classes,)``).
        n_classes, n_inputs : int
        bounds : ndarray of shape (n_chunks + 1,)
            Chunk boundaries for a new checkpoint (an existing one keeps its
            own, since the statistics do not depend on the chunking).
        seed_from_checkpoint : bool, default=False
            Take the seed stored in an existing checkpoint instead of
            ``fingerprint["seed"]`` (for ``random_state=None``).
        """
        fspath = os.fspath(path)
        if os.path.isdir(fspath):
            raise ValueError(
                f"The 'checkpoint' parameter must be a file path; {fspath!r} is a "
                "directory."
            )
        if not os.path.exists(fspath):
            meta = {
                "format": _FORMAT,
                "version": _VERSION,
                "fingerprint": fingerprint,
                "n_classes": int(n_classes),
                "n_inputs": int(n_inputs),
                "bounds": [int(b) for b in bounds],
                "stages": {},
            }
            ckpt = cls(fspath, meta, {})
            ckpt._add_stages(stages)
            ckpt._write()
            return ckpt
        ckpt = cls._read(fspath)
        ckpt._check(fingerprint, n_classes, n_inputs, seed_from_checkpoint)
        ckpt._add_stages(stages)
        return ckpt

    @classmethod
    def _read(cls, path: str) -> _Checkpoint:
        arrays = load_npz(path, what="checkpoint file")
        try:
            meta = json.loads(str(arrays.pop("meta")))
            if meta.get("format") != _FORMAT:
                raise ValueError("no smoothlearn checkpoint marker")
            if meta.get("version") != _VERSION:
                raise ValueError(f"unsupported format version {meta.get('version')!r}")
            bounds = np.asarray(meta["bounds"], dtype=np.int64)
            n_inputs, n_classes = int(meta["n_inputs"]), int(meta["n_classes"])
            if bounds[0] != 0 or bounds[-1] != n_inputs or np.any(np.diff(bounds) < 1):
                raise ValueError("inconsistent chunk boundaries")
            for key, spec in meta["stages"].items():
                stage = int(key)
                arr = arrays[f"done_{stage}"]
                if arr.shape != (len(bounds) - 1,):
                    raise ValueError(f"array 'done_{stage}' has shape {arr.shape}")
                for name, (tail, _) in _stage_fields(spec, n_classes).items():
                    arr = arrays[f"{name}_{stage}"]
                    if arr.shape != (n_inputs, *tail):
                        raise ValueError(
                            f"array '{name}_{stage}' has shape {arr.shape}"
                        )
            partial = meta.pop("partial", None)
            if partial is not None:  # one partial input, as first written
                for key in partial["draws"]:
                    if f"state_{key}" in arrays:
                        arrays[f"state_{key}_{int(partial['chunk'])}"] = arrays.pop(
                            f"state_{key}"
                        )
                meta["partials"] = [partial]
            for partial in meta.get("partials", []):
                chunk = int(partial["chunk"])
                if (
                    not 0 <= chunk < len(bounds) - 1
                    or bounds[chunk + 1] - bounds[chunk] != 1
                ):
                    raise ValueError("a partial chunk that is not one input")
                for key, draws in partial["draws"].items():
                    if not 0 < int(draws) <= int(meta["stages"][key]["n_draws"]):
                        raise ValueError(f"a partial stage {key} of {draws} draws")
                    unfinished = int(draws) < int(meta["stages"][key]["n_draws"])
                    name = f"state_{key}_{chunk}"
                    if unfinished and arrays[name].dtype != np.uint8:
                        raise ValueError(f"array {name!r} is not uint8")
        except (KeyError, TypeError, ValueError, json.JSONDecodeError) as exc:
            raise ValueError(
                f"The checkpoint file {path!r} is not a valid smoothlearn checkpoint "
                f"({type(exc).__name__}: {exc}). Delete it or pass another path."
            ) from exc
        return cls(path, meta, arrays)

    def _check(self, fingerprint, n_classes, n_inputs, seed_from_checkpoint):
        stored = dict(self.meta["fingerprint"])
        current = dict(fingerprint)
        if seed_from_checkpoint:
            current["seed"] = stored.get("seed")
        current["n_classes"], stored["n_classes"] = n_classes, self.meta["n_classes"]
        current["n_inputs"], stored["n_inputs"] = n_inputs, self.meta["n_inputs"]
        keys = sorted(set(stored) | set(current))
        differ = [k for k in keys if stored.get(k) != current.get(k)]
        if differ:
            raise ValueError(
                f"The checkpoint file {self.path!r} was written by a different "
                f"certification run (it differs in: {', '.join(differ)}). Refusing "
                "to mix statistics: pass another checkpoint path, or delete the "
                "file to start over."
            )

    def _add_stages(self, stages: dict[int, dict]) -> None:
        n_chunks = len(self.meta["bounds"]) - 1
        shape = (self.meta["n_inputs"], self.meta["n_classes"])
        for stage, spec in stages.items():
            key = str(int(stage))
            old = self.meta["stages"].get(key)
            if old is not None:
                if old != spec:
                    differ = [k for k in sorted(spec) if old.get(k) != spec.get(k)]
                    raise ValueError(
                        f"The checkpoint file {self.path!r} holds {_describe(stage)} "
                        f"with different parameters (it differs in: "
                        f"{', '.join(differ)}). Refusing to mix statistics: pass "
                        "another checkpoint path, or delete the file to start over."
                    )
                continue
            self.meta["stages"][key] = dict(spec)
            for name, (tail, dtype) in _stage_fields(spec, shape[1]).items():
                self.arrays[f"{name}_{stage}"] = np.zeros((shape[0], *tail), dtype)
            self.arrays[f"done_{stage}"] = np.zeros(n_chunks, dtype=bool)

    # ------------------------------------------------------------------
    @property
    def bounds(self) -> NDArray[np.int64]:
        """Chunk boundaries, shape ``(n_chunks + 1,)``."""
        return np.asarray(self.meta["bounds"], dtype=np.int64)

    @property
    def seed(self) -> int:
        """The root seed of the run."""
        return int(self.meta["fingerprint"]["seed"])

    def done(self, stage: int) -> NDArray[np.bool_]:
        """Which chunks have their ``stage`` statistics stored."""
        return self.arrays[f"done_{stage}"]

    def record(self, chunk: int, stats: dict[int, dict[str, NDArray]]) -> None:
        """Store the fields of one chunk's stages and rewrite the file atomically."""
        self.record_many([(chunk, stats)])

    def record_many(self, items, partials=()) -> None:
        """:meth:`record` for several ``(chunk, stats)`` pairs, with one write.

        ``partials`` holds ``(chunk, progress)`` pairs stored part-way as by
        :meth:`record_partial`, in the same write.
        """
        for chunk, stats in items:
            start, stop = self.meta["bounds"][chunk], self.meta["bounds"][chunk + 1]
            for stage, fields in stats.items():
                for name, value in fields.items():
                    self.arrays[f"{name}_{stage}"][start:stop] = value
                self.arrays[f"done_{stage}"][chunk] = True
            self._clear_partial(chunk)
        for chunk, progress in partials:
            self._set_partial(chunk, progress)
        self._write()

    def _clear_partial(self, chunk: int) -> None:
        partials = self.meta.get("partials", [])
        kept = [p for p in partials if p["chunk"] != chunk]
        if len(kept) < len(partials):
            for name in [k for k in self.arrays if k.startswith("state_")]:
                if name.rsplit("_", 1)[1] == str(chunk):
                    del self.arrays[name]
        if kept:
            self.meta["partials"] = kept
        else:
            self.meta.pop("partials", None)

    def _set_partial(self, chunk, progress) -> None:
        self._clear_partial(chunk)
        row = self.meta["bounds"][chunk]
        draws = {}
        for stage, (done, fields, state) in progress.items():
            for name, value in fields.items():
                self.arrays[f"{name}_{stage}"][row : row + 1] = value
            if state is not None:
                self.arrays[f"state_{stage}_{chunk}"] = np.asarray(state, np.uint8)
            draws[str(int(stage))] = int(done)
        partial = {"chunk": int(chunk), "draws": draws}
        self.meta["partials"] = [*self.meta.get("partials", []), partial]

    def record_partial(
        self,
        chunk: int,
        progress: dict[int, tuple[int, dict[str, NDArray], NDArray | None]],
    ) -> None:
        """Store a one-input chunk part-way and rewrite the file atomically.

        Parameters
        ----------
        chunk : int
            A chunk of one input, not done in the stages of ``progress``.
        progress : dict of int to (int, dict, ndarray or None)
            Per stage begun: the draws done, the fields over them and the
            generator state after them (None once the stage's draws are all
            done).
        """
        self.record_many([], [(chunk, progress)])

    def partial(self, chunk: int) -> dict[int, tuple[int, dict, NDArray | None]]:
        """What :meth:`record_partial` stored for ``chunk`` (empty if nothing)."""
        found = [p for p in self.meta.get("partials", []) if p["chunk"] == chunk]
        if not found:
            return {}
        row = self.meta["bounds"][chunk]
        out = {}
        for key, done in found[0]["draws"].items():
            stage, spec = int(key), self.meta["stages"][key]
            fields = {
                name: self.arrays[f"{name}_{stage}"][row : row + 1].copy()
                for name in _stage_fields(spec, self.meta["n_classes"])
            }
            state = None
            if int(done) < int(spec["n_draws"]):
                state = self.arrays[f"state_{stage}_{chunk}"].copy()
            out[stage] = (int(done), fields, state)
        return out

    def statistics(self, stage: int) -> dict[str, NDArray]:
        """Every field of ``stage`` over all inputs (copies)."""
        spec = self.meta["stages"][str(int(stage))]
        return {
            name: self.arrays[f"{name}_{stage}"].copy()
            for name in _stage_fields(spec, self.meta["n_classes"])
        }

    def _write(self) -> None:
        arrays = dict(self.arrays)
        arrays["meta"] = np.array(json.dumps(self.meta, sort_keys=True))
        atomic_savez(self.path, arrays)

    def remove_stale_temporaries(self) -> None:
        """Delete temporary files left by a run killed while writing."""
        directory = os.path.dirname(os.path.abspath(self.path))
        base = os.path.basename(self.path)
        for tmp in glob.glob(os.path.join(glob.escape(directory), f".{base}.*.tmp")):
            with contextlib.suppress(OSError):
                os.unlink(tmp)
