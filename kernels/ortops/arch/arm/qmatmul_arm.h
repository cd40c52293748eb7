/* What the NEON and dotprod BlockQuantMatMul kernels share: the float epilogue of a block.
 *
 * Four weight rows n .. n + 3 (n a multiple of 4) have four int32 block sums each in lanes;
 * one pairwise-add tree gives the four rows' sums in one vector, and the scaling runs in
 * lanes with the portable dot_scalar's operations in its order (convert, times scale x d_a,
 * add; then min x sum_a, add; no fused multiply-add), so every lane is bit-identical to it.
 * float16 scales and mins are widened by the hardware (FCVTL), which is exact like the
 * portable half_to_float; the mins' four-row interleaved layout is one 8-byte load. */
#ifndef EDGELM_QMATMUL_ARM_H
#define EDGELM_QMATMUL_ARM_H
#include <arm_neon.h>

#include "../../qmatmul.h"

static inline float32x4_t half4(const uint16_t* p) { return vcvt_f32_f16(vreinterpret_f16_u16(vld1_u16(p))); }

/* The scales of rows n .. n + 3 for block b (a column of the [N, K/32] table). */
static inline float32x4_t scales4(const uint16_t* scales, int64_t n, int64_t nb, int64_t b) {
    uint16x4_t s = vdup_n_u16(scales[n * nb + b]);
    s = vld1_lane_u16(scales + (n + 1) * nb + b, s, 1);
    s = vld1_lane_u16(scales + (n + 2) * nb + b, s, 2);
    s = vld1_lane_u16(scales + (n + 3) * nb + b, s, 3);
    return vcvt_f32_f16(vreinterpret_f16_u16(s));
}

/* acc (rows n .. n + 3) += block b of sums s0 .. s3 (int32 lanes to be added up per row). */
static inline float32x4_t epilogue4(const Task* t, float32x4_t acc, int32x4_t s0, int32x4_t s1, int32x4_t s2,
                                    int32x4_t s3, int32_t qz0, int64_t n, int64_t nb, int64_t b, float da, float sa) {
    int32x4_t s = vpaddq_s32(vpaddq_s32(s0, s1), vpaddq_s32(s2, s3));
    s = vaddq_s32(s, vdupq_n_s32(qz0));
    acc = vaddq_f32(acc, vmulq_f32(vcvtq_f32_s32(s), vmulq_f32(scales4(t->scales, n, nb, b), vdupq_n_f32(da))));
    if (t->mins) acc = vaddq_f32(acc, vmulq_f32(half4(t->mins + ((n >> 2) * nb + b) * 4), vdupq_n_f32(sa)));
    return acc;
}

/* One float16 value widened by the hardware (a single element: never reads past it). */
static inline float half1(uint16_t h) { return vgetq_lane_f32(vcvt_f32_f16(vreinterpret_f16_u16(vdup_n_u16(h))), 0); }

/* One row's block (the rows past the last group of four): the same operations, one lane. */
static inline float epilogue1(const Task* t, float acc, int32_t s, int64_t n, int64_t nb, int64_t b, float da,
                              float sa) {
    acc += (float)s * (half1(t->scales[n * nb + b]) * da);
    if (t->mins) acc += half1(t->mins[((n >> 2) * nb + b) * 4 + (n & 3)]) * sa;
    return acc;
}

/* Activation row r's quantized codes, zero-point terms, scales and sums, in a row kernel. */
#define LOAD_ACTIVATIONS                                \
    const int64_t nb = t->kern->k / QBLOCK;             \
    const int16_t* qa = t->qa + r * nb * QBLOCK;        \
    const int32_t* qz = t->qz + r * nb * 8;             \
    const float* da = t->da + r * nb;                   \
    const float* sa = t->sa + r * nb;

/* Rows n0 .. n1 - 1 for every activation row: groups of four weight rows (every activation
 * row against them while they are in L1), then single rows, with the given block kernels. */
#define EDGELM_ARM_ROWS(ROWS4, ROW1)                                  \
    int64_t n = n0;                                                   \
    for (; n + 4 <= n1; n += 4)                                       \
        for (int64_t r = 0; r < t->m; r++) ROWS4(t, n, r);            \
    for (; n < n1; n++)                                               \
        for (int64_t r = 0; r < t->m; r++) ROW1(t, n, r);

#endif
