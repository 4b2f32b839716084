"""The average-pool face (layer kind pool): GlobalAveragePool, or AveragePool without
padding.

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
    """Global (kernel None) or windowed average pooling."""

    def __init__(self, layer, op: str, kernel: int | None, stride: int):
        super().__init__(layer)
        self.op, self.kernel_size, self.stride = op, kernel, stride
        self.requant = None             # the producer's activation quantizer

    def out_quant(self):
        return self.requant

    def forward(self, x):
        if self.kernel_size is None:
            y = x.mean(dim=(2, 3), keepdim=True)
        else:
            y = F.avg_pool2d(x, self.kernel_size, self.stride)
        if self.requant is not None:
            return self.requant.requantize(y)
        return y


class AvgPoolFace(Face):
    kinds = ("pool",)

    def build(self, layer, ctx) -> PoolLayer:
        node = ctx.nodes[layer.name]
        if node.op_type == "GlobalAveragePool":
            return PoolLayer(layer, node.op_type, None, 1)
        return PoolLayer(layer, node.op_type, int(layer.kernel), int(layer.stride))

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
        attrs = {} if m.kernel_size is None else {"kernel_shape": [m.kernel_size] * 2,
                                                      "strides": [m.stride] * 2}
        ctx.nodes.append(helper.make_node(m.op, [ctx.dq[m.inputs[0]]], [p.name], name=p.name,
                                          **attrs))
        ctx.nodes += qdq_nodes(p.name, p.name, *ctx.qnames[m.inputs[0]])
        ctx.dq[m.output] = f"{p.name}.dq"
        ctx.qnames[m.output] = ctx.qnames[m.inputs[0]]

    def export_float(self, m, ctx) -> None:
        attrs = {} if m.kernel_size is None else {"kernel_shape": [m.kernel_size] * 2,
                                                      "strides": [m.stride] * 2}
        ctx.nodes.append(helper.make_node(m.op, [ctx.names[m.inputs[0]]], [m.name], name=m.name,
                                          **attrs))
        ctx.names[m.output] = m.name
