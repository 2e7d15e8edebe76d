/* cast.cu: f32 <-> bf16 conversion (round to nearest even), used for master weights and by the
 * GPU check to move bf16 tensors to and from the host's f32. */
#include "kernels/cuda/cuda_impl.h"

template <typename D, typename S> __global__ void cast_kernel(D *dst, const S *src, int64_t n) {
    int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n)
        dst[i] = fromf<D>(tof(src[i]));
}

ts_status cuda_cast(struct ts_backend *be, const struct ts_tensor *dst,
                    const struct ts_tensor *src) {
    cuda_ctx *ctx = cuda_ctx_of(be);
    int64_t n = ts_tensor_numel(src);
    if (dst->dtype == src->dtype) {
        CUDA_TRY(cudaMemcpyAsync(dst->data, src->data, ts_tensor_nbytes(src),
                                 cudaMemcpyDeviceToDevice, ctx->stream),
                 "cast (copy)");
        return TS_OK;
    }
    if (dst->dtype == TS_DTYPE_BF16)
        cast_kernel<<<grid_for(n, 256), 256, 0, ctx->stream>>>((__nv_bfloat16 *)dst->data,
                                                               (const float *)src->data, n);
    else
        cast_kernel<<<grid_for(n, 256), 256, 0, ctx->stream>>>((float *)dst->data,
                                                               (const __nv_bfloat16 *)src->data, n);
    CUDA_LAUNCHED("cast");
    return TS_OK;
}
