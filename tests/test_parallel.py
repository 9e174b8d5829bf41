"""Parallel certification (smoothlearn/_parallel.py): identical to a serial run.

Every input draws its noise from a stream seeded by ``(seed, position,
stage)``, so the statistics must be bit-identical whatever the chunking, the
number of workers and the joblib backend (sequential, loky processes, a Dask
cluster of processes).
"""

import functools
import inspect
import json
import warnings

import numpy as np
import pytest
import torch
from joblib import parallel_config

from smoothlearn import SmoothedClassifier
from smoothlearn._parallel import _default_chunk_size, gather_statistics
from smoothlearn.models import _SklearnAdapter, _TorchAdapter
from smoothlearn.sampling import (
    STAGE_ESTIMATION,
    STAGE_SELECTION,
    sample_statistics,
)

# A [0, 1]-valued score map that pickles by reference (loky, Dask).
SOFTMAX = functools.partial(torch.softmax, dim=1)

WIRED = "checkpoint" in inspect.signature(SmoothedClassifier.certify).parameters
needs_wiring = pytest.mark.skipif(
    not WIRED,
    reason="SmoothedClassifier.certify is not wired to gather_statistics yet "
    "(no 'checkpoint' argument): the lead wires it (see _parallel.py).",
)


@pytest.fixture
def conv_adapter():
    torch.manual_seed(0)
    module = torch.nn.Sequential(
        torch.nn.Conv2d(1, 2, 2), torch.nn.Flatten(), torch.nn.Linear(8, 4)
    )
    return _TorchAdapter(module, 4)


@pytest.fixture
def images():
    return np.random.default_rng(1).normal(size=(11, 1, 3, 3)).astype(np.float32)


STAGES = [(STAGE_SELECTION, 40, "hard"), (STAGE_ESTIMATION, 700, "hard")]


def _serial(adapter, X, stages, sigma=0.5, seed=3):
    """The reference: one sample_statistics call per stage over all of X."""
    return {
        stage: sample_statistics(
            adapter, X, n_draws, sigma, stage=stage, seed=seed, score=score
        )
        for stage, n_draws, score, *_ in stages
    }


def _assert_same(a, b):
    assert a.keys() == b.keys()
    for stage in a:
        for x, y in zip(a[stage], b[stage], strict=True):
            assert x.dtype == y.dtype and x.shape == y.shape
            np.testing.assert_array_equal(x, y)


@pytest.mark.parametrize("chunk_size", [None, 1, 3, 5, 11, 100])
def test_chunking_does_not_change_the_statistics(conv_adapter, images, chunk_size):
    ref = _serial(conv_adapter, images, STAGES)
    out = gather_statistics(
        conv_adapter,
        images,
        stages=STAGES,
        sigma=0.5,
        seed=3,
        batch_size=97,
        chunk_size=chunk_size,
    )
    _assert_same(out, ref)
    assert out[STAGE_ESTIMATION][0].sum(axis=1).tolist() == [700] * 11


def test_soft_scores_chunked_equal_serial(conv_adapter, images):
    stages = [(STAGE_SELECTION, 30, "hard"), (STAGE_ESTIMATION, 300, SOFTMAX)]
    ref = _serial(conv_adapter, images, stages)
    out = gather_statistics(
        conv_adapter, images, stages=stages, sigma=0.5, seed=3, chunk_size=4
    )
    _assert_same(out, ref)
    sums, sums_sq = out[STAGE_ESTIMATION]
    assert sums.dtype == np.float64 and not np.array_equal(sums, sums_sq)


def test_progress_counts_every_input_once(conv_adapter, images):
    seen = []
    gather_statistics(
        conv_adapter,
        images,
        stages=STAGES,
        sigma=0.5,
        seed=3,
        chunk_size=4,
        progress=seen.append,
    )
    assert sum(seen) == len(images)


def test_empty_input(conv_adapter):
    out = gather_statistics(
        conv_adapter,
        np.zeros((0, 1, 3, 3), np.float32),
        stages=STAGES,
        sigma=0.5,
        seed=3,
    )
    assert out[STAGE_ESTIMATION][0].shape == (0, 4)


def test_default_chunks():
    # Serial without a checkpoint: one chunk, exactly the serial engine's work.
    assert _default_chunk_size(1000, 100_100, 1, checkpoint=False) == 1000
    # Parallel: about four chunks per worker.
    assert _default_chunk_size(1000, 100, 2, checkpoint=False) == 125
    # Checkpointed: at most 2**20 noisy samples per chunk.
    assert _default_chunk_size(1000, 100_100, 1, checkpoint=True) == 10
    assert _default_chunk_size(3, 10**7, 8, checkpoint=True) == 1


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"stages": []}, "at least one stage"),
        ({"stages": "hard"}, "'stages'"),
        ({"stages": [(1, 10)]}, "'stages'"),
        ({"stages": [(1, 10, "soft")]}, "'score'"),
        ({"stages": [(1, 0, "hard")]}, "'n_draws'"),
        ({"stages": [(1, 2.5, "hard")]}, "'n_draws'"),
        ({"stages": [(1, True, "hard")]}, "'n_draws'"),
        ({"stages": [(7, 10, "hard")]}, "'stage'"),
        ({"stages": [(1, 10, "hard"), (1, 5, "hard")]}, "twice"),
        ({"stages": [(1, 10, SOFTMAX)], "checkpoint": "x.npz"}, "score_key"),
        ({"chunk_size": 0}, "'chunk_size'"),
        ({"chunk_size": 1.5}, "'chunk_size'"),
        ({"checkpoint": 3}, "'checkpoint'"),
    ],
)
def test_bad_arguments(conv_adapter, images, kwargs, match):
    params = {"stages": STAGES, "sigma": 0.5, "seed": 0, **kwargs}
    with pytest.raises(ValueError, match=match):
        gather_statistics(conv_adapter, images, **params)


@pytest.mark.slow
def test_loky_two_workers_identical_to_serial(conv_adapter, images):
    """n_jobs=2 (loky processes): bit-identical hard and soft statistics."""
    stages = [(STAGE_SELECTION, 40, "hard"), (STAGE_ESTIMATION, 700, SOFTMAX)]
    ref = _serial(conv_adapter, images, stages)
    seen = []
    out = gather_statistics(
        conv_adapter,
        images,
        stages=stages,
        sigma=0.5,
        seed=3,
        batch_size=64,
        n_jobs=2,
        progress=seen.append,
    )
    _assert_same(out, ref)
    assert sum(seen) == len(images) and len(seen) > 1  # several chunks


@pytest.mark.slow
def test_loky_sklearn_model_identical_to_serial():
    """A scikit-learn base model pickles to the workers too."""
    from sklearn.linear_model import LogisticRegression

    gen = np.random.default_rng(0)
    X = gen.normal(size=(60, 3))
    y = (X[:, 0] > 0).astype(int) + (X[:, 1] > 1)
    adapter = _SklearnAdapter(LogisticRegression().fit(X, y), np.unique(y))
    ref = _serial(adapter, X[:9], STAGES)
    out = gather_statistics(
        adapter, X[:9], stages=STAGES, sigma=0.5, seed=3, n_jobs=2, chunk_size=2
    )
    _assert_same(out, ref)


@pytest.mark.slow
def test_dask_local_cluster_identical_to_serial(conv_adapter, images, tmp_path):
    """A real distributed.LocalCluster (2 worker processes) gives the serial result.

    Selected by ``joblib.parallel_config(backend="dask")`` alone: n_jobs stays
    None, as a user would leave it.
    """
    import distributed  # the test extra installs dask[distributed]

    stages = [(STAGE_SELECTION, 40, "hard"), (STAGE_ESTIMATION, 700, SOFTMAX)]
    ref = _serial(conv_adapter, images, stages)
    with warnings.catch_warnings():
        # distributed may warn while it starts or stops a cluster on a busy
        # machine (e.g. a slow event loop, or a worker killed at shutdown);
        # these concern the cluster, not the computation checked here.
        warnings.simplefilter("ignore")
        with (
            distributed.LocalCluster(
                n_workers=2,
                processes=True,
                threads_per_worker=1,
                dashboard_address=None,
            ) as cluster,
            distributed.Client(cluster) as client,
            parallel_config(backend="dask"),
        ):
            out = gather_statistics(
                conv_adapter, images, stages=stages, sigma=0.5, seed=3, batch_size=64
            )
            ran_on = set(client.run(lambda: True))
            # Checkpointed: rounds on the cluster, inputs stored part-way.
            saved = gather_statistics(
                conv_adapter, images, stages=LONG_STAGES, sigma=0.5, seed=3,
                batch_size=64, checkpoint=tmp_path / "run.ckpt",
                checkpoint_every=1e-6,
            )  # fmt: skip
    _assert_same(out, ref)
    assert len(ran_on) == 2
    _assert_same(saved, _serial(conv_adapter, images, LONG_STAGES))


# Inputs longer than a noise block (1024 draws): run in segments when flushed
# often.
LONG_STAGES = [
    (STAGE_SELECTION, 40, "hard"),
    (STAGE_ESTIMATION, 2500, SOFTMAX, {"map": "softmax"}),
]


@pytest.mark.parametrize("backend", ["threading", "loky", "devices"])
def test_checkpointed_rounds_identical_to_serial(
    conv_adapter, images, tmp_path, monkeypatch, backend
):
    """In parallel with a checkpoint, runs flush by rounds; same statistics.

    checkpoint_every tiny: every input runs in segments of one noise block,
    two inputs in progress at once (one per worker), each stored part-way.
    """
    import smoothlearn._checkpoint as checkpoint_module
    from smoothlearn.models import _replicas

    partial_sets = []
    real = checkpoint_module.atomic_savez

    def spy(path, arrays):
        meta = json.loads(str(arrays["meta"]))
        partial_sets.append([p["chunk"] for p in meta.get("partials", [])])
        real(path, arrays)

    monkeypatch.setattr(checkpoint_module, "atomic_savez", spy)
    # Units sized by checkpoint_every alone, not stretched by slow writes.
    monkeypatch.setattr("smoothlearn._parallel._MAX_WRITE_SHARE", 0)
    kwargs = dict(stages=LONG_STAGES, sigma=0.5, seed=3, batch_size=64)
    kwargs.update(checkpoint=tmp_path / "run.ckpt", checkpoint_every=1e-6)
    if backend == "devices":
        out = gather_statistics(
            _replicas(conv_adapter, ["cpu", "cpu"]), images, **kwargs
        )
    else:
        with parallel_config(backend=backend, n_jobs=2):
            out = gather_statistics(conv_adapter, images, **kwargs)
    _assert_same(out, _serial(conv_adapter, images, LONG_STAGES))
    assert [0, 1] in partial_sets and [8, 9] in partial_sets
    assert partial_sets[-1] == []


# ----------------------------------------------------------------------
# Through SmoothedClassifier, once certify is wired to gather_statistics.
# ----------------------------------------------------------------------
@needs_wiring
@pytest.mark.slow
def test_smoothed_classifier_n_jobs_identical(linear3):
    X = np.random.default_rng(2).normal(size=(9, 2)).astype(np.float32)
    y = np.zeros(9, dtype=int)
    params = dict(sigma=0.5, n0=50, n=2000, random_state=0, batch_size=128)
    serial = SmoothedClassifier(linear3, **params).fit(X, y)
    parallel = SmoothedClassifier(linear3, n_jobs=2, **params).fit(X, y)
    assert parallel.certify(X) == serial.certify(X)
    np.testing.assert_array_equal(parallel.predict(X), serial.predict(X))


# ----------------------------------------------------------------------
# Several devices: one worker thread per adapter, identical to one device
# ----------------------------------------------------------------------
@pytest.mark.parametrize("chunk_size", [None, 1, 4])
def test_device_list_identical_to_one_device(conv_adapter, images, chunk_size):
    """Two CPU "devices" (the adapter and its deep copy) give the serial result."""
    from smoothlearn.models import _replicas

    adapters = _replicas(conv_adapter, ["cpu", "cpu"])
    assert adapters[0] is conv_adapter and adapters[1].module is not conv_adapter.module
    for a, b in zip(
        conv_adapter.module.state_dict().values(),
        adapters[1].module.state_dict().values(),
        strict=True,
    ):
        assert torch.equal(a, b) and a.data_ptr() != b.data_ptr()
    stats = gather_statistics(
        adapters, images, stages=STAGES, sigma=0.5, seed=3, chunk_size=chunk_size
    )
    _assert_same(stats, _serial(conv_adapter, images, STAGES))


def test_device_list_uses_every_device_and_ignores_the_backend(images):
    """Every adapter takes chunks, each in one thread at a time, even under a
    process-based parallel_config (the devices' models stay in this process)."""
    import threading

    from smoothlearn.models import _replicas

    class Counting(torch.nn.Module):
        def __init__(self):
            super().__init__()
            torch.manual_seed(0)
            self.linear = torch.nn.Linear(9, 4)
            self.busy = threading.Lock()
            self.calls = 0

        def forward(self, x):
            assert self.busy.acquire(blocking=False), "a device shared by two chunks"
            try:
                self.calls += 1
                return self.linear(x.flatten(1))
            finally:
                self.busy.release()

        def __deepcopy__(self, memo):
            copy = Counting()
            copy.linear.load_state_dict(self.linear.state_dict())
            return copy

    adapter = _TorchAdapter(Counting(), 4)
    adapters = _replicas(adapter, ["cpu", "cpu", "cpu"])
    X = np.random.default_rng(0).normal(size=(60, 1, 3, 3)).astype(np.float32)
    with parallel_config(backend="loky", n_jobs=2):
        stats = gather_statistics(
            adapters, X, stages=STAGES, sigma=0.5, seed=3, chunk_size=1
        )
    plain = torch.nn.Sequential(torch.nn.Flatten(), adapter.module.linear)
    _assert_same(stats, _serial(_TorchAdapter(plain, 4), X, STAGES))
    assert all(a.module.calls > 0 for a in adapters)


def test_device_list_resolves_auto_layout_once(images, monkeypatch):
    from smoothlearn import models

    calls = []

    def probe(self, batch, total_rows):
        calls.append((self.module, total_rows))
        return "channels_last"

    monkeypatch.setattr(models._TorchAdapter, "_probe_memory_format", probe)
    torch.manual_seed(0)
    module = torch.nn.Sequential(
        torch.nn.Conv2d(3, 2, 2), torch.nn.Flatten(), torch.nn.Linear(8, 4)
    )
    adapter = _TorchAdapter(module, 4, memory_format="auto")
    adapters = models._replicas(adapter, ["cpu", "cpu"])
    X = np.random.default_rng(0).normal(size=(8, 3, 3, 3)).astype(np.float32)
    stats = gather_statistics(adapters, X, stages=STAGES, sigma=0.5, seed=3)
    assert calls == [(module, 8 * 740)]
    assert [a.memory_format for a in adapters] == ["channels_last"] * 2
    reference = _TorchAdapter(module, 4, memory_format="channels_last")
    _assert_same(stats, _serial(reference, X, STAGES))


def test_device_list_bad_arguments(conv_adapter, images):
    from smoothlearn.models import _replicas

    with pytest.raises(ValueError, match=r"'n_jobs'.*None or 2"):
        gather_statistics(
            [conv_adapter, conv_adapter],
            images,
            stages=STAGES,
            sigma=0.5,
            seed=0,
            n_jobs=3,
        )
    with pytest.raises(ValueError, match="'adapter'"):
        gather_statistics([], images, stages=STAGES, sigma=0.5, seed=0)
    with pytest.raises(ValueError, match=r"'device'.*one type"):
        _replicas(conv_adapter, ["cpu", "meta"])
    sk = _SklearnAdapter(None, np.arange(2))
    assert _replicas(sk, ["cpu", "cpu"]) == [sk, sk]  # stateless predict, shared
