/* matmul.cu: matmuls through cuBLASLt (fp32 or bf16 inputs, fp32 accumulation, bias epilogue),
 * with a plain kernel as the fallback; the bias gradient is colsum.cu's.
 *
 * cuda_gemm takes the CPU backend's row-major contract and maps it onto cuBLASLt's column-major
 * one: row-major C (m,n) = op(A) op(B) is column-major C^T (n,m) = op(B)^T op(A)^T, so B is
 * cuBLASLt's first operand, A its second, with the same transpose flags. Its bias epilogue adds
 * a vector along the column-major rows, i.e. one value per row-major column (per output
 * feature). cuBLASLt's heuristics assume 256-byte aligned matrices unless told, so the real
 * alignment of each pointer, stride and leading dimension is passed; where no algorithm fits
 * (or TS_CUDA_GEMM=fallback) the plain kernel (gemm_fallback.cu) computes the same contract, and
 * so it does for a shape whose matmul cuBLASLt refuses at launch (said once). No algorithm with
 * an in-place (atomic) reduction is accepted, so results repeat.
 *
 * Plans (descriptor, layouts, the heuristic's algorithm) are cached per shape (lt_cache.h), so
 * a step's ~725 matmuls run the heuristic only for the ~30 shapes it has; TS_CUBLASLT_CACHE=0
 * makes and destroys them at every call, as before. */
#include <stdio.h>
#include <stdlib.h>

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

/* A plan: what cuBLASLt needs for one shape (lt_cache.h's value). Pointers (bias, GELU aux)
 * are set on the descriptor at each call; everything else depends only on the key. */
struct lt_plan {
    cublasLtMatmulDesc_t op;
    cublasLtMatrixLayout_t la, lb, lc;
    cublasLtMatmulAlgo_t algo;
    bool found; /* the heuristic offered an algorithm */
    int launch; /* cublasLtMatmul's status at its last launch: not SUCCESS means this shape
                 * falls back from now on */
    int heur;   /* the heuristic's status */
};

static void plan_destroy(void *value, void *user) {
    (void)user;
    lt_plan *p = (lt_plan *)value;
    if (!p)
        return;
    if (p->lc)
        cublasLtMatrixLayoutDestroy(p->lc);
    if (p->lb)
        cublasLtMatrixLayoutDestroy(p->lb);
    if (p->la)
        cublasLtMatrixLayoutDestroy(p->la);
    if (p->op)
        cublasLtMatmulDescDestroy(p->op);
    free(p);
}

/* The descriptor, layouts and the heuristic's choice for key (lt_cache.h's create function).
 * A plan with found false when cuBLASLt has no algorithm; p->heur says why (not SUCCESS or
 * NOT_SUPPORTED: more likely a wrong descriptor). */
static ts_status plan_create(const struct ts_lt_key *key, void *user, void **out) {
    cuda_ctx *ctx = (cuda_ctx *)user;
    ts_status st = TS_OK;
    cublasLtMatmulPreference_t pref = NULL;
    cublasLtMatmulHeuristicResult_t heur_r;
    int count = 0;
    cublasStatus_t hs;
    const cudaDataType_t abt = (cudaDataType_t)key->ab_type, ct = (cudaDataType_t)key->c_type;
    const cublasLtEpilogue_t epi = (cublasLtEpilogue_t)key->epilogue;
    /* cuBLASLt operand 1 is our B, operand 2 our A (see the file comment). */
    const cublasOperation_t t1 = key->tb ? CUBLAS_OP_T : CUBLAS_OP_N;
    const cublasOperation_t t2 = key->ta ? CUBLAS_OP_T : CUBLAS_OP_N;
    const uint64_t r1 = key->tb ? key->k : key->n, c1 = key->tb ? key->n : key->k; /* stored B */
    const uint64_t r2 = key->ta ? key->m : key->k, c2 = key->ta ? key->k : key->m; /* stored A */
    const uint32_t al1 = key->align_b, al2 = key->align_a, alc = key->align_c;
    const uint32_t reduction = CUBLASLT_REDUCTION_SCHEME_NONE |
                               CUBLASLT_REDUCTION_SCHEME_COMPUTE_TYPE |
                               CUBLASLT_REDUCTION_SCHEME_OUTPUT_TYPE;
    lt_plan *p = (lt_plan *)calloc(1, sizeof *p);
    *out = NULL;
    if (!p)
        return ts_error(TS_ERR_OOM, "cuBLASLt plan: out of host memory");
    p->heur = (int)CUBLAS_STATUS_SUCCESS;
    p->launch = (int)CUBLAS_STATUS_SUCCESS;

    LT_TRY(cublasLtMatmulDescCreate(&p->op, CUBLAS_COMPUTE_32F, CUDA_R_32F), "matmul desc");
    LT_TRY(cublasLtMatmulDescSetAttribute(p->op, CUBLASLT_MATMUL_DESC_TRANSA, &t1, sizeof t1),
           "transa");
    LT_TRY(cublasLtMatmulDescSetAttribute(p->op, CUBLASLT_MATMUL_DESC_TRANSB, &t2, sizeof t2),
           "transb");
    if (epi != CUBLASLT_EPILOGUE_DEFAULT)
        LT_TRY(
            cublasLtMatmulDescSetAttribute(p->op, CUBLASLT_MATMUL_DESC_EPILOGUE, &epi, sizeof epi),
            "epilogue");
    if (key->aux_ld) {
        const int64_t ld = key->aux_ld;
        LT_TRY(cublasLtMatmulDescSetAttribute(p->op, CUBLASLT_MATMUL_DESC_EPILOGUE_AUX_LD, &ld,
                                              sizeof ld),
               "aux ld");
    }
    if (key->has_bias)
        LT_TRY(cublasLtMatmulDescSetAttribute(p->op, CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE, &ct,
                                              sizeof ct),
               "bias type");
    LT_TRY(make_layout(&p->la, abt, r1, c1, key->ldb, key->batch, key->stride_b), "layout B");
    LT_TRY(make_layout(&p->lb, abt, r2, c2, key->lda, key->batch, key->stride_a), "layout A");
    LT_TRY(make_layout(&p->lc, ct, (uint64_t)key->n, (uint64_t)key->m, key->ldc, key->batch,
                       key->stride_c),
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
    hs = cublasLtMatmulAlgoGetHeuristic(ctx->lt, p->op, p->la, p->lb, p->lc, p->lc, pref, 1,
                                        &heur_r, &count);
    p->heur = (int)hs;
    if (hs == CUBLAS_STATUS_SUCCESS && count > 0) {
        p->algo = heur_r.algo;
        p->found = true;
    }
exit:
    if (pref)
        cublasLtMatmulPreferenceDestroy(pref);
    if (st != TS_OK) {
        plan_destroy(p, NULL);
        return st;
    }
    *out = p;
    return TS_OK;
}

ts_status cuda_lt_cache_init(cuda_ctx *ctx) {
    return ts_lt_cache_init(&ctx->lt_cache, TS_LT_CACHE_ENTRIES, plan_create, plan_destroy, ctx);
}

/* The key of g: every argument of the plan, with the true alignment of each operand. */
static struct ts_lt_key key_of(const gemm_args *g) {
    const size_t es = type_size(g->ab_type), cs = type_size(g->c_type);
    struct ts_lt_key k = ts_lt_key_zero();
    k.m = g->m;
    k.n = g->n;
    k.k = g->k;
    k.batch = g->batch;
    k.ta = g->ta;
    k.tb = g->tb;
    k.ab_type = (int32_t)g->ab_type;
    k.c_type = (int32_t)g->c_type;
    k.has_bias = g->bias != NULL;
    k.lda = g->lda;
    k.ldb = g->ldb;
    k.ldc = g->ldc;
    if (g->batch > 1) {
        k.stride_a = g->stride_a;
        k.stride_b = g->stride_b;
        k.stride_c = g->stride_c;
    }
    k.align_a = align_of(g->a, g->lda, k.stride_a, es);
    k.align_b = align_of(g->b, g->ldb, k.stride_b, es);
    k.align_c = align_of(g->c, g->ldc, k.stride_c, cs);
    cublasLtEpilogue_t epi = CUBLASLT_EPILOGUE_DEFAULT;
    if (g->gelu_pre) {
        /* GELU with its input kept for backward (the aux matrix, laid out like C) */
        epi = g->bias ? CUBLASLT_EPILOGUE_GELU_AUX_BIAS : CUBLASLT_EPILOGUE_GELU_AUX;
        k.aux_ld = g->ldc;
        const uint32_t ala = align_of(g->gelu_pre, g->ldc, 0, cs);
        k.align_c = k.align_c < ala ? k.align_c : ala;
    } else if (g->dgelu_pre) {
        /* GELU's gradient at the forward's input (the aux matrix, laid out like C) */
        epi = CUBLASLT_EPILOGUE_DGELU;
        k.aux_ld = g->ldc;
        const uint32_t ala = align_of(g->dgelu_pre, g->ldc, 0, cs);
        k.align_c = k.align_c < ala ? k.align_c : ala;
    } else if (g->bias) {
        epi = CUBLASLT_EPILOGUE_BIAS;
    }
    if (g->bias) {
        const uint32_t alb = align_of(g->bias, 0, 0, cs);
        k.align_c = k.align_c < alb ? k.align_c : alb;
    }
    k.epilogue = (int32_t)epi;
    return k;
}

/* Runs g through cuBLASLt. TS_OK with *found false when there is no algorithm (*heur: the
 * heuristic's status) or when the matmul failed at launch (*launch: its status, else SUCCESS):
 * the caller falls back. The plan comes from the cache (TS_CUBLASLT_CACHE=0: made and destroyed
 * for this call). */
static ts_status gemm_lt(cuda_ctx *ctx, const gemm_args *g, bool *found, int *heur, int *launch) {
    ts_status st = TS_OK;
    lt_plan *p = NULL;
    cublasStatus_t ls;
    *found = false;
    *heur = (int)CUBLAS_STATUS_SUCCESS;
    *launch = (int)CUBLAS_STATUS_SUCCESS;
    if ((g->gelu_pre || g->dgelu_pre) && (g->ldc % 8 != 0 || g->batch != 1))
        return TS_OK; /* cuBLASLt's rule for the aux leading dimension: not found */
    const struct ts_lt_key key = key_of(g);
    if (ctx->lt_cache_on)
        TS_CHECK(ts_lt_cache_get(&ctx->lt_cache, &key, (void **)&p));
    else
        TS_CHECK(plan_create(&key, ctx, (void **)&p));
    *heur = p->heur;
    *launch = p->launch;
    if (!p->found || p->launch != (int)CUBLAS_STATUS_SUCCESS)
        goto exit;
    if (g->gelu_pre || g->dgelu_pre) {
        const void *aux = g->gelu_pre ? (const void *)g->gelu_pre : g->dgelu_pre;
        LT_TRY(cublasLtMatmulDescSetAttribute(p->op, CUBLASLT_MATMUL_DESC_EPILOGUE_AUX_POINTER,
                                              &aux, sizeof aux),
               "aux pointer");
    }
    if (g->bias)
        LT_TRY(cublasLtMatmulDescSetAttribute(p->op, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &g->bias,
                                              sizeof g->bias),
               "bias pointer");
    ls = cublasLtMatmul(ctx->lt, p->op, &g->alpha, g->b, p->la, g->a, p->lb, &g->beta, g->c, p->lc,
                        g->c, p->lc, &p->algo, ctx->workspace, ctx->workspace_bytes, ctx->stream);
    if (ls == CUBLAS_STATUS_SUCCESS) {
        *found = true;
    } else {
        /* refused at launch although the heuristic offered the algorithm: this shape falls back
         * from now on; a launch-configuration error it left is cleared (a sticky fault is not,
         * and the fallback's own launch check reports it) */
        p->launch = (int)ls;
        *launch = (int)ls;
        (void)cudaGetLastError();
    }
exit:
    if (!ctx->lt_cache_on)
        plan_destroy(p, NULL);
    return st;
}

ts_status cuda_gemm(cuda_ctx *ctx, const gemm_args *g) {
    if (g->gelu_pre || g->dgelu_pre)
        return ts_error(TS_ERR_INTERNAL, "cuda_gemm: the GELU epilogues go through "
                                         "cuda_matmul_forward_gelu and cuda_matmul_backward_dgelu");
    if (!ctx->force_fallback_gemm) {
        bool found = false;
        int heur = 0, launch = 0;
        TS_CHECK(gemm_lt(ctx, g, &found, &heur, &launch));
        if (found)
            return TS_OK;
        if (launch != (int)CUBLAS_STATUS_SUCCESS) {
            if (!ctx->warned_lt_launch)
                ts_log(TS_LOG_WARN,
                       "cuBLASLt matmul failed at launch (status %d) for a (%d x %d x %d, batch "
                       "%d) matmul; that shape uses the slow fallback kernel from now on (said "
                       "once)",
                       launch, g->m, g->n, g->k, g->batch);
            ctx->warned_lt_launch = true;
            return cuda_gemm_fallback(ctx, g);
        }
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
    return cuda_gemm_fallback(ctx, g);
}

/* ---- the linear layer ---- */

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
        int heur = 0, launch = 0;
        g.gelu_pre = pre->data;
        TS_CHECK(gemm_lt(ctx, &g, &found, &heur, &launch));
        if (found)
            return TS_OK;
        if (launch != (int)CUBLAS_STATUS_SUCCESS && !ctx->warned_lt_launch) {
            ts_log(TS_LOG_WARN,
                   "cuBLASLt's GELU epilogue failed at launch (status %d) for a (%d x %d x %d) "
                   "matmul; the matmul and the GELU kernel run apart from now on (said once)",
                   launch, g.m, g.n, g.k);
            ctx->warned_lt_launch = true;
        }
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
    if (dbias) /* dbias (OC) += column sums of dout (N, OC) */
        TS_CHECK(cuda_colsum(ctx, inp->dtype, (float *)dbias->data, NULL, d, NULL, NULL, NULL, N,
                             OC, "matmul_backward (dbias)"));
    return TS_OK;
}

/* The MLP projection's backward with GELU's: where cuBLASLt has a DGELU algorithm (bf16 only,
 * as the forward's GELU epilogue), the dinp matmul multiplies by gelu'(pre) in its epilogue and
 * dpre never exists as d(gelu(pre)); elsewhere, and with TS_CUDA_DGELU=0, matmul_backward into
 * dpre, then the GELU backward kernel in place. dweight and dbias as matmul_backward. */
ts_status cuda_matmul_backward_dgelu(struct ts_backend *be, const struct ts_tensor *dpre,
                                     const struct ts_tensor *dweight, const struct ts_tensor *dbias,
                                     const struct ts_tensor *dout, const struct ts_tensor *inp,
                                     const struct ts_tensor *weight, const struct ts_tensor *pre) {
    cuda_ctx *ctx = cuda_ctx_of(be);
    int N = 0, IC = 0, OC = 0;
    TS_CHECK(dims("matmul_backward_dgelu", inp, weight, TS_W_IN_OUT, &N, &IC, &OC));
    if (ctx->dgelu_off || ctx->force_fallback_gemm || inp->dtype != TS_DTYPE_BF16 ||
        ctx->dgelu_unavailable) {
        TS_CHECK(cuda_matmul_backward(be, dpre, dweight, dbias, dout, inp, weight, TS_W_IN_OUT));
        return cuda_gelu_backward(be, dpre, pre, dpre);
    }
    cudaDataType_t t = cuda_type(inp->dtype);
    /* dpre (N,IC) = gelu'(pre) * (dout (N,OC) @ W (IC,OC)^T) */
    gemm_args g = cuda_gemm_args(false, true, N, IC, OC, dout->data, OC, weight->data, OC, 0.0f,
                                 dpre->data, IC, t, t);
    g.dgelu_pre = pre->data;
    bool found = false;
    int heur = 0, launch = 0;
    TS_CHECK(gemm_lt(ctx, &g, &found, &heur, &launch));
    if (!found) {
        /* said once; this run keeps the unfused pair from now on */
        ts_log(TS_LOG_WARN,
               "cuBLASLt's DGELU epilogue has no algorithm (heuristic status %d, launch status %d) "
               "for a (%d x %d x %d) matmul; the matmul backward and the GELU backward kernel run "
               "apart from now on (said once)",
               heur, launch, g.m, g.n, g.k);
        ctx->dgelu_unavailable = true;
        TS_CHECK(cuda_matmul_backward(be, dpre, dweight, dbias, dout, inp, weight, TS_W_IN_OUT));
        return cuda_gelu_backward(be, dpre, pre, dpre);
    }
    /* dweight and dbias as matmul_backward's, without dinp */
    return cuda_matmul_backward(be, NULL, dweight, dbias, dout, inp, weight, TS_W_IN_OUT);
}
