"""A network with a skip connection (residual add) through the whole flow: onnxruntime
quantize_static -> convert -> firmware; QEMU == host == golden model, and the arena
planner keeps the skip tensor alive (greedy placement, no overlap)."""

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper
from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

from conftest import run_cli
from tvm_mpq import tvm_adapter as ta
from tvm_mpq.codegen.project import read_metadata
from tvm_mpq.evaluate import run_batch
from tvm_mpq.passes.pipeline import convert
from tvm_mpq.reference.interpret import run_reference


def _residual_model(seed=0):
    rng = np.random.default_rng(seed)
    c = 6
    inits = [numpy_helper.from_array((rng.standard_normal((c, 3, 3, 3)) * 0.3).astype(np.float32), "w0"),
             numpy_helper.from_array((rng.standard_normal(c) * 0.1).astype(np.float32), "b0"),
             numpy_helper.from_array((rng.standard_normal((c, c, 3, 3)) * 0.2).astype(np.float32), "w1"),
             numpy_helper.from_array((rng.standard_normal(c) * 0.1).astype(np.float32), "b1"),
             numpy_helper.from_array((rng.standard_normal((5, c)) * 0.5).astype(np.float32), "wf"),
             numpy_helper.from_array(np.zeros(5, np.float32), "bf"),
             numpy_helper.from_array(np.array([1, c], np.int64), "shape")]
    nodes = [helper.make_node("Conv", ["x", "w0", "b0"], ["c0"], name="conv0", pads=[1] * 4),
             helper.make_node("Relu", ["c0"], ["r0"], name="relu0"),
             helper.make_node("Conv", ["r0", "w1", "b1"], ["c1"], name="conv1", pads=[1] * 4),
             helper.make_node("Relu", ["c1"], ["r1"], name="relu1"),
             helper.make_node("Add", ["r0", "r1"], ["s"], name="skip_add"),
             helper.make_node("GlobalAveragePool", ["s"], ["p"], name="pool"),
             helper.make_node("Reshape", ["p", "shape"], ["f"], name="flatten"),
             helper.make_node("Gemm", ["f", "wf", "bf"], ["y"], name="fc", transB=1)]
    g = helper.make_graph(nodes, "residual",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 5])], inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 21)])
    m.ir_version = 10
    return m


class _Reader(CalibrationDataReader):
    def __init__(self, n):
        rng = np.random.default_rng(1)
        self.it = iter([rng.uniform(-1, 1, (1, 3, 8, 8)).astype(np.float32) for _ in range(n)])

    def get_next(self):
        x = next(self.it, None)
        return None if x is None else {"x": x}


@pytest.fixture(scope="module")
def qmodel(tmp_path_factory):
    d = tmp_path_factory.mktemp("res")
    onnx.save(_residual_model(), d / "f.onnx")
    quantize_static(str(d / "f.onnx"), str(d / "q.onnx"), _Reader(16),
                    quant_format=QuantFormat.QDQ, per_channel=True,
                    activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8)
    return d / "q.onnx"


def test_residual_add_converts_and_matches_golden(qmodel):
    im = convert(onnx.load(qmodel))
    ops = [c.op.name for _, c in ta.function_bindings(im.mod["main"]) if ta.is_call(c)]
    assert "mpq.add_icn" in ops
    run = ta.build_relax_host(im.mod)
    rng = np.random.default_rng(3)
    for _ in range(4):
        x = im.quantize_input(rng.uniform(-1, 1, (1, 3, 8, 8)))
        np.testing.assert_array_equal(np.asarray(run(x)), run_reference(im.mod, x))


def test_residual_firmware_qemu_equals_host(qmodel, tmp_path):
    out = tmp_path / "b"
    p = run_cli("compile", qmodel, "--board", "qemu_m7", "-o", out)
    assert p.returncode == 0, p.stderr
    meta = read_metadata(out)
    arena = meta["memory"]["arena"]
    assert arena["strategy"] == "greedy_by_size"      # not a chain: the skip tensor lives on
    bufs = arena["buffers"]
    for i, a in enumerate(bufs):
        for b in bufs[i + 1:]:
            if not (a["last_step"] < b["first_step"] or b["last_step"] < a["first_step"]):
                assert (a["offset"] + a["bytes"] <= b["offset"]
                        or b["offset"] + b["bytes"] <= a["offset"])
    rng = np.random.default_rng(4)
    x = rng.integers(0, 256, (8, 8, 8, 3)).astype(np.uint8)
    q = run_batch(out, "qemu_m7", x)
    h = run_batch(out, "host", x)
    np.testing.assert_array_equal(q.outputs, h.outputs)
    im = convert(onnx.load(out / "model.qdq.onnx"))
    for i in range(len(x)):
        np.testing.assert_array_equal(q.outputs[i].ravel(), run_reference(im.mod, x[i:i + 1]).ravel())
