"""Conv: any kernel (1x1 .. 7x7, square or not), strides and pads (asymmetric, auto_pad, a
zero Pad before it folded in), groups: full, pointwise (1x1, no padding), depthwise (group
= channels, channel multiplier m = C_out / C_in >= 1) and grouped (1 < group < C_in); the
BatchNormalization and Relu/Clip(0, M) that follow it fused.

    ONNX     Conv (dilations 1, pads >= 0) [-> BatchNormalization] [-> Relu | Clip(0, M)];
             auto_pad and Pad -> Conv become explicit pads in the loader (conv2d_geometry)
    plan     kinds conv (C: full or grouped), pointwise (P), depthwise (D); weights OIHW;
             Layer.kernel/stride/pad the first values, Layer.attrs the full geometry:
             {"kernel_hw": [kh, kw], "strides": [sh, sw], "pads": [t, l, b, r], "group": g}
    Relax    mpq.conv2d_icn(x, w, w_zero, bias, m0, n0) on NHWC; w OHWI (Cout, KH, KW,
             Cin / group); depthwise (Cout, KH, KW, 1); int32 accumulation with zero points,
             then ICN. Attributes stride, pad (square, symmetric) and, for any other
             geometry or a grouped conv, sh, sw, pt, pl, pb, pr, group
    golden   acc[o] = (sum (x[ci] - z_in)(w[o] - w_zero[o])) << acc_shift + bias[o] over the
             window and the input channels ci of o's group; y = requantize(acc, m0, n0,
             z_out, q_min, q_max)   (reference.icn)
    kernels  plain TIR (any geometry and group) or the DSP kernels (codegen.kernel_dsp):
             im2col GEMM for every group-1 conv / pointwise (any kernel, strides, pads),
             per-pixel or row depthwise for square, equal-stride, symmetric-pad depthwise
             with multiplier 1 (any k); grouped and multiplier > 1 depthwise: plain

Weight layouts the kernels read (pack_params; packed along the last axis, element 0 in the
low bits, every row on a byte):
- conv / pointwise, any group: (Cout, KH, KW, Cin / group), one row per (o, kh, kw); output
  channel o belongs to group o // (Cout / group) and reads input channels
  [g * Cin / group, (g + 1) * Cin / group); the GEMM layout pads 3 zero bytes at the end;
- depthwise, multiplier m: (KH, KW, Cout), one row per tap, packed along the output
  channels; output channel o reads input channel o // m (m = 1: the channel itself).

Padding uses the input zero point (the real value 0), so padded taps contribute nothing.
"""

from __future__ import annotations

import numpy as np

from .. import tvm_adapter as ta
from ..errors import ModelError, UnsupportedOpError
from . import register
from .base import Operator
from .common import relax_attr_int, relax_out_dtype, requant_te
from .conv2d_geometry import conv2d, conv2d_acc, is_plain, onnx_geometry, out_hw
from .weighted import WeightedOperator

__all__ = ["Conv2d", "conv2d", "conv2d_acc", "plain_kernel"]


def _geometry(a, w_shape, depthwise: bool, c_in: int):
    """(geo, group) of an mpq.conv2d_icn call's attributes and its (Relax) weight shape."""
    kh, kw = int(w_shape[1]), int(w_shape[2])
    if "sh" in a.keys():
        geo = (kh, kw) + tuple(int(a[k]) for k in ("sh", "sw", "pt", "pl", "pb", "pr"))
    else:
        s, p = int(a["stride"]), int(a["pad"])
        geo = (kh, kw, s, s, p, p, p, p)
    group = c_in if depthwise else (int(a["group"]) if "group" in a.keys() else 1)
    return geo, group


def _golden_kw(geo, group, depthwise):
    return dict(strides=geo[2:4], pads=geo[4:], group=1 if depthwise else group)


# ---- Relax op: type inference and legalization to TE ----------------------------------

def _conv_te(x, w, w_zero, bias, m0, n0, *, geo, group, depthwise, z_in, z_out, q_min,
             q_max, out_dtype, acc_shift=0):
    te, tirx = ta.te(), ta.tirx()
    _, h, wd, c = (int(v) for v in x.shape)
    cout = int(w.shape[0])
    kh, kw, sh, sw, pt, pl, _, _ = geo
    ho, wo = out_hw(h, wd, geo)

    def xin(n, i, j, r):
        inside = tirx.all(i >= pt, i < h + pt, j >= pl, j < wd + pl)
        v = x[n, tirx.max(tirx.min(i - pt, h - 1), 0), tirx.max(tirx.min(j - pl, wd - 1), 0), r]
        return tirx.if_then_else(inside, v.astype("int32"), tirx.const(z_in, "int32"))

    ri = te.reduce_axis((0, kh), "ri")
    rj = te.reduce_axis((0, kw), "rj")
    if depthwise:
        m = cout // c
        acc = te.compute(
            (1, ho, wo, cout),
            lambda n, y, xx, co: te.sum(
                (xin(n, y * sh + ri, xx * sw + rj, co // m) - z_in)
                * (w[co, ri, rj, 0].astype("int32") - w_zero[co]), axis=[ri, rj]),
            name="acc")
    else:
        cin_g, cout_g = int(w.shape[3]), cout // group
        rc = te.reduce_axis((0, cin_g), "rc")
        acc = te.compute(
            (1, ho, wo, cout),
            lambda n, y, xx, co: te.sum(
                (xin(n, y * sh + ri, xx * sw + rj, (co // cout_g) * cin_g + rc) - z_in)
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
    dw = bool(i(a, "depthwise"))
    geo, group = _geometry(a, ta.static_shape(call.args[1]), dw,
                           ta.static_shape(call.args[0])[3])
    return bb.call_te(lambda *args: _conv_te(
        *args, geo=geo, group=group, depthwise=dw,
        z_in=i(a, "z_in"), z_out=i(a, "z_out"), q_min=i(a, "q_min"),
        q_max=i(a, "q_max"), out_dtype=relax_out_dtype(a), acc_shift=i(a, "acc_shift", 0)),
        *call.args, primfunc_name_hint="mpq_conv2d")


def _infer_relax(call, *_):
    a = call.attrs
    x, w = call.args[0], call.args[1]
    _, h, wd, c = ta.static_shape(x)
    w_shape = ta.static_shape(w)
    geo, _ = _geometry(a, w_shape, bool(int(a["depthwise"])), c)
    return ta.tensor_type((1, *out_hw(h, wd, geo), w_shape[0]), relax_out_dtype(a))


def onnx_layer_kind(group: int, cin: int, cin_g: int, kernel_hw, pads) -> str:
    """The layer kind of an ONNX Conv (group, input channels, weights' input channels a
    group, kernel (kh, kw), pads): what `from_onnx` names its Layer."""
    geo = (*tuple(kernel_hw), 1, 1, *tuple(pads or (0, 0, 0, 0)))
    return _kind(group > 1 and group == cin and cin_g == 1, geo, group)


def _kind(depthwise: bool, geo, group: int = 1) -> str:
    if depthwise:
        return "depthwise"
    return "pointwise" if geo[:2] == (1, 1) and not any(geo[4:]) and group == 1 else "conv"


# ---- the plain kernel (TIR from TE; layouts in the module docstring) ------------------

def plain_kernel(spec):
    """conv / pointwise, any group ((Cout, KH, KW, Cin / group) weights) and depthwise
    ((KH, KW, Cout) weights, multiplier Cout / Cin) on NHWC, any geometry."""
    from ..codegen import kernel_te as kt
    from ..reference.packing import row_bytes

    te = ta.te()
    _, h, w, c = spec.in_shape
    _, ho, wo, cout = spec.out_shape
    kh, kw, sh, sw = spec.geometry[:4]
    depthwise = spec.kind == "depthwise"
    mult = cout // c if depthwise else 1
    group = 1 if depthwise else spec.group
    cin_g, cout_g = c // group, cout // group
    x = te.placeholder((h, w, row_bytes(c, spec.in_bits)), "uint8", "x")
    w_shape = (kh, kw) if depthwise else (cout, kh, kw)
    wt = te.placeholder((*w_shape, row_bytes(cout if depthwise else cin_g, spec.w_bits)),
                        "uint8", "w")
    wz, bias, m0, n0 = kt.channel_params(cout, spec.w_signed)
    xin = kt.padded_input(x, spec, h, w, spec.in_bits, spec.in_signed)
    rh, rw = te.reduce_axis((0, kh), "kh"), te.reduce_axis((0, kw), "kw")

    def weight(o, kh, kw, ci):
        pre = (kh, kw) if depthwise else (o, kh, kw)
        return kt.load(wt, pre, ci, spec.w_bits, spec.w_signed, wz[o].astype("int32"))

    block = kt.WINDOW_CHANNEL_BLOCK if depthwise else kt.CHANNEL_BLOCK
    n_acc, clamp = kt.acc_channels(cout, block)
    if depthwise:
        def src(o):
            return o if mult == 1 else o // mult

        acc = te.compute((ho, wo, n_acc), lambda i, j, o: te.sum(
            xin(i * sh + rh, j * sw + rw, src(clamp(o))) * weight(clamp(o), rh, rw, clamp(o)),
            axis=[rh, rw]), name="acc")
    else:
        rc = te.reduce_axis((0, cin_g), "ci")

        def src(o, r):
            return r if group == 1 else (o // cout_g) * cin_g + r

        acc = te.compute((ho, wo, n_acc), lambda i, j, o: te.sum(
            xin(i * sh + rh, j * sw + rw, src(clamp(o), rc)) * weight(clamp(o), rh, rw, rc),
            axis=[rh, rw, rc]), name="acc")
    y = kt.pack_rows((ho, wo), cout, spec.out_bits, lambda i, j, o: kt.requantize(
        kt.with_bias(acc[i, j, o], bias[o], spec.acc_shift), m0[o], n0[o], spec.z_out,
        spec.q_min, spec.q_max, spec.ties))
    unroll = 0 if depthwise or group > 1 else kt.channel_unroll(c, spec.in_bits, spec.w_bits)
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
        cout, cin_g, kh, kw = (int(v) for v in w.shape)
        cin = in_shape[1]
        group = int(at.get("group", 1))
        if list(at.get("kernel_shape", [kh, kw])) != [kh, kw]:
            raise ModelError(f"node '{node.name}' ({op}): kernel_shape "
                             f"{list(at['kernel_shape'])} differs from the weights' {kh}x{kw}")
        geo = onnx_geometry(node, at, in_shape[2:], (kh, kw))
        if group < 1 or cin_g * group != cin or cout % group:
            raise ModelError(f"node '{node.name}' ({op}): weights {list(w.shape)} with "
                             f"group={group} take {cin_g * group} input channels, the input "
                             f"has {cin}" + (f" ({cout} output channels not a multiple of "
                                             f"{group})" if group >= 1 and cout % group else ""))
        if n_bias and n_bias != cout:
            raise ModelError(f"node '{node.name}' ({op}): {n_bias} biases for {cout} output "
                             "channels")
        want = [1, cout, *out_hw(*in_shape[2:], geo)]
        if list(out_shape) != want or min(want) < 1:
            raise ModelError(f"node '{node.name}' ({op}): output shape {list(out_shape)}, "
                             f"expected {want} from the input, weights, pads and strides")
        kind = onnx_layer_kind(group, cin, cin_g, geo[:2], geo[4:8])
        macs = int(np.prod(out_shape)) * cin_g * kh * kw
        return Layer(node.name, kind, [x], node.output[0], in_shape, out_shape,
                     weight_shape=tuple(w.shape), n_weights=int(w.size), n_bias=n_bias,
                     macs=macs, kernel=kh, stride=geo[2], pad=geo[4], nodes=[node.name],
                     attrs={"kernel_hw": [kh, kw], "strides": list(geo[2:4]),
                            "pads": list(geo[4:]), "group": group})

    # ---- plan -----------------------------------------------------------------------------
    def plan_scratch_bytes(self, layer) -> int:
        """The DSP kernels' scratch: conv (group 1), an im2col buffer of one receptive
        field in int16 (kh * kw * in_channels * 2); pointwise, one input pixel widened to
        int16; depthwise on the DSP path (square, symmetric, multiplier 1) k * k * C * 2.
        Grouped convs and the other depthwise ones run the plain kernel: none."""
        cin = layer.in_shape[1]
        at = layer.attrs or {}
        kh, kw = at.get("kernel_hw", [layer.kernel, layer.kernel])
        geo = (kh, kw, *at.get("strides", [layer.stride] * 2), *at.get("pads", [layer.pad] * 4))
        if layer.kind == "pointwise":
            return cin * 2
        if layer.kind == "depthwise":
            plain = is_plain(geo) and layer.out_shape[1] == cin
            return kh * kw * cin * 2 if plain else 0
        return kh * kw * cin * 2 if at.get("group", 1) == 1 else 0

    # ---- Relax: the fake-quant chain -> mpq.conv2d_icn -----------------------------------
    def legalize(self, leg, e, fused, out, q_min, q_max):
        bias, bn = fused
        x = leg.act_input(e.args[0])
        w = leg.qweight(e.args[1])
        a = e.attrs
        groups = int(a.groups)
        strides, pads = [int(v) for v in a.strides], [int(v) for v in a.padding]
        pads = pads * 4 if len(pads) == 1 else pads * 2 if len(pads) == 2 else pads
        if str(a.data_layout) != "NCHW" or str(a.kernel_layout) != "OIHW":
            raise ModelError(f"node '{w.node}': conv layout {a.data_layout}/{a.kernel_layout}")
        if any(int(d) != 1 for d in a.dilation) or len(strides) != 2 or len(pads) != 4:
            raise ModelError(f"node '{w.node}': dilated convolution or strides {strides} / "
                             f"padding {pads}")
        c_in = ta.static_shape(x.var)[3]
        cout, cin_g = w.q.shape[:2]
        if groups < 1 or cin_g * groups != c_in or cout % groups:
            raise ModelError(f"node '{w.node}': groups={groups} for weights {list(w.q.shape)} "
                             f"and {c_in} input channels")
        depthwise = groups > 1 and groups == c_in and cin_g == 1
        name = leg.layer_name("conv")
        bias_q, m0, n0, acc_shift = leg.icn_params(f"layer '{name}'", x, w, bias, bn, out)
        w_ohwi = np.transpose(w.q, (0, 2, 3, 1))
        w_dtype = np.int8 if w.signed else np.uint8
        geo = (*w_ohwi.shape[1:3], *strides, *pads)
        kind = _kind(depthwise, geo, groups)
        attrs = dict(stride=strides[0], pad=pads[0], depthwise=int(depthwise), z_in=x.zero,
                     z_out=out.zero, q_min=q_min, q_max=q_max, in_bits=x.bits,
                     out_bits=out.bits, w_bits=w.bits, w_signed=int(w.signed),
                     per_channel=int(w.per_channel), acc_shift=acc_shift, name=name, kind=kind,
                     in_node=x.node, out_node=out.node)
        if not is_plain(geo) or (groups > 1 and not depthwise):
            attrs.update(zip(("sh", "sw", "pt", "pl", "pb", "pr"), geo[2:]), group=groups)
        args = [x.var, ta.const(w_ohwi.astype(w_dtype)), ta.const(w.zero.astype(np.int32)),
                ta.const(bias_q), ta.const(m0), ta.const(n0)]
        return leg.emit("mpq.conv2d_icn", args, attrs)

    # ---- golden model ----------------------------------------------------------------------
    def golden(self, op_name, args, a):
        x, w, wz, b, m0, n0 = args
        dw = bool(int(a["depthwise"]))
        geo, group = _geometry(a, np.shape(w), dw, np.shape(x)[3])
        return conv2d(x, w, wz, b, int(a["z_in"]), int(a["stride"]), int(a["pad"]), m0, n0,
                      int(a["z_out"]), int(a["q_min"]), int(a["q_max"]), depthwise=dw,
                      acc_shift=int(a.get("acc_shift", 0)), **_golden_kw(geo, group, dw))

    # ---- kernels ----------------------------------------------------------------------------
    def spec_from_call(self, call, common, get):
        from ..codegen.kernels import KernelSpec

        dw = bool(get("depthwise"))
        a = {k: call.attrs[k] for k in call.attrs.keys()}
        geo, group = _geometry(a, ta.static_shape(call.args[1]), dw, common["in_shape"][3])
        return KernelSpec(_kind(dw, geo, group), kernel=geo[0], stride=geo[2], pad=geo[4],
                          kernel_hw=geo[:2], strides=geo[2:4], pads=geo[4:],
                          group=1 if dw else group, w_bits=get("w_bits", 8),
                          w_signed=bool(get("w_signed")), z_in=get("z_in"),
                          acc_shift=get("acc_shift", 0), **common)

    def validate_spec(self, s, bad):
        from ..codegen.kernels import validate_window

        kh, kw, _, _, *pads = s.geometry
        if s.kind == "pointwise" and ((kh, kw) != (1, 1) or any(pads) or s.group != 1):
            bad("pointwise means kernel 1, pad 0, group 1")
        c, cout = s.in_shape[-1], s.out_shape[-1]
        if s.kind == "depthwise" and (s.group != 1 or cout % c):
            bad(f"depthwise: {cout} output channels not a multiple of {c} (group {s.group})")
        if s.group < 1 or c % s.group or cout % s.group:
            bad(f"group {s.group} does not divide {c} input / {cout} output channels")
        validate_window(s, bad, cout)

    def build_kernel(self, spec, name):
        from ..codegen import asm_m7, kernel_dsp
        from ..codegen.kernels import dsp_prelude

        if not spec.dsp or self.dsp_layout(spec) is None:
            return plain_kernel(spec), 0, None
        depthwise = spec.kind == "depthwise"
        build = kernel_dsp.depthwise if depthwise else kernel_dsp.gemm
        prelude = dsp_prelude(depthwise, asm_m7.dwr_asm(spec, name) + asm_m7.gemm_asm(spec, name)
                              + kernel_dsp.im2col_general(spec))
        return build(spec, name), kernel_dsp.scratch_bytes(spec), prelude

    def dsp_layout(self, spec) -> str | None:
        """gemm: every group-1 conv / pointwise; depthwise: square kernel, equal strides,
        symmetric pads, multiplier 1; None (the plain kernel): the others."""
        if spec.kind == "depthwise":
            ok = is_plain(spec.geometry) and spec.out_shape[-1] == spec.in_shape[-1]
            return "depthwise" if ok else None
        return "gemm" if spec.group == 1 else None

    def weight_shape(self, spec) -> tuple:
        kh, kw = spec.geometry[:2]
        cin, cout = spec.in_shape[-1], spec.out_shape[-1]
        return (kh, kw, cout) if spec.kind == "depthwise" else (cout, kh, kw, cin // spec.group)

    def relax_weight_shape(self, spec) -> tuple:
        kh, kw = spec.geometry[:2]
        c, cout = spec.in_shape[-1], spec.out_shape[-1]
        return (cout, kh, kw, 1) if spec.kind == "depthwise" else (cout, kh, kw, c // spec.group)

    def golden_from_spec(self, spec, x, w, w_zero, bias, m0, n0):
        dw = spec.kind == "depthwise"
        return conv2d(x, w, w_zero, bias, spec.z_in, spec.stride, spec.pad, m0, n0,
                      spec.z_out, spec.q_min, spec.q_max, depthwise=dw,
                      acc_shift=spec.acc_shift, **_golden_kw(spec.geometry, spec.group, dw))

    def kernel_weights(self, spec, w):
        """OHWI as the Relax op holds it; depthwise (Cout, KH, KW, 1) -> (KH, KW, Cout)."""
        if spec.kind == "depthwise" and w.ndim == 4:
            return np.transpose(w[..., 0], (1, 2, 0))
        return w
