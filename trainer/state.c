/* state.c: the trainer's state as checkpoint tensors and blobs (state.h), and back.
 *
 * The flat buffers are copied to host staging buffers through the backend (ts_op_download /
 * ts_op_upload: the model's memory may be a device's), described as boxes of the parameter
 * table in global coordinates, and handed to checkpoint/. Parameters are saved once per tp rank
 * (data-parallel rank 0); the moments by each rank over its optimizer range, so a ZeRO-1 run
 * saves disjoint slices and any later layout reads the boxes it needs. With bf16 parameters the
 * optimizer's fp32 master weights are saved like the moments, as "master/<name>", and model.h5
 * is exported from them.
 *
 * Tensor parallelism: a rank's part of a split tensor is, along the split dimension, one share
 * of each group (c_attn: of Q, of K, of V), so its boxes in global coordinates are the boxes of
 * its local range cut where a group ends, each moved to its group's offset plus the rank's share.
 * A column split stores those boxes' elements in another order than the rank's memory, so split
 * tensors are packed into box order on save and unpacked on load. Replicated tensors are saved by
 * tp rank 0 alone (every tp rank holds the same values). */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/fs.h"
#include "kernels/log.h"
#include "kernels/ops.h"
#include "trainer/state.h"

#define COUNTERS_BLOB "trainer"

static const char *const model_keys[5] = {"vocab_size", "max_seq_len", "num_layers", "num_heads",
                                          "channels"};

static int *config_field(struct ts_gpt_config *c, int i) {
    int *fields[5] = {&c->vocab_size, &c->max_seq_len, &c->num_layers, &c->num_heads, &c->channels};
    return fields[i];
}

ts_status ts_gpt_config_to_kv(const struct ts_gpt_config *cfg, struct ts_ckpt_kv *kv, int *n) {
    struct ts_gpt_config c = *cfg;
    for (int i = 0; i < 5; i++)
        TS_CHECK(ts_ckpt_kv_add(kv, n, model_keys[i], "%d", *config_field(&c, i)));
    return ts_ckpt_kv_add(kv, n, "padded_vocab_size", "%d", cfg->padded_vocab_size);
}

ts_status ts_gpt_config_from_checkpoint(const ts_ckpt_t *ck, struct ts_gpt_config *cfg) {
    const struct ts_ckpt_meta *m = ts_ckpt_meta(ck);
    memset(cfg, 0, sizeof(*cfg));
    for (int i = 0; i < 5; i++) {
        const char *v = ts_ckpt_kv_get(m->model, m->num_model, model_keys[i]);
        char *end = NULL;
        const long x = v != NULL ? strtol(v, &end, 10) : 0;
        if (v == NULL || *end != '\0' || x <= 0 || x > (1L << 30))
            return ts_error(TS_ERR_FORMAT, "checkpoint %s: model config '%s' is %s",
                            ts_ckpt_path(ck), model_keys[i],
                            v ? "not a positive integer" : "missing");
        *config_field(cfg, i) = (int)x;
    }
    const ts_status st = ts_gpt_config_finish(cfg);
    if (st != TS_OK)
        return ts_error_wrap(st, "checkpoint %s", ts_ckpt_path(ck));
    return TS_OK;
}

/* this rank's optimizer range of the flat buffer */
static void range_of(ts_trainer_t *tr, int64_t *b, int64_t *e) { ts_trainer_shard(tr, b, e); }

/* A table entry's tensor description (no boxes yet): the whole tensor's shape. */
static void describe(struct ts_ckpt_tensor *t, const char *table, const struct ts_param_info *p) {
    memset(t, 0, sizeof(*t));
    snprintf(t->name, sizeof(t->name), "%s/%s", table, p->name);
    t->dtype = TS_DTYPE_F32;
    t->ndim = p->ndim;
    for (int d = 0; d < p->ndim; d++)
        t->shape[d] = p->global_shape[d];
}

/* Elements [lo, hi) of this rank's tensor p (row-major indices of its local shape) as boxes of
 * the whole tensor in t->boxes, and the same elements as boxes of the local tensor in local[],
 * in the order they are stored. A replicated tensor's boxes are its local ones. */
static ts_status part_boxes(const struct ts_param_info *p, int tp_rank, int64_t lo, int64_t hi,
                            struct ts_ckpt_tensor *t, struct ts_ckpt_box *local) {
    struct ts_ckpt_box range[2 * TS_MAX_DIMS];
    const int nr = ts_ckpt_boxes_of_range(p->ndim, p->shape, lo, hi, range);
    const int d = p->split_dim;
    int n = 0;
    for (int i = 0; i < nr; i++) {
        if (d < 0) {
            local[n] = t->boxes[n] = range[i];
            n++;
            continue;
        }
        /* along d, local groups of l rows (columns) sit at g * G + tp_rank * l globally */
        const int64_t l = p->shape[d] / p->split_groups, G = p->global_shape[d] / p->split_groups;
        for (int64_t x = range[i].offset[d], end = x + range[i].extent[d]; x < end;) {
            const int64_t g = x / l, stop = end < (g + 1) * l ? end : (g + 1) * l;
            if (n == TS_CKPT_MAX_BOXES)
                return ts_error(TS_ERR_INTERNAL,
                                "checkpoint: %s needs more than %d boxes on this rank", p->name,
                                TS_CKPT_MAX_BOXES);
            local[n] = range[i];
            local[n].offset[d] = x;
            local[n].extent[d] = stop - x;
            t->boxes[n] = local[n];
            t->boxes[n].offset[d] = g * G + (int64_t)tp_rank * l + (x - g * l);
            n++;
            x = stop;
        }
    }
    t->num_boxes = n;
    return TS_OK;
}

static int64_t volume(const struct ts_ckpt_box *b, int ndim) {
    int64_t v = 1;
    for (int d = 0; d < ndim; d++)
        v *= b->extent[d];
    return v;
}

/* Moves the elements of box b of a row-major tensor of `shape` between the tensor (element e
 * at tensor[e - first]: the caller holds elements from `first` on) and `packed` (b's elements,
 * row-major): into packed when pack, else back. */
static void box_move(float *tensor, int64_t first, int ndim, const int64_t *shape,
                     const struct ts_ckpt_box *b, float *packed, bool pack) {
    int64_t stride[TS_MAX_DIMS], at[TS_MAX_DIMS];
    stride[ndim - 1] = 1;
    for (int k = ndim - 2; k >= 0; k--)
        stride[k] = stride[k + 1] * shape[k + 1];
    for (int k = 0; k < ndim; k++)
        at[k] = b->offset[k];
    const int64_t run = b->extent[ndim - 1];
    for (;;) { /* one contiguous run of the last dimension per outer index */
        int64_t e = 0;
        for (int k = 0; k < ndim; k++)
            e += at[k] * stride[k];
        float *t = tensor + (e - first);
        memcpy(pack ? packed : t, pack ? t : packed, (size_t)run * sizeof(float));
        packed += run;
        int k = ndim - 2;
        for (; k >= 0; k--) {
            if (++at[k] < b->offset[k] + b->extent[k])
                break;
            at[k] = b->offset[k];
        }
        if (k < 0)
            return;
    }
}

/* The part of flat range [b, e) of this rank's buffer `base` (element b at base[0]) in tensor p
 * as t's boxes, t->data pointing at it (no boxes when they do not meet). A split tensor's
 * elements are packed into box order in place, through scratch (p->numel floats). */
static ts_status slice_boxes(struct ts_ckpt_tensor *t, const struct ts_param_info *p, int tp_rank,
                             int64_t b, int64_t e, float *base, float *scratch) {
    const int64_t lo = b > p->offset ? b : p->offset;
    const int64_t hi = e < p->offset + p->numel ? e : p->offset + p->numel;
    t->num_boxes = 0;
    if (lo >= hi)
        return TS_OK;
    struct ts_ckpt_box local[TS_CKPT_MAX_BOXES];
    TS_CHECK(part_boxes(p, tp_rank, lo - p->offset, hi - p->offset, t, local));
    t->data = base + (lo - b);
    if (p->split_dim < 0)
        return TS_OK;
    memcpy(scratch, t->data, (size_t)(hi - lo) * sizeof(float));
    float *out = t->data;
    for (int i = 0; i < t->num_boxes; i++) {
        box_move(scratch, lo - p->offset, p->ndim, p->shape, &local[i], out, true);
        out += volume(&local[i], p->ndim);
    }
    return TS_OK;
}

/* Elements of the largest split tensor (the scratch one is packed through); 0 at tp 1. */
static int64_t largest_split(const struct ts_param_info *t, int count) {
    int64_t m = 0;
    for (int i = 0; i < count; i++)
        if (t[i].split_dim >= 0 && t[i].numel > m)
            m = t[i].numel;
    return m;
}

/* The run's saver: staging host buffers allocated once (pinned where the backend has pinned
 * memory) and the checkpoint writer; the buffers are reused only after the previous save is
 * no longer in flight. */
struct ts_train_saver {
    ts_trainer_t *tr;
    ts_comm_t *world;
    struct ts_backend *be;
    ts_ckpt_writer_t *writer;
    float *params, *m, *v, *master; /* NULL where this rank saves none */
    float *scratch;                 /* a split tensor is packed through it (tp > 1) */
    struct ts_ckpt_tensor *tensors;
    struct ts_ckpt_meta meta;
    char counters[1024];
};

void ts_train_saver_destroy(ts_train_saver_t *s) {
    if (s == NULL)
        return;
    ts_ckpt_writer_destroy(s->writer); /* drains: the buffers are free after this */
    ts_op_host_free(s->be, s->params);
    ts_op_host_free(s->be, s->m);
    ts_op_host_free(s->be, s->v);
    ts_op_host_free(s->be, s->master);
    free(s->scratch);
    free(s->tensors);
    free(s);
}

ts_status ts_train_saver_create(ts_train_saver_t **out, ts_trainer_t *tr, ts_comm_t *world,
                                bool async) {
    *out = NULL;
    ts_train_saver_t *s = calloc(1, sizeof(*s));
    if (s == NULL)
        return ts_error(TS_ERR_OOM, "checkpoint: out of memory");
    s->tr = tr;
    s->world = world;
    s->be = ts_gpt_backend(ts_trainer_gpt(tr));
    ts_status st = ts_ckpt_writer_create(&s->writer, async);
    if (st != TS_OK) {
        free(s);
        return st;
    }
    *out = s;
    return TS_OK;
}

ts_ckpt_writer_t *ts_train_saver_writer(ts_train_saver_t *s) { return s->writer; }

/* The buffers, on the first save. */
static ts_status staging_alloc(ts_train_saver_t *s, int64_t n, int64_t range, bool params,
                               bool moments, bool master, size_t tensors, int64_t scratch) {
    if (s->tensors != NULL)
        return TS_OK;
    const size_t r = (size_t)range * sizeof(float) + 1;
    s->tensors = calloc(tensors, sizeof(*s->tensors));
    if (scratch > 0)
        s->scratch = malloc((size_t)scratch * sizeof(float));
    if (s->tensors == NULL || (scratch > 0 && s->scratch == NULL)) {
        free(s->tensors);
        s->tensors = NULL;
        return ts_error(TS_ERR_OOM, "checkpoint: out of memory");
    }
    ts_status st = TS_OK;
    if (params)
        st = ts_op_host_alloc(s->be, (size_t)n * sizeof(float), (void **)&s->params);
    if (st == TS_OK && moments)
        st = ts_op_host_alloc(s->be, r, (void **)&s->m);
    if (st == TS_OK && moments)
        st = ts_op_host_alloc(s->be, r, (void **)&s->v);
    if (st == TS_OK && moments && master)
        st = ts_op_host_alloc(s->be, r, (void **)&s->master);
    if (st != TS_OK) { /* all or nothing: the next save tries again */
        free(s->tensors);
        s->tensors = NULL;
        free(s->scratch);
        s->scratch = NULL;
    }
    return st;
}

ts_status ts_train_saver_begin(ts_train_saver_t *s, const struct ts_train_state_info *info,
                               const char *dir, int keep_last) {
    ts_trainer_t *tr = s->tr;
    ts_gpt_t *gpt = ts_trainer_gpt(tr);
    ts_optim_t *opt = ts_trainer_optim(tr);
    struct ts_backend *be = s->be;
    const struct ts_gpt_config *cfg = ts_gpt_config(gpt);
    const int rank = ts_comm_rank(s->world);
    /* the grid (comm/grid.h): world rank w is (dp, tp) = (w / tp, w % tp) */
    const int tp_size = ts_gpt_tp_size(gpt), tp_rank = ts_gpt_tp_rank(gpt);
    const int dp_rank = rank / tp_size;
    if (rank % tp_size != tp_rank)
        return ts_error(TS_ERR_INTERNAL,
                        "checkpoint: world rank %d holds tp rank %d of %d, not rank %% tp", rank,
                        tp_rank, tp_size);
    int count;
    const struct ts_param_info *table = ts_gpt_params(gpt, &count);
    const int64_t n = ts_gpt_num_params(gpt);
    int64_t b, e;
    range_of(tr, &b, &e);
    const bool zero = b != 0 || e != n;
    /* dp rank 0 of each tp rank saves the parameters (and, without ZeRO, the optimizer state)
     * of its tp part; replicated tensors only from tp rank 0 */
    const bool owns_params = dp_rank == 0;
    const bool owns_moments = zero || dp_rank == 0;
    struct ts_tensor m, v, master;
    ts_optim_moments(opt, &m, &v);
    const bool has_master = ts_optim_master(opt, &master);
    const int tables = has_master ? 4 : 3;

    /* the buffers are the previous save's until it is committed */
    TS_CHECK(ts_ckpt_writer_poll(s->writer, true));
    /* a rank out of memory must not leave the others in the save's first collective: agree */
    double failed = 0;
    ts_status st = staging_alloc(s, n, e - b, owns_params, owns_moments, has_master,
                                 (size_t)count * (size_t)tables, largest_split(table, count));
    failed = st != TS_OK;
    ts_status ag = ts_comm_all_reduce_host(s->world, &failed, 1, TS_REDUCE_MAX);
    if (st != TS_OK)
        return st;
    TS_CHECK(ag);
    if (failed > 0)
        return ts_error(TS_ERR_OOM, "checkpoint: another rank is out of memory for staging");
    if (owns_params)
        TS_CHECK(ts_gpt_params_to_host(gpt, s->params));
    if (owns_moments) {
        TS_CHECK(ts_op_download(be, s->m, &m, (size_t)(e - b) * sizeof(float)));
        TS_CHECK(ts_op_download(be, s->v, &v, (size_t)(e - b) * sizeof(float)));
        if (has_master)
            TS_CHECK(ts_op_download(be, s->master, &master, (size_t)(e - b) * sizeof(float)));
    }
    for (int i = 0; i < count; i++) {
        const struct ts_param_info *p = &table[i];
        struct ts_ckpt_tensor *tp = &s->tensors[i], *tm = &s->tensors[count + i],
                              *tv = &s->tensors[2 * count + i];
        describe(tp, "params", p);
        describe(tm, "adam_m", p);
        describe(tv, "adam_v", p);
        if (strcmp(p->name, "wte.weight") == 0)
            tp->export_shape[0] = cfg->vocab_size; /* model.h5 holds (V, C), not (Vp, C) */
        const bool mine = p->split_dim >= 0 || tp_rank == 0;
        if (owns_params && mine)
            TS_CHECK(slice_boxes(tp, p, tp_rank, 0, n, s->params, s->scratch));
        if (owns_moments && mine) {
            TS_CHECK(slice_boxes(tm, p, tp_rank, b, e, s->m, s->scratch));
            TS_CHECK(slice_boxes(tv, p, tp_rank, b, e, s->v, s->scratch));
        }
        if (has_master) {
            struct ts_ckpt_tensor *tw = &s->tensors[3 * count + i];
            describe(tw, "master", p);
            tw->export_shape[0] = tp->export_shape[0];
            if (owns_moments && mine)
                TS_CHECK(slice_boxes(tw, p, tp_rank, b, e, s->master, s->scratch));
        }
    }

    int at =
        snprintf(s->counters, sizeof(s->counters),
                 "steps_done=%" PRId64 "\noptim_steps=%" PRId64 "\nloader_position=%" PRId64 "\n",
                 ts_trainer_steps_done(tr), ts_optim_step_count(opt),
                 ts_loader_position(ts_trainer_loader(tr)));
    const int nsrc = ts_loader_num_sources(ts_trainer_loader(tr));
    if (nsrc > 1) { /* a mixture: the windows each source gave, so a resume need not recount */
        int64_t counts[TS_LOADER_MAX_SOURCES];
        ts_loader_source_counts(ts_trainer_loader(tr), counts);
        at += snprintf(s->counters + at, sizeof(s->counters) - (size_t)at, "loader_sources=");
        for (int i = 0; i < nsrc; i++)
            at += snprintf(s->counters + at, sizeof(s->counters) - (size_t)at, "%s%" PRId64,
                           i ? "," : "", counts[i]);
        snprintf(s->counters + at, sizeof(s->counters) - (size_t)at, "\n");
    }
    struct ts_ckpt_blob blob = {.data = s->counters, .size = strlen(s->counters) + 1};
    snprintf(blob.name, sizeof(blob.name), "%s", COUNTERS_BLOB);

    struct ts_ckpt_meta *meta = &s->meta;
    memset(meta, 0, sizeof(*meta));
    meta->step = ts_trainer_steps_done(tr);
    meta->tokens_seen = info->tokens_seen;
    meta->global_batch = info->global_batch;
    meta->loader_position = ts_loader_position(ts_trainer_loader(tr));
    meta->layout = info->layout;
    TS_CHECK(ts_gpt_config_to_kv(cfg, meta->model, &meta->num_model));
    for (int i = 0; i < info->num_train && i < TS_CKPT_MAX_KV; i++)
        meta->train[meta->num_train++] = info->train[i];
    meta->num_data = info->num_data;
    meta->data = (struct ts_ckpt_data_file *)info->data; /* the caller's, for the whole run */
    /* paths are recorded whole or not at all (a cut parent would name another checkpoint) */
    TS_CHECK(ts_path_fmt(meta->data_manifest, sizeof(meta->data_manifest), "%s",
                         info->data_manifest ? info->data_manifest : ""));
    TS_CHECK(
        ts_path_fmt(meta->parent, sizeof(meta->parent), "%s", info->parent ? info->parent : ""));
    snprintf(meta->data_manifest_hash, sizeof(meta->data_manifest_hash), "%s",
             info->data_manifest_hash ? info->data_manifest_hash : "");
    snprintf(meta->build_version, sizeof(meta->build_version), "%s",
             info->build_version ? info->build_version : "");

    const struct ts_ckpt_save_args args = {
        .dir = dir,
        .meta = meta,
        .tensors = s->tensors,
        .num_tensors = count * tables,
        .blobs = &blob,
        .num_blobs = 1,
        /* model.h5 from the fp32 master weights where they exist */
        .model_table = has_master ? "master" : "params",
        .keep_last = keep_last,
        .owned = info->owned,
        .comm = s->world};
    TS_CHECK(ts_ckpt_writer_begin(s->writer, &args));
    return ts_ckpt_writer_poll(s->writer, false); /* a synchronous writer commits here */
}

ts_status ts_train_state_save(ts_trainer_t *tr, ts_comm_t *world,
                              const struct ts_train_state_info *info, const char *dir,
                              int keep_last, char *path, size_t path_len) {
    ts_train_saver_t *s = NULL;
    TS_CHECK(ts_train_saver_create(&s, tr, world, false));
    ts_status st = ts_train_saver_begin(s, info, dir, keep_last);
    if (st == TS_OK)
        st = ts_ckpt_writer_poll(s->writer, true);
    struct ts_ckpt_saved saved;
    if (st == TS_OK && ts_ckpt_writer_take(s->writer, &saved) && path != NULL)
        st = ts_path_fmt(path, path_len, "%s", saved.path);
    ts_train_saver_destroy(s);
    return st;
}

static ts_status check_model(ts_gpt_t *gpt, const ts_ckpt_t *ck) {
    struct ts_gpt_config want;
    TS_CHECK(ts_gpt_config_from_checkpoint(ck, &want));
    struct ts_gpt_config have = *ts_gpt_config(gpt);
    for (int i = 0; i < 5; i++)
        if (*config_field(&want, i) != *config_field(&have, i))
            return ts_error(TS_ERR_INVALID_ARG,
                            "checkpoint %s has %s %d, the model being loaded %d: the checkpoint's "
                            "model differs from the flags",
                            ts_ckpt_path(ck), model_keys[i], *config_field(&want, i),
                            *config_field(&have, i));
    return TS_OK;
}

/* Reads every tensor of `table` meeting this rank's flat range [b, e) into host (indexed from
 * b): the boxes of the whole tensor that this rank's part covers, a split tensor's through
 * scratch (the largest split tensor's floats) and out of box order into the rank's. */
static ts_status read_table(ts_ckpt_t *ck, const char *table_name, const struct ts_param_info *t,
                            int count, int tp_rank, int64_t b, int64_t e, float *host,
                            float *scratch) {
    for (int i = 0; i < count; i++) {
        const struct ts_param_info *p = &t[i];
        const int64_t lo = b > p->offset ? b : p->offset;
        const int64_t hi = e < p->offset + p->numel ? e : p->offset + p->numel;
        if (lo >= hi)
            continue;
        struct ts_ckpt_tensor want;
        struct ts_ckpt_box local[TS_CKPT_MAX_BOXES];
        describe(&want, table_name, p);
        TS_CHECK(part_boxes(p, tp_rank, lo - p->offset, hi - p->offset, &want, local));
        float *dst = host + (lo - b);
        want.data = p->split_dim < 0 ? dst : scratch;
        TS_CHECK(ts_ckpt_read(ck, &want));
        const float *in = scratch;
        for (int k = 0; p->split_dim >= 0 && k < want.num_boxes; k++) {
            box_move(dst, lo - p->offset, p->ndim, p->shape, &local[k], (float *)in, false);
            in += volume(&local[k], p->ndim);
        }
    }
    return TS_OK;
}

ts_status ts_gpt_load_checkpoint(ts_gpt_t *gpt, ts_ckpt_t *ck) {
    TS_CHECK(check_model(gpt, ck));
    int count;
    const struct ts_param_info *table = ts_gpt_params(gpt, &count);
    const int64_t n = ts_gpt_num_params(gpt);
    float *host = malloc((size_t)n * sizeof(float));
    float *scratch = malloc((size_t)largest_split(table, count) * sizeof(float) + 1);
    ts_status st = TS_OK;
    if (host == NULL || scratch == NULL)
        st = ts_error(TS_ERR_OOM, "checkpoint load: out of memory for %" PRId64 " weights", n);
    /* an fp32 model takes a bf16 run's fp32 master weights where the checkpoint has them */
    const bool from_master = ts_gpt_param_buffer(gpt)->dtype == TS_DTYPE_F32 &&
                             ts_ckpt_has_tensor(ck, "master/wte.weight");
    if (st == TS_OK)
        st = read_table(ck, from_master ? "master" : "params", table, count, ts_gpt_tp_rank(gpt), 0,
                        n, host, scratch);
    if (st == TS_OK)
        st = ts_gpt_params_from_host(gpt, host);
    free(scratch);
    free(host);
    return st;
}

/* A counter of the trainer blob: digits only, at most max (a larger count is refused, never
 * cast to a smaller one). */
static ts_status parse_counter(const char *text, const char *key, int64_t max, int64_t *out,
                               const char *where) {
    const char *at = strstr(text, key);
    const size_t klen = strlen(key);
    char *end = NULL;
    if (at == NULL || at[klen] != '=')
        return ts_error(TS_ERR_FORMAT, "checkpoint %s: trainer state lacks %s", where, key);
    const char *num = at + klen + 1;
    errno = 0;
    const long long v = *num >= '0' && *num <= '9' ? strtoll(num, &end, 10) : -1;
    if (v < 0 || (*end != '\0' && *end != ' ' && *end != '\n'))
        return ts_error(TS_ERR_FORMAT, "checkpoint %s: trainer state %s is not a count", where,
                        key);
    if (errno == ERANGE || v > max)
        return ts_error(TS_ERR_FORMAT,
                        "checkpoint %s: trainer state %s = %s is more than the %lld this build "
                        "counts",
                        where, key, num, (long long)max);
    *out = v;
    return TS_OK;
}

ts_status ts_train_state_parse_counters(const char *text, const char *where, int64_t *steps,
                                        int64_t *optim_steps, int64_t *position) {
    TS_CHECK(parse_counter(text, "steps_done", TS_MAX_STEPS, steps, where));
    TS_CHECK(parse_counter(text, "optim_steps", TS_MAX_STEPS, optim_steps, where));
    return parse_counter(text, "loader_position", INT64_MAX, position, where);
}

/* The loader to the saved position; a mixture with the per-source counts the checkpoint kept
 * ("loader_sources=c0,c1,..."), or recounted from 0 when it kept none or counts for another
 * number of sources (a changed mixture, which the caller refuses or restarts). */
static ts_status seek_loader(ts_loader_t *l, const char *text, int64_t position,
                             const char *where) {
    const int nsrc = ts_loader_num_sources(l);
    const char *at = strstr(text, "loader_sources=");
    if (nsrc == 1 || at == NULL) {
        ts_loader_seek(l, position);
        return TS_OK;
    }
    int64_t counts[TS_LOADER_MAX_SOURCES];
    int n = 0;
    at += strlen("loader_sources=");
    while (n < TS_LOADER_MAX_SOURCES && *at >= '0' && *at <= '9') {
        char *end = NULL;
        errno = 0;
        const long long v = strtoll(at, &end, 10);
        if (errno == ERANGE)
            return ts_error(TS_ERR_FORMAT, "checkpoint %s: loader_sources out of range", where);
        counts[n++] = v;
        at = *end == ',' ? end + 1 : end;
        if (*end != ',')
            break;
    }
    if (n != nsrc) {
        ts_loader_seek(l, position);
        return TS_OK;
    }
    const ts_status st = ts_loader_seek_counts(l, position, counts, n);
    return st == TS_OK ? TS_OK : ts_error_wrap(st, "checkpoint %s", where);
}

ts_status ts_train_state_load(ts_trainer_t *tr, ts_ckpt_t *ck) {
    ts_gpt_t *gpt = ts_trainer_gpt(tr);
    ts_optim_t *opt = ts_trainer_optim(tr);
    struct ts_backend *be = ts_gpt_backend(gpt);
    TS_CHECK(ts_gpt_load_checkpoint(gpt, ck));
    int count;
    const struct ts_param_info *table = ts_gpt_params(gpt, &count);
    int64_t b, e;
    range_of(tr, &b, &e);
    struct ts_tensor m, v;
    ts_optim_moments(opt, &m, &v);
    const int r = ts_gpt_tp_rank(gpt);
    float *host = malloc((size_t)(e - b) * sizeof(float) + 1);
    float *scratch = malloc((size_t)largest_split(table, count) * sizeof(float) + 1);
    ts_status st = TS_OK;
    if (host == NULL || scratch == NULL) {
        st = ts_error(TS_ERR_OOM, "checkpoint load: out of memory for the AdamW moments");
        goto exit;
    }
    TS_CHECK_GOTO(read_table(ck, "adam_m", table, count, r, b, e, host, scratch), st, exit);
    TS_CHECK_GOTO(ts_op_upload(be, &m, host, (size_t)(e - b) * sizeof(float)), st, exit);
    TS_CHECK_GOTO(read_table(ck, "adam_v", table, count, r, b, e, host, scratch), st, exit);
    TS_CHECK_GOTO(ts_op_upload(be, &v, host, (size_t)(e - b) * sizeof(float)), st, exit);
    struct ts_tensor master;
    if (ts_optim_master(opt, &master)) { /* from a bf16 run's master, or an fp32 run's params */
        const bool saved = ts_ckpt_has_tensor(ck, "master/wte.weight");
        TS_CHECK_GOTO(
            read_table(ck, saved ? "master" : "params", table, count, r, b, e, host, scratch), st,
            exit);
        TS_CHECK_GOTO(ts_op_upload(be, &master, host, (size_t)(e - b) * sizeof(float)), st, exit);
    }

    char text[1024] = "";
    size_t size = 0;
    TS_CHECK_GOTO(ts_ckpt_read_blob(ck, COUNTERS_BLOB, 0, text, sizeof(text) - 1, &size), st, exit);
    text[sizeof(text) - 1] = '\0';
    int64_t steps, optim_steps, position;
    TS_CHECK_GOTO(
        ts_train_state_parse_counters(text, ts_ckpt_path(ck), &steps, &optim_steps, &position), st,
        exit);
    ts_trainer_set_steps_done(tr, steps);
    ts_optim_set_step_count(opt, optim_steps);
    st = seek_loader(ts_trainer_loader(tr), text, position, ts_ckpt_path(ck));
exit:
    free(scratch);
    free(host);
    return st;
}
