/* coordinator.h: one decision for every rank at every step boundary (the rank-0 role).
 *
 * After each update every rank sends its step record (loss, norm, tokens, the time split into
 * compute / gradient communication / data loading / checkpoint stall, peak memory, a pending
 * signal) to world rank 0 as a protobuf-c StepReport; rank 0 starts from the run's cadence
 * (eval, checkpoint, stop at --stop-after and the end) and adds what only it can see whole:
 *   - divergence: a NaN/Inf loss or gradient norm on any rank, or (with --spike-z) a loss whose
 *     rolling z-score exceeds the threshold: stop now, no eval, no checkpoint (the last good
 *     checkpoint stays `latest`);
 *   - a signal on any rank: checkpoint and stop ("preempted");
 *   - the time budget: checkpoint and stop when another step and a save would not fit before
 *     the deadline (margin = slowest step + last save, or an estimate from the state's size
 *     before the first save);
 * and answers one Decision, broadcast to all ranks. With one rank nothing is sent.
 *
 * Transport: the comm table moves fixed byte counts, so each report is packed into a fixed slot
 * and all slots are gathered with one all_reduce_host over doubles (each rank fills its own slot,
 * 4 bytes per double, zeros elsewhere: sums are exact); the decision is one broadcast_host. */
#ifndef TS_LAUNCH_COORDINATOR_H
#define TS_LAUNCH_COORDINATOR_H

#include <stdbool.h>
#include <stdint.h>

#include "comm/comm.h"
#include "launch/ledger.h"
#include "trainer/run.h"

typedef struct ts_coord ts_coord_t;

struct ts_coord_config {
    const struct ts_run_config *run; /* the cadence (borrowed) */
    bool have_val;
    double deadline;     /* ts_launch_now_s() by which the job must have exited (0: none) */
    double state_bytes;  /* the checkpoint's size, for the first save's estimate */
    float spike_z;       /* stop (or skip) when a loss's z-score exceeds this (0: off) */
    int spike_window;    /* losses in the rolling window */
    int spike_min;       /* losses needed before the z-score counts */
    bool skip_spikes;    /* skip the update instead of stopping */
    ts_ledger_t *ledger; /* rank 0: gets a line per step and the eval/save time (borrowed;
                            NULL: none) */
};

/* Collective over world. Borrows world and cfg->run. */
ts_status ts_coord_create(ts_coord_t **out, ts_comm_t *world,
                          const struct ts_coord_config *cfg) TS_MUST_CHECK;
void ts_coord_destroy(ts_coord_t *c);

/* The run loop's decide hook: d holds the cadence's decision and gets the job's. Collective. */
ts_status ts_coord_decide(ts_coord_t *c, const struct ts_step_record *rec,
                          struct ts_run_decision *d) TS_MUST_CHECK;

/* The trainer's update gate for --skip-spikes (rank 0 decides, broadcast). Collective. */
ts_status ts_coord_gate(void *coord, const struct ts_step_record *rec, bool *skip) TS_MUST_CHECK;

/* What a checkpoint or an eval took on this rank (the next report carries the stall, rank 0's
 * values size the time margin). */
void ts_coord_note_checkpoint(ts_coord_t *c, double stall_s, double save_s);
void ts_coord_note_eval(ts_coord_t *c, double seconds);

/* Rank 0 logs the run's mean time split per step (compute, gradient comm, data, checkpoint
 * stall), the peak memory of any rank, and the coordinator's own cost per decision. */
void ts_coord_log_summary(const ts_coord_t *c);

/* Why the last decision stopped ("" when it did not); on rank 0 after a skipped update and
 * before the next decision, what the gate skipped and why. */
const char *ts_coord_detail(const ts_coord_t *c);
/* Seconds left before the deadline (negative: no deadline). */
double ts_coord_time_left(const ts_coord_t *c);

#endif
