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
from libc.stdint cimport int32_t, int64_t, uint32_t, uint64_t
from libc.string cimport memcpy

from _blocks cimport (EDGELM_BLOCK, block_end, edgelm_apply_mask, edgelm_bmax, edgelm_collect_ge,
                      edgelm_copy_bmax,
                      edgelm_exp_buckets, edgelm_exp_nonpos, edgelm_exp_nonpos_lanes, edgelm_filter_below,
                      edgelm_max)
from _heap cimport kth_largest, kth_largest_bmax
from _rng cimport splitmix64, uniform
from _sort cimport sort_desc
from _typedefs cimport (MAX_STEPS, STEP_DRY, STEP_MIN_P, STEP_PENALTIES, STEP_TEMPERATURE, STEP_TOP_K,
                        STEP_TOP_N_SIGMA, STEP_TOP_P, STEP_TYPICAL, STEP_XTC, Candidate, SamplingConfig)


# Return codes of the inner functions (the Python wrapper turns them into errors).
DEF OK = 0
DEF ERR_NAN = -1
DEF ERR_ALL_INF = -2
DEF ERR_TOKEN_RANGE = -3
DEF ERR_POS_INF = -5  # +inf in the logits, or a penalty or the temperature overflowed float32


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
        lo = kth_largest(bmax, nb, k, heap)
    else:
        lo = kth_largest_bmax(out, n, k, heap, bmax)
    for b in range(nb):
        if bmax[b] < lo:
            continue
        end = block_end(b, n)
        x = src if dirty != NULL and dirty[b] == 0.0 else out
        n_c = edgelm_collect_ge(x, b * EDGELM_BLOCK, end, lo, cand, n_c)
    # The exact k-th largest among the (>= k) values found.
    for i in range(n_c):
        scratch[i] = cand[i].value
    thr = kth_largest(scratch, n_c, k, heap)
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
    sort_desc(cand, n_cand)
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
    sort_desc(cand, n_cand)
    cdef float m = cand[0].value
    for i in range(n_cand):
        probs[cand[i].index] = edgelm_exp_nonpos(cand[i].value - m)
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
                    end = block_end(b, n)
                    memcpy(out + b * EDGELM_BLOCK, src + b * EDGELM_BLOCK, (end - b * EDGELM_BLOCK) * sizeof(float))
        _apply_penalties(src, out, n, prev, n_prev, counts, cfg)
        # Penalties moved some logits: recompute the maxima of their blocks, once each
        # (flag 1 -> 2; any non-zero flag means the block's values are in out).
        for i in range(n_prev):
            b = prev[i] // EDGELM_BLOCK
            if dirty[b] == 1.0:
                dirty[b] = 2.0
                end = block_end(b, n)
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
            total += edgelm_exp_nonpos(cand[i].value - m)
    u = uniform(state) * total
    for i in range(n_cand):
        if cand[i].value > -INFINITY:
            acc += edgelm_exp_nonpos(cand[i].value - m)
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
            total += edgelm_exp_nonpos(logits[i] - m)
    u = uniform(state) * total
    for i in range(n):
        if logits[i] > -INFINITY:
            acc += edgelm_exp_nonpos(logits[i] - m)
            last = i
            if acc > u:
                return i
    return last  # rounding left u at the very top: the last kept token


include "_chain.pxi"


# -- Python face: one object per sampler holds the scratch pointers, so a decode step is
# one call that acquires two buffers (the logits and the history); edgelm.sampling validates.

DEF ERR_SHAPE = -4
DEF ERR_DRY_ROOM = -6  # the DRY scratch is shorter than the window: the wrapper grows it and calls again


def exp_nonpos(const float[::1] x, float[::1] out, bint lanes):
    """``out = exp(x)`` by the kernels' libm-free exp (kernels/edgelm_exp.h), scalar or
    four lanes at a time: for the tests of its error bound and of the two agreeing."""
    cdef Py_ssize_t i, n = x.shape[0]
    if out.shape[0] != n:
        raise ValueError("x and out differ in length")
    if n == 0:
        return
    with nogil:
        if lanes:
            edgelm_exp_nonpos_lanes(&x[0], &out[0], n)
        else:
            for i in range(n):
                out[i] = edgelm_exp_nonpos(x[i])


cdef class SamplerCore:
    """Scratch buffers (owned by the caller's numpy arrays), the sampling configuration and
    the random state of one sampler. Methods return token ids or kept-candidate counts
    (>= 0), or an error code (< 0): -1 NaN, -2 all -inf, -3 history id out of range,
    -4 wrong number of logits, -5 a logit is +inf or the penalties or temperature pushed one
    past float32's range, -6 the DRY scratch is shorter than the history window (grow it
    with ``set_dry`` and call again)."""
    cdef readonly Py_ssize_t n
    cdef readonly Py_ssize_t out_offset  # where out starts in out_buf (4K-aliasing guard)
    cdef readonly Py_ssize_t n_cand
    cdef float[::1] _out_buf
    cdef int32_t[::1] _counts
    cdef float[::1] _heap
    cdef float[::1] _probs
    cdef Candidate[::1] _cand
    cdef Candidate[::1] _cand2
    cdef float[::1] _bmax
    cdef SamplingConfig _cfg
    cdef uint64_t _state
    cdef int32_t[::1] _mask_words  # a grammar's allowed tokens, refilled in place each step
    cdef float[::1] _masked  # the logits with the disallowed ones at -inf
    cdef bint _masking
    cdef ChainScratch _sc
    cdef Py_ssize_t _dry_room
    cdef object _keep  # the DRY and breaker arrays _sc points into

    def __init__(self, float[::1] out_buf, int32_t[::1] counts, float[::1] heap, float[::1] probs,
                 Candidate[::1] cand, float[::1] bmax, Candidate[::1] cand2):
        cdef Py_ssize_t n = counts.shape[0]
        if (n < 1 or out_buf.shape[0] < n + 256 or heap.shape[0] < n or probs.shape[0] < n
                or cand.shape[0] < n or cand2.shape[0] < n
                or bmax.shape[0] < 2 * ((n + EDGELM_BLOCK - 1) // EDGELM_BLOCK)):
            raise ValueError("scratch buffers too small for the vocabulary")
        self.n = n
        self._out_buf, self._counts, self._heap, self._probs, self._cand, self._bmax, self._cand2 = \
            out_buf, counts, heap, probs, cand, bmax, cand2
        self.configure(1.0, 0, 1.0, 0.0, 1.0, 0.0, 0.0)
        self._sc.counts = &counts[0]
        self._sc.heap = &heap[0]
        self._sc.probs = &probs[0]
        self._sc.cand = &cand[0]
        self._sc.cand2 = &cand2[0]
        self._sc.bmax = &bmax[0]
        self._sc.state = &self._state
        self._sc.dry_max = NULL
        self._sc.dry_z = NULL
        self._sc.dry_touched = NULL
        self._sc.brk_first = NULL
        self._sc.brk_next = NULL
        self._sc.brk_off = NULL
        self._sc.brk_tail = NULL
        self._sc.brk_single = NULL
        self._dry_room = 0

    def configure(self, double temperature, int64_t top_k, double top_p, double min_p,
                  double repetition_penalty, double frequency_penalty, double presence_penalty,
                  int64_t penalty_last_n=-1, steps=(), int64_t min_keep=0, double typical_p=1.0,
                  double top_n_sigma=0.0, double xtc_probability=0.0, double xtc_threshold=0.1,
                  double dry_multiplier=0.0, double dry_base=1.75, int64_t dry_allowed_length=2,
                  int64_t dry_last_n=-1):
        """The parameters (edgelm.sampling validates them). ``steps`` (codes 1-9 of
        _typedefs.pxd) selects the llama.cpp chain; empty, the transformers pipeline runs."""
        cdef SamplingConfig cfg
        cdef Py_ssize_t i
        if len(steps) > MAX_STEPS or any(not STEP_PENALTIES <= s <= STEP_TEMPERATURE for s in steps):
            raise ValueError("bad sampler steps")
        if STEP_DRY in steps and dry_multiplier != 0.0 and self._sc.dry_max == NULL:
            raise ValueError("DRY needs its scratch: call set_dry first")
        cfg.temperature, cfg.top_k, cfg.top_p, cfg.min_p = temperature, top_k, top_p, min_p
        cfg.repetition_penalty, cfg.frequency_penalty = repetition_penalty, frequency_penalty
        cfg.presence_penalty, cfg.penalty_last_n = presence_penalty, penalty_last_n
        cfg.n_steps = len(steps)
        for i in range(cfg.n_steps):
            cfg.steps[i] = steps[i]
        cfg.min_keep, cfg.typical_p, cfg.top_n_sigma = min_keep, typical_p, top_n_sigma
        cfg.xtc_probability, cfg.xtc_threshold = xtc_probability, xtc_threshold
        cfg.dry_multiplier, cfg.dry_base = dry_multiplier, dry_base
        cfg.dry_allowed_length, cfg.dry_last_n = dry_allowed_length, dry_last_n
        self._cfg = cfg

    def set_dry(self, int32_t[::1] dry_max, int32_t[::1] z, int32_t[::1] touched, brk_first, brk_next,
                brk_off, brk_tail, brk_single):
        """DRY's scratch: ``dry_max`` (n entries, all -1), ``z`` and ``touched`` (as long as
        the longest window to be read), and the sequence breakers (None for none):
        ``brk_first`` (n, int32: the first breaker headed by the token or -1), ``brk_next``
        (the next breaker with the same head or -1), ``brk_off`` (int32 offsets of each
        breaker's tail in ``brk_tail``, one more than breakers), ``brk_single`` (n, uint8:
        the token alone is a breaker). edgelm.sampling builds and checks them."""
        cdef int32_t[::1] first, nxt, off, tail
        cdef unsigned char[::1] single
        if dry_max.shape[0] < self.n or z.shape[0] != touched.shape[0] or z.shape[0] < 1:
            raise ValueError("DRY scratch too small")
        self._sc.dry_max = &dry_max[0]
        self._sc.dry_z = &z[0]
        self._sc.dry_touched = &touched[0]
        self._dry_room = z.shape[0]
        if brk_first is None:
            self._sc.brk_first = NULL
            self._sc.brk_single = NULL
            self._keep = (dry_max, z, touched)
            return
        first, nxt, off, tail, single = brk_first, brk_next, brk_off, brk_tail, brk_single
        if (first.shape[0] < self.n or single.shape[0] < self.n or off.shape[0] != nxt.shape[0] + 1
                or nxt.shape[0] < 1 or tail.shape[0] < 1):
            raise ValueError("bad breaker arrays")
        self._sc.brk_first = &first[0]
        self._sc.brk_next = &nxt[0]
        self._sc.brk_off = &off[0]
        self._sc.brk_tail = &tail[0]
        self._sc.brk_single = &single[0]
        self._keep = (dry_max, z, touched, brk_first, brk_next, brk_off, brk_tail, brk_single)

    @property
    def chain(self):
        return self._cfg.n_steps > 0

    def reseed(self, uint64_t seed):
        self._state = seed

    def set_mask(self, int32_t[::1] words, float[::1] masked):
        """Apply the bitset ``words`` (ceil(n / 32) words, read at each call, so the caller
        refills it in place) before everything else, through the scratch ``masked`` (n
        floats); ``clear_mask`` stops it."""
        if words.shape[0] < (self.n + 31) // 32 or masked.shape[0] < self.n:
            raise ValueError("mask buffers too small for the vocabulary")
        self._mask_words, self._masked, self._masking = words, masked, True

    def clear_mask(self):
        self._masking = False
        self._mask_words, self._masked = None, None

    cdef inline const float* _source(self, const float* logits) noexcept nogil:
        if not self._masking:
            return logits
        edgelm_apply_mask(logits, &self._masked[0], self.n, <const uint32_t*>&self._mask_words[0])
        return &self._masked[0]

    def uniform(self):
        """The next number of this sampler's stream, in [0, 1) (what its draws use)."""
        return uniform(&self._state)

    cdef inline float* _out_for(self, const float* src) noexcept nogil:
        # The output may not start within 512 B of the source modulo 4 KiB: a copy whose
        # loads and stores alias that way runs ~1.5x slower (4K aliasing).
        cdef float* base = &self._out_buf[0]
        cdef size_t delta = (<size_t>base - <size_t>src) % 4096
        self.out_offset = 256 if delta < 512 or delta > 4096 - 512 else 0
        return base + self.out_offset

    cdef inline bint _dry_short(self, Py_ssize_t n_prev) noexcept nogil:
        """The chain's DRY step would read a longer window than its scratch holds."""
        cdef Py_ssize_t i
        if self._cfg.dry_multiplier == 0.0:
            return False
        for i in range(self._cfg.n_steps):
            if self._cfg.steps[i] == STEP_DRY:
                return n_prev - window_start(n_prev, self._cfg.dry_last_n) > self._dry_room
        return False

    cdef Py_ssize_t _process(self, const float[::1] logits, const int64_t[::1] prev, bint fill) noexcept:
        cdef Py_ssize_t rc, start, n_prev = prev.shape[0]
        cdef const int64_t* prev_ptr = &prev[0] if n_prev > 0 else NULL
        cdef const float* src
        if logits.shape[0] != self.n:
            return ERR_SHAPE
        if self._cfg.n_steps > 0:
            if self._dry_short(n_prev):
                return ERR_DRY_ROOM
            with nogil:  # the chain masks straight into its output (one pass fewer)
                rc = chain_process(&logits[0], self._out_for(&logits[0]), self.n, prev_ptr, n_prev, &self._cfg,
                                   &self._sc, fill,
                                   <const uint32_t*>&self._mask_words[0] if self._masking else NULL)
            self.n_cand = rc if rc > 0 else 0
            return rc
        start = window_start(n_prev, self._cfg.penalty_last_n)  # the penalties' window
        with nogil:
            src = self._source(&logits[0])
            rc = process_logits(src, self._out_for(src), self.n, prev_ptr + start if n_prev > 0 else NULL,
                                n_prev - start, &self._counts[0], &self._cfg, &self._heap[0], &self._probs[0],
                                &self._cand[0], &self._bmax[0], fill)
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
        as transformers' greedy decoding; in a chain, the most likely survivor of its
        steps), else a draw. The logits are read in place."""
        cdef int64_t tok
        cdef Py_ssize_t rc, start, n_prev = prev.shape[0], i
        cdef const float* src
        cdef const int64_t* prev_ptr = &prev[0] if n_prev > 0 else NULL
        if logits.shape[0] != self.n:
            return ERR_SHAPE
        if self._cfg.temperature == 0.0 and self._cfg.n_steps == 0:
            start = window_start(n_prev, self._cfg.penalty_last_n)
            with nogil:
                src = self._source(&logits[0])
                tok = greedy_token(src, self._out_for(src), self.n, prev_ptr + start if n_prev > 0 else NULL,
                                   n_prev - start, &self._counts[0], &self._cfg, &self._heap[0], &self._probs[0],
                                   &self._cand[0], &self._bmax[0])
            return tok
        rc = self._process(logits, prev, False)
        if rc < 0:
            return rc
        if self._cfg.temperature == 0.0:  # a chain's greedy decoding
            if rc > 0:
                return self._cand[best_candidate(&self._cand[0], rc)].index
            with nogil:
                i = first_argmax(&self._out_buf[self.out_offset], self.n)
            return i
        return self.draw_processed()
