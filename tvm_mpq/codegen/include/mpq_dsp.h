/* mpq_dsp.h: the DSP micro-kernels of tvm-mpq's fast kernels (Cortex-M7 SMLAD path).
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

/* acc[0] = x0.w0, acc[1] = x0.w1, acc[2] = x1.w0, acc[3] = x1.w1: columns x0, x1 (im2col
 * pairs), weight rows w0, w1 of n_bytes packed bytes. */
MPQ_DSP_INLINE int32_t mpq_dsp_dot_2x2(const uint8_t *x0, const uint8_t *x1, const uint8_t *w0,
                                      const uint8_t *w1, int32_t n_bytes, int32_t w_bits,
                                      int32_t w_signed, int32_t *acc)
{
    const int32_t n_pairs = 16 / w_bits;
    int32_t s00 = 0, s01 = 0, s10 = 0, s11 = 0;
    uint32_t a[8], b[8];
    int32_t i = 0;
    x0 = (const uint8_t *)__builtin_assume_aligned(x0, 8);   /* columns: 8-byte aligned */
    x1 = (const uint8_t *)__builtin_assume_aligned(x1, 8);
#pragma GCC unroll 2
    for (; i + 4 <= n_bytes; i += 4) {
        MPQ_DSP_UNPACK(mpq_dsp_ld32(w0 + i), w_bits, w_signed, a);
        MPQ_DSP_UNPACK(mpq_dsp_ld32(w1 + i), w_bits, w_signed, b);
#pragma GCC unroll 8
        for (int32_t m = 0; m < n_pairs; ++m) {
            uint32_t p0 = mpq_dsp_ld32(x0 + 4 * m), p1 = mpq_dsp_ld32(x1 + 4 * m);
            s00 = mpq_dsp_smlad(p0, a[m], s00);
            s01 = mpq_dsp_smlad(p0, b[m], s01);
            s10 = mpq_dsp_smlad(p1, a[m], s10);
            s11 = mpq_dsp_smlad(p1, b[m], s11);
        }
        x0 += 4 * n_pairs;
        x1 += 4 * n_pairs;
    }
    if (i < n_bytes) {
        MPQ_DSP_UNPACK(mpq_dsp_ld_tail(w0 + i, n_bytes - i), w_bits, w_signed, a);
        MPQ_DSP_UNPACK(mpq_dsp_ld_tail(w1 + i, n_bytes - i), w_bits, w_signed, b);
#pragma GCC unroll 8
        for (int32_t m = 0; m < n_pairs; ++m) {
            uint32_t p0 = mpq_dsp_ld32(x0 + 4 * m), p1 = mpq_dsp_ld32(x1 + 4 * m);
            s00 = mpq_dsp_smlad(p0, a[m], s00);
            s01 = mpq_dsp_smlad(p0, b[m], s01);
            s10 = mpq_dsp_smlad(p1, a[m], s10);
            s11 = mpq_dsp_smlad(p1, b[m], s11);
        }
    }
    acc[0] = s00;
    acc[1] = s01;
    acc[2] = s10;
    acc[3] = s11;
    return 0;
}

/* The same 2 x 2 block with the two im2col columns interleaved by 8 bytes in xb (im2col
 * with ilv = 2): one pointer walks both columns, so on the M7 the 8-bit loop fits the
 * registers as hand-scheduled assembly: per weight word, 2 LDR + 4 SXTB16/UXTB16 +
 * 2 LDRD + 8 SMLAD for 16 MACs, unrolled twice. The C twin computes the same sums. */
#define MPQ_DSP_2X2I_STEP(EXT)                                                          \
    "ldr    %[b0], [%[w1]], #4\n\t"                                                     \
    "ldr    %[a0], [%[w0]], #4\n\t"                                                     \
    "ldrd   %[x0], %[x1], [%[px]], #16\n\t"                                             \
    EXT "   %[a1], %[a0], ror #8\n\t"                                                   \
    EXT "   %[a0], %[a0]\n\t"                                                           \
    EXT "   %[b1], %[b0], ror #8\n\t"                                                   \
    EXT "   %[b0], %[b0]\n\t"                                                           \
    "smlad  %[s00], %[x0], %[a0], %[s00]\n\t"                                           \
    "smlad  %[s00], %[x1], %[a1], %[s00]\n\t"                                           \
    "smlad  %[s01], %[x0], %[b0], %[s01]\n\t"                                           \
    "smlad  %[s01], %[x1], %[b1], %[s01]\n\t"                                           \
    "ldrd   %[x0], %[x1], [%[px], #-8]\n\t"                                             \
    "smlad  %[s10], %[x0], %[a0], %[s10]\n\t"                                           \
    "smlad  %[s10], %[x1], %[a1], %[s10]\n\t"                                           \
    "smlad  %[s11], %[x0], %[b0], %[s11]\n\t"                                           \
    "smlad  %[s11], %[x1], %[b1], %[s11]\n\t"

#define MPQ_DSP_2X2I_ASM(EXT)                                                           \
    __asm__ volatile("1:\n\t" MPQ_DSP_2X2I_STEP(EXT) MPQ_DSP_2X2I_STEP(EXT)             \
                     "cmp    %[w0], %[end]\n\t"                                         \
                     "bne    1b\n\t"                                                    \
                     : [s00] "+r"(s00), [s01] "+r"(s01), [s10] "+r"(s10), [s11] "+r"(s11), \
                       [a0] "=&r"(a0), [a1] "=&r"(a1), [b0] "=&r"(b0), [b1] "=&r"(b1),  \
                       [x0] "=&r"(x0), [x1] "=&r"(x1), [w0] "+&r"(pw0), [w1] "+&r"(pw1), \
                       [px] "+&r"(xc)                                                   \
                     : [end] "r"(end)                                                   \
                     : "cc", "memory")

/* 4-bit weights: one word holds 8 weights = 4 pairs per row (nibble m and m + 4); each
 * half of the word (pairs 0-1, then 2-3) is unpacked with AND/LSR into 2 registers per
 * row (the word is loaded twice: the registers hold nothing else). Signed weights are
 * flipped to u = w + 8 with one EOR (XOR_), as MPQ_DSP_UNPACK does. */
#define MPQ_DSP_2X2I_SMLADS                                                             \
    "ldrd   %[x0], %[x1], [%[px]], #16\n\t"                                             \
    "smlad  %[s00], %[x0], %[a0], %[s00]\n\t"                                           \
    "smlad  %[s00], %[x1], %[a1], %[s00]\n\t"                                           \
    "smlad  %[s01], %[x0], %[b0], %[s01]\n\t"                                           \
    "smlad  %[s01], %[x1], %[b1], %[s01]\n\t"                                           \
    "ldrd   %[x0], %[x1], [%[px], #-8]\n\t"                                             \
    "smlad  %[s10], %[x0], %[a0], %[s10]\n\t"                                           \
    "smlad  %[s10], %[x1], %[a1], %[s10]\n\t"                                           \
    "smlad  %[s11], %[x0], %[b0], %[s11]\n\t"                                           \
    "smlad  %[s11], %[x1], %[b1], %[s11]\n\t"

#define MPQ_DSP_2X2I_STEP4(XOR_A, XOR_B)                                                \
    "ldr    %[a1], [%[w0]]\n\t"                                                         \
    "ldr    %[b1], [%[w1]]\n\t"                                                         \
    XOR_A XOR_B                                                                         \
    "and    %[a0], %[a1], #0x000F000F\n\t"                                              \
    "lsr    %[a1], %[a1], #4\n\t"                                                       \
    "and    %[a1], %[a1], #0x000F000F\n\t"                                              \
    "and    %[b0], %[b1], #0x000F000F\n\t"                                              \
    "lsr    %[b1], %[b1], #4\n\t"                                                       \
    "and    %[b1], %[b1], #0x000F000F\n\t"                                              \
    MPQ_DSP_2X2I_SMLADS                                                                 \
    "ldr    %[a1], [%[w0]], #4\n\t"                                                     \
    "ldr    %[b1], [%[w1]], #4\n\t"                                                     \
    XOR_A XOR_B                                                                         \
    "lsr    %[a0], %[a1], #8\n\t"                                                       \
    "and    %[a0], %[a0], #0x000F000F\n\t"                                              \
    "lsr    %[a1], %[a1], #12\n\t"                                                      \
    "and    %[a1], %[a1], #0x000F000F\n\t"                                              \
    "lsr    %[b0], %[b1], #8\n\t"                                                       \
    "and    %[b0], %[b0], #0x000F000F\n\t"                                              \
    "lsr    %[b1], %[b1], #12\n\t"                                                      \
    "and    %[b1], %[b1], #0x000F000F\n\t"                                              \
    MPQ_DSP_2X2I_SMLADS

#define MPQ_DSP_XOR4_A "eor    %[a1], %[a1], #0x88888888\n\t"
#define MPQ_DSP_XOR4_B "eor    %[b1], %[b1], #0x88888888\n\t"

#define MPQ_DSP_2X2I_ASM4(XOR_A, XOR_B)                                                 \
    __asm__ volatile("1:\n\t" MPQ_DSP_2X2I_STEP4(XOR_A, XOR_B)                          \
                     MPQ_DSP_2X2I_STEP4(XOR_A, XOR_B)                                   \
                     "cmp    %[w0], %[end]\n\t"                                         \
                     "bne    1b\n\t"                                                    \
                     : [s00] "+r"(s00), [s01] "+r"(s01), [s10] "+r"(s10), [s11] "+r"(s11), \
                       [a0] "=&r"(a0), [a1] "=&r"(a1), [b0] "=&r"(b0), [b1] "=&r"(b1),  \
                       [x0] "=&r"(x0), [x1] "=&r"(x1), [w0] "+&r"(pw0), [w1] "+&r"(pw1), \
                       [px] "+&r"(xc)                                                   \
                     : [end] "r"(end)                                                   \
                     : "cc", "memory")

#define MPQ_DSP_2X2I_C(LOAD)                                                            \
    do {                                                                                \
        MPQ_DSP_UNPACK(LOAD(w0), w_bits, w_signed, a);                                  \
        MPQ_DSP_UNPACK(LOAD(w1), w_bits, w_signed, b);                                  \
        _Pragma("GCC unroll 4")                                                         \
        for (int32_t m = 0; m < n_pairs; m += 2) {                                      \
            uint32_t p0, q0, p1, q1;                                                    \
            mpq_dsp_ld2(xc, &p0, &q0);                                                  \
            mpq_dsp_ld2(xc + 8, &p1, &q1);                                              \
            xc += 16;                                                                   \
            s00 = mpq_dsp_smlad(q0, a[m + 1], mpq_dsp_smlad(p0, a[m], s00));            \
            s01 = mpq_dsp_smlad(q0, b[m + 1], mpq_dsp_smlad(p0, b[m], s01));            \
            s10 = mpq_dsp_smlad(q1, a[m + 1], mpq_dsp_smlad(p1, a[m], s10));            \
            s11 = mpq_dsp_smlad(q1, b[m + 1], mpq_dsp_smlad(p1, b[m], s11));            \
        }                                                                               \
    } while (0)

MPQ_DSP_INLINE int32_t mpq_dsp_dot_2x2i(const uint8_t *xb, const uint8_t *w0,
                                       const uint8_t *w1, int32_t n_bytes, int32_t w_bits,
                                       int32_t w_signed, int32_t *acc)
{
    const int32_t n_pairs = 16 / w_bits;
    int32_t s00 = 0, s01 = 0, s10 = 0, s11 = 0;
    uint32_t a[8], b[8];
    int32_t i = 0;
    const uint8_t *xc = (const uint8_t *)__builtin_assume_aligned(xb, 8);
#if defined(__ARM_FEATURE_DSP)
    if ((w_bits == 8 || w_bits == 4) && n_bytes >= 8) {
        const int32_t nw = (n_bytes / 4) & ~1;
        const uint8_t *pw0 = w0, *pw1 = w1, *end = w0 + 4 * nw;
        uint32_t a0, a1, b0, b1, x0, x1;
        if (w_bits == 8 && w_signed) {
            MPQ_DSP_2X2I_ASM("sxtb16");
        } else if (w_bits == 8) {
            MPQ_DSP_2X2I_ASM("uxtb16");
        } else if (w_signed) {
            MPQ_DSP_2X2I_ASM4(MPQ_DSP_XOR4_A, MPQ_DSP_XOR4_B);
        } else {
            MPQ_DSP_2X2I_ASM4("", "");
        }
        i = 4 * nw;
    }
#endif
#define MPQ_DSP_AT_I(ptr) mpq_dsp_ld32((ptr) + i)
#define MPQ_DSP_TAIL_I(ptr) mpq_dsp_ld_tail((ptr) + i, n_bytes - i)
#pragma GCC unroll 2
    for (; i + 4 <= n_bytes; i += 4) MPQ_DSP_2X2I_C(MPQ_DSP_AT_I);
    if (i < n_bytes) MPQ_DSP_2X2I_C(MPQ_DSP_TAIL_I);
#undef MPQ_DSP_AT_I
#undef MPQ_DSP_TAIL_I
    acc[0] = s00;
    acc[1] = s01;
    acc[2] = s10;
    acc[3] = s11;
    return 0;
}

/* acc[0] = x0.w0, acc[1] = x0.w1 (one column, two weight rows). */
MPQ_DSP_INLINE int32_t mpq_dsp_dot_1x2(const uint8_t *x0, const uint8_t *w0, const uint8_t *w1,
                                      int32_t n_bytes, int32_t w_bits, int32_t w_signed,
                                      int32_t *acc)
{
    const int32_t n_pairs = 16 / w_bits;
    int32_t s0 = 0, s1 = 0;
    uint32_t a[8], b[8];
    int32_t i = 0;
    x0 = (const uint8_t *)__builtin_assume_aligned(x0, 8);
#pragma GCC unroll 2
    for (; i + 4 <= n_bytes; i += 4) {
        MPQ_DSP_UNPACK(mpq_dsp_ld32(w0 + i), w_bits, w_signed, a);
        MPQ_DSP_UNPACK(mpq_dsp_ld32(w1 + i), w_bits, w_signed, b);
#pragma GCC unroll 8
        for (int32_t m = 0; m < n_pairs; ++m) {
            uint32_t p0 = mpq_dsp_ld32(x0 + 4 * m);
            s0 = mpq_dsp_smlad(p0, a[m], s0);
            s1 = mpq_dsp_smlad(p0, b[m], s1);
        }
        x0 += 4 * n_pairs;
    }
    if (i < n_bytes) {
        MPQ_DSP_UNPACK(mpq_dsp_ld_tail(w0 + i, n_bytes - i), w_bits, w_signed, a);
        MPQ_DSP_UNPACK(mpq_dsp_ld_tail(w1 + i, n_bytes - i), w_bits, w_signed, b);
#pragma GCC unroll 8
        for (int32_t m = 0; m < n_pairs; ++m) {
            uint32_t p0 = mpq_dsp_ld32(x0 + 4 * m);
            s0 = mpq_dsp_smlad(p0, a[m], s0);
            s1 = mpq_dsp_smlad(p0, b[m], s1);
        }
    }
    acc[0] = s0;
    acc[1] = s1;
    return 0;
}

/* The general block: acc[p * nc + j] = x_p . w_j for np im2col columns x_p = x + p * col_bytes
 * (8-byte aligned) and the nc weight rows of channels o .. o + nc - 1 (rows past cout - 1
 * repeat row cout - 1: their results are computed and not stored), n_bytes packed bytes a
 * row. np, nc (np * nc <= 8 accumulators), unroll (K words a loop step: 1 or 2) and the
 * bit widths are constants at every call, so gcc specializes the loops away: these are the
 * schedule knobs `pix`, `ch` and `unroll` of tvm_mpq.codegen.kernel_dsp. Each weight word
 * is unpacked once for all np columns. */
#define MPQ_DSP_DOT_STEP(WORD_AT)                                                       \
    do {                                                                                \
        _Pragma("GCC unroll 4")                                                         \
        for (int32_t j = 0; j < nc; ++j) {                                              \
            MPQ_DSP_UNPACK(WORD_AT(wr[j]), w_bits, w_signed, u[j]);                     \
        }                                                                               \
        _Pragma("GCC unroll 8")                                                         \
        for (int32_t m = 0; m < n_pairs; ++m) {                                         \
            _Pragma("GCC unroll 4")                                                     \
            for (int32_t p = 0; p < np; ++p) {                                          \
                const uint32_t xp = mpq_dsp_ld32(xc + p * col_bytes + 4 * m);            \
                _Pragma("GCC unroll 4")                                                 \
                for (int32_t j = 0; j < nc; ++j) s[p][j] = mpq_dsp_smlad(xp, u[j][m], s[p][j]); \
            }                                                                           \
        }                                                                               \
        xc += 4 * n_pairs;                                                              \
    } while (0)

#define MPQ_DSP_WORD(ptr) mpq_dsp_ld32((ptr) + i)
#define MPQ_DSP_TAIL(ptr) mpq_dsp_ld_tail((ptr) + i, n_bytes - i)

MPQ_DSP_INLINE int32_t mpq_dsp_dot(const uint8_t *x, int32_t col_bytes, int32_t np,
                                  const uint8_t *w, int32_t row_w, int32_t o, int32_t cout,
                                  int32_t nc, int32_t n_bytes, int32_t w_bits,
                                  int32_t w_signed, int32_t unroll, int32_t *acc)
{
    const int32_t n_pairs = 16 / w_bits;
    const uint8_t *wr[4];
    uint32_t u[4][8];
    int32_t s[4][4];
    const uint8_t *xc = (const uint8_t *)__builtin_assume_aligned(x, 8);
    int32_t i = 0;
    _Pragma("GCC unroll 4")
    for (int32_t j = 0; j < nc; ++j) wr[j] = w + (o + j < cout ? o + j : cout - 1) * row_w;
    _Pragma("GCC unroll 4")
    for (int32_t p = 0; p < np; ++p) {
        _Pragma("GCC unroll 4")
        for (int32_t j = 0; j < nc; ++j) s[p][j] = 0;
    }
    if (unroll == 2) {
        _Pragma("GCC unroll 2")
        for (; i + 4 <= n_bytes; i += 4) MPQ_DSP_DOT_STEP(MPQ_DSP_WORD);
    } else {
        _Pragma("GCC unroll 1")
        for (; i + 4 <= n_bytes; i += 4) MPQ_DSP_DOT_STEP(MPQ_DSP_WORD);
    }
    if (i < n_bytes) MPQ_DSP_DOT_STEP(MPQ_DSP_TAIL);
    _Pragma("GCC unroll 4")
    for (int32_t p = 0; p < np; ++p) {
        _Pragma("GCC unroll 4")
        for (int32_t j = 0; j < nc; ++j) acc[p * nc + j] = s[p][j];
    }
    return 0;
}

/* Element ch of a packed row, as int32 (signed: two's complement in its bits). */
static inline int32_t mpq_dsp_elem(const uint8_t *row, int32_t ch, int32_t bits, int32_t sgn)
{
    const int32_t per = 8 / bits;
    uint32_t v = ((uint32_t)row[ch / per] >> ((ch % per) * bits)) & ((1u << bits) - 1u);
    return sgn ? (int32_t)(v << (32 - bits)) >> (32 - bits) : (int32_t)v;
}

/* The im2col column of output pixel (oi, oj) (format above; n_slots int16 written, padding
 * taps and row padding slots 0). Returns sum(x - z_in) over the column.
 * ilv columns share the buffer `col`, interleaved by 4 slots (8 bytes): slot t of column q
 * sits at ((t / 4) * ilv + q) * 4 + t % 4 (ilv = 1: one plain column). The call for q = 0
 * clears the whole buffer, so columns are written in order q = 0, 1, ... */
#define MPQ_DSP_SLOT(t) ((((t) >> 2) * ilv + q) * 4 + ((t) & 3))
static inline int32_t mpq_dsp_im2col(uint8_t *col, const uint8_t *x, int32_t oi, int32_t oj,
                                     int32_t h, int32_t w, int32_t c, int32_t k,
                                     int32_t stride, int32_t pad, int32_t in_bits,
                                     int32_t in_signed, int32_t z_in, int32_t w_bits,
                                     int32_t n_slots, int32_t ilv, int32_t q)
{
    const int32_t row_in = (c * in_bits + 7) / 8;
    const int32_t per_w = 32 / w_bits, half = 16 / w_bits;
    const int32_t tap_slots = (c * w_bits + 7) / 8 * (8 / w_bits);
    int16_t *out = (int16_t *)(void *)col;
    int32_t sum = 0;
    /* word-at-a-time paths for 8-bit weights (slot order [x0, x2], [x1, x3] per 4
     * channels): 8-bit inputs 4 channels a word, 4-bit inputs 8 channels a word */
    const int32_t fast8 = in_bits == 8 && w_bits == 8 && c % 4 == 0;
    const int32_t fast4 = in_bits == 4 && w_bits == 8 && c % 8 == 0;
    if (q == 0) memset(col, 0, (size_t)n_slots * 2u * (size_t)ilv);
    for (int32_t kh = 0; kh < k; ++kh) {
        const int32_t ii = oi * stride - pad + kh;
        if (ii < 0 || ii >= h) continue;
        for (int32_t kw = 0; kw < k; ++kw) {
            const int32_t jj = oj * stride - pad + kw;
            if (jj < 0 || jj >= w) continue;
            const uint8_t *px = x + (ii * w + jj) * row_in;
            const int32_t base = (kh * k + kw) * tap_slots;
            if (fast4) {
                /* signed nibbles: (v ^ 8) - 8, so subtract z_in + 8 after one XOR */
                const int32_t zz = z_in + (in_signed ? 8 : 0);
                const uint32_t z2 = (uint32_t)(uint16_t)(int16_t)zz * 0x00010001u;
                for (int32_t ch = 0; ch < c; ch += 8) {
                    uint32_t X = mpq_dsp_ld32(px + ch / 2);
                    if (in_signed) X ^= 0x88888888u;
                    for (int32_t g = 0; g < 2; ++g) {
                        uint32_t t = (X >> (16 * g)) & 0xFFFFu, p0, p1;
                        t |= t << 8;
                        p0 = t & 0x000F000Fu;
                        p1 = (t >> 4) & 0x000F000Fu;
                        p0 = ((p0 & 0xFFFF0000u) - (z2 & 0xFFFF0000u))
                             | ((p0 - z2) & 0x0000FFFFu);
                        p1 = ((p1 & 0xFFFF0000u) - (z2 & 0xFFFF0000u))
                             | ((p1 - z2) & 0x0000FFFFu);
                        memcpy(out + MPQ_DSP_SLOT(base + ch + 4 * g), &p0, 4);
                        memcpy(out + MPQ_DSP_SLOT(base + ch + 4 * g) + 2, &p1, 4);
                    }
                }
                continue;
            }
            if (fast8) {
                /* 4 channels a word: pairs [x0, x2], [x1, x3] are the slot order */
                const uint32_t z2 = (uint32_t)(uint16_t)(int16_t)z_in * 0x00010001u;
                for (int32_t ch = 0; ch < c; ch += 4) {
                    uint32_t X = mpq_dsp_ld32(px + ch), p0, p1;
                    if (in_signed) {
                        p0 = mpq_dsp_sxtb16(X);
                        p1 = mpq_dsp_sxtb16_ror8(X);
                    } else {
                        p0 = mpq_dsp_uxtb16(X);
                        p1 = mpq_dsp_uxtb16_ror8(X);
                    }
                    /* lane-wise subtraction of z_in (no carries: both lanes stay int16) */
                    p0 = ((p0 & 0xFFFF0000u) - (z2 & 0xFFFF0000u))
                         | ((p0 - z2) & 0x0000FFFFu);
                    p1 = ((p1 & 0xFFFF0000u) - (z2 & 0xFFFF0000u))
                         | ((p1 - z2) & 0x0000FFFFu);
                    memcpy(out + MPQ_DSP_SLOT(base + ch), &p0, 4);
                    memcpy(out + MPQ_DSP_SLOT(base + ch) + 2, &p1, 4);
                }
                continue;
            }
            for (int32_t ch = 0; ch < c; ++ch) {
                const int32_t v = mpq_dsp_elem(px, ch, in_bits, in_signed) - z_in;
                const int32_t s = base + ch, e = s % per_w;
                sum += v;
                out[MPQ_DSP_SLOT(s - e + 2 * (e % half) + e / half)] = (int16_t)v;
            }
        }
    }
    if (fast8 || fast4) {
        for (int32_t s = 0; s < n_slots; ++s) sum += out[MPQ_DSP_SLOT(s)];
    }
    return sum;
}
#undef MPQ_DSP_SLOT

/* Depthwise, channels 4g .. 4g+3 (c_left = C - 4g of them exist). x~ = x + off, off =
 * 2^(in_bits-1) for signed 4-/2-bit inputs (unpacked with one XOR), else 0; zx = z_in + off.
 *
 * mpq_dsp_dw_prep fills wp[2 * t] = [w'(c0), w'(c2)], wp[2 * t + 1] = [w'(c1), w'(c3)]
 * for tap t, w' = w - w_zero (0 for missing channels), and wp[2 kk + j] = -zx * sum_t w'(cj).
 * mpq_dsp_dw then gives acc[j] = sum_t (x~_t - zx) w'_t(cj), a padding tap counting as
 * x~ = zx (contribution 0), i.e. exactly sum over the real taps of (x - z_in)(w - w_zero). */
static inline int32_t mpq_dsp_dw_prep(int32_t *wp, const uint8_t *w, const void *w_zero,
                                      int32_t g, int32_t c, int32_t kk, int32_t w_bits,
                                      int32_t w_signed, int32_t zx)
{
    const int32_t row_w = (c * w_bits + 7) / 8;
    int32_t sw[4] = {0, 0, 0, 0};
    for (int32_t t = 0; t < kk; ++t) {
        int32_t v[4];
        for (int32_t j = 0; j < 4; ++j) {
            const int32_t ch = 4 * g + j;
            if (ch < c) {
                const int32_t zw = w_signed ? ((const int8_t *)w_zero)[ch]
                                            : ((const uint8_t *)w_zero)[ch];
                v[j] = mpq_dsp_elem(w + t * row_w, ch, w_bits, w_signed) - zw;
            } else {
                v[j] = 0;
            }
            sw[j] += v[j];
        }
        wp[2 * t] = (int32_t)(((uint32_t)v[0] & 0xFFFFu) | ((uint32_t)v[2] << 16));
        wp[2 * t + 1] = (int32_t)(((uint32_t)v[1] & 0xFFFFu) | ((uint32_t)v[3] << 16));
    }
    for (int32_t j = 0; j < 4; ++j) wp[2 * kk + j] = -zx * sw[j];
    return 0;
}

/* 4 channels of one input pixel -> pairs [x~(c0), x~(c2)], [x~(c1), x~(c3)]. */
#define MPQ_DSP_DW_LOAD(px, c_left, in_bits, in_signed, pa, pb)                          \
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

MPQ_DSP_INLINE int32_t mpq_dsp_dw(int32_t *acc, const uint8_t *x, const int32_t *wp,
                                 int32_t oi, int32_t oj, int32_t g, int32_t h, int32_t w,
                                 int32_t c, int32_t k, int32_t stride, int32_t pad,
                                 int32_t in_bits, int32_t in_signed, int32_t zx)
{
    const int32_t row_in = (c * in_bits + 7) / 8;
    const int32_t c_left = c - 4 * g;
    const uint8_t *xg = x + (4 * g * in_bits) / 8;
    const uint32_t z2 = (uint32_t)(uint16_t)(int16_t)zx * 0x00010001u;
    const int32_t i0 = oi * stride - pad, j0 = oj * stride - pad;
    int32_t s0 = wp[2 * k * k], s1 = wp[2 * k * k + 1], s2 = wp[2 * k * k + 2],
            s3 = wp[2 * k * k + 3];
    if (i0 >= 0 && j0 >= 0 && i0 + k <= h && j0 + k <= w) {
#pragma GCC unroll 3
        for (int32_t kh = 0; kh < k; ++kh) {
#pragma GCC unroll 3
            for (int32_t kw = 0; kw < k; ++kw) {
                const uint8_t *px = xg + ((i0 + kh) * w + j0 + kw) * row_in;
                const int32_t t = kh * k + kw;
                uint32_t pa, pb;
                MPQ_DSP_DW_LOAD(px, c_left, in_bits, in_signed, pa, pb);
                s0 = mpq_dsp_smlabb(pa, (uint32_t)wp[2 * t], s0);
                s2 = mpq_dsp_smlatt(pa, (uint32_t)wp[2 * t], s2);
                s1 = mpq_dsp_smlabb(pb, (uint32_t)wp[2 * t + 1], s1);
                s3 = mpq_dsp_smlatt(pb, (uint32_t)wp[2 * t + 1], s3);
            }
        }
    } else {
        for (int32_t kh = 0; kh < k; ++kh) {
            for (int32_t kw = 0; kw < k; ++kw) {
                const int32_t ii = i0 + kh, jj = j0 + kw, t = kh * k + kw;
                uint32_t pa = z2, pb = z2;
                if (ii >= 0 && ii < h && jj >= 0 && jj < w) {
                    const uint8_t *px = xg + (ii * w + jj) * row_in;
                    MPQ_DSP_DW_LOAD(px, c_left, in_bits, in_signed, pa, pb);
                }
                s0 = mpq_dsp_smlabb(pa, (uint32_t)wp[2 * t], s0);
                s2 = mpq_dsp_smlatt(pa, (uint32_t)wp[2 * t], s2);
                s1 = mpq_dsp_smlabb(pb, (uint32_t)wp[2 * t + 1], s1);
                s3 = mpq_dsp_smlatt(pb, (uint32_t)wp[2 * t + 1], s3);
            }
        }
    }
    acc[0] = s0;
    acc[1] = s1;
    acc[2] = s2;
    acc[3] = s3;
    return 0;
}

/* Two output pixels (oi, oj0) and (oi, oj1) of one row (oj1 = oj0 + 1, or oj0 again for
 * an odd last column): acc[0..3] as mpq_dsp_dw for the first, acc[4..7] for the second.
 * Interior windows share each tap's weight pairs; at the borders it is two mpq_dsp_dw. */
MPQ_DSP_INLINE int32_t mpq_dsp_dw2(int32_t *acc, const uint8_t *x, const int32_t *wp,
                                  int32_t oi, int32_t oj0, int32_t oj1, int32_t g, int32_t h,
                                  int32_t w, int32_t c, int32_t k, int32_t stride, int32_t pad,
                                  int32_t in_bits, int32_t in_signed, int32_t zx)
{
    const int32_t row_in = (c * in_bits + 7) / 8;
    const int32_t c_left = c - 4 * g;
    const uint8_t *xg = x + (4 * g * in_bits) / 8;
    const int32_t i0 = oi * stride - pad, j0 = oj0 * stride - pad, j1 = oj1 * stride - pad;
    if (!(i0 >= 0 && j0 >= 0 && i0 + k <= h && j1 + k <= w)) {
        mpq_dsp_dw(acc, x, wp, oi, oj0, g, h, w, c, k, stride, pad, in_bits, in_signed, zx);
        return mpq_dsp_dw(acc + 4, x, wp, oi, oj1, g, h, w, c, k, stride, pad, in_bits,
                          in_signed, zx);
    }
    const int32_t dj = (j1 - j0) * row_in;
    int32_t s0 = wp[2 * k * k], s1 = wp[2 * k * k + 1], s2 = wp[2 * k * k + 2],
            s3 = wp[2 * k * k + 3];
    int32_t r0 = s0, r1 = s1, r2 = s2, r3 = s3;
#pragma GCC unroll 3
    for (int32_t kh = 0; kh < k; ++kh) {
#pragma GCC unroll 3
        for (int32_t kw = 0; kw < k; ++kw) {
            const uint8_t *px = xg + ((i0 + kh) * w + j0 + kw) * row_in;
            const int32_t t = kh * k + kw;
            const uint32_t wa = (uint32_t)wp[2 * t], wb = (uint32_t)wp[2 * t + 1];
            uint32_t pa, pb;
            MPQ_DSP_DW_LOAD(px, c_left, in_bits, in_signed, pa, pb);
            s0 = mpq_dsp_smlabb(pa, wa, s0);
            s2 = mpq_dsp_smlatt(pa, wa, s2);
            s1 = mpq_dsp_smlabb(pb, wb, s1);
            s3 = mpq_dsp_smlatt(pb, wb, s3);
            MPQ_DSP_DW_LOAD(px + dj, c_left, in_bits, in_signed, pa, pb);
            r0 = mpq_dsp_smlabb(pa, wa, r0);
            r2 = mpq_dsp_smlatt(pa, wa, r2);
            r1 = mpq_dsp_smlabb(pb, wb, r1);
            r3 = mpq_dsp_smlatt(pb, wb, r3);
        }
    }
    acc[0] = s0;
    acc[1] = s1;
    acc[2] = s2;
    acc[3] = s3;
    acc[4] = r0;
    acc[5] = r1;
    acc[6] = r2;
    acc[7] = r3;
    return 0;
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
