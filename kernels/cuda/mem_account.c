/* mem_account.c: a pointer -> size table (open addressing, linear probing, backward-shift
 * deletion) with a running total and its high-water mark (mem_account.h). A backend makes a few
 * hundred allocations at most, so the table stays small; lookups are O(1) expected. */
#include "kernels/cuda/mem_account.h"

#include <stdlib.h>

static size_t slot_of(uintptr_t p, size_t cap) {
    uint64_t h = (uint64_t)p;
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdull;
    h ^= h >> 33;
    return (size_t)h & (cap - 1);
}

static void put(struct ts_mem_slot *slots, size_t cap, uintptr_t p, uint64_t bytes) {
    size_t i = slot_of(p, cap);
    while (slots[i].ptr != 0)
        i = (i + 1) & (cap - 1);
    slots[i].ptr = p;
    slots[i].bytes = bytes;
}

/* Keeps the load factor at or under 1/2. */
static ts_status grow(struct ts_mem_account *a) {
    const size_t cap = a->cap ? 2 * a->cap : 64;
    struct ts_mem_slot *s = calloc(cap, sizeof *s);
    if (!s)
        return ts_error(TS_ERR_OOM, "cuda memory accounting: out of host memory");
    for (size_t i = 0; i < a->cap; i++)
        if (a->slots[i].ptr != 0)
            put(s, cap, a->slots[i].ptr, a->slots[i].bytes);
    free(a->slots);
    a->slots = s;
    a->cap = cap;
    return TS_OK;
}

ts_status ts_mem_account_add(struct ts_mem_account *a, const void *ptr, uint64_t bytes) {
    if (!ptr)
        return ts_error(TS_ERR_INTERNAL, "cuda memory accounting: NULL allocation recorded");
    if (2 * (a->count + 1) > a->cap)
        TS_CHECK(grow(a));
    put(a->slots, a->cap, (uintptr_t)ptr, bytes);
    a->count++;
    a->in_use += bytes;
    if (a->in_use > a->peak)
        a->peak = a->in_use;
    return TS_OK;
}

uint64_t ts_mem_account_remove(struct ts_mem_account *a, const void *ptr) {
    if (!ptr || a->cap == 0)
        return 0;
    const size_t mask = a->cap - 1;
    size_t i = slot_of((uintptr_t)ptr, a->cap);
    while (a->slots[i].ptr != (uintptr_t)ptr) {
        if (a->slots[i].ptr == 0)
            return 0; /* never recorded */
        i = (i + 1) & mask;
    }
    const uint64_t bytes = a->slots[i].bytes;
    /* backward-shift deletion: pull later entries of the probe run into the hole */
    size_t hole = i, j = i;
    for (;;) {
        j = (j + 1) & mask;
        if (a->slots[j].ptr == 0)
            break;
        const size_t home = slot_of(a->slots[j].ptr, a->cap);
        /* j's entry may move to hole when its home is not cyclically in (hole, j] */
        const int in_range = hole <= j ? (home > hole && home <= j) : (home > hole || home <= j);
        if (!in_range) {
            a->slots[hole] = a->slots[j];
            hole = j;
        }
    }
    a->slots[hole].ptr = 0;
    a->slots[hole].bytes = 0;
    a->count--;
    a->in_use -= bytes;
    return bytes;
}

void ts_mem_account_deinit(struct ts_mem_account *a) {
    free(a->slots);
    a->slots = NULL;
    a->cap = 0;
    a->count = 0;
}
