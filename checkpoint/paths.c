/* paths.c: checkpoint directories on disk: durability (fsync of files and directories), the
 * `latest` link, finding the newest complete checkpoint, and deleting old ones.
 *
 * Only a directory named exactly step_NNNNNNNN is a complete checkpoint: saves build
 * step_NNNNNNNN.tmp-* and rename it into place after its manifest is durable, and deletions
 * rename a checkpoint to *.del-* before removing its files, so a kill during either leaves
 * only leftovers that the next save sweeps away. */
#define _GNU_SOURCE /* sync_file_range; implies _XOPEN_SOURCE 700 (nftw) */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "checkpoint/ckpt_impl.h"
#include "kernels/fs.h"

static ts_status fsync_open(const char *path, int flags, const char *what) {
    const int fd = open(path, flags | O_CLOEXEC);
    if (fd < 0)
        return ts_error(TS_ERR_IO, "cannot open %s %s to sync it: %s", what, path, strerror(errno));
    const int rc = fsync(fd);
    const int err = errno;
    close(fd);
    if (rc != 0)
        return ts_error(TS_ERR_IO, "fsync of %s failed: %s", path, strerror(err));
    return TS_OK;
}

ts_status ckpt_fsync_file(const char *path) { return fsync_open(path, O_RDONLY, "file"); }
ts_status ckpt_fsync_dir(const char *path) {
    return fsync_open(path, O_RDONLY | O_DIRECTORY, "directory");
}

void ckpt_writeback(const char *path, size_t *pending, bool force) {
    if (!force && *pending < CKPT_WRITEBACK_BYTES)
        return;
    *pending = 0;
    const char *env = getenv("TS_CKPT_WRITEBACK");
    if (env != NULL && strcmp(env, "0") == 0)
        return;
#ifdef SYNC_FILE_RANGE_WRITE
    const int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd >= 0) {
        (void)sync_file_range(fd, 0, 0, SYNC_FILE_RANGE_WRITE);
        close(fd);
    }
#else
    (void)path;
#endif
}

static int rm_cb(const char *path, const struct stat *sb, int flag, struct FTW *ftw) {
    return remove(path);
}

ts_status ckpt_rm_rf(const char *path) {
    struct stat sb;
    if (lstat(path, &sb) != 0)
        return TS_OK;
    if (nftw(path, rm_cb, 16, FTW_DEPTH | FTW_PHYS) != 0)
        return ts_error(TS_ERR_IO, "cannot remove %s: %s", path, strerror(errno));
    return TS_OK;
}

bool ckpt_is_step_name(const char *name, int64_t *step) {
    if (strncmp(name, "step_", 5) != 0 || strlen(name) < 13)
        return false;
    int64_t v = 0;
    for (const char *p = name + 5; *p; p++) {
        if (*p < '0' || *p > '9' || v > INT64_MAX / 10 - 10)
            return false;
        v = v * 10 + (*p - '0');
    }
    if (step != NULL)
        *step = v;
    return true;
}

bool ckpt_path_exists(const char *path) {
    struct stat sb;
    return stat(path, &sb) == 0;
}

ts_status ckpt_read_file(const char *path, size_t max, unsigned char **out, size_t *len) {
    *out = NULL;
    *len = 0;
    uint8_t *buf = NULL;
    TS_CHECK(ts_fs_read_regular_file(path, (int64_t)max, &buf, len));
    *out = buf;
    return TS_OK;
}

ts_status ckpt_write_file_sync(const char *path, const void *data, size_t len) {
    const int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0)
        return ts_error(TS_ERR_IO, "cannot create %s: %s", path, strerror(errno));
    const unsigned char *p = data;
    size_t left = len;
    while (left > 0) {
        const ssize_t w = write(fd, p, left);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0) {
            const int err = errno;
            close(fd);
            return ts_error(TS_ERR_IO, "cannot write %s: %s", path, strerror(err));
        }
        p += w;
        left -= (size_t)w;
    }
    if (fsync(fd) != 0) {
        const int err = errno;
        close(fd);
        return ts_error(TS_ERR_IO, "fsync of %s failed: %s", path, strerror(err));
    }
    if (close(fd) != 0)
        return ts_error(TS_ERR_IO, "cannot close %s: %s", path, strerror(errno));
    return TS_OK;
}

ts_status ckpt_set_latest(const char *dir, const char *target) {
    char tmp[TS_PATH_MAX], link[TS_PATH_MAX];
    TS_CHECK(ts_path_fmt(tmp, sizeof(tmp), "%s/latest.tmp-%ld", dir, (long)getpid()));
    TS_CHECK(ts_path_join(link, sizeof(link), dir, "latest"));
    (void)unlink(tmp);
    if (symlink(target, tmp) != 0)
        return ts_error(TS_ERR_IO, "cannot create link %s: %s", tmp, strerror(errno));
    if (rename(tmp, link) != 0) {
        const int err = errno;
        (void)unlink(tmp);
        return ts_error(TS_ERR_IO, "cannot move %s to %s: %s", tmp, link, strerror(err));
    }
    return ckpt_fsync_dir(dir);
}

void ckpt_remove_leftovers(const char *dir) {
    DIR *d = opendir(dir);
    if (d == NULL)
        return;
    struct dirent *e;
    char path[TS_PATH_MAX];
    while ((e = readdir(d)) != NULL) {
        if (strncmp(e->d_name, "step_", 5) != 0 && strncmp(e->d_name, "latest.tmp-", 11) != 0)
            continue;
        if (strstr(e->d_name, ".tmp-") == NULL && strstr(e->d_name, ".del-") == NULL)
            continue;
        if (ts_path_join(path, sizeof(path), dir, e->d_name) != TS_OK || ckpt_rm_rf(path) != TS_OK)
            ts_error_clear(); /* best effort: the next save tries again */
    }
    closedir(d);
}

ts_status ckpt_remove_dir(const char *dir, const char *name) {
    char from[TS_PATH_MAX], to[TS_PATH_MAX];
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    TS_CHECK(ts_path_join(from, sizeof(from), dir, name));
    TS_CHECK(ts_path_fmt(to, sizeof(to), "%s.del-%ld-%ld", from, (long)getpid(), (long)ts.tv_nsec));
    if (rename(from, to) != 0)
        return ts_error(TS_ERR_IO, "cannot move %s away to delete it: %s", from, strerror(errno));
    return ckpt_rm_rf(to);
}

/* Whether name is exactly the name save gives step s: a stray `step_000000005` is not. */
static bool canonical_step_name(const char *name, int64_t *step) {
    char want[64];
    int64_t s;
    if (!ckpt_is_step_name(name, &s))
        return false;
    snprintf(want, sizeof(want), "step_%08" PRId64, s);
    if (step != NULL)
        *step = s;
    return strcmp(want, name) == 0;
}

ts_status ts_ckpt_names_add(struct ts_ckpt_names *l, const char *name) {
    for (int i = 0; i < l->n; i++)
        if (strcmp(l->name[i], name) == 0)
            return TS_OK;
    if (strlen(name) >= sizeof(l->name[0]))
        return ts_error(TS_ERR_INVALID_ARG, "checkpoint name too long: %.80s", name);
    if (l->n == l->cap) {
        const int cap = l->cap ? 2 * l->cap : 16;
        char(*grown)[32] = realloc(l->name, (size_t)cap * sizeof(*grown));
        if (grown == NULL)
            return ts_error(TS_ERR_OOM, "out of memory listing checkpoints");
        l->name = grown;
        l->cap = cap;
    }
    snprintf(l->name[l->n++], sizeof(l->name[0]), "%s", name);
    return TS_OK;
}

void ts_ckpt_names_deinit(struct ts_ckpt_names *l) {
    free(l->name);
    *l = (struct ts_ckpt_names){0};
}

ts_status ts_ckpt_names_scan(struct ts_ckpt_names *l, const char *dir, int64_t max_step) {
    DIR *d = opendir(dir);
    if (d == NULL)
        return TS_OK;
    ts_status st = TS_OK;
    struct dirent *e;
    while (st == TS_OK && (e = readdir(d)) != NULL) {
        int64_t s;
        char p[TS_PATH_MAX], m[TS_PATH_MAX];
        if (!canonical_step_name(e->d_name, &s) || s > max_step)
            continue;
        if (ts_path_join(p, sizeof(p), dir, e->d_name) != TS_OK ||
            ts_path_join(m, sizeof(m), p, CKPT_MANIFEST) != TS_OK) {
            ts_error_clear();
            continue;
        }
        if (ckpt_path_exists(m))
            st = ts_ckpt_names_add(l, e->d_name);
    }
    closedir(d);
    return st;
}

struct named_step {
    int64_t step;
    char name[32];
};

static int cmp_step(const void *a, const void *b) {
    const int64_t x = ((const struct named_step *)a)->step,
                  y = ((const struct named_step *)b)->step;
    return (x > y) - (x < y);
}

ts_status ckpt_prune(const char *dir, int keep, const char *keep_name,
                     struct ts_ckpt_names *owned) {
    if (keep <= 0)
        return TS_OK;
    int64_t keep_step;
    if (!ckpt_is_step_name(keep_name, &keep_step))
        return ts_error(TS_ERR_INVALID_ARG, "checkpoint prune: %s is not a step name", keep_name);
    /* candidates: the caller's own checkpoints, or (no list) the canonically named ones older
     * than the new one; never the new one, never a name save would not have given */
    struct ts_ckpt_names found = {0};
    struct ts_ckpt_names *from = owned;
    if (from == NULL) {
        TS_CHECK(ts_ckpt_names_scan(&found, dir, keep_step - 1));
        from = &found;
    }
    struct named_step *c = calloc((size_t)from->n + 1, sizeof(*c));
    if (c == NULL) {
        ts_ckpt_names_deinit(&found);
        return ts_error(TS_ERR_OOM, "out of memory pruning %s", dir);
    }
    int n = 0;
    for (int i = 0; i < from->n; i++) {
        int64_t s;
        if (strcmp(from->name[i], keep_name) == 0 || !canonical_step_name(from->name[i], &s))
            continue;
        c[n].step = s;
        snprintf(c[n].name, sizeof(c[n].name), "%s", from->name[i]);
        n++;
    }
    qsort(c, (size_t)n, sizeof(*c), cmp_step);
    /* keep_name counts as one of the kept */
    ts_status st = TS_OK;
    const int others = keep - 1;
    for (int i = 0; n > others && i < n - others && st == TS_OK; i++) {
        char p[TS_PATH_MAX];
        st = ts_path_join(p, sizeof(p), dir, c[i].name);
        if (st == TS_OK && ckpt_path_exists(p))
            st = ckpt_remove_dir(dir, c[i].name);
        if (st == TS_OK && owned != NULL) { /* forget it */
            for (int j = 0; j < owned->n; j++)
                if (strcmp(owned->name[j], c[i].name) == 0) {
                    memmove(owned->name[j], owned->name[j + 1],
                            (size_t)(owned->n - j - 1) * sizeof(owned->name[0]));
                    owned->n--;
                    break;
                }
        }
    }
    free(c);
    ts_ckpt_names_deinit(&found);
    if (st == TS_OK && owned != NULL)
        st = ts_ckpt_names_add(owned, keep_name);
    return st;
}
