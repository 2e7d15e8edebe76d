/* optim.c: AdamW with global-norm clipping over the model's flat buffers.
 *
 * The moments m and v are flat buffers laid out like the parameters, so per-tensor views use the
 * parameter table's offsets. The global norm is a single sum_squares over the whole gradient
 * buffer (each parameter counted once, in a fixed order); its one float crosses to the host to
 * decide the clip scale, which AdamW then applies to the gradient as it reads it. */
#include <inttypes.h>
#include <math.h>
#include <stdlib.h>

#include "kernels/ops.h"
#include "trainer/optim.h"

struct ts_optim {
    ts_gpt_t *gpt;
    struct ts_adamw_config cfg;
    int64_t begin, end;       /* the flat range this optimizer owns */
    struct ts_tensor m, v;    /* flat (end - begin) f32 */
    struct ts_tensor master;  /* flat (end - begin) f32 when the parameters are not f32 */
    struct ts_tensor norm_sq; /* (1) f32 */
    int64_t step;             /* updates done */
};

struct ts_adamw_config ts_adamw_defaults(void) {
    return (struct ts_adamw_config){
        .beta1 = 0.9f, .beta2 = 0.95f, .eps = 1e-8f, .weight_decay = 0.1f, .grad_clip = 1.0f};
}

static ts_status check_config(const struct ts_adamw_config *c) {
    if (!(c->beta1 >= 0 && c->beta1 < 1) || !(c->beta2 >= 0 && c->beta2 < 1))
        return ts_error(TS_ERR_INVALID_ARG, "adamw: betas must be in [0, 1), got %g and %g",
                        (double)c->beta1, (double)c->beta2);
    if (!(c->eps > 0))
        return ts_error(TS_ERR_INVALID_ARG, "adamw: eps must be > 0, got %g", (double)c->eps);
    if (!(c->weight_decay >= 0) || !isfinite(c->weight_decay))
        return ts_error(TS_ERR_INVALID_ARG, "adamw: weight_decay must be >= 0, got %g",
                        (double)c->weight_decay);
    if (!(c->grad_clip >= 0) || !isfinite(c->grad_clip))
        return ts_error(TS_ERR_INVALID_ARG, "adamw: grad_clip must be >= 0 (0 disables), got %g",
                        (double)c->grad_clip);
    return TS_OK;
}

ts_status ts_optim_create(ts_optim_t **out, ts_gpt_t *gpt, const struct ts_adamw_config *cfg) {
    if (gpt == NULL) {
        if (out != NULL)
            *out = NULL;
        return ts_error(TS_ERR_INVALID_ARG, "optim create: model and config are required");
    }
    return ts_optim_create_range(out, gpt, cfg, 0, ts_gpt_num_params(gpt));
}

ts_status ts_optim_create_range(ts_optim_t **out, ts_gpt_t *gpt, const struct ts_adamw_config *cfg,
                                int64_t begin, int64_t end) {
    if (out == NULL)
        return ts_error(TS_ERR_INVALID_ARG, "optim create: out is NULL");
    *out = NULL;
    if (gpt == NULL || cfg == NULL)
        return ts_error(TS_ERR_INVALID_ARG, "optim create: model and config are required");
    TS_CHECK(check_config(cfg));
    if (begin < 0 || end < begin || end > ts_gpt_num_params(gpt))
        return ts_error(TS_ERR_INVALID_ARG, "optim create: range [%lld, %lld) outside [0, %lld]",
                        (long long)begin, (long long)end, (long long)ts_gpt_num_params(gpt));
    struct ts_optim *o = calloc(1, sizeof(*o));
    if (o == NULL)
        return ts_error(TS_ERR_OOM, "optim create: out of memory");
    o->gpt = gpt;
    o->cfg = *cfg;
    o->begin = begin;
    o->end = end;
    struct ts_backend *be = ts_gpt_backend(gpt);
    const int64_t n = end - begin, one = 1;
    ts_status st;
    TS_CHECK_GOTO(ts_op_alloc(be, &o->m, TS_DTYPE_F32, 1, &n), st, fail);
    TS_CHECK_GOTO(ts_op_alloc(be, &o->v, TS_DTYPE_F32, 1, &n), st, fail);
    TS_CHECK_GOTO(ts_op_alloc(be, &o->norm_sq, TS_DTYPE_F32, 1, &one), st, fail);
    if (ts_gpt_param_buffer(gpt)->dtype != TS_DTYPE_F32 && n > 0) { /* fp32 master weights */
        struct ts_tensor mine; /* the parameters of [begin, end) */
        TS_CHECK_GOTO(ts_tensor_view(&mine, ts_gpt_param_buffer(gpt), begin, 1, &n), st, fail);
        TS_CHECK_GOTO(ts_op_alloc(be, &o->master, TS_DTYPE_F32, 1, &n), st, fail);
        TS_CHECK_GOTO(ts_op_cast(be, &o->master, &mine), st, fail);
    }
    *out = o;
    return TS_OK;
fail:
    ts_error_wrap(st, "optim create (%lld parameters)", (long long)n);
    ts_optim_destroy(o);
    return st;
}

void ts_optim_destroy(ts_optim_t *o) {
    if (o == NULL)
        return;
    struct ts_backend *be = ts_gpt_backend(o->gpt);
    ts_op_free(be, &o->m);
    ts_op_free(be, &o->v);
    ts_op_free(be, &o->norm_sq);
    ts_op_free(be, &o->master);
    free(o);
}

/* A 1-D view of elements [from, to) of the flat buffer `flat`, which starts at flat element
 * `base` (0 for the parameters and gradients, begin for the moments). */
static struct ts_tensor flat_view(const struct ts_tensor *flat, int64_t base, int64_t from,
                                  int64_t to) {
    char *start = (char *)flat->data + (size_t)(from - base) * ts_dtype_size(flat->dtype);
    return ts_tensor_1d(start, flat->dtype, to - from);
}

ts_status ts_optim_sum_squares(ts_optim_t *o, double *sum_sq) {
    struct ts_backend *be = ts_gpt_backend(o->gpt);
    float ss = 0;
    *sum_sq = 0;
    if (o->end == o->begin)
        return TS_OK;
    const struct ts_tensor g = flat_view(ts_gpt_grad_buffer(o->gpt), 0, o->begin, o->end);
    TS_CHECK(ts_op_sum_squares(be, &o->norm_sq, &g));
    TS_CHECK(ts_op_download(be, &ss, &o->norm_sq, sizeof(ss)));
    *sum_sq = (double)ss;
    return TS_OK;
}

ts_status ts_optim_sum_squares_async(ts_optim_t *o, float *host) {
    if (host == NULL)
        return ts_error(TS_ERR_INVALID_ARG, "optim sum_squares_async: host is NULL");
    if (o->end == o->begin) {
        *host = 0;
        return TS_OK;
    }
    struct ts_backend *be = ts_gpt_backend(o->gpt);
    const struct ts_tensor g = flat_view(ts_gpt_grad_buffer(o->gpt), 0, o->begin, o->end);
    TS_CHECK(ts_op_sum_squares(be, &o->norm_sq, &g));
    return ts_op_download_async(be, host, &o->norm_sq, sizeof(float));
}

ts_status ts_optim_update(ts_optim_t *o, float lr, double norm) {
    struct ts_backend *be = ts_gpt_backend(o->gpt);
    const struct ts_tensor *params = ts_gpt_param_buffer(o->gpt);
    const struct ts_tensor *grads = ts_gpt_grad_buffer(o->gpt);
    if (!isfinite(lr) || lr < 0)
        return ts_error(TS_ERR_INVALID_ARG, "optim step %" PRId64 ": learning rate %g is not >= 0",
                        o->step, (double)lr);
    if (!isfinite(norm))
        return ts_error(TS_ERR_INVALID_ARG,
                        "non-finite gradient norm at step %" PRId64
                        " (%g): update skipped; the run "
                        "diverged, lower the learning rate or resume from a checkpoint",
                        o->step, norm);
    /* torch.nn.utils.clip_grad_norm_'s rule: scale by clip / (norm + 1e-6) when that is < 1. */
    float scale = 1.0f;
    if (o->cfg.grad_clip > 0) {
        const double s = (double)o->cfg.grad_clip / (norm + 1e-6);
        if (s < 1.0)
            scale = (float)s;
    }

    /* AdamW's bias corrections 1 - beta^t, t = step + 1, are 1 in float (and in double) for
     * every t >= 2^30 and float beta < 1 (beta <= 1 - 2^-24, so beta^t <= e^-64): the kernels'
     * int t stops there with exactly the same numbers for any 64-bit step. */
    const int t = o->step + 1 < (1 << 30) ? (int)(o->step + 1) : 1 << 30;
    /* AdamW is elementwise, so a tensor cut by the range is updated on its cut part alone,
     * with the tensor's own decay. */
    int count;
    const struct ts_param_info *table = ts_gpt_params(o->gpt, &count);
    for (int i = 0; i < count; i++) {
        const struct ts_param_info *p = &table[i];
        const int64_t from = p->offset > o->begin ? p->offset : o->begin;
        const int64_t to = p->offset + p->numel < o->end ? p->offset + p->numel : o->end;
        if (from >= to)
            continue;
        const struct ts_tensor pt = flat_view(params, 0, from, to);
        const struct ts_tensor gt = flat_view(grads, 0, from, to);
        const struct ts_tensor mt = flat_view(&o->m, o->begin, from, to);
        const struct ts_tensor vt = flat_view(&o->v, o->begin, from, to);
        const float wd = p->decay ? o->cfg.weight_decay : 0.0f;
        if (o->master.data != NULL) {
            const struct ts_tensor wt = flat_view(&o->master, o->begin, from, to);
            TS_CHECK(ts_op_adamw_master(be, &pt, &wt, &gt, &mt, &vt, lr, o->cfg.beta1, o->cfg.beta2,
                                        o->cfg.eps, wd, scale, t));
        } else {
            TS_CHECK(ts_op_adamw(be, &pt, &gt, &mt, &vt, lr, o->cfg.beta1, o->cfg.beta2, o->cfg.eps,
                                 wd, scale, t));
        }
    }
    o->step++;
    return TS_OK;
}

ts_status ts_optim_step(ts_optim_t *o, float lr, float *grad_norm) {
    if (!isfinite(lr) || lr < 0)
        return ts_error(TS_ERR_INVALID_ARG, "optim step %" PRId64 ": learning rate %g is not >= 0",
                        o->step, (double)lr);
    double sum_sq;
    TS_CHECK(ts_optim_sum_squares(o, &sum_sq));
    const double norm = sqrt(sum_sq);
    if (grad_norm != NULL)
        *grad_norm = (float)norm;
    return ts_optim_update(o, lr, norm);
}

int64_t ts_optim_step_count(const ts_optim_t *o) { return o->step; }

void ts_optim_moments(const ts_optim_t *o, struct ts_tensor *m, struct ts_tensor *v) {
    *m = o->m;
    *v = o->v;
}

void ts_optim_set_step_count(ts_optim_t *o, int64_t steps) { o->step = steps; }

bool ts_optim_master(const ts_optim_t *o, struct ts_tensor *master) {
    if (o->master.data == NULL)
        return false;
    *master = o->master;
    return true;
}
