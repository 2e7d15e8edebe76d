/* gpt.c: the GPT-2 model as a sequence of backend ops.
 *
 * The parameter table is built once from the config; parameters and gradients are two flat
 * buffers and every tensor is a view at its table offset. Activations live in one arena sized
 * at create time for (max_batch, max_seq); a smaller micro-batch uses the leading part of each
 * region, so nothing is allocated per step. This file never touches tensor memory itself: data
 * moves only through ts_op_* calls, which is what lets a device backend run the same code. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/bf16.h"
#include "kernels/ops.h"
#include "trainer/gpt.h"

/* The per-layer tensors, in table order after wte and wpe. */
enum {
    P_LN1W,
    P_LN1B,
    P_QKVW,
    P_QKVB,
    P_ATTPROJW,
    P_ATTPROJB,
    P_LN2W,
    P_LN2B,
    P_FCW,
    P_FCB,
    P_FCPROJW,
    P_FCPROJB,
    P_PER_LAYER,
};

/* Activation regions of the arena. Per-layer regions hold L copies (kept for backward); the
 * others are reused by every layer. */
enum act {
    A_ENCODED,  /* (B,T,C) */
    A_LN1,      /* (L,B,T,C) */
    A_LN1_MEAN, /* (L,B,T) */
    A_LN1_RSTD, /* (L,B,T) */
    A_QKV,      /* (L,B,T,3C) */
    A_ATTY,     /* (L,B,T,C) */
    A_ATT,      /* (L,B,NH,T,T); flash attention: lse (L,B,NH,T) f32 instead */
    A_RES2,     /* (L,B,T,C) */
    A_LN2,      /* (L,B,T,C) */
    A_LN2_MEAN, /* (L,B,T) */
    A_LN2_RSTD, /* (L,B,T) */
    A_FCH,      /* (L,B,T,4C) */
    A_FCH_GELU, /* (L,B,T,4C) */
    A_RES3,     /* (L,B,T,C) */
    A_PROJ,     /* (B,T,C) scratch: attention or MLP projection before the residual add */
    A_LNF,      /* (B,T,C) */
    A_LNF_MEAN, /* (B,T) */
    A_LNF_RSTD, /* (B,T) */
    A_LOGITS,   /* (B,T,Vl); dlogits in place after softmax_xent with a gradient */
    A_XMAX,     /* (B,T) f32: each row's max over the vocabulary (tp > 1 only) */
    A_XSTATS,   /* (B,T,2) f32: sum of exponentials, target logit (tp > 1 only) */
    A_LOSSES,   /* (B,T) */
    A_DRES,     /* (B,T,C) gradient of the residual stream */
    A_DLN,      /* (B,T,C) gradient of a layernorm's output */
    A_DATTY,    /* (B,T,C) */
    A_DQKV,     /* (B,T,3C) */
    A_DATT,     /* (B,NH,T,T) scratch of attention backward; flash: (B,NH,T) f32 */
    A_DFCH,     /* (B,T,4C) */
    A_COUNT,
};

struct ts_gpt {
    struct ts_gpt_config cfg;
    struct ts_backend *be;
    int max_batch, max_seq;
    /* The backend's flash attention pair runs (ts_op_flash_attention_usable at create): the
     * arena keeps each row's log-sum-exp instead of the (T,T) probabilities. */
    bool flash;
    /* Tensor parallelism (tp.size 1: none). Cl = C/tp channels and NHl = NH/tp heads are this
     * rank's share of attention; FCl = 4C/tp of the MLP. Vl = Vp/tp rows of wte from row
     * vocab_begin, of which the first `valid` are real tokens. */
    struct ts_gpt_tp tp;
    int64_t Cl, NHl, Vl, vocab_begin;
    int valid;
    ts_event_t *tp_ready;
    int64_t tp_calls, tp_bytes; /* what this rank handed the group (ts_gpt_tp_traffic) */

    struct ts_param_info *table; /* num_tensors entries */
    int num_tensors;
    int64_t num_params;
    struct ts_tensor params, grads;  /* flat (num_params) f32 */
    struct ts_tensor *pview, *gview; /* per-tensor views into params and grads */

    struct ts_tensor arena;           /* activations: byte regions, each in its own dtype */
    int64_t act_off[A_COUNT];         /* byte offset of each region */
    int64_t act_stride[A_COUNT];      /* bytes of one layer's copy at (max_batch, max_seq) */
    struct ts_tensor tokens, targets; /* (max_batch * max_seq) i32 */
    float *host_losses;               /* (max_batch * max_seq) */

    ts_gpt_grad_hook hook; /* backward's progress callback (may be NULL) */
    void *hook_ctx;

    int fwd_B, fwd_T; /* shape of the last forward */
    bool grad_ready;  /* the last forward left dlogits for backward */
};

/* ---- config and parameter table ---- */

static ts_status check_dim(const char *name, int v, int lo, int hi) {
    if (v < lo || v > hi)
        return ts_error(TS_ERR_INVALID_ARG, "gpt config: %s must be in [%d, %d], got %d", name, lo,
                        hi, v);
    return TS_OK;
}

ts_status ts_gpt_config_finish(struct ts_gpt_config *cfg) {
    if (cfg == NULL)
        return ts_error(TS_ERR_INVALID_ARG, "gpt config: NULL");
    TS_CHECK(check_dim("max_seq_len", cfg->max_seq_len, 1, TS_GPT_MAX_SEQ_LEN));
    TS_CHECK(check_dim("vocab_size", cfg->vocab_size, 1, TS_GPT_MAX_VOCAB));
    TS_CHECK(check_dim("num_layers", cfg->num_layers, 1, TS_GPT_MAX_LAYERS));
    TS_CHECK(check_dim("num_heads", cfg->num_heads, 1, TS_GPT_MAX_HEADS));
    TS_CHECK(check_dim("channels", cfg->channels, 1, TS_GPT_MAX_CHANNELS));
    if (cfg->channels % cfg->num_heads != 0)
        return ts_error(TS_ERR_INVALID_ARG,
                        "gpt config: channels (%d) must be a multiple of num_heads (%d)",
                        cfg->channels, cfg->num_heads);
    if (cfg->dtype != TS_DTYPE_F32 && cfg->dtype != TS_DTYPE_BF16)
        return ts_error(TS_ERR_INVALID_ARG, "gpt config: dtype must be f32 or bf16, got %s",
                        ts_dtype_name(cfg->dtype));
    cfg->padded_vocab_size = ts_gpt_padded_vocab(cfg->vocab_size, 1);
    return TS_OK;
}

int ts_gpt_padded_vocab(int vocab_size, int tp) {
    int a = 128, b = tp < 1 ? 1 : tp; /* lcm(128, tp) = 128 * tp / gcd */
    while (b != 0) {
        const int r = a % b;
        a = b;
        b = r;
    }
    const int64_t m = 128 * (int64_t)(tp < 1 ? 1 : tp) / a;
    return (int)((vocab_size + m - 1) / m * m);
}

/* Within the limits above these cannot overflow (Vp*C <= 2^32, 12*L*C*C < 2^46), but the
 * arithmetic is checked anyway so a future limit cannot silently wrap it. */
static bool mul64(int64_t a, int64_t b, int64_t *out) { return !__builtin_mul_overflow(a, b, out); }
static bool add64(int64_t a, int64_t b, int64_t *out) { return !__builtin_add_overflow(a, b, out); }

ts_status ts_gpt_config_num_params(const struct ts_gpt_config *cfg, int64_t *out) {
    struct ts_gpt_config c = *cfg;
    TS_CHECK(ts_gpt_config_finish(&c));
    const int64_t C = c.channels;
    /* per layer: 2 layernorms (4C), qkv (3C*C + 3C), proj (C*C + C), fc (4C*C + 4C),
     * fcproj (4C*C + C) = 12*C*C + 13*C */
    int64_t layer, all, emb, t;
    bool ok = mul64(12 * C, C, &layer) && add64(layer, 13 * C, &layer) &&
              mul64(layer, c.num_layers, &all) && mul64(c.padded_vocab_size, C, &emb) &&
              mul64(c.max_seq_len, C, &t) && add64(emb, t, &emb) && add64(all, emb, &all) &&
              add64(all, 2 * C, &all);
    if (!ok)
        return ts_error(TS_ERR_INVALID_ARG, "gpt config: the parameter count overflows int64");
    *out = all;
    return TS_OK;
}

/* A tensor split over tp: the split dimension shrinks by tp, global_shape keeps the whole. */
static void add_param(struct ts_param_info *p, int64_t *offset, const char *name, int ndim,
                      int64_t d0, int64_t d1, bool decay, float std, float value, int split_dim,
                      int groups, int tp) {
    memset(p, 0, sizeof(*p));
    for (int i = 0; i < TS_MAX_DIMS; i++)
        p->global_shape[i] = 1;
    p->global_shape[0] = d0;
    if (ndim == 2)
        p->global_shape[1] = d1;
    p->split_dim = tp > 1 ? split_dim : -1;
    p->split_groups = groups;
    if (p->split_dim == 0)
        d0 /= tp;
    else if (p->split_dim == 1)
        d1 /= tp;
    snprintf(p->name, sizeof(p->name), "%s", name);
    p->ndim = ndim;
    for (int i = 0; i < TS_MAX_DIMS; i++)
        p->shape[i] = 1;
    p->shape[0] = d0;
    if (ndim == 2)
        p->shape[1] = d1;
    p->numel = ndim == 2 ? d0 * d1 : d0;
    p->offset = *offset;
    p->decay = decay;
    p->init_std = std;
    p->init_value = value;
    *offset += p->numel;
}

/* Matrices (wte, wpe and the four projections of each block) take weight decay, as in the
 * GPT-2 reproductions (nanoGPT, llm.c: every 2-D tensor); biases and layernorms do not. */
static void build_table(struct ts_gpt *g) {
    const struct ts_gpt_config *c = &g->cfg;
    const int64_t C = c->channels, L = c->num_layers;
    const float std = 0.02f, res_std = (float)(0.02 / sqrt(2.0 * (double)L));
    const int tp = g->tp.size;
    struct ts_param_info *t = g->table;
    int64_t off = 0;
    char name[64];
    add_param(t++, &off, "wte.weight", 2, c->padded_vocab_size, C, true, std, 0, 0, 1, tp);
    add_param(t++, &off, "wpe.weight", 2, c->max_seq_len, C, true, std, 0, -1, 1, tp);
    for (int l = 0; l < L; l++) {
#define LAYER_PARAM(suffix, ndim, d0, d1, decay, s, v, split, groups)                              \
    do {                                                                                           \
        snprintf(name, sizeof(name), "h.%d.%s", l, suffix);                                        \
        add_param(t++, &off, name, ndim, d0, d1, decay, s, v, split, groups, tp);                  \
    } while (0)
        LAYER_PARAM("ln_1.weight", 1, C, 0, false, 0, 1, -1, 1);
        LAYER_PARAM("ln_1.bias", 1, C, 0, false, 0, 0, -1, 1);
        LAYER_PARAM("attn.c_attn.weight", 2, C, 3 * C, true, std, 0, 1, 3);
        LAYER_PARAM("attn.c_attn.bias", 1, 3 * C, 0, false, 0, 0, 0, 3);
        LAYER_PARAM("attn.c_proj.weight", 2, C, C, true, res_std, 0, 0, 1);
        LAYER_PARAM("attn.c_proj.bias", 1, C, 0, false, 0, 0, -1, 1);
        LAYER_PARAM("ln_2.weight", 1, C, 0, false, 0, 1, -1, 1);
        LAYER_PARAM("ln_2.bias", 1, C, 0, false, 0, 0, -1, 1);
        LAYER_PARAM("mlp.c_fc.weight", 2, C, 4 * C, true, std, 0, 1, 1);
        LAYER_PARAM("mlp.c_fc.bias", 1, 4 * C, 0, false, 0, 0, 0, 1);
        LAYER_PARAM("mlp.c_proj.weight", 2, 4 * C, C, true, res_std, 0, 0, 1);
        LAYER_PARAM("mlp.c_proj.bias", 1, C, 0, false, 0, 0, -1, 1);
#undef LAYER_PARAM
    }
    add_param(t++, &off, "ln_f.weight", 1, C, 0, false, 0, 1, -1, 1, tp);
    add_param(t++, &off, "ln_f.bias", 1, C, 0, false, 0, 0, -1, 1, tp);
    g->num_params = off;
}

/* A view of base's memory `elem_off` elements (of base's dtype) in; pointer arithmetic only,
 * never a dereference. */
static struct ts_tensor elem_at(const struct ts_tensor *base, int64_t elem_off) {
    struct ts_tensor t = *base;
    t.data = (char *)base->data + (size_t)elem_off * ts_dtype_size(base->dtype);
    return t;
}

static struct ts_tensor shaped(struct ts_tensor t, int ndim, int64_t d0, int64_t d1, int64_t d2,
                               int64_t d3) {
    const int64_t d[TS_MAX_DIMS] = {d0, d1, d2, d3};
    t.ndim = ndim;
    for (int i = 0; i < TS_MAX_DIMS; i++)
        t.shape[i] = i < ndim ? d[i] : 1;
    return t;
}

static void build_views(struct ts_gpt *g) {
    for (int i = 0; i < g->num_tensors; i++) {
        const struct ts_param_info *p = &g->table[i];
        g->pview[i] = shaped(elem_at(&g->params, p->offset), p->ndim, p->shape[0], p->shape[1],
                             p->shape[2], p->shape[3]);
        g->gview[i] = shaped(elem_at(&g->grads, p->offset), p->ndim, p->shape[0], p->shape[1],
                             p->shape[2], p->shape[3]);
    }
}

/* ---- the activation arena ---- */

static bool act_per_layer(int a) {
    switch (a) {
    case A_LN1:
    case A_LN1_MEAN:
    case A_LN1_RSTD:
    case A_QKV:
    case A_ATTY:
    case A_ATT:
    case A_RES2:
    case A_LN2:
    case A_LN2_MEAN:
    case A_LN2_RSTD:
    case A_FCH:
    case A_FCH_GELU:
    case A_RES3:
        return true;
    default:
        return false;
    }
}

/* Elements of one copy of region `a` for a (B,T) micro-batch. */
static int64_t act_numel(const struct ts_gpt *g, int a, int64_t B, int64_t T) {
    const int64_t C = g->cfg.channels, Cl = g->Cl, NH = g->NHl, BT = B * T;
    switch (a) {
    case A_ATTY:
    case A_DATTY:
        return BT * Cl;
    case A_LN1_MEAN:
    case A_LN1_RSTD:
    case A_LN2_MEAN:
    case A_LN2_RSTD:
    case A_LNF_MEAN:
    case A_LNF_RSTD:
    case A_LOSSES:
        return BT;
    case A_QKV:
    case A_DQKV:
        return BT * 3 * Cl;
    case A_FCH:
    case A_FCH_GELU:
    case A_DFCH:
        return BT * 4 * Cl;
    case A_ATT:
    case A_DATT:
        return g->flash ? B * NH * T : B * NH * T * T;
    case A_LOGITS:
        return BT * g->Vl;
    case A_XMAX:
        return g->tp.size > 1 ? BT : 0;
    case A_XSTATS:
        return g->tp.size > 1 ? 2 * BT : 0;
    default:
        return BT * C;
    }
}

/* Layernorm statistics and losses stay f32 whatever the model's dtype (backend.h). */
static enum ts_dtype act_dtype(const struct ts_gpt *g, int a) {
    switch (a) {
    case A_LN1_MEAN:
    case A_LN1_RSTD:
    case A_LN2_MEAN:
    case A_LN2_RSTD:
    case A_LNF_MEAN:
    case A_LNF_RSTD:
    case A_LOSSES:
    case A_XMAX:
    case A_XSTATS:
        return TS_DTYPE_F32;
    case A_ATT:
    case A_DATT:
        return g->flash ? TS_DTYPE_F32 : g->cfg.dtype;
    default:
        return g->cfg.dtype;
    }
}

/* Regions are packed back to back in f32 models (the layout the CPU results were checked on);
 * with a 2-byte dtype every copy starts on 256 bytes, so f32 regions stay aligned and cuBLASLt
 * sees aligned matrices. *total is in bytes; a plan whose size overflows int64 fails. */
static ts_status plan_arena(struct ts_gpt *g, int64_t *total) {
    const int64_t align = g->cfg.dtype == TS_DTYPE_F32 ? 4 : 256;
    const int64_t B = g->max_batch, T = g->max_seq, C = g->cfg.channels;
    int64_t off = 0, bt, probe;
    /* act_numel's largest products: B*NH*T*T and B*T*max(4C, Vp), each times a dtype size */
    bool ok = mul64(B, T, &bt) && mul64(bt, g->cfg.num_heads, &probe) && mul64(probe, T, &probe) &&
              mul64(probe, 8, &probe) && mul64(bt, 4 * C + g->cfg.padded_vocab_size, &probe) &&
              mul64(probe, 8, &probe);
    for (int a = 0; ok && a < A_COUNT; a++) {
        int64_t bytes, copies;
        ok = mul64(act_numel(g, a, B, T), (int64_t)ts_dtype_size(act_dtype(g, a)), &bytes) &&
             add64(bytes, align - 1, &bytes);
        g->act_stride[a] = bytes / align * align;
        g->act_off[a] = off;
        ok = ok && mul64(g->act_stride[a], act_per_layer(a) ? g->cfg.num_layers : 1, &copies) &&
             add64(off, copies, &off);
    }
    if (!ok)
        return ts_error(TS_ERR_INVALID_ARG,
                        "gpt create: the activations of batch %d x %d overflow int64 bytes; lower "
                        "the batch or the sequence length",
                        g->max_batch, g->max_seq);
    *total = off;
    return TS_OK;
}

/* Region `a` (layer l for per-layer regions) shaped for the current micro-batch: the leading
 * elements of the region, so a smaller (B,T) is still contiguous. */
static struct ts_tensor act(const struct ts_gpt *g, int a, int l, int ndim, int64_t d0, int64_t d1,
                            int64_t d2, int64_t d3) {
    const int64_t off = g->act_off[a] + (act_per_layer(a) ? (int64_t)l * g->act_stride[a] : 0);
    struct ts_tensor t = g->arena;
    t.data = (char *)g->arena.data + off;
    t.dtype = act_dtype(g, a);
    return shaped(t, ndim, d0, d1, d2, d3);
}

/* The common shapes: (N,C)-like rows, (N) vectors, (B,T,X) and (B,NH,T,T). */
#define ACT2(a, l, w) act(g, (a), (l), 2, (int64_t)B *T, (w), 1, 1)
#define ACT1(a, l) act(g, (a), (l), 1, (int64_t)B *T, 1, 1, 1)
#define ACT3(a, l, w) act(g, (a), (l), 3, B, T, (w), 1)
#define ACTATT(a, l) act(g, (a), (l), 4, B, g->NHl, T, T)
#define ACTLSE(a, l) act(g, (a), (l), 3, B, g->NHl, T, 1)

/* ---- lifetime ---- */

ts_status ts_gpt_create(ts_gpt_t **out, const struct ts_gpt_config *cfg, struct ts_backend *be,
                        int max_batch, int max_seq) {
    return ts_gpt_create_tp(out, cfg, be, max_batch, max_seq, NULL);
}

ts_status ts_gpt_create_tp(ts_gpt_t **out, const struct ts_gpt_config *cfg, struct ts_backend *be,
                           int max_batch, int max_seq, const struct ts_gpt_tp *tp) {
    if (out == NULL)
        return ts_error(TS_ERR_INVALID_ARG, "gpt create: out is NULL");
    *out = NULL;
    if (cfg == NULL || be == NULL)
        return ts_error(TS_ERR_INVALID_ARG, "gpt create: config and backend are required");
    struct ts_gpt_config c = *cfg;
    TS_CHECK(ts_gpt_config_finish(&c));
    if (max_batch < 1)
        return ts_error(TS_ERR_INVALID_ARG, "gpt create: max_batch must be >= 1, got %d",
                        max_batch);
    if (max_seq < 1 || max_seq > c.max_seq_len)
        return ts_error(TS_ERR_INVALID_ARG,
                        "gpt create: max_seq must be in [1, max_seq_len = %d], got %d",
                        c.max_seq_len, max_seq);
    const struct ts_gpt_tp one = {.size = 1, .rank = 0};
    if (tp == NULL || tp->size == 1)
        tp = &one;
    if (tp->size < 1 || tp->rank < 0 || tp->rank >= tp->size ||
        (tp->size > 1 && (!tp->all_reduce || !tp->all_reduce_max)))
        return ts_error(TS_ERR_INVALID_ARG, "gpt create: bad tensor-parallel group (rank %d of %d)",
                        tp->rank, tp->size);
    if (c.num_heads % tp->size != 0)
        return ts_error(TS_ERR_INVALID_ARG,
                        "gpt create: --tp %d does not divide the %d attention heads (each "
                        "tensor-parallel rank holds NH/tp heads)",
                        tp->size, c.num_heads);
    if (tp->size > 1 && (!be->encoder_forward_slice || !be->encoder_backward_slice ||
                         !be->xent_slice_max || !be->xent_slice_sumexp || !be->xent_from_stats))
        return ts_error(TS_ERR_UNSUPPORTED,
                        "gpt create: backend '%s' has no vocabulary-parallel embedding and "
                        "cross-entropy, which --tp %d needs; use the CPU backend",
                        be->name ? be->name : "?", tp->size);
    c.padded_vocab_size = ts_gpt_padded_vocab(c.vocab_size, tp->size);

    ts_status st = TS_OK;
    struct ts_gpt *g = calloc(1, sizeof(*g));
    if (g == NULL)
        return ts_error(TS_ERR_OOM, "gpt create: out of memory");
    g->cfg = c;
    g->be = be;
    g->max_batch = max_batch;
    g->max_seq = max_seq;
    g->tp = *tp;
    g->Cl = c.channels / tp->size;
    g->NHl = c.num_heads / tp->size;
    g->Vl = c.padded_vocab_size / tp->size;
    g->vocab_begin = tp->rank * g->Vl;
    const int64_t valid = c.vocab_size - g->vocab_begin;
    g->valid = (int)(valid < 0 ? 0 : valid > g->Vl ? g->Vl : valid);
    g->flash = ts_op_flash_attention_usable(be, c.channels / c.num_heads, c.dtype);
    int64_t arena_bytes = 0;
    TS_CHECK_GOTO(plan_arena(g, &arena_bytes), st, fail);
    g->num_tensors = 2 + P_PER_LAYER * c.num_layers + 2;
    g->table = calloc((size_t)g->num_tensors, sizeof(*g->table));
    g->pview = calloc((size_t)g->num_tensors, sizeof(*g->pview));
    g->gview = calloc((size_t)g->num_tensors, sizeof(*g->gview));
    const int64_t BT = (int64_t)max_batch * max_seq;
    g->host_losses = malloc((size_t)BT * sizeof(float));
    if (g->table == NULL || g->pview == NULL || g->gview == NULL || g->host_losses == NULL) {
        st = ts_error(TS_ERR_OOM, "gpt create: out of memory for the parameter table");
        goto fail;
    }
    build_table(g);

    const int64_t n = g->num_params;
    TS_CHECK_GOTO(ts_op_alloc(be, &g->params, c.dtype, 1, &n), st, fail);
    TS_CHECK_GOTO(ts_op_alloc(be, &g->grads, TS_DTYPE_F32, 1, &n), st, fail);
    build_views(g);

    const int64_t arena_words = (arena_bytes + 3) / 4;
    TS_CHECK_GOTO(ts_op_alloc(be, &g->arena, TS_DTYPE_F32, 1, &arena_words), st, fail);
    TS_CHECK_GOTO(ts_op_alloc(be, &g->tokens, TS_DTYPE_I32, 1, &BT), st, fail);
    TS_CHECK_GOTO(ts_op_alloc(be, &g->targets, TS_DTYPE_I32, 1, &BT), st, fail);
    if (tp->size > 1)
        TS_CHECK_GOTO(ts_op_event_create(be, &g->tp_ready), st, fail);
    *out = g;
    return TS_OK;

fail:
    ts_error_wrap(st, "gpt create (L=%d, C=%d, Vp=%d, batch %d x %d)", c.num_layers, c.channels,
                  c.padded_vocab_size, max_batch, max_seq);
    ts_gpt_destroy(g);
    return st;
}

void ts_gpt_destroy(ts_gpt_t *g) {
    if (g == NULL)
        return;
    ts_op_event_destroy(g->be, g->tp_ready);
    ts_op_free(g->be, &g->params);
    ts_op_free(g->be, &g->grads);
    ts_op_free(g->be, &g->arena);
    ts_op_free(g->be, &g->tokens);
    ts_op_free(g->be, &g->targets);
    free(g->table);
    free(g->pview);
    free(g->gview);
    free(g->host_losses);
    free(g);
}

const struct ts_gpt_config *ts_gpt_config(const ts_gpt_t *g) { return &g->cfg; }
struct ts_backend *ts_gpt_backend(const ts_gpt_t *g) {
    return g->be;
}

const struct ts_param_info *ts_gpt_params(const ts_gpt_t *g, int *count) {
    if (count != NULL)
        *count = g->num_tensors;
    return g->table;
}

int64_t ts_gpt_num_params(const ts_gpt_t *g) { return g->num_params; }

int64_t ts_gpt_num_flop_params(const ts_gpt_t *g) {
    int64_t whole = 0;
    for (int i = 0; i < g->num_tensors; i++) {
        const struct ts_param_info *p = &g->table[i];
        whole += p->global_shape[0] * (p->ndim == 2 ? p->global_shape[1] : 1);
    }
    const int64_t C = g->cfg.channels;
    return whole - (int64_t)g->cfg.max_seq_len * C -
           (int64_t)(g->cfg.padded_vocab_size - g->cfg.vocab_size) * C;
}

void ts_gpt_tp_traffic(const ts_gpt_t *g, int64_t *calls, int64_t *bytes) {
    *calls = g->tp_calls;
    *bytes = g->tp_bytes;
}

int64_t ts_gpt_activation_bytes(const ts_gpt_t *g) { return (int64_t)ts_tensor_nbytes(&g->arena); }

const struct ts_tensor *ts_gpt_param_buffer(const ts_gpt_t *g) { return &g->params; }
int ts_gpt_tp_size(const ts_gpt_t *g) { return g->tp.size; }
int ts_gpt_tp_rank(const ts_gpt_t *g) { return g->tp.rank; }

void ts_gpt_tensor_runs(const ts_gpt_t *g, int i, ts_gpt_run_fn fn, void *ctx) {
    const struct ts_param_info *p = &g->table[i];
    const int64_t r = g->tp.rank;
    if (p->split_dim < 0) {
        fn(ctx, 0, 0, p->numel);
        return;
    }
    const int64_t k = p->split_groups;
    if (p->split_dim == 0) { /* rows: each group's share is one run */
        const int64_t cols = p->ndim == 2 ? p->shape[1] : 1;
        const int64_t grows = p->global_shape[0] / k, lrows = p->shape[0] / k;
        for (int64_t j = 0; j < k; j++)
            fn(ctx, j * lrows * cols, (j * grows + r * lrows) * cols, lrows * cols);
        return;
    }
    const int64_t gcols = p->global_shape[1], lcols = p->shape[1];
    const int64_t ggrp = gcols / k, lgrp = lcols / k;
    for (int64_t row = 0; row < p->shape[0]; row++)
        for (int64_t j = 0; j < k; j++)
            fn(ctx, row * lcols + j * lgrp, row * gcols + j * ggrp + r * lgrp, lgrp);
}
const struct ts_tensor *ts_gpt_grad_buffer(const ts_gpt_t *g) { return &g->grads; }

/* ---- initialisation ---- */

/* A split tensor draws each element from the counter it has at tp 1, so every tp gives the
 * same model: the tp-1 flat offsets are rebuilt by summing the whole tensors' sizes. */
struct init_ctx {
    ts_gpt_t *g;
    const struct ts_param_info *p;
    int64_t global_offset;
    uint64_t seed;
    ts_status st;
};

static void init_run(void *ctx, int64_t local, int64_t global, int64_t len) {
    struct init_ctx *c = ctx;
    if (c->st != TS_OK)
        return;
    struct ts_tensor run = shaped(elem_at(&c->g->params, c->p->offset + local), 1, len, 1, 1, 1);
    c->st =
        ts_op_fill_normal(c->g->be, &run, 0.0f, c->p->init_std, c->seed, c->global_offset + global);
}

ts_status ts_gpt_init(ts_gpt_t *g, uint64_t seed) {
    int64_t global_offset = 0;
    for (int i = 0; i < g->num_tensors; i++) {
        const struct ts_param_info *p = &g->table[i];
        int64_t whole = p->global_shape[0] * (p->ndim == 2 ? p->global_shape[1] : 1);
        if (i == 0) /* wte's tp-1 size: a tp that pads the vocabulary further moves no counter */
            whole = (int64_t)ts_gpt_padded_vocab(g->cfg.vocab_size, 1) * g->cfg.channels;
        if (p->split_dim >= 0 && p->init_std > 0) {
            struct init_ctx c = {g, p, global_offset, seed, TS_OK};
            ts_gpt_tensor_runs(g, i, init_run, &c);
            TS_CHECK(c.st);
        } else if (p->split_dim >= 0) {
            TS_CHECK(ts_op_fill(g->be, &g->pview[i], p->init_value));
        } else if (p->init_std > 0)
            TS_CHECK(
                ts_op_fill_normal(g->be, &g->pview[i], 0.0f, p->init_std, seed, global_offset));
        else
            TS_CHECK(ts_op_fill(g->be, &g->pview[i], p->init_value));
        global_offset += whole;
    }
    /* The padded rows of wte (this rank's rows from `valid` on) never meet a real token; keep
     * them 0 so they stay inert. */
    const int64_t C = g->cfg.channels;
    if (g->Vl > g->valid) {
        struct ts_tensor pad = shaped(elem_at(&g->params, g->table[0].offset + g->valid * C), 2,
                                      g->Vl - g->valid, C, 1, 1);
        TS_CHECK(ts_op_zero(g->be, &pad));
    }
    return TS_OK;
}

/* ---- forward ---- */

static ts_status check_ids(const int32_t *ids, int64_t n, int V, const char *what) {
    for (int64_t i = 0; i < n; i++)
        if (ids[i] < 0 || ids[i] >= V)
            return ts_error(TS_ERR_INVALID_ARG,
                            "gpt forward: %s id %d at position %lld is outside [0, %d)", what,
                            (int)ids[i], (long long)i, V);
    return TS_OK;
}

/* Megatron's g (forward) and f (backward): the sum over the tp group of a row-parallel matmul's
 * output or a column-parallel input's gradient. Never called at tp 1. */
static ts_status tp_reduce(ts_gpt_t *g, const struct ts_tensor *t, bool max) {
    TS_CHECK(ts_op_event_record(g->be, g->tp_ready));
    TS_CHECK(ts_op_event_sync(g->be, g->tp_ready));
    g->tp_calls++;
    g->tp_bytes += (int64_t)ts_tensor_nbytes(t);
    return (max ? g->tp.all_reduce_max : g->tp.all_reduce)(g->tp.ctx, g->be, t);
}

static ts_status tp_sum(ts_gpt_t *g, const struct ts_tensor *t) { return tp_reduce(g, t, false); }

/* The vocabulary-parallel cross-entropy: softmax_xent over this rank's columns with the row max
 * and the (sum of exponentials, target logit) pairs all-reduced in between. */
static ts_status xent_tp(ts_gpt_t *g, int B, int T, const struct ts_tensor *losses,
                         const struct ts_tensor *logits, const struct ts_tensor *tgt, float dloss,
                         bool with_grad) {
    struct ts_backend *be = g->be;
    const struct ts_tensor rowmax = ACT1(A_XMAX, 0), stats = ACT2(A_XSTATS, 0, 2);
    TS_CHECK(ts_op_xent_slice_max(be, &rowmax, logits, g->valid));
    TS_CHECK(tp_reduce(g, &rowmax, true));
    TS_CHECK(ts_op_xent_slice_sumexp(be, &stats, logits, &rowmax, tgt, g->valid, g->vocab_begin));
    TS_CHECK(tp_sum(g, &stats));
    return ts_op_xent_from_stats(be, losses, logits, tgt, &rowmax, &stats, g->valid, g->vocab_begin,
                                 dloss, with_grad);
}

static ts_status block_forward(ts_gpt_t *g, int l, int B, int T) {
    struct ts_backend *be = g->be;
    const int64_t C = g->cfg.channels, Cl = g->Cl;
    const bool tp = g->tp.size > 1;
    const struct ts_tensor *w = &g->pview[2 + P_PER_LAYER * l];
    const struct ts_tensor res = l == 0 ? ACT2(A_ENCODED, 0, C) : ACT2(A_RES3, l - 1, C);
    const struct ts_tensor ln1 = ACT2(A_LN1, l, C), qkv = ACT2(A_QKV, l, 3 * Cl);
    const struct ts_tensor atty = ACT2(A_ATTY, l, Cl), proj = ACT2(A_PROJ, 0, C);
    const struct ts_tensor res2 = ACT2(A_RES2, l, C), ln2 = ACT2(A_LN2, l, C);
    const struct ts_tensor fch = ACT2(A_FCH, l, 4 * Cl), fch_gelu = ACT2(A_FCH_GELU, l, 4 * Cl);
    const struct ts_tensor res3 = ACT2(A_RES3, l, C);
    const struct ts_tensor qkv3 = ACT3(A_QKV, l, 3 * Cl), atty3 = ACT3(A_ATTY, l, Cl);
    const struct ts_tensor ln1_mean = ACT1(A_LN1_MEAN, l), ln1_rstd = ACT1(A_LN1_RSTD, l);
    const struct ts_tensor ln2_mean = ACT1(A_LN2_MEAN, l), ln2_rstd = ACT1(A_LN2_RSTD, l);
    /* A row-parallel bias is added once, by tp rank 0, before the sum over the group. */
    const struct ts_tensor *attproj_b = g->tp.rank == 0 ? &w[P_ATTPROJB] : NULL;
    const struct ts_tensor *fcproj_b = g->tp.rank == 0 ? &w[P_FCPROJB] : NULL;

    /* ln1 of the blocks after the first came with the residual add before it (below) */
    if (l == 0)
        TS_CHECK(
            ts_op_layernorm_forward(be, &ln1, &ln1_mean, &ln1_rstd, &res, &w[P_LN1W], &w[P_LN1B]));
    TS_CHECK(ts_op_matmul_forward(be, &qkv, &ln1, &w[P_QKVW], &w[P_QKVB], TS_W_IN_OUT));
    if (g->flash) {
        const struct ts_tensor lse = ACTLSE(A_ATT, l);
        TS_CHECK(ts_op_flash_attention_forward(be, &atty3, &lse, &qkv3, (int)g->NHl));
    } else {
        const struct ts_tensor att = ACTATT(A_ATT, l);
        TS_CHECK(ts_op_attention_forward(be, &atty3, &att, &qkv3, (int)g->NHl));
    }
    TS_CHECK(ts_op_matmul_forward(be, &proj, &atty, &w[P_ATTPROJW], attproj_b, TS_W_IN_OUT));
    if (tp)
        TS_CHECK(tp_sum(g, &proj));
    TS_CHECK(ts_op_residual_layernorm_forward(be, &res2, &ln2, &ln2_mean, &ln2_rstd, &res, &proj,
                                              &w[P_LN2W], &w[P_LN2B]));
    TS_CHECK(ts_op_matmul_forward_gelu(be, &fch_gelu, &fch, &ln2, &w[P_FCW], &w[P_FCB]));
    TS_CHECK(ts_op_matmul_forward(be, &proj, &fch_gelu, &w[P_FCPROJW], fcproj_b, TS_W_IN_OUT));
    if (tp)
        TS_CHECK(tp_sum(g, &proj));
    /* the residual add with the next layernorm: the next block's ln1, or the final one */
    const bool last = l == g->cfg.num_layers - 1;
    const struct ts_tensor *wn = &g->pview[2 + P_PER_LAYER * (l + 1)];
    const struct ts_tensor next_ln = last ? ACT2(A_LNF, 0, C) : ACT2(A_LN1, l + 1, C);
    const struct ts_tensor next_mean = last ? ACT1(A_LNF_MEAN, 0) : ACT1(A_LN1_MEAN, l + 1);
    const struct ts_tensor next_rstd = last ? ACT1(A_LNF_RSTD, 0) : ACT1(A_LN1_RSTD, l + 1);
    return ts_op_residual_layernorm_forward(be, &res3, &next_ln, &next_mean, &next_rstd, &res2,
                                            &proj, last ? &wn[0] : &wn[P_LN1W],
                                            last ? &wn[1] : &wn[P_LN1B]);
}

/* The ids (and targets, when given) into the model's token buffers. Without an event each copy
 * waits for the stream (any host memory); with one, both copies are queued from host_alloc'd
 * memory and `uploaded` is recorded after them, so the host never waits here. Either way the
 * copies follow the previous micro-step's backward on the stream, which still reads g->tokens. */
static ts_status upload_ids(ts_gpt_t *g, const struct ts_tensor *tokens, const int32_t *inputs,
                            const struct ts_tensor *tgt, const int32_t *targets,
                            ts_event_t *uploaded) {
    const size_t bytes = ts_tensor_nbytes(tokens);
    if (uploaded == NULL) {
        TS_CHECK(ts_op_upload(g->be, tokens, inputs, bytes));
        return targets ? ts_op_upload(g->be, tgt, targets, bytes) : TS_OK;
    }
    TS_CHECK(ts_op_upload_async(g->be, tokens, inputs, bytes));
    if (targets != NULL)
        TS_CHECK(ts_op_upload_async(g->be, tgt, targets, bytes));
    return ts_op_event_record(g->be, uploaded);
}

/* The forward both entry points share. With targets, the per-token losses go to `losses`
 * ((B*T) f32 in backend memory); nothing is downloaded. `uploaded`: upload_ids'. */
static ts_status forward(ts_gpt_t *g, const int32_t *inputs, const int32_t *targets, int B, int T,
                         float dloss, const struct ts_tensor *losses, ts_event_t *uploaded) {
    struct ts_backend *be = g->be;
    const int L = g->cfg.num_layers, V = g->cfg.vocab_size;
    const int64_t C = g->cfg.channels, Vl = g->Vl;
    g->grad_ready = false;
    if (inputs == NULL)
        return ts_error(TS_ERR_INVALID_ARG, "gpt forward: inputs are NULL");
    if (B < 1 || B > g->max_batch || T < 1 || T > g->max_seq)
        return ts_error(TS_ERR_INVALID_ARG,
                        "gpt forward: batch %d x %d exceeds the model's %d x %d (or is empty)", B,
                        T, g->max_batch, g->max_seq);
    if (!isfinite(dloss))
        return ts_error(TS_ERR_INVALID_ARG, "gpt forward: dloss is not finite");
    const int64_t BT = (int64_t)B * T;
    TS_CHECK(check_ids(inputs, BT, V, "input"));
    if (targets != NULL)
        TS_CHECK(check_ids(targets, BT, V, "target"));

    const struct ts_tensor tokens = shaped(g->tokens, 2, B, T, 1, 1);
    const struct ts_tensor tgt = shaped(g->targets, 1, BT, 1, 1, 1);
    TS_CHECK(upload_ids(g, &tokens, inputs, &tgt, targets, uploaded));
    const struct ts_tensor encoded = ACT3(A_ENCODED, 0, C);
    if (g->tp.size > 1) { /* this rank's rows (wpe added once, by tp rank 0), summed over tp */
        const struct ts_tensor *wpe = g->tp.rank == 0 ? &g->pview[1] : NULL;
        TS_CHECK(
            ts_op_encoder_forward_slice(be, &encoded, &tokens, &g->pview[0], wpe, g->vocab_begin));
        TS_CHECK(tp_sum(g, &encoded));
    } else {
        TS_CHECK(ts_op_encoder_forward(be, &encoded, &tokens, &g->pview[0], &g->pview[1]));
    }
    for (int l = 0; l < L; l++)
        TS_CHECK(block_forward(g, l, B, T));

    /* the last block's residual add computed the final layernorm too */
    const struct ts_tensor lnf = ACT2(A_LNF, 0, C), logits = ACT2(A_LOGITS, 0, Vl);
    TS_CHECK(ts_op_matmul_forward(be, &logits, &lnf, &g->pview[0], NULL, TS_W_OUT_IN));
    g->fwd_B = B;
    g->fwd_T = T;
    if (targets == NULL)
        return TS_OK;

    const bool with_grad = dloss != 0.0f;
    if (g->tp.size > 1)
        TS_CHECK(xent_tp(g, B, T, losses, &logits, &tgt, dloss, with_grad));
    else
        TS_CHECK(ts_op_softmax_xent(be, losses, &logits, &tgt, V, dloss, with_grad));
    g->grad_ready = with_grad;
    return TS_OK;
}

ts_status ts_gpt_forward(ts_gpt_t *g, const int32_t *inputs, const int32_t *targets, int B, int T,
                         float dloss, float *mean_loss) {
    const struct ts_tensor losses = ACT1(A_LOSSES, 0);
    TS_CHECK(forward(g, inputs, targets, B, T, dloss, &losses, NULL));
    if (targets != NULL && mean_loss != NULL) {
        const int64_t BT = (int64_t)B * T;
        TS_CHECK(ts_op_download(g->be, g->host_losses, &losses, (size_t)BT * sizeof(float)));
        double sum = 0;
        for (int64_t i = 0; i < BT; i++)
            sum += g->host_losses[i];
        *mean_loss = (float)(sum / (double)BT);
    }
    return TS_OK;
}

ts_status ts_gpt_forward_losses(ts_gpt_t *g, const int32_t *inputs, const int32_t *targets, int B,
                                int T, float dloss, const struct ts_tensor *losses,
                                ts_event_t *uploaded) {
    g->grad_ready = false;
    if (targets == NULL || losses == NULL)
        return ts_error(TS_ERR_INVALID_ARG, "gpt forward_losses: targets and losses are required");
    if (losses->dtype != TS_DTYPE_F32 || ts_tensor_numel(losses) != (int64_t)B * T)
        return ts_error(TS_ERR_INVALID_ARG,
                        "gpt forward_losses: losses must be %lld f32 elements (B*T), got %lld %s",
                        (long long)B * T, (long long)ts_tensor_numel(losses),
                        ts_dtype_name(losses->dtype));
    const struct ts_tensor flat = shaped(*losses, 1, (int64_t)B * T, 1, 1, 1);
    return forward(g, inputs, targets, B, T, dloss, &flat, uploaded);
}

/* ---- backward ---- */

/* On entry dres holds the gradient of layer l's output; on exit that of its input. */
static ts_status block_backward(ts_gpt_t *g, int l, int B, int T) {
    struct ts_backend *be = g->be;
    const int64_t C = g->cfg.channels, Cl = g->Cl;
    const bool tp = g->tp.size > 1;
    const struct ts_tensor *w = &g->pview[2 + P_PER_LAYER * l];
    const struct ts_tensor *dw = &g->gview[2 + P_PER_LAYER * l];
    const struct ts_tensor res = l == 0 ? ACT2(A_ENCODED, 0, C) : ACT2(A_RES3, l - 1, C);
    const struct ts_tensor ln1 = ACT2(A_LN1, l, C), atty = ACT2(A_ATTY, l, Cl);
    const struct ts_tensor res2 = ACT2(A_RES2, l, C), ln2 = ACT2(A_LN2, l, C);
    const struct ts_tensor fch = ACT2(A_FCH, l, 4 * Cl), fch_gelu = ACT2(A_FCH_GELU, l, 4 * Cl);
    const struct ts_tensor qkv3 = ACT3(A_QKV, l, 3 * Cl), atty3 = ACT3(A_ATTY, l, Cl);
    const struct ts_tensor ln1_mean = ACT1(A_LN1_MEAN, l), ln1_rstd = ACT1(A_LN1_RSTD, l);
    const struct ts_tensor ln2_mean = ACT1(A_LN2_MEAN, l), ln2_rstd = ACT1(A_LN2_RSTD, l);
    const struct ts_tensor dres = ACT2(A_DRES, 0, C), dln = ACT2(A_DLN, 0, C);
    const struct ts_tensor datty = ACT2(A_DATTY, 0, Cl), datty3 = ACT3(A_DATTY, 0, Cl);
    const struct ts_tensor dqkv = ACT2(A_DQKV, 0, 3 * Cl), dqkv3 = ACT3(A_DQKV, 0, 3 * Cl);
    const struct ts_tensor dfch = ACT2(A_DFCH, 0, 4 * Cl);

    /* MLP: the residual add passes dres through unchanged to both branches; the projection's
     * backward and GELU's are one op (dfch directly, no gradient of gelu(fch) kept). */
    TS_CHECK(ts_op_matmul_backward_dgelu(be, &dfch, &dw[P_FCPROJW], &dw[P_FCPROJB], &dres,
                                         &fch_gelu, &w[P_FCPROJW], &fch));
    TS_CHECK(ts_op_matmul_backward(be, &dln, &dw[P_FCW], &dw[P_FCB], &dfch, &ln2, &w[P_FCW],
                                   TS_W_IN_OUT));
    if (tp)
        TS_CHECK(tp_sum(g, &dln));
    TS_CHECK(ts_op_layernorm_backward(be, &dres, &dw[P_LN2W], &dw[P_LN2B], &dln, &res2, &w[P_LN2W],
                                      &ln2_mean, &ln2_rstd));
    /* Attention, the same way. */
    TS_CHECK(ts_op_matmul_backward(be, &datty, &dw[P_ATTPROJW], &dw[P_ATTPROJB], &dres, &atty,
                                   &w[P_ATTPROJW], TS_W_IN_OUT));
    if (g->flash) {
        const struct ts_tensor lse = ACTLSE(A_ATT, l), scratch = ACTLSE(A_DATT, 0);
        TS_CHECK(ts_op_flash_attention_backward(be, &dqkv3, &scratch, &datty3, &qkv3, &atty3, &lse,
                                                (int)g->NHl));
    } else {
        const struct ts_tensor att = ACTATT(A_ATT, l), datt = ACTATT(A_DATT, 0);
        TS_CHECK(ts_op_attention_backward(be, &dqkv3, &datt, &datty3, &qkv3, &att, (int)g->NHl));
    }
    TS_CHECK(ts_op_matmul_backward(be, &dln, &dw[P_QKVW], &dw[P_QKVB], &dqkv, &ln1, &w[P_QKVW],
                                   TS_W_IN_OUT));
    if (tp)
        TS_CHECK(tp_sum(g, &dln));
    TS_CHECK(ts_op_layernorm_backward(be, &dres, &dw[P_LN1W], &dw[P_LN1B], &dln, &res, &w[P_LN1W],
                                      &ln1_mean, &ln1_rstd));
    return TS_OK;
}

ts_status ts_gpt_backward(ts_gpt_t *g) {
    if (!g->grad_ready)
        return ts_error(TS_ERR_INVALID_ARG,
                        "gpt backward: the last forward had no targets or dloss 0 (no gradient)");
    g->grad_ready = false; /* dlogits are consumed; a second backward would double-count */
    struct ts_backend *be = g->be;
    const int B = g->fwd_B, T = g->fwd_T, L = g->cfg.num_layers;
    const int64_t C = g->cfg.channels;
    const struct ts_tensor *w = &g->pview[2 + P_PER_LAYER * L];
    const struct ts_tensor *dw = &g->gview[2 + P_PER_LAYER * L];
    const struct ts_tensor dlogits = ACT2(A_LOGITS, 0, g->Vl), lnf = ACT2(A_LNF, 0, C);
    const struct ts_tensor lnf_mean = ACT1(A_LNF_MEAN, 0), lnf_rstd = ACT1(A_LNF_RSTD, 0);
    const struct ts_tensor last = ACT2(A_RES3, L - 1, C);
    const struct ts_tensor dres = ACT2(A_DRES, 0, C), dln = ACT2(A_DLN, 0, C);

    TS_CHECK(ts_op_matmul_backward(be, &dln, &g->gview[0], NULL, &dlogits, &lnf, &g->pview[0],
                                   TS_W_OUT_IN));
    if (g->tp.size > 1) /* each rank's vocabulary columns contribute to lnf's gradient */
        TS_CHECK(tp_sum(g, &dln));
    TS_CHECK(ts_op_zero(be, &dres));
    TS_CHECK(ts_op_layernorm_backward(be, &dres, &dw[0], &dw[1], &dln, &last, &w[0], &lnf_mean,
                                      &lnf_rstd));
    if (g->hook != NULL)
        TS_CHECK(g->hook(g->hook_ctx, g->table[2 + P_PER_LAYER * L].offset));
    for (int l = L - 1; l >= 0; l--) {
        TS_CHECK(block_backward(g, l, B, T));
        if (g->hook != NULL)
            TS_CHECK(g->hook(g->hook_ctx, g->table[2 + P_PER_LAYER * l].offset));
    }
    const struct ts_tensor tokens = shaped(g->tokens, 2, B, T, 1, 1);
    const struct ts_tensor dres3 = ACT3(A_DRES, 0, C);
    if (g->tp.size > 1) /* this rank's rows of dwte; dwpe whole (replicated) on every rank */
        TS_CHECK(ts_op_encoder_backward_slice(be, &g->gview[0], &g->gview[1], &dres3, &tokens,
                                              g->vocab_begin));
    else
        TS_CHECK(ts_op_encoder_backward(be, &g->gview[0], &g->gview[1], &dres3, &tokens));
    if (g->hook != NULL)
        TS_CHECK(g->hook(g->hook_ctx, 0));
    return TS_OK;
}

void ts_gpt_set_grad_hook(ts_gpt_t *g, ts_gpt_grad_hook fn, void *ctx) {
    g->hook = fn;
    g->hook_ctx = ctx;
}

ts_status ts_gpt_logits(const ts_gpt_t *g, struct ts_tensor *out) {
    if (g->fwd_B == 0)
        return ts_error(TS_ERR_INVALID_ARG, "gpt logits: no forward has run yet");
    const int B = g->fwd_B, T = g->fwd_T;
    *out = ACT3(A_LOGITS, 0, g->Vl);
    return TS_OK;
}

ts_status ts_gpt_grad_sum_squares(ts_gpt_t *g, int64_t begin, int64_t end, bool split,
                                  double *sum_sq) {
    *sum_sq = 0;
    struct ts_tensor one;
    const int64_t n1 = 1;
    TS_CHECK(ts_op_alloc(g->be, &one, TS_DTYPE_F32, 1, &n1));
    ts_status st = TS_OK;
    for (int i = 0; i < g->num_tensors && st == TS_OK; i++) {
        const struct ts_param_info *p = &g->table[i];
        const int64_t b = p->offset > begin ? p->offset : begin;
        const int64_t e = p->offset + p->numel < end ? p->offset + p->numel : end;
        if ((p->split_dim >= 0) != split || e <= b)
            continue;
        const struct ts_tensor part = shaped(elem_at(&g->grads, b), 1, e - b, 1, 1, 1);
        float ss = 0;
        st = ts_op_sum_squares(g->be, &one, &part);
        if (st == TS_OK)
            st = ts_op_download(g->be, &ss, &one, sizeof(ss));
        *sum_sq += (double)ss;
    }
    ts_op_free(g->be, &one);
    return st;
}

ts_status ts_gpt_zero_grad(ts_gpt_t *g) { return ts_op_zero(g->be, &g->grads); }

/* ---- host copies ---- */

/* bf16 parameters travel as bf16 and are widened or rounded on the host (host memory the model
 * owns; tensor memory is still touched only through ops). */
ts_status ts_gpt_params_to_host(ts_gpt_t *g, float *host) {
    const size_t n = (size_t)g->num_params;
    if (g->params.dtype == TS_DTYPE_F32)
        return ts_op_download(g->be, host, &g->params, n * sizeof(float));
    uint16_t *tmp = malloc(n * sizeof(uint16_t));
    if (tmp == NULL)
        return ts_error(TS_ERR_OOM, "gpt params to host: out of memory");
    ts_status st = ts_op_download(g->be, tmp, &g->params, n * sizeof(uint16_t));
    for (size_t i = 0; st == TS_OK && i < n; i++)
        host[i] = ts_f32_from_bf16(tmp[i]);
    free(tmp);
    return st;
}

ts_status ts_gpt_params_from_host(ts_gpt_t *g, const float *host) {
    const size_t n = (size_t)g->num_params;
    if (g->params.dtype == TS_DTYPE_F32)
        return ts_op_upload(g->be, &g->params, host, n * sizeof(float));
    uint16_t *tmp = malloc(n * sizeof(uint16_t));
    if (tmp == NULL)
        return ts_error(TS_ERR_OOM, "gpt params from host: out of memory");
    for (size_t i = 0; i < n; i++)
        tmp[i] = ts_bf16_from_f32(host[i]);
    ts_status st = ts_op_upload(g->be, &g->params, tmp, n * sizeof(uint16_t));
    free(tmp);
    return st;
}

ts_status ts_gpt_grads_to_host(ts_gpt_t *g, float *host) {
    return ts_op_download(g->be, host, &g->grads, (size_t)g->num_params * sizeof(float));
}
