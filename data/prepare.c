/* prepare.c: text files to token shards and a data manifest (prepare.h).
 *
 * The whole stream of ids is held in memory, then cut into shards: the val split is the tail
 * of the stream, so its size is only known once every input is encoded. */
#include "data/prepare.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "data/data_manifest.h"
#include "data/sha256.h"
#include "data/shard.h"
#include "data/tokenizer.h"
#include "kernels/fs.h"

struct ts_prepare_config ts_prepare_defaults(void) {
    return (struct ts_prepare_config){
        .tokenizer = "gpt2", .val_fraction = 0.01f, .shard_tokens = 100000000};
}

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* Encodes every input into one stream of ids and records the sources in the manifest. */
static ts_status encode_all(const struct ts_prepare_config *p, const ts_tokenizer_t *t,
                            struct ts_data_manifest *m, struct ts_tok_ids *ids, size_t *bytes) {
    int eot = ts_tokenizer_eot(t);
    for (int i = 0; i < p->num_inputs; i++) {
        uint8_t *text = NULL;
        size_t n = 0;
        TS_CHECK(ts_fs_read_file(p->inputs[i], &text, &n));
        struct ts_sha256 h;
        char hex[TS_SHA256_HEX];
        ts_sha256_init(&h);
        ts_sha256_update(&h, text, n);
        ts_sha256_final(&h, hex);
        ts_status st = ts_data_manifest_add_source(m, p->inputs[i], (int64_t)n, hex);
        if (st == TS_OK && eot >= 0)
            st = ts_tok_ids_push(ids, eot);
        if (st == TS_OK)
            st = ts_tok_encode_parallel(t, text, n, p->threads, ids);
        free(text);
        if (st != TS_OK)
            return ts_error_wrap(st, "%s", p->inputs[i]);
        *bytes += n;
    }
    return TS_OK;
}

static ts_status write_shards(const struct ts_prepare_config *p, const struct ts_tok_ids *ids,
                              struct ts_data_manifest *m) {
    int64_t n = ids->n;
    int64_t nval = (int64_t)((double)n * (double)p->val_fraction);
    int64_t ntrain = n - nval;
    if (ntrain < 2 || (p->val_fraction > 0.0f && nval < 2))
        return ts_error(TS_ERR_INVALID_ARG,
                        "the input holds %" PRId64 " tokens: too few to split into train and val",
                        n);
    uint16_t *tok = malloc((size_t)(n > 0 ? n : 1) * sizeof(uint16_t));
    if (tok == NULL)
        return ts_error(TS_ERR_OOM, "out of memory for %" PRId64 " tokens", n);
    for (int64_t i = 0; i < n; i++)
        tok[i] = (uint16_t)ids->ids[i];
    ts_status st = ts_fs_mkdirs(p->out);
    char path[4200];
    int shards = 0;
    for (int64_t off = 0; st == TS_OK && off < ntrain; off += p->shard_tokens, shards++) {
        int64_t len = ntrain - off < p->shard_tokens ? ntrain - off : p->shard_tokens;
        snprintf(path, sizeof(path), "%s/train_%03d.bin", p->out, shards);
        st = ts_shard_write(path, tok + off, len);
    }
    snprintf(path, sizeof(path), "%s/val.bin", p->out);
    if (st == TS_OK && nval > 0)
        st = ts_shard_write(path, tok + ntrain, nval);
    else if (st == TS_OK)
        remove(path); /* a val.bin of an earlier run would not match this manifest */
    free(tok);
    m->train_tokens = ntrain;
    m->val_tokens = nval;
    m->num_train_shards = shards;
    return st;
}

static ts_status check_config(const struct ts_prepare_config *p) {
    if (p->tokenizer == NULL || p->out == NULL || p->num_inputs < 1 || p->inputs == NULL)
        return ts_error(TS_ERR_INVALID_ARG, "prepare: needs a tokenizer, inputs and an output");
    for (int i = 0; i < p->num_inputs; i++)
        if (p->inputs[i] == NULL)
            return ts_error(TS_ERR_INVALID_ARG, "prepare: input %d is NULL", i);
    if (!(p->val_fraction >= 0.0f && p->val_fraction < 1.0f) || p->shard_tokens < 2 ||
        p->threads < 0)
        return ts_error(TS_ERR_INVALID_ARG,
                        "prepare: val_fraction must be in [0, 1), shard_tokens >= 2, "
                        "threads >= 0");
    return TS_OK;
}

ts_status ts_data_prepare(const struct ts_prepare_config *p, struct ts_prepare_result *out) {
    memset(out, 0, sizeof(*out));
    TS_CHECK(check_config(p));
    ts_tokenizer_t *t = NULL;
    struct ts_tok_ids ids = {0};
    struct ts_data_manifest m;
    ts_data_manifest_init(&m);
    size_t bytes = 0;
    ts_status st;
    double t0 = now_s();
    TS_CHECK_GOTO(ts_tokenizer_load(&t, p->tokenizer), st, done);
    snprintf(m.tokenizer, sizeof(m.tokenizer), "%s", ts_tokenizer_name(t));
    m.vocab_size = ts_tokenizer_vocab_size(t);
    m.eot = ts_tokenizer_eot(t);
    snprintf(m.vocab_sha256, sizeof(m.vocab_sha256), "%s", ts_tokenizer_vocab_sha256(t));
    TS_CHECK_GOTO(encode_all(p, t, &m, &ids, &bytes), st, done);
    double t1 = now_s();
    TS_CHECK_GOTO(write_shards(p, &ids, &m), st, done);
    char path[4200];
    snprintf(path, sizeof(path), "%s/%s", p->out, TS_DATA_MANIFEST_NAME);
    TS_CHECK_GOTO(ts_data_manifest_write(&m, path), st, done);
    snprintf(out->tokenizer, sizeof(out->tokenizer), "%s", ts_tokenizer_name(t));
    out->vocab_size = m.vocab_size;
    out->bytes = bytes;
    out->tokens = ids.n;
    out->train_tokens = m.train_tokens;
    out->val_tokens = m.val_tokens;
    out->num_train_shards = m.num_train_shards;
    out->encode_s = t1 - t0;
done:
    ts_tok_ids_free(&ids);
    ts_data_manifest_deinit(&m);
    ts_tokenizer_destroy(t);
    return st;
}
