"""The TIR kernel library: what the operators' plain TE kernels are built from.

Each operator module (tvm_mpq/ops/) defines its own plain kernel in TE with these pieces;
every kernel reads and writes packed `uint8` buffers (layouts in `kernels.py`): inputs and
weights are unpacked inside the TIR with shifts and masks (sign-extended by a shift pair
when signed), and each output byte is assembled from its elements in one expression,
tails of rows zero-filled. Arithmetic is that of the operators' golden models: int32
accumulation with zero points, ICN requantization in int64 (`reference.icn`).

Schedule (s_tir.Schedule), see `scheduled`: the int32 accumulator block is computed
under the output loops for a block of 4 output channels (conv, pointwise, linear) or 8
(depthwise, pool), so at most 8 int32 accumulators live on the stack; their
initialization is hoisted out of the reduction (decompose_reduction); packed channel
reductions are unrolled so that unpacking uses constant shifts. No kernel keeps a
full-size intermediate buffer. Channel counts that do not fill the last byte / block
compute a few redundant accumulators there (see `acc_channels`).
"""

from __future__ import annotations

from functools import reduce

from .. import tvm_adapter as ta
from ..reference.packing import row_bytes

# output channels computed together (multiples of every 8/out_bits); measured on QEMU M7:
# 4 suits the channel reductions (more accumulators spill), 8 the window-only ones
CHANNEL_BLOCK = 4
WINDOW_CHANNEL_BLOCK = 8


def load(buf, prefix: tuple, ch, bits: int, signed: bool, offset=None):
    """Element `ch` of the packed row `buf[prefix]`, as int32, minus `offset` (int32 expr).

    Unsigned: (byte >> shift) & mask. Signed: the field is moved to the top of a uint32 and
    shifted back arithmetically as int32 (one SBFX on ARM when the shift is constant).
    """
    tirx = ta.tirx()
    per = 8 // bits
    byte = buf[(*prefix, ch // per if per > 1 else ch)]
    shift = (ch % per) * bits if per > 1 else 0
    if signed:
        up = (byte.astype("uint32") << (32 - bits - shift)) if per > 1 else \
            (byte.astype("uint32") << (32 - bits))
        # reinterpret, not cast: TVM's range analysis takes a uint32 -> int32 cast as
        # value-preserving (non-negative) and would then fold away clamps downstream
        v = tirx.reinterpret("int32", up) >> tirx.const(32 - bits, "int32")
    elif per > 1:
        v = (byte.astype("int32") >> shift) & tirx.const((1 << bits) - 1, "int32")
    else:
        v = byte.astype("int32")
    return v if offset is None else v - offset


def requantize(acc, m0, n0, z_out: int, q_min: int, q_max: int, ties: bool = True):
    """ICN (reference.icn): P = acc * m0, s = 31 - n0; y = P / 2^s rounded to nearest,
    ties to even; clamp(y + z_out).

    `acc` is the int32 accumulator with the bias added (the golden model keeps that sum
    in int32). The remainder test avoids a second variable shift: r = P - (q << s).
    """
    tirx = ta.tirx()
    i64 = "int64"
    one = tirx.const(1, i64)
    p = acc.astype(i64) * m0.astype(i64)
    if not ties:        # no exact tie can occur: round half up == ties to even
        q = p >> (tirx.const(30, i64) - n0.astype(i64))
        y = ((q + one) >> one) + tirx.const(z_out, i64)
        y = tirx.max(tirx.min(y, tirx.const(q_max, i64)), tirx.const(q_min, i64))
        return y.astype("int32")
    s = tirx.const(31, i64) - n0.astype(i64)
    q = p >> s
    r = p - (q << s)
    half = one << (s - one)
    up = tirx.Or(r > half, tirx.And(r == half, (q & one) == one))
    y = q + tirx.Select(up, one, tirx.const(0, i64)) + tirx.const(z_out, i64)
    y = tirx.max(tirx.min(y, tirx.const(q_max, i64)), tirx.const(q_min, i64))
    return y.astype("int32")


def with_bias(acc, bias, acc_shift: int):
    """The accumulator in bias units: (acc << acc_shift) + bias (reference.ops)."""
    return (acc << acc_shift) + bias if acc_shift else acc + bias


def pack_rows(prefix_shape: tuple, n: int, bits: int, value):
    """Output tensor `y`: rows of n elements `value(*prefix, ch)` (int32 in range) packed."""
    te, tirx = ta.te(), ta.tirx()
    per = 8 // bits
    mask = tirx.const((1 << bits) - 1, "int32")

    def byte(*idx):
        *pre, b = idx
        if per == 1:
            return value(*pre, b).astype("uint8")
        terms = []
        for k in range(per):
            ch = b * per + k
            t = (value(*pre, ch) & mask) << (k * bits)
            if n % per and k >= n % per:        # this slot is empty in the last byte
                t = tirx.if_then_else(ch < n, t, tirx.const(0, "int32"))
            terms.append(t)
        return reduce(lambda a, c: a | c, terms).astype("uint8")

    return te.compute((*prefix_shape, row_bytes(n, bits)), byte, name="y")


def acc_channels(n: int, group: int):
    """Accumulator channels, padded to whole groups, and the index clamp for them.

    A group is the channels whose accumulators live together (one output byte, or a
    channel block). Padding (at most group - 1 redundant channels, only for counts that do
    not fill the last group) keeps the accumulator block exactly one group; a predicated
    tail would make TVM size it for all channels.
    """
    tirx = ta.tirx()
    n_acc = -(-n // group) * group
    if n_acc == n:
        return n, lambda o: o
    return n_acc, lambda o: tirx.min(o, n - 1)


def channel_params(n: int, w_signed: bool):
    """Per-output-channel constants; the weight zero point has the weights' own type
    (int8 for two's-complement weights, uint8 for unsigned), as the FLASH model counts."""
    te = ta.te()
    return (te.placeholder((n,), "int8" if w_signed else "uint8", "w_zero"), te.placeholder((n,), "int32", "bias"),
            te.placeholder((n,), "int32", "m0"), te.placeholder((n,), "int8", "n0"))


def padded_input(x, spec, h: int, w: int, c_bits: int, signed: bool):
    """x_in(i, j, ch) - z_in at padded coordinates (i, j); 0 in the padding (pads top, left,
    bottom, right from `spec.geometry`)."""
    tirx = ta.tirx()
    pt, pl, pb, pr = spec.geometry[4:]
    z_in = tirx.const(spec.z_in, "int32")

    def xin(i, j, ch):
        if not (pt or pl or pb or pr):
            return load(x, (i, j), ch, c_bits, signed) - z_in
        inside = tirx.all(i >= pt, i < h + pt, j >= pl, j < w + pl)
        ii = tirx.max(tirx.min(i - pt, h - 1), 0)
        jj = tirx.max(tirx.min(j - pl, w - 1), 0)
        return tirx.if_then_else(inside, load(x, (ii, jj), ch, c_bits, signed) - z_in,
                                 tirx.const(0, "int32"))

    return xin


def value_span(bits: int, signed: bool, zero: int) -> int:
    lo, hi = (-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if signed else (0, (1 << bits) - 1)
    return max(abs(lo - zero), abs(hi - zero))


def scheduled(tensors, out_bits: int = 8, reduces: bool = True, unroll_channels: int = 0,
               channel_block: int = 0):
    """PrimFunc of the TE graph; the accumulator block moved under the output loops.

    The accumulators live for one output byte, or with `channel_block` = G (a multiple of
    8/out_bits that divides the padded accumulator count) for G output channels, whose
    loop is then moved inside the reduction and unrolled: each input element is loaded,
    unpacked and padding-checked once for the G channels.
    unroll_channels: when the innermost reduction runs over packed channels, unroll it by
    this many (a multiple of every packing factor), so every element is extracted with
    constant shifts and each byte is loaded once; 0 leaves the loop alone.
    """
    te, s_tir = ta.te(), ta.s_tir()
    sch = s_tir.Schedule(te.create_prim_func(tensors))
    if not reduces:
        return sch.mod["main"]
    acc = sch.get_sblock("acc")
    y_loops = sch.get_loops(sch.get_sblock("y"))
    per = 8 // out_bits
    at = y_loops[-1]
    if channel_block:
        at = sch.split(at, [None, channel_block // per])[0]
    sch.compute_at(acc, at)
    # under `at`: a channel loop if the accumulators hold several channels, then the
    # reduction loops (TVM drops loops of extent 1, so some may be gone)
    under = sch.get_loops(acc)[len(y_loops):]
    n_channel = 1 if (channel_block or per > 1) else 0
    if len(under) > n_channel:
        if channel_block:
            sch.reorder(*under[1:], under[0])
            under = under[1:] + under[:1]
            sch.decompose_reduction(acc, under[0])
            sch.unroll(sch.get_loops(sch.get_sblock("acc_update"))[-1])
        else:
            sch.decompose_reduction(acc, under[n_channel])
        if unroll_channels > 1:
            inner = sch.get_loops(sch.get_sblock("acc_update"))[-1 - bool(channel_block)]
            sch.unroll(sch.split(inner, [None, unroll_channels])[1])
    return sch.mod["main"]


def channel_unroll(n: int, *bits: int) -> int:
    """Unroll factor for a reduction over n packed channels (see `scheduled`)."""
    per = max(8 // b for b in bits)
    for f in (4, 2):
        if n % f == 0 and f % per == 0 and n > f:
            return f
    return 0
