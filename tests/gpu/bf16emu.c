/* bf16emu.c: the CPU backend behind a bf16 storage layer (bf16emu.h). */
#include "tests/gpu/bf16emu.h"

#include <stdlib.h>
#include <string.h>

#include "kernels/bf16.h"
#include "kernels/cpu/cpu_backend.h"

#define MAX_ARGS 10

/* f32 copies of the bf16 tensors of one call. */
struct conv {
    struct ts_tensor wide[MAX_ARGS];
    const struct ts_tensor *orig[MAX_ARGS];
    int n;
};

static struct ts_backend *inner(struct ts_backend *be) { return be->ctx; }

static const struct ts_tensor *W(struct conv *c, const struct ts_tensor *t) {
    if (!t || t->dtype != TS_DTYPE_BF16)
        return t;
    int64_t n = ts_tensor_numel(t);
    float *f = malloc((size_t)n * sizeof(float));
    if (!f) /* a test helper: handing the op a bf16 buffer as f32 would read out of bounds */
        abort();
    const uint16_t *h = t->data;
    for (int64_t i = 0; i < n; i++)
        f[i] = ts_f32_from_bf16(h[i]);
    struct ts_tensor *w = &c->wide[c->n];
    *w = *t;
    w->dtype = TS_DTYPE_F32;
    w->data = f;
    c->orig[c->n++] = t;
    return w;
}

static ts_status done(struct conv *c, ts_status st) {
    for (int k = 0; k < c->n; k++) {
        int64_t n = ts_tensor_numel(c->orig[k]);
        uint16_t *h = c->orig[k]->data;
        const float *f = c->wide[k].data;
        if (st == TS_OK)
            for (int64_t i = 0; i < n; i++)
                h[i] = ts_bf16_from_f32(f[i]);
        free(c->wide[k].data);
    }
    return st;
}

#define CALL(expr)                                                                                 \
    do {                                                                                           \
        struct conv c_ = {.n = 0};                                                                 \
        struct conv *c = &c_;                                                                      \
        ts_status st_ = (expr);                                                                    \
        return done(c, st_);                                                                       \
    } while (0)

static ts_status e_fill(struct ts_backend *be, const struct ts_tensor *t, float v) {
    CALL(inner(be)->fill(inner(be), W(c, t), v));
}
static ts_status e_fill_normal(struct ts_backend *be, const struct ts_tensor *t, float m, float s,
                               uint64_t seed, uint64_t ctr) {
    CALL(inner(be)->fill_normal(inner(be), W(c, t), m, s, seed, ctr));
}
static ts_status e_enc_f(struct ts_backend *be, const struct ts_tensor *o,
                         const struct ts_tensor *tok, const struct ts_tensor *wte,
                         const struct ts_tensor *wpe) {
    CALL(inner(be)->encoder_forward(inner(be), W(c, o), tok, W(c, wte), W(c, wpe)));
}
static ts_status e_enc_b(struct ts_backend *be, const struct ts_tensor *dwte,
                         const struct ts_tensor *dwpe, const struct ts_tensor *dout,
                         const struct ts_tensor *tok) {
    CALL(inner(be)->encoder_backward(inner(be), dwte, dwpe, W(c, dout), tok));
}
static ts_status e_enc_fs(struct ts_backend *be, const struct ts_tensor *o,
                          const struct ts_tensor *tok, const struct ts_tensor *wte,
                          const struct ts_tensor *wpe, int64_t begin) {
    CALL(inner(be)->encoder_forward_slice(inner(be), W(c, o), tok, W(c, wte), W(c, wpe), begin));
}
static ts_status e_enc_bs(struct ts_backend *be, const struct ts_tensor *dwte,
                          const struct ts_tensor *dwpe, const struct ts_tensor *dout,
                          const struct ts_tensor *tok, int64_t begin) {
    CALL(inner(be)->encoder_backward_slice(inner(be), dwte, dwpe, W(c, dout), tok, begin));
}
static ts_status e_ln_f(struct ts_backend *be, const struct ts_tensor *o, const struct ts_tensor *m,
                        const struct ts_tensor *r, const struct ts_tensor *x,
                        const struct ts_tensor *w, const struct ts_tensor *b) {
    CALL(inner(be)->layernorm_forward(inner(be), W(c, o), m, r, W(c, x), W(c, w), W(c, b)));
}
static ts_status e_ln_b(struct ts_backend *be, const struct ts_tensor *dx,
                        const struct ts_tensor *dw, const struct ts_tensor *db,
                        const struct ts_tensor *d, const struct ts_tensor *x,
                        const struct ts_tensor *w, const struct ts_tensor *m,
                        const struct ts_tensor *r) {
    CALL(inner(be)->layernorm_backward(inner(be), W(c, dx), dw, db, W(c, d), W(c, x), W(c, w), m,
                                       r));
}
static ts_status e_mm_f(struct ts_backend *be, const struct ts_tensor *o, const struct ts_tensor *x,
                        const struct ts_tensor *w, const struct ts_tensor *b, enum ts_wlayout l) {
    CALL(inner(be)->matmul_forward(inner(be), W(c, o), W(c, x), W(c, w), W(c, b), l));
}
static ts_status e_mm_b(struct ts_backend *be, const struct ts_tensor *dx,
                        const struct ts_tensor *dw, const struct ts_tensor *db,
                        const struct ts_tensor *d, const struct ts_tensor *x,
                        const struct ts_tensor *w, enum ts_wlayout l) {
    CALL(inner(be)->matmul_backward(inner(be), W(c, dx), dw, db, W(c, d), W(c, x), W(c, w), l));
}
static ts_status e_att_f(struct ts_backend *be, const struct ts_tensor *o,
                         const struct ts_tensor *a, const struct ts_tensor *qkv, int nh) {
    CALL(inner(be)->attention_forward(inner(be), W(c, o), W(c, a), W(c, qkv), nh));
}
static ts_status e_att_b(struct ts_backend *be, const struct ts_tensor *dqkv,
                         const struct ts_tensor *s, const struct ts_tensor *d,
                         const struct ts_tensor *qkv, const struct ts_tensor *a, int nh) {
    CALL(inner(be)->attention_backward(inner(be), W(c, dqkv), W(c, s), W(c, d), W(c, qkv), W(c, a),
                                       nh));
}
static ts_status e_flash_f(struct ts_backend *be, const struct ts_tensor *o,
                           const struct ts_tensor *lse, const struct ts_tensor *qkv, int nh) {
    CALL(inner(be)->flash_attention_forward(inner(be), W(c, o), lse, W(c, qkv), nh));
}
static ts_status e_flash_b(struct ts_backend *be, const struct ts_tensor *dqkv,
                           const struct ts_tensor *s, const struct ts_tensor *d,
                           const struct ts_tensor *qkv, const struct ts_tensor *o,
                           const struct ts_tensor *lse, int nh) {
    CALL(inner(be)->flash_attention_backward(inner(be), W(c, dqkv), s, W(c, d), W(c, qkv), W(c, o),
                                             lse, nh));
}
static ts_status e_att_d(struct ts_backend *be, const struct ts_tensor *o,
                         const struct ts_tensor *s, const struct ts_tensor *cache, int pos,
                         int nh) {
    CALL(inner(be)->attention_decode(inner(be), W(c, o), s, W(c, cache), pos, nh));
}
static ts_status e_gelu_f(struct ts_backend *be, const struct ts_tensor *o,
                          const struct ts_tensor *x) {
    CALL(inner(be)->gelu_forward(inner(be), W(c, o), W(c, x)));
}
static ts_status e_gelu_b(struct ts_backend *be, const struct ts_tensor *dx,
                          const struct ts_tensor *x, const struct ts_tensor *d) {
    CALL(inner(be)->gelu_backward(inner(be), W(c, dx), W(c, x), W(c, d)));
}
static ts_status e_res(struct ts_backend *be, const struct ts_tensor *o, const struct ts_tensor *a,
                       const struct ts_tensor *b) {
    CALL(inner(be)->residual_forward(inner(be), W(c, o), W(c, a), W(c, b)));
}
static ts_status e_xent(struct ts_backend *be, const struct ts_tensor *l,
                        const struct ts_tensor *lg, const struct ts_tensor *t, int v, float dl,
                        bool g) {
    CALL(inner(be)->softmax_xent(inner(be), l, W(c, lg), t, v, dl, g));
}
static ts_status e_xmax(struct ts_backend *be, const struct ts_tensor *mx,
                        const struct ts_tensor *lg, int valid) {
    CALL(inner(be)->xent_slice_max(inner(be), mx, W(c, lg), valid));
}
static ts_status e_xsum(struct ts_backend *be, const struct ts_tensor *st,
                        const struct ts_tensor *lg, const struct ts_tensor *mx,
                        const struct ts_tensor *t, int valid, int64_t begin) {
    CALL(inner(be)->xent_slice_sumexp(inner(be), st, W(c, lg), mx, t, valid, begin));
}
static ts_status e_xfin(struct ts_backend *be, const struct ts_tensor *l,
                        const struct ts_tensor *lg, const struct ts_tensor *t,
                        const struct ts_tensor *mx, const struct ts_tensor *st, int valid,
                        int64_t begin, float dl, bool g) {
    CALL(inner(be)->xent_from_stats(inner(be), l, W(c, lg), t, mx, st, valid, begin, dl, g));
}
static ts_status e_ss(struct ts_backend *be, const struct ts_tensor *o, const struct ts_tensor *x) {
    CALL(inner(be)->sum_squares(inner(be), o, W(c, x)));
}

/* cast and adamw_master take bf16 on the CPU backend already. */
static ts_status e_cast(struct ts_backend *be, const struct ts_tensor *d,
                        const struct ts_tensor *s) {
    return inner(be)->cast(inner(be), d, s);
}
static ts_status e_adamw(struct ts_backend *be, const struct ts_tensor *p,
                         const struct ts_tensor *g, const struct ts_tensor *m,
                         const struct ts_tensor *v, float lr, float b1, float b2, float eps,
                         float wd, float gs, int step) {
    return inner(be)->adamw(inner(be), p, g, m, v, lr, b1, b2, eps, wd, gs, step);
}
static ts_status e_adamw_master(struct ts_backend *be, const struct ts_tensor *p,
                                const struct ts_tensor *w, const struct ts_tensor *g,
                                const struct ts_tensor *m, const struct ts_tensor *v, float lr,
                                float b1, float b2, float eps, float wd, float gs, int step) {
    return inner(be)->adamw_master(inner(be), p, w, g, m, v, lr, b1, b2, eps, wd, gs, step);
}

/* Memory, copies and events are the CPU's, which never look at their backend argument. */
static void e_destroy(struct ts_backend *be) {
    if (!be)
        return;
    ts_backend_destroy(inner(be));
    free(be);
}
static void e_info(struct ts_backend *be, struct ts_backend_info *out) {
    inner(be)->info(inner(be), out);
    memcpy(out->name, "bf16emu", 8);
}

ts_status bf16emu_create(struct ts_backend **out) {
    *out = NULL;
    struct ts_backend *cpu = NULL;
    struct ts_cpu_options o = {.threads = 0, .blas = TS_BLAS_REFERENCE};
    TS_CHECK(ts_cpu_backend_create(&cpu, &o));
    struct ts_backend *be = malloc(sizeof *be);
    if (!be) {
        ts_backend_destroy(cpu);
        return ts_error(TS_ERR_OOM, "bf16emu: out of memory");
    }
    *be = *cpu; /* memory, copies, events: functions that ignore their backend argument */
    be->name = "bf16emu";
    be->ctx = cpu;
    be->bf16 = true;
    be->destroy = e_destroy;
    be->info = e_info;
    be->fill = e_fill;
    be->fill_normal = e_fill_normal;
    be->encoder_forward = e_enc_f;
    be->encoder_backward = e_enc_b;
    be->encoder_forward_slice = e_enc_fs;
    be->encoder_backward_slice = e_enc_bs;
    be->layernorm_forward = e_ln_f;
    be->layernorm_backward = e_ln_b;
    be->matmul_forward = e_mm_f;
    be->matmul_backward = e_mm_b;
    be->attention_forward = e_att_f;
    be->attention_backward = e_att_b;
    be->attention_decode = e_att_d;
    be->flash_attention_forward = e_flash_f;
    be->flash_attention_backward = e_flash_b;
    be->gelu_forward = e_gelu_f;
    be->gelu_backward = e_gelu_b;
    be->residual_forward = e_res;
    be->softmax_xent = e_xent;
    be->xent_slice_max = e_xmax;
    be->xent_slice_sumexp = e_xsum;
    be->xent_from_stats = e_xfin;
    be->sum_squares = e_ss;
    be->cast = e_cast;
    be->adamw = e_adamw;
    be->adamw_master = e_adamw_master;
    *out = be;
    return TS_OK;
}
