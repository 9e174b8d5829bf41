"""Tests of the Monte-Carlo engine (smoothlearn/sampling.py)."""

import numpy as np
import pytest
import torch
from scipy.stats import binomtest, norm

from smoothlearn.models import _BaseAdapter, _SklearnAdapter, _TorchAdapter
from smoothlearn.sampling import (
    _BLOCK_SIZE,
    _input_keys,
    _root_seed,
    _stream_seed,
    sample_statistics,
)


def _images(rng, n=5):
    return rng.normal(size=(n, 1, 3, 3)).astype(np.float32)


@pytest.fixture
def conv_adapter():
    torch.manual_seed(0)
    module = torch.nn.Sequential(
        torch.nn.Conv2d(1, 2, 2), torch.nn.Flatten(), torch.nn.Linear(8, 4)
    )
    return _TorchAdapter(module, 4)


@pytest.mark.parametrize("n_draws", [1, 37, _BLOCK_SIZE + 300])
def test_identical_statistics_whatever_batch_size(conv_adapter, rng, n_draws):
    """Bit-identical counts for any batch size, including blocks split by batches."""
    X = _images(rng, 3)
    ref, _ = sample_statistics(
        conv_adapter, X, n_draws, 0.5, stage=1, seed=11, batch_size=1000
    )
    batch_sizes = [7, 64, _BLOCK_SIZE - 1, 3 * n_draws + 1]
    if n_draws < 100:
        batch_sizes.append(1)
    for batch_size in batch_sizes:
        counts, counts_sq = sample_statistics(
            conv_adapter, X, n_draws, 0.5, stage=1, seed=11, batch_size=batch_size
        )
        np.testing.assert_array_equal(counts, ref)
        np.testing.assert_array_equal(counts_sq, ref)
    np.testing.assert_array_equal(ref.sum(axis=1), n_draws)
    assert ref.dtype == np.int64 and ref.shape == (3, 4)


def test_chunks_with_offsets_equal_the_whole(conv_adapter, rng):
    X = _images(rng, 6)
    whole, _ = sample_statistics(conv_adapter, X, 1500, 0.3, stage=0, seed=5)
    parts = [
        sample_statistics(
            conv_adapter,
            X[a:b],
            1500,
            0.3,
            stage=0,
            seed=5,
            batch_size=333,
            input_offset=a,
        )[0]
        for a, b in [(0, 1), (1, 4), (4, 6)]
    ]
    np.testing.assert_array_equal(np.vstack(parts), whole)


def test_noise_is_keyed_by_the_input_not_its_position(conv_adapter, rng):
    """A permutation, a subset or a duplicate row: the same statistics per input."""
    X = _images(rng, 6)
    whole, _ = sample_statistics(conv_adapter, X, 700, 0.4, stage=1, seed=11)
    perm = rng.permutation(6)
    permuted, _ = sample_statistics(
        conv_adapter, X[perm], 700, 0.4, stage=1, seed=11, batch_size=97
    )
    np.testing.assert_array_equal(permuted, whole[perm])
    for i in range(6):
        alone, _ = sample_statistics(conv_adapter, X[[i]], 700, 0.4, stage=1, seed=11)
        np.testing.assert_array_equal(alone[0], whole[i])
    twice, _ = sample_statistics(conv_adapter, X[[2, 2]], 700, 0.4, stage=1, seed=11)
    np.testing.assert_array_equal(twice[0], twice[1])
    # the key is the values, not the dtype they arrive in
    as64, _ = sample_statistics(
        conv_adapter, X.astype(np.float64), 700, 0.4, stage=1, seed=11
    )
    np.testing.assert_array_equal(as64, whole)


def test_input_keys_separate_nearby_inputs(rng):
    X = rng.normal(size=(1000, 5))
    X[1] = X[0]
    X[2] = np.nextafter(X[0], np.inf)  # one ulp away: another stream
    keys = _input_keys(X)
    assert keys.dtype == np.uint64
    assert keys[0] == keys[1] != keys[2]
    assert len(np.unique(keys)) == 999


def test_stages_and_seeds_give_different_noise(conv_adapter, rng):
    X = _images(rng, 3)
    runs = {
        (stage, seed): sample_statistics(
            conv_adapter, X, 2000, 1.0, stage=stage, seed=seed
        )[0]
        for stage in (0, 1)
        for seed in (0, 1)
    }
    keys = list(runs)
    for a in range(len(keys)):
        for b in range(a + 1, len(keys)):
            assert not np.array_equal(runs[keys[a]], runs[keys[b]])


def test_stream_seeds_differ_per_stage_in_low_bits():
    for index in range(50):
        seeds = [_stream_seed(123, index, s) for s in range(4)]
        low32 = {s & 0xFFFFFFFF for s in seeds}
        assert len(low32) == 4  # CPU generators keep 32 bits: still distinct
        assert all(0 <= s < 2**64 for s in seeds)


def test_root_seed_follows_random_state():
    assert _root_seed(3) == _root_seed(3)
    assert _root_seed(3) != _root_seed(4)
    rs = np.random.RandomState(0)
    assert _root_seed(rs) != _root_seed(rs)  # a RandomState advances
    assert 0 <= _root_seed(None) < 2**64


def test_counts_follow_the_smoothed_probability(linear2):
    """Counts of a linear binary model are Binomial(n, Phi(margin / sigma)).

    For f(x) = 1[w.x + b > 0], P(f(x + d) = 1) = Phi((w.x + b) / (sigma ||w||)).
    A two-sided exact binomial test per input at level 1e-4 over 6 inputs:
    false-alarm rate <= 6e-4.
    """
    w, b, sigma = np.array([1.0, 2.0, 0.0]), -0.5, 0.7
    X = np.array(
        [
            [0.0, 0.0, 0.0],
            [0.5, 0.0, 1.0],
            [1.0, 0.3, -2.0],
            [-1.0, 0.0, 0.0],
            [0.2, 0.2, 5.0],
            [0.0, 0.25, 0.0],
        ],
        dtype=np.float32,
    )
    n = 20_000
    counts, _ = sample_statistics(
        _TorchAdapter(linear2, 2), X, n, sigma, stage=1, seed=2024
    )
    p = norm.cdf((X @ w + b) / (sigma * np.linalg.norm(w)))
    for k, p_true in zip(counts[:, 1], p, strict=True):
        assert binomtest(int(k), n, p_true).pvalue > 1e-4


def test_noise_is_gaussian_with_sigma(rng):
    """The noisy batches are x + N(0, sigma^2 I): check the mean and variance.

    With 40,000 coordinates the sample mean's sd is sigma/200 and the sample
    variance's relative sd about 0.7%: tolerances of 6 sd.
    """
    seen = []

    class Recorder(_BaseAdapter):
        n_classes = 1

        def predict_classes(self, batch):
            seen.append(batch.clone())
            return torch.zeros(batch.shape[0], dtype=torch.int64)

    x = np.full((1, 4), 3.0, dtype=np.float32)
    sample_statistics(Recorder(), x, 10_000, 0.25, stage=1, seed=0, batch_size=999)
    noisy = torch.cat(seen).numpy()
    assert noisy.shape == (10_000, 4)
    assert abs(noisy.mean() - 3.0) < 6 * 0.25 / 200
    assert abs(noisy.var() / 0.0625 - 1) < 6 * 0.0071


def test_one_dimensional_inputs_and_sklearn_adapter(rng):
    from sklearn.linear_model import LogisticRegression

    X = rng.normal(size=(40, 5))
    y = (X[:, 0] > 0).astype(int)
    clf = LogisticRegression().fit(X, y)
    adapter = _SklearnAdapter(clf, clf.classes_)
    a, _ = sample_statistics(adapter, X[:4], 300, 0.2, stage=2, seed=1, batch_size=50)
    b, _ = sample_statistics(adapter, X[:4], 300, 0.2, stage=2, seed=1, batch_size=7)
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(a.sum(1), 300)


def test_soft_scores_give_sums_and_sums_of_squares(conv_adapter, rng):
    X = _images(rng, 3)

    def softmax(s):
        return torch.softmax(s, dim=1)

    sums, sums_sq = sample_statistics(
        conv_adapter, X, 500, 0.5, stage=1, seed=3, score=softmax, batch_size=64
    )
    assert sums.dtype == np.float64
    np.testing.assert_allclose(sums.sum(1), 500, rtol=1e-6)
    assert np.all(sums_sq <= sums + 1e-9) and np.all(sums**2 / 500 <= sums_sq + 1e-9)
    again, _ = sample_statistics(
        conv_adapter, X, 500, 0.5, stage=1, seed=3, score=softmax, batch_size=1000
    )
    np.testing.assert_array_equal(sums, again)  # CPU index_add_ is sequential


def test_progress_reports_every_input(conv_adapter, rng):
    done = []
    sample_statistics(
        conv_adapter,
        _images(rng, 7),
        150,
        0.5,
        stage=1,
        seed=0,
        batch_size=100,
        progress=done.append,
    )
    assert sum(done) == 7


def test_no_inputs_gives_empty_statistics(conv_adapter):
    counts, sq = sample_statistics(
        conv_adapter, np.zeros((0, 1, 3, 3), np.float32), 10, 0.5, stage=1, seed=0
    )
    assert counts.shape == (0, 4) and sq.shape == (0, 4)


def test_model_train_state_is_restored(rng):
    module = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(9, 2))
    module.train()
    sample_statistics(
        _TorchAdapter(module, 2), _images(rng, 2), 10, 0.5, stage=0, seed=0
    )
    assert module.training


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(n_draws=0), "n_draws"),
        (dict(batch_size=0), "batch_size"),
        (dict(score="soft"), "score"),
    ],
)
def test_bad_arguments(conv_adapter, rng, kwargs, match):
    args = dict(n_draws=10, batch_size=8)
    args.update(kwargs)
    n_draws = args.pop("n_draws")
    with pytest.raises(ValueError, match=match):
        sample_statistics(
            conv_adapter, _images(rng, 1), n_draws, 0.5, stage=0, seed=0, **args
        )


def test_class_index_out_of_range_is_an_error(rng):
    class Bad(_BaseAdapter):
        n_classes = 2

        def predict_classes(self, batch):
            return torch.full((batch.shape[0],), 5, dtype=torch.int64)

    with pytest.raises(ValueError, match="outside"):
        sample_statistics(Bad(), _images(rng, 1), 10, 0.5, stage=0, seed=0)
