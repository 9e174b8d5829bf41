"""Tests of smoothlearn.zoo: released architectures, checkpoints and logs.

The checkpoints are written by an independent implementation in this file:
functional forward passes (``torch.nn.functional`` on nested dicts of
tensors, no ``nn.Module``), whose weights are then mapped into the released
key layouts by hand.  Loading them through ``load_checkpoint`` must give the
same logits; a wrong layout, a wrong stride, a missing shortcut or a wrong
normalisation would not.

The published log in tests/data is Cohen et al.'s own (source in
tests/data/README.md); its table is their analysis/markdown/vary_noise_cifar10.
"""

import hashlib
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from smoothlearn import CertificationResult
from smoothlearn.metrics import average_certified_radius, certified_accuracy
from smoothlearn.zoo import (
    ARCHITECTURES,
    CertifyLog,
    NormalizeLayer,
    get_architecture,
    load_checkpoint,
    read_certify_log,
    write_certify_log,
)

DATA = Path(__file__).parent / "data"
COHEN_LOG = DATA / "cohen2019_cifar10_resnet110_noise_0.25_test_sigma_0.25"

# Cohen et al., code/datasets.py (written out again here, not imported).
CIFAR_MEAN = torch.tensor([0.4914, 0.4822, 0.4465]).view(1, 3, 1, 1)
CIFAR_STD = torch.tensor([0.2023, 0.1994, 0.2010]).view(1, 3, 1, 1)
IMAGENET_MEAN = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
IMAGENET_STD = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)


# ---------------------------------------------------------------------------
# An independent, functional implementation of both ResNets
# ---------------------------------------------------------------------------
def _conv_weight(g, cout, cin, k, gain=1.0):
    return torch.randn(cout, cin, k, k, generator=g) * gain / np.sqrt(cin * k * k)


def _bn_params(g, c, scale=1.0):
    """Random affine weights and running statistics (eval mode uses them)."""
    return {
        "weight": scale * (0.5 + torch.rand(c, generator=g)),
        "bias": 0.1 * torch.randn(c, generator=g),
        "running_mean": 0.1 * torch.randn(c, generator=g),
        "running_var": 0.5 + torch.rand(c, generator=g),
        "num_batches_tracked": torch.tensor(12345),
    }


def _bn(x, p):
    return F.batch_norm(
        x,
        p["running_mean"],
        p["running_var"],
        p["weight"],
        p["bias"],
        training=False,
        eps=1e-5,
    )


def _cifar_params(depth, num_classes, seed):
    """He et al.'s CIFAR ResNet as nested dicts; residual branches scaled down
    (last BN weight ~0.1) so that 54 random blocks keep the logits O(1)."""
    g = torch.Generator().manual_seed(seed)
    n = (depth - 2) // 6
    params = {"stem": _conv_weight(g, 16, 3, 3), "stem_bn": _bn_params(g, 16)}
    stages, cin = [], 16
    for cout, first_stride in ((16, 1), (32, 2), (64, 2)):
        blocks = []
        for b in range(n):
            stride = first_stride if b == 0 else 1
            block = {
                "stride": stride,
                "a": _conv_weight(g, cout, cin, 3),
                "a_bn": _bn_params(g, cout),
                "b": _conv_weight(g, cout, cout, 3),
                "b_bn": _bn_params(g, cout, scale=0.1),
            }
            if stride != 1 or cin != cout:
                block["proj"] = _conv_weight(g, cout, cin, 1)
                block["proj_bn"] = _bn_params(g, cout)
            blocks.append(block)
            cin = cout
        stages.append(blocks)
    params["stages"] = stages
    params["fc_w"] = torch.randn(num_classes, 64, generator=g) / 8.0
    params["fc_b"] = 0.1 * torch.randn(num_classes, generator=g)
    return params


def _cifar_forward(params, x):
    x = (x - CIFAR_MEAN) / CIFAR_STD
    x = F.relu(_bn(F.conv2d(x, params["stem"], padding=1), params["stem_bn"]))
    for blocks in params["stages"]:
        for p in blocks:
            s = p["stride"]
            h = F.relu(_bn(F.conv2d(x, p["a"], stride=s, padding=1), p["a_bn"]))
            h = _bn(F.conv2d(h, p["b"], padding=1), p["b_bn"])
            if "proj" in p:
                x = _bn(F.conv2d(x, p["proj"], stride=s), p["proj_bn"]) + h
            else:
                x = x + h
            x = F.relu(x)
    # Cohen's AvgPool2d(8) on the final 8x8 map is the global mean.
    return F.linear(x.mean(dim=(2, 3)), params["fc_w"], params["fc_b"])


def _put_bn(state, prefix, p):
    for key, value in p.items():
        state[f"{prefix}.{key}"] = value


def _released_cifar_state_dict(params):
    """Cohen's layout: Sequential(NormalizeLayer, ResNet) -> '1.conv1.weight'."""
    state = {"1.conv1.weight": params["stem"]}
    _put_bn(state, "1.bn1", params["stem_bn"])
    for i, blocks in enumerate(params["stages"], start=1):
        for j, p in enumerate(blocks):
            pre = f"1.layer{i}.{j}"
            state[f"{pre}.conv1.weight"] = p["a"]
            _put_bn(state, f"{pre}.bn1", p["a_bn"])
            state[f"{pre}.conv2.weight"] = p["b"]
            _put_bn(state, f"{pre}.bn2", p["b_bn"])
            if "proj" in p:
                state[f"{pre}.downsample.0.weight"] = p["proj"]
                _put_bn(state, f"{pre}.downsample.1", p["proj_bn"])
    state["1.fc.weight"] = params["fc_w"]
    state["1.fc.bias"] = params["fc_b"]
    return state


def _resnet50_params(num_classes, seed):
    """torchvision's ResNet-50 as nested dicts (stride in the 3x3 conv)."""
    g = torch.Generator().manual_seed(seed)
    params = {"stem": _conv_weight(g, 64, 3, 7), "stem_bn": _bn_params(g, 64)}
    stages, cin = [], 64
    for planes, n, first_stride in ((64, 3, 1), (128, 4, 2), (256, 6, 2), (512, 3, 2)):
        blocks = []
        for b in range(n):
            stride = first_stride if b == 0 else 1
            block = {
                "stride": stride,
                "a": _conv_weight(g, planes, cin, 1),
                "a_bn": _bn_params(g, planes),
                "b": _conv_weight(g, planes, planes, 3),
                "b_bn": _bn_params(g, planes),
                "c": _conv_weight(g, 4 * planes, planes, 1),
                "c_bn": _bn_params(g, 4 * planes, scale=0.1),
            }
            if b == 0:
                block["proj"] = _conv_weight(g, 4 * planes, cin, 1)
                block["proj_bn"] = _bn_params(g, 4 * planes)
            blocks.append(block)
            cin = 4 * planes
        stages.append(blocks)
    params["stages"] = stages
    params["fc_w"] = torch.randn(num_classes, 2048, generator=g) / np.sqrt(2048)
    params["fc_b"] = 0.1 * torch.randn(num_classes, generator=g)
    return params


def _resnet50_forward(params, x):
    x = (x - IMAGENET_MEAN) / IMAGENET_STD
    x = F.relu(_bn(F.conv2d(x, params["stem"], stride=2, padding=3), params["stem_bn"]))
    x = F.max_pool2d(x, kernel_size=3, stride=2, padding=1)
    for blocks in params["stages"]:
        for p in blocks:
            h = F.relu(_bn(F.conv2d(x, p["a"]), p["a_bn"]))
            h = F.relu(
                _bn(F.conv2d(h, p["b"], stride=p["stride"], padding=1), p["b_bn"])
            )
            h = _bn(F.conv2d(h, p["c"]), p["c_bn"])
            if "proj" in p:
                x = _bn(F.conv2d(x, p["proj"], stride=p["stride"]), p["proj_bn"])
            x = F.relu(x + h)
    return F.linear(x.mean(dim=(2, 3)), params["fc_w"], params["fc_b"])


def _released_resnet50_state_dict(params, prefix="1.module."):
    """Cohen's ImageNet layout: torchvision's keys under DataParallel."""
    state = {f"{prefix}conv1.weight": params["stem"]}
    _put_bn(state, f"{prefix}bn1", params["stem_bn"])
    for i, blocks in enumerate(params["stages"], start=1):
        for j, p in enumerate(blocks):
            pre = f"{prefix}layer{i}.{j}"
            for conv, name in (("a", "1"), ("b", "2"), ("c", "3")):
                state[f"{pre}.conv{name}.weight"] = p[conv]
                _put_bn(state, f"{pre}.bn{name}", p[f"{conv}_bn"])
            if "proj" in p:
                state[f"{pre}.downsample.0.weight"] = p["proj"]
                _put_bn(state, f"{pre}.downsample.1", p["proj_bn"])
    state[f"{prefix}fc.weight"] = params["fc_w"]
    state[f"{prefix}fc.bias"] = params["fc_b"]
    return state


def _save_checkpoint(path, arch, state_dict, legacy=False, **extra):
    # What Cohen et al.'s train.py saves (an SGD optimizer's state dict); the
    # released files of 2019 are in torch's legacy (pre-1.6, non-zip) format.
    momentum = {
        i: {"momentum_buffer": torch.zeros_like(v)}
        for i, v in enumerate(state_dict.values())
        if legacy and v.is_floating_point()
    }
    optimizer = {
        "state": momentum,
        "param_groups": [
            {
                "lr": 0.001,
                "momentum": 0.9,
                "dampening": 0,
                "weight_decay": 1e-4,
                "nesterov": False,
                "params": list(range(len(state_dict))),
            }
        ],
    }
    payload = {"epoch": 90, "arch": arch, "state_dict": state_dict}
    payload["optimizer"] = optimizer
    payload.update(extra)
    torch.save(payload, path, _use_new_zipfile_serialization=not legacy)
    return path


@pytest.fixture(scope="module")
def resnet110_checkpoint(tmp_path_factory):
    params = _cifar_params(110, 10, seed=0)
    path = tmp_path_factory.mktemp("ckpt") / "checkpoint.pth.tar"
    _save_checkpoint(path, "cifar_resnet110", _released_cifar_state_dict(params))
    return path, params


# ---------------------------------------------------------------------------
# Architectures
# ---------------------------------------------------------------------------
def test_architectures_have_the_published_sizes():
    # torchvision documents 25,557,032 parameters for resnet50 (and its
    # state dict has 320 entries); He et al. (2016, Table 6) give 1.7M for
    # ResNet-110 and 0.27M for ResNet-20 (option-A shortcuts; the 1x1 conv +
    # BN shortcuts of Cohen's code add 2,752 parameters at depth 20).
    sizes = {"cifar_resnet20": 272_474, "cifar_resnet110": 1_730_714}
    for name, size in sizes.items():
        assert sum(p.numel() for p in get_architecture(name).parameters()) == size
    r50 = get_architecture("resnet50")
    assert sum(p.numel() for p in r50.parameters()) == 25_557_032
    assert len(r50.state_dict()) == 320
    assert ARCHITECTURES == ("cifar_resnet20", "cifar_resnet110", "resnet50")


def test_architecture_output_shapes_and_normalisation_first():
    model = get_architecture("cifar_resnet20", num_classes=7).eval()
    assert isinstance(model[0], NormalizeLayer)
    torch.testing.assert_close(model[0].std, CIFAR_STD.flatten())
    assert model(torch.rand(2, 3, 32, 32)).shape == (2, 7)
    model = get_architecture("resnet50", normalization="center").eval()
    torch.testing.assert_close(model[0].mean, IMAGENET_MEAN.flatten())
    assert torch.equal(model[0].std, torch.ones(3))
    assert model(torch.rand(1, 3, 64, 64)).shape == (1, 1000)


def test_architecture_bad_parameters():
    with pytest.raises(ValueError, match="'name' parameter must be a str among"):
        get_architecture("resnet18")
    with pytest.raises(ValueError, match="'num_classes'"):
        get_architecture("cifar_resnet20", num_classes=0)
    with pytest.raises(ValueError, match="'num_classes'"):
        get_architecture("cifar_resnet20", num_classes=True)
    with pytest.raises(ValueError, match="'normalization'"):
        get_architecture("cifar_resnet20", normalization="imagenet")


def test_architectures_trace_with_torch_fx():
    # Graph-based Lipschitz bounds walk the model through torch.fx.
    model = get_architecture("cifar_resnet20").eval()
    graph = torch.fx.symbolic_trace(model)
    x = torch.rand(2, 3, 32, 32)
    assert torch.equal(graph(x), model(x))
    ops = [n.target for n in graph.graph.nodes if n.op == "call_function"]
    assert sum(getattr(op, "__name__", "") == "add" for op in ops) == 9  # 3n blocks


def test_normalize_layer():
    layer = NormalizeLayer([0.5, 0.25], [0.5, 2.0])
    x = torch.rand(3, 2, 4, 5)
    expected = (x - torch.tensor([0.5, 0.25]).view(1, 2, 1, 1)) / torch.tensor(
        [0.5, 2.0]
    ).view(1, 2, 1, 1)
    torch.testing.assert_close(layer(x), expected, rtol=0, atol=0)
    # not saved (the released checkpoints hold no entry for it), but moved
    assert layer.state_dict() == {}
    assert layer.double().mean.dtype == torch.float64
    assert "std=(0.5, 2)" in repr(layer)
    with pytest.raises(ValueError, match="'std' parameter of NormalizeLayer must"):
        NormalizeLayer([0.5], [0.0])
    with pytest.raises(ValueError, match="one entry per channel"):
        NormalizeLayer([0.5, 0.5], [1.0])
    with pytest.raises(ValueError, match="'mean'"):
        NormalizeLayer([[0.5]], [1.0])


# ---------------------------------------------------------------------------
# Checkpoints written by the independent implementation
# ---------------------------------------------------------------------------
def test_cifar_resnet110_checkpoint_gives_the_same_logits(resnet110_checkpoint):
    path, params = resnet110_checkpoint
    model = load_checkpoint(path)
    assert not any(m.training for m in model.modules())
    x = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        got, want = model(x), _cifar_forward(params, x)
    assert want.abs().max() > 0.3 and want.std() > 0.1  # not a degenerate net
    assert (got - want).abs().max().item() <= 1e-5
    # A wrong first layer is caught at this tolerance.
    centred = load_checkpoint(path, normalization="center")
    with torch.no_grad():
        assert (centred(x) - want).abs().max().item() > 1e-2


def test_resnet50_checkpoint_under_dataparallel_gives_the_same_logits(tmp_path):
    params = _resnet50_params(1000, seed=2)
    path = _save_checkpoint(
        tmp_path / "checkpoint.pth.tar",
        "resnet50",
        _released_resnet50_state_dict(params),
    )
    model = load_checkpoint(path)
    x = torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        got, want = model(x), _resnet50_forward(params, x)
    assert got.shape == (1, 1000)
    assert want.std() > 0.1
    assert (got - want).abs().max().item() <= 1e-5


def test_resnet20_legacy_format_without_num_batches_tracked_and_bare(tmp_path):
    # torch < 0.4.1 saved no num_batches_tracked, torch < 1.6 the legacy
    # format; torchvision-style bare state dicts have no '1.' prefix and no
    # 'arch' entry.
    params = _cifar_params(20, 10, seed=4)
    state = {
        k: v
        for k, v in _released_cifar_state_dict(params).items()
        if not k.endswith("num_batches_tracked")
    }
    x = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(5))
    want = _cifar_forward(params, x)
    old = _save_checkpoint(tmp_path / "old.pth.tar", "cifar_resnet20", state, True)
    bare = tmp_path / "bare.pth"
    torch.save({k.removeprefix("1."): v for k, v in state.items()}, bare)
    for model in (load_checkpoint(old), load_checkpoint(bare, arch="cifar_resnet20")):
        with torch.no_grad():
            assert (model(x) - want).abs().max().item() <= 1e-5


def test_load_checkpoint_moves_to_map_location(resnet110_checkpoint):
    path, _ = resnet110_checkpoint
    model = load_checkpoint(path, map_location=torch.device("cpu"))
    assert {p.device.type for p in model.parameters()} == {"cpu"}
    assert model[0].mean.device.type == "cpu"


class _Payload:
    """Unpickling it would run code: weights_only must refuse it."""

    ran = False

    def __reduce__(self):
        return (_mark_ran, ())


def _mark_ran():
    _Payload.ran = True
    return None


def test_bad_checkpoints_give_clear_errors(tmp_path, resnet110_checkpoint):
    path, params = resnet110_checkpoint
    state = _released_cifar_state_dict(params)

    with pytest.raises(FileNotFoundError):
        load_checkpoint(tmp_path / "nothing.pth.tar")
    text = tmp_path / "text.pth.tar"
    text.write_text("idx\tlabel\n")
    with pytest.raises(ValueError, match=r"weights_only=True"):
        load_checkpoint(text)
    evil = tmp_path / "evil.pth.tar"
    torch.save({"arch": "cifar_resnet110", "state_dict": state, "x": _Payload()}, evil)
    with pytest.raises(ValueError, match=r"weights_only=True"):
        load_checkpoint(evil)
    assert not _Payload.ran

    def saved(obj, name):
        torch.save(obj, tmp_path / name)
        return tmp_path / name

    with pytest.raises(ValueError, match=r"not a checkpoint.*Got a list"):
        load_checkpoint(saved([1, 2], "list.pt"))
    with pytest.raises(ValueError, match=r"not a checkpoint.*'state_dict' entry"):
        load_checkpoint(saved({"epoch": 3, "arch": "resnet50"}, "meta.pt"))
    with pytest.raises(ValueError, match=r"'vgg16', which smoothlearn.zoo does not"):
        load_checkpoint(saved({"arch": "vgg16", "state_dict": state}, "vgg.pt"))
    with pytest.raises(ValueError, match="no 'arch' entry"):
        load_checkpoint(saved({"state_dict": state}, "noarch.pt"))
    with pytest.raises(ValueError, match="'arch' parameter is 'cifar_resnet20'"):
        load_checkpoint(path, arch="cifar_resnet20")
    with pytest.raises(ValueError, match="'arch' parameter must be a str among"):
        load_checkpoint(saved({"state_dict": state}, "noarch2.pt"), arch="resnet18")

    missing = {k: v for k, v in state.items() if k != "1.layer3.17.bn2.running_var"}
    with pytest.raises(
        ValueError, match=r"1 missing keys \('layer3.17.bn2.running_var'"
    ):
        load_checkpoint(_save_checkpoint(tmp_path / "m.pt", "cifar_resnet110", missing))
    # a ResNet-20 labelled as a ResNet-110: 90 blocks' keys are missing
    small = _released_cifar_state_dict(_cifar_params(20, 10, seed=6))
    with pytest.raises(ValueError, match=r"does not match .* missing keys"):
        load_checkpoint(_save_checkpoint(tmp_path / "s.pt", "cifar_resnet110", small))
    wrong = dict(state, **{"1.conv1.weight": torch.zeros(16, 3, 5, 5)})
    with pytest.raises(ValueError, match=r"does not match .*size mismatch.*conv1"):
        load_checkpoint(_save_checkpoint(tmp_path / "w.pt", "cifar_resnet110", wrong))
    extra = dict(state, **{"0.means": torch.zeros(3)})
    with pytest.raises(ValueError, match=r"1 unexpected keys \('0.means'\)"):
        load_checkpoint(_save_checkpoint(tmp_path / "e.pt", "cifar_resnet110", extra))
    twice = dict(state, **{"1.module.fc.bias": state["1.fc.bias"]})
    with pytest.raises(ValueError, match=r"'fc.bias' twice"):
        load_checkpoint(_save_checkpoint(tmp_path / "t.pt", "cifar_resnet110", twice))
    with pytest.raises(ValueError, match="maps 'x' to a int"):
        load_checkpoint(
            _save_checkpoint(tmp_path / "i.pt", "cifar_resnet110", {"x": 1})
        )


# ---------------------------------------------------------------------------
# Cohen-format logs
# ---------------------------------------------------------------------------
def test_published_log_is_unchanged():
    # sha256 recorded in tests/data/README.md when the file was added.
    digest = hashlib.sha256(COHEN_LOG.read_bytes()).hexdigest()
    assert digest in (DATA / "README.md").read_text()


def test_published_log_reads_back_into_the_published_table():
    log = read_certify_log(COHEN_LOG)
    assert len(log) == 500
    np.testing.assert_array_equal(log.idx, np.arange(0, 10_000, 20))  # --skip 20
    assert log.time[0] == 15.4 and log.source == str(COHEN_LOG)
    # Cohen et al., analysis/markdown/vary_noise_cifar10, row sigma = 0.25:
    # 0.60 / 0.43 / 0.27 / 0.00 at r = 0.25 / 0.5 / 0.75 / 1.0 (two decimals).
    radii = [0.25, 0.5, 0.75, 1.0]
    acc = log.certified_accuracy(radii)
    np.testing.assert_array_equal(np.round(acc, 2), [0.60, 0.43, 0.27, 0.00])
    # The exact fractions (SCIENCE.md's recomputation: .600/.428/.266/0).
    np.testing.assert_array_equal(acc * 500, [300, 214, 133, 0])
    assert log.certified_accuracy(0.0) == 374 / 500  # clean accuracy .748
    assert round(log.average_certified_radius(), 3) == 0.429
    assert log.abstained.sum() == 43  # abstention rate .086


def test_published_log_agrees_with_cohens_own_analysis():
    # Cohen et al.'s analyze.py, ApproximateAccuracy.at_radius, verbatim.
    pd = pytest.importorskip("pandas")
    df = pd.read_csv(COHEN_LOG, delimiter="\t")
    radii = np.linspace(0.0, 1.0, 41)
    want = [(df["correct"] & (df["radius"] >= r)).mean() for r in radii]
    np.testing.assert_array_equal(
        read_certify_log(COHEN_LOG).certified_accuracy(radii), want
    )


def _random_result(seed, m=40, k=5):
    rng = np.random.default_rng(seed)
    top = rng.integers(0, k, size=m)
    p = rng.dirichlet(np.full(k, 0.3), size=m)
    p[np.arange(m), top] += rng.uniform(0.0, 2.0, size=m)  # some close calls
    p /= p.sum(axis=1, keepdims=True)
    n0, n = 100, 10_000
    selection = np.stack([rng.multinomial(n0, q) for q in p])
    estimation = np.stack([rng.multinomial(n, q) for q in p])
    result = CertificationResult.from_statistics(
        selection=selection, estimation=estimation, n0=n0, n=n, sigma=0.5, alpha=0.001
    )
    y = np.where(rng.random(m) < 0.8, top, (top + 1) % k)
    return result, y


@pytest.mark.parametrize("seed", range(3))
def test_write_read_round_trip_keeps_the_metrics(tmp_path, seed):
    result, y = _random_result(seed)
    assert result.abstained.any() and not result.abstained.all()
    idx = np.arange(0, 20 * result.n_inputs, 20)
    seconds = np.random.default_rng(seed).uniform(0, 200, result.n_inputs).round(6)
    path = tmp_path / "log"
    written = write_certify_log(result, y, path, idx=idx, time=seconds)
    log = read_certify_log(path)
    for name in ("idx", "label", "predict", "radius", "correct"):
        np.testing.assert_array_equal(getattr(log, name), getattr(written, name))
    np.testing.assert_allclose(log.time, seconds, rtol=0, atol=1e-6)
    np.testing.assert_array_equal(
        log.radius, np.where(result.abstained, 0, result.radius)
    )
    np.testing.assert_array_equal(log.predict == -1, result.abstained)
    # Every step of the curve: at each radius, just above, and between.
    r = np.unique(np.concatenate([[0.0], result.radius, result.radius + 1e-12]))
    np.testing.assert_array_equal(
        log.certified_accuracy(r), certified_accuracy(y, result, r)
    )
    assert log.average_certified_radius() == average_certified_radius(y, result)


def test_written_header_and_default_columns(tmp_path):
    result, y = _random_result(7, m=3)
    write_certify_log(result, y, tmp_path / "log")
    lines = (tmp_path / "log").read_text().splitlines()
    assert lines[0] == "idx\tlabel\tpredict\tradius\tcorrect\ttime"
    assert [line.split("\t")[0] for line in lines[1:]] == ["0", "1", "2"]
    assert {line.split("\t")[5] for line in lines[1:]} == {"0:00:00"}


def test_reads_logs_in_certify_py_line_format(tmp_path):
    # The line certify.py prints: "{}\t{}\t{}\t{:.3}\t{}\t{}" with the
    # radius to 3 significant digits and str(timedelta) for the time.
    import datetime

    rows = [(0, 3, 3, 1.23456, 1, 15.123456), (20, 7, -1, 0.0, 0, 3661.5)]
    rows.append((40, 1, 1, 1.5e-5, 1, 90000.25))
    text = "idx\tlabel\tpredict\tradius\tcorrect\ttime\n"
    for i, label, pred, radius, correct, sec in rows:
        elapsed = str(datetime.timedelta(seconds=sec))
        text += f"{i}\t{label}\t{pred}\t{radius:.3}\t{correct}\t{elapsed}\n"
    (tmp_path / "log").write_text(text)
    log = read_certify_log(tmp_path / "log")
    np.testing.assert_array_equal(log.radius, [1.23, 0.0, 1.5e-5])
    np.testing.assert_allclose(log.time, [15.123456, 3661.5, 90000.25], atol=1e-9)
    np.testing.assert_array_equal(log.abstained, [False, True, False])


def test_log_without_time_column_and_extra_columns(tmp_path):
    (tmp_path / "log").write_text(
        "idx\tlabel\tpredict\tradius\tcorrect\tpA\n0\t1\t1\t0.5\t1\t0.9\n"
    )
    log = read_certify_log(tmp_path / "log")
    assert np.isnan(log.time).all() and log.certified_accuracy(0.5) == 1.0


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("", "is empty"),
        ("idx label predict radius correct time\n", r"lacks the columns"),
        ("idx\tlabel\tpredict\tradius\ttime\n0\t1\t1\t0.5\t1.0\n", r"\['correct'\]"),
        (
            "idx\tlabel\tpredict\tradius\tcorrect\ttime\n0\t1\t1\t0.5\t1\n",
            "Line 2 .* 5",
        ),
        (
            "idx\tlabel\tpredict\tradius\tcorrect\ttime\n0\t1\tcat\t0.5\t1\t1.0\n",
            "Line 2.*'cat'",
        ),
        (
            "idx\tlabel\tpredict\tradius\tcorrect\ttime\n0\t1\t1\t0.5\t2\t1.0\n",
            "0 or 1",
        ),
        ("idx\tlabel\tpredict\tradius\tcorrect\ttime\n0\t1\t1\t-0.5\t1\t1.0\n", ">= 0"),
        ("idx\tlabel\tpredict\tradius\tcorrect\ttime\n0\t1\t1\tnan\t1\t1.0\n", ">= 0"),
        (
            "idx\tlabel\tpredict\tradius\tcorrect\ttime\n0\t1\t1\t0.5\t1\tsoon\n",
            "'soon'",
        ),
    ],
)
def test_malformed_logs_give_clear_errors(tmp_path, text, match):
    (tmp_path / "log").write_text(text)
    with pytest.raises(ValueError, match=match):
        read_certify_log(tmp_path / "log")


def test_inconsistent_correct_column_warns_and_counts_abstentions_wrong(tmp_path):
    header = "idx\tlabel\tpredict\tradius\tcorrect\ttime\n"
    (tmp_path / "log").write_text(header + "0\t1\t2\t0.5\t1\t1\n1\t1\t-1\t0.0\t1\t1\n")
    with pytest.warns(UserWarning, match="disagrees .* on 2 rows"):
        log = read_certify_log(tmp_path / "log")
    # the column is used as written, except that an abstention is never correct
    assert log.certified_accuracy(0.0) == 0.5


def test_from_result_bad_input():
    result, y = _random_result(8, m=4)
    with pytest.raises(TypeError, match="CertificationResult"):
        CertifyLog.from_result("result", y)
    with pytest.raises(ValueError, match=r"'y' parameter must have shape \(4,\)"):
        CertifyLog.from_result(result, y[:3])
    with pytest.raises(ValueError, match="'y' parameter must hold class indices"):
        CertifyLog.from_result(result, np.array(["a", "b", "c", "d"]))
    with pytest.raises(ValueError, match="'y' parameter must hold class indices"):
        CertifyLog.from_result(result, [-1, 0, 1, 2])
    with pytest.raises(ValueError, match="'idx' parameter"):
        CertifyLog.from_result(result, y, idx=[0.5, 1, 2, 3])
    with pytest.raises(ValueError, match="'time' parameter"):
        CertifyLog.from_result(result, y, time=-1.0)
    assert (
        CertifyLog.from_result(result, y.astype(float), time=2.0).time.tolist()
        == [2.0] * 4
    )


def test_certify_log_validates_its_columns():
    with pytest.raises(ValueError, match=r"'label' parameter of CertifyLog .* \(2,\)"):
        CertifyLog(
            idx=[0, 1], label=[0], predict=[0, 1], radius=[0.1, 0.2], correct=[1, 1]
        )
    with pytest.raises(ValueError, match="radii >= 0"):
        CertifyLog(idx=[0], label=[0], predict=[0], radius=[-0.1], correct=[1])
    log = CertifyLog(idx=[], label=[], predict=[], radius=[], correct=[])
    with pytest.raises(ValueError, match="no inputs"):
        log.certified_accuracy(0.0)
    assert repr(log) == "CertifyLog(n_inputs=0)"


def test_a_zoo_model_certifies_and_its_log_matches_the_result(tmp_path):
    # End to end through the engine: random weights, tiny n (speed only).
    from smoothlearn import SmoothedClassifier

    model = get_architecture("cifar_resnet20").eval()
    X = torch.rand(3, 3, 32, 32, generator=torch.Generator().manual_seed(9)).numpy()
    y = np.array([0, 3, 9])
    clf = SmoothedClassifier(model, sigma=0.25, n0=10, n=60, alpha=0.01, random_state=0)
    result = clf.fit(X, y).certify(X)
    assert result.selection.shape == (3, 10)
    write_certify_log(result, y, tmp_path / "log", idx=[0, 20, 40], time=1.5)
    log = read_certify_log(tmp_path / "log")
    r = np.unique(np.concatenate([[0.0], result.radius]))
    np.testing.assert_array_equal(
        log.certified_accuracy(r), certified_accuracy(y, result, r)
    )
    np.testing.assert_array_equal(log.predict == -1, result.abstained)
