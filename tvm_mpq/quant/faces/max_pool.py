"""The max-pool face (layer kind maxpool): MaxPool, any kernel, stride and padding.

The layer carries the window the frontend resolved (ops/max_pool.py): `attrs["window"] =
[kh, kw, sh, sw, top, left, bottom, right, ceil_mode]` (auto_pad already turned into pads).

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
    def __init__(self, layer, window):
        super().__init__(layer)
        self.window = [int(v) for v in window]
        self.kernel_shape, self.strides = self.window[0:2], self.window[2:4]
        self.pads, self.ceil_mode = self.window[4:8], self.window[8]
        self.src_quant = None           # the input's quantizer (the output carries it)

    def out_quant(self):
        return self.src_quant

    def forward(self, x):
        from ...ops.common import out_size

        kh, kw, sh, sw, top, left, bottom, right, ceil = self.window
        h, w = x.shape[2:]
        ho = out_size(h, kh, sh, top, bottom, bool(ceil))
        wo = out_size(w, kw, sw, left, right, bool(ceil))
        # pad with -inf (never the max) to exactly the windows ONNX takes, ceil mode included
        pb = max(bottom, (ho - 1) * sh + kh - h - top)
        pr = max(right, (wo - 1) * sw + kw - w - left)
        if top or left or pb or pr:
            x = F.pad(x, (left, pr, top, pb), value=float("-inf"))
        return F.max_pool2d(x, (kh, kw), (sh, sw))[:, :, :ho, :wo]


class MaxPoolFace(Face):
    kinds = ("maxpool",)

    def build(self, layer, ctx) -> MaxPoolLayer:
        node = ctx.nodes[layer.name]
        if len(node.output) > 1 and node.output[1]:
            raise UnsupportedOpError(layer.name, "MaxPool", "the Indices output")
        m = MaxPoolLayer(layer, layer.attrs["window"])
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
                                kernel_shape=m.kernel_shape, strides=m.strides, pads=m.pads,
                                ceil_mode=m.ceil_mode)

    def export(self, m, p, ctx) -> None:
        ctx.nodes.append(self._node(m, ctx.dq[m.inputs[0]], p.name))
        ctx.nodes += qdq_nodes(p.name, p.name, *ctx.qnames[m.inputs[0]])
        ctx.dq[m.output] = f"{p.name}.dq"
        ctx.qnames[m.output] = ctx.qnames[m.inputs[0]]

    def export_float(self, m, ctx) -> None:
        ctx.nodes.append(self._node(m, ctx.names[m.inputs[0]], m.name))
        ctx.names[m.output] = m.name
