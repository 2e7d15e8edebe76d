/* norm.cu: sum of squares for the global gradient norm, deterministic.
 *
 * TS_NORM_BLOCKS blocks (a constant, not the device's SM count) each sum a fixed grid-stride set
 * of elements in double and reduce in a fixed tree; a second one-block kernel adds the partials
 * in a fixed tree. The order depends only on numel, so the same gradients give the same bits on
 * every run and every GPU. */
#include "kernels/cuda/cuda_impl.h"

#define NORM_THREADS 256

template <typename T>
__global__ void sum_squares_partial_kernel(double *partials, const T *x, int64_t n) {
    __shared__ double sh[NORM_THREADS / 32];
    double acc = 0.0;
    for (int64_t i = (int64_t)blockIdx.x * NORM_THREADS + threadIdx.x; i < n;
         i += (int64_t)TS_NORM_BLOCKS * NORM_THREADS) {
        double v = (double)tof(x[i]);
        acc += v * v;
    }
    acc = warp_sum_d(acc);
    if ((threadIdx.x & 31) == 0)
        sh[threadIdx.x >> 5] = acc;
    __syncthreads();
    if (threadIdx.x == 0) {
        double s = 0.0;
        for (int w = 0; w < NORM_THREADS / 32; w++)
            s += sh[w];
        partials[blockIdx.x] = s;
    }
}

__global__ void sum_squares_final_kernel(float *out, const double *partials) {
    __shared__ double sh[TS_NORM_BLOCKS / 32];
    double v = partials[threadIdx.x];
    v = warp_sum_d(v);
    if ((threadIdx.x & 31) == 0)
        sh[threadIdx.x >> 5] = v;
    __syncthreads();
    if (threadIdx.x == 0) {
        double s = 0.0;
        for (int w = 0; w < TS_NORM_BLOCKS / 32; w++)
            s += sh[w];
        out[0] = (float)s;
    }
}

ts_status cuda_sum_squares(struct ts_backend *be, const struct ts_tensor *out,
                           const struct ts_tensor *x) {
    cuda_ctx *ctx = cuda_ctx_of(be);
    int64_t n = ts_tensor_numel(x);
    if (x->dtype == TS_DTYPE_BF16)
        sum_squares_partial_kernel<<<TS_NORM_BLOCKS, NORM_THREADS, 0, ctx->stream>>>(
            ctx->partials, (const __nv_bfloat16 *)x->data, n);
    else
        sum_squares_partial_kernel<<<TS_NORM_BLOCKS, NORM_THREADS, 0, ctx->stream>>>(
            ctx->partials, (const float *)x->data, n);
    CUDA_LAUNCHED("sum_squares (partials)");
    sum_squares_final_kernel<<<1, TS_NORM_BLOCKS, 0, ctx->stream>>>((float *)out->data,
                                                                    ctx->partials);
    CUDA_LAUNCHED("sum_squares (final)");
    return TS_OK;
}
