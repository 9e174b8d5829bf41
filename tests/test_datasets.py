"""Data sets as inputs: lazy reading, selection, and results identical to arrays.

The reference for every result is the same call on the array of the same
inputs (the in-memory path), which must be reproduced bit for bit: the noise
of an input is keyed by its values, so reading the inputs in chunks cannot
change it.
"""

import weakref

import numpy as np
import pytest
import torch
from torch.utils.data import (
    DataLoader,
    Dataset,
    IterableDataset,
    SubsetRandomSampler,
    TensorDataset,
)

from smoothlearn import SequentialCertifier, SmoothedClassifier
from smoothlearn._checkpoint import fingerprint_array
from smoothlearn.attacks import PGD, SmoothAdvPGD, gap_report
from smoothlearn.datasets import InputSource, as_inputs, every_kth, select, targets

N, SHAPE, K = 40, (1, 4, 4), 3


class Items(Dataset):
    """Items ``x``, ``(x,)`` or ``(x, y)``; counts reads and items alive at once."""

    def __init__(self, X, y=None, form="xy", tensors=True):
        self.X, self.y, self.form, self.tensors = X, y, form, tensors
        self.reads = []
        self.alive = self.peak = 0

    def __len__(self):
        return len(self.X)

    def _release(self):
        self.alive -= 1

    def __getitem__(self, i):
        self.reads.append(int(i))
        x = self.X[i].copy()
        self.alive += 1
        self.peak = max(self.peak, self.alive)
        weakref.finalize(x, self._release)
        if self.tensors:
            x = torch.from_numpy(x)  # shares x's memory: x lives as long
        if self.form == "x":
            return x
        if self.form == "x,":
            return (x,)
        return (x, int(self.y[i]))


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(N, *SHAPE)).astype(np.float32)
    y = np.arange(N) % K
    return X, y


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return torch.nn.Sequential(
        torch.nn.Conv2d(1, 2, 3, padding=1),
        torch.nn.ReLU(),
        torch.nn.Flatten(),
        torch.nn.Linear(32, K),
    )


def _clf(model, data, **params):
    X, y = data
    defaults = dict(sigma=0.5, n0=16, n=200, random_state=0, batch_size=64)
    return SmoothedClassifier(model, **{**defaults, **params}).fit(X, y)


def _same_result(a, b):
    for name in ("prediction", "radius", "pA_lower", "pB_upper", "abstained"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name))
    np.testing.assert_array_equal(a.selection, b.selection)
    np.testing.assert_array_equal(a.estimation, b.estimation)


# -- selection ------------------------------------------------------------
@pytest.mark.parametrize("k, start", [(1, 0), (3, 0), (7, 2), (N + 5, 0)])
def test_every_kth_equals_strided_slice(data, k, start):
    X, y = data
    view = every_kth(TensorDataset(torch.from_numpy(X), torch.from_numpy(y)), k, start)
    np.testing.assert_array_equal(np.asarray(as_inputs(view)), X[start::k])
    np.testing.assert_array_equal(targets(view), y[start::k])


def test_select_keeps_order_and_repetitions(data):
    X, y = data
    idx = [5, 0, 5, 39]
    view = select(Items(X, y), idx)
    np.testing.assert_array_equal(np.asarray(as_inputs(view)), X[idx])
    np.testing.assert_array_equal(targets(view), y[idx])


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda ds: every_kth(ds, 0), "'k' parameter of every_kth"),
        (lambda ds: every_kth(ds, 3, 3), "'start' parameter of every_kth"),
        (lambda ds: select(ds, [0, N]), "'indices' parameter of select"),
        (lambda ds: select(ds, [0.5]), "'indices' parameter of select"),
        (lambda ds: every_kth(np.zeros((3, 2)), 2), "map-style torch Dataset"),
    ],
)
def test_selection_rejects_bad_parameters(data, call, match):
    with pytest.raises(ValueError, match=match):
        call(Items(*data))


def test_source_slices_and_index_arrays_are_lazy_views(data):
    X, y = data
    ds = Items(X, y)
    src = as_inputs(ds, chunk_size=4)
    assert (len(src), src.shape, src.dtype, src.ndim) == (N, (N, *SHAPE), np.float32, 4)
    reads = len(ds.reads)  # the first item, for the shape
    view = src[3:30][np.array([0, 5, 9])]
    assert isinstance(view, InputSource) and view.shape == (3, *SHAPE)
    assert len(ds.reads) == reads
    np.testing.assert_array_equal(np.asarray(view), X[3:30][[0, 5, 9]])
    np.testing.assert_array_equal(src[7], X[7])
    mask = np.arange(N) % 4 == 1
    np.testing.assert_array_equal(np.asarray(src[mask]), X[mask])
    chunks = list(src.iter_chunks())
    assert [start for start, _ in chunks] == list(range(0, N, 4))
    np.testing.assert_array_equal(np.concatenate([c for _, c in chunks]), X)


# -- results identical to the in-memory path ------------------------------
@pytest.mark.parametrize("form", ["x", "x,", "xy"])
@pytest.mark.parametrize("smoothing", ["hard", "soft"])
def test_certify_predict_identical_to_arrays(model, data, form, smoothing):
    X, y = data
    clf = _clf(model, data, smoothing=smoothing)
    src = as_inputs(every_kth(Items(X, y, form), 3), chunk_size=5)
    _same_result(clf.certify(src), clf.certify(X[::3]))
    np.testing.assert_array_equal(clf.predict(src), clf.predict(X[::3]))
    np.testing.assert_array_equal(clf.predict_proba(src), clf.predict_proba(X[::3]))


@pytest.mark.parametrize("smoothing", ["hard", "soft"])
def test_dataloader_identical_to_arrays(model, data, smoothing):
    X, y = data
    clf = _clf(model, data, smoothing=smoothing)
    ds = TensorDataset(torch.from_numpy(X), torch.from_numpy(y))
    loader = DataLoader(ds, batch_size=6)  # 6 does not divide the chunks
    _same_result(clf.certify(loader), clf.certify(X))
    np.testing.assert_array_equal(clf.predict(loader), clf.predict(X))
    np.testing.assert_array_equal(targets(loader), y)
    dropped = DataLoader(ds, batch_size=16, drop_last=True)  # 32 of the 40 items
    np.testing.assert_array_equal(clf.predict_proba(dropped), clf.predict_proba(X[:32]))
    one_by_one = DataLoader(ds, batch_size=None)
    assert clf.score(one_by_one, y) == clf.score(X, y)


def test_dataset_without_the_wrapper_and_parallel_chunks(model, data):
    X, y = data
    clf = _clf(model, data, n_jobs=2)
    # a Dataset passed directly; two workers (threads) share its chunks
    from joblib import parallel_config

    with parallel_config(backend="threading"):
        _same_result(clf.certify(Items(X, y)), clf.certify(X))


@pytest.mark.parametrize("smoothing", ["hard", "soft"])
def test_sequential_identical_to_arrays(model, data, smoothing):
    X, y = data
    seq = SequentialCertifier(
        _clf(model, data, smoothing=smoothing), n_max=3000, target_radius=0.2
    )
    a = seq.certify(X)
    b = seq.certify(as_inputs(Items(X, y), chunk_size=6))
    _same_result(a, b)
    np.testing.assert_array_equal(a.n_draws, b.n_draws)
    np.testing.assert_array_equal(a.decisions, b.decisions)


@pytest.mark.parametrize(
    "attack",
    [SmoothAdvPGD(n_steps=3, n_noise=4, random_state=0), PGD(n_steps=3)],
    ids=["smoothadv", "pgd"],
)
def test_gap_report_identical_to_arrays(model, data, attack):
    X, y = data
    clf = _clf(model, data, batch_size=12)  # SmoothAdv attacks 3 inputs at a time
    ds = Items(X, y)
    a = gap_report(clf, X, y, radii=[0.1, 0.4], attack=attack)
    b = gap_report(clf, as_inputs(ds, chunk_size=7), targets(ds), radii=[0.1, 0.4],
                   attack=attack)  # fmt: skip
    np.testing.assert_array_equal(a.empirical, b.empirical)
    for key in a.certified:
        np.testing.assert_array_equal(a.certified[key], b.certified[key])
    # the adversarial copies themselves, chunk by chunk, equal the whole
    adv = attack.generate(clf, X, y, radius=0.4)
    np.testing.assert_array_equal(attack.generate(clf, ds, y, radius=0.4), adv)


def test_checkpoint_fingerprint_streams_to_the_array_digest(model, data, tmp_path):
    X, y = data
    assert fingerprint_array(as_inputs(Items(X, y), chunk_size=3)) == (
        fingerprint_array(X)
    )
    clf = _clf(model, data)
    path = tmp_path / "run.npz"
    first = clf.certify(X, checkpoint=path)
    # the checkpoint of the array run is that of the data set: reused as is
    _same_result(clf.certify(as_inputs(Items(X, y), chunk_size=9), checkpoint=path),
                 first)  # fmt: skip


# -- memory and reads -----------------------------------------------------
@pytest.fixture
def loaded_rows(monkeypatch):
    """Rows of inputs loaded by sources and still alive: now and at the peak."""
    state = {"alive": 0, "peak": 0}
    load = InputSource._load

    def release(n):
        state["alive"] -= n

    def counting_load(self):
        out = load(self)
        state["alive"] += len(out)
        state["peak"] = max(state["peak"], state["alive"])
        weakref.finalize(out, release, len(out))
        return out

    monkeypatch.setattr(InputSource, "_load", counting_load)
    return state


@pytest.mark.parametrize("smoothing", ["hard", "soft"])
def test_reads_only_selected_items_and_holds_a_chunk(
    model, data, smoothing, loaded_rows
):
    X, y = data
    big = np.concatenate([X] * 5)  # 200 items, every 10th is certified
    ds = Items(big, np.concatenate([y] * 5), tensors=False)
    batch = 8  # the layout probe of 4-D inputs reads one batch of inputs
    clf = _clf(model, data, smoothing=smoothing, batch_size=batch)
    chunk = 4
    src = as_inputs(every_kth(ds, 10), chunk_size=chunk)
    for method in (
        clf.certify,
        clf.predict,
        SequentialCertifier(clf, n_max=1000).certify,
    ):
        ds.reads.clear()
        method(src)
        assert set(ds.reads) == set(range(0, 200, 10))
        # the items themselves: one or two alive at a time (copied into the chunk)
        assert ds.peak <= 2 and ds.alive == 0
        # the loaded inputs: the chunk in use and the next one (or the probe)
        assert loaded_rows["peak"] <= max(2 * chunk, batch) < 20
        assert loaded_rows["alive"] == 0


# -- refusals and bad items -----------------------------------------------
def test_shuffled_or_sampled_loaders_are_refused(model, data):
    X, _ = data
    clf = _clf(model, data)
    ds = TensorDataset(torch.from_numpy(X))
    with pytest.raises(ValueError, match="shuffle=True"):
        clf.certify(DataLoader(ds, batch_size=4, shuffle=True))
    with pytest.raises(ValueError, match="custom sampler"):
        clf.predict(DataLoader(ds, sampler=SubsetRandomSampler([0, 1])))

    class Stream(IterableDataset):
        def __iter__(self):
            return iter(X)

    with pytest.raises(ValueError, match="IterableDataset"):
        clf.predict(Stream())
    with pytest.raises(ValueError, match="IterableDataset"):
        clf.predict(DataLoader(Stream()))
    with pytest.raises(ValueError, match="empty data set"):
        clf.predict(TensorDataset(torch.zeros((0, *SHAPE))))


def test_bad_items_are_named(model, data):
    X, y = data
    clf = _clf(model, data)
    bad = X.copy()
    bad[7, 0, 1, 2] = np.nan
    with pytest.raises(ValueError, match="item 7 of the data set is not finite"):
        clf.certify(as_inputs(Items(bad, y), chunk_size=5))
    # through a selection: its own position and the underlying index
    with pytest.raises(
        ValueError,
        match=r"item 1 of the data set \(index 7 of the underlying data set\)",
    ):
        clf.predict(select(Items(bad, y), [0, 7]))
    bad = X.copy()
    bad[-1] = np.inf
    with pytest.raises(ValueError, match="item 39 of the data set is not finite"):
        clf.predict(DataLoader(TensorDataset(torch.from_numpy(bad)), batch_size=8))

    class Ragged(Items):
        def __getitem__(self, i):
            x, t = super().__getitem__(i)
            return (x[:, :3] if i == 5 else x), t

    with pytest.raises(ValueError, match=r"Item 5 of the data set has an input of "):
        clf.predict(Ragged(X, y))
    with pytest.raises(ValueError, match="fitted with inputs of shape"):
        clf.certify(TensorDataset(torch.zeros((3, 2, 4, 4))))
    with pytest.raises(ValueError, match="holds no target"):
        targets(Items(X, form="x,"))
    with pytest.raises(ValueError, match="is a dict"):
        clf.predict(_DictItems())
    with pytest.raises(ValueError, match="'chunk_size' parameter"):
        as_inputs(Items(X, y), chunk_size=0)


class _DictItems(Dataset):
    def __len__(self):
        return 2

    def __getitem__(self, i):
        return {"x": torch.zeros(SHAPE)}
