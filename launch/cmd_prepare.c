/* cmd_prepare.c: `tessera prepare`, text files to token shards and a data manifest.
 *
 * Each input file is one document. With a BPE tokenizer (gpt2 or a trained directory) every
 * document is preceded by <|endoftext|>, as llm.c's data scripts do, so the model always sees a
 * document boundary; the bytes tokenizer has no spare id, so its documents are simply
 * concatenated. The stream's last --val-fraction of tokens goes to val.bin, the rest to
 * train_NNN.bin shards (llm.c's format). Encoding runs on all cores
 * (ts_tok_encode_parallel); manifest.json records the tokenizer and every source's sha256. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "data/data_manifest.h"
#include "data/shard.h"
#include "data/tokenizer.h"
#include "kernels/fs.h"
#include "launch/cli.h"
#include "launch/commands.h"
#include "launch/common.h"

#define MAX_INPUTS 4096

struct prep {
    const char *tokenizer, *out;
    const char **inputs;
    int ninputs, threads;
    float val_fraction;
    int64_t shard_tokens;
};

/* Encodes every input into one stream of ids and records the sources in the manifest. */
static ts_status encode_all(const struct prep *p, const ts_tokenizer_t *t,
                            struct ts_data_manifest *m, struct ts_tok_ids *ids, size_t *bytes) {
    int eot = ts_tokenizer_eot(t);
    for (int i = 0; i < p->ninputs; i++) {
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

static ts_status write_shards(const struct prep *p, const struct ts_tok_ids *ids,
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

static ts_status prepare(const struct prep *p) {
    ts_tokenizer_t *t = NULL;
    struct ts_tok_ids ids = {0};
    struct ts_data_manifest m;
    ts_data_manifest_init(&m);
    size_t bytes = 0;
    ts_status st;
    double t0 = ts_launch_now_s();
    TS_CHECK_GOTO(ts_tokenizer_load(&t, p->tokenizer), st, out);
    snprintf(m.tokenizer, sizeof(m.tokenizer), "%s", ts_tokenizer_name(t));
    m.vocab_size = ts_tokenizer_vocab_size(t);
    m.eot = ts_tokenizer_eot(t);
    snprintf(m.vocab_sha256, sizeof(m.vocab_sha256), "%s", ts_tokenizer_vocab_sha256(t));
    TS_CHECK_GOTO(encode_all(p, t, &m, &ids, &bytes), st, out);
    double t1 = ts_launch_now_s();
    TS_CHECK_GOTO(write_shards(p, &ids, &m), st, out);
    char path[4200];
    snprintf(path, sizeof(path), "%s/%s", p->out, TS_DATA_MANIFEST_NAME);
    TS_CHECK_GOTO(ts_data_manifest_write(&m, path), st, out);
    printf("prepare: %d file(s), %zu bytes -> %" PRId64 " tokens (%s, vocabulary %d; %.2f "
           "bytes/token; encoded in %.2f s, %.1f MB/s)\n"
           "prepare: %s: %d train shard(s) of %" PRId64 " tokens, val.bin %" PRId64 " tokens, %s\n",
           p->ninputs, bytes, ids.n, ts_tokenizer_name(t), m.vocab_size,
           ids.n ? (double)bytes / (double)ids.n : 0.0, t1 - t0,
           (double)bytes / 1e6 / (t1 - t0 > 1e-9 ? t1 - t0 : 1e-9), p->out, m.num_train_shards,
           m.train_tokens, m.val_tokens, TS_DATA_MANIFEST_NAME);
out:
    ts_tok_ids_free(&ids);
    ts_data_manifest_deinit(&m);
    ts_tokenizer_destroy(t);
    return st;
}

int ts_cmd_prepare(int argc, char **argv) {
    struct prep p = {.tokenizer = "gpt2", .val_fraction = 0.01f, .shard_tokens = 100000000};
    const char *input = NULL;
    struct ts_flag flags[] = {
        {"tokenizer", TS_FLAG_STRING, &p.tokenizer, "NAME",
         "gpt2, bytes (one token per byte), or a directory from `tessera tokenizer train`"},
        {"input", TS_FLAG_STRING, &input, "FILE", "first text file; more may follow", true},
        {"out", TS_FLAG_STRING, &p.out, "DIR", "where train_NNN.bin, val.bin, manifest.json go",
         true},
        {"val-fraction", TS_FLAG_FLOAT, &p.val_fraction, "F", "share of tokens held out for val"},
        {"shard-tokens", TS_FLAG_I64, &p.shard_tokens, "N", "tokens per train shard"},
        {"threads", TS_FLAG_INT, &p.threads, "N", "encoding threads (0: all cores)"},
    };
    int nflags = (int)(sizeof(flags) / sizeof(flags[0]));
    static const char *inputs[MAX_INPUTS];
    int npos = 0;
    bool help = false;
    if (ts_cli_parse(flags, nflags, argc, argv, 2, inputs + 1, MAX_INPUTS - 1, &npos, &help) !=
        TS_OK)
        return ts_launch_fail("prepare", TS_EXIT_USAGE);
    if (help) {
        ts_cli_print_help(
            "tessera prepare --tokenizer NAME --input FILE [FILE...] --out DIR",
            "Turns text files into token shards in llm.c's format plus DIR/manifest.json.\n"
            "Each file is a document; BPE tokenizers put <|endoftext|> before every document,\n"
            "the bytes tokenizer (no spare id) concatenates them. The last --val-fraction of\n"
            "the tokens becomes val.bin. `tessera train` reads the vocabulary size from the\n"
            "manifest.",
            flags, nflags);
        return TS_EXIT_OK;
    }
    if (!(p.val_fraction >= 0.0f && p.val_fraction < 1.0f) || p.shard_tokens < 2 || p.threads < 0) {
        ts_error(TS_ERR_INVALID_ARG,
                 "--val-fraction must be in [0, 1), --shard-tokens >= 2, --threads >= 0");
        return ts_launch_fail("prepare", TS_EXIT_USAGE);
    }
    inputs[0] = input;
    p.inputs = inputs;
    p.ninputs = npos + 1;
    if (prepare(&p) != TS_OK)
        return ts_launch_fail("prepare", TS_EXIT_USAGE);
    return TS_EXIT_OK;
}
