/* cast.cu: f32 <-> bf16 conversion (round to nearest even), used for master weights and by the
 * GPU check to move bf16 tensors to and from the host's f32.
 *
 * Two kernels, the same bits: 8 elements per thread (two 16-byte f32 packs, one bf16 pack;
 * vec16.h) where both pointers are 16-byte aligned, else one element per thread, as always with
 * TS_CUDA_VECTOR=0. TS_CUDA_HOST_EMU compiles the kernels alone as host C++
 * (tests/kernels/test_cuda_emu.cpp). */
#include "kernels/cuda/cuda_geom.h"
#ifndef TS_CUDA_HOST_EMU
#include "kernels/cuda/cuda_impl.h"
#endif
#include "kernels/cuda/vec16.h"

template <typename D, typename S> __global__ void cast_kernel(D *dst, const S *src, int64_t n) {
    int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n)
        dst[i] = fromf<D>(tof(src[i]));
}

template <typename D, typename S> __global__ void cast_vec_kernel(D *dst, const S *src, int64_t n) {
    constexpr int K = vec_k<D, S>::value;
    const int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n / K) {
        float x[K];
        load_vec(x, src + i * K);
        store_vec(dst + i * K, x);
    }
    const int64_t t = n / K * K + i; /* the tail */
    if (t < n)
        dst[t] = fromf<D>(tof(src[t]));
}

#ifndef TS_CUDA_HOST_EMU /* the kernels alone are compiled on the host by a test */
template <typename D, typename S>
static void cast_launch(cuda_ctx *ctx, D *dst, const S *src, int64_t n) {
    const void *ptrs[2] = {dst, src};
    if (ts_vec_usable(ctx->vector_off, ptrs, 2))
        cast_vec_kernel<<<grid_for(ts_vec_threads(n, vec_k<D, S>::value), 256), 256, 0,
                          ctx->stream>>>(dst, src, n);
    else
        cast_kernel<<<grid_for(n, 256), 256, 0, ctx->stream>>>(dst, src, n);
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
    if (n == 0)
        return TS_OK;
    if (dst->dtype == TS_DTYPE_BF16)
        cast_launch(ctx, (__nv_bfloat16 *)dst->data, (const float *)src->data, n);
    else
        cast_launch(ctx, (float *)dst->data, (const __nv_bfloat16 *)src->data, n);
    CUDA_LAUNCHED("cast");
    return TS_OK;
}
#endif
