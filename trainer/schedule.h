/* schedule.h: learning-rate schedules and the batch-size ramp, pure functions of the step.
 *
 * Every rank evaluates the same function of the same step (or of the tokens consumed before
 * it, itself a function of the step), so no schedule state needs to be communicated or
 * checkpointed, and a resume reproduces the rates and batch sizes exactly. Nothing here
 * allocates or keeps state; the parse and check functions only write *out and, on failure, the
 * thread's error message. */
#ifndef TS_SCHEDULE_H
#define TS_SCHEDULE_H

#include <stdint.h>

#include "kernels/status.h"

/* The shape after warmup. COSINE is 0 so a zero-initialised schedule stays cosine. */
enum ts_lr_kind {
    TS_LR_COSINE = 0, /* cosine from max_lr at step warmup to min_lr at total-1 */
    TS_LR_LINEAR,     /* linear from max_lr at step warmup to min_lr at total-1 */
    TS_LR_WSD,        /* warmup, stable at max_lr, linear decay to min_lr over the last steps */
    TS_LR_CONSTANT,   /* max_lr after warmup (min_lr_frac and decay_frac unused) */
};

/* The most updates a run may count (--steps, --warmup, --stop-after, a checkpoint's step): 10^12,
 * far beyond any run, so that step counts, tokens (steps x tokens per step) and the schedule's
 * double arithmetic stay exact in 64 bits. Steps are int64_t everywhere. */
#define TS_MAX_STEPS 1000000000000LL

struct ts_lr_schedule {
    float max_lr;
    int64_t warmup;    /* linear warmup over steps 0..warmup-1, reaching max_lr at step warmup-1 */
    int64_t total;     /* the horizon: every decaying kind reaches min_lr at step total-1 */
    float min_lr_frac; /* min_lr = max_lr * min_lr_frac (0.1 by default) */
    enum ts_lr_kind kind;
    float decay_frac; /* WSD only: the decay takes the last decay_frac * total steps, rounded */
};

/* The learning rate for 0-based update index `step` (a negative step counts as 0).
 * All kinds share the warmup: max_lr * (step+1)/warmup for step < warmup. After it:
 *   cosine:   min_lr + (max_lr - min_lr) * (1 + cos(pi * (step-warmup)/(total-1-warmup))) / 2
 *   linear:   max_lr - (max_lr - min_lr) * (step-warmup)/(total-1-warmup)
 *   wsd:      max_lr through step a = max(warmup, total-1-D), where D = decay_frac * total
 *             rounded half up (at least 1), then max_lr - (max_lr - min_lr) * (step-a)/(total-1-a).
 *             Linear by choice (llm.c's WSD cools down with 1-sqrt, MiniCPM's exponentially):
 *             the simplest shape that ends exactly at min_lr. A decay reaching into the warmup
 *             starts at step warmup, so decay_frac 1 gives the linear kind's numbers.
 *   constant: max_lr
 * Decaying kinds give min_lr from step total-1 on, and from step warmup on when the horizon
 * leaves no room (total-1 <= warmup). Cosine's numbers are those of the first version, bit for
 * bit. An unknown kind (one ts_lr_schedule_check refuses) is treated as cosine. */
float ts_lr_at(const struct ts_lr_schedule *s, int64_t step);

/* "cosine", "linear", "wsd", "constant" <-> the enum. Parse fails with TS_ERR_INVALID_ARG
 * naming the choices; name returns "unknown" for a value outside the enum. */
ts_status ts_lr_kind_parse(const char *name, enum ts_lr_kind *out) TS_MUST_CHECK;
const char *ts_lr_kind_name(enum ts_lr_kind kind);

/* Refuses a schedule that cannot mean what its fields say: max_lr not positive and finite,
 * total < 1, warmup < 0 or > total, min_lr_frac outside [0, 1], an unknown kind, and for WSD a
 * decay_frac outside (0, 1]. decay_frac is ignored by the other kinds. */
ts_status ts_lr_schedule_check(const struct ts_lr_schedule *s) TS_MUST_CHECK;

/* The batch-size ramp (--batch-ramp TOKENS:DIV): the global batch starts at about full/DIV and
 * grows linearly with the tokens consumed to the full batch after ramp_tokens tokens.
 *
 * What ramps is grad_accum, never the micro-batch B: the activation arena is sized once for B
 * and a step allocates nothing, so memory stays fixed and each micro-step keeps the shape it
 * was tuned for; and every data-parallel rank runs the same number of micro-steps of the same
 * B, so the global batch B*accum*dp is always a multiple of B and of dp and the window layout
 * (micro-step a of rank r reads windows [p + (a*dp + r)*B, +B)) holds unchanged. The ramp's
 * granularity is therefore one micro-step on every rank, B*dp windows.
 *
 * A zero-initialised ramp (ramp_tokens 0) is off; so is start_div 1. */
struct ts_batch_ramp {
    int64_t ramp_tokens; /* tokens over which the batch grows to full (0: no ramp) */
    int start_div;       /* the first step's batch is full/start_div (>= 1) */
};

#define TS_BATCH_RAMP_MAX_TOKENS ((int64_t)1000000000000000) /* 1e15, exact in a double */

/* grad_accum for a step that starts after `tokens_seen` tokens (all ranks, T per window: the
 * loader position times T):
 *     a0 = ceil(full_accum / start_div)                          (at least 1)
 *     accum = a0 + floor((full_accum - a0) * tokens_seen / ramp_tokens)   while tokens_seen < ramp
 *     accum = full_accum                                          from ramp_tokens on
 * computed exactly in integers. So accum is in [a0, full_accum], never decreases, and steps up by
 * one each (ramp_tokens / (full_accum - a0)) tokens. When start_div > full_accum the start is
 * clamped to accum 1 (B*dp windows, the smallest global batch), not full/start_div. A ramp that
 * is off, or full_accum < 1, gives full_accum. */
int ts_batch_ramp_accum(const struct ts_batch_ramp *r, int full_accum, int64_t tokens_seen);

/* Tokens consumed by steps 0..step-1 under the ramp, each step taking accum * tokens_per_accum
 * tokens (tokens_per_accum = B * T * dp > 0): what a run resumed at `step` must have consumed,
 * i.e. its loader position times T. O(steps inside the ramp): the steps after it are one
 * product. Saturates at INT64_MAX. */
int64_t ts_batch_ramp_tokens_before(const struct ts_batch_ramp *r, int full_accum,
                                    int64_t tokens_per_accum, int64_t step);

/* Parses "TOKENS:DIV". TOKENS is a positive whole number of tokens at most 1e15, written
 * 200000, 2e5, 1.5M or with a suffix k (1e3), M (1e6), G (1e9), T (1e12); DIV an integer >= 1.
 * On failure *out is untouched and the message names the part that is wrong. */
ts_status ts_batch_ramp_parse(const char *text, struct ts_batch_ramp *out) TS_MUST_CHECK;

/* Refuses a ramp that cannot be what was asked: ramp_tokens < 0 or > 1e15, start_div < 1 (unless
 * the ramp is off, ramp_tokens 0), full_accum < 1, and a ramp with full_accum 1 (the batch is
 * already the smallest, B*dp windows: there is nothing to ramp; raise grad_accum and lower the
 * micro-batch). A start_div above full_accum is accepted and clamped (see ts_batch_ramp_accum). */
ts_status ts_batch_ramp_check(const struct ts_batch_ramp *r, int full_accum) TS_MUST_CHECK;

#endif
