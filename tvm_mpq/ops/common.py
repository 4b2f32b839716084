"""Helpers the operator modules share: reading integer Relax call attributes and the ICN
requantization in TE (the `reference.icn.requantize` arithmetic, for legalization)."""

from __future__ import annotations

from .. import tvm_adapter as ta
from ..errors import ModelError, UnsupportedOpError


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


# ---- pooling windows (max and average pooling) -------------------------------------------

def out_size(n: int, k: int, s: int, p0: int, p1: int, ceil: bool) -> int:
    """Output length of one axis (ONNX / PyTorch: in ceil mode the last window must start
    inside the image or its leading padding)."""
    span = n + p0 + p1 - k
    o = (-(-span // s) if ceil else span // s) + 1
    if ceil and (o - 1) * s >= n + p0:
        o -= 1
    return o


def out_hw(h: int, w: int, win) -> tuple[int, int]:
    """(Ho, Wo) of a window (kh, kw, sh, sw, pt, pl, pb, pr, ceil_mode) on an H x W map."""
    kh, kw, sh, sw, pt, pl, pb, pr, ceil = win
    return out_size(h, kh, sh, pt, pb, bool(ceil)), out_size(w, kw, sw, pl, pr, bool(ceil))


def pool_window(node, at: dict, in_shape) -> tuple[int, ...]:
    """The window (kh, kw, sh, sw, pt, pl, pb, pr, ceil_mode) of an ONNX MaxPool or
    AveragePool node: kernel_shape, strides, pads or auto_pad (SAME_UPPER / SAME_LOWER /
    VALID), ceil_mode; dilations must be 1. One-line errors name the node."""
    op = node.op_type
    if any(int(d) != 1 for d in at.get("dilations", [1, 1])):
        raise UnsupportedOpError(node.name, op, f"dilations {list(at['dilations'])}")
    k = [int(v) for v in at.get("kernel_shape", [])]
    s = [int(v) for v in at.get("strides", [1, 1])]
    if len(k) != 2 or len(s) != 2 or min(k + s) < 1:
        raise ModelError(f"node '{node.name}' ({op}): kernel_shape {k} / strides {s} "
                         "(two positive values each)")
    h, w = in_shape[2:]
    pads = [int(v) for v in at.get("pads", [0, 0, 0, 0])]
    auto = at.get("auto_pad", b"NOTSET")
    auto = auto.decode() if isinstance(auto, bytes) else str(auto)
    if auto in ("SAME_UPPER", "SAME_LOWER"):
        pads = [0, 0, 0, 0]
        for ax, n in enumerate((h, w)):
            total = max(0, (-(-n // s[ax]) - 1) * s[ax] + k[ax] - n)
            lo = total // 2 if auto == "SAME_UPPER" else total - total // 2
            pads[ax], pads[ax + 2] = lo, total - lo
    elif auto == "VALID":
        pads = [0, 0, 0, 0]
    elif auto != "NOTSET":
        raise ModelError(f"node '{node.name}' ({op}): auto_pad {auto!r}")
    if len(pads) != 4 or min(pads) < 0 or pads[0] >= k[0] or pads[2] >= k[0] \
            or pads[1] >= k[1] or pads[3] >= k[1]:
        raise ModelError(f"node '{node.name}' ({op}): pads {pads} (each smaller than the "
                         f"kernel {k}, none negative)")
    return (k[0], k[1], s[0], s[1], pads[0], pads[1], pads[2], pads[3],
            int(at.get("ceil_mode", 0)))
