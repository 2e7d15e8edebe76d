/* test_layernorm.c: layernorm forward against hand values, backward against finite differences
 * and its "+=" contract. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>

#include "tests/kernels/helpers.h"

#define F32 TS_DTYPE_F32

Test(kernels_layernorm, forward_matches_hand_values) {
    struct ts_backend *be = th_backend(TS_BLAS_AUTO);
    float x[4] = {1, 2, 3, 4}, w[4] = {1, 1, 2, 1}, b[4] = {0, 0, 0, 0.5f}, out[4], mean, rstd;
    struct ts_tensor to = ts_tensor_2d(out, F32, 1, 4), tx = ts_tensor_2d(x, F32, 1, 4);
    struct ts_tensor tw = ts_tensor_1d(w, F32, 4), tb = ts_tensor_1d(b, F32, 4);
    struct ts_tensor tm = ts_tensor_1d(&mean, F32, 1), tr = ts_tensor_1d(&rstd, F32, 1);
    cr_assert_eq(ts_op_layernorm_forward(be, &to, &tm, &tr, &tx, &tw, &tb), TS_OK, "%s",
                 ts_last_error());
    /* mean 2.5, biased variance 1.25, rstd 1/sqrt(1.25 + 1e-5) */
    double r = 1.0 / sqrt(1.25 + 1e-5);
    double expect[4] = {-1.5 * r, -0.5 * r, 2 * 0.5 * r, 1.5 * r + 0.5};
    cr_assert_float_eq(mean, 2.5f, 1e-6);
    cr_assert_float_eq(rstd, (float)r, 1e-5);
    for (int i = 0; i < 4; i++)
        cr_assert_float_eq(out[i], (float)expect[i], 1e-5, "out[%d] = %f, expected %f", i, out[i],
                           expect[i]);
    ts_backend_destroy(be);
}

enum { B = 2, T = 3, C = 16, N = B * T };

struct ln_fx {
    struct ts_backend *be;
    float *x, *w, *b, *out, *mean, *rstd, *wout; /* wout: objective weights */
};

static void ln_forward(struct ln_fx *f) {
    struct ts_tensor to = ts_tensor_3d(f->out, F32, B, T, C), tx = ts_tensor_3d(f->x, F32, B, T, C);
    struct ts_tensor tw = ts_tensor_1d(f->w, F32, C), tb = ts_tensor_1d(f->b, F32, C);
    struct ts_tensor tm = ts_tensor_2d(f->mean, F32, B, T), tr = ts_tensor_2d(f->rstd, F32, B, T);
    cr_assert_eq(ts_op_layernorm_forward(f->be, &to, &tm, &tr, &tx, &tw, &tb), TS_OK, "%s",
                 ts_last_error());
}

static double ln_objective(void *ctx) {
    struct ln_fx *f = ctx;
    ln_forward(f);
    return th_dot(f->out, f->wout, N * C);
}

Test(kernels_layernorm, backward_matches_finite_differences_and_accumulates) {
    struct ln_fx f = {.be = th_backend(TS_BLAS_AUTO)};
    f.x = th_alloc(N * C);
    f.w = th_alloc(C);
    f.b = th_alloc(C);
    f.out = th_alloc(N * C);
    f.mean = th_alloc(N);
    f.rstd = th_alloc(N);
    f.wout = th_alloc(N * C);
    th_rand(f.x, N * C, 1, 2.0f);
    th_rand(f.w, C, 2, 1.5f);
    th_rand(f.b, C, 3, 0.5f);
    th_rand(f.wout, N * C, 4, 1.0f);

    float *dx = th_alloc(N * C), *dw = th_alloc(C), *db = th_alloc(C);
    ln_forward(&f);
    struct ts_tensor tdx = ts_tensor_3d(dx, F32, B, T, C), tdw = ts_tensor_1d(dw, F32, C);
    struct ts_tensor tdb = ts_tensor_1d(db, F32, C), tdo = ts_tensor_3d(f.wout, F32, B, T, C);
    struct ts_tensor tx = ts_tensor_3d(f.x, F32, B, T, C), tw = ts_tensor_1d(f.w, F32, C);
    struct ts_tensor tm = ts_tensor_2d(f.mean, F32, B, T), tr = ts_tensor_2d(f.rstd, F32, B, T);
    cr_assert_eq(ts_op_layernorm_backward(f.be, &tdx, &tdw, &tdb, &tdo, &tx, &tw, &tm, &tr), TS_OK,
                 "%s", ts_last_error());

    double *num = calloc(N * C, sizeof(double));
    th_numgrad(ln_objective, &f, f.x, N * C, 1e-2f, num);
    th_check_grad("layernorm dinp", dx, num, N * C, 2e-4);
    th_numgrad(ln_objective, &f, f.w, C, 1e-2f, num);
    th_check_grad("layernorm dweight", dw, num, C, 2e-4);
    th_numgrad(ln_objective, &f, f.b, C, 1e-2f, num);
    th_check_grad("layernorm dbias", db, num, C, 2e-4);

    /* a second backward adds the same gradients again */
    float dx1 = dx[5], dw1 = dw[3], db1 = db[7];
    ln_forward(&f);
    cr_assert_eq(ts_op_layernorm_backward(f.be, &tdx, &tdw, &tdb, &tdo, &tx, &tw, &tm, &tr), TS_OK);
    cr_assert_float_eq(dx[5], 2 * dx1, 1e-5);
    cr_assert_float_eq(dw[3], 2 * dw1, 1e-5);
    cr_assert_float_eq(db[7], 2 * db1, 1e-5);

    free(num);
    free(dx), free(dw), free(db);
    free(f.x), free(f.w), free(f.b), free(f.out), free(f.mean), free(f.rstd), free(f.wout);
    ts_backend_destroy(f.be);
}
