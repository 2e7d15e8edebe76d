/* residual.cu: out = a + b, the residual connection (one rounding, in float).
 *
 * Two kernels, the same bits: 16-byte packs (vec16.h: 4 f32 or 8 bf16 per thread, the tail one
 * per thread) where every pointer is 16-byte aligned, else one element per thread, as always with
 * TS_CUDA_VECTOR=0. TS_CUDA_HOST_EMU compiles the kernels alone as host C++
 * (tests/kernels/test_cuda_emu.cpp). */
#include "kernels/cuda/cuda_geom.h"
#ifndef TS_CUDA_HOST_EMU
#include "kernels/cuda/cuda_impl.h"
#endif
#include "kernels/cuda/vec16.h"

template <typename T> __global__ void residual_kernel(T *out, const T *a, const T *b, int64_t n) {
    int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n)
        out[i] = fromf<T>(tof(a[i]) + tof(b[i]));
}

template <typename T>
__global__ void residual_vec_kernel(T *out, const T *a, const T *b, int64_t n) {
    constexpr int K = pack16<T>::n;
    const int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n / K) {
        float x[K], y[K];
        load_vec(x, a + i * K);
        load_vec(y, b + i * K);
#pragma unroll
        for (int q = 0; q < K; q++)
            x[q] += y[q];
        store_vec(out + i * K, x);
    }
    const int64_t t = n / K * K + i; /* the tail */
    if (t < n)
        out[t] = fromf<T>(tof(a[t]) + tof(b[t]));
}

#ifndef TS_CUDA_HOST_EMU /* the kernels alone are compiled on the host by a test */
template <typename T>
static void residual_launch(cuda_ctx *ctx, T *out, const T *a, const T *b, int64_t n) {
    const void *ptrs[3] = {out, a, b};
    if (ts_vec_usable(ctx->vector_off, ptrs, 3))
        residual_vec_kernel<<<grid_for(ts_vec_threads(n, pack16<T>::n), 256), 256, 0,
                              ctx->stream>>>(out, a, b, n);
    else
        residual_kernel<<<grid_for(n, 256), 256, 0, ctx->stream>>>(out, a, b, n);
}

ts_status cuda_residual_forward(struct ts_backend *be, const struct ts_tensor *out,
                                const struct ts_tensor *a, const struct ts_tensor *b) {
    cuda_ctx *ctx = cuda_ctx_of(be);
    int64_t n = ts_tensor_numel(a);
    if (n == 0)
        return TS_OK;
    if (a->dtype == TS_DTYPE_BF16)
        residual_launch(ctx, (__nv_bfloat16 *)out->data, (const __nv_bfloat16 *)a->data,
                        (const __nv_bfloat16 *)b->data, n);
    else
        residual_launch(ctx, (float *)out->data, (const float *)a->data, (const float *)b->data, n);
    CUDA_LAUNCHED("residual_forward");
    return TS_OK;
}
#endif
