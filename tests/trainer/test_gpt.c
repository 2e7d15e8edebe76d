/* test_gpt.c: the parameter table, config checks, initialisation, and forward/backward rules. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"
#include "kernels/ops.h"
#include "trainer/gpt.h"

static ts_gpt_t *make_tiny(struct ts_backend *be, int max_batch, int max_seq) {
    struct ts_gpt_config cfg = test_tiny_config();
    ts_gpt_t *gpt = NULL;
    ts_status st = ts_gpt_create(&gpt, &cfg, be, max_batch, max_seq);
    cr_assert_eq(st, TS_OK, "gpt create: %s", ts_last_error());
    return gpt;
}

Test(trainer_gpt, table_names_shapes_offsets) {
    struct ts_backend *be = test_backend(1);
    ts_gpt_t *gpt = make_tiny(be, 2, 8);
    const int64_t C = 64, L = 2;
    int count = 0;
    const struct ts_param_info *t = ts_gpt_params(gpt, &count);
    cr_assert_eq(count, 2 + 12 * L + 2);
    cr_assert_eq(ts_gpt_config(gpt)->padded_vocab_size, 384);

    struct expect {
        const char *name;
        int ndim;
        int64_t d0, d1;
        bool decay;
    };
    const struct expect layer[12] = {
        {"ln_1.weight", 1, C, 1, false},           {"ln_1.bias", 1, C, 1, false},
        {"attn.c_attn.weight", 2, C, 3 * C, true}, {"attn.c_attn.bias", 1, 3 * C, 1, false},
        {"attn.c_proj.weight", 2, C, C, true},     {"attn.c_proj.bias", 1, C, 1, false},
        {"ln_2.weight", 1, C, 1, false},           {"ln_2.bias", 1, C, 1, false},
        {"mlp.c_fc.weight", 2, C, 4 * C, true},    {"mlp.c_fc.bias", 1, 4 * C, 1, false},
        {"mlp.c_proj.weight", 2, 4 * C, C, true},  {"mlp.c_proj.bias", 1, C, 1, false},
    };
    struct expect all[28];
    char names[28][64];
    all[0] = (struct expect){"wte.weight", 2, 384, C, true};
    all[1] = (struct expect){"wpe.weight", 2, 32, C, true};
    for (int l = 0; l < L; l++)
        for (int k = 0; k < 12; k++) {
            const int i = 2 + 12 * l + k;
            snprintf(names[i], sizeof(names[i]), "h.%d.%s", l, layer[k].name);
            all[i] = layer[k];
            all[i].name = names[i];
        }
    all[26] = (struct expect){"ln_f.weight", 1, C, 1, false};
    all[27] = (struct expect){"ln_f.bias", 1, C, 1, false};

    int64_t off = 0;
    for (int i = 0; i < count; i++) {
        cr_assert_str_eq(t[i].name, all[i].name, "entry %d", i);
        cr_assert_eq(t[i].ndim, all[i].ndim, "%s ndim", t[i].name);
        cr_assert_eq(t[i].shape[0], all[i].d0, "%s shape[0]", t[i].name);
        if (all[i].ndim == 2)
            cr_assert_eq(t[i].shape[1], all[i].d1, "%s shape[1]", t[i].name);
        cr_assert_eq(t[i].numel, all[i].d0 * all[i].d1, "%s numel", t[i].name);
        cr_assert_eq(t[i].offset, off, "%s offset", t[i].name);
        cr_assert_eq(t[i].decay, all[i].decay, "%s decay", t[i].name);
        off += t[i].numel;
    }
    cr_assert_eq(ts_gpt_num_params(gpt), off);
    cr_assert_eq(ts_tensor_numel(ts_gpt_param_buffer(gpt)), off);
    cr_assert_eq(ts_tensor_numel(ts_gpt_grad_buffer(gpt)), off);
    cr_assert_eq(ts_gpt_num_flop_params(gpt), off - 32 * C - (384 - 300) * C);
    ts_gpt_destroy(gpt);
    ts_backend_destroy(be);
}

/* GPT-2 small: Hugging Face counts 124,439,808 with V = 50257; the flat buffer also holds the
 * 47 padded rows of wte. */
Test(trainer_gpt, gpt2_124m_count) {
    struct ts_backend *be = test_backend(1);
    struct ts_gpt_config cfg = {.max_seq_len = 1024,
                                .vocab_size = 50257,
                                .num_layers = 12,
                                .num_heads = 12,
                                .channels = 768};
    ts_gpt_t *gpt = NULL;
    cr_assert_eq(ts_gpt_create(&gpt, &cfg, be, 1, 1), TS_OK, "%s", ts_last_error());
    cr_assert_eq(ts_gpt_config(gpt)->padded_vocab_size, 50304);
    cr_assert_eq(ts_gpt_num_params(gpt), 124439808LL + (50304 - 50257) * 768LL);
    cr_assert_eq(ts_gpt_num_flop_params(gpt), 124439808LL - 1024 * 768LL);
    ts_gpt_destroy(gpt);
    ts_backend_destroy(be);
}

Test(trainer_gpt, config_errors) {
    struct ts_gpt_config cfg = test_tiny_config();
    cfg.num_layers = 0;
    cr_assert_eq(ts_gpt_config_finish(&cfg), TS_ERR_INVALID_ARG);
    cr_assert(strstr(ts_last_error(), "num_layers") != NULL, "%s", ts_last_error());

    cfg = test_tiny_config();
    cfg.num_heads = 5;
    cr_assert_eq(ts_gpt_config_finish(&cfg), TS_ERR_INVALID_ARG);
    cr_assert(strstr(ts_last_error(), "multiple of num_heads") != NULL, "%s", ts_last_error());

    cfg = test_tiny_config();
    cfg.vocab_size = 0;
    cr_assert_eq(ts_gpt_config_finish(&cfg), TS_ERR_INVALID_ARG);
    cr_assert(strstr(ts_last_error(), "vocab_size") != NULL, "%s", ts_last_error());

    cfg = test_tiny_config();
    cfg.vocab_size = 256;
    cr_assert_eq(ts_gpt_config_finish(&cfg), TS_OK);
    cr_assert_eq(cfg.padded_vocab_size, 256);

    struct ts_backend *be = test_backend(1);
    ts_gpt_t *gpt = (ts_gpt_t *)&cfg; /* must be reset to NULL on failure */
    cfg = test_tiny_config();
    cr_assert_eq(ts_gpt_create(&gpt, &cfg, be, 1, 33), TS_ERR_INVALID_ARG);
    cr_assert_null(gpt);
    cr_assert(strstr(ts_last_error(), "max_seq") != NULL, "%s", ts_last_error());
    cfg.num_heads = 3;
    cr_assert_eq(ts_gpt_create(&gpt, &cfg, be, 1, 8), TS_ERR_INVALID_ARG);
    cr_assert_null(gpt);
    ts_backend_destroy(be);
}

static void stats(const float *x, int64_t n, double *mean, double *std) {
    double s = 0, s2 = 0;
    for (int64_t i = 0; i < n; i++) {
        s += x[i];
        s2 += (double)x[i] * x[i];
    }
    *mean = s / n;
    *std = sqrt(s2 / n - *mean * *mean);
}

Test(trainer_gpt, init_statistics) {
    struct ts_backend *be = test_backend(1);
    ts_gpt_t *gpt = make_tiny(be, 1, 8);
    cr_assert_eq(ts_gpt_init(gpt, 42), TS_OK, "%s", ts_last_error());
    const int64_t n = ts_gpt_num_params(gpt);
    float *p = malloc((size_t)n * sizeof(float));
    cr_assert_eq(ts_gpt_params_to_host(gpt, p), TS_OK);
    int count;
    const struct ts_param_info *t = ts_gpt_params(gpt, &count);
    const int64_t C = 64, V = 300, Vp = 384;
    const double res_std = 0.02 / sqrt(2.0 * 2);
    for (int i = 0; i < count; i++) {
        const float *x = p + t[i].offset;
        int64_t m = t[i].numel;
        if (i == 0)
            m = V * C; /* real rows only */
        double mean, std;
        stats(x, m, &mean, &std);
        const char *nm = t[i].name;
        if (strstr(nm, "c_proj.weight")) {
            cr_assert_float_eq(std, res_std, res_std * 0.1, "%s std %g", nm, std);
            cr_assert(fabs(mean) < 4 * res_std / sqrt((double)m), "%s mean %g", nm, mean);
        } else if (t[i].ndim == 2) {
            cr_assert_float_eq(std, 0.02, 0.002, "%s std %g", nm, std);
            cr_assert(fabs(mean) < 4 * 0.02 / sqrt((double)m), "%s mean %g", nm, mean);
        } else {
            const float want = strstr(nm, ".weight") ? 1.0f : 0.0f;
            for (int64_t k = 0; k < m; k++)
                cr_assert_eq(x[k], want, "%s[%lld] = %g", nm, (long long)k, x[k]);
        }
    }
    /* wte: mean/std checked tightly over its 19200 values; padded rows are exactly zero. */
    double mean, std;
    stats(p, V * C, &mean, &std);
    cr_assert_float_eq(std, 0.02, 0.0005, "wte std %g", std);
    for (int64_t k = V * C; k < Vp * C; k++)
        cr_assert_eq(p[k], 0.0f, "padded wte element %lld = %g", (long long)k, p[k]);

    /* Same seed, same values; value i depends only on (seed, i). */
    ts_gpt_t *gpt2 = make_tiny(be, 2, 16);
    float *q = malloc((size_t)n * sizeof(float));
    cr_assert_eq(ts_gpt_init(gpt2, 42), TS_OK);
    cr_assert_eq(ts_gpt_params_to_host(gpt2, q), TS_OK);
    cr_assert_eq(memcmp(p, q, (size_t)n * sizeof(float)), 0);
    cr_assert_eq(ts_gpt_init(gpt2, 43), TS_OK);
    cr_assert_eq(ts_gpt_params_to_host(gpt2, q), TS_OK);
    cr_assert_neq(memcmp(p, q, (size_t)V * C * sizeof(float)), 0);
    free(p);
    free(q);
    ts_gpt_destroy(gpt);
    ts_gpt_destroy(gpt2);
    ts_backend_destroy(be);
}

Test(trainer_gpt, forward_rules) {
    struct ts_backend *be = test_backend(1);
    ts_gpt_t *gpt = make_tiny(be, 2, 8);
    cr_assert_eq(ts_gpt_init(gpt, 7), TS_OK);
    int32_t in[16], tg[16];
    for (int i = 0; i < 16; i++) {
        in[i] = (i * 37) % 300;
        tg[i] = (i * 53 + 1) % 300;
    }
    float loss = 0, eval_loss = 0;
    /* Too big a batch, ids out of range, backward without a gradient. */
    cr_assert_eq(ts_gpt_forward(gpt, in, tg, 3, 8, 1.0f, &loss), TS_ERR_INVALID_ARG);
    cr_assert_eq(ts_gpt_forward(gpt, in, tg, 2, 9, 1.0f, &loss), TS_ERR_INVALID_ARG);
    in[5] = 300;
    cr_assert_eq(ts_gpt_forward(gpt, in, tg, 2, 8, 1.0f, &loss), TS_ERR_INVALID_ARG);
    cr_assert(strstr(ts_last_error(), "300") != NULL, "%s", ts_last_error());
    in[5] = 11;
    cr_assert_eq(ts_gpt_backward(gpt), TS_ERR_INVALID_ARG);

    /* Eval (dloss 0) and training forwards give the same loss; only the latter allows backward. */
    cr_assert_eq(ts_gpt_forward(gpt, in, tg, 2, 8, 0.0f, &eval_loss), TS_OK, "%s", ts_last_error());
    cr_assert_eq(ts_gpt_backward(gpt), TS_ERR_INVALID_ARG);
    cr_assert_eq(ts_gpt_forward(gpt, in, tg, 2, 8, 1.0f / 16, &loss), TS_OK);
    cr_assert_eq(loss, eval_loss);
    /* At init the prediction is near uniform over V = 300 tokens. */
    cr_assert_float_eq(loss, logf(300.0f), 0.1f, "initial loss %g", loss);
    cr_assert_eq(ts_gpt_backward(gpt), TS_OK, "%s", ts_last_error());
    cr_assert_eq(ts_gpt_backward(gpt), TS_ERR_INVALID_ARG); /* dlogits were consumed */
    /* Sampling-style forward (no targets) leaves mean_loss alone. */
    float untouched = 123.0f;
    cr_assert_eq(ts_gpt_forward(gpt, in, NULL, 2, 8, 0.0f, &untouched), TS_OK);
    cr_assert_eq(untouched, 123.0f);
    ts_gpt_destroy(gpt);
    ts_backend_destroy(be);
}

/* The training forward that leaves its per-token losses in a caller's buffer (the trainer's
 * once-per-step download) computes exactly what ts_gpt_forward averages, and the same
 * gradients; a buffer of the wrong size or dtype is refused. */
Test(trainer_gpt, forward_losses_matches_forward) {
    struct ts_backend *be = test_backend(1);
    ts_gpt_t *gpt = make_tiny(be, 2, 8);
    cr_assert_eq(ts_gpt_init(gpt, 7), TS_OK);
    int32_t in[16], tg[16];
    for (int i = 0; i < 16; i++) {
        in[i] = (i * 37) % 300;
        tg[i] = (i * 53 + 1) % 300;
    }
    const int64_t n = ts_gpt_num_params(gpt), rows[2] = {3, 16};
    float *g1 = malloc((size_t)n * sizeof(float)), *g2 = malloc((size_t)n * sizeof(float));
    float loss, host[48];
    cr_assert_eq(ts_gpt_forward(gpt, in, tg, 2, 8, 1.0f / 16, &loss), TS_OK);
    cr_assert_eq(ts_gpt_backward(gpt), TS_OK);
    cr_assert_eq(ts_gpt_grads_to_host(gpt, g1), TS_OK);

    struct ts_tensor buf, row;
    cr_assert_eq(ts_op_alloc(be, &buf, TS_DTYPE_F32, 2, rows), TS_OK);
    const int64_t bt = 16;
    cr_assert_eq(ts_tensor_view(&row, &buf, 16, 1, &bt), TS_OK); /* row 1 of 3 */
    cr_assert_eq(ts_gpt_zero_grad(gpt), TS_OK);
    cr_assert_eq(ts_gpt_forward_losses(gpt, in, tg, 2, 8, 1.0f / 16, &row, NULL), TS_OK, "%s",
                 ts_last_error());
    cr_assert_eq(ts_gpt_backward(gpt), TS_OK, "%s", ts_last_error());
    cr_assert_eq(ts_gpt_grads_to_host(gpt, g2), TS_OK);
    cr_assert_eq(memcmp(g1, g2, (size_t)n * sizeof(float)), 0, "gradients differ");
    cr_assert_eq(ts_op_download(be, host, &buf, sizeof(host)), TS_OK);
    double sum = 0;
    for (int i = 0; i < 16; i++) {
        cr_assert_eq(host[i], 0.0f); /* rows 0 and 2 untouched */
        cr_assert_eq(host[32 + i], 0.0f);
        sum += host[16 + i];
    }
    cr_assert_eq((float)(sum / 16.0), loss, "%.9g vs %.9g", sum / 16.0, (double)loss);

    /* The wrong size or dtype, no targets: refused, and no backward may follow. */
    struct ts_tensor short_row = row;
    short_row.shape[0] = 15;
    cr_assert_eq(ts_gpt_forward_losses(gpt, in, tg, 2, 8, 1.0f / 16, &short_row, NULL),
                 TS_ERR_INVALID_ARG);
    cr_assert(strstr(ts_last_error(), "B*T") != NULL, "%s", ts_last_error());
    struct ts_tensor ints = row;
    ints.dtype = TS_DTYPE_I32;
    cr_assert_eq(ts_gpt_forward_losses(gpt, in, tg, 2, 8, 1.0f / 16, &ints, NULL),
                 TS_ERR_INVALID_ARG);
    cr_assert_eq(ts_gpt_forward_losses(gpt, in, NULL, 2, 8, 1.0f / 16, &row, NULL),
                 TS_ERR_INVALID_ARG);
    cr_assert_eq(ts_gpt_backward(gpt), TS_ERR_INVALID_ARG);
    ts_op_free(be, &buf);
    free(g1);
    free(g2);
    ts_gpt_destroy(gpt);
    ts_backend_destroy(be);
}

/* A micro-batch smaller than the arena uses prefix views: it must give exactly what a model
 * sized for that batch gives, losses and gradients. */
Test(trainer_gpt, smaller_batch_matches_exact_arena) {
    struct ts_backend *be = test_backend(1);
    ts_gpt_t *big = make_tiny(be, 4, 16), *exact = make_tiny(be, 2, 8);
    cr_assert_eq(ts_gpt_init(big, 5), TS_OK);
    cr_assert_eq(ts_gpt_init(exact, 5), TS_OK);
    uint16_t ids[17 * 2];
    test_random_tokens(ids, 34, 300, 99);
    int32_t in[16], tg[16];
    for (int b = 0; b < 2; b++)
        for (int t = 0; t < 8; t++) {
            in[b * 8 + t] = ids[b * 17 + t];
            tg[b * 8 + t] = ids[b * 17 + t + 1];
        }
    const int64_t n = ts_gpt_num_params(big);
    float *g1 = malloc((size_t)n * sizeof(float)), *g2 = malloc((size_t)n * sizeof(float));
    float l1, l2;
    /* Dirty the big arena with a full-size batch first. */
    int32_t in_big[64] = {0}, tg_big[64] = {0};
    for (int i = 0; i < 64; i++) {
        in_big[i] = (i * 7) % 300;
        tg_big[i] = (i * 11) % 300;
    }
    cr_assert_eq(ts_gpt_forward(big, in_big, tg_big, 4, 16, 1.0f / 64, NULL), TS_OK);
    cr_assert_eq(ts_gpt_backward(big), TS_OK);
    cr_assert_eq(ts_gpt_zero_grad(big), TS_OK);

    cr_assert_eq(ts_gpt_forward(big, in, tg, 2, 8, 1.0f / 16, &l1), TS_OK, "%s", ts_last_error());
    cr_assert_eq(ts_gpt_backward(big), TS_OK, "%s", ts_last_error());
    cr_assert_eq(ts_gpt_forward(exact, in, tg, 2, 8, 1.0f / 16, &l2), TS_OK);
    cr_assert_eq(ts_gpt_backward(exact), TS_OK);
    cr_assert_eq(ts_gpt_grads_to_host(big, g1), TS_OK);
    cr_assert_eq(ts_gpt_grads_to_host(exact, g2), TS_OK);
    cr_assert_float_eq(l1, l2, 1e-6f * fabsf(l2), "%g vs %g", l1, l2);
    double num = 0, den = 0;
    for (int64_t i = 0; i < n; i++) {
        num += ((double)g1[i] - g2[i]) * ((double)g1[i] - g2[i]);
        den += (double)g2[i] * g2[i];
    }
    cr_assert(den > 0);
    cr_assert(sqrt(num / den) < 1e-6, "gradients differ: rel %g", sqrt(num / den));
    free(g1);
    free(g2);
    ts_gpt_destroy(big);
    ts_gpt_destroy(exact);
    ts_backend_destroy(be);
}

/* The model's flash attention wiring on the CPU: a CPU backend that says its flash pair is
 * usable makes the model keep lse (B,NH,T) instead of the probabilities and call the flash pair.
 * The CPU's flash pair computes the materialised pair's numbers, so loss and gradients must
 * come out bit-identical. */
static bool always_usable(struct ts_backend *be, int head_size, enum ts_dtype dtype) {
    (void)be;
    (void)head_size;
    (void)dtype;
    return true;
}

Test(trainer_gpt, flash_attention_path_matches_materialised) {
    struct ts_backend *ref = test_backend(1), *fl = test_backend(1);
    fl->flash_attention_usable = always_usable;
    fl->attention_forward = NULL; /* so the model can only have taken the flash path */
    fl->attention_backward = NULL;
    ts_gpt_t *a = make_tiny(ref, 2, 16), *b = make_tiny(fl, 2, 16);
    cr_assert_eq(ts_gpt_init(a, 9), TS_OK);
    cr_assert_eq(ts_gpt_init(b, 9), TS_OK);
    uint16_t ids[2 * 17];
    test_random_tokens(ids, 34, 300, 5);
    int32_t in[32], tg[32];
    for (int r = 0; r < 2; r++)
        for (int t = 0; t < 16; t++) {
            in[r * 16 + t] = ids[r * 17 + t];
            tg[r * 16 + t] = ids[r * 17 + t + 1];
        }
    float la, lb;
    cr_assert_eq(ts_gpt_forward(a, in, tg, 2, 16, 1.0f / 32, &la), TS_OK, "%s", ts_last_error());
    cr_assert_eq(ts_gpt_backward(a), TS_OK, "%s", ts_last_error());
    cr_assert_eq(ts_gpt_forward(b, in, tg, 2, 16, 1.0f / 32, &lb), TS_OK, "%s", ts_last_error());
    cr_assert_eq(ts_gpt_backward(b), TS_OK, "%s", ts_last_error());
    cr_assert_eq(memcmp(&la, &lb, sizeof la), 0, "loss %.9g vs %.9g", la, lb);
    const int64_t n = ts_gpt_num_params(a);
    float *ga = malloc((size_t)n * sizeof(float)), *gb = malloc((size_t)n * sizeof(float));
    cr_assert_eq(ts_gpt_grads_to_host(a, ga), TS_OK);
    cr_assert_eq(ts_gpt_grads_to_host(b, gb), TS_OK);
    cr_assert_eq(memcmp(ga, gb, (size_t)n * sizeof(float)), 0, "gradients differ");
    free(ga);
    free(gb);
    ts_gpt_destroy(a);
    ts_gpt_destroy(b);
    ts_backend_destroy(ref);
    ts_backend_destroy(fl);
}

Test(trainer_gpt, dimension_limits_named) {
    const struct {
        int field, value;
        const char *msg;
    } cases[] = {
        {0, 357913942, "num_layers must be in [1, 1024], got 357913942"},
        {1, 2048, "num_heads must be in [1, 1024]"},
        {2, 1 << 20, "channels must be in [1, 65536]"},
        {3, 100000, "max_seq_len must be in [1, 65536], got 100000"},
        {4, 1 << 24, "vocab_size must be in [1, 65536]"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct ts_gpt_config cfg = test_tiny_config();
        int *f[] = {&cfg.num_layers, &cfg.num_heads, &cfg.channels, &cfg.max_seq_len,
                    &cfg.vocab_size};
        *f[cases[i].field] = cases[i].value;
        cr_assert_eq(ts_gpt_config_finish(&cfg), TS_ERR_INVALID_ARG);
        cr_assert(strstr(ts_last_error(), cases[i].msg) != NULL, "%s", ts_last_error());
    }
}

Test(trainer_gpt, param_count_from_config) {
    struct ts_gpt_config cfg = {.max_seq_len = 1024,
                                .vocab_size = 50257,
                                .num_layers = 12,
                                .num_heads = 12,
                                .channels = 768};
    int64_t n = 0;
    cr_assert_eq(ts_gpt_config_num_params(&cfg, &n), TS_OK, "%s", ts_last_error());
    cr_assert_eq(n, 124439808LL + (50304 - 50257) * 768LL);
    /* the largest model the limits allow still counts in int64 */
    cfg = (struct ts_gpt_config){.max_seq_len = TS_GPT_MAX_SEQ_LEN,
                                 .vocab_size = TS_GPT_MAX_VOCAB,
                                 .num_layers = TS_GPT_MAX_LAYERS,
                                 .num_heads = TS_GPT_MAX_HEADS,
                                 .channels = TS_GPT_MAX_CHANNELS};
    cr_assert_eq(ts_gpt_config_num_params(&cfg, &n), TS_OK, "%s", ts_last_error());
    cr_assert_eq(n, 1024LL * (12LL * 65536 * 65536 + 13 * 65536) + 2LL * 65536 * 65536 + 2 * 65536);
    /* whose activations at a huge batch overflow, refused before any allocation */
    struct ts_backend *be = test_backend(1);
    ts_gpt_t *gpt = NULL;
    cr_assert_eq(ts_gpt_create(&gpt, &cfg, be, 1 << 30, TS_GPT_MAX_SEQ_LEN), TS_ERR_INVALID_ARG);
    cr_assert_null(gpt);
    cr_assert(strstr(ts_last_error(), "overflow") != NULL, "%s", ts_last_error());
    ts_backend_destroy(be);
}

/* ---- tensor parallelism: sizes and initialisation, no collectives ---- */

static ts_status no_collective(void *ctx, struct ts_backend *be, const struct ts_tensor *t) {
    (void)ctx, (void)be, (void)t;
    return ts_error(TS_ERR_INTERNAL, "this test runs no forward");
}

Test(trainer_gpt, padded_vocab_divides_by_tp_and_keeps_tp_1) {
    cr_assert_eq(ts_gpt_padded_vocab(50257, 1), 50304);
    cr_assert_eq(ts_gpt_padded_vocab(50257, 2), 50304, "a power of two keeps tp 1's padding");
    cr_assert_eq(ts_gpt_padded_vocab(50257, 8), 50304);
    cr_assert_eq(ts_gpt_padded_vocab(50257, 3), 50304, "393 = 3 x 131 blocks of 128");
    cr_assert_eq(ts_gpt_padded_vocab(200, 3), 384, "lcm(128, 3) = 384");
    cr_assert_eq(ts_gpt_padded_vocab(64, 256), 256, "lcm(128, 256) = 256");
    cr_assert_eq(ts_gpt_padded_vocab(128, 1), 128);
}

struct same_ctx {
    const float *split, *whole;
    int64_t split_off, whole_off, bad;
};

static void same_run(void *ctx, int64_t local, int64_t global, int64_t len) {
    struct same_ctx *c = ctx;
    for (int64_t k = 0; k < len; k++)
        c->bad += c->split[c->split_off + local + k] != c->whole[c->whole_off + global + k];
}

/* Every rank of tp 2 and 4 holds 1/tp of each split tensor (wte by vocabulary rows), the same
 * replicated ones, a smaller activation arena, and exactly tp 1's initial values in global
 * coordinates. */
Test(trainer_gpt, tp_ranks_hold_their_share_of_the_tp_1_model) {
    struct ts_backend *be = test_backend(1);
    struct ts_gpt_config cfg = {
        .max_seq_len = 16, .vocab_size = 200, .num_layers = 2, .num_heads = 4, .channels = 32};
    ts_gpt_t *one = NULL;
    cr_assert_eq(ts_gpt_create(&one, &cfg, be, 2, 16), TS_OK, "%s", ts_last_error());
    cr_assert_eq(ts_gpt_init(one, 5), TS_OK);
    float *whole = malloc((size_t)ts_gpt_num_params(one) * sizeof(float));
    cr_assert_eq(ts_gpt_params_to_host(one, whole), TS_OK);
    int count = 0;
    const struct ts_param_info *t1 = ts_gpt_params(one, &count);
    for (int tp = 2; tp <= 4; tp *= 2)
        for (int r = 0; r < tp; r++) {
            struct ts_gpt_tp group = {.size = tp,
                                      .rank = r,
                                      .all_reduce = no_collective,
                                      .all_reduce_max = no_collective};
            ts_gpt_t *g = NULL;
            cr_assert_eq(ts_gpt_create_tp(&g, &cfg, be, 2, 16, &group), TS_OK, "%s",
                         ts_last_error());
            cr_assert_eq(ts_gpt_init(g, 5), TS_OK);
            const struct ts_param_info *t = ts_gpt_params(g, NULL);
            cr_assert_eq(t[0].split_dim, 0, "wte is split by rows");
            cr_assert_eq(t[0].shape[0], 256 / tp);
            cr_assert_eq(t[0].global_shape[0], 256);
            int64_t split = 0, split1 = 0, repl = 0, repl1 = 0;
            for (int i = 0; i < count; i++) {
                (t[i].split_dim >= 0 ? &split : &repl)[0] += t[i].numel;
                (t[i].split_dim >= 0 ? &split1 : &repl1)[0] += t1[i].numel;
            }
            cr_assert_eq(split * tp, split1, "tp %d: split tensors hold 1/tp", tp);
            cr_assert_eq(repl, repl1, "tp %d: replicated tensors are whole", tp);
            cr_assert_lt(ts_gpt_activation_bytes(g), ts_gpt_activation_bytes(one));
            cr_assert_eq(ts_gpt_num_flop_params(g), ts_gpt_num_flop_params(one));
            float *mine = malloc((size_t)ts_gpt_num_params(g) * sizeof(float));
            cr_assert_eq(ts_gpt_params_to_host(g, mine), TS_OK);
            for (int i = 0; i < count; i++) {
                struct same_ctx c = {mine, whole, t[i].offset, t1[i].offset, 0};
                ts_gpt_tensor_runs(g, i, same_run, &c);
                cr_assert_eq(c.bad, 0, "tp %d rank %d: %s differs from tp 1 at %lld elements", tp,
                             r, t[i].name, (long long)c.bad);
            }
            free(mine);
            ts_gpt_destroy(g);
        }
    free(whole);
    ts_gpt_destroy(one);
    ts_backend_destroy(be);
}
