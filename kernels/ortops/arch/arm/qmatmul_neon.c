/* BlockQuantMatMul on aarch64 Advanced SIMD (every armv8-a core: Cortex-A53/A55 up).
 *
 * The same arithmetic as the portable dot_scalar in qmatmul_generic.c: per 32-block, the exact
 * int32 sum of the weight codes times the int16 activation codes (plus the zero-point term
 * qz), then `acc += s * (scale * d_a)` and `acc += min * sum_a` in float, block by block in
 * the same order, so every output is bit-identical to the portable path's (a test). The
 * products are 16 x 16 -> 32-bit multiply-accumulates (SMLAL/SMLAL2, eight a pair): 4-bit
 * codes are split into nibbles with AND and USHR and widened with UXTL, 8-bit codes widened
 * and centred with USUBL. Four weight rows share each activation load (the activations are
 * 64 bytes a block against 16 of 4-bit codes, so unshared they would be most of the loads).
 */
#include "../../qmatmul_ref.h"
#include "../../shared_math.h"

#if defined(__aarch64__)
#include <arm_neon.h>

#include "qmatmul_arm.h"

/* The 32 int16 products of a block's widened codes c0 .. c3 with its activations a0 .. a3,
 * summed in four int32 lanes (SMULL/SMLAL/SMLAL2). */
static inline int32x4_t dot32_s16(int16x8_t c0, int16x8_t c1, int16x8_t c2, int16x8_t c3, int16x8_t a0,
                                  int16x8_t a1, int16x8_t a2, int16x8_t a3) {
    int32x4_t s = vmull_s16(vget_low_s16(c0), vget_low_s16(a0));
    s = vmlal_high_s16(s, c0, a0);
    s = vmlal_s16(s, vget_low_s16(c1), vget_low_s16(a1));
    s = vmlal_high_s16(s, c1, a1);
    s = vmlal_s16(s, vget_low_s16(c2), vget_low_s16(a2));
    s = vmlal_high_s16(s, c2, a2);
    s = vmlal_s16(s, vget_low_s16(c3), vget_low_s16(a3));
    return vmlal_high_s16(s, c3, a3);
}

/* codes (4-bit, one 16-byte block) x activations (32 int16, low nibbles first). */
static inline int32x4_t block_q4(uint8x16_t w, int16x8_t a0, int16x8_t a1, int16x8_t a2, int16x8_t a3) {
    const uint8x16_t lo = vandq_u8(w, vdupq_n_u8(15)), hi = vshrq_n_u8(w, 4);
    return dot32_s16(vreinterpretq_s16_u16(vmovl_u8(vget_low_u8(lo))), vreinterpretq_s16_u16(vmovl_high_u8(lo)),
                     vreinterpretq_s16_u16(vmovl_u8(vget_low_u8(hi))), vreinterpretq_s16_u16(vmovl_high_u8(hi)),
                     a0, a1, a2, a3);
}

/* The same for 8-bit codes (32 bytes, centred: q - 128) against activations in order. */
static inline int32x4_t block_q8(const uint8_t* wb, int16x8_t a0, int16x8_t a1, int16x8_t a2, int16x8_t a3) {
    const uint8x16_t w0 = vld1q_u8(wb), w1 = vld1q_u8(wb + 16), c = vdupq_n_u8(128);
    /* USUBL wraps modulo 2^16: read as int16 it is q - 128 exactly. */
    const int16x8_t c0 = vreinterpretq_s16_u16(vsubl_u8(vget_low_u8(w0), vget_low_u8(c)));
    const int16x8_t c1 = vreinterpretq_s16_u16(vsubl_high_u8(w0, c));
    const int16x8_t c2 = vreinterpretq_s16_u16(vsubl_u8(vget_low_u8(w1), vget_low_u8(c)));
    const int16x8_t c3 = vreinterpretq_s16_u16(vsubl_high_u8(w1, c));
    return dot32_s16(c0, c1, c2, c3, a0, a1, a2, a3);
}

/* The block sums of one weight row's block b against the activation vectors a0 .. a3. */
static inline int32x4_t sums_neon(const Task* t, int64_t n, int64_t nb, int64_t b, int bits, int16x8_t a0,
                                  int16x8_t a1, int16x8_t a2, int16x8_t a3) {
    const uint8_t* wb = t->codes + (n * nb + b) * (bits == 4 ? QBLOCK / 2 : QBLOCK);
    return bits == 4 ? block_q4(vld1q_u8(wb), a0, a1, a2, a3) : block_q8(wb, a0, a1, a2, a3);
}

/* Output rows n .. n + 3 for activation row r. */
static void rows4_neon(const Task* t, int64_t n, int64_t r) {
    LOAD_ACTIVATIONS
    const int bits = (int)t->kern->bits;
    float32x4_t acc = vdupq_n_f32(0.0f);
    for (int64_t b = 0; b < nb; b++) {
        const int16_t* q = qa + b * QBLOCK;
        const int16x8_t a0 = vld1q_s16(q), a1 = vld1q_s16(q + 8), a2 = vld1q_s16(q + 16), a3 = vld1q_s16(q + 24);
        acc = epilogue4(t, acc, sums_neon(t, n, nb, b, bits, a0, a1, a2, a3),
                        sums_neon(t, n + 1, nb, b, bits, a0, a1, a2, a3), sums_neon(t, n + 2, nb, b, bits, a0, a1, a2, a3),
                        sums_neon(t, n + 3, nb, b, bits, a0, a1, a2, a3), qz[b * 8], n, nb, b, da[b], sa[b]);
    }
    vst1q_f32(t->y + r * t->kern->n + n, acc);
}

/* Output row n for activation row r. */
static void row1_neon(const Task* t, int64_t n, int64_t r) {
    LOAD_ACTIVATIONS
    const int bits = (int)t->kern->bits;
    float acc = 0.0f;
    for (int64_t b = 0; b < nb; b++) {
        const int16_t* q = qa + b * QBLOCK;
        const int32x4_t s = sums_neon(t, n, nb, b, bits, vld1q_s16(q), vld1q_s16(q + 8), vld1q_s16(q + 16),
                                      vld1q_s16(q + 24));
        acc = epilogue1(t, acc, vaddvq_s32(s) + qz[b * 8], n, nb, b, da[b], sa[b]);
    }
    t->y[r * t->kern->n + n] = acc;
}

void edgelm_qmm_rows_neon(const Task* t, int64_t n0, int64_t n1) { EDGELM_ARM_ROWS(rows4_neon, row1_neon) }

/* The portable quantize_block, four lanes at a time, with the same float operations (a
 * multiply, the round-to-nearest by ROUND_MAGIC, a clamp) so the codes, the scale and the
 * sum are bit-identical: the block sums of every path stay equal. 4-bit blocks store the
 * even elements' codes first, then the odd ones' (the order the nibbles unpack): LD2. */
static inline int16x4_t code4(float32x4_t x, float32x4_t inv, int32x4_t* qsum) {
    const float32x4_t magic = vdupq_n_f32(ROUND_MAGIC), lim = vdupq_n_f32(32767.0f);
    float32x4_t v = vsubq_f32(vaddq_f32(vmulq_f32(x, inv), magic), magic);
    v = vminq_f32(vmaxq_f32(v, vnegq_f32(lim)), lim);
    const int32x4_t c = vcvtq_s32_f32(v);
    *qsum = vaddq_s32(*qsum, c);
    return vmovn_s32(c);
}

void edgelm_quantize_block_neon(const float* x, int bits, int32_t zmul, int16_t* q, int32_t* qz, float* d_out,
                                float* sum_out) {
    float32x4_t amax = vabsq_f32(vld1q_f32(x));
    for (int i = 4; i < QBLOCK; i += 4) amax = vmaxq_f32(amax, vabsq_f32(vld1q_f32(x + i)));
    const float d = vmaxvq_f32(amax) / 32767.0f;
    const float32x4_t inv = vdupq_n_f32(d > 0.0f ? 1.0f / d : 0.0f);
    int32x4_t qsum = vdupq_n_s32(0);
    if (bits == 4) {
        for (int c = 0; c < 4; c++) {
            const float32x4x2_t eo = vld2q_f32(x + 8 * c); /* elements 8c, 8c+2, ... and 8c+1, 8c+3, ... */
            vst1_s16(q + 4 * c, code4(eo.val[0], inv, &qsum));
            vst1_s16(q + 16 + 4 * c, code4(eo.val[1], inv, &qsum));
        }
    } else {
        for (int i = 0; i < QBLOCK; i += 4) vst1_s16(q + i, code4(vld1q_f32(x + i), inv, &qsum));
    }
    const int32_t total = vaddvq_s32(qsum);
    for (int i = 0; i < 8; i++) qz[i] = 0;
    qz[0] = zmul * total;
    *d_out = d;
    *sum_out = d * (float)total;
}

/* SwiGLU stays the portable C: its values must not move, or the codes and block sums would. */
void edgelm_quantize_rows_neon(const float* a, int64_t m, int64_t k, int bits, int32_t zmul, int swiglu, float* tmp,
                               int16_t* qa, int32_t* qz, float* da, float* sa) {
    QUANTIZE_ROWS_BODY(edgelm_swiglu_row_portable, edgelm_quantize_block_neon)
}

#else
typedef int edgelm_no_arm_kernels; /* an empty translation unit is not ISO C */
#endif
