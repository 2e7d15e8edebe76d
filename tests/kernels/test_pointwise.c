/* test_pointwise.c: GELU, residual, fill and fill_normal against known values; GELU's backward
 * against finite differences. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/rng.h"
#include "tests/kernels/helpers.h"

#define F32 TS_DTYPE_F32

Test(kernels_gelu, forward_matches_known_values) {
    struct ts_backend *be = th_backend(TS_BLAS_AUTO);
    float x[6] = {0, 1, -1, 2, -3, 0.5f}, out[6];
    /* 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))), evaluated in double */
    double expect[6] = {0.0,
                        0.8411919906082768,
                        -0.15880800939172324,
                        1.954597694087775,
                        -0.0036373920817729943,
                        0.34571400982514394};
    struct ts_tensor tx = ts_tensor_2d(x, F32, 2, 3), to = ts_tensor_1d(out, F32, 6);
    cr_assert_eq(ts_op_gelu_forward(be, &to, &tx), TS_OK, "%s", ts_last_error());
    for (int i = 0; i < 6; i++)
        cr_assert_float_eq(out[i], (float)expect[i], 1e-6, "gelu(%g) = %.8f, expected %.8f",
                           (double)x[i], (double)out[i], expect[i]);
    float d[2] = {2.0f, 1.0f}, xin[2] = {1.0f, -0.5f}, dx[2] = {7, 7};
    struct ts_tensor td = ts_tensor_1d(d, F32, 2), txi = ts_tensor_1d(xin, F32, 2);
    struct ts_tensor tdx = ts_tensor_1d(dx, F32, 2);
    cr_assert_eq(ts_op_gelu_backward(be, &tdx, &txi, &td), TS_OK);
    cr_assert_float_eq(dx[0], 2.0f * 1.0829640837983767f, 1e-5, "dx[0] = %f", dx[0]);
    cr_assert_float_eq(dx[1], 0.1326300964749061f, 1e-5, "dx[1] = %f (overwritten?)", dx[1]);
    ts_backend_destroy(be);
}

enum { N = 300 };

struct gelu_fx {
    struct ts_backend *be;
    float *x, *out, *w;
};

static double gelu_objective(void *ctx) {
    struct gelu_fx *f = ctx;
    struct ts_tensor tx = ts_tensor_1d(f->x, F32, N), to = ts_tensor_1d(f->out, F32, N);
    cr_assert_eq(ts_op_gelu_forward(f->be, &to, &tx), TS_OK);
    return th_dot(f->out, f->w, N);
}

Test(kernels_gelu, backward_matches_finite_differences) {
    struct gelu_fx f = {.be = th_backend(TS_BLAS_AUTO)};
    f.x = th_alloc(N), f.out = th_alloc(N), f.w = th_alloc(N);
    th_rand(f.x, N, 51, 4.0f);
    th_rand(f.w, N, 52, 1.0f);
    float *dx = th_alloc(N);
    struct ts_tensor tdx = ts_tensor_1d(dx, F32, N), tx = ts_tensor_1d(f.x, F32, N);
    struct ts_tensor tw = ts_tensor_1d(f.w, F32, N);
    cr_assert_eq(ts_op_gelu_backward(f.be, &tdx, &tx, &tw), TS_OK);
    double *num = calloc(N, sizeof(double));
    th_numgrad(gelu_objective, &f, f.x, N, 1e-2f, num);
    th_check_grad("gelu dinp", dx, num, N, 2e-4);
    free(num), free(dx), free(f.x), free(f.out), free(f.w);
    ts_backend_destroy(f.be);
}

Test(kernels_residual, adds_elementwise_in_place_too) {
    struct ts_backend *be = th_backend(TS_BLAS_AUTO);
    enum { n = 100000 }; /* large enough to run in parallel */
    float *a = th_alloc(n), *b = th_alloc(n), *out = th_alloc(n);
    for (int i = 0; i < n; i++)
        a[i] = (float)i, b[i] = 0.5f * (float)i;
    struct ts_tensor ta = ts_tensor_1d(a, F32, n), tb = ts_tensor_1d(b, F32, n);
    struct ts_tensor to = ts_tensor_2d(out, F32, 1000, 100);
    cr_assert_eq(ts_op_residual_forward(be, &to, &ta, &tb), TS_OK);
    for (int i = 0; i < n; i++)
        cr_assert_eq(out[i], 1.5f * (float)i);
    cr_assert_eq(ts_op_residual_forward(be, &ta, &ta, &tb), TS_OK); /* out aliases a */
    cr_assert_eq(a[777], 1.5f * 777.0f);
    free(a), free(b), free(out);
    ts_backend_destroy(be);
}

Test(kernels_fill, fill_and_fill_normal_match_the_rng) {
    struct ts_backend *be = th_backend(TS_BLAS_AUTO);
    enum { n = 50000 };
    float *x = th_alloc(n);
    struct ts_tensor t = ts_tensor_2d(x, F32, 500, 100);
    cr_assert_eq(ts_op_fill(be, &t, 3.25f), TS_OK);
    for (int i = 0; i < n; i++)
        cr_assert_eq(x[i], 3.25f);
    cr_assert_eq(ts_op_fill_normal(be, &t, 1.0f, 0.02f, 1234, 1000), TS_OK);
    double s = 0, s2 = 0;
    for (int i = 0; i < n; i++) {
        cr_assert_eq(x[i], 1.0f + 0.02f * ts_rng_normal(1234, 1000 + (uint64_t)i), "x[%d]", i);
        s += x[i], s2 += (double)x[i] * x[i];
    }
    double mean = s / n, sd = sqrt(s2 / n - mean * mean);
    cr_assert(fabs(mean - 1.0) < 1e-3, "mean %f", mean);
    cr_assert(fabs(sd - 0.02) < 1e-3, "std %f", sd);
    /* a shard at counter offset k reproduces the tail of the full fill */
    float tail[100];
    struct ts_tensor tt = ts_tensor_1d(tail, F32, 100);
    cr_assert_eq(ts_op_fill_normal(be, &tt, 1.0f, 0.02f, 1234, 1000 + n - 100), TS_OK);
    cr_assert_eq(memcmp(tail, x + n - 100, sizeof tail), 0);
    free(x);
    ts_backend_destroy(be);
}
