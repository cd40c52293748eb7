/* The Attention operator's limits and kernels: attention.c holds the ONNX Runtime plumbing,
 * attention_generic.c the portable reference, arch/x86/ and arch/arm/ the vector rows;
 * kernels.c's table says which a call runs. */
#ifndef EDGELM_ATTENTION_H
#define EDGELM_ATTENTION_H
#include <stdint.h>

#define MAX_HEAD_DIM 256
#define KEY_CHUNK 64  /* keys scored at a time by the online softmax */

/* One query row against n keys of one KV head (float16 rows of d values), in order:
 * out = softmax(q K^T) V, in float32. Key j is row (start + j) mod cap of the head's cap
 * rows (a window layer's ring; a cache that has not wrapped has start + n <= cap), with
 * 0 <= start < cap and n <= cap, so no row outside the cache is read. The vector rows take
 * the portable one for a head size they do not cover (AVX2: d a multiple of 8; NEON: of 4). */
typedef void (*AttendRowFn)(const float* q, const uint16_t* k, const uint16_t* v, int64_t start, int64_t n,
                            int64_t cap, int64_t d, float* out);
void edgelm_attend_row_portable(const float* q, const uint16_t* k, const uint16_t* v, int64_t start, int64_t n,
                                int64_t cap, int64_t d, float* out);
void edgelm_attend_row_avx2(const float* q, const uint16_t* k, const uint16_t* v, int64_t start, int64_t n,
                            int64_t cap, int64_t d, float* out);
void edgelm_attend_row_neon(const float* q, const uint16_t* k, const uint16_t* v, int64_t start, int64_t n,
                            int64_t cap, int64_t d, float* out);

/* The row of a ring of cap rows that key start + j sits in, for start < cap and j < cap. */
static inline int64_t ring_row(int64_t start, int64_t j, int64_t cap) {
    const int64_t r = start + j;
    return r >= cap ? r - cap : r;
}

/* n floats to float16, round to nearest even (what numpy does). */
void edgelm_to_half_portable(const float* x, int64_t n, uint16_t* y);
void edgelm_to_half_avx2(const float* x, int64_t n, uint16_t* y);
void edgelm_to_half_neon(const float* x, int64_t n, uint16_t* y);

#endif
