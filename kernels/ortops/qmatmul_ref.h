/* The scalar pieces of BlockQuantMatMul that the portable reference and the vector kernels
 * share (static inline: each kernel file compiles them with its own target flags). */
#ifndef EDGELM_QMATMUL_REF_H
#define EDGELM_QMATMUL_REF_H
#include "qmatmul.h"

/* Quantize M rows of K activations (rows of 2K = [gate | up] with swiglu, through tmp),
 * in `bits` order, with SWIGLU(row) and QUANT(block) the kernels of the caller's level. */
#define QUANTIZE_ROWS_BODY(SWIGLU, QUANT)                                                            \
    const int64_t nb = k / QBLOCK;                                                                   \
    for (int64_t r = 0; r < m; r++) {                                                                \
        const float* x = a + r * k;                                                                  \
        if (swiglu) {                                                                                \
            SWIGLU(a + r * 2 * k, k, tmp);                                                           \
            x = tmp;                                                                                 \
        }                                                                                            \
        for (int64_t b = 0; b < nb; b++)                                                             \
            QUANT(x + b * QBLOCK, bits, zmul, qa + (r * nb + b) * QBLOCK, qz + (r * nb + b) * 8,      \
                  da + r * nb + b, sa + r * nb + b);                                                 \
    }

/* Min of row n, block b, in the four-row interleaved layout. */
static inline int64_t offset_index(int64_t n, int64_t b, int64_t nb) { return ((n >> 2) * nb + b) * 4 + (n & 3); }

/* The exact int32 dot of one block's codes with its activation codes, plus qz's zero-point
 * term (portable C; also the AVX-512 path's odd last block). */
static inline int32_t block_dot_int(const uint8_t* wb, const int16_t* q, int bits, int32_t qz0) {
    int32_t s = qz0;
    if (bits == 4)
        for (int i = 0; i < 16; i++) s += (wb[i] & 15) * q[i] + (wb[i] >> 4) * q[16 + i];
    else
        for (int i = 0; i < QBLOCK; i++) s += ((int)wb[i] - 128) * q[i];
    return s;
}

/* block_dot_int for 8-bit codes as stored (0..255) against activations in the 4-bit order
 * (the AVX-512 decode layout's odd last block). */
static inline int32_t block_dot_int_u8(const uint8_t* wb, const int16_t* q, int32_t qz0) {
    int32_t s = qz0;
    for (int i = 0; i < QBLOCK; i++) s += (int32_t)wb[i] * q[(i & 1) * 16 + (i >> 1)];
    return s;
}

#endif
