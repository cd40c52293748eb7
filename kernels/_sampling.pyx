# cython: language_level=3
"""Sampling kernels: penalties, temperature, top-k, top-p, min-p and a seeded draw.

The inner functions take pointers and lengths, hold no GIL and allocate nothing: the
caller (``edgelm.sampling``) validates the inputs and owns every scratch buffer. The
semantics are transformers' logits processors (RepetitionPenaltyLogitsProcessor,
TemperatureLogitsWarper, TopKLogitsWarper, TopPLogitsWarper, MinPLogitsWarper, applied
in that order) and OpenAI's frequency and presence penalties (applied after the
repetition penalty). Filtered entries become -inf.
"""

from libc.math cimport INFINITY, isfinite, log
from libc.stdint cimport int32_t, int64_t, uint64_t
from libc.stdlib cimport qsort
from libc.string cimport memcpy

from _typedefs cimport Candidate, SamplingConfig


cdef extern from *:
    """
    #include <stdint.h>
    #include <string.h>
    /* exp(x) for x <= 0 in float32 arithmetic only: 2^(x log2 e) split into an integer
       power of two (built in the exponent bits) and 2^f, f in [0, 1), by a degree-6
       polynomial (relative error < 3e-7). No libm, so the compiler vectorizes loops that
       call it, and with FP contraction off the result is bit-identical on every machine,
       which keeps seeded draws reproducible. */
    static inline float edgelm_exp_neg(float x) {
        /* Branch-free (ternaries), so loops calling it vectorize. */
        x = x < -87.0f ? -87.0f : x;
        float t = x * 1.44269504088896341f;
        int32_t n = (int32_t)t;
        n -= ((float)n > t);                 /* floor for negative t */
        float f = t - (float)n;
        float p = 1.5403530393381606e-4f;
        p = p * f + 1.3333558146428443e-3f;
        p = p * f + 9.6181291076284772e-3f;
        p = p * f + 5.5504108664821580e-2f;
        p = p * f + 2.4022650695910072e-1f;
        p = p * f + 6.9314718055994531e-1f;
        p = p * f + 1.0f;
        int32_t bits = (n + 127) << 23;
        float scale;
        memcpy(&scale, &bits, sizeof scale);
        return p * scale;
    }

    #define EDGELM_BLOCK 64

    typedef float edgelm_v4f __attribute__((vector_size(16)));
    typedef int32_t edgelm_v4i __attribute__((vector_size(16)));

    static inline edgelm_v4f edgelm_load4(const float* p) { edgelm_v4f v; memcpy(&v, p, sizeof v); return v; }
    static inline void edgelm_store4(float* p, edgelm_v4f v) { memcpy(p, &v, sizeof v); }
    static inline edgelm_v4f edgelm_sel4(edgelm_v4i mask, edgelm_v4f a, edgelm_v4f b) {
        return (edgelm_v4f)(((edgelm_v4i)a & mask) | ((edgelm_v4i)b & ~mask));
    }

    /* Lane-wise max (exact: no rounding, so the same on every machine) and "either lane is
       NaN": one instruction each on SSE2 and NEON, a compare-and-select elsewhere. */
    #if defined(__SSE2__)
    #include <emmintrin.h>
    static inline edgelm_v4f edgelm_max4(edgelm_v4f a, edgelm_v4f b) { return (edgelm_v4f)_mm_max_ps((__m128)a, (__m128)b); }
    static inline edgelm_v4i edgelm_unord4(edgelm_v4f a, edgelm_v4f b) { return (edgelm_v4i)_mm_cmpunord_ps((__m128)a, (__m128)b); }
    #elif defined(__ARM_NEON)
    #include <arm_neon.h>
    static inline edgelm_v4f edgelm_max4(edgelm_v4f a, edgelm_v4f b) { return (edgelm_v4f)vmaxq_f32((float32x4_t)a, (float32x4_t)b); }
    static inline edgelm_v4i edgelm_unord4(edgelm_v4f a, edgelm_v4f b) { return (a != a) | (b != b); }
    #else
    static inline edgelm_v4f edgelm_max4(edgelm_v4f a, edgelm_v4f b) { return edgelm_sel4(a > b, a, b); }
    static inline edgelm_v4i edgelm_unord4(edgelm_v4f a, edgelm_v4f b) { return (a != a) | (b != b); }
    #endif

    #if defined(__SSE2__)
    static inline int edgelm_any4(edgelm_v4i m) { return _mm_movemask_ps((__m128)m) != 0; }
    #else
    static inline int edgelm_any4(edgelm_v4i m) { return (m[0] | m[1] | m[2] | m[3]) != 0; }
    #endif

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

    #if defined(__clang__)
    #define EDGELM_SHUF(a, b, i, j, k, l) __builtin_shufflevector((a), (b), i, j, k, l)
    #else
    #define EDGELM_SHUF(a, b, i, j, k, l) __builtin_shuffle((a), (b), (edgelm_v4i){i, j, k, l})
    #endif

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

    /* edgelm_exp_neg on four lanes: the same float operations in the same order, so the same bits. */
    static inline edgelm_v4f edgelm_exp_neg4(edgelm_v4f x) {
        const edgelm_v4f lo = {-87.0f, -87.0f, -87.0f, -87.0f};
        x = edgelm_sel4(x < lo, lo, x);
        edgelm_v4f t = x * 1.44269504088896341f;
        edgelm_v4i n = __builtin_convertvector(t, edgelm_v4i);
        edgelm_v4f nf = __builtin_convertvector(n, edgelm_v4f);
        n += (nf > t);                      /* comparison lanes are -1 where true: floor */
        nf = __builtin_convertvector(n, edgelm_v4f);
        edgelm_v4f f = t - nf;
        edgelm_v4f p = f * 1.5403530393381606e-4f + 1.3333558146428443e-3f;
        p = p * f + 9.6181291076284772e-3f;
        p = p * f + 5.5504108664821580e-2f;
        p = p * f + 2.4022650695910072e-1f;
        p = p * f + 6.9314718055994531e-1f;
        p = p * f + 1.0f;
        edgelm_v4i bits = (n + 127) << 23;
        return p * (edgelm_v4f)bits;
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
            edgelm_v4f e = edgelm_exp_neg4(v - m);
            edgelm_store4(p + i, edgelm_sel4(v == ninf, zero, e));
            edgelm_v4f d = m - v;
            d = edgelm_sel4(d < rng4, d, rng4);   /* also maps -inf (d = inf) to the last bucket */
            edgelm_v4i bk = __builtin_convertvector(d * scale, edgelm_v4i);
            bk = (edgelm_v4i)edgelm_sel4(bk < last4, (edgelm_v4f)bk, (edgelm_v4f)last4);
            memcpy(bucket + i, &bk, sizeof bk);
        }
        for (; i < n; i++) {
            float d = m - x[i];
            float e = edgelm_exp_neg(x[i] - m);
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
    """
    float edgelm_exp_neg(float x) noexcept nogil
    int edgelm_copy_bmax(const float* src, float* out, Py_ssize_t n, float* bmax) noexcept nogil
    int edgelm_bmax(const float* src, Py_ssize_t n, float* bmax) noexcept nogil
    void edgelm_exp_buckets(const float* x, Py_ssize_t n, float m, float scale, int32_t last, float* p,
                            int32_t* bucket) noexcept nogil
    void edgelm_filter_below(float* out, Py_ssize_t n, float thr) noexcept nogil
    float edgelm_max(const float* x, Py_ssize_t n) noexcept nogil
    Py_ssize_t edgelm_collect_ge(const float* x, Py_ssize_t start, Py_ssize_t end, float lo, void* cand,
                                 Py_ssize_t c) noexcept nogil
    enum: EDGELM_BLOCK

# Return codes of the inner functions (the Python wrapper turns them into errors).
DEF OK = 0
DEF ERR_NAN = -1
DEF ERR_ALL_INF = -2
DEF ERR_TOKEN_RANGE = -3
DEF ERR_POS_INF = -5  # +inf in the logits, or a penalty or the temperature overflowed float32


cdef inline uint64_t _splitmix64(uint64_t* state) noexcept nogil:
    # splitmix64 (Steele, Lea, Flood 2014): integer-only, so a seed gives the same
    # stream on every machine.
    state[0] += 0x9E3779B97F4A7C15ULL
    cdef uint64_t z = state[0]
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL
    return z ^ (z >> 31)


cdef inline double _uniform(uint64_t* state) noexcept nogil:
    # 53 random bits -> [0, 1)
    return <double>(_splitmix64(state) >> 11) * (1.0 / 9007199254740992.0)


cdef int _cmp_desc(const void* a, const void* b) noexcept nogil:
    # Descending by value; among equal values the lower index first, so a tie at the
    # top-p cut keeps the lower ids (transformers' unstable torch.sort keeps arbitrary
    # ones: the number kept and their values agree, a test).
    cdef const Candidate* x = <const Candidate*>a
    cdef const Candidate* y = <const Candidate*>b
    if x.value > y.value:
        return -1
    if x.value < y.value:
        return 1
    return (x.index > y.index) - (x.index < y.index)


cdef void _sort_desc(Candidate* cand, Py_ssize_t n) noexcept nogil:
    """Sort by ``_cmp_desc``'s order (a total order, so any correct sort gives the same
    list): insertion sort for the short lists top-k leaves, qsort above 64."""
    cdef Py_ssize_t i, j
    cdef Candidate c
    if n > 64:
        qsort(cand, n, sizeof(Candidate), _cmp_desc)
        return
    for i in range(1, n):
        c = cand[i]
        j = i
        while j > 0 and (cand[j - 1].value < c.value or (cand[j - 1].value == c.value and cand[j - 1].index > c.index)):
            cand[j] = cand[j - 1]
            j -= 1
        cand[j] = c


cdef void _sift_down(float* heap, Py_ssize_t n, Py_ssize_t i) noexcept nogil:
    cdef Py_ssize_t c
    cdef float t
    while True:
        c = 2 * i + 1
        if c >= n:
            return
        if c + 1 < n and heap[c + 1] < heap[c]:
            c += 1
        if heap[i] <= heap[c]:
            return
        t = heap[i]
        heap[i] = heap[c]
        heap[c] = t
        i = c


cdef float _kth_largest(const float* x, Py_ssize_t n, Py_ssize_t k, float* heap) noexcept nogil:
    """The k-th largest value (1 <= k <= n) with a size-k min-heap: O(n log k), one pass.
    The numpy equivalent is ``np.sort(x)[-k]``."""
    cdef Py_ssize_t i
    for i in range(k):
        heap[i] = x[i]
    for i in range(k // 2 - 1, -1, -1):
        _sift_down(heap, k, i)
    for i in range(k, n):
        if x[i] > heap[0]:
            heap[0] = x[i]
            _sift_down(heap, k, 0)
    return heap[0]


cdef inline Py_ssize_t _block_end(Py_ssize_t b, Py_ssize_t n) noexcept nogil:
    """One past the last index of block ``b`` (the last block may be short)."""
    cdef Py_ssize_t end = (b + 1) * EDGELM_BLOCK
    return end if end < n else n


cdef float _kth_largest_bmax(const float* x, Py_ssize_t n, Py_ssize_t k, float* heap,
                             const float* bmax) noexcept nogil:
    """Like ``_kth_largest`` but skips every block whose maximum (``bmax``, an upper
    bound is enough) cannot enter the heap: once the heap holds large values almost
    every block is skipped, so this reads ~n/64 maxima instead of n values."""
    cdef Py_ssize_t i, b, end
    for i in range(k):
        heap[i] = x[i]
    for i in range(k // 2 - 1, -1, -1):
        _sift_down(heap, k, i)
    i = k
    while i < n:
        b = i // EDGELM_BLOCK
        end = _block_end(b, n)
        if bmax[b] > heap[0]:
            while i < end:
                if x[i] > heap[0]:
                    heap[0] = x[i]
                    _sift_down(heap, k, 0)
                i += 1
        i = end
    return heap[0]


cdef Py_ssize_t _top_k_candidates(const float* src, const float* out, const float* dirty, Py_ssize_t n,
                                  Py_ssize_t k, float* heap, float* scratch, const float* bmax, Py_ssize_t nb,
                                  Candidate* cand, float* thr_out) noexcept nogil:
    """Every token whose value is >= the k-th largest (ties included), in index order,
    into ``cand``; the k-th largest value into ``thr_out``. Returns their count.

    With k <= the number of blocks, the k-th largest block maximum is a lower bound of
    the k-th largest value (k blocks each hold a value >= it), so only blocks reaching
    it are read: ~k x 64 values instead of n. With ``dirty`` (lazy mode, k <= nb), a block
    is read from ``out`` where its flag is set (penalised: copied there) and from ``src``
    otherwise; without it, everything from ``out``."""
    cdef Py_ssize_t i, b, end, n_c = 0, w = 0
    cdef float lo, thr
    cdef const float* x
    if k <= nb:
        lo = _kth_largest(bmax, nb, k, heap)
    else:
        lo = _kth_largest_bmax(out, n, k, heap, bmax)
    for b in range(nb):
        if bmax[b] < lo:
            continue
        end = _block_end(b, n)
        x = src if dirty != NULL and dirty[b] == 0.0 else out
        n_c = edgelm_collect_ge(x, b * EDGELM_BLOCK, end, lo, cand, n_c)
    # The exact k-th largest among the (>= k) values found.
    for i in range(n_c):
        scratch[i] = cand[i].value
    thr = _kth_largest(scratch, n_c, k, heap)
    for i in range(n_c):
        # With fewer than k finite values the threshold is -inf: those are not candidates
        # (the maximum is finite, so at least one stays).
        if cand[i].value >= thr and cand[i].value > -INFINITY:
            cand[w] = cand[i]
            w += 1
    thr_out[0] = thr
    return w


cdef Py_ssize_t _drop_neg_inf(Candidate* cand, Py_ssize_t n_cand) noexcept nogil:
    """Remove the -inf entries of a candidate list, in order; returns the new count."""
    cdef Py_ssize_t i, w = 0
    for i in range(n_cand):
        if cand[i].value > -INFINITY:
            cand[w] = cand[i]
            w += 1
    return w


cdef void _apply_penalties(const float* src, float* out, Py_ssize_t n, const int64_t* prev, Py_ssize_t n_prev,
                           int32_t* counts, SamplingConfig* cfg) noexcept nogil:
    cdef Py_ssize_t j
    cdef int64_t t
    cdef float s
    cdef float rp = <float>cfg.repetition_penalty
    if cfg.repetition_penalty != 1.0:
        for j in range(n_prev):
            t = prev[j]
            s = src[t]
            # Computed from the unpenalised logit, so a repeated token is penalised once.
            out[t] = s * rp if s < 0 else s / rp
    if cfg.frequency_penalty != 0.0 or cfg.presence_penalty != 0.0:
        for j in range(n_prev):
            counts[prev[j]] += 1
        for j in range(n_prev):
            t = prev[j]
            if counts[t] > 0:
                out[t] = <float>(out[t] - counts[t] * cfg.frequency_penalty - cfg.presence_penalty)
                counts[t] = 0  # scratch goes back to all zeros


DEF N_BUCKETS = 2048
DEF BUCKET_RANGE = 64.0


cdef int _top_p(float* out, Py_ssize_t n, float m, double top_p, float* probs, int32_t* bucket,
                Candidate* cand) noexcept nogil:
    """top-p over the whole vocabulary without sorting it (``m`` is the max of ``out``).
    One vectorized pass computes every probability and its bucket (logit distance below
    the max); a histogram of probability mass over the buckets, walked from the top,
    finds the bucket the cut falls in, and only that bucket's tokens are sorted."""
    cdef Py_ssize_t i, b, cut, n_cand = 0
    cdef double total = 0.0, tail_allowed, acc = 0.0
    # Four interleaved histograms: consecutive tokens often share a bucket, and one
    # histogram would chain every add on the previous store.
    cdef double hist[4][N_BUCKETS]
    cdef float scale = <float>(N_BUCKETS / BUCKET_RANGE)
    for b in range(N_BUCKETS):
        hist[0][b] = 0.0
        hist[1][b] = 0.0
        hist[2][b] = 0.0
        hist[3][b] = 0.0
    edgelm_exp_buckets(out, n, m, scale, N_BUCKETS - 1, probs, bucket)
    for i in range(n):
        total += probs[i]
        hist[i & 3][bucket[i]] += probs[i]
    tail_allowed = (1.0 - top_p) * total
    # Buckets are ordered by value: the cut is in the first bucket after which the rest
    # of the mass fits in the allowed tail.
    cut = N_BUCKETS - 1
    for b in range(N_BUCKETS):
        acc += hist[0][b] + hist[1][b] + hist[2][b] + hist[3][b]
        if total - acc <= tail_allowed:
            cut = b
            break
    acc -= hist[0][cut] + hist[1][cut] + hist[2][cut] + hist[3][cut]  # mass kept above the cut bucket
    for i in range(n):
        b = bucket[i]
        if b > cut:
            out[i] = -INFINITY
        elif b == cut and out[i] != -INFINITY:
            cand[n_cand].value = out[i]
            cand[n_cand].index = <int32_t>i
            n_cand += 1
    _sort_desc(cand, n_cand)
    _cut_sorted(cand, n_cand, probs, acc, total, tail_allowed, out)
    return OK


cdef Py_ssize_t _cut_sorted(const Candidate* cand, Py_ssize_t n_cand, const float* probs, double mass, double total,
                            double tail_allowed, float* out) noexcept nogil:
    """Walk candidates sorted by value (``mass`` already kept above them), keep the fewest
    whose complement holds at most ``tail_allowed``; filter the rest. Returns how many stay."""
    cdef Py_ssize_t i, kept = 0
    while kept < n_cand:
        mass += probs[cand[kept].index]
        kept += 1
        if total - mass <= tail_allowed:
            break
    for i in range(kept, n_cand):
        out[cand[i].index] = -INFINITY
    return kept


cdef Py_ssize_t _top_p_candidates(Candidate* cand, Py_ssize_t n_cand, double top_p, float* out,
                                  float* probs) noexcept nogil:
    """top-p over a candidate list (all other tokens already -inf); returns how many stay,
    sorted first in ``cand``."""
    cdef Py_ssize_t i
    cdef double total = 0.0
    _sort_desc(cand, n_cand)
    cdef float m = cand[0].value
    for i in range(n_cand):
        probs[cand[i].index] = edgelm_exp_neg(cand[i].value - m)
        total += probs[cand[i].index]
    return _cut_sorted(cand, n_cand, probs, 0.0, total, (1.0 - top_p) * total, out)


cdef inline void _clear_flags(float* dirty, const int64_t* prev, Py_ssize_t n_prev, bint penalised) noexcept nogil:
    cdef Py_ssize_t i
    if penalised:
        for i in range(n_prev):
            dirty[prev[i] // EDGELM_BLOCK] = 0.0


cdef Py_ssize_t process_logits(const float* src, float* out, Py_ssize_t n, const int64_t* prev,
                               Py_ssize_t n_prev, int32_t* counts, SamplingConfig* cfg, float* heap,
                               float* probs, Candidate* cand, float* bmax, bint fill) noexcept nogil:
    """Penalties, temperature, top-k, top-p, min-p: ``src`` -> ``out`` (filtered = -inf).

    Returns the number of kept tokens listed in ``cand`` when top-k ran (the later
    filters and the draw then touch only those), 0 when the whole vocabulary stays in
    play, or a negative error code. ``bmax`` holds 2 x ceil(n / 64) floats: block maxima,
    then per-block flags (all zero between calls).

    With top-k and ``fill`` false only the candidates matter (the draw reads ``cand``):
    the logits are then not copied at all; the blocks holding penalised tokens are copied
    to ``out`` and penalised there, every other block is read in place."""
    cdef Py_ssize_t i, b, end, n_cand = 0, w
    cdef Py_ssize_t nb = (n + EDGELM_BLOCK - 1) // EDGELM_BLOCK
    cdef float* dirty = bmax + nb
    cdef bint lazy = not fill and 0 < cfg.top_k <= nb and cfg.top_k < n  # top-k runs and reads in place
    cdef bint penalised = n_prev > 0 and (cfg.repetition_penalty != 1.0 or cfg.frequency_penalty != 0.0
                                          or cfg.presence_penalty != 0.0)
    cdef float thr, m
    cdef float temp = <float>cfg.temperature
    cdef bint scale = cfg.temperature > 0.0 and cfg.temperature != 1.0
    cdef bint nan_made = False
    cdef double log_min_p
    for i in range(n_prev):
        if prev[i] < 0 or prev[i] >= n:
            return ERR_TOKEN_RANGE
    if lazy:
        if edgelm_bmax(src, n, bmax):
            return ERR_NAN
    elif edgelm_copy_bmax(src, out, n, bmax):
        return ERR_NAN
    if penalised:
        # Flag the blocks the penalties touch (in lazy mode, copy them to out first).
        for i in range(n_prev):
            b = prev[i] // EDGELM_BLOCK
            if dirty[b] == 0.0:
                dirty[b] = 1.0
                if lazy:
                    end = _block_end(b, n)
                    memcpy(out + b * EDGELM_BLOCK, src + b * EDGELM_BLOCK, (end - b * EDGELM_BLOCK) * sizeof(float))
        _apply_penalties(src, out, n, prev, n_prev, counts, cfg)
        # Penalties moved some logits: recompute the maxima of their blocks, once each
        # (flag 1 -> 2; any non-zero flag means the block's values are in out).
        for i in range(n_prev):
            b = prev[i] // EDGELM_BLOCK
            if dirty[b] == 1.0:
                dirty[b] = 2.0
                end = _block_end(b, n)
                if edgelm_bmax(out + b * EDGELM_BLOCK, end - b * EDGELM_BLOCK, bmax + b):
                    nan_made = True  # +inf minus an infinite penalty
    m = edgelm_max(bmax, nb)
    # From here on every value is finite or -inf and the maximum is finite, and dividing by
    # the temperature keeps it so: the exp, bucket and draw arithmetic below relies on it.
    if nan_made or m == -INFINITY or m == INFINITY or (scale and not isfinite(m / temp)):
        _clear_flags(dirty, prev, n_prev, penalised)
        return ERR_NAN if nan_made else (ERR_ALL_INF if m == -INFINITY else ERR_POS_INF)
    if not (0 < cfg.top_k < n):
        _clear_flags(dirty, prev, n_prev, penalised)
    if 0 < cfg.top_k < n:
        # Dividing by a positive temperature keeps the order, so top-k can run first and
        # the division then touches only the k survivors (and their ties), which sit in
        # the blocks whose maximum reaches the threshold.
        n_cand = _top_k_candidates(src, out, dirty if lazy else NULL, n, cfg.top_k, heap, probs, bmax, nb,
                                   cand, &thr)
        _clear_flags(dirty, prev, n_prev, penalised)
        if fill:
            edgelm_filter_below(out, n, thr)
        if scale:
            for i in range(n_cand):
                cand[i].value = cand[i].value / temp
                out[cand[i].index] = cand[i].value
            n_cand = _drop_neg_inf(cand, n_cand)  # a tiny temperature sends far values to -inf
        if cfg.top_p < 1.0:
            n_cand = _top_p_candidates(cand, n_cand, cfg.top_p, out, probs)
        if cfg.min_p > 0.0:
            m = cand[0].value
            for i in range(1, n_cand):
                if cand[i].value > m:
                    m = cand[i].value
            log_min_p = log(cfg.min_p)
            w = 0
            for i in range(n_cand):
                if <double>cand[i].value - m < log_min_p:
                    out[cand[i].index] = -INFINITY
                else:
                    cand[w] = cand[i]
                    w += 1
            n_cand = w
        return n_cand
    if scale:
        for i in range(n):
            out[i] = out[i] / temp
        m = m / temp  # division is monotonic and correctly rounded: still the max
    if cfg.top_p < 1.0:
        _top_p(out, n, m, cfg.top_p, probs, <int32_t*>heap, cand)  # heap is free here: buckets
    if cfg.min_p > 0.0:
        log_min_p = log(cfg.min_p)
        for i in range(n):
            # p_i / p_max = exp(l_i - l_max); the max itself always stays (top-p keeps it).
            if <double>out[i] - m < log_min_p:
                out[i] = -INFINITY
    return 0


cdef int64_t greedy_token(const float* src, float* out, Py_ssize_t n, const int64_t* prev, Py_ssize_t n_prev,
                          int32_t* counts, SamplingConfig* cfg, float* heap, float* probs, Candidate* cand,
                          float* bmax) noexcept nogil:
    """argmax after the penalties (no warpers, as transformers' greedy decoding): top-k with
    k = 1 on the read-in-place path, whose candidates are the maximum's ties in index
    order, so the first is numpy's ``argmax``."""
    cdef SamplingConfig top1 = cfg[0]
    cdef Py_ssize_t rc
    top1.temperature = 1.0
    top1.top_k = 1
    top1.top_p = 1.0
    top1.min_p = 0.0
    if n == 1:  # nothing to choose; the checks still apply
        top1.top_k = 0
        rc = process_logits(src, out, n, prev, n_prev, counts, &top1, heap, probs, cand, bmax, 1)
        return rc if rc < 0 else 0
    rc = process_logits(src, out, n, prev, n_prev, counts, &top1, heap, probs, cand, bmax, 0)
    return rc if rc < 0 else cand[0].index


cdef int64_t draw_candidates(const Candidate* cand, Py_ssize_t n_cand, uint64_t* state) noexcept nogil:
    """One index drawn from softmax over a candidate list, by inverse CDF."""
    cdef Py_ssize_t i, last = 0
    cdef float m = cand[0].value
    cdef double total = 0.0, u, acc = 0.0
    for i in range(1, n_cand):
        if cand[i].value > m:
            m = cand[i].value
    for i in range(n_cand):
        if cand[i].value > -INFINITY:
            total += edgelm_exp_neg(cand[i].value - m)
    u = _uniform(state) * total
    for i in range(n_cand):
        if cand[i].value > -INFINITY:
            acc += edgelm_exp_neg(cand[i].value - m)
            last = i
            if acc > u:
                return cand[i].index
    return cand[last].index  # rounding left u at the very top: the last kept candidate


cdef int64_t draw(const float* logits, Py_ssize_t n, uint64_t* state) noexcept nogil:
    """One index drawn from softmax(logits) by inverse CDF with a splitmix64 uniform."""
    cdef float m = edgelm_max(logits, n)
    cdef Py_ssize_t i, last = 0
    cdef double total = 0.0, u, acc = 0.0
    for i in range(n):
        if logits[i] > -INFINITY:
            total += edgelm_exp_neg(logits[i] - m)
    u = _uniform(state) * total
    for i in range(n):
        if logits[i] > -INFINITY:
            acc += edgelm_exp_neg(logits[i] - m)
            last = i
            if acc > u:
                return i
    return last  # rounding left u at the very top: the last kept token


# -- Python face: one object per sampler holds the scratch pointers, so a decode step is
# one call that acquires two buffers (the logits and the history); edgelm.sampling validates.

DEF ERR_SHAPE = -4


cdef inline SamplingConfig _config(double temperature, int64_t top_k, double top_p, double min_p,
                                   double repetition_penalty, double frequency_penalty,
                                   double presence_penalty) noexcept:
    cdef SamplingConfig cfg
    cfg.temperature = temperature
    cfg.top_k = top_k
    cfg.top_p = top_p
    cfg.min_p = min_p
    cfg.repetition_penalty = repetition_penalty
    cfg.frequency_penalty = frequency_penalty
    cfg.presence_penalty = presence_penalty
    return cfg


cdef class SamplerCore:
    """Scratch buffers (owned by the caller's numpy arrays), the sampling configuration and
    the random state of one sampler. Methods return token ids or kept-candidate counts
    (>= 0), or an error code (< 0): -1 NaN, -2 all -inf, -3 history id out of range,
    -4 wrong number of logits, -5 a logit is +inf or the penalties or temperature pushed one
    past float32's range."""
    cdef readonly Py_ssize_t n
    cdef readonly Py_ssize_t out_offset  # where out starts in out_buf (4K-aliasing guard)
    cdef readonly Py_ssize_t n_cand
    cdef float[::1] _out_buf
    cdef int32_t[::1] _counts
    cdef float[::1] _heap
    cdef float[::1] _probs
    cdef Candidate[::1] _cand
    cdef float[::1] _bmax
    cdef SamplingConfig _cfg
    cdef uint64_t _state

    def __init__(self, float[::1] out_buf, int32_t[::1] counts, float[::1] heap, float[::1] probs,
                 Candidate[::1] cand, float[::1] bmax):
        cdef Py_ssize_t n = counts.shape[0]
        if (n < 1 or out_buf.shape[0] < n + 256 or heap.shape[0] < n or probs.shape[0] < n
                or cand.shape[0] < n or bmax.shape[0] < 2 * ((n + EDGELM_BLOCK - 1) // EDGELM_BLOCK)):
            raise ValueError("scratch buffers too small for the vocabulary")
        self.n = n
        self._out_buf, self._counts, self._heap, self._probs, self._cand, self._bmax = \
            out_buf, counts, heap, probs, cand, bmax
        self._cfg = _config(1.0, 0, 1.0, 0.0, 1.0, 0.0, 0.0)

    def configure(self, double temperature, int64_t top_k, double top_p, double min_p,
                  double repetition_penalty, double frequency_penalty, double presence_penalty):
        self._cfg = _config(temperature, top_k, top_p, min_p, repetition_penalty, frequency_penalty,
                            presence_penalty)

    def reseed(self, uint64_t seed):
        self._state = seed

    cdef inline float* _out_for(self, const float* src) noexcept nogil:
        # The output may not start within 512 B of the source modulo 4 KiB: a copy whose
        # loads and stores alias that way runs ~1.5x slower (4K aliasing).
        cdef float* base = &self._out_buf[0]
        cdef size_t delta = (<size_t>base - <size_t>src) % 4096
        self.out_offset = 256 if delta < 512 or delta > 4096 - 512 else 0
        return base + self.out_offset

    cdef Py_ssize_t _process(self, const float[::1] logits, const int64_t[::1] prev, bint fill) noexcept:
        cdef Py_ssize_t rc
        cdef const int64_t* prev_ptr = &prev[0] if prev.shape[0] > 0 else NULL
        if logits.shape[0] != self.n:
            return ERR_SHAPE
        with nogil:
            rc = process_logits(&logits[0], self._out_for(&logits[0]), self.n, prev_ptr, prev.shape[0],
                                &self._counts[0], &self._cfg, &self._heap[0], &self._probs[0], &self._cand[0],
                                &self._bmax[0], fill)
        self.n_cand = rc if rc > 0 else 0
        return rc

    def process(self, const float[::1] logits, const int64_t[::1] prev, bint fill=True):
        """Process into the output buffer (at ``out_offset``); with ``fill`` false and top-k
        on, only the first ``n_cand`` candidates are meaningful."""
        return self._process(logits, prev, fill)

    def draw_processed(self):
        """The next token from the last ``process``: a draw from the candidates top-k listed,
        or from the whole processed vocabulary."""
        cdef int64_t tok
        with nogil:
            if self.n_cand > 0:
                tok = draw_candidates(&self._cand[0], self.n_cand, &self._state)
            else:
                tok = draw(&self._out_buf[self.out_offset], self.n, &self._state)
        return tok

    def sample(self, const float[::1] logits, const int64_t[::1] prev):
        """The next token: argmax after the penalties when the temperature is 0 (no warpers,
        as transformers' greedy decoding), else a draw. The logits are read in place."""
        cdef int64_t tok
        cdef Py_ssize_t rc
        cdef const int64_t* prev_ptr = &prev[0] if prev.shape[0] > 0 else NULL
        if logits.shape[0] != self.n:
            return ERR_SHAPE
        if self._cfg.temperature == 0.0:
            with nogil:
                tok = greedy_token(&logits[0], self._out_for(&logits[0]), self.n, prev_ptr, prev.shape[0],
                                   &self._counts[0], &self._cfg, &self._heap[0], &self._probs[0], &self._cand[0],
                                   &self._bmax[0])
            return tok
        rc = self._process(logits, prev, False)
        if rc < 0:
            return rc
        return self.draw_processed()
