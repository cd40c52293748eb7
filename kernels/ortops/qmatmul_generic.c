/* BlockQuantMatMul's portable reference: what every vector path is tested against (their
 * int32 block sums bit for bit, their outputs to float rounding or, on Arm, bit for bit),
 * and what runs on a CPU with none of them. Plain C, no target attributes. */
#include "qmatmul_ref.h"
#include "shared_math.h"

/* One block of 32 activations to int16 codes (scale amax / 32767, round to nearest even),
 * with the zero point's term and the sum of the codes (see qmatmul.c). */
static inline void quantize_block(const float* x, int bits, int32_t zmul, int16_t* q, int32_t* qz, float* d_out,
                                  float* sum_out) {
    /* eight independent lanes for the max and the sum, so both vectorize */
    float amax8[8] = {0}, r[QBLOCK];
    for (int i = 0; i < QBLOCK; i++) {
        const float v = fabsf(x[i]);
        amax8[i & 7] = v > amax8[i & 7] ? v : amax8[i & 7];
    }
    float amax = 0.0f;
    for (int i = 0; i < 8; i++) amax = amax8[i] > amax ? amax8[i] : amax;
    const float d = amax / 32767.0f;
    const float inv = d > 0.0f ? 1.0f / d : 0.0f;
    for (int i = 0; i < QBLOCK; i++) {
        const float v = (x[i] * inv + ROUND_MAGIC) - ROUND_MAGIC;
        r[i] = v > 32767.0f ? 32767.0f : (v < -32767.0f ? -32767.0f : v);
    }
    for (int i = 0; i < QBLOCK; i++) {
        /* 4-bit codes unpack as the 16 low nibbles (elements 0, 2, ..., 30), then the 16 high
         * ones (1, 3, ..., 31): activations are stored in that order, so the dot needs no shuffle. */
        const int dst = bits == 4 ? (i & 1) * 16 + (i >> 1) : i;
        q[dst] = (int16_t)(int)r[i];
    }
    /* The kernels multiply 4-bit codes as stored (0..15) and 8-bit codes centred (q - 128);
       the zero point the format wants differs by zmul (see zero_point_term): sum (q - zp) a =
       sum q a + zmul sum a, whose second term is added exactly, in int32, as lane 0 of this
       vector. */
    int32_t qsum = 0;
    for (int i = 0; i < QBLOCK; i++) qsum += (int32_t)r[i];
    for (int i = 0; i < 8; i++) qz[i] = 0;
    qz[0] = zmul * qsum;
    *d_out = d;
    /* The sum the mins multiply is that of the quantized activations, not of x: the block's
       whole product then sees one rounding of a, sum (d q + m)(a + e), instead of the
       larger sum d q e left when an exact sum meets uncentred codes. */
    *sum_out = d * (float)qsum;
}

/* silu(g) * u over one row: g * sigmoid(g) * u, with sigmoid from exp(-|g|). */
void edgelm_swiglu_row_portable(const float* gate_up, int64_t k, float* out) {
    const float* g = gate_up;
    const float* u = gate_up + k;
    for (int64_t i = 0; i < k; i++) {
        const float e = exp_nonpos(-fabsf(g[i]));
        const float sig = g[i] >= 0.0f ? 1.0f / (1.0f + e) : e / (1.0f + e);
        out[i] = g[i] * sig * u[i];
    }
}

void edgelm_quantize_rows_portable(const float* a, int64_t m, int64_t k, int bits, int32_t zmul, int swiglu,
                                   float* tmp, int16_t* qa, int32_t* qz, float* da, float* sa) {
    QUANTIZE_ROWS_BODY(edgelm_swiglu_row_portable, quantize_block)
}

/* One output value: row n of the weights against activation row r (portable C). */
static float dot_scalar(const Task* t, int64_t n, int64_t r) {
    const int64_t nb = t->kern->k / QBLOCK;
    const int bits = (int)t->kern->bits;
    const int16_t* qa = t->qa + r * nb * QBLOCK;
    const float* da = t->da + r * nb;
    const float* sa = t->sa + r * nb;
    const uint16_t* sc = t->scales + n * nb;
    const int bytes = bits == 4 ? QBLOCK / 2 : QBLOCK;
    const uint8_t* w = t->codes + n * nb * bytes;
    float acc = 0.0f;
    for (int64_t b = 0; b < nb; b++) {
        const int32_t s = block_dot_int(w + b * bytes, qa + b * QBLOCK, bits, t->qz[(r * nb + b) * 8]);
        acc += (float)s * (half_to_float(sc[b]) * da[b]);
        if (t->mins) acc += half_to_float(t->mins[offset_index(n, b, nb)]) * sa[b];
    }
    return acc;
}

/* Row n of the weights against float activation row r (the prefill path's fallback when
 * its buffer cannot be had). */
static float dot_float_scalar(const Task* t, int64_t n, int64_t r) {
    const int64_t k = t->kern->k, nb = k / QBLOCK;
    const int bits = (int)t->kern->bits;
    const int bytes = bits == 4 ? QBLOCK / 2 : QBLOCK;
    const uint8_t* w = t->codes + n * nb * bytes;
    const float* x = t->a + r * k;
    const float zp = bits == 4 ? 8.0f : 128.0f;
    float acc = 0.0f;
    for (int64_t b = 0; b < nb; b++) {
        const float s = half_to_float(t->scales[n * nb + b]);
        const float base = t->mins ? half_to_float(t->mins[offset_index(n, b, nb)]) : -zp * s;
        for (int i = 0; i < QBLOCK; i++) {
            const int q = bits == 4 ? (w[b * 16 + i / 2] >> (4 * (i & 1))) & 15 : w[b * 32 + i];
            acc += (s * (float)q + base) * x[b * QBLOCK + i];
        }
    }
    return acc;
}

void edgelm_qmm_rows_portable(const Task* t, int64_t n0, int64_t n1) {
    const int64_t nrows = t->kern->n;
    for (int64_t n = n0; n < n1; n++)
        for (int64_t r = 0; r < t->m; r++) t->y[r * nrows + n] = dot_scalar(t, n, r);
}

void edgelm_qmm_float_rows_portable(const Task* t, int64_t n0, int64_t n1) {
    const int64_t nrows = t->kern->n;
    for (int64_t n = n0; n < n1; n++)
        for (int64_t r = 0; r < t->m; r++) t->y[r * nrows + n] = dot_float_scalar(t, n, r);
}
