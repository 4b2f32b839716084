"""Mul of two quantized activations: same shape, or a per-channel (1, C, 1, 1) tensor
broadcast over a (1, C, H, W) map (squeeze-excite: x * sigmoid(fc(gap(x)))); 8/4/2 bits,
signed or unsigned, the two inputs' widths may differ.

    ONNX     Mul of two activations (a constant operand is refused)
    plan     kind mul: no weights; its output carries the precision of the input produced
             last (as the add)
    Relax    mpq.mul_icn(a, b, m0, n0): the ONNX frontend's relax.multiply of two
             dequantized tensors; a multiply whose operands are both functions of ONE
             dequantized tensor (HardSwish = x * hardsigmoid(x) as TVM imports it) is an
             activation table instead (ops/activation.py). The full-size input is `a`, the
             broadcast one `b` (the operands are swapped when needed: Mul commutes); a
             reshape (1, C) -> (1, C, 1, 1) of b becomes the NHWC (1, 1, 1, C)
    golden   acc = (a - z_a) * (b - z_b)  (int32; b broadcast over H, W)
             y = requantize(acc, m0, n0, z_out, q_min, q_max), M = S_a * S_b / S_out
             (reference.icn, round half to even)
    kernels  plain TIR; ABI
             int32_t mpq_mul_<a>_<out>_<suffix>(const uint8_t *a, const uint8_t *b,
                 const int32_t *m0, const int8_t *n0, uint8_t *y)
             a NHWC packed rows, b the same or one row of C (broadcast), m0/n0 one each
    torch    a * b, then its own output quantizer: PACT when both inputs are unsigned,
             SignedQuant otherwise (quant/faces/mul.py)
"""

from __future__ import annotations

import numpy as np

from .. import tvm_adapter as ta
from ..errors import ModelError, UnsupportedOpError
from ..reference.icn import requantize
from . import register
from .activation import legalize_function
from .base import Operator
from .common import opaque_int32, relax_attr_int, relax_out_dtype, requant_te


def broadcastable(full, small) -> bool:
    """Whether `small` (NCHW) is `full` or its per-channel (1, C, 1, 1) broadcast."""
    full, small = tuple(full), tuple(small)
    return small == full or (len(full) == 4 and small == (1, full[1], 1, 1))


def mul(a, b, z_a, z_b, m0, n0, z_out, q_min, q_max):
    """The golden model (module docstring); a (1, H, W, C), b the same or (1, 1, 1, C)."""
    acc = (np.asarray(a, np.int64) - z_a) * (np.asarray(b, np.int64) - z_b)
    return requantize(acc, m0, n0, z_out, q_min, q_max).astype(np.int32)


_KEYS = ("z_a", "z_b", "z_out", "q_min", "q_max")


def _mul_te(a, b, m0, n0, *, z_a, z_b, z_out, q_min, q_max, out_dtype):
    te = ta.te()
    bcast = [int(d) for d in b.shape] != [int(d) for d in a.shape]

    def f(*i):
        bi = (0,) * (len(i) - 1) + (i[-1],) if bcast else i
        acc = opaque_int32((a(*i).astype("int32") - z_a) * (b(*bi).astype("int32") - z_b))
        return requant_te(acc, m0[0], n0[0], z_out, q_min, q_max).astype(out_dtype)

    return te.compute(a.shape, f, name="mul_icn")


def _legalize_relax(bb, call):
    a = {k: call.attrs[k] for k in call.attrs.keys()}
    return bb.call_te(lambda *args: _mul_te(*args, **{k: relax_attr_int(a, k) for k in _KEYS},
                                            out_dtype=relax_out_dtype(a)), *call.args,
                      primfunc_name_hint="mpq_mul")


def _infer_relax(call, *_):
    return ta.tensor_type(ta.static_shape(call.args[0]), relax_out_dtype(call.attrs))


# ---- the plain kernel ------------------------------------------------------------------

def plain_kernel(spec):
    """y = requantize((a - z_a) * (b - z_b)) element by element; b one row when broadcast."""
    from ..codegen import kernel_te as kt
    from ..reference.packing import row_bytes

    te = ta.te()
    pre, n = tuple(spec.in_shape[1:-1]), spec.in_shape[-1]
    bcast = spec.b_shape != spec.in_shape
    a = te.placeholder((*pre, row_bytes(n, spec.in_bits)), "uint8", "a")
    b = te.placeholder(((1,) * len(pre) if bcast else pre) + (row_bytes(n, spec.b_bits),),
                       "uint8", "b")
    m0 = te.placeholder((1,), "int32", "m0")
    n0 = te.placeholder((1,), "int8", "n0")

    def value(*idx):
        *p, ch = idx
        va = kt.load(a, tuple(p), ch, spec.in_bits, spec.in_signed) - spec.z_a
        vb = kt.load(b, (0,) * len(p) if bcast else tuple(p), ch, spec.b_bits,
                     spec.b_signed) - spec.z_b
        return kt.requantize(opaque_int32(va * vb), m0[0], n0[0], spec.z_out, spec.q_min, spec.q_max,
                             spec.ties)

    y = kt.pack_rows(pre, n, spec.out_bits, value)
    return kt.scheduled([a, b, m0, n0, y], reduces=False)


def _operand(leg, e):
    """An activation operand; a reshape (1, C) -> (1, C, 1, 1) becomes NHWC (1, 1, 1, C)."""
    v = leg.value(e)
    if ta.is_call(v, "relax.reshape"):
        shape = ta.static_shape(v)
        src = leg.act_input(v.args[0])
        old = ta.static_shape(src.var)
        if len(shape) == 4 and shape[2:] == (1, 1) and len(old) == 2:
            from ..passes.legalize_icn import QAct

            r = leg.bb.emit(leg.relax.op.reshape(src.var, (1, 1, 1, shape[1])))
            return QAct(r, src.scale, src.zero, src.bits, src.signed, src.node)
    return leg.act_input(e)


@register
class Mul(Operator):
    name = "mul"
    kinds = ("mul",)
    onnx_types = ("Mul",)
    mpq_ops = {"mpq.mul_icn": (4, _infer_relax, _legalize_relax)}
    relax_patterns = ("relax.multiply",)
    kernel_kinds = ("mul",)
    c_kind = {"mul": "mul"}
    colors = {"mul": "#da8bc3"}
    torch_face = "tvm_mpq.quant.faces.mul:MulFace"

    def from_onnx(self, a, node):
        from ..frontend.graph import Layer

        op = node.op_type
        if len(node.input) != 2:
            raise UnsupportedOpError(node.name, op, f"{len(node.input)} inputs")
        out_shape = a.shape(node.output[0], node)
        ins = [a.act(t, node) for t in node.input]
        s0, s1 = (a.shape(t, node) for t in node.input)
        if broadcastable(s1, s0) and s0 != s1:
            ins, s0, s1 = ins[::-1], s1, s0
        if not broadcastable(s0, s1) or len(s0) not in (2, 4):
            raise UnsupportedOpError(node.name, op, f"broadcasting {list(s0)} * {list(s1)} "
                                     "(only equal shapes or (1, C, 1, 1) over (1, C, H, W))")
        return Layer(node.name, "mul", ins, node.output[0], s0, out_shape,
                     macs=int(np.prod(out_shape)), nodes=[node.name])

    def legalize(self, leg, e, fused, out, q_min, q_max):
        v = legalize_function(leg, e, out, q_min, q_max, "hard_swish")
        if v is not None:           # x * f(x): an activation table (HardSwish)
            return v
        a, b = _operand(leg, e.args[0]), _operand(leg, e.args[1])
        sa, sb = ta.static_shape(a.var), ta.static_shape(b.var)
        if sa != sb and int(np.prod(sa)) < int(np.prod(sb)):
            a, b, sa, sb = b, a, sb, sa
        if a.flat_from or b.flat_from:
            raise ModelError(f"node '{out.node}': a mul of flattened feature maps")
        if sb != sa and not (len(sa) == 4 and sb == (1, 1, 1, sa[3])):
            raise ModelError(f"node '{out.node}': mul of {list(sa)} and {list(sb)} (NHWC)")
        name = leg.layer_name("mul")
        m0, n0 = leg.multipliers(f"layer '{name}'", a.scale * b.scale / out.scale)
        attrs = dict(z_a=a.zero, z_b=b.zero, z_out=out.zero, q_min=q_min, q_max=q_max,
                     in_bits=a.bits, a_bits=a.bits, b_bits=b.bits, out_bits=out.bits,
                     name=name, kind="mul", in_node=a.node, in_node_b=b.node,
                     out_node=out.node)
        return leg.emit("mpq.mul_icn", [a.var, b.var, ta.const(np.array([m0], np.int32)),
                                        ta.const(np.array([n0], np.int32))], attrs)

    def golden(self, op_name, args, a):
        return mul(args[0], args[1], int(a["z_a"]), int(a["z_b"]), args[2], args[3],
                   int(a["z_out"]), int(a["q_min"]), int(a["q_max"]))

    def spec_from_call(self, call, common, get):
        from ..codegen.kernels import KernelSpec

        b = call.args[1]
        return KernelSpec("mul", b_bits=get("b_bits", common["in_bits"]),
                          b_signed=str(b.ty.dtype) == "int8", b_shape=ta.static_shape(b),
                          z_a=get("z_a"), z_b=get("z_b"), **common)

    def validate_spec(self, s, bad):
        if s.in_shape != s.out_shape or s.in_shape[0] != 1:
            bad(f"mul shapes must be equal with batch 1: {s.in_shape} -> {s.out_shape}")
        if s.b_shape != s.in_shape and s.b_shape != (1,) * (len(s.in_shape) - 1) + \
                (s.in_shape[-1],):
            bad(f"mul: b of shape {s.b_shape} does not broadcast over {s.in_shape}")

    def c_args(self, spec):
        return ("const uint8_t *a", "const uint8_t *b", "const int32_t *m0",
                "const int8_t *n0", "uint8_t *y")

    def build_kernel(self, spec, name):
        return plain_kernel(spec), 0, None

    def call_args(self, acts, cargs, y):
        return acts + cargs + [y]

    def requant_flags(self, spec, consts):
        from ..reference.icn import ties_possible

        return ties_possible(consts[0], consts[1]), False

    def pack_params(self, spec, consts):
        from ..codegen.kernels import int_le_bytes

        m0, n0 = consts
        return {"m0": ("int32_t", int_le_bytes(m0, "<i4", 1, "m0")),
                "n0": ("int8_t", int_le_bytes(n0, "i1", 1, "n0"))}
