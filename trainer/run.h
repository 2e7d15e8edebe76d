/* run.h: the run loop: updates from where the trainer stands to the stop, with one decision at
 * every step boundary.
 *
 * After each update the loop asks for a decision: any of evaluate, checkpoint and stop (with a
 * reason). The default decision is the run's cadence (ts_run_cadence: eval every N, checkpoint
 * every N, at --stop-after and at the last step); a `decide` hook may replace it, and it is the
 * seam where the coordinator (launch/) makes one decision for every rank. Every rank must act on
 * the same decision at the same step: the loop's eval, checkpoint and final barrier are
 * collectives. The other hooks report (metrics, progress lines) and inject faults; the loop
 * itself prints nothing. */
#ifndef TS_RUN_H
#define TS_RUN_H

#include <stdbool.h>
#include <stdint.h>

#include "trainer/state.h"
#include "trainer/train.h"

enum ts_run_action {
    TS_RUN_EVAL = 1 << 0,
    TS_RUN_CHECKPOINT = 1 << 1,
    TS_RUN_STOP = 1 << 2,
};

enum ts_stop_reason {
    TS_STOP_NONE = 0,
    TS_STOP_DONE,      /* the schedule's last update (--steps) is done */
    TS_STOP_AFTER,     /* --stop-after reached */
    TS_STOP_TIME,      /* the time budget is spent */
    TS_STOP_PREEMPTED, /* a signal asked the job to stop */
    TS_STOP_DIVERGED,  /* a NaN/Inf or a spike: the update is not saved */
};
const char *ts_stop_reason_name(enum ts_stop_reason r);

struct ts_run_decision {
    unsigned actions; /* TS_RUN_* */
    enum ts_stop_reason reason;
};

struct ts_run_config {
    int64_t steps;        /* the schedule's horizon: updates in the whole run */
    int64_t stop;         /* stop after this update (<= steps; steps when not stopping early) */
    int64_t eval_every;   /* 0: only at the last update */
    int eval_batches;     /* per eval (0: the whole val file) */
    int eval_batch;       /* B of an eval batch */
    int64_t ckpt_every;   /* 0: only at stop */
    int keep_last;        /* checkpoints kept (0: all) */
    const char *ckpt_dir; /* "<run>/checkpoints" */
    bool continues_dir;   /* --resume: ckpt_dir's checkpoints up to the start are this run's */
    bool sync_save;       /* save with training stopped (--sync-save); else in the background */
};

/* What the loop reports and asks; every member may be NULL. */
struct ts_run_hooks {
    void *ctx;
    /* Before update `step` (0-based): an error ends the run. */
    ts_status (*before_step)(void *ctx, int64_t step);
    /* After each update, before the decision. */
    ts_status (*on_step)(void *ctx, const struct ts_step_record *rec);
    /* d holds the cadence's decision; the hook may change it. */
    ts_status (*decide)(void *ctx, const struct ts_step_record *rec, struct ts_run_decision *d);
    ts_status (*on_eval)(void *ctx, int64_t step, double loss, int64_t tokens, double seconds);
    /* A save committed (possibly some steps after it began): the training stall it cost and
     * its own duration, begin to commit. */
    ts_status (*on_checkpoint)(void *ctx, int64_t step, const char *path, double stall_s,
                               double save_s);
};

/* The decision the cadence alone gives after update `done` (1-based count of updates). */
struct ts_run_decision ts_run_cadence(const struct ts_run_config *cfg, bool have_val, int64_t done);

struct ts_run_result {
    int64_t first, last; /* updates done at the start and at the end */
    enum ts_stop_reason reason;
    int64_t tokens_seen; /* info->tokens_seen plus this run's tokens */
    double seconds;
};

/* Runs updates until a decision stops it (or `stop` is reached). Collective over the world of
 * `info->layout` (`world`) and the trainer's data-parallel group (`dp`, which evaluates `val`,
 * NULL for no eval). `info` is what every checkpoint records; its tokens_seen is where the run
 * starts and is advanced by the loop. A failure returns at once with the status; the caller
 * ends the job (launch/world.h), since peers may be inside a collective. */
ts_status ts_run(ts_trainer_t *tr, ts_comm_t *world, ts_comm_t *dp, ts_loader_t *val,
                 const struct ts_run_config *cfg, struct ts_train_state_info *info,
                 const struct ts_run_hooks *hooks, struct ts_run_result *out) TS_MUST_CHECK;

#endif
