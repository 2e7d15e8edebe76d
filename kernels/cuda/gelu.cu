/* gelu.cu: GELU with the tanh approximation (GPT-2's), forward and backward, in float.
 * The formulas are the CPU backend's (cpu_ops.c), term for term. */
#include "kernels/cuda/cuda_impl.h"

#define GELU_SCALE 0.7978845608028654f /* sqrt(2/pi) */

template <typename T> __global__ void gelu_forward_kernel(T *out, const T *inp, int64_t n) {
    int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n)
        return;
    float x = tof(inp[i]);
    float cube = 0.044715f * x * x * x;
    out[i] = fromf<T>(0.5f * x * (1.0f + tanhf(GELU_SCALE * (x + cube))));
}

template <typename T>
__global__ void gelu_backward_kernel(T *dinp, const T *inp, const T *dout, int64_t n) {
    int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n)
        return;
    float x = tof(inp[i]);
    float cube = 0.044715f * x * x * x;
    float th = tanhf(GELU_SCALE * (x + cube));
    float sech2 = 1.0f - th * th;
    float local =
        0.5f * (1.0f + th) + x * 0.5f * sech2 * GELU_SCALE * (1.0f + 3.0f * 0.044715f * x * x);
    dinp[i] = fromf<T>(local * tof(dout[i]));
}

ts_status cuda_gelu_forward(struct ts_backend *be, const struct ts_tensor *out,
                            const struct ts_tensor *inp) {
    cuda_ctx *ctx = cuda_ctx_of(be);
    int64_t n = ts_tensor_numel(inp);
    if (inp->dtype == TS_DTYPE_BF16)
        gelu_forward_kernel<<<grid_for(n, 256), 256, 0, ctx->stream>>>(
            (__nv_bfloat16 *)out->data, (const __nv_bfloat16 *)inp->data, n);
    else
        gelu_forward_kernel<<<grid_for(n, 256), 256, 0, ctx->stream>>>((float *)out->data,
                                                                       (const float *)inp->data, n);
    CUDA_LAUNCHED("gelu_forward");
    return TS_OK;
}

ts_status cuda_gelu_backward(struct ts_backend *be, const struct ts_tensor *dinp,
                             const struct ts_tensor *inp, const struct ts_tensor *dout) {
    cuda_ctx *ctx = cuda_ctx_of(be);
    int64_t n = ts_tensor_numel(inp);
    if (inp->dtype == TS_DTYPE_BF16)
        gelu_backward_kernel<<<grid_for(n, 256), 256, 0, ctx->stream>>>(
            (__nv_bfloat16 *)dinp->data, (const __nv_bfloat16 *)inp->data,
            (const __nv_bfloat16 *)dout->data, n);
    else
        gelu_backward_kernel<<<grid_for(n, 256), 256, 0, ctx->stream>>>(
            (float *)dinp->data, (const float *)inp->data, (const float *)dout->data, n);
    CUDA_LAUNCHED("gelu_backward");
    return TS_OK;
}
