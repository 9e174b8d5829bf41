"""Tests of smoothlearn.lipschitz: guaranteed bounds are >= the truth where it
is computable, and >= what random search and gradient ascent can find."""

import copy
import itertools
import math

import numpy as np
import pytest
import torch
from sklearn.base import clone
from torch import nn

from smoothlearn.lipschitz import _operators as lip
from smoothlearn.lipschitz import (
    ConstantLipschitz,
    LipschitzEstimator,
    LocalGradientLipschitz,
    Normalize,
    Residual,
    SpectralProductLipschitz,
)
from smoothlearn.soft import simplex_map_constant

torch.set_num_threads(1)


def _seed(seed):
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


def _bn_with_stats(n, dims=2):
    bn = (nn.BatchNorm1d if dims == 1 else nn.BatchNorm2d)(n)
    with torch.no_grad():
        bn.weight.uniform_(-2, 2)
        bn.running_var.uniform_(0.2, 3.0)
        bn.running_mean.normal_()
    return bn.eval()


def _explicit_norm(module, in_shape):
    """Exact spectral norm of a linear module on inputs of in_shape: numpy SVD
    of its matrix, probed column by column on a float64 copy (independent of
    the library's layer rules)."""
    m = module.double().eval()
    n = int(np.prod(in_shape))
    with torch.no_grad():
        eye = torch.eye(n, dtype=torch.float64).reshape(n, *in_shape)
        cols = m(eye) - m(torch.zeros(1, *in_shape, dtype=torch.float64))
    return float(np.linalg.norm(cols.reshape(n, -1).numpy(), 2))


def _jacobian_norms(f, x):
    """Spectral norms of the Jacobian of f (batched, vector output) at rows of x."""
    x = x.clone().requires_grad_(True)
    out = f(x)
    rows = []
    for c in range(out.shape[1]):
        (g,) = torch.autograd.grad(out[:, c].sum(), x, retain_graph=True)
        rows.append(g.reshape(x.shape[0], -1))
    return torch.linalg.matrix_norm(torch.stack(rows, 1), ord=2)


def _gradient_ascent(f, x0, steps=30, lr=0.05):
    """Maximise the Jacobian spectral norm of f from x0 (a few ascent steps)."""
    x = x0.clone().requires_grad_(True)
    opt = torch.optim.Adam([x], lr=lr)
    best = 0.0
    for _ in range(steps):
        out = f(x)
        rows = []
        for c in range(out.shape[1]):
            (g,) = torch.autograd.grad(out[:, c].sum(), x, create_graph=True)
            rows.append(g.reshape(x.shape[0], -1))
        norms = torch.linalg.matrix_norm(torch.stack(rows, 1), ord=2)
        best = max(best, float(norms.detach().max()))
        opt.zero_grad()
        (-norms.sum()).backward()
        opt.step()
    return best


# ---------------------------------------------------------------------------
# The base class and ConstantLipschitz
# ---------------------------------------------------------------------------


def test_estimators_are_sklearn_estimators():
    for est in (
        ConstantLipschitz(2.0),
        SpectralProductLipschitz(input_shape=(3, 8, 8)),
        LocalGradientLipschitz(n_samples=3, random_state=0),
    ):
        assert isinstance(est, LipschitzEstimator)
        assert clone(est).get_params() == est.get_params()
    assert ConstantLipschitz.guaranteed and SpectralProductLipschitz.guaranteed
    assert LocalGradientLipschitz.guaranteed is False


def test_constant_lipschitz_composes_with_simplex_map():
    est = ConstantLipschitz(L=3.0)
    assert est.logit_constant(None) == 3.0
    # softmax class score: sqrt(2)/4 per unit of t times the logits' constant.
    assert est.estimate(None, temperature=2.0) == pytest.approx(3.0 * 2 * 2**0.5 / 4)
    assert est.estimate(
        None, simplex_map="sparsemax", temperature=0.5, n_classes=10
    ) == pytest.approx(3.0 * 0.5 * math.sqrt(0.9))
    # sparsemax with unknown K: sqrt(1 - 1/K) < 1.
    assert est.estimate(None, simplex_map="sparsemax") == pytest.approx(3.0)
    assert est.estimate(None, simplex_map="hardmax") == math.inf
    score = ConstantLipschitz(L=0.4, target="score")
    assert score.estimate(None, simplex_map="softmax", temperature=9.0) == 0.4
    assert score.estimate(None, simplex_map="hardmax") == math.inf
    with pytest.raises(ValueError, match="logits"):
        score.logit_constant(None)


@pytest.mark.parametrize(
    "est, kwargs, match",
    [
        (ConstantLipschitz(L=0.0), {}, "'L'"),
        (ConstantLipschitz(L=float("nan")), {}, "'L'"),
        (ConstantLipschitz(target="probability"), {}, "'target'"),
        (ConstantLipschitz(), {"simplex_map": "sigmoid"}, "'simplex_map'"),
        (ConstantLipschitz(), {"temperature": 0.0}, "'temperature'"),
        (ConstantLipschitz(), {"temperature": math.inf}, "'temperature'"),
        (ConstantLipschitz(), {"n_classes": 1}, "'n_classes'"),
    ],
)
def test_constant_lipschitz_bad_params(est, kwargs, match):
    with pytest.raises(ValueError, match=match):
        est.estimate(None, **kwargs)


def test_softmax_class_score_constant_is_sharp():
    # Largest gradient norm of softmax(z)_c found over random logits (and the
    # two-class maximiser) is <= sqrt(2)/4 and reaches it.
    gen = _seed(0)
    z = torch.randn(20000, 5, generator=gen, dtype=torch.float64) * 3
    z[0] = torch.tensor([0.0, 0.0, -50.0, -50.0, -50.0])
    z.requires_grad_(True)
    s = torch.softmax(z, dim=1)
    worst = 0.0
    for c in range(5):
        (g,) = torch.autograd.grad(s[:, c].sum(), z, retain_graph=True)
        worst = max(worst, float(g.norm(dim=1).max()))
    assert worst <= simplex_map_constant("softmax", 5) + 1e-12
    assert worst == pytest.approx(2**0.5 / 4, rel=1e-9)


# ---------------------------------------------------------------------------
# SpectralProductLipschitz: exact values where they are computable
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("seed", range(3))
def test_spectral_product_deep_linear_net(seed):
    # Bound >= exact spectral norm of the product (and equals the product of
    # the per-layer norms).
    _seed(seed)
    widths = [6, 9, 4, 7, 5, 3]
    layers = [nn.Linear(a, b) for a, b in itertools.pairwise(widths)]
    net = nn.Sequential(*layers)
    mats = [layer.weight.detach().double().numpy() for layer in layers]
    product = mats[0]
    for W in mats[1:]:
        product = W @ product
    exact = np.linalg.norm(product, 2)
    per_layer = np.prod([np.linalg.norm(W, 2) for W in mats])
    bound = SpectralProductLipschitz().logit_constant(net)
    assert bound >= exact
    assert bound == pytest.approx(per_layer, rel=1e-8)


def test_gram_iteration_bound_is_certified_and_tight():
    gen = _seed(1)
    for shape in [(40, 25), (25, 40), (60, 60)]:
        W = torch.randn(*shape, generator=gen, dtype=torch.float64)
        exact = float(torch.linalg.matrix_norm(W, 2))
        for n_iter in (1, 3, 6, 12):
            b = lip._gram_bound(W, n_iter)
            assert b >= exact
        assert b <= exact * 1.001  # 12 iterations: rank^(1/2^13) at worst
    # The estimator switches to Gram iteration above max_matrix_size.
    net = nn.Sequential(nn.Linear(30, 20))
    exact = float(torch.linalg.matrix_norm(net[0].weight.detach().double(), 2))
    b = SpectralProductLipschitz(max_matrix_size=10).logit_constant(net)
    assert exact <= b <= exact * 1.001


CONVS = [
    (lambda: nn.Conv2d(3, 8, 3, stride=2, padding=1), (3, 12, 12)),
    (lambda: nn.Conv2d(3, 8, 4, stride=2, padding=1), (3, 16, 16)),
    (lambda: nn.Conv2d(4, 6, 3, padding=2, dilation=2, groups=2), (4, 10, 9)),
    (
        lambda: nn.Conv2d(3, 5, 3, stride=(2, 1), padding=(0, 3), dilation=(1, 2)),
        (3, 9, 7),
    ),
    (lambda: nn.Conv2d(4, 4, 5, stride=2, padding=2, groups=4), (4, 20, 20)),
    (lambda: nn.Conv2d(3, 8, 3, padding="same"), (3, 11, 11)),
    (lambda: nn.Conv1d(3, 5, 5, stride=3, padding=2), (3, 40)),
    (lambda: nn.Conv1d(2, 3, 3, padding="valid", bias=False), (2, 17)),
]


@pytest.mark.parametrize("make, shape", CONVS)
def test_conv_bounds_against_explicit_matrix(make, shape):
    _seed(2)
    conv = make()
    exact = _explicit_norm(copy.deepcopy(conv), shape)
    net = nn.Sequential(conv)
    explicit = SpectralProductLipschitz(input_shape=shape, conv_method="explicit")
    fourier = SpectralProductLipschitz(input_shape=shape, conv_method="fourier")
    taps = SpectralProductLipschitz(conv_method="taps")
    b_exp = explicit.logit_constant(net)
    b_four = fourier.logit_constant(net)
    b_taps = taps.logit_constant(net)
    assert b_exp == pytest.approx(exact, rel=1e-8) and b_exp >= exact
    assert exact <= b_four <= 1.2 * exact
    assert b_four <= b_taps * (1 + 1e-9)
    # Power iteration with the conv_transpose adjoint: a lower estimate that
    # converges to the exact value (symmetric zero padding only).
    if not isinstance(conv.padding, str):
        est = lip._conv_power_iteration(conv, shape, 300, _seed(3))
        assert est <= b_exp
        assert est == pytest.approx(exact, rel=1e-2)  # slow if sigma_1 ~ sigma_2


def test_conv_adjoint_output_padding():
    # <A x, y> = <x, A^T y> with A^T = conv_transpose and the computed
    # output_padding: the adjoint used by the power iteration.
    gen = _seed(4)
    for make, shape in CONVS:
        conv = make()
        if isinstance(conv.padding, str):
            continue
        dims = len(shape) - 1
        F = torch.nn.functional
        fwd, bwd = [(F.conv1d, F.conv_transpose1d), (F.conv2d, F.conv_transpose2d)][
            dims - 1
        ]
        W = conv.weight.detach().double()
        x = torch.randn(1, *shape, generator=gen, dtype=torch.float64)
        Ax = fwd(x, W, None, conv.stride, conv.padding, conv.dilation, conv.groups)
        y = torch.randn(Ax.shape, generator=gen, dtype=torch.float64)
        opad = lip._conv_output_padding(conv, shape)
        ATy = bwd(y, W, None, conv.stride, conv.padding, opad, conv.groups,
                  conv.dilation)  # fmt: skip
        assert ATy.shape == x.shape
        assert float((Ax * y).sum()) == pytest.approx(float((x * ATy).sum()), rel=1e-12)


def test_conv_needs_input_shape():
    net = nn.Sequential(nn.Conv2d(3, 4, 3))
    with pytest.raises(ValueError, match="input_shape"):
        SpectralProductLipschitz().logit_constant(net)
    # ... which X provides as well.
    X = np.zeros((2, 3, 6, 6), dtype=np.float32)
    b = SpectralProductLipschitz().logit_constant(net, X)
    assert b == pytest.approx(
        _explicit_norm(copy.deepcopy(net[0]), (3, 6, 6)), rel=1e-8
    )


def test_conv_circular_padding_uses_explicit_matrix():
    _seed(5)
    conv = nn.Conv2d(2, 3, 3, padding=1, padding_mode="circular")
    net = nn.Sequential(conv)
    b = SpectralProductLipschitz(input_shape=(2, 6, 6)).logit_constant(net)
    assert b == pytest.approx(_explicit_norm(copy.deepcopy(conv), (2, 6, 6)), rel=1e-8)
    with pytest.raises(ValueError, match="padding_mode"):
        SpectralProductLipschitz(
            input_shape=(2, 6, 6), max_matrix_size=10
        ).logit_constant(net)


def test_batchnorm_rule():
    _seed(6)
    bn = _bn_with_stats(5, dims=1)
    b = SpectralProductLipschitz().logit_constant(nn.Sequential(bn))
    scale = bn.weight.detach().abs() / torch.sqrt(bn.running_var + bn.eps)
    expected = float(scale.max())
    assert b == pytest.approx(expected, rel=1e-6)
    assert b == pytest.approx(_explicit_norm(copy.deepcopy(bn), (5,)), rel=1e-6)
    bn2 = _bn_with_stats(3)
    b2 = SpectralProductLipschitz(input_shape=(3, 4, 4)).logit_constant(bn2)
    assert b2 == pytest.approx(_explicit_norm(copy.deepcopy(bn2), (3, 4, 4)), rel=1e-6)
    with pytest.raises(ValueError, match="running statistics"):
        SpectralProductLipschitz().logit_constant(
            nn.BatchNorm1d(3, track_running_stats=False)
        )


@pytest.mark.parametrize(
    "pool, shape",
    [
        (nn.AvgPool2d(2), (2, 8, 8)),
        (nn.AvgPool2d(3, stride=1, padding=1), (1, 7, 6)),
        (nn.AvgPool2d(3, stride=2, padding=1, count_include_pad=False), (1, 9, 8)),
        (nn.AvgPool2d(3, stride=2, ceil_mode=True), (1, 8, 8)),
        (nn.AvgPool2d(2, divisor_override=3), (1, 6, 6)),
        (nn.AvgPool1d(4, stride=3, padding=2), (2, 13)),
        (nn.AdaptiveAvgPool2d((3, 2)), (1, 7, 5)),
        (nn.AdaptiveAvgPool2d(1), (2, 5, 5)),
        (nn.AdaptiveAvgPool1d(4), (1, 10)),
    ],
)
def test_average_pooling_rules_are_exact(pool, shape):
    b = SpectralProductLipschitz(input_shape=shape).logit_constant(nn.Sequential(pool))
    assert b == pytest.approx(_explicit_norm(copy.deepcopy(pool), shape), rel=1e-8)


def test_average_pooling_non_overlapping_is_one_over_k():
    b = SpectralProductLipschitz(input_shape=(1, 8, 8)).logit_constant(nn.AvgPool2d(4))
    assert b == pytest.approx(0.25, rel=1e-8)


@pytest.mark.parametrize(
    "pool, shape, expected",
    [
        (nn.MaxPool2d(2), (1, 8, 8), 1.0),
        (nn.MaxPool2d(3, stride=1, padding=1), (1, 7, 7), 3.0),
        (nn.MaxPool2d(3, stride=2), (1, 9, 9), 2.0),
        (nn.MaxPool1d(3, stride=1), (1, 9), math.sqrt(3)),
        (nn.AdaptiveMaxPool2d((2, 2)), (1, 5, 5), 2.0),
    ],
)
def test_max_pooling_rule(pool, shape, expected):
    b = SpectralProductLipschitz(input_shape=shape).logit_constant(nn.Sequential(pool))
    assert b == pytest.approx(expected)
    # Attained by a bump on a pixel shared by the most windows (the centre),
    # and never exceeded by random pairs.
    x = torch.zeros(1, *shape)
    y = x.clone()
    centre = tuple(n // 2 for n in shape[1:])
    y[(0, 0, *centre)] = 1.0
    ratio = float((pool(y) - pool(x)).norm())
    assert ratio == pytest.approx(expected)
    gen = _seed(7)
    a = torch.randn(200, *shape, generator=gen)
    c = a + 0.1 * torch.randn(200, *shape, generator=gen)
    num = (pool(a) - pool(c)).flatten(1).norm(dim=1)
    den = (a - c).flatten(1).norm(dim=1)
    assert torch.all(num <= b * den * (1 + 1e-5))


@pytest.mark.parametrize(
    "layer",
    [
        nn.ReLU(), nn.LeakyReLU(0.2), nn.LeakyReLU(1.5), nn.ELU(2.0), nn.SELU(),
        nn.CELU(), nn.GELU(), nn.GELU(approximate="tanh"), nn.SiLU(), nn.Mish(),
        nn.Tanh(), nn.Sigmoid(), nn.Softplus(beta=3.0), nn.Hardswish(),
        nn.Hardsigmoid(), nn.Hardtanh(), nn.ReLU6(), nn.Softsign(),
    ],
)  # fmt: skip
def test_activation_constants_bound_the_slope(layer):
    # Dense grid (step 1e-5): the largest |f'| found is <= the rule's constant,
    # and within 1% of it (the constants are tight or rounded up slightly).
    x = torch.linspace(-30, 30, 6_000_001, dtype=torch.float64, requires_grad=True)
    (g,) = torch.autograd.grad(layer(x).sum(), x)
    b = SpectralProductLipschitz().logit_constant(nn.Sequential(layer))
    slope = float(g.abs().max())
    assert slope <= b
    assert b <= 1.01 * slope


def test_shape_only_layers_and_normalize():
    net = nn.Sequential(
        Normalize([0.5, 0.4, 0.3], [0.2, 0.25, 0.5]),
        nn.Flatten(),
        nn.Dropout(0.5),
        nn.Identity(),
        nn.Unflatten(1, (3, 2, 2)),
    )
    assert SpectralProductLipschitz().logit_constant(net) == pytest.approx(5.0)
    x = torch.randn(4, 3, 2, 2)
    y = (x - torch.tensor([0.5, 0.4, 0.3]).reshape(1, 3, 1, 1)) / torch.tensor(
        [0.2, 0.25, 0.5]
    ).reshape(1, 3, 1, 1)
    torch.testing.assert_close(net.eval()(x), y)


def test_residual_rule():
    _seed(8)
    main = nn.Sequential(nn.Linear(4, 4), nn.ReLU(), nn.Linear(4, 4))
    block = Residual(main)
    W1, W2 = main[0].weight.detach().double(), main[2].weight.detach().double()
    n1, n2 = (float(torch.linalg.matrix_norm(W, 2)) for W in (W1, W2))
    b = SpectralProductLipschitz().logit_constant(block)
    assert b == pytest.approx(n1 * n2 + 1, rel=1e-8)
    shortcut = nn.Linear(4, 4, bias=False)
    b = SpectralProductLipschitz().logit_constant(Residual(main, shortcut))
    n3 = float(torch.linalg.matrix_norm(shortcut.weight.detach().double(), 2))
    assert b == pytest.approx(n1 * n2 + n3, rel=1e-8)
    # >= the Jacobian norms found at random points.
    x = torch.randn(500, 4)
    assert float(_jacobian_norms(Residual(main, shortcut), x).max()) <= b


class TwoBranch(nn.Module):
    """A module whose forward is not the composition of its children."""

    def __init__(self):
        super().__init__()
        self.a = nn.Linear(3, 2)
        self.b = nn.Linear(3, 2)

    def forward(self, x):
        return self.a(x) - self.b(x)


class Wrapper(nn.Module):
    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(nn.Linear(3, 3), nn.ReLU(), nn.Linear(3, 2))

    def forward(self, x):
        return self.body(x)


class Square(nn.Module):
    def forward(self, x):
        return x * x


def test_unknown_layers_and_generic_modules_are_refused():
    with pytest.raises(ValueError, match="'Square'"):
        SpectralProductLipschitz().logit_constant(nn.Sequential(Square()))
    with pytest.raises(ValueError, match="TwoBranch"):
        SpectralProductLipschitz().logit_constant(TwoBranch())
    with pytest.raises(ValueError, match="Wrapper"):
        SpectralProductLipschitz().logit_constant(Wrapper())
    with pytest.raises(ValueError, match="LayerNorm"):
        SpectralProductLipschitz().logit_constant(nn.Sequential(nn.LayerNorm(3)))
    # assume_sequential accepts the wrapper (its forward is its children in order).
    w = Wrapper()
    b = SpectralProductLipschitz(assume_sequential=True).logit_constant(w)
    assert b == pytest.approx(SpectralProductLipschitz().logit_constant(w.body))
    with pytest.raises(ValueError, match="'model'"):
        SpectralProductLipschitz().logit_constant("net")
    with pytest.raises(ValueError, match="'conv_method'"):
        SpectralProductLipschitz(conv_method="power").logit_constant(w.body)


def test_user_rules_registry():
    m = TwoBranch()

    def two_branch(module, bound):  # ||A - B|| <= ||A|| + ||B||
        return bound(module.a) + bound(module.b)

    b = SpectralProductLipschitz(rules={TwoBranch: two_branch}).logit_constant(m)
    na, nb = (
        float(torch.linalg.matrix_norm(x.weight.detach().double(), 2))
        for x in (m.a, m.b)
    )
    assert b == pytest.approx(na + nb, rel=1e-8)
    # User rules override the built-in ones and see the recorded shapes.
    seen = {}

    def conv_rule(module, bound):
        seen["shape"] = bound.input_shape(module)
        return 7.0

    est = SpectralProductLipschitz(input_shape=(1, 5, 5), rules={nn.Conv2d: conv_rule})
    assert est.logit_constant(nn.Sequential(nn.Conv2d(1, 2, 3))) == 7.0
    assert seen["shape"] == (1, 5, 5)


def test_parametrized_spectral_norm_linear():
    # In train mode every read of .weight runs a power-iteration step; the
    # bound must be that of the eval-mode weight (the one certified), and
    # estimating must not change the module.
    layer = torch.nn.utils.parametrizations.spectral_norm(nn.Linear(5, 4))
    net = nn.Sequential(layer).train()
    b = SpectralProductLipschitz().logit_constant(net)
    assert net.training
    with torch.no_grad():
        W = layer.eval().weight.double()
        exact = float(torch.linalg.matrix_norm(W, 2))
    assert b == pytest.approx(exact, rel=1e-8)


def test_skorch_net_is_unwrapped():
    skorch = pytest.importorskip("skorch")
    module = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3))
    net = skorch.NeuralNetClassifier(module, criterion=nn.CrossEntropyLoss)
    with pytest.raises(ValueError, match="initialize"):
        SpectralProductLipschitz().logit_constant(net)
    net.initialize()
    assert SpectralProductLipschitz().logit_constant(net) == pytest.approx(
        SpectralProductLipschitz().logit_constant(net.module_)
    )


# ---------------------------------------------------------------------------
# SpectralProductLipschitz against what search can find on small networks
# ---------------------------------------------------------------------------


def _mlp():
    return nn.Sequential(
        nn.Linear(6, 16), nn.ReLU(), nn.Linear(16, 16), nn.ReLU(), nn.Linear(16, 4)
    )


def _cnn():
    return nn.Sequential(
        Normalize([0.5, 0.5], [0.5, 0.25]),
        nn.Conv2d(2, 6, 3, stride=2, padding=1),
        _bn_with_stats(6),
        nn.ReLU(),
        nn.Conv2d(6, 8, 3, padding=1),
        nn.ReLU(),
        nn.AvgPool2d(2),
        nn.Flatten(),
        nn.Linear(8 * 2 * 2, 5),
    )


@pytest.mark.parametrize("make, shape", [(_mlp, (6,)), (_cnn, (2, 8, 8))])
def test_spectral_product_beats_search(make, shape):
    gen = _seed(9)
    net = make().eval()
    bound = SpectralProductLipschitz(input_shape=shape).logit_constant(net)
    x = torch.randn(300, *shape, generator=gen)
    # Random search: Jacobian spectral norms, and finite differences.
    assert float(_jacobian_norms(net, x).max()) <= bound
    y = x + 1e-3 * torch.randn(300, *shape, generator=gen)
    with torch.no_grad():
        num = (net(x) - net(y)).norm(dim=1)
        den = (x - y).flatten(1).norm(dim=1)
    assert float((num / den).max()) <= bound * (1 + 1e-4)
    far = torch.randn(300, *shape, generator=gen)
    with torch.no_grad():
        ratio = (net(x) - net(far)).norm(dim=1) / (x - far).flatten(1).norm(dim=1)
    assert float(ratio.max()) <= bound
    # Gradient ascent on the Jacobian norm from the best random points.
    assert _gradient_ascent(net, x[:20]) <= bound
    # And the class-score constant after softmax.
    score = SpectralProductLipschitz(input_shape=shape).estimate(net, temperature=2.0)
    assert score == pytest.approx(bound * 2 * 2**0.5 / 4)

    def soft(t):
        return torch.softmax(2.0 * net(t), dim=1)

    xs = x.clone().requires_grad_(True)
    s = soft(xs)
    for c in range(s.shape[1]):
        (g,) = torch.autograd.grad(s[:, c].sum(), xs, retain_graph=True)
        assert float(g.flatten(1).norm(dim=1).max()) <= score


# ---------------------------------------------------------------------------
# LocalGradientLipschitz
# ---------------------------------------------------------------------------


def test_local_gradient_linear_model_is_exact():
    _seed(10)
    model = nn.Linear(5, 3)
    X = np.random.default_rng(0).normal(size=(7, 5)).astype(np.float32)
    est = LocalGradientLipschitz(n_samples=4, random_state=0)
    L = est.logit_constant(model, X)
    assert L.shape == (7,)
    np.testing.assert_allclose(
        L, float(torch.linalg.matrix_norm(model.weight.detach().double(), 2)), rtol=1e-5
    )


def test_local_gradient_is_below_the_bound_and_reproducible():
    _seed(11)
    net = _cnn().eval()
    X = torch.randn(5, 2, 8, 8)
    est = LocalGradientLipschitz(n_samples=6, radius=0.5, batch_size=8, random_state=3)
    local = est.estimate(net, X, temperature=1.5)
    assert local.shape == (5,)
    np.testing.assert_array_equal(local, est.estimate(net, X, temperature=1.5))
    bound = SpectralProductLipschitz(input_shape=(2, 8, 8)).estimate(
        net, temperature=1.5
    )
    assert np.all(local <= bound)
    # The input itself is among the points: >= the gradient norm at x.
    xs = X.clone().requires_grad_(True)
    s = torch.softmax(1.5 * net(xs).double(), dim=1)
    at_x = torch.zeros(5, dtype=torch.float64)
    for c in range(s.shape[1]):
        (g,) = torch.autograd.grad(s[:, c].sum(), xs, retain_graph=True)
        at_x = torch.maximum(at_x, g.flatten(1).norm(dim=1).double())
    assert np.all(local >= at_x.numpy() * (1 - 1e-5))
    assert np.all(np.isinf(est.estimate(net, X, simplex_map="hardmax")))
    assert np.all(local <= est.logit_constant(net, X) * 1.5 * 2**0.5 / 4 * (1 + 1e-5))


def test_local_gradient_restores_training_mode_and_checks_params():
    net = _cnn().train()
    LocalGradientLipschitz(n_samples=1, random_state=0).logit_constant(
        net, torch.zeros(2, 2, 8, 8)
    )
    assert all(m.training for m in net.modules())
    with pytest.raises(ValueError, match="'n_samples'"):
        LocalGradientLipschitz(n_samples=-1).logit_constant(
            net, torch.zeros(1, 2, 8, 8)
        )
    with pytest.raises(ValueError, match="'radius'"):
        LocalGradientLipschitz(radius=-1.0).logit_constant(net, torch.zeros(1, 2, 8, 8))
    with pytest.raises(ValueError, match="X"):
        LocalGradientLipschitz().logit_constant(net)
