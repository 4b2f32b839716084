"""Sub-byte packing: the one Python definition (the C side is runtime/mpq_pack.h).

Convention (CMix-NN, CMSIS-NN int4 compatible): little-endian inside each byte, element 0
in the lowest bits. 4 bits: byte = e0 | e1 << 4. 2 bits: byte = e0 | e1 << 2 | e2 << 4 |
e3 << 6. 8 bits: one element per byte.

Tensors are packed along their last axis (channels of NHWC activations, input channels of
OHWI weights), and every row (one pixel, one filter tap) starts on a byte boundary: a row
of C elements takes ceil(C * bits / 8) bytes, and the unused high bits of its last byte
are zero. This keeps any channel count addressable without the divisibility limits of
CMix-NN.
"""

from __future__ import annotations

import numpy as np

BITS = (8, 4, 2)


def int_range(bits: int, signed: bool) -> tuple[int, int]:
    """The integers a `bits`-wide tensor holds: two's complement if signed."""
    if signed:
        return -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    return 0, (1 << bits) - 1


def row_bytes(n: int, bits: int) -> int:
    """Bytes of one packed row of n elements."""
    _check_bits(bits)
    return (n * bits + 7) // 8


def packed_bytes(shape: tuple[int, ...], bits: int) -> int:
    rows = int(np.prod(shape[:-1])) if len(shape) > 1 else 1
    return rows * row_bytes(shape[-1], bits)


def pack(values: np.ndarray, bits: int) -> np.ndarray:
    """Pack unsigned or two's-complement integers (bits wide) along the last axis.

    Returns uint8 of shape values.shape[:-1] + (row_bytes,). Values must fit in `bits`
    (unsigned [0, 2^bits) or signed [-2^(bits-1), 2^(bits-1))).
    """
    _check_bits(bits)
    v = np.asarray(values)
    if v.size and (v.min() < -(1 << (bits - 1)) or v.max() >= (1 << bits)):
        raise ValueError(f"values out of range for {bits}-bit packing")
    u = (v.astype(np.int64) & ((1 << bits) - 1)).astype(np.uint8)
    if bits == 8:
        return u.reshape(v.shape)
    per = 8 // bits
    n = v.shape[-1]
    pad = (-n) % per
    if pad:
        u = np.concatenate([u, np.zeros(v.shape[:-1] + (pad,), np.uint8)], axis=-1)
    u = u.reshape(v.shape[:-1] + (-1, per))
    out = np.zeros(u.shape[:-1], np.uint8)
    for k in range(per):
        out |= (u[..., k] << (k * bits)).astype(np.uint8)
    return out


def unpack(packed: np.ndarray, bits: int, n: int, signed: bool = False) -> np.ndarray:
    """Inverse of `pack`: n elements per row; int32 result (sign-extended if signed)."""
    _check_bits(bits)
    p = np.asarray(packed, dtype=np.uint8)
    if bits == 8:
        u = p[..., :n].astype(np.int32)
    else:
        per = 8 // bits
        mask = (1 << bits) - 1
        parts = [(p >> (k * bits)) & mask for k in range(per)]
        u = np.stack(parts, axis=-1).reshape(p.shape[:-1] + (-1,))[..., :n].astype(np.int32)
    if signed:
        u = np.where(u >= (1 << (bits - 1)), u - (1 << bits), u)
    return u


def _check_bits(bits: int) -> None:
    if bits not in BITS:
        raise ValueError(f"bit width {bits} not in {BITS}")
