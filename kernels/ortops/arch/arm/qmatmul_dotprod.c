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
 * block (16 byte products each) instead of eight widening multiply-accumulates. The split
 * is made once per call, in place (edgelm_arrange_dotprod), before the rows run.
 */
#include "../../qmatmul.h"
#include "../../shared_math.h"

#if defined(__aarch64__)
#include <arm_neon.h>

#include "qmatmul_arm.h"

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

/* The activation codes of the call, split in place before any row reads them: each block's
 * 32 int16 codes (64 bytes) become [high bytes 0-15 | low bytes 0-15 | high 16-31 | low
 * 16-31], the same 64 bytes, so a block's activations are four loads for every row group. */
DOTPROD static void split_activations(int16_t* qa, int64_t blocks) {
    for (int64_t b = 0; b < blocks; b++) {
        int16_t* q = qa + b * QBLOCK;
        int8x16_t hi0, hi1;
        uint8x16_t lo0, lo1;
        split16(vld1q_s16(q), vld1q_s16(q + 8), &hi0, &lo0);
        split16(vld1q_s16(q + 16), vld1q_s16(q + 24), &hi1, &lo1);
        uint8_t* out = (uint8_t*)q;
        vst1q_s8((int8_t*)out, hi0);
        vst1q_u8(out + 16, lo0);
        vst1q_s8((int8_t*)(out + 32), hi1);
        vst1q_u8(out + 48, lo1);
    }
}

/* One block's split activations (see above). */
typedef struct {
    int8x16_t hi0, hi1;
    uint8x16_t lo0, lo1;
} Split;

DOTPROD static inline Split load_split(const int16_t* q) {
    const uint8_t* p = (const uint8_t*)q;
    Split a = {vld1q_s8((const int8_t*)p), vld1q_s8((const int8_t*)(p + 32)), vld1q_u8(p + 16), vld1q_u8(p + 48)};
    return a;
}

/* Row sums of one 4-bit block (16 bytes of codes), in four int32 lanes: 256 SDOT(w, hi) + UDOT(w, lo). */
DOTPROD static inline int32x4_t sums_q4(const uint8_t* wb, const Split* a) {
    const uint8x16_t w = vld1q_u8(wb);
    const uint8x16_t wl = vandq_u8(w, vdupq_n_u8(15)), wh = vshrq_n_u8(w, 4);
    int32x4_t h = vdotq_s32(vdupq_n_s32(0), vreinterpretq_s8_u8(wl), a->hi0);
    h = vdotq_s32(h, vreinterpretq_s8_u8(wh), a->hi1);
    uint32x4_t l = vdotq_u32(vdupq_n_u32(0), wl, a->lo0);
    l = vdotq_u32(l, wh, a->lo1);
    return vmlaq_n_s32(vreinterpretq_s32_u32(l), h, 256);
}

/* The same for an 8-bit block (32 bytes, centred c = w - 128): 256 SDOT(c, hi) + SDOT(c, lo - 128) + 128 SDOT(c, 1). */
DOTPROD static inline int32x4_t sums_q8(const uint8_t* wb, const Split* a) {
    const uint8x16_t flip = vdupq_n_u8(128);
    const int8x16_t c0 = vreinterpretq_s8_u8(veorq_u8(vld1q_u8(wb), flip));
    const int8x16_t c1 = vreinterpretq_s8_u8(veorq_u8(vld1q_u8(wb + 16), flip));
    const int8x16_t lc0 = vreinterpretq_s8_u8(veorq_u8(a->lo0, flip)), lc1 = vreinterpretq_s8_u8(veorq_u8(a->lo1, flip));
    const int8x16_t ones = vdupq_n_s8(1);
    const int32x4_t h = vdotq_s32(vdotq_s32(vdupq_n_s32(0), c0, a->hi0), c1, a->hi1);
    const int32x4_t l = vdotq_s32(vdotq_s32(vdupq_n_s32(0), c0, lc0), c1, lc1);
    const int32x4_t u = vdotq_s32(vdotq_s32(vdupq_n_s32(0), c0, ones), c1, ones);
    return vmlaq_n_s32(vmlaq_n_s32(l, h, 256), u, 128);
}

/* Rows n .. n + 3 against activation row r, for codes of BYTES a block and their SUMS kernel:
 * the four rows' code pointers walk the blocks (the bit width is a constant per loop). */
#define ROWS4_LOOP(BYTES, SUMS)                                                                       \
    do {                                                                                              \
        const uint8_t* w0 = t->codes + n * nb * (BYTES);                                              \
        const uint8_t* w1 = w0 + nb * (BYTES);                                                        \
        const uint8_t* w2 = w1 + nb * (BYTES);                                                        \
        const uint8_t* w3 = w2 + nb * (BYTES);                                                        \
        for (int64_t b = 0; b < nb; b++) {                                                            \
            const Split a = load_split(qa + b * QBLOCK);                                              \
            const int64_t o = b * (BYTES);                                                            \
            acc = epilogue4(t, acc, SUMS(w0 + o, &a), SUMS(w1 + o, &a), SUMS(w2 + o, &a), SUMS(w3 + o, &a), \
                            qz[b * 8], n, nb, b, da[b], sa[b]);                                       \
        }                                                                                             \
    } while (0)

DOTPROD static void rows4_dotprod(const Task* t, int64_t n, int64_t r) {
    LOAD_ACTIVATIONS
    float32x4_t acc = vdupq_n_f32(0.0f);
    if (t->kern->bits == 4)
        ROWS4_LOOP(QBLOCK / 2, sums_q4);
    else
        ROWS4_LOOP(QBLOCK, sums_q8);
    vst1q_f32(t->y + r * t->kern->n + n, acc);
}

DOTPROD static void row1_dotprod(const Task* t, int64_t n, int64_t r) {
    LOAD_ACTIVATIONS
    const int bytes = t->kern->bits == 4 ? QBLOCK / 2 : QBLOCK;
    const uint8_t* w = t->codes + n * nb * bytes;
    float acc = 0.0f;
    for (int64_t b = 0; b < nb; b++) {
        const Split a = load_split(qa + b * QBLOCK);
        const int32x4_t s = bytes == QBLOCK / 2 ? sums_q4(w + b * bytes, &a) : sums_q8(w + b * bytes, &a);
        acc = epilogue1(t, acc, vaddvq_s32(s) + qz[b * 8], n, nb, b, da[b], sa[b]);
    }
    t->y[r * t->kern->n + n] = acc;
}

DOTPROD void edgelm_qmm_rows_dotprod(const Task* t, int64_t n0, int64_t n1) {
    EDGELM_ARM_ROWS(rows4_dotprod, row1_dotprod)
}

void edgelm_arrange_dotprod(int16_t* qa, const int32_t* qz, const float* da, const float* sa, Quad* quads, int64_t m,
                            int64_t nb, int64_t nq) {
    (void)qz, (void)da, (void)sa, (void)quads, (void)nq;
    split_activations(qa, m * nb);
}

#else
typedef int edgelm_no_arm_dotprod_kernels; /* an empty translation unit is not ISO C */
#endif
