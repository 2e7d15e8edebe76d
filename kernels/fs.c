/* fs.c: file-system helpers and checked path building (fs.h). */
#include "kernels/fs.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

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

static ts_status not_regular(const char *path, mode_t mode) {
    const char *what = S_ISDIR(mode)                    ? "a directory"
                       : S_ISFIFO(mode)                 ? "a FIFO"
                       : S_ISCHR(mode) || S_ISBLK(mode) ? "a device"
                       : S_ISSOCK(mode)                 ? "a socket"
                                                        : "not a regular file";
    return ts_error(TS_ERR_IO, "%s is %s, not a regular file: give a file", path, what);
}

ts_status ts_fs_open_regular(const char *path, int *fd, int64_t *size) {
    *fd = -1;
    /* O_NONBLOCK: opening a FIFO without a writer returns at once instead of waiting */
    const int f = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
    if (f < 0)
        return ts_error(TS_ERR_IO, "cannot open %s: %s", path, strerror(errno));
    struct stat sb;
    if (fstat(f, &sb) != 0) {
        const int e = errno;
        close(f);
        return ts_error(TS_ERR_IO, "cannot stat %s: %s", path, strerror(e));
    }
    if (!S_ISREG(sb.st_mode)) {
        close(f);
        return not_regular(path, sb.st_mode);
    }
    const int fl = fcntl(f, F_GETFL);
    if (fl < 0 || fcntl(f, F_SETFL, fl & ~O_NONBLOCK) != 0) {
        const int e = errno;
        close(f);
        return ts_error(TS_ERR_IO, "cannot open %s: %s", path, strerror(e));
    }
    *fd = f;
    if (size != NULL)
        *size = (int64_t)sb.st_size;
    return TS_OK;
}

ts_status ts_fs_check_regular(const char *path, int64_t *size) {
    struct stat sb;
    if (stat(path, &sb) != 0)
        return ts_error(TS_ERR_IO, "cannot open %s: %s", path, strerror(errno));
    if (!S_ISREG(sb.st_mode))
        return not_regular(path, sb.st_mode);
    if (size != NULL)
        *size = (int64_t)sb.st_size;
    return TS_OK;
}

ts_status ts_fs_read_regular_file(const char *path, int64_t max_bytes, uint8_t **data, size_t *n) {
    *data = NULL;
    *n = 0;
    int fd;
    int64_t size;
    TS_CHECK(ts_fs_open_regular(path, &fd, &size));
    if (size > max_bytes) {
        close(fd);
        return ts_error(TS_ERR_FORMAT, "%s: %lld bytes, more than the %lld this file may have",
                        path, (long long)size, (long long)max_bytes);
    }
    uint8_t *buf = malloc((size_t)size + 1);
    if (buf == NULL) {
        close(fd);
        return ts_error(TS_ERR_OOM, "out of memory reading %s", path);
    }
    int64_t got = 0;
    while (got < size) {
        const ssize_t r = read(fd, buf + got, (size_t)(size - got));
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0) {
            const int e = r < 0 ? errno : 0;
            close(fd);
            free(buf);
            return ts_error(TS_ERR_IO, "error reading %s: %s", path,
                            e ? strerror(e) : "the file shrank while being read");
        }
        got += r;
    }
    close(fd);
    buf[size] = 0;
    *data = buf;
    *n = (size_t)size;
    return TS_OK;
}
