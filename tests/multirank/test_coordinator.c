/* test_coordinator.c: the coordinator under a real mpirun: one decision for every rank.
 *
 * A signal on one rank checkpoints both at the same step and exits "preempted" (4); a walltime
 * shorter than the run checkpoints in time and exits "time" (3); a loss that becomes NaN stops
 * every rank at the same step with "diverged" (5) and leaves the last good checkpoint as latest;
 * each resume continues bit-exactly. The batch ramp and the in-training eval give the same
 * numbers on 1 and 2 ranks (the same global batch, another micro-batch). */
#include <criterion/criterion.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>

#include "checkpoint/ckpt.h"
#include "cli_util.h"
#include "mr_util.h"

#define MODEL_FLAGS                                                                                \
    "--vocab-size 64 --layers 2 --heads 2 --channels 32 --seq-len 16 --lr 3e-3 --warmup 2 "        \
    "--log-every 100 --threads 1"

/* [env] mpirun -np N tessera train ... (np 0: a plain single process). */
static void train(struct run_result *r, const struct fixture *fx, const char *env, int np,
                  const char *name, const char *extra) {
    char launcher[128] = "";
    if (np > 0)
        snprintf(launcher, sizeof(launcher), "mpirun --oversubscribe -np %d ", np);
    sh_run(r, "env %s %s%s/launch/tessera train " MODEL_FLAGS " --data %s --out %s/%s %s", env,
           launcher, build_dir(), fx->data, fx->dir, name, extra);
}

/* The step of the run's latest checkpoint, verified (-1: none). */
static long latest_step(const struct fixture *fx, const char *name) {
    char path[512];
    snprintf(path, sizeof(path), "%s/%s/checkpoints/latest", fx->dir, name);
    ts_ckpt_t *ck = NULL;
    if (ts_ckpt_open(&ck, path) != TS_OK)
        return -1;
    cr_assert_eq(ts_ckpt_verify(ck, NULL), TS_OK, "%s", ts_last_error());
    const long step = (long)ts_ckpt_meta(ck)->step;
    ts_ckpt_close(ck);
    return step;
}

/* The first n losses of two runs are bit-identical. */
static void same_losses(const struct fixture *fx, const char *a, const char *b, int n) {
    double *la = calloc((size_t)n + 1, sizeof(double)), *lb = calloc((size_t)n + 1, sizeof(double));
    cr_assert(la != NULL && lb != NULL);
    cr_assert_eq(read_metric(fx, a, "\"loss\":", la, n + 1), n, "%s: wrong number of steps", a);
    cr_assert_eq(read_metric(fx, b, "\"loss\":", lb, n + 1), n, "%s: wrong number of steps", b);
    for (int s = 0; s < n; s++)
        cr_assert_eq(la[s], lb[s], "step %d: %s %.9g, %s %.9g", s + 1, a, la[s], b, lb[s]);
    free(la);
    free(lb);
}

static void assert_code(const struct run_result *r, int code, const char *what) {
    cr_assert_eq(r->code, code, "%s exited %d, not %d:\n%s", what, r->code, code, r->out);
}

Test(multirank_coord, sigterm_on_one_rank_checkpoints_both_and_resumes_bit_exact) {
    struct fixture fx;
    fixture_make(&fx);
    struct run_result r;
    const char *flags = "--steps 20 --batch 2 --grad-accum 2";
    train(&r, &fx, "", 2, "straight", flags);
    assert_code(&r, 0, "straight");
    /* rank 1 receives SIGTERM before update 7 (0-based): both ranks save after update 7 */
    train(&r, &fx, "TS_FAULT_INJECT=1:6:term", 2, "pre", flags);
    assert_code(&r, 4, "preempted");
    cr_assert(strstr(r.out, "preempted: SIGTERM on rank 1; checkpointed at step 7") != NULL, "%s",
              r.out);
    cr_assert_eq(latest_step(&fx, "pre"), 7);
    cr_assert(strstr(r.out, "tessera train:") == NULL, "a rank failed:\n%s", r.out);
    train(&r, &fx, "", 2, "pre", "--resume");
    assert_code(&r, 0, "resumed");
    same_losses(&fx, "straight", "pre", 20);
    cli_rmdir(fx.dir);
}

Test(multirank_coord, sigusr1_and_sigint_preempt_too) {
    struct fixture fx;
    fixture_make(&fx);
    struct run_result r;
    train(&r, &fx, "TS_FAULT_INJECT=0:3:usr1", 2, "u", "--steps 20 --batch 2");
    assert_code(&r, 4, "SIGUSR1");
    cr_assert_eq(latest_step(&fx, "u"), 4);
    train(&r, &fx, "TS_FAULT_INJECT=0:3:int", 0, "i", "--steps 20 --batch 2");
    assert_code(&r, 4, "SIGINT");
    cr_assert_eq(latest_step(&fx, "i"), 4);
    cli_rmdir(fx.dir);
}

Test(multirank_coord, walltime_saves_in_time_and_resumes_bit_exact) {
    struct fixture fx;
    fixture_make(&fx);
    struct run_result r;
    const char *flags = "--steps 100000 --batch 2";
    train(&r, &fx, "", 2, "wt", "--steps 100000 --batch 2 --walltime 00:00:05");
    assert_code(&r, 3, "walltime");
    cr_assert(strstr(r.out, "out of time") != NULL, "%s", r.out);
    /* mpirun itself starts and ends around the ranks' 5 seconds */
    cr_assert_lt(r.seconds, 5.0 + 2.5, "the job took %.1f s", r.seconds);
    const long saved = latest_step(&fx, "wt");
    cr_assert_gt(saved, 0, "no checkpoint:\n%s", r.out);
    char extra[256];
    snprintf(extra, sizeof(extra), "--resume --stop-after %ld", saved + 5);
    train(&r, &fx, "", 2, "wt", extra);
    assert_code(&r, 0, "resumed");
    snprintf(extra, sizeof(extra), "%s --stop-after %ld", flags, saved + 5);
    train(&r, &fx, "", 2, "straight", extra);
    assert_code(&r, 0, "straight");
    same_losses(&fx, "straight", "wt", (int)saved + 5);
    cli_rmdir(fx.dir);
}

Test(multirank_coord, nan_stops_every_rank_without_saving) {
    struct fixture fx;
    fixture_make(&fx);
    struct run_result r;
    train(&r, &fx, "", 2, "nan", "--steps 200 --batch 2 --lr 1e4 --warmup 0 --ckpt-every 1");
    assert_code(&r, 5, "NaN");
    const char *at = strstr(r.out, "diverged at step ");
    cr_assert_not_null(at, "%s", r.out);
    const long step = strtol(at + strlen("diverged at step "), NULL, 10);
    cr_assert(strstr(r.out, "latest is the last good checkpoint") != NULL, "%s", r.out);
    cr_assert_eq(latest_step(&fx, "nan"), step - 1, "diverged at %ld:\n%s", step, r.out);
    /* both ranks ran the same steps: the diverged one is in metrics.jsonl, nothing after it */
    double loss[256];
    cr_assert_eq(read_metric(&fx, "nan", "\"loss\":", loss, 256), step);
    cr_assert(!isfinite(loss[step - 1]) || loss[step - 1] > 1e30);
    cli_rmdir(fx.dir);
}

Test(multirank_coord, batch_ramp_and_eval_match_one_rank) {
    struct fixture fx;
    fixture_make(&fx);
    struct run_result r;
    char extra[512];
    /* the same global batch (B 4 x 1 rank, B 2 x 2 ranks), the same ramp */
    const char *common = "--steps 12 --grad-accum 4 --batch-ramp 600:4 --eval-every 6 "
                         "--eval-batches 3";
    snprintf(extra, sizeof(extra), "%s --batch 4 --val-data %s", common, fx.data);
    train(&r, &fx, "", 0, "dp1", extra);
    assert_code(&r, 0, "dp1");
    snprintf(extra, sizeof(extra), "%s --batch 2 --val-data %s", common, fx.data);
    train(&r, &fx, "", 2, "dp2", extra);
    assert_code(&r, 0, "dp2");
    double t1[16], t2[16], l1[16], l2[16];
    cr_assert_eq(read_metric(&fx, "dp1", "\"tokens\":", t1, 16), 12);
    cr_assert_eq(read_metric(&fx, "dp2", "\"tokens\":", t2, 16), 12);
    cr_assert_eq(read_metric(&fx, "dp1", "\"loss\":", l1, 16), 12);
    cr_assert_eq(read_metric(&fx, "dp2", "\"loss\":", l2, 16), 12);
    for (int s = 0; s < 12; s++) {
        cr_assert_eq(t1[s], t2[s], "step %d: tokens %g vs %g", s + 1, t1[s], t2[s]);
        cr_assert(fabs(l1[s] - l2[s]) <= 1e-5 * fabs(l1[s]), "step %d: %.9g vs %.9g", s + 1, l1[s],
                  l2[s]);
    }
    cr_assert_lt(t1[0], t1[11], "the batch did not ramp: %g .. %g", t1[0], t1[11]);
    cr_assert_eq(t1[0], 4 * 16.0, "first step: B 4 x accum 1 x T 16");
    double v1[4], v2[4], n1[4], n2[4];
    cr_assert_eq(read_metric(&fx, "dp1", "\"val_loss\":", v1, 4), 2);
    cr_assert_eq(read_metric(&fx, "dp2", "\"val_loss\":", v2, 4), 2);
    cr_assert_eq(read_metric(&fx, "dp1", "\"val_tokens\":", n1, 4), 2);
    cr_assert_eq(read_metric(&fx, "dp2", "\"val_tokens\":", n2, 4), 2);
    for (int i = 0; i < 2; i++) {
        cr_assert_eq(n1[i], 3 * 16 * 16.0, "eval %d: 3 global batches of 16 windows", i);
        cr_assert_eq(n1[i], n2[i], "eval %d: val_tokens %g vs %g", i, n1[i], n2[i]);
        cr_assert(fabs(v1[i] - v2[i]) <= 1e-5 * v1[i], "eval %d: %.9g vs %.9g", i, v1[i], v2[i]);
    }
    cli_rmdir(fx.dir);
}
