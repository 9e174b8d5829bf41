"""Data sets as inputs: every k-th item, given indices, targets, chunked reading.

:meth:`SmoothedClassifier.certify <smoothlearn.SmoothedClassifier.certify>`,
``predict``, ``predict_proba``, ``score``,
:meth:`SequentialCertifier.certify <smoothlearn.SequentialCertifier.certify>`
and the gap evaluation (:func:`smoothlearn.attacks.gap_report`) take, in place
of an array ``X``, a map-style :class:`torch.utils.data.Dataset` whose items
are ``x``, ``(x,)`` or ``(x, y)`` (``x`` a tensor or an array of the input
shape seen at fit), or a :class:`~torch.utils.data.DataLoader` over one with
``shuffle=False``.  The items are read lazily, a chunk at a time, so memory
is bounded by the chunk and the batch, not by the data set; the results are
identical to those of the array of the same inputs.

The papers' protocol certifies every 20th CIFAR-10 or every 100th ImageNet
test image (Cohen et al. 2019): :func:`every_kth` and :func:`select` give
that subset as a lazy view, and :func:`targets` its labels.

Examples
--------
>>> import numpy as np, torch
>>> from torch.utils.data import TensorDataset
>>> from smoothlearn.datasets import every_kth, targets
>>> ds = TensorDataset(torch.arange(20.0).reshape(10, 2), torch.arange(10) % 2)
>>> test = every_kth(ds, 3)
>>> len(test), targets(test)
(4, array([0, 1, 0, 1]))
"""

from __future__ import annotations

from numbers import Integral

import numpy as np
from numpy.typing import ArrayLike, NDArray

from ._inputs import InputSource, as_source

__all__ = ["InputSource", "as_inputs", "every_kth", "select", "targets"]


def _check_map_style(dataset, who: str):
    import torch.utils.data as data

    if isinstance(dataset, data.IterableDataset) or not isinstance(
        dataset, data.Dataset
    ):
        raise ValueError(
            f"The 'dataset' parameter of {who} must be a map-style torch Dataset "
            f"(with __len__ and __getitem__). Got {type(dataset).__name__} instead."
        )


def every_kth(dataset, k: int, start: int = 0):
    """Items ``start, start + k, start + 2k, ...`` of a data set, as a lazy view.

    The protocol of Cohen et al. (2019): every 20th CIFAR-10 and every 100th
    ImageNet test image.  Nothing is read: the view reads only its own items
    when it is certified.

    Parameters
    ----------
    dataset : torch.utils.data.Dataset
        A map-style data set (items ``x``, ``(x,)`` or ``(x, y)``).
    k : int
        Step, >= 1.
    start : int, default=0
        First item, in ``[0, k)``.

    Returns
    -------
    subset : torch.utils.data.Subset
        ``len(range(start, len(dataset), k))`` items; its inputs equal
        ``X[start::k]`` for the array ``X`` of the data set's inputs.

    Examples
    --------
    >>> import torch
    >>> from torch.utils.data import TensorDataset
    >>> from smoothlearn.datasets import every_kth
    >>> list(every_kth(TensorDataset(torch.arange(10)), 4).indices)
    [0, 4, 8]
    """
    import torch.utils.data as data

    _check_map_style(dataset, "every_kth")
    if not isinstance(k, Integral) or isinstance(k, bool) or k < 1:
        raise ValueError(
            f"The 'k' parameter of every_kth must be an int >= 1. Got {k!r} instead."
        )
    if not isinstance(start, Integral) or isinstance(start, bool) or not 0 <= start < k:
        raise ValueError(
            f"The 'start' parameter of every_kth must be an int in [0, {k}). Got "
            f"{start!r} instead."
        )
    return data.Subset(dataset, range(int(start), len(dataset), int(k)))


def select(dataset, indices: ArrayLike):
    """Items ``indices`` of a data set, in that order, as a lazy view.

    Parameters
    ----------
    dataset : torch.utils.data.Dataset
        A map-style data set (items ``x``, ``(x,)`` or ``(x, y)``).
    indices : array-like of int of shape (n_inputs,)
        Positions in ``[0, len(dataset))``; repetitions are allowed.

    Returns
    -------
    subset : torch.utils.data.Subset

    Examples
    --------
    >>> import torch
    >>> from torch.utils.data import TensorDataset
    >>> from smoothlearn.datasets import select
    >>> len(select(TensorDataset(torch.arange(10)), [7, 2]))
    2
    """
    import torch.utils.data as data

    _check_map_style(dataset, "select")
    index = np.asarray(indices)
    n = len(dataset)
    if (
        index.ndim != 1
        or not (index.size == 0 or np.issubdtype(index.dtype, np.integer))
        or (index.size and (index.min() < 0 or index.max() >= n))
    ):
        raise ValueError(
            "The 'indices' parameter of select must be a 1-D array of ints in "
            f"[0, {n}). Got {indices!r} instead."
        )
    return data.Subset(dataset, index.astype(np.int64).tolist())


def as_inputs(data, *, chunk_size: int | None = None) -> InputSource:
    """A data set's inputs as a lazily loaded array, with a chosen chunk size.

    Certifying a ``Dataset`` or a ``DataLoader`` wraps it so implicitly, with
    chunks of about 64 MiB of inputs; this function sets the chunk.

    Parameters
    ----------
    data : torch.utils.data.Dataset, DataLoader or InputSource
        A map-style data set with items ``x``, ``(x,)`` or ``(x, y)``, or a
        DataLoader over one with ``shuffle=False`` (it is read with its own
        ``batch_size``, ``num_workers`` and ``collate_fn``, one chunk at a
        time).
    chunk_size : int, default=None
        Items held in memory at once; None: about 64 MiB of inputs.  Does not
        change any result.

    Returns
    -------
    InputSource
        ``len``, ``shape``, ``dtype`` as the array of the inputs would have;
        ``numpy.asarray`` of it (or of a slice of it) loads the items.

    Raises
    ------
    ValueError
        For a DataLoader that shuffles or uses a custom sampler, an iterable
        data set, or an empty one.

    Notes
    -----
    Each item is read when its chunk is needed and checked then: its input
    must have the shape of the first item and finite values, else a
    ``ValueError`` names the item.  A pass that needs the inputs again (the
    sequential certifier's rounds, the attacks of the gap report, the
    fingerprint of a checkpoint) reads them again.  With a process-based
    joblib backend (``n_jobs``), the data set object is sent to the workers,
    which read their own chunks.

    Examples
    --------
    >>> import numpy as np, torch
    >>> from torch.utils.data import TensorDataset
    >>> from smoothlearn.datasets import as_inputs
    >>> X = torch.arange(12.0).reshape(6, 2)
    >>> src = as_inputs(TensorDataset(X), chunk_size=4)
    >>> src.shape, src.dtype
    ((6, 2), dtype('float32'))
    >>> np.asarray(src[::2])
    array([[0., 1.],
           [4., 5.],
           [8., 9.]], dtype=float32)
    """
    return as_source(data, chunk_size)


def targets(data) -> NDArray:
    """The targets ``y`` of a data set whose items are ``(x, y)``, in order.

    Parameters
    ----------
    data : torch.utils.data.Dataset, DataLoader or InputSource
        As for :func:`as_inputs`.

    Returns
    -------
    y : ndarray of shape (n_inputs,)
        One target per item, read one item (or one loader batch) at a time.

    Examples
    --------
    >>> import torch
    >>> from torch.utils.data import TensorDataset
    >>> from smoothlearn.datasets import targets
    >>> targets(TensorDataset(torch.zeros(3, 2), torch.tensor([2, 0, 1])))
    array([2, 0, 1])
    """
    return as_source(data).targets()
