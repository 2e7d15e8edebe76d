/* cmd_train.c: `tessera train`: one process, or N data-parallel ranks under mpirun or srun.
 *
 * The command is flags and reporting. Its settings are one table (settings.h); it joins the job
 * (world.h), checks that every rank got the same settings, decides where the run starts
 * (resume.h: rank 0 decides, every rank reads the same checkpoint, whose record the settings
 * adopt), builds backend, loaders, model and trainer, writes the run files, and hands the loop
 * to the trainer (trainer/run.h) with hooks that log progress and write metrics.jsonl. Rank 0
 * alone writes files and logs at info. A failure on any rank after the agreement check aborts
 * the whole job (ts_world_fail), so no rank waits forever in a collective for a peer that is
 * gone. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "comm/comm.h"
#include "comm/grid.h"
#include "data/data_manifest.h"
#include "data/lineage.h"
#include "kernels/fs.h"
#include "kernels/log.h"
#include "launch/cli.h"
#include "launch/commands.h"
#include "launch/common.h"
#include "launch/metrics.h"
#include "launch/resume.h"
#include "launch/settings.h"
#include "launch/world.h"
#include "trainer/run.h"

#ifndef TS_VERSION
#define TS_VERSION "unknown"
#endif

static const char usage[] = "tessera train --data PATTERN --out DIR [flags]";
static const char description[] =
    "Trains a GPT-2 style model on token shards (llm.c format: 256 x int32 header, uint16 ids).\n"
    "The global batch is batch x grad-accum x data-parallel size sequences of seq-len tokens.\n"
    "Under `mpirun -np N` or `srun --mpi=pmix -n N` the N ranks train one model together.\n"
    "Rank 0 writes DIR/metrics.jsonl (one line per step, eval and checkpoint) and "
    "DIR/config.json;\n"
    "checkpoints go to DIR/checkpoints/step_N (every --ckpt-every steps, at --stop-after and at\n"
    "the last step; DIR/checkpoints/latest is the newest). --resume continues DIR from its latest\n"
    "checkpoint (or starts fresh when there is none) with every recorded setting (model, data,\n"
    "schedule, optimizer, batch, eval and checkpoint cadence, precision) unless given.";

/* Everything a run holds, released in one place. */
struct run {
    const struct ts_train_settings *a;
    struct ts_backend *be;
    ts_comm_t *comm; /* the world */
    struct ts_grid grid;
    ts_loader_t *train, *val;
    ts_gpt_t *gpt;
    ts_trainer_t *trainer;
    ts_metrics_t *metrics; /* rank 0 only */
    ts_ckpt_t *start;      /* the checkpoint a resume or --init-from reads, closed once read */
    struct ts_train_state_info info; /* what every checkpoint of this run records */
    struct ts_ckpt_kv kv[TS_CKPT_MAX_KV];
    struct ts_ckpt_data_file *data; /* rank 0 only */
    char parent[TS_PATH_MAX];
    char data_manifest[TS_PATH_MAX], data_manifest_hash[96]; /* rank 0 only */
    char ckpt_dir[TS_PATH_MAX];
};

static void run_release(struct run *r) {
    ts_ckpt_close(r->start);
    free(r->data);
    ts_metrics_close(r->metrics);
    ts_trainer_destroy(r->trainer);
    ts_gpt_destroy(r->gpt);
    ts_loader_destroy(r->val);
    ts_loader_destroy(r->train);
    ts_grid_deinit(&r->grid);
    ts_comm_destroy(r->comm);
    ts_backend_destroy(r->be);
}

/* ---- the loop's reporting hooks ---- */

static ts_status before_step(void *ctx, int64_t step) {
    const struct run *r = ctx;
    bool kill;
    if (ts_world_fault_due(ts_comm_rank(r->comm), (int)step, &kill))
        return ts_error(TS_ERR_IO,
                        "cannot read token shard %s (failure injected by TS_FAULT_INJECT)",
                        r->a->data);
    return TS_OK;
}

static ts_status on_step(void *ctx, const struct ts_step_record *rec) {
    const struct run *r = ctx;
    const int done = rec->step + 1;
    if (done == 1 || done % r->a->log_every == 0 || done == r->a->steps)
        TS_LOG_I("step %5d/%d | loss %.6f | lr %.3e | norm %.4f | %.1f ms | %.0f tok/s", done,
                 r->a->steps, (double)rec->loss, (double)rec->lr, (double)rec->grad_norm,
                 rec->step_ms, rec->tok_per_s);
    return r->metrics ? ts_metrics_step(r->metrics, rec) : TS_OK;
}

static ts_status on_eval(void *ctx, int64_t step, double loss, int64_t tokens, double seconds) {
    const struct run *r = ctx;
    if (r->metrics == NULL)
        return TS_OK; /* the dp ranks split the batches; rank 0 reports */
    TS_LOG_I("eval  step %" PRId64 " | val loss %.6f | %" PRId64 " tokens | %.1f s", step, loss,
             tokens, seconds);
    return ts_metrics_eval(r->metrics, (int)step, loss, tokens);
}

static ts_status on_checkpoint(void *ctx, int64_t step, const char *path, double seconds) {
    const struct run *r = ctx;
    TS_LOG_I("checkpoint: step %" PRId64 " saved to %s in %.2f s", step, path, seconds);
    return r->metrics ? ts_metrics_checkpoint(r->metrics, (int)step, path, seconds) : TS_OK;
}

/* ---- setup ---- */

/* Rank 0 decides where the run starts; every rank gets its decision (or its error). */
static ts_status decide_start(ts_comm_t *world, const struct ts_train_settings *a,
                              struct ts_start *start) {
    struct {
        int status;
        char msg[1024];
        struct ts_start start;
    } d;
    memset(&d, 0, sizeof(d));
    if (ts_comm_rank(world) == 0) {
        d.status = ts_launch_find_start(a->out, a->resume, a->resume_from, a->init_from,
                                        a->overwrite, &d.start);
        snprintf(d.msg, sizeof(d.msg), "%s", ts_last_error());
    }
    TS_CHECK(ts_comm_broadcast_host(world, &d, sizeof(d), 0));
    d.msg[sizeof(d.msg) - 1] = '\0';
    d.start.path[sizeof(d.start.path) - 1] = '\0';
    if (d.status != TS_OK)
        return ts_error((ts_status)d.status, "%s", d.msg);
    *start = d.start;
    return TS_OK;
}

/* Rank 0's view of --out decides for everyone (other hosts may not share the directory). A
 * model.bin is what runs of earlier versions left. */
static ts_status check_out_free(struct run *r, const struct ts_start *start) {
    const struct ts_train_settings *a = r->a;
    char path[TS_PATH_MAX];
    TS_CHECK(ts_path_join(path, sizeof(path), a->out, "model.bin"));
    double finished = ts_comm_rank(r->comm) == 0 && start->kind == TS_START_FRESH &&
                      ts_launch_file_exists(path) && !a->overwrite;
    TS_CHECK(ts_comm_all_reduce_host(r->comm, &finished, 1, TS_REDUCE_MAX));
    if (finished != 0)
        return ts_error(TS_ERR_INVALID_ARG,
                        "%s already holds a finished run; pass --overwrite or choose another "
                        "--out",
                        a->out);
    return TS_OK;
}

static ts_status open_data(struct run *r) {
    const struct ts_train_settings *a = r->a;
    TS_CHECK(ts_loader_create(&r->train, a->data, a->seq_len, a->vocab_size));
    ts_loader_set_shuffle(r->train, !a->no_shuffle, a->seed);
    if (a->val_data != NULL)
        TS_CHECK(ts_loader_create(&r->val, a->val_data, a->seq_len, a->vocab_size));
    if (r->val != NULL && ts_loader_num_windows(r->val) < a->batch)
        return ts_error(TS_ERR_INVALID_ARG,
                        "--val-data holds %" PRId64 " windows of %d tokens, fewer than one "
                        "batch of %d",
                        ts_loader_num_windows(r->val), a->seq_len + 1, a->batch);
    if (ts_comm_rank(r->comm) != 0)
        return TS_OK;
    TS_CHECK(ts_data_files(a->data, &r->data, &r->info.num_data));
    return ts_data_lineage(a->data, r->data_manifest, sizeof(r->data_manifest),
                           r->data_manifest_hash, sizeof(r->data_manifest_hash));
}

/* What every checkpoint records about the run beyond the trainer's own state. */
static ts_status fill_record(struct run *r, int64_t global_batch) {
    struct ts_train_state_info *i = &r->info;
    TS_CHECK(ts_train_settings_record(r->a, r->kv, &i->num_train));
    TS_CHECK(ts_ckpt_kv_add(r->kv, &i->num_train, "dp", "%d", r->grid.dp_size));
    i->global_batch = global_batch;
    i->layout = (struct ts_ckpt_layout){.world_size = ts_comm_size(r->comm),
                                        .dp = r->grid.dp_size,
                                        .tp = 1,
                                        .zero_stage = r->a->zero};
    i->train = r->kv;
    i->data = r->data;
    i->parent = r->parent;
    i->data_manifest = r->data_manifest;
    i->data_manifest_hash = r->data_manifest_hash;
    i->build_version = TS_VERSION;
    return TS_OK;
}

static ts_status write_config_json(const char *path, const struct ts_gpt_config *m,
                                   const struct ts_train_settings *a) {
    FILE *f = fopen(path, "w");
    if (f == NULL)
        return ts_error(TS_ERR_IO, "cannot write %s", path);
    fprintf(f,
            "{\"model\":{\"vocab_size\":%d,\"padded_vocab_size\":%d,\"max_seq_len\":%d,"
            "\"num_layers\":%d,\"num_heads\":%d,\"channels\":%d},\n \"train\":",
            m->vocab_size, m->padded_vocab_size, m->max_seq_len, m->num_layers, m->num_heads,
            m->channels);
    ts_status st = ts_train_settings_write_json(a, f);
    fputs("}\n", f);
    if (fclose(f) != 0 && st == TS_OK)
        st = ts_error(TS_ERR_IO, "cannot write %s", path);
    return st;
}

/* config.json and metrics.jsonl (cut back to the checkpoint's step on a resume), rank 0. */
static ts_status open_run_files(struct run *r, const struct ts_gpt_config *mc, bool resumed) {
    const struct ts_train_settings *a = r->a;
    char path[TS_PATH_MAX];
    TS_CHECK(ts_fs_mkdirs(a->out));
    TS_CHECK(ts_path_join(path, sizeof(path), a->out, "config.json"));
    TS_CHECK(write_config_json(path, mc, a));
    TS_CHECK(ts_path_join(path, sizeof(path), a->out, "metrics.jsonl"));
    if (resumed)
        TS_CHECK(ts_launch_trim_metrics(path, ts_trainer_steps_done(r->trainer)));
    return ts_metrics_open(&r->metrics, path, resumed);
}

static void log_run(const struct run *r, const struct ts_gpt_config *mc,
                    const struct ts_train_config *tc) {
    const struct ts_train_settings *a = r->a;
    struct ts_backend_info info;
    r->be->info(r->be, &info);
    TS_LOG_I("model: %d layers, %d heads, %d channels, vocab %d (padded %d), %.2fM parameters",
             mc->num_layers, mc->num_heads, mc->channels, mc->vocab_size, mc->padded_vocab_size,
             (double)ts_gpt_num_params(r->gpt) / 1e6);
    TS_LOG_I("data: %d shard(s), %" PRId64 " tokens, %" PRId64 " windows of %d per epoch",
             ts_loader_num_shards(r->train), ts_loader_num_tokens(r->train),
             ts_loader_num_windows(r->train), a->seq_len + 1);
    TS_LOG_I("global batch %" PRId64 " sequences = batch %d x grad-accum %d x dp %d (%" PRId64
             " tokens per step); world size %d",
             r->info.global_batch, a->batch, a->grad_accum, r->grid.dp_size,
             r->info.global_batch * a->seq_len, ts_comm_size(r->comm));
    TS_LOG_I("gradients: %d bucket(s) of up to %.3g MB, %s, ZeRO-%d; data %s",
             ts_trainer_num_buckets(r->trainer), (double)a->bucket_mb,
             a->no_overlap ? "reduced after backward" : "reduced during backward", a->zero,
             a->no_shuffle ? "in file order" : "shuffled each epoch");
    TS_LOG_I("backend: %s (%s), %d threads, %s; lr %g, warmup %d, cosine to %g at step %d",
             info.name, info.detail, info.threads, mc->dtype == TS_DTYPE_BF16 ? "bf16" : "fp32",
             (double)a->lr, tc->lr.warmup, (double)(a->lr * a->min_lr_frac), a->steps);
}

/* The model and trainer configs the settings describe. */
static void make_configs(const struct ts_train_settings *a, struct ts_gpt_config *mc,
                         struct ts_train_config *tc) {
    *mc = (struct ts_gpt_config){
        .max_seq_len = a->max_seq_len ? a->max_seq_len : a->seq_len,
        .vocab_size = a->vocab_size,
        .num_layers = a->layers,
        .num_heads = a->heads,
        .channels = a->channels,
    };
    *tc = (struct ts_train_config){
        .batch = a->batch,
        .seq_len = a->seq_len,
        .grad_accum = a->grad_accum,
        .lr = {.max_lr = a->lr,
               .warmup = a->warmup >= 0 ? a->warmup : a->steps / 10,
               .total = a->steps,
               .min_lr_frac = a->min_lr_frac},
        .adamw = {.beta1 = a->beta1,
                  .beta2 = a->beta2,
                  .eps = a->eps,
                  .weight_decay = a->weight_decay,
                  .grad_clip = a->grad_clip},
        .zero_stage = a->zero,
        .bucket_elems = (int64_t)((double)a->bucket_mb * 1024.0 * 1024.0 / 4.0),
        .no_overlap = a->no_overlap,
    };
    if (tc->bucket_elems < 1)
        tc->bucket_elems = 1;
}

/* Ranks sharing a host share its cores: split them unless --threads says otherwise. */
static int threads_per_rank(const struct ts_train_settings *a, const ts_comm_t *world) {
    const int local = ts_comm_local_size(world);
    const long cores = sysconf(_SC_NPROCESSORS_ONLN);
    if (a->threads > cores && cores > 0)
        TS_LOG_W("--threads %d is more than the %ld cores here: oversubscribed threads wait on "
                 "each other (much slower); 0 takes all cores",
                 a->threads, cores);
    if (a->threads != 0 || local <= 1)
        return a->threads;
    return cores > local ? (int)(cores / local) : 1;
}

/* Setup failures are the user's input (exit 2); step-loop failures are runtime (exit 1). */
static int train(struct ts_train_flags *flags, int *argc, char ***argv) {
    struct ts_train_settings *a = &flags->v;
    struct run r = {.a = a};
    int code = TS_EXIT_USAGE;
    ts_status st;
    bool agreed = false; /* failures before this point are the same on every rank */
    struct ts_start start;
    char canon[8192];

    TS_CHECK_GOTO(ts_world_create(&r.comm, argc, argv), st, fail);
    const bool root = ts_comm_rank(r.comm) == 0;
    TS_CHECK_GOTO(ts_train_settings_canonical(a, canon, sizeof(canon)), st, fail);
    TS_CHECK_GOTO(ts_world_check_agreement(r.comm, canon), st, fail);
    TS_CHECK_GOTO(ts_grid_init(&r.grid, r.comm, 1), st, fail);
    TS_CHECK_GOTO(decide_start(r.comm, a, &start), st, fail);
    const bool resumed = start.kind == TS_START_RESUME;
    if (start.kind != TS_START_FRESH) {
        TS_CHECK_GOTO(ts_ckpt_open(&r.start, start.path), st, fail);
        TS_CHECK_GOTO(ts_train_settings_adopt(flags, ts_ckpt_meta(r.start), start.path, resumed,
                                              r.grid.dp_size),
                      st, fail);
        TS_CHECK_GOTO(ts_path_fmt(r.parent, sizeof(r.parent), "%s", start.path), st, fail);
    }
    if (a->data == NULL) {
        ts_error(TS_ERR_INVALID_ARG, "--data is required (there is no checkpoint to take it from)");
        goto fail;
    }
    a->resume = a->resume && resumed; /* so the check below asks for what a fresh run needs */
    TS_CHECK_GOTO(ts_train_settings_check(flags), st, fail);
    TS_CHECK_GOTO(ts_path_join(r.ckpt_dir, sizeof(r.ckpt_dir), a->out, "checkpoints"), st, fail);
    TS_CHECK_GOTO(check_out_free(&r, &start), st, fail);
    agreed = true;
    if (root && start.kind == TS_START_FRESH && a->overwrite) {
        TS_CHECK_GOTO(ts_launch_remove_tree(r.ckpt_dir), st, fail);
    }

    struct ts_gpt_config mc;
    struct ts_train_config tc;
    make_configs(a, &mc, &tc);
    TS_CHECK_GOTO(ts_gpt_config_finish(&mc), st, fail);
    if (ts_lr_schedule_check(&tc.lr) != TS_OK) { /* --warmup longer than --steps, ... */
        ts_error_wrap(TS_ERR_INVALID_ARG, "--warmup %d, --steps %d", tc.lr.warmup, tc.lr.total);
        goto fail;
    }
    TS_CHECK_GOTO(ts_launch_backend(&r.be, a->device, a->blas, threads_per_rank(a, r.comm)), st,
                  fail);
    TS_CHECK_GOTO(ts_launch_precision(r.be, a->precision, &mc.dtype), st, fail);
    a->precision = mc.dtype == TS_DTYPE_BF16 ? "bf16" : "fp32"; /* recorded as run */
    if (a->warmup < 0)
        a->warmup = tc.lr.warmup; /* recorded as run */
    if (ts_comm_size(r.comm) > 1 && strcmp(r.be->name, "cpu") != 0) {
        /* the MPI communicator reduces host buffers; device buffers need the NCCL backend */
        ts_error(TS_ERR_UNSUPPORTED,
                 "%d ranks on the %s backend need NCCL, which does not exist yet: train on one "
                 "GPU with a single process, or use --device cpu under mpirun",
                 ts_comm_size(r.comm), r.be->name);
        goto fail;
    }
    TS_CHECK_GOTO(open_data(&r), st, fail);
    TS_CHECK_GOTO(fill_record(&r, (int64_t)a->batch * a->grad_accum * r.grid.dp_size), st, fail);
    TS_CHECK_GOTO(ts_gpt_create(&r.gpt, &mc, r.be, a->batch, a->seq_len), st, fail);
    TS_CHECK_GOTO(ts_gpt_init(r.gpt, a->seed), st, fail);
    TS_CHECK_GOTO(ts_trainer_create(&r.trainer, r.gpt, r.train, r.grid.dp, &tc), st, fail);
    if (resumed) {
        TS_CHECK_GOTO(ts_train_state_load(r.trainer, r.start), st, fail);
        r.info.tokens_seen = ts_ckpt_meta(r.start)->tokens_seen;
    } else if (start.kind == TS_START_INIT) {
        TS_CHECK_GOTO(ts_gpt_load_checkpoint(r.gpt, r.start), st, fail);
    }
    if (r.start != NULL)
        TS_LOG_I("%s %s (step %" PRId64 ")", resumed ? "resuming from" : "weights from", start.path,
                 ts_ckpt_meta(r.start)->step);
    ts_ckpt_close(r.start);
    r.start = NULL;
    if (root)
        TS_CHECK_GOTO(open_run_files(&r, &mc, resumed), st, fail);
    TS_CHECK_GOTO(ts_world_log_layout(r.comm, &r.grid), st, fail);
    log_run(&r, &mc, &tc);

    code = TS_EXIT_FAILURE;
    const struct ts_run_config rc = {
        .steps = a->steps,
        .stop = a->stop_after > 0 && a->stop_after < a->steps ? a->stop_after : a->steps,
        .eval_every = a->eval_every,
        .eval_batches = a->eval_batches,
        .eval_batch = a->batch,
        .ckpt_every = a->ckpt_every,
        .keep_last = a->keep_last,
        .ckpt_dir = r.ckpt_dir,
    };
    const struct ts_run_hooks hooks = {
        .ctx = &r,
        .before_step = before_step,
        .on_step = on_step,
        .on_eval = on_eval,
        .on_checkpoint = on_checkpoint,
    };
    if (ts_trainer_steps_done(r.trainer) >= rc.stop)
        TS_LOG_I("nothing to do: %d updates done, stopping at %" PRId64,
                 ts_trainer_steps_done(r.trainer), rc.stop);
    struct ts_run_result res;
    TS_CHECK_GOTO(ts_run(r.trainer, r.comm, r.grid.dp, r.val, &rc, &r.info, &hooks, &res), st,
                  fail);
    TS_LOG_I("%s: %" PRId64 " steps in %.1f s; checkpoints in %s",
             rc.stop == a->steps ? "done" : "stopped", res.last - res.first, res.seconds,
             r.ckpt_dir);
    run_release(&r);
    return TS_EXIT_OK;
fail:
    (void)st;
    if (agreed)
        ts_world_fail(r.comm, "train", code); /* aborts the job when it has several ranks */
    else
        ts_launch_fail("train", code);
    run_release(&r);
    return code;
}

/* Whether a launcher started this process as a rank other than 0 (its environment, read before
 * MPI starts; launch/world.c sets the same log level once the world exists). */
static bool launched_nonzero_rank(void) {
    static const char *const vars[] = {"PMIX_RANK", "OMPI_COMM_WORLD_RANK", "SLURM_PROCID"};
    for (size_t i = 0; i < sizeof(vars) / sizeof(vars[0]); i++) {
        const char *v = getenv(vars[i]);
        if (v != NULL && strcmp(v, "0") != 0)
            return true;
    }
    return false;
}

int ts_cmd_train(int argc, char **argv) {
    static struct ts_train_flags flags; /* adopted strings live here until the run ends */
    bool help = false;
    if (ts_train_flags_parse(&flags, argc, argv, 2, &help) != TS_OK)
        return ts_launch_fail("train", TS_EXIT_USAGE);
    if (help) {
        ts_train_flags_print_help(usage, description);
        return TS_EXIT_OK;
    }
    /* before the world exists, only the launcher's rank 0 logs (the data line, once) */
    if (launched_nonzero_rank() && getenv("TS_LOG") == NULL)
        ts_log_set_level(TS_LOG_WARN);
    if ((flags.v.data != NULL &&
         ts_data_manifest_vocab(flags.v.data, ts_train_flags_given(&flags, "vocab-size"), false,
                                &flags.v.vocab_size) != TS_OK) ||
        ts_train_settings_check(&flags) != TS_OK)
        return ts_launch_fail("train", TS_EXIT_USAGE);
    return train(&flags, &argc, &argv);
}
