/* Four float32 lanes with GCC/Clang vector types, for the sampling kernels: SSE2 on
 * x86-64, NEON on arm64, plain C elsewhere. Every operation here is exact (loads, stores,
 * selects, max, compares) or plain IEEE arithmetic the compiler emits lane by lane, so
 * with FP contraction off a four-lane loop gives the bits of its scalar twin. */
#ifndef EDGELM_SIMD_H
#define EDGELM_SIMD_H
#include <stdint.h>
#include <string.h>

typedef float edgelm_v4f __attribute__((vector_size(16)));
typedef int32_t edgelm_v4i __attribute__((vector_size(16)));

static inline edgelm_v4f edgelm_load4(const float* p) { edgelm_v4f v; memcpy(&v, p, sizeof v); return v; }
static inline void edgelm_store4(float* p, edgelm_v4f v) { memcpy(p, &v, sizeof v); }
static inline edgelm_v4f edgelm_sel4(edgelm_v4i mask, edgelm_v4f a, edgelm_v4f b) {
    return (edgelm_v4f)(((edgelm_v4i)a & mask) | ((edgelm_v4i)b & ~mask));
}

/* Lane-wise max and "either lane is NaN": one instruction each on SSE2 and NEON, a
 * compare-and-select elsewhere. */
#if defined(__SSE2__)
#include <emmintrin.h>
static inline edgelm_v4f edgelm_max4(edgelm_v4f a, edgelm_v4f b) { return (edgelm_v4f)_mm_max_ps((__m128)a, (__m128)b); }
static inline edgelm_v4i edgelm_unord4(edgelm_v4f a, edgelm_v4f b) { return (edgelm_v4i)_mm_cmpunord_ps((__m128)a, (__m128)b); }
static inline int edgelm_any4(edgelm_v4i m) { return _mm_movemask_ps((__m128)m) != 0; }
#elif defined(__ARM_NEON)
#include <arm_neon.h>
static inline edgelm_v4f edgelm_max4(edgelm_v4f a, edgelm_v4f b) { return (edgelm_v4f)vmaxq_f32((float32x4_t)a, (float32x4_t)b); }
static inline edgelm_v4i edgelm_unord4(edgelm_v4f a, edgelm_v4f b) { return (a != a) | (b != b); }
static inline int edgelm_any4(edgelm_v4i m) { return (m[0] | m[1] | m[2] | m[3]) != 0; }
#else
static inline edgelm_v4f edgelm_max4(edgelm_v4f a, edgelm_v4f b) { return edgelm_sel4(a > b, a, b); }
static inline edgelm_v4i edgelm_unord4(edgelm_v4f a, edgelm_v4f b) { return (a != a) | (b != b); }
static inline int edgelm_any4(edgelm_v4i m) { return (m[0] | m[1] | m[2] | m[3]) != 0; }
#endif

#if defined(__clang__)
#define EDGELM_SHUF(a, b, i, j, k, l) __builtin_shufflevector((a), (b), i, j, k, l)
#else
#define EDGELM_SHUF(a, b, i, j, k, l) __builtin_shuffle((a), (b), (edgelm_v4i){i, j, k, l})
#endif

#endif
