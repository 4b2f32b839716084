/* mpq_dsp_dw.h: the depthwise micro-kernels (4 channels a block, SMLABB/SMLATT).
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

