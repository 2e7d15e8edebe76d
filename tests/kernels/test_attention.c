/* test_attention.c: causal attention by hand at T = 2, backward against finite differences,
 * and the overwrite contract of att, out and dqkv. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "tests/kernels/helpers.h"

#define F32 TS_DTYPE_F32

Test(kernels_attention, forward_t2_matches_hand_values) {
    struct ts_backend *be = th_backend(TS_BLAS_AUTO);
    /* B = 1, T = 2, NH = 1, C = HS = 2; rows are q|k|v. q1.k1 / sqrt(2) = ln 3, q1.k0 = 0, so
     * row 1 attends 1/4 to position 0 and 3/4 to position 1. */
    float h = (float)(log(3.0) * sqrt(2.0) / 2.0);
    float qkv[12] = {
        0.3f, -0.7f, 0.0f, 0.0f, 4.0f, 0.0f, /* t = 0: q0 | k0 | v0 */
        1.0f, 1.0f,  h,    h,    0.0f, 8.0f, /* t = 1: q1 | k1 | v1 */
    };
    float out[4], att[4];
    memset(att, 0xff, sizeof att); /* NaN: every entry must be written */
    struct ts_tensor tq = ts_tensor_3d(qkv, F32, 1, 2, 6), to = ts_tensor_3d(out, F32, 1, 2, 2);
    struct ts_tensor ta = ts_tensor_4d(att, F32, 1, 1, 2, 2);
    cr_assert_eq(ts_op_attention_forward(be, &to, &ta, &tq, 1), TS_OK, "%s", ts_last_error());
    float expect_att[4] = {1.0f, 0.0f, 0.25f, 0.75f};
    float expect_out[4] = {4.0f, 0.0f, 1.0f, 6.0f};
    for (int i = 0; i < 4; i++) {
        cr_assert_float_eq(att[i], expect_att[i], 1e-6, "att[%d] = %f", i, att[i]);
        cr_assert_float_eq(out[i], expect_out[i], 1e-5, "out[%d] = %f", i, out[i]);
    }
    ts_backend_destroy(be);
}

enum { B = 2, T = 5, C = 8, NH = 2, C3 = 3 * C };

struct att_fx {
    struct ts_backend *be;
    float *qkv, *out, *att, *wout;
};

static double att_objective(void *ctx) {
    struct att_fx *f = ctx;
    struct ts_tensor tq = ts_tensor_3d(f->qkv, F32, B, T, C3),
                     to = ts_tensor_3d(f->out, F32, B, T, C);
    struct ts_tensor ta = ts_tensor_4d(f->att, F32, B, NH, T, T);
    cr_assert_eq(ts_op_attention_forward(f->be, &to, &ta, &tq, NH), TS_OK, "%s", ts_last_error());
    return th_dot(f->out, f->wout, B * T * C);
}

Test(kernels_attention, backward_matches_finite_differences) {
    struct att_fx f = {.be = th_backend(TS_BLAS_AUTO)};
    f.qkv = th_alloc(B * T * C3);
    f.out = th_alloc(B * T * C);
    f.att = th_alloc(B * NH * T * T);
    f.wout = th_alloc(B * T * C);
    th_rand(f.qkv, B * T * C3, 21, 1.5f);
    th_rand(f.wout, B * T * C, 22, 1.0f);
    for (int i = 0; i < B * NH * T * T; i++)
        f.att[i] = 99.0f;
    att_objective(&f);
    for (int b = 0; b < B * NH; b++) /* causal: zeros above the diagonal, rows sum to 1 */
        for (int t = 0; t < T; t++) {
            float s = 0.0f;
            for (int t2 = 0; t2 < T; t2++) {
                float a = f.att[(b * T + t) * T + t2];
                if (t2 > t)
                    cr_assert_eq(a, 0.0f, "att above the diagonal at (%d,%d,%d)", b, t, t2);
                s += a;
            }
            cr_assert_float_eq(s, 1.0f, 1e-5);
        }

    float *dqkv = th_alloc(B * T * C3), *scratch = th_alloc(B * NH * T * T);
    for (int i = 0; i < B * T * C3; i++)
        dqkv[i] = 1e6f; /* dqkv is overwritten */
    struct ts_tensor tdq = ts_tensor_3d(dqkv, F32, B, T, C3);
    struct ts_tensor tsc = ts_tensor_4d(scratch, F32, B, NH, T, T);
    struct ts_tensor tdo = ts_tensor_3d(f.wout, F32, B, T, C);
    struct ts_tensor tq = ts_tensor_3d(f.qkv, F32, B, T, C3);
    struct ts_tensor ta = ts_tensor_4d(f.att, F32, B, NH, T, T);
    cr_assert_eq(ts_op_attention_backward(f.be, &tdq, &tsc, &tdo, &tq, &ta, NH), TS_OK, "%s",
                 ts_last_error());
    double *num = calloc(B * T * C3, sizeof(double));
    th_numgrad(att_objective, &f, f.qkv, B * T * C3, 1e-2f, num);
    th_check_grad("attention dqkv", dqkv, num, B * T * C3, 2e-4);

    free(num), free(dqkv), free(scratch);
    free(f.qkv), free(f.out), free(f.att), free(f.wout);
    ts_backend_destroy(f.be);
}

/* Decoding position t against a cache of S >= T rows gives exactly forward's row t. */
Test(kernels_attention, decode_equals_forward_rows) {
    struct ts_backend *be = th_backend(TS_BLAS_AUTO);
    enum { S = 7 };
    float *qkv = th_alloc(B * T * C3), *out = th_alloc(B * T * C), *att = th_alloc(B * NH * T * T);
    float *cache = th_alloc(B * S * C3), *row = th_alloc(B * C), *scratch = th_alloc(B * NH * S);
    th_rand(qkv, B * T * C3, 41, 1.5f);
    th_rand(cache, B * S * C3, 42, 100.0f); /* rows past pos hold junk that must be ignored */
    for (int b = 0; b < B; b++)
        memcpy(cache + b * S * C3, qkv + b * T * C3, sizeof(float) * T * C3);
    struct ts_tensor tq = ts_tensor_3d(qkv, F32, B, T, C3), to = ts_tensor_3d(out, F32, B, T, C);
    struct ts_tensor ta = ts_tensor_4d(att, F32, B, NH, T, T);
    cr_assert_eq(ts_op_attention_forward(be, &to, &ta, &tq, NH), TS_OK, "%s", ts_last_error());
    struct ts_tensor tc = ts_tensor_3d(cache, F32, B, S, C3), tr = ts_tensor_2d(row, F32, B, C);
    struct ts_tensor ts = ts_tensor_3d(scratch, F32, B, NH, S);
    for (int t = 0; t < T; t++) {
        cr_assert_eq(ts_op_attention_decode(be, &tr, &ts, &tc, t, NH), TS_OK, "%s",
                     ts_last_error());
        for (int b = 0; b < B; b++)
            cr_expect_eq(memcmp(row + b * C, out + (b * T + t) * C, sizeof(float) * C), 0,
                         "b %d, t %d differs", b, t);
    }
    cr_expect_neq(ts_op_attention_decode(be, &tr, &ts, &tc, S, NH), TS_OK);
    cr_expect_not_null(strstr(ts_last_error(), "attention_decode"));
    free(qkv), free(out), free(att), free(cache), free(row), free(scratch);
    ts_backend_destroy(be);
}
