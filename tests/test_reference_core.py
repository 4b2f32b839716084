"""Packing and ICN multiplier encoding: the contracts written once in tvm_mpq.reference."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from tvm_mpq.reference import icn, packing


def test_packing_order_is_low_bits_first():
    assert packing.pack(np.array([1, 2]), 4).tolist() == [0x21]
    assert packing.pack(np.array([1, 2, 3, 0]), 2).tolist() == [0b00111001]
    assert packing.pack(np.array([-1, 7]), 4).tolist() == [0x7F]      # CMSIS-NN int4 order


@given(bits=st.sampled_from([8, 4, 2]), rows=st.integers(1, 4), n=st.integers(1, 23),
       signed=st.booleans(), seed=st.integers(0, 1000))
def test_pack_roundtrip(bits, rows, n, signed, seed):
    rng = np.random.default_rng(seed)
    lo, hi = (-(1 << (bits - 1)), 1 << (bits - 1)) if signed else (0, 1 << bits)
    v = rng.integers(lo, hi, (rows, n))
    p = packing.pack(v, bits)
    assert p.shape == (rows, packing.row_bytes(n, bits))
    assert packing.packed_bytes((rows, n), bits) == p.size
    np.testing.assert_array_equal(packing.unpack(p, bits, n, signed), v)


def test_pack_rejects_out_of_range():
    with pytest.raises(ValueError):
        packing.pack(np.array([16]), 4)
    with pytest.raises(ValueError):
        packing.pack(np.array([1]), 3)


@given(m=st.floats(1e-9, 2**29, allow_nan=False) | st.floats(-2**29, -1e-9))
def test_multiplier_encoding(m):
    m0, n0 = icn.quantize_multiplier(m)
    assert (1 << 30) <= abs(m0) < (1 << 31)
    assert np.sign(m0) == np.sign(m)
    assert abs(m0 * 2.0 ** (n0 - 31) - m) <= abs(m) * 2.0 ** -30


def test_requantize_rounds_half_to_even_and_clamps():
    m0, n0 = icn.quantize_multiplier(0.5)
    y = icn.requantize(np.array([1, 2, 3, 5, -1, -3, 1000]), m0, n0, 0, -4, 7)
    assert y.tolist() == [0, 1, 2, 2, 0, -2, 7]
    assert y.tolist() == np.clip(np.rint(np.array([1, 2, 3, 5, -1, -3, 1000]) * 0.5),
                                 -4, 7).tolist()
    assert icn.quantize_multiplier(0.0) == (0, 0)
    assert icn.quantize_multiplier(1e-30) == (0, 0)
    with pytest.raises(ValueError):
        icn.quantize_multiplier(2.0 ** 31)


@given(acc=st.integers(-(1 << 31), (1 << 31) - 1), m=st.floats(1e-6, 1.0))
def test_requantize_matches_real_rounding(acc, m):
    m0, n0 = icn.quantize_multiplier(m)
    y = \
        icn.requantize(np.array([acc]), m0, n0, 0, -(1 << 31), (1 << 31) - 1)[0]
    exact = acc * m0 * 2.0 ** (n0 - 31)
    assert abs(y - exact) <= 0.5 + 1e-6 * abs(exact) + 1
