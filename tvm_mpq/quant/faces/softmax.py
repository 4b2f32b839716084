"""The softmax face (layer kind softmax): Softmax over the last axis of a (1, N) tensor.

- module `SoftmaxLayer`: torch.softmax over dim 1; fake-quantized, the probabilities go
  through `FixedQuant`: signed, scale 2^-bits, zero point -2^(bits-1) at the bits of the
  tensor the output carries (its input's), the convention of CMSIS-NN / TFLite (int8:
  1/256, -128); no calibration (nothing is learned: float training passes the gradient
  straight through inside the range);
- LayerQParams: kind softmax, input parameters of its input, output the fixed ones;
- QDQ export: DQ(x) -> Softmax L (axis -1) -> QuantizeLinear L.quant(L.out_scale,
  L.out_zero_point) -> DequantizeLinear L.dequant (the converter makes it mpq.softmax).
"""

from __future__ import annotations

import torch
from onnx import helper
from torch import nn

from ...errors import UnsupportedOpError
from ...ops.softmax import fixed_output
from ..fake_quant import _RoundSTE
from ..qparams import LayerQParams
from .base import Face, LayerModule, act_qdq, quant_info


class FixedQuant(nn.Module):
    """Signed {bits}-bit output with the fixed scale 2^-bits and zero point -2^(bits-1)."""

    signed = True

    def __init__(self, bits: int):
        super().__init__()
        self.bits = bits
        s, self.zero_point = fixed_output(bits)
        self.register_buffer("s", torch.tensor(s, dtype=torch.float32))

    def scale(self) -> torch.Tensor:
        return self.s

    def forward(self, y):
        z = torch.tensor(float(self.zero_point))
        return _RoundSTE.apply(y, self.s, z, -(1 << (self.bits - 1)),
                               (1 << (self.bits - 1)) - 1)

    def extra_repr(self) -> str:
        return f"bits={self.bits}, fixed scale"


class SoftmaxLayer(LayerModule):
    def __init__(self, layer):
        super().__init__(layer)
        self.oq = None

    def out_quant(self):
        return self.oq

    def forward(self, x):
        y = torch.softmax(x.flatten(1), dim=1)
        return y if self.oq is None else self.oq(y)


class SoftmaxFace(Face):
    kinds = ("softmax",)

    def build(self, layer, ctx) -> SoftmaxLayer:
        for g in ctx.glue(layer):
            if g.op_type not in ("Identity",):
                raise UnsupportedOpError(g.name, g.op_type, "after a softmax")
        return SoftmaxLayer(layer)

    def configure(self, m, q, ctx) -> None:
        m.oq = FixedQuant(ctx.bits[m.output])
        ctx.quant[m.output] = m.oq

    def qparams(self, m, in_quants) -> LayerQParams:
        s_in, z_in, b_in, _ = quant_info(in_quants[0])
        s, z, b, signed = quant_info(m.oq)
        return LayerQParams(m.name, "softmax", b_in, s_in, z_in, b, s, z, signed)

    def export(self, m, p, ctx) -> None:
        y = f"{p.name}.softmax"
        ctx.nodes.append(helper.make_node("Softmax", [ctx.dq[m.inputs[0]]], [y], name=p.name,
                                          axis=-1))
        ctx.qnames[m.output] = act_qdq(ctx, p.name, y, p, "out")
        ctx.dq[m.output] = f"{p.name}.dq"

    def export_float(self, m, ctx) -> None:
        ctx.nodes.append(helper.make_node("Softmax", [ctx.names[m.inputs[0]]], [m.name],
                                          name=m.name, axis=-1))
        ctx.names[m.output] = m.name
