# Candidates sorted by descending value, the lower index first among equal values: a total
# order, so any correct sort gives the same list (a tie at the top-p cut keeps the lower
# ids; transformers' unstable torch.sort keeps arbitrary ones: the number kept and their
# values agree, a test).
from libc.stdlib cimport qsort

from _typedefs cimport Candidate


cdef inline int cmp_desc(const void* a, const void* b) noexcept nogil:
    cdef const Candidate* x = <const Candidate*>a
    cdef const Candidate* y = <const Candidate*>b
    if x.value > y.value:
        return -1
    if x.value < y.value:
        return 1
    return (x.index > y.index) - (x.index < y.index)


cdef inline void sort_desc(Candidate* cand, Py_ssize_t n) noexcept nogil:
    """Insertion sort for the short lists top-k leaves, qsort above 64."""
    cdef Py_ssize_t i, j
    cdef Candidate c
    if n > 64:
        qsort(cand, n, sizeof(Candidate), cmp_desc)
        return
    for i in range(1, n):
        c = cand[i]
        j = i
        while j > 0 and (cand[j - 1].value < c.value or (cand[j - 1].value == c.value and cand[j - 1].index > c.index)):
            cand[j] = cand[j - 1]
            j -= 1
        cand[j] = c
