/* What the x86-64 kernel files share: their target attributes and small vector helpers. */
#ifndef EDGELM_ARCH_X86_H
#define EDGELM_ARCH_X86_H
#include <immintrin.h>
#include <stdint.h>

#define TARGET_AVX2 __attribute__((target("avx2,fma,f16c")))
#define TARGET_AVX512 __attribute__((target("avx512f,avx512bw,avx512vl,avx512vnni,fma,f16c")))

/* Four halves (the mins of four interleaved rows) as floats. */
TARGET_AVX2 static inline __m128 half4(const uint16_t* p) { return _mm_cvtph_ps(_mm_loadl_epi64((const __m128i*)p)); }

#endif
