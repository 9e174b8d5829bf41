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


def test_inputs_uploaded_in_windows_give_the_same_counts(conv_adapter, rng):
    """Many inputs, few draws: the clean inputs reach the device in several
    windows (6 inputs per window at batch_size 5), and each input keeps its
    counts, as when it is sampled alone."""
    X = _images(rng, 40)
    small, _ = sample_statistics(conv_adapter, X, 3, 0.5, stage=1, seed=4, batch_size=5)
    large, _ = sample_statistics(conv_adapter, X, 3, 0.5, stage=1, seed=4)
    np.testing.assert_array_equal(small, large)
    for i in (0, 17, 39):
        alone, _ = sample_statistics(conv_adapter, X[[i]], 3, 0.5, stage=1, seed=4)
        np.testing.assert_array_equal(alone[0], small[i])


def test_class_indices_of_a_wrong_shape_are_an_error(rng):
    class Bad(_BaseAdapter):
        n_classes = 2

        def predict_classes(self, batch):
            return torch.zeros((batch.shape[0], 2), dtype=torch.int64)

    with pytest.raises(ValueError, match="class indices of shape"):
        sample_statistics(Bad(), _images(rng, 1), 10, 0.5, stage=0, seed=0)


# ---------------------------------------------------------------------------
# Memory layout and reduced precision (the adapter runs the model; the noise
# is the engine's and must not change)
# ---------------------------------------------------------------------------
class _Recording(torch.nn.Module):
    """A small CNN that records its input's values, layout and autocast state."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.conv = torch.nn.Conv2d(3, 4, 3)
        self.head = torch.nn.Linear(4, 5)
        self.seen = []

    def forward(self, x):
        self.seen.append(
            (
                x.clone(),
                x.is_contiguous(memory_format=torch.channels_last),
                x.is_contiguous(),
                torch.is_autocast_enabled("cpu"),
                torch.get_autocast_dtype("cpu"),
            )
        )
        return self.logits(x)

    @torch.inference_mode()
    def logits(self, x):
        return self.head(torch.relu(self.conv(x)).amax(dim=(2, 3)))


def _rgb(rng, n=4):
    return rng.random((n, 3, 6, 6), dtype=np.float32)


def test_channels_last_changes_the_layout_not_the_noise(rng):
    """The module sees channels_last batches with the very same values, and
    the counts are identical: on this CNN the two layouts give bit-identical
    logits on CPU (checked on the batches themselves)."""
    X = _rgb(rng)
    runs = {}
    for layout in ("contiguous", "channels_last"):
        module = _Recording()
        adapter = _TorchAdapter(module, 5, memory_format=layout)
        counts, _ = sample_statistics(
            adapter, X, 300, 0.5, stage=1, seed=9, batch_size=128
        )
        runs[layout] = (counts, module)
    (c_counts, c_module), (l_counts, l_module) = runs.values()
    assert all(not cl and contiguous for _, cl, contiguous, *_ in c_module.seen)
    assert all(cl and not contiguous for _, cl, contiguous, *_ in l_module.seen)
    for (a, *_), (b, *_) in zip(c_module.seen, l_module.seen, strict=True):
        assert torch.equal(a, b)
        last = b.contiguous(memory_format=torch.channels_last)
        assert torch.equal(c_module.logits(a), c_module.logits(last))  # premise
    np.testing.assert_array_equal(c_counts, l_counts)


def test_channels_last_leaves_other_ranks_alone(conv_adapter, rng):
    X = rng.normal(size=(3, 9)).astype(np.float32)
    module = torch.nn.Linear(9, 4)
    plain, _ = sample_statistics(_TorchAdapter(module, 4), X, 200, 0.5, stage=1, seed=0)
    cl = _TorchAdapter(module, 4, memory_format="channels_last")
    again, _ = sample_statistics(cl, X, 200, 0.5, stage=1, seed=0)
    np.testing.assert_array_equal(plain, again)


def test_auto_layout_is_probed_once_per_module_and_shape(rng, monkeypatch):
    """ "auto" is resolved before the first batch by the probe, whose choice is
    kept for the module and input shape; the probe's noise is never counted."""
    from smoothlearn import models

    calls = []
    real = models._TorchAdapter._probe_memory_format

    def probe(self, batch, total_rows):
        calls.append((*batch.shape, total_rows))
        assert real(self, batch, total_rows) in ("contiguous", "channels_last")
        return "channels_last"

    monkeypatch.setattr(models._TorchAdapter, "_probe_memory_format", probe)
    X = _rgb(rng)
    module = _Recording()
    adapter = _TorchAdapter(module, 5, memory_format="auto")
    counts, _ = sample_statistics(adapter, X, 300, 0.5, stage=1, seed=9, batch_size=128)
    assert calls == [(128, 3, 6, 6, 1200)]
    assert adapter.memory_format == "channels_last"
    assert module.seen[-1][1]  # the counted batches were channels_last
    # a new adapter of the same module: no new probe, same layout
    again = _TorchAdapter(module, 5, memory_format="auto")
    counts2, _ = sample_statistics(again, X, 300, 0.5, stage=1, seed=9)
    assert len(calls) == 1 and again.memory_format == "channels_last"
    explicit = _TorchAdapter(_Recording(), 5, memory_format="channels_last")
    reference, _ = sample_statistics(explicit, X, 300, 0.5, stage=1, seed=9)
    np.testing.assert_array_equal(counts, reference)
    np.testing.assert_array_equal(counts2, reference)
    # another input shape is probed again; a non-image input is never probed
    other = _TorchAdapter(module, 5, memory_format="auto")
    sample_statistics(other, _rgb(rng)[:, :, :5, :5], 10, 0.5, stage=1, seed=9)
    assert calls[-1] == (40, 3, 5, 5, 40)
    flat = _TorchAdapter(torch.nn.Linear(4, 2), 2, memory_format="auto")
    sample_statistics(flat, X[:, 0, 0, :4].copy(), 10, 0.5, stage=1, seed=0)
    assert len(calls) == 2 and flat.memory_format == "contiguous"


def test_the_real_probe_chooses_a_layout(rng):
    module = _Recording()
    adapter = _TorchAdapter(module, 5, memory_format="auto")
    batch = torch.from_numpy(_rgb(rng, 64))
    with torch.inference_mode(), adapter.evaluating():
        chosen = adapter.choose_memory_format(batch)
    assert chosen in ("contiguous", "channels_last")
    assert adapter.memory_format == chosen
    # 4 rows: a warm-up in each layout and a pass that sizes the probe; then
    # at its size (here the whole batch of this cheap model) a warm-up in
    # each layout and 3 interleaved rounds
    layouts = [cl for _, cl, *_ in module.seen]
    rows = [x.shape[0] for x, *_ in module.seen]
    assert layouts == [False, True, False] + [False, True] * 4
    assert rows == [4] * 3 + [64] * 8


def test_a_module_that_fails_in_channels_last_keeps_the_default_layout(rng):
    class Viewing(torch.nn.Module):
        def forward(self, x):
            return x.view(x.shape[0], -1)[:, :5]  # needs the default strides

    adapter = _TorchAdapter(Viewing(), 5, memory_format="auto")
    counts, _ = sample_statistics(adapter, _rgb(rng), 50, 0.5, stage=1, seed=0)
    assert adapter.memory_format == "contiguous" and counts.sum() == 200
    with pytest.raises(RuntimeError, match="view"):
        sample_statistics(
            _TorchAdapter(Viewing(), 5, memory_format="channels_last"),
            _rgb(rng),
            50,
            0.5,
            stage=1,
            seed=0,
        )


def test_bfloat16_runs_the_model_under_autocast(rng):
    """precision="bfloat16": the forward pass runs under CPU autocast, the
    batches (noise included) stay float32 and identical, and the counts are
    those of the module run under autocast by hand."""
    X = _rgb(rng)
    module = _Recording()
    adapter = _TorchAdapter(module, 5, precision="bfloat16")
    counts, _ = sample_statistics(adapter, X, 400, 0.5, stage=1, seed=2, batch_size=100)
    assert all(on and dtype == torch.bfloat16 for *_, on, dtype in module.seen)
    assert all(x.dtype == torch.float32 for x, *_ in module.seen)

    class ByHand(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.inner = _Recording()

        def forward(self, x):
            with torch.autocast("cpu", dtype=torch.bfloat16):
                return self.inner(x).float()

    by_hand = ByHand()
    expected, _ = sample_statistics(
        _TorchAdapter(by_hand, 5), X, 400, 0.5, stage=1, seed=2, batch_size=100
    )
    np.testing.assert_array_equal(counts, expected)
    for (a, *_), (b, *_) in zip(module.seen, by_hand.inner.seen, strict=True):
        assert torch.equal(a, b)
    # the scores come back in the model's dtype, with bfloat16 values
    with torch.inference_mode():
        scores = adapter.predict_scores(torch.from_numpy(X))
    assert scores.dtype == torch.float32
    assert torch.equal(scores, scores.bfloat16().float())


def test_float16_autocast_runs_on_cpu(rng):
    """torch 2.13 runs float16 autocast on CPU (the option is not refused)."""
    module = _Recording()
    adapter = _TorchAdapter(module, 5, precision="float16")
    counts, _ = sample_statistics(adapter, _rgb(rng, 2), 50, 0.5, stage=1, seed=0)
    assert counts.sum() == 100
    assert all(on and dtype == torch.float16 for *_, on, dtype in module.seen)


def test_unsupported_precision_is_a_clear_error(monkeypatch):
    with pytest.raises(ValueError, match=r"'precision'.*float32 model"):
        _TorchAdapter(torch.nn.Linear(2, 2).double(), 2, precision="bfloat16")
    with pytest.raises(ValueError, match="'precision'"):
        _TorchAdapter(torch.nn.Linear(2, 2), 2, precision="float8")
    with pytest.raises(ValueError, match="'memory_format'"):
        _TorchAdapter(torch.nn.Linear(2, 2), 2, memory_format="nhwc")
    monkeypatch.setattr(torch.amp, "is_autocast_available", lambda device_type: False)
    with pytest.raises(ValueError, match=r"'precision'.*not available on the 'cpu'"):
        _TorchAdapter(torch.nn.Linear(2, 2), 2, precision="bfloat16")
