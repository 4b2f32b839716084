"""The mul face (layer kind mul): Mul of two activation tensors, equal shapes or a
per-channel (N, C, 1, 1) tensor broadcast over (N, C, H, W) (squeeze-excite).

- module `MulLayer`: a * b (torch broadcasting); fake-quantized, the product gets its own
  quantizer `aq` at the bits of the tensor the output carries (memory.liveness
  .tensor_sources: the input produced last): PACT when both inputs' quantizers are
  unsigned (the product is non-negative), `SignedQuant` otherwise;
- calibration: clip a = percentile of the product (of |product| when signed);
- LayerQParams: kind mul, input a in `in_*`, input b in `in2_*`, output in `out_*`;
- QDQ export: DQ(a), DQ(b) -> Mul L -> QuantizeLinear L.quant(L.act_scale,
  L.act_zero_point) -> DequantizeLinear L.dequant (the converter makes it one
  mpq.mul_icn).
"""

from __future__ import annotations

from onnx import helper

from ...errors import UnsupportedOpError
from ..fake_quant import PACT_INIT, activation_quant
from ..qparams import LayerQParams
from .base import Face, LayerModule, act_qdq, calibrate_clip, quant_info


class MulLayer(LayerModule):
    def __init__(self, layer):
        super().__init__(layer)
        self.aq = None

    def out_quant(self):
        return self.aq

    def forward(self, a, b):
        y = a * b
        return y if self.aq is None else self.aq(y)


class MulFace(Face):
    kinds = ("mul",)

    def build(self, layer, ctx) -> MulLayer:
        for g in ctx.glue(layer):
            if g.op_type not in ("Identity",):
                raise UnsupportedOpError(g.name, g.op_type, "after a mul")
        return MulLayer(layer)

    def configure(self, m, q, ctx) -> None:
        unsigned = all(not getattr(ctx.quant[t], "signed", True) for t in m.inputs)
        m.aq = activation_quant(ctx.bits[m.output], unsigned, PACT_INIT)
        ctx.quant[m.output] = m.aq

    def calibrate(self, m, xs, ctx):
        y = xs[0] * xs[1]
        ctx.clips[m.name] = calibrate_clip(m.aq, y, ctx.percentile)
        return m.aq(y)

    def qparams(self, m, in_quants) -> LayerQParams:
        s_a, z_a, b_a, _ = quant_info(in_quants[0])
        s_b, z_b, b_b, _ = quant_info(in_quants[1])
        s, z, b, signed = quant_info(m.aq)
        return LayerQParams(m.name, "mul", b_a, s_a, z_a, b, s, z, signed, in2_bits=b_b,
                            in2_scale=s_b, in2_zero_point=z_b)

    def export(self, m, p, ctx) -> None:
        ins = [ctx.dq[t] for t in m.inputs]
        ctx.nodes.append(helper.make_node("Mul", ins, [f"{p.name}.mul"], name=p.name))
        ctx.qnames[m.output] = act_qdq(ctx, p.name, f"{p.name}.mul", p, "act")
        ctx.dq[m.output] = f"{p.name}.dq"

    def export_float(self, m, ctx) -> None:
        ins = [ctx.names[t] for t in m.inputs]
        ctx.nodes.append(helper.make_node("Mul", ins, [m.name], name=m.name))
        ctx.names[m.output] = m.name
