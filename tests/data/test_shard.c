/* test_shard.c: shard validation errors and the loader's windows, wrap-around and seek. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sys/stat.h>
#include <unistd.h>

#include "data/data_manifest.h"
#include "data/shard.h"
#include "tok_util.h"

static void write_raw(const char *path, const int32_t *header, const uint16_t *tok, size_t n) {
    FILE *f = fopen(path, "wb");
    cr_assert_not_null(f);
    cr_assert_eq(fwrite(header, sizeof(int32_t), 256, f), 256);
    if (n)
        cr_assert_eq(fwrite(tok, sizeof(uint16_t), n, f), n);
    fclose(f);
}

Test(data_shard, open_errors) {
    char *dir = tok_mkdtemp();
    char *path = tok_path(dir, "bad.bin");
    int32_t h[256] = {0};
    uint16_t tok[200];
    for (int i = 0; i < 200; i++)
        tok[i] = (uint16_t)i;
    struct ts_shard s;

    h[0] = 12345, h[1] = 1, h[2] = 200;
    write_raw(path, h, tok, 200);
    cr_assert_eq(ts_shard_open(&s, path, 50257), TS_ERR_FORMAT);
    char want[512];
    snprintf(want, sizeof(want), "%s: not a token shard (magic 12345, expected 20240520)", path);
    cr_assert_str_eq(ts_last_error(), want);

    h[0] = TS_SHARD_MAGIC, h[1] = 2;
    write_raw(path, h, tok, 200);
    cr_assert_eq(ts_shard_open(&s, path, 50257), TS_ERR_FORMAT);
    cr_assert(strstr(ts_last_error(), "version 2") != NULL, "%s", ts_last_error());

    h[1] = 1, h[2] = 300;
    write_raw(path, h, tok, 200);
    cr_assert_eq(ts_shard_open(&s, path, 50257), TS_ERR_FORMAT);
    snprintf(want, sizeof(want), "%s: truncated: header says 300 tokens but file holds 200", path);
    cr_assert_str_eq(ts_last_error(), want);

    h[2] = 200;
    tok[123] = 50300;
    write_raw(path, h, tok, 200);
    cr_assert_eq(ts_shard_open(&s, path, 50257), TS_ERR_FORMAT);
    snprintf(want, sizeof(want), "%s: token id 50300 at position 123 is >= vocab size 50257", path);
    cr_assert_str_eq(ts_last_error(), want);

    FILE *f = fopen(path, "wb");
    fputs("short", f);
    fclose(f);
    cr_assert_eq(ts_shard_open(&s, path, 50257), TS_ERR_FORMAT);
    cr_assert(strstr(ts_last_error(), "not a token shard") != NULL, "%s", ts_last_error());

    char *missing = tok_path(dir, "nope.bin");
    cr_assert_eq(ts_shard_open(&s, missing, 50257), TS_ERR_IO);
    cr_assert(strstr(ts_last_error(), missing) != NULL, "%s", ts_last_error());

    /* A good one round-trips through ts_shard_write. */
    tok[123] = 7;
    cr_assert_eq(ts_shard_write(path, tok, 200), TS_OK, "%s", ts_last_error());
    cr_assert_eq(ts_shard_open(&s, path, 50257), TS_OK, "%s", ts_last_error());
    cr_assert_eq(s.num_tokens, 200);
    cr_assert_eq(memcmp(s.tokens, tok, sizeof(tok)), 0);
    ts_shard_close(&s);
    free(missing);
    free(path);
    tok_rmdir(dir);
}

Test(data_shard, loader_errors) {
    char *dir = tok_mkdtemp();
    char *pattern = tok_path(dir, "train_*.bin");
    ts_loader_t *l = NULL;
    cr_assert_eq(ts_loader_create(&l, pattern, 4, 100), TS_ERR_IO);
    char want[512];
    snprintf(want, sizeof(want), "no files match '%s'", pattern);
    cr_assert_str_eq(ts_last_error(), want);
    cr_assert_null(l);

    /* A shard shorter than one window is named. */
    char *p = tok_path(dir, "train_000.bin");
    uint16_t tok[4] = {1, 2, 3, 4};
    cr_assert_eq(ts_shard_write(p, tok, 4), TS_OK);
    cr_assert_eq(ts_loader_create(&l, pattern, 4, 100), TS_ERR_FORMAT);
    cr_assert(strstr(ts_last_error(), p) != NULL, "%s", ts_last_error());
    cr_assert_null(l);
    /* An id beyond the vocabulary fails at create. */
    cr_assert_eq(ts_loader_create(&l, pattern, 3, 4), TS_ERR_FORMAT);
    cr_assert(strstr(ts_last_error(), "token id 4 at position 3") != NULL, "%s", ts_last_error());
    free(p);
    free(pattern);
    tok_rmdir(dir);
}

Test(data_shard, loader_windows_wrap_and_seek) {
    char *dir = tok_mkdtemp();
    /* Two shards, created out of order to check the sort: b has 10 tokens (T=3: windows at 0,
     * 3, 6 -> 3 windows, the last needing tokens 6..9), a has 8 tokens (2 windows). */
    uint16_t a[8], b[10];
    for (int i = 0; i < 8; i++)
        a[i] = (uint16_t)(100 + i);
    for (int i = 0; i < 10; i++)
        b[i] = (uint16_t)(200 + i);
    char *pb = tok_path(dir, "train_001.bin"), *pa = tok_path(dir, "train_000.bin");
    cr_assert_eq(ts_shard_write(pb, b, 10), TS_OK);
    cr_assert_eq(ts_shard_write(pa, a, 8), TS_OK);
    char *pattern = tok_path(dir, "train_*.bin");
    ts_loader_t *l = NULL;
    cr_assert_eq(ts_loader_create(&l, pattern, 3, 300), TS_OK, "%s", ts_last_error());
    cr_assert_eq(ts_loader_num_shards(l), 2);
    cr_assert_eq(ts_loader_num_windows(l), 5);
    cr_assert_eq(ts_loader_num_tokens(l), 18);
    cr_assert_eq(ts_loader_seq_len(l), 3);

    /* Expected window starts: a@0, a@3, b@0, b@3, b@6, then wrap. */
    const uint16_t *starts[5] = {a, a + 3, b, b + 3, b + 6};
    int32_t in[3 * 7], tg[3 * 7];
    cr_assert_eq(ts_loader_next(l, 7, in, tg), TS_OK);
    for (int w = 0; w < 7; w++)
        for (int t = 0; t < 3; t++) {
            cr_assert_eq(in[w * 3 + t], starts[w % 5][t], "window %d input %d", w, t);
            cr_assert_eq(tg[w * 3 + t], starts[w % 5][t + 1], "window %d target %d", w, t);
        }
    cr_assert_eq(ts_loader_position(l), 7);
    ts_loader_seek(l, 13); /* 13 % 5 = 3: b@3 */
    cr_assert_eq(ts_loader_next(l, 1, in, tg), TS_OK);
    cr_assert_eq(in[0], 203);
    cr_assert_eq(tg[2], 206);
    cr_assert_eq(ts_loader_position(l), 14);
    ts_loader_destroy(l);

    /* A single path works as a pattern too. */
    cr_assert_eq(ts_loader_create(&l, pb, 3, 300), TS_OK, "%s", ts_last_error());
    cr_assert_eq(ts_loader_num_windows(l), 3);
    ts_loader_destroy(l);
    free(pa);
    free(pb);
    free(pattern);
    tok_rmdir(dir);
}

Test(data_shard, not_a_file_and_missing_directories) {
    char *dir = tok_mkdtemp();
    struct ts_shard s;
    /* a directory given as --data said "No such device" (mmap's ENODEV) */
    cr_assert_eq(ts_shard_open(&s, dir, 50257), TS_ERR_IO);
    cr_assert(strstr(ts_last_error(), "is a directory, not a regular file") != NULL, "%s",
              ts_last_error());
    /* a FIFO is refused at once */
    char *fifo = tok_path(dir, "fifo.bin");
    cr_assert_eq(mkfifo(fifo, 0600), 0);
    cr_assert_eq(ts_shard_open(&s, fifo, 50257), TS_ERR_IO);
    cr_assert(strstr(ts_last_error(), "is a FIFO") != NULL, "%s", ts_last_error());
    /* and as a data manifest (json-c's reader waited on it) */
    struct ts_data_manifest m;
    ts_data_manifest_init(&m);
    cr_assert_eq(ts_data_manifest_read(&m, fifo), TS_ERR_IO);
    cr_assert(strstr(ts_last_error(), "is a FIFO") != NULL, "%s", ts_last_error());
    ts_data_manifest_deinit(&m);
    unlink(fifo);
    free(fifo);
    /* a glob in a missing directory said "read error" */
    char pattern[4200];
    snprintf(pattern, sizeof(pattern), "%s/missing/*.bin", dir);
    ts_loader_t *l = NULL;
    cr_assert_eq(ts_loader_create(&l, pattern, 8, 50257), TS_ERR_IO);
    cr_assert(strstr(ts_last_error(), "cannot read directory") != NULL &&
                  strstr(ts_last_error(), "No such file or directory") != NULL,
              "%s", ts_last_error());
    tok_rmdir(dir);
}
