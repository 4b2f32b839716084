"""The project's integer Relax operators and their legalization to TIR (via TE).

    mpq.conv2d_icn(x, w, w_zero, bias, m0, n0)   conv / pointwise / depthwise on NHWC
    mpq.linear_icn(x, w, w_zero, bias, m0, n0)   fully connected, x (1, K), w (N, K)
    mpq.avg_pool_icn(x, m0, n0)                  average pooling (no padding) on NHWC
    mpq.add_icn(a, b)                            residual add, both inputs requantized
    mpq.precision(x)                             identity that carries a tensor's bit width

Tensors hold unpacked integers (uint8 or int8 containers); the bit widths live in the
attributes (`in_bits`, `out_bits`, `w_bits`) and packing is the code generator's job.
The integer semantics are those of `tvm_mpq.reference.ops` (the golden model): int32
accumulation with zero points, then ICN requantization (`reference.icn`). Scalar
parameters are call attributes; per-channel arrays are constant arguments.
"""

from __future__ import annotations

from .. import tvm_adapter as ta


def _out_dtype(attrs) -> str:
    return "int8" if int(attrs["q_min"]) < 0 else "uint8"


def _requant(acc, m0, n0, z_out, q_min, q_max):
    """reference.icn.requantize in TIR: int64 product, round half to even, clamp."""
    tirx = ta.tirx()
    a = acc.astype("int64")
    s = (31 - n0.astype("int64"))
    p = a * m0.astype("int64")
    q = p >> s
    r = p - (q << s)
    half = tirx.const(1, "int64") << (s - 1)
    up = tirx.Or(r > half, tirx.And(r == half, (q & tirx.const(1, "int64")) == 1))
    y = q + tirx.Select(up, tirx.const(1, "int64"), tirx.const(0, "int64"))
    y = y + tirx.const(z_out, "int64")
    y = tirx.max(tirx.min(y, tirx.const(q_max, "int64")), tirx.const(q_min, "int64"))
    return y


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
        lambda n, y, xx, co: _requant((acc[n, y, xx, co] << acc_shift) + bias[co], m0[co],
                                      n0[co], z_out, q_min, q_max).astype(out_dtype),
        name="icn")


def _attrs(call) -> dict:
    return {k: call.attrs[k] for k in call.attrs.keys()}


def _int(a, k):
    return int(a[k])


def _shift(a) -> int:
    return int(a["acc_shift"]) if "acc_shift" in a else 0


def _legalize_conv(bb, call):
    a = _attrs(call)
    return bb.call_te(lambda *args: _conv_te(
        *args, stride=_int(a, "stride"), pad=_int(a, "pad"), depthwise=bool(_int(a, "depthwise")),
        z_in=_int(a, "z_in"), z_out=_int(a, "z_out"), q_min=_int(a, "q_min"),
        q_max=_int(a, "q_max"), out_dtype=_out_dtype(a), acc_shift=_shift(a)), *call.args,
        primfunc_name_hint="mpq_conv2d")


def _infer_conv(call, *_):
    a = call.attrs
    x, w = call.args[0], call.args[1]
    _, h, wd, _ = ta.static_shape(x)
    cout, k = ta.static_shape(w)[:2]
    s, p = int(a["stride"]), int(a["pad"])
    return ta.tensor_type((1, (h + 2 * p - k) // s + 1, (wd + 2 * p - k) // s + 1, cout),
                          _out_dtype(a))


def _linear_te(x, w, w_zero, bias, m0, n0, *, z_in, z_out, q_min, q_max, out_dtype,
               acc_shift=0):
    te = ta.te()
    n, k = (int(v) for v in w.shape)
    r = te.reduce_axis((0, k), "r")
    acc = te.compute((1, n), lambda b, o: te.sum(
        (x[b, r].astype("int32") - z_in) * (w[o, r].astype("int32") - w_zero[o]), axis=[r]),
        name="acc")
    return te.compute((1, n), lambda b, o: _requant((acc[b, o] << acc_shift) + bias[o], m0[o],
                                                    n0[o], z_out, q_min, q_max).astype(out_dtype),
                      name="icn")


def _legalize_linear(bb, call):
    a = _attrs(call)
    return bb.call_te(lambda *args: _linear_te(
        *args, z_in=_int(a, "z_in"), z_out=_int(a, "z_out"), q_min=_int(a, "q_min"),
        q_max=_int(a, "q_max"), out_dtype=_out_dtype(a), acc_shift=_shift(a)), *call.args,
        primfunc_name_hint="mpq_linear")


def _infer_linear(call, *_):
    return ta.tensor_type((1, ta.static_shape(call.args[1])[0]), _out_dtype(call.attrs))


def _pool_te(x, m0, n0, *, kernel, stride, z_in, z_out, q_min, q_max, out_dtype):
    te = ta.te()
    _, h, w, c = (int(v) for v in x.shape)
    ho, wo = (h - kernel) // stride + 1, (w - kernel) // stride + 1
    ri = te.reduce_axis((0, kernel), "ri")
    rj = te.reduce_axis((0, kernel), "rj")
    acc = te.compute((1, ho, wo, c), lambda n, y, xx, ch: te.sum(
        x[n, y * stride + ri, xx * stride + rj, ch].astype("int32") - z_in, axis=[ri, rj]),
        name="acc")
    return te.compute((1, ho, wo, c), lambda *i: _requant(acc(*i), m0[0], n0[0], z_out, q_min,
                                                          q_max).astype(out_dtype), name="icn")


def _legalize_pool(bb, call):
    a = _attrs(call)
    return bb.call_te(lambda *args: _pool_te(
        *args, kernel=_int(a, "kernel"), stride=_int(a, "stride"), z_in=_int(a, "z_in"),
        z_out=_int(a, "z_out"), q_min=_int(a, "q_min"), q_max=_int(a, "q_max"),
        out_dtype=_out_dtype(a)), *call.args, primfunc_name_hint="mpq_avg_pool")


def _infer_pool(call, *_):
    a = call.attrs
    _, h, w, c = ta.static_shape(call.args[0])
    k, s = int(a["kernel"]), int(a["stride"])
    return ta.tensor_type((1, (h - k) // s + 1, (w - k) // s + 1, c), _out_dtype(a))


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


def _legalize_add(bb, call):
    a = _attrs(call)
    keys = ("z_a", "z_b", "k_a", "k_b", "shift", "z_out", "q_min", "q_max")
    return bb.call_te(lambda *args: _add_te(*args, **{k: _int(a, k) for k in keys},
                                            out_dtype=_out_dtype(a)), *call.args,
                      primfunc_name_hint="mpq_add")


def _infer_add(call, *_):
    return ta.tensor_type(ta.static_shape(call.args[0]), _out_dtype(call.attrs))


def _legalize_precision(bb, call):
    return call.args[0]


def _infer_precision(call, *_):
    return call.args[0].ty


OPS = {
    "mpq.conv2d_icn": (6, _infer_conv, _legalize_conv),
    "mpq.linear_icn": (6, _infer_linear, _legalize_linear),
    "mpq.avg_pool_icn": (3, _infer_pool, _legalize_pool),
    "mpq.add_icn": (2, _infer_add, _legalize_add),
    "mpq.precision": (1, _infer_precision, _legalize_precision),
}


def get_op(name: str):
    n, infer, legalize = OPS[name]
    return ta.register_relax_op(name, n, infer, legalize, doc=__doc__ or "")


def make_call(name: str, args, attrs: dict):
    """A call to one of our ops, with all attribute values as Python ints/bools/strs."""
    relax = ta.relax()
    return relax.Call(get_op(name), list(args), attrs=dict(attrs))
