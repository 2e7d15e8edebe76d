/* test_tp_ckpt.c: tensor-parallel checkpoints of the same weights at tp 1, 2 and 4.
 *
 * The same seed initialises the same model at any tp (every element is drawn from its tp-1
 * counter), so checkpoints saved right after initialisation by 1 process, by 2 and by 4 forked
 * tp ranks (a shared-memory communicator, no MPI) must hold the same tensors bit for bit: the
 * params read whole, model.h5 (h5py), `tessera export hf`'s safetensors, `tessera eval` and
 * `tessera sample` on one process. Loading either checkpoint at another tp gives each rank the
 * exact part it initialised. ZeRO slices and the moments, under real mpirun, are in
 * tests/multirank/test_tp_ckpt.c. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../checkpoint/helpers.h"
#include "cli_util.h"
#include "kernels/cpu/cpu_backend.h"
#include "kernels/ops.h"
#include "tests/checkpoint/read_all.h"
#include "trainer/state.h"
#include "trainer/train.h"

#define SEED 7

/* V 256 (the bytes tokenizer's, for sample; Vp 256 divides by 4), 4 heads. */
static struct ts_gpt_config tp_config(void) {
    struct ts_gpt_config c = {
        .max_seq_len = 16, .vocab_size = 256, .num_layers = 2, .num_heads = 4, .channels = 32};
    cr_assert_eq(ts_gpt_config_finish(&c), TS_OK);
    return c;
}

static ts_status refuse_all_reduce(void *ctx, struct ts_backend *be, const struct ts_tensor *t) {
    (void)ctx, (void)be, (void)t;
    return ts_error(TS_ERR_INTERNAL, "no tp collective runs in this test");
}

/* A model of tp rank `rank` of `tp`, initialised from SEED. */
static ts_status make_model(ts_gpt_t **gpt, struct ts_backend **be, int tp, int rank) {
    const struct ts_gpt_config cfg = tp_config();
    const struct ts_cpu_options opt = {.threads = 1, .blas = TS_BLAS_AUTO};
    TS_CHECK(ts_cpu_backend_create(be, &opt));
    const struct ts_gpt_tp g = {.size = tp,
                                .rank = rank,
                                .all_reduce = refuse_all_reduce,
                                .all_reduce_max = refuse_all_reduce};
    TS_CHECK(ts_gpt_create_tp(gpt, &cfg, *be, 2, 16, &g));
    return ts_gpt_init(*gpt, SEED);
}

struct save_args {
    char shard[300], ckdir[300];
    int tp;
};

/* Rank `rank` of a world of tp ranks (dp 1): initialise and save at step 0. */
static int save_rank(ts_comm_t *world, int rank, void *arg) {
    const struct save_args *a = arg;
    struct ts_backend *be = NULL;
    ts_gpt_t *gpt = NULL;
    ts_loader_t *loader = NULL;
    ts_comm_t *dp = NULL;
    ts_trainer_t *tr = NULL;
    struct ts_train_config tc = {.batch = 2, .seq_len = 16, .grad_accum = 1};
    tc.lr = (struct ts_lr_schedule){.max_lr = 1e-3f, .warmup = 1, .total = 4, .min_lr_frac = 0.1f};
    tc.adamw = ts_adamw_defaults();
    tc.tp = a->tp > 1 ? world : NULL;
    const struct ts_train_state_info info = {
        .global_batch = 2, .layout = {.world_size = a->tp, .dp = 1, .tp = a->tp, .zero_stage = 0}};
    ts_status st = make_model(&gpt, &be, a->tp, rank);
    if (st == TS_OK)
        st = ts_loader_create(&loader, a->shard, 16, 256);
    if (st == TS_OK)
        st = ts_comm_create_single(&dp);
    if (st == TS_OK)
        st = ts_trainer_create(&tr, gpt, loader, dp, &tc);
    if (st == TS_OK)
        st = ts_train_state_save(tr, world, &info, a->ckdir, 0, NULL, 0);
    if (st != TS_OK)
        fprintf(stderr, "rank %d of tp %d: %s\n", rank, a->tp, ts_last_error());
    ts_trainer_destroy(tr);
    ts_comm_destroy(dp);
    ts_loader_destroy(loader);
    ts_gpt_destroy(gpt);
    ts_backend_destroy(be);
    return st != TS_OK;
}

static void save_at_tp(const char *dir, const char *shard, int tp) {
    struct save_args a = {.tp = tp};
    snprintf(a.shard, sizeof(a.shard), "%s", shard);
    snprintf(a.ckdir, sizeof(a.ckdir), "%s/tp%d/checkpoints", dir, tp);
    if (tp == 1) {
        ts_comm_t *one = NULL;
        cr_assert_eq(ts_comm_create_single(&one), TS_OK);
        cr_assert_eq(save_rank(one, 0, &a), 0);
        ts_comm_destroy(one);
        return;
    }
    cr_assert_eq(fork_ranks(tp, save_rank, &a), 0, "a rank of the tp %d save failed", tp);
}

/* Every params/ tensor of a checkpoint, whole, concatenated in manifest order. */
static float *read_params(const char *path, long *count) {
    static const char *const prefixes[] = {"params/"};
    return ck_read_all(path, prefixes, 1, count);
}

/* The model of tp rank `rank` loaded from `path` holds exactly what it was initialised with. */
static void load_matches_init(const char *path, int tp, int rank) {
    struct ts_backend *be = NULL, *be2 = NULL;
    ts_gpt_t *init = NULL, *loaded = NULL;
    cr_assert_eq(make_model(&init, &be, tp, rank), TS_OK, "%s", ts_last_error());
    cr_assert_eq(make_model(&loaded, &be2, tp, rank), TS_OK);
    const int64_t n = ts_gpt_num_params(init);
    cr_assert_eq(ts_op_zero(be2, ts_gpt_param_buffer(loaded)), TS_OK);
    ts_ckpt_t *ck = NULL;
    cr_assert_eq(ts_ckpt_open(&ck, path), TS_OK, "%s", ts_last_error());
    cr_assert_eq(ts_gpt_load_checkpoint(loaded, ck), TS_OK, "%s", ts_last_error());
    ts_ckpt_close(ck);
    float *a = malloc((size_t)n * sizeof(float)), *b = malloc((size_t)n * sizeof(float));
    cr_assert_eq(ts_gpt_params_to_host(init, a), TS_OK);
    cr_assert_eq(ts_gpt_params_to_host(loaded, b), TS_OK);
    cr_assert_eq(memcmp(a, b, (size_t)n * sizeof(float)), 0,
                 "tp %d rank %d loaded from %s differs from its initialisation", tp, rank, path);
    free(a);
    free(b);
    ts_gpt_destroy(init);
    ts_gpt_destroy(loaded);
    ts_backend_destroy(be);
    ts_backend_destroy(be2);
}

Test(launch_tpckpt, same_weights_same_checkpoint_at_tp_1_2_4, .timeout = 120) {
    char dir[256], shard[300], path[3][320];
    cli_tmpdir(dir, sizeof(dir));
    snprintf(shard, sizeof(shard), "%s/train_000.bin", dir);
    cli_write_pattern_shard(shard, 4000, 256, 3);
    const int tps[3] = {1, 2, 4};
    for (int i = 0; i < 3; i++) {
        save_at_tp(dir, shard, tps[i]);
        snprintf(path[i], sizeof(path[i]), "%s/tp%d", dir, tps[i]);
    }

    /* the tensors, read whole, are the same bits */
    long n1, n;
    float *p1 = read_params(path[0], &n1);
    for (int i = 1; i < 3; i++) {
        float *p = read_params(path[i], &n);
        cr_assert_eq(n, n1);
        cr_assert_eq(memcmp(p, p1, (size_t)n * sizeof(float)), 0, "tp %d params differ", tps[i]);
        free(p);
    }
    free(p1);

    /* each checkpoint loads into every tp rank of every tp as exactly its initial part */
    for (int i = 0; i < 3; i++)
        for (int j = 0; j < 3; j++)
            if (i != j)
                for (int r = 0; r < tps[j]; r++)
                    load_matches_init(path[i], tps[j], r);

    /* the layout as inspect shows it: c_attn as one box per Q/K/V group and rank */
    struct cli_result r;
    cli_run(&r, "ckpt inspect %s", path[1]);
    cr_assert_eq(r.code, 0, "%s", r.err);
    cr_assert(strstr(r.out, "world 2, data-parallel 1, tensor-parallel 2") != NULL, "%s", r.out);
    cr_assert(strstr(r.out,
                     "h.0.attn.c_attn.weight (32, 96): rank 0 [0:32, 0:16] [0:32, 32:48] "
                     "[0:32, 64:80]; rank 1 [0:32, 16:32] [0:32, 48:64] [0:32, 80:96]") != NULL,
              "%s", r.out);
    cli_run(&r, "ckpt verify %s", path[2]);
    cr_assert_eq(r.code, 0, "%s%s", r.out, r.err);

    /* model.h5: the same tensors, values equal bit for bit (h5py, where Debian's is installed) */
    if (system("/usr/bin/python3 -c 'import h5py' 2>/dev/null") == 0)
        for (int i = 1; i < 3; i++) {
            char cmd[2048];
            snprintf(cmd, sizeof(cmd),
                     "/usr/bin/python3 -c \"import h5py, numpy as np, sys\n"
                     "a = h5py.File('%s/checkpoints/latest/model.h5', 'r')\n"
                     "b = h5py.File('%s/checkpoints/latest/model.h5', 'r')\n"
                     "assert sorted(a.keys()) == sorted(b.keys()), (list(a), list(b))\n"
                     "assert len(a.keys()) == 28\n"
                     "for k in a: assert a[k].shape == b[k].shape and "
                     "np.array_equal(a[k][()].view(np.uint32), b[k][()].view(np.uint32)), k\n\"",
                     path[0], path[i]);
            cr_assert_eq(system(cmd), 0, "model.h5 of tp %d differs from tp 1's", tps[i]);
        }

    /* export, eval and sample on one process see the same model */
    char first[3][4096];
    for (int i = 0; i < 3; i++) {
        cli_run(&r, "export hf %s %s/hf%d", path[i], dir, tps[i]);
        cr_assert_eq(r.code, 0, "%s", r.err);
        if (i > 0) {
            char cmd[1024];
            snprintf(cmd, sizeof(cmd), "cmp -s %s/hf1/model.safetensors %s/hf%d/model.safetensors",
                     dir, dir, tps[i]);
            cr_assert_eq(system(cmd), 0, "tp %d: the safetensors differ from tp 1's", tps[i]);
        }
        cli_run(&r, "eval --ckpt %s --data %s --threads 1", path[i], shard);
        cr_assert_eq(r.code, 0, "%s", r.err);
        const char *loss = strstr(r.out, "eval: loss");
        cr_assert_not_null(loss, "%s", r.out);
        snprintf(first[i], 64, "%.40s", loss);
        cli_run(&r,
                "sample --ckpt %s --tokenizer bytes --prompt 'ab' --max-tokens 12 --seed 3 "
                "--threads 1",
                path[i]);
        cr_assert_eq(r.code, 0, "%s", r.err);
        snprintf(first[i] + strlen(first[i]), sizeof(first[i]) - strlen(first[i]), " | %s", r.out);
        if (i > 0)
            cr_assert_str_eq(first[i], first[0], "tp %d", tps[i]);
    }
    /* --check-world (what `tessera launch` runs first) knows the tp layout of a resume */
    cli_run(&r, "train --data %s --out %s --seq-len 16 --resume --tp 4 --check-world 8", shard,
            path[1]);
    cr_assert_eq(r.code, 0, "%s", r.err);
    cr_assert(strstr(r.err, "x 2 data-parallel rank(s) (tp 4)") != NULL, "%s", r.err);
    cli_run(&r, "train --data %s --out %s --seq-len 16 --resume --tp 3 --check-world 6", shard,
            path[1]);
    cr_assert_eq(r.code, 2, "%s", r.err);
    cr_assert(strstr(r.err, "--tp 3 must divide --heads (4)") != NULL, "%s", r.err);
    cli_rmdir(dir);
}
