"""Tests of the ``smoothlearn`` command (smoothlearn.cli)."""

import argparse
import importlib
import subprocess
import sys
import warnings

import numpy as np
import pytest
import torch

from smoothlearn import CertificationResult, cli
from smoothlearn._demo import DigitsCNN, build_from_state_dict
from smoothlearn.cli._common import _parameter_docs


def run(argv, capsys):
    """Run the command in-process; return (status, stdout, stderr)."""
    status = cli.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return status, out, err


def assert_one_line_error(status, err, *fragments):
    assert status == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("smoothlearn: error: ")
    assert "Traceback" not in err
    for fragment in fragments:
        assert fragment in lines[0]


# ---------------------------------------------------------------------------
# fixtures: a tiny linear model with known classes, saved three ways
# ---------------------------------------------------------------------------
def _linear_module(n_features=4, n_classes=3):
    torch.manual_seed(0)
    module = torch.nn.Sequential(torch.nn.Linear(n_features, n_classes))
    with torch.no_grad():
        module[0].weight.copy_(torch.eye(n_classes, n_features) * 10.0)
        module[0].bias.zero_()
    return module.eval()


@pytest.fixture
def files(tmp_path):
    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(3), 5)
    X = rng.normal(0.0, 0.05, size=(15, 4)).astype(np.float32)
    X[np.arange(15), y] += 1.0  # input of class c is near e_c: easy to certify
    module = _linear_module()
    paths = {
        "data": tmp_path / "data.npz",
        "state": tmp_path / "state.pt",
        "script": tmp_path / "script.pt",
    }
    np.savez(paths["data"], X=X, y=y)
    torch.save(module.state_dict(), paths["state"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # torch.jit in torch>=2.9
        torch.jit.script(module).save(str(paths["script"]))
    paths["X"], paths["y"], paths["dir"] = X, y, tmp_path
    return paths


FAST = ["--n", "500", "--n0", "20", "-q"]


# ---------------------------------------------------------------------------
# parser and help
# ---------------------------------------------------------------------------
def test_no_parser_at_import(monkeypatch):
    def forbidden(*args, **kwargs):
        raise AssertionError("argparse used at import time")

    monkeypatch.setattr(argparse, "ArgumentParser", forbidden)
    importlib.reload(cli)  # must not build the parser
    monkeypatch.undo()
    importlib.reload(cli)


def test_help_is_generated_from_the_docstrings(capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main(["certify", "--help"])
    assert exc.value.code == 0
    out = " ".join(capsys.readouterr().out.split())
    # SmoothedClassifier's numpydoc descriptions of sigma, n0 and alpha:
    assert "Standard deviation of the Gaussian noise" in out
    assert "Number of selection draws per input" in out
    assert "Total failure probability of each input's certificate" in out
    assert "(default: 0.25)" in out
    for command in ("recertify", "compare-intervals"):
        with pytest.raises(SystemExit):
            cli.main([command, "--help"])
        assert "usage: smoothlearn " + command in capsys.readouterr().out


def test_parameter_docs_parser():
    def f(a, b, c):
        """Summary.

        Parameters
        ----------
        a, b : int, default=1
            First line about :class:`~smoothlearn.SmoothedClassifier` and
            ``code`` at 5%.

            A second paragraph that is left out.
        c : float
            Third.

        Returns
        -------
        x : int
            Not a parameter.
        """

    docs = _parameter_docs(f)
    assert docs == {
        "a": "First line about SmoothedClassifier and code at 5%%.",
        "b": "First line about SmoothedClassifier and code at 5%%.",
        "c": "Third.",
    }
    assert _parameter_docs(lambda: None) == {}


def test_bad_command_line_exits_2(capsys):
    for argv in (
        ["certify", "--sigma", "-1"],
        ["certify", "--alpha", "1.5"],
        ["certify", "--interval", "nope"],
        [],
    ):
        with pytest.raises(SystemExit) as exc:
            cli.main(argv)
        assert exc.value.code == 2
        assert "Traceback" not in capsys.readouterr().err


# ---------------------------------------------------------------------------
# certify with the user's data and model
# ---------------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["state", "script"])
def test_certify_user_model_and_output(files, capsys, kind):
    out_dir = files["dir"] / "out"
    argv = [
        "certify",
        "--data",
        files["data"],
        "--model",
        files[kind],
        *FAST,
        "--output",
        out_dir,
        "--seed",
        "3",
    ]
    if kind == "state":
        argv += ["--arch", "mlp"]
    status, out, err = run(argv, capsys)
    assert status == 0, err
    assert err == ""  # --quiet
    for label in ("Cohen (top_class, mono)", "Bonferroni, multi", "CPM, multi (paper)"):
        assert label in out
    assert "r=0.5" in out and "ACR" in out and "abstain" in out

    # The saved result is the one of the chosen procedure, and equals a direct
    # certification with the same seed: the command adds no computation.
    from smoothlearn import SmoothedClassifier

    res = CertificationResult.load(out_dir / "result.npz")
    module = _linear_module()
    direct = SmoothedClassifier(
        module, n=500, n0=20, random_state=3, batch_size=4096
    ).fit(files["X"], files["y"])
    assert res == direct.certify(files["X"])
    with np.load(out_dir / "test_data.npz") as saved:
        np.testing.assert_array_equal(saved["y"], files["y"])
    assert (out_dir / "certified_accuracy.png").stat().st_size > 1000
    assert "Cohen" in (out_dir / "table.txt").read_text()


def test_certify_user_model_custom_procedure_row(files, capsys):
    status, out, err = run(
        [
            "certify",
            "--data",
            files["data"],
            "--model",
            files["script"],
            *FAST,
            "--interval",
            "bonferroni",
            "--radius",
            "mono",
            "--radii",
            "0",
            "0.1",
        ],
        capsys,
    )
    assert status == 0, err
    assert "bonferroni, mono (yours)" in out
    assert "r=0.1" in out and "r=0.5" not in out


def test_certify_errors_are_one_line(files, capsys, tmp_path):
    d, s = files["data"], files["state"]
    status, _, err = run(
        [
            "certify",
            "--data",
            tmp_path / "no.npz",
            "--model",
            s,
            "--arch",
            "mlp",
            *FAST,
        ],
        capsys,
    )
    assert_one_line_error(status, err, "data file not found")

    status, _, err = run(
        ["certify", "--data", d, "--model", tmp_path / "no.pt", *FAST], capsys
    )
    assert_one_line_error(status, err, "model file not found")

    status, _, err = run(["certify", "--data", d, "--model", s, *FAST], capsys)
    assert_one_line_error(status, err, "--arch")

    status, _, err = run(["certify", "--data", d, *FAST], capsys)
    assert_one_line_error(status, err, "--data and --model")

    bad = tmp_path / "bad_len.npz"
    np.savez(bad, X=files["X"], y=files["y"][:-1])
    status, _, err = run(
        ["certify", "--data", bad, "--model", s, "--arch", "mlp", *FAST], capsys
    )
    assert_one_line_error(status, err, "different lengths")

    bad = tmp_path / "no_y.npz"
    np.savez(bad, X=files["X"])
    status, _, err = run(
        ["certify", "--data", bad, "--model", s, "--arch", "mlp", *FAST], capsys
    )
    assert_one_line_error(status, err, "no array named y")

    bad = tmp_path / "objects.npz"
    np.savez(bad, X=np.array([object()] * 15, dtype=object), y=files["y"])
    status, _, err = run(
        ["certify", "--data", bad, "--model", s, "--arch", "mlp", *FAST], capsys
    )
    assert_one_line_error(status, err, "cannot read")

    bad = tmp_path / "nan.npz"
    Xn = files["X"].copy()
    Xn[0, 0] = np.nan
    np.savez(bad, X=Xn, y=files["y"])
    status, _, err = run(
        ["certify", "--data", bad, "--model", s, "--arch", "mlp", *FAST], capsys
    )
    assert_one_line_error(status, err, "NaN")


def test_certify_model_that_does_not_fit_the_data(files, capsys, tmp_path):
    # inputs with 5 features for a model that takes 4
    wide = tmp_path / "wide.npz"
    np.savez(wide, X=np.zeros((15, 5), np.float32), y=files["y"])
    status, _, err = run(
        ["certify", "--data", wide, "--model", files["script"], *FAST], capsys
    )
    assert_one_line_error(status, err, "cannot process inputs of shape (5,)")

    # labels with 5 classes for a model with 3 outputs
    many = tmp_path / "many.npz"
    np.savez(many, X=np.zeros((15, 4), np.float32), y=np.arange(15) % 5)
    status, _, err = run(
        ["certify", "--data", many, "--model", files["script"], *FAST], capsys
    )
    assert_one_line_error(status, err, "3 class scores")

    # a state dict of another architecture
    status, _, err = run(
        [
            "certify",
            "--data",
            files["data"],
            "--model",
            files["state"],
            "--arch",
            "digits_cnn",
            *FAST,
        ],
        capsys,
    )
    assert_one_line_error(status, err, "does not fit the 'digits_cnn'")


def test_model_loading_never_unpickles(files, capsys, tmp_path):
    evil = tmp_path / "evil.pt"
    torch.save({"weights": torch.zeros(2), "payload": argparse.Namespace(a=1)}, evil)
    status, _, err = run(
        ["certify", "--data", files["data"], "--model", evil, "--arch", "mlp", *FAST],
        capsys,
    )
    assert_one_line_error(status, err, "weights_only")

    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a model")
    status, _, err = run(
        ["certify", "--data", files["data"], "--model", junk, "--arch", "mlp", *FAST],
        capsys,
    )
    assert_one_line_error(status, err, "cannot load")


def test_build_from_state_dict_round_trips():
    cnn = DigitsCNN(n_classes=7, width=4)
    rebuilt = build_from_state_dict("digits_cnn", cnn.state_dict())
    x = torch.rand(3, 64)
    torch.testing.assert_close(rebuilt(x), cnn.eval()(x))
    mlp = torch.nn.Sequential(
        torch.nn.Linear(6, 5), torch.nn.ReLU(), torch.nn.Linear(5, 2)
    )
    rebuilt = build_from_state_dict("mlp", mlp.state_dict())
    x = torch.rand(3, 6)
    torch.testing.assert_close(rebuilt(x), mlp(x))
    with pytest.raises(ValueError, match="Unknown architecture"):
        build_from_state_dict("resnet", {})


# ---------------------------------------------------------------------------
# recertify
# ---------------------------------------------------------------------------
# ---------------------------------------------------------------------------
# gap
# ---------------------------------------------------------------------------
def _markdown_rows(out):
    rows = [line for line in out.splitlines() if line.startswith("| ")]
    header = [c.strip() for c in rows[0].strip("|").split("|")]
    # "n/a": no gap to close (the attack leaves what Cohen's certifies)
    body = [
        [float(c.replace("n/a", "nan")) for c in r.strip("|").split("|")]
        for r in rows[1:]
    ]
    return header, body


@pytest.mark.parametrize("attack", ["smoothadv", "pgd"])
def test_gap_user_model(files, capsys, attack):
    argv = ["gap", "--data", files["data"], "--model", files["script"], *FAST]
    argv += ["--attack", attack, "--steps", "5", "--radii", "0.25", "0.75"]
    status, out, err = run(argv, capsys)
    assert status == 0, err
    assert err == ""  # --quiet
    header, body = _markdown_rows(out)
    assert header[:4] == [
        "radius",
        "certified (Cohen: top class, mono)",
        "certified (CPM, multi)",
        "empirical (attack)",
    ]
    assert [r[0] for r in body] == [0.25, 0.75]
    for row in body:
        # A certificate above what the attack leaves would be a bug in one
        # of them (failure probability alpha = 0.001 per input).
        assert row[1] <= row[3] and row[2] <= row[3]
    assert ("SmoothAdv" if attack == "smoothadv" else "PGD on the base") in out
    assert "judged by PREDICT with 500 fresh draws" in out


def test_gap_errors_are_one_line(files, capsys, tmp_path):
    status, _, err = run(
        ["gap", "--data", tmp_path / "no.npz", "--model", files["script"], *FAST],
        capsys,
    )
    assert_one_line_error(status, err, "data file not found")
    status, _, err = run(["gap", "--model", files["script"], *FAST], capsys)
    assert_one_line_error(status, err, "--data and --model go together")
    with pytest.raises(SystemExit) as exc:
        cli.main(["gap", "--steps", "0"])
    assert exc.value.code == 2


def test_recertify_saved_result(files, capsys):
    out_dir = files["dir"] / "out"
    status, _, err = run(
        [
            "certify",
            "--data",
            files["data"],
            "--model",
            files["script"],
            *FAST,
            "--output",
            out_dir,
        ],
        capsys,
    )
    assert status == 0, err
    new_path = files["dir"] / "new.npz"
    status, out, err = run(
        [
            "recertify",
            out_dir / "result.npz",
            "--interval",
            "cpm",
            "--radius",
            "multi",
            "--alpha",
            "0.01",
            "--data",
            out_dir / "test_data.npz",
            "--output",
            new_path,
        ],
        capsys,
    )
    assert status == 0, err
    assert "stored: TopClass, mono, alpha=0.001" in out
    assert "new:    ClassPartitioning, multi, alpha=0.01" in out
    assert "certified accuracy" in out
    stored = CertificationResult.load(out_dir / "result.npz")
    want = stored.recertify(interval="cpm", radius="multi", alpha=0.01)
    assert CertificationResult.load(new_path) == want

    # without labels: certified fraction, and a hint
    status, out, _ = run(["recertify", out_dir / "result.npz"], capsys)
    assert status == 0
    assert "certified fraction" in out and "--data" in out

    # labels that do not match the result
    short = files["dir"] / "short.npz"
    np.savez(short, y=files["y"][:3])
    status, _, err = run(["recertify", out_dir / "result.npz", "--data", short], capsys)
    assert_one_line_error(status, err, "3 labels")


def test_recertify_labels_approximate_rows(tmp_path, capsys):
    """Issue 17, defect 3: rows from an approximate interval say so."""
    from smoothlearn import ApproximateCertificateWarning
    from smoothlearn.intervals import ClassPartitioning, Wilson

    stats = dict(
        selection=[[95, 5, 0], [10, 80, 10]],
        estimation=[[99_000, 900, 100], [2_000, 97_000, 1_000]],
        n0=100, n=100_000, sigma=0.25, alpha=0.001,
    )  # fmt: skip
    with pytest.warns(ApproximateCertificateWarning):
        stored = CertificationResult.from_statistics(
            **stats, interval=ClassPartitioning(binomial=Wilson()), radius="multi"
        )
    path = tmp_path / "approx.npz"
    stored.save(path)
    # the command turns the warning into its table's labels and footer (a
    # Python warning escaping it would be an error here)
    status, out, err = run(["recertify", path, "--alpha", "0.01"], capsys)
    assert status == 0, err
    rows = [line for line in out.splitlines() if line.startswith(("stored", "new"))]
    assert len(rows) == 2 and all("(approximate)" in row for row in rows)
    assert "without guaranteed coverage (Wilson)" in out
    # recertified with Clopper-Pearson: only the stored row is approximate
    status, out, err = run(["recertify", path, "--interval", "cpm"], capsys)
    assert status == 0, err
    rows = [line for line in out.splitlines() if line.startswith(("stored", "new"))]
    assert "(approximate)" in rows[0] and "(approximate)" not in rows[1]
    # a guaranteed result: no label, no note
    exact = tmp_path / "exact.npz"
    CertificationResult.from_statistics(**stats).save(exact)
    status, out, _ = run(["recertify", exact], capsys)
    assert status == 0 and "approximate" not in out


def test_recertify_errors(files, capsys):
    status, _, err = run(["recertify", files["dir"] / "missing.npz"], capsys)
    assert_one_line_error(status, err, "result file not found")
    status, _, err = run(["recertify", files["data"]], capsys)
    assert_one_line_error(status, err, "cannot read")


# ---------------------------------------------------------------------------
# compare-intervals
# ---------------------------------------------------------------------------
def test_compare_intervals_table_and_plot(capsys, tmp_path):
    png = tmp_path / "cov.png"
    status, out, err = run(
        [
            "compare-intervals",
            "--intervals",
            "clopper_pearson",
            "wilson",
            "--n",
            "20",
            "50",
            "--grid",
            "19",
            "--alpha",
            "0.1",
            "--output",
            png,
        ],
        capsys,
    )
    assert status == 0, err
    rows = [
        line.split()
        for line in out.splitlines()
        if line.startswith(("clopper_pearson", "wilson"))
    ]
    assert len(rows) == 4
    from smoothlearn.stats import binomial_coverage

    p = np.linspace(0, 1, 21)[1:-1]
    for name, guaranteed, n, min_cov, *_ in rows:
        ref = binomial_coverage(name, p, int(n), 0.1).min_coverage
        assert float(min_cov) == pytest.approx(ref, abs=5e-5)
        assert (guaranteed == "yes") == (name == "clopper_pearson")
        if name == "clopper_pearson":
            assert float(min_cov) >= 0.9
    assert png.stat().st_size > 1000


def test_python_dash_m_smoothlearn():
    proc = subprocess.run(
        [sys.executable, "-m", "smoothlearn", "--version"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("smoothlearn ")


# ---------------------------------------------------------------------------
# the default job, shortened
# ---------------------------------------------------------------------------
@pytest.mark.slow
def test_default_demo_end_to_end(capsys, tmp_path):
    status, out, err = run(
        [
            "certify",
            "--epochs",
            "2",
            "--n",
            "300",
            "--max-inputs",
            "12",
            "-q",
            "--output",
            tmp_path,
        ],
        capsys,
    )
    assert status == 0, err
    assert "digits CNN, 12 held-out inputs" in out
    for label in ("Cohen (top_class, mono)", "CPM, multi (paper)"):
        assert label in out
    res = CertificationResult.load(tmp_path / "result.npz")
    assert res.n_inputs == 12 and res.n == 300


def test_compare_intervals_simulated_laws(capsys):
    status, out, err = run(
        [
            "compare-intervals",
            "--law",
            "bernoulli:0.9",
            "two-point:0.2,1,0.9",
            "--n",
            "200",
            "--trials",
            "200",
            "--alpha",
            "0.1",
            "--side",
            "two-sided",
        ],
        capsys,
    )
    assert status == 0, err
    rows = [
        line.split() for line in out.splitlines() if line.startswith(("bern", "two"))
    ]
    names = [r[1] for r in rows]
    # Clopper-Pearson only on the Bernoulli law; the betting rows on both.
    assert names.count("clopper_pearson") == 1
    assert names.count("betting") == names.count("betting_sequence") == 2
    from scipy.stats import bernoulli

    from smoothlearn.stats import simulated_coverage

    for law, name, _, _n, fails, *_, width in rows:
        if law == "bernoulli:0.9" and name == "betting":
            ref = simulated_coverage(
                name, bernoulli(0.9), 200, 0.1, 200, side="two-sided", random_state=0
            )
            assert int(fails) == ref.n_failures
            assert float(width) == pytest.approx(ref.median_width, abs=1e-5)
    with pytest.raises(SystemExit) as exc:
        run(["compare-intervals", "--law", "beta:0,1"], capsys)
    assert exc.value.code == 2 and "beta:0,1" in capsys.readouterr().err
    status, _, err = run(
        ["compare-intervals", "--law", "uniform", "--output", "x.png"], capsys
    )
    assert_one_line_error(status, err, "--output")
