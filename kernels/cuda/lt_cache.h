/* lt_cache.h: a small cache of cuBLASLt matmul plans keyed by shape, so a training step does not
 * rebuild descriptors and re-run the heuristic for each of its ~725 matmuls (matmul.cu).
 *
 * Plain C with no CUDA header: the key holds every argument the plan depends on as integers and
 * the value is opaque (matmul.cu's plan: descriptor, layouts, the heuristic's algorithm, or "no
 * algorithm"), made by the caller's create function on a miss and released by its destroy
 * function on eviction or at deinit. tests/kernels/test_lt_cache.c checks it with a fake create.
 * Bounded: at capacity the least recently used entry is evicted. Not thread-safe (one per
 * backend). */
#ifndef TS_CUDA_LT_CACHE_H
#define TS_CUDA_LT_CACHE_H

#include <stdbool.h>
#include <stdint.h>

#include "kernels/status.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Everything a cuBLASLt plan depends on, pointers excluded (they are set per call) but their
 * alignments included (the heuristic is told them). Build it zeroed (ts_lt_key_zero) so padding
 * compares equal. */
struct ts_lt_key {
    int32_t m, n, k, batch;
    int32_t ta, tb;
    int32_t ab_type, c_type; /* cudaDataType_t values */
    int32_t epilogue;        /* cublasLtEpilogue_t value */
    int32_t has_bias;
    int64_t lda, ldb, ldc, aux_ld;
    int64_t stride_a, stride_b, stride_c;
    uint32_t align_a, align_b, align_c;
    uint32_t pad_; /* always 0 */
};

static inline struct ts_lt_key ts_lt_key_zero(void) {
    struct ts_lt_key k;
    unsigned char *p = (unsigned char *)&k;
    for (unsigned i = 0; i < sizeof k; i++)
        p[i] = 0;
    return k;
}

/* Makes the value for key (or returns an error, which is passed on and nothing is cached). */
typedef ts_status (*ts_lt_create_fn)(const struct ts_lt_key *key, void *user, void **value);
typedef void (*ts_lt_destroy_fn)(void *value, void *user);

struct ts_lt_entry {
    struct ts_lt_key key;
    uint64_t hash; /* 0: empty */
    uint64_t used; /* the lookup tick of its last use */
    void *value;
};

/* Caller-owned. */
struct ts_lt_cache {
    struct ts_lt_entry *entries;
    int capacity, count;
    uint64_t tick;
    uint64_t hits, misses, evictions;
    ts_lt_create_fn create;
    ts_lt_destroy_fn destroy;
    void *user;
};

/* capacity >= 1 entries; create and destroy are called with user. */
ts_status ts_lt_cache_init(struct ts_lt_cache *c, int capacity, ts_lt_create_fn create,
                           ts_lt_destroy_fn destroy, void *user) TS_MUST_CHECK;

/* The value for key: cached, or made by create (evicting the least recently used entry when
 * full). *value stays valid until the next ts_lt_cache_get or deinit. */
ts_status ts_lt_cache_get(struct ts_lt_cache *c, const struct ts_lt_key *key,
                          void **value) TS_MUST_CHECK;

/* Destroys every value and the table (deinit of zeroed storage is a no-op). */
void ts_lt_cache_deinit(struct ts_lt_cache *c);

/* FNV-1a over the key's bytes, never 0. */
uint64_t ts_lt_key_hash(const struct ts_lt_key *key);

#ifdef __cplusplus
}
#endif

#endif
