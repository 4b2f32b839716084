"""Conv: full convolution, pointwise (1x1, no padding) and depthwise (group = channels,
multiplier 1), with the BatchNormalization and Relu/Clip(0, M) that follow it fused.

    ONNX     Conv (square kernel, stride 1/2, symmetric pads) [-> BatchNormalization]
             [-> Relu | Clip(0, M)]
    plan     kinds conv (C), pointwise (P), depthwise (D); weights OIHW
    Relax    mpq.conv2d_icn(x, w, w_zero, bias, m0, n0) on NHWC; w OHWI (depthwise
             (C, KH, KW, 1)); int32 accumulation with zero points, then ICN
    golden   acc[c] = (sum (x - z_in)(w[c] - w_zero[c])) << acc_shift + bias[c];
             y = requantize(acc, m0, n0, z_out, q_min, q_max)   (reference.icn)
    kernels  plain TIR (codegen.kernel_te.window_conv) or the DSP kernels
             (codegen.kernel_dsp: im2col GEMM, row depthwise; Cortex-M7 assembly from
             codegen.asm_m7) with scratch in the static arena

Padding uses the input zero point (the real value 0), so padded taps contribute nothing.
"""

from __future__ import annotations

import numpy as np

from .. import tvm_adapter as ta
from ..errors import ModelError, UnsupportedOpError
from ..reference.icn import check_acc, requantize
from . import register
from .base import Operator
from .common import relax_attr_int, relax_out_dtype, requant_te
from .weighted import WeightedOperator

SUPPORTED_STRIDES = (1, 2)


# ---- golden model ---------------------------------------------------------------------

def _im2col(x: np.ndarray, k: int, stride: int, pad: int, z_in: int) -> np.ndarray:
    """(H, W, C) -> (Ho, Wo, k, k, C) patches, padded with z_in."""
    h, w, c = x.shape
    xp = np.full((h + 2 * pad, w + 2 * pad, c), z_in, dtype=np.int64)
    xp[pad:pad + h, pad:pad + w] = x
    ho = (h + 2 * pad - k) // stride + 1
    wo = (w + 2 * pad - k) // stride + 1
    cols = np.empty((ho, wo, k, k, c), np.int64)
    for i in range(k):
        for j in range(k):
            cols[:, :, i, j, :] = xp[i:i + stride * ho:stride, j:j + stride * wo:stride, :]
    return cols


def conv2d_acc(x, w, w_zero, bias, z_in, stride, pad, depthwise=False, acc_shift=0):
    """int32 accumulators (Ho, Wo, Cout) of a conv / depthwise conv on NHWC x (1,H,W,C)."""
    x = np.asarray(x, np.int64)[0]
    w = np.asarray(w, np.int64)
    k = w.shape[1]
    cols = _im2col(x, k, stride, pad, z_in) - z_in          # (Ho, Wo, k, k, C)
    wz = w - np.asarray(w_zero, np.int64).reshape(-1, 1, 1, 1)
    if depthwise:
        # w: (C, k, k, 1)
        acc = np.einsum("hwijc,cij->hwc", cols.astype(np.float64),
                        wz[..., 0].astype(np.float64))
    else:
        ho, wo = cols.shape[:2]
        acc = cols.reshape(ho * wo, -1).astype(np.float64) @ \
            wz.reshape(wz.shape[0], -1).T.astype(np.float64)
        acc = acc.reshape(ho, wo, -1)
    acc = np.rint(acc) * float(1 << acc_shift) + np.asarray(bias, np.float64)
    return check_acc(acc, "conv2d")


def conv2d(x, w, w_zero, bias, z_in, stride, pad, m0, n0, z_out, q_min, q_max,
           depthwise=False, acc_shift=0):
    acc = conv2d_acc(x, w, w_zero, bias, z_in, stride, pad, depthwise, acc_shift)
    return requantize(acc, m0, n0, z_out, q_min, q_max)[None]


# ---- Relax op: type inference and legalization to TE ----------------------------------

def _conv_te(x, w, w_zero, bias, m0, n0, *, stride, pad, depthwise, z_in, z_out, q_min,
             q_max, out_dtype, acc_shift=0):
    te, tirx = ta.te(), ta.tirx()
    _, h, wd, c = (int(v) for v in x.shape)
    cout, k = int(w.shape[0]), int(w.shape[1])
    ho, wo = (h + 2 * pad - k) // stride + 1, (wd + 2 * pad - k) // stride + 1

    def xin(n, i, j, r):
        inside = tirx.all(i >= pad, i < h + pad, j >= pad, j < wd + pad)
        v = x[n, tirx.max(tirx.min(i - pad, h - 1), 0), tirx.max(tirx.min(j - pad, wd - 1), 0), r]
        return tirx.if_then_else(inside, v.astype("int32"), tirx.const(z_in, "int32"))

    ri = te.reduce_axis((0, k), "ri")
    rj = te.reduce_axis((0, k), "rj")
    if depthwise:
        acc = te.compute(
            (1, ho, wo, cout),
            lambda n, y, xx, co: te.sum(
                (xin(n, y * stride + ri, xx * stride + rj, co) - z_in)
                * (w[co, ri, rj, 0].astype("int32") - w_zero[co]), axis=[ri, rj]),
            name="acc")
    else:
        cin = int(w.shape[3])
        rc = te.reduce_axis((0, cin), "rc")
        acc = te.compute(
            (1, ho, wo, cout),
            lambda n, y, xx, co: te.sum(
                (xin(n, y * stride + ri, xx * stride + rj, rc) - z_in)
                * (w[co, ri, rj, rc].astype("int32") - w_zero[co]), axis=[ri, rj, rc]),
            name="acc")
    return te.compute(
        (1, ho, wo, cout),
        lambda n, y, xx, co: requant_te((acc[n, y, xx, co] << acc_shift) + bias[co], m0[co],
                                        n0[co], z_out, q_min, q_max).astype(out_dtype),
        name="icn")


def _legalize_relax(bb, call):
    a = {k: call.attrs[k] for k in call.attrs.keys()}
    i = relax_attr_int
    return bb.call_te(lambda *args: _conv_te(
        *args, stride=i(a, "stride"), pad=i(a, "pad"), depthwise=bool(i(a, "depthwise")),
        z_in=i(a, "z_in"), z_out=i(a, "z_out"), q_min=i(a, "q_min"),
        q_max=i(a, "q_max"), out_dtype=relax_out_dtype(a), acc_shift=i(a, "acc_shift", 0)),
        *call.args, primfunc_name_hint="mpq_conv2d")


def _infer_relax(call, *_):
    a = call.attrs
    x, w = call.args[0], call.args[1]
    _, h, wd, _ = ta.static_shape(x)
    cout, k = ta.static_shape(w)[:2]
    s, p = int(a["stride"]), int(a["pad"])
    return ta.tensor_type((1, (h + 2 * p - k) // s + 1, (wd + 2 * p - k) // s + 1, cout),
                          relax_out_dtype(a))


def _kind(depthwise: bool, k: int, pad: int) -> str:
    return "depthwise" if depthwise else ("pointwise" if k == 1 and pad == 0 else "conv")


# ---- the plain kernel (TIR from TE; layouts in codegen.kernels) ----------------------

def plain_kernel(spec):
    """conv / pointwise (OHWI weights) and depthwise ((KH, KW, C) weights) on NHWC."""
    from ..codegen import kernel_te as kt
    from ..reference.packing import row_bytes

    te = ta.te()
    _, h, w, c = spec.in_shape
    _, ho, wo, cout = spec.out_shape
    k, s = spec.kernel, spec.stride
    x = te.placeholder((h, w, row_bytes(c, spec.in_bits)), "uint8", "x")
    depthwise = spec.kind == "depthwise"
    w_shape = (k, k) if depthwise else (cout, k, k)
    wt = te.placeholder((*w_shape, row_bytes(c, spec.w_bits)), "uint8", "w")
    wz, bias, m0, n0 = kt.channel_params(cout, spec.w_signed)
    xin = kt.padded_input(x, spec, h, w, spec.in_bits, spec.in_signed)
    rh, rw = te.reduce_axis((0, k), "kh"), te.reduce_axis((0, k), "kw")

    def weight(o, kh, kw, ci):
        pre = (kh, kw) if depthwise else (o, kh, kw)
        return kt.load(wt, pre, ci, spec.w_bits, spec.w_signed, wz[o].astype("int32"))

    block = kt.WINDOW_CHANNEL_BLOCK if depthwise else kt.CHANNEL_BLOCK
    n_acc, clamp = kt.acc_channels(cout, block)
    if depthwise:
        acc = te.compute((ho, wo, n_acc), lambda i, j, o: te.sum(
            xin(i * s + rh, j * s + rw, clamp(o)) * weight(clamp(o), rh, rw, clamp(o)),
            axis=[rh, rw]), name="acc")
    else:
        rc = te.reduce_axis((0, c), "ci")
        acc = te.compute((ho, wo, n_acc), lambda i, j, o: te.sum(
            xin(i * s + rh, j * s + rw, rc) * weight(clamp(o), rh, rw, rc),
            axis=[rh, rw, rc]), name="acc")
    y = kt.pack_rows((ho, wo), cout, spec.out_bits, lambda i, j, o: kt.requantize(
        kt.with_bias(acc[i, j, o], bias[o], spec.acc_shift), m0[o], n0[o], spec.z_out,
        spec.q_min, spec.q_max, spec.ties))
    unroll = 0 if depthwise else kt.channel_unroll(c, spec.in_bits, spec.w_bits)
    return kt.scheduled([x, wt, wz, bias, m0, n0, y], spec.out_bits, unroll_channels=unroll,
                      channel_block=block)


@register
class Conv2d(WeightedOperator, Operator):
    name = "conv2d"
    kinds = ("conv", "depthwise", "pointwise")
    onnx_types = ("Conv",)
    letters = {"conv": "C", "depthwise": "D", "pointwise": "P"}
    mpq_ops = {"mpq.conv2d_icn": (6, _infer_relax, _legalize_relax)}
    relax_patterns = ("relax.nn.conv2d",)
    kernel_kinds = ("conv", "depthwise", "pointwise")
    c_kind = {"conv": "conv2d", "depthwise": "depthwise", "pointwise": "pointwise"}
    colors = {"conv": "#4c72b0", "depthwise": "#55a868", "pointwise": "#c44e52"}
    torch_face = "tvm_mpq.quant.faces.conv2d:ConvFace"

    # ---- frontend -----------------------------------------------------------------------
    def from_onnx(self, a, node):
        from ..frontend.graph import Layer

        op, at = node.op_type, a.attrs(node)
        x, in_shape, out_shape = a.image_io(node)
        w, n_bias = a.weights(node)
        if w.ndim != 4:
            raise UnsupportedOpError(node.name, op, f"only 2-D convolutions (weights {w.shape})")
        cout, cin_g, kh, kw = w.shape
        cin = in_shape[1]
        group = int(at.get("group", 1))
        if at.get("auto_pad", b"NOTSET") not in (b"NOTSET", "NOTSET"):
            raise UnsupportedOpError(node.name, op, "auto_pad (use explicit pads)")
        if any(d != 1 for d in at.get("dilations", [1, 1])):
            raise UnsupportedOpError(node.name, op, f"dilations {list(at['dilations'])}")
        if kh != kw:
            raise UnsupportedOpError(node.name, op, f"non-square kernel {kh}x{kw}")
        strides = list(at.get("strides", [1, 1]))
        if strides[0] != strides[1] or strides[0] not in SUPPORTED_STRIDES:
            raise UnsupportedOpError(node.name, op, f"strides {strides} (supported: 1 or 2, "
                                     "square)")
        pads = list(at.get("pads", [0, 0, 0, 0]))
        if len(set(pads)) != 1:
            raise UnsupportedOpError(node.name, op, f"asymmetric pads {pads}")
        if group < 1 or cin_g * group != cin:
            raise ModelError(f"node '{node.name}' ({op}): weights {list(w.shape)} with "
                             f"group={group} take {cin_g * group} input channels, the input "
                             f"has {cin}")
        if n_bias and n_bias != cout:
            raise ModelError(f"node '{node.name}' ({op}): {n_bias} biases for {cout} output "
                             "channels")
        if list(at.get("kernel_shape", [kh, kw])) != [kh, kw]:
            raise ModelError(f"node '{node.name}' ({op}): kernel_shape "
                             f"{list(at['kernel_shape'])} differs from the weights' {kh}x{kw}")
        want = [(d + 2 * pads[0] - kh) // strides[0] + 1 for d in in_shape[2:]]
        if list(out_shape) != [1, cout] + want:
            raise ModelError(f"node '{node.name}' ({op}): output shape {list(out_shape)}, "
                             f"expected {[1, cout] + want} from the input, weights, pads and "
                             "strides")
        if group == 1:
            kind = _kind(False, kh, pads[0])
        elif group == cin and cin_g == 1 and cout == cin:
            kind = "depthwise"
        else:
            raise UnsupportedOpError(node.name, op, f"group={group} (only 1 or depthwise with "
                                     "channel multiplier 1)")
        macs = int(np.prod(out_shape)) * cin_g * kh * kw
        return Layer(node.name, kind, [x], node.output[0], in_shape, out_shape,
                     weight_shape=tuple(w.shape), n_weights=int(w.size), n_bias=n_bias,
                     macs=macs, kernel=int(kh), stride=int(strides[0]), pad=int(pads[0]),
                     nodes=[node.name])

    # ---- plan -----------------------------------------------------------------------------
    def plan_scratch_bytes(self, layer) -> int:
        """conv, depthwise: an im2col buffer of one receptive field in int16
        (kernel * kernel * in_channels * 2); pointwise: one input pixel widened to int16."""
        cin = layer.in_shape[1]
        if layer.kind == "pointwise":
            return cin * 2
        return layer.kernel * layer.kernel * cin * 2

    # ---- Relax: the fake-quant chain -> mpq.conv2d_icn -----------------------------------
    def legalize(self, leg, e, fused, out, q_min, q_max):
        bias, bn = fused
        x = leg.act_input(e.args[0])
        w = leg.qweight(e.args[1])
        a = e.attrs
        groups = int(a.groups)
        strides, pads = [int(v) for v in a.strides], [int(v) for v in a.padding]
        if str(a.data_layout) != "NCHW" or str(a.kernel_layout) != "OIHW":
            raise ModelError(f"node '{w.node}': conv layout {a.data_layout}/{a.kernel_layout}")
        if any(int(d) != 1 for d in a.dilation) or len(set(strides)) != 1 or len(set(pads)) != 1:
            raise ModelError(f"node '{w.node}': dilated, anisotropic or asymmetric convolution")
        c_in = ta.static_shape(x.var)[3]
        depthwise = groups > 1
        if depthwise and not (groups == c_in and w.q.shape[1] == 1 and w.q.shape[0] == c_in):
            raise ModelError(f"node '{w.node}': grouped convolution with groups={groups}")
        name = leg.layer_name("conv")
        bias_q, m0, n0, acc_shift = leg.icn_params(f"layer '{name}'", x, w, bias, bn, out)
        w_ohwi = np.transpose(w.q, (0, 2, 3, 1))
        w_dtype = np.int8 if w.signed else np.uint8
        kind = _kind(depthwise, w_ohwi.shape[1], pads[0])
        attrs = dict(stride=strides[0], pad=pads[0], depthwise=int(depthwise), z_in=x.zero,
                     z_out=out.zero, q_min=q_min, q_max=q_max, in_bits=x.bits,
                     out_bits=out.bits, w_bits=w.bits, w_signed=int(w.signed),
                     per_channel=int(w.per_channel), acc_shift=acc_shift, name=name, kind=kind,
                     in_node=x.node, out_node=out.node)
        args = [x.var, ta.const(w_ohwi.astype(w_dtype)), ta.const(w.zero.astype(np.int32)),
                ta.const(bias_q), ta.const(m0), ta.const(n0)]
        return leg.emit("mpq.conv2d_icn", args, attrs)

    # ---- golden model ----------------------------------------------------------------------
    def golden(self, op_name, args, a):
        x, w, wz, b, m0, n0 = args
        return conv2d(x, w, wz, b, int(a["z_in"]), int(a["stride"]), int(a["pad"]), m0, n0,
                      int(a["z_out"]), int(a["q_min"]), int(a["q_max"]),
                      depthwise=bool(int(a["depthwise"])), acc_shift=int(a.get("acc_shift", 0)))

    # ---- kernels ----------------------------------------------------------------------------
    def spec_from_call(self, call, common, get):
        from ..codegen.kernels import KernelSpec

        kernel = ta.static_shape(call.args[1])[1]
        kind = _kind(bool(get("depthwise")), kernel, get("pad"))
        return KernelSpec(kind, kernel=kernel, stride=get("stride", 1), pad=get("pad"),
                          w_bits=get("w_bits", 8), w_signed=bool(get("w_signed")),
                          z_in=get("z_in"), acc_shift=get("acc_shift", 0), **common)

    def validate_spec(self, s, bad):
        from ..codegen.kernels import validate_window

        if s.kind == "pointwise" and (s.kernel != 1 or s.pad):
            bad("pointwise means kernel 1, pad 0")
        validate_window(s, bad, s.in_shape[3] if s.kind == "depthwise" else s.out_shape[3])

    def build_kernel(self, spec, name):
        from ..codegen import asm_m7, kernel_dsp
        from ..codegen.kernels import dsp_prelude

        if not spec.dsp:
            return plain_kernel(spec), 0, None
        depthwise = spec.kind == "depthwise"
        build = kernel_dsp.depthwise if depthwise else kernel_dsp.gemm
        prelude = dsp_prelude(depthwise, asm_m7.dwr_asm(spec, name) + asm_m7.gemm_asm(spec, name))
        return build(spec, name), kernel_dsp.scratch_bytes(spec), prelude

    def dsp_layout(self, spec) -> str:
        return "depthwise" if spec.kind == "depthwise" else "gemm"

    def weight_shape(self, spec) -> tuple:
        k, cin, cout = spec.kernel, spec.in_shape[-1], spec.out_shape[-1]
        return (k, k, cin) if spec.kind == "depthwise" else (cout, k, k, cin)

    def relax_weight_shape(self, spec) -> tuple:
        k, c = spec.kernel, spec.in_shape[-1]
        return (c, k, k, 1) if spec.kind == "depthwise" else (spec.out_shape[-1], k, k, c)

    def golden_from_spec(self, spec, x, w, w_zero, bias, m0, n0):
        return conv2d(x, w, w_zero, bias, spec.z_in, spec.stride, spec.pad, m0, n0,
                      spec.z_out, spec.q_min, spec.q_max, depthwise=spec.kind == "depthwise",
                      acc_shift=spec.acc_shift)

    def kernel_weights(self, spec, w):
        """OHWI as the Relax op holds it; depthwise (C, KH, KW, 1) -> (KH, KW, C)."""
        if spec.kind == "depthwise" and w.ndim == 4:
            return np.transpose(w[..., 0], (1, 2, 0))
        return w
