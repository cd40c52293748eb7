# The sampler's random numbers: splitmix64 (Steele, Lea, Flood 2014), integer-only, so a
# seed gives the same stream on every machine.
from libc.stdint cimport uint64_t


cdef inline uint64_t splitmix64(uint64_t* state) noexcept nogil:
    state[0] += 0x9E3779B97F4A7C15ULL
    cdef uint64_t z = state[0]
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL
    return z ^ (z >> 31)


cdef inline double uniform(uint64_t* state) noexcept nogil:
    # 53 random bits -> [0, 1)
    return <double>(splitmix64(state) >> 11) * (1.0 / 9007199254740992.0)
