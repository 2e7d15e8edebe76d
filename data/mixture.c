/* mixture.c: --data as one dataset or a weighted mixture (mixture.h): the spelling, the
 * canonical text a run records, and the loader built from it. */
#include "data/mixture.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "data/data_manifest.h"
#include "kernels/fs.h"

bool ts_data_is_mix(const char *data) { return data != NULL && strchr(data, '\n') != NULL; }

void ts_data_mix_deinit(struct ts_data_mix *m) {
    for (int i = 0; i < m->n; i++)
        free(m->path[i]);
    memset(m, 0, sizeof(*m));
}

/* A weight: a plain decimal number (digits, one '.', an exponent), finite and > 0. */
static ts_status parse_weight(const char *text, const char *spec, double *w) {
    char *end = NULL;
    const bool plain = (text[0] >= '0' && text[0] <= '9') || text[0] == '.';
    const double v = plain ? strtod(text, &end) : 0;
    if (!plain || end == text || *end != '\0' || !isfinite(v))
        return ts_error(TS_ERR_INVALID_ARG,
                        "--data %s: the weight '%s' is not a number (a mixture is --data "
                        "PATH:WEIGHT, repeated, e.g. --data web/:0.7 --data code/:0.3)",
                        spec, text);
    if (!(v > 0))
        return ts_error(TS_ERR_INVALID_ARG, "--data %s: the weight must be > 0, got %s", spec,
                        text);
    *w = v;
    return TS_OK;
}

/* One "PATH:WEIGHT" of spec[0..len) into m's next source. */
static ts_status add_source(struct ts_data_mix *m, const char *spec, size_t len) {
    char *s = malloc(len + 1);
    if (s == NULL)
        return ts_error(TS_ERR_OOM, "out of memory reading --data");
    memcpy(s, spec, len);
    s[len] = '\0';
    ts_status st = TS_OK;
    char *colon = strrchr(s, ':');
    if (m->n == TS_LOADER_MAX_SOURCES)
        st = ts_error(TS_ERR_INVALID_ARG, "--data: a mixture has at most %d sources",
                      TS_LOADER_MAX_SOURCES);
    else if (colon == NULL)
        st = ts_error(TS_ERR_INVALID_ARG,
                      "--data %s: a repeated --data is a mixture, and each source needs a "
                      "weight: --data PATH:WEIGHT (e.g. --data web/:0.7 --data code/:0.3)",
                      s);
    else if (colon == s)
        st = ts_error(TS_ERR_INVALID_ARG, "--data %s: the path before the weight is empty", s);
    if (st == TS_OK) {
        double w = 0;
        st = parse_weight(colon + 1, s, &w);
        *colon = '\0';
        m->path[m->n] = s;
        m->weight[m->n] = w;
        if (st == TS_OK) {
            m->n++;
            return TS_OK;
        }
    }
    free(s);
    return st;
}

ts_status ts_data_mix_parse(const char *text, struct ts_data_mix *m) {
    memset(m, 0, sizeof(*m));
    if (text == NULL || text[0] == '\0')
        return ts_error(TS_ERR_INVALID_ARG, "--data is empty");
    if (!ts_data_is_mix(text)) {
        m->path[0] = strdup(text);
        if (m->path[0] == NULL)
            return ts_error(TS_ERR_OOM, "out of memory reading --data");
        m->weight[0] = 1.0;
        m->n = 1;
        return TS_OK;
    }
    for (const char *line = text; *line != '\0';) {
        const char *nl = strchr(line, '\n');
        const size_t len = nl ? (size_t)(nl - line) : strlen(line);
        ts_status st = add_source(m, line, len);
        if (st != TS_OK) {
            ts_data_mix_deinit(m);
            return st;
        }
        line += len + (nl ? 1 : 0);
    }
    if (m->n < 2) {
        ts_data_mix_deinit(m);
        return ts_error(TS_ERR_INVALID_ARG, "--data: a mixture needs two or more sources");
    }
    return TS_OK;
}

ts_status ts_data_mix_format(const struct ts_data_mix *m, char *text, size_t len) {
    if (m->n == 1)
        return ts_path_fmt(text, len, "%s", m->path[0]);
    size_t at = 0;
    text[0] = '\0';
    for (int i = 0; i < m->n; i++) {
        const int w =
            snprintf(text + at, len - at, "%s%s:%.9g", i ? "\n" : "", m->path[i], m->weight[i]);
        if (w < 0 || (size_t)w >= len - at)
            return ts_error(TS_ERR_INVALID_ARG, "--data: the mixture is longer than %zu bytes",
                            len - 1);
        at += (size_t)w;
    }
    return TS_OK;
}

ts_status ts_data_mix_from_args(const char *const *args, int n, char *text, size_t len) {
    if (n < 1)
        return ts_error(TS_ERR_INVALID_ARG, "--data is required");
    if (n == 1 && strchr(args[0], '\n') != NULL) /* it would read back as a mixture */
        return ts_error(TS_ERR_INVALID_ARG, "--data: a path with a newline in it is not supported");
    if (n == 1)
        return ts_path_fmt(text, len, "%s", args[0]);
    struct ts_data_mix m;
    memset(&m, 0, sizeof(m));
    ts_status st = TS_OK;
    for (int i = 0; i < n && st == TS_OK; i++) {
        if (strchr(args[i], '\n') != NULL)
            st = ts_error(TS_ERR_INVALID_ARG, "--data: a mixture source has a newline in it");
        else
            st = add_source(&m, args[i], strlen(args[i]));
    }
    if (st == TS_OK)
        st = ts_data_mix_format(&m, text, len);
    ts_data_mix_deinit(&m);
    return st;
}

ts_status ts_data_mix_resolve(struct ts_data_mix *m) {
    char pattern[TS_PATH_MAX];
    for (int i = 0; i < m->n; i++) {
        TS_CHECK(ts_data_resolve(m->path[i], pattern, sizeof(pattern)));
        char *copy = strdup(pattern);
        if (copy == NULL)
            return ts_error(TS_ERR_OOM, "out of memory reading --data");
        free(m->path[i]);
        m->path[i] = copy;
    }
    return TS_OK;
}

ts_status ts_data_open(ts_loader_t **out, const char *data, int T, int vocab_size) {
    *out = NULL;
    struct ts_data_mix m;
    TS_CHECK(ts_data_mix_parse(data, &m));
    ts_status st = ts_data_mix_resolve(&m);
    if (st == TS_OK)
        st = m.n == 1 ? ts_loader_create(out, m.path[0], T, vocab_size)
                      : ts_loader_create_mix(out, (const char *const *)m.path, m.weight, m.n, T,
                                             vocab_size);
    ts_data_mix_deinit(&m);
    return st;
}

ts_status ts_data_vocab(const char *data, bool given, bool exact, int *vocab_size) {
    struct ts_data_mix m;
    TS_CHECK(ts_data_mix_parse(data, &m));
    ts_status st = TS_OK;
    int first = -1;
    struct ts_data_manifest seen, mf;
    ts_data_manifest_init(&seen);
    ts_data_manifest_init(&mf);
    char mpath[TS_PATH_MAX], first_path[TS_PATH_MAX] = "";
    for (int i = 0; i < m.n && st == TS_OK; i++) {
        bool found = false;
        st = ts_data_manifest_find(m.path[i], mpath, sizeof(mpath), &found);
        if (st != TS_OK || !found)
            continue;
        if (first < 0) {
            st = ts_data_manifest_read(&seen, mpath);
            first = i;
            snprintf(first_path, sizeof(first_path), "%s", mpath);
            continue;
        }
        st = ts_data_manifest_read(&mf, mpath);
        if (st == TS_OK &&
            (mf.vocab_size != seen.vocab_size || strcmp(mf.vocab_sha256, seen.vocab_sha256) != 0))
            st = ts_error(TS_ERR_INVALID_ARG,
                          "the mixture's sources were prepared with different vocabularies: "
                          "%s says tokenizer %s (%d tokens), %s says %s (%d tokens)",
                          first_path, seen.tokenizer, seen.vocab_size, mpath, mf.tokenizer,
                          mf.vocab_size);
    }
    if (st == TS_OK && first >= 0)
        st = ts_data_manifest_vocab(m.path[first], given, exact, vocab_size);
    ts_data_manifest_deinit(&mf);
    ts_data_manifest_deinit(&seen);
    ts_data_mix_deinit(&m);
    return st;
}
