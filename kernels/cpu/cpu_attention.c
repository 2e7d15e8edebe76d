/* cpu_attention.c: causal multi-head self-attention, forward and backward, in fp32.
 *
 * Work is split by (batch, head): each (b,h) pair owns its q/k/v columns of qkv and dqkv and
 * its (T,T) slice of att and scratch, so threads never write the same memory, the backward needs
 * no atomics, and every sum runs in a fixed order. The causal mask makes every (b,h) the same
 * amount of work, so a static schedule balances. */
#include <math.h>
#include <omp.h>
#include <string.h>

#include "kernels/cpu/cpu_impl.h"
#include "kernels/cpu/cpu_math.h"

/* One query row of one head: arow[0..t] = softmax(q . k[t2] * scale) over t2 <= t, and
 * orow = sum_t2 arow[t2] v[t2]. base points at this head's columns of position 0 (q at +0, k at
 * +C, v at +2C, rows C3 apart). Forward and decode share it, so they agree to the bit. */
static void attend_row(const float *base, int64_t t, int64_t C3, int64_t C, int64_t HS, float scale,
                       float *arow, float *orow) {
    const float *q = base + t * C3;
    float mx = -INFINITY;
    for (int64_t t2 = 0; t2 <= t; t2++) {
        const float *k = base + t2 * C3 + C;
        float s = 0.0f;
        for (int64_t i = 0; i < HS; i++)
            s += q[i] * k[i];
        s *= scale;
        arow[t2] = s;
        mx = s > mx ? s : mx;
    }
    for (int64_t t2 = 0; t2 <= t; t2++)
        arow[t2] = ts_cpu_expf(arow[t2] - mx);
    float sum = 0.0f;
    for (int64_t t2 = 0; t2 <= t; t2++)
        sum += arow[t2];
    float inv = 1.0f / sum;
    for (int64_t t2 = 0; t2 <= t; t2++)
        arow[t2] *= inv;
    for (int64_t i = 0; i < HS; i++)
        orow[i] = 0.0f;
    for (int64_t t2 = 0; t2 <= t; t2++) {
        const float *v = base + t2 * C3 + 2 * C;
        float w = arow[t2];
        for (int64_t i = 0; i < HS; i++)
            orow[i] += w * v[i];
    }
}

ts_status ts_cpu_attention_forward(struct ts_backend *be, const struct ts_tensor *out,
                                   const struct ts_tensor *att, const struct ts_tensor *qkv,
                                   int num_heads) {
    int nt = cpu_ctx_of(be)->threads;
    int64_t B = qkv->shape[0], T = qkv->shape[1], C3 = qkv->shape[2], C = C3 / 3;
    int64_t NH = num_heads, HS = C / NH;
    float scale = 1.0f / sqrtf((float)HS);
    const float *in = f32(qkv);
    float *o = f32(out), *a = f32(att);
#pragma omp parallel for collapse(2) num_threads(nt) schedule(static) if (B * NH * T * T > 4096)
    for (int64_t b = 0; b < B; b++) {
        for (int64_t h = 0; h < NH; h++) {
            const float *base = in + b * T * C3 + h * HS;
            for (int64_t t = 0; t < T; t++) {
                float *arow = a + ((b * NH + h) * T + t) * T;
                attend_row(base, t, C3, C, HS, scale, arow, o + (b * T + t) * C + h * HS);
                for (int64_t t2 = t + 1; t2 < T; t2++)
                    arow[t2] = 0.0f;
            }
        }
    }
    return TS_OK;
}

ts_status ts_cpu_attention_decode(struct ts_backend *be, const struct ts_tensor *out,
                                  const struct ts_tensor *scratch, const struct ts_tensor *cache,
                                  int pos, int num_heads) {
    int nt = cpu_ctx_of(be)->threads;
    int64_t B = cache->shape[0], S = cache->shape[1], C3 = cache->shape[2], C = C3 / 3;
    int64_t NH = num_heads, HS = C / NH;
    float scale = 1.0f / sqrtf((float)HS);
    const float *in = f32(cache);
    float *o = f32(out), *sc = f32(scratch);
#pragma omp parallel for collapse(2) num_threads(nt) schedule(static) if (B * NH * pos > 4096)
    for (int64_t b = 0; b < B; b++)
        for (int64_t h = 0; h < NH; h++)
            attend_row(in + b * S * C3 + h * HS, pos, C3, C, HS, scale, sc + (b * NH + h) * S,
                       o + b * C + h * HS);
    return TS_OK;
}

/* Per (b,h) and query row t: datt[t2] = dout[t].v[t2] and dv[t2] += att[t,t2] dout[t]; then the
 * softmax backward in its O(T) form, dpre[t2] = att[t,t2] (datt[t2] - sum_j att[t,j] datt[j]);
 * then dq[t] += scale dpre[t2] k[t2] and dk[t2] += scale dpre[t2] q[t]. scratch holds datt. */
ts_status ts_cpu_attention_backward(struct ts_backend *be, const struct ts_tensor *dqkv,
                                    const struct ts_tensor *scratch, const struct ts_tensor *dout,
                                    const struct ts_tensor *qkv, const struct ts_tensor *att,
                                    int num_heads) {
    int nt = cpu_ctx_of(be)->threads;
    int64_t B = qkv->shape[0], T = qkv->shape[1], C3 = qkv->shape[2], C = C3 / 3;
    int64_t NH = num_heads, HS = C / NH;
    float scale = 1.0f / sqrtf((float)HS);
    const float *in = f32(qkv), *a = f32(att), *d = f32(dout);
    float *din = f32(dqkv), *sc = f32(scratch);
#pragma omp parallel for collapse(2) num_threads(nt) schedule(static) if (B * NH * T * T > 4096)
    for (int64_t b = 0; b < B; b++) {
        for (int64_t h = 0; h < NH; h++) {
            const float *base = in + b * T * C3 + h * HS;
            float *dbase = din + b * T * C3 + h * HS;
            for (int64_t t = 0; t < T; t++)
                for (int64_t s = 0; s < 3; s++)
                    memset(dbase + t * C3 + s * C, 0, (size_t)HS * sizeof(float));
            for (int64_t t = 0; t < T; t++) {
                const float *arow = a + ((b * NH + h) * T + t) * T;
                float *drow = sc + ((b * NH + h) * T + t) * T;
                const float *dorow = d + (b * T + t) * C + h * HS;
                float dot = 0.0f;
                for (int64_t t2 = 0; t2 <= t; t2++) {
                    const float *v = base + t2 * C3 + 2 * C;
                    float *dv = dbase + t2 * C3 + 2 * C;
                    float w = arow[t2], s = 0.0f;
                    for (int64_t i = 0; i < HS; i++) {
                        s += dorow[i] * v[i];
                        dv[i] += w * dorow[i];
                    }
                    drow[t2] = s;
                    dot += w * s;
                }
                const float *q = base + t * C3;
                float *dq = dbase + t * C3;
                for (int64_t t2 = 0; t2 <= t; t2++) {
                    float dpre = arow[t2] * (drow[t2] - dot) * scale;
                    const float *k = base + t2 * C3 + C;
                    float *dk = dbase + t2 * C3 + C;
                    for (int64_t i = 0; i < HS; i++) {
                        dq[i] += dpre * k[i];
                        dk[i] += dpre * q[i];
                    }
                }
            }
        }
    }
    return TS_OK;
}
