"""Every kernel kind x every (in, out, weight) bit combination on the emulated Cortex-M7:
QEMU output == host build output == numpy golden model, byte for byte.

All kernels go into ONE firmware image whose `mpq_model_run` calls each kernel on constant
packed inputs and writes its packed output at its own offset of the output buffer; the
same sources are built for the host. One QEMU run checks everything.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from kernel_image import build_image, check_image
from tvm_mpq.codegen.kernels import KernelSpec, generate_kernel, pack_params
from tvm_mpq.reference import icn, ops
from tvm_mpq.reference.packing import pack

BITS = (8, 4, 2)
COMBOS = list(itertools.product(BITS, BITS, BITS))


def _case(i, kind, in_bits, out_bits, w_bits, rng, c=None, w_signed=None, schedule=None):
    h, c = 5, c or (5 if kind != "linear" else 13)
    cout = {"depthwise": c, "linear": 7}.get(kind, 3)
    k, pad = (1, 0) if kind in ("pointwise", "linear") else (3, 1)
    stride = 1 + i % 2 if kind in ("conv", "depthwise") else 1
    w_signed = bool(i % 3 == 0) if w_signed is None else w_signed
    out_signed = kind == "linear"
    in_shape = (1, c) if kind == "linear" else (1, h, h, c)
    x = rng.integers(0, 1 << in_bits, in_shape)
    wlo, whi = (-(1 << (w_bits - 1)), 1 << (w_bits - 1)) if w_signed else (0, 1 << w_bits)
    wshape = {"linear": (cout, c), "depthwise": (c, k, k, 1)}.get(kind, (cout, k, k, c))
    w = rng.integers(wlo, whi, wshape)
    w_zero = rng.integers(wlo, whi, cout) if i % 2 else np.full(cout, int(rng.integers(wlo, whi)))
    bias = rng.integers(-500, 500, cout)
    k_el = k * k * (1 if kind == "depthwise" else c)
    scale = (1 << out_bits) / max(1.0, np.sqrt(k_el) * (1 << in_bits) * (1 << w_bits) / 4)
    m0, n0 = icn.quantize_multipliers(rng.uniform(0.3, 3.0, cout) * scale)
    q_min, q_max = ((-(1 << (out_bits - 1)), (1 << (out_bits - 1)) - 1) if out_signed
                    else (0, (1 << out_bits) - 1))
    z_in = int(rng.integers(0, 1 << in_bits))
    acc_shift = i % 3                                  # bias fractional bits
    n0 = (n0.astype(np.int64) - acc_shift).astype(np.int8)
    if kind == "linear":
        y = ops.linear(x, w, w_zero, bias, z_in, m0, n0, 0, q_min, q_max, acc_shift=acc_shift)
        out_shape = (1, cout)
    else:
        y = ops.conv2d(x, w, w_zero, bias, z_in, stride, pad, m0, n0, 1, q_min, q_max,
                       depthwise=kind == "depthwise", acc_shift=acc_shift)
        out_shape = y.shape
    spec = KernelSpec(kind, in_shape, out_shape, kernel=k, stride=stride, pad=pad,
                      in_bits=in_bits, out_bits=out_bits, w_bits=w_bits, w_signed=w_signed,
                      out_signed=out_signed, z_in=z_in, z_out=0 if kind == "linear" else 1,
                      q_min=q_min, q_max=q_max, acc_shift=acc_shift,
                      ties=icn.ties_possible(m0, n0), shift_hi=bool(np.all(n0 <= -2)))
    if schedule:
        spec = spec.with_schedule(schedule)
    params = pack_params(spec, w, w_zero, bias, m0, n0)
    return spec, pack(x.reshape(-1, in_shape[-1]), in_bits).tobytes(), params, y


# (kind, C, in bits, weight bits, signed weights, schedule)
WIDE = [("pointwise", 37, 8, 8, True, None), ("pointwise", 64, 4, 8, False, None),
        ("pointwise", 45, 8, 4, True, None), ("conv", 16, 4, 4, False, None),
        # the 2 x 2 assembly block and the general C block
        ("pointwise", 37, 8, 8, True, {"ch": 2}), ("pointwise", 64, 4, 8, False, {"ch": 2}),
        ("pointwise", 45, 8, 4, True, {"ch": 2}), ("conv", 16, 4, 4, False, {"ch": 2}),
        ("pointwise", 40, 8, 8, False, {"pix": 4, "ch": 2, "unroll": 1}),
        ("conv", 16, 8, 8, True, {"pix": 1, "ch": 2}), ("conv", 11, 2, 8, False, {"ch": 4}),
        # the generated P x 1 assembly (asm_m7.gemm_asm): every P, 8/4/2-bit weights
        # signed and unsigned, odd word counts, partial words (C tails)
        ("pointwise", 29, 8, 8, False, {"pix": 8}), ("pointwise", 33, 8, 4, True, {"pix": 7}),
        ("pointwise", 48, 8, 2, True, {"pix": 6}), ("conv", 7, 4, 2, False, {"pix": 5}),
        ("pointwise", 40, 2, 4, False, {"pix": 3}), ("conv", 12, 8, 8, True, {"pix": 2}),
        ("pointwise", 96, 4, 8, True, {"pix": 1}), ("linear", 77, 8, 2, True, None),
        ("linear", 90, 8, 4, False, None),
        # a weight row over 4095 bytes (the loop end built with MOVW)
        ("conv", 520, 8, 8, True, None),
        ("linear", 100, 8, 8, True, None), ("linear", 64, 8, 8, False, {"ch": 4}),
        ("depthwise", 12, 8, 8, True, {"rows": 0, "pix": 2}),
        ("depthwise", 7, 4, 2, False, {"pix": 2}), ("depthwise", 9, 8, 8, True, {"rows": 0})]


# the row depthwise kernel's assembly (asm_m7.dwr_asm): (H, W, C, stride, in/out/w
# bits, acc_shift, out signed, schedule). Odd output widths (the last output alone), one
# output a row, pad 0, C > 255 (stores without post-increment), partial channel blocks,
# 4- and 2-bit outputs (2 and 4 channels a byte), signed outputs (SSAT, masked nibbles),
# acc_shift, 4-bit inputs, 2-bit weights; every ring rotation occurs down the rows.
DW_ASM = [(9, 9, 12, 1, (8, 8, 8), 0, False, {"g": 4}), (5, 5, 300, 1, (8, 8, 8), 3, False, None),
          (10, 10, 8, 2, (8, 8, 8), 11, False, None), (6, 7, 6, 2, (8, 8, 4), 2, False, {"g": 8}),
          (4, 4, 5, 1, (8, 8, 8), 0, True, None), (1, 1, 4, 1, (8, 8, 8), 1, False, None),
          (7, 6, 10, 1, (4, 4, 8), 12, False, {"g": 4}), (8, 9, 9, 1, (8, 2, 2), 4, False, None),
          (6, 6, 7, 2, (2, 4, 8), 0, True, None), (5, 8, 13, 1, (8, 4, 8), 5, True, None)]


def _dw_asm_case(rng, h, w, c, stride, bits, acc_shift, out_signed, schedule, pad=1):
    """A depthwise layer the assembly row takes: odd m0 with n0 <= -2 (no rounding ties,
    shift_hi), full-range clamp."""
    ib, ob, wb = bits
    x = rng.integers(0, 1 << ib, (1, h, w, c))
    wt = rng.integers(-(1 << (wb - 1)), 1 << (wb - 1), (c, 3, 3, 1))
    w_zero = rng.integers(-1, 2, c)
    bias = rng.integers(-3000, 3000, c)
    scale = (1 << ob) / (3 * (1 << ib) * (1 << wb) / 4) / (1 << acc_shift)
    m0, n0 = icn.quantize_multipliers(rng.uniform(0.3, 3.0, c) * scale)
    m0 = m0 | 1
    assert np.all(n0 <= -2)
    q_min, q_max = ((-(1 << (ob - 1)), (1 << (ob - 1)) - 1) if out_signed
                    else (0, (1 << ob) - 1))
    z_in, z_out = int(rng.integers(0, 1 << ib)), int(rng.integers(0, 2))
    y = ops.conv2d(x, wt, w_zero, bias, z_in, stride, pad, m0, n0, z_out, q_min, q_max,
                   depthwise=True, acc_shift=acc_shift)
    spec = KernelSpec("depthwise", x.shape, y.shape, kernel=3, stride=stride, pad=pad,
                      in_bits=ib, out_bits=ob, w_bits=wb, w_signed=True, out_signed=out_signed,
                      z_in=z_in, z_out=z_out, q_min=q_min, q_max=q_max, acc_shift=acc_shift,
                      ties=icn.ties_possible(m0, n0), shift_hi=True)
    if schedule:
        spec = spec.with_schedule(schedule)
    assert "__row" in generate_kernel(spec).c_source, spec      # the assembly row is used
    params = pack_params(spec, wt, w_zero, bias, m0, n0)
    return spec, pack(x.reshape(-1, c), ib).tobytes(), params, y


def _pool_add_cases(rng):
    cases = []
    for bits in BITS:
        x = rng.integers(0, 1 << bits, (1, 4, 4, 5))
        m0, n0 = icn.quantize_multipliers(np.array([1.0 / 16]))
        y = ops.avg_pool(x, 4, 1, 0, m0, n0, 0, 0, (1 << bits) - 1)
        spec = KernelSpec("avg_pool", x.shape, y.shape, kernel=4, in_bits=bits, out_bits=bits)
        cases.append((spec, pack(x.reshape(-1, 5), bits).tobytes(),
                      pack_params(spec, m0=m0, n0=n0), y, None))
        a = rng.integers(0, 1 << bits, (1, 3, 3, 7))
        b = rng.integers(0, 1 << bits, (1, 3, 3, 7))
        p = dict(z_a=1, z_b=0, k_a=45000, k_b=30000, shift=16, z_out=0, q_min=0,
                 q_max=(1 << bits) - 1)
        y = ops.add(a, b, **p)
        spec = KernelSpec("add", a.shape, a.shape, in_bits=bits, out_bits=bits, **p)
        cases.append((spec, pack(a.reshape(-1, 7), bits).tobytes(), {}, y,
                      pack(b.reshape(-1, 7), bits).tobytes()))
    return cases


@pytest.fixture(scope="module")
def firmware(tmp_path_factory):
    rng = np.random.default_rng(2026)
    cases = []
    i = 0
    for kind in ("conv", "depthwise", "pointwise", "linear"):
        for ib, ob, wb in COMBOS:
            spec, xb, params, y = _case(i, kind, ib, ob, wb, rng)
            cases.append((spec, xb, params, y, None))
            i += 1
    # wider rows: the 8- and 4-bit assembly loops of the 2 x 2 block (odd word counts, tail bytes,
    # signed and unsigned weights) and the other points of the tuning space
    for kind, c, ib, wb, ws, sched in WIDE:
        spec, xb, params, y = _case(i, kind, ib, 8, wb, rng, c=c, w_signed=ws, schedule=sched)
        cases.append((spec, xb, params, y, None))
        i += 1
    for h, w, c, stride, bits, acc_shift, out_signed, sched in DW_ASM:
        cases.append((*_dw_asm_case(rng, h, w, c, stride, bits, acc_shift, out_signed,
                                    sched, pad=0 if c == 10 else 1), None))
    cases += _pool_add_cases(rng)
    qemu, host, expect = build_image(cases, tmp_path_factory.mktemp("kernels"))
    return qemu, host, expect, len(cases)


def test_every_kernel_on_qemu_equals_host_and_golden(firmware):
    qemu, host, expect, n_cases = firmware
    assert n_cases == 4 * 27 + len(WIDE) + len(DW_ASM) + 6
    check_image(qemu, host, expect)
