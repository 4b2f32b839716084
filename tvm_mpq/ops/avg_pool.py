"""Average pooling: GlobalAveragePool, and AveragePool without padding.

    ONNX     GlobalAveragePool (any H x W map); AveragePool (square kernel and stride, pads
             all 0, count_include_pad 0)
    plan     kind pool: no weights; its output carries its input's precision
    Relax    mpq.avg_pool_icn(x, m0, n0) on NHWC (the ONNX frontend's `mean` over H, W);
             attributes kernel, stride, and kernel_w when the window is not square
    golden   acc = sum over the window of (x - z_in); y = requantize(acc, m0, n0, z_out,
             q_min, q_max) with M = S_in / (S_out * kh * kw), one multiplier for all channels
    kernels  plain TIR (kernel_te.avg_pool)
"""

from __future__ import annotations

import numpy as np

from .. import tvm_adapter as ta
from ..errors import ModelError, UnsupportedOpError
from ..reference.icn import check_acc, requantize
from . import register
from .base import Operator
from .common import relax_attr_int, relax_out_dtype, requant_te


def avg_pool(x, k, stride, z_in, m0, n0, z_out, q_min, q_max, *, kw=None):
    """The golden model: average pooling without padding, one ICN multiplier; window k x k
    (k x kw when kw is given)."""
    x = np.asarray(x, np.int64)[0] - z_in
    h, w, c = x.shape
    kw = k if kw is None else kw
    ho, wo = (h - k) // stride + 1, (w - kw) // stride + 1
    acc = np.zeros((ho, wo, c), np.int64)
    for i in range(k):
        for j in range(kw):
            acc += x[i:i + stride * ho:stride, j:j + stride * wo:stride]
    acc = check_acc(acc, "avg_pool")
    return requantize(acc, m0, n0, z_out, q_min, q_max)[None]


def _pool_te(x, m0, n0, *, kernel, kernel_w, stride, z_in, z_out, q_min, q_max, out_dtype):
    te = ta.te()
    _, h, w, c = (int(v) for v in x.shape)
    ho, wo = (h - kernel) // stride + 1, (w - kernel_w) // stride + 1
    ri = te.reduce_axis((0, kernel), "ri")
    rj = te.reduce_axis((0, kernel_w), "rj")
    acc = te.compute((1, ho, wo, c), lambda n, y, xx, ch: te.sum(
        x[n, y * stride + ri, xx * stride + rj, ch].astype("int32") - z_in, axis=[ri, rj]),
        name="acc")
    return te.compute((1, ho, wo, c), lambda *i: requant_te(acc(*i), m0[0], n0[0], z_out, q_min,
                                                            q_max).astype(out_dtype), name="icn")


def _legalize_relax(bb, call):
    a = {k: call.attrs[k] for k in call.attrs.keys()}
    i = relax_attr_int
    return bb.call_te(lambda *args: _pool_te(
        *args, kernel=i(a, "kernel"), kernel_w=i(a, "kernel_w", i(a, "kernel")),
        stride=i(a, "stride"), z_in=i(a, "z_in"),
        z_out=i(a, "z_out"), q_min=i(a, "q_min"), q_max=i(a, "q_max"),
        out_dtype=relax_out_dtype(a)), *call.args, primfunc_name_hint="mpq_avg_pool")


def _infer_relax(call, *_):
    a = call.attrs
    _, h, w, c = ta.static_shape(call.args[0])
    k, s = int(a["kernel"]), int(a["stride"])
    kw = int(a["kernel_w"]) if "kernel_w" in a.keys() else k
    return ta.tensor_type((1, (h - k) // s + 1, (w - kw) // s + 1, c), relax_out_dtype(a))


# ---- the plain kernel (TIR from TE; layouts in codegen.kernels) ----------------------

def plain_kernel(spec):
    """Average pooling without padding; one multiplier (m0[0], n0[0]) for all channels."""
    from ..codegen import kernel_te as kt
    from ..reference.packing import row_bytes

    te = ta.te()
    _, h, w, c = spec.in_shape
    _, ho, wo, _ = spec.out_shape
    kh, kw, s = *spec.geometry[:2], spec.stride
    x = te.placeholder((h, w, row_bytes(c, spec.in_bits)), "uint8", "x")
    m0 = te.placeholder((1,), "int32", "m0")
    n0 = te.placeholder((1,), "int8", "n0")
    rh, rw = te.reduce_axis((0, kh), "kh"), te.reduce_axis((0, kw), "kw")
    n_acc, clamp = kt.acc_channels(c, kt.WINDOW_CHANNEL_BLOCK)
    acc = te.compute((ho, wo, n_acc), lambda i, j, ch: te.sum(
        kt.load(x, (i * s + rh, j * s + rw), clamp(ch), spec.in_bits, spec.in_signed)
        - spec.z_in, axis=[rh, rw]), name="acc")
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
    relax_patterns = ("relax.mean",)
    kernel_kinds = ("avg_pool",)
    c_kind = {"avg_pool": "avg_pool"}
    colors = {"pool": "#ccb974", "avg_pool": "#ccb974"}
    torch_face = "tvm_mpq.quant.faces.avg_pool:AvgPoolFace"

    def from_onnx(self, a, node):
        from ..frontend.graph import Layer

        op, at = node.op_type, a.attrs(node)
        x, in_shape, out_shape = a.image_io(node)
        if op == "AveragePool":
            k = at.get("kernel_shape", [1, 1])
            if list(at.get("pads", [0, 0, 0, 0])) != [0] * 4 or at.get("count_include_pad", 0):
                raise UnsupportedOpError(node.name, op, "padded average pooling")
            if k[0] != k[1] or len(set(at.get("strides", [1, 1]))) != 1:
                raise UnsupportedOpError(node.name, op, f"non-square pooling {k}")
            kernel, stride = int(k[0]), int(at.get("strides", [1, 1])[0])
        else:
            kernel, stride = int(in_shape[2]), 1
        kw = int(in_shape[3]) if op != "AveragePool" else kernel
        want = [1, in_shape[1]] + [(d - kernel) // stride + 1 if op == "AveragePool" else 1
                                   for d in in_shape[2:]]
        if kernel < 1 or stride < 1 or list(out_shape) != want:
            raise ModelError(f"node '{node.name}' ({op}): output shape {list(out_shape)}, "
                             f"expected {want} (kernel {kernel}, stride {stride})")
        macs = int(np.prod(out_shape)) * kernel * kw
        return Layer(node.name, "pool", [x], node.output[0], in_shape, out_shape,
                     macs=macs, kernel=kernel, stride=stride, nodes=[node.name])

    def legalize(self, leg, e, fused, out, q_min, q_max):
        x = leg.act_input(e.args[0])
        axes = sorted(int(v) for v in e.attrs.axis)
        _, h, w, _ = ta.static_shape(x.var)
        if axes != [2, 3]:
            raise ModelError(f"node '{out.node}': only global average pooling (over H, W)")
        name = leg.layer_name("pool")
        m0, n0 = leg.multipliers(f"layer '{name}'", x.scale / (out.scale * h * w))
        attrs = dict(kernel=h, stride=1, z_in=x.zero, z_out=out.zero, q_min=q_min, q_max=q_max,
                     in_bits=x.bits, out_bits=out.bits, name=name, kind="pool", in_node=x.node,
                     out_node=out.node)
        if w != h:
            attrs["kernel_w"] = w
        return leg.emit("mpq.avg_pool_icn", [
            x.var, ta.const(np.array([m0], np.int32)), ta.const(np.array([n0], np.int32))],
            attrs)

    def golden(self, op_name, args, a):
        x, m0, n0 = args
        return avg_pool(x, int(a["kernel"]), int(a["stride"]), int(a["z_in"]), m0, n0,
                        int(a["z_out"]), int(a["q_min"]), int(a["q_max"]),
                        kw=int(a["kernel_w"]) if "kernel_w" in a.keys() else None)

    def spec_from_call(self, call, common, get):
        from ..codegen.kernels import KernelSpec

        kh = get("kernel")
        return KernelSpec("avg_pool", kernel=kh, kernel_hw=(kh, get("kernel_w", kh)),
                          stride=get("stride", 1), z_in=get("z_in"), **common)

    def validate_spec(self, s, bad):
        from ..codegen.kernels import validate_window

        if s.pad:
            bad("average pooling has no padding")
        validate_window(s, bad, s.in_shape[3] if len(s.in_shape) == 4 else 0)

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
