"""Residual add of two quantized tensors of the same shape, both requantized to the output
scale, with an optional Relu after it fused.

    ONNX     Add of two activations (no broadcasting) [-> Relu]; an Add of a constant
             right after a conv or linear layer is that layer's bias (folded by the frontend)
    plan     kind add: no weights; its output carries the precision of the input produced
             last (the chain predecessor)
    Relax    mpq.add_icn(a, b)
    golden   y = clamp(((a - z_a) k_a + (b - z_b) k_b + 2^(shift-1)) >> shift + z_out),
             k_a = round(S_a / S_out * 2^shift), k_b likewise, in int64
    kernels  plain TIR (kernel_te.add), int32 arithmetic when the worst case fits
"""

from __future__ import annotations

import math

import numpy as np

from .. import tvm_adapter as ta
from ..errors import ModelError, UnsupportedOpError
from . import register
from .base import Operator
from .common import relax_attr_int, relax_out_dtype

ADD_SHIFT_BITS = 20        # |k_a|, |k_b| < 2^20


def add(a, b, z_a, z_b, k_a, k_b, shift, z_out, q_min, q_max):
    """The golden model (see the module docstring)."""
    a = np.asarray(a, np.int64) - z_a
    b = np.asarray(b, np.int64) - z_b
    y = (a * int(k_a) + b * int(k_b) + (1 << (shift - 1))) >> shift
    return np.clip(y + z_out, q_min, q_max).astype(np.int32)


def _add_te(x, y, *, z_a, z_b, k_a, k_b, shift, z_out, q_min, q_max, out_dtype):
    te, tirx = ta.te(), ta.tirx()

    def f(*i):
        v = ((x(*i).astype("int64") - z_a) * tirx.const(k_a, "int64")
             + (y(*i).astype("int64") - z_b) * tirx.const(k_b, "int64")
             + tirx.const(1 << (shift - 1), "int64")) >> shift
        v = v + z_out
        return tirx.max(tirx.min(v, tirx.const(q_max, "int64")),
                        tirx.const(q_min, "int64")).astype(out_dtype)

    return te.compute(x.shape, f, name="add_icn")


_KEYS = ("z_a", "z_b", "k_a", "k_b", "shift", "z_out", "q_min", "q_max")


def _legalize_relax(bb, call):
    a = {k: call.attrs[k] for k in call.attrs.keys()}
    return bb.call_te(lambda *args: _add_te(*args, **{k: relax_attr_int(a, k) for k in _KEYS},
                                            out_dtype=relax_out_dtype(a)), *call.args,
                      primfunc_name_hint="mpq_add")


def _infer_relax(call, *_):
    return ta.tensor_type(ta.static_shape(call.args[0]), relax_out_dtype(call.attrs))


# ---- the plain kernel (TIR from TE; layouts in codegen.kernels) ----------------------

def plain_kernel(spec):
    """Residual add: y = clamp(((a - z_a) k_a + (b - z_b) k_b + 2^(shift-1)) >> shift + z_out).

    Computed in int32 when the worst case over the input ranges fits, else in int64.
    """
    from ..codegen import kernel_te as kt
    from ..reference.packing import row_bytes

    te, tirx = ta.te(), ta.tirx()
    pre, n = tuple(spec.in_shape[1:-1]), spec.in_shape[-1]
    a = te.placeholder((*pre, row_bytes(n, spec.in_bits)), "uint8", "a")
    b = te.placeholder((*pre, row_bytes(n, spec.b_bits)), "uint8", "b")
    span_a = kt.value_span(spec.in_bits, spec.in_signed, spec.z_a)
    span_b = kt.value_span(spec.b_bits, spec.b_signed, spec.z_b)
    bound = span_a * abs(spec.k_a) + span_b * abs(spec.k_b) + (1 << (spec.shift - 1))
    dt = "int32" if bound < (1 << 31) else "int64"

    def value(*idx):
        *p, ch = idx
        va = kt.load(a, tuple(p), ch, spec.in_bits, spec.in_signed).astype(dt) - spec.z_a
        vb = kt.load(b, tuple(p), ch, spec.b_bits, spec.b_signed).astype(dt) - spec.z_b
        v = (va * tirx.const(spec.k_a, dt) + vb * tirx.const(spec.k_b, dt)
             + tirx.const(1 << (spec.shift - 1), dt)) >> tirx.const(spec.shift, dt)
        v = v + tirx.const(spec.z_out, dt)
        v = tirx.max(tirx.min(v, tirx.const(spec.q_max, dt)), tirx.const(spec.q_min, dt))
        return v.astype("int32")

    y = kt.pack_rows(pre, n, spec.out_bits, value)
    return kt.scheduled([a, b, y], reduces=False)


@register
class Add(Operator):
    name = "add"
    kinds = ("add",)
    onnx_types = ("Add",)
    mpq_ops = {"mpq.add_icn": (2, _infer_relax, _legalize_relax)}
    relax_patterns = ("relax.add",)
    kernel_kinds = ("add",)
    c_kind = {"add": "add"}
    colors = {"add": "#64b5cd"}
    torch_face = "tvm_mpq.quant.faces.add:AddFace"

    def from_onnx(self, a, node):
        from ..frontend.graph import Layer

        op = node.op_type
        out_shape = a.shape(node.output[0], node)
        consts = [t for t in node.input if t in a.consts]
        if consts:                      # MatMul + Add (tf2onnx's dense), Conv + Add: a bias
            x = next((t for t in node.input if t not in a.consts), None)
            owner, folded = a.owner(a.act(x, node)) if x is not None else (None, [])
            c = a.const_array(consts[0])
            if owner is None or not owner.has_weights or len(consts) != 1 or c is None \
                    or c.size not in (1, owner.out_channels) \
                    or c.size != max(c.shape, default=1) \
                    or any(f in ("Relu", "Clip", "BatchNormalization") for f in folded):
                raise UnsupportedOpError(node.name, op, "an Add of a constant that is not the "
                                         "bias of the conv or linear layer before it")
            return None                 # folded into that layer as its bias
        ins = [a.act(t, node) for t in node.input]
        s0, s1 = (a.shape(t, node) for t in node.input)
        if s0 != s1:
            raise UnsupportedOpError(node.name, op, f"broadcasting add {s0} + {s1}")
        return Layer(node.name, "add", ins, node.output[0], s0, out_shape,
                     macs=int(np.prod(out_shape)), nodes=[node.name])

    def legalize(self, leg, e, fused, out, q_min, q_max):
        a, b = leg.act_input(e.args[0]), leg.act_input(e.args[1])
        if a.flat_from or b.flat_from:
            raise ModelError(f"node '{out.node}': an add of flattened feature maps")
        ra, rb = a.scale / out.scale, b.scale / out.scale
        top = max(ra, rb)
        shift = max(1, min(40, ADD_SHIFT_BITS - max(0, math.ceil(math.log2(top + 1e-30)))))
        k_a, k_b = int(round(ra * (1 << shift))), int(round(rb * (1 << shift)))
        name = leg.layer_name("add")
        if max(k_a, k_b) >= 2**31:
            raise ModelError(f"layer '{name}': the input scales are {top:.3g} times the output "
                             "scale; the integer add cannot rescale that (check the scales)")
        attrs = dict(z_a=a.zero, z_b=b.zero, k_a=k_a, k_b=k_b, shift=shift, z_out=out.zero,
                     q_min=q_min, q_max=q_max, in_bits=max(a.bits, b.bits), a_bits=a.bits,
                     b_bits=b.bits, out_bits=out.bits, name=name, kind="add", in_node=a.node,
                     in_node_b=b.node, out_node=out.node)
        return leg.emit("mpq.add_icn", [a.var, b.var], attrs)

    def golden(self, op_name, args, a):
        return add(args[0], args[1], *(int(a[k]) for k in _KEYS))

    def spec_from_call(self, call, common, get):
        from ..codegen.kernels import KernelSpec

        b = call.args[1]
        common["in_bits"] = get("a_bits", common["in_bits"])
        return KernelSpec("add", b_bits=get("b_bits", common["in_bits"]),
                          b_signed=str(b.ty.dtype) == "int8", z_a=get("z_a"), z_b=get("z_b"),
                          k_a=get("k_a"), k_b=get("k_b"), shift=get("shift", 1), **common)

    def validate_spec(self, s, bad):
        if s.in_shape != s.out_shape or s.in_shape[0] != 1:
            bad(f"add shapes must be equal with batch 1: {s.in_shape} -> {s.out_shape}")
        if not 1 <= s.shift <= 62:
            bad(f"shift={s.shift} outside [1, 62]")

    def c_args(self, spec):
        return ("const uint8_t *a", "const uint8_t *b", "uint8_t *y")

    def build_kernel(self, spec, name):
        return plain_kernel(spec), 0, None

    def call_args(self, acts, cargs, y):
        return acts + [y]
