"""Softmax over the last axis of a (1, N) tensor (the network's output), integer only, on
8/4/2-bit inputs (signed or unsigned).

    ONNX     Softmax (axis 1 or -1) of a (1, N) activation (e.g. after a Gemm)
    plan     kind softmax: no weights; its output carries its input's precision; the
             training face fixes the output quantization by convention (CMSIS-NN's
             arm_softmax_s8, TFLite): signed, scale 2^-bits, zero point -2^(bits-1)
             (int8: 1/256, -128); any other output scale / zero point (e.g. calibrated by
             onnxruntime) is taken as it is
    Relax    mpq.softmax(x, table) from the ONNX frontend's relax.nn.softmax
    table    t[i] = rint(exp(-i * s_in) * 2^16) for i in [0, 2^in_bits): the exponential
             of every possible difference x_max - x (int32, t[0] = 65536)
    golden   m = max_k x_k;  sum = sum_k t[m - x_k]  (int32: N < 32768)
             y_k = clamp(rhe(t[m - x_k] * P / (sum * 2^sh)) + z_out, q_min, q_max)
             with P / 2^sh ~ 1 / s_out (sh = max(0, 15 - ceil(log2(1 / s_out))),
             P = rint(2^sh / s_out): 256 = 2^15 / 2^7 exactly for 1/256), rhe = round half
             to even, in int64
    kernels  plain TIR: a max and a sum reduction, then one int64 division per output;
             ABI int32_t mpq_softmax_<in>_<out>_<suffix>(const uint8_t *x,
                 const int32_t *table, uint8_t *y)
    torch    float softmax, then the fixed output quantizer (quant/faces/softmax.py)
"""

from __future__ import annotations

import math

import numpy as np

from .. import tvm_adapter as ta
from ..errors import ModelError, UnsupportedOpError
from ..reference.packing import int_range
from . import register
from .base import Operator
from .common import relax_attr_int, relax_out_dtype

EXP_BITS = 16
MAX_N = (1 << (31 - EXP_BITS)) - 1


def exp_table(in_bits: int, s_in: float) -> np.ndarray:
    """t[i] = rint(exp(-i * s_in) * 2^16), i = 0 .. 2^in_bits - 1 (int32)."""
    i = np.arange(1 << in_bits, dtype=np.float64)
    return np.rint(np.exp(-i * float(s_in)) * (1 << EXP_BITS)).astype(np.int32)


def output_multiplier(s_out: float) -> tuple[int, int]:
    """(P, sh) with P / 2^sh ~ 1 / s_out (module docstring)."""
    inv = 1.0 / float(s_out)
    sh = max(0, 15 - math.ceil(math.log2(inv))) if inv > 0 else 0
    return int(round(inv * (1 << sh))), sh


def _rhe_div(num, den):
    """Round-half-to-even of num / den for num >= 0, den > 0 (int64 arrays)."""
    q = num // den
    r2 = 2 * (num - q * den)
    return q + ((r2 > den) | ((r2 == den) & (q % 2 == 1)))


def softmax(x, table, p_mul, shift, z_out, q_min, q_max):
    """The golden model on (1, N) x."""
    x = np.asarray(x, np.int64)
    t = np.asarray(table, np.int64)[x.max(axis=-1, keepdims=True) - x]
    den = t.sum(axis=-1, keepdims=True) << shift
    return np.clip(_rhe_div(t * p_mul, den) + z_out, q_min, q_max).astype(np.int32)


def _value(tirx, tk, total, p_mul, shift, z_out, q_min, q_max):
    """y_k from t_k = t[m - x_k] and the sum (int32 exprs), in int64."""
    i64 = "int64"
    num = tk.astype(i64) * tirx.const(p_mul, i64)
    den = total.astype(i64) * tirx.const(1 << shift, i64)
    q = tirx.truncdiv(num, den)
    r2 = (num - q * den) * tirx.const(2, i64)
    one, zero = tirx.const(1, i64), tirx.const(0, i64)
    up = tirx.Or(r2 > den, tirx.And(r2 == den, (q & one) == one))
    y = q + tirx.Select(up, one, zero) + tirx.const(z_out, i64)
    return tirx.max(tirx.min(y, tirx.const(q_max, i64)), tirx.const(q_min, i64)).astype("int32")


_KEYS = ("p_mul", "shift", "z_out", "q_min", "q_max")


def _softmax_te(x, t, *, p_mul, shift, z_out, q_min, q_max, out_dtype):
    te, tirx = ta.te(), ta.tirx()
    n = int(x.shape[1])
    k, k2 = te.reduce_axis((0, n), "k"), te.reduce_axis((0, n), "k2")
    m = te.compute((1,), lambda _: te.max(x[0, k].astype("int32"), axis=k), name="xmax")
    s = te.compute((1,), lambda _: te.sum(t[m[0] - x[0, k2].astype("int32")], axis=k2),
                   name="xsum")
    return te.compute((1, n), lambda i, j: _value(
        tirx, t[m[0] - x[i, j].astype("int32")], s[0], p_mul, shift, z_out, q_min,
        q_max).astype(out_dtype), name="softmax")


def _legalize_relax(bb, call):
    a = {k: call.attrs[k] for k in call.attrs.keys()}
    return bb.call_te(lambda *args: _softmax_te(
        *args, **{k: relax_attr_int(a, k) for k in _KEYS}, out_dtype=relax_out_dtype(a)),
        *call.args, primfunc_name_hint="mpq_softmax")


def _infer_relax(call, *_):
    return ta.tensor_type(ta.static_shape(call.args[0]), relax_out_dtype(call.attrs))


def plain_kernel(spec):
    """Packed (1, N) row: max, sum of table entries, one rounded division per element."""
    from ..codegen import kernel_te as kt
    from ..reference.packing import row_bytes

    te, tirx = ta.te(), ta.tirx()
    n = spec.in_shape[-1]
    x = te.placeholder((row_bytes(n, spec.in_bits),), "uint8", "x")
    t = te.placeholder((1 << spec.in_bits,), "int32", "table")
    k, k2 = te.reduce_axis((0, n), "k"), te.reduce_axis((0, n), "k2")

    def xin(ch):
        return kt.load(x, (), ch, spec.in_bits, spec.in_signed)

    m = te.compute((1,), lambda _: te.max(xin(k), axis=k), name="xmax")
    s = te.compute((1,), lambda _: te.sum(t[m[0] - xin(k2)], axis=k2), name="xsum")
    y = kt.pack_rows((), n, spec.out_bits, lambda ch: _value(
        tirx, t[m[0] - xin(ch)], s[0], spec.k_a, spec.shift, spec.z_out, spec.q_min,
        spec.q_max))
    return kt.scheduled([x, t, y], reduces=False)


@register
class Softmax(Operator):
    name = "softmax"
    kinds = ("softmax",)
    onnx_types = ("Softmax",)
    mpq_ops = {"mpq.softmax": (2, _infer_relax, _legalize_relax)}
    relax_patterns = ("relax.nn.softmax",)
    kernel_kinds = ("softmax",)
    c_kind = {"softmax": "softmax"}
    colors = {"softmax": "#ccb974"}
    torch_face = "tvm_mpq.quant.faces.softmax:SoftmaxFace"

    def from_onnx(self, a, node):
        from ..frontend.graph import Layer

        op, at = node.op_type, a.attrs(node)
        x, in_shape, out_shape = a.io(node)
        if len(in_shape) != 2 or in_shape[0] != 1 or tuple(out_shape) != tuple(in_shape):
            raise UnsupportedOpError(node.name, op, f"input of shape {list(in_shape)} (only "
                                     "(1, N), over its last axis)")
        axis = int(at.get("axis", -1))
        if axis not in (1, -1):
            raise UnsupportedOpError(node.name, op, f"axis {axis} (only the last axis)")
        if in_shape[1] > MAX_N:
            raise UnsupportedOpError(node.name, op, f"{in_shape[1]} classes (at most {MAX_N})")
        return Layer(node.name, "softmax", [x], node.output[0], in_shape, out_shape,
                     macs=3 * int(np.prod(out_shape)), nodes=[node.name], attrs={"axis": 1})

    def legalize(self, leg, e, fused, out, q_min, q_max):
        x = leg.act_input(e.args[0])
        shape = ta.static_shape(x.var)
        if len(shape) != 2 or int(e.attrs.axis) not in (1, -1):
            raise ModelError(f"node '{out.node}': softmax of {list(shape)} over axis "
                             f"{int(e.attrs.axis)} (only the last axis of (1, N))")
        p_mul, shift = output_multiplier(out.scale)
        if not 1 <= p_mul < (1 << 16):
            raise ModelError(f"node '{out.node}': softmax output scale {out.scale:g} (expected "
                             "about 1 / 2^bits)")
        name = leg.layer_name("softmax")
        attrs = dict(p_mul=p_mul, shift=shift, z_in=x.zero, z_out=out.zero, q_min=q_min,
                     q_max=q_max, in_bits=x.bits, out_bits=out.bits, name=name,
                     kind="softmax", in_node=x.node, out_node=out.node)
        return leg.emit("mpq.softmax", [x.var, ta.const(exp_table(x.bits, x.scale))], attrs)

    def golden(self, op_name, args, a):
        return softmax(args[0], args[1], *(int(a[k]) for k in _KEYS))

    def spec_from_call(self, call, common, get):
        from ..codegen.kernels import KernelSpec

        # the output multiplier travels in k_a (P) and shift (sh)
        return KernelSpec("softmax", k_a=get("p_mul"), shift=get("shift"), **common)

    def validate_spec(self, s, bad):
        if s.in_shape != s.out_shape or len(s.in_shape) != 2 or s.in_shape[0] != 1:
            bad(f"softmax of a (1, N) row expected, got {s.in_shape} -> {s.out_shape}")
        if not 1 <= s.k_a < (1 << 16) or not 0 <= s.shift <= 16:
            bad(f"softmax output multiplier {s.k_a} / 2^{s.shift}")

    def c_args(self, spec):
        return ("const uint8_t *x", "const int32_t *table", "uint8_t *y")

    def build_kernel(self, spec, name):
        return plain_kernel(spec), 0, None

    def pack_params(self, spec, consts):
        from ..codegen.kernels import int_le_bytes

        return {"table": ("int32_t", int_le_bytes(consts[0], "<i4", 1 << spec.in_bits,
                                                  "softmax table"))}


def fixed_output(bits: int) -> tuple[float, int]:
    """The conventional output quantization: (scale 2^-bits, zero point -2^(bits-1))."""
    return 1.0 / (1 << bits), int_range(bits, True)[0]
