/* adamw.cu: AdamW, one thread per parameter, with optional fp32 master weights.
 *
 * The update is the CPU backend's (cpu_optim.c) term for term, bias corrections computed on the
 * host with powf as there. With master weights the update runs on master (f32) and the
 * parameter receives master rounded to its dtype (bf16): the parameters the model computes
 * with are always the rounding of the weights the optimizer keeps. */
#include "kernels/cuda/cuda_impl.h"

template <typename T>
__global__ void adamw_kernel(T *param, float *master, const float *grad, float *m, float *v,
                             int64_t n, float lr, float beta1, float beta2, float eps, float wd,
                             float grad_scale, float bc1, float bc2) {
    int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n)
        return;
    float p = master ? master[i] : tof(param[i]);
    float g = grad[i] * grad_scale;
    float mi = beta1 * m[i] + (1.0f - beta1) * g;
    float vi = beta2 * v[i] + (1.0f - beta2) * g * g;
    float mh = mi / bc1, vh = vi / bc2;
    m[i] = mi;
    v[i] = vi;
    p -= lr * (mh / (sqrtf(vh) + eps) + wd * p);
    if (master)
        master[i] = p;
    param[i] = fromf<T>(p);
}

ts_status cuda_adamw_master(struct ts_backend *be, const struct ts_tensor *param,
                            const struct ts_tensor *master, const struct ts_tensor *grad,
                            const struct ts_tensor *m, const struct ts_tensor *v, float lr,
                            float beta1, float beta2, float eps, float weight_decay,
                            float grad_scale, int step) {
    cuda_ctx *ctx = cuda_ctx_of(be);
    int64_t n = ts_tensor_numel(param);
    float bc1 = 1.0f - powf(beta1, (float)step), bc2 = 1.0f - powf(beta2, (float)step);
    float *pm = master ? (float *)master->data : nullptr;
    if (param->dtype == TS_DTYPE_BF16)
        adamw_kernel<<<grid_for(n, 256), 256, 0, ctx->stream>>>(
            (__nv_bfloat16 *)param->data, pm, (const float *)grad->data, (float *)m->data,
            (float *)v->data, n, lr, beta1, beta2, eps, weight_decay, grad_scale, bc1, bc2);
    else
        adamw_kernel<<<grid_for(n, 256), 256, 0, ctx->stream>>>(
            (float *)param->data, pm, (const float *)grad->data, (float *)m->data, (float *)v->data,
            n, lr, beta1, beta2, eps, weight_decay, grad_scale, bc1, bc2);
    CUDA_LAUNCHED("adamw");
    return TS_OK;
}

ts_status cuda_adamw(struct ts_backend *be, const struct ts_tensor *param,
                     const struct ts_tensor *grad, const struct ts_tensor *m,
                     const struct ts_tensor *v, float lr, float beta1, float beta2, float eps,
                     float weight_decay, float grad_scale, int step) {
    return cuda_adamw_master(be, param, nullptr, grad, m, v, lr, beta1, beta2, eps, weight_decay,
                             grad_scale, step);
}
