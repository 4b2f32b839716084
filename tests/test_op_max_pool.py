"""MaxPool, the operator added through the registry (tvm_mpq/ops/max_pool.py): its golden
model against onnx.reference, the host kernel == golden over windows x bits x signs x
requantization, the emulated Cortex-M7 == host == golden, bad attributes as one-line errors,
and a tutorial CNN written in PyTorch (Conv-ReLU-MaxPool x2, Flatten, Gemm-ReLU, Gemm on
28x28x1), quantized by onnxruntime, compiled for the emulated M7: QEMU == host == golden,
and the golden model within 1 LSB of onnxruntime."""

from __future__ import annotations

import itertools

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper
from onnx.reference import ReferenceEvaluator

from conftest import assert_user_error, run_cli
from test_codegen_kernels import Case, _run_all
from tvm_mpq.codegen.kernels import KernelSpec, pack_params
from tvm_mpq.ops.common import out_size
from tvm_mpq.ops.max_pool import max_pool
from tvm_mpq.reference import icn
from tvm_mpq.reference.packing import pack

# (kh, kw, sh, sw, pt, pl, pb, pr, ceil_mode)
WINDOWS = [(2, 2, 2, 2, 0, 0, 0, 0, 0), (3, 3, 2, 2, 1, 1, 1, 1, 0), (3, 2, 2, 1, 1, 0, 0, 1, 1),
           (3, 3, 1, 1, 1, 1, 1, 1, 0), (2, 3, 3, 2, 0, 1, 1, 0, 1), (4, 4, 3, 3, 2, 1, 3, 0, 1),
           (1, 1, 1, 1, 0, 0, 0, 0, 0), (5, 5, 2, 2, 2, 2, 2, 2, 0)]


def _onnx_maxpool(x: np.ndarray, win) -> np.ndarray:
    kh, kw, sh, sw, pt, pl, pb, pr, ceil = win
    node = helper.make_node("MaxPool", ["x"], ["y"], kernel_shape=[kh, kw], strides=[sh, sw],
                            pads=[pt, pl, pb, pr], ceil_mode=ceil)
    g = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT,
                                                                      list(x.shape))],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 21)])
    m.ir_version = 10
    return ReferenceEvaluator(m).run(None, {"x": x.astype(np.float32)})[0]


@pytest.mark.parametrize("win", WINDOWS)
@pytest.mark.parametrize("hw", [(7, 6), (8, 8), (5, 9)])
def test_golden_equals_onnx_reference(win, hw):
    x = np.random.default_rng(sum(win) + hw[0]).integers(-128, 128, (1, 5, *hw))
    want = _onnx_maxpool(x, win)
    got = max_pool(np.transpose(x, (0, 2, 3, 1)), win, 0, 0, None, None, 0, -128, 127)
    np.testing.assert_array_equal(np.transpose(got, (0, 3, 1, 2)), want)


def _range(bits, signed):
    return (-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if signed else (0, (1 << bits) - 1)


def maxpool_case(seed, win, in_bits, out_bits, signed, requant, *, h=7, w=6, c=5):
    """A packed max pool kernel case and its golden output."""
    rng = np.random.default_rng(seed)
    ho, wo = out_size(h, win[0], win[2], win[4], win[6], bool(win[8])), \
        out_size(w, win[1], win[3], win[5], win[7], bool(win[8]))
    lo, hi = _range(in_bits, signed)
    q_min, q_max = _range(out_bits, signed)
    if requant:
        z_in, z_out = int(rng.integers(lo, hi + 1)), int(rng.integers(q_min, q_max + 1))
        m0, n0 = icn.quantize_multipliers(np.array([rng.uniform(0.3, 1.5) * (1 << out_bits)
                                                    / (1 << in_bits)]))
    else:
        z_in = z_out = 0 if signed else int(rng.integers(0, 3))
        m0, n0 = np.array([1 << 30]), np.array([1])
        q_max = min(q_max, hi)
        # a fused ReLU, sometimes (never a constant output: q_min < q_max)
        q_min = min(max(q_min, lo, z_out + int(rng.integers(0, 2))), q_max - 1)
    spec = KernelSpec("max_pool", (1, h, w, c), (1, ho, wo, c), kernel=win[0], stride=win[2],
                      window=win, requant=bool(requant), in_bits=in_bits, out_bits=out_bits,
                      in_signed=signed, out_signed=signed, z_in=z_in, z_out=z_out, q_min=q_min,
                      q_max=q_max, suffix=f"mp{seed}")
    x = rng.integers(lo, hi + 1, (1, h, w, c))
    want = max_pool(x, win, requant, z_in, m0, n0, z_out, q_min, q_max)
    p = pack_params(spec, m0=m0, n0=n0)
    return Case(spec, [pack(x[0], in_bits).tobytes()] + [d for _, d in p.values()], want)


def _cases():
    cases, seed = [], 0
    for win, bits, signed in itertools.product(WINDOWS, (8, 4, 2), (False, True)):
        cases.append(maxpool_case(seed, win, bits, bits, signed, False))
        seed += 1
    for (ib, ob), signed in itertools.product(itertools.product((8, 4, 2), repeat=2),
                                              (False, True)):
        cases.append(maxpool_case(seed, WINDOWS[seed % len(WINDOWS)], ib, ob, signed, True,
                                  c=3 + seed % 7))
        seed += 1
    return cases


def test_host_kernel_equals_golden(host_builder):
    _run_all(host_builder, _cases())


def test_kernel_abi_and_constants():
    plain = maxpool_case(0, WINDOWS[1], 4, 4, False, False)
    req = maxpool_case(1, WINDOWS[1], 8, 4, False, True)
    assert plain.kernel.prototype.startswith("int32_t mpq_max_pool_u4_u4_mp0(const uint8_t *x, "
                                             "uint8_t *y)")
    assert "const int32_t *m0, const int8_t *n0" in req.kernel.prototype
    assert pack_params(plain.spec, m0=[1 << 30], n0=[1]) == {}


def _graph(node, in_shape, out_shape=None):
    g = helper.make_graph([node], "bad", [helper.make_tensor_value_info("x", TensorProto.FLOAT,
                                                                        in_shape)],
                          [helper.make_tensor_value_info(node.output[0], TensorProto.FLOAT,
                                                         out_shape)])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 21)])
    m.ir_version = 10
    return m


@pytest.mark.parametrize("attrs, out_shape, needle", [
    (dict(kernel_shape=[2, 2], dilations=[2, 2]), [1, 2, 4, 4], "dilations"),
    (dict(kernel_shape=[2, 2], storage_order=1), [1, 2, 5, 5], "storage_order"),
    (dict(kernel_shape=[2, 2], pads=[2, 0, 0, 0]), [1, 2, 7, 5], "pads"),
])
def test_bad_attributes_are_one_line_errors(tmp_path, attrs, out_shape, needle):
    node = helper.make_node("MaxPool", ["x"], ["y"], name="the_pool", **attrs)
    path = tmp_path / "bad.onnx"
    onnx.save(_graph(node, [1, 2, 6, 6], out_shape), path)
    assert_user_error(run_cli("inspect", path), "the_pool", needle)


def test_indices_output_is_refused(tmp_path):
    node = helper.make_node("MaxPool", ["x"], ["y", "idx"], name="with_idx", kernel_shape=[2, 2])
    m = _graph(node, [1, 2, 6, 6], [1, 2, 5, 5])       # the indices are computed, not used
    onnx.save(m, tmp_path / "idx.onnx")
    assert_user_error(run_cli("inspect", tmp_path / "idx.onnx"), "with_idx", "Indices")


# ---- a tutorial CNN, as PyTorch users write it -------------------------------------------------
def _tutorial_cnn_onnx(path):
    torch = pytest.importorskip("torch")
    from torch import nn
    import torch.nn.functional as F

    class TutorialCNN(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv1 = nn.Conv2d(1, 8, 3, padding=1)
            self.conv2 = nn.Conv2d(8, 16, 3, padding=1)
            self.fc1 = nn.Linear(16 * 7 * 7, 32)
            self.fc2 = nn.Linear(32, 10)

        def forward(self, x):
            x = F.max_pool2d(F.relu(self.conv1(x)), 2)
            x = F.max_pool2d(F.relu(self.conv2(x)), 2)
            x = torch.flatten(x, 1)
            return self.fc2(F.relu(self.fc1(x)))

    torch.manual_seed(0)
    model = TutorialCNN().eval()
    torch.onnx.export(model, (torch.randn(1, 1, 28, 28),), str(path), dynamo=False,
                      opset_version=17, input_names=["input"], output_names=["logits"])
    return model


@pytest.fixture(scope="module")
def tutorial_qdq(tmp_path_factory):
    from onnxruntime.quantization import (CalibrationDataReader, QuantFormat, QuantType,
                                          quantize_static)

    d = tmp_path_factory.mktemp("tutorial")
    _tutorial_cnn_onnx(d / "f.onnx")

    class Reader(CalibrationDataReader):
        def __init__(self):
            rng = np.random.default_rng(1)
            self.it = iter([{"input": rng.uniform(-1, 1, (1, 1, 28, 28)).astype(np.float32)}
                            for _ in range(16)])

        def get_next(self):
            return next(self.it, None)

    quantize_static(str(d / "f.onnx"), str(d / "q.onnx"), Reader(), quant_format=QuantFormat.QDQ,
                    per_channel=True, activation_type=QuantType.QUInt8,
                    weight_type=QuantType.QInt8)
    return d / "q.onnx"


def test_tutorial_cnn_golden_within_one_lsb_of_onnxruntime(tutorial_qdq):
    import onnxruntime as ort

    from tvm_mpq.passes.pipeline import convert
    from tvm_mpq.reference.interpret import run_reference

    im = convert(onnx.load(tutorial_qdq))
    names = [c.attrs["kind"] for c in (v for _, v in _bindings(im.mod)) if "kind" in c.attrs]
    assert names.count("maxpool") == 2
    sess = ort.InferenceSession(str(tutorial_qdq))
    rng = np.random.default_rng(5)
    for _ in range(8):
        x = rng.uniform(-1, 1, (1, 1, 28, 28)).astype(np.float32)
        want = sess.run(None, {"input": x})[0]
        got = im.dequantize_output(run_reference(im.mod, im.quantize_input(x)))
        assert np.max(np.abs(got - want)) <= im.output_scale * 1.01


def _bindings(mod):
    from tvm_mpq import tvm_adapter as ta

    return [(v, c) for v, c in ta.function_bindings(mod["main"]) if ta.is_call(c)
            and c.op.name.startswith("mpq.")]


@pytest.mark.slow
def test_tutorial_cnn_on_qemu_equals_host_and_golden(tutorial_qdq, tmp_path):
    from tvm_mpq.evaluate import run_batch
    from tvm_mpq.passes.pipeline import convert
    from tvm_mpq.reference.interpret import run_reference

    out = tmp_path / "b"
    p = run_cli("compile", tutorial_qdq, "--board", "qemu_m7", "-o", out)
    assert p.returncode == 0, p.stderr
    rng = np.random.default_rng(6)
    x = rng.integers(0, 256, (6, 28, 28, 1)).astype(np.uint8)
    q = run_batch(out, "qemu_m7", x)
    h = run_batch(out, "host", x)
    np.testing.assert_array_equal(q.outputs, h.outputs)
    im = convert(onnx.load(out / "model.qdq.onnx"))
    for i in range(len(x)):
        np.testing.assert_array_equal(q.outputs[i].ravel(),
                                      run_reference(im.mod, x[i:i + 1]).ravel())


@pytest.mark.slow
def test_tutorial_cnn_float_through_our_flow_mixed_precision(tmp_path):
    """The float export planned below 8 bits (4-bit activations through a max pool, 4-bit
    weights after the flatten), calibrated by our twin, on the emulated M7."""
    _tutorial_cnn_onnx(tmp_path / "f.onnx")
    out = tmp_path / "b"
    p = run_cli("compile", tmp_path / "f.onnx", "--flash", "16kB", "--ram", "6kB",
                "--calib", "synthetic", "--board", "qemu_m7", "-o", out)
    assert p.returncode == 0, p.stderr
    plan = (out / "plan.json").read_text()
    assert '"out_bits": 4' in plan and '"w_bits": 4' in plan
    r = run_cli("run", out, "--input", "random", "--check-host", "--reference")
    assert r.returncode == 0, r.stderr
    assert "host build: byte-identical output" in r.stdout
    assert "golden model: bit-identical" in r.stdout
