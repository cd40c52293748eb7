/* exp(x) for x <= 0 without libm: the one definition the sampling kernels and edgelm's
 * ONNX Runtime operators (kernels/ortops/shared_math.h) share.
 *
 * exp(x) = 2^t with t = x log2(e), split as t = n + f: n = t rounded to the nearest integer
 * (ties to even, by adding and subtracting 1.5 x 2^23), so f is in [-0.5, 0.5]; 2^n is built
 * in the exponent bits and 2^f by the degree-6 Taylor polynomial of 2^f (coefficients
 * ln(2)^k / k!). Branch-free, so loops that call it vectorize.
 *
 * Error bound: |result / exp(x) - 1| <= EDGELM_EXP_REL_ERROR + EDGELM_EXP_REL_ERROR_PER_UNIT x |x|
 * for x in [-87, 0], i.e. <= 3e-7 near 0 and <= 6.4e-6 at -87, with the operations evaluated
 * one at a time (FP contraction off). The polynomial's share is ~2e-7; the rest is the
 * float32 rounding of x log2(e), which grows with |x| (a sampler's or a softmax's exp(x - max)
 * is large only where |x| is small). tests/test_exp.py checks the bound against float64
 * over every 61st float32 in [-87, 0]. Below -87 the argument is clamped: the result is
 * exp(-87) ~ 1.6e-38 (2^-126 times the polynomial), never a subnormal or zero. */
#ifndef EDGELM_EXP_H
#define EDGELM_EXP_H
#include <stdint.h>
#include <string.h>

#define EDGELM_EXP_REL_ERROR 3e-7f
#define EDGELM_EXP_REL_ERROR_PER_UNIT 7e-8f
#define EDGELM_EXP_MIN_ARG (-87.0f)
#define EDGELM_LOG2E 1.44269504088896341f
#define EDGELM_ROUND_MAGIC 12582912.0f /* 1.5 x 2^23 */
/* ln(2)^k / k!, k = 6 .. 0 (highest degree first, for Horner's rule). */
#define EDGELM_EXP2_C6 1.5403530393381606e-4f
#define EDGELM_EXP2_C5 1.3333558146428443e-3f
#define EDGELM_EXP2_C4 9.6181291076284772e-3f
#define EDGELM_EXP2_C3 5.5504108664821580e-2f
#define EDGELM_EXP2_C2 2.4022650695910072e-1f
#define EDGELM_EXP2_C1 6.9314718055994531e-1f
#define EDGELM_EXP2_C0 1.0f

static inline float edgelm_exp_nonpos(float x) {
    x = x < EDGELM_EXP_MIN_ARG ? EDGELM_EXP_MIN_ARG : x;
    const float t = x * EDGELM_LOG2E;
    const float n = (t + EDGELM_ROUND_MAGIC) - EDGELM_ROUND_MAGIC;
    const float f = t - n;
    float p = EDGELM_EXP2_C6;
    p = p * f + EDGELM_EXP2_C5;
    p = p * f + EDGELM_EXP2_C4;
    p = p * f + EDGELM_EXP2_C3;
    p = p * f + EDGELM_EXP2_C2;
    p = p * f + EDGELM_EXP2_C1;
    p = p * f + EDGELM_EXP2_C0;
    const int32_t bits = ((int32_t)n + 127) << 23;
    float scale;
    memcpy(&scale, &bits, sizeof scale);
    return p * scale;
}

#ifdef EDGELM_SIMD_H
/* edgelm_exp_nonpos on four lanes: the same float operations in the same order, so the
 * same bits as the scalar function. */
static inline edgelm_v4f edgelm_exp_nonpos4(edgelm_v4f x) {
    const edgelm_v4f lo = {EDGELM_EXP_MIN_ARG, EDGELM_EXP_MIN_ARG, EDGELM_EXP_MIN_ARG, EDGELM_EXP_MIN_ARG};
    x = edgelm_sel4(x < lo, lo, x);
    const edgelm_v4f t = x * EDGELM_LOG2E;
    const edgelm_v4f n = (t + EDGELM_ROUND_MAGIC) - EDGELM_ROUND_MAGIC;
    const edgelm_v4f f = t - n;
    edgelm_v4f p = f * EDGELM_EXP2_C6 + EDGELM_EXP2_C5;
    p = p * f + EDGELM_EXP2_C4;
    p = p * f + EDGELM_EXP2_C3;
    p = p * f + EDGELM_EXP2_C2;
    p = p * f + EDGELM_EXP2_C1;
    p = p * f + EDGELM_EXP2_C0;
    const edgelm_v4i bits = (__builtin_convertvector(n, edgelm_v4i) + 127) << 23;
    return p * (edgelm_v4f)bits;
}
#endif

#endif
