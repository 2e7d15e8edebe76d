/* lineage.c: the data files of a run and their hashes, the manifest beside them (lineage.h).
 *
 * Shards are hashed with checkpoint/'s CRC32C (about 10 GB/s), up to 4 GiB in all per start;
 * on a resume a file whose size and modification time equal what the checkpoint recorded keeps
 * its recorded hash unread, so an untouched corpus costs a stat per file. The manifest, small,
 * by its sha256. */
#include "data/lineage.h"

#include <errno.h>
#include <fcntl.h>
#include <glob.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "data/data_manifest.h"
#include "data/sha256.h"
#include "data/shard.h"
#include "kernels/fs.h"

#define HASH_BUDGET (UINT64_C(4) << 30)

static ts_status hash_file(const char *path, uint32_t *crc) {
    const int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return ts_error(TS_ERR_IO, "cannot read %s: %s", path, strerror(errno));
    const size_t cap = 8u << 20;
    unsigned char *buf = malloc(cap);
    if (buf == NULL) {
        close(fd);
        return ts_error(TS_ERR_OOM, "out of memory hashing %s", path);
    }
    uint32_t c = 0;
    ssize_t got;
    while ((got = read(fd, buf, cap)) > 0)
        c = ts_crc32c(c, buf, (size_t)got);
    const int err = errno;
    free(buf);
    close(fd);
    if (got < 0)
        return ts_error(TS_ERR_IO, "cannot read %s: %s", path, strerror(err));
    *crc = c;
    return TS_OK;
}

/* A recorded file with this path (rec[hint] first: the lists are usually in the same order). */
static const struct ts_ckpt_data_file *find_recorded(const struct ts_ckpt_data_file *rec, int nrec,
                                                     int hint, const char *path) {
    if (hint >= 0 && hint < nrec && strcmp(rec[hint].path, path) == 0)
        return &rec[hint];
    for (int i = 0; i < nrec; i++)
        if (strcmp(rec[i].path, path) == 0)
            return &rec[i];
    return NULL;
}

ts_status ts_data_files_add(struct ts_data_files *fs, const char *path,
                            const struct ts_ckpt_data_file *rec, int nrec) {
    if (fs->n == fs->cap) {
        const int cap = fs->cap ? 2 * fs->cap : 16;
        struct ts_ckpt_data_file *grown = realloc(fs->files, (size_t)cap * sizeof(*grown));
        if (grown == NULL)
            return ts_error(TS_ERR_OOM, "out of memory listing the data files");
        fs->files = grown;
        fs->cap = cap;
    }
    struct ts_ckpt_data_file *f = &fs->files[fs->n];
    memset(f, 0, sizeof(*f));
    TS_CHECK(ts_path_fmt(f->path, sizeof(f->path), "%s", path));
    struct stat sb;
    if (stat(path, &sb) != 0)
        return ts_error(TS_ERR_IO, "cannot stat data file %s: %s", path, strerror(errno));
    f->bytes = (uint64_t)sb.st_size;
    f->mtime_ns = (int64_t)sb.st_mtim.tv_sec * 1000000000 + (int64_t)sb.st_mtim.tv_nsec;
    const struct ts_ckpt_data_file *r = find_recorded(rec, nrec, fs->n, path);
    if (r != NULL && r->bytes == f->bytes && r->mtime_ns != 0 && r->mtime_ns == f->mtime_ns &&
        strcmp(r->hash, "unhashed") != 0) {
        /* unchanged by size and mtime: its recorded hash stands, the file is not read */
        snprintf(f->hash, sizeof(f->hash), "%s", r->hash);
        fs->reused++;
        fs->n++;
        return TS_OK;
    }
    if (fs->hashed_bytes + f->bytes > HASH_BUDGET) {
        snprintf(f->hash, sizeof(f->hash), "unhashed");
        fs->n++;
        return TS_OK;
    }
    uint32_t crc = 0;
    TS_CHECK(hash_file(f->path, &crc));
    snprintf(f->hash, sizeof(f->hash), "crc32c:%08x", crc);
    fs->hashed++;
    fs->hashed_bytes += f->bytes;
    fs->n++;
    return TS_OK;
}

ts_status ts_data_files_add_glob(struct ts_data_files *fs, const char *pattern,
                                 const struct ts_ckpt_data_file *rec, int nrec) {
    glob_t g;
    if (glob(pattern, 0, NULL, &g) != 0)
        return ts_error(TS_ERR_IO, "no file matches --data %s", pattern);
    ts_shard_sort_paths(g.gl_pathv, g.gl_pathc); /* the loader's order */
    ts_status st = TS_OK;
    for (size_t i = 0; i < g.gl_pathc && st == TS_OK; i++)
        st = ts_data_files_add(fs, g.gl_pathv[i], rec, nrec);
    globfree(&g);
    return st;
}

void ts_data_files_deinit(struct ts_data_files *fs) {
    free(fs->files);
    memset(fs, 0, sizeof(*fs));
}

ts_status ts_data_lineage(const char *pattern, char *path, size_t path_len, char *hash,
                          size_t hash_len) {
    path[0] = hash[0] = '\0';
    bool found = false;
    TS_CHECK(ts_data_manifest_find(pattern, path, path_len, &found));
    if (!found) {
        path[0] = '\0';
        return TS_OK;
    }
    char hex[TS_SHA256_HEX];
    int64_t size = 0;
    TS_CHECK(ts_sha256_file(path, hex, &size));
    snprintf(hash, hash_len, "sha256:%s", hex);
    return TS_OK;
}

void ts_data_compare(const struct ts_ckpt_data_file *rec, int nrec,
                     const struct ts_ckpt_data_file *now, int nnow, bool *same, char *diff,
                     size_t len) {
    *same = true;
    diff[0] = '\0';
    for (int i = 0; i < nrec || i < nnow; i++) {
        if (i >= nnow) {
            snprintf(diff, len, "%s was recorded but is gone", rec[i].path);
        } else if (i >= nrec) {
            snprintf(diff, len, "%s is new", now[i].path);
        } else if (strcmp(rec[i].path, now[i].path) != 0) {
            snprintf(diff, len, "file %d was %s, now %s", i, rec[i].path, now[i].path);
        } else if (rec[i].bytes != now[i].bytes) {
            snprintf(diff, len, "%s was %llu bytes, now %llu", rec[i].path,
                     (unsigned long long)rec[i].bytes, (unsigned long long)now[i].bytes);
        } else if (strcmp(rec[i].hash, "unhashed") != 0 && strcmp(now[i].hash, "unhashed") != 0 &&
                   strcmp(rec[i].hash, now[i].hash) != 0) {
            snprintf(diff, len, "%s had %s, now %s", rec[i].path, rec[i].hash, now[i].hash);
        } else {
            continue;
        }
        *same = false;
        return;
    }
}
