"""Fully connected: Gemm / MatMul on a flat (1, K) vector, weights (N, K).

    ONNX     Gemm (transB 0/1, alpha = beta = 1) or MatMul with constant weights
    plan     kind linear (F)
    Relax    mpq.linear_icn(x, w, w_zero, bias, m0, n0): x (1, K), w (N, K)
    golden   acc[o] = (sum_k (x[k] - z_in)(w[o, k] - w_zero[o])) << acc_shift + bias[o];
             y = requantize(acc, m0, n0, z_out, q_min, q_max)
    kernels  plain TIR (kernel_te.dense) or the DSP GEMM (kernel_dsp.gemm, a 1x1 image)
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


def linear(x, w, w_zero, bias, z_in, m0, n0, z_out, q_min, q_max, acc_shift=0):
    """The golden model. x: (1, Cin) ints; w: (Cout, Cin)."""
    x = np.asarray(x, np.int64).reshape(1, -1) - z_in
    wz = np.asarray(w, np.int64) - np.asarray(w_zero, np.int64).reshape(-1, 1)
    acc = (np.rint(x.astype(np.float64) @ wz.T.astype(np.float64)) * float(1 << acc_shift)
           + np.asarray(bias, np.float64))
    acc = check_acc(acc, "linear")
    return requantize(acc, m0, n0, z_out, q_min, q_max)


def _linear_te(x, w, w_zero, bias, m0, n0, *, z_in, z_out, q_min, q_max, out_dtype,
               acc_shift=0):
    te = ta.te()
    n, k = (int(v) for v in w.shape)
    r = te.reduce_axis((0, k), "r")
    acc = te.compute((1, n), lambda b, o: te.sum(
        (x[b, r].astype("int32") - z_in) * (w[o, r].astype("int32") - w_zero[o]), axis=[r]),
        name="acc")
    return te.compute((1, n), lambda b, o: requant_te((acc[b, o] << acc_shift) + bias[o],
                                                      m0[o], n0[o], z_out, q_min,
                                                      q_max).astype(out_dtype),
                      name="icn")


def _legalize_relax(bb, call):
    a = {k: call.attrs[k] for k in call.attrs.keys()}
    i = relax_attr_int
    return bb.call_te(lambda *args: _linear_te(
        *args, z_in=i(a, "z_in"), z_out=i(a, "z_out"), q_min=i(a, "q_min"),
        q_max=i(a, "q_max"), out_dtype=relax_out_dtype(a), acc_shift=i(a, "acc_shift", 0)),
        *call.args, primfunc_name_hint="mpq_linear")


def _infer_relax(call, *_):
    return ta.tensor_type((1, ta.static_shape(call.args[1])[0]), relax_out_dtype(call.attrs))


# ---- the plain kernel (TIR from TE; layouts in codegen.kernels) ----------------------

def plain_kernel(spec):
    """Fully connected: x one row of K elements, w (N, K) packed along K."""
    from ..codegen import kernel_te as kt
    from ..reference.packing import row_bytes

    te = ta.te()
    kdim, n = spec.in_shape[-1], spec.out_shape[-1]
    x = te.placeholder((row_bytes(kdim, spec.in_bits),), "uint8", "x")
    wt = te.placeholder((n, row_bytes(kdim, spec.w_bits)), "uint8", "w")
    wz, bias, m0, n0 = kt.channel_params(n, spec.w_signed)
    r = te.reduce_axis((0, kdim), "k")
    z_in = spec.z_in
    n_acc, clamp = kt.acc_channels(n, kt.CHANNEL_BLOCK)
    acc = te.compute((n_acc,), lambda o: te.sum(
        (kt.load(x, (), r, spec.in_bits, spec.in_signed) - z_in)
        * kt.load(wt, (clamp(o),), r, spec.w_bits, spec.w_signed, wz[clamp(o)].astype("int32")),
        axis=[r]), name="acc")
    y = kt.pack_rows((), n, spec.out_bits, lambda o: kt.requantize(
        kt.with_bias(acc[o], bias[o], spec.acc_shift), m0[o], n0[o], spec.z_out,
        spec.q_min, spec.q_max, spec.ties))
    return kt.scheduled([x, wt, wz, bias, m0, n0, y], spec.out_bits,
                      unroll_channels=kt.channel_unroll(kdim, spec.in_bits, spec.w_bits),
                      channel_block=kt.CHANNEL_BLOCK)


@register
class Linear(WeightedOperator, Operator):
    name = "linear"
    kinds = ("linear",)
    onnx_types = ("Gemm", "MatMul")
    letters = {"linear": "F"}
    mpq_ops = {"mpq.linear_icn": (6, _infer_relax, _legalize_relax)}
    relax_patterns = ("relax.matmul",)
    kernel_kinds = ("linear",)
    c_kind = {"linear": "linear"}
    colors = {"linear": "#8172b2"}
    torch_face = "tvm_mpq.quant.faces.linear:LinearFace"

    def from_onnx(self, a, node):
        from ..frontend.graph import Layer

        op, at = node.op_type, a.attrs(node)
        x, in_shape, out_shape = a.io(node)
        w, n_bias = a.weights(node)
        if len(in_shape) != 2 or w.ndim != 2:
            raise UnsupportedOpError(node.name, op, f"only (1, K) x (K, N) products, got "
                                     f"{in_shape}")
        if op == "Gemm":
            if at.get("transA", 0) or at.get("alpha", 1.0) != 1.0 or at.get("beta", 1.0) != 1.0:
                raise UnsupportedOpError(node.name, op, "transA/alpha/beta other than defaults")
            k_in, n_out = (w.shape[1], w.shape[0]) if at.get("transB", 0) else w.shape
        else:
            k_in, n_out = w.shape
        if k_in != in_shape[1] or (n_bias and n_bias != n_out):
            raise ModelError(f"node '{node.name}' ({op}): weights {list(w.shape)} (bias "
                             f"{n_bias}) do not fit the input {list(in_shape)}")
        return Layer(node.name, "linear", [x], node.output[0], in_shape, out_shape,
                     weight_shape=tuple(w.shape), n_weights=int(w.size), n_bias=n_bias,
                     macs=int(k_in * n_out), nodes=[node.name])

    def plan_scratch_bytes(self, layer) -> int:
        """The input vector widened to int16."""
        return layer.in_shape[1] * 2

    def legalize(self, leg, e, fused, out, q_min, q_max):
        bias, bn = fused
        x = leg.act_input(e.args[0])
        w = leg.qweight(e.args[1])
        if x.flat_from is not None:      # the input is an NHWC map flattened: reorder the
            h, wd, c = x.flat_from       # weight columns from ONNX's (C, H, W) to (H, W, C)
            n = w.q.shape[0]
            w.q = w.q.reshape(n, c, h, wd).transpose(0, 2, 3, 1).reshape(n, -1)
        name = leg.layer_name("linear")
        bias_q, m0, n0, acc_shift = leg.icn_params(f"layer '{name}'", x, w, bias, bn, out)
        attrs = dict(z_in=x.zero, z_out=out.zero, q_min=q_min, q_max=q_max, in_bits=x.bits,
                     out_bits=out.bits, w_bits=w.bits, w_signed=int(w.signed),
                     per_channel=int(w.per_channel), acc_shift=acc_shift, name=name,
                     kind="linear", in_node=x.node, out_node=out.node)
        args = [x.var, ta.const(w.q.astype(np.int8 if w.signed else np.uint8)),
                ta.const(w.zero.astype(np.int32)), ta.const(bias_q), ta.const(m0), ta.const(n0)]
        return leg.emit("mpq.linear_icn", args, attrs)

    def golden(self, op_name, args, a):
        x, w, wz, b, m0, n0 = args
        return linear(x, w, wz, b, int(a["z_in"]), m0, n0, int(a["z_out"]), int(a["q_min"]),
                      int(a["q_max"]), acc_shift=int(a.get("acc_shift", 0)))

    def spec_from_call(self, call, common, get):
        from ..codegen.kernels import KernelSpec

        return KernelSpec("linear", w_bits=get("w_bits", 8), w_signed=bool(get("w_signed")),
                          z_in=get("z_in"), acc_shift=get("acc_shift", 0), **common)

    def validate_spec(self, s, bad):
        if len(s.in_shape) != 2 or len(s.out_shape) != 2 or s.in_shape[0] != 1 \
                or s.out_shape[0] != 1:
            bad(f"linear shapes must be (1, K) -> (1, N), got {s.in_shape} -> {s.out_shape}")

    def build_kernel(self, spec, name):
        from ..codegen import asm_m7, kernel_dsp
        from ..codegen.kernels import dsp_prelude

        if not spec.dsp:
            return plain_kernel(spec), 0, None
        prelude = dsp_prelude(False, asm_m7.dwr_asm(spec, name) + asm_m7.gemm_asm(spec, name))
        return kernel_dsp.gemm(spec, name), kernel_dsp.scratch_bytes(spec), prelude

    def dsp_layout(self, spec) -> str:
        return "gemm"

    def weight_shape(self, spec) -> tuple:
        return (spec.out_shape[-1], spec.in_shape[-1])

    relax_weight_shape = weight_shape

    def golden_from_spec(self, spec, x, w, w_zero, bias, m0, n0):
        return linear(x, w, w_zero, bias, spec.z_in, m0, n0, spec.z_out, spec.q_min,
                      spec.q_max, acc_shift=spec.acc_shift)
