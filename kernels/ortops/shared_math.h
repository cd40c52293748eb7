/* Scalar and vector math the operators share: float16 conversions (qmatmul.c's scales,
 * attention.c's KV cache) and exp(x) for x <= 0 (qmatmul.c's SwiGLU, attention.c's softmax). */
#ifndef EDGELM_SHARED_MATH_H
#define EDGELM_SHARED_MATH_H
#include <stdint.h>
#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#endif

/* Round to nearest (ties to even) without a libm call: adding 1.5 * 2^23 leaves an integer
 * in the float's low mantissa bits (|x| <= 2^22). Branch-free, so the loops vectorize. */
#define ROUND_MAGIC 12582912.0f

/* IEEE half to float (portable; the x86 paths use F16C's vcvtph2ps). */
static inline float half_to_float(uint16_t h) {
    const uint32_t sign = (uint32_t)(h & 0x8000u) << 16, e = (h >> 10) & 0x1fu, man = h & 0x3ffu;
    union { uint32_t u; float f; } v;
    if (e == 0) { /* zero or subnormal: man * 2^-24 */
        const float f = (float)man * 5.9604644775390625e-8f;
        return sign ? -f : f;
    }
    v.u = sign | (e == 0x1f ? 0x7f800000u | (man << 13) : ((e + 112) << 23) | (man << 13));
    return v.f;
}

/* Float to IEEE half, round to nearest even (portable; the x86 paths use F16C's vcvtps2ph).
 * Overflow goes to infinity, NaN stays NaN. */
static inline uint16_t float_to_half(float f) {
    union { float f; uint32_t u; } v = {f};
    const uint32_t sign = (v.u >> 16) & 0x8000u;
    const uint32_t a = v.u & 0x7fffffffu;
    if (a >= 0x7f800000u) return (uint16_t)(sign | 0x7c00u | (a > 0x7f800000u ? 0x200u : 0u));
    if (a >= 0x477ff000u) return (uint16_t)(sign | 0x7c00u); /* rounds past 65504 */
    if (a < 0x38800000u) { /* subnormal or zero in half: round a * 2^24 to an integer */
        union { uint32_t u; float f; } m = {a};
        const float x = m.f * 16777216.0f;
        return (uint16_t)(sign | (uint32_t)((x + ROUND_MAGIC) - ROUND_MAGIC));
    }
    const uint32_t r = a + 0xc8000fffu + ((a >> 13) & 1u); /* rebias by -112 << 23, round to even */
    return (uint16_t)(sign | (r >> 13));
}

/* exp(x) for x <= 0 without libm, branch-free so it vectorizes: 2^(x log2 e) split into
 * 2^n (exponent bits) and 2^f, f in [-0.5, 0.5], by a degree-6 polynomial (relative error
 * ~2e-7). Below -87 it returns 0. */
static const float EXP2_POLY[7] = {1.5403530e-4f, 1.3333558e-3f, 9.6181291e-3f, 5.5504109e-2f,
                                   2.4022651e-1f, 6.9314718e-1f, 1.0f}; /* highest degree first */
#define LOG2E 1.44269504088896341f

static inline float exp_nonpos(float x) {
    x = x < -87.0f ? -87.0f : x;
    const float t = x * LOG2E;
    const float n = (t + ROUND_MAGIC) - ROUND_MAGIC;
    const float f = t - n;
    float p = EXP2_POLY[0];
    for (int i = 1; i < 7; i++) p = p * f + EXP2_POLY[i];
    union { float f; int32_t i; } two_n;
    two_n.i = ((int32_t)n + 127) << 23;
    return p * two_n.f;
}

#if defined(__x86_64__) || defined(__i386__)
/* exp_nonpos eight lanes at a time. */
__attribute__((target("avx2,fma"))) static inline __m256 exp_nonpos_avx2(__m256 x) {
    x = _mm256_max_ps(x, _mm256_set1_ps(-87.0f));
    const __m256 t = _mm256_mul_ps(x, _mm256_set1_ps(LOG2E));
    const __m256 n = _mm256_round_ps(t, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    const __m256 f = _mm256_sub_ps(t, n);
    __m256 p = _mm256_set1_ps(EXP2_POLY[0]);
    for (int d = 1; d < 7; d++) p = _mm256_fmadd_ps(p, f, _mm256_set1_ps(EXP2_POLY[d]));
    const __m256i two_n = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
    return _mm256_mul_ps(p, _mm256_castsi256_ps(two_n));
}
#endif

#endif
