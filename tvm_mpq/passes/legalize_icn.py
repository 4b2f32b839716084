"""LegalizeRequantizeToICN: fake-quant chains become integer-only `mpq.*` ops.

Must run after: AnnotatePrecision (every quantize and weight dequantize is wrapped in
`mpq.precision`).

What it does: rebuilds `main` as an integer function. Its parameter is the quantized input
image in NHWC (the float `quantize` at the entry is dropped; its scale and zero point
become function attributes), and every chain

    dequantize(x_q) -> <an operator's float op> (dequantize(w_q)) [+ bias]
        [-> batch_norm] [-> relu | max/min clamp] -> quantize -> mpq.precision

becomes the integer op of the operator that registered the float op at its root
(`Operator.relax_patterns`, `Operator.legalize` in tvm_mpq/ops/): conv2d and matmul become
`mpq.conv2d_icn` / `mpq.linear_icn` (int32 accumulation with zero points, batch-norm moved
into the per-channel ICN multiplier and bias, docs/quantization.md), `mean` over H, W
`mpq.avg_pool_icn`, max pooling `mpq.max_pool`, the add of two dequantized tensors
`mpq.add_icn`; a reshape of a dequantized tensor becomes an integer reshape. The function returns the quantized logits (the float `dequantize` at the exit is
dropped; attributes keep its scale and zero point). Layer names come from the ONNX nodes.

Invariants: the result has no float tensor (`CheckIntegerOnly` verifies it); the integer
semantics equal the operators' golden models by construction of the ops.
Anything that does not fit a pattern raises a ModelError naming the ONNX node.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .. import ops
from .. import tvm_adapter as ta
from ..errors import ModelError
from ..reference.packing import int_range
from ..reference.icn import quantize_multiplier, quantize_multipliers
from .ops import make_call

MAX_ACC_SHIFT = 12         # bias fractional bits (reference.ops: acc_shift)


@dataclass
class QAct:
    """A quantized activation of the new integer function."""
    var: object                 # Relax var (NHWC, or (1, C))
    scale: float
    zero: int
    bits: int
    signed: bool
    node: str
    flat_from: tuple | None = None   # (H, W, C) of the NHWC map this (1, K) flattens

    @property
    def q_range(self) -> tuple[int, int]:
        return int_range(self.bits, self.signed)


@dataclass
class QWeight:
    q: np.ndarray               # integers in the Relax layout (OIHW or (N, K))
    scale: np.ndarray           # per output channel (broadcast if per tensor)
    zero: np.ndarray
    bits: int
    signed: bool
    per_channel: bool
    node: str


class _Legalizer:
    def __init__(self, func, layer_names: list[str] | None):
        self.func = func
        self.defs = dict(ta.function_bindings(func))
        self.relax = ta.relax()
        self.bb = self.relax.BlockBuilder()
        self.acts: dict = {}            # old var (quantize/precision) -> QAct
        self.layer_names = list(layer_names or [])
        self.layers: list[dict] = []    # summary per integer op, in order

    # ---- helpers over the old function -------------------------------------------------
    def value(self, e):
        seen = 0
        while ta.is_var(e) and e in self.defs and seen < 10000:
            e = self.defs[e]
            seen += 1
        return e

    def const(self, e) -> np.ndarray | None:
        """Evaluate a constant expression (constants, dequantize, reshape, permute)."""
        e = self.value(e)
        if ta.is_constant(e):
            return ta.constant_numpy(e).astype(np.float64)
        if ta.is_call(e, "mpq.precision"):
            return self.const(e.args[0])
        if ta.is_call(e, "relax.dequantize"):
            q, s, z = (self.const(a) for a in e.args[:3])
            if q is None or s is None or z is None:
                return None
            ax = int(e.attrs.axis) % q.ndim
            shp = [1] * q.ndim
            if s.size > 1:
                shp[ax] = -1
            return (q - z.reshape(shp if z.size > 1 else ())) * s.reshape(shp if s.size > 1 else ())
        if ta.is_call(e, "relax.permute_dims"):
            x = self.const(e.args[0])
            axes = e.attrs.axes
            return None if x is None else np.transpose(x, None if axes is None else list(axes))
        if ta.is_call(e, "relax.reshape"):
            x = self.const(e.args[0])
            return None if x is None else x.reshape(ta.static_shape(e))
        return None

    def qweight(self, e, transpose: bool = False) -> QWeight:
        e = self.value(e)
        if ta.is_call(e, "relax.permute_dims"):
            return self.qweight(e.args[0], transpose=not transpose)
        if not ta.is_call(e, "mpq.precision"):
            raise ModelError("layer weights are not a DequantizeLinear of an initializer")
        bits, signed, node = int(e.attrs["bits"]), bool(int(e.attrs["signed"])), str(e.attrs["node"])
        dq = self.value(e.args[0])
        q = ta.constant_numpy(self.value(dq.args[0])).astype(np.int64)
        s = self.const(dq.args[1]).ravel()
        z = self.const(dq.args[2]).ravel().astype(np.int64)
        axis = int(dq.attrs.axis) % q.ndim
        if transpose:                   # (N, K) stored, used as its transpose
            q = q.T
            axis = 1 - axis
        out_axis = 1 if q.ndim == 2 else 0      # (K, N) for matmul, O for OIHW
        if q.ndim == 2:
            q = q.T                    # -> (N, K)
        n_out = q.shape[0]
        per_channel = s.size > 1
        if per_channel and (axis != out_axis or s.size != n_out):
            raise ModelError(f"node '{node}': per-channel weight quantization must be along "
                             "the output channels")
        return QWeight(q, np.broadcast_to(s, (n_out,)).copy(), np.broadcast_to(z, (n_out,)).copy(),
                       bits, signed, per_channel, node)

    def act_input(self, e) -> QAct:
        """An operand of a compute op: dequantize of a quantized activation (maybe reshaped)."""
        e = self.value(e)
        if ta.is_call(e, "relax.dequantize"):
            src = e.args[0]
            if src in self.acts:
                return self.acts[src]
            raise ModelError("a dequantized tensor is not the output of a quantized layer")
        if ta.is_call(e, "relax.reshape"):
            a = self.act_input(e.args[0])
            shape = ta.static_shape(e)
            old = ta.static_shape(a.var)
            flat = None
            if len(old) == 4 and (old[1] != 1 or old[2] != 1):
                # NHWC data flattened in NHWC order; the consuming linear layer permutes its
                # weights from ONNX's NCHW order (Operator linear)
                if len(shape) != 2 or (old[3] * a.bits) % 8:
                    raise ModelError(f"node '{a.node}': flattening a {old[1]}x{old[2]}x"
                                     f"{old[3]} feature map at {a.bits} bits into {list(shape)}"
                                     " (supported: into (1, K), with whole bytes per pixel)")
                flat = tuple(old[1:])
            v = self.bb.emit(self.relax.op.reshape(a.var, shape))
            return QAct(v, a.scale, a.zero, a.bits, a.signed, a.node, a.flat_from or flat)
        raise ModelError("a layer consumes a float tensor that is not a dequantized quantized "
                         f"tensor ({self._describe(e)}): insert Q/DQ or quantize this op")

    @staticmethod
    def _describe(e) -> str:
        return e.op.name if ta.is_call(e) else type(e).__name__

    # ---- the rewrite --------------------------------------------------------------------
    def run(self):
        try:
            return self._run()
        except BaseException:
            # close the binding block the builder's scopes leave open after an exception, so
            # that TVM does not log "BlockBuilder destroyed with remaining blocks" under the
            # CLI's one-line error
            try:
                self.bb._end_block()
            except Exception:  # noqa: BLE001 - nothing was open
                pass
            raise

    def _run(self):
        params = list(self.func.params)
        if len(params) != 1:
            raise ModelError("the model must have exactly one input")
        x = params[0]
        shape = ta.static_shape(x)             # NCHW image, or a (1, K) feature vector
        nhwc = (shape[0], *shape[2:], shape[1]) if len(shape) == 4 else tuple(shape)
        bindings = ta.function_bindings(self.func)
        first_q = next((v for v, val in bindings if ta.is_call(val, "mpq.precision")
                        and ta.is_call(self.value(val.args[0]), "relax.quantize")
                        and self.value(self.value(val.args[0]).args[0]).same_as(x)), None)
        if first_q is None:
            raise ModelError("the model input is not quantized (no QuantizeLinear on the input)")
        qin = self.value(self.defs[first_q].args[0])
        p = self.defs[first_q]
        signed = bool(int(p.attrs["signed"]))
        xq = self.relax.Var("input_q", ta.tensor_type(nhwc, "int8" if signed else "uint8"))
        in_scale = float(self.const(qin.args[1]).item())
        in_zero = int(self.const(qin.args[2]).item())
        with self.bb.function("main", [xq]):
            with self.bb.dataflow():
                self.acts[first_q] = QAct(xq, in_scale, in_zero, int(p.attrs["bits"]), signed,
                                          str(p.attrs["node"]))
                for var, val in bindings:
                    if var.same_as(first_q):
                        continue
                    if ta.is_call(val, "mpq.precision") and \
                            ta.is_call(self.value(val.args[0]), "relax.quantize"):
                        self.acts[var] = self.quantized(self.value(val.args[0]), val)
                out = self.output()
                gv = self.bb.emit_output(out.var)
            self.bb.emit_func_output(gv)
        mod = self.bb.get()
        gvar = mod.get_global_var("main")
        f = mod[gvar].with_attr("mpq.input_scale", in_scale).with_attr(
            "mpq.input_zero_point", in_zero).with_attr("mpq.input_bits", self.acts[first_q].bits)
        f = f.with_attr("mpq.output_scale", out.scale).with_attr(
            "mpq.output_zero_point", out.zero).with_attr("mpq.output_bits", out.bits)
        mod[gvar] = f
        return mod

    def output(self) -> QAct:
        ret = self.value(self.func.body.body)
        if ta.is_call(ret, "relax.dequantize") and ret.args[0] in self.acts:
            return self.acts[ret.args[0]]
        raise ModelError("the model output is not a DequantizeLinear of a quantized tensor")

    def quantized(self, q, prec) -> QAct:
        """Legalize `quantize(y)`: trace y back to its compute op."""
        bits, signed, node = int(prec.attrs["bits"]), bool(int(prec.attrs["signed"])), \
            str(prec.attrs["node"])
        s_o = float(self.const(q.args[1]).item())
        z_o = int(self.const(q.args[2]).item())
        out = QAct(None, s_o, z_o, bits, signed, node)
        lo, hi = -math.inf, math.inf
        if "clip_hi" in prec.attrs.keys():
            hi = float(str(prec.attrs["clip_hi"]))
        bn = None
        bias = None
        e = self.value(q.args[0])
        while True:
            if ta.is_call(e, "relax.nn.relu"):
                lo = max(lo, 0.0)
            elif ta.is_call(e, "relax.maximum") and self.const(e.args[1]) is not None:
                lo = max(lo, float(self.const(e.args[1]).item()))
            elif ta.is_call(e, "relax.minimum") and self.const(e.args[1]) is not None:
                hi = min(hi, float(self.const(e.args[1]).item()))
            elif ta.is_call(e, "relax.nn.clip"):
                lo, hi = max(lo, float(e.args[1].value)), min(hi, float(e.args[2].value))
            elif ta.is_tuple_get_item(e) and ta.is_call(self.value(e.tuple_value),
                                                        "relax.nn.batch_norm"):
                if bn is not None or bias is not None:
                    raise ModelError(f"node '{node}': unsupported batch-norm placement")
                b = self.value(e.tuple_value)
                vals = [self.const(a) for a in b.args[1:5]]
                if any(v is None for v in vals):
                    raise ModelError(f"node '{node}': batch-norm parameters must be constant")
                bn = (*vals, float(b.attrs.epsilon))
                e = self.value(b.args[0])
                continue
            elif ta.is_call(e, "relax.add") and self.const(e.args[1]) is not None:
                c = self.const(e.args[1]).ravel()
                bias = c if bias is None else bias + c
            elif ta.is_call(e, "relax.add") and self.const(e.args[0]) is not None:
                c = self.const(e.args[0]).ravel()
                bias = c if bias is None else bias + c
                e = self.value(e.args[1])
                continue
            else:
                break
            e = self.value(e.args[0])
        q_min, q_max = out.q_range
        if lo > -math.inf:
            q_min = max(q_min, z_o + int(round(lo / s_o)))
        if hi < math.inf:
            q_max = min(q_max, z_o + int(round(hi / s_o)))
        if q_min > q_max:
            raise ModelError(f"node '{node}': empty output range")
        op = ops.for_relax(getattr(e.op, "name", "")) if ta.is_call(e) else None
        if op is not None and (op.has_weights or (bias is None and bn is None)):
            out.var = op.legalize(self, e, (bias, bn), out, q_min, q_max)
        elif (ta.is_call(e, "relax.reshape") or ta.is_call(e, "relax.dequantize")) \
                and bias is None and bn is None:
            a = self.act_input(e)
            same = (abs(a.scale - s_o) <= 1e-6 * s_o and a.zero == z_o and a.bits == bits
                    and a.signed == signed)
            if not same or (q_min, q_max) != out.q_range:
                raise ModelError(f"node '{node}': a standalone requantization or activation "
                                 "between quantized layers is not supported (fuse it into the "
                                 "preceding conv/linear layer)")
            out.var, out.flat_from = a.var, a.flat_from
        elif bias is not None and ta.is_call(e, "relax.dequantize"):
            raise ModelError(f"node '{node}': a bias Add quantized apart from the MatMul/Conv "
                             "before it (run onnxruntime's quant_pre_process before "
                             "quantize_static: it fuses MatMul + Add into Gemm)")
        elif bias is not None or bn is not None:
            raise ModelError(f"node '{node}': batch-norm or bias on a tensor that is not a conv "
                             "or linear output (a float op between quantized layers)")
        else:
            raise ModelError(f"node '{node}': the quantized value comes from "
                             f"{self._describe(e)}, which the integer flow does not support")
        return out

    def icn_params(self, what, x: QAct, w: QWeight, bias, bn, out: QAct):
        """(bias_q int32, m0, n0, acc_shift) of a weight layer: batch-norm moved into the
        per-channel multiplier and bias, the bias fractional bits chosen (reference.ops)."""
        n_out = w.q.shape[0]
        s_w = w.scale
        b = np.zeros(n_out) if bias is None else np.broadcast_to(bias, (n_out,)).astype(np.float64)
        if bn is not None:
            gamma, beta, mean, var, eps = bn
            sigma = np.sqrt(var + eps)
            if np.any(gamma == 0):
                raise ModelError(f"{what}: batch-norm gamma is 0 in channel "
                                 f"{int(np.argmax(gamma == 0))}; fold it before quantizing")
            mult = gamma / sigma
            b_real = b - mean + beta * sigma / gamma
        else:
            mult = np.ones(n_out)
            b_real = b
        m = mult * x.scale * s_w / out.scale
        # int32 accumulator bound (worst case over the input and weight ranges)
        k = int(np.prod(w.q.shape[1:]))
        x_span = max(abs(v - x.zero) for v in x.q_range)
        w_span = np.max(np.abs(w.q - w.zero[:, None].reshape((-1,) + (1,) * (w.q.ndim - 1))))
        raw = k * x_span * float(w_span)
        b_acc = b_real / (x.scale * s_w)
        # Bias fractional bits: the largest shift (<= MAX_ACC_SHIFT) that keeps the worst
        # case in int32; see reference.ops.
        shift = 0
        while shift < MAX_ACC_SHIFT and (raw + np.max(np.abs(b_acc), initial=0)) * \
                2.0 ** (shift + 1) < 2.0 ** 31 - 1:
            shift += 1
        bias_q = np.rint(b_acc * 2.0 ** shift)
        m0, n0 = icn_multipliers(what, m / 2.0 ** shift)
        bound = raw * 2.0 ** shift + np.max(np.abs(bias_q), initial=0)
        if bound >= 2**31:
            raise ModelError(f"{what}: the int32 accumulator could overflow "
                             f"(bound {bound:.3g}); reduce the bias or the layer size")
        return bias_q.astype(np.int32), m0, n0.astype(np.int32), shift

    def layer_name(self, kind: str) -> str:
        """The name of the next integer op: the ONNX compute node's, else kind_index."""
        i = len(self.layers)
        return self.layer_names[i] if i < len(self.layer_names) else f"{kind}_{i}"

    def emit(self, op_name: str, args, attrs: dict):
        """Emit one integer op call and record its attributes as a layer."""
        self.layers.append(attrs)
        return self.bb.emit(make_call(op_name, args, attrs))

    @staticmethod
    def multipliers(what: str, m):
        return icn_multipliers(what, m)


def icn_multipliers(what: str, m):
    """quantize_multipliers, with a scale combination that ICN cannot express (a multiplier
    >= 2^30, e.g. from a corrupt scale) refused by the layer's name."""
    try:
        return quantize_multipliers(np.asarray(m)) if np.ndim(m) else \
            quantize_multiplier(float(m))
    except ValueError as e:
        raise ModelError(f"{what}: requantization {e} (input scale x weight scale / output "
                         "scale; check the model's scales)") from None


def legalize_requantize_to_icn(mod, layer_names: list[str] | None = None):
    """Apply the pass to `main`; `layer_names` (ONNX compute-node names in execution order)
    name the integer ops."""
    leg = _Legalizer(mod["main"], layer_names)
    return leg.run()
