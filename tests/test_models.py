"""Unit tests of the base-model adapters (smoothlearn/models.py)."""

import numpy as np
import pytest
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.svm import LinearSVC

from smoothlearn.models import (
    _eval_mode,
    _is_skorch_net,
    _NoisyCollate,
    _SklearnAdapter,
    _SkorchAdapter,
    _TorchAdapter,
)


def test_torch_adapter_argmax_and_scores(linear3):
    adapter = _TorchAdapter(linear3, 3)
    assert adapter.device == torch.device("cpu")
    assert adapter.dtype == torch.float32
    batch = torch.tensor([[1.0, 0.0], [-0.5, 0.8], [-0.5, -0.8]])
    with torch.inference_mode():
        assert adapter.predict_classes(batch).tolist() == [0, 1, 2]
        scores = adapter.predict_scores(batch)
    assert scores.shape == (3, 3)
    assert scores.argmax(1).tolist() == [0, 1, 2]


def test_torch_adapter_ties_go_to_lowest_index():
    module = torch.nn.Linear(1, 3, bias=False)
    with torch.no_grad():
        module.weight.zero_()
    adapter = _TorchAdapter(module, 3)
    with torch.inference_mode():
        assert adapter.predict_classes(torch.ones(4, 1)).tolist() == [0] * 4


def test_torch_adapter_single_logit_is_binary():
    module = torch.nn.Linear(1, 1)
    with torch.no_grad():
        module.weight.fill_(1.0)
        module.bias.zero_()
    adapter = _TorchAdapter(module, 2)
    batch = torch.tensor([[-2.0], [3.0]])
    with torch.inference_mode():
        assert adapter.predict_classes(batch).tolist() == [0, 1]
        assert adapter.predict_scores(batch).shape == (2, 2)


def test_torch_adapter_reads_first_output_of_tuple(linear3):
    class Two(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.inner = linear3

        def forward(self, x):
            return self.inner(x), x

    adapter = _TorchAdapter(Two(), 3)
    with torch.inference_mode():
        assert adapter.predict_classes(torch.tensor([[-0.5, -0.8]])).tolist() == [2]


def test_eval_mode_restores_every_submodule_state():
    module = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.Dropout(0.5))
    module.train()
    module[0].eval()  # a mixed state must come back exactly
    with _eval_mode(module):
        assert not any(m.training for m in module.modules())
    assert module.training and not module[0].training and module[1].training


def test_eval_mode_restores_state_after_an_error():
    module = torch.nn.Dropout(0.5)
    module.train()
    with pytest.raises(RuntimeError), _eval_mode(module):
        raise RuntimeError
    assert module.training


def test_torch_adapter_predicts_in_eval_mode():
    # Dropout(p=1) zeroes everything in train mode; in eval mode it is identity.
    module = torch.nn.Sequential(torch.nn.Dropout(1.0), torch.nn.Linear(1, 2))
    with torch.no_grad():
        module[1].weight.copy_(torch.tensor([[-1.0], [1.0]]))
        module[1].bias.copy_(torch.tensor([0.5, -0.5]))
    module.train()
    adapter = _TorchAdapter(module, 2)
    with torch.inference_mode(), adapter.evaluating():
        assert adapter.predict_classes(torch.tensor([[5.0]])).tolist() == [1]
    assert module.training


def test_sklearn_adapter_maps_string_labels():
    X = np.array([[-2.0], [-1.0], [1.0], [2.0]])
    y = np.array(["neg", "neg", "pos", "pos"])
    clf = LogisticRegression().fit(X, y)
    adapter = _SklearnAdapter(clf, clf.classes_)
    assert adapter.n_classes == 2 and adapter.dtype == torch.float64
    batch = torch.tensor([[-3.0], [3.0], [-1.5]], dtype=torch.float64)
    assert adapter.predict_classes(batch).tolist() == [0, 1, 0]
    proba = adapter.predict_scores(batch)
    assert proba.shape == (3, 2)
    np.testing.assert_allclose(proba.sum(1).numpy(), 1.0)


def test_sklearn_adapter_flattens_nd_batches():
    X = np.random.default_rng(0).normal(size=(20, 2, 3))
    y = (X[:, 0, 0] > 0).astype(int)
    clf = LogisticRegression().fit(X.reshape(20, -1), y)
    adapter = _SklearnAdapter(clf, clf.classes_)
    out = adapter.predict_classes(torch.from_numpy(X))
    np.testing.assert_array_equal(out.numpy(), clf.predict(X.reshape(20, -1)))


def test_sklearn_adapter_errors():
    X = np.array([[-2.0], [-1.0], [1.0], [2.0]])
    clf = LinearSVC().fit(X, [0, 0, 1, 1])
    adapter = _SklearnAdapter(clf, clf.classes_)
    with pytest.raises(ValueError, match="predict_proba"):
        adapter.predict_scores(torch.zeros(1, 1, dtype=torch.float64))
    # labels outside the classes given to the adapter
    bad = _SklearnAdapter(clf, np.array([5, 6]))
    with pytest.raises(ValueError, match="not in its classes_"):
        bad.predict_classes(torch.zeros(1, 1, dtype=torch.float64))


def test_skorch_adapter_matches_net_predict(tiny_net, blobs3):
    X, y = blobs3
    torch.manual_seed(0)
    net = tiny_net(module__dropout=0.5).fit(X, y)
    assert _is_skorch_net(net) and not _is_skorch_net(LogisticRegression())
    adapter = _SkorchAdapter(net, 3)
    net.module_.train()
    with torch.inference_mode(), adapter.evaluating():
        idx = adapter.predict_classes(torch.from_numpy(X))
        proba = adapter.predict_scores(torch.from_numpy(X))
    assert net.module_.training  # state restored
    np.testing.assert_array_equal(idx.numpy(), net.predict(X))
    np.testing.assert_allclose(proba.numpy(), net.predict_proba(X), rtol=1e-5)


def test_skorch_adapter_binary_threshold():
    from skorch import NeuralNetBinaryClassifier

    module = torch.nn.Linear(1, 1)
    net = NeuralNetBinaryClassifier(module, max_epochs=0, threshold=0.9, verbose=0)
    net.initialize()
    with torch.no_grad():
        net.module_.weight.fill_(1.0)
        net.module_.bias.zero_()
    adapter = _SkorchAdapter(net, 2)
    # sigmoid(1) = 0.73 is below the threshold 0.9; sigmoid(3) = 0.95 is above
    batch = torch.tensor([[1.0], [3.0]])
    with torch.inference_mode():
        assert adapter.predict_classes(batch).tolist() == [0, 1]


def test_noisy_collate_adds_fresh_gaussian_noise():
    items = [(np.zeros(3, dtype=np.float32), 0) for _ in range(4000)]
    collate = _NoisyCollate(sigma=0.5, seed=7)
    X1, y1 = collate(items)
    X2, _ = collate(items)
    assert X1.shape == (4000, 3) and y1.shape == (4000,)
    assert not torch.equal(X1, X2)  # fresh noise at every batch
    # sample std of 12000 N(0, 0.25) draws: sd of the estimate ~ 0.5/sqrt(24000)
    assert abs(float(X1.std()) - 0.5) < 0.02
    assert torch.equal(_NoisyCollate(0.5, 7)(items)[0], X1)  # seeded


def test_noisy_collate_needs_float_inputs():
    with pytest.raises(TypeError, match="floating"):
        _NoisyCollate(0.5, 0)([(np.zeros(2, dtype=np.int64), 0)])


# --------------------------------------------------------------------------
# The rest of the boundary: logits, log-probabilities, outputs, make_adapter
# --------------------------------------------------------------------------
def _initialized_net(cls, module, **kwargs):
    net = cls(module, max_epochs=0, train_split=None, verbose=0, **kwargs)
    net.initialize()
    return net


@pytest.mark.parametrize(
    "criterion, predict_nonlinearity, n_out",
    [
        (torch.nn.CrossEntropyLoss, "auto", 3),  # softmax
        (torch.nn.NLLLoss, "auto", 3),  # identity
        (torch.nn.CrossEntropyLoss, None, 3),  # identity
        (torch.nn.CrossEntropyLoss, torch.nn.Softplus(), 3),  # the callable
        (torch.nn.BCEWithLogitsLoss, "auto", 1),  # sigmoid, then (1 - p, p)
        (torch.nn.BCELoss, "auto", 1),  # (1 - p, p)
    ],
)
def test_skorch_scores_match_predict_proba(criterion, predict_nonlinearity, n_out):
    # skorch's predict_proba is the reference: the adapter applies the
    # documented predict_nonlinearity rules without skorch's private helper.
    from skorch import NeuralNet

    torch.manual_seed(0)
    module = torch.nn.Linear(2, n_out)
    if criterion is torch.nn.BCELoss:
        module = torch.nn.Sequential(module, torch.nn.Sigmoid(), torch.nn.Flatten(0))
    elif n_out == 1:
        module = torch.nn.Sequential(module, torch.nn.Flatten(0))
    net = _initialized_net(
        NeuralNet,
        module,
        criterion=criterion,
        predict_nonlinearity=predict_nonlinearity,
    )
    X = np.random.default_rng(1).normal(size=(7, 2)).astype(np.float32)
    adapter = _SkorchAdapter(net, 2 if n_out == 1 else n_out)
    with torch.inference_mode():
        scores = adapter.predict_scores(torch.from_numpy(X)).numpy()
    np.testing.assert_allclose(scores, net.predict_proba(X), rtol=1e-6, atol=1e-7)


def test_skorch_scores_refuse_a_bad_nonlinearity():
    from skorch import NeuralNet

    net = _initialized_net(
        NeuralNet,
        torch.nn.Linear(2, 3),
        criterion=torch.nn.CrossEntropyLoss,
        predict_nonlinearity="softmax",
    )
    with pytest.raises(TypeError, match="predict_nonlinearity"):
        _SkorchAdapter(net, 3).predict_scores(torch.zeros(1, 2))


def test_predict_logits_of_each_backend(linear3):
    batch = torch.tensor([[1.0, 0.0], [-0.5, 0.8]])
    with torch.inference_mode():
        torch.testing.assert_close(
            _TorchAdapter(linear3, 3).predict_logits(batch), linear3(batch)
        )
        one = torch.nn.Linear(2, 1)
        logit = one(batch)[:, 0]
        torch.testing.assert_close(
            _TorchAdapter(one, 2).predict_logits(batch),
            torch.stack((-logit, logit), dim=1),
        )
    # scikit-learn: log(predict_proba), so softmax at t = 1 gives it back
    X = np.random.default_rng(0).normal(size=(30, 2))
    clf = LogisticRegression().fit(X, (X[:, 0] > 0).astype(int) + (X[:, 1] > 1))
    adapter = _SklearnAdapter(clf, clf.classes_)
    logits = adapter.predict_logits(torch.from_numpy(X[:5]))
    assert logits.dtype == torch.float64
    np.testing.assert_allclose(
        torch.softmax(logits, dim=1).numpy(), clf.predict_proba(X[:5]), rtol=1e-12
    )


def test_skorch_predict_logits_are_the_module_output(tiny_net, blobs3):
    X, y = blobs3
    net = tiny_net(max_epochs=1).fit(X, y)
    adapter = _SkorchAdapter(net, 3)
    with torch.inference_mode(), adapter.evaluating():
        logits = adapter.predict_logits(torch.from_numpy(X[:4]))
        torch.testing.assert_close(logits, net.module_(torch.from_numpy(X[:4])))


def test_log_probability_is_differentiable_and_normalised(tiny_net, blobs3):
    from skorch import NeuralNetBinaryClassifier

    X, y = blobs3
    batch = torch.from_numpy(X[:5]).requires_grad_(True)
    net = tiny_net(max_epochs=1).fit(X, y)
    binary = NeuralNetBinaryClassifier(
        torch.nn.Linear(2, 1), max_epochs=0, verbose=0
    ).initialize()
    for adapter in (
        _TorchAdapter(torch.nn.Linear(2, 3), 3),
        _TorchAdapter(torch.nn.Linear(2, 1), 2),
        _SkorchAdapter(net, 3),  # cross-entropy: log_softmax of the logits
        _SkorchAdapter(binary, 2),  # BCE with logits: logsigmoid(-l), logsigmoid(l)
    ):
        assert adapter.differentiable
        logp = adapter.log_probability(batch)
        assert logp.dtype == torch.float64 and logp.shape[0] == 5
        np.testing.assert_allclose(logp.exp().sum(1).detach().numpy(), 1.0)
        (grad,) = torch.autograd.grad(logp[:, 0].sum(), batch)
        assert grad.abs().sum() > 0
    with torch.inference_mode():
        expected = torch.log(torch.from_numpy(net.predict_proba(X[:5])).double())
        got = _SkorchAdapter(net, 3).log_probability(torch.from_numpy(X[:5]))
    # float64 log_softmax against the log of skorch's float32 softmax
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-6)


def test_sklearn_adapter_has_no_gradients():
    clf = LogisticRegression().fit([[-1.0], [1.0]], [0, 1])
    adapter = _SklearnAdapter(clf, clf.classes_)
    assert not adapter.differentiable
    with pytest.raises(ValueError, match="no gradients"):
        adapter.log_probability(torch.zeros(1, 1, dtype=torch.float64))


def test_number_of_outputs(linear3):
    X = np.zeros((4, 2), dtype=np.float32)
    one = torch.nn.Linear(2, 1)
    assert _TorchAdapter(linear3, 3).n_outputs(X) == 3
    assert _TorchAdapter(linear3, 3).n_raw_outputs(X) == 3
    # one logit is read as two class scores
    assert _TorchAdapter(one, 2).n_outputs(X) == 2
    assert _TorchAdapter(one, 2).n_raw_outputs(X) == 1
    clf = LogisticRegression().fit([[-1.0, 0.0], [1.0, 0.0]], [3, 5])
    adapter = _SklearnAdapter(clf, clf.classes_)
    assert adapter.n_outputs(X.astype(np.float64)) == 2
    assert adapter.n_raw_outputs(X) == 2


def test_number_of_outputs_refuses_a_bad_shape():
    from skorch import NeuralNet

    net = _initialized_net(
        NeuralNet,
        torch.nn.Linear(2, 3),
        criterion=torch.nn.CrossEntropyLoss,
        predict_nonlinearity=lambda out: out[:, 0],
    )
    with pytest.raises(ValueError, match="class scores of shape"):
        _SkorchAdapter(net, 3).n_outputs(np.zeros((1, 2), dtype=np.float32))


def test_make_adapter_dispatches_on_the_fitted_model(linear3, tiny_net, blobs3):
    from sklearn.frozen import FrozenEstimator

    from smoothlearn.models import make_adapter

    X, y = blobs3
    classes = np.array([0, 1, 2])
    adapter = make_adapter(linear3, classes)
    assert type(adapter) is _TorchAdapter and adapter.module is linear3
    assert adapter.n_classes == 3
    net = tiny_net(max_epochs=1).fit(X, y)
    for est in (net, FrozenEstimator(net)):
        adapter = make_adapter(est, classes)
        assert type(adapter) is _SkorchAdapter and adapter.net is net
    lr = LogisticRegression().fit(X, y)
    frozen = FrozenEstimator(lr)
    adapter = make_adapter(frozen, lr.classes_)
    assert type(adapter) is _SklearnAdapter and adapter.estimator is frozen
    assert make_adapter(linear3, classes, device="cpu").device == torch.device("cpu")
    with pytest.raises(ValueError, match="differs from the module's device"):
        make_adapter(linear3, classes, device="meta")


def test_training_without_noise_warns_at_the_caller_of_fit():
    import warnings

    from smoothlearn import SmoothedClassifier

    X = np.random.default_rng(0).normal(size=(20, 2))
    y = (X[:, 0] > 0).astype(int)
    clf = SmoothedClassifier(LogisticRegression(), noise_augment=False)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        clf.fit(X, y)
    assert len(caught) == 1 and "noise_augment=False" in str(caught[0].message)
    assert caught[0].filename == __file__  # not scikit-learn's fit wrapper
