/* The sampling kernels' vector loops (kernels/_sampling.pyx calls them): block maxima
 * with the NaN check, collecting candidates at or above a threshold, exp and histogram
 * buckets for top-p, and a threshold filter. Written with simd.h's four-lane types. */
#ifndef EDGELM_SAMPLING_BLOCKS_H
#define EDGELM_SAMPLING_BLOCKS_H
#include <Python.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "simd.h"
#include "edgelm_exp.h"

#define EDGELM_BLOCK 64

/* max of x[0..n) (n >= 1, no NaN): four lanes, two accumulators. */
static inline float edgelm_max(const float* restrict x, Py_ssize_t n) {
    Py_ssize_t i = 0, j;
    float m = x[0];
    if (n >= 8) {
        edgelm_v4f a = edgelm_load4(x), b = edgelm_load4(x + 4);
        for (i = 8; i + 8 <= n; i += 8) {
            a = edgelm_max4(edgelm_load4(x + i), a);
            b = edgelm_max4(edgelm_load4(x + i + 4), b);
        }
        a = edgelm_max4(a, b);
        m = a[0];
        for (j = 1; j < 4; j++) m = a[j] > m ? a[j] : m;
    }
    for (; i < n; i++) m = x[i] > m ? x[i] : m;
    return m;
}

/* The layout of Candidate (_typedefs.pxd) and of edgelm.sampling's numpy dtype. */
typedef struct { float value; int32_t index; } edgelm_cand;

/* Append (x[i], i) for every i in [start, end) with x[i] >= lo to cand[c...]; returns
   the new count. Eight values are tested at once and skipped together (almost all
   are below lo); a group with a hit is written branch-free: always write, advance
   when kept (in bounds while c <= start). */
static inline Py_ssize_t edgelm_collect_ge(const float* restrict x, Py_ssize_t start, Py_ssize_t end,
                                           float lo, void* restrict out, Py_ssize_t c) {
    edgelm_cand* cand = (edgelm_cand*)out;
    const edgelm_v4f lo4 = {lo, lo, lo, lo};
    Py_ssize_t i = start, j;
    for (; i + 8 <= end; i += 8) {
        if (!edgelm_any4((edgelm_load4(x + i) >= lo4) | (edgelm_load4(x + i + 4) >= lo4))) continue;
        for (j = i; j < i + 8; j++) {
            cand[c].value = x[j];
            cand[c].index = (int32_t)j;
            c += x[j] >= lo;
        }
    }
    for (; i < end; i++) {
        cand[c].value = x[i];
        cand[c].index = (int32_t)i;
        c += x[i] >= lo;
    }
    return c;
}

/* Lane-wise max over one block of EDGELM_BLOCK values (copied to out when copy is set);
   NaN lanes are or-ed into bad. */
static inline edgelm_v4f edgelm_vblock(const float* restrict s, float* restrict out, const int copy,
                                       edgelm_v4i* bad) {
    edgelm_v4f m0 = edgelm_load4(s), m1 = edgelm_load4(s + 4);
    for (Py_ssize_t i = 0; i < EDGELM_BLOCK; i += 8) {
        edgelm_v4f v0 = edgelm_load4(s + i), v1 = edgelm_load4(s + i + 4);
        if (copy) {
            edgelm_store4(out + i, v0);
            edgelm_store4(out + i + 4, v1);
        }
        *bad |= edgelm_unord4(v0, v1);
        m0 = edgelm_max4(v0, m0);
        m1 = edgelm_max4(v1, m1);
    }
    return edgelm_max4(m1, m0);
}

/* bmax[b] = max of block b of EDGELM_BLOCK values, and out = src when copy is set;
   non-zero if any NaN. Written with GCC/Clang vector types (SSE2 on x86-64, NEON on
   arm64); copy is a constant at both call sites, so each gets its own loop. Four
   blocks' lane maxima are reduced together by shuffles (a transpose), one store. */
static inline int edgelm_block_max(const float* restrict src, float* restrict out, Py_ssize_t n,
                                   float* restrict bmax, const int copy) {
    Py_ssize_t b, i, j, nb = n / EDGELM_BLOCK;
    edgelm_v4i bad = {0, 0, 0, 0};
    for (b = 0; b + 4 <= nb; b += 4) {
        const Py_ssize_t o = b * EDGELM_BLOCK;
        float* d = copy ? out + o : out;  /* out is NULL when not copying */
        edgelm_v4f m0 = edgelm_vblock(src + o, d, copy, &bad);
        edgelm_v4f m1 = edgelm_vblock(src + o + EDGELM_BLOCK, d + (copy ? EDGELM_BLOCK : 0), copy, &bad);
        edgelm_v4f m2 = edgelm_vblock(src + o + 2 * EDGELM_BLOCK, d + (copy ? 2 * EDGELM_BLOCK : 0), copy, &bad);
        edgelm_v4f m3 = edgelm_vblock(src + o + 3 * EDGELM_BLOCK, d + (copy ? 3 * EDGELM_BLOCK : 0), copy, &bad);
        /* p = [max(a0,a2), max(a1,a3), max(b0,b2), max(b1,b3)] for blocks a=0,b=1; q for 2,3 */
        edgelm_v4f p = edgelm_max4(EDGELM_SHUF(m0, m1, 0, 1, 4, 5), EDGELM_SHUF(m0, m1, 2, 3, 6, 7));
        edgelm_v4f q = edgelm_max4(EDGELM_SHUF(m2, m3, 0, 1, 4, 5), EDGELM_SHUF(m2, m3, 2, 3, 6, 7));
        edgelm_store4(bmax + b, edgelm_max4(EDGELM_SHUF(p, q, 0, 2, 4, 6), EDGELM_SHUF(p, q, 1, 3, 5, 7)));
    }
    for (; b < nb; b++) {
        edgelm_v4f m4 = edgelm_vblock(src + b * EDGELM_BLOCK, copy ? out + b * EDGELM_BLOCK : out, copy, &bad);
        float m = m4[0];
        for (j = 1; j < 4; j++) m = m4[j] > m ? m4[j] : m;
        bmax[b] = m;
    }
    int any_bad = (bad[0] | bad[1] | bad[2] | bad[3]) != 0;
    if (nb * EDGELM_BLOCK < n) {
        float m = -INFINITY;
        for (i = nb * EDGELM_BLOCK; i < n; i++) {
            float v = src[i];
            if (copy) out[i] = v;
            any_bad |= v != v;
            m = v > m ? v : m;
        }
        bmax[nb] = m;
    }
    return any_bad;
}

static inline int edgelm_copy_bmax(const float* restrict src, float* restrict out, Py_ssize_t n,
                                   float* restrict bmax) {
    return edgelm_block_max(src, out, n, bmax, 1);
}

/* bmax only: the logits are read in place. */
static inline int edgelm_bmax(const float* restrict src, Py_ssize_t n, float* restrict bmax) {
    return edgelm_block_max(src, NULL, n, bmax, 0);
}

/* p[i] = exp(x[i] - m) (0 for -inf) and the histogram bucket of m - x[i]. */
static inline void edgelm_exp_buckets(const float* restrict x, Py_ssize_t n, float m, float scale,
                                      int32_t last, float* restrict p, int32_t* restrict bucket) {
    Py_ssize_t i;
    float range = (float)last / scale;
    const edgelm_v4f ninf = {-INFINITY, -INFINITY, -INFINITY, -INFINITY};
    const edgelm_v4f zero = {0.0f, 0.0f, 0.0f, 0.0f};
    const edgelm_v4f rng4 = {range, range, range, range};
    const edgelm_v4i last4 = {last, last, last, last};
    for (i = 0; i + 4 <= n; i += 4) {
        edgelm_v4f v = edgelm_load4(x + i);
        edgelm_v4f e = edgelm_exp_nonpos4(v - m);
        edgelm_store4(p + i, edgelm_sel4(v == ninf, zero, e));
        edgelm_v4f d = m - v;
        d = edgelm_sel4(d < rng4, d, rng4);   /* also maps -inf (d = inf) to the last bucket */
        edgelm_v4i bk = __builtin_convertvector(d * scale, edgelm_v4i);
        bk = (edgelm_v4i)edgelm_sel4(bk < last4, (edgelm_v4f)bk, (edgelm_v4f)last4);
        memcpy(bucket + i, &bk, sizeof bk);
    }
    for (; i < n; i++) {
        float d = m - x[i];
        float e = edgelm_exp_nonpos(x[i] - m);
        p[i] = x[i] == -INFINITY ? 0.0f : e;
        float dc = d < range ? d : range;
        int32_t bk = (int32_t)(dc * scale);
        bucket[i] = bk < last ? bk : last;
    }
}

/* out[i] = -inf where out[i] < thr. */
static inline void edgelm_filter_below(float* restrict out, Py_ssize_t n, float thr) {
    Py_ssize_t i;
    const edgelm_v4f ninf = {-INFINITY, -INFINITY, -INFINITY, -INFINITY};
    const edgelm_v4f t4 = {thr, thr, thr, thr};
    for (i = 0; i + 4 <= n; i += 4) {
        edgelm_v4f v = edgelm_load4(out + i);
        edgelm_store4(out + i, edgelm_sel4(v >= t4, v, ninf));
    }
    for (; i < n; i++) out[i] = out[i] >= thr ? out[i] : -INFINITY;
}

/* out[i] = edgelm_exp_nonpos(x[i]) through the four-lane function (the tail padded to
 * four lanes): what the tests compare with the scalar function and float64. */
static inline void edgelm_exp_nonpos_lanes(const float* restrict x, float* restrict out, Py_ssize_t n) {
    Py_ssize_t i;
    for (i = 0; i + 4 <= n; i += 4) edgelm_store4(out + i, edgelm_exp_nonpos4(edgelm_load4(x + i)));
    if (i < n) {
        float pad[4] = {0.0f, 0.0f, 0.0f, 0.0f};
        memcpy(pad, x + i, (size_t)(n - i) * sizeof(float));
        edgelm_store4(pad, edgelm_exp_nonpos4(edgelm_load4(pad)));
        memcpy(out + i, pad, (size_t)(n - i) * sizeof(float));
    }
}

/* dst = src where the token's bit is set in words (bit i % 32 of word i / 32, llguidance's
   bitset), -inf elsewhere. A word of all ones is copied and one of all zeros filled; a
   mixed word goes four tokens at a time, each nibble of its bits picking lanes through a
   16-entry table of lane masks. */
static inline void edgelm_apply_mask(const float* restrict src, float* restrict dst, Py_ssize_t n,
                                     const uint32_t* restrict words) {
    static const int32_t lanes[16][4] = {
        {0, 0, 0, 0}, {-1, 0, 0, 0}, {0, -1, 0, 0}, {-1, -1, 0, 0}, {0, 0, -1, 0}, {-1, 0, -1, 0},
        {0, -1, -1, 0}, {-1, -1, -1, 0}, {0, 0, 0, -1}, {-1, 0, 0, -1}, {0, -1, 0, -1}, {-1, -1, 0, -1},
        {0, 0, -1, -1}, {-1, 0, -1, -1}, {0, -1, -1, -1}, {-1, -1, -1, -1}};
    const edgelm_v4f ninf = {-INFINITY, -INFINITY, -INFINITY, -INFINITY};
    Py_ssize_t w, full = n / 32, i;
    for (w = 0; w < full; w++) {
        const uint32_t bits = words[w];
        const float* s = src + 32 * w;
        float* d = dst + 32 * w;
        if (bits == 0xFFFFFFFFu) {
            memcpy(d, s, 32 * sizeof(float));
        } else if (bits == 0) {
            for (i = 0; i < 32; i += 4) edgelm_store4(d + i, ninf);
        } else {
            for (i = 0; i < 32; i += 4) {
                edgelm_v4i m;
                memcpy(&m, lanes[(bits >> i) & 15u], sizeof m);
                edgelm_store4(d + i, edgelm_sel4(m, edgelm_load4(s + i), ninf));
            }
        }
    }
    for (i = 32 * full; i < n; i++) dst[i] = (words[i / 32] >> (i % 32)) & 1u ? src[i] : -INFINITY;
}

#endif
