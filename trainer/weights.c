/* weights.c: model.bin, a header and every parameter as fp32 in table order.
 *
 * Saves go to "<path>.tmp", are flushed and fsync'ed, then renamed over path (and the directory
 * fsync'ed), so a reader sees the old file or the new one, never half of one. */
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "kernels/fs.h"
#include "trainer/weights.h"

#define HEADER_INTS 256

#if !defined(__BYTE_ORDER__) || __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "model.bin is little-endian; this build assumes a little-endian host"
#endif

static void fill_header(int32_t *h, const struct ts_gpt_config *c) {
    memset(h, 0, HEADER_INTS * sizeof(int32_t));
    h[0] = TS_WEIGHTS_MAGIC;
    h[1] = TS_WEIGHTS_VERSION;
    h[2] = c->max_seq_len;
    h[3] = c->vocab_size;
    h[4] = c->padded_vocab_size;
    h[5] = c->num_layers;
    h[6] = c->num_heads;
    h[7] = c->channels;
}

/* Best effort: makes the rename itself durable. */
static void fsync_dir_of(const char *path) {
    char *copy = strdup(path);
    if (copy == NULL)
        return;
    const int fd = open(dirname(copy), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd >= 0) {
        (void)fsync(fd);
        close(fd);
    }
    free(copy);
}

ts_status ts_weights_save(ts_gpt_t *gpt, const char *path) {
    if (gpt == NULL || path == NULL)
        return ts_error(TS_ERR_INVALID_ARG, "weights save: model and path are required");
    const int64_t n = ts_gpt_num_params(gpt);
    ts_status st = TS_OK;
    FILE *f = NULL;
    char *tmp = malloc(strlen(path) + 5);
    float *host = malloc((size_t)n * sizeof(float));
    if (tmp == NULL || host == NULL) {
        st = ts_error(TS_ERR_OOM, "weights save %s: out of memory", path);
        goto exit;
    }
    sprintf(tmp, "%s.tmp", path);
    TS_CHECK_GOTO(ts_gpt_params_to_host(gpt, host), st, exit);

    int32_t header[HEADER_INTS];
    fill_header(header, ts_gpt_config(gpt));
    f = fopen(tmp, "wb");
    if (f == NULL) {
        st = ts_error(TS_ERR_IO, "cannot create %s: %s", tmp, strerror(errno));
        goto exit;
    }
    if (fwrite(header, sizeof(header), 1, f) != 1 ||
        fwrite(host, sizeof(float), (size_t)n, f) != (size_t)n || fflush(f) != 0 ||
        fsync(fileno(f)) != 0) {
        st = ts_error(TS_ERR_IO, "cannot write %s: %s", tmp, strerror(errno));
        goto exit;
    }
    const int rc = fclose(f);
    f = NULL;
    if (rc != 0) {
        st = ts_error(TS_ERR_IO, "cannot write %s: %s", tmp, strerror(errno));
        goto exit;
    }
    if (rename(tmp, path) != 0) {
        st = ts_error(TS_ERR_IO, "cannot rename %s to %s: %s", tmp, path, strerror(errno));
        goto exit;
    }
    fsync_dir_of(path);
exit:
    if (f != NULL)
        fclose(f);
    if (st != TS_OK && tmp != NULL)
        unlink(tmp);
    free(tmp);
    free(host);
    return st;
}

/* Opens path (a regular file only) and reads and checks its header and its size against the
 * parameter count the header implies, before anything is allocated; on success *out is
 * positioned at the data. */
static ts_status open_checked(const char *path, FILE **out, struct ts_gpt_config *cfg) {
    *out = NULL;
    int fd;
    int64_t size;
    TS_CHECK(ts_fs_open_regular(path, &fd, &size));
    FILE *f = fdopen(fd, "rb");
    if (f == NULL) {
        close(fd);
        return ts_error(TS_ERR_IO, "cannot open %s: %s", path, strerror(errno));
    }
    int32_t h[HEADER_INTS];
    if (fread(h, sizeof(h), 1, f) != 1) {
        fclose(f);
        return ts_error(TS_ERR_FORMAT, "%s: not a model file (shorter than its header)", path);
    }
    if (h[0] != TS_WEIGHTS_MAGIC) {
        fclose(f);
        return ts_error(TS_ERR_FORMAT, "%s: not a model file (magic %d, expected %d)", path,
                        (int)h[0], TS_WEIGHTS_MAGIC);
    }
    if (h[1] != TS_WEIGHTS_VERSION) {
        fclose(f);
        return ts_error(TS_ERR_FORMAT, "%s: model file version %d, this build reads version %d",
                        path, (int)h[1], TS_WEIGHTS_VERSION);
    }
    struct ts_gpt_config c = {
        .max_seq_len = h[2],
        .vocab_size = h[3],
        .num_layers = h[5],
        .num_heads = h[6],
        .channels = h[7],
    };
    int64_t n = 0;
    ts_status st = ts_gpt_config_finish(&c);
    if (st == TS_OK && c.padded_vocab_size != h[4])
        st =
            ts_error(TS_ERR_FORMAT, "padded vocab %d, expected %d", (int)h[4], c.padded_vocab_size);
    if (st == TS_OK)
        st = ts_gpt_config_num_params(&c, &n);
    if (st != TS_OK) {
        fclose(f);
        return ts_error_wrap(TS_ERR_FORMAT, "%s: bad model config", path);
    }
    /* n <= 2^47 within the model's limits: the byte count cannot overflow */
    const int64_t want = (int64_t)sizeof(h) + n * (int64_t)sizeof(float);
    if (size != want) {
        fclose(f);
        return ts_error(TS_ERR_FORMAT,
                        "%s: %s: %lld bytes, but its header (T=%d V=%d L=%d NH=%d C=%d) needs "
                        "%lld",
                        path, size < want ? "truncated" : "trailing bytes", (long long)size,
                        c.max_seq_len, c.vocab_size, c.num_layers, c.num_heads, c.channels,
                        (long long)want);
    }
    *cfg = c;
    *out = f;
    return TS_OK;
}

ts_status ts_weights_read_config(const char *path, struct ts_gpt_config *cfg) {
    if (path == NULL || cfg == NULL)
        return ts_error(TS_ERR_INVALID_ARG, "weights read config: path and cfg are required");
    FILE *f;
    TS_CHECK(open_checked(path, &f, cfg));
    fclose(f);
    return TS_OK;
}

static bool config_equal(const struct ts_gpt_config *a, const struct ts_gpt_config *b) {
    return a->max_seq_len == b->max_seq_len && a->vocab_size == b->vocab_size &&
           a->padded_vocab_size == b->padded_vocab_size && a->num_layers == b->num_layers &&
           a->num_heads == b->num_heads && a->channels == b->channels;
}

ts_status ts_weights_load(ts_gpt_t *gpt, const char *path) {
    if (gpt == NULL || path == NULL)
        return ts_error(TS_ERR_INVALID_ARG, "weights load: model and path are required");
    struct ts_gpt_config fc;
    FILE *f;
    TS_CHECK(open_checked(path, &f, &fc));
    const struct ts_gpt_config *mc = ts_gpt_config(gpt);
    if (!config_equal(&fc, mc)) {
        fclose(f);
        return ts_error(TS_ERR_INVALID_ARG,
                        "%s: the file's model (T=%d V=%d L=%d NH=%d C=%d) differs from the "
                        "model being loaded (T=%d V=%d L=%d NH=%d C=%d)",
                        path, fc.max_seq_len, fc.vocab_size, fc.num_layers, fc.num_heads,
                        fc.channels, mc->max_seq_len, mc->vocab_size, mc->num_layers, mc->num_heads,
                        mc->channels);
    }
    const int64_t n = ts_gpt_num_params(gpt);
    ts_status st = TS_OK;
    float *host = malloc((size_t)n * sizeof(float));
    if (host == NULL) {
        st = ts_error(TS_ERR_OOM, "weights load %s: out of memory", path);
        goto exit;
    }
    const size_t got = fread(host, sizeof(float), (size_t)n, f);
    if (got != (size_t)n) {
        st = ts_error(TS_ERR_FORMAT, "%s: truncated: %lld of %lld parameters present", path,
                      (long long)got, (long long)n);
        goto exit;
    }
    if (fgetc(f) != EOF) {
        st =
            ts_error(TS_ERR_FORMAT, "%s: trailing bytes after %lld parameters", path, (long long)n);
        goto exit;
    }
    TS_CHECK_GOTO(ts_gpt_params_from_host(gpt, host), st, exit);
exit:
    fclose(f);
    free(host);
    return st;
}
