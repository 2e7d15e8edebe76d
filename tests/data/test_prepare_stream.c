/* test_prepare_stream.c: streaming prepare and its traps: text, JSONL, .gz, .zst and standard
 * input give identical shards; one thread and several give identical shards; the shards equal one
 * encode of each whole document; repeated --input and globs accumulate; a second prepare into
 * the same directory is refused, or with --overwrite removes the stale shards; a shard that a
 * reader has mapped is never rewritten; an endless input stops at --max-tokens and an endless
 * chunk (/dev/zero) fails naming the limit, both in bounded memory. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <zlib.h>
#include <zstd.h>

#include "data/data_manifest.h"
#include "data/prepare.h"
#include "data/shard.h"
#include "tok_util.h"

/* Two documents of varied text, each several segments long. */
static void two_docs(const char *dir, char *pa, char *pb, size_t len, uint8_t **a, size_t *na,
                     uint8_t **b, size_t *nb) {
    size_t n = 0;
    uint8_t *text = tok_varied_text(&n);
    *na = n / 2;
    *nb = n - *na;
    *a = text;
    *b = malloc(*nb);
    memcpy(*b, text + *na, *nb);
    snprintf(pa, len, "%s/a.txt", dir);
    snprintf(pb, len, "%s/b.txt", dir);
    tok_write_file(pa, *a, *na);
    tok_write_file(pb, *b, *nb);
}

static char *file_of(const char *dir, const char *name, size_t *n) {
    char path[8600];
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    return tok_read_file(path, n);
}

/* Every file prepare wrote in a (shards, val.bin) equals b's; manifests agree on the tokens. */
static void assert_same_shards(const char *a, const char *b) {
    for (int s = 0;; s++) {
        char name[64];
        snprintf(name, sizeof(name), "train_%03d.bin", s);
        size_t na = 0, nb = 0;
        char *x = file_of(a, name, &na), *y = file_of(b, name, &nb);
        cr_assert_eq(x == NULL, y == NULL, "%s in one of %s, %s only", name, a, b);
        if (x == NULL)
            break;
        cr_assert(na == nb && memcmp(x, y, na) == 0, "%s differs between %s and %s", name, a, b);
        free(x);
        free(y);
    }
    size_t na = 0, nb = 0;
    char *x = file_of(a, "val.bin", &na), *y = file_of(b, "val.bin", &nb);
    cr_assert(x != NULL && y != NULL && na == nb && memcmp(x, y, na) == 0,
              "val.bin differs between %s and %s", a, b);
    free(x);
    free(y);
}

static void write_gz(const char *path, const uint8_t *a, size_t na, const uint8_t *b, size_t nb) {
    gzFile g = gzopen(path, "wb");
    cr_assert_not_null(g);
    cr_assert_eq(gzwrite(g, a, (unsigned)na), (int)na);
    cr_assert_eq(gzwrite(g, b, (unsigned)nb), (int)nb);
    gzclose(g);
}

static void write_zst(const char *path, const uint8_t *s, size_t n) {
    size_t cap = ZSTD_compressBound(n);
    void *z = malloc(cap);
    size_t k = ZSTD_compress(z, cap, s, n, 3);
    cr_assert(!ZSTD_isError(k));
    tok_write_file(path, z, k);
    free(z);
}

/* One JSON string literal for bytes that are valid UTF-8 (escapes quotes, backslashes, controls).
 */
static void json_string(FILE *f, const uint8_t *s, size_t n) {
    fputc('"', f);
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '"' || s[i] == '\\')
            fprintf(f, "\\%c", s[i]);
        else if (s[i] < 0x20)
            fprintf(f, "\\u%04x", s[i]);
        else
            fputc(s[i], f);
    }
    fputc('"', f);
}

Test(data_prepare, formats_and_threads_give_identical_shards, .timeout = 600) {
    tok_need_gpt2();
    char *dir = tok_mkdtemp();
    char pa[4200], pb[4200], p[8600], out[4300];
    uint8_t *a, *b;
    size_t na, nb;
    two_docs(dir, pa, pb, sizeof(pa), &a, &na, &b, &nb);
    const char *common = "--tokenizer gpt2 --val-fraction 0.1 --shard-tokens 20k --quiet";
    char flags[512];

    /* text, one thread: the reference */
    snprintf(flags, sizeof(flags), "%s --threads 1", common);
    char ref[4300];
    snprintf(ref, sizeof(ref), "%s/text1", dir);
    char *log = NULL;
    cr_assert_eq(
        tok_run_tessera(&log, "prepare %s --input %s --input %s --out %s", flags, pa, pb, ref), 0,
        "%s", log);
    free(log);

    /* the shards, val excluded, are one encode of each whole document */
    {
        ts_tokenizer_t *t = tok_need_gpt2();
        snprintf(out, sizeof(out), "%s/noval", dir);
        cr_assert_eq(tok_run_tessera(&log,
                                     "prepare --tokenizer gpt2 --val-fraction 0 --quiet --input "
                                     "%s %s --out %s --shard-tokens 20k",
                                     pa, pb, out),
                     0, "%s", log);
        free(log);
        struct ts_tok_ids want = {0};
        cr_assert_eq(ts_tok_ids_push(&want, ts_tokenizer_eot(t)), TS_OK);
        tok_encode(t, a, na, &want);
        cr_assert_eq(ts_tok_ids_push(&want, ts_tokenizer_eot(t)), TS_OK);
        tok_encode(t, b, nb, &want);
        int64_t k = 0;
        for (int s = 0;; s++) {
            snprintf(p, sizeof(p), "%s/train_%03d.bin", out, s);
            struct ts_shard sh;
            if (ts_shard_open(&sh, p, 50257) != TS_OK)
                break;
            for (int64_t i = 0; i < sh.num_tokens; i++, k++)
                cr_assert_eq(sh.tokens[i], want.ids[k], "token %lld", (long long)k);
            ts_shard_close(&sh);
        }
        cr_assert_eq(k, want.n);
        ts_tok_ids_free(&want);
        ts_tokenizer_destroy(t);
    }

    /* all cores, and 3 threads */
    snprintf(out, sizeof(out), "%s/text0", dir);
    cr_assert_eq(
        tok_run_tessera(&log, "prepare %s --threads 0 --input %s %s --out %s", common, pa, pb, out),
        0, "%s", log);
    free(log);
    assert_same_shards(ref, out);
    snprintf(out, sizeof(out), "%s/text3", dir);
    cr_assert_eq(
        tok_run_tessera(&log, "prepare %s --threads 3 --input %s %s --out %s", common, pa, pb, out),
        0, "%s", log);
    free(log);
    assert_same_shards(ref, out);

    /* gzip, zstd (each document compressed), a glob of them */
    snprintf(p, sizeof(p), "%s/a.txt.gz", dir);
    write_gz(p, a, na / 3, a + na / 3, na - na / 3); /* written in two calls: one stream */
    snprintf(p, sizeof(p), "%s/b.txt.zst", dir);
    write_zst(p, b, nb);
    snprintf(out, sizeof(out), "%s/comp", dir);
    cr_assert_eq(tok_run_tessera(&log, "prepare %s --input %s/a.txt.gz %s/b.txt.zst --out %s",
                                 common, dir, dir, out),
                 0, "%s", log);
    free(log);
    assert_same_shards(ref, out);
    snprintf(out, sizeof(out), "%s/glob", dir);
    cr_assert_eq(
        tok_run_tessera(&log, "prepare %s --input '%s/[ab].txt' --out %s", common, dir, out), 0,
        "%s", log);
    free(log);
    assert_same_shards(ref, out);

    /* JSONL: one line per document; zstd-compressed JSONL too */
    snprintf(p, sizeof(p), "%s/docs.jsonl", dir);
    FILE *f = fopen(p, "w");
    fputs("{\"id\": 1, \"text\": ", f);
    json_string(f, a, na);
    fputs("}\n\n{\"text\": ", f);
    json_string(f, b, nb);
    fputs(", \"id\": 2}\n", f);
    fclose(f);
    snprintf(out, sizeof(out), "%s/jsonl", dir);
    cr_assert_eq(
        tok_run_tessera(&log, "prepare %s --jsonl-field text --input %s --out %s", common, p, out),
        0, "%s", log);
    free(log);
    assert_same_shards(ref, out);
    size_t nj = 0;
    char *j = tok_read_file(p, &nj);
    snprintf(p, sizeof(p), "%s/docs.jsonl.zst", dir);
    write_zst(p, (const uint8_t *)j, nj);
    free(j);
    snprintf(out, sizeof(out), "%s/jsonlzst", dir);
    cr_assert_eq(
        tok_run_tessera(&log, "prepare %s --jsonl-field text --input %s --out %s", common, p, out),
        0, "%s", log);
    free(log);
    assert_same_shards(ref, out);

    /* standard input: one document, so compare with the two files concatenated as one */
    snprintf(p, sizeof(p), "%s/ab.txt", dir);
    f = fopen(p, "wb");
    fwrite(a, 1, na, f);
    fwrite(b, 1, nb, f);
    fclose(f);
    snprintf(out, sizeof(out), "%s/ab", dir);
    cr_assert_eq(tok_run_tessera(&log, "prepare %s --input %s --out %s", common, p, out), 0, "%s",
                 log);
    free(log);
    char out2[4300];
    snprintf(out2, sizeof(out2), "%s/stdin", dir);
    cr_assert_eq(tok_run_tessera(&log, "prepare %s --input - --out %s < %s", common, out2, p), 0,
                 "%s", log);
    free(log);
    assert_same_shards(out, out2);
    snprintf(out2, sizeof(out2), "%s/stdingz", dir);
    cr_assert_eq(
        tok_run_tessera(&log, "prepare %s --input - --out %s < %s/a.txt.gz", common, out2, dir), 0,
        "%s", log);
    free(log);

    /* a bad JSONL line names the file and line */
    snprintf(p, sizeof(p), "%s/bad.jsonl", dir);
    tok_write_file(p, "{\"text\": \"ok\"}\n{\"body\": \"x\"}\n", 29);
    cr_assert_eq(tok_run_tessera(&log, "prepare %s --jsonl-field text --input %s --out %s/bad",
                                 common, p, dir),
                 2, "%s", log);
    cr_assert(strstr(log, "bad.jsonl:2") && strstr(log, "\"text\""), "%s", log);
    free(log);
    free(a);
    free(b);
    tok_rmdir(dir);
}

static int count_shards(const char *dir) {
    int n = 0;
    char path[8600];
    for (;; n++) {
        snprintf(path, sizeof(path), "%s/train_%03d.bin", dir, n);
        FILE *f = fopen(path, "rb");
        if (f == NULL)
            return n;
        fclose(f);
    }
}

Test(data_prepare, stale_shards_refused_or_removed_and_mapped_shards_kept) {
    char *dir = tok_mkdtemp();
    char big[4200], small[4200], out[4200], path[4300];
    snprintf(big, sizeof(big), "%s/big.txt", dir);
    snprintf(small, sizeof(small), "%s/small.txt", dir);
    snprintf(out, sizeof(out), "%s/shards", dir);
    char text[20000];
    for (size_t i = 0; i < sizeof(text); i++)
        text[i] = (char)('a' + i % 26);
    tok_write_file(big, text, sizeof(text));
    tok_write_file(small, "ZYXWVUTSRQPONMLKJIHGFEDCBA", 26);
    char *log = NULL;
    cr_assert_eq(
        tok_run_tessera(&log,
                        "prepare --tokenizer bytes --input %s --out %s --shard-tokens 1000 "
                        "--val-fraction 0 --quiet",
                        big, out),
        0, "%s", log);
    free(log);
    cr_assert_eq(count_shards(out), 20);

    /* a reader has train_000.bin mapped */
    struct ts_shard sh;
    snprintf(path, sizeof(path), "%s/train_000.bin", out);
    cr_assert_eq(ts_shard_open(&sh, path, 256), TS_OK, "%s", ts_last_error());

    /* the same directory again: refused, nothing touched */
    cr_assert_eq(tok_run_tessera(&log,
                                 "prepare --tokenizer bytes --input %s --out %s --val-fraction 0",
                                 small, out),
                 2, "%s", log);
    cr_assert(strstr(log, "already holds a prepared dataset") && strstr(log, "--overwrite"), "%s",
              log);
    free(log);
    cr_assert_eq(count_shards(out), 20);

    /* --overwrite: one shard now, the 19 stale ones gone, the manifest lists one */
    cr_assert_eq(tok_run_tessera(&log,
                                 "prepare --tokenizer bytes --input %s --out %s --val-fraction 0 "
                                 "--overwrite --quiet",
                                 small, out),
                 0, "%s", log);
    free(log);
    cr_assert_eq(count_shards(out), 1);
    struct ts_data_manifest m;
    ts_data_manifest_init(&m);
    snprintf(path, sizeof(path), "%s/manifest.json", out);
    cr_assert_eq(ts_data_manifest_read(&m, path), TS_OK, "%s", ts_last_error());
    cr_assert_eq(m.num_shards, 1);
    cr_assert_str_eq(m.shards[0].name, "train_000.bin");
    cr_assert_eq(m.shards[0].tokens, 26);
    ts_data_manifest_deinit(&m);
    /* the mapped shard still reads the old tokens: the new file was renamed over it */
    cr_assert_eq(sh.num_tokens, 1000);
    for (int i = 0; i < 1000; i++)
        cr_assert_eq(sh.tokens[i], (uint16_t)('a' + i % 26));
    ts_shard_close(&sh);
    /* no temporaries are left */
    snprintf(path, sizeof(path), "%s/.train_000.bin.part", out);
    cr_assert_null(tok_read_file(path, NULL));
    tok_rmdir(dir);
}

Test(data_prepare, repeated_input_accumulates) {
    char *dir = tok_mkdtemp();
    char pa[4200], pb[4200], out[4300];
    snprintf(pa, sizeof(pa), "%s/a.txt", dir);
    snprintf(pb, sizeof(pb), "%s/b.txt", dir);
    tok_write_file(pa, "first document\n", 15);
    tok_write_file(pb, "second document\n", 16);
    char *log = NULL;
    snprintf(out, sizeof(out), "%s/o", dir);
    cr_assert_eq(tok_run_tessera(&log,
                                 "prepare --tokenizer bytes --input %s --input %s --out %s "
                                 "--val-fraction 0 --quiet",
                                 pa, pb, out),
                 0, "%s", log);
    free(log);
    size_t n = 0;
    char *s = file_of(out, "train_000.bin", &n);
    cr_assert_eq(n, 1024 + 2 * 31, "both inputs are in the shard");
    free(s);
    struct ts_data_manifest m;
    ts_data_manifest_init(&m);
    char path[8600];
    snprintf(path, sizeof(path), "%s/manifest.json", out);
    cr_assert_eq(ts_data_manifest_read(&m, path), TS_OK, "%s", ts_last_error());
    cr_assert_eq(m.num_sources, 2);
    cr_assert_str_eq(m.sources[0].path, pa);
    cr_assert_str_eq(m.sources[1].path, pb);
    ts_data_manifest_deinit(&m);
    /* a glob that matches nothing is an error naming it */
    cr_assert_eq(
        tok_run_tessera(&log, "prepare --tokenizer bytes --input '%s/*.none' --out %s/x", dir, dir),
        2, "%s", log);
    cr_assert(strstr(log, "*.none' matches no file"), "%s", log);
    free(log);
    tok_rmdir(dir);
}

static long children_max_rss_mb(void) {
    struct rusage ru;
    getrusage(RUSAGE_CHILDREN, &ru);
    return ru.ru_maxrss / 1024;
}

Test(data_prepare, endless_input_stops_at_max_tokens_in_bounded_memory, .timeout = 300) {
    tok_need_gpt2();
    char *dir = tok_mkdtemp();
    char *log = NULL;
    /* `yes` never ends: --max-tokens does */
    cr_assert_eq(tok_run_tessera(&log,
                                 "--version >/dev/null; yes 'the same line, again and again' | "
                                 "%s/launch/tessera prepare --tokenizer gpt2 --input - --out %s/o "
                                 "--max-tokens 3M --shard-tokens 1M --quiet",
                                 getenv("TS_BUILD_DIR") ? getenv("TS_BUILD_DIR") : "build", dir),
                 0, "%s", log);
    free(log);
    struct ts_data_manifest m;
    ts_data_manifest_init(&m);
    char path[8600];
    snprintf(path, sizeof(path), "%s/o/manifest.json", dir);
    cr_assert_eq(ts_data_manifest_read(&m, path), TS_OK, "%s", ts_last_error());
    cr_assert_eq(m.train_tokens + m.val_tokens, 3000000);
    ts_data_manifest_deinit(&m);
    long rss = children_max_rss_mb();
    cr_assert_lt(rss, 300, "peak RSS %ld MB", rss);
    tok_rmdir(dir);
}

Test(data_prepare, endless_chunk_fails_naming_the_limit_in_bounded_memory, .timeout = 300) {
    tok_need_gpt2();
    char *dir = tok_mkdtemp();
    char *log = NULL;
    cr_assert_eq(tok_run_tessera(&log,
                                 "prepare --tokenizer gpt2 --input /dev/zero --out %s/o "
                                 "--max-piece-mb 32 --max-tokens 1M --quiet",
                                 dir),
                 2, "%s", log);
    cr_assert(strstr(log, "/dev/zero") && strstr(log, "--max-piece-mb 32"), "%s", log);
    free(log);
    long rss = children_max_rss_mb();
    cr_assert_lt(rss, 300, "peak RSS %ld MB", rss);
    /* and nothing was left in the output directory but the directory */
    char path[8600];
    snprintf(path, sizeof(path), "%s/o/manifest.json", dir);
    cr_assert_null(tok_read_file(path, NULL));
    tok_rmdir(dir);
}

Test(data_prepare, val_split_is_every_kth_segment) {
    /* ceil((i+1) f) > ceil(i f): segment 0, then one in every 1/f */
    int val = 0;
    for (int64_t i = 0; i < 1000; i++)
        val += ts_prepare_is_val(i, 0.1);
    cr_assert_eq(val, 100);
    cr_assert(ts_prepare_is_val(0, 0.1) && !ts_prepare_is_val(1, 0.1) &&
              ts_prepare_is_val(10, 0.1));
    cr_assert(!ts_prepare_is_val(0, 0.0));
}

/* ---- data identity in `tessera train` ---- */

static const char model[] = "--layers 1 --heads 2 --channels 16 --seq-len 16 --batch 2 "
                            "--threads 1 --log-every 1 --no-shuffle";

Test(data_prepare, train_checks_data_against_manifest_and_checkpoint, .timeout = 300) {
    char *dir = tok_mkdtemp();
    char txt[4200], out[4300], path[8600];
    snprintf(txt, sizeof(txt), "%s/c.txt", dir);
    char text[30000];
    for (size_t i = 0; i < sizeof(text); i++)
        text[i] = (char)('a' + (i * 7) % 26);
    tok_write_file(txt, text, sizeof(text));
    snprintf(out, sizeof(out), "%s/shards", dir);
    char *log = NULL;
    cr_assert_eq(tok_run_tessera(&log,
                                 "prepare --tokenizer bytes --input %s --out %s --shard-tokens "
                                 "8000 --val-fraction 0 --quiet",
                                 txt, out),
                 0, "%s", log);
    free(log);
    /* --data DIR takes the manifest's shards */
    cr_assert_eq(tok_run_tessera(&log, "train --data %s %s --steps 2 --out %s/r0", out, model, dir),
                 0, "%s", log);
    cr_assert(strstr(log, "4 shard(s)"), "%s", log);
    free(log);
    /* a stale shard beside the manifest: the glob is refused naming it; so is the directory */
    snprintf(path, sizeof(path), "%s/train_007.bin", out);
    FILE *f = fopen(path, "wb");
    int32_t header[256] = {20240520, 1, 40};
    uint16_t toks[40] = {0};
    fwrite(header, sizeof(header), 1, f);
    fwrite(toks, sizeof(toks), 1, f);
    fclose(f);
    cr_assert_eq(tok_run_tessera(&log, "train --data '%s/train_*.bin' %s --steps 2 --out %s/r1",
                                 out, model, dir),
                 2, "%s", log);
    cr_assert(strstr(log, "train_007.bin") && strstr(log, "does not list"), "%s", log);
    free(log);
    remove(path);
    /* a resized shard */
    snprintf(path, sizeof(path), "%s/train_003.bin", out);
    size_t n = 0;
    char *s3 = tok_read_file(path, &n);
    tok_write_file(path, s3, n - 2);
    cr_assert_eq(tok_run_tessera(&log, "train --data %s %s --steps 2 --out %s/r1", out, model, dir),
                 2, "%s", log);
    cr_assert(strstr(log, "train_003.bin") && strstr(log, "rewritten or truncated"), "%s", log);
    free(log);
    tok_write_file(path, s3, n);
    /* a missing shard */
    snprintf(path, sizeof(path), "%s/train_001.bin", out);
    size_t n1 = 0;
    char *s1 = tok_read_file(path, &n1);
    remove(path);
    cr_assert_eq(tok_run_tessera(&log, "train --data %s %s --steps 2 --out %s/r1", out, model, dir),
                 2, "%s", log);
    cr_assert(strstr(log, "train_001.bin, which is missing"), "%s", log);
    free(log);
    tok_write_file(path, s1, n1);

    /* a resume on changed data (one byte of a shard, same size) is refused, then allowed */
    cr_assert_eq(tok_run_tessera(&log, "train --data %s %s --steps 4 --stop-after 2 --out %s/r2",
                                 out, model, dir),
                 0, "%s", log);
    free(log);
    s1[2000] ^= 1;
    tok_write_file(path, s1, n1);
    cr_assert_eq(tok_run_tessera(&log, "train --resume --out %s/r2 --threads 1", dir), 2, "%s",
                 log);
    cr_assert(strstr(log, "train_001.bin had crc32c:") && strstr(log, "--data-changed"), "%s", log);
    free(log);
    cr_assert_eq(
        tok_run_tessera(&log, "train --resume --out %s/r2 --threads 1 --data-changed", dir), 0,
        "%s", log);
    cr_assert(strstr(log, "restarts at window 0"), "%s", log);
    free(log);
    /* unchanged data resumes without a word */
    cr_assert_eq(tok_run_tessera(&log, "train --data %s %s --steps 4 --stop-after 2 --out %s/r3",
                                 out, model, dir),
                 0, "%s", log);
    free(log);
    cr_assert_eq(tok_run_tessera(&log, "train --resume --out %s/r3 --threads 1", dir), 0, "%s",
                 log);
    cr_assert(strstr(log, "changed") == NULL, "%s", log);
    free(log);
    free(s1);
    free(s3);
    tok_rmdir(dir);
}

/* A resume reads a data file again only when its size or modification time changed: an
 * untouched file keeps the checkpoint's hash unread; the trade-off is that a file rewritten to the
 * same size with its mtime set back (touch -d) is not noticed, while any mtime change is
 * re-hashed and a changed content refused. Counted by train's "data: ... hashed N" line. */
Test(data_prepare, resume_rehashes_only_files_whose_size_or_mtime_changed, .timeout = 300) {
    char *dir = tok_mkdtemp();
    char txt[4200], out[4300], path[8600];
    snprintf(txt, sizeof(txt), "%s/c.txt", dir);
    char text[30000];
    for (size_t i = 0; i < sizeof(text); i++)
        text[i] = (char)('a' + (i * 11) % 26);
    tok_write_file(txt, text, sizeof(text));
    snprintf(out, sizeof(out), "%s/shards", dir);
    char *log = NULL;
    cr_assert_eq(tok_run_tessera(&log,
                                 "prepare --tokenizer bytes --input %s --out %s --shard-tokens "
                                 "8000 --val-fraction 0 --quiet",
                                 txt, out),
                 0, "%s", log);
    free(log);
    cr_assert_eq(tok_run_tessera(&log, "train --data %s %s --steps 8 --stop-after 2 --out %s/r",
                                 out, model, dir),
                 0, "%s", log);
    cr_assert(strstr(log, "data: 4 file(s): hashed 4 ") != NULL, "%s", log);
    free(log);
    /* untouched: nothing is read again */
    cr_assert_eq(tok_run_tessera(&log, "train --resume --out %s/r --threads 1 --stop-after 3", dir),
                 0, "%s", log);
    cr_assert(strstr(log, "hashed 0 (0.0 MB read), 4 kept the checkpoint's hash") != NULL, "%s",
              log);
    free(log);
    /* one byte of train_001.bin changed, its size and mtime restored: not re-read, not noticed */
    snprintf(path, sizeof(path), "%s/train_001.bin", out);
    char cmd[17500];
    snprintf(cmd, sizeof(cmd), "touch -r %s %s/stamp", path, dir);
    cr_assert_eq(system(cmd), 0);
    size_t n = 0;
    char *s1 = tok_read_file(path, &n);
    s1[3000] ^= 1;
    tok_write_file(path, s1, n);
    snprintf(cmd, sizeof(cmd), "touch -r %s/stamp %s", dir, path);
    cr_assert_eq(system(cmd), 0);
    cr_assert_eq(tok_run_tessera(&log, "train --resume --out %s/r --threads 1 --stop-after 4", dir),
                 0, "%s", log);
    cr_assert(strstr(log, "hashed 0 (0.0 MB read), 4 kept the checkpoint's hash") != NULL, "%s",
              log);
    cr_assert(strstr(log, "the data differs") == NULL, "%s", log);
    free(log);
    /* the same file with a new mtime: re-read, the change found and refused */
    snprintf(cmd, sizeof(cmd), "touch -d '2001-01-01 00:00:00' %s", path);
    cr_assert_eq(system(cmd), 0);
    cr_assert_eq(tok_run_tessera(&log, "train --resume --out %s/r --threads 1 --stop-after 5", dir),
                 2, "%s", log);
    cr_assert(strstr(log, "hashed 1 (") != NULL && strstr(log, "3 kept") != NULL, "%s", log);
    cr_assert(strstr(log, "train_001.bin had crc32c:") && strstr(log, "--data-changed"), "%s", log);
    free(log);
    /* a new mtime on unchanged content: re-read, found equal, resumed */
    s1[3000] ^= 1;
    tok_write_file(path, s1, n);
    cr_assert_eq(tok_run_tessera(&log, "train --resume --out %s/r --threads 1 --stop-after 5", dir),
                 0, "%s", log);
    cr_assert(strstr(log, "hashed 1 (") != NULL && strstr(log, "3 kept") != NULL, "%s", log);
    free(log);
    free(s1);
    tok_rmdir(dir);
}

/* `tessera eval --data DIR` evaluates on the prepared directory's val.bin (the same number as
 * naming val.bin); a directory prepared without a val split is refused, saying so. */
Test(data_prepare, eval_takes_a_prepared_directory, .timeout = 300) {
    char *dir = tok_mkdtemp();
    char txt[4200], out[4300], none[4300];
    snprintf(txt, sizeof(txt), "%s/c.txt", dir);
    char text[60000];
    for (size_t i = 0; i < sizeof(text); i++)
        text[i] = (char)('a' + (i * 5 + i / 7) % 26);
    tok_write_file(txt, text, sizeof(text));
    snprintf(out, sizeof(out), "%s/shards", dir);
    snprintf(none, sizeof(none), "%s/noval", dir);
    char *log = NULL;
    cr_assert_eq(tok_run_tessera(&log,
                                 "prepare --tokenizer bytes --input %s --out %s --val-fraction 0.2 "
                                 "--quiet",
                                 txt, out),
                 0, "%s", log);
    free(log);
    cr_assert_eq(tok_run_tessera(&log,
                                 "prepare --tokenizer bytes --input %s --out %s --val-fraction 0 "
                                 "--quiet",
                                 txt, none),
                 0, "%s", log);
    free(log);
    cr_assert_eq(tok_run_tessera(&log, "train --data %s --val-data %s %s --steps 2 --out %s/r", out,
                                 out, model, dir),
                 0, "%s", log);
    free(log);
    char *a = NULL, *b = NULL;
    cr_assert_eq(tok_run_tessera(&a,
                                 "eval --ckpt %s/r --data %s --batch 2 --batches 3 --json "
                                 "--threads 1",
                                 dir, out),
                 0, "%s", a);
    cr_assert_eq(tok_run_tessera(&b,
                                 "eval --ckpt %s/r --data %s/val.bin --batch 2 --batches 3 "
                                 "--json --threads 1",
                                 dir, out),
                 0, "%s", b);
    cr_assert(strstr(a, "{\"loss\":") &&
                  strcmp(strstr(a, "{\"loss\":"), strstr(b, "{\"loss\":")) == 0,
              "DIR: %s\nDIR/val.bin: %s", a, b);
    free(a);
    free(b);
    cr_assert_eq(
        tok_run_tessera(&log, "eval --ckpt %s/r --data %s --batch 2 --threads 1", dir, none), 2,
        "%s", log);
    cr_assert(strstr(log, "holds no validation split"), "%s", log);
    free(log);
    tok_rmdir(dir);
}
