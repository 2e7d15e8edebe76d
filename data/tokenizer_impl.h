/* tokenizer_impl.h: the tokenizer's internals, shared by tokenizer.c (loading, decoding) and
 * tokenizer_encode.c (pre-splitting, merging). Not a public header. */
#ifndef TS_TOKENIZER_IMPL_H
#define TS_TOKENIZER_IMPL_H

#include <stdint.h>

#include "data/sha256.h"
#include "data/tokenizer.h"

enum ts_tok_kind { TS_TOK_BYTES, TS_TOK_BPE };

struct ts_tokenizer {
    enum ts_tok_kind kind;
    char name[4096];
    int vocab_size, eot, num_merges;
    uint8_t *tok_bytes;   /* every token's bytes, back to back */
    int64_t *tok_off;     /* (V + 1): token id's bytes are tok_bytes[tok_off[id], tok_off[id+1]) */
    int32_t byte_id[256]; /* the id of each single byte */
    /* Merges as an open-addressing map (left, right) -> (rank, merged id); mcap a power of 2. */
    uint64_t *mkey; /* ((uint64)left << 32 | right) + 1; 0 = empty slot */
    int32_t *mrank, *mmerged;
    uint64_t mcap;
    int32_t *merge_left, *merge_right; /* by rank, for the hash */
    char sha256[TS_SHA256_HEX];
};

static inline uint64_t ts_tok_pair_hash(uint64_t key) {
    key ^= key >> 33;
    key *= 0xff51afd7ed558ccdULL;
    key ^= key >> 33;
    return key;
}

/* The (rank, merged) of pair (a, b), or rank -1 when a and b do not merge. */
static inline int32_t ts_tok_merge_find(const struct ts_tokenizer *t, int32_t a, int32_t b,
                                        int32_t *merged) {
    if (t->mcap == 0)
        return -1;
    uint64_t key = (((uint64_t)(uint32_t)a << 32) | (uint32_t)b) + 1;
    uint64_t mask = t->mcap - 1;
    for (uint64_t i = ts_tok_pair_hash(key) & mask;; i = (i + 1) & mask) {
        if (t->mkey[i] == key) {
            *merged = t->mmerged[i];
            return t->mrank[i];
        }
        if (t->mkey[i] == 0)
            return -1;
    }
}

/* Merges the bytes s[0..n) by the O(n^2) scan whatever n is (the encoder uses it for short chunks
 * only): the reference the tests hold the heap merge to. ids has room for n. */
ts_status ts_tok_bpe_reference(const struct ts_tokenizer *t, const uint8_t *s, size_t n,
                               int32_t *ids, size_t *count) TS_MUST_CHECK;

/* ts_tok_encode_parallel with pieces of about piece_bytes (0: its 1 MiB) instead, so tests and
 * fuzzers can cut small texts into many pieces. */
ts_status ts_tok_encode_pieces(const ts_tokenizer_t *t, const uint8_t *text, size_t n, int threads,
                               size_t piece_bytes, struct ts_tok_ids *ids) TS_MUST_CHECK;

#endif
