"""Edge cases of the fast (DSP) kernels' zero-point handling, on the host build (the plain-C
twin of include/mpq_dsp*.h), against the numpy golden model bit for bit, and the fast and
the plain kernels against each other byte for byte.

The fast kernels compute sum (x - z_in)(w - w_zero) as x'.u - (w_zero + off) * sum(x'),
x' = x - z_in (0 in padding taps), so the cases stress: padding with extreme input zero
points, per-channel zero points at both ends of the weight range, signed 4/2-bit weights
(u = w + 2^(b-1)), odd channel counts (row padding slots, partial weight words, partial
depthwise channel blocks) and 3x3 windows that are mostly padding."""

from __future__ import annotations

import dataclasses
import itertools

import numpy as np
import pytest

from tvm_mpq.codegen import kernel_dsp
from tvm_mpq.codegen.kernels import KernelSpec, generate_kernel, pack_params
from tvm_mpq.errors import ModelError
from tvm_mpq.reference import ops
from tvm_mpq.reference.packing import pack

from test_codegen_kernels import (Case, _call, _icn_params, _range, builder,  # noqa: F401
                                  conv_case, linear_case)


def _edge_case(seed, kind, in_bits, w_bits, *, w_signed, in_signed=False, z_in="max",
               w_zero="extreme", h=4, c=7, cout=5, stride=1):
    """A conv-type case with chosen extreme zero points (z_in at an end of the input range,
    w_zero alternating between the ends of the weight range)."""
    rng = np.random.default_rng(seed)
    k, pad = (1, 0) if kind == "pointwise" else (3, 1)
    cout = c if kind == "depthwise" else cout
    ho = (h + 2 * pad - k) // stride + 1
    lo, hi = _range(in_bits, in_signed)
    zi = {"max": hi, "min": lo, "mid": (lo + hi) // 2}[z_in]
    wlo, whi = _range(w_bits, w_signed)
    if w_zero == "extreme":
        wz = np.where(np.arange(cout) % 2 == 0, wlo, whi)
    else:
        wz = np.full(cout, (wlo + whi) // 2)
    x = rng.integers(lo, hi + 1, (1, h, h, c))
    w = rng.integers(wlo, whi + 1, (cout, k, k, 1 if kind == "depthwise" else c))
    bias, m0, n0 = _icn_params(rng, cout, k * k * (1 if kind == "depthwise" else c),
                               in_bits, w_bits, 8)
    spec = KernelSpec(kind, (1, h, h, c), (1, ho, ho, cout), kernel=k, stride=stride, pad=pad,
                      in_bits=in_bits, out_bits=8, w_bits=w_bits, in_signed=in_signed,
                      w_signed=w_signed, z_in=zi, suffix=f"dsp{seed}")
    want = ops.conv2d(x, w, wz, bias, zi, stride, pad, m0, n0, 0, 0, 255,
                      depthwise=kind == "depthwise")
    p = pack_params(spec, w, wz, bias, m0, n0)
    args = [pack(x[0], in_bits).tobytes()] + [p[n][1] for n in ("w", "w_zero", "bias", "m0", "n0")]
    return Case(spec, args, want)


def _check(builder, cases):  # noqa: F811
    lib = builder.load(c.kernel for c in cases)
    for c in cases:
        assert c.kernel.scratch_bytes == kernel_dsp.scratch_bytes(c.spec)
        c.check(lib)


@pytest.mark.parametrize("kind", ["conv", "depthwise", "pointwise"])
def test_extreme_zero_points_signed_and_unsigned_weights(builder, kind):  # noqa: F811
    cases = []
    for i, (ib, wb) in enumerate([(8, 8), (8, 4), (4, 2), (2, 8), (8, 2), (4, 4)]):
        for w_signed in (False, True):
            for z_in in ("max", "min"):
                seed = 7000 + 100 * ["conv", "depthwise", "pointwise"].index(kind) \
                    + 8 * i + 2 * int(w_signed) + (z_in == "min")
                cases.append(_edge_case(seed, kind, ib, wb, w_signed=w_signed, z_in=z_in,
                                        in_signed=(i % 2 == 1), stride=1 + i % 2))
    _check(builder, cases)


@pytest.mark.parametrize("c", [1, 3, 5, 9, 17])
def test_odd_channel_counts_mostly_padding(builder, c):  # noqa: F811
    """1x1 and 2x2 inputs: every 3x3 window is mostly padding; odd C leaves row padding
    slots, partial weight words and partial depthwise blocks."""
    cases = [_edge_case(7500 + 10 * c + j, kind, ib, wb, w_signed=j % 2 == 0, h=h, c=c,
                        cout=c + 2)
             for j, (kind, ib, wb, h) in enumerate([
                 ("conv", 8, 8, 1), ("conv", 4, 2, 2), ("depthwise", 8, 4, 1),
                 ("depthwise", 2, 8, 2), ("pointwise", 4, 4, 3), ("conv", 2, 4, 2)])]
    _check(builder, cases)


def test_fast_and_plain_kernels_give_identical_bytes(builder):  # noqa: F811
    cases = [conv_case(7600, "conv", 8, 4, 2, True, w_signed=True, stride=2),
             conv_case(7601, "depthwise", 4, 8, 4, True, in_signed=True),
             conv_case(7602, "pointwise", 2, 2, 8, True, c=13, cout=7),
             linear_case(7603, 8, 8, 4, kdim=61, n=9, w_signed=True)]
    plain = [generate_kernel(dataclasses.replace(c.spec, dsp=False, suffix=c.spec.suffix + "p"))
             for c in cases]
    lib = builder.load([c.kernel for c in cases] + plain)
    for case, kp in zip(cases, plain):
        s = case.spec
        n = len(pack(case.want, s.out_bits).tobytes())
        assert case.kernel.scratch_bytes > 0 or s.kind == "depthwise"
        assert kp.scratch_bytes == 0
        assert _call(lib, case.kernel, case.args, n) == _call(lib, kp, case.args, n)


def test_plain_kernels_selectable_by_environment(monkeypatch):
    monkeypatch.setenv("TVM_MPQ_PLAIN_KERNELS", "1")
    spec = KernelSpec("pointwise", (1, 2, 2, 4), (1, 2, 2, 4))
    assert spec.dsp is False and generate_kernel(spec).scratch_bytes == 0
    monkeypatch.delenv("TVM_MPQ_PLAIN_KERNELS")
    spec = KernelSpec("pointwise", (1, 2, 2, 4), (1, 2, 2, 4))
    assert spec.dsp is True and "mpq_dsp_dot(" in generate_kernel(spec).c_source


def _schedules(spec):
    space = kernel_dsp.schedule_space(spec)
    for vals in itertools.product(*space.values()):
        sched = dict(zip(space, vals))
        if kernel_dsp.valid_schedule(spec, sched):
            yield sched


def test_every_schedule_gives_the_golden_bytes(builder):  # noqa: F811
    """Each point of the tuning space (pixel block, channel block, unrolling) is exact:
    odd pixel and channel counts (duplicate pixels / channels not stored), partial weight
    words, 2-bit outputs (4 channels a byte), stride 2, and a linear layer."""
    base = [conv_case(7700, "conv", 8, 8, 8, True, w_signed=True, h=5, c=7, cout=9),
            conv_case(7701, "conv", 4, 2, 4, True, w_signed=True, stride=2, c=5, cout=6),
            conv_case(7702, "pointwise", 2, 4, 2, True, h=3, c=13, cout=7),
            conv_case(7703, "pointwise", 8, 8, 4, False, in_signed=True, h=5, c=8, cout=10),
            linear_case(7704, 8, 8, 8, kdim=61, n=9, w_signed=True),
            # 4-bit inputs, 8-bit weights, C % 8 == 0: im2col 8 channels a word
            conv_case(7705, "conv", 4, 8, 8, True, in_signed=True, w_signed=True, h=4, c=16,
                      cout=5, stride=2),
            conv_case(7706, "pointwise", 4, 4, 8, True, h=3, c=24, cout=6),
            # depthwise, 2 pixels a call: odd widths (a duplicate last pixel), borders,
            # stride 2, a partial channel block
            conv_case(7707, "depthwise", 8, 8, 8, True, w_signed=True, h=7, c=6),
            conv_case(7708, "depthwise", 4, 2, 4, True, in_signed=True, h=6, c=9, stride=2)]
    cases = []
    for c in base:
        for i, sched in enumerate(_schedules(c.spec)):
            spec = dataclasses.replace(c.spec, suffix=f"{c.spec.suffix}_s{i}").with_schedule(sched)
            cases.append(Case(spec, c.args, c.want))
    assert len(cases) > 25
    _check(builder, cases)


def test_schedule_validation():
    spec = KernelSpec("pointwise", (1, 4, 4, 8), (1, 4, 4, 8), out_bits=2)
    # the default: 8 columns x 1 weight row (16 pixels: 2 steps, the fewest instructions)
    assert kernel_dsp.resolve_schedule(spec) == {"pix": 8, "ch": 1, "unroll": 2}
    assert not kernel_dsp.valid_schedule(spec, {"pix": 4, "ch": 2})  # 4 x 4 accumulators
    assert not kernel_dsp.valid_schedule(spec, {"pix": 3, "ch": 4})
    assert not kernel_dsp.valid_schedule(spec, {"ch": 1, "unroll": 1})
    assert not kernel_dsp.valid_schedule(spec, {"tile": 2})
    with pytest.raises(ModelError, match="schedule"):
        spec.with_schedule({"pix": 4, "ch": 2})
    # unset knobs: the first candidate the constraints allow
    assert kernel_dsp.resolve_schedule(spec.with_schedule({"ch": 2})) == \
        {"pix": 2, "ch": 2, "unroll": 2}
    # few pixels: no duplicate columns (7 x 7: 7 columns a step)
    assert kernel_dsp.resolve_schedule(KernelSpec("pointwise", (1, 7, 7, 8), (1, 7, 7, 8)))[
        "pix"] == 7
    # wide weight rows: the default's im2col stays within DEFAULT_SCRATCH
    big = KernelSpec("pointwise", (1, 14, 14, 2048), (1, 14, 14, 8))
    assert generate_kernel(big).scratch_bytes <= kernel_dsp.DEFAULT_SCRATCH
    dw = KernelSpec("depthwise", (1, 4, 4, 8), (1, 4, 4, 8), kernel=3, pad=1)
    assert kernel_dsp.schedule_space(dw) == {"rows": (1, 0), "pix": (1, 2), "g": (8, 4)}
    assert kernel_dsp.resolve_schedule(dw) == {"rows": 1, "pix": 1, "g": 8}
    assert not kernel_dsp.valid_schedule(dw, {"rows": 1, "pix": 2})  # a per-pixel knob
    assert kernel_dsp.valid_schedule(dw, {"rows": 0, "pix": 2})
    # records from before the row kernel: pix alone picks the per-pixel kernel
    assert kernel_dsp.resolve_schedule(dw.with_schedule({"pix": 2})) == \
        {"rows": 0, "pix": 2, "g": 4}
    assert not kernel_dsp.valid_schedule(dw, {"rows": 0, "g": 8})  # a row-kernel knob
    # the ring of 3 widened rows (stride 1: 2 + 1 pairs a row) is the kernel's scratch
    assert generate_kernel(dw).scratch_bytes == 3 * 8 * 3 * 4
    assert generate_kernel(dw.with_schedule({"rows": 0})).scratch_bytes == 0
    dw5 = KernelSpec("depthwise", (1, 8, 8, 4), (1, 8, 8, 4), kernel=5, pad=2)
    assert kernel_dsp.schedule_space(dw5) == {"pix": (1, 2)}        # the row kernel is 3x3
    assert kernel_dsp.schedule_space(
        KernelSpec("avg_pool", (1, 4, 4, 8), (1, 1, 1, 8), kernel=4)) == {}
    # the schedule is part of the spec: two schedules, two kernels
    a = generate_kernel(KernelSpec("pointwise", (1, 4, 4, 8), (1, 4, 4, 8)))
    b = generate_kernel(KernelSpec("pointwise", (1, 4, 4, 8), (1, 4, 4, 8)).with_schedule(
        {"pix": 1}))
    assert a.name != b.name and b.scratch_bytes * 8 == a.scratch_bytes


def _dw_case(seed, h, w, c, stride, pad, in_bits, out_bits, w_bits, *, in_signed=False,
             w_signed=False, out_signed=False, acc_shift=0, schedule=None):
    """A 3x3 depthwise case of any (h, w, pad, stride): golden from reference.ops."""
    from test_codegen_kernels import _ints, _q_limits
    rng = np.random.default_rng(seed)
    ho, wo = (h + 2 * pad - 3) // stride + 1, (w + 2 * pad - 3) // stride + 1
    q_min, q_max = _q_limits(rng, out_bits, out_signed, False)
    z_in = int(_ints(rng, in_bits, in_signed, ()))
    z_out = int(rng.integers(q_min, min(q_max, q_min + 2) + 1))
    spec = KernelSpec("depthwise", (1, h, w, c), (1, ho, wo, c), kernel=3, stride=stride,
                      pad=pad, in_bits=in_bits, out_bits=out_bits, w_bits=w_bits,
                      in_signed=in_signed, out_signed=out_signed, w_signed=w_signed,
                      z_in=z_in, z_out=z_out, q_min=q_min, q_max=q_max,
                      suffix=f"dwr{seed}", acc_shift=acc_shift)
    x = _ints(rng, in_bits, in_signed, (1, h, w, c))
    wt = _ints(rng, w_bits, w_signed, (c, 3, 3, 1))
    w_zero = _ints(rng, w_bits, w_signed, c)
    bias, m0, n0 = _icn_params(rng, c, 9, in_bits, w_bits, out_bits)
    n0 = (np.asarray(n0) - acc_shift).astype(np.int8)
    want = ops.conv2d(x, wt, w_zero, bias, z_in, stride, pad, m0, n0, z_out, q_min, q_max,
                      depthwise=True, acc_shift=acc_shift)
    from tvm_mpq.reference import icn
    spec = dataclasses.replace(spec, ties=icn.ties_possible(m0, n0),
                               shift_hi=bool(np.all(np.asarray(n0) <= -2)))
    if schedule:
        spec = spec.with_schedule(schedule)
    p = pack_params(spec, wt, w_zero, bias, m0, n0)
    args = [pack(x[0], in_bits).tobytes()] + [p[n][1] for n in ("w", "w_zero", "bias", "m0", "n0")]
    return Case(spec, args, want)


def test_row_depthwise_every_shape(builder):  # noqa: F811
    """The row depthwise kernel (ring of widened rows, sliding weight pairs) against the
    golden model: images narrower and shorter than the window, non-square, pad 0 / 1 / 2,
    stride 1 and 2, odd and even output widths (the odd last output), partial channel
    blocks of both block sizes, every bit width and sign, acc_shift."""
    cases = []
    seed = 8800
    shapes = [(1, 1, 0), (1, 1, 1), (2, 3, 1), (3, 3, 0), (4, 7, 1), (5, 4, 2), (8, 8, 1),
              (6, 11, 2)]
    for n, (h, w, pad) in enumerate(shapes):
        for stride in (1, 2):
            if (h + 2 * pad - 3) < 0 or (w + 2 * pad - 3) < 0:
                continue
            ib, ob, wb = [(8, 8, 8), (4, 8, 4), (2, 4, 8), (8, 2, 2), (4, 4, 4)][n % 5]
            c = (1, 3, 4, 5, 9, 16, 6, 13)[n]
            g = 8 if (n + stride) % 2 else 4
            cases.append(_dw_case(seed, h, w, c, stride, pad, ib, ob, wb,
                                  in_signed=bool(n % 3 == 1), w_signed=bool(n % 2),
                                  out_signed=bool(n % 4 == 3), acc_shift=n % 3,
                                  schedule={"g": g}))
            seed += 1
    assert all(kernel_dsp.dw_rows_layout(c.spec) for c in cases) and len(cases) >= 14
    _check(builder, cases)
