/* fs.c: file-system helpers and checked path building (fs.h). */
#include "kernels/fs.h"

#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

/* The message for the path a + sep + b of len bytes (NUL excluded) that does not fit in cap:
 * whole when short, else its first and last bytes, so both the place and the file are named
 * within the message's 1 KiB. */
static ts_status too_long(const char *a, const char *sep, const char *b, size_t len, size_t cap) {
    const size_t at_most = cap > 0 ? cap - 1 : 0;
    if (len <= 360)
        return ts_error(TS_ERR_INVALID_ARG, "path too long (%zu bytes, at most %zu fit): %s%s%s",
                        len, at_most, a, sep, b);
    const char *tail = b[0] != '\0' ? b : a;
    const size_t lt = strlen(tail), shown = lt < 120 ? lt : 120;
    return ts_error(TS_ERR_INVALID_ARG,
                    "path too long (%zu bytes, at most %zu fit): %.240s...%s (shorten the "
                    "directory names, or move the run to a shorter path)",
                    len, at_most, a, tail + lt - shown);
}

ts_status ts_path_join(char *out, size_t cap, const char *a, const char *b) {
    if (out == NULL || a == NULL || b == NULL)
        return ts_error(TS_ERR_INVALID_ARG, "path join: NULL argument");
    const size_t la = strlen(a), lb = strlen(b);
    const size_t slash = la > 0 && a[la - 1] != '/';
    const size_t len = la + slash + lb;
    if (len >= cap) {
        if (cap > 0)
            out[0] = '\0';
        return too_long(a, slash ? "/" : "", b, len, cap);
    }
    memcpy(out, a, la);
    if (slash)
        out[la] = '/';
    memcpy(out + la + slash, b, lb + 1);
    return TS_OK;
}

ts_status ts_path_fmt(char *out, size_t cap, const char *fmt, ...) {
    if (out == NULL || fmt == NULL)
        return ts_error(TS_ERR_INVALID_ARG, "path format: NULL argument");
    va_list ap;
    va_start(ap, fmt);
    const int n = vsnprintf(out, cap, fmt, ap);
    va_end(ap);
    if (n < 0) {
        if (cap > 0)
            out[0] = '\0';
        return ts_error(TS_ERR_INVALID_ARG, "path format \"%.64s\": encoding error", fmt);
    }
    if ((size_t)n < cap)
        return TS_OK;
    /* format again in full for the message (the error path may allocate) */
    char *full = malloc((size_t)n + 1);
    if (full != NULL) {
        va_start(ap, fmt);
        vsnprintf(full, (size_t)n + 1, fmt, ap);
        va_end(ap);
    }
    if (cap > 0)
        out[0] = '\0';
    const ts_status st = too_long(full ? full : fmt, "", "", (size_t)n, cap);
    free(full);
    return st;
}

static ts_status make_one(const char *dir) {
    if (mkdir(dir, 0777) != 0 && errno != EEXIST)
        return ts_error(TS_ERR_IO, "cannot create directory %s: %s", dir, strerror(errno));
    return TS_OK;
}

ts_status ts_fs_mkdirs(const char *path) {
    char buf[TS_PATH_MAX];
    if (path == NULL || path[0] == '\0')
        return ts_error(TS_ERR_INVALID_ARG, "mkdirs: empty path");
    TS_CHECK(ts_path_fmt(buf, sizeof(buf), "%s", path));
    for (char *p = buf + 1; *p; p++) {
        if (*p != '/')
            continue;
        *p = '\0';
        TS_CHECK(make_one(buf));
        *p = '/';
    }
    TS_CHECK(make_one(buf));
    struct stat st;
    if (stat(buf, &st) != 0 || !S_ISDIR(st.st_mode))
        return ts_error(TS_ERR_IO, "%s exists and is not a directory", buf);
    return TS_OK;
}

ts_status ts_fs_read_file(const char *path, uint8_t **data, size_t *n) {
    *data = NULL;
    *n = 0;
    bool in = strcmp(path, "-") == 0;
    FILE *f = in ? stdin : fopen(path, "rb");
    if (f == NULL)
        return ts_error(TS_ERR_IO, "cannot open %s: %s", path, strerror(errno));
    size_t cap = 1 << 16, len = 0;
    uint8_t *buf = malloc(cap + 1);
    while (buf != NULL) {
        len += fread(buf + len, 1, cap - len, f);
        if (len < cap)
            break;
        cap *= 2;
        uint8_t *nb = realloc(buf, cap + 1);
        if (nb == NULL)
            free(buf);
        buf = nb;
    }
    ts_status st = TS_OK;
    if (buf == NULL)
        st = ts_error(TS_ERR_OOM, "out of memory reading %s", path);
    else if (ferror(f))
        st = ts_error(TS_ERR_IO, "error reading %s", path);
    if (!in)
        fclose(f);
    if (st != TS_OK) {
        free(buf);
        return st;
    }
    buf[len] = 0;
    *data = buf;
    *n = len;
    return TS_OK;
}
