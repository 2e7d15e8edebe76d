/* test_zero.c: ZeRO-1's optimizer slices in one process: optimizers over ranges that cut
 * tensors anywhere, fed the same global norm, update the parameters exactly as one optimizer
 * over the whole buffer (AdamW is elementwise; decay follows the tensor a range cuts). */
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"
#include "kernels/ops.h"
#include "trainer/optim.h"

static void set_grads(ts_gpt_t *g, uint64_t seed) {
    const int64_t n = ts_gpt_num_params(g);
    float *h = malloc((size_t)n * sizeof(float));
    for (int64_t i = 0; i < n; i++)
        h[i] = (float)((double)((i * 2654435761u + seed * 97u) % 2001) / 1000.0 - 1.0) * 0.01f;
    cr_assert_eq(ts_op_upload(ts_gpt_backend(g), ts_gpt_grad_buffer(g), h, (size_t)n * 4), TS_OK);
    free(h);
}

Test(trainer_zero, sliced_updates_equal_the_whole) {
    struct ts_backend *be = test_backend(1);
    struct ts_gpt_config cfg = test_tiny_config();
    ts_gpt_t *whole = NULL, *sliced = NULL;
    cr_assert_eq(ts_gpt_create(&whole, &cfg, be, 1, 8), TS_OK);
    cr_assert_eq(ts_gpt_create(&sliced, &cfg, be, 1, 8), TS_OK);
    cr_assert_eq(ts_gpt_init(whole, 3), TS_OK);
    cr_assert_eq(ts_gpt_init(sliced, 3), TS_OK);
    const int64_t n = ts_gpt_num_params(whole);
    struct ts_adamw_config ac = ts_adamw_defaults();
    ac.grad_clip = 0.5f; /* the norm below is above it: the clip scale matters */

    /* Three slices with cuts inside wte, inside a block and near the end. */
    const int64_t cuts[4] = {0, 1001, n / 2 + 17, n};
    ts_optim_t *full = NULL, *part[3] = {NULL};
    cr_assert_eq(ts_optim_create(&full, whole, &ac), TS_OK);
    for (int k = 0; k < 3; k++)
        cr_assert_eq(ts_optim_create_range(&part[k], sliced, &ac, cuts[k], cuts[k + 1]), TS_OK,
                     "%s", ts_last_error());

    for (int step = 0; step < 3; step++) {
        set_grads(whole, (uint64_t)step);
        set_grads(sliced, (uint64_t)step);
        double ss_full, ss = 0;
        cr_assert_eq(ts_optim_sum_squares(full, &ss_full), TS_OK);
        for (int k = 0; k < 3; k++) {
            double s;
            cr_assert_eq(ts_optim_sum_squares(part[k], &s), TS_OK);
            ss += s;
        }
        cr_assert(fabs(ss - ss_full) <= 1e-6 * ss_full, "sum of squares %g vs %g", ss, ss_full);
        cr_assert_gt(sqrt(ss_full), 0.5);
        /* The trainer gives every slice the same global norm. */
        cr_assert_eq(ts_optim_update(full, 1e-2f, sqrt(ss_full)), TS_OK);
        for (int k = 0; k < 3; k++)
            cr_assert_eq(ts_optim_update(part[k], 1e-2f, sqrt(ss_full)), TS_OK);
    }
    float *a = malloc((size_t)n * 4), *b = malloc((size_t)n * 4);
    cr_assert_eq(ts_gpt_params_to_host(whole, a), TS_OK);
    cr_assert_eq(ts_gpt_params_to_host(sliced, b), TS_OK);
    cr_assert_eq(memcmp(a, b, (size_t)n * 4), 0, "sliced AdamW differs from the whole");

    /* A bad range is refused. */
    ts_optim_t *bad = NULL;
    cr_assert_eq(ts_optim_create_range(&bad, whole, &ac, 10, n + 1), TS_ERR_INVALID_ARG);
    cr_assert_null(bad);
    free(a);
    free(b);
    ts_optim_destroy(full);
    for (int k = 0; k < 3; k++)
        ts_optim_destroy(part[k]);
    ts_gpt_destroy(whole);
    ts_gpt_destroy(sliced);
    ts_backend_destroy(be);
}
