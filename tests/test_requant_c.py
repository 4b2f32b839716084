"""The C requantization micro-kernel (include/mpq_dsp.h, used by the fast kernels) equals
reference.icn.requantize on every path: high-word fast path (s >= 33), 64-bit path,
exact ties (to even), negative values, clamping."""

import ctypes
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from tvm_mpq.reference import icn

HEADER = Path(__file__).resolve().parents[1] / "tvm_mpq/codegen/include/mpq_dsp.h"
SRC = """
#include <stdint.h>
#include "mpq_dsp.h"
void requant_all(const int32_t *acc, const int32_t *m0, const int32_t *n0, int32_t n,
                 int32_t z, int32_t lo, int32_t hi, int32_t *y) {
    for (int32_t i = 0; i < n; i++) y[i] = mpq_dsp_requant(acc[i], m0[i], n0[i], z, lo, hi);
}
void requant_noties(const int32_t *acc, const int32_t *m0, const int32_t *n0, int32_t n,
                    int32_t z, int32_t lo, int32_t hi, int32_t *y) {
    for (int32_t i = 0; i < n; i++)
        y[i] = mpq_dsp_requant_noties(acc[i], m0[i], n0[i], z, lo, hi);
}
"""


@pytest.fixture(scope="module")
def lib(tmp_path_factory):
    d = tmp_path_factory.mktemp("rq")
    (d / "rq.c").write_text(SRC)
    subprocess.run([shutil.which("gcc"), "-O2", "-shared", "-fPIC", f"-I{HEADER.parent}",
                    str(d / "rq.c"), "-o", str(d / "rq.so")], check=True)
    return ctypes.CDLL(str(d / "rq.so"))


def _c(lib, acc, m0, n0, z, lo, hi, fn="requant_all"):
    acc, m0, n0 = (np.ascontiguousarray(a, np.int32) for a in (acc, m0, n0))
    y = np.zeros(len(acc), np.int32)
    p = ctypes.POINTER(ctypes.c_int32)
    getattr(lib, fn)(acc.ctypes.data_as(p), m0.ctypes.data_as(p), n0.ctypes.data_as(p),
                    ctypes.c_int32(len(acc)), ctypes.c_int32(z), ctypes.c_int32(lo),
                    ctypes.c_int32(hi), y.ctypes.data_as(p))
    return y


def test_random_multipliers(lib):
    rng = np.random.default_rng(0)
    n = 20000
    acc = rng.integers(-(1 << 24), 1 << 24, n)
    m = rng.uniform(1e-8, 2.0, n) * rng.choice([-1, 1], n)
    pairs = [icn.quantize_multiplier(float(v)) for v in m]
    m0 = np.array([p[0] for p in pairs])
    n0 = np.array([p[1] for p in pairs])
    want = np.array([icn.requantize(np.array([a]), b, c, 3, -100000, 100000)[0]
                     for a, b, c in zip(acc, m0, n0)])
    np.testing.assert_array_equal(_c(lib, acc, m0, n0, 3, -100000, 100000), want)


@pytest.mark.parametrize("m", [0.5, 0.25, 1 / 16, 2.0 ** -20, 2.0 ** -28])
def test_exact_ties_round_to_even(lib, m):
    m0, n0 = icn.quantize_multiplier(m)
    acc = np.arange(-4096, 4096) * int(round(0.5 / m)) if m < 0.5 else np.arange(-4096, 4096)
    acc = np.clip(acc, -(1 << 31), (1 << 31) - 1)
    want = icn.requantize(acc, m0, n0, 0, -(1 << 31), (1 << 31) - 1)
    np.testing.assert_array_equal(want, np.rint(acc * m).astype(np.int64))   # numpy: to even
    got = _c(lib, acc, np.full(acc.shape, m0), np.full(acc.shape, n0), 0, -(1 << 31),
             (1 << 31) - 1)
    np.testing.assert_array_equal(got, want)


def test_clamp(lib):
    m0, n0 = icn.quantize_multiplier(0.75)
    acc = np.array([-1000, -1, 0, 1, 5, 1000])
    np.testing.assert_array_equal(_c(lib, acc, np.full(6, m0), np.full(6, n0), 1, 0, 3),
                                  icn.requantize(acc, m0, n0, 1, 0, 3))


def test_no_ties_variant_where_ties_are_impossible(lib):
    rng = np.random.default_rng(1)
    n = 20000
    acc = rng.integers(-(1 << 30), 1 << 30, n)
    m = 10.0 ** rng.uniform(-9, -1, n)          # conv-layer multipliers (M / 2^acc_shift)
    pairs = [icn.quantize_multiplier(float(v)) for v in m]
    keep = [i for i, (a, b) in enumerate(pairs) if not icn.ties_possible(a, b)]
    assert len(keep) > n // 2
    acc = acc[keep]
    m0 = np.array([pairs[i][0] for i in keep])
    n0 = np.array([pairs[i][1] for i in keep])
    want = np.array([icn.requantize(np.array([a]), b, c, 0, -(1 << 31), (1 << 31) - 1)[0]
                     for a, b, c in zip(acc, m0, n0)])
    got = _c(lib, acc, m0, n0, 0, -(1 << 31), (1 << 31) - 1, fn="requant_noties")
    np.testing.assert_array_equal(got, want)


def test_ties_possible():
    assert icn.ties_possible(*icn.quantize_multiplier(0.25))      # pooling: m0 = 2^30
    assert not icn.ties_possible(*icn.quantize_multiplier(0.3))


def test_ties_possible_with_an_accumulator_bound_is_sound():
    """With acc_max, ties_possible may say "no" only if no |acc| <= acc_max gives a tie:
    checked by brute force over every accumulator in range (numpy, exact int64)."""
    rng = np.random.default_rng(5)
    refined = 0
    for _ in range(1500):
        m0 = int(rng.integers(1 << 29, 1 << 31)) >> int(rng.integers(0, 12))
        m0 = max(1, m0 << int(rng.integers(0, 12)) & ((1 << 31) - 1)) or 1
        n0 = int(rng.integers(-20, 1))
        amax = int(rng.integers(1, 3000))
        acc = np.arange(-amax, amax + 1, dtype=np.int64)
        s = 31 - n0
        tie = bool(np.any((acc * m0) % (1 << s) == (1 << (s - 1))))
        got = icn.ties_possible(m0, n0, amax)
        assert got or not tie, (m0, n0, amax)
        refined += icn.ties_possible(m0, n0) and not got
    assert refined > 100            # the bound does rule ties out where m0/n0 alone cannot


def test_accumulator_max():
    w = np.array([[[[1], [-2]], [[3], [0]]], [[[0], [0]], [[0], [0]]]])   # (2, 2, 2, 1)
    got = icn.accumulator_max(w, [1, -1], [5, -7], x_dev=10, acc_shift=2)
    # channel 0: sum |w - 1| = 0 + 3 + 2 + 1 = 6; channel 1: sum |w + 1| = 4
    assert list(got) == [6 * 10 * 4 + 5, 4 * 10 * 4 + 7]
