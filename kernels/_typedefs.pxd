# Types shared by the kernels (cimported by _sampling.pyx and _sort.pxd).
from libc.stdint cimport int32_t, int64_t, uint64_t

cdef struct Candidate:
    float value
    int32_t index

cdef struct SamplingConfig:
    double temperature
    int64_t top_k
    double top_p
    double min_p
    double repetition_penalty
    double frequency_penalty
    double presence_penalty
