"""Tests of smoothlearn.lipschitz: guaranteed bounds are >= the truth where it
is computable, and >= what random search and gradient ascent can find."""

import copy
import itertools
import math
import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from sklearn.base import clone
from torch import nn

from smoothlearn.lipschitz import (
    ConstantLipschitz,
    LipschitzEstimator,
    LocalGradientLipschitz,
    Normalize,
    Residual,
    SpectralProductLipschitz,
)
from smoothlearn.lipschitz import _operators as lip
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


class Branching(nn.Module):
    """Data-dependent control flow: torch.fx cannot trace it."""

    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(nn.Linear(3, 3), nn.ReLU(), nn.Linear(3, 2))

    def forward(self, x):
        if x.sum() > 0:
            return self.body(x)
        return self.body(x)


class BranchingLeaf(nn.Module):
    def forward(self, x):
        return x if x.sum() > 0 else -x


def test_unknown_layers_and_generic_modules_are_refused():
    with pytest.raises(ValueError, match="'Square'"):
        SpectralProductLipschitz().logit_constant(nn.Sequential(Square()))
    # A difference of two branches is bounded by the sum of their bounds
    # (below), but broadcasting needs the shapes: without X it is refused.
    with pytest.raises(ValueError, match="TwoBranch"):
        SpectralProductLipschitz().logit_constant(TwoBranch())
    with pytest.raises(ValueError, match="LayerNorm"):
        SpectralProductLipschitz().logit_constant(nn.Sequential(nn.LayerNorm(3)))
    # A forward torch.fx cannot trace is refused, naming the module...
    with pytest.raises(ValueError, match=r"Branching.*assume_sequential"):
        SpectralProductLipschitz().logit_constant(Branching())
    with pytest.raises(ValueError, match=r"BranchingLeaf: torch\.fx cannot trace"):
        SpectralProductLipschitz(assume_sequential=True).logit_constant(BranchingLeaf())
    # ... and assume_sequential accepts it (its forward is its children in order).
    w = Branching()
    b = SpectralProductLipschitz(assume_sequential=True).logit_constant(w)
    assert b == pytest.approx(SpectralProductLipschitz().logit_constant(w.body))
    with pytest.raises(ValueError, match="'model'"):
        SpectralProductLipschitz().logit_constant("net")
    with pytest.raises(ValueError, match="'conv_method'"):
        SpectralProductLipschitz(conv_method="power").logit_constant(w.body)


def test_traced_modules_without_a_rule():
    # Modules whose forward torch.fx traces need no rule (they were refused
    # before the graph walk): a wrapper is its body, a difference of two
    # branches the sum of their bounds.
    _seed(12)
    w = Wrapper()
    assert SpectralProductLipschitz().logit_constant(w) == pytest.approx(
        SpectralProductLipschitz().logit_constant(w.body), rel=1e-12
    )
    m = TwoBranch()
    na, nb = (
        float(torch.linalg.matrix_norm(x.weight.detach().double(), 2))
        for x in (m.a, m.b)
    )
    b = SpectralProductLipschitz(input_shape=(3,)).logit_constant(m)
    assert b == pytest.approx(na + nb, rel=1e-8)
    assert float(_jacobian_norms(m, torch.randn(200, 3)).max()) <= b


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


# ---------------------------------------------------------------------------
# The graph walk: exact values, functional operations, operator norms
# ---------------------------------------------------------------------------


def _power_lower_bound(model, x, n_iter=20, seed=0):
    """Largest ||J(x_i) v|| over power-iteration steps, per row of x.

    Power iteration on J^T J with forward-mode (jvp) and reverse-mode (vjp)
    autograd on a float64 copy of the model: every ||J v|| with ||v|| = 1 is
    a LOWER bound of the Jacobian's spectral norm at x_i, hence of the
    Lipschitz constant; a guaranteed bound must never be below it.
    """
    m = copy.deepcopy(model).double().eval()
    xd = x.detach().double()
    gen = torch.Generator().manual_seed(seed)
    v = torch.randn(xd.shape, generator=gen, dtype=torch.float64)
    best = torch.zeros(xd.shape[0], dtype=torch.float64)
    with torch.no_grad(), warnings.catch_warnings():
        # forward-mode AD loads torch's jvp decompositions with torch.jit.script,
        # which torch marks deprecated: torch's own warning, not the library's
        warnings.filterwarnings(
            "ignore", "`torch.jit.script` is deprecated", DeprecationWarning
        )
        _, vjp = torch.func.vjp(m, xd)
        for _ in range(n_iter):
            v = v / v.flatten(1).norm(dim=1).reshape(-1, *[1] * (v.dim() - 1))
            _, jv = torch.func.jvp(m, (xd,), (v,))
            best = torch.maximum(best, jv.flatten(1).norm(dim=1))
            (v,) = vjp(jv)
    return best


class LinearNet(nn.Module):
    def __init__(self, W):
        super().__init__()
        self.lin = nn.Linear(W.shape[1], W.shape[0])
        with torch.no_grad():
            self.lin.weight.copy_(W)

    def forward(self, x):
        return self.lin(x)


class ResidualLinear(nn.Module):
    """x -> x + W x, written as a plain module (traced, not a Residual)."""

    def __init__(self, W):
        super().__init__()
        self.lin = nn.Linear(W.shape[0], W.shape[0], bias=False)
        with torch.no_grad():
            self.lin.weight.copy_(W)

    def forward(self, x):
        return x + self.lin(x)


class NormalizeLayer(nn.Module):
    """Cohen et al.'s input normalisation (locuslab/smoothing, code/datasets.py),
    verbatim except for the ``.cuda()`` calls: plain tensor attributes, applied
    as ``(input - means) / sds`` broadcast per channel."""

    def __init__(self, means, sds):
        super().__init__()
        self.means = torch.tensor(means)
        self.sds = torch.tensor(sds)

    def forward(self, input):
        (batch_size, num_channels, height, width) = input.shape  # noqa: RUF059
        means = self.means.repeat((batch_size, height, width, 1)).permute(0, 3, 1, 2)
        sds = self.sds.repeat((batch_size, height, width, 1)).permute(0, 3, 1, 2)
        return (input - means) / sds


class NormalizeBuffers(nn.Module):
    """torchvision-style Normalize written with buffers and broadcasting."""

    def __init__(self, mean, std):
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean).reshape(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(std).reshape(1, -1, 1, 1))

    def forward(self, x):
        return (x - self.mean) / self.std


CIFAR_MEAN, CIFAR_STD = [0.4914, 0.4822, 0.4465], [0.2023, 0.1994, 0.2010]


def test_exact_single_linear_layer():
    gen = _seed(20)
    W = torch.randn(4, 6, generator=gen)
    net = LinearNet(W)
    exact = float(np.linalg.norm(W.double().numpy(), 2))
    b = SpectralProductLipschitz().logit_constant(net)
    assert exact <= b <= exact * (1 + 2e-9)
    lower = _power_lower_bound(net, torch.randn(3, 6, generator=gen), 200)
    assert float(lower.max()) <= b
    assert float(lower.min()) == pytest.approx(exact, rel=1e-6)


def test_exact_residual_block():
    # W symmetric positive semi-definite: ||I + W|| = 1 + ||W||, so the bound
    # of the sum, L(x) + L(W x), is the true constant.
    gen = _seed(21)
    A = torch.randn(5, 5, generator=gen, dtype=torch.float64)
    W = (A @ A.T / 5).float()
    net = ResidualLinear(W)
    exact = float(np.linalg.norm(np.eye(5) + W.double().numpy(), 2))
    assert exact == pytest.approx(1 + np.linalg.norm(W.double().numpy(), 2))
    b = SpectralProductLipschitz(input_shape=(5,)).logit_constant(net)
    assert exact <= b <= exact * (1 + 2e-9)
    lower = _power_lower_bound(net, torch.randn(2, 5, generator=gen), 200)
    assert float(lower.max()) <= b
    assert float(lower.min()) == pytest.approx(exact, rel=1e-6)
    # A general W: the bound 1 + ||W|| is above the true ||I + W||.
    W = torch.randn(5, 5, generator=gen)
    net = ResidualLinear(W)
    b = SpectralProductLipschitz(input_shape=(5,)).logit_constant(net)
    assert b == pytest.approx(1 + np.linalg.norm(W.double().numpy(), 2), rel=1e-8)
    assert np.linalg.norm(np.eye(5) + W.double().numpy(), 2) <= b


@pytest.mark.parametrize("make", [NormalizeLayer, NormalizeBuffers, Normalize])
def test_exact_input_normalisation(make):
    # (x - mean) / std per channel: a diagonal map of norm 1 / min std,
    # attained by a perturbation of the channel with the smallest std.
    std = [0.25, 0.2, 0.5]  # a gap between the two smallest: fast convergence
    net = make(CIFAR_MEAN, std)
    exact = 1.0 / float(torch.tensor(min(std)))  # float32 std, as in the model
    x = torch.rand(2, 3, 4, 4)
    b = SpectralProductLipschitz().logit_constant(net, x)
    assert exact <= b <= exact * (1 + 1e-6)  # float32 stds
    lower = _power_lower_bound(net, x, 50)
    assert float(lower.max()) <= b
    assert float(lower.min()) == pytest.approx(exact, rel=1e-6)


class Functional(nn.Module):
    """The functional operations of traced ResNets and a few more."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(2, 4, 3, padding=1)
        self.fc = nn.Linear(4 * 2 * 2 + 4 + 4, 3)
        self.register_buffer("gain", torch.tensor([0.5, -2.0, 1.0, 0.25]))

    def forward(self, x):
        h = torch.add(F.relu(self.conv(x)), x.repeat(1, 2, 1, 1))  # 2 * 1
        h = h * self.gain.reshape(1, -1, 1, 1)  # max |gain| = 2
        p = F.max_pool2d(h, 2)  # 1 (kernel == stride)
        a = F.avg_pool2d(h, 2)  # 1/2
        q = torch.flatten(p + a, 1)[:, : 4 * 2 * 2].view(x.size(0), -1)
        m = h.mean((2, 3))  # 1/4
        s = F.adaptive_avg_pool2d(F.pad(h, (1, 1, 1, 1)), 1).flatten(1)  # 1/6
        return self.fc(torch.cat([q, m, s], dim=1))


def test_functional_operations_bound():
    gen = _seed(22)
    net = Functional().eval()
    b = SpectralProductLipschitz(input_shape=(2, 4, 4)).logit_constant(net)
    # The same bound by hand: each factor from the comments above.
    conv = _explicit_norm(copy.deepcopy(net.conv), (2, 4, 4))
    h = (conv + math.sqrt(2)) * 2.0
    q, m, s = h * (1 + 0.5), h / 4, h / 6
    fc = float(np.linalg.norm(net.fc.weight.detach().double().numpy(), 2))
    expected = fc * math.sqrt(q**2 + m**2 + s**2)
    assert b == pytest.approx(expected, rel=1e-7)
    x = torch.rand(4, 2, 4, 4, generator=gen)
    assert float(_power_lower_bound(net, x).max()) <= b


class Broadcast(nn.Module):
    def forward(self, x):  # (B, 1, n) -> (B, 3, n): each entry copied 3 times
        return x + torch.zeros(1, 3, 1)


def test_broadcast_spreads_by_the_copies():
    b = SpectralProductLipschitz(input_shape=(1, 5)).logit_constant(Broadcast())
    assert b == pytest.approx(math.sqrt(3))
    x = torch.rand(2, 1, 5)
    lower = _power_lower_bound(nn.Sequential(Broadcast(), nn.Flatten()), x, 5)
    assert float(lower.min()) == pytest.approx(math.sqrt(3), rel=1e-9)


class Times(nn.Module):
    def __init__(self, op):
        super().__init__()
        self.lin = nn.Linear(3, 3)
        self.op = op

    def forward(self, x):
        return self.op(self.lin(x), x)


@pytest.mark.parametrize(
    "op, match",
    [
        (lambda h, x: h * x, r"node 'mul' \(the function operator.mul\).*two input"),
        (lambda h, x: h / x, r"node 'truediv'.*division by an input-dependent"),
        (lambda h, x: torch.exp(h), r"node 'exp' \(the function torch.exp\)"),
        (lambda h, x: F.layer_norm(h, (3,)), r"torch.nn.functional.layer_norm"),
        (lambda h, x: h.norm(dim=1, keepdim=True) + x, r"Tensor.norm"),
        (lambda h, x: h[:, [0, 0, 1]], r"node 'getitem'.*basic indexing"),
        (lambda h, x: h.sum(), r"every dimension"),
        (lambda h, x: (h, x), r"returns a tuple"),
        (lambda h, x: F.dropout(h, 0.5), r"training=True"),
    ],
)
def test_unknown_operations_name_the_node(op, match):
    with pytest.raises(ValueError, match=match):
        SpectralProductLipschitz(input_shape=(3,)).logit_constant(Times(op))


class InPlace(nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(3, 3)

    def forward(self, x):
        y = self.lin(x)
        z = y.relu_()  # y itself is now relu(y)
        return y + z


class Aliased(nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(3, 3)

    def forward(self, x):
        y = self.lin(x)
        kept = y
        y += 1.0  # changes kept: the traced graph reads an out-of-place add
        return kept * 2.0


def test_in_place_operations_that_the_graph_hides_are_refused():
    with pytest.raises(ValueError, match="in place"):
        SpectralProductLipschitz(input_shape=(3,)).logit_constant(InPlace())
    with pytest.raises(ValueError, match="does not reproduce its forward"):
        SpectralProductLipschitz(input_shape=(3,)).logit_constant(Aliased())


def test_conv_batchnorm_fusion():
    # conv -> BN is one linear map diag(s) C: its norm, not max|s| * ||C||.
    _seed(23)
    conv = nn.Conv2d(2, 4, 3, stride=2, padding=1)
    bn = _bn_with_stats(4)
    net = nn.Sequential(conv, bn, nn.ReLU()).eval()
    shape = (2, 6, 6)
    exact = _explicit_norm(copy.deepcopy(nn.Sequential(conv, bn)), shape)
    fused = SpectralProductLipschitz(input_shape=shape).logit_constant(net)
    product = _explicit_norm(copy.deepcopy(conv), shape) * float(
        (bn.weight.detach().abs() / torch.sqrt(bn.running_var + bn.eps)).max()
    )
    assert fused == pytest.approx(exact, rel=1e-7)
    assert fused <= product * (1 + 1e-7)
    # A user rule for either layer switches the fusion off.
    rules = {nn.BatchNorm2d: lambda m, b: SpectralProductLipschitz()._bound(m, b)}
    unfused = SpectralProductLipschitz(input_shape=shape, rules=rules)
    assert unfused.logit_constant(net) == pytest.approx(product, rel=1e-6)


@pytest.mark.parametrize("make, shape", CONVS)
def test_conv_matrix_from_the_kernel(make, shape):
    # The kernel-built matrix equals the one probed with basis vectors.
    _seed(24)
    conv = make()
    if conv.padding_mode != "zeros":
        pytest.skip("zero padding only")
    A = lip._conv_matrix(conv, shape)
    B = lip._explicit_operator(conv, shape)
    torch.testing.assert_close(A, B, rtol=0, atol=1e-12)


STRIDED = [
    (lambda s: nn.Conv2d(3, 8, 3, stride=s, padding=1), (3, 12, 12)),
    (lambda s: nn.Conv2d(4, 6, 3, stride=s, padding=2, dilation=2, groups=2),
     (4, 10, 9)),
    (lambda s: nn.Conv2d(3, 5, 5, stride=s, padding=0), (3, 11, 11)),
    (lambda s: nn.Conv1d(3, 5, 5, stride=s, padding=2), (3, 40)),
    (lambda s: nn.Conv2d(16, 32, 1, stride=s, bias=False), (16, 8, 8)),
]  # fmt: skip


@pytest.mark.parametrize("make, shape", STRIDED)
def test_strided_and_padded_conv_bounds(make, shape):
    # Subsampling is a restriction (norm <= 1): the strided operator's norm
    # is at most the stride-1 norm of the same kernel, and so are the Fourier
    # bounds.  Zero padding makes the conv a restriction of a circular one on
    # a zero-extended grid: A = R C E with E the embedding, R a selection.
    _seed(25)
    one, two = make(1), make(2)
    with torch.no_grad():
        two.weight.copy_(one.weight)
    exact1 = _explicit_norm(copy.deepcopy(one), shape)
    exact2 = _explicit_norm(copy.deepcopy(two), shape)
    assert exact2 <= exact1 * (1 + 1e-12)
    four = {
        s: SpectralProductLipschitz(input_shape=shape, conv_method="fourier")
        .logit_constant(nn.Sequential(m))
        for s, m in ((1, one), (2, two))
    }  # fmt: skip
    assert exact2 <= four[2] <= four[1] * (1 + 1e-9)
    assert exact1 <= four[1]
    if all(k == 1 for k in one.kernel_size):  # 1x1: exact, any stride
        W = one.weight.detach().double().reshape(one.out_channels, -1).numpy()
        assert four[2] == pytest.approx(np.linalg.norm(W, 2), rel=1e-8)
        assert exact2 == pytest.approx(np.linalg.norm(W, 2), rel=1e-8)
    # A = R C E for the stride-1 conv, applied to every basis vector: E
    # embeds the input at offset p_left in a zero grid of n + p_left +
    # p_right + d (k - 1) per dimension, C is the circular convolution there,
    # R keeps the first n_out outputs (no wrap-around reaches them).
    dims, k, _, dil, pads = lip._conv_geometry(one)
    grid = [
        n + pl + pr + d * (kk - 1)
        for n, (pl, pr), d, kk in zip(shape[1:], pads, dil, k, strict=True)
    ]
    n_out = [g - 2 * d * (kk - 1) for g, d, kk in zip(grid, dil, k, strict=True)]
    n_in = int(np.prod(shape))
    basis = torch.eye(n_in, dtype=torch.float64).reshape(n_in, *shape)
    E = torch.zeros((n_in, shape[0], *grid), dtype=torch.float64)
    inner = tuple(slice(pl, pl + n) for (pl, _), n in zip(pads, shape[1:], strict=True))
    E[(slice(None), slice(None), *inner)] = basis
    wrap = []
    for d, kk in zip(dil[::-1], k[::-1], strict=True):
        wrap += [0, d * (kk - 1)]
    conv = (F.conv1d, F.conv2d)[dims - 1]
    W = one.weight.detach().double()
    CE = conv(F.pad(E, wrap, mode="circular"), W, None, 1, 0, dil, one.groups)
    RCE = CE[(slice(None), slice(None), *(slice(0, m) for m in n_out))]
    A = lip._conv_matrix(one, shape)
    torch.testing.assert_close(RCE.reshape(n_in, -1).T, A, rtol=0, atol=1e-12)


# ---------------------------------------------------------------------------
# Real architectures: Cohen et al.'s CIFAR ResNets, torchvision's ResNet-50
# ---------------------------------------------------------------------------


def _conv3x3(inplanes, planes, stride=1):
    return nn.Conv2d(inplanes, planes, 3, stride=stride, padding=1, bias=False)


class BasicBlock(nn.Module):
    """Cohen et al.'s BasicBlock (locuslab/smoothing, archs/cifar_resnet.py)."""

    expansion = 1

    def __init__(self, inplanes, planes, stride=1, downsample=None):
        super().__init__()
        self.conv1 = _conv3x3(inplanes, planes, stride)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = _conv3x3(planes, planes)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = downsample
        self.stride = stride

    def forward(self, x):
        residual = x
        out = self.conv1(x)
        out = self.bn1(out)
        out = self.relu(out)
        out = self.conv2(out)
        out = self.bn2(out)
        if self.downsample is not None:
            residual = self.downsample(x)
        out += residual
        out = self.relu(out)
        return out


class CifarResNet(nn.Module):
    """Cohen et al.'s CIFAR ResNet of depth 6n + 2 (20, 110); ``pool`` is the
    final average pooling (8 for 32x32 inputs; 2 for the 8x8 variant)."""

    def __init__(self, depth, num_classes=10, pool=8):
        super().__init__()
        assert (depth - 2) % 6 == 0
        n = (depth - 2) // 6
        self.inplanes = 16
        self.conv1 = nn.Conv2d(3, 16, kernel_size=3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        self.relu = nn.ReLU(inplace=True)
        self.layer1 = self._make_layer(16, n)
        self.layer2 = self._make_layer(32, n, stride=2)
        self.layer3 = self._make_layer(64, n, stride=2)
        self.avgpool = nn.AvgPool2d(pool)
        self.fc = nn.Linear(64, num_classes)

    def _make_layer(self, planes, blocks, stride=1):
        downsample = None
        if stride != 1 or self.inplanes != planes:
            downsample = nn.Sequential(
                nn.Conv2d(self.inplanes, planes, 1, stride=stride, bias=False),
                nn.BatchNorm2d(planes),
            )
        layers = [BasicBlock(self.inplanes, planes, stride, downsample)]
        self.inplanes = planes
        layers += [BasicBlock(planes, planes) for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    def forward(self, x):
        x = self.conv1(x)
        x = self.bn1(x)
        x = self.relu(x)
        x = self.layer1(x)
        x = self.layer2(x)
        x = self.layer3(x)
        x = self.avgpool(x)
        x = x.view(x.size(0), -1)
        x = self.fc(x)
        return x


class Bottleneck(nn.Module):
    """torchvision's Bottleneck (ResNet v1.5: the stride on the 3x3 conv)."""

    expansion = 4

    def __init__(self, inplanes, planes, stride=1, downsample=None):
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, planes * 4, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * 4)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample
        self.stride = stride

    def forward(self, x):
        identity = x
        out = self.conv1(x)
        out = self.bn1(out)
        out = self.relu(out)
        out = self.conv2(out)
        out = self.bn2(out)
        out = self.relu(out)
        out = self.conv3(out)
        out = self.bn3(out)
        if self.downsample is not None:
            identity = self.downsample(x)
        out += identity
        out = self.relu(out)
        return out


class ResNet50(nn.Module):
    """torchvision's ResNet-50 (names and layout of its state dict)."""

    def __init__(self, layers=(3, 4, 6, 3), num_classes=1000):
        super().__init__()
        self.inplanes = 64
        self.conv1 = nn.Conv2d(3, 64, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self.layer1 = self._make_layer(64, layers[0])
        self.layer2 = self._make_layer(128, layers[1], stride=2)
        self.layer3 = self._make_layer(256, layers[2], stride=2)
        self.layer4 = self._make_layer(512, layers[3], stride=2)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(512 * 4, num_classes)

    def _make_layer(self, planes, blocks, stride=1):
        downsample = None
        if stride != 1 or self.inplanes != planes * 4:
            downsample = nn.Sequential(
                nn.Conv2d(self.inplanes, planes * 4, 1, stride=stride, bias=False),
                nn.BatchNorm2d(planes * 4),
            )
        layers = [Bottleneck(self.inplanes, planes, stride, downsample)]
        self.inplanes = planes * 4
        layers += [Bottleneck(self.inplanes, planes) for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    def _forward_impl(self, x):
        x = self.conv1(x)
        x = self.bn1(x)
        x = self.relu(x)
        x = self.maxpool(x)
        x = self.layer1(x)
        x = self.layer2(x)
        x = self.layer3(x)
        x = self.layer4(x)
        x = self.avgpool(x)
        x = torch.flatten(x, 1)
        x = self.fc(x)
        return x

    def forward(self, x):
        return self._forward_impl(x)


def _random_bn(model, seed):
    """Random affine parameters and running statistics in every batch norm."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                n = m.num_features
                m.weight.copy_(torch.rand(n, generator=gen) * 1.5 + 0.25)
                m.bias.copy_(torch.randn(n, generator=gen) * 0.1)
                m.running_mean.copy_(torch.randn(n, generator=gen) * 0.1)
                m.running_var.copy_(torch.rand(n, generator=gen) * 1.5 + 0.5)
    return model.eval()


def _cohen_model(depth, pool=8, seed=0):
    torch.manual_seed(seed)
    net = nn.Sequential(
        NormalizeLayer(CIFAR_MEAN, CIFAR_STD), CifarResNet(depth, pool=pool)
    )
    return _random_bn(net, seed)


def _fused_norm(conv, bn, shape):
    """Exact norm of x -> bn(conv(x)) on inputs of shape (dense SVD)."""
    return _explicit_norm(copy.deepcopy(nn.Sequential(conv, bn)), shape)


def test_cifar_resnet_bound_is_the_graph_formula():
    # Cohen's architecture on 8x8 inputs (depth 8: one block per stage), the
    # bound recomputed by hand from dense SVDs of each conv + BN pair:
    # (1 / min sd) ||bn1 conv1|| prod_blocks (||bn2 conv2|| ||bn1 conv1|| +
    # L(shortcut)) (1/2 for the 2x2 average) ||fc||.
    net = _cohen_model(8, pool=2, seed=1)
    resnet = net[1]
    L = 1.0 / float(torch.tensor(CIFAR_STD).min())
    L *= _fused_norm(resnet.conv1, resnet.bn1, (3, 8, 8))
    shape = (16, 8, 8)
    for stage in (resnet.layer1, resnet.layer2, resnet.layer3):
        (block,) = stage
        main = _fused_norm(block.conv1, block.bn1, shape)
        out_shape = (block.conv1.out_channels, *(n // block.stride for n in shape[1:]))
        main *= _fused_norm(block.conv2, block.bn2, out_shape)
        short = 1.0
        if block.downsample is not None:
            short = _fused_norm(block.downsample[0], block.downsample[1], shape)
        L *= main + short
        shape = out_shape
    L *= 0.5 * float(np.linalg.norm(resnet.fc.weight.detach().double().numpy(), 2))
    est = SpectralProductLipschitz(input_shape=(3, 8, 8), conv_method="explicit")
    b = est.logit_constant(net)
    assert b == pytest.approx(L, rel=1e-7)
    assert b >= L
    x = torch.rand(3, 3, 8, 8, generator=_seed(2))
    assert float(_power_lower_bound(net, x, 10).max()) <= b


@pytest.mark.parametrize(
    "depth", [20, pytest.param(110, marks=pytest.mark.slow)]
)  # fmt: skip
def test_cohen_cifar_resnet_bound_above_power_iteration(depth):
    # ResNet-20 / ResNet-110 as released by Cohen et al. (NormalizeLayer
    # first, 3x32x32 inputs), random weights and batch-norm statistics.
    net = _cohen_model(depth, seed=3)
    est = SpectralProductLipschitz(input_shape=(3, 32, 32))
    net.train()  # bounded in eval mode; the training flags are restored
    b = est.logit_constant(net)
    assert all(m.training for m in net.modules())
    net.eval()
    assert math.isfinite(b) and b > 0
    gen = _seed(4)
    x = torch.rand(2, 3, 32, 32, generator=gen)
    lower = _power_lower_bound(net, x, 6 if depth == 20 else 3)
    assert float(lower.max()) <= b
    # Every way of bounding the convolutions is above the same lower bound,
    # and the exact ones are the tightest.
    if depth == 20:
        b_four = SpectralProductLipschitz(
            input_shape=(3, 32, 32), conv_method="fourier"
        ).logit_constant(net)
        b_taps = SpectralProductLipschitz(conv_method="taps").logit_constant(net, x)
        assert b <= b_four * (1 + 1e-9) <= b_taps * (1 + 1e-9)


def test_resnet50_torchvision_layout_bound_above_power_iteration():
    net = ResNet50()
    # torchvision's ResNet-50: 25,557,032 parameters, 320 state-dict entries
    # under its names (torchvision.models.resnet50().state_dict()).
    assert sum(p.numel() for p in net.parameters()) == 25_557_032
    keys = list(net.state_dict())
    assert len(keys) == 320
    assert keys[:2] == ["conv1.weight", "bn1.weight"]
    assert "layer4.0.downsample.1.running_var" in keys and keys[-1] == "fc.bias"
    net = _random_bn(net, 5)
    # Small images and Fourier bounds above 2**20 entries keep it fast.
    est = SpectralProductLipschitz(input_shape=(3, 32, 32), max_matrix_size=2**20)
    b = est.logit_constant(net)
    x = torch.rand(2, 3, 32, 32, generator=_seed(6))
    lower = _power_lower_bound(net, x, 3)
    assert math.isfinite(b) and float(lower.max()) <= b


def test_digits_cnn_is_the_product_of_its_layers():
    from smoothlearn._demo import DigitsCNN

    _seed(7)
    net = DigitsCNN().eval()  # forward reshapes (batch, 64) to images
    feats = net.features
    expected = (
        _explicit_norm(copy.deepcopy(feats[0]), (1, 8, 8))
        * _explicit_norm(copy.deepcopy(feats[2]), (16, 4, 4))
        * float(np.linalg.norm(net.classifier.weight.detach().double().numpy(), 2))
    )
    b = SpectralProductLipschitz(input_shape=(64,)).logit_constant(net)
    assert b == pytest.approx(expected, rel=1e-7)
    x = torch.rand(5, 64, generator=_seed(8))
    assert float(_power_lower_bound(net, x).max()) <= b


class LinearMaps(nn.Module):
    """Functional linear maps with constant weights, split and stack."""

    def __init__(self):
        super().__init__()
        gen = torch.Generator().manual_seed(30)
        self.W = nn.Parameter(torch.randn(5, 6, generator=gen))
        self.M = nn.Parameter(torch.randn(5, 4, generator=gen))
        self.K = nn.Parameter(torch.randn(3, 2, 3, generator=gen))
        self.register_buffer("var", torch.rand(3, generator=gen) + 0.5)
        self.register_buffer("mean", torch.randn(3, generator=gen))
        self.register_buffer("gamma", torch.randn(3, generator=gen))

    def forward(self, x):
        g = F.linear(x, self.W) @ self.M  # ||W|| ||M||
        a, b = torch.chunk(g, 2, dim=1)  # each a restriction of g
        c = torch.stack([a, b], dim=1)  # sqrt(2) L(g): (B, 2, 2)
        y = F.conv1d(c, self.K, padding=1)
        y = F.batch_norm(y, self.mean, self.var, self.gamma, None, training=False)
        return y.flatten(1).view_as(y.flatten(1))


def test_functional_linear_maps():
    net = LinearMaps().eval()
    b = SpectralProductLipschitz(input_shape=(6,)).logit_constant(net)
    W, M = (t.detach().double().numpy() for t in (net.W, net.M))
    conv = nn.Conv1d(2, 3, 3, padding=1, bias=False)
    with torch.no_grad():
        conv.weight.copy_(net.K)
    scale = float((net.gamma.abs() / torch.sqrt(net.var + 1e-5)).max())
    expected = (
        np.linalg.norm(W, 2) * np.linalg.norm(M, 2) * math.sqrt(2)
        * _explicit_norm(conv, (2, 2)) * scale
    )  # fmt: skip
    assert b == pytest.approx(expected, rel=1e-7)
    x = torch.randn(3, 6, generator=_seed(31))
    assert float(_power_lower_bound(net, x).max()) <= b


def test_linear_batchnorm_fusion_only_on_features():
    _seed(32)
    lin, bn = nn.Linear(4, 6), _bn_with_stats(6, dims=1)
    net = nn.Sequential(lin, bn, nn.ReLU(), nn.Linear(6, 3)).eval()
    fused = _explicit_norm(copy.deepcopy(nn.Sequential(lin, bn)), (4,))
    second = float(np.linalg.norm(net[3].weight.detach().double().numpy(), 2))
    b = SpectralProductLipschitz(input_shape=(4,)).logit_constant(net)
    assert b == pytest.approx(fused * second, rel=1e-7)
    # On (N, C, L) inputs BatchNorm1d scales the C rows of a linear layer's
    # output, not its features: no fusion, the product of the two bounds.
    lin3, bn3 = nn.Linear(4, 4), _bn_with_stats(3, dims=1)
    net3 = nn.Sequential(lin3, bn3).eval()
    b3 = SpectralProductLipschitz(input_shape=(3, 4)).logit_constant(net3)
    s = float((bn3.weight.detach().abs() / torch.sqrt(bn3.running_var + 1e-5)).max())
    W = lin3.weight.detach().double().numpy()
    assert b3 == pytest.approx(np.linalg.norm(W, 2) * s, rel=1e-7)
    assert _explicit_norm(copy.deepcopy(net3), (3, 4)) <= b3


class Elementwise(nn.Module):
    def __init__(self, fn):
        super().__init__()
        self.fn = fn

    def forward(self, x):
        return self.fn(x)


@pytest.mark.parametrize(
    "fn",
    [
        F.relu, torch.relu, lambda x: x.relu(), lambda x: F.leaky_relu(x, 1.5),
        lambda x: F.leaky_relu(x), lambda x: F.elu(x, 2.0), F.selu, F.celu,
        F.gelu, lambda x: F.gelu(x, approximate="tanh"), F.silu, F.mish,
        torch.tanh, torch.sigmoid, lambda x: x.sigmoid(), F.softplus,
        F.hardswish, F.hardsigmoid, F.hardtanh, F.relu6, F.softsign,
        F.logsigmoid, F.tanhshrink, lambda x: torch.clamp(x, -1.0, 2.0),
        torch.abs, lambda x: -x,
    ],
)  # fmt: skip
def test_functional_activation_constants_bound_the_slope(fn):
    # As for the modules: the largest |f'| on a grid is <= the rule's
    # constant and within 1% of it.
    x = torch.linspace(-30, 30, 600_001, dtype=torch.float64, requires_grad=True)
    (g,) = torch.autograd.grad(fn(x).sum(), x)
    b = SpectralProductLipschitz(input_shape=(3,)).logit_constant(Elementwise(fn))
    slope = float(g.abs().max())
    assert slope <= b <= 1.01 * slope
