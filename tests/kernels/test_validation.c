/* test_validation.c: every op rejects bad arguments with TS_ERR_INVALID_ARG and a message that
 * names the op and the offending tensor, before the backend sees them. */
#include <criterion/criterion.h>
#include <string.h>

#include "tests/kernels/helpers.h"

#define F32 TS_DTYPE_F32
#define I32 TS_DTYPE_I32

static float mem[1 << 16];  /* shapes below never read past this */
static float mem2[1 << 16]; /* a second buffer, for outputs that must not overlap inputs */
static int32_t imem[64];

static void expect_invalid(ts_status st, const char *op, const char *needle) {
    cr_assert_eq(st, TS_ERR_INVALID_ARG, "%s: expected TS_ERR_INVALID_ARG, got %s (%s)", op,
                 ts_status_name(st), ts_last_error());
    cr_assert(strstr(ts_last_error(), op) != NULL, "message lacks the op name %s: %s", op,
              ts_last_error());
    if (needle)
        cr_assert(strstr(ts_last_error(), needle) != NULL, "message lacks '%s': %s", needle,
                  ts_last_error());
}

/* The fused residual + layernorm: validated once, with its own name, before a backend without
 * the slot (the CPU) runs the two ops; res may not overlap the layernorm's outputs. */
Test(kernels_validation, residual_layernorm_shapes_and_overlaps) {
    struct ts_backend *be = th_backend(TS_BLAS_REFERENCE);
    struct ts_tensor a = ts_tensor_2d(mem, F32, 6, 64), b = ts_tensor_2d(mem + 400, F32, 6, 64);
    struct ts_tensor res = ts_tensor_2d(mem2, F32, 6, 64),
                     out = ts_tensor_2d(mem2 + 400, F32, 6, 64);
    struct ts_tensor mean = ts_tensor_1d(mem2 + 800, F32, 6),
                     rstd = ts_tensor_1d(mem2 + 810, F32, 6);
    struct ts_tensor w = ts_tensor_1d(mem + 2000, F32, 64),
                     bias = ts_tensor_1d(mem + 2100, F32, 64);
    for (int i = 0; i < 6 * 64; i++) {
        mem[i] = (float)(i % 13) - 6.0f;
        mem[400 + i] = (float)(i % 7) * 0.25f;
    }
    for (int c = 0; c < 64; c++) {
        mem[2000 + c] = 1.0f + 0.01f * (float)c;
        mem[2100 + c] = 0.1f;
    }
    cr_assert_eq(ts_op_residual_layernorm_forward(be, &res, &out, &mean, &rstd, &a, &b, &w, &bias),
                 TS_OK, "%s", ts_last_error());
    /* the two ops, into other memory: the same values */
    struct ts_tensor res2 = ts_tensor_2d(mem2 + 1000, F32, 6, 64),
                     out2 = ts_tensor_2d(mem2 + 1400, F32, 6, 64);
    struct ts_tensor mean2 = ts_tensor_1d(mem2 + 1800, F32, 6),
                     rstd2 = ts_tensor_1d(mem2 + 1810, F32, 6);
    cr_assert_eq(ts_op_residual_forward(be, &res2, &a, &b), TS_OK);
    cr_assert_eq(ts_op_layernorm_forward(be, &out2, &mean2, &rstd2, &res2, &w, &bias), TS_OK);
    cr_assert_eq(memcmp(mem2, mem2 + 1000, 6 * 64 * sizeof(float)), 0, "res differs");
    cr_assert_eq(memcmp(mem2 + 400, mem2 + 1400, 6 * 64 * sizeof(float)), 0, "out differs");
    cr_assert_eq(memcmp(mem2 + 800, mem2 + 1800, 6 * sizeof(float)), 0, "mean differs");

    const char *op = "residual_layernorm_forward";
    struct ts_tensor b9 = ts_tensor_1d(mem + 400, F32, 9), w63 = ts_tensor_1d(mem + 2000, F32, 63);
    expect_invalid(
        ts_op_residual_layernorm_forward(be, &res, &out, &mean, &rstd, &a, &b9, &w, &bias), op,
        "b");
    expect_invalid(
        ts_op_residual_layernorm_forward(be, &res, &out, &mean, &rstd, &a, &b, &w63, &bias), op,
        "weight");
    expect_invalid(
        ts_op_residual_layernorm_forward(be, &res, &res, &mean, &rstd, &a, &b, &w, &bias), op,
        "overlap");
    struct ts_tensor mean_in_res = ts_tensor_1d(mem2 + 10, F32, 6);
    expect_invalid(
        ts_op_residual_layernorm_forward(be, &res, &out, &mean_in_res, &rstd, &a, &b, &w, &bias),
        op, "overlap");
    expect_invalid(ts_op_residual_layernorm_forward(be, &res, &out, &mean, &rstd, &a, &b, &w, NULL),
                   op, "bias is NULL");
    ts_backend_destroy(be);
}

Test(kernels_validation, layernorm_shapes_and_dtypes) {
    struct ts_backend *be = th_backend(TS_BLAS_REFERENCE);
    struct ts_tensor inp = ts_tensor_3d(mem, F32, 2, 3, 64),
                     out = ts_tensor_3d(mem2, F32, 2, 3, 64);
    struct ts_tensor mean = ts_tensor_2d(mem + 1000, F32, 2, 3),
                     rstd = ts_tensor_1d(mem + 1100, F32, 6);
    struct ts_tensor w = ts_tensor_1d(mem + 2000, F32, 64), b = ts_tensor_1d(mem + 2100, F32, 64);
    struct ts_tensor w63 = ts_tensor_1d(mem + 2000, F32, 63);
    cr_assert_eq(ts_op_layernorm_forward(be, &out, &mean, &rstd, &inp, &w, &b), TS_OK, "%s",
                 ts_last_error());
    expect_invalid(ts_op_layernorm_forward(be, &out, &mean, &rstd, &inp, &w63, &b),
                   "layernorm_forward", "weight has shape (63) but inp has C = 64");
    expect_invalid(ts_op_layernorm_forward(be, &out, &mean, &rstd, &inp, &w, NULL),
                   "layernorm_forward", "bias is NULL");
    struct ts_tensor mean5 = ts_tensor_1d(mem + 1000, F32, 5);
    expect_invalid(ts_op_layernorm_forward(be, &out, &mean5, &rstd, &inp, &w, &b),
                   "layernorm_forward", "mean");
    struct ts_tensor out_i = out;
    out_i.dtype = I32;
    expect_invalid(ts_op_layernorm_forward(be, &out_i, &mean, &rstd, &inp, &w, &b),
                   "layernorm_forward", "dtype i32");
    struct ts_tensor out_c = ts_tensor_3d(mem2, F32, 2, 3, 32);
    expect_invalid(ts_op_layernorm_forward(be, &out_c, &mean, &rstd, &inp, &w, &b),
                   "layernorm_forward", "out");
    struct ts_tensor nodata = inp;
    nodata.data = NULL;
    expect_invalid(ts_op_layernorm_forward(be, &out, &mean, &rstd, &nodata, &w, &b),
                   "layernorm_forward", "inp");
    expect_invalid(ts_op_layernorm_backward(be, &out, &w, &b, &inp, &inp, &w63, &mean, &rstd),
                   "layernorm_backward", "weight");
    expect_invalid(ts_op_layernorm_forward(NULL, &out, &mean, &rstd, &inp, &w, &b),
                   "layernorm_forward", "backend");
    ts_backend_destroy(be);
}

Test(kernels_validation, matmul_shapes_and_layouts) {
    struct ts_backend *be = th_backend(TS_BLAS_REFERENCE);
    struct ts_tensor inp = ts_tensor_3d(mem, F32, 2, 3, 8), out = ts_tensor_3d(mem2, F32, 2, 3, 5);
    struct ts_tensor w_io = ts_tensor_2d(mem + 4000, F32, 8, 5),
                     w_oi = ts_tensor_2d(mem + 4000, F32, 5, 8);
    struct ts_tensor bias = ts_tensor_1d(mem + 5000, F32, 5),
                     bias4 = ts_tensor_1d(mem + 5000, F32, 4);
    cr_assert_eq(ts_op_matmul_forward(be, &out, &inp, &w_io, &bias, TS_W_IN_OUT), TS_OK, "%s",
                 ts_last_error());
    cr_assert_eq(ts_op_matmul_forward(be, &out, &inp, &w_oi, NULL, TS_W_OUT_IN), TS_OK);
    expect_invalid(ts_op_matmul_forward(be, &out, &inp, &w_oi, NULL, TS_W_IN_OUT), "matmul_forward",
                   "inp");
    expect_invalid(ts_op_matmul_forward(be, &out, &inp, &w_io, &bias4, TS_W_IN_OUT),
                   "matmul_forward", "bias");
    expect_invalid(ts_op_matmul_forward(be, &out, &inp, &w_io, NULL, (enum ts_wlayout)7),
                   "matmul_forward", "layout");
    struct ts_tensor out_bad = ts_tensor_3d(mem2, F32, 2, 2, 5);
    expect_invalid(ts_op_matmul_forward(be, &out_bad, &inp, &w_io, NULL, TS_W_IN_OUT),
                   "matmul_forward", "out");
    struct ts_tensor out_alias = ts_tensor_3d(mem + 10, F32, 2, 3, 5);
    expect_invalid(ts_op_matmul_forward(be, &out_alias, &inp, &w_io, NULL, TS_W_IN_OUT),
                   "matmul_forward", "overlap");
    struct ts_tensor w3 = ts_tensor_3d(mem + 4000, F32, 8, 5, 1);
    expect_invalid(ts_op_matmul_forward(be, &out, &inp, &w3, NULL, TS_W_IN_OUT), "matmul_forward",
                   "weight");
    struct ts_tensor dinp = ts_tensor_3d(mem2 + 1000, F32, 2, 3, 8);
    struct ts_tensor dw = ts_tensor_2d(mem2 + 2000, F32, 8, 5),
                     dw_t = ts_tensor_2d(mem2 + 2000, F32, 5, 8);
    struct ts_tensor dout = ts_tensor_3d(mem2 + 3000, F32, 2, 3, 5);
    cr_assert_eq(ts_op_matmul_backward(be, &dinp, &dw, NULL, &dout, &inp, &w_io, TS_W_IN_OUT),
                 TS_OK, "%s", ts_last_error());
    expect_invalid(ts_op_matmul_backward(be, &dinp, &dw_t, NULL, &dout, &inp, &w_io, TS_W_IN_OUT),
                   "matmul_backward", "dweight");
    expect_invalid(ts_op_matmul_backward(be, &dinp, NULL, NULL, &dout, &inp, &w_io, TS_W_IN_OUT),
                   "matmul_backward", "dweight is NULL");
    /* the projection's backward with GELU's: pre is inp's shape and apart from dpre */
    struct ts_tensor pre = ts_tensor_3d(mem + 6000, F32, 2, 3, 8);
    cr_assert_eq(ts_op_matmul_backward_dgelu(be, &dinp, &dw, NULL, &dout, &inp, &w_io, &pre), TS_OK,
                 "%s", ts_last_error());
    struct ts_tensor pre7 = ts_tensor_3d(mem + 6000, F32, 2, 3, 7);
    expect_invalid(ts_op_matmul_backward_dgelu(be, &dinp, &dw, NULL, &dout, &inp, &w_io, &pre7),
                   "matmul_backward_dgelu", "pre");
    struct ts_tensor pre_on_dinp = ts_tensor_3d(mem2 + 1004, F32, 2, 3, 8);
    expect_invalid(
        ts_op_matmul_backward_dgelu(be, &dinp, &dw, NULL, &dout, &inp, &w_io, &pre_on_dinp),
        "matmul_backward_dgelu", "overlap");
    expect_invalid(ts_op_matmul_backward_dgelu(be, NULL, &dw, NULL, &dout, &inp, &w_io, &pre),
                   "matmul_backward_dgelu", "dpre is NULL");
    ts_backend_destroy(be);
}

Test(kernels_validation, attention_encoder_xent_and_the_rest) {
    struct ts_backend *be = th_backend(TS_BLAS_REFERENCE);
    /* attention: B 2, T 4, C 12 */
    struct ts_tensor qkv = ts_tensor_3d(mem, F32, 2, 4, 36),
                     out = ts_tensor_3d(mem2, F32, 2, 4, 12);
    struct ts_tensor att = ts_tensor_4d(mem2 + 1000, F32, 2, 3, 4, 4);
    cr_assert_eq(ts_op_attention_forward(be, &out, &att, &qkv, 3), TS_OK, "%s", ts_last_error());
    expect_invalid(ts_op_attention_forward(be, &out, &att, &qkv, 5), "attention_forward",
                   "num_heads");
    expect_invalid(ts_op_attention_forward(be, &out, &att, &qkv, 4), "attention_forward", "att");
    struct ts_tensor qkv_bad = ts_tensor_3d(mem, F32, 2, 4, 35);
    expect_invalid(ts_op_attention_forward(be, &out, &att, &qkv_bad, 3), "attention_forward",
                   "qkv");
    struct ts_tensor dqkv = ts_tensor_3d(mem2 + 2000, F32, 2, 4, 36);
    struct ts_tensor scratch = ts_tensor_4d(mem2 + 3000, F32, 2, 3, 4, 3);
    expect_invalid(ts_op_attention_backward(be, &dqkv, &scratch, &out, &qkv, &att, 3),
                   "attention_backward", "scratch");

    /* encoder */
    struct ts_tensor tok = ts_tensor_2d(imem, I32, 2, 4), wte = ts_tensor_2d(mem, F32, 10, 6);
    struct ts_tensor wpe = ts_tensor_2d(mem + 100, F32, 3, 6),
                     eout = ts_tensor_3d(mem2, F32, 2, 4, 6);
    expect_invalid(ts_op_encoder_forward(be, &eout, &tok, &wte, &wpe), "encoder_forward", "wpe");
    struct ts_tensor tok_f = ts_tensor_2d(mem + 500, F32, 2, 4);
    struct ts_tensor wpe8 = ts_tensor_2d(mem + 100, F32, 8, 6);
    expect_invalid(ts_op_encoder_forward(be, &eout, &tok_f, &wte, &wpe8), "encoder_forward",
                   "tokens");
    expect_invalid(ts_op_encoder_backward(be, &wte, &wpe, &eout, &tok), "encoder_backward", "dwpe");

    /* softmax_xent */
    struct ts_tensor logits = ts_tensor_2d(mem, F32, 4, 16), losses = ts_tensor_1d(mem2, F32, 4);
    struct ts_tensor tg = ts_tensor_1d(imem, I32, 4), tg3 = ts_tensor_1d(imem, I32, 3);
    cr_assert_eq(ts_op_softmax_xent(be, &losses, &logits, &tg, 10, 1.0f, false), TS_OK, "%s",
                 ts_last_error());
    expect_invalid(ts_op_softmax_xent(be, &losses, &logits, &tg, 17, 1.0f, false), "softmax_xent",
                   "vocab");
    expect_invalid(ts_op_softmax_xent(be, &losses, &logits, &tg3, 10, 1.0f, false), "softmax_xent",
                   "targets");
    struct ts_tensor tg_f = ts_tensor_1d(mem + 500, F32, 4);
    expect_invalid(ts_op_softmax_xent(be, &losses, &logits, &tg_f, 10, 1.0f, false), "softmax_xent",
                   "targets");

    /* the vocabulary-parallel cross-entropy: logits (4, 16) are one rank's slice */
    struct ts_tensor rowmax = ts_tensor_1d(mem2 + 50, F32, 4);
    struct ts_tensor rowmax3 = ts_tensor_1d(mem2 + 50, F32, 3);
    struct ts_tensor stats = ts_tensor_2d(mem2 + 100, F32, 4, 2);
    struct ts_tensor stats3 = ts_tensor_2d(mem2 + 100, F32, 4, 3);
    cr_assert_eq(ts_op_xent_slice_max(be, &rowmax, &logits, 16), TS_OK, "%s", ts_last_error());
    expect_invalid(ts_op_xent_slice_max(be, &rowmax, &logits, 17), "xent_slice_max", "valid");
    expect_invalid(ts_op_xent_slice_max(be, &rowmax, &logits, -1), "xent_slice_max", "valid");
    expect_invalid(ts_op_xent_slice_max(be, &rowmax3, &logits, 3), "xent_slice_max", "rowmax");
    expect_invalid(ts_op_xent_slice_sumexp(be, &stats3, &logits, &rowmax, &tg, 16, 0),
                   "xent_slice_sumexp", "stats");
    expect_invalid(ts_op_xent_slice_sumexp(be, &stats, &logits, &rowmax, &tg, 16, -4),
                   "xent_slice_sumexp", "vocab_begin");
    expect_invalid(ts_op_xent_slice_sumexp(be, &stats, &logits, &rowmax, &tg3, 16, 0),
                   "xent_slice_sumexp", "targets");
    expect_invalid(
        ts_op_xent_from_stats(be, &tg3, &logits, &tg, &rowmax, &stats, 16, 0, 1.0f, true),
        "xent_from_stats", "losses");
    struct ts_tensor stats_on_logits = ts_tensor_2d(mem + 8, F32, 4, 2);
    expect_invalid(ts_op_xent_from_stats(be, &losses, &logits, &tg, &rowmax, &stats_on_logits, 16,
                                         0, 1.0f, true),
                   "xent_from_stats", "overlap");

    /* the vocabulary-parallel embedding: wpe may be NULL, vocab_begin may not be negative */
    cr_assert_eq(ts_op_encoder_forward_slice(be, &eout, &tok, &wte, NULL, 8), TS_OK, "%s",
                 ts_last_error());
    expect_invalid(ts_op_encoder_forward_slice(be, &eout, &tok, &wte, NULL, -1),
                   "encoder_forward_slice", "vocab_begin");
    expect_invalid(ts_op_encoder_backward_slice(be, &wte, &wpe, &eout, &tok, 0),
                   "encoder_backward_slice", "dwpe");

    /* pointwise, optimizer */
    struct ts_tensor a = ts_tensor_1d(mem, F32, 10), b9 = ts_tensor_1d(mem + 100, F32, 9);
    expect_invalid(ts_op_residual_forward(be, &a, &a, &b9), "residual_forward", "b");
    expect_invalid(ts_op_gelu_forward(be, &b9, &a), "gelu_forward", "out");
    expect_invalid(ts_op_gelu_backward(be, &a, &a, &b9), "gelu_backward", "dout");
    struct ts_tensor p = ts_tensor_1d(mem, F32, 10), g = ts_tensor_1d(mem + 100, F32, 10);
    struct ts_tensor m = ts_tensor_1d(mem + 200, F32, 10), v = ts_tensor_1d(mem + 300, F32, 10);
    expect_invalid(ts_op_adamw(be, &p, &g, &m, &b9, 1e-3f, 0.9f, 0.95f, 1e-8f, 0, 1, 1), "adamw",
                   "v");
    expect_invalid(ts_op_adamw(be, &p, &g, &m, &v, 1e-3f, 0.9f, 0.95f, 1e-8f, 0, 1, 0), "adamw",
                   "step");
    struct ts_tensor two = ts_tensor_1d(mem2, F32, 2);
    expect_invalid(ts_op_sum_squares(be, &two, &a), "sum_squares", "out");
    struct ts_tensor ai = ts_tensor_1d(imem, I32, 10);
    expect_invalid(ts_op_fill(be, &ai, 1.0f), "fill", "dtype");
    expect_invalid(ts_op_fill_normal(be, &a, 0.0f, -1.0f, 1, 0), "fill_normal", "std");
    ts_backend_destroy(be);
}
