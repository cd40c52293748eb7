/* BlockQuantMatMul on aarch64 with the int8 matrix multiply instructions (SMMLA / USMMLA,
 * armv8.6-a, optional from armv8.2-a: Cortex-A510/A710/X2 and later, Neoverse V1/N2):
 * prefill rows, two activation rows against two weight rows per instruction.
 *
 * SMMLA multiplies a 2 x 8 int8 matrix by the transpose of another and adds the 2 x 2
 * int32 result to a vector: with the activation rows r, r + 1 as the first operand and the
 * weight rows n, n + 1 as the second, the lanes are [r.n, r.n+1, r+1.n, r+1.n+1], 32
 * multiply-adds per instruction where SDOT does 16. The arithmetic is dotprod's (the same
 * split activations: q = 256 hi + lo, hi signed, lo unsigned):
 *   sum c q = 256 SMMLA(hi, c) + USMMLA(lo, c)
 * for 4-bit codes c = w in [0, 15] and for 8-bit codes c = w - 128 alike (both are int8),
 * so the int32 block sums are the portable path's exactly and the float scaling is
 * dot_scalar's, lane by lane in its order: the outputs are bit-identical (a test).
 *
 * A pass takes four weight rows and four activation rows (two pairs of each): per block,
 * the eight weight operands are made once (a 64-bit zip of two rows' codes) and serve both
 * activation pairs, whose operands are zips of the split bytes. Decode (one activation
 * row), an odd last activation row and the rows past the last group of four take the
 * dotprod kernels. */
#include "../../qmatmul_ref.h"
#include "../../shared_math.h"

#if defined(__aarch64__)
#include <arm_neon.h>

#include "qmatmul_arm.h"

#if defined(__clang__)
#define I8MM __attribute__((target("i8mm,dotprod")))
#else
#define I8MM __attribute__((target("arch=armv8.2-a+dotprod+i8mm")))
#endif

/* [a[0..7] | b[0..7]] and [a[8..15] | b[8..15]]: the 2 x 8 operands of two rows. */
I8MM static inline int8x16_t zip_lo(int8x16_t a, int8x16_t b) {
    return vreinterpretq_s8_u64(vzip1q_u64(vreinterpretq_u64_s8(a), vreinterpretq_u64_s8(b)));
}
I8MM static inline int8x16_t zip_hi(int8x16_t a, int8x16_t b) {
    return vreinterpretq_s8_u64(vzip2q_u64(vreinterpretq_u64_s8(a), vreinterpretq_u64_s8(b)));
}

/* Block b of weight rows w0, w1 as four operands, in the activations' order (chunk j holds
 * activation codes 8j .. 8j + 7): 4-bit as stored (low nibbles are codes 0-15, high
 * nibbles 16-31), 8-bit centred. */
I8MM static inline void weight_ops(const uint8_t* w0, const uint8_t* w1, int q4, int8x16_t* op) {
    int8x16_t a0, a1, b0, b1;
    if (q4) {
        const uint8x16_t wa = vld1q_u8(w0), wb = vld1q_u8(w1), mask = vdupq_n_u8(15);
        a0 = vreinterpretq_s8_u8(vandq_u8(wa, mask));
        a1 = vreinterpretq_s8_u8(vshrq_n_u8(wa, 4));
        b0 = vreinterpretq_s8_u8(vandq_u8(wb, mask));
        b1 = vreinterpretq_s8_u8(vshrq_n_u8(wb, 4));
    } else {
        const uint8x16_t flip = vdupq_n_u8(128);
        a0 = vreinterpretq_s8_u8(veorq_u8(vld1q_u8(w0), flip));
        a1 = vreinterpretq_s8_u8(veorq_u8(vld1q_u8(w0 + 16), flip));
        b0 = vreinterpretq_s8_u8(veorq_u8(vld1q_u8(w1), flip));
        b1 = vreinterpretq_s8_u8(veorq_u8(vld1q_u8(w1 + 16), flip));
    }
    op[0] = zip_lo(a0, b0);
    op[1] = zip_hi(a0, b0);
    op[2] = zip_lo(a1, b1);
    op[3] = zip_hi(a1, b1);
}

/* Activation rows p, q's split block (dotprod's layout: [hi 0-15 | lo 0-15 | hi 16-31 |
 * lo 16-31]) as four high-byte and four low-byte operands. */
typedef struct {
    int8x16_t hi[4];
    uint8x16_t lo[4];
} PairOps;

I8MM static inline PairOps pair_ops(const uint8_t* p, const uint8_t* q) {
    const int8x16_t ph0 = vld1q_s8((const int8_t*)p), ph1 = vld1q_s8((const int8_t*)(p + 32));
    const int8x16_t qh0 = vld1q_s8((const int8_t*)q), qh1 = vld1q_s8((const int8_t*)(q + 32));
    const int8x16_t pl0 = vld1q_s8((const int8_t*)(p + 16)), pl1 = vld1q_s8((const int8_t*)(p + 48));
    const int8x16_t ql0 = vld1q_s8((const int8_t*)(q + 16)), ql1 = vld1q_s8((const int8_t*)(q + 48));
    PairOps o;
    o.hi[0] = zip_lo(ph0, qh0);
    o.hi[1] = zip_hi(ph0, qh0);
    o.hi[2] = zip_lo(ph1, qh1);
    o.hi[3] = zip_hi(ph1, qh1);
    o.lo[0] = vreinterpretq_u8_s8(zip_lo(pl0, ql0));
    o.lo[1] = vreinterpretq_u8_s8(zip_hi(pl0, ql0));
    o.lo[2] = vreinterpretq_u8_s8(zip_lo(pl1, ql1));
    o.lo[3] = vreinterpretq_u8_s8(zip_hi(pl1, ql1));
    return o;
}

/* The 2 x 2 int32 block sums of one activation pair and one weight pair. */
I8MM static inline int32x4_t sums2x2(const PairOps* a, const int8x16_t* w) {
    int32x4_t h = vmmlaq_s32(vdupq_n_s32(0), a->hi[0], w[0]);
    int32x4_t l = vusmmlaq_s32(vdupq_n_s32(0), a->lo[0], w[0]);
    for (int j = 1; j < 4; j++) {
        h = vmmlaq_s32(h, a->hi[j], w[j]);
        l = vusmmlaq_s32(l, a->lo[j], w[j]);
    }
    return vmlaq_n_s32(l, h, 256);
}

/* Weight rows n .. n + 3 against activation rows r .. r + 3. acc[p][h]: activation pair p,
 * weight pair h, lanes [r.n, r.n+1, r+1.n, r+1.n+1] of that pair. */
I8MM __attribute__((always_inline)) static inline void tile4x4(const Task* t, int64_t n, int64_t r, const int q4,
                                                               const int has_mins) {
    const int64_t nb = t->kern->k / QBLOCK, nrows = t->kern->n;
    const int64_t bytes = q4 ? QBLOCK / 2 : QBLOCK;
    /* per row, pointers that walk the blocks (the index arithmetic stays out of the loop) */
    const uint8_t* w0 = t->codes + n * nb * bytes;
    const uint8_t *w1 = w0 + nb * bytes, *w2 = w1 + nb * bytes, *w3 = w2 + nb * bytes;
    const uint16_t* sc0 = t->scales + n * nb;
    const uint16_t *sc1 = sc0 + nb, *sc2 = sc1 + nb, *sc3 = sc2 + nb;
    const uint16_t* mins = has_mins ? t->mins + (n >> 2) * nb * 4 : NULL;
    const uint8_t* act[4];
    const int32_t* qz[4];
    const float *da[4], *sa[4];
    for (int i = 0; i < 4; i++) {
        act[i] = (const uint8_t*)(t->qa + (r + i) * nb * QBLOCK); /* 64 bytes a block */
        qz[i] = t->qz + (r + i) * nb * 8;
        da[i] = t->da + (r + i) * nb;
        sa[i] = t->sa + (r + i) * nb;
    }
    float32x4_t acc[2][2] = {{vdupq_n_f32(0.0f), vdupq_n_f32(0.0f)}, {vdupq_n_f32(0.0f), vdupq_n_f32(0.0f)}};
    for (int64_t b = 0; b < nb; b++) {
        int8x16_t wop[2][4];
        weight_ops(w0 + b * bytes, w1 + b * bytes, q4, wop[0]);
        weight_ops(w2 + b * bytes, w3 + b * bytes, q4, wop[1]);
        /* the scales of rows n, n + 1 twice, then of n + 2, n + 3 twice (the lanes' weight rows) */
        uint16x4_t h01 = vdup_n_u16(sc0[b]), h23 = vdup_n_u16(sc2[b]);
        h01 = vld1_lane_u16(sc1 + b, h01, 1);
        h01 = vld1_lane_u16(sc1 + b, vld1_lane_u16(sc0 + b, h01, 2), 3);
        h23 = vld1_lane_u16(sc3 + b, h23, 1);
        h23 = vld1_lane_u16(sc3 + b, vld1_lane_u16(sc2 + b, h23, 2), 3);
        const float32x4_t scv[2] = {vcvt_f32_f16(vreinterpret_f16_u16(h01)), vcvt_f32_f16(vreinterpret_f16_u16(h23))};
        float32x4_t mn2[2] = {vdupq_n_f32(0.0f), vdupq_n_f32(0.0f)};
        if (has_mins) {
            const float32x4_t mn = half4(mins + b * 4);
            mn2[0] = vcombine_f32(vget_low_f32(mn), vget_low_f32(mn));
            mn2[1] = vcombine_f32(vget_high_f32(mn), vget_high_f32(mn));
        }
        for (int p = 0; p < 2; p++) {
            const int i = 2 * p; /* activation rows r + i, r + i + 1 */
            const PairOps a = pair_ops(act[i] + b * 64, act[i + 1] + b * 64);
            const int32x4_t z = vcombine_s32(vdup_n_s32(qz[i][b * 8]), vdup_n_s32(qz[i + 1][b * 8]));
            const float32x4_t d = vcombine_f32(vdup_n_f32(da[i][b]), vdup_n_f32(da[i + 1][b]));
            const float32x4_t u = has_mins ? vcombine_f32(vdup_n_f32(sa[i][b]), vdup_n_f32(sa[i + 1][b])) : d;
            for (int h = 0; h < 2; h++) {
                /* dot_scalar's operations and order: convert, times scale x d_a, add; min x sum_a, add */
                const int32x4_t s = vaddq_s32(sums2x2(&a, wop[h]), z);
                acc[p][h] = vaddq_f32(acc[p][h], vmulq_f32(vcvtq_f32_s32(s), vmulq_f32(scv[h], d)));
                if (has_mins) acc[p][h] = vaddq_f32(acc[p][h], vmulq_f32(mn2[h], u));
            }
        }
    }
    for (int p = 0; p < 2; p++) {
        float* y0 = t->y + (r + 2 * p) * nrows + n;
        vst1q_f32(y0, vcombine_f32(vget_low_f32(acc[p][0]), vget_low_f32(acc[p][1])));
        vst1q_f32(y0 + nrows, vcombine_f32(vget_high_f32(acc[p][0]), vget_high_f32(acc[p][1])));
    }
}

/* Activation rows r0 .. m - 1 of the task (fewer than four) by the dotprod kernels. */
static void rest_dotprod(const Task* t, int64_t r0, int64_t n0, int64_t n1) {
    if (r0 >= t->m) return;
    const int64_t nb = t->kern->k / QBLOCK;
    Task sub = *t;
    sub.qa += r0 * nb * QBLOCK;
    sub.qz += r0 * nb * 8;
    sub.da += r0 * nb;
    sub.sa += r0 * nb;
    sub.y += r0 * t->kern->n;
    sub.m = t->m - r0;
    edgelm_qmm_rows_dotprod(&sub, n0, n1);
}

/* The pass for each code width and mins or none: constants in the loop, no branches. */
#define TILE_VARIANT(NAME, Q4, MINS) \
    I8MM static void NAME(const Task* t, int64_t n, int64_t r) { tile4x4(t, n, r, Q4, MINS); }
TILE_VARIANT(tile_q4, 1, 0)
TILE_VARIANT(tile_q4_mins, 1, 1)
TILE_VARIANT(tile_q8, 0, 0)
TILE_VARIANT(tile_q8_mins, 0, 1)

I8MM void edgelm_qmm_rows_i8mm(const Task* t, int64_t n0, int64_t n1) {
    const int64_t m4 = t->m & ~(int64_t)3;
    void (*tile)(const Task*, int64_t, int64_t) =
        t->kern->bits == 4 ? (t->mins ? tile_q4_mins : tile_q4) : (t->mins ? tile_q8_mins : tile_q8);
    int64_t n = n0;
    if (m4)
        for (; n + 4 <= n1; n += 4)
            for (int64_t r = 0; r < m4; r += 4) tile(t, n, r);
    rest_dotprod(t, m4, n0, n);     /* the last rows of activations against the groups done */
    edgelm_qmm_rows_dotprod(t, n, n1); /* weight rows past the last group of four, every row */
}

#else
typedef int edgelm_no_arm_i8mm_kernels; /* an empty translation unit is not ISO C */
#endif
