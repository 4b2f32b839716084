/* mpq_dsp_gemm.h: the conv / pointwise / linear micro-kernels (im2col, dot products).
 * Follows mpq_dsp.h in the C of every fast GEMM kernel (tvm_mpq.codegen.kernels). */

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

/* Operands of both assembly loops (pointers early-clobber: `end` must not share a
 * register with w1 even when they are equal on entry). */
#define MPQ_DSP_2X2I_OPERANDS                                                           \
    : [s00] "+r"(s00), [s01] "+r"(s01), [s10] "+r"(s10), [s11] "+r"(s11),               \
      [a0] "=&r"(a0), [a1] "=&r"(a1), [b0] "=&r"(b0), [b1] "=&r"(b1),                   \
      [x0] "=&r"(x0), [x1] "=&r"(x1), [w0] "+&r"(pw0), [w1] "+&r"(pw1), [px] "+&r"(xc)   \
    : [end] "r"(end)                                                                    \
    : "cc", "memory"

#define MPQ_DSP_2X2I_ASM(EXT)                                                           \
    __asm__ volatile("1:\n\t" MPQ_DSP_2X2I_STEP(EXT) MPQ_DSP_2X2I_STEP(EXT)             \
                     "cmp    %[w0], %[end]\n\t"                                         \
                     "bne    1b\n\t"                                                    \
                     MPQ_DSP_2X2I_OPERANDS)

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
                     MPQ_DSP_2X2I_OPERANDS)

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
    /* word-at-a-time path when every tap fills whole weight words (c % (32 / w_bits) == 0,
     * c % 4 == 0): per 4 channels MPQ_DSP_LOAD4 gives the lane pairs [x0, x2], [x1, x3]
     * (any input width; x + 2^(b-1) for signed sub-byte inputs), which are already the slot
     * order of 8-bit weights; for 4- and 2-bit weights (pair m = [x_m, x_(m + half)]) the
     * pairs of chunks j and j + half / 4 are recombined with PKHBT/PKHTB. */
    const int32_t per_word = 32 / w_bits;
    const int32_t fast = c % 4 == 0 && c % per_word == 0;
    const int32_t zz = z_in + (in_signed && in_bits < 8 ? 1 << (in_bits - 1) : 0);
    const uint32_t z2 = (uint32_t)(uint16_t)(int16_t)zz * 0x00010001u;
    if (q == 0) memset(col, 0, (size_t)n_slots * 2u * (size_t)ilv);
    for (int32_t kh = 0; kh < k; ++kh) {
        const int32_t ii = oi * stride - pad + kh;
        if (ii < 0 || ii >= h) continue;
        for (int32_t kw = 0; kw < k; ++kw) {
            const int32_t jj = oj * stride - pad + kw;
            if (jj < 0 || jj >= w) continue;
            const uint8_t *px = x + (ii * w + jj) * row_in;
            const int32_t base = (kh * k + kw) * tap_slots;
            if (fast) {
                for (int32_t ch = 0; ch < c; ch += per_word) {
                    const uint8_t *pc = px + (ch * in_bits) / 8;
                    const int32_t cb = (4 * in_bits) / 8;         /* bytes of 4 channels */
                    uint32_t e[4], o[4], pr[8];
                    _Pragma("GCC unroll 4")
                    for (int32_t j = 0; j < per_word / 4; ++j)
                        MPQ_DSP_LOAD4(pc + j * cb, 4, in_bits, in_signed, e[j], o[j]);
                    if (w_bits == 8) {
                        pr[0] = e[0];
                        pr[1] = o[0];
                    } else {
                        const int32_t hj = per_word / 8;          /* chunk of x_(m + half) */
                        _Pragma("GCC unroll 2")
                        for (int32_t j = 0; j < hj; ++j) {
                            pr[4 * j] = mpq_dsp_pack_lo(e[j], e[j + hj]);
                            pr[4 * j + 1] = mpq_dsp_pack_lo(o[j], o[j + hj]);
                            pr[4 * j + 2] = mpq_dsp_pack_hi(e[j], e[j + hj]);
                            pr[4 * j + 3] = mpq_dsp_pack_hi(o[j], o[j + hj]);
                        }
                    }
                    _Pragma("GCC unroll 8")
                    for (int32_t m = 0; m < per_word / 2; ++m) {
                        const uint32_t v = mpq_dsp_sub16(pr[m], z2);
                        memcpy(out + MPQ_DSP_SLOT(base + ch + 2 * m), &v, 4);
                    }
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
    if (fast) {
        for (int32_t s = 0; s < n_slots; ++s) sum += out[MPQ_DSP_SLOT(s)];
    }
    return sum;
}
#undef MPQ_DSP_SLOT

/* np columns x 1 weight row (the `ch = 1` schedules): acc[q] = x_q . w for np <= 8 im2col
 * columns interleaved by 8 bytes (im2col with ilv = np: group g of weight word i of column
 * q at ((i * G + g) * np + q) * 8 bytes, G = 8 / w_bits groups of 4 slots a word). Each
 * weight word is loaded and unpacked once for all np columns: with 8 columns, 27
 * instructions per 32 MACs for 8-bit weights. On the M7 the layer's generated assembly
 * (asm_m7.gemm_asm, MPQ_DSP_DOT_ASM) does it all; this C is the host's twin. */
MPQ_DSP_INLINE int32_t mpq_dsp_dot_px1i(const uint8_t *xb, const uint8_t *w, int32_t n_bytes,
                                       int32_t np, int32_t w_bits, int32_t w_signed,
                                       int32_t *acc)
{
    const uint8_t *xc = (const uint8_t *)__builtin_assume_aligned(xb, 8);
#if defined(MPQ_DSP_DOT_ASM)
    /* every word, the partial last one read whole (pack_params pads the weights; its
     * extra slots are 0 in the columns): the sums go straight to acc */
    (void)n_bytes, (void)np, (void)w_bits, (void)w_signed;
    MPQ_DSP_DOT_ASM(xc, w, acc);
    return 0;
#else
    const int32_t groups = 8 / w_bits;
    int32_t s[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    uint32_t u[8];
    for (int32_t i = 0; i < n_bytes; i += 4) {
        const uint32_t word = i + 4 <= n_bytes ? mpq_dsp_ld32(w + i)
                                               : mpq_dsp_ld_tail(w + i, n_bytes - i);
        MPQ_DSP_UNPACK(word, w_bits, w_signed, u);
        _Pragma("GCC unroll 4")
        for (int32_t g = 0; g < groups; ++g) {
            _Pragma("GCC unroll 8")
            for (int32_t q = 0; q < np; ++q) {
                uint32_t p0, p1;
                mpq_dsp_ld2(xc + 8 * q, &p0, &p1);
                s[q] = mpq_dsp_smlad(p1, u[2 * g + 1], mpq_dsp_smlad(p0, u[2 * g], s[q]));
            }
            xc += 8 * np;
        }
    }
    _Pragma("GCC unroll 8")
    for (int32_t q = 0; q < np; ++q) acc[q] = s[q];
    return 0;
#endif
}
