# The sampler chain with llama.cpp's semantics (src/llama-sampling.cpp is the reference,
# tests/test-sampling.cpp its expected values; written here from their description):
# penalties over a window, DRY, top-n-sigma, top-k, typical, top-p, min-p, XTC and
# temperature, in the order SamplingConfig.steps lists them. Included by _sampling.pyx.
#
# State: ``out`` holds the current logit of every token still in play (-inf for the rest
# once ``fill`` asks for it). While ``full``, every finite entry of ``out`` is in play; after
# a step that needs a list (top-k, a sort) the survivors are ``cand[:n_cand]`` and each
# step writes a changed value to both. Tokens at -inf have no probability and are dropped
# from lists, so ``min_keep`` counts tokens that can be drawn.

from libc.math cimport fabsf, logf, pow, sqrt
from libc.string cimport memmove

DEF FLT_LOG_MAX = 88.7228391  # log(FLT_MAX): DRY's exponent is clamped below it


cdef struct ChainScratch:
    int32_t* counts  # n, all zero between calls
    float* heap  # n
    float* probs  # n, indexed by token
    Candidate* cand  # n
    Candidate* cand2  # n
    float* bmax  # ceil(n / 64) block maxima (the flags after them stay zero)
    int32_t* dry_max  # n, all -1 between calls (NULL without DRY)
    int32_t* dry_z  # >= the DRY window
    int32_t* dry_touched  # >= the DRY window
    int32_t* brk_first  # n: the first breaker whose head is the token, or -1 (NULL: no breakers)
    int32_t* brk_next  # per breaker: the next with the same head, or -1
    int32_t* brk_off  # per breaker + 1: where its tail starts in brk_tail
    int32_t* brk_tail
    unsigned char* brk_single  # n: the token is a whole breaker by itself
    uint64_t* state


cdef struct ChainState:
    float* out
    Py_ssize_t n
    Py_ssize_t n_cand
    bint full
    bint sorted
    bint bmax_ok
    bint fill


cdef inline Py_ssize_t window_start(Py_ssize_t n_prev, int64_t last_n) noexcept nogil:
    """Where the last ``last_n`` tokens of a history start (all of it for last_n < 0)."""
    if last_n < 0 or last_n >= n_prev:
        return 0
    return n_prev - <Py_ssize_t>last_n


cdef inline void _materialize(ChainState* st, ChainScratch* sc) noexcept nogil:
    """Full vocabulary -> the list of finite entries, in index order."""
    if st.full:
        st.n_cand = edgelm_collect_ge(st.out, 0, st.n, -3.4028234663852886e38, sc.cand, 0)
        st.full = False
        st.sorted = False


cdef inline void _sort(ChainState* st, ChainScratch* sc) noexcept nogil:
    if not st.sorted:
        sort_desc(sc.cand, st.n_cand)
        st.sorted = True


cdef inline void _truncate(ChainState* st, ChainScratch* sc, Py_ssize_t keep) noexcept nogil:
    cdef Py_ssize_t i
    for i in range(keep, st.n_cand):
        st.out[sc.cand[i].index] = -INFINITY
    if keep < st.n_cand:
        st.n_cand = keep


cdef inline void _drop_inf(ChainState* st, ChainScratch* sc) noexcept nogil:
    if not st.full:
        st.n_cand = _drop_neg_inf(sc.cand, st.n_cand)


cdef inline float _softmax(ChainState* st, ChainScratch* sc) noexcept nogil:
    """probs[token] = exp(value - max) for the listed tokens; returns their sum (float
    arithmetic, as llama.cpp's softmax)."""
    cdef Py_ssize_t i
    cdef float m = sc.cand[0].value, total = 0.0, e
    for i in range(1, st.n_cand):
        if sc.cand[i].value > m:
            m = sc.cand[i].value
    for i in range(st.n_cand):
        e = edgelm_exp_nonpos(sc.cand[i].value - m)
        sc.probs[sc.cand[i].index] = e
        total += e
    return total


cdef inline float _max_in_play(ChainState* st, ChainScratch* sc) noexcept nogil:
    cdef Py_ssize_t i
    cdef float m
    if st.full:
        return edgelm_max(st.out, st.n)
    m = -INFINITY
    for i in range(st.n_cand):
        if sc.cand[i].value > m:
            m = sc.cand[i].value
    return m


cdef inline int _value_error(float v) noexcept nogil:
    if v != v:
        return ERR_NAN
    if v == INFINITY:
        return ERR_POS_INF
    return OK


cdef inline float _penalised(float v, int32_t count, float rp, float fp, float pp) noexcept nogil:
    v = v * rp if v <= 0 else v / rp
    return v - (<float>count * fp + pp)


cdef inline void _refresh_block(ChainState* st, ChainScratch* sc, int64_t t) noexcept nogil:
    """Recompute the maximum of the block holding token t (after its logit moved)."""
    cdef Py_ssize_t b = <Py_ssize_t>(t // EDGELM_BLOCK)
    edgelm_bmax(st.out + b * EDGELM_BLOCK, block_end(b, st.n) - b * EDGELM_BLOCK, sc.bmax + b)


cdef int _step_penalties(ChainState* st, ChainScratch* sc, SamplingConfig* cfg, const int64_t* prev,
                         Py_ssize_t n_prev) noexcept nogil:
    """Repetition, frequency and presence penalties over the last penalty_last_n tokens:
    a logit <= 0 is multiplied by the repetition penalty, a positive one divided, then
    count x frequency + presence is subtracted (float arithmetic)."""
    cdef float rp = <float>cfg.repetition_penalty, fp = <float>cfg.frequency_penalty
    cdef float pp = <float>cfg.presence_penalty, v
    cdef Py_ssize_t j, i, start
    cdef int64_t t
    cdef int32_t c
    cdef int rc = OK
    if cfg.penalty_last_n == 0 or (rp == 1.0 and fp == 0.0 and pp == 0.0):
        return OK
    start = window_start(n_prev, cfg.penalty_last_n)
    for j in range(start, n_prev):
        sc.counts[prev[j]] += 1
    if st.full:
        for j in range(start, n_prev):
            t = prev[j]
            c = sc.counts[t]
            if c > 0:
                v = _penalised(st.out[t], c, rp, fp, pp)
                st.out[t] = v
                sc.counts[t] = 0
                if rc == OK:
                    rc = _value_error(v)
        if rc == OK and st.bmax_ok:
            for j in range(start, n_prev):
                _refresh_block(st, sc, prev[j])
        return rc
    for i in range(st.n_cand):
        t = sc.cand[i].index
        c = sc.counts[t]
        if c > 0:
            v = _penalised(sc.cand[i].value, c, rp, fp, pp)
            sc.cand[i].value = v
            st.out[t] = v
            if rc == OK:
                rc = _value_error(v)
    for j in range(start, n_prev):
        sc.counts[prev[j]] = 0
    st.sorted = False
    _drop_inf(st, sc)
    return rc


cdef int _step_dry(ChainState* st, ChainScratch* sc, SamplingConfig* cfg, const int64_t* prev,
                   Py_ssize_t n_prev) noexcept nogil:
    """DRY ("don't repeat yourself", from koboldcpp by way of llama.cpp): a token that would
    extend a repeat of the context's last tokens already seen earlier, longer than
    ``dry_allowed_length``, loses multiplier x base^(length - allowed). A sequence breaker
    in the context limits how far back a repeat may reach."""
    cdef Py_ssize_t start = window_start(n_prev, cfg.dry_last_n)
    cdef Py_ssize_t L = n_prev - start, i, k, o, z, lo = 0, hi = 0, n_touched = 0
    cdef const int64_t* last = prev + n_prev - 1  # last[-i] is the i-th token from the end
    cdef int64_t allowed = cfg.dry_allowed_length, rep_limit, rl, tok
    cdef int32_t s, longest, seq_len, e, max_exp = 0
    cdef bint match
    cdef float pen, base = <float>cfg.dry_base, mult = <float>cfg.dry_multiplier
    if cfg.dry_multiplier == 0.0 or cfg.dry_base < 1.0 or cfg.dry_last_n == 0 or L <= allowed:
        return OK
    # 1. The nearest breaker (a head token, then its tail before it) bounds the repeat length.
    rep_limit = L
    if sc.brk_first != NULL:
        for i in range(L):
            s = sc.brk_first[last[-i]]
            longest = -1
            while s >= 0:
                seq_len = sc.brk_off[s + 1] - sc.brk_off[s]
                if longest < seq_len <= i:
                    match = True
                    for o in range(seq_len):
                        if sc.brk_tail[sc.brk_off[s] + o] != last[-(i - o - 1)]:
                            match = False
                            break
                    if match:
                        longest = seq_len
                s = sc.brk_next[s]
            if longest >= 0:
                rep_limit = i - longest
                break
    if rep_limit < allowed:
        return OK
    # 2. Z-function of the context read backwards: z[k] = how many of the last tokens also
    # end k tokens earlier (linear time: [lo, hi) is the rightmost match of a prefix seen).
    sc.dry_z[0] = <int32_t>L
    for k in range(1, L):
        z = 0
        if k < hi:
            z = hi - k
            if sc.dry_z[k - lo] < z:
                z = sc.dry_z[k - lo]
        while k + z < L and last[-z] == last[-(k + z)]:
            z += 1
        sc.dry_z[k] = <int32_t>z
        if k + z > hi:
            lo = k
            hi = k + z
    # 3. The token that followed each such earlier occurrence would extend the repeat.
    for k in range(1, L):
        rl = sc.dry_z[k] if sc.dry_z[k] < rep_limit else rep_limit
        if rl >= allowed:
            tok = last[-(k - 1)]
            if sc.dry_max[tok] < 0:
                sc.dry_touched[n_touched] = <int32_t>tok
                n_touched += 1
                sc.dry_max[tok] = <int32_t>rl
            elif sc.dry_max[tok] < rl:
                sc.dry_max[tok] = <int32_t>rl
    # 4. Penalise them (never a token that is a breaker by itself).
    if base > 1.000001:
        max_exp = <int32_t>(<float>FLT_LOG_MAX / logf(base))
    if st.full:
        for i in range(n_touched):
            tok = sc.dry_touched[i]
            if sc.brk_single == NULL or not sc.brk_single[tok]:
                e = <int32_t>(sc.dry_max[tok] - allowed)
                if max_exp > 0 and e > max_exp:
                    e = max_exp
                pen = <float>(<double>mult * pow(<double>base, e))
                st.out[tok] = st.out[tok] - pen
                if st.bmax_ok:
                    _refresh_block(st, sc, tok)
    else:
        for i in range(st.n_cand):
            tok = sc.cand[i].index
            if sc.dry_max[tok] >= 0 and (sc.brk_single == NULL or not sc.brk_single[tok]):
                e = <int32_t>(sc.dry_max[tok] - allowed)
                if max_exp > 0 and e > max_exp:
                    e = max_exp
                pen = <float>(<double>mult * pow(<double>base, e))
                sc.cand[i].value = sc.cand[i].value - pen
                st.out[tok] = sc.cand[i].value
        st.sorted = False
        _drop_inf(st, sc)
    for i in range(n_touched):
        sc.dry_max[sc.dry_touched[i]] = -1
    return OK


cdef void _step_top_k(ChainState* st, ChainScratch* sc, int64_t k) noexcept nogil:
    """The k most likely (ties to the lower id); k <= 0 keeps all."""
    cdef float thr
    cdef Py_ssize_t nb = (st.n + EDGELM_BLOCK - 1) // EDGELM_BLOCK
    if k <= 0:
        return
    if st.full:
        if k >= st.n:
            return
        if not st.bmax_ok:
            edgelm_bmax(st.out, st.n, sc.bmax)
            st.bmax_ok = True
        st.n_cand = _top_k_candidates(st.out, st.out, NULL, st.n, k, sc.heap, sc.probs, sc.bmax, nb, sc.cand,
                                      &thr)
        st.full = False
        st.sorted = False
        if st.fill:
            edgelm_filter_below(st.out, st.n, thr)
    if k < st.n_cand:
        _sort(st, sc)
        _truncate(st, sc, <Py_ssize_t>k)


cdef void _step_top_p(ChainState* st, ChainScratch* sc, double top_p, int64_t min_keep) noexcept nogil:
    """The fewest most likely tokens whose probabilities sum to at least p (and min_keep)."""
    cdef Py_ssize_t i, last
    cdef float total, cum = 0.0, p = <float>top_p
    if top_p >= 1.0:
        return
    if st.full and min_keep <= 1:  # the whole vocabulary without sorting it
        _top_p(st.out, st.n, edgelm_max(st.out, st.n), top_p, sc.probs, <int32_t*>sc.heap, sc.cand)
        st.bmax_ok = False
        return
    _materialize(st, sc)
    _sort(st, sc)
    total = _softmax(st, sc)
    last = st.n_cand
    for i in range(st.n_cand):
        cum += sc.probs[sc.cand[i].index] / total
        if cum >= p and i + 1 >= min_keep:
            last = i + 1
            break
    _truncate(st, sc, last)


cdef void _step_min_p(ChainState* st, ChainScratch* sc, double min_p, int64_t min_keep) noexcept nogil:
    """Tokens at least min_p times as likely as the most likely (at least min_keep)."""
    cdef Py_ssize_t i, w = 0, count = 0
    cdef float lo
    if min_p <= 0.0:
        return
    lo = _max_in_play(st, sc) + logf(<float>min_p)
    if st.full:
        for i in range(st.n):
            count += st.out[i] >= lo
    else:
        for i in range(st.n_cand):
            count += sc.cand[i].value >= lo
    if count > 0 and count >= min_keep:
        if st.full:
            edgelm_filter_below(st.out, st.n, lo)
            st.bmax_ok = False
            return
        for i in range(st.n_cand):
            if sc.cand[i].value >= lo:
                sc.cand[w] = sc.cand[i]
                w += 1
            else:
                st.out[sc.cand[i].index] = -INFINITY
        st.n_cand = w
        return
    _materialize(st, sc)
    _sort(st, sc)
    i = 1  # the first always stays
    while i < st.n_cand and not (sc.cand[i].value < lo and i >= min_keep):
        i += 1
    _truncate(st, sc, i)


cdef void _step_typical(ChainState* st, ChainScratch* sc, double typical_p, int64_t min_keep) noexcept nogil:
    """Locally typical sampling (Meister et al. 2022): tokens ordered by how far their
    surprise is from the entropy, the fewest whose mass exceeds p (and min_keep)."""
    cdef Py_ssize_t i, last
    cdef float total, H = 0.0, p, cum = 0.0
    cdef int32_t t
    if typical_p >= 1.0:
        return
    _materialize(st, sc)
    _sort(st, sc)
    total = _softmax(st, sc)
    for i in range(st.n_cand):
        t = sc.cand[i].index
        p = sc.probs[t] / total
        sc.probs[t] = p
        if p > 0.0:  # 0 log 0 = 0 (llama.cpp would make the entropy NaN and keep everything)
            H -= p * logf(p)
    for i in range(st.n_cand):
        t = sc.cand[i].index
        p = sc.probs[t]
        sc.cand2[i].index = t
        sc.cand2[i].value = -fabsf(-logf(p) - H) if p > 0.0 else -INFINITY
    sort_desc(sc.cand2, st.n_cand)  # closest to the entropy first (ties to the lower id)
    last = st.n_cand
    for i in range(st.n_cand):
        cum += sc.probs[sc.cand2[i].index]
        if cum > <float>typical_p and (min_keep == 0 or i >= min_keep - 1):
            last = i + 1
            break
    for i in range(st.n_cand):
        t = sc.cand2[i].index
        if i < last:
            sc.cand[i].index = t
            sc.cand[i].value = st.out[t]
        else:
            st.out[t] = -INFINITY
    st.n_cand = last
    st.sorted = False


cdef void _step_top_n_sigma(ChainState* st, ChainScratch* sc, double nsig) noexcept nogil:
    """Tokens within n standard deviations of the top logit (Tang et al. 2024), the mean
    and deviation taken over the tokens in play (sums in double)."""
    cdef Py_ssize_t i, count = 0
    cdef double sum = 0.0, acc = 0.0, mean, d
    cdef float m = -INFINITY, v, lo
    cdef Py_ssize_t size = st.n if st.full else st.n_cand
    if nsig <= 0.0:
        return
    for i in range(size):
        v = st.out[i] if st.full else sc.cand[i].value
        if v > -INFINITY:
            count += 1
            sum += v
            if v > m:
                m = v
    if count <= 1:
        return
    mean = sum / count
    for i in range(size):
        v = st.out[i] if st.full else sc.cand[i].value
        if v > -INFINITY:
            d = v - mean
            acc += d * d
    lo = <float>(m - nsig * sqrt(acc / count))
    if st.full:
        edgelm_filter_below(st.out, st.n, lo)
        st.bmax_ok = False
        return
    for i in range(st.n_cand):
        if sc.cand[i].value < lo:
            sc.cand[i].value = -INFINITY
            st.out[sc.cand[i].index] = -INFINITY
    _drop_inf(st, sc)


cdef void _step_xtc(ChainState* st, ChainScratch* sc, SamplingConfig* cfg) noexcept nogil:
    """Exclude top choices (XTC): with probability xtc_probability, when two or more
    tokens reach xtc_threshold, all of them but the least likely go (if min_keep remain).
    The coin comes from the sampler's own stream."""
    cdef Py_ssize_t i, pos_last = 0
    cdef float total, thr = <float>cfg.xtc_threshold
    if cfg.xtc_probability <= 0.0 or cfg.xtc_threshold > 0.5:
        return
    _materialize(st, sc)
    if st.n_cand < 2:
        return
    if <float>uniform(sc.state) > <float>cfg.xtc_probability:
        return
    _sort(st, sc)
    total = _softmax(st, sc)
    for i in range(st.n_cand):
        if sc.probs[sc.cand[i].index] / total >= thr:
            pos_last = i
        else:
            break
    if pos_last > 0 and st.n_cand - pos_last >= cfg.min_keep:
        for i in range(pos_last):
            st.out[sc.cand[i].index] = -INFINITY
        memmove(sc.cand, sc.cand + pos_last, (st.n_cand - pos_last) * sizeof(Candidate))
        st.n_cand -= pos_last


cdef inline Py_ssize_t best_candidate(const Candidate* cand, Py_ssize_t n_cand) noexcept nogil:
    """Where the most likely listed token is, the lower id among equal ones."""
    cdef Py_ssize_t i, best = 0
    for i in range(1, n_cand):
        if cand[i].value > cand[best].value or (cand[i].value == cand[best].value
                                                 and cand[i].index < cand[best].index):
            best = i
    return best


cdef inline Py_ssize_t first_argmax(const float* x, Py_ssize_t n) noexcept nogil:
    """numpy's argmax: the first of the largest values."""
    cdef Py_ssize_t i, best = 0
    for i in range(1, n):
        if x[i] > x[best]:
            best = i
    return best


cdef int _step_temperature(ChainState* st, ChainScratch* sc, double temperature) noexcept nogil:
    """Divide the logits by the temperature; at 0, keep only the most likely (the lower id
    among equal ones)."""
    cdef Py_ssize_t i, best = 0
    cdef float t = <float>temperature, m
    cdef Candidate c
    if temperature == 1.0:
        return OK
    if temperature <= 0.0:
        if st.full:
            best = first_argmax(st.out, st.n)
            c.value = st.out[best]
            c.index = <int32_t>best
            if st.fill:
                for i in range(st.n):
                    if i != best:
                        st.out[i] = -INFINITY
            sc.cand[0] = c
            st.n_cand = 1
            st.full = False
        else:
            best = best_candidate(sc.cand, st.n_cand)
            c = sc.cand[best]
            for i in range(st.n_cand):
                if i != best:
                    st.out[sc.cand[i].index] = -INFINITY
            sc.cand[0] = c
            st.n_cand = 1
        st.sorted = True
        return OK
    m = _max_in_play(st, sc)
    if not isfinite(m / t):
        return ERR_POS_INF
    if st.full:
        for i in range(st.n):
            st.out[i] = st.out[i] / t
        st.bmax_ok = False
        return OK
    for i in range(st.n_cand):
        sc.cand[i].value = sc.cand[i].value / t
        st.out[sc.cand[i].index] = sc.cand[i].value
    _drop_inf(st, sc)
    return OK


cdef Py_ssize_t chain_process(const float* src, float* out, Py_ssize_t n, const int64_t* prev, Py_ssize_t n_prev,
                              SamplingConfig* cfg, ChainScratch* sc, bint fill, const uint32_t* mask) noexcept nogil:
    """Run the chain: ``src`` -> ``out``, the tokens ``mask`` (a bitset, or NULL) leaves out
    at -inf first. Returns the number of survivors listed in
    ``cand`` (> 0), 0 when the whole vocabulary is still in play in ``out``, or an error.
    With ``fill`` every token out of play is -inf in ``out``; without it only the list is
    meaningful once there is one."""
    cdef ChainState st
    cdef Py_ssize_t i, lo = n_prev, nb = (n + EDGELM_BLOCK - 1) // EDGELM_BLOCK
    cdef int32_t step
    cdef int rc = OK
    cdef float m
    for i in range(cfg.n_steps):  # check the ids of every window a step reads
        if cfg.steps[i] == STEP_PENALTIES:
            lo = min(lo, window_start(n_prev, cfg.penalty_last_n))
        elif cfg.steps[i] == STEP_DRY:
            lo = min(lo, window_start(n_prev, cfg.dry_last_n))
    for i in range(lo, n_prev):
        if prev[i] < 0 or prev[i] >= n:
            return ERR_TOKEN_RANGE
    if mask != NULL:
        edgelm_apply_mask(src, out, n, mask)
        if edgelm_bmax(out, n, sc.bmax):
            return ERR_NAN
    elif edgelm_copy_bmax(src, out, n, sc.bmax):
        return ERR_NAN
    m = edgelm_max(sc.bmax, nb)
    if m == INFINITY:
        return ERR_POS_INF
    if m == -INFINITY:
        return ERR_ALL_INF
    st.out, st.n, st.n_cand = out, n, 0
    st.full, st.sorted, st.bmax_ok, st.fill = True, False, True, fill
    for i in range(cfg.n_steps):
        step = cfg.steps[i]
        if step == STEP_PENALTIES:
            rc = _step_penalties(&st, sc, cfg, prev, n_prev)
        elif step == STEP_DRY:
            rc = _step_dry(&st, sc, cfg, prev, n_prev)
        elif step == STEP_TOP_N_SIGMA:
            _step_top_n_sigma(&st, sc, cfg.top_n_sigma)
        elif step == STEP_TOP_K:
            _step_top_k(&st, sc, cfg.top_k)
        elif step == STEP_TYPICAL:
            _step_typical(&st, sc, cfg.typical_p, cfg.min_keep)
        elif step == STEP_TOP_P:
            _step_top_p(&st, sc, cfg.top_p, cfg.min_keep)
        elif step == STEP_MIN_P:
            _step_min_p(&st, sc, cfg.min_p, cfg.min_keep)
        elif step == STEP_XTC:
            _step_xtc(&st, sc, cfg)
        elif step == STEP_TEMPERATURE:
            rc = _step_temperature(&st, sc, cfg.temperature)
        if rc != OK:
            return rc
        if not st.full and st.n_cand == 0:
            return ERR_ALL_INF
        if st.full and (step == STEP_PENALTIES or step == STEP_DRY):  # a penalty may have sent all to -inf
            m = edgelm_max(sc.bmax, nb) if st.bmax_ok else edgelm_max(out, n)
            if m == -INFINITY:
                return ERR_ALL_INF
    if st.full:
        if edgelm_max(out, n) == -INFINITY:
            return ERR_ALL_INF
        return 0
    return st.n_cand
