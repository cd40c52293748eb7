/* The subset of ONNX Runtime's C ABI that edgelm's operators use, shared by qmatmul.c and
 * attention.c. The onnxruntime wheel ships no C headers: OrtApi is a table of function
 * pointers that ONNX Runtime only ever appends to (the indices below), and OrtCustomOp a
 * versioned struct. */
#ifndef EDGELM_ORTABI_H
#define EDGELM_ORTABI_H
#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

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
    API_KernelInfoGetAttribute_float = 85,
    API_KernelInfoGetAttribute_int64 = 86,
    API_KernelContext_GetInputCount = 88,
    API_KernelContext_GetInput = 90,
    API_KernelContext_GetOutput = 91,
    API_ReleaseStatus = 93,
    API_ReleaseTensorTypeAndShapeInfo = 99,
    API_KernelInfoGetConstantInput_tensor = 249, /* since API 14: 25 entries before KernelContext_ParallelFor */
    API_KernelContext_ParallelFor = 274,
};

enum { ORT_INVALID_ARGUMENT = 2, ORT_FAIL = 1 };
enum { TYPE_FLOAT = 1, TYPE_UINT8 = 2, TYPE_INT32 = 6, TYPE_FLOAT16 = 10 };
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
typedef OrtStatus* (*KernelInfoGetConstantInputFn)(const OrtKernelInfo*, size_t, int*, const OrtValue**);
typedef OrtStatus* (*KernelContextGetInputCountFn)(const OrtKernelContext*, size_t*);
typedef OrtStatus* (*KernelContextGetInputFn)(const OrtKernelContext*, size_t, const OrtValue**);
typedef OrtStatus* (*KernelContextGetOutputFn)(OrtKernelContext*, size_t, const int64_t*, size_t, OrtValue**);
typedef void (*ReleaseTensorTypeAndShapeInfoFn)(OrtTensorTypeAndShapeInfo*);
typedef void (*ReleaseStatusFn)(OrtStatus*);
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

typedef OrtStatus* (*KernelInfoGetAttributeFloatFn)(const OrtKernelInfo*, const char*, float*);

static inline OrtStatus* error(const OrtApi* api, const char* msg) {
    return FN(api, API_CreateStatus, CreateStatusFn)(ORT_INVALID_ARGUMENT, msg);
}

#define TRY(expr)                       \
    do {                                \
        OrtStatus* _s = (expr);         \
        if (_s) return _s;              \
    } while (0)

/* The shape of one input (at most max_dims dimensions, else an error naming the operator)
 * and its number of elements: every operator checks each input against its attributes
 * with this before it reads a byte, whatever the graph says. */
static inline OrtStatus* tensor_shape(const OrtApi* api, const OrtValue* val, int64_t* dims, size_t* ndim,
                                      size_t max_dims, int64_t* elements, const char* too_many) {
    OrtTensorTypeAndShapeInfo* info;
    TRY(FN(api, API_GetTensorTypeAndShape, GetTensorTypeAndShapeFn)(val, &info));
    OrtStatus* st = FN(api, API_GetDimensionsCount, GetDimensionsCountFn)(info, ndim);
    if (!st && *ndim > max_dims) st = error(api, too_many);
    if (!st) st = FN(api, API_GetDimensions, GetDimensionsFn)(info, dims, *ndim);
    FN(api, API_ReleaseTensorTypeAndShapeInfo, ReleaseTensorTypeAndShapeInfoFn)(info);
    if (st) return st;
    int64_t count = 1;
    for (size_t i = 0; i < *ndim; i++) {
        if (dims[i] < 0) return error(api, too_many);
        count *= dims[i]; /* an existing tensor's element count: no overflow */
    }
    *elements = count;
    return NULL;
}

/* Attributes that size buffers are capped so that products of them never overflow int64. */
#define EDGELM_MAX_DIM ((int64_t)1 << 31)

#include "isa.h"

/* Trivial OrtCustomOp callbacks every operator shares. */
static inline const char* op_provider(const struct OrtCustomOp* op) {
    (void)op;
    return "CPUExecutionProvider";
}
static inline int memory_type(const struct OrtCustomOp* op, size_t i) {
    (void)op;
    (void)i;
    return 0; /* OrtMemTypeDefault */
}
static inline int one(const struct OrtCustomOp* op) {
    (void)op;
    return 1;
}
static inline int end_version(const struct OrtCustomOp* op) {
    (void)op;
    return 0x7fffffff;
}
static inline int io_required(const struct OrtCustomOp* op, size_t i) {
    (void)op;
    (void)i;
    return IO_REQUIRED;
}
static inline void free_kernel(void* kernel) { free(kernel); }

/* The version-1 entry points an OrtCustomOp must still fill, over the V2 ones
 * (CREATE(op, api, info, &kernel) and COMPUTE(kernel, ctx), both returning a status). */
#define EDGELM_V1_CALLBACKS(CREATE_V1, CREATE, COMPUTE_V1, COMPUTE)                                    \
    static void* CREATE_V1(const OrtCustomOp* op, const OrtApi* api, const OrtKernelInfo* info) {      \
        void* k = NULL;                                                                                 \
        OrtStatus* st = CREATE(op, api, info, &k);                                                      \
        return st ? NULL : k; /* never used: ONNX Runtime >= 1.17 takes CreateKernelV2 */               \
    }                                                                                                   \
    static void COMPUTE_V1(void* kernel, OrtKernelContext* ctx) { (void)COMPUTE(kernel, ctx); }

extern const OrtCustomOp edgelm_attention_op;

#endif
