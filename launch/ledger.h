/* ledger.h: what every token cost: RUN/ledger.jsonl, written by the coordinator on rank 0.
 *
 * One line per step and two per run segment (a segment is one process's run: "segment_start"
 * when the loop begins, "segment" when it ends). A resumed or requeued run appends a new
 * segment, so one ledger covers the whole job across restarts. Per step: tokens, wall seconds
 * (boundary to boundary, less the evals and saves in between, which the segment counts),
 * device-seconds (devices x wall; a CPU rank is one device, "device":"cpu"), tokens/s/device,
 * MFU (null when the device's peak is unknown), energy (null when not measured). Per segment:
 * start-up, step, eval and checkpoint-stall seconds, the whole wall, lost work (steps redone
 * after a restart: those between the checkpoint resumed from and the furthest step the ledger
 * had recorded), the prices used and the exit reason. Written lines are never rewritten: a later
 * change of the price table does not change history.
 *
 * The ledger is pure over its inputs: time and energy come from injected sources, so tests run
 * it on a fake clock and a fake counter. ts_ledger_summarize reads a ledger back into the
 * numbers `tessera cost` prints. */
#ifndef TS_LAUNCH_LEDGER_H
#define TS_LAUNCH_LEDGER_H

#include <stdbool.h>
#include <stdint.h>

#include "kernels/status.h"

struct ts_ledger_prices {
    double usd_per_device_hour; /* < 0: not given */
    double usd_per_kwh;         /* < 0: not given */
    char source[256];           /* where they came from ("flags", a prices file, "none") */
};

struct ts_ledger_sources {
    void *ctx;
    double (*now_s)(void *ctx); /* monotonic seconds */
    /* Joules since a fixed point over the job's devices; false: not measured. May be NULL. */
    bool (*energy_j)(void *ctx, double *joules);
};

struct ts_ledger_config {
    int devices;             /* world size: one device per rank */
    bool cpu;                /* the devices are CPU ranks */
    char device_name[64];    /* the backend's device name ("cpu", "NVIDIA H100 80GB HBM3") */
    char precision[8];       /* "fp32", "bf16" */
    double flops_per_token;  /* model FLOPs (ts_peak_flops_per_token) */
    double peak_flops;       /* per device; 0: unknown (MFU null) */
    char peak_source[192];   /* how the peak was found */
    char energy_source[160]; /* what counts energy, or why nothing does */
    struct ts_ledger_prices prices;
    struct ts_ledger_sources src;
    double t_launch;      /* src.now_s() when the process started */
    int64_t resumed_from; /* the checkpoint's step a resume starts from; -1: a fresh job */
};

typedef struct ts_ledger ts_ledger_t;

/* Opens path: a fresh job (resumed_from < 0) truncates it, a resume appends a new segment after
 * reading what the ledger recorded (its segments and the furthest step, for lost work). Copies
 * cfg. Rank 0 only; synchronous. */
ts_status ts_ledger_create(ts_ledger_t **out, const char *path,
                           const struct ts_ledger_config *cfg) TS_MUST_CHECK;
/* Closes the file; a segment not ended stays open in the file (a killed run's). NULL: no-op. */
void ts_ledger_destroy(ts_ledger_t *l);

/* The loop starts: the start-up is over. Writes the "segment_start" line. */
ts_status ts_ledger_begin(ts_ledger_t *l) TS_MUST_CHECK;
/* Time outside steps, noted as it happens (the next step's wall excludes it). */
void ts_ledger_note_eval(ts_ledger_t *l, double seconds);
void ts_ledger_note_checkpoint(ts_ledger_t *l, double seconds);
/* Update `step` (1-based count of updates done) of `tokens` tokens (all ranks) ended now. */
ts_status ts_ledger_step(ts_ledger_t *l, int64_t step, int64_t tokens) TS_MUST_CHECK;
/* The segment ends now, for `reason` (ts_stop_reason_name, or "failed"). */
ts_status ts_ledger_end(ts_ledger_t *l, const char *reason) TS_MUST_CHECK;

/* ---- reading a ledger back ---- */

/* Steady state skips each segment's warm-up: its first ceil(10%) of steps, at most 5, at least
 * 1 when the segment has two steps or more. */
int64_t ts_ledger_warmup_steps(int64_t steps_in_segment);

struct ts_ledger_summary {
    int segments, restarts; /* restarts = segments - 1 */
    int64_t steps;          /* distinct steps trained (a redone step counts once) */
    int64_t tokens;         /* their tokens (the last time each was trained) */
    int64_t step_lines;     /* every step trained, redone ones included */
    int64_t lost_steps;     /* steps redone after restarts */
    int devices;            /* the last segment's */
    bool cpu;
    char device_name[64];
    double wall_s;         /* every segment's process time (a killed segment: its known part) */
    double device_seconds; /* the whole job */
    double startup_s, step_s, eval_s, checkpoint_s;
    double energy_j;                  /* NaN: not measured in every segment */
    double usd;                       /* the whole job; NaN: no device-hour price in some segment */
    double usd_per_1m_tokens;         /* steady state (steps after warm-up); NaN without a price */
    double goodput_usd_per_1m_tokens; /* usd / tokens x 1e6 */
    double tokens_per_s_per_device;   /* steady state */
    double mfu;                       /* steady state, a fraction; NaN: a peak unknown */
    double usd_per_device_hour, usd_per_kwh; /* the last segment's (NaN: none) */
    char price_source[256];
    bool energy_priced;   /* usd includes energy at $/kWh */
    bool ended;           /* the last segment has its end line */
    char exit_reason[32]; /* the last segment's */
};

/* Reads path into *out. TS_ERR_IO when it cannot be read, TS_ERR_FORMAT naming the line when a
 * line is not the ledger's. */
ts_status ts_ledger_summarize(const char *path, struct ts_ledger_summary *out) TS_MUST_CHECK;

#endif
