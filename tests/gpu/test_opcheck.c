/* test_opcheck.c: the GPU check's harness, checked on the CPU (suite cpu): the CPU backend
 * against itself passes every op with zero error, and a backend with one wrong op (an output
 * left unwritten, "+=" turned into "=", a transposed index) fails the check of that op. This is
 * what makes a pass on the GPU mean something. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/cpu/cpu_backend.h"
#include "kernels/ops.h"
#include "tests/gpu/bf16emu.h"
#include "tests/gpu/opcheck.h"

static struct ts_backend *cpu(void) {
    struct ts_backend *be = NULL;
    struct ts_cpu_options o = {.threads = 0, .blas = TS_BLAS_REFERENCE};
    cr_assert_eq(ts_cpu_backend_create(&be, &o), TS_OK, "%s", ts_last_error());
    return be;
}

struct tally {
    int runs, fails;
    char failed_ops[512];
};

static void count(const struct ts_opcheck_result *r, void *user) {
    struct tally *t = user;
    t->runs++;
    if (!r->pass) {
        t->fails++;
        if (!strstr(t->failed_ops, r->op)) {
            strncat(t->failed_ops, r->op, sizeof t->failed_ops - strlen(t->failed_ops) - 2);
            strcat(t->failed_ops, " ");
        }
    }
}

Test(gpu_opcheck, cpu_against_itself_passes_every_op) {
    struct ts_backend *a = cpu(), *b = cpu();
    struct tally t = {0};
    int fails = -1;
    cr_assert_eq(ts_opcheck_run(a, b, TS_DTYPE_F32, NULL, true, 7, count, &t, &fails), TS_OK, "%s",
                 ts_last_error());
    cr_assert_eq(fails, 0, "failed: %s", t.failed_ops);
    cr_assert_geq(t.runs, 20 * 3, "only %d checks ran", t.runs);
    ts_backend_destroy(a);
    ts_backend_destroy(b);
}

/* The tall cases (B T past 65,535 and past the sorted wte gradient's buffers) are not among the
 * small shapes: their setup runs here, CPU against CPU, with zero error. */
Test(gpu_opcheck, tall_cases_run_cpu_against_itself) {
    struct ts_backend *a = cpu(), *b = cpu();
    struct tally t = {0};
    int fails = -1;
    cr_assert_eq(ts_opcheck_run(a, b, TS_DTYPE_F32, "_tall", false, 7, count, &t, &fails), TS_OK,
                 "%s", ts_last_error());
    cr_assert_eq(fails, 0, "failed: %s", t.failed_ops);
    cr_assert_eq(t.runs, 4 * 2, "%d checks ran", t.runs);
    ts_backend_destroy(a);
    ts_backend_destroy(b);
}

Test(gpu_opcheck, bf16_is_refused_by_an_fp32_backend) {
    struct ts_backend *a = cpu(), *b = cpu();
    int fails = 0;
    cr_assert_neq(ts_opcheck_run(a, b, TS_DTYPE_BF16, "gelu", true, 7, NULL, NULL, &fails), TS_OK);
    cr_assert(strstr(ts_last_error(), "bf16") != NULL, "%s", ts_last_error());
    ts_backend_destroy(a);
    ts_backend_destroy(b);
}

/* ---- wrong ops ---- */

/* Writes only the first half of out. */
static ts_status gelu_half(struct ts_backend *be, const struct ts_tensor *out,
                           const struct ts_tensor *inp) {
    struct ts_tensor o = *out, i = *inp;
    int64_t n = ts_tensor_numel(inp);
    o.ndim = i.ndim = 1;
    o.shape[0] = i.shape[0] = n / 2 > 0 ? n / 2 : 1;
    for (int k = 1; k < TS_MAX_DIMS; k++)
        o.shape[k] = i.shape[k] = 1;
    struct ts_backend *real = NULL;
    struct ts_cpu_options opt = {0};
    TS_CHECK(ts_cpu_backend_create(&real, &opt));
    ts_status st = real->gelu_forward(real, &o, &i);
    ts_backend_destroy(real);
    return st;
}

/* dweight and dbias overwritten instead of accumulated. */
static ts_status (*real_ln_bwd)(struct ts_backend *, const struct ts_tensor *,
                                const struct ts_tensor *, const struct ts_tensor *,
                                const struct ts_tensor *, const struct ts_tensor *,
                                const struct ts_tensor *, const struct ts_tensor *,
                                const struct ts_tensor *);
static ts_status ln_bwd_overwrites(struct ts_backend *be, const struct ts_tensor *dinp,
                                   const struct ts_tensor *dweight, const struct ts_tensor *dbias,
                                   const struct ts_tensor *dout, const struct ts_tensor *inp,
                                   const struct ts_tensor *weight, const struct ts_tensor *mean,
                                   const struct ts_tensor *rstd) {
    memset(dweight->data, 0, ts_tensor_nbytes(dweight));
    memset(dbias->data, 0, ts_tensor_nbytes(dbias));
    return real_ln_bwd(be, dinp, dweight, dbias, dout, inp, weight, mean, rstd);
}

/* The classifier's weight read with the wrong layout (a transposed index). */
static ts_status (*real_mm_fwd)(struct ts_backend *, const struct ts_tensor *,
                                const struct ts_tensor *, const struct ts_tensor *,
                                const struct ts_tensor *, enum ts_wlayout);
static ts_status mm_fwd_wrong_layout(struct ts_backend *be, const struct ts_tensor *out,
                                     const struct ts_tensor *inp, const struct ts_tensor *weight,
                                     const struct ts_tensor *bias, enum ts_wlayout layout) {
    if (layout == TS_W_OUT_IN && weight->shape[0] == weight->shape[1])
        layout = TS_W_IN_OUT; /* only square weights keep shapes valid; others fall through */
    else if (layout == TS_W_OUT_IN) {
        struct ts_tensor w = *weight;
        w.shape[0] = weight->shape[1];
        w.shape[1] = weight->shape[0];
        return real_mm_fwd(be, out, inp, &w, bias, TS_W_IN_OUT); /* reads (Vp,C) as (C,Vp) */
    }
    return real_mm_fwd(be, out, inp, weight, bias, layout);
}

static void expect_caught(struct ts_backend *bad, const char *filter, const char *op) {
    struct ts_backend *ref = cpu();
    struct tally t = {0};
    int fails = 0;
    cr_assert_eq(ts_opcheck_run(ref, bad, TS_DTYPE_F32, filter, true, 11, count, &t, &fails), TS_OK,
                 "%s", ts_last_error());
    cr_assert_gt(fails, 0, "a wrong %s passed the check", op);
    cr_assert(strstr(t.failed_ops, op) != NULL, "failed ops: %s", t.failed_ops);
    ts_backend_destroy(ref);
}

Test(gpu_opcheck, catches_an_unwritten_output) {
    struct ts_backend *bad = cpu();
    bad->gelu_forward = gelu_half;
    expect_caught(bad, "gelu_forward", "gelu_forward");
    ts_backend_destroy(bad);
}

Test(gpu_opcheck, catches_overwrite_instead_of_accumulate) {
    struct ts_backend *bad = cpu();
    real_ln_bwd = bad->layernorm_backward;
    bad->layernorm_backward = ln_bwd_overwrites;
    expect_caught(bad, "layernorm_backward", "layernorm_backward");
    ts_backend_destroy(bad);
}

Test(gpu_opcheck, catches_a_transposed_weight) {
    struct ts_backend *bad = cpu();
    real_mm_fwd = bad->matmul_forward;
    bad->matmul_forward = mm_fwd_wrong_layout;
    expect_caught(bad, "matmul_forward_wt", "matmul_forward_wt");
    ts_backend_destroy(bad);
}

/* The flash forward with the last row of each head's lse left as it was (the kernels' odd-T
 * edge), and the flash backward reading one row too few of lse. */
static ts_status (*real_flash_fwd)(struct ts_backend *, const struct ts_tensor *,
                                   const struct ts_tensor *, const struct ts_tensor *, int);
static ts_status flash_fwd_skips_last_lse(struct ts_backend *be, const struct ts_tensor *out,
                                          const struct ts_tensor *lse, const struct ts_tensor *qkv,
                                          int nh) {
    const int64_t n = ts_tensor_numel(lse);
    float *keep = malloc((size_t)n * sizeof(float));
    cr_assert(keep);
    memcpy(keep, lse->data, (size_t)n * sizeof(float));
    ts_status st = real_flash_fwd(be, out, lse, qkv, nh);
    const int64_t T = lse->shape[2];
    for (int64_t r = T - 1; r < n; r += T)
        ((float *)lse->data)[r] = keep[r];
    free(keep);
    return st;
}

Test(gpu_opcheck, catches_an_unwritten_lse_row) {
    struct ts_backend *bad = cpu();
    real_flash_fwd = bad->flash_attention_forward;
    bad->flash_attention_forward = flash_fwd_skips_last_lse;
    expect_caught(bad, "flash_attention_forward", "flash_attention_forward");
    ts_backend_destroy(bad);
}

Test(gpu_opcheck, training_check_cpu_against_itself) {
    struct ts_backend *a = cpu(), *b = cpu();
    float rl[5], dl[5];
    double rel = 1;
    bool det = false;
    cr_assert_eq(ts_modelcheck_train(a, b, TS_DTYPE_F32, 5, 3, rl, dl, &rel, &det), TS_OK, "%s",
                 ts_last_error());
    cr_assert_eq(rel, 0.0);
    cr_assert(det);
    cr_assert_lt(dl[4], dl[0], "the loss did not move: %g -> %g", (double)dl[0], (double)dl[4]);
    ts_backend_destroy(a);
    ts_backend_destroy(b);
}

/* ---- the bf16 paths, on a CPU that stores bf16 (bf16emu.h) ---- */

static struct ts_backend *emu(void) {
    struct ts_backend *be = NULL;
    cr_assert_eq(bf16emu_create(&be), TS_OK, "%s", ts_last_error());
    return be;
}

static void print_failure(const struct ts_opcheck_result *r, void *user) {
    struct tally *t = user;
    count(r, user);
    if (!r->pass)
        cr_log_error("%s %s %s: rel %.3e (tol %.0e), %lld bad, worst output %s", r->op, r->dtype,
                     r->shape, r->rel_l2, r->tol, (long long)r->bad, r->output);
    (void)t;
}

Test(gpu_opcheck, bf16_checks_pass_on_emulated_bf16) {
    struct ts_backend *a = cpu(), *b = emu();
    struct tally t = {0};
    int fails = -1;
    cr_assert_eq(ts_opcheck_run(a, b, TS_DTYPE_BF16, NULL, true, 9, print_failure, &t, &fails),
                 TS_OK, "%s", ts_last_error());
    cr_assert_eq(fails, 0, "failed: %s", t.failed_ops);
    ts_backend_destroy(a);
    ts_backend_destroy(b);
}

Test(gpu_opcheck, bf16_model_trains_like_fp32) {
    struct ts_backend *a = cpu(), *b = emu();
    float rl[8], dl[8];
    double rel = 1;
    bool det = false;
    cr_assert_eq(ts_modelcheck_train(a, b, TS_DTYPE_BF16, 8, 4, rl, dl, &rel, &det), TS_OK, "%s",
                 ts_last_error());
    cr_assert(det, "emulated bf16 training did not repeat");
    cr_assert_leq(rel, 3e-2, "bf16 losses differ from fp32 by %.3e (%g vs %g at step 0)", rel,
                  (double)dl[0], (double)rl[0]);
    cr_assert_gt(rel, 0.0, "bf16 losses equal fp32 exactly: the model did not run in bf16");
    cr_assert_lt(dl[7], dl[0], "the loss did not move");
    ts_backend_destroy(a);
    ts_backend_destroy(b);
}

struct timing {
    int n;
    double residual_bytes, matmul_flops, attention_flops, flash_bwd_flops, adamw_bytes;
    bool bad;
    char why[256];
};

static void collect(const struct ts_optime_result *r, void *user) {
    struct timing *t = user;
    t->n++;
    if (!(r->ms >= 0) || !(r->bytes > 0)) {
        t->bad = true;
        snprintf(t->why, sizeof t->why, "%s: ms %g bytes %g", r->op, r->ms, r->bytes);
    }
    if (strcmp(r->op, "residual_forward") == 0)
        t->residual_bytes = r->bytes;
    else if (strcmp(r->op, "matmul_forward") == 0)
        t->matmul_flops = r->flops;
    else if (strcmp(r->op, "attention_forward") == 0)
        t->attention_flops = r->flops;
    else if (strcmp(r->op, "flash_attention_backward") == 0)
        t->flash_bwd_flops = r->flops;
    else if (strcmp(r->op, "adamw") == 0)
        t->adamw_bytes = r->bytes;
}

/* The GPU check's op timing (tessera-gpucheck --timing) runs every case on the CPU backend too,
 * with the bytes and FLOPs its table divides by. */
Test(gpu_opcheck, op_timing_counts_bytes_and_flops) {
    struct ts_backend *be = cpu();
    struct timing t = {0};
    const int B = 2, T = 16, C = 128, NH = 2, V = 100; /* head size 64: the flash pair too */
    cr_assert_eq(ts_optime_run(be, TS_DTYPE_F32, B, T, C, NH, V, NULL, 2, collect, &t), TS_OK, "%s",
                 ts_last_error());
    cr_assert(!t.bad, "%s", t.why);
    cr_assert_geq(t.n, 30, "only %d ops timed", t.n);
    const double BTC = (double)B * T * C;
    cr_assert_float_eq(t.residual_bytes, 3 * BTC * 4, 0.5);   /* a + b read, out written */
    cr_assert_float_eq(t.matmul_flops, 2 * BTC * 3 * C, 0.5); /* (BT x C) by (C x 3C) */
    cr_assert_float_eq(t.attention_flops, 4 * BTC * T, 0.5);
    cr_assert_float_eq(t.flash_bwd_flops, 12 * BTC * T, 0.5);
    /* param, m and v read and written, grad read: 7 floats per element */
    cr_assert_float_eq(t.adamw_bytes, 7 * (BTC + 3) * 4, 0.5);
    /* bf16 (emulated): activations two bytes, the fp32-only AdamW left out */
    struct ts_backend *e = emu();
    struct timing h = {0};
    cr_assert_eq(ts_optime_run(e, TS_DTYPE_BF16, B, T, C, NH, V, NULL, 1, collect, &h), TS_OK, "%s",
                 ts_last_error());
    cr_assert(!h.bad, "%s", h.why);
    cr_assert_eq(h.n, t.n - 1, "bf16 timed %d ops, fp32 %d", h.n, t.n);
    cr_assert_float_eq(h.residual_bytes, 3 * BTC * 2, 0.5);
    cr_assert_eq(ts_optime_run(be, TS_DTYPE_F32, B, T, C, 3, V, "residual", 1, collect, &h),
                 TS_ERR_INVALID_ARG, "C not a multiple of NH was accepted");
    ts_backend_destroy(e);
    ts_backend_destroy(be);
}
