"""Activations as lookup tables (tvm_mpq/ops/activation.py): the golden model against
onnx.reference on QDQ models over every input integer (8/4/2 bits, signed and unsigned),
onnxruntime's quantize_static on a PyTorch CNN, the host kernel == golden over bits x signs
x shapes x functions, bad attributes as one-line errors, and a PyTorch CNN with HardSwish /
Sigmoid / Tanh / HardSigmoid planned and calibrated by our flow on the emulated M7:
QEMU == host == golden."""

from __future__ import annotations

import itertools

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper
from onnx.reference import ReferenceEvaluator

from conftest import assert_user_error, run_cli
from ort_qdq import golden_vs_onnxruntime, kinds_of, ort_quantize
from test_codegen_kernels import Case, _run_all
from tvm_mpq.codegen.kernels import KernelSpec, pack_params
from tvm_mpq.ops.activation import NON_NEGATIVE, activation_lut, make_table, \
    reference_function
from tvm_mpq.reference.packing import int_range, pack

FUNCS = [("HardSwish", "hard_swish", {}), ("HardSigmoid", "hard_sigmoid", {"alpha": 0.25,
                                                                            "beta": 0.4}),
         ("Sigmoid", "sigmoid", {}), ("Tanh", "tanh", {}), ("LeakyRelu", "leaky_relu",
                                                             {"alpha": 0.1})]
QT = {(8, False): TensorProto.UINT8, (8, True): TensorProto.INT8, (4, False): TensorProto.UINT4,
      (4, True): TensorProto.INT4, (2, False): TensorProto.UINT2, (2, True): TensorProto.INT2}


def qdq_act_model(op, attrs, bits, in_signed, out_signed, s_in, z_in, s_out, z_out, shape):
    """input -> Q/DQ (bits, in_signed) -> op -> Q/DQ (bits, out_signed) -> y."""
    inits = [numpy_helper.from_array(np.array(s_in, np.float32), "s_in"),
             helper.make_tensor("z_in", QT[bits, in_signed], [], [z_in]),
             numpy_helper.from_array(np.array(s_out, np.float32), "s_out"),
             helper.make_tensor("z_out", QT[bits, out_signed], [], [z_out])]
    nodes = [helper.make_node("QuantizeLinear", ["input", "s_in", "z_in"], ["xq"], name="q0"),
             helper.make_node("DequantizeLinear", ["xq", "s_in", "z_in"], ["xd"], name="dq0"),
             helper.make_node(op, ["xd"], ["a"], name="act", **attrs),
             helper.make_node("QuantizeLinear", ["a", "s_out", "z_out"], ["aq"], name="q1"),
             helper.make_node("DequantizeLinear", ["aq", "s_out", "z_out"], ["y"], name="dq1")]
    g = helper.make_graph(nodes, "act", [helper.make_tensor_value_info(
        "input", TensorProto.FLOAT, shape)], [helper.make_tensor_value_info(
            "y", TensorProto.FLOAT, shape)], inits)
    opset = 25 if bits == 2 else 21
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])
    m.ir_version = 11 if bits == 2 else 10
    return m


def _out_qparams(fn, attrs, bits, signed, s_in, z_in):
    """An output type and scale that cover the function's range on the input range."""
    lo, hi = int_range(bits, signed)
    real = (np.arange(lo, hi + 1) - z_in) * s_in
    default = {"hard_swish": (1 / 6, 0.5), "hard_sigmoid": (0.2, 0.5)}.get(fn, (0.01, 0.0))
    y = reference_function(fn, real, attrs.get("alpha", default[0]), attrs.get("beta",
                                                                               default[1]))
    out_signed = fn not in NON_NEGATIVE
    qhi = int_range(bits, out_signed)[1]
    return out_signed, np.float32(max(np.abs(y).max(), 1e-3) / qhi), 0


@pytest.mark.parametrize("op, fn, attrs", FUNCS)
@pytest.mark.parametrize("bits, in_signed", [(8, True), (8, False), (4, True), (4, False),
                                             (2, True), (2, False)])
def test_golden_equals_onnx_reference(op, fn, attrs, bits, in_signed):
    from tvm_mpq.passes.pipeline import convert
    from tvm_mpq.reference.interpret import run_reference

    lo, hi = int_range(bits, in_signed)
    z_in = 0 if in_signed else (1 << bits) // 2
    s_in = np.float32(6.0 / (1 << bits))
    out_signed, s_out, z_out = _out_qparams(fn, attrs, bits, in_signed, s_in, z_in)
    n = 1 << bits
    shape = [1, 2, 2, n // 4] if n >= 4 else [1, 1, 2, 2]
    m = qdq_act_model(op, attrs, bits, in_signed, out_signed, s_in, z_in, s_out, z_out, shape)
    q = np.resize(np.arange(lo, hi + 1), int(np.prod(shape))).reshape(shape)
    x = ((q - z_in) * s_in).astype(np.float32)
    want = ReferenceEvaluator(m).run(None, {"input": x})[0]
    im = convert(m)
    assert kinds_of(im.mod) == ["activation"]
    got = im.dequantize_output(run_reference(im.mod, im.quantize_input(x)))
    got = np.transpose(got, (0, 3, 1, 2))
    lsb = np.abs(got - want) / s_out
    assert lsb.max() <= 1.01 and np.mean(lsb < 0.01) >= 0.9, (lsb.max(), np.mean(lsb < 0.01))


def _act_cnn_onnx(path):
    torch = pytest.importorskip("torch")
    from torch import nn
    import torch.nn.functional as F

    class ActCNN(nn.Module):
        """Conv-BN-HardSwish, Conv-Sigmoid, Conv-Tanh, Conv-HardSigmoid, GAP, Linear."""

        def __init__(self):
            super().__init__()
            self.c1, self.bn1 = nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8)
            self.c2 = nn.Conv2d(8, 8, 3, padding=1, groups=8)
            self.c3 = nn.Conv2d(8, 12, 1)
            self.c4 = nn.Conv2d(12, 12, 3, padding=1)
            self.fc = nn.Linear(12, 10)

        def forward(self, x):
            x = F.hardswish(self.bn1(self.c1(x)))
            x = torch.sigmoid(self.c2(x))
            x = torch.tanh(self.c3(x))
            x = F.hardsigmoid(self.c4(x))
            return self.fc(F.adaptive_avg_pool2d(x, 1).flatten(1))

    torch.manual_seed(0)
    model = ActCNN().eval()
    with torch.no_grad():
        model.bn1.running_mean.uniform_(-0.2, 0.2)
        model.bn1.running_var.uniform_(0.5, 2.0)
    torch.onnx.export(model, (torch.randn(1, 3, 12, 12),), str(path), dynamo=False,
                      opset_version=17, input_names=["input"], output_names=["logits"])
    return model


def test_onnxruntime_qdq_cnn_golden_within_one_lsb(tmp_path):
    _act_cnn_onnx(tmp_path / "f.onnx")
    ops = [n.op_type for n in onnx.load(tmp_path / "f.onnx").graph.node]
    assert {"HardSwish", "Sigmoid", "Tanh", "HardSigmoid"} <= set(ops)
    q = ort_quantize(tmp_path / "f.onnx", tmp_path / "q.onnx", (1, 3, 12, 12))
    got, want, scale, im = golden_vs_onnxruntime(q, (1, 3, 12, 12))
    assert kinds_of(im.mod).count("activation") == 4
    assert np.max(np.abs(got - want)) <= scale * 1.01


# ---- host kernel == golden ---------------------------------------------------------------------
def act_case(seed, fn, in_bits, out_bits, in_signed, out_signed, shape):
    rng = np.random.default_rng(seed)
    lo, hi = int_range(in_bits, in_signed)
    q_min, q_max = int_range(out_bits, out_signed)
    z_in = int(rng.integers(lo, hi + 1))
    s_in = float(rng.uniform(2.0, 8.0) / (1 << in_bits))
    s_out = float(rng.uniform(0.5, 2.0) / (1 << out_bits))
    z_out = int(rng.integers(q_min, q_max + 1)) if not out_signed else 0
    lut = make_table(lambda v: reference_function(fn, v, 0.2, 0.5), in_bits, in_signed, s_in,
                     z_in, s_out, z_out, q_min, q_max)
    spec = KernelSpec("activation", shape, shape, in_bits=in_bits, out_bits=out_bits,
                      in_signed=in_signed, out_signed=out_signed, z_in=z_in, z_out=z_out,
                      q_min=q_min, q_max=q_max, suffix=f"act{seed}")
    x = rng.integers(lo, hi + 1, shape)
    want = activation_lut(x, lut, lo)
    p = pack_params(spec, lut)
    xb = pack(x[0] if len(shape) == 4 else x, in_bits).tobytes()
    return Case(spec, [xb, p["lut"][1]], want)


def _cases():
    cases, seed = [], 0
    fns = [f for _, f, _ in FUNCS]
    shapes = [(1, 3, 4, 5), (1, 2, 2, 8), (1, 13), (1, 1, 1, 7)]
    for (ib, ob), isg, osg in itertools.product(itertools.product((8, 4, 2), repeat=2),
                                                (False, True), (False, True)):
        cases.append(act_case(seed, fns[seed % len(fns)], ib, ob, isg, osg,
                              shapes[seed % len(shapes)]))
        seed += 1
    return cases


def test_host_kernel_equals_golden(host_builder):
    _run_all(host_builder, _cases())


def test_kernel_abi_and_table():
    c = act_case(0, "sigmoid", 4, 4, True, False, (1, 2, 2, 3))
    assert c.kernel.prototype == ("int32_t mpq_activation_s4_u4_act0(const uint8_t *x, "
                                  "const uint8_t *lut, uint8_t *y);")
    s = act_case(1, "tanh", 8, 8, False, True, (1, 5))
    assert "const int8_t *lut" in s.kernel.prototype
    assert len(pack_params(s.spec, np.zeros(256, np.int32))["lut"][1]) == 256


# ---- bad attributes ------------------------------------------------------------------------------
def _graph(node, in_shape, out_shape):
    g = helper.make_graph([node], "bad", [helper.make_tensor_value_info(
        "x", TensorProto.FLOAT, in_shape)], [helper.make_tensor_value_info(
            node.output[0], TensorProto.FLOAT, out_shape)])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 21)])
    m.ir_version = 10
    return m


@pytest.mark.parametrize("op, attrs, in_shape, needle", [
    ("HardSigmoid", {"alpha": float("inf")}, [1, 2, 4, 4], "alpha"),
    ("LeakyRelu", {"alpha": float("nan")}, [1, 2, 4, 4], "alpha"),
])
def test_bad_attributes_are_one_line_errors(tmp_path, op, attrs, in_shape, needle):
    node = helper.make_node(op, ["x"], ["y"], name="the_act", **attrs)
    onnx.save(_graph(node, in_shape, in_shape), tmp_path / "bad.onnx")
    assert_user_error(run_cli("inspect", tmp_path / "bad.onnx"), "the_act", needle)


def test_activation_of_a_3d_tensor_is_refused(tmp_path):
    w = numpy_helper.from_array(np.ones((4, 2, 1, 1), np.float32), "w")
    shp = numpy_helper.from_array(np.array([1, 4, 16], np.int64), "shp")
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"], name="conv"),
             helper.make_node("Reshape", ["c", "shp"], ["r"], name="to3d"),
             helper.make_node("Sigmoid", ["r"], ["y"], name="sig3d")]
    g = helper.make_graph(nodes, "bad", [helper.make_tensor_value_info(
        "x", TensorProto.FLOAT, [1, 2, 4, 4])], [helper.make_tensor_value_info(
            "y", TensorProto.FLOAT, [1, 4, 16])], [w, shp])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 21)])
    m.ir_version = 10
    onnx.save(m, tmp_path / "bad.onnx")
    assert_user_error(run_cli("inspect", tmp_path / "bad.onnx"), "sig3d", "input of shape")


# ---- the PyTorch CNN through our flow on the emulated M7 ---------------------------------------
@pytest.mark.slow
def test_activation_cnn_on_qemu_equals_host_and_golden(tmp_path):
    """The float export planned (mixed precision), calibrated by our twin (PACT for
    sigmoid / hard sigmoid, signed for hard swish / tanh), on the emulated M7."""
    _act_cnn_onnx(tmp_path / "f.onnx")
    out = tmp_path / "b"
    p = run_cli("compile", tmp_path / "f.onnx", "--flash", "64kB", "--ram", "16kB",
                "--calib", "synthetic", "--board", "qemu_m7", "-o", out)
    assert p.returncode == 0, p.stderr
    r = run_cli("run", out, "--input", "random", "--check-host", "--reference")
    assert r.returncode == 0, r.stderr
    assert "host build: byte-identical output" in r.stdout
    assert "golden model: bit-identical" in r.stdout
