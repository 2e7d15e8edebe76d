/* test_tp_ckpt.c: tensor-parallel checkpoints under a real mpirun.
 *
 * A dp 2 x tp 2 run (4 ranks) saves at step 6 and resumes at tp 1 (one process, or dp 2) and at
 * tp 4 (4 ranks): each continues as the uninterrupted run does (1e-5), and at the same layout
 * bit for bit. The model (3 layers of C 32) puts the ZeRO-1 boundary of the dp group inside
 * h.1.attn.c_attn.weight, in the middle of a row, so a rank's slice of it is several boxes per
 * Q/K/V group. model.h5 of the tp run equals the tp 1 run's (1e-5, h5py); a truncated rank file
 * and a tp that does not divide the heads are clear errors. The same-weights checks (bit-exact
 * model.h5, export, eval, sample) are tests/launch/test_tp_ckpt.c. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "checkpoint/ckpt.h"
#include "cli_util.h"
#include "mr_util.h"
#include "tests/checkpoint/read_all.h"

#define TP_MODEL                                                                                   \
    "--vocab-size 64 --layers 3 --heads 4 --channels 32 --seq-len 16 --lr 3e-3 --warmup 2 "        \
    "--log-every 100 --threads 1 --overwrite --steps 12 --batch 2 --bucket-mb 0.01"

/* [mpirun -np N] tessera train TP_MODEL --data D --out DIR/<name> <extra> (np 0: no mpirun). */
static void tp_train(struct run_result *r, const struct fixture *fx, int np, const char *name,
                     const char *extra) {
    char launcher[128] = "";
    if (np > 0)
        snprintf(launcher, sizeof(launcher), "mpirun --oversubscribe -np %d ", np);
    sh_run(r, "%s%s/launch/tessera train " TP_MODEL " --data %s --out %s/%s %s", launcher,
           build_dir(), fx->data, fx->dir, name, extra);
}

/* [mpirun -np N] tessera train --data D --out DIR/<name> --threads 1 --resume <extra>. */
static void tp_resume(struct run_result *r, const struct fixture *fx, int np, const char *name,
                      const char *extra) {
    char launcher[128] = "";
    if (np > 0)
        snprintf(launcher, sizeof(launcher), "mpirun --oversubscribe -np %d ", np);
    sh_run(r, "%s%s/launch/tessera train --data %s --out %s/%s --threads 1 --resume %s", launcher,
           build_dir(), fx->data, fx->dir, name, extra);
}

static void ok(const struct run_result *r, const char *what) {
    cr_assert_eq(r->code, 0, "%s exited %d:\n%s", what, r->code, r->out);
}

/* Every params/ and adam_m/ tensor of run `name`'s latest checkpoint, read whole. */
static float *read_state(const struct fixture *fx, const char *name, long *count) {
    char path[512];
    snprintf(path, sizeof(path), "%s/%s", fx->dir, name);
    static const char *const prefixes[] = {"params/", "adam_m/"};
    return ck_read_all(path, prefixes, 2, count);
}

/* Losses and norms of all 12 steps within rel_tol; returns the largest difference of the final
 * parameters and first moments. */
static double compare(const struct fixture *fx, const char *a, const char *b, double rel_tol) {
    const char *keys[2] = {"\"loss\":", "\"grad_norm\":"};
    for (int k = 0; k < 2; k++) {
        double la[32], lb[32];
        cr_assert_eq(read_metric(fx, a, keys[k], la, 32), 12, "%s: wrong number of steps", a);
        cr_assert_eq(read_metric(fx, b, keys[k], lb, 32), 12, "%s: wrong number of steps", b);
        for (int s = 0; s < 12; s++)
            cr_assert(fabs(la[s] - lb[s]) <= rel_tol * fabs(la[s]), "step %d: %s %s%.9g, %s %.9g",
                      s + 1, a, keys[k], la[s], b, lb[s]);
    }
    long na, nb;
    float *pa = read_state(fx, a, &na), *pb = read_state(fx, b, &nb);
    cr_assert_eq(na, nb);
    double worst = 0;
    for (long i = 0; i < na; i++)
        worst = fmax(worst, fabs((double)pa[i] - (double)pb[i]));
    free(pa);
    free(pb);
    return worst;
}

/* Saved at dp 2 x tp 2 (ZeRO `zero`) at step 6; resumed at tp 1 on `tp1_np` processes (0: no
 * mpirun), at tp 4 on 4 ranks and at the same layout. */
static void resume_across_tp(int zero, int tp1_np) {
    struct fixture fx;
    fixture_make(&fx);
    struct run_result r;
    char extra[128];
    snprintf(extra, sizeof(extra), "--tp 2 --zero %d", zero);
    tp_train(&r, &fx, 4, "straight", extra);
    ok(&r, "straight dp 2 x tp 2");
    snprintf(extra, sizeof(extra), "--tp 2 --zero %d --stop-after 6", zero);
    tp_train(&r, &fx, 4, "s", extra);
    ok(&r, "stopped dp 2 x tp 2");
    const char *copies[3] = {"tp1", "tp4", "same"};
    for (int i = 0; i < 3; i++) {
        sh_run(&r, "cp -r %s/s %s/%s", fx.dir, fx.dir, copies[i]);
        ok(&r, "cp");
    }

    sh_run(&r, "%s/launch/tessera ckpt inspect %s/s", build_dir(), fx.dir);
    ok(&r, "inspect");
    char want[160];
    snprintf(want, sizeof(want), "world 4, data-parallel 2, tensor-parallel 2, ZeRO stage %d",
             zero);
    cr_assert(strstr(r.out, want) != NULL, "%s", r.out);
    cr_assert(strstr(r.out, "h.0.attn.c_attn.weight (32, 96): rank 0 [0:32, 0:16] [0:32, 32:48] "
                            "[0:32, 64:80]; rank 1 [0:32, 16:32]") != NULL,
              "%s", r.out);

    tp_resume(&r, &fx, tp1_np, "tp1", "");
    ok(&r, "resumed at tp 1");
    snprintf(want, sizeof(want),
             "resume: saved on world 4 = dp 2 x tp 2 (ZeRO-%d), read on world %d = dp %d x tp 1",
             zero, tp1_np ? tp1_np : 1, tp1_np ? tp1_np : 1);
    cr_assert(strstr(r.out, want) != NULL, "%s", r.out);
    tp_resume(&r, &fx, 4, "tp4", "--tp 4");
    ok(&r, "resumed at tp 4");
    snprintf(want, sizeof(want), "read on world 4 = dp 1 x tp 4 (ZeRO-%d)", zero);
    cr_assert(strstr(r.out, want) != NULL, "%s", r.out);
    cr_assert(strstr(r.out, "global batch 4 sequences = batch 2 x grad-accum 2 x dp 1") != NULL,
              "%s", r.out);
    tp_resume(&r, &fx, 4, "same", "--tp 2");
    ok(&r, "resumed at the same layout");
    cr_assert(strstr(r.out, "resume: saved on") == NULL, "no layout change to report:\n%s", r.out);

    const double d1 = compare(&fx, "straight", "tp1", 1e-5);
    const double d4 = compare(&fx, "straight", "tp4", 1e-5);
    cr_assert_lt(d1, 1e-5, "tp 1 state differs by %g", d1);
    cr_assert_lt(d4, 1e-5, "tp 4 state differs by %g", d4);
    cr_assert_eq(compare(&fx, "straight", "same", 0.0), 0.0);
    printf("# ZeRO-%d: after resuming at tp 1 / tp 4 the state differs by %g / %g\n", zero, d1, d4);

    /* model.h5 of the tp run against a tp 1 run of the same steps (h5py, where installed) */
    tp_train(&r, &fx, 0, "single", "--grad-accum 2");
    ok(&r, "single process");
    if (system("/usr/bin/python3 -c 'import h5py' 2>/dev/null") == 0) {
        sh_run(&r,
               "/usr/bin/python3 -c \"import h5py, numpy as np\n"
               "a = h5py.File('%s/single/checkpoints/latest/model.h5', 'r')\n"
               "b = h5py.File('%s/straight/checkpoints/latest/model.h5', 'r')\n"
               "assert sorted(a) == sorted(b) and len(a) == 40, (list(a), list(b))\n"
               "assert a['wte.weight'].shape == (64, 32), a['wte.weight'].shape\n"
               "d = max(float(np.abs(a[k][()] - b[k][()]).max()) for k in a)\n"
               "assert all(a[k].shape == b[k].shape for k in a)\n"
               "print('model.h5 max difference', d)\n"
               "assert d < 1e-5, d\n\"",
               fx.dir, fx.dir);
        cr_assert_eq(r.code, 0, "model.h5 of dp 2 x tp 2 vs tp 1:\n%s", r.out);
    }
    cli_rmdir(fx.dir);
}

Test(multirank_tpckpt, dp2_tp2_resumes_at_tp1_dp2_and_tp4, .timeout = 240) {
    resume_across_tp(0, 2);
}

Test(multirank_tpckpt, dp2_tp2_zero1_resumes_at_tp1_and_tp4, .timeout = 240) {
    resume_across_tp(1, 0);
}

/* A truncated rank file of a tp checkpoint names the file; a tp that does not divide the
 * checkpoint's heads is refused before anything is read. */
Test(multirank_tpckpt, damaged_or_impossible_layouts_are_clear_errors, .timeout = 120) {
    struct fixture fx;
    fixture_make(&fx);
    struct run_result r;
    tp_train(&r, &fx, 4, "s", "--tp 2 --stop-after 3");
    ok(&r, "stopped dp 2 x tp 2");
    sh_run(&r, "cp -r %s/s %s/three", fx.dir, fx.dir);
    tp_resume(&r, &fx, 3, "three", "--tp 3");
    cr_assert_neq(r.code, 0);
    cr_assert(strstr(r.out, "--tp 3 must divide --heads (4)") != NULL, "%s", r.out);
    sh_run(&r, "truncate -s 4000 %s/s/checkpoints/step_00000003/rank_00001.h5", fx.dir);
    ok(&r, "truncate");
    sh_run(&r,
           "mpirun --oversubscribe -np 4 %s/launch/tessera train --data %s --out %s/t --threads 1 "
           "--resume-from %s/s --tp 4",
           build_dir(), fx.data, fx.dir, fx.dir);
    cr_assert_neq(r.code, 0, "%s", r.out);
    cr_assert(strstr(r.out, "rank_00001.h5") != NULL && strstr(r.out, "truncated") != NULL, "%s",
              r.out);
    sh_run(&r, "%s/launch/tessera eval --ckpt %s/s --data %s --threads 1", build_dir(), fx.dir,
           fx.data);
    cr_assert_neq(r.code, 0, "%s", r.out);
    cr_assert(strstr(r.out, "rank_00001.h5") != NULL, "%s", r.out);
    cli_rmdir(fx.dir);
}
