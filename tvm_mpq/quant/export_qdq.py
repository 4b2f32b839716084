"""QDQ ONNX export of a fake-quantized `TorchNet` (conventions: docs/quantization.md).

    input -> Q(1/128, 128, UINT8) -> DQ
    per conv layer L (icn):    DQ(L.weight_q) -> Conv L (no bias) -> BatchNormalization
                               -> Relu -> Q(L.act_scale, 0, UINT{Q}) -> DQ
    per conv layer L (folded): DQ(L.weight_q) -> Conv L (bias b', float) -> Relu -> Q -> DQ
    pool:                      GlobalAveragePool -> Q(same scale/zero point/type as its
                               input) -> DQ -> Reshape
    fc:                        DQ(fc.weight_q) -> Gemm (float bias) -> Q(INT8, symmetric)
                               -> DQ -> logits

Weights are stored in their real types (UINT8 / UINT4 / UINT2 with a zero point of the
same type; per-channel: scale and zero-point vectors, axis 0). The opset is 21 unless a
2-bit tensor needs opset 25 (the first whose QuantizeLinear/DequantizeLinear accept
UINT2). The plan is embedded as metadata_props["tvm_mpq.plan"].
"""

from __future__ import annotations

import json

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from .qparams import FORMAT, FORMAT_KEY, PLAN_KEY, QTYPES, LayerQParams, layer_qparams
from .torch_model import TorchNet

OPSET = 21
OPSET_2BIT = 25


def _int_tensor(name: str, values: np.ndarray, bits: int, signed: bool = False):
    """Integers as an initializer of the real ONNX type; sub-byte types are stored packed
    (raw_data, element 0 in the lowest bits, as the project's kernels pack them)."""
    np_type = helper.tensor_dtype_to_np_dtype(QTYPES[(bits, signed)])
    return numpy_helper.from_array(np.asarray(values).astype(np.int64).astype(np_type), name)


def _f32(name: str, value) -> onnx.TensorProto:
    return numpy_helper.from_array(np.asarray(value, np.float32), name)


def qdq_opset(params: list[LayerQParams]) -> int:
    two = any(p.out_bits == 2 or p.in_bits == 2 or p.w_bits == 2 for p in params)
    return OPSET_2BIT if two else OPSET


def export_qdq(net: TorchNet, batch: int | None = 1) -> onnx.ModelProto:
    """The QDQ ONNX model of a configured and calibrated `net`; `batch=None` gives a
    symbolic batch dimension (for batched reference runs)."""
    params = layer_qparams(net)
    nodes: list[onnx.NodeProto] = []
    inits: list[onnx.TensorProto] = []
    p0 = params[0]
    inits += [_f32("input.scale", p0.in_scale),
              _int_tensor("input.zero_point", np.array(p0.in_zero_point), p0.in_bits)]
    nodes += [helper.make_node("QuantizeLinear", ["input", "input.scale", "input.zero_point"],
                               ["input.q"], name="input.quant"),
              helper.make_node("DequantizeLinear", ["input.q", "input.scale",
                                                    "input.zero_point"],
                               ["input.dq"], name="input.dequant")]
    x, act_qparams = "input.dq", ("input.scale", "input.zero_point")
    for p in params:
        if p.kind == "pool":
            nodes.append(helper.make_node("GlobalAveragePool", [x], [p.name], name=p.name))
            nodes += _qdq(p.name, p.name, *act_qparams)
            c = params[-1].w_q.shape[1]
            inits.append(numpy_helper.from_array(np.array([batch or -1, c], np.int64),
                                                 "flatten.shape"))
            nodes.append(helper.make_node("Reshape", [f"{p.name}.dq", "flatten.shape"], ["flat"],
                                          name=net.flatten_name))
            x = "flat"
            continue
        w = _weights(p, inits, nodes)
        ins = [x, w]
        if p.bias is not None:
            inits.append(_f32(f"{p.name}.bias", p.bias))
            ins.append(f"{p.name}.bias")
        if p.kind == "linear":
            nodes.append(helper.make_node("Gemm", ins, [f"{p.name}.gemm"], name=p.name, transB=1))
            y = f"{p.name}.gemm"
            sname, zname = f"{p.name}.out_scale", f"{p.name}.out_zero_point"
        else:
            k = int(p.w_q.shape[2])
            nodes.append(helper.make_node("Conv", ins, [f"{p.name}.conv"], name=p.name,
                                          kernel_shape=[k, k], strides=[p.stride] * 2,
                                          pads=[p.pad] * 4, group=p.groups))
            y = f"{p.name}.conv"
            if p.icn:
                bn_ins = [y]
                for s, v in (("gamma", p.bn_gamma), ("beta", p.bn_beta), ("mean", p.bn_mean),
                             ("var", p.bn_var)):
                    inits.append(_f32(f"{p.name}.bn.{s}", v))
                    bn_ins.append(f"{p.name}.bn.{s}")
                nodes.append(helper.make_node("BatchNormalization", bn_ins, [f"{p.name}.bn"],
                                              name=f"{p.name}.bn", epsilon=float(p.bn_eps)))
                y = f"{p.name}.bn"
            nodes.append(helper.make_node("Relu", [y], [f"{p.name}.relu"], name=f"{p.name}.relu"))
            y = f"{p.name}.relu"
            sname, zname = f"{p.name}.act_scale", f"{p.name}.act_zero_point"
        inits += [_f32(sname, p.out_scale),
                  _int_tensor(zname, np.array(p.out_zero_point), p.out_bits, p.out_signed)]
        nodes += _qdq(p.name, y, sname, zname)
        x, act_qparams = f"{p.name}.dq", (sname, zname)
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


def _weights(p: LayerQParams, inits: list, nodes: list) -> str:
    q, s, z = f"{p.name}.weight_q", f"{p.name}.weight_scale", f"{p.name}.weight_zero_point"
    inits += [_int_tensor(q, p.w_q, p.w_bits), _f32(s, p.w_scale),
              _int_tensor(z, p.w_zero_point, p.w_bits)]
    attrs = {"axis": 0} if p.per_channel else {}
    nodes.append(helper.make_node("DequantizeLinear", [q, s, z], [f"{p.name}.weight_dq"],
                                  name=f"{p.name}.weight_dequant", **attrs))
    return f"{p.name}.weight_dq"


def _qdq(name: str, x: str, scale: str, zero_point: str) -> list[onnx.NodeProto]:
    return [helper.make_node("QuantizeLinear", [x, scale, zero_point], [f"{name}.q"],
                             name=f"{name}.quant"),
            helper.make_node("DequantizeLinear", [f"{name}.q", scale, zero_point],
                             [f"{name}.dq"], name=f"{name}.dequant")]
