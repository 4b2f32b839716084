"""The concat face (layer kind concat): Concat of two or more activation tensors on the
channel axis (NCHW axis 1).

- module `ConcatLayer`: torch.cat on dim 1; fake-quantized, the result gets its own
  quantizer `aq` at the bits of the tensor the output carries (memory.liveness
  .tensor_sources: the input produced last): PACT when every input's quantizer is
  unsigned, `SignedQuant` otherwise (the converter requantizes each input whose scale
  differs, copies the others);
- calibration: clip a = percentile of the concatenation (of |.| when signed);
- LayerQParams: kind concat, the first input in `in_*`, the output in `out_*`;
- QDQ export: DQ(x_0), ..., DQ(x_k) -> Concat L (axis 1) -> QuantizeLinear
  L.quant(L.act_scale, L.act_zero_point) -> DequantizeLinear L.dequant (one mpq.concat).
"""

from __future__ import annotations

import torch
from onnx import helper

from ...errors import UnsupportedOpError
from ..fake_quant import PACT_INIT, activation_quant
from ..qparams import LayerQParams
from .base import Face, LayerModule, act_qdq, calibrate_clip, quant_info


class ConcatLayer(LayerModule):
    def __init__(self, layer):
        super().__init__(layer)
        self.aq = None

    def out_quant(self):
        return self.aq

    def forward(self, *xs):
        y = torch.cat(xs, dim=1)
        return y if self.aq is None else self.aq(y)


class ConcatFace(Face):
    kinds = ("concat",)

    def build(self, layer, ctx) -> ConcatLayer:
        for g in ctx.glue(layer):
            if g.op_type not in ("Identity",):
                raise UnsupportedOpError(g.name, g.op_type, "after a concat")
        return ConcatLayer(layer)

    def configure(self, m, q, ctx) -> None:
        unsigned = all(not getattr(ctx.quant[t], "signed", True) for t in m.inputs)
        m.aq = activation_quant(ctx.bits[m.output], unsigned, PACT_INIT)
        ctx.quant[m.output] = m.aq

    def calibrate(self, m, xs, ctx):
        y = torch.cat(xs, dim=1)
        ctx.clips[m.name] = calibrate_clip(m.aq, y, ctx.percentile)
        return m.aq(y)

    def qparams(self, m, in_quants) -> LayerQParams:
        s_a, z_a, b_a, _ = quant_info(in_quants[0])
        s, z, b, signed = quant_info(m.aq)
        return LayerQParams(m.name, "concat", b_a, s_a, z_a, b, s, z, signed)

    def export(self, m, p, ctx) -> None:
        ins = [ctx.dq[t] for t in m.inputs]
        ctx.nodes.append(helper.make_node("Concat", ins, [f"{p.name}.cat"], name=p.name,
                                          axis=1))
        ctx.qnames[m.output] = act_qdq(ctx, p.name, f"{p.name}.cat", p, "act")
        ctx.dq[m.output] = f"{p.name}.dq"

    def export_float(self, m, ctx) -> None:
        ins = [ctx.names[t] for t in m.inputs]
        ctx.nodes.append(helper.make_node("Concat", ins, [m.name], name=m.name, axis=1))
        ctx.names[m.output] = m.name
