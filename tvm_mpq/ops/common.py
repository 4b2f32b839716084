"""Helpers the operator modules share: reading integer Relax call attributes and the ICN
requantization in TE (the `reference.icn.requantize` arithmetic, for legalization)."""

from __future__ import annotations

from .. import tvm_adapter as ta


def relax_attr_int(attrs: dict, key: str, default: int | None = None) -> int:
    """An int attribute of an integer op's call (`default` when absent, if given)."""
    if default is not None and key not in attrs:
        return default
    return int(attrs[key])


def relax_out_dtype(attrs) -> str:
    """The container dtype of an integer op's output: int8 when its clamp goes below 0."""
    return "int8" if int(attrs["q_min"]) < 0 else "uint8"


def requant_te(acc, m0, n0, z_out, q_min, q_max):
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


def opaque_int32(v):
    """`v` (int32) with its value range hidden from TVM's arithmetic analysis: its bound
    for `(acc * m0) >> (31 - n0)` assumes a non-negative shift and would fold the
    requantization's clamp away when acc comes straight from small unpacked inputs."""
    tirx = ta.tirx()
    return tirx.reinterpret("int32", tirx.reinterpret("uint32", v))
