"""Certification over many workers, with checkpoints: :func:`gather_statistics`.

Certification is embarrassingly parallel over inputs.  :func:`gather_fields`
(and its wrapper :func:`gather_statistics`) splits ``X`` into chunks of
consecutive inputs, computes each chunk's statistic with
:func:`~smoothlearn.sampling.accumulate` (whose noise
is keyed by each input's values, so every input keeps its own noise stream
wherever it lands) and runs the chunks through scikit-learn's
:class:`~sklearn.utils.parallel.Parallel`.  The result is therefore identical
to a serial run whatever the number of workers or the joblib backend, e.g. a
Dask cluster through ``joblib.parallel_config(backend="dask")``.

Given a list of adapters (one per device, see
:func:`smoothlearn.models._replicas`), one worker thread runs per adapter and
each chunk takes whichever adapter is free, so several GPUs of one machine
share the work; the result is again that of a serial run.

The engine serves every kind of statistic through one protocol,
:class:`~smoothlearn.sampling.Statistic`: hard counts
(:class:`~smoothlearn.sampling.HardCounts`), sums and sums of squares of a
score (:class:`~smoothlearn.sampling.ScoreSums`), and soft smoothing's
selection, estimation and predict statistics (:mod:`smoothlearn.soft`).  A
statistic declares its per-input ``fields`` (arrays of shape
``(n_inputs, ...)``), the chunks' fields are concatenated along the input
axis, and the checkpoint stores every field with the statistic's ``key``.
To plug in a new one (e.g. per-input betting states), write a class with
``output``, ``key``, ``fields(n_classes)`` and ``update(acc, output, owner,
index)`` and pass it as the third element of a stage.

With ``checkpoint=path``, the statistics of every finished chunk are written
atomically to ``path`` as they arrive (see :mod:`smoothlearn._checkpoint`); the
same call resumes a killed run, computing only the chunks not yet stored, and
a checkpoint written by a different run (other data, model, noise level,
seed, number of draws...) is refused.

A run with a checkpoint writes it by time, about every
``checkpoint_every`` seconds: it sizes its units of work by the throughput
it measures, and stores an input whose own draws take longer part-way, with
its noise generator's state, so a killed run loses about
``checkpoint_every`` seconds of work however long one input is, and resumes
bit-identically (see ``_timed_serial``).  In parallel it works in rounds,
one such unit per worker, and writes the file after each round (see
``_timed_rounds``).
"""

from __future__ import annotations

import math
import numbers
import queue
import time
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from os import PathLike

import numpy as np
from numpy.typing import NDArray

from ._checkpoint import _Checkpoint, fingerprint_array, fingerprint_model
from ._inputs import InputSource
from .sampling import (
    HardCounts,
    ScoreSums,
    Statistic,
    _as_statistic,
    _resolve_memory_format,
    accumulate,
)

__all__ = ["gather_fields", "gather_statistics"]

#: Upper bound on the noisy samples of one chunk when checkpointing: what a
#: killed run can lose (about 1000 forward batches of 1024).
_CHECKPOINT_DRAWS = 2**20

#: With a checkpoint, the largest share of a serial run's time spent writing
#: the file: a file so large that a write takes more than this share of
#: ``checkpoint_every`` is written less often (0: no such limit).
_MAX_WRITE_SHARE = 0.1

#: Chunks per worker when running in parallel (load balancing).
_CHUNKS_PER_WORKER = 4


def _check_stages(stages, checkpoint) -> list[tuple[int, int, Statistic]]:
    """Normalise ``stages`` to ``(stage, n_draws, statistic)`` tuples."""
    if isinstance(stages, str | bytes) or not isinstance(stages, Sequence):
        raise ValueError(
            "The 'stages' parameter must be a list of (stage, n_draws, score) "
            f"tuples. Got {stages!r} instead."
        )
    if len(stages) == 0:
        raise ValueError("The 'stages' parameter must hold at least one stage.")
    out, seen = [], set()
    for item in stages:
        if not isinstance(item, tuple | list) or len(item) not in (3, 4):
            raise ValueError(
                "The 'stages' parameter must hold (stage, n_draws, score) or "
                f"(stage, n_draws, score, score_key) tuples. Got {item!r} instead."
            )
        stage, n_draws, score = item[:3]
        key = item[3] if len(item) == 4 else None
        for value, name in ((stage, "stage"), (n_draws, "n_draws")):
            if not isinstance(value, numbers.Integral) or isinstance(value, bool):
                raise ValueError(
                    f"The {name!r} of each stage must be an int. Got {value!r} instead."
                )
        if not 0 <= stage <= 3:
            raise ValueError(f"The 'stage' must be in {{0, 1, 2, 3}}. Got {stage}.")
        if stage in seen:
            raise ValueError(f"The 'stages' parameter lists stage {stage} twice.")
        seen.add(stage)
        if n_draws < 1:
            raise ValueError(
                f"The 'n_draws' of each stage must be >= 1. Got {n_draws} instead."
            )
        if isinstance(score, str) and score != "hard":
            raise ValueError(
                "The 'score' of each stage must be 'hard', a callable or a "
                f"Statistic. Got {score!r} instead."
            )
        if (
            not isinstance(score, str)
            and not callable(score)
            and not (hasattr(score, "fields") and hasattr(score, "update"))
        ):
            raise ValueError(
                "The 'score' of each stage must be 'hard', a callable or a "
                f"Statistic. Got {score!r} instead."
            )
        statistic = _as_statistic(score)
        if isinstance(statistic, ScoreSums) and statistic.key is None:
            statistic = ScoreSums(statistic.score, key)
        if checkpoint is not None and statistic.key is None:
            raise ValueError(
                "A stage with a callable 'score' needs a 'score_key' (a JSON value "
                "describing the score map, e.g. {'map': 'softmax', 'temperature': "
                "0.5}) to be checkpointed: pass (stage, n_draws, score, score_key)."
            )
        out.append((int(stage), int(n_draws), statistic))
    return out


class _AdapterBox:
    """The adapter, sized like its model so joblib's Dask backend scatters it once.

    joblib's Dask backend sends an argument to the workers once per call
    (instead of once per task) when Dask's ``sizeof`` exceeds 1 kB; for a
    plain object that is ``sys.getsizeof``, i.e. ``__sizeof__``, which for an
    adapter would not count the model's weights.
    """

    def __init__(self, adapter):
        self.adapter = adapter
        self.nbytes = _model_nbytes(adapter)

    def __sizeof__(self) -> int:
        return self.nbytes


def _model_nbytes(adapter) -> int:
    module = getattr(adapter, "module", None)
    try:
        return (
            int(sum(t.numel() * t.element_size() for t in module.state_dict().values()))
            + 10**4
        )
    except Exception:  # not a torch model: any size above joblib's threshold
        return 10**4


def _chunk_bounds(n_inputs: int, chunk_size: int) -> NDArray[np.int64]:
    bounds = np.arange(0, n_inputs, chunk_size, dtype=np.int64)
    return np.append(bounds, np.int64(n_inputs))


def _default_chunk_size(
    n_inputs: int, draws_per_input: int, n_workers: int, checkpoint: bool
) -> int:
    """One chunk when serial; a few per worker in parallel; bounded when saved."""
    size = n_inputs
    if n_workers > 1:
        size = math.ceil(n_inputs / (_CHUNKS_PER_WORKER * n_workers))
    if checkpoint:
        size = min(size, _CHECKPOINT_DRAWS // draws_per_input)
    return max(1, size)


def _timed_serial(
    adapter, X, bounds, todo, ckpt, sigma, seed, batch_size, progress, every, group
):
    """Compute ``todo`` serially, writing ``ckpt`` about every ``every`` seconds.

    Units of work are sized by the throughput measured so far (noisy rows
    per second) to take about ``every`` seconds: consecutive chunks needing
    the same stages are grouped (only if ``group``), and a chunk of one
    input whose draws take longer is run in segments of whole noise blocks
    (:func:`~smoothlearn.sampling.accumulate`'s ``_segment``), each stored
    part-way (:meth:`_Checkpoint.record_partial`) with the generator state,
    so a killed run loses about ``every`` seconds of work and resumes
    exactly.  The first unit is one chunk, its first segment about one batch.

    Yields ``(chunk, stats)`` of every finished chunk, after it is stored.
    """
    from .sampling import _BLOCK_SIZE

    first_segment = -(-batch_size // _BLOCK_SIZE) * _BLOCK_SIZE
    rate = None  # noisy rows per second, measured
    last_rows = first_segment
    write_s = 0.0  # seconds of the last write of the file

    def budget():
        # The rows of about `every` seconds (longer if writing the file
        # would take more than _MAX_WRITE_SHARE of the time), at most 8 times
        # the last unit's: a rate measured on little work is noisy.
        if rate is None:
            return first_segment
        interval = max(every, write_s / _MAX_WRITE_SHARE) if _MAX_WRITE_SHARE else every
        return max(1, min(int(rate * interval), 8 * last_rows))

    def write(method, *args):
        nonlocal write_s
        tic = time.perf_counter()
        method(*args)
        write_s = time.perf_counter() - tic

    def rows_of(c, need):
        return int(bounds[c + 1] - bounds[c]) * sum(n for _, n, _ in need)

    k = 0
    while k < len(todo):
        c, need = todo[k]
        size = int(bounds[c + 1] - bounds[c])
        if size == 1 and (rows_of(c, need) > budget() or ckpt.partial(c)):
            # One input, in segments of whole noise blocks.
            i = int(bounds[c])
            state_of = ckpt.partial(c)
            stats = {}
            for stage, n_draws, statistic in need:
                done, fields, state = state_of.get(stage, (0, None, None))
                while done < n_draws:
                    seg = max(_BLOCK_SIZE, budget() // _BLOCK_SIZE * _BLOCK_SIZE)
                    stop = min(n_draws, done + seg)
                    tic = time.perf_counter()
                    *_, fields, state = _compute_segment(
                        adapter, X, i, stage, n_draws, statistic, sigma, seed,
                        batch_size, done, stop, state, fields, None,
                    )  # fmt: skip
                    elapsed = time.perf_counter() - tic
                    last_rows = stop - done
                    rate = last_rows / max(elapsed, 1e-9)
                    done = stop
                    state_of[stage] = (done, fields, state if done < n_draws else None)
                    if done < n_draws:
                        write(ckpt.record_partial, c, state_of)
                stats[stage] = fields
                state_of[stage] = (n_draws, fields, None)
            write(ckpt.record, c, stats)
            if progress is not None:
                progress(1)
            yield c, stats
            k += 1
            continue
        # Consecutive chunks needing the same stages, within the budget.
        stages_of = [s for s, _, _ in need]
        end, rows = k + 1, rows_of(c, need)
        while (
            group
            and rate is not None
            and end < len(todo)
            and todo[end][0] == todo[end - 1][0] + 1
            and [s for s, _, _ in todo[end][1]] == stages_of
            and rows + rows_of(*todo[end]) <= budget()
        ):
            rows += rows_of(*todo[end])
            end += 1
        start, stop = int(bounds[c]), int(bounds[todo[end - 1][0] + 1])
        tic = time.perf_counter()
        stats = _compute_chunk(
            adapter, X, start, stop, need, sigma, seed, batch_size, progress
        )
        elapsed = time.perf_counter() - tic
        last_rows, rate = rows, rows / max(elapsed, 1e-9)
        items = []
        for cc, _ in todo[k:end]:
            lo, hi = int(bounds[cc]) - start, int(bounds[cc + 1]) - start
            items.append(
                (
                    cc,
                    {
                        st: {name: v[lo:hi] for name, v in fields.items()}
                        for st, fields in stats.items()
                    },
                )
            )
        write(ckpt.record_many, items)
        yield from items
        k = end


def _timed_rounds(
    parallel, compute, compute_segment, head, X, bounds, todo, ckpt, sigma,
    seed, batch_size, progress, every, n_workers, group, max_group,
):  # fmt: skip
    """Compute ``todo`` on ``n_workers`` in rounds, writing ``ckpt`` after each.

    The parallel counterpart of :func:`_timed_serial`: each round hands
    every worker one unit of about ``every`` seconds (sized by the
    throughput per worker measured on the rounds so far): consecutive
    chunks needing the same stages (only if ``group``, at most
    ``max_group`` inputs, for load balance), or the next segment of whole
    noise blocks of a one-input chunk whose draws take longer, run from
    the generator state the previous segment left (at most one segment per
    input per round, so an input's segments run in order).  The parent
    gathers the round, stores finished chunks and part-way inputs in one
    write, and starts the next round: a killed run loses about one round.

    Yields ``(chunk, stats)`` of every finished chunk, after it is stored.
    """
    from .sampling import _BLOCK_SIZE

    first_segment = -(-batch_size // _BLOCK_SIZE) * _BLOCK_SIZE
    rate = None  # noisy rows per second and worker, measured
    last_rows = first_segment
    write_s = 0.0

    def budget():
        if rate is None:
            return first_segment
        interval = max(every, write_s / _MAX_WRITE_SHARE) if _MAX_WRITE_SHARE else every
        return max(1, min(int(rate * interval), 8 * last_rows))

    def size_of(c):
        return int(bounds[c + 1] - bounds[c])

    def rows_of(c, need):
        return size_of(c) * sum(n for _, n, _ in need)

    need_of = dict(todo)
    state_of: dict[int, dict] = {}  # part-way inputs: stage -> (done, fields, state)
    active: list[int] = []  # inputs run in segments, not finished
    k = 0
    while k < len(todo) or active:
        b = budget()
        units = [("segment", c) for c in active]
        while len(units) < n_workers and k < len(todo):
            c, need = todo[k]
            if size_of(c) == 1 and (rows_of(c, need) > b or ckpt.partial(c)):
                state_of[c] = ckpt.partial(c)
                active.append(c)
                units.append(("segment", c))
                k += 1
                continue
            stages_of = [s for s, _, _ in need]
            end, rows, inputs = k + 1, rows_of(c, need), size_of(c)
            while (
                group
                and rate is not None
                and end < len(todo)
                and todo[end][0] == todo[end - 1][0] + 1
                and [s for s, _, _ in todo[end][1]] == stages_of
                and not ckpt.partial(todo[end][0])
                and rows + rows_of(*todo[end]) <= b
                and inputs + size_of(todo[end][0]) <= max_group
            ):
                rows += rows_of(*todo[end])
                inputs += size_of(todo[end][0])
                end += 1
            units.append(("chunks", k, end))
            k = end
        calls, unit_rows = [], []
        for tag, unit in enumerate(units):
            if unit[0] == "chunks":
                _, lo, hi = unit
                c0, c1 = todo[lo][0], todo[hi - 1][0]
                start, stop = int(bounds[c0]), int(bounds[c1 + 1])
                need = todo[lo][1]
                calls.append(
                    compute(
                        *head, X, start, stop, need, sigma, seed, batch_size, None, tag
                    )
                )
                unit_rows.append(sum(rows_of(*todo[j]) for j in range(lo, hi)))
                continue
            c = unit[1]
            progress_c = state_of[c]
            stage, n_draws, statistic = next(
                spec
                for spec in need_of[c]
                if progress_c.get(spec[0], (0,))[0] < spec[1]
            )
            done, fields, state = progress_c.get(stage, (0, None, None))
            seg = max(_BLOCK_SIZE, b // _BLOCK_SIZE * _BLOCK_SIZE)
            stop = min(n_draws, done + seg)
            calls.append(
                compute_segment(
                    *head,
                    X,
                    int(bounds[c]),
                    stage,
                    n_draws,
                    statistic,
                    sigma,
                    seed,
                    batch_size,
                    done,
                    stop,
                    state,
                    fields,
                    tag,
                )
            )
            unit_rows.append(stop - done)
        tic = time.perf_counter()
        outputs = list(parallel(calls))
        elapsed = time.perf_counter() - tic
        rate = sum(unit_rows) / max(elapsed * len(units), 1e-9)
        last_rows = max(unit_rows)
        finished, partials = [], []
        for out in outputs:
            unit = units[out[0]]
            if unit[0] == "chunks":
                _, lo, hi = unit
                start = int(bounds[todo[lo][0]])
                for cc, _ in todo[lo:hi]:
                    a, z = int(bounds[cc]) - start, int(bounds[cc + 1]) - start
                    finished.append(
                        (
                            cc,
                            {
                                st: {name: v[a:z] for name, v in f.items()}
                                for st, f in out[1].items()
                            },
                        )
                    )
                continue
            c = unit[1]
            _, stage, stop, fields, state = out
            n_draws = next(n for s, n, _ in need_of[c] if s == stage)
            state_of[c][stage] = (stop, fields, state if stop < n_draws else None)
            if all(state_of[c].get(s, (0,))[0] == n for s, n, _ in need_of[c]):
                finished.append((c, {s: state_of[c][s][1] for s, _, _ in need_of[c]}))
                active.remove(c)
                del state_of[c]
            else:
                partials.append((c, state_of[c]))
        tic = time.perf_counter()
        ckpt.record_many(finished, partials)
        write_s = time.perf_counter() - tic
        for c, stats in finished:
            if progress is not None:
                progress(size_of(c))
            yield c, stats


def _compute_segment(
    adapter, X, i, stage, n_draws, statistic, sigma, seed, batch_size, start,
    stop, state, init, tag,
):  # fmt: skip
    """Draws ``start:stop`` of input ``i`` in ``stage`` (runs in a worker).

    Returns ``(tag, stage, stop, fields, state)``: the fields over draws
    ``0:stop`` (from ``init``, those over ``0:start``) and the generator
    state after draw ``stop``.
    """
    if isinstance(adapter, _AdapterBox):
        adapter = adapter.adapter
    segment = {"start": start, "stop": stop, "state": state, "init": init}
    fields = accumulate(
        adapter,
        np.array(X[i : i + 1]),
        n_draws,
        sigma,
        statistic,
        stage=stage,
        seed=seed,
        batch_size=batch_size,
        input_offset=i,
        _segment=segment,
    )
    return tag, stage, stop, fields, segment["state"]


def _compute_chunk(
    adapter, X, start, stop, stages, sigma, seed, batch_size, progress, tag=None
):
    """Fields of inputs ``start:stop`` for every stage (runs in a worker).

    Returns the dict ``stage -> {field: array}``, or ``(tag, dict)`` when a
    ``tag`` is given (the chunk index, which places the result).
    """
    if isinstance(adapter, _AdapterBox):
        adapter = adapter.adapter
    # A private copy: a memory-mapped, read-only X would make torch warn.
    chunk = np.array(X[start:stop])
    out = {}
    for i, (stage, n_draws, statistic) in enumerate(stages):
        last = i == len(stages) - 1
        out[stage] = accumulate(
            adapter,
            chunk,
            n_draws,
            sigma,
            statistic,
            stage=stage,
            seed=seed,
            batch_size=batch_size,
            input_offset=start,
            progress=progress if last else None,
        )
    return out if tag is None else (tag, out)


class _DevicePool:
    """Adapters of several devices, lent to one chunk at a time (threads only).

    With as many worker threads as adapters, a chunk always finds one free.
    """

    def __init__(self, adapters):
        self._free = queue.SimpleQueue()
        for adapter in adapters:
            self._free.put(adapter)

    def compute_chunk(self, *args):
        return self._run(_compute_chunk, *args)

    def compute_segment(self, *args):
        return self._run(_compute_segment, *args)

    def _run(self, function, *args):
        adapter = self._free.get()
        try:
            return function(adapter, *args)
        finally:
            self._free.put(adapter)


def gather_fields(
    adapter,
    X: NDArray,
    *,
    stages: Sequence[tuple],
    sigma: float,
    seed: int,
    batch_size: int = 1024,
    n_jobs: int | None = None,
    chunk_size: int | None = None,
    checkpoint: str | PathLike | None = None,
    checkpoint_meta: dict | None = None,
    seed_from_checkpoint: bool = False,
    progress: Callable[[int], object] | None = None,
    checkpoint_every: float = 10.0,
) -> dict[int, dict[str, NDArray]]:
    r"""Monte-Carlo statistics of many inputs, in parallel and checkpointed.

    Parameters
    ----------
    adapter : _BaseAdapter or list of _BaseAdapter
        The base model (see :mod:`smoothlearn.models`); it is pickled to the
        workers of a process-based backend.  A list holds one adapter per
        device (:func:`~smoothlearn.models._replicas`): the chunks then run
        on one thread per adapter, each on whichever adapter is free,
        whatever joblib backend is configured; the first adapter stands for
        the model in the checkpoint.  An ``"auto"`` memory format is
        resolved once, on the first adapter, and given to all.
    X : ndarray of shape (n_inputs, \*input_shape) or InputSource
        The inputs (validated by the caller).  A data set
        (:class:`~smoothlearn.datasets.InputSource`) is loaded one chunk at a
        time, in chunks of at most its ``chunk_size`` inputs.
    stages : list of tuple
        ``(stage, n_draws, score)`` or ``(stage, n_draws, score, score_key)``
        per sampling stage (e.g. selection with ``n0`` draws, then estimation
        with ``n`` draws); ``score`` is ``"hard"``, a callable as in
        :func:`~smoothlearn.sampling.sample_statistics` or a
        :class:`~smoothlearn.sampling.Statistic`, and ``score_key`` a JSON
        value describing a callable score (required with a checkpoint; a
        Statistic carries its own ``key``).
    sigma : float
        Standard deviation of the noise, > 0.
    seed : int
        Root seed (from :func:`~smoothlearn.sampling._root_seed`).
    batch_size : int, default=1024
        Noisy samples per forward pass; does not change the result.
    n_jobs : int, default=None
        Number of joblib workers; None means 1 unless inside a
        :func:`joblib.parallel_config` context, -1 all processors.  Under
        ``joblib.parallel_config(backend="dask")`` the chunks run on the Dask
        cluster.  With a list of adapters, None or the list's length.  Does
        not change the result.
    chunk_size : int, default=None
        Inputs per chunk.  None: all inputs in one chunk when serial without
        checkpoint; in parallel without checkpoint, about four chunks per
        worker; with a checkpoint, one chunk per input in the file, computed
        in units of about ``checkpoint_every`` seconds (in parallel, rounds
        of one unit per worker, a unit at most a quarter of a worker's share
        of the inputs).  An existing checkpoint keeps its own chunks.  A given
        ``chunk_size`` is computed chunk by chunk.  Does not change the
        result.
    checkpoint : str or path-like, default=None
        File (``.npz``, used as given) holding the statistics of the finished
        chunks, rewritten atomically after each one.  If it exists, the run
        resumes from it: stored chunks are not recomputed.  The file is kept
        at the end, so the same call again returns the stored statistics
        without a forward pass; delete it to recompute.  One run per file at
        a time.
    checkpoint_meta : dict, default=None
        JSON-serialisable parameters that determine the statistics beyond
        ``X``, the model, ``sigma``, ``seed`` and the stages (e.g.
        ``{"smoothing": "hard"}``); a checkpoint with other values is
        refused.  Parameters that only act after sampling (``alpha``, the
        interval, the radius) must not be listed, so they can change on
        resume.
    seed_from_checkpoint : bool, default=False
        Use the seed stored in an existing checkpoint instead of ``seed`` (for
        ``random_state=None``: the resumed run continues the same noise).
    progress : callable, default=None
        Called with the number of inputs newly completed (all stages).
    checkpoint_every : float, default=10.0
        With a checkpoint: about how many seconds of work a killed run may
        lose.  Units of work are sized by the measured throughput, and a
        chunk of one input whose draws take longer is stored part-way (the
        fields over the draws done and its noise generator's state), so
        resuming is exact.  In parallel, each round gives every worker one
        unit and the file is written after the round.  Does not change the
        result; ignored without a checkpoint.

    Returns
    -------
    fields : dict of int to dict of str to ndarray
        Per stage, every field of its statistic, of shape
        ``(n_inputs, *shape)``: ``{"sums": counts}`` for ``"hard"``,
        ``{"sums": ..., "sums_sq": ...}`` for a callable score.

    Raises
    ------
    ValueError
        If the checkpoint was written by a different run (the message lists
        what differs) or is not a readable checkpoint.

    Notes
    -----
    The noise of input ``i`` depends on ``(seed, i, stage)`` only (see
    :mod:`smoothlearn.sampling`), so the chunking, the workers, their order
    of completion and interruptions do not change the statistics, provided
    the model computes each row of a batch independently of the others.
    The checkpoint fingerprint covers the bytes, shape and dtype of ``X``,
    a hash of the model (its ``state_dict``, or :func:`joblib.hash` of a
    scikit-learn estimator), the adapter's device type and dtype,
    ``sigma``, ``seed``, ``checkpoint_meta`` and, per stage, ``n_draws`` and
    the score; ``batch_size``, ``n_jobs`` and ``chunk_size`` may change
    between the killed run and its resumption.

    Examples
    --------
    >>> import numpy as np, torch
    >>> from smoothlearn.models import _TorchAdapter
    >>> from smoothlearn._parallel import gather_fields
    >>> from smoothlearn.sampling import sample_statistics
    >>> adapter = _TorchAdapter(torch.nn.Linear(2, 3), 3)
    >>> X = np.random.default_rng(0).normal(size=(5, 2)).astype(np.float32)
    >>> stats = gather_fields(adapter, X, stages=[(0, 10, "hard"),
    ...     (1, 100, "hard")], sigma=0.5, seed=7, chunk_size=2)
    >>> serial, _ = sample_statistics(adapter, X, 100, 0.5, stage=1, seed=7)
    >>> bool((stats[1]["sums"] == serial).all())
    True
    """
    from sklearn.utils.parallel import Parallel, delayed

    specs = _check_stages(stages, checkpoint)
    if chunk_size is not None and (
        not isinstance(chunk_size, numbers.Integral)
        or isinstance(chunk_size, bool)
        or chunk_size < 1
    ):
        raise ValueError(
            "The 'chunk_size' parameter must be an int >= 1 or None. Got "
            f"{chunk_size!r} instead."
        )
    if (
        isinstance(checkpoint_every, bool)
        or not isinstance(checkpoint_every, numbers.Real)
        or not 0 < checkpoint_every < math.inf
    ):
        raise ValueError(
            "The 'checkpoint_every' parameter must be a float > 0 (seconds). Got "
            f"{checkpoint_every!r} instead."
        )
    if checkpoint is not None and not isinstance(checkpoint, str | PathLike):
        raise ValueError(
            "The 'checkpoint' parameter must be a file path (str or path-like) or "
            f"None. Got {checkpoint!r} instead."
        )
    adapters = list(adapter) if isinstance(adapter, list | tuple) else [adapter]
    if not adapters:
        raise ValueError("The 'adapter' parameter must not be an empty list.")
    adapter = adapters[0]
    if len(adapters) > 1 and n_jobs is not None and n_jobs != len(adapters):
        raise ValueError(
            f"The 'n_jobs' parameter must be None or {len(adapters)} with "
            f"{len(adapters)} adapters (one worker per device). Got {n_jobs!r} "
            "instead."
        )
    if not isinstance(X, InputSource):  # a data set stays lazy: chunks load it
        X = np.asarray(X)
    if X.ndim < 1:
        raise ValueError("The 'X' parameter must have shape (n_inputs, ...).")
    n_inputs = int(X.shape[0])
    n_classes = int(adapter.n_classes)
    draws_per_input = sum(n_draws for _, n_draws, _ in specs)

    # The inputs' noise does not depend on the worker count, so neither do
    # the statistics; the count only shapes the chunks.
    from joblib import effective_n_jobs

    n_workers = len(adapters) if len(adapters) > 1 else effective_n_jobs(n_jobs)
    # With a checkpoint and free chunking: one chunk per input in the file,
    # computed in units of about `checkpoint_every` seconds (in parallel,
    # one unit per worker and round).
    group = chunk_size is None and checkpoint is not None
    if group:
        chunk_size = 1
    if chunk_size is None:
        chunk_size = _default_chunk_size(
            n_inputs, draws_per_input, n_workers, checkpoint is not None
        )
        if isinstance(X, InputSource):  # memory bounded by the source's chunk
            chunk_size = min(chunk_size, X.chunk_size)
    bounds = _chunk_bounds(n_inputs, int(chunk_size))

    ckpt = None
    if checkpoint is not None:
        fingerprint = {
            "X": fingerprint_array(X),
            "model": fingerprint_model(adapter),
            "device": str(getattr(adapter.device, "type", adapter.device)),
            "dtype": str(adapter.dtype),
            "sigma": float(sigma),
            "seed": int(seed),
            "meta": checkpoint_meta if checkpoint_meta is not None else {},
        }
        stage_specs = {
            stage: {
                "n_draws": n_draws,
                "score": statistic.key,
                "hard": isinstance(statistic, HardCounts),
                "fields": {
                    name: [list(tail), np.dtype(dtype).str]
                    for name, (tail, dtype) in statistic.fields(n_classes).items()
                },
            }
            for stage, n_draws, statistic in specs
        }
        ckpt = _Checkpoint.open(
            checkpoint,
            fingerprint=fingerprint,
            stages=stage_specs,
            n_classes=n_classes,
            n_inputs=n_inputs,
            bounds=bounds,
            seed_from_checkpoint=seed_from_checkpoint,
        )
        ckpt.remove_stale_temporaries()
        bounds = ckpt.bounds
        seed = ckpt.seed

    n_chunks = len(bounds) - 1
    results: dict[int, dict[str, NDArray]] = {}
    for stage, _, statistic in specs:
        if ckpt is not None:
            results[stage] = ckpt.statistics(stage)
        else:
            results[stage] = {
                name: np.zeros((n_inputs, *tail), dtype=dtype)
                for name, (tail, dtype) in statistic.fields(n_classes).items()
            }

    # The chunks still to compute, each with the stages it still needs.
    todo: list[tuple[int, list]] = []
    finished = 0
    for c in range(n_chunks):
        need = [spec for spec in specs if ckpt is None or not ckpt.done(spec[0])[c]]
        if need:
            todo.append((c, need))
        else:
            finished += int(bounds[c + 1] - bounds[c])
    if finished and progress is not None:
        progress(finished)

    def store(c: int, stats: dict, record: bool = True) -> None:
        start, stop = bounds[c], bounds[c + 1]
        for stage, fields in stats.items():
            for name, value in fields.items():
                results[stage][name][start:stop] = value
        if ckpt is not None and record:
            ckpt.record(c, stats)

    # One layout for the whole run, chosen here: workers in other processes
    # would otherwise each time it, and might choose differently.
    if todo and getattr(adapter, "memory_format", None) == "auto":
        _resolve_memory_format(
            adapter,
            X[: min(n_inputs, batch_size)],
            sigma,
            min(batch_size, n_inputs * draws_per_input),
            sum(int(bounds[c + 1] - bounds[c]) for c, _ in todo) * draws_per_input,
        )
        for other in adapters[1:]:
            other.memory_format = adapter.memory_format

    # Eval mode for the whole run: workers receive (or, with threads, share)
    # a model already in eval mode, so no worker restores another's state.
    with ExitStack() as stack:
        for each in adapters:
            stack.enter_context(each.evaluating())
        if ckpt is not None and (n_workers == 1 or len(todo) <= 1):
            for c, stats in _timed_serial(
                adapter,
                X,
                bounds,
                todo,
                ckpt,
                sigma,
                seed,
                batch_size,
                progress,
                float(checkpoint_every),
                group,
            ):
                store(c, stats, record=False)
        elif ckpt is not None:
            # Rounds of about checkpoint_every seconds, each written once.
            if len(adapters) > 1:
                pool = _DevicePool(adapters)
                parallel = Parallel(n_jobs=len(adapters), backend="threading")
                compute, segment = pool.compute_chunk, pool.compute_segment
                head = ()
            else:
                parallel = Parallel(n_jobs=n_jobs)
                compute, segment = _compute_chunk, _compute_segment
                head = (_AdapterBox(adapter),)
            max_group = _default_chunk_size(n_inputs, 1, n_workers, False)
            if isinstance(X, InputSource):  # memory bounded by the source's chunk
                max_group = min(max_group, X.chunk_size)
            with parallel:
                for c, stats in _timed_rounds(
                    parallel, delayed(compute), delayed(segment), head, X, bounds,
                    todo, ckpt, sigma, seed, batch_size, progress,
                    float(checkpoint_every), n_workers, group, max_group,
                ):  # fmt: skip
                    store(c, stats, record=False)
        elif n_workers == 1 or len(todo) <= 1:
            for c, need in todo:
                stats = _compute_chunk(
                    adapter,
                    X,
                    int(bounds[c]),
                    int(bounds[c + 1]),
                    need,
                    sigma,
                    seed,
                    batch_size,
                    progress,
                )
                store(c, stats)
        else:
            # Ordered results, not "generator_unordered": that mode has been
            # seen to hang intermittently (joblib/joblib#1639), and a run that
            # hangs is worse than a chunk stored a little later.  A chunk is
            # still stored (and checkpointed) as soon as it and the chunks
            # before it are done.
            if len(adapters) > 1:
                # Threads of this process: the devices' models stay where
                # they are, and an explicit backend overrides any
                # parallel_config (a Dask cluster cannot reach these GPUs).
                parallel = Parallel(
                    n_jobs=len(adapters), backend="threading", return_as="generator"
                )
                compute = _DevicePool(adapters).compute_chunk
                head = ()
            else:
                parallel = Parallel(n_jobs=n_jobs, return_as="generator")
                compute = _compute_chunk
                head = (_AdapterBox(adapter),)
            calls = (
                delayed(compute)(
                    *head,
                    X,
                    int(bounds[c]),
                    int(bounds[c + 1]),
                    need,
                    sigma,
                    seed,
                    batch_size,
                    None,
                    c,
                )
                for c, need in todo
            )
            # Each result carries the index of its chunk, which places it.
            for c, stats in parallel(calls):
                store(c, stats)
                if progress is not None:
                    progress(int(bounds[c + 1] - bounds[c]))

    return results


def gather_statistics(
    adapter, X: NDArray, *, stages: Sequence[tuple], **kwargs
) -> dict[int, tuple[NDArray, NDArray] | dict[str, NDArray]]:
    """:func:`gather_fields`, with ``(sums, sums_sq)`` pairs for hard and score stages.

    Parameters
    ----------
    adapter, X, stages, **kwargs
        As in :func:`gather_fields`.

    Returns
    -------
    statistics : dict of int to (sums, sums_sq) or dict
        Per stage: for ``"hard"`` the int64 counts and a copy of them, for a
        callable score the float64 sums and sums of squares, each of shape
        ``(n_inputs, n_classes)``; for another
        :class:`~smoothlearn.sampling.Statistic`, its dict of fields.
    """
    fields = gather_fields(adapter, X, stages=stages, **kwargs)
    out = {}
    for stage, f in fields.items():
        if set(f) == {"sums"}:
            out[stage] = (f["sums"], f["sums"].copy())
        elif set(f) == {"sums", "sums_sq"}:
            out[stage] = (f["sums"], f["sums_sq"])
        else:
            out[stage] = f
    return out
