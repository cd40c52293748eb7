# Types shared by the kernels (cimported by _sampling.pyx and _sort.pxd).
from libc.stdint cimport int32_t, int64_t, uint64_t

cdef struct Candidate:
    float value
    int32_t index

# The steps of a llama.cpp-style chain, in SamplingConfig.steps (0 ends the list).
cdef enum:
    STEP_PENALTIES = 1
    STEP_DRY = 2
    STEP_TOP_N_SIGMA = 3
    STEP_TOP_K = 4
    STEP_TYPICAL = 5
    STEP_TOP_P = 6
    STEP_MIN_P = 7
    STEP_XTC = 8
    STEP_TEMPERATURE = 9
    MAX_STEPS = 16

cdef struct SamplingConfig:
    double temperature
    int64_t top_k
    double top_p
    double min_p
    double repetition_penalty
    double frequency_penalty
    double presence_penalty
    int64_t penalty_last_n  # < 0: the whole history
    # The chain (llama.cpp's semantics) runs when n_steps > 0; the fields below are its own.
    int32_t n_steps
    int32_t steps[16]
    int64_t min_keep
    double typical_p
    double top_n_sigma
    double xtc_probability
    double xtc_threshold
    double dry_multiplier
    double dry_base
    int64_t dry_allowed_length
    int64_t dry_last_n  # < 0: the whole history
