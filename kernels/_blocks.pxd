# The Cython face of sampling_blocks.h (the sampling kernels' vector loops, over blocks of
# EDGELM_BLOCK logits) and of the exp they share with the C operators (edgelm_exp.h).
from libc.stdint cimport int32_t, uint32_t


cdef extern from "sampling_blocks.h":
    float edgelm_exp_nonpos(float x) noexcept nogil
    void edgelm_exp_nonpos_lanes(const float* x, float* out, Py_ssize_t n) noexcept nogil
    int edgelm_copy_bmax(const float* src, float* out, Py_ssize_t n, float* bmax) noexcept nogil
    int edgelm_bmax(const float* src, Py_ssize_t n, float* bmax) noexcept nogil
    void edgelm_exp_buckets(const float* x, Py_ssize_t n, float m, float scale, int32_t last, float* p,
                            int32_t* bucket) noexcept nogil
    void edgelm_filter_below(float* out, Py_ssize_t n, float thr) noexcept nogil
    void edgelm_apply_mask(const float* src, float* dst, Py_ssize_t n, const uint32_t* words) noexcept nogil
    float edgelm_max(const float* x, Py_ssize_t n) noexcept nogil
    Py_ssize_t edgelm_collect_ge(const float* x, Py_ssize_t start, Py_ssize_t end, float lo, void* cand,
                                 Py_ssize_t c) noexcept nogil
    enum: EDGELM_BLOCK


cdef inline Py_ssize_t block_end(Py_ssize_t b, Py_ssize_t n) noexcept nogil:
    """One past the last index of block ``b`` (the last block may be short)."""
    cdef Py_ssize_t end = (b + 1) * EDGELM_BLOCK
    return end if end < n else n
