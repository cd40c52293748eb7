/* edgelm's ONNX Runtime custom operator: BlockQuantMatMul (domain "ai.edgelm").
 *
 *     Y[..., n] = sum_k A[..., k] * W[n, k]
 *     W[n, k]   = scales[n, b] * (q[n, k] - zp)      without mins (zp 8 / 128)
 *     W[n, k]   = scales[n, b] * q[n, k] + mins[n, b] with mins,   b = k / 32
 *
 * with q the 4-bit or 8-bit codes packed exactly as MatMulNBits reads them ([N, K/32, 16]
 * or [N, K/32, 32] bytes, 4-bit: element 2i in the low nibble) and scales [N, K/32] in
 * float16. `mins` (float16) is optional (symmetric formats); it is stored four rows
 * interleaved, [ceil(N/4), K/32, 4], so one vector load serves the four rows a pass
 * computes. This is GGUF Q4_1 (d and m, both float16 in the file) and Q8_0 in one node,
 * at GGUF's 20 / 34 bytes a block: decode streams the weights from DRAM, so the bytes
 * per token set its pace. ONNX Runtime's MatMulNBits has no fast path for a float
 * per-block offset, so edgelm's graph used to add it with four more nodes per linear.
 *
 * Activations are quantized per 32-block to int16 (scale amax/32767), so the result is
 * within ~1e-5 relative of the float product: the int8 activations of MatMulNBits'
 * accuracy level 4 (and of llama.cpp) flip near-tied next tokens. The products are
 * 16 x 16 -> 32-bit multiply-adds (AVX2 vpmaddwd; AVX-512 VNNI vpdpwssd), summed exactly
 * in int32 per block and scaled once per block. With AVX-512 VNNI, decode rows are laid out
 * so that 4-bit codes need no widening (see Quad): a single-thread linear on cache-resident
 * weights runs 1.1-1.4x faster than with the pair kernel (benchmarks/blockquant_matmul.py);
 * decode streaming the weights from DRAM gains ~1% (the bytes set its pace).
 *
 * With swiglu=1, A is [..., 2K] holding [gate | up] and the product takes silu(gate) * up
 * (the MLP's activation, folded into the down projection's activation pass).
 *
 * This file is the operator's plumbing: attributes, the checks of every input against them,
 * scratch, and the split of a call into tasks of output rows. The arithmetic is in the
 * kernel table (kernels.h): qmatmul_generic.c (portable), arch/x86/ and arch/arm/.
 *
 * Built as a plain shared library (no Python), loaded with
 * SessionOptions.register_custom_ops_library(path). The onnxruntime wheel ships no C
 * headers, so the few ABI entries used are declared below: OrtApi is a table of function
 * pointers that ONNX Runtime only ever appends to, and OrtCustomOp a versioned struct.
 */
#include "ortabi.h"
#include "qmatmul.h"
#include "shared_math.h"

#include "kernels.h"

/* QBLOCK, Kernel, Task and Quad: qmatmul.h; the kernels: kernels.h's table. */


/* What qz adds per block, times the sum of the activation codes: the integer dots compute
 * sum q a for 4-bit codes and sum (q - 128) a for 8-bit ones; symmetric formats want
 * sum (q - zp) a with zp 8 / 128, formats with mins sum q a (W = scale * q + min). */
static inline int32_t zero_point_term(int bits, int has_mins) {
    if (bits == 4) return has_mins ? 0 : -8;
    return has_mins ? 128 : 0;
}

/* The same for the AVX-512 decode layout, whose kernels take 8-bit codes uncentred too. */
static inline int32_t zero_point_term_unsigned(int bits, int has_mins) {
    return has_mins ? 0 : (bits == 4 ? -8 : -128);
}

/* One task: output rows n0 .. n1 - 1 by the table's kernels. */
static void run_task(void* data, size_t index) {
    const Task* t = (const Task*)data;
    const int64_t n0 = (int64_t)index * t->rows_per_task;
    const int64_t n1 = n0 + t->rows_per_task < t->kern->n ? n0 + t->rows_per_task : t->kern->n;
    if (!t->a)
        t->ops->rows(t, n0, n1);
    else if (!t->ops->prefill_rows(t, n0, n1))
        edgelm_qmm_float_rows_portable(t, n0, n1); /* its buffer could not be had: the slow path needs none */
}

/* ---- operator plumbing ---- */

/* Weight input `which` (1 qweight, 2 scales, 3 mins) against K, N and bits: exact element
 * counts, so no kernel reads past one; `count` is its element count (0: an omitted mins). */
static OrtStatus* check_weight(const Kernel* kern, const OrtApi* api, int which, const OrtValue* v, int64_t* count) {
    size_t wn = 0;
    int64_t wd[8];
    const int64_t nb = kern->k / QBLOCK;
    static const char* too_many[4] = {"", "BlockQuantMatMul: qweight has too many dimensions",
                                      "BlockQuantMatMul: scales has too many dimensions",
                                      "BlockQuantMatMul: mins has too many dimensions"};
    TRY(tensor_shape(api, v, wd, &wn, 8, count, too_many[which]));
    if (which == 1 && (wn < 1 || wd[0] != kern->n || *count != kern->n * nb * (kern->bits == 4 ? 16 : 32)))
        return error(api, kern->bits == 4 ? "BlockQuantMatMul: qweight must be [N, K/32, 16] uint8 for bits=4"
                                          : "BlockQuantMatMul: qweight must be [N, K/32, 32] uint8 for bits=8");
    if (which == 2 && *count != kern->n * nb)
        return error(api, "BlockQuantMatMul: scales must hold N x K/32 float16 values");
    if (which == 3 && *count != 0 && *count != (kern->n + 3) / 4 * 4 * nb)
        return error(api, "BlockQuantMatMul: mins must be [ceil(N/4), K/32, 4] float16");
    return NULL;
}

static OrtStatus* create_kernel(const OrtCustomOp* op, const OrtApi* api, const OrtKernelInfo* info, void** out) {
    (void)op;
    int64_t k = 0, n = 0, bits = 0, block = 0;
    KernelInfoGetAttributeInt64Fn attr = FN(api, API_KernelInfoGetAttribute_int64, KernelInfoGetAttributeInt64Fn);
    TRY(attr(info, "K", &k));
    TRY(attr(info, "N", &n));
    TRY(attr(info, "bits", &bits));
    TRY(attr(info, "block_size", &block));
    int64_t swiglu = 0;
    OrtStatus* missing = attr(info, "swiglu", &swiglu); /* optional, default 0 */
    if (missing) {
        FN(api, API_ReleaseStatus, ReleaseStatusFn)(missing);
        swiglu = 0;
    }
    if (block != QBLOCK) return error(api, "BlockQuantMatMul: block_size must be 32");
    if (bits != 4 && bits != 8) return error(api, "BlockQuantMatMul: bits must be 4 or 8");
    if (k <= 0 || n <= 0 || k % QBLOCK || k > EDGELM_MAX_DIM || n > EDGELM_MAX_DIM)
        return error(api, "BlockQuantMatMul: K must be a positive multiple of 32 and N positive (both below 2^31)");
    Kernel* kern = (Kernel*)calloc(1, sizeof(Kernel));
    if (!kern) return FN(api, API_CreateStatus, CreateStatusFn)(ORT_FAIL, "BlockQuantMatMul: out of memory");
    kern->api = api;
    kern->k = k;
    kern->n = n;
    kern->bits = bits;
    kern->swiglu = swiglu != 0;
    /* Constant weights are checked now: a mismatched folder fails at load, not mid-reply. */
    KernelInfoGetConstantInputFn constant = FN(api, API_KernelInfoGetConstantInput_tensor, KernelInfoGetConstantInputFn);
    for (size_t i = 1; i < 4; i++) {
        int is_constant = 0;
        const OrtValue* v = NULL;
        OrtStatus* st = constant(info, i, &is_constant, &v);
        if (st) { /* not knowable: check it on every call */
            FN(api, API_ReleaseStatus, ReleaseStatusFn)(st);
            continue;
        }
        if (!is_constant || !v) continue;
        int64_t count = 0;
        st = check_weight(kern, api, (int)i, v, &count);
        if (!st && count > 0) st = FN(api, API_GetTensorMutableData, GetTensorMutableDataFn)((OrtValue*)v, (void**)&kern->checked[i]);
        if (st) {
            free(kern);
            return st;
        }
    }
    *out = kern;
    return NULL;
}


/* silu(gate) * up of the prefill's rows, in parallel (one call has up to a prompt's rows of
 * 2 x 1536 values, which alone on one thread left the other waiting). */
typedef struct {
    const float* a;
    float* out;
    int64_t k, m;
    void (*row)(const float* gate_up, int64_t k, float* out);
} SwigluJob;

#define SWIGLU_ROWS 8

static void swiglu_task(void* data, size_t index) {
    const SwigluJob* job = (const SwigluJob*)data;
    const int64_t r1 = ((int64_t)index + 1) * SWIGLU_ROWS < job->m ? ((int64_t)index + 1) * SWIGLU_ROWS : job->m;
    for (int64_t r = (int64_t)index * SWIGLU_ROWS; r < r1; r++)
        job->row(job->a + r * 2 * job->k, job->k, job->out + r * job->k);
}

/* Scratch for the quantized activations of one call, grown as needed, one per calling
 * thread (ONNX Runtime may run sessions from several threads). */
static __thread char* scratch = NULL;
static __thread float* act_scratch = NULL; /* swiglu-activated rows for the float prefill path */
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

    size_t ndim = 0;
    int64_t dims[8], count;
    TRY(tensor_shape(api, a_val, dims, &ndim, 8, &count, "BlockQuantMatMul: A must have 1 to 8 dimensions"));
    if (ndim < 1) return error(api, "BlockQuantMatMul: A must have 1 to 8 dimensions");
    if (dims[ndim - 1] != (kern->swiglu ? 2 * kern->k : kern->k))
        return error(api, kern->swiglu ? "BlockQuantMatMul: the last dimension of A must be 2K (swiglu)"
                                       : "BlockQuantMatMul: the last dimension of A must be K");
    int64_t m = 1;
    for (size_t i = 0; i + 1 < ndim; i++) m *= dims[i];
    dims[ndim - 1] = kern->n;

    GetTensorMutableDataFn data = FN(api, API_GetTensorMutableData, GetTensorMutableDataFn);
    void *a, *codes, *scales, *mins = NULL, *y;
    TRY(data((OrtValue*)a_val, &a));
    TRY(data((OrtValue*)b_val, &codes));
    TRY(data((OrtValue*)s_val, &scales));
    if (o_val) TRY(data((OrtValue*)o_val, &mins));
    /* The weights against the node's K, N and bits before any is read (a graph from a
     * downloaded folder may say anything), unless create_kernel checked this very data. */
    const OrtValue* weights[4] = {NULL, b_val, s_val, o_val};
    void* wdata[4] = {NULL, codes, scales, mins};
    for (int i = 1; i < 4; i++) {
        if (!weights[i] || (kern->checked[i] && wdata[i] == kern->checked[i])) continue;
        TRY(check_weight(kern, api, i, weights[i], &count));
        if (i == 3 && count == 0) mins = NULL; /* an omitted optional input */
    }
    OrtValue* y_val;
    TRY(FN(api, API_KernelContext_GetOutput, KernelContextGetOutputFn)(ctx, 0, dims, ndim, &y_val));
    TRY(data(y_val, &y));
    if (m == 0) return NULL;

    const int64_t nb = kern->k / QBLOCK;
    const OpKernels* ops = edgelm_kernels();
    const int prefill = ops->prefill_rows && m >= PREFILL_ROWS; /* from the float rows */
    /* decode rows on a CPU with AVX-512 VNNI: the layout its kernels read (see Quad) */
    const int layout = ops->decode_layout && m < PREFILL_ROWS && kern->n % 4 == 0;
    const int64_t nq = layout && kern->bits == 4 ? nb / 4 : 0;
    const size_t need = (size_t)m * nb * (QBLOCK * sizeof(int16_t) + 8 * sizeof(int32_t) + 2 * sizeof(float)) +
                        kern->k * sizeof(float) + (size_t)m * nq * sizeof(Quad);
    if (need > scratch_bytes) {
        char* grown = (char*)realloc(scratch, need);
        if (!grown) return FN(api, API_CreateStatus, CreateStatusFn)(ORT_FAIL, "BlockQuantMatMul: out of memory");
        scratch = grown;
        scratch_bytes = need;
    }
    const int32_t zmul = layout ? zero_point_term_unsigned((int)kern->bits, mins != NULL)
                                : zero_point_term((int)kern->bits, mins != NULL);
    const int order = layout ? 4 : (int)kern->bits; /* the decode layout keeps 8-bit blocks in the 4-bit order */
    int16_t* qa = (int16_t*)scratch;
    int32_t* qz = (int32_t*)(qa + (size_t)m * nb * QBLOCK);
    float* da = (float*)(qz + (size_t)m * nb * 8);
    float* sa = da + m * nb;
    float* tmp = sa + m * nb; /* one swiglu row */
    Quad* quads = (Quad*)(tmp + kern->k);
    const float* a_float = NULL;
    if (prefill) {
        a_float = (const float*)a;
        if (kern->swiglu) { /* the prefill path reads float rows: activate them once */
            float* act = (float*)realloc(act_scratch, (size_t)m * kern->k * sizeof(float));
            if (!act) return FN(api, API_CreateStatus, CreateStatusFn)(ORT_FAIL, "BlockQuantMatMul: out of memory");
            act_scratch = act;
            SwigluJob job = {(const float*)a, act, kern->k, m, ops->swiglu_row};
            TRY(FN(api, API_KernelContext_ParallelFor, KernelContextParallelForFn)(
                ctx, swiglu_task, (size_t)((m + SWIGLU_ROWS - 1) / SWIGLU_ROWS), 0, &job));
            a_float = act;
        }
    } else {
        ops->quantize_rows((const float*)a, m, kern->k, order, zmul, (int)kern->swiglu, tmp, qa, qz, da, sa);
        if (ops->arrange) ops->arrange(qa, qz, da, sa, quads, m, nb, nq);
    }

    Task t = {kern, a_float, (const uint8_t*)codes, (const uint16_t*)scales, (const uint16_t*)mins, qa, qz, da, sa,
              (float*)y, m, 0, layout, quads, ops};
    /* Tasks of a few KB of weights each; ONNX Runtime's pool hands them out. */
    t.rows_per_task = kern->bits == 4 || a_float ? 32 : 16;
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
static int input_type(const OrtCustomOp* op, size_t i) {
    (void)op;
    return i == 0 ? TYPE_FLOAT : (i == 1 ? TYPE_UINT8 : TYPE_FLOAT16);
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
EDGELM_V1_CALLBACKS(create_kernel_v1, create_kernel, compute_v1, compute)

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
    free_kernel,
    input_characteristic,
    io_required,
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
    TRY(FN(api, API_CustomOpDomain_Add, CustomOpDomainAddFn)(domain, &edgelm_attention_op));
    return FN(api, API_AddCustomOpDomain, AddCustomOpDomainFn)(options, domain);
}
