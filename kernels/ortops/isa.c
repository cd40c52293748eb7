/* CPU feature probes for the operators' kernels (see isa.h): x86-64 through the compiler's
 * cpuid builtins, aarch64 Linux (Android included) through getauxval(AT_HWCAP / AT_HWCAP2),
 * which is what the kernel reports per core type: the same on every core of a phone. */
#include "isa.h"

#include <stdlib.h>
#include <string.h>

#if defined(__aarch64__) && defined(__linux__)
#include <sys/auxv.h>
/* The HWCAP bits (asm/hwcap.h), spelled out: an old sysroot may lack the newer ones. */
#define EDGELM_HWCAP_ASIMD (1UL << 1)
#define EDGELM_HWCAP_ASIMDDP (1UL << 20)
#define EDGELM_HWCAP2_I8MM (1UL << 13)
#endif

#if defined(__x86_64__) || defined(__i386__)
static const char* const names[] = {"portable", "avx2", "avx512"};
static int probe(void) {
    __builtin_cpu_init();
    if (!(__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))) return ISA_PORTABLE;
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
        __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512vnni"))
        return ISA_AVX512;
    return ISA_AVX2;
}
#elif defined(__aarch64__)
static const char* const names[] = {"portable", "neon", "dotprod", "i8mm"};
static int probe(void) {
#if defined(__linux__)
    const unsigned long hw = getauxval(AT_HWCAP), hw2 = getauxval(AT_HWCAP2);
    if (!(hw & EDGELM_HWCAP_ASIMD)) return ISA_PORTABLE;
    if (!(hw & EDGELM_HWCAP_ASIMDDP)) return ISA_NEON;
    return (hw2 & EDGELM_HWCAP2_I8MM) ? ISA_I8MM : ISA_DOTPROD;
#else
    return ISA_NEON; /* Advanced SIMD is part of every armv8-a core */
#endif
}
#else
static const char* const names[] = {"portable"};
static int probe(void) { return ISA_PORTABLE; }
#endif

#define N_LEVELS ((int)(sizeof names / sizeof names[0]))

int edgelm_isa(void) {
    static int cached = -1;
    if (cached < 0) {
        int best = probe(), limit = N_LEVELS - 1;
        const char* cap = getenv("EDGELM_ORTOPS_ISA");
        const char* portable = getenv("EDGELM_ORTOPS_PORTABLE");
        for (int i = 0; cap && i < N_LEVELS; i++)
            if (strcmp(cap, names[i]) == 0) limit = i;
        if (portable && portable[0] && portable[0] != '0') limit = ISA_PORTABLE;
        cached = best < limit ? best : limit;
    }
    return cached;
}

/* The level in use, by name: what the tests read (ctypes) to know a cap took effect. */
__attribute__((visibility("default"))) const char* edgelm_ortops_isa(void) { return names[edgelm_isa()]; }
