/* layernorm.cu: layer normalisation over the last dim C, forward and backward, and the forward
 * fused with the residual add before it.
 *
 * One warp per row for the row-wise parts (statistics in float, mean first then the variance
 * of the centred values, as the CPU backend does). dweight and dbias are column sums over all
 * rows, by colsum.cu's many-block kernels (fixed partials summed in a fixed order), so the sums
 * repeat bit for bit without atomics. The fused kernel writes res = a + b (rounded once, as
 * residual.cu does) and normalises the rounded row through the same code as the plain forward,
 * so the two ops and the fused one give the same bits; TS_CUDA_FUSED_LN=0 runs the two.
 * TS_CUDA_HOST_EMU compiles the kernels alone as host C++ (tests/kernels/test_cuda_vec.cpp). */
#ifndef TS_CUDA_HOST_EMU
#include "kernels/cuda/cuda_impl.h"
#endif

#define LN_WARPS 8 /* rows per block */

/* The rest of a row's forward once each lane has summed its elements of x into s (lane, lane +
 * 32, ...): the mean, the variance of the centred values, the normalised row, the statistics. */
template <typename T>
__device__ __forceinline__ void ln_row_finish(float s, T *o, float *mean, float *rstd, const T *x,
                                              const T *weight, const T *bias, int64_t row, int C,
                                              int lane) {
    float m = warp_sum(s) / (float)C;
    float v = 0.0f;
    for (int c = lane; c < C; c += 32) {
        float d = tof(x[c]) - m;
        v += d * d;
    }
    v = warp_sum(v) / (float)C;
    float r = 1.0f / sqrtf(v + 1e-5f);
    for (int c = lane; c < C; c += 32)
        o[c] = fromf<T>((tof(x[c]) - m) * r * tof(weight[c]) + tof(bias[c]));
    if (lane == 0) {
        mean[row] = m;
        rstd[row] = r;
    }
}

template <typename T>
__global__ void layernorm_forward_kernel(T *out, float *mean, float *rstd, const T *inp,
                                         const T *weight, const T *bias, int64_t N, int C) {
    int64_t row = (int64_t)blockIdx.x * LN_WARPS + (threadIdx.x >> 5);
    int lane = threadIdx.x & 31;
    if (row >= N)
        return;
    const T *x = inp + row * C;
    float s = 0.0f;
    for (int c = lane; c < C; c += 32)
        s += tof(x[c]);
    ln_row_finish(s, out + row * C, mean, rstd, x, weight, bias, row, C, lane);
}

/* res = a + b, then the forward above on res as stored; one warp per row. The lane that sums an
 * element is the one that wrote it, so the second and third passes read back its own stores. */
template <typename T>
__global__ void residual_layernorm_forward_kernel(T *res, T *out, float *mean, float *rstd,
                                                  const T *a, const T *b, const T *weight,
                                                  const T *bias, int64_t N, int C) {
    int64_t row = (int64_t)blockIdx.x * LN_WARPS + (threadIdx.x >> 5);
    int lane = threadIdx.x & 31;
    if (row >= N)
        return;
    const T *xa = a + row * C, *xb = b + row * C;
    T *x = res + row * C;
    float s = 0.0f;
    for (int c = lane; c < C; c += 32) {
        const T v = fromf<T>(tof(xa[c]) + tof(xb[c]));
        x[c] = v;
        s += tof(v);
    }
    ln_row_finish(s, out + row * C, mean, rstd, x, weight, bias, row, C, lane);
}

/* dinp += , one warp per row. */
template <typename T>
__global__ void layernorm_backward_dinp_kernel(T *dinp, const T *dout, const T *inp,
                                               const T *weight, const float *mean,
                                               const float *rstd, int64_t N, int C) {
    int64_t row = (int64_t)blockIdx.x * LN_WARPS + (threadIdx.x >> 5);
    int lane = threadIdx.x & 31;
    if (row >= N)
        return;
    const T *x = inp + row * C, *d = dout + row * C;
    float m = mean[row], r = rstd[row];
    float dm = 0.0f, dnm = 0.0f;
    for (int c = lane; c < C; c += 32) {
        float norm = (tof(x[c]) - m) * r;
        float dnorm = tof(weight[c]) * tof(d[c]);
        dm += dnorm;
        dnm += dnorm * norm;
    }
    dm = warp_sum(dm) / (float)C;
    dnm = warp_sum(dnm) / (float)C;
    T *dx = dinp + row * C;
    for (int c = lane; c < C; c += 32) {
        float norm = (tof(x[c]) - m) * r;
        float dnorm = tof(weight[c]) * tof(d[c]);
        dx[c] = fromf<T>(tof(dx[c]) + (dnorm - dm - norm * dnm) * r);
    }
}

#ifndef TS_CUDA_HOST_EMU /* the kernels alone are compiled on the host by a test */
template <typename T>
static ts_status layernorm_forward_t(cuda_ctx *ctx, const struct ts_tensor *out,
                                     const struct ts_tensor *mean, const struct ts_tensor *rstd,
                                     const struct ts_tensor *inp, const struct ts_tensor *weight,
                                     const struct ts_tensor *bias) {
    int64_t C = inp->shape[inp->ndim - 1], N = ts_tensor_numel(inp) / C;
    layernorm_forward_kernel<T><<<grid_for(N, LN_WARPS), LN_WARPS * 32, 0, ctx->stream>>>(
        (T *)out->data, (float *)mean->data, (float *)rstd->data, (const T *)inp->data,
        (const T *)weight->data, (const T *)bias->data, N, (int)C);
    CUDA_LAUNCHED("layernorm_forward");
    return TS_OK;
}

template <typename T>
static ts_status layernorm_backward_t(cuda_ctx *ctx, const struct ts_tensor *dinp,
                                      const struct ts_tensor *dweight,
                                      const struct ts_tensor *dbias, const struct ts_tensor *dout,
                                      const struct ts_tensor *inp, const struct ts_tensor *weight,
                                      const struct ts_tensor *mean, const struct ts_tensor *rstd) {
    int64_t C = inp->shape[inp->ndim - 1], N = ts_tensor_numel(inp) / C;
    layernorm_backward_dinp_kernel<T><<<grid_for(N, LN_WARPS), LN_WARPS * 32, 0, ctx->stream>>>(
        (T *)dinp->data, (const T *)dout->data, (const T *)inp->data, (const T *)weight->data,
        (const float *)mean->data, (const float *)rstd->data, N, (int)C);
    CUDA_LAUNCHED("layernorm_backward (dinp)");
    return cuda_colsum(ctx, inp->dtype, (float *)dbias->data, (float *)dweight->data, dout->data,
                       inp->data, (const float *)mean->data, (const float *)rstd->data, N, C,
                       "layernorm_backward (dweight, dbias)");
}

static ts_status need_int_c(const char *op, const struct ts_tensor *inp) {
    if (inp->shape[inp->ndim - 1] > INT32_MAX)
        return ts_error(TS_ERR_UNSUPPORTED, "%s: C = %lld is too large", op,
                        (long long)inp->shape[inp->ndim - 1]);
    return TS_OK;
}

ts_status cuda_layernorm_forward(struct ts_backend *be, const struct ts_tensor *out,
                                 const struct ts_tensor *mean, const struct ts_tensor *rstd,
                                 const struct ts_tensor *inp, const struct ts_tensor *weight,
                                 const struct ts_tensor *bias) {
    TS_CHECK(need_int_c("layernorm_forward", inp));
    if (inp->dtype == TS_DTYPE_BF16)
        return layernorm_forward_t<__nv_bfloat16>(cuda_ctx_of(be), out, mean, rstd, inp, weight,
                                                  bias);
    return layernorm_forward_t<float>(cuda_ctx_of(be), out, mean, rstd, inp, weight, bias);
}

ts_status cuda_layernorm_backward(struct ts_backend *be, const struct ts_tensor *dinp,
                                  const struct ts_tensor *dweight, const struct ts_tensor *dbias,
                                  const struct ts_tensor *dout, const struct ts_tensor *inp,
                                  const struct ts_tensor *weight, const struct ts_tensor *mean,
                                  const struct ts_tensor *rstd) {
    TS_CHECK(need_int_c("layernorm_backward", inp));
    if (inp->dtype == TS_DTYPE_BF16)
        return layernorm_backward_t<__nv_bfloat16>(cuda_ctx_of(be), dinp, dweight, dbias, dout, inp,
                                                   weight, mean, rstd);
    return layernorm_backward_t<float>(cuda_ctx_of(be), dinp, dweight, dbias, dout, inp, weight,
                                       mean, rstd);
}

ts_status cuda_residual_layernorm_forward(struct ts_backend *be, const struct ts_tensor *res,
                                          const struct ts_tensor *out, const struct ts_tensor *mean,
                                          const struct ts_tensor *rstd, const struct ts_tensor *a,
                                          const struct ts_tensor *b, const struct ts_tensor *weight,
                                          const struct ts_tensor *bias) {
    cuda_ctx *ctx = cuda_ctx_of(be);
    if (ctx->fused_ln_off) { /* TS_CUDA_FUSED_LN=0: the two kernels */
        TS_CHECK(cuda_residual_forward(be, res, a, b));
        return cuda_layernorm_forward(be, out, mean, rstd, res, weight, bias);
    }
    TS_CHECK(need_int_c("residual_layernorm_forward", a));
    const int64_t C = a->shape[a->ndim - 1], N = ts_tensor_numel(a) / C;
    if (a->dtype == TS_DTYPE_BF16) {
        typedef __nv_bfloat16 T;
        residual_layernorm_forward_kernel<T>
            <<<grid_for(N, LN_WARPS), LN_WARPS * 32, 0, ctx->stream>>>(
                (T *)res->data, (T *)out->data, (float *)mean->data, (float *)rstd->data,
                (const T *)a->data, (const T *)b->data, (const T *)weight->data,
                (const T *)bias->data, N, (int)C);
    } else {
        residual_layernorm_forward_kernel<float>
            <<<grid_for(N, LN_WARPS), LN_WARPS * 32, 0, ctx->stream>>>(
                (float *)res->data, (float *)out->data, (float *)mean->data, (float *)rstd->data,
                (const float *)a->data, (const float *)b->data, (const float *)weight->data,
                (const float *)bias->data, N, (int)C);
    }
    CUDA_LAUNCHED("residual_layernorm_forward");
    return TS_OK;
}
#endif
