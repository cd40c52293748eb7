/* The kernel table (kernels.h), one row per instruction-set level (isa.h), chosen once
 * when the library loads. The only file that names kernels per architecture: a level's row
 * lists what it runs, and a level with nothing better for an entry names the level below's
 * (dotprod's quantization is NEON's; i8mm's decode rows are dotprod's). */
#include "kernels.h"

#include "isa.h"

/* Level 0 on every architecture. */
#define PORTABLE_LEVEL                                                                                        \
    {edgelm_quantize_rows_portable, 0, NULL, edgelm_qmm_rows_portable, NULL, edgelm_swiglu_row_portable, \
     edgelm_attend_row_portable, edgelm_to_half_portable}

#if defined(__x86_64__) || defined(__i386__)
static const OpKernels levels[] = {
    PORTABLE_LEVEL,
    {edgelm_quantize_rows_avx2, 0, NULL, edgelm_qmm_rows_avx2, edgelm_prefill_rows_avx2,
     edgelm_swiglu_row_avx2, edgelm_attend_row_avx2, edgelm_to_half_avx2},
    {edgelm_quantize_rows_avx2, 1, edgelm_arrange_avx512, edgelm_qmm_rows_avx512,
     edgelm_prefill_rows_avx512, edgelm_swiglu_row_avx2, edgelm_attend_row_avx2, edgelm_to_half_avx2},
};
#elif defined(__aarch64__)
/* No float prefill on Arm (yet): prefill quantizes its rows like decode, which keeps every
 * Arm output bit-identical to the portable path's. */
static const OpKernels levels[] = {
    PORTABLE_LEVEL,
    {edgelm_quantize_rows_neon, 0, NULL, edgelm_qmm_rows_neon, NULL, edgelm_swiglu_row_portable,
     edgelm_attend_row_neon, edgelm_to_half_neon},
    {edgelm_quantize_rows_neon, 0, edgelm_arrange_dotprod, edgelm_qmm_rows_dotprod, NULL,
     edgelm_swiglu_row_portable, edgelm_attend_row_neon, edgelm_to_half_neon},
    {edgelm_quantize_rows_neon, 0, edgelm_arrange_dotprod, edgelm_qmm_rows_i8mm, NULL,
     edgelm_swiglu_row_portable, edgelm_attend_row_neon, edgelm_to_half_neon},
};
#else
static const OpKernels levels[] = {
    PORTABLE_LEVEL,
};
#endif

static const OpKernels* table = &levels[0];

/* When the library loads (dlopen runs it before RegisterCustomOps): the probe, capped by
 * EDGELM_ORTOPS_ISA, picks the row. */
__attribute__((constructor)) static void choose(void) {
    const int level = edgelm_isa();
    const int last = (int)(sizeof levels / sizeof levels[0]) - 1;
    table = &levels[level < last ? level : last];
}

const OpKernels* edgelm_kernels(void) { return table; }
