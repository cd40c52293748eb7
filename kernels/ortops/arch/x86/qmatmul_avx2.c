/* BlockQuantMatMul on x86-64 with AVX2 + FMA + F16C (Haswell, Zen and later): the
 * activation pass (SwiGLU, quantization), four weight rows a pass at decode (vpmaddwd,
 * exact int32 block sums), and the float prefill. Compiled with target attributes and
 * chosen at run time (kernels.c), so one build runs on any x86-64; elsewhere this file is
 * empty. */
#include "../../qmatmul_ref.h"
#include "../../shared_math.h"

#if defined(__x86_64__) || defined(__i386__)
#include "x86.h"

/* swiglu_row eight lanes at a time (the same exp polynomial; k a multiple of 8). */
TARGET_AVX2 void edgelm_swiglu_row_avx2(const float* gate_up, int64_t k, float* out) {
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
TARGET_AVX2 static inline void quantize_block_avx2(const float* x, int bits, int32_t zmul,
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

TARGET_AVX2 void edgelm_quantize_rows_avx2(const float* a, int64_t m, int64_t k, int bits, int32_t zmul, int swiglu,
                                           float* tmp, int16_t* qa, int32_t* qz, float* da, float* sa) {
    QUANTIZE_ROWS_BODY(edgelm_swiglu_row_avx2, quantize_block_avx2)
}

TARGET_AVX2 static inline float hsum8(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_shuffle_ps(s, s, 1));
    return _mm_cvtss_f32(s);
}

/* The 32 codes of one block as two vectors of 16 int16, in the order quantize_block stores
 * the activations: 4-bit codes as stored (0..15; the zero point comes back through qz),
 * 8-bit codes centred (q - 128). */
TARGET_AVX2 static inline void load_codes(const uint8_t* w, int bits, __m256i* lo,
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
TARGET_AVX2 static void dot4_avx2(const Task* t, int64_t n, int64_t r, float* out,
                                                         int64_t stride) {
    const int bits = (int)t->kern->bits;
    const int bytes = bits == 4 ? QBLOCK / 2 : QBLOCK;
    FOUR_ROW_POINTERS(bytes)
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

/* Four weight rows against two activation rows r, r + 1: each weight block is unpacked and
 * its scale converted once for both (a verification pass or parallel samples have 2 to 7
 * rows). Each row's arithmetic is dot4_avx2's, in the same order, so its bits are too. */
TARGET_AVX2 static void dot4x2_avx2(const Task* t, int64_t n, int64_t r, float* out) {
    const int bits = (int)t->kern->bits;
    const int bytes = bits == 4 ? QBLOCK / 2 : QBLOCK;
    FOUR_ROW_POINTERS(bytes)
    const int64_t nrows = t->kern->n;
    const int16_t* qa1 = qa + nb * QBLOCK;
    const int32_t* qz1 = qz + nb * 8;
    const float* da1 = da + nb;
    const float* sa1 = sa + nb;
    __m256 acc0[4], acc1[4];
    for (int j = 0; j < 4; j++) acc0[j] = acc1[j] = _mm256_setzero_ps();
    __m128 corr0 = _mm_setzero_ps(), corr1 = _mm_setzero_ps();
    const char* next = (const char*)(w + 4 * nb * bytes);
    for (int64_t b = 0; b < nb; b++) {
        _mm_prefetch(next + b * 4 * bytes, _MM_HINT_T0);
        _mm_prefetch(next + b * 4 * bytes + 64, _MM_HINT_T0);
        if (off) {
            const __m128 o = half4(off + b * 4);
            corr0 = _mm_fmadd_ps(o, _mm_set1_ps(sa[b]), corr0);
            corr1 = _mm_fmadd_ps(o, _mm_set1_ps(sa1[b]), corr1);
        }
        const __m256 d0 = _mm256_broadcast_ss(da + b), d1 = _mm256_broadcast_ss(da1 + b);
        const __m256i z0 = _mm256_loadu_si256((const __m256i*)(qz + b * 8));
        const __m256i z1 = _mm256_loadu_si256((const __m256i*)(qz1 + b * 8));
        const __m256i* q0 = (const __m256i*)(qa + b * QBLOCK);
        const __m256i* q1 = (const __m256i*)(qa1 + b * QBLOCK);
        for (int j = 0; j < 4; j++) {
            __m256i lo, hi;
            load_codes(w + (j * nb + b) * bytes, bits, &lo, &hi);
            const __m256 scale = _mm256_set1_ps(_cvtsh_ss(sc[j * nb + b]));
            const __m256i s0 = _mm256_add_epi32(_mm256_add_epi32(_mm256_madd_epi16(lo, _mm256_loadu_si256(q0)),
                                                                 _mm256_madd_epi16(hi, _mm256_loadu_si256(q0 + 1))), z0);
            const __m256i s1 = _mm256_add_epi32(_mm256_add_epi32(_mm256_madd_epi16(lo, _mm256_loadu_si256(q1)),
                                                                 _mm256_madd_epi16(hi, _mm256_loadu_si256(q1 + 1))), z1);
            acc0[j] = _mm256_fmadd_ps(_mm256_mul_ps(_mm256_cvtepi32_ps(s0), d0), scale, acc0[j]);
            acc1[j] = _mm256_fmadd_ps(_mm256_mul_ps(_mm256_cvtepi32_ps(s1), d1), scale, acc1[j]);
        }
    }
    float c0[4], c1[4];
    _mm_storeu_ps(c0, corr0);
    _mm_storeu_ps(c1, corr1);
    for (int j = 0; j < 4; j++) {
        out[r * nrows + n + j] = hsum8(acc0[j]) + c0[j];
        out[(r + 1) * nrows + n + j] = hsum8(acc1[j]) + c1[j];
    }
}

/* Prefill (M >= 8), in float: a task's weight rows are dequantized once (offsets included,
 * natural order) into a per-thread buffer, then each row meets the activations eight rows
 * at a time, read straight from A: four FMAs per block and row, no activation
 * quantization (so prefill is exact up to float rounding). */
TARGET_AVX2 static void dequantize_row_avx2(const Task* t, int64_t n, float* out) {
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

TARGET_AVX2 __attribute__((always_inline)) static inline void rows_float_avx2(const Task* t, const float* wrow,
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
TARGET_AVX2 static void rows8_float_avx2(const Task* t, const float* wrow, int64_t n,
                                                                int64_t r) {
    rows_float_avx2(t, wrow, n, r, 8);
}

TARGET_AVX2 void edgelm_rows_float_avx2(const Task* t, const float* wrow, int64_t n, int64_t r, int rows) {
    rows_float_avx2(t, wrow, n, r, rows);
}

/* Dequantized weight rows of the prefill task running on this thread. */
static __thread float* wbuf = NULL;
static __thread size_t wbuf_floats = 0;

TARGET_AVX2 float* edgelm_dequantize_rows_avx2(const Task* t, int64_t n0, int64_t n1) {
    const int64_t k = t->kern->k;
    const size_t need = (size_t)(n1 - n0) * k;
    if (need > wbuf_floats) {
        float* grown = (float*)realloc(wbuf, need * sizeof(float));
        if (!grown) return NULL; /* out of memory: the portable rows need no buffer */
        wbuf = grown;
        wbuf_floats = need;
    }
    for (int64_t j = n0; j < n1; j++) dequantize_row_avx2(t, j, wbuf + (j - n0) * k);
    return wbuf;
}

/* Rows n0 .. n1 - 1 at decode: four weight rows a pass (tasks start at multiples of 4)
 * against the activation rows two at a time, the rest portable. */
TARGET_AVX2 void edgelm_qmm_rows_avx2(const Task* t, int64_t n0, int64_t n1) {
    const int64_t nrows = t->kern->n;
    int64_t n = n0;
    if ((n & 3) == 0)
        for (; n + 4 <= n1; n += 4) {
            int64_t r = 0;
            for (; r + 2 <= t->m; r += 2) dot4x2_avx2(t, n, r, t->y);
            if (r < t->m) dot4_avx2(t, n, r, &t->y[r * nrows + n], 1);
        }
    edgelm_qmm_rows_portable(t, n, n1);
}

/* Prefill: eight activation rows (<= 48 KB) stay in cache while the task's weight rows pass. */
TARGET_AVX2 int edgelm_prefill_rows_avx2(const Task* t, int64_t n0, int64_t n1) {
    const float* w = edgelm_dequantize_rows_avx2(t, n0, n1);
    if (!w) return 0;
    const int64_t k = t->kern->k;
    for (int64_t r = 0; r < t->m; r += 8)
        for (int64_t j = n0; j < n1; j++) {
            if (t->m - r >= 8)
                rows8_float_avx2(t, w + (j - n0) * k, j, r);
            else
                edgelm_rows_float_avx2(t, w + (j - n0) * k, j, r, (int)(t->m - r));
        }
    return 1;
}

#else
typedef int edgelm_no_x86_avx2_kernels; /* an empty translation unit is not ISO C */
#endif
