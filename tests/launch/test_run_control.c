/* test_run_control.c: what `tessera train` says about how a run ends and what it runs by: the
 * exit-code table in --help, the schedule flags (checked, recorded, adopted on resume, and a
 * different schedule refused unless --change-schedule), --walltime's spellings, and a schedule
 * that reaches the metrics as the closed form says. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "cli_util.h"

#define TINY                                                                                       \
    "--vocab-size 64 --layers 2 --heads 2 --channels 32 --seq-len 16 --batch 2 --threads 1 "       \
    "--log-every 100"

static void expect_usage_error(const struct cli_result *r, const char *needle) {
    cr_expect_eq(r->code, 2, "exit code %d, stderr: %s", r->code, r->err);
    cr_expect_not_null(strstr(r->err, needle), "stderr lacks '%s': %s", needle, r->err);
}

Test(launch_run_control, help_has_the_exit_code_table) {
    struct cli_result r;
    cli_run(&r, "train --help");
    cr_assert_eq(r.code, 0);
    const char *rows[] = {"0  done, or --stop-after reached", "3  stopped for time",
                          "4  preempted by a signal",         "5  diverged, not saved",
                          "1  failure while running",         "2  bad flags or bad input"};
    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++)
        cr_expect_not_null(strstr(r.out, rows[i]), "--help lacks '%s':\n%s", rows[i], r.out);
    for (const char *f = "--lr-schedule\0--decay-frac\0--batch-ramp\0--walltime\0--spike-z\0"
                         "--skip-spikes\0--change-schedule\0";
         *f; f += strlen(f) + 1)
        cr_expect_not_null(strstr(r.out, f), "--help lacks %s", f);
}

Test(launch_run_control, bad_schedule_and_walltime_flags) {
    struct cli_result r;
    cli_run(&r, "train --data x --out y --lr-schedule cosine2");
    expect_usage_error(&r, "--lr-schedule");
    cli_run(&r, "train --data x --out y --lr-schedule wsd --decay-frac 0");
    expect_usage_error(&r, "decay");
    cli_run(&r, "train --data x --out y --batch-ramp 1000");
    expect_usage_error(&r, "--batch-ramp 1000");
    cli_run(&r, "train --data x --out y --batch-ramp 1000:2");
    expect_usage_error(&r, "--batch-ramp 1000:2"); /* grad-accum 1: nothing to ramp */
    cli_run(&r, "train --data x --out y --walltime 1:2:3:4");
    expect_usage_error(&r, "--walltime '1:2:3:4'");
    cli_run(&r, "train --data x --out y --walltime -5");
    expect_usage_error(&r, "--walltime '-5'");
    cli_run(&r, "train --data x --out y --skip-spikes");
    expect_usage_error(&r, "--skip-spikes needs --spike-z");
}

/* The LR in metrics.jsonl is the closed form of each schedule (steps 10, warmup 2, lr 1e-3,
 * min 0.1): linear at step 6 (0-based 5) is 1e-3 - 0.9e-3 * 3/7; WSD with decay-frac 0.3 holds
 * 1e-3 to step 6 (0-based), then decays to 1e-4 at the last step; constant stays at 1e-3. */
static double lr_at(const char *dir, const char *name, int step) {
    char path[512], line[1024];
    snprintf(path, sizeof(path), "%s/%s/metrics.jsonl", dir, name);
    FILE *f = fopen(path, "r");
    cr_assert_not_null(f);
    double lr = -1;
    while (fgets(line, sizeof(line), f) != NULL) {
        int s;
        const char *p = strstr(line, "\"lr\":");
        if (p != NULL && sscanf(line, "{\"step\":%d", &s) == 1 && s == step)
            lr = strtod(p + 5, NULL);
    }
    fclose(f);
    return lr;
}

Test(launch_run_control, schedules_reach_the_run_and_resume_keeps_them, .timeout = 300) {
    char dir[256], data[320];
    cli_tmpdir(dir, sizeof(dir));
    snprintf(data, sizeof(data), "%s/train_000.bin", dir);
    cli_write_pattern_shard(data, 20000, 64, 1);
    struct cli_result r;
    const char *kinds[] = {"linear", "wsd --decay-frac 0.3", "constant"};
    const char *names[] = {"linear", "wsd", "constant"};
    for (int k = 0; k < 3; k++) {
        cli_run(&r,
                "train " TINY " --data %s --out %s/%s --steps 10 --warmup 2 --lr 1e-3 "
                "--lr-schedule %s",
                data, dir, names[k], kinds[k]);
        cr_assert_eq(r.code, 0, "%s: %s", kinds[k], r.err);
    }
    cr_expect_float_eq(lr_at(dir, "linear", 6), 1e-3 - 0.9e-3 * 3.0 / 7.0, 1e-9);
    cr_expect_float_eq(lr_at(dir, "linear", 10), 1e-4, 1e-9);
    cr_expect_float_eq(lr_at(dir, "wsd", 7), 1e-3, 1e-9);
    cr_expect_float_eq(lr_at(dir, "wsd", 10), 1e-4, 1e-9);
    cr_expect_float_eq(lr_at(dir, "constant", 10), 1e-3, 1e-9);

    /* stopped early, resumed: the schedule comes from the checkpoint */
    cli_run(&r,
            "train " TINY " --data %s --out %s/w2 --steps 10 --warmup 2 --lr 1e-3 "
            "--lr-schedule wsd --decay-frac 0.3 --stop-after 5",
            data, dir);
    cr_assert_eq(r.code, 0, "%s", r.err);
    cli_run(&r, "train --data %s --out %s/w2 --threads 1 --resume --lr-schedule cosine", data, dir);
    expect_usage_error(&r, "pass --change-schedule");
    cli_run(&r, "train --data %s --out %s/w2 --threads 1 --resume", data, dir);
    cr_assert_eq(r.code, 0, "%s", r.err);
    for (int s = 1; s <= 10; s++)
        cr_expect_float_eq(lr_at(dir, "w2", s), lr_at(dir, "wsd", s), 1e-12, "step %d", s);
    cli_run(&r,
            "train --data %s --out %s/w2 --threads 1 --resume --steps 12 --lr-schedule linear "
            "--change-schedule",
            data, dir);
    cr_assert_eq(r.code, 0, "%s", r.err);
    cli_rmdir(dir);
}

/* --spike-z: a tiny threshold makes any loss above the recent mean a spike once 20 losses are
 * in the window: without --skip-spikes the run stops "diverged" (5) naming it and saving
 * nothing after it; with it, the spiking updates are skipped, logged, and the run completes. */
Test(launch_run_control, loss_spikes_stop_or_are_skipped, .timeout = 300) {
    char dir[256], data[320];
    cli_tmpdir(dir, sizeof(dir));
    snprintf(data, sizeof(data), "%s/train_000.bin", dir);
    cli_write_pattern_shard(data, 20000, 64, 1);
    struct cli_result r;
    cli_run(&r,
            "train " TINY " --data %s --out %s/stop --steps 150 --lr 3e-3 --ckpt-every 10 "
            "--spike-z 0.01 --spike-window 20",
            data, dir);
    cr_assert_eq(r.code, 5, "exit %d: %s", r.code, r.err);
    const char *at = strstr(r.err, "diverged at step ");
    cr_assert_not_null(at, "%s", r.err);
    const long step = strtol(at + strlen("diverged at step "), NULL, 10);
    cr_expect_geq(step, 21, "a spike before the window holds 20 losses: %s", r.err);
    cr_expect_not_null(strstr(r.err, "is a spike (z-score"), "%s", r.err);
    char path[512];
    snprintf(path, sizeof(path), "%s/stop/checkpoints/step_%08ld", dir, step);
    cr_expect_eq(access(path, F_OK), -1, "the diverged step was saved");
    cli_run(&r,
            "train " TINY " --data %s --out %s/skip --steps 60 --lr 3e-3 --spike-z 0.01 "
            "--spike-window 20 --skip-spikes",
            data, dir);
    cr_assert_eq(r.code, 0, "exit %d: %s", r.code, r.err);
    cr_expect_not_null(strstr(r.err, "update skipped"), "%s", r.err);
    cli_rmdir(dir);
}

/* Under Slurm without SLURM_JOB_END_TIME the allocation's end comes from `squeue -h -j ID -o %e`:
 * a stand-in squeue on PATH says the job ends in 4 seconds; the run stops for time (3) within
 * them, with a checkpoint. */
Test(launch_run_control, slurm_end_from_squeue, .timeout = 120) {
    char dir[256], data[320], path[400], env[1200];
    cli_tmpdir(dir, sizeof(dir));
    snprintf(data, sizeof(data), "%s/train_000.bin", dir);
    cli_write_pattern_shard(data, 20000, 64, 1);
    snprintf(path, sizeof(path), "%s/squeue", dir);
    FILE *f = fopen(path, "w");
    cr_assert_not_null(f);
    fprintf(f, "#!/bin/sh\n[ \"$3\" = 4242 ] || exit 1\ndate -d @%lld +%%Y-%%m-%%dT%%H:%%M:%%S\n",
            (long long)time(NULL) + 4);
    fclose(f);
    chmod(path, 0755);
    snprintf(env, sizeof(env), "%s:%s", dir, getenv("PATH"));
    setenv("PATH", env, 1);
    setenv("SLURM_JOB_ID", "4242", 1);
    unsetenv("SLURM_JOB_END_TIME");
    struct cli_result r;
    const double t0 = (double)time(NULL);
    /* --walltime 30: a backstop, should squeue not be read */
    cli_run(&r, "train " TINY " --data %s --out %s/s --steps 1000000 --walltime 30", data, dir);
    cr_assert_eq(r.code, 3, "exit %d: %s", r.code, r.err);
    cr_expect_leq((double)time(NULL) - t0, 5.0);
    cr_expect_not_null(strstr(r.err, "squeue (job 4242 ends"), "%s", r.err);
    snprintf(path, sizeof(path), "%s/s/checkpoints/latest", dir);
    cr_expect_eq(access(path, F_OK), 0, "no checkpoint: %s", r.err);
    cli_rmdir(dir);
}
