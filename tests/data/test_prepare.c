/* test_prepare.c: `tessera prepare` end to end: shards hold <|endoftext|> + each document's ids
 * in order with the tail held out as val; manifest.json names the tokenizer, its vocabulary
 * hash and every source's size and sha256; `train` takes the vocabulary size from it and
 * refuses a --vocab-size too small for the data; `eval` refuses a model of another vocabulary. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "data/data_manifest.h"
#include "data/prepare.h"
#include "data/shard.h"
#include "tok_util.h"

static const char doc_a[] = "In the beginning was the word.\nAnd the word was good. ";
static const char doc_b[] = "Second document: caf\xc3\xa9, \xf0\x9f\x98\x80 and \xff bytes.\n";

static char *write_docs(char *pa, char *pb, size_t len, int copies) {
    char *dir = tok_mkdtemp();
    snprintf(pa, len, "%s/a.txt", dir);
    snprintf(pb, len, "%s/b.txt", dir);
    size_t na = strlen(doc_a), nb = strlen(doc_b);
    char *a = malloc(na * (size_t)copies), *b = malloc(nb * (size_t)copies);
    for (int i = 0; i < copies; i++) {
        memcpy(a + na * (size_t)i, doc_a, na);
        memcpy(b + nb * (size_t)i, doc_b, nb);
    }
    tok_write_file(pa, a, na * (size_t)copies);
    tok_write_file(pb, b, nb * (size_t)copies);
    free(a);
    free(b);
    return dir;
}

static void append_file(const ts_tokenizer_t *t, const char *path, struct ts_tok_ids *ids) {
    size_t n = 0;
    char *s = tok_read_file(path, &n);
    cr_assert_eq(ts_tok_ids_push(ids, ts_tokenizer_eot(t)), TS_OK);
    tok_encode(t, (const uint8_t *)s, n, ids);
    free(s);
}

Test(tokenizer_prepare, shards_and_manifest_round_trip) {
    ts_tokenizer_t *t = tok_need_gpt2();
    char pa[4200], pb[4200], out[4200], path[4300];
    char *dir = write_docs(pa, pb, sizeof(pa), 20);
    snprintf(out, sizeof(out), "%s/shards", dir);
    char *log = NULL;
    int rc = tok_run_tessera(&log,
                             "prepare --tokenizer gpt2 --input %s %s --out %s "
                             "--val-fraction 0 --shard-tokens 100 --threads 2",
                             pa, pb, out);
    cr_assert_eq(rc, 0, "%s", log);
    free(log);

    struct ts_tok_ids want = {0};
    append_file(t, pa, &want);
    append_file(t, pb, &want);
    struct ts_data_manifest m;
    ts_data_manifest_init(&m);
    snprintf(path, sizeof(path), "%s/manifest.json", out);
    cr_assert_eq(ts_data_manifest_read(&m, path), TS_OK, "%s", ts_last_error());
    cr_assert_str_eq(m.tokenizer, "gpt2");
    cr_assert_eq(m.vocab_size, 50257);
    cr_assert_eq(m.eot, 50256);
    cr_assert_str_eq(m.vocab_sha256, ts_tokenizer_vocab_sha256(t));
    cr_assert_eq(m.train_tokens + m.val_tokens, want.n);
    cr_assert_eq(m.val_tokens, 0);
    cr_assert_eq(m.num_train_shards, (int)((m.train_tokens + 99) / 100));
    cr_assert_eq(m.num_sources, 2);
    for (int i = 0; i < 2; i++) {
        char hex[TS_SHA256_HEX];
        int64_t size = 0;
        cr_assert_eq(ts_sha256_file(i ? pb : pa, hex, &size), TS_OK);
        cr_assert_str_eq(m.sources[i].path, i ? pb : pa);
        cr_assert_eq(m.sources[i].bytes, size);
        cr_assert_str_eq(m.sources[i].sha256, hex);
    }
    /* the shards, in order, are exactly the stream */
    int64_t k = 0;
    for (int s = 0; s < m.num_train_shards; s++) {
        struct ts_shard sh;
        snprintf(path, sizeof(path), "%s/train_%03d.bin", out, s);
        cr_assert_eq(ts_shard_open(&sh, path, 50257), TS_OK, "%s", ts_last_error());
        for (int64_t i = 0; i < sh.num_tokens; i++, k++)
            cr_assert_eq(sh.tokens[i], want.ids[k], "token %lld", (long long)k);
        ts_shard_close(&sh);
    }
    cr_assert_eq(k, want.n);
    ts_data_manifest_deinit(&m);
    ts_tok_ids_free(&want);
    ts_tokenizer_destroy(t);
    tok_rmdir(dir);
}

Test(tokenizer_prepare, train_reads_vocab_from_manifest, .timeout = 300) {
    char pa[4200], pb[4200], out[4200], tok[4200], path[4300];
    char *dir = write_docs(pa, pb, sizeof(pa), 40);
    snprintf(out, sizeof(out), "%s/shards", dir);
    snprintf(tok, sizeof(tok), "%s/tok", dir);
    char *log = NULL;
    cr_assert_eq(tok_run_tessera(&log, "tokenizer train --input %s %s --vocab-size 300 --out %s",
                                 pa, pb, tok),
                 0, "%s", log);
    free(log);
    cr_assert_eq(tok_run_tessera(&log,
                                 "prepare --tokenizer %s --input %s %s --out %s "
                                 "--val-fraction 0.2",
                                 tok, pa, pb, out),
                 0, "%s", log);
    free(log);
    struct ts_data_manifest m;
    ts_data_manifest_init(&m);
    snprintf(path, sizeof(path), "%s/manifest.json", out);
    cr_assert_eq(ts_data_manifest_read(&m, path), TS_OK, "%s", ts_last_error());
    cr_assert_eq(m.vocab_size, 300);
    cr_assert_eq(m.eot, 299);
    ts_data_manifest_deinit(&m);

    /* no --vocab-size: the model gets the manifest's 300 */
    const char *model = "--layers 1 --heads 2 --channels 16 --seq-len 16 --batch 2 --steps 2 "
                        "--threads 1 --log-every 1";
    cr_assert_eq(
        tok_run_tessera(&log, "train --data '%s/train_*.bin' %s --out %s/run", out, model, dir), 0,
        "%s", log);
    free(log);
    snprintf(path, sizeof(path), "%s/run/config.json", dir);
    char *cfg = tok_read_file(path, NULL);
    cr_assert(strstr(cfg, "\"vocab_size\":300") != NULL, "%s", cfg);
    free(cfg);
    /* a --vocab-size below the data's is refused, naming the manifest */
    cr_assert_eq(tok_run_tessera(&log,
                                 "train --data '%s/train_*.bin' %s --vocab-size 256 "
                                 "--out %s/run2",
                                 out, model, dir),
                 2, "%s", log);
    cr_assert(strstr(log, "manifest.json") && strstr(log, "300"), "%s", log);
    free(log);
    /* eval of that model on bytes-tokenized data (vocabulary 256) is refused */
    snprintf(path, sizeof(path), "%s/bytes", dir);
    cr_assert_eq(
        tok_run_tessera(&log, "prepare --tokenizer bytes --input %s %s --out %s --val-fraction 0.5",
                        pa, pb, path),
        0, "%s", log);
    free(log);
    cr_assert_eq(tok_run_tessera(&log,
                                 "eval --ckpt %s/run --data %s/val.bin --batch 1 "
                                 "--batches 1",
                                 dir, path),
                 2, "%s", log);
    cr_assert(strstr(log, "tokenizer bytes with vocabulary 256") != NULL, "%s", log);
    free(log);
    tok_rmdir(dir);
}

Test(tokenizer_prepare, bytes_tokenizer_concatenates_documents) {
    char pa[4200], pb[4200], out[4200], path[4300];
    char *dir = write_docs(pa, pb, sizeof(pa), 3);
    snprintf(out, sizeof(out), "%s/shards", dir);
    char *log = NULL;
    cr_assert_eq(tok_run_tessera(&log,
                                 "prepare --tokenizer bytes --input %s %s --out %s "
                                 "--val-fraction 0",
                                 pa, pb, out),
                 0, "%s", log);
    free(log);
    struct ts_shard sh;
    snprintf(path, sizeof(path), "%s/train_000.bin", out);
    cr_assert_eq(ts_shard_open(&sh, path, 256), TS_OK, "%s", ts_last_error());
    size_t na = 0, nb = 0;
    char *a = tok_read_file(pa, &na), *b = tok_read_file(pb, &nb);
    cr_assert_eq(sh.num_tokens, (int64_t)(na + nb));
    for (size_t i = 0; i < na + nb; i++)
        cr_assert_eq(sh.tokens[i], (uint8_t)(i < na ? a[i] : b[i - na]));
    ts_shard_close(&sh);
    free(a);
    free(b);
    snprintf(path, sizeof(path), "%s/val.bin", out);
    cr_assert(tok_read_file(path, NULL) == NULL, "no val.bin with --val-fraction 0");
    tok_rmdir(dir);
}

/* The library call behind `tessera prepare`: what it reports matches what it wrote, and a bad
 * config is refused before anything is read or written. */
Test(tokenizer_prepare, library_reports_and_refuses_bad_config) {
    char pa[4200], pb[4200], out[4200], path[4300];
    char *dir = write_docs(pa, pb, sizeof(pa), 4);
    snprintf(out, sizeof(out), "%s/shards", dir);
    const char *inputs[] = {pa, pb};
    struct ts_prepare_config cfg = ts_prepare_defaults();
    cfg.tokenizer = "bytes";
    cfg.inputs = inputs;
    cfg.num_inputs = 2;
    cfg.out = out;
    cfg.val_fraction = 0.25f;
    cfg.shard_tokens = 64;
    struct ts_prepare_result r;
    cr_assert_eq(ts_data_prepare(&cfg, &r), TS_OK, "%s", ts_last_error());
    const int64_t n = (int64_t)(4 * (strlen(doc_a) + strlen(doc_b)));
    cr_assert_str_eq(r.tokenizer, "bytes");
    cr_assert_eq(r.vocab_size, 256);
    cr_assert_eq((int64_t)r.bytes, n);
    cr_assert_eq(r.tokens, n);
    cr_assert_eq(r.val_tokens, (int64_t)(4 * strlen(doc_a))); /* segment 0: document a */
    cr_assert_eq(r.train_tokens + r.val_tokens, n);
    cr_assert_eq(r.num_train_shards, (int)((r.train_tokens + 63) / 64));
    struct ts_data_manifest m;
    ts_data_manifest_init(&m);
    snprintf(path, sizeof(path), "%s/manifest.json", out);
    cr_assert_eq(ts_data_manifest_read(&m, path), TS_OK, "%s", ts_last_error());
    cr_assert_eq(m.train_tokens, r.train_tokens);
    cr_assert_eq(m.val_tokens, r.val_tokens);
    cr_assert_eq(m.num_train_shards, r.num_train_shards);
    ts_data_manifest_deinit(&m);

    snprintf(out, sizeof(out), "%s/never", dir);
    cfg.val_fraction = 1.0f;
    cr_assert_eq(ts_data_prepare(&cfg, &r), TS_ERR_INVALID_ARG);
    cr_assert(strstr(ts_last_error(), "val_fraction") != NULL, "%s", ts_last_error());
    cfg.val_fraction = 0.1f;
    cfg.num_inputs = 0;
    cr_assert_eq(ts_data_prepare(&cfg, &r), TS_ERR_INVALID_ARG);
    struct stat sb;
    cr_assert_neq(stat(out, &sb), 0, "nothing is written for a bad config");
    tok_rmdir(dir);
}
