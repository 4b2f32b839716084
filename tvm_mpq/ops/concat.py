"""Concat on the channel axis (NCHW axis 1, the last axis of the NHWC integer tensors) of
two or more quantized activations; 8/4/2 bits, signed or unsigned, the inputs' widths and
scales may differ.

    ONNX     Concat (axis 1, or -3 of a 4-D / -1 of a 2-D tensor) of activations with equal
             N, H, W
    plan     kind concat: no weights; its output carries the precision of the input
             produced last (as the add)
    Relax    mpq.concat(x_0, ..., x_{k-1}, m0, n0) from the ONNX frontend's relax.concat
    golden   per input i, of C_i channels at channel offset o_i of the output:
             requant_i = 0 (scale and zero point equal to the output's):
                 y[..., o_i + c] = clamp(x_i[..., c], q_min, q_max)           (a copy)
             requant_i = 1:  y[..., o_i + c] = requantize(x_i - z_i, m0[i], n0[i], z_out,
                 q_min, q_max), M_i = S_i / S_out (reference.icn, round half to even)
    kernels  plain TIR, element by element over the output's packed rows (channel
             offsets need not fall on bytes); ABI
             int32_t mpq_concat_<in0>_<out>_<suffix>(const uint8_t *x0, ...,
                 const uint8_t *x{k-1}, const int32_t *m0, const int8_t *n0, uint8_t *y)
             (m0 / n0: k entries; copied inputs hold 2^30 / 1, unused)
    torch    torch.cat on dim 1, then its own output quantizer: PACT when every input is
             unsigned, SignedQuant otherwise (quant/faces/concat.py)

The per-input facts travel as `parts` = ((C_i, bits_i, signed_i, z_i, requant_i), ...)
in the kernel spec (the call's `channels`, `bits`, ... attributes).
"""

from __future__ import annotations

import numpy as np

from .. import tvm_adapter as ta
from ..errors import ModelError, UnsupportedOpError
from ..reference.icn import requantize
from . import register
from .base import Operator
from .common import opaque_int32, relax_out_dtype, requant_te

_SAME = (1 << 30, 1)


def concat(xs, parts, m0, n0, z_out, q_min, q_max):
    """The golden model; xs NHWC (or (1, C)), parts as in the module docstring."""
    out = []
    for i, (x, (_, _, _, z, req)) in enumerate(zip(xs, parts)):
        x = np.asarray(x, np.int64)
        out.append(requantize(x - z, m0[i:i + 1], n0[i:i + 1], z_out, q_min, q_max) if req
                   else np.clip(x, q_min, q_max))
    return np.concatenate(out, axis=-1).astype(np.int32)


def _parts_of(attrs) -> tuple:
    keys = ("channels", "bits", "signed", "zeros", "requant")
    cols = [[int(v) for v in str(attrs[k]).split(",")] for k in keys]
    return tuple(zip(*cols))


def _select(tirx, ch, parts, part_value):
    """Nested lazy selects: the value of the input that holds output channel `ch`."""
    offs = np.cumsum([0] + [p[0] for p in parts])
    v = part_value(len(parts) - 1, ch - int(offs[-2]))
    for i in range(len(parts) - 2, -1, -1):
        v = tirx.if_then_else(ch < int(offs[i + 1]), part_value(i, ch - int(offs[i])), v)
    return v


def _concat_te(*args, parts, z_out, q_min, q_max, out_dtype):
    te, tirx = ta.te(), ta.tirx()
    xs, m0, n0 = args[:-2], args[-2], args[-1]
    shape = [int(d) for d in xs[0].shape[:-1]] + [sum(p[0] for p in parts)]

    def f(*i):
        def part(k, c):
            v = xs[k](*i[:-1], c).astype("int32")
            if parts[k][4]:
                return requant_te(opaque_int32(v - parts[k][3]), m0[k], n0[k], z_out, q_min, q_max)
            return tirx.max(tirx.min(v, q_max), q_min).astype("int64")

        return _select(tirx, i[-1], parts, part).astype(out_dtype)

    return te.compute(shape, f, name="concat")


def _legalize_relax(bb, call):
    a = {k: call.attrs[k] for k in call.attrs.keys()}
    return bb.call_te(lambda *args: _concat_te(
        *args, parts=_parts_of(a), z_out=int(a["z_out"]), q_min=int(a["q_min"]),
        q_max=int(a["q_max"]), out_dtype=relax_out_dtype(a)), *call.args,
        primfunc_name_hint="mpq_concat")


def _infer_relax(call, *_):
    shape = ta.static_shape(call.args[0])
    c = sum(p[0] for p in _parts_of(call.attrs))
    return ta.tensor_type(shape[:-1] + (c,), relax_out_dtype(call.attrs))


def plain_kernel(spec):
    """Element by element over the output's packed rows; each element loaded from its
    input, copied (clamped) or ICN-requantized."""
    from ..codegen import kernel_te as kt
    from ..reference.packing import row_bytes

    te, tirx = ta.te(), ta.tirx()
    pre, n = tuple(spec.out_shape[1:-1]), spec.out_shape[-1]
    xs = [te.placeholder((*pre, row_bytes(c, b)), "uint8", f"x{i}")
          for i, (c, b, _, _, _) in enumerate(spec.parts)]
    k = len(spec.parts)
    m0 = te.placeholder((k,), "int32", "m0")
    n0 = te.placeholder((k,), "int8", "n0")

    def value(*idx):
        *p, ch = idx

        def part(i, c):
            _, bits, signed, z, req = spec.parts[i]
            v = kt.load(xs[i], tuple(p), c, bits, bool(signed))
            if req:
                return kt.requantize(opaque_int32(v - z), m0[i], n0[i], spec.z_out, spec.q_min,
                                     spec.q_max, spec.ties)
            return tirx.max(tirx.min(v, tirx.const(spec.q_max, "int32")),
                            tirx.const(spec.q_min, "int32"))

        return _select(tirx, ch, spec.parts, part)

    y = kt.pack_rows(pre, n, spec.out_bits, value)
    return kt.scheduled(xs + [m0, n0, y], reduces=False)


@register
class Concat(Operator):
    name = "concat"
    kinds = ("concat",)
    onnx_types = ("Concat",)
    mpq_ops = {"mpq.concat": (3, _infer_relax, _legalize_relax)}
    relax_patterns = ("relax.concat",)
    kernel_kinds = ("concat",)
    c_kind = {"concat": "concat"}
    colors = {"concat": "#4c72b0"}
    torch_face = "tvm_mpq.quant.faces.concat:ConcatFace"

    def from_onnx(self, a, node):
        from ..frontend.graph import Layer

        op, at = node.op_type, a.attrs(node)
        out_shape = a.shape(node.output[0], node)
        if len(node.input) < 2:
            raise UnsupportedOpError(node.name, op, f"{len(node.input)} input (at least 2)")
        ins = [a.act(t, node) for t in node.input]
        shapes = [a.shape(t, node) for t in node.input]
        rank = len(shapes[0])
        axis = int(at.get("axis", 1))
        if rank not in (2, 4) or axis % rank != 1:
            raise UnsupportedOpError(node.name, op, f"axis {axis} of a rank-{rank} tensor "
                                     "(only the channel axis of NCHW or (1, C))")
        if any(len(s) != rank or s[:1] + s[2:] != shapes[0][:1] + shapes[0][2:]
               for s in shapes):
            raise UnsupportedOpError(node.name, op, f"inputs of shapes "
                                     f"{[list(s) for s in shapes]} (equal but for C)")
        return Layer(node.name, "concat", ins, node.output[0], shapes[0], out_shape,
                     macs=int(np.prod(out_shape)), nodes=[node.name],
                     attrs={"channels": [int(s[1]) for s in shapes]})

    def legalize(self, leg, e, fused, out, q_min, q_max):
        if int(e.attrs.axis) % len(ta.static_shape(e)) != 1:
            raise ModelError(f"node '{out.node}': concat over axis {int(e.attrs.axis)}")
        tup = leg.value(e.args[0])
        xs = [leg.act_input(f) for f in tup.fields]
        if any(x.flat_from for x in xs):
            raise ModelError(f"node '{out.node}': a concat of flattened feature maps")
        name = leg.layer_name("concat")
        m0s, n0s, parts = [], [], []
        for x in xs:
            same = abs(x.scale - out.scale) <= 1e-6 * out.scale and x.zero == out.zero
            m0, n0 = _SAME if same else leg.multipliers(f"layer '{name}'", x.scale / out.scale)
            m0s.append(m0)
            n0s.append(n0)
            parts.append((ta.static_shape(x.var)[-1], x.bits, int(x.signed), x.zero,
                          int(not same)))
        cols = {k: ",".join(str(p[j]) for p in parts) for j, k in
                enumerate(("channels", "bits", "signed", "zeros", "requant"))}
        attrs = dict(**cols, z_out=out.zero, q_min=q_min, q_max=q_max, in_bits=xs[0].bits,
                     out_bits=out.bits, name=name, kind="concat", in_node=xs[0].node,
                     out_node=out.node)
        return leg.emit("mpq.concat", [x.var for x in xs] + [
            ta.const(np.array(m0s, np.int32)), ta.const(np.array(n0s, np.int32))], attrs)

    def golden(self, op_name, args, a):
        return concat(args[:-2], _parts_of(a), args[-2], args[-1], int(a["z_out"]),
                      int(a["q_min"]), int(a["q_max"]))

    def spec_from_call(self, call, common, get):
        from ..codegen.kernels import KernelSpec

        return KernelSpec("concat", parts=_parts_of(call.attrs), **common)

    def validate_spec(self, s, bad):
        if len(s.parts) < 2 or any(len(p) != 5 for p in s.parts):
            bad(f"concat parts {s.parts} (at least two of (C, bits, signed, z, requant))")
        if s.out_shape[:-1] != s.in_shape[:-1] or s.in_shape[0] != 1 or \
                s.out_shape[-1] != sum(p[0] for p in s.parts):
            bad(f"concat shapes {s.in_shape} -> {s.out_shape} with parts {s.parts}")

    def c_args(self, spec):
        return tuple(f"const uint8_t *x{i}" for i in range(len(spec.parts))) + (
            "const int32_t *m0", "const int8_t *n0", "uint8_t *y")

    def build_kernel(self, spec, name):
        return plain_kernel(spec), 0, None

    def call_args(self, acts, cargs, y):
        return acts + cargs + [y]

    def requant_flags(self, spec, consts):
        from ..reference.icn import ties_possible

        req = [i for i, p in enumerate(spec.parts) if p[4]]
        return (ties_possible(consts[0][req], consts[1][req]) if req else True), False

    def pack_params(self, spec, consts):
        from ..codegen.kernels import int_le_bytes

        k = len(spec.parts)
        return {"m0": ("int32_t", int_le_bytes(consts[0], "<i4", k, "m0")),
                "n0": ("int8_t", int_le_bytes(consts[1], "i1", k, "n0"))}
