/* run.c: the run loop (run.h): a step, then one decision at the boundary, then its actions.
 *
 * Order at a boundary: eval, then checkpoint, then stop, so a checkpoint taken at the end has
 * the final val loss logged before it. A diverged update is never saved: its decision carries no
 * checkpoint (the coordinator's job), and the loop saves only what a decision asks for. */
#include "trainer/run.h"

#include <time.h>

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

const char *ts_stop_reason_name(enum ts_stop_reason r) {
    switch (r) {
    case TS_STOP_NONE:
        return "none";
    case TS_STOP_DONE:
        return "done";
    case TS_STOP_AFTER:
        return "stop-after";
    case TS_STOP_TIME:
        return "time";
    case TS_STOP_PREEMPTED:
        return "preempted";
    case TS_STOP_DIVERGED:
        return "diverged";
    }
    return "unknown";
}

struct ts_run_decision ts_run_cadence(const struct ts_run_config *cfg, bool have_val,
                                      int64_t done) {
    struct ts_run_decision d = {0, TS_STOP_NONE};
    if (done >= cfg->stop) {
        d.actions |= TS_RUN_STOP | TS_RUN_CHECKPOINT;
        d.reason = done >= cfg->steps ? TS_STOP_DONE : TS_STOP_AFTER;
    }
    if (have_val && ((cfg->eval_every > 0 && done % cfg->eval_every == 0) || done >= cfg->steps))
        d.actions |= TS_RUN_EVAL;
    if (cfg->ckpt_every > 0 && done % cfg->ckpt_every == 0)
        d.actions |= TS_RUN_CHECKPOINT;
    return d;
}

static ts_status run_eval(ts_trainer_t *tr, ts_comm_t *dp, ts_loader_t *val,
                          const struct ts_run_config *cfg, const struct ts_run_hooks *h,
                          int64_t done) {
    double loss = 0.0;
    int64_t tokens = 0;
    const double t0 = now_s();
    TS_CHECK(ts_eval_loss(ts_trainer_gpt(tr), val, dp, cfg->eval_batch, cfg->eval_batches, &loss,
                          &tokens));
    return h->on_eval ? h->on_eval(h->ctx, done, loss, tokens, now_s() - t0) : TS_OK;
}

/* Saves begun and not yet reported: the stall each cost (at most two: the one in flight and
 * the one its begin waited for). */
struct saves {
    ts_train_saver_t *saver;
    int64_t step[2];
    double stall[2];
    int n;
};

/* Every save committed since the last call, to the hook: its stall and its own duration. */
static ts_status report_saves(struct saves *sv, const struct ts_run_hooks *h) {
    struct ts_ckpt_saved saved;
    while (ts_ckpt_writer_take(ts_train_saver_writer(sv->saver), &saved)) {
        double stall = 0;
        for (int i = 0; i < sv->n; i++)
            if (sv->step[i] == saved.step) {
                stall = sv->stall[i];
                sv->step[i] = sv->step[--sv->n];
                sv->stall[i] = sv->stall[sv->n];
                break;
            }
        if (h->on_checkpoint)
            TS_CHECK(h->on_checkpoint(h->ctx, saved.step, saved.path, stall, saved.save_s));
    }
    return TS_OK;
}

static ts_status run_checkpoint(struct saves *sv, const struct ts_run_config *cfg,
                                const struct ts_train_state_info *info, int64_t done) {
    const double t0 = now_s();
    TS_CHECK(ts_train_saver_begin(sv->saver, info, cfg->ckpt_dir, cfg->keep_last));
    if (sv->n == 2) /* cannot happen: begin waited for the previous save */
        sv->n = 1;
    sv->step[sv->n] = done;
    sv->stall[sv->n++] = now_s() - t0;
    return TS_OK;
}

static ts_status run_loop(ts_trainer_t *tr, struct saves *sv, ts_comm_t *dp, ts_loader_t *val,
                          const struct ts_run_config *cfg, struct ts_train_state_info *info,
                          const struct ts_run_hooks *h, int64_t *done_out,
                          struct ts_run_result *out) {
    int64_t done = *done_out;
    for (bool stop = done >= cfg->stop; !stop;) {
        struct ts_step_record rec;
        if (h->before_step)
            TS_CHECK(h->before_step(h->ctx, done));
        TS_CHECK(ts_trainer_step(tr, &rec));
        done = *done_out = ts_trainer_steps_done(tr);
        info->tokens_seen += rec.tokens;
        if (h->on_step)
            TS_CHECK(h->on_step(h->ctx, &rec));
        /* a save in flight moves on (collective: every rank polls at every boundary) */
        TS_CHECK(ts_ckpt_writer_poll(ts_train_saver_writer(sv->saver), false));
        TS_CHECK(report_saves(sv, h));
        struct ts_run_decision d = ts_run_cadence(cfg, val != NULL, done);
        if (h->decide)
            TS_CHECK(h->decide(h->ctx, &rec, &d));
        if ((d.actions & TS_RUN_EVAL) && val != NULL)
            TS_CHECK(run_eval(tr, dp, val, cfg, h, done));
        if (d.actions & TS_RUN_CHECKPOINT)
            TS_CHECK(run_checkpoint(sv, cfg, info, done));
        stop = (d.actions & TS_RUN_STOP) != 0;
        if (stop) /* a stop waits for the save in flight: a finished save is never lost */
            TS_CHECK(ts_ckpt_writer_poll(ts_train_saver_writer(sv->saver), true));
        TS_CHECK(report_saves(sv, h));
        if (stop)
            out->reason = d.reason;
    }
    return TS_OK;
}

ts_status ts_run(ts_trainer_t *tr, ts_comm_t *world, ts_comm_t *dp, ts_loader_t *val,
                 const struct ts_run_config *cfg, struct ts_train_state_info *info,
                 const struct ts_run_hooks *hooks, struct ts_run_result *out) {
    static const struct ts_run_hooks none = {0};
    const struct ts_run_hooks *h = hooks ? hooks : &none;
    const double t0 = now_s();
    const int64_t first = ts_trainer_steps_done(tr);
    *out = (struct ts_run_result){.first = first, .last = first, .reason = TS_STOP_NONE};
    int64_t done = first;
    /* pruning deletes only what this run saved or continues, by exact name */
    struct ts_ckpt_names owned = {0};
    if (cfg->continues_dir)
        TS_CHECK(ts_ckpt_names_scan(&owned, cfg->ckpt_dir, first));
    struct ts_ckpt_names *const before = info->owned;
    info->owned = &owned;
    struct saves sv = {0};
    ts_status st = ts_train_saver_create(&sv.saver, tr, world, !cfg->sync_save);
    if (st == TS_OK)
        st = run_loop(tr, &sv, dp, val, cfg, info, h, &done, out);
    /* after an error: waits for the writer (one rank alone commits a written save) */
    ts_train_saver_destroy(sv.saver);
    info->owned = before;
    ts_ckpt_names_deinit(&owned);
    TS_CHECK(st);
    /* No rank reports success before rank 0 has committed the last checkpoint. */
    TS_CHECK(ts_comm_barrier(world));
    out->last = done;
    out->tokens_seen = info->tokens_seen;
    out->seconds = now_s() - t0;
    return TS_OK;
}
