"""The Monte-Carlo engine: noisy copies of many inputs, batched, counted on device.

:func:`sample_statistics` draws ``n_draws`` Gaussian perturbations of every
input, runs them through a base-model adapter (:mod:`smoothlearn.models`) in
batches of ``batch_size`` noisy samples that pack many inputs together, and
returns per input and class the sum and the sum of squares of the class
score (for hard smoothing: the counts of the predicted class).

Noise is generated on the model's device by torch generators, never by a
global random number generator, and counts are accumulated there (an
``index_add_`` into a flat ``(n_inputs * n_classes,)`` table, which unlike
``bincount`` needs no transfer to size its output), with one transfer at
the end.  The clean inputs go to the device in windows of about
``batch_size`` inputs, so the hot loop never waits for the host on a GPU.
Memory is O(batch_size x input size) whatever ``n_draws`` is, and no input
rank is assumed: ``X`` has shape ``(n_inputs, *input_shape)``.

Layout and precision
--------------------
The adapter decides how the model runs a batch (:mod:`smoothlearn.models`):
4-D batches may reach it in ``channels_last`` layout and its forward pass
may run under :func:`torch.autocast`.  Neither changes the noise: the batch
``x + sigma * d`` is built as below in the default layout and the model's
dtype, and only then copied to the other layout.  An adapter whose
``memory_format`` is ``"auto"`` is resolved before the first batch, by
timing both layouts on a batch of the inputs plus auxiliary noise that is
never counted (see :meth:`~smoothlearn.models._TorchAdapter.choose_memory_format`).

Determinism
-----------
The noise of an input in stage ``stage`` comes from its own stream: a torch
generator seeded with :func:`_stream_seed` ``(seed, key, stage)``, where
``key`` is a 64-bit hash of the input's own values (:func:`_input_keys`),
draws the ``n_draws`` perturbations in consecutive blocks of ``_BLOCK_SIZE``
draws (the last one shorter), each block by one ``normal_`` call.  Batches
are assembled from these blocks (a block that straddles two batches is
generated once and its remainder carried over), so the statistics of an
input depend on the seed, the input itself, the stage and the draw index
only: not on its position in ``X``, on ``batch_size``, on which other inputs
share its batches, or on how ``X`` is split into chunks.  Permuting or
subsetting ``X`` permutes or subsets the statistics.  Two identical inputs
get identical noise.

As with any fixed seed, the guarantee holds for inputs chosen without
knowledge of the seed: someone who knows ``random_state`` could search for
inputs whose noise happens to be lucky.  ``random_state=None`` draws a fresh
seed at every call.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from numpy.typing import NDArray

from ._inputs import InputSource
from ._seeding import (  # noqa: F401  (re-exported: the stages and seeds)
    STAGE_ESTIMATION,
    STAGE_PREDICT,
    STAGE_SELECTION,
    STAGE_TRAIN,
    _block_seed,
    _input_keys,
    _root_seed,
    _splitmix64,
    _stream_seed,
)
from .models import _BaseAdapter

__all__ = ["HardCounts", "ScoreSums", "Statistic", "accumulate", "sample_statistics"]

#: Draws per noise block. Part of the seeding scheme: changing it changes
#: every result obtained with a given ``random_state``.
_BLOCK_SIZE = 1024


#: Seed of the auxiliary noise of the layout probe (never counted).
_PROBE_SEED = 0x5EED


def _resolve_memory_format(
    adapter, X: NDArray, sigma: float, rows: int, total_rows: int
) -> None:
    """Resolve an adapter's ``memory_format="auto"`` before sampling ``X``.

    The probe batch holds ``rows`` rows, ``X[i % n_inputs] + sigma * d`` with
    ``d`` from an auxiliary generator, in eval and inference mode; the call
    will run ``total_rows`` rows.  An adapter wrapping another (its
    ``adapter`` attribute) resolves the inner one.  Does nothing unless the
    format is ``"auto"``.
    """
    target = adapter
    if not hasattr(target, "choose_memory_format"):
        target = getattr(adapter, "adapter", None)
    if getattr(target, "memory_format", None) != "auto":
        return
    if X.ndim != 4 or X.shape[0] == 0:
        target.memory_format = "contiguous"
        return
    device, dtype = target.device, target.dtype
    generator = torch.Generator(device=device).manual_seed(_PROBE_SEED)
    with torch.inference_mode(), target.evaluating():
        xs = torch.from_numpy(np.ascontiguousarray(X[:rows])).to(device, dtype)
        batch = xs[torch.arange(rows, device=device) % xs.shape[0]]
        noise = torch.empty_like(batch).normal_(generator=generator)
        batch.add_(noise.mul_(sigma))
        target.choose_memory_format(batch, total_rows)


class Statistic:
    r"""What the engine accumulates per input: the protocol of a statistic.

    The Monte-Carlo engine (:func:`accumulate`, hence
    :func:`~smoothlearn._parallel.gather_statistics` with its workers,
    checkpoints and progress) draws the noisy copies of every input, runs
    them through the adapter and hands each batch to a statistic, which adds
    it to per-input accumulators.  A statistic is a small picklable object
    with:

    ``output`` : {"classes", "scores", "logits"}
        What the adapter returns for a batch: class indices
        (``predict_classes``, shape ``(B,)``, checked to lie in
        ``range(n_classes)``), class scores (``predict_scores``) or logits
        (``predict_logits``), both ``(B, K)``.
    ``key`` : JSON value or None
        Describes the statistic completely (with its per-input parameters,
        e.g. a hash of them); a checkpoint stores it and refuses to mix
        statistics with another key.  None: cannot be checkpointed.
    ``fields(n_classes)`` : dict of str to (tuple, dtype)
        The accumulators: per name, the shape of one input's array (the
        trailing shape) and its numpy dtype.  The engine allocates
        ``(n_inputs, *shape)`` zeros on the adapter's device per chunk of
        inputs, concatenates chunks along the leading input axis and stores
        every field in the checkpoint.
    ``update(acc, output, owner, index)`` : None
        Adds one batch: ``acc`` maps each field to its ``(n_chunk, *shape)``
        device tensor, ``output`` is the adapter's output for the ``B`` noisy
        rows, ``owner`` the int64 ``(B,)`` row of ``acc`` each noisy row
        belongs to and ``index`` the same rows as global input positions
        (positions in the ``X`` given to the engine), to look up per-input
        parameters held by the statistic.

    The engine calls ``update`` in draw order (rows of one input appear in
    increasing draw index, batch after batch), so an accumulator updated with
    ``index_add_`` is a sequential sum and does not depend on the batch
    size, the chunking or the workers.  A statistic must only combine rows
    of the same input, never rows of different inputs.  Subclass this class
    (or duck-type it); :class:`HardCounts` and :class:`ScoreSums` are the
    two basic ones, :mod:`smoothlearn.soft` holds the soft ones.
    """

    output = "scores"
    key = None

    def fields(self, n_classes: int) -> dict:  # pragma: no cover - protocol
        raise NotImplementedError

    def update(self, acc, output, owner, index) -> None:  # pragma: no cover
        raise NotImplementedError


class HardCounts(Statistic):
    """Counts of the predicted class: the field ``"sums"``, int64 ``(K,)``."""

    output = "classes"
    key = "hard"

    def fields(self, n_classes: int) -> dict:
        return {"sums": ((int(n_classes),), np.int64)}

    def update(self, acc, output, owner, index) -> None:
        sums = acc["sums"]
        n_classes = sums.shape[1]
        cell = owner * n_classes + output.clamp(0, n_classes - 1)
        sums.view(-1).index_add_(0, cell, torch.ones_like(cell))


class ScoreSums(Statistic):
    """Sums and sums of squares (``"sums"``, ``"sums_sq"``) of a class-score map.

    ``score`` maps the adapter's scores ``(B, K)`` to [0, 1]-valued class
    scores ``(B, K)``; they are accumulated in float64.  ``key`` describes
    the map for checkpoints.
    """

    output = "scores"

    def __init__(self, score: Callable, key=None):
        self.score = score
        self.key = key

    def fields(self, n_classes: int) -> dict:
        shape = (int(n_classes),)
        return {"sums": (shape, np.float64), "sums_sq": (shape, np.float64)}

    def update(self, acc, output, owner, index) -> None:
        sums = acc["sums"]
        s = self.score(output).to(sums.device, torch.float64)
        if s.shape != (owner.shape[0], sums.shape[1]):
            raise ValueError(
                f"The score map returned shape {tuple(s.shape)}; expected "
                f"{(owner.shape[0], sums.shape[1])}."
            )
        sums.index_add_(0, owner, s)
        acc["sums_sq"].index_add_(0, owner, s * s)


def _as_statistic(score) -> Statistic:
    """``"hard"``, a score callable or a :class:`Statistic` -> a Statistic."""
    if isinstance(score, str):
        if score != "hard":
            raise ValueError(
                "The 'score' parameter must be 'hard', a callable or a Statistic. "
                f"Got {score!r}."
            )
        return HardCounts()
    if hasattr(score, "fields") and hasattr(score, "update"):
        return score
    if callable(score):
        return ScoreSums(score)
    raise ValueError(
        "The 'score' parameter must be 'hard', a callable or a Statistic. Got "
        f"{score!r}."
    )


def sample_statistics(
    adapter: _BaseAdapter,
    X: NDArray,
    n_draws: int,
    sigma: float,
    *,
    stage: int,
    seed: int,
    batch_size: int = 1024,
    score: str | Callable[[torch.Tensor], torch.Tensor] = "hard",
    input_offset: int = 0,
    progress: Callable[[int], object] | None = None,
) -> tuple[NDArray, NDArray]:
    r"""Monte-Carlo statistics of the base model under Gaussian noise.

    For every input ``x`` (a row of ``X``) and class ``c``, over ``n_draws``
    draws ``d_j ~ N(0, sigma^2 I)``, returns the sum and the sum of squares
    of the class score ``s_c(x + d_j)``.

    Parameters
    ----------
    adapter : _BaseAdapter
        The base model (see :mod:`smoothlearn.models`).
    X : ndarray of shape (n_inputs, \*input_shape) or InputSource
        The inputs, finite.  A data set (:class:`~smoothlearn.datasets.InputSource`)
        is read one chunk at a time, each sampled as an array at its offset.
    n_draws : int
        Number of noisy draws per input, >= 1.
    sigma : float
        Standard deviation of the noise, > 0.
    stage : int
        Stream identifier in ``{0, 1, 2, 3}`` (selection, estimation, predict,
        training); different stages use independent noise.
    seed : int
        Root seed (e.g. from :func:`_root_seed`).
    batch_size : int, default=1024
        Number of noisy samples per forward pass.  Does not change the result.
    score : "hard" or callable, default="hard"
        ``"hard"``: the one-hot vector of the predicted class, so the sums are
        counts.  A callable maps the adapter's score tensor ``(B, K)`` to
        [0, 1]-valued class scores ``(B, K)``; sums are accumulated in float64.
        Any other statistic: use :func:`accumulate`.
    input_offset : int, default=0
        Global position of ``X[0]`` (see :func:`accumulate`).  It does not
        change the noise, which is keyed by each input's values.
    progress : callable, default=None
        Called with the number of inputs completed after each batch.

    Returns
    -------
    sums : ndarray of shape (n_inputs, n_classes)
        int64 counts for ``score="hard"``, float64 sums otherwise.
    sums_sq : ndarray of shape (n_inputs, n_classes)
        Sums of squared scores (equal to ``sums`` for hard counts).

    Notes
    -----
    The noise of an input comes from its own stream, seeded by ``seed``,
    ``stage`` and a hash of the input's values, drawn in blocks of a fixed
    size, so the result is identical whatever ``batch_size``, the order of
    the rows or the other rows of ``X`` are, provided the base model
    computes each row of a batch independently of the others
    (floating-point reassociation inside some backends can in principle flip
    an argmax at an exact tie).  On CPU, torch generators keep 32 bits of a
    seed.  The adapter's memory layout and precision (see
    :mod:`smoothlearn.models`) change how the model computes, not the noise;
    an ``"auto"`` layout is resolved once, before the first batch.

    Examples
    --------
    >>> import numpy as np, torch
    >>> from smoothlearn.models import _TorchAdapter
    >>> from smoothlearn.sampling import sample_statistics
    >>> model = torch.nn.Linear(2, 2)
    >>> with torch.no_grad():
    ...     _ = model.weight.copy_(torch.tensor([[1.0, 0.0], [-1.0, 0.0]]))
    ...     _ = model.bias.zero_()
    >>> X = np.array([[3.0, 0.0], [-3.0, 0.0]], dtype=np.float32)
    >>> counts, _ = sample_statistics(
    ...     _TorchAdapter(model, 2), X, 100, 0.5, stage=1, seed=0)
    >>> counts
    array([[100,   0],
           [  0, 100]])
    """
    statistic = _as_statistic(score)
    if not isinstance(statistic, HardCounts | ScoreSums):
        raise ValueError(
            "The 'score' parameter must be 'hard' or a callable. Got "
            f"{score!r}; use accumulate() for other statistics."
        )
    out = accumulate(
        adapter,
        X,
        n_draws,
        sigma,
        statistic,
        stage=stage,
        seed=seed,
        batch_size=batch_size,
        input_offset=input_offset,
        progress=progress,
    )
    sums = out["sums"]
    return sums, out.get("sums_sq", sums.copy())


def accumulate(
    adapter: _BaseAdapter,
    X: NDArray,
    n_draws: int,
    sigma: float,
    statistic: Statistic,
    *,
    stage: int,
    seed: int,
    batch_size: int = 1024,
    input_offset: int = 0,
    progress: Callable[[int], object] | None = None,
    _segment: dict | None = None,
) -> dict[str, NDArray]:
    r"""Accumulate a :class:`Statistic` over ``n_draws`` noisy copies of each input.

    The engine behind :func:`sample_statistics`, with the same noise,
    batching and determinism, for any statistic.

    Parameters
    ----------
    adapter : _BaseAdapter
        The base model.
    X : ndarray of shape (n_inputs, \*input_shape)
        The inputs, finite.
    n_draws : int
        Number of noisy draws per input, >= 1.
    sigma : float
        Standard deviation of the noise, > 0.
    statistic : Statistic
        What to accumulate (see :class:`Statistic`).
    stage, seed, batch_size, progress
        As in :func:`sample_statistics`.
    input_offset : int, default=0
        Global position of ``X[0]``: ``update`` receives ``index = owner +
        input_offset`` to look up per-input parameters.
    _segment : dict, default=None
        Private (checkpoints of :mod:`smoothlearn._parallel`): run only draws
        ``start:stop`` of the single input of ``X``, where ``start`` is a
        multiple of ``_BLOCK_SIZE`` (no block is then carried over) and
        ``stop`` one too or ``n_draws``.  Keys: ``"start"``, ``"stop"``,
        ``"state"`` (the generator state after draw ``start``, a uint8
        array, required when ``start > 0``) and ``"init"`` (the fields
        accumulated over draws ``0:start``, or None).  The generator state
        after draw ``stop`` is written back to ``_segment["state"]``.  The
        accumulators continue from ``init`` with the same sequence of
        ``update`` calls per input as an uninterrupted run, so the fields
        are those of one run when ``update`` adds rows in draw order (as
        ``index_add_`` does on CPU).

    Returns
    -------
    fields : dict of str to ndarray
        Every field of ``statistic.fields``, of shape ``(n_inputs, *shape)``.
    """
    n_draws = int(n_draws)
    if n_draws < 1:
        raise ValueError(f"The 'n_draws' parameter must be >= 1. Got {n_draws}.")
    batch_size = int(batch_size)
    if batch_size < 1:
        raise ValueError(
            f"The 'batch_size' parameter must be >= 1. Got {batch_size} instead."
        )
    output = statistic.output
    if output not in ("classes", "scores", "logits"):
        raise ValueError(
            "A statistic's 'output' must be 'classes', 'scores' or 'logits'. Got "
            f"{output!r} instead."
        )
    if isinstance(X, InputSource):  # a data set: one chunk in memory at a time
        names = list(statistic.fields(int(adapter.n_classes)))
        columns = X.map_chunks(
            lambda chunk, start: tuple(
                accumulate(
                    adapter, chunk, n_draws, sigma, statistic, stage=stage,
                    seed=seed, batch_size=batch_size,
                    input_offset=input_offset + start, progress=progress,
                )[name]
                for name in names
            )
        )  # fmt: skip
        return dict(zip(names, columns, strict=True))
    X = np.ascontiguousarray(X)
    keys = _input_keys(X)
    n_inputs = X.shape[0]
    n_classes = int(adapter.n_classes)
    device, dtype = adapter.device, adapter.dtype
    shape = X.shape[1:]
    total = n_inputs * n_draws
    first = 0  # the first draw (of all inputs laid end to end) to run
    if _segment is not None:
        first, total = int(_segment["start"]), int(_segment["stop"])
        if (
            n_inputs != 1
            or not 0 <= first < total <= n_draws
            or first % _BLOCK_SIZE
            or (total % _BLOCK_SIZE and total != n_draws)
        ):
            raise ValueError(f"Invalid segment {first}:{total} of {n_inputs} inputs.")

    acc = {
        name: torch.zeros(
            (n_inputs, *tail), dtype=_TORCH_DTYPES[np.dtype(dt)], device=device
        )
        for name, (tail, dt) in statistic.fields(n_classes).items()
    }
    if _segment is not None and _segment.get("init") is not None:
        for name, value in _segment["init"].items():
            acc[name].copy_(torch.as_tensor(np.asarray(value)).reshape(acc[name].shape))
    if total == 0:
        return {name: a.cpu().numpy() for name, a in acc.items()}

    rows_max = min(batch_size, total - first)
    _resolve_memory_format(adapter, X, sigma, rows_max, total - first)
    generator = torch.Generator(device=device)
    if first:
        generator.set_state(torch.as_tensor(np.asarray(_segment["state"], np.uint8)))
    # Clean inputs per upload: those of 16 batches (a batch holds draws of at
    # most rows_max // n_draws + 2 inputs), and never more than the noise
    # buffer holds rows, so a GPU waits for the host once per window instead
    # of once per batch and memory stays O(batch_size x input size).
    window_size = min(rows_max + 1, 16 * (rows_max // n_draws + 2))
    with torch.inference_mode(), adapter.evaluating():
        noise = torch.empty((rows_max, *shape), dtype=dtype, device=device)
        arange = torch.arange(rows_max, device=device)
        if output == "classes":
            # Raised after the loop: checking each batch would wait for the device.
            out_of_range = torch.zeros((), dtype=torch.bool, device=device)
        window, w_first = None, 0  # clean inputs w_first, w_first + 1, ... on device
        carry = None  # (start draw, end draw, tensor) of a block split by a batch
        start = first
        while start < total:
            stop = min(start + batch_size, total)
            rows = stop - start
            i_first, i_last = start // n_draws, (stop - 1) // n_draws
            if window is None or i_last >= w_first + window.shape[0]:
                w_first = i_first
                w_stop = min(n_inputs, i_first + window_size)
                window = torch.from_numpy(X[w_first:w_stop]).to(device, dtype)
            xs = window[i_first - w_first : i_last + 1 - w_first]
            f, r = start, 0
            while f < stop:
                i, j = divmod(f, n_draws)
                if j == 0:
                    generator.manual_seed(_stream_seed(seed, int(keys[i]), stage))
                    carry = None
                if carry is not None and carry[0] <= j < carry[1]:
                    length = min(carry[1] - j, stop - f)
                    noise[r : r + length].copy_(
                        carry[2][j - carry[0] : j - carry[0] + length]
                    )
                else:
                    block = min(_BLOCK_SIZE, n_draws - j)
                    if block <= stop - f:
                        length = block
                        noise[r : r + length].normal_(generator=generator)
                    else:
                        length = stop - f
                        buf = torch.empty((block, *shape), dtype=dtype, device=device)
                        buf.normal_(generator=generator)
                        carry = (j, j + block, buf)
                        noise[r : r + length].copy_(buf[:length])
                # x + sigma * d as two separately rounded operations, so the value
                # of a row never depends on where it sits in the batch.
                noise[r : r + length].mul_(sigma).add_(xs[i - i_first])
                f += length
                r += length

            batch = noise[:rows]
            # the row of X each noisy sample belongs to
            owner = torch.div(arange[:rows] + start, n_draws, rounding_mode="floor")
            if output == "classes":
                out = adapter.predict_classes(batch).to(
                    device=device, dtype=torch.int64
                )
                if out.shape != (rows,):
                    raise ValueError(
                        f"The base model returned class indices of shape "
                        f"{tuple(out.shape)}; expected {(rows,)}."
                    )
                out_of_range |= ((out < 0) | (out >= n_classes)).any()
            elif output == "scores":
                out = adapter.predict_scores(batch)
            else:
                out = adapter.predict_logits(batch)
            statistic.update(acc, out, owner, owner + input_offset)
            if progress is not None:
                done = stop // n_draws - start // n_draws
                if done:
                    progress(done)
            start = stop

    if output == "classes" and bool(out_of_range):
        raise ValueError(
            f"The base model predicted a class index outside range({n_classes})."
        )
    if _segment is not None:
        _segment["state"] = generator.get_state().numpy().copy()
    return {name: a.cpu().numpy() for name, a in acc.items()}


#: numpy dtype of a statistic's field -> torch dtype of its accumulator.
_TORCH_DTYPES = {
    np.dtype(np.int64): torch.int64,
    np.dtype(np.float64): torch.float64,
    np.dtype(np.float32): torch.float32,
    np.dtype(np.bool_): torch.bool,
}
