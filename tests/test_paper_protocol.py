"""benchmarks/paper_protocol.py: the papers' protocol, end to end on the CPU.

``--smoke`` runs the whole script (random weights, synthetic images, tiny n);
the other tests run its real path on a CIFAR-10 ``test_batch`` and a
checkpoint written here in the released layouts, and compare every row with
an independent call of the library on the same images.  The script is
imported with importlib (so a test can replace one of its functions) and
run once as a user runs it, in a fresh interpreter.
"""

import importlib.util
import os
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from smoothlearn import CertificationResult, SmoothedClassifier
from smoothlearn.intervals import (
    Bonferroni,
    ClassPartitioning,
    ClopperPearson,
    EmpiricalBernstein,
)
from smoothlearn.lipschitz import SpectralProductLipschitz
from smoothlearn.zoo import get_architecture, load_checkpoint, read_certify_log

ROOT = Path(__file__).parents[1]
SCRIPT = ROOT / "benchmarks" / "paper_protocol.py"
PUBLISHED = (
    ROOT / "tests" / "data" / "cohen2019_cifar10_resnet110_noise_0.25_test_sigma_0.25"
)


@pytest.fixture(scope="module")
def protocol():
    spec = importlib.util.spec_from_file_location("paper_protocol", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    # Registered while it runs, as an import would (its dataclass needs it).
    sys.modules[spec.name] = module
    try:
        spec.loader.exec_module(module)
        yield module
    finally:
        del sys.modules[spec.name]


def _run(protocol, out, *args):
    return protocol.main(["--output", str(out), *map(str, args)])


def _smoke_images(indices, shape, seed=0):
    """The synthetic images of --smoke, rebuilt from the documented recipe."""
    return np.stack(
        [
            np.random.default_rng([seed, int(i)]).random(shape, np.float32)
            for i in indices
        ]
    )


def _same_certificates(a: CertificationResult, b: CertificationResult):
    np.testing.assert_array_equal(a.selection, b.selection)
    np.testing.assert_array_equal(a.estimation, b.estimation)
    np.testing.assert_array_equal(a.prediction, b.prediction)
    np.testing.assert_array_equal(a.radius, b.radius)


def _zoo_resnet_supported() -> bool:
    """Whether SpectralProductLipschitz bounds the zoo's ResNets (another branch)."""
    model = get_architecture("cifar_resnet20").eval()
    try:
        SpectralProductLipschitz().logit_constant(model, torch.zeros(1, 3, 32, 32))
    except ValueError:
        return False
    return True


# ---------------------------------------------------------------------------
# --smoke
# ---------------------------------------------------------------------------
@pytest.mark.slow  # a fresh interpreter imports torch: about 10 s on 2 cores
def test_smoke_runs_as_a_script(tmp_path):
    # As a user runs it, warnings as errors; with the published log and a plot.
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path), MPLBACKEND="Agg")
    proc = subprocess.run(
        [sys.executable, "-W", "error", str(SCRIPT), "--smoke", "--sigma", "0.25",
         "--max-images", "2", "--n", "100", "--output", str(tmp_path),
         "--published-log", str(PUBLISHED), "--plot"],
        capture_output=True, text=True, env=env, timeout=600,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = tmp_path / "cifar10" / "noise_0.25"
    for name in ("cohen", "bonferroni", "cpm", "soft"):
        assert read_certify_log(out / f"{name}.tsv").idx.tolist() == [0, 20]
    assert (out / "certified_accuracy.png").stat().st_size > 0
    table = (tmp_path / "cifar10" / "table.md").read_text()
    assert table in proc.stdout
    # The published row is Cohen et al.'s own table (their analysis/markdown:
    # .60 / .43 / .27 / .00 at r = .25 / .5 / .75 / 1.0).
    published_row = next(line for line in table.splitlines() if "published" in line)
    assert "| 0.748 | 0.600 | 0.428 | 0.266 | 0.000 |" in published_row


def test_smoke_rows_are_recertified_from_one_set_of_counts(protocol, tmp_path):
    summary = _run(
        protocol, tmp_path, "--smoke", "--sigma", "0.25", "--max-images", 3, "--n", 100
    )
    out = tmp_path / "cifar10" / "noise_0.25"
    spec = protocol.DATASETS["cifar10"]
    (sig,) = summary["sigmas"]
    assert sig["n_images"] == 3 and sig["run"]["n0"] == 10 and sig["run"]["n"] == 100

    # The Cohen row is what the library gives in one call on the same images
    # (the script certifies them one at a time: the noise is keyed by input).
    X = _smoke_images([0, 20, 40], (3, 32, 32))
    model = protocol.smoke_model(spec, "zoo", 0)
    clean = model(torch.from_numpy(X)).argmax(1).numpy()
    y = np.where(np.arange(3) % 2 == 0, clean, (clean + 1) % 10)
    direct = (
        SmoothedClassifier(model, sigma=0.25, n0=10, n=100, alpha=0.001,
                           batch_size=400, random_state=0,
                           memory_format="contiguous")
        .fit(X, y)
        .certify(X)
    )  # fmt: skip
    hard = CertificationResult.load(out / "hard.npz")
    _same_certificates(hard, direct)

    # Bonferroni and CPM are the same counts, recertified: no new draws.
    bonferroni, cpm = Bonferroni(ClopperPearson()), ClassPartitioning(ClopperPearson())
    recert = {
        "cohen": hard,
        "bonferroni": hard.recertify(interval=bonferroni, radius="multi"),
        "cpm": hard.recertify(interval=cpm, radius="multi"),
    }
    for name, result in recert.items():
        log = read_certify_log(out / f"{name}.tsv")
        assert log.idx.tolist() == [0, 20, 40]
        np.testing.assert_array_equal(log.label, y)
        np.testing.assert_array_equal(log.radius, result.radius)  # all digits
        row = sig["rows"][name]
        np.testing.assert_allclose(
            row["certified_accuracy"], log.certified_accuracy(list(spec.radii))
        )
        assert row["acr"] == pytest.approx(log.average_certified_radius())
    # With the labels of the smoke run, some rows are certified correct.
    assert sig["rows"]["cohen"]["certified_accuracy"][0] == pytest.approx(2 / 3)
    assert np.all(recert["bonferroni"].radius <= recert["cpm"].radius)

    # Lipschitz-aware rows: present exactly when SpectralProductLipschitz
    # bounds the zoo's ResNet (today not: another branch adds the rules).
    if _zoo_resnet_supported():
        lip = read_certify_log(out / "lipschitz.tsv")
        soft = read_certify_log(out / "soft.tsv")
        assert np.all(lip.radius >= soft.radius - 1e-12)
    else:
        assert sig["rows"]["lipschitz"] is None
        assert not (out / "lipschitz.tsv").exists()
        assert "cannot bound this model yet" in sig["lipschitz"]["note"]
        assert "n/a" in sig["table"]


def test_lipschitz_rows_on_a_model_bounded_today(protocol, tmp_path):
    # The plain smoke CNN is made of layers SpectralProductLipschitz bounds;
    # at t = 20 its L_score * sigma is about 1, where the radius gains.
    args = ["--smoke", "--smoke-model", "plain", "--sigma", "0.25"]
    summary = _run(protocol, tmp_path, *args, "--max-images", 3, "--temperature", 20)
    (sig,) = summary["sigmas"]
    spec = protocol.DATASETS["cifar10"]
    model = protocol.smoke_model(spec, "plain", 0)
    L = SpectralProductLipschitz().logit_constant(model, torch.zeros(1, 3, 32, 32))
    assert sig["lipschitz"]["L_logits"] == L
    L_score = np.sqrt(2) / 4 * 20 * L
    assert sig["lipschitz"]["L_score"] == pytest.approx(L_score, rel=1e-12)
    assert sig["lipschitz"]["L_score_sigma"] < 2

    # The row equals SmoothedClassifier(smoothing="soft", lipschitz=L) itself.
    X = _smoke_images([0, 20, 40], (3, 32, 32))
    y = read_certify_log(tmp_path / "cifar10" / "noise_0.25" / "soft.tsv").label
    direct = (
        SmoothedClassifier(model, sigma=0.25, n0=10, n=200, alpha=0.001,
                           smoothing="soft", simplex_map="softmax", temperature=20,
                           interval=ClassPartitioning(EmpiricalBernstein()),
                           radius="multi", lipschitz=L, batch_size=400, random_state=0,
                           memory_format="contiguous")
        .fit(X, y)
        .certify(X)
    )  # fmt: skip
    out = tmp_path / "cifar10" / "noise_0.25"
    lip = read_certify_log(out / "lipschitz.tsv")
    np.testing.assert_array_equal(lip.radius, direct.radius)
    soft = read_certify_log(out / "soft.tsv")
    certified = ~soft.abstained
    assert certified.any()
    # G(p) < 1/sigma for a finite L: a strictly larger radius than Cohen's on
    # the same soft bounds, and never a smaller one.
    assert np.all(lip.radius[certified] > soft.radius[certified])
    envelope = read_certify_log(out / "lipschitz_envelope.tsv")
    assert np.all(envelope.radius[certified] > soft.radius[certified])


def test_imagenet_smoke(protocol, tmp_path):
    summary = _run(protocol, tmp_path, "--smoke", "--dataset", "imagenet",
                   "--sigma", "0.5", "--n", 100, "--hard-only")  # fmt: skip
    (sig,) = summary["sigmas"]
    assert summary["radii"] == [0.0, 0.5, 1.0, 1.5, 2.0, 2.5, 3.0]
    assert sig["run"]["image_shape"] == [3, 32, 32]
    log = read_certify_log(tmp_path / "imagenet" / "noise_0.50" / "cohen.tsv")
    assert log.idx.tolist() == [0, 100]  # every 100th image
    assert sig["rows"]["soft"] is None and "--hard-only" in sig["table"]


# ---------------------------------------------------------------------------
# Resuming and recertifying
# ---------------------------------------------------------------------------
def test_resume_equals_an_uninterrupted_run(protocol, tmp_path, capsys):
    args = ["--smoke", "--sigma", "0.5", "--n", 100, "--hard-only"]
    _run(protocol, tmp_path / "a", *args, "--max-images", 2)
    # As if killed between saving the statistics of image 20 and its index:
    # the stored statistics hold one row more than images.npz.
    images = tmp_path / "a" / "cifar10" / "noise_0.50" / "images.npz"
    with np.load(images) as f:
        kept = {k: f[k] if f[k].ndim == 0 else f[k][:1] for k in f.files}
    np.savez(images, **kept)
    _run(protocol, tmp_path / "a", *args, "--max-images", 3, "--resume")
    _run(protocol, tmp_path / "b", *args, "--max-images", 3)
    a, b = (tmp_path / d / "cifar10" / "noise_0.50" for d in "ab")
    assert CertificationResult.load(a / "hard.npz") == CertificationResult.load(
        b / "hard.npz"
    )
    with np.load(a / "images.npz") as fa, np.load(b / "images.npz") as fb:
        np.testing.assert_array_equal(fa["idx"], [0, 20, 40])
        np.testing.assert_array_equal(fa["label"], fb["label"])

    # Stored results are neither overwritten silently nor resumed with other
    # parameters.
    with pytest.raises(SystemExit) as exc:
        _run(protocol, tmp_path / "a", *args)
    assert exc.value.code == 2
    assert "--resume" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        _run(protocol, tmp_path / "a", *args[:-1], "--n", 150, "--resume")
    assert "n (100 != 150)" in capsys.readouterr().err


def test_recertify_fills_the_lipschitz_rows_without_drawing(
    protocol, tmp_path, monkeypatch
):
    # What happens once SpectralProductLipschitz bounds the ResNets: the
    # stored soft statistics get their Lipschitz rows, no model call.
    _run(protocol, tmp_path, "--smoke", "--sigma", "0.25", "--max-images", 2)
    out = tmp_path / "cifar10" / "noise_0.25"
    stored = (out / "soft.npz").read_bytes()
    L = 0.5
    monkeypatch.setattr(protocol, "logit_lipschitz_constant", lambda m, s: (L, "test"))

    def no_draws(*args, **kwargs):
        raise AssertionError("--recertify must not draw")

    monkeypatch.setattr(SmoothedClassifier, "certify", no_draws)
    summary = _run(protocol, tmp_path, "--smoke", "--sigma", "0.25", "--recertify")
    (sig,) = summary["sigmas"]
    assert (out / "soft.npz").read_bytes() == stored
    soft = CertificationResult.load(out / "soft.npz")
    expected = soft.recertify(lipschitz=L)  # the logits' constant
    np.testing.assert_allclose(expected.score_lipschitz, np.sqrt(2) / 4 * 1.0 * L)
    np.testing.assert_array_equal(
        read_certify_log(out / "lipschitz.tsv").radius, expected.radius
    )
    assert sig["lipschitz"]["L_logits"] == L
    # Another model's constant is refused for these statistics.
    with pytest.raises(SystemExit):
        _run(protocol, tmp_path, "--smoke", "--smoke-model", "plain",
             "--sigma", "0.25", "--recertify")  # fmt: skip


# ---------------------------------------------------------------------------
# The real path: CIFAR-10's python batch and Cohen et al.'s checkpoint layout
# ---------------------------------------------------------------------------
@pytest.fixture(scope="module")
def cifar_root(tmp_path_factory):
    """A CIFAR-10 test_batch in the official format (Python 2 style pickle)."""
    root = tmp_path_factory.mktemp("data")
    rng = np.random.default_rng(0)
    data = rng.integers(0, 256, size=(60, 3072), dtype=np.uint8)
    labels = rng.integers(0, 10, size=60).tolist()
    folder = root / "cifar-10-batches-py"
    folder.mkdir()
    batch = {"batch_label": "testing batch 1 of 1", "labels": labels, "data": data,
             "filenames": [f"img_{i}.png" for i in range(60)]}  # fmt: skip
    with open(folder / "test_batch", "wb") as f:
        pickle.dump(batch, f, protocol=2)
    return root, data, np.array(labels)


@pytest.fixture(scope="module")
def checkpoint_dir(tmp_path_factory):
    """A random-weight CIFAR ResNet-20 saved in Cohen et al.'s folder layout."""
    base = tmp_path_factory.mktemp("smoothing")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(1)
        model = get_architecture("cifar_resnet20")
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.1, 0.1)
                m.running_var.uniform_(0.5, 2.0)
    path = base / "models" / "cifar10" / "resnet110" / "noise_0.25"
    path.mkdir(parents=True)
    torch.save({"epoch": 90, "arch": "cifar_resnet20",
                "state_dict": model.state_dict(), "optimizer": {}},
               path / "checkpoint.pth.tar")  # fmt: skip
    return base


def test_cifar10_reader(protocol, cifar_root):
    root, data, labels = cifar_root
    with pytest.warns(UserWarning, match="not the official CIFAR-10 test_batch"):
        images, y = protocol.load_cifar10_test(root)
    assert images.shape == (60, 3, 32, 32) and images.dtype == np.uint8
    np.testing.assert_array_equal(images.reshape(60, -1), data)
    np.testing.assert_array_equal(y, labels)


def test_cifar10_reader_runs_no_code_from_the_file(protocol, tmp_path):
    marker = tmp_path / "executed"

    class Payload:
        def __reduce__(self):
            return (Path.touch, (marker,))

    (tmp_path / "test_batch").write_bytes(pickle.dumps({"data": Payload()}, 2))
    with (
        pytest.warns(UserWarning, match="md5"),
        pytest.raises(protocol.ProtocolError, match="refused to load the global"),
    ):
        protocol.load_cifar10_test(tmp_path)
    assert not marker.exists()


def test_real_path_on_local_data_and_a_checkpoint(
    protocol, tmp_path, cifar_root, checkpoint_dir
):
    root, data, labels = cifar_root
    with pytest.warns(UserWarning, match="md5"):
        summary = _run(protocol, tmp_path, "--root", root, "--checkpoint-dir",
                       checkpoint_dir, "--sigma", "0.25", "--n0", 10, "--n", 100,
                       "--max-images", 2, "--device", "cpu", "--hard-only",
                       "--memory-format", "contiguous")  # fmt: skip
    (sig,) = summary["sigmas"]
    ckpt = checkpoint_dir / "models/cifar10/resnet110/noise_0.25/checkpoint.pth.tar"
    assert sig["run"]["model"] == str(ckpt)
    # Independently: ToTensor's pixels of images 0 and 20, the loaded model.
    X = data[[0, 20]].reshape(2, 3, 32, 32).astype(np.float32) / np.float32(255)
    direct = (
        SmoothedClassifier(load_checkpoint(ckpt), sigma=0.25, n0=10, n=100,
                           alpha=0.001, batch_size=400, random_state=0,
                           memory_format="contiguous")
        .fit(X, labels[[0, 20]])
        .certify(X)
    )  # fmt: skip
    log = read_certify_log(tmp_path / "cifar10" / "noise_0.25" / "cohen.tsv")
    assert log.idx.tolist() == [0, 20]
    np.testing.assert_array_equal(log.label, labels[[0, 20]])
    np.testing.assert_array_equal(
        log.predict, np.where(direct.abstained, -1, direct.prediction)
    )
    np.testing.assert_array_equal(log.radius, direct.radius)


def test_setup_errors_name_what_is_missing(
    protocol, tmp_path, cifar_root, capsys, monkeypatch
):
    root, _, _ = cifar_root
    with pytest.warns(UserWarning, match="md5"), pytest.raises(SystemExit) as exc:
        _run(protocol, tmp_path, "--root", root, "--checkpoint-dir", tmp_path,
             "--sigma", "0.25")  # fmt: skip
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "cifar10/resnet110/noise_0.25/checkpoint.pth.tar" in err
    assert "locuslab/smoothing" in err

    with pytest.raises(SystemExit):
        _run(protocol, tmp_path, "--root", tmp_path / "nowhere", "--checkpoint-dir",
             tmp_path)  # fmt: skip
    assert "cifar-10-batches-py/test_batch" in capsys.readouterr().err

    monkeypatch.setitem(sys.modules, "torchvision", None)  # as if not installed
    with pytest.raises(SystemExit):
        _run(protocol, tmp_path, "--dataset", "imagenet", "--root", tmp_path,
             "--checkpoint-dir", tmp_path)  # fmt: skip
    assert "Reading ImageNet needs torchvision" in capsys.readouterr().err
