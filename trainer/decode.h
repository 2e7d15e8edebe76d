/* decode.h: incremental decoding with a KV cache, and sampling the next token.
 *
 * A decoder feeds a model one token at a time. Each layer keeps the qkv rows of every position
 * fed so far (the KV cache), so a new token costs one row of each matmul and one attention row
 * instead of a full forward over the whole prefix. Like the model, it touches tensor data only
 * through backend ops; the logits of the next token come back to the host. One sequence at a
 * time (batch 1). */
#ifndef TS_DECODE_H
#define TS_DECODE_H

#include <stdint.h>

#include "trainer/gpt.h"

typedef struct ts_decoder ts_decoder_t;

/* A cache of max_len positions (<= the model's max_seq_len) on the model's backend. The decoder
 * borrows gpt, which must outlive it; its weights are read at every step, never copied. */
ts_status ts_decoder_create(ts_decoder_t **out, ts_gpt_t *gpt, int max_len) TS_MUST_CHECK;
void ts_decoder_destroy(ts_decoder_t *d);

void ts_decoder_reset(ts_decoder_t *d); /* forget every position */
int ts_decoder_len(const ts_decoder_t *d);
int ts_decoder_capacity(const ts_decoder_t *d);

/* Feeds `token` at position len and writes the next token's logits (V floats, host) into
 * logits when it is not NULL; len grows by one. Fails when the cache is full. */
ts_status ts_decoder_step(ts_decoder_t *d, int32_t token, float *logits) TS_MUST_CHECK;

struct ts_sampling {
    float temperature; /* 0: greedy (argmax); otherwise logits / temperature */
    int top_k;         /* keep the k most likely tokens; 0: all */
    float top_p;       /* keep the smallest set whose probability reaches p; 1: all */
    uint64_t seed;
};

/* Picks a token from logits (V floats, clobbered). order is caller scratch of V ints. The draw is
 * a pure function of (seed, counter), so a fixed seed reproduces a sample. Ties in likelihood
 * go to the lower id. */
int ts_sample_token(float *logits, int V, const struct ts_sampling *s, uint64_t counter,
                    int *order);

#endif
