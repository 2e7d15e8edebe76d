/* schedule.c: learning-rate schedules and the batch-size ramp, pure functions of the step.
 *
 * Learning rate: one linear warmup shared by every kind, then cosine, linear, WSD or constant.
 * Edge cases: warmup <= 0 starts the decay at step 0; when the horizon leaves no room for the
 * decay (total - 1 <= warmup) every step from warmup on gets min_lr, since the contract is that
 * the rate reaches min_lr at step total - 1; a negative step is treated as step 0. The cosine
 * branch is the first version's arithmetic unchanged: runs must stay bit-identical.
 *
 * Batch ramp: grad_accum as an exact integer function of the tokens consumed before a step. */
#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "trainer/schedule.h"

/* From max_lr at step `from` to min_lr at step total-1, linearly; min_lr when there is no room. */
static double linear_down(double max_lr, double min_lr, int64_t step, int64_t from, int64_t total) {
    const int64_t span = total - 1 - from;
    if (span <= 0 || step >= total - 1)
        return min_lr;
    const double ratio = (double)(step - from) / (double)span;
    return max_lr - ratio * (max_lr - min_lr);
}

/* WSD's decay length: decay_frac * total rounded to the nearest step, halves up, at least one
 * step, at most total. The product is a float one, so a decimal fraction lands where it was
 * written (0.9f * 15 is 13.5 in float, 13.4999996 in double) and rounds as expected. */
static int64_t wsd_decay_steps(const struct ts_lr_schedule *s) {
    const float x = s->decay_frac * (float)s->total;
    const double d = floor((double)x + 0.5);
    if (!(d >= 1.0))
        return 1;
    return d < (double)s->total ? (int64_t)d : s->total;
}

float ts_lr_at(const struct ts_lr_schedule *s, int64_t step) {
    const double max_lr = s->max_lr;
    const double min_lr = max_lr * (double)s->min_lr_frac;
    const int64_t warmup = s->warmup > 0 ? s->warmup : 0;
    if (step < 0)
        step = 0;
    if (step < warmup)
        return (float)(max_lr * (double)(step + 1) / (double)warmup);
    switch (s->kind) {
    case TS_LR_CONSTANT:
        return (float)max_lr;
    case TS_LR_LINEAR:
        return (float)linear_down(max_lr, min_lr, step, warmup, s->total);
    case TS_LR_WSD: {
        const int64_t from = s->total - 1 - wsd_decay_steps(s);
        if (step <= from)
            return (float)max_lr;
        return (float)linear_down(max_lr, min_lr, step, from > warmup ? from : warmup, s->total);
    }
    case TS_LR_COSINE:
    default:
        break;
    }
    const int64_t span = s->total - 1 - warmup; /* steps from max_lr to min_lr */
    if (span <= 0 || step >= s->total - 1)
        return (float)min_lr;
    const double ratio = (double)(step - warmup) / (double)span;
    const double coeff = 0.5 * (1.0 + cos(M_PI * ratio));
    return (float)(min_lr + coeff * (max_lr - min_lr));
}

static const char *const kind_names[] = {
    [TS_LR_COSINE] = "cosine",
    [TS_LR_LINEAR] = "linear",
    [TS_LR_WSD] = "wsd",
    [TS_LR_CONSTANT] = "constant",
};
#define NUM_KINDS ((int)(sizeof kind_names / sizeof kind_names[0]))

const char *ts_lr_kind_name(enum ts_lr_kind kind) {
    const int k = (int)kind;
    return k >= 0 && k < NUM_KINDS ? kind_names[k] : "unknown";
}

ts_status ts_lr_kind_parse(const char *name, enum ts_lr_kind *out) {
    for (int k = 0; name && k < NUM_KINDS; k++) {
        if (strcmp(name, kind_names[k]) == 0) {
            *out = (enum ts_lr_kind)k;
            return TS_OK;
        }
    }
    return ts_error(TS_ERR_INVALID_ARG,
                    "unknown learning-rate schedule '%s': choose cosine, linear, wsd or constant",
                    name ? name : "(null)");
}

ts_status ts_lr_schedule_check(const struct ts_lr_schedule *s) {
    const int k = (int)s->kind;
    if (k < 0 || k >= NUM_KINDS)
        return ts_error(TS_ERR_INVALID_ARG,
                        "unknown learning-rate schedule kind %d (cosine, linear, wsd or constant)",
                        k);
    if (!(s->max_lr > 0.0f) || !isfinite(s->max_lr))
        return ts_error(TS_ERR_INVALID_ARG,
                        "the peak learning rate must be positive and finite, got %g",
                        (double)s->max_lr);
    if (s->total < 1)
        return ts_error(TS_ERR_INVALID_ARG,
                        "the schedule's horizon must be >= 1 step, got %" PRId64, s->total);
    if (s->total > TS_MAX_STEPS)
        return ts_error(TS_ERR_INVALID_ARG,
                        "the schedule's horizon of %" PRId64 " steps is more than the %lld a run "
                        "may count",
                        s->total, TS_MAX_STEPS);
    if (s->warmup < 0)
        return ts_error(TS_ERR_INVALID_ARG, "warmup must be >= 0 steps, got %" PRId64, s->warmup);
    if (s->warmup > s->total)
        return ts_error(TS_ERR_INVALID_ARG,
                        "warmup of %" PRId64 " steps is longer than the run's %" PRId64
                        " steps: the rate would "
                        "never reach its peak; shorten the warmup or train longer",
                        s->warmup, s->total);
    if (!(s->min_lr_frac >= 0.0f && s->min_lr_frac <= 1.0f))
        return ts_error(TS_ERR_INVALID_ARG,
                        "min_lr_frac must be in [0, 1] (min_lr = max_lr * min_lr_frac), got %g",
                        (double)s->min_lr_frac);
    if (s->kind == TS_LR_WSD && !(s->decay_frac > 0.0f && s->decay_frac <= 1.0f))
        return ts_error(TS_ERR_INVALID_ARG,
                        "the wsd schedule's decay_frac must be in (0, 1] (the decay takes that "
                        "fraction of the last steps), got %g",
                        (double)s->decay_frac);
    return TS_OK;
}

/* ---- batch ramp ---- */

static bool ramp_on(const struct ts_batch_ramp *r) {
    return r->ramp_tokens > 0 && r->start_div > 1;
}

/* floor(n * t / d) for 0 <= t < d and n >= 0, exactly: shift-and-add over the bits of n keeping
 * the quotient and a remainder below d, so nothing overflows whatever the sizes (n * t can
 * exceed 64 bits: 2^31 * 1e15). */
static int mul_div_floor(int n, int64_t t, int64_t d) {
    const uint64_t ud = (uint64_t)d, ut = (uint64_t)t;
    uint64_t q = 0, rem = 0;
    for (int bit = 30; bit >= 0; bit--) {
        q <<= 1;
        rem <<= 1; /* rem < d < 2^63, so 2*rem fits */
        if (rem >= ud) {
            rem -= ud;
            q++;
        }
        if ((unsigned)n >> bit & 1u) {
            rem += ut; /* t < d: rem + t < 2d */
            if (rem >= ud) {
                rem -= ud;
                q++;
            }
        }
    }
    return (int)q; /* < n */
}

int ts_batch_ramp_accum(const struct ts_batch_ramp *r, int full_accum, int64_t tokens_seen) {
    if (full_accum < 1 || !ramp_on(r) || tokens_seen >= r->ramp_tokens)
        return full_accum;
    if (tokens_seen < 0)
        tokens_seen = 0;
    /* ceil(full/div), which is 1 once div >= full: the clamp to the smallest batch. */
    const int start = (int)(((int64_t)full_accum + r->start_div - 1) / r->start_div);
    return start + mul_div_floor(full_accum - start, tokens_seen, r->ramp_tokens);
}

int64_t ts_batch_ramp_tokens_before(const struct ts_batch_ramp *r, int full_accum,
                                    int64_t tokens_per_accum, int64_t step) {
    int64_t tokens = 0;
    for (int64_t s = 0; s < step; s++) {
        const int64_t accum = ts_batch_ramp_accum(r, full_accum, tokens);
        if (tokens_per_accum > 0 && accum > (INT64_MAX - tokens) / tokens_per_accum)
            return INT64_MAX;
        if (accum == full_accum) { /* the ramp is over: the remaining steps in one product */
            const int64_t left = step - s, per = accum * tokens_per_accum;
            if (per > 0 && left > (INT64_MAX - tokens) / per)
                return INT64_MAX;
            return tokens + left * per;
        }
        tokens += accum * tokens_per_accum;
    }
    return tokens;
}

/* TOKENS: a plain or scientific decimal with an optional k/M/G/T suffix, a whole number in
 * [1, 1e15]. strtod does the digits; the checks around it refuse what strtod would also
 * accept but a token count never is (signs, hex, inf/nan, leading spaces). */
static ts_status parse_tokens(const char *text, const char *s, size_t len, int64_t *out) {
    char buf[64];
    if (len == 0 || len >= sizeof buf)
        return ts_error(TS_ERR_INVALID_ARG,
                        "batch ramp '%s': TOKENS must be a number of tokens such as 200000, "
                        "2e5, 200k, 10M or 1G",
                        text);
    memcpy(buf, s, len);
    buf[len] = '\0';
    double mult = 1.0;
    switch (buf[len - 1]) {
    case 'k':
    case 'K':
        mult = 1e3;
        break;
    case 'M':
        mult = 1e6;
        break;
    case 'G':
        mult = 1e9;
        break;
    case 'T':
        mult = 1e12;
        break;
    default:
        break;
    }
    if (mult != 1.0)
        buf[--len] = '\0';
    char *end = NULL;
    errno = 0;
    const double v =
        isdigit((unsigned char)buf[0]) && !strpbrk(buf, "xX") ? strtod(buf, &end) * mult : NAN;
    if (end != buf + len || len == 0 || !(v >= 0.0))
        return ts_error(TS_ERR_INVALID_ARG,
                        "batch ramp '%s': TOKENS must be a positive number of tokens such as "
                        "200000, 2e5, 200k, 10M or 1G",
                        text);
    if (v < 1.0)
        return ts_error(TS_ERR_INVALID_ARG,
                        "batch ramp '%s': TOKENS must be at least 1 (leave the ramp out to "
                        "train at the full batch from the start)",
                        text);
    if (errno == ERANGE || v > (double)TS_BATCH_RAMP_MAX_TOKENS)
        return ts_error(TS_ERR_INVALID_ARG, "batch ramp '%s': TOKENS must be at most 1e15", text);
    if (v != floor(v))
        return ts_error(TS_ERR_INVALID_ARG,
                        "batch ramp '%s': TOKENS must be a whole number of tokens, got %.17g", text,
                        v);
    *out = (int64_t)v;
    return TS_OK;
}

static ts_status parse_div(const char *text, const char *s, int *out) {
    char *end = (char *)s;
    long v = -1;
    errno = 0;
    if (isdigit((unsigned char)s[0]))
        v = strtol(s, &end, 10);
    if (*end != '\0' || v < 1 || v > INT_MAX || errno == ERANGE)
        return ts_error(TS_ERR_INVALID_ARG,
                        "batch ramp '%s': DIV must be an integer >= 1 (the first batch is the "
                        "full batch divided by DIV), got '%s'",
                        text, s);
    *out = (int)v;
    return TS_OK;
}

ts_status ts_batch_ramp_parse(const char *text, struct ts_batch_ramp *out) {
    const char *colon = text ? strchr(text, ':') : NULL;
    if (!colon)
        return ts_error(TS_ERR_INVALID_ARG,
                        "batch ramp '%s': expected TOKENS:DIV, e.g. 2e9:8 (start at 1/8 of the "
                        "global batch, full after 2e9 tokens)",
                        text ? text : "(null)");
    struct ts_batch_ramp r;
    TS_CHECK(parse_tokens(text, text, (size_t)(colon - text), &r.ramp_tokens));
    TS_CHECK(parse_div(text, colon + 1, &r.start_div));
    *out = r;
    return TS_OK;
}

ts_status ts_batch_ramp_check(const struct ts_batch_ramp *r, int full_accum) {
    if (r->ramp_tokens < 0 || r->ramp_tokens > TS_BATCH_RAMP_MAX_TOKENS)
        return ts_error(TS_ERR_INVALID_ARG,
                        "batch ramp over %lld tokens: must be between 0 (off) and 1e15",
                        (long long)r->ramp_tokens);
    if (r->ramp_tokens > 0 && r->start_div < 1)
        return ts_error(TS_ERR_INVALID_ARG, "batch ramp divisor must be >= 1, got %d",
                        r->start_div);
    if (full_accum < 1)
        return ts_error(TS_ERR_INVALID_ARG, "grad_accum must be >= 1, got %d", full_accum);
    if (ramp_on(r) && full_accum == 1)
        return ts_error(TS_ERR_INVALID_ARG,
                        "batch ramp with grad_accum 1: the global batch is already the smallest "
                        "(one micro-batch per rank), so there is nothing to ramp; raise "
                        "grad_accum and lower the micro-batch to keep the full batch");
    return TS_OK;
}
