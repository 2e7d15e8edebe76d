/* test_optim.c: one AdamW step by hand, a later step against the formula, and sum_squares
 * against a double sum, bit-identical across calls and thread counts. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "tests/kernels/helpers.h"

#define F32 TS_DTYPE_F32

Test(kernels_adamw, first_step_by_hand) {
    struct ts_backend *be = th_backend(TS_BLAS_AUTO);
    float p = 1.0f, g = 0.5f, m = 0.0f, v = 0.0f;
    struct ts_tensor tp = ts_tensor_1d(&p, F32, 1), tg = ts_tensor_1d(&g, F32, 1);
    struct ts_tensor tm = ts_tensor_1d(&m, F32, 1), tv = ts_tensor_1d(&v, F32, 1);
    /* g = 0.5 * 2 = 1; m = 0.1, v = 0.001; mh = vh = 1; p -= 0.01 (1 / (1 + 1e-8) + 0.1 * 1) */
    cr_assert_eq(ts_op_adamw(be, &tp, &tg, &tm, &tv, 0.01f, 0.9f, 0.999f, 1e-8f, 0.1f, 2.0f, 1),
                 TS_OK, "%s", ts_last_error());
    cr_assert_float_eq(m, 0.1f, 1e-7);
    cr_assert_float_eq(v, 0.001f, 1e-7);
    cr_assert_float_eq(p, 0.989f, 1e-6, "param %.8f", p);
    ts_backend_destroy(be);
}

Test(kernels_adamw, later_step_matches_the_formula) {
    struct ts_backend *be = th_backend(TS_BLAS_AUTO);
    enum { n = 40000 };
    float *p = th_alloc(n), *g = th_alloc(n), *m = th_alloc(n), *v = th_alloc(n);
    th_rand(p, n, 71, 1.0f);
    th_rand(g, n, 72, 1.0f);
    th_rand(m, n, 73, 0.1f);
    th_rand(v, n, 74, 0.01f);
    for (int i = 0; i < n; i++)
        v[i] = fabsf(v[i]);
    float *p0 = th_alloc(n), *m0 = th_alloc(n), *v0 = th_alloc(n);
    memcpy(p0, p, sizeof(float) * n), memcpy(m0, m, sizeof(float) * n);
    memcpy(v0, v, sizeof(float) * n);
    struct ts_tensor tp = ts_tensor_1d(p, F32, n), tg = ts_tensor_1d(g, F32, n);
    struct ts_tensor tm = ts_tensor_1d(m, F32, n), tv = ts_tensor_1d(v, F32, n);
    float lr = 3e-4f, b1 = 0.9f, b2 = 0.95f, eps = 1e-8f, wd = 0.1f, gs = 0.5f;
    int step = 7;
    cr_assert_eq(ts_op_adamw(be, &tp, &tg, &tm, &tv, lr, b1, b2, eps, wd, gs, step), TS_OK);
    for (int i = 0; i < n; i++) {
        double gi = (double)g[i] * gs;
        double mi = b1 * (double)m0[i] + (1 - (double)b1) * gi;
        double vi = b2 * (double)v0[i] + (1 - (double)b2) * gi * gi;
        double mh = mi / (1 - pow(b1, step)), vh = vi / (1 - pow(b2, step));
        double pi = p0[i] - lr * (mh / (sqrt(vh) + eps) + wd * (double)p0[i]);
        cr_assert(fabs(m[i] - mi) < 1e-6 && fabs(v[i] - vi) < 1e-6, "m/v at %d", i);
        cr_assert(fabs(p[i] - pi) < 1e-6, "param %d: %.9f vs %.9f", i, (double)p[i], pi);
    }
    free(p), free(g), free(m), free(v), free(p0), free(m0), free(v0);
    ts_backend_destroy(be);
}

static float sum_squares_with(int threads, const float *x, int64_t n) {
    struct ts_cpu_options opt = {.threads = threads, .blas = TS_BLAS_REFERENCE};
    struct ts_backend *be = NULL;
    cr_assert_eq(ts_cpu_backend_create(&be, &opt), TS_OK);
    float out = -1.0f;
    struct ts_tensor to = ts_tensor_1d(&out, F32, 1), tx = ts_tensor_1d((void *)x, F32, n);
    cr_assert_eq(ts_op_sum_squares(be, &to, &tx), TS_OK, "%s", ts_last_error());
    ts_backend_destroy(be);
    return out;
}

Test(kernels_sum_squares, matches_double_sum_and_is_bit_identical) {
    const int64_t n = 3 * 1000 * 1000 + 17; /* several rounds of blocks, a ragged tail */
    float *x = th_alloc(n);
    th_rand(x, n, 81, 1.0f);
    double ref = 0.0;
    for (int64_t i = 0; i < n; i++)
        ref += (double)x[i] * x[i];
    float s1 = sum_squares_with(0, x, n);
    cr_assert(fabs(s1 - ref) <= 1e-6 * ref, "sum %.9g vs %.9g", (double)s1, ref);
    for (int rep = 0; rep < 3; rep++) {
        float again = sum_squares_with(0, x, n);
        cr_assert_eq(memcmp(&again, &s1, sizeof s1), 0, "repeat %d differs", rep);
    }
    float one = sum_squares_with(1, x, n), three = sum_squares_with(3, x, n);
    cr_assert_eq(memcmp(&one, &s1, sizeof s1), 0, "1 thread differs");
    cr_assert_eq(memcmp(&three, &s1, sizeof s1), 0, "3 threads differ");
    float small[3] = {1, 2, -2};
    cr_assert_eq(sum_squares_with(0, small, 3), 9.0f);
    free(x);
}
