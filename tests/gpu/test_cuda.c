/* test_cuda.c: the Criterion `cuda` suite: the CUDA backend against the CPU backend through the
 * op-check library (the same checks tessera-gpucheck runs, on the small shapes). Every test
 * skips, saying why, where the plug-in or a GPU is missing. CUDA contexts are created inside
 * each test: Criterion forks per test. */
#include <criterion/criterion.h>
#include <stdio.h>

#include "kernels/backend_load.h"
#include "kernels/cpu/cpu_backend.h"
#include "tests/gpu/opcheck.h"

static void backends(struct ts_backend **cpu, struct ts_backend **gpu) {
    *cpu = *gpu = NULL;
    if (ts_cuda_backend_create(gpu, NULL) != TS_OK)
        cr_skip_test("no CUDA backend here: %s", ts_last_error());
    cr_assert_eq(ts_cpu_backend_create(cpu, NULL), TS_OK, "%s", ts_last_error());
}

static void print_failure(const struct ts_opcheck_result *r, void *user) {
    (void)user;
    if (!r->pass)
        cr_log_error("%s %s %s: rel %.3e (tol %.0e), %lld bad, worst output %s", r->op, r->dtype,
                     r->shape, r->rel_l2, r->tol, (long long)r->bad, r->output);
}

static void ops(enum ts_dtype dt) {
    struct ts_backend *cpu, *gpu;
    backends(&cpu, &gpu);
    int fails = -1;
    cr_assert_eq(ts_opcheck_run(cpu, gpu, dt, NULL, true, 20261126, print_failure, NULL, &fails),
                 TS_OK, "%s", ts_last_error());
    cr_expect_eq(fails, 0, "%d op checks failed", fails);
    ts_backend_destroy(gpu);
    ts_backend_destroy(cpu);
}

Test(cuda_ops, fp32) { ops(TS_DTYPE_F32); }
Test(cuda_ops, bf16) { ops(TS_DTYPE_BF16); }

static void training(enum ts_dtype dt, double tol) {
    struct ts_backend *cpu, *gpu;
    backends(&cpu, &gpu);
    float rl[20], dl[20];
    double rel = 1;
    bool det = false;
    cr_assert_eq(ts_modelcheck_train(cpu, gpu, dt, 20, 5, rl, dl, &rel, &det), TS_OK, "%s",
                 ts_last_error());
    cr_expect_leq(rel, tol, "losses differ from the CPU by %.3e", rel);
    cr_expect(det, "two runs on the GPU gave different losses");
    ts_backend_destroy(gpu);
    ts_backend_destroy(cpu);
}

Test(cuda_model, train_fp32) { training(TS_DTYPE_F32, 1e-4); }
Test(cuda_model, train_bf16) { training(TS_DTYPE_BF16, 3e-2); }
