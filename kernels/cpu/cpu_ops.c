/* cpu_ops.c: the CPU backend's fp32 ops other than attention and the optimizer.
 *
 * Semantics follow llm.c's CPU reference (train_gpt2.c), which this backend replaces as the
 * oracle. Loops over rows run in parallel; reductions over rows (parameter gradients) are split
 * by column instead, so each output element is summed by one thread in row order and the result
 * is bit-identical whatever the thread count. No op allocates. */
#include <limits.h>
#include <math.h>
#include <omp.h>
#include <stdint.h>
#include <string.h>

#include "kernels/bf16.h"
#include "kernels/cpu/cpu_impl.h"
#include "kernels/cpu/cpu_math.h"
#include "kernels/rng.h"

/* Below this many elements a parallel region costs more than it saves. */
#define PAR_MIN 16384

static int64_t last_dim(const struct ts_tensor *t) { return t->shape[t->ndim - 1]; }

/* Columns [*c0, *c1) of C for thread tid of nt, in multiples of 16 floats (one cache line). */
static void col_range(int64_t C, int tid, int nt, int64_t *c0, int64_t *c1) {
    int64_t lines = (C + 15) / 16;
    int64_t per = (lines + nt - 1) / nt;
    *c0 = tid * per * 16;
    *c1 = (tid + 1) * per * 16;
    if (*c0 > C)
        *c0 = C;
    if (*c1 > C)
        *c1 = C;
}

/* ---- initialisation ---- */

ts_status ts_cpu_fill(struct ts_backend *be, const struct ts_tensor *t, float value) {
    int nt = cpu_ctx_of(be)->threads;
    float *p = f32(t);
    int64_t n = ts_tensor_numel(t);
#pragma omp parallel for num_threads(nt) schedule(static) if (n > PAR_MIN)
    for (int64_t i = 0; i < n; i++)
        p[i] = value;
    return TS_OK;
}

ts_status ts_cpu_fill_normal(struct ts_backend *be, const struct ts_tensor *t, float mean,
                             float std, uint64_t seed, uint64_t counter) {
    int nt = cpu_ctx_of(be)->threads;
    float *p = f32(t);
    int64_t n = ts_tensor_numel(t);
#pragma omp parallel for num_threads(nt) schedule(static) if (n > PAR_MIN / 16)
    for (int64_t i = 0; i < n; i++)
        p[i] = mean + std * ts_rng_normal(seed, counter + (uint64_t)i);
    return TS_OK;
}

/* ---- encoder ---- */

static ts_status check_tokens(const char *op, const int32_t *tok, int64_t n, int64_t vp) {
    for (int64_t i = 0; i < n; i++)
        if (tok[i] < 0 || tok[i] >= vp)
            return ts_error(TS_ERR_INVALID_ARG, "%s: tokens[%lld] = %d is outside [0, Vp = %lld)",
                            op, (long long)i, (int)tok[i], (long long)vp);
    return TS_OK;
}

ts_status ts_cpu_encoder_forward(struct ts_backend *be, const struct ts_tensor *out,
                                 const struct ts_tensor *tokens, const struct ts_tensor *wte,
                                 const struct ts_tensor *wpe) {
    int nt = cpu_ctx_of(be)->threads;
    int64_t B = tokens->shape[0], T = tokens->shape[1], C = wte->shape[1];
    const int32_t *tok = tokens->data;
    TS_CHECK(check_tokens("encoder_forward", tok, B * T, wte->shape[0]));
    float *o = f32(out);
    const float *e = f32(wte), *p = f32(wpe);
#pragma omp parallel for num_threads(nt) schedule(static) if (B * T * C > PAR_MIN)
    for (int64_t bt = 0; bt < B * T; bt++) {
        float *ob = o + bt * C;
        const float *eb = e + (int64_t)tok[bt] * C, *pb = p + (bt % T) * C;
        for (int64_t c = 0; c < C; c++)
            ob[c] = eb[c] + pb[c];
    }
    return TS_OK;
}

/* Tokens repeat, so rows of dwte receive several rows of dout: each thread owns a slice of
 * columns and walks (b,t) in order, which needs no atomics and fixes the summation order. */
ts_status ts_cpu_encoder_backward(struct ts_backend *be, const struct ts_tensor *dwte,
                                  const struct ts_tensor *dwpe, const struct ts_tensor *dout,
                                  const struct ts_tensor *tokens) {
    int nt = cpu_ctx_of(be)->threads;
    int64_t B = tokens->shape[0], T = tokens->shape[1], C = dwte->shape[1];
    const int32_t *tok = tokens->data;
    TS_CHECK(check_tokens("encoder_backward", tok, B * T, dwte->shape[0]));
    float *de = f32(dwte), *dp = f32(dwpe);
    const float *d = f32(dout);
#pragma omp parallel num_threads(nt) if (B * T * C > PAR_MIN)
    {
        int64_t c0, c1;
        col_range(C, omp_get_thread_num(), omp_get_num_threads(), &c0, &c1);
        for (int64_t bt = 0; bt < B * T; bt++) {
            const float *db = d + bt * C;
            float *deb = de + (int64_t)tok[bt] * C, *dpb = dp + (bt % T) * C;
            for (int64_t c = c0; c < c1; c++) {
                deb[c] += db[c];
                dpb[c] += db[c];
            }
        }
    }
    return TS_OK;
}

/* ---- layernorm ---- */

ts_status ts_cpu_layernorm_forward(struct ts_backend *be, const struct ts_tensor *out,
                                   const struct ts_tensor *mean, const struct ts_tensor *rstd,
                                   const struct ts_tensor *inp, const struct ts_tensor *weight,
                                   const struct ts_tensor *bias) {
    int nt = cpu_ctx_of(be)->threads;
    int64_t C = last_dim(inp), N = ts_tensor_numel(inp) / C;
    const float *x = f32(inp), *w = f32(weight), *bs = f32(bias);
    float *o = f32(out), *mu = f32(mean), *rs = f32(rstd);
#pragma omp parallel for num_threads(nt) schedule(static) if (N * C > PAR_MIN)
    for (int64_t n = 0; n < N; n++) {
        const float *xn = x + n * C;
        float m = 0.0f;
        for (int64_t c = 0; c < C; c++)
            m += xn[c];
        m /= (float)C;
        float var = 0.0f;
        for (int64_t c = 0; c < C; c++) {
            float dx = xn[c] - m;
            var += dx * dx;
        }
        var /= (float)C;
        float r = 1.0f / sqrtf(var + 1e-5f);
        float *on = o + n * C;
        for (int64_t c = 0; c < C; c++)
            on[c] = (xn[c] - m) * r * w[c] + bs[c];
        mu[n] = m;
        rs[n] = r;
    }
    return TS_OK;
}

ts_status ts_cpu_layernorm_backward(struct ts_backend *be, const struct ts_tensor *dinp,
                                    const struct ts_tensor *dweight, const struct ts_tensor *dbias,
                                    const struct ts_tensor *dout, const struct ts_tensor *inp,
                                    const struct ts_tensor *weight, const struct ts_tensor *mean,
                                    const struct ts_tensor *rstd) {
    int nt = cpu_ctx_of(be)->threads;
    int64_t C = last_dim(inp), N = ts_tensor_numel(inp) / C;
    const float *x = f32(inp), *w = f32(weight), *d = f32(dout), *mu = f32(mean), *rs = f32(rstd);
    float *dx = f32(dinp), *dw = f32(dweight), *db = f32(dbias);

    /* dinp, row by row */
#pragma omp parallel for num_threads(nt) schedule(static) if (N * C > PAR_MIN)
    for (int64_t n = 0; n < N; n++) {
        const float *xn = x + n * C, *dn = d + n * C;
        float m = mu[n], r = rs[n];
        float dnorm_mean = 0.0f, dnorm_norm_mean = 0.0f;
        for (int64_t c = 0; c < C; c++) {
            float norm = (xn[c] - m) * r;
            float dnorm = w[c] * dn[c];
            dnorm_mean += dnorm;
            dnorm_norm_mean += dnorm * norm;
        }
        dnorm_mean /= (float)C;
        dnorm_norm_mean /= (float)C;
        float *dxn = dx + n * C;
        for (int64_t c = 0; c < C; c++) {
            float norm = (xn[c] - m) * r;
            float dnorm = w[c] * dn[c];
            dxn[c] += (dnorm - dnorm_mean - norm * dnorm_norm_mean) * r;
        }
    }

    /* dweight, dbias: column slices, rows in order */
#pragma omp parallel num_threads(nt) if (N * C > PAR_MIN)
    {
        int64_t c0, c1;
        col_range(C, omp_get_thread_num(), omp_get_num_threads(), &c0, &c1);
        for (int64_t n = 0; n < N; n++) {
            const float *xn = x + n * C, *dn = d + n * C;
            float m = mu[n], r = rs[n];
            for (int64_t c = c0; c < c1; c++) {
                db[c] += dn[c];
                dw[c] += (xn[c] - m) * r * dn[c];
            }
        }
    }
    return TS_OK;
}

/* ---- matmul ---- */

static ts_status need_int(const char *op, int64_t v, const char *what) {
    if (v > INT_MAX)
        return ts_error(TS_ERR_UNSUPPORTED, "%s: %s = %lld exceeds the BLAS int range", op, what,
                        (long long)v);
    return TS_OK;
}

static ts_status matmul_dims(const char *op, const struct ts_tensor *inp,
                             const struct ts_tensor *weight, enum ts_wlayout layout, int *n,
                             int *ic, int *oc) {
    int64_t IC = last_dim(inp), N = ts_tensor_numel(inp) / IC;
    int64_t OC = layout == TS_W_IN_OUT ? weight->shape[1] : weight->shape[0];
    TS_CHECK(need_int(op, N, "N"));
    TS_CHECK(need_int(op, IC, "IC"));
    TS_CHECK(need_int(op, OC, "OC"));
    *n = (int)N;
    *ic = (int)IC;
    *oc = (int)OC;
    return TS_OK;
}

ts_status ts_cpu_matmul_forward(struct ts_backend *be, const struct ts_tensor *out,
                                const struct ts_tensor *inp, const struct ts_tensor *weight,
                                const struct ts_tensor *bias, enum ts_wlayout layout) {
    struct cpu_ctx *ctx = cpu_ctx_of(be);
    int N, IC, OC;
    TS_CHECK(matmul_dims("matmul_forward", inp, weight, layout, &N, &IC, &OC));
    float *o = f32(out);
    float beta = 0.0f;
    if (bias) { /* start from the bias and let the sgemm accumulate: one pass over out */
        const float *bs = f32(bias);
        int nt = ctx->threads;
#pragma omp parallel for num_threads(nt) schedule(static) if ((int64_t)N * OC > PAR_MIN)
        for (int n = 0; n < N; n++)
            memcpy(o + (int64_t)n * OC, bs, (size_t)OC * sizeof(float));
        beta = 1.0f;
    }
    if (layout == TS_W_IN_OUT) /* (N,IC) @ (IC,OC) */
        ctx->blas.sgemm(&ctx->blas, false, false, N, OC, IC, 1.0f, f32(inp), IC, f32(weight), OC,
                        beta, o, OC);
    else /* (N,IC) @ (OC,IC)^T */
        ctx->blas.sgemm(&ctx->blas, false, true, N, OC, IC, 1.0f, f32(inp), IC, f32(weight), IC,
                        beta, o, OC);
    return TS_OK;
}

ts_status ts_cpu_matmul_backward(struct ts_backend *be, const struct ts_tensor *dinp,
                                 const struct ts_tensor *dweight, const struct ts_tensor *dbias,
                                 const struct ts_tensor *dout, const struct ts_tensor *inp,
                                 const struct ts_tensor *weight, enum ts_wlayout layout) {
    struct cpu_ctx *ctx = cpu_ctx_of(be);
    const struct ts_blas *bl = &ctx->blas;
    int N, IC, OC;
    TS_CHECK(matmul_dims("matmul_backward", inp, weight, layout, &N, &IC, &OC));
    const float *d = f32(dout), *x = f32(inp), *w = f32(weight);
    float *dw = f32(dweight);
    if (layout == TS_W_IN_OUT) {
        if (dinp) /* (N,OC) @ (IC,OC)^T */
            bl->sgemm(bl, false, true, N, IC, OC, 1.0f, d, OC, w, OC, 0.0f, f32(dinp), IC);
        /* dW (IC,OC) += inp^T (IC,N) @ dout (N,OC) */
        bl->sgemm(bl, true, false, IC, OC, N, 1.0f, x, IC, d, OC, 1.0f, dw, OC);
    } else {
        if (dinp) /* (N,OC) @ (OC,IC) */
            bl->sgemm(bl, false, false, N, IC, OC, 1.0f, d, OC, w, IC, 0.0f, f32(dinp), IC);
        /* dW (OC,IC) += dout^T (OC,N) @ inp (N,IC) */
        bl->sgemm(bl, true, false, OC, IC, N, 1.0f, d, OC, x, IC, 1.0f, dw, IC);
    }
    if (dbias) {
        float *db = f32(dbias);
        int nt = ctx->threads;
#pragma omp parallel num_threads(nt) if ((int64_t)N * OC > PAR_MIN)
        {
            int64_t c0, c1;
            col_range(OC, omp_get_thread_num(), omp_get_num_threads(), &c0, &c1);
            for (int64_t n = 0; n < N; n++) {
                const float *dn = d + n * OC;
                for (int64_t c = c0; c < c1; c++)
                    db[c] += dn[c];
            }
        }
    }
    return TS_OK;
}

/* ---- pointwise ---- */

#define GELU_SCALE 0.7978845608028654f /* sqrt(2/pi) */

ts_status ts_cpu_gelu_forward(struct ts_backend *be, const struct ts_tensor *out,
                              const struct ts_tensor *inp) {
    int nt = cpu_ctx_of(be)->threads;
    int64_t n = ts_tensor_numel(inp);
    const float *x = f32(inp);
    float *o = f32(out);
#pragma omp parallel for num_threads(nt) schedule(static) if (n > PAR_MIN / 4)
    for (int64_t i = 0; i < n; i++) {
        float xi = x[i];
        float cube = 0.044715f * xi * xi * xi;
        o[i] = 0.5f * xi * (1.0f + ts_cpu_tanhf(GELU_SCALE * (xi + cube)));
    }
    return TS_OK;
}

ts_status ts_cpu_gelu_backward(struct ts_backend *be, const struct ts_tensor *dinp,
                               const struct ts_tensor *inp, const struct ts_tensor *dout) {
    int nt = cpu_ctx_of(be)->threads;
    int64_t n = ts_tensor_numel(inp);
    const float *x = f32(inp), *d = f32(dout);
    float *dx = f32(dinp);
#pragma omp parallel for num_threads(nt) schedule(static) if (n > PAR_MIN / 4)
    for (int64_t i = 0; i < n; i++) {
        float xi = x[i];
        float cube = 0.044715f * xi * xi * xi;
        float th = ts_cpu_tanhf(GELU_SCALE * (xi + cube));
        float sech2 = 1.0f - th * th;
        float local = 0.5f * (1.0f + th) +
                      xi * 0.5f * sech2 * GELU_SCALE * (1.0f + 3.0f * 0.044715f * xi * xi);
        dx[i] = local * d[i];
    }
    return TS_OK;
}

ts_status ts_cpu_residual_forward(struct ts_backend *be, const struct ts_tensor *out,
                                  const struct ts_tensor *a, const struct ts_tensor *b) {
    int nt = cpu_ctx_of(be)->threads;
    int64_t n = ts_tensor_numel(a);
    const float *pa = f32(a), *pb = f32(b);
    float *o = f32(out);
#pragma omp parallel for num_threads(nt) schedule(static) if (n > PAR_MIN * 4)
    for (int64_t i = 0; i < n; i++)
        o[i] = pa[i] + pb[i];
    return TS_OK;
}

/* ---- loss ---- */

#define XENT_CHUNK 512

/* One row at a time: max, then exp written back into the row (when the gradient is wanted) so
 * it is computed once, then the row is turned into dlogits. The sum is kept in double. */
ts_status ts_cpu_softmax_xent(struct ts_backend *be, const struct ts_tensor *losses,
                              const struct ts_tensor *logits, const struct ts_tensor *targets,
                              int vocab, float dloss, bool with_grad) {
    int nt = cpu_ctx_of(be)->threads;
    int64_t Vp = last_dim(logits), N = ts_tensor_numel(logits) / Vp, V = vocab;
    const int32_t *tg = targets->data;
    for (int64_t n = 0; n < N; n++)
        if (tg[n] < 0 || tg[n] >= V)
            return ts_error(TS_ERR_INVALID_ARG,
                            "softmax_xent: targets[%lld] = %d is outside [0, vocab = %d)",
                            (long long)n, (int)tg[n], vocab);
    float *lg = f32(logits), *ls = f32(losses);
#pragma omp parallel for num_threads(nt) schedule(static) if (N * V > PAR_MIN)
    for (int64_t n = 0; n < N; n++) {
        float *row = lg + n * Vp;
        float mx = -INFINITY;
        for (int64_t v = 0; v < V; v++)
            mx = row[v] > mx ? row[v] : mx;
        float target_logit = row[tg[n]];
        /* exp into the row itself when it becomes the gradient, else a chunk at a time into a
         * stack buffer; summed in double with four accumulators in a fixed order */
        double acc[4] = {0, 0, 0, 0};
        for (int64_t v0 = 0; v0 < V; v0 += XENT_CHUNK) {
            int64_t len = V - v0 < XENT_CHUNK ? V - v0 : XENT_CHUNK;
            float tmp[XENT_CHUNK];
            float *e = with_grad ? row + v0 : tmp;
            const float *src = row + v0;
            for (int64_t v = 0; v < len; v++)
                e[v] = ts_cpu_expf(src[v] - mx);
            int64_t v = 0;
            for (; v + 4 <= len; v += 4)
                for (int j = 0; j < 4; j++)
                    acc[j] += e[v + j];
            for (; v < len; v++)
                acc[0] += e[v];
        }
        double sum = (acc[0] + acc[1]) + (acc[2] + acc[3]);
        ls[n] = (float)(log(sum) + (double)mx - (double)target_logit);
        if (with_grad) {
            float inv = (float)(1.0 / sum);
            float p_target = row[tg[n]] * inv;
            for (int64_t v = 0; v < V; v++)
                row[v] = dloss * (row[v] * inv);
            row[tg[n]] = dloss * (p_target - 1.0f);
            for (int64_t v = V; v < Vp; v++)
                row[v] = 0.0f;
        }
    }
    return TS_OK;
}

/* ---- precision ---- */

ts_status ts_cpu_cast(struct ts_backend *be, const struct ts_tensor *dst,
                      const struct ts_tensor *src) {
    int nt = cpu_ctx_of(be)->threads;
    int64_t n = ts_tensor_numel(src);
    if (dst->dtype == src->dtype) {
        memcpy(dst->data, src->data, ts_tensor_nbytes(src));
    } else if (dst->dtype == TS_DTYPE_BF16) {
        const float *s = f32(src);
        uint16_t *d = dst->data;
#pragma omp parallel for num_threads(nt) schedule(static) if (n > PAR_MIN)
        for (int64_t i = 0; i < n; i++)
            d[i] = ts_bf16_from_f32(s[i]);
    } else {
        const uint16_t *s = src->data;
        float *d = f32(dst);
#pragma omp parallel for num_threads(nt) schedule(static) if (n > PAR_MIN)
        for (int64_t i = 0; i < n; i++)
            d[i] = ts_f32_from_bf16(s[i]);
    }
    return TS_OK;
}
