/* test_mixture.c: a data mixture (two sources, 0.7 / 0.3) under a real mpirun: dp 2 at the same
 * global batch trains on the same sequences as one process (the source of each sequence is a
 * function of the seed and its place in the global batch, not of the rank), so the losses and
 * gradient norms of every step agree to float rounding, as a single dataset's do. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "cli_util.h"
#include "mr_util.h"

#define FLAGS                                                                                      \
    "--vocab-size 64 --layers 2 --heads 2 --channels 32 --seq-len 16 --lr 3e-3 --warmup 2 "        \
    "--log-every 100 --threads 1 --steps 12 --batch 2 --bucket-mb 0.01"

Test(multirank_mixture, dp2_equals_dp1) {
    struct fixture fx;
    fixture_make(&fx); /* source one: fx.data */
    char other[320], data[800];
    snprintf(other, sizeof(other), "%s/code_000.bin", fx.dir);
    cli_write_pattern_shard(other, 30000, 64, 29);
    snprintf(data, sizeof(data), "--data %s:0.7 --data %s:0.3", fx.data, other);
    struct run_result r;
    sh_run(&r, "%s/launch/tessera train " FLAGS " %s --grad-accum 4 --out %s/dp1", build_dir(),
           data, fx.dir);
    cr_assert_eq(r.code, 0, "dp1:\n%s", r.out);
    sh_run(&r,
           "mpirun --oversubscribe -np 2 %s/launch/tessera train " FLAGS
           " %s --grad-accum 2 --out %s/dp2",
           build_dir(), data, fx.dir);
    cr_assert_eq(r.code, 0, "dp2:\n%s", r.out);
    cr_assert(strstr(r.out, "mixture source 1: weight 0.3") != NULL, "%s", r.out);
    /* a single source with the same flags trains on other sequences: its losses differ */
    sh_run(&r, "%s/launch/tessera train " FLAGS " --data %s --grad-accum 4 --out %s/one",
           build_dir(), fx.data, fx.dir);
    cr_assert_eq(r.code, 0, "one source:\n%s", r.out);
    const char *keys[2] = {"\"loss\":", "\"grad_norm\":"};
    for (int k = 0; k < 2; k++) {
        double a[32], b[32], c[32];
        cr_assert_eq(read_metric(&fx, "dp1", keys[k], a, 32), 12);
        cr_assert_eq(read_metric(&fx, "dp2", keys[k], b, 32), 12);
        cr_assert_eq(read_metric(&fx, "one", keys[k], c, 32), 12);
        int differ = 0;
        for (int s = 0; s < 12; s++) {
            cr_assert(fabs(a[s] - b[s]) <= 1e-5 * fabs(a[s]), "step %d: dp1 %s%.9g, dp2 %.9g",
                      s + 1, keys[k], a[s], b[s]);
            differ += fabs(a[s] - c[s]) > 1e-4 * fabs(a[s]);
        }
        if (k == 0)
            cr_assert_gt(differ, 6, "the mixture trained like its first source alone");
    }
    cli_rmdir(fx.dir);
}
