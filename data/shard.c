/* shard.c: llm.c token shards, mapped read-only, and the window loader over them.
 *
 * Everything about a shard is checked when it is opened (header, length, every id below the
 * vocabulary), so a bad file fails before the first step with a message naming it. The loader
 * then only does index arithmetic: a global window index maps through the epoch's order (file
 * order, or a seeded Feistel permutation) to a window, and the window to (shard, window in
 * shard) through a prefix sum of per-shard window counts. */
#include <errno.h>
#include <fcntl.h>
#include <glob.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "data/shard.h"

#include "kernels/fs.h"

#define HEADER_BYTES ((int64_t)TS_SHARD_HEADER_INTS * (int64_t)sizeof(int32_t))

/* ---- one shard ---- */

static void shard_reset(struct ts_shard *s) {
    memset(s, 0, sizeof(*s));
    s->fd = -1;
}

ts_status ts_shard_open(struct ts_shard *s, const char *path, int vocab_size) {
    shard_reset(s);
    if (path == NULL || strlen(path) >= sizeof(s->path))
        return ts_error(TS_ERR_INVALID_ARG, "shard open: path is NULL or too long");
    if (vocab_size < 1 || vocab_size > 65536)
        return ts_error(TS_ERR_INVALID_ARG, "%s: vocab size %d does not fit uint16 token ids", path,
                        vocab_size);
    snprintf(s->path, sizeof(s->path), "%s", path);
    ts_status st;
    int64_t size = 0;
    /* a regular file only: a directory (mmap said "No such device") or a FIFO (blocked) is
     * refused naming what it is */
    st = ts_fs_open_regular(path, &s->fd, &size);
    if (st != TS_OK) {
        ts_error_wrap(st, "token shard");
        goto fail;
    }
    if (size < HEADER_BYTES) {
        st = ts_error(TS_ERR_FORMAT,
                      "%s: not a token shard (%lld bytes, shorter than the %lld-byte header)", path,
                      (long long)size, (long long)HEADER_BYTES);
        goto fail;
    }
    s->map = mmap(NULL, (size_t)size, PROT_READ, MAP_SHARED, s->fd, 0);
    if (s->map == MAP_FAILED) {
        s->map = NULL;
        st = ts_error(TS_ERR_IO, "cannot map %s: %s", path, strerror(errno));
        goto fail;
    }
    s->map_bytes = (uint64_t)size;

    int32_t header[TS_SHARD_HEADER_INTS];
    memcpy(header, s->map, sizeof(header));
    if (header[0] != TS_SHARD_MAGIC) {
        st = ts_error(TS_ERR_FORMAT, "%s: not a token shard (magic %d, expected %d)", path,
                      (int)header[0], TS_SHARD_MAGIC);
        goto fail;
    }
    if (header[1] != TS_SHARD_VERSION) {
        st = ts_error(TS_ERR_FORMAT, "%s: token shard version %d, this build reads version %d",
                      path, (int)header[1], TS_SHARD_VERSION);
        goto fail;
    }
    const int64_t count = header[2];
    const int64_t held = (size - HEADER_BYTES) / (int64_t)sizeof(uint16_t);
    if (count < 0) {
        st = ts_error(TS_ERR_FORMAT, "%s: header says %lld tokens", path, (long long)count);
        goto fail;
    }
    if (held < count) {
        st = ts_error(TS_ERR_FORMAT, "%s: truncated: header says %lld tokens but file holds %lld",
                      path, (long long)count, (long long)held);
        goto fail;
    }
    if (size != HEADER_BYTES + count * (int64_t)sizeof(uint16_t)) {
        st = ts_error(TS_ERR_FORMAT,
                      "%s: header says %lld tokens but the file is %lld bytes (expected %lld)",
                      path, (long long)count, (long long)size,
                      (long long)(HEADER_BYTES + count * (int64_t)sizeof(uint16_t)));
        goto fail;
    }
    s->tokens = (const uint16_t *)((const char *)s->map + HEADER_BYTES);
    s->num_tokens = count;
    for (int64_t i = 0; i < count; i++) {
        if (s->tokens[i] >= vocab_size) {
            st = ts_error(TS_ERR_FORMAT, "%s: token id %d at position %lld is >= vocab size %d",
                          path, (int)s->tokens[i], (long long)i, vocab_size);
            goto fail;
        }
    }
    return TS_OK;
fail:
    ts_shard_close(s);
    return st;
}

void ts_shard_close(struct ts_shard *s) {
    if (s == NULL)
        return;
    if (s->map != NULL)
        munmap(s->map, (size_t)s->map_bytes);
    if (s->fd >= 0)
        close(s->fd);
    shard_reset(s);
}

ts_status ts_shard_write(const char *path, const uint16_t *tokens, int64_t n) {
    if (path == NULL || (tokens == NULL && n > 0) || n < 0 || n > INT32_MAX)
        return ts_error(TS_ERR_INVALID_ARG, "shard write: bad arguments (n = %lld)", (long long)n);
    int32_t header[TS_SHARD_HEADER_INTS] = {TS_SHARD_MAGIC, TS_SHARD_VERSION, (int32_t)n};
    FILE *f = fopen(path, "wb");
    if (f == NULL)
        return ts_error(TS_ERR_IO, "cannot create %s: %s", path, strerror(errno));
    bool ok = fwrite(header, sizeof(header), 1, f) == 1;
    if (ok && n > 0)
        ok = fwrite(tokens, sizeof(uint16_t), (size_t)n, f) == (size_t)n;
    const int saved = errno;
    if (fclose(f) != 0 || !ok)
        return ts_error(TS_ERR_IO, "cannot write %s: %s", path, strerror(ok ? errno : saved));
    return TS_OK;
}

/* ---- the order of shard names ---- */

/* Names compare character by character, except that runs of digits compare as numbers
 * (leading zeros ignored, then the longer run first among equal numbers), so train_999.bin
 * comes before train_1000.bin; equal names under that rule fall back to strcmp. */
int ts_shard_name_cmp(const char *a, const char *b) {
    const char *x = a, *y = b;
    while (*x != '\0' && *y != '\0') {
        const bool dx = *x >= '0' && *x <= '9', dy = *y >= '0' && *y <= '9';
        if (!dx || !dy) {
            if (*x != *y)
                return (unsigned char)*x < (unsigned char)*y ? -1 : 1;
            x++;
            y++;
            continue;
        }
        const char *sx = x, *sy = y;
        while (*sx == '0')
            sx++;
        while (*sy == '0')
            sy++;
        const char *ex = sx, *ey = sy;
        while (*ex >= '0' && *ex <= '9')
            ex++;
        while (*ey >= '0' && *ey <= '9')
            ey++;
        if (ex - sx != ey - sy) /* more significant digits: a larger number */
            return ex - sx < ey - sy ? -1 : 1;
        const int c = strncmp(sx, sy, (size_t)(ex - sx));
        if (c != 0)
            return c < 0 ? -1 : 1;
        if (ex - x != ey - y) /* the same number: more leading zeros first */
            return ex - x > ey - y ? -1 : 1;
        x = ex;
        y = ey;
    }
    if (*x != *y)
        return *x == '\0' ? -1 : 1;
    return strcmp(a, b);
}

static int path_cmp(const void *a, const void *b) {
    return ts_shard_name_cmp(*(char *const *)a, *(char *const *)b);
}

void ts_shard_sort_paths(char **paths, size_t n) {
    if (n > 1)
        qsort(paths, n, sizeof(*paths), path_cmp);
}

/* ---- the loader ---- */

struct ts_loader {
    int T;
    /* a mixture: its sources (plain loaders) and weights; 0 sources for a plain loader */
    int num_sources;
    ts_loader_t **sources;
    double weight[TS_LOADER_MAX_SOURCES];  /* normalised to sum 1 */
    uint64_t cut[TS_LOADER_MAX_SOURCES];   /* source s takes draws u < cut[s] (u in [0, 2^53)) */
    int64_t counts[TS_LOADER_MAX_SOURCES]; /* windows each source gave before `position` */
    int num_shards;
    struct ts_shard *shards;
    int64_t *first_window; /* num_shards + 1 prefix sums of windows per shard */
    int64_t position;      /* windows consumed since the start */
    bool shuffle;
    uint64_t seed;
    int half_bits; /* the Feistel network permutes [0, 4^half_bits) >= windows per epoch */
};

/* The directory glob could not read, for the message (glob's callback takes no context). */
static _Thread_local char glob_failed_path[512];
static _Thread_local int glob_failed_errno;

static int glob_failed(const char *path, int err) {
    snprintf(glob_failed_path, sizeof(glob_failed_path), "%s", path);
    glob_failed_errno = err;
    return 1; /* stop: GLOB_ERR would anyway */
}

ts_status ts_loader_create(ts_loader_t **out, const char *pattern, int T, int vocab_size) {
    if (out == NULL)
        return ts_error(TS_ERR_INVALID_ARG, "loader create: out is NULL");
    *out = NULL;
    if (pattern == NULL || T < 1)
        return ts_error(TS_ERR_INVALID_ARG, "loader create: need a pattern and T >= 1 (got %d)", T);
    glob_t gl;
    glob_failed_path[0] = '\0';
    const int rc = glob(pattern, GLOB_ERR, glob_failed, &gl);
    if (rc == GLOB_NOMATCH || (rc == 0 && gl.gl_pathc == 0)) {
        if (rc == 0)
            globfree(&gl);
        return ts_error(TS_ERR_IO, "no files match '%s'", pattern);
    }
    if (rc == GLOB_ABORTED) {
        globfree(&gl);
        return ts_error(TS_ERR_IO, "no files match '%s': cannot read directory %s: %s", pattern,
                        glob_failed_path[0] ? glob_failed_path : "(unknown)",
                        strerror(glob_failed_errno));
    }
    if (rc != 0)
        return ts_error(TS_ERR_OOM, "cannot expand '%s': out of memory", pattern);
    ts_shard_sort_paths(gl.gl_pathv, gl.gl_pathc);

    ts_status st = TS_OK;
    struct ts_loader *l = calloc(1, sizeof(*l));
    if (l == NULL) {
        globfree(&gl);
        return ts_error(TS_ERR_OOM, "loader create: out of memory");
    }
    l->T = T;
    l->shards = calloc(gl.gl_pathc, sizeof(*l->shards));
    l->first_window = calloc(gl.gl_pathc + 1, sizeof(*l->first_window));
    if (l->shards == NULL || l->first_window == NULL) {
        st = ts_error(TS_ERR_OOM, "loader create: out of memory");
        goto fail;
    }
    for (size_t i = 0; i < gl.gl_pathc; i++) {
        struct ts_shard *s = &l->shards[i];
        TS_CHECK_GOTO(ts_shard_open(s, gl.gl_pathv[i], vocab_size), st, fail);
        l->num_shards++;
        if (s->num_tokens < (int64_t)T + 1) {
            st =
                ts_error(TS_ERR_FORMAT, "%s: %lld tokens, fewer than one window of T+1 = %d tokens",
                         s->path, (long long)s->num_tokens, T + 1);
            goto fail;
        }
        l->first_window[i + 1] = l->first_window[i] + (s->num_tokens - 1) / T;
    }
    globfree(&gl);
    *out = l;
    return TS_OK;
fail:
    globfree(&gl);
    ts_loader_destroy(l);
    return st;
}

void ts_loader_destroy(ts_loader_t *l) {
    if (l == NULL)
        return;
    for (int i = 0; i < l->num_sources; i++)
        ts_loader_destroy(l->sources[i]);
    free(l->sources);
    for (int i = 0; i < l->num_shards; i++)
        ts_shard_close(&l->shards[i]);
    free(l->shards);
    free(l->first_window);
    free(l);
}

int ts_loader_num_shards(const ts_loader_t *l) {
    int n = l->num_shards;
    for (int i = 0; i < l->num_sources; i++)
        n += ts_loader_num_shards(l->sources[i]);
    return n;
}
int ts_loader_seq_len(const ts_loader_t *l) { return l->T; }
int64_t ts_loader_num_windows(const ts_loader_t *l) {
    int64_t n = l->first_window[l->num_shards];
    for (int i = 0; i < l->num_sources; i++)
        n += ts_loader_num_windows(l->sources[i]);
    return n;
}

int64_t ts_loader_num_tokens(const ts_loader_t *l) {
    int64_t n = 0;
    for (int i = 0; i < l->num_shards; i++)
        n += l->shards[i].num_tokens;
    for (int i = 0; i < l->num_sources; i++)
        n += ts_loader_num_tokens(l->sources[i]);
    return n;
}

/* The shard holding global window w (0 <= w < num_windows): a binary search of the prefix
 * sums, so a seek costs the same as a step. */
static int shard_of(const ts_loader_t *l, int64_t w) {
    int lo = 0, hi = l->num_shards - 1;
    while (lo < hi) {
        const int mid = (lo + hi + 1) / 2;
        if (l->first_window[mid] <= w)
            lo = mid;
        else
            hi = mid - 1;
    }
    return lo;
}

void ts_loader_set_shuffle(ts_loader_t *l, bool on, uint64_t seed) {
    l->shuffle = on;
    l->seed = seed;
    for (int i = 0; i < l->num_sources; i++) /* each source in the order it would have alone */
        ts_loader_set_shuffle(l->sources[i], on, seed);
    const int64_t n = ts_loader_num_windows(l);
    l->half_bits = 1;
    while (l->half_bits < 31 && ((int64_t)1 << (2 * l->half_bits)) < n)
        l->half_bits++;
}

static uint64_t splitmix64(uint64_t x) {
    x += 0x9e3779b97f4a7c15ull;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

/* A bijection of [0, 4^h) keyed by (seed, epoch): four rounds of a balanced Feistel network. */
static uint64_t feistel(uint64_t x, int h, uint64_t seed, uint64_t epoch) {
    const uint64_t mask = ((uint64_t)1 << h) - 1;
    uint64_t left = x >> h, right = x & mask;
    const uint64_t key = splitmix64(seed ^ splitmix64(epoch + 0x5851f42d4c957f2dull));
    for (uint64_t round = 0; round < 4; round++) {
        const uint64_t f = splitmix64(key + (round << 56) + right) & mask;
        const uint64_t next = left ^ f;
        left = right;
        right = next;
    }
    return (left << h) | right;
}

/* The window of a plain loader that global index g reads. */
static int64_t plain_window_at(const ts_loader_t *l, int64_t g) {
    const int64_t n = l->first_window[l->num_shards];
    if (g < 0)
        g = 0;
    const int64_t i = g % n;
    if (!l->shuffle)
        return i;
    /* Cycle walking: a permutation of the larger power-of-four domain, applied until the
     * value lands in [0, n), restricted to [0, n) is itself a permutation (n > 4^(h-1), so
     * fewer than four applications are expected). */
    uint64_t x = (uint64_t)i;
    do
        x = feistel(x, l->half_bits, l->seed, (uint64_t)(g / n));
    while (x >= (uint64_t)n);
    return (int64_t)x;
}

/* ---- mixtures ---- */

ts_status ts_loader_create_mix(ts_loader_t **out, const char *const *patterns,
                               const double *weights, int n, int T, int vocab_size) {
    if (out == NULL)
        return ts_error(TS_ERR_INVALID_ARG, "loader create: out is NULL");
    *out = NULL;
    if (patterns == NULL || weights == NULL || n < 2 || n > TS_LOADER_MAX_SOURCES)
        return ts_error(TS_ERR_INVALID_ARG, "a data mixture has 2 to %d sources, got %d",
                        TS_LOADER_MAX_SOURCES, n);
    double total = 0;
    for (int i = 0; i < n; i++) {
        if (!(weights[i] > 0) || weights[i] > 1e300)
            return ts_error(TS_ERR_INVALID_ARG, "data mixture: source %s has weight %g, not > 0",
                            patterns[i], weights[i]);
        total += weights[i];
    }
    ts_status st = TS_OK;
    struct ts_loader *l = calloc(1, sizeof(*l));
    if (l == NULL)
        return ts_error(TS_ERR_OOM, "loader create: out of memory");
    l->T = T;
    l->sources = calloc((size_t)n, sizeof(*l->sources));
    l->first_window = calloc(1, sizeof(*l->first_window));
    if (l->sources == NULL || l->first_window == NULL) {
        st = ts_error(TS_ERR_OOM, "loader create: out of memory");
        goto fail;
    }
    double cum = 0;
    for (int i = 0; i < n; i++) {
        TS_CHECK_GOTO(ts_loader_create(&l->sources[i], patterns[i], T, vocab_size), st, fail);
        l->num_sources++;
        l->weight[i] = weights[i] / total;
        cum += weights[i];
        /* thresholds in integers, so the choice is exact arithmetic after this line */
        l->cut[i] = i == n - 1 ? (UINT64_C(1) << 53) : (uint64_t)ldexp(cum / total, 53);
    }
    *out = l;
    return TS_OK;
fail:
    ts_loader_destroy(l);
    return st;
}

int ts_loader_num_sources(const ts_loader_t *l) { return l->num_sources > 0 ? l->num_sources : 1; }

const ts_loader_t *ts_loader_source(const ts_loader_t *l, int i) {
    return l->num_sources > 0 ? l->sources[i] : l;
}

double ts_loader_source_weight(const ts_loader_t *l, int i) {
    return l->num_sources > 0 ? l->weight[i] : 1.0;
}

int ts_loader_source_at(const ts_loader_t *l, int64_t g) {
    if (l->num_sources == 0)
        return 0;
    /* 53 bits of a hash of (seed, g): the draw of global window g, independent of the layout */
    const uint64_t u = splitmix64(splitmix64(l->seed ^ 0x6d69787475726573ull) + (uint64_t)g) >> 11;
    int s = 0;
    while (s < l->num_sources - 1 && u >= l->cut[s])
        s++;
    return s;
}

/* counts (at global index *at) moved on to global index to: every draw in between counted. */
static void scan_counts(const ts_loader_t *l, int64_t at, int64_t to, int64_t *counts) {
    for (int64_t g = at; g < to; g++)
        counts[ts_loader_source_at(l, g)]++;
}

/* The counts at global index g, from the loader's own (forward) or from 0 (backward). */
static void counts_at(const ts_loader_t *l, int64_t g, int64_t *counts) {
    if (g >= l->position) {
        if (counts != l->counts)
            memcpy(counts, l->counts, sizeof(l->counts));
        scan_counts(l, l->position, g, counts);
    } else {
        memset(counts, 0, sizeof(l->counts));
        scan_counts(l, 0, g, counts);
    }
}

void ts_loader_source_counts(const ts_loader_t *l, int64_t *counts) {
    if (l->num_sources == 0)
        counts[0] = l->position;
    else
        memcpy(counts, l->counts, (size_t)l->num_sources * sizeof(*counts));
}

ts_status ts_loader_seek_counts(ts_loader_t *l, int64_t position, const int64_t *counts, int n) {
    if (n != ts_loader_num_sources(l))
        return ts_error(TS_ERR_INVALID_ARG,
                        "loader state: %d source counts for a loader of %d source(s)", n,
                        ts_loader_num_sources(l));
    int64_t sum = 0;
    for (int i = 0; i < n; i++) {
        if (counts[i] < 0 || counts[i] > position)
            return ts_error(TS_ERR_INVALID_ARG, "loader state: source %d count %lld out of range",
                            i, (long long)counts[i]);
        sum += counts[i];
    }
    if (sum != position || position < 0)
        return ts_error(TS_ERR_INVALID_ARG,
                        "loader state: source counts sum to %lld, not the position %lld",
                        (long long)sum, (long long)position);
    l->position = position;
    if (l->num_sources > 0)
        memcpy(l->counts, counts, (size_t)n * sizeof(*counts));
    return TS_OK;
}

/* ---- reading ---- */

int64_t ts_loader_window_at(const ts_loader_t *l, int64_t g) {
    if (l->num_sources == 0)
        return plain_window_at(l, g);
    /* a mixture: the window in the concatenation of its sources */
    int64_t counts[TS_LOADER_MAX_SOURCES];
    counts_at(l, g < 0 ? 0 : g, counts);
    const int s = ts_loader_source_at(l, g < 0 ? 0 : g);
    int64_t before = 0;
    for (int i = 0; i < s; i++)
        before += ts_loader_num_windows(l->sources[i]);
    return before + plain_window_at(l->sources[s], counts[s]);
}

static void copy_window(const ts_loader_t *l, int64_t w, int32_t *in, int32_t *tg) {
    const int si = shard_of(l, w);
    const int T = l->T;
    const uint16_t *src = l->shards[si].tokens + (w - l->first_window[si]) * T;
    for (int t = 0; t < T; t++) {
        in[t] = src[t];
        tg[t] = src[t + 1];
    }
}

/* Window w of the concatenation of a mixture's sources (eval's file order). */
static void copy_mix_window(const ts_loader_t *l, int64_t w, int32_t *in, int32_t *tg) {
    int s = 0;
    while (w >= ts_loader_num_windows(l->sources[s])) {
        w -= ts_loader_num_windows(l->sources[s]);
        s++;
    }
    copy_window(l->sources[s], w, in, tg);
}

ts_status ts_loader_read(const ts_loader_t *l, int64_t first, int B, bool in_order, int32_t *inputs,
                         int32_t *targets) {
    if (B < 1 || inputs == NULL || targets == NULL || first < 0)
        return ts_error(TS_ERR_INVALID_ARG,
                        "loader read: need B >= 1 (got %d), first >= 0 and buffers", B);
    const int64_t nw = ts_loader_num_windows(l);
    int64_t counts[TS_LOADER_MAX_SOURCES];
    if (l->num_sources > 0 && !in_order)
        counts_at(l, first, counts);
    for (int b = 0; b < B; b++) {
        const int64_t g = first + b;
        int32_t *in = inputs + (int64_t)b * l->T, *tg = targets + (int64_t)b * l->T;
        if (l->num_sources == 0) {
            copy_window(l, in_order ? g % nw : plain_window_at(l, g), in, tg);
        } else if (in_order) {
            copy_mix_window(l, g % nw, in, tg);
        } else {
            /* draw g goes to source s, which reads its own next window in its own order */
            const int s = ts_loader_source_at(l, g);
            const ts_loader_t *src = l->sources[s];
            copy_window(src, plain_window_at(src, counts[s]++), in, tg);
        }
    }
    return TS_OK;
}

ts_status ts_loader_next(ts_loader_t *l, int B, int32_t *inputs, int32_t *targets) {
    if (B < 1 || inputs == NULL || targets == NULL)
        return ts_error(TS_ERR_INVALID_ARG, "loader next: need B >= 1 (got %d) and buffers", B);
    TS_CHECK(ts_loader_read(l, l->position, B, false, inputs, targets));
    ts_loader_seek(l, l->position + B);
    return TS_OK;
}

int64_t ts_loader_position(const ts_loader_t *l) { return l->position; }

void ts_loader_seek(ts_loader_t *l, int64_t windows_consumed) {
    const int64_t p = windows_consumed > 0 ? windows_consumed : 0;
    if (l->num_sources > 0)
        counts_at(l, p, l->counts);
    l->position = p;
}
