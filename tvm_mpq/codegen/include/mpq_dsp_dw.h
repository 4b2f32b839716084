/* mpq_dsp_dw.h: the depthwise micro-kernels: the row kernel for 3x3 windows (mpq_dsp_dwr,
 * its row in generated assembly on the M7: codegen/asm_m7.py) and the per-pixel kernel
 * (4 channels a block, SMLABB/SMLATT) for the others.
 * Follows mpq_dsp.h in the C of every fast depthwise kernel (tvm_mpq.codegen.kernels). */

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
                MPQ_DSP_LOAD4(px, c_left, in_bits, in_signed, pa, pb);
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
                    MPQ_DSP_LOAD4(px, c_left, in_bits, in_signed, pa, pb);
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
            MPQ_DSP_LOAD4(px, c_left, in_bits, in_signed, pa, pb);
            s0 = mpq_dsp_smlabb(pa, wa, s0);
            s2 = mpq_dsp_smlatt(pa, wa, s2);
            s1 = mpq_dsp_smlabb(pb, wb, s1);
            s3 = mpq_dsp_smlatt(pb, wb, s3);
            MPQ_DSP_LOAD4(px + dj, c_left, in_bits, in_signed, pa, pb);
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


/* ---- Row depthwise, 3 x 3, stride 1 or 2 (the default where it applies) ----------------
 * A block of G channels (G % 4 == 0) at a time. The input rows an output row needs are
 * widened once into a ring of 3 rows (scratch, channel-major): ring[j][slot][p] is the
 * pair [x~(c, u = 2p), x~(c, u = 2p + 1)] of channel c = g0 + j at padded column u
 * (input column u - pad; padding and rows outside the image hold zx, contributing 0).
 * With per-row weight pairs W01 = [w'0, w'1], W12 = [w'1, w'2] (w' = w - w_zero), two
 * outputs of stride 1 take, per kernel row, the pairs P01, P23 (one LDRD):
 *     out(u)     = SMLAD(W01, P01) + w'2 x~(u + 2)   (SMLATB(W12, P23))
 *     out(u + 1) = w'0 x~(u + 1) (SMLABT(W01, P01)) + SMLAD(W12, P23)
 * i.e. 6 MAC instructions for 6 MACs; stride 2: out(u/2) = SMLAD(W01, P01) +
 * SMLATB(W12, P23). The accumulator starts at bias - zx * sum(w'); the row micro-kernel
 * requantizes and stores each output itself. */

/* Pairs a ring row holds: stride 1 reads pairs 0 .. ceil(wo / 2), stride 2 0 .. wo. */
#define MPQ_DSP_DWR_PAIRS(wo, stride) ((stride) == 1 ? ((wo) + 1) / 2 + 1 : (wo) + 1)
/* Words of one channel's entry in the table of mpq_dsp_dwr_prep. */
#define MPQ_DSP_DWR_TAB 11

/* Per channel j of the block, tab[11 j ..]: W01, W12 of kernel rows 0, 1, 2; the
 * accumulator's start -zx * sum(w') (+ bias without acc_shift); then for the assembly row
 * (MPQ_DSP_DWR_ASM) m0, R = 2^k + z_out 2^(k+1) and k + 1 (k = -2 - n0), with which
 * requantization is (hi32(acc * m0) + R) >> (k + 1) (SMMLA, ASR): the same as
 * mpq_dsp_requant_noties_hi (R = 0, k + 1 = 0 marks a channel whose R does not fit: the
 * block takes the C row); last B = (start << acc_shift) + bias with acc_shift (else 0),
 * which the assembly adds to the shifted sum of products. */
static inline int32_t mpq_dsp_dwr_prep(int32_t *tab, const uint8_t *w, const void *w_zero,
                                       const int32_t *bias, const int32_t *m0,
                                       const int8_t *n0, int32_t g0, int32_t G, int32_t c,
                                       int32_t w_bits, int32_t w_signed, int32_t zx,
                                       int32_t acc_shift, int32_t z_out)
{
    const int32_t row_w = (c * w_bits + 7) / 8;
    for (int32_t j = 0; j < G; ++j) {
        const int32_t ch = g0 + j;
        int32_t *t = tab + MPQ_DSP_DWR_TAB * j;
        int32_t v[9], sum = 0;
        for (int32_t i = 0; i < 9; ++i) {
            if (ch < c) {
                const int32_t zw = w_signed ? ((const int8_t *)w_zero)[ch]
                                            : ((const uint8_t *)w_zero)[ch];
                v[i] = mpq_dsp_elem(w + i * row_w, ch, w_bits, w_signed) - zw;
            } else {
                v[i] = 0;
            }
            sum += v[i];
        }
        for (int32_t kh = 0; kh < 3; ++kh) {
            t[2 * kh] = (int32_t)mpq_dsp_pack_lo((uint32_t)v[3 * kh], (uint32_t)v[3 * kh + 1]);
            t[2 * kh + 1] = (int32_t)mpq_dsp_pack_lo((uint32_t)v[3 * kh + 1],
                                                    (uint32_t)v[3 * kh + 2]);
        }
        t[6] = -zx * sum + (acc_shift || ch >= c ? 0 : bias[ch]);
        t[7] = ch < c ? m0[ch] : 0;
        t[8] = t[9] = 0;
        /* with acc_shift: B = (start << acc_shift) + bias, added to the shifted sum */
        t[10] = acc_shift && ch < c
                    ? (int32_t)(((uint32_t)t[6] << acc_shift) + (uint32_t)bias[ch]) : 0;
        if (ch < c) {
            const int32_t k = -2 - n0[ch];
            const int64_t r = ((int64_t)1 << k) + (int64_t)z_out * ((int64_t)2 << k);
            if (k >= 0 && k < 30 && r < ((int64_t)1 << 30) && r > -((int64_t)1 << 30)) {
                t[8] = (int32_t)r;
                t[9] = k + 1;
            }
        }
    }
    return 0;
}

/* One ring pair of 4 channels from input columns j0, j0 + 1 (either may be padding). */
#define MPQ_DSP_DWR_PAIR4(d, p, cs, xq, j0, c_left, interior)                            \
    do {                                                                                \
        uint32_t a0_ = z2, b0_ = z2, a1_ = z2, b1_ = z2;                                \
        if ((interior) || ((j0) >= 0 && (j0) < w))                                      \
            MPQ_DSP_LOAD4((xq) + (j0) * row_in, c_left, in_bits, in_signed, a0_, b0_); \
        if ((interior) || ((j0) + 1 >= 0 && (j0) + 1 < w))                              \
            MPQ_DSP_LOAD4((xq) + ((j0) + 1) * row_in, c_left, in_bits, in_signed, a1_, \
                            b1_);                                                       \
        (d)[p] = mpq_dsp_pack_lo(a0_, a1_);                                             \
        (d)[(cs) + (p)] = mpq_dsp_pack_lo(b0_, b1_);                                    \
        (d)[2 * (cs) + (p)] = mpq_dsp_pack_hi(a0_, a1_);                                \
        (d)[3 * (cs) + (p)] = mpq_dsp_pack_hi(b0_, b1_);                                \
    } while (0)

/* Input row r (any integer) of channels g0 .. g0 + G - 1 -> ring rows dst[j * 3 np ..]. */
MPQ_DSP_INLINE void mpq_dsp_dwr_load(uint32_t *dst, const uint8_t *x, int32_t r, int32_t g0,
                                     int32_t G, int32_t h, int32_t w, int32_t c, int32_t pad,
                                     int32_t np, int32_t in_bits, int32_t in_signed,
                                     int32_t zx)
{
    const uint32_t z2 = (uint32_t)(uint16_t)(int16_t)zx * 0x00010001u;
    const int32_t cs = 3 * np;          /* words from one channel's rows to the next's */
    if (r < 0 || r >= h) {
        for (int32_t j = 0; j < G; ++j)
            for (int32_t p = 0; p < np; ++p) dst[j * cs + p] = z2;
        return;
    }
    const int32_t row_in = (c * in_bits + 7) / 8;
    const uint8_t *xr = x + r * w * row_in + (g0 * in_bits) / 8;
    /* pairs with both columns inside the image: p_lo .. p_hi - 1 */
    const int32_t p_lo = (pad + 1) / 2;
    const int32_t p_hi = (w + pad) / 2 < np ? (w + pad) / 2 : np;
    for (int32_t q = 0; q < G; q += 4) {
        const int32_t c_left = c - g0 - q;
        const uint8_t *xq = xr + (q * in_bits) / 8;
        uint32_t *d = dst + q * cs;
        for (int32_t p = 0; p < p_lo; ++p)
            MPQ_DSP_DWR_PAIR4(d, p, cs, xq, 2 * p - pad, c_left, 0);
        if (c_left >= 4 && in_bits == 8) {
            /* 8-bit: the halves of two pixels' words packed first (PKHBT/PKHTB), then each
             * widened twice: [c0, c1 | c0', c1'] -> [c0, c0'], [c1, c1'] */
            for (int32_t p = p_lo; p < p_hi; ++p) {
                const uint8_t *px = xq + (2 * p - pad) * row_in;
                const uint32_t X0 = mpq_dsp_ld32(px), X1 = mpq_dsp_ld32(px + row_in);
                const uint32_t Y = mpq_dsp_pack_lo(X0, X1), Z = mpq_dsp_pack_hi(X0, X1);
                if (in_signed) {
                    d[p] = mpq_dsp_sxtb16(Y);
                    d[cs + p] = mpq_dsp_sxtb16_ror8(Y);
                    d[2 * cs + p] = mpq_dsp_sxtb16(Z);
                    d[3 * cs + p] = mpq_dsp_sxtb16_ror8(Z);
                } else {
                    d[p] = mpq_dsp_uxtb16(Y);
                    d[cs + p] = mpq_dsp_uxtb16_ror8(Y);
                    d[2 * cs + p] = mpq_dsp_uxtb16(Z);
                    d[3 * cs + p] = mpq_dsp_uxtb16_ror8(Z);
                }
            }
        } else if (c_left >= 4) {   /* 4 whole channels: no tail loads; 2 pairs a step */
            int32_t p = p_lo;
            for (; p + 1 < p_hi; p += 2) {
                MPQ_DSP_DWR_PAIR4(d, p, cs, xq, 2 * p - pad, 4, 1);
                MPQ_DSP_DWR_PAIR4(d, p + 1, cs, xq, 2 * p + 2 - pad, 4, 1);
            }
            if (p < p_hi) MPQ_DSP_DWR_PAIR4(d, p, cs, xq, 2 * p - pad, 4, 1);
        } else {
            for (int32_t p = p_lo; p < p_hi; ++p)
                MPQ_DSP_DWR_PAIR4(d, p, cs, xq, 2 * p - pad, c_left, 1);
        }
        for (int32_t p = p_hi; p < np; ++p)
            MPQ_DSP_DWR_PAIR4(d, p, cs, xq, 2 * p - pad, c_left, 0);
    }
}

/* One requantized output into its packed slot at yp (the channel's byte). */
#define MPQ_DSP_DWR_STORE(yp, acc)                                                      \
    do {                                                                                \
        int32_t v_ = (acc);                                                             \
        if (acc_shift) v_ = (int32_t)((uint32_t)v_ << acc_shift) + bs;                  \
        const int32_t q_ = mpq_dsp_requant_any(v_, mm, nn, z_out, q_min, q_max, ties,   \
                                               shift_hi);                              \
        if (out_bits == 8) {                                                            \
            *(yp) = (uint8_t)q_;                                                        \
        } else if (first) {                                                             \
            *(yp) = (uint8_t)(q_ & qmask);                                              \
        } else {                                                                        \
            *(yp) = (uint8_t)(*(yp) | ((q_ & qmask) << qs));                            \
        }                                                                               \
    } while (0)

/* Output row i of channels g0 .. g0 + G - 1: widens the input rows it needs that the ring
 * does not hold yet (all 3 at i = 0, else the `stride` new ones), then per channel runs
 * along the row two outputs a step, requantizes and stores. */
MPQ_DSP_INLINE int32_t mpq_dsp_dwr(uint8_t *y, const uint8_t *x, uint8_t *scratch,
                                   const int32_t *tab, const int32_t *bias, const int32_t *m0,
                                   const int8_t *n0, int32_t i, int32_t g0, int32_t G,
                                   int32_t h, int32_t w, int32_t c, int32_t wo,
                                   int32_t stride, int32_t pad, int32_t in_bits,
                                   int32_t in_signed, int32_t zx, int32_t out_bits,
                                   int32_t acc_shift, int32_t z_out, int32_t q_min,
                                   int32_t q_max, int32_t ties, int32_t shift_hi)
{
    uint32_t *ring = (uint32_t *)__builtin_assume_aligned(scratch, 8);
    const int32_t np = MPQ_DSP_DWR_PAIRS(wo, stride);
    const int32_t r0 = i * stride - pad;
    for (int32_t kh = (i == 0 ? 0 : 3 - stride); kh < 3; ++kh) {
        const int32_t r = r0 + kh;
        mpq_dsp_dwr_load(ring + ((r + 3 * pad + 3) % 3) * np, x, r, g0, G, h, w, c, pad, np,
                         in_bits, in_signed, zx);
    }
    const int32_t o0 = ((r0 + 3 * pad + 3) % 3) * np, o1 = ((r0 + 3 * pad + 4) % 3) * np,
                  o2 = ((r0 + 3 * pad + 5) % 3) * np;
    const int32_t row_y = (c * out_bits + 7) / 8;
    const int32_t per = 8 / out_bits, qmask = (1 << out_bits) - 1;
    const int32_t n_ch = c - g0 < G ? c - g0 : G;
#if defined(MPQ_DSP_DWR_ASM)
    {   /* the assembly row, when every channel's R fits (mpq_dsp_dwr_prep) */
        int32_t fit = 1;
        for (int32_t j = 0; j < n_ch; ++j) fit &= tab[MPQ_DSP_DWR_TAB * j + 9] != 0;
        if (fit) {
            MPQ_DSP_DWR_ASM(ring, o0 / np, tab, y + i * wo * row_y + (g0 * out_bits) / 8,
                            n_ch);
            return 0;
        }
    }
#endif
    for (int32_t j = 0; j < n_ch; ++j) {
        const int32_t ch = g0 + j;
        const int32_t *t6 = tab + MPQ_DSP_DWR_TAB * j;
        const uint32_t a0 = (uint32_t)t6[0], b0 = (uint32_t)t6[1];
        const uint32_t a1 = (uint32_t)t6[2], b1 = (uint32_t)t6[3];
        const uint32_t a2 = (uint32_t)t6[4], b2 = (uint32_t)t6[5];
        const int32_t init = t6[6];
        const int32_t bs = acc_shift ? bias[ch] : 0, mm = m0[ch], nn = n0[ch];
        const int32_t qs = (ch % per) * out_bits, first = qs == 0;
        uint8_t *yp = y + i * wo * row_y + (ch * out_bits) / 8;
        const uint32_t *p0 = ring + 3 * np * j + o0, *p1 = ring + 3 * np * j + o1,
                       *p2 = ring + 3 * np * j + o2;
        int32_t n = wo;
        if (stride == 1) {
            for (; n >= 2; n -= 2) {
                int32_t s = init, t = init;
                s = mpq_dsp_smlad(a0, p0[0], s);
                t = mpq_dsp_smlabt(a0, p0[0], t);
                s = mpq_dsp_smlatb(b0, p0[1], s);
                t = mpq_dsp_smlad(b0, p0[1], t);
                s = mpq_dsp_smlad(a1, p1[0], s);
                t = mpq_dsp_smlabt(a1, p1[0], t);
                s = mpq_dsp_smlatb(b1, p1[1], s);
                t = mpq_dsp_smlad(b1, p1[1], t);
                s = mpq_dsp_smlad(a2, p2[0], s);
                t = mpq_dsp_smlabt(a2, p2[0], t);
                s = mpq_dsp_smlatb(b2, p2[1], s);
                t = mpq_dsp_smlad(b2, p2[1], t);
                ++p0;
                ++p1;
                ++p2;
                MPQ_DSP_DWR_STORE(yp, s);
                yp += row_y;
                MPQ_DSP_DWR_STORE(yp, t);
                yp += row_y;
            }
        }
        /* stride 2: every output; stride 1: the odd last one (pair p and the next's low) */
        for (; n > 0; --n) {
            int32_t s = init;
            s = mpq_dsp_smlad(a0, p0[0], s);
            s = mpq_dsp_smlatb(b0, p0[1], s);
            s = mpq_dsp_smlad(a1, p1[0], s);
            s = mpq_dsp_smlatb(b1, p1[1], s);
            s = mpq_dsp_smlad(a2, p2[0], s);
            s = mpq_dsp_smlatb(b2, p2[1], s);
            ++p0;
            ++p1;
            ++p2;
            MPQ_DSP_DWR_STORE(yp, s);
            yp += row_y;
        }
    }
    return 0;
}
