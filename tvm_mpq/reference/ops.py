"""The integer semantics of every layer kind, as a numpy golden model.

Written once, here; the TVM kernels and the generated C must match it bit for bit.
Activations are NHWC integer arrays (unpacked, int32), batch 1. Weights are OHWI
(conv, pointwise); depthwise weights are (C, KH, KW, 1) = OHWI with I = 1,
linear weights are (Cout, Cin). Zero points: `z_in` scalar, `w_zero` per output channel.

    acc[c]  = (sum (x - z_in) * (w[c] - w_zero[c])) << acc_shift + bias[c]     (int32)
    y[c]    = requantize(acc[c], m0[c], n0[c], z_out, q_min, q_max)    (see icn.py)

`acc_shift` (per layer, 0..12) gives the bias fractional bits: the bias is stored in units
of 2^-acc_shift accumulator steps, and the multiplier is M / 2^acc_shift. Without it, the
bias rounded to whole accumulator steps moves outputs by up to M/2 LSB (with 2-bit
weights, a visible fraction of them); the converter picks the largest shift for which the
worst-case accumulator still fits int32.

Padding uses the input zero point (the real value 0), so padded taps contribute nothing.
Sums are computed in float64 (exact below 2^53) and checked against the int32 range.
"""

from __future__ import annotations

import numpy as np

from .icn import requantize

INT32_MIN, INT32_MAX = -(1 << 31), (1 << 31) - 1


def _check_acc(acc: np.ndarray, what: str) -> np.ndarray:
    if acc.size and (acc.min() < INT32_MIN or acc.max() > INT32_MAX):
        raise OverflowError(f"{what}: int32 accumulator overflow")
    return acc.astype(np.int64)


def _im2col(x: np.ndarray, k: int, stride: int, pad: int, z_in: int) -> np.ndarray:
    """(H, W, C) -> (Ho, Wo, k, k, C) patches, padded with z_in."""
    h, w, c = x.shape
    xp = np.full((h + 2 * pad, w + 2 * pad, c), z_in, dtype=np.int64)
    xp[pad:pad + h, pad:pad + w] = x
    ho = (h + 2 * pad - k) // stride + 1
    wo = (w + 2 * pad - k) // stride + 1
    cols = np.empty((ho, wo, k, k, c), np.int64)
    for i in range(k):
        for j in range(k):
            cols[:, :, i, j, :] = xp[i:i + stride * ho:stride, j:j + stride * wo:stride, :]
    return cols


def conv2d_acc(x, w, w_zero, bias, z_in, stride, pad, depthwise=False, acc_shift=0):
    """int32 accumulators (Ho, Wo, Cout) of a conv / depthwise conv on NHWC x (1,H,W,C)."""
    x = np.asarray(x, np.int64)[0]
    w = np.asarray(w, np.int64)
    k = w.shape[1]
    cols = _im2col(x, k, stride, pad, z_in) - z_in          # (Ho, Wo, k, k, C)
    wz = w - np.asarray(w_zero, np.int64).reshape(-1, 1, 1, 1)
    if depthwise:
        # w: (C, k, k, 1)
        acc = np.einsum("hwijc,cij->hwc", cols.astype(np.float64),
                        wz[..., 0].astype(np.float64))
    else:
        ho, wo = cols.shape[:2]
        acc = cols.reshape(ho * wo, -1).astype(np.float64) @ \
            wz.reshape(wz.shape[0], -1).T.astype(np.float64)
        acc = acc.reshape(ho, wo, -1)
    acc = np.rint(acc) * float(1 << acc_shift) + np.asarray(bias, np.float64)
    return _check_acc(acc, "conv2d")


def conv2d(x, w, w_zero, bias, z_in, stride, pad, m0, n0, z_out, q_min, q_max,
           depthwise=False, acc_shift=0):
    acc = conv2d_acc(x, w, w_zero, bias, z_in, stride, pad, depthwise, acc_shift)
    return requantize(acc, m0, n0, z_out, q_min, q_max)[None]


def linear(x, w, w_zero, bias, z_in, m0, n0, z_out, q_min, q_max, acc_shift=0):
    """x: (1, Cin) ints; w: (Cout, Cin)."""
    x = np.asarray(x, np.int64).reshape(1, -1) - z_in
    wz = np.asarray(w, np.int64) - np.asarray(w_zero, np.int64).reshape(-1, 1)
    acc = (np.rint(x.astype(np.float64) @ wz.T.astype(np.float64)) * float(1 << acc_shift)
           + np.asarray(bias, np.float64))
    acc = _check_acc(acc, "linear")
    return requantize(acc, m0, n0, z_out, q_min, q_max)


def avg_pool(x, k, stride, z_in, m0, n0, z_out, q_min, q_max):
    """Average pooling without padding: acc = sum(x - z_in) over the window, then ICN
    with M = S_in / (S_out * k * k) (one multiplier for all channels)."""
    x = np.asarray(x, np.int64)[0] - z_in
    h, w, c = x.shape
    ho, wo = (h - k) // stride + 1, (w - k) // stride + 1
    acc = np.zeros((ho, wo, c), np.int64)
    for i in range(k):
        for j in range(k):
            acc += x[i:i + stride * ho:stride, j:j + stride * wo:stride]
    acc = _check_acc(acc, "avg_pool")
    return requantize(acc, m0, n0, z_out, q_min, q_max)[None]


def add(a, b, z_a, z_b, k_a, k_b, shift, z_out, q_min, q_max):
    """Residual add with requantization of both inputs to the output scale:
    y = clamp(((a - z_a) * k_a + (b - z_b) * k_b + 2^(shift-1)) >> shift + z_out), where
    k_a = round(S_a / S_out * 2^shift), k_b likewise (int32), in int64 arithmetic."""
    a = np.asarray(a, np.int64) - z_a
    b = np.asarray(b, np.int64) - z_b
    y = (a * int(k_a) + b * int(k_b) + (1 << (shift - 1))) >> shift
    return np.clip(y + z_out, q_min, q_max).astype(np.int32)
