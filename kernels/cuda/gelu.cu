/* gelu.cu: GELU with the tanh approximation (GPT-2's), forward and backward, in float.
 * The formulas are the CPU backend's (cpu_ops.c), term for term.
 *
 * Two kernels per direction, the same bits: 16-byte packs (vec16.h: 4 f32 or 8 bf16 per thread,
 * the tail one per thread) where every pointer is 16-byte aligned, else one element per thread,
 * as always with TS_CUDA_VECTOR=0. TS_CUDA_HOST_EMU compiles the kernels alone as host C++
 * (tests/kernels/test_cuda_emu.cpp). */
#include <math.h>

#include "kernels/cuda/cuda_geom.h"
#ifndef TS_CUDA_HOST_EMU
#include "kernels/cuda/cuda_impl.h"
#endif
#include "kernels/cuda/vec16.h"

#define GELU_SCALE 0.7978845608028654f /* sqrt(2/pi) */

__device__ __forceinline__ float gelu_f(float x) {
    float cube = 0.044715f * x * x * x;
    return 0.5f * x * (1.0f + tanhf(GELU_SCALE * (x + cube)));
}

/* d gelu(x) / dx times dout */
__device__ __forceinline__ float gelu_grad_f(float x, float dout) {
    float cube = 0.044715f * x * x * x;
    float th = tanhf(GELU_SCALE * (x + cube));
    float sech2 = 1.0f - th * th;
    float local =
        0.5f * (1.0f + th) + x * 0.5f * sech2 * GELU_SCALE * (1.0f + 3.0f * 0.044715f * x * x);
    return local * dout;
}

template <typename T> __global__ void gelu_forward_kernel(T *out, const T *inp, int64_t n) {
    int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n)
        out[i] = fromf<T>(gelu_f(tof(inp[i])));
}

template <typename T>
__global__ void gelu_backward_kernel(T *dinp, const T *inp, const T *dout, int64_t n) {
    int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n)
        dinp[i] = fromf<T>(gelu_grad_f(tof(inp[i]), tof(dout[i])));
}

template <typename T> __global__ void gelu_forward_vec_kernel(T *out, const T *inp, int64_t n) {
    constexpr int K = pack16<T>::n;
    const int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n / K) {
        float x[K];
        load_vec(x, inp + i * K);
#pragma unroll
        for (int q = 0; q < K; q++)
            x[q] = gelu_f(x[q]);
        store_vec(out + i * K, x);
    }
    const int64_t t = n / K * K + i; /* the tail */
    if (t < n)
        out[t] = fromf<T>(gelu_f(tof(inp[t])));
}

template <typename T>
__global__ void gelu_backward_vec_kernel(T *dinp, const T *inp, const T *dout, int64_t n) {
    constexpr int K = pack16<T>::n;
    const int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n / K) {
        float x[K], d[K];
        load_vec(x, inp + i * K);
        load_vec(d, dout + i * K);
#pragma unroll
        for (int q = 0; q < K; q++)
            x[q] = gelu_grad_f(x[q], d[q]);
        store_vec(dinp + i * K, x);
    }
    const int64_t t = n / K * K + i; /* the tail */
    if (t < n)
        dinp[t] = fromf<T>(gelu_grad_f(tof(inp[t]), tof(dout[t])));
}

#ifndef TS_CUDA_HOST_EMU /* the kernels alone are compiled on the host by a test */
template <typename T> static void gelu_fwd_launch(cuda_ctx *ctx, T *out, const T *inp, int64_t n) {
    const void *ptrs[2] = {out, inp};
    if (ts_vec_usable(ctx->vector_off, ptrs, 2))
        gelu_forward_vec_kernel<<<grid_for(ts_vec_threads(n, pack16<T>::n), 256), 256, 0,
                                  ctx->stream>>>(out, inp, n);
    else
        gelu_forward_kernel<<<grid_for(n, 256), 256, 0, ctx->stream>>>(out, inp, n);
}

template <typename T>
static void gelu_bwd_launch(cuda_ctx *ctx, T *dinp, const T *inp, const T *dout, int64_t n) {
    const void *ptrs[3] = {dinp, inp, dout};
    if (ts_vec_usable(ctx->vector_off, ptrs, 3))
        gelu_backward_vec_kernel<<<grid_for(ts_vec_threads(n, pack16<T>::n), 256), 256, 0,
                                   ctx->stream>>>(dinp, inp, dout, n);
    else
        gelu_backward_kernel<<<grid_for(n, 256), 256, 0, ctx->stream>>>(dinp, inp, dout, n);
}

ts_status cuda_gelu_forward(struct ts_backend *be, const struct ts_tensor *out,
                            const struct ts_tensor *inp) {
    cuda_ctx *ctx = cuda_ctx_of(be);
    int64_t n = ts_tensor_numel(inp);
    if (n == 0)
        return TS_OK;
    if (inp->dtype == TS_DTYPE_BF16)
        gelu_fwd_launch(ctx, (__nv_bfloat16 *)out->data, (const __nv_bfloat16 *)inp->data, n);
    else
        gelu_fwd_launch(ctx, (float *)out->data, (const float *)inp->data, n);
    CUDA_LAUNCHED("gelu_forward");
    return TS_OK;
}

ts_status cuda_gelu_backward(struct ts_backend *be, const struct ts_tensor *dinp,
                             const struct ts_tensor *inp, const struct ts_tensor *dout) {
    cuda_ctx *ctx = cuda_ctx_of(be);
    int64_t n = ts_tensor_numel(inp);
    if (n == 0)
        return TS_OK;
    if (inp->dtype == TS_DTYPE_BF16)
        gelu_bwd_launch(ctx, (__nv_bfloat16 *)dinp->data, (const __nv_bfloat16 *)inp->data,
                        (const __nv_bfloat16 *)dout->data, n);
    else
        gelu_bwd_launch(ctx, (float *)dinp->data, (const float *)inp->data,
                        (const float *)dout->data, n);
    CUDA_LAUNCHED("gelu_backward");
    return TS_OK;
}
#endif
