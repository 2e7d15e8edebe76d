/* save.c: the collective, atomic two-phase save.
 *
 * Phase 0: rank 0 sweeps leftovers of interrupted saves, creates step_N.tmp-<id>/ and
 * broadcasts its name. Phase 1: every rank writes rank_RRRRR.h5 (its shards, its blobs, and
 * its own index: a Manifest of just those) and fsyncs it; the ranks agree that all succeeded.
 * Phase 2 (rank 0): merge the indexes into the manifest and check it (the boxes must tile every
 * tensor), write model.h5 by reading the table back out of the rank files (so any sharding
 * works), write manifest.pb last, fsync the directory, rename it to step_N, move `latest`,
 * prune. Every rank returns rank 0's verdict. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "checkpoint/ckpt_impl.h"
#include "kernels/fs.h"
#include "kernels/log.h"

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* What every rank gets wrong alike (no collective can run without it). */
static ts_status check_basics(const struct ts_ckpt_save_args *a) {
    if (a == NULL || a->dir == NULL || a->meta == NULL || a->comm == NULL)
        return ts_error(TS_ERR_INVALID_ARG, "checkpoint save: dir, meta, comm are required");
    const size_t len = strlen(a->dir);
    if (len + CKPT_NAME_RESERVE >= TS_PATH_MAX)
        return ts_error(TS_ERR_INVALID_ARG,
                        "checkpoint save: the directory path is %zu bytes, at most %d fit (%d of "
                        "the %d are for the names made under it): %.200s...",
                        len, TS_PATH_MAX - 1 - CKPT_NAME_RESERVE, CKPT_NAME_RESERVE,
                        TS_PATH_MAX - 1, a->dir);
    return TS_OK;
}

/* This rank's tensors and blobs: a rank may get them wrong alone, so the ranks agree on the
 * result before anything is written (no rank waits in a collective for one that gave up). */
static ts_status check_args(const struct ts_ckpt_save_args *a) {
    if ((a->num_tensors > 0 && a->tensors == NULL) || (a->num_blobs > 0 && a->blobs == NULL) ||
        a->num_tensors < 0 || a->num_blobs < 0)
        return ts_error(TS_ERR_INVALID_ARG, "checkpoint save: bad tensor or blob list");
    if (a->meta->step < 0)
        return ts_error(TS_ERR_INVALID_ARG, "checkpoint save: negative step");
    for (int i = 0; i < a->num_tensors; i++) {
        const struct ts_ckpt_tensor *t = &a->tensors[i];
        char s1[160], s2[80];
        if (!ckpt_name_ok(t->name))
            return ts_error(TS_ERR_INVALID_ARG, "checkpoint save: bad tensor name '%.96s'",
                            t->name);
        if (t->dtype != TS_DTYPE_F32 && t->dtype != TS_DTYPE_BF16)
            return ts_error(TS_ERR_INVALID_ARG, "checkpoint save %s: dtype must be f32 or bf16",
                            t->name);
        if (t->ndim < 1 || t->ndim > TS_MAX_DIMS || ckpt_shape_numel(t->ndim, t->shape) < 0)
            return ts_error(TS_ERR_INVALID_ARG, "checkpoint save %s: bad shape", t->name);
        if (t->num_boxes < 0 || t->num_boxes > TS_CKPT_MAX_BOXES)
            return ts_error(TS_ERR_INVALID_ARG, "checkpoint save %s: %d boxes", t->name,
                            t->num_boxes);
        for (int b = 0; b < t->num_boxes; b++)
            if (!ckpt_box_inside(&t->boxes[b], t->ndim, t->shape))
                return ts_error(TS_ERR_INVALID_ARG, "checkpoint save %s: box %s outside %s",
                                t->name, ckpt_box_str(&t->boxes[b], t->ndim, s1, sizeof(s1)),
                                ckpt_shape_str(t->ndim, t->shape, s2, sizeof(s2)));
        if (t->num_boxes > 0 && t->data == NULL)
            return ts_error(TS_ERR_INVALID_ARG, "checkpoint save %s: no data", t->name);
        for (int d = 0; d < t->ndim; d++)
            if (t->export_shape[d] < 0 || t->export_shape[d] > t->shape[d])
                return ts_error(TS_ERR_INVALID_ARG, "checkpoint save %s: export shape too big",
                                t->name);
        for (int j = 0; j < i; j++)
            if (strcmp(a->tensors[j].name, t->name) == 0)
                return ts_error(TS_ERR_INVALID_ARG, "checkpoint save: tensor %s listed twice",
                                t->name);
    }
    for (int i = 0; i < a->num_blobs; i++) {
        if (!ckpt_name_ok(a->blobs[i].name) || (a->blobs[i].size > 0 && !a->blobs[i].data))
            return ts_error(TS_ERR_INVALID_ARG, "checkpoint save: bad state blob '%.96s'",
                            a->blobs[i].name);
        for (int j = 0; j < i; j++)
            if (strcmp(a->blobs[j].name, a->blobs[i].name) == 0)
                return ts_error(TS_ERR_INVALID_ARG, "checkpoint save: state %s listed twice",
                                a->blobs[i].name);
    }
    return TS_OK;
}

/* Every rank learns whether any rank failed. A rank that did not fail gets a message. */
static ts_status agree(ts_comm_t *comm, ts_status mine, const char *phase) {
    double failed = mine != TS_OK ? 1.0 : 0.0;
    ts_status st = mine;
    TS_CHECK_KEEP(st, ts_comm_all_reduce_host(comm, &failed, 1, TS_REDUCE_MAX));
    if (mine != TS_OK)
        return mine;
    if (st != TS_OK)
        return ts_error_wrap(st, "checkpoint save, %s", phase);
    if (failed > 0)
        return ts_error(TS_ERR_COMM,
                        "checkpoint save: another rank failed while %s (see its log); nothing "
                        "was committed",
                        phase);
    return TS_OK;
}

/* ---- phase 1: this rank's file ---- */

struct index_storage {
    Tessera__Ckpt__Tensor *tensors;
    Tessera__Ckpt__Tensor **tensor_ptrs;
    Tessera__Ckpt__Shard *shards;
    Tessera__Ckpt__Shard **shard_ptrs;
    Tessera__Ckpt__Box *boxes;
    Tessera__Ckpt__Box **box_ptrs;
    Tessera__Ckpt__Blob *blobs;
    Tessera__Ckpt__Blob **blob_ptrs;
    Tessera__Ckpt__Layout layout;
    Tessera__Ckpt__RankFile file;
    Tessera__Ckpt__RankFile *file_ptr;
    char dtypes[2][8];
};

static void index_free(struct index_storage *s) {
    free(s->tensors);
    free(s->tensor_ptrs);
    free(s->shards);
    free(s->shard_ptrs);
    free(s->boxes);
    free(s->box_ptrs);
    free(s->blobs);
    free(s->blob_ptrs);
}

static ts_status write_rank_file(const struct ts_ckpt_save_args *a, const char *path, int rank,
                                 int world) {
    const size_t nt = (size_t)a->num_tensors, nb = (size_t)a->num_blobs;
    struct index_storage s = {0};
    s.tensors = calloc(nt + 1, sizeof(*s.tensors));
    s.tensor_ptrs = calloc(nt + 1, sizeof(*s.tensor_ptrs));
    s.shards = calloc(nt + 1, sizeof(*s.shards));
    s.shard_ptrs = calloc(nt + 1, sizeof(*s.shard_ptrs));
    s.boxes = calloc(nt * TS_CKPT_MAX_BOXES + 1, sizeof(*s.boxes));
    s.box_ptrs = calloc(nt * TS_CKPT_MAX_BOXES + 1, sizeof(*s.box_ptrs));
    s.blobs = calloc(nb + 1, sizeof(*s.blobs));
    s.blob_ptrs = calloc(nb + 1, sizeof(*s.blob_ptrs));
    ts_status st = TS_OK;
    hid_t f = H5I_INVALID_HID;
    unsigned char *packed = NULL;
    if (!s.tensors || !s.tensor_ptrs || !s.shards || !s.shard_ptrs || !s.boxes || !s.box_ptrs ||
        !s.blobs || !s.blob_ptrs) {
        st = ts_error(TS_ERR_OOM, "checkpoint save: out of memory");
        goto exit;
    }
    snprintf(s.dtypes[0], 8, "f32");
    snprintf(s.dtypes[1], 8, "bf16");
    TS_CHECK_GOTO(ckpt_h5_create(&f, path), st, exit);
    size_t written = 0; /* bytes since the last ckpt_writeback */
    Tessera__Ckpt__Manifest idx = TESSERA__CKPT__MANIFEST__INIT;
    for (size_t i = 0; i < nt; i++) {
        const struct ts_ckpt_tensor *t = &a->tensors[i];
        Tessera__Ckpt__Tensor *mt = &s.tensors[i];
        tessera__ckpt__tensor__init(mt);
        mt->name = (char *)t->name;
        mt->dtype = s.dtypes[t->dtype == TS_DTYPE_BF16];
        mt->n_shape = (size_t)t->ndim;
        mt->shape = (int64_t *)t->shape;
        s.tensor_ptrs[i] = mt;
        if (t->num_boxes == 0)
            continue;
        Tessera__Ckpt__Shard *sh = &s.shards[i];
        tessera__ckpt__shard__init(sh);
        int64_t numel = 0;
        for (int b = 0; b < t->num_boxes; b++) {
            Tessera__Ckpt__Box *bx = &s.boxes[i * TS_CKPT_MAX_BOXES + (size_t)b];
            tessera__ckpt__box__init(bx);
            bx->n_offset = bx->n_extent = (size_t)t->ndim;
            bx->offset = (int64_t *)t->boxes[b].offset;
            bx->extent = (int64_t *)t->boxes[b].extent;
            s.box_ptrs[i * TS_CKPT_MAX_BOXES + (size_t)b] = bx;
            numel += ckpt_box_volume(&t->boxes[b], t->ndim);
        }
        sh->rank = (uint32_t)rank;
        sh->n_boxes = (size_t)t->num_boxes;
        sh->boxes = &s.box_ptrs[i * TS_CKPT_MAX_BOXES];
        sh->numel = (uint64_t)numel;
        sh->crc32c = ts_crc32c(0, t->data, (size_t)numel * ts_dtype_size(t->dtype));
        s.shard_ptrs[i] = sh;
        mt->n_shards = 1;
        mt->shards = &s.shard_ptrs[i];
        TS_CHECK_GOTO(ckpt_h5_write(f, path, t->name, t->dtype, t->data, 1, &numel), st, exit);
        written += (size_t)numel * ts_dtype_size(t->dtype);
        ckpt_writeback(path, &written, false); /* the disk starts while we go on copying */
    }
    for (size_t i = 0; i < nb; i++) {
        const struct ts_ckpt_blob *b = &a->blobs[i];
        char dname[TS_CKPT_NAME_LEN + 16];
        snprintf(dname, sizeof(dname), "%s/%s", CKPT_BLOBS, b->name);
        tessera__ckpt__blob__init(&s.blobs[i]);
        s.blobs[i].name = (char *)b->name;
        s.blobs[i].rank = (uint32_t)rank;
        s.blobs[i].size = b->size;
        s.blobs[i].crc32c = ts_crc32c(0, b->data, b->size);
        s.blob_ptrs[i] = &s.blobs[i];
        TS_CHECK_GOTO(ckpt_h5_write_bytes(f, path, dname, b->data, b->size), st, exit);
    }
    idx.n_tensors = nt;
    idx.tensors = s.tensor_ptrs;
    idx.n_blobs = nb;
    idx.blobs = s.blob_ptrs;
    tessera__ckpt__layout__init(&s.layout);
    s.layout.world_size = (uint32_t)world;
    idx.layout = &s.layout;
    idx.step = a->meta->step;
    size_t len = 0;
    TS_CHECK_GOTO(ckpt_manifest_pack(&idx, &packed, &len), st, exit);
    TS_CHECK_GOTO(ckpt_h5_write_bytes(f, path, CKPT_INDEX, packed, len), st, exit);
    char note[128];
    snprintf(note, sizeof(note), "Tessera checkpoint rank %d of %d, step %" PRId64, rank, world,
             a->meta->step);
    TS_CHECK_GOTO(ckpt_h5_attr_str(f, path, "tessera", note), st, exit);
    hid_t closing = f;
    f = H5I_INVALID_HID;
    TS_CHECK_GOTO(ckpt_h5_close(closing, path), st, exit); /* fsync'ed by the caller */
    ckpt_writeback(path, &written, true);                  /* the rest, while model.h5 is written */
exit:
    if (f >= 0)
        H5Fclose(f);
    free(packed);
    index_free(&s);
    return st;
}

/* ---- phase 2 (rank 0): manifest and model.h5 ---- */

struct merged {
    Tessera__Ckpt__Manifest m;
    Tessera__Ckpt__Manifest **idx; /* per rank, unpacked */
    int world;
    Tessera__Ckpt__Tensor *tensors;
    Tessera__Ckpt__Tensor **tensor_ptrs;
    Tessera__Ckpt__Shard **shard_ptrs;
    Tessera__Ckpt__Blob **blob_ptrs;
    Tessera__Ckpt__RankFile *files;
    Tessera__Ckpt__RankFile **file_ptrs;
    char (*file_names)[32];
    uint32_t *index_crc;
    uint64_t *index_bytes;
    Tessera__Ckpt__ModelFile model;
    bool meta_set;
};

static void merged_free(struct merged *g) {
    if (g->meta_set)
        ckpt_manifest_free_meta(&g->m);
    if (g->idx != NULL)
        for (int r = 0; r < g->world; r++)
            if (g->idx[r] != NULL)
                tessera__ckpt__manifest__free_unpacked(g->idx[r], NULL);
    free(g->idx);
    free(g->tensors);
    free(g->tensor_ptrs);
    free(g->shard_ptrs);
    free(g->blob_ptrs);
    free(g->files);
    free(g->file_ptrs);
    free(g->file_names);
    free(g->index_crc);
    free(g->index_bytes);
}

static ts_status read_index(const char *path, Tessera__Ckpt__Manifest **out, uint32_t *crc,
                            uint64_t *bytes) {
    hid_t f;
    TS_CHECK(ckpt_h5_open(&f, path));
    size_t n = 0;
    unsigned char *buf = NULL;
    ts_status st = ckpt_h5_bytes_size(f, path, CKPT_INDEX, &n);
    if (st == TS_OK && (buf = malloc(n ? n : 1)) == NULL)
        st = ts_error(TS_ERR_OOM, "out of memory reading %s", path);
    if (st == TS_OK)
        st = ckpt_h5_read_bytes(f, path, CKPT_INDEX, buf, n);
    H5Fclose(f);
    if (st == TS_OK) {
        *crc = ts_crc32c(0, buf, n); /* so verify checks the index like every other dataset */
        *bytes = n;
        st = ckpt_manifest_unpack(buf, n, path, out);
    }
    free(buf);
    return st;
}

static ts_status merge(struct merged *g, const struct ts_ckpt_save_args *a, const char *tmp,
                       const struct ts_ckpt_meta *meta) {
    const int world = g->world;
    g->idx = calloc((size_t)world, sizeof(*g->idx));
    g->index_crc = calloc((size_t)world, sizeof(*g->index_crc));
    g->index_bytes = calloc((size_t)world, sizeof(*g->index_bytes));
    if (g->idx == NULL || g->index_crc == NULL || g->index_bytes == NULL)
        return ts_error(TS_ERR_OOM, "checkpoint save: out of memory");
    size_t nshards = 0, nblobs = 0;
    for (int r = 0; r < world; r++) {
        char path[TS_PATH_MAX];
        TS_CHECK(ts_path_fmt(path, sizeof(path), "%s/rank_%05d.h5", tmp, r));
        TS_CHECK(read_index(path, &g->idx[r], &g->index_crc[r], &g->index_bytes[r]));
        if (g->idx[r]->n_tensors != (size_t)a->num_tensors)
            return ts_error(TS_ERR_INVALID_ARG,
                            "checkpoint save: rank %d saved %zu tensors, rank 0 %d (every rank "
                            "must list the same tensors)",
                            r, g->idx[r]->n_tensors, a->num_tensors);
        for (size_t i = 0; i < g->idx[r]->n_tensors; i++) {
            if (strcmp(g->idx[r]->tensors[i]->name, a->tensors[i].name) != 0)
                return ts_error(TS_ERR_INVALID_ARG,
                                "checkpoint save: rank %d lists tensor %s where rank 0 lists %s", r,
                                g->idx[r]->tensors[i]->name, a->tensors[i].name);
            nshards += g->idx[r]->tensors[i]->n_shards;
        }
        nblobs += g->idx[r]->n_blobs;
    }
    const size_t nt = (size_t)a->num_tensors;
    g->tensors = calloc(nt + 1, sizeof(*g->tensors));
    g->tensor_ptrs = calloc(nt + 1, sizeof(*g->tensor_ptrs));
    g->shard_ptrs = calloc(nshards + 1, sizeof(*g->shard_ptrs));
    g->blob_ptrs = calloc(nblobs + 1, sizeof(*g->blob_ptrs));
    g->files = calloc((size_t)world, sizeof(*g->files));
    g->file_ptrs = calloc((size_t)world, sizeof(*g->file_ptrs));
    g->file_names = calloc((size_t)world, sizeof(*g->file_names));
    if (!g->tensors || !g->tensor_ptrs || !g->shard_ptrs || !g->blob_ptrs || !g->files ||
        !g->file_ptrs || !g->file_names)
        return ts_error(TS_ERR_OOM, "checkpoint save: out of memory");
    size_t at = 0, bat = 0;
    for (size_t i = 0; i < nt; i++) {
        g->tensors[i] = *g->idx[0]->tensors[i];
        g->tensors[i].shards = &g->shard_ptrs[at];
        g->tensors[i].n_shards = 0;
        for (int r = 0; r < world; r++) {
            const Tessera__Ckpt__Tensor *t = g->idx[r]->tensors[i];
            for (size_t s = 0; s < t->n_shards; s++)
                g->shard_ptrs[at++] = t->shards[s];
            g->tensors[i].n_shards += t->n_shards;
        }
        g->tensor_ptrs[i] = &g->tensors[i];
    }
    for (int r = 0; r < world; r++) {
        for (size_t b = 0; b < g->idx[r]->n_blobs; b++)
            g->blob_ptrs[bat++] = g->idx[r]->blobs[b];
        char path[TS_PATH_MAX];
        struct stat sb;
        snprintf(g->file_names[r], sizeof(g->file_names[r]), "rank_%05d.h5", r);
        TS_CHECK(ts_path_join(path, sizeof(path), tmp, g->file_names[r]));
        tessera__ckpt__rank_file__init(&g->files[r]);
        g->files[r].rank = (uint32_t)r;
        g->files[r].file = g->file_names[r];
        g->files[r].bytes = stat(path, &sb) == 0 ? (uint64_t)sb.st_size : 0;
        g->files[r].index_crc32c = g->index_crc[r];
        g->files[r].index_bytes = g->index_bytes[r];
        g->file_ptrs[r] = &g->files[r];
    }
    tessera__ckpt__manifest__init(&g->m);
    TS_CHECK(ckpt_meta_to_manifest(meta, &g->m));
    g->meta_set = true;
    g->m.layout->world_size = (uint32_t)world;
    g->m.n_tensors = nt;
    g->m.tensors = g->tensor_ptrs;
    g->m.n_blobs = nblobs;
    g->m.blobs = g->blob_ptrs;
    g->m.n_files = (size_t)world;
    g->m.files = g->file_ptrs;
    return ckpt_manifest_check(&g->m, "checkpoint save");
}

static ts_status commit(const struct ts_ckpt_save_args *a, const char *tmp, const char *final_name,
                        int world, const struct ts_ckpt_meta *meta, struct ckpt_model_out *mo) {
    struct merged g = {.world = world};
    unsigned char *packed = NULL;
    size_t len = 0;
    char path[TS_PATH_MAX], final_path[TS_PATH_MAX];
    ts_status st;
    const double t0 = now_s();
    TS_CHECK_GOTO(merge(&g, a, tmp, meta), st, exit);
    const double t1 = now_s();
    if (a->model_table != NULL) {
        TS_CHECK_GOTO(ckpt_model_finish(mo, &g.m, a, tmp, &g.model), st, exit);
        g.m.model = &g.model;
    }
    const double t2 = now_s();
    TS_CHECK_GOTO(ckpt_manifest_pack(&g.m, &packed, &len), st, exit);
    TS_CHECK_GOTO(ts_path_join(path, sizeof(path), tmp, CKPT_MANIFEST), st, exit);
    TS_CHECK_GOTO(ckpt_write_file_sync(path, packed, len), st, exit);
    TS_CHECK_GOTO(ckpt_fsync_dir(tmp), st, exit);
    TS_CHECK_GOTO(ts_path_join(final_path, sizeof(final_path), a->dir, final_name), st, exit);
    if (ckpt_path_exists(final_path))
        TS_CHECK_GOTO(ckpt_remove_dir(a->dir, final_name), st, exit);
    if (rename(tmp, final_path) != 0) {
        st = ts_error(TS_ERR_IO, "cannot rename %s to %s: %s", tmp, final_path, strerror(errno));
        goto exit;
    }
    TS_CHECK_GOTO(ckpt_fsync_dir(a->dir), st, exit);
    TS_CHECK_GOTO(ckpt_set_latest(a->dir, final_name), st, exit);
    const double t3 = now_s();
    TS_CHECK_GOTO(ckpt_prune(a->dir, a->keep_last, final_name, a->owned), st, exit);
    TS_LOG_D("checkpoint commit: manifest merge %.2f s, model.h5 %.2f s, manifest and rename "
             "%.2f s, pruning %.2f s",
             t1 - t0, t2 - t1, t3 - t2, now_s() - t3);
exit:
    free(packed);
    merged_free(&g);
    return st;
}

/* ---- the phases, as the writer (writer.c) and ts_ckpt_save run them ---- */

ts_status ckpt_save_prepare(struct ckpt_save_job *j, const struct ts_ckpt_save_args *a) {
    TS_CHECK(check_basics(a));
    *j = (struct ckpt_save_job){.args = *a, .mo = {.f = H5I_INVALID_HID}};
    const int rank = ts_comm_rank(a->comm);
    j->rank = rank;
    j->world = ts_comm_size(a->comm);
    j->t_begin = now_s();
    snprintf(j->final_name, sizeof(j->final_name), "step_%08" PRId64, a->meta->step);
    ts_status st = check_args(a);
    if (st == TS_OK && rank == 0) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        snprintf(j->tmp_name, sizeof(j->tmp_name), "%s.tmp-%ld-%ld", j->final_name, (long)getpid(),
                 (long)ts.tv_nsec);
        st = ts_path_join(j->tmp, sizeof(j->tmp), a->dir, j->tmp_name);
        if (st == TS_OK)
            st = ts_fs_mkdirs(a->dir);
        if (st == TS_OK) {
            ckpt_remove_leftovers(a->dir);
            st = ts_fs_mkdirs(j->tmp);
        }
    }
    st = agree(a->comm, st, "checking its tensors or creating the checkpoint directory");
    if (st != TS_OK) {
        if (rank == 0 && j->tmp_name[0] != '\0')
            TS_CHECK_KEEP(st, ckpt_rm_rf(j->tmp)); /* best effort: the next save sweeps it */
        return st;
    }
    TS_CHECK(ts_comm_broadcast_host(a->comm, j->tmp_name, sizeof(j->tmp_name), 0));
    j->tmp_name[CKPT_TMP_NAME_LEN - 1] = '\0';
    /* cannot fail after check_basics; checked all the same, and agreed on after phase 1 */
    j->st = ts_path_join(j->tmp, sizeof(j->tmp), a->dir, j->tmp_name);
    if (j->st == TS_OK)
        j->st = ts_path_fmt(j->file, sizeof(j->file), "%s/rank_%05d.h5", j->tmp, rank);
    /* a copy of meta with what only save knows */
    j->meta = *a->meta;
    j->meta.created_unix = (int64_t)time(NULL);
    j->meta.layout.world_size = j->world;
    j->args.meta = &j->meta;
    return TS_OK;
}

ts_status ckpt_save_write(struct ckpt_save_job *j) {
    if (j->st != TS_OK)
        return j->st;
    ckpt_h5_quiet();
    const struct ts_ckpt_save_args *a = &j->args;
    const double ta = now_s();
    ts_status st = write_rank_file(a, j->file, j->rank, j->world);
    const double tb = now_s();
    /* model.h5 is written while the kernel writes the rank file back */
    if (st == TS_OK && j->rank == 0 && a->model_table != NULL)
        st = ckpt_model_begin(&j->mo, a, j->tmp);
    const double tc = now_s();
    if (st == TS_OK)
        st = ckpt_fsync_file(j->file);
    TS_LOG_D("checkpoint phase 1: directory %.2f s, rank file written %.2f s, model.h5 "
             "tensors %.2f s, rank file fsync %.2f s",
             ta - j->t_begin, tb - ta, tc - tb, now_s() - tc);
    return st;
}

ts_status ckpt_save_agree(struct ckpt_save_job *j, ts_status mine) {
    return agree(j->args.comm, mine, "writing its rank file");
}

ts_status ckpt_save_commit(struct ckpt_save_job *j) {
    ckpt_h5_quiet();
    const double t0 = now_s();
    const ts_status st = commit(&j->args, j->tmp, j->final_name, j->world, &j->meta, &j->mo);
    ckpt_model_free(&j->mo);
    if (st == TS_OK)
        TS_LOG_D("checkpoint step %" PRId64 ": commit (model.h5, manifest, rename) %.2f s",
                 j->meta.step, now_s() - t0);
    return st;
}

void ckpt_save_abandon(struct ckpt_save_job *j) {
    ckpt_model_free(&j->mo);
    if (j->rank == 0 && j->tmp_name[0] != '\0' && ckpt_rm_rf(j->tmp) != TS_OK)
        ts_error_clear(); /* best effort: the next save sweeps it */
}

ts_status ckpt_save_verdict(struct ckpt_save_job *j, ts_status mine) {
    int verdict = j->rank == 0 ? (int)mine : 0;
    ts_status st = mine;
    TS_CHECK_KEEP(st, ts_comm_broadcast_host(j->args.comm, &verdict, sizeof(verdict), 0));
    if (st != TS_OK)
        return st;
    if (verdict != TS_OK)
        return ts_error((ts_status)verdict,
                        "checkpoint save: rank 0 could not commit the checkpoint (see its log)");
    return TS_OK;
}

ts_status ts_ckpt_save(const struct ts_ckpt_save_args *a, char *path, size_t path_len) {
    struct ckpt_save_job *j = malloc(sizeof(*j));
    if (j == NULL)
        return ts_error(TS_ERR_OOM, "checkpoint save: out of memory");
    ts_status st = ckpt_save_prepare(j, a);
    if (st != TS_OK) {
        free(j);
        return st;
    }
    st = ckpt_save_agree(j, ckpt_save_write(j));
    if (st == TS_OK && j->rank == 0)
        st = ckpt_save_commit(j);
    if (st != TS_OK)
        ckpt_save_abandon(j);
    st = ckpt_save_verdict(j, st);
    if (st == TS_OK && path != NULL)
        st = ts_path_join(path, path_len, a->dir, j->final_name);
    free(j);
    return st;
}
