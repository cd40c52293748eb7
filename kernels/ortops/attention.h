/* The Attention operator's limits and kernels: attention.c holds the ONNX Runtime plumbing,
 * attention_generic.c the portable reference, arch/x86/ and arch/arm/ the vector rows;
 * kernels.c's table says which a call runs. */
#ifndef EDGELM_ATTENTION_H
#define EDGELM_ATTENTION_H
#include <stdint.h>

#define MAX_HEAD_DIM 256
#define KEY_CHUNK 64  /* keys scored at a time by the online softmax */

/* One query row against keys 0 .. n-1 of one KV head (float16 rows of d values):
 * out = softmax(q K^T) V, in float32. The vector rows take the portable one for a head
 * size they do not cover (AVX2: d a multiple of 8; NEON: of 4). */
typedef void (*AttendRowFn)(const float* q, const uint16_t* k, const uint16_t* v, int64_t n, int64_t d, float* out);
void edgelm_attend_row_portable(const float* q, const uint16_t* k, const uint16_t* v, int64_t n, int64_t d, float* out);
void edgelm_attend_row_avx2(const float* q, const uint16_t* k, const uint16_t* v, int64_t n, int64_t d, float* out);
void edgelm_attend_row_neon(const float* q, const uint16_t* k, const uint16_t* v, int64_t n, int64_t d, float* out);

/* n floats to float16, round to nearest even (what numpy does). */
void edgelm_to_half_portable(const float* x, int64_t n, uint16_t* y);
void edgelm_to_half_avx2(const float* x, int64_t n, uint16_t* y);
void edgelm_to_half_neon(const float* x, int64_t n, uint16_t* y);

#endif
