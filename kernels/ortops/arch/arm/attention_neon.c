/* Attention on aarch64 Advanced SIMD: the portable attend_row's online softmax, four lanes
 * at a time. Key and value rows are float16 (the cache edgelm's runtime binds), widened by
 * FCVTL, which is part of every armv8-a core; scores and sums stay float32, with fused
 * multiply-adds, so results agree with the portable path to float rounding (the tests hold
 * both to GroupQueryAttention). New cache rows are narrowed by FCVTN, which rounds to
 * nearest even exactly as numpy's float16 conversion does (a test on edge values). */
#include "../../attention.h"

#include <math.h>

#include "../../shared_math.h"

#if defined(__aarch64__)
#include <arm_neon.h>

static inline float32x4_t load_half4(const uint16_t* p) { return vcvt_f32_f16(vreinterpret_f16_u16(vld1_u16(p))); }

/* d a multiple of 4 */
static void attend_row4(const float* q, const uint16_t* k, const uint16_t* v, int64_t start, int64_t n, int64_t cap,
                        int64_t d, float* out) {
    float32x4_t acc[MAX_HEAD_DIM / 4], qv[MAX_HEAD_DIM / 4];
    float sc[KEY_CHUNK];
    float m = -INFINITY, l = 0.0f;
    const int64_t dv = d / 4;
    for (int64_t c = 0; c < dv; c++) {
        acc[c] = vdupq_n_f32(0.0f);
        qv[c] = vld1q_f32(q + 4 * c);
    }
    for (int64_t j0 = 0; j0 < n; j0 += KEY_CHUNK) {
        const int64_t jn = n - j0 < KEY_CHUNK ? n - j0 : KEY_CHUNK;
        float cm = -INFINITY;
        for (int64_t j = 0; j < jn; j++) {
            const uint16_t* kr = k + ring_row(start, j0 + j, cap) * d;
            /* two accumulators, so consecutive fused multiply-adds do not wait on each other */
            float32x4_t s0 = vmulq_f32(qv[0], load_half4(kr)), s1 = vdupq_n_f32(0.0f);
            int64_t c = 1;
            for (; c + 1 < dv; c += 2) {
                s1 = vfmaq_f32(s1, qv[c], load_half4(kr + 4 * c));
                s0 = vfmaq_f32(s0, qv[c + 1], load_half4(kr + 4 * c + 4));
            }
            if (c < dv) s1 = vfmaq_f32(s1, qv[c], load_half4(kr + 4 * c));
            sc[j] = vaddvq_f32(vaddq_f32(s0, s1));
            cm = sc[j] > cm ? sc[j] : cm;
        }
        if (cm > m) { /* rescale what was summed under the old maximum */
            const float f = m == -INFINITY ? 0.0f : exp_nonpos(m - cm);
            const float32x4_t fv = vdupq_n_f32(f);
            for (int64_t c = 0; c < dv; c++) acc[c] = vmulq_f32(acc[c], fv);
            l *= f;
            m = cm;
        }
        for (int64_t j = 0; j < jn; j++) {
            const float w = exp_nonpos(sc[j] - m);
            const uint16_t* vr = v + ring_row(start, j0 + j, cap) * d;
            const float32x4_t wv = vdupq_n_f32(w);
            l += w;
            for (int64_t c = 0; c < dv; c++) acc[c] = vfmaq_f32(acc[c], wv, load_half4(vr + 4 * c));
        }
    }
    const float32x4_t inv = vdupq_n_f32(1.0f / l);
    for (int64_t c = 0; c < dv; c++) vst1q_f32(out + 4 * c, vmulq_f32(acc[c], inv));
}

void edgelm_attend_row_neon(const float* q, const uint16_t* k, const uint16_t* v, int64_t start, int64_t n,
                            int64_t cap, int64_t d, float* out) {
    if (d % 4)
        edgelm_attend_row_portable(q, k, v, start, n, cap, d, out);
    else
        attend_row4(q, k, v, start, n, cap, d, out);
}

void edgelm_to_half_neon(const float* x, int64_t n, uint16_t* y) {
    int64_t i = 0;
    for (; i + 4 <= n; i += 4) vst1_u16(y + i, vreinterpret_u16_f16(vcvt_f16_f32(vld1q_f32(x + i))));
    for (; i < n; i++) y[i] = float_to_half(x[i]);
}

#else
typedef int edgelm_no_arm_attention_kernels; /* an empty translation unit is not ISO C */
#endif
