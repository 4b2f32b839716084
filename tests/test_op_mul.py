"""Mul of two activations (tvm_mpq/ops/mul.py): the golden model against onnx.reference on
QDQ models (same shape and per-channel broadcast, 8/4/2 bits, signed and unsigned), a
squeeze-excite CNN quantized by onnxruntime (golden within 1 LSB), the host kernel ==
golden over bits x signs x broadcast, bad operands as one-line errors, and the
squeeze-excite CNN planned and calibrated by our flow on the emulated M7: QEMU == host ==
golden."""

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
from tvm_mpq.ops.mul import mul
from tvm_mpq.reference import icn
from tvm_mpq.reference.packing import int_range, pack

QT = {(8, False): TensorProto.UINT8, (8, True): TensorProto.INT8, (4, False): TensorProto.UINT4,
      (4, True): TensorProto.INT4, (2, False): TensorProto.UINT2, (2, True): TensorProto.INT2}


def qdq_mul_model(bits, signed, broadcast, shape=(1, 3, 4, 4)):
    """input -> Q/DQ -> (GlobalAveragePool | MaxPool 1x1) -> Q/DQ (b); Mul(x, b) -> Q/DQ."""
    s_in, s_b, s_out = np.float32(4.0 / (1 << bits)), np.float32(3.0 / (1 << bits)), \
        np.float32(8.0 / (1 << bits))
    z = 0 if signed else 1
    t = QT[bits, signed]
    inits = [numpy_helper.from_array(np.array(v, np.float32), n)
             for n, v in (("s_in", s_in), ("s_b", s_b), ("s_out", s_out))]
    inits += [helper.make_tensor(n, t, [], [z]) for n in ("z_in", "z_b", "z_out")]
    pool = helper.make_node("GlobalAveragePool", ["xd"], ["p"], name="gap") if broadcast \
        else helper.make_node("MaxPool", ["xd"], ["p"], name="mp", kernel_shape=[1, 1])
    nodes = [helper.make_node("QuantizeLinear", ["input", "s_in", "z_in"], ["xq"], name="q0"),
             helper.make_node("DequantizeLinear", ["xq", "s_in", "z_in"], ["xd"], name="dq0"),
             pool,
             helper.make_node("QuantizeLinear", ["p", "s_b", "z_b"], ["pq"], name="q1"),
             helper.make_node("DequantizeLinear", ["pq", "s_b", "z_b"], ["pd"], name="dq1"),
             helper.make_node("Mul", ["xd", "pd"] if broadcast else ["pd", "xd"], ["m"],
                              name="the_mul"),
             helper.make_node("QuantizeLinear", ["m", "s_out", "z_out"], ["mq"], name="q2"),
             helper.make_node("DequantizeLinear", ["mq", "s_out", "z_out"], ["y"], name="dq2")]
    g = helper.make_graph(nodes, "mul", [helper.make_tensor_value_info(
        "input", TensorProto.FLOAT, list(shape))], [helper.make_tensor_value_info(
            "y", TensorProto.FLOAT, list(shape))], inits)
    opset = 25 if bits == 2 else 21
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])
    m.ir_version = 11 if bits == 2 else 10
    return m, s_in, z, s_out


@pytest.mark.parametrize("broadcast", [False, True])
@pytest.mark.parametrize("bits, signed", [(8, True), (8, False), (4, True), (4, False),
                                          (2, True), (2, False)])
def test_golden_equals_onnx_reference(bits, signed, broadcast):
    from tvm_mpq.passes.pipeline import convert
    from tvm_mpq.reference.interpret import run_reference

    m, s_in, z, s_out = qdq_mul_model(bits, signed, broadcast)
    im = convert(m)
    assert kinds_of(im.mod)[-1] == "mul"
    lo, hi = int_range(bits, signed)
    rng = np.random.default_rng(bits + 10 * signed + 100 * broadcast)
    ref = ReferenceEvaluator(m)
    for _ in range(4):
        x = ((rng.integers(lo, hi + 1, (1, 3, 4, 4)) - z) * s_in).astype(np.float32)
        want, b_ref = ref.run(["y", "pq"], {"input": x})
        trace = {}
        got = run_reference(im.mod, im.quantize_input(x), trace=trace)
        got = np.transpose(im.dequantize_output(got), (0, 3, 1, 2))
        # the mul's own inputs: where our pooling rounds b differently (a float mean
        # against an integer one), the product differs through b, not through the mul
        b_ours = np.transpose(trace["gap" if broadcast else "mp"], (0, 3, 1, 2))
        same_b = np.broadcast_to(b_ours == b_ref, want.shape)
        lsb = np.abs(got - want) / s_out
        assert lsb[same_b].max() <= 1.01 and np.mean(lsb[same_b] < 0.01) >= 0.95, lsb.max()
        assert same_b.mean() >= 0.3


def _se_cnn_onnx(path, linear=False):
    torch = pytest.importorskip("torch")
    from torch import nn
    import torch.nn.functional as F

    class SECNN(nn.Module):
        """Conv-BN-ReLU, squeeze-excite (GAP, 1x1 conv - ReLU - 1x1 conv, Sigmoid, Mul),
        GAP, Linear."""

        def __init__(self):
            super().__init__()
            self.c1, self.bn1 = nn.Conv2d(3, 16, 3, padding=1), nn.BatchNorm2d(16)
            self.se1, self.se2 = nn.Conv2d(16, 4, 1), nn.Conv2d(4, 16, 1)
            self.fc = nn.Linear(16, 10)

        def forward(self, x):
            x = F.relu(self.bn1(self.c1(x)))
            s = torch.sigmoid(self.se2(F.relu(self.se1(F.adaptive_avg_pool2d(x, 1)))))
            x = x * s
            return self.fc(F.adaptive_avg_pool2d(x, 1).flatten(1))

    torch.manual_seed(0)
    model = SECNN().eval()
    torch.onnx.export(model, (torch.randn(1, 3, 10, 10),), str(path), dynamo=False,
                      opset_version=17, input_names=["input"], output_names=["logits"])
    return model


def test_onnxruntime_se_cnn_golden_within_one_lsb(tmp_path):
    _se_cnn_onnx(tmp_path / "f.onnx")
    q = ort_quantize(tmp_path / "f.onnx", tmp_path / "q.onnx", (1, 3, 10, 10))
    got, want, scale, im = golden_vs_onnxruntime(q, (1, 3, 10, 10))
    assert "mul" in kinds_of(im.mod) and "activation" in kinds_of(im.mod)
    assert np.max(np.abs(got - want)) <= scale * 1.01


# ---- host kernel == golden ---------------------------------------------------------------------
def mul_case(seed, a_bits, b_bits, out_bits, a_signed, b_signed, out_signed, broadcast,
             shape=(1, 3, 4, 5)):
    rng = np.random.default_rng(seed)
    b_shape = (1,) * (len(shape) - 1) + (shape[-1],) if broadcast else shape
    (alo, ahi), (blo, bhi) = int_range(a_bits, a_signed), int_range(b_bits, b_signed)
    q_min, q_max = int_range(out_bits, out_signed)
    z_a, z_b = int(rng.integers(alo, ahi + 1)), int(rng.integers(blo, bhi + 1))
    z_out = int(rng.integers(q_min, q_max + 1))
    m0, n0 = icn.quantize_multiplier(float(rng.uniform(0.5, 2.0) * (1 << out_bits) /
                                           ((1 << a_bits) * (1 << b_bits))))
    spec = KernelSpec("mul", shape, shape, in_bits=a_bits, b_bits=b_bits, out_bits=out_bits,
                      in_signed=a_signed, b_signed=b_signed, out_signed=out_signed,
                      b_shape=b_shape, z_a=z_a, z_b=z_b, z_out=z_out, q_min=q_min,
                      q_max=q_max, suffix=f"mul{seed}")
    a = rng.integers(alo, ahi + 1, shape)
    b = rng.integers(blo, bhi + 1, b_shape)
    want = mul(a, b, z_a, z_b, np.array([m0]), np.array([n0]), z_out, q_min, q_max)
    p = pack_params(spec, m0=[m0], n0=[n0])

    def rows(v, bits):
        return pack(v.reshape(-1, v.shape[-1]), bits).tobytes()

    return Case(spec, [rows(a, a_bits), rows(b, b_bits), p["m0"][1], p["n0"][1]], want)


def _cases():
    cases, seed = [], 0
    for (ab, bb, ob), bc in itertools.product(itertools.product((8, 4, 2), repeat=3),
                                              (False, True)):
        shape = [(1, 3, 4, 5), (1, 2, 3, 8), (1, 11)][seed % 3]
        cases.append(mul_case(seed, ab, bb, ob, seed % 2 == 1, seed % 3 == 1, seed % 4 >= 2,
                              bc and len(shape) == 4, shape))
        seed += 1
    return cases


def test_host_kernel_equals_golden(host_builder):
    _run_all(host_builder, _cases())


def test_kernel_abi():
    c = mul_case(0, 8, 4, 8, False, False, True, True)
    assert c.kernel.prototype == ("int32_t mpq_mul_u8_s8_mul0(const uint8_t *a, const uint8_t "
                                  "*b, const int32_t *m0, const int8_t *n0, uint8_t *y);")


# ---- bad operands --------------------------------------------------------------------------------
def _model(nodes, inits, out_shape):
    g = helper.make_graph(nodes, "bad", [helper.make_tensor_value_info(
        "x", TensorProto.FLOAT, [1, 4, 6, 6])], [helper.make_tensor_value_info(
            "y", TensorProto.FLOAT, out_shape)], inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 21)])
    m.ir_version = 10
    return m


@pytest.mark.parametrize("case, needle", [("const", "constant"), ("spatial", "broadcasting"),
                                          ("three", "broadcasting")])
def test_bad_attributes_are_one_line_errors(tmp_path, case, needle):
    w = numpy_helper.from_array(np.ones((4, 4, 1, 1), np.float32), "w")
    w1 = numpy_helper.from_array(np.ones((1, 4, 1, 1), np.float32), "w1")
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"], name="conv")]
    if case == "const":         # (after the Relu: no graph clean-up folds it into the conv)
        nodes += [helper.make_node("Relu", ["c"], ["r"], name="relu"),
                  helper.make_node("Mul", ["r", "k"], ["y"], name="the_mul")]
        inits = [w, numpy_helper.from_array(np.full((1, 4, 1, 1), 2.0, np.float32), "k")]
    elif case == "spatial":
        nodes += [helper.make_node("Conv", ["x", "w1"], ["d"], name="conv1"),
                  helper.make_node("Mul", ["c", "d"], ["y"], name="the_mul")]
        inits = [w, w1]
    else:
        nodes += [helper.make_node("GlobalAveragePool", ["c"], ["g"], name="gap"),
                  helper.make_node("Conv", ["g", "w1"], ["d"], name="conv1"),
                  helper.make_node("Mul", ["c", "d"], ["y"], name="the_mul")]
        inits = [w, w1]
    onnx.save(_model(nodes, inits, [1, 4, 6, 6]), tmp_path / "bad.onnx")
    assert_user_error(run_cli("inspect", tmp_path / "bad.onnx"), "the_mul", needle)


# ---- the squeeze-excite CNN through our flow on the emulated M7 --------------------------------
@pytest.mark.slow
def test_se_cnn_on_qemu_equals_host_and_golden(tmp_path):
    _se_cnn_onnx(tmp_path / "f.onnx")
    out = tmp_path / "b"
    p = run_cli("compile", tmp_path / "f.onnx", "--flash", "64kB", "--ram", "16kB",
                "--calib", "synthetic", "--board", "qemu_m7", "-o", out)
    assert p.returncode == 0, p.stderr
    r = run_cli("run", out, "--input", "random", "--check-host", "--reference")
    assert r.returncode == 0, r.stderr
    assert "host build: byte-identical output" in r.stdout
    assert "golden model: bit-identical" in r.stdout
