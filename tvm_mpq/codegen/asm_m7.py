"""Cortex-M7 assembly generated per layer for the fast kernels' inner loops.

Each generator returns C text for the kernel's prelude (`kernels._dsp_prelude`): a naked
function named `<kernel>__<part>` (so benches and the tuner count its instructions as the
kernel's, `target.plugin.kernel_symbols`) and the macro through which the micro-kernels of
include/mpq_dsp*.h call it, under `#if defined(__ARM_FEATURE_DSP)`; everywhere else
(the host) those micro-kernels run their C twin, which gives the same bytes. The layer's
constants (strides, offsets, loop counts, clamp, shifts) are baked into the instructions,
which is what lets these loops use all 14 registers.

- `dwr_asm`: the row depthwise kernel's row (3x3, stride 1 or 2).
- `gemm_asm`: the `ch = 1` GEMM micro-kernel (P im2col columns x 1 weight row).
"""

from __future__ import annotations

from ..reference.packing import row_bytes
from .kernel_dsp import DWR_TAB, layout, dw_rows_layout, gemm_layout, resolve_schedule


def _add_const(reg: str, value: int) -> list[str]:
    """Thumb-2 for reg += value (r12 as scratch when value needs more than 12 bits)."""
    if value == 0:
        return []
    if 0 < value <= 4095:
        return [f"addw {reg}, {reg}, #{value}"]
    if -4095 <= value < 0:
        return [f"subw {reg}, {reg}, #{-value}"]
    v = value & 0xFFFFFFFF
    return [f"movw r12, #{v & 0xFFFF}", f"movt r12, #{v >> 16}", f"add {reg}, {reg}, r12"]


def _sat(spec) -> str | None:
    """USAT/SSAT when the layer's clamp is its output type's full range, else None."""
    b = spec.out_bits
    if (spec.q_min, spec.q_max) == (0, (1 << b) - 1):
        return f"usat {{0}}, #{b}, {{0}}"
    if (spec.q_min, spec.q_max) == (-(1 << (b - 1)), (1 << (b - 1)) - 1):
        return f"ssat {{0}}, #{b}, {{0}}"
    return None


def dwr_asm(spec, name: str) -> str:
    """C text (for the kernel's prelude) of the row depthwise kernel's assembly for `spec`,
    or "" when its requantization is not the plain kind the assembly does.

    `<name>__row(ring, rot, tab, yp, n_ch)` (MPQ_DSP_DWR_ASM) computes one output row of
    n_ch channels: ring is channel 0's ring (3 rows of n_pairs pairs), rot the ring slot
    of kernel row 0 (rows 1, 2 follow cyclically), tab channel 0's entry of the
    mpq_dsp_dwr_prep table, yp channel 0's output byte. Two outputs a step: 3 LDRD (6
    loads on stride 2) at constant offsets from one pointer, 12 SMLAD / SMLABT / SMLATB
    (the first two start from the accumulator's start in a register), the bias added
    with the accumulator shifted by acc_shift (one ADD), requantization as
    (hi32(acc * m0) + R) >> (k + 1) (SMMLA, ASR, USAT/SSAT) and the stores (STRB, or
    LDRB/ORR/STRB for the 2nd..last channel of a sub-byte output byte); unrolled twice.
    It takes all 14 registers, so it is a naked function with this layer's constants
    (output stride, steps, ring offsets, one loop per ring rotation) baked in; m0, R,
    k + 1 and the bias sit in its stack frame. Only for a full-range clamp, no rounding
    ties and shift_hi (every real layer so far), rings up to 127 pairs a row; else the C
    row of mpq_dsp_dwr, the same integers, does all."""
    sat = _sat(spec)
    if dw_rows_layout(spec) is None or sat is None or spec.ties or not spec.shift_hi:
        return ""
    wo, c, stride = spec.out_shape[2], spec.out_shape[3], spec.stride
    _, n_pairs = dw_rows_layout(spec)
    if 2 * n_pairs * 4 > 1020:              # LDRD's offset range
        return ""
    bits, sh = spec.out_bits, spec.acc_shift
    per = 8 // bits
    row_y = row_bytes(c, bits)
    n_steps = wo // 2
    step = 4 if stride == 1 else 8          # bytes the ring pointer advances per 2 outputs
    mask = (1 << bits) - 1

    def store(slot: int, regs: tuple[str, ...]) -> list[str]:
        """Store each of regs (consecutive output pixels) into channel slot `slot`."""
        out = []
        for n, r in enumerate(regs):
            last = n == len(regs) - 1
            if spec.out_signed and bits < 8:
                out.append(f"and {r}, {r}, #{mask}")
            post = row_y <= 255 and len(regs) > 1
            adr = f"[r3], #{row_y}" if post else (f"[r3, #{row_y * n}]" if n else "[r3]")
            if slot == 0:
                out.append(f"strb {r}, {adr}")
            else:
                src = "[r3]" if post else (f"[r3, #{row_y * n}]" if n else "[r3]")
                out += [f"ldrb r12, {src}", f"orr r12, r12, {r}, lsl #{slot * bits}",
                        f"strb r12, {adr}"]
            if last and not post and len(regs) > 1:
                out += _add_const("r3", row_y * len(regs))
        return out

    def requant(regs: tuple[str, ...]) -> list[str]:
        out = []
        if sh:                              # (acc << acc_shift) + B (B: start and bias)
            out += [f"add {r}, r1, {r}, lsl #{sh}" for r in regs]
        out.append("ldrd r12, lr, [sp, #4]")                       # m0, R
        out += [f"smmla {r}, {r}, r12, lr" for r in regs]
        out.append("ldr r12, [sp, #12]")                           # k + 1
        out += [f"asr {r}, {r}, r12" for r in regs]
        out += [sat.format(r) for r in regs]
        return out

    weights = (("r4", "r5"), ("r6", "r7"), ("r8", "r9"))

    def variant(rot: int) -> list[str]:
        offs = [((rot + kh) % 3) * n_pairs * 4 for kh in range(3)]
        order = sorted(range(3), key=lambda kh: offs[kh] == 0)  # offset 0 last (post-index)
        body, tail = [], []
        for n, kh in enumerate(order):
            (wa, wb), off = weights[kh], offs[kh]

            def mac(op: str, d: str, a: str, b: str) -> str:
                """op d += a (x) b; the first of d without acc_shift starts from the
                start in r1, with it from 0 (B is added after the shift)"""
                if n:
                    return f"{op} {d}, {a}, {b}, {d}"
                if not sh:
                    return f"{op} {d}, {a}, {b}, r1"
                return {"smlad": "smuad", "smlabt": "smulbt"}[op] + f" {d}, {a}, {b}"

            adr = f"[r0, #{off}]" if off else f"[r0], #{step}"
            if stride == 1:
                # s += W01.P01 + w2 x(u+2); t += w0 x(u+1) + W12.P23
                body += [f"ldrd r12, lr, {adr}",
                         mac("smlabt", "r11", wa, "r12"), mac("smlad", "r10", wa, "r12"),
                         f"smlatb r10, {wb}, lr, r10", f"smlad r11, {wb}, lr, r11"]
            else:
                # s += W01.P(x) + w2 x(2x+2); t += W01.P(x+1) + w2 x(2x+4)
                body += [f"ldrd r12, lr, {adr}",
                         mac("smlad", "r10", wa, "r12"), f"smlatb r10, {wb}, lr, r10",
                         mac("smlad", "r11", wa, "lr"),
                         f"ldr r12, [r0, #{off + 8}]" if off else "ldr r12, [r0]",
                         f"smlatb r11, {wb}, r12, r11"]
            tail += [f"ldrd r12, lr, [r0, #{off}]" if off else "ldrd r12, lr, [r0]",
                     mac("smlad", "r10", wa, "r12"), f"smlatb r10, {wb}, lr, r10"]
        code = []
        for slot in range(per):             # channels of one output byte
            lab = 10 * (3 * rot + 1) + 2 * slot
            code += [f"{lab}:",
                     "ldr r12, [sp]",                   # tab
                     "ldm r12, {r4-r9}",                # W01, W12 of kernel rows 0, 1, 2
                     f"ldr r1, [r12, #{40 if sh else 24}]",  # B, or the start
                     "ldr lr, [r12, #28]",              # m0
                     "str lr, [sp, #4]",
                     "ldrd r10, r11, [r12, #32]",       # R, k + 1
                     "strd r10, r11, [sp, #8]",
                     f"add r12, r12, #{4 * DWR_TAB}",
                     "str r12, [sp]"]
            step_code = body + requant(("r10", "r11")) + store(slot, ("r10", "r11"))
            if n_steps % 2:
                code += step_code
            if n_steps >= 2:
                code += [f"add r2, r0, #{(n_steps // 2) * 2 * step}",
                         f"{lab + 1}:", *step_code, *step_code,
                         "cmp r0, r2", f"bne {lab + 1}b"]
            if wo % 2:
                code += [*tail, *requant(("r10",)), *store(slot, ("r10",))]
            back = -2 * n_steps * row_y + (1 if slot == per - 1 else 0)
            code += [*_add_const("r0", 3 * n_pairs * 4 - n_steps * step),
                     *_add_const("r3", back),
                     "ldr r12, [sp, #64]",              # channels left (5th argument)
                     "subs r12, r12, #1",
                     "str r12, [sp, #64]",
                     "beq 9f"]
        code.append(f"b {10 * (3 * rot + 1)}b")
        return code

    body = ["push {r4-r12, lr}",
            "sub sp, sp, #24",
            "str r2, [sp]",
            "cmp r1, #1",
            "beq 40f",
            "bgt 70f",
            *variant(0), *variant(1), *variant(2),
            "9:",
            "add sp, sp, #24",
            "pop {r4-r12, pc}"]
    asm = "\n".join(f'        "{ins}\\n\\t"' for ins in body)
    return f"""#if defined(__ARM_FEATURE_DSP)
/* asm_m7.dwr_asm: {wo} outputs a row, stride {stride}, output rows of {row_y} bytes
 * ({bits}-bit), ring rows of {n_pairs} pairs, acc_shift {sh} */
#define MPQ_DSP_DWR_ASM {name}__row
__attribute__((naked, noinline, used)) static void
{name}__row(const uint32_t *ring, int32_t rot, const int32_t *tab, uint8_t *yp, int32_t n_ch)
{{
    __asm__ volatile(
{asm});
}}
#endif
"""


def gemm_asm(spec, name: str) -> str:
    """C text (for the kernel's prelude) of the `ch = 1` GEMM micro-kernel's assembly, or ""
    when the schedule or the weights (2-bit) do not take it.

    `<name>__dot(xb, w, acc)` (MPQ_DSP_DOT_ASM) gives acc[q] = x_q . w over the layer's
    weight row (its partial last word read whole: pack_params pads the weights) for its
    P = `pix` interleaved im2col columns (mpq_dsp_dot_px1i's layout): per weight word one
    LDR and its unpacking (SXTB16/UXTB16 twice; 4-/2-bit: AND/LSR per pair, the word
    reloaded per group of two pairs when P > 6 leaves no register for it, EOR for signed),
    then per column one LDRD and two SMLAD into the column's accumulator; unrolled. The P
    accumulators, 2 weight pairs, 2 column words and 2 pointers take up to all 14
    registers, so it is a naked function with the layer's constants (P, words, offsets)
    baked in; the loop end sits in its stack frame."""
    if layout(spec) != "gemm":
        return ""
    sched = resolve_schedule(spec)
    if sched["ch"] != 1:
        return ""
    row_w, _, n_cols = gemm_layout(spec)
    n_words = -(-row_w // 4)                # the last, partial word read whole (padded)
    P, G = n_cols, 8 // spec.w_bits
    accs = [f"r{2 + q}" for q in range(P)]
    span = 8 * P * G                        # bytes of columns a weight word covers

    def col_loads(g: int, first: bool) -> list[str]:
        """LDRD + 2 SMLAD for every column of group g (pairs in r11 (even) / r10 (odd))."""
        out = []
        for q in range(P):
            off = 8 * (g * P + q)
            if first and g == 0 and q == 0:
                adr = f"[r0], #{span}"      # the word's first load moves the pointer
            else:
                adr = f"[r0, #{off - span}]"
            out += [f"ldrd r12, lr, {adr}", f"smlad {accs[q]}, r12, r11, {accs[q]}",
                    f"smlad {accs[q]}, lr, r10, {accs[q]}"]
        return out

    if spec.w_bits == 8:
        ext = "sxtb16" if spec.w_signed else "uxtb16"
        word = ["ldr r10, [r1], #4", f"{ext} r11, r10", f"{ext} r10, r10, ror #8",
                *col_loads(0, True)]
    else:
        # group g holds pairs 2g, 2g + 1 of the word: (W >> (2 g b)) & mask and
        # (W >> ((2 g + 1) b)) & mask; the word is reloaded per group (no spare register)
        b = spec.w_bits
        mask = "#0x000F000F" if b == 4 else "#0x00030003"
        xor = [f"eor r10, r10, #{'0x88888888' if b == 4 else '0xAAAAAAAA'}"] \
            if spec.w_signed else []
        word = []
        keep = P <= 6                       # r9 free: the word stays there, loaded once
        if keep:
            word += ["ldr r9, [r1], #4", *[x.replace("r10", "r9") for x in xor]]
        for g in range(G):
            se, so = 2 * g * b, (2 * g + 1) * b
            src = "r9" if keep else "r10"
            if not keep:
                word += ["ldr r10, [r1], #4" if g == G - 1 else "ldr r10, [r1]", *xor]
            word += [f"lsr r11, {src}, #{se}" if se else f"and r11, {src}, {mask}",
                     *([f"and r11, r11, {mask}"] if se else []),
                     f"lsr r10, {src}, #{so}", f"and r10, r10, {mask}",
                     *col_loads(g, g == 0)]
    body = ["push {r4-r11, lr}",
            "sub sp, sp, #12",
            "str r2, [sp, #4]",                 # acc
            *[f"mov {a}, #0" for a in accs]]
    unroll = 4 if P <= 2 else 2             # weight words a loop step
    body += word * (n_words % unroll)
    if n_words >= unroll:
        loop_bytes = 4 * (n_words - n_words % unroll)
        body += [f"add r12, r1, #{loop_bytes}" if loop_bytes <= 4095 else
                 f"movw r12, #{loop_bytes}\\n\\tadd r12, r1, r12",
                 "str r12, [sp]",               # loop end of the weight pointer
                 "1:", *(word * unroll),
                 "ldr r12, [sp]", "cmp r1, r12", "bne 1b"]
    body += ["ldr r12, [sp, #4]",
             f"stm r12, {{{', '.join(accs)}}}",
             "add sp, sp, #12",
             "pop {r4-r11, pc}"]
    asm = "\n".join(f'        "{ins}\\n\\t"' for ins in body)
    return f"""#if defined(__ARM_FEATURE_DSP)
/* asm_m7.gemm_asm: {P} columns x 1 row, {n_words} words of {spec.w_bits}-bit weights */
#define MPQ_DSP_DOT_ASM {name}__dot
__attribute__((naked, noinline, used)) static void
{name}__dot(const uint8_t *xb, const uint8_t *w, int32_t *acc)
{{
    __asm__ volatile(
{asm});
}}
#endif
"""
