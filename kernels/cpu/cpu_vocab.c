/* cpu_vocab.c: the vocabulary-parallel embedding and cross-entropy (tensor parallelism), fp32.
 *
 * Each tensor-parallel rank holds rows [vocab_begin, vocab_begin + Vl) of wte. The embedding
 * looks up only the tokens of its rows (zero elsewhere) and the model sums the result over the
 * group; the cross-entropy is softmax_xent cut in three around two all-reduces (the row max, then
 * the sum of exponentials and the target's logit), so no rank ever holds a whole (N,Vp) row.
 * The arithmetic follows softmax_xent (cpu_ops.c): exponentials in float, sums in double with four
 * accumulators in a fixed order, so the split loss and gradient agree with the whole one to float
 * rounding. */
#include <math.h>
#include <omp.h>

#include "kernels/cpu/cpu_impl.h"
#include "kernels/cpu/cpu_math.h"

#define PAR_MIN 16384

static int64_t last_dim(const struct ts_tensor *t) { return t->shape[t->ndim - 1]; }

/* ---- embedding ---- */

ts_status ts_cpu_encoder_forward_slice(struct ts_backend *be, const struct ts_tensor *out,
                                       const struct ts_tensor *tokens, const struct ts_tensor *wte,
                                       const struct ts_tensor *wpe, int64_t vocab_begin) {
    int nt = cpu_ctx_of(be)->threads;
    const int64_t B = tokens->shape[0], T = tokens->shape[1], C = wte->shape[1];
    const int64_t rows = wte->shape[0];
    const int32_t *tok = tokens->data;
    float *o = f32(out);
    const float *e = f32(wte), *p = wpe ? f32(wpe) : NULL;
#pragma omp parallel for num_threads(nt) schedule(static) if (B * T * C > PAR_MIN)
    for (int64_t bt = 0; bt < B * T; bt++) {
        float *ob = o + bt * C;
        const int64_t r = (int64_t)tok[bt] - vocab_begin;
        const float *eb = r >= 0 && r < rows ? e + r * C : NULL;
        const float *pb = p ? p + (bt % T) * C : NULL;
        for (int64_t c = 0; c < C; c++)
            ob[c] = (eb ? eb[c] : 0.0f) + (pb ? pb[c] : 0.0f);
    }
    return TS_OK;
}

/* As encoder_backward: each thread owns a slice of columns and walks (b,t) in order. */
ts_status ts_cpu_encoder_backward_slice(struct ts_backend *be, const struct ts_tensor *dwte,
                                        const struct ts_tensor *dwpe, const struct ts_tensor *dout,
                                        const struct ts_tensor *tokens, int64_t vocab_begin) {
    int nt = cpu_ctx_of(be)->threads;
    const int64_t B = tokens->shape[0], T = tokens->shape[1], C = dwte->shape[1];
    const int64_t rows = dwte->shape[0];
    const int32_t *tok = tokens->data;
    float *de = f32(dwte), *dp = dwpe ? f32(dwpe) : NULL;
    const float *d = f32(dout);
#pragma omp parallel num_threads(nt) if (B * T * C > PAR_MIN)
    {
        const int tid = omp_get_thread_num(), n = omp_get_num_threads();
        const int64_t c0 = C * tid / n, c1 = C * (tid + 1) / n;
        for (int64_t bt = 0; bt < B * T; bt++) {
            const float *db = d + bt * C;
            const int64_t r = (int64_t)tok[bt] - vocab_begin;
            if (r >= 0 && r < rows) {
                float *deb = de + r * C;
                for (int64_t c = c0; c < c1; c++)
                    deb[c] += db[c];
            }
            if (dp) {
                float *dpb = dp + (bt % T) * C;
                for (int64_t c = c0; c < c1; c++)
                    dpb[c] += db[c];
            }
        }
    }
    return TS_OK;
}

/* ---- cross-entropy over vocabulary slices ---- */

ts_status ts_cpu_xent_slice_max(struct ts_backend *be, const struct ts_tensor *rowmax,
                                const struct ts_tensor *logits, int valid) {
    int nt = cpu_ctx_of(be)->threads;
    const int64_t Vl = last_dim(logits), N = ts_tensor_numel(logits) / Vl;
    const float *lg = f32(logits);
    float *mx = f32(rowmax);
#pragma omp parallel for num_threads(nt) schedule(static) if (N * valid > PAR_MIN)
    for (int64_t n = 0; n < N; n++) {
        const float *row = lg + n * Vl;
        float m = -INFINITY;
        for (int64_t v = 0; v < valid; v++)
            m = row[v] > m ? row[v] : m;
        mx[n] = m;
    }
    return TS_OK;
}

static bool owns(int32_t target, int64_t vocab_begin, int valid) {
    return (int64_t)target >= vocab_begin && (int64_t)target < vocab_begin + valid;
}

ts_status ts_cpu_xent_slice_sumexp(struct ts_backend *be, const struct ts_tensor *stats,
                                   const struct ts_tensor *logits, const struct ts_tensor *rowmax,
                                   const struct ts_tensor *targets, int valid,
                                   int64_t vocab_begin) {
    int nt = cpu_ctx_of(be)->threads;
    const int64_t Vl = last_dim(logits), N = ts_tensor_numel(logits) / Vl;
    const float *lg = f32(logits), *mx = f32(rowmax);
    const int32_t *tg = targets->data;
    float *st = f32(stats);
#pragma omp parallel for num_threads(nt) schedule(static) if (N * valid > PAR_MIN)
    for (int64_t n = 0; n < N; n++) {
        const float *row = lg + n * Vl;
        double acc[4] = {0, 0, 0, 0};
        int64_t v = 0;
        for (; v + 4 <= valid; v += 4)
            for (int j = 0; j < 4; j++)
                acc[j] += ts_cpu_expf(row[v + j] - mx[n]);
        for (; v < valid; v++)
            acc[0] += ts_cpu_expf(row[v] - mx[n]);
        st[2 * n] = (float)((acc[0] + acc[1]) + (acc[2] + acc[3]));
        st[2 * n + 1] = owns(tg[n], vocab_begin, valid) ? row[tg[n] - vocab_begin] : 0.0f;
    }
    return TS_OK;
}

ts_status ts_cpu_xent_from_stats(struct ts_backend *be, const struct ts_tensor *losses,
                                 const struct ts_tensor *logits, const struct ts_tensor *targets,
                                 const struct ts_tensor *rowmax, const struct ts_tensor *stats,
                                 int valid, int64_t vocab_begin, float dloss, bool with_grad) {
    int nt = cpu_ctx_of(be)->threads;
    const int64_t Vl = last_dim(logits), N = ts_tensor_numel(logits) / Vl;
    const float *mx = f32(rowmax), *st = f32(stats);
    const int32_t *tg = targets->data;
    float *lg = f32(logits), *ls = f32(losses);
#pragma omp parallel for num_threads(nt) schedule(static) if (N * Vl > PAR_MIN)
    for (int64_t n = 0; n < N; n++) {
        const double sum = (double)st[2 * n];
        ls[n] = (float)(log(sum) + (double)mx[n] - (double)st[2 * n + 1]);
        if (!with_grad)
            continue;
        float *row = lg + n * Vl;
        const float inv = (float)(1.0 / sum);
        const int64_t t = owns(tg[n], vocab_begin, valid) ? tg[n] - vocab_begin : -1;
        for (int64_t v = 0; v < valid; v++) {
            const float p = ts_cpu_expf(row[v] - mx[n]) * inv;
            row[v] = dloss * (v == t ? p - 1.0f : p);
        }
        for (int64_t v = valid; v < Vl; v++)
            row[v] = 0.0f;
    }
    return TS_OK;
}
