/* fill.cu: constant and seeded-normal initialisation on the device.
 *
 * fill_normal draws element i from ts_rng_normal(seed, counter + i), the very function the CPU
 * backend calls (rng.h is host and device code), so a model initialised on the GPU starts from
 * the CPU's values (up to the last bit of the device's double log/cos, then rounding to T). */
#include "kernels/cuda/cuda_impl.h"
#include "kernels/rng.h"

template <typename T> __global__ void fill_kernel(T *p, int64_t n, float value) {
    int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n)
        p[i] = fromf<T>(value);
}

template <typename T>
__global__ void fill_normal_kernel(T *p, int64_t n, float mean, float std, uint64_t seed,
                                   uint64_t counter) {
    int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n)
        p[i] = fromf<T>(mean + std * ts_rng_normal(seed, counter + (uint64_t)i));
}

ts_status cuda_fill(struct ts_backend *be, const struct ts_tensor *t, float value) {
    cuda_ctx *ctx = cuda_ctx_of(be);
    int64_t n = ts_tensor_numel(t);
    if (t->dtype == TS_DTYPE_BF16)
        fill_kernel<<<grid_for(n, 256), 256, 0, ctx->stream>>>((__nv_bfloat16 *)t->data, n, value);
    else
        fill_kernel<<<grid_for(n, 256), 256, 0, ctx->stream>>>((float *)t->data, n, value);
    CUDA_LAUNCHED("fill");
    return TS_OK;
}

ts_status cuda_fill_normal(struct ts_backend *be, const struct ts_tensor *t, float mean, float std,
                           uint64_t seed, uint64_t counter) {
    cuda_ctx *ctx = cuda_ctx_of(be);
    int64_t n = ts_tensor_numel(t);
    if (t->dtype == TS_DTYPE_BF16)
        fill_normal_kernel<<<grid_for(n, 256), 256, 0, ctx->stream>>>((__nv_bfloat16 *)t->data, n,
                                                                      mean, std, seed, counter);
    else
        fill_normal_kernel<<<grid_for(n, 256), 256, 0, ctx->stream>>>((float *)t->data, n, mean,
                                                                      std, seed, counter);
    CUDA_LAUNCHED("fill_normal");
    return TS_OK;
}
