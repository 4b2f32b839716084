"""Property tests (hypothesis) of the integer path beyond test_int_ops_host.py,
test_codegen_kernels.py and test_reference_core.py, which fix kernel 3 / pad 1 or
kernel 1 / pad 0:

- the numpy golden convolution against a direct definition, for any kernel size, padding,
  stride, rectangular images and odd channel counts;
- the generated C kernels against the golden model for those shapes (host gcc);
- the converter's int32 accumulator bound: a layer is either refused by name, or no input
  in its range drives the accumulator out of int32 (the bias shift included)."""

from __future__ import annotations

import ctypes
import shutil
import subprocess

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from tvm_mpq.errors import ModelError
from tvm_mpq.reference import icn, ops
from tvm_mpq.reference.packing import int_range, pack, packed_bytes, unpack

BITS = (8, 4, 2)
GCC = shutil.which("gcc")


# ---------------------------------------------------------------------------------------
# the golden model's convolution, by its definition

def _direct_conv_acc(x, w, w_zero, bias, z_in, stride, pad, depthwise, acc_shift):
    """acc[o, p, q] = sum over taps inside the image of (x - z_in) * (w - w_zero), written
    as plain loops (padding contributes nothing: it is the input zero point)."""
    _, h, wd, c = x.shape
    cout, k = w.shape[0], w.shape[1]
    ho, wo = (h + 2 * pad - k) // stride + 1, (wd + 2 * pad - k) // stride + 1
    acc = np.zeros((ho, wo, cout), np.int64)
    for p in range(ho):
        for q in range(wo):
            for i in range(k):
                for j in range(k):
                    r, s = p * stride + i - pad, q * stride + j - pad
                    if not (0 <= r < h and 0 <= s < wd):
                        continue
                    xv = x[0, r, s].astype(np.int64) - z_in                     # (C,)
                    if depthwise:
                        acc[p, q] += xv * (w[:, i, j, 0].astype(np.int64) - w_zero)
                    else:
                        acc[p, q] += (w[:, i, j, :].astype(np.int64)
                                      - w_zero[:, None]) @ xv
    return (acc << acc_shift) + bias


@settings(max_examples=300, deadline=None, derandomize=True)
@given(k=st.sampled_from([1, 2, 3, 5, 7]), data=st.data(), stride=st.integers(1, 3),
       h=st.integers(1, 9), wd=st.integers(1, 9), c=st.integers(1, 7), cout=st.integers(1, 5),
       depthwise=st.booleans(), bits=st.tuples(st.sampled_from(BITS), st.sampled_from(BITS)),
       signed=st.tuples(st.booleans(), st.booleans()), acc_shift=st.integers(0, 4),
       seed=st.integers(0, 2**32 - 1))
def test_golden_conv_matches_its_definition(k, data, stride, h, wd, c, cout, depthwise, bits,
                                            signed, acc_shift, seed):
    pad = data.draw(st.integers(0, k - 1), "pad")
    assume(h + 2 * pad >= k and wd + 2 * pad >= k)
    rng = np.random.default_rng(seed)
    (in_bits, w_bits), (in_signed, w_signed) = bits, signed
    cout = c if depthwise else cout
    x = rng.integers(*_incl(in_bits, in_signed), (1, h, wd, c))
    w = rng.integers(*_incl(w_bits, w_signed), (cout, k, k, 1 if depthwise else c))
    w_zero = rng.integers(*_incl(w_bits, w_signed), cout)
    z_in = int(rng.integers(*_incl(in_bits, in_signed)))
    bias = rng.integers(-5000, 5000, cout)
    got = ops.conv2d_acc(x, w, w_zero, bias, z_in, stride, pad, depthwise, acc_shift)
    want = _direct_conv_acc(x, w, w_zero, bias, z_in, stride, pad, depthwise, acc_shift)
    np.testing.assert_array_equal(got, want)


def _incl(bits, signed):
    lo, hi = int_range(bits, signed)
    return lo, hi + 1


# ---------------------------------------------------------------------------------------
# the generated C kernels for any kernel size and padding

def _call(so, kernel, args: list[bytes], out_bytes: int) -> bytes:
    lib = ctypes.CDLL(str(so))
    bufs = [ctypes.create_string_buffer(a, len(a)) for a in args]
    out = ctypes.create_string_buffer(b"\xa5" * out_bytes, out_bytes)
    n64 = -(-kernel.scratch_bytes // 8)
    scratch = [(ctypes.c_uint64 * n64)(*([0xa5a5a5a5a5a5a5a5] * n64))] if n64 else []
    fn = getattr(lib, kernel.name)
    fn.restype = ctypes.c_int32
    fn.argtypes = [ctypes.c_void_p] * (len(bufs) + 1 + len(scratch))
    assert fn(*bufs, out, *[ctypes.cast(b, ctypes.c_void_p) for b in scratch]) == 0
    return out.raw


@pytest.mark.skipif(GCC is None, reason="host gcc not installed")
@settings(max_examples=40, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(kind=st.sampled_from(["conv", "depthwise"]), k=st.sampled_from([2, 3, 5]),
       data=st.data(), stride=st.sampled_from([1, 2]), h=st.integers(2, 8),
       wd=st.integers(2, 8), c=st.sampled_from([1, 3, 5, 7]), cout=st.sampled_from([1, 3, 6]),
       bits=st.tuples(st.sampled_from(BITS), st.sampled_from(BITS), st.sampled_from(BITS)),
       signs=st.tuples(st.booleans(), st.booleans(), st.booleans()), seed=st.integers(0, 2**16))
def test_c_kernels_any_kernel_size_and_padding(tmp_path, kind, k, data, stride, h, wd, c, cout,
                                               bits, signs, seed):
    from tvm_mpq.codegen.kernels import KernelSpec, generate_kernel, pack_params

    pad = data.draw(st.integers(0, k - 1), "pad")
    assume(h + 2 * pad >= k and wd + 2 * pad >= k)
    in_bits, out_bits, w_bits = bits
    in_signed, out_signed, w_signed = signs
    rng = np.random.default_rng(seed)
    cout = c if kind == "depthwise" else cout
    ho, wo = (h + 2 * pad - k) // stride + 1, (wd + 2 * pad - k) // stride + 1
    z_in = int(rng.integers(*_incl(in_bits, in_signed)))
    try:
        spec = KernelSpec(kind, (1, h, wd, c), (1, ho, wo, cout), kernel=k, stride=stride,
                          pad=pad, in_bits=in_bits, out_bits=out_bits, w_bits=w_bits, z_in=z_in,
                          in_signed=in_signed, out_signed=out_signed, w_signed=w_signed,
                          z_out=0, suffix=f"p{seed}")
    except ModelError as e:                 # a shape the kernels refuse: refused by name
        assert "kernel" in str(e) or "pad" in str(e) or "stride" in str(e), e
        return
    x = rng.integers(*_incl(in_bits, in_signed), (1, h, wd, c))
    w = rng.integers(*_incl(w_bits, w_signed), (cout, k, k, 1 if kind == "depthwise" else c))
    w_zero = rng.integers(*_incl(w_bits, w_signed), cout)
    bias = rng.integers(-2000, 2000, cout)
    k_elems = k * k * (1 if kind == "depthwise" else c)
    scale = (1 << out_bits) / max(1.0, np.sqrt(k_elems) * (1 << in_bits) * (1 << w_bits) / 4)
    m0, n0 = icn.quantize_multipliers(rng.uniform(0.3, 3.0, cout) * scale
                                      * rng.choice([1, 1, -1], cout))
    want = ops.conv2d(x, w, w_zero, bias, z_in, stride, pad, m0, n0, 0, spec.q_min, spec.q_max,
                      depthwise=kind == "depthwise")
    kernel = generate_kernel(spec)
    n = len(list(tmp_path.glob("*.so")))      # one tmp_path for all examples; dlopen caches
    src = tmp_path / f"{kernel.name}_{n}.c"   # by path
    src.write_text(kernel.c_source)
    so = tmp_path / f"{kernel.name}_{n}.so"
    subprocess.run([GCC, "-std=c99", "-O2", "-Wall", "-Werror", "-shared", "-fPIC", "-o",
                    str(so), str(src)], check=True, capture_output=True)
    p = pack_params(spec, w, w_zero, bias, m0, n0)
    args = [pack(x[0], in_bits).tobytes()] + [p[n][1] for n in ("w", "w_zero", "bias", "m0",
                                                                 "n0")]
    raw = _call(so, kernel, args, packed_bytes(spec.out_shape, out_bits))
    got = unpack(np.frombuffer(raw, np.uint8).reshape(spec.out_shape[:-1] + (-1,)), out_bits,
                 cout, signed=out_signed)
    np.testing.assert_array_equal(got, want, err_msg=kernel.name)


# ---------------------------------------------------------------------------------------
# accumulator overflow: refused or impossible

@settings(max_examples=200, deadline=None, derandomize=True)
@given(k=st.integers(1, 60_000), cout=st.integers(1, 4),
       in_q=st.tuples(st.sampled_from(BITS), st.booleans()),
       w_q=st.tuples(st.sampled_from(BITS), st.booleans()),
       bias_exp=st.floats(-3, 12), bn=st.booleans(), seed=st.integers(0, 2**32 - 1))
def test_accumulator_overflow_is_refused_or_impossible(k, cout, in_q, w_q, bias_exp, bn, seed):
    from tvm_mpq.passes.legalize_icn import QAct, QWeight, _Legalizer

    rng = np.random.default_rng(seed)
    (in_bits, in_signed), (w_bits, w_signed) = in_q, w_q
    x = QAct(None, float(rng.uniform(0.001, 0.1)), int(rng.integers(*_incl(in_bits, in_signed))),
             in_bits, in_signed, "x")
    out = QAct(None, float(rng.uniform(0.001, 0.1)), 0, 8, False, "y")
    wq = rng.integers(*_incl(w_bits, w_signed), (cout, k))
    # extreme weights in some channels: the largest distance from the zero point everywhere
    lo, hi = int_range(w_bits, w_signed)
    w_zero = rng.integers(lo, hi + 1, cout)
    wq[0] = np.where(hi - w_zero[0] >= w_zero[0] - lo, hi, lo)
    w = QWeight(wq, rng.uniform(0.001, 0.05, cout), w_zero, w_bits, w_signed, True, "w")
    bias = rng.choice([-1, 1], cout) * 10.0 ** bias_exp * rng.uniform(0.5, 1, cout)
    bnp = None
    if bn:
        bnp = (rng.uniform(0.5, 2, cout), rng.normal(0, 10.0 ** min(bias_exp, 6), cout),
               rng.normal(0, 1, cout), rng.uniform(0.1, 2, cout), 1e-3)
    try:
        bias_q, m0, n0, shift = _Legalizer.icn_params(None, "layer 'l'", x, w, bias, bnp, out)
    except ModelError as e:
        assert "layer 'l'" in str(e) and "overflow" in str(e)
        return
    # the worst input for each channel: every tap at the end of the input range that is
    # farthest from the zero point in the direction of the weight's sign
    x_lo, x_hi = x.q_range
    for sign in (1, -1):
        dw = (wq - w_zero[:, None]) * sign
        xs = np.where(dw >= 0, x_hi, x_lo) - x.zero             # (cout, k)
        worst = (xs * dw).sum(axis=1)
        acc = worst * sign * (1 << shift) + bias_q.astype(np.int64)
        assert np.all(np.abs(acc) < 2**31), (shift, acc)
    # ... and the golden model computes them without an OverflowError
    xw = np.where(wq[0] - w_zero[0] >= 0, x_hi, x_lo)[None]
    y = ops.linear(xw, wq, w_zero, bias_q, x.zero, m0, n0, 0, 0, 255, acc_shift=shift)
    assert 0 <= y.min() and y.max() <= 255


# ---------------------------------------------------------------------------------------
# the integer Relax op (TVM host build) for any kernel size and padding

@settings(max_examples=20, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow])
@given(depthwise=st.booleans(), k=st.sampled_from([2, 3, 5]), data=st.data(),
       stride=st.sampled_from([1, 2]), h=st.integers(2, 7), wd=st.integers(2, 7),
       c=st.sampled_from([1, 3, 5]), cout=st.sampled_from([1, 3]),
       bits=st.tuples(st.sampled_from(BITS), st.sampled_from(BITS), st.sampled_from(BITS)),
       seed=st.integers(0, 2**16))
def test_relax_conv_any_kernel_size_and_padding(depthwise, k, data, stride, h, wd, c, cout,
                                                bits, seed):
    from tvm_mpq import tvm_adapter as ta
    from tvm_mpq.passes.ops import make_call

    pad = data.draw(st.integers(0, k - 1), "pad")
    assume(h + 2 * pad >= k and wd + 2 * pad >= k)
    in_bits, out_bits, w_bits = bits
    rng = np.random.default_rng(seed)
    cout = c if depthwise else cout
    x = rng.integers(0, 1 << in_bits, (1, h, wd, c)).astype(np.uint8)
    w = rng.integers(0, 1 << w_bits, (cout, k, k, 1 if depthwise else c)).astype(np.uint8)
    w_zero = rng.integers(0, 1 << w_bits, cout).astype(np.int32)
    bias = rng.integers(-2000, 2000, cout).astype(np.int32)
    m0, n0 = icn.quantize_multipliers(rng.uniform(0.001, 0.05, cout) * (1 << out_bits) / 256)
    n0 = n0.astype(np.int32)
    z_in = int(rng.integers(0, 1 << in_bits))
    q_max = (1 << out_bits) - 1
    attrs = dict(stride=stride, pad=pad, depthwise=int(depthwise), z_in=z_in, z_out=0,
                 q_min=0, q_max=q_max, in_bits=in_bits, out_bits=out_bits, w_bits=w_bits,
                 acc_shift=0)
    want = ops.conv2d(x, w, w_zero, bias, z_in, stride, pad, m0, n0, 0, 0, q_max,
                      depthwise=depthwise)
    relax = ta.relax()
    bb = relax.BlockBuilder()
    xv = relax.Var("x", ta.tensor_type(x.shape, "uint8"))
    with bb.function("main", [xv]):
        with bb.dataflow():
            y = bb.emit(make_call("mpq.conv2d_icn", [xv] + [ta.const(a) for a in
                                                            (w, w_zero, bias, m0, n0)], attrs))
            o = bb.emit_output(y)
        bb.emit_func_output(o)
    got = np.asarray(ta.build_relax_host(bb.get())(x))
    np.testing.assert_array_equal(got, want)
