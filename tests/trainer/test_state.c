/* test_state.c: the trainer's state through a checkpoint: 6 updates straight against 3, save,
 * a fresh process-like rig loading it, 3 more: losses, norms and final weights and moments
 * bit-identical; weights-only loads; a model of another shape refused naming the key; the
 * lineage's paths recorded whole or refused. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"
#include "kernels/ops.h"
#include "tests/gpu/bf16emu.h"
#include "trainer/state.h"
#include "trainer/train.h"

struct rig {
    struct ts_backend *be;
    ts_gpt_t *gpt;
    ts_loader_t *loader;
    ts_comm_t *comm;
    ts_trainer_t *tr;
};

static struct ts_train_config tiny_train(void) {
    struct ts_train_config c = {.batch = 2, .seq_len = 16, .grad_accum = 2};
    c.lr = (struct ts_lr_schedule){.max_lr = 1e-3f, .warmup = 2, .total = 6, .min_lr_frac = 0.1f};
    c.adamw = ts_adamw_defaults();
    return c;
}

static void rig_open(struct rig *r, const char *shard, const struct ts_gpt_config *cfg) {
    const struct ts_train_config tc = tiny_train();
    memset(r, 0, sizeof(*r));
    if (cfg->dtype == TS_DTYPE_BF16)
        cr_assert_eq(bf16emu_create(&r->be), TS_OK, "%s", ts_last_error());
    else
        r->be = test_backend(1);
    cr_assert_eq(ts_gpt_create(&r->gpt, cfg, r->be, tc.batch, tc.seq_len), TS_OK);
    cr_assert_eq(ts_gpt_init(r->gpt, 5), TS_OK);
    cr_assert_eq(ts_loader_create(&r->loader, shard, tc.seq_len, cfg->vocab_size), TS_OK);
    cr_assert_eq(ts_comm_create_single(&r->comm), TS_OK);
    cr_assert_eq(ts_trainer_create(&r->tr, r->gpt, r->loader, r->comm, &tc), TS_OK);
}

static void rig_close(struct rig *r) {
    ts_trainer_destroy(r->tr);
    ts_comm_destroy(r->comm);
    ts_loader_destroy(r->loader);
    ts_gpt_destroy(r->gpt);
    ts_backend_destroy(r->be);
}

static float *host_moments(struct rig *r, int which) {
    struct ts_tensor m, v;
    ts_optim_moments(ts_trainer_optim(r->tr), &m, &v);
    const int64_t n = ts_gpt_num_params(r->gpt);
    float *h = malloc((size_t)n * sizeof(float));
    cr_assert_eq(ts_op_download(r->be, h, which ? &v : &m, (size_t)n * sizeof(float)), TS_OK);
    return h;
}

static float *host_params(struct rig *r) {
    const int64_t n = ts_gpt_num_params(r->gpt);
    float *h = malloc((size_t)n * sizeof(float));
    cr_assert_eq(ts_gpt_params_to_host(r->gpt, h), TS_OK);
    return h;
}

static void resume_bit_exact(enum ts_dtype dtype) {
    char *dir = test_mkdtemp();
    uint16_t tok[3000];
    test_random_tokens(tok, 3000, 300, 9);
    char *shard = test_path(dir, "train.bin");
    cr_assert_eq(ts_shard_write(shard, tok, 3000), TS_OK);
    char *ckdir = test_path(dir, "checkpoints");
    struct ts_gpt_config cfg = test_tiny_config();
    cfg.dtype = dtype;
    cr_assert_eq(ts_gpt_config_finish(&cfg), TS_OK);

    struct rig a, b;
    struct ts_step_record ra[6], rb[6];
    rig_open(&a, shard, &cfg);
    for (int s = 0; s < 6; s++)
        cr_assert_eq(ts_trainer_step(a.tr, &ra[s]), TS_OK, "%s", ts_last_error());

    rig_open(&b, shard, &cfg);
    for (int s = 0; s < 3; s++)
        cr_assert_eq(ts_trainer_step(b.tr, &rb[s]), TS_OK);
    struct ts_train_state_info info = {.tokens_seen = 3 * 64, .global_batch = 4};
    char path[4096];
    cr_assert_eq(ts_train_state_save(b.tr, b.comm, &info, ckdir, 0, path, sizeof(path)), TS_OK,
                 "%s", ts_last_error());
    rig_close(&b);

    rig_open(&b, shard, &cfg); /* fresh: other weights (same seed, but untrained), zero moments */
    ts_ckpt_t *ck = NULL;
    cr_assert_eq(ts_ckpt_open(&ck, ckdir), TS_OK, "%s", ts_last_error());
    cr_assert_eq(ts_ckpt_meta(ck)->step, 3);
    cr_assert_eq(ts_ckpt_meta(ck)->loader_position, 3 * 4);
    cr_assert_eq(ts_train_state_load(b.tr, ck), TS_OK, "%s", ts_last_error());
    ts_ckpt_close(ck);
    cr_assert_eq(ts_trainer_steps_done(b.tr), 3);
    for (int s = 3; s < 6; s++) {
        cr_assert_eq(ts_trainer_step(b.tr, &rb[s]), TS_OK);
        cr_assert_eq(rb[s].step, s);
        cr_assert_eq(memcmp(&ra[s].loss, &rb[s].loss, sizeof(float)), 0, "step %d: %.9g vs %.9g", s,
                     ra[s].loss, rb[s].loss);
        cr_assert_eq(memcmp(&ra[s].grad_norm, &rb[s].grad_norm, sizeof(float)), 0);
        cr_assert_eq(memcmp(&ra[s].lr, &rb[s].lr, sizeof(float)), 0);
    }
    const size_t bytes = (size_t)ts_gpt_num_params(a.gpt) * sizeof(float);
    float *pa = host_params(&a), *pb = host_params(&b);
    cr_assert_eq(memcmp(pa, pb, bytes), 0, "final weights differ");
    for (int w = 0; w < 2; w++) {
        float *ma = host_moments(&a, w), *mb = host_moments(&b, w);
        cr_assert_eq(memcmp(ma, mb, bytes), 0, "final moment %d differs", w);
        free(ma);
        free(mb);
    }
    struct ts_tensor wa, wb;
    cr_assert_eq(ts_optim_master(ts_trainer_optim(a.tr), &wa), dtype == TS_DTYPE_BF16);
    if (dtype == TS_DTYPE_BF16) { /* the fp32 master weights too */
        cr_assert(ts_optim_master(ts_trainer_optim(b.tr), &wb));
        float *ha = malloc(bytes), *hb = malloc(bytes);
        cr_assert_eq(ts_op_download(a.be, ha, &wa, bytes), TS_OK);
        cr_assert_eq(ts_op_download(b.be, hb, &wb, bytes), TS_OK);
        cr_assert_eq(memcmp(ha, hb, bytes), 0, "final master weights differ");
        free(ha);
        free(hb);
        ts_ckpt_t *ck2 = NULL;
        cr_assert_eq(ts_ckpt_open(&ck2, ckdir), TS_OK);
        cr_assert(ts_ckpt_has_tensor(ck2, "master/wte.weight"));
        ts_ckpt_close(ck2);
    }
    free(pa);
    free(pb);
    rig_close(&a);
    rig_close(&b);
    free(shard);
    free(ckdir);
    test_rmdir(dir);
}

Test(trainer_state, resume_is_bit_exact) { resume_bit_exact(TS_DTYPE_F32); }

/* bf16 parameters with fp32 master weights (the CUDA path), on the bf16-storing CPU backend. */
Test(trainer_state, resume_is_bit_exact_bf16) { resume_bit_exact(TS_DTYPE_BF16); }

/* A run past 2^31 updates: the checkpoint records step 2^32 + 5 (it used to resume as 5, then
 * was refused), a resume restores it in the trainer and the optimizer, and the next update is the
 * same one the saving run makes (AdamW's bias correction and the schedule at a 64-bit step). */
Test(trainer_state, step_past_2_31_resumes_as_itself) {
    char *dir = test_mkdtemp();
    uint16_t tok[3000];
    test_random_tokens(tok, 3000, 300, 9);
    char *shard = test_path(dir, "train.bin");
    cr_assert_eq(ts_shard_write(shard, tok, 3000), TS_OK);
    char *ckdir = test_path(dir, "checkpoints");
    struct ts_gpt_config cfg = test_tiny_config();
    cr_assert_eq(ts_gpt_config_finish(&cfg), TS_OK);
    const int64_t big = 4294967301LL; /* 2^32 + 5 */
    struct rig a, b;
    struct ts_step_record ra, rb;
    rig_open(&a, shard, &cfg);
    cr_assert_eq(ts_trainer_step(a.tr, &ra), TS_OK, "%s", ts_last_error());
    ts_trainer_set_steps_done(a.tr, big);
    ts_optim_set_step_count(ts_trainer_optim(a.tr), big);
    struct ts_train_state_info info = {.tokens_seen = 64, .global_batch = 4};
    char path[4096];
    cr_assert_eq(ts_train_state_save(a.tr, a.comm, &info, ckdir, 0, path, sizeof(path)), TS_OK,
                 "%s", ts_last_error());
    rig_open(&b, shard, &cfg);
    ts_ckpt_t *ck = NULL;
    cr_assert_eq(ts_ckpt_open(&ck, ckdir), TS_OK, "%s", ts_last_error());
    cr_assert_eq(ts_ckpt_meta(ck)->step, big);
    cr_assert_eq(ts_train_state_load(b.tr, ck), TS_OK, "%s", ts_last_error());
    ts_ckpt_close(ck);
    cr_assert_eq(ts_trainer_steps_done(b.tr), big);
    cr_assert_eq(ts_optim_step_count(ts_trainer_optim(b.tr)), big);
    cr_assert_eq(ts_trainer_step(a.tr, &ra), TS_OK, "%s", ts_last_error());
    cr_assert_eq(ts_trainer_step(b.tr, &rb), TS_OK, "%s", ts_last_error());
    cr_assert(ra.step == big && rb.step == big, "%lld, %lld", (long long)ra.step,
              (long long)rb.step);
    cr_assert_eq(ts_trainer_steps_done(b.tr), big + 1);
    cr_assert_eq(memcmp(&ra.loss, &rb.loss, sizeof(float)), 0);
    cr_assert_eq(memcmp(&ra.lr, &rb.lr, sizeof(float)), 0);
    cr_assert_float_eq(rb.lr, 1e-4f, 1e-9f, "past the horizon: min_lr, got %g", (double)rb.lr);
    const size_t bytes = (size_t)ts_gpt_num_params(a.gpt) * sizeof(float);
    float *pa = host_params(&a), *pb = host_params(&b);
    cr_assert_eq(memcmp(pa, pb, bytes), 0, "the update after the resume differs");
    for (size_t i = 0; i < bytes / sizeof(float); i++)
        cr_assert(isfinite(pb[i]), "weight %zu is %g after step 2^32+5", i, (double)pb[i]);
    free(pa);
    free(pb);
    rig_close(&a);
    rig_close(&b);
    free(shard);
    free(ckdir);
    test_rmdir(dir);
}

Test(trainer_state, weights_only_and_model_mismatch) {
    char *dir = test_mkdtemp();
    uint16_t tok[3000];
    test_random_tokens(tok, 3000, 300, 9);
    char *shard = test_path(dir, "train.bin");
    cr_assert_eq(ts_shard_write(shard, tok, 3000), TS_OK);
    char *ckdir = test_path(dir, "checkpoints");
    struct ts_gpt_config cfg = test_tiny_config();
    cr_assert_eq(ts_gpt_config_finish(&cfg), TS_OK);
    struct rig a;
    rig_open(&a, shard, &cfg);
    struct ts_step_record rec;
    cr_assert_eq(ts_trainer_step(a.tr, &rec), TS_OK);
    struct ts_train_state_info info = {.global_batch = 4};
    char path[4096];
    cr_assert_eq(ts_train_state_save(a.tr, a.comm, &info, ckdir, 0, path, sizeof(path)), TS_OK,
                 "%s", ts_last_error());
    ts_ckpt_t *ck = NULL;
    cr_assert_eq(ts_ckpt_open(&ck, path), TS_OK);
    struct ts_gpt_config got;
    cr_assert_eq(ts_gpt_config_from_checkpoint(ck, &got), TS_OK, "%s", ts_last_error());
    cr_assert_eq(memcmp(&got, &cfg, sizeof(cfg)), 0);

    struct ts_backend *be = test_backend(1);
    ts_gpt_t *g = NULL;
    cr_assert_eq(ts_gpt_create(&g, &cfg, be, 2, 16), TS_OK);
    cr_assert_eq(ts_gpt_load_checkpoint(g, ck), TS_OK, "%s", ts_last_error());
    float *pa = host_params(&a);
    float *pg = malloc((size_t)ts_gpt_num_params(g) * sizeof(float));
    cr_assert_eq(ts_gpt_params_to_host(g, pg), TS_OK);
    cr_assert_eq(memcmp(pa, pg, (size_t)ts_gpt_num_params(g) * sizeof(float)), 0);
    ts_gpt_destroy(g);

    struct ts_gpt_config wide = cfg;
    wide.num_layers = 3;
    cr_assert_eq(ts_gpt_config_finish(&wide), TS_OK);
    cr_assert_eq(ts_gpt_create(&g, &wide, be, 2, 16), TS_OK);
    cr_assert_neq(ts_gpt_load_checkpoint(g, ck), TS_OK);
    cr_assert(strstr(ts_last_error(), "num_layers 2") != NULL, "%s", ts_last_error());
    cr_assert(strstr(ts_last_error(), "differs from the flags") != NULL, "%s", ts_last_error());
    ts_gpt_destroy(g);
    ts_backend_destroy(be);
    ts_ckpt_close(ck);
    free(pa);
    free(pg);
    rig_close(&a);
    free(shard);
    free(ckdir);
    test_rmdir(dir);
}

/* The parent and the data manifest are recorded whole (the parent was cut to 511 bytes before,
 * naming a checkpoint that does not exist); one that cannot fit is an error, nothing saved. */
Test(trainer_state, lineage_paths_recorded_whole) {
    char *dir = test_mkdtemp();
    uint16_t tok[3000];
    test_random_tokens(tok, 3000, 300, 9);
    char *shard = test_path(dir, "train.bin");
    cr_assert_eq(ts_shard_write(shard, tok, 3000), TS_OK);
    char *ckdir = test_path(dir, "checkpoints");
    struct ts_gpt_config cfg = test_tiny_config();
    cr_assert_eq(ts_gpt_config_finish(&cfg), TS_OK);
    struct rig a;
    rig_open(&a, shard, &cfg);
    char *parent = malloc(TS_PATH_MAX + 1), *manifest = malloc(2001);
    for (int i = 0; i < TS_PATH_MAX; i++)
        parent[i] = i % 40 == 0 ? '/' : (char)('a' + (i / 40) % 26);
    parent[3000] = '\0';
    memset(manifest, 'm', 2000);
    manifest[0] = '/';
    manifest[2000] = '\0';
    struct ts_train_state_info info = {
        .global_batch = 4, .parent = parent, .data_manifest = manifest};
    char path[TS_PATH_MAX];
    cr_assert_eq(ts_train_state_save(a.tr, a.comm, &info, ckdir, 0, path, sizeof(path)), TS_OK,
                 "%s", ts_last_error());
    ts_ckpt_t *ck = NULL;
    cr_assert_eq(ts_ckpt_open(&ck, path), TS_OK, "%s", ts_last_error());
    cr_assert_eq(strlen(ts_ckpt_meta(ck)->parent), 3000);
    cr_assert_str_eq(ts_ckpt_meta(ck)->parent, parent);
    cr_assert_str_eq(ts_ckpt_meta(ck)->data_manifest, manifest);
    ts_ckpt_close(ck);

    parent[3000] = 'x'; /* now TS_PATH_MAX bytes: one more than a path may have */
    parent[TS_PATH_MAX] = '\0';
    char *other = test_path(dir, "other");
    cr_assert_eq(ts_train_state_save(a.tr, a.comm, &info, other, 0, path, sizeof(path)),
                 TS_ERR_INVALID_ARG);
    cr_assert(strstr(ts_last_error(), "path too long (4096 bytes, at most 4095") != NULL, "%s",
              ts_last_error());
    cr_assert(!ts_ckpt_exists(other), "nothing saved");
    free(other);
    free(parent);
    free(manifest);
    rig_close(&a);
    free(shard);
    free(ckdir);
    test_rmdir(dir);
}

Test(trainer_state, counters_never_truncated) {
    int64_t s = 0, o = 0, p = 0;
    cr_assert_eq(ts_train_state_parse_counters("steps_done=7\noptim_steps=7\nloader_position=9\n",
                                               "ck", &s, &o, &p),
                 TS_OK, "%s", ts_last_error());
    cr_assert(s == 7 && o == 7 && p == 9);
    /* 4294967301 = 2^32 + 5 resumed as step 5; then it was refused; steps are 64-bit now */
    cr_assert_eq(ts_train_state_parse_counters("steps_done=4294967301\noptim_steps=4294967301\n"
                                               "loader_position=0\n",
                                               "ck", &s, &o, &p),
                 TS_OK, "%s", ts_last_error());
    cr_assert(s == 4294967301LL && o == 4294967301LL);
    /* above the 10^12 steps a run counts (TS_MAX_STEPS): refused, never cast */
    cr_assert_eq(
        ts_train_state_parse_counters(
            "steps_done=1000000000001\noptim_steps=5\nloader_position=0\n", "ck", &s, &o, &p),
        TS_ERR_FORMAT);
    cr_assert(strstr(ts_last_error(), "more than the 1000000000000") != NULL, "%s",
              ts_last_error());
    cr_assert_eq(ts_train_state_parse_counters("steps_done=5\noptim_steps=5x\nloader_position=0\n",
                                               "ck", &s, &o, &p),
                 TS_ERR_FORMAT);
    cr_assert_eq(ts_train_state_parse_counters(
                     "steps_done=5\noptim_steps=5\nloader_position=99999999999999999999\n", "ck",
                     &s, &o, &p),
                 TS_ERR_FORMAT);
    cr_assert_eq(ts_train_state_parse_counters("steps_done= -1\noptim_steps=5\nloader_position=0\n",
                                               "ck", &s, &o, &p),
                 TS_ERR_FORMAT);
}
