/* test_schedule.c: warmup, cosine and the edge cases of the learning-rate schedule. */
#include <criterion/criterion.h>
#include <math.h>

#include "trainer/schedule.h"

Test(trainer_schedule, warmup_peak_cosine_end) {
    const struct ts_lr_schedule s = {
        .max_lr = 6e-4f, .warmup = 10, .total = 110, .min_lr_frac = 0.1f};
    cr_assert_float_eq(ts_lr_at(&s, 0), 6e-5f, 1e-10f);
    cr_assert_float_eq(ts_lr_at(&s, 4), 3e-4f, 1e-10f);
    cr_assert_float_eq(ts_lr_at(&s, 9), 6e-4f, 1e-10f);  /* warmup reaches max at warmup-1 */
    cr_assert_float_eq(ts_lr_at(&s, 10), 6e-4f, 1e-10f); /* the cosine starts at max */
    /* Inside the cosine: step 59 is 49/99 of the way from max to min. */
    const float mid = (float)(6e-5 + 0.5 * (6e-4 - 6e-5) * (1 + cos(M_PI * 49.0 / 99)));
    cr_assert_float_eq(ts_lr_at(&s, 59), mid, 1e-9f);
    cr_assert_float_eq(ts_lr_at(&s, 109), 6e-5f, 1e-10f); /* min at total-1 */
    cr_assert_float_eq(ts_lr_at(&s, 500), 6e-5f, 1e-10f);
    for (int i = 10; i < 109; i++)
        cr_assert(ts_lr_at(&s, i + 1) <= ts_lr_at(&s, i), "not decreasing at %d", i);
}

Test(trainer_schedule, edge_cases) {
    /* No warmup: the cosine starts at step 0. */
    const struct ts_lr_schedule a = {.max_lr = 1.0f, .warmup = 0, .total = 3, .min_lr_frac = 0};
    cr_assert_float_eq(ts_lr_at(&a, 0), 1.0f, 1e-7f);
    cr_assert_float_eq(ts_lr_at(&a, 1), 0.5f, 1e-7f);
    cr_assert_float_eq(ts_lr_at(&a, 2), 0.0f, 1e-7f);
    /* total <= warmup: linear warmup, then min_lr. */
    const struct ts_lr_schedule b = {.max_lr = 1.0f, .warmup = 4, .total = 2, .min_lr_frac = 0.5f};
    cr_assert_float_eq(ts_lr_at(&b, 0), 0.25f, 1e-7f);
    cr_assert_float_eq(ts_lr_at(&b, 3), 1.0f, 1e-7f);
    cr_assert_float_eq(ts_lr_at(&b, 4), 0.5f, 1e-7f);
    /* total == warmup + 1: max at the last warmup step, min at total-1. */
    const struct ts_lr_schedule c = {.max_lr = 2.0f, .warmup = 2, .total = 3, .min_lr_frac = 0.1f};
    cr_assert_float_eq(ts_lr_at(&c, 1), 2.0f, 1e-7f);
    cr_assert_float_eq(ts_lr_at(&c, 2), 0.2f, 1e-7f);
    /* Constant schedule: min_lr_frac 1. */
    const struct ts_lr_schedule d = {
        .max_lr = 3.0f, .warmup = 0, .total = 100, .min_lr_frac = 1.0f};
    for (int i = 0; i < 120; i += 7)
        cr_assert_float_eq(ts_lr_at(&d, i), 3.0f, 1e-6f);
    cr_assert(!isnan(ts_lr_at(&d, -1)));
}
