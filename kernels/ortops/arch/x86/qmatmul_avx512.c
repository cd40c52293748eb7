/* BlockQuantMatMul on x86-64 with AVX-512 (F, BW, VL) and VNNI: decode two blocks a step
 * (vpdpwssd), 4-bit decode rows four blocks a step in the decode layout (see Quad), and a
 * 4 x 6 float prefill tile. Chosen at run time (kernels.c); elsewhere this file is empty. */
#include "../../qmatmul_ref.h"
#include "../../shared_math.h"

#if defined(__x86_64__) || defined(__i386__)
#include "x86.h"

/* The same four rows with AVX-512 VNNI, two blocks a step. vpdpwssd multiplies 16-bit pairs
 * and adds them into int32 lanes in one instruction; a 512-bit register holds the low-nibble
 * halves of blocks b and b + 1 ([16 of b | 16 of b+1] words), another the high-nibble halves,
 * so int32 lanes 0-7 sum block b and lanes 8-15 block b + 1 and the float scaling runs once
 * per two blocks. The int32 sums are the AVX2 path's exactly; only the float adds differ in
 * order. */
TARGET_AVX512 static inline __m512 pair_scale(__m128 p) {
    /* [p[0] x 8 | p[1] x 8] */
    const __m512i idx = _mm512_set_epi32(1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0);
    return _mm512_permutexvar_ps(idx, _mm512_castps128_ps512(p));
}

/* Two consecutive halves as floats (in lanes 0 and 1). */
TARGET_AVX2 static inline __m128 half2(const uint16_t* p) {
    int32_t bits;
    memcpy(&bits, p, sizeof bits);
    return _mm_cvtph_ps(_mm_cvtsi32_si128(bits));
}

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
    const int bytes = mode == PAIRS_Q4 ? QBLOCK / 2 : QBLOCK;
    FOUR_ROW_POINTERS(bytes)
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
 * 4c .. 4c + 3 hold block c's. R activation rows (1 or 2: a step verifying drafted tokens)
 * share each weight load and its nibble masks; each row's operations are the one-row
 * kernel's, in its order, so its outputs are the same bits. */
TARGET_AVX512 __attribute__((always_inline)) static inline void quads_q4(const Task* t, int64_t n, int64_t r,
                                                                        const int R, float* out, int64_t stride) {
    const int64_t nb = t->kern->k / QBLOCK, nq = nb / 4, nrows = t->kern->n;
    const int16_t* qa[2] = {t->qa + r * nb * QBLOCK, t->qa + (r + R - 1) * nb * QBLOCK};
    const Quad* quad[2] = {t->quads + r * nq, t->quads + (r + R - 1) * nq};
    const uint8_t* w = t->codes + n * nb * 16;
    const uint16_t* sc = t->scales + n * nb;
    const uint16_t* off = t->mins ? t->mins + (n >> 2) * nb * 4 : NULL;
    const char* next = (const char*)(w + 4 * nb * 16);
    const __m512i low4 = _mm512_set1_epi16(15);
    const __m512i spread = _mm512_set_epi32(3, 3, 3, 3, 2, 2, 2, 2, 1, 1, 1, 1, 0, 0, 0, 0);
    __m512 acc[2][4], corr[2];
    for (int i = 0; i < R; i++) {
        corr[i] = _mm512_setzero_ps();
        for (int j = 0; j < 4; j++) acc[i][j] = _mm512_setzero_ps();
    }
    for (int64_t q = 0; q < nq; q++) {
        for (int l = 0; l < 4 * 64; l += 64) _mm_prefetch(next + q * 4 * 64 + l, _MM_HINT_T0);
        __m512i a[2][4], z[2];
        __m512 d[2];
        const __m512 mins = off ? _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i*)(off + q * 16))) : _mm512_setzero_ps();
        for (int i = 0; i < R; i++) {
            const int16_t* aq = qa[i] + q * 4 * QBLOCK;
            for (int c = 0; c < 4; c++) a[i][c] = _mm512_loadu_si512((const void*)(aq + 32 * c));
            z[i] = _mm512_loadu_si512((const void*)quad[i][q].z);
            d[i] = _mm512_loadu_ps(quad[i][q].d);
            if (off) /* the four blocks' mins of the four rows, lane 4c + j */
                corr[i] = _mm512_fmadd_ps(mins, _mm512_loadu_ps(quad[i][q].s), corr[i]);
        }
#pragma GCC unroll 4
        for (int j = 0; j < 4; j++) {
            const __m512i x = _mm512_loadu_si512((const void*)(w + (j * nb + 4 * q) * 16));
            const __m512i c0 = _mm512_and_si512(x, low4), c1 = _mm512_and_si512(_mm512_srli_epi16(x, 4), low4);
            const __m512i c2 = _mm512_and_si512(_mm512_srli_epi16(x, 8), low4), c3 = _mm512_srli_epi16(x, 12);
            const __m128 s4 = _mm_cvtph_ps(_mm_loadl_epi64((const __m128i*)(sc + j * nb + 4 * q)));
            const __m512 ws = _mm512_permutexvar_ps(spread, _mm512_castps128_ps512(s4));
            for (int i = 0; i < R; i++) {
                __m512i sum = _mm512_dpwssd_epi32(z[i], c0, a[i][0]);
                sum = _mm512_dpwssd_epi32(sum, c1, a[i][1]);
                sum = _mm512_dpwssd_epi32(sum, c2, a[i][2]);
                sum = _mm512_dpwssd_epi32(sum, c3, a[i][3]);
                acc[i][j] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(sum), _mm512_mul_ps(d[i], ws), acc[i][j]);
            }
        }
    }
    for (int i = 0; i < R; i++) {
        float c[4];
        /* corr's lane 4c + j belongs to row j: the four 128-bit lanes add up to the rows' sums */
        const __m256 corr8 = _mm256_add_ps(_mm512_castps512_ps256(corr[i]),
                                           _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(corr[i]), 1)));
        const __m128 corr4 = _mm_add_ps(_mm256_castps256_ps128(corr8), _mm256_extractf128_ps(corr8, 1));
        _mm_storeu_ps(c, _mm_add_ps(sum4_avx512(acc[i]), corr4));
        if (4 * nq < nb) pairs_avx512(t, n, r + i, 4 * nq, PAIRS_Q4, c);
        for (int j = 0; j < 4; j++) out[i * nrows + j * stride] = c[j];
    }
}

TARGET_AVX512 static void dot4_quads_q4(const Task* t, int64_t n, int64_t r, float* out, int64_t stride) {
    quads_q4(t, n, r, 1, out, stride);
}

TARGET_AVX512 static void dot4_quads_q4_x2(const Task* t, int64_t n, int64_t r, float* out, int64_t stride) {
    quads_q4(t, n, r, 2, out, stride);
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


/* The prefill tile with AVX-512: four weight rows against six activation rows, 24
 * accumulators in registers, so each 16-column step loads 10 vectors for 24 FMAs (the
 * AVX2 tile loads 18 for 16). The four sums of one activation row land side by side in Y
 * and are reduced together. */
#define TILE_W 4
#define TILE_A 6

TARGET_AVX512 __attribute__((always_inline)) static inline void tile_float_avx512(const Task* t, const float* w4, int64_t n, int64_t r, const int rows) {
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

TARGET_AVX512 static void tile6_float_avx512(
    const Task* t, const float* w4, int64_t n, int64_t r) {
    tile_float_avx512(t, w4, n, r, TILE_A);
}

TARGET_AVX512 static void tile_tail_float_avx512(
    const Task* t, const float* w4, int64_t n, int64_t r, int rows) {
    tile_float_avx512(t, w4, n, r, rows);
}

/* Rows n0 .. n1 - 1 at decode: four weight rows a pass (the decode layout has N a multiple
 * of 4, so no rows are left for the portable loop there). */
TARGET_AVX512 void edgelm_qmm_rows_avx512(const Task* t, int64_t n0, int64_t n1) {
    const int64_t nrows = t->kern->n;
    const int quads = t->vnni && t->kern->bits == 4;
    int64_t n = n0;
    if ((n & 3) == 0)
        for (; n + 4 <= n1; n += 4)
            for (int64_t r = 0; r < t->m; r++) {
                if (quads && r + 1 < t->m) { /* two activation rows share the weights' loads */
                    dot4_quads_q4_x2(t, n, r, &t->y[r * nrows + n], 1);
                    r++;
                } else if (quads)
                    dot4_quads_q4(t, n, r, &t->y[r * nrows + n], 1);
                else
                    dot4_avx512(t, n, r, &t->y[r * nrows + n], 1);
            }
    edgelm_qmm_rows_portable(t, n, n1);
}

TARGET_AVX512 void edgelm_arrange_avx512(int16_t* qa, const int32_t* qz, const float* da, const float* sa, Quad* quads,
                                         int64_t m, int64_t nb, int64_t nq) {
    if (nq) arrange_quads(qa, qz, da, sa, quads, m, nb);
}

/* Prefill: the task's weight rows dequantized (the AVX2 pass), then 4 x 6 tiles. */
TARGET_AVX512 int edgelm_prefill_rows_avx512(const Task* t, int64_t n0, int64_t n1) {
    const float* w = edgelm_dequantize_rows_avx2(t, n0, n1);
    if (!w) return 0;
    const int64_t k = t->kern->k;
    const int64_t n4 = n0 + ((n1 - n0) & ~(int64_t)3); /* tasks start at multiples of 4 */
    for (int64_t r = 0; r < t->m; r += TILE_A) {
        const int rows = t->m - r >= TILE_A ? TILE_A : (int)(t->m - r);
        for (int64_t j = n0; j < n4; j += TILE_W) {
            if (rows == TILE_A)
                tile6_float_avx512(t, w + (j - n0) * k, j, r);
            else
                tile_tail_float_avx512(t, w + (j - n0) * k, j, r, rows);
        }
        for (int64_t j = n4; j < n1; j++) edgelm_rows_float_avx2(t, w + (j - n0) * k, j, r, rows);
    }
    return 1;
}

#else
typedef int edgelm_no_x86_avx512_kernels; /* an empty translation unit is not ISO C */
#endif
