"""Tests of CertificationResult (smoothlearn/result.py)."""

import json
import warnings
from contextlib import nullcontext

import numpy as np
import pytest
from scipy.special import ndtri
from statsmodels.stats.proportion import proportion_confint

from smoothlearn import ApproximateCertificateWarning, CertificationResult
from smoothlearn.intervals import ClassPartitioning, TopClass, Wilson
from smoothlearn.result import _abstain_label, _min_draws_to_certify

SEL = np.array([[95, 5, 0], [40, 35, 25], [10, 80, 10], [50, 50, 0]])
EST = np.array(
    [
        [99_000, 900, 100],
        [41_000, 35_000, 24_000],
        [2_000, 97_000, 1_000],
        [50_000, 50_000, 0],
    ]
)


def _result(**kwargs):
    params = dict(
        selection=SEL, estimation=EST, n0=100, n=100_000, sigma=0.25, alpha=0.001
    )
    params.update(kwargs)
    return CertificationResult.from_statistics(**params)


def test_cohen_certify_reference_values():
    """TopClass/mono is Cohen's CERTIFY.

    Reference: Cohen et al.'s code computes pA_lower with statsmodels
    ``proportion_confint(k, n, alpha=2 * alpha, method="beta")[0]`` and the
    radius ``sigma * norm.ppf(pA_lower)``; SCIENCE.md gives k=99000, n=1e5,
    alpha=0.001 -> 0.988989.
    """
    res = _result()
    k = EST[np.arange(4), SEL.argmax(1)]
    ref = proportion_confint(k, 100_000, alpha=2 * 0.001, method="beta")[0]
    # Bounds leave the library rounded outward by a relative 1e-9.
    np.testing.assert_allclose(res.pA_lower, ref, rtol=2e-9)
    assert np.all(res.pA_lower <= ref)
    assert round(float(res.pA_lower[0]), 6) == 0.988989
    np.testing.assert_allclose(res.pB_upper, 1 - res.pA_lower)
    expected_abstained = ref < 0.5
    np.testing.assert_array_equal(res.abstained, expected_abstained)
    np.testing.assert_allclose(
        res.radius, np.where(expected_abstained, 0.0, 0.25 * ndtri(ref))
    )
    np.testing.assert_array_equal(res.prediction, [0, -1, 1, -1])
    np.testing.assert_array_equal(res.n_bounds, 1)
    assert res.n_inputs == len(res) == 4
    np.testing.assert_array_equal(res.certified, ~res.abstained)


def _warns_if(approximate: bool):
    if approximate:
        return pytest.warns(ApproximateCertificateWarning)
    return nullcontext()


def test_recertify_equals_from_statistics_with_new_parameters():
    res = _result()
    for kwargs in (
        dict(alpha=0.01),
        dict(interval="cpm", radius="multi"),
        dict(interval=ClassPartitioning(binomial=Wilson()), radius="multi"),
        dict(interval="bonferroni", radius="multi", alpha=0.05),
    ):
        approximate = isinstance(kwargs.get("interval"), ClassPartitioning)  # Wilson
        # (without it, any warning is an error)
        with _warns_if(approximate):
            again = res.recertify(**kwargs)
        with _warns_if(approximate):
            direct = _result(**kwargs)
        assert again == direct
        assert again.guaranteed is direct.guaranteed is not approximate
    assert res.recertify() == res
    assert res.recertify(alpha=0.01) != res


def test_cpm_multi_certifies_the_close_call():
    res = _result().recertify(interval="cpm", radius="multi")
    assert not res.abstained[1] and res.radius[1] > 0
    assert res.prediction[1] == 0


def test_recertify_refuses_lipschitz_for_now():
    with pytest.raises(ValueError, match="lipschitz"):
        _result().recertify(lipschitz=1.0)


def test_bad_arguments():
    with pytest.raises(ValueError, match=r"'interval'.*'bonferroni'"):
        _result(interval="nope")
    with pytest.raises(ValueError, match="'radius'"):
        _result(radius="max")
    with pytest.raises(ValueError, match="'alpha'"):
        _result(alpha=1.5)
    with pytest.raises(ValueError, match="'sigma'"):
        _result(sigma=0.0)
    with pytest.raises(ValueError, match="'classes'"):
        _result(classes=[0, 1])
    with pytest.raises(ValueError, match="same shape"):
        _result(selection=SEL[:2])


@pytest.mark.parametrize(
    "classes, label",
    [
        (np.array([0, 1, 2]), -1),
        (np.array([-1, 1]), -2),
        (np.array([0.5, 1.5]), -1),
        (np.array(["a", "b"]), "abstain"),
        (np.array(["a", "abstain"], dtype=object), None),
    ],
)
def test_abstain_label_rule(classes, label):
    assert _abstain_label(classes) == label


def test_string_labels_and_abstentions():
    res = _result(classes=np.array(["cat", "dog", "eel"]))
    assert res.prediction.tolist() == ["cat", "abstain", "dog", "abstain"]


@pytest.mark.parametrize(
    "classes",
    [
        None,
        np.array([-1, 1, 7]),
        np.array(["cat", "dog", "eel"]),
        np.array(["cat", "dog", "eel"], dtype=object),
        np.array([0.5, 1.5, 2.5]),
    ],
)
def test_save_load_round_trip(tmp_path, classes):
    with pytest.warns(ApproximateCertificateWarning, match="Wilson"):
        res = _result(
            classes=classes,
            interval=ClassPartitioning(binomial=Wilson()),
            radius="multi",
        )
    path = tmp_path / "cert.npz"
    res.save(path)
    back = CertificationResult.load(path)
    assert back == res
    assert isinstance(back.interval, ClassPartitioning)
    assert isinstance(back.interval.binomial, Wilson)
    assert back.guaranteed is res.guaranteed is False
    np.testing.assert_array_equal(back.prediction, res.prediction)
    with pytest.warns(ApproximateCertificateWarning):
        again, before = back.recertify(alpha=0.01), res.recertify(alpha=0.01)
    assert again == before
    # a plain npz: readable without pickle, parameters as JSON
    with np.load(path, allow_pickle=False) as data:
        meta = json.loads(str(data["meta"]))
    assert meta["interval"]["class"] == "ClassPartitioning"
    assert meta["kind"] == "multi"


def test_load_refuses_unknown_classes(tmp_path):
    res = _result()
    path = tmp_path / "cert.npz"
    res.save(path)
    with np.load(path, allow_pickle=False) as data:
        arrays = dict(data)
    meta = json.loads(str(arrays["meta"]))
    meta["interval"] = {"class": "os.system", "params": {}}
    arrays["meta"] = np.array(json.dumps(meta))
    np.savez(path, **arrays)
    with pytest.raises(ValueError, match="Unknown interval class"):
        CertificationResult.load(path)


def test_save_refuses_mixed_object_labels(tmp_path):
    res = _result(classes=np.array([1, "b", 2.5], dtype=object))
    with pytest.raises(ValueError, match="object dtype"):
        res.save(tmp_path / "x.npz")


def test_to_frame():
    frame = _result().to_frame()
    assert list(frame.columns) == [
        "prediction",
        "radius",
        "pA_lower",
        "pB_upper",
        "abstained",
        "n_bounds",
        "guaranteed",
    ]
    assert len(frame) == 4
    assert frame["guaranteed"].dtype == bool and frame["guaranteed"].all()


def test_result_is_frozen_and_has_a_short_repr():
    res = _result()
    with pytest.raises(AttributeError):
        res.alpha = 0.5
    text = repr(res)
    assert "n_inputs=4" in text and "TopClass" in text and len(text) < 300
    assert res == res and res != "x"


def test_warns_when_n_cannot_certify():
    # alpha=0.001: alpha**(1/n) > 1/2 needs n > log2(1000) = 9.97, so n >= 10
    assert _min_draws_to_certify(0.001) == 10
    assert 0.001 ** (1 / 10) > 0.5 > 0.001 ** (1 / 9)
    assert _min_draws_to_certify(0.25) == 3  # 0.25**(1/2) = 0.5 is not > 1/2
    with pytest.warns(UserWarning, match="smallest n that can certify at all is 10"):
        res = CertificationResult.from_statistics(
            selection=[[9, 0]],
            estimation=[[9, 0]],
            n0=9,
            n=9,
            sigma=1.0,
            alpha=0.001,
        )
    assert res.abstained.all()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        res = CertificationResult.from_statistics(
            selection=[[10, 0]],
            estimation=[[10, 0]],
            n0=10,
            n=10,
            sigma=1.0,
            alpha=0.001,
        )
    assert res.radius[0] > 0


def test_default_interval_is_top_class():
    assert isinstance(_result().interval, TopClass)


# ---------------------------------------------------------------- issue 17 #2
def _soft_result(**kwargs):
    """Three soft inputs (softmax, sparsemax, hardmax) with 1-Lipschitz logits."""
    from smoothlearn.intervals import EmpiricalBernstein

    params = dict(
        selection=[[9.0, 1.0], [8.0, 2.0], [10.0, 0.0]],
        estimation=[[900.0, 100.0], [800.0, 200.0], [1000.0, 0.0]],
        estimation_sq=[[820.0, 20.0], [700.0, 60.0], [1000.0, 0.0]],
        n0=10, n=1000, sigma=0.5, alpha=0.001, smoothing="soft",
        interval=TopClass(EmpiricalBernstein()), lipschitz=1.0,
        score_map=["softmax", "sparsemax", "hardmax"],
        temperature=[2.0, 0.5, 1.0],
    )  # fmt: skip
    params.update(kwargs)
    return CertificationResult.from_statistics(**params)


def test_score_lipschitz_follows_map_and_temperature(tmp_path):
    res = _soft_result()
    assert res.lipschitz == 1.0
    np.testing.assert_array_equal(
        res.score_lipschitz, [np.sqrt(2) / 4 * 2.0, np.sqrt(0.5) * 0.5, np.inf]
    )
    cohen = res.recertify(lipschitz=np.inf)
    assert cohen.radius[2] == res.radius[2]  # hardmax: Cohen's radius anyway
    assert np.all(res.radius[:2] > cohen.radius[:2])
    path = tmp_path / "soft.npz"
    res.save(path)
    back = CertificationResult.load(path)
    assert back == res and back.lipschitz == 1.0
    assert back.recertify() == res
    frame = res.to_frame()
    np.testing.assert_array_equal(frame["score_lipschitz"], res.score_lipschitz)
    assert set(frame["lipschitz"]) == {1.0}


def _rewrite(path, edit):
    with np.load(path, allow_pickle=False) as data:
        arrays = dict(data)
    meta = json.loads(str(arrays.pop("meta")))
    edit(meta, arrays)
    np.savez(path, meta=np.array(json.dumps(meta)), **arrays)


def test_loads_format_1_files(tmp_path):
    """Format 1 stored the per-input class-score constants as 'lipschitz'."""
    res = _soft_result()
    path = tmp_path / "v1.npz"
    res.save(path)

    def to_v1(meta, arrays, buggy=False):
        meta["format_version"] = 1
        del meta["lipschitz"]
        meta.pop("guaranteed", None)
        arrays["lipschitz"] = arrays.pop("score_lipschitz")
        if buggy:  # what recertify(lipschitz=0.7) wrote: finite on hardmax rows
            arrays["lipschitz"] = np.full(3, 0.7)

    _rewrite(path, to_v1)
    back = CertificationResult.load(path)
    assert back.lipschitz is None
    np.testing.assert_array_equal(back.score_lipschitz, res.score_lipschitz)
    np.testing.assert_array_equal(back.radius, res.radius)
    again = back.recertify()  # keeps the stored per-input constants
    np.testing.assert_array_equal(again.radius, res.radius)
    np.testing.assert_array_equal(again.score_lipschitz, res.score_lipschitz)
    assert back.recertify(lipschitz=1.0) == res
    # a format-1 file written by the defect: recertify puts hardmax rows at inf
    res.save(path)
    _rewrite(path, lambda meta, arrays: to_v1(meta, arrays, buggy=True))
    fixed = CertificationResult.load(path).recertify()
    np.testing.assert_array_equal(fixed.score_lipschitz, [0.7, 0.7, np.inf])
    assert fixed.radius[2] == res.radius[2]


@pytest.mark.parametrize(
    "edit",
    [
        lambda meta, arrays: arrays.update(score_lipschitz=np.full(3, 0.5)),
        lambda meta, arrays: meta.update(lipschitz=0.5),
        lambda meta, arrays: arrays.pop("score_lipschitz"),
        lambda meta, arrays: meta.update(lipschitz=None),
        lambda meta, arrays: arrays.pop("temperature"),
    ],
    ids=["constants", "logits", "no-constants", "no-logits", "no-temperature"],
)
def test_load_refuses_inconsistent_lipschitz(tmp_path, edit):
    path = tmp_path / "soft.npz"
    _soft_result().save(path)
    _rewrite(path, edit)
    with pytest.raises(ValueError, match="inconsistent result file"):
        CertificationResult.load(path)


# ---------------------------------------------------------------- issue 17 #3
APPROXIMATE_BINOMIALS = ["wilson", "agresti_coull", "jeffreys"]


@pytest.mark.parametrize("binomial", APPROXIMATE_BINOMIALS)
@pytest.mark.parametrize("procedure", [TopClass, ClassPartitioning])
def test_approximate_interval_flags_and_warns_once(binomial, procedure):
    from smoothlearn.intervals import get_interval

    name = type(get_interval(binomial)).__name__
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        res = _result(interval=procedure(binomial=binomial), radius="multi")
    assert [w.category for w in caught] == [ApproximateCertificateWarning]
    message = str(caught[0].message)
    assert name in message and "approximate" in message
    assert "not guaranteed" in message
    assert caught[0].filename == __file__  # points at the caller
    assert res.guaranteed is False
    assert "approximate" in repr(res)
    assert not res.to_frame()["guaranteed"].any()
    # recertify follows the procedure: warns once more while approximate
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        again = res.recertify(alpha=0.01)
    assert [w.category for w in caught] == [ApproximateCertificateWarning]
    assert caught[0].filename == __file__
    assert again.guaranteed is False
    exact = res.recertify(interval=procedure())  # Clopper-Pearson: no warning
    assert exact.guaranteed is True and "approximate" not in repr(exact)


@pytest.mark.parametrize(
    "interval", [None, "cpm", "bonferroni", TopClass("clopper_pearson")]
)
def test_guaranteed_intervals_do_not_warn(interval):
    res = _result(interval=interval)  # any warning would be an error
    assert res.guaranteed is True
    assert res.to_frame()["guaranteed"].all()


def test_guaranteed_of_procedures_without_an_interval():
    from smoothlearn.intervals import MultiClassProcedure

    class Own(MultiClassProcedure):
        """A procedure that bounds without an interval of the library."""

        def __init__(self):
            pass

        def bound(self, selection, estimation, n, alpha, *, estimation_sq=None,
                  kind="multi"):  # fmt: skip
            return TopClass().bound(selection, estimation, n, alpha, kind=kind)

    with pytest.warns(ApproximateCertificateWarning, match="Own"):
        assert _result(interval=Own()).guaranteed is False  # unknown: not claimed

    class Declared(Own):
        guaranteed = True

    assert _result(interval=Declared()).guaranteed is True

    class Unsound(TopClass):  # an exact interval in a procedure that says no
        guaranteed = False

    with pytest.warns(ApproximateCertificateWarning):
        assert _result(interval=Unsound()).guaranteed is False


def test_certify_warns_once_at_the_caller():
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    from smoothlearn import SmoothedClassifier
    from smoothlearn.intervals import EmpiricalBernstein, Jeffreys

    X, y = load_iris(return_X_y=True)
    clf = SmoothedClassifier(
        LogisticRegression(max_iter=1000), n=200, interval=TopClass(Jeffreys()),
        random_state=0,
    ).fit(X, y)  # fmt: skip
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        res = clf.certify(X[:5])
    assert [w.category for w in caught] == [ApproximateCertificateWarning]
    assert "Jeffreys" in str(caught[0].message) and caught[0].filename == __file__
    assert res.guaranteed is False

    class SaysNo(TopClass):  # soft certification goes through another frame
        guaranteed = False

    clf.set_params(smoothing="soft", interval=SaysNo(EmpiricalBernstein()))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        clf.certify(X[:5])
    assert [w.category for w in caught] == [ApproximateCertificateWarning]
    assert caught[0].filename == __file__


def test_stats_use_approximate_intervals_without_warning():
    from smoothlearn.stats import binomial_coverage, procedure_validity

    # statisticians compare the intervals: no certificate, no warning
    cov = binomial_coverage("wilson", np.linspace(0.01, 0.99, 50), 30, 0.05)
    assert not cov.valid
    procedure_validity(
        TopClass("jeffreys"), [0.7, 0.3], 20, 100, 0.05, 200, random_state=0
    )


def test_guaranteed_survives_save_load_and_is_checked(tmp_path):
    with pytest.warns(ApproximateCertificateWarning):
        res = _result(interval=TopClass("jeffreys"))
    for result, name in ((res, "approx.npz"), (_result(), "exact.npz")):
        path = tmp_path / name
        result.save(path)
        with np.load(path, allow_pickle=False) as data:
            assert json.loads(str(data["meta"]))["guaranteed"] is result.guaranteed
        back = CertificationResult.load(path)  # loading does not warn
        assert back.guaranteed is result.guaranteed and back == result
        # a file whose flag contradicts its interval, or lacks it, is refused
        for flag in (not result.guaranteed, None, "yes"):
            _rewrite(path, lambda meta, arrays, f=flag: meta.update(guaranteed=f))
            with pytest.raises(ValueError, match="inconsistent result file"):
                CertificationResult.load(path)
        # format 1 had no flag: it follows from the interval
        _rewrite(
            path,
            lambda meta, arrays: (
                meta.update(format_version=1),
                meta.pop("guaranteed"),
                meta.pop("lipschitz"),
            ),
        )
        assert CertificationResult.load(path).guaranteed is result.guaranteed


# The exact failure probabilities behind guaranteed=False: sums of binomial
# pmfs over every count k (no simulation), so the numbers are exact up to
# float64 rounding and the test has no false-alarm rate.
def _failure(method, n, alpha, p):
    """P_p(lower(K; n, alpha) > p) for K ~ Binomial(n, p), at each p."""
    from scipy.stats import binom

    k = np.arange(n + 1)
    low = method.lower(k, n, alpha)
    p = np.atleast_1d(np.asarray(p, dtype=np.float64))
    pmf = binom.pmf(k[None, :], n, p[:, None])
    return (pmf * (low[None, :] > p[:, None])).sum(axis=1)


def _worst_p(method, n, alpha, p_min=0.0):
    """The p in [p_min, 1) where the lower bound fails most often.

    The failure probability is P_p(K >= k*(p)) with k*(p) the smallest k whose
    bound exceeds p: it increases in p between the bounds' values and drops
    at each, so its supremum is the limit from below at one of them.
    """
    k = np.arange(n + 1)
    low = method.lower(k, n, alpha)
    cand = np.nextafter(low[low > p_min], 0.0)
    fail = _failure(method, n, alpha, cand)
    i = int(np.argmax(fail))
    return cand[i], fail[i]


def test_exact_failure_of_top_class_jeffreys_issue17():
    """TopClass(Jeffreys()) at n = 100,000, alpha = 0.001, pA = 0.99994586.

    Every count k gives one certificate (class A chosen; the selection is
    irrelevant to the estimation draws); its radius is compared with the
    true radius sigma Phi^-1(pA) and the pmf of the failing k summed.  Only
    k = n fails (the most likely count once pA >= n / (n + 1)), with
    probability pA**n = 4.453e-3 = 4.45 alpha; Clopper-Pearson never fails
    there.
    """
    from scipy.stats import binom, norm

    from smoothlearn.intervals import Jeffreys

    n, alpha, pA, sigma = 100_000, 0.001, 0.99994586, 0.25
    k = np.arange(n + 1)
    stats = dict(
        selection=np.tile([100, 0], (n + 1, 1)), estimation=np.stack([k, n - k], 1),
        n0=100, n=n, sigma=sigma, alpha=alpha,
    )  # fmt: skip
    true_radius = sigma * norm.ppf(pA)
    with pytest.warns(ApproximateCertificateWarning, match="Jeffreys"):
        jeffreys = CertificationResult.from_statistics(
            **stats, interval=TopClass(Jeffreys())
        )
    fails = jeffreys.radius > true_radius
    assert np.flatnonzero(fails).tolist() == [n]
    p_fail = binom.pmf(k[fails], n, pA).sum()
    assert p_fail == pytest.approx(pA**n, rel=1e-9)
    assert p_fail == pytest.approx(4.4531e-3, rel=1e-4) and p_fail > 4.4 * alpha
    exact = CertificationResult.from_statistics(**stats, interval=TopClass())
    assert not np.any(exact.radius > true_radius)


@pytest.mark.parametrize(
    ("name", "p_min", "ratio", "p_worst"),
    [
        # alpha = 0.001, n = 100; the supremum over all p, and over p >= 1/2
        # (where a lower bound on pA can give a radius)
        ("wilson", 0.0, 83.64, 8.7307e-4),
        ("agresti_coull", 0.0, 2.7206, 0.080942),
        ("jeffreys", 0.0, 12.105, 1.2179e-4),
        ("wilson", 0.5, 1.2902, 0.50550),
        ("agresti_coull", 0.5, 1.2380, 0.50487),
        ("jeffreys", 0.5, 4.5157, 0.94743),
    ],
)
def test_exact_failure_of_approximate_intervals_exceeds_alpha(
    name, p_min, ratio, p_worst
):
    """The measured rates of doc/soundness.rst, and Clopper-Pearson's at once."""
    from smoothlearn.intervals import ClopperPearson, get_interval

    n, alpha = 100, 0.001
    p, fail = _worst_p(get_interval(name), n, alpha, p_min)
    assert fail > alpha  # the flag is justified
    assert fail / alpha == pytest.approx(ratio, rel=1e-3)
    assert p == pytest.approx(p_worst, rel=1e-3)
    # a fine grid finds nothing worse than the supremum
    grid = np.linspace(max(p_min, 1e-6), 1 - 1e-6, 20_001)
    assert _failure(get_interval(name), n, alpha, grid).max() <= fail * (1 + 1e-12)
    # Clopper-Pearson at the same point, and at its own worst point
    cp = ClopperPearson()
    assert _failure(cp, n, alpha, p)[0] <= alpha
    assert _worst_p(cp, n, alpha, p_min)[1] <= alpha


@pytest.mark.parametrize("n, alpha", [(50, 0.05), (200, 0.01), (1000, 0.001)])
def test_best_of_nested_recertifications_costs_nothing(n, alpha):
    """Issue 17, item 5: the best of several intervals under TopClass costs alpha.

    For hard counts every guaranteed lower bound is non-decreasing in the
    count, so its failure set at a true pA is an upper tail of k; tails of
    one count are nested and their union is the largest one.  Exact binomial
    sums (no Monte Carlo, so no false-alarm rate): the per-input best of
    Clopper-Pearson, Hoeffding and the betting sequence fails with
    probability at most alpha at every pA of a fine grid, exactly the largest
    of the three failure probabilities.
    """
    from scipy.stats import binom

    from smoothlearn.intervals import (
        BettingConfidenceSequence,
        ClopperPearson,
        Hoeffding,
    )

    k = np.arange(n + 1)
    lowers = np.array(
        [
            m.lower(k, n, alpha)
            for m in (ClopperPearson(), Hoeffding(), BettingConfidenceSequence())
        ]
    )
    best = lowers.max(axis=0)
    assert np.all(np.diff(lowers, axis=1) >= 0)  # each bound monotone in k
    grid = np.unique(np.concatenate([np.linspace(0.0, 1.0, 2001), best]))
    for p in grid:
        pmf = binom.pmf(k, n, p)
        fail_each = [(pmf * (low > p)).sum() for low in lowers]
        fail_best = (pmf * (best > p)).sum()
        assert fail_best <= alpha * (1 + 1e-9)
        assert fail_best == pytest.approx(max(fail_each), rel=1e-12, abs=1e-300)
