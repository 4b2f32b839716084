"""Models with the convolutions real TinyML networks have, through `tvm-mpq compile` and
`tvm-mpq run --check-host --reference` on the emulated Cortex-M7 (slow):

- a DS-CNN written in PyTorch (keyword spotting: 49x10x1 input, a 10x4 stride-2 conv, four
  depthwise-separable blocks, global average pooling over the 25x5 map, Linear 12),
  exported by torch.onnx.export, at 8 bits and under a budget that forces 4-bit tensors;
- a Keras-style model written with onnx.helper: "SAME" at stride 2 as pads [0, 0, 1, 1], a
  ZeroPadding-style Pad before a VALID depthwise conv (folded into its pads), a grouped
  conv with auto_pad SAME_UPPER and strides (1, 2).
"""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from conftest import run_cli


def _dscnn_onnx(path):
    torch = pytest.importorskip("torch")
    from torch import nn

    def block():
        return [nn.Conv2d(64, 64, 3, padding=1, groups=64, bias=False), nn.BatchNorm2d(64),
                nn.ReLU(), nn.Conv2d(64, 64, 1, bias=False), nn.BatchNorm2d(64), nn.ReLU()]

    class DSCNN(nn.Module):
        def __init__(self):
            super().__init__()
            self.features = nn.Sequential(
                nn.Conv2d(1, 64, (10, 4), stride=2, padding=(5, 1)), nn.BatchNorm2d(64),
                nn.ReLU(), *block(), *block(), *block(), *block())
            self.pool = nn.AdaptiveAvgPool2d(1)
            self.fc = nn.Linear(64, 12)

        def forward(self, x):
            return self.fc(torch.flatten(self.pool(self.features(x)), 1))

    torch.manual_seed(0)
    model = DSCNN().eval()
    with torch.no_grad():               # non-trivial batch-norm statistics
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-0.2, 0.2)
                m.running_var.uniform_(0.5, 2.0)
    torch.onnx.export(model, (torch.randn(1, 1, 49, 10),), str(path), dynamo=False,
                      opset_version=17, input_names=["input"], output_names=["logits"])


def _compile_and_run(model, out, *budget):
    p = run_cli("compile", model, *budget, "--calib", "synthetic", "--board", "qemu_m7",
                "-o", out)
    assert p.returncode == 0, p.stderr
    r = run_cli("run", out, "--input", "random", "--check-host", "--reference")
    assert r.returncode == 0, r.stderr
    assert "host build: byte-identical output" in r.stdout
    assert "golden model: bit-identical" in r.stdout
    return r


@pytest.mark.slow
@pytest.mark.parametrize("budget, low_bits", [(("--flash", "64kB", "--ram", "32kB"), False),
                                              (("--flash", "20kB", "--ram", "16kB"), True)],
                         ids=["8bit", "mixed"])
def test_dscnn_through_our_flow_on_qemu(tmp_path, budget, low_bits):
    _dscnn_onnx(tmp_path / "dscnn.onnx")
    g = run_cli("inspect", tmp_path / "dscnn.onnx")
    assert g.returncode == 0, g.stderr
    out = tmp_path / "b"
    _compile_and_run(tmp_path / "dscnn.onnx", out, *budget)
    plan = (out / "plan.json").read_text()
    assert ('"w_bits": 4' in plan or '"out_bits": 4' in plan) == low_bits


def _keras_same_onnx(path):
    rng = np.random.default_rng(0)

    def w(name, shape):
        return numpy_helper.from_array(rng.normal(0, 0.3, shape).astype(np.float32), name)

    inits = [w("w1", (8, 3, 3, 3)), w("b1", (8,)), w("w2", (8, 1, 3, 3)), w("b2", (8,)),
             w("w3", (16, 8, 1, 1)), w("b3", (16,)), w("w4", (16, 8, 3, 3)), w("b4", (16,)),
             w("fc", (16, 10)), w("fcb", (10,)),
             numpy_helper.from_array(np.array([0, 0, 0, 0, 0, 0, 1, 1], np.int64), "pads")]
    nodes = [
        helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], name="conv_same_s2",
                         strides=[2, 2], pads=[0, 0, 1, 1]),
        helper.make_node("Relu", ["c1"], ["r1"], name="r1"),
        helper.make_node("Pad", ["r1", "pads"], ["p2"], name="zero_pad"),
        helper.make_node("Conv", ["p2", "w2", "b2"], ["c2"], name="dw_valid_s2", group=8,
                         strides=[2, 2]),
        helper.make_node("Relu", ["c2"], ["r2"], name="r2"),
        helper.make_node("Conv", ["r2", "w3", "b3"], ["c3"], name="pw"),
        helper.make_node("Relu", ["c3"], ["r3"], name="r3"),
        helper.make_node("Conv", ["r3", "w4", "b4"], ["c4"], name="grouped_same", group=2,
                         auto_pad="SAME_UPPER", strides=[1, 2]),
        helper.make_node("Relu", ["c4"], ["r4"], name="r4"),
        helper.make_node("GlobalAveragePool", ["r4"], ["gp"], name="gap"),
        helper.make_node("Flatten", ["gp"], ["f"], name="flat"),
        helper.make_node("Gemm", ["f", "fc", "fcb"], ["logits"], name="fc")]
    g = helper.make_graph(nodes, "keras_same",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 32, 32])],
                          [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, 10])],
                          inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 9
    onnx.save(m, path)


@pytest.mark.slow
def test_keras_same_pads_through_compile_on_qemu(tmp_path):
    _keras_same_onnx(tmp_path / "k.onnx")
    _compile_and_run(tmp_path / "k.onnx", tmp_path / "b", "--flash", "64kB", "--ram", "32kB")
