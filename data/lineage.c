/* lineage.c: the data files of a run and their hashes, the manifest beside them (lineage.h).
 *
 * Shards are hashed with checkpoint/'s CRC32C (about 10 GB/s), up to 4 GiB in all, since every
 * start reads them once more; the manifest, small, by its sha256. */
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

ts_status ts_data_files(const char *pattern, struct ts_ckpt_data_file **files, int *n) {
    *files = NULL;
    *n = 0;
    glob_t g;
    if (glob(pattern, 0, NULL, &g) != 0)
        return ts_error(TS_ERR_IO, "no file matches --data %s", pattern);
    struct ts_ckpt_data_file *out = calloc(g.gl_pathc + 1, sizeof(*out));
    if (out == NULL) {
        globfree(&g);
        return ts_error(TS_ERR_OOM, "out of memory listing %s", pattern);
    }
    uint64_t hashed = 0;
    ts_status st = TS_OK;
    for (size_t i = 0; i < g.gl_pathc && st == TS_OK; i++) {
        struct ts_ckpt_data_file *f = &out[i];
        struct stat sb;
        snprintf(f->path, sizeof(f->path), "%s", g.gl_pathv[i]);
        f->bytes = stat(f->path, &sb) == 0 ? (uint64_t)sb.st_size : 0;
        uint32_t crc = 0;
        if (hashed + f->bytes > HASH_BUDGET) {
            snprintf(f->hash, sizeof(f->hash), "unhashed");
            continue;
        }
        st = hash_file(f->path, &crc);
        hashed += f->bytes;
        snprintf(f->hash, sizeof(f->hash), "crc32c:%08x", crc);
    }
    *n = (int)g.gl_pathc;
    globfree(&g);
    if (st != TS_OK) {
        free(out);
        *n = 0;
        return st;
    }
    *files = out;
    return TS_OK;
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
