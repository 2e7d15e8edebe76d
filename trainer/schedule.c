/* schedule.c: linear warmup then cosine decay, a pure function of the step.
 *
 * Edge cases: warmup <= 0 starts the cosine at step 0; when the horizon leaves no room for the
 * cosine (total - 1 <= warmup) every step from warmup on gets min_lr, since the contract is that
 * the rate reaches min_lr at step total - 1; a negative step is treated as step 0. */
#include <math.h>

#include "trainer/schedule.h"

float ts_lr_at(const struct ts_lr_schedule *s, int step) {
    const double max_lr = s->max_lr;
    const double min_lr = max_lr * (double)s->min_lr_frac;
    const int warmup = s->warmup > 0 ? s->warmup : 0;
    if (step < 0)
        step = 0;
    if (step < warmup)
        return (float)(max_lr * (double)(step + 1) / (double)warmup);
    const int span = s->total - 1 - warmup; /* steps from max_lr to min_lr */
    if (span <= 0 || step >= s->total - 1)
        return (float)min_lr;
    const double ratio = (double)(step - warmup) / (double)span;
    const double coeff = 0.5 * (1.0 + cos(M_PI * ratio));
    return (float)(min_lr + coeff * (max_lr - min_lr));
}
