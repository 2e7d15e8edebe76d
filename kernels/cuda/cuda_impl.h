/* cuda_impl.h: what the CUDA plug-in's files share: its private state, error macros, the
 * element helpers every kernel uses (bf16 is read into and written from float), deterministic
 * warp and block reductions, the matmul helper, and each op's entry point. Included only by
 * the .cu files of kernels/cuda; not part of the public API.
 *
 * Every kernel is a template over the element type T (float or __nv_bfloat16) and computes in
 * float; each op's host function dispatches on the tensor's dtype. All work goes to one stream
 * per backend, in issue order. */
#ifndef TS_CUDA_IMPL_H
#define TS_CUDA_IMPL_H

#include <cublasLt.h>
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include "kernels/backend.h"
#include "kernels/backend_load.h"
#include "kernels/cuda/cuda_geom.h"
#include "kernels/cuda/lt_cache.h"
#include "kernels/cuda/mem_account.h"

/* sum_squares: fixed partial count, so the summation order depends only on numel. */
#define TS_NORM_BLOCKS 512
/* cuBLASLt plans kept (matmul.cu); GPT-2 training uses about 30 shapes. */
#define TS_LT_CACHE_ENTRIES 128

struct cuda_ctx {
    int device;
    cudaDeviceProp prop;
    cudaStream_t stream;
    cublasLtHandle_t lt;
    void *workspace; /* cuBLASLt's, owned here */
    size_t workspace_bytes;
    double *partials;       /* (TS_NORM_BLOCKS) for sum_squares */
    float *colsum_partials; /* (TS_COLSUM_PARTIAL_FLOATS) for the column sums (colsum.cu) */
    /* the wte gradient's sort (encoder.cu): (TS_DWTE_MAX_POSITIONS) keys twice, the segment
     * heads (+1) and their count */
    unsigned long long *dwte_keys[2];
    int *dwte_heads;
    int *dwte_nheads;
    struct ts_mem_account mem; /* the backend's own device allocations: info.peak_bytes */
    bool force_fallback_gemm;  /* TS_CUDA_GEMM=fallback: the plain kernel instead of cuBLASLt */
    bool warned_fallback;      /* the fallback for an oddly aligned matmul was reported */
    int unexpected_fallbacks;  /* fallbacks for 16-byte aligned matmuls (reported up to 5) */
    bool warned_lt_launch;     /* a matmul cuBLASLt refused at launch was reported */
    bool lt_cache_on;          /* TS_CUBLASLT_CACHE (default 1): plans cached per shape */
    struct ts_lt_cache lt_cache;
    bool colsum_legacy;       /* TS_CUDA_COLSUM=legacy: C/32 blocks, one pass (the old kernels) */
    bool dwte_legacy;         /* TS_CUDA_DWTE=scan: one block per vocabulary row (the old one) */
    bool warned_dwte_size;    /* B T past the sort buffers was reported */
    bool vector_off;          /* TS_CUDA_VECTOR=0: elementwise kernels one element per thread */
    bool fused_ln_off;        /* TS_CUDA_FUSED_LN=0: residual_forward then layernorm_forward */
    bool dgelu_off;           /* TS_CUDA_DGELU=0: matmul_backward then the GELU backward kernel */
    bool dgelu_unavailable;   /* cuBLASLt offered no DGELU algorithm (reported once) */
    bool attention_reference; /* TS_ATTENTION=reference: the model keeps the materialised pair */
    bool warned_flash_hs;     /* a head size without flash kernels was reported */
    /* NVML, loaded at run time (libnvidia-ml.so.1) where it exists */
    void *nvml_lib;
    void *nvml_dev;
    int (*nvml_energy)(void *dev, unsigned long long *mj);
    int (*nvml_shutdown)(void);
};

static inline cuda_ctx *cuda_ctx_of(struct ts_backend *be) { return (cuda_ctx *)be->ctx; }

/* A failed CUDA call becomes TS_ERR_CUDA with the runtime's own words. */
#define CUDA_TRY(call, what)                                                                       \
    do {                                                                                           \
        cudaError_t cuda_e_ = (call);                                                              \
        if (cuda_e_ != cudaSuccess)                                                                \
            return ts_error(TS_ERR_CUDA, "%s: %s (%s)", (what), cudaGetErrorString(cuda_e_),       \
                            cudaGetErrorName(cuda_e_));                                            \
    } while (0)

/* After a launch: configuration errors now, faults of earlier kernels if they surfaced. */
#define CUDA_LAUNCHED(what) CUDA_TRY(cudaGetLastError(), what)

static inline unsigned grid_for(int64_t n, int threads) {
    return (unsigned)((n + threads - 1) / threads);
}

/* ---- elements: load as float, store rounded to nearest even ---- */

__device__ __forceinline__ float tof(float x) { return x; }
__device__ __forceinline__ float tof(__nv_bfloat16 x) { return __bfloat162float(x); }
template <typename T> __device__ __forceinline__ T fromf(float x);
template <> __device__ __forceinline__ float fromf<float>(float x) { return x; }
template <> __device__ __forceinline__ __nv_bfloat16 fromf<__nv_bfloat16>(float x) {
    return __float2bfloat16_rn(x);
}

/* ---- reductions in a fixed order (butterfly), so results repeat bit for bit ---- */

__device__ __forceinline__ float warp_sum(float v) {
    for (int o = 16; o > 0; o >>= 1)
        v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

__device__ __forceinline__ double warp_sum_d(double v) {
    for (int o = 16; o > 0; o >>= 1)
        v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

__device__ __forceinline__ float warp_max(float v) {
    for (int o = 16; o > 0; o >>= 1)
        v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}

/* ---- matmul (matmul.cu) ---- */

/* Row-major C (m,n) = alpha op(A) op(B) + beta C [+ bias (n) on every row], batched with element
 * strides; op(A) is (m,k), op(B) is (k,n). The same contract as the CPU backend's sgemm, so
 * the CUDA ops read like the CPU ones. A and B share ab_type; C has c_type; bias has c_type.
 * beta == 0 never reads C. */
struct gemm_args {
    bool ta, tb;
    int m, n, k;
    float alpha, beta;
    const void *a;
    int64_t lda, stride_a;
    const void *b;
    int64_t ldb, stride_b;
    void *c;
    int64_t ldc, stride_c;
    int batch; /* >= 1 */
    cudaDataType_t ab_type, c_type;
    const void *bias;      /* NULL or (n) */
    void *gelu_pre;        /* non-NULL: C = gelu(.), and gelu_pre (m, n; ld ldc) gets its input */
    const void *dgelu_pre; /* non-NULL: C = gelu'(dgelu_pre) * (.); dgelu_pre (m, n; ld ldc) */
};
ts_status cuda_gemm(cuda_ctx *ctx, const gemm_args *g);
/* The plain kernel for the same contract (gemm_fallback.cu); any m and batch. */
ts_status cuda_gemm_fallback(cuda_ctx *ctx, const gemm_args *g);
/* The plan cache's create/destroy bound to ctx (matmul.cu); at backend creation. */
ts_status cuda_lt_cache_init(cuda_ctx *ctx);

/* ---- the wte gradient by sorted positions (dwte_sort.cu) ---- */

/* dwte (Vp, C) += dout rows by token id; *done false (nothing issued) when n = B T exceeds the
 * preallocated sort buffers: the caller runs the scan kernel. */
ts_status cuda_dwte_sorted(cuda_ctx *ctx, enum ts_dtype dt, float *dwte, const void *dout,
                           const int32_t *tok, int64_t n, int64_t C, int64_t Vp, bool *done);

/* ---- column sums (colsum.cu) ---- */

/* out0 (C) += column sums of dout (N, C); with inp, mean, rstd (layernorm's backward) also
 * out1 (C) += column sums of (inp - mean) rstd dout. Deterministic (fixed partials, summed in a
 * fixed order); TS_CUDA_COLSUM=legacy runs the single-pass kernels. dout and inp are T. */
ts_status cuda_colsum(cuda_ctx *ctx, enum ts_dtype dt, float *out0, float *out1, const void *dout,
                      const void *inp, const float *mean, const float *rstd, int64_t N, int64_t C,
                      const char *what);

/* One (unbatched) gemm with alpha 1, no bias; callers set batching, alpha or bias after. */
static inline gemm_args cuda_gemm_args(bool ta, bool tb, int m, int n, int k, const void *a,
                                       int64_t lda, const void *b, int64_t ldb, float beta, void *c,
                                       int64_t ldc, cudaDataType_t ab, cudaDataType_t ct) {
    gemm_args g = {};
    g.ta = ta;
    g.tb = tb;
    g.m = m;
    g.n = n;
    g.k = k;
    g.alpha = 1.0f;
    g.beta = beta;
    g.a = a;
    g.lda = lda;
    g.b = b;
    g.ldb = ldb;
    g.c = c;
    g.ldc = ldc;
    g.batch = 1;
    g.ab_type = ab;
    g.c_type = ct;
    return g;
}

static inline cudaDataType_t cuda_type(enum ts_dtype dt) {
    return dt == TS_DTYPE_BF16 ? CUDA_R_16BF : CUDA_R_32F;
}

/* ---- op entry points: one file each ---- */

ts_status cuda_fill(struct ts_backend *be, const struct ts_tensor *t, float value);
ts_status cuda_fill_normal(struct ts_backend *be, const struct ts_tensor *t, float mean, float std,
                           uint64_t seed, uint64_t counter);
ts_status cuda_cast(struct ts_backend *be, const struct ts_tensor *dst,
                    const struct ts_tensor *src);
ts_status cuda_encoder_forward(struct ts_backend *be, const struct ts_tensor *out,
                               const struct ts_tensor *tokens, const struct ts_tensor *wte,
                               const struct ts_tensor *wpe);
ts_status cuda_encoder_backward(struct ts_backend *be, const struct ts_tensor *dwte,
                                const struct ts_tensor *dwpe, const struct ts_tensor *dout,
                                const struct ts_tensor *tokens);
ts_status cuda_layernorm_forward(struct ts_backend *be, const struct ts_tensor *out,
                                 const struct ts_tensor *mean, const struct ts_tensor *rstd,
                                 const struct ts_tensor *inp, const struct ts_tensor *weight,
                                 const struct ts_tensor *bias);
ts_status cuda_layernorm_backward(struct ts_backend *be, const struct ts_tensor *dinp,
                                  const struct ts_tensor *dweight, const struct ts_tensor *dbias,
                                  const struct ts_tensor *dout, const struct ts_tensor *inp,
                                  const struct ts_tensor *weight, const struct ts_tensor *mean,
                                  const struct ts_tensor *rstd);
ts_status cuda_matmul_forward(struct ts_backend *be, const struct ts_tensor *out,
                              const struct ts_tensor *inp, const struct ts_tensor *weight,
                              const struct ts_tensor *bias, enum ts_wlayout layout);
ts_status cuda_matmul_forward_gelu(struct ts_backend *be, const struct ts_tensor *out,
                                   const struct ts_tensor *pre, const struct ts_tensor *inp,
                                   const struct ts_tensor *weight, const struct ts_tensor *bias);
ts_status cuda_matmul_backward(struct ts_backend *be, const struct ts_tensor *dinp,
                               const struct ts_tensor *dweight, const struct ts_tensor *dbias,
                               const struct ts_tensor *dout, const struct ts_tensor *inp,
                               const struct ts_tensor *weight, enum ts_wlayout layout);
ts_status cuda_matmul_backward_dgelu(struct ts_backend *be, const struct ts_tensor *dpre,
                                     const struct ts_tensor *dweight, const struct ts_tensor *dbias,
                                     const struct ts_tensor *dout, const struct ts_tensor *inp,
                                     const struct ts_tensor *weight, const struct ts_tensor *pre);
ts_status cuda_attention_forward(struct ts_backend *be, const struct ts_tensor *out,
                                 const struct ts_tensor *att, const struct ts_tensor *qkv,
                                 int num_heads);
ts_status cuda_attention_backward(struct ts_backend *be, const struct ts_tensor *dqkv,
                                  const struct ts_tensor *scratch, const struct ts_tensor *dout,
                                  const struct ts_tensor *qkv, const struct ts_tensor *att,
                                  int num_heads);
ts_status cuda_flash_attention_forward(struct ts_backend *be, const struct ts_tensor *out,
                                       const struct ts_tensor *lse, const struct ts_tensor *qkv,
                                       int num_heads);
ts_status cuda_flash_attention_backward(struct ts_backend *be, const struct ts_tensor *dqkv,
                                        const struct ts_tensor *scratch,
                                        const struct ts_tensor *dout, const struct ts_tensor *qkv,
                                        const struct ts_tensor *out, const struct ts_tensor *lse,
                                        int num_heads);
ts_status cuda_attention_decode(struct ts_backend *be, const struct ts_tensor *out,
                                const struct ts_tensor *scratch, const struct ts_tensor *cache,
                                int pos, int num_heads);
ts_status cuda_gelu_forward(struct ts_backend *be, const struct ts_tensor *out,
                            const struct ts_tensor *inp);
ts_status cuda_gelu_backward(struct ts_backend *be, const struct ts_tensor *dinp,
                             const struct ts_tensor *inp, const struct ts_tensor *dout);
ts_status cuda_residual_forward(struct ts_backend *be, const struct ts_tensor *out,
                                const struct ts_tensor *a, const struct ts_tensor *b);
ts_status cuda_residual_layernorm_forward(struct ts_backend *be, const struct ts_tensor *res,
                                          const struct ts_tensor *out, const struct ts_tensor *mean,
                                          const struct ts_tensor *rstd, const struct ts_tensor *a,
                                          const struct ts_tensor *b, const struct ts_tensor *weight,
                                          const struct ts_tensor *bias);
ts_status cuda_softmax_xent(struct ts_backend *be, const struct ts_tensor *losses,
                            const struct ts_tensor *logits, const struct ts_tensor *targets,
                            int vocab, float dloss, bool with_grad);
ts_status cuda_adamw(struct ts_backend *be, const struct ts_tensor *param,
                     const struct ts_tensor *grad, const struct ts_tensor *m,
                     const struct ts_tensor *v, float lr, float beta1, float beta2, float eps,
                     float weight_decay, float grad_scale, int step);
ts_status cuda_adamw_master(struct ts_backend *be, const struct ts_tensor *param,
                            const struct ts_tensor *master, const struct ts_tensor *grad,
                            const struct ts_tensor *m, const struct ts_tensor *v, float lr,
                            float beta1, float beta2, float eps, float weight_decay,
                            float grad_scale, int step);
ts_status cuda_sum_squares(struct ts_backend *be, const struct ts_tensor *out,
                           const struct ts_tensor *x);

#endif
