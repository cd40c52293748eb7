/* edgelm's ONNX Runtime custom operator: BlockQuantMatMul (domain "ai.edgelm").
 *
 *     Y[..., n] = sum_k A[..., k] * W[n, k]
 *     W[n, k]   = scales[n, b] * (q[n, k] - zp) + offsets[n, b],   b = k / 32
 *
 * with q the 4-bit (zp 8) or 8-bit (zp 128) codes packed exactly as MatMulNBits reads
 * them ([N, K/32, 16] or [N, K/32, 32] bytes, 4-bit: element 2i in the low nibble) and
 * scales [N, K/32]. `offsets` is optional (symmetric formats); it is stored four rows
 * interleaved, [ceil(N/4), K/32, 4], so one vector load serves the four rows a pass
 * computes. This is GGUF Q4_1 (w = d*q + m) and Q8_0 in
 * one node: ONNX Runtime's MatMulNBits has no fast path for a float per-block offset, so
 * edgelm's graph used to add it with four more nodes per linear.
 *
 * Activations are quantized per 32-block to int16 (scale amax/32767), so the result is
 * within ~1e-5 relative of the float product: the int8 activations of MatMulNBits'
 * accuracy level 4 (and of llama.cpp) flip near-tied next tokens. The products are
 * 16 x 16 -> 32-bit multiply-adds (AVX2 vpmaddwd: as many multiplies per weight as the
 * int8 path), summed exactly in int32 per block and scaled once per block.
 *
 * Built as a plain shared library (no Python), loaded with
 * SessionOptions.register_custom_ops_library(path). The onnxruntime wheel ships no C
 * headers, so the few ABI entries used are declared below: OrtApi is a table of function
 * pointers that ONNX Runtime only ever appends to, and OrtCustomOp a versioned struct.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <math.h>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define EDGELM_X86 1
#endif

/* ---- ONNX Runtime C ABI (the subset used; indices into OrtApi's function table) ---- */

typedef struct OrtStatus OrtStatus;
typedef struct OrtValue OrtValue;
typedef struct OrtKernelInfo OrtKernelInfo;
typedef struct OrtKernelContext OrtKernelContext;
typedef struct OrtSessionOptions OrtSessionOptions;
typedef struct OrtCustomOpDomain OrtCustomOpDomain;
typedef struct OrtTensorTypeAndShapeInfo OrtTensorTypeAndShapeInfo;
typedef void OrtApi; /* used only through the function table */

typedef struct OrtApiBase {
    const OrtApi* (*GetApi)(uint32_t version);
    const char* (*GetVersionString)(void);
} OrtApiBase;

/* KernelContext_ParallelFor (index 274) arrived with API version 17 (ONNX Runtime 1.17). */
#define EDGELM_ORT_API_VERSION 17

enum {
    API_CreateStatus = 0,
    API_CreateCustomOpDomain = 26,
    API_CustomOpDomain_Add = 27,
    API_AddCustomOpDomain = 28,
    API_GetTensorMutableData = 51,
    API_GetDimensionsCount = 61,
    API_GetDimensions = 62,
    API_GetTensorTypeAndShape = 65,
    API_KernelInfoGetAttribute_int64 = 86,
    API_KernelContext_GetInputCount = 88,
    API_KernelContext_GetInput = 90,
    API_KernelContext_GetOutput = 91,
    API_ReleaseTensorTypeAndShapeInfo = 99,
    API_KernelContext_ParallelFor = 274,
};

enum { ORT_INVALID_ARGUMENT = 2, ORT_FAIL = 1 };
enum { TYPE_FLOAT = 1, TYPE_UINT8 = 2 };
enum { IO_REQUIRED = 0, IO_OPTIONAL = 1 };

#define FN(api, index, type) ((type)(((void* const*)(api))[index]))

typedef OrtStatus* (*CreateStatusFn)(int, const char*);
typedef OrtStatus* (*CreateCustomOpDomainFn)(const char*, OrtCustomOpDomain**);
typedef OrtStatus* (*CustomOpDomainAddFn)(OrtCustomOpDomain*, const void*);
typedef OrtStatus* (*AddCustomOpDomainFn)(OrtSessionOptions*, OrtCustomOpDomain*);
typedef OrtStatus* (*GetTensorMutableDataFn)(OrtValue*, void**);
typedef OrtStatus* (*GetDimensionsCountFn)(const OrtTensorTypeAndShapeInfo*, size_t*);
typedef OrtStatus* (*GetDimensionsFn)(const OrtTensorTypeAndShapeInfo*, int64_t*, size_t);
typedef OrtStatus* (*GetTensorTypeAndShapeFn)(const OrtValue*, OrtTensorTypeAndShapeInfo**);
typedef OrtStatus* (*KernelInfoGetAttributeInt64Fn)(const OrtKernelInfo*, const char*, int64_t*);
typedef OrtStatus* (*KernelContextGetInputCountFn)(const OrtKernelContext*, size_t*);
typedef OrtStatus* (*KernelContextGetInputFn)(const OrtKernelContext*, size_t, const OrtValue**);
typedef OrtStatus* (*KernelContextGetOutputFn)(OrtKernelContext*, size_t, const int64_t*, size_t, OrtValue**);
typedef void (*ReleaseTensorTypeAndShapeInfoFn)(OrtTensorTypeAndShapeInfo*);
typedef OrtStatus* (*KernelContextParallelForFn)(const OrtKernelContext*, void (*)(void*, size_t), size_t, size_t,
                                                 void*);

/* OrtCustomOp up to the fields of version 17; ONNX Runtime reads no field past its version. */
typedef struct OrtCustomOp {
    uint32_t version;
    void* (*CreateKernel)(const struct OrtCustomOp*, const OrtApi*, const OrtKernelInfo*);
    const char* (*GetName)(const struct OrtCustomOp*);
    const char* (*GetExecutionProviderType)(const struct OrtCustomOp*);
    int (*GetInputType)(const struct OrtCustomOp*, size_t);
    size_t (*GetInputTypeCount)(const struct OrtCustomOp*);
    int (*GetOutputType)(const struct OrtCustomOp*, size_t);
    size_t (*GetOutputTypeCount)(const struct OrtCustomOp*);
    void (*KernelCompute)(void*, OrtKernelContext*);
    void (*KernelDestroy)(void*);
    int (*GetInputCharacteristic)(const struct OrtCustomOp*, size_t);
    int (*GetOutputCharacteristic)(const struct OrtCustomOp*, size_t);
    int (*GetInputMemoryType)(const struct OrtCustomOp*, size_t);
    int (*GetVariadicInputMinArity)(const struct OrtCustomOp*);
    int (*GetVariadicInputHomogeneity)(const struct OrtCustomOp*);
    int (*GetVariadicOutputMinArity)(const struct OrtCustomOp*);
    int (*GetVariadicOutputHomogeneity)(const struct OrtCustomOp*);
    OrtStatus* (*CreateKernelV2)(const struct OrtCustomOp*, const OrtApi*, const OrtKernelInfo*, void**);
    OrtStatus* (*KernelComputeV2)(void*, OrtKernelContext*);
    OrtStatus* (*InferOutputShapeFn)(const struct OrtCustomOp*, void*);
    int (*GetStartVersion)(const struct OrtCustomOp*);
    int (*GetEndVersion)(const struct OrtCustomOp*);
} OrtCustomOp;

/* ---- the kernel ---- */

#define QBLOCK 32

typedef struct {
    const OrtApi* api;
    int64_t k, n, bits;
} Kernel;

/* Activations of one call, quantized once and read by every output row. Per row r and
 * block b: 32 int16 codes (in the order the weight codes unpack), the scale and the float
 * sum of the block. */
typedef struct {
    const Kernel* kern;
    const uint8_t* codes;
    const float* scales;
    const float* offsets; /* NULL: symmetric */
    const int16_t* qa;
    const float* da;
    const float* sa;
    float* y;
    int64_t m;
    int64_t rows_per_task;
} Task;

/* Round to nearest (ties to even) without a libm call: adding 1.5 * 2^23 leaves an integer
 * in the float's low mantissa bits (|x| <= 2^22). Branch-free, so the loops vectorize. */
#define ROUND_MAGIC 12582912.0f

static inline void quantize_block(const float* x, int bits, int16_t* q, float* d_out, float* sum_out) {
    float amax = 0.0f, sum = 0.0f, r[QBLOCK];
    for (int i = 0; i < QBLOCK; i++) {
        const float v = fabsf(x[i]);
        amax = v > amax ? v : amax;
    }
    for (int i = 0; i < QBLOCK; i++) sum += x[i];
    const float d = amax / 32767.0f;
    const float inv = d > 0.0f ? 1.0f / d : 0.0f;
    for (int i = 0; i < QBLOCK; i++) {
        const float v = (x[i] * inv + ROUND_MAGIC) - ROUND_MAGIC;
        r[i] = v > 32767.0f ? 32767.0f : (v < -32767.0f ? -32767.0f : v);
    }
    for (int i = 0; i < QBLOCK; i++) {
        /* 4-bit codes unpack as the 16 low nibbles (elements 0, 2, ..., 30), then the 16 high
         * ones (1, 3, ..., 31): activations are stored in that order, so the dot needs no shuffle. */
        const int dst = bits == 4 ? (i & 1) * 16 + (i >> 1) : i;
        q[dst] = (int16_t)(int)r[i];
    }
    *d_out = d;
    *sum_out = sum;
}

#define QUANTIZE_ROWS_BODY                                                                                \
    const int64_t nb = k / QBLOCK;                                                                       \
    for (int64_t r = 0; r < m; r++)                                                                      \
        for (int64_t b = 0; b < nb; b++)                                                                 \
            quantize_block(a + r * k + b * QBLOCK, bits, qa + (r * nb + b) * QBLOCK, da + r * nb + b,    \
                           sa + r * nb + b);

static void quantize_rows(const float* a, int64_t m, int64_t k, int bits, int16_t* qa, float* da, float* sa) {
    QUANTIZE_ROWS_BODY
}

/* Offset of row n, block b, in the four-row interleaved layout. */
static inline int64_t offset_index(int64_t n, int64_t b, int64_t nb) { return ((n >> 2) * nb + b) * 4 + (n & 3); }

/* One output value: row n of the weights against activation row r (portable C). */
static float dot_scalar(const Task* t, int64_t n, int64_t r) {
    const int64_t nb = t->kern->k / QBLOCK;
    const int bits = (int)t->kern->bits;
    const int16_t* qa = t->qa + r * nb * QBLOCK;
    const float* da = t->da + r * nb;
    const float* sa = t->sa + r * nb;
    const float* sc = t->scales + n * nb;
    const int bytes = bits == 4 ? QBLOCK / 2 : QBLOCK;
    const uint8_t* w = t->codes + n * nb * bytes;
    float acc = 0.0f;
    for (int64_t b = 0; b < nb; b++) {
        const int16_t* q = qa + b * QBLOCK;
        const uint8_t* wb = w + b * bytes;
        int32_t s = 0;
        if (bits == 4) {
            for (int i = 0; i < 16; i++) s += ((wb[i] & 15) - 8) * q[i] + ((wb[i] >> 4) - 8) * q[16 + i];
        } else {
            for (int i = 0; i < QBLOCK; i++) s += ((int)wb[i] - 128) * q[i];
        }
        acc += (float)s * (sc[b] * da[b]);
        if (t->offsets) acc += t->offsets[offset_index(n, b, nb)] * sa[b];
    }
    return acc;
}

#ifdef EDGELM_X86
__attribute__((target("avx2,fma"))) static void quantize_rows_avx2(const float* a, int64_t m, int64_t k, int bits,
                                                                  int16_t* qa, float* da, float* sa) {
    QUANTIZE_ROWS_BODY
}

__attribute__((target("avx2,fma"))) static inline float hsum8(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_shuffle_ps(s, s, 1));
    return _mm_cvtss_f32(s);
}

/* The 32 codes of one block, centred (q - zp), as two vectors of 16 int16 in the order
 * quantize_block stores the activations. */
__attribute__((target("avx2,fma"))) static inline void load_codes(const uint8_t* w, int bits, __m256i* lo,
                                                                 __m256i* hi) {
    if (bits == 4) {
        const __m128i p = _mm_loadu_si128((const __m128i*)w);
        const __m128i low4 = _mm_set1_epi8(15), eight = _mm_set1_epi8(8);
        *lo = _mm256_cvtepi8_epi16(_mm_sub_epi8(_mm_and_si128(p, low4), eight));
        *hi = _mm256_cvtepi8_epi16(_mm_sub_epi8(_mm_and_si128(_mm_srli_epi16(p, 4), low4), eight));
    } else {
        const __m128i flip = _mm_set1_epi8((char)0x80);
        *lo = _mm256_cvtepi8_epi16(_mm_xor_si128(_mm_loadu_si128((const __m128i*)w), flip));
        *hi = _mm256_cvtepi8_epi16(_mm_xor_si128(_mm_loadu_si128((const __m128i*)(w + 16)), flip));
    }
}

/* Four weight rows against one activation row: each activation block is loaded once. */
__attribute__((target("avx2,fma"))) static void dot4_avx2(const Task* t, int64_t n, int64_t r, float* out,
                                                         int64_t stride) {
    const int64_t nb = t->kern->k / QBLOCK;
    const int bits = (int)t->kern->bits;
    const int bytes = bits == 4 ? QBLOCK / 2 : QBLOCK;
    const int16_t* qa = t->qa + r * nb * QBLOCK;
    const float* da = t->da + r * nb;
    const uint8_t* w = t->codes + n * nb * bytes;
    const float* sc = t->scales + n * nb;
    const float* sa = t->sa + r * nb;
    const float* off = t->offsets ? t->offsets + (n >> 2) * nb * 4 : NULL;
    __m256 acc[4] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps()};
    __m128 corr = _mm_setzero_ps();
    /* The next four rows, two cache lines a block: the head (8-bit, 28 MB for SmolLM2) streams
       from DRAM, and the hardware prefetcher alone leaves it latency-bound. */
    const char* next = (const char*)(w + 4 * nb * bytes);
    for (int64_t b = 0; b < nb; b++) {
        _mm_prefetch(next + b * 4 * bytes, _MM_HINT_T0);
        _mm_prefetch(next + b * 4 * bytes + 64, _MM_HINT_T0);
        if (off) corr = _mm_fmadd_ps(_mm_loadu_ps(off + b * 4), _mm_set1_ps(sa[b]), corr);
        const __m256i qlo = _mm256_loadu_si256((const __m256i*)(qa + b * QBLOCK));
        const __m256i qhi = _mm256_loadu_si256((const __m256i*)(qa + b * QBLOCK + 16));
        for (int j = 0; j < 4; j++) {
            __m256i lo, hi;
            load_codes(w + (j * nb + b) * bytes, bits, &lo, &hi);
            const __m256i s = _mm256_add_epi32(_mm256_madd_epi16(lo, qlo), _mm256_madd_epi16(hi, qhi));
            acc[j] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(s), _mm256_set1_ps(sc[j * nb + b] * da[b]), acc[j]);
        }
    }
    float c[4];
    _mm_storeu_ps(c, corr);
    for (int j = 0; j < 4; j++) out[j * stride] = hsum8(acc[j]) + c[j];
}

/* Prefill: two weight rows against four activation rows. Each weight block is widened
 * once and used four times (the decode kernel above widens it for every activation row). */
__attribute__((target("avx2,fma"))) static void tile2x4_avx2(const Task* t, int64_t n, int64_t r) {
    const int64_t nb = t->kern->k / QBLOCK, nrows = t->kern->n;
    const int bits = (int)t->kern->bits;
    const int bytes = bits == 4 ? QBLOCK / 2 : QBLOCK;
    const uint8_t* w = t->codes + n * nb * bytes;
    const float* sc = t->scales + n * nb;
    /* rows n and n + 1 sit side by side in the interleaved offsets (n is even) */
    const float* off = t->offsets ? t->offsets + offset_index(n, 0, nb) : NULL;
    __m256 acc[4][2];
    __m128 corr[4];
    for (int i = 0; i < 4; i++) {
        acc[i][0] = acc[i][1] = _mm256_setzero_ps();
        corr[i] = _mm_setzero_ps();
    }
    for (int64_t b = 0; b < nb; b++) {
        __m256i lo0, hi0, lo1, hi1;
        load_codes(w + b * bytes, bits, &lo0, &hi0);
        load_codes(w + (nb + b) * bytes, bits, &lo1, &hi1);
        const __m256 s0 = _mm256_set1_ps(sc[b]), s1 = _mm256_set1_ps(sc[nb + b]);
        const __m128 o = off ? _mm_castpd_ps(_mm_load_sd((const double*)(off + b * 4))) : _mm_setzero_ps();
        for (int i = 0; i < 4; i++) {
            const int64_t qi = (r + i) * nb + b;
            const int16_t* q = t->qa + qi * QBLOCK;
            const __m256i qlo = _mm256_loadu_si256((const __m256i*)q);
            const __m256i qhi = _mm256_loadu_si256((const __m256i*)(q + 16));
            const __m256 d = _mm256_broadcast_ss(t->da + qi);
            const __m256i x0 = _mm256_add_epi32(_mm256_madd_epi16(lo0, qlo), _mm256_madd_epi16(hi0, qhi));
            const __m256i x1 = _mm256_add_epi32(_mm256_madd_epi16(lo1, qlo), _mm256_madd_epi16(hi1, qhi));
            acc[i][0] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(x0), _mm256_mul_ps(s0, d), acc[i][0]);
            acc[i][1] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(x1), _mm256_mul_ps(s1, d), acc[i][1]);
            corr[i] = _mm_fmadd_ps(o, _mm_broadcast_ss(t->sa + qi), corr[i]);
        }
    }
    for (int i = 0; i < 4; i++) {
        float c[4];
        _mm_storeu_ps(c, corr[i]);
        t->y[(r + i) * nrows + n] = hsum8(acc[i][0]) + c[0];
        t->y[(r + i) * nrows + n + 1] = hsum8(acc[i][1]) + c[1];
    }
}

/* EDGELM_ORTOPS_PORTABLE=1 forces the portable C path (what a CPU without AVX2 runs), for tests. */
static int have_avx2(void) {
    static int cached = -1;
    if (cached < 0) {
        const char* portable = getenv("EDGELM_ORTOPS_PORTABLE");
        __builtin_cpu_init();
        cached = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") &&
                 !(portable && portable[0] && portable[0] != '0');
    }
    return cached;
}
#endif

static void run_task(void* data, size_t index) {
    const Task* t = (const Task*)data;
    const int64_t n0 = (int64_t)index * t->rows_per_task;
    int64_t n1 = n0 + t->rows_per_task;
    const int64_t nrows = t->kern->n;
    if (n1 > nrows) n1 = nrows;
    int64_t n = n0;
#ifdef EDGELM_X86
    if (have_avx2() && t->m >= 4) {
        int64_t r;
        for (; n + 2 <= n1; n += 2) {
            for (r = 0; r + 4 <= t->m; r += 4) tile2x4_avx2(t, n, r);
            for (; r < t->m; r++) {
                t->y[r * nrows + n] = dot_scalar(t, n, r);
                t->y[r * nrows + n + 1] = dot_scalar(t, n + 1, r);
            }
        }
    } else if (have_avx2() && (n & 3) == 0) {
        for (; n + 4 <= n1; n += 4)
            for (int64_t r = 0; r < t->m; r++) dot4_avx2(t, n, r, &t->y[r * nrows + n], 1);
    }
#endif
    for (; n < n1; n++)
        for (int64_t r = 0; r < t->m; r++) t->y[r * nrows + n] = dot_scalar(t, n, r);
}

/* ---- operator plumbing ---- */

static OrtStatus* error(const OrtApi* api, const char* msg) {
    return FN(api, API_CreateStatus, CreateStatusFn)(ORT_INVALID_ARGUMENT, msg);
}

#define TRY(expr)                       \
    do {                                \
        OrtStatus* _s = (expr);         \
        if (_s) return _s;              \
    } while (0)

static OrtStatus* create_kernel(const OrtCustomOp* op, const OrtApi* api, const OrtKernelInfo* info, void** out) {
    (void)op;
    int64_t k = 0, n = 0, bits = 0, block = 0;
    KernelInfoGetAttributeInt64Fn attr = FN(api, API_KernelInfoGetAttribute_int64, KernelInfoGetAttributeInt64Fn);
    TRY(attr(info, "K", &k));
    TRY(attr(info, "N", &n));
    TRY(attr(info, "bits", &bits));
    TRY(attr(info, "block_size", &block));
    if (block != QBLOCK) return error(api, "BlockQuantMatMul: block_size must be 32");
    if (bits != 4 && bits != 8) return error(api, "BlockQuantMatMul: bits must be 4 or 8");
    if (k <= 0 || n <= 0 || k % QBLOCK) return error(api, "BlockQuantMatMul: K must be a positive multiple of 32");
    Kernel* kern = (Kernel*)calloc(1, sizeof(Kernel));
    if (!kern) return FN(api, API_CreateStatus, CreateStatusFn)(ORT_FAIL, "BlockQuantMatMul: out of memory");
    kern->api = api;
    kern->k = k;
    kern->n = n;
    kern->bits = bits;
    *out = kern;
    return NULL;
}

static void destroy_kernel(void* kernel) { free(kernel); }

/* Scratch for the quantized activations of one call, grown as needed, one per calling
 * thread (ONNX Runtime may run sessions from several threads). */
static __thread char* scratch = NULL;
static __thread size_t scratch_bytes = 0;

static OrtStatus* compute(void* kernel, OrtKernelContext* ctx) {
    const Kernel* kern = (const Kernel*)kernel;
    const OrtApi* api = kern->api;
    const OrtValue *a_val, *b_val, *s_val, *o_val = NULL;
    KernelContextGetInputFn get_input = FN(api, API_KernelContext_GetInput, KernelContextGetInputFn);
    size_t n_inputs = 0;
    TRY(FN(api, API_KernelContext_GetInputCount, KernelContextGetInputCountFn)(ctx, &n_inputs));
    TRY(get_input(ctx, 0, &a_val));
    TRY(get_input(ctx, 1, &b_val));
    TRY(get_input(ctx, 2, &s_val));
    if (n_inputs > 3) TRY(get_input(ctx, 3, &o_val));

    OrtTensorTypeAndShapeInfo* info;
    size_t ndim = 0;
    int64_t dims[8];
    TRY(FN(api, API_GetTensorTypeAndShape, GetTensorTypeAndShapeFn)(a_val, &info));
    OrtStatus* st = FN(api, API_GetDimensionsCount, GetDimensionsCountFn)(info, &ndim);
    if (!st && (ndim < 1 || ndim > 8)) st = error(api, "BlockQuantMatMul: A must have 1 to 8 dimensions");
    if (!st) st = FN(api, API_GetDimensions, GetDimensionsFn)(info, dims, ndim);
    FN(api, API_ReleaseTensorTypeAndShapeInfo, ReleaseTensorTypeAndShapeInfoFn)(info);
    if (st) return st;
    if (dims[ndim - 1] != kern->k) return error(api, "BlockQuantMatMul: the last dimension of A must be K");
    int64_t m = 1;
    for (size_t i = 0; i + 1 < ndim; i++) m *= dims[i];
    dims[ndim - 1] = kern->n;

    GetTensorMutableDataFn data = FN(api, API_GetTensorMutableData, GetTensorMutableDataFn);
    void *a, *codes, *scales, *offsets = NULL, *y;
    TRY(data((OrtValue*)a_val, &a));
    TRY(data((OrtValue*)b_val, &codes));
    TRY(data((OrtValue*)s_val, &scales));
    if (o_val) TRY(data((OrtValue*)o_val, &offsets));
    OrtValue* y_val;
    TRY(FN(api, API_KernelContext_GetOutput, KernelContextGetOutputFn)(ctx, 0, dims, ndim, &y_val));
    TRY(data(y_val, &y));
    if (m == 0) return NULL;

    const int64_t nb = kern->k / QBLOCK;
    const size_t need = (size_t)m * nb * (QBLOCK * sizeof(int16_t) + 2 * sizeof(float));
    if (need > scratch_bytes) {
        char* grown = (char*)realloc(scratch, need);
        if (!grown) return FN(api, API_CreateStatus, CreateStatusFn)(ORT_FAIL, "BlockQuantMatMul: out of memory");
        scratch = grown;
        scratch_bytes = need;
    }
    int16_t* qa = (int16_t*)scratch;
    float* da = (float*)(qa + (size_t)m * nb * QBLOCK);
    float* sa = da + m * nb;
#ifdef EDGELM_X86
    if (have_avx2())
        quantize_rows_avx2((const float*)a, m, kern->k, (int)kern->bits, qa, da, sa);
    else
#endif
        quantize_rows((const float*)a, m, kern->k, (int)kern->bits, qa, da, sa);

    Task t = {kern, (const uint8_t*)codes, (const float*)scales, (const float*)offsets, qa, da, sa, (float*)y, m, 0};
    /* Tasks of a few KB of weights each; ONNX Runtime's pool hands them out. */
    t.rows_per_task = kern->bits == 4 ? 32 : 16;
    if (m > 8) t.rows_per_task = 8;
    const size_t tasks = (size_t)((kern->n + t.rows_per_task - 1) / t.rows_per_task);
    if (tasks == 1) {
        run_task(&t, 0);
        return NULL;
    }
    return FN(api, API_KernelContext_ParallelFor, KernelContextParallelForFn)(ctx, run_task, tasks, 0, &t);
}

static const char* op_name(const OrtCustomOp* op) {
    (void)op;
    return "BlockQuantMatMul";
}
static const char* op_provider(const OrtCustomOp* op) {
    (void)op;
    return "CPUExecutionProvider";
}
static int input_type(const OrtCustomOp* op, size_t i) {
    (void)op;
    return i == 1 ? TYPE_UINT8 : TYPE_FLOAT;
}
static size_t input_count(const OrtCustomOp* op) {
    (void)op;
    return 4;
}
static int output_type(const OrtCustomOp* op, size_t i) {
    (void)op;
    (void)i;
    return TYPE_FLOAT;
}
static size_t output_count(const OrtCustomOp* op) {
    (void)op;
    return 1;
}
static int input_characteristic(const OrtCustomOp* op, size_t i) {
    (void)op;
    return i == 3 ? IO_OPTIONAL : IO_REQUIRED;
}
static int output_characteristic(const OrtCustomOp* op, size_t i) {
    (void)op;
    (void)i;
    return IO_REQUIRED;
}
static int memory_type(const OrtCustomOp* op, size_t i) {
    (void)op;
    (void)i;
    return 0; /* OrtMemTypeDefault */
}
static int one(const OrtCustomOp* op) {
    (void)op;
    return 1;
}
static int end_version(const OrtCustomOp* op) {
    (void)op;
    return 0x7fffffff;
}
static void* create_kernel_v1(const OrtCustomOp* op, const OrtApi* api, const OrtKernelInfo* info) {
    void* k = NULL;
    OrtStatus* st = create_kernel(op, api, info, &k);
    return st ? NULL : k; /* never used: ONNX Runtime >= 1.17 takes CreateKernelV2 */
}
static void compute_v1(void* kernel, OrtKernelContext* ctx) { (void)compute(kernel, ctx); }

static const OrtCustomOp block_quant_matmul = {
    EDGELM_ORT_API_VERSION,
    create_kernel_v1,
    op_name,
    op_provider,
    input_type,
    input_count,
    output_type,
    output_count,
    compute_v1,
    destroy_kernel,
    input_characteristic,
    output_characteristic,
    memory_type,
    one,
    one,
    one,
    one,
    create_kernel,
    compute,
    NULL,
    one,
    end_version,
};

__attribute__((visibility("default"))) OrtStatus* RegisterCustomOps(OrtSessionOptions* options,
                                                                    const OrtApiBase* base) {
    const OrtApi* api = base->GetApi(EDGELM_ORT_API_VERSION);
    if (!api) return NULL; /* ONNX Runtime older than 1.17: it reports the unknown operator itself */
    OrtCustomOpDomain* domain = NULL;
    TRY(FN(api, API_CreateCustomOpDomain, CreateCustomOpDomainFn)("ai.edgelm", &domain));
    TRY(FN(api, API_CustomOpDomain_Add, CustomOpDomainAddFn)(domain, &block_quant_matmul));
    return FN(api, API_AddCustomOpDomain, AddCustomOpDomainFn)(options, domain);
}
