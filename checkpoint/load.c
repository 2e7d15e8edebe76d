/* load.c: opening a checkpoint and reading tensors and blobs out of it, resharding on the way.
 *
 * A read names a tensor and the boxes the caller holds; every stored shard whose boxes meet
 * them is read whole, checked against its CRC32C, and the intersections are copied (with
 * f32 <-> bf16 conversion) into the caller's buffer. The manifest's boxes tile each tensor
 * exactly (ckpt_manifest_check), so the copied volume must equal the wanted volume. */
#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "checkpoint/ckpt_impl.h"
#include "kernels/fs.h"

struct ts_ckpt {
    char dir[TS_PATH_MAX];
    Tessera__Ckpt__Manifest *m;
    struct ts_ckpt_meta meta;
    hid_t *files; /* per rank, opened on first use */
    void *scratch;
    size_t scratch_bytes;
};

static bool is_dir(const char *path) {
    struct stat sb;
    return stat(path, &sb) == 0 && S_ISDIR(sb.st_mode);
}

/* *yes: whether dir holds a manifest (a dir too long to name its manifest in is an error). */
static ts_status has_manifest(const char *dir, bool *yes) {
    char p[TS_PATH_MAX];
    *yes = false;
    TS_CHECK(ts_path_join(p, sizeof(p), dir, CKPT_MANIFEST));
    *yes = ckpt_path_exists(p);
    return TS_OK;
}

/* The newest complete step directory in dir into out (*found false when there is none). */
static ts_status newest_step(const char *dir, char *out, size_t len, bool *found) {
    *found = false;
    DIR *d = opendir(dir);
    if (d == NULL)
        return TS_OK;
    int64_t best = -1;
    char name[sizeof(((struct dirent *)NULL)->d_name)] = "";
    ts_status st = TS_OK;
    struct dirent *e;
    while (st == TS_OK && (e = readdir(d)) != NULL) {
        int64_t s;
        char p[TS_PATH_MAX];
        bool complete = false;
        if (!ckpt_is_step_name(e->d_name, &s) || s <= best)
            continue;
        st = ts_path_join(p, sizeof(p), dir, e->d_name);
        if (st == TS_OK)
            st = has_manifest(p, &complete);
        if (st == TS_OK && complete) {
            best = s;
            memcpy(name, e->d_name, sizeof(name));
        }
    }
    closedir(d);
    if (st != TS_OK || best < 0)
        return st;
    *found = true;
    return ts_path_join(out, len, dir, name);
}

/* In a checkpoints directory: latest when it resolves, else the newest complete step. */
static ts_status find_in(const char *dir, char *out, size_t len, bool *found) {
    char latest[TS_PATH_MAX];
    bool complete;
    TS_CHECK(ts_path_join(latest, sizeof(latest), dir, "latest"));
    TS_CHECK(has_manifest(latest, &complete));
    char real[PATH_MAX];
    if (complete && realpath(latest, real) != NULL) {
        *found = true;
        return ts_path_fmt(out, len, "%s", real);
    }
    return newest_step(dir, out, len, found);
}

ts_status ts_ckpt_resolve(const char *path, char *out, size_t out_len) {
    char sub[TS_PATH_MAX];
    bool found;
    TS_CHECK(has_manifest(path, &found));
    if (found) {
        char real[PATH_MAX];
        if (realpath(path, real) == NULL)
            return ts_error(TS_ERR_IO, "cannot resolve %s: %s", path, strerror(errno));
        return ts_path_fmt(out, out_len, "%s", real);
    }
    TS_CHECK(ts_path_join(sub, sizeof(sub), path, "checkpoints"));
    if (is_dir(sub)) {
        TS_CHECK(find_in(sub, out, out_len, &found));
        if (found)
            return TS_OK;
    }
    if (is_dir(path)) {
        TS_CHECK(find_in(path, out, out_len, &found));
        if (found)
            return TS_OK;
    }
    if (!ckpt_path_exists(path))
        return ts_error(TS_ERR_IO, "%s does not exist", path);
    return ts_error(TS_ERR_IO,
                    "no complete checkpoint in %s (expected a checkpoint directory holding %s, "
                    "or a run directory with checkpoints/)",
                    path, CKPT_MANIFEST);
}

bool ts_ckpt_exists(const char *path) {
    char out[TS_PATH_MAX];
    const bool found = ts_ckpt_resolve(path, out, sizeof(out)) == TS_OK;
    ts_error_clear();
    return found;
}

ts_status ckpt_open_manifest(ts_ckpt_t **out, const char *dir, Tessera__Ckpt__Manifest *m) {
    *out = NULL;
    ts_ckpt_t *ck = calloc(1, sizeof(*ck));
    if (ck == NULL) {
        tessera__ckpt__manifest__free_unpacked(m, NULL);
        return ts_error(TS_ERR_OOM, "out of memory opening %s", dir);
    }
    ck->m = m;
    ts_status st;
    char what[TS_PATH_MAX];
    TS_CHECK_GOTO(ts_path_fmt(ck->dir, sizeof(ck->dir), "%s", dir), st, fail);
    TS_CHECK_GOTO(ts_path_join(what, sizeof(what), dir, CKPT_MANIFEST), st, fail);
    TS_CHECK_GOTO(ckpt_meta_from_manifest(m, &ck->meta, what), st, fail);
    ck->files = malloc(m->n_files * sizeof(hid_t));
    if (ck->files == NULL) {
        st = ts_error(TS_ERR_OOM, "out of memory opening %s", dir);
        goto fail;
    }
    for (size_t r = 0; r < m->n_files; r++) /* all set before a failure closes them */
        ck->files[r] = H5I_INVALID_HID;
    for (size_t r = 0; r < m->n_files; r++) {
        char p[TS_PATH_MAX];
        TS_CHECK_GOTO(ts_path_join(p, sizeof(p), dir, m->files[r]->file), st, fail);
        if (!ckpt_path_exists(p)) {
            st = ts_error(TS_ERR_FORMAT,
                          "%s is missing: the checkpoint was written by %zu ranks and needs every "
                          "rank file (copy the whole directory, or use another checkpoint)",
                          p, m->n_files);
            goto fail;
        }
    }
    *out = ck;
    return TS_OK;
fail:
    ts_ckpt_close(ck);
    return st;
}

ts_status ts_ckpt_open(ts_ckpt_t **out, const char *path) {
    *out = NULL;
    char dir[TS_PATH_MAX], mpath[TS_PATH_MAX];
    TS_CHECK(ts_ckpt_resolve(path, dir, sizeof(dir)));
    TS_CHECK(ts_path_join(mpath, sizeof(mpath), dir, CKPT_MANIFEST));
    unsigned char *buf = NULL;
    size_t len = 0;
    TS_CHECK(ckpt_read_file(mpath, CKPT_MAX_MANIFEST, &buf, &len));
    Tessera__Ckpt__Manifest *m = NULL;
    ts_status st = ckpt_manifest_unpack(buf, len, mpath, &m);
    free(buf);
    TS_CHECK(st);
    st = ckpt_manifest_check(m, mpath);
    if (st != TS_OK) {
        tessera__ckpt__manifest__free_unpacked(m, NULL);
        return st;
    }
    return ckpt_open_manifest(out, dir, m);
}

void ts_ckpt_close(ts_ckpt_t *ck) {
    if (ck == NULL)
        return;
    if (ck->files != NULL)
        for (size_t r = 0; r < ck->m->n_files; r++)
            if (ck->files[r] >= 0)
                H5Fclose(ck->files[r]);
    free(ck->files);
    free(ck->meta.data);
    free(ck->scratch);
    if (ck->m != NULL)
        tessera__ckpt__manifest__free_unpacked(ck->m, NULL);
    free(ck);
}

const char *ts_ckpt_path(const ts_ckpt_t *ck) { return ck->dir; }
const struct ts_ckpt_meta *ts_ckpt_meta(const ts_ckpt_t *ck) { return &ck->meta; }

const Tessera__Ckpt__Manifest *ckpt_manifest_of(const ts_ckpt_t *ck) { return ck->m; }

static const Tessera__Ckpt__Tensor *find_tensor(const ts_ckpt_t *ck, const char *name) {
    for (size_t i = 0; i < ck->m->n_tensors; i++)
        if (strcmp(ck->m->tensors[i]->name, name) == 0)
            return ck->m->tensors[i];
    return NULL;
}

int ts_ckpt_num_tensors(const ts_ckpt_t *ck) { return (int)ck->m->n_tensors; }

const char *ts_ckpt_tensor_name(const ts_ckpt_t *ck, int i) {
    return i >= 0 && (size_t)i < ck->m->n_tensors ? ck->m->tensors[i]->name : NULL;
}

bool ts_ckpt_has_tensor(const ts_ckpt_t *ck, const char *name) {
    return find_tensor(ck, name) != NULL;
}

ts_status ts_ckpt_tensor_info(const ts_ckpt_t *ck, const char *name, enum ts_dtype *dtype,
                              int *ndim, int64_t *shape) {
    const Tessera__Ckpt__Tensor *t = find_tensor(ck, name);
    if (t == NULL)
        return ts_error(TS_ERR_FORMAT, "checkpoint %s has no tensor %s", ck->dir, name);
    (void)ckpt_dtype_parse(t->dtype, dtype);
    *ndim = (int)t->n_shape;
    for (size_t d = 0; d < t->n_shape; d++)
        shape[d] = t->shape[d];
    return TS_OK;
}

ts_status ckpt_rank_file(ts_ckpt_t *ck, uint32_t rank, hid_t *f, char *path, size_t len) {
    TS_CHECK(ts_path_join(path, len, ck->dir, ck->m->files[rank]->file));
    if (ck->files[rank] < 0)
        TS_CHECK(ckpt_h5_open(&ck->files[rank], path));
    *f = ck->files[rank];
    return TS_OK;
}

void *ckpt_scratch(ts_ckpt_t *ck, size_t bytes) {
    if (bytes > ck->scratch_bytes) {
        free(ck->scratch);
        ck->scratch = malloc(bytes ? bytes : 1);
        ck->scratch_bytes = ck->scratch == NULL ? 0 : bytes;
    }
    return ck->scratch;
}

ts_status ckpt_read_shard(ts_ckpt_t *ck, const Tessera__Ckpt__Tensor *t,
                          const Tessera__Ckpt__Shard *sh, void *buf) {
    enum ts_dtype dt;
    (void)ckpt_dtype_parse(t->dtype, &dt);
    hid_t f;
    char path[TS_PATH_MAX];
    TS_CHECK(ckpt_rank_file(ck, sh->rank, &f, path, sizeof(path)));
    TS_CHECK(ckpt_h5_read(f, path, t->name, dt, buf, (int64_t)sh->numel, 0, NULL));
    if (ts_crc32c(0, buf, sh->numel * ts_dtype_size(dt)) != sh->crc32c)
        return ts_error(TS_ERR_FORMAT,
                        "%s: checksum mismatch in tensor %s (the file is damaged; restore it or "
                        "use another checkpoint; `tessera ckpt verify` lists every damaged "
                        "tensor)",
                        path, t->name);
    return TS_OK;
}

static ts_status check_want(const ts_ckpt_t *ck, const struct ts_ckpt_tensor *w,
                            const Tessera__Ckpt__Tensor *t) {
    char s1[80], s2[80];
    if (w->dtype != TS_DTYPE_F32 && w->dtype != TS_DTYPE_BF16)
        return ts_error(TS_ERR_INVALID_ARG, "checkpoint read %s: dtype %s is not f32 or bf16",
                        w->name, ts_dtype_name(w->dtype));
    bool same = w->ndim == (int)t->n_shape;
    for (int d = 0; same && d < w->ndim; d++)
        same = w->shape[d] == t->shape[d];
    if (!same)
        return ts_error(TS_ERR_INVALID_ARG,
                        "tensor %s is %s in checkpoint %s but %s in the model being loaded: the "
                        "checkpoint's model differs from the flags",
                        w->name, ckpt_shape_str((int)t->n_shape, t->shape, s1, sizeof(s1)), ck->dir,
                        ckpt_shape_str(w->ndim, w->shape, s2, sizeof(s2)));
    if (w->num_boxes < 0 || w->num_boxes > TS_CKPT_MAX_BOXES)
        return ts_error(TS_ERR_INVALID_ARG, "checkpoint read %s: %d boxes", w->name, w->num_boxes);
    for (int b = 0; b < w->num_boxes; b++)
        if (!ckpt_box_inside(&w->boxes[b], w->ndim, w->shape))
            return ts_error(TS_ERR_INVALID_ARG, "checkpoint read %s: box %s outside %s", w->name,
                            ckpt_box_str(&w->boxes[b], w->ndim, s1, sizeof(s1)),
                            ckpt_shape_str(w->ndim, w->shape, s2, sizeof(s2)));
    if (w->num_boxes > 0 && w->data == NULL)
        return ts_error(TS_ERR_INVALID_ARG, "checkpoint read %s: no buffer", w->name);
    return TS_OK;
}

ts_status ts_ckpt_read(ts_ckpt_t *ck, const struct ts_ckpt_tensor *want) {
    const Tessera__Ckpt__Tensor *t = find_tensor(ck, want->name);
    if (t == NULL)
        return ts_error(TS_ERR_FORMAT,
                        "checkpoint %s has no tensor %s (it was saved by another model or "
                        "optimizer configuration)",
                        ck->dir, want->name);
    TS_CHECK(check_want(ck, want, t));
    const int ndim = want->ndim;
    enum ts_dtype sdt;
    (void)ckpt_dtype_parse(t->dtype, &sdt);
    int64_t woff[TS_CKPT_MAX_BOXES], wanted = 0, covered = 0;
    for (int b = 0; b < want->num_boxes; b++) {
        woff[b] = wanted;
        wanted += ckpt_box_volume(&want->boxes[b], ndim);
    }
    const size_t ds = ts_dtype_size(want->dtype), ss = ts_dtype_size(sdt);
    for (size_t s = 0; s < t->n_shards; s++) {
        const Tessera__Ckpt__Shard *sh = t->shards[s];
        struct ts_ckpt_box sb[TS_CKPT_MAX_BOXES], r;
        ckpt_shard_boxes(sh, sb);
        bool meets = false;
        for (size_t i = 0; i < sh->n_boxes && !meets; i++)
            for (int j = 0; j < want->num_boxes && !meets; j++)
                meets = ckpt_box_intersect(&sb[i], &want->boxes[j], ndim, &r);
        if (!meets)
            continue;
        /* the common case: this rank wants exactly what one rank stored, in the same dtype */
        if (sh->n_boxes == 1 && want->num_boxes == 1 && sdt == want->dtype &&
            memcmp(sb[0].offset, want->boxes[0].offset, (size_t)ndim * sizeof(int64_t)) == 0 &&
            memcmp(sb[0].extent, want->boxes[0].extent, (size_t)ndim * sizeof(int64_t)) == 0) {
            TS_CHECK(ckpt_read_shard(ck, t, sh, want->data));
            covered += (int64_t)sh->numel;
            continue;
        }
        void *buf = ckpt_scratch(ck, sh->numel * ss);
        if (buf == NULL)
            return ts_error(TS_ERR_OOM, "out of memory reading %s from %s", t->name, ck->dir);
        TS_CHECK(ckpt_read_shard(ck, t, sh, buf));
        int64_t soff = 0;
        for (size_t i = 0; i < sh->n_boxes; i++) {
            for (int j = 0; j < want->num_boxes; j++) {
                if (!ckpt_box_intersect(&sb[i], &want->boxes[j], ndim, &r))
                    continue;
                ckpt_box_copy((unsigned char *)buf + (size_t)soff * ss, &sb[i], sdt,
                              (unsigned char *)want->data + (size_t)woff[j] * ds, &want->boxes[j],
                              want->dtype, &r, ndim);
                covered += ckpt_box_volume(&r, ndim);
            }
            soff += ckpt_box_volume(&sb[i], ndim);
        }
    }
    if (covered != wanted)
        return ts_error(TS_ERR_INTERNAL,
                        "checkpoint read %s: copied %" PRId64 " of %" PRId64 " elements", t->name,
                        covered, wanted);
    return TS_OK;
}

ts_status ts_ckpt_read_blob(ts_ckpt_t *ck, const char *name, int rank, void *buf, size_t cap,
                            size_t *size) {
    const Tessera__Ckpt__Blob *b = NULL;
    for (size_t i = 0; i < ck->m->n_blobs && b == NULL; i++)
        if (strcmp(ck->m->blobs[i]->name, name) == 0 && (int)ck->m->blobs[i]->rank == rank)
            b = ck->m->blobs[i];
    if (b == NULL)
        return ts_error(TS_ERR_FORMAT, "checkpoint %s has no state '%s' of rank %d", ck->dir, name,
                        rank);
    *size = (size_t)b->size;
    if (buf == NULL || cap < b->size)
        return buf == NULL ? TS_OK
                           : ts_error(TS_ERR_INVALID_ARG,
                                      "checkpoint %s: state '%s' is %zu bytes, the buffer %zu",
                                      ck->dir, name, (size_t)b->size, cap);
    hid_t f;
    char path[TS_PATH_MAX], dname[TS_CKPT_NAME_LEN + 16];
    TS_CHECK(ckpt_rank_file(ck, b->rank, &f, path, sizeof(path)));
    snprintf(dname, sizeof(dname), "%s/%s", CKPT_BLOBS, name);
    TS_CHECK(ckpt_h5_read_bytes(f, path, dname, buf, (size_t)b->size));
    if (ts_crc32c(0, buf, (size_t)b->size) != b->crc32c)
        return ts_error(TS_ERR_FORMAT,
                        "%s: checksum mismatch in state '%s' (the file is damaged; use another "
                        "checkpoint)",
                        path, name);
    return TS_OK;
}
