"""`tvm-mpq quantize` and `tvm-mpq train` end to end, and resumable training."""

import json

import numpy as np
import onnx
import pytest
import torch
from conftest import assert_user_error, run_cli

from tvm_mpq.errors import MpqError
from tvm_mpq.frontend.graph import build_layer_graph
from tvm_mpq.frontend.loader import validate
from tvm_mpq.memory.allocation import allocate
from tvm_mpq.models.zoo import zoo_model
from tvm_mpq.quant.qparams import plan_metadata
from tvm_mpq.quant.qplan import make_plan
from tvm_mpq.quant.faces.conv2d import ConvLayer
from tvm_mpq.quant.torch_model import from_onnx
from tvm_mpq.quant.train import (ImageData, TrainConfig, init_float_weights,
                                 is_zoo_synthetic, run_training)

MODEL = "mobilenet_v1_0.25_32"


def _graph(name=MODEL):
    return build_layer_graph(validate(zoo_model(name)))


@pytest.fixture(scope="module")
def plans(tmp_path_factory):
    d = tmp_path_factory.mktemp("plans")
    g = _graph()
    out = {}
    for scheme in ("mixpl", "mixpc"):
        p = d / f"{scheme}.json"
        p.write_text(json.dumps(allocate(g, 120_000, 12_000, scheme).to_json()))
        out[scheme] = p
    p = d / "other.json"
    p.write_text(json.dumps(allocate(_graph("mobilenet_v1_0.5_32"), 10**7, 10**7).to_json()))
    out["other"] = p
    return out


def _fashion_mnist_or_skip():
    from tvm_mpq.data.fashion_mnist import load_fashion_mnist

    try:
        return load_fashion_mnist("train"), load_fashion_mnist("test")
    except MpqError:
        pytest.skip("Fashion-MNIST is not installed (dataset-fashion-mnist)")


def _check_qdq(path, plan_path):
    m = onnx.load(str(path))
    onnx.checker.check_model(m, full_check=True)
    assert plan_metadata(m) == json.loads(plan_path.read_text())
    assert any(t.data_type == onnx.TensorProto.UINT2 for t in m.graph.initializer)


def test_quantize_synthetic(plans, tmp_path):
    out = tmp_path / "q.onnx"
    p = run_cli("quantize", MODEL, "--plan", plans["mixpl"], "--calib", "synthetic",
                "--num-samples", 32, "--limit-test", 200, "-o", out)
    assert p.returncode == 0, p.stderr
    warn = [ln for ln in p.stderr.splitlines() if ln.startswith("warning: synthetic")]
    assert len(warn) == 1 and "footprint and latency" in warn[0]
    assert "fake-quant accuracy" in p.stdout or "agreement" in p.stdout
    _check_qdq(out, plans["mixpl"])


def test_quantize_fashion_mnist_and_npy(plans, tmp_path):
    (train, _), _ = _fashion_mnist_or_skip()
    out = tmp_path / "q.onnx"
    p = run_cli("quantize", MODEL, "--plan", plans["mixpc"], "--calib", "fashion-mnist",
                "--num-samples", 256, "--limit-test", 500, "-o", out)
    assert p.returncode == 0, p.stderr
    assert "warning" not in p.stderr
    lines = p.stdout.splitlines()
    assert lines[0].startswith("float accuracy:") and "500 images" in lines[0]
    assert lines[1].startswith("fake-quant accuracy:")
    _check_qdq(out, plans["mixpc"])
    # raw 28x28 uint8 images in an .npy file are the same calibration data
    np.save(tmp_path / "calib.npy", train[:256])
    out2 = tmp_path / "q2.onnx"
    p = run_cli("-q", "quantize", MODEL, "--plan", plans["mixpc"], "--calib",
                tmp_path / "calib.npy", "--limit-test", 500, "-o", out2)
    assert p.returncode == 0, p.stderr
    assert out2.read_bytes() == out.read_bytes()


def test_quantize_user_errors(plans, tmp_path):
    out = tmp_path / "q.onnx"
    p = run_cli("quantize", MODEL, "--plan", plans["other"], "--calib", "synthetic", "-o", out)
    assert_user_error(p, "plan", "mobilenet_v1_0.5_32")
    assert not out.exists()
    bad = tmp_path / "bad.npy"
    np.save(bad, np.zeros((4, 3, 32, 32), np.float32))
    p = run_cli("quantize", MODEL, "--plan", plans["mixpl"], "--calib", bad, "-o", out)
    assert_user_error(p, "calibration file", "[N, 1, 32, 32]")


def test_train_cli_checkpoint_and_resume(plans, tmp_path):
    _fashion_mnist_or_skip()
    out, flt = tmp_path / "q.onnx", tmp_path / "f.onnx"
    common = ["--plan", plans["mixpl"], "-o", out, "--float-epochs", 1, "--limit-train", 512,
              "--limit-test", 256]
    p = run_cli("train", MODEL, *common, "--epochs", 1, "--save-float", flt)
    assert p.returncode == 0, p.stderr
    assert (tmp_path / "q.onnx.ckpt" / "state.pt").is_file()
    assert "float accuracy" in p.stdout and "fake-quant accuracy" in p.stdout
    _check_qdq(out, plans["mixpl"])
    assert from_onnx(onnx.load(str(flt))).name == MODEL
    p = run_cli("train", MODEL, *common, "--epochs", 2)
    assert p.returncode == 0, p.stderr
    assert "resuming from" in p.stderr and "qat epoch 1 done" in p.stderr
    assert "float epoch" not in p.stderr and "QAT epoch 2/2" in p.stderr
    # another plan against the same checkpoint: a one-line user error
    p = run_cli("-q", "train", MODEL, "--plan", plans["mixpc"], "-o", out, "--epochs", 2,
                "--float-epochs", 1, "--limit-train", 512, "--limit-test", 256)
    assert_user_error(p, "checkpoint", "--no-resume")
    # start from the saved float model, calibration only (no QAT epochs)
    p = run_cli("train", MODEL, "--plan", plans["mixpl"], "-o", tmp_path / "ptq.onnx",
                "--float-checkpoint", flt, "--epochs", 0, "--limit-train", 128,
                "--limit-test", 64)
    assert p.returncode == 0, p.stderr
    assert "0 float + 0 QAT epochs" in p.stderr and "calibrated accuracy" in p.stdout


def test_resumed_training_equals_uninterrupted(tmp_path):
    (train, test) = _fashion_mnist_or_skip()
    model = validate(zoo_model(MODEL))
    graph = build_layer_graph(model)
    plan = make_plan(graph, "mixpl", {"block1.pw": 4, "block13.pw": 2}, {"block2.pw": 4})

    def job(epochs, ckpt, resume):
        net = from_onnx(model)
        cfg = TrainConfig(epochs=epochs, float_epochs=1, limit_train=192, threads=1,
                          batch_size=64, progress=False, qat_init="calibrate")
        tr = ImageData(*train, net.input_shape, 192)
        te = ImageData(*test, net.input_shape, 128)
        return run_training(net, plan, tr, te, cfg, ckpt, resume=resume)

    full = job(2, tmp_path / "a", False)
    job(1, tmp_path / "b", False)
    resumed = job(2, tmp_path / "b", True)
    assert resumed.resumed_from == "qat epoch 1"
    assert [h["phase"] for h in resumed.history] == ["float", "qat", "qat"]
    a, b = full.qnet.state_dict(), resumed.qnet.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert full.qat_acc == resumed.qat_acc and full.float_acc == resumed.float_acc
    assert full.qnet.layer("block3.dw").bn_frozen and resumed.qnet.layer("block3.dw").bn_frozen
    assert all(m.aq.a.item() != 6.0 for m in full.qnet.layers[:-2])     # calibrated clips


def _pytorch_init_scale(net):
    """max |w| * sqrt(fan_in) over the weight layers: <= 1 for PyTorch's default
    initialization U(-1/sqrt(fan_in), 1/sqrt(fan_in)), ~4-5 for the zoo's He-normal."""
    return max(float(m.weight.detach().abs().max()) * m.weight[0].numel() ** 0.5
               for m in net.weight_layers())


def test_float_training_starts_from_pytorch_init(tmp_path):
    """The zoo's synthetic He-normal weights train ~5 points slower than PyTorch's default
    initialization (bench/train_gap.py); run_training's float phase starts from the latter
    when the net holds the zoo's weights, and keeps any other weights."""
    (train, test) = _fashion_mnist_or_skip()
    model = validate(zoo_model(MODEL))
    plan = make_plan(build_layer_graph(model), "mixpl")
    assert _pytorch_init_scale(from_onnx(model)) > 3.0

    def job(net, **kw):
        cfg = TrainConfig(epochs=0, float_epochs=1, limit_train=128, batch_size=64,
                          float_lr=1e-9, threads=1, progress=False, **kw)   # weights ~ start
        tr, te = ImageData(*train, net.input_shape, 128), ImageData(*test, net.input_shape, 64)
        return run_training(net, plan, tr, te, cfg, tmp_path / "ckpt", resume=False).float_net

    net = job(from_onnx(model))                                 # default float_init="auto"
    assert _pytorch_init_scale(net) <= 1.0 + 1e-4
    assert all(torch.allclose(m.bn.weight, torch.ones(1), atol=1e-4)
               for m in net.layers if isinstance(m, ConvLayer))
    for start, kw in ((model, {"float_init": "keep"}),             # explicitly kept
                      (zoo_model(MODEL, seed=1), {})):               # not the zoo's: kept
        net = job(from_onnx(start), **kw)
        ref = from_onnx(start)
        assert all(torch.allclose(a.weight, b.weight, atol=1e-6)
                   for a, b in zip(net.weight_layers(), ref.weight_layers()))
    net = from_onnx(model)                              # no float phase: nothing to initialize
    assert is_zoo_synthetic(net) and not init_float_weights(net, TrainConfig(float_epochs=0))
    assert is_zoo_synthetic(net)


def test_crop_flip_augmentation_shifts_and_flips():
    from tvm_mpq.quant.train import crop_flip

    img = np.zeros((64, 28, 28), np.uint8)
    img[:, 10:14, 5:9] = 200                       # an off-centre square
    out = crop_flip(img, np.random.default_rng(0))
    assert out.shape == img.shape and out.dtype == np.uint8
    assert np.all(out.reshape(64, -1).sum(1) == 200 * 16)        # nothing cut off
    cols = [int(np.nonzero(o.any(0))[0][0]) for o in out]
    rows = [int(np.nonzero(o.any(1))[0][0]) for o in out]
    assert set(rows) <= set(range(8, 13)) and len(set(rows)) > 1    # shifts of up to 2 px
    assert any(c >= 19 - 2 for c in cols) and any(c <= 7 for c in cols)   # flipped and not
    again = crop_flip(img, np.random.default_rng(0))
    assert np.array_equal(out, again)                             # seeded
