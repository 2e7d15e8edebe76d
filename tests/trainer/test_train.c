/* test_train.c: the step API, eval, determinism, the optimizer's divergence check and model.bin. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common.h"
#include "kernels/ops.h"
#include "trainer/train.h"
#include "trainer/weights.h"

struct rig {
    struct ts_backend *be;
    ts_gpt_t *gpt;
    ts_loader_t *loader;
    ts_comm_t *comm;
    ts_trainer_t *tr;
};

static struct ts_train_config tiny_train(int B, int T, int accum) {
    struct ts_train_config c = {.batch = B, .seq_len = T, .grad_accum = accum};
    c.lr = (struct ts_lr_schedule){.max_lr = 1e-3f, .warmup = 2, .total = 20, .min_lr_frac = 0.1f};
    c.adamw = ts_adamw_defaults();
    return c;
}

static void rig_open(struct rig *r, int threads, const char *shards, uint64_t seed,
                     const struct ts_train_config *tc) {
    memset(r, 0, sizeof(*r));
    r->be = test_backend(threads);
    struct ts_gpt_config cfg = test_tiny_config();
    cr_assert_eq(ts_gpt_create(&r->gpt, &cfg, r->be, tc->batch, tc->seq_len), TS_OK, "%s",
                 ts_last_error());
    cr_assert_eq(ts_gpt_init(r->gpt, seed), TS_OK);
    cr_assert_eq(ts_loader_create(&r->loader, shards, tc->seq_len, cfg.vocab_size), TS_OK, "%s",
                 ts_last_error());
    cr_assert_eq(ts_comm_create_single(&r->comm), TS_OK);
    cr_assert_eq(ts_trainer_create(&r->tr, r->gpt, r->loader, r->comm, tc), TS_OK, "%s",
                 ts_last_error());
}

static void rig_close(struct rig *r) {
    ts_trainer_destroy(r->tr);
    ts_comm_destroy(r->comm);
    ts_loader_destroy(r->loader);
    ts_gpt_destroy(r->gpt);
    ts_backend_destroy(r->be);
}

static char *write_random_shard(const char *dir, const char *name, int64_t n, uint64_t seed) {
    uint16_t *tok = malloc((size_t)n * sizeof(uint16_t));
    test_random_tokens(tok, n, 300, seed);
    char *p = test_path(dir, name);
    cr_assert_eq(ts_shard_write(p, tok, n), TS_OK, "%s", ts_last_error());
    free(tok);
    return p;
}

/* Same seed, same data: bit-identical losses (two OpenMP threads, so reductions must not depend
 * on scheduling). */
Test(trainer_train, determinism) {
    char *dir = test_mkdtemp();
    char *shard = write_random_shard(dir, "train.bin", 2000, 3);
    const struct ts_train_config tc = tiny_train(4, 16, 2);
    struct rig a, b;
    rig_open(&a, 2, shard, 11, &tc);
    rig_open(&b, 2, shard, 11, &tc);
    for (int s = 0; s < 5; s++) {
        struct ts_step_record ra, rb;
        cr_assert_eq(ts_trainer_step(a.tr, &ra), TS_OK, "%s", ts_last_error());
        cr_assert_eq(ts_trainer_step(b.tr, &rb), TS_OK, "%s", ts_last_error());
        cr_assert_eq(memcmp(&ra.loss, &rb.loss, sizeof(float)), 0, "step %d: %.9g vs %.9g", s,
                     ra.loss, rb.loss);
        cr_assert_eq(memcmp(&ra.grad_norm, &rb.grad_norm, sizeof(float)), 0, "step %d norm", s);
        cr_assert_eq(ra.step, s);
        cr_assert_eq(ra.tokens, 4 * 16 * 2);
        cr_assert_float_eq(ra.lr, ts_lr_at(&tc.lr, s), 0.0f);
        cr_assert(isfinite(ra.loss) && ra.grad_norm > 0 && ra.step_ms > 0 && ra.tok_per_s > 0);
    }
    cr_assert_eq(ts_trainer_steps_done(a.tr), 5);
    cr_assert_eq(ts_loader_position(a.loader), 5 * 2 * 4);

    const int64_t n = ts_gpt_num_params(a.gpt);
    float *pa = malloc((size_t)n * sizeof(float)), *pb = malloc((size_t)n * sizeof(float));
    cr_assert_eq(ts_gpt_params_to_host(a.gpt, pa), TS_OK);
    cr_assert_eq(ts_gpt_params_to_host(b.gpt, pb), TS_OK);
    cr_assert_eq(memcmp(pa, pb, (size_t)n * sizeof(float)), 0);
    free(pa);
    free(pb);
    rig_close(&a);
    rig_close(&b);
    free(shard);
    test_rmdir(dir);
}

/* A communicator of one rank whose every collective fails: with one data-parallel rank the
 * reduction is the identity, so the trainer must call none (no hook, no bucket, no loss or norm
 * all-reduce, no ZeRO-1 all-gather) and train exactly as with the single-process group. */
static int collective_calls;

static ts_status refuse_start(ts_comm_t *c, struct ts_backend *be, const struct ts_tensor *buf,
                              ts_event_t *ready, struct ts_comm_req *req) {
    collective_calls++;
    return ts_error(TS_ERR_COMM, "a collective was called with one rank");
}

static ts_status refuse_rs(ts_comm_t *c, struct ts_backend *be, const struct ts_tensor *buf,
                           const int *counts, ts_event_t *ready, struct ts_comm_req *req) {
    return refuse_start(c, be, buf, ready, req);
}

static ts_status refuse_ag(ts_comm_t *c, struct ts_backend *be, const struct ts_tensor *buf,
                           const int *counts, const int *displs, ts_event_t *ready,
                           struct ts_comm_req *req) {
    return refuse_start(c, be, buf, ready, req);
}

static ts_status refuse_host(ts_comm_t *c, double *buf, int count, enum ts_reduce_op op) {
    return refuse_start(c, NULL, NULL, NULL, NULL);
}

static const struct ts_comm_ops refusing_ops = {
    .name = "refusing",
    .memory = TS_COMM_MEM_HOST,
    .max_count = INT64_MAX,
    .all_reduce_start = refuse_start,
    .reduce_scatter_start = refuse_rs,
    .all_gather_start = refuse_ag,
    .all_reduce_host = refuse_host,
};

Test(trainer_train, one_rank_calls_no_collective) {
    char *dir = test_mkdtemp();
    char *shard = write_random_shard(dir, "train.bin", 2000, 3);
    for (int zero = 0; zero <= 1; zero++) {
        struct ts_train_config tc = tiny_train(2, 16, 2);
        tc.zero_stage = zero;
        tc.bucket_elems = 5000; /* several buckets */
        struct rig a, b;
        rig_open(&a, 1, shard, 11, &tc);
        rig_open(&b, 1, shard, 11, &tc);
        ts_comm_t refusing = {.ops = &refusing_ops, .size = 1, .local_size = 1};
        ts_trainer_destroy(b.tr);
        cr_assert_eq(ts_trainer_create(&b.tr, b.gpt, b.loader, &refusing, &tc), TS_OK, "%s",
                     ts_last_error());
        cr_assert_gt(ts_trainer_num_buckets(b.tr), 1);
        collective_calls = 0;
        for (int s = 0; s < 3; s++) {
            struct ts_step_record ra, rb;
            cr_assert_eq(ts_trainer_step(a.tr, &ra), TS_OK, "%s", ts_last_error());
            cr_assert_eq(ts_trainer_step(b.tr, &rb), TS_OK, "zero %d: %s", zero, ts_last_error());
            cr_assert_eq(memcmp(&ra.loss, &rb.loss, sizeof(float)), 0);
            cr_assert_eq(rb.comm_wait_ms, 0.0);
            cr_assert_eq(rb.buckets_done_in_backward, ts_trainer_num_buckets(b.tr));
        }
        cr_assert_eq(collective_calls, 0);
        rig_close(&a);
        rig_close(&b);
    }
    free(shard);
    test_rmdir(dir);
}

/* The CPU backend behind a table that counts the calls where the host waits for the device
 * (copy_h2d, copy_d2h, sync, event_sync) and the asynchronous copies, so the host waits of a step
 * are counted without a GPU: the trainer makes the same calls whatever the backend. */
struct counts {
    int h2d, d2h, sync, event_sync, h2d_async, d2h_async;
};

struct counting {
    struct ts_backend be; /* first: the table the model sees */
    struct ts_backend *inner;
    struct counts n;
};

static struct counting *counting_of(struct ts_backend *be) { return (struct counting *)be; }

static ts_status count_h2d(struct ts_backend *be, void *dst, const void *src, size_t bytes) {
    counting_of(be)->n.h2d++;
    return counting_of(be)->inner->copy_h2d(counting_of(be)->inner, dst, src, bytes);
}

static ts_status count_d2h(struct ts_backend *be, void *dst, const void *src, size_t bytes) {
    counting_of(be)->n.d2h++;
    return counting_of(be)->inner->copy_d2h(counting_of(be)->inner, dst, src, bytes);
}

static ts_status count_sync(struct ts_backend *be) {
    counting_of(be)->n.sync++;
    return counting_of(be)->inner->sync(counting_of(be)->inner);
}

static ts_status count_event_sync(struct ts_backend *be, ts_event_t *ev) {
    counting_of(be)->n.event_sync++;
    return counting_of(be)->inner->event_sync(counting_of(be)->inner, ev);
}

static ts_status count_h2d_async(struct ts_backend *be, void *dst, const void *src, size_t bytes) {
    counting_of(be)->n.h2d_async++;
    return counting_of(be)->inner->copy_h2d_async(counting_of(be)->inner, dst, src, bytes);
}

static ts_status count_d2h_async(struct ts_backend *be, void *dst, const void *src, size_t bytes) {
    counting_of(be)->n.d2h_async++;
    return counting_of(be)->inner->copy_d2h_async(counting_of(be)->inner, dst, src, bytes);
}

static void count_destroy(struct ts_backend *be) {
    ts_backend_destroy(counting_of(be)->inner);
    free(be);
}

static struct ts_backend *counting_backend(void) {
    struct counting *c = calloc(1, sizeof(*c));
    cr_assert_not_null(c);
    c->inner = test_backend(1);
    c->be = *c->inner; /* every op forwards: same ctx, same functions */
    c->be.copy_h2d = count_h2d;
    c->be.copy_d2h = count_d2h;
    c->be.sync = count_sync;
    c->be.event_sync = count_event_sync;
    c->be.copy_h2d_async = count_h2d_async;
    c->be.copy_d2h_async = count_d2h_async;
    c->be.destroy = count_destroy;
    return &c->be;
}

/* Issue 17's host waits: a step used to wait for the device at each micro-step's two id uploads,
 * at the losses' read-back, at the norm's and at its end. Now the ids go up asynchronously from
 * two pinned buffers (a wait only when a buffer comes round again within a step: micro-steps
 * 2.. of a step), the losses and the norm come back together after one wait, and the step ends
 * with one sync; the results are the plain CPU backend's bits. */
Test(trainer_train, host_waits_per_step) {
    char *dir = test_mkdtemp();
    char *shard = write_random_shard(dir, "train.bin", 2000, 3);
    for (int accum = 1; accum <= 4; accum++) {
        const struct ts_train_config tc = tiny_train(2, 16, accum);
        struct rig plain, counted;
        rig_open(&plain, 1, shard, 11, &tc);
        rig_open(&counted, 1, shard, 11, &tc);
        ts_trainer_destroy(counted.tr);
        ts_gpt_destroy(counted.gpt);
        ts_backend_destroy(counted.be);
        counted.be = counting_backend();
        struct ts_gpt_config cfg = test_tiny_config();
        cr_assert_eq(ts_gpt_create(&counted.gpt, &cfg, counted.be, 2, 16), TS_OK, "%s",
                     ts_last_error());
        cr_assert_eq(ts_gpt_init(counted.gpt, 11), TS_OK);
        cr_assert_eq(ts_trainer_create(&counted.tr, counted.gpt, counted.loader, counted.comm, &tc),
                     TS_OK, "%s", ts_last_error());
        struct counting *c = counting_of(counted.be);
        for (int s = 0; s < 3; s++) {
            struct ts_step_record ra, rb;
            c->n = (struct counts){0};
            cr_assert_eq(ts_trainer_step(plain.tr, &ra), TS_OK, "%s", ts_last_error());
            cr_assert_eq(ts_trainer_step(counted.tr, &rb), TS_OK, "%s", ts_last_error());
            cr_assert_eq(memcmp(&ra.loss, &rb.loss, sizeof(float)), 0);
            cr_assert_eq(memcmp(&ra.grad_norm, &rb.grad_norm, sizeof(float)), 0);
            const int reuse = accum > 2 ? accum - 2 : 0;
            cr_assert_eq(c->n.h2d, 0, "accum %d: %d waiting uploads", accum, c->n.h2d);
            cr_assert_eq(c->n.d2h, 0, "accum %d: %d waiting downloads", accum, c->n.d2h);
            cr_assert_eq(c->n.event_sync, 1 + reuse, "accum %d: %d event waits", accum,
                         c->n.event_sync);
            cr_assert_eq(c->n.sync, 1, "accum %d: %d syncs", accum, c->n.sync);
            cr_assert_eq(c->n.h2d_async, 2 * accum, "accum %d: %d uploads", accum, c->n.h2d_async);
            cr_assert_eq(c->n.d2h_async, 2, "accum %d: %d downloads", accum, c->n.d2h_async);
        }
        rig_close(&plain);
        rig_close(&counted);
    }
    free(shard);
    test_rmdir(dir);
}

/* Training on one repeated batch must drive its loss down (the update has the right sign). */
Test(trainer_train, loss_decreases_on_a_fixed_batch) {
    char *dir = test_mkdtemp();
    char *shard = write_random_shard(dir, "train.bin", 4 * 16 + 1, 5); /* exactly 4 windows */
    struct ts_train_config tc = tiny_train(4, 16, 1);
    tc.lr = (struct ts_lr_schedule){.max_lr = 3e-3f, .warmup = 0, .total = 30, .min_lr_frac = 1};
    struct rig r;
    rig_open(&r, 1, shard, 2, &tc);
    struct ts_step_record rec;
    float first = 0;
    for (int s = 0; s < 30; s++) {
        cr_assert_eq(ts_trainer_step(r.tr, &rec), TS_OK, "%s", ts_last_error());
        if (s == 0)
            first = rec.loss;
    }
    cr_assert(rec.loss < 0.5f * first, "loss %g -> %g", first, rec.loss);
    rig_close(&r);
    free(shard);
    test_rmdir(dir);
}

Test(trainer_train, create_errors) {
    char *dir = test_mkdtemp();
    char *shard = write_random_shard(dir, "train.bin", 500, 3);
    struct ts_train_config tc = tiny_train(2, 8, 1);
    struct rig r;
    rig_open(&r, 1, shard, 1, &tc);
    ts_trainer_t *tr = NULL;
    tc.seq_len = 16; /* the loader cuts 8 */
    cr_assert_eq(ts_trainer_create(&tr, r.gpt, r.loader, r.comm, &tc), TS_ERR_INVALID_ARG);
    cr_assert(strstr(ts_last_error(), "T = 8") != NULL, "%s", ts_last_error());
    tc.seq_len = 8;
    tc.grad_accum = 0;
    cr_assert_eq(ts_trainer_create(&tr, r.gpt, r.loader, r.comm, &tc), TS_ERR_INVALID_ARG);
    cr_assert_null(tr);
    rig_close(&r);
    free(shard);
    test_rmdir(dir);
}

/* Eval reads from the start whatever the loader's position, restores it, and equals the mean of
 * per-batch forward losses. */
Test(trainer_train, eval_loss) {
    char *dir = test_mkdtemp();
    char *shard = write_random_shard(dir, "val.bin", 7 * 8 + 1, 9); /* 7 windows of T = 8 */
    struct ts_backend *be = test_backend(1);
    struct ts_gpt_config cfg = test_tiny_config();
    ts_gpt_t *gpt = NULL;
    ts_loader_t *l = NULL;
    cr_assert_eq(ts_gpt_create(&gpt, &cfg, be, 2, 8), TS_OK);
    cr_assert_eq(ts_gpt_init(gpt, 4), TS_OK);
    cr_assert_eq(ts_loader_create(&l, shard, 8, 300), TS_OK);

    double expect = 0;
    int32_t in[16], tg[16];
    for (int i = 0; i < 3; i++) {
        float loss;
        cr_assert_eq(ts_loader_next(l, 2, in, tg), TS_OK);
        cr_assert_eq(ts_gpt_forward(gpt, in, tg, 2, 8, 0.0f, &loss), TS_OK);
        expect += loss;
    }
    expect /= 3;
    ts_loader_seek(l, 5);
    double got = 0;
    int64_t tokens = 0;
    cr_assert_eq(ts_eval_loss(gpt, l, NULL, 2, 0, &got, &tokens), TS_OK, "%s", ts_last_error());
    cr_assert_eq(tokens, 3 * 2 * 8); /* 3 full batches of 2 in 7 windows */
    cr_assert_float_eq(got, expect, 1e-12, "%g vs %g", got, expect);
    cr_assert_eq(ts_loader_position(l), 5);
    double got1;
    cr_assert_eq(ts_eval_loss(gpt, l, NULL, 2, 1, &got1, &tokens), TS_OK);
    cr_assert_eq(tokens, 16);
    cr_assert_eq(ts_eval_loss(gpt, l, NULL, 8, 0, &got1, &tokens), TS_ERR_INVALID_ARG);
    ts_loader_destroy(l);
    ts_gpt_destroy(gpt);
    ts_backend_destroy(be);
    free(shard);
    test_rmdir(dir);
}

/* A non-finite gradient norm skips the update with a message naming the step. */
Test(trainer_train, nonfinite_grad_norm) {
    struct ts_backend *be = test_backend(1);
    struct ts_gpt_config cfg = test_tiny_config();
    ts_gpt_t *gpt = NULL;
    ts_optim_t *opt = NULL;
    cr_assert_eq(ts_gpt_create(&gpt, &cfg, be, 1, 4), TS_OK);
    cr_assert_eq(ts_gpt_init(gpt, 1), TS_OK);
    const struct ts_adamw_config ac = ts_adamw_defaults();
    cr_assert_eq(ts_optim_create(&opt, gpt, &ac), TS_OK);
    const int64_t n = ts_gpt_num_params(gpt);
    float *before = malloc((size_t)n * sizeof(float)), *after = malloc((size_t)n * sizeof(float));
    float *g = calloc((size_t)n, sizeof(float));
    g[n / 2] = NAN;
    cr_assert_eq(ts_op_upload(be, ts_gpt_grad_buffer(gpt), g, (size_t)n * sizeof(float)), TS_OK);
    cr_assert_eq(ts_gpt_params_to_host(gpt, before), TS_OK);
    float norm = 0;
    cr_assert_eq(ts_optim_step(opt, 1e-3f, &norm), TS_ERR_INVALID_ARG);
    cr_assert(strstr(ts_last_error(), "non-finite gradient norm at step 0") != NULL, "%s",
              ts_last_error());
    cr_assert(isnan(norm));
    cr_assert_eq(ts_optim_step_count(opt), 0);
    cr_assert_eq(ts_gpt_params_to_host(gpt, after), TS_OK);
    cr_assert_eq(memcmp(before, after, (size_t)n * sizeof(float)), 0);

    /* A finite gradient: norm reported, weight decay only where the table says so. Gradient 0
     * everywhere means the update is pure decay: decayed tensors shrink, the others stay. */
    memset(g, 0, (size_t)n * sizeof(float));
    cr_assert_eq(ts_op_upload(be, ts_gpt_grad_buffer(gpt), g, (size_t)n * sizeof(float)), TS_OK);
    cr_assert_eq(ts_optim_step(opt, 0.5f, &norm), TS_OK, "%s", ts_last_error());
    cr_assert_eq(norm, 0.0f);
    cr_assert_eq(ts_optim_step_count(opt), 1);
    cr_assert_eq(ts_gpt_params_to_host(gpt, after), TS_OK);
    int count;
    const struct ts_param_info *t = ts_gpt_params(gpt, &count);
    for (int i = 0; i < count; i++) {
        const int64_t k = t[i].offset; /* first element */
        const float want = t[i].decay ? before[k] * (1.0f - 0.5f * 0.1f) : before[k];
        cr_assert_float_eq(after[k], want, 1e-7f, "%s: %g -> %g", t[i].name, before[k], after[k]);
    }
    free(before);
    free(after);
    free(g);
    ts_optim_destroy(opt);
    ts_gpt_destroy(gpt);
    ts_backend_destroy(be);
}

Test(trainer_weights, roundtrip_and_errors) {
    char *dir = test_mkdtemp();
    char *path = test_path(dir, "model.bin");
    struct ts_backend *be = test_backend(1);
    struct ts_gpt_config cfg = test_tiny_config();
    ts_gpt_t *a = NULL, *b = NULL;
    cr_assert_eq(ts_gpt_create(&a, &cfg, be, 1, 4), TS_OK);
    cr_assert_eq(ts_gpt_init(a, 77), TS_OK);
    cr_assert_eq(ts_weights_save(a, path), TS_OK, "%s", ts_last_error());

    struct ts_gpt_config rc;
    cr_assert_eq(ts_weights_read_config(path, &rc), TS_OK, "%s", ts_last_error());
    cr_assert_eq(rc.vocab_size, 300);
    cr_assert_eq(rc.padded_vocab_size, 384);
    cr_assert_eq(rc.num_layers, 2);
    cr_assert_eq(rc.channels, 64);
    cr_assert_eq(ts_gpt_create(&b, &rc, be, 1, 4), TS_OK);
    cr_assert_eq(ts_weights_load(b, path), TS_OK, "%s", ts_last_error());
    const int64_t n = ts_gpt_num_params(a);
    float *pa = malloc((size_t)n * sizeof(float)), *pb = malloc((size_t)n * sizeof(float));
    cr_assert_eq(ts_gpt_params_to_host(a, pa), TS_OK);
    cr_assert_eq(ts_gpt_params_to_host(b, pb), TS_OK);
    cr_assert_eq(memcmp(pa, pb, (size_t)n * sizeof(float)), 0);
    /* No temporary file is left behind. */
    char *tmp = test_path(dir, "model.bin.tmp");
    FILE *f = fopen(tmp, "rb");
    cr_assert_null(f);

    /* A model of another shape refuses the file. */
    ts_gpt_t *c = NULL;
    struct ts_gpt_config other = cfg;
    other.num_layers = 1;
    cr_assert_eq(ts_gpt_create(&c, &other, be, 1, 4), TS_OK);
    cr_assert_eq(ts_weights_load(c, path), TS_ERR_INVALID_ARG);
    cr_assert(strstr(ts_last_error(), "differs") != NULL, "%s", ts_last_error());
    /* Truncated, and not a model file at all. */
    f = fopen(path, "r+b");
    cr_assert_not_null(f);
    cr_assert_eq(ftruncate(fileno(f), 1024 + 100), 0);
    fclose(f);
    cr_assert_eq(ts_weights_load(b, path), TS_ERR_FORMAT);
    cr_assert(strstr(ts_last_error(), "truncated") != NULL, "%s", ts_last_error());
    f = fopen(path, "r+b");
    const int32_t junk = 1;
    fwrite(&junk, sizeof(junk), 1, f);
    fclose(f);
    cr_assert_eq(ts_weights_read_config(path, &rc), TS_ERR_FORMAT);
    cr_assert(strstr(ts_last_error(), "magic 1") != NULL, "%s", ts_last_error());
    free(pa);
    free(pb);
    free(tmp);
    free(path);
    ts_gpt_destroy(a);
    ts_gpt_destroy(b);
    ts_gpt_destroy(c);
    ts_backend_destroy(be);
    test_rmdir(dir);
}
