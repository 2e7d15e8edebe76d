/* schedule.h: learning-rate schedules as pure functions of the step.
 *
 * Every rank evaluates the same function of the same step, so no schedule state needs to be
 * communicated or checkpointed. */
#ifndef TS_SCHEDULE_H
#define TS_SCHEDULE_H

struct ts_lr_schedule {
    float max_lr;
    int warmup;        /* linear warmup over steps 0..warmup-1, reaching max_lr at step warmup-1 */
    int total;         /* the horizon: cosine reaches min_lr at step total-1 */
    float min_lr_frac; /* min_lr = max_lr * min_lr_frac (0.1 by default) */
};

/* The learning rate for 0-based update index `step`: max_lr * (step+1)/warmup during warmup,
 * then cosine from max_lr to min_lr at `total - 1` and min_lr afterwards. */
float ts_lr_at(const struct ts_lr_schedule *s, int step);

#endif
