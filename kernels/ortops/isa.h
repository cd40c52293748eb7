/* The instruction set edgelm's operators use: probed once per process, capped by
 * EDGELM_ORTOPS_ISA (tests pin each path on one CPU), read by every operator through
 * edgelm_isa(). Levels are ordered within an architecture:
 *   x86-64   portable < avx2 (AVX2 + FMA + F16C) < avx512 (F, BW, VL, VNNI)
 *   aarch64  portable < neon (Advanced SIMD, every armv8-a core) < dotprod (SDOT, armv8.2-a+)
 *            < i8mm (SMMLA, armv8.6-a+: prefill rows; decode is dotprod's)
 * EDGELM_ORTOPS_PORTABLE=1 is the older spelling of EDGELM_ORTOPS_ISA=portable. */
#ifndef EDGELM_ISA_H
#define EDGELM_ISA_H

enum { ISA_PORTABLE = 0, ISA_AVX2 = 1, ISA_AVX512 = 2 };
enum { ISA_NEON = 1, ISA_DOTPROD = 2, ISA_I8MM = 3 };

int edgelm_isa(void);

#endif
