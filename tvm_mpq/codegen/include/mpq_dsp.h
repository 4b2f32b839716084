/* mpq_dsp.h: the base of the DSP micro-kernels of tvm-mpq's fast kernels (Cortex-M7
 * SMLAD path): intrinsics, weight unpacking, requantization. mpq_dsp_gemm.h (conv,
 * pointwise, linear) or mpq_dsp_dw.h (depthwise) follows it.
 *
 * Inserted verbatim into every fast kernel's C file (tvm_mpq.codegen.kernels), where the
 * TIR calls them with T.call_extern; all are static inline and take their shapes as
 * constant arguments, so gcc specializes each call. Two builds, identical integers:
 * with __ARM_FEATURE_DSP (Cortex-M7) they use SMLAD / SMLABB / SMLATT / SXTB16 from
 * arm_acle.h; otherwise (the host) a plain-C twin computes the same 32-bit values
 * (wrapping additions, as SMLAD does).
 *
 * Data formats (see the tvm_mpq.codegen.kernels docstring for the tensor layouts):
 * - a "pair" is a uint32 holding two int16 lanes, low lane first;
 * - an im2col column is int16 x - z_in for one output pixel, over the weight row's
 *   slots (taps x packed channels, with the row padding slots set to 0), in words of
 *   32 / w_bits slots; inside a word, slot e sits at position 2 * (e % half) + e / half
 *   (half = 16 / w_bits), the order in which one weight word unpacks into pairs:
 *   pair m = [e(m), e(half + m)] = (W >> (m * w_bits)) & lane mask.
 * - signed 4- and 2-bit weights are unpacked as u = w + 2^(w_bits-1) (one XOR per word);
 *   the kernel subtracts 2^(w_bits-1) * sum(x - z_in) with the weight zero point.
 */
#include <string.h>
#if defined(__ARM_FEATURE_DSP)
#include <arm_acle.h>
#endif

static inline uint32_t mpq_dsp_ld32(const uint8_t *p)
{
    uint32_t v;
    memcpy(&v, p, 4);
    return v;
}

/* Two consecutive words of an 8-byte aligned im2col buffer (one LDRD on the M7). */
static inline void mpq_dsp_ld2(const uint8_t *p, uint32_t *lo, uint32_t *hi)
{
    uint64_t v;
    memcpy(&v, __builtin_assume_aligned(p, 8), 8);
    *lo = (uint32_t)v;
    *hi = (uint32_t)(v >> 32);
}

static inline uint32_t mpq_dsp_ror(uint32_t x, int n) { return (x >> n) | (x << (32 - n)); }

#define MPQ_DSP_INLINE static inline __attribute__((always_inline))

#if defined(__ARM_FEATURE_DSP)
static inline uint32_t mpq_dsp_sxtb16(uint32_t x) { return (uint32_t)__sxtb16((int32_t)x); }
/* sxtb16(ror(x, 8)) in one instruction (gcc does not fuse the rotation itself) */
static inline uint32_t mpq_dsp_sxtb16_ror8(uint32_t x)
{
    uint32_t r;
    __asm__("sxtb16 %0, %1, ror #8" : "=r"(r) : "r"(x));
    return r;
}
/* bytes 0, 2 (and with ror #8: bytes 1, 3) zero-extended to two 16-bit lanes, one UXTB16 */
static inline uint32_t mpq_dsp_uxtb16(uint32_t x) { return (uint32_t)__uxtb16((int32_t)x); }
static inline uint32_t mpq_dsp_uxtb16_ror8(uint32_t x)
{
    uint32_t r;
    __asm__("uxtb16 %0, %1, ror #8" : "=r"(r) : "r"(x));
    return r;
}
static inline int32_t mpq_dsp_smlad(uint32_t a, uint32_t b, int32_t acc)
{
    return __smlad((int32_t)a, (int32_t)b, acc);
}
static inline int32_t mpq_dsp_smlabb(uint32_t a, uint32_t b, int32_t acc)
{
    return __smlabb((int32_t)a, (int32_t)b, acc);
}
static inline int32_t mpq_dsp_smlatt(uint32_t a, uint32_t b, int32_t acc)
{
    return __smlatt((int32_t)a, (int32_t)b, acc);
}
static inline int32_t mpq_dsp_smlabt(uint32_t a, uint32_t b, int32_t acc)
{
    return __smlabt((int32_t)a, (int32_t)b, acc);
}
static inline int32_t mpq_dsp_smlatb(uint32_t a, uint32_t b, int32_t acc)
{
    return __smlatb((int32_t)a, (int32_t)b, acc);
}
/* lane-wise a - b of two int16 lanes (SSUB16) */
static inline uint32_t mpq_dsp_sub16(uint32_t a, uint32_t b)
{
    return (uint32_t)__ssub16((int32_t)a, (int32_t)b);
}
/* [low lane of a, low lane of b] and [high lane of a, high lane of b]: PKHBT / PKHTB */
static inline uint32_t mpq_dsp_pack_lo(uint32_t a, uint32_t b)
{
    uint32_t r;
    __asm__("pkhbt %0, %1, %2, lsl #16" : "=r"(r) : "r"(a), "r"(b));
    return r;
}
static inline uint32_t mpq_dsp_pack_hi(uint32_t a, uint32_t b)
{
    uint32_t r;
    __asm__("pkhtb %0, %2, %1, asr #16" : "=r"(r) : "r"(a), "r"(b));
    return r;
}
#else
#define mpq_dsp_sxtb16_ror8(x) mpq_dsp_sxtb16(mpq_dsp_ror((x), 8))
#define mpq_dsp_uxtb16(x) ((x) & 0x00FF00FFu)
#define mpq_dsp_uxtb16_ror8(x) (((x) >> 8) & 0x00FF00FFu)
static inline int32_t mpq_dsp_lo(uint32_t a) { return (int32_t)(int16_t)(uint16_t)a; }
static inline int32_t mpq_dsp_hi(uint32_t a) { return (int32_t)(int16_t)(uint16_t)(a >> 16); }
static inline uint32_t mpq_dsp_sxtb16(uint32_t x)
{
    return ((uint32_t)(int32_t)(int8_t)(uint8_t)x & 0xFFFFu)
           | ((uint32_t)(int32_t)(int8_t)(uint8_t)(x >> 16) << 16);
}
static inline int32_t mpq_dsp_smlad(uint32_t a, uint32_t b, int32_t acc)
{
    return (int32_t)((uint32_t)acc + (uint32_t)(mpq_dsp_lo(a) * mpq_dsp_lo(b))
                     + (uint32_t)(mpq_dsp_hi(a) * mpq_dsp_hi(b)));
}
static inline int32_t mpq_dsp_smlabb(uint32_t a, uint32_t b, int32_t acc)
{
    return (int32_t)((uint32_t)acc + (uint32_t)(mpq_dsp_lo(a) * mpq_dsp_lo(b)));
}
static inline int32_t mpq_dsp_smlatt(uint32_t a, uint32_t b, int32_t acc)
{
    return (int32_t)((uint32_t)acc + (uint32_t)(mpq_dsp_hi(a) * mpq_dsp_hi(b)));
}
static inline int32_t mpq_dsp_smlabt(uint32_t a, uint32_t b, int32_t acc)
{
    return (int32_t)((uint32_t)acc + (uint32_t)(mpq_dsp_lo(a) * mpq_dsp_hi(b)));
}
static inline int32_t mpq_dsp_smlatb(uint32_t a, uint32_t b, int32_t acc)
{
    return (int32_t)((uint32_t)acc + (uint32_t)(mpq_dsp_hi(a) * mpq_dsp_lo(b)));
}
static inline uint32_t mpq_dsp_pack_lo(uint32_t a, uint32_t b)
{
    return (a & 0xFFFFu) | (b << 16);
}
static inline uint32_t mpq_dsp_sub16(uint32_t a, uint32_t b)
{
    return ((a & 0xFFFF0000u) - (b & 0xFFFF0000u)) | ((a - b) & 0x0000FFFFu);
}
static inline uint32_t mpq_dsp_pack_hi(uint32_t a, uint32_t b)
{
    return (a >> 16) | (b & 0xFFFF0000u);
}
#endif

/* One weight word -> pairs p[0 .. 16 / w_bits - 1] (see the slot order above). */
#define MPQ_DSP_UNPACK(W, w_bits, w_signed, p)                                          \
    do {                                                                                \
        uint32_t w_ = (W);                                                              \
        if ((w_bits) == 8 && (w_signed)) {                                              \
            p[0] = mpq_dsp_sxtb16(w_);                                                  \
            p[1] = mpq_dsp_sxtb16_ror8(w_);                                  \
        } else if ((w_bits) == 8) {                                                     \
            p[0] = w_ & 0x00FF00FFu;                                                    \
            p[1] = (w_ >> 8) & 0x00FF00FFu;                                             \
        } else if ((w_bits) == 4) {                                                     \
            if (w_signed) w_ ^= 0x88888888u;                                            \
            p[0] = w_ & 0x000F000Fu;                                                    \
            p[1] = (w_ >> 4) & 0x000F000Fu;                                             \
            p[2] = (w_ >> 8) & 0x000F000Fu;                                             \
            p[3] = (w_ >> 12) & 0x000F000Fu;                                            \
        } else {                                                                        \
            if (w_signed) w_ ^= 0xAAAAAAAAu;                                            \
            p[0] = w_ & 0x00030003u;                                                    \
            p[1] = (w_ >> 2) & 0x00030003u;                                             \
            p[2] = (w_ >> 4) & 0x00030003u;                                             \
            p[3] = (w_ >> 6) & 0x00030003u;                                             \
            p[4] = (w_ >> 8) & 0x00030003u;                                             \
            p[5] = (w_ >> 10) & 0x00030003u;                                            \
            p[6] = (w_ >> 12) & 0x00030003u;                                            \
            p[7] = (w_ >> 14) & 0x00030003u;                                            \
        }                                                                               \
    } while (0)

/* The last, partial weight word of a row (n < 4 bytes; the missing bytes read as 0). */
static inline uint32_t mpq_dsp_ld_tail(const uint8_t *p, int32_t n)
{
    uint32_t v = 0;
    for (int32_t b = 0; b < n; ++b) v |= (uint32_t)p[b] << (8 * b);
    return v;
}
/* 4 channels of one input pixel -> lane pairs [x~(c0), x~(c2)], [x~(c1), x~(c3)] (x~ = x,
 * or x + 2^(b-1) for signed 4-/2-bit inputs; c_left < 4: the missing channels read 0). */
#define MPQ_DSP_LOAD4(px, c_left, in_bits, in_signed, pa, pb)                            \
    do {                                                                                \
        uint32_t X_;                                                                    \
        if ((c_left) >= 4) {                                                            \
            X_ = (in_bits) == 8 ? mpq_dsp_ld32(px)                                      \
               : (in_bits) == 4 ? (uint32_t)(px)[0] | ((uint32_t)(px)[1] << 8)          \
                                : (uint32_t)(px)[0];                                    \
        } else {                                                                        \
            X_ = mpq_dsp_ld_tail(px, ((c_left) * (in_bits) + 7) / 8);                   \
        }                                                                               \
        if ((in_bits) == 8 && (in_signed)) {                                            \
            pa = mpq_dsp_sxtb16(X_);                                                    \
            pb = mpq_dsp_sxtb16_ror8(X_);                                    \
        } else if ((in_bits) == 8) {                                                    \
            pa = mpq_dsp_uxtb16(X_);                                                    \
            pb = mpq_dsp_uxtb16_ror8(X_);                                               \
        } else if ((in_bits) == 4) {                                                    \
            X_ = X_ | (X_ << 8);                                                        \
            if (in_signed) X_ ^= 0x00880088u;                                           \
            pa = X_ & 0x000F000Fu;                                                      \
            pb = (X_ >> 4) & 0x000F000Fu;                                               \
        } else {                                                                        \
            X_ = X_ | (X_ << 12);                                                       \
            if (in_signed) X_ ^= 0x000A000Au;                                           \
            pa = X_ & 0x00030003u;                                                      \
            pb = (X_ >> 2) & 0x00030003u;                                               \
        }                                                                               \
    } while (0)

/* Element ch of a packed row, as int32 (signed: two's complement in its bits). */
static inline int32_t mpq_dsp_elem(const uint8_t *row, int32_t ch, int32_t bits, int32_t sgn)
{
    const int32_t per = 8 / bits;
    uint32_t v = ((uint32_t)row[ch / per] >> ((ch % per) * bits)) & ((1u << bits) - 1u);
    return sgn ? (int32_t)(v << (32 - bits)) >> (32 - bits) : (int32_t)v;
}

/* The same when no exact tie can occur (reference.icn.ties_possible is False for this
 * layer's m0/n0): round half up is then identical. One SMULL and one ASR when s >= 32. */
MPQ_DSP_INLINE int32_t mpq_dsp_requant_noties(int32_t acc, int32_t m0, int32_t n0,
                                              int32_t z_out, int32_t q_min, int32_t q_max)
{
    const int64_t p = (int64_t)acc * m0;
    const int32_t sh = 30 - n0;
    int64_t q;
    if (sh >= 32) {
        q = ((int32_t)(p >> 32)) >> (sh - 32);
    } else {
        q = p >> sh;
    }
    q = ((q + 1) >> 1) + z_out;
    return (int32_t)(q < q_min ? q_min : (q > q_max ? q_max : q));
}

/* ICN requantization, exactly tvm_mpq.reference.icn: P = acc * m0 (64-bit), y = P / 2^s
 * (s = 31 - n0) rounded to nearest with ties to even, + z_out, clamped.
 * With t = P >> (s - 1): round-half-up is (t + 1) >> 1; an exact tie (t odd, no bits below)
 * whose half-up result is odd (t & 3 == 1) goes one down. When s >= 33, t comes from the
 * high word alone (one SMULL, one ASR) and the sticky bits from the low word. */
MPQ_DSP_INLINE int32_t mpq_dsp_requant(int32_t acc, int32_t m0, int32_t n0, int32_t z_out,
                                       int32_t q_min, int32_t q_max)
{
    const int64_t p = (int64_t)acc * m0;
    const int32_t sh = 31 - n0;
    int64_t y;
    if (sh >= 33) {
        const int32_t hi = (int32_t)(p >> 32);
        const uint32_t lo = (uint32_t)p;
        const int32_t k = sh - 33;
        const int32_t t = hi >> k;
        const uint32_t sticky = lo | ((uint32_t)hi & ((1u << k) - 1u));
        y = ((t + 1) >> 1) - (((t & 3) == 1) & (sticky == 0));
    } else {
        const int64_t t = p >> (sh - 1);
        const int64_t sticky = p & (((int64_t)1 << (sh - 1)) - 1);
        y = ((t + 1) >> 1) - (((t & 3) == 1) & (sticky == 0));
    }
    y += z_out;
    return (int32_t)(y < q_min ? q_min : (y > q_max ? q_max : y));
}

/* The two requantizations when every channel's shift is at least 33 (n0 <= -2, i.e.
 * multipliers below 1/4: KernelSpec.shift_hi): only the branch for that case, so gcc emits
 * SMULL, shifts and the clamp without a data-dependent path. Identical results. */
MPQ_DSP_INLINE int32_t mpq_dsp_requant_noties_hi(int32_t acc, int32_t m0, int32_t n0,
                                                 int32_t z_out, int32_t q_min, int32_t q_max)
{
    const int32_t hi = (int32_t)(((int64_t)acc * m0) >> 32);
    int32_t q = hi >> (30 - n0 - 32);
    q = ((q + 1) >> 1) + z_out;
    return q < q_min ? q_min : (q > q_max ? q_max : q);
}

MPQ_DSP_INLINE int32_t mpq_dsp_requant_hi(int32_t acc, int32_t m0, int32_t n0, int32_t z_out,
                                          int32_t q_min, int32_t q_max)
{
    const int64_t p = (int64_t)acc * m0;
    const int32_t hi = (int32_t)(p >> 32);
    const uint32_t lo = (uint32_t)p;
    const int32_t k = 31 - n0 - 33;
    const int32_t t = hi >> k;
    const uint32_t sticky = lo | ((uint32_t)hi & ((1u << k) - 1u));
    int32_t y = ((t + 1) >> 1) - (((t & 3) == 1) & (sticky == 0)) + z_out;
    return y < q_min ? q_min : (y > q_max ? q_max : y);
}

/* The requantization of a layer (ties: reference.icn.ties_possible; hi: KernelSpec.shift_hi),
 * both constants at every call, so only one variant is compiled. */
MPQ_DSP_INLINE int32_t mpq_dsp_requant_any(int32_t acc, int32_t m0, int32_t n0, int32_t z_out,
                                           int32_t q_min, int32_t q_max, int32_t ties,
                                           int32_t hi)
{
    if (ties && hi) return mpq_dsp_requant_hi(acc, m0, n0, z_out, q_min, q_max);
    if (ties) return mpq_dsp_requant(acc, m0, n0, z_out, q_min, q_max);
    if (hi) return mpq_dsp_requant_noties_hi(acc, m0, n0, z_out, q_min, q_max);
    return mpq_dsp_requant_noties(acc, m0, n0, z_out, q_min, q_max);
}
