/* test_blas.c: OpenBLAS and the reference sgemm against a double-precision oracle on odd sizes,
 * every transpose combination, with alpha, beta and leading dimensions wider than the matrix. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/cpu/blas.h"
#include "tests/kernels/helpers.h"

enum { M = 37, NN = 53, K = 29, PAD = 3 };

/* C = alpha op(A) op(B) + beta C0 in double; leading dims include PAD. */
static void oracle(bool ta, bool tb, float alpha, const float *a, int lda, const float *b, int ldb,
                   float beta, const float *c0, double *c, int ldc) {
    for (int i = 0; i < M; i++)
        for (int j = 0; j < NN; j++) {
            double s = 0.0;
            for (int p = 0; p < K; p++) {
                double av = ta ? a[p * lda + i] : a[i * lda + p];
                double bv = tb ? b[j * ldb + p] : b[p * ldb + j];
                s += av * bv;
            }
            c[i * ldc + j] = alpha * s + beta * (double)c0[i * ldc + j];
        }
}

static void check_blas(struct ts_blas *blas, const char *name) {
    for (int combo = 0; combo < 4; combo++) {
        bool ta = combo & 1, tb = combo & 2;
        int lda = (ta ? M : K) + PAD, ldb = (tb ? K : NN) + PAD, ldc = NN + PAD;
        int arows = ta ? K : M, brows = tb ? NN : K;
        float *a = th_alloc(arows * lda), *b = th_alloc(brows * ldb);
        float *c = th_alloc(M * ldc), *c0 = th_alloc(M * ldc);
        double *ref = calloc(M * ldc, sizeof(double));
        th_rand(a, arows * lda, 100 + combo, 1.0f);
        th_rand(b, brows * ldb, 200 + combo, 1.0f);
        th_rand(c0, M * ldc, 300 + combo, 1.0f);
        for (int beta_case = 0; beta_case < 2; beta_case++) {
            float alpha = 0.75f, beta = beta_case ? 0.5f : 0.0f;
            memcpy(c, c0, sizeof(float) * M * ldc);
            if (!beta_case) /* beta 0 must ignore C, even NaN */
                for (int i = 0; i < M; i++)
                    c[i * ldc] = NAN;
            oracle(ta, tb, alpha, a, lda, b, ldb, beta, c0, ref, ldc);
            blas->sgemm(blas, ta, tb, M, NN, K, alpha, a, lda, b, ldb, beta, c, ldc);
            for (int i = 0; i < M; i++) {
                for (int j = 0; j < NN; j++)
                    cr_assert(fabs(c[i * ldc + j] - ref[i * ldc + j]) < 1e-4,
                              "%s trans_a=%d trans_b=%d beta=%g: C[%d,%d] = %g, expected %g", name,
                              ta, tb, (double)beta, i, j, (double)c[i * ldc + j], ref[i * ldc + j]);
                for (int j = NN; j < ldc; j++) /* padding columns untouched */
                    cr_assert_eq(c[i * ldc + j], c0[i * ldc + j], "%s wrote past n", name);
            }
        }
        free(a), free(b), free(c), free(c0), free(ref);
    }
}

Test(kernels_blas, reference_matches_double_oracle_all_transposes) {
    struct ts_blas blas;
    cr_assert_eq(ts_blas_load(&blas, TS_BLAS_REFERENCE, 2), TS_OK);
    cr_assert(blas.is_reference);
    check_blas(&blas, "reference");
    ts_blas_unload(&blas);
}

Test(kernels_blas, openblas_matches_double_oracle_all_transposes) {
    struct ts_blas blas;
    if (ts_blas_load(&blas, TS_BLAS_OPENBLAS, 2) != TS_OK)
        cr_skip_test("OpenBLAS not loadable: %s", ts_last_error());
    cr_assert_not(blas.is_reference);
    cr_assert(strstr(blas.description, "OpenBLAS") != NULL, "description: %s", blas.description);
    check_blas(&blas, "openblas");
    ts_blas_unload(&blas);
}

Test(kernels_blas, openblas_and_reference_agree_on_large_odd_size) {
    struct ts_blas ob, rf;
    if (ts_blas_load(&ob, TS_BLAS_OPENBLAS, 2) != TS_OK)
        cr_skip_test("OpenBLAS not loadable: %s", ts_last_error());
    cr_assert_eq(ts_blas_load(&rf, TS_BLAS_REFERENCE, 2), TS_OK);
    enum { m = 131, n = 197, k = 259 }; /* several reference tiles, ragged edges */
    float *a = th_alloc(m * k), *b = th_alloc(k * n), *c1 = th_alloc(m * n), *c2 = th_alloc(m * n);
    th_rand(a, m * k, 7, 1.0f);
    th_rand(b, k * n, 8, 1.0f);
    for (int combo = 0; combo < 4; combo++) {
        bool ta = combo & 1, tb = combo & 2;
        int lda = ta ? m : k, ldb = tb ? k : n;
        ob.sgemm(&ob, ta, tb, m, n, k, 1.0f, a, lda, b, ldb, 0.0f, c1, n);
        rf.sgemm(&rf, ta, tb, m, n, k, 1.0f, a, lda, b, ldb, 0.0f, c2, n);
        for (int i = 0; i < m * n; i++)
            cr_assert(fabsf(c1[i] - c2[i]) < 1e-3f, "trans %d%d: %d: %g vs %g", ta, tb, i,
                      (double)c1[i], (double)c2[i]);
    }
    free(a), free(b), free(c1), free(c2);
    ts_blas_unload(&ob);
    ts_blas_unload(&rf);
}

Test(kernels_blas, ts_blas_env_selects_reference) {
    setenv("TS_BLAS", "reference", 1);
    struct ts_backend *be = th_backend(TS_BLAS_AUTO);
    struct ts_backend_info info;
    be->info(be, &info);
    cr_assert(strstr(info.detail, "reference") != NULL, "detail: %s", info.detail);
    ts_backend_destroy(be);
    setenv("TS_BLAS", "bogus", 1);
    struct ts_cpu_options opt = {0};
    struct ts_backend *bad = (struct ts_backend *)0x1;
    cr_assert_eq(ts_cpu_backend_create(&bad, &opt), TS_ERR_INVALID_ARG);
    cr_assert_null(bad);
    cr_assert(strstr(ts_last_error(), "TS_BLAS") != NULL, "%s", ts_last_error());
    unsetenv("TS_BLAS");
}
