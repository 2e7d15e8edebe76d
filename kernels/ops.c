/* ops.c: the checked entry points of every op.
 *
 * Backends implement each op assuming valid arguments; this file is the one place that checks
 * them (NULL pointers, dtypes, ranks, shapes that must agree, overlapping outputs) and says which
 * op and which tensor is wrong, so every backend reports bad input the same way. Ops over rows
 * of C accept any rank: the last dim is C and the others multiply to N, so (B,T,C) and (B*T,C)
 * are both fine. */
#include "kernels/ops.h"

#include <stdio.h>

/* ---- helpers ---- */

struct shape_str {
    char s[80];
};

static struct shape_str shape_of(const struct ts_tensor *t) {
    struct shape_str r;
    size_t pos = 0;
    r.s[pos++] = '(';
    for (int i = 0; i < t->ndim && i < TS_MAX_DIMS; i++) {
        int n =
            snprintf(r.s + pos, sizeof r.s - pos, "%s%lld", i ? ", " : "", (long long)t->shape[i]);
        if (n < 0 || (size_t)n >= sizeof r.s - pos)
            break;
        pos += (size_t)n;
    }
    snprintf(r.s + pos, sizeof r.s - pos, ")");
    return r;
}

static ts_status need_backend(const char *op, const struct ts_backend *be, bool has_slot) {
    if (!be)
        return ts_error(TS_ERR_INVALID_ARG, "%s: backend is NULL", op);
    if (!has_slot)
        return ts_error(TS_ERR_UNSUPPORTED, "%s: backend '%s' does not implement this op", op,
                        be->name ? be->name : "?");
    return TS_OK;
}

/* A tensor that must be present, with memory, a sane shape and the given dtype. */
static ts_status need(const char *op, const char *name, const struct ts_tensor *t,
                      enum ts_dtype dtype) {
    if (!t)
        return ts_error(TS_ERR_INVALID_ARG, "%s: %s is NULL", op, name);
    if (t->ndim < 1 || t->ndim > TS_MAX_DIMS)
        return ts_error(TS_ERR_INVALID_ARG, "%s: %s has ndim %d, expected 1..%d", op, name, t->ndim,
                        TS_MAX_DIMS);
    for (int i = 0; i < t->ndim; i++)
        if (t->shape[i] < 1)
            return ts_error(TS_ERR_INVALID_ARG, "%s: %s has shape %s; every dim must be >= 1", op,
                            name, shape_of(t).s);
    if (t->dtype != dtype)
        return ts_error(TS_ERR_INVALID_ARG, "%s: %s has dtype %s, expected %s", op, name,
                        ts_dtype_name(t->dtype), ts_dtype_name(dtype));
    if (!t->data)
        return ts_error(TS_ERR_INVALID_ARG, "%s: %s has no memory (data is NULL)", op, name);
    return TS_OK;
}

/* The dtype an op computes in, taken from its main input t: f32, or bf16 where the backend
 * computes in bf16 (backend.h). Other activations and parameters of the op must match it. */
static ts_status compute_dtype(const char *op, const struct ts_backend *be, const char *name,
                               const struct ts_tensor *t, enum ts_dtype *dt) {
    if (!t)
        return ts_error(TS_ERR_INVALID_ARG, "%s: %s is NULL", op, name);
    if (t->dtype == TS_DTYPE_BF16 && !be->bf16)
        return ts_error(TS_ERR_UNSUPPORTED,
                        "%s: %s is bf16 but backend '%s' computes in f32 only (use fp32 precision "
                        "or a CUDA device)",
                        op, name, be->name ? be->name : "?");
    if (t->dtype != TS_DTYPE_F32 && t->dtype != TS_DTYPE_BF16)
        return ts_error(TS_ERR_INVALID_ARG, "%s: %s has dtype %s, expected f32 or bf16", op, name,
                        ts_dtype_name(t->dtype));
    *dt = t->dtype;
    return TS_OK;
}

static ts_status need_ndim(const char *op, const char *name, const struct ts_tensor *t, int ndim,
                           const char *legend) {
    if (t->ndim != ndim)
        return ts_error(TS_ERR_INVALID_ARG, "%s: %s has shape %s, expected %s", op, name,
                        shape_of(t).s, legend);
    return TS_OK;
}

static int64_t last_dim(const struct ts_tensor *t) { return t->shape[t->ndim - 1]; }
static int64_t rows(const struct ts_tensor *t) { return ts_tensor_numel(t) / last_dim(t); }

/* t must be (N, C) in the any-rank sense: last dim C and N rows. */
static ts_status need_rows(const char *op, const char *name, const struct ts_tensor *t, int64_t n,
                           int64_t c, const char *ref) {
    if (last_dim(t) != c || rows(t) != n)
        return ts_error(TS_ERR_INVALID_ARG,
                        "%s: %s has shape %s but %s has N = %lld rows of C = %lld", op, name,
                        shape_of(t).s, ref, (long long)n, (long long)c);
    return TS_OK;
}

static ts_status need_numel(const char *op, const char *name, const struct ts_tensor *t, int64_t n,
                            const char *what) {
    if (ts_tensor_numel(t) != n)
        return ts_error(TS_ERR_INVALID_ARG, "%s: %s has shape %s but %s = %lld", op, name,
                        shape_of(t).s, what, (long long)n);
    return TS_OK;
}

static ts_status need_same_shape(const char *op, const char *name, const struct ts_tensor *t,
                                 const char *ref_name, const struct ts_tensor *ref) {
    bool same = t->ndim == ref->ndim;
    for (int i = 0; same && i < t->ndim; i++)
        same = t->shape[i] == ref->shape[i];
    if (!same)
        return ts_error(TS_ERR_INVALID_ARG, "%s: %s has shape %s but %s has shape %s", op, name,
                        shape_of(t).s, ref_name, shape_of(ref).s);
    return TS_OK;
}

static bool overlap(const struct ts_tensor *a, const struct ts_tensor *b) {
    if (!a || !b || !a->data || !b->data)
        return false;
    const char *pa = a->data, *pb = b->data;
    return pa < pb + ts_tensor_nbytes(b) && pb < pa + ts_tensor_nbytes(a);
}

static ts_status need_disjoint(const char *op, const char *name_a, const struct ts_tensor *a,
                               const char *name_b, const struct ts_tensor *b) {
    if (overlap(a, b))
        return ts_error(TS_ERR_INVALID_ARG,
                        "%s: %s and %s overlap in memory; this op needs them "
                        "apart",
                        op, name_a, name_b);
    return TS_OK;
}

/* ---- memory ---- */

void ts_backend_destroy(struct ts_backend *be) {
    if (be && be->destroy)
        be->destroy(be);
}

ts_status ts_op_alloc(struct ts_backend *be, struct ts_tensor *out, enum ts_dtype dtype, int ndim,
                      const int64_t *shape) {
    const char *op = "alloc";
    if (!out)
        return ts_error(TS_ERR_INVALID_ARG, "%s: out is NULL", op);
    out->data = NULL;
    TS_CHECK(need_backend(op, be, be && be->alloc));
    if (ts_dtype_size(dtype) == 0)
        return ts_error(TS_ERR_INVALID_ARG, "%s: unknown dtype %d", op, (int)dtype);
    struct ts_tensor t = ts_tensor_1d(NULL, dtype, 1);
    if (ndim < 1 || ndim > TS_MAX_DIMS || !shape)
        return ts_error(TS_ERR_INVALID_ARG, "%s: ndim %d is outside 1..%d or shape is NULL", op,
                        ndim, TS_MAX_DIMS);
    t.ndim = ndim;
    for (int i = 0; i < TS_MAX_DIMS; i++)
        t.shape[i] = i < ndim ? shape[i] : 1;
    for (int i = 0; i < ndim; i++)
        if (shape[i] < 1)
            return ts_error(TS_ERR_INVALID_ARG, "%s: shape %s has a dim < 1", op, shape_of(&t).s);
    void *p = NULL;
    ts_status st = be->alloc(be, ts_tensor_nbytes(&t), &p);
    if (st != TS_OK)
        return ts_error_wrap(st, "%s: %s %s", op, shape_of(&t).s, ts_dtype_name(dtype));
    t.data = p;
    *out = t;
    return TS_OK;
}

void ts_op_free(struct ts_backend *be, struct ts_tensor *t) {
    if (!t)
        return;
    if (be && be->free && t->data)
        be->free(be, t->data);
    t->data = NULL;
}

static ts_status need_any(const char *op, const char *name, const struct ts_tensor *t) {
    if (!t)
        return ts_error(TS_ERR_INVALID_ARG, "%s: %s is NULL", op, name);
    return need(op, name, t, t->dtype);
}

ts_status ts_op_upload(struct ts_backend *be, const struct ts_tensor *dst, const void *host,
                       size_t bytes) {
    const char *op = "upload";
    TS_CHECK(need_backend(op, be, be && be->copy_h2d));
    TS_CHECK(need_any(op, "dst", dst));
    if (!host)
        return ts_error(TS_ERR_INVALID_ARG, "%s: host pointer is NULL", op);
    if (bytes != ts_tensor_nbytes(dst))
        return ts_error(TS_ERR_INVALID_ARG, "%s: %zu bytes given but dst %s %s holds %zu", op,
                        bytes, shape_of(dst).s, ts_dtype_name(dst->dtype), ts_tensor_nbytes(dst));
    return be->copy_h2d(be, dst->data, host, bytes);
}

ts_status ts_op_download(struct ts_backend *be, void *host, const struct ts_tensor *src,
                         size_t bytes) {
    const char *op = "download";
    TS_CHECK(need_backend(op, be, be && be->copy_d2h));
    TS_CHECK(need_any(op, "src", src));
    if (!host)
        return ts_error(TS_ERR_INVALID_ARG, "%s: host pointer is NULL", op);
    if (bytes != ts_tensor_nbytes(src))
        return ts_error(TS_ERR_INVALID_ARG, "%s: %zu bytes asked but src %s %s holds %zu", op,
                        bytes, shape_of(src).s, ts_dtype_name(src->dtype), ts_tensor_nbytes(src));
    return be->copy_d2h(be, host, src->data, bytes);
}

ts_status ts_op_copy(struct ts_backend *be, const struct ts_tensor *dst,
                     const struct ts_tensor *src) {
    const char *op = "copy";
    TS_CHECK(need_backend(op, be, be && be->copy_d2d));
    TS_CHECK(need_any(op, "dst", dst));
    TS_CHECK(need(op, "src", src, dst->dtype));
    TS_CHECK(need_numel(op, "src", src, ts_tensor_numel(dst), "numel(dst)"));
    if (dst->data == src->data)
        return TS_OK;
    TS_CHECK(need_disjoint(op, "dst", dst, "src", src));
    return be->copy_d2d(be, dst->data, src->data, ts_tensor_nbytes(dst));
}

ts_status ts_op_zero(struct ts_backend *be, const struct ts_tensor *t) {
    const char *op = "zero";
    TS_CHECK(need_backend(op, be, be && be->memset_zero));
    TS_CHECK(need_any(op, "t", t));
    return be->memset_zero(be, t->data, ts_tensor_nbytes(t));
}

ts_status ts_op_sync(struct ts_backend *be) {
    TS_CHECK(need_backend("sync", be, be && be->sync));
    return be->sync(be);
}

/* ---- initialisation ---- */

ts_status ts_op_fill(struct ts_backend *be, const struct ts_tensor *t, float value) {
    const char *op = "fill";
    TS_CHECK(need_backend(op, be, be && be->fill));
    enum ts_dtype dt = TS_DTYPE_F32;
    TS_CHECK(compute_dtype(op, be, "t", t, &dt));
    TS_CHECK(need(op, "t", t, dt));
    return be->fill(be, t, value);
}

ts_status ts_op_fill_normal(struct ts_backend *be, const struct ts_tensor *t, float mean, float std,
                            uint64_t seed, uint64_t counter) {
    const char *op = "fill_normal";
    TS_CHECK(need_backend(op, be, be && be->fill_normal));
    enum ts_dtype dt = TS_DTYPE_F32;
    TS_CHECK(compute_dtype(op, be, "t", t, &dt));
    TS_CHECK(need(op, "t", t, dt));
    if (!(std >= 0.0f))
        return ts_error(TS_ERR_INVALID_ARG, "%s: std is %g, expected >= 0", op, (double)std);
    return be->fill_normal(be, t, mean, std, seed, counter);
}

/* ---- encoder ---- */

/* tokens (B,T); wte (Vp,C); wpe (maxT,C) with T <= maxT; out/dout (B,T,C) in the any-rank sense */
/* out_dt is the activations' dtype, w_dt the tables' (the parameters, or f32 gradients). */
static ts_status check_encoder(const char *op, const struct ts_tensor *out, const char *out_name,
                               enum ts_dtype out_dt, const struct ts_tensor *tokens,
                               const struct ts_tensor *wte, const char *wte_name,
                               const struct ts_tensor *wpe, const char *wpe_name,
                               enum ts_dtype w_dt) {
    TS_CHECK(need(op, "tokens", tokens, TS_DTYPE_I32));
    TS_CHECK(need_ndim(op, "tokens", tokens, 2, "(B, T)"));
    TS_CHECK(need(op, wte_name, wte, w_dt));
    TS_CHECK(need_ndim(op, wte_name, wte, 2, "(Vp, C)"));
    TS_CHECK(need(op, wpe_name, wpe, w_dt));
    TS_CHECK(need_ndim(op, wpe_name, wpe, 2, "(maxT, C)"));
    TS_CHECK(need(op, out_name, out, out_dt));
    int64_t B = tokens->shape[0], T = tokens->shape[1], C = wte->shape[1];
    if (wpe->shape[1] != C)
        return ts_error(TS_ERR_INVALID_ARG, "%s: %s has shape %s but %s has C = %lld", op, wpe_name,
                        shape_of(wpe).s, wte_name, (long long)C);
    if (wpe->shape[0] < T)
        return ts_error(TS_ERR_INVALID_ARG, "%s: %s has shape %s, too few positions for T = %lld",
                        op, wpe_name, shape_of(wpe).s, (long long)T);
    if (out->ndim == 3 && (out->shape[0] != B || out->shape[1] != T || out->shape[2] != C))
        return ts_error(TS_ERR_INVALID_ARG, "%s: %s has shape %s, expected (%lld, %lld, %lld)", op,
                        out_name, shape_of(out).s, (long long)B, (long long)T, (long long)C);
    TS_CHECK(need_rows(op, out_name, out, B * T, C, "tokens x wte"));
    return TS_OK;
}

ts_status ts_op_encoder_forward(struct ts_backend *be, const struct ts_tensor *out,
                                const struct ts_tensor *tokens, const struct ts_tensor *wte,
                                const struct ts_tensor *wpe) {
    const char *op = "encoder_forward";
    TS_CHECK(need_backend(op, be, be && be->encoder_forward));
    enum ts_dtype dt = TS_DTYPE_F32;
    TS_CHECK(compute_dtype(op, be, "wte", wte, &dt));
    TS_CHECK(check_encoder(op, out, "out", dt, tokens, wte, "wte", wpe, "wpe", dt));
    TS_CHECK(need_disjoint(op, "out", out, "wte", wte));
    TS_CHECK(need_disjoint(op, "out", out, "wpe", wpe));
    return be->encoder_forward(be, out, tokens, wte, wpe);
}

ts_status ts_op_encoder_backward(struct ts_backend *be, const struct ts_tensor *dwte,
                                 const struct ts_tensor *dwpe, const struct ts_tensor *dout,
                                 const struct ts_tensor *tokens) {
    const char *op = "encoder_backward";
    TS_CHECK(need_backend(op, be, be && be->encoder_backward));
    enum ts_dtype dt = TS_DTYPE_F32;
    TS_CHECK(compute_dtype(op, be, "dout", dout, &dt));
    TS_CHECK(check_encoder(op, dout, "dout", dt, tokens, dwte, "dwte", dwpe, "dwpe", TS_DTYPE_F32));
    TS_CHECK(need_disjoint(op, "dwte", dwte, "dwpe", dwpe));
    TS_CHECK(need_disjoint(op, "dwte", dwte, "dout", dout));
    TS_CHECK(need_disjoint(op, "dwpe", dwpe, "dout", dout));
    return be->encoder_backward(be, dwte, dwpe, dout, tokens);
}

/* The slice ops: check_encoder with wpe optional (a tp rank other than 0 passes none). */
static ts_status check_encoder_slice(const char *op, const struct ts_tensor *out,
                                     const char *out_name, enum ts_dtype out_dt,
                                     const struct ts_tensor *tokens, const struct ts_tensor *wte,
                                     const char *wte_name, const struct ts_tensor *wpe,
                                     const char *wpe_name, enum ts_dtype w_dt,
                                     int64_t vocab_begin) {
    if (wpe != NULL)
        TS_CHECK(
            check_encoder(op, out, out_name, out_dt, tokens, wte, wte_name, wpe, wpe_name, w_dt));
    else
        TS_CHECK(
            check_encoder(op, out, out_name, out_dt, tokens, wte, wte_name, wte, wte_name, w_dt));
    if (vocab_begin < 0)
        return ts_error(TS_ERR_INVALID_ARG, "%s: vocab_begin = %lld must be >= 0", op,
                        (long long)vocab_begin);
    return TS_OK;
}

ts_status ts_op_encoder_forward_slice(struct ts_backend *be, const struct ts_tensor *out,
                                      const struct ts_tensor *tokens, const struct ts_tensor *wte,
                                      const struct ts_tensor *wpe, int64_t vocab_begin) {
    const char *op = "encoder_forward_slice";
    TS_CHECK(need_backend(op, be, be && be->encoder_forward_slice));
    enum ts_dtype dt = TS_DTYPE_F32;
    TS_CHECK(compute_dtype(op, be, "wte", wte, &dt));
    TS_CHECK(
        check_encoder_slice(op, out, "out", dt, tokens, wte, "wte", wpe, "wpe", dt, vocab_begin));
    TS_CHECK(need_disjoint(op, "out", out, "wte", wte));
    TS_CHECK(need_disjoint(op, "out", out, "wpe", wpe));
    return be->encoder_forward_slice(be, out, tokens, wte, wpe, vocab_begin);
}

ts_status ts_op_encoder_backward_slice(struct ts_backend *be, const struct ts_tensor *dwte,
                                       const struct ts_tensor *dwpe, const struct ts_tensor *dout,
                                       const struct ts_tensor *tokens, int64_t vocab_begin) {
    const char *op = "encoder_backward_slice";
    TS_CHECK(need_backend(op, be, be && be->encoder_backward_slice));
    enum ts_dtype dt = TS_DTYPE_F32;
    TS_CHECK(compute_dtype(op, be, "dout", dout, &dt));
    TS_CHECK(check_encoder_slice(op, dout, "dout", dt, tokens, dwte, "dwte", dwpe, "dwpe",
                                 TS_DTYPE_F32, vocab_begin));
    TS_CHECK(need_disjoint(op, "dwte", dwte, "dwpe", dwpe));
    TS_CHECK(need_disjoint(op, "dwte", dwte, "dout", dout));
    TS_CHECK(need_disjoint(op, "dwpe", dwpe, "dout", dout));
    return be->encoder_backward_slice(be, dwte, dwpe, dout, tokens, vocab_begin);
}

/* ---- layernorm ---- */

/* The layernorm forward's outputs and parameters for N rows of C (those of `ref`). */
static ts_status check_ln_forward(const char *op, enum ts_dtype dt, int64_t N, int64_t C,
                                  const char *ref, const struct ts_tensor *out,
                                  const struct ts_tensor *mean, const struct ts_tensor *rstd,
                                  const struct ts_tensor *weight, const struct ts_tensor *bias) {
    char has_n[48], has_c[48];
    snprintf(has_n, sizeof has_n, "%s has N", ref);
    snprintf(has_c, sizeof has_c, "%s has C", ref);
    TS_CHECK(need(op, "out", out, dt));
    TS_CHECK(need_rows(op, "out", out, N, C, ref));
    TS_CHECK(need(op, "mean", mean, TS_DTYPE_F32));
    TS_CHECK(need_numel(op, "mean", mean, N, has_n));
    TS_CHECK(need(op, "rstd", rstd, TS_DTYPE_F32));
    TS_CHECK(need_numel(op, "rstd", rstd, N, has_n));
    TS_CHECK(need(op, "weight", weight, dt));
    TS_CHECK(need_numel(op, "weight", weight, C, has_c));
    TS_CHECK(need(op, "bias", bias, dt));
    TS_CHECK(need_numel(op, "bias", bias, C, has_c));
    TS_CHECK(need_disjoint(op, "mean", mean, "rstd", rstd));
    TS_CHECK(need_disjoint(op, "out", out, "mean", mean));
    return need_disjoint(op, "out", out, "rstd", rstd);
}

ts_status ts_op_layernorm_forward(struct ts_backend *be, const struct ts_tensor *out,
                                  const struct ts_tensor *mean, const struct ts_tensor *rstd,
                                  const struct ts_tensor *inp, const struct ts_tensor *weight,
                                  const struct ts_tensor *bias) {
    const char *op = "layernorm_forward";
    TS_CHECK(need_backend(op, be, be && be->layernorm_forward));
    enum ts_dtype dt = TS_DTYPE_F32;
    TS_CHECK(compute_dtype(op, be, "inp", inp, &dt));
    TS_CHECK(need(op, "inp", inp, dt));
    TS_CHECK(
        check_ln_forward(op, dt, rows(inp), last_dim(inp), "inp", out, mean, rstd, weight, bias));
    return be->layernorm_forward(be, out, mean, rstd, inp, weight, bias);
}

ts_status ts_op_layernorm_backward(struct ts_backend *be, const struct ts_tensor *dinp,
                                   const struct ts_tensor *dweight, const struct ts_tensor *dbias,
                                   const struct ts_tensor *dout, const struct ts_tensor *inp,
                                   const struct ts_tensor *weight, const struct ts_tensor *mean,
                                   const struct ts_tensor *rstd) {
    const char *op = "layernorm_backward";
    TS_CHECK(need_backend(op, be, be && be->layernorm_backward));
    enum ts_dtype dt = TS_DTYPE_F32;
    TS_CHECK(compute_dtype(op, be, "inp", inp, &dt));
    TS_CHECK(need(op, "inp", inp, dt));
    int64_t N = rows(inp), C = last_dim(inp);
    TS_CHECK(need(op, "dinp", dinp, dt));
    TS_CHECK(need_rows(op, "dinp", dinp, N, C, "inp"));
    TS_CHECK(need(op, "dout", dout, dt));
    TS_CHECK(need_rows(op, "dout", dout, N, C, "inp"));
    TS_CHECK(need(op, "dweight", dweight, TS_DTYPE_F32));
    TS_CHECK(need_numel(op, "dweight", dweight, C, "inp has C"));
    TS_CHECK(need(op, "dbias", dbias, TS_DTYPE_F32));
    TS_CHECK(need_numel(op, "dbias", dbias, C, "inp has C"));
    TS_CHECK(need(op, "weight", weight, dt));
    TS_CHECK(need_numel(op, "weight", weight, C, "inp has C"));
    TS_CHECK(need(op, "mean", mean, TS_DTYPE_F32));
    TS_CHECK(need_numel(op, "mean", mean, N, "inp has N"));
    TS_CHECK(need(op, "rstd", rstd, TS_DTYPE_F32));
    TS_CHECK(need_numel(op, "rstd", rstd, N, "inp has N"));
    TS_CHECK(need_disjoint(op, "dinp", dinp, "dout", dout));
    TS_CHECK(need_disjoint(op, "dinp", dinp, "inp", inp));
    TS_CHECK(need_disjoint(op, "dweight", dweight, "dbias", dbias));
    return be->layernorm_backward(be, dinp, dweight, dbias, dout, inp, weight, mean, rstd);
}

/* ---- matmul ---- */

static ts_status check_weight(const char *op, const char *name, const struct ts_tensor *weight,
                              enum ts_dtype dt, enum ts_wlayout layout, int64_t *ic, int64_t *oc) {
    if (layout != TS_W_IN_OUT && layout != TS_W_OUT_IN)
        return ts_error(TS_ERR_INVALID_ARG, "%s: layout %d is not TS_W_IN_OUT or TS_W_OUT_IN", op,
                        (int)layout);
    TS_CHECK(need(op, name, weight, dt));
    TS_CHECK(need_ndim(op, name, weight, 2, layout == TS_W_IN_OUT ? "(IC, OC)" : "(OC, IC)"));
    *ic = layout == TS_W_IN_OUT ? weight->shape[0] : weight->shape[1];
    *oc = layout == TS_W_IN_OUT ? weight->shape[1] : weight->shape[0];
    return TS_OK;
}

static ts_status check_ic(const char *op, const char *name, const struct ts_tensor *t,
                          const struct ts_tensor *weight, int64_t ic, enum ts_wlayout layout) {
    if (last_dim(t) != ic)
        return ts_error(TS_ERR_INVALID_ARG, "%s: %s has shape %s but weight %s (%s) has IC = %lld",
                        op, name, shape_of(t).s, shape_of(weight).s,
                        layout == TS_W_IN_OUT ? "IC, OC" : "OC, IC", (long long)ic);
    return TS_OK;
}

ts_status ts_op_matmul_forward(struct ts_backend *be, const struct ts_tensor *out,
                               const struct ts_tensor *inp, const struct ts_tensor *weight,
                               const struct ts_tensor *bias, enum ts_wlayout layout) {
    const char *op = "matmul_forward";
    TS_CHECK(need_backend(op, be, be && be->matmul_forward));
    enum ts_dtype dt = TS_DTYPE_F32;
    TS_CHECK(compute_dtype(op, be, "inp", inp, &dt));
    int64_t IC = 0, OC = 0;
    TS_CHECK(check_weight(op, "weight", weight, dt, layout, &IC, &OC));
    TS_CHECK(need(op, "inp", inp, dt));
    TS_CHECK(check_ic(op, "inp", inp, weight, IC, layout));
    int64_t N = rows(inp);
    TS_CHECK(need(op, "out", out, dt));
    TS_CHECK(need_rows(op, "out", out, N, OC, "inp x weight"));
    if (bias) {
        TS_CHECK(need(op, "bias", bias, dt));
        TS_CHECK(need_numel(op, "bias", bias, OC, "weight has OC"));
        TS_CHECK(need_disjoint(op, "out", out, "bias", bias));
    }
    TS_CHECK(need_disjoint(op, "out", out, "inp", inp));
    TS_CHECK(need_disjoint(op, "out", out, "weight", weight));
    return be->matmul_forward(be, out, inp, weight, bias, layout);
}

ts_status ts_op_matmul_forward_gelu(struct ts_backend *be, const struct ts_tensor *out,
                                    const struct ts_tensor *pre, const struct ts_tensor *inp,
                                    const struct ts_tensor *weight, const struct ts_tensor *bias) {
    const char *op = "matmul_forward_gelu";
    TS_CHECK(need_backend(op, be, be && be->matmul_forward && be->gelu_forward));
    if (!be->matmul_forward_gelu) { /* the unfused definition; each op checks its arguments */
        TS_CHECK(ts_op_matmul_forward(be, pre, inp, weight, bias, TS_W_IN_OUT));
        return ts_op_gelu_forward(be, out, pre);
    }
    enum ts_dtype dt = TS_DTYPE_F32;
    TS_CHECK(compute_dtype(op, be, "inp", inp, &dt));
    int64_t IC = 0, OC = 0;
    TS_CHECK(check_weight(op, "weight", weight, dt, TS_W_IN_OUT, &IC, &OC));
    TS_CHECK(need(op, "inp", inp, dt));
    TS_CHECK(check_ic(op, "inp", inp, weight, IC, TS_W_IN_OUT));
    int64_t N = rows(inp);
    TS_CHECK(need(op, "pre", pre, dt));
    TS_CHECK(need_rows(op, "pre", pre, N, OC, "inp x weight"));
    TS_CHECK(need(op, "out", out, dt));
    TS_CHECK(need_rows(op, "out", out, N, OC, "inp x weight"));
    if (bias) {
        TS_CHECK(need(op, "bias", bias, dt));
        TS_CHECK(need_numel(op, "bias", bias, OC, "weight has OC"));
    }
    const struct ts_tensor *outs[] = {out, pre};
    const char *out_names[] = {"out", "pre"};
    const struct ts_tensor *ins[] = {inp, weight, bias};
    const char *in_names[] = {"inp", "weight", "bias"};
    for (int i = 0; i < 2; i++)
        for (int j = 0; j < 3; j++)
            TS_CHECK(need_disjoint(op, out_names[i], outs[i], in_names[j], ins[j]));
    TS_CHECK(need_disjoint(op, "out", out, "pre", pre));
    return be->matmul_forward_gelu(be, out, pre, inp, weight, bias);
}

/* matmul_backward's arguments (dinp, named dname, may be NULL) for op in dtype dt. */
static ts_status check_matmul_backward(const char *op, enum ts_dtype dt, const char *dname,
                                       const struct ts_tensor *dinp,
                                       const struct ts_tensor *dweight,
                                       const struct ts_tensor *dbias, const struct ts_tensor *dout,
                                       const struct ts_tensor *inp, const struct ts_tensor *weight,
                                       enum ts_wlayout layout) {
    int64_t IC = 0, OC = 0;
    TS_CHECK(check_weight(op, "weight", weight, dt, layout, &IC, &OC));
    TS_CHECK(need(op, "inp", inp, dt));
    TS_CHECK(check_ic(op, "inp", inp, weight, IC, layout));
    int64_t N = rows(inp);
    TS_CHECK(need(op, "dout", dout, dt));
    TS_CHECK(need_rows(op, "dout", dout, N, OC, "inp x weight"));
    TS_CHECK(need(op, "dweight", dweight, TS_DTYPE_F32));
    TS_CHECK(need_same_shape(op, "dweight", dweight, "weight", weight));
    TS_CHECK(need_disjoint(op, "dweight", dweight, "inp", inp));
    TS_CHECK(need_disjoint(op, "dweight", dweight, "dout", dout));
    if (dinp) {
        TS_CHECK(need(op, dname, dinp, dt));
        TS_CHECK(need_rows(op, dname, dinp, N, IC, "inp"));
        TS_CHECK(need_disjoint(op, dname, dinp, "dout", dout));
        TS_CHECK(need_disjoint(op, dname, dinp, "weight", weight));
        TS_CHECK(need_disjoint(op, dname, dinp, "dweight", dweight));
    }
    if (dbias) {
        TS_CHECK(need(op, "dbias", dbias, TS_DTYPE_F32));
        TS_CHECK(need_numel(op, "dbias", dbias, OC, "weight has OC"));
        TS_CHECK(need_disjoint(op, "dbias", dbias, "dout", dout));
        TS_CHECK(need_disjoint(op, "dbias", dbias, "dweight", dweight));
    }
    return TS_OK;
}

ts_status ts_op_matmul_backward(struct ts_backend *be, const struct ts_tensor *dinp,
                                const struct ts_tensor *dweight, const struct ts_tensor *dbias,
                                const struct ts_tensor *dout, const struct ts_tensor *inp,
                                const struct ts_tensor *weight, enum ts_wlayout layout) {
    const char *op = "matmul_backward";
    TS_CHECK(need_backend(op, be, be && be->matmul_backward));
    enum ts_dtype dt = TS_DTYPE_F32;
    TS_CHECK(compute_dtype(op, be, "inp", inp, &dt));
    TS_CHECK(
        check_matmul_backward(op, dt, "dinp", dinp, dweight, dbias, dout, inp, weight, layout));
    return be->matmul_backward(be, dinp, dweight, dbias, dout, inp, weight, layout);
}

ts_status ts_op_matmul_backward_dgelu(struct ts_backend *be, const struct ts_tensor *dpre,
                                      const struct ts_tensor *dweight,
                                      const struct ts_tensor *dbias, const struct ts_tensor *dout,
                                      const struct ts_tensor *inp, const struct ts_tensor *weight,
                                      const struct ts_tensor *pre) {
    const char *op = "matmul_backward_dgelu";
    TS_CHECK(need_backend(op, be, be != NULL));
    if (!dpre)
        return ts_error(TS_ERR_INVALID_ARG, "%s: dpre is NULL", op);
    enum ts_dtype dt = TS_DTYPE_F32;
    TS_CHECK(compute_dtype(op, be, "inp", inp, &dt));
    TS_CHECK(need(op, "pre", pre, dt));
    TS_CHECK(need_numel(op, "pre", pre, ts_tensor_numel(inp), "numel(inp)"));
    TS_CHECK(need_disjoint(op, "dpre", dpre, "pre", pre));
    TS_CHECK(need_disjoint(op, "dpre", dpre, "inp", inp));
    if (be->matmul_backward_dgelu == NULL) { /* the unfused definition, validated by the two */
        TS_CHECK(ts_op_matmul_backward(be, dpre, dweight, dbias, dout, inp, weight, TS_W_IN_OUT));
        return ts_op_gelu_backward(be, dpre, pre, dpre);
    }
    TS_CHECK(check_matmul_backward(op, dt, "dpre", dpre, dweight, dbias, dout, inp, weight,
                                   TS_W_IN_OUT));
    return be->matmul_backward_dgelu(be, dpre, dweight, dbias, dout, inp, weight, pre);
}

/* ---- attention ---- */

/* qkv (B,T,3C) with NH | C; att-shaped tensors (B,NH,T,T); out-shaped tensors (B,T,C). */
static ts_status check_qkv(const char *op, const char *name, const struct ts_tensor *qkv,
                           enum ts_dtype dt, int num_heads, int64_t *B, int64_t *T, int64_t *C) {
    TS_CHECK(need(op, name, qkv, dt));
    TS_CHECK(need_ndim(op, name, qkv, 3, "(B, T, 3C)"));
    if (qkv->shape[2] % 3 != 0)
        return ts_error(TS_ERR_INVALID_ARG, "%s: %s has shape %s; the last dim must be 3C", op,
                        name, shape_of(qkv).s);
    *B = qkv->shape[0];
    *T = qkv->shape[1];
    *C = qkv->shape[2] / 3;
    if (num_heads < 1 || *C % num_heads != 0)
        return ts_error(TS_ERR_INVALID_ARG, "%s: num_heads = %d does not divide C = %lld", op,
                        num_heads, (long long)*C);
    return TS_OK;
}

static ts_status check_att(const char *op, const char *name, const struct ts_tensor *att,
                           enum ts_dtype dt, int64_t B, int64_t NH, int64_t T) {
    TS_CHECK(need(op, name, att, dt));
    if (att->ndim != 4 || att->shape[0] != B || att->shape[1] != NH || att->shape[2] != T ||
        att->shape[3] != T)
        return ts_error(TS_ERR_INVALID_ARG,
                        "%s: %s has shape %s, expected (B, NH, T, T) = (%lld, %lld, %lld, %lld)",
                        op, name, shape_of(att).s, (long long)B, (long long)NH, (long long)T,
                        (long long)T);
    return TS_OK;
}

static ts_status check_btc(const char *op, const char *name, const struct ts_tensor *t,
                           enum ts_dtype dt, int64_t B, int64_t T, int64_t C) {
    TS_CHECK(need(op, name, t, dt));
    if (t->ndim != 3 || t->shape[0] != B || t->shape[1] != T || t->shape[2] != C)
        return ts_error(TS_ERR_INVALID_ARG,
                        "%s: %s has shape %s, expected (B, T, C) = (%lld, %lld, %lld)", op, name,
                        shape_of(t).s, (long long)B, (long long)T, (long long)C);
    return TS_OK;
}

ts_status ts_op_attention_forward(struct ts_backend *be, const struct ts_tensor *out,
                                  const struct ts_tensor *att, const struct ts_tensor *qkv,
                                  int num_heads) {
    const char *op = "attention_forward";
    TS_CHECK(need_backend(op, be, be && be->attention_forward));
    enum ts_dtype dt = TS_DTYPE_F32;
    TS_CHECK(compute_dtype(op, be, "qkv", qkv, &dt));
    int64_t B, T, C;
    TS_CHECK(check_qkv(op, "qkv", qkv, dt, num_heads, &B, &T, &C));
    TS_CHECK(check_btc(op, "out", out, dt, B, T, C));
    TS_CHECK(check_att(op, "att", att, dt, B, num_heads, T));
    TS_CHECK(need_disjoint(op, "out", out, "qkv", qkv));
    TS_CHECK(need_disjoint(op, "att", att, "qkv", qkv));
    TS_CHECK(need_disjoint(op, "out", out, "att", att));
    return be->attention_forward(be, out, att, qkv, num_heads);
}

ts_status ts_op_attention_backward(struct ts_backend *be, const struct ts_tensor *dqkv,
                                   const struct ts_tensor *scratch, const struct ts_tensor *dout,
                                   const struct ts_tensor *qkv, const struct ts_tensor *att,
                                   int num_heads) {
    const char *op = "attention_backward";
    TS_CHECK(need_backend(op, be, be && be->attention_backward));
    enum ts_dtype dt = TS_DTYPE_F32;
    TS_CHECK(compute_dtype(op, be, "qkv", qkv, &dt));
    int64_t B, T, C;
    TS_CHECK(check_qkv(op, "qkv", qkv, dt, num_heads, &B, &T, &C));
    TS_CHECK(need(op, "dqkv", dqkv, dt));
    TS_CHECK(need_same_shape(op, "dqkv", dqkv, "qkv", qkv));
    TS_CHECK(check_btc(op, "dout", dout, dt, B, T, C));
    TS_CHECK(check_att(op, "att", att, dt, B, num_heads, T));
    TS_CHECK(check_att(op, "scratch", scratch, dt, B, num_heads, T));
    const struct ts_tensor *ins[] = {dout, qkv, att};
    const char *in_names[] = {"dout", "qkv", "att"};
    for (int i = 0; i < 3; i++) {
        TS_CHECK(need_disjoint(op, "dqkv", dqkv, in_names[i], ins[i]));
        TS_CHECK(need_disjoint(op, "scratch", scratch, in_names[i], ins[i]));
    }
    TS_CHECK(need_disjoint(op, "dqkv", dqkv, "scratch", scratch));
    return be->attention_backward(be, dqkv, scratch, dout, qkv, att, num_heads);
}

/* lse-like (B,NH,T) f32: the flash pair's saved log-normalisers and its backward scratch. */
static ts_status check_rows(const char *op, const char *name, const struct ts_tensor *t, int64_t B,
                            int64_t NH, int64_t T) {
    TS_CHECK(need(op, name, t, TS_DTYPE_F32));
    if (t->ndim != 3 || t->shape[0] != B || t->shape[1] != NH || t->shape[2] != T)
        return ts_error(TS_ERR_INVALID_ARG,
                        "%s: %s has shape %s, expected (B, NH, T) = (%lld, %lld, %lld)", op, name,
                        shape_of(t).s, (long long)B, (long long)NH, (long long)T);
    return TS_OK;
}

bool ts_op_flash_attention_usable(struct ts_backend *be, int head_size, enum ts_dtype dtype) {
    return be && be->flash_attention_usable && be->flash_attention_forward &&
           be->flash_attention_backward && be->flash_attention_usable(be, head_size, dtype);
}

ts_status ts_op_flash_attention_forward(struct ts_backend *be, const struct ts_tensor *out,
                                        const struct ts_tensor *lse, const struct ts_tensor *qkv,
                                        int num_heads) {
    const char *op = "flash_attention_forward";
    TS_CHECK(need_backend(op, be, be && be->flash_attention_forward));
    enum ts_dtype dt = TS_DTYPE_F32;
    TS_CHECK(compute_dtype(op, be, "qkv", qkv, &dt));
    int64_t B, T, C;
    TS_CHECK(check_qkv(op, "qkv", qkv, dt, num_heads, &B, &T, &C));
    TS_CHECK(check_btc(op, "out", out, dt, B, T, C));
    TS_CHECK(check_rows(op, "lse", lse, B, num_heads, T));
    TS_CHECK(need_disjoint(op, "out", out, "qkv", qkv));
    TS_CHECK(need_disjoint(op, "lse", lse, "qkv", qkv));
    TS_CHECK(need_disjoint(op, "out", out, "lse", lse));
    return be->flash_attention_forward(be, out, lse, qkv, num_heads);
}

ts_status ts_op_flash_attention_backward(struct ts_backend *be, const struct ts_tensor *dqkv,
                                         const struct ts_tensor *scratch,
                                         const struct ts_tensor *dout, const struct ts_tensor *qkv,
                                         const struct ts_tensor *out, const struct ts_tensor *lse,
                                         int num_heads) {
    const char *op = "flash_attention_backward";
    TS_CHECK(need_backend(op, be, be && be->flash_attention_backward));
    enum ts_dtype dt = TS_DTYPE_F32;
    TS_CHECK(compute_dtype(op, be, "qkv", qkv, &dt));
    int64_t B, T, C;
    TS_CHECK(check_qkv(op, "qkv", qkv, dt, num_heads, &B, &T, &C));
    TS_CHECK(need(op, "dqkv", dqkv, dt));
    TS_CHECK(need_same_shape(op, "dqkv", dqkv, "qkv", qkv));
    TS_CHECK(check_btc(op, "dout", dout, dt, B, T, C));
    TS_CHECK(check_btc(op, "out", out, dt, B, T, C));
    TS_CHECK(check_rows(op, "lse", lse, B, num_heads, T));
    TS_CHECK(check_rows(op, "scratch", scratch, B, num_heads, T));
    const struct ts_tensor *ins[] = {dout, qkv, out, lse};
    const char *in_names[] = {"dout", "qkv", "out", "lse"};
    for (int i = 0; i < 4; i++) {
        TS_CHECK(need_disjoint(op, "dqkv", dqkv, in_names[i], ins[i]));
        TS_CHECK(need_disjoint(op, "scratch", scratch, in_names[i], ins[i]));
    }
    TS_CHECK(need_disjoint(op, "dqkv", dqkv, "scratch", scratch));
    return be->flash_attention_backward(be, dqkv, scratch, dout, qkv, out, lse, num_heads);
}

ts_status ts_op_attention_decode(struct ts_backend *be, const struct ts_tensor *out,
                                 const struct ts_tensor *scratch, const struct ts_tensor *cache,
                                 int pos, int num_heads) {
    const char *op = "attention_decode";
    TS_CHECK(need_backend(op, be, be && be->attention_decode));
    enum ts_dtype dt = TS_DTYPE_F32;
    TS_CHECK(compute_dtype(op, be, "cache", cache, &dt));
    int64_t B = 0, S = 0, C = 0;
    TS_CHECK(check_qkv(op, "cache", cache, dt, num_heads, &B, &S, &C));
    if (pos < 0 || pos >= S)
        return ts_error(TS_ERR_INVALID_ARG, "%s: pos %d outside the cache's %lld positions", op,
                        pos, (long long)S);
    TS_CHECK(need(op, "out", out, dt));
    if (out->ndim != 2 || out->shape[0] != B || out->shape[1] != C)
        return ts_error(TS_ERR_INVALID_ARG, "%s: out has shape %s, expected (B, C) = (%lld, %lld)",
                        op, shape_of(out).s, (long long)B, (long long)C);
    TS_CHECK(need(op, "scratch", scratch, TS_DTYPE_F32));
    if (scratch->ndim != 3 || scratch->shape[0] != B || scratch->shape[1] != num_heads ||
        scratch->shape[2] != S)
        return ts_error(TS_ERR_INVALID_ARG,
                        "%s: scratch has shape %s, expected (B, NH, S) = (%lld, %d, %lld)", op,
                        shape_of(scratch).s, (long long)B, num_heads, (long long)S);
    TS_CHECK(need_disjoint(op, "out", out, "cache", cache));
    TS_CHECK(need_disjoint(op, "scratch", scratch, "cache", cache));
    TS_CHECK(need_disjoint(op, "out", out, "scratch", scratch));
    return be->attention_decode(be, out, scratch, cache, pos, num_heads);
}

/* ---- pointwise ---- */

ts_status ts_op_gelu_forward(struct ts_backend *be, const struct ts_tensor *out,
                             const struct ts_tensor *inp) {
    const char *op = "gelu_forward";
    TS_CHECK(need_backend(op, be, be && be->gelu_forward));
    enum ts_dtype dt = TS_DTYPE_F32;
    TS_CHECK(compute_dtype(op, be, "inp", inp, &dt));
    TS_CHECK(need(op, "inp", inp, dt));
    TS_CHECK(need(op, "out", out, dt));
    TS_CHECK(need_numel(op, "out", out, ts_tensor_numel(inp), "numel(inp)"));
    return be->gelu_forward(be, out, inp);
}

ts_status ts_op_gelu_backward(struct ts_backend *be, const struct ts_tensor *dinp,
                              const struct ts_tensor *inp, const struct ts_tensor *dout) {
    const char *op = "gelu_backward";
    TS_CHECK(need_backend(op, be, be && be->gelu_backward));
    enum ts_dtype dt = TS_DTYPE_F32;
    TS_CHECK(compute_dtype(op, be, "inp", inp, &dt));
    TS_CHECK(need(op, "inp", inp, dt));
    TS_CHECK(need(op, "dinp", dinp, dt));
    TS_CHECK(need_numel(op, "dinp", dinp, ts_tensor_numel(inp), "numel(inp)"));
    TS_CHECK(need(op, "dout", dout, dt));
    TS_CHECK(need_numel(op, "dout", dout, ts_tensor_numel(inp), "numel(inp)"));
    return be->gelu_backward(be, dinp, inp, dout);
}

ts_status ts_op_residual_forward(struct ts_backend *be, const struct ts_tensor *out,
                                 const struct ts_tensor *a, const struct ts_tensor *b) {
    const char *op = "residual_forward";
    TS_CHECK(need_backend(op, be, be && be->residual_forward));
    enum ts_dtype dt = TS_DTYPE_F32;
    TS_CHECK(compute_dtype(op, be, "a", a, &dt));
    TS_CHECK(need(op, "a", a, dt));
    TS_CHECK(need(op, "b", b, dt));
    TS_CHECK(need_numel(op, "b", b, ts_tensor_numel(a), "numel(a)"));
    TS_CHECK(need(op, "out", out, dt));
    TS_CHECK(need_numel(op, "out", out, ts_tensor_numel(a), "numel(a)"));
    return be->residual_forward(be, out, a, b);
}

ts_status ts_op_residual_layernorm_forward(
    struct ts_backend *be, const struct ts_tensor *res, const struct ts_tensor *out,
    const struct ts_tensor *mean, const struct ts_tensor *rstd, const struct ts_tensor *a,
    const struct ts_tensor *b, const struct ts_tensor *weight, const struct ts_tensor *bias) {
    const char *op = "residual_layernorm_forward";
    TS_CHECK(need_backend(op, be, be != NULL));
    enum ts_dtype dt = TS_DTYPE_F32;
    TS_CHECK(compute_dtype(op, be, "a", a, &dt));
    TS_CHECK(need(op, "a", a, dt));
    const int64_t N = rows(a), C = last_dim(a);
    TS_CHECK(need(op, "b", b, dt));
    TS_CHECK(need_numel(op, "b", b, N * C, "numel(a)"));
    TS_CHECK(need(op, "res", res, dt));
    TS_CHECK(need_rows(op, "res", res, N, C, "a"));
    TS_CHECK(check_ln_forward(op, dt, N, C, "a", out, mean, rstd, weight, bias));
    TS_CHECK(need_disjoint(op, "out", out, "res", res));
    TS_CHECK(need_disjoint(op, "res", res, "mean", mean));
    TS_CHECK(need_disjoint(op, "res", res, "rstd", rstd));
    if (be->residual_layernorm_forward == NULL) { /* the unfused definition */
        TS_CHECK(ts_op_residual_forward(be, res, a, b));
        return ts_op_layernorm_forward(be, out, mean, rstd, res, weight, bias);
    }
    return be->residual_layernorm_forward(be, res, out, mean, rstd, a, b, weight, bias);
}

/* ---- loss ---- */

ts_status ts_op_softmax_xent(struct ts_backend *be, const struct ts_tensor *losses,
                             const struct ts_tensor *logits, const struct ts_tensor *targets,
                             int vocab, float dloss, bool with_grad) {
    const char *op = "softmax_xent";
    TS_CHECK(need_backend(op, be, be && be->softmax_xent));
    enum ts_dtype dt = TS_DTYPE_F32;
    TS_CHECK(compute_dtype(op, be, "logits", logits, &dt));
    TS_CHECK(need(op, "logits", logits, dt));
    int64_t N = rows(logits), Vp = last_dim(logits);
    if (vocab < 1 || vocab > Vp)
        return ts_error(TS_ERR_INVALID_ARG, "%s: vocab = %d but logits has shape %s (Vp = %lld)",
                        op, vocab, shape_of(logits).s, (long long)Vp);
    TS_CHECK(need(op, "losses", losses, TS_DTYPE_F32));
    TS_CHECK(need_numel(op, "losses", losses, N, "logits has N"));
    TS_CHECK(need(op, "targets", targets, TS_DTYPE_I32));
    TS_CHECK(need_numel(op, "targets", targets, N, "logits has N"));
    TS_CHECK(need_disjoint(op, "losses", losses, "logits", logits));
    return be->softmax_xent(be, losses, logits, targets, vocab, dloss, with_grad);
}

/* The vocabulary-parallel cross-entropy's common checks: logits (N,Vl) in the compute dtype,
 * 0 <= valid <= Vl, and an f32 (N)-sized vector. */
static ts_status check_xent_slice(const char *op, struct ts_backend *be,
                                  const struct ts_tensor *logits, int valid, const char *vec_name,
                                  const struct ts_tensor *vec, int64_t *N) {
    enum ts_dtype dt = TS_DTYPE_F32;
    TS_CHECK(compute_dtype(op, be, "logits", logits, &dt));
    TS_CHECK(need(op, "logits", logits, dt));
    *N = rows(logits);
    if (valid < 0 || valid > last_dim(logits))
        return ts_error(TS_ERR_INVALID_ARG, "%s: valid = %d but logits has shape %s (Vl = %lld)",
                        op, valid, shape_of(logits).s, (long long)last_dim(logits));
    TS_CHECK(need(op, vec_name, vec, TS_DTYPE_F32));
    TS_CHECK(need_numel(op, vec_name, vec, *N, "logits has N"));
    return need_disjoint(op, vec_name, vec, "logits", logits);
}

static ts_status check_xent_stats(const char *op, const struct ts_tensor *stats,
                                  const struct ts_tensor *targets, int64_t N, int64_t vocab_begin) {
    TS_CHECK(need(op, "stats", stats, TS_DTYPE_F32));
    TS_CHECK(need_rows(op, "stats", stats, N, 2, "logits"));
    TS_CHECK(need(op, "targets", targets, TS_DTYPE_I32));
    TS_CHECK(need_numel(op, "targets", targets, N, "logits has N"));
    if (vocab_begin < 0)
        return ts_error(TS_ERR_INVALID_ARG, "%s: vocab_begin = %lld must be >= 0", op,
                        (long long)vocab_begin);
    return TS_OK;
}

ts_status ts_op_xent_slice_max(struct ts_backend *be, const struct ts_tensor *rowmax,
                               const struct ts_tensor *logits, int valid) {
    const char *op = "xent_slice_max";
    TS_CHECK(need_backend(op, be, be && be->xent_slice_max));
    int64_t N;
    TS_CHECK(check_xent_slice(op, be, logits, valid, "rowmax", rowmax, &N));
    return be->xent_slice_max(be, rowmax, logits, valid);
}

ts_status ts_op_xent_slice_sumexp(struct ts_backend *be, const struct ts_tensor *stats,
                                  const struct ts_tensor *logits, const struct ts_tensor *rowmax,
                                  const struct ts_tensor *targets, int valid, int64_t vocab_begin) {
    const char *op = "xent_slice_sumexp";
    TS_CHECK(need_backend(op, be, be && be->xent_slice_sumexp));
    int64_t N;
    TS_CHECK(check_xent_slice(op, be, logits, valid, "rowmax", rowmax, &N));
    TS_CHECK(check_xent_stats(op, stats, targets, N, vocab_begin));
    TS_CHECK(need_disjoint(op, "stats", stats, "logits", logits));
    TS_CHECK(need_disjoint(op, "stats", stats, "rowmax", rowmax));
    return be->xent_slice_sumexp(be, stats, logits, rowmax, targets, valid, vocab_begin);
}

ts_status ts_op_xent_from_stats(struct ts_backend *be, const struct ts_tensor *losses,
                                const struct ts_tensor *logits, const struct ts_tensor *targets,
                                const struct ts_tensor *rowmax, const struct ts_tensor *stats,
                                int valid, int64_t vocab_begin, float dloss, bool with_grad) {
    const char *op = "xent_from_stats";
    TS_CHECK(need_backend(op, be, be && be->xent_from_stats));
    int64_t N;
    TS_CHECK(check_xent_slice(op, be, logits, valid, "rowmax", rowmax, &N));
    TS_CHECK(check_xent_stats(op, stats, targets, N, vocab_begin));
    TS_CHECK(need(op, "losses", losses, TS_DTYPE_F32));
    TS_CHECK(need_numel(op, "losses", losses, N, "logits has N"));
    TS_CHECK(need_disjoint(op, "losses", losses, "logits", logits));
    TS_CHECK(need_disjoint(op, "losses", losses, "rowmax", rowmax));
    TS_CHECK(need_disjoint(op, "losses", losses, "stats", stats));
    TS_CHECK(need_disjoint(op, "stats", stats, "logits", logits));
    return be->xent_from_stats(be, losses, logits, targets, rowmax, stats, valid, vocab_begin,
                               dloss, with_grad);
}

/* ---- optimizer ---- */

ts_status ts_op_adamw(struct ts_backend *be, const struct ts_tensor *param,
                      const struct ts_tensor *grad, const struct ts_tensor *m,
                      const struct ts_tensor *v, float lr, float beta1, float beta2, float eps,
                      float weight_decay, float grad_scale, int step) {
    const char *op = "adamw";
    TS_CHECK(need_backend(op, be, be && be->adamw));
    TS_CHECK(need(op, "param", param, TS_DTYPE_F32));
    int64_t n = ts_tensor_numel(param);
    TS_CHECK(need(op, "grad", grad, TS_DTYPE_F32));
    TS_CHECK(need_numel(op, "grad", grad, n, "numel(param)"));
    TS_CHECK(need(op, "m", m, TS_DTYPE_F32));
    TS_CHECK(need_numel(op, "m", m, n, "numel(param)"));
    TS_CHECK(need(op, "v", v, TS_DTYPE_F32));
    TS_CHECK(need_numel(op, "v", v, n, "numel(param)"));
    if (step < 1)
        return ts_error(TS_ERR_INVALID_ARG, "%s: step = %d, but steps count from 1", op, step);
    if (!(beta1 >= 0.0f && beta1 < 1.0f) || !(beta2 >= 0.0f && beta2 < 1.0f))
        return ts_error(TS_ERR_INVALID_ARG, "%s: beta1 = %g, beta2 = %g; each must be in [0, 1)",
                        op, (double)beta1, (double)beta2);
    TS_CHECK(need_disjoint(op, "param", param, "grad", grad));
    TS_CHECK(need_disjoint(op, "param", param, "m", m));
    TS_CHECK(need_disjoint(op, "param", param, "v", v));
    TS_CHECK(need_disjoint(op, "m", m, "v", v));
    return be->adamw(be, param, grad, m, v, lr, beta1, beta2, eps, weight_decay, grad_scale, step);
}

ts_status ts_op_sum_squares(struct ts_backend *be, const struct ts_tensor *out,
                            const struct ts_tensor *x) {
    const char *op = "sum_squares";
    TS_CHECK(need_backend(op, be, be && be->sum_squares));
    enum ts_dtype dt = TS_DTYPE_F32;
    TS_CHECK(compute_dtype(op, be, "x", x, &dt));
    TS_CHECK(need(op, "x", x, dt));
    TS_CHECK(need(op, "out", out, TS_DTYPE_F32));
    TS_CHECK(need_numel(op, "out", out, 1, "the expected numel"));
    TS_CHECK(need_disjoint(op, "out", out, "x", x));
    return be->sum_squares(be, out, x);
}

/* ---- precision ---- */

static ts_status need_f32_or_bf16(const char *op, const char *name, const struct ts_tensor *t) {
    TS_CHECK(need_any(op, name, t));
    if (t->dtype != TS_DTYPE_F32 && t->dtype != TS_DTYPE_BF16)
        return ts_error(TS_ERR_INVALID_ARG, "%s: %s has dtype %s, expected f32 or bf16", op, name,
                        ts_dtype_name(t->dtype));
    return TS_OK;
}

ts_status ts_op_cast(struct ts_backend *be, const struct ts_tensor *dst,
                     const struct ts_tensor *src) {
    const char *op = "cast";
    TS_CHECK(need_backend(op, be, be && be->cast));
    TS_CHECK(need_f32_or_bf16(op, "dst", dst));
    TS_CHECK(need_f32_or_bf16(op, "src", src));
    TS_CHECK(need_numel(op, "dst", dst, ts_tensor_numel(src), "numel(src)"));
    TS_CHECK(need_disjoint(op, "dst", dst, "src", src));
    return be->cast(be, dst, src);
}

ts_status ts_op_adamw_master(struct ts_backend *be, const struct ts_tensor *param,
                             const struct ts_tensor *master, const struct ts_tensor *grad,
                             const struct ts_tensor *m, const struct ts_tensor *v, float lr,
                             float beta1, float beta2, float eps, float weight_decay,
                             float grad_scale, int step) {
    const char *op = "adamw_master";
    TS_CHECK(need_backend(op, be, be && be->adamw_master));
    TS_CHECK(need_f32_or_bf16(op, "param", param));
    int64_t n = ts_tensor_numel(param);
    const struct ts_tensor *f32s[] = {master, grad, m, v};
    const char *names[] = {"master", "grad", "m", "v"};
    for (int i = 0; i < 4; i++) {
        TS_CHECK(need(op, names[i], f32s[i], TS_DTYPE_F32));
        TS_CHECK(need_numel(op, names[i], f32s[i], n, "numel(param)"));
        TS_CHECK(need_disjoint(op, "param", param, names[i], f32s[i]));
        for (int j = 0; j < i; j++)
            TS_CHECK(need_disjoint(op, names[j], f32s[j], names[i], f32s[i]));
    }
    if (step < 1)
        return ts_error(TS_ERR_INVALID_ARG, "%s: step = %d, but steps count from 1", op, step);
    if (!(beta1 >= 0.0f && beta1 < 1.0f) || !(beta2 >= 0.0f && beta2 < 1.0f))
        return ts_error(TS_ERR_INVALID_ARG, "%s: beta1 = %g, beta2 = %g; each must be in [0, 1)",
                        op, (double)beta1, (double)beta2);
    return be->adamw_master(be, param, master, grad, m, v, lr, beta1, beta2, eps, weight_decay,
                            grad_scale, step);
}

/* ---- host memory, asynchronous copies, events, energy ---- */

ts_status ts_op_host_alloc(struct ts_backend *be, size_t bytes, void **out) {
    if (!out)
        return ts_error(TS_ERR_INVALID_ARG, "host_alloc: out is NULL");
    *out = NULL;
    TS_CHECK(need_backend("host_alloc", be, be && be->host_alloc));
    return be->host_alloc(be, bytes, out);
}

void ts_op_host_free(struct ts_backend *be, void *ptr) {
    if (be && be->host_free && ptr)
        be->host_free(be, ptr);
}

static ts_status check_async(const char *op, const struct ts_tensor *t, const void *host,
                             size_t bytes) {
    TS_CHECK(need_any(op, "tensor", t));
    if (!host)
        return ts_error(TS_ERR_INVALID_ARG, "%s: host pointer is NULL", op);
    if (bytes != ts_tensor_nbytes(t))
        return ts_error(TS_ERR_INVALID_ARG, "%s: %zu bytes but the tensor %s %s holds %zu", op,
                        bytes, shape_of(t).s, ts_dtype_name(t->dtype), ts_tensor_nbytes(t));
    return TS_OK;
}

ts_status ts_op_upload_async(struct ts_backend *be, const struct ts_tensor *dst, const void *host,
                             size_t bytes) {
    TS_CHECK(need_backend("upload_async", be, be && be->copy_h2d_async));
    TS_CHECK(check_async("upload_async", dst, host, bytes));
    return be->copy_h2d_async(be, dst->data, host, bytes);
}

ts_status ts_op_download_async(struct ts_backend *be, void *host, const struct ts_tensor *src,
                               size_t bytes) {
    TS_CHECK(need_backend("download_async", be, be && be->copy_d2h_async));
    TS_CHECK(check_async("download_async", src, host, bytes));
    return be->copy_d2h_async(be, host, src->data, bytes);
}

ts_status ts_op_event_create(struct ts_backend *be, ts_event_t **out) {
    if (!out)
        return ts_error(TS_ERR_INVALID_ARG, "event_create: out is NULL");
    *out = NULL;
    TS_CHECK(need_backend("event_create", be, be && be->event_create));
    return be->event_create(be, out);
}

void ts_op_event_destroy(struct ts_backend *be, ts_event_t *ev) {
    if (be && be->event_destroy && ev)
        be->event_destroy(be, ev);
}

ts_status ts_op_event_record(struct ts_backend *be, ts_event_t *ev) {
    TS_CHECK(need_backend("event_record", be, be && be->event_record));
    if (!ev)
        return ts_error(TS_ERR_INVALID_ARG, "event_record: event is NULL");
    return be->event_record(be, ev);
}

ts_status ts_op_event_sync(struct ts_backend *be, ts_event_t *ev) {
    TS_CHECK(need_backend("event_sync", be, be && be->event_sync));
    if (!ev)
        return ts_error(TS_ERR_INVALID_ARG, "event_sync: event is NULL");
    return be->event_sync(be, ev);
}

ts_status ts_op_event_elapsed_ms(struct ts_backend *be, ts_event_t *start, ts_event_t *end,
                                 float *ms) {
    TS_CHECK(need_backend("event_elapsed_ms", be, be && be->event_elapsed_ms));
    if (!start || !end || !ms)
        return ts_error(TS_ERR_INVALID_ARG, "event_elapsed_ms: start, end and ms are required");
    return be->event_elapsed_ms(be, start, end, ms);
}

ts_status ts_op_energy_mj(struct ts_backend *be, uint64_t *out) {
    if (!out)
        return ts_error(TS_ERR_INVALID_ARG, "energy: out is NULL");
    TS_CHECK(need_backend("energy", be, be && be->energy_mj));
    return be->energy_mj(be, out);
}
