/* encoder.cu: token + position embeddings, forward and a deterministic backward.
 *
 * Backward without float atomics: dwpe[t] sums dout[b,t] over b in order (one thread per
 * (t, c)); dwte by positions sorted by token id (dwte_sort.cu), or with TS_CUDA_DWTE=scan by the
 * previous kernel below: dwte row v is owned by one block, which scans the tokens in order,
 * compacts the positions holding v into shared memory (ballot + prefix counts keep them in
 * order) and adds those rows of dout, in increasing (b,t) order, the CPU backend's order, so
 * fp32 results match it bit for bit (B T Vp reads: about a millisecond at GPT-2 size, B 8). Token
 * ids outside [0, Vp) are data the validation layer cannot see: forward writes NaN for them (a
 * check fails loudly), backward ignores them; the model checks ids on the host before upload. */
#include "kernels/cuda/cuda_impl.h"

#define ENC_THREADS 256

template <typename T>
__global__ void encoder_forward_kernel(T *out, const int32_t *tok, const T *wte, const T *wpe,
                                       int64_t BT, int64_t T_, int64_t C, int64_t Vp) {
    int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= BT * C)
        return;
    int64_t bt = i / C, c = i % C;
    int32_t id = tok[bt];
    if (id < 0 || id >= Vp) {
        out[i] = fromf<T>(__int_as_float(0x7fc00000));
        return;
    }
    out[i] = fromf<T>(tof(wte[(int64_t)id * C + c]) + tof(wpe[(bt % T_) * C + c]));
}

/* dwpe (maxT, C) += ; one thread per (t, c) of the first T rows. */
template <typename T>
__global__ void encoder_backward_wpe_kernel(float *dwpe, const T *dout, int64_t B, int64_t T_,
                                            int64_t C) {
    int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= T_ * C)
        return;
    int64_t t = i / C, c = i % C;
    float acc = dwpe[i];
    for (int64_t b = 0; b < B; b++)
        acc += tof(dout[(b * T_ + t) * C + c]);
    dwpe[i] = acc;
}

/* dwte (Vp, C) += ; block v owns row v. */
template <typename T>
__global__ void encoder_backward_wte_kernel(float *dwte, const T *dout, const int32_t *tok,
                                            int64_t BT, int64_t C) {
    __shared__ int list[ENC_THREADS];
    __shared__ int warp_count[ENC_THREADS / 32];
    const int v = blockIdx.x;
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    float *row = dwte + (int64_t)v * C;
    for (int64_t base = 0; base < BT; base += ENC_THREADS) {
        int64_t i = base + threadIdx.x;
        bool match = i < BT && tok[i] == v;
        unsigned mask = __ballot_sync(0xffffffffu, match);
        if (lane == 0)
            warp_count[warp] = __popc(mask);
        __syncthreads();
        int count = 0, before = 0;
        for (int w = 0; w < ENC_THREADS / 32; w++) {
            if (w < warp)
                before += warp_count[w];
            count += warp_count[w];
        }
        if (match)
            list[before + __popc(mask & ((1u << lane) - 1u))] = (int)threadIdx.x;
        __syncthreads();
        if (count > 0) {
            for (int64_t c = threadIdx.x; c < C; c += ENC_THREADS) {
                float acc = row[c];
                for (int j = 0; j < count; j++)
                    acc += tof(dout[(base + list[j]) * C + c]);
                row[c] = acc;
            }
        }
        __syncthreads(); /* list and warp_count are rewritten by the next chunk */
    }
}

template <typename T>
static ts_status encoder_forward_t(cuda_ctx *ctx, const struct ts_tensor *out,
                                   const struct ts_tensor *tokens, const struct ts_tensor *wte,
                                   const struct ts_tensor *wpe) {
    int64_t B = tokens->shape[0], T_ = tokens->shape[1], C = wte->shape[1], Vp = wte->shape[0];
    int64_t n = B * T_ * C;
    encoder_forward_kernel<T><<<grid_for(n, 256), 256, 0, ctx->stream>>>(
        (T *)out->data, (const int32_t *)tokens->data, (const T *)wte->data, (const T *)wpe->data,
        B * T_, T_, C, Vp);
    CUDA_LAUNCHED("encoder_forward");
    return TS_OK;
}

template <typename T>
static ts_status encoder_backward_t(cuda_ctx *ctx, const struct ts_tensor *dwte,
                                    const struct ts_tensor *dwpe, const struct ts_tensor *dout,
                                    const struct ts_tensor *tokens) {
    int64_t B = tokens->shape[0], T_ = tokens->shape[1], C = dwte->shape[1], Vp = dwte->shape[0];
    if (B * T_ > INT32_MAX || Vp > INT32_MAX)
        return ts_error(TS_ERR_UNSUPPORTED, "encoder_backward: B*T = %lld or Vp = %lld too large",
                        (long long)(B * T_), (long long)Vp);
    encoder_backward_wpe_kernel<T><<<grid_for(T_ * C, 256), 256, 0, ctx->stream>>>(
        (float *)dwpe->data, (const T *)dout->data, B, T_, C);
    CUDA_LAUNCHED("encoder_backward (wpe)");
    bool done = false;
    if (!ctx->dwte_legacy)
        TS_CHECK(cuda_dwte_sorted(ctx, dout->dtype, (float *)dwte->data, dout->data,
                                  (const int32_t *)tokens->data, B * T_, C, Vp, &done));
    if (done)
        return TS_OK;
    encoder_backward_wte_kernel<T><<<(unsigned)Vp, ENC_THREADS, 0, ctx->stream>>>(
        (float *)dwte->data, (const T *)dout->data, (const int32_t *)tokens->data, B * T_, C);
    CUDA_LAUNCHED("encoder_backward (wte)");
    return TS_OK;
}

ts_status cuda_encoder_forward(struct ts_backend *be, const struct ts_tensor *out,
                               const struct ts_tensor *tokens, const struct ts_tensor *wte,
                               const struct ts_tensor *wpe) {
    if (wte->dtype == TS_DTYPE_BF16)
        return encoder_forward_t<__nv_bfloat16>(cuda_ctx_of(be), out, tokens, wte, wpe);
    return encoder_forward_t<float>(cuda_ctx_of(be), out, tokens, wte, wpe);
}

ts_status cuda_encoder_backward(struct ts_backend *be, const struct ts_tensor *dwte,
                                const struct ts_tensor *dwpe, const struct ts_tensor *dout,
                                const struct ts_tensor *tokens) {
    if (dout->dtype == TS_DTYPE_BF16)
        return encoder_backward_t<__nv_bfloat16>(cuda_ctx_of(be), dwte, dwpe, dout, tokens);
    return encoder_backward_t<float>(cuda_ctx_of(be), dwte, dwpe, dout, tokens);
}
