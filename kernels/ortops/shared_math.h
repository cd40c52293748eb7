/* Scalar and vector math the operators share: float16 conversions (qmatmul.c's scales,
 * attention.c's KV cache) and exp(x) for x <= 0 (qmatmul.c's SwiGLU, attention.c's softmax),
 * which is the sampling kernels' exp: kernels/edgelm_exp.h, with its stated error bound. */
#ifndef EDGELM_SHARED_MATH_H
#define EDGELM_SHARED_MATH_H
#include <stdint.h>
#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#endif
#include "../edgelm_exp.h"

/* Round to nearest (ties to even) without a libm call: adding 1.5 * 2^23 leaves an integer
 * in the float's low mantissa bits (|x| <= 2^22). Branch-free, so the loops vectorize. */
#define ROUND_MAGIC EDGELM_ROUND_MAGIC

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

static inline float exp_nonpos(float x) { return edgelm_exp_nonpos(x); }

#if defined(__x86_64__) || defined(__i386__)
/* exp_nonpos eight lanes at a time: the same reduction and polynomial, with fused
 * multiply-adds (within the same error bound). */
__attribute__((target("avx2,fma"))) static inline __m256 exp_nonpos_avx2(__m256 x) {
    x = _mm256_max_ps(x, _mm256_set1_ps(EDGELM_EXP_MIN_ARG));
    const __m256 t = _mm256_mul_ps(x, _mm256_set1_ps(EDGELM_LOG2E));
    const __m256 n = _mm256_round_ps(t, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    const __m256 f = _mm256_sub_ps(t, n);
    static const float c[7] = {EDGELM_EXP2_C6, EDGELM_EXP2_C5, EDGELM_EXP2_C4, EDGELM_EXP2_C3,
                               EDGELM_EXP2_C2, EDGELM_EXP2_C1, EDGELM_EXP2_C0};
    __m256 p = _mm256_set1_ps(c[0]);
    for (int d = 1; d < 7; d++) p = _mm256_fmadd_ps(p, f, _mm256_set1_ps(c[d]));
    const __m256i two_n = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
    return _mm256_mul_ps(p, _mm256_castsi256_ps(two_n));
}
#endif

#endif
