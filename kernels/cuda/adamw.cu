/* adamw.cu: AdamW with optional fp32 master weights.
 *
 * The update is the CPU backend's (cpu_optim.c) term for term, bias corrections computed on the
 * host with powf as there. With master weights the update runs on master (f32) and the
 * parameter receives master rounded to its dtype (bf16): the parameters the model computes
 * with are always the rounding of the weights the optimizer keeps.
 *
 * Two kernels, the same bits: 16-byte packs (vec16.h: 4 parameters per thread for f32, 8 for
 * bf16, their f32 gradient, moments and master weights in whole packs) where every pointer is
 * 16-byte aligned, else one parameter per thread (a ZeRO slice at an odd offset; always with
 * TS_CUDA_VECTOR=0). TS_CUDA_HOST_EMU compiles the kernels alone as host C++
 * (tests/kernels/test_cuda_emu.cpp). */
#include <math.h>

#include "kernels/cuda/cuda_geom.h"
#ifndef TS_CUDA_HOST_EMU
#include "kernels/cuda/cuda_impl.h"
#endif
#include "kernels/cuda/vec16.h"

struct adamw_args {
    float lr, beta1, beta2, eps, wd, grad_scale, bc1, bc2;
};

/* One parameter: p (the master or the parameter as float) and its moments, updated in place. */
__device__ __forceinline__ void adamw_one(float &p, float g, float &m, float &v,
                                          const adamw_args &a) {
    g *= a.grad_scale;
    m = a.beta1 * m + (1.0f - a.beta1) * g;
    v = a.beta2 * v + (1.0f - a.beta2) * g * g;
    float mh = m / a.bc1, vh = v / a.bc2;
    p -= a.lr * (mh / (sqrtf(vh) + a.eps) + a.wd * p);
}

template <typename T>
__device__ __forceinline__ void adamw_scalar(T *param, float *master, const float *grad, float *m,
                                             float *v, int64_t i, const adamw_args &a) {
    float p = master ? master[i] : tof(param[i]);
    float mi = m[i], vi = v[i];
    adamw_one(p, grad[i], mi, vi, a);
    m[i] = mi;
    v[i] = vi;
    if (master)
        master[i] = p;
    param[i] = fromf<T>(p);
}

template <typename T>
__global__ void adamw_kernel(T *param, float *master, const float *grad, float *m, float *v,
                             int64_t n, adamw_args a) {
    int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n)
        adamw_scalar(param, master, grad, m, v, i, a);
}

template <typename T>
__global__ void adamw_vec_kernel(T *param, float *master, const float *grad, float *m, float *v,
                                 int64_t n, adamw_args a) {
    constexpr int K = pack16<T>::n;
    const int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n / K) {
        const int64_t o = i * K;
        float p[K], g[K], mm[K], vv[K];
        if (master)
            load_vec(p, master + o);
        else
            load_vec(p, param + o);
        load_vec(g, grad + o);
        load_vec(mm, m + o);
        load_vec(vv, v + o);
#pragma unroll
        for (int q = 0; q < K; q++)
            adamw_one(p[q], g[q], mm[q], vv[q], a);
        store_vec(m + o, mm);
        store_vec(v + o, vv);
        if (master)
            store_vec(master + o, p);
        store_vec(param + o, p);
    }
    const int64_t t = n / K * K + i; /* the tail */
    if (t < n)
        adamw_scalar(param, master, grad, m, v, t, a);
}

#ifndef TS_CUDA_HOST_EMU /* the kernels alone are compiled on the host by a test */
template <typename T>
static void adamw_launch(cuda_ctx *ctx, T *param, float *master, const float *grad, float *m,
                         float *v, int64_t n, const adamw_args &a) {
    const void *ptrs[5] = {param, master, grad, m, v};
    if (ts_vec_usable(ctx->vector_off, ptrs, 5))
        adamw_vec_kernel<<<grid_for(ts_vec_threads(n, pack16<T>::n), 256), 256, 0, ctx->stream>>>(
            param, master, grad, m, v, n, a);
    else
        adamw_kernel<<<grid_for(n, 256), 256, 0, ctx->stream>>>(param, master, grad, m, v, n, a);
}

ts_status cuda_adamw_master(struct ts_backend *be, const struct ts_tensor *param,
                            const struct ts_tensor *master, const struct ts_tensor *grad,
                            const struct ts_tensor *m, const struct ts_tensor *v, float lr,
                            float beta1, float beta2, float eps, float weight_decay,
                            float grad_scale, int step) {
    cuda_ctx *ctx = cuda_ctx_of(be);
    int64_t n = ts_tensor_numel(param);
    if (n == 0)
        return TS_OK;
    adamw_args a = {lr,
                    beta1,
                    beta2,
                    eps,
                    weight_decay,
                    grad_scale,
                    1.0f - powf(beta1, (float)step),
                    1.0f - powf(beta2, (float)step)};
    float *pm = master ? (float *)master->data : nullptr;
    if (param->dtype == TS_DTYPE_BF16)
        adamw_launch(ctx, (__nv_bfloat16 *)param->data, pm, (const float *)grad->data,
                     (float *)m->data, (float *)v->data, n, a);
    else
        adamw_launch(ctx, (float *)param->data, pm, (const float *)grad->data, (float *)m->data,
                     (float *)v->data, n, a);
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
#endif
