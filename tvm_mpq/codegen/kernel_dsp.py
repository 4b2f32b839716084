"""TIR of the fast (DSP) kernels: loops, zero points, requantization and output packing in
TIR; the inner dot products are C micro-kernels (include/mpq_dsp*.h) called with
T.call_extern, as microTVM's mprofile schedules tensorized theirs.

conv / pointwise / linear (`gemm`): for each step of P output pixels, their P im2col
columns (int16 x - z_in, in the weights' unpacking order, interleaved by 8 bytes) go to
the scratch buffer and their sums S = sum(x - z_in) to locals; then for each output
channel (or block of them) a micro-kernel gives the plain dot products x'.u, and

    acc = x'.u - (w_zero + off_w) * S + bias,   off_w = 2^(w_bits-1) for signed 4/2-bit
                                                 weights (unpacked as u = w + off_w), else 0

which is sum (x - z_in)(w - w_zero) + bias exactly (padding taps are 0 in the column, as
they are 0 in the golden model). The default (`ch = 1`, P = `pix` up to 8 by
`_default_pix`) is `mpq_dsp_dot_px1i`: each weight word loaded and unpacked once for the
P columns, one LDRD and two SMLAD per column; on the M7 it runs as a naked assembly
function generated per layer (`asm_m7.gemm_asm`: 27 instructions per 32 MACs with 8 columns of
8-bit weights). Other schedule knobs (`schedule_space`, set per layer by
`KernelSpec.schedule` from `tvm-mpq tune` records): 2 x 2 blocks (`mpq_dsp_dot_2x2i`,
inline assembly for 8-/4-bit weights), and the general C micro-kernel `mpq_dsp_dot`.

depthwise 3x3, stride 1 or 2 (the row kernel, `rows=1`, the default): per block of G
channels, `mpq_dsp_dwr_prep` makes each channel's weight pairs W01 = [w'0, w'1],
W12 = [w'1, w'2] per kernel row and its requantization constants; per output row
`mpq_dsp_dwr` widens the input rows it newly needs into a ring of 3 rows in `scratch`
(int16 pairs of neighbouring columns, per channel) and runs along the row two outputs a
step: SMLAD/SMLABT/SMLATB on one LDRD of pairs per kernel row give 6 MACs in 6
instructions (stride 2: 6 MACs in 7), requantized and stored in the same loop. On the M7
that loop is a naked assembly function generated per layer (`asm_m7.dwr_asm`); the C twin gives
the same bytes. Other depthwise kernels (or `rows=0`): for each block of 4 channels,
`mpq_dsp_dw_prep` widens the weights minus their zero points once into a local table;
then per output pixel (or 2: `pix`) `mpq_dsp_dw` accumulates the taps with SMLABB/SMLATT
(a padding tap counts as x = z_in, contribution 0).

Geometry: the GEMM takes every group-1 conv; a non-square kernel, unequal strides or
asymmetric pads use `mpq_dsp_im2col_g` (include/mpq_dsp_im2col_g.h, put in the prelude of
those kernels only) for the columns, the same format. The depthwise kernels take square
kernels, equal strides and symmetric pads with channel multiplier 1 (any k: the per-pixel
kernel; 3x3 stride 1/2: the row kernel); other depthwise and grouped convs have no DSP
layout (`dsp_layout` None) and get the plain kernel.

Requantization (`mpq_dsp_requant`, the ICN rounding of `kernel_te.requantize`) and
packing give the golden model's bytes. Odd pixel / channel counts compute a duplicate
pixel or channel whose result is not stored.
"""

from __future__ import annotations

import itertools
from functools import reduce

from .. import ops
from .. import tvm_adapter as ta
from ..reference.packing import row_bytes



def layout(spec) -> str | None:
    """How the operator of `spec` reads its weights: "gemm" (im2col rows: conv, pointwise,
    linear), "depthwise", or None (no fast kernel); its `dsp_layout` face."""
    return ops.for_kernel(spec.kind).dsp_layout(spec)

CONSTRAINTS = ("at most 8 accumulators: pix * ch <= 8 (ch = 1: pix <= 8, unroll 2); "
               "depthwise: pix with rows=0, g with rows=1")
DWR_TAB = 11        # words a channel in the row depthwise table (MPQ_DSP_DWR_TAB)


def _taps(spec) -> int:
    """Window taps kh * kw of a gemm or depthwise spec (1 for a fully connected layer)."""
    if len(spec.in_shape) == 2:
        return 1
    kh, kw = spec.geometry[:2]
    return kh * kw


def _general(spec) -> bool:
    """Whether a gemm spec's geometry is beyond `kernel`, `stride`, `pad` (non-square
    kernel, unequal strides, asymmetric pads): its im2col is mpq_dsp_im2col_g."""
    return len(spec.in_shape) == 4 and bool(spec.kernel_hw or spec.strides or spec.pads)


def im2col_general(spec) -> str:
    """The C of mpq_dsp_im2col_g (include/mpq_dsp_im2col_g.h) for a general-geometry gemm
    kernel's prelude, else ""."""
    if layout(spec) != "gemm" or not _general(spec):
        return ""
    from .kernels import DSP_INCLUDE

    return (DSP_INCLUDE / "mpq_dsp_im2col_g.h").read_text()


def _dims(spec):
    """(h, w, c, ho, wo, cout, k, stride, pad) of a gemm or depthwise spec."""
    if len(spec.in_shape) == 2:         # a fully connected layer: a 1 x 1 image
        return 1, 1, spec.in_shape[-1], 1, 1, spec.out_shape[-1], 1, 1, 0
    _, h, w, c = spec.in_shape
    _, ho, wo, cout = spec.out_shape
    return h, w, c, ho, wo, cout, spec.kernel, spec.stride, spec.pad


def schedule_space(spec) -> dict[str, tuple[int, ...]]:
    """The schedule knobs of the fast kernel of `spec` and their candidate values, the
    default first (what `tvm-mpq tune` searches; docs/tuning.md):

    conv / pointwise / linear: `pix` output pixels (im2col columns) per step, `ch` output
    channels per micro-kernel call (pix * ch <= 8 accumulators), `unroll` weight words per
    inner-loop step. depthwise: `pix` output pixels of a row a micro-kernel call (the
    weight table read once for both). Pooling and add have no knobs."""
    if layout(spec) == "depthwise":
        space = {"rows": (1, 0)} if rows_apply(spec) else {}
        if spec.out_shape[2] > 1:
            space["pix"] = (1, 2)
        if rows_apply(spec):
            space["g"] = (8, 4)         # 8: fewer instructions on every benchmark shape
        return space
    if layout(spec) != "gemm":
        return {}
    _, _, _, ho, wo, _, _, _, _ = _dims(spec)
    if ho * wo == 1:
        return {"pix": (1,), "ch": (1, 2, 4), "unroll": (2, 1)}
    best = _default_pix(spec)
    return {"pix": (best,) + tuple(v for v in (8, 4, 2, 1, 6, 7, 5, 3) if v != best),
            "ch": (1, 2, 4), "unroll": (2, 1)}


# im2col scratch the default schedule may take (bytes); the tuner may go beyond it, and
# `tvm-mpq compile` falls back to lean schedules when a tuned arena breaks the RAM budget
DEFAULT_SCRATCH = 16384


def _default_pix(spec) -> int:
    """Columns a step of the default `ch = 1` GEMM: the fewest instructions by the
    micro-kernel's count (per weight word 3 + 3 P for P columns, ceil(pixels / P) steps;
    a last partial step computes duplicate columns), within DEFAULT_SCRATCH; the most
    columns within 1% of that (the count leaves out each step's fixed costs: on 14 x 14
    layers tuning measured 8 columns 0.2% faster than the count's 7)."""
    h, w, c, ho, wo, _, k, _, _ = _dims(spec)
    n_pix = ho * wo
    n_slots = -(-(_taps(spec) * row_bytes(c, spec.w_bits)) // 4) * (32 // spec.w_bits)
    cap = max(1, min(8, DEFAULT_SCRATCH // (2 * n_slots)))
    cost = {P: -(-n_pix // P) * (3 + 3 * P) for P in range(1, cap + 1)}
    return max(P for P, v in cost.items() if v <= 1.01 * min(cost.values()))


def lean_schedule(spec, level: int) -> dict | None:
    """A schedule with less scratch than the default, for arenas over the RAM budget
    (`tvm-mpq compile`): level 1, GEMM 2 x 2 (two im2col columns), depthwise rings of 4
    channels; level 2, GEMM one column, the per-pixel depthwise kernel (no scratch).
    None for kernels without scratch."""
    if layout(spec) == "gemm":
        _, _, _, ho, wo, _, _, _, _ = _dims(spec)
        cand = {"pix": min(2 if level == 1 else 1, ho * wo), "ch": 2}
    elif layout(spec) == "depthwise" and rows_apply(spec):
        cand = {"g": 4} if level == 1 else {"rows": 0}
    else:
        return None
    return cand if valid_schedule(spec, cand) else None


def rows_apply(spec) -> bool:
    """Whether the row depthwise kernel (mpq_dsp_dwr: 3 x 3, stride 1 or 2) fits `spec`."""
    return layout(spec) == "depthwise" and spec.kernel == 3 and spec.stride in (1, 2)


def _allowed(spec, full: dict) -> bool:
    """The constraints between the knobs of a complete schedule."""
    if layout(spec) == "depthwise":
        # pix is a knob of the per-pixel kernel, g (channels a block) of the row kernel
        if full.get("rows"):
            return full.get("pix", 1) == 1
        return full.get("g", 4) == 4        # (the per-pixel kernel's block is 4 channels)
    # accumulators of one block (the stack stays small): pix x max(ch, channels a byte);
    # one weight row (ch = 1, mpq_dsp_dot_px1i) takes up to 8 columns
    if full.get("ch") == 1:
        return full.get("unroll", 2) == 2
    return full.get("pix", 1) * max(full.get("ch", 2), 8 // spec.out_bits) <= 8


def _full(spec, schedule: dict) -> dict | None:
    """The complete schedule: the knobs `schedule` sets, the others at the first of their
    candidates (the default first) that satisfy the constraints; None if none do."""
    space = schedule_space(spec)
    free = [k for k in space if k not in schedule]
    for vals in itertools.product(*(space[k] for k in free)):
        full = {k: schedule.get(k) for k in space}
        full.update(zip(free, vals))
        if _allowed(spec, full):
            return full
    return None


def valid_schedule(spec, schedule: dict) -> bool:
    """Whether `schedule` (knob -> value, knobs of schedule_space; unset knobs take their
    defaults as far as the constraints allow) is allowed for `spec`."""
    space = schedule_space(spec)
    if any(k not in space or v not in space[k] for k, v in schedule.items()):
        return False
    return _full(spec, schedule) is not None


def resolve_schedule(spec) -> dict[str, int]:
    """spec.schedule over the defaults; a ValueError names a knob or value not allowed."""
    space = schedule_space(spec)
    chosen = dict(spec.schedule)
    if not valid_schedule(spec, chosen):
        raise ValueError(f"schedule {chosen} is not valid for this {spec.kind} kernel "
                         f"(knobs: {space}; {CONSTRAINTS})")
    return _full(spec, chosen)


def gemm_layout(spec) -> tuple[int, int, int]:
    """(weight row bytes per output channel, im2col slots per column, columns)."""
    h, w, c, ho, wo, cout, k, _, _ = _dims(spec)
    row_w = _taps(spec) * row_bytes(c, spec.w_bits)
    n_slots = -(-row_w // 4) * (32 // spec.w_bits)
    return row_w, n_slots, resolve_schedule(spec)["pix"]


def dw_rows_layout(spec) -> tuple[int, int] | None:
    """(channels a block G, pairs a ring row) of the row depthwise kernel, None if unused."""
    if layout(spec) != "depthwise" or not resolve_schedule(spec).get("rows"):
        return None
    wo = spec.out_shape[2]
    n_pairs = (wo + 1) // 2 + 1 if spec.stride == 1 else wo + 1     # MPQ_DSP_DWR_PAIRS
    return resolve_schedule(spec)["g"], n_pairs


def scratch_bytes(spec) -> int:
    """Bytes of the `scratch` argument of a fast kernel (0: none)."""
    if layout(spec) == "depthwise":
        rows = dw_rows_layout(spec)
        return 0 if rows is None else 3 * rows[0] * rows[1] * 4    # ring of 3 widened rows
    if layout(spec) != "gemm":
        return 0
    _, n_slots, n_cols = gemm_layout(spec)
    return 2 * n_slots * n_cols


def _channel_params(T, cout: int, w_signed: bool):
    return (T.arg("w_zero", T.Buffer((cout,), "int8" if w_signed else "uint8")),
            T.arg("bias", T.Buffer((cout,), "int32")),
            T.arg("m0", T.Buffer((cout,), "int32")),
            T.arg("n0", T.Buffer((cout,), "int8")))


def _store_block(T, y, y_base, n_out: int, first, group: int, spec, value):
    """Store output channels first .. first + group - 1 of one pixel row at y[y_base]:
    `value(l)` is the int32 result of local channel l; whole bytes, slots past n_out 0."""
    tirx = ta.tirx()
    bits = spec.out_bits
    per = 8 // bits
    mask = tirx.const((1 << bits) - 1, "int32")
    n_row = row_bytes(n_out, bits)
    for b in range(group // per):
        byte_idx = first // per + b
        terms = []
        for s in range(per):
            loc = b * per + s
            v = value(loc)
            if per > 1:
                v = (v & mask) << s * bits
            if n_out % group:
                v = tirx.if_then_else(first + loc < n_out, v, tirx.const(0, "int32"))
            terms.append(v)
        byte = reduce(lambda a, c: a | c, terms).astype("uint8")
        if n_out % group:
            with T.If(byte_idx < n_row):
                with T.Then():
                    T.buffer_store(y, byte, [y_base + byte_idx])
        else:
            T.buffer_store(y, byte, [y_base + byte_idx])


def _requant(spec, acc, o, bias, m0, n0):
    """kernel_te.requantize as the C micro-kernel mpq_dsp_requant (a cheaper shift)."""
    from .kernel_te import with_bias

    fn = "mpq_dsp_requant" if spec.ties else "mpq_dsp_requant_noties"
    if spec.shift_hi:           # every shift >= 33: the 64-bit product's high word only
        fn += "_hi"
    return ta.tirx().call_extern("int32", fn,
                                 with_bias(acc, bias[o], spec.acc_shift), m0[o],
                                 n0[o].astype("int32"), spec.z_out, spec.q_min, spec.q_max)


def gemm(spec, name: str):
    """conv / pointwise / linear with im2col columns in `scratch` and 2x2 dot products."""
    IRBuilder, T = ta.tir_ir_builder()

    tirx = ta.tirx()
    h, w, c, ho, wo, cout, k, stride, pad = _dims(spec)
    row_w, n_slots, n_cols = gemm_layout(spec)
    sched = resolve_schedule(spec)
    nc = sched["ch"]
    n_pix = ho * wo
    fast22 = nc == 2 and n_cols <= 2 and sched["unroll"] == 2
    px1 = nc == 1           # columns x one weight row (mpq_dsp_dot_px1i)
    group = max(nc, 8 // spec.out_bits)
    n_blocks = -(-cout // group)
    off_w = (1 << (spec.w_bits - 1)) if spec.w_signed and spec.w_bits < 8 else 0
    row_y = row_bytes(cout, spec.out_bits)
    col_bytes = 2 * n_slots
    with IRBuilder() as ib:
        with T.prim_func():
            T.func_name(name)
            x = T.arg("x", T.Buffer((h * w * row_bytes(c, spec.in_bits),), "uint8"))
            wt = T.arg("w", T.Buffer((cout * row_w,), "uint8"))
            wz, bias, m0, n0 = _channel_params(T, cout, spec.w_signed)
            y = T.arg("y", T.Buffer((n_pix * row_y,), "uint8"))
            scratch = T.arg("scratch", T.Buffer((n_cols * col_bytes,), "uint8"))
            # the default 2 x 2 block reads its two columns interleaved (mpq_dsp_dot_2x2i)
            ilv = n_cols if px1 else (2 if fast22 and n_cols == 2 else 1)
            with T.serial(0, -(-n_pix // n_cols)) as pp:
                sx = T.alloc_buffer((n_cols,), "int32", scope="global")
                pix = [tirx.min(pp * n_cols + q, n_pix - 1) for q in range(n_cols)]
                # general geometry: (kh, kw, sh, sw, pt, pl) for mpq_dsp_im2col_g
                win = (k, stride, pad) if not _general(spec) else spec.geometry[:6]
                im2col = "mpq_dsp_im2col_g" if _general(spec) else "mpq_dsp_im2col"
                for q in range(n_cols):
                    T.buffer_store(sx, T.call_extern(
                        "int32", im2col,
                        T.address_of(scratch[0 if ilv > 1 else q * col_bytes]),
                        x.data, pix[q] // wo, pix[q] % wo, h, w, c, *win,
                        spec.in_bits, int(spec.in_signed), spec.z_in, spec.w_bits, n_slots,
                        ilv, q if ilv > 1 else 0), [q])
                with T.serial(0, n_blocks) as blk:
                    acc = T.alloc_buffer((group * n_cols,), "int32", scope="global")
                    for part in range(group // nc):
                        first = blk * group + part * nc
                        if px1:
                            o0 = tirx.min(first, cout - 1)
                            call = T.call_extern(
                                "int32", "mpq_dsp_dot_px1i", T.address_of(scratch[0]),
                                T.address_of(wt[o0 * row_w]), row_w, n_cols, spec.w_bits,
                                int(spec.w_signed), T.address_of(acc[part * n_cols]))
                        elif fast22:
                            # the 2 x 2 / 1 x 2 micro-kernels (the default: fewest
                            # instructions); weight rows clamped here
                            o0, o1 = tirx.min(first, cout - 1), tirx.min(first + 1, cout - 1)
                            name_ = "mpq_dsp_dot_2x2i" if n_cols == 2 else "mpq_dsp_dot_1x2"
                            call = T.call_extern(
                                "int32", name_, T.address_of(scratch[0]),
                                T.address_of(wt[o0 * row_w]), T.address_of(wt[o1 * row_w]),
                                row_w, spec.w_bits, int(spec.w_signed),
                                T.address_of(acc[part * n_cols * nc]))
                        else:
                            call = T.call_extern(
                                "int32", "mpq_dsp_dot", T.address_of(scratch[0]), col_bytes,
                                n_cols, wt.data, row_w, first, cout, nc, row_w, spec.w_bits,
                                int(spec.w_signed), sched["unroll"],
                                T.address_of(acc[part * n_cols * nc]))
                        T.evaluate(call)
                    for q in range(n_cols):
                        def value(loc, q=q):
                            o = tirx.min(blk * group + loc, cout - 1)
                            a = acc[(loc // nc) * n_cols * nc + q * nc + loc % nc]
                            zw = wz[o].astype("int32") + off_w
                            return _requant(spec, a - zw * sx[q], o, bias, m0, n0)

                        def store(q=q, value=value):
                            _store_block(T, y, (pp * n_cols + q) * row_y, cout, blk * group,
                                         group, spec, value)

                        if n_pix % n_cols and q:
                            with T.If(pp * n_cols + q < n_pix):
                                with T.Then():
                                    store()
                        else:
                            store()
    return ib.get()


def depthwise(spec, name: str):
    """Depthwise conv: the row kernel where it applies (and is not tuned away), else
    blocks of 4 channels with weights widened once per block."""
    if dw_rows_layout(spec) is not None:
        return depthwise_rows(spec, name)
    IRBuilder, T = ta.tir_ir_builder()

    tirx = ta.tirx()
    h, w, c, ho, wo, _, k, stride, pad = _dims(spec)
    off_x = (1 << (spec.in_bits - 1)) if spec.in_signed and spec.in_bits < 8 else 0
    zx = spec.z_in + off_x
    kk = k * k
    group = 4
    npx = resolve_schedule(spec).get("pix", 1)
    row_y = row_bytes(c, spec.out_bits)
    with IRBuilder() as ib:
        with T.prim_func():
            T.func_name(name)
            x = T.arg("x", T.Buffer((h * w * row_bytes(c, spec.in_bits),), "uint8"))
            wt = T.arg("w", T.Buffer((kk * row_bytes(c, spec.w_bits),), "uint8"))
            wz, bias, m0, n0 = _channel_params(T, c, spec.w_signed)
            y = T.arg("y", T.Buffer((ho * wo * row_y,), "uint8"))
            with T.serial(0, -(-c // group)) as blk:
                wp = T.alloc_buffer((2 * kk + 4,), "int32", scope="global")
                T.evaluate(T.call_extern(
                    "int32", "mpq_dsp_dw_prep", T.address_of(wp[0]), wt.data, wz.data, blk, c,
                    kk, spec.w_bits, int(spec.w_signed), zx))
                with T.serial(0, ho) as i:
                    with T.serial(0, -(-wo // npx)) as jj:
                        acc = T.alloc_buffer((group * npx,), "int32", scope="global")
                        if npx == 1:
                            T.evaluate(T.call_extern(
                                "int32", "mpq_dsp_dw", T.address_of(acc[0]), x.data,
                                T.address_of(wp[0]), i, jj, blk, h, w, c, k, stride, pad,
                                spec.in_bits, int(spec.in_signed), zx))
                        else:       # pixels j, j + 1 (the last one twice when wo is odd)
                            T.evaluate(T.call_extern(
                                "int32", "mpq_dsp_dw2", T.address_of(acc[0]), x.data,
                                T.address_of(wp[0]), i, jj * 2, tirx.min(jj * 2 + 1, wo - 1),
                                blk, h, w, c, k, stride, pad, spec.in_bits,
                                int(spec.in_signed), zx))
                        for q in range(npx):
                            def value(loc, q=q):
                                o = tirx.min(blk * group + loc, c - 1)
                                return _requant(spec, acc[q * group + loc], o, bias, m0, n0)

                            def store(q=q, value=value):
                                _store_block(T, y, (i * wo + jj * npx + q) * row_y, c,
                                             blk * group, group, spec, value)

                            if q and wo % npx:
                                with T.If(jj * npx + q < wo):
                                    with T.Then():
                                        store()
                            else:
                                store()
                # the table is read only by the micro-kernel; this keeps its full size
                T.evaluate(wp[2 * kk + 3])
    return ib.get()


def depthwise_rows(spec, name: str):
    """3 x 3 depthwise, stride 1 or 2: per block of G channels, the weight pairs and the
    accumulators' start in a local table (mpq_dsp_dwr_prep), then per output row the
    row micro-kernel (mpq_dsp_dwr), which widens the new input rows into the ring in
    `scratch`, runs the sliding pairs, requantizes and stores."""
    IRBuilder, T = ta.tir_ir_builder()

    h, w, c, ho, wo, _, k, stride, pad = _dims(spec)
    off_x = (1 << (spec.in_bits - 1)) if spec.in_signed and spec.in_bits < 8 else 0
    zx = spec.z_in + off_x
    g, _ = dw_rows_layout(spec)
    row_y = row_bytes(c, spec.out_bits)
    with IRBuilder() as ib:
        with T.prim_func():
            T.func_name(name)
            x = T.arg("x", T.Buffer((h * w * row_bytes(c, spec.in_bits),), "uint8"))
            wt = T.arg("w", T.Buffer((k * k * row_bytes(c, spec.w_bits),), "uint8"))
            wz, bias, m0, n0 = _channel_params(T, c, spec.w_signed)
            y = T.arg("y", T.Buffer((ho * wo * row_y,), "uint8"))
            scratch = T.arg("scratch", T.Buffer((scratch_bytes(spec),), "uint8"))
            with T.serial(0, -(-c // g)) as blk:
                tab = T.alloc_buffer((DWR_TAB * g,), "int32", scope="global")
                T.evaluate(T.call_extern(
                    "int32", "mpq_dsp_dwr_prep", T.address_of(tab[0]), wt.data, wz.data,
                    bias.data, m0.data, n0.data, blk * g, g, c, spec.w_bits,
                    int(spec.w_signed), zx, spec.acc_shift, spec.z_out))
                with T.serial(0, ho) as i:
                    T.evaluate(T.call_extern(
                        "int32", "mpq_dsp_dwr", y.data, x.data, scratch.data,
                        T.address_of(tab[0]), bias.data, m0.data, n0.data, i, blk * g, g,
                        h, w, c, wo, stride, pad, spec.in_bits, int(spec.in_signed), zx,
                        spec.out_bits, spec.acc_shift, spec.z_out, spec.q_min, spec.q_max,
                        int(spec.ties), int(spec.shift_hi)))
                # the table is read only by the micro-kernels; this keeps its full size
                T.evaluate(tab[DWR_TAB * g - 1])
    return ib.get()
