"""MaxPool: any kernel, stride and padding (symmetric or not, ceil mode), on 8/4/2-bit
activations; a Relu after it is fused (a clamp).

    ONNX     MaxPool (kernel_shape, strides, pads, ceil_mode; auto_pad; dilations 1,
             storage_order 0, no Indices output) [-> Relu]
    plan     kind maxpool: no weights; its output carries its input's precision
    Relax    mpq.max_pool(x, m0, n0) on NHWC (the ONNX frontend's nn.max_pool2d)
    golden   m = max over the window's elements inside the image (padding never wins);
             requant 0 (input and output share scale and zero point):
                 y = clamp(m, q_min, q_max)
             requant 1:  y = requantize(m - z_in, m0, n0, z_out, q_min, q_max), one
                 multiplier M = S_in / S_out (reference.icn)
    kernels  plain TIR, one max reduction per output element; ABI
             int32_t mpq_max_pool_<in>_<out>_<suffix>(const uint8_t *x,
                 [const int32_t *m0, const int8_t *n0,] uint8_t *y)
             (m0/n0 only when requant = 1)
    torch    torch.nn.functional.max_pool2d; the output keeps its input's quantizer
             (quant/ twin), exported as MaxPool -> Q/DQ with the input's scale

The window attributes travel as one tuple, `window` = (kh, kw, sh, sw, pt, pl, pb, pr,
ceil_mode), in the Layer's attrs, the Relax call and the kernel spec.
"""

from __future__ import annotations

import numpy as np

from .. import tvm_adapter as ta
from ..errors import ModelError, UnsupportedOpError
from ..reference.icn import requantize
from . import register
from .base import Operator
from .common import out_hw as _out_hw
from .common import pool_window, relax_attr_int, relax_out_dtype, requant_te


def _window_of(attrs: dict) -> tuple[int, ...]:
    return tuple(int(attrs[k]) for k in ("kh", "kw", "sh", "sw", "pt", "pl", "pb", "pr",
                                         "ceil_mode"))


# ---- golden model ---------------------------------------------------------------------

def max_pool(x, window, requant, z_in, m0, n0, z_out, q_min, q_max):
    """The golden model on NHWC x (1, H, W, C); `window` as in the module docstring."""
    kh, kw, sh, sw, pt, pl, pb, pr, ceil = window
    x = np.asarray(x, np.int64)[0]
    h, w, c = x.shape
    ho, wo = _out_hw(h, w, window)
    low = np.iinfo(np.int64).min
    hp, wp = max(h + pt + pb, (ho - 1) * sh + kh), max(w + pl + pr, (wo - 1) * sw + kw)
    xp = np.full((hp, wp, c), low, np.int64)
    xp[pt:pt + h, pl:pl + w] = x
    m = np.full((ho, wo, c), low, np.int64)
    for i in range(kh):
        for j in range(kw):
            m = np.maximum(m, xp[i:i + sh * (ho - 1) + 1:sh, j:j + sw * (wo - 1) + 1:sw])
    if requant:
        return requantize(m - z_in, m0, n0, z_out, q_min, q_max)[None]
    return np.clip(m, q_min, q_max)[None]


# ---- Relax op --------------------------------------------------------------------------

def _pool_te(x, m0, n0, *, window, requant, z_in, z_out, q_min, q_max, out_dtype):
    te, tirx = ta.te(), ta.tirx()
    kh, kw, sh, sw, pt, pl, pb, pr, ceil = window
    _, h, w, c = (int(v) for v in x.shape)
    ho, wo = _out_hw(h, w, window)
    ri, rj = te.reduce_axis((0, kh), "ri"), te.reduce_axis((0, kw), "rj")

    def xin(n, i, j, ch):
        inside = tirx.all(i >= pt, i < h + pt, j >= pl, j < w + pl)
        v = x[n, tirx.max(tirx.min(i - pt, h - 1), 0), tirx.max(tirx.min(j - pl, w - 1), 0), ch]
        return tirx.if_then_else(inside, v.astype("int32"), tirx.const(-(1 << 30), "int32"))

    m = te.compute((1, ho, wo, c), lambda n, y, xx, ch: te.max(
        xin(n, y * sh + ri, xx * sw + rj, ch), axis=[ri, rj]), name="acc")
    if requant:
        return te.compute((1, ho, wo, c), lambda *i: requant_te(
            m(*i) - z_in, m0[0], n0[0], z_out, q_min, q_max).astype(out_dtype), name="icn")
    return te.compute((1, ho, wo, c), lambda *i: tirx.max(tirx.min(
        m(*i), tirx.const(q_max, "int32")), tirx.const(q_min, "int32")).astype(out_dtype),
        name="clamp")


def _legalize_relax(bb, call):
    a = {k: call.attrs[k] for k in call.attrs.keys()}
    i = relax_attr_int
    return bb.call_te(lambda *args: _pool_te(
        *args, window=_window_of(a), requant=i(a, "requant"), z_in=i(a, "z_in"),
        z_out=i(a, "z_out"), q_min=i(a, "q_min"), q_max=i(a, "q_max"),
        out_dtype=relax_out_dtype(a)), *call.args, primfunc_name_hint="mpq_max_pool")


def _infer_relax(call, *_):
    _, h, w, c = ta.static_shape(call.args[0])
    ho, wo = _out_hw(h, w, _window_of(call.attrs))
    return ta.tensor_type((1, ho, wo, c), relax_out_dtype(call.attrs))


# ---- the plain kernel ------------------------------------------------------------------

def plain_kernel(spec):
    """Packed NHWC max pooling: padding never wins (out-of-image taps are skipped by a
    value below every input), then a clamp or the ICN requantization."""
    from ..codegen import kernel_te as kt
    from ..reference.packing import row_bytes

    te, tirx = ta.te(), ta.tirx()
    kh, kw, sh, sw, pt, pl, pb, pr, ceil = spec.window
    _, h, w, c = spec.in_shape
    _, ho, wo, _ = spec.out_shape
    requant = spec.requant
    x = te.placeholder((h, w, row_bytes(c, spec.in_bits)), "uint8", "x")
    m0 = te.placeholder((1,), "int32", "m0")
    n0 = te.placeholder((1,), "int8", "n0")
    ri, rj = te.reduce_axis((0, kh), "kh"), te.reduce_axis((0, kw), "kw")
    n_acc, clamp = kt.acc_channels(c, kt.WINDOW_CHANNEL_BLOCK)

    def xin(i, j, ch):
        v = kt.load(x, (tirx.max(tirx.min(i - pt, h - 1), 0),
                        tirx.max(tirx.min(j - pl, w - 1), 0)), ch, spec.in_bits, spec.in_signed)
        if not (pt or pl or pb or pr or ceil):
            return v
        inside = tirx.all(i >= pt, i < h + pt, j >= pl, j < w + pl)
        return tirx.if_then_else(inside, v, tirx.const(-(1 << 30), "int32"))

    acc = te.compute((ho, wo, n_acc), lambda i, j, ch: te.max(
        xin(i * sh + ri, j * sw + rj, clamp(ch)), axis=[ri, rj]), name="acc")
    def value(i, j, ch):
        if requant:
            return kt.requantize(acc[i, j, ch] - spec.z_in, m0[0], n0[0], spec.z_out,
                                 spec.q_min, spec.q_max, spec.ties)
        return tirx.max(tirx.min(acc[i, j, ch], tirx.const(spec.q_max, "int32")),
                        tirx.const(spec.q_min, "int32"))

    tensors = [x, m0, n0] if requant else [x]
    y = kt.pack_rows((ho, wo), c, spec.out_bits, value)
    return kt.scheduled(tensors + [y], spec.out_bits, channel_block=kt.WINDOW_CHANNEL_BLOCK)


@register
class MaxPool(Operator):
    name = "max_pool"
    kinds = ("maxpool",)
    onnx_types = ("MaxPool",)
    mpq_ops = {"mpq.max_pool": (3, _infer_relax, _legalize_relax)}
    relax_patterns = ("relax.nn.max_pool2d",)
    kernel_kinds = ("max_pool",)
    c_kind = {"max_pool": "max_pool"}
    colors = {"maxpool": "#937860", "max_pool": "#937860"}
    torch_face = "tvm_mpq.quant.faces.max_pool:MaxPoolFace"

    def from_onnx(self, a, node):
        from ..frontend.graph import Layer

        op, at = node.op_type, a.attrs(node)
        x, in_shape, out_shape = a.image_io(node)
        if len(node.output) > 1 and node.output[1]:
            raise UnsupportedOpError(node.name, op, "the Indices output")
        if int(at.get("storage_order", 0)):
            raise UnsupportedOpError(node.name, op, "storage_order 1")
        window = pool_window(node, at, in_shape)
        h, w = in_shape[2:]
        k, s, pads = window[0:2], window[2:4], window[4:8]
        want = [1, in_shape[1], *_out_hw(h, w, window)]
        if list(out_shape) != want or min(want) < 1:
            raise ModelError(f"node '{node.name}' ({op}): output shape {list(out_shape)}, "
                             f"expected {want} (kernel {k}, strides {s}, pads {pads})")
        return Layer(node.name, "maxpool", [x], node.output[0], in_shape, out_shape,
                     macs=int(np.prod(out_shape)) * k[0] * k[1], kernel=k[0], stride=s[0],
                     pad=pads[0], nodes=[node.name], attrs={"window": list(window)})

    def legalize(self, leg, e, fused, out, q_min, q_max):
        x = leg.act_input(e.args[0])
        a = e.attrs
        if str(a.layout) != "NCHW" or any(int(d) != 1 for d in a.dilation):
            raise ModelError(f"node '{out.node}': max pooling with layout {a.layout} or "
                             "dilation")
        k, s, p = ([int(v) for v in a.pool_size], [int(v) for v in a.strides],
                   [int(v) for v in a.padding])
        if len(p) == 2:
            p = p + p
        window = dict(kh=k[0], kw=k[1], sh=s[0], sw=s[1], pt=p[0], pl=p[1], pb=p[2],
                      pr=p[3], ceil_mode=int(bool(a.ceil_mode)))
        same = abs(x.scale - out.scale) <= 1e-6 * out.scale and x.zero == out.zero
        name = leg.layer_name("maxpool")
        m0, n0 = (1 << 30, 1) if same else \
            leg.multipliers(f"layer '{name}'", x.scale / out.scale)
        attrs = dict(**window, requant=int(not same), z_in=x.zero, z_out=out.zero,
                     q_min=q_min, q_max=q_max, in_bits=x.bits, out_bits=out.bits, name=name,
                     kind="maxpool", in_node=x.node, out_node=out.node)
        return leg.emit("mpq.max_pool", [
            x.var, ta.const(np.array([m0], np.int32)), ta.const(np.array([n0], np.int32))],
            attrs)

    def golden(self, op_name, args, a):
        x, m0, n0 = args
        return max_pool(x, _window_of(a), int(a["requant"]), int(a["z_in"]), m0, n0,
                        int(a["z_out"]), int(a["q_min"]), int(a["q_max"]))

    def spec_from_call(self, call, common, get):
        from ..codegen.kernels import KernelSpec

        a = {k: call.attrs[k] for k in call.attrs.keys()}
        win = _window_of(a)
        return KernelSpec("max_pool", kernel=win[0], stride=win[2], window=win,
                          requant=bool(get("requant")), z_in=get("z_in"), **common)

    def validate_spec(self, s, bad):
        if len(s.window) != 9 or min(s.window[:4]) < 1 or min(s.window[4:]) < 0:
            bad(f"max pool window {s.window} (kh, kw, sh, sw, pt, pl, pb, pr, ceil_mode)")
        if len(s.in_shape) != 4 or len(s.out_shape) != 4 or s.in_shape[0] != 1:
            bad(f"NHWC batch-1 shapes expected, got {s.in_shape} -> {s.out_shape}")
        _, h, w, c = s.in_shape
        want = (1, *_out_hw(h, w, s.window), c)
        if s.out_shape != want:
            bad(f"output shape {s.out_shape}, expected {want}")

    def c_args(self, spec):
        if spec.requant:
            return ("const uint8_t *x", "const int32_t *m0", "const int8_t *n0", "uint8_t *y")
        return ("const uint8_t *x", "uint8_t *y")

    def build_kernel(self, spec, name):
        return plain_kernel(spec), 0, None

    def requant_flags(self, spec, consts):
        from ..reference.icn import ties_possible

        return (ties_possible(consts[0], consts[1]) if spec.requant else True), False

    def pack_params(self, spec, consts):
        from ..codegen.kernels import int_le_bytes

        if not spec.requant:
            return {}
        m0, n0 = consts
        return {"m0": ("int32_t", int_le_bytes(m0, "<i4", 1, "m0")),
                "n0": ("int8_t", int_le_bytes(n0, "i1", 1, "n0"))}
