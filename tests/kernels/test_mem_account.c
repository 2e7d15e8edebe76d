/* test_mem_account.c: the CUDA backend's accounting of its own device memory
 * (kernels/cuda/mem_account.c, plain C): bytes in use and their high-water mark over
 * allocations and frees, a table that grows and deletes correctly, unknown pointers ignored. */
#include <criterion/criterion.h>
#include <stdint.h>

#include "kernels/cuda/mem_account.h"

static const void *ptr(uintptr_t p) { return (const void *)p; }

Test(kernels_mem_account, peak_is_the_high_water_mark_of_what_is_in_use) {
    struct ts_mem_account a = {0};
    cr_assert_eq(ts_mem_account_add(&a, ptr(0x1000), 100), TS_OK);
    cr_assert_eq(ts_mem_account_add(&a, ptr(0x2000), 50), TS_OK);
    cr_assert_eq(a.in_use, 150);
    cr_assert_eq(ts_mem_account_remove(&a, ptr(0x1000)), 100);
    cr_assert_eq(a.in_use, 50);
    cr_assert_eq(a.peak, 150);
    cr_assert_eq(ts_mem_account_add(&a, ptr(0x3000), 70), TS_OK);
    cr_assert_eq(a.in_use, 120);
    cr_assert_eq(a.peak, 150, "120 in use is under the earlier peak");
    cr_assert_eq(ts_mem_account_add(&a, ptr(0x4000), 40), TS_OK);
    cr_assert_eq(a.peak, 160);
    ts_mem_account_deinit(&a);
}

Test(kernels_mem_account, unknown_and_null_pointers_change_nothing) {
    struct ts_mem_account a = {0};
    cr_assert_eq(ts_mem_account_remove(&a, ptr(0x1000)), 0, "an empty account");
    cr_assert_eq(ts_mem_account_add(&a, ptr(0x1000), 8), TS_OK);
    cr_assert_eq(ts_mem_account_remove(&a, NULL), 0);
    cr_assert_eq(ts_mem_account_remove(&a, ptr(0x1008)), 0);
    cr_assert_eq(a.in_use, 8);
    cr_assert_eq(ts_mem_account_remove(&a, ptr(0x1000)), 8);
    cr_assert_eq(ts_mem_account_remove(&a, ptr(0x1000)), 0, "a second free is ignored");
    cr_assert_eq(a.in_use, 0);
    cr_assert_eq(a.count, 0);
    cr_assert_eq(ts_mem_account_add(&a, NULL, 8), TS_ERR_INTERNAL);
    ts_mem_account_deinit(&a);
}

/* Thousands of 256-byte aligned pointers (as cudaMalloc returns), freed in an interleaved order:
 * every size comes back exactly, through growth and backward-shift deletions. */
Test(kernels_mem_account, many_allocations_through_growth_and_deletion) {
    struct ts_mem_account a = {0};
    enum { N = 5000 };
    uint64_t total = 0, peak = 0;
    for (uintptr_t i = 1; i <= N; i++) {
        cr_assert_eq(ts_mem_account_add(&a, ptr(i * 256), i), TS_OK);
        total += i;
        if (i % 3 == 0) { /* free an earlier one */
            const uintptr_t j = i / 3;
            cr_assert_eq(ts_mem_account_remove(&a, ptr(j * 256)), j, "size of %lu",
                         (unsigned long)j);
            total -= j;
        }
        peak = total > peak ? total : peak;
        cr_assert_eq(a.in_use, total);
    }
    cr_assert_eq(a.peak, peak);
    for (uintptr_t i = 1; i <= N; i++) {
        const uint64_t got = ts_mem_account_remove(&a, ptr(i * 256));
        const int freed_before = i <= N / 3;
        cr_assert_eq(got, freed_before ? 0 : i, "pointer %lu: %lu", (unsigned long)i,
                     (unsigned long)got);
    }
    cr_assert_eq(a.in_use, 0);
    cr_assert_eq(a.count, 0);
    cr_assert_eq(a.peak, peak);
    ts_mem_account_deinit(&a);
}
