/* The Attention operator's limits and its per-architecture kernels (attention.c holds the
 * ONNX Runtime plumbing, the portable reference and the x86 kernels; arch/arm/ the NEON). */
#ifndef EDGELM_ATTENTION_H
#define EDGELM_ATTENTION_H
#include <stdint.h>

#define MAX_HEAD_DIM 256
#define KEY_CHUNK 64  /* keys scored at a time by the online softmax */

/* One query row against keys 0 .. n-1 of one KV head (float16 rows of d values, d a
 * multiple of 4): out = softmax(q K^T) V, in float32. arch/arm/attention_neon.c. */
void edgelm_attend_row_neon(const float* q, const uint16_t* k, const uint16_t* v, int64_t n, int64_t d, float* out);
/* n floats to float16, round to nearest even (what numpy does). */
void edgelm_to_half_neon(const float* x, int64_t n, uint16_t* y);

#endif
