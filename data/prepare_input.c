/* prepare_input.c: input streams for prepare: plain, gzip (zlib) and zstd, by magic bytes
 * (prepare_input.h).
 *
 * Raw bytes are read in blocks of RAW_BYTES; each block is hashed as it is read, so a source's
 * sha256 costs no second pass. Concatenated gzip members (what `cat a.gz b.gz` gives) and
 * concatenated zstd frames are read through, as gzip and zstd themselves do. */
#include "data/prepare_input.h"

#include <errno.h>
#include <fcntl.h>
#include <glob.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>
#include <zstd.h>

#include "data/sha256.h"

#define RAW_BYTES (1u << 20)

struct ts_prep_input {
    char path[4096];
    int fd;
    bool own_fd;
    enum ts_prep_codec codec;
    int64_t raw_bytes, raw_size;
    struct ts_sha256 sha;
    uint8_t *raw; /* RAW_BYTES */
    size_t raw_pos, raw_len;
    bool raw_eof;
    bool stream_done; /* the current gzip member or zstd frame ended */
    z_stream z;
    bool z_init;
    ZSTD_DStream *zs;
};

/* Refills the raw buffer when it is empty; *eof at the end of the file. */
static ts_status refill(ts_prep_input_t *in) {
    if (in->raw_pos < in->raw_len || in->raw_eof)
        return TS_OK;
    ssize_t got;
    do
        got = read(in->fd, in->raw, RAW_BYTES);
    while (got < 0 && errno == EINTR);
    if (got < 0)
        return ts_error(TS_ERR_IO, "cannot read %s: %s", in->path, strerror(errno));
    in->raw_pos = 0;
    in->raw_len = (size_t)got;
    in->raw_eof = got == 0;
    in->raw_bytes += got;
    ts_sha256_update(&in->sha, in->raw, (size_t)got);
    return TS_OK;
}

ts_status ts_prep_input_open(ts_prep_input_t **out, const char *path) {
    *out = NULL;
    if (strlen(path) >= 4096)
        return ts_error(TS_ERR_INVALID_ARG, "input path too long: %.64s...", path);
    ts_prep_input_t *in = calloc(1, sizeof(*in));
    if (in == NULL || (in->raw = malloc(RAW_BYTES)) == NULL) {
        free(in);
        return ts_error(TS_ERR_OOM, "out of memory opening %s", path);
    }
    /* a copy, not snprintf: GCC's sanitizer build cannot see that the name is never NULL */
    const char *name = strcmp(path, "-") == 0 ? "standard input" : path;
    memcpy(in->path, name, strlen(name) + 1); /* < 4096 bytes, checked above */
    ts_sha256_init(&in->sha);
    in->raw_size = -1;
    ts_status st = TS_OK;
    if (strcmp(path, "-") == 0) {
        in->fd = STDIN_FILENO;
    } else {
        in->fd = open(path, O_RDONLY | O_CLOEXEC);
        if (in->fd < 0) {
            st = ts_error(TS_ERR_IO, "cannot open %s: %s", path, strerror(errno));
            free(in->raw);
            free(in);
            return st;
        }
        in->own_fd = true;
        struct stat sb;
        if (fstat(in->fd, &sb) == 0 && S_ISREG(sb.st_mode))
            in->raw_size = (int64_t)sb.st_size;
        else if (fstat(in->fd, &sb) == 0 && S_ISDIR(sb.st_mode))
            st = ts_error(TS_ERR_INVALID_ARG, "%s is a directory, not an input file", path);
    }
    /* Magic bytes: gzip 1f 8b, zstd 28 b5 2f fd. A short first read (a pipe) is topped up. */
    while (st == TS_OK && !in->raw_eof && in->raw_len < 4) {
        ssize_t got = read(in->fd, in->raw + in->raw_len, RAW_BYTES - in->raw_len);
        if (got < 0 && errno == EINTR)
            continue;
        if (got < 0)
            st = ts_error(TS_ERR_IO, "cannot read %s: %s", in->path, strerror(errno));
        else if (got == 0)
            in->raw_eof = true;
        else {
            ts_sha256_update(&in->sha, in->raw + in->raw_len, (size_t)got);
            in->raw_len += (size_t)got;
            in->raw_bytes += got;
        }
    }
    const uint8_t *m = in->raw;
    if (st == TS_OK && in->raw_len >= 2 && m[0] == 0x1f && m[1] == 0x8b) {
        in->codec = TS_PREP_GZIP;
        if (inflateInit2(&in->z, 15 + 16) != Z_OK)
            st = ts_error(TS_ERR_OOM, "cannot start zlib for %s", in->path);
        in->z_init = st == TS_OK;
    } else if (st == TS_OK && in->raw_len >= 4 && m[0] == 0x28 && m[1] == 0xb5 && m[2] == 0x2f &&
               m[3] == 0xfd) {
        in->codec = TS_PREP_ZSTD;
        in->zs = ZSTD_createDStream();
        if (in->zs == NULL)
            st = ts_error(TS_ERR_OOM, "cannot start zstd for %s", in->path);
    }
    if (st != TS_OK) {
        ts_prep_input_destroy(in);
        return st;
    }
    *out = in;
    return TS_OK;
}

void ts_prep_input_destroy(ts_prep_input_t *in) {
    if (in == NULL)
        return;
    if (in->z_init)
        inflateEnd(&in->z);
    ZSTD_freeDStream(in->zs);
    if (in->own_fd)
        close(in->fd);
    free(in->raw);
    free(in);
}

static ts_status read_gzip(ts_prep_input_t *in, uint8_t *buf, size_t cap, size_t *got) {
    *got = 0;
    while (*got == 0) {
        TS_CHECK(refill(in));
        if (in->raw_pos == in->raw_len) {
            if (!in->stream_done)
                return ts_error(TS_ERR_FORMAT, "%s: truncated gzip stream", in->path);
            return TS_OK;
        }
        if (in->stream_done) { /* another member follows */
            if (inflateReset(&in->z) != Z_OK)
                return ts_error(TS_ERR_FORMAT, "%s: cannot restart zlib", in->path);
            in->stream_done = false;
        }
        in->z.next_in = in->raw + in->raw_pos;
        in->z.avail_in = (uInt)(in->raw_len - in->raw_pos);
        in->z.next_out = buf;
        in->z.avail_out = (uInt)cap;
        int rc = inflate(&in->z, Z_NO_FLUSH);
        in->raw_pos = in->raw_len - in->z.avail_in;
        *got = cap - in->z.avail_out;
        if (rc == Z_STREAM_END)
            in->stream_done = true;
        else if (rc != Z_OK && rc != Z_BUF_ERROR)
            return ts_error(TS_ERR_FORMAT, "%s: corrupt gzip data (%s)", in->path,
                            in->z.msg ? in->z.msg : "zlib error");
    }
    return TS_OK;
}

static ts_status read_zstd(ts_prep_input_t *in, uint8_t *buf, size_t cap, size_t *got) {
    *got = 0;
    while (*got == 0) {
        TS_CHECK(refill(in));
        if (in->raw_pos == in->raw_len) {
            if (!in->stream_done)
                return ts_error(TS_ERR_FORMAT, "%s: truncated zstd stream", in->path);
            return TS_OK;
        }
        ZSTD_inBuffer ib = {in->raw, in->raw_len, in->raw_pos};
        ZSTD_outBuffer ob = {buf, cap, 0};
        size_t rc = ZSTD_decompressStream(in->zs, &ob, &ib);
        if (ZSTD_isError(rc))
            return ts_error(TS_ERR_FORMAT, "%s: corrupt zstd data (%s)", in->path,
                            ZSTD_getErrorName(rc));
        in->raw_pos = ib.pos;
        *got = ob.pos;
        in->stream_done = rc == 0; /* a frame ended; more may follow */
    }
    return TS_OK;
}

ts_status ts_prep_input_read(ts_prep_input_t *in, uint8_t *buf, size_t cap, size_t *got) {
    *got = 0;
    if (in->codec == TS_PREP_GZIP)
        return read_gzip(in, buf, cap, got);
    if (in->codec == TS_PREP_ZSTD)
        return read_zstd(in, buf, cap, got);
    TS_CHECK(refill(in));
    size_t n = in->raw_len - in->raw_pos < cap ? in->raw_len - in->raw_pos : cap;
    memcpy(buf, in->raw + in->raw_pos, n);
    in->raw_pos += n;
    *got = n;
    return TS_OK;
}

enum ts_prep_codec ts_prep_input_codec(const ts_prep_input_t *in) { return in->codec; }
int64_t ts_prep_input_raw_bytes(const ts_prep_input_t *in) { return in->raw_bytes; }
int64_t ts_prep_input_raw_size(const ts_prep_input_t *in) { return in->raw_size; }

void ts_prep_input_sha256(ts_prep_input_t *in, char *hex) {
    struct ts_sha256 copy = in->sha;
    ts_sha256_final(&copy, hex);
}

/* ---- --input patterns ---- */

void ts_prep_paths_free(char **paths, int n) {
    for (int i = 0; paths != NULL && i < n; i++)
        free(paths[i]);
    free(paths);
}

static ts_status push_path(char ***paths, int *n, int *cap, const char *p) {
    if (*n == *cap) {
        int nc = *cap ? 2 * *cap : 16;
        char **np = realloc(*paths, (size_t)nc * sizeof(*np));
        if (np == NULL)
            return ts_error(TS_ERR_OOM, "out of memory listing inputs");
        *paths = np;
        *cap = nc;
    }
    if (((*paths)[*n] = strdup(p)) == NULL)
        return ts_error(TS_ERR_OOM, "out of memory listing inputs");
    (*n)++;
    return TS_OK;
}

ts_status ts_prep_expand_inputs(const char *const *patterns, int n, char ***paths, int *npaths) {
    *paths = NULL;
    *npaths = 0;
    int cap = 0;
    ts_status st = TS_OK;
    for (int i = 0; i < n && st == TS_OK; i++) {
        const char *p = patterns[i];
        if (strpbrk(p, "*?[") == NULL) {
            st = push_path(paths, npaths, &cap, p);
            continue;
        }
        glob_t g;
        int rc = glob(p, GLOB_ERR, NULL, &g);
        if (rc == GLOB_NOMATCH || (rc == 0 && g.gl_pathc == 0))
            st = ts_error(TS_ERR_IO, "--input '%s' matches no file", p);
        else if (rc != 0)
            st = ts_error(TS_ERR_IO, "cannot expand --input '%s'", p);
        for (size_t k = 0; rc == 0 && k < g.gl_pathc && st == TS_OK; k++)
            st = push_path(paths, npaths, &cap, g.gl_pathv[k]);
        if (rc == 0 || rc == GLOB_NOMATCH)
            globfree(&g);
    }
    if (st != TS_OK) {
        ts_prep_paths_free(*paths, *npaths);
        *paths = NULL;
        *npaths = 0;
    }
    return st;
}
