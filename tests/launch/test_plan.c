/* test_plan.c: the planner (launch/plan.c): its collective formulas, its memory against the
 * buffers a real model and optimizer allocate (ZeRO-1 and tensor-parallel shards included), the
 * layouts it refuses, calibration recovering known terms, and `tessera plan`'s JSON and errors. */
#include <criterion/criterion.h>
#include <json-c/json.h>
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "cli_util.h"
#include "kernels/cpu/cpu_backend.h"
#include "launch/plan.h"
#include "trainer/gpt.h"
#include "trainer/optim.h"

Test(launch_plan, ring_and_tree_formulas) {
    /* 2(n-1)/n S/bw + 2(n-1) lat */
    cr_assert_float_eq(ts_plan_ring_all_reduce_s(4, 1e6, 1e9, 1e-6), 1.5e-3 + 6e-6, 1e-15);
    cr_assert_float_eq(ts_plan_ring_all_reduce_s(8, 8e6, 2e9, 0), 2.0 * 7 / 8 * 4e-3, 1e-15);
    /* reduce-scatter / all-gather: half of the all-reduce */
    cr_assert_float_eq(ts_plan_ring_half_s(4, 1e6, 1e9, 1e-6), 0.75e-3 + 3e-6, 1e-15);
    /* tree: 2 S/bw + 2 ceil(log2 n) lat */
    cr_assert_float_eq(ts_plan_tree_all_reduce_s(5, 1e6, 1e9, 1e-6), 2e-3 + 6e-6, 1e-15);
    cr_assert_eq(ts_plan_ring_all_reduce_s(1, 1e9, 1e9, 1), 0);
    cr_assert_eq(ts_plan_tree_all_reduce_s(1, 1e9, 1e9, 1), 0);
}

Test(launch_plan, model_names_and_specs) {
    struct ts_plan_model m;
    cr_assert_eq(ts_plan_model_parse("124m", &m), TS_OK);
    cr_assert(m.layers == 12 && m.heads == 12 && m.channels == 768 && m.padded_vocab == 50304);
    cr_assert_eq(ts_plan_model_parse("1.5B", &m), TS_OK);
    cr_assert(m.layers == 48 && m.heads == 25 && m.channels == 1600);
    /* GPT-2 124M: 124.4M parameters with wpe 1024 and V 50257 (not the padded rows) */
    cr_assert_eq(ts_plan_model_parse("124m", &m), TS_OK);
    const double n = (double)ts_plan_params_per_rank(&m, 1024, 1) - (50304 - 50257) * 768.0;
    cr_assert_float_eq(n, 124439808.0, 0.5);
    cr_assert_eq(ts_plan_model_parse("2,4,64,64", &m), TS_OK);
    cr_assert(m.vocab == 64 && m.padded_vocab == 128);
    cr_assert_eq(ts_plan_model_parse("12,5,768", &m), TS_ERR_INVALID_ARG);
    cr_assert(strstr(ts_last_error(), "multiple of heads") != NULL, "%s", ts_last_error());
    cr_assert_eq(ts_plan_model_parse("big", &m), TS_ERR_INVALID_ARG);
    cr_assert_eq(ts_plan_model_parse("12,12", &m), TS_ERR_INVALID_ARG);
}

/* A tensor-parallel group the model is only created over (no forward runs). */
static ts_status no_sum(void *ctx, struct ts_backend *be, const struct ts_tensor *buf) {
    (void)ctx, (void)be, (void)buf;
    return TS_OK;
}

static size_t optim_bytes(ts_optim_t *o) {
    struct ts_tensor m, v, master;
    ts_optim_moments(o, &m, &v);
    size_t b = ts_tensor_nbytes(&m) + ts_tensor_nbytes(&v) + 4; /* + the norm's float */
    if (ts_optim_master(o, &master))
        b += ts_tensor_nbytes(&master);
    return b;
}

/* The planner's bytes against the buffers gpt.c and optim.c allocate, for dp ranks of which
 * rank r's ZeRO-1 slice is [r n/dp, (r+1) n/dp) (train.c). */
static void check_memory(int L, int NH, int C, int V, int T, int B, int tp, int dp, int zero) {
    struct ts_backend *be = NULL;
    const struct ts_cpu_options opt = {.threads = 1};
    cr_assert_eq(ts_cpu_backend_create(&be, &opt), TS_OK, "%s", ts_last_error());
    struct ts_gpt_config cfg = {
        .max_seq_len = T, .vocab_size = V, .num_layers = L, .num_heads = NH, .channels = C};
    const struct ts_gpt_tp group = {
        .size = tp, .rank = 0, .all_reduce = no_sum, .all_reduce_max = no_sum};
    ts_gpt_t *gpt = NULL;
    cr_assert_eq(ts_gpt_create_tp(&gpt, &cfg, be, B, T, &group), TS_OK, "%s", ts_last_error());
    const int64_t n = ts_gpt_num_params(gpt);
    size_t most = 0;
    for (int r = 0; r < (zero ? dp : 1); r++) {
        ts_optim_t *o = NULL;
        const struct ts_adamw_config ac = ts_adamw_defaults();
        const int64_t b = zero ? r * n / dp : 0, e = zero ? (r + 1) * n / dp : n;
        cr_assert_eq(ts_optim_create_range(&o, gpt, &ac, b, e), TS_OK, "%s", ts_last_error());
        const size_t ob = optim_bytes(o);
        most = ob > most ? ob : most;
        ts_optim_destroy(o);
    }
    char spec[64];
    snprintf(spec, sizeof(spec), "%d,%d,%d,%d", L, NH, C, V);
    struct ts_plan_model m;
    cr_assert_eq(ts_plan_model_parse(spec, &m), TS_OK);
    struct ts_plan_device dev;
    ts_plan_device_cpu(1e11, 64e9, 20e9, dp * tp, "test", &dev);
    const struct ts_plan_layout lay = {dp, tp, zero, B, 1};
    struct ts_plan_memory pm;
    ts_plan_memory_of(&m, &dev, T, &lay, &pm);
    cr_assert_eq(ts_plan_params_per_rank(&m, T, tp), n, "parameters: planner %lld, model %lld",
                 (long long)ts_plan_params_per_rank(&m, T, tp), (long long)n);
    cr_assert_float_eq(pm.params, (double)ts_tensor_nbytes(ts_gpt_param_buffer(gpt)), 0.5);
    cr_assert_float_eq(pm.grads, (double)ts_tensor_nbytes(ts_gpt_grad_buffer(gpt)), 0.5);
    cr_assert_float_eq(pm.optim, (double)most, 0.5, "optimizer: planner %.0f, allocated %zu",
                       pm.optim, most);
    cr_assert_float_eq(pm.activations, (double)ts_gpt_activation_bytes(gpt), 0.5,
                       "activations: planner %.0f, allocated %lld", pm.activations,
                       (long long)ts_gpt_activation_bytes(gpt));
    ts_gpt_destroy(gpt);
    ts_backend_destroy(be);
}

Test(launch_plan, memory_equals_what_the_model_allocates) {
    check_memory(2, 4, 64, 64, 16, 3, 1, 1, 0);
    check_memory(3, 2, 48, 100, 32, 2, 1, 2, 1); /* ZeRO-1 at dp 2 */
    check_memory(2, 4, 64, 64, 16, 2, 1, 3, 1);  /* an uneven slice */
    check_memory(2, 4, 64, 64, 16, 2, 2, 1, 0);  /* tp 2: split tensors halved */
    check_memory(2, 4, 64, 200, 16, 2, 4, 1, 0); /* tp 4: the vocabulary slices, the xent stats */
    check_memory(2, 6, 48, 200, 16, 2, 3, 2, 1); /* tp 3 pads the vocabulary to 384 */
}

Test(launch_plan, zero1_bf16_optimizer_state_analytically) {
    /* GPT-2 124M on a bf16 GPU at dp 2, ZeRO-1: m, v and fp32 master over half the buffer */
    struct ts_plan_model m;
    cr_assert_eq(ts_plan_model_parse("124m", &m), TS_OK);
    struct ts_plan_device dev;
    cr_assert_eq(ts_plan_device_gpu("h100", &dev), TS_OK);
    const int64_t n = ts_plan_params_per_rank(&m, 1024, 1);
    struct ts_plan_memory z0, z1;
    const struct ts_plan_layout a = {2, 1, 0, 4, 1}, b = {2, 1, 1, 4, 1};
    ts_plan_memory_of(&m, &dev, 1024, &a, &z0);
    ts_plan_memory_of(&m, &dev, 1024, &b, &z1);
    cr_assert_float_eq(z0.params, 2.0 * n, 0.5);
    cr_assert_float_eq(z0.grads, 4.0 * n, 0.5);
    cr_assert_float_eq(z0.optim, 12.0 * n + 4, 0.5);
    cr_assert_float_eq(z1.optim, 12.0 * (double)((n + 1) / 2) + 4, 0.5);
    cr_assert_float_eq(z1.params, z0.params, 0.5);
}

static bool refused_with(const struct ts_plan_row *rows, int n, int tp, const char *words) {
    for (int i = 0; i < n; i++)
        if (rows[i].layout.tp == tp && !rows[i].fits && strstr(rows[i].reason, words) != NULL)
            return true;
    return false;
}

Test(launch_plan, enumeration_refuses_what_tessera_cannot_run) {
    struct ts_plan_model m;
    cr_assert_eq(ts_plan_model_parse("124m", &m), TS_OK);
    struct ts_plan_cluster cl = {.gpus = 16, .gpus_per_node = 8};
    ts_plan_device_cpu(1e12, 1e12, 1e11, 8, "test", &cl.dev);
    const struct ts_plan_eff eff = ts_plan_eff_defaults(&cl.dev);
    const struct ts_plan_job job = {.seq_len = 256, .global_batch = 32, .usd_per_gpu_hour = -1};
    static struct ts_plan_row rows[512];
    int n = 0;
    cr_assert_eq(ts_plan_enumerate(&m, &cl, &eff, &job, rows, 512, &n), TS_OK);
    cr_assert(n > 0 && n <= 512);
    /* 12 heads: tp 8 and 16 do not divide them; tp 16 is not within a node of 8 either */
    cr_assert(refused_with(rows, n, 8, "does not divide the 12 heads"));
    cr_assert(refused_with(rows, n, 16, "does not divide the 12 heads"));
    bool tp2 = false, tp4 = false;
    for (int i = 0; i < n; i++) {
        cr_assert((int64_t)rows[i].layout.dp * rows[i].layout.tp == 16);
        if (rows[i].fits) {
            cr_assert_eq((int64_t)rows[i].layout.dp * rows[i].layout.micro_batch *
                             rows[i].layout.grad_accum,
                         32);
            tp2 = tp2 || rows[i].layout.tp == 2;
            tp4 = tp4 || rows[i].layout.tp == 4;
        }
        if (i > 0 && rows[i].fits) /* best first */
            cr_assert(rows[i - 1].device_s_per_token <= rows[i].device_s_per_token);
    }
    cr_assert(tp2 && tp4, "tp 2 and 4 divide 12 heads, 50304 and a node of 8: they run");
    /* GPUs: Tessera's tp runs on the CPU backend only */
    cr_assert_eq(ts_plan_device_gpu("h100", &cl.dev), TS_OK);
    cr_assert_eq(ts_plan_enumerate(&m, &cl, &eff, &job, rows, 512, &n), TS_OK);
    cr_assert(refused_with(rows, n, 2, "CPU backend only"));
    /* a layout that does not fit in memory says so */
    cl.dev.memory_bytes = 3e9;
    cr_assert_eq(ts_plan_enumerate(&m, &cl, &eff, &job, rows, 512, &n), TS_OK);
    bool oom = false;
    for (int i = 0; i < n; i++)
        oom = oom || (!rows[i].fits && strstr(rows[i].reason, "GiB per device") != NULL);
    cr_assert(oom);
    char why[1024];
    ts_plan_explain(rows, n, why, sizeof(why));
    cr_assert(strstr(why, "wins") != NULL || strstr(why, "no layout fits") != NULL, "%s", why);
}

Test(launch_plan, calibration_recovers_known_terms) {
    /* synthetic runs predicted with known terms: the fit finds them and the residuals vanish */
    const struct ts_plan_eff truth = {
        .matmul = 0.3, .memory = 0.6, .overlap = 0.4, .overhead_s = 2e-3, .latency = 50};
    static struct ts_plan_sample s[8];
    const int L[2] = {2, 4}, C[2] = {64, 128}, ranks[4] = {1, 2, 4, 2};
    int n = 0;
    for (int a = 0; a < 2; a++)
        for (int r = 0; r < 4; r++, n++) {
            char spec[64];
            snprintf(spec, sizeof(spec), "%d,4,%d,64", L[a], C[a]);
            cr_assert_eq(ts_plan_model_parse(spec, &s[n].model), TS_OK);
            ts_plan_device_cpu(1e11, 1e10, 1e10, ranks[r], "test", &s[n].cluster.dev);
            s[n].cluster.dev.intra_bw = 1e8; /* a slow link, so the gradient bytes count */
            s[n].cluster.gpus = s[n].cluster.gpus_per_node = ranks[r];
            s[n].layout = (struct ts_plan_layout){ranks[r], 1, r == 3, 4 + 4 * (r == 3), 1};
            s[n].job = (struct ts_plan_job){.seq_len = 64 * (1 + a),
                                            .global_batch = (int64_t)ranks[r] * (4 + 4 * (r == 3)),
                                            .usd_per_gpu_hour = -1};
            struct ts_plan_row row;
            ts_plan_predict(&s[n].model, &s[n].cluster, &truth, &s[n].job, &s[n].layout, &row);
            cr_assert(row.fits, "%s", row.reason);
            s[n].step_s = row.time.step;
        }
    struct ts_plan_eff fit;
    const struct ts_plan_eff start = ts_plan_eff_defaults(&s[0].cluster.dev);
    double res[8];
    cr_assert_eq(ts_plan_calibrate(s, n, &start, &fit, res), TS_OK, "%s", ts_last_error());
    for (int i = 0; i < n; i++)
        cr_assert(fabs(res[i]) < 1e-6, "run %d residual %g", i, res[i]);
    cr_assert_float_eq(fit.matmul, truth.matmul, 1e-6);
    cr_assert_float_eq(fit.overhead_s, truth.overhead_s, 1e-8);
    cr_assert_float_eq(fit.latency, truth.latency, 1e-4);
    cr_assert_eq(ts_plan_calibrate(s, 0, &start, &fit, res), TS_ERR_INVALID_ARG);
}

Test(launch_plan, json_rows_best_first) {
    struct cli_result r;
    cli_run(&r, "plan --model 124m --device h100 --gpus 16 --gpus-per-node 8 --seq-len 1024 "
                "--global-batch 64 --tokens 1e9 --price-per-gpu-hour 2.49 --json");
    cr_assert_eq(r.code, 0, "%s", r.err);
    struct json_object *arr = json_tokener_parse(r.out);
    cr_assert(arr != NULL && json_object_is_type(arr, json_type_array), "%s", r.out);
    const int n = (int)json_object_array_length(arr);
    cr_assert(n > 2);
    const char *keys[] = {"dp",           "tp",  "zero",         "micro_batch",      "grad_accum",
                          "tokens_per_s", "mfu", "memory_bytes", "usd_per_1m_tokens"};
    double last = 0;
    for (int i = 0; i < n; i++) {
        struct json_object *o = json_object_array_get_idx(arr, i), *v;
        for (size_t k = 0; k < sizeof(keys) / sizeof(keys[0]); k++)
            cr_assert(json_object_object_get_ex(o, keys[k], &v), "row %d lacks %s", i, keys[k]);
        cr_assert(json_object_object_get_ex(o, "fits", &v));
        if (!json_object_get_boolean(v))
            continue;
        json_object_object_get_ex(o, "usd_per_1m_tokens", &v);
        const double usd = json_object_get_double(v);
        cr_assert(usd > 0 && usd >= last, "row %d: %g after %g", i, usd, last);
        last = usd;
        json_object_object_get_ex(o, "tp", &v);
        cr_assert_eq(json_object_get_int(v), 1, "GPU rows that fit have tp 1");
    }
    json_object_put(arr);
    /* without a price: null */
    cli_run(&r, "plan --model 124m --device a100 --gpus 8 --global-batch 32 --json");
    cr_assert_eq(r.code, 0, "%s", r.err);
    arr = json_tokener_parse(r.out);
    struct json_object *v;
    cr_assert(
        json_object_object_get_ex(json_object_array_get_idx(arr, 0), "usd_per_1m_tokens", &v));
    cr_assert_null(v);
    json_object_put(arr);
}

Test(launch_plan, bad_flags_exit_2_with_a_message) {
    const struct {
        const char *args, *says;
    } cases[] = {
        {"--device h100 --gpus 8", "--model"},
        {"--model 124m --gpus 8 --device tpu", "not known"},
        {"--model 124m --gpus 0", "--gpus"},
        {"--model 124m --gpus 12 --gpus-per-node 8", "whole number of nodes"},
        {"--model 12,5,768 --gpus 8", "multiple of heads"},
        {"--model 124m --gpus 8 --global-batch 0", "--global-batch"},
        {"--model 124m --gpus 8 --matmul-eff 1.5", "--matmul-eff"},
        {"--model 124m --gpus 8 --frobnicate", "frobnicate"},
        {"--model 124m --gpus 8 stray", "--calibrate"},
        {"--model 124m --gpus 8 --calibrate /nonexistent/run", "/nonexistent/run"},
        {"--model 1.5b --gpus 1 --device a100 --memory-gb 20", "no layout"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct cli_result r;
        cli_run(&r, "plan %s", cases[i].args);
        cr_assert_eq(r.code, 2, "plan %s: exit %d\n%s", cases[i].args, r.code, r.err);
        cr_assert(strstr(r.err, cases[i].says) != NULL, "plan %s: %s", cases[i].args, r.err);
        cr_assert(strchr(r.err, '\n') == r.err + strlen(r.err) - 1, "one line: %s", r.err);
    }
}

/* Damaged measured runs (fuzz_report's findings): a null "type" or "precision" was passed to
 * strcmp, and a wall that is not a positive number made a NaN median. Each is one clear line. */
Test(launch_plan, damaged_calibration_runs_are_refused) {
    char dir[256], run[300], path[400];
    cli_tmpdir(dir, sizeof(dir));
    snprintf(run, sizeof(run), "%s/run", dir);
    const struct {
        const char *ledger, *says;
    } cases[] = {
        {"{\"type\":null}\n{\"type\":\"segment_start\",\"segment\":1,\"device\":null}\n",
         "a segment_start without a device count"},
        {"{\"type\":\"segment_start\",\"segment\":1,\"devices\":1,\"device\":\"cpu\"}\n"
         "{\"type\":\"step\",\"segment\":1,\"wall_s\":-1}\n",
         "wall_s is not a positive number"},
        {"{\"type\":\"segment_start\",\"segment\":1,\"devices\":1,\"device\":\"cpu\"}\n",
         "records no steady steps"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        cli_rmdir(run);
        cr_assert_eq(mkdir(run, 0700), 0);
        snprintf(path, sizeof(path), "%s/ledger.jsonl", run);
        FILE *f = fopen(path, "w");
        cr_assert_not_null(f);
        fputs(cases[i].ledger, f);
        fclose(f);
        snprintf(path, sizeof(path), "%s/config.json", run);
        f = fopen(path, "w");
        cr_assert_not_null(f);
        fputs("{\"model\":{},\"train\":{\"precision\":null}}", f);
        fclose(f);
        struct cli_result r;
        cli_run(&r,
                "plan --model 2,4,64,64 --device cpu --gpus 1 --seq-len 64 --global-batch 4 "
                "--calibrate %s",
                run);
        cr_assert_eq(r.code, 2, "case %zu: exit %d\n%s", i, r.code, r.err);
        cr_assert(strstr(r.err, cases[i].says) != NULL, "case %zu: %s", i, r.err);
    }
    cli_rmdir(dir);
}
