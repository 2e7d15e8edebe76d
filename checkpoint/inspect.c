/* inspect.c: `tessera ckpt verify` and `tessera ckpt inspect`: checking every checksum of a
 * checkpoint, and describing it for a person (config, layout, progress, lineage, files). */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "checkpoint/ckpt_impl.h"
#include "kernels/fs.h"

static void report(FILE *out, const char *file, const char *what, ts_status st) {
    if (out == NULL)
        return;
    if (st == TS_OK)
        fprintf(out, "ok      %s: %s\n", file, what);
    else
        fprintf(out, "FAILED  %s: %s\n", file, ts_last_error());
}

static ts_status verify_rank(ts_ckpt_t *ck, uint32_t rank, FILE *out) {
    const Tessera__Ckpt__Manifest *m = ckpt_manifest_of(ck);
    char path[TS_PATH_MAX] = "", what[128];
    hid_t f;
    size_t tensors = 0, blobs = 0;
    uint64_t bytes = 0;
    ts_status st = ckpt_rank_file(ck, rank, &f, path, sizeof(path));
    for (size_t i = 0; st == TS_OK && i < m->n_tensors; i++) {
        const Tessera__Ckpt__Tensor *t = m->tensors[i];
        enum ts_dtype dt;
        (void)ckpt_dtype_parse(t->dtype, &dt);
        for (size_t s = 0; st == TS_OK && s < t->n_shards; s++) {
            const Tessera__Ckpt__Shard *sh = t->shards[s];
            if (sh->rank != rank)
                continue;
            void *buf = ckpt_scratch(ck, sh->numel * ts_dtype_size(dt));
            st = buf == NULL ? ts_error(TS_ERR_OOM, "out of memory verifying %s", t->name)
                             : ckpt_read_shard(ck, t, sh, buf);
            tensors++;
            bytes += sh->numel * ts_dtype_size(dt);
        }
    }
    for (size_t i = 0; st == TS_OK && i < m->n_blobs; i++) {
        if (m->blobs[i]->rank != rank)
            continue;
        size_t size;
        void *buf = ckpt_scratch(ck, m->blobs[i]->size);
        st = buf == NULL ? ts_error(TS_ERR_OOM, "out of memory verifying a blob")
                         : ts_ckpt_read_blob(ck, m->blobs[i]->name, (int)rank, buf,
                                             m->blobs[i]->size, &size);
        blobs++;
    }
    /* the rank's own index: its checksum where the save recorded one, else that it decodes */
    const Tessera__Ckpt__RankFile *rf = m->files[rank];
    size_t n = 0;
    if (st == TS_OK)
        st = ckpt_h5_bytes_size(f, path, CKPT_INDEX, &n);
    if (st == TS_OK && rf->index_bytes > 0 && n != rf->index_bytes)
        st = ts_error(TS_ERR_FORMAT, "%s: %s holds %zu bytes, the manifest says %" PRIu64, path,
                      CKPT_INDEX, n, rf->index_bytes);
    unsigned char *ibuf = st == TS_OK ? ckpt_scratch(ck, n) : NULL;
    if (st == TS_OK && ibuf == NULL)
        st = ts_error(TS_ERR_OOM, "out of memory verifying %s", path);
    if (st == TS_OK)
        st = ckpt_h5_read_bytes(f, path, CKPT_INDEX, ibuf, n);
    if (st == TS_OK && rf->index_bytes > 0 && ts_crc32c(0, ibuf, n) != rf->index_crc32c)
        st = ts_error(TS_ERR_FORMAT,
                      "%s: checksum mismatch in %s (the rank's index; the file is damaged)", path,
                      CKPT_INDEX);
    if (st == TS_OK && rf->index_bytes == 0) {
        Tessera__Ckpt__Manifest *idx = NULL;
        st = ckpt_manifest_unpack(ibuf, n, path, &idx);
        if (idx != NULL)
            tessera__ckpt__manifest__free_unpacked(idx, NULL);
    }
    snprintf(what, sizeof(what), "%zu tensor shards (%.1f MB), %zu state blobs, index%s", tensors,
             (double)bytes / 1e6, blobs,
             rf->index_bytes > 0 ? "" : " (decoded; no checksum recorded)");
    report(out, path, what, st);
    return st;
}

static ts_status verify_model(ts_ckpt_t *ck, FILE *out) {
    const Tessera__Ckpt__Manifest *m = ckpt_manifest_of(ck);
    if (m->model == NULL || m->model->file[0] == '\0')
        return TS_OK;
    char path[TS_PATH_MAX], what[64];
    hid_t f = H5I_INVALID_HID;
    ts_status st = ts_path_join(path, sizeof(path), ts_ckpt_path(ck), CKPT_MODEL);
    if (st == TS_OK)
        st = ckpt_h5_open(&f, path);
    for (size_t i = 0; st == TS_OK && i < m->model->n_tensors; i++) {
        const Tessera__Ckpt__ModelTensor *mt = m->model->tensors[i];
        const int64_t numel = ckpt_shape_numel((int)mt->n_shape, mt->shape);
        float *buf = ckpt_scratch(ck, (size_t)numel * sizeof(float));
        if (buf == NULL) {
            st = ts_error(TS_ERR_OOM, "out of memory verifying %s", mt->name);
            break;
        }
        st = ckpt_h5_read(f, path, mt->name, TS_DTYPE_F32, buf, numel, (int)mt->n_shape, mt->shape);
        if (st == TS_OK && ts_crc32c(0, buf, (size_t)numel * sizeof(float)) != mt->crc32c)
            st = ts_error(TS_ERR_FORMAT,
                          "%s: checksum mismatch in tensor %s (the file is damaged; the rank "
                          "files still hold the weights)",
                          path, mt->name);
    }
    if (f >= 0)
        H5Fclose(f);
    snprintf(what, sizeof(what), "%zu fp32 tensors", m->model->n_tensors);
    report(out, path, what, st);
    return st;
}

ts_status ts_ckpt_verify(ts_ckpt_t *ck, FILE *out) {
    ckpt_h5_quiet();
    const Tessera__Ckpt__Manifest *m = ckpt_manifest_of(ck);
    ts_status first = TS_OK; /* every file is checked and reported; the first failure returned */
    for (uint32_t r = 0; r < (uint32_t)m->n_files; r++)
        TS_CHECK_KEEP(first, verify_rank(ck, r, out));
    TS_CHECK_KEEP(first, verify_model(ck, out));
    return first;
}

/* Whether the checkpoint at path opens and every checksum matches (the message when not). */
static ts_status open_and_verify(const char *path) {
    ts_ckpt_t *ck = NULL;
    TS_CHECK(ts_ckpt_open(&ck, path));
    const ts_status st = ts_ckpt_verify(ck, NULL);
    ts_ckpt_close(ck);
    return st;
}

static int cmp_name_desc(const void *a, const void *b) {
    return -strcmp((const char *)a, (const char *)b); /* same width: newest step first */
}

ts_status ts_ckpt_resolve_verified(const char *path, char *out, size_t out_len, char *note,
                                   size_t note_len) {
    if (note_len > 0)
        note[0] = '\0';
    TS_CHECK(ts_ckpt_resolve(path, out, out_len));
    if (open_and_verify(out) == TS_OK)
        return TS_OK;
    char first[TS_PATH_MAX], why[600], dir[TS_PATH_MAX];
    snprintf(why, sizeof(why), "%s", ts_last_error());
    TS_CHECK(ts_path_fmt(first, sizeof(first), "%s", out));
    TS_CHECK(ts_path_fmt(dir, sizeof(dir), "%s", out));
    char *slash = strrchr(dir, '/');
    if (slash != NULL)
        *slash = '\0';
    struct ts_ckpt_names l = {0};
    ts_status st = ts_ckpt_names_scan(&l, dir, INT64_MAX);
    if (st == TS_OK && l.n > 1)
        qsort(l.name, (size_t)l.n, sizeof(l.name[0]), cmp_name_desc);
    bool found = false;
    for (int i = 0; st == TS_OK && i < l.n && !found; i++) {
        st = ts_path_join(out, out_len, dir, l.name[i]);
        if (st == TS_OK && strcmp(out, first) != 0)
            found = open_and_verify(out) == TS_OK;
    }
    ts_ckpt_names_deinit(&l);
    TS_CHECK(st);
    if (!found)
        return ts_error(TS_ERR_FORMAT, "no checkpoint in %s verifies; the newest, %s: %s", dir,
                        first, why);
    snprintf(note, note_len,
             "%s is damaged (%.400s); falling back to %s, the newest checkpoint "
             "that verifies",
             first, why, out);
    return TS_OK;
}

static void print_kv(FILE *out, const char *title, const struct ts_ckpt_kv *kv, int n) {
    fprintf(out, "%s:", title);
    for (int i = 0; i < n; i++)
        fprintf(out, "%s%s=%s", i % 6 == 0 ? "\n  " : "  ", kv[i].key, kv[i].value);
    fprintf(out, "\n");
}

/* The boxes of the first table's tensors stored in more than one box (tensor-parallel blocks,
 * ZeRO slices), a few of them: how the layout cut them. */
static void describe_boxes(const Tessera__Ckpt__Manifest *m, FILE *out) {
    enum { SHOWN = 6 };
    if (m->n_tensors == 0)
        return;
    const char *first = m->tensors[0]->name;
    const size_t plen = strcspn(first, "/");
    size_t cut = 0, shown = 0;
    for (size_t i = 0; i < m->n_tensors; i++) {
        const Tessera__Ckpt__Tensor *t = m->tensors[i];
        size_t boxes = 0;
        for (size_t k = 0; k < t->n_shards; k++)
            boxes += t->shards[k]->n_boxes;
        if (strncmp(t->name, first, plen) != 0 || t->name[plen] != '/' || boxes <= 1)
            continue;
        if (cut++ == 0)
            fprintf(out, "boxes of the %.*s tensors stored in more than one box:\n", (int)plen,
                    first);
        if (shown == SHOWN)
            continue;
        shown++;
        char s1[80], s2[160];
        fprintf(out, "  %s %s:", t->name + plen + 1,
                ckpt_shape_str((int)t->n_shape, t->shape, s1, sizeof(s1)));
        for (size_t k = 0; k < t->n_shards; k++) {
            const Tessera__Ckpt__Shard *sh = t->shards[k];
            struct ts_ckpt_box b[TS_CKPT_MAX_BOXES];
            ckpt_shard_boxes(sh, b);
            fprintf(out, "%s rank %u", k ? ";" : "", sh->rank);
            for (size_t j = 0; j < sh->n_boxes; j++)
                fprintf(out, " %s", ckpt_box_str(&b[j], (int)t->n_shape, s2, sizeof(s2)));
        }
        fprintf(out, "\n");
    }
    if (cut > shown)
        fprintf(out, "  ... and %zu more\n", cut - shown);
}

void ts_ckpt_describe(const ts_ckpt_t *ck, FILE *out) {
    const Tessera__Ckpt__Manifest *m = ckpt_manifest_of(ck);
    const struct ts_ckpt_meta *meta = ts_ckpt_meta(ck);
    char when[64] = "?";
    const time_t created = (time_t)meta->created_unix;
    struct tm tmv;
    if (gmtime_r(&created, &tmv) != NULL)
        strftime(when, sizeof(when), "%Y-%m-%d %H:%M:%S UTC", &tmv);
    fprintf(out, "checkpoint: %s\n", ts_ckpt_path(ck));
    fprintf(out, "format:     %d, written by tessera %s at %s\n", TS_CKPT_FORMAT_VERSION,
            meta->build_version[0] ? meta->build_version : "?", when);
    fprintf(out,
            "progress:   step %" PRId64 ", %" PRId64 " tokens seen, global batch %" PRId64
            " sequences, loader position %" PRId64 " windows\n",
            meta->step, meta->tokens_seen, meta->global_batch, meta->loader_position);
    fprintf(out, "layout:     world %d, data-parallel %d, tensor-parallel %d, ZeRO stage %d\n",
            meta->layout.world_size, meta->layout.dp, meta->layout.tp, meta->layout.zero_stage);
    print_kv(out, "model", meta->model, meta->num_model);
    print_kv(out, "training", meta->train, meta->num_train);
    fprintf(out, "lineage:\n  parent: %s\n", meta->parent[0] ? meta->parent : "(fresh start)");
    if (meta->data_manifest[0] || meta->data_manifest_hash[0])
        fprintf(out, "  data manifest: %s %s\n", meta->data_manifest, meta->data_manifest_hash);
    for (int i = 0; i < meta->num_data; i++)
        fprintf(out, "  data: %s (%" PRIu64 " bytes) %s\n", meta->data[i].path, meta->data[i].bytes,
                meta->data[i].hash);
    fprintf(out, "files:\n");
    uint64_t total = 0;
    for (size_t r = 0; r < m->n_files; r++) {
        fprintf(out, "  %-16s %10.1f MB\n", m->files[r]->file, (double)m->files[r]->bytes / 1e6);
        total += m->files[r]->bytes;
    }
    if (m->model != NULL && m->model->file[0]) {
        fprintf(out, "  %-16s %10.1f MB  (%zu tensors of table %s, fp32)\n", m->model->file,
                (double)m->model->bytes / 1e6, m->model->n_tensors, m->model->table);
        total += m->model->bytes;
    }
    fprintf(out, "  total            %10.1f MB\n", (double)total / 1e6);
    /* tables: the part of each name before '/' */
    fprintf(out, "tables:\n");
    for (size_t i = 0; i < m->n_tensors; i++) {
        const char *name = m->tensors[i]->name;
        const size_t plen = strcspn(name, "/");
        bool seen = false;
        for (size_t j = 0; j < i && !seen; j++)
            seen =
                strncmp(m->tensors[j]->name, name, plen) == 0 && m->tensors[j]->name[plen] == '/';
        if (seen || name[plen] != '/')
            continue;
        size_t count = 0, shards = 0, boxes = 0;
        int64_t elems = 0;
        const char *dtype = m->tensors[i]->dtype;
        for (size_t j = i; j < m->n_tensors; j++) {
            const Tessera__Ckpt__Tensor *t = m->tensors[j];
            if (strncmp(t->name, name, plen) != 0 || t->name[plen] != '/')
                continue;
            count++;
            elems += ckpt_shape_numel((int)t->n_shape, t->shape);
            shards += t->n_shards;
            for (size_t k = 0; k < t->n_shards; k++)
                boxes += t->shards[k]->n_boxes;
        }
        fprintf(out,
                "  %-10.*s %4zu tensors, %12" PRId64 " elements, %s, %zu boxes in %zu shards\n",
                (int)plen, name, count, elems, dtype, boxes, shards);
    }
    describe_boxes(m, out);
    fprintf(out, "state blobs:");
    for (size_t i = 0; i < m->n_blobs; i++)
        fprintf(out, " %s@%u (%" PRIu64 " B)", m->blobs[i]->name, m->blobs[i]->rank,
                m->blobs[i]->size);
    fprintf(out, "\n");
}
