/* residual.cu: out = a + b, the residual connection (one rounding, in float). */
#include "kernels/cuda/cuda_impl.h"

template <typename T> __global__ void residual_kernel(T *out, const T *a, const T *b, int64_t n) {
    int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n)
        out[i] = fromf<T>(tof(a[i]) + tof(b[i]));
}

ts_status cuda_residual_forward(struct ts_backend *be, const struct ts_tensor *out,
                                const struct ts_tensor *a, const struct ts_tensor *b) {
    cuda_ctx *ctx = cuda_ctx_of(be);
    int64_t n = ts_tensor_numel(a);
    if (a->dtype == TS_DTYPE_BF16)
        residual_kernel<<<grid_for(n, 256), 256, 0, ctx->stream>>>(
            (__nv_bfloat16 *)out->data, (const __nv_bfloat16 *)a->data,
            (const __nv_bfloat16 *)b->data, n);
    else
        residual_kernel<<<grid_for(n, 256), 256, 0, ctx->stream>>>(
            (float *)out->data, (const float *)a->data, (const float *)b->data, n);
    CUDA_LAUNCHED("residual_forward");
    return TS_OK;
}
