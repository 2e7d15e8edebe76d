/* test_ckpt.c: checkpoints as a user meets them through `tessera`: stop and resume bit-exactly,
 * --resume without a checkpoint, flags a checkpoint fixes, --init-from, --keep-last,
 * `tessera ckpt inspect|verify`, eval from a run, a checkpoint or an old model.bin, model.h5
 * through h5py against what eval loads, and SIGKILL of training at random moments. */
#include <criterion/criterion.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "checkpoint/ckpt.h"
#include "cli_util.h"
#include "kernels/cpu/cpu_backend.h"
#include "trainer/state.h"
#include "trainer/weights.h"

#define TINY                                                                                       \
    "--vocab-size 64 --layers 2 --heads 2 --channels 32 --seq-len 16 --batch 2 --grad-accum 2 "    \
    "--lr 3e-3 --warmup 3 --seed 7 --threads 1 --log-every 1000"

static void setup_data(char *dir, size_t len, char *train, size_t tlen) {
    cli_tmpdir(dir, len);
    snprintf(train, tlen, "%s/train_000.bin", dir);
    cli_write_pattern_shard(train, 20000, 64, 1);
}

/* The "loss" values of metrics.jsonl's step lines, in order. */
static int read_losses(const char *path, float *losses, int max) {
    FILE *f = fopen(path, "r");
    cr_assert_not_null(f, "cannot open %s", path);
    char line[4096];
    int n = 0;
    while (fgets(line, sizeof(line), f) != NULL && n < max) {
        const char *p = strstr(line, "\"loss\":");
        if (p != NULL)
            losses[n++] = strtof(p + 7, NULL);
    }
    fclose(f);
    return n;
}

/* Every tensor of both checkpoints' tables bit-identical. */
static void expect_same_state(const char *a, const char *b) {
    ts_ckpt_t *ca = NULL, *cb = NULL;
    cr_assert_eq(ts_ckpt_open(&ca, a), TS_OK, "%s", ts_last_error());
    cr_assert_eq(ts_ckpt_open(&cb, b), TS_OK, "%s", ts_last_error());
    cr_assert_eq(ts_ckpt_meta(ca)->step, ts_ckpt_meta(cb)->step);
    cr_assert_eq(ts_ckpt_meta(ca)->loader_position, ts_ckpt_meta(cb)->loader_position);
    cr_assert_eq(ts_ckpt_meta(ca)->tokens_seen, ts_ckpt_meta(cb)->tokens_seen);
    const char *names[] = {"params/wte.weight", "params/h.1.mlp.c_proj.weight", "params/ln_f.bias",
                           "adam_m/h.0.attn.c_attn.weight", "adam_v/wpe.weight"};
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        struct ts_ckpt_tensor ta = {.dtype = TS_DTYPE_F32, .num_boxes = 1};
        enum ts_dtype dt;
        snprintf(ta.name, sizeof(ta.name), "%s", names[i]);
        cr_assert_eq(ts_ckpt_tensor_info(ca, names[i], &dt, &ta.ndim, ta.shape), TS_OK);
        int64_t n = 1;
        for (int d = 0; d < ta.ndim; d++) {
            ta.boxes[0].extent[d] = ta.shape[d];
            n *= ta.shape[d];
        }
        struct ts_ckpt_tensor tb = ta;
        ta.data = malloc((size_t)n * 4);
        tb.data = malloc((size_t)n * 4);
        cr_assert_eq(ts_ckpt_read(ca, &ta), TS_OK, "%s", ts_last_error());
        cr_assert_eq(ts_ckpt_read(cb, &tb), TS_OK, "%s", ts_last_error());
        cr_assert_eq(memcmp(ta.data, tb.data, (size_t)n * 4), 0, "%s differs", names[i]);
        free(ta.data);
        free(tb.data);
    }
    ts_ckpt_close(ca);
    ts_ckpt_close(cb);
}

/* Every stored tensor and the trainer blob of two checkpoints byte for byte. */
static void expect_identical_checkpoints(const char *a, const char *b) {
    ts_ckpt_t *ca = NULL, *cb = NULL;
    cr_assert_eq(ts_ckpt_open(&ca, a), TS_OK, "%s", ts_last_error());
    cr_assert_eq(ts_ckpt_open(&cb, b), TS_OK, "%s", ts_last_error());
    cr_assert_eq(ts_ckpt_num_tensors(ca), ts_ckpt_num_tensors(cb));
    cr_assert_gt(ts_ckpt_num_tensors(ca), 0);
    for (int i = 0; i < ts_ckpt_num_tensors(ca); i++) {
        const char *name = ts_ckpt_tensor_name(ca, i);
        cr_assert_str_eq(name, ts_ckpt_tensor_name(cb, i));
        struct ts_ckpt_tensor ta = {.num_boxes = 1};
        snprintf(ta.name, sizeof(ta.name), "%s", name);
        cr_assert_eq(ts_ckpt_tensor_info(ca, name, &ta.dtype, &ta.ndim, ta.shape), TS_OK);
        int64_t n = 1;
        for (int d = 0; d < ta.ndim; d++) {
            ta.boxes[0].extent[d] = ta.shape[d];
            n *= ta.shape[d];
        }
        struct ts_ckpt_tensor tb = ta;
        const size_t bytes = (size_t)n * ts_dtype_size(ta.dtype);
        ta.data = malloc(bytes);
        tb.data = malloc(bytes);
        cr_assert_eq(ts_ckpt_read(ca, &ta), TS_OK, "%s", ts_last_error());
        cr_assert_eq(ts_ckpt_read(cb, &tb), TS_OK, "%s", ts_last_error());
        cr_expect_eq(memcmp(ta.data, tb.data, bytes), 0, "%s differs", name);
        free(ta.data);
        free(tb.data);
    }
    char ba[256] = "", bb[256] = "";
    size_t na = 0, nb = 0;
    cr_assert_eq(ts_ckpt_read_blob(ca, "trainer", 0, ba, sizeof(ba), &na), TS_OK);
    cr_assert_eq(ts_ckpt_read_blob(cb, "trainer", 0, bb, sizeof(bb), &nb), TS_OK);
    cr_expect(na == nb && memcmp(ba, bb, na) == 0, "the trainer state differs");
    ts_ckpt_close(ca);
    ts_ckpt_close(cb);
}

/* Saves in the background (the default) store exactly what --sync-save stores, and each save
 * is one metrics line with its stall and its own duration. */
Test(launch_ckpt, background_and_sync_saves_are_identical, .timeout = 300) {
    char dir[256], train[400], a[600], b[600];
    setup_data(dir, sizeof(dir), train, sizeof(train));
    struct cli_result r;
    cli_run(&r, "train --data %s --out %s/async " TINY " --steps 7 --ckpt-every 2", train, dir);
    cr_assert_eq(r.code, 0, "%s", r.err);
    cli_run(&r, "train --data %s --out %s/sync " TINY " --steps 7 --ckpt-every 2 --sync-save",
            train, dir);
    cr_assert_eq(r.code, 0, "%s", r.err);
    const int steps[4] = {2, 4, 6, 7};
    for (int i = 0; i < 4; i++) {
        snprintf(a, sizeof(a), "%s/async/checkpoints/step_%08d", dir, steps[i]);
        snprintf(b, sizeof(b), "%s/sync/checkpoints/step_%08d", dir, steps[i]);
        expect_identical_checkpoints(a, b);
    }
    const char *runs[2] = {"async", "sync"};
    for (int i = 0; i < 2; i++) {
        snprintf(a, sizeof(a), "%s/%s/metrics.jsonl", dir, runs[i]);
        cr_expect_eq(cli_count_lines(a, "\"checkpoint\":"), 4, "%s", runs[i]);
        cr_expect_eq(cli_count_lines(a, "\"save_s\":"), 4, "%s", runs[i]);
        cr_expect_eq(cli_count_lines(a, "\"checkpoint_s\":"), 4, "%s", runs[i]);
    }
    cli_rmdir(dir);
}

Test(launch_ckpt, stop_and_resume_is_bit_exact, .timeout = 300) {
    char dir[256], train[400], ma[400], mb[400], ca[400], cb[400];
    setup_data(dir, sizeof(dir), train, sizeof(train));
    struct cli_result r;
    cli_run(&r, "train --data %s --out %s/a " TINY " --steps 20", train, dir);
    cr_assert_eq(r.code, 0, "%s", r.err);
    cli_run(&r, "train --data %s --out %s/b " TINY " --steps 20 --stop-after 10", train, dir);
    cr_assert_eq(r.code, 0, "%s", r.err);
    cr_expect_not_null(strstr(r.err, "stopped"), "%s", r.err);
    snprintf(mb, sizeof(mb), "%s/b/metrics.jsonl", dir);
    cr_assert_eq(cli_count_lines(mb, "\"loss\":"), 10);
    /* only --data, --out and --resume: the rest comes from the checkpoint */
    cli_run(&r, "train --data %s --out %s/b --threads 1 --steps 20 --resume", train, dir);
    cr_assert_eq(r.code, 0, "%s", r.err);
    cr_expect_not_null(strstr(r.err, "resuming from"), "%s", r.err);
    snprintf(ma, sizeof(ma), "%s/a/metrics.jsonl", dir);
    float la[32], lb[32];
    cr_assert_eq(read_losses(ma, la, 32), 20);
    cr_assert_eq(read_losses(mb, lb, 32), 20, "metrics.jsonl is appended on resume");
    cr_expect_eq(memcmp(la, lb, sizeof(float) * 20), 0, "losses differ after a resume");
    cr_expect_eq(cli_count_lines(mb, "\"checkpoint\":"), 2);
    snprintf(ca, sizeof(ca), "%s/a", dir);
    snprintf(cb, sizeof(cb), "%s/b", dir);
    expect_same_state(ca, cb);
    /* the second checkpoint's parent is the first */
    cli_run(&r, "ckpt inspect %s/b", dir);
    cr_assert_eq(r.code, 0, "%s", r.err);
    cr_expect_not_null(strstr(r.out, "step_00000010"), "%s", r.out);
    cr_expect_not_null(strstr(r.out, "crc32c:"), "%s", r.out);
    cr_expect_not_null(strstr(r.out, "tessera 0."), "%s", r.out);
    /* resuming a finished run does nothing */
    cli_run(&r, "train --data %s --out %s/b --threads 1 --resume", train, dir);
    cr_assert_eq(r.code, 0, "%s", r.err);
    cr_expect_not_null(strstr(r.err, "nothing to do"), "%s", r.err);
    cr_expect_eq(cli_count_lines(mb, "\"loss\":"), 20);
    cli_rmdir(dir);
}

Test(launch_ckpt, resume_rules, .timeout = 300) {
    char dir[256], train[400];
    setup_data(dir, sizeof(dir), train, sizeof(train));
    struct cli_result r;
    /* --resume where there is nothing yet: a fresh start */
    cli_run(&r,
            "train --data %s --out %s/a " TINY " --steps 6 --ckpt-every 2 --keep-last 2 --resume",
            train, dir);
    cr_assert_eq(r.code, 0, "%s", r.err);
    cr_expect_not_null(strstr(r.err, "starting fresh"), "%s", r.err);
    char cmd[600];
    snprintf(cmd, sizeof(cmd), "test $(ls %s/a/checkpoints | grep -c '^step_') -eq 2", dir);
    cr_expect_eq(system(cmd), 0, "--keep-last 2 should leave two checkpoints");
    snprintf(cmd, sizeof(cmd),
             "test -d %s/a/checkpoints/step_00000006 -a -d "
             "%s/a/checkpoints/step_00000004",
             dir, dir);
    cr_expect_eq(system(cmd), 0);

    /* flags that change the model or the global batch are refused, naming the flag */
    cli_run(&r, "train --data %s --out %s/a --steps 10 --resume --layers 3", train, dir);
    cr_expect_eq(r.code, 2, "%s", r.err);
    cr_expect_not_null(strstr(r.err, "--layers 3 differs from the checkpoint's num_layers 2"), "%s",
                       r.err);
    cli_run(&r, "train --data %s --out %s/a --steps 10 --resume --batch 4 --grad-accum 2", train,
            dir);
    cr_expect_eq(r.code, 2, "%s", r.err);
    cr_expect_not_null(strstr(r.err, "--change-batch"), "%s", r.err);
    cr_expect_not_null(strstr(r.err, "global batch of 4"), "%s", r.err);
    /* a new micro-batch keeps the global batch through grad-accum */
    cli_run(&r, "train --data %s --out %s/a --threads 1 --steps 8 --resume --batch 1", train, dir);
    cr_expect_eq(r.code, 0, "%s", r.err);
    cr_expect_not_null(strstr(r.err, "batch 1 x grad-accum 4"), "%s", r.err);
    /* --change-batch allows another global batch */
    cli_run(&r,
            "train --data %s --out %s/a --threads 1 --steps 10 --resume --batch 4 --grad-accum 2 "
            "--change-batch",
            train, dir);
    cr_expect_eq(r.code, 0, "%s", r.err);
    cr_expect_not_null(strstr(r.err, "global batch 8 sequences"), "%s", r.err);

    /* without --resume an existing run is not overwritten by accident */
    cli_run(&r, "train --data %s --out %s/a " TINY " --steps 3", train, dir);
    cr_expect_eq(r.code, 2);
    cr_expect_not_null(strstr(r.err, "already holds checkpoints"), "%s", r.err);

    /* --init-from: weights only; the step count starts at 0, the model must match */
    cli_run(&r, "train --data %s --out %s/ft --threads 1 --steps 3 --lr 1e-4 --init-from %s/a",
            train, dir, dir);
    cr_assert_eq(r.code, 0, "%s", r.err);
    char m[400];
    snprintf(m, sizeof(m), "%s/ft/metrics.jsonl", dir);
    cr_expect_eq(cli_count_lines(m, "\"loss\":"), 3);
    cr_expect_eq(cli_count_lines(m, "{\"step\":1,"), 1);
    cli_run(&r, "ckpt inspect %s/ft", dir);
    cr_expect_not_null(strstr(r.out, "/a/checkpoints/step_00000010"), "parent: %s", r.out);
    cli_run(&r, "train --data %s --out %s/ft2 --steps 3 --channels 64 --init-from %s/a", train, dir,
            dir);
    cr_expect_eq(r.code, 2);
    cr_expect_not_null(strstr(r.err, "--channels 64"), "%s", r.err);
    cli_run(&r, "train --data %s --out %s/ft3 --steps 3 --resume-from %s/nowhere", train, dir, dir);
    cr_expect_eq(r.code, 2);
    cr_expect_not_null(strstr(r.err, "--resume-from"), "%s", r.err);
    cli_rmdir(dir);
}

/* --init-from and --resume-from never train over a run that holds checkpoints unless
 * --overwrite, and --overwrite keeps the checkpoint being read; pruning leaves it alone. */
Test(launch_ckpt, starting_from_a_checkpoint_never_destroys_a_run, .timeout = 300) {
    char dir[256], train[400], m[400];
    setup_data(dir, sizeof(dir), train, sizeof(train));
    struct cli_result r;
    cli_run(&r, "train --data %s --out %s/a " TINY " --steps 4 --ckpt-every 2", train, dir);
    cr_assert_eq(r.code, 0, "%s", r.err);
    snprintf(m, sizeof(m), "%s/a/metrics.jsonl", dir);
    const char *froms[2] = {"init-from", "resume-from"};
    for (int i = 0; i < 2; i++) {
        cli_run(
            &r,
            "train --data %s --out %s/a --threads 1 --steps 3 --%s %s/a/checkpoints/step_00000002",
            train, dir, froms[i], dir);
        cr_expect_eq(r.code, 2, "--%s: %s", froms[i], r.err);
        cr_expect_not_null(strstr(r.err, "already holds checkpoints"), "%s", r.err);
        cr_expect_eq(cli_count_lines(m, "\"loss\":"), 4, "metrics.jsonl untouched");
        char cmd[700];
        snprintf(cmd, sizeof(cmd),
                 "test -d %s/a/checkpoints/step_00000002 -a -d %s/a/checkpoints/step_00000004", dir,
                 dir);
        cr_expect_eq(system(cmd), 0, "the checkpoints are untouched");
    }
    /* fine-tuning inside the run it reads would save over its source's step names */
    cli_run(&r,
            "train --data %s --out %s/a --threads 1 --steps 3 --overwrite --init-from "
            "%s/a/checkpoints/step_00000002",
            train, dir, dir);
    cr_expect_eq(r.code, 2, "%s", r.err);
    cr_expect_not_null(strstr(r.err, "lies inside --out"), "%s", r.err);
    /* --overwrite branching from step 2: step 4 goes, step 2 stays through --keep-last 1 */
    cli_run(&r,
            "train --data %s --out %s/a --threads 1 --steps 6 --ckpt-every 1 --keep-last 1 "
            "--overwrite --resume-from %s/a/checkpoints/step_00000002",
            train, dir, dir);
    cr_assert_eq(r.code, 0, "%s", r.err);
    char cmd[700];
    snprintf(cmd, sizeof(cmd),
             "test \"$(ls %s/a/checkpoints | grep '^step_' | tr '\\n' ' ')\" = "
             "'step_00000002 step_00000006 '",
             dir);
    cr_expect_eq(system(cmd), 0, "expected step_00000002 (read) and step_00000006 (kept)");
    cr_expect_eq(cli_count_lines(m, "\"loss\":"), 6);
    cli_rmdir(dir);
}

/* A damaged latest: --resume falls back to the newest checkpoint that verifies, says so, and
 * still finishes with the losses of a run never interrupted. */
Test(launch_ckpt, resume_falls_back_past_a_damaged_latest, .timeout = 300) {
    char dir[256], train[400], ma[400], mb[400], cmd[800];
    setup_data(dir, sizeof(dir), train, sizeof(train));
    struct cli_result r;
    cli_run(&r, "train --data %s --out %s/ref " TINY " --steps 8", train, dir);
    cr_assert_eq(r.code, 0, "%s", r.err);
    cli_run(&r, "train --data %s --out %s/b " TINY " --steps 8 --stop-after 6 --ckpt-every 2",
            train, dir);
    cr_assert_eq(r.code, 0, "%s", r.err);
    snprintf(cmd, sizeof(cmd), "truncate -s 3000 %s/b/checkpoints/step_00000006/rank_00000.h5",
             dir);
    cr_assert_eq(system(cmd), 0);
    cli_run(&r, "train --data %s --out %s/b --threads 1 --resume", train, dir);
    cr_assert_eq(r.code, 0, "%s", r.err);
    cr_expect_not_null(strstr(r.err, "step_00000006 is damaged"), "%s", r.err);
    cr_expect_not_null(strstr(r.err, "falling back to"), "%s", r.err);
    cr_expect_not_null(strstr(r.err, "resuming from"), "%s", r.err);
    cr_expect_not_null(strstr(r.err, "step_00000004 (step 4)"), "%s", r.err);
    snprintf(ma, sizeof(ma), "%s/ref/metrics.jsonl", dir);
    snprintf(mb, sizeof(mb), "%s/b/metrics.jsonl", dir);
    float la[16], lb[16];
    cr_assert_eq(read_losses(ma, la, 16), 8);
    cr_assert_eq(read_losses(mb, lb, 16), 8);
    cr_expect_eq(memcmp(la, lb, sizeof(float) * 8), 0, "losses differ after the fallback");
    cli_rmdir(dir);
}

/* Data given relative to one directory is recorded absolute: sample, eval and a resume (which
 * takes --data from the checkpoint) work from any other working directory. */
Test(launch_ckpt, recorded_paths_work_from_another_directory, .timeout = 300) {
    char dir[256], cmd[2400];
    cli_tmpdir(dir, sizeof(dir));
    const char *bin = getenv("TS_BUILD_DIR");
    cr_assert_not_null(bin);
    snprintf(
        cmd, sizeof(cmd),
        "cd %s && mkdir -p work elsewhere && cd work && "
        "for i in $(seq 1 300); do echo \"the quick brown fox $i jumps over the lazy dog\"; "
        "done > text.txt && %s/launch/tessera prepare --tokenizer bytes --input text.txt --out "
        "shards --val-fraction 0.05 --threads 1 2>/dev/null && "
        "%s/launch/tessera train --data shards --val-data 'shards/val.bin' --out ../run "
        "--vocab-size 256 --layers 1 --heads 2 --channels 16 --seq-len 16 --batch 2 "
        "--steps 3 --stop-after 2 --threads 1 --log-every 1000 2>/dev/null",
        dir, bin, bin);
    cr_assert_eq(system(cmd), 0, "prepare and train from %s/work failed", dir);
    /* config.json names the data by absolute paths */
    snprintf(cmd, sizeof(cmd),
             "cd %s && /usr/bin/python3 -c \"import json, os\n"
             "t = json.load(open('run/config.json'))['train']\n"
             "w = os.path.realpath('work')\n"
             "assert t['data'] == w + '/shards', t['data']\n"
             "assert t['val_data'] == w + '/shards/val.bin', t['val_data']\"",
             dir);
    cr_expect_eq(system(cmd), 0, "config.json does not name the data by absolute paths");
    struct cli_result r;
    cli_run(&r, "sample --ckpt %s/run --prompt 'the quick' --max-tokens 4 --threads 1", dir);
    cr_expect_eq(r.code, 0, "sample: %s", r.err);
    /* resume from elsewhere, taking --data and --val-data from the checkpoint */
    snprintf(cmd, sizeof(cmd),
             "cd %s/elsewhere && %s/launch/tessera train --out ../run --resume --threads 1 "
             "2>err.txt",
             dir, bin);
    cr_expect_eq(system(cmd), 0, "resume from another directory failed");
    snprintf(
        cmd, sizeof(cmd),
        "cd %s/elsewhere && %s/launch/tessera eval --ckpt ../run --data %s/work/shards/val.bin "
        "--batch 2 --seq-len 16 --batches 1 --threads 1 >/dev/null 2>&1",
        dir, bin, dir);
    cr_expect_eq(system(cmd), 0, "eval from another directory failed");
    cli_rmdir(dir);
}

/* `tessera export hf`: config.json and model.safetensors, read back by a hand-written reader
 * (tests/launch/safetensors_check.py: json + struct + numpy) and compared with model.h5. */
Test(launch_ckpt, export_hf_matches_model_h5, .timeout = 300) {
    char dir[256], train[400], cmd[1600];
    setup_data(dir, sizeof(dir), train, sizeof(train));
    struct cli_result r;
    cli_run(&r, "train --data %s --out %s/a " TINY " --steps 3", train, dir);
    cr_assert_eq(r.code, 0, "%s", r.err);
    cli_run(&r, "export hf %s/a %s/hf", dir, dir); /* a run directory: its latest */
    cr_assert_eq(r.code, 0, "%s", r.err);
    cr_expect_not_null(strstr(r.err, "step 3"), "the summary goes to stderr: %s", r.err);
    cr_expect_str_eq(r.out, "");
    if (system("/usr/bin/python3 -c 'import h5py, numpy' 2>/dev/null") == 0) {
        snprintf(cmd, sizeof(cmd),
                 "/usr/bin/python3 %s/tests/launch/safetensors_check.py %s/hf "
                 "%s/a/checkpoints/step_00000003",
                 getenv("TS_SOURCE_DIR"), dir, dir);
        cr_expect_eq(system(cmd), 0, "the safetensors file does not match model.h5");
    }
    cli_run(&r, "export hf %s/nothing %s/hf2", dir, dir);
    cr_expect_eq(r.code, 2, "%s", r.err);
    cli_run(&r, "export onnx %s/a %s/hf3", dir, dir);
    cr_expect_eq(r.code, 2, "%s", r.err);
    cli_rmdir(dir);
}

/* eval from a run directory, a checkpoint directory and an earlier version's model.bin: the
 * same number; verify finds a flipped byte; h5py's model.h5 equals what eval loads. */
Test(launch_ckpt, eval_verify_and_h5py, .timeout = 300) {
    char dir[256], train[400];
    setup_data(dir, sizeof(dir), train, sizeof(train));
    struct cli_result r;
    cli_run(&r, "train --data %s --out %s/a " TINY " --steps 8", train, dir);
    cr_assert_eq(r.code, 0, "%s", r.err);

    /* an old-style run directory holding model.bin, written from the checkpoint */
    char path[600];
    ts_ckpt_t *ck = NULL;
    snprintf(path, sizeof(path), "%s/a", dir);
    cr_assert_eq(ts_ckpt_open(&ck, path), TS_OK, "%s", ts_last_error());
    struct ts_gpt_config cfg;
    cr_assert_eq(ts_gpt_config_from_checkpoint(ck, &cfg), TS_OK);
    struct ts_backend *be = NULL;
    struct ts_cpu_options opt = {.threads = 1, .blas = TS_BLAS_AUTO};
    cr_assert_eq(ts_cpu_backend_create(&be, &opt), TS_OK);
    ts_gpt_t *gpt = NULL;
    cr_assert_eq(ts_gpt_create(&gpt, &cfg, be, 1, 16), TS_OK);
    cr_assert_eq(ts_gpt_load_checkpoint(gpt, ck), TS_OK, "%s", ts_last_error());
    snprintf(path, sizeof(path), "%s/old", dir);
    char cmd[700];
    snprintf(cmd, sizeof(cmd), "mkdir -p %s", path);
    cr_assert_eq(system(cmd), 0);
    snprintf(path, sizeof(path), "%s/old/model.bin", dir);
    cr_assert_eq(ts_weights_save(gpt, path), TS_OK);

    const char *targets[3] = {"a", "a/checkpoints/step_00000008", "old"};
    char json[3][256];
    for (int i = 0; i < 3; i++) {
        cli_run(&r, "eval --ckpt %s/%s --data %s --batch 2 --seq-len 16 --batches 4 --json", dir,
                targets[i], train);
        cr_assert_eq(r.code, 0, "%s: %s", targets[i], r.err);
        const char *j = strrchr(r.out, '{');
        cr_assert_not_null(j);
        snprintf(json[i], sizeof(json[i]), "%s", j);
    }
    cr_expect_str_eq(json[0], json[1]);
    cr_expect_str_eq(json[0], json[2]);

    /* model.h5 through h5py equals the weights eval loads (wte cropped to V = 64 rows) */
    if (system("/usr/bin/python3 -c 'import h5py' 2>/dev/null") == 0) {
        snprintf(cmd, sizeof(cmd),
                 "cd %s && /usr/bin/python3 -c \"import h5py, numpy as np\n"
                 "f = h5py.File('a/checkpoints/latest/model.h5', 'r')\n"
                 "assert f['wte.weight'].shape == (64, 32), f['wte.weight'].shape\n"
                 "np.concatenate([np.asarray(f[k], dtype='<f4').ravel() for k in "
                 "('wte.weight', 'h.0.attn.c_attn.weight', 'ln_f.bias')]).tofile('h5py.raw')\"",
                 dir);
        cr_assert_eq(system(cmd), 0, "h5py could not read model.h5");
        const int64_t n = ts_gpt_num_params(gpt);
        float *host = malloc((size_t)n * sizeof(float));
        cr_assert_eq(ts_gpt_params_to_host(gpt, host), TS_OK);
        int count;
        const struct ts_param_info *t = ts_gpt_params(gpt, &count);
        const int64_t want_n = 64 * 32 + 32 * 96 + 32;
        float *got = malloc((size_t)want_n * sizeof(float));
        snprintf(path, sizeof(path), "%s/h5py.raw", dir);
        FILE *f = fopen(path, "rb");
        cr_assert_not_null(f);
        cr_assert_eq(fread(got, sizeof(float), (size_t)want_n + 1, f), (size_t)want_n);
        fclose(f);
        const struct ts_param_info *wte = &t[0], *qkv = &t[4], *lnfb = &t[count - 1];
        cr_assert_str_eq(qkv->name, "h.0.attn.c_attn.weight");
        cr_assert_str_eq(lnfb->name, "ln_f.bias");
        cr_expect_eq(memcmp(got, host + wte->offset, 64 * 32 * 4), 0, "wte differs");
        cr_expect_eq(memcmp(got + 64 * 32, host + qkv->offset, 32 * 96 * 4), 0, "c_attn differs");
        cr_expect_eq(memcmp(got + 64 * 32 + 32 * 96, host + lnfb->offset, 32 * 4), 0);
        free(host);
        free(got);
    }
    ts_gpt_destroy(gpt);
    ts_backend_destroy(be);
    ts_ckpt_close(ck);

    /* verify: all good, then a flipped byte in the rank file, named */
    cli_run(&r, "ckpt verify %s/a", dir);
    cr_assert_eq(r.code, 0, "%s%s", r.out, r.err);
    cr_expect_not_null(strstr(r.out, "all checksums match"), "%s", r.out);
    snprintf(cmd, sizeof(cmd),
             "cd %s/a/checkpoints/step_00000008 && /usr/bin/python3 -c \"import h5py\n"
             "f = h5py.File('rank_00000.h5', 'r')\n"
             "print(f['adam_v/h.1.mlp.c_fc.weight'].id.get_offset() + 100)\" > at && "
             "printf '\\x5a' | dd of=rank_00000.h5 bs=1 seek=$(cat at) conv=notrunc 2>/dev/null",
             dir);
    cr_assert_eq(system(cmd), 0);
    cli_run(&r, "ckpt verify %s/a", dir);
    cr_expect_eq(r.code, 1, "%s%s", r.out, r.err);
    cr_expect_not_null(strstr(r.err, "rank_00000.h5"), "%s", r.err);
    cr_expect_not_null(strstr(r.err, "checksum mismatch"), "%s", r.err);
    cr_expect_not_null(strstr(r.err, "adam_v/h.1.mlp.c_fc.weight"), "%s", r.err);
    /* the exit codes of its help: a damaged manifest is damage (1), no checkpoint usage (2) */
    snprintf(cmd, sizeof(cmd),
             "printf 'xx' | dd of=%s/a/checkpoints/step_00000008/manifest.pb "
             "bs=1 seek=30 conv=notrunc 2>/dev/null",
             dir);
    cr_assert_eq(system(cmd), 0);
    cli_run(&r, "ckpt verify %s/a", dir);
    cr_expect_eq(r.code, 1, "%s%s", r.out, r.err);
    cr_expect_not_null(strstr(r.err, "manifest.pb"), "%s", r.err);
    cli_run(&r, "ckpt inspect %s/nothing", dir);
    cr_expect_eq(r.code, 2);
    cli_run(&r, "ckpt verify %s/nothing", dir);
    cr_expect_eq(r.code, 2);
    cli_rmdir(dir);
}

/* SIGKILL `tessera train --resume --ckpt-every 1` at random moments, again and again: every
 * time latest opens and verifies, and the run finally finishes with exactly the losses and
 * weights of a run never interrupted. */
Test(launch_ckpt, sigkill_training_at_random_moments, .timeout = 600) {
    char dir[256], train[400], bin[600], out[400], ref[400];
    setup_data(dir, sizeof(dir), train, sizeof(train));
    snprintf(bin, sizeof(bin), "%s/launch/tessera", getenv("TS_BUILD_DIR"));
    snprintf(out, sizeof(out), "%s/k", dir);
    snprintf(ref, sizeof(ref), "%s/ref", dir);
    const int steps = 300;
    struct cli_result r;
    cli_run(&r, "train --data %s --out %s " TINY " --steps %d --ckpt-every 25", train, ref, steps);
    cr_assert_eq(r.code, 0, "%s", r.err);
    srand((unsigned)time(NULL));
    int kills = 0, during = 0;
    for (int round = 0; round < 32; round++) {
        pid_t pid = fork();
        if (pid == 0) {
            char steps_s[16];
            snprintf(steps_s, sizeof(steps_s), "%d", steps);
            freopen("/dev/null", "w", stderr);
            execl(bin, bin, "train", "--data", train, "--out", out, "--vocab-size", "64",
                  "--layers", "2", "--heads", "2", "--channels", "32", "--seq-len", "16", "--batch",
                  "2", "--grad-accum", "2", "--lr", "3e-3", "--warmup", "3", "--seed", "7",
                  "--threads", "1", "--steps", steps_s, "--ckpt-every", "1", "--keep-last", "3",
                  "--resume", (char *)NULL);
            _exit(127);
        }
        /* A loaded machine can take longer than a kill's delay to start: let the first round
         * reach its first checkpoint, so the kills land in training and saves, not start-up. */
        for (int waited = 0; !ts_ckpt_exists(out) && waited < 120000; waited += 20)
            usleep(20000);
        usleep((useconds_t)(60000 + rand() % 140000));
        kill(pid, SIGKILL);
        int status = 0;
        waitpid(pid, &status, 0);
        if (!WIFSIGNALED(status)) {
            cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0, "train failed");
            break; /* it finished */
        }
        kills++;
        char cmd[600];
        snprintf(cmd, sizeof(cmd), "ls -a %s/checkpoints 2>/dev/null | grep -q tmp-", out);
        during += system(cmd) == 0;
        if (!ts_ckpt_exists(out))
            continue; /* killed before the first checkpoint */
        ts_ckpt_t *ck = NULL;
        cr_assert_eq(ts_ckpt_open(&ck, out), TS_OK, "round %d: %s", round, ts_last_error());
        cr_assert_eq(ts_ckpt_verify(ck, NULL), TS_OK, "round %d: %s", round, ts_last_error());
        ts_ckpt_close(ck);
    }
    cr_log_info("%d kills, %d of them during a save", kills, during);
    cr_assert_geq(kills, 30);
    cr_expect_geq(during, 5, "only %d of %d kills landed during a save", during, kills);
    cr_assert(ts_ckpt_exists(out), "no checkpoint after %d kills", kills);
    cli_run(&r, "train --data %s --out %s --threads 1 --resume", train, out);
    cr_assert_eq(r.code, 0, "%s", r.err);
    char ma[500], mb[500];
    snprintf(ma, sizeof(ma), "%s/metrics.jsonl", ref);
    snprintf(mb, sizeof(mb), "%s/metrics.jsonl", out);
    static float la[400], lb[400];
    cr_assert_eq(read_losses(ma, la, 400), steps);
    cr_assert_eq(read_losses(mb, lb, 400), steps, "each step once in metrics.jsonl");
    cr_expect_eq(memcmp(la, lb, sizeof(float) * (size_t)steps), 0, "losses differ");
    expect_same_state(ref, out);
    cli_rmdir(dir);
}

/* A resume keeps the whole run: the validation data, the ZeRO stage, the eval and checkpoint
 * cadence, the schedule and the precision come back from the checkpoint when not given (before
 * the settings table, --val-data was dropped and a resumed run silently stopped evaluating). */
Test(launch_ckpt, resume_adopts_every_recorded_setting, .timeout = 300) {
    char dir[256], train[400], path[600];
    setup_data(dir, sizeof(dir), train, sizeof(train));
    struct cli_result r;
    cli_run(&r,
            "train --data %s --val-data %s --out %s/a " TINY
            " --steps 12 --stop-after 4 --eval-every 4 --eval-batches 2 --ckpt-every 8 "
            "--min-lr-frac 0.25 --bucket-mb 0.5 --no-shuffle --precision fp32",
            train, train, dir);
    cr_assert_eq(r.code, 0, "%s", r.err);
    cli_run(&r, "train --data %s --out %s/a --threads 1 --resume", train, dir);
    cr_assert_eq(r.code, 0, "%s", r.err);
    snprintf(path, sizeof(path), "%s/a/metrics.jsonl", dir);
    /* evals at 4 (before the stop), 8 and 12 (the end); checkpoints at 4, 8 and 12 */
    cr_expect_eq(cli_count_lines(path, "\"val_loss\":"), 3, "the resumed run evaluates");
    cr_expect_eq(cli_count_lines(path, "\"checkpoint\":"), 3, "the cadence came back");
    snprintf(path, sizeof(path), "%s/a/config.json", dir);
    const char *want[] = {"\"val_data\":",       "\"min_lr_frac\":0.25",   "\"bucket_mb\":0.5",
                          "\"no_shuffle\":true", "\"precision\":\"fp32\"", "\"zero\":0",
                          "\"eval_every\":4",    "\"ckpt_every\":8",       "\"warmup\":3"};
    for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++)
        cr_expect_eq(cli_count_lines(path, want[i]), 1, "config.json lacks %s", want[i]);
    /* a given value replaces the recorded one, with a warning */
    cli_run(&r, "train --data %s --out %s/a --threads 1 --resume --steps 14 --min-lr-frac 0.5",
            train, dir);
    cr_assert_eq(r.code, 0, "%s", r.err);
    cr_expect_not_null(strstr(r.err, "--min-lr-frac 0.5 replaces the checkpoint's 0.25"), "%s",
                       r.err);
    /* per-launch settings are not adopted: --stop-after of the first launch is gone */
    cr_expect_not_null(strstr(r.err, "exit code 0): 2 steps in"), "%s", r.err);
    cli_rmdir(dir);
}

/* config.json stays valid JSON whatever the paths hold (a quote, a backslash). */
Test(launch_ckpt, config_json_escapes_paths, .timeout = 120) {
    char dir[256], train[400], out[600], cmd[1400];
    setup_data(dir, sizeof(dir), train, sizeof(train));
    snprintf(out, sizeof(out), "%s/run\\\"q", dir);
    struct cli_result r;
    cli_run(&r, "train --data %s --out '%s' " TINY " --steps 3", train, out);
    cr_assert_eq(r.code, 0, "%s", r.err);
    snprintf(cmd, sizeof(cmd),
             "python3 -c 'import json,sys; c=json.load(open(sys.argv[1])); "
             "assert c[\"train\"][\"data\"] == sys.argv[2]' '%s/config.json' '%s'",
             out, train);
    cr_expect_eq(system(cmd), 0, "config.json is not valid JSON: %s", cmd);
    /* and metrics.jsonl: every line parses, the checkpoint line names the path whole */
    snprintf(cmd, sizeof(cmd),
             "python3 -c 'import json,sys; ls=[json.loads(l) for l in open(sys.argv[1])]; "
             "assert any(sys.argv[2] in l.get(\"checkpoint\", \"\") for l in ls), ls' "
             "'%s/metrics.jsonl' '%s'",
             out, out);
    cr_expect_eq(system(cmd), 0, "metrics.jsonl is not valid JSON lines: %s", cmd);
    cli_rmdir(dir);
}
