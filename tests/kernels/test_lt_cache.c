/* test_lt_cache.c: the CUDA plug-in's cuBLASLt plan cache (kernels/cuda/lt_cache.c), which is
 * plain C: with a fake create function counting its calls, a repeated shape is made once, any
 * field of the key makes a different plan, the least recently used plan is evicted at capacity
 * and destroyed exactly once, and a failed create caches nothing. */
#include <criterion/criterion.h>
#include <string.h>

#include "kernels/cuda/lt_cache.h"

struct fake {
    int created, destroyed, fail_next;
    int live;
};

static ts_status fake_create(const struct ts_lt_key *key, void *user, void **value) {
    struct fake *f = user;
    if (f->fail_next) {
        f->fail_next = 0;
        return ts_error(TS_ERR_CUDA, "fake create failed");
    }
    struct ts_lt_key *copy = malloc(sizeof *copy);
    *copy = *key;
    f->created++;
    f->live++;
    *value = copy;
    return TS_OK;
}

static void fake_destroy(void *value, void *user) {
    struct fake *f = user;
    f->destroyed++;
    f->live--;
    free(value);
}

static struct ts_lt_key key(int m, int n, int k) {
    struct ts_lt_key kk = ts_lt_key_zero();
    kk.m = m;
    kk.n = n;
    kk.k = k;
    kk.batch = 1;
    kk.ab_type = 14; /* CUDA_R_16BF */
    kk.c_type = 0;   /* CUDA_R_32F */
    kk.lda = k;
    kk.ldb = n;
    kk.ldc = n;
    kk.align_a = kk.align_b = kk.align_c = 256;
    return kk;
}

Test(kernels_lt_cache, a_repeated_shape_is_made_once) {
    struct fake f = {0};
    struct ts_lt_cache c;
    cr_assert_eq(ts_lt_cache_init(&c, 8, fake_create, fake_destroy, &f), TS_OK);
    void *v1 = NULL, *v2 = NULL;
    struct ts_lt_key a = key(8192, 2304, 768);
    for (int i = 0; i < 100; i++) {
        cr_assert_eq(ts_lt_cache_get(&c, &a, i ? &v2 : &v1), TS_OK);
    }
    cr_assert_eq(f.created, 1);
    cr_assert_eq(v1, v2);
    cr_assert_eq(memcmp(v1, &a, sizeof a), 0, "the value was made for this key");
    cr_assert_eq(c.hits, 99);
    cr_assert_eq(c.misses, 1);
    ts_lt_cache_deinit(&c);
    cr_assert_eq(f.live, 0, "deinit destroys every plan");
}

Test(kernels_lt_cache, every_field_of_the_key_matters) {
    struct fake f = {0};
    struct ts_lt_cache c;
    cr_assert_eq(ts_lt_cache_init(&c, 64, fake_create, fake_destroy, &f), TS_OK);
    struct ts_lt_key variants[16];
    for (int i = 0; i < 16; i++)
        variants[i] = key(64, 96, 32);
    variants[1].m = 65;
    variants[2].n = 97;
    variants[3].k = 33;
    variants[4].ta = 1;
    variants[5].tb = 1;
    variants[6].ab_type = 0;
    variants[7].c_type = 14;
    variants[8].epilogue = 4;
    variants[9].has_bias = 1;
    variants[10].ldc = 128;
    variants[11].align_a = 2;
    variants[12].batch = 12;
    variants[13].stride_c = 6144;
    variants[14].aux_ld = 96;
    variants[15].lda = 40;
    void *v[16];
    for (int i = 0; i < 16; i++)
        cr_assert_eq(ts_lt_cache_get(&c, &variants[i], &v[i]), TS_OK);
    cr_assert_eq(f.created, 16, "%d plans for 16 different keys", f.created);
    for (int i = 0; i < 16; i++)
        for (int j = 0; j < i; j++)
            cr_assert_neq(v[i], v[j], "keys %d and %d share a plan", i, j);
    for (int i = 0; i < 16; i++) { /* all still there */
        void *again = NULL;
        cr_assert_eq(ts_lt_cache_get(&c, &variants[i], &again), TS_OK);
        cr_assert_eq(again, v[i]);
    }
    cr_assert_eq(f.created, 16);
    ts_lt_cache_deinit(&c);
    cr_assert_eq(f.live, 0);
}

Test(kernels_lt_cache, the_least_recently_used_plan_is_evicted) {
    struct fake f = {0};
    struct ts_lt_cache c;
    cr_assert_eq(ts_lt_cache_init(&c, 3, fake_create, fake_destroy, &f), TS_OK);
    struct ts_lt_key a = key(1, 1, 1), b = key(2, 2, 2), d = key(3, 3, 3), e = key(4, 4, 4);
    void *v = NULL;
    cr_assert_eq(ts_lt_cache_get(&c, &a, &v), TS_OK);
    cr_assert_eq(ts_lt_cache_get(&c, &b, &v), TS_OK);
    cr_assert_eq(ts_lt_cache_get(&c, &d, &v), TS_OK);
    cr_assert_eq(ts_lt_cache_get(&c, &a, &v), TS_OK); /* a is now the most recent; b the least */
    cr_assert_eq(ts_lt_cache_get(&c, &e, &v), TS_OK); /* evicts b */
    cr_assert_eq(f.destroyed, 1);
    cr_assert_eq(c.count, 3);
    cr_assert_eq(f.live, 3, "the cache holds at most its capacity");
    const int before = f.created;
    cr_assert_eq(ts_lt_cache_get(&c, &a, &v), TS_OK);
    cr_assert_eq(ts_lt_cache_get(&c, &d, &v), TS_OK);
    cr_assert_eq(ts_lt_cache_get(&c, &e, &v), TS_OK);
    cr_assert_eq(f.created, before, "a, d and e were kept");
    cr_assert_eq(ts_lt_cache_get(&c, &b, &v), TS_OK);
    cr_assert_eq(f.created, before + 1, "b was evicted and is made again");
    cr_assert_eq(c.evictions, 2);
    ts_lt_cache_deinit(&c);
    cr_assert_eq(f.live, 0);
    cr_assert_eq(f.destroyed, f.created);
}

Test(kernels_lt_cache, a_failed_create_caches_nothing) {
    struct fake f = {0};
    struct ts_lt_cache c;
    cr_assert_eq(ts_lt_cache_init(&c, 4, fake_create, fake_destroy, &f), TS_OK);
    struct ts_lt_key a = key(5, 6, 7);
    void *v = (void *)1;
    f.fail_next = 1;
    cr_assert_eq(ts_lt_cache_get(&c, &a, &v), TS_ERR_CUDA);
    cr_assert_null(v);
    cr_assert(strstr(ts_last_error(), "fake create failed") != NULL, "%s", ts_last_error());
    cr_assert_eq(c.count, 0);
    cr_assert_eq(ts_lt_cache_get(&c, &a, &v), TS_OK, "the next call tries again");
    cr_assert_not_null(v);
    cr_assert_eq(f.created, 1);
    ts_lt_cache_deinit(&c);
    ts_lt_cache_deinit(&c); /* zeroed: a no-op */
    cr_assert_eq(f.live, 0);
}

Test(kernels_lt_cache, bad_arguments_are_refused) {
    struct fake f = {0};
    struct ts_lt_cache c;
    cr_assert_eq(ts_lt_cache_init(&c, 0, fake_create, fake_destroy, &f), TS_ERR_INVALID_ARG);
    cr_assert_eq(ts_lt_cache_init(&c, 4, NULL, fake_destroy, &f), TS_ERR_INVALID_ARG);
    ts_lt_cache_deinit(&c);
}
