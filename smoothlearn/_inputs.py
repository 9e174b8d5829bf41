"""Data sets as inputs: a lazily loaded, read-only array of a data set's inputs.

:class:`InputSource` wraps a map-style :class:`torch.utils.data.Dataset` (or a
:class:`~torch.utils.data.DataLoader` over one) and behaves, for the engine,
like the array of its inputs ``X`` of shape ``(n_inputs, *input_shape)``:
``len``, ``shape``, ``ndim`` and ``dtype`` are known without loading
anything but the first item; slicing or fancy indexing gives another
source (a view, nothing loaded); ``numpy.asarray(source)`` loads the items
of the view, one chunk of ``chunk_size`` items at a time, into one array.
Consumers that must not hold the whole data set iterate
:meth:`InputSource.iter_chunks` or :meth:`InputSource.map_chunks`.

Every loaded item is checked as arrays are: the shape of the first item
(the shape at fit, checked by the classifier) and finite values, with an
error naming the item.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from numbers import Integral, Number

import numpy as np
from numpy.typing import NDArray

__all__ = ["InputSource", "as_source", "is_data_set"]

#: Bytes of inputs held in memory at once by default (one chunk): 64 MiB,
#: e.g. 5,461 CIFAR-10 images (3x32x32 float32) or 111 ImageNet images
#: (3x224x224 float32).
_CHUNK_BYTES = 2**26


def _torch_data():
    import torch.utils.data as data

    return data


def is_data_set(X) -> bool:
    """Whether ``X`` is a torch ``Dataset``, a ``DataLoader`` or a source."""
    if isinstance(X, InputSource):
        return True
    data = _torch_data()
    return isinstance(X, data.Dataset | data.DataLoader)


def _to_numpy(value, what: str) -> NDArray:
    """An item's input (tensor, array, number) as a numpy array."""
    import torch

    if isinstance(value, torch.Tensor):
        return value.detach().cpu().numpy()
    if isinstance(value, np.ndarray | Number | np.generic):
        return np.asarray(value)
    if isinstance(value, dict):
        raise ValueError(
            f"{what} is a dict; a data set's items must be x, (x,) or (x, y) "
            "with x a tensor or an array."
        )
    try:
        return np.asarray(value)  # e.g. a PIL image
    except Exception as exc:  # pragma: no cover - depends on the item type
        raise ValueError(
            f"{what} is of type {type(value).__name__}, which does not convert to "
            "an array; a data set's items must be x, (x,) or (x, y)."
        ) from exc


def _split_item(item, what: str):
    """``(x, y)`` of an item ``x``, ``(x,)`` or ``(x, y, ...)`` (y None if absent)."""
    if isinstance(item, tuple | list):
        if len(item) == 0:
            raise ValueError(f"{what} is an empty {type(item).__name__}.")
        return item[0], (item[1] if len(item) > 1 else None)
    return item, None


def _check_loader(loader):
    """The map-style data set and the positions a DataLoader reads, in order."""
    data = _torch_data()
    dataset = loader.dataset
    if isinstance(dataset, data.IterableDataset):
        raise ValueError(
            "The 'X' parameter must be a map-style Dataset (with __len__ and "
            "__getitem__) or a DataLoader over one; an IterableDataset cannot be "
            "indexed, so every k-th item or a chunk cannot be read from it."
        )
    if isinstance(loader.sampler, data.RandomSampler):
        raise ValueError(
            "The 'X' parameter is a DataLoader with shuffle=True: the order of "
            "its items changes at every pass, so the results could not be matched "
            "to the inputs. Use shuffle=False (and smoothlearn.datasets.every_kth "
            "or select for a subset)."
        )
    if not isinstance(loader.sampler, data.SequentialSampler):
        raise ValueError(
            "The 'X' parameter is a DataLoader with a custom sampler "
            f"({type(loader.sampler).__name__}); only sequential loaders are "
            "read. Select items with smoothlearn.datasets.select instead."
        )
    batch_sampler = loader.batch_sampler
    if batch_sampler is not None and type(batch_sampler) is not data.BatchSampler:
        raise ValueError(
            "The 'X' parameter is a DataLoader with a custom batch_sampler "
            f"({type(batch_sampler).__name__}); only sequential loaders are read."
        )
    n = len(dataset)
    if loader.batch_size is not None and loader.drop_last:
        n -= n % loader.batch_size
    return dataset, np.arange(n, dtype=np.int64)


def _unwrap_subsets(dataset, indices: NDArray[np.int64]):
    """``(base, positions in base)`` through any chain of ``Subset``."""
    data = _torch_data()
    while isinstance(dataset, data.Subset):
        indices = np.asarray(dataset.indices, dtype=np.int64)[indices]
        dataset = dataset.dataset
    return dataset, indices


class InputSource:
    """The inputs of a torch data set as a lazily loaded, read-only array.

    Made by :func:`smoothlearn.datasets.as_inputs`, or implicitly when a
    ``Dataset`` or a ``DataLoader`` is given where an array ``X`` is
    expected.

    Attributes
    ----------
    shape : tuple of int
        ``(n_inputs, *input_shape)``, the input shape read from the first item.
    dtype : numpy.dtype
        float32 when the first item's input is float32, else float64 (the
        dtypes an array ``X`` is validated to).
    ndim : int
        ``len(shape)``.
    chunk_size : int
        Items loaded and held at once by :meth:`iter_chunks` (and by the
        engine, which reads one chunk at a time).
    """

    def __init__(
        self,
        dataset,
        indices: NDArray[np.int64],
        *,
        chunk_size: int | None = None,
        loader: dict | None = None,
        item_shape: tuple | None = None,
        dtype=None,
        positions: NDArray[np.int64] | None = None,
    ):
        self._dataset = dataset
        self._indices = np.asarray(indices, dtype=np.int64)
        # position of each item in the data set the user gave (error messages)
        self._positions = (
            np.arange(len(self._indices), dtype=np.int64)
            if positions is None
            else np.asarray(positions, dtype=np.int64)
        )
        self._loader = loader
        if item_shape is None:
            item_shape, dtype = self._probe()
        self._item_shape = tuple(int(s) for s in item_shape)
        self.dtype = np.dtype(dtype)
        if chunk_size is None:
            item_bytes = max(1, math.prod(self._item_shape)) * self.dtype.itemsize
            chunk_size = max(1, _CHUNK_BYTES // item_bytes)
        self.chunk_size = int(chunk_size)

    # -- array protocol ---------------------------------------------------
    @property
    def shape(self) -> tuple[int, ...]:
        return (len(self._indices), *self._item_shape)

    @property
    def ndim(self) -> int:
        return 1 + len(self._item_shape)

    def __len__(self) -> int:
        return len(self._indices)

    def __repr__(self) -> str:
        return (
            f"InputSource({type(self._dataset).__name__}, shape={self.shape}, "
            f"dtype={self.dtype}, chunk_size={self.chunk_size})"
        )

    def _view(self, key) -> InputSource:
        return InputSource(
            self._dataset,
            self._indices[key],
            chunk_size=self.chunk_size,
            loader=self._loader,
            item_shape=self._item_shape,
            dtype=self.dtype,
            positions=self._positions[key],
        )

    def __getitem__(self, key):
        """An int gives the item's input (loaded); a slice or an index array a view."""
        if isinstance(key, Integral) and not isinstance(key, bool):
            return self._view(np.array([key]))._load()[0]
        if isinstance(key, slice):
            return self._view(key)
        index = np.asarray(key)
        if index.dtype == bool or np.issubdtype(index.dtype, np.integer):
            if index.ndim != 1:
                raise IndexError("An InputSource takes 1-D index arrays only.")
            return self._view(index)
        raise IndexError(
            f"An InputSource is indexed by an int, a slice or a 1-D array of ints "
            f"or booleans. Got {key!r} instead."
        )

    def __array__(self, dtype=None, copy=None):
        """Load every item of this source (of this view) into one array."""
        out = self._load()
        return out if dtype is None else out.astype(dtype, copy=False)

    # -- streaming --------------------------------------------------------
    def iter_chunks(
        self, chunk_size: int | None = None
    ) -> Iterator[tuple[int, NDArray]]:
        """``(start, inputs[start:start + size])`` in order, one loaded at a time."""
        size = self.chunk_size if chunk_size is None else int(chunk_size)
        for start in range(0, len(self), size):
            yield start, self._view(slice(start, start + size))._load()

    def map_chunks(self, func: Callable[[NDArray, int], tuple]) -> tuple:
        """``func(chunk, start)`` per chunk, its arrays concatenated along axis 0.

        ``func`` returns a tuple of arrays of ``len(chunk)`` rows; the chunk
        is released before the next is loaded.
        """
        if len(self) == 0:
            return func(self._load(), 0)
        parts = [func(chunk, start) for start, chunk in self.iter_chunks()]
        return tuple(
            np.concatenate(column, axis=0) for column in zip(*parts, strict=True)
        )

    # -- loading ----------------------------------------------------------
    def _name(self, row: int) -> str:
        pos, index = int(self._positions[row]), int(self._indices[row])
        name = f"item {pos} of the data set"
        if index != pos:
            name += f" (index {index} of the underlying data set)"
        return name

    def _probe(self):
        if len(self._indices) == 0:
            raise ValueError(
                "Found array with 0 sample(s) (an empty data set) while a minimum "
                "of 1 is required."
            )
        x = _to_numpy(next(self._items(self._indices[:1], inputs=True)), "")
        dtype = x.dtype if x.dtype in (np.float32, np.float64) else np.float64
        return x.shape, dtype

    def _items(self, indices, *, inputs: bool):
        """The inputs (or the targets) of items ``indices`` of the base data set.

        Yields one per item, in order, holding at most one item (or one loader
        batch) at a time.
        """
        if self._loader is None:
            for i in indices:
                x, y = _split_item(self._dataset[int(i)], f"Item {int(i)}")
                yield x if inputs else y
            return
        data = _torch_data()
        kwargs = dict(self._loader)
        loader = data.DataLoader(
            data.Subset(self._dataset, [int(i) for i in indices]),
            shuffle=False,
            **kwargs,
        )
        for batch in loader:
            x, y = _split_item(batch, "A batch of the DataLoader")
            value = x if inputs else y
            if kwargs.get("batch_size") is None:  # no automatic batching
                yield value
            elif value is None:
                yield from [None] * len(_to_numpy(x, "A batch"))
            else:
                yield from _to_numpy(value, "A batch of the DataLoader")

    def _load(self) -> NDArray:
        """This view's inputs as one array, checked item by item."""
        out = np.empty(self.shape, dtype=self.dtype)
        for row, x in enumerate(self._items(self._indices, inputs=True)):
            what = self._name(row).capitalize()
            x = _to_numpy(x, what)
            if x.shape != self._item_shape:
                raise ValueError(
                    f"{what} has an input of shape {x.shape}; the data set's "
                    f"inputs have shape {self._item_shape} (that of its first item)."
                )
            out[row] = x
        finite = np.isfinite(out.reshape(len(out), -1)).all(axis=1)
        if not finite.all():
            row = int(np.argmin(finite))
            raise ValueError(
                f"Input X contains NaN or infinity: {self._name(row)} is not finite."
            )
        return out

    def targets(self) -> NDArray:
        """The targets ``y`` of the items ``(x, y)``, in order, one item at a time."""
        ys = []
        for row, y in enumerate(self._items(self._indices, inputs=False)):
            if y is None:
                raise ValueError(
                    f"{self._name(row).capitalize()} holds no target: items must be "
                    "(x, y) to give targets."
                )
            y = _to_numpy(y, "A target")
            ys.append(y.item() if y.ndim == 0 else y)
        return np.asarray(ys)


def as_source(X, chunk_size: int | None = None) -> InputSource:
    """An :class:`InputSource` for a Dataset, a DataLoader or a source."""
    data = _torch_data()
    if chunk_size is not None and (
        not isinstance(chunk_size, Integral)
        or isinstance(chunk_size, bool)
        or chunk_size < 1
    ):
        raise ValueError(
            "The 'chunk_size' parameter must be an int >= 1 or None. Got "
            f"{chunk_size!r} instead."
        )
    if isinstance(X, InputSource):
        if chunk_size is None or chunk_size == X.chunk_size:
            return X
        view = X._view(slice(None))
        view.chunk_size = int(chunk_size)
        return view
    loader = None
    if isinstance(X, data.DataLoader):
        dataset, indices = _check_loader(X)
        loader = {
            "batch_size": X.batch_size,
            "num_workers": X.num_workers,
            "collate_fn": X.collate_fn,
            "worker_init_fn": X.worker_init_fn,
            "multiprocessing_context": X.multiprocessing_context,
            "timeout": X.timeout,
        }
        if X.num_workers > 0:
            loader["prefetch_factor"] = X.prefetch_factor
    elif isinstance(X, data.IterableDataset):
        raise ValueError(
            "The 'X' parameter must be a map-style Dataset (with __len__ and "
            "__getitem__) or a DataLoader over one; an IterableDataset cannot be "
            "indexed, so every k-th item or a chunk cannot be read from it."
        )
    elif isinstance(X, data.Dataset):
        dataset, indices = X, np.arange(len(X), dtype=np.int64)
    else:
        raise ValueError(
            "The 'X' parameter must be a torch Dataset, a DataLoader or an "
            f"InputSource. Got {type(X).__name__} instead."
        )
    if loader is None:
        # Read the base data set directly: every k-th item of a Subset is
        # one __getitem__ of the base, nothing else.
        dataset, indices = _unwrap_subsets(dataset, indices)
    return InputSource(dataset, indices, chunk_size=chunk_size, loader=loader)
