/* modelcheck.c: the model on a device backend: a short training run against the CPU backend,
 * and the timing of GPT-2-sized training steps (opcheck.h).
 *
 * The training check starts both backends from the same weights (initialised on the CPU,
 * rounded to bf16 first when the device trains in bf16, so the fp32 master weights start equal)
 * and feeds both the same tokens: a noisy pattern the model can learn, so the losses move. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "kernels/bf16.h"
#include "kernels/ops.h"
#include "kernels/rng.h"
#include "tests/gpu/opcheck.h"
#include "trainer/gpt.h"
#include "trainer/optim.h"

#define H100_PEAK_BF16 989e12 /* dense bf16 FLOP/s, H100 and H200 SXM */

/* Tokens with structure: mostly next = (7 * prev + 3) mod V, sometimes random. */
static void make_tokens(int32_t *tok, int64_t n, int V, uint64_t seed) {
    int32_t prev = (int32_t)(ts_rng_u64(seed, 0) % (uint64_t)V);
    for (int64_t i = 0; i < n; i++) {
        uint64_t r = ts_rng_u64(seed, (uint64_t)i + 1);
        prev = (r & 7) == 0 ? (int32_t)((r >> 8) % (uint64_t)V) : (int32_t)((7 * prev + 3) % V);
        tok[i] = prev;
    }
}

struct run {
    ts_gpt_t *gpt;
    ts_optim_t *opt;
};

static void run_free(struct run *r) {
    ts_optim_destroy(r->opt);
    ts_gpt_destroy(r->gpt);
    r->opt = NULL;
    r->gpt = NULL;
}

static ts_status train(struct ts_backend *be, const struct ts_gpt_config *cfg, const float *weights,
                       const int32_t *tok, int B, int T, int steps, float *losses) {
    struct run r = {0};
    ts_status st = TS_OK;
    struct ts_adamw_config ac = ts_adamw_defaults();
    const float dloss = 1.0f / (float)(B * T);
    TS_CHECK_GOTO(ts_gpt_create(&r.gpt, cfg, be, B, T), st, exit);
    TS_CHECK_GOTO(ts_gpt_params_from_host(r.gpt, weights), st, exit);
    TS_CHECK_GOTO(ts_optim_create(&r.opt, r.gpt, &ac), st, exit);
    for (int s = 0; s < steps; s++) {
        const int32_t *in = tok + (int64_t)s * B * (T + 1);
        /* B windows of T+1 tokens: inputs are the first T, targets the last T */
        int32_t *x = malloc((size_t)B * T * sizeof(int32_t));
        int32_t *y = malloc((size_t)B * T * sizeof(int32_t));
        if (!x || !y) {
            free(x);
            free(y);
            st = ts_error(TS_ERR_OOM, "modelcheck: out of memory");
            goto exit;
        }
        for (int b = 0; b < B; b++)
            for (int t = 0; t < T; t++) {
                x[b * T + t] = in[b * (T + 1) + t];
                y[b * T + t] = in[b * (T + 1) + t + 1];
            }
        st = ts_gpt_zero_grad(r.gpt);
        if (st == TS_OK)
            st = ts_gpt_forward(r.gpt, x, y, B, T, dloss, &losses[s]);
        if (st == TS_OK)
            st = ts_gpt_backward(r.gpt);
        if (st == TS_OK)
            st = ts_optim_step(r.opt, 1e-3f, NULL);
        free(x);
        free(y);
        if (st != TS_OK)
            goto exit;
    }
exit:
    run_free(&r);
    return st;
}

ts_status ts_modelcheck_train(struct ts_backend *ref, struct ts_backend *dev, enum ts_dtype dt,
                              int steps, uint64_t seed, float *ref_losses, float *dev_losses,
                              double *max_rel, bool *deterministic) {
    const int B = 4, T = 32;
    struct ts_gpt_config cfg = {.max_seq_len = T,
                                .vocab_size = 301,
                                .num_layers = 2,
                                .num_heads = 1, /* head size 64: the flash kernels' */
                                .channels = 64,
                                .dtype = TS_DTYPE_F32};
    ts_status st = TS_OK;
    ts_gpt_t *init = NULL;
    float *w = NULL, *again = NULL;
    int32_t *tok = NULL;
    TS_CHECK(ts_gpt_config_finish(&cfg));
    TS_CHECK_GOTO(ts_gpt_create(&init, &cfg, ref, 1, 1), st, exit);
    TS_CHECK_GOTO(ts_gpt_init(init, seed), st, exit);
    const int64_t n = ts_gpt_num_params(init);
    w = malloc((size_t)n * sizeof(float));
    again = malloc((size_t)steps * sizeof(float));
    tok = malloc((size_t)steps * B * (T + 1) * sizeof(int32_t));
    if (!w || !again || !tok) {
        st = ts_error(TS_ERR_OOM, "modelcheck: out of memory");
        goto exit;
    }
    TS_CHECK_GOTO(ts_gpt_params_to_host(init, w), st, exit);
    if (dt == TS_DTYPE_BF16)
        for (int64_t i = 0; i < n; i++)
            w[i] = ts_bf16_round(w[i]);
    make_tokens(tok, (int64_t)steps * B * (T + 1), cfg.vocab_size, seed ^ 0x5eedu);

    TS_CHECK_GOTO(train(ref, &cfg, w, tok, B, T, steps, ref_losses), st, exit);
    struct ts_gpt_config dcfg = cfg;
    dcfg.dtype = dt;
    TS_CHECK_GOTO(train(dev, &dcfg, w, tok, B, T, steps, dev_losses), st, exit);
    TS_CHECK_GOTO(train(dev, &dcfg, w, tok, B, T, steps, again), st, exit);
    *max_rel = 0;
    *deterministic = memcmp(again, dev_losses, (size_t)steps * sizeof(float)) == 0;
    for (int s = 0; s < steps; s++) {
        double rel = fabs((double)dev_losses[s] - ref_losses[s]) / fabs((double)ref_losses[s]);
        if (!isfinite(dev_losses[s]))
            rel = INFINITY;
        *max_rel = rel > *max_rel ? rel : *max_rel;
    }
exit:
    ts_gpt_destroy(init);
    free(w);
    free(again);
    free(tok);
    if (st != TS_OK)
        ts_error_wrap(st, "modelcheck train (%s)", dt == TS_DTYPE_BF16 ? "bf16" : "fp32");
    return st;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

ts_status ts_modelcheck_bench(struct ts_backend *dev, enum ts_dtype dt, int L, int C, int NH, int T,
                              int B, int warmup, int steps, struct ts_bench_result *out) {
    struct ts_gpt_config cfg = {.max_seq_len = T,
                                .vocab_size = 50257,
                                .num_layers = L,
                                .num_heads = NH,
                                .channels = C,
                                .dtype = dt};
    struct run r = {0};
    ts_event_t *e0 = NULL, *e1 = NULL;
    int32_t *tok = NULL;
    double *ms = NULL;
    ts_status st = TS_OK;
    uint64_t mj0 = 0, mj1 = 0;
    bool energy = false;
    struct ts_adamw_config ac = ts_adamw_defaults();
    memset(out, 0, sizeof *out);
    out->joules_per_token = -1;
    if (steps < 1)
        return ts_error(TS_ERR_INVALID_ARG, "bench: steps must be >= 1");
    TS_CHECK_GOTO(ts_gpt_create(&r.gpt, &cfg, dev, B, T), st, exit);
    TS_CHECK_GOTO(ts_gpt_init(r.gpt, 1337), st, exit);
    TS_CHECK_GOTO(ts_optim_create(&r.opt, r.gpt, &ac), st, exit);
    TS_CHECK_GOTO(ts_op_event_create(dev, &e0), st, exit);
    TS_CHECK_GOTO(ts_op_event_create(dev, &e1), st, exit);
    tok = malloc((size_t)2 * B * T * sizeof(int32_t));
    ms = malloc((size_t)steps * sizeof(double));
    if (!tok || !ms) {
        st = ts_error(TS_ERR_OOM, "bench: out of memory");
        goto exit;
    }
    make_tokens(tok, 2 * (int64_t)B * T, cfg.vocab_size, 42);
    for (int s = 0; s < warmup + steps; s++) {
        if (s == warmup)
            energy = ts_op_sync(dev) == TS_OK && ts_op_energy_mj(dev, &mj0) == TS_OK;
        TS_CHECK_GOTO(ts_op_event_record(dev, e0), st, exit);
        TS_CHECK_GOTO(ts_gpt_zero_grad(r.gpt), st, exit);
        TS_CHECK_GOTO(ts_gpt_forward(r.gpt, tok, tok + (int64_t)B * T, B, T, 1.0f / (float)(B * T),
                                     &out->last_loss),
                      st, exit);
        TS_CHECK_GOTO(ts_gpt_backward(r.gpt), st, exit);
        TS_CHECK_GOTO(ts_optim_step(r.opt, 6e-4f, NULL), st, exit);
        TS_CHECK_GOTO(ts_op_event_record(dev, e1), st, exit);
        TS_CHECK_GOTO(ts_op_event_sync(dev, e1), st, exit);
        if (s >= warmup) {
            float m = 0;
            TS_CHECK_GOTO(ts_op_event_elapsed_ms(dev, e0, e1, &m), st, exit);
            ms[s - warmup] = m;
        }
    }
    if (energy)
        energy = ts_op_energy_mj(dev, &mj1) == TS_OK;
    qsort(ms, (size_t)steps, sizeof(double), cmp_double);
    out->ms_per_step = ms[steps / 2];
    out->tokens_per_s = (double)B * T / (out->ms_per_step * 1e-3);
    out->flops_per_token = 6.0 * (double)ts_gpt_num_flop_params(r.gpt) + 12.0 * L * C * T;
    out->mfu = out->tokens_per_s * out->flops_per_token / H100_PEAK_BF16;
    if (energy && mj1 > mj0)
        out->joules_per_token = (double)(mj1 - mj0) * 1e-3 / ((double)steps * B * T);
    struct ts_backend_info info;
    dev->info(dev, &info);
    out->peak_bytes = info.peak_bytes;
exit:
    ts_op_event_destroy(dev, e0);
    ts_op_event_destroy(dev, e1);
    run_free(&r);
    free(tok);
    free(ms);
    if (st != TS_OK)
        ts_error_wrap(st, "bench (L%d C%d T%d B%d %s)", L, C, T, B,
                      dt == TS_DTYPE_BF16 ? "bf16" : "fp32");
    return st;
}
