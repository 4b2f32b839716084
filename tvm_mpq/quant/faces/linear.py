"""The linear face (layer kind linear): Gemm (transB 0/1) or MatMul, (+ BatchNormalization,
folded into the weights) (+ Relu | Clip).

- module `LinearLayer`: weight [out, in], float bias (zeros when the model has none);
  the input is flattened first when it is a feature map (the Reshape / Flatten the
  frontend folds into the producing layer);
- output quantizer: the network output (the logits) gets `oq`, INT8 symmetric with the
  calibrated max |logit| (`LogitQuant`, passes through while training); a hidden linear
  gets `aq`: PACT after a ReLU, `SignedQuant` without one;
- calibration: weight bounds = min/max; logits: max |y|; hidden: percentile clip;
- QDQ export: [Reshape <flatten>(flatten.shape) ->] DQ(L.weight_q) -> Gemm L (transB=1,
  float bias L.bias) [-> Relu L.relu] -> Q(L.out_scale, L.out_zero_point: INT8 0) -> DQ
  (`act_scale` / `act_zero_point` for a hidden layer).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from onnx import helper
from torch import nn

from ...errors import UnsupportedOpError
from ..fake_quant import (
    PACT_INIT,
    LearnedClipWeightQuant,
    LogitQuant,
    activation_quant,
    weight_quant,
)
from .base import (
    Face,
    LayerModule,
    act_qdq,
    calibrate_clip,
    export_weights,
    f32,
    float_activation,
    read_activation,
    weight_qparams,
)

_FLATTEN_OPS = ("Reshape", "Flatten", "Squeeze")


class LinearLayer(LayerModule):
    """A fully connected layer (weight [out, in])."""

    has_weights = True

    def __init__(self, layer, weight: np.ndarray, bias: np.ndarray | None):
        super().__init__(layer)
        self.weight = nn.Parameter(torch.from_numpy(np.array(weight, np.float32)))
        n_out = self.weight.shape[0]
        self.bias = nn.Parameter(torch.from_numpy(
            np.zeros(n_out, np.float32) if bias is None else np.array(bias, np.float32)))
        self.act: str | None = None
        self.act_name: str | None = None
        self.clip_max: float | None = None
        self.flatten_name: str | None = None    # the flatten before it, if its input is 4-D
        self.wq: nn.Module | None = None
        self.oq: nn.Module | None = None        # symmetric int8 logits (network output)
        self.aq: nn.Module | None = None        # hidden layer: PACT or signed

    @property
    def out_channels(self) -> int:
        return self.weight.shape[0]

    def out_quant(self):
        return self.oq if self.oq is not None else self.aq

    def preact(self, x):
        if x.dim() > 2:
            x = x.flatten(1)
        w = self.wq(self.weight) if self.wq is not None else self.weight
        return F.linear(x, w, self.bias)

    def forward(self, x):
        y = self.preact(x)
        q = self.out_quant()
        if q is not None:
            return q(y)
        if self.act == "relu":
            return F.relu(y)
        if self.act == "clip":
            return torch.clamp(y, 0.0, self.clip_max)
        return y


class LinearFace(Face):
    kinds = ("linear",)

    def build(self, layer, ctx) -> LinearLayer:
        node = ctx.nodes[layer.name]
        name, op, at = node.name, node.op_type, ctx.attrs(node)
        w = ctx.const(node.input[1], node)
        if op == "Gemm":
            if at.get("transA", 0) or at.get("alpha", 1.0) != 1.0 or at.get("beta", 1.0) != 1.0:
                raise UnsupportedOpError(name, op, "transA/alpha/beta other than defaults")
            w = w if at.get("transB", 0) else w.T
            b = ctx.const(node.input[2], node) if len(node.input) > 2 and node.input[2] else None
        else:                                   # MatMul: x @ W, W [in, out]
            w, b = w.T, None
        if b is not None and b.shape != (w.shape[0],):
            raise UnsupportedOpError(name, op, f"bias of shape {b.shape}")
        m = LinearLayer(layer, w, b)
        for g in ctx.glue(layer):
            if g.op_type in ("Relu", "Clip"):
                read_activation(m, g, ctx)
            elif g.op_type == "BatchNormalization" and m.act is None:
                _fold_batch_norm(m, g, ctx)
            elif g.op_type not in _FLATTEN_OPS + ("Identity",):
                raise UnsupportedOpError(g.name, g.op_type, "after a fully connected layer")
        src = ctx.producers.get(layer.inputs[0])
        shape = src.out_shape if src is not None else ctx.graph.input_shape
        if len(shape) > 2:
            glue = [n for n in (src.nodes if src is not None else [])
                    if ctx.nodes[n].op_type in _FLATTEN_OPS]
            m.flatten_name = glue[-1] if glue else "flatten"
        return m

    def configure(self, m, q, ctx) -> None:
        if m.output == ctx.output and m.act is None:
            m.oq = LogitQuant(q.out_bits)
        else:
            m.aq = activation_quant(q.out_bits, m.act is not None,
                                    m.clip_max if m.act == "clip" else PACT_INIT)
        m.wq = weight_quant(q, m.weight)
        ctx.quant[m.output] = m.out_quant()

    def calibrate(self, m, xs, ctx):
        if ctx.reset_weights and isinstance(m.wq, LearnedClipWeightQuant):
            m.wq.w_min.copy_(torch.clamp(m.weight.min(), max=0.0))
            m.wq.w_max.copy_(torch.clamp(m.weight.max(), min=0.0))
        y = m.preact(xs[0])
        if m.oq is not None:
            m.oq.absmax.copy_(torch.clamp(y.abs().max(), min=1e-6))
            ctx.clips[m.name] = float(m.oq.absmax)
            return m.oq(y)
        ctx.clips[m.name] = calibrate_clip(m.aq, y, ctx.percentile,
                                           m.clip_max if m.act == "clip" else None)
        return m.aq(y)

    def qparams(self, m, in_quants):
        return weight_qparams(m, in_quants[0], m.out_quant(), m.weight, m.bias)

    def export(self, m, p, ctx) -> None:
        x = ctx.dq[m.inputs[0]]
        if m.flatten_name is not None:
            x = _flatten(ctx, m.flatten_name, x, int(p.w_q.shape[1]))
        ins = [x, export_weights(p, ctx)]
        if p.bias is not None:
            ctx.inits.append(f32(f"{p.name}.bias", p.bias))
            ins.append(f"{p.name}.bias")
        ctx.nodes.append(helper.make_node("Gemm", ins, [f"{p.name}.gemm"], name=p.name,
                                          transB=1))
        y = f"{p.name}.gemm"
        if m.act is not None:
            ctx.nodes.append(helper.make_node("Relu", [y], [f"{p.name}.relu"],
                                              name=f"{p.name}.relu"))
            y = f"{p.name}.relu"
        ctx.qnames[m.output] = act_qdq(ctx, p.name, y, p, "out" if m.oq is not None else "act")
        ctx.dq[m.output] = f"{p.name}.dq"

    def export_float(self, m, ctx) -> None:
        x = ctx.names[m.inputs[0]]
        if m.flatten_name is not None:
            x = _flatten(ctx, m.flatten_name, x, int(m.weight.shape[1]))
        ins = [x, ctx.init(f"{m.name}.weight", m.weight.detach().numpy()),
               ctx.init(f"{m.name}.bias", m.bias.detach().numpy())]
        ctx.nodes.append(helper.make_node("Gemm", ins, [f"{m.name}.gemm"], name=m.name,
                                          transB=1))
        ctx.names[m.output] = float_activation(m, f"{m.name}.gemm", ctx)


@torch.no_grad()
def _fold_batch_norm(m: LinearLayer, node, ctx) -> None:
    """A BatchNormalization on the (1, N) output, folded into the weights and the bias with
    its running statistics: W' = W * gamma / sigma, b' = (b - mean) * gamma / sigma + beta
    (exact in eval mode; the twin then trains the folded layer)."""
    gamma, beta, mean, var = (np.asarray(ctx.const(t, node), np.float64)
                              for t in node.input[1:5])
    eps = float(ctx.attrs(node).get("epsilon", 1e-5))
    k = gamma / np.sqrt(var + eps)
    w = m.weight.detach().numpy().astype(np.float64) * k[:, None]
    b = (m.bias.detach().numpy().astype(np.float64) - mean) * k + beta
    m.weight.copy_(torch.from_numpy(w.astype(np.float32)))
    m.bias.copy_(torch.from_numpy(b.astype(np.float32)))


def _flatten(ctx, node_name: str, x: str, features: int) -> str:
    """Reshape `x` to [batch or -1, features] (initializer `flatten.shape`, output `flat`
    for the model's first flatten)."""
    first = "flat" not in ctx.used
    out, shape = ("flat", "flatten.shape") if first else (f"{node_name}.flat",
                                                          f"{node_name}.shape")
    ctx.used.add(out)
    ctx.init(shape, np.array([ctx.batch or -1, features], np.int64))
    ctx.nodes.append(helper.make_node("Reshape", [x, shape], [out], name=node_name))
    return out
