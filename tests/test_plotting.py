"""Tests of smoothlearn.plotting (Agg backend, no display needed)."""

import sys
from types import SimpleNamespace

import numpy as np
import pytest

matplotlib = pytest.importorskip("matplotlib")
matplotlib.use("Agg")  # the tests' own choice; the library never sets a backend
import matplotlib.pyplot as plt  # noqa: E402

from smoothlearn import plotting  # noqa: E402
from smoothlearn.plotting import (  # noqa: E402
    plot_certified_accuracy,
    plot_interval_coverage,
    plot_interval_width,
    plot_lipschitz_gain,
    plot_radius_histogram,
)
from smoothlearn.radius import gaussian_radius, lipschitz_radius  # noqa: E402
from smoothlearn.stats import binomial_coverage, expected_width  # noqa: E402


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def _fake_result(radius, prediction, abstained=None):
    radius = np.asarray(radius, dtype=float)
    if abstained is None:
        abstained = np.asarray(prediction) < 0
    return SimpleNamespace(
        radius=radius,
        prediction=np.asarray(prediction),
        abstained=np.asarray(abstained),
    )


def _draw_everything(ax=None):
    axes = [
        plot_certified_accuracy(([0.0, 0.5], [0.8, 0.3]), ax=ax),
        plot_radius_histogram(_fake_result([0.0, 0.2, 0.7], [-1, 0, 1]), ax=ax),
        plot_interval_coverage(["wilson"], n=20, alpha=0.1, p=[0.3, 0.6], ax=ax),
        plot_interval_width(["wilson"], n=20, alpha=0.1, p=[0.3, 0.6], ax=ax),
        plot_lipschitz_gain(0.5, L=[1.0, 10.0], pA_lower=[0.9], ax=ax),
    ]
    return axes


def test_global_state_untouched(monkeypatch):
    def _no_show(*args, **kwargs):
        raise AssertionError("plotting must never call plt.show()")

    monkeypatch.setattr(plt, "show", _no_show)
    before = {k: v for k, v in matplotlib.rcParams.items()}
    backend = matplotlib.get_backend()
    _draw_everything()
    after = {k: v for k, v in matplotlib.rcParams.items()}
    assert after == before
    assert matplotlib.get_backend() == backend


def test_returns_the_given_axes_and_creates_one_when_none():
    _, ax = plt.subplots()
    for returned in _draw_everything(ax=ax):
        assert returned is ax
    n_before = len(plt.get_fignums())
    new_axes = _draw_everything()
    assert len({id(a) for a in new_axes}) == len(new_axes)
    assert len(plt.get_fignums()) == n_before + len(new_axes)


def test_missing_matplotlib_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib.pyplot", None)
    with pytest.raises(ImportError, match=r"smoothlearn\[plot\]"):
        plotting.plot_certified_accuracy(([0.0], [1.0]))


def test_certified_accuracy_curves_tuple_list_and_dict():
    r = np.array([0.0, 0.25, 0.5])
    a1, a2 = np.array([0.9, 0.7, 0.4]), np.array([0.8, 0.7, 0.6])
    ax = plot_certified_accuracy([(r, a1), (r, a2)], labels=["cohen", "cpm"])
    lines = ax.get_lines()
    assert [ln.get_label() for ln in lines] == ["cohen", "cpm"]
    np.testing.assert_array_equal(lines[0].get_xdata(), r)
    np.testing.assert_array_equal(lines[1].get_ydata(), a2)
    assert ax.get_ylim() == (0.0, 1.0)
    assert ax.get_xlim() == (0.0, 0.5)

    ax = plot_certified_accuracy({"x": (r, a1)}, max_radius=2.0, color="red")
    assert ax.get_lines()[0].get_label() == "x"
    assert ax.get_xlim() == (0.0, 2.0)


def test_certified_accuracy_bad_input():
    with pytest.raises(ValueError, match="'labels'"):
        plot_certified_accuracy(([0.0], [1.0]), labels=["a", "b"])
    with pytest.raises(ValueError, match="empty"):
        plot_certified_accuracy([])
    with pytest.raises(TypeError, match="CertificationResult"):
        plot_certified_accuracy(3.0)
    with pytest.raises(ValueError, match="'y' parameter"):
        plot_certified_accuracy(_fake_result([0.1], [0]))


def test_radius_histogram_counts_only_certified_and_correct():
    res = _fake_result([0.0, 0.2, 0.3, 0.7, 0.9], [-1, 0, 1, 1, 2])
    bins = [0.0, 0.5, 1.0]
    ax = plot_radius_histogram(res, bins=bins, histtype="bar")
    # abstention (first input) left out: radii 0.2, 0.3 | 0.7, 0.9
    assert [p.get_height() for p in ax.patches] == [2, 2]
    assert ax.get_ylabel() == "certified inputs"

    y = np.array([0, 1, 1, 1, 0])  # the inputs with radius 0.2 and 0.9 are wrong
    ax = plot_radius_histogram(res, y, bins=bins, histtype="bar", labels=["r"])
    assert [p.get_height() for p in ax.patches] == [1, 1]
    assert ax.get_ylabel() == "correct inputs"

    with pytest.raises(TypeError, match="CertificationResult"):
        plot_radius_histogram([([0.0], [1.0])])


def test_interval_coverage_is_the_exact_coverage():
    p = np.linspace(0.01, 0.99, 60)
    n, alpha = 40, 0.1
    ax = plot_interval_coverage(["clopper_pearson", "wilson"], n, alpha, p=p)
    cp, wi, nominal = ax.get_lines()
    ref = binomial_coverage("clopper_pearson", p, n, alpha).coverage
    np.testing.assert_allclose(cp.get_ydata(), ref)
    np.testing.assert_allclose(nominal.get_ydata(), [1 - alpha, 1 - alpha])
    # Clopper-Pearson is exact (never below 1 - alpha); Wilson's one-sided
    # bound is approximate and dips below it somewhere on this grid.
    assert np.all(cp.get_ydata() >= 1 - alpha - 1e-12)
    assert np.min(wi.get_ydata()) < 1 - alpha


def test_interval_defaults_draw_five_methods():
    ax = plot_interval_coverage(n=10, alpha=0.1, p=[0.5])
    labels = [ln.get_label() for ln in ax.get_lines()]
    assert labels[:5] == list(plotting._DEFAULT_INTERVALS)


def test_interval_width_is_the_exact_width_and_accepts_instances():
    from smoothlearn.intervals import ClopperPearson

    p = np.linspace(0.05, 0.95, 19)
    ax = plot_interval_width([ClopperPearson(), "jeffreys"], n=30, alpha=0.05, p=p)
    cp, jef = ax.get_lines()
    assert cp.get_label() == "ClopperPearson"
    np.testing.assert_allclose(
        cp.get_ydata(), expected_width("clopper_pearson", p, 30, 0.05).width
    )
    # Clopper-Pearson is conservative: wider than Jeffreys on average.
    assert np.mean(cp.get_ydata()) > np.mean(jef.get_ydata())


def test_lipschitz_gain_ratio():
    sigma = 0.5
    L = np.array([0.5, 2.0, 1e7])
    ax = plot_lipschitz_gain(sigma, L=L, pA_lower=[0.6, 0.9])
    lines = ax.get_lines()[:2]
    np.testing.assert_allclose(lines[0].get_xdata(), L * sigma)
    for line, p in zip(lines, [0.6, 0.9], strict=True):
        want = lipschitz_radius(p, sigma=sigma, L=L, kind="mono") / gaussian_radius(
            p, sigma=sigma, kind="mono"
        )
        np.testing.assert_allclose(line.get_ydata(), want)
        ratio = line.get_ydata()
        assert np.all(ratio >= 1 - 1e-12)  # never worse than Cohen
        assert ratio[-1] == pytest.approx(1.0, abs=1e-6)  # Cohen as L sigma -> inf
    # SCIENCE.md 2.5 table, sigma=0.5, L=2, p=0.9: 0.666 / 0.641
    assert lines[1].get_ydata()[1] == pytest.approx(0.666 / 0.641, abs=3e-3)


def test_lipschitz_gain_multi_and_abstention_is_nan():
    ax = plot_lipschitz_gain(
        0.5, L=[1.0, 4.0], pA_lower=[0.7, 0.3], pB_upper=[0.2, 0.4], method="envelope"
    )
    ok, abstains = ax.get_lines()[:2]
    assert np.all(ok.get_ydata() >= 1 - 1e-12)
    assert np.all(np.isnan(abstains.get_ydata()))
    assert "multi" in ax.get_ylabel()


def test_certified_accuracy_of_a_result_is_the_exact_step_curve():
    from smoothlearn import CertificationResult
    from smoothlearn.metrics import certified_accuracy

    res = CertificationResult.from_statistics(
        selection=[[100, 0], [100, 0], [0, 100]],
        estimation=[[1000, 0], [900, 100], [0, 1000]],
        n0=100,
        n=1000,
        sigma=0.5,
        alpha=0.001,
    )
    y = np.array([0, 0, 0])  # the third input is certified, but wrong
    ax = plot_certified_accuracy(res, y)
    line = ax.get_lines()[0]
    assert line.get_label() == "TopClass, mono"
    assert line.get_drawstyle() == "steps-pre"
    r, acc = line.get_xdata(), line.get_ydata()
    # steps-pre draws acc[i] on (r[i-1], r[i]]: check against the definition
    # at the midpoints of every step and just past the last radius.
    assert r.size == 4  # 0, the two correct radii, the final drop
    for lo, hi, value in zip(r[:-1], r[1:], acc[1:], strict=True):
        if hi > lo:
            mid = (lo + hi) / 2
            assert value == certified_accuracy(y, res, mid)
    assert acc[-1] == 0.0 == certified_accuracy(y, res, r[-1] + 1e-9)
    assert acc[0] == certified_accuracy(y, res, 0.0) == pytest.approx(2 / 3)

    ax = plot_radius_histogram([res, res], y, labels=["a", "b"], bins=4)
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["a", "b"]


def test_published_log_beside_a_result_in_one_call(tmp_path):
    from smoothlearn import CertificationResult
    from smoothlearn.zoo import CertifyLog, read_certify_log

    path = tmp_path / "sigma_0.25"
    path.write_text(
        "idx\tlabel\tpredict\tradius\tcorrect\ttime\n"
        "0\t3\t3\t0.378\t1\t15.4\n"
        "20\t7\t-1\t0.0\t0\t15.6\n"
        "40\t4\t4\t0.941\t1\t15.7\n"
        "60\t2\t4\t0.5\t0\t15.7\n"
    )
    log = read_certify_log(path)
    res = CertificationResult.from_statistics(
        selection=[[100, 0], [100, 0]],
        estimation=[[1000, 0], [900, 100]],
        n0=100,
        n=1000,
        sigma=0.5,
        alpha=0.001,
    )
    ax = plot_certified_accuracy({"Cohen et al.": log, "this run": res}, [0, 0])
    published, ours = ax.get_lines()
    assert [published.get_label(), ours.get_label()] == ["Cohen et al.", "this run"]
    assert published.get_drawstyle() == ours.get_drawstyle() == "steps-pre"
    r, acc = published.get_xdata(), published.get_ydata()
    # 0, the two correct radii, and the final drop to 0
    np.testing.assert_array_equal(r, [0.0, 0.378, 0.941, 0.941])
    for lo, hi, value in zip(r[:-1], r[1:], acc[1:], strict=True):
        if hi > lo:
            assert value == log.certified_accuracy((lo + hi) / 2)
    assert acc[0] == log.certified_accuracy(0.0) == 0.5
    assert acc[-1] == 0.0

    # alone, without y, labelled by its file name; a list mixes both kinds
    ax = plot_certified_accuracy(log)
    assert ax.get_lines()[0].get_label() == "sigma_0.25"
    ax = plot_certified_accuracy([log, res], [0, 0])
    assert len(ax.get_lines()) == 2
    unnamed = CertifyLog(idx=[0], label=[1], predict=[1], radius=[0.2], correct=[1])
    ax = plot_certified_accuracy([unnamed])
    assert ax.get_lines()[0].get_label() == "curve 0"


def test_approximate_results_are_labelled():
    """Issue 17, defect 3: a result from an approximate interval says so."""
    from smoothlearn import ApproximateCertificateWarning, CertificationResult
    from smoothlearn.intervals import Jeffreys, TopClass

    stats = dict(
        selection=[[95, 5], [10, 90]], estimation=[[99_000, 1_000], [3_000, 97_000]],
        n0=100, n=100_000, sigma=0.25, alpha=0.001,
    )  # fmt: skip
    exact = CertificationResult.from_statistics(**stats)
    with pytest.warns(ApproximateCertificateWarning):
        approx = CertificationResult.from_statistics(
            **stats, interval=TopClass(Jeffreys())
        )
    y = np.array([0, 1])
    ax = plot_certified_accuracy({"CP": exact, "Jeffreys": approx}, y)
    assert [ln.get_label() for ln in ax.get_lines()] == ["CP", "Jeffreys (approximate)"]
    ax = plot_certified_accuracy([exact, approx], y)
    labels = [ln.get_label() for ln in ax.get_lines()]
    assert labels == ["TopClass, mono", "TopClass, mono (approximate)"]
    ax = plot_radius_histogram([exact, approx], labels=["a", "b (approximate)"])
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert legend == ["a", "b (approximate)"]  # marked once
    # curves given as numbers carry no such information: left as given
    ax = plot_certified_accuracy(([0.0, 1.0], [1.0, 0.5]), labels=["x"])
    assert ax.get_lines()[0].get_label() == "x"
