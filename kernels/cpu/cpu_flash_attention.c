/* cpu_flash_attention.c: the flash attention pair on the CPU, as the oracle of the device
 * kernels (backend.h: out and lse forward, dqkv backward from out and lse).
 *
 * No op allocates, so nothing here keeps a (T) row: each row's scores are recomputed from q and
 * k in every pass that needs them, with the arithmetic of cpu_attention.c in the same order
 * (max, then the sum of expf(s - max) in key order, p = expf(s - max) * (1 / sum)). out and dqkv
 * are therefore what attention_forward and attention_backward compute; the model never runs
 * these on the CPU (flash_attention_usable is NULL here), so the CPU's training is unchanged.
 * The backward ignores lse and out: it rebuilds each row's normaliser from q and k, which is what
 * makes it an oracle of the device's recomputation rather than a copy of it. */
#include <math.h>
#include <omp.h>
#include <string.h>

#include "kernels/cpu/cpu_impl.h"
#include "kernels/cpu/cpu_math.h"

/* scale q[t].k[t2], summed in cpu_attention.c's order */
static float score(const float *base, int64_t t, int64_t t2, int64_t C3, int64_t C, int64_t HS,
                   float scale) {
    const float *q = base + t * C3, *k = base + t2 * C3 + C;
    float s = 0.0f;
    for (int64_t i = 0; i < HS; i++)
        s += q[i] * k[i];
    return s * scale;
}

/* The row's max and 1 / sum_t2 expf(s - max) over t2 <= t; returns log sum exp. */
static float row_norm(const float *base, int64_t t, int64_t C3, int64_t C, int64_t HS, float scale,
                      float *mx_out, float *inv_out) {
    float mx = -INFINITY;
    for (int64_t t2 = 0; t2 <= t; t2++) {
        float s = score(base, t, t2, C3, C, HS, scale);
        mx = s > mx ? s : mx;
    }
    float sum = 0.0f;
    for (int64_t t2 = 0; t2 <= t; t2++)
        sum += ts_cpu_expf(score(base, t, t2, C3, C, HS, scale) - mx);
    *mx_out = mx;
    *inv_out = 1.0f / sum;
    return mx + logf(sum);
}

ts_status ts_cpu_flash_attention_forward(struct ts_backend *be, const struct ts_tensor *out,
                                         const struct ts_tensor *lse, const struct ts_tensor *qkv,
                                         int num_heads) {
    int nt = cpu_ctx_of(be)->threads;
    int64_t B = qkv->shape[0], T = qkv->shape[1], C3 = qkv->shape[2], C = C3 / 3;
    int64_t NH = num_heads, HS = C / NH;
    float scale = 1.0f / sqrtf((float)HS);
    const float *in = f32(qkv);
    float *o = f32(out), *l = f32(lse);
#pragma omp parallel for collapse(2) num_threads(nt) schedule(static) if (B * NH * T * T > 4096)
    for (int64_t b = 0; b < B; b++) {
        for (int64_t h = 0; h < NH; h++) {
            const float *base = in + b * T * C3 + h * HS;
            for (int64_t t = 0; t < T; t++) {
                float mx, inv;
                l[(b * NH + h) * T + t] = row_norm(base, t, C3, C, HS, scale, &mx, &inv);
                float *orow = o + (b * T + t) * C + h * HS;
                for (int64_t i = 0; i < HS; i++)
                    orow[i] = 0.0f;
                for (int64_t t2 = 0; t2 <= t; t2++) {
                    const float *v = base + t2 * C3 + 2 * C;
                    float w = ts_cpu_expf(score(base, t, t2, C3, C, HS, scale) - mx) * inv;
                    for (int64_t i = 0; i < HS; i++)
                        orow[i] += w * v[i];
                }
            }
        }
    }
    return TS_OK;
}

/* attention_backward's two passes per row, with p and datt recomputed instead of read. */
ts_status ts_cpu_flash_attention_backward(struct ts_backend *be, const struct ts_tensor *dqkv,
                                          const struct ts_tensor *scratch,
                                          const struct ts_tensor *dout, const struct ts_tensor *qkv,
                                          const struct ts_tensor *out, const struct ts_tensor *lse,
                                          int num_heads) {
    (void)scratch;
    (void)out;
    (void)lse;
    int nt = cpu_ctx_of(be)->threads;
    int64_t B = qkv->shape[0], T = qkv->shape[1], C3 = qkv->shape[2], C = C3 / 3;
    int64_t NH = num_heads, HS = C / NH;
    float scale = 1.0f / sqrtf((float)HS);
    const float *in = f32(qkv), *d = f32(dout);
    float *din = f32(dqkv);
#pragma omp parallel for collapse(2) num_threads(nt) schedule(static) if (B * NH * T * T > 4096)
    for (int64_t b = 0; b < B; b++) {
        for (int64_t h = 0; h < NH; h++) {
            const float *base = in + b * T * C3 + h * HS;
            float *dbase = din + b * T * C3 + h * HS;
            for (int64_t t = 0; t < T; t++)
                for (int64_t s = 0; s < 3; s++)
                    memset(dbase + t * C3 + s * C, 0, (size_t)HS * sizeof(float));
            for (int64_t t = 0; t < T; t++) {
                const float *dorow = d + (b * T + t) * C + h * HS;
                float mx, inv;
                (void)row_norm(base, t, C3, C, HS, scale, &mx, &inv);
                float dot = 0.0f;
                for (int64_t t2 = 0; t2 <= t; t2++) {
                    const float *v = base + t2 * C3 + 2 * C;
                    float *dv = dbase + t2 * C3 + 2 * C;
                    float w = ts_cpu_expf(score(base, t, t2, C3, C, HS, scale) - mx) * inv;
                    float s = 0.0f;
                    for (int64_t i = 0; i < HS; i++) {
                        s += dorow[i] * v[i];
                        dv[i] += w * dorow[i];
                    }
                    dot += w * s;
                }
                const float *q = base + t * C3;
                float *dq = dbase + t * C3;
                for (int64_t t2 = 0; t2 <= t; t2++) {
                    const float *v = base + t2 * C3 + 2 * C;
                    float w = ts_cpu_expf(score(base, t, t2, C3, C, HS, scale) - mx) * inv;
                    float s = 0.0f;
                    for (int64_t i = 0; i < HS; i++)
                        s += dorow[i] * v[i];
                    float dpre = w * (s - dot) * scale;
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
