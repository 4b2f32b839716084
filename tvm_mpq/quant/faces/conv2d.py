"""The conv face (layer kinds conv, depthwise, pointwise): Conv (+ BatchNormalization)
(+ Relu | Clip(0, M)).

- module `ConvLayer`: float forward; fake-quant forward with the weight quantizer `wq`,
  batch-norm kept (ICN) or folded into the weights (`fold`), and the output quantizer
  `aq`: PACT after a ReLU / Clip, `SignedQuant` (INT{Q} symmetric) when the conv has no
  activation (a conv-BN feeding a residual add);
- build: weights, bias, batch-norm and activation from the layer's ONNX nodes;
- calibration: weight bounds = min/max of the (folded) weights, clip a = percentile of
  the pre-activations (of |y| when signed), capped at the Clip bound;
- QDQ export (docs/quantization.md, section 2):
      DQ(L.weight_q) -> Conv L [bias] -> [BatchNormalization L.bn] -> [Relu L.relu]
          -> QuantizeLinear L.quant(L.act_scale, L.act_zero_point) -> DequantizeLinear
  (no Relu for a signed output).

Geometry (the layer's attrs, ops/conv2d.py): kernel (kh, kw), strides (sh, sw), pads (t, l,
b, r), groups. A square, symmetric conv runs F.conv2d(x, w, b, stride, pad, 1, groups) as
always; other pads are F.pad with zeros before an unpadded F.conv2d; the export writes
kernel_shape, strides, pads [t, l, b, r] and group explicitly.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from onnx import helper
from torch import nn

from ...errors import ModelError, UnsupportedOpError
from ..fake_quant import PACT_INIT, LearnedClipWeightQuant, activation_quant, weight_quant
from ..qparams import LayerQParams
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

_SHAPE_GLUE = ("Reshape", "Flatten", "Squeeze", "Identity")


def _np(t: torch.Tensor) -> np.ndarray:
    return t.detach().cpu().numpy()


class ConvLayer(LayerModule):
    """Conv (+ BatchNorm) (+ ReLU or ReLU6-style clip), optionally fake-quantized."""

    has_weights = True

    def __init__(self, layer, weight: np.ndarray, bias: np.ndarray | None, stride: int,
                 pad: int, groups: int, geo: tuple | None = None):
        super().__init__(layer)
        kh, kw = weight.shape[2:]
        # (kh, kw, sh, sw, pt, pl, pb, pr)
        self.geo = tuple(int(v) for v in geo) if geo is not None else \
            (kh, kw, stride, stride, pad, pad, pad, pad)
        self.weight = nn.Parameter(torch.from_numpy(np.array(weight, np.float32)))
        self.bias = None if bias is None else nn.Parameter(torch.from_numpy(
            np.array(bias, np.float32)))
        self.stride, self.pad, self.groups = stride, pad, groups
        self.bn: nn.BatchNorm2d | None = None
        self.bn_name: str | None = None
        self.act: str | None = None          # None, "relu" or "clip"
        self.act_name: str | None = None
        self.clip_max: float | None = None
        # fake quantization (ConvFace.configure)
        self.wq: nn.Module | None = None
        self.aq: nn.Module | None = None
        self.fold = False
        self.bn_frozen = False

    @property
    def out_channels(self) -> int:
        return self.weight.shape[0]

    def out_quant(self):
        return self.aq

    def freeze_bn(self) -> None:
        self.bn_frozen = True

    def set_bn(self, name: str, gamma, beta, mean, var, eps: float) -> None:
        c = self.out_channels
        bn = nn.BatchNorm2d(c, eps=eps, momentum=0.1)
        with torch.no_grad():
            for t, v in ((bn.weight, gamma), (bn.bias, beta), (bn.running_mean, mean),
                         (bn.running_var, var)):
                v = np.array(v, np.float32)
                if v.shape != (c,):
                    raise ModelError(f"batch-norm '{name}': parameter of shape {v.shape}, "
                                     f"expected ({c},)")
                t.copy_(torch.from_numpy(v))
        self.bn, self.bn_name = bn, name

    def conv(self, x, w, b=None):
        _, _, sh, sw, pt, pl, pb, pr = self.geo
        if sh == sw and pt == pl == pb == pr:
            return F.conv2d(x, w, b, self.stride, self.pad, 1, self.groups)
        if pt == pb and pl == pr:
            return F.conv2d(x, w, b, (sh, sw), (pt, pl), 1, self.groups)
        return F.conv2d(F.pad(x, (pl, pr, pt, pb)), w, b, (sh, sw), 0, 1, self.groups)

    def onnx_attrs(self) -> dict:
        """The Conv node's geometry attributes (the export's)."""
        kh, kw, sh, sw, *pads = self.geo
        return dict(kernel_shape=[kh, kw], strides=[sh, sw], pads=list(pads),
                    group=int(self.groups))

    def folded(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Batch-norm folded into the weights: W' = W*gamma/sigma, b' = beta - mu*gamma/sigma
        (plus the conv's own bias, scaled), with the running statistics."""
        bn = self.bn
        k = bn.weight / torch.sqrt(bn.running_var + bn.eps)
        w = self.weight * k.reshape(-1, 1, 1, 1)
        b0 = self.bias if self.bias is not None else torch.zeros_like(bn.running_mean)
        return w, bn.bias + (b0 - bn.running_mean) * k

    def preact(self, x):
        """The layer up to (not including) its activation: conv (+ batch-norm)."""
        if self.fold and self.bn is not None:
            if self.training and not self.bn_frozen:
                with torch.no_grad():  # update the running statistics from the float conv
                    F.batch_norm(self.conv(x, self.weight, self.bias), self.bn.running_mean,
                                 self.bn.running_var, None, None, True, self.bn.momentum,
                                 self.bn.eps)
            w, b = self.folded()
            y = self.conv(x, self.wq(w) if self.wq is not None else w, b)
        else:
            w = self.wq(self.weight) if self.wq is not None else self.weight
            y = self.conv(x, w, self.bias)
            if self.bn is not None:
                frozen = self.bn_frozen or not self.training
                y = F.batch_norm(y, self.bn.running_mean, self.bn.running_var, self.bn.weight,
                                 self.bn.bias, not frozen, self.bn.momentum, self.bn.eps)
        return y

    def forward(self, x):
        y = self.preact(x)
        if self.aq is not None:
            return self.aq(y)           # PACT: clamp to [0, a] and quantize; or signed
        if self.act == "relu":
            return F.relu(y)
        if self.act == "clip":
            return torch.clamp(y, 0.0, self.clip_max)
        return y


class ConvFace(Face):
    kinds = ("conv", "depthwise", "pointwise")

    def build(self, layer, ctx) -> ConvLayer:
        node = ctx.nodes[layer.name]
        name, at = node.name, ctx.attrs(node)
        w = ctx.const(node.input[1], node)
        b = ctx.const(node.input[2], node) if len(node.input) > 2 and node.input[2] else None
        if w.ndim != 4:
            raise UnsupportedOpError(name, "Conv", f"weights {w.shape}: only 2-D kernels")
        if any(d != 1 for d in at.get("dilations", [1, 1])):
            raise UnsupportedOpError(name, "Conv", "dilations")
        geo = layer.attrs.get("kernel_hw", list(w.shape[2:])) + \
            layer.attrs.get("strides", [layer.stride] * 2) + \
            layer.attrs.get("pads", [layer.pad] * 4)
        m = ConvLayer(layer, w, b, int(geo[2]), int(geo[4]), int(at.get("group", 1)), geo)
        for g in ctx.glue(layer):
            op = g.op_type
            if op == "BatchNormalization":
                if m.bn is not None or m.act is not None:
                    raise UnsupportedOpError(g.name, op, "batch-norm must directly follow a conv")
                if ctx.attrs(g).get("training_mode", 0):
                    raise UnsupportedOpError(g.name, op, "training_mode=1")
                gamma, beta, mean, var = (ctx.const(t, g) for t in g.input[1:5])
                m.set_bn(g.name, gamma, beta, mean, var, float(ctx.attrs(g).get("epsilon", 1e-5)))
            elif op in ("Relu", "Clip"):
                read_activation(m, g, ctx)
            elif op not in _SHAPE_GLUE:
                raise UnsupportedOpError(g.name, op, "in a float model to train or quantize")
        return m

    def configure(self, m, q, ctx) -> None:
        m.fold = (not q.icn) and m.bn is not None
        w0 = m.folded()[0] if m.fold else m.weight
        m.aq = activation_quant(q.out_bits, m.act is not None,
                                m.clip_max if m.act == "clip" else PACT_INIT)
        m.wq = weight_quant(q, w0)
        ctx.quant[m.output] = m.aq

    def calibrate(self, m, xs, ctx):
        if ctx.reset_weights and isinstance(m.wq, LearnedClipWeightQuant):
            w = m.folded()[0] if m.fold else m.weight
            m.wq.w_min.copy_(torch.clamp(w.min(), max=0.0))
            m.wq.w_max.copy_(torch.clamp(w.max(), min=0.0))
        y = m.preact(xs[0])
        ctx.clips[m.name] = calibrate_clip(m.aq, y, ctx.percentile,
                                           m.clip_max if m.act == "clip" else None)
        return m.aq(y)

    def qparams(self, m, in_quants) -> LayerQParams:
        w, bias = m.folded() if m.fold else (m.weight, m.bias)
        p = weight_qparams(m, in_quants[0], m.aq, w, bias)
        p.stride, p.pad, p.groups = m.stride, m.pad, m.groups
        p.icn = not m.fold and m.bn is not None
        if p.icn:
            bn = m.bn
            p.bn_gamma, p.bn_beta = _np(bn.weight), _np(bn.bias)
            p.bn_mean, p.bn_var, p.bn_eps = _np(bn.running_mean), _np(bn.running_var), bn.eps
        return p

    def export(self, m, p, ctx) -> None:
        ins = [ctx.dq[m.inputs[0]], export_weights(p, ctx)]
        if p.bias is not None:
            ctx.inits.append(f32(f"{p.name}.bias", p.bias))
            ins.append(f"{p.name}.bias")
        ctx.nodes.append(helper.make_node("Conv", ins, [f"{p.name}.conv"], name=p.name,
                                          **m.onnx_attrs()))
        y = f"{p.name}.conv"
        if p.icn:
            bn_ins = [y]
            for s, v in (("gamma", p.bn_gamma), ("beta", p.bn_beta), ("mean", p.bn_mean),
                         ("var", p.bn_var)):
                ctx.inits.append(f32(f"{p.name}.bn.{s}", v))
                bn_ins.append(f"{p.name}.bn.{s}")
            ctx.nodes.append(helper.make_node("BatchNormalization", bn_ins, [f"{p.name}.bn"],
                                              name=f"{p.name}.bn", epsilon=float(p.bn_eps)))
            y = f"{p.name}.bn"
        if not p.out_signed:
            ctx.nodes.append(helper.make_node("Relu", [y], [f"{p.name}.relu"],
                                              name=f"{p.name}.relu"))
            y = f"{p.name}.relu"
        ctx.qnames[m.output] = act_qdq(ctx, p.name, y, p, "act")
        ctx.dq[m.output] = f"{p.name}.dq"

    def export_float(self, m, ctx) -> None:
        ins = [ctx.names[m.inputs[0]], ctx.init(f"{m.name}.weight", _np(m.weight))]
        if m.bias is not None:
            ins.append(ctx.init(f"{m.name}.bias", _np(m.bias)))
        ctx.nodes.append(helper.make_node("Conv", ins, [f"{m.name}.conv"], name=m.name,
                                          **m.onnx_attrs()))
        x = f"{m.name}.conv"
        if m.bn is not None:
            bn = m.bn
            ins = [x] + [ctx.init(f"{m.name}.bn.{s}", _np(t)) for s, t in (
                ("gamma", bn.weight), ("beta", bn.bias), ("mean", bn.running_mean),
                ("var", bn.running_var))]
            ctx.nodes.append(helper.make_node("BatchNormalization", ins, [f"{m.name}.bn"],
                                              name=m.bn_name or f"{m.name}.bn", epsilon=bn.eps))
            x = f"{m.name}.bn"
        ctx.names[m.output] = float_activation(m, x, ctx)
