"""What every operator face shares: the `Face` interface, the contexts the generic code
hands to it, the layer module's base class and the ONNX helpers of the exports.

A face is the quant side of one operator family (faces/__init__.py lists them). The
generic code (torch_model, fake_quant.configure, calibrate, qparams, export_qdq) walks the
layers in the LayerGraph's order and calls the face of each layer's kind; tensors are
keyed by the LayerGraph's activation tensor ids (`Layer.inputs`, `Layer.output`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import onnx
from onnx import helper, numpy_helper
from torch import nn

from ...errors import UnsupportedOpError
from ..qparams import QTYPES, LayerQParams

# ---------------------------------------------------------------- contexts


@dataclass
class BuildCtx:
    """ONNX model -> modules: the model's constants and nodes, and its LayerGraph."""
    graph: object                                   # frontend.graph.LayerGraph
    consts: dict[str, np.ndarray]                   # initializers and Constant outputs
    nodes: dict[str, onnx.NodeProto]                # by name (the LayerGraph's names)
    producers: dict[str, object] = field(default_factory=dict)  # tensor id -> Layer

    def attrs(self, node) -> dict:
        return {a.name: helper.get_attribute_value(a) for a in node.attribute}

    def const(self, name: str, node) -> np.ndarray:
        from ...errors import UnsupportedOpError

        if name not in self.consts:
            raise UnsupportedOpError(node.name, node.op_type, f"'{name}' is not a constant")
        return self.consts[name]

    def glue(self, layer) -> list[onnx.NodeProto]:
        """The ONNX nodes folded into `layer` after its compute node."""
        return [self.nodes[n] for n in layer.nodes[1:]]


@dataclass
class QuantCtx:
    """Configuration: the plan's LayerQ per weight layer, the bits of every tensor
    (liveness.tensor_sources) and the quantizer that produced every tensor so far."""
    cfg: dict                                        # layer name -> qplan.LayerQ
    bits: dict[str, int]                             # tensor id -> bits
    quant: dict[str, nn.Module]                      # tensor id -> its quantizer
    output: str = ""                                 # the network output's tensor id


@dataclass
class CalibCtx:
    percentile: float
    reset_weights: bool
    clips: dict[str, float] = field(default_factory=dict)   # layer name -> clip / absmax


class _Init:
    """`init(name, array)`: append an initializer, return its name."""

    def init(self, name: str, arr) -> str:
        self.inits.append(numpy_helper.from_array(np.asarray(arr), name))
        return name


@dataclass
class ExportCtx(_Init):
    """QDQ export: the node and initializer lists being written, and per tensor id the
    name of its dequantized ONNX tensor and of its (scale, zero point) initializers."""
    batch: int | None
    nodes: list = field(default_factory=list)
    inits: list = field(default_factory=list)
    dq: dict[str, str] = field(default_factory=dict)
    qnames: dict[str, tuple[str, str]] = field(default_factory=dict)
    used: set[str] = field(default_factory=set)      # tensor names taken (flatten)


@dataclass
class FloatCtx(_Init):
    """Float export: node and initializer lists, ONNX tensor name per tensor id."""
    batch: int | None
    nodes: list = field(default_factory=list)
    inits: list = field(default_factory=list)
    names: dict[str, str] = field(default_factory=dict)
    used: set[str] = field(default_factory=set)


# ---------------------------------------------------------------- modules and faces


class LayerModule(nn.Module):
    """Base of every face's module: one layer of the LayerGraph. `inputs` / `output` are
    the layer's activation tensor ids; `forward(*inputs)` is the float forward, or the
    fake-quant forward once the face's `configure` attached quantizers."""

    has_weights = False

    def __init__(self, layer):
        super().__init__()
        self.name, self.kind = layer.name, layer.kind
        self.inputs, self.output = list(layer.inputs), layer.output
        self.out_shape = tuple(layer.out_shape)

    @property
    def out_channels(self) -> int:
        return self.out_shape[1]

    def out_quant(self) -> nn.Module | None:
        """The quantizer whose scale / zero point / type the output tensor carries."""
        return None

    def freeze_bn(self) -> None:
        """Stop updating batch-norm statistics (QAT after its first epoch)."""


class Face:
    """The quant side of one operator family. Methods (all but `build` optional):

    build(layer, ctx: BuildCtx) -> LayerModule
        the float module from the layer's ONNX nodes (weights, batch-norm, activation).
    configure(m, q, ctx: QuantCtx)
        attach the plan's quantizers (`q`: qplan.LayerQ for weight layers, else None) and
        set `ctx.quant[m.output]`.
    calibrate(m, xs, ctx: CalibCtx) -> tensor
        post-training calibration of m's quantizers on the (fake-quantized) inputs `xs`;
        returns the fake-quantized output. Default: forward.
    qparams(m, in_quants) -> LayerQParams | None
        the integer parameters (`in_quants`: the quantizers of m's input tensors).
    export(m, p, ctx: ExportCtx)
        write the QDQ nodes and initializers of the layer (`p`: its qparams), set
        `ctx.dq[m.output]` and `ctx.qnames[m.output]`.
    export_float(m, ctx: FloatCtx)
        write the float ONNX nodes, set `ctx.names[m.output]`.
    """

    kinds: tuple[str, ...] = ()

    def build(self, layer, ctx: BuildCtx) -> LayerModule:
        raise NotImplementedError

    def configure(self, m, q, ctx: QuantCtx) -> None:
        ctx.quant[m.output] = m.out_quant()

    def calibrate(self, m, xs, ctx: CalibCtx):
        return m(*xs)

    def qparams(self, m, in_quants):
        return None

    def export(self, m, p, ctx: ExportCtx) -> None:
        raise NotImplementedError

    def export_float(self, m, ctx: FloatCtx) -> None:
        raise NotImplementedError


# ---------------------------------------------------------------- ONNX helpers


def int_tensor(name: str, values: np.ndarray, bits: int, signed: bool = False):
    """Integers as an initializer of the real ONNX type; sub-byte types are stored packed
    (raw_data, element 0 in the lowest bits, as the project's kernels pack them)."""
    np_type = helper.tensor_dtype_to_np_dtype(QTYPES[(bits, signed)])
    return numpy_helper.from_array(np.asarray(values).astype(np.int64).astype(np_type), name)


def f32(name: str, value) -> onnx.TensorProto:
    return numpy_helper.from_array(np.asarray(value, np.float32), name)


def qdq_nodes(name: str, x: str, scale: str, zero_point: str) -> list[onnx.NodeProto]:
    """QuantizeLinear `{name}.quant` -> `{name}.q`, DequantizeLinear `{name}.dequant` ->
    `{name}.dq`."""
    return [helper.make_node("QuantizeLinear", [x, scale, zero_point], [f"{name}.q"],
                             name=f"{name}.quant"),
            helper.make_node("DequantizeLinear", [f"{name}.q", scale, zero_point],
                             [f"{name}.dq"], name=f"{name}.dequant")]


def act_qdq(ctx: ExportCtx, name: str, y: str, p, prefix: str = "act") -> tuple[str, str]:
    """Q -> DQ of layer `name`'s output `y` with its own scale / zero point initializers
    `{name}.{prefix}_scale`, `{name}.{prefix}_zero_point` (p: the layer's LayerQParams)."""
    sname, zname = f"{name}.{prefix}_scale", f"{name}.{prefix}_zero_point"
    ctx.inits += [f32(sname, p.out_scale),
                  int_tensor(zname, np.array(p.out_zero_point), p.out_bits, p.out_signed)]
    ctx.nodes += qdq_nodes(name, y, sname, zname)
    return sname, zname


def quant_info(q) -> tuple[np.float32, int, int, bool]:
    """(scale, zero point, bits, signed) of a quantizer module."""
    return (np.float32(q.scale().detach().cpu().numpy()), int(q.zero_point), int(q.bits),
            bool(q.signed))


def percentile(y, pct: float, seed: int = 0, max_values: int = 1 << 24) -> float:
    """The `pct` percentile of the values of `y` (100 = max); beyond `max_values` values a
    fixed random subsample keeps it fast."""
    import torch

    v = y.detach().reshape(-1)
    if pct >= 100.0:
        return float(v.max())
    if v.numel() > max_values:
        g = torch.Generator().manual_seed(seed)
        v = v[torch.randint(v.numel(), (max_values,), generator=g)]
    return float(np.percentile(v.numpy(), pct))


def calibrate_clip(q, y, pct: float, cap: float | None = None) -> float:
    """Set the clip `a` of a PACT / SignedQuant `q` from pre-activations `y`: the
    percentile of y (PACT) or of |y| (signed), capped at `cap`, at least 1e-2."""
    import torch

    a = percentile(y.abs() if q.signed else y, pct)
    if cap is not None:
        a = min(a, cap)
    a = max(a, 1e-2)
    q.a.copy_(torch.tensor(a))
    return a


# ---------------------------------------------------------------- weight layers (conv, linear)

def _np(t) -> np.ndarray:
    return t.detach().cpu().numpy()


def read_activation(m, node, ctx) -> None:
    """Relu / Clip(0, M) glue node -> m.act, m.act_name, m.clip_max (conv and linear)."""
    name, op = node.name, node.op_type
    if m.act is not None:
        raise UnsupportedOpError(name, op, "a second activation after the layer")
    if op == "Clip":
        lo = ctx.const(node.input[1], node).item() if len(node.input) > 1 and node.input[1] \
            else -np.inf
        hi = ctx.const(node.input[2], node).item() if len(node.input) > 2 and node.input[2] \
            else np.inf
        if lo != 0.0 or not np.isfinite(hi) or hi <= 0:
            raise UnsupportedOpError(name, op, f"Clip({lo}, {hi}): only Clip(0, M) "
                                     "with 0 < M < inf (ReLU6-like)")
        m.act, m.clip_max = "clip", hi
    else:
        m.act = "relu"
    m.act_name = name


def float_activation(m, x: str, ctx) -> str:
    """The float Relu / Clip node of a conv or linear module; returns the output name."""
    if m.act == "relu":
        ctx.nodes.append(helper.make_node("Relu", [x], [f"{m.name}.out"],
                                          name=m.act_name or f"{m.name}.relu"))
        return f"{m.name}.out"
    if m.act == "clip":
        lo = ctx.init(f"{m.name}.relu6.min", np.array(0.0, np.float32))
        hi = ctx.init(f"{m.name}.relu6.max", np.array(m.clip_max, np.float32))
        ctx.nodes.append(helper.make_node("Clip", [x, lo, hi], [f"{m.name}.out"],
                                          name=m.act_name or f"{m.name}.relu6"))
        return f"{m.name}.out"
    return x


def weight_qparams(m, in_q, out_q, w, bias) -> LayerQParams:
    """The LayerQParams of a weight layer (conv or linear) with weights `w` as stored."""
    s_in, z_in, b_in, _ = quant_info(in_q)
    s_out, _, b_out, signed = quant_info(out_q)
    u, s, z = m.wq.integer(w)
    pc = m.wq.per_channel
    return LayerQParams(
        m.name, m.kind, b_in, s_in, z_in, b_out, s_out, 0, signed, w_bits=m.wq.bits,
        w_q=_np(u).astype(np.uint8),
        w_scale=_np(s).astype(np.float32).reshape(-1) if pc else np.float32(_np(s)).reshape(()),
        w_zero_point=_np(z).astype(np.int32).reshape(-1) if pc
        else np.int32(_np(z)).reshape(()),
        per_channel=pc, bias=None if bias is None else _np(bias).astype(np.float32))


def export_weights(p: LayerQParams, ctx) -> str:
    """The weight initializers and their DequantizeLinear; returns the dequantized name."""
    q, s, z = f"{p.name}.weight_q", f"{p.name}.weight_scale", f"{p.name}.weight_zero_point"
    ctx.inits += [int_tensor(q, p.w_q, p.w_bits), f32(s, p.w_scale),
                  int_tensor(z, p.w_zero_point, p.w_bits)]
    attrs = {"axis": 0} if p.per_channel else {}
    ctx.nodes.append(helper.make_node("DequantizeLinear", [q, s, z], [f"{p.name}.weight_dq"],
                                      name=f"{p.name}.weight_dequant", **attrs))
    return f"{p.name}.weight_dq"
