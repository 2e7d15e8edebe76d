/* matmul.cu: matmuls through cuBLASLt (fp32 or bf16 inputs, fp32 accumulation, bias epilogue),
 * with a plain kernel as the fallback, and the deterministic bias gradient.
 *
 * cuda_gemm takes the CPU backend's row-major contract and maps it onto cuBLASLt's column-major
 * one: row-major C (m,n) = op(A) op(B) is column-major C^T (n,m) = op(B)^T op(A)^T, so B is
 * cuBLASLt's first operand, A its second, with the same transpose flags. Its bias epilogue adds
 * a vector along the column-major rows, i.e. one value per row-major column (per output
 * feature). cuBLASLt's heuristics assume 256-byte aligned matrices unless told, so the real
 * alignment of each pointer, stride and leading dimension is passed; where no algorithm fits
 * (or TS_CUDA_GEMM=fallback) the plain kernel computes the same contract. No algorithm with an
 * in-place (atomic) reduction is accepted, so results repeat. */
#include <stdio.h>

#include "kernels/cuda/cuda_impl.h"
#include "kernels/log.h"

#define LT_TRY(call, what)                                                                         \
    do {                                                                                           \
        cublasStatus_t lt_s_ = (call);                                                             \
        if (lt_s_ != CUBLAS_STATUS_SUCCESS) {                                                      \
            st = ts_error(TS_ERR_CUDA, "cuBLASLt %s: status %d", (what), (int)lt_s_);              \
            goto exit;                                                                             \
        }                                                                                          \
    } while (0)

/* ---- the fallback: one thread per element of C, float accumulation ---- */

template <typename TA, typename TC> __global__ void gemm_fallback_kernel(gemm_args g) {
    int64_t j = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; /* column of C */
    int64_t i = blockIdx.y;                                     /* row of C */
    int64_t z = blockIdx.z;                                     /* batch */
    if (j >= g.n)
        return;
    const TA *A = (const TA *)g.a + z * g.stride_a;
    const TA *B = (const TA *)g.b + z * g.stride_b;
    TC *C = (TC *)g.c + z * g.stride_c;
    float acc = 0.0f;
    for (int64_t p = 0; p < g.k; p++) {
        float a = tof(g.ta ? A[p * g.lda + i] : A[i * g.lda + p]);
        float b = tof(g.tb ? B[j * g.ldb + p] : B[p * g.ldb + j]);
        acc += a * b;
    }
    float out = g.alpha * acc;
    if (g.beta != 0.0f)
        out += g.beta * tof(C[i * g.ldc + j]);
    if (g.bias)
        out += tof(((const TC *)g.bias)[j]);
    C[i * g.ldc + j] = fromf<TC>(out);
}

static ts_status gemm_fallback(cuda_ctx *ctx, const gemm_args *g) {
    if (g->m > 65535 || g->batch > 65535)
        return ts_error(TS_ERR_UNSUPPORTED, "fallback gemm: m = %d or batch = %d exceeds 65535",
                        g->m, g->batch);
    dim3 grid(grid_for(g->n, 128), (unsigned)g->m, (unsigned)g->batch);
    bool ab16 = g->ab_type == CUDA_R_16BF, c16 = g->c_type == CUDA_R_16BF;
    if (ab16 && c16)
        gemm_fallback_kernel<__nv_bfloat16, __nv_bfloat16><<<grid, 128, 0, ctx->stream>>>(*g);
    else if (ab16)
        gemm_fallback_kernel<__nv_bfloat16, float><<<grid, 128, 0, ctx->stream>>>(*g);
    else
        gemm_fallback_kernel<float, float><<<grid, 128, 0, ctx->stream>>>(*g);
    CUDA_LAUNCHED("fallback gemm");
    return TS_OK;
}

/* ---- cuBLASLt ---- */

static uint32_t align_of(const void *p, int64_t ld, int64_t stride, size_t esize) {
    uint64_t bits = (uint64_t)(uintptr_t)p | (uint64_t)ld * esize;
    if (stride)
        bits |= (uint64_t)stride * esize;
    uint32_t a = 256;
    while (a > 1 && (bits & (a - 1)))
        a >>= 1;
    return a;
}

static size_t type_size(cudaDataType_t t) { return t == CUDA_R_16BF ? 2 : 4; }

/* A column-major layout of rows x cols with leading dim ld, batched. */
static cublasStatus_t make_layout(cublasLtMatrixLayout_t *out, cudaDataType_t t, uint64_t rows,
                                  uint64_t cols, int64_t ld, int batch, int64_t stride) {
    cublasStatus_t s = cublasLtMatrixLayoutCreate(out, t, rows, cols, ld);
    if (s != CUBLAS_STATUS_SUCCESS || batch <= 1)
        return s;
    int32_t count = batch;
    s = cublasLtMatrixLayoutSetAttribute(*out, CUBLASLT_MATRIX_LAYOUT_BATCH_COUNT, &count,
                                         sizeof count);
    if (s != CUBLAS_STATUS_SUCCESS)
        return s;
    return cublasLtMatrixLayoutSetAttribute(*out, CUBLASLT_MATRIX_LAYOUT_STRIDED_BATCH_OFFSET,
                                            &stride, sizeof stride);
}

/* TS_OK with *found false when cuBLASLt has no algorithm for these arguments; *heur gets the
 * heuristic's status (not SUCCESS or NOT_SUPPORTED: more likely a wrong descriptor). */
static ts_status gemm_lt(cuda_ctx *ctx, const gemm_args *g, bool *found, int *heur) {
    ts_status st = TS_OK;
    cublasLtMatmulDesc_t op = NULL;
    cublasLtMatrixLayout_t la = NULL, lb = NULL, lc = NULL;
    cublasLtMatmulPreference_t pref = NULL;
    cublasLtMatmulHeuristicResult_t heur_r;
    int count = 0;
    cublasStatus_t hs;
    /* cuBLASLt operand 1 is our B, operand 2 our A (see the file comment). */
    cublasOperation_t t1 = g->tb ? CUBLAS_OP_T : CUBLAS_OP_N;
    cublasOperation_t t2 = g->ta ? CUBLAS_OP_T : CUBLAS_OP_N;
    uint64_t r1 = g->tb ? g->k : g->n, c1 = g->tb ? g->n : g->k; /* stored B, column-major */
    uint64_t r2 = g->ta ? g->m : g->k, c2 = g->ta ? g->k : g->m; /* stored A, column-major */
    size_t es = type_size(g->ab_type), cs = type_size(g->c_type);
    uint32_t al1 = align_of(g->b, g->ldb, g->batch > 1 ? g->stride_b : 0, es);
    uint32_t al2 = align_of(g->a, g->lda, g->batch > 1 ? g->stride_a : 0, es);
    uint32_t alc = align_of(g->c, g->ldc, g->batch > 1 ? g->stride_c : 0, cs);
    uint32_t reduction = CUBLASLT_REDUCTION_SCHEME_NONE | CUBLASLT_REDUCTION_SCHEME_COMPUTE_TYPE |
                         CUBLASLT_REDUCTION_SCHEME_OUTPUT_TYPE;
    *found = false;
    *heur = (int)CUBLAS_STATUS_SUCCESS;

    LT_TRY(cublasLtMatmulDescCreate(&op, CUBLAS_COMPUTE_32F, CUDA_R_32F), "matmul desc");
    LT_TRY(cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_TRANSA, &t1, sizeof t1),
           "transa");
    LT_TRY(cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_TRANSB, &t2, sizeof t2),
           "transb");
    if (g->gelu_pre) {
        /* GELU with its input kept for backward (the aux matrix, laid out like C) */
        cublasLtEpilogue_t epi =
            g->bias ? CUBLASLT_EPILOGUE_GELU_AUX_BIAS : CUBLASLT_EPILOGUE_GELU_AUX;
        int64_t ld = g->ldc;
        if (ld % 8 != 0 || g->batch != 1)
            goto exit; /* cuBLASLt's rule for the aux leading dimension: not found */
        LT_TRY(cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_EPILOGUE, &epi, sizeof epi),
               "epilogue");
        LT_TRY(cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_EPILOGUE_AUX_POINTER,
                                              &g->gelu_pre, sizeof g->gelu_pre),
               "aux pointer");
        LT_TRY(cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_EPILOGUE_AUX_LD, &ld,
                                              sizeof ld),
               "aux ld");
        uint32_t ala = align_of(g->gelu_pre, g->ldc, 0, cs);
        alc = alc < ala ? alc : ala;
    }
    if (g->bias) {
        cublasLtEpilogue_t epi =
            g->gelu_pre ? (g->bias ? CUBLASLT_EPILOGUE_GELU_AUX_BIAS : CUBLASLT_EPILOGUE_GELU_AUX)
                        : CUBLASLT_EPILOGUE_BIAS;
        cudaDataType_t bt = g->c_type;
        LT_TRY(cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_EPILOGUE, &epi, sizeof epi),
               "epilogue");
        LT_TRY(cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &g->bias,
                                              sizeof g->bias),
               "bias pointer");
        LT_TRY(
            cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE, &bt, sizeof bt),
            "bias type");
        uint32_t alb = align_of(g->bias, 0, 0, cs);
        alc = alc < alb ? alc : alb;
    }
    LT_TRY(make_layout(&la, g->ab_type, r1, c1, g->ldb, g->batch, g->stride_b), "layout B");
    LT_TRY(make_layout(&lb, g->ab_type, r2, c2, g->lda, g->batch, g->stride_a), "layout A");
    LT_TRY(
        make_layout(&lc, g->c_type, (uint64_t)g->n, (uint64_t)g->m, g->ldc, g->batch, g->stride_c),
        "layout C");
    LT_TRY(cublasLtMatmulPreferenceCreate(&pref), "preference");
    LT_TRY(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES,
                                                &ctx->workspace_bytes, sizeof ctx->workspace_bytes),
           "workspace");
    LT_TRY(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_REDUCTION_SCHEME_MASK,
                                                &reduction, sizeof reduction),
           "reduction scheme");
    LT_TRY(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES,
                                                &al1, sizeof al1),
           "alignment A");
    LT_TRY(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES,
                                                &al2, sizeof al2),
           "alignment B");
    LT_TRY(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES,
                                                &alc, sizeof alc),
           "alignment C");
    LT_TRY(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES,
                                                &alc, sizeof alc),
           "alignment D");
    hs = cublasLtMatmulAlgoGetHeuristic(ctx->lt, op, la, lb, lc, lc, pref, 1, &heur_r, &count);
    *heur = (int)hs;
    if (hs != CUBLAS_STATUS_SUCCESS || count == 0)
        goto exit; /* not found: the caller falls back */
    LT_TRY(cublasLtMatmul(ctx->lt, op, &g->alpha, g->b, la, g->a, lb, &g->beta, g->c, lc, g->c, lc,
                          &heur_r.algo, ctx->workspace, ctx->workspace_bytes, ctx->stream),
           "matmul");
    *found = true;
exit:
    if (pref)
        cublasLtMatmulPreferenceDestroy(pref);
    if (lc)
        cublasLtMatrixLayoutDestroy(lc);
    if (lb)
        cublasLtMatrixLayoutDestroy(lb);
    if (la)
        cublasLtMatrixLayoutDestroy(la);
    if (op)
        cublasLtMatmulDescDestroy(op);
    return st;
}

ts_status cuda_gemm(cuda_ctx *ctx, const gemm_args *g) {
    if (g->gelu_pre)
        return ts_error(TS_ERR_INTERNAL, "cuda_gemm: the GELU epilogue goes through "
                                         "cuda_matmul_forward_gelu");
    if (!ctx->force_fallback_gemm) {
        bool found = false;
        int heur = 0;
        TS_CHECK(gemm_lt(ctx, g, &found, &heur));
        if (found)
            return TS_OK;
        /* odd (under 16-byte) alignments are expected to fall back, once said; an aligned
         * matmul without an algorithm is a surprise (a wrong descriptor, or a slow run ahead)
         * and is said each time, up to a few */
        const size_t es = type_size(g->ab_type), cs = type_size(g->c_type);
        const bool aligned = align_of(g->a, g->lda, g->batch > 1 ? g->stride_a : 0, es) >= 16 &&
                             align_of(g->b, g->ldb, g->batch > 1 ? g->stride_b : 0, es) >= 16 &&
                             align_of(g->c, g->ldc, g->batch > 1 ? g->stride_c : 0, cs) >= 16;
        if (aligned ? ctx->unexpected_fallbacks++ < 5 : !ctx->warned_fallback) {
            ctx->warned_fallback = ctx->warned_fallback || !aligned;
            ts_log(TS_LOG_WARN,
                   "cuBLASLt has no algorithm for a (%d x %d x %d, batch %d, %s) matmul "
                   "(heuristic status %d); using the slow fallback kernel",
                   g->m, g->n, g->k, g->batch, aligned ? "16-byte aligned" : "odd alignment", heur);
        }
    }
    return gemm_fallback(ctx, g);
}

/* ---- the linear layer ---- */

/* dbias (OC) += column sums of dout (N, OC): block (32 columns, 32 row groups), fixed order. */
template <typename T>
__global__ void bias_grad_kernel(float *dbias, const T *dout, int64_t N, int64_t OC) {
    __shared__ float sh[32][33];
    int tx = threadIdx.x & 31, ty = threadIdx.x >> 5;
    int64_t c = (int64_t)blockIdx.x * 32 + tx;
    float acc = 0.0f;
    if (c < OC)
        for (int64_t n = ty; n < N; n += 32)
            acc += tof(dout[n * OC + c]);
    sh[ty][tx] = acc;
    __syncthreads();
    if (ty == 0 && c < OC) {
        float s = 0.0f;
        for (int k = 0; k < 32; k++)
            s += sh[k][tx];
        dbias[c] += s;
    }
}

static ts_status dims(const char *op, const struct ts_tensor *inp, const struct ts_tensor *weight,
                      enum ts_wlayout layout, int *n, int *ic, int *oc) {
    int64_t IC = inp->shape[inp->ndim - 1], N = ts_tensor_numel(inp) / IC;
    int64_t OC = layout == TS_W_IN_OUT ? weight->shape[1] : weight->shape[0];
    if (N > INT32_MAX || IC > INT32_MAX || OC > INT32_MAX)
        return ts_error(TS_ERR_UNSUPPORTED, "%s: N, IC or OC exceeds the int range", op);
    *n = (int)N;
    *ic = (int)IC;
    *oc = (int)OC;
    return TS_OK;
}

/* The same calls as ts_cpu_matmul_forward / _backward, argument for argument. */
ts_status cuda_matmul_forward(struct ts_backend *be, const struct ts_tensor *out,
                              const struct ts_tensor *inp, const struct ts_tensor *weight,
                              const struct ts_tensor *bias, enum ts_wlayout layout) {
    cuda_ctx *ctx = cuda_ctx_of(be);
    int N = 0, IC = 0, OC = 0;
    TS_CHECK(dims("matmul_forward", inp, weight, layout, &N, &IC, &OC));
    cudaDataType_t t = cuda_type(inp->dtype);
    gemm_args g = layout == TS_W_IN_OUT
                      ? cuda_gemm_args(false, false, N, OC, IC, inp->data, IC, weight->data, OC,
                                       0.0f, out->data, OC, t, t)
                      : cuda_gemm_args(false, true, N, OC, IC, inp->data, IC, weight->data, IC,
                                       0.0f, out->data, OC, t, t);
    g.bias = bias ? bias->data : NULL;
    return cuda_gemm(ctx, &g);
}

/* cuBLASLt's GELU_AUX_BIAS epilogue where it has an algorithm (it writes both gelu(pre) and pre);
 * elsewhere the unfused pair: the biased matmul into pre, then the GELU kernel. */
ts_status cuda_matmul_forward_gelu(struct ts_backend *be, const struct ts_tensor *out,
                                   const struct ts_tensor *pre, const struct ts_tensor *inp,
                                   const struct ts_tensor *weight, const struct ts_tensor *bias) {
    cuda_ctx *ctx = cuda_ctx_of(be);
    int N = 0, IC = 0, OC = 0;
    TS_CHECK(dims("matmul_forward_gelu", inp, weight, TS_W_IN_OUT, &N, &IC, &OC));
    cudaDataType_t t = cuda_type(inp->dtype);
    gemm_args g = cuda_gemm_args(false, false, N, OC, IC, inp->data, IC, weight->data, OC, 0.0f,
                                 out->data, OC, t, t);
    g.bias = bias ? bias->data : NULL;
    /* The fused epilogue only for bf16, where it saves a pass over (N, 4C): fp32 is the checking
     * precision, and cuBLASLt's GELU need not be the exact tanh form the CPU oracle computes. */
    if (!ctx->force_fallback_gemm && inp->dtype == TS_DTYPE_BF16) {
        bool found = false;
        int heur = 0;
        g.gelu_pre = pre->data;
        TS_CHECK(gemm_lt(ctx, &g, &found, &heur));
        if (found)
            return TS_OK;
    }
    g.gelu_pre = NULL;
    g.c = pre->data;
    TS_CHECK(cuda_gemm(ctx, &g));
    return cuda_gelu_forward(be, out, pre);
}

ts_status cuda_matmul_backward(struct ts_backend *be, const struct ts_tensor *dinp,
                               const struct ts_tensor *dweight, const struct ts_tensor *dbias,
                               const struct ts_tensor *dout, const struct ts_tensor *inp,
                               const struct ts_tensor *weight, enum ts_wlayout layout) {
    cuda_ctx *ctx = cuda_ctx_of(be);
    int N = 0, IC = 0, OC = 0;
    TS_CHECK(dims("matmul_backward", inp, weight, layout, &N, &IC, &OC));
    cudaDataType_t t = cuda_type(inp->dtype);
    const void *d = dout->data, *x = inp->data, *w = weight->data;
    gemm_args g;
    if (layout == TS_W_IN_OUT) {
        if (dinp) { /* (N,OC) @ (IC,OC)^T */
            g = cuda_gemm_args(false, true, N, IC, OC, d, OC, w, OC, 0.0f, dinp->data, IC, t, t);
            TS_CHECK(cuda_gemm(ctx, &g));
        }
        /* dW (IC,OC) += inp^T (IC,N) @ dout (N,OC), accumulated in f32 */
        g = cuda_gemm_args(true, false, IC, OC, N, x, IC, d, OC, 1.0f, dweight->data, OC, t,
                           CUDA_R_32F);
        TS_CHECK(cuda_gemm(ctx, &g));
    } else {
        if (dinp) { /* (N,OC) @ (OC,IC) */
            g = cuda_gemm_args(false, false, N, IC, OC, d, OC, w, IC, 0.0f, dinp->data, IC, t, t);
            TS_CHECK(cuda_gemm(ctx, &g));
        }
        /* dW (OC,IC) += dout^T (OC,N) @ inp (N,IC) */
        g = cuda_gemm_args(true, false, OC, IC, N, d, OC, x, IC, 1.0f, dweight->data, IC, t,
                           CUDA_R_32F);
        TS_CHECK(cuda_gemm(ctx, &g));
    }
    if (dbias) {
        if (inp->dtype == TS_DTYPE_BF16)
            bias_grad_kernel<<<grid_for(OC, 32), 1024, 0, ctx->stream>>>(
                (float *)dbias->data, (const __nv_bfloat16 *)d, N, OC);
        else
            bias_grad_kernel<<<grid_for(OC, 32), 1024, 0, ctx->stream>>>((float *)dbias->data,
                                                                         (const float *)d, N, OC);
        CUDA_LAUNCHED("matmul_backward (dbias)");
    }
    return TS_OK;
}
