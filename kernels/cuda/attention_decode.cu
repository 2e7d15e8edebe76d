/* attention_decode.cu: one query position against a KV cache (incremental decoding).
 *
 * One block per (b, h): threads score the cached keys 0..pos against the query (row pos) into
 * the f32 scratch, the block takes the max and the sum of exponentials in a fixed order, then
 * threads over the head's HS channels sum probability-weighted values in position order. The
 * CPU twin is ts_cpu_attention_decode. */
#include <math.h>

#include "kernels/cuda/cuda_impl.h"

#define DEC_THREADS 128

/* Every thread gets the same value: warp butterflies, then warp 0's partials in order. */
static __device__ float block_reduce(float v, bool is_max, float *sh) {
    v = is_max ? warp_max(v) : warp_sum(v);
    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    if (lane == 0)
        sh[warp] = v;
    __syncthreads();
    if (threadIdx.x == 0) {
        float r = sh[0];
        for (int w = 1; w < DEC_THREADS / 32; w++)
            r = is_max ? fmaxf(r, sh[w]) : r + sh[w];
        sh[DEC_THREADS / 32] = r;
    }
    __syncthreads();
    float r = sh[DEC_THREADS / 32];
    __syncthreads(); /* sh is reused by the next reduction */
    return r;
}

template <typename T>
__global__ void attention_decode_kernel(T *out, float *scratch, const T *cache, int64_t S,
                                        int64_t C, int NH, int HS, int pos, float scale) {
    __shared__ float sh[DEC_THREADS / 32 + 1];
    const int64_t b = blockIdx.x / NH, h = blockIdx.x % NH, C3 = 3 * C;
    const T *base = cache + b * S * C3 + h * HS;
    const T *q = base + (int64_t)pos * C3;
    float *sc = scratch + (int64_t)blockIdx.x * S;
    float mx = -INFINITY;
    for (int s = threadIdx.x; s <= pos; s += DEC_THREADS) {
        const T *k = base + (int64_t)s * C3 + C;
        float d = 0.0f;
        for (int i = 0; i < HS; i++)
            d += tof(q[i]) * tof(k[i]);
        d *= scale;
        sc[s] = d;
        mx = fmaxf(mx, d);
    }
    mx = block_reduce(mx, true, sh);
    float sum = 0.0f;
    for (int s = threadIdx.x; s <= pos; s += DEC_THREADS)
        sum += expf(sc[s] - mx);
    const float inv = 1.0f / block_reduce(sum, false, sh); /* also orders sc's writes */
    T *o = out + b * C + h * HS;
    for (int i = threadIdx.x; i < HS; i += DEC_THREADS) {
        float acc = 0.0f;
        for (int s = 0; s <= pos; s++)
            acc += expf(sc[s] - mx) * inv * tof(base[(int64_t)s * C3 + 2 * C + i]);
        o[i] = fromf<T>(acc);
    }
}

ts_status cuda_attention_decode(struct ts_backend *be, const struct ts_tensor *out,
                                const struct ts_tensor *scratch, const struct ts_tensor *cache,
                                int pos, int num_heads) {
    cuda_ctx *ctx = cuda_ctx_of(be);
    const int64_t B = cache->shape[0], S = cache->shape[1], C = cache->shape[2] / 3;
    const int HS = (int)(C / num_heads);
    const float scale = 1.0f / sqrtf((float)HS);
    const unsigned blocks = (unsigned)(B * num_heads);
    if (cache->dtype == TS_DTYPE_BF16)
        attention_decode_kernel<<<blocks, DEC_THREADS, 0, ctx->stream>>>(
            (__nv_bfloat16 *)out->data, (float *)scratch->data, (const __nv_bfloat16 *)cache->data,
            S, C, num_heads, HS, pos, scale);
    else
        attention_decode_kernel<<<blocks, DEC_THREADS, 0, ctx->stream>>>(
            (float *)out->data, (float *)scratch->data, (const float *)cache->data, S, C, num_heads,
            HS, pos, scale);
    CUDA_LAUNCHED("attention_decode");
    return TS_OK;
}
