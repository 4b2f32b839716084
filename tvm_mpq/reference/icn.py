"""Integer Channel-Normalization (ICN) requantization: the rounding contract.

A real multiplier M (per output channel) is stored as a Q31 mantissa M0 and an exponent N0:
M = M0 * 2^(N0 - 31), 2^30 <= |M0| < 2^31 (M0 negative when M is, e.g. a negative
batch-norm gamma), or M0 = 0 when M is 0 or too small to matter. Requantization of an
int32 accumulator is

    s = 31 - N0                              (1 <= s <= 62)
    P = (int64) acc * M0
    y = P >> s, rounded to nearest, ties to even (r = P - (y << s); +1 if r > 2^(s-1),
        or r == 2^(s-1) and y is odd)
    y = clamp(y + Z_o, q_min, q_max)

This form is the contract between this module, the TVM TIR kernels and the generated C:
all three compute exactly this. It rounds to nearest with ties to even (the paper writes
a floor): that is what ONNX QuantizeLinear, PyTorch and the fake-quant model do, so the
integer model agrees with the QDQ model it came from (ties are frequent in average
pooling, where M is often 1/4 or 1/16).
"""

from __future__ import annotations

import math

import numpy as np

S_MIN, S_MAX = 1, 62


def quantize_multiplier(m: float) -> tuple[int, int]:
    """Real multiplier -> (M0, N0) with M = M0 * 2^(N0-31); see module doc."""
    if not math.isfinite(m):
        raise ValueError(f"multiplier {m} is not finite")
    if m == 0.0:
        return 0, 0
    mant, exp = math.frexp(abs(m))          # abs(m) = mant * 2^exp, mant in [0.5, 1)
    m0 = int(round(mant * (1 << 31)))
    if m0 == (1 << 31):
        m0 //= 2
        exp += 1
    s = 31 - exp
    if s > S_MAX:                           # below 2^-32: contributes < 1/2 LSB for |acc|<2^31
        return 0, 0
    if s < S_MIN:
        raise ValueError(f"multiplier {m} too large for ICN (>= 2^30)")
    return (m0 if m > 0 else -m0), exp


def quantize_multipliers(ms: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    pairs = [quantize_multiplier(float(m)) for m in np.ravel(ms)]
    m0 = np.array([p[0] for p in pairs], np.int64).reshape(np.shape(ms))
    n0 = np.array([p[1] for p in pairs], np.int64).reshape(np.shape(ms))
    return m0.astype(np.int32), n0.astype(np.int8)


def requantize(acc: np.ndarray, m0: np.ndarray, n0: np.ndarray, z_out: int,
               q_min: int, q_max: int) -> np.ndarray:
    """ICN on int32 accumulators; m0/n0 broadcast along the last (channel) axis."""
    acc = np.asarray(acc, np.int64)
    if acc.size and (acc.min() < -(1 << 31) or acc.max() >= (1 << 31)):
        raise OverflowError("accumulator exceeds int32")
    m0 = np.asarray(m0, np.int64)
    s = 31 - np.asarray(n0, np.int64)
    if np.any((s < S_MIN) | (s > S_MAX)):
        raise ValueError("shift out of range")
    p = acc * m0
    q = p >> s                                      # floor
    r = p - (q << s)                                # remainder in [0, 2^s)
    half = np.int64(1) << (s - 1)
    y = q + ((r > half) | ((r == half) & ((q & 1) == 1)))   # round half to even
    return np.clip(y + z_out, q_min, q_max).astype(np.int32)


def ties_possible(m0, n0, acc_max=None) -> bool:
    """Can P = acc * m0 (|acc| < 2^31) ever sit exactly halfway between two outputs?

    A tie needs P mod 2^s == 2^(s-1), i.e. v2(acc) = s - 1 - v2(m0); an int32 accumulator
    has v2(acc) <= 30, so ties are impossible when s - v2(m0) > 31. Kernels then may use
    the cheaper round-half-up, which gives identical results for every accumulator.
    acc_max (per channel, or one bound): the largest |acc| the layer can produce
    (accumulator_max); a tie also needs |acc| >= 2^(s - 1 - v2(m0)).
    (Ties are real for average pooling, where m0 is a power of two.)
    """
    m0 = np.atleast_1d(np.asarray(m0, np.int64))
    s = 31 - np.atleast_1d(np.asarray(n0, np.int64))
    shape = np.broadcast(m0, s).shape
    amax = np.broadcast_to(np.asarray((1 << 31) - 1 if acc_max is None else acc_max,
                                      dtype=object), shape)
    for a, b, bound in zip(np.broadcast_to(m0, shape), np.broadcast_to(s, shape), amax):
        a = int(a)
        if a == 0:
            continue
        v = (abs(a) & -abs(a)).bit_length() - 1
        need = int(b) - 1 - v                       # v2(acc) of a tie
        if need <= 30 and int(bound) >= (1 << max(need, 0)):
            return True
    return False


def accumulator_max(w, w_zero, bias, x_dev: int, acc_shift: int = 0) -> np.ndarray:
    """Per output channel, the largest |acc| of an ICN layer: acc = (sum over its taps of
    (x - z_in)(w - w_zero)) << acc_shift + bias with |x - z_in| <= x_dev, w: (Cout, ...)
    (any per-channel layout with the output channel first). Exact Python integers."""
    w = np.asarray(w, np.int64).reshape(len(w), -1)
    dev = np.abs(w - np.asarray(w_zero, np.int64).reshape(-1, 1)).sum(axis=1)
    bias = np.broadcast_to(np.asarray(bias, np.int64), dev.shape)
    return np.array([int(d) * int(x_dev) * (1 << acc_shift) + abs(int(b))
                     for d, b in zip(dev, bias)], dtype=object)


INT32_MIN, INT32_MAX = -(1 << 31), (1 << 31) - 1


def check_acc(acc: np.ndarray, what: str) -> np.ndarray:
    """The accumulators as int64, or OverflowError when one leaves the int32 range (the
    golden models compute sums in float64, exact below 2^53, and check them here)."""
    if acc.size and (acc.min() < INT32_MIN or acc.max() > INT32_MAX):
        raise OverflowError(f"{what}: int32 accumulator overflow")
    return acc.astype(np.int64)
