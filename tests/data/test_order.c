/* test_order.c: the loader's window order: a seeded permutation per epoch, a pure function of
 * (seed, epoch, global index), and data-parallel ranks that together read each window of an
 * epoch exactly once. */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#include "data/shard.h"
#include "tok_util.h"

/* A loader over one shard whose window w starts with token w (T = 2: window w holds w*2,
 * w*2+1, w*2+2 with token value = position % 60000, so the first input names the window). */
static ts_loader_t *numbered_loader(char **dir, int64_t windows) {
    *dir = tok_mkdtemp();
    char *p = tok_path(*dir, "train_000.bin");
    const int64_t n = windows * 2 + 1;
    uint16_t *tok = malloc((size_t)n * sizeof(uint16_t));
    for (int64_t i = 0; i < n; i++)
        tok[i] = (uint16_t)(i % 60000);
    cr_assert_eq(ts_shard_write(p, tok, n), TS_OK, "%s", ts_last_error());
    ts_loader_t *l = NULL;
    cr_assert_eq(ts_loader_create(&l, p, 2, 60000), TS_OK, "%s", ts_last_error());
    cr_assert_eq(ts_loader_num_windows(l), windows);
    free(tok);
    free(p);
    return l;
}

Test(data_order, shuffle_is_a_permutation_each_epoch) {
    const int64_t sizes[] = {1, 2, 3, 5, 17, 64, 1000, 4097};
    for (size_t k = 0; k < sizeof(sizes) / sizeof(sizes[0]); k++) {
        char *dir;
        const int64_t n = sizes[k];
        ts_loader_t *l = numbered_loader(&dir, n);
        ts_loader_set_shuffle(l, true, 1234);
        char *seen = calloc((size_t)n, 1);
        int64_t moved = 0;
        for (int epoch = 0; epoch < 3; epoch++) {
            memset(seen, 0, (size_t)n);
            for (int64_t i = 0; i < n; i++) {
                const int64_t w = ts_loader_window_at(l, epoch * n + i);
                cr_assert(w >= 0 && w < n, "n %lld: window %lld out of range", (long long)n,
                          (long long)w);
                cr_assert_eq(seen[w], 0, "n %lld epoch %d: window %lld twice", (long long)n, epoch,
                             (long long)w);
                seen[w] = 1;
                moved += w != i;
            }
        }
        if (n >= 17)
            cr_assert_gt(moved, n, "n %lld: the shuffle barely moved anything", (long long)n);
        free(seen);
        ts_loader_destroy(l);
        tok_rmdir(dir);
    }
}

Test(data_order, order_depends_on_seed_and_epoch_only) {
    char *dir;
    const int64_t n = 500;
    ts_loader_t *a = numbered_loader(&dir, n), *b = NULL;
    char *p = tok_path(dir, "train_000.bin");
    cr_assert_eq(ts_loader_create(&b, p, 2, 60000), TS_OK);
    ts_loader_set_shuffle(a, true, 7);
    ts_loader_set_shuffle(b, true, 7);
    int same_epoch = 0, other_seed = 0;
    for (int64_t g = 0; g < n; g++) {
        cr_assert_eq(ts_loader_window_at(a, g), ts_loader_window_at(b, g), "seed 7, index %lld",
                     (long long)g);
        same_epoch += ts_loader_window_at(a, g) == ts_loader_window_at(a, g + n);
    }
    ts_loader_set_shuffle(b, true, 8);
    for (int64_t g = 0; g < n; g++)
        other_seed += ts_loader_window_at(a, g) == ts_loader_window_at(b, g);
    cr_assert_lt(same_epoch, n / 10, "epochs 0 and 1 share %d of %lld positions", same_epoch,
                 (long long)n);
    cr_assert_lt(other_seed, n / 10, "seeds 7 and 8 share %d of %lld positions", other_seed,
                 (long long)n);
    /* Reading by index does not depend on what was read before (a resume at any position). */
    int32_t in1[2], tg1[2], in2[2], tg2[2];
    cr_assert_eq(ts_loader_read(a, 777, 1, false, in1, tg1), TS_OK);
    for (int i = 0; i < 50; i++)
        cr_assert_eq(ts_loader_next(a, 1, in2, tg2), TS_OK);
    cr_assert_eq(ts_loader_read(a, 777, 1, false, in2, tg2), TS_OK);
    cr_assert_eq(in1[0], in2[0]);
    cr_assert_eq(in1[0], (int32_t)(ts_loader_window_at(a, 777) * 2));
    /* Off: file order. */
    ts_loader_set_shuffle(a, false, 7);
    for (int64_t g = 0; g < 2 * n; g++)
        cr_assert_eq(ts_loader_window_at(a, g), g % n);
    free(p);
    ts_loader_destroy(a);
    ts_loader_destroy(b);
    tok_rmdir(dir);
}

/* What the trainer does: step s of a global batch of GB = B*accum*dp windows at position p;
 * micro-step a of rank r reads [p + (a*dp + r)*B, +B). Every layout with the same global batch
 * reads the same windows, and over an epoch every window is read exactly once. */
Test(data_order, ranks_read_each_window_of_an_epoch_once) {
    char *dir;
    const int64_t n = 96; /* a multiple of every global batch below: whole epochs */
    ts_loader_t *l = numbered_loader(&dir, n);
    ts_loader_set_shuffle(l, true, 99);
    const int layouts[][3] = {{8, 1, 1}, {4, 2, 1}, {2, 2, 2}, {1, 2, 4}, {2, 1, 4}}; /* B,a,dp */
    int first[96];
    for (size_t k = 0; k < sizeof(layouts) / sizeof(layouts[0]); k++) {
        const int B = layouts[k][0], accum = layouts[k][1], dp = layouts[k][2];
        const int GB = B * accum * dp;
        cr_assert_eq(GB, 8);
        int count[96] = {0}, order[96], m = 0;
        for (int64_t p = 0; p < n; p += GB)
            for (int a = 0; a < accum; a++)
                for (int r = 0; r < dp; r++) {
                    int32_t in[8 * 2], tg[8 * 2];
                    const int64_t at = p + ((int64_t)a * dp + r) * B;
                    cr_assert_eq(ts_loader_read(l, at, B, false, in, tg), TS_OK);
                    for (int b = 0; b < B; b++) {
                        const int w = in[b * 2] / 2;
                        count[w]++;
                        order[m++] = w;
                    }
                }
        for (int w = 0; w < n; w++)
            cr_assert_eq(count[w], 1, "layout %zu: window %d read %d times", k, w, count[w]);
        /* Sequence order (micro-step, then rank) is the global order: the same for all. */
        if (k == 0)
            memcpy(first, order, sizeof(first));
        else
            cr_assert_eq(memcmp(first, order, sizeof(first)), 0, "layout %zu reads another order",
                         k);
    }
    ts_loader_destroy(l);
    tok_rmdir(dir);
}

Test(data_order, eval_reads_in_order_from_the_start) {
    char *dir;
    ts_loader_t *l = numbered_loader(&dir, 10);
    ts_loader_set_shuffle(l, true, 5);
    int32_t in[4], tg[4];
    cr_assert_eq(ts_loader_read(l, 3, 2, true, in, tg), TS_OK);
    cr_assert_eq(in[0], 6);
    cr_assert_eq(in[2], 8);
    cr_assert_eq(ts_loader_read(l, 12, 1, true, in, tg), TS_OK); /* wraps: window 2 */
    cr_assert_eq(in[0], 4);
    ts_loader_destroy(l);
    tok_rmdir(dir);
}
