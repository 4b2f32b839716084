"""Softmax at the output (tvm_mpq/ops/softmax.py): the integer-only golden model against
onnx.reference on QDQ models (int8 output, scale 1/256, zero point -128; 8/4/2-bit inputs,
signed and unsigned) within 1 LSB on >= 99% of the outputs, a CNN with a Softmax quantized
by onnxruntime, the host kernel == golden, bad attributes as one-line errors, and a PyTorch
CNN ending in a softmax planned and calibrated by our flow on the emulated M7."""

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
from tvm_mpq.ops.softmax import exp_table, output_multiplier, softmax
from tvm_mpq.reference.packing import int_range, pack

QT = {(8, False): TensorProto.UINT8, (8, True): TensorProto.INT8, (4, False): TensorProto.UINT4,
      (4, True): TensorProto.INT4, (2, False): TensorProto.UINT2, (2, True): TensorProto.INT2}


def qdq_softmax_model(bits, signed, n, s_in, z_in, out=(8, True, 1 / 256, -128)):
    ob, osg, s_out, z_out = out
    inits = [numpy_helper.from_array(np.array(s_in, np.float32), "s_in"),
             helper.make_tensor("z_in", QT[bits, signed], [], [z_in]),
             numpy_helper.from_array(np.array(s_out, np.float32), "s_out"),
             helper.make_tensor("z_out", QT[ob, osg], [], [z_out])]
    nodes = [helper.make_node("QuantizeLinear", ["input", "s_in", "z_in"], ["xq"], name="q0"),
             helper.make_node("DequantizeLinear", ["xq", "s_in", "z_in"], ["xd"], name="dq0"),
             helper.make_node("Flatten", ["xd"], ["f"], name="flat"),
             helper.make_node("Softmax", ["f"], ["p"], name="sm", axis=-1),
             helper.make_node("QuantizeLinear", ["p", "s_out", "z_out"], ["pq"], name="q1"),
             helper.make_node("DequantizeLinear", ["pq", "s_out", "z_out"], ["y"], name="dq1")]
    g = helper.make_graph(nodes, "softmax", [helper.make_tensor_value_info(
        "input", TensorProto.FLOAT, [1, n, 1, 1])], [helper.make_tensor_value_info(
            "y", TensorProto.FLOAT, [1, n])], inits)
    opset = 25 if bits == 2 else 21
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])
    m.ir_version = 11 if bits == 2 else 10
    return m


@pytest.mark.parametrize("n", [10, 37, 100])
@pytest.mark.parametrize("bits, signed", [(8, True), (8, False), (4, True), (4, False),
                                          (2, True), (2, False)])
def test_golden_equals_onnx_reference(bits, signed, n):
    from tvm_mpq.passes.pipeline import convert
    from tvm_mpq.reference.interpret import run_reference

    lo, hi = int_range(bits, signed)
    z_in = 0 if signed else (1 << bits) // 2
    lsbs = []
    for s_in in (8.0 / (1 << bits), 16.0 / (1 << bits), 0.05):
        m = qdq_softmax_model(bits, signed, n, s_in, z_in)
        im = convert(m)
        assert kinds_of(im.mod) == ["softmax"]
        ref = ReferenceEvaluator(m)
        rng = np.random.default_rng(n + bits)
        for _ in range(6):
            x = ((rng.integers(lo, hi + 1, (1, n, 1, 1)) - z_in) * np.float32(s_in))
            want = ref.run(None, {"input": x.astype(np.float32)})[0]
            got = im.dequantize_output(run_reference(im.mod, im.quantize_input(x)))
            lsbs.append(np.abs(got.reshape(want.shape) - want).ravel() * 256)
    lsb = np.concatenate(lsbs)
    assert lsb.max() <= 1.01 and np.mean(lsb < 0.01) >= 0.99, (lsb.max(), np.mean(lsb < 0.01))


def _softmax_cnn(path):
    torch = pytest.importorskip("torch")
    from torch import nn
    import torch.nn.functional as F

    class SoftmaxCNN(nn.Module):
        def __init__(self):
            super().__init__()
            self.c1 = nn.Conv2d(3, 8, 3, padding=1)
            self.fc = nn.Linear(8 * 4 * 4, 10)

        def forward(self, x):
            x = F.max_pool2d(F.relu(self.c1(x)), 2)
            return F.softmax(self.fc(torch.flatten(x, 1)), dim=1)

    torch.manual_seed(0)
    model = SoftmaxCNN().eval()
    torch.onnx.export(model, (torch.randn(1, 3, 8, 8),), str(path), dynamo=False,
                      opset_version=17, input_names=["input"], output_names=["probs"])
    return model


def test_onnxruntime_qdq_cnn_with_softmax(tmp_path):
    _softmax_cnn(tmp_path / "f.onnx")
    q = ort_quantize(tmp_path / "f.onnx", tmp_path / "q.onnx", (1, 3, 8, 8))
    got, want, scale, im = golden_vs_onnxruntime(q, (1, 3, 8, 8))
    assert kinds_of(im.mod)[-1] == "softmax"
    assert np.max(np.abs(got - want)) <= scale * 1.01


# ---- host kernel == golden ---------------------------------------------------------------------
def softmax_case(seed, in_bits, out_bits, in_signed, n):
    rng = np.random.default_rng(seed)
    lo, hi = int_range(in_bits, in_signed)
    q_min, q_max = int_range(out_bits, True)
    s_in = float(rng.uniform(2.0, 10.0) / (1 << in_bits))
    p_mul, shift = output_multiplier(1.0 / (1 << out_bits))
    spec = KernelSpec("softmax", (1, n), (1, n), in_bits=in_bits, out_bits=out_bits,
                      in_signed=in_signed, out_signed=True, k_a=p_mul, shift=shift,
                      z_out=q_min, q_min=q_min, q_max=q_max, suffix=f"sm{seed}")
    x = rng.integers(lo, hi + 1, (1, n))
    t = exp_table(in_bits, s_in)
    want = softmax(x, t, p_mul, shift, q_min, q_min, q_max)
    return Case(spec, [pack(x, in_bits).tobytes(), pack_params(spec, t)["table"][1]], want)


def test_host_kernel_equals_golden(host_builder):
    cases = [softmax_case(i, ib, ob, sg, (10, 7, 33, 256)[i % 4])
             for i, ((ib, ob), sg) in enumerate(itertools.product(
                 itertools.product((8, 4, 2), repeat=2), (False, True)))]
    _run_all(host_builder, cases)


def test_output_multiplier_is_exact_for_powers_of_two():
    assert output_multiplier(1 / 256) == (32768, 7)
    p, sh = output_multiplier(1 / 255)
    assert abs(p / 2 ** sh - 255) < 0.01


# ---- bad attributes ------------------------------------------------------------------------------
def _model(shape, axis):
    g = helper.make_graph([helper.make_node("Softmax", ["x"], ["y"], name="the_softmax",
                                            axis=axis)], "bad",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, shape)],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, shape)])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 21)])
    m.ir_version = 10
    return m


@pytest.mark.parametrize("shape, axis, needle", [([1, 4, 3, 3], 1, "input of shape"),
                                                 ([1, 4, 3, 3], -1, "input of shape")])
def test_bad_attributes_are_one_line_errors(tmp_path, shape, axis, needle):
    onnx.save(_model(shape, axis), tmp_path / "bad.onnx")
    assert_user_error(run_cli("inspect", tmp_path / "bad.onnx"), "the_softmax", needle)


def test_softmax_over_the_batch_axis_is_refused(tmp_path):
    w = numpy_helper.from_array(np.ones((5, 4), np.float32), "w")
    nodes = [helper.make_node("Flatten", ["x"], ["f"], name="flat"),
             helper.make_node("Gemm", ["f", "w"], ["g"], name="fc", transB=1),
             helper.make_node("Softmax", ["g"], ["y"], name="the_softmax", axis=0)]
    g = helper.make_graph(nodes, "bad", [helper.make_tensor_value_info(
        "x", TensorProto.FLOAT, [1, 4, 1, 1])], [helper.make_tensor_value_info(
            "y", TensorProto.FLOAT, [1, 5])], [w])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 21)])
    m.ir_version = 10
    onnx.save(m, tmp_path / "bad.onnx")
    assert_user_error(run_cli("inspect", tmp_path / "bad.onnx"), "the_softmax", "axis 0")


# ---- a CNN ending in a softmax through our flow on the emulated M7 -----------------------------
@pytest.mark.slow
def test_softmax_cnn_on_qemu_equals_host_and_golden(tmp_path):
    _softmax_cnn(tmp_path / "f.onnx")
    out = tmp_path / "b"
    p = run_cli("compile", tmp_path / "f.onnx", "--flash", "64kB", "--ram", "16kB",
                "--calib", "synthetic", "--board", "qemu_m7", "-o", out)
    assert p.returncode == 0, p.stderr
    r = run_cli("run", out, "--input", "random", "--check-host", "--reference")
    assert r.returncode == 0, r.stderr
    assert "host build: byte-identical output" in r.stdout
    assert "golden model: bit-identical" in r.stdout
    q = onnx.load(out / "model.qdq.onnx")
    zp = {t.name: numpy_helper.to_array(t) for t in q.graph.initializer}
    sm = next(n for n in q.graph.node if n.op_type == "Softmax")
    qn = next(n for n in q.graph.node if n.op_type == "QuantizeLinear" and n.input[0] == sm.output[0])
    assert int(zp[qn.input[2]]) == -128 and float(zp[qn.input[1]]) == 1 / 256
