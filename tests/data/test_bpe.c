/* test_bpe.c: the heap merge of long chunks gives exactly the ids of the O(n^2) scan (the
 * encoder of earlier versions, kept as ts_tok_bpe_reference) on random and adversarial chunks,
 * and js-tiktoken's ids on long chunks (stored in tests/data/bpe_long: js-tiktoken is itself
 * quadratic, about two minutes for 20 kB, so its ids are test data, not a run per test; made with
 * `NODE_PATH=~/.cache/tessera/npm/node_modules node tests/data/tiktoken_oracle.js X.txt > X.ids`,
 * the texts drawn by Python's random with seeds 2, 3 and 4). */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "data/tokenizer_impl.h"
#include "tok_util.h"

struct ref_ctx {
    const struct ts_tokenizer *t;
    struct ts_tok_ids *out;
    int32_t *buf;
};

static ts_status ref_chunk(void *ctx, const uint8_t *s, size_t n) {
    struct ref_ctx *c = ctx;
    size_t m = 0;
    TS_CHECK(ts_tok_bpe_reference(c->t, s, n, c->buf, &m));
    for (size_t i = 0; i < m; i++)
        TS_CHECK(ts_tok_ids_push(c->out, c->buf[i]));
    return TS_OK;
}

/* The reference encode: the same split, every chunk merged by the scan. */
static void ref_encode(const ts_tokenizer_t *t, const uint8_t *s, size_t n,
                       struct ts_tok_ids *out) {
    ts_tok_splitter_t *sp = NULL;
    cr_assert_eq(ts_tok_splitter_create(&sp), TS_OK);
    struct ref_ctx c = {t, out, malloc((n + 1) * sizeof(int32_t))};
    cr_assert_eq(ts_tok_split(sp, s, n, ref_chunk, &c), TS_OK, "%s", ts_last_error());
    free(c.buf);
    ts_tok_splitter_destroy(sp);
}

static void expect_same(const ts_tokenizer_t *t, const uint8_t *s, size_t n, const char *what) {
    struct ts_tok_ids got = {0}, want = {0};
    tok_encode(t, s, n, &got);
    ref_encode(t, s, n, &want);
    cr_assert_eq(got.n, want.n, "%s (%zu bytes): %lld ids, the scan gives %lld", what, n,
                 (long long)got.n, (long long)want.n);
    for (int64_t i = 0; i < got.n; i++)
        cr_assert_eq(got.ids[i], want.ids[i], "%s (%zu bytes): id %lld is %d, the scan gives %d",
                     what, n, (long long)i, got.ids[i], want.ids[i]);
    ts_tok_ids_free(&got);
    ts_tok_ids_free(&want);
}

/* n bytes drawn from alphabet by a fixed generator. */
static void from_alphabet(uint8_t *out, size_t n, const char *alphabet, uint64_t seed) {
    const size_t k = strlen(alphabet);
    tok_random_bytes(out, n, seed);
    for (size_t i = 0; i < n; i++)
        out[i] = (uint8_t)alphabet[out[i] % k];
}

Test(tokenizer_bpe, heap_equals_scan, .timeout = 300) {
    ts_tokenizer_t *t = tok_need_gpt2();
    static const char *alphabets[] = {
        "abcdefghijklmnopqrstuvwxyz", /* one chunk of letters */
        "ab",                         /* competing merges, ties everywhere */
        "a",                          /* a run of one letter: merges of merges */
        "aeiou",
        "0123456789", /* digits */
        " ",          /* spaces */
        " \t\n",
        "thequickbrownfox", /* pieces of frequent words */
        "ABCabc",
    };
    const size_t lens[] = {1, 2, 3, 127, 128, 129, 130, 200, 1000, 4000};
    uint8_t *buf = malloc(4000);
    for (size_t a = 0; a < sizeof(alphabets) / sizeof(alphabets[0]); a++)
        for (size_t l = 0; l < sizeof(lens) / sizeof(lens[0]); l++) {
            from_alphabet(buf, lens[l], alphabets[a], a * 100 + l);
            expect_same(t, buf, lens[l], alphabets[a]);
        }
    /* arbitrary bytes (invalid UTF-8 runs are chunks of their own) and high bytes only */
    for (uint64_t seed = 0; seed < 20; seed++) {
        const size_t n = 1 + (size_t)(seed * 197 % 4000);
        tok_random_bytes(buf, n, seed);
        expect_same(t, buf, n, "random bytes");
        for (size_t i = 0; i < n; i++)
            buf[i] |= 0x80;
        expect_same(t, buf, n, "high bytes");
    }
    /* one long word repeated: every merge rank appears many times */
    const char *w = "internationalization";
    for (size_t i = 0; i < 4000; i++)
        buf[i] = (uint8_t)w[i % strlen(w)];
    expect_same(t, buf, 4000, "a repeated word");
    free(buf);
    ts_tokenizer_destroy(t);
}

static int32_t *read_ids(const char *path, int64_t *n) {
    FILE *f = fopen(path, "r");
    cr_assert_not_null(f, "%s is missing", path);
    int64_t cap = 1024, k = 0;
    int32_t *ids = malloc((size_t)cap * sizeof(int32_t));
    long v;
    while (fscanf(f, "%ld", &v) == 1) {
        if (k == cap)
            ids = realloc(ids, (size_t)(cap *= 2) * sizeof(int32_t));
        ids[k++] = (int32_t)v;
    }
    fclose(f);
    *n = k;
    return ids;
}

Test(tokenizer_bpe, long_chunks_match_js_tiktoken_ids) {
    ts_tokenizer_t *t = tok_need_gpt2();
    static const char *names[] = {"letters_20k", "digits_8k", "ab_8k"};
    const char *src = getenv("TS_SOURCE_DIR") ? getenv("TS_SOURCE_DIR") : ".";
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        char path[4200];
        snprintf(path, sizeof(path), "%s/tests/data/bpe_long/%s.txt", src, names[i]);
        size_t n = 0;
        char *text = tok_read_file(path, &n);
        cr_assert_not_null(text, "%s is missing", path);
        snprintf(path, sizeof(path), "%s/tests/data/bpe_long/%s.ids", src, names[i]);
        int64_t nwant = 0;
        int32_t *want = read_ids(path, &nwant);
        struct ts_tok_ids got = {0};
        tok_encode(t, (const uint8_t *)text, n, &got);
        cr_assert_eq(got.n, nwant, "%s: %lld ids, js-tiktoken gave %lld", names[i],
                     (long long)got.n, (long long)nwant);
        for (int64_t k = 0; k < nwant; k++)
            cr_assert_eq(got.ids[k], want[k], "%s: id %lld is %d, js-tiktoken gave %d", names[i],
                         (long long)k, got.ids[k], want[k]);
        ts_tok_ids_free(&got);
        free(want);
        free(text);
    }
    ts_tokenizer_destroy(t);
}

/* 1 MB of three chunks (letters, digits, spaces) took minutes with the O(n^2) scan (over 300 s
 * on the 2-core dev VM); the heap merge takes under a second. The timeout is the property. */
Test(tokenizer_bpe, long_chunks_in_bounded_time, .timeout = 60) {
    ts_tokenizer_t *t = tok_need_gpt2();
    const size_t n = 1000000;
    uint8_t *text = malloc(n);
    from_alphabet(text, 350000, "abcdefghijklmnopqrstuvwxyz", 1);
    text[350000] = ' ';
    from_alphabet(text + 350001, 350000, "0123456789", 2);
    memset(text + 700001, ' ', n - 700001);
    struct ts_tok_ids ids = {0};
    tok_encode(t, text, n, &ids);
    uint8_t *dec = NULL;
    size_t len = 0, cap = 0;
    cr_assert_eq(ts_tokenizer_decode(t, ids.ids, ids.n, &dec, &len, &cap), TS_OK);
    cr_assert(len == n && memcmp(dec, text, n) == 0, "decode(encode(x)) != x");
    free(dec);
    ts_tok_ids_free(&ids);
    free(text);
    ts_tokenizer_destroy(t);
}

/* The chunk cache starts small, doubles up to its maximum (131072 entries at half load) and is
 * cleared when full: 150000 distinct words go through every growth and one clear, then again
 * through the warm cache, and both encodes give the scan's ids. */
Test(tokenizer_bpe, cache_growth_keeps_ids, .timeout = 120) {
    ts_tokenizer_t *t = tok_need_gpt2();
    const size_t words = 150000;
    uint8_t *text = malloc(words * 7);
    size_t n = 0;
    for (size_t w = 0; w < words; w++) {
        text[n++] = ' ';
        for (size_t k = w, i = 0; i < 5; i++, k /= 26)
            text[n++] = (uint8_t)("etaoinshrdlucmfwypvbgkjqxz"[k % 26]);
    }
    struct ts_tok_ids want = {0}, got = {0};
    ref_encode(t, text, n, &want);
    ts_tok_encoder_t *e = NULL;
    cr_assert_eq(ts_tok_encoder_create(&e, t), TS_OK, "%s", ts_last_error());
    for (int pass = 0; pass < 2; pass++) {
        got.n = 0;
        cr_assert_eq(ts_tok_encoder_encode(e, text, n, &got), TS_OK, "%s", ts_last_error());
        cr_assert_eq(got.n, want.n, "pass %d: %lld ids, the scan gives %lld", pass,
                     (long long)got.n, (long long)want.n);
        cr_assert(memcmp(got.ids, want.ids, (size_t)want.n * sizeof(int32_t)) == 0,
                  "pass %d: the ids differ from the scan's", pass);
    }
    ts_tok_encoder_destroy(e);
    ts_tok_ids_free(&got);
    ts_tok_ids_free(&want);
    free(text);
    ts_tokenizer_destroy(t);
}

/* The parallel encoder cut into pieces of a few bytes (wherever ts_tok_safe_cut allows) gives
 * one encoder's ids: what fuzz_tok_encode checks on every input, here on fixed texts. */
Test(tokenizer_bpe, small_pieces_equal_serial) {
    ts_tokenizer_t *t = tok_need_gpt2();
    static const char *texts[] = {
        "a\nb\nc\n1\n2\nthe end.\nand then\n\n\nx\ny",
        "line one\nline two\n  indented\nThird line, with words\n42\n",
        "\n\n\na\n",
    };
    for (size_t i = 0; i < sizeof(texts) / sizeof(texts[0]); i++)
        for (size_t piece = 1; piece < 12; piece++) {
            const size_t n = strlen(texts[i]);
            struct ts_tok_ids a = {0}, b = {0};
            tok_encode(t, (const uint8_t *)texts[i], n, &a);
            cr_assert_eq(ts_tok_encode_pieces(t, (const uint8_t *)texts[i], n, 3, piece, &b), TS_OK,
                         "%s", ts_last_error());
            cr_assert(a.n == b.n && memcmp(a.ids, b.ids, (size_t)a.n * sizeof(int32_t)) == 0,
                      "text %zu, pieces of %zu: parallel != serial", i, piece);
            ts_tok_ids_free(&a);
            ts_tok_ids_free(&b);
        }
    ts_tokenizer_destroy(t);
}
