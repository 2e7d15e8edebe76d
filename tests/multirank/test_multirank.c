/* test_multirank.c: data parallelism proven under a real mpirun.
 *
 * Each test launches `mpirun` on the tessera binary (or on mpi_collectives, mpi_zero_bf16) as a
 * child process and checks what it wrote: layouts with the same global batch against the single
 * process, ZeRO-1 against ZeRO-0, the overlap against none, and the failure paths (a killed rank, a
 * rank that errors while the others sit in a collective, ranks that disagree on flags), each of
 * which must end the whole job quickly and non-zero with a message naming the rank. Models are
 * tiny and runs short: the suite oversubscribes a 2-core machine by itself. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "checkpoint/ckpt.h"
#include "cli_util.h"
#include "data/shard.h"
#include "mr_util.h"
#include "tests/checkpoint/read_all.h"

#define MODEL_FLAGS                                                                                \
    "--vocab-size 64 --layers 2 --heads 2 --channels 32 --seq-len 16 --lr 3e-3 --warmup 2 "        \
    "--log-every 100 --threads 1 --overwrite"

/* mpirun -np N tessera train <model flags> --data D --out DIR/<name> <extra>; np 0 means no
 * mpirun at all (the plain single process). */
static void train(struct run_result *r, const struct fixture *fx, int np, const char *name,
                  const char *extra) {
    char launcher[128] = "";
    if (np > 0)
        snprintf(launcher, sizeof(launcher), "mpirun --oversubscribe -np %d ", np);
    sh_run(r, "%s%s/launch/tessera train " MODEL_FLAGS " --data %s --out %s/%s %s", launcher,
           build_dir(), fx->data, fx->dir, name, extra);
}

/* Every params/ tensor of the run's latest checkpoint, concatenated in table order. */
static float *read_params(const struct fixture *fx, const char *name, long *count) {
    char path[512];
    snprintf(path, sizeof(path), "%s/%s", fx->dir, name);
    static const char *const prefixes[] = {"params/"};
    return ck_read_all(path, prefixes, 1, count);
}

/* Losses and gradient norms of every step within rel_tol; returns the largest parameter
 * difference. */
static double compare_runs(const struct fixture *fx, const char *a, const char *b, int steps,
                           double rel_tol) {
    const char *keys[2] = {"\"loss\":", "\"grad_norm\":"};
    for (int k = 0; k < 2; k++) {
        double la[64], lb[64];
        cr_assert_eq(read_metric(fx, a, keys[k], la, 64), steps, "%s: wrong number of steps", a);
        cr_assert_eq(read_metric(fx, b, keys[k], lb, 64), steps, "%s: wrong number of steps", b);
        for (int s = 0; s < steps; s++)
            cr_assert(fabs(la[s] - lb[s]) <= rel_tol * fabs(la[s]), "step %d: %s %s%.9g, %s %.9g",
                      s + 1, a, keys[k], la[s], b, lb[s]);
    }
    long na, nb;
    float *pa = read_params(fx, a, &na), *pb = read_params(fx, b, &nb);
    cr_assert_eq(na, nb);
    double worst = 0;
    for (long i = 0; i < na; i++)
        worst = fmax(worst, fabs((double)pa[i] - (double)pb[i]));
    free(pa);
    free(pb);
    return worst;
}

static void assert_ok(const struct run_result *r, const char *what) {
    cr_assert_eq(r->code, 0, "%s exited %d:\n%s", what, r->code, r->out);
}

/* ---- collectives ---- */

static void collectives(int np) {
    struct run_result r;
    sh_run(&r, "mpirun --oversubscribe -np %d %s/tests/multirank/mpi_collectives", np, build_dir());
    assert_ok(&r, "mpi_collectives");
    cr_assert(strstr(r.out, "collectives: ok") != NULL, "%s", r.out);
}

Test(multirank_comm, collectives_on_2_ranks) { collectives(2); }
Test(multirank_comm, collectives_on_3_ranks) { collectives(3); }

/* ZeRO-1 over bf16 parameters (the bf16-storing test backend): the bf16 all-gather leaves every
 * rank the same parameters, equal to ZeRO-0's to bf16 rounding; 3 ranks cut uneven slices. */
Test(multirank_comm, zero1_all_gathers_bf16_parameters) {
    for (int np = 2; np <= 3; np++) {
        struct run_result r;
        sh_run(&r, "mpirun --oversubscribe -np %d %s/tests/multirank/mpi_zero_bf16", np,
               build_dir());
        assert_ok(&r, "mpi_zero_bf16");
        cr_assert(strstr(r.out, "zero bf16: ok") != NULL, "%s", r.out);
    }
}
Test(multirank_comm, collectives_on_4_ranks) { collectives(4); }

/* The NCCL id made on rank 0 reaches every rank byte for byte over MPI (a fake maker: no GPU). */
Test(multirank_comm, nccl_id_arrives_identical_on_every_rank) {
    for (int np = 2; np <= 3; np++) {
        struct run_result r;
        sh_run(&r, "mpirun --oversubscribe -np %d %s/tests/multirank/mpi_share_id", np,
               build_dir());
        assert_ok(&r, "mpi_share_id");
        cr_assert(strstr(r.out, "share id: ok") != NULL, "%s", r.out);
    }
}

/* ---- equal to one rank ---- */

Test(multirank_train, same_global_batch_same_losses_at_dp_1_2_4) {
    struct fixture fx;
    fixture_make(&fx);
    struct run_result r;
    char common[512], extra[640];
    /* 7 eval batches: split unevenly over 2 and 4 ranks */
    snprintf(common, sizeof(common),
             "--steps 20 --bucket-mb 0.01 --batch 2 --val-data %s --eval-every 10 "
             "--eval-batches 7",
             fx.data);
    snprintf(extra, sizeof(extra), "%s --grad-accum 4", common);
    train(&r, &fx, 0, "dp1", extra);
    assert_ok(&r, "dp1");
    snprintf(extra, sizeof(extra), "%s --grad-accum 2", common);
    train(&r, &fx, 2, "dp2", extra);
    assert_ok(&r, "dp2");
    cr_assert(strstr(r.out, "global batch 8 sequences = batch 2 x grad-accum 2 x dp 2") != NULL,
              "%s", r.out);
    cr_assert(strstr(r.out, "layout: world 2 = dp 2 x tp 1") != NULL, "%s", r.out);
    cr_assert(strstr(r.out, "[rank 1] step") == NULL, "rank 1 logged at info:\n%s", r.out);
    snprintf(extra, sizeof(extra), "%s --grad-accum 1", common);
    train(&r, &fx, 4, "dp4", extra);
    assert_ok(&r, "dp4");
    const double d2 = compare_runs(&fx, "dp1", "dp2", 20, 1e-5);
    const double d4 = compare_runs(&fx, "dp1", "dp4", 20, 1e-5);
    /* Parameters are not bit-identical (the summation order of gradients differs between
     * accumulation and MPI's reduction) but stay within float rounding of each other. */
    cr_assert_lt(d2, 1e-5, "dp2 parameters differ by %g", d2);
    cr_assert_lt(d4, 1e-5, "dp4 parameters differ by %g", d4);
    printf("# max parameter difference after 20 steps: dp2 %g, dp4 %g\n", d2, d4);
    /* Eval splits its batches over the ranks and agrees with one rank's. */
    double v1[4], v2[4], v4[4];
    cr_assert_eq(read_metric(&fx, "dp1", "\"val_loss\":", v1, 4), 2);
    cr_assert_eq(read_metric(&fx, "dp2", "\"val_loss\":", v2, 4), 2);
    cr_assert_eq(read_metric(&fx, "dp4", "\"val_loss\":", v4, 4), 2);
    for (int i = 0; i < 2; i++) {
        cr_assert(fabs(v2[i] - v1[i]) <= 1e-5 * v1[i], "eval %d: dp1 %.9g, dp2 %.9g", i, v1[i],
                  v2[i]);
        cr_assert(fabs(v4[i] - v1[i]) <= 1e-5 * v1[i], "eval %d: dp1 %.9g, dp4 %.9g", i, v1[i],
                  v4[i]);
    }
    cli_rmdir(fx.dir);
}

/* Losses and gradient norms of every step of two runs within rel_tol (no checkpoint needed). */
static void compare_metrics(const struct fixture *fx, const char *a, const char *b, int steps,
                            double rel_tol) {
    const char *keys[2] = {"\"loss\":", "\"grad_norm\":"};
    for (int k = 0; k < 2; k++) {
        double la[64], lb[64];
        cr_assert_eq(read_metric(fx, a, keys[k], la, 64), steps, "%s: wrong number of steps", a);
        cr_assert_eq(read_metric(fx, b, keys[k], lb, 64), steps, "%s: wrong number of steps", b);
        for (int s = 0; s < steps; s++)
            cr_assert(fabs(la[s] - lb[s]) <= rel_tol * fabs(la[s]), "step %d: %s %s%.9g, %s %.9g",
                      s + 1, a, keys[k], la[s], b, lb[s]);
    }
}

/* Tensor parallelism: heads split over tp ranks give the single rank's losses and norms (the
 * norm checks the gradients of split and replicated tensors alike), and dp 2 x tp 2 those of
 * dp 4 at the same global batch, with ZeRO-1 too. */
Test(multirank_train, tp_2_matches_tp_1_and_dp2_tp2_matches_dp4) {
    struct fixture fx;
    fixture_make(&fx);
    struct run_result r;
    const char *common = "--steps 20 --bucket-mb 0.01 --batch 2";
    char extra[640];
    snprintf(extra, sizeof(extra), "%s --grad-accum 2", common);
    train(&r, &fx, 0, "tp1", extra);
    assert_ok(&r, "tp1");
    snprintf(extra, sizeof(extra), "%s --grad-accum 2 --tp 2", common);
    train(&r, &fx, 2, "tp2", extra);
    assert_ok(&r, "tp2");
    cr_assert(strstr(r.out, "layout: world 2 = dp 1 x tp 2") != NULL, "%s", r.out);
    compare_metrics(&fx, "tp1", "tp2", 20, 1e-5);
    train(&r, &fx, 4, "dp4", "--steps 20 --bucket-mb 0.01 --batch 1 --grad-accum 1");
    assert_ok(&r, "dp4");
    train(&r, &fx, 4, "dp2tp2", "--steps 20 --bucket-mb 0.01 --batch 1 --grad-accum 2 --tp 2");
    assert_ok(&r, "dp2tp2");
    cr_assert(strstr(r.out, "layout: world 4 = dp 2 x tp 2") != NULL, "%s", r.out);
    compare_metrics(&fx, "dp4", "dp2tp2", 20, 1e-5);
    train(&r, &fx, 4, "dp2tp2z1",
          "--steps 20 --bucket-mb 0.01 --batch 1 --grad-accum 2 --tp 2 --zero 1");
    assert_ok(&r, "dp2tp2z1");
    compare_metrics(&fx, "dp4", "dp2tp2z1", 20, 1e-5);
    cli_rmdir(fx.dir);
}

/* The vocabulary-parallel embedding and classifier: a vocabulary of 200 (Vp 256, so at tp 4 the
 * last rank holds 8 real rows and 56 padded ones) with tokens drawn over all of it, 4 heads. tp 2
 * and tp 4 give tp 1's losses and norms for 20 steps, and dp 2 x tp 2 gives dp 4 x tp 1's at the
 * same global batch, with and without ZeRO-1. */
#define VOCAB_FLAGS "--vocab-size 200 --heads 4 --steps 20 --bucket-mb 0.01"

static void write_wide_shard(const struct fixture *fx) {
    const int64_t n = 40000;
    uint16_t *tok = malloc((size_t)n * sizeof(uint16_t));
    cr_assert_not_null(tok);
    uint64_t x = 12345;
    for (int64_t i = 0; i < n; i++) {
        x = x * 6364136223846793005ull + 1442695040888963407ull;
        tok[i] = (uint16_t)((x >> 33) % 200);
    }
    cr_assert_eq(ts_shard_write(fx->data, tok, n), TS_OK, "%s", ts_last_error());
    free(tok);
}

Test(multirank_train, vocab_parallel_tp_2_and_4_match_tp_1) {
    struct fixture fx;
    fixture_make(&fx);
    write_wide_shard(&fx);
    struct run_result r;
    train(&r, &fx, 0, "tp1", VOCAB_FLAGS " --batch 2 --grad-accum 2");
    assert_ok(&r, "tp1");
    train(&r, &fx, 2, "tp2", VOCAB_FLAGS " --batch 2 --grad-accum 2 --tp 2");
    assert_ok(&r, "tp2");
    compare_metrics(&fx, "tp1", "tp2", 20, 1e-5);
    train(&r, &fx, 4, "tp4", VOCAB_FLAGS " --batch 2 --grad-accum 2 --tp 4");
    assert_ok(&r, "tp4");
    cr_assert(strstr(r.out, "layout: world 4 = dp 1 x tp 4") != NULL, "%s", r.out);
    compare_metrics(&fx, "tp1", "tp4", 20, 1e-5);
    train(&r, &fx, 4, "dp4", VOCAB_FLAGS " --batch 1 --grad-accum 1");
    assert_ok(&r, "dp4");
    train(&r, &fx, 4, "dp2tp2", VOCAB_FLAGS " --batch 1 --grad-accum 2 --tp 2");
    assert_ok(&r, "dp2tp2");
    compare_metrics(&fx, "dp4", "dp2tp2", 20, 1e-5);
    train(&r, &fx, 4, "dp4z1", VOCAB_FLAGS " --batch 1 --grad-accum 1 --zero 1");
    assert_ok(&r, "dp4z1");
    train(&r, &fx, 4, "dp2tp2z1", VOCAB_FLAGS " --batch 1 --grad-accum 2 --tp 2 --zero 1");
    assert_ok(&r, "dp2tp2z1");
    compare_metrics(&fx, "dp4z1", "dp2tp2z1", 20, 1e-5);
    cli_rmdir(fx.dir);
}

/* Every parameter's gradient after one backward, gathered from the tp ranks' slices into global
 * coordinates, equals the single rank's (mpi_tp_grads.c); 3 ranks pad the vocabulary further. */
Test(multirank_train, tp_gradients_equal_one_rank) {
    for (int np = 2; np <= 4; np++) {
        struct run_result r;
        sh_run(&r, "mpirun --oversubscribe -np %d %s/tests/multirank/mpi_tp_grads", np,
               build_dir());
        assert_ok(&r, "mpi_tp_grads");
        cr_assert(strstr(r.out, "tp grads: ok") != NULL, "%s", r.out);
    }
}

Test(multirank_fail, impossible_tp_layouts_are_refused) {
    struct fixture fx;
    fixture_make(&fx);
    struct run_result r;
    train(&r, &fx, 3, "w3", "--steps 2 --tp 2");
    cr_assert_eq(r.code, 2, "exit %d:\n%s", r.code, r.out);
    cr_assert(strstr(r.out, "--tp 2 does not divide the 3 ranks") != NULL, "%s", r.out);
    train(&r, &fx, 4, "h2", "--steps 2 --tp 4");
    cr_assert_eq(r.code, 2, "exit %d:\n%s", r.code, r.out);
    cr_assert(strstr(r.out, "must divide --heads (2)") != NULL, "%s", r.out);
    cli_rmdir(fx.dir);
}

Test(multirank_train, zero1_matches_zero0) {
    struct fixture fx;
    fixture_make(&fx);
    struct run_result r;
    train(&r, &fx, 2, "z0", "--steps 20 --bucket-mb 0.01 --batch 2 --grad-accum 2 --zero 0");
    assert_ok(&r, "zero 0");
    train(&r, &fx, 2, "z1", "--steps 20 --bucket-mb 0.01 --batch 2 --grad-accum 2 --zero 1");
    assert_ok(&r, "zero 1");
    train(&r, &fx, 4, "z1np4", "--steps 20 --bucket-mb 0.01 --batch 2 --grad-accum 1 --zero 1");
    assert_ok(&r, "zero 1 on 4 ranks");
    const double d = compare_runs(&fx, "z0", "z1", 20, 1e-5);
    const double d4 = compare_runs(&fx, "z0", "z1np4", 20, 1e-5);
    cr_assert_lt(d, 1e-5, "ZeRO-1 parameters differ by %g", d);
    cr_assert_lt(d4, 1e-5, "ZeRO-1 (4 ranks) parameters differ by %g", d4);
    cli_rmdir(fx.dir);
}

Test(multirank_train, overlap_and_bucket_size_do_not_change_results) {
    struct fixture fx;
    fixture_make(&fx);
    struct run_result r;
    train(&r, &fx, 2, "ov", "--steps 10 --bucket-mb 0.01 --batch 2");
    assert_ok(&r, "overlap");
    train(&r, &fx, 2, "noov", "--steps 10 --bucket-mb 0.01 --batch 2 --no-overlap");
    assert_ok(&r, "no overlap");
    train(&r, &fx, 2, "onebucket", "--steps 10 --bucket-mb 64 --batch 2");
    assert_ok(&r, "one bucket");
    /* Fixed boundaries: when a bucket starts cannot change what it sums. */
    cr_assert_eq(compare_runs(&fx, "ov", "noov", 10, 0.0), 0.0);
    cr_assert_lt(compare_runs(&fx, "ov", "onebucket", 10, 1e-5), 1e-5);
    cli_rmdir(fx.dir);
}

/* ---- checkpoints ---- */

/* 20 steps straight against 10, stop, resume: bit-identical on 2 ranks, with and without
 * ZeRO-1 (the moments are saved as each rank's slice and read back as boxes). */
static void resume_bit_exact(int zero) {
    struct fixture fx;
    fixture_make(&fx);
    struct run_result r;
    char extra[256];
    snprintf(extra, sizeof(extra), "--steps 20 --batch 2 --grad-accum 2 --zero %d", zero);
    train(&r, &fx, 2, "straight", extra);
    assert_ok(&r, "straight");
    snprintf(extra, sizeof(extra), "--steps 20 --batch 2 --grad-accum 2 --zero %d --stop-after 10",
             zero);
    train(&r, &fx, 2, "stopped", extra);
    assert_ok(&r, "stopped");
    sh_run(&r,
           "mpirun --oversubscribe -np 2 %s/launch/tessera train --data %s --out %s/stopped "
           "--threads 1 --zero %d --resume",
           build_dir(), fx.data, fx.dir, zero);
    assert_ok(&r, "resumed");
    cr_assert(strstr(r.out, "resuming from") != NULL, "%s", r.out);
    cr_assert_eq(compare_runs(&fx, "straight", "stopped", 20, 0.0), 0.0);
    cli_rmdir(fx.dir);
}

Test(multirank_ckpt, resume_is_bit_exact_on_2_ranks) { resume_bit_exact(0); }
Test(multirank_ckpt, resume_is_bit_exact_on_2_ranks_zero1) { resume_bit_exact(1); }

/* Saved by 2 ranks with ZeRO-1 (moments in two slices), resumed on 1 rank and on 4 ranks with
 * ZeRO-1 (moments read as other slices): the global batch holds (grad-accum derived) and the
 * run continues as the uninterrupted one does, to float rounding across layouts. */
Test(multirank_ckpt, resume_on_another_layout_reshards) {
    struct fixture fx;
    fixture_make(&fx);
    struct run_result r;
    train(&r, &fx, 2, "straight", "--steps 20 --batch 2 --grad-accum 2 --zero 1");
    assert_ok(&r, "straight");
    train(&r, &fx, 2, "s", "--steps 20 --batch 2 --grad-accum 2 --zero 1 --stop-after 10");
    assert_ok(&r, "stopped");
    sh_run(&r, "cp -r %s/s %s/one && cp -r %s/s %s/four", fx.dir, fx.dir, fx.dir, fx.dir);
    sh_run(&r, "%s/launch/tessera train --data %s --out %s/one --threads 1 --resume", build_dir(),
           fx.data, fx.dir);
    assert_ok(&r, "resumed on one rank");
    cr_assert(strstr(r.out, "batch 2 x grad-accum 4 x dp 1") != NULL, "%s", r.out);
    sh_run(&r,
           "mpirun --oversubscribe -np 4 %s/launch/tessera train --data %s --out %s/four "
           "--threads 1 --zero 1 --resume",
           build_dir(), fx.data, fx.dir);
    assert_ok(&r, "resumed on four ranks");
    cr_assert(strstr(r.out, "batch 2 x grad-accum 1 x dp 4") != NULL, "%s", r.out);
    cr_assert_lt(compare_runs(&fx, "straight", "one", 20, 1e-5), 1e-5);
    cr_assert_lt(compare_runs(&fx, "straight", "four", 20, 1e-5), 1e-5);
    cli_rmdir(fx.dir);
}

/* A rank killed (SIGKILL) in the middle of a run that checkpoints every step, three times at
 * different steps: each time the job ends, latest verifies, and `--resume` continues; the
 * finished run equals one never interrupted, bit for bit. */
/* One rank with micro-batch 4 (global batch 4) resumed on 2 ranks: 4 x 2 does not divide 4, so
 * the resume derives micro-batch 2 (and says so) instead of refusing, and the run continues as
 * the uninterrupted one does. */
Test(multirank_ckpt, resume_on_more_ranks_derives_the_micro_batch) {
    struct fixture fx;
    fixture_make(&fx);
    struct run_result r;
    train(&r, &fx, 0, "straight", "--steps 12 --batch 4");
    assert_ok(&r, "straight");
    train(&r, &fx, 0, "s", "--steps 12 --batch 4 --stop-after 6");
    assert_ok(&r, "stopped");
    sh_run(&r,
           "mpirun --oversubscribe -np 2 %s/launch/tessera train --data %s --out %s/s "
           "--threads 1 --resume",
           build_dir(), fx.data, fx.dir);
    assert_ok(&r, "resumed on 2 ranks");
    cr_assert(strstr(r.out, "--batch 2 x --grad-accum 1 (the checkpoint had 4 x 1)") != NULL, "%s",
              r.out);
    cr_assert(strstr(r.out, "global batch 4 sequences = batch 2 x grad-accum 1 x dp 2") != NULL,
              "%s", r.out);
    compare_runs(&fx, "straight", "s", 12, 1e-5);
    cli_rmdir(fx.dir);
}

Test(multirank_ckpt, killed_rank_then_resume_matches_uninterrupted) {
    struct fixture fx;
    fixture_make(&fx);
    struct run_result r;
    const char *flags = "--steps 16 --batch 2 --grad-accum 2 --zero 1";
    train(&r, &fx, 2, "straight", flags);
    assert_ok(&r, "straight");
    const int kill_at[3] = {3, 7, 12};
    for (int k = 0; k < 3; k++) {
        sh_run(&r,
               "env TS_FAULT_INJECT=%d:%d:kill mpirun -np 2 %s/launch/tessera train --data %s "
               "--out %s/crashy --threads 1 --log-every 100 --vocab-size 64 --layers 2 "
               "--heads 2 --channels 32 --seq-len 16 --lr 3e-3 --warmup 2 --ckpt-every 1 "
               "--resume %s",
               k % 2, kill_at[k], build_dir(), fx.data, fx.dir, flags);
        cr_assert_neq(r.code, 0, "the job survived a killed rank:\n%s", r.out);
        char path[512];
        snprintf(path, sizeof(path), "%s/crashy", fx.dir);
        ts_ckpt_t *ck = NULL;
        cr_assert_eq(ts_ckpt_open(&ck, path), TS_OK, "kill %d: %s", k, ts_last_error());
        cr_assert_eq(ts_ckpt_verify(ck, NULL), TS_OK, "kill %d: %s", k, ts_last_error());
        cr_assert_geq(ts_ckpt_meta(ck)->step, kill_at[k] - 1, "kill %d", k);
        ts_ckpt_close(ck);
    }
    sh_run(&r,
           "mpirun --oversubscribe -np 2 %s/launch/tessera train --data %s --out %s/crashy "
           "--threads 1 --zero 1 --resume",
           build_dir(), fx.data, fx.dir);
    assert_ok(&r, "the final resume");
    cr_assert_eq(compare_runs(&fx, "straight", "crashy", 16, 0.0), 0.0);
    cli_rmdir(fx.dir);
}

/* ---- failures end the job ---- */

Test(multirank_fail, killed_rank_ends_the_job) {
    struct fixture fx;
    fixture_make(&fx);
    struct run_result r;
    sh_run(&r,
           "env TS_FAULT_INJECT=1:5:kill mpirun -np 2 %s/launch/tessera train " MODEL_FLAGS
           " --data %s --out %s/killed --steps 100000 --batch 2",
           build_dir(), fx.data, fx.dir);
    cr_assert_neq(r.code, 0, "the job survived a killed rank:\n%s", r.out);
    cr_assert_lt(r.seconds, 10.0, "the job took %.1f s to end", r.seconds);
    cr_assert(strstr(r.out, "rank 1") != NULL, "no message names rank 1:\n%s", r.out);
    cr_assert(strstr(r.out, "step 100000/100000") == NULL);
    cli_rmdir(fx.dir);
}

Test(multirank_fail, rank_failing_while_others_wait_aborts_the_job) {
    struct fixture fx;
    fixture_make(&fx);
    struct run_result r;
    /* Rank 1 fails before its step-5 collectives; rank 0 is already waiting inside them. */
    sh_run(&r,
           "env TS_FAULT_INJECT=1:5:io mpirun -np 2 %s/launch/tessera train " MODEL_FLAGS
           " --data %s --out %s/io --steps 100000 --batch 2",
           build_dir(), fx.data, fx.dir);
    cr_assert_neq(r.code, 0, "the job survived a failing rank:\n%s", r.out);
    cr_assert_lt(r.seconds, 10.0, "the job took %.1f s to end", r.seconds);
    cr_assert(strstr(r.out, "[rank 1] tessera train: cannot read token shard") != NULL, "%s",
              r.out);
    cli_rmdir(fx.dir);
}

Test(multirank_fail, ranks_with_different_seeds_refuse_to_start) {
    struct fixture fx;
    fixture_make(&fx);
    struct run_result r;
    sh_run(&r,
           "mpirun -np 2 sh -c 'exec %s/launch/tessera train " MODEL_FLAGS
           " --data %s --out %s/seed --steps 5 --batch 2 --seed $((1 + OMPI_COMM_WORLD_RANK))'",
           build_dir(), fx.data, fx.dir);
    cr_assert_eq(r.code, 2, "exit %d:\n%s", r.code, r.out);
    cr_assert(strstr(r.out, "ranks disagree on the configuration (rank 1 has seed=2, rank 0 has "
                            "seed=1)") != NULL,
              "%s", r.out);
    char path[512];
    snprintf(path, sizeof(path), "%s/seed/metrics.jsonl", fx.dir);
    cr_assert_eq(cli_count_lines(path, "loss"), -1, "a refused run wrote metrics");
    cli_rmdir(fx.dir);
}

Test(multirank_fail, ranks_with_different_model_flags_refuse_to_start) {
    struct fixture fx;
    fixture_make(&fx);
    struct run_result r;
    sh_run(&r,
           "mpirun -np 2 sh -c 'exec %s/launch/tessera train " MODEL_FLAGS
           " --data %s --out %s/model --steps 5 --batch 2 --channels $((32 + "
           "32 * OMPI_COMM_WORLD_RANK))'",
           build_dir(), fx.data, fx.dir);
    cr_assert_eq(r.code, 2, "exit %d:\n%s", r.code, r.out);
    cr_assert(strstr(r.out, "rank 1 has channels=64, rank 0 has channels=32") != NULL, "%s", r.out);
    cli_rmdir(fx.dir);
}

/* ---- Slurm (runs only where a Slurm cluster answers, e.g. the local one ENVIRONMENT.md
 * describes; skipped otherwise) ---- */

Test(multirank_slurm, srun_pmix_trains_like_mpirun) {
    if (system("timeout 5 sinfo -h >/dev/null 2>&1") != 0)
        cr_skip_test("no Slurm cluster answers sinfo");
    struct fixture fx;
    fixture_make(&fx);
    struct run_result r;
    train(&r, &fx, 2, "mpirun", "--steps 5 --batch 2");
    assert_ok(&r, "mpirun");
    sh_run(&r,
           "srun --mpi=pmix -n 2 --overcommit %s/launch/tessera train " MODEL_FLAGS
           " --data %s --out %s/srun --steps 5 --batch 2",
           build_dir(), fx.data, fx.dir);
    assert_ok(&r, "srun --mpi=pmix");
    cr_assert(strstr(r.out, "layout: world 2 = dp 2 x tp 1") != NULL, "%s", r.out);
    cr_assert_eq(compare_runs(&fx, "mpirun", "srun", 5, 0.0), 0.0);
    /* Without PMIx the tasks cannot form one job: refused, not run twice. */
    sh_run(&r,
           "srun --mpi=none -n 2 --overcommit %s/launch/tessera train " MODEL_FLAGS
           " --data %s --out %s/nopmix --steps 5 --batch 2",
           build_dir(), fx.data, fx.dir);
    cr_assert_neq(r.code, 0);
    cr_assert(strstr(r.out, "srun --mpi=pmix") != NULL, "%s", r.out);
    cli_rmdir(fx.dir);
}

/* The job id `tessera launch` printed (its last line that starts with a digit). */
static long job_id_of(const char *out) {
    long job = 0;
    for (const char *p = out; p && *p; p = strchr(p, '\n') ? strchr(p, '\n') + 1 : NULL)
        if (*p >= '0' && *p <= '9')
            job = strtol(p, NULL, 10);
    cr_assert_gt(job, 0, "no job id in: %s", out);
    return job;
}

/* Waits (at most `seconds`) for a job to reach a final state; squeue can miss a job for a moment
 * while it is requeued, scontrol cannot. A requeued job's hold is lifted after 5 s when `lift`:
 * one started while the node still cleans up the last allocation is killed ("Job credential
 * revoked"), which Slurm's own two-minute hold prevents normally. */
static void wait_for_job(long job, int seconds, bool lift) {
    char done[512], held[256], release[128];
    snprintf(done, sizeof(done),
             "scontrol show job %ld 2>/dev/null | "
             "grep -qE 'JobState=(COMPLETED|FAILED|TIMEOUT|CANCELLED|NODE_FAIL|OUT_OF_MEMORY) '",
             job);
    snprintf(held, sizeof(held), "squeue -h -j %ld -o %%r 2>/dev/null | grep -q BeginTime", job);
    snprintf(release, sizeof(release), "scontrol update JobId=%ld StartTime=now >/dev/null 2>&1",
             job);
    int waiting = 0;
    for (int i = 0; i < seconds * 5 && system(done) != 0; i++) {
        waiting = lift && system(held) == 0 ? waiting + 1 : 0;
        if (waiting >= 25) {
            if (system(release) != 0)
                cr_log_warn("could not lift job %ld's hold", job);
            waiting = 0;
        }
        usleep(200000);
    }
    cr_assert_eq(system(done), 0, "job %ld not finished after %d s", job, seconds);
}

/* The batch script `tessera launch` writes, submitted to the local Slurm: a 2-task CPU job that
 * trains exactly as `mpirun -np 2` does. */
Test(multirank_slurm, launch_sbatch_trains_like_mpirun, .timeout = 240) {
    if (system("timeout 5 sinfo -h >/dev/null 2>&1") != 0)
        cr_skip_test("no Slurm cluster answers sinfo");
    struct fixture fx;
    fixture_make(&fx);
    struct run_result r;
    train(&r, &fx, 2, "mpirun", "--steps 6 --batch 2");
    assert_ok(&r, "mpirun");
    sh_run(&r,
           "%s/launch/tessera launch --nodes 1 --tasks-per-node 2 --time 00:05:00 "
           "--sbatch-arg=--overcommit -- train " MODEL_FLAGS " --data %s --out %s/sb --steps 6 "
           "--batch 2",
           build_dir(), fx.data, fx.dir);
    assert_ok(&r, "tessera launch");
    wait_for_job(job_id_of(r.out), 120, false);
    char log[512];
    snprintf(log, sizeof(log), "grep -q 'train exited 0' %s/sb/slurm/*.out", fx.dir);
    cr_assert_eq(system(log), 0, "the job did not finish training (see %s/sb/slurm)", fx.dir);
    cr_assert_eq(compare_runs(&fx, "mpirun", "sb", 6, 0.0), 0.0);
    cli_rmdir(fx.dir);
}

/* The whole cycle on a real Slurm: a job whose time limit (1 minute) is shorter than its
 * training (a test hook slows each step to 40 ms: about 64 s of steps) checkpoints before the
 * limit (SIGUSR1 from --signal or the coordinator's own reading of the allocation's end), exits
 * 3 or 4, requeues itself, finishes in a later allocation, and its losses equal an uninterrupted
 * run's bit for bit. Slurm holds a requeued job about two minutes before it may start again;
 * the test lifts that hold (scontrol update StartTime=now) so it runs in about two minutes. */
Test(multirank_slurm, launch_requeues_after_the_time_limit, .timeout = 900) {
    if (system("timeout 5 sinfo -h >/dev/null 2>&1") != 0)
        cr_skip_test("no Slurm cluster answers sinfo");
    struct fixture fx;
    fixture_make(&fx);
    struct run_result r;
    const int steps = 1600; /* 64 s of steps: past the minute whatever the signal does */
    char extra[128];
    snprintf(extra, sizeof(extra), "--steps %d --batch 2 --log-every 500", steps);
    setenv("TS_TEST_STEP_DELAY_MS", "40", 1);
    sh_run(&r,
           "%s/launch/tessera launch --nodes 1 --tasks-per-node 2 --time 00:01:00 "
           "--signal-margin 25 --sbatch-arg=--overcommit -- train " MODEL_FLAGS
           " --data %s --out %s/sb %s",
           build_dir(), fx.data, fx.dir, extra);
    unsetenv("TS_TEST_STEP_DELAY_MS");
    assert_ok(&r, "tessera launch");
    const long job = job_id_of(r.out);
    /* the uninterrupted run, while the job waits or runs */
    train(&r, &fx, 2, "straight", extra);
    assert_ok(&r, "straight");
    wait_for_job(job, 600, true);
    char cmd[2048];
    snprintf(cmd, sizeof(cmd), "grep -q 'requeueing job' %s/sb/slurm/*.out", fx.dir);
    cr_assert_eq(system(cmd), 0, "the job never requeued itself (see %s/sb/slurm)", fx.dir);
    snprintf(cmd, sizeof(cmd), "grep -q 'train exited 0' %s/sb/slurm/*.out", fx.dir);
    cr_assert_eq(system(cmd), 0, "the job did not finish (see %s/sb/slurm)", fx.dir);
    /* every step once in metrics.jsonl, each loss equal to the uninterrupted run's */
    char a[512], b[512];
    snprintf(a, sizeof(a), "%s/straight/metrics.jsonl", fx.dir);
    snprintf(b, sizeof(b), "%s/sb/metrics.jsonl", fx.dir);
    snprintf(cmd, sizeof(cmd),
             "python3 -c 'import json,sys\n"
             "L=lambda p:[json.loads(l)[\"loss\"] for l in open(p) if \"\\\"loss\\\"\" in l]\n"
             "a,b=L(sys.argv[1]),L(sys.argv[2])\n"
             "sys.exit(0 if len(a)==%d and a==b else 1)' %s %s",
             steps, a, b);
    cr_assert_eq(system(cmd), 0, "losses differ from the uninterrupted run's (%s, %s)", a, b);
    cli_rmdir(fx.dir);
}

/* Before the world exists each rank read the data manifest and printed its line, unprefixed:
 * only rank 0 logs it now, with its prefix like every other line. */
Test(multirank_train, data_line_printed_once) {
    struct fixture fx;
    fixture_make(&fx);
    char path[512];
    snprintf(path, sizeof(path), "%s/manifest.json", fx.dir);
    FILE *f = fopen(path, "w");
    cr_assert_not_null(f);
    fprintf(f,
            "{\"format\": \"tessera-data-manifest\", \"version\": 1, \"tokenizer\": {\"name\": "
            "\"bytes\", \"vocab_size\": 64, \"eot\": -1, \"vocab_sha256\": \"%064d\"}, "
            "\"train_tokens\": 40000, \"val_tokens\": 0, \"train_shards\": 1, \"sources\": []}",
            0);
    fclose(f);
    struct run_result r;
    sh_run(&r,
           "mpirun --oversubscribe -np 2 %s/launch/tessera train --layers 1 --heads 2 --channels "
           "32 --seq-len 16 --threads 1 --steps 1 --batch 2 --data %s --out %s/once",
           build_dir(), fx.data, fx.dir);
    assert_ok(&r, "two ranks");
    const char *first = strstr(r.out, "says tokenizer bytes");
    cr_assert_not_null(first, "%s", r.out);
    cr_assert_null(strstr(first + 1, "says tokenizer bytes"), "printed more than once:\n%s", r.out);
    cr_assert_not_null(strstr(r.out, "[rank 0] data: "), "the data line lacks its prefix:\n%s",
                       r.out);
    cli_rmdir(fx.dir);
}
