/* test_schedule.c: the learning-rate schedules (warmup, cosine, linear, WSD, constant) against
 * hand-computed tables, their edge cases and checks, and the batch-size ramp. */
#include <criterion/criterion.h>
#include <limits.h>
#include <math.h>
#include <string.h>

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

/* ---- the kinds against closed-form tables: max 1, warmup 2, total 10, min_lr 0.1 ---- */

static struct ts_lr_schedule small(enum ts_lr_kind kind) {
    return (struct ts_lr_schedule){.max_lr = 1.0f,
                                   .warmup = 2,
                                   .total = 10,
                                   .min_lr_frac = 0.1f,
                                   .kind = kind,
                                   .decay_frac = 0.3f};
}

/* Steps 0..11, then 50: warmup (0.5, 1), the shape, min_lr (or max_lr) past the horizon. */
static void check_table(enum ts_lr_kind kind, const float want[13]) {
    const struct ts_lr_schedule s = small(kind);
    for (int i = 0; i < 13; i++) {
        const int step = i < 12 ? i : 50;
        cr_assert_float_eq(ts_lr_at(&s, step), want[i], 1e-6f, "%s step %d: %.9g, want %.9g",
                           ts_lr_kind_name(kind), step, (double)ts_lr_at(&s, step),
                           (double)want[i]);
    }
}

Test(trainer_schedule, cosine_table) {
    /* 0.1 + 0.45 * (1 + cos(pi * (step - 2) / 7)) */
    const float want[13] = {0.5f,         1.0f,         1.0f,         0.955435991f, 0.830570411f,
                            0.650134420f, 0.449865580f, 0.269429589f, 0.144564009f, 0.1f,
                            0.1f,         0.1f,         0.1f};
    check_table(TS_LR_COSINE, want);
}

Test(trainer_schedule, linear_table) {
    /* 1 - 0.9 * (step - 2) / 7 */
    const float want[13] = {0.5f,         1.0f,         1.0f,         0.871428571f, 0.742857143f,
                            0.614285714f, 0.485714286f, 0.357142857f, 0.228571429f, 0.1f,
                            0.1f,         0.1f,         0.1f};
    check_table(TS_LR_LINEAR, want);
}

Test(trainer_schedule, wsd_table) {
    /* The decay takes the last round(0.3 * 10) = 3 steps: max through step 6, then thirds. */
    const float want[13] = {0.5f, 1.0f, 1.0f, 1.0f, 1.0f, 1.0f, 1.0f,
                            0.7f, 0.4f, 0.1f, 0.1f, 0.1f, 0.1f};
    check_table(TS_LR_WSD, want);
}

Test(trainer_schedule, constant_table) {
    const float want[13] = {0.5f, 1.0f, 1.0f, 1.0f, 1.0f, 1.0f, 1.0f,
                            1.0f, 1.0f, 1.0f, 1.0f, 1.0f, 1.0f};
    check_table(TS_LR_CONSTANT, want);
}

/* The first version's cosine, kept verbatim: the new code must give the same bits. */
static float cosine_v1(const struct ts_lr_schedule *s, int step) {
    const double max_lr = s->max_lr;
    const double min_lr = max_lr * (double)s->min_lr_frac;
    const int warmup = s->warmup > 0 ? s->warmup : 0;
    if (step < 0)
        step = 0;
    if (step < warmup)
        return (float)(max_lr * (double)(step + 1) / (double)warmup);
    const int span = s->total - 1 - warmup;
    if (span <= 0 || step >= s->total - 1)
        return (float)min_lr;
    const double ratio = (double)(step - warmup) / (double)span;
    const double coeff = 0.5 * (1.0 + cos(M_PI * ratio));
    return (float)(min_lr + coeff * (max_lr - min_lr));
}

Test(trainer_schedule, cosine_bit_identical_to_first_version) {
    const float maxes[] = {6e-4f, 1e-3f, 3.0f, 1.7e-2f};
    const float fracs[] = {0.0f, 0.1f, 0.37f, 1.0f};
    for (int m = 0; m < 4; m++)
        for (int f = 0; f < 4; f++)
            for (int warmup = -1; warmup < 8; warmup++)
                for (int total = 1; total < 40; total += 3)
                    for (int step = -2; step < 45; step++) {
                        /* .kind left out: a zero-initialised schedule is cosine */
                        const struct ts_lr_schedule s = {.max_lr = maxes[m],
                                                         .warmup = warmup,
                                                         .total = total,
                                                         .min_lr_frac = fracs[f]};
                        const float a = ts_lr_at(&s, step), b = cosine_v1(&s, step);
                        cr_assert(memcmp(&a, &b, sizeof a) == 0,
                                  "cosine changed: max %g frac %g warmup %d total %d step %d",
                                  (double)maxes[m], (double)fracs[f], warmup, total, step);
                    }
    const struct ts_lr_schedule z = {0};
    cr_assert_eq(z.kind, TS_LR_COSINE);
}

Test(trainer_schedule, wsd_edges) {
    /* decay_frac 1, or a decay reaching into the warmup, is the linear schedule bit for bit. */
    for (int warmup = 0; warmup < 6; warmup++)
        for (int total = 1; total < 20; total++)
            for (int f = 0; f < 3; f++) {
                const float fracs[] = {1.0f, 0.9f, 0.75f};
                struct ts_lr_schedule w = {.max_lr = 2.0f,
                                           .warmup = warmup,
                                           .total = total,
                                           .min_lr_frac = 0.25f,
                                           .kind = TS_LR_WSD,
                                           .decay_frac = fracs[f]};
                const int decay = (int)floor((double)(fracs[f] * (float)total) + 0.5);
                if (total - 1 - decay > warmup)
                    continue; /* a stable phase: not the linear schedule */
                struct ts_lr_schedule l = w;
                l.kind = TS_LR_LINEAR;
                for (int step = 0; step < total + 3; step++) {
                    const float a = ts_lr_at(&w, step), b = ts_lr_at(&l, step);
                    cr_assert(memcmp(&a, &b, sizeof a) == 0, "warmup %d total %d frac %g step %d",
                              warmup, total, (double)fracs[f], step);
                }
            }
    /* A decay shorter than half a step still takes one step: min_lr at total-1. */
    struct ts_lr_schedule s = small(TS_LR_WSD);
    s.decay_frac = 0.01f;
    cr_assert_float_eq(ts_lr_at(&s, 8), 1.0f, 1e-7f);
    cr_assert_float_eq(ts_lr_at(&s, 9), 0.1f, 1e-7f);
    /* Rounded half up: 0.25 * 10 = 2.5 -> 3 decay steps, as 0.3 gives. */
    s.decay_frac = 0.25f;
    cr_assert_float_eq(ts_lr_at(&s, 6), 1.0f, 1e-7f);
    cr_assert_float_eq(ts_lr_at(&s, 7), 0.7f, 1e-6f);
    /* 0.9 * 15 = 13.5 -> 14 decay steps (in double 0.9f * 15 is 13.4999996: it must not be 13). */
    s = (struct ts_lr_schedule){.max_lr = 1.0f, .total = 15, .kind = TS_LR_WSD, .decay_frac = 0.9f};
    cr_assert_float_eq(ts_lr_at(&s, 0), 1.0f, 1e-7f);
    cr_assert_float_eq(ts_lr_at(&s, 1), 13.0f / 14.0f, 1e-6f);
    /* No warmup, a 20% decay of 100 steps: max through step 79, min at 99, monotone. */
    const struct ts_lr_schedule t = {.max_lr = 1.0f,
                                     .warmup = 0,
                                     .total = 100,
                                     .min_lr_frac = 0.0f,
                                     .kind = TS_LR_WSD,
                                     .decay_frac = 0.2f};
    cr_assert_float_eq(ts_lr_at(&t, 0), 1.0f, 1e-7f);
    cr_assert_float_eq(ts_lr_at(&t, 79), 1.0f, 1e-7f);
    cr_assert_float_eq(ts_lr_at(&t, 80), 0.95f, 1e-6f);
    cr_assert_float_eq(ts_lr_at(&t, 89), 0.5f, 1e-6f);
    cr_assert_float_eq(ts_lr_at(&t, 99), 0.0f, 1e-7f);
    for (int i = 0; i < 120; i++)
        cr_assert(ts_lr_at(&t, i + 1) <= ts_lr_at(&t, i), "not decreasing at %d", i);
}

Test(trainer_schedule, linear_and_constant_edges) {
    /* No room after the warmup: min_lr from step warmup on, as cosine does. */
    struct ts_lr_schedule s = {
        .max_lr = 1.0f, .warmup = 4, .total = 4, .min_lr_frac = 0.5f, .kind = TS_LR_LINEAR};
    cr_assert_float_eq(ts_lr_at(&s, 3), 1.0f, 1e-7f);
    cr_assert_float_eq(ts_lr_at(&s, 4), 0.5f, 1e-7f);
    /* No warmup: max at step 0. */
    s.warmup = 0;
    s.total = 3;
    cr_assert_float_eq(ts_lr_at(&s, 0), 1.0f, 1e-7f);
    cr_assert_float_eq(ts_lr_at(&s, 1), 0.75f, 1e-7f);
    cr_assert_float_eq(ts_lr_at(&s, 2), 0.5f, 1e-7f);
    cr_assert_float_eq(ts_lr_at(&s, -3), 1.0f, 1e-7f);
    /* Constant ignores min_lr_frac and the horizon. */
    s.kind = TS_LR_CONSTANT;
    s.min_lr_frac = 0.0f;
    cr_assert_float_eq(ts_lr_at(&s, 2), 1.0f, 1e-7f);
    cr_assert_float_eq(ts_lr_at(&s, 1000), 1.0f, 1e-7f);
}

Test(trainer_schedule, kind_names) {
    const char *names[] = {"cosine", "linear", "wsd", "constant"};
    const enum ts_lr_kind kinds[] = {TS_LR_COSINE, TS_LR_LINEAR, TS_LR_WSD, TS_LR_CONSTANT};
    for (int i = 0; i < 4; i++) {
        enum ts_lr_kind k = TS_LR_CONSTANT;
        cr_assert_eq(ts_lr_kind_parse(names[i], &k), TS_OK);
        cr_assert_eq(k, kinds[i]);
        cr_assert_str_eq(ts_lr_kind_name(kinds[i]), names[i]);
    }
    enum ts_lr_kind k = TS_LR_WSD;
    cr_assert_eq(ts_lr_kind_parse("Cosine", &k), TS_ERR_INVALID_ARG);
    cr_assert(strstr(ts_last_error(), "'Cosine'"), "%s", ts_last_error());
    cr_assert(strstr(ts_last_error(), "cosine, linear, wsd or constant"), "%s", ts_last_error());
    cr_assert_eq(k, TS_LR_WSD, "a failed parse leaves *out alone");
    cr_assert_eq(ts_lr_kind_parse("", &k), TS_ERR_INVALID_ARG);
    cr_assert_str_eq(ts_lr_kind_name((enum ts_lr_kind)99), "unknown");
}

static void check_refused(struct ts_lr_schedule s, const char *phrase) {
    cr_assert_eq(ts_lr_schedule_check(&s), TS_ERR_INVALID_ARG, "accepted, wanted '%s'", phrase);
    cr_assert(strstr(ts_last_error(), phrase), "'%s' lacks '%s'", ts_last_error(), phrase);
}

Test(trainer_schedule, check) {
    for (int k = 0; k < 4; k++) {
        const struct ts_lr_schedule s = small((enum ts_lr_kind)k);
        cr_assert_eq(ts_lr_schedule_check(&s), TS_OK, "%s", ts_last_error());
    }
    struct ts_lr_schedule s = small(TS_LR_COSINE);
    s.decay_frac = 0.0f; /* unused outside wsd */
    cr_assert_eq(ts_lr_schedule_check(&s), TS_OK);
    s.warmup = s.total; /* the peak at the last step: odd but meaningful */
    cr_assert_eq(ts_lr_schedule_check(&s), TS_OK);
    s.min_lr_frac = 1.0f;
    cr_assert_eq(ts_lr_schedule_check(&s), TS_OK);

    s = small(TS_LR_COSINE);
    s.warmup = 11;
    check_refused(s, "warmup of 11 steps is longer than the run's 10 steps");
    s.warmup = -1;
    check_refused(s, "warmup must be >= 0");
    s = small(TS_LR_LINEAR);
    s.total = 0;
    check_refused(s, "horizon must be >= 1 step");
    s = small(TS_LR_LINEAR);
    s.min_lr_frac = 1.5f;
    check_refused(s, "min_lr_frac must be in [0, 1]");
    s.min_lr_frac = -0.1f;
    check_refused(s, "min_lr_frac must be in [0, 1]");
    s.min_lr_frac = NAN;
    check_refused(s, "min_lr_frac must be in [0, 1]");
    s = small(TS_LR_CONSTANT);
    s.max_lr = 0.0f;
    check_refused(s, "peak learning rate must be positive");
    s.max_lr = INFINITY;
    check_refused(s, "peak learning rate must be positive and finite");
    s = small(TS_LR_WSD);
    s.decay_frac = 0.0f;
    check_refused(s, "decay_frac must be in (0, 1]");
    s.decay_frac = 1.01f;
    check_refused(s, "decay_frac must be in (0, 1]");
    s.decay_frac = 1.0f;
    cr_assert_eq(ts_lr_schedule_check(&s), TS_OK);
    s.kind = (enum ts_lr_kind)7;
    check_refused(s, "unknown learning-rate schedule kind 7");
}

/* ---- the batch ramp ---- */

Test(trainer_schedule, ramp_table) {
    /* full accum 8, start at 8/4 = 2, full after 1000 tokens: 2 + floor(6 * t / 1000). */
    const struct ts_batch_ramp r = {.ramp_tokens = 1000, .start_div = 4};
    const struct {
        int64_t tokens;
        int accum;
    } table[] = {{-5, 2},  {0, 2},   {166, 2}, {167, 3},  {333, 3},  {334, 4},     {500, 5},
                 {833, 6}, {834, 7}, {999, 7}, {1000, 8}, {1001, 8}, {1000000, 8}, {INT64_MAX, 8}};
    for (size_t i = 0; i < sizeof table / sizeof table[0]; i++)
        cr_assert_eq(ts_batch_ramp_accum(&r, 8, table[i].tokens), table[i].accum,
                     "tokens %lld: %d, want %d", (long long)table[i].tokens,
                     ts_batch_ramp_accum(&r, 8, table[i].tokens), table[i].accum);
    /* Monotone, by steps of one micro-step, inside [start, full]. */
    int prev = ts_batch_ramp_accum(&r, 8, 0);
    for (int64_t t = 1; t <= 1200; t++) {
        const int a = ts_batch_ramp_accum(&r, 8, t);
        cr_assert(a == prev || a == prev + 1, "jump at %lld: %d -> %d", (long long)t, prev, a);
        cr_assert(a >= 2 && a <= 8);
        prev = a;
    }
}

Test(trainer_schedule, ramp_start_and_off) {
    /* The start is ceil(full / div): 10 / 4 -> 3 micro-steps. */
    const struct ts_batch_ramp r = {.ramp_tokens = 100, .start_div = 4};
    cr_assert_eq(ts_batch_ramp_accum(&r, 10, 0), 3);
    /* div above full: clamped to one micro-step, the smallest global batch. */
    const struct ts_batch_ramp big = {.ramp_tokens = 100, .start_div = 8};
    cr_assert_eq(ts_batch_ramp_accum(&big, 3, 0), 1);
    cr_assert_eq(ts_batch_ramp_accum(&big, 3, 50), 2); /* 1 + floor(2 * 50 / 100) */
    cr_assert_eq(ts_batch_ramp_accum(&big, 3, 100), 3);
    /* Off: zero-initialised, or div 1, or nothing to ramp. */
    const struct ts_batch_ramp off = {0}, one = {.ramp_tokens = 100, .start_div = 1};
    for (int64_t t = 0; t < 200; t += 37) {
        cr_assert_eq(ts_batch_ramp_accum(&off, 6, t), 6);
        cr_assert_eq(ts_batch_ramp_accum(&one, 6, t), 6);
        cr_assert_eq(ts_batch_ramp_accum(&r, 1, t), 1);
    }
    /* Exact with products past 64 bits: (2^30 - 1 - a0) * (1e15 - 1) / 1e15. */
    const struct ts_batch_ramp huge = {.ramp_tokens = TS_BATCH_RAMP_MAX_TOKENS, .start_div = 2};
    const int full = (1 << 30) - 1;
    cr_assert_eq(ts_batch_ramp_accum(&huge, full, 0), 1 << 29);
    cr_assert_eq(ts_batch_ramp_accum(&huge, full, TS_BATCH_RAMP_MAX_TOKENS - 1), full - 1);
    cr_assert_eq(ts_batch_ramp_accum(&huge, full, TS_BATCH_RAMP_MAX_TOKENS / 2),
                 (1 << 29) + ((1 << 29) - 1) / 2);
}

Test(trainer_schedule, ramp_tokens_before) {
    /* 100 tokens per micro-step (B * T * dp), full 4, start 1, full after 1000 tokens:
     * accum 1, 1, 1, 1 (900 * 3 / 1000 < 1), 2 (1200 * 3 / 1000), 2, 3, then 4. */
    const struct ts_batch_ramp r = {.ramp_tokens = 1000, .start_div = 4};
    const int64_t want[] = {0, 100, 200, 300, 400, 600, 800, 1100, 1500, 1900};
    for (int step = 0; step < 10; step++)
        cr_assert_eq(ts_batch_ramp_tokens_before(&r, 4, 100, step), want[step], "step %d: %lld",
                     step, (long long)ts_batch_ramp_tokens_before(&r, 4, 100, step));
    const struct ts_batch_ramp off = {0};
    cr_assert_eq(ts_batch_ramp_tokens_before(&off, 4, 100, 7), 2800);
    cr_assert_eq(ts_batch_ramp_tokens_before(&off, 4, INT64_MAX / 8, 3), INT64_MAX);
    /* past the ramp, the steps are one product: 2^32 + 5 steps return at once, exactly */
    const int64_t big = 4294967301LL;
    cr_assert_eq(ts_batch_ramp_tokens_before(&r, 4, 100, big), 1900 + (big - 9) * 400);
    cr_assert_eq(ts_batch_ramp_tokens_before(&off, 4, 100, big), big * 400);
    cr_assert_eq(ts_batch_ramp_tokens_before(&off, 4, INT64_MAX / 1000, big), INT64_MAX);
}

/* 64-bit horizons: a schedule of 3e9 steps (an int wrapped to a negative count) reaches its
 * peak, its midpoint and its floor where the formulas say. */
Test(trainer_schedule, horizon_past_2_31) {
    const struct ts_lr_schedule s = {
        .max_lr = 1.0f, .warmup = 300000000, .total = 3000000001LL, .min_lr_frac = 0.1f};
    cr_assert_eq(ts_lr_schedule_check(&s), TS_OK, "%s", ts_last_error());
    cr_assert_float_eq(ts_lr_at(&s, 149999999), 0.5f, 1e-6f);
    cr_assert_eq(ts_lr_at(&s, 299999999), 1.0f);
    /* cosine midpoint: (max + min) / 2 at warmup + (total - 1 - warmup) / 2 */
    cr_assert_float_eq(ts_lr_at(&s, 300000000 + 1350000000), 0.55f, 1e-6f);
    cr_assert_float_eq(ts_lr_at(&s, 3000000000LL), 0.1f, 1e-7f);
    cr_assert_float_eq(ts_lr_at(&s, 4294967301LL), 0.1f, 1e-7f);
    struct ts_lr_schedule over = s;
    over.total = TS_MAX_STEPS + 1;
    cr_assert_eq(ts_lr_schedule_check(&over), TS_ERR_INVALID_ARG);
}

Test(trainer_schedule, ramp_parse) {
    const struct {
        const char *text;
        int64_t tokens;
        int div;
    } ok[] = {{"200000:4", 200000, 4},
              {"2e5:4", 200000, 4},
              {"200k:2", 200000, 2},
              {"200K:2", 200000, 2},
              {"10M:8", 10000000, 8},
              {"1G:1", 1000000000, 1},
              {"1.5M:3", 1500000, 3},
              {"2T:16", 2000000000000, 16},
              {"1e15:2", 1000000000000000, 2},
              {"1:2147483647", 1, INT_MAX},
              {"0.5k:2", 500, 2}};
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
        struct ts_batch_ramp r = {0};
        cr_assert_eq(ts_batch_ramp_parse(ok[i].text, &r), TS_OK, "%s: %s", ok[i].text,
                     ts_last_error());
        cr_assert_eq(r.ramp_tokens, ok[i].tokens, "%s: %lld", ok[i].text, (long long)r.ramp_tokens);
        cr_assert_eq(r.start_div, ok[i].div, "%s", ok[i].text);
    }
    const struct {
        const char *text, *phrase;
    } bad[] = {
        {"abc", "expected TOKENS:DIV"},
        {"", "expected TOKENS:DIV"},
        {"10:0", "DIV must be an integer >= 1"},
        {"10:", "DIV must be an integer >= 1"},
        {"10:-1", "DIV must be an integer >= 1"},
        {"10:3x", "DIV must be an integer >= 1"},
        {"10:2.5", "DIV must be an integer >= 1"},
        {"10:99999999999", "DIV must be an integer >= 1"},
        {"-5:2", "TOKENS must be a positive number"},
        {"abc:2", "TOKENS must be a positive number"},
        {":2", "TOKENS must be a"},
        {"k:2", "TOKENS must be a"},
        {" 10:2", "TOKENS must be a positive number"},
        {"10 :2", "TOKENS must be a positive number"},
        {"0x10:2", "TOKENS must be a positive number"},
        {"inf:2", "TOKENS must be a positive number"},
        {"nan:2", "TOKENS must be a positive number"},
        {"10m:2", "TOKENS must be a positive number"},
        {"1e30:2", "at most 1e15"},
        {"1e400:2", "at most 1e15"},
        {"2e15:2", "at most 1e15"},
        {"0:2", "at least 1"},
        {"0.5:2", "at least 1"},
        {"2.5:2", "whole number"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        struct ts_batch_ramp r = {.ramp_tokens = 7, .start_div = 3};
        cr_assert_eq(ts_batch_ramp_parse(bad[i].text, &r), TS_ERR_INVALID_ARG, "'%s' accepted",
                     bad[i].text);
        cr_assert(strstr(ts_last_error(), bad[i].phrase), "'%s': '%s' lacks '%s'", bad[i].text,
                  ts_last_error(), bad[i].phrase);
        cr_assert(r.ramp_tokens == 7 && r.start_div == 3, "'%s' touched *out", bad[i].text);
    }
}

Test(trainer_schedule, ramp_check) {
    const struct ts_batch_ramp r = {.ramp_tokens = 1000, .start_div = 4};
    cr_assert_eq(ts_batch_ramp_check(&r, 8), TS_OK);
    cr_assert_eq(ts_batch_ramp_check(&r, 3), TS_OK, "div above full accum is clamped, not refused");
    const struct ts_batch_ramp off = {0}, one = {.ramp_tokens = 1000, .start_div = 1};
    cr_assert_eq(ts_batch_ramp_check(&off, 1), TS_OK);
    cr_assert_eq(ts_batch_ramp_check(&one, 1), TS_OK);

    cr_assert_eq(ts_batch_ramp_check(&r, 1), TS_ERR_INVALID_ARG);
    cr_assert(strstr(ts_last_error(), "nothing to ramp"), "%s", ts_last_error());
    cr_assert_eq(ts_batch_ramp_check(&r, 0), TS_ERR_INVALID_ARG);
    cr_assert(strstr(ts_last_error(), "grad_accum must be >= 1"), "%s", ts_last_error());
    const struct ts_batch_ramp neg = {.ramp_tokens = -5, .start_div = 2};
    cr_assert_eq(ts_batch_ramp_check(&neg, 8), TS_ERR_INVALID_ARG);
    cr_assert(strstr(ts_last_error(), "-5 tokens"), "%s", ts_last_error());
    const struct ts_batch_ramp far = {.ramp_tokens = TS_BATCH_RAMP_MAX_TOKENS + 1, .start_div = 2};
    cr_assert_eq(ts_batch_ramp_check(&far, 8), TS_ERR_INVALID_ARG);
    const struct ts_batch_ramp zero = {.ramp_tokens = 1000, .start_div = 0};
    cr_assert_eq(ts_batch_ramp_check(&zero, 8), TS_ERR_INVALID_ARG);
    cr_assert(strstr(ts_last_error(), "divisor must be >= 1"), "%s", ts_last_error());
}
