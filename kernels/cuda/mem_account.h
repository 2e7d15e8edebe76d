/* mem_account.h: the CUDA backend's own device memory: bytes in use and their high-water mark,
 * kept by alloc and free (backend.h's info.peak_bytes), so a second backend or another process on
 * the same GPU does not count. Plain C with no CUDA header, so the cpu suite tests it
 * (tests/kernels/test_mem_account.c). Not thread-safe: one per backend, used from the thread that
 * drives the backend. */
#ifndef TS_CUDA_MEM_ACCOUNT_H
#define TS_CUDA_MEM_ACCOUNT_H

#include <stddef.h>
#include <stdint.h>

#include "kernels/status.h"

#ifdef __cplusplus
extern "C" {
#endif

struct ts_mem_slot {
    uintptr_t ptr; /* 0: empty */
    uint64_t bytes;
};

/* Caller-owned; zero-initialised storage is a valid empty account. */
struct ts_mem_account {
    uint64_t in_use; /* bytes allocated and not yet freed */
    uint64_t peak;   /* the largest in_use ever reached */
    size_t count;    /* live allocations */
    size_t cap;      /* slots (a power of two, or 0) */
    struct ts_mem_slot *slots;
};

/* Records an allocation of `bytes` at ptr (non-NULL, not already recorded). TS_ERR_OOM when the
 * table cannot grow; the account is then unchanged. */
ts_status ts_mem_account_add(struct ts_mem_account *a, const void *ptr,
                             uint64_t bytes) TS_MUST_CHECK;

/* Forgets ptr and returns its size; 0 (and no change) for NULL or a pointer never recorded. */
uint64_t ts_mem_account_remove(struct ts_mem_account *a, const void *ptr);

/* Frees the table; the counters stay readable. */
void ts_mem_account_deinit(struct ts_mem_account *a);

#ifdef __cplusplus
}
#endif

#endif
