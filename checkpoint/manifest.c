/* manifest.c: the manifest's envelope (format version + CRC32C), its bounds checks, and the
 * conversion between struct ts_ckpt_meta and the protobuf message.
 *
 * Nothing read from a manifest is trusted: ckpt_manifest_check bounds every count, name, shape
 * and box and proves that each tensor's boxes tile its global shape exactly once, so the
 * readers afterwards can index without further checks. */
#define _GNU_SOURCE /* qsort_r */
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "checkpoint/ckpt_impl.h"

ts_status ts_ckpt_kv_add(struct ts_ckpt_kv *kv, int *n, const char *key, const char *fmt, ...) {
    if (*n >= TS_CKPT_MAX_KV)
        return ts_error(TS_ERR_INVALID_ARG, "checkpoint metadata: more than %d entries",
                        TS_CKPT_MAX_KV);
    if (strlen(key) >= sizeof(kv->key))
        return ts_error(TS_ERR_INVALID_ARG, "checkpoint metadata: key %s too long", key);
    struct ts_ckpt_kv *e = &kv[*n];
    snprintf(e->key, sizeof(e->key), "%s", key);
    va_list ap;
    va_start(ap, fmt);
    const int len = vsnprintf(e->value, sizeof(e->value), fmt, ap);
    va_end(ap);
    if (len < 0 || len >= (int)sizeof(e->value))
        return ts_error(TS_ERR_INVALID_ARG, "checkpoint metadata: value of %s too long", key);
    (*n)++;
    return TS_OK;
}

const char *ts_ckpt_kv_get(const struct ts_ckpt_kv *kv, int n, const char *key) {
    for (int i = 0; i < n; i++)
        if (strcmp(kv[i].key, key) == 0)
            return kv[i].value;
    return NULL;
}

ts_status ckpt_manifest_pack(const Tessera__Ckpt__Manifest *m, unsigned char **out, size_t *len) {
    *out = NULL;
    const size_t inner_len = tessera__ckpt__manifest__get_packed_size(m);
    unsigned char *inner = malloc(inner_len ? inner_len : 1);
    if (inner == NULL)
        return ts_error(TS_ERR_OOM, "out of memory packing the manifest");
    tessera__ckpt__manifest__pack(m, inner);
    Tessera__Ckpt__Envelope env = TESSERA__CKPT__ENVELOPE__INIT;
    env.format_version = TS_CKPT_FORMAT_VERSION;
    env.manifest.data = inner;
    env.manifest.len = inner_len;
    env.crc32c = ts_crc32c(0, inner, inner_len);
    *len = tessera__ckpt__envelope__get_packed_size(&env);
    *out = malloc(*len);
    if (*out == NULL) {
        free(inner);
        return ts_error(TS_ERR_OOM, "out of memory packing the manifest");
    }
    tessera__ckpt__envelope__pack(&env, *out);
    free(inner);
    return TS_OK;
}

/* protobuf-c's allocations during an unpack, counted against a budget: a small crafted message
 * whose repeated fields ask for huge arrays fails the unpack instead of taking the memory.
 * Frees are not refunded (the budget bounds the total asked for), so what the unpack returns is
 * plain malloc'ed memory that tessera__ckpt__manifest__free_unpacked(m, NULL) frees. */
struct budget {
    size_t left;
};

static void *budget_alloc(void *ctx, size_t n) {
    struct budget *b = ctx;
    if (n > b->left)
        return NULL;
    b->left -= n;
    return malloc(n ? n : 1);
}

static void budget_free(void *ctx, void *ptr) {
    (void)ctx;
    free(ptr);
}

ts_status ckpt_manifest_unpack(const unsigned char *buf, size_t len, const char *what,
                               Tessera__Ckpt__Manifest **out) {
    *out = NULL;
    if (len > CKPT_MAX_MANIFEST)
        return ts_error(TS_ERR_FORMAT, "%s: %zu bytes, more than a manifest's %u", what, len,
                        CKPT_MAX_MANIFEST);
    struct budget bud = {(size_t)CKPT_UNPACK_FACTOR * len + 65536};
    ProtobufCAllocator alloc = {budget_alloc, budget_free, &bud};
    Tessera__Ckpt__Envelope *env = tessera__ckpt__envelope__unpack(&alloc, len, buf);
    if (env == NULL)
        return ts_error(TS_ERR_FORMAT,
                        "%s is not a Tessera manifest (truncated or damaged: use another "
                        "checkpoint)",
                        what);
    ts_status st = TS_OK;
    if (env->format_version != TS_CKPT_FORMAT_VERSION) {
        st = ts_error(TS_ERR_FORMAT,
                      "%s has manifest format version %u; this build of Tessera reads version %d "
                      "(use the Tessera that wrote it, or a newer one)",
                      what, env->format_version, TS_CKPT_FORMAT_VERSION);
    } else if (ts_crc32c(0, env->manifest.data, env->manifest.len) != env->crc32c) {
        st = ts_error(TS_ERR_FORMAT,
                      "%s: manifest checksum mismatch (the file is damaged; use another "
                      "checkpoint)",
                      what);
    } else {
        *out = tessera__ckpt__manifest__unpack(&alloc, env->manifest.len, env->manifest.data);
        if (*out == NULL)
            st = ts_error(TS_ERR_FORMAT,
                          "%s: the manifest does not decode (damaged, or it asks for more than "
                          "%d times its %zu bytes of memory)",
                          what, CKPT_UNPACK_FACTOR, len);
    }
    tessera__ckpt__envelope__free_unpacked(env, &alloc);
    return st;
}

void ckpt_shard_boxes(const Tessera__Ckpt__Shard *s, struct ts_ckpt_box *boxes) {
    for (size_t b = 0; b < s->n_boxes; b++)
        for (size_t d = 0; d < s->boxes[b]->n_offset; d++) {
            boxes[b].offset[d] = s->boxes[b]->offset[d];
            boxes[b].extent[d] = s->boxes[b]->extent[d];
        }
}

/* The overlap check sorts the boxes by their offset in one dimension; a box can then only meet
 * the boxes that start inside its extent there. */
static int cmp_offset(const void *a, const void *b, void *dim) {
    const int d = *(const int *)dim;
    const int64_t x = ((const struct ts_ckpt_box *)a)->offset[d];
    const int64_t y = ((const struct ts_ckpt_box *)b)->offset[d];
    return (x > y) - (x < y);
}

/* Box pairs a sweep along d would test: for each box, the boxes starting inside its extent. */
static int64_t sweep_pairs(struct ts_ckpt_box *all, size_t n, int d) {
    qsort_r(all, n, sizeof(*all), cmp_offset, &d);
    int64_t pairs = 0;
    for (size_t i = 0; i < n; i++) {
        const int64_t end = all[i].offset[d] + all[i].extent[d];
        size_t lo = i + 1, hi = n; /* the first j with offset >= end */
        while (lo < hi) {
            const size_t mid = lo + (hi - lo) / 2;
            if (all[mid].offset[d] < end)
                lo = mid + 1;
            else
                hi = mid;
        }
        pairs += (int64_t)(lo - i - 1);
    }
    return pairs;
}

/* Whether any two boxes overlap, in about n log n for the boxes real layouts make: the sweep
 * runs along the dimension where the fewest pairs need a test (rows for ZeRO slices, columns for
 * tensor-parallel column blocks). A set needing more than CKPT_MAX_BOX_PAIRS tests in every
 * dimension is refused as too interleaved rather than checked for minutes. */
static ts_status check_disjoint(struct ts_ckpt_box *all, size_t n, int ndim, const char *what,
                                const char *name) {
    if (n < 2)
        return TS_OK;
    int best = 0;
    int64_t best_pairs = INT64_MAX;
    for (int d = 0; d < ndim; d++) {
        const int64_t p = sweep_pairs(all, n, d);
        if (p < best_pairs) {
            best_pairs = p;
            best = d;
        }
    }
    if (best_pairs > CKPT_MAX_BOX_PAIRS)
        return ts_error(TS_ERR_FORMAT,
                        "%s: tensor %s: its %zu boxes are too interleaved to check for overlaps "
                        "(%" PRId64 " pairs, at most %" PRId64 ")",
                        what, name, n, best_pairs, CKPT_MAX_BOX_PAIRS);
    qsort_r(all, n, sizeof(*all), cmp_offset, &best);
    for (size_t i = 0; i < n; i++)
        for (size_t j = i + 1;
             j < n && all[j].offset[best] < all[i].offset[best] + all[i].extent[best]; j++) {
            struct ts_ckpt_box r;
            if (ckpt_box_intersect(&all[i], &all[j], ndim, &r))
                return ts_error(TS_ERR_FORMAT, "%s: tensor %s has overlapping shards", what, name);
        }
    return TS_OK;
}

static ts_status check_tensor(const Tessera__Ckpt__Tensor *t, uint32_t world, const char *what) {
    enum ts_dtype dt;
    if (!ckpt_name_ok(t->name))
        return ts_error(TS_ERR_FORMAT, "%s: bad tensor name '%.100s'", what, t->name);
    if (!ckpt_dtype_parse(t->dtype, &dt))
        return ts_error(TS_ERR_FORMAT, "%s: tensor %s has unknown dtype '%.16s'", what, t->name,
                        t->dtype);
    const int ndim = (int)t->n_shape;
    const int64_t numel = ndim >= 1 && ndim <= TS_MAX_DIMS ? ckpt_shape_numel(ndim, t->shape) : -1;
    if (numel < 0)
        return ts_error(TS_ERR_FORMAT, "%s: tensor %s has an invalid shape", what, t->name);
    /* every box inside the shape, volumes adding up, and pairwise disjoint: an exact tiling */
    struct ts_ckpt_box *all = NULL;
    size_t nall = 0, cap = 0;
    int64_t covered = 0;
    ts_status st = TS_OK;
    for (size_t s = 0; s < t->n_shards && st == TS_OK; s++) {
        const Tessera__Ckpt__Shard *sh = t->shards[s];
        if (sh->rank >= world || sh->n_boxes > TS_CKPT_MAX_BOXES) {
            st = ts_error(TS_ERR_FORMAT, "%s: tensor %s has a shard of rank %u with %zu boxes",
                          what, t->name, sh->rank, sh->n_boxes);
            break;
        }
        int64_t vol = 0;
        for (size_t b = 0; b < sh->n_boxes && st == TS_OK; b++) {
            const Tessera__Ckpt__Box *bx = sh->boxes[b];
            if (bx->n_offset != (size_t)ndim || bx->n_extent != (size_t)ndim) {
                st = ts_error(TS_ERR_FORMAT, "%s: tensor %s has a box of the wrong rank", what,
                              t->name);
                break;
            }
            if (nall == cap) {
                cap = cap ? 2 * cap : 16;
                struct ts_ckpt_box *g = realloc(all, cap * sizeof(*all));
                if (g == NULL) {
                    st = ts_error(TS_ERR_OOM, "out of memory checking %s", what);
                    break;
                }
                all = g;
            }
            struct ts_ckpt_box *box = &all[nall++];
            for (int d = 0; d < ndim; d++) {
                box->offset[d] = bx->offset[d];
                box->extent[d] = bx->extent[d];
            }
            if (!ckpt_box_inside(box, ndim, t->shape)) {
                char b1[160], b2[80];
                st = ts_error(TS_ERR_FORMAT, "%s: tensor %s: box %s lies outside its shape %s",
                              what, t->name, ckpt_box_str(box, ndim, b1, sizeof(b1)),
                              ckpt_shape_str(ndim, t->shape, b2, sizeof(b2)));
                break;
            }
            vol += ckpt_box_volume(box, ndim);
        }
        if (st == TS_OK && (uint64_t)vol != sh->numel)
            st = ts_error(TS_ERR_FORMAT,
                          "%s: tensor %s: rank %u's boxes hold %" PRId64
                          " elements, the shard says %" PRIu64,
                          what, t->name, sh->rank, vol, sh->numel);
        covered += vol;
    }
    if (st == TS_OK && covered != numel)
        st = ts_error(TS_ERR_FORMAT,
                      "%s: the shards of tensor %s cover %" PRId64 " of its %" PRId64
                      " elements (each element must be saved by exactly one rank)",
                      what, t->name, covered, numel);
    if (st == TS_OK)
        st = check_disjoint(all, nall, ndim, what, t->name);
    free(all);
    return st;
}

static int cmp_tensor_name(const void *a, const void *b) {
    return strcmp((*(const Tessera__Ckpt__Tensor *const *)a)->name,
                  (*(const Tessera__Ckpt__Tensor *const *)b)->name);
}

static ts_status check_rest(const Tessera__Ckpt__Manifest *m, const Tessera__Ckpt__Tensor **byname,
                            uint32_t world, const char *what);

ts_status ckpt_manifest_check(const Tessera__Ckpt__Manifest *m, const char *what) {
    const uint32_t world = (uint32_t)m->n_files;
    if (world == 0 || world > 1u << 20)
        return ts_error(TS_ERR_FORMAT, "%s lists %zu rank files", what, m->n_files);
    if (m->layout == NULL || m->layout->world_size != world)
        return ts_error(TS_ERR_FORMAT, "%s: the layout's world size differs from its %u files",
                        what, world);
    if (m->step < 0 || m->tokens_seen < 0 || m->global_batch < 0 || m->loader_position < 0)
        return ts_error(TS_ERR_FORMAT, "%s: negative step, tokens or position", what);
    for (size_t i = 0; i < m->n_files; i++) {
        const Tessera__Ckpt__RankFile *f = m->files[i];
        char want[32];
        snprintf(want, sizeof(want), "rank_%05zu.h5", i);
        if (f->rank != i || strcmp(f->file, want) != 0)
            return ts_error(TS_ERR_FORMAT, "%s: rank file %zu is named '%.64s', expected %s", what,
                            i, f->file, want);
    }
    for (size_t i = 0; i < m->n_tensors; i++)
        TS_CHECK(check_tensor(m->tensors[i], world, what));
    /* names sorted once: duplicates are neighbours, and model.h5's sources a binary search */
    const Tessera__Ckpt__Tensor **byname = malloc((m->n_tensors + 1) * sizeof(*byname));
    if (byname == NULL)
        return ts_error(TS_ERR_OOM, "out of memory checking %s", what);
    if (m->n_tensors > 0) /* tensors is NULL without any (found by fuzz_ckpt_manifest) */
        memcpy(byname, m->tensors, m->n_tensors * sizeof(*byname));
    qsort(byname, m->n_tensors, sizeof(*byname), cmp_tensor_name);
    ts_status st = TS_OK;
    for (size_t i = 1; i < m->n_tensors && st == TS_OK; i++)
        if (strcmp(byname[i]->name, byname[i - 1]->name) == 0)
            st = ts_error(TS_ERR_FORMAT, "%s lists tensor %s twice", what, byname[i]->name);
    if (st == TS_OK)
        st = check_rest(m, byname, world, what);
    free(byname);
    return st;
}

static ts_status check_rest(const Tessera__Ckpt__Manifest *m, const Tessera__Ckpt__Tensor **byname,
                            uint32_t world, const char *what) {
    for (size_t i = 0; i < m->n_blobs; i++) {
        const Tessera__Ckpt__Blob *b = m->blobs[i];
        if (!ckpt_name_ok(b->name) || b->rank >= world || b->size > CKPT_MAX_BLOB)
            return ts_error(TS_ERR_FORMAT, "%s: bad blob '%.100s' (rank %u, %" PRIu64 " bytes)",
                            what, b->name, b->rank, b->size);
    }
    const Tessera__Ckpt__ModelFile *mf = m->model;
    if (mf != NULL && mf->file[0] != '\0') {
        if (strcmp(mf->file, CKPT_MODEL) != 0)
            return ts_error(TS_ERR_FORMAT, "%s: model file is named '%.64s'", what, mf->file);
        for (size_t i = 0; i < mf->n_tensors; i++) {
            const Tessera__Ckpt__ModelTensor *mt = mf->tensors[i];
            const Tessera__Ckpt__Tensor key = {.name = mt->source}, *pk = &key;
            const Tessera__Ckpt__Tensor **hit =
                bsearch(&pk, byname, m->n_tensors, sizeof(*byname), cmp_tensor_name);
            const Tessera__Ckpt__Tensor *src = hit != NULL ? *hit : NULL;
            if (!ckpt_name_ok(mt->name) || src == NULL || mt->n_shape != src->n_shape)
                return ts_error(TS_ERR_FORMAT, "%s: bad model.h5 entry '%.100s'", what, mt->name);
            for (size_t d = 0; d < mt->n_shape; d++)
                if (mt->shape[d] <= 0 || mt->shape[d] > src->shape[d])
                    return ts_error(TS_ERR_FORMAT, "%s: model.h5 entry %s exceeds its source", what,
                                    mt->name);
        }
    }
    return TS_OK;
}

/* meta -> manifest. Strings point into meta; arrays are malloc'ed (ckpt_manifest_free_meta). */
static Tessera__Ckpt__KeyValue **kv_array(const struct ts_ckpt_kv *kv, int n,
                                          Tessera__Ckpt__KeyValue *storage) {
    Tessera__Ckpt__KeyValue **arr = calloc((size_t)n + 1, sizeof(*arr));
    if (arr == NULL)
        return NULL;
    for (int i = 0; i < n; i++) {
        tessera__ckpt__key_value__init(&storage[i]);
        storage[i].key = (char *)kv[i].key;
        storage[i].value = (char *)kv[i].value;
        arr[i] = &storage[i];
    }
    return arr;
}

struct meta_storage {
    Tessera__Ckpt__Layout layout; /* first: m->layout points at the whole storage */
    Tessera__Ckpt__KeyValue model[TS_CKPT_MAX_KV], train[TS_CKPT_MAX_KV];
    Tessera__Ckpt__DataFile *data;
};

ts_status ckpt_meta_to_manifest(const struct ts_ckpt_meta *meta, Tessera__Ckpt__Manifest *m) {
    if (meta->num_model < 0 || meta->num_model > TS_CKPT_MAX_KV || meta->num_train < 0 ||
        meta->num_train > TS_CKPT_MAX_KV || meta->num_data < 0 ||
        (meta->num_data > 0 && meta->data == NULL))
        return ts_error(TS_ERR_INVALID_ARG, "checkpoint save: bad metadata counts");
    struct meta_storage *s = calloc(1, sizeof(*s));
    if (s == NULL)
        return ts_error(TS_ERR_OOM, "out of memory building the manifest");
    s->data = calloc((size_t)meta->num_data + 1, sizeof(*s->data));
    m->model_config = kv_array(meta->model, meta->num_model, s->model);
    m->train_config = kv_array(meta->train, meta->num_train, s->train);
    m->data = calloc((size_t)meta->num_data + 1, sizeof(*m->data));
    m->layout = &s->layout;
    if (s->data == NULL || m->model_config == NULL || m->train_config == NULL || m->data == NULL) {
        ckpt_manifest_free_meta(m);
        return ts_error(TS_ERR_OOM, "out of memory building the manifest");
    }
    m->n_model_config = (size_t)meta->num_model;
    m->n_train_config = (size_t)meta->num_train;
    tessera__ckpt__layout__init(&s->layout);
    s->layout.world_size = (uint32_t)meta->layout.world_size;
    s->layout.dp = (uint32_t)meta->layout.dp;
    s->layout.tp = (uint32_t)meta->layout.tp;
    s->layout.zero_stage = (uint32_t)meta->layout.zero_stage;
    for (int i = 0; i < meta->num_data; i++) {
        tessera__ckpt__data_file__init(&s->data[i]);
        s->data[i].path = (char *)meta->data[i].path;
        s->data[i].bytes = meta->data[i].bytes;
        s->data[i].hash = (char *)meta->data[i].hash;
        s->data[i].mtime_ns = meta->data[i].mtime_ns;
        m->data[i] = &s->data[i];
    }
    m->n_data = (size_t)meta->num_data;
    m->build_version = (char *)meta->build_version;
    m->created_unix = meta->created_unix;
    m->step = meta->step;
    m->tokens_seen = meta->tokens_seen;
    m->global_batch = meta->global_batch;
    m->loader_position = meta->loader_position;
    m->data_manifest = (char *)meta->data_manifest;
    m->data_manifest_hash = (char *)meta->data_manifest_hash;
    m->parent = (char *)meta->parent;
    return TS_OK;
}

void ckpt_manifest_free_meta(Tessera__Ckpt__Manifest *m) {
    struct meta_storage *s = (struct meta_storage *)(void *)m->layout; /* layout is first */
    if (s != NULL)
        free(s->data);
    free(s);
    free(m->model_config);
    free(m->train_config);
    free(m->data);
    m->layout = NULL;
    m->model_config = m->train_config = NULL;
    m->data = NULL;
}

static ts_status copy_str(char *dst, size_t cap, const char *src, const char *field,
                          const char *what) {
    if (strlen(src) >= cap)
        return ts_error(TS_ERR_FORMAT, "%s: %s is too long", what, field);
    memcpy(dst, src, strlen(src) + 1);
    return TS_OK;
}

static ts_status kv_from(const Tessera__Ckpt__KeyValue *const *arr, size_t n, struct ts_ckpt_kv *kv,
                         int *count, const char *what) {
    if (n > TS_CKPT_MAX_KV)
        return ts_error(TS_ERR_FORMAT, "%s: more than %d config entries", what, TS_CKPT_MAX_KV);
    for (size_t i = 0; i < n; i++) {
        TS_CHECK(copy_str(kv[i].key, sizeof(kv[i].key), arr[i]->key, "a config key", what));
        TS_CHECK(copy_str(kv[i].value, sizeof(kv[i].value), arr[i]->value, "a config value", what));
    }
    *count = (int)n;
    return TS_OK;
}

ts_status ckpt_meta_from_manifest(const Tessera__Ckpt__Manifest *m, struct ts_ckpt_meta *meta,
                                  const char *what) {
    memset(meta, 0, sizeof(*meta));
    meta->step = m->step;
    meta->tokens_seen = m->tokens_seen;
    meta->global_batch = m->global_batch;
    meta->loader_position = m->loader_position;
    meta->created_unix = m->created_unix;
    if (m->layout != NULL) {
        meta->layout.world_size = (int)m->layout->world_size;
        meta->layout.dp = (int)m->layout->dp;
        meta->layout.tp = (int)m->layout->tp;
        meta->layout.zero_stage = (int)m->layout->zero_stage;
    }
    TS_CHECK(kv_from((const Tessera__Ckpt__KeyValue *const *)m->model_config, m->n_model_config,
                     meta->model, &meta->num_model, what));
    TS_CHECK(kv_from((const Tessera__Ckpt__KeyValue *const *)m->train_config, m->n_train_config,
                     meta->train, &meta->num_train, what));
    TS_CHECK(copy_str(meta->data_manifest, sizeof(meta->data_manifest), m->data_manifest,
                      "the data manifest path", what));
    TS_CHECK(copy_str(meta->data_manifest_hash, sizeof(meta->data_manifest_hash),
                      m->data_manifest_hash, "the data manifest hash", what));
    TS_CHECK(copy_str(meta->parent, sizeof(meta->parent), m->parent, "the parent", what));
    TS_CHECK(copy_str(meta->build_version, sizeof(meta->build_version), m->build_version,
                      "the build version", what));
    if (m->n_data > CKPT_MAX_DATA_FILES)
        return ts_error(TS_ERR_FORMAT, "%s lists %zu data files, more than a checkpoint's %d", what,
                        m->n_data, CKPT_MAX_DATA_FILES);
    meta->data = calloc(m->n_data + 1, sizeof(*meta->data));
    if (meta->data == NULL)
        return ts_error(TS_ERR_OOM, "out of memory reading %s", what);
    meta->num_data = (int)m->n_data;
    for (size_t i = 0; i < m->n_data; i++) {
        TS_CHECK(copy_str(meta->data[i].path, sizeof(meta->data[i].path), m->data[i]->path,
                          "a data path", what));
        TS_CHECK(copy_str(meta->data[i].hash, sizeof(meta->data[i].hash), m->data[i]->hash,
                          "a data hash", what));
        meta->data[i].bytes = m->data[i]->bytes;
        meta->data[i].mtime_ns = m->data[i]->mtime_ns;
    }
    return TS_OK;
}
