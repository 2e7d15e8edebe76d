/* fs.c: file-system helpers (fs.h). */
#include "kernels/fs.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static ts_status make_one(const char *dir) {
    if (mkdir(dir, 0777) != 0 && errno != EEXIST)
        return ts_error(TS_ERR_IO, "cannot create directory %s: %s", dir, strerror(errno));
    return TS_OK;
}

ts_status ts_fs_mkdirs(const char *path) {
    char buf[4096];
    if (path == NULL || path[0] == '\0')
        return ts_error(TS_ERR_INVALID_ARG, "mkdirs: empty path");
    if (snprintf(buf, sizeof(buf), "%s", path) >= (int)sizeof(buf))
        return ts_error(TS_ERR_INVALID_ARG, "path too long: %s", path);
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
