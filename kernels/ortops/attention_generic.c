/* The Attention operator's portable reference: one query row against a KV head's float16
 * rows (online softmax, float32 sums) and float to float16 for new cache rows. The vector
 * rows (arch/x86/attention_avx2.c, arch/arm/attention_neon.c) agree with it to float
 * rounding; their float16 narrowing is bit-identical (tests). */
#include <math.h>

#include "attention.h"
#include "shared_math.h"

/* One query row against n keys of one KV head (key j at ring row start + j): out = softmax(q K^T) V. */
void edgelm_attend_row_portable(const float* q, const uint16_t* k, const uint16_t* v, int64_t start, int64_t n,
                                int64_t cap, int64_t d, float* out) {
    float acc[MAX_HEAD_DIM];
    float sc[KEY_CHUNK];
    float m = -INFINITY, l = 0.0f;
    for (int64_t i = 0; i < d; i++) acc[i] = 0.0f;
    for (int64_t j0 = 0; j0 < n; j0 += KEY_CHUNK) {
        const int64_t jn = n - j0 < KEY_CHUNK ? n - j0 : KEY_CHUNK;
        float cm = -INFINITY;
        for (int64_t j = 0; j < jn; j++) {
            const uint16_t* kr = k + ring_row(start, j0 + j, cap) * d;
            float dot = 0.0f;
            for (int64_t i = 0; i < d; i++) dot += q[i] * half_to_float(kr[i]);
            sc[j] = dot;
            cm = dot > cm ? dot : cm;
        }
        if (cm > m) { /* rescale what was summed under the old maximum */
            const float f = m == -INFINITY ? 0.0f : exp_nonpos(m - cm);
            for (int64_t i = 0; i < d; i++) acc[i] *= f;
            l *= f;
            m = cm;
        }
        for (int64_t j = 0; j < jn; j++) {
            const float w = exp_nonpos(sc[j] - m);
            const uint16_t* vr = v + ring_row(start, j0 + j, cap) * d;
            l += w;
            for (int64_t i = 0; i < d; i++) acc[i] += w * half_to_float(vr[i]);
        }
    }
    const float inv = 1.0f / l;
    for (int64_t i = 0; i < d; i++) out[i] = acc[i] * inv;
}

void edgelm_to_half_portable(const float* x, int64_t n, uint16_t* y) {
    for (int64_t i = 0; i < n; i++) y[i] = float_to_half(x[i]);
}
