/* prepare_output.c: temporary shards renamed into place, stale shards removed
 * (prepare_output.h). */
#include "data/prepare_output.h"

#include <dirent.h>
#include <errno.h>
#include <fnmatch.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "data/shard.h"
#include "kernels/fs.h"

#define BUF_TOKENS (1 << 16)

struct stream {
    FILE *f;
    char tmp[4200];
    int64_t n;
};

struct ts_prep_out {
    char dir[4096];
    int64_t shard_tokens;
    struct stream train, val;
    int64_t train_total;
    int num_done; /* train shards finished (as temporaries) */
    int64_t *done_tokens;
    int cap_done;
    uint16_t buf[BUF_TOKENS];
};

static bool is_ours(const char *name) {
    return fnmatch("train_*.bin", name, 0) == 0 || strcmp(name, "val.bin") == 0 ||
           strcmp(name, TS_DATA_MANIFEST_NAME) == 0;
}

static void tmp_name(const ts_prep_out_t *o, int shard, char *out, size_t len) {
    if (shard < 0)
        snprintf(out, len, "%s/.val.bin.part", o->dir);
    else
        snprintf(out, len, "%s/.train_%03d.bin.part", o->dir, shard);
}

/* Lists what an earlier prepare left in dir, for the refusal message. */
static ts_status check_dir(const char *dir, bool overwrite) {
    DIR *d = opendir(dir);
    if (d == NULL)
        return ts_error(TS_ERR_IO, "cannot list %s: %s", dir, strerror(errno));
    int found = 0;
    char first[256] = "";
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (!is_ours(e->d_name))
            continue;
        if (found++ == 0)
            snprintf(first, sizeof(first), "%s", e->d_name);
    }
    closedir(d);
    if (found > 0 && !overwrite)
        return ts_error(TS_ERR_INVALID_ARG,
                        "%s already holds a prepared dataset (%d file(s): %s, ...); pass "
                        "--overwrite to replace it (its stale shards are then removed) or choose "
                        "another --out",
                        dir, found, first);
    return TS_OK;
}

ts_status ts_prep_out_create(ts_prep_out_t **out, const char *dir, int64_t shard_tokens,
                             bool overwrite) {
    *out = NULL;
    if (strlen(dir) >= 4000)
        return ts_error(TS_ERR_INVALID_ARG, "--out path too long");
    if (shard_tokens < 2 || shard_tokens > INT32_MAX)
        return ts_error(TS_ERR_INVALID_ARG, "shard tokens %lld outside [2, 2^31)",
                        (long long)shard_tokens);
    TS_CHECK(ts_fs_mkdirs(dir));
    TS_CHECK(check_dir(dir, overwrite));
    ts_prep_out_t *o = calloc(1, sizeof(*o));
    if (o == NULL)
        return ts_error(TS_ERR_OOM, "out of memory");
    snprintf(o->dir, sizeof(o->dir), "%s", dir);
    o->shard_tokens = shard_tokens;
    *out = o;
    return TS_OK;
}

static ts_status stream_open(ts_prep_out_t *o, struct stream *s, int shard) {
    tmp_name(o, shard, s->tmp, sizeof(s->tmp));
    s->f = fopen(s->tmp, "wb");
    if (s->f == NULL)
        return ts_error(TS_ERR_IO, "cannot create %s: %s", s->tmp, strerror(errno));
    setvbuf(s->f, NULL, _IOFBF, 1 << 20);
    int32_t header[TS_SHARD_HEADER_INTS] = {TS_SHARD_MAGIC, TS_SHARD_VERSION, 0};
    if (fwrite(header, sizeof(header), 1, s->f) != 1)
        return ts_error(TS_ERR_IO, "cannot write %s: %s", s->tmp, strerror(errno));
    s->n = 0;
    return TS_OK;
}

/* Writes the final count into the header, flushes to disk and closes. */
static ts_status stream_finish(struct stream *s) {
    int32_t count = (int32_t)s->n;
    bool ok = fseek(s->f, 2 * (long)sizeof(int32_t), SEEK_SET) == 0 &&
              fwrite(&count, sizeof(count), 1, s->f) == 1 && fflush(s->f) == 0 &&
              fsync(fileno(s->f)) == 0;
    int err = errno;
    ok = fclose(s->f) == 0 && ok;
    s->f = NULL;
    if (!ok)
        return ts_error(TS_ERR_IO, "cannot write %s: %s", s->tmp, strerror(err));
    return TS_OK;
}

static ts_status stream_write(ts_prep_out_t *o, struct stream *s, const int32_t *ids, int64_t n) {
    while (n > 0) {
        int64_t k = n < BUF_TOKENS ? n : BUF_TOKENS;
        for (int64_t i = 0; i < k; i++) {
            if (ids[i] < 0 || ids[i] > 65535)
                return ts_error(TS_ERR_INTERNAL, "token id %d does not fit a shard", ids[i]);
            o->buf[i] = (uint16_t)ids[i];
        }
        if (fwrite(o->buf, sizeof(uint16_t), (size_t)k, s->f) != (size_t)k)
            return ts_error(TS_ERR_IO, "cannot write %s: %s", s->tmp, strerror(errno));
        s->n += k;
        ids += k;
        n -= k;
    }
    return TS_OK;
}

ts_status ts_prep_out_append(ts_prep_out_t *o, const int32_t *ids, int64_t n, bool val) {
    if (val) {
        if (o->val.f == NULL)
            TS_CHECK(stream_open(o, &o->val, -1));
        return stream_write(o, &o->val, ids, n);
    }
    while (n > 0) {
        if (o->train.f == NULL)
            TS_CHECK(stream_open(o, &o->train, o->num_done));
        int64_t room = o->shard_tokens - o->train.n;
        int64_t k = n < room ? n : room;
        TS_CHECK(stream_write(o, &o->train, ids, k));
        o->train_total += k;
        ids += k;
        n -= k;
        if (o->train.n == o->shard_tokens) {
            TS_CHECK(stream_finish(&o->train));
            if (o->num_done == o->cap_done) {
                int nc = o->cap_done ? 2 * o->cap_done : 64;
                int64_t *nd = realloc(o->done_tokens, (size_t)nc * sizeof(*nd));
                if (nd == NULL)
                    return ts_error(TS_ERR_OOM, "out of memory");
                o->done_tokens = nd;
                o->cap_done = nc;
            }
            o->done_tokens[o->num_done++] = o->train.n;
        }
    }
    return TS_OK;
}

int64_t ts_prep_out_tokens(const ts_prep_out_t *o, bool val) {
    return val ? o->val.n : o->train_total;
}

static ts_status rename_in(const char *from, const char *to) {
    if (rename(from, to) != 0)
        return ts_error(TS_ERR_IO, "cannot rename %s to %s: %s", from, to, strerror(errno));
    return TS_OK;
}

/* Removes train_*.bin not in the new set [0, keep) and, when drop_val, val.bin. */
static ts_status remove_stale(const ts_prep_out_t *o, int keep, bool drop_val) {
    DIR *d = opendir(o->dir);
    if (d == NULL)
        return ts_error(TS_ERR_IO, "cannot list %s: %s", o->dir, strerror(errno));
    ts_status st = TS_OK;
    struct dirent *e;
    char path[4400], want[64];
    while ((e = readdir(d)) != NULL && st == TS_OK) {
        bool stale = drop_val && strcmp(e->d_name, "val.bin") == 0;
        if (fnmatch("train_*.bin", e->d_name, 0) == 0) {
            int k = -1;
            stale = sscanf(e->d_name, "train_%d.bin", &k) != 1 || k < 0 || k >= keep;
            snprintf(want, sizeof(want), "train_%03d.bin", k);
            stale = stale || strcmp(want, e->d_name) != 0; /* train_7.bin, train_x.bin */
        }
        snprintf(path, sizeof(path), "%s/%s", o->dir, e->d_name);
        if (stale && unlink(path) != 0)
            st = ts_error(TS_ERR_IO, "cannot remove the stale shard %s: %s", path, strerror(errno));
    }
    closedir(d);
    return st;
}

ts_status ts_prep_out_commit(ts_prep_out_t *o, struct ts_data_manifest *m) {
    if (o->train.f != NULL && o->train.n > 0) {
        TS_CHECK(stream_finish(&o->train));
        if (o->num_done == o->cap_done) {
            int64_t *nd = realloc(o->done_tokens, (size_t)(o->cap_done + 1) * sizeof(*nd));
            if (nd == NULL)
                return ts_error(TS_ERR_OOM, "out of memory");
            o->done_tokens = nd;
            o->cap_done++;
        }
        o->done_tokens[o->num_done++] = o->train.n;
    } else if (o->train.f != NULL) { /* opened, nothing written */
        fclose(o->train.f);
        o->train.f = NULL;
        remove(o->train.tmp);
    }
    if (o->val.f != NULL)
        TS_CHECK(stream_finish(&o->val));
    char path[4400], tmp[4400];
    snprintf(path, sizeof(path), "%s/%s", o->dir, TS_DATA_MANIFEST_NAME);
    if (unlink(path) != 0 && errno != ENOENT) /* no moment where the old manifest names new data */
        return ts_error(TS_ERR_IO, "cannot remove %s: %s", path, strerror(errno));
    for (int k = 0; k < o->num_done; k++) {
        tmp_name(o, k, tmp, sizeof(tmp));
        snprintf(path, sizeof(path), "%s/train_%03d.bin", o->dir, k);
        TS_CHECK(rename_in(tmp, path));
        TS_CHECK(ts_data_manifest_add_shard(m, path + strlen(o->dir) + 1, o->done_tokens[k]));
    }
    if (o->val.n > 0) {
        tmp_name(o, -1, tmp, sizeof(tmp));
        snprintf(path, sizeof(path), "%s/val.bin", o->dir);
        TS_CHECK(rename_in(tmp, path));
    } else {
        tmp_name(o, -1, tmp, sizeof(tmp));
        remove(tmp);
    }
    TS_CHECK(remove_stale(o, o->num_done, o->val.n == 0));
    m->train_tokens = o->train_total;
    m->val_tokens = o->val.n;
    m->num_train_shards = o->num_done;
    snprintf(path, sizeof(path), "%s/%s", o->dir, TS_DATA_MANIFEST_NAME);
    TS_CHECK(ts_data_manifest_write(m, path));
    o->num_done = 0; /* nothing left to clean up */
    o->val.n = 0;
    return TS_OK;
}

void ts_prep_out_destroy(ts_prep_out_t *o) {
    if (o == NULL)
        return;
    char tmp[4400];
    if (o->train.f != NULL) {
        fclose(o->train.f);
        remove(o->train.tmp);
    }
    if (o->val.f != NULL)
        fclose(o->val.f);
    for (int k = 0; k < o->num_done; k++) {
        tmp_name(o, k, tmp, sizeof(tmp));
        remove(tmp);
    }
    tmp_name(o, -1, tmp, sizeof(tmp));
    remove(tmp);
    free(o->done_tokens);
    free(o);
}
