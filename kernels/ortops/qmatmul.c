/* edgelm's ONNX Runtime custom operator: BlockQuantMatMul (domain "ai.edgelm").
 *
 *     Y[..., n] = sum_k A[..., k] * W[n, k]
 *     W[n, k]   = scales[n, b] * (q[n, k] - zp)      without mins (zp 8 / 128)
 *     W[n, k]   = scales[n, b] * q[n, k] + mins[n, b] with mins,   b = k / 32
 *
 * with q the 4-bit or 8-bit codes packed exactly as MatMulNBits reads them ([N, K/32, 16]
 * or [N, K/32, 32] bytes, 4-bit: element 2i in the low nibble) and scales [N, K/32] in
 * float16. `mins` (float16) is optional (symmetric formats); it is stored four rows
 * interleaved, [ceil(N/4), K/32, 4], so one vector load serves the four rows a pass
 * computes. This is GGUF Q4_1 (d and m, both float16 in the file) and Q8_0 in one node,
 * at GGUF's 20 / 34 bytes a block: decode streams the weights from DRAM, so the bytes
 * per token set its pace. ONNX Runtime's MatMulNBits has no fast path for a float
 * per-block offset, so edgelm's graph used to add it with four more nodes per linear.
 *
 * Activations are quantized per 32-block to int16 (scale amax/32767), so the result is
 * within ~1e-5 relative of the float product: the int8 activations of MatMulNBits'
 * accuracy level 4 (and of llama.cpp) flip near-tied next tokens. The products are
 * 16 x 16 -> 32-bit multiply-adds (AVX2 vpmaddwd; AVX-512 VNNI vpdpwssd), summed exactly
 * in int32 per block and scaled once per block. With AVX-512 VNNI, decode rows are laid out
 * so that 4-bit codes need no widening (see Quad): a single-thread linear on cache-resident
 * weights runs 1.1-1.4x faster than with the pair kernel (benchmarks/blockquant_matmul.py);
 * decode streaming the weights from DRAM gains ~1% (the bytes set its pace).
 *
 * With swiglu=1, A is [..., 2K] holding [gate | up] and the product takes silu(gate) * up
 * (the MLP's activation, folded into the down projection's activation pass).
 *
 * Built as a plain shared library (no Python), loaded with
 * SessionOptions.register_custom_ops_library(path). The onnxruntime wheel ships no C
 * headers, so the few ABI entries used are declared below: OrtApi is a table of function
 * pointers that ONNX Runtime only ever appends to, and OrtCustomOp a versioned struct.
 */
#include "ortabi.h"
#include "qmatmul.h"
#include "shared_math.h"

/* ---- the kernel ---- */

/* QBLOCK, Kernel, Task and Quad: qmatmul.h (the per-architecture kernel files share them). */




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
static inline void swiglu_row(const float* gate_up, int64_t k, float* out) {
    const float* g = gate_up;
    const float* u = gate_up + k;
    for (int64_t i = 0; i < k; i++) {
        const float e = exp_nonpos(-fabsf(g[i]));
        const float sig = g[i] >= 0.0f ? 1.0f / (1.0f + e) : e / (1.0f + e);
        out[i] = g[i] * sig * u[i];
    }
}

/* Quantize M rows of K activations (rows of 2K = [gate | up] with swiglu, through tmp). */
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

static void quantize_rows(const float* a, int64_t m, int64_t k, int bits, int32_t zmul, int swiglu, float* tmp,
                          int16_t* qa, int32_t* qz, float* da, float* sa) {
#ifdef EDGELM_ARM
    if (edgelm_isa() >= ISA_NEON) {
        /* SwiGLU stays the portable C: its codes must not move, or the block sums would */
        QUANTIZE_ROWS_BODY(swiglu_row, edgelm_quantize_block_neon)
        return;
    }
#endif
    QUANTIZE_ROWS_BODY(swiglu_row, quantize_block)
}

/* What qz adds per block, times the sum of the activation codes: the integer dots compute
 * sum q a for 4-bit codes and sum (q - 128) a for 8-bit ones; symmetric formats want
 * sum (q - zp) a with zp 8 / 128, formats with mins sum q a (W = scale * q + min). */
static inline int32_t zero_point_term(int bits, int has_mins) {
    if (bits == 4) return has_mins ? 0 : -8;
    return has_mins ? 128 : 0;
}

/* The same for the AVX-512 decode layout, whose kernels take 8-bit codes uncentred too. */
static inline int32_t zero_point_term_unsigned(int bits, int has_mins) {
    return has_mins ? 0 : (bits == 4 ? -8 : -128);
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

#ifdef EDGELM_X86
/* swiglu_row eight lanes at a time (the same exp polynomial; k a multiple of 8). */
__attribute__((target("avx2,fma,f16c"))) static void swiglu_row_avx2(const float* gate_up, int64_t k, float* out) {
    const float* g = gate_up;
    const float* u = gate_up + k;
    const __m256 one = _mm256_set1_ps(1.0f), sign = _mm256_set1_ps(-0.0f);
    for (int64_t i = 0; i < k; i += 8) {
        const __m256 gv = _mm256_loadu_ps(g + i);
        const __m256 e = exp_nonpos_avx2(_mm256_or_ps(gv, sign)); /* exp(-|g|) */
        /* sigmoid(g) = 1 / (1 + e) for g >= 0, e / (1 + e) below */
        const __m256 num = _mm256_blendv_ps(e, one, _mm256_cmp_ps(gv, _mm256_setzero_ps(), _CMP_GE_OQ));
        const __m256 sig = _mm256_div_ps(num, _mm256_add_ps(one, e));
        _mm256_storeu_ps(out + i, _mm256_mul_ps(_mm256_mul_ps(gv, sig), _mm256_loadu_ps(u + i)));
    }
}

/* quantize_block with AVX2, the same results: round to nearest even (vcvtps2dq), the
 * 4-bit order (even elements, then odd) by a byte shuffle. The scalar loop's running max
 * was most of a decode step's serial time. */
__attribute__((target("avx2,fma,f16c"))) static inline void quantize_block_avx2(const float* x, int bits, int32_t zmul,
                                                                              int16_t* q, int32_t* qz, float* d_out,
                                                                              float* sum_out) {
    const __m256 absmask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff));
    const __m256 v0 = _mm256_loadu_ps(x), v1 = _mm256_loadu_ps(x + 8), v2 = _mm256_loadu_ps(x + 16),
                 v3 = _mm256_loadu_ps(x + 24);
    __m256 m = _mm256_max_ps(_mm256_max_ps(_mm256_and_ps(v0, absmask), _mm256_and_ps(v1, absmask)),
                             _mm256_max_ps(_mm256_and_ps(v2, absmask), _mm256_and_ps(v3, absmask)));
    __m128 m4 = _mm_max_ps(_mm256_castps256_ps128(m), _mm256_extractf128_ps(m, 1));
    m4 = _mm_max_ps(m4, _mm_movehl_ps(m4, m4));
    m4 = _mm_max_ss(m4, _mm_shuffle_ps(m4, m4, 1));
    const float amax = _mm_cvtss_f32(m4);
    const float d = amax / 32767.0f;
    const __m256 inv = _mm256_set1_ps(d > 0.0f ? 1.0f / d : 0.0f);
    const __m256i i0 = _mm256_cvtps_epi32(_mm256_mul_ps(v0, inv)), i1 = _mm256_cvtps_epi32(_mm256_mul_ps(v1, inv));
    const __m256i i2 = _mm256_cvtps_epi32(_mm256_mul_ps(v2, inv)), i3 = _mm256_cvtps_epi32(_mm256_mul_ps(v3, inv));
    /* int16 in natural order: packs interleaves 128-bit lanes, the permute undoes it */
    __m256i w0 = _mm256_permute4x64_epi64(_mm256_packs_epi32(i0, i1), 0xD8); /* x0..x15 */
    __m256i w1 = _mm256_permute4x64_epi64(_mm256_packs_epi32(i2, i3), 0xD8); /* x16..x31 */
    const __m256i s = _mm256_add_epi32(_mm256_add_epi32(i0, i1), _mm256_add_epi32(i2, i3));
    __m128i s4 = _mm_add_epi32(_mm256_castsi256_si128(s), _mm256_extracti128_si256(s, 1));
    s4 = _mm_add_epi32(s4, _mm_shuffle_epi32(s4, 0x4E));
    s4 = _mm_add_epi32(s4, _mm_shuffle_epi32(s4, 0xB1));
    const int32_t qsum = _mm_cvtsi128_si32(s4);
    if (bits == 4) {
        /* per 128-bit lane: the four even int16, then the four odd */
        const __m256i split = _mm256_setr_epi8(0, 1, 4, 5, 8, 9, 12, 13, 2, 3, 6, 7, 10, 11, 14, 15,
                                               0, 1, 4, 5, 8, 9, 12, 13, 2, 3, 6, 7, 10, 11, 14, 15);
        w0 = _mm256_permute4x64_epi64(_mm256_shuffle_epi8(w0, split), 0xD8); /* [even x0..14 | odd x1..15] */
        w1 = _mm256_permute4x64_epi64(_mm256_shuffle_epi8(w1, split), 0xD8); /* [even x16..30 | odd x17..31] */
        const __m256i even = _mm256_permute2x128_si256(w0, w1, 0x20), odd = _mm256_permute2x128_si256(w0, w1, 0x31);
        w0 = even;
        w1 = odd;
    }
    _mm256_storeu_si256((__m256i*)q, w0);
    _mm256_storeu_si256((__m256i*)(q + 16), w1);
    _mm256_storeu_si256((__m256i*)qz, _mm256_setr_epi32(zmul * qsum, 0, 0, 0, 0, 0, 0, 0));
    *d_out = d;
    *sum_out = d * (float)qsum;
}

__attribute__((target("avx2,fma,f16c"))) static void quantize_rows_avx2(const float* a, int64_t m, int64_t k, int bits,
                                                                  int32_t zmul, int swiglu, float* tmp, int16_t* qa,
                                                                  int32_t* qz, float* da, float* sa) {
    QUANTIZE_ROWS_BODY(swiglu_row_avx2, quantize_block_avx2)
}

__attribute__((target("avx2,fma,f16c"))) static inline float hsum8(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_shuffle_ps(s, s, 1));
    return _mm_cvtss_f32(s);
}

/* Four halves (the mins of four interleaved rows) as floats. */
__attribute__((target("avx2,fma,f16c"))) static inline __m128 half4(const uint16_t* p) {
    return _mm_cvtph_ps(_mm_loadl_epi64((const __m128i*)p));
}

/* The 32 codes of one block as two vectors of 16 int16, in the order quantize_block stores
 * the activations: 4-bit codes as stored (0..15; the zero point comes back through qz),
 * 8-bit codes centred (q - 128). */
__attribute__((target("avx2,fma,f16c"))) static inline void load_codes(const uint8_t* w, int bits, __m256i* lo,
                                                                 __m256i* hi) {
    if (bits == 4) {
        /* each int16 holds one byte: its low nibble is element 2i, its high nibble 2i + 1 */
        const __m256i x = _mm256_cvtepu8_epi16(_mm_loadu_si128((const __m128i*)w));
        *lo = _mm256_and_si256(x, _mm256_set1_epi16(15));
        *hi = _mm256_srli_epi16(x, 4);
    } else {
        const __m128i flip = _mm_set1_epi8((char)0x80);
        *lo = _mm256_cvtepi8_epi16(_mm_xor_si128(_mm_loadu_si128((const __m128i*)w), flip));
        *hi = _mm256_cvtepi8_epi16(_mm_xor_si128(_mm_loadu_si128((const __m128i*)(w + 16)), flip));
    }
}

/* Four weight rows against one activation row: each activation block is loaded once. */
__attribute__((target("avx2,fma,f16c"))) static void dot4_avx2(const Task* t, int64_t n, int64_t r, float* out,
                                                         int64_t stride) {
    const int64_t nb = t->kern->k / QBLOCK;
    const int bits = (int)t->kern->bits;
    const int bytes = bits == 4 ? QBLOCK / 2 : QBLOCK;
    const int16_t* qa = t->qa + r * nb * QBLOCK;
    const int32_t* qz = t->qz + r * nb * 8;
    const float* da = t->da + r * nb;
    const uint8_t* w = t->codes + n * nb * bytes;
    const uint16_t* sc = t->scales + n * nb;
    const float* sa = t->sa + r * nb;
    const uint16_t* off = t->mins ? t->mins + (n >> 2) * nb * 4 : NULL;
    __m256 acc[4] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps()};
    __m128 corr = _mm_setzero_ps();
    /* The next four rows, two cache lines a block: the head (8-bit, 28 MB for SmolLM2) streams
       from DRAM, and the hardware prefetcher alone leaves it latency-bound. */
    const char* next = (const char*)(w + 4 * nb * bytes);
    for (int64_t b = 0; b < nb; b++) {
        _mm_prefetch(next + b * 4 * bytes, _MM_HINT_T0);
        _mm_prefetch(next + b * 4 * bytes + 64, _MM_HINT_T0);
        if (off) corr = _mm_fmadd_ps(half4(off + b * 4), _mm_set1_ps(sa[b]), corr);
        const __m256 d = _mm256_broadcast_ss(da + b);
        const __m256i qlo = _mm256_loadu_si256((const __m256i*)(qa + b * QBLOCK));
        const __m256i qhi = _mm256_loadu_si256((const __m256i*)(qa + b * QBLOCK + 16));
        const __m256i z = _mm256_loadu_si256((const __m256i*)(qz + b * 8));
        for (int j = 0; j < 4; j++) {
            __m256i lo, hi;
            load_codes(w + (j * nb + b) * bytes, bits, &lo, &hi);
            const __m256i s = _mm256_add_epi32(_mm256_add_epi32(_mm256_madd_epi16(lo, qlo), _mm256_madd_epi16(hi, qhi)), z);
            acc[j] = _mm256_fmadd_ps(_mm256_mul_ps(_mm256_cvtepi32_ps(s), d), _mm256_set1_ps(_cvtsh_ss(sc[j * nb + b])),
                                     acc[j]);
        }
    }
    float c[4];
    _mm_storeu_ps(c, corr);
    for (int j = 0; j < 4; j++) out[j * stride] = hsum8(acc[j]) + c[j];
}

/* The same four rows with AVX-512 VNNI, two blocks a step. vpdpwssd multiplies 16-bit pairs
 * and adds them into int32 lanes in one instruction; a 512-bit register holds the low-nibble
 * halves of blocks b and b + 1 ([16 of b | 16 of b+1] words), another the high-nibble halves,
 * so int32 lanes 0-7 sum block b and lanes 8-15 block b + 1 and the float scaling runs once
 * per two blocks. The int32 sums are the AVX2 path's exactly; only the float adds differ in
 * order. */
__attribute__((target("avx512f,avx512bw,avx512vl,avx512vnni,fma,f16c"))) static inline __m512 pair_scale(__m128 p) {
    /* [p[0] x 8 | p[1] x 8] */
    const __m512i idx = _mm512_set_epi32(1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0);
    return _mm512_permutexvar_ps(idx, _mm512_castps128_ps512(p));
}

/* Two consecutive halves as floats (in lanes 0 and 1). */
__attribute__((target("avx2,fma,f16c"))) static inline __m128 half2(const uint16_t* p) {
    int32_t bits;
    memcpy(&bits, p, sizeof bits);
    return _mm_cvtph_ps(_mm_cvtsi32_si128(bits));
}

#define TARGET_AVX512 __attribute__((target("avx512f,avx512bw,avx512vl,avx512vnni,fma,f16c")))

/* The sums of four vectors, side by side. */
TARGET_AVX512 static inline __m128 sum4_avx512(const __m512* v) {
    __m256 h[4];
    for (int j = 0; j < 4; j++)
        h[j] = _mm256_add_ps(_mm512_castps512_ps256(v[j]), _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(v[j]), 1)));
    const __m256 q = _mm256_hadd_ps(_mm256_hadd_ps(h[0], h[1]), _mm256_hadd_ps(h[2], h[3]));
    return _mm_add_ps(_mm256_castps256_ps128(q), _mm256_extractf128_ps(q, 1));
}

/* How the pair kernel reads codes and activations: 4-bit (either layout: its blocks are
 * in the 4-bit order in both), 8-bit centred against natural order, or 8-bit as stored
 * against the 4-bit order (the decode layout). */
enum { PAIRS_Q4 = 0, PAIRS_Q8 = 1, PAIRS_U8 = 2 };

/* Blocks b0 .. nb - 1 of four rows, two a step, added to c[0..3]. */
TARGET_AVX512 __attribute__((always_inline)) static inline void pairs_avx512(const Task* t, int64_t n, int64_t r,
                                                                            int64_t b0, const int mode, float* c) {
    const int64_t nb = t->kern->k / QBLOCK;
    const int bytes = mode == PAIRS_Q4 ? QBLOCK / 2 : QBLOCK;
    const int16_t* qa = t->qa + r * nb * QBLOCK;
    const int32_t* qz = t->qz + r * nb * 8;
    const float* da = t->da + r * nb;
    const uint8_t* w = t->codes + n * nb * bytes;
    const uint16_t* sc = t->scales + n * nb;
    const float* sa = t->sa + r * nb;
    const uint16_t* off = t->mins ? t->mins + (n >> 2) * nb * 4 : NULL;
    __m512 acc[4] = {_mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps()};
    __m128 corr = _mm_setzero_ps();
    const char* next = (const char*)(w + 4 * nb * bytes);
    const __m512i low4 = _mm512_set1_epi16(15), low8 = _mm512_set1_epi16(255);
    const __m256i flip = _mm256_set1_epi8((char)0x80);
    int64_t b = b0;
    for (; b + 2 <= nb; b += 2) {
        for (int l = 0; l < 8 * bytes; l += 64) _mm_prefetch(next + b * 4 * bytes + l, _MM_HINT_T0);
        if (off) {
            corr = _mm_fmadd_ps(half4(off + b * 4), _mm_set1_ps(sa[b]), corr);
            corr = _mm_fmadd_ps(half4(off + b * 4 + 4), _mm_set1_ps(sa[b + 1]), corr);
        }
        const __m512i a0 = _mm512_loadu_si512((const void*)(qa + b * QBLOCK));
        const __m512i a1 = _mm512_loadu_si512((const void*)(qa + b * QBLOCK + QBLOCK));
        const __m512i alo = _mm512_shuffle_i64x2(a0, a1, 0x44); /* first halves of b, b + 1 */
        const __m512i ahi = _mm512_shuffle_i64x2(a0, a1, 0xEE); /* second halves */
        const __m512i z = _mm512_loadu_si512((const void*)(qz + b * 8));
        const __m512 d = pair_scale(_mm_castpd_ps(_mm_load_sd((const double*)(da + b))));
#pragma GCC unroll 4
        for (int j = 0; j < 4; j++) {
            const uint8_t* wj = w + (j * nb + b) * bytes;
            __m512i lo, hi;
            if (mode == PAIRS_Q4) {
                const __m512i x = _mm512_cvtepu8_epi16(_mm256_loadu_si256((const __m256i*)wj));
                lo = _mm512_and_si512(x, low4);
                hi = _mm512_srli_epi16(x, 4);
            } else if (mode == PAIRS_U8) {
                /* both blocks' 64 codes: each word's low byte is an even element, its high byte the next */
                const __m512i x = _mm512_loadu_si512((const void*)wj);
                lo = _mm512_and_si512(x, low8);
                hi = _mm512_srli_epi16(x, 8);
            } else {
                const __m256i c0 = _mm256_loadu2_m128i((const __m128i*)(wj + 32), (const __m128i*)wj);
                const __m256i c1 = _mm256_loadu2_m128i((const __m128i*)(wj + 48), (const __m128i*)(wj + 16));
                lo = _mm512_cvtepi8_epi16(_mm256_xor_si256(c0, flip));
                hi = _mm512_cvtepi8_epi16(_mm256_xor_si256(c1, flip));
            }
            const __m512i s = _mm512_dpwssd_epi32(_mm512_dpwssd_epi32(z, lo, alo), hi, ahi);
            acc[j] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(s), _mm512_mul_ps(d, pair_scale(half2(sc + j * nb + b))), acc[j]);
        }
    }
    float sums[4];
    _mm_storeu_ps(sums, _mm_add_ps(sum4_avx512(acc), corr));
    for (int j = 0; j < 4; j++) c[j] += sums[j];
    if (b < nb) { /* an odd last block */
        if (off) {
            float o[4];
            _mm_storeu_ps(o, half4(off + b * 4));
            for (int j = 0; j < 4; j++) c[j] += o[j] * sa[b];
        }
        for (int j = 0; j < 4; j++) {
            const uint8_t* wb = w + (j * nb + b) * bytes;
            const int32_t s = mode == PAIRS_U8 ? block_dot_int_u8(wb, qa + b * QBLOCK, qz[b * 8])
                                               : block_dot_int(wb, qa + b * QBLOCK, mode == PAIRS_Q4 ? 4 : 8, qz[b * 8]);
            c[j] += (float)s * (_cvtsh_ss(sc[j * nb + b]) * da[b]);
        }
    }
}

/* Four rows, two blocks a step: 4-bit codes in either layout, 8-bit in the task's. */
TARGET_AVX512 static void dot4_avx512(const Task* t, int64_t n, int64_t r, float* out, int64_t stride) {
    float c[4] = {0.0f, 0.0f, 0.0f, 0.0f};
    if (t->kern->bits == 4)
        pairs_avx512(t, n, r, 0, PAIRS_Q4, c);
    else if (t->vnni)
        pairs_avx512(t, n, r, 0, PAIRS_U8, c);
    else
        pairs_avx512(t, n, r, 0, PAIRS_Q8, c);
    for (int j = 0; j < 4; j++) out[j * stride] = c[j];
}

/* Four rows of 4-bit codes in the decode layout, four blocks a step: per row, one 64-byte
 * load, four vpdpwssd and one float scaling for 128 weights (the pair kernel: two widening
 * loads, four vpdpwssd and two scalings). The int32 sums per block are the same; lanes
 * 4c .. 4c + 3 hold block c's. */
TARGET_AVX512 static void dot4_quads_q4(const Task* t, int64_t n, int64_t r, float* out, int64_t stride) {
    const int64_t nb = t->kern->k / QBLOCK, nq = nb / 4;
    const int16_t* qa = t->qa + r * nb * QBLOCK;
    const Quad* quad = t->quads + r * nq;
    const uint8_t* w = t->codes + n * nb * 16;
    const uint16_t* sc = t->scales + n * nb;
    const uint16_t* off = t->mins ? t->mins + (n >> 2) * nb * 4 : NULL;
    const char* next = (const char*)(w + 4 * nb * 16);
    const __m512i low4 = _mm512_set1_epi16(15);
    const __m512i spread = _mm512_set_epi32(3, 3, 3, 3, 2, 2, 2, 2, 1, 1, 1, 1, 0, 0, 0, 0);
    __m512 acc[4] = {_mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps()};
    __m512 corr = _mm512_setzero_ps();
    for (int64_t q = 0; q < nq; q++) {
        for (int l = 0; l < 4 * 64; l += 64) _mm_prefetch(next + q * 4 * 64 + l, _MM_HINT_T0);
        const int16_t* aq = qa + q * 4 * QBLOCK;
        const __m512i a0 = _mm512_loadu_si512((const void*)aq), a1 = _mm512_loadu_si512((const void*)(aq + 32));
        const __m512i a2 = _mm512_loadu_si512((const void*)(aq + 64)), a3 = _mm512_loadu_si512((const void*)(aq + 96));
        const __m512i z = _mm512_loadu_si512((const void*)quad[q].z);
        const __m512 d = _mm512_loadu_ps(quad[q].d);
        if (off) /* the four blocks' mins of the four rows, lane 4c + j */
            corr = _mm512_fmadd_ps(_mm512_cvtph_ps(_mm256_loadu_si256((const __m256i*)(off + q * 16))),
                                   _mm512_loadu_ps(quad[q].s), corr);
#pragma GCC unroll 4
        for (int j = 0; j < 4; j++) {
            const __m512i x = _mm512_loadu_si512((const void*)(w + (j * nb + 4 * q) * 16));
            __m512i s = _mm512_dpwssd_epi32(z, _mm512_and_si512(x, low4), a0);
            s = _mm512_dpwssd_epi32(s, _mm512_and_si512(_mm512_srli_epi16(x, 4), low4), a1);
            s = _mm512_dpwssd_epi32(s, _mm512_and_si512(_mm512_srli_epi16(x, 8), low4), a2);
            s = _mm512_dpwssd_epi32(s, _mm512_srli_epi16(x, 12), a3);
            const __m128 s4 = _mm_cvtph_ps(_mm_loadl_epi64((const __m128i*)(sc + j * nb + 4 * q)));
            const __m512 ws = _mm512_permutexvar_ps(spread, _mm512_castps128_ps512(s4));
            acc[j] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(s), _mm512_mul_ps(d, ws), acc[j]);
        }
    }
    float c[4];
    /* corr's lane 4c + j belongs to row j: the four 128-bit lanes add up to the rows' sums */
    const __m256 corr8 = _mm256_add_ps(_mm512_castps512_ps256(corr),
                                       _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(corr), 1)));
    const __m128 corr4 = _mm_add_ps(_mm256_castps256_ps128(corr8), _mm256_extractf128_ps(corr8, 1));
    _mm_storeu_ps(c, _mm_add_ps(sum4_avx512(acc), corr4));
    if (4 * nq < nb) pairs_avx512(t, n, r, 4 * nq, PAIRS_Q4, c);
    for (int j = 0; j < 4; j++) out[j * stride] = c[j];
}

/* The decode layout from quantized rows (4-bit order, qz with zero_point_term_unsigned):
 * each run of four 4-bit blocks in place as A0..A3 (a word permutation per block, then
 * a 4 x 4 transpose of 128-bit lanes), and the run's terms and scales spread to the lanes
 * its kernel multiplies. 8-bit rows need nothing more. */
TARGET_AVX512 static void arrange_quads(int16_t* qa, const int32_t* qz, const float* da, const float* sa, Quad* quads,
                                        int64_t m, int64_t nb) {
    /* a block in the 4-bit order (x0, x2, .., x30, x1, x3, .., x31) -> x[4w + i] at 8i + w */
    static const int16_t order[32] = {0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30,
                                      1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31};
    const __m512i idx = _mm512_loadu_si512((const void*)order);
    const int64_t nq = nb / 4;
    for (int64_t r = 0; r < m; r++)
        for (int64_t q = 0; q < nq; q++) {
            int16_t* p = qa + (r * nb + 4 * q) * QBLOCK;
            const __m512i b0 = _mm512_permutexvar_epi16(idx, _mm512_loadu_si512((const void*)p));
            const __m512i b1 = _mm512_permutexvar_epi16(idx, _mm512_loadu_si512((const void*)(p + 32)));
            const __m512i b2 = _mm512_permutexvar_epi16(idx, _mm512_loadu_si512((const void*)(p + 64)));
            const __m512i b3 = _mm512_permutexvar_epi16(idx, _mm512_loadu_si512((const void*)(p + 96)));
            const __m512i t0 = _mm512_shuffle_i64x2(b0, b1, 0x44), t1 = _mm512_shuffle_i64x2(b0, b1, 0xEE);
            const __m512i t2 = _mm512_shuffle_i64x2(b2, b3, 0x44), t3 = _mm512_shuffle_i64x2(b2, b3, 0xEE);
            _mm512_storeu_si512((void*)p, _mm512_shuffle_i64x2(t0, t2, 0x88));        /* A0 */
            _mm512_storeu_si512((void*)(p + 32), _mm512_shuffle_i64x2(t0, t2, 0xDD)); /* A1 */
            _mm512_storeu_si512((void*)(p + 64), _mm512_shuffle_i64x2(t1, t3, 0x88)); /* A2 */
            _mm512_storeu_si512((void*)(p + 96), _mm512_shuffle_i64x2(t1, t3, 0xDD)); /* A3 */
            Quad* o = quads + r * nq + q;
            for (int c = 0; c < 4; c++) {
                const int64_t b = r * nb + 4 * q + c;
                for (int i = 0; i < 4; i++) {
                    o->z[4 * c + i] = i == 0 ? qz[b * 8] : 0;
                    o->d[4 * c + i] = da[b];
                    o->s[4 * c + i] = sa[b];
                }
            }
        }
}

/* Prefill (M >= 8), in float: a task's weight rows are dequantized once (offsets included,
 * natural order) into a per-thread buffer, then each row meets the activations eight rows
 * at a time, read straight from A: four FMAs per block and row, no activation
 * quantization (so prefill is exact up to float rounding). */
__attribute__((target("avx2,fma,f16c"))) static void dequantize_row_avx2(const Task* t, int64_t n, float* out) {
    const int64_t nb = t->kern->k / QBLOCK;
    const int bits = (int)t->kern->bits;
    const int bytes = bits == 4 ? QBLOCK / 2 : QBLOCK;
    const uint8_t* w = t->codes + n * nb * bytes;
    const uint16_t* sc = t->scales + n * nb;
    const float zp = bits == 4 ? 8.0f : 128.0f;
    for (int64_t b = 0; b < nb; b++) {
        __m128i c[4]; /* 32 codes as 4 x 8 bytes, natural order */
        if (bits == 4) {
            const __m128i p = _mm_loadu_si128((const __m128i*)(w + b * 16));
            const __m128i lo = _mm_and_si128(p, _mm_set1_epi8(15));
            const __m128i hi = _mm_and_si128(_mm_srli_epi16(p, 4), _mm_set1_epi8(15));
            const __m128i e0 = _mm_unpacklo_epi8(lo, hi), e1 = _mm_unpackhi_epi8(lo, hi);
            c[0] = e0;
            c[1] = _mm_srli_si128(e0, 8);
            c[2] = e1;
            c[3] = _mm_srli_si128(e1, 8);
        } else {
            const __m128i p0 = _mm_loadu_si128((const __m128i*)(w + b * 32));
            const __m128i p1 = _mm_loadu_si128((const __m128i*)(w + b * 32 + 16));
            c[0] = p0;
            c[1] = _mm_srli_si128(p0, 8);
            c[2] = p1;
            c[3] = _mm_srli_si128(p1, 8);
        }
        const float sb = _cvtsh_ss(sc[b]);
        const __m256 s = _mm256_set1_ps(sb);
        /* w = s * q + min, or s * q - zp * s without mins */
        const __m256 base = _mm256_set1_ps(t->mins ? _cvtsh_ss(t->mins[offset_index(n, b, nb)]) : -zp * sb);
        for (int j = 0; j < 4; j++)
            _mm256_storeu_ps(out + b * QBLOCK + j * 8,
                             _mm256_fmadd_ps(_mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(c[j])), s, base));
    }
}

__attribute__((target("avx2,fma,f16c"), always_inline)) static inline void rows_float_avx2(const Task* t, const float* wrow,
                                                                                     int64_t n, int64_t r,
                                                                                     const int rows) {
    const int64_t k = t->kern->k, nrows = t->kern->n;
    const float* a = t->a + r * k;
    __m256 acc[8];
    for (int i = 0; i < 8; i++) acc[i] = _mm256_setzero_ps();
    for (int64_t c = 0; c < k; c += 16) {
        const __m256 w0 = _mm256_loadu_ps(wrow + c), w1 = _mm256_loadu_ps(wrow + c + 8);
        for (int i = 0; i < rows; i++) {
            acc[i] = _mm256_fmadd_ps(w0, _mm256_loadu_ps(a + i * k + c), acc[i]);
            acc[i] = _mm256_fmadd_ps(w1, _mm256_loadu_ps(a + i * k + c + 8), acc[i]);
        }
    }
    for (int i = 0; i < rows; i++) t->y[(r + i) * nrows + n] = hsum8(acc[i]);
}

/* The full tile with a constant row count (the accumulators stay in registers), and the rest. */
__attribute__((target("avx2,fma,f16c"))) static void rows8_float_avx2(const Task* t, const float* wrow, int64_t n,
                                                                int64_t r) {
    rows_float_avx2(t, wrow, n, r, 8);
}

__attribute__((target("avx2,fma,f16c"))) static void rows_tail_float_avx2(const Task* t, const float* wrow, int64_t n,
                                                                    int64_t r, int rows) {
    rows_float_avx2(t, wrow, n, r, rows);
}

/* The prefill tile with AVX-512: four weight rows against six activation rows, 24
 * accumulators in registers, so each 16-column step loads 10 vectors for 24 FMAs (the
 * AVX2 tile loads 18 for 16). The four sums of one activation row land side by side in Y
 * and are reduced together. */
#define TILE_W 4
#define TILE_A 6

__attribute__((target("avx512f,avx512bw,avx512vl,avx512vnni,fma,f16c"), always_inline)) static inline void
tile_float_avx512(const Task* t, const float* w4, int64_t n, int64_t r, const int rows) {
    const int64_t k = t->kern->k, nrows = t->kern->n;
    const float* a = t->a + r * k;
    __m512 acc[TILE_A][TILE_W];
    for (int i = 0; i < TILE_A; i++)
        for (int j = 0; j < TILE_W; j++) acc[i][j] = _mm512_setzero_ps();
    for (int64_t c = 0; c < k; c += 16) {
        const __m512 w0 = _mm512_loadu_ps(w4 + c), w1 = _mm512_loadu_ps(w4 + k + c);
        const __m512 w2 = _mm512_loadu_ps(w4 + 2 * k + c), w3 = _mm512_loadu_ps(w4 + 3 * k + c);
        for (int i = 0; i < rows; i++) {
            const __m512 x = _mm512_loadu_ps(a + i * k + c);
            acc[i][0] = _mm512_fmadd_ps(w0, x, acc[i][0]);
            acc[i][1] = _mm512_fmadd_ps(w1, x, acc[i][1]);
            acc[i][2] = _mm512_fmadd_ps(w2, x, acc[i][2]);
            acc[i][3] = _mm512_fmadd_ps(w3, x, acc[i][3]);
        }
    }
    for (int i = 0; i < rows; i++) {
        __m256 h[TILE_W];
        for (int j = 0; j < TILE_W; j++)
            h[j] = _mm256_add_ps(_mm512_castps512_ps256(acc[i][j]), _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(acc[i][j]), 1)));
        const __m256 q = _mm256_hadd_ps(_mm256_hadd_ps(h[0], h[1]), _mm256_hadd_ps(h[2], h[3]));
        _mm_storeu_ps(t->y + (r + i) * nrows + n, _mm_add_ps(_mm256_castps256_ps128(q), _mm256_extractf128_ps(q, 1)));
    }
}

__attribute__((target("avx512f,avx512bw,avx512vl,avx512vnni,fma,f16c"))) static void tile6_float_avx512(
    const Task* t, const float* w4, int64_t n, int64_t r) {
    tile_float_avx512(t, w4, n, r, TILE_A);
}

__attribute__((target("avx512f,avx512bw,avx512vl,avx512vnni,fma,f16c"))) static void tile_tail_float_avx512(
    const Task* t, const float* w4, int64_t n, int64_t r, int rows) {
    tile_float_avx512(t, w4, n, r, rows);
}

/* Dequantized weight rows of the prefill task running on this thread. */
static __thread float* wbuf = NULL;
static __thread size_t wbuf_floats = 0;

static int have_avx2(void) { return edgelm_isa() >= ISA_AVX2; }
#endif

static void run_task(void* data, size_t index) {
    const Task* t = (const Task*)data;
    const int64_t n0 = (int64_t)index * t->rows_per_task;
    int64_t n1 = n0 + t->rows_per_task;
    const int64_t nrows = t->kern->n;
    if (n1 > nrows) n1 = nrows;
    int64_t n = n0;
#ifdef EDGELM_X86
    if (have_avx2() && t->a) {
        const int64_t k = t->kern->k;
        const size_t need = (size_t)(n1 - n0) * k;
        if (need > wbuf_floats) {
            float* grown = (float*)realloc(wbuf, need * sizeof(float));
            if (!grown) goto portable; /* out of memory: the slow path needs no buffer */
            wbuf = grown;
            wbuf_floats = need;
        }
        for (int64_t j = n0; j < n1; j++) dequantize_row_avx2(t, j, wbuf + (j - n0) * k);
        if (edgelm_isa() == ISA_AVX512) {
            const int64_t n4 = n0 + ((n1 - n0) & ~(int64_t)3); /* tasks start at multiples of 4 */
            for (int64_t r = 0; r < t->m; r += TILE_A) {
                const int rows = t->m - r >= TILE_A ? TILE_A : (int)(t->m - r);
                for (int64_t j = n0; j < n4; j += TILE_W) {
                    if (rows == TILE_A)
                        tile6_float_avx512(t, wbuf + (j - n0) * k, j, r);
                    else
                        tile_tail_float_avx512(t, wbuf + (j - n0) * k, j, r, rows);
                }
                for (int64_t j = n4; j < n1; j++) rows_tail_float_avx2(t, wbuf + (j - n0) * k, j, r, rows);
            }
            return;
        }
        /* eight activation rows (<= 48 KB) stay in cache while the task's weight rows pass */
        for (int64_t r = 0; r < t->m; r += 8)
            for (int64_t j = n0; j < n1; j++) {
                if (t->m - r >= 8)
                    rows8_float_avx2(t, wbuf + (j - n0) * k, j, r);
                else
                    rows_tail_float_avx2(t, wbuf + (j - n0) * k, j, r, (int)(t->m - r));
            }
        return;
    } else if (edgelm_isa() == ISA_AVX512 && (n & 3) == 0) {
        /* the decode layout (N a multiple of 4, so no rows are left for the portable loop) */
        const int quads = t->vnni && t->kern->bits == 4;
        for (; n + 4 <= n1; n += 4)
            for (int64_t r = 0; r < t->m; r++) {
                if (quads)
                    dot4_quads_q4(t, n, r, &t->y[r * nrows + n], 1);
                else
                    dot4_avx512(t, n, r, &t->y[r * nrows + n], 1);
            }
    } else if (have_avx2() && (n & 3) == 0) {
        for (; n + 4 <= n1; n += 4)
            for (int64_t r = 0; r < t->m; r++) dot4_avx2(t, n, r, &t->y[r * nrows + n], 1);
    }
portable:
#endif
#ifdef EDGELM_ARM
    if (!t->a && edgelm_isa() >= ISA_DOTPROD) {
        edgelm_qmm_rows_dotprod(t, n0, n1);
        return;
    }
    if (!t->a && edgelm_isa() >= ISA_NEON) {
        edgelm_qmm_rows_neon(t, n0, n1);
        return;
    }
#endif
    for (; n < n1; n++)
        for (int64_t r = 0; r < t->m; r++) t->y[r * nrows + n] = t->a ? dot_float_scalar(t, n, r) : dot_scalar(t, n, r);
}

/* ---- operator plumbing ---- */

/* Weight input `which` (1 qweight, 2 scales, 3 mins) against K, N and bits: exact element
 * counts, so no kernel reads past one; `count` is its element count (0: an omitted mins). */
static OrtStatus* check_weight(const Kernel* kern, const OrtApi* api, int which, const OrtValue* v, int64_t* count) {
    size_t wn = 0;
    int64_t wd[8];
    const int64_t nb = kern->k / QBLOCK;
    static const char* too_many[4] = {"", "BlockQuantMatMul: qweight has too many dimensions",
                                      "BlockQuantMatMul: scales has too many dimensions",
                                      "BlockQuantMatMul: mins has too many dimensions"};
    TRY(tensor_shape(api, v, wd, &wn, 8, count, too_many[which]));
    if (which == 1 && (wn < 1 || wd[0] != kern->n || *count != kern->n * nb * (kern->bits == 4 ? 16 : 32)))
        return error(api, kern->bits == 4 ? "BlockQuantMatMul: qweight must be [N, K/32, 16] uint8 for bits=4"
                                          : "BlockQuantMatMul: qweight must be [N, K/32, 32] uint8 for bits=8");
    if (which == 2 && *count != kern->n * nb)
        return error(api, "BlockQuantMatMul: scales must hold N x K/32 float16 values");
    if (which == 3 && *count != 0 && *count != (kern->n + 3) / 4 * 4 * nb)
        return error(api, "BlockQuantMatMul: mins must be [ceil(N/4), K/32, 4] float16");
    return NULL;
}

static OrtStatus* create_kernel(const OrtCustomOp* op, const OrtApi* api, const OrtKernelInfo* info, void** out) {
    (void)op;
    int64_t k = 0, n = 0, bits = 0, block = 0;
    KernelInfoGetAttributeInt64Fn attr = FN(api, API_KernelInfoGetAttribute_int64, KernelInfoGetAttributeInt64Fn);
    TRY(attr(info, "K", &k));
    TRY(attr(info, "N", &n));
    TRY(attr(info, "bits", &bits));
    TRY(attr(info, "block_size", &block));
    int64_t swiglu = 0;
    OrtStatus* missing = attr(info, "swiglu", &swiglu); /* optional, default 0 */
    if (missing) {
        FN(api, API_ReleaseStatus, ReleaseStatusFn)(missing);
        swiglu = 0;
    }
    if (block != QBLOCK) return error(api, "BlockQuantMatMul: block_size must be 32");
    if (bits != 4 && bits != 8) return error(api, "BlockQuantMatMul: bits must be 4 or 8");
    if (k <= 0 || n <= 0 || k % QBLOCK || k > EDGELM_MAX_DIM || n > EDGELM_MAX_DIM)
        return error(api, "BlockQuantMatMul: K must be a positive multiple of 32 and N positive (both below 2^31)");
    Kernel* kern = (Kernel*)calloc(1, sizeof(Kernel));
    if (!kern) return FN(api, API_CreateStatus, CreateStatusFn)(ORT_FAIL, "BlockQuantMatMul: out of memory");
    kern->api = api;
    kern->k = k;
    kern->n = n;
    kern->bits = bits;
    kern->swiglu = swiglu != 0;
    /* Constant weights are checked now: a mismatched folder fails at load, not mid-reply. */
    KernelInfoGetConstantInputFn constant = FN(api, API_KernelInfoGetConstantInput_tensor, KernelInfoGetConstantInputFn);
    for (size_t i = 1; i < 4; i++) {
        int is_constant = 0;
        const OrtValue* v = NULL;
        OrtStatus* st = constant(info, i, &is_constant, &v);
        if (st) { /* not knowable: check it on every call */
            FN(api, API_ReleaseStatus, ReleaseStatusFn)(st);
            continue;
        }
        if (!is_constant || !v) continue;
        int64_t count = 0;
        st = check_weight(kern, api, (int)i, v, &count);
        if (!st && count > 0) st = FN(api, API_GetTensorMutableData, GetTensorMutableDataFn)((OrtValue*)v, (void**)&kern->checked[i]);
        if (st) {
            free(kern);
            return st;
        }
    }
    *out = kern;
    return NULL;
}


/* silu(gate) * up of the prefill's rows, in parallel (one call has up to a prompt's rows of
 * 2 x 1536 values, which alone on one thread left the other waiting). */
typedef struct {
    const float* a;
    float* out;
    int64_t k, m;
} SwigluJob;

#define SWIGLU_ROWS 8

#ifdef EDGELM_X86
__attribute__((target("avx2,fma,f16c"))) static void swiglu_task_avx2(void* data, size_t index) {
    const SwigluJob* job = (const SwigluJob*)data;
    const int64_t r1 = ((int64_t)index + 1) * SWIGLU_ROWS < job->m ? ((int64_t)index + 1) * SWIGLU_ROWS : job->m;
    for (int64_t r = (int64_t)index * SWIGLU_ROWS; r < r1; r++)
        swiglu_row_avx2(job->a + r * 2 * job->k, job->k, job->out + r * job->k);
}
#endif

/* Scratch for the quantized activations of one call, grown as needed, one per calling
 * thread (ONNX Runtime may run sessions from several threads). */
static __thread char* scratch = NULL;
#ifdef EDGELM_X86
static __thread float* act_scratch = NULL; /* swiglu-activated rows for the x86 float prefill path */
#endif
static __thread size_t scratch_bytes = 0;

static OrtStatus* compute(void* kernel, OrtKernelContext* ctx) {
    const Kernel* kern = (const Kernel*)kernel;
    const OrtApi* api = kern->api;
    const OrtValue *a_val, *b_val, *s_val, *o_val = NULL;
    KernelContextGetInputFn get_input = FN(api, API_KernelContext_GetInput, KernelContextGetInputFn);
    size_t n_inputs = 0;
    TRY(FN(api, API_KernelContext_GetInputCount, KernelContextGetInputCountFn)(ctx, &n_inputs));
    TRY(get_input(ctx, 0, &a_val));
    TRY(get_input(ctx, 1, &b_val));
    TRY(get_input(ctx, 2, &s_val));
    if (n_inputs > 3) TRY(get_input(ctx, 3, &o_val));

    size_t ndim = 0;
    int64_t dims[8], count;
    TRY(tensor_shape(api, a_val, dims, &ndim, 8, &count, "BlockQuantMatMul: A must have 1 to 8 dimensions"));
    if (ndim < 1) return error(api, "BlockQuantMatMul: A must have 1 to 8 dimensions");
    if (dims[ndim - 1] != (kern->swiglu ? 2 * kern->k : kern->k))
        return error(api, kern->swiglu ? "BlockQuantMatMul: the last dimension of A must be 2K (swiglu)"
                                       : "BlockQuantMatMul: the last dimension of A must be K");
    int64_t m = 1;
    for (size_t i = 0; i + 1 < ndim; i++) m *= dims[i];
    dims[ndim - 1] = kern->n;

    GetTensorMutableDataFn data = FN(api, API_GetTensorMutableData, GetTensorMutableDataFn);
    void *a, *codes, *scales, *mins = NULL, *y;
    TRY(data((OrtValue*)a_val, &a));
    TRY(data((OrtValue*)b_val, &codes));
    TRY(data((OrtValue*)s_val, &scales));
    if (o_val) TRY(data((OrtValue*)o_val, &mins));
    /* The weights against the node's K, N and bits before any is read (a graph from a
     * downloaded folder may say anything), unless create_kernel checked this very data. */
    const OrtValue* weights[4] = {NULL, b_val, s_val, o_val};
    void* wdata[4] = {NULL, codes, scales, mins};
    for (int i = 1; i < 4; i++) {
        if (!weights[i] || (kern->checked[i] && wdata[i] == kern->checked[i])) continue;
        TRY(check_weight(kern, api, i, weights[i], &count));
        if (i == 3 && count == 0) mins = NULL; /* an omitted optional input */
    }
    OrtValue* y_val;
    TRY(FN(api, API_KernelContext_GetOutput, KernelContextGetOutputFn)(ctx, 0, dims, ndim, &y_val));
    TRY(data(y_val, &y));
    if (m == 0) return NULL;

    const int64_t nb = kern->k / QBLOCK;
#ifdef EDGELM_X86
    /* decode rows on a CPU with AVX-512 VNNI: the layout its kernels read (see Quad) */
    const int vnni = edgelm_isa() == ISA_AVX512 && m < PREFILL_ROWS && kern->n % 4 == 0;
#else
    const int vnni = 0;
#endif
    const int64_t nq = vnni && kern->bits == 4 ? nb / 4 : 0;
    const size_t need = (size_t)m * nb * (QBLOCK * sizeof(int16_t) + 8 * sizeof(int32_t) + 2 * sizeof(float)) +
                        kern->k * sizeof(float) + (size_t)m * nq * sizeof(Quad);
    if (need > scratch_bytes) {
        char* grown = (char*)realloc(scratch, need);
        if (!grown) return FN(api, API_CreateStatus, CreateStatusFn)(ORT_FAIL, "BlockQuantMatMul: out of memory");
        scratch = grown;
        scratch_bytes = need;
    }
    const int32_t zmul = vnni ? zero_point_term_unsigned((int)kern->bits, mins != NULL)
                              : zero_point_term((int)kern->bits, mins != NULL);
    const int order = vnni ? 4 : (int)kern->bits; /* the decode layout keeps 8-bit blocks in the 4-bit order */
    int16_t* qa = (int16_t*)scratch;
    int32_t* qz = (int32_t*)(qa + (size_t)m * nb * QBLOCK);
    float* da = (float*)(qz + (size_t)m * nb * 8);
    float* sa = da + m * nb;
    float* tmp = sa + m * nb; /* one swiglu row */
    Quad* quads = (Quad*)(tmp + kern->k);
    const float* a_float = NULL;
#ifdef EDGELM_X86
    if (have_avx2() && m >= PREFILL_ROWS) {
        a_float = (const float*)a;
        if (kern->swiglu) { /* the prefill path reads float rows: activate them once */
            float* act = (float*)realloc(act_scratch, (size_t)m * kern->k * sizeof(float));
            if (!act) return FN(api, API_CreateStatus, CreateStatusFn)(ORT_FAIL, "BlockQuantMatMul: out of memory");
            act_scratch = act;
            SwigluJob job = {(const float*)a, act, kern->k, m};
            TRY(FN(api, API_KernelContext_ParallelFor, KernelContextParallelForFn)(
                ctx, swiglu_task_avx2, (size_t)((m + SWIGLU_ROWS - 1) / SWIGLU_ROWS), 0, &job));
            a_float = act;
        }
    } else if (have_avx2()) {
        quantize_rows_avx2((const float*)a, m, kern->k, order, zmul, (int)kern->swiglu, tmp, qa, qz, da, sa);
        if (nq) arrange_quads(qa, qz, da, sa, quads, m, nb);
    } else
#endif
        quantize_rows((const float*)a, m, kern->k, order, zmul, (int)kern->swiglu, tmp, qa, qz, da, sa);
#ifdef EDGELM_ARM
    if (edgelm_isa() >= ISA_DOTPROD) edgelm_split_activations_dotprod(qa, m * nb); /* what its rows read */
#endif

    Task t = {kern, a_float, (const uint8_t*)codes, (const uint16_t*)scales, (const uint16_t*)mins, qa, qz, da, sa,
              (float*)y, m, 0, vnni, quads};
    /* Tasks of a few KB of weights each; ONNX Runtime's pool hands them out. */
    t.rows_per_task = kern->bits == 4 || a_float ? 32 : 16;
    const size_t tasks = (size_t)((kern->n + t.rows_per_task - 1) / t.rows_per_task);
    if (tasks == 1) {
        run_task(&t, 0);
        return NULL;
    }
    return FN(api, API_KernelContext_ParallelFor, KernelContextParallelForFn)(ctx, run_task, tasks, 0, &t);
}

static const char* op_name(const OrtCustomOp* op) {
    (void)op;
    return "BlockQuantMatMul";
}
static int input_type(const OrtCustomOp* op, size_t i) {
    (void)op;
    return i == 0 ? TYPE_FLOAT : (i == 1 ? TYPE_UINT8 : TYPE_FLOAT16);
}
static size_t input_count(const OrtCustomOp* op) {
    (void)op;
    return 4;
}
static int output_type(const OrtCustomOp* op, size_t i) {
    (void)op;
    (void)i;
    return TYPE_FLOAT;
}
static size_t output_count(const OrtCustomOp* op) {
    (void)op;
    return 1;
}
static int input_characteristic(const OrtCustomOp* op, size_t i) {
    (void)op;
    return i == 3 ? IO_OPTIONAL : IO_REQUIRED;
}
EDGELM_V1_CALLBACKS(create_kernel_v1, create_kernel, compute_v1, compute)

static const OrtCustomOp block_quant_matmul = {
    EDGELM_ORT_API_VERSION,
    create_kernel_v1,
    op_name,
    op_provider,
    input_type,
    input_count,
    output_type,
    output_count,
    compute_v1,
    free_kernel,
    input_characteristic,
    io_required,
    memory_type,
    one,
    one,
    one,
    one,
    create_kernel,
    compute,
    NULL,
    one,
    end_version,
};

__attribute__((visibility("default"))) OrtStatus* RegisterCustomOps(OrtSessionOptions* options,
                                                                    const OrtApiBase* base) {
    const OrtApi* api = base->GetApi(EDGELM_ORT_API_VERSION);
    if (!api) return NULL; /* ONNX Runtime older than 1.17: it reports the unknown operator itself */
    OrtCustomOpDomain* domain = NULL;
    TRY(FN(api, API_CreateCustomOpDomain, CreateCustomOpDomainFn)("ai.edgelm", &domain));
    TRY(FN(api, API_CustomOpDomain_Add, CustomOpDomainAddFn)(domain, &block_quant_matmul));
    TRY(FN(api, API_CustomOpDomain_Add, CustomOpDomainAddFn)(domain, &edgelm_attention_op));
    return FN(api, API_AddCustomOpDomain, AddCustomOpDomainFn)(options, domain);
}
