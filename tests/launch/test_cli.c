/* test_cli.c: the tessera command as a user meets it: help, bad flags and bad input (one clear
 * line, exit code 2), and a small run end to end (metrics.jsonl, checkpoints, eval). */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli_util.h"
#include "data/shard.h"

/* One line on stderr, naming the problem. */
static void expect_usage_error(const struct cli_result *r, const char *needle) {
    cr_expect_eq(r->code, 2, "exit code %d, stderr: %s", r->code, r->err);
    cr_expect_not_null(strstr(r->err, needle), "stderr lacks '%s': %s", needle, r->err);
    const char *nl = strchr(r->err, '\n');
    cr_expect(nl != NULL && nl[1] == '\0', "expected exactly one line on stderr: %s", r->err);
}

#define TINY "--vocab-size 64 --layers 2 --heads 2 --channels 32 --seq-len 16 --batch 2"

Test(launch_cli, help_lists_commands_and_flags) {
    struct cli_result r;
    cli_run(&r, "--help");
    cr_expect_eq(r.code, 0);
    cr_expect_not_null(strstr(r.out, "train"));
    cr_expect_not_null(strstr(r.out, "eval"));
    cli_run(&r, "train --help");
    cr_expect_eq(r.code, 0);
    cr_expect_not_null(strstr(r.out, "--layers"));
    cr_expect_not_null(strstr(r.out, "--grad-accum"));
    cr_expect_not_null(strstr(r.out, "[0.95]"), "beta2's default shown: %s", r.out);
    cli_run(&r, "help eval");
    cr_expect_eq(r.code, 0);
    cr_expect_not_null(strstr(r.out, "--ckpt"));
}

Test(launch_cli, unknown_command_and_flag) {
    struct cli_result r;
    cli_run(&r, "frobnicate");
    expect_usage_error(&r, "unknown command 'frobnicate'");
    cli_run(&r, "train --data x --out y --bogus 3");
    expect_usage_error(&r, "unknown flag '--bogus'");
    cli_run(&r, "train --data x --out y --layers abc");
    expect_usage_error(&r, "--layers expects an integer, got 'abc'");
    cli_run(&r, "train --out y");
    expect_usage_error(&r, "--data is required");
}

Test(launch_cli, nonsense_model_flags) {
    struct cli_result r;
    cli_run(&r, "train --data x --out y --layers 0");
    expect_usage_error(&r, "--layers must be positive");
    cli_run(&r, "train --data x --out y --heads 3 --channels 256");
    expect_usage_error(&r, "--heads 3 does not divide --channels 256");
    cli_run(&r, "train --data x --out y --seq-len 64 --max-seq-len 32");
    expect_usage_error(&r, "--max-seq-len 32 is shorter than --seq-len 64");
    cli_run(&r, "train --data x --out y --lr -1");
    expect_usage_error(&r, "--lr must be positive");
    /* limits named, not an allocation of terabytes or a wrapped table */
    cli_run(&r, "train --data x --out y --seq-len 100000");
    expect_usage_error(&r, "--seq-len must be at most 65536");
    cli_run(&r, "train --data x --out y --layers 357913942");
    expect_usage_error(&r, "--layers must be at most 1024");
    /* steps are 64-bit up to 10^12; beyond it (and beyond 64 bits) the message names 10^12 */
    cli_run(&r, "train --data x --out y --steps 2000000000000");
    expect_usage_error(&r, "--steps must be at most 1000000000000 steps (10^12");
    cli_run(&r, "train --data x --out y --stop-after 99999999999999999999");
    expect_usage_error(&r, "--stop-after must be at most 1000000000000 steps (10^12");
    /* unsigned flags: strtoull read " -1" and "-1" as 2^64-1 */
    cli_run(&r, "train --data x --out y --seed ' -1'");
    expect_usage_error(&r, "--seed expects a non-negative integer, got ' -1'");
    cli_run(&r, "train --data x --out y --seed -1");
    expect_usage_error(&r, "--seed expects a non-negative integer, got '-1'");
    cli_run(&r, "train --data x --out y --seed 18446744073709551616");
    expect_usage_error(&r, "--seed must be at most 18446744073709551615");
}

Test(launch_cli, missing_and_bad_data) {
    char dir[256], path[400];
    cli_tmpdir(dir, sizeof(dir));
    struct cli_result r;
    cli_run(&r, "train --data '%s/nothing_*.bin' --out %s/run " TINY " --steps 1", dir, dir);
    expect_usage_error(&r, "no files match");

    /* wrong magic */
    snprintf(path, sizeof(path), "%s/bad.bin", dir);
    FILE *f = fopen(path, "wb");
    int header[256] = {12345, 1, 10};
    fwrite(header, sizeof(header), 1, f);
    fwrite(header, 20, 1, f);
    fclose(f);
    cli_run(&r, "train --data %s --out %s/run " TINY " --steps 1", path, dir);
    expect_usage_error(&r, "bad.bin");

    /* truncated: the header promises more tokens than the file holds */
    snprintf(path, sizeof(path), "%s/short.bin", dir);
    cli_write_pattern_shard(path, 1000, 64, 1);
    cr_assert_eq(truncate(path, 1024 + 500), 0);
    cli_run(&r, "train --data %s --out %s/run " TINY " --steps 1", path, dir);
    expect_usage_error(&r, "short.bin");

    /* a token id beyond the vocabulary */
    snprintf(path, sizeof(path), "%s/big.bin", dir);
    cli_write_pattern_shard(path, 1000, 64, 1);
    cli_run(&r,
            "train --data %s --out %s/run --vocab-size 16 --layers 1 --heads 1 --channels 8 "
            "--seq-len 8 --steps 1",
            path, dir);
    expect_usage_error(&r, ">= vocab");
    cli_rmdir(dir);
}

/* Messages a new user met that said something else than what was wrong, or nothing. */
Test(launch_cli, misleading_inputs_named) {
    char dir[256], path[400];
    cli_tmpdir(dir, sizeof(dir));
    struct cli_result r;
    snprintf(path, sizeof(path), "%s/ok.bin", dir);
    cli_write_pattern_shard(path, 4000, 64, 1);
    /* a directory as --data said "No such device" */
    cli_run(&r, "train --data %s --out %s/run " TINY " --steps 1", dir, dir);
    expect_usage_error(&r, "is a directory without manifest.json");
    /* a glob in a missing directory said "read error" */
    cli_run(&r, "train --data '%s/missing/*.bin' --out %s/run " TINY " --steps 1", dir, dir);
    expect_usage_error(&r, "cannot read directory");
    /* --warmup longer than --steps and --eval-every without --val-data were accepted */
    cli_run(&r, "train --data %s --out %s/run " TINY " --steps 5 --warmup 10", path, dir);
    expect_usage_error(&r, "warmup of 10 steps is longer than the run's 5 steps");
    cli_run(&r, "train --data %s --out %s/run " TINY " --steps 5 --eval-every 2", path, dir);
    expect_usage_error(&r, "--eval-every 2 needs --val-data");
    /* step counts past 2^31 (--steps 99999999999 said "expects an integer", later "must be in
     * [-2147483648, 2147483647]"): accepted and checked, not run (--check-world) */
    cli_run(&r,
            "train --data %s --out %s/run " TINY " --steps 99999999999 --stop-after 3000000000 "
            "--ckpt-every 2147483648 --log-every 4294967296 --check-world 1",
            path, dir);
    cr_assert_eq(r.code, 0, "%s", r.err);
    cr_assert(strstr(r.err, "train check: ok") != NULL, "%s", r.err);
    /* a resume with a shorter --steps blamed --warmup, which the user had not given */
    cli_run(&r, "train --data %s --out %s/short " TINY " --steps 20 --stop-after 1", path, dir);
    cr_assert_eq(r.code, 0, "%s", r.err);
    cli_run(&r, "train --data %s --out %s/short --resume --steps 1", path, dir);
    cr_expect_eq(r.code, 2, "%s", r.err); /* after the warning that --steps changed */
    cr_expect_not_null(strstr(r.err, "the warmup of 2 steps comes from the checkpoint; give "
                                     "--warmup"),
                       "%s", r.err);
    /* --threads above the cores here is warned about */
    const long cores = sysconf(_SC_NPROCESSORS_ONLN);
    cli_run(&r, "train --data %s --out %s/run " TINY " --steps 1 --threads %ld", path, dir,
            cores + 1);
    cr_assert_eq(r.code, 0, "%s", r.err);
    char want[64];
    snprintf(want, sizeof(want), "--threads %ld is more than the %ld cores", cores + 1, cores);
    cr_assert(strstr(r.err, want) != NULL, "%s", r.err);
    /* tokenizer fetch --help was a usage error */
    cli_run(&r, "tokenizer fetch --help");
    cr_assert_eq(r.code, 0, "%s", r.err);
    cr_assert(strstr(r.out, "usage: tessera tokenizer fetch gpt2") != NULL, "%s", r.out);
    cli_rmdir(dir);
}

/* Reads the "loss" values of metrics.jsonl's step lines. */
static int read_losses(const char *path, float *losses, int max) {
    FILE *f = fopen(path, "r");
    cr_assert_not_null(f, "cannot open %s", path);
    char line[4096];
    int n = 0;
    while (fgets(line, sizeof(line), f) != NULL && n < max) {
        const char *p = strstr(line, "\"loss\":");
        if (p != NULL && strstr(line, "\"val_loss\"") == NULL)
            losses[n++] = strtof(p + 7, NULL);
    }
    fclose(f);
    return n;
}

Test(launch_cli, train_then_eval_end_to_end, .timeout = 300) {
    char dir[256], train[400], val[400], metrics[400];
    cli_tmpdir(dir, sizeof(dir));
    snprintf(train, sizeof(train), "%s/train_000.bin", dir);
    snprintf(val, sizeof(val), "%s/val.bin", dir);
    cli_write_pattern_shard(train, 20000, 64, 1);
    cli_write_pattern_shard(val, 4000, 64, 2);

    struct cli_result r;
    cli_run(&r,
            "train --data '%s/train_*.bin' --val-data %s --out %s/a " TINY
            " --grad-accum 2 --steps 30 --lr 3e-3 --warmup 5 --eval-every 10 --seed 7",
            dir, val, dir);
    cr_assert_eq(r.code, 0, "train failed: %s", r.err);
    cr_expect_not_null(strstr(r.err, "global batch 4 sequences"), "%s", r.err);

    snprintf(metrics, sizeof(metrics), "%s/a/metrics.jsonl", dir);
    cr_expect_eq(cli_count_lines(metrics, "\"grad_norm\":"), 30);
    cr_expect_eq(cli_count_lines(metrics, "\"tok_per_s\":"), 30);
    cr_expect_eq(cli_count_lines(metrics, "\"val_loss\":"), 3);
    float a[64], b[64];
    int na = read_losses(metrics, a, 64);
    cr_assert_eq(na, 30);
    cr_expect_lt(a[29], a[0] - 0.5f, "loss should fall on a repetitive pattern: %f -> %f",
                 (double)a[0], (double)a[29]);

    /* the same seed gives bit-identical losses */
    cli_run(&r,
            "train --data '%s/train_*.bin' --out %s/b " TINY
            " --grad-accum 2 --steps 30 --lr 3e-3 --warmup 5 --seed 7",
            dir, dir);
    cr_assert_eq(r.code, 0, "%s", r.err);
    snprintf(metrics, sizeof(metrics), "%s/b/metrics.jsonl", dir);
    cr_assert_eq(read_losses(metrics, b, 64), 30);
    cr_expect_eq(memcmp(a, b, sizeof(float) * 30), 0, "losses differ between identical runs");

    /* a finished run is not overwritten by accident */
    cli_run(&r, "train --data '%s/train_*.bin' --out %s/b " TINY " --steps 1", dir, dir);
    expect_usage_error(&r, "already holds checkpoints");

    /* eval: the same number every time, the JSON line last */
    char first[256] = "", second[256] = "";
    cli_run(&r, "eval --ckpt %s/a --data %s --batch 2 --seq-len 16 --batches 8 --json", dir, val);
    cr_assert_eq(r.code, 0, "eval failed: %s", r.err);
    const char *json = strrchr(r.out, '{');
    cr_assert_not_null(json);
    cr_expect_not_null(strstr(json, "\"loss\":"));
    snprintf(first, sizeof(first), "%s", json);
    cli_run(&r,
            "eval --ckpt %s/a/checkpoints/latest --data %s --batch 2 --seq-len 16 --batches 8 "
            "--json",
            dir, val);
    cr_assert_eq(r.code, 0, "%s", r.err);
    json = strrchr(r.out, '{');
    cr_assert_not_null(json);
    snprintf(second, sizeof(second), "%s", json);
    cr_expect_str_eq(first, second);
    float loss = strtof(strstr(first, "\"loss\":") + 7, NULL);
    cr_expect_lt(loss, 3.0f, "eval loss %f should be far below ln(64) = 4.16", (double)loss);

    /* asking for more batches than the file holds is an error, not a wrap-around */
    cli_run(&r, "eval --ckpt %s/a --data %s --batch 2 --seq-len 16 --batches 100000", dir, val);
    expect_usage_error(&r, "windows");
    cli_rmdir(dir);
}

/* Progress and summaries go to stderr (train's always did; prepare's and tokenizer train's went
 * to stdout): stdout carries only what a command produces, here nothing. */
Test(launch_cli, progress_goes_to_stderr, .timeout = 120) {
    char dir[256], text[400];
    cli_tmpdir(dir, sizeof(dir));
    snprintf(text, sizeof(text), "%s/corpus.txt", dir);
    FILE *f = fopen(text, "w");
    cr_assert_not_null(f);
    for (int i = 0; i < 200; i++)
        fprintf(f, "the cat sat on the mat. the dog sat on the log.\n");
    fclose(f);
    struct cli_result r;
    cli_run(&r, "tokenizer train --input %s --vocab-size 300 --out %s/tok", text, dir);
    cr_assert_eq(r.code, 0, "%s", r.err);
    cr_expect_str_eq(r.out, "");
    cr_expect_not_null(strstr(r.err, "tokenizer train: "), "%s", r.err);
    cli_run(&r, "prepare --tokenizer %s/tok --input %s --out %s/shards --val-fraction 0.1", dir,
            text, dir);
    cr_assert_eq(r.code, 0, "%s", r.err);
    cr_expect_str_eq(r.out, "");
    cr_expect_not_null(strstr(r.err, "prepare: 1 input(s)"), "%s", r.err);
    cr_expect_not_null(strstr(r.err, "train shard(s)"), "%s", r.err);
    cli_rmdir(dir);
}

/* sample: the run's tokenizer comes from its data manifest, a fixed seed reproduces the text,
 * and generation runs past the model's context by restarting the cache. */
Test(launch_cli, sample_is_reproducible, .timeout = 300) {
    char dir[256], text[400];
    cli_tmpdir(dir, sizeof(dir));
    snprintf(text, sizeof(text), "%s/corpus.txt", dir);
    FILE *f = fopen(text, "w");
    cr_assert_not_null(f);
    for (int i = 0; i < 400; i++)
        fprintf(f, "the cat sat on the mat. the dog sat on the log. ");
    fclose(f);
    struct cli_result r;
    cli_run(&r, "prepare --tokenizer bytes --input %s --out %s/shards --val-fraction 0.1", text,
            dir);
    cr_assert_eq(r.code, 0, "%s", r.err);
    cli_run(&r,
            "train --data '%s/shards/train_*.bin' --out %s/run --layers 2 --heads 2 --channels 32 "
            "--seq-len 32 --batch 8 --steps 400 --lr 1e-2 --warmup 20",
            dir, dir);
    cr_assert_eq(r.code, 0, "%s", r.err);

    char first[4096];
    cli_run(&r, "sample --ckpt %s/run --prompt 'the ' --max-tokens 100 --seed 5 --temperature 3",
            dir);
    cr_assert_eq(r.code, 0, "%s", r.err);
    cr_expect_eq(strncmp(r.out, "the ", 4), 0, "the prompt comes first: %s", r.out);
    cr_expect_geq(strlen(r.out), 4 + 100, "100 byte tokens past the 32-token context: %s", r.out);
    snprintf(first, sizeof(first), "%s", r.out);
    cli_run(&r, "sample --ckpt %s/run --prompt 'the ' --max-tokens 100 --seed 5 --temperature 3",
            dir);
    cr_expect_str_eq(r.out, first, "the same seed must give the same text");
    cli_run(&r, "sample --ckpt %s/run --prompt 'the ' --max-tokens 100 --seed 6 --temperature 3",
            dir);
    cr_expect_str_neq(r.out, first, "another seed should give other text");
    /* greedy decoding of a memorised pattern continues it */
    cli_run(&r,
            "sample --ckpt %s/run --prompt 'the cat sat on the' --max-tokens 5 "
            "--temperature 0",
            dir);
    cr_expect_eq(r.code, 0, "%s", r.err);
    cr_expect_str_eq(r.out, "the cat sat on the mat.\n");
    cli_run(&r, "sample --ckpt %s/run --prompt '' --max-tokens 5", dir);
    expect_usage_error(&r, "no end-of-text token");
    cli_rmdir(dir);
}
