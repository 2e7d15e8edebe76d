/* cpu_optim.c: AdamW and the sum of squares behind gradient-norm clipping.
 *
 * sum_squares must give the same bits on every run whatever the thread timing, because the
 * clip factor feeds every parameter update: the input is cut into fixed blocks, each block is
 * summed in double in a fixed order, and block partials are added serially in block order. The
 * partials live in a bounded stack array, processed a round at a time, so nothing allocates. */
#include <math.h>
#include <omp.h>

#include "kernels/bf16.h"
#include "kernels/cpu/cpu_impl.h"

ts_status ts_cpu_adamw(struct ts_backend *be, const struct ts_tensor *param,
                       const struct ts_tensor *grad, const struct ts_tensor *m,
                       const struct ts_tensor *v, float lr, float beta1, float beta2, float eps,
                       float weight_decay, float grad_scale, int step) {
    int nt = cpu_ctx_of(be)->threads;
    int64_t n = ts_tensor_numel(param);
    float *p = f32(param), *pm = f32(m), *pv = f32(v);
    const float *g = f32(grad);
    float bc1 = 1.0f - powf(beta1, (float)step), bc2 = 1.0f - powf(beta2, (float)step);
#pragma omp parallel for num_threads(nt) schedule(static) if (n > 16384)
    for (int64_t i = 0; i < n; i++) {
        float gi = g[i] * grad_scale;
        float mi = beta1 * pm[i] + (1.0f - beta1) * gi;
        float vi = beta2 * pv[i] + (1.0f - beta2) * gi * gi;
        float mh = mi / bc1, vh = vi / bc2;
        pm[i] = mi;
        pv[i] = vi;
        p[i] -= lr * (mh / (sqrtf(vh) + eps) + weight_decay * p[i]);
    }
    return TS_OK;
}

/* The same update over fp32 master weights, then param = master in param's dtype. */
ts_status ts_cpu_adamw_master(struct ts_backend *be, const struct ts_tensor *param,
                              const struct ts_tensor *master, const struct ts_tensor *grad,
                              const struct ts_tensor *m, const struct ts_tensor *v, float lr,
                              float beta1, float beta2, float eps, float weight_decay,
                              float grad_scale, int step) {
    TS_CHECK(ts_cpu_adamw(be, master, grad, m, v, lr, beta1, beta2, eps, weight_decay, grad_scale,
                          step));
    struct ts_tensor src = *master;
    return ts_cpu_cast(be, param, &src);
}

#define SS_BLOCK 4096 /* elements per partial sum */
#define SS_ROUND 256  /* partials per round, on the stack */

/* Eight interleaved double accumulators, combined in a fixed order: fast and deterministic. */
static double block_sum_squares(const float *x, int64_t n) {
    double acc[8] = {0};
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        for (int j = 0; j < 8; j++)
            acc[j] += (double)x[i + j] * (double)x[i + j];
    for (; i < n; i++)
        acc[0] += (double)x[i] * (double)x[i];
    return ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
}

ts_status ts_cpu_sum_squares(struct ts_backend *be, const struct ts_tensor *out,
                             const struct ts_tensor *x) {
    int nt = cpu_ctx_of(be)->threads;
    int64_t n = ts_tensor_numel(x);
    const float *px = f32(x);
    int64_t nblocks = (n + SS_BLOCK - 1) / SS_BLOCK;
    double total = 0.0;
    for (int64_t r0 = 0; r0 < nblocks; r0 += SS_ROUND) {
        double partial[SS_ROUND];
        int64_t rn = nblocks - r0 < SS_ROUND ? nblocks - r0 : SS_ROUND;
#pragma omp parallel for num_threads(nt) schedule(static) if (rn > 4)
        for (int64_t k = 0; k < rn; k++) {
            int64_t i0 = (r0 + k) * SS_BLOCK;
            int64_t len = n - i0 < SS_BLOCK ? n - i0 : SS_BLOCK;
            partial[k] = block_sum_squares(px + i0, len);
        }
        for (int64_t k = 0; k < rn; k++)
            total += partial[k];
    }
    f32(out)[0] = (float)total;
    return TS_OK;
}
