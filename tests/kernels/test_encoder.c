/* test_encoder.c: token + position embedding by hand, its backward against finite differences
 * with repeated tokens, and bit-identical gradients across calls. */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#include "tests/kernels/helpers.h"

#define F32 TS_DTYPE_F32

Test(kernels_encoder, forward_adds_token_and_position_rows) {
    struct ts_backend *be = th_backend(TS_BLAS_AUTO);
    float wte[3 * 2] = {1, 2, 10, 20, 100, 200};        /* Vp = 3, C = 2 */
    float wpe[4 * 2] = {0.5f, 0.25f, 1, 1, 3, 3, 9, 9}; /* maxT = 4 > T */
    int32_t tok[2 * 2] = {2, 0, 1, 1};
    float out[8];
    struct ts_tensor to = ts_tensor_3d(out, F32, 2, 2, 2);
    struct ts_tensor tt = ts_tensor_2d(tok, TS_DTYPE_I32, 2, 2);
    struct ts_tensor te = ts_tensor_2d(wte, F32, 3, 2), tp = ts_tensor_2d(wpe, F32, 4, 2);
    cr_assert_eq(ts_op_encoder_forward(be, &to, &tt, &te, &tp), TS_OK, "%s", ts_last_error());
    float expect[8] = {100.5f, 200.25f, 2, 3, 10.5f, 20.25f, 11, 21};
    for (int i = 0; i < 8; i++)
        cr_assert_float_eq(out[i], expect[i], 1e-6, "out[%d] = %f", i, out[i]);

    tok[3] = 3; /* out of range for Vp = 3 */
    cr_assert_eq(ts_op_encoder_forward(be, &to, &tt, &te, &tp), TS_ERR_INVALID_ARG);
    cr_assert(strstr(ts_last_error(), "encoder_forward") != NULL, "%s", ts_last_error());
    ts_backend_destroy(be);
}

enum { B = 3, T = 4, C = 5, VP = 6, MAXT = 7 };

struct enc_fx {
    struct ts_backend *be;
    int32_t tok[B * T];
    float *wte, *wpe, *out, *wout;
};

static double enc_objective(void *ctx) {
    struct enc_fx *f = ctx;
    struct ts_tensor to = ts_tensor_3d(f->out, F32, B, T, C);
    struct ts_tensor tt = ts_tensor_2d(f->tok, TS_DTYPE_I32, B, T);
    struct ts_tensor te = ts_tensor_2d(f->wte, F32, VP, C), tp = ts_tensor_2d(f->wpe, F32, MAXT, C);
    cr_assert_eq(ts_op_encoder_forward(f->be, &to, &tt, &te, &tp), TS_OK, "%s", ts_last_error());
    return th_dot(f->out, f->wout, B * T * C);
}

static void setup_fx(struct enc_fx *f) {
    f->be = th_backend(TS_BLAS_AUTO);
    for (int i = 0; i < B * T; i++)
        f->tok[i] = (i * 7 + 1) % 4; /* repeats, and tokens 4, 5 never appear */
    f->wte = th_alloc(VP * C);
    f->wpe = th_alloc(MAXT * C);
    f->out = th_alloc(B * T * C);
    f->wout = th_alloc(B * T * C);
    th_rand(f->wte, VP * C, 31, 1.0f);
    th_rand(f->wpe, MAXT * C, 32, 1.0f);
    th_rand(f->wout, B * T * C, 33, 1.0f);
}

static void free_fx(struct enc_fx *f) {
    free(f->wte), free(f->wpe), free(f->out), free(f->wout);
    ts_backend_destroy(f->be);
}

static void backward(struct enc_fx *f, float *dwte, float *dwpe) {
    struct ts_tensor tde = ts_tensor_2d(dwte, F32, VP, C), tdp = ts_tensor_2d(dwpe, F32, MAXT, C);
    struct ts_tensor tdo = ts_tensor_3d(f->wout, F32, B, T, C);
    struct ts_tensor tt = ts_tensor_2d(f->tok, TS_DTYPE_I32, B, T);
    cr_assert_eq(ts_op_encoder_backward(f->be, &tde, &tdp, &tdo, &tt), TS_OK, "%s",
                 ts_last_error());
}

Test(kernels_encoder, backward_matches_finite_differences) {
    struct enc_fx f;
    setup_fx(&f);
    float *dwte = th_alloc(VP * C), *dwpe = th_alloc(MAXT * C);
    backward(&f, dwte, dwpe);
    double *num = calloc(VP * C + MAXT * C, sizeof(double));
    th_numgrad(enc_objective, &f, f.wte, VP * C, 1e-2f, num);
    th_check_grad("encoder dwte", dwte, num, VP * C, 1e-4);
    th_numgrad(enc_objective, &f, f.wpe, MAXT * C, 1e-2f, num);
    th_check_grad("encoder dwpe", dwpe, num, MAXT * C, 1e-4);
    for (int i = 4 * C; i < VP * C; i++)
        cr_assert_eq(dwte[i], 0.0f, "unused token rows get no gradient");
    for (int i = T * C; i < MAXT * C; i++)
        cr_assert_eq(dwpe[i], 0.0f, "unused positions get no gradient");
    free(num), free(dwte), free(dwpe);
    free_fx(&f);
}

Test(kernels_encoder, backward_is_bit_identical_across_calls) {
    enum { BB = 8, TT = 64, CC = 96, V = 11 }; /* big enough to run in parallel */
    struct ts_backend *be = th_backend(TS_BLAS_AUTO);
    int32_t *tok = malloc(sizeof(int32_t) * BB * TT);
    for (int i = 0; i < BB * TT; i++)
        tok[i] = (i * 5 + i / 7) % V;
    float *dout = th_alloc(BB * TT * CC);
    th_rand(dout, BB * TT * CC, 41, 1.0f);
    float *dwte[2], *dwpe[2];
    for (int r = 0; r < 2; r++) {
        dwte[r] = th_alloc(V * CC);
        dwpe[r] = th_alloc(TT * CC);
        th_rand(dwte[r], V * CC, 42, 1.0f); /* accumulate onto the same nonzero start */
        th_rand(dwpe[r], TT * CC, 43, 1.0f);
        struct ts_tensor tde = ts_tensor_2d(dwte[r], F32, V, CC);
        struct ts_tensor tdp = ts_tensor_2d(dwpe[r], F32, TT, CC);
        struct ts_tensor tdo = ts_tensor_3d(dout, F32, BB, TT, CC);
        struct ts_tensor tt = ts_tensor_2d(tok, TS_DTYPE_I32, BB, TT);
        for (int rep = 0; rep < 3; rep++)
            cr_assert_eq(ts_op_encoder_backward(be, &tde, &tdp, &tdo, &tt), TS_OK);
    }
    cr_assert_eq(memcmp(dwte[0], dwte[1], sizeof(float) * V * CC), 0, "dwte differs across runs");
    cr_assert_eq(memcmp(dwpe[0], dwpe[1], sizeof(float) * TT * CC), 0, "dwpe differs across runs");
    /* and matches a serial sum in (b, t) order */
    float *serial = th_alloc(V * CC);
    th_rand(serial, V * CC, 42, 1.0f);
    for (int rep = 0; rep < 3; rep++)
        for (int bt = 0; bt < BB * TT; bt++)
            for (int c = 0; c < CC; c++)
                serial[tok[bt] * CC + c] += dout[bt * CC + c];
    cr_assert_eq(memcmp(serial, dwte[0], sizeof(float) * V * CC), 0,
                 "dwte differs from the serial (b, t)-order sum");
    free(serial), free(tok), free(dout);
    for (int r = 0; r < 2; r++)
        free(dwte[r]), free(dwpe[r]);
    ts_backend_destroy(be);
}
