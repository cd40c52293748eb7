# cython: language_level=3
"""Sampling kernels: penalties, temperature, top-k, top-p, min-p and a seeded draw.

The inner functions take pointers and lengths, hold no GIL and allocate nothing: the
caller (``edgelm.sampling``) validates the inputs and owns every scratch buffer. The
semantics are transformers' logits processors (RepetitionPenaltyLogitsProcessor,
TemperatureLogitsWarper, TopKLogitsWarper, TopPLogitsWarper, MinPLogitsWarper, applied
in that order) and OpenAI's frequency and presence penalties (applied after the
repetition penalty). Filtered entries become -inf.
"""

from libc.math cimport INFINITY, expf, log
from libc.stdint cimport int32_t, int64_t, uint64_t
from libc.stdlib cimport qsort

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
        if (x < -87.0f) x = -87.0f;
        float t = x * 1.44269504088896341f;
        int32_t n = (int32_t)t;
        if ((float)n > t) n -= 1;            /* floor for negative t */
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
    """
    float edgelm_exp_neg(float x) noexcept nogil

# Return codes of the inner functions (the Python wrapper turns them into errors).
DEF OK = 0
DEF ERR_NAN = -1
DEF ERR_ALL_INF = -2
DEF ERR_TOKEN_RANGE = -3


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


cdef float _max(const float* x, Py_ssize_t n) noexcept nogil:
    """The numpy equivalent is ``x.max()`` (for NaN-free x). Eight independent
    accumulators: the compiler cannot vectorize a float max, but the CPU overlaps them."""
    cdef float m[8]
    cdef Py_ssize_t i, j
    cdef Py_ssize_t n8 = n - n % 8
    for j in range(8):
        m[j] = -INFINITY
    for i in range(0, n8, 8):
        for j in range(8):
            if x[i + j] > m[j]:
                m[j] = x[i + j]
    for i in range(n8, n):
        if x[i] > m[0]:
            m[0] = x[i]
    for j in range(1, 8):
        if m[j] > m[0]:
            m[0] = m[j]
    return m[0]


cdef int _copy_checked(const float* src, float* out, Py_ssize_t n) noexcept nogil:
    """Copy ``src`` to ``out``; non-zero if any value is NaN (one vectorizable pass)."""
    cdef Py_ssize_t i
    cdef int bad = 0
    for i in range(n):
        out[i] = src[i]
        bad |= src[i] != src[i]
    return bad


cdef float _kth_largest_blocked(const float* x, Py_ssize_t n, Py_ssize_t k, float* heap) noexcept nogil:
    """Like ``_kth_largest`` but skips whole blocks of 64 whose maximum cannot enter the
    heap: once the heap holds large values almost every block is skipped."""
    cdef Py_ssize_t i, b, end
    if k * 4 > n or n < 256:
        return _kth_largest(x, n, k, heap)
    for i in range(k):
        heap[i] = x[i]
    for i in range(k // 2 - 1, -1, -1):
        _sift_down(heap, k, i)
    b = k
    while b < n:
        end = b + 64 if b + 64 < n else n
        if _max(x + b, end - b) > heap[0]:
            for i in range(b, end):
                if x[i] > heap[0]:
                    heap[0] = x[i]
                    _sift_down(heap, k, 0)
        b = end
    return heap[0]


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


cdef int _top_p(float* out, Py_ssize_t n, double top_p, double* probs, Candidate* cand) noexcept nogil:
    """top-p over the whole vocabulary without sorting it: one pass computes every
    probability and a histogram of probability mass over logit buckets below the max;
    walking the buckets from the top finds the one the cut falls in, and only that
    bucket's tokens are sorted."""
    cdef float m = _max(out, n)
    cdef Py_ssize_t i, b, cut, n_cand = 0, kept
    cdef double total = 0.0, tail_allowed, acc = 0.0, mass
    cdef double hist[N_BUCKETS]
    cdef float scale = <float>(N_BUCKETS / BUCKET_RANGE)
    for b in range(N_BUCKETS):
        hist[b] = 0.0
    for i in range(n):
        if out[i] == -INFINITY:
            probs[i] = 0.0
            b = N_BUCKETS - 1
        else:
            probs[i] = edgelm_exp_neg(out[i] - m)
            total += probs[i]
            b = <Py_ssize_t>((m - out[i]) * scale)
            if b >= N_BUCKETS:
                b = N_BUCKETS - 1
        hist[b] += probs[i]
    tail_allowed = (1.0 - top_p) * total
    # Buckets are ordered by value: the cut is in the first bucket after which the rest
    # of the mass fits in the allowed tail.
    cut = N_BUCKETS - 1
    for b in range(N_BUCKETS):
        acc += hist[b]
        if total - acc <= tail_allowed:
            cut = b
            break
    acc -= hist[cut]  # mass kept above the cut bucket
    for i in range(n):
        if out[i] == -INFINITY:
            continue
        b = <Py_ssize_t>((m - out[i]) * scale)
        if b >= N_BUCKETS:
            b = N_BUCKETS - 1
        if b > cut:
            out[i] = -INFINITY
        elif b == cut:
            cand[n_cand].value = out[i]
            cand[n_cand].index = <int32_t>i
            n_cand += 1
    qsort(cand, n_cand, sizeof(Candidate), _cmp_desc)
    _cut_sorted(cand, n_cand, probs, acc, total, tail_allowed, out)
    return OK


cdef Py_ssize_t _cut_sorted(const Candidate* cand, Py_ssize_t n_cand, const double* probs, double mass, double total,
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
                                  double* probs) noexcept nogil:
    """top-p over a candidate list (all other tokens already -inf); returns how many stay,
    sorted first in ``cand``."""
    cdef Py_ssize_t i
    cdef double total = 0.0
    qsort(cand, n_cand, sizeof(Candidate), _cmp_desc)
    cdef float m = cand[0].value
    for i in range(n_cand):
        probs[cand[i].index] = edgelm_exp_neg(cand[i].value - m)
        total += probs[cand[i].index]
    return _cut_sorted(cand, n_cand, probs, 0.0, total, (1.0 - top_p) * total, out)


cdef Py_ssize_t process_logits(const float* src, float* out, Py_ssize_t n, const int64_t* prev,
                               Py_ssize_t n_prev, int32_t* counts, SamplingConfig* cfg, float* heap,
                               double* probs, Candidate* cand) noexcept nogil:
    """Penalties, temperature, top-k, top-p, min-p: ``src`` -> ``out`` (filtered = -inf).

    Returns the number of kept tokens listed in ``cand`` when top-k ran (the later
    filters and the draw then touch only those), 0 when the whole vocabulary stays in
    play, or a negative error code."""
    cdef Py_ssize_t i, n_cand = 0, w
    cdef float thr, m
    cdef float temp = <float>cfg.temperature
    cdef bint scale = cfg.temperature > 0.0 and cfg.temperature != 1.0
    cdef double log_min_p
    for i in range(n_prev):
        if prev[i] < 0 or prev[i] >= n:
            return ERR_TOKEN_RANGE
    if _copy_checked(src, out, n):
        return ERR_NAN
    _apply_penalties(src, out, n, prev, n_prev, counts, cfg)
    m = _max(out, n)
    if m == -INFINITY:
        return ERR_ALL_INF
    if 0 < cfg.top_k < n:
        # Dividing by a positive temperature keeps the order, so top-k can run first and
        # the division then touches only the k survivors (and their ties).
        thr = _kth_largest_blocked(out, n, cfg.top_k, heap)
        for i in range(n):
            if out[i] >= thr:
                if scale:
                    out[i] = out[i] / temp
                cand[n_cand].value = out[i]
                cand[n_cand].index = <int32_t>i
                n_cand += 1
            else:
                out[i] = -INFINITY
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
    if cfg.top_p < 1.0:
        _top_p(out, n, cfg.top_p, probs, cand)
    if cfg.min_p > 0.0:
        m = _max(out, n)
        log_min_p = log(cfg.min_p)
        for i in range(n):
            # p_i / p_max = exp(l_i - l_max); the max itself always stays.
            if <double>out[i] - m < log_min_p:
                out[i] = -INFINITY
    return 0


cdef int64_t greedy_token(const float* src, float* out, Py_ssize_t n, const int64_t* prev, Py_ssize_t n_prev,
                          int32_t* counts, SamplingConfig* cfg) noexcept nogil:
    """argmax after the penalties (no warpers, as transformers' greedy decoding)."""
    cdef Py_ssize_t i
    cdef int bad = 0
    for i in range(n_prev):
        if prev[i] < 0 or prev[i] >= n:
            return ERR_TOKEN_RANGE
    if cfg.repetition_penalty == 1.0 and cfg.frequency_penalty == 0.0 and cfg.presence_penalty == 0.0:
        for i in range(n):
            bad |= src[i] != src[i]
        if bad:
            return ERR_NAN
        if _max(src, n) == -INFINITY:
            return ERR_ALL_INF
        return argmax(src, n)
    if _copy_checked(src, out, n):
        return ERR_NAN
    _apply_penalties(src, out, n, prev, n_prev, counts, cfg)
    if _max(out, n) == -INFINITY:
        return ERR_ALL_INF
    return argmax(out, n)


cdef int64_t draw_candidates(const Candidate* cand, Py_ssize_t n_cand, uint64_t* state) noexcept nogil:
    """One index drawn from softmax over a candidate list, by inverse CDF."""
    cdef Py_ssize_t i
    cdef float m = cand[0].value
    cdef double total = 0.0, u, acc = 0.0
    for i in range(1, n_cand):
        if cand[i].value > m:
            m = cand[i].value
    for i in range(n_cand):
        total += edgelm_exp_neg(cand[i].value - m)
    u = _uniform(state) * total
    for i in range(n_cand):
        acc += edgelm_exp_neg(cand[i].value - m)
        if acc > u:
            return cand[i].index
    return cand[n_cand - 1].index


cdef int64_t argmax(const float* x, Py_ssize_t n) noexcept nogil:
    """First index of the maximum; the numpy equivalent is ``np.argmax(x)``."""
    cdef Py_ssize_t i, best = 0
    cdef float m = x[0]
    for i in range(1, n):
        if x[i] > m:
            m = x[i]
            best = i
    return best


cdef int64_t draw(const float* logits, Py_ssize_t n, uint64_t* state) noexcept nogil:
    """One index drawn from softmax(logits) by inverse CDF with a splitmix64 uniform."""
    cdef float m = _max(logits, n)
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


# -- Python face: thin wrappers over contiguous memoryviews; edgelm.sampling validates. --

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


def process_into(const float[::1] logits, float[::1] out, const int64_t[::1] prev, int32_t[::1] counts,
                 float[::1] heap, double[::1] probs, Candidate[::1] cand, double temperature, int64_t top_k,
                 double top_p, double min_p, double repetition_penalty, double frequency_penalty,
                 double presence_penalty):
    """Process into ``out``; returns the kept-candidate count (>= 0) or an error code (< 0)."""
    cdef SamplingConfig cfg = _config(temperature, top_k, top_p, min_p, repetition_penalty, frequency_penalty,
                                      presence_penalty)
    cdef Py_ssize_t rc
    cdef const int64_t* prev_ptr = &prev[0] if prev.shape[0] > 0 else NULL
    with nogil:
        rc = process_logits(&logits[0], &out[0], logits.shape[0], prev_ptr, prev.shape[0], &counts[0], &cfg,
                            &heap[0], &probs[0], &cand[0])
    return rc


def greedy(const float[::1] logits, float[::1] out, const int64_t[::1] prev, int32_t[::1] counts,
           double repetition_penalty, double frequency_penalty, double presence_penalty):
    """Greedy next token (>= 0) or an error code (< 0)."""
    cdef SamplingConfig cfg = _config(0.0, 0, 1.0, 0.0, repetition_penalty, frequency_penalty, presence_penalty)
    cdef int64_t tok
    cdef const int64_t* prev_ptr = &prev[0] if prev.shape[0] > 0 else NULL
    with nogil:
        tok = greedy_token(&logits[0], &out[0], logits.shape[0], prev_ptr, prev.shape[0], &counts[0], &cfg)
    return tok


def sample_processed(const float[::1] processed, Candidate[::1] cand, Py_ssize_t n_cand, bint greedy,
                     uint64_t[::1] state):
    """The next token from processed logits: argmax when greedy, else a draw (from the
    first ``n_cand`` candidates when top-k listed them, from the whole vocabulary if 0)."""
    cdef int64_t tok
    with nogil:
        if greedy:
            tok = argmax(&processed[0], processed.shape[0])
        elif n_cand > 0:
            tok = draw_candidates(&cand[0], n_cand, &state[0])
        else:
            tok = draw(&processed[0], processed.shape[0], &state[0])
    return tok
