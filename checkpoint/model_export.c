/* model_export.c: model.h5, every tensor of one table whole, fp32, by its bare name.
 *
 * Rank 0 writes the tensors it holds whole straight from the caller's buffers while its rank
 * file is still being written back by the kernel (ckpt_model_begin, phase 1), so the two
 * overlap on the disk; tensors no single rank holds whole (tensor-parallel blocks) are read
 * back out of the committed rank files through the resharding reader once every rank has
 * reported (ckpt_model_finish, phase 2). Either way each entry's CRC32C is of the fp32 data as
 * stored, and the file is fsync'ed before the manifest that lists it is written. */
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "checkpoint/ckpt_impl.h"

static bool in_table(const struct ts_ckpt_tensor *t, const char *table) {
    const size_t n = strlen(table);
    return strncmp(t->name, table, n) == 0 && t->name[n] == '/';
}

/* Whether this rank holds all of t in one box. */
static bool whole(const struct ts_ckpt_tensor *t) {
    if (t->num_boxes != 1)
        return false;
    for (int d = 0; d < t->ndim; d++)
        if (t->boxes[0].offset[d] != 0 || t->boxes[0].extent[d] != t->shape[d])
            return false;
    return true;
}

void ckpt_model_free(struct ckpt_model_out *mo) {
    if (mo->f >= 0)
        H5Fclose(mo->f);
    mo->f = H5I_INVALID_HID;
    free(mo->entries);
    free(mo->ptrs);
    free(mo->shapes);
    free(mo->written);
    free(mo->buf);
    memset(mo, 0, sizeof(*mo));
    mo->f = H5I_INVALID_HID;
}

static ts_status grow(struct ckpt_model_out *mo, int64_t numel) {
    if ((size_t)numel <= mo->buf_elems)
        return TS_OK;
    float *g = realloc(mo->buf, (size_t)numel * sizeof(float));
    if (g == NULL)
        return ts_error(TS_ERR_OOM, "checkpoint save: out of memory for model.h5");
    mo->buf = g;
    mo->buf_elems = (size_t)numel;
    return TS_OK;
}

static ts_status put(struct ckpt_model_out *mo, const struct ts_ckpt_tensor *t, size_t k,
                     const float *data) {
    const int64_t *shape = &mo->shapes[k * TS_MAX_DIMS];
    const int64_t numel = ckpt_shape_numel(t->ndim, shape);
    const char *bare = strchr(t->name, '/') + 1;
    TS_CHECK(ckpt_h5_write(mo->f, mo->path, bare, TS_DTYPE_F32, data, t->ndim, shape));
    mo->pending += (size_t)numel * sizeof(float);
    ckpt_writeback(mo->path, &mo->pending, false);
    Tessera__Ckpt__ModelTensor *e = &mo->entries[k];
    tessera__ckpt__model_tensor__init(e);
    e->name = (char *)bare;
    e->source = (char *)t->name;
    e->n_shape = (size_t)t->ndim;
    e->shape = (int64_t *)shape;
    e->crc32c = ts_crc32c(0, data, (size_t)numel * sizeof(float));
    mo->ptrs[k] = e;
    mo->written[k] = true;
    return TS_OK;
}

/* t held whole by this rank: its export crop as fp32. */
static ts_status put_whole(struct ckpt_model_out *mo, const struct ts_ckpt_tensor *t, size_t k) {
    const int64_t *shape = &mo->shapes[k * TS_MAX_DIMS];
    bool prefix = t->dtype == TS_DTYPE_F32; /* a leading crop of dim 0 is a contiguous prefix */
    for (int d = 1; d < t->ndim; d++)
        prefix = prefix && shape[d] == t->shape[d];
    if (prefix)
        return put(mo, t, k, t->data);
    struct ts_ckpt_box crop;
    memset(&crop, 0, sizeof(crop));
    for (int d = 0; d < t->ndim; d++)
        crop.extent[d] = shape[d];
    TS_CHECK(grow(mo, ckpt_box_volume(&crop, t->ndim)));
    ckpt_box_copy(t->data, &t->boxes[0], t->dtype, mo->buf, &crop, TS_DTYPE_F32, &crop, t->ndim);
    return put(mo, t, k, mo->buf);
}

ts_status ckpt_model_begin(struct ckpt_model_out *mo, const struct ts_ckpt_save_args *a,
                           const char *tmp) {
    memset(mo, 0, sizeof(*mo));
    mo->f = H5I_INVALID_HID;
    size_t n = 0;
    for (int i = 0; i < a->num_tensors; i++)
        n += in_table(&a->tensors[i], a->model_table);
    mo->count = n;
    mo->entries = calloc(n + 1, sizeof(*mo->entries));
    mo->ptrs = calloc(n + 1, sizeof(*mo->ptrs));
    mo->shapes = calloc((n + 1) * TS_MAX_DIMS, sizeof(*mo->shapes));
    mo->written = calloc(n + 1, sizeof(*mo->written));
    if (!mo->entries || !mo->ptrs || !mo->shapes || !mo->written)
        return ts_error(TS_ERR_OOM, "checkpoint save: out of memory");
    TS_CHECK(ts_path_join(mo->path, sizeof(mo->path), tmp, CKPT_MODEL));
    TS_CHECK(ckpt_h5_create(&mo->f, mo->path));
    size_t k = 0;
    for (int i = 0; i < a->num_tensors; i++) {
        const struct ts_ckpt_tensor *t = &a->tensors[i];
        if (!in_table(t, a->model_table))
            continue;
        for (int d = 0; d < t->ndim; d++)
            mo->shapes[k * TS_MAX_DIMS + d] =
                t->export_shape[d] > 0 ? t->export_shape[d] : t->shape[d];
        if (whole(t))
            TS_CHECK(put_whole(mo, t, k));
        k++;
    }
    ckpt_writeback(mo->path, &mo->pending, true); /* on the disk during the rank file's fsync */
    return TS_OK;
}

ts_status ckpt_model_finish(struct ckpt_model_out *mo, const Tessera__Ckpt__Manifest *m,
                            const struct ts_ckpt_save_args *a, const char *tmp,
                            Tessera__Ckpt__ModelFile *out) {
    ts_status st = TS_OK;
    ts_ckpt_t *ck = NULL;
    size_t k = 0;
    for (int i = 0; i < a->num_tensors && st == TS_OK; i++) {
        const struct ts_ckpt_tensor *t = &a->tensors[i];
        if (!in_table(t, a->model_table))
            continue;
        if (mo->written[k]) {
            k++;
            continue;
        }
        if (ck == NULL) { /* a reader over what phase 1 wrote */
            unsigned char *packed = NULL;
            size_t len = 0;
            Tessera__Ckpt__Manifest *copy = NULL;
            st = ckpt_manifest_pack(m, &packed, &len);
            if (st == TS_OK)
                st = ckpt_manifest_unpack(packed, len, "checkpoint save", &copy);
            free(packed);
            if (st == TS_OK)
                st = ckpt_open_manifest(&ck, tmp, copy);
            if (st != TS_OK)
                break;
        }
        struct ts_ckpt_tensor want = {.dtype = TS_DTYPE_F32, .ndim = t->ndim, .num_boxes = 1};
        snprintf(want.name, sizeof(want.name), "%s", t->name);
        for (int d = 0; d < t->ndim; d++) {
            want.shape[d] = t->shape[d];
            want.boxes[0].extent[d] = mo->shapes[k * TS_MAX_DIMS + d];
        }
        st = grow(mo, ckpt_box_volume(&want.boxes[0], t->ndim));
        want.data = mo->buf;
        if (st == TS_OK)
            st = ts_ckpt_read(ck, &want);
        if (st == TS_OK)
            st = put(mo, t, k, mo->buf);
        k++;
    }
    ts_ckpt_close(ck);
    TS_CHECK(st);
    char note[128];
    snprintf(note, sizeof(note), "Tessera model weights, fp32, table %s", a->model_table);
    TS_CHECK(ckpt_h5_attr_str(mo->f, mo->path, "tessera", note));
    const hid_t f = mo->f;
    mo->f = H5I_INVALID_HID;
    TS_CHECK(ckpt_h5_close(f, mo->path));
    TS_CHECK(ckpt_fsync_file(mo->path));
    struct stat sb;
    tessera__ckpt__model_file__init(out);
    out->file = (char *)CKPT_MODEL;
    out->table = (char *)a->model_table;
    out->bytes = stat(mo->path, &sb) == 0 ? (uint64_t)sb.st_size : 0;
    out->n_tensors = mo->count;
    out->tensors = mo->ptrs;
    return TS_OK;
}
