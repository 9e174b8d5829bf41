"""Soft certification with betting bounds from the estimation draws (issue 20).

The streaming path (a BettingState per planned quantity, fed in draw order
during the estimation pass), its storage in CertificationResult and
recertification from the stored states, and validity against known truth.
"""

import math

import numpy as np
import pytest
import torch
from scipy.stats import binom

from smoothlearn import CertificationResult, SmoothedClassifier
from smoothlearn._betting_accumulator import BettingAccumulator, pack, unpack
from smoothlearn.intervals import (
    BettingInterval,
    Bonferroni,
    ClassPartitioning,
    EmpiricalBernstein,
    Hoeffding,
    TopClass,
)
from smoothlearn.sampling import STAGE_ESTIMATION, accumulate
from smoothlearn.soft import _ChosenScoreSums, _per_input_scores


class _Logit2(torch.nn.Module):
    """Logits (0, w.x + b): class 1 iff w.x + b > 0."""

    def __init__(self, w, b):
        super().__init__()
        self.lin = torch.nn.Linear(len(w), 1, dtype=torch.float64)
        with torch.no_grad():
            self.lin.weight.copy_(torch.tensor([w], dtype=torch.float64))
            self.lin.bias.fill_(b)

    def forward(self, x):
        out = self.lin(x)
        return torch.cat([torch.zeros_like(out), out], dim=1)


class _Logit3(torch.nn.Module):
    """Three classes: logits W x with a fixed 3 x 2 matrix."""

    def __init__(self):
        super().__init__()
        self.lin = torch.nn.Linear(2, 3, bias=False, dtype=torch.float64)
        with torch.no_grad():
            self.lin.weight.copy_(
                torch.tensor(
                    [[1.0, 0.0], [-0.5, 0.8], [-0.5, -0.8]], dtype=torch.float64
                )
            )

    def forward(self, x):
        return self.lin(x)


_W, _B = [0.6, -0.8, 0.0], 0.1  # ||w|| = 1


def _fit(X, model=None, y=None, **kw):
    params = dict(sigma=0.5, n0=50, n=500, smoothing="soft", random_state=0)
    params.update(kw)
    if model is None:
        model = _Logit2(_W, _B)
        y = (X @ np.array(_W) + _B > 0).astype(int)
        y[:2] = [0, 1]
    return SmoothedClassifier(model, **params).fit(X, y)


def _inputs(n_inputs, seed=0, dim=3):
    return np.random.default_rng(seed).normal(size=(n_inputs, dim))


def _true_class1(m, t, sigma):
    """E[sigmoid(t (m + sigma Z))] by 80-point Gauss-Hermite quadrature."""
    x, wts = np.polynomial.hermite_e.hermegauss(80)
    vals = 1 / (1 + np.exp(-t * (m[:, None] + sigma * x[None])))
    return vals @ wts / np.sqrt(2 * np.pi)


def test_soft_default_is_topclass_betting_from_the_draws():
    X = _inputs(6)
    res = _fit(X).certify(X)
    assert isinstance(res.interval, TopClass)
    assert isinstance(res.interval.binomial, BettingInterval)
    assert res.guaranteed and res.bounds_from_betting_state
    assert res.betting_state["log_k"].shape[:2] == (6, 1)
    # the draws' betting bound is never looser than the order-free one on the
    # same sums for these low-variance scores (the reason for the streaming path)
    free = CertificationResult.from_statistics(
        selection=res.selection, estimation=res.estimation,
        estimation_sq=res.estimation_sq, n0=res.n0, n=res.n, sigma=res.sigma,
        alpha=res.alpha, interval=res.interval, smoothing="soft",
        score_map=res.score_map, temperature=res.temperature,
    )  # fmt: skip
    assert not free.bounds_from_betting_state
    assert np.mean(res.pA_lower >= free.pA_lower) >= 0.5


def test_other_intervals_keep_the_sums_path():
    X = _inputs(5)
    res = _fit(X, interval=TopClass(EmpiricalBernstein())).certify(X)
    assert res.betting_state is None and not res.bounds_from_betting_state
    again = CertificationResult.from_statistics(
        selection=res.selection, estimation=res.estimation,
        estimation_sq=res.estimation_sq, n0=res.n0, n=res.n, sigma=res.sigma,
        alpha=res.alpha, interval=res.interval, smoothing="soft",
        score_map=res.score_map, temperature=res.temperature,
    )  # fmt: skip
    assert again == res


def _recorded_draws(clf, X):
    """The estimation draws' class scores per input, in draw order, offline."""
    s = clf._soft_selection(X)
    out = [[] for _ in range(len(X))]

    class Record(_ChosenScoreSums):
        key = None

        def update(self, acc, output, owner, index):
            v = _per_input_scores(output, self.codes, self.temps, index)
            for r, row in zip(index.tolist(), v.numpy(), strict=True):
                out[r].append(row)
            super().update(acc, output, owner, index)

    accumulate(
        clf._adapter(), X, clf.n, clf.sigma, Record(s.codes, s.temps),
        stage=STAGE_ESTIMATION, seed=s.root, batch_size=clf.batch_size,
    )  # fmt: skip
    return s, np.array(out)  # (n_inputs, n, K)


@pytest.mark.parametrize(
    "procedure, radius",
    [
        (TopClass(BettingInterval()), "mono"),
        (Bonferroni(BettingInterval()), "multi"),
        (ClassPartitioning(BettingInterval()), "multi"),
    ],
)
def test_streaming_equals_bound_from_states_on_offline_draws(procedure, radius):
    """Exact equality with the documented recipe on the same draws.

    ``batch_size = n``: each engine batch is one input's n draws, the split
    the offline state sees too.
    """
    X = _inputs(4, seed=3, dim=2)
    y = np.array([0, 1, 2, 0])
    n = 300
    clf = _fit(
        X, model=_Logit3(), y=y, n=n, interval=procedure, radius=radius,
        batch_size=n, temperature=2.0,
    )  # fmt: skip
    res = clf.certify(X)
    assert res.bounds_from_betting_state
    s, scores = _recorded_draws(clf, X)
    selection = s.sums[s.chosen, np.arange(len(X))]
    np.testing.assert_array_equal(selection, res.selection)
    plan = procedure.plan(selection, kind=radius)
    state = BettingInterval().new_state(
        plan.valid.shape, n, plan.design_alpha(clf.alpha), side=plan.sides()
    )
    state.update(plan.draws(scores))
    bounds = procedure.bound_from_states(plan, state, clf.alpha, kind=radius)
    np.testing.assert_array_equal(bounds.pA_lower, res.pA_lower)
    np.testing.assert_array_equal(bounds.pB_upper, res.pB_upper)
    np.testing.assert_array_equal(bounds.n_bounds, res.n_bounds)
    np.testing.assert_allclose(scores.sum(axis=1), res.estimation, rtol=1e-12)
    # another alpha from the stored states: the same reading of the same state
    other = procedure.bound_from_states(plan, state, 0.01, kind=radius)
    np.testing.assert_array_equal(res.recertify(alpha=0.01).pA_lower, other.pA_lower)


def test_accumulator_handles_batches_across_inputs():
    """Batches cutting across inputs (and shuffled rows) feed each input in order."""
    rng = np.random.default_rng(0)
    n_inputs, n, K = 5, 97, 3
    scores = rng.dirichlet([4.0, 1.0, 1.0], size=(n_inputs, n))
    sel = rng.dirichlet([4.0, 1.0, 1.0], size=n_inputs) * 50
    proc = Bonferroni(BettingInterval(n_grid=24))
    plan = proc.plan(sel)
    bet = proc.binomial
    # reference: input by input, in chunks cut where batches of 40 rows cut
    ref = bet.new_state(plan.valid.shape, n, plan.design_alpha(0.01), side=plan.sides())
    acc = BettingAccumulator(bet, plan, n, 0.01, offset=10)
    flat = scores.reshape(-1, K)
    owner = np.repeat(np.arange(n_inputs), n)
    for start in range(0, n_inputs * n, 40):
        stop = min(start + 40, n_inputs * n)
        # inputs' rows interleaved at random, each input's own draws in order
        batch_rows = owner[start:stop][rng.permutation(stop - start)]
        batch = np.empty((stop - start, K))
        for i in np.unique(batch_rows):
            batch[batch_rows == i] = flat[start:stop][owner[start:stop] == i]
        acc.update(batch, batch_rows + 10)
        for i in np.unique(owner[start:stop]):
            part = flat[start:stop][owner[start:stop] == i]
            d = plan.draws(np.broadcast_to(part, (n_inputs, *part.shape)))[i]
            ref.update(d, rows=np.arange(K) + i * K)
    assert acc.state.n_draws == n
    np.testing.assert_array_equal(acc.state.bound(0.01), ref.bound(0.01))
    # pack / unpack, and concatenation of two chunks of inputs
    packed = acc.result()
    assert all(v.shape[0] == n_inputs for v in packed.values())
    plan2, state2 = unpack(packed)
    np.testing.assert_array_equal(state2.bound(0.003), acc.state.bound(0.003))
    halves = [
        {k: v[:2] for k, v in packed.items()},
        {k: v[2:] for k, v in packed.items()},
    ]
    joined = {k: np.concatenate([h[k] for h in halves]) for k in packed}
    np.testing.assert_array_equal(unpack(joined)[1].bound(0.01), ref.bound(0.01))
    with pytest.raises(ValueError, match="rows"):
        acc.update(flat[:2], np.array([0, 1]))
    with pytest.raises(ValueError, match="betting_state"):
        unpack({k: v for k, v in packed.items() if k != "log_k"})
    assert pack(plan2, state2).keys() == packed.keys()


def test_save_load_and_recertify_from_the_states(tmp_path):
    X = _inputs(8, seed=4, dim=2)
    y = np.array([0, 1, 2, 0, 1, 2, 0, 1])
    res = _fit(
        X, model=_Logit3(), y=y, n=400, interval=Bonferroni(BettingInterval()),
        radius="multi", temperature=2.0,
    ).certify(X)  # fmt: skip
    path = tmp_path / "r.npz"
    res.save(path)
    with np.load(path, allow_pickle=False) as f:
        assert "betting_log_k" in f.files
    back = CertificationResult.load(path)
    assert back == res and back.recertify() == res
    # from the states: any alpha, radius kind, Lipschitz constant, and another
    # procedure bounding the same quantities (TopClass: quantity 0 only)
    for kw in (
        dict(alpha=0.01),
        dict(radius="mono"),
        dict(radius="margin"),
        dict(lipschitz=1.3),
        dict(interval=TopClass(BettingInterval()), radius="mono"),
    ):
        assert back.recertify(**kw).bounds_from_betting_state, kw
    looser = back.recertify(alpha=0.0001)
    assert np.all(looser.pA_lower <= res.pA_lower)
    # what the states cannot serve: the sums path (order-free betting bound,
    # valid) or another interval altogether
    mono = _fit(
        X, model=_Logit3(), y=y, n=400, interval=Bonferroni(BettingInterval()),
        radius="mono", temperature=2.0,
    ).certify(X)  # fmt: skip
    multi = mono.recertify(radius="multi")
    assert not multi.bounds_from_betting_state
    assert multi.betting_state is not None  # kept for later recertifications
    assert multi.recertify(radius="mono") == mono
    other = back.recertify(interval=Bonferroni(BettingInterval(truncation=(0.5,))))
    assert not other.bounds_from_betting_state
    eb = back.recertify(interval=TopClass(Hoeffding()))
    assert not eb.bounds_from_betting_state
    # a state that does not fit is refused, naming the parameter
    with pytest.raises(ValueError, match="betting_state"):
        CertificationResult.from_statistics(
            selection=res.selection[:4], estimation=res.estimation[:4],
            estimation_sq=res.estimation_sq[:4], n0=res.n0, n=res.n,
            sigma=res.sigma, alpha=res.alpha, interval=res.interval,
            smoothing="soft", betting_state=res.betting_state,
        )  # fmt: skip
    with pytest.raises(ValueError, match="betting_state"):
        CertificationResult.from_statistics(
            selection=res.selection, estimation=res.estimation,
            estimation_sq=res.estimation_sq, n0=res.n0, n=res.n + 1,
            sigma=res.sigma, alpha=res.alpha, interval=res.interval,
            smoothing="soft", betting_state=res.betting_state,
        )  # fmt: skip


def test_older_result_files_still_load(tmp_path):
    X = _inputs(4)
    res = _fit(X, interval=TopClass(EmpiricalBernstein())).certify(X)
    meta, arrays = res._npz_payload()
    meta["format_version"] = 2
    import json

    np.savez(tmp_path / "v2.npz", meta=np.array(json.dumps(meta)), **arrays)
    back = CertificationResult.load(tmp_path / "v2.npz")
    assert back == res and back.betting_state is None


@pytest.mark.slow
@pytest.mark.parametrize(
    "procedure, radius", [(None, "mono"), (Bonferroni(BettingInterval()), "multi")]
)
def test_betting_certificates_are_valid_against_known_radius(procedure, radius):
    """Radius past the true one, or a wrong class, counted over 600 inputs.

    Logits ``(0, x_0)`` and softmax at ``t = 60``: the soft smoothed class-1
    score is ``E[sigmoid(t (x_0 + sigma Z))]``, so the boundary is ``x_0 =
    0`` and the true radius of ``x`` is ``|x_0|``; at this ``t`` Cohen's
    radius from the true score is within 0.3 % of it, so a bound above the
    truth shows up as a radius beyond ``|x_0|``.  Each input fails with
    probability at most ``alpha = 0.2``; the test flags when the count
    exceeds the ``1 - 1e-6`` quantile of Binomial(600, 0.2), a false-alarm
    rate below 1e-6 per case.  A plug-in bound (the sample mean) fails about
    half the time and would be flagged.
    """
    alpha, sigma, t = 0.2, 0.5, 60.0
    rng = np.random.default_rng(7)
    x0 = rng.uniform(-0.45, 0.45, size=600)
    X = np.stack([x0, rng.normal(size=600)], axis=1)  # distinct inputs
    model = _Logit2([1.0, 0.0], 0.0)
    y = (x0 > 0).astype(int)
    kw = {} if procedure is None else dict(interval=procedure)
    res = SmoothedClassifier(
        model, sigma=sigma, n0=64, n=1000, smoothing="soft", temperature=t,
        alpha=alpha, radius=radius, random_state=5, batch_size=4096, **kw,
    ).fit(X, y).certify(X)  # fmt: skip
    assert res.bounds_from_betting_state
    p1 = _true_class1(x0, t, sigma)
    idx = np.where(res.abstained, 0, res.prediction).astype(int)
    pA = np.where(idx == 1, p1, 1 - p1)
    fail = ~res.abstained & (
        (idx != (x0 > 0)) | (res.radius > np.abs(x0) + 1e-9) | (res.pA_lower > pA)
    )
    assert fail.sum() <= binom.isf(1e-6, len(X), alpha), int(fail.sum())
    assert (~res.abstained).sum() > 400  # the test has power
    # recertified from the states with the true logit constant (|w| = 1, read
    # as the K-vector (0, x_0): constant 1): still valid
    lip = res.recertify(lipschitz=1.0)
    assert lip.bounds_from_betting_state
    assert np.all(lip.score_lipschitz == math.sqrt(2) / 4 * t)
    fail = ~lip.abstained & (lip.radius > np.abs(x0) + 1e-9)
    assert fail.sum() <= binom.isf(1e-6, len(X), alpha), int(fail.sum())
