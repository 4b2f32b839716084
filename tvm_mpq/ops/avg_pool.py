"""Average pooling: GlobalAveragePool (any H x W map) and AveragePool (any kernel and
stride; padding counted in the divisor).

    ONNX     GlobalAveragePool; AveragePool (kernel_shape, strides, pads or auto_pad;
             count_include_pad 1, or 0 when there is no padding; ceil_mode 0)
    plan     kind pool: no weights; its output carries its input's precision
    Relax    mpq.avg_pool_icn(x, m0, n0) on NHWC (the ONNX frontend's `mean` over H, W, or
             nn.avg_pool2d); attributes `kernel`, `stride` (square) and the window `kh, kw,
             sh, sw, pt, pl, pb, pr`
    golden   acc = sum over the window of (x - z_in), padded taps contributing 0 (they are
             the real value 0); y = requantize(acc, m0, n0, z_out, q_min, q_max) with
             M = S_in / (S_out * kh * kw), one multiplier for all channels
    kernels  plain TIR; square unpadded windows keep the spec fields `kernel`, `stride`,
             others set `window` (kh, kw, sh, sw, pt, pl, pb, pr, 0)
"""

from __future__ import annotations

import numpy as np

from .. import tvm_adapter as ta
from ..errors import ModelError, UnsupportedOpError
from ..reference.icn import check_acc, requantize
from . import register
from .base import Operator
from .common import out_hw, pool_window, relax_attr_int, relax_out_dtype, requant_te


def avg_pool(x, k, stride, z_in, m0, n0, z_out, q_min, q_max, window=None):
    """The golden model: the window's sum of (x - z_in), one ICN multiplier. `window`
    (kh, kw, sh, sw, pt, pl, pb, pr[, ceil]) overrides the square `k`, `stride`."""
    kh, kw, sh, sw, pt, pl, pb, pr = _win(k, stride, window)
    x = np.asarray(x, np.int64)[0] - z_in
    h, w, c = x.shape
    ho, wo = out_hw(h, w, (kh, kw, sh, sw, pt, pl, pb, pr, 0))
    xp = np.zeros((h + pt + pb, w + pl + pr, c), np.int64)
    xp[pt:pt + h, pl:pl + w] = x
    acc = np.zeros((ho, wo, c), np.int64)
    for i in range(kh):
        for j in range(kw):
            acc += xp[i:i + sh * (ho - 1) + 1:sh, j:j + sw * (wo - 1) + 1:sw]
    acc = check_acc(acc, "avg_pool")
    return requantize(acc, m0, n0, z_out, q_min, q_max)[None]


def _win(k, stride, window) -> tuple[int, ...]:
    if window:
        return tuple(int(v) for v in window[:8])
    return (k, k, stride, stride, 0, 0, 0, 0)


def _attr_window(a) -> tuple[int, ...]:
    """The window of an mpq.avg_pool_icn call (old calls carry only kernel and stride)."""
    if "kh" in a:
        return tuple(int(a[k]) for k in ("kh", "kw", "sh", "sw", "pt", "pl", "pb", "pr"))
    return _win(int(a["kernel"]), int(a["stride"]), None)


def _pool_te(x, m0, n0, *, window, z_in, z_out, q_min, q_max, out_dtype):
    te, tirx = ta.te(), ta.tirx()
    kh, kw, sh, sw, pt, pl, pb, pr = window
    _, h, w, c = (int(v) for v in x.shape)
    ho, wo = out_hw(h, w, (*window, 0))
    ri = te.reduce_axis((0, kh), "ri")
    rj = te.reduce_axis((0, kw), "rj")

    def tap(n, i, j, ch):
        if not (pt or pl or pb or pr):
            return x[n, i, j, ch].astype("int32") - z_in
        inside = tirx.all(i >= pt, i < h + pt, j >= pl, j < w + pl)
        v = x[n, tirx.max(tirx.min(i - pt, h - 1), 0), tirx.max(tirx.min(j - pl, w - 1), 0), ch]
        return tirx.if_then_else(inside, v.astype("int32") - z_in, tirx.const(0, "int32"))

    acc = te.compute((1, ho, wo, c), lambda n, y, xx, ch: te.sum(
        tap(n, y * sh + ri, xx * sw + rj, ch), axis=[ri, rj]), name="acc")
    return te.compute((1, ho, wo, c), lambda *i: requant_te(acc(*i), m0[0], n0[0], z_out, q_min,
                                                            q_max).astype(out_dtype), name="icn")


def _legalize_relax(bb, call):
    a = {k: call.attrs[k] for k in call.attrs.keys()}
    i = relax_attr_int
    return bb.call_te(lambda *args: _pool_te(
        *args, window=_attr_window(a), z_in=i(a, "z_in"),
        z_out=i(a, "z_out"), q_min=i(a, "q_min"), q_max=i(a, "q_max"),
        out_dtype=relax_out_dtype(a)), *call.args, primfunc_name_hint="mpq_avg_pool")


def _infer_relax(call, *_):
    a = {k: call.attrs[k] for k in call.attrs.keys()}
    _, h, w, c = ta.static_shape(call.args[0])
    ho, wo = out_hw(h, w, (*_attr_window(a), 0))
    return ta.tensor_type((1, ho, wo, c), relax_out_dtype(a))


# ---- the plain kernel (TIR from TE; layouts in codegen.kernels) ----------------------

def plain_kernel(spec):
    """Average pooling; one multiplier (m0[0], n0[0]) for all channels."""
    from ..codegen import kernel_te as kt
    from ..reference.packing import row_bytes

    te = ta.te()
    _, h, w, c = spec.in_shape
    _, ho, wo, _ = spec.out_shape
    kh, kw, sh, sw, pt, pl, pb, pr = _win(spec.kernel, spec.stride, spec.window)
    x = te.placeholder((h, w, row_bytes(c, spec.in_bits)), "uint8", "x")
    m0 = te.placeholder((1,), "int32", "m0")
    n0 = te.placeholder((1,), "int8", "n0")
    rh, rw = te.reduce_axis((0, kh), "kh"), te.reduce_axis((0, kw), "kw")
    n_acc, clamp = kt.acc_channels(c, kt.WINDOW_CHANNEL_BLOCK)
    if not (pt or pl or pb or pr):
        acc = te.compute((ho, wo, n_acc), lambda i, j, ch: te.sum(
            kt.load(x, (i * sh + rh, j * sw + rw), clamp(ch), spec.in_bits, spec.in_signed)
            - spec.z_in, axis=[rh, rw]), name="acc")
    else:                       # padded taps are the real value 0: they add nothing
        tirx = ta.tirx()

        def tap(i, j, ch):
            inside = tirx.all(i >= pt, i < h + pt, j >= pl, j < w + pl)
            v = kt.load(x, (tirx.max(tirx.min(i - pt, h - 1), 0),
                            tirx.max(tirx.min(j - pl, w - 1), 0)), ch, spec.in_bits,
                        spec.in_signed) - spec.z_in
            return tirx.if_then_else(inside, v, tirx.const(0, "int32"))

        acc = te.compute((ho, wo, n_acc), lambda i, j, ch: te.sum(
            tap(i * sh + rh, j * sw + rw, clamp(ch)), axis=[rh, rw]), name="acc")
    y = kt.pack_rows((ho, wo), c, spec.out_bits, lambda i, j, ch: kt.requantize(
        acc[i, j, ch], m0[0], n0[0], spec.z_out,
        spec.q_min, spec.q_max, spec.ties))
    return kt.scheduled([x, m0, n0, y], spec.out_bits, channel_block=kt.WINDOW_CHANNEL_BLOCK)


@register
class AvgPool(Operator):
    name = "avg_pool"
    kinds = ("pool",)
    onnx_types = ("GlobalAveragePool", "AveragePool")
    mpq_ops = {"mpq.avg_pool_icn": (3, _infer_relax, _legalize_relax)}
    relax_patterns = ("relax.mean", "relax.nn.avg_pool2d")
    kernel_kinds = ("avg_pool",)
    c_kind = {"avg_pool": "avg_pool"}
    colors = {"pool": "#ccb974", "avg_pool": "#ccb974"}
    torch_face = "tvm_mpq.quant.faces.avg_pool:AvgPoolFace"

    def from_onnx(self, a, node):
        from ..frontend.graph import Layer

        op, at = node.op_type, a.attrs(node)
        x, in_shape, out_shape = a.image_io(node)
        h, w = in_shape[2:]
        if op == "AveragePool":
            window = pool_window(node, at, in_shape)
            if window[8]:
                raise UnsupportedOpError(node.name, op, "ceil_mode 1")
            if any(window[4:8]) and not at.get("count_include_pad", 0):
                raise UnsupportedOpError(node.name, op, "padding left out of the average "
                                         "(count_include_pad 0 with pads)")
        else:
            window = (h, w, 1, 1, 0, 0, 0, 0, 0)
        want = [1, in_shape[1], *out_hw(h, w, window)]
        if list(out_shape) != want or min(want) < 1:
            raise ModelError(f"node '{node.name}' ({op}): output shape {list(out_shape)}, "
                             f"expected {want} (kernel {list(window[:2])}, strides "
                             f"{list(window[2:4])}, pads {list(window[4:8])})")
        macs = int(np.prod(out_shape)) * window[0] * window[1]
        return Layer(node.name, "pool", [x], node.output[0], in_shape, out_shape,
                     macs=macs, kernel=window[0], stride=window[2], pad=window[4],
                     nodes=[node.name], attrs={"window": list(window)})

    def legalize(self, leg, e, fused, out, q_min, q_max):
        x = leg.act_input(e.args[0])
        _, h, w, _ = ta.static_shape(x.var)
        if ta.is_call(e, "relax.mean"):
            axes = sorted(int(v) for v in e.attrs.axis)
            if axes != [2, 3]:
                raise ModelError(f"node '{out.node}': a mean over axes {axes} (only global "
                                 "average pooling over H, W)")
            win = (h, w, 1, 1, 0, 0, 0, 0)
        else:                                   # relax.nn.avg_pool2d
            a = e.attrs
            if str(a.layout) != "NCHW" or any(int(d) != 1 for d in a.dilation) \
                    or bool(a.ceil_mode):
                raise ModelError(f"node '{out.node}': average pooling with layout {a.layout}, "
                                 "dilation or ceil mode")
            p = [int(v) for v in a.padding]
            p = p + p if len(p) == 2 else p
            if any(p) and not bool(a.count_include_pad):
                raise ModelError(f"node '{out.node}': average pooling that leaves the "
                                 "padding out of the divisor")
            win = (*[int(v) for v in a.pool_size], *[int(v) for v in a.strides], *p)
        name = leg.layer_name("pool")
        m0, n0 = leg.multipliers(f"layer '{name}'", x.scale / (out.scale * win[0] * win[1]))
        square = win[0] == win[1] and win[2] == win[3]
        attrs = dict(kernel=win[0] if square else 0, stride=win[2] if square else 0,
                     **dict(zip(("kh", "kw", "sh", "sw", "pt", "pl", "pb", "pr"), win)),
                     z_in=x.zero, z_out=out.zero, q_min=q_min, q_max=q_max,
                     in_bits=x.bits, out_bits=out.bits, name=name, kind="pool", in_node=x.node,
                     out_node=out.node)
        return leg.emit("mpq.avg_pool_icn", [
            x.var, ta.const(np.array([m0], np.int32)), ta.const(np.array([n0], np.int32))],
            attrs)

    def golden(self, op_name, args, a):
        x, m0, n0 = args
        return avg_pool(x, 0, 0, int(a["z_in"]), m0, n0, int(a["z_out"]), int(a["q_min"]),
                        int(a["q_max"]), window=_attr_window(a))

    def spec_from_call(self, call, common, get):
        from ..codegen.kernels import KernelSpec

        a = {k: call.attrs[k] for k in call.attrs.keys()}
        win = _attr_window(a)
        square = win[0] == win[1] and win[2] == win[3] and not any(win[4:])
        # a square unpadded window keeps the spec of before the window field (same C)
        return KernelSpec("avg_pool", kernel=win[0], stride=win[2],
                          window=() if square else (*win, 0), z_in=get("z_in"), **common)

    def validate_spec(self, s, bad):
        from ..codegen.kernels import validate_window

        if s.pad:
            bad("average pooling pads through `window`, not `pad`")
        if not s.window:
            validate_window(s, bad, s.in_shape[3] if len(s.in_shape) == 4 else 0)
            return
        if len(s.window) != 9 or min(s.window[:4]) < 1 or min(s.window[4:8]) < 0 \
                or s.window[8]:
            bad(f"average pool window {s.window} (kh, kw, sh, sw, pt, pl, pb, pr, 0)")
        if len(s.in_shape) != 4 or len(s.out_shape) != 4 or s.in_shape[0] != 1:
            bad(f"NHWC batch-1 shapes expected, got {s.in_shape} -> {s.out_shape}")
        _, h, w, c = s.in_shape
        want = (1, *out_hw(h, w, s.window), c)
        if s.out_shape != want:
            bad(f"output shape {s.out_shape}, expected {want}")

    def c_args(self, spec):
        return ("const uint8_t *x", "const int32_t *m0", "const int8_t *n0", "uint8_t *y")

    def build_kernel(self, spec, name):
        return plain_kernel(spec), 0, None

    def requant_flags(self, spec, consts):
        from ..reference.icn import ties_possible

        return ties_possible(consts[0], consts[1]), False

    def pack_params(self, spec, consts):
        from ..codegen.kernels import int_le_bytes

        m0, n0 = consts
        return {"m0": ("int32_t", int_le_bytes(m0, "<i4", 1, "m0")),
                "n0": ("int8_t", int_le_bytes(n0, "i1", 1, "n0"))}
