/* BlockQuantMatMul on aarch64 with the dot-product instructions (SDOT / UDOT, armv8.2-a+:
 * Cortex-A55/A76 and later, every phone core since ~2019). Compiled with its own target
 * attribute and chosen at run time (isa.c), so one build runs on cores with and without it.
 *
 * Exact, like the NEON and portable paths: each int16 activation code splits into a signed
 * high byte and an unsigned low byte, q = 256 hi + lo (USHR/XTN narrowing), so
 *   4-bit codes w in [0, 15]:  sum w q = 256 SDOT(w, hi) + UDOT(w, lo)
 *   8-bit codes c = w - 128:   sum c q = 256 SDOT(c, hi) + SDOT(c, lo - 128) + 128 SDOT(c, 1)
 * are the same int32 block sums, and the float scaling is dot_scalar's, in its order: the
 * outputs are bit-identical to the portable path's (a test). Four dot instructions a 4-bit
 * block (16 byte products each) instead of eight widening multiply-accumulates.
 */
#include "../../qmatmul.h"
#include "../../shared_math.h"

#if defined(__aarch64__)
#include <arm_neon.h>

#if defined(__clang__)
#define DOTPROD __attribute__((target("dotprod")))
#else
#define DOTPROD __attribute__((target("arch=armv8.2-a+dotprod")))
#endif

/* The high (signed) and low (unsigned) bytes of 16 int16 activation codes. */
DOTPROD static inline void split16(int16x8_t a, int16x8_t b, int8x16_t* hi, uint8x16_t* lo) {
    *hi = vcombine_s8(vshrn_n_s16(a, 8), vshrn_n_s16(b, 8));
    *lo = vcombine_u8(vmovn_u16(vreinterpretq_u16_s16(a)), vmovn_u16(vreinterpretq_u16_s16(b)));
}

DOTPROD __attribute__((always_inline)) static inline void rows_dotprod(const Task* t, int64_t n, int64_t r, int R) {
    const int64_t nb = t->kern->k / QBLOCK, nrows = t->kern->n;
    const int bits = (int)t->kern->bits, bytes = bits == 4 ? QBLOCK / 2 : QBLOCK;
    const int16_t* qa = t->qa + r * nb * QBLOCK;
    const int32_t* qz = t->qz + r * nb * 8;
    const float* da = t->da + r * nb;
    const float* sa = t->sa + r * nb;
    const uint8x16_t m4 = vdupq_n_u8(15), flip = vdupq_n_u8(128);
    const int8x16_t ones = vdupq_n_s8(1);
    float acc[4] = {0.0f, 0.0f, 0.0f, 0.0f};
    for (int64_t b = 0; b < nb; b++) {
        const int16_t* q = qa + b * QBLOCK;
        int8x16_t hi0, hi1;
        uint8x16_t lo0, lo1;
        split16(vld1q_s16(q), vld1q_s16(q + 8), &hi0, &lo0);
        split16(vld1q_s16(q + 16), vld1q_s16(q + 24), &hi1, &lo1);
        const int8x16_t lc0 = vreinterpretq_s8_u8(veorq_u8(lo0, flip)), lc1 = vreinterpretq_s8_u8(veorq_u8(lo1, flip));
        for (int i = 0; i < R; i++) {
            const uint8_t* wb = t->codes + ((n + i) * nb + b) * bytes;
            int32_t s;
            if (bits == 4) {
                const uint8x16_t w = vld1q_u8(wb);
                const uint8x16_t wl = vandq_u8(w, m4), wh = vshrq_n_u8(w, 4);
                int32x4_t h = vdotq_s32(vdupq_n_s32(0), vreinterpretq_s8_u8(wl), hi0);
                h = vdotq_s32(h, vreinterpretq_s8_u8(wh), hi1);
                uint32x4_t l = vdotq_u32(vdupq_n_u32(0), wl, lo0);
                l = vdotq_u32(l, wh, lo1);
                s = 256 * vaddvq_s32(h) + (int32_t)vaddvq_u32(l);
            } else {
                const int8x16_t c0 = vreinterpretq_s8_u8(veorq_u8(vld1q_u8(wb), flip));
                const int8x16_t c1 = vreinterpretq_s8_u8(veorq_u8(vld1q_u8(wb + 16), flip));
                int32x4_t h = vdotq_s32(vdotq_s32(vdupq_n_s32(0), c0, hi0), c1, hi1);
                int32x4_t l = vdotq_s32(vdotq_s32(vdupq_n_s32(0), c0, lc0), c1, lc1);
                int32x4_t u = vdotq_s32(vdotq_s32(vdupq_n_s32(0), c0, ones), c1, ones);
                s = 256 * vaddvq_s32(h) + vaddvq_s32(l) + 128 * vaddvq_s32(u);
            }
            s += qz[b * 8];
            acc[i] += (float)s * (half_to_float(t->scales[(n + i) * nb + b]) * da[b]);
            if (t->mins) acc[i] += half_to_float(t->mins[((n + i) >> 2) * nb * 4 + b * 4 + ((n + i) & 3)]) * sa[b];
        }
    }
    for (int i = 0; i < R; i++) t->y[r * nrows + n + i] = acc[i];
}

DOTPROD void edgelm_qmm_rows_dotprod(const Task* t, int64_t n0, int64_t n1) {
    int64_t n = n0;
    for (; n + 4 <= n1; n += 4)
        for (int64_t r = 0; r < t->m; r++) rows_dotprod(t, n, r, 4);
    for (; n < n1; n++)
        for (int64_t r = 0; r < t->m; r++) rows_dotprod(t, n, r, 1);
}

#else
typedef int edgelm_no_arm_dotprod_kernels; /* an empty translation unit is not ISO C */
#endif
