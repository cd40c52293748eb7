# The k-th largest of n floats with a size-k min-heap (O(n log k), one pass), and a variant
# that skips whole blocks of EDGELM_BLOCK values by their maxima (top-k's threshold).
from _blocks cimport EDGELM_BLOCK, block_end


cdef inline void sift_down(float* heap, Py_ssize_t n, Py_ssize_t i) noexcept nogil:
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


cdef inline float kth_largest(const float* x, Py_ssize_t n, Py_ssize_t k, float* heap) noexcept nogil:
    """The k-th largest value (1 <= k <= n); ``np.sort(x)[-k]`` in numpy."""
    cdef Py_ssize_t i
    for i in range(k):
        heap[i] = x[i]
    for i in range(k // 2 - 1, -1, -1):
        sift_down(heap, k, i)
    for i in range(k, n):
        if x[i] > heap[0]:
            heap[0] = x[i]
            sift_down(heap, k, 0)
    return heap[0]


cdef inline float kth_largest_bmax(const float* x, Py_ssize_t n, Py_ssize_t k, float* heap,
                                   const float* bmax) noexcept nogil:
    """Like ``kth_largest`` but skips every block whose maximum (``bmax``, an upper bound is
    enough) cannot enter the heap: once the heap holds large values almost every block is
    skipped, so this reads ~n/64 maxima instead of n values."""
    cdef Py_ssize_t i, b, end
    for i in range(k):
        heap[i] = x[i]
    for i in range(k // 2 - 1, -1, -1):
        sift_down(heap, k, i)
    i = k
    while i < n:
        b = i // EDGELM_BLOCK
        end = block_end(b, n)
        if bmax[b] > heap[0]:
            while i < end:
                if x[i] > heap[0]:
                    heap[0] = x[i]
                    sift_down(heap, k, 0)
                i += 1
        i = end
    return heap[0]
