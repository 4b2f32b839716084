"""The max-pool face (layer kind maxpool): MaxPool, any kernel, stride and padding.

The layer carries `attrs = {"kernel_shape": [kh, kw], "strides": [sh, sw], "pads":
[top, left, bottom, right]}` (read from the MaxPool node when absent).

- module `MaxPoolLayer`: max over each window, padding never selected (-inf);
  fake-quantized nothing changes: the max of quantized values is one of them, so the
  output keeps its input's scale, zero point and type (integer max, no requantization);
- no calibration, no weights;
- LayerQParams: kind maxpool, output parameters = input parameters;
- QDQ export: DQ(x) -> MaxPool L -> QuantizeLinear L.quant(<the input's scale / zero
  point initializers>) -> DequantizeLinear L.dequant (an exact round trip).
"""

from __future__ import annotations

import torch.nn.functional as F
from onnx import helper

from ...errors import UnsupportedOpError
from ..qparams import LayerQParams
from .base import Face, LayerModule, qdq_nodes, quant_info


class MaxPoolLayer(LayerModule):
    def __init__(self, layer, kernel, strides, pads):
        super().__init__(layer)
        self.kernel_shape, self.strides, self.pads = list(kernel), list(strides), list(pads)
        self.src_quant = None           # the input's quantizer (the output carries it)

    def out_quant(self):
        return self.src_quant

    def forward(self, x):
        top, left, bottom, right = self.pads
        if any(self.pads):
            x = F.pad(x, (left, right, top, bottom), value=float("-inf"))
        return F.max_pool2d(x, self.kernel_shape, self.strides)


class MaxPoolFace(Face):
    kinds = ("maxpool",)

    def build(self, layer, ctx) -> MaxPoolLayer:
        node = ctx.nodes[layer.name]
        at = dict(ctx.attrs(node))
        at.update(getattr(layer, "attrs", None) or {})
        if at.get("auto_pad", b"NOTSET") not in (b"NOTSET", "NOTSET"):
            raise UnsupportedOpError(layer.name, "MaxPool", "auto_pad (use explicit pads)")
        if at.get("ceil_mode", 0) or any(d != 1 for d in at.get("dilations", [1, 1])):
            raise UnsupportedOpError(layer.name, "MaxPool", "ceil_mode or dilations")
        if len(node.output) > 1 and node.output[1]:
            raise UnsupportedOpError(layer.name, "MaxPool", "the Indices output")
        k = list(at["kernel_shape"])
        m = MaxPoolLayer(layer, k, at.get("strides", [1, 1]), at.get("pads", [0, 0, 0, 0]))
        for g in ctx.glue(layer):
            if g.op_type not in ("Reshape", "Flatten", "Squeeze", "Identity", "Relu"):
                raise UnsupportedOpError(g.name, g.op_type, "after a max pool")
        return m

    def configure(self, m, q, ctx) -> None:
        m.src_quant = ctx.quant[m.inputs[0]]
        ctx.quant[m.output] = m.src_quant

    def qparams(self, m, in_quants) -> LayerQParams:
        s, z, b, signed = quant_info(in_quants[0])
        return LayerQParams(m.name, "maxpool", b, s, z, b, s, z, signed,
                            stride=int(m.strides[0]), pad=int(m.pads[0]))

    def _node(self, m, x: str, name: str):
        return helper.make_node("MaxPool", [x], [name], name=m.name,
                                kernel_shape=m.kernel_shape, strides=m.strides, pads=m.pads)

    def export(self, m, p, ctx) -> None:
        ctx.nodes.append(self._node(m, ctx.dq[m.inputs[0]], p.name))
        ctx.nodes += qdq_nodes(p.name, p.name, *ctx.qnames[m.inputs[0]])
        ctx.dq[m.output] = f"{p.name}.dq"
        ctx.qnames[m.output] = ctx.qnames[m.inputs[0]]

    def export_float(self, m, ctx) -> None:
        ctx.nodes.append(self._node(m, ctx.names[m.inputs[0]], m.name))
        ctx.names[m.output] = m.name
