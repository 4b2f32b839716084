"""Concat on the channel axis (tvm_mpq/ops/concat.py): the golden model against
onnx.reference on QDQ models (copied and requantized inputs, 8/4/2 bits, signed and
unsigned, channel offsets inside bytes), the host kernel == golden over bits x signs x
parts, bad attributes as one-line errors, and the end-to-end model of this operator set
written in PyTorch: Conv-BN-HardSwish, a squeeze-excite block (GAP, 1x1 conv - ReLU - 1x1
conv, HardSigmoid, Mul), a Concat of two branches, Softmax at the output, compiled by
`tvm-mpq compile --calib synthetic --board qemu_m7`: QEMU == host == golden."""

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
from tvm_mpq.ops.concat import concat
from tvm_mpq.reference import icn
from tvm_mpq.reference.packing import int_range, pack

QT = {(8, False): TensorProto.UINT8, (8, True): TensorProto.INT8, (4, False): TensorProto.UINT4,
      (4, True): TensorProto.INT4, (2, False): TensorProto.UINT2, (2, True): TensorProto.INT2}


def qdq_concat_model(bits, signed, c=3):
    """input -> Q/DQ (x); two MaxPool 1x1 -> Q/DQ at other scales (b, d);
    Concat(x, b, d) -> Q/DQ at x's scale (x is copied, b and d are requantized)."""
    s = {"x": 4.0 / (1 << bits), "b": 3.0 / (1 << bits), "d": 6.0 / (1 << bits)}
    z = 0 if signed else 1
    t = QT[bits, signed]
    inits = [numpy_helper.from_array(np.array(v, np.float32), f"s_{k}") for k, v in s.items()]
    inits += [helper.make_tensor(f"z_{k}", t, [], [z]) for k in s]
    nodes = [helper.make_node("QuantizeLinear", ["input", "s_x", "z_x"], ["xq"], name="q0"),
             helper.make_node("DequantizeLinear", ["xq", "s_x", "z_x"], ["xd"], name="dq0")]
    for k in ("b", "d"):
        nodes += [helper.make_node("MaxPool", ["xd"], [f"{k}p"], name=f"mp_{k}",
                                   kernel_shape=[1, 1]),
                  helper.make_node("QuantizeLinear", [f"{k}p", f"s_{k}", f"z_{k}"], [f"{k}q"],
                                   name=f"q_{k}"),
                  helper.make_node("DequantizeLinear", [f"{k}q", f"s_{k}", f"z_{k}"],
                                   [f"{k}d"], name=f"dq_{k}")]
    nodes += [helper.make_node("Concat", ["xd", "bd", "dd"], ["cat"], name="the_concat", axis=1),
              helper.make_node("QuantizeLinear", ["cat", "s_x", "z_x"], ["cq"], name="q2"),
              helper.make_node("DequantizeLinear", ["cq", "s_x", "z_x"], ["y"], name="dq2")]
    g = helper.make_graph(nodes, "concat", [helper.make_tensor_value_info(
        "input", TensorProto.FLOAT, [1, c, 3, 2])], [helper.make_tensor_value_info(
            "y", TensorProto.FLOAT, [1, 3 * c, 3, 2])], inits)
    opset = 25 if bits == 2 else 21
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])
    m.ir_version = 11 if bits == 2 else 10
    return m, s["x"], z


@pytest.mark.parametrize("bits, signed", [(8, True), (8, False), (4, True), (4, False),
                                          (2, True), (2, False)])
def test_golden_equals_onnx_reference(bits, signed):
    from tvm_mpq.passes.pipeline import convert
    from tvm_mpq.reference.interpret import run_reference

    m, s_x, z = qdq_concat_model(bits, signed)
    im = convert(m)
    assert kinds_of(im.mod)[-1] == "concat"
    lo, hi = int_range(bits, signed)
    ref = ReferenceEvaluator(m)
    rng = np.random.default_rng(bits + signed)
    for _ in range(4):
        x = ((rng.integers(lo, hi + 1, (1, 3, 3, 2)) - z) * np.float32(s_x)).astype(np.float32)
        want = ref.run(None, {"input": x})[0]
        got = np.transpose(im.dequantize_output(run_reference(im.mod, im.quantize_input(x))),
                           (0, 3, 1, 2))
        lsb = np.abs(got - want) / s_x
        np.testing.assert_array_equal(got[:, :3], want[:, :3])      # the copied input
        assert lsb.max() <= 1.01 and np.mean(lsb < 0.01) >= 0.9, lsb.max()


# ---- host kernel == golden ---------------------------------------------------------------------
def concat_case(seed, parts_bits, out_bits, out_signed, channels, hw=(3, 2)):
    rng = np.random.default_rng(seed)
    q_min, q_max = int_range(out_bits, out_signed)
    z_out = int(rng.integers(q_min, q_max + 1))
    xs, parts, m0s, n0s = [], [], [], []
    for i, ((bits, signed), c) in enumerate(zip(parts_bits, channels)):
        lo, hi = int_range(bits, signed)
        req = not (i == 0 and bits == out_bits and signed == out_signed)
        z = int(rng.integers(lo, hi + 1)) if req else z_out
        m0, n0 = icn.quantize_multiplier(float(rng.uniform(0.5, 2) * (1 << out_bits)
                                               / (1 << bits))) if req else (1 << 30, 1)
        xs.append(rng.integers(lo, hi + 1, (1, *hw, c) if hw else (1, c)))
        parts.append((c, bits, int(signed), z, int(req)))
        m0s.append(m0)
        n0s.append(n0)
    shape = (1, *hw, sum(channels)) if hw else (1, sum(channels))
    spec = KernelSpec("concat", xs[0].shape, shape, in_bits=parts_bits[0][0],
                      in_signed=parts_bits[0][1], out_bits=out_bits, out_signed=out_signed,
                      z_out=z_out, q_min=q_min, q_max=q_max, parts=parts, suffix=f"cat{seed}")
    m0s, n0s = np.array(m0s), np.array(n0s)
    want = concat(xs, parts, m0s, n0s, z_out, q_min, q_max)
    p = pack_params(spec, m0=m0s, n0=n0s)
    args = [pack(x.reshape(-1, x.shape[-1]), b).tobytes() for x, (b, _) in zip(xs, parts_bits)]
    return Case(spec, args + [p["m0"][1], p["n0"][1]], want)


def _cases():
    cases, seed = [], 0
    widths = list(itertools.product((8, 4, 2), (False, True)))
    for ob, osg in itertools.product((8, 4, 2), (False, True)):
        for k in (2, 3):
            pb = [widths[(seed + j * 5) % len(widths)] for j in range(k)]
            if seed % 2:
                pb[0] = (ob, osg)               # the first input is copied
            ch = [(3, 5, 2), (8, 1, 4), (7, 6, 3)][seed % 3][:k]
            cases.append(concat_case(seed, pb, ob, osg, ch, (3, 2) if seed % 4 else ()))
            seed += 1
    return cases


def test_host_kernel_equals_golden(host_builder):
    _run_all(host_builder, _cases())


def test_kernel_abi():
    c = concat_case(0, [(4, False), (8, True), (2, False)], 4, False, (3, 5, 2))
    assert c.kernel.prototype == ("int32_t mpq_concat_u4_u4_cat0(const uint8_t *x0, const "
                                  "uint8_t *x1, const uint8_t *x2, const int32_t *m0, const "
                                  "int8_t *n0, uint8_t *y);")


# ---- bad attributes ------------------------------------------------------------------------------
@pytest.mark.parametrize("axis, second, needle", [(2, "c", "axis 2"), (1, "k", "constant")])
def test_bad_attributes_are_one_line_errors(tmp_path, axis, second, needle):
    w = numpy_helper.from_array(np.ones((4, 4, 1, 1), np.float32), "w")
    k = numpy_helper.from_array(np.ones((1, 4, 6, 6), np.float32), "k")
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"], name="conv"),
             helper.make_node("Concat", ["c", second], ["y"], name="the_concat", axis=axis)]
    out = [1, 8, 6, 6] if axis == 1 else [1, 4, 12, 6]
    g = helper.make_graph(nodes, "bad", [helper.make_tensor_value_info(
        "x", TensorProto.FLOAT, [1, 4, 6, 6])], [helper.make_tensor_value_info(
            "y", TensorProto.FLOAT, out)], [w, k])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 21)])
    m.ir_version = 10
    onnx.save(m, tmp_path / "bad.onnx")
    assert_user_error(run_cli("inspect", tmp_path / "bad.onnx"), "the_concat", needle)


# ---- the end-to-end model: HardSwish, squeeze-excite, Concat, Softmax ---------------------------
def se_hswish_net_onnx(path):
    torch = pytest.importorskip("torch")
    from torch import nn
    import torch.nn.functional as F

    class SEHardSwishNet(nn.Module):
        def __init__(self):
            super().__init__()
            self.stem, self.bn = nn.Conv2d(3, 16, 3, stride=2, padding=1), nn.BatchNorm2d(16)
            self.se1, self.se2 = nn.Conv2d(16, 8, 1), nn.Conv2d(8, 16, 1)
            self.a = nn.Conv2d(16, 12, 1)
            self.b1 = nn.Conv2d(16, 16, 3, padding=1, groups=16)
            self.b2 = nn.Conv2d(16, 8, 1)
            self.fc = nn.Linear(20, 10)

        def forward(self, x):
            x = F.hardswish(self.bn(self.stem(x)))
            s = F.hardsigmoid(self.se2(F.relu(self.se1(F.adaptive_avg_pool2d(x, 1)))))
            x = x * s
            y = torch.cat([F.relu(self.a(x)), F.relu(self.b2(F.relu(self.b1(x))))], dim=1)
            y = F.adaptive_avg_pool2d(y, 1).flatten(1)
            return F.softmax(self.fc(y), dim=1)

    torch.manual_seed(0)
    model = SEHardSwishNet().eval()
    with torch.no_grad():
        model.bn.running_mean.uniform_(-0.2, 0.2)
        model.bn.running_var.uniform_(0.5, 2.0)
    torch.onnx.export(model, (torch.randn(1, 3, 16, 16),), str(path), dynamo=False,
                      opset_version=17, input_names=["input"], output_names=["probs"])
    return model


def test_se_hswish_net_onnxruntime_golden_within_one_lsb(tmp_path):
    se_hswish_net_onnx(tmp_path / "f.onnx")
    q = ort_quantize(tmp_path / "f.onnx", tmp_path / "q.onnx", (1, 3, 16, 16))
    got, want, scale, im = golden_vs_onnxruntime(q, (1, 3, 16, 16))
    kinds = kinds_of(im.mod)
    assert {"activation", "mul", "concat", "softmax"} <= set(kinds)
    assert np.max(np.abs(got - want)) <= scale * 1.01


@pytest.mark.slow
def test_se_hswish_net_on_qemu_equals_host_and_golden(tmp_path):
    se_hswish_net_onnx(tmp_path / "f.onnx")
    out = tmp_path / "b"
    p = run_cli("compile", tmp_path / "f.onnx", "--flash", "256kB", "--ram", "64kB",
                "--calib", "synthetic", "--board", "qemu_m7", "-o", out)
    assert p.returncode == 0, p.stderr
    r = run_cli("run", out, "--input", "random", "--check-host", "--reference")
    assert r.returncode == 0, r.stderr
    assert "host build: byte-identical output" in r.stdout
    assert "golden model: bit-identical" in r.stdout
    kernels = {f.name.split("_")[1] for f in (out / "codegen").glob("mpq_*.c")}
    assert {"activation", "mul", "concat", "softmax"} <= kernels, kernels
