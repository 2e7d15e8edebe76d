/* test_errors.c: a missing GPT-2 vocabulary names the fetch command; damaged files are refused
 * with a message naming the file (corrupt JSON, a hash mismatch, merges that do not belong to
 * the encoder, an unknown tokenizer name). */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "tok_util.h"

static char *copy_gpt2(const char *home) {
    ts_tokenizer_t *t = tok_need_gpt2();
    ts_tokenizer_destroy(t);
    char src[4096], dst[4200];
    static char cmd[20000];
    cr_assert_eq(ts_tok_gpt2_dir(src, sizeof(src)), TS_OK);
    snprintf(dst, sizeof(dst), "%s/tokenizers/gpt2", home);
    snprintf(cmd, sizeof(cmd), "mkdir -p '%s' && cp '%s/encoder.json' '%s/vocab.bpe' '%s/'", dst,
             src, src, dst);
    cr_assert_eq(system(cmd), 0);
    return strdup(dst);
}

Test(tokenizer_errors, missing_gpt2_says_how_to_fetch) {
    char *home = tok_mkdtemp();
    setenv("TESSERA_HOME", home, 1);
    ts_tokenizer_t *t = NULL;
    cr_assert_eq(ts_tokenizer_load(&t, "gpt2"), TS_ERR_IO);
    cr_assert_null(t);
    cr_assert(strstr(ts_last_error(), "tessera tokenizer fetch gpt2") != NULL, "%s",
              ts_last_error());
    cr_assert(strstr(ts_last_error(), home) != NULL, "%s", ts_last_error());
    char *out = NULL;
    int rc = tok_run_tessera(&out, "tokenize --tokenizer gpt2 < /dev/null");
    cr_assert_eq(rc, 2);
    cr_assert(strstr(out, "tessera tokenizer fetch gpt2") != NULL, "%s", out);
    free(out);
    tok_rmdir(home);
}

Test(tokenizer_errors, hash_mismatch) {
    char *home = tok_mkdtemp();
    char *dir = copy_gpt2(home);
    setenv("TESSERA_HOME", home, 1);
    ts_tokenizer_t *t = NULL;
    cr_assert_eq(ts_tokenizer_load(&t, "gpt2"), TS_OK, "%s", ts_last_error());
    ts_tokenizer_destroy(t);
    char path[4300];
    snprintf(path, sizeof(path), "%s/vocab.bpe", dir);
    size_t n = 0;
    char *s = tok_read_file(path, &n);
    s[n - 2] ^= 1; /* one bit of the last merge */
    tok_write_file(path, s, n);
    free(s);
    cr_assert_eq(ts_tokenizer_load(&t, "gpt2"), TS_ERR_FORMAT);
    cr_assert(strstr(ts_last_error(), "sha256") && strstr(ts_last_error(), "vocab.bpe") &&
                  strstr(ts_last_error(), "tessera tokenizer fetch gpt2"),
              "%s", ts_last_error());
    free(dir);
    tok_rmdir(home);
}

static void write_dir(const char *dir, const char *encoder, const char *merges) {
    char path[4200];
    snprintf(path, sizeof(path), "%s/encoder.json", dir);
    tok_write_file(path, encoder, strlen(encoder));
    snprintf(path, sizeof(path), "%s/vocab.bpe", dir);
    tok_write_file(path, merges, strlen(merges));
}

/* A valid 258-token encoder.json: the 256 bytes, "ab", <|endoftext|>. */
static char *small_encoder(void) {
    char *s = malloc(8192);
    size_t n = 0;
    uint8_t order[256];
    ts_tok_byte_order(order);
    n += (size_t)sprintf(s + n, "{");
    for (int id = 0; id < 256; id++) {
        uint32_t c = ts_tok_byte_to_unicode(order[id]);
        const char *esc = c == '"' ? "\\\"" : c == '\\' ? "\\\\" : NULL;
        if (esc)
            n += (size_t)sprintf(s + n, "\"%s\": %d, ", esc, id);
        else
            n += (size_t)sprintf(s + n, "\"\\u%04x\": %d, ", c, id);
    }
    sprintf(s + n, "\"ab\": 256, \"<|endoftext|>\": 257}");
    return s;
}

Test(tokenizer_errors, corrupt_files) {
    char *dir = tok_mkdtemp();
    ts_tokenizer_t *t = NULL;
    char *enc = small_encoder();
    write_dir(dir, enc, "#version: 0.2\na b\n");
    cr_assert_eq(ts_tokenizer_load(&t, dir), TS_OK, "%s", ts_last_error());
    cr_assert_eq(ts_tokenizer_vocab_size(t), 258);
    cr_assert_eq(ts_tokenizer_eot(t), 257);
    struct ts_tok_ids ids = {0};
    tok_encode(t, (const uint8_t *)"abab", 4, &ids);
    cr_assert(ids.n == 2 && ids.ids[0] == 256 && ids.ids[1] == 256);
    ts_tok_ids_free(&ids);
    ts_tokenizer_destroy(t);

    size_t elen = strlen(enc);
    char *trailing = malloc(elen + 8);
    snprintf(trailing, elen + 8, "%s\n\n{}", enc); /* a second value after the object */
    write_dir(dir, trailing, "#version: 0.2\na b\n");
    free(trailing);
    cr_assert_eq(ts_tokenizer_load(&t, dir), TS_ERR_FORMAT);
    cr_assert(strstr(ts_last_error(), "trailing data") != NULL, "%s", ts_last_error());

    enc[strlen(enc) - 10] = '\0'; /* truncated JSON */
    write_dir(dir, enc, "#version: 0.2\na b\n");
    cr_assert_eq(ts_tokenizer_load(&t, dir), TS_ERR_FORMAT);
    cr_assert_null(t);
    cr_assert(strstr(ts_last_error(), "encoder.json") && strstr(ts_last_error(), "JSON"), "%s",
              ts_last_error());

    write_dir(dir, "{\"a\": 0, \"b\": 0}", "");
    cr_assert_eq(ts_tokenizer_load(&t, dir), TS_ERR_FORMAT);
    cr_assert(strstr(ts_last_error(), "256 to 65536") != NULL, "%s", ts_last_error());

    free(enc);
    enc = small_encoder();
    write_dir(dir, enc, "#version: 0.2\na c\n"); /* "ac" is not a token */
    cr_assert_eq(ts_tokenizer_load(&t, dir), TS_ERR_FORMAT);
    cr_assert(strstr(ts_last_error(), "vocab.bpe line 2") != NULL, "%s", ts_last_error());
    write_dir(dir, enc, "#version: 0.2\nab\n");
    cr_assert_eq(ts_tokenizer_load(&t, dir), TS_ERR_FORMAT);
    cr_assert(strstr(ts_last_error(), "LEFT RIGHT") != NULL, "%s", ts_last_error());

    char *p = strstr(enc, "\"ab\": 256");
    memcpy(p, "\"ab\": 255", 9); /* a duplicate id */
    write_dir(dir, enc, "#version: 0.2\n");
    cr_assert_eq(ts_tokenizer_load(&t, dir), TS_ERR_FORMAT);
    cr_assert(strstr(ts_last_error(), "distinct") != NULL, "%s", ts_last_error());
    free(enc);

    cr_assert_eq(ts_tokenizer_load(&t, "/nonexistent/tok"), TS_ERR_INVALID_ARG);
    cr_assert(strstr(ts_last_error(), "not gpt2, bytes, or a directory") != NULL);
    tok_rmdir(dir);
}

Test(tokenizer_errors, decode_rejects_bad_ids) {
    ts_tokenizer_t *t = NULL;
    cr_assert_eq(ts_tokenizer_load(&t, "bytes"), TS_OK);
    uint8_t *s = NULL;
    size_t n = 0, cap = 0;
    cr_assert_eq(ts_tokenizer_decode(t, (const int32_t[]){65, 256}, 2, &s, &n, &cap),
                 TS_ERR_INVALID_ARG);
    cr_assert(strstr(ts_last_error(), "256") != NULL);
    free(s);
    char *dir = tok_mkdtemp(), path[4200], *out = NULL;
    snprintf(path, sizeof(path), "%s/ids.txt", dir);
    tok_write_file(path, "104 x", 5);
    cr_assert_eq(tok_run_tessera(&out, "tokenize --tokenizer bytes --decode --input %s", path), 2);
    cr_assert(strstr(out, "expected token ids") != NULL, "%s", out);
    free(out);
    tok_rmdir(dir);
    ts_tokenizer_destroy(t);
}

Test(tokenizer_errors, fifo_and_line_count_bounded) {
    char *dir = tok_mkdtemp();
    ts_tokenizer_t *t = NULL;
    char *enc = small_encoder();
    /* 70000 lines of vocab.bpe: more than a 65536-token vocabulary has merges */
    char *many = malloc(70000 * 4 + 32);
    size_t n = (size_t)sprintf(many, "#version: 0.2\n");
    for (int i = 0; i < 70000; i++)
        n += (size_t)sprintf(many + n, "a b\n");
    write_dir(dir, enc, many);
    cr_assert_eq(ts_tokenizer_load(&t, dir), TS_ERR_FORMAT);
    cr_assert(strstr(ts_last_error(), "more than the merges of a 65536-token vocabulary") != NULL,
              "%s", ts_last_error());
    /* a FIFO as vocab.bpe is refused at once, not waited on */
    char path[4200];
    snprintf(path, sizeof(path), "%s/vocab.bpe", dir);
    unlink(path);
    cr_assert_eq(mkfifo(path, 0600), 0);
    cr_assert_eq(ts_tokenizer_load(&t, dir), TS_ERR_IO);
    cr_assert(strstr(ts_last_error(), "is a FIFO") != NULL, "%s", ts_last_error());
    free(many);
    free(enc);
    tok_rmdir(dir);
}
