/* Attention on x86-64 with AVX2 + FMA + F16C: the portable row's online softmax eight
 * lanes at a time, float16 rows widened by vcvtph2ps; new cache rows narrowed by vcvtps2ph
 * (round to nearest even, as numpy). Chosen at run time (kernels.c); elsewhere empty. */
#include <math.h>

#include "../../attention.h"
#include "../../shared_math.h"

#if defined(__x86_64__) || defined(__i386__)
#include "x86.h"

TARGET_AVX2 static inline float hsum_avx2(__m256 v) {
    __m128 x = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    x = _mm_add_ps(x, _mm_movehl_ps(x, x));
    x = _mm_add_ss(x, _mm_movehdup_ps(x));
    return _mm_cvtss_f32(x);
}

/* attend_row with eight lanes; d a multiple of 8 (the head dims of 64 and 128 unroll). */
#define LOAD8(p) _mm256_cvtph_ps(_mm_loadu_si128((const __m128i*)(p)))

TARGET_AVX2 static inline void attend_row_avx2_d(const float* q, const uint16_t* k, const uint16_t* v, int64_t start,
                                                 int64_t n, int64_t cap, const int64_t d, float* out) {
    __m256 acc[MAX_HEAD_DIM / 8], qv[MAX_HEAD_DIM / 8];
    float sc[KEY_CHUNK];
    float m = -INFINITY, l = 0.0f;
    const int64_t dv = d / 8;
    for (int64_t c = 0; c < dv; c++) {
        acc[c] = _mm256_setzero_ps();
        qv[c] = _mm256_loadu_ps(q + 8 * c);
    }
    for (int64_t j0 = 0; j0 < n; j0 += KEY_CHUNK) {
        const int64_t jn = n - j0 < KEY_CHUNK ? n - j0 : KEY_CHUNK;
        for (int64_t j = 0; j < jn; j++) {
            const uint16_t* kr = k + ring_row(start, j0 + j, cap) * d;
            __m256 s0 = _mm256_mul_ps(qv[0], LOAD8(kr));
            __m256 s1 = _mm256_setzero_ps();
            for (int64_t c = 1; c + 1 < dv; c += 2) {
                s1 = _mm256_fmadd_ps(qv[c], LOAD8(kr + 8 * c), s1);
                s0 = _mm256_fmadd_ps(qv[c + 1], LOAD8(kr + 8 * c + 8), s0);
            }
            if ((dv & 1) == 0) s1 = _mm256_fmadd_ps(qv[dv - 1], LOAD8(kr + 8 * (dv - 1)), s1);
            sc[j] = hsum_avx2(_mm256_add_ps(s0, s1));
        }
        float cm = -INFINITY;
        for (int64_t j = 0; j < jn; j++) cm = sc[j] > cm ? sc[j] : cm;
        if (cm > m) {
            const float f = m == -INFINITY ? 0.0f : exp_nonpos(m - cm);
            const __m256 fv = _mm256_set1_ps(f);
            for (int64_t c = 0; c < dv; c++) acc[c] = _mm256_mul_ps(acc[c], fv);
            l *= f;
            m = cm;
        }
        int64_t j = 0;
        const __m256 mv = _mm256_set1_ps(m);
        for (; j + 8 <= jn; j += 8) _mm256_storeu_ps(sc + j, exp_nonpos_avx2(_mm256_sub_ps(_mm256_loadu_ps(sc + j), mv)));
        for (; j < jn; j++) sc[j] = exp_nonpos(sc[j] - m);
        for (j = 0; j < jn; j++) {
            const uint16_t* vr = v + ring_row(start, j0 + j, cap) * d;
            const __m256 w = _mm256_set1_ps(sc[j]);
            l += sc[j];
            for (int64_t c = 0; c < dv; c++) acc[c] = _mm256_fmadd_ps(w, LOAD8(vr + 8 * c), acc[c]);
        }
    }
    const __m256 inv = _mm256_set1_ps(1.0f / l);
    for (int64_t c = 0; c < dv; c++) _mm256_storeu_ps(out + 8 * c, _mm256_mul_ps(acc[c], inv));
}

/* Head dims that are a multiple of 8 (64 unrolled); others take the portable row. */
TARGET_AVX2 void edgelm_attend_row_avx2(const float* q, const uint16_t* k, const uint16_t* v, int64_t start, int64_t n,
                                        int64_t cap, int64_t d, float* out) {
    if (d % 8)
        edgelm_attend_row_portable(q, k, v, start, n, cap, d, out);
    else if (d == 64)
        attend_row_avx2_d(q, k, v, start, n, cap, 64, out);
    else
        attend_row_avx2_d(q, k, v, start, n, cap, d, out);
}

TARGET_AVX2 void edgelm_to_half_avx2(const float* x, int64_t n, uint16_t* y) {
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        _mm_storeu_si128((__m128i*)(y + i), _mm256_cvtps_ph(_mm256_loadu_ps(x + i), _MM_FROUND_TO_NEAREST_INT));
    for (; i < n; i++) y[i] = float_to_half(x[i]);
}

#else
typedef int edgelm_no_x86_attention_kernels; /* an empty translation unit is not ISO C */
#endif
