"""QDQ ONNX export of a fake-quantized `TorchNet` (conventions: docs/quantization.md).

    input -> Q(1/128, 128, UINT8) -> DQ
    then every layer, in execution order, as its face writes it (quant/faces/):
    conv (icn):    DQ(L.weight_q) -> Conv L (no bias) -> BatchNormalization -> [Relu]
                   -> Q(L.act_scale, 0, UINT{Q} | INT{Q} without Relu) -> DQ
    conv (folded): DQ(L.weight_q) -> Conv L (bias b', float) -> [Relu] -> Q -> DQ
    pool:          GlobalAveragePool -> Q(same scale/zero point/type as its input) -> DQ
    maxpool:       MaxPool -> Q(same as its input) -> DQ
    add:           DQ(a), DQ(b) -> Add -> [Relu] -> Q(L.act_scale, ...) -> DQ
    fc:            [Reshape flatten ->] DQ(fc.weight_q) -> Gemm (float bias)
                   -> Q(INT8, symmetric) -> DQ -> logits

Weights are stored in their real types (UINT8 / UINT4 / UINT2 with a zero point of the
same type; per-channel: scale and zero-point vectors, axis 0). The opset is 21 unless a
2-bit tensor needs opset 25 (the first whose QuantizeLinear/DequantizeLinear accept
UINT2). The plan is embedded as metadata_props["tvm_mpq.plan"].
"""

from __future__ import annotations

import json

import numpy as np
import onnx
from onnx import TensorProto, helper

from .faces import face_of
from .faces.base import ExportCtx, f32, int_tensor, qdq_nodes
from .qparams import FORMAT, FORMAT_KEY, PLAN_KEY, LayerQParams, layer_qparams
from .torch_model import TorchNet

OPSET = 21
OPSET_2BIT = 25

# kept for callers of the old names
_int_tensor, _f32 = int_tensor, f32


def qdq_opset(params: list[LayerQParams]) -> int:
    two = any(p.out_bits == 2 or p.in_bits == 2 or p.w_bits == 2 for p in params)
    return OPSET_2BIT if two else OPSET


def export_qdq(net: TorchNet, batch: int | None = 1) -> onnx.ModelProto:
    """The QDQ ONNX model of a configured and calibrated `net`; `batch=None` gives a
    symbolic batch dimension (for batched reference runs)."""
    params = layer_qparams(net)
    by_name = {p.name: p for p in params}
    ctx = ExportCtx(batch)
    iq = net.iq
    ctx.inits += [f32("input.scale", iq.scale().numpy()),
                  int_tensor("input.zero_point", np.array(iq.zero_point), iq.bits)]
    ctx.nodes += qdq_nodes("input", "input", "input.scale", "input.zero_point")
    ctx.dq[net.input_name] = "input.dq"
    ctx.qnames[net.input_name] = ("input.scale", "input.zero_point")
    for m in net.layers:
        face_of(m).export(m, by_name.get(m.name), ctx)
    nodes, inits = ctx.nodes, ctx.inits
    if nodes[-1].output[0] != ctx.dq[net.output_name]:
        raise ValueError("the network output is not the last layer's output")
    nodes[-1].output[0] = "logits"
    b = batch if batch is not None else "N"
    graph = helper.make_graph(
        nodes, net.name,
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [b, *net.input_shape])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [b, net.num_classes])],
        inits)
    opset = qdq_opset(params)
    opsets = [helper.make_opsetid("", opset)]
    model = helper.make_model(graph, opset_imports=opsets, producer_name="tvm-mpq",
                              producer_version="0.1")
    model.ir_version = helper.find_min_ir_version_for(opsets)
    plan = net.plan or {}
    helper.set_model_props(model, {PLAN_KEY: json.dumps(plan), FORMAT_KEY: FORMAT})
    onnx.checker.check_model(model, full_check=True)
    return model
