"""The average-pool face (layer kind pool): GlobalAveragePool, or AveragePool (any kernel
and stride; padding counted in the divisor, as count_include_pad 1).

- module `PoolLayer`: the mean over each window; fake-quantized it re-quantizes with its
  input's quantizer (`requant`: same scale, zero point and type, round half to even);
- no calibration of its own, no weights;
- LayerQParams: kind pool, input and output parameters those of its input;
- QDQ export: GlobalAveragePool | AveragePool L -> QuantizeLinear L.quant(<the input's
  scale / zero point initializers>) -> DequantizeLinear L.dequant.
"""

from __future__ import annotations

import torch.nn.functional as F
from onnx import helper

from ...errors import ModelError
from ..qparams import LayerQParams
from .base import Face, LayerModule, qdq_nodes, quant_info


class PoolLayer(LayerModule):
    """Global (kernel None) or windowed average pooling; `window` is the frontend's
    (kh, kw, sh, sw, pt, pl, pb, pr, ceil_mode)."""

    def __init__(self, layer, op: str, window):
        super().__init__(layer)
        self.op = op
        self.window = [int(v) for v in window] if op == "AveragePool" else None
        self.kernel_size = None if self.window is None else self.window[0]
        self.stride = 1 if self.window is None else self.window[2]
        self.requant = None             # the producer's activation quantizer

    def out_quant(self):
        return self.requant

    def forward(self, x):
        if self.window is None:
            y = x.mean(dim=(2, 3), keepdim=True)
        else:
            kh, kw, sh, sw, pt, pl, pb, pr, _ = self.window
            if pt or pl or pb or pr:        # zeros (the real value 0) count in the divisor
                x = F.pad(x, (pl, pr, pt, pb))
            y = F.avg_pool2d(x, (kh, kw), (sh, sw))
        if self.requant is not None:
            return self.requant.requantize(y)
        return y

    def onnx_attrs(self) -> dict:
        if self.window is None:
            return {}
        kh, kw, sh, sw, pt, pl, pb, pr, _ = self.window
        attrs = {"kernel_shape": [kh, kw], "strides": [sh, sw]}
        if pt or pl or pb or pr:
            attrs.update(pads=[pt, pl, pb, pr], count_include_pad=1)
        return attrs


class AvgPoolFace(Face):
    kinds = ("pool",)

    def build(self, layer, ctx) -> PoolLayer:
        node = ctx.nodes[layer.name]
        return PoolLayer(layer, node.op_type, layer.attrs.get("window"))

    def configure(self, m, q, ctx) -> None:
        src = ctx.quant[m.inputs[0]]
        if not hasattr(src, "requantize"):
            raise ModelError(f"layer '{m.name}': pooling the network input directly is not "
                             "supported (no layer quantizer to re-quantize with)")
        m.requant = src
        ctx.quant[m.output] = src

    def qparams(self, m, in_quants) -> LayerQParams:
        s, z, b, signed = quant_info(in_quants[0])
        p = LayerQParams(m.name, "pool", b, s, z, b, s, z, signed)
        if m.kernel_size is not None:
            p.stride = m.stride
        return p

    def export(self, m, p, ctx) -> None:
        ctx.nodes.append(helper.make_node(m.op, [ctx.dq[m.inputs[0]]], [p.name], name=p.name,
                                          **m.onnx_attrs()))
        ctx.nodes += qdq_nodes(p.name, p.name, *ctx.qnames[m.inputs[0]])
        ctx.dq[m.output] = f"{p.name}.dq"
        ctx.qnames[m.output] = ctx.qnames[m.inputs[0]]

    def export_float(self, m, ctx) -> None:
        ctx.nodes.append(helper.make_node(m.op, [ctx.names[m.inputs[0]]], [m.name], name=m.name,
                                          **m.onnx_attrs()))
        ctx.names[m.output] = m.name
