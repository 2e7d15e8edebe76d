/* attention.cu: causal multi-head attention as batched matmuls plus softmax kernels.
 *
 * For each batch row b, the NH heads form one strided batch: head h's q, k, v are (T, HS)
 * matrices inside qkv (B, T, 3C) with leading dimension 3C, starting at column h*HS (+C for k,
 * +2C for v), so consecutive heads are HS elements apart and no permutation copy is needed.
 * Forward: att = scale * q k^T (all T x T scores, cuBLASLt), then a warp per row turns the
 * causal part into probabilities in float and writes 0 above the diagonal; out = att v.
 * Backward (the CPU backend's math): datt = dout v^T; dv = att^T dout; the softmax backward
 * turns datt into dpre = att (datt - rowsum(att datt)) scale in place (0 above the diagonal);
 * dq = dpre k; dk = dpre^T q. Every output element is written once by a matmul with beta 0,
 * so dqkv is overwritten as the op requires. The flash-style fused kernel is later work. */
#include <math.h>

#include "kernels/cuda/cuda_impl.h"

#define ATT_WARPS 8 /* rows per block */

/* In place over rows of (T) scores; row r is query t = r % T. */
template <typename T> __global__ void causal_softmax_kernel(T *att, int64_t rows, int64_t T_) {
    int64_t r = (int64_t)blockIdx.x * ATT_WARPS + (threadIdx.x >> 5);
    int lane = threadIdx.x & 31;
    if (r >= rows)
        return;
    int64_t t = r % T_;
    T *a = att + r * T_;
    float mx = -INFINITY;
    for (int64_t j = lane; j <= t; j += 32)
        mx = fmaxf(mx, tof(a[j]));
    mx = warp_max(mx);
    float s = 0.0f;
    for (int64_t j = lane; j <= t; j += 32)
        s += expf(tof(a[j]) - mx);
    float inv = 1.0f / warp_sum(s);
    for (int64_t j = lane; j < T_; j += 32)
        a[j] = fromf<T>(j <= t ? expf(tof(a[j]) - mx) * inv : 0.0f);
}

/* datt -> dpre in place: dpre[j] = att[j] (datt[j] - sum_i att[i] datt[i]) scale, j <= t. */
template <typename T>
__global__ void causal_softmax_backward_kernel(T *datt, const T *att, int64_t rows, int64_t T_,
                                               float scale) {
    int64_t r = (int64_t)blockIdx.x * ATT_WARPS + (threadIdx.x >> 5);
    int lane = threadIdx.x & 31;
    if (r >= rows)
        return;
    int64_t t = r % T_;
    const T *a = att + r * T_;
    T *d = datt + r * T_;
    float dot = 0.0f;
    for (int64_t j = lane; j <= t; j += 32)
        dot += tof(a[j]) * tof(d[j]);
    dot = warp_sum(dot);
    for (int64_t j = lane; j < T_; j += 32)
        d[j] = fromf<T>(j <= t ? tof(a[j]) * (tof(d[j]) - dot) * scale : 0.0f);
}

/* A per-b, heads-batched matmul: element strides between heads are given per operand. */
static gemm_args head_gemm(bool ta, bool tb, int m, int n, int k, float alpha, const void *a,
                           int64_t lda, int64_t sa, const void *b, int64_t ldb, int64_t sb, void *c,
                           int64_t ldc, int64_t sc, int heads, cudaDataType_t t) {
    gemm_args g = cuda_gemm_args(ta, tb, m, n, k, a, lda, b, ldb, 0.0f, c, ldc, t, t);
    g.alpha = alpha;
    g.stride_a = sa;
    g.stride_b = sb;
    g.stride_c = sc;
    g.batch = heads;
    return g;
}

struct att_dims {
    int64_t B, T, C, NH, HS;
    float scale;
    size_t es;
};

static ts_status att_dims_of(const char *op, const struct ts_tensor *qkv, int num_heads,
                             att_dims *d) {
    d->B = qkv->shape[0];
    d->T = qkv->shape[1];
    d->C = qkv->shape[2] / 3;
    d->NH = num_heads;
    d->HS = d->C / num_heads;
    d->scale = 1.0f / sqrtf((float)d->HS);
    d->es = ts_dtype_size(qkv->dtype);
    if (d->T > INT32_MAX || 3 * d->C > INT32_MAX || d->NH > 65535)
        return ts_error(TS_ERR_UNSUPPORTED, "%s: T, C or NH too large", op);
    return TS_OK;
}

/* Byte pointer to element e of p. */
static inline char *at(const void *p, int64_t e, size_t es) { return (char *)p + e * (int64_t)es; }

template <typename T>
static ts_status softmax_launch(cuda_ctx *ctx, void *att, int64_t rows, int64_t T_) {
    causal_softmax_kernel<T>
        <<<grid_for(rows, ATT_WARPS), ATT_WARPS * 32, 0, ctx->stream>>>((T *)att, rows, T_);
    CUDA_LAUNCHED("attention_forward (softmax)");
    return TS_OK;
}

template <typename T>
static ts_status softmax_backward_launch(cuda_ctx *ctx, void *datt, const void *att, int64_t rows,
                                         int64_t T_, float scale) {
    causal_softmax_backward_kernel<T>
        <<<grid_for(rows, ATT_WARPS), ATT_WARPS * 32, 0, ctx->stream>>>((T *)datt, (const T *)att,
                                                                        rows, T_, scale);
    CUDA_LAUNCHED("attention_backward (softmax)");
    return TS_OK;
}

ts_status cuda_attention_forward(struct ts_backend *be, const struct ts_tensor *out,
                                 const struct ts_tensor *att, const struct ts_tensor *qkv,
                                 int num_heads) {
    cuda_ctx *ctx = cuda_ctx_of(be);
    att_dims d;
    TS_CHECK(att_dims_of("attention_forward", qkv, num_heads, &d));
    const cudaDataType_t t = cuda_type(qkv->dtype);
    const int T_ = (int)d.T, HS = (int)d.HS, NH = (int)d.NH;
    const int64_t C3 = 3 * d.C, TT = d.T * d.T;
    for (int64_t b = 0; b < d.B; b++) {
        const int64_t base = b * d.T * C3; /* q of head 0, row 0 */
        void *ab = at(att->data, b * d.NH * TT, d.es);
        /* att (T,T) = scale * q (T,HS) @ k^T */
        gemm_args g =
            head_gemm(false, true, T_, T_, HS, d.scale, at(qkv->data, base, d.es), C3, d.HS,
                      at(qkv->data, base + d.C, d.es), C3, d.HS, ab, d.T, TT, NH, t);
        TS_CHECK(cuda_gemm(ctx, &g));
    }
    const int64_t rows = d.B * d.NH * d.T;
    if (qkv->dtype == TS_DTYPE_BF16)
        TS_CHECK(softmax_launch<__nv_bfloat16>(ctx, att->data, rows, d.T));
    else
        TS_CHECK(softmax_launch<float>(ctx, att->data, rows, d.T));
    for (int64_t b = 0; b < d.B; b++) {
        const int64_t base = b * d.T * C3;
        /* out_h (T,HS) = att (T,T) @ v (T,HS); out rows have leading dim C */
        gemm_args g = head_gemm(false, false, T_, HS, T_, 1.0f, at(att->data, b * d.NH * TT, d.es),
                                d.T, TT, at(qkv->data, base + 2 * d.C, d.es), C3, d.HS,
                                at(out->data, b * d.T * d.C, d.es), d.C, d.HS, NH, t);
        TS_CHECK(cuda_gemm(ctx, &g));
    }
    return TS_OK;
}

ts_status cuda_attention_backward(struct ts_backend *be, const struct ts_tensor *dqkv,
                                  const struct ts_tensor *scratch, const struct ts_tensor *dout,
                                  const struct ts_tensor *qkv, const struct ts_tensor *att,
                                  int num_heads) {
    cuda_ctx *ctx = cuda_ctx_of(be);
    att_dims d;
    TS_CHECK(att_dims_of("attention_backward", qkv, num_heads, &d));
    const cudaDataType_t t = cuda_type(qkv->dtype);
    const int T_ = (int)d.T, HS = (int)d.HS, NH = (int)d.NH;
    const int64_t C3 = 3 * d.C, TT = d.T * d.T;
    for (int64_t b = 0; b < d.B; b++) {
        const int64_t base = b * d.T * C3;
        const void *v = at(qkv->data, base + 2 * d.C, d.es);
        const void *dob = at(dout->data, b * d.T * d.C, d.es);
        const void *ab = at(att->data, b * d.NH * TT, d.es);
        void *sb = at(scratch->data, b * d.NH * TT, d.es);
        /* datt (T,T) = dout_h (T,HS) @ v^T */
        gemm_args g = head_gemm(false, true, T_, T_, HS, 1.0f, dob, d.C, d.HS, v, C3, d.HS, sb, d.T,
                                TT, NH, t);
        TS_CHECK(cuda_gemm(ctx, &g));
        /* dv (T,HS) = att^T (T,T) @ dout_h (T,HS) */
        g = head_gemm(true, false, T_, HS, T_, 1.0f, ab, d.T, TT, dob, d.C, d.HS,
                      at(dqkv->data, base + 2 * d.C, d.es), C3, d.HS, NH, t);
        TS_CHECK(cuda_gemm(ctx, &g));
    }
    const int64_t rows = d.B * d.NH * d.T;
    if (qkv->dtype == TS_DTYPE_BF16)
        TS_CHECK(softmax_backward_launch<__nv_bfloat16>(ctx, scratch->data, att->data, rows, d.T,
                                                        d.scale));
    else
        TS_CHECK(softmax_backward_launch<float>(ctx, scratch->data, att->data, rows, d.T, d.scale));
    for (int64_t b = 0; b < d.B; b++) {
        const int64_t base = b * d.T * C3;
        const void *sb = at(scratch->data, b * d.NH * TT, d.es);
        /* dq (T,HS) = dpre (T,T) @ k (T,HS) */
        gemm_args g =
            head_gemm(false, false, T_, HS, T_, 1.0f, sb, d.T, TT, at(qkv->data, base + d.C, d.es),
                      C3, d.HS, at(dqkv->data, base, d.es), C3, d.HS, NH, t);
        TS_CHECK(cuda_gemm(ctx, &g));
        /* dk (T,HS) = dpre^T (T,T) @ q (T,HS) */
        g = head_gemm(true, false, T_, HS, T_, 1.0f, sb, d.T, TT, at(qkv->data, base, d.es), C3,
                      d.HS, at(dqkv->data, base + d.C, d.es), C3, d.HS, NH, t);
        TS_CHECK(cuda_gemm(ctx, &g));
    }
    return TS_OK;
}
