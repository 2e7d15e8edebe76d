/* classifier.cu: the fused classifier: softmax, cross-entropy loss and dlogits in one kernel,
 * one block per row of logits (N, Vp).
 *
 * Pass 1 reads the V real columns once, keeping a running (max, sum of exp) per thread; the
 * block combines the pairs in a fixed tree. The loss is log(sum) + max - logit[target]. Pass 2
 * (with_grad) overwrites the row with dloss * (p - [v == target]) for v < V and 0 for the padded
 * columns, recomputing each p from the logit: probabilities are never stored. A target outside
 * [0, V) yields a NaN loss (the validation layer cannot see data; the model checks targets on
 * the host). */
#include "kernels/cuda/cuda_impl.h"

#define XENT_THREADS 512

/* (m, s) pairs: s is a sum of exp(x - m). */
__device__ __forceinline__ void combine(float &m, float &s, float m2, float s2) {
    if (m2 == -INFINITY)
        return;
    if (m == -INFINITY) {
        m = m2;
        s = s2;
        return;
    }
    float mx = fmaxf(m, m2);
    s = s * expf(m - mx) + s2 * expf(m2 - mx);
    m = mx;
}

template <typename T>
__global__ void softmax_xent_kernel(float *losses, T *logits, const int32_t *targets, int V,
                                    int64_t Vp, float dloss, bool with_grad) {
    __shared__ float sm[XENT_THREADS / 32], ss[XENT_THREADS / 32];
    __shared__ float target_logit;
    const int64_t row = blockIdx.x;
    T *lg = logits + row * Vp;
    const int tgt = targets[row];
    const bool valid = tgt >= 0 && tgt < V;
    if (threadIdx.x == 0)
        target_logit = valid ? tof(lg[tgt]) : __int_as_float(0x7fc00000);

    float m = -INFINITY, s = 0.0f;
    for (int v = threadIdx.x; v < V; v += XENT_THREADS) {
        float x = tof(lg[v]);
        if (x > m) {
            s = (m == -INFINITY ? 0.0f : s * expf(m - x)) + 1.0f;
            m = x;
        } else {
            s += expf(x - m);
        }
    }
    for (int o = 16; o > 0; o >>= 1) {
        float m2 = __shfl_xor_sync(0xffffffffu, m, o);
        float s2 = __shfl_xor_sync(0xffffffffu, s, o);
        combine(m, s, m2, s2);
    }
    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    if (lane == 0) {
        sm[warp] = m;
        ss[warp] = s;
    }
    __syncthreads(); /* also publishes target_logit before pass 2 overwrites the row */
    m = -INFINITY;
    s = 0.0f;
    for (int w = 0; w < XENT_THREADS / 32; w++) /* every thread, the same order */
        combine(m, s, sm[w], ss[w]);
    if (threadIdx.x == 0)
        losses[row] = logf(s) + m - target_logit;
    if (!with_grad)
        return;
    const float inv = 1.0f / s;
    for (int64_t v = threadIdx.x; v < Vp; v += XENT_THREADS) {
        float g = 0.0f;
        if (v < V) {
            float p = expf(tof(lg[v]) - m) * inv;
            g = dloss * (p - (v == tgt ? 1.0f : 0.0f));
        }
        lg[v] = fromf<T>(valid ? g : __int_as_float(0x7fc00000));
    }
}

ts_status cuda_softmax_xent(struct ts_backend *be, const struct ts_tensor *losses,
                            const struct ts_tensor *logits, const struct ts_tensor *targets,
                            int vocab, float dloss, bool with_grad) {
    cuda_ctx *ctx = cuda_ctx_of(be);
    int64_t Vp = logits->shape[logits->ndim - 1], N = ts_tensor_numel(logits) / Vp;
    if (N > INT32_MAX)
        return ts_error(TS_ERR_UNSUPPORTED, "softmax_xent: N = %lld rows is too many",
                        (long long)N);
    if (logits->dtype == TS_DTYPE_BF16)
        softmax_xent_kernel<<<(unsigned)N, XENT_THREADS, 0, ctx->stream>>>(
            (float *)losses->data, (__nv_bfloat16 *)logits->data, (const int32_t *)targets->data,
            vocab, Vp, dloss, with_grad);
    else
        softmax_xent_kernel<<<(unsigned)N, XENT_THREADS, 0, ctx->stream>>>(
            (float *)losses->data, (float *)logits->data, (const int32_t *)targets->data, vocab, Vp,
            dloss, with_grad);
    CUDA_LAUNCHED("softmax_xent");
    return TS_OK;
}
