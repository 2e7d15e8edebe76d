/* opcheck.c: each backend op against the CPU backend on fresh random inputs (opcheck.h).
 *
 * A case lists its tensors (role: an activation in the checked dtype, always-f32, or i32 ids;
 * kind: input, overwritten output, "+=" output, in-out, or scratch) and calls its op. The
 * harness builds the same host values for both backends, poisons overwritten outputs with NaN,
 * runs the op on each and compares every output. Activations are rounded to bf16 on the host
 * when checking bf16, so the CPU reference (f32) computes on exactly the device's inputs and the
 * comparison measures the kernel, not the input rounding. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/bf16.h"
#include "kernels/ops.h"
#include "kernels/rng.h"
#include "tests/gpu/opcheck.h"

enum role { R_ACT, R_F32, R_I32 };
enum kind { K_IN, K_OUT, K_ACC, K_INOUT, K_SCRATCH };
enum gen { G_UNIFORM, G_TOKENS, G_CAUSAL };

struct spec {
    const char *name;
    enum role role;
    enum kind kind;
    enum gen gen;
    float lo, hi; /* uniform range; token ids in [lo, hi) */
    int ndim;
    int64_t shape[4];
};

struct dims {
    int B, T, C, NH, V, Vp;
    float amp; /* attention cases: qkv in +-amp (0: 1) */
};

#define MAX_TENSORS 8

struct opcase {
    const char *name;
    bool f32_only;
    double tol_f32, tol_bf16;
    int (*specs)(const struct dims *d, struct spec *s);
    ts_status (*run)(struct ts_backend *be, const struct ts_tensor *t, const struct dims *d);
};

static struct spec S(const char *name, enum role role, enum kind kind, enum gen gen, float lo,
                     float hi, int ndim, int64_t d0, int64_t d1, int64_t d2, int64_t d3) {
    struct spec s = {name, role, kind, gen, lo, hi, ndim, {d0, d1, d2, d3}};
    return s;
}

/* Shorthands: activations and f32 tensors with uniform values, outputs, token ids. */
#define IN(n, r, lo, hi, nd, a, b, c, e) S(n, r, K_IN, G_UNIFORM, lo, hi, nd, a, b, c, e)
#define OUT(n, r, nd, a, b, c, e) S(n, r, K_OUT, G_UNIFORM, 0, 0, nd, a, b, c, e)
#define ACC(n, r, nd, a, b, c, e) S(n, r, K_ACC, G_UNIFORM, -1, 1, nd, a, b, c, e)

/* ---- the cases, in the order of backend.h ---- */

static int
sp_encoder_forward(const struct dims *d, struct spec *s) {
    s[0] = OUT("out", R_ACT, 3, d->B, d->T, d->C, 1);
    s[1] = S("tokens", R_I32, K_IN, G_TOKENS, 0, (float)d->V, 2, d->B, d->T, 1, 1);
    s[2] = IN("wte", R_ACT, -1, 1, 2, d->Vp, d->C, 1, 1);
    s[3] = IN("wpe", R_ACT, -1, 1, 2, d->T + 3, d->C, 1, 1);
    return 4;
}
static ts_status run_encoder_forward(struct ts_backend *be, const struct ts_tensor *t,
                                     const struct dims *d) {
    (void)d;
    return ts_op_encoder_forward(be, &t[0], &t[1], &t[2], &t[3]);
}

static int sp_encoder_backward(const struct dims *d, struct spec *s) {
    s[0] = ACC("dwte", R_F32, 2, d->Vp, d->C, 1, 1);
    s[1] = ACC("dwpe", R_F32, 2, d->T + 3, d->C, 1, 1);
    s[2] = IN("dout", R_ACT, -1, 1, 3, d->B, d->T, d->C, 1);
    /* few distinct ids, so rows of dwte collect many positions */
    s[3] = S("tokens", R_I32, K_IN, G_TOKENS, 0, (float)(d->V < 7 ? d->V : 7), 2, d->B, d->T, 1, 1);
    return 4;
}
static ts_status run_encoder_backward(struct ts_backend *be, const struct ts_tensor *t,
                                      const struct dims *d) {
    (void)d;
    return ts_op_encoder_backward(be, &t[0], &t[1], &t[2], &t[3]);
}

/* ids over the whole vocabulary: every dwte row (one block each) sees its own positions */
static int sp_encoder_backward_spread(const struct dims *d, struct spec *s) {
    sp_encoder_backward(d, s);
    s[3] = S("tokens", R_I32, K_IN, G_TOKENS, 0, (float)d->V, 2, d->B, d->T, 1, 1);
    return 4;
}

static int sp_layernorm_forward(const struct dims *d, struct spec *s) {
    s[0] = OUT("out", R_ACT, 3, d->B, d->T, d->C, 1);
    s[1] = OUT("mean", R_F32, 1, (int64_t)d->B * d->T, 1, 1, 1);
    s[2] = OUT("rstd", R_F32, 1, (int64_t)d->B * d->T, 1, 1, 1);
    s[3] = IN("inp", R_ACT, -2, 4, 3, d->B, d->T, d->C, 1);
    s[4] = IN("weight", R_ACT, 0.5f, 1.5f, 1, d->C, 1, 1, 1);
    s[5] = IN("bias", R_ACT, -0.5f, 0.5f, 1, d->C, 1, 1, 1);
    return 6;
}
static ts_status run_layernorm_forward(struct ts_backend *be, const struct ts_tensor *t,
                                       const struct dims *d) {
    (void)d;
    return ts_op_layernorm_forward(be, &t[0], &t[1], &t[2], &t[3], &t[4], &t[5]);
}

static int sp_layernorm_backward(const struct dims *d, struct spec *s) {
    const int64_t N = (int64_t)d->B * d->T;
    s[0] = ACC("dinp", R_ACT, 3, d->B, d->T, d->C, 1);
    s[1] = ACC("dweight", R_F32, 1, d->C, 1, 1, 1);
    s[2] = ACC("dbias", R_F32, 1, d->C, 1, 1, 1);
    s[3] = IN("dout", R_ACT, -1, 1, 3, d->B, d->T, d->C, 1);
    s[4] = IN("inp", R_ACT, -2, 2, 3, d->B, d->T, d->C, 1);
    s[5] = IN("weight", R_ACT, 0.5f, 1.5f, 1, d->C, 1, 1, 1);
    s[6] = IN("mean", R_F32, -0.5f, 0.5f, 1, N, 1, 1, 1);
    s[7] = IN("rstd", R_F32, 0.5f, 1.5f, 1, N, 1, 1, 1);
    return 8;
}
static ts_status run_layernorm_backward(struct ts_backend *be, const struct ts_tensor *t,
                                        const struct dims *d) {
    (void)d;
    return ts_op_layernorm_backward(be, &t[0], &t[1], &t[2], &t[3], &t[4], &t[5], &t[6], &t[7]);
}

/* The block's c_attn shape (IC, OC) = (C, 3C) with a bias. */
static int sp_matmul_forward(const struct dims *d, struct spec *s) {
    const int64_t N = (int64_t)d->B * d->T;
    s[0] = OUT("out", R_ACT, 2, N, 3 * d->C, 1, 1);
    s[1] = IN("inp", R_ACT, -1, 1, 2, N, d->C, 1, 1);
    s[2] = IN("weight", R_ACT, -1, 1, 2, d->C, 3 * d->C, 1, 1);
    s[3] = IN("bias", R_ACT, -1, 1, 1, 3 * d->C, 1, 1, 1);
    return 4;
}
static ts_status run_matmul_forward(struct ts_backend *be, const struct ts_tensor *t,
                                    const struct dims *d) {
    (void)d;
    return ts_op_matmul_forward(be, &t[0], &t[1], &t[2], &t[3], TS_W_IN_OUT);
}

/* The tied classifier: weight (Vp, C) read as (OC, IC), no bias. */
static int sp_matmul_forward_wt(const struct dims *d, struct spec *s) {
    const int64_t N = (int64_t)d->B * d->T;
    s[0] = OUT("out", R_ACT, 2, N, d->Vp, 1, 1);
    s[1] = IN("inp", R_ACT, -1, 1, 2, N, d->C, 1, 1);
    s[2] = IN("weight", R_ACT, -1, 1, 2, d->Vp, d->C, 1, 1);
    return 3;
}
static ts_status run_matmul_forward_wt(struct ts_backend *be, const struct ts_tensor *t,
                                       const struct dims *d) {
    (void)d;
    return ts_op_matmul_forward(be, &t[0], &t[1], &t[2], NULL, TS_W_OUT_IN);
}

/* The MLP's c_fc with its GELU: (IC, OC) = (C, 4C), bias; out and pre both checked. */
static int sp_matmul_forward_gelu(const struct dims *d, struct spec *s) {
    const int64_t N = (int64_t)d->B * d->T;
    s[0] = OUT("out", R_ACT, 2, N, 4 * d->C, 1, 1);
    s[1] = OUT("pre", R_ACT, 2, N, 4 * d->C, 1, 1);
    s[2] = IN("inp", R_ACT, -1, 1, 2, N, d->C, 1, 1);
    s[3] = IN("weight", R_ACT, -1, 1, 2, d->C, 4 * d->C, 1, 1);
    s[4] = IN("bias", R_ACT, -1, 1, 1, 4 * d->C, 1, 1, 1);
    return 5;
}
static ts_status run_matmul_forward_gelu(struct ts_backend *be, const struct ts_tensor *t,
                                         const struct dims *d) {
    (void)d;
    return ts_op_matmul_forward_gelu(be, &t[0], &t[1], &t[2], &t[3], &t[4]);
}

static int sp_matmul_backward(const struct dims *d, struct spec *s) {
    const int64_t N = (int64_t)d->B * d->T;
    s[0] = OUT("dinp", R_ACT, 2, N, d->C, 1, 1);
    s[1] = ACC("dweight", R_F32, 2, d->C, 3 * d->C, 1, 1);
    s[2] = ACC("dbias", R_F32, 1, 3 * d->C, 1, 1, 1);
    s[3] = IN("dout", R_ACT, -1, 1, 2, N, 3 * d->C, 1, 1);
    s[4] = IN("inp", R_ACT, -1, 1, 2, N, d->C, 1, 1);
    s[5] = IN("weight", R_ACT, -1, 1, 2, d->C, 3 * d->C, 1, 1);
    return 6;
}
static ts_status run_matmul_backward(struct ts_backend *be, const struct ts_tensor *t,
                                     const struct dims *d) {
    (void)d;
    return ts_op_matmul_backward(be, &t[0], &t[1], &t[2], &t[3], &t[4], &t[5], TS_W_IN_OUT);
}

static int sp_matmul_backward_wt(const struct dims *d, struct spec *s) {
    const int64_t N = (int64_t)d->B * d->T;
    s[0] = OUT("dinp", R_ACT, 2, N, d->C, 1, 1);
    s[1] = ACC("dweight", R_F32, 2, d->Vp, d->C, 1, 1);
    s[2] = IN("dout", R_ACT, -1, 1, 2, N, d->Vp, 1, 1);
    s[3] = IN("inp", R_ACT, -1, 1, 2, N, d->C, 1, 1);
    s[4] = IN("weight", R_ACT, -1, 1, 2, d->Vp, d->C, 1, 1);
    return 5;
}
static ts_status run_matmul_backward_wt(struct ts_backend *be, const struct ts_tensor *t,
                                        const struct dims *d) {
    (void)d;
    return ts_op_matmul_backward(be, &t[0], &t[1], NULL, &t[2], &t[3], &t[4], TS_W_OUT_IN);
}

/* The MLP projection's backward with GELU's: inp = gelu(pre) (N,4C), W (4C,C), dout (N,C). */
static int sp_matmul_backward_dgelu(const struct dims *d, struct spec *s) {
    const int64_t N = (int64_t)d->B * d->T;
    s[0] = OUT("dpre", R_ACT, 2, N, 4 * d->C, 1, 1);
    s[1] = ACC("dweight", R_F32, 2, 4 * d->C, d->C, 1, 1);
    s[2] = ACC("dbias", R_F32, 1, d->C, 1, 1, 1);
    s[3] = IN("dout", R_ACT, -1, 1, 2, N, d->C, 1, 1);
    s[4] = IN("inp", R_ACT, -0.2f, 3, 2, N, 4 * d->C, 1, 1);
    s[5] = IN("weight", R_ACT, -1, 1, 2, 4 * d->C, d->C, 1, 1);
    s[6] = IN("pre", R_ACT, -3, 3, 2, N, 4 * d->C, 1, 1);
    return 7;
}
static ts_status run_matmul_backward_dgelu(struct ts_backend *be, const struct ts_tensor *t,
                                           const struct dims *d) {
    (void)d;
    return ts_op_matmul_backward_dgelu(be, &t[0], &t[1], &t[2], &t[3], &t[4], &t[5], &t[6]);
}

static int sp_attention_forward(const struct dims *d, struct spec *s) {
    s[0] = OUT("out", R_ACT, 3, d->B, d->T, d->C, 1);
    s[1] = OUT("att", R_ACT, 4, d->B, d->NH, d->T, d->T);
    s[2] = IN("qkv", R_ACT, -1, 1, 3, d->B, d->T, 3 * d->C, 1);
    return 3;
}
static ts_status run_attention_forward(struct ts_backend *be, const struct ts_tensor *t,
                                       const struct dims *d) {
    return ts_op_attention_forward(be, &t[0], &t[1], &t[2], d->NH);
}

static int sp_attention_backward(const struct dims *d, struct spec *s) {
    s[0] = OUT("dqkv", R_ACT, 3, d->B, d->T, 3 * d->C, 1);
    s[1] = S("scratch", R_ACT, K_SCRATCH, G_UNIFORM, 0, 0, 4, d->B, d->NH, d->T, d->T);
    s[2] = IN("dout", R_ACT, -1, 1, 3, d->B, d->T, d->C, 1);
    s[3] = IN("qkv", R_ACT, -1, 1, 3, d->B, d->T, 3 * d->C, 1);
    /* a causal probability matrix (0 above the diagonal), as forward leaves it */
    s[4] = S("att", R_ACT, K_IN, G_CAUSAL, 0, 0, 4, d->B, d->NH, d->T, d->T);
    return 5;
}
static ts_status run_attention_backward(struct ts_backend *be, const struct ts_tensor *t,
                                        const struct dims *d) {
    return ts_op_attention_backward(be, &t[0], &t[1], &t[2], &t[3], &t[4], d->NH);
}

static int sp_attention_decode(const struct dims *d, struct spec *s) {
    s[0] = OUT("out", R_ACT, 2, d->B, d->C, 1, 1);
    s[1] = S("scratch", R_F32, K_SCRATCH, G_UNIFORM, 0, 0, 3, d->B, d->NH, d->T, 1);
    s[2] = IN("cache", R_ACT, -1, 1, 3, d->B, d->T, 3 * d->C, 1);
    return 3;
}
static ts_status run_attention_decode(struct ts_backend *be, const struct ts_tensor *t,
                                      const struct dims *d) {
    return ts_op_attention_decode(be, &t[0], &t[1], &t[2], d->T / 2, d->NH);
}

/* the last cached row (a full cache) and the first (a single key) */
static ts_status run_attention_decode_last(struct ts_backend *be, const struct ts_tensor *t,
                                           const struct dims *d) {
    return ts_op_attention_decode(be, &t[0], &t[1], &t[2], d->T - 1, d->NH);
}
static ts_status run_attention_decode_first(struct ts_backend *be, const struct ts_tensor *t,
                                            const struct dims *d) {
    return ts_op_attention_decode(be, &t[0], &t[1], &t[2], 0, d->NH);
}

/* The flash pair (head sizes 64 and 128 only, so its own shapes): qkv in +-amp, where amp 8
 * puts the scores at a standard deviation of about 21, the large logits of trained heads. */
static int sp_flash_attention_forward(const struct dims *d, struct spec *s) {
    const float a = d->amp > 0 ? d->amp : 1.0f;
    s[0] = OUT("out", R_ACT, 3, d->B, d->T, d->C, 1);
    s[1] = OUT("lse", R_F32, 3, d->B, d->NH, d->T, 1);
    s[2] = IN("qkv", R_ACT, -a, a, 3, d->B, d->T, 3 * d->C, 1);
    return 3;
}
static ts_status run_flash_attention_forward(struct ts_backend *be, const struct ts_tensor *t,
                                             const struct dims *d) {
    return ts_op_flash_attention_forward(be, &t[0], &t[1], &t[2], d->NH);
}
static int sp_flash_attention_backward(const struct dims *d, struct spec *s) {
    sp_flash_attention_forward(d, s);
    s[3] = OUT("dqkv", R_ACT, 3, d->B, d->T, 3 * d->C, 1);
    s[4] = S("scratch", R_F32, K_SCRATCH, G_UNIFORM, 0, 0, 3, d->B, d->NH, d->T, 1);
    s[5] = IN("dout", R_ACT, -1, 1, 3, d->B, d->T, d->C, 1);
    return 6;
}
/* the backward from the forward's own out and lse, as in training (all three are compared) */
static ts_status run_flash_attention_backward(struct ts_backend *be, const struct ts_tensor *t,
                                              const struct dims *d) {
    TS_CHECK(ts_op_flash_attention_forward(be, &t[0], &t[1], &t[2], d->NH));
    return ts_op_flash_attention_backward(be, &t[3], &t[4], &t[5], &t[2], &t[0], &t[1], d->NH);
}

/* B, T, C, NH, -, -, amp: T 1, odd T across the 64- and 32-row tiles, both head sizes, T 1000
 * at GPT-2's width, large logits (HS 128 at T 129, HS 64 at T 127 and 1000). The first three
 * are the small ones. The CPU reference recomputes each score several times (it keeps no row),
 * so T 1000 costs seconds there: these shapes stay few. */
static const struct dims flash_shapes[] = {
    {1, 1, 64, 1, 0, 0, 1},     {2, 17, 128, 2, 0, 0, 1},  {1, 129, 256, 2, 0, 0, 8},
    {1, 127, 128, 1, 0, 0, 8},  {2, 200, 256, 2, 0, 0, 1}, {1, 1000, 768, 12, 0, 0, 1},
    {1, 1000, 128, 1, 0, 0, 8},
};
#define N_FLASH (int)(sizeof flash_shapes / sizeof flash_shapes[0])

static int sp_gelu_forward(const struct dims *d, struct spec *s) {
    s[0] = OUT("out", R_ACT, 3, d->B, d->T, 4 * d->C, 1);
    s[1] = IN("inp", R_ACT, -4, 4, 3, d->B, d->T, 4 * d->C, 1);
    return 2;
}
static ts_status run_gelu_forward(struct ts_backend *be, const struct ts_tensor *t,
                                  const struct dims *d) {
    (void)d;
    return ts_op_gelu_forward(be, &t[0], &t[1]);
}

static int sp_gelu_backward(const struct dims *d, struct spec *s) {
    s[0] = OUT("dinp", R_ACT, 3, d->B, d->T, 4 * d->C, 1);
    s[1] = IN("inp", R_ACT, -4, 4, 3, d->B, d->T, 4 * d->C, 1);
    s[2] = IN("dout", R_ACT, -1, 1, 3, d->B, d->T, 4 * d->C, 1);
    return 3;
}
static ts_status run_gelu_backward(struct ts_backend *be, const struct ts_tensor *t,
                                   const struct dims *d) {
    (void)d;
    return ts_op_gelu_backward(be, &t[0], &t[1], &t[2]);
}

static int sp_residual_forward(const struct dims *d, struct spec *s) {
    s[0] = OUT("out", R_ACT, 3, d->B, d->T, d->C, 1);
    s[1] = IN("a", R_ACT, -1, 1, 3, d->B, d->T, d->C, 1);
    s[2] = IN("b", R_ACT, -1, 1, 3, d->B, d->T, d->C, 1);
    return 3;
}
static ts_status run_residual_forward(struct ts_backend *be, const struct ts_tensor *t,
                                      const struct dims *d) {
    (void)d;
    return ts_op_residual_forward(be, &t[0], &t[1], &t[2]);
}

static int sp_residual_layernorm_forward(const struct dims *d, struct spec *s) {
    s[0] = OUT("res", R_ACT, 3, d->B, d->T, d->C, 1);
    s[1] = OUT("out", R_ACT, 3, d->B, d->T, d->C, 1);
    s[2] = OUT("mean", R_F32, 1, (int64_t)d->B * d->T, 1, 1, 1);
    s[3] = OUT("rstd", R_F32, 1, (int64_t)d->B * d->T, 1, 1, 1);
    s[4] = IN("a", R_ACT, -2, 4, 3, d->B, d->T, d->C, 1);
    s[5] = IN("b", R_ACT, -1, 1, 3, d->B, d->T, d->C, 1);
    s[6] = IN("weight", R_ACT, 0.5f, 1.5f, 1, d->C, 1, 1, 1);
    s[7] = IN("bias", R_ACT, -0.5f, 0.5f, 1, d->C, 1, 1, 1);
    return 8;
}
static ts_status run_residual_layernorm_forward(struct ts_backend *be, const struct ts_tensor *t,
                                                const struct dims *d) {
    (void)d;
    return ts_op_residual_layernorm_forward(be, &t[0], &t[1], &t[2], &t[3], &t[4], &t[5], &t[6],
                                            &t[7]);
}

static int sp_softmax_xent(const struct dims *d, struct spec *s) {
    s[0] = OUT("losses", R_F32, 1, (int64_t)d->B * d->T, 1, 1, 1);
    s[1] = S("logits", R_ACT, K_INOUT, G_UNIFORM, -4, 4, 3, d->B, d->T, d->Vp, 1);
    s[2] = S("targets", R_I32, K_IN, G_TOKENS, 0, (float)d->V, 1, (int64_t)d->B * d->T, 1, 1, 1);
    return 3;
}
static ts_status run_softmax_xent(struct ts_backend *be, const struct ts_tensor *t,
                                  const struct dims *d) {
    return ts_op_softmax_xent(be, &t[0], &t[1], &t[2], d->V, 1.0f / (float)(d->B * d->T), true);
}
static ts_status run_softmax_xent_nograd(struct ts_backend *be, const struct ts_tensor *t,
                                         const struct dims *d) {
    return ts_op_softmax_xent(be, &t[0], &t[1], &t[2], d->V, 0.0f, false);
}

static int64_t vec_len(const struct dims *d) { return (int64_t)d->B * d->T * d->C + 3; }

static int sp_adamw(const struct dims *d, struct spec *s) {
    const int64_t n = vec_len(d);
    s[0] = S("param", R_F32, K_INOUT, G_UNIFORM, -1, 1, 1, n, 1, 1, 1);
    s[1] = IN("grad", R_F32, -1, 1, 1, n, 1, 1, 1);
    s[2] = S("m", R_F32, K_INOUT, G_UNIFORM, -0.1f, 0.1f, 1, n, 1, 1, 1);
    s[3] = S("v", R_F32, K_INOUT, G_UNIFORM, 0, 0.01f, 1, n, 1, 1, 1);
    return 4;
}
static ts_status run_adamw(struct ts_backend *be, const struct ts_tensor *t, const struct dims *d) {
    (void)d;
    return ts_op_adamw(be, &t[0], &t[1], &t[2], &t[3], 1e-3f, 0.9f, 0.95f, 1e-8f, 0.1f, 0.5f, 3);
}

static int sp_adamw_master(const struct dims *d, struct spec *s) {
    const int64_t n = vec_len(d);
    s[0] = OUT("param", R_ACT, 1, n, 1, 1, 1);
    s[1] = S("master", R_F32, K_INOUT, G_UNIFORM, -1, 1, 1, n, 1, 1, 1);
    s[2] = IN("grad", R_F32, -1, 1, 1, n, 1, 1, 1);
    s[3] = S("m", R_F32, K_INOUT, G_UNIFORM, -0.1f, 0.1f, 1, n, 1, 1, 1);
    s[4] = S("v", R_F32, K_INOUT, G_UNIFORM, 0, 0.01f, 1, n, 1, 1, 1);
    return 5;
}
static ts_status run_adamw_master(struct ts_backend *be, const struct ts_tensor *t,
                                  const struct dims *d) {
    (void)d;
    return ts_op_adamw_master(be, &t[0], &t[1], &t[2], &t[3], &t[4], 1e-3f, 0.9f, 0.95f, 1e-8f,
                              0.1f, 0.5f, 3);
}

static int sp_sum_squares(const struct dims *d, struct spec *s) {
    s[0] = OUT("out", R_F32, 1, 1, 1, 1, 1);
    s[1] = IN("x", R_ACT, -1, 1, 1, 4 * vec_len(d) + 1, 1, 1, 1);
    return 2;
}
static ts_status run_sum_squares(struct ts_backend *be, const struct ts_tensor *t,
                                 const struct dims *d) {
    (void)d;
    return ts_op_sum_squares(be, &t[0], &t[1]);
}

static int sp_cast_to(const struct dims *d, struct spec *s) {
    s[0] = OUT("dst", R_ACT, 1, vec_len(d), 1, 1, 1);
    s[1] = IN("src", R_F32, -3, 3, 1, vec_len(d), 1, 1, 1);
    return 2;
}
static int sp_cast_from(const struct dims *d, struct spec *s) {
    s[0] = OUT("dst", R_F32, 1, vec_len(d), 1, 1, 1);
    s[1] = IN("src", R_ACT, -3, 3, 1, vec_len(d), 1, 1, 1);
    return 2;
}
static ts_status run_cast(struct ts_backend *be, const struct ts_tensor *t, const struct dims *d) {
    (void)d;
    return ts_op_cast(be, &t[0], &t[1]);
}

/* The elementwise ops on views one element into their buffers (a ZeRO slice at an odd offset):
 * 4 or 2 bytes past 16-byte alignment, so the CUDA backend takes its one-element-per-thread
 * kernels even with the 16-byte ones on (kernels/cuda/vec16.h). Every tensor holds one element
 * more than the op sees and outputs are in-out, so the untouched first element matches too. */
static struct ts_tensor skip1(const struct ts_tensor *t) {
    struct ts_tensor v;
    const int64_t n = ts_tensor_numel(t) - 1;
    if (ts_tensor_view(&v, t, 1, 1, &n) != TS_OK)
        v = *t; /* cannot happen: the view lies inside t; the op check then fails loudly */
    return v;
}

static int sp_elementwise_offset(const struct dims *d, struct spec *s) {
    const int64_t n = vec_len(d) + 1;
    s[0] = S("out", R_ACT, K_INOUT, G_UNIFORM, -1, 1, 1, n, 1, 1, 1);
    s[1] = IN("a", R_ACT, -4, 4, 1, n, 1, 1, 1);
    s[2] = IN("b", R_ACT, -1, 1, 1, n, 1, 1, 1);
    return 3;
}
static ts_status run_residual_offset(struct ts_backend *be, const struct ts_tensor *t,
                                     const struct dims *d) {
    (void)d;
    const struct ts_tensor o = skip1(&t[0]), a = skip1(&t[1]), b = skip1(&t[2]);
    return ts_op_residual_forward(be, &o, &a, &b);
}
static ts_status run_gelu_forward_offset(struct ts_backend *be, const struct ts_tensor *t,
                                         const struct dims *d) {
    (void)d;
    const struct ts_tensor o = skip1(&t[0]), a = skip1(&t[1]);
    return ts_op_gelu_forward(be, &o, &a);
}
static ts_status run_gelu_backward_offset(struct ts_backend *be, const struct ts_tensor *t,
                                          const struct dims *d) {
    (void)d;
    const struct ts_tensor o = skip1(&t[0]), a = skip1(&t[1]), b = skip1(&t[2]);
    return ts_op_gelu_backward(be, &o, &a, &b);
}

static int sp_cast_to_offset(const struct dims *d, struct spec *s) {
    s[0] = S("dst", R_ACT, K_INOUT, G_UNIFORM, -1, 1, 1, vec_len(d) + 1, 1, 1, 1);
    s[1] = IN("src", R_F32, -3, 3, 1, vec_len(d) + 1, 1, 1, 1);
    return 2;
}
static ts_status run_cast_offset(struct ts_backend *be, const struct ts_tensor *t,
                                 const struct dims *d) {
    (void)d;
    const struct ts_tensor o = skip1(&t[0]), a = skip1(&t[1]);
    return ts_op_cast(be, &o, &a);
}

static int sp_adamw_master_offset(const struct dims *d, struct spec *s) {
    const int64_t n = vec_len(d) + 1;
    s[0] = S("param", R_ACT, K_INOUT, G_UNIFORM, -1, 1, 1, n, 1, 1, 1);
    s[1] = S("master", R_F32, K_INOUT, G_UNIFORM, -1, 1, 1, n, 1, 1, 1);
    s[2] = IN("grad", R_F32, -1, 1, 1, n, 1, 1, 1);
    s[3] = S("m", R_F32, K_INOUT, G_UNIFORM, -0.1f, 0.1f, 1, n, 1, 1, 1);
    s[4] = S("v", R_F32, K_INOUT, G_UNIFORM, 0, 0.01f, 1, n, 1, 1, 1);
    return 5;
}
static ts_status run_adamw_master_offset(struct ts_backend *be, const struct ts_tensor *t,
                                         const struct dims *d) {
    (void)d;
    const struct ts_tensor p = skip1(&t[0]), w = skip1(&t[1]), g = skip1(&t[2]), m = skip1(&t[3]),
                           v = skip1(&t[4]);
    return ts_op_adamw_master(be, &p, &w, &g, &m, &v, 1e-3f, 0.9f, 0.95f, 1e-8f, 0.1f, 0.5f, 3);
}

static int sp_fill(const struct dims *d, struct spec *s) {
    s[0] = OUT("t", R_ACT, 1, vec_len(d), 1, 1, 1);
    return 1;
}
static ts_status run_fill(struct ts_backend *be, const struct ts_tensor *t, const struct dims *d) {
    (void)d;
    return ts_op_fill(be, &t[0], 0.75f);
}
static ts_status run_fill_normal(struct ts_backend *be, const struct ts_tensor *t,
                                 const struct dims *d) {
    (void)d;
    return ts_op_fill_normal(be, &t[0], 0.1f, 0.02f, 1234, 77);
}

/* Tolerances on ||dev - ref|| / ||ref||: fp32 differs only by summation order; bf16 outputs
 * carry their own rounding (2^-9 relative) and that of bf16 intermediates. */
static const struct opcase cases[] = {
    {"fill", false, 1e-6, 1e-2, sp_fill, run_fill},
    {"fill_normal", false, 1e-6, 1e-2, sp_fill, run_fill_normal},
    {"cast_to", false, 1e-6, 1e-2, sp_cast_to, run_cast},
    {"cast_from", false, 1e-6, 1e-6, sp_cast_from, run_cast},
    {"encoder_forward", false, 1e-6, 1e-2, sp_encoder_forward, run_encoder_forward},
    {"encoder_backward", false, 1e-6, 1e-5, sp_encoder_backward, run_encoder_backward},
    {"encoder_backward_spread", false, 1e-6, 1e-5, sp_encoder_backward_spread,
     run_encoder_backward},
    {"layernorm_forward", false, 1e-5, 1e-2, sp_layernorm_forward, run_layernorm_forward},
    {"layernorm_backward", false, 2e-5, 2e-2, sp_layernorm_backward, run_layernorm_backward},
    {"matmul_forward", false, 2e-5, 1e-2, sp_matmul_forward, run_matmul_forward},
    {"matmul_forward_wt", false, 2e-5, 1e-2, sp_matmul_forward_wt, run_matmul_forward_wt},
    {"matmul_forward_gelu", false, 2e-5, 1e-2, sp_matmul_forward_gelu, run_matmul_forward_gelu},
    {"matmul_backward", false, 2e-5, 1e-2, sp_matmul_backward, run_matmul_backward},
    {"matmul_backward_wt", false, 2e-5, 1e-2, sp_matmul_backward_wt, run_matmul_backward_wt},
    /* bf16: cuBLASLt's epilogue rounds once where the CPU's pair rounds twice */
    {"matmul_backward_dgelu", false, 2e-5, 2e-2, sp_matmul_backward_dgelu,
     run_matmul_backward_dgelu},
    {"attention_forward", false, 2e-5, 2e-2, sp_attention_forward, run_attention_forward},
    {"attention_backward", false, 2e-5, 3e-2, sp_attention_backward, run_attention_backward},
    /* fp32: large logits amplify summation-order differences in the scores (|s| up to ~80) */
    {"attention_decode", false, 2e-5, 2e-2, sp_attention_decode, run_attention_decode},
    {"attention_decode_last", false, 2e-5, 2e-2, sp_attention_decode, run_attention_decode_last},
    {"attention_decode_first", false, 2e-5, 2e-2, sp_attention_decode, run_attention_decode_first},
    {"gelu_forward", false, 1e-5, 1e-2, sp_gelu_forward, run_gelu_forward},
    {"gelu_backward", false, 1e-5, 1e-2, sp_gelu_backward, run_gelu_backward},
    {"residual_forward", false, 1e-6, 1e-2, sp_residual_forward, run_residual_forward},
    {"residual_layernorm_forward", false, 1e-5, 1e-2, sp_residual_layernorm_forward,
     run_residual_layernorm_forward},
    {"softmax_xent", false, 1e-5, 2e-2, sp_softmax_xent, run_softmax_xent},
    {"softmax_xent_nograd", false, 1e-5, 1e-2, sp_softmax_xent, run_softmax_xent_nograd},
    {"adamw", true, 1e-5, 1e-5, sp_adamw, run_adamw},
    {"adamw_master", false, 1e-5, 1e-2, sp_adamw_master, run_adamw_master},
    {"sum_squares", false, 1e-6, 1e-6, sp_sum_squares, run_sum_squares},
    /* misaligned views: the one-element kernels beside the 16-byte ones */
    {"residual_forward_offset", false, 1e-6, 1e-2, sp_elementwise_offset, run_residual_offset},
    {"gelu_forward_offset", false, 1e-5, 1e-2, sp_elementwise_offset, run_gelu_forward_offset},
    {"gelu_backward_offset", false, 1e-5, 1e-2, sp_elementwise_offset, run_gelu_backward_offset},
    {"cast_to_offset", false, 1e-6, 1e-2, sp_cast_to_offset, run_cast_offset},
    {"adamw_master_offset", false, 1e-5, 1e-2, sp_adamw_master_offset, run_adamw_master_offset},
};

/* Small odd shapes first (HS 5, Vp not a multiple of anything), then GPT-2's widths. */
static const struct dims shapes[] = {
    {1, 1, 4, 1, 5, 8, 0},          {2, 13, 24, 3, 50, 64, 0},         {3, 33, 20, 4, 97, 101, 0},
    {4, 64, 128, 4, 1000, 1024, 0}, {1, 64, 768, 12, 50257, 50304, 0},
};
#define N_SMALL 3

/* The flash pair has kernels for head sizes 64 and 128 only: its own cases and shapes. */
static const struct opcase flash_cases[] = {
    /* fp32: large logits (|s| up to ~80) amplify summation-order differences in the scores */
    {"flash_attention_forward", false, 1e-4, 2e-2, sp_flash_attention_forward,
     run_flash_attention_forward},
    {"flash_attention_backward", false, 1e-4, 3e-2, sp_flash_attention_backward,
     run_flash_attention_backward},
};

/* Tall cases: B T past 65,535 rows (the fallback gemm's old grid.y limit; run.sh also runs them
 * with TS_CUDA_GEMM=fallback), the column sums over their 64 chunks, and the wte gradient with
 * seven ids over 70,000 positions (segments of ~10,000 rows, seven merge passes) and past the
 * sort buffers' 262,144 positions (the scan kernel). Narrow rows keep the CPU reference fast. */
static const struct opcase tall_cases[] = {
    {"matmul_forward_tall", false, 2e-5, 1e-2, sp_matmul_forward, run_matmul_forward},
    {"matmul_backward_tall", false, 2e-5, 1e-2, sp_matmul_backward, run_matmul_backward},
    {"layernorm_backward_tall", false, 2e-5, 2e-2, sp_layernorm_backward, run_layernorm_backward},
    {"encoder_backward_tall", false, 1e-6, 1e-5, sp_encoder_backward, run_encoder_backward},
};
static const struct dims tall_shapes[] = {
    {1, 70000, 8, 1, 50, 64, 0},
    {1, 270000, 8, 1, 50, 64, 0},
};

/* Each group: its cases on its shapes (the first nsmall of them with `small`). */
struct group {
    const struct opcase *cases;
    int ncases;
    const struct dims *shapes;
    int nshapes, nsmall;
};
static const struct group groups[] = {
    {cases, (int)(sizeof cases / sizeof cases[0]), shapes, (int)(sizeof shapes / sizeof shapes[0]),
     N_SMALL},
    {flash_cases, (int)(sizeof flash_cases / sizeof flash_cases[0]), flash_shapes, N_FLASH, 3},
    {tall_cases, (int)(sizeof tall_cases / sizeof tall_cases[0]), tall_shapes,
     (int)(sizeof tall_shapes / sizeof tall_shapes[0]), 0},
};

/* ---- the harness ---- */

struct side {
    struct ts_tensor t[MAX_TENSORS];
};

static enum ts_dtype dtype_of(const struct spec *s, bool dev, enum ts_dtype dt) {
    if (s->role == R_I32)
        return TS_DTYPE_I32;
    if (s->role == R_F32)
        return TS_DTYPE_F32;
    return dev ? dt : TS_DTYPE_F32;
}

static int64_t numel_of(const struct spec *s) {
    int64_t n = 1;
    for (int i = 0; i < s->ndim; i++)
        n *= s->shape[i];
    return n;
}

/* Host values of one tensor (floats, or i32 stored in the same 4 bytes). */
static void generate(const struct spec *s, float *h, int64_t n, uint64_t seed, bool round16) {
    if (s->kind == K_OUT || s->kind == K_SCRATCH) {
        for (int64_t i = 0; i < n; i++)
            h[i] = NAN;
        return;
    }
    if (s->gen == G_TOKENS) {
        int32_t *ids = (int32_t *)h;
        for (int64_t i = 0; i < n; i++)
            ids[i] = (int32_t)(s->lo + floorf(ts_rng_uniform(seed, (uint64_t)i) * (s->hi - s->lo)));
        return;
    }
    if (s->gen == G_CAUSAL) {
        const int64_t T = s->shape[3], rows = n / T;
        for (int64_t r = 0; r < rows; r++) {
            const int64_t t = r % T;
            double sum = 0;
            for (int64_t j = 0; j < T; j++) {
                float v = j <= t ? 0.05f + ts_rng_uniform(seed, (uint64_t)(r * T + j)) : 0.0f;
                h[r * T + j] = v;
                sum += v;
            }
            for (int64_t j = 0; j <= t; j++)
                h[r * T + j] = (float)(h[r * T + j] / sum);
        }
    } else {
        for (int64_t i = 0; i < n; i++)
            h[i] = s->lo + (s->hi - s->lo) * ts_rng_uniform(seed, (uint64_t)i);
    }
    if (round16 && s->role == R_ACT)
        for (int64_t i = 0; i < n; i++)
            h[i] = ts_bf16_round(h[i]);
}

static ts_status upload(struct ts_backend *be, const struct ts_tensor *t, const float *h,
                        int64_t n) {
    if (t->dtype != TS_DTYPE_BF16)
        return ts_op_upload(be, t, h, (size_t)n * 4);
    uint16_t *tmp = malloc((size_t)n * sizeof(uint16_t));
    if (!tmp)
        return ts_error(TS_ERR_OOM, "opcheck: out of memory");
    for (int64_t i = 0; i < n; i++)
        tmp[i] = ts_bf16_from_f32(h[i]); /* NaN stays NaN */
    ts_status st = ts_op_upload(be, t, tmp, (size_t)n * sizeof(uint16_t));
    free(tmp);
    return st;
}

static ts_status download(struct ts_backend *be, const struct ts_tensor *t, float *h, int64_t n) {
    if (t->dtype != TS_DTYPE_BF16)
        return ts_op_download(be, h, t, (size_t)n * 4);
    uint16_t *tmp = malloc((size_t)n * sizeof(uint16_t));
    if (!tmp)
        return ts_error(TS_ERR_OOM, "opcheck: out of memory");
    ts_status st = ts_op_download(be, tmp, t, (size_t)n * sizeof(uint16_t));
    for (int64_t i = 0; st == TS_OK && i < n; i++)
        h[i] = ts_f32_from_bf16(tmp[i]);
    free(tmp);
    return st;
}

static void compare(const float *d, const float *r, int64_t n, double *rel, double *max_abs,
                    int64_t *bad) {
    double num = 0, den = 0, mx = 0;
    int64_t b = 0;
    for (int64_t i = 0; i < n; i++) {
        if (!isfinite(d[i]) || !isfinite(r[i])) {
            b++;
            continue;
        }
        double diff = (double)d[i] - (double)r[i];
        num += diff * diff;
        den += (double)r[i] * (double)r[i];
        mx = fabs(diff) > mx ? fabs(diff) : mx;
    }
    *rel = num == 0 ? 0 : sqrt(num) / (den > 0 ? sqrt(den) : 1e-30);
    *max_abs = mx;
    *bad = b;
}

static void free_side(struct ts_backend *be, struct side *s, int n) {
    for (int i = 0; i < n; i++)
        ts_op_free(be, &s->t[i]);
}

static ts_status check_one(struct ts_backend *ref, struct ts_backend *dev, enum ts_dtype dt,
                           const struct opcase *c, const struct dims *d, uint64_t seed,
                           struct ts_opcheck_result *r) {
    struct spec sp[MAX_TENSORS];
    const int nt = c->specs(d, sp);
    struct side a = {0}, b = {0};
    float *host[MAX_TENSORS] = {0}, *got = NULL;
    ts_status st = TS_OK;
    memset(r, 0, sizeof *r);
    snprintf(r->op, sizeof r->op, "%s", c->name);
    snprintf(r->dtype, sizeof r->dtype, "%s", dt == TS_DTYPE_BF16 ? "bf16" : "fp32");
    if (d->amp > 0)
        snprintf(r->shape, sizeof r->shape, "B%d T%d C%d NH%d qkv+-%g", d->B, d->T, d->C, d->NH,
                 (double)d->amp);
    else
        snprintf(r->shape, sizeof r->shape, "B%d T%d C%d NH%d Vp%d", d->B, d->T, d->C, d->NH,
                 d->Vp);
    r->tol = dt == TS_DTYPE_BF16 ? c->tol_bf16 : c->tol_f32;
    r->pass = true;
    int64_t maxn = 1;
    double worst = -1;
    for (int i = 0; i < nt; i++) {
        const int64_t n = numel_of(&sp[i]);
        maxn = n > maxn ? n : maxn;
        host[i] = malloc((size_t)n * sizeof(float));
        if (!host[i]) {
            st = ts_error(TS_ERR_OOM, "opcheck %s: out of memory", c->name);
            goto exit;
        }
        generate(&sp[i], host[i], n, ts_rng_mix(seed ^ (uint64_t)(i * 7919 + 1)),
                 dt == TS_DTYPE_BF16);
        TS_CHECK_GOTO(
            ts_op_alloc(ref, &a.t[i], dtype_of(&sp[i], false, dt), sp[i].ndim, sp[i].shape), st,
            exit);
        TS_CHECK_GOTO(
            ts_op_alloc(dev, &b.t[i], dtype_of(&sp[i], true, dt), sp[i].ndim, sp[i].shape), st,
            exit);
        TS_CHECK_GOTO(upload(ref, &a.t[i], host[i], n), st, exit);
        TS_CHECK_GOTO(upload(dev, &b.t[i], host[i], n), st, exit);
    }
    TS_CHECK_GOTO(c->run(ref, a.t, d), st, exit);
    TS_CHECK_GOTO(c->run(dev, b.t, d), st, exit);
    TS_CHECK_GOTO(ts_op_sync(dev), st, exit);
    got = malloc((size_t)maxn * sizeof(float));
    if (!got) {
        st = ts_error(TS_ERR_OOM, "opcheck %s: out of memory", c->name);
        goto exit;
    }
    for (int i = 0; i < nt; i++) {
        if (sp[i].kind == K_IN || sp[i].kind == K_SCRATCH)
            continue;
        const int64_t n = numel_of(&sp[i]);
        double rel, mx;
        int64_t bad;
        TS_CHECK_GOTO(download(ref, &a.t[i], host[i], n), st, exit);
        TS_CHECK_GOTO(download(dev, &b.t[i], got, n), st, exit);
        compare(got, host[i], n, &rel, &mx, &bad);
        /* name the worst output: any with unwritten or non-finite elements, else the largest
         * relative error */
        const double score = bad > 0 ? INFINITY : rel;
        if (r->output[0] == '\0' || score > worst) {
            worst = score;
            snprintf(r->output, sizeof r->output, "%s", sp[i].name);
        }
        r->rel_l2 = rel > r->rel_l2 ? rel : r->rel_l2;
        r->max_abs = mx > r->max_abs ? mx : r->max_abs;
        r->bad += bad;
    }
    r->pass = r->bad == 0 && r->rel_l2 <= r->tol;
exit:
    free(got);
    for (int i = 0; i < nt; i++)
        free(host[i]);
    free_side(ref, &a, nt);
    free_side(dev, &b, nt);
    if (st != TS_OK)
        ts_error_wrap(st, "opcheck %s (%s, %s)", c->name, r->dtype, r->shape);
    return st;
}

ts_status ts_opcheck_run(struct ts_backend *ref, struct ts_backend *dev, enum ts_dtype dt,
                         const char *filter, bool small, uint64_t seed, ts_opcheck_report_fn report,
                         void *user, int *failures) {
    *failures = 0;
    for (size_t gi = 0; gi < sizeof groups / sizeof groups[0]; gi++) {
        const struct group *gr = &groups[gi];
        for (int ci = 0; ci < gr->ncases; ci++) {
            const struct opcase *c = &gr->cases[ci];
            if (filter && !strstr(c->name, filter))
                continue;
            if (c->f32_only && dt != TS_DTYPE_F32)
                continue;
            const int nshapes = small ? gr->nsmall : gr->nshapes;
            for (int si = 0; si < nshapes; si++) {
                struct ts_opcheck_result r;
                uint64_t s =
                    ts_rng_mix(seed + (gi * 64 + (uint64_t)ci) * 1000003u + (uint64_t)si * 101u);
                TS_CHECK(check_one(ref, dev, dt, c, &gr->shapes[si], s, &r));
                if (!r.pass)
                    (*failures)++;
                if (report)
                    report(&r, user);
            }
        }
    }
    return TS_OK;
}

/* ---- op timing ---- */

static double elem_bytes(enum ts_dtype dt) { return dt == TS_DTYPE_BF16 ? 2 : 4; }

static const struct spec *find_spec(const struct spec *sp, int n, const char *name) {
    for (int i = 0; i < n; i++)
        if (strcmp(sp[i].name, name) == 0)
            return &sp[i];
    return NULL;
}

/* The case's matmul and attention FLOPs: 2 m n k per product; a backward's two products twice
 * its forward's. Attention counts the full T x T scores, as the MFU formula does. */
static double case_flops(const char *name, const struct spec *sp, int n, const struct dims *d) {
    const struct spec *inp = find_spec(sp, n, "inp"), *out = find_spec(sp, n, "out"),
                      *dout = find_spec(sp, n, "dout");
    const double BTTC = (double)d->B * d->T * d->T * d->C;
    if (strncmp(name, "matmul_forward", 14) == 0 && inp && out)
        return 2.0 * (double)numel_of(inp) * (double)out->shape[1];
    if (strncmp(name, "matmul_backward", 15) == 0 && inp && dout)
        return 4.0 * (double)numel_of(inp) * (double)dout->shape[1];
    if (strncmp(name, "attention_decode", 16) == 0)
        return 4.0 * (double)d->B * d->T * d->C;
    if (strcmp(name, "flash_attention_backward") == 0) /* its case runs the forward first */
        return 12.0 * BTTC;
    if (strstr(name, "attention_forward") != NULL)
        return 4.0 * BTTC;
    if (strstr(name, "attention_backward") != NULL)
        return 8.0 * BTTC;
    return 0;
}

static ts_status time_one(struct ts_backend *dev, enum ts_dtype dt, const struct opcase *c,
                          const struct dims *d, int reps, struct ts_optime_result *r) {
    struct spec sp[MAX_TENSORS];
    const int nt = c->specs(d, sp);
    struct side b = {0};
    ts_event_t *e0 = NULL, *e1 = NULL;
    float *ids = NULL;
    ts_status st = TS_OK;
    memset(r, 0, sizeof *r);
    snprintf(r->op, sizeof r->op, "%s", c->name);
    snprintf(r->dtype, sizeof r->dtype, "%s", dt == TS_DTYPE_BF16 ? "bf16" : "fp32");
    snprintf(r->shape, sizeof r->shape, "B%d T%d C%d NH%d Vp%d", d->B, d->T, d->C, d->NH, d->Vp);
    for (int i = 0; i < nt; i++) {
        const enum ts_dtype t = dtype_of(&sp[i], true, dt);
        const int64_t n = numel_of(&sp[i]);
        TS_CHECK_GOTO(ts_op_alloc(dev, &b.t[i], t, sp[i].ndim, sp[i].shape), st, exit);
        static const double passes[] = {
            [K_IN] = 1, [K_OUT] = 1, [K_ACC] = 2, [K_INOUT] = 2, [K_SCRATCH] = 0};
        r->bytes += passes[sp[i].kind] * (double)n * elem_bytes(t);
        if (sp[i].gen == G_TOKENS) {
            ids = malloc((size_t)n * sizeof(float));
            if (!ids) {
                st = ts_error(TS_ERR_OOM, "optime %s: out of memory", c->name);
                goto exit;
            }
            generate(&sp[i], ids, n, 0x5eed + (uint64_t)i, false);
            TS_CHECK_GOTO(ts_op_upload(dev, &b.t[i], ids, (size_t)n * 4), st, exit);
            free(ids);
            ids = NULL;
        } else if (sp[i].kind != K_OUT && sp[i].kind != K_SCRATCH) {
            TS_CHECK_GOTO(ts_op_fill(dev, &b.t[i], 0.5f * (sp[i].lo + sp[i].hi)), st, exit);
        }
    }
    r->flops = case_flops(c->name, sp, nt, d);
    TS_CHECK_GOTO(c->run(dev, b.t, d), st, exit); /* untimed: first-call setup, plan caches */
    TS_CHECK_GOTO(ts_op_event_create(dev, &e0), st, exit);
    TS_CHECK_GOTO(ts_op_event_create(dev, &e1), st, exit);
    TS_CHECK_GOTO(ts_op_event_record(dev, e0), st, exit);
    for (int k = 0; k < reps; k++)
        TS_CHECK_GOTO(c->run(dev, b.t, d), st, exit);
    TS_CHECK_GOTO(ts_op_event_record(dev, e1), st, exit);
    TS_CHECK_GOTO(ts_op_event_sync(dev, e1), st, exit);
    float ms = 0;
    TS_CHECK_GOTO(ts_op_event_elapsed_ms(dev, e0, e1, &ms), st, exit);
    r->ms = (double)ms / reps;
exit:
    free(ids);
    ts_op_event_destroy(dev, e0);
    ts_op_event_destroy(dev, e1);
    free_side(dev, &b, nt);
    if (st != TS_OK)
        ts_error_wrap(st, "optime %s (%s, %s)", c->name, r->dtype, r->shape);
    return st;
}

ts_status ts_optime_run(struct ts_backend *dev, enum ts_dtype dt, int B, int T, int C, int NH,
                        int V, const char *filter, int reps, ts_optime_report_fn report,
                        void *user) {
    if (B < 1 || T < 1 || C < 1 || NH < 1 || C % NH != 0 || V < 1 || reps < 1)
        return ts_error(TS_ERR_INVALID_ARG,
                        "optime: B %d T %d C %d NH %d V %d reps %d (C a multiple of NH, all >= 1)",
                        B, T, C, NH, V, reps);
    const struct dims d = {B, T, C, NH, V, (V + 127) / 128 * 128, 0};
    const int HS = C / NH;
    for (size_t gi = 0; gi < 2; gi++) {
        const struct group *gr = &groups[gi];
        if (gr->cases == flash_cases && HS != 64 && HS != 128)
            continue;
        for (int ci = 0; ci < gr->ncases; ci++) {
            const struct opcase *c = &gr->cases[ci];
            if ((filter && !strstr(c->name, filter)) || (c->f32_only && dt != TS_DTYPE_F32))
                continue;
            struct ts_optime_result r;
            TS_CHECK(time_one(dev, dt, c, &d, reps, &r));
            if (report)
                report(&r, user);
        }
    }
    return TS_OK;
}
