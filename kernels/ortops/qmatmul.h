/* BlockQuantMatMul's types and kernels, shared by qmatmul.c (the ONNX Runtime plumbing),
 * qmatmul_generic.c (the portable reference) and the per-architecture kernel files
 * (arch/x86/, arch/arm/). Which kernels a call runs is kernels.c's table. */
#ifndef EDGELM_QMATMUL_H
#define EDGELM_QMATMUL_H
#include <stdint.h>

#include "ortabi.h"

#define QBLOCK 32
#define PREFILL_ROWS 8 /* from this many rows of A on, the float prefill kernel */

typedef struct {
    const OrtApi* api;
    int64_t k, n, bits;
    int64_t swiglu; /* A is [..., 2K] = [gate | up]; the product takes silu(gate) * up */
    /* Per weight input (1 qweight, 2 scales, 3 mins): the data of a constant initializer
     * already checked against K, N and bits when the kernel was created, so compute skips
     * the shape query for it (three per linear per token cost 2-8% of decode). Any other
     * input (not constant, or other data) is checked on every call. */
    const void* checked[4];
} Kernel;

/* Activations of one call, quantized once and read by every output row. Per row r and
 * block b: 32 int16 codes (in the order the weight codes unpack), the scale and the
 * sum of its quantized values (times the scale). */
typedef struct {
    const Kernel* kern;
    const float* a;    /* float activations [m, K] (prefill path) */
    const uint8_t* codes;
    const uint16_t* scales; /* float16 */
    const uint16_t* mins;   /* float16, four rows interleaved; NULL: symmetric */
    const int16_t* qa;
    const int32_t* qz; /* per row and block: 8 int32, the first the zero point's term (see quantize_block) */
    const float* da;
    const float* sa;
    float* y;
    int64_t m;
    int64_t rows_per_task;
    int vnni;                 /* activations are in the AVX-512 decode layout (see Quad) */
    const struct Quad* quads; /* its per-row, per-four-block terms (4-bit) */
    const struct OpKernels* ops; /* the kernel table (kernels.h) */
} Task;

/* The AVX-512 decode layout (decode rows, N a multiple of 4, a CPU with AVX-512 VNNI).
 * 4-bit: each run of four blocks holds its 128 activation codes as four vectors of 32
 * int16, A0..A3, where A_i[8 c + w] is element 4 w + i of block c: word w of a block's
 * codes (bytes 2w, 2w + 1) then carries elements 4w .. 4w + 3 in its four nibbles, so one
 * 64-byte load of codes (four blocks) gives all four products by masks and shifts, with no
 * widening, and the float scaling runs once per four blocks. Blocks past the last run of
 * four keep the ordinary order. 8-bit: blocks keep the 4-bit order (even elements, then
 * odd), so a 16-bit word of codes splits into its even and odd byte by a mask and a
 * shift. Codes are multiplied as stored (unsigned); qz's term carries the zero point. */
typedef struct Quad {
    int32_t z[16]; /* lane 4c: block c's zero-point term, the others 0 */
    float d[16];   /* lanes 4c .. 4c + 3: block c's activation scale */
    float s[16];   /* the same for its activation sum (what the mins multiply) */
} Quad;

/* The kernels, per instruction set (kernels.h says what each entry of the table does). */
void edgelm_quantize_rows_portable(const float* a, int64_t m, int64_t k, int order, int32_t zmul, int swiglu,
                                   float* tmp, int16_t* qa, int32_t* qz, float* da, float* sa);
void edgelm_swiglu_row_portable(const float* gate_up, int64_t k, float* out);
void edgelm_qmm_rows_portable(const Task* t, int64_t n0, int64_t n1);
void edgelm_qmm_float_rows_portable(const Task* t, int64_t n0, int64_t n1);

/* x86-64 (arch/x86/): AVX2 + FMA + F16C, and AVX-512 VNNI. */
void edgelm_quantize_rows_avx2(const float* a, int64_t m, int64_t k, int order, int32_t zmul, int swiglu, float* tmp,
                               int16_t* qa, int32_t* qz, float* da, float* sa);
void edgelm_swiglu_row_avx2(const float* gate_up, int64_t k, float* out);
void edgelm_qmm_rows_avx2(const Task* t, int64_t n0, int64_t n1);
int edgelm_prefill_rows_avx2(const Task* t, int64_t n0, int64_t n1);
/* What the AVX-512 prefill shares with the AVX2 one: the task's weight rows dequantized
 * into this thread's buffer (NULL when it cannot be had), and 1 to 8 activation rows
 * against one dequantized weight row. */
float* edgelm_dequantize_rows_avx2(const Task* t, int64_t n0, int64_t n1);
void edgelm_rows_float_avx2(const Task* t, const float* wrow, int64_t n, int64_t r, int rows);
void edgelm_arrange_avx512(int16_t* qa, const int32_t* qz, const float* da, const float* sa, Quad* quads, int64_t m,
                           int64_t nb, int64_t nq);
void edgelm_qmm_rows_avx512(const Task* t, int64_t n0, int64_t n1);
int edgelm_prefill_rows_avx512(const Task* t, int64_t n0, int64_t n1);

/* aarch64 (arch/arm/): rows n0 .. n1 - 1 of the output for every activation row, from the
 * quantized activations (exact int32 block sums, then the same float scaling as the
 * portable dot_scalar, in the same order: the outputs are bit-identical to it). */
void edgelm_quantize_rows_neon(const float* a, int64_t m, int64_t k, int order, int32_t zmul, int swiglu, float* tmp,
                               int16_t* qa, int32_t* qz, float* da, float* sa);
void edgelm_qmm_rows_neon(const Task* t, int64_t n0, int64_t n1);
void edgelm_qmm_rows_dotprod(const Task* t, int64_t n0, int64_t n1);
/* Four activation rows at a time by SMMLA / USMMLA (prefill), on dotprod's split activations. */
void edgelm_qmm_rows_i8mm(const Task* t, int64_t n0, int64_t n1);
/* Before edgelm_qmm_rows_dotprod: each block's int16 codes, in place, as its high and low
 * bytes (the arrange entry's signature; only qa and m x nb are used). */
void edgelm_arrange_dotprod(int16_t* qa, const int32_t* qz, const float* da, const float* sa, Quad* quads, int64_t m,
                            int64_t nb, int64_t nq);
/* quantize_block (qmatmul_generic.c) on NEON, bit-identical: the codes, the scale, the sum. */
void edgelm_quantize_block_neon(const float* x, int bits, int32_t zmul, int16_t* q, int32_t* qz, float* d_out,
                                float* sum_out);

#endif
