/* fs.c: file-system helpers (fs.h). */
#include "kernels/fs.h"

#include <errno.h>
#include <stdio.h>
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
