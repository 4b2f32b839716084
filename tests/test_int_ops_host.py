"""Bit-exactness of the integer Relax ops (TVM host build) against the numpy golden model,
for every layer kind and every (in, out, weight) bit combination, per layer and per channel,
odd channel counts included; plus hypothesis property tests over random shapes."""

import itertools

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tvm_mpq import tvm_adapter as ta
from tvm_mpq.passes.ops import make_call
from tvm_mpq.reference import icn, ops

BITS = (8, 4, 2)


def _run_single(op, inputs, consts, attrs):
    """Build main(inputs...) = op(inputs..., consts...) and run it on the host."""
    relax = ta.relax()
    bb = relax.BlockBuilder()
    params = [relax.Var(f"x{i}", ta.tensor_type(a.shape, str(a.dtype))) for i, a in enumerate(inputs)]
    with bb.function("main", params):
        with bb.dataflow():
            y = bb.emit(make_call(op, params + [ta.const(c) for c in consts], attrs))
            out = bb.emit_output(y)
        bb.emit_func_output(out)
    run = ta.build_relax_host(bb.get())
    return np.asarray(run(*inputs))


def _layer_params(rng, cout, k_elems, in_bits, w_bits, out_bits, per_channel, signed_out=False):
    w_hi = (1 << w_bits) - 1
    w_zero = rng.integers(0, w_hi + 1, cout if per_channel else 1)
    w_zero = np.broadcast_to(w_zero, (cout,)).astype(np.int32).copy()
    bias = rng.integers(-2000, 2000, cout).astype(np.int32)
    # multipliers around 1 / (typical accumulator spread), some negative, one tiny
    scale = (1 << out_bits) / max(1.0, np.sqrt(k_elems) * (1 << in_bits) * (1 << w_bits) / 4)
    ms = rng.uniform(0.3, 3.0, cout) * scale * rng.choice([1, 1, 1, -1], cout)
    m0, n0 = icn.quantize_multipliers(ms)
    if signed_out:
        q = (-(1 << (out_bits - 1)), (1 << (out_bits - 1)) - 1)
    else:
        q = (0, (1 << out_bits) - 1)
    return w_zero, bias, m0, n0.astype(np.int32), q


def _conv_case(seed, kind, in_bits, out_bits, w_bits, per_channel, h=7, c=5, cout=3, stride=1):
    rng = np.random.default_rng(seed)
    acc_shift = int(seed % 4)
    k, pad = (1, 0) if kind == "pointwise" else (3, 1)
    if kind == "depthwise":
        cout = c
    x = rng.integers(0, 1 << in_bits, (1, h, h, c)).astype(np.uint8)
    cin_w = 1 if kind == "depthwise" else c
    w = rng.integers(0, 1 << w_bits, (cout, k, k, cin_w)).astype(np.uint8)
    w_zero, bias, m0, n0, (q_min, q_max) = _layer_params(
        rng, cout, k * k * cin_w, in_bits, w_bits, out_bits, per_channel)
    z_in = int(rng.integers(0, 1 << in_bits))
    z_out = int(rng.integers(0, 2))
    attrs = dict(stride=stride, pad=pad, depthwise=int(kind == "depthwise"), z_in=z_in,
                 z_out=z_out, q_min=q_min, q_max=q_max, in_bits=in_bits, out_bits=out_bits,
                 w_bits=w_bits, acc_shift=acc_shift)
    want = ops.conv2d(x, w, w_zero, bias, z_in, stride, pad, m0, n0, z_out, q_min, q_max,
                      depthwise=kind == "depthwise", acc_shift=acc_shift)
    got = _run_single("mpq.conv2d_icn", [x], [w, w_zero, bias, m0, n0], attrs)
    return got, want, q_max


COMBOS = list(itertools.product(BITS, BITS, BITS))


@pytest.mark.parametrize("kind", ["conv", "depthwise", "pointwise"])
@pytest.mark.parametrize("per_channel", [False, True], ids=["pl", "pc"])
def test_conv_kinds_all_bit_combos(kind, per_channel):
    for i, (ib, ob, wb) in enumerate(COMBOS):
        got, want, q_max = _conv_case(i, kind, ib, ob, wb, per_channel, stride=1 + i % 2)
        np.testing.assert_array_equal(got, want, err_msg=f"{kind} in{ib} out{ob} w{wb}")
        assert got.max() <= q_max


def test_outputs_are_not_degenerate():
    got, _, q_max = _conv_case(3, "conv", 8, 8, 8, True, h=9, c=7, cout=5)
    assert len(np.unique(got)) > 10 and got.max() <= q_max


@pytest.mark.parametrize("in_bits,out_bits,w_bits", COMBOS)
def test_linear_all_bit_combos(in_bits, out_bits, w_bits):
    rng = np.random.default_rng(in_bits * 100 + out_bits * 10 + w_bits)
    kdim, n = 37, 11
    x = rng.integers(0, 1 << in_bits, (1, kdim)).astype(np.uint8)
    w = rng.integers(0, 1 << w_bits, (n, kdim)).astype(np.uint8)
    w_zero, bias, m0, n0, (q_min, q_max) = _layer_params(
        rng, n, kdim, in_bits, w_bits, out_bits, True, signed_out=True)
    attrs = dict(z_in=1, z_out=0, q_min=q_min, q_max=q_max, in_bits=in_bits,
                 out_bits=out_bits, w_bits=w_bits, acc_shift=3)
    want = ops.linear(x, w, w_zero, bias, 1, m0, n0, 0, q_min, q_max, acc_shift=3)
    got = _run_single("mpq.linear_icn", [x], [w, w_zero, bias, m0, n0], attrs)
    np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("bits", BITS)
def test_avg_pool(bits):
    rng = np.random.default_rng(bits)
    x = rng.integers(0, 1 << bits, (1, 5, 5, 9)).astype(np.uint8)
    m0, n0 = icn.quantize_multipliers(np.array([1.0 / 25]))
    attrs = dict(kernel=5, stride=1, z_in=0, z_out=0, q_min=0, q_max=(1 << bits) - 1,
                 in_bits=bits, out_bits=bits)
    want = ops.avg_pool(x, 5, 1, 0, m0, n0, 0, 0, (1 << bits) - 1)
    got = _run_single("mpq.avg_pool_icn", [x], [m0, n0.astype(np.int32)], attrs)
    np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(want[0, 0, 0], np.rint(x[0].mean(axis=(0, 1))))


@pytest.mark.parametrize("bits", BITS)
def test_add(bits):
    rng = np.random.default_rng(bits)
    a = rng.integers(0, 1 << bits, (1, 4, 4, 7)).astype(np.uint8)
    b = rng.integers(0, 1 << bits, (1, 4, 4, 7)).astype(np.uint8)
    p = dict(z_a=1, z_b=0, k_a=int(0.7 * (1 << 16)), k_b=int(0.45 * (1 << 16)), shift=16,
             z_out=0, q_min=0, q_max=(1 << bits) - 1)
    want = ops.add(a, b, **p)
    got = _run_single("mpq.add_icn", [a, b], [], dict(p, out_bits=bits))
    np.testing.assert_array_equal(got, want)


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**16), kind=st.sampled_from(["conv", "depthwise", "pointwise"]),
       bits=st.tuples(st.sampled_from(BITS), st.sampled_from(BITS), st.sampled_from(BITS)),
       h=st.integers(1, 9), c=st.integers(1, 9), cout=st.integers(1, 6),
       stride=st.sampled_from([1, 2]), per_channel=st.booleans())
def test_conv_property_random_shapes(seed, kind, bits, h, c, cout, stride, per_channel):
    got, want, _ = _conv_case(seed, kind, *bits, per_channel, h=h, c=c, cout=cout, stride=stride)
    np.testing.assert_array_equal(got, want)
