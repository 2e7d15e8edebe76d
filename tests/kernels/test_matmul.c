/* test_matmul.c: matmul forward by hand in both weight layouts, backward against finite
 * differences, and the "=" / "+=" contract of each gradient, on both matmul implementations. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "tests/kernels/helpers.h"

#define F32 TS_DTYPE_F32

static void hand_case(enum ts_blas_choice blas) {
    struct ts_backend *be = th_backend(blas);
    /* x (2,3) @ W (3,2) + b */
    float x[6] = {1, 2, 3, 4, 5, 6};
    float w_io[6] = {1, 2, 3, 4, 5, 6}; /* (IC=3, OC=2) */
    float w_oi[6] = {1, 3, 5, 2, 4, 6}; /* the same matrix stored (OC=2, IC=3) */
    float b[2] = {10, 20}, out[4];
    float expect[4] = {22 + 10, 28 + 20, 49 + 10, 64 + 20};
    struct ts_tensor tx = ts_tensor_2d(x, F32, 2, 3), to = ts_tensor_2d(out, F32, 2, 2);
    struct ts_tensor tb = ts_tensor_1d(b, F32, 2);
    struct ts_tensor tio = ts_tensor_2d(w_io, F32, 3, 2), toi = ts_tensor_2d(w_oi, F32, 2, 3);
    cr_assert_eq(ts_op_matmul_forward(be, &to, &tx, &tio, &tb, TS_W_IN_OUT), TS_OK, "%s",
                 ts_last_error());
    for (int i = 0; i < 4; i++)
        cr_assert_float_eq(out[i], expect[i], 1e-5, "in_out out[%d] = %f", i, out[i]);
    memset(out, 0xff, sizeof out); /* NaN: forward must overwrite */
    cr_assert_eq(ts_op_matmul_forward(be, &to, &tx, &toi, &tb, TS_W_OUT_IN), TS_OK, "%s",
                 ts_last_error());
    for (int i = 0; i < 4; i++)
        cr_assert_float_eq(out[i], expect[i], 1e-5, "out_in out[%d] = %f", i, out[i]);
    cr_assert_eq(ts_op_matmul_forward(be, &to, &tx, &toi, NULL, TS_W_OUT_IN), TS_OK);
    cr_assert_float_eq(out[3], 64.0f, 1e-5);
    ts_backend_destroy(be);
}

Test(kernels_matmul, forward_hand_case_both_layouts_reference) { hand_case(TS_BLAS_REFERENCE); }

Test(kernels_matmul, forward_hand_case_both_layouts_openblas) {
    if (!th_have_openblas())
        cr_skip_test("OpenBLAS not installed");
    hand_case(TS_BLAS_OPENBLAS);
}

enum { B = 2, T = 3, N = B * T, IC = 7, OC = 5 };

struct mm_fx {
    struct ts_backend *be;
    enum ts_wlayout layout;
    float *x, *w, *b, *out, *wout;
};

static struct ts_tensor weight_t(float *w, enum ts_wlayout layout) {
    return layout == TS_W_IN_OUT ? ts_tensor_2d(w, F32, IC, OC) : ts_tensor_2d(w, F32, OC, IC);
}

static double mm_objective(void *ctx) {
    struct mm_fx *f = ctx;
    struct ts_tensor tx = ts_tensor_3d(f->x, F32, B, T, IC),
                     to = ts_tensor_3d(f->out, F32, B, T, OC);
    struct ts_tensor tw = weight_t(f->w, f->layout), tb = ts_tensor_1d(f->b, F32, OC);
    cr_assert_eq(ts_op_matmul_forward(f->be, &to, &tx, &tw, &tb, f->layout), TS_OK, "%s",
                 ts_last_error());
    return th_dot(f->out, f->wout, N * OC);
}

static void grad_case(enum ts_blas_choice blas, enum ts_wlayout layout) {
    struct mm_fx f = {.be = th_backend(blas), .layout = layout};
    f.x = th_alloc(N * IC);
    f.w = th_alloc(IC * OC);
    f.b = th_alloc(OC);
    f.out = th_alloc(N * OC);
    f.wout = th_alloc(N * OC);
    th_rand(f.x, N * IC, 11, 1.0f);
    th_rand(f.w, IC * OC, 12, 1.0f);
    th_rand(f.b, OC, 13, 1.0f);
    th_rand(f.wout, N * OC, 14, 1.0f);

    float *dx = th_alloc(N * IC), *dw = th_alloc(IC * OC), *db = th_alloc(OC);
    for (int i = 0; i < N * IC; i++)
        dx[i] = 1e6f; /* dinp is overwritten, not accumulated */
    struct ts_tensor tdx = ts_tensor_3d(dx, F32, B, T, IC), tdw = weight_t(dw, layout);
    struct ts_tensor tdb = ts_tensor_1d(db, F32, OC), tdo = ts_tensor_3d(f.wout, F32, B, T, OC);
    struct ts_tensor tx = ts_tensor_3d(f.x, F32, B, T, IC), tw = weight_t(f.w, layout);
    cr_assert_eq(ts_op_matmul_backward(f.be, &tdx, &tdw, &tdb, &tdo, &tx, &tw, layout), TS_OK, "%s",
                 ts_last_error());

    double *num = calloc(N * IC + IC * OC, sizeof(double));
    th_numgrad(mm_objective, &f, f.x, N * IC, 1e-2f, num);
    th_check_grad("matmul dinp", dx, num, N * IC, 2e-4);
    th_numgrad(mm_objective, &f, f.w, IC * OC, 1e-2f, num);
    th_check_grad("matmul dweight", dw, num, IC * OC, 2e-4);
    th_numgrad(mm_objective, &f, f.b, OC, 1e-2f, num);
    th_check_grad("matmul dbias", db, num, OC, 2e-4);

    /* again, without dinp: dweight and dbias double, dinp untouched */
    float dx0 = dx[4], dw0 = dw[6], db0 = db[2];
    cr_assert_eq(ts_op_matmul_backward(f.be, NULL, &tdw, &tdb, &tdo, &tx, &tw, layout), TS_OK);
    cr_assert_float_eq(dx[4], dx0, 0.0);
    cr_assert_float_eq(dw[6], 2 * dw0, 1e-5);
    cr_assert_float_eq(db[2], 2 * db0, 1e-5);
    /* and with dinp, which is overwritten to the same values */
    cr_assert_eq(ts_op_matmul_backward(f.be, &tdx, &tdw, NULL, &tdo, &tx, &tw, layout), TS_OK);
    cr_assert_float_eq(dx[4], dx0, 1e-6);
    cr_assert_float_eq(db[2], 2 * db0, 1e-5);

    free(num);
    free(dx), free(dw), free(db);
    free(f.x), free(f.w), free(f.b), free(f.out), free(f.wout);
    ts_backend_destroy(f.be);
}

Test(kernels_matmul, backward_in_out_matches_finite_differences) {
    grad_case(TS_BLAS_AUTO, TS_W_IN_OUT);
}
Test(kernels_matmul, backward_out_in_matches_finite_differences) {
    grad_case(TS_BLAS_AUTO, TS_W_OUT_IN);
}
Test(kernels_matmul, backward_in_out_reference_blas) { grad_case(TS_BLAS_REFERENCE, TS_W_IN_OUT); }
Test(kernels_matmul, backward_out_in_reference_blas) { grad_case(TS_BLAS_REFERENCE, TS_W_OUT_IN); }
