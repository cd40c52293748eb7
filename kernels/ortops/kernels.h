/* The table of kernel functions the operators call: one entry per job (quantize a call's
 * activations, arrange them for its rows, the decode rows, the float prefill rows, SwiGLU,
 * an attention row, float16 narrowing), filled once when the library loads (kernels.c)
 * from the CPU probe and EDGELM_ORTOPS_ISA (isa.c). The operators' plumbing (qmatmul.c,
 * attention.c) reads only this table, so it has no per-architecture code; the kernels are
 * in qmatmul_generic.c / attention_generic.c (the portable reference) and arch/x86/,
 * arch/arm/ (one file per kernel and instruction set). */
#ifndef EDGELM_KERNELS_H
#define EDGELM_KERNELS_H
#include "attention.h"
#include "qmatmul.h"

/* One row per level (isa.h orders and names them). */
typedef struct OpKernels {
    /* M rows of K activations (of 2K = [gate | up], SwiGLU first, with swiglu) to int16
     * codes per 32-block in `order` (4: even elements then odd; 8: natural), with each
     * block's zero-point term (zmul x the sum of its codes), scale and scaled sum. */
    void (*quantize_rows)(const float* a, int64_t m, int64_t k, int order, int32_t zmul, int swiglu, float* tmp,
                          int16_t* qa, int32_t* qz, float* da, float* sa);
    /* Nonzero: decode rows (M < PREFILL_ROWS, N a multiple of 4) use the AVX-512 decode
     * layout (see Quad): 8-bit codes uncentred, activations in the 4-bit order. */
    int decode_layout;
    /* After quantize_rows, before any row reads them: the activations rearranged in place
     * for this level's rows (nq: runs of four blocks in the decode layout, else 0); NULL
     * when the rows read them as quantized. */
    void (*arrange)(int16_t* qa, const int32_t* qz, const float* da, const float* sa, Quad* quads, int64_t m,
                    int64_t nb, int64_t nq);
    /* Output rows n0 .. n1 - 1 (a task; n0 a multiple of 4) for every activation row, from
     * the quantized activations. */
    void (*rows)(const Task* t, int64_t n0, int64_t n1);
    /* The same from float activations (t->a) for M >= PREFILL_ROWS; 0 if it could not run
     * (its buffer), and then the portable float rows run. NULL: prefill quantizes too. */
    int (*prefill_rows)(const Task* t, int64_t n0, int64_t n1);
    /* silu(gate) * up of one row, for the float prefill's activation pass. */
    void (*swiglu_row)(const float* gate_up, int64_t k, float* out);
    AttendRowFn attend_row;
    void (*to_half)(const float* x, int64_t n, uint16_t* y);
} OpKernels;

/* The table for this CPU (never NULL). */
const OpKernels* edgelm_kernels(void);

#endif
