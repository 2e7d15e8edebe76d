/* data_manifest.c: manifest.json (data_manifest.h), written and read with json-c. */
#include "data/data_manifest.h"

#include <errno.h>
#include <glob.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <json-c/json.h>

#include "kernels/fs.h"
#include "kernels/log.h"

void ts_data_manifest_init(struct ts_data_manifest *m) {
    memset(m, 0, sizeof(*m));
    m->eot = -1;
}

void ts_data_manifest_deinit(struct ts_data_manifest *m) {
    for (int i = 0; i < m->num_sources; i++)
        free(m->sources[i].path);
    free(m->sources);
    free(m->shards);
    ts_data_manifest_init(m);
}

ts_status ts_data_manifest_add_source(struct ts_data_manifest *m, const char *path, int64_t bytes,
                                      const char *sha256) {
    struct ts_data_source *ns =
        realloc(m->sources, (size_t)(m->num_sources + 1) * sizeof(*m->sources));
    if (ns == NULL)
        return ts_error(TS_ERR_OOM, "out of memory for the manifest's sources");
    m->sources = ns;
    struct ts_data_source *s = &m->sources[m->num_sources];
    s->path = strdup(path);
    if (s->path == NULL)
        return ts_error(TS_ERR_OOM, "out of memory for the manifest's sources");
    s->bytes = bytes;
    snprintf(s->sha256, sizeof(s->sha256), "%s", sha256);
    m->num_sources++;
    return TS_OK;
}

ts_status ts_data_manifest_add_shard(struct ts_data_manifest *m, const char *name, int64_t tokens) {
    if (strlen(name) >= sizeof(m->shards[0].name))
        return ts_error(TS_ERR_INVALID_ARG, "shard name too long: %s", name);
    struct ts_data_shard *ns = realloc(m->shards, (size_t)(m->num_shards + 1) * sizeof(*ns));
    if (ns == NULL)
        return ts_error(TS_ERR_OOM, "out of memory for the manifest's shards");
    m->shards = ns;
    snprintf(ns[m->num_shards].name, sizeof(ns[0].name), "%s", name);
    ns[m->num_shards++].tokens = tokens;
    return TS_OK;
}

ts_status ts_data_manifest_write(const struct ts_data_manifest *m, const char *path) {
    json_object *root = json_object_new_object(), *tok = json_object_new_object();
    json_object *sources = json_object_new_array();
    json_object_object_add(root, "format", json_object_new_string("tessera-data-manifest"));
    json_object_object_add(root, "version", json_object_new_int(TS_DATA_MANIFEST_VERSION));
    json_object_object_add(tok, "name", json_object_new_string(m->tokenizer));
    json_object_object_add(tok, "vocab_size", json_object_new_int(m->vocab_size));
    json_object_object_add(tok, "eot", json_object_new_int(m->eot));
    json_object_object_add(tok, "vocab_sha256", json_object_new_string(m->vocab_sha256));
    json_object_object_add(root, "tokenizer", tok);
    json_object_object_add(root, "train_tokens", json_object_new_int64(m->train_tokens));
    json_object_object_add(root, "val_tokens", json_object_new_int64(m->val_tokens));
    json_object_object_add(root, "train_shards", json_object_new_int(m->num_train_shards));
    for (int i = 0; i < m->num_sources; i++) {
        json_object *s = json_object_new_object();
        json_object_object_add(s, "path", json_object_new_string(m->sources[i].path));
        json_object_object_add(s, "bytes", json_object_new_int64(m->sources[i].bytes));
        json_object_object_add(s, "sha256", json_object_new_string(m->sources[i].sha256));
        json_object_array_add(sources, s);
    }
    json_object_object_add(root, "sources", sources);
    json_object *shards = json_object_new_array();
    for (int i = 0; i < m->num_shards; i++) {
        json_object *s = json_object_new_object();
        json_object_object_add(s, "name", json_object_new_string(m->shards[i].name));
        json_object_object_add(s, "tokens", json_object_new_int64(m->shards[i].tokens));
        json_object_array_add(shards, s);
    }
    json_object_object_add(root, "shards", shards);
    json_object_object_add(root, "val_split", json_object_new_string(m->val_split));
    const char *text = json_object_to_json_string_ext(
        root, JSON_C_TO_STRING_PRETTY | JSON_C_TO_STRING_SPACED | JSON_C_TO_STRING_NOSLASHESCAPE);
    char tmp[4300];
    snprintf(tmp, sizeof(tmp), "%s.tmp", path);
    ts_status st = TS_OK;
    FILE *f = fopen(tmp, "wb");
    if (f == NULL) {
        st = ts_error(TS_ERR_IO, "cannot create %s: %s", tmp, strerror(errno));
    } else {
        int bad = fputs(text, f) < 0 || fputc('\n', f) == EOF;
        bad |= fclose(f) != 0;
        if (bad || rename(tmp, path) != 0) {
            remove(tmp);
            st = ts_error(TS_ERR_IO, "cannot write %s: %s", path, strerror(errno));
        }
    }
    json_object_put(root);
    return st;
}

static ts_status get(json_object *o, const char *key, json_type type, const char *path,
                     json_object **out) {
    if (!json_object_object_get_ex(o, key, out) || !json_object_is_type(*out, type))
        return ts_error(TS_ERR_FORMAT, "%s: \"%s\" is missing or has the wrong type", path, key);
    return TS_OK;
}

static ts_status parse(struct ts_data_manifest *m, json_object *root, const char *path) {
    json_object *v, *tok, *sources;
    if (!json_object_is_type(root, json_type_object))
        return ts_error(TS_ERR_FORMAT, "%s: not a JSON object", path);
    TS_CHECK(get(root, "version", json_type_int, path, &v));
    const int version = json_object_get_int(v);
    if (version != 1 && version != TS_DATA_MANIFEST_VERSION)
        return ts_error(TS_ERR_FORMAT, "%s: version %d; this build reads version %d", path,
                        json_object_get_int(v), TS_DATA_MANIFEST_VERSION);
    TS_CHECK(get(root, "tokenizer", json_type_object, path, &tok));
    TS_CHECK(get(tok, "name", json_type_string, path, &v));
    snprintf(m->tokenizer, sizeof(m->tokenizer), "%s", json_object_get_string(v));
    TS_CHECK(get(tok, "vocab_size", json_type_int, path, &v));
    m->vocab_size = json_object_get_int(v);
    if (m->vocab_size < 2 || m->vocab_size > 65536)
        return ts_error(TS_ERR_FORMAT, "%s: vocab_size %d outside [2, 65536]", path, m->vocab_size);
    TS_CHECK(get(tok, "eot", json_type_int, path, &v));
    m->eot = json_object_get_int(v);
    TS_CHECK(get(tok, "vocab_sha256", json_type_string, path, &v));
    snprintf(m->vocab_sha256, sizeof(m->vocab_sha256), "%s", json_object_get_string(v));
    TS_CHECK(get(root, "train_tokens", json_type_int, path, &v));
    m->train_tokens = json_object_get_int64(v);
    TS_CHECK(get(root, "val_tokens", json_type_int, path, &v));
    m->val_tokens = json_object_get_int64(v);
    TS_CHECK(get(root, "train_shards", json_type_int, path, &v));
    m->num_train_shards = json_object_get_int(v);
    TS_CHECK(get(root, "sources", json_type_array, path, &sources));
    for (size_t i = 0; i < json_object_array_length(sources); i++) {
        json_object *s = json_object_array_get_idx(sources, i), *p, *b, *h;
        if (!json_object_is_type(s, json_type_object))
            return ts_error(TS_ERR_FORMAT, "%s: sources[%zu] is not an object", path, i);
        TS_CHECK(get(s, "path", json_type_string, path, &p));
        TS_CHECK(get(s, "bytes", json_type_int, path, &b));
        TS_CHECK(get(s, "sha256", json_type_string, path, &h));
        TS_CHECK(ts_data_manifest_add_source(m, json_object_get_string(p), json_object_get_int64(b),
                                             json_object_get_string(h)));
    }
    if (version < 2)
        return TS_OK;
    json_object *shards;
    TS_CHECK(get(root, "shards", json_type_array, path, &shards));
    for (size_t i = 0; i < json_object_array_length(shards); i++) {
        json_object *s = json_object_array_get_idx(shards, i), *nm, *t;
        if (!json_object_is_type(s, json_type_object))
            return ts_error(TS_ERR_FORMAT, "%s: shards[%zu] is not an object", path, i);
        TS_CHECK(get(s, "name", json_type_string, path, &nm));
        TS_CHECK(get(s, "tokens", json_type_int, path, &t));
        if (strchr(json_object_get_string(nm), '/') != NULL)
            return ts_error(TS_ERR_FORMAT, "%s: shard name '%s' is not a plain file name", path,
                            json_object_get_string(nm));
        TS_CHECK(
            ts_data_manifest_add_shard(m, json_object_get_string(nm), json_object_get_int64(t)));
    }
    TS_CHECK(get(root, "val_split", json_type_string, path, &v));
    snprintf(m->val_split, sizeof(m->val_split), "%s", json_object_get_string(v));
    return TS_OK;
}

ts_status ts_data_manifest_read(struct ts_data_manifest *m, const char *path) {
    ts_data_manifest_deinit(m);
    /* a regular file of at most 64 MiB (a FIFO is refused, not waited on) */
    uint8_t *text = NULL;
    size_t n = 0;
    TS_CHECK(ts_fs_read_regular_file(path, 64 << 20, &text, &n));
    json_object *root = json_tokener_parse((const char *)text);
    free(text);
    if (root == NULL)
        return ts_error(TS_ERR_FORMAT, "%s: cannot read the data manifest (not JSON)", path);
    ts_status st = parse(m, root, path);
    json_object_put(root);
    if (st != TS_OK)
        ts_data_manifest_deinit(m);
    return st;
}

static bool is_dir(const char *path) {
    struct stat sb;
    return stat(path, &sb) == 0 && S_ISDIR(sb.st_mode);
}

ts_status ts_data_manifest_find(const char *pattern, char *out, size_t len, bool *found) {
    *found = false;
    const char *slash = strrchr(pattern, '/');
    int w = is_dir(pattern) ? snprintf(out, len, "%s/%s", pattern, TS_DATA_MANIFEST_NAME)
            : slash == NULL ? snprintf(out, len, "%s", TS_DATA_MANIFEST_NAME)
                            : snprintf(out, len, "%.*s/%s", (int)(slash - pattern), pattern,
                                       TS_DATA_MANIFEST_NAME);
    if (w < 0 || (size_t)w >= len)
        return ts_error(TS_ERR_INVALID_ARG, "path too long: %s", pattern);
    struct stat sb;
    *found = stat(out, &sb) == 0 && S_ISREG(sb.st_mode);
    return TS_OK;
}

ts_status ts_data_manifest_vocab(const char *data, bool given, bool exact, int *vocab_size) {
    char path[TS_PATH_MAX];
    bool found = false;
    TS_CHECK(ts_data_manifest_find(data, path, sizeof(path), &found));
    if (!found)
        return TS_OK;
    struct ts_data_manifest m;
    ts_data_manifest_init(&m);
    TS_CHECK(ts_data_manifest_read(&m, path));
    ts_status st = TS_OK;
    if (!given) {
        *vocab_size = m.vocab_size;
        TS_LOG_I("data: %s says tokenizer %s, vocabulary %d", path, m.tokenizer, m.vocab_size);
    } else if (exact ? *vocab_size != m.vocab_size : *vocab_size < m.vocab_size) {
        st = ts_error(TS_ERR_INVALID_ARG,
                      "the vocabulary size %d does not fit the data: %s says tokenizer %s with "
                      "vocabulary %d",
                      *vocab_size, path, m.tokenizer, m.vocab_size);
    }
    ts_data_manifest_deinit(&m);
    return st;
}

/* The differences between the files a pattern matches and the manifest's list. */
static ts_status check_against(const struct ts_data_manifest *m, const char *mpath,
                               const char *pattern, bool full) {
    glob_t g;
    int rc = glob(pattern, 0, NULL, &g);
    if (rc != 0 && rc != GLOB_NOMATCH)
        return ts_error(TS_ERR_IO, "cannot expand --data '%s'", pattern);
    size_t nmatch = rc == 0 ? g.gl_pathc : 0;
    ts_status st = TS_OK;
    char *seen = calloc((size_t)m->num_shards + 1, 1);
    if (seen == NULL)
        st = ts_error(TS_ERR_OOM, "out of memory checking %s", mpath);
    for (size_t i = 0; i < nmatch && st == TS_OK; i++) {
        const char *path = g.gl_pathv[i];
        const char *base = strrchr(path, '/') ? strrchr(path, '/') + 1 : path;
        struct stat sb;
        int64_t size = stat(path, &sb) == 0 ? (int64_t)sb.st_size : -1;
        int64_t tokens = -1;
        if (strcmp(base, "val.bin") == 0)
            tokens = m->val_tokens;
        for (int k = 0; tokens < 0 && k < m->num_shards; k++)
            if (strcmp(base, m->shards[k].name) == 0) {
                tokens = m->shards[k].tokens;
                seen[k] = 1;
            }
        if (tokens < 0)
            st = ts_error(TS_ERR_INVALID_ARG,
                          "--data '%s' matches %s, which %s does not list (a stale shard of an "
                          "earlier prepare?): give the directory, or a glob of the listed shards",
                          pattern, path, mpath);
        else if (size != 1024 + 2 * tokens)
            st = ts_error(TS_ERR_INVALID_ARG,
                          "%s is %lld bytes but %s says %lld tokens (%lld bytes): the shard was "
                          "rewritten or truncated since it was prepared",
                          path, (long long)size, mpath, (long long)tokens,
                          (long long)(1024 + 2 * tokens));
    }
    for (int k = 0; full && st == TS_OK && k < m->num_shards; k++)
        if (!seen[k])
            st = ts_error(TS_ERR_INVALID_ARG, "%s lists %s, which is missing", mpath,
                          m->shards[k].name);
    free(seen);
    if (rc == 0)
        globfree(&g);
    return st;
}

/* val: a directory names its val.bin (eval, --val-data) rather than its train shards. */
static ts_status resolve(const char *data, char *pattern, size_t len, bool val) {
    char mpath[4300];
    bool found = false, full = false;
    int w;
    if (is_dir(data)) {
        size_t n = strlen(data);
        while (n > 1 && data[n - 1] == '/')
            n--;
        w = snprintf(pattern, len, "%.*s/%s", (int)n, data, val ? "val.bin" : "train_*.bin");
        full = !val;
    } else {
        /* a copy, not snprintf("%s"): GCC's sanitizer build warns it could be NULL */
        const size_t n = strlen(data);
        w = n < len ? (int)n : -1;
        if (w >= 0)
            memcpy(pattern, data, n + 1);
        const char *slash = strrchr(data, '/');
        full = strcmp(slash ? slash + 1 : data, "train_*.bin") == 0;
    }
    if (w < 0 || (size_t)w >= len)
        return ts_error(TS_ERR_INVALID_ARG, "--data path too long: %s", data);
    TS_CHECK(ts_data_manifest_find(data, mpath, sizeof(mpath), &found));
    if (!found && is_dir(data))
        return ts_error(TS_ERR_INVALID_ARG,
                        "--data %s is a directory without %s: prepare it with `tessera prepare` "
                        "or give a glob of its shards",
                        data, TS_DATA_MANIFEST_NAME);
    if (!found)
        return TS_OK;
    struct ts_data_manifest m;
    ts_data_manifest_init(&m);
    TS_CHECK(ts_data_manifest_read(&m, mpath));
    ts_status st = TS_OK;
    if (val && is_dir(data) && m.val_tokens == 0)
        st = ts_error(TS_ERR_INVALID_ARG,
                      "%s holds no validation split (%s says 0 val tokens: prepared with "
                      "--val-fraction 0?); give a glob of shards to evaluate on",
                      data, mpath);
    else if (m.num_shards > 0 || m.train_tokens == 0) /* version 1 manifests list no shards */
        st = check_against(&m, mpath, pattern, full);
    ts_data_manifest_deinit(&m);
    return st;
}

ts_status ts_data_resolve(const char *data, char *pattern, size_t len) {
    return resolve(data, pattern, len, false);
}

ts_status ts_data_resolve_val(const char *data, char *pattern, size_t len) {
    return resolve(data, pattern, len, true);
}
