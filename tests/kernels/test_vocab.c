/* test_vocab.c: the vocabulary-parallel ops (cpu_vocab.c) against the whole-vocabulary ones.
 *
 * The embedding and the cross-entropy are cut into slices as tensor-parallel ranks hold them;
 * the collectives between the steps are done here on the host (a max, then a sum). The pieces
 * must give encoder_forward/backward's and softmax_xent's results (softmax_xent is itself checked
 * against finite differences in test_xent.c), including a slice that holds only padding. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "tests/kernels/helpers.h"

#define F32 TS_DTYPE_F32
#define I32 TS_DTYPE_I32

/* 4 slices of 4 columns over V = 11 real tokens: 4, 4, 3 and 0 real columns. */
enum { N = 6, VP = 16, VOCAB = 11, SLICES = 4, VL = VP / SLICES };
#define DLOSS 0.37f

static int valid_of(int s) {
    const int v = VOCAB - s * VL;
    return v < 0 ? 0 : v > VL ? VL : v;
}

/* Runs the three steps over every slice of `whole` (N,VP); writes the stitched dlogits (or the
 * untouched logits) back into whole and each slice's losses into losses[s]. */
static void split_xent(struct ts_backend *be, float *whole, const int32_t *tg, bool with_grad,
                       float losses[SLICES][N]) {
    float slice[SLICES][N * VL], mx[SLICES][N], st[SLICES][N * 2];
    for (int s = 0; s < SLICES; s++)
        for (int n = 0; n < N; n++)
            memcpy(&slice[s][n * VL], &whole[n * VP + s * VL], VL * sizeof(float));
    struct ts_tensor tt = ts_tensor_1d((void *)tg, I32, N);
    for (int s = 0; s < SLICES; s++) {
        struct ts_tensor tl = ts_tensor_2d(slice[s], F32, N, VL), tm = ts_tensor_1d(mx[s], F32, N);
        cr_assert_eq(ts_op_xent_slice_max(be, &tm, &tl, valid_of(s)), TS_OK, "%s", ts_last_error());
    }
    float gmax[N], gst[N * 2] = {0};
    for (int n = 0; n < N; n++) {
        gmax[n] = -INFINITY;
        for (int s = 0; s < SLICES; s++)
            gmax[n] = fmaxf(gmax[n], mx[s][n]);
    }
    cr_assert(isinf(mx[3][0]) && mx[3][0] < 0, "a slice of padding has max -inf");
    struct ts_tensor tgm = ts_tensor_1d(gmax, F32, N);
    for (int s = 0; s < SLICES; s++) {
        struct ts_tensor tl = ts_tensor_2d(slice[s], F32, N, VL),
                         ts = ts_tensor_2d(st[s], F32, N, 2);
        cr_assert_eq(ts_op_xent_slice_sumexp(be, &ts, &tl, &tgm, &tt, valid_of(s), s * VL), TS_OK,
                     "%s", ts_last_error());
        for (int i = 0; i < N * 2; i++)
            gst[i] += st[s][i];
    }
    struct ts_tensor tgs = ts_tensor_2d(gst, F32, N, 2);
    for (int s = 0; s < SLICES; s++) {
        struct ts_tensor tl = ts_tensor_2d(slice[s], F32, N, VL);
        struct ts_tensor tls = ts_tensor_1d(losses[s], F32, N);
        cr_assert_eq(ts_op_xent_from_stats(be, &tls, &tl, &tt, &tgm, &tgs, valid_of(s), s * VL,
                                           DLOSS, with_grad),
                     TS_OK, "%s", ts_last_error());
        for (int n = 0; n < N; n++)
            memcpy(&whole[n * VP + s * VL], &slice[s][n * VL], VL * sizeof(float));
    }
}

Test(kernels_vocab, split_cross_entropy_equals_softmax_xent) {
    struct ts_backend *be = th_backend(TS_BLAS_REFERENCE);
    float ref[N * VP], split[N * VP], ref_loss[N], losses[SLICES][N];
    th_rand(ref, N * VP, 71, 4.0f);
    ref[2 * VP + 5] = 80.0f; /* a huge logit: the max must be the global one */
    memcpy(split, ref, sizeof ref);
    int32_t tg[N];
    for (int n = 0; n < N; n++)
        tg[n] = (n * 5 + 2) % VOCAB; /* targets in slices 0, 1 and 2 */
    struct ts_tensor tl = ts_tensor_2d(ref, F32, N, VP), tls = ts_tensor_1d(ref_loss, F32, N);
    struct ts_tensor tt = ts_tensor_1d(tg, I32, N);
    for (int g = 0; g < 2; g++) {
        const bool with_grad = g == 1;
        cr_assert_eq(ts_op_softmax_xent(be, &tls, &tl, &tt, VOCAB, DLOSS, with_grad), TS_OK);
        split_xent(be, split, tg, with_grad, losses);
        for (int s = 0; s < SLICES; s++)
            for (int n = 0; n < N; n++)
                cr_assert(fabsf(losses[s][n] - ref_loss[n]) <= 1e-6f * fabsf(ref_loss[n]) + 1e-7f,
                          "slice %d row %d: loss %.9g, softmax_xent %.9g", s, n,
                          (double)losses[s][n], (double)ref_loss[n]);
        for (int i = 0; i < N * VP; i++)
            cr_assert(fabsf(split[i] - ref[i]) <= 1e-7f, "%s[%d]: split %.9g, whole %.9g",
                      with_grad ? "dlogits" : "logits", i, (double)split[i], (double)ref[i]);
    }
    ts_backend_destroy(be);
}

enum { B = 2, T = 3, C = 5, MAXT = 4 };

Test(kernels_vocab, embedding_slices_sum_to_encoder) {
    struct ts_backend *be = th_backend(TS_BLAS_REFERENCE);
    float wte[VP * C], wpe[MAXT * C], ref[B * T * C], sum[B * T * C] = {0}, part[B * T * C];
    th_rand(wte, VP * C, 3, 1.0f);
    th_rand(wpe, MAXT * C, 4, 1.0f);
    int32_t tok[B * T] = {0, 5, 10, 3, 9, 5}; /* slices 0, 1, 2; slice 3 none */
    struct ts_tensor tt = ts_tensor_2d(tok, I32, B, T), te = ts_tensor_2d(wte, F32, VP, C);
    struct ts_tensor tp = ts_tensor_2d(wpe, F32, MAXT, C), to = ts_tensor_3d(ref, F32, B, T, C);
    cr_assert_eq(ts_op_encoder_forward(be, &to, &tt, &te, &tp), TS_OK);
    for (int s = 0; s < SLICES; s++) {
        struct ts_tensor ts = ts_tensor_2d(wte + s * VL * C, F32, VL, C);
        struct ts_tensor tpart = ts_tensor_3d(part, F32, B, T, C);
        cr_assert_eq(ts_op_encoder_forward_slice(be, &tpart, &tt, &ts, s == 0 ? &tp : NULL, s * VL),
                     TS_OK, "%s", ts_last_error());
        for (int i = 0; i < B * T * C; i++)
            sum[i] += part[i];
    }
    for (int i = 0; i < B * T * C; i++)
        cr_assert_eq(sum[i], ref[i], "out[%d]: slices %.9g, whole %.9g", i, (double)sum[i],
                     (double)ref[i]);

    /* backward: the slices' dwte rows are the whole dwte's, each slice's dwpe the whole one;
     * called twice, everything accumulates */
    float dout[B * T * C], dwte[VP * C] = {0}, dwpe[MAXT * C] = {0};
    float sdwte[VP * C] = {0}, sdwpe[SLICES][MAXT * C];
    memset(sdwpe, 0, sizeof sdwpe);
    th_rand(dout, B * T * C, 5, 1.0f);
    struct ts_tensor td = ts_tensor_3d(dout, F32, B, T, C);
    struct ts_tensor tdw = ts_tensor_2d(dwte, F32, VP, C), tdp = ts_tensor_2d(dwpe, F32, MAXT, C);
    for (int k = 0; k < 2; k++) {
        cr_assert_eq(ts_op_encoder_backward(be, &tdw, &tdp, &td, &tt), TS_OK);
        for (int s = 0; s < SLICES; s++) {
            struct ts_tensor ts = ts_tensor_2d(sdwte + s * VL * C, F32, VL, C);
            struct ts_tensor tsp = ts_tensor_2d(sdwpe[s], F32, MAXT, C);
            cr_assert_eq(ts_op_encoder_backward_slice(be, &ts, &tsp, &td, &tt, s * VL), TS_OK, "%s",
                         ts_last_error());
            struct ts_tensor ts_nowpe = ts_tensor_2d(sdwte + s * VL * C, F32, VL, C);
            if (k == 1 && s == 3) /* no dwpe, nothing of this slice: still a no-op */
                cr_assert_eq(ts_op_encoder_backward_slice(be, &ts_nowpe, NULL, &td, &tt, s * VL),
                             TS_OK);
        }
    }
    for (int i = 0; i < VP * C; i++)
        cr_assert_eq(sdwte[i], dwte[i], "dwte[%d]: slices %.9g, whole %.9g", i, (double)sdwte[i],
                     (double)dwte[i]);
    for (int s = 0; s < SLICES; s++)
        for (int i = 0; i < MAXT * C; i++)
            cr_assert_eq(sdwpe[s][i], dwpe[i], "slice %d dwpe[%d]", s, i);
    ts_backend_destroy(be);
}

/* A backend without the slots (the CUDA plug-in until tp runs over NCCL) refuses by name. */
Test(kernels_vocab, missing_slots_are_refused_by_name) {
    struct ts_backend *cpu = th_backend(TS_BLAS_REFERENCE);
    struct ts_backend be = *cpu;
    be.xent_slice_max = NULL;
    be.encoder_forward_slice = NULL;
    float lg[N * VL], mx[N], out[B * T * C], wte[VL * C];
    int32_t tok[B * T] = {0};
    struct ts_tensor tl = ts_tensor_2d(lg, F32, N, VL), tm = ts_tensor_1d(mx, F32, N);
    cr_assert_eq(ts_op_xent_slice_max(&be, &tm, &tl, VL), TS_ERR_UNSUPPORTED);
    cr_assert(strstr(ts_last_error(), "xent_slice_max") != NULL, "%s", ts_last_error());
    struct ts_tensor to = ts_tensor_3d(out, F32, B, T, C), tt = ts_tensor_2d(tok, I32, B, T);
    struct ts_tensor te = ts_tensor_2d(wte, F32, VL, C);
    cr_assert_eq(ts_op_encoder_forward_slice(&be, &to, &tt, &te, NULL, 0), TS_ERR_UNSUPPORTED);
    cr_assert(strstr(ts_last_error(), "encoder_forward_slice") != NULL, "%s", ts_last_error());
    ts_backend_destroy(cpu);
}
