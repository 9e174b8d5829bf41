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

__all__ = ["sample_statistics"]

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
        A callable with a true ``per_input`` attribute is called as
        ``score(scores, index)`` with ``index`` the int64 tensor ``(B,)`` of
        each row's global input position (``input_offset`` + row of ``X``).
    input_offset : int, default=0
        Global position of ``X[0]``, passed to per-input score callables.  It
        does not change the noise, which is keyed by each input's values.
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
    n_draws = int(n_draws)
    if n_draws < 1:
        raise ValueError(f"The 'n_draws' parameter must be >= 1. Got {n_draws}.")
    batch_size = int(batch_size)
    if batch_size < 1:
        raise ValueError(
            f"The 'batch_size' parameter must be >= 1. Got {batch_size} instead."
        )
    hard = isinstance(score, str)
    if hard and score != "hard":
        raise ValueError(
            f"The 'score' parameter must be 'hard' or a callable. Got {score!r}."
        )
    if isinstance(X, InputSource):  # a data set: one chunk in memory at a time
        return X.map_chunks(
            lambda chunk, start: sample_statistics(
                adapter, chunk, n_draws, sigma, stage=stage, seed=seed,
                batch_size=batch_size, score=score,
                input_offset=input_offset + start, progress=progress,
            )
        )  # fmt: skip
    X = np.ascontiguousarray(X)
    keys = _input_keys(X)
    n_inputs = X.shape[0]
    n_classes = int(adapter.n_classes)
    device, dtype = adapter.device, adapter.dtype
    shape = X.shape[1:]
    total = n_inputs * n_draws

    acc_dtype = torch.int64 if hard else torch.float64
    sums = torch.zeros((n_inputs, n_classes), dtype=acc_dtype, device=device)
    sums_sq = None if hard else torch.zeros_like(sums)
    if total == 0:
        out = sums.cpu().numpy()
        return out, out.copy()

    rows_max = min(batch_size, total)
    _resolve_memory_format(adapter, X, sigma, rows_max, total)
    generator = torch.Generator(device=device)
    # Clean inputs per upload: those of 16 batches (a batch holds draws of at
    # most rows_max // n_draws + 2 inputs), and never more than the noise
    # buffer holds rows, so a GPU waits for the host once per window instead
    # of once per batch and memory stays O(batch_size x input size).
    window_size = min(rows_max + 1, 16 * (rows_max // n_draws + 2))
    with torch.inference_mode(), adapter.evaluating():
        noise = torch.empty((rows_max, *shape), dtype=dtype, device=device)
        arange = torch.arange(rows_max, device=device)
        if hard:
            flat = sums.view(-1)
            ones = torch.ones(rows_max, dtype=torch.int64, device=device)
            # Raised after the loop: checking each batch would wait for the device.
            out_of_range = torch.zeros((), dtype=torch.bool, device=device)
        window, w_first = None, 0  # clean inputs w_first, w_first + 1, ... on device
        carry = None  # (start draw, end draw, tensor) of a block split by a batch
        start = 0
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
            if hard:
                cls = adapter.predict_classes(batch).to(
                    device=device, dtype=torch.int64
                )
                if cls.shape != (rows,):
                    raise ValueError(
                        f"The base model returned class indices of shape "
                        f"{tuple(cls.shape)}; expected {(rows,)}."
                    )
                out_of_range |= ((cls < 0) | (cls >= n_classes)).any()
                cell = owner * n_classes + cls.clamp(0, n_classes - 1)
                flat.index_add_(0, cell, ones[:rows])
            else:
                logits = adapter.predict_scores(batch)
                if getattr(score, "per_input", False):
                    # per-input score maps receive each row's global input index
                    s = score(logits, owner + input_offset)
                else:
                    s = score(logits)
                s = s.to(device, torch.float64)
                if s.shape != (rows, n_classes):
                    raise ValueError(
                        f"The score map returned shape {tuple(s.shape)}; expected "
                        f"{(rows, n_classes)}."
                    )
                sums.index_add_(0, owner, s)
                sums_sq.index_add_(0, owner, s * s)
            if progress is not None:
                done = stop // n_draws - start // n_draws
                if done:
                    progress(done)
            start = stop

    if hard and bool(out_of_range):
        raise ValueError(
            f"The base model predicted a class index outside range({n_classes})."
        )
    sums_np = sums.cpu().numpy()
    if hard:
        return sums_np, sums_np.copy()
    return sums_np, sums_sq.cpu().numpy()
