"""BettingInterval and BettingState: validity, the monotonicity argument, the
grid's invariant, rounding, the issue's width targets, and bad input.

Validity by simulation uses the event that can make a bound fail: if
``mean < lower`` then the capital at the true mean reached ``1/alpha``
(monotonicity), so counting ``K_n(mean) >= 1/alpha`` over independent paths
bounds the failure rate of every bound built on that capital (from the draws,
from a state at any grid, at any recertified level).  Each such check passes
when the count is at most ``binom.isf(1e-6, n_paths, alpha)``: a valid method
fails a check with probability at most 1e-6 (the false-alarm rate of the
check), so the whole file's false-alarm rate is below 1e-4.
"""

from __future__ import annotations

import io

import numpy as np
import pytest
from scipy.stats import binom
from sklearn.base import clone

from smoothlearn.intervals import (
    INTERVALS,
    BettingInterval,
    BettingState,
    Bonferroni,
    BoundPlan,
    ClassPartitioning,
    ClopperPearson,
    EmpiricalBernstein,
    Hoeffding,
    TopClass,
    get_interval,
)
from smoothlearn.intervals import _betting_core as core
from smoothlearn.stats import binomial_coverage

FALSE_ALARM = 1e-6
CAPS = np.array([0.75, 0.99])


def _max_failures(n_paths, alpha):
    """Largest failure count a valid method shows with probability 1 - 1e-6."""
    return int(binom.isf(FALSE_ALARM, n_paths, alpha))


def _laws(rng):
    """The hardest [0, 1] laws: two-point, Bernoulli near 0 and 1, Beta."""
    return {
        "bernoulli(0.5)": (0.5, lambda s: (rng.random(s) < 0.5) * 1.0),
        "bernoulli(0.02)": (0.02, lambda s: (rng.random(s) < 0.02) * 1.0),
        "bernoulli(0.995)": (0.995, lambda s: (rng.random(s) < 0.995) * 1.0),
        "two-point {0.1, 1}, P(1)=0.97": (
            0.97 + 0.03 * 0.1,
            lambda s: np.where(rng.random(s) < 0.97, 1.0, 0.1),
        ),
        "beta(0.5, 0.5)": (0.5, lambda s: rng.beta(0.5, 0.5, s)),
        "beta(95, 5) (mean .95, sd .02)": (0.95, lambda s: rng.beta(95.0, 5.0, s)),
    }


def _rejects_at_mean(x, mu, alpha, alpha_design=None):
    """Whether the capital at the true mean reaches 1/alpha (lower side)."""
    rows, n = x.shape
    t_design = np.full(rows, -np.log(alpha if alpha_design is None else alpha_design))
    lam, _, _ = core.plugin_bets(x, 0, np.zeros(rows), np.zeros(rows), n, t_design)
    m = np.full((rows, 1), mu)
    return core.mixture(core.log_capital(x, lam, m, CAPS))[:, 0] >= -np.log(alpha)


# ----------------------------------------------------------------- validity
@pytest.mark.parametrize("n", [100, 1000])
def test_capital_at_true_mean_rarely_reaches_one_over_alpha(n):
    # Both sides (the upper bound is the lower bound on 1 - X) on every law.
    rng = np.random.default_rng(n)
    alpha, paths = 0.1, 3000 if n == 100 else 600
    for name, (mu, draw) in _laws(rng).items():
        x = draw((paths, n))
        for side, xs, m in (("lower", x, mu), ("upper", 1.0 - x, 1.0 - mu)):
            fails = int(_rejects_at_mean(xs, m, alpha).sum())
            assert fails <= _max_failures(paths, alpha), (name, side, fails)


def test_lower_from_draws_coverage():
    # The implemented bounds themselves (root finding, rounding), both sides.
    rng = np.random.default_rng(1)
    bet, alpha, paths, n = BettingInterval(), 0.1, 500, 200
    for name, (mu, draw) in _laws(rng).items():
        x = draw((paths, n))
        lo, hi = bet.lower_from_draws(x, alpha), bet.upper_from_draws(x, alpha)
        for side, fails in (("lower", np.sum(lo > mu)), ("upper", np.sum(hi < mu))):
            assert fails <= _max_failures(paths, alpha), (name, side, fails)


def test_state_coverage_at_other_levels():
    # A state tuned for alpha_d = 0.01, read at 0.2 and 0.05 (recertification).
    rng = np.random.default_rng(2)
    bet, paths, n = BettingInterval(n_grid=48), 300, 300
    mu, draw = _laws(rng)["two-point {0.1, 1}, P(1)=0.97"]
    x = draw((paths, n))
    state = bet.new_state(paths, n, 0.01).update(x[:, :70]).update(x[:, 70:])
    for alpha in (0.2, 0.05):
        fails = int(np.sum(state.lower(alpha) > mu) + np.sum(state.upper(alpha) < mu))
        assert fails <= _max_failures(2 * paths, alpha), (alpha, fails)


def test_order_free_bound_exact_binomial_coverage():
    # From (k, n) alone on Bernoulli draws: exact coverage, no simulation.
    p = np.linspace(0.001, 0.999, 199)
    for n, alpha in ((40, 0.05), (300, 0.01)):
        for side in ("lower", "upper", "two-sided"):
            res = binomial_coverage(BettingInterval(), p, n, alpha, side=side)
            assert res.valid, (n, side, res.min_coverage)


def test_order_free_bound_coverage_on_beta_scores():
    rng = np.random.default_rng(3)
    bet, alpha, paths, n = BettingInterval(), 0.1, 2000, 300
    for a, b in ((0.5, 0.5), (95.0, 5.0), (2.0, 30.0)):
        x = rng.beta(a, b, (paths, n))
        k, sq = x.sum(1), (x * x).sum(1)
        mu = a / (a + b)
        fails = np.sum(bet.lower(k, n, alpha, sq) > mu) + np.sum(
            bet.upper(k, n, alpha, sq) < mu
        )
        assert fails <= _max_failures(2 * paths, alpha), (a, b, fails)


# ------------------------------------------------- the monotonicity argument
@pytest.mark.parametrize("seed", range(5))
def test_capital_is_non_increasing_in_the_mean(seed):
    # Each strategy's capital, for arbitrary bets and draws in [0, 1]
    # (including 0 and 1), along a fine grid reaching both ends.
    rng = np.random.default_rng(seed)
    x = rng.choice([0.0, 1.0, rng.random()], size=(6, 80)) * (rng.random((6, 80)) < 0.9)
    lam = rng.exponential(rng.choice([0.1, 3.0, 50.0]), size=x.shape)
    m = np.sort(np.r_[rng.random(300), 1e-9, 1e-3, 0.5, 1 - 1e-9])
    lk = core.log_capital(x, lam, np.tile(m, (6, 1)), np.array([0.3, 0.75, 0.99]))
    assert np.all(np.diff(lk, axis=2) <= 1e-9 * (1.0 + np.abs(lk[:, :, 1:])))


@pytest.mark.parametrize("seed", range(4))
def test_bound_is_a_checked_point_below_which_all_reject(seed):
    rng = np.random.default_rng(seed)
    x = rng.beta(2.0, 0.3, size=(5, 400))
    alpha = 0.01
    low = np.atleast_1d(BettingInterval().lower_from_draws(x, alpha))
    t = np.full(5, -np.log(alpha))
    lam, _, _ = core.plugin_bets(x, 0, np.zeros(5), np.zeros(5), 400, t)
    # Off the returned point: every mean below it is rejected too.
    m = low[:, None] * np.linspace(0.0, 1.0, 50)[None, :]
    lk = core.mixture(core.log_capital(x, lam, m, CAPS))
    assert np.all(lk >= -np.log(alpha))
    # And the bound is tight: slightly above it the capital is below 1/alpha.
    above = np.minimum(low * (1 + 1e-6) + 1e-9, 1.0)[:, None]
    assert np.all(core.mixture(core.log_capital(x, lam, above, CAPS)) < -np.log(alpha))


@pytest.mark.parametrize("seed", range(3))
def test_state_capitals_stay_below_the_true_capitals(seed):
    # The grid's invariant: after every move, each stored capital is at most
    # the capital recomputed from all the draws at that mean.
    rng = np.random.default_rng(seed)
    n = 3000
    x = np.concatenate(
        [
            (rng.random((2, n)) < 0.9) * 1.0,
            rng.beta(50.0, 2.0, (2, n)),
            rng.random((1, n)),
        ]
    )
    state = BettingInterval(n_grid=48).new_state(5, n, 0.001, side="lower")
    for part in np.array_split(x, 7, axis=1):
        state.update(part)
    lam, _, _ = core.plugin_bets(
        x, 0, np.zeros(5), np.zeros(5), n, np.full(5, -np.log(0.001))
    )
    exact = core.log_capital(x, lam, state._m, CAPS)
    assert np.all(state._log_k <= exact + 1e-9 * (1.0 + np.abs(exact)))


def test_state_is_close_to_and_below_the_exact_bound():
    rng = np.random.default_rng(4)
    n = 5000
    x = np.concatenate(
        [rng.beta(95.0, 5.0, (3, n)), (rng.random((3, n)) < 0.5) * 1.0, np.ones((1, n))]
    )
    bet = BettingInterval()
    exact = bet.lower_from_draws(x, 0.001)
    state = bet.new_state(7, n, 0.001, side="lower")
    for part in np.array_split(x, 5, axis=1):
        state.update(part)
    got = state.lower(0.001)
    gap = x.mean(1) - exact
    # Same bets, stored capitals below the true ones: never above the exact
    # bound beyond the root finder's tolerance, and close to it.
    assert np.all(got <= exact + 1e-9 * gap)
    assert np.all(exact - got <= 0.05 * gap)


def test_batching_does_not_change_the_capital_much():
    rng = np.random.default_rng(5)
    x = rng.beta(3.0, 1.0, (4, 2000))
    bet = BettingInterval()
    one = bet.new_state(4, 2000, 0.01).update(x)
    many = bet.new_state(4, 2000, 0.01)
    for part in np.array_split(x, 13, axis=1):
        many.update(part)
    np.testing.assert_allclose(one.lower(0.01), many.lower(0.01), rtol=1e-9)
    np.testing.assert_allclose(one.upper(0.01), many.upper(0.01), rtol=1e-9)


# ---------------------------------------------------------------- rounding
def test_bounds_are_rounded_outward():
    rng = np.random.default_rng(6)
    x = rng.random((8, 300))
    bet = BettingInterval()
    caps, t = bet._caps(), np.full(8, -np.log(0.05))
    raw_lo = core.lower_from_draws(x, t, t, caps)
    raw_hi = 1.0 - core.lower_from_draws(1.0 - x, t, t, caps)
    lo, hi = bet.lower_from_draws(x, 0.05), bet.upper_from_draws(x, 0.05)
    assert np.all(lo < raw_lo) and np.all(hi > raw_hi)
    assert np.all(raw_lo - lo < 1e-14) and np.all(hi - raw_hi < 1e-14)
    # The reflected draw 1 - x is rounded: the upper bound adds 2**-53.
    assert np.all(hi - raw_hi >= 2.0**-53)
    # A state's bounds are rounded the same way and are not tighter (up to
    # the root finder's relative 1e-10).
    state = bet.new_state(8, 300, 0.05).update(x)
    assert np.all(state.lower(0.05) <= lo + 1e-9 * (x.mean(1) - lo))
    assert np.all(state.upper(0.05) >= hi - 1e-9 * (hi - x.mean(1)))


def test_extreme_draws():
    bet = BettingInterval()
    assert bet.lower_from_draws(np.zeros(50), 0.05) == 0.0
    assert bet.upper_from_draws(np.ones(50), 0.05) == 1.0
    lo, hi = bet.interval_from_draws(np.full(1000, 0.3), 0.01)
    assert 0.29 < lo < 0.3 < hi < 0.31
    # One draw: nothing can be rejected at alpha = 0.05 (capital <= 1 + c).
    assert bet.lower_from_draws([1.0], 0.05) == 0.0


# ------------------------------------------------------- the targets
def test_target_all_ones_within_1_3_of_clopper_pearson():
    bet = BettingInterval()
    for n in (100, 1000, 10_000):
        for alpha in (0.001, 0.05):
            d = 1.0 - bet.lower_from_draws(np.ones(n), alpha)
            assert d / (1.0 - alpha ** (1.0 / n)) <= 1.3, (n, alpha)


def test_target_low_variance_within_0_6_of_empirical_bernstein():
    rng = np.random.default_rng(7)
    n, alpha = 10_000, 0.001
    bet, eb = BettingInterval(), EmpiricalBernstein()
    for sd in (0.01, 0.02):
        s = 0.95 * 0.05 / sd**2 - 1.0
        x = rng.beta(0.95 * s, 0.05 * s, (5, n))
        gap = x.mean(1) - bet.lower_from_draws(x, alpha)
        gap_eb = x.mean(1) - eb.lower(x.sum(1), n, alpha, (x * x).sum(1))
        assert np.median(gap / gap_eb) <= 0.6, sd


def test_never_looser_than_empirical_bernstein():
    # Medians over paths on the laws of the width table, both sides.
    rng = np.random.default_rng(8)
    bet, eb = BettingInterval(), EmpiricalBernstein()
    for n in (100, 1000):
        for name, (_, draw) in _laws(rng).items():
            x = draw((20, n))
            k, sq = x.sum(1), (x * x).sum(1)
            ours = np.median(
                bet.upper_from_draws(x, 0.001) - bet.lower_from_draws(x, 0.001)
            )
            theirs = np.median(eb.upper(k, n, 0.001, sq) - eb.lower(k, n, 0.001, sq))
            assert ours <= theirs, (n, name, ours, theirs)


# ------------------------------------------------------------ the state API
def test_state_sides_and_save_restore():
    rng = np.random.default_rng(9)
    x = rng.random((2, 3, 700))
    bet = BettingInterval(n_grid=60)
    side = np.array([["lower", "upper", "lower"]])
    state = bet.new_state((2, 3), 700, [[0.01, 0.02, 0.03]], side=side)
    state.update(x[..., :250])
    buf = io.BytesIO()
    np.savez(buf, **state.to_dict())
    buf.seek(0)
    restored = BettingState.from_dict(dict(np.load(buf, allow_pickle=False)))
    state.update(x[..., 250:])
    restored.update(x[..., 250:])
    np.testing.assert_array_equal(state.bound(0.05), restored.bound(0.05))
    both = bet.new_state((2, 3), 700, 0.01).update(x)
    b = state.bound(0.05)
    assert b.shape == (2, 3)
    assert np.all(b[:, [0, 2]] < x.mean(-1)[:, [0, 2]])
    assert np.all(b[:, 1] > x.mean(-1)[:, 1])
    assert both.lower(0.05).shape == both.upper(0.05).shape == (2, 3)
    with pytest.raises(ValueError, match="side"):
        state.lower(0.05)
    with pytest.raises(ValueError, match="bound"):
        both.bound(0.05)
    scalar = bet.new_state((), 700, 0.01, side="upper").update(x[0, 0])
    assert np.ndim(scalar.upper(0.01)) == 0
    assert "n_draws=700" in repr(scalar)


def test_estimator_basics():
    bet = BettingInterval(truncation=(0.5, 0.9), n_grid=30)
    assert clone(bet).get_params() == {"truncation": (0.5, 0.9), "n_grid": 30}
    assert bet.guaranteed and not bet.requires_counts and bet.accepts_draws
    assert INTERVALS["betting"] is BettingInterval
    assert isinstance(get_interval("betting"), BettingInterval)
    # The bounds broadcast like every IntervalEstimator.
    lo = bet.lower([[10, 50], [90, 100]], 100, [[0.01], [0.05]])
    assert lo.shape == (2, 2) and lo[1, 1] > lo[1, 0] > lo[0, 1] > lo[0, 0]


# ---------------------------------------------------------------- bad input
@pytest.mark.parametrize(
    "x", [[0.2, 1.5], [-0.1, 0.3], [0.5, np.nan], [0.5, np.inf], [], 0.5, "ab"]
)
def test_refuses_draws_outside_unit_interval(x):
    with pytest.raises(ValueError, match="'x'"):
        BettingInterval().lower_from_draws(x, 0.05)


def test_bad_parameters_are_named():
    x = np.full((2, 10), 0.5)
    with pytest.raises(ValueError, match="'alpha'"):
        BettingInterval().lower_from_draws(x, 1.5)
    with pytest.raises(ValueError, match="'alpha_design'"):
        BettingInterval().upper_from_draws(x, 0.1, alpha_design=0.0)
    with pytest.raises(ValueError, match="'alpha'"):
        BettingInterval().lower_from_draws(x, [0.1, 0.2, 0.3])
    for bad in ((), (0.5, 1.0), (0.0,), "0.5", (np.nan,), 0.5 + 1j):
        with pytest.raises(ValueError, match="'truncation'"):
            BettingInterval(truncation=bad).lower_from_draws(x, 0.1)
    for bad in (5, 10.5, True, "20"):
        with pytest.raises(ValueError, match="'n_grid'"):
            BettingInterval(n_grid=bad).new_state(2, 10, 0.1)
    bet = BettingInterval()
    with pytest.raises(ValueError, match="'n'"):
        bet.new_state(2, 0, 0.1)
    with pytest.raises(ValueError, match="'shape'"):
        bet.new_state((-1,), 10, 0.1)
    with pytest.raises(ValueError, match="'side'"):
        bet.new_state(2, 10, 0.1, side="left")
    with pytest.raises(ValueError, match="'side'"):
        bet.new_state(2, 10, 0.1, side=["lower", "upper", "lower"])
    state = bet.new_state(2, 10, 0.1)
    with pytest.raises(ValueError, match="'draws'"):
        state.update(np.full((3, 4), 0.5))
    with pytest.raises(ValueError, match="'draws'"):
        state.update(np.full((2, 4), 2.0))
    with pytest.raises(ValueError, match="'alpha'"):
        state.lower(np.full(5, 0.1))
    with pytest.raises(ValueError, match="'arrays'"):
        BettingState.from_dict({"m": np.zeros(3)})


# ------------------------------------------------- procedures: plan and states
class _FromStatistics:
    """A bound source from the plan's sufficient statistics (reference path)."""

    def __init__(self, interval, plan, est, sq, n):
        self.interval, self.n = interval, n
        self.sums, self.sq = plan.statistics(est, sq)

    def bound(self, alpha):
        lo = self.interval.lower(self.sums, self.n, alpha, self.sq)
        out = self.interval.upper(self.sums, self.n, alpha, self.sq)
        out[:, 0] = lo[:, 0]
        return out


def _class_statistics(rng, soft, n_inputs=40, n_classes=6, n=800):
    p = rng.dirichlet(np.full(n_classes, 0.4), size=n_inputs)
    if not soft:
        sel = np.stack([rng.multinomial(100, pi) for pi in p])
        est = np.stack([rng.multinomial(n, pi) for pi in p])
        return sel, est, None, None, n
    sel = rng.dirichlet(np.full(n_classes, 0.4), size=n_inputs) * 100
    scores = np.stack([rng.dirichlet(20 * pi + 0.01, size=n) for pi in p])
    return sel, scores.sum(1), (scores**2).sum(1), scores, n


@pytest.mark.parametrize("soft", [False, True])
@pytest.mark.parametrize("proc", [TopClass, Bonferroni, ClassPartitioning])
def test_plan_reproduces_bound(proc, soft):
    rng = np.random.default_rng(10)
    sel, est, sq, _, n = _class_statistics(rng, soft)
    intervals = [Hoeffding(), EmpiricalBernstein(), BettingInterval()]
    if not soft:
        intervals.append(ClopperPearson())
    for interval in intervals:
        for kind in ("multi", "mono"):
            p = proc(interval)
            expected = p.bound(sel, est, n, 0.01, estimation_sq=sq, kind=kind)
            plan = p.plan(sel, kind=kind)
            got = p.bound_from_states(
                plan, _FromStatistics(interval, plan, est, sq, n), 0.01
            )
            np.testing.assert_array_equal(got.prediction, expected.prediction)
            np.testing.assert_array_equal(got.n_bounds, expected.n_bounds)
            # Identical up to the n_classes ulps bound_from_states adds, and
            # the n eps of a soft sum that the monotone shortcut of `bound`
            # leaves out for Hoeffding.
            tol = 1e-12 if soft else 1e-14
            np.testing.assert_allclose(
                got.pA_lower, expected.pA_lower, rtol=0, atol=tol
            )
            np.testing.assert_allclose(
                got.pB_upper, expected.pB_upper, rtol=0, atol=tol
            )
            assert np.all(got.pA_lower <= expected.pA_lower)
            assert np.all(got.pB_upper >= expected.pB_upper - 1e-12)


def test_plan_structure():
    rng = np.random.default_rng(11)
    sel = rng.dirichlet(np.full(10, 0.3), size=200) * 100
    for proc in (TopClass(), Bonferroni(), ClassPartitioning()):
        plan = proc.plan(sel)
        assert isinstance(plan, BoundPlan)
        m = plan.members
        np.testing.assert_array_equal(m[:, 0].argmax(1), plan.prediction)
        np.testing.assert_array_equal(m.sum(2)[:, 0], 1)
        np.testing.assert_array_equal(
            plan.valid.sum(1), np.minimum(plan.n_bounds, m.shape[1])
        )
        assert np.all(m.sum(2)[~plan.valid] == 0)
        # Buckets never overlap; with several bounds every class is covered.
        assert np.all(m.sum(1) <= 1)
        if plan.n_quantities > 1:
            assert np.all(m.sum(1) == 1)
        assert (plan.sides()[:, 0] == "lower").all()
        assert (plan.sides()[:, 1:] == "upper").all()
        np.testing.assert_allclose(plan.design_alpha(0.01)[:, 0], 0.01 / plan.n_bounds)
    mono = ClassPartitioning().plan(sel, kind="mono")
    assert mono.n_quantities == 1 and mono.kind == "mono"
    with pytest.raises(ValueError, match="'kind'"):
        ClassPartitioning().bound_from_states(mono, None, 0.01, kind="multi")
    with pytest.raises(ValueError, match="'selection'"):
        TopClass().plan([1.0, 2.0])
    with pytest.raises(ValueError, match="'kind'"):
        TopClass().plan(sel, kind="both")


def test_plan_draws_and_betting_states_through_a_procedure():
    rng = np.random.default_rng(12)
    sel, est, sq, scores, n = _class_statistics(rng, soft=True, n_inputs=30)
    bet = BettingInterval(n_grid=60)
    proc = ClassPartitioning(bet)
    plan = proc.plan(sel)
    draws = plan.draws(scores)
    assert draws.shape == (30, plan.n_quantities, n)
    assert draws.min() >= 0.0 and draws.max() <= 1.0
    np.testing.assert_allclose(draws.sum(2), plan.statistics(est, sq)[0], rtol=1e-10)
    state = bet.new_state(
        plan.valid.shape, n, plan.design_alpha(0.01), side=plan.sides()
    )
    for part in np.array_split(draws, 4, axis=2):
        state.update(part)
    from_state = proc.bound_from_states(plan, state, 0.01)
    from_sums = proc.bound(sel, est, n, 0.01, estimation_sq=sq)
    np.testing.assert_array_equal(from_state.prediction, from_sums.prediction)
    # The draws beat the order-free bound and the loose merged-bucket variance.
    assert np.median(from_state.pA_lower - from_sums.pA_lower) > 0
    assert np.median(from_sums.pB_upper - from_state.pB_upper) > 0
    # Recertification at another level and as mono from the same states.
    mono = proc.bound_from_states(plan, state, 0.001, kind="mono")
    np.testing.assert_array_equal(mono.pB_upper, 1.0 - mono.pA_lower)
    assert np.all(mono.n_bounds == 1)
    with pytest.raises(ValueError, match="'scores'"):
        plan.draws(scores[:, :, :3])
    with pytest.raises(ValueError, match="'states'"):
        proc.bound_from_states(
            plan, bet.new_state((30, 2), n, 0.01, side="lower"), 0.01
        )


# --------------------------------------------------------------------- slow
@pytest.mark.slow
@pytest.mark.parametrize(
    "n, paths", [(100, 20_000), (1000, 4000), (10_000, 500), (100_000, 60)]
)
def test_coverage_from_100_to_100_000_draws(n, paths):
    # Capital at the true mean on every law, both sides; see the module
    # docstring for why this bounds every bound's failure rate.
    rng = np.random.default_rng(n)
    alpha = 0.1
    for name, (mu, draw) in _laws(rng).items():
        fails = {"lower": 0, "upper": 0}
        for start in range(0, paths, max(1, 2_000_000 // n)):  # bounded memory
            x = draw((min(paths - start, max(1, 2_000_000 // n)), n))
            fails["lower"] += int(_rejects_at_mean(x, mu, alpha).sum())
            fails["upper"] += int(_rejects_at_mean(1.0 - x, 1.0 - mu, alpha).sum())
        for side, count in fails.items():
            assert count <= _max_failures(paths, alpha), (name, side, count)


@pytest.mark.slow
def test_state_coverage_at_10_000_draws():
    rng = np.random.default_rng(13)
    bet, paths, n, alpha = BettingInterval(n_grid=48), 120, 10_000, 0.1
    laws = _laws(rng)
    for name in ("bernoulli(0.995)", "two-point {0.1, 1}, P(1)=0.97"):
        mu, draw = laws[name]
        x = draw((paths, n))
        state = bet.new_state(paths, n, alpha)
        for part in np.array_split(x, 10, axis=1):
            state.update(part)
        fails = int(np.sum(state.lower(alpha) > mu) + np.sum(state.upper(alpha) < mu))
        assert fails <= _max_failures(2 * paths, alpha), (name, fails)


def test_state_rows_feed_interleaved_batches_like_one_update():
    # An engine's batches cut across inputs: feeding each input's part with
    # `rows` gives the same state as feeding all draws at once.
    rng = np.random.default_rng(14)
    x = rng.beta(5.0, 1.0, (3, 900))
    bet = BettingInterval(n_grid=48)
    whole = bet.new_state(3, 900, 0.01).update(x)
    parts = bet.new_state(3, 900, 0.01)
    parts.update(x[[0], :500], rows=[0])
    parts.update(x[[1, 2], :300], rows=[1, 2])
    assert parts.n_draws.tolist() == [500, 300, 300]
    assert "300..500" in repr(parts)
    with pytest.raises(ValueError, match="different numbers of draws"):
        parts.update(x[:, :10])
    with pytest.raises(ValueError, match="'rows'"):
        parts.update(x[:2, 300:310], rows=[0, 1])
    with pytest.raises(ValueError, match="'rows'"):
        parts.update(x[:1, 300:310], rows=[3])
    with pytest.raises(ValueError, match="'draws'"):
        parts.update(x[:, 300:310], rows=[1, 2])
    parts.update(x[[0], 500:], rows=[0])
    parts.update(x[[2, 1], 300:], rows=[2, 1])
    assert parts.n_draws == 900
    np.testing.assert_allclose(parts.lower(0.01), whole.lower(0.01), rtol=1e-9)
    np.testing.assert_allclose(parts.upper(0.003), whole.upper(0.003), rtol=1e-9)
