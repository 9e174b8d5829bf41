"""Checkpoint and resume (smoothlearn/_checkpoint.py, smoothlearn/_parallel.py).

A run killed at any moment resumes with the same call, ends with the
statistics of an uninterrupted run and redoes no finished input; a checkpoint
from another run is refused; damaged files get a clear error naming them.
"""

import inspect
import itertools
import json
import os
import re
import signal
import subprocess
import sys
import textwrap
import threading
import time

import joblib
import numpy as np
import pytest
import torch

import smoothlearn._checkpoint as checkpoint_module
from smoothlearn import CertificationResult, SmoothedClassifier
from smoothlearn._checkpoint import _Checkpoint, atomic_savez, load_npz
from smoothlearn._parallel import gather_statistics
from smoothlearn.models import _TorchAdapter
from smoothlearn.sampling import STAGE_ESTIMATION, STAGE_SELECTION, sample_statistics

STAGES = [(STAGE_SELECTION, 30, "hard"), (STAGE_ESTIMATION, 400, "hard")]
DRAWS_PER_INPUT = 430

WIRED = "checkpoint" in inspect.signature(SmoothedClassifier.certify).parameters
needs_wiring = pytest.mark.skipif(
    not WIRED,
    reason="SmoothedClassifier.certify is not wired to gather_statistics yet "
    "(no 'checkpoint' argument): the lead wires it (see _parallel.py).",
)


class CountingAdapter(_TorchAdapter):
    """Counts the noisy rows it classifies; optionally fails after some calls."""

    def __init__(self, module, n_classes, fail_after=None):
        super().__init__(module, n_classes)
        self.rows = 0
        self.calls = 0
        self.fail_after = fail_after

    def _forward(self, batch):
        if self.fail_after is not None and self.calls >= self.fail_after:
            raise RuntimeError("simulated crash")
        self.calls += 1
        self.rows += batch.shape[0]
        return super()._forward(batch)


def _module(scale=1.0):
    angles = np.deg2rad([0.0, 120.0, 240.0])
    weight = scale * np.stack([np.cos(angles), np.sin(angles)], axis=1)
    module = torch.nn.Linear(2, 3)
    with torch.no_grad():
        module.weight.copy_(torch.as_tensor(weight, dtype=torch.float32))
        module.bias.zero_()
    return module


@pytest.fixture
def X():
    return np.random.default_rng(0).normal(size=(10, 2)).astype(np.float32)


def _run(adapter, X, path, **kwargs):
    params = dict(
        stages=STAGES, sigma=0.5, seed=4, batch_size=64, chunk_size=2, checkpoint=path
    )
    params.update(kwargs)
    return gather_statistics(adapter, X, **params)


def _reference(X, stages=STAGES, sigma=0.5, seed=4):
    adapter = _TorchAdapter(_module(), 3)
    return {
        s: sample_statistics(adapter, X, d, sigma, stage=s, seed=seed)
        for s, d, _ in stages
    }


def _assert_same(a, b):
    assert a.keys() == b.keys()
    for stage in a:
        for x, y in zip(a[stage], b[stage], strict=True):
            np.testing.assert_array_equal(x, y)


# ----------------------------------------------------------------------
# Resume
# ----------------------------------------------------------------------
def test_crash_then_resume_redoes_no_finished_input(X, tmp_path):
    path = tmp_path / "run.ckpt"
    # Crash halfway through the forward passes of a full run.
    probe = CountingAdapter(_module(), 3)
    _run(probe, X, None)
    crashing = CountingAdapter(_module(), 3, fail_after=probe.calls // 2)
    with pytest.raises(RuntimeError, match="simulated crash"):
        _run(crashing, X, path)
    ckpt = _Checkpoint._read(os.fspath(path))
    done = ckpt.done(STAGE_ESTIMATION)
    assert done.tolist() == ckpt.done(STAGE_SELECTION).tolist()
    assert 0 < done.sum() < len(done)
    sizes = np.diff(ckpt.bounds)
    n_done = int(sizes[done].sum())

    resumed = CountingAdapter(_module(), 3)
    out = _run(resumed, X, path, batch_size=50)  # batch_size may change
    _assert_same(out, _reference(X))
    # Exactly the unfinished inputs were sampled again, nothing more.
    assert resumed.rows == (len(X) - n_done) * DRAWS_PER_INPUT

    # A finished checkpoint answers the same call without a forward pass.
    again = CountingAdapter(_module(), 3)
    _assert_same(_run(again, X, path, chunk_size=5), _reference(X))
    assert again.rows == 0


def test_progress_counts_restored_inputs(X, tmp_path):
    path = tmp_path / "run.ckpt"
    with pytest.raises(RuntimeError):
        _run(CountingAdapter(_module(), 3, fail_after=35), X, path)
    seen = []
    _run(CountingAdapter(_module(), 3), X, path, progress=seen.append)
    assert sum(seen) == len(X)


def test_stages_added_by_a_later_call(X, tmp_path):
    """Two calls (selection, then estimation) may share one checkpoint."""
    path = tmp_path / "run.ckpt"
    first = _run(CountingAdapter(_module(), 3), X, path, stages=STAGES[:1])
    counting = CountingAdapter(_module(), 3)
    second = _run(counting, X, path, stages=STAGES[1:])
    assert counting.rows == len(X) * 400
    _assert_same({**first, **second}, _reference(X))


def test_seed_from_checkpoint(X, tmp_path):
    path = tmp_path / "run.ckpt"
    with pytest.raises(RuntimeError):
        _run(CountingAdapter(_module(), 3, fail_after=35), X, path, seed=11)
    with pytest.raises(ValueError, match="seed"):
        _run(CountingAdapter(_module(), 3), X, path, seed=12)
    out = _run(
        CountingAdapter(_module(), 3), X, path, seed=12, seed_from_checkpoint=True
    )
    _assert_same(out, _reference(X, seed=11))


# ----------------------------------------------------------------------
# A checkpoint from another run is refused
# ----------------------------------------------------------------------
@pytest.mark.parametrize(
    ("change", "differs"),
    [
        (lambda X: {"X": X + np.float32(1e-3)}, "X"),
        (lambda X: {"X": X[:-1]}, "X"),
        (lambda X: {"X": X.astype(np.float64)}, "X"),
        (lambda X: {"sigma": 0.25}, "sigma"),
        (lambda X: {"seed": 5}, "seed"),
        (lambda X: {"adapter": CountingAdapter(_module(scale=2.0), 3)}, "model"),
        (lambda X: {"adapter": _TorchAdapter(_module(), 3)}, "model"),
        (lambda X: {"checkpoint_meta": {"smoothing": "soft"}}, "meta"),
        (lambda X: {"stages": [(0, 30, "hard"), (1, 500, "hard")]}, "n_draws"),
    ],
)
def test_checkpoint_of_another_run_is_refused(X, tmp_path, change, differs):
    path = tmp_path / "run.ckpt"
    _run(CountingAdapter(_module(), 3), X, path, checkpoint_meta={"smoothing": "hard"})
    before = path.read_bytes()
    kwargs = {"checkpoint_meta": {"smoothing": "hard"}, **change(X)}
    adapter = kwargs.pop("adapter", CountingAdapter(_module(), 3))
    data = kwargs.pop("X", X)
    with pytest.raises(
        ValueError, match=rf"{re.escape(path.name)}.*differs in: .*{differs}"
    ):
        _run(adapter, data, path, **kwargs)
    assert path.read_bytes() == before  # left untouched


def test_callable_score_key_is_part_of_the_fingerprint(X, tmp_path):
    path = tmp_path / "run.ckpt"
    softmax = torch.nn.Softmax(dim=1)
    stages = [(1, 50, softmax, {"map": "softmax", "temperature": 1.0})]
    _run(_TorchAdapter(_module(), 3), X, path, stages=stages)
    other = [(1, 50, softmax, {"map": "softmax", "temperature": 0.5})]
    with pytest.raises(ValueError, match="differs in: score"):
        _run(_TorchAdapter(_module(), 3), X, path, stages=other)


def test_changing_only_execution_parameters_is_accepted(X, tmp_path):
    path = tmp_path / "run.ckpt"
    _run(CountingAdapter(_module(), 3), X, path)  # the adapter type is fingerprinted
    counting = CountingAdapter(_module(), 3)
    out = _run(counting, X, path, batch_size=7, chunk_size=3, n_jobs=1)
    _assert_same(out, _reference(X))
    assert counting.rows == 0


# ----------------------------------------------------------------------
# Damaged files
# ----------------------------------------------------------------------
def _damage(path, how):
    data = path.read_bytes()
    if how == "truncated":
        path.write_bytes(data[: len(data) // 2])
    elif how == "empty":
        path.write_bytes(b"")
    elif how == "garbage":
        path.write_bytes(b"not a zip file at all" * 10)
    elif how == "bitflip":
        # Flip bytes in the data of the first array stored after its 128-byte
        # .npy header: only the zip CRC can tell.
        starts = [i for i in range(len(data)) if data.startswith(b"\x93NUMPY", i)]
        i = next(a for a, b in itertools.pairwise(starts) if b - a > 200) + 136
        flipped = bytes(b ^ 0xFF for b in data[i : i + 8])
        path.write_bytes(data[:i] + flipped + data[i + 8 :])
    elif how == "npy":
        with open(path, "wb") as f:
            np.save(f, np.arange(3))
    elif how == "pickled":
        with open(path, "wb") as f:
            np.savez(f, meta=np.array([{"a": 1}], dtype=object))


DAMAGES = ["truncated", "empty", "garbage", "bitflip", "npy", "pickled"]


@pytest.mark.parametrize("how", DAMAGES)
def test_damaged_checkpoint_gets_a_clear_error(X, tmp_path, how):
    path = tmp_path / "run.ckpt"
    _run(_TorchAdapter(_module(), 3), X, path)
    _damage(path, how)
    with pytest.raises(ValueError, match=rf"checkpoint file .*{re.escape(path.name)}"):
        _run(CountingAdapter(_module(), 3), X, path)


@pytest.mark.parametrize(
    "content",
    [
        {"x": np.arange(3)},  # no meta
        {"meta": np.array(json.dumps({"format": "other"}))},
        {"meta": np.array("{not json")},
    ],
)
def test_npz_that_is_not_a_checkpoint_is_refused(X, tmp_path, content):
    path = tmp_path / "run.ckpt"
    atomic_savez(path, content)
    with pytest.raises(
        ValueError, match=rf"{re.escape(path.name)}.*not a valid smoothlearn"
    ):
        _run(CountingAdapter(_module(), 3), X, path)


def test_tampered_array_shape_is_refused(X, tmp_path):
    path = tmp_path / "run.ckpt"
    _run(_TorchAdapter(_module(), 3), X, path)
    arrays = load_npz(path)
    arrays["sums_1"] = arrays["sums_1"][:-1]
    atomic_savez(path, arrays)
    with pytest.raises(ValueError, match="sums_1"):
        _run(CountingAdapter(_module(), 3), X, path)


def test_checkpoint_path_must_be_a_file(X, tmp_path):
    with pytest.raises(ValueError, match="directory"):
        _run(CountingAdapter(_module(), 3), X, tmp_path)


def test_atomic_write_never_leaves_a_torn_file(tmp_path, monkeypatch):
    path = tmp_path / "a.npz"
    atomic_savez(path, {"x": np.arange(5)})

    def broken_savez(f, **arrays):
        f.write(b"PK\x03\x04 partial")
        raise OSError("disk full")

    monkeypatch.setattr(checkpoint_module.np, "savez", broken_savez)
    with pytest.raises(OSError, match="disk full"):
        atomic_savez(path, {"x": np.arange(7)})
    monkeypatch.undo()
    np.testing.assert_array_equal(load_npz(path)["x"], np.arange(5))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.npz"]


def test_atomic_savez_refuses_object_arrays(tmp_path):
    with pytest.raises(ValueError, match="'x' of object dtype"):
        atomic_savez(tmp_path / "a.npz", {"x": np.array([object()])})


def test_load_npz_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match=re.escape("nope.npz")):
        load_npz(tmp_path / "nope.npz")


# CertificationResult.load gets the same damaged files.  result.py belongs to
# another helper: every case below currently escapes as BadZipFile, EOFError,
# TypeError or a ValueError that does not name the file, so each is
# xfail(strict=True) and flips once load reads through
# smoothlearn._checkpoint.load_npz (the fix proposed in the report).
@pytest.fixture
def result_file(tmp_path):
    res = CertificationResult.from_statistics(
        selection=[[95, 5, 0], [40, 35, 25]],
        estimation=[[990, 9, 1], [410, 350, 240]],
        n0=100,
        n=1000,
        sigma=0.25,
        alpha=0.001,
    )
    path = tmp_path / "res.npz"
    res.save(path)
    assert CertificationResult.load(path) == res
    return path


@pytest.mark.parametrize("how", DAMAGES)
def test_damaged_result_file_gets_a_clear_error(result_file, how):
    _damage(result_file, how)
    with pytest.raises(ValueError, match=re.escape(result_file.name)):
        CertificationResult.load(result_file)


@pytest.mark.parametrize(
    "content",
    [
        {"x": np.arange(3)},  # no meta record
        {"meta": np.array(json.dumps({"format": "smoothlearn-checkpoint"}))},
    ],
)
def test_npz_that_is_not_a_result_is_refused(tmp_path, content):
    path = tmp_path / "res.npz"
    atomic_savez(path, content)
    with pytest.raises(ValueError, match=re.escape(path.name)):
        CertificationResult.load(path)


# ----------------------------------------------------------------------
# Kill test: SIGKILL a real process mid-run, resume with the same call.
# ----------------------------------------------------------------------
SCRIPT = textwrap.dedent(
    """
    import sys, time
    import numpy as np, torch
    torch.set_num_threads(1)
    from smoothlearn._parallel import gather_statistics
    from smoothlearn.models import _TorchAdapter

    ckpt, log, out, delay = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4])

    class Slow(torch.nn.Module):
        # The tiny linear classifier of the test, slowed down, logging its rows.
        def __init__(self):
            super().__init__()
            angles = np.deg2rad([0.0, 120.0, 240.0])
            w = np.stack([np.cos(angles), np.sin(angles)], axis=1)
            self.lin = torch.nn.Linear(2, 3)
            with torch.no_grad():
                self.lin.weight.copy_(torch.as_tensor(w, dtype=torch.float32))
                self.lin.bias.zero_()

        def forward(self, x):
            time.sleep(delay)
            with open(log, "a") as f:
                f.write(f"{x.shape[0]}\\n")
            return self.lin(x)

    X = np.random.default_rng(0).normal(size=(N_INPUTS, 2)).astype(np.float32)
    stats = gather_statistics(
        _TorchAdapter(Slow(), 3), X, stages=[(0, 30, "hard"), (1, 400, "hard")],
        sigma=0.5, seed=4, batch_size=64, chunk_size=1, checkpoint=ckpt)
    np.savez(out, s0=stats[0][0], s1=stats[1][0])
    """
)


def _rows(log):
    return sum(int(line) for line in log.read_text().split()) if log.exists() else 0


@pytest.mark.slow
def test_sigkill_mid_run_then_resume(tmp_path):
    n_inputs = 16
    script = tmp_path / "certify.py"
    script.write_text(SCRIPT.replace("N_INPUTS", str(n_inputs)))
    ckpt = tmp_path / "run.ckpt"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    log1, log2 = tmp_path / "rows1.log", tmp_path / "rows2.log"

    # 8 forward calls (1 selection, 7 estimation batches) of 0.1 s per input:
    # about 13 s of work, killed once 3 inputs are stored.
    proc = subprocess.Popen(
        [sys.executable, script, ckpt, log1, tmp_path / "out1.npz", "0.1"], env=env
    )
    try:
        deadline = time.monotonic() + 240
        n_done = 0
        while time.monotonic() < deadline and proc.poll() is None:
            if ckpt.exists():
                n_done = int(load_npz(ckpt)["done_1"].sum())
                if n_done >= 3:
                    break
            time.sleep(0.05)
        assert proc.poll() is None, "the run ended before it could be killed"
        assert n_done >= 3, "no chunk was checkpointed in time"
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == -signal.SIGKILL
    assert not (tmp_path / "out1.npz").exists()

    # What the killed run left: finished chunks only, both stages together.
    arrays = load_npz(ckpt)
    done = arrays["done_1"]
    np.testing.assert_array_equal(done, arrays["done_0"])
    stored = int(done.sum())
    assert 3 <= stored < n_inputs

    # The same call resumes, runs to completion and redoes no stored input.
    subprocess.run(
        [sys.executable, script, ckpt, log2, tmp_path / "out2.npz", "0"],
        env=env,
        check=True,
        timeout=240,
    )
    assert _rows(log2) == (n_inputs - stored) * DRAWS_PER_INPUT
    assert _rows(log1) >= stored * DRAWS_PER_INPUT
    X = np.random.default_rng(0).normal(size=(n_inputs, 2)).astype(np.float32)
    ref = _reference(X)
    with np.load(tmp_path / "out2.npz") as out:
        np.testing.assert_array_equal(out["s0"], ref[STAGE_SELECTION][0])
        np.testing.assert_array_equal(out["s1"], ref[STAGE_ESTIMATION][0])


# ----------------------------------------------------------------------
# Through SmoothedClassifier, once certify is wired to gather_statistics.
# ----------------------------------------------------------------------
@needs_wiring
def test_smoothed_classifier_certify_with_checkpoint(X, tmp_path):
    y = np.zeros(len(X), dtype=int)
    params = dict(sigma=0.5, n0=50, n=2000, random_state=0, batch_size=128)
    clf = SmoothedClassifier(_module(), **params).fit(X, y)
    path = tmp_path / "run.ckpt"
    plain = clf.certify(X)
    assert clf.certify(X, checkpoint=path) == plain
    assert path.exists()
    assert clf.certify(X, checkpoint=path) == plain  # from the file
    # alpha only acts after sampling: it may change on resume.
    relaxed = clf.set_params(alpha=0.01).certify(X, checkpoint=path)
    assert relaxed == plain.recertify(alpha=0.01)
    with pytest.raises(ValueError, match="differs in"):
        clf.set_params(sigma=0.25).certify(X, checkpoint=path)


@needs_wiring
@pytest.mark.slow
def test_smoothed_classifier_n_jobs_with_checkpoint(X, tmp_path):
    y = np.zeros(len(X), dtype=int)
    params = dict(sigma=0.5, n0=50, n=2000, random_state=0, batch_size=128)
    serial = SmoothedClassifier(_module(), **params).fit(X, y).certify(X)
    clf = SmoothedClassifier(_module(), n_jobs=2, **params).fit(X, y)
    assert clf.certify(X, checkpoint=tmp_path / "run.ckpt") == serial


# ----------------------------------------------------------------------
# Soft certification through the same engine: n_jobs, checkpoint, resume.
# ----------------------------------------------------------------------
SOFT = dict(sigma=0.5, n0=30, n=400, batch_size=64, random_state=0)


def _soft_fit(module, **kwargs):
    X3 = np.random.default_rng(1).normal(size=(6, 2)).astype(np.float32)
    params = {**SOFT, "smoothing": "soft", "temperature": "auto", **kwargs}
    return SmoothedClassifier(module, **params).fit(X3, np.arange(6) % 3)


def _same_result(a, b):
    for name in ("selection", "estimation", "estimation_sq", "radius", "pA_lower"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name))
    np.testing.assert_array_equal(a.prediction, b.prediction)
    np.testing.assert_array_equal(a.temperature, b.temperature)


@pytest.mark.slow
def test_soft_certify_checkpoint_and_n_jobs_identical_to_serial(X, tmp_path):
    plain = _soft_fit(_module()).certify(X)
    path = tmp_path / "soft.ckpt"
    stored = _soft_fit(_module(), n_jobs=2).certify(X, checkpoint=path)
    _same_result(stored, plain)
    arrays = load_npz(path)
    assert arrays["done_0"].all() and arrays["done_1"].all()
    assert arrays["sums_0"].shape == (len(X), 25, 3)  # every candidate's sums
    # From the file: no forward pass.
    counting = _soft_fit(_module())
    calls = []
    counting.estimator_.register_forward_hook(lambda *a: calls.append(1))
    _same_result(counting.certify(X, checkpoint=path), plain)
    assert not calls
    # Another seed is another run; the selection's choice is fingerprinted.
    with pytest.raises(ValueError, match="differs in"):
        _soft_fit(_module(), random_state=1).certify(X, checkpoint=path)


def test_soft_estimation_with_other_choices_is_refused(X, tmp_path):
    """A changed selection rule (here alpha) changes the (map, t) chosen from
    the stored selection sums: the stored estimation draws are refused."""
    path = tmp_path / "soft.ckpt"
    _soft_fit(_module()).certify(X, checkpoint=path)
    clf = _soft_fit(_module(), alpha=0.2)
    ref = _soft_fit(_module(), alpha=0.2).certify(X)
    # (deterministic for this seed: the choice does change)
    assert not np.array_equal(
        ref.temperature, _soft_fit(_module()).certify(X).temperature
    )
    with pytest.raises(ValueError, match=r"stage 1 .*differs in: score"):
        clf.certify(X, checkpoint=path)


def test_soft_predict_n_jobs_identical_to_serial(X):
    serial = _soft_fit(_module())
    parallel = _soft_fit(_module(), n_jobs=2)
    np.testing.assert_array_equal(serial.predict_proba(X), parallel.predict_proba(X))
    np.testing.assert_array_equal(serial.predict(X), parallel.predict(X))


SOFT_SCRIPT = SCRIPT.split("\nX = np.random")[0] + textwrap.dedent(
    """
    from smoothlearn import SmoothedClassifier
    X = np.random.default_rng(0).normal(size=(N_INPUTS, 2)).astype(np.float32)
    clf = SmoothedClassifier(
        Slow(), smoothing="soft", temperature="auto", n_jobs=2, sigma=0.5, n0=30,
        n=400, batch_size=64, random_state=0,
    ).fit(X, np.arange(N_INPUTS) % 3)
    res = clf.certify(X, checkpoint=ckpt)
    np.savez(out, s0=res.selection, s1=res.estimation, s2=res.estimation_sq,
             t=res.temperature)
    """
)


@pytest.mark.slow
def test_soft_n_jobs_sigkill_mid_run_then_resume(tmp_path):
    """Soft, temperature="auto", two loky workers, killed mid-estimation."""
    n_inputs = 16
    script = tmp_path / "certify_soft.py"
    script.write_text(SOFT_SCRIPT.replace("N_INPUTS", str(n_inputs)))
    ckpt = tmp_path / "soft.ckpt"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    log1, log2 = tmp_path / "rows1.log", tmp_path / "rows2.log"
    proc = subprocess.Popen(
        [sys.executable, script, ckpt, log1, tmp_path / "out1.npz", "0.1"], env=env
    )
    try:
        deadline = time.monotonic() + 240
        stored = 0
        while time.monotonic() < deadline and proc.poll() is None:
            if ckpt.exists():
                arrays = load_npz(ckpt)
                if "done_1" in arrays:
                    bounds = np.asarray(json.loads(str(arrays["meta"]))["bounds"])
                    stored = int(np.diff(bounds)[arrays["done_1"]].sum())
                    if stored >= 3:
                        break
            time.sleep(0.05)
        assert proc.poll() is None, "the run ended before it could be killed"
        assert stored >= 3, "no estimation chunk was checkpointed in time"
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == -signal.SIGKILL

    arrays = load_npz(ckpt)
    assert arrays["done_0"].all()  # the selection stage finished first
    bounds = np.asarray(json.loads(str(arrays["meta"]))["bounds"])
    stored = int(np.diff(bounds)[arrays["done_1"]].sum())
    assert 3 <= stored < n_inputs

    subprocess.run(
        [sys.executable, script, ckpt, log2, tmp_path / "out2.npz", "0"],
        env=env,
        check=True,
        timeout=240,
    )
    # No finished work redone: no selection row, only the missing estimation
    # (fit probes the module once with a single input: not a noisy batch,
    # which here holds 64 rows or the 32 left of a chunk's 800).
    noisy = [int(r) for r in log2.read_text().split() if int(r) > 1]
    assert sum(noisy) == (n_inputs - stored) * 400
    # Bit-identical to an uninterrupted serial run without checkpoint.
    X = np.random.default_rng(0).normal(size=(n_inputs, 2)).astype(np.float32)
    clf = SmoothedClassifier(
        _module(), smoothing="soft", temperature="auto", **SOFT
    ).fit(X, np.arange(n_inputs) % 3)
    ref = clf.certify(X)
    with np.load(tmp_path / "out2.npz") as out:
        np.testing.assert_array_equal(out["s0"], ref.selection)
        np.testing.assert_array_equal(out["s1"], ref.estimation)
        np.testing.assert_array_equal(out["s2"], ref.estimation_sq)
        np.testing.assert_array_equal(out["t"], ref.temperature)


# ----------------------------------------------------------------------
# Flushing by time: units of about checkpoint_every seconds, long inputs
# stored part-way with their noise generator's state.
# ----------------------------------------------------------------------
LONG = [(STAGE_SELECTION, 30, "hard"), (STAGE_ESTIMATION, 5000, "hard")]
SOFTMAX = (lambda s: torch.softmax(s, dim=1), {"map": "softmax"})
LONG_SOFT = [
    (STAGE_SELECTION, 3000, *SOFTMAX),
    (STAGE_ESTIMATION, 5000, *SOFTMAX),
]


@pytest.fixture
def exact_budget(monkeypatch):
    """Units sized by checkpoint_every alone, not stretched by slow writes."""
    monkeypatch.setattr("smoothlearn._parallel._MAX_WRITE_SHARE", 0)


def _reference_fields(X, stages):
    """Serial, unsegmented, no checkpoint: what every run must reproduce."""
    return gather_statistics(
        _TorchAdapter(_module(), 3), X, stages=stages, sigma=0.5, seed=4
    )


def _stored_draws(path, stages):
    """Noisy rows a checkpoint holds: finished chunks plus a partial input."""
    arrays = load_npz(path)
    meta = json.loads(str(arrays["meta"]))
    sizes = np.diff(meta["bounds"])
    rows = sum(int(sizes[arrays[f"done_{s}"]].sum()) * n for s, n, *_ in stages)
    partials = meta.get("partials", [])
    assert len(partials) <= 1  # a serial run has one input in progress
    partial = partials[0] if partials else None
    if partial is not None:
        rows += sum(partial["draws"].values())
    return rows, partial


# Batches of 64 in segments of 1024 draws: an input takes 1 + 80 forward
# calls (hard) or 47 + 80 (soft); crash inside the second one.
@pytest.mark.parametrize(
    "stages, fail_after", [(LONG, 100), (LONG_SOFT, 150)], ids=["hard", "soft"]
)
def test_input_stored_part_way_resumes_bit_identical(
    X, tmp_path, stages, fail_after, exact_budget
):
    """Killed inside an input's draws: the draws stored are not redone."""
    X = X[:3]
    path = tmp_path / "run.ckpt"
    total = len(X) * sum(n for _, n, *_ in stages)
    # checkpoint_every tiny: every input runs in segments of one noise block
    # (1024 draws), each stored; crash in the middle of the second input.
    crashing = CountingAdapter(_module(), 3, fail_after=fail_after)
    with pytest.raises(RuntimeError, match="simulated crash"):
        _run(crashing, X, path, stages=stages, chunk_size=None, checkpoint_every=1e-6)
    stored, partial = _stored_draws(path, stages)
    assert partial is not None and partial["chunk"] == 1
    assert all(
        d % 1024 == 0 or d in (30, 3000, 5000) for d in partial["draws"].values()
    )
    assert 0 < stored < total
    # At most one segment (a block, or one batch of 64 before it) was lost.
    assert crashing.rows - stored <= 1024

    # Resume with another batch size and time budget: bit-identical, and
    # exactly the draws not stored are run.
    resumed = CountingAdapter(_module(), 3)
    out = _run(resumed, X, path, stages=stages, batch_size=100, chunk_size=None)
    reference = _reference_fields(X, stages)
    _assert_same(out, reference)
    assert resumed.rows == total - stored
    assert "partials" not in json.loads(str(load_npz(path)["meta"]))


@pytest.mark.parametrize("every", [1e-6, 1e-3, 10.0])
@pytest.mark.parametrize("n_draws", [400, 3000])
def test_time_sized_units_do_not_change_the_statistics(X, tmp_path, every, n_draws):
    stages = [(STAGE_SELECTION, 30, "hard"), (STAGE_ESTIMATION, n_draws, "hard")]
    path = tmp_path / "run.ckpt"
    out = _run(
        _TorchAdapter(_module(), 3), X, path, stages=stages, chunk_size=None,
        checkpoint_every=every,
    )  # fmt: skip
    _assert_same(out, _reference_fields(X, stages))
    meta = json.loads(str(load_npz(path)["meta"]))
    assert meta["bounds"] == list(range(len(X) + 1))  # one chunk per input
    assert "partials" not in meta


def test_fast_inputs_are_grouped_into_few_writes(tmp_path, monkeypatch):
    """A fast model writes the file a few times, not once per input."""
    X = np.random.default_rng(1).normal(size=(200, 2)).astype(np.float32)
    writes = []
    real = checkpoint_module.atomic_savez
    monkeypatch.setattr(
        checkpoint_module,
        "atomic_savez",
        lambda *a: (writes.append(1), real(*a))[1],
    )
    stages = [(STAGE_SELECTION, 10, "hard"), (STAGE_ESTIMATION, 20, "hard")]
    _run(_TorchAdapter(_module(), 3), X, tmp_path / "run.ckpt", stages=stages,
         chunk_size=None, checkpoint_every=60.0)  # fmt: skip
    # creation, then units of 1, at most 8, 64... inputs: far fewer than 200.
    assert len(writes) <= 6


@pytest.mark.parametrize("every", [0, -1.0, float("inf"), float("nan"), "10", True])
def test_checkpoint_every_is_validated(X, tmp_path, every):
    with pytest.raises(ValueError, match="'checkpoint_every'"):
        _run(_TorchAdapter(_module(), 3), X, tmp_path / "c", checkpoint_every=every)
    clf = SmoothedClassifier(_module(), n0=10, n=20, random_state=0)
    clf.fit(X, np.zeros(len(X), dtype=int))
    with pytest.raises(ValueError, match="'checkpoint_every'"):
        clf.certify(X, checkpoint=tmp_path / "d", checkpoint_every=every)


class Flaky(torch.nn.Module):
    """The test's linear classifier; raises once ``fail_after`` batches ran."""

    def __init__(self, fail_after=None):
        super().__init__()
        self.lin = _module()
        self.fail_after, self.calls = fail_after, 0

    def forward(self, x):
        if self.fail_after is not None and self.calls >= self.fail_after:
            raise RuntimeError("simulated crash")
        self.calls += 1
        return self.lin(x)


# fit runs the module once; hard: 1 + 33 forward calls per input, soft: the
# selection (1 per input) first, then 33 per input: crash inside input 1.
@pytest.mark.parametrize("smoothing, fail_after", [("hard", 60), ("soft", 65)])
def test_certify_checkpoint_every_keeps_the_result(
    X, tmp_path, smoothing, fail_after, exact_budget
):
    """certify killed inside an input's draws resumes to the same result."""

    def certify(fail_after=None, **kwargs):
        clf = SmoothedClassifier(
            Flaky(fail_after), smoothing=smoothing, sigma=0.5, n0=30, n=2100,
            batch_size=64, random_state=0,
        )  # fmt: skip
        return clf.fit(X, np.arange(len(X)) % 3).certify(X, **kwargs)

    ref = certify()
    path = tmp_path / "run.ckpt"

    with pytest.raises(RuntimeError, match="simulated crash"):
        certify(fail_after=fail_after, checkpoint=path, checkpoint_every=1e-6)
    partials = json.loads(str(load_npz(path)["meta"]))["partials"]
    assert [p["chunk"] for p in partials] == [1]
    res = certify(checkpoint=path, checkpoint_every=1e-6)
    np.testing.assert_array_equal(res.selection, ref.selection)
    np.testing.assert_array_equal(res.estimation, ref.estimation)
    np.testing.assert_array_equal(res.estimation_sq, ref.estimation_sq)
    np.testing.assert_array_equal(res.radius, ref.radius)


LONG_SCRIPT = textwrap.dedent(
    """
    import sys, time
    import numpy as np, torch
    torch.set_num_threads(1)
    from smoothlearn._parallel import gather_statistics
    from smoothlearn.models import _TorchAdapter

    ckpt, log, out, delay = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4])

    class Slow(torch.nn.Module):
        def __init__(self):
            super().__init__()
            angles = np.deg2rad([0.0, 120.0, 240.0])
            w = np.stack([np.cos(angles), np.sin(angles)], axis=1)
            self.lin = torch.nn.Linear(2, 3)
            with torch.no_grad():
                self.lin.weight.copy_(torch.as_tensor(w, dtype=torch.float32))
                self.lin.bias.zero_()

        def forward(self, x):
            time.sleep(delay)
            with open(log, "a") as f:
                f.write(f"{x.shape[0]}\\n")
            return self.lin(x)

    X = np.random.default_rng(0).normal(size=(1, 2)).astype(np.float32)
    stats = gather_statistics(
        _TorchAdapter(Slow(), 3), X, stages=[(0, 30, "hard"), (1, N_DRAWS, "hard")],
        sigma=0.5, seed=4, batch_size=256, checkpoint=ckpt, checkpoint_every=EVERY)
    np.savez(out, s0=stats[0][0], s1=stats[1][0])
    """
)


@pytest.mark.slow
def test_sigkill_inside_one_long_input_then_resume(tmp_path):
    """One input of 40960 draws, ~8 s of work: flushed every ~1 s, resumed exactly.

    The forward pass sleeps 0.05 s per batch of 256 rows (about 5000 rows
    per second), checkpoint_every is 1 s: the file must get the input's
    partial state within a few seconds of the first batch and again about
    a second later; the run is killed then and the resumed run redoes no
    stored draw.
    """
    every, n_draws = 1.0, 40 * 1024
    script = tmp_path / "long.py"
    script.write_text(
        LONG_SCRIPT.replace("N_DRAWS", str(n_draws)).replace("EVERY", str(every))
    )
    ckpt = tmp_path / "run.ckpt"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    log1, log2 = tmp_path / "rows1.log", tmp_path / "rows2.log"
    proc = subprocess.Popen(
        [sys.executable, script, ckpt, log1, tmp_path / "out1.npz", "0.05"], env=env
    )
    writes = []  # (time, draws of the partial input) at each change seen
    try:
        deadline = time.monotonic() + 240
        first_row = None
        while time.monotonic() < deadline and proc.poll() is None:
            now = time.monotonic()
            if first_row is None and log1.exists():
                first_row = now
            if ckpt.exists():
                partials = json.loads(str(load_npz(ckpt)["meta"])).get("partials")
                partial = partials[0] if partials else None
                draws = None if partial is None else partial["draws"].get("1")
                if draws and (not writes or writes[-1][1] != draws):
                    writes.append((now, draws))
                    if len(writes) == 3:
                        break
            time.sleep(0.02)
        assert proc.poll() is None, "the run ended before it could be killed"
        assert len(writes) == 3, "the long input was not stored part-way"
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == -signal.SIGKILL
    # Flushed by time while the single input was in progress: the first
    # partial write within a few checkpoint_every of the first batch (the
    # first segment is one block, then the throughput is known), and the
    # next ones about checkpoint_every apart (generous bounds: the machine
    # is shared).
    assert writes[0][0] - first_row <= 4 * every
    assert all(b[0] - a[0] <= 4 * every for a, b in itertools.pairwise(writes))
    assert all(d % 1024 == 0 and 0 < d < n_draws for _, d in writes)

    stored, partial = _stored_draws(ckpt, [(0, 30), (1, n_draws)])
    assert partial is not None and partial["draws"]["0"] == 30
    # The killed run lost at most about two checkpoint_every of work
    # (one segment in progress, plus the polling delay).
    assert _rows(log1) - stored <= 2 * 5120 + 256

    subprocess.run(
        [sys.executable, script, ckpt, log2, tmp_path / "out2.npz", "0"],
        env=env,
        check=True,
        timeout=240,
    )
    assert _rows(log2) == 30 + n_draws - stored
    X = np.random.default_rng(0).normal(size=(1, 2)).astype(np.float32)
    ref = _reference(X, stages=[(0, 30, "hard"), (1, n_draws, "hard")])
    with np.load(tmp_path / "out2.npz") as out:
        np.testing.assert_array_equal(out["s0"], ref[STAGE_SELECTION][0])
        np.testing.assert_array_equal(out["s1"], ref[STAGE_ESTIMATION][0])


# ----------------------------------------------------------------------
# Parallel runs flush by time too: rounds of one unit per worker.
# ----------------------------------------------------------------------
class SlowCountingAdapter(CountingAdapter):
    """CountingAdapter that sleeps per batch; thread-safe counts."""

    def __init__(self, module, n_classes, fail_after=None, delay=0.005):
        super().__init__(module, n_classes, fail_after)
        self.delay = delay
        self.lock = threading.Lock()

    def _forward(self, batch):
        with self.lock:
            if self.fail_after is not None and self.calls >= self.fail_after:
                raise RuntimeError("simulated crash")
            self.calls += 1
            self.rows += batch.shape[0]
        time.sleep(self.delay)
        return _TorchAdapter._forward(self, batch)


PARALLEL_LONG = [(STAGE_SELECTION, 30, "hard"), (STAGE_ESTIMATION, 20000, "hard")]


def _parallel_run(adapter, X, path, n_jobs=2, **kwargs):
    with joblib.parallel_config(backend="threading"):
        return _run(
            adapter, X, path, stages=PARALLEL_LONG, chunk_size=None, n_jobs=n_jobs,
            **kwargs,
        )  # fmt: skip


def _stored_rows(path):
    """Noisy rows a checkpoint holds (finished chunks and partial inputs)."""
    arrays = load_npz(path)
    meta = json.loads(str(arrays["meta"]))
    sizes = np.diff(meta["bounds"])
    rows = sum(int(sizes[arrays[f"done_{s}"]].sum()) * n for s, n, _ in PARALLEL_LONG)
    partials = meta.get("partials", [])
    return rows + sum(sum(p["draws"].values()) for p in partials), partials


def test_parallel_run_flushes_by_time(X, tmp_path, monkeypatch, exact_budget):
    """n_jobs=2: the file is rewritten about every checkpoint_every seconds.

    Four inputs of 20030 draws at about 12800 rows per second and worker
    (5 ms per batch of 64): about 3 s of work on two workers, each input
    longer than checkpoint_every = 0.25 s, so each round runs one segment
    of two inputs, both stored part-way with their generator states.
    """
    X = X[:4]
    every = 0.25
    writes = []  # (time, partial inputs) of each write
    real = checkpoint_module.atomic_savez

    def spy(path, arrays):
        meta = json.loads(str(arrays["meta"]))
        writes.append(
            (time.monotonic(), [p["chunk"] for p in meta.get("partials", [])])
        )
        real(path, arrays)

    monkeypatch.setattr(checkpoint_module, "atomic_savez", spy)
    adapter = SlowCountingAdapter(_module(), 3)
    out = _parallel_run(adapter, X, tmp_path / "run.ckpt", checkpoint_every=every)
    _assert_same(out, _reference_fields(X, PARALLEL_LONG))
    # No draw run twice, none skipped.
    assert adapter.rows == len(X) * sum(n for _, n, _ in PARALLEL_LONG)
    # Two inputs in progress at once, each stored part-way.
    assert any(len(chunks) == 2 for _, chunks in writes)
    gaps = np.diff([t for t, _ in writes[1:]])  # after the file's creation
    assert len(writes) >= 8
    # About checkpoint_every apart (segments are whole blocks of 1024 draws,
    # ~0.08 s here; generous bounds: the machine is shared).
    assert np.median(gaps) <= 3 * every
    assert gaps.max() <= 8 * every


@pytest.mark.parametrize("resume_jobs", [2, 1])
def test_parallel_crash_then_resume_bit_identical(
    X, tmp_path, exact_budget, resume_jobs
):
    """Killed mid-run with n_jobs=2: at most about a round lost, resumed exactly."""
    X = X[:4]
    every, path = 0.25, tmp_path / "run.ckpt"
    total = len(X) * sum(n for _, n, _ in PARALLEL_LONG)
    crashing = SlowCountingAdapter(_module(), 3, fail_after=600)  # ~38400 rows
    with pytest.raises(RuntimeError, match="simulated crash"):
        _parallel_run(crashing, X, path, checkpoint_every=every)
    stored, partials = _stored_rows(path)
    assert 0 < stored < total
    assert partials  # long inputs were stored part-way
    assert all(
        d % 1024 == 0 or d in (30, 20000) for p in partials for d in p["draws"].values()
    )
    # Lost: at most about one round, i.e. one unit per worker of about
    # checkpoint_every seconds (12800 rows per second and worker; measured:
    # about 3000 rows, a round of two segments of 2048 draws).
    assert crashing.rows - stored <= 2 * 2 * every * 12800

    resumed = SlowCountingAdapter(_module(), 3, delay=0)
    out = _parallel_run(resumed, X, path, n_jobs=resume_jobs, checkpoint_every=every)
    _assert_same(out, _reference_fields(X, PARALLEL_LONG))
    assert resumed.rows == total - stored
    assert "partials" not in json.loads(str(load_npz(path)["meta"]))


def test_single_partial_of_the_first_format_resumes(X, tmp_path, exact_budget):
    """A file written with one ``meta["partial"]`` and ``state_s`` still resumes."""
    X = X[:3]
    path = tmp_path / "run.ckpt"
    crashing = CountingAdapter(_module(), 3, fail_after=100)
    with pytest.raises(RuntimeError, match="simulated crash"):
        _run(crashing, X, path, stages=LONG, chunk_size=None, checkpoint_every=1e-6)
    arrays = load_npz(path)
    meta = json.loads(str(arrays.pop("meta")))
    (partial,) = meta.pop("partials")
    meta["partial"] = partial
    for key in partial["draws"]:
        name = f"state_{key}_{partial['chunk']}"
        if name in arrays:
            arrays[f"state_{key}"] = arrays.pop(name)
    arrays["meta"] = np.array(json.dumps(meta, sort_keys=True))
    atomic_savez(path, arrays)
    done = sum(int(d) for d in partial["draws"].values())
    sizes = np.diff(meta["bounds"])
    stored = done + sum(int(sizes[arrays[f"done_{s}"]].sum()) * n for s, n, _ in LONG)
    resumed = CountingAdapter(_module(), 3)
    out = _run(resumed, X, path, stages=LONG, chunk_size=None)
    _assert_same(out, _reference_fields(X, LONG))
    assert resumed.rows == len(X) * sum(n for _, n, _ in LONG) - stored
