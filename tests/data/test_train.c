/* test_train.c: tokenizer training reproduces hand-checked merges (frequency first, ties to
 * the smaller ids, pairs seen once never merged), is deterministic, agrees with a naive
 * reference that recounts every pair before each merge, and saves files the loader reads. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "data/tokenizer_train.h"
#include "tok_util.h"

static ts_tokenizer_t *train(const char *text, size_t n, int vocab, char **dir_out) {
    ts_tok_trainer_t *tr = NULL;
    cr_assert_eq(ts_tok_trainer_create(&tr), TS_OK);
    cr_assert_eq(ts_tok_trainer_feed(tr, (const uint8_t *)text, n), TS_OK);
    cr_assert_eq(ts_tok_trainer_run(tr, vocab), TS_OK, "%s", ts_last_error());
    char *dir = tok_mkdtemp();
    cr_assert_eq(ts_tok_trainer_save(tr, dir), TS_OK, "%s", ts_last_error());
    ts_tok_trainer_destroy(tr);
    ts_tokenizer_t *t = NULL;
    cr_assert_eq(ts_tokenizer_load(&t, dir), TS_OK, "%s", ts_last_error());
    *dir_out = dir;
    return t;
}

static char *merges_of(const char *dir) {
    char path[4200];
    snprintf(path, sizeof(path), "%s/vocab.bpe", dir);
    char *s = tok_read_file(path, NULL);
    cr_assert_not_null(s);
    return s;
}

Test(tokenizer_train, hand_checked_example) {
    /* chunks "ab", " cd", " ab", " cd": (a,b), (Ġ,c), (c,d) occur twice each, (Ġ,a) once.
     * Ties go to the smaller ids: a=64 b=65 c=66 d=67, Ġ (space)=220. So: a+b -> 256,
     * c+d -> 257, then Ġ+cd (twice) -> 258; Ġ+ab occurs once and is not merged. */
    const char *text = "ab cd ab cd";
    char *dir = NULL;
    ts_tokenizer_t *t = train(text, strlen(text), 300, &dir);
    char *m = merges_of(dir);
    cr_assert_str_eq(m, "#version: 0.2\na b\nc d\n\xc4\xa0 cd\n");
    cr_assert_eq(ts_tokenizer_vocab_size(t), 260); /* 256 + 3 merges + <|endoftext|> */
    cr_assert_eq(ts_tokenizer_eot(t), 259);
    struct ts_tok_ids ids = {0};
    tok_encode(t, (const uint8_t *)"ab cd ab", 8, &ids);
    cr_assert(ids.n == 4 && ids.ids[0] == 256 && ids.ids[1] == 258 && ids.ids[2] == 220 &&
                  ids.ids[3] == 256,
              "got %lld ids", (long long)ids.n);
    ts_tok_ids_free(&ids);
    free(m);
    ts_tokenizer_destroy(t);
    tok_rmdir(dir);

    /* the vocabulary size bounds the merges: 256 + 1 + <|endoftext|> */
    t = train(text, strlen(text), 258, &dir);
    m = merges_of(dir);
    cr_assert_str_eq(m, "#version: 0.2\na b\n");
    free(m);
    ts_tokenizer_destroy(t);
    tok_rmdir(dir);
}

Test(tokenizer_train, frequency_order) {
    /* "aaa" x3 and "bb" x2: (a,a) occurs 2 per word x3 = 6 times, (b,b) 2: a+a first; then
     * the words are [aa, a] x3 ((aa,a) 3 times) and [b,b]: aa+a, then b+b. */
    const char *text = "aaa\naaa\naaa\nbb\nbb";
    char *dir = NULL;
    ts_tokenizer_t *t = train(text, strlen(text), 1000, &dir);
    char *m = merges_of(dir);
    cr_assert(strncmp(m, "#version: 0.2\na a\naa a\nb b\n", 28) == 0, "%s", m);
    free(m);
    ts_tokenizer_destroy(t);
    tok_rmdir(dir);
}

/* A naive trainer: recount every pair of every word before each merge. */
struct word {
    int32_t sym[256];
    int n;
    int64_t count;
};

struct ctx {
    struct word *w;
    int *nw;
    int32_t *id_of;
};

static ts_status cb(void *p, const uint8_t *s, size_t k) {
    struct ctx *c = p;
    cr_assert_leq(k, 256, "a chunk of %zu bytes: too long for the naive trainer", k);
    for (int w = 0; w < *c->nw; w++) {
        struct word *x = &c->w[w];
        if (x->n == (int)k) {
            int same = 1;
            for (size_t i = 0; i < k && same; i++)
                same = x->sym[i] == c->id_of[s[i]];
            if (same) {
                x->count++;
                return TS_OK;
            }
        }
    }
    struct word *x = &c->w[(*c->nw)++];
    x->n = (int)k;
    x->count = 1;
    for (size_t i = 0; i < k; i++)
        x->sym[i] = c->id_of[s[i]];
    return TS_OK;
}

static void naive(const uint8_t *text, size_t n, int vocab, char *out, size_t outlen) {
    ts_tok_splitter_t *sp = NULL;
    cr_assert_eq(ts_tok_splitter_create(&sp), TS_OK);
    static struct word words[20000];
    static uint8_t tb[1 << 20];
    static int64_t toff[5000];
    int nw = 0, ntok = 0;
    uint8_t order[256];
    int32_t id_of[256];
    ts_tok_byte_order(order);
    for (int i = 0; i < 256; i++) {
        id_of[order[i]] = i;
        tb[i] = order[i];
        toff[i + 1] = i + 1;
    }
    ntok = 256;
    struct ctx c = {words, &nw, id_of};
    cr_assert_eq(ts_tok_split(sp, text, n, cb, &c), TS_OK);
    ts_tok_splitter_destroy(sp);
    size_t o = (size_t)snprintf(out, outlen, "#version: 0.2\n");
    while (ntok < vocab - 1) {
        int64_t best = 1;
        int32_t ba = -1, bb = -1;
        /* count pairs in a dense table */
        static int64_t cnt[1200][1200];
        memset(cnt, 0, sizeof(cnt));
        for (int w = 0; w < nw; w++)
            for (int i = 0; i + 1 < words[w].n; i++)
                cnt[words[w].sym[i]][words[w].sym[i + 1]] += words[w].count;
        for (int a = 0; a < ntok; a++)
            for (int b = 0; b < ntok; b++)
                if (cnt[a][b] > best) {
                    best = cnt[a][b];
                    ba = a;
                    bb = b;
                }
        if (ba < 0)
            break;
        /* the merged bytes; reuse an existing id with the same bytes */
        int64_t la = toff[ba + 1] - toff[ba], lb = toff[bb + 1] - toff[bb];
        uint8_t m[512];
        memcpy(m, tb + toff[ba], (size_t)la);
        memcpy(m + la, tb + toff[bb], (size_t)lb);
        int z = -1;
        for (int k = 0; k < ntok && z < 0; k++)
            if (toff[k + 1] - toff[k] == la + lb && memcmp(tb + toff[k], m, (size_t)(la + lb)) == 0)
                z = k;
        if (z < 0) {
            z = ntok++;
            memcpy(tb + toff[z], m, (size_t)(la + lb));
            toff[z + 1] = toff[z] + la + lb;
        }
        for (int w = 0; w < nw; w++) {
            int k = 0;
            for (int i = 0; i < words[w].n; i++) {
                if (i + 1 < words[w].n && words[w].sym[i] == ba && words[w].sym[i + 1] == bb) {
                    words[w].sym[k++] = z;
                    i++;
                } else {
                    words[w].sym[k++] = words[w].sym[i];
                }
            }
            words[w].n = k;
        }
        for (int side = 0; side < 2; side++) {
            int id = side ? bb : ba;
            for (int64_t i = toff[id]; i < toff[id + 1]; i++) {
                uint32_t cp = ts_tok_byte_to_unicode(tb[i]);
                if (cp < 0x80)
                    out[o++] = (char)cp;
                else {
                    out[o++] = (char)(0xC0 | (cp >> 6));
                    out[o++] = (char)(0x80 | (cp & 0x3F));
                }
            }
            out[o++] = side ? '\n' : ' ';
        }
        cr_assert_lt(o, outlen - 1024);
    }
    out[o] = '\0';
}

Test(tokenizer_train, incremental_equals_naive_recount, .timeout = 300) {
    size_t n = 0;
    uint8_t *text = tok_varied_text(&n);
    n = 60000; /* prose and code from the repository: enough for a few hundred merges */
    for (size_t i = 0; i < n; i++)
        if (text[i] >= 0x80)
            text[i] = 'x'; /* keep chunks short and the naive tables small */
    static char want[1 << 20];
    int vocab = 1100;
    naive(text, n, vocab, want, sizeof(want));
    char *dir = NULL;
    ts_tokenizer_t *t = train((const char *)text, n, vocab, &dir);
    char *got = merges_of(dir);
    size_t k = 0;
    while (got[k] && got[k] == want[k])
        k++;
    cr_assert(got[k] == want[k],
              "merges differ from the naive recount at byte %zu: \"%.30s\" vs "
              "\"%.30s\"",
              k, got + k, want + k);
    cr_assert_gt(ts_tokenizer_num_merges(t), 500);
    free(got);
    free(text);
    ts_tokenizer_destroy(t);
    tok_rmdir(dir);
}

Test(tokenizer_train, deterministic) {
    size_t n = 0;
    uint8_t *text = tok_varied_text(&n);
    char *d1 = NULL, *d2 = NULL;
    ts_tokenizer_t *a = train((const char *)text, n, 2000, &d1);
    ts_tokenizer_t *b = train((const char *)text, n, 2000, &d2);
    cr_assert_str_eq(ts_tokenizer_vocab_sha256(a), ts_tokenizer_vocab_sha256(b));
    for (int f = 0; f < 2; f++) {
        char p1[4200], p2[4200];
        const char *name = f ? "vocab.bpe" : "encoder.json";
        snprintf(p1, sizeof(p1), "%s/%s", d1, name);
        snprintf(p2, sizeof(p2), "%s/%s", d2, name);
        size_t n1 = 0, n2 = 0;
        char *s1 = tok_read_file(p1, &n1), *s2 = tok_read_file(p2, &n2);
        cr_assert(n1 == n2 && memcmp(s1, s2, n1) == 0, "%s differs between two runs", name);
        free(s1);
        free(s2);
    }
    cr_assert_eq(ts_tokenizer_vocab_size(a), 2000);
    /* a trained tokenizer round-trips arbitrary bytes and compresses its own corpus */
    struct ts_tok_ids ids = {0};
    tok_encode(a, text, n, &ids);
    cr_assert_lt(ids.n, (int64_t)n / 2);
    uint8_t *dec = NULL;
    size_t len = 0, cap = 0;
    cr_assert_eq(ts_tokenizer_decode(a, ids.ids, ids.n, &dec, &len, &cap), TS_OK);
    cr_assert(len == n && memcmp(dec, text, n) == 0);
    free(dec);
    ts_tok_ids_free(&ids);
    free(text);
    ts_tokenizer_destroy(a);
    ts_tokenizer_destroy(b);
    tok_rmdir(d1);
    tok_rmdir(d2);
}

Test(tokenizer_train, bad_vocab_size) {
    ts_tok_trainer_t *tr = NULL;
    cr_assert_eq(ts_tok_trainer_create(&tr), TS_OK);
    cr_assert_eq(ts_tok_trainer_run(tr, 256), TS_ERR_INVALID_ARG);
    cr_assert(strstr(ts_last_error(), "257") != NULL);
    cr_assert_eq(ts_tok_trainer_run(tr, 70000), TS_ERR_INVALID_ARG);
    ts_tok_trainer_destroy(tr);
}
