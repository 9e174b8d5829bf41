"""Tests of the multi-class procedures: TopClass (Cohen), Bonferroni, CPM."""

import numpy as np
import pytest
from scipy.stats import binom
from sklearn.base import clone
from statsmodels.stats.proportion import proportion_confint

from smoothlearn.intervals import (
    PROCEDURES,
    Bonferroni,
    ClassBounds,
    ClassPartitioning,
    ClopperPearson,
    EmpiricalBernstein,
    Hoeffding,
    MultiClassProcedure,
    TopClass,
    Wilson,
    get_procedure,
)
from smoothlearn.radius import gaussian_radius
from smoothlearn.stats import procedure_validity

PROCS = [TopClass, Bonferroni, ClassPartitioning]

N = 100_000
ALPHA = 0.001
# SCIENCE.md section 3.4 CPM test vectors: (selection, estimation, CPM buckets,
# pA_lower, pB_upper, R_multi / sigma for CPM, R_multi / sigma for Bonferroni,
# R_mono / sigma for Cohen (0 = abstain)).
CASES = [
    (
        [60, 20, 8, 7, 3, 2, 0, 0, 0, 0],
        [58000, 21000, 8000, 6500, 3500, 2000, 400, 300, 200, 100],
        3,
        0.574678,
        0.214411,
        0.48975,
        0.48842,
        0.18954,
    ),
    (
        [50, 15, 12, 10, 8, 5, 0, 0, 0, 0],
        [49000, 16000, 12500, 9500, 7000, 5000, 500, 300, 100, 100],
        5,
        0.484400,
        0.164139,
        0.46924,
        0.46846,
        0.0,
    ),
    (
        [100, 0, 0, 0, 0, 0, 0, 0, 0, 0],
        [99800, 100, 50, 50, 0, 0, 0, 0, 0, 0],
        3,
        0.997473,
        0.001387,
        2.89759,
        2.88999,
        2.81012,
    ),
]


# ------------------------------------------------------- reference implementations


def _cp_lower(k, n, alpha):
    # statsmodels' two-sided alpha is split over two sides: 2 * alpha -> one-sided.
    return proportion_confint(k, n, alpha=2 * alpha, method="beta")[0]


def _cp_upper(k, n, alpha):
    return proportion_confint(k, n, alpha=2 * alpha, method="beta")[1]


def _cpm_reference(sel, est, n, alpha):
    """SCIENCE.md 3.1 literally, one input at a time, with statsmodels bounds."""
    order = sorted(range(len(sel)), key=lambda c: (-sel[c], c))
    i1, i2, rest = order[0], order[1], list(order[2:])
    buckets = [[i1], [i2]]
    while rest and sum(sel[c] for c in rest) > sel[i2]:
        buckets.append([rest.pop(0)])
    if rest:
        buckets.append(rest)
    a = alpha / len(buckets)
    pa = _cp_lower(est[i1], n, a)
    pb = max(_cp_upper(sum(est[c] for c in b), n, a) for b in buckets[1:])
    return i1, pa, pb, len(buckets)


class NaiveRunnerUp(MultiClassProcedure):
    """The invalid rule of SCIENCE.md 3.4: runner-up from selection, no correction."""

    def bound(
        self, selection, estimation, n, alpha, *, estimation_sq=None, kind="multi"
    ):
        sel = np.asarray(selection, dtype=float)
        est = np.asarray(estimation, dtype=float)
        order = np.argsort(-sel, axis=1, kind="stable")
        rows = np.arange(sel.shape[0])
        cp = ClopperPearson()
        pa = cp.lower(est[rows, order[:, 0]], n, alpha)
        pb = cp.upper(est[rows, order[:, 1]], n, alpha)
        return ClassBounds(order[:, 0], pa, pb, np.full(sel.shape[0], 2))


# ---------------------------------------------------------------- SCIENCE vectors


@pytest.mark.parametrize("case", CASES, ids=["case1", "case2", "case3"])
def test_science_cpm_vectors(case):
    sel, est, k, pa, pb, r_cpm, r_bonf, r_mono = case
    b = ClassPartitioning().bound([sel], [est], N, ALPHA)
    assert b.prediction[0] == 0 and b.n_bounds[0] == k
    assert abs(b.pA_lower[0] - pa) < 1e-6
    assert abs(b.pB_upper[0] - pb) < 1e-6
    assert abs(gaussian_radius(b.pA_lower, b.pB_upper)[0] - r_cpm) < 1e-5

    bo = Bonferroni().bound([sel], [est], N, ALPHA)
    assert bo.n_bounds[0] == 10
    assert abs(gaussian_radius(bo.pA_lower, bo.pB_upper)[0] - r_bonf) < 1e-5

    for proc in PROCS:
        m = proc().bound([sel], [est], N, ALPHA, kind="mono")
        assert m.n_bounds[0] == 1
        assert abs(gaussian_radius(m.pA_lower, kind="mono")[0] - r_mono) < 1e-5
        np.testing.assert_array_equal(m.pB_upper, 1 - m.pA_lower)


def test_science_bonferroni_case1_bounds():
    # SCIENCE.md 3.4 case 1: Bonferroni (K = 10) gives 0.574183 / 0.214823.
    sel, est = CASES[0][0], CASES[0][1]
    b = Bonferroni().bound([sel], [est], N, ALPHA)
    assert abs(b.pA_lower[0] - 0.574183) < 1e-6
    assert abs(b.pB_upper[0] - 0.214823) < 1e-6


# ---------------------------------------------------------------- vs references


@pytest.mark.parametrize("seed", range(2))
def test_cpm_and_bonferroni_match_per_input_reference(seed):
    # Small n0 and few classes make ties and every bucket shape frequent.
    rng = np.random.default_rng(seed)
    n_inputs, n_classes = 50, 6
    p = rng.dirichlet(np.full(n_classes, 0.7), size=n_inputs)
    sel = np.array([rng.multinomial(12, pi) for pi in p])
    n = rng.integers(50, 2000, size=n_inputs)
    est = np.array([rng.multinomial(ni, pi) for ni, pi in zip(n, p, strict=True)])
    b = ClassPartitioning().bound(sel, est, n, 0.01)
    bo = Bonferroni().bound(sel, est, n, 0.01)
    for i in range(n_inputs):
        pred, pa, pb, k = _cpm_reference(list(sel[i]), list(est[i]), n[i], 0.01)
        assert (b.prediction[i], b.n_bounds[i]) == (pred, k)
        np.testing.assert_allclose([b.pA_lower[i], b.pB_upper[i]], [pa, pb], atol=1e-12)
        others = [c for c in range(n_classes) if c != pred]
        a = 0.01 / n_classes
        pb_bonf = max(_cp_upper(est[i, c], n[i], a) for c in others)
        assert bo.prediction[i] == pred
        np.testing.assert_allclose(
            [bo.pA_lower[i], bo.pB_upper[i]],
            [_cp_lower(est[i, pred], n[i], a), pb_bonf],
            atol=1e-12,
        )


def test_batch_equals_one_at_a_time():
    rng = np.random.default_rng(4)
    sel = rng.multinomial(100, np.full(10, 0.1), size=50)
    est = rng.multinomial(5000, np.full(10, 0.1), size=50)
    for proc in PROCS:
        batch = proc().bound(sel, est, 5000, 0.001)
        for i in range(0, 50, 7):
            one = proc().bound(sel[i : i + 1], est[i : i + 1], 5000, 0.001)
            for field in ("prediction", "pA_lower", "pB_upper", "n_bounds"):
                assert getattr(one, field)[0] == getattr(batch, field)[i]


def test_tie_breaking_lowest_index_first():
    sel = [[3, 5, 5, 0], [4, 4, 4, 4], [0, 0, 0, 0]]
    est = [[100, 400, 300, 200], [250, 250, 250, 250], [1000, 0, 0, 0]]
    for proc in PROCS:
        b = proc().bound(sel, est, 1000, 0.01)
        np.testing.assert_array_equal(b.prediction, [1, 0, 0])
    # CPM row 1: I1 = 0, I2 = 1, rest {2, 3}: 8 > 4 -> peel 2; 4 > 4 false ->
    # merged {3}; 4 buckets.  Row 2: all zero -> {0}, {1}, {2, 3}.
    b = ClassPartitioning().bound(sel, est, 1000, 0.01)
    np.testing.assert_array_equal(b.n_bounds, [3, 4, 3])


def test_two_classes():
    sel, est = [[70, 30], [30, 70]], [[700, 300], [650, 350]]
    cpm = ClassPartitioning().bound(sel, est, 1000, 0.01)
    bonf = Bonferroni().bound(sel, est, 1000, 0.01)
    for b in (cpm, bonf):
        np.testing.assert_array_equal(b.n_bounds, [2, 2])
        np.testing.assert_array_equal(b.prediction, [0, 1])
    np.testing.assert_array_equal(cpm.pA_lower, bonf.pA_lower)
    np.testing.assert_array_equal(cpm.pB_upper, bonf.pB_upper)
    np.testing.assert_allclose(cpm.pA_lower[1], _cp_lower(350, 1000, 0.005))


def test_top_class_is_cohen():
    sel, est = CASES[0][0], CASES[0][1]
    for kind in ("multi", "mono"):
        b = TopClass().bound([sel], [est], N, ALPHA, kind=kind)
        assert b.n_bounds[0] == 1
        np.testing.assert_allclose(b.pA_lower[0], _cp_lower(58000, N, ALPHA))
        np.testing.assert_allclose(b.pB_upper[0], 1 - b.pA_lower[0])


def test_per_input_n_and_empty_input():
    sel = [[5, 1, 0], [5, 1, 0]]
    est = [[80, 15, 5], [800, 150, 50]]
    b = ClassPartitioning().bound(sel, est, [100, 1000], 0.01)
    assert b.pA_lower[1] > b.pA_lower[0]
    for proc in PROCS:
        e = proc().bound(np.zeros((0, 3)), np.zeros((0, 3)), 10, 0.01)
        assert e.prediction.shape == e.pA_lower.shape == (0,)


def test_result_types():
    b = ClassPartitioning().bound([[5, 1, 0]], [[80, 15, 5]], 100, 0.01)
    assert b.prediction.dtype == np.int64 and b.n_bounds.dtype == np.int64
    assert b.pA_lower.dtype == np.float64 and b.pB_upper.shape == (1,)


# ---------------------------------------------------------------- other intervals


def test_other_intervals_and_string_binomial():
    sel, est = CASES[0][0], CASES[0][1]
    h = ClassPartitioning(binomial=Hoeffding()).bound([sel], [est], N, ALPHA)
    np.testing.assert_allclose(
        h.pA_lower[0], 0.58 - np.sqrt(np.log(3 / ALPHA) / (2 * N)), rtol=1e-12
    )
    w = ClassPartitioning(binomial="wilson").bound([sel], [est], N, ALPHA)
    np.testing.assert_allclose(w.pA_lower[0], Wilson().lower(58000, N, ALPHA / 3))


@pytest.mark.parametrize("interval", [EmpiricalBernstein(), Hoeffding(), Wilson()])
def test_every_competitor_path_matches_reference(interval):
    # EmpiricalBernstein is not monotone in k (its variance term), so the
    # procedures bound every competitor; the others bound only the largest one.
    # Both paths must equal the explicit maximum over competitors.
    assert interval._monotone_in_k == (not isinstance(interval, EmpiricalBernstein))
    rng = np.random.default_rng(8)
    p = rng.dirichlet(np.ones(5), size=40)
    sel = np.stack([rng.multinomial(10, pi) for pi in p])
    est = np.stack([rng.multinomial(300, pi) for pi in p])
    bo = Bonferroni(binomial=interval).bound(sel, est, 300, 0.05)
    cpm = ClassPartitioning(binomial=interval).bound(sel, est, 300, 0.05)
    for i in range(40):
        pred = bo.prediction[i]
        others = [c for c in range(5) if c != pred]
        ref = max(interval.upper(est[i, c], 300, 0.01) for c in others)
        np.testing.assert_allclose(bo.pB_upper[i], ref, rtol=1e-12)
        order = sorted(range(5), key=lambda c: (-sel[i, c], c))
        rest, buckets = order[2:], [[order[1]]]
        while rest and sel[i, rest].sum() > sel[i, order[1]]:
            buckets.append([rest.pop(0)])
        if rest:
            buckets.append(rest)
        a = 0.05 / (len(buckets) + 1)
        ref = max(interval.upper(est[i, b].sum(), 300, a) for b in buckets)
        np.testing.assert_allclose(cpm.pB_upper[i], ref, rtol=1e-12)


def test_soft_statistics_empirical_bernstein():
    # Soft scores: every draw is one of a few simplex vectors (known exact
    # sums of squares of every bucket, computed from the draws themselves).
    rng = np.random.default_rng(5)
    atoms = rng.dirichlet(np.ones(6), size=4)
    idx = rng.integers(0, 4, size=(3, 2000))
    draws = atoms[idx]  # (3 inputs, 2000 draws, 6 classes)
    est, est_sq = draws.sum(axis=1), (draws**2).sum(axis=1)
    sel = np.array([[40, 30, 10, 10, 5, 5], [50, 10, 10, 0, 0, 0], [9, 9, 9, 9, 9, 9]])
    eb = EmpiricalBernstein()
    b = ClassPartitioning(binomial=eb).bound(sel, est, 2000, 0.01, estimation_sq=est_sq)

    # Reference for input 1: buckets {0}, {1}, {2}, {3, 4, 5}? Rest after I2 = 1:
    # 10 + 0 + 0 > 10 is false, so merged {2, 3, 4, 5}; k = 3.
    assert b.n_bounds[1] == 3
    merged = [2, 3, 4, 5]
    s_m = est[1, merged].sum()
    true_sq = (draws[1][:, merged].sum(axis=1) ** 2).sum()
    bound_sq = min(s_m, len(merged) * est_sq[1, merged].sum())
    assert bound_sq >= true_sq  # the documented rule is an upper bound
    ub_ref = max(
        eb.upper(est[1, 1], 2000, 0.01 / 3, sum_sq=est_sq[1, 1]),
        eb.upper(s_m, 2000, 0.01 / 3, sum_sq=bound_sq),
    )
    np.testing.assert_allclose(b.pB_upper[1], ub_ref)
    # Conservative: never tighter than with the (unknowable) true sum of squares.
    assert b.pB_upper[1] >= eb.upper(s_m, 2000, 0.01 / 3, sum_sq=true_sq) - 1e-15
    np.testing.assert_allclose(
        b.pA_lower[1], eb.lower(est[1, 0], 2000, 0.01 / 3, sum_sq=est_sq[1, 0])
    )
    # Soft statistics with a binomial interval: the validator's message.
    with pytest.raises(ValueError, match="'estimation' parameter must hold integer"):
        ClassPartitioning().bound(sel, est, 2000, 0.01, estimation_sq=est_sq)


def test_soft_statistics_validity_simulation():
    # Monte Carlo validity of CPM + empirical Bernstein on soft scores with a known
    # mean: 3 atoms on the simplex, drawn with known probabilities.  alpha = 0.2 to
    # give the test power; 2,000 trials: failures ~ Bin(2000, <= 0.2), mean <= 400,
    # sd <= 18; the threshold 500 is > 5.5 sd, a false-alarm rate < 1e-7.
    rng = np.random.default_rng(6)
    atoms = np.array(
        [[0.6, 0.3, 0.05, 0.05], [0.4, 0.1, 0.3, 0.2], [0.9, 0.05, 0, 0.05]]
    )
    w = np.array([0.5, 0.3, 0.2])
    mean = w @ atoms
    n = 200
    idx = rng.choice(3, size=(2000, n), p=w)
    draws = atoms[idx]
    est, est_sq = draws.sum(axis=1), (draws**2).sum(axis=1)
    sel_idx = rng.choice(3, size=(2000, 20), p=w)
    sel = atoms[sel_idx].sum(axis=1)
    proc = ClassPartitioning(binomial=EmpiricalBernstein())
    b = proc.bound(sel, est, n, 0.2, estimation_sq=est_sq)
    others = np.array([np.max(np.delete(mean, c)) for c in range(4)])
    fail = (b.pA_lower > mean[b.prediction]) | (b.pB_upper < others[b.prediction])
    assert fail.sum() <= 500


# ---------------------------------------------------------------- API, errors


def test_estimator_api_and_aliases():
    for proc in PROCS:
        p = proc(binomial=Hoeffding())
        assert clone(p).get_params()["binomial"].__class__ is Hoeffding
        assert "binomial" in proc().get_params()
    for name, cls in PROCEDURES.items():
        assert type(get_procedure(name)) is cls
    assert isinstance(get_procedure(None), TopClass)
    with pytest.raises(ValueError, match=r"'procedure' parameter.*'bonferroni'"):
        get_procedure("Bonferroni")


GOOD_SEL = [[5, 3, 2], [1, 8, 1]]
GOOD_EST = [[50, 30, 20], [10, 80, 10]]


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"selection": [5, 3, 2]}, "'selection' parameter must be a 2-D array"),
        ({"estimation": [[50, 30], [10, 80]]}, "must have the same shape"),
        ({"selection": [[5], [3]], "estimation": [[5], [3]]}, "n_classes >= 2"),
        ({"selection": [[5, np.nan, 2], [1, 8, 1]]}, "'selection' parameter contains"),
        ({"selection": [[5, -3, 2], [1, 8, 1]]}, "'selection' parameter must hold"),
        ({"estimation": [[50, -1, 20], [10, 80, 10]]}, "'estimation' parameter must"),
        ({"estimation": [[50, 30.5, 19.5], [10, 80, 10]]}, "integer counts"),
        ({"estimation": [[50, 130, 20], [10, 80, 10]]}, "must not exceed 'n'"),
        ({"estimation": [[50, 40, 20], [10, 80, 10]]}, "rows summing to at most"),
        ({"estimation": [[50, np.nan, 20], [10, 80, 10]]}, "contains NaN"),
        ({"n": 0}, "'n' parameter must hold integers >= 1"),
        ({"n": [100, 100, 100]}, "'n' parameter must be an int or an array"),
        ({"n": 100.5}, "'n' parameter must hold integers"),
        ({"alpha": 0.0}, "'alpha' parameter"),
        ({"alpha": 1.5}, "'alpha' parameter"),
        ({"alpha": [0.1, 0.1]}, "'alpha' parameter"),
        ({"kind": "binary"}, "'kind' parameter"),
        ({"estimation_sq": [[50, 30]]}, "'estimation_sq' parameter must have"),
    ],
)
def test_bad_input(kwargs, match):
    args = {"selection": GOOD_SEL, "estimation": GOOD_EST, "n": 100, "alpha": 0.01}
    args.update(kwargs)
    kind = args.pop("kind", "multi")
    sq = args.pop("estimation_sq", None)
    for proc in PROCS:
        with pytest.raises(ValueError, match=match):
            proc().bound(**args, kind=kind, estimation_sq=sq)


@pytest.mark.parametrize("proc", PROCS)
def test_bad_binomial(proc):
    with pytest.raises(ValueError, match="'binomial' parameter of"):
        proc(binomial="beta").bound(GOOD_SEL, GOOD_EST, 100, 0.01)
    with pytest.raises(ValueError, match="'binomial' parameter of"):
        proc(binomial=ClopperPearson).bound(GOOD_SEL, GOOD_EST, 100, 0.01)


# ---------------------------------------------------------------- validity


def _max_failures(n_trials, alpha, false_alarm=1e-6):
    """Smallest c with P(Binomial(n_trials, alpha) > c) < false_alarm.

    A procedure whose failure probability is <= alpha exceeds c failures with
    probability < false_alarm (binomial tails are monotone in the rate), so a
    test asserting ``n_failures <= c`` has a false-alarm rate below 1e-6.
    """
    c = int(binom.isf(false_alarm, n_trials, alpha))
    while binom.sf(c, n_trials, alpha) >= false_alarm:
        c += 1
    return c


def test_naive_runner_up_fails_quick():
    # 3,000 trials: the naive rule's bound failure rate is ~40% on this p (it
    # bounds the wrong runner-up whenever selection ranks 0.24 above 0.26);
    # a valid rule would exceed _max_failures(3000, 1e-3) = 14 with prob < 1e-6.
    res = procedure_validity(
        NaiveRunnerUp(), [0.5, 0.24, 0.26], 100, 10_000, 1e-3, 3000, random_state=0
    )
    assert res.n_failures > _max_failures(3000, 1e-3)
    for proc in ("bonferroni", "cpm"):
        ok = procedure_validity(
            proc, [0.5, 0.24, 0.26], 100, 10_000, 1e-3, 3000, random_state=0
        )
        assert ok.n_failures <= _max_failures(3000, 1e-3)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("p", "naive_rate"), [([0.5, 0.24, 0.26], 0.089), ([0.5, 0.22, 0.14, 0.14], 0.129)]
)
def test_validity_monte_carlo(p, naive_rate):
    # SCIENCE.md 3.4 acceptance test: n0 = 100, n = 1e4, alpha = 1e-3.  The naive
    # rule's radius fails 8.6-9.1% (first p) / 12.9% (second p) of the time (sd of
    # the estimate over 1e5 trials ~ 0.001, so the +-0.01 window is > 9 sd); the
    # bound failure (what alpha guards) is even more frequent.  Bonferroni and CPM
    # must stay within alpha: each assertion "n_failures <= c" uses the threshold c
    # of _max_failures, so a valid procedure fails it with probability < 1e-6.
    n_trials = 100_000
    naive = procedure_validity(
        NaiveRunnerUp(), p, 100, 10_000, 1e-3, n_trials, random_state=1
    )
    assert abs(naive.n_radius_failures / n_trials - naive_rate) < 0.01
    assert naive.n_failures >= naive.n_radius_failures
    assert naive.p_value < 1e-12
    c = _max_failures(n_trials, 1e-3)
    for proc in ("bonferroni", "cpm", "top_class"):
        res = procedure_validity(proc, p, 100, 10_000, 1e-3, n_trials, random_state=2)
        assert res.n_failures <= c, (proc, res.n_failures, c)
        assert res.n_radius_failures <= res.n_failures


@pytest.mark.slow
@pytest.mark.parametrize("proc", ["bonferroni", "cpm"])
def test_validity_monte_carlo_large_alpha(proc):
    # With alpha = 0.05 the test has power against moderate excesses: 20,000
    # trials, threshold c with false-alarm rate < 1e-6 (~ 1.25 alpha).
    c = _max_failures(20_000, 0.05)
    for p in ([0.4, 0.3, 0.2, 0.1], [0.34, 0.33, 0.33], [0.6] + [0.04] * 10):
        res = procedure_validity(proc, p, 50, 1000, 0.05, 20_000, random_state=3)
        assert res.n_failures <= c, (p, res.n_failures, c)
