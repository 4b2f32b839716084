"""The activation face (layer kind activation): HardSwish, HardSigmoid, Sigmoid, Tanh,
LeakyRelu (ops/activation.py; the layer's attrs hold `function`, `alpha`, `beta`).

- module `ActivationLayer`: the float function; fake-quantized, the function followed by
  its output quantizer `aq` at the bits of the tensor the output carries (its input's,
  memory.liveness.tensor_sources): PACT (unsigned, zero point 0) for the non-negative
  functions (sigmoid, hard_sigmoid; clip starts at 1.0), `SignedQuant` (INT{Q} symmetric)
  for tanh, hard_swish and leaky_relu;
- calibration: clip a = percentile of f(x) (of |f(x)| when signed), capped at 1.0 for the
  bounded functions;
- LayerQParams: kind activation, input parameters of its input, output of `aq`;
- QDQ export: DQ(x) -> <op> L -> QuantizeLinear L.quant(L.act_scale, L.act_zero_point)
  -> DequantizeLinear L.dequant (the converter makes it one mpq.activation_lut).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from onnx import helper

from ...errors import UnsupportedOpError
from ..fake_quant import PACT_INIT, PACT, SignedQuant
from ..qparams import LayerQParams
from .base import Face, LayerModule, act_qdq, calibrate_clip, quant_info

_ONNX = {"hard_swish": "HardSwish", "hard_sigmoid": "HardSigmoid", "sigmoid": "Sigmoid",
         "tanh": "Tanh", "leaky_relu": "LeakyRelu"}
_BOUNDED = ("sigmoid", "hard_sigmoid", "tanh")


class ActivationLayer(LayerModule):
    def __init__(self, layer):
        super().__init__(layer)
        self.function = layer.attrs["function"]
        self.alpha, self.beta = float(layer.attrs["alpha"]), float(layer.attrs["beta"])
        self.aq = None

    def out_quant(self):
        return self.aq

    def f(self, x):
        fn, a, b = self.function, self.alpha, self.beta
        if fn == "sigmoid":
            return torch.sigmoid(x)
        if fn == "tanh":
            return torch.tanh(x)
        if fn == "hard_sigmoid":
            return torch.clamp(a * x + b, 0.0, 1.0)
        if fn == "hard_swish":
            return x * torch.clamp(a * x + b, 0.0, 1.0)
        return F.leaky_relu(x, a)

    def forward(self, x):
        y = self.f(x)
        return y if self.aq is None else self.aq(y)


class ActivationFace(Face):
    kinds = ("activation",)

    def build(self, layer, ctx) -> ActivationLayer:
        for g in ctx.glue(layer):
            if g.op_type not in ("Identity", "Reshape", "Flatten", "Squeeze"):
                raise UnsupportedOpError(g.name, g.op_type, f"after a {layer.attrs['function']}")
        return ActivationLayer(layer)

    def configure(self, m, q, ctx) -> None:
        bits = ctx.bits[m.output]
        init = 1.0 if m.function in _BOUNDED else PACT_INIT
        m.aq = PACT(bits, init) if m.function in ("sigmoid", "hard_sigmoid") \
            else SignedQuant(bits, init)
        ctx.quant[m.output] = m.aq

    def calibrate(self, m, xs, ctx):
        y = m.f(xs[0])
        ctx.clips[m.name] = calibrate_clip(m.aq, y, ctx.percentile,
                                           1.0 if m.function in _BOUNDED else None)
        return m.aq(y)

    def qparams(self, m, in_quants) -> LayerQParams:
        s_in, z_in, b_in, _ = quant_info(in_quants[0])
        s, z, b, signed = quant_info(m.aq)
        return LayerQParams(m.name, "activation", b_in, s_in, z_in, b, s, z, signed)

    def _node(self, m, x: str, y: str):
        attrs = {}
        if m.function == "hard_sigmoid":
            attrs = {"alpha": m.alpha, "beta": m.beta}
        elif m.function == "leaky_relu":
            attrs = {"alpha": m.alpha}
        return helper.make_node(_ONNX[m.function], [x], [y], name=m.name, **attrs)

    def export(self, m, p, ctx) -> None:
        y = f"{p.name}.act"
        ctx.nodes.append(self._node(m, ctx.dq[m.inputs[0]], y))
        ctx.qnames[m.output] = act_qdq(ctx, p.name, y, p, "act")
        ctx.dq[m.output] = f"{p.name}.dq"

    def export_float(self, m, ctx) -> None:
        ctx.nodes.append(self._node(m, ctx.names[m.inputs[0]], m.name))
        ctx.names[m.output] = m.name
