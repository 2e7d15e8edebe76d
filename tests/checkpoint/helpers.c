/* helpers.c: temp dirs, the fixture table, and a communicator of forked processes (barriers
 * and shared buffers in a MAP_SHARED mapping) for multi-rank saves without MPI. */
#define _GNU_SOURCE
#include "helpers.h"

#include <ftw.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

char *ck_mkdtemp(void) {
    char *dir = strdup("/tmp/ts_ckpt_XXXXXX");
    if (dir == NULL || mkdtemp(dir) == NULL) {
        free(dir);
        return NULL;
    }
    return dir;
}

static int rm_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw) {
    (void)sb;
    (void)flag;
    (void)ftw;
    return remove(path);
}

void ck_rmdir(char *dir) {
    if (dir == NULL)
        return;
    nftw(dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
    free(dir);
}

int ck_sh(const char *fmt, ...) {
    char cmd[8192];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cmd, sizeof(cmd), fmt, ap);
    va_end(ap);
    const int rc = system(cmd);
    return WIFEXITED(rc) ? WEXITSTATUS(rc) : 128;
}

float fix_value(int64_t step, int tensor, int64_t e) {
    return (float)(step % 1000) * 1000.0f + (float)tensor * 10.0f + (float)e * 0.001f;
}

static void add(struct fixture *f, const char *name, int ndim, const int64_t *shape,
                int64_t export_rows) {
    struct ts_ckpt_tensor *t = &f->t[f->n++];
    memset(t, 0, sizeof(*t));
    snprintf(t->name, sizeof(t->name), "%s", name);
    t->dtype = TS_DTYPE_F32;
    t->ndim = ndim;
    for (int d = 0; d < ndim; d++)
        t->shape[d] = shape[d];
    t->export_shape[0] = export_rows;
}

void fix_build(struct fixture *f, int64_t step, int rank, int world) {
    memset(f, 0, sizeof(*f));
    static const struct {
        const char *name;
        int ndim;
        int64_t shape[4];
        int64_t export_rows;
    } table[] = {
        {"wte.weight", 2, {16, 8}, 13},
        {"wpe.weight", 2, {6, 8}, 0},
        {"h.0.attn.c_attn.weight", 2, {8, 24}, 0},
        {"h.0.ln_1.bias", 1, {8}, 0},
        {"h.0.odd3d", 3, {3, 5, 7}, 0},
        {"h.0.odd4d", 4, {2, 3, 4, 5}, 0},
    };
    const int nt = (int)(sizeof(table) / sizeof(table[0]));
    const char *tables[] = {"params", "adam_m", "adam_v"};
    for (int g = 0; g < 3; g++)
        for (int i = 0; i < nt; i++) {
            char name[TS_CKPT_NAME_LEN];
            snprintf(name, sizeof(name), "%s/%s", tables[g], table[i].name);
            add(f, name, table[i].ndim, table[i].shape, g == 0 ? table[i].export_rows : 0);
        }
    for (int i = 0; i < f->n; i++) {
        struct ts_ckpt_tensor *t = &f->t[i];
        int64_t n = 1;
        for (int d = 0; d < t->ndim; d++)
            n *= t->shape[d];
        f->full[i] = malloc((size_t)n * sizeof(float));
        for (int64_t e = 0; e < n; e++)
            f->full[i][e] = fix_value(step, i, e);
        const int64_t b = n * rank / world, e = n * (rank + 1) / world;
        t->num_boxes = ts_ckpt_boxes_of_range(t->ndim, t->shape, b, e, t->boxes);
        /* a flat range's boxes, concatenated row-major, are the flat range itself */
        t->data = malloc((size_t)(e - b + 1) * sizeof(float));
        memcpy(t->data, f->full[i] + b, (size_t)(e - b) * sizeof(float));
    }
    struct ts_ckpt_meta *m = &f->meta;
    m->step = step;
    m->tokens_seen = step * 4096;
    m->global_batch = 8;
    m->loader_position = step * 8;
    m->layout = (struct ts_ckpt_layout){.world_size = world, .dp = world, .tp = 1};
    if (ts_ckpt_kv_add(m->model, &m->num_model, "num_layers", "%d", 1) != TS_OK ||
        ts_ckpt_kv_add(m->model, &m->num_model, "channels", "%d", 8) != TS_OK ||
        ts_ckpt_kv_add(m->train, &m->num_train, "seed", "%d", 1337) != TS_OK)
        abort();
    snprintf(f->data[0].path, sizeof(f->data[0].path), "data/train_000.bin");
    f->data[0].bytes = 12345;
    snprintf(f->data[0].hash, sizeof(f->data[0].hash), "crc32c:deadbeef");
    m->num_data = 1;
    m->data = f->data;
    snprintf(m->data_manifest_hash, sizeof(m->data_manifest_hash), "sha256:abc123");
    snprintf(m->parent, sizeof(m->parent), "/runs/x/checkpoints/step_00000000");
    snprintf(m->build_version, sizeof(m->build_version), "test");
}

void fix_free(struct fixture *f) {
    for (int i = 0; i < f->n; i++) {
        free(f->full[i]);
        free(f->t[i].data);
    }
}

ts_status fix_save(ts_comm_t *comm, const char *dir, int64_t step, int keep_last, char *path,
                   size_t len) {
    struct fixture f;
    const int rank = ts_comm_rank(comm);
    fix_build(&f, step, rank, ts_comm_size(comm));
    char blob_a[64];
    snprintf(blob_a, sizeof(blob_a), "rng of rank %d at step %lld", rank, (long long)step);
    const int64_t counter = step * 7 + rank;
    struct ts_ckpt_blob blobs[2] = {{.data = blob_a, .size = strlen(blob_a) + 1},
                                    {.data = &counter, .size = sizeof(counter)}};
    snprintf(blobs[0].name, sizeof(blobs[0].name), "rng");
    snprintf(blobs[1].name, sizeof(blobs[1].name), "optim/step");
    struct ts_ckpt_save_args a = {.dir = dir,
                                  .meta = &f.meta,
                                  .tensors = f.t,
                                  .num_tensors = f.n,
                                  .blobs = blobs,
                                  .num_blobs = 2,
                                  .model_table = "params",
                                  .keep_last = keep_last,
                                  .comm = comm};
    ts_status st = ts_ckpt_save(&a, path, len);
    fix_free(&f);
    return st;
}

ts_status fix_begin(ts_ckpt_writer_t *w, struct fixture *f, ts_comm_t *comm, const char *dir,
                    int64_t step, int keep_last) {
    const int rank = ts_comm_rank(comm);
    fix_build(f, step, rank, ts_comm_size(comm));
    char blob_a[64];
    snprintf(blob_a, sizeof(blob_a), "rng of rank %d at step %lld", rank, (long long)step);
    const int64_t counter = step * 7 + rank;
    struct ts_ckpt_blob blobs[2] = {{.data = blob_a, .size = strlen(blob_a) + 1},
                                    {.data = &counter, .size = sizeof(counter)}};
    snprintf(blobs[0].name, sizeof(blobs[0].name), "rng");
    snprintf(blobs[1].name, sizeof(blobs[1].name), "optim/step");
    struct ts_ckpt_save_args a = {.dir = dir,
                                  .meta = &f->meta,
                                  .tensors = f->t,
                                  .num_tensors = f->n,
                                  .blobs = blobs,
                                  .num_blobs = 2,
                                  .model_table = "params",
                                  .keep_last = keep_last,
                                  .comm = comm};
    return ts_ckpt_writer_begin(w, &a); /* the writer copies the blobs; f stays the caller's */
}

bool fix_check(const char *path, char *msg, size_t len, int64_t *step_out) {
    ts_ckpt_t *ck = NULL;
    if (ts_ckpt_open(&ck, path) != TS_OK) {
        snprintf(msg, len, "open: %s", ts_last_error());
        return false;
    }
    bool ok = true;
    const int64_t step = ts_ckpt_meta(ck)->step;
    if (step_out)
        *step_out = step;
    struct fixture f;
    fix_build(&f, step, 0, 1);
    if (ts_ckpt_verify(ck, NULL) != TS_OK) {
        snprintf(msg, len, "verify: %s", ts_last_error());
        ok = false;
    }
    for (int i = 0; ok && i < f.n; i++) {
        int64_t numel = 1;
        for (int d = 0; d < f.t[i].ndim; d++)
            numel *= f.t[i].shape[d];
        memset(f.t[i].data, 0xff, (size_t)numel * sizeof(float)); /* NaNs until read */
        if (ts_ckpt_read(ck, &f.t[i]) != TS_OK) {
            snprintf(msg, len, "read: %s", ts_last_error());
            ok = false;
            break;
        }
        int64_t n = 1;
        for (int d = 0; d < f.t[i].ndim; d++)
            n *= f.t[i].shape[d];
        if (memcmp(f.t[i].data, f.full[i], (size_t)n * sizeof(float)) != 0) {
            snprintf(msg, len, "tensor %s differs", f.t[i].name);
            ok = false;
        }
    }
    const int world = ts_ckpt_meta(ck)->layout.world_size;
    for (int r = 0; ok && r < world; r++) {
        char want[64], got[64] = "";
        size_t size = 0;
        snprintf(want, sizeof(want), "rng of rank %d at step %lld", r, (long long)step);
        int64_t counter = -1;
        if (ts_ckpt_read_blob(ck, "rng", r, got, sizeof(got), &size) != TS_OK ||
            strcmp(got, want) != 0 ||
            ts_ckpt_read_blob(ck, "optim/step", r, &counter, sizeof(counter), &size) != TS_OK ||
            counter != step * 7 + r) {
            snprintf(msg, len, "blob of rank %d: '%s' %lld (%s)", r, got, (long long)counter,
                     ts_last_error());
            ok = false;
        }
    }
    fix_free(&f);
    ts_ckpt_close(ck);
    return ok;
}

/* ---- a communicator of forked processes ---- */

struct shared {
    pthread_barrier_t barrier;
    double values[64][16];
    unsigned char bcast[1 << 16];
};

struct fork_ctx {
    struct shared *sh;
};

static struct shared *shared_of(ts_comm_t *c) { return ((struct fork_ctx *)c->ctx)->sh; }

static ts_status fk_barrier(ts_comm_t *c) {
    pthread_barrier_wait(&shared_of(c)->barrier);
    return TS_OK;
}

static ts_status fk_all_reduce_host(ts_comm_t *c, double *buf, int count, enum ts_reduce_op op) {
    struct shared *sh = shared_of(c);
    if (count > 16)
        return ts_error(TS_ERR_UNSUPPORTED, "fork comm: at most 16 values");
    memcpy(sh->values[c->rank], buf, (size_t)count * sizeof(double));
    pthread_barrier_wait(&sh->barrier);
    for (int i = 0; i < count; i++) {
        double acc = sh->values[0][i];
        for (int r = 1; r < c->size; r++) {
            const double v = sh->values[r][i];
            acc = op == TS_REDUCE_MAX ? (v > acc ? v : acc) : acc + v;
        }
        buf[i] = op == TS_REDUCE_AVG ? acc / c->size : acc;
    }
    pthread_barrier_wait(&sh->barrier);
    return TS_OK;
}

static ts_status fk_broadcast_host(ts_comm_t *c, void *buf, size_t bytes, int root) {
    struct shared *sh = shared_of(c);
    if (bytes > sizeof(sh->bcast))
        return ts_error(TS_ERR_UNSUPPORTED, "fork comm: broadcast too large");
    if (c->rank == root)
        memcpy(sh->bcast, buf, bytes);
    pthread_barrier_wait(&sh->barrier);
    if (c->rank != root)
        memcpy(buf, sh->bcast, bytes);
    pthread_barrier_wait(&sh->barrier);
    return TS_OK;
}

static ts_status fk_all_reduce(ts_comm_t *c, struct ts_backend *be, const struct ts_tensor *buf,
                               enum ts_reduce_op op, ts_event_t *ready) {
    return ts_error(TS_ERR_UNSUPPORTED, "fork comm: no tensor collectives");
}

static void fk_destroy(ts_comm_t *c) {
    free(c->ctx);
    free(c);
}

static const struct ts_comm_ops fork_ops = {
    .name = "fork",
    .memory = TS_COMM_MEM_HOST,
    .max_count = 0, /* no tensor collectives */
    .destroy = fk_destroy,
    .all_reduce = fk_all_reduce,
    .broadcast_host = fk_broadcast_host,
    .all_reduce_host = fk_all_reduce_host,
    .barrier = fk_barrier,
};

int fork_ranks(int world, int (*fn)(ts_comm_t *comm, int rank, void *arg), void *arg) {
    struct shared *sh =
        mmap(NULL, sizeof(*sh), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (sh == MAP_FAILED)
        return world;
    pthread_barrierattr_t attr;
    pthread_barrierattr_init(&attr);
    pthread_barrierattr_setpshared(&attr, PTHREAD_PROCESS_SHARED);
    pthread_barrier_init(&sh->barrier, &attr, (unsigned)world);
    pid_t pids[64];
    for (int r = 0; r < world; r++) {
        pids[r] = fork();
        if (pids[r] == 0) {
            ts_comm_t *c = calloc(1, sizeof(*c));
            struct fork_ctx *ctx = calloc(1, sizeof(*ctx));
            ctx->sh = sh;
            c->ops = &fork_ops;
            c->ctx = ctx;
            c->rank = r;
            c->size = world;
            const int rc = fn(c, r, arg);
            ts_comm_destroy(c);
            _exit(rc == 0 ? 0 : 1);
        }
    }
    int failed = 0;
    for (int r = 0; r < world; r++) {
        int status = 0;
        waitpid(pids[r], &status, 0);
        if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
            failed++;
    }
    pthread_barrier_destroy(&sh->barrier);
    munmap(sh, sizeof(*sh));
    return failed;
}
