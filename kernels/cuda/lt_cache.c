/* lt_cache.c: the cuBLASLt plan cache (lt_cache.h). A flat array searched by hash: with a few
 * dozen distinct shapes per model (GPT-2: about 30 matmul shapes, forward and backward), a scan
 * comparing 64-bit hashes is a few dozen nanoseconds, far below the heuristic it saves. */
#include "kernels/cuda/lt_cache.h"

#include <stdlib.h>
#include <string.h>

uint64_t ts_lt_key_hash(const struct ts_lt_key *key) {
    const unsigned char *p = (const unsigned char *)key;
    uint64_t h = 0xcbf29ce484222325ull;
    for (size_t i = 0; i < sizeof *key; i++) {
        h ^= p[i];
        h *= 0x100000001b3ull;
    }
    return h ? h : 1;
}

ts_status ts_lt_cache_init(struct ts_lt_cache *c, int capacity, ts_lt_create_fn create,
                           ts_lt_destroy_fn destroy, void *user) {
    memset(c, 0, sizeof *c);
    if (capacity < 1 || !create || !destroy)
        return ts_error(TS_ERR_INVALID_ARG,
                        "cuBLASLt plan cache: capacity %d must be >= 1 and "
                        "create/destroy given",
                        capacity);
    c->entries = calloc((size_t)capacity, sizeof *c->entries);
    if (!c->entries)
        return ts_error(TS_ERR_OOM, "cuBLASLt plan cache: out of host memory");
    c->capacity = capacity;
    c->create = create;
    c->destroy = destroy;
    c->user = user;
    return TS_OK;
}

ts_status ts_lt_cache_get(struct ts_lt_cache *c, const struct ts_lt_key *key, void **value) {
    *value = NULL;
    const uint64_t h = ts_lt_key_hash(key);
    c->tick++;
    struct ts_lt_entry *free_e = NULL, *lru = NULL;
    for (int i = 0; i < c->capacity; i++) {
        struct ts_lt_entry *e = &c->entries[i];
        if (e->hash == 0) {
            if (!free_e)
                free_e = e;
            continue;
        }
        if (e->hash == h && memcmp(&e->key, key, sizeof *key) == 0) {
            e->used = c->tick;
            c->hits++;
            *value = e->value;
            return TS_OK;
        }
        if (!lru || e->used < lru->used)
            lru = e;
    }
    c->misses++;
    void *v = NULL;
    TS_CHECK(c->create(key, c->user, &v));
    struct ts_lt_entry *slot = free_e;
    if (!slot) { /* full: the least recently used one goes */
        c->destroy(lru->value, c->user);
        c->evictions++;
        c->count--;
        slot = lru;
    }
    slot->key = *key;
    slot->hash = h;
    slot->used = c->tick;
    slot->value = v;
    c->count++;
    *value = v;
    return TS_OK;
}

void ts_lt_cache_deinit(struct ts_lt_cache *c) {
    for (int i = 0; c->entries && i < c->capacity; i++)
        if (c->entries[i].hash != 0)
            c->destroy(c->entries[i].value, c->user);
    free(c->entries);
    memset(c, 0, sizeof *c);
}
