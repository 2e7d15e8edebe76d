/* test_ledger_runs.c: the ledger of real `tessera train` runs: stopped and resumed twice it is
 * one ledger whose tokens equal the uninterrupted run's, with three segments and the restarts
 * in goodput; a resume from an older checkpoint counts the redone steps as lost; the MFU is the
 * model's matmul FLOPs, counted here from its shapes, over the CPU's peak. */
#include <criterion/criterion.h>
#include <json-c/json.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli_util.h"

#define L 2
#define C 64
#define T 16
#define V 64
#define RUN_FLAGS                                                                                  \
    "--vocab-size 64 --layers 2 --heads 2 --channels 64 --seq-len 16 --batch 2 --threads 1 "       \
    "--log-every 100 --steps 12 --price-per-gpu-hour 1.5 --price-per-kwh 0.25"

/* The --json object of `tessera cost` for dir. */
static struct json_object *cost_json(const char *dir) {
    struct cli_result r;
    cli_run(&r, "cost --json %s", dir);
    cr_assert_eq(r.code, 0, "%s", r.err);
    struct json_object *o = json_tokener_parse(r.out);
    cr_assert_not_null(o, "%s", r.out);
    return o;
}

static double jnum(struct json_object *o, const char *key) {
    struct json_object *v;
    cr_assert(json_object_object_get_ex(o, key, &v), "no %s", key);
    return json_object_is_type(v, json_type_null) ? NAN : json_object_get_double(v);
}

Test(launch_ledger_runs, stopped_and_resumed_twice_is_one_ledger, .timeout = 300) {
    char dir[256], data[320];
    cli_tmpdir(dir, sizeof(dir));
    snprintf(data, sizeof(data), "%s/train_000.bin", dir);
    cli_write_pattern_shard(data, 20000, V, 1);
    struct cli_result r;
    cli_run(&r, "train " RUN_FLAGS " --data %s --out %s/whole", data, dir);
    cr_assert_eq(r.code, 0, "%s", r.err);
    cli_run(&r, "train " RUN_FLAGS " --data %s --out %s/parts --stop-after 4", data, dir);
    cr_assert_eq(r.code, 0, "%s", r.err);
    cli_run(&r, "train --data %s --out %s/parts --threads 1 --resume --stop-after 8", data, dir);
    cr_assert_eq(r.code, 0, "%s", r.err);
    cli_run(&r, "train --data %s --out %s/parts --threads 1 --resume", data, dir);
    cr_assert_eq(r.code, 0, "%s", r.err);
    char whole[300], parts[300];
    snprintf(whole, sizeof(whole), "%s/whole", dir);
    snprintf(parts, sizeof(parts), "%s/parts", dir);
    struct json_object *w = cost_json(whole), *p = cost_json(parts);
    cr_expect_eq(jnum(w, "tokens"), 12 * 2 * T);
    cr_expect_eq(jnum(p, "tokens"), jnum(w, "tokens"));
    cr_expect_eq(jnum(p, "segments"), 3);
    cr_expect_eq(jnum(p, "restarts"), 2);
    cr_expect_eq(jnum(p, "lost_steps"), 0);
    /* the prices were given once and adopted by both resumes */
    cr_expect_float_eq(jnum(p, "usd_per_device_hour"), 1.5, 1e-12);
    char ledger[320];
    snprintf(ledger, sizeof(ledger), "%s/ledger.jsonl", parts);
    cr_expect_eq(cli_count_lines(ledger, "\"usd_per_device_hour\":1.5"), 6);
    cr_expect_eq(cli_count_lines(ledger, "\"type\":\"step\""), 12);
    /* goodput carries three start-ups and three final saves; steady state does not */
    cr_expect_gt(jnum(p, "goodput_usd_per_1m_tokens"), jnum(p, "usd_per_1m_tokens"));
    cr_expect_float_eq(jnum(p, "goodput_usd_per_1m_tokens"),
                       jnum(p, "usd") / jnum(p, "tokens") * 1e6, 1e-12);
    cr_expect_float_eq(jnum(p, "usd"), jnum(p, "device_seconds") / 3600 * 1.5, 1e-15,
                       "no energy measured here: device-hours alone");
    json_object_put(w);
    json_object_put(p);

    /* back to the checkpoint at step 4 after step 12 was recorded: 8 steps lost and redone */
    cli_run(&r,
            "train --data %s --out %s/parts --threads 1 --overwrite --resume-from "
            "%s/parts/checkpoints/step_00000004",
            data, dir, dir);
    cr_assert_eq(r.code, 0, "%s", r.err);
    p = cost_json(parts);
    cr_expect_eq(jnum(p, "segments"), 4);
    cr_expect_eq(jnum(p, "lost_steps"), 8);
    cr_expect_eq(jnum(p, "tokens"), 12 * 2 * T, "a redone step counts once");
    json_object_put(p);
    cli_rmdir(dir);
}

/* Forward FLOPs per token from the matmul shapes: per layer qkv (C -> 3C), attention projection
 * (C -> C), fc (C -> 4C), fc projection (4C -> C), QK^T and AV over T positions (2 T C each);
 * the classifier (C -> V, real rows only); backward twice forward. */
static double matmul_flops_per_token(void) {
    const double per_layer = 2.0 * C * 3 * C + 2.0 * C * C + 2.0 * C * 4 * C + 2.0 * 4 * C * C +
                             2.0 * T * C + 2.0 * T * C;
    return 3.0 * (L * per_layer + 2.0 * C * V);
}

Test(launch_ledger_runs, cpu_mfu_is_matmul_flops_over_the_peak, .timeout = 300) {
    char dir[256], data[320], ledger[320];
    cli_tmpdir(dir, sizeof(dir));
    snprintf(data, sizeof(data), "%s/train_000.bin", dir);
    cli_write_pattern_shard(data, 20000, V, 1);
    struct cli_result r;
    cli_run(&r, "train " RUN_FLAGS " --data %s --out %s/m", data, dir);
    cr_assert_eq(r.code, 0, "%s", r.err);
    snprintf(ledger, sizeof(ledger), "%s/m/ledger.jsonl", dir);
    FILE *f = fopen(ledger, "r");
    cr_assert_not_null(f);
    char line[4096];
    double fpt = 0, peak = 0;
    int checked = 0;
    while (fgets(line, sizeof(line), f) != NULL) {
        struct json_object *o = json_tokener_parse(line);
        cr_assert_not_null(o, "%s", line);
        struct json_object *type;
        cr_assert(json_object_object_get_ex(o, "type", &type));
        if (strcmp(json_object_get_string(type), "segment_start") == 0) {
            fpt = jnum(o, "flops_per_token");
            peak = jnum(o, "peak_flops_per_device");
            struct json_object *how;
            cr_assert(json_object_object_get_ex(o, "peak", &how));
            cr_expect_not_null(strstr(json_object_get_string(how), "FLOP/cycle"), "%s", line);
        } else if (strcmp(json_object_get_string(type), "step") == 0) {
            cr_assert_gt(peak, 0, "this machine's CPU peak is known");
            /* MFU counts the matmuls and 6 FLOPs per non-matmul parameter (biases, layernorms:
             * 13 C per layer and 2 C at the end), which 6N includes: within that of the matmuls */
            const double mine = matmul_flops_per_token();
            const double extra = 6.0 * (13.0 * L * C + 2.0 * C);
            cr_expect_float_eq(fpt, mine + extra, 1e-6 * fpt, "6N + 12LCT %g vs shapes %g + %g",
                               fpt, mine, extra);
            const double mfu = mine * jnum(o, "tokens") / (jnum(o, "wall_s") * peak);
            cr_expect_float_eq(jnum(o, "mfu"), mfu, 0.02 * mfu, "step MFU %g vs %g", jnum(o, "mfu"),
                               mfu);
            cr_expect_lt(jnum(o, "mfu"), 1.0);
            checked++;
        }
        json_object_put(o);
    }
    fclose(f);
    cr_expect_eq(checked, 12);
    cli_rmdir(dir);
}
