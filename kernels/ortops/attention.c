/* edgelm's attention operator: Attention (domain "ai.edgelm").
 *
 * The contract of ONNX Runtime's GroupQueryAttention the way edgelm's graph uses it
 * (packed QKV, rotary inside, non-interleaved halves, a KV cache of fixed capacity bound
 * as both past and present), with the cache in float16:
 *
 *   inputs   qkv [B, S, (H + 2 Hkv) D] float; past_key, past_value [B, Hkv, C, D] float16;
 *            seqlens_k [B] int32 (sequence b's tokens after this step, minus one);
 *            total_sequence_length int32 scalar (the largest of those, plus one);
 *            cos_cache, sin_cache [P, D/2]
 *   outputs  out [B, S, H D]; present_key, present_value [B, Hkv, C, D]
 *   attrs    num_heads (H), kv_num_heads (Hkv), scale (float, default 1/sqrt(D)),
 *            local_window (int, default 0: none): a query at position p attends to keys
 *            max(0, p - local_window + 1) .. p only (Gemma 3's sliding-window layers)
 *
 * Sequence b's S new tokens sit at positions seqlens_k[b] + 1 - S .. seqlens_k[b]: their
 * rotated keys and values are written into those rows of b's cache, then each query attends
 * causally to b's rows 0 .. its position.
 *
 * A window layer keeps position p in row p mod C, so its cache can be a ring of C rows,
 * fewer than the context: the runtime gives it local_window + 128 (RING_SLACK in arch.py).
 * A step then writes S rows over the oldest ones, which the step's first query must no
 * longer need: S + local_window - 1 <= C once the sequence is longer than C, or the call is
 * an error. Until then row p is position p, so a ring that has not wrapped is a plain cache,
 * and a query's keys are read in the same order either way: a ring gives the bits of a
 * cache of the whole context (a test). Rewinding is the runtime's to guard: it may rewind
 * only to where the keys a query needs are still in the ring. Each (sequence, head, query row) is computed as
 * in a batch of one, so a sequence's outputs do not depend on what else is in the batch
 * (parallel sampling relies on it: tested). When present is the same buffer as past (the
 * runtime binds it so) nothing else is copied; otherwise past is copied into present first.
 *
 * Why not GroupQueryAttention: at decode it costs ~3.5 us per context token per token for
 * this 30-layer model (one-query scores through a general GEMM and SSE loops), a third of
 * a step at 1,024 tokens of context. Here each (head, rows) task streams its KV rows once
 * with an online softmax (no score buffer), AVX2 where the CPU has it. Decode reads the
 * whole cache every step and the weights evict it from the caches, so a float16 cache
 * halves those bytes (and the cache's memory: 47 instead of 94 MB for SmolLM2 at 2,048
 * tokens); scores and sums stay float32.
 */
#include "attention.h"
#include "kernels.h"
#include "ortabi.h"
#include "shared_math.h"

#define PREFILL_ROWS 8 /* query rows per task in a prompt */
#define MAX_BATCH 256 /* sequences in one call */

typedef struct {
    const OrtApi* api;
    int64_t heads, kv_heads;
    int64_t window; /* 0: the whole sequence */
    float scale;    /* 0: 1/sqrt(D) */
} AttnKernel;

typedef struct {
    const float* qkv;
    const uint16_t* kc; /* float16 [Hkv, C, D] */
    const uint16_t* vc;
    const float* cos_c;
    const float* sin_c;
    float* out;
    const int64_t* past; /* [B]: sequence b's tokens before this step */
    int64_t s, cap, d, heads, kv_heads, row_tasks, window;
    float scale;
    AttendRowFn attend_row; /* the kernel table's */
} AttnJob;

/* Rotary embedding of one head vector at position p (non-interleaved halves), times mul. */
static inline void rotate(const float* x, const float* cos_c, const float* sin_c, int64_t p, int64_t d, float mul,
                          float* y) {
    const int64_t half = d / 2;
    const float* c = cos_c + p * half;
    const float* s = sin_c + p * half;
    for (int64_t i = 0; i < half; i++) {
        y[i] = (x[i] * c[i] - x[i + half] * s[i]) * mul;
        y[i + half] = (x[i + half] * c[i] + x[i] * s[i]) * mul;
    }
}

static void attn_task(void* data, size_t index) {
    const AttnJob* job = (const AttnJob*)data;
    const int64_t per_seq = job->heads * job->row_tasks;
    const int64_t b = (int64_t)index / per_seq;
    const int64_t h = ((int64_t)index % per_seq) / job->row_tasks;
    const int64_t rows = (job->s + job->row_tasks - 1) / job->row_tasks;
    const int64_t r0 = ((int64_t)index % job->row_tasks) * rows;
    const int64_t r1 = r0 + rows < job->s ? r0 + rows : job->s;
    const int64_t d = job->d, g = h / (job->heads / job->kv_heads);
    const int64_t width = (job->heads + 2 * job->kv_heads) * d;
    const uint16_t* k = job->kc + (b * job->kv_heads + g) * job->cap * d;
    const uint16_t* v = job->vc + (b * job->kv_heads + g) * job->cap * d;
    const float* x = job->qkv + b * job->s * width;
    float* out = job->out + b * job->s * job->heads * d;
    float q[MAX_HEAD_DIM];
    for (int64_t r = r0; r < r1; r++) {
        const int64_t p = job->past[b] + r;
        const int64_t first = job->window > 0 && p + 1 > job->window ? p + 1 - job->window : 0;
        rotate(x + r * width + h * d, job->cos_c, job->sin_c, p, d, job->scale, q);
        job->attend_row(q, k, v, first % job->cap, p + 1 - first, job->cap, d, out + (r * job->heads + h) * d);
    }
}

static OrtStatus* dims_of(const OrtApi* api, const OrtValue* val, int64_t* dims, size_t* ndim, int64_t* count) {
    return tensor_shape(api, val, dims, ndim, 4, count, "Attention: an input has more than 4 dimensions");
}

static OrtStatus* attn_compute(void* kernel, OrtKernelContext* ctx) {
    const AttnKernel* kern = (const AttnKernel*)kernel;
    const OrtApi* api = kern->api;
    const OpKernels* ops = edgelm_kernels();
    KernelContextGetInputFn get_input = FN(api, API_KernelContext_GetInput, KernelContextGetInputFn);
    GetTensorMutableDataFn data = FN(api, API_GetTensorMutableData, GetTensorMutableDataFn);
    const OrtValue* in[7];
    for (size_t i = 0; i < 7; i++) TRY(get_input(ctx, i, &in[i]));
    int64_t qd[4], kd[4], vd[4], cd[4], sd[4], ld[4], td[4], count = 0, seq_count = 0, tot_count = 0;
    size_t qn, kn, vn, cn, sn, ln, tn;
    TRY(dims_of(api, in[0], qd, &qn, &count));
    TRY(dims_of(api, in[1], kd, &kn, &count));
    TRY(dims_of(api, in[2], vd, &vn, &count));
    TRY(dims_of(api, in[3], ld, &ln, &seq_count));
    TRY(dims_of(api, in[4], td, &tn, &tot_count));
    TRY(dims_of(api, in[5], cd, &cn, &count));
    TRY(dims_of(api, in[6], sd, &sn, &count));
    const int64_t H = kern->heads, G = kern->kv_heads;
    if (qn != 3) return error(api, "Attention: qkv must be [B, S, (H + 2 Hkv) D]");
    const int64_t B = qd[0];
    if (B < 1 || B > MAX_BATCH) return error(api, "Attention: the batch must hold 1 to 256 sequences");
    if (tot_count != 1) return error(api, "Attention: total_sequence_length must hold one value");
    if (ln != 1 || seq_count != B) return error(api, "Attention: seqlens_k must be [B], one value per sequence");
    if (kn != 4 || vn != 4 || kd[0] != B || kd[1] != G)
        return error(api, "Attention: past_key must be [B, Hkv, C, D] (qkv's batch)");
    for (size_t i = 0; i < 4; i++)
        if (vd[i] != kd[i]) return error(api, "Attention: past_value must have past_key's shape");
    const int64_t S = qd[1], C = kd[2], D = kd[3];
    if (D < 2 || D % 2 || D > MAX_HEAD_DIM) return error(api, "Attention: the head size must be even and at most 256");
    if (qd[2] != (H + 2 * G) * D) return error(api, "Attention: the last dimension of qkv must be (H + 2 Hkv) D");
    if (cn != 2 || sn != 2 || cd[1] != D / 2 || sd[0] != cd[0] || sd[1] != cd[1])
        return error(api, "Attention: cos_cache and sin_cache must be [positions, D/2]");
    void *qkv, *pk, *pv, *seq, *tot, *cosv, *sinv;
    TRY(data((OrtValue*)in[0], &qkv));
    TRY(data((OrtValue*)in[1], &pk));
    TRY(data((OrtValue*)in[2], &pv));
    TRY(data((OrtValue*)in[3], &seq));
    TRY(data((OrtValue*)in[4], &tot));
    TRY(data((OrtValue*)in[5], &cosv));
    TRY(data((OrtValue*)in[6], &sinv));
    const int64_t total = *(const int32_t*)tot;
    int64_t past[MAX_BATCH], longest = 0;
    for (int64_t b = 0; b < B; b++) {
        const int64_t length = (int64_t)((const int32_t*)seq)[b] + 1;
        past[b] = length - S;
        if (past[b] < 0) return error(api, "Attention: the sequence does not fit the KV cache");
        /* Past C rows only a window layer's ring, and only if this step leaves its first query's keys. */
        if (length > C && (kern->window == 0 || S + kern->window - 1 > C))
            return error(api, kern->window ? "Attention: the step is too long for the window layer's ring of KV rows"
                                           : "Attention: the sequence does not fit the KV cache");
        longest = length > longest ? length : longest;
    }
    if (longest != total)
        return error(api, "Attention: seqlens_k must be total_sequence_length - 1 (for the longest sequence)");
    if (total > cd[0]) return error(api, "Attention: a position is past the rotary cache");

    KernelContextGetOutputFn get_output = FN(api, API_KernelContext_GetOutput, KernelContextGetOutputFn);
    OrtValue *o_val, *k_val, *v_val;
    int64_t od[3] = {B, S, H * D};
    void *out, *kc, *vc;
    TRY(get_output(ctx, 0, od, 3, &o_val));
    TRY(get_output(ctx, 1, kd, 4, &k_val));
    TRY(get_output(ctx, 2, vd, 4, &v_val));
    TRY(data(o_val, &out));
    TRY(data(k_val, &kc));
    TRY(data(v_val, &vc));
    const size_t cache_bytes = (size_t)(B * G * C * D) * sizeof(uint16_t);
    if (kc != pk) memcpy(kc, pk, cache_bytes); /* not bound in place: carry the past over */
    if (vc != pv) memcpy(vc, pv, cache_bytes);
    if (S == 0) return NULL;

    /* The new tokens' keys (rotated) and values into their rows of the cache. */
    const float* x = (const float*)qkv;
    const int64_t width = (H + 2 * G) * D;
    float krot[MAX_HEAD_DIM];
    for (int64_t b = 0; b < B; b++)
        for (int64_t r = 0; r < S; r++) {
            const float* xr = x + (b * S + r) * width;
            for (int64_t g = 0; g < G; g++) {
                const int64_t row = ((b * G + g) * C + (past[b] + r) % C) * D; /* p mod C: a ring, for a window layer */
                rotate(xr + (H + g) * D, (const float*)cosv, (const float*)sinv, past[b] + r, D, 1.0f, krot);
                ops->to_half(krot, D, (uint16_t*)kc + row);
                ops->to_half(xr + (H + G + g) * D, D, (uint16_t*)vc + row);
            }
        }

    AttnJob job = {x, (const uint16_t*)kc, (const uint16_t*)vc, (const float*)cosv, (const float*)sinv, (float*)out,
                   past, S, C, D, H, G, (S + PREFILL_ROWS - 1) / PREFILL_ROWS, kern->window,
                   kern->scale > 0.0f ? kern->scale : 1.0f / sqrtf((float)D), ops->attend_row};
    const size_t tasks = (size_t)(B * H * job.row_tasks);
    return FN(api, API_KernelContext_ParallelFor, KernelContextParallelForFn)(ctx, attn_task, tasks, 0, &job);
}

static OrtStatus* attn_create(const OrtCustomOp* op, const OrtApi* api, const OrtKernelInfo* info, void** out) {
    (void)op;
    int64_t heads = 0, kv_heads = 0;
    KernelInfoGetAttributeInt64Fn attr = FN(api, API_KernelInfoGetAttribute_int64, KernelInfoGetAttributeInt64Fn);
    TRY(attr(info, "num_heads", &heads));
    TRY(attr(info, "kv_num_heads", &kv_heads));
    if (heads <= 0 || kv_heads <= 0 || heads % kv_heads || heads > 4096)
        return error(api, "Attention: num_heads must be a positive multiple of kv_num_heads, at most 4096");
    float scale = 0.0f;
    OrtStatus* missing = FN(api, API_KernelInfoGetAttribute_float, KernelInfoGetAttributeFloatFn)(info, "scale", &scale);
    if (missing) { /* optional */
        FN(api, API_ReleaseStatus, ReleaseStatusFn)(missing);
        scale = 0.0f;
    }
    int64_t window = 0;
    missing = attr(info, "local_window", &window);
    if (missing) { /* optional */
        FN(api, API_ReleaseStatus, ReleaseStatusFn)(missing);
        window = 0;
    }
    if (window < 0) return error(api, "Attention: local_window must be >= 0");
    AttnKernel* kern = (AttnKernel*)calloc(1, sizeof(AttnKernel));
    if (!kern) return FN(api, API_CreateStatus, CreateStatusFn)(ORT_FAIL, "Attention: out of memory");
    kern->api = api;
    kern->heads = heads;
    kern->kv_heads = kv_heads;
    kern->scale = scale;
    kern->window = window;
    *out = kern;
    return NULL;
}

static const char* attn_name(const OrtCustomOp* op) {
    (void)op;
    return "Attention";
}
static int attn_input_type(const OrtCustomOp* op, size_t i) {
    (void)op;
    return i == 3 || i == 4 ? TYPE_INT32 : (i == 1 || i == 2 ? TYPE_FLOAT16 : TYPE_FLOAT);
}
static size_t attn_input_count(const OrtCustomOp* op) {
    (void)op;
    return 7;
}
static int attn_output_type(const OrtCustomOp* op, size_t i) {
    (void)op;
    return i == 0 ? TYPE_FLOAT : TYPE_FLOAT16;
}
static size_t attn_output_count(const OrtCustomOp* op) {
    (void)op;
    return 3;
}
EDGELM_V1_CALLBACKS(attn_create_v1, attn_create, attn_compute_v1, attn_compute)

const OrtCustomOp edgelm_attention_op = {
    EDGELM_ORT_API_VERSION,
    attn_create_v1,
    attn_name,
    op_provider,
    attn_input_type,
    attn_input_count,
    attn_output_type,
    attn_output_count,
    attn_compute_v1,
    free_kernel,
    io_required,
    io_required,
    memory_type,
    one,
    one,
    one,
    one,
    attn_create,
    attn_compute,
    NULL,
    one,
    end_version,
};
