"""The residual-add face (layer kind add): Add of two activation tensors (+ Relu).

- module `AddLayer`: a + b, then ReLU when the model has one after the add;
  fake-quantized, the sum gets its own quantizer `aq` at the bits of the tensor the add's
  output carries (memory.liveness.tensor_sources: the input produced last): PACT when a
  ReLU follows the add, `SignedQuant` (INT{Q} symmetric) otherwise;
- calibration: clip a = percentile of the sum (of |sum| when signed);
- LayerQParams: kind add, input a in `in_*`, input b in `in2_*`, output in `out_*`;
- QDQ export: DQ(a), DQ(b) -> Add L -> [Relu L.relu] -> QuantizeLinear L.quant(
  L.act_scale, L.act_zero_point) -> DequantizeLinear L.dequant (the converter makes it
  one mpq.add_icn).
"""

from __future__ import annotations

import torch.nn.functional as F
from onnx import helper

from ...errors import UnsupportedOpError
from ..fake_quant import PACT_INIT, activation_quant
from ..qparams import LayerQParams
from .base import Face, LayerModule, act_qdq, calibrate_clip, quant_info


class AddLayer(LayerModule):
    def __init__(self, layer):
        super().__init__(layer)
        self.relu = False
        self.relu_name: str | None = None
        self.aq = None

    def out_quant(self):
        return self.aq

    def preact(self, a, b):
        return a + b

    def forward(self, a, b):
        y = self.preact(a, b)
        if self.aq is not None:
            return self.aq(y)
        return F.relu(y) if self.relu else y


class AddFace(Face):
    kinds = ("add",)

    def build(self, layer, ctx) -> AddLayer:
        if len(layer.inputs) != 2:
            raise UnsupportedOpError(layer.name, "Add", f"{len(layer.inputs)} inputs")
        m = AddLayer(layer)
        for g in ctx.glue(layer):
            if g.op_type == "Relu" and not m.relu:
                m.relu, m.relu_name = True, g.name
            elif g.op_type not in ("Identity", "Reshape", "Flatten", "Squeeze"):
                raise UnsupportedOpError(g.name, g.op_type, "after a residual add (only Relu)")
        return m

    def configure(self, m, q, ctx) -> None:
        m.aq = activation_quant(ctx.bits[m.output], m.relu, PACT_INIT)
        ctx.quant[m.output] = m.aq

    def calibrate(self, m, xs, ctx):
        y = m.preact(*xs)
        ctx.clips[m.name] = calibrate_clip(m.aq, y, ctx.percentile)
        return m.aq(y)

    def qparams(self, m, in_quants) -> LayerQParams:
        s_a, z_a, b_a, _ = quant_info(in_quants[0])
        s_b, z_b, b_b, _ = quant_info(in_quants[1])
        s, z, b, signed = quant_info(m.aq)
        return LayerQParams(m.name, "add", b_a, s_a, z_a, b, s, z, signed, in2_bits=b_b,
                            in2_scale=s_b, in2_zero_point=z_b)

    def export(self, m, p, ctx) -> None:
        ins = [ctx.dq[t] for t in m.inputs]
        ctx.nodes.append(helper.make_node("Add", ins, [f"{p.name}.add"], name=p.name))
        y = f"{p.name}.add"
        if m.relu:
            ctx.nodes.append(helper.make_node("Relu", [y], [f"{p.name}.relu"],
                                              name=f"{p.name}.relu"))
            y = f"{p.name}.relu"
        ctx.qnames[m.output] = act_qdq(ctx, p.name, y, p, "act")
        ctx.dq[m.output] = f"{p.name}.dq"

    def export_float(self, m, ctx) -> None:
        ins = [ctx.names[t] for t in m.inputs]
        ctx.nodes.append(helper.make_node("Add", ins, [f"{m.name}.add"], name=m.name))
        y = f"{m.name}.add"
        if m.relu:
            ctx.nodes.append(helper.make_node("Relu", [y], [f"{m.name}.out"],
                                              name=m.relu_name or f"{m.name}.relu"))
            y = f"{m.name}.out"
        ctx.names[m.output] = y
