/* train.c: one optimizer update as grad-accum micro-steps over data-parallel ranks, and eval.
 *
 * A step: zero the gradients; run grad_accum forward/backward passes, micro-step a of rank r
 * reading global windows [p + (a*dp + r)*B, +B) of the step's global batch at loader position p
 * (so 1 rank x grad-accum 2 and 2 ranks x grad-accum 1 see the same windows); each token's loss
 * is weighted 1/(B*T*grad_accum*dp) so a plain sum over ranks gives the mean's gradient. Micro-
 * step a leaves its per-token losses in row a of a (grad_accum, B*T) buffer in backend memory.
 *
 * Host waits: the token ids go up from two pinned (host_alloc) buffers used in turn, each copy
 * queued asynchronously with an event after it, so the host reads micro-step a+1's batch and
 * queues its upload while the device still runs micro-step a; a buffer is waited for only when
 * it comes round again with its previous upload possibly in flight (micro-steps 2, 3, ... of a
 * step). After the last micro-step (and the reduction) the losses and the squared norm are
 * downloaded asynchronously into pinned memory and the host waits once for both: one read-back
 * per step, then the final sync that ends the step. At tensor parallel > 1 the norm is summed
 * per tensor class with its own downloads (tp_sum_squares). The arithmetic is what it was, so
 * the CPU backend (whose async copies are plain copies) gives the same bits.
 *
 * Gradient reduction goes by buckets: fixed ranges of the flat gradient buffer cut from its end
 * (backward produces gradients from the end of the buffer towards its start), so the boundaries
 * and hence the sums never depend on timing. During the last micro-step's backward the model
 * calls back after each layer; every bucket whose range is then final is posted (all-reduce, or
 * reduce-scatter with ZeRO-1) and every bucket in flight is tested, because Open MPI advances a
 * non-blocking collective only inside MPI calls. A bucket is ordered after the backward work that
 * produced it by an event recorded on the backend and handed to the post (MPI waits for it on the
 * host; NCCL's stream would wait for it on the device), never by a whole-device sync. After
 * backward the trainer waits for the rest; that wait is the exposed (not hidden) communication
 * time of the step. With one data-parallel rank the reduction is the identity: no hook is
 * installed and no bucket is posted.
 *
 * ZeRO-1: rank r owns the slice [r*n/dp, (r+1)*n/dp) of the flat buffer; each bucket is
 * reduce-scattered with counts = its overlap with each rank's slice, so after the last bucket
 * the rank's slice of the gradient buffer holds the global sum. The global norm is the sum of
 * the slices' sums of squares; AdamW updates the slice; an all-gather rebuilds the parameters in
 * their own dtype (a copy: bf16 parameters travel as bf16). */
#include <math.h>
#include <stdlib.h>
#include <time.h>

#include "kernels/ops.h"
#include "trainer/train.h"

#define DEFAULT_BUCKET_ELEMS ((int64_t)25 * 1024 * 1024 / 4)

struct bucket {
    int64_t begin, end; /* flat range */
    int *counts;        /* ZeRO-1: per-rank part of the range (dp entries) */
    struct ts_comm_req req;
};

struct ts_trainer {
    ts_gpt_t *gpt;
    struct ts_backend *be; /* the model's */
    ts_loader_t *loader;
    ts_comm_t *comm; /* the data-parallel group */
    ts_optim_t *opt;
    struct ts_train_config cfg;
    int dp, rank;
    int32_t *ids[2];         /* (2, B*T) each, host_alloc: inputs then targets; used in turn */
    ts_event_t *uploaded[2]; /* after the upload from ids[k] */
    bool in_flight[2];       /* uploaded[k] recorded and not yet known complete */
    int next_ids;            /* the buffer the next micro-step fills */
    int64_t steps;           /* updates done */
    ts_update_gate_fn gate;
    void *gate_ctx;

    struct ts_tensor losses; /* (grad_accum, B*T) f32 in backend memory: row a = micro-step a */
    float *host_losses;      /* (grad_accum * B*T), from host_alloc (the async download's) */
    float *host_norm_sq;     /* (1), from host_alloc: the squared gradient norm (tp 1) */
    ts_event_t *read_back;   /* after the downloads of host_losses and host_norm_sq */
    ts_event_t *ready;       /* dp > 1: after the work producing the buffer a collective moves */

    struct bucket *buckets; /* buckets[0] ends the buffer; posted in index order */
    int num_buckets, next_bucket;
    int *rs_counts;                   /* num_buckets * dp */
    int *shard_counts, *shard_displs; /* dp each: every rank's slice */
    int64_t shard_begin, shard_end;   /* this rank's slice */
};

static double now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec * 1e-6;
}

static int64_t min64(int64_t a, int64_t b) { return a < b ? a : b; }
static int64_t max64(int64_t a, int64_t b) { return a > b ? a : b; }

/* Fixed bucket boundaries and each rank's slice; counts fit MPI's int (checked). */
static ts_status plan_buckets(struct ts_trainer *tr) {
    const int64_t n = ts_gpt_num_params(tr->gpt);
    const int dp = tr->dp;
    int64_t be = tr->cfg.bucket_elems > 0 ? tr->cfg.bucket_elems : DEFAULT_BUCKET_ELEMS;
    if (be > (int64_t)1 << 30)
        be = (int64_t)1 << 30;
    tr->num_buckets = (int)((n + be - 1) / be);
    tr->buckets = calloc((size_t)tr->num_buckets, sizeof(*tr->buckets));
    tr->rs_counts = calloc((size_t)tr->num_buckets * (size_t)dp, sizeof(int));
    tr->shard_counts = calloc((size_t)dp, sizeof(int));
    tr->shard_displs = calloc((size_t)dp, sizeof(int));
    if (tr->buckets == NULL || tr->rs_counts == NULL || tr->shard_counts == NULL ||
        tr->shard_displs == NULL)
        return ts_error(TS_ERR_OOM, "trainer create: out of memory for %d buckets",
                        tr->num_buckets);
    if (tr->cfg.zero_stage == 1 && n > (int64_t)2147483647)
        return ts_error(TS_ERR_UNSUPPORTED, "--zero 1: %lld parameters exceed MPI's int count",
                        (long long)n);
    for (int r = 0; r < dp; r++) {
        const int64_t b = n * r / dp, e = n * (r + 1) / dp;
        tr->shard_displs[r] = (int)b;
        tr->shard_counts[r] = (int)(e - b);
        if (r == tr->rank) {
            tr->shard_begin = b;
            tr->shard_end = e;
        }
    }
    for (int k = 0; k < tr->num_buckets; k++) {
        struct bucket *bk = &tr->buckets[k];
        bk->end = n - (int64_t)k * be;
        bk->begin = max64(0, bk->end - be);
        bk->counts = &tr->rs_counts[(size_t)k * (size_t)dp];
        for (int r = 0; r < dp; r++) {
            const int64_t b = n * r / dp, e = n * (r + 1) / dp;
            bk->counts[r] = (int)max64(0, min64(bk->end, e) - max64(bk->begin, b));
        }
    }
    return TS_OK;
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
    if (cfg->zero_stage != 0 && cfg->zero_stage != 1)
        return ts_error(TS_ERR_INVALID_ARG, "trainer create: ZeRO stage must be 0 or 1, got %d",
                        cfg->zero_stage);
    if (cfg->bucket_elems < 0)
        return ts_error(TS_ERR_INVALID_ARG, "trainer create: bucket size must be >= 0");
    if (ts_gpt_num_params(gpt) < ts_comm_size(comm))
        return ts_error(TS_ERR_INVALID_ARG, "trainer create: fewer parameters than ranks");
    if (ts_gpt_tp_size(gpt) > 1 &&
        (cfg->tp == NULL || ts_comm_size(cfg->tp) != ts_gpt_tp_size(gpt)))
        return ts_error(TS_ERR_INVALID_ARG,
                        "trainer create: the model is split over %d tensor-parallel ranks; the "
                        "config must name that group",
                        ts_gpt_tp_size(gpt));

    ts_status st;
    struct ts_trainer *tr = calloc(1, sizeof(*tr));
    if (tr == NULL)
        return ts_error(TS_ERR_OOM, "trainer create: out of memory");
    tr->gpt = gpt;
    tr->be = ts_gpt_backend(gpt);
    tr->loader = loader;
    tr->comm = comm;
    tr->cfg = *cfg;
    tr->dp = ts_comm_size(comm);
    tr->rank = ts_comm_rank(comm);
    const size_t bt = (size_t)cfg->batch * (size_t)cfg->seq_len;
    for (int k = 0; k < 2; k++) {
        void *ids = NULL;
        TS_CHECK_GOTO(ts_op_host_alloc(tr->be, 2 * bt * sizeof(int32_t), &ids), st, fail);
        tr->ids[k] = ids;
        TS_CHECK_GOTO(ts_op_event_create(tr->be, &tr->uploaded[k]), st, fail);
    }
    const int64_t loss_shape[2] = {cfg->grad_accum, (int64_t)bt};
    TS_CHECK_GOTO(ts_op_alloc(tr->be, &tr->losses, TS_DTYPE_F32, 2, loss_shape), st, fail);
    void *host = NULL;
    TS_CHECK_GOTO(ts_op_host_alloc(tr->be, ts_tensor_nbytes(&tr->losses), &host), st, fail);
    tr->host_losses = host;
    TS_CHECK_GOTO(ts_op_host_alloc(tr->be, sizeof(float), &host), st, fail);
    tr->host_norm_sq = host;
    TS_CHECK_GOTO(ts_op_event_create(tr->be, &tr->read_back), st, fail);
    if (tr->dp > 1) {
        TS_CHECK_GOTO(ts_comm_check_backend(comm, tr->be), st, fail);
        TS_CHECK_GOTO(ts_op_event_create(tr->be, &tr->ready), st, fail);
    }
    TS_CHECK_GOTO(plan_buckets(tr), st, fail);
    if (cfg->zero_stage == 1)
        TS_CHECK_GOTO(
            ts_optim_create_range(&tr->opt, gpt, &cfg->adamw, tr->shard_begin, tr->shard_end), st,
            fail);
    else
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
    ts_gpt_set_grad_hook(tr->gpt, NULL, NULL);
    ts_optim_destroy(tr->opt);
    ts_op_event_destroy(tr->be, tr->ready);
    ts_op_event_destroy(tr->be, tr->read_back);
    ts_op_host_free(tr->be, tr->host_norm_sq);
    ts_op_host_free(tr->be, tr->host_losses);
    for (int k = 0; k < 2; k++) {
        ts_op_event_destroy(tr->be, tr->uploaded[k]);
        ts_op_host_free(tr->be, tr->ids[k]);
    }
    ts_op_free(tr->be, &tr->losses);
    free(tr->buckets);
    free(tr->rs_counts);
    free(tr->shard_counts);
    free(tr->shard_displs);
    free(tr);
}

int64_t ts_trainer_steps_done(const ts_trainer_t *tr) { return tr->steps; }
int ts_trainer_num_buckets(const ts_trainer_t *tr) { return tr->num_buckets; }

void ts_trainer_shard(const ts_trainer_t *tr, int64_t *begin, int64_t *end) {
    const bool zero = tr->cfg.zero_stage == 1;
    *begin = zero ? tr->shard_begin : 0;
    *end = zero ? tr->shard_end : ts_gpt_num_params(tr->gpt);
}

/* ---- bucketed reduction ---- */

static ts_status post_bucket(struct ts_trainer *tr, struct bucket *bk) {
    const struct ts_tensor *grads = ts_gpt_grad_buffer(tr->gpt);
    struct ts_tensor part = *grads;
    part.data = (float *)grads->data + bk->begin;
    part.shape[0] = bk->end - bk->begin;
    if (tr->cfg.zero_stage == 1)
        return ts_comm_reduce_scatter_start(tr->comm, tr->be, &part, bk->counts, tr->ready,
                                            &bk->req);
    return ts_comm_all_reduce_start(tr->comm, tr->be, &part, tr->ready, &bk->req);
}

/* Posts every bucket not yet posted whose range lies at offsets >= final_from, after an event
 * that marks the backward work issued so far (which produced them). */
static ts_status post_final(struct ts_trainer *tr, int64_t final_from) {
    if (tr->next_bucket == tr->num_buckets || tr->buckets[tr->next_bucket].begin < final_from)
        return TS_OK;
    TS_CHECK(ts_op_event_record(tr->be, tr->ready));
    while (tr->next_bucket < tr->num_buckets && tr->buckets[tr->next_bucket].begin >= final_from)
        TS_CHECK(post_bucket(tr, &tr->buckets[tr->next_bucket++]));
    return TS_OK;
}

/* Drives every posted bucket forward (an MPI_Test each). */
static ts_status progress(struct ts_trainer *tr) {
    for (int k = 0; k < tr->next_bucket; k++) {
        bool done;
        TS_CHECK(ts_comm_test(tr->comm, &tr->buckets[k].req, &done));
    }
    return TS_OK;
}

/* Backward's callback (dp > 1 only): gradients at offsets >= final_from are final. */
static ts_status on_grads_final(void *ctx, int64_t final_from) {
    struct ts_trainer *tr = ctx;
    TS_CHECK(post_final(tr, final_from));
    return progress(tr);
}

/* Posts what backward has not, waits for all; records the wait and what was done already. With
 * one rank there is nothing to reduce: no wait, and every bucket counts as done. */
static ts_status finish_buckets(struct ts_trainer *tr, struct ts_step_record *r) {
    const double t0 = now_ms();
    r->backward_end_ms = t0;
    if (tr->dp == 1) {
        r->buckets_done_in_backward = tr->num_buckets;
        r->reduce_end_ms = t0;
        r->comm_wait_ms = 0;
        return TS_OK;
    }
    r->buckets_done_in_backward = 0;
    for (int k = 0; k < tr->next_bucket; k++)
        r->buckets_done_in_backward += !tr->buckets[k].req.active;
    TS_CHECK(post_final(tr, 0));
    for (int k = 0; k < tr->num_buckets; k++)
        TS_CHECK(ts_comm_wait(tr->comm, &tr->buckets[k].req));
    r->reduce_end_ms = now_ms();
    r->comm_wait_ms = r->reduce_end_ms - t0;
    return TS_OK;
}

/* Leaves no request in flight after a failure (buffers are about to change). */
static ts_status cancel_buckets(struct ts_trainer *tr) {
    ts_status st = TS_OK;
    for (int k = 0; k < tr->next_bucket; k++) {
        ts_status w = TS_OK;
        TS_CHECK_KEEP(w, ts_comm_wait(tr->comm, &tr->buckets[k].req));
        if (w != TS_OK)
            tr->buckets[k].req.active = false;
        if (st == TS_OK)
            st = w;
    }
    tr->next_bucket = 0;
    return st;
}

/* The next pinned id buffer, free to fill: waits for its previous upload only if that may still
 * be in flight. */
static ts_status take_ids(struct ts_trainer *tr, int *k) {
    *k = tr->next_ids;
    tr->next_ids ^= 1;
    if (tr->in_flight[*k])
        TS_CHECK(ts_op_event_sync(tr->be, tr->uploaded[*k]));
    tr->in_flight[*k] = false;
    return TS_OK;
}

/* The forwards and backwards of one update (accum micro-steps: the batch ramp's for this step);
 * row a of tr->losses gets micro-step a's per-token losses, and their download to
 * tr->host_losses is queued after the last. */
static ts_status micro_steps(struct ts_trainer *tr, int accum, double *data_ms) {
    const int B = tr->cfg.batch, T = tr->cfg.seq_len, dp = tr->dp;
    const float dloss = (float)(1.0 / ((double)B * T * accum * dp));
    const int64_t pos = ts_loader_position(tr->loader), BT = (int64_t)B * T;
    for (int a = 0; a < accum; a++) {
        const int64_t first = pos + ((int64_t)a * dp + tr->rank) * B;
        struct ts_tensor row;
        TS_CHECK(ts_tensor_view(&row, &tr->losses, a * BT, 1, &BT));
        int k;
        TS_CHECK(take_ids(tr, &k));
        int32_t *inputs = tr->ids[k], *targets = tr->ids[k] + BT;
        const double t0 = now_ms();
        TS_CHECK(ts_loader_read(tr->loader, first, B, false, inputs, targets));
        *data_ms += now_ms() - t0;
        tr->in_flight[k] = true; /* from here on the upload may be queued */
        TS_CHECK(
            ts_gpt_forward_losses(tr->gpt, inputs, targets, B, T, dloss, &row, tr->uploaded[k]));
        const bool last = a == accum - 1;
        if (last && !tr->cfg.no_overlap && dp > 1)
            ts_gpt_set_grad_hook(tr->gpt, on_grads_final, tr);
        const ts_status st = ts_gpt_backward(tr->gpt);
        ts_gpt_set_grad_hook(tr->gpt, NULL, NULL);
        TS_CHECK(st);
    }
    ts_loader_seek(tr->loader, pos + (int64_t)B * accum * dp);
    /* a ramped step fills only its first accum rows */
    const int64_t n = (int64_t)accum * BT;
    struct ts_tensor rows;
    TS_CHECK(ts_tensor_view(&rows, &tr->losses, 0, 1, &n));
    return ts_op_download_async(tr->be, tr->host_losses, &rows, ts_tensor_nbytes(&rows));
}

/* After the reduction: the squared norm's download joins the losses' (at tp 1), and the host
 * waits once for both. Every upload was queued before, so no id buffer is in flight after. */
static ts_status read_back(struct ts_trainer *tr) {
    if (ts_gpt_tp_size(tr->gpt) == 1)
        TS_CHECK(ts_optim_sum_squares_async(tr->opt, tr->host_norm_sq));
    TS_CHECK(ts_op_event_record(tr->be, tr->read_back));
    TS_CHECK(ts_op_event_sync(tr->be, tr->read_back));
    tr->in_flight[0] = tr->in_flight[1] = false;
    return TS_OK;
}

/* The sum over micro-steps of each one's mean loss, in exactly the arithmetic of a per-micro-step
 * ts_gpt_forward (a double sum of B*T floats, divided, rounded to float), so losses stay
 * bit-identical to that. After read_back. */
static void sum_losses(struct ts_trainer *tr, int accum, double *loss_sum) {
    const int64_t BT = (int64_t)tr->cfg.batch * tr->cfg.seq_len;
    *loss_sum = 0;
    for (int a = 0; a < accum; a++) {
        const float *row = tr->host_losses + (size_t)a * (size_t)BT;
        double sum = 0;
        for (int64_t i = 0; i < BT; i++)
            sum += row[i];
        const float loss = (float)(sum / (double)BT);
        *loss_sum += loss;
    }
}

static ts_status tp_all_reduce(void *ctx, struct ts_backend *be, const struct ts_tensor *buf) {
    return ts_comm_all_reduce(ctx, be, buf, TS_REDUCE_SUM, NULL);
}

static ts_status tp_all_reduce_max(void *ctx, struct ts_backend *be, const struct ts_tensor *buf) {
    return ts_comm_all_reduce(ctx, be, buf, TS_REDUCE_MAX, NULL);
}

struct ts_gpt_tp ts_trainer_tp(ts_comm_t *tp) {
    if (tp == NULL)
        return (struct ts_gpt_tp){.size = 1, .rank = 0};
    return (struct ts_gpt_tp){.size = ts_comm_size(tp),
                              .rank = ts_comm_rank(tp),
                              .all_reduce = tp_all_reduce,
                              .all_reduce_max = tp_all_reduce_max,
                              .ctx = tp};
}

/* Tensor parallelism: the split tensors' squares summed over the tp group, the replicated ones
 * (the same on every tp rank) counted once. */
static ts_status tp_sum_squares(struct ts_trainer *tr, bool sharded, double *sum_sq) {
    int64_t begin, end;
    ts_trainer_shard(tr, &begin, &end);
    double parts[2];
    TS_CHECK(ts_gpt_grad_sum_squares(tr->gpt, begin, end, true, &parts[0]));
    TS_CHECK(ts_gpt_grad_sum_squares(tr->gpt, begin, end, false, &parts[1]));
    if (sharded)
        TS_CHECK(ts_comm_all_reduce_host(tr->comm, parts, 2, TS_REDUCE_SUM));
    TS_CHECK(ts_comm_all_reduce_host(tr->cfg.tp, &parts[0], 1, TS_REDUCE_SUM));
    *sum_sq = parts[0] + parts[1];
    return TS_OK;
}

/* Norm over the reduced gradients (at tp 1 read back already), the gate, then the update (and
 * the all-gather with ZeRO-1). */
static ts_status update(struct ts_trainer *tr, struct ts_step_record *r) {
    const bool sharded = tr->cfg.zero_stage == 1 && tr->dp > 1;
    double sum_sq;
    if (ts_gpt_tp_size(tr->gpt) > 1) {
        TS_CHECK(tp_sum_squares(tr, sharded, &sum_sq));
    } else {
        sum_sq = (double)*tr->host_norm_sq;
        if (sharded)
            TS_CHECK(ts_comm_all_reduce_host(tr->comm, &sum_sq, 1, TS_REDUCE_SUM));
    }
    const double norm = sqrt(sum_sq);
    r->grad_norm = (float)norm;
    if (!isfinite(norm))
        return TS_OK; /* not applied; the record's norm tells the caller the run diverged */
    if (tr->gate != NULL) {
        TS_CHECK(tr->gate(tr->gate_ctx, r, &r->skipped));
        if (r->skipped)
            return TS_OK; /* the parameters are untouched, so every rank still holds them */
    }
    TS_CHECK(ts_optim_update(tr->opt, r->lr, norm));
    if (sharded) { /* the parameters in their dtype, after the update that wrote the slice */
        TS_CHECK(ts_op_event_record(tr->be, tr->ready));
        TS_CHECK(ts_comm_all_gather(tr->comm, tr->be, ts_gpt_param_buffer(tr->gpt),
                                    tr->shard_counts, tr->shard_displs, tr->ready));
    }
    return TS_OK;
}

ts_gpt_t *ts_trainer_gpt(const ts_trainer_t *tr) { return tr->gpt; }
ts_optim_t *ts_trainer_optim(const ts_trainer_t *tr) { return tr->opt; }
ts_loader_t *ts_trainer_loader(const ts_trainer_t *tr) { return tr->loader; }
void ts_trainer_set_steps_done(ts_trainer_t *tr, int64_t steps) { tr->steps = steps; }
void ts_trainer_set_update_gate(ts_trainer_t *tr, ts_update_gate_fn gate, void *ctx) {
    tr->gate = gate;
    tr->gate_ctx = ctx;
}

ts_status ts_trainer_step(ts_trainer_t *tr, struct ts_step_record *rec) {
    const int B = tr->cfg.batch, T = tr->cfg.seq_len;
    /* The batch ramp: a pure function of the tokens consumed (the loader position), the same on
     * every rank and on a resume. */
    const int accum =
        ts_batch_ramp_accum(&tr->cfg.ramp, tr->cfg.grad_accum, ts_loader_position(tr->loader) * T);
    struct ts_backend *be = tr->be;
    const double t0 = now_ms();

    TS_CHECK(ts_gpt_zero_grad(tr->gpt));
    tr->next_bucket = 0;
    double loss_sum = 0;
    struct ts_step_record r = {0};
    r.grad_accum = accum;
    ts_status st = micro_steps(tr, accum, &r.data_ms);
    if (st == TS_OK)
        st = finish_buckets(tr, &r);
    if (st == TS_OK)
        st = read_back(tr);
    if (st != TS_OK) {
        TS_CHECK_KEEP(st, cancel_buckets(tr));
        return st;
    }
    sum_losses(tr, accum, &loss_sum);
    double loss = loss_sum;
    if (tr->dp > 1)
        TS_CHECK(ts_comm_all_reduce_host(tr->comm, &loss, 1, TS_REDUCE_SUM));
    loss /= (double)accum * tr->dp;

    r.step = tr->steps;
    r.loss = (float)loss;
    r.lr = ts_lr_at(&tr->cfg.lr, tr->steps);
    r.tokens = (int64_t)B * T * accum * tr->dp;
    st = update(tr, &r);
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

ts_status ts_eval_loss(ts_gpt_t *gpt, ts_loader_t *loader, ts_comm_t *comm, int B, int batches,
                       double *mean_loss, int64_t *tokens) {
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
    double sum = 0;
    if (in == NULL || tg == NULL) {
        st = ts_error(TS_ERR_OOM, "eval: out of memory for the token buffers");
        goto exit;
    }
    const int rank = comm ? ts_comm_rank(comm) : 0, size = comm ? ts_comm_size(comm) : 1;
    for (int64_t i = rank; i < n; i += size) {
        float loss;
        /* Eval reads file order from the start, whatever the loader's shuffle or position. */
        TS_CHECK_GOTO(ts_loader_read(loader, i * B, B, true, in, tg), st, exit);
        TS_CHECK_GOTO(ts_gpt_forward(gpt, in, tg, B, T, 0.0f, &loss), st, exit);
        sum += loss;
    }
    if (comm != NULL)
        TS_CHECK_GOTO(ts_comm_all_reduce_host(comm, &sum, 1, TS_REDUCE_SUM), st, exit);
    *mean_loss = sum / (double)n;
    if (tokens != NULL)
        *tokens = n * (int64_t)bt;
exit:
    free(in);
    free(tg);
    return st;
}
