/* tokenizer_encode.c: text -> ids. GPT-2's pre-split pattern through PCRE2, then byte-pair
 * merges by rank within each chunk, with a per-encoder cache of chunk encodings.
 *
 * PCRE2 runs in UTF mode with Unicode properties for \s and \w-like classes (PCRE2_UCP), as
 * Python's `regex` and JavaScript's /u do for GPT-2's pattern, and with PCRE2_MATCH_INVALID_UTF
 * so invalid UTF-8 never matches: the bytes between matches become chunks of their own.
 *
 * Merging always takes the adjacent pair of lowest rank, the leftmost on ties. Short chunks (most
 * of them: natural text repeats its words, so most are also cache hits) scan an array of pair
 * ranks; long ones (a run of letters, digits, spaces or invalid UTF-8 is one chunk, of any
 * length) keep the symbols in a linked list and the pairs in a min-heap keyed (rank, position)
 * with lazy invalidation, O(n log n) instead of O(n^2). Both give the same ids: positions only
 * grow left to right, so the heap's least valid key is the scan's choice. */
#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "data/tokenizer_impl.h"

struct ts_tok_splitter {
    pcre2_match_data *md; /* this splitter's own: the compiled pattern is shared */
};

/* The pattern, compiled (and JIT-compiled when PCRE2 can) once per process: compiling costs
 * more than encoding a page of text, and a compiled pattern is read-only while matching, so
 * every splitter and encoder on every thread shares it, each with its own match data. It lives
 * until the process exits. */
static pthread_once_t pattern_once = PTHREAD_ONCE_INIT;
static pcre2_code *pattern;
static char pattern_err[256];

static void pattern_compile(void) {
    int err;
    PCRE2_SIZE erroff;
    pattern = pcre2_compile((PCRE2_SPTR)TS_TOK_GPT2_PATTERN, PCRE2_ZERO_TERMINATED,
                            PCRE2_UTF | PCRE2_UCP | PCRE2_MATCH_INVALID_UTF, &err, &erroff, NULL);
    if (pattern == NULL) {
        pcre2_get_error_message(err, (PCRE2_UCHAR *)pattern_err, sizeof(pattern_err));
        return;
    }
    (void)pcre2_jit_compile(pattern, PCRE2_JIT_COMPLETE); /* the interpreter works without it */
}

ts_status ts_tok_splitter_create(ts_tok_splitter_t **out) {
    *out = NULL;
    pthread_once(&pattern_once, pattern_compile);
    if (pattern == NULL)
        return ts_error(TS_ERR_UNSUPPORTED, "PCRE2 cannot compile the GPT-2 pattern: %s",
                        pattern_err);
    struct ts_tok_splitter *s = calloc(1, sizeof(*s));
    if (s == NULL)
        return ts_error(TS_ERR_OOM, "out of memory for a pre-splitter");
    s->md = pcre2_match_data_create_from_pattern(pattern, NULL);
    if (s->md == NULL) {
        free(s);
        return ts_error(TS_ERR_OOM, "out of memory for PCRE2 match data");
    }
    *out = s;
    return TS_OK;
}

void ts_tok_splitter_destroy(ts_tok_splitter_t *s) {
    if (s == NULL)
        return;
    pcre2_match_data_free(s->md);
    free(s);
}

ts_status ts_tok_split(ts_tok_splitter_t *s, const uint8_t *text, size_t n, ts_tok_chunk_fn fn,
                       void *ctx) {
    size_t pos = 0;
    while (pos < n) {
        int rc = pcre2_match(pattern, text, n, pos, 0, s->md, NULL);
        size_t a = n, b = n;
        if (rc >= 0) {
            PCRE2_SIZE *ov = pcre2_get_ovector_pointer(s->md);
            a = ov[0];
            b = ov[1];
        } else if (rc != PCRE2_ERROR_NOMATCH) {
            PCRE2_UCHAR msg[256];
            pcre2_get_error_message(rc, msg, sizeof(msg));
            return ts_error(TS_ERR_INTERNAL, "PCRE2 match failed at byte %zu: %s", pos, msg);
        }
        if (a > pos) /* bytes no alternative matched: invalid UTF-8 */
            TS_CHECK(fn(ctx, text + pos, a - pos));
        if (b == a) { /* no match, or an empty one: step past one byte */
            if (a < n)
                TS_CHECK(fn(ctx, text + a, 1));
            pos = a + 1;
            continue;
        }
        TS_CHECK(fn(ctx, text + a, b - a));
        pos = b;
    }
    return TS_OK;
}

/* The cache: chunk bytes -> ids, open addressing over two arenas (keys, ids). It starts small
 * and doubles when half full or when an arena is full, up to CACHE_MAX_SLOTS (6 MB of slots and
 * 6 MB of arenas), then is cleared when full: an encoder costs what the text it encodes needs,
 * so a short prompt, a small tokenizer or a fuzzer's input does not pay for 12 MB. */
#define CACHE_MAX_CHUNK 64
#define CACHE_MIN_SLOTS (1u << 10)
#define CACHE_MAX_SLOTS (1u << 18)
#define CACHE_KEY_BYTES 8 /* arena bytes per slot */
#define CACHE_IDS 4       /* arena ids per slot */

struct cache_slot {
    uint64_t hash; /* 0 = empty */
    uint32_t key_off, ids_off;
    uint16_t key_len, nids;
};

struct ts_tok_encoder {
    const struct ts_tokenizer *t;
    ts_tok_splitter_t *split;
    struct ts_tok_ids *out; /* the list the current encode call appends to */
    struct cache_slot *slots;
    uint32_t nslots, used; /* nslots: a power of 2 */
    uint8_t *keys;
    uint32_t keys_len, keys_cap;
    int32_t *ids;
    uint32_t ids_len, ids_cap;
    int32_t *sym, *rank;  /* the merge loop's word, grown to the longest chunk */
    int32_t *next, *prev; /* the long-chunk merge's linked list over sym */
    uint64_t *heap;       /* its (rank << 32 | position) min-heap, 3 * sym_cap entries */
    size_t sym_cap;
};

static ts_status grow(struct ts_tok_encoder *e, size_t n);

ts_status ts_tok_encoder_create(ts_tok_encoder_t **out, const ts_tokenizer_t *t) {
    *out = NULL;
    struct ts_tok_encoder *e = calloc(1, sizeof(*e));
    if (e == NULL)
        return ts_error(TS_ERR_OOM, "out of memory for an encoder");
    e->t = t;
    ts_status st = TS_OK;
    if (t->kind == TS_TOK_BPE) {
        st = ts_tok_splitter_create(&e->split);
        e->nslots = CACHE_MIN_SLOTS;
        e->slots = calloc(e->nslots, sizeof(struct cache_slot));
        e->keys_cap = e->nslots * CACHE_KEY_BYTES;
        e->ids_cap = e->nslots * CACHE_IDS;
        e->keys = malloc(e->keys_cap);
        e->ids = malloc(e->ids_cap * sizeof(int32_t));
        if (st == TS_OK && (!e->slots || !e->keys || !e->ids))
            st = ts_error(TS_ERR_OOM, "out of memory for an encoder's cache");
        if (st == TS_OK)
            st = grow(e, 256);
    }
    if (st != TS_OK) {
        ts_tok_encoder_destroy(e);
        return st;
    }
    *out = e;
    return TS_OK;
}

void ts_tok_encoder_destroy(ts_tok_encoder_t *e) {
    if (e == NULL)
        return;
    ts_tok_splitter_destroy(e->split);
    free(e->slots);
    free(e->keys);
    free(e->ids);
    free(e->sym);
    free(e->rank);
    free(e->next);
    free(e->prev);
    free(e->heap);
    free(e);
}

static uint64_t chunk_hash(const uint8_t *s, size_t n) {
    uint64_t h = 1469598103934665603ULL; /* FNV-1a */
    for (size_t i = 0; i < n; i++)
        h = (h ^ s[i]) * 1099511628211ULL;
    return h | 1;
}

/* Chunks up to this many bytes merge by scanning (fastest when short); longer ones by heap. */
#define SCAN_MAX_CHUNK 128

static ts_status grow(struct ts_tok_encoder *e, size_t n) {
    if (n <= e->sym_cap)
        return TS_OK;
    const size_t cap = n * 2;
    int32_t **arrs[] = {&e->sym, &e->rank, &e->next, &e->prev};
    for (size_t i = 0; i < sizeof(arrs) / sizeof(arrs[0]); i++) {
        int32_t *a = realloc(*arrs[i], cap * sizeof(int32_t));
        if (a == NULL)
            return ts_error(TS_ERR_OOM, "out of memory encoding a chunk of %zu bytes", n);
        *arrs[i] = a;
    }
    uint64_t *h = realloc(e->heap, 3 * cap * sizeof(uint64_t));
    if (h == NULL)
        return ts_error(TS_ERR_OOM, "out of memory encoding a chunk of %zu bytes", n);
    e->heap = h;
    e->sym_cap = cap;
    return TS_OK;
}

/* The scan: at every merge, the lowest rank in the array of pair ranks. O(n^2) for n symbols;
 * leaves the ids in sym[0..*count). */
static void bpe_scan(const struct ts_tokenizer *t, int32_t *sym, int32_t *rank, size_t n,
                     size_t *count) {
    int32_t merged = 0;
    for (size_t i = 0; i + 1 < n; i++)
        rank[i] = ts_tok_merge_find(t, sym[i], sym[i + 1], &merged);
    size_t m = n;
    while (m > 1) {
        size_t best = m;
        int32_t br = INT32_MAX;
        for (size_t i = 0; i + 1 < m; i++)
            if (rank[i] >= 0 && rank[i] < br) {
                br = rank[i];
                best = i;
            }
        if (best == m)
            break;
        ts_tok_merge_find(t, sym[best], sym[best + 1], &merged);
        sym[best] = merged;
        memmove(sym + best + 1, sym + best + 2, (m - best - 2) * sizeof(int32_t));
        memmove(rank + best + 1, rank + best + 2, (m - best - 2) * sizeof(int32_t));
        m--;
        if (best > 0)
            rank[best - 1] = ts_tok_merge_find(t, sym[best - 1], sym[best], &merged);
        if (best + 1 < m)
            rank[best] = ts_tok_merge_find(t, sym[best], sym[best + 1], &merged);
    }
    *count = m;
}

static void heap_push(uint64_t *h, size_t *len, uint64_t key) {
    size_t i = (*len)++;
    while (i > 0 && h[(i - 1) / 2] > key) {
        h[i] = h[(i - 1) / 2];
        i = (i - 1) / 2;
    }
    h[i] = key;
}

static uint64_t heap_pop(uint64_t *h, size_t *len) {
    const uint64_t top = h[0], last = h[--(*len)];
    size_t i = 0;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= *len)
            break;
        if (c + 1 < *len && h[c + 1] < h[c])
            c++;
        if (h[c] >= last)
            break;
        h[i] = h[c];
        i = c;
    }
    if (*len > 0)
        h[i] = last;
    return top;
}

/* The heap: symbol i lives at position i of a linked list (next/prev, -1 at the ends; a merge
 * keeps the left position), rank[i] is the rank of the pair starting at i (-1: none, or i is
 * gone). Every live pair has a heap key (rank << 32 | i); a key whose rank no longer matches
 * rank[i] is stale and skipped. At most n initial keys and 2 per merge: 3n entries. */
static void bpe_heap(const struct ts_tokenizer *t, struct ts_tok_encoder *e, size_t n,
                     size_t *count) {
    int32_t *sym = e->sym, *rank = e->rank, *next = e->next, *prev = e->prev, merged = 0;
    uint64_t *h = e->heap;
    size_t len = 0;
    for (size_t i = 0; i < n; i++) {
        next[i] = i + 1 < n ? (int32_t)(i + 1) : -1;
        prev[i] = (int32_t)i - 1;
        rank[i] = i + 1 < n ? ts_tok_merge_find(t, sym[i], sym[i + 1], &merged) : -1;
        if (rank[i] >= 0)
            heap_push(h, &len, (uint64_t)rank[i] << 32 | i);
    }
    while (len > 0) {
        const uint64_t key = heap_pop(h, &len);
        const int32_t i = (int32_t)(key & 0xffffffffu), r = (int32_t)(key >> 32);
        if (rank[i] != r)
            continue; /* stale: the pair at i changed since this key was pushed */
        const int32_t j = next[i];
        ts_tok_merge_find(t, sym[i], sym[j], &merged);
        sym[i] = merged;
        next[i] = next[j];
        if (next[j] >= 0)
            prev[next[j]] = i;
        rank[j] = -1;
        rank[i] = next[i] >= 0 ? ts_tok_merge_find(t, sym[i], sym[next[i]], &merged) : -1;
        if (rank[i] >= 0)
            heap_push(h, &len, (uint64_t)rank[i] << 32 | (uint32_t)i);
        const int32_t p = prev[i];
        if (p >= 0) {
            rank[p] = ts_tok_merge_find(t, sym[p], sym[i], &merged);
            if (rank[p] >= 0)
                heap_push(h, &len, (uint64_t)rank[p] << 32 | (uint32_t)p);
        }
    }
    size_t m = 0;
    for (int32_t i = 0; i >= 0; i = next[i])
        sym[m++] = sym[i];
    *count = m;
}

/* Merges one chunk's bytes; leaves the ids in e->sym[0..*count). */
static ts_status bpe(struct ts_tok_encoder *e, const uint8_t *s, size_t n, size_t *count) {
    const struct ts_tokenizer *t = e->t;
    if (n > INT32_MAX / 2)
        return ts_error(TS_ERR_INVALID_ARG,
                        "a chunk of %zu bytes (one run of letters, digits or spaces) is longer "
                        "than the encoder's 1 GiB",
                        n);
    TS_CHECK(grow(e, n));
    for (size_t i = 0; i < n; i++)
        e->sym[i] = t->byte_id[s[i]];
    if (n <= SCAN_MAX_CHUNK)
        bpe_scan(t, e->sym, e->rank, n, count);
    else
        bpe_heap(t, e, n, count);
    return TS_OK;
}

/* The scan over any chunk, for tests: the reference the heap must equal. */
ts_status ts_tok_bpe_reference(const struct ts_tokenizer *t, const uint8_t *s, size_t n,
                               int32_t *ids, size_t *count) {
    int32_t *rank = malloc((n + 1) * sizeof(int32_t));
    if (rank == NULL)
        return ts_error(TS_ERR_OOM, "out of memory");
    for (size_t i = 0; i < n; i++)
        ids[i] = t->byte_id[s[i]];
    bpe_scan(t, ids, rank, n, count);
    free(rank);
    return TS_OK;
}

static void cache_clear(struct ts_tok_encoder *e) {
    memset(e->slots, 0, e->nslots * sizeof(struct cache_slot));
    e->used = e->keys_len = e->ids_len = 0;
}

/* The slot holding (h, s[0..n)), or the empty slot where it would go. */
static uint32_t cache_probe(const struct ts_tok_encoder *e, uint64_t h, const uint8_t *s,
                            size_t n) {
    const uint32_t mask = e->nslots - 1;
    uint32_t i = (uint32_t)h & mask;
    for (; e->slots[i].hash != 0; i = (i + 1) & mask) {
        const struct cache_slot *c = &e->slots[i];
        if (s != NULL && c->hash == h && c->key_len == n && memcmp(e->keys + c->key_off, s, n) == 0)
            break;
    }
    return i;
}

/* Doubles the slots and both arenas, keeping the entries; false (the cache unchanged) when
 * already at the maximum or out of memory: the caller then clears it, as a cache may. */
static bool cache_grow(struct ts_tok_encoder *e) {
    if (e->nslots >= CACHE_MAX_SLOTS)
        return false;
    const uint32_t n = e->nslots * 2;
    struct cache_slot *slots = calloc(n, sizeof(*slots));
    uint8_t *keys = slots ? realloc(e->keys, (size_t)n * CACHE_KEY_BYTES) : NULL;
    if (keys != NULL) {
        e->keys = keys;
        e->keys_cap = n * CACHE_KEY_BYTES;
    }
    int32_t *ids = keys ? realloc(e->ids, (size_t)n * CACHE_IDS * sizeof(int32_t)) : NULL;
    if (ids == NULL) {
        free(slots);
        return false;
    }
    e->ids = ids;
    e->ids_cap = n * CACHE_IDS;
    struct cache_slot *old = e->slots;
    const uint32_t nold = e->nslots;
    e->slots = slots;
    e->nslots = n;
    for (uint32_t i = 0; i < nold; i++)
        if (old[i].hash != 0)
            e->slots[cache_probe(e, old[i].hash, NULL, 0)] = old[i];
    free(old);
    return true;
}

static ts_status encode_chunk(void *ctx, const uint8_t *s, size_t n) {
    struct ts_tok_encoder *e = ctx;
    struct ts_tok_ids *out = e->out;
    bool cacheable = n <= CACHE_MAX_CHUNK;
    uint64_t h = 0;
    uint32_t slot = 0;
    if (cacheable) {
        h = chunk_hash(s, n);
        slot = cache_probe(e, h, s, n);
        const struct cache_slot *c = &e->slots[slot];
        if (c->hash != 0) {
            for (int i = 0; i < c->nids; i++)
                TS_CHECK(ts_tok_ids_push(out, e->ids[c->ids_off + i]));
            return TS_OK;
        }
    }
    size_t m = 0;
    TS_CHECK(bpe(e, s, n, &m));
    for (size_t i = 0; i < m; i++)
        TS_CHECK(ts_tok_ids_push(out, e->sym[i]));
    if (!cacheable)
        return TS_OK;
    while (e->used >= e->nslots / 2 || e->keys_len + n > e->keys_cap ||
           e->ids_len + m > e->ids_cap) {
        if (!cache_grow(e))
            cache_clear(e);
        slot = cache_probe(e, h, NULL, 0);
    }
    struct cache_slot *c = &e->slots[slot];
    c->hash = h;
    c->key_off = e->keys_len;
    c->key_len = (uint16_t)n;
    c->ids_off = e->ids_len;
    c->nids = (uint16_t)m;
    memcpy(e->keys + e->keys_len, s, n);
    memcpy(e->ids + e->ids_len, e->sym, m * sizeof(int32_t));
    e->keys_len += (uint32_t)n;
    e->ids_len += (uint32_t)m;
    e->used++;
    return TS_OK;
}

ts_status ts_tok_encoder_encode(ts_tok_encoder_t *e, const uint8_t *text, size_t n,
                                struct ts_tok_ids *ids) {
    if (e->t->kind == TS_TOK_BYTES) {
        for (size_t i = 0; i < n; i++)
            TS_CHECK(ts_tok_ids_push(ids, text[i]));
        return TS_OK;
    }
    e->out = ids;
    ts_status st = ts_tok_split(e->split, text, n, encode_chunk, e);
    e->out = NULL;
    return st;
}
