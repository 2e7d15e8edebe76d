/* coordinator.c: step reports in, one decision out (coordinator.h).
 *
 * Reports become protobuf-c StepReports packed into fixed slots of SLOT_WORDS doubles (word 0
 * the length, then 4 bytes per word as an integer, exact under a sum); one all_reduce_host
 * gathers every slot on every rank, rank 0 reads them, decides, and broadcasts the Decision in a
 * fixed buffer. Two small collectives per step, none with one rank. */
#include "launch/coordinator.h"

#include <inttypes.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include "coordinator.pb-c.h"
#include "kernels/log.h"
#include "launch/common.h"
#include "launch/signals.h"

#define SLOT_BYTES 252
#define SLOT_WORDS (1 + SLOT_BYTES / 4)
#define DECISION_BYTES 512
#define GATE_BYTES 64
#define MAX_WINDOW 100000
#define DISK_BYTES_PER_S 100e6 /* a conservative write speed for the first save's estimate */
#define SAVE_FILES_S 0.25      /* and its files, fsyncs and commit, however small the state */
#define SAFETY 1.25            /* on the measured times that make the time margin */

struct report {
    int rank, signal;
    int64_t step, tokens, peak_rss_kb;
    float loss, grad_norm;
    double step_ms, compute_ms, comm_ms, data_ms, ckpt_ms, decide_ms;
    bool skipped;
};

struct ts_coord {
    ts_comm_t *world;
    int rank, size;
    struct ts_coord_config cfg;
    struct report *reports; /* size */
    double *slots;          /* size * SLOT_WORDS */
    double stall_s;         /* checkpoint time not yet reported */
    /* rank 0's view */
    double last_save_s, eval_s, slowest_step_s;
    double last_boundary, noted_s; /* the previous decision's time; eval and save time since */
    /* the run's totals over steps and ranks, for the summary */
    int64_t decisions, peak_rss_kb;
    double decide_s, sum_step, sum_compute, sum_comm, sum_data, sum_ckpt;
    double last_decide_s;     /* this rank's previous decision */
    double sum_min_decide_ms; /* per step, the fastest rank's decision: the exchange's own cost */
    int64_t decide_samples;
    float *window; /* recent losses for the z-score (ring) */
    int window_len, window_at;
    char detail[384];
};

static void *xcalloc(size_t n, size_t size) { return calloc(n ? n : 1, size); }

ts_status ts_coord_create(ts_coord_t **out, ts_comm_t *world, const struct ts_coord_config *cfg) {
    *out = NULL;
    struct ts_coord *c = calloc(1, sizeof(*c));
    if (c == NULL)
        return ts_error(TS_ERR_OOM, "coordinator: out of memory");
    c->world = world;
    c->rank = ts_comm_rank(world);
    c->size = ts_comm_size(world);
    c->cfg = *cfg;
    if (c->cfg.spike_window < 1)
        c->cfg.spike_window = 100;
    if (c->cfg.spike_window > MAX_WINDOW)
        c->cfg.spike_window = MAX_WINDOW;
    if (c->cfg.spike_min < 2)
        c->cfg.spike_min = 2;
    c->last_save_s = -1;
    c->last_boundary = ts_launch_now_s();
    c->reports = xcalloc((size_t)c->size, sizeof(*c->reports));
    c->slots = xcalloc((size_t)c->size * SLOT_WORDS, sizeof(double));
    c->window = xcalloc((size_t)c->cfg.spike_window, sizeof(float));
    if (c->reports == NULL || c->slots == NULL || c->window == NULL) {
        const int n = c->size;
        ts_coord_destroy(c);
        return ts_error(TS_ERR_OOM, "coordinator: out of memory for %d ranks", n);
    }
    *out = c;
    return TS_OK;
}

void ts_coord_destroy(ts_coord_t *c) {
    if (c == NULL)
        return;
    free(c->reports);
    free(c->slots);
    free(c->window);
    free(c);
}

void ts_coord_note_checkpoint(ts_coord_t *c, double stall_s, double save_s) {
    if (c->cfg.ledger != NULL)
        ts_ledger_note_checkpoint(c->cfg.ledger, stall_s);
    c->stall_s += stall_s;
    c->noted_s += stall_s;
    c->last_save_s = save_s; /* a stop waits for the whole save */
}

void ts_coord_note_eval(ts_coord_t *c, double seconds) {
    if (c->cfg.ledger != NULL)
        ts_ledger_note_eval(c->cfg.ledger, seconds);
    c->noted_s += seconds;
    if (seconds > c->eval_s)
        c->eval_s = seconds;
}

const char *ts_coord_detail(const ts_coord_t *c) { return c->detail; }

double ts_coord_time_left(const ts_coord_t *c) {
    return c->cfg.deadline > 0 ? c->cfg.deadline - ts_launch_now_s() : -1;
}

/* ---- this rank's report ---- */

static void fill_report(ts_coord_t *c, const struct ts_step_record *rec, struct report *r) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    *r = (struct report){
        .rank = c->rank,
        .signal = ts_signals_pending(),
        .step = rec->step + 1,
        .tokens = rec->tokens,
        .peak_rss_kb = ru.ru_maxrss,
        .loss = rec->loss,
        .grad_norm = rec->grad_norm,
        .step_ms = rec->step_ms,
        .compute_ms = rec->step_ms - rec->comm_wait_ms - rec->data_ms,
        .comm_ms = rec->comm_wait_ms,
        .data_ms = rec->data_ms,
        .ckpt_ms = c->stall_s * 1e3,
        .decide_ms = c->last_decide_s * 1e3,
        .skipped = rec->skipped,
    };
    c->stall_s = 0;
}

static ts_status pack_report(const struct report *r, double *slot) {
    Tessera__Coord__StepReport m = TESSERA__COORD__STEP_REPORT__INIT;
    m.rank = r->rank;
    m.step = r->step;
    m.loss = r->loss;
    m.grad_norm = r->grad_norm;
    m.tokens = r->tokens;
    m.step_ms = r->step_ms;
    m.compute_ms = r->compute_ms;
    m.comm_ms = r->comm_ms;
    m.data_ms = r->data_ms;
    m.ckpt_ms = r->ckpt_ms;
    m.peak_rss_kb = r->peak_rss_kb;
    m.signal = r->signal;
    m.skipped = r->skipped;
    m.decide_ms = r->decide_ms;
    uint8_t buf[SLOT_BYTES + 4] = {0};
    const size_t n = tessera__coord__step_report__get_packed_size(&m);
    if (n > SLOT_BYTES)
        return ts_error(TS_ERR_INTERNAL, "coordinator: a step report of %zu bytes exceeds %d", n,
                        SLOT_BYTES);
    tessera__coord__step_report__pack(&m, buf);
    slot[0] = (double)n;
    for (int w = 0; w < SLOT_BYTES / 4; w++)
        slot[1 + w] = (double)((uint32_t)buf[4 * w] | (uint32_t)buf[4 * w + 1] << 8 |
                               (uint32_t)buf[4 * w + 2] << 16 | (uint32_t)buf[4 * w + 3] << 24);
    return TS_OK;
}

static ts_status unpack_report(const double *slot, int rank, struct report *r) {
    uint8_t buf[SLOT_BYTES];
    const double n = slot[0];
    if (!(n >= 0 && n <= SLOT_BYTES))
        return ts_error(TS_ERR_COMM, "coordinator: rank %d's report slot is damaged", rank);
    for (int w = 0; w < SLOT_BYTES / 4; w++) {
        const uint32_t v = (uint32_t)slot[1 + w];
        for (int k = 0; k < 4; k++)
            buf[4 * w + k] = (uint8_t)(v >> (8 * k));
    }
    Tessera__Coord__StepReport *m = tessera__coord__step_report__unpack(NULL, (size_t)n, buf);
    if (m == NULL)
        return ts_error(TS_ERR_COMM, "coordinator: rank %d's step report does not decode", rank);
    *r = (struct report){.rank = m->rank,
                         .signal = m->signal,
                         .step = m->step,
                         .tokens = m->tokens,
                         .peak_rss_kb = m->peak_rss_kb,
                         .loss = m->loss,
                         .grad_norm = m->grad_norm,
                         .step_ms = m->step_ms,
                         .compute_ms = m->compute_ms,
                         .comm_ms = m->comm_ms,
                         .data_ms = m->data_ms,
                         .ckpt_ms = m->ckpt_ms,
                         .decide_ms = m->decide_ms,
                         .skipped = m->skipped};
    tessera__coord__step_report__free_unpacked(m, NULL);
    return TS_OK;
}

/* Every rank's report on every rank (one all-reduce); with one rank, just this one. */
static ts_status gather_reports(ts_coord_t *c, const struct ts_step_record *rec) {
    struct report mine;
    fill_report(c, rec, &mine);
    if (c->size == 1) {
        c->reports[0] = mine;
        return TS_OK;
    }
    memset(c->slots, 0, (size_t)c->size * SLOT_WORDS * sizeof(double));
    TS_CHECK(pack_report(&mine, c->slots + (size_t)c->rank * SLOT_WORDS));
    TS_CHECK(ts_comm_all_reduce_host(c->world, c->slots, c->size * SLOT_WORDS, TS_REDUCE_SUM));
    for (int r = 0; r < c->size; r++)
        TS_CHECK(unpack_report(c->slots + (size_t)r * SLOT_WORDS, r, &c->reports[r]));
    return TS_OK;
}

/* ---- rank 0's decision ---- */

/* The z-score of x against the window (0 until spike_min losses are in it). */
static double zscore(const ts_coord_t *c, float x) {
    if (c->window_len < c->cfg.spike_min)
        return 0;
    double mean = 0, var = 0;
    for (int i = 0; i < c->window_len; i++)
        mean += c->window[i];
    mean /= c->window_len;
    for (int i = 0; i < c->window_len; i++)
        var += ((double)c->window[i] - mean) * ((double)c->window[i] - mean);
    const double sd = sqrt(var / (c->window_len - 1));
    return sd > 0 ? ((double)x - mean) / sd : 0;
}

static void window_push(ts_coord_t *c, float x) {
    c->window[c->window_at] = x;
    c->window_at = (c->window_at + 1) % c->cfg.spike_window;
    if (c->window_len < c->cfg.spike_window)
        c->window_len++;
}

static const char *signal_name(int sig) {
    return sig == SIGTERM   ? "SIGTERM"
           : sig == SIGUSR1 ? "SIGUSR1"
           : sig == SIGINT  ? "SIGINT"
                            : "a signal";
}

/* Stop now, saving (or not), dropping an eval the cadence asked for. */
static void stop_with(struct ts_run_decision *d, enum ts_stop_reason why, bool save) {
    d->actions = TS_RUN_STOP | (save ? TS_RUN_CHECKPOINT : 0u);
    d->reason = why;
}

/* Whether the run must stop now to save before the deadline: another step, the eval due at the
 * next boundary, and a save must still fit. */
static bool out_of_time(ts_coord_t *c, int64_t done, double *margin) {
    if (c->cfg.deadline <= 0)
        return false;
    const double save =
        c->last_save_s >= 0 ? c->last_save_s : SAVE_FILES_S + c->cfg.state_bytes / DISK_BYTES_PER_S;
    const struct ts_run_config *rc = c->cfg.run;
    const bool eval_next =
        c->cfg.have_val && rc->eval_every > 0 && (done + 1) % rc->eval_every == 0;
    *margin = SAFETY * (c->slowest_step_s + save + (eval_next ? c->eval_s : 0));
    return c->cfg.deadline - ts_launch_now_s() < *margin;
}

static void decide_root(ts_coord_t *c, struct ts_run_decision *d) {
    const struct report *r0 = &c->reports[0];
    const int64_t done = r0->step;
    c->detail[0] = '\0';
    /* The slowest step is what a boundary-to-boundary interval took (the step, the hooks, the
     * metrics line, a busy machine), less the evals and saves in it. */
    const double now = ts_launch_now_s(), interval = now - c->last_boundary - c->noted_s;
    c->last_boundary = now;
    c->noted_s = 0;
    if (interval > c->slowest_step_s)
        c->slowest_step_s = interval;
    /* A rank that reaches the exchange first waits there for the others (and so would at the
     * next gradient reduction without it): the last to arrive measures the exchange itself. */
    double min_decide = c->reports[0].decide_ms;
    for (int r = 1; r < c->size; r++)
        if (c->reports[r].decide_ms < min_decide)
            min_decide = c->reports[r].decide_ms;
    if (c->decisions > 0) {
        c->sum_min_decide_ms += min_decide;
        c->decide_samples++;
    }
    for (int r = 0; r < c->size; r++) {
        const struct report *x = &c->reports[r];
        c->sum_step += x->step_ms;
        c->sum_compute += x->compute_ms;
        c->sum_comm += x->comm_ms;
        c->sum_data += x->data_ms;
        c->sum_ckpt += x->ckpt_ms;
        if (x->peak_rss_kb > c->peak_rss_kb)
            c->peak_rss_kb = x->peak_rss_kb;
        if (x->step_ms * 1e-3 > c->slowest_step_s)
            c->slowest_step_s = x->step_ms * 1e-3;
        if (!isfinite(x->loss) || !isfinite(x->grad_norm)) {
            snprintf(c->detail, sizeof(c->detail),
                     "diverged at step %lld: loss %g, grad norm %g on rank %d; this update is "
                     "not saved",
                     (long long)done, (double)x->loss, (double)x->grad_norm, r);
            stop_with(d, TS_STOP_DIVERGED, false);
            return;
        }
    }
    if (c->cfg.spike_z > 0 && !c->cfg.skip_spikes) {
        const double z = zscore(c, r0->loss);
        if (z > c->cfg.spike_z) {
            snprintf(c->detail, sizeof(c->detail),
                     "diverged at step %lld: loss %.6g is a spike (z-score %.2f > --spike-z %g "
                     "over the last %d losses); this update is not saved",
                     (long long)done, (double)r0->loss, z, (double)c->cfg.spike_z, c->window_len);
            stop_with(d, TS_STOP_DIVERGED, false);
            return;
        }
    }
    if (c->cfg.spike_z > 0 && !c->cfg.skip_spikes)
        window_push(c, r0->loss); /* with --skip-spikes the gate keeps the window */
    if (d->actions & TS_RUN_STOP)
        return; /* the cadence's own stop (done, --stop-after) saves already */
    for (int r = 0; r < c->size; r++)
        if (c->reports[r].signal != 0) {
            snprintf(c->detail, sizeof(c->detail),
                     "preempted: %s on rank %d; checkpointed at step %lld",
                     signal_name(c->reports[r].signal), r, (long long)done);
            stop_with(d, TS_STOP_PREEMPTED, true);
            return;
        }
    double margin = 0;
    if (out_of_time(c, done, &margin)) {
        snprintf(c->detail, sizeof(c->detail),
                 "out of time: %.1f s left, a step and a save need %.1f s; checkpointed at step "
                 "%lld",
                 c->cfg.deadline - ts_launch_now_s(), margin, (long long)done);
        stop_with(d, TS_STOP_TIME, true);
    }
}

static ts_status broadcast_decision(ts_coord_t *c, struct ts_run_decision *d, int64_t done) {
    uint8_t buf[DECISION_BYTES] = {0};
    if (c->rank == 0) {
        Tessera__Coord__Decision m = TESSERA__COORD__DECISION__INIT;
        m.step = done;
        m.actions = d->actions;
        m.reason = (int32_t)d->reason;
        m.detail = c->detail;
        const size_t n = tessera__coord__decision__get_packed_size(&m);
        if (n + 4 > DECISION_BYTES)
            return ts_error(TS_ERR_INTERNAL, "coordinator: a decision of %zu bytes", n);
        buf[0] = (uint8_t)n;
        buf[1] = (uint8_t)(n >> 8);
        tessera__coord__decision__pack(&m, buf + 4);
    }
    TS_CHECK(ts_comm_broadcast_host(c->world, buf, sizeof(buf), 0));
    const size_t n = (size_t)buf[0] | (size_t)buf[1] << 8;
    Tessera__Coord__Decision *m =
        n + 4 <= DECISION_BYTES ? tessera__coord__decision__unpack(NULL, n, buf + 4) : NULL;
    if (m == NULL)
        return ts_error(TS_ERR_COMM, "coordinator: rank 0's decision does not decode");
    const bool same_step = m->step == done;
    d->actions = m->actions;
    d->reason = (enum ts_stop_reason)m->reason;
    snprintf(c->detail, sizeof(c->detail), "%s", m->detail ? m->detail : "");
    tessera__coord__decision__free_unpacked(m, NULL);
    if (!same_step)
        return ts_error(TS_ERR_INTERNAL, "coordinator: rank 0 decided for another step than %lld",
                        (long long)done);
    return TS_OK;
}

ts_status ts_coord_decide(ts_coord_t *c, const struct ts_step_record *rec,
                          struct ts_run_decision *d) {
    const double t0 = ts_launch_now_s();
    TS_CHECK(gather_reports(c, rec));
    if (c->rank == 0)
        decide_root(c, d);
    if (c->cfg.ledger != NULL) /* rank 0: every rank's update, whatever the decision */
        TS_CHECK(ts_ledger_step(c->cfg.ledger, rec->step + 1, c->reports[0].tokens));
    if (c->size > 1)
        TS_CHECK(broadcast_decision(c, d, rec->step + 1));
    c->last_decide_s = ts_launch_now_s() - t0;
    c->decisions++;
    c->decide_s += c->last_decide_s;
    return TS_OK;
}

void ts_coord_log_summary(const ts_coord_t *c) {
    if (c->rank != 0 || c->decisions == 0)
        return;
    const double n = (double)c->decisions * c->size, step = c->sum_step / n;
    TS_LOG_I("time per step (mean over %lld steps and %d rank(s)): %.2f ms = compute %.2f + "
             "gradient comm %.2f + data %.2f; checkpoint stall %.2f ms/step; peak memory %.1f MB",
             (long long)c->decisions, c->size, step, c->sum_compute / n, c->sum_comm / n,
             c->sum_data / n, c->sum_ckpt / n, (double)c->peak_rss_kb / 1024.0);
    const double own_us = c->decide_samples > 0
                              ? 1e3 * c->sum_min_decide_ms / (double)c->decide_samples
                              : 1e6 * c->decide_s / (double)c->decisions;
    TS_LOG_I("coordinator: %lld decisions, %.1f us each (%.3f%% of a step; rank 0 spent %.1f us "
             "each, waiting for slower ranks included)",
             (long long)c->decisions, own_us, step > 0 ? 100.0 * own_us / 1e3 / step : 0.0,
             1e6 * c->decide_s / (double)c->decisions);
}

ts_status ts_coord_gate(void *coord, const struct ts_step_record *rec, bool *skip) {
    ts_coord_t *c = coord;
    uint8_t buf[GATE_BYTES] = {0};
    *skip = false;
    if (c->rank == 0) {
        const double z = isfinite(rec->loss) ? zscore(c, rec->loss) : 0;
        Tessera__Coord__Gate m = TESSERA__COORD__GATE__INIT;
        m.step = rec->step + 1;
        m.skip = z > c->cfg.spike_z;
        m.z = (float)z;
        if (m.skip)
            snprintf(c->detail, sizeof(c->detail),
                     "step %" PRId64
                     ": loss %.6g is a spike (z-score %.2f > --spike-z %g); update skipped",
                     rec->step + 1, (double)rec->loss, z, (double)c->cfg.spike_z);
        else if (isfinite(rec->loss))
            window_push(c, rec->loss);
        buf[0] = (uint8_t)tessera__coord__gate__pack(&m, buf + 1);
        *skip = m.skip;
    }
    if (c->size == 1)
        return TS_OK;
    TS_CHECK(ts_comm_broadcast_host(c->world, buf, sizeof(buf), 0));
    Tessera__Coord__Gate *m = tessera__coord__gate__unpack(NULL, buf[0], buf + 1);
    if (m == NULL)
        return ts_error(TS_ERR_COMM, "coordinator: rank 0's gate answer does not decode");
    *skip = m->skip;
    tessera__coord__gate__free_unpacked(m, NULL);
    return TS_OK;
}
