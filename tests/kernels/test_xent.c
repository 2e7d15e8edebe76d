/* test_xent.c: fused softmax + cross-entropy against hand values, padded columns, stability
 * with huge logits, and the in-place gradient against finite differences with vocab < Vp. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "tests/kernels/helpers.h"

#define F32 TS_DTYPE_F32

Test(kernels_xent, hand_values_padding_and_stability) {
    struct ts_backend *be = th_backend(TS_BLAS_AUTO);
    /* vocab 3 of Vp 4; row 0: probabilities 1/8, 2/8, 5/8; row 1: huge logits */
    float logits[8] = {0.0f, logf(2.0f), logf(5.0f), 77.0f, 1000.0f, 1001.0f, 999.0f, -5.0f};
    int32_t tg[2] = {1, 0};
    float losses[2];
    struct ts_tensor tl = ts_tensor_2d(logits, F32, 2, 4), tls = ts_tensor_1d(losses, F32, 2);
    struct ts_tensor tt = ts_tensor_1d(tg, TS_DTYPE_I32, 2);
    float before[8];
    memcpy(before, logits, sizeof before);
    cr_assert_eq(ts_op_softmax_xent(be, &tls, &tl, &tt, 3, 0.5f, false), TS_OK, "%s",
                 ts_last_error());
    cr_assert_eq(memcmp(before, logits, sizeof before), 0, "without grad, logits are untouched");
    cr_assert_float_eq(losses[0], logf(4.0f), 1e-6, "loss %f", losses[0]);
    cr_assert_float_eq(losses[1], 1.4076059644443804f, 1e-5, "loss %f", losses[1]);

    cr_assert_eq(ts_op_softmax_xent(be, &tls, &tl, &tt, 3, 0.5f, true), TS_OK);
    cr_assert_float_eq(losses[0], logf(4.0f), 1e-6);
    float expect0[4] = {0.5f / 8, 0.5f * (2.0f / 8 - 1), 0.5f * 5 / 8, 0.0f};
    for (int v = 0; v < 4; v++)
        cr_assert_float_eq(logits[v], expect0[v], 1e-6, "dlogits[0,%d] = %f", v, logits[v]);
    double z = 1 + M_E + 1 / M_E;
    float expect1[4] = {(float)(0.5 * (1 / z - 1)), (float)(0.5 * M_E / z),
                        (float)(0.5 / (M_E * z)), 0.0f};
    for (int v = 0; v < 4; v++)
        cr_assert_float_eq(logits[4 + v], expect1[v], 1e-6, "dlogits[1,%d] = %f", v, logits[4 + v]);
    ts_backend_destroy(be);
}

Test(kernels_xent, target_outside_vocab_is_an_error) {
    struct ts_backend *be = th_backend(TS_BLAS_AUTO);
    float logits[4] = {0}, loss;
    int32_t tg = 3; /* a padded column */
    struct ts_tensor tl = ts_tensor_2d(logits, F32, 1, 4), tls = ts_tensor_1d(&loss, F32, 1);
    struct ts_tensor tt = ts_tensor_1d(&tg, TS_DTYPE_I32, 1);
    cr_assert_eq(ts_op_softmax_xent(be, &tls, &tl, &tt, 3, 1.0f, true), TS_ERR_INVALID_ARG);
    cr_assert(strstr(ts_last_error(), "softmax_xent") != NULL, "%s", ts_last_error());
    ts_backend_destroy(be);
}

enum { N = 5, VP = 9, VOCAB = 7 };
#define DLOSS 0.37f

struct xent_fx {
    struct ts_backend *be;
    float *logits, *losses;
    int32_t tg[N];
};

static double xent_objective(void *ctx) {
    struct xent_fx *f = ctx;
    struct ts_tensor tl = ts_tensor_2d(f->logits, F32, N, VP),
                     tls = ts_tensor_1d(f->losses, F32, N);
    struct ts_tensor tt = ts_tensor_1d(f->tg, TS_DTYPE_I32, N);
    cr_assert_eq(ts_op_softmax_xent(f->be, &tls, &tl, &tt, VOCAB, DLOSS, false), TS_OK);
    double s = 0;
    for (int i = 0; i < N; i++)
        s += DLOSS * (double)f->losses[i];
    return s;
}

Test(kernels_xent, gradient_matches_finite_differences_with_padding) {
    struct xent_fx f = {.be = th_backend(TS_BLAS_AUTO)};
    f.logits = th_alloc(N * VP);
    f.losses = th_alloc(N);
    th_rand(f.logits, N * VP, 61, 3.0f);
    for (int i = 0; i < N; i++)
        f.tg[i] = (i * 3) % VOCAB;
    double *num = calloc(N * VP, sizeof(double));
    th_numgrad(xent_objective, &f, f.logits, N * VP, 1e-2f, num);
    float *grad = th_alloc(N * VP);
    memcpy(grad, f.logits, sizeof(float) * N * VP);
    struct ts_tensor tl = ts_tensor_2d(grad, F32, N, VP), tls = ts_tensor_1d(f.losses, F32, N);
    struct ts_tensor tt = ts_tensor_1d(f.tg, TS_DTYPE_I32, N);
    cr_assert_eq(ts_op_softmax_xent(f.be, &tls, &tl, &tt, VOCAB, DLOSS, true), TS_OK);
    th_check_grad("softmax_xent dlogits", grad, num, N * VP, 2e-4);
    for (int i = 0; i < N; i++)
        for (int v = VOCAB; v < VP; v++) {
            cr_assert_eq(grad[i * VP + v], 0.0f, "padded column %d of row %d", v, i);
            cr_assert(fabs(num[i * VP + v]) < 1e-9, "padded columns do not affect the loss");
        }
    free(num), free(grad), free(f.logits), free(f.losses);
    ts_backend_destroy(f.be);
}
