/* What the x86-64 kernel files share: their target attributes and small vector helpers. */
#ifndef EDGELM_ARCH_X86_H
#define EDGELM_ARCH_X86_H
#include <immintrin.h>
#include <stdint.h>

#define TARGET_AVX2 __attribute__((target("avx2,fma,f16c")))
#define TARGET_AVX512 __attribute__((target("avx512f,avx512bw,avx512vl,avx512vnni,fma,f16c")))

/* Four halves (the mins of four interleaved rows) as floats. */
TARGET_AVX2 static inline __m128 half4(const uint16_t* p) { return _mm_cvtph_ps(_mm_loadl_epi64((const __m128i*)p)); }

/* What a four-row kernel walks: activation row r's codes, zero-point terms, scales and sums,
 * and weight rows n .. n + 3's codes (`bytes` a block), scales and mins (four-row layout). */
#define FOUR_ROW_POINTERS(bytes)                                              \
    const int64_t nb = t->kern->k / QBLOCK;                                   \
    const int16_t* qa = t->qa + r * nb * QBLOCK;                              \
    const int32_t* qz = t->qz + r * nb * 8;                                   \
    const float* da = t->da + r * nb;                                         \
    const float* sa = t->sa + r * nb;                                         \
    const uint8_t* w = t->codes + n * nb * (bytes);                           \
    const uint16_t* sc = t->scales + n * nb;                                  \
    const uint16_t* off = t->mins ? t->mins + (n >> 2) * nb * 4 : NULL;

#endif
