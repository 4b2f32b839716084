"""Seed models of the ONNX-loader fuzzers: a tiny float MobileNet-like chain (every node
kind the flow takes) and its QDQ export (sub-byte types, per-channel weights), a few
hundred bytes of structure each so that mutations hit the graph rather than the weights."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper


def tiny_float_model() -> onnx.ModelProto:
    rng = np.random.default_rng(0)
    inits, nodes = [], []

    def init(name, arr):
        inits.append(numpy_helper.from_array(np.asarray(arr, np.float32), name))
        return name

    def conv_bn_act(name, x, cin, cout, k, stride, group, act):
        w = init(f"{name}.w", rng.normal(0, 0.5, (cout, cin // group, k, k)))
        nodes.append(helper.make_node("Conv", [x, w], [f"{name}.c"], name=name,
                                      kernel_shape=[k, k], pads=[k // 2] * 4,
                                      strides=[stride] * 2, group=group))
        bn = [init(f"{name}.{p}", v) for p, v in (("g", rng.uniform(0.5, 1.5, cout)),
                                                  ("b", rng.normal(0, 0.1, cout)),
                                                  ("m", rng.normal(0, 0.1, cout)),
                                                  ("v", rng.uniform(0.5, 1.5, cout)))]
        nodes.append(helper.make_node("BatchNormalization", [f"{name}.c"] + bn, [f"{name}.bn"],
                                      name=f"{name}.bn", epsilon=1e-3))
        lo, hi = init(f"{name}.lo", np.float32(0)), init(f"{name}.hi", np.float32(6))
        nodes.append(helper.make_node("Clip", [f"{name}.bn", lo, hi], [f"{name}.out"],
                                      name=f"{name}.act"))
        return f"{name}.out"

    x = conv_bn_act("conv0", "input", 1, 4, 3, 2, 1, "clip")
    x = conv_bn_act("b1.dw", x, 4, 4, 3, 1, 4, "clip")
    x = conv_bn_act("b1.pw", x, 4, 6, 1, 1, 1, "clip")
    nodes.append(helper.make_node("GlobalAveragePool", [x], ["pool"], name="pool"))
    inits.append(numpy_helper.from_array(np.array([1, 6], np.int64), "shape"))
    nodes.append(helper.make_node("Reshape", ["pool", "shape"], ["flat"], name="flatten"))
    init("fc.w", rng.normal(0, 0.5, (3, 6)))
    init("fc.b", rng.normal(0, 0.1, 3))
    nodes.append(helper.make_node("Gemm", ["flat", "fc.w", "fc.b"], ["logits"], name="fc",
                                  transB=1))
    g = helper.make_graph(nodes, "tiny",
                          [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 1, 8, 8])],
                          [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, 3])],
                          inits)
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 21)], ir_version=10)


def tiny_qdq_model() -> onnx.ModelProto:
    """The float model quantized by the project's own flow: 4-bit weights and activations
    in the middle, 2-bit weights in the pointwise layer, per-channel (mixpc)."""
    from tvm_mpq.flow import quantize_model
    from tvm_mpq.frontend.graph import build_layer_graph
    from tvm_mpq.frontend.loader import validate
    from tvm_mpq.quant.qplan import make_plan

    model = validate(tiny_float_model())
    graph = build_layer_graph(model)
    plan = make_plan(graph, "mixpc", {"b1.dw": 4, "b1.pw": 2}, {"conv0": 4, "b1.dw": 4})
    x = np.random.default_rng(1).normal(0, 1, (8, 1, 8, 8)).astype(np.float32)
    return quantize_model(model, graph, plan, x)
