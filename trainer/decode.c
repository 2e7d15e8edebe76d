/* decode.c: the KV-cache decoder and the sampler (decode.h).
 *
 * The decoder walks the same blocks as gpt.c's forward, for one row: the c_attn matmul writes the
 * new position's qkv row straight into the layer's cache, and attention_decode attends that
 * query over the cached rows 0..pos. The residual stream ping-pongs between two rows because
 * ops refuse outputs that alias their inputs. */
#define _GNU_SOURCE /* qsort_r */
#include "trainer/decode.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/ops.h"
#include "kernels/rng.h"

/* Per-layer parameter views, in the table's per-layer order (gpt.h). */
enum {
    W_LN1W,
    W_LN1B,
    W_QKVW,
    W_QKVB,
    W_ATTPROJW,
    W_ATTPROJB,
    W_LN2W,
    W_LN2B,
    W_FCW,
    W_FCB,
    W_FCPROJW,
    W_FCPROJB,
    W_PER_LAYER,
};

static const char *const layer_names[W_PER_LAYER] = {
    "ln_1.weight",        "ln_1.bias",        "attn.c_attn.weight", "attn.c_attn.bias",
    "attn.c_proj.weight", "attn.c_proj.bias", "ln_2.weight",        "ln_2.bias",
    "mlp.c_fc.weight",    "mlp.c_fc.bias",    "mlp.c_proj.weight",  "mlp.c_proj.bias",
};

struct ts_decoder {
    ts_gpt_t *gpt;
    struct ts_backend *be;
    int L, NH, C, V, Vp, cap, len;
    struct ts_tensor wte, wpe, lnfw, lnfb;
    struct ts_tensor *w; /* (L * W_PER_LAYER) views into the model's parameters */
    /* backend memory */
    struct ts_tensor cache;           /* (L, S, 3C) */
    struct ts_tensor x, x2;           /* (1, C) residual stream, ping-pong */
    struct ts_tensor ln, att_y, proj; /* (1, C) */
    struct ts_tensor mean, rstd;      /* (1) */
    struct ts_tensor fch, fch_gelu;   /* (1, 4C) */
    struct ts_tensor logits;          /* (1, Vp) */
    struct ts_tensor scratch;         /* (1, NH, S) */
    struct ts_tensor token;           /* (1, 1) i32 */
};

static ts_status find_param(const ts_gpt_t *gpt, const char *name, struct ts_tensor *out) {
    int count = 0;
    const struct ts_param_info *table = ts_gpt_params(gpt, &count);
    for (int i = 0; i < count; i++) {
        if (strcmp(table[i].name, name) != 0)
            continue;
        return ts_tensor_view(out, ts_gpt_param_buffer(gpt), table[i].offset, table[i].ndim,
                              table[i].shape);
    }
    return ts_error(TS_ERR_INTERNAL, "decoder: the model has no parameter %s", name);
}

static ts_status alloc2(struct ts_backend *be, struct ts_tensor *t, enum ts_dtype dtype, int64_t d0,
                        int64_t d1) {
    const int64_t shape[2] = {d0, d1};
    return ts_op_alloc(be, t, dtype, 2, shape);
}

ts_status ts_decoder_create(ts_decoder_t **out, ts_gpt_t *gpt, int max_len) {
    *out = NULL;
    const struct ts_gpt_config *cfg = ts_gpt_config(gpt);
    if (ts_gpt_tp_size(gpt) > 1)
        return ts_error(TS_ERR_INVALID_ARG,
                        "decoder: the model is split over %d tensor-parallel ranks; decode from "
                        "a whole model on one process",
                        ts_gpt_tp_size(gpt));
    if (max_len < 1 || max_len > cfg->max_seq_len)
        return ts_error(TS_ERR_INVALID_ARG,
                        "decoder: length %d outside [1, %d] (the model's "
                        "positions)",
                        max_len, cfg->max_seq_len);
    struct ts_decoder *d = calloc(1, sizeof(*d));
    if (d == NULL)
        return ts_error(TS_ERR_OOM, "decoder: out of memory");
    d->gpt = gpt;
    d->be = ts_gpt_backend(gpt);
    d->L = cfg->num_layers;
    d->NH = cfg->num_heads;
    d->C = cfg->channels;
    d->V = cfg->vocab_size;
    d->Vp = cfg->padded_vocab_size;
    d->cap = max_len;
    ts_status st = TS_OK;
    d->w = calloc((size_t)d->L * W_PER_LAYER, sizeof(*d->w));
    if (d->w == NULL) {
        st = ts_error(TS_ERR_OOM, "decoder: out of memory");
        goto fail;
    }
    char name[64];
    for (int l = 0; l < d->L; l++)
        for (int k = 0; k < W_PER_LAYER; k++) {
            snprintf(name, sizeof(name), "h.%d.%s", l, layer_names[k]);
            TS_CHECK_GOTO(find_param(gpt, name, &d->w[l * W_PER_LAYER + k]), st, fail);
        }
    TS_CHECK_GOTO(find_param(gpt, "wte.weight", &d->wte), st, fail);
    TS_CHECK_GOTO(find_param(gpt, "wpe.weight", &d->wpe), st, fail);
    TS_CHECK_GOTO(find_param(gpt, "ln_f.weight", &d->lnfw), st, fail);
    TS_CHECK_GOTO(find_param(gpt, "ln_f.bias", &d->lnfb), st, fail);

    struct ts_backend *be = d->be;
    const int64_t C = d->C, S = d->cap;
    const int64_t cache_shape[3] = {d->L, S, 3 * C};
    const int64_t scratch_shape[3] = {1, d->NH, S};
    const int64_t one[1] = {1};
    TS_CHECK_GOTO(ts_op_alloc(be, &d->cache, TS_DTYPE_F32, 3, cache_shape), st, fail);
    TS_CHECK_GOTO(ts_op_alloc(be, &d->scratch, TS_DTYPE_F32, 3, scratch_shape), st, fail);
    TS_CHECK_GOTO(alloc2(be, &d->x, TS_DTYPE_F32, 1, C), st, fail);
    TS_CHECK_GOTO(alloc2(be, &d->x2, TS_DTYPE_F32, 1, C), st, fail);
    TS_CHECK_GOTO(alloc2(be, &d->ln, TS_DTYPE_F32, 1, C), st, fail);
    TS_CHECK_GOTO(alloc2(be, &d->att_y, TS_DTYPE_F32, 1, C), st, fail);
    TS_CHECK_GOTO(alloc2(be, &d->proj, TS_DTYPE_F32, 1, C), st, fail);
    TS_CHECK_GOTO(alloc2(be, &d->fch, TS_DTYPE_F32, 1, 4 * C), st, fail);
    TS_CHECK_GOTO(alloc2(be, &d->fch_gelu, TS_DTYPE_F32, 1, 4 * C), st, fail);
    TS_CHECK_GOTO(alloc2(be, &d->logits, TS_DTYPE_F32, 1, d->Vp), st, fail);
    TS_CHECK_GOTO(alloc2(be, &d->token, TS_DTYPE_I32, 1, 1), st, fail);
    TS_CHECK_GOTO(ts_op_alloc(be, &d->mean, TS_DTYPE_F32, 1, one), st, fail);
    TS_CHECK_GOTO(ts_op_alloc(be, &d->rstd, TS_DTYPE_F32, 1, one), st, fail);
    *out = d;
    return TS_OK;
fail:
    ts_decoder_destroy(d);
    return st;
}

void ts_decoder_destroy(ts_decoder_t *d) {
    if (d == NULL)
        return;
    struct ts_tensor *owned[] = {&d->cache, &d->scratch, &d->x,   &d->x2,       &d->ln,
                                 &d->att_y, &d->proj,    &d->fch, &d->fch_gelu, &d->logits,
                                 &d->token, &d->mean,    &d->rstd};
    for (size_t i = 0; i < sizeof(owned) / sizeof(owned[0]); i++)
        if (owned[i]->data != NULL)
            ts_op_free(d->be, owned[i]);
    free(d->w);
    free(d);
}

void ts_decoder_reset(ts_decoder_t *d) { d->len = 0; }
int ts_decoder_len(const ts_decoder_t *d) { return d->len; }
int ts_decoder_capacity(const ts_decoder_t *d) { return d->cap; }

/* One block for the row at position pos: x -> x (through x2). */
static ts_status block_step(ts_decoder_t *d, int l, int pos) {
    struct ts_backend *be = d->be;
    const struct ts_tensor *w = &d->w[l * W_PER_LAYER];
    const int64_t C3 = 3 * (int64_t)d->C;
    const int64_t row_shape[2] = {1, C3}, layer_shape[3] = {1, d->cap, C3};
    struct ts_tensor row, layer;
    TS_CHECK(ts_tensor_view(&row, &d->cache, ((int64_t)l * d->cap + pos) * C3, 2, row_shape));
    TS_CHECK(ts_tensor_view(&layer, &d->cache, (int64_t)l * d->cap * C3, 3, layer_shape));

    TS_CHECK(
        ts_op_layernorm_forward(be, &d->ln, &d->mean, &d->rstd, &d->x, &w[W_LN1W], &w[W_LN1B]));
    TS_CHECK(ts_op_matmul_forward(be, &row, &d->ln, &w[W_QKVW], &w[W_QKVB], TS_W_IN_OUT));
    TS_CHECK(ts_op_attention_decode(be, &d->att_y, &d->scratch, &layer, pos, d->NH));
    TS_CHECK(
        ts_op_matmul_forward(be, &d->proj, &d->att_y, &w[W_ATTPROJW], &w[W_ATTPROJB], TS_W_IN_OUT));
    TS_CHECK(ts_op_residual_forward(be, &d->x2, &d->x, &d->proj));
    TS_CHECK(
        ts_op_layernorm_forward(be, &d->ln, &d->mean, &d->rstd, &d->x2, &w[W_LN2W], &w[W_LN2B]));
    TS_CHECK(ts_op_matmul_forward(be, &d->fch, &d->ln, &w[W_FCW], &w[W_FCB], TS_W_IN_OUT));
    TS_CHECK(ts_op_gelu_forward(be, &d->fch_gelu, &d->fch));
    TS_CHECK(ts_op_matmul_forward(be, &d->proj, &d->fch_gelu, &w[W_FCPROJW], &w[W_FCPROJB],
                                  TS_W_IN_OUT));
    return ts_op_residual_forward(be, &d->x, &d->x2, &d->proj);
}

ts_status ts_decoder_step(ts_decoder_t *d, int32_t token, float *logits) {
    if (d->len >= d->cap)
        return ts_error(TS_ERR_INVALID_ARG, "decoder: the cache is full (%d positions)", d->cap);
    if (token < 0 || token >= d->V)
        return ts_error(TS_ERR_INVALID_ARG, "decoder: token %d outside the vocabulary [0, %d)",
                        token, d->V);
    struct ts_backend *be = d->be;
    const int pos = d->len;
    const int64_t C = d->C;
    TS_CHECK(ts_op_upload(be, &d->token, &token, sizeof(token)));
    const int64_t x3[3] = {1, 1, C}, wpe_row[2] = {1, C};
    struct ts_tensor x_btc, wpe_pos;
    TS_CHECK(ts_tensor_reshape(&x_btc, &d->x, 3, x3));
    TS_CHECK(ts_tensor_view(&wpe_pos, &d->wpe, pos * C, 2, wpe_row));
    TS_CHECK(ts_op_encoder_forward(be, &x_btc, &d->token, &d->wte, &wpe_pos));
    for (int l = 0; l < d->L; l++)
        TS_CHECK(block_step(d, l, pos));
    d->len++;
    if (logits == NULL)
        return TS_OK;
    TS_CHECK(ts_op_layernorm_forward(be, &d->ln, &d->mean, &d->rstd, &d->x, &d->lnfw, &d->lnfb));
    TS_CHECK(ts_op_matmul_forward(be, &d->logits, &d->ln, &d->wte, NULL, TS_W_OUT_IN));
    struct ts_tensor real;
    const int64_t v_shape[1] = {d->V};
    TS_CHECK(ts_tensor_view(&real, &d->logits, 0, 1, v_shape));
    return ts_op_download(be, logits, &real, (size_t)d->V * sizeof(float));
}

/* ---- sampling (host) ---- */

/* Descending by logit, ties to the lower id: a total order, so the sorted result is unique. */
static int by_logit_desc(const void *a, const void *b, void *arg) {
    const float *lg = arg;
    int i = *(const int *)a, j = *(const int *)b;
    float x = lg[i], y = lg[j];
    if (x != y)
        return x > y ? -1 : 1;
    return (i > j) - (i < j);
}

int ts_sample_token(float *logits, int V, const struct ts_sampling *s, uint64_t counter,
                    int *order) {
    int best = 0;
    for (int i = 1; i < V; i++)
        if (logits[i] > logits[best])
            best = i;
    if (s->temperature <= 0.0f)
        return best;
    for (int i = 0; i < V; i++)
        order[i] = i;
    qsort_r(order, (size_t)V, sizeof(int), by_logit_desc, logits);
    int keep = (s->top_k > 0 && s->top_k < V) ? s->top_k : V;
    /* probabilities of the kept tokens, in descending order, computed in double */
    double mx = (double)logits[order[0]], sum = 0.0;
    for (int r = 0; r < keep; r++) {
        double p = exp(((double)logits[order[r]] - mx) / (double)s->temperature);
        logits[order[r]] = (float)p;
        sum += p;
    }
    if (s->top_p > 0.0f && s->top_p < 1.0f) {
        double acc = 0.0;
        int r = 0;
        while (r < keep) {
            acc += (double)logits[order[r]] / sum;
            r++;
            if (acc >= (double)s->top_p)
                break;
        }
        keep = r;
        sum = 0.0;
        for (r = 0; r < keep; r++)
            sum += (double)logits[order[r]];
    }
    double u = (double)ts_rng_uniform(s->seed, counter) * sum, acc = 0.0;
    for (int r = 0; r < keep; r++) {
        acc += (double)logits[order[r]];
        if (u < acc)
            return order[r];
    }
    return order[keep - 1];
}
