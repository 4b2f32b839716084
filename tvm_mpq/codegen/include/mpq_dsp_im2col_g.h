/* mpq_dsp_im2col_g.h: the im2col column of a conv of any geometry (kernel kh_n x kw_n,
 * strides sh, sw, pads top pt / left pl; the bottom and right pads are taps outside the
 * image, skipped like the others). mpq_dsp_im2col (mpq_dsp_gemm.h) with the square
 * kernel, stride and pad split per axis: the same column format, slot order and sum.
 * Only the kernels of such convs include it (after mpq_dsp.h), so the C of square,
 * symmetric convs keeps its bytes. */
#define MPQ_DSP_SLOT(t) ((((t) >> 2) * ilv + q) * 4 + ((t) & 3))
static inline int32_t mpq_dsp_im2col_g(uint8_t *col, const uint8_t *x, int32_t oi,
                                       int32_t oj, int32_t h, int32_t w, int32_t c,
                                       int32_t kh_n, int32_t kw_n, int32_t sh, int32_t sw,
                                       int32_t pt, int32_t pl, int32_t in_bits,
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
    for (int32_t kh = 0; kh < kh_n; ++kh) {
        const int32_t ii = oi * sh - pt + kh;
        if (ii < 0 || ii >= h) continue;
        for (int32_t kw = 0; kw < kw_n; ++kw) {
            const int32_t jj = oj * sw - pl + kw;
            if (jj < 0 || jj >= w) continue;
            const uint8_t *px = x + (ii * w + jj) * row_in;
            const int32_t base = (kh * kw_n + kw) * tap_slots;
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
