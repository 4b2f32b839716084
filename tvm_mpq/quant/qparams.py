"""Per-layer integer quantization parameters: what the integer converter consumes.

Reading a QDQ file (`read_qdq_params`) needs numpy and onnx only, not torch.

Two sources give the same `LayerQParams` list (one entry per conv / pool / linear / add /
maxpool layer, in execution order):

- `layer_qparams(net)`: from a configured, trained/calibrated PyTorch `TorchNet`;
- `read_qdq_params(model)`: from the QDQ ONNX model `export_qdq` wrote (the file the
  rest of the flow passes around).

Conventions (docs/quantization.md): real = scale * (q - zero_point); activations are
unsigned (UINT{Q}, zero point 0) except the network input (UINT8, scale 1/128, zero
point 128), the logits (INT8 symmetric, zero point 0) and the outputs of layers without a
ReLU (INT{Q} symmetric, zero point 0: a conv-BN before a residual add, an add without
ReLU). Weights are UINT{Q} with a
zero point, per layer (scalar scale/zero point) or per output channel (vectors, axis 0).
With icn=False the batch-norm is folded into the weights and `bias` is the folded bias;
with icn=True `bn_*` hold the batch-norm the requantizer must apply (section 3 of the
method notes) and `bias` is the conv's own bias (None for the zoo).
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np
import onnx
from onnx import TensorProto, numpy_helper

from ..errors import ModelError

PLAN_KEY = "tvm_mpq.plan"
FORMAT_KEY = "tvm_mpq.qdq"
FORMAT = "tvm-mpq.qdq/1"

# ONNX element type <-> (bits, signed)
QTYPES = {(8, False): TensorProto.UINT8, (4, False): TensorProto.UINT4,
          (2, False): TensorProto.UINT2, (8, True): TensorProto.INT8,
          (4, True): TensorProto.INT4, (2, True): TensorProto.INT2}
QTYPE_BITS = {v: k for k, v in QTYPES.items()}


@dataclass
class LayerQParams:
    name: str                          # ONNX node name of the Conv / Gemm / pool / Add
    kind: str                          # the layer kind (frontend.graph.Layer.kind)
    in_bits: int
    in_scale: np.float32
    in_zero_point: int
    out_bits: int
    out_scale: np.float32
    out_zero_point: int
    out_signed: bool = False           # the logits, outputs without ReLU
    w_bits: int = 0
    w_q: np.ndarray | None = None      # stored integers (uint8 values < 2^w_bits), OIHW / [out, in]
    w_scale: np.ndarray | None = None  # float32, shape () per layer or (C_out,) per channel
    w_zero_point: np.ndarray | None = None  # int32, same shape as w_scale
    per_channel: bool = False
    icn: bool = False
    bias: np.ndarray | None = None     # float32 [C_out] or None
    bn_gamma: np.ndarray | None = None
    bn_beta: np.ndarray | None = None
    bn_mean: np.ndarray | None = None
    bn_var: np.ndarray | None = None
    bn_eps: float = 0.0
    stride: int = 1
    pad: int = 0
    groups: int = 1
    in2_bits: int = 0                  # add: the second input
    in2_scale: np.float32 | None = None
    in2_zero_point: int = 0

    def dequantized_weights(self) -> np.ndarray:
        """S_w * (u - Z_w) in float32, as DequantizeLinear computes it."""
        shape = (-1,) + (1,) * (self.w_q.ndim - 1)
        z = self.w_zero_point.reshape(shape) if self.per_channel else self.w_zero_point
        s = self.w_scale.reshape(shape) if self.per_channel else self.w_scale
        return ((self.w_q.astype(np.float32) - z.astype(np.float32)) * s).astype(np.float32)


def layer_qparams(net) -> list[LayerQParams]:
    """The integer parameters of a configured `TorchNet` (fake_quant.configure), one per
    layer that has some (each layer's face decides, quant/faces/)."""
    from .faces import face_of  # torch only here: reading needs none

    if not net.quantized:
        raise ValueError("the model has no quantizers (fake_quant.configure)")
    oq = net.output_quant()
    if oq is None or not getattr(oq, "calibrated", True):
        raise ValueError("the logit scale is not calibrated (calibrate / calibrate_logits)")
    quant = {net.input_name: net.iq}
    out: list[LayerQParams] = []
    for m in net.layers:
        p = face_of(m).qparams(m, [quant[t] for t in m.inputs])
        if p is not None:
            out.append(p)
        quant[m.output] = m.out_quant()
    return out


# ---------------------------------------------------------------- from the QDQ ONNX file

def plan_metadata(model: onnx.ModelProto) -> dict | None:
    """The plan embedded in an exported model's metadata, or None."""
    for p in model.metadata_props:
        if p.key == PLAN_KEY:
            return json.loads(p.value)
    return None


def read_qdq_params(model: onnx.ModelProto) -> list[LayerQParams]:
    """Parse a model written by `export_qdq` back into `LayerQParams`."""
    g = model.graph
    inits = {t.name: t for t in g.initializer}
    prod = {o: n for n in g.node for o in n.output}
    cons: dict[str, list] = {}
    for n in g.node:
        for i in n.input:
            cons.setdefault(i, []).append(n)

    def arr(name):
        return numpy_helper.to_array(inits[name])

    def dq_of(tensor, node):
        dq = prod.get(tensor)
        while dq is not None and dq.op_type in ("Reshape", "Flatten"):
            dq = prod.get(dq.input[0])
        if dq is None or dq.op_type != "DequantizeLinear":
            raise ModelError(f"node '{node.name}': input '{tensor}' is not dequantized "
                             "(not a tvm-mpq QDQ model)")
        return dq

    def next_q(tensor, node):
        """Follow BN / Relu to the QuantizeLinear after `node`; return (q, bn, relu)."""
        bn = relu = None
        while True:
            nxt = cons.get(tensor, [])
            if len(nxt) != 1:
                raise ModelError(f"node '{node.name}': output not followed by one node")
            n = nxt[0]
            if n.op_type == "QuantizeLinear":
                return n, bn, relu
            if n.op_type == "BatchNormalization":
                bn = n
            elif n.op_type == "Relu":
                relu = n
            else:
                raise ModelError(f"node '{n.name}' ({n.op_type}) between '{node.name}' and "
                                 "its QuantizeLinear")
            tensor = n.output[0]

    def qinfo(qnode):
        zp = inits[qnode.input[2]]
        bits, signed = QTYPE_BITS[zp.data_type]
        return np.float32(arr(qnode.input[1])), int(arr(qnode.input[2])), bits, signed

    out: list[LayerQParams] = []
    for node in g.node:
        if node.op_type not in ("Conv", "Gemm", "GlobalAveragePool", "AveragePool", "Add",
                                "MaxPool"):
            continue
        s_in, z_in, b_in, _ = qinfo(dq_of(node.input[0], node))
        q, bn, _ = next_q(node.output[0], node)
        s_out, z_out, b_out, signed = qinfo(q)
        at = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
        if node.op_type in ("GlobalAveragePool", "AveragePool", "MaxPool"):
            kind = "maxpool" if node.op_type == "MaxPool" else "pool"
            p = LayerQParams(node.name, kind, b_in, s_in, z_in, b_out, s_out, z_out, signed)
            p.stride = int(at.get("strides", [1])[0])
            p.pad = int(at.get("pads", [0])[0])
            out.append(p)
            continue
        if node.op_type == "Add":
            s2, z2, b2, _ = qinfo(dq_of(node.input[1], node))
            out.append(LayerQParams(node.name, "add", b_in, s_in, z_in, b_out, s_out, z_out,
                                    signed, in2_bits=b2, in2_scale=s2, in2_zero_point=z2))
            continue
        wdq = dq_of(node.input[1], node)
        axis = next((a.i for a in wdq.attribute if a.name == "axis"), 1)
        w_scale, w_zp = arr(wdq.input[1]), arr(wdq.input[2])
        per_channel = w_scale.ndim == 1
        w_bits = QTYPE_BITS[inits[wdq.input[0]].data_type][0]
        kind = "linear"
        if node.op_type == "Conv":             # named as the frontend names it
            from ..ops.conv2d import onnx_layer_kind

            grp, cin_g = int(at.get("group", 1)), int(inits[wdq.input[0]].dims[1])
            kind = onnx_layer_kind(grp, grp * cin_g, cin_g, at["kernel_shape"],
                                   at.get("pads"))
        if per_channel and axis != 0:
            raise ModelError(f"node '{wdq.name}': per-channel axis {axis}, expected 0")
        p = LayerQParams(
            node.name, kind, b_in, s_in, z_in, b_out, s_out, z_out, signed, w_bits=w_bits,
            w_q=arr(wdq.input[0]).astype(np.uint8), w_scale=w_scale.astype(np.float32),
            w_zero_point=w_zp.astype(np.int32), per_channel=per_channel,
            bias=arr(node.input[2]).astype(np.float32) if len(node.input) > 2 else None)
        if node.op_type == "Conv":
            p.stride, p.pad, p.groups = at["strides"][0], at["pads"][0], at.get("group", 1)
        if bn is not None:
            p.icn = True
            p.bn_gamma, p.bn_beta, p.bn_mean, p.bn_var = (arr(t) for t in bn.input[1:5])
            p.bn_eps = next((a.f for a in bn.attribute if a.name == "epsilon"), 1e-5)
        out.append(p)
    return out
