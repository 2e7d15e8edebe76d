/* train.c: one optimizer update as grad-accum micro-steps, and the eval loss.
 *
 * A step: zero the gradients, run grad_accum forward/backward passes over the loader's next
 * windows (each token weighted 1/(B*T*grad_accum), so the gradient is that of the mean loss),
 * average gradients and loss over the communicator, clip and update with the schedule's rate.
 * The host token buffers are allocated at create time; the step loop allocates nothing. */
#include <math.h>
#include <stdlib.h>
#include <time.h>

#include "kernels/ops.h"
#include "trainer/train.h"

struct ts_trainer {
    ts_gpt_t *gpt;
    ts_loader_t *loader;
    ts_comm_t *comm;
    ts_optim_t *opt;
    struct ts_train_config cfg;
    int32_t *inputs, *targets; /* (B*T) host */
    int steps;                 /* updates done */
};

static double now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec * 1e-6;
}

ts_status ts_trainer_create(ts_trainer_t **out, ts_gpt_t *gpt, ts_loader_t *loader, ts_comm_t *comm,
                            const struct ts_train_config *cfg) {
    if (out == NULL)
        return ts_error(TS_ERR_INVALID_ARG, "trainer create: out is NULL");
    *out = NULL;
    if (gpt == NULL || loader == NULL || comm == NULL || cfg == NULL)
        return ts_error(TS_ERR_INVALID_ARG,
                        "trainer create: model, loader, communicator and config are required");
    if (cfg->batch < 1 || cfg->seq_len < 1 || cfg->grad_accum < 1)
        return ts_error(TS_ERR_INVALID_ARG,
                        "trainer create: batch (%d), seq_len (%d) and grad_accum (%d) must be >= 1",
                        cfg->batch, cfg->seq_len, cfg->grad_accum);
    if (ts_loader_seq_len(loader) != cfg->seq_len)
        return ts_error(TS_ERR_INVALID_ARG,
                        "trainer create: the loader cuts windows of T = %d, the config says %d",
                        ts_loader_seq_len(loader), cfg->seq_len);
    if (cfg->lr.max_lr < 0 || !isfinite(cfg->lr.max_lr))
        return ts_error(TS_ERR_INVALID_ARG, "trainer create: max_lr must be >= 0, got %g",
                        (double)cfg->lr.max_lr);

    ts_status st;
    struct ts_trainer *tr = calloc(1, sizeof(*tr));
    if (tr == NULL)
        return ts_error(TS_ERR_OOM, "trainer create: out of memory");
    tr->gpt = gpt;
    tr->loader = loader;
    tr->comm = comm;
    tr->cfg = *cfg;
    const size_t bt = (size_t)cfg->batch * (size_t)cfg->seq_len;
    tr->inputs = malloc(bt * sizeof(int32_t));
    tr->targets = malloc(bt * sizeof(int32_t));
    if (tr->inputs == NULL || tr->targets == NULL) {
        st = ts_error(TS_ERR_OOM, "trainer create: out of memory for the token buffers");
        goto fail;
    }
    TS_CHECK_GOTO(ts_optim_create(&tr->opt, gpt, &cfg->adamw), st, fail);
    *out = tr;
    return TS_OK;
fail:
    ts_trainer_destroy(tr);
    return st;
}

void ts_trainer_destroy(ts_trainer_t *tr) {
    if (tr == NULL)
        return;
    ts_optim_destroy(tr->opt);
    free(tr->inputs);
    free(tr->targets);
    free(tr);
}

int ts_trainer_steps_done(const ts_trainer_t *tr) { return tr->steps; }

ts_status ts_trainer_step(ts_trainer_t *tr, struct ts_step_record *rec) {
    const int B = tr->cfg.batch, T = tr->cfg.seq_len, accum = tr->cfg.grad_accum;
    struct ts_backend *be = ts_gpt_backend(tr->gpt);
    const double t0 = now_ms();
    const float dloss = (float)(1.0 / ((double)B * T * accum));

    TS_CHECK(ts_gpt_zero_grad(tr->gpt));
    double loss_sum = 0;
    for (int a = 0; a < accum; a++) {
        float loss;
        TS_CHECK(ts_loader_next(tr->loader, B, tr->inputs, tr->targets));
        TS_CHECK(ts_gpt_forward(tr->gpt, tr->inputs, tr->targets, B, T, dloss, &loss));
        TS_CHECK(ts_gpt_backward(tr->gpt));
        loss_sum += loss;
    }
    TS_CHECK(ts_comm_all_reduce(tr->comm, be, ts_gpt_grad_buffer(tr->gpt), TS_REDUCE_AVG));
    double loss = loss_sum / accum;
    TS_CHECK(ts_comm_all_reduce_host(tr->comm, &loss, 1, TS_REDUCE_AVG));

    struct ts_step_record r = {0};
    r.step = tr->steps;
    r.loss = (float)loss;
    r.lr = ts_lr_at(&tr->cfg.lr, tr->steps);
    r.tokens = (int64_t)B * T * accum * ts_comm_size(tr->comm);
    const ts_status st = ts_optim_step(tr->opt, r.lr, &r.grad_norm);
    if (st == TS_OK)
        TS_CHECK(ts_op_sync(be));
    r.step_ms = now_ms() - t0;
    r.tok_per_s = r.step_ms > 0 ? (double)r.tokens / (r.step_ms * 1e-3) : 0;
    if (rec != NULL)
        *rec = r;
    if (st != TS_OK)
        return st; /* the record still says what the failed step saw (loss, norm) */
    tr->steps++;
    return TS_OK;
}

ts_status ts_eval_loss(ts_gpt_t *gpt, ts_loader_t *loader, int B, int batches, double *mean_loss,
                       int64_t *tokens) {
    if (gpt == NULL || loader == NULL || mean_loss == NULL)
        return ts_error(TS_ERR_INVALID_ARG, "eval: model, loader and mean_loss are required");
    if (B < 1)
        return ts_error(TS_ERR_INVALID_ARG, "eval: batch must be >= 1, got %d", B);
    const int T = ts_loader_seq_len(loader);
    const int64_t full = ts_loader_num_windows(loader) / B;
    if (full < 1)
        return ts_error(TS_ERR_INVALID_ARG,
                        "eval: the data holds %lld windows of %d tokens, fewer than one batch "
                        "of %d",
                        (long long)ts_loader_num_windows(loader), T, B);
    /* More batches than the file holds would count windows twice: stop at the last full one. */
    const int64_t n = batches <= 0 || batches > full ? full : batches;

    ts_status st = TS_OK;
    const size_t bt = (size_t)B * (size_t)T;
    int32_t *in = malloc(bt * sizeof(int32_t)), *tg = malloc(bt * sizeof(int32_t));
    const int64_t saved = ts_loader_position(loader);
    double sum = 0;
    if (in == NULL || tg == NULL) {
        st = ts_error(TS_ERR_OOM, "eval: out of memory for the token buffers");
        goto exit;
    }
    ts_loader_seek(loader, 0);
    for (int64_t i = 0; i < n; i++) {
        float loss;
        TS_CHECK_GOTO(ts_loader_next(loader, B, in, tg), st, exit);
        TS_CHECK_GOTO(ts_gpt_forward(gpt, in, tg, B, T, 0.0f, &loss), st, exit);
        sum += loss;
    }
    *mean_loss = sum / (double)n;
    if (tokens != NULL)
        *tokens = n * (int64_t)bt;
exit:
    ts_loader_seek(loader, saved);
    free(in);
    free(tg);
    return st;
}
