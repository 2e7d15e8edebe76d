/* cmd_train.c: `tessera train`: one process, or N data-parallel ranks under mpirun or srun.
 *
 * Reads flags, checks them all before touching data, joins the job (world.h: MPI or a single
 * process), checks that every rank got the same configuration, builds backend, loader, model
 * and trainer, then runs the step loop: a progress line every --log-every steps, one
 * metrics.jsonl line per step, an eval of --val-data every --eval-every steps and at the end, a
 * checkpoint (<out>/checkpoints/step_N, checkpoint/ckpt.h) every --ckpt-every steps, at
 * --stop-after and always at the last step, and the run's configuration in <out>/config.json.
 * --resume, --resume-from and --init-from start from a checkpoint (launch/resume.h); rank 0
 * decides the start and every rank reads the same checkpoint. Rank 0 alone writes files and logs at
 * info. A failure on any rank after the agreement check aborts the whole job (ts_world_fail), so no
 * rank waits forever in a collective for a peer that is gone. */
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "comm/comm.h"
#include "comm/grid.h"
#include "kernels/fs.h"
#include "kernels/log.h"
#include "launch/cli.h"
#include "launch/commands.h"
#include "launch/common.h"
#include "launch/metrics.h"
#include "launch/resume.h"
#include "launch/world.h"
#include "trainer/state.h"
#include "trainer/train.h"

#ifndef TS_VERSION
#define TS_VERSION "unknown"
#endif

struct train_args {
    const char *data, *val_data, *out, *device, *blas, *precision;
    int vocab_size, layers, heads, channels, seq_len, max_seq_len;
    int batch, grad_accum, steps, warmup, eval_every, eval_batches, log_every, threads;
    int zero;
    float lr, min_lr_frac, weight_decay, beta1, beta2, eps, grad_clip, bucket_mb;
    uint64_t seed;
    bool overwrite, no_shuffle, no_overlap;
    int ckpt_every, keep_last, stop_after;
    const char *resume_from, *init_from;
    bool resume, change_batch;
};

static const char usage[] = "tessera train --data PATTERN --out DIR [flags]";
static const char description[] =
    "Trains a GPT-2 style model on token shards (llm.c format: 256 x int32 header, uint16 ids).\n"
    "The global batch is batch x grad-accum x data-parallel size sequences of seq-len tokens.\n"
    "Under `mpirun -np N` or `srun --mpi=pmix -n N` the N ranks train one model together.\n"
    "Rank 0 writes DIR/metrics.jsonl (one line per step, eval and checkpoint) and "
    "DIR/config.json;\n"
    "checkpoints go to DIR/checkpoints/step_N (every --ckpt-every steps, at --stop-after and at\n"
    "the last step; DIR/checkpoints/latest is the newest). --resume continues DIR from its latest\n"
    "checkpoint (or starts fresh when there is none) with the recorded model, schedule and\n"
    "global batch.";

#define NFLAGS 40

static void build_flags(struct ts_flag *f, struct train_args *a) {
    struct ts_flag table[NFLAGS] = {
        {"data", TS_FLAG_STRING, &a->data, "PATTERN", "training shards: a path or a glob", true},
        {"val-data", TS_FLAG_STRING, &a->val_data, "PATTERN", "validation shards (optional)"},
        {"out", TS_FLAG_STRING, &a->out, "DIR", "run directory", true},
        {"overwrite", TS_FLAG_BOOL, &a->overwrite, NULL, "replace a finished run in --out"},
        {"vocab-size", TS_FLAG_INT, &a->vocab_size, "V",
         "vocabulary size (default: the data's manifest.json, else GPT-2's 50257)"},
        {"layers", TS_FLAG_INT, &a->layers, "L", "transformer blocks"},
        {"heads", TS_FLAG_INT, &a->heads, "NH", "attention heads (must divide channels)"},
        {"channels", TS_FLAG_INT, &a->channels, "C", "model width"},
        {"seq-len", TS_FLAG_INT, &a->seq_len, "T", "tokens per training sequence"},
        {"max-seq-len", TS_FLAG_INT, &a->max_seq_len, "N",
         "positions in wpe (0: same as --seq-len)"},
        {"batch", TS_FLAG_INT, &a->batch, "B", "sequences per micro-step"},
        {"grad-accum", TS_FLAG_INT, &a->grad_accum, "N", "micro-steps per update"},
        {"steps", TS_FLAG_INT, &a->steps, "N", "optimizer updates (the schedule's horizon)"},
        {"lr", TS_FLAG_FLOAT, &a->lr, "LR", "peak learning rate"},
        {"warmup", TS_FLAG_INT, &a->warmup, "N", "linear warmup steps (-1: 10% of --steps)"},
        {"min-lr-frac", TS_FLAG_FLOAT, &a->min_lr_frac, "F",
         "cosine decays to this fraction of --lr"},
        {"weight-decay", TS_FLAG_FLOAT, &a->weight_decay, "W", "AdamW decay (matrices only)"},
        {"beta1", TS_FLAG_FLOAT, &a->beta1, "B1", "AdamW beta1"},
        {"beta2", TS_FLAG_FLOAT, &a->beta2, "B2", "AdamW beta2"},
        {"eps", TS_FLAG_FLOAT, &a->eps, "E", "AdamW epsilon"},
        {"grad-clip", TS_FLAG_FLOAT, &a->grad_clip, "N", "clip the global norm (0: off)"},
        {"seed", TS_FLAG_U64, &a->seed, "N", "initialisation seed"},
        {"eval-every", TS_FLAG_INT, &a->eval_every, "N", "eval --val-data every N steps (0: end)"},
        {"eval-batches", TS_FLAG_INT, &a->eval_batches, "N", "batches per eval (0: whole file)"},
        {"log-every", TS_FLAG_INT, &a->log_every, "N", "print progress every N steps"},
        {"device", TS_FLAG_STRING, &a->device, "DEV",
         "cpu, cuda or auto (the GPU if there is one)"},
        {"precision", TS_FLAG_STRING, &a->precision, "P",
         "fp32, bf16 (GPU: bf16 weights and activations, fp32 master weights) or auto"},
        {"threads", TS_FLAG_INT, &a->threads, "N", "CPU threads (0: all cores)"},
        {"blas", TS_FLAG_STRING, &a->blas, "NAME", "CPU matmul: auto, openblas or reference"},
        {"zero", TS_FLAG_INT, &a->zero, "N", "ZeRO stage: 0, or 1 (shard AdamW state over dp)"},
        {"bucket-mb", TS_FLAG_FLOAT, &a->bucket_mb, "MB", "gradient all-reduce bucket size"},
        {"no-shuffle", TS_FLAG_BOOL, &a->no_shuffle, NULL, "read windows in file order"},
        {"no-overlap", TS_FLAG_BOOL, &a->no_overlap, NULL,
         "reduce gradients only after backward (to measure the overlap)"},
        {"ckpt-every", TS_FLAG_INT, &a->ckpt_every, "N",
         "checkpoint every N steps (0: only at --stop-after and the end)"},
        {"keep-last", TS_FLAG_INT, &a->keep_last, "K", "keep the newest K checkpoints (0: all)"},
        {"stop-after", TS_FLAG_INT, &a->stop_after, "N",
         "checkpoint and stop after update N; the schedule still ends at --steps (0: no)"},
        {"resume", TS_FLAG_BOOL, &a->resume, NULL,
         "continue --out from its latest checkpoint (fresh when there is none)"},
        {"resume-from", TS_FLAG_STRING, &a->resume_from, "PATH",
         "continue from this checkpoint (or run directory)"},
        {"init-from", TS_FLAG_STRING, &a->init_from, "PATH",
         "start from this checkpoint's weights only (fine-tuning)"},
        {"change-batch", TS_FLAG_BOOL, &a->change_batch, NULL,
         "allow a resumed run a global batch other than the checkpoint's"},
    };
    memcpy(f, table, sizeof(table));
}

static ts_status check_args(const struct train_args *a) {
    if (a->layers <= 0)
        return ts_error(TS_ERR_INVALID_ARG, "--layers must be positive, got %d", a->layers);
    if (a->heads <= 0)
        return ts_error(TS_ERR_INVALID_ARG, "--heads must be positive, got %d", a->heads);
    if (a->channels <= 0)
        return ts_error(TS_ERR_INVALID_ARG, "--channels must be positive, got %d", a->channels);
    if (a->channels % a->heads != 0)
        return ts_error(TS_ERR_INVALID_ARG, "--heads %d does not divide --channels %d", a->heads,
                        a->channels);
    if (a->vocab_size < 2 || a->vocab_size > 65536)
        return ts_error(TS_ERR_INVALID_ARG,
                        "--vocab-size must be in [2, 65536] (shards hold uint16 ids), got %d",
                        a->vocab_size);
    if (a->seq_len <= 0)
        return ts_error(TS_ERR_INVALID_ARG, "--seq-len must be positive, got %d", a->seq_len);
    if (a->max_seq_len != 0 && a->max_seq_len < a->seq_len)
        return ts_error(TS_ERR_INVALID_ARG, "--max-seq-len %d is shorter than --seq-len %d",
                        a->max_seq_len, a->seq_len);
    if (a->batch <= 0 || a->grad_accum <= 0 || a->steps <= 0)
        return ts_error(TS_ERR_INVALID_ARG, "--batch, --grad-accum and --steps must be positive");
    if (!(a->lr > 0.0f))
        return ts_error(TS_ERR_INVALID_ARG, "--lr must be positive, got %g", (double)a->lr);
    if (a->warmup < -1)
        return ts_error(TS_ERR_INVALID_ARG, "--warmup must be >= 0, got %d", a->warmup);
    if (a->min_lr_frac < 0.0f || a->min_lr_frac > 1.0f)
        return ts_error(TS_ERR_INVALID_ARG, "--min-lr-frac must be in [0, 1], got %g",
                        (double)a->min_lr_frac);
    if (a->weight_decay < 0.0f || a->grad_clip < 0.0f || a->eps <= 0.0f)
        return ts_error(TS_ERR_INVALID_ARG,
                        "--weight-decay and --grad-clip must be >= 0 and --eps > 0");
    if (a->beta1 < 0.0f || a->beta1 >= 1.0f || a->beta2 < 0.0f || a->beta2 >= 1.0f)
        return ts_error(TS_ERR_INVALID_ARG, "--beta1 and --beta2 must be in [0, 1)");
    if (a->zero != 0 && a->zero != 1)
        return ts_error(TS_ERR_INVALID_ARG, "--zero must be 0 or 1, got %d", a->zero);
    if (!(a->bucket_mb > 0.0f) || a->bucket_mb > 4096.0f)
        return ts_error(TS_ERR_INVALID_ARG, "--bucket-mb must be in (0, 4096], got %g",
                        (double)a->bucket_mb);
    if (a->ckpt_every < 0 || a->keep_last < 0 || a->stop_after < 0)
        return ts_error(TS_ERR_INVALID_ARG,
                        "--ckpt-every, --keep-last and --stop-after must be >= 0");
    if (a->eval_every < 0 || a->eval_batches < 0 || a->log_every <= 0)
        return ts_error(TS_ERR_INVALID_ARG,
                        "--eval-every and --eval-batches must be >= 0, --log-every positive");
    return TS_OK;
}

static ts_status write_config_json(const char *path, const struct ts_gpt_config *m,
                                   const struct train_args *a, const struct ts_lr_schedule *lr) {
    FILE *f = fopen(path, "w");
    if (f == NULL)
        return ts_error(TS_ERR_IO, "cannot write %s", path);
    fprintf(f,
            "{\"model\":{\"vocab_size\":%d,\"padded_vocab_size\":%d,\"max_seq_len\":%d,"
            "\"num_layers\":%d,\"num_heads\":%d,\"channels\":%d},\n"
            " \"train\":{\"data\":\"%s\",\"batch\":%d,\"seq_len\":%d,\"grad_accum\":%d,"
            "\"steps\":%d,\"lr\":%.9g,\"warmup\":%d,\"min_lr_frac\":%.9g,\"weight_decay\":%.9g,"
            "\"beta1\":%.9g,\"beta2\":%.9g,\"eps\":%.9g,\"grad_clip\":%.9g,\"seed\":%" PRIu64
            "}}\n",
            m->vocab_size, m->padded_vocab_size, m->max_seq_len, m->num_layers, m->num_heads,
            m->channels, a->data, a->batch, a->seq_len, a->grad_accum, a->steps, (double)lr->max_lr,
            lr->warmup, (double)lr->min_lr_frac, (double)a->weight_decay, (double)a->beta1,
            (double)a->beta2, (double)a->eps, (double)a->grad_clip, a->seed);
    if (fclose(f) != 0)
        return ts_error(TS_ERR_IO, "cannot write %s", path);
    return TS_OK;
}

/* Every setting that must be the same on all ranks, one "key=value" per line. */
static void canonical_config(const struct train_args *a, char *buf, size_t len) {
    snprintf(buf, len,
             "data=%s\nval-data=%s\nout=%s\nvocab-size=%d\nlayers=%d\nheads=%d\nchannels=%d\n"
             "seq-len=%d\nmax-seq-len=%d\nbatch=%d\ngrad-accum=%d\nsteps=%d\nlr=%.9g\n"
             "warmup=%d\nmin-lr-frac=%.9g\nweight-decay=%.9g\nbeta1=%.9g\nbeta2=%.9g\n"
             "eps=%.9g\ngrad-clip=%.9g\nseed=%" PRIu64 "\nzero=%d\nbucket-mb=%.9g\n"
             "shuffle=%d\neval-every=%d\neval-batches=%d\ndevice=%s\nprecision=%s\nckpt-every=%d\n"
             "keep-last=%d\nstop-after=%d\nresume=%d\nresume-from=%s\ninit-from=%s\n"
             "change-batch=%d\n",
             a->data, a->val_data ? a->val_data : "", a->out, a->vocab_size, a->layers, a->heads,
             a->channels, a->seq_len, a->max_seq_len, a->batch, a->grad_accum, a->steps,
             (double)a->lr, a->warmup, (double)a->min_lr_frac, (double)a->weight_decay,
             (double)a->beta1, (double)a->beta2, (double)a->eps, (double)a->grad_clip, a->seed,
             a->zero, (double)a->bucket_mb, !a->no_shuffle, a->eval_every, a->eval_batches,
             a->device, a->precision, a->ckpt_every, a->keep_last, a->stop_after, a->resume,
             a->resume_from ? a->resume_from : "", a->init_from ? a->init_from : "",
             a->change_batch);
}

/* Everything a run holds, released in one place. */
struct run {
    struct ts_backend *be;
    ts_comm_t *comm; /* the world */
    struct ts_grid grid;
    ts_loader_t *train, *val;
    ts_gpt_t *gpt;
    ts_trainer_t *trainer;
    ts_metrics_t *metrics; /* rank 0 only */
    ts_ckpt_t *start;      /* the checkpoint a resume or --init-from reads, closed once read */
    /* what every checkpoint of this run records */
    struct ts_ckpt_kv kv[TS_CKPT_MAX_KV];
    int num_kv;
    struct ts_ckpt_data_file *data; /* rank 0 only */
    int num_data;
    char parent[4096];
    char data_manifest[4096], data_manifest_hash[96]; /* rank 0 only */
    int64_t tokens_seen, global_batch;
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

static ts_status run_eval(struct run *r, const struct train_args *a, int step) {
    double loss = 0.0;
    int64_t tokens = 0;
    double t0 = ts_launch_now_s();
    TS_CHECK(ts_eval_loss(r->gpt, r->val, r->grid.dp, a->batch, a->eval_batches, &loss, &tokens));
    if (r->metrics == NULL)
        return TS_OK; /* the dp ranks split the batches; rank 0 reports */
    TS_LOG_I("eval  step %d | val loss %.6f | %" PRId64 " tokens | %.1f s", step, loss, tokens,
             ts_launch_now_s() - t0);
    return ts_metrics_eval(r->metrics, step, loss, tokens);
}

/* What a checkpoint fixes: the model always (a flag given with another value is refused, naming
 * it); for a resume also the schedule, the optimizer, the seed and the global batch, which are
 * taken from the checkpoint unless given (grad-accum is derived for this layout). */
static ts_status apply_checkpoint(struct train_args *a, const struct ts_flag *flags, int nflags,
                                  const ts_ckpt_t *ck, bool resume, int dp) {
    const struct ts_ckpt_meta *m = ts_ckpt_meta(ck);
    const char *path = ts_ckpt_path(ck);
#define SEEN(name) ts_cli_seen(flags, nflags, name)
    TS_CHECK(ts_launch_adopt_int(m->model, m->num_model, "vocab_size", "vocab-size",
                                 SEEN("vocab-size"), &a->vocab_size, path));
    TS_CHECK(ts_launch_adopt_int(m->model, m->num_model, "num_layers", "layers", SEEN("layers"),
                                 &a->layers, path));
    TS_CHECK(ts_launch_adopt_int(m->model, m->num_model, "num_heads", "heads", SEEN("heads"),
                                 &a->heads, path));
    TS_CHECK(ts_launch_adopt_int(m->model, m->num_model, "channels", "channels", SEEN("channels"),
                                 &a->channels, path));
    /* --max-seq-len 0 means --seq-len: compare what the model would get */
    if (!SEEN("max-seq-len") && !SEEN("seq-len"))
        ts_launch_adopt_i(m->train, m->num_train, "seq_len", "seq-len", false, &a->seq_len);
    int max_seq = a->max_seq_len ? a->max_seq_len : a->seq_len;
    TS_CHECK(ts_launch_adopt_int(m->model, m->num_model, "max_seq_len", "max-seq-len",
                                 SEEN("max-seq-len"), &max_seq, path));
    a->max_seq_len = max_seq;
    if (!resume)
        return TS_OK;
    if (a->change_batch)
        ts_launch_adopt_i(m->train, m->num_train, "seq_len", "seq-len", SEEN("seq-len"),
                          &a->seq_len);
    else
        TS_CHECK(ts_launch_adopt_int(m->train, m->num_train, "seq_len", "seq-len", SEEN("seq-len"),
                                     &a->seq_len, path));
    ts_launch_adopt_i(m->train, m->num_train, "steps", "steps", SEEN("steps"), &a->steps);
    ts_launch_adopt_i(m->train, m->num_train, "warmup", "warmup", SEEN("warmup"), &a->warmup);
    ts_launch_adopt_float(m->train, m->num_train, "lr", "lr", SEEN("lr"), &a->lr);
    ts_launch_adopt_float(m->train, m->num_train, "min_lr_frac", "min-lr-frac", SEEN("min-lr-frac"),
                          &a->min_lr_frac);
    ts_launch_adopt_float(m->train, m->num_train, "weight_decay", "weight-decay",
                          SEEN("weight-decay"), &a->weight_decay);
    ts_launch_adopt_float(m->train, m->num_train, "beta1", "beta1", SEEN("beta1"), &a->beta1);
    ts_launch_adopt_float(m->train, m->num_train, "beta2", "beta2", SEEN("beta2"), &a->beta2);
    ts_launch_adopt_float(m->train, m->num_train, "eps", "eps", SEEN("eps"), &a->eps);
    ts_launch_adopt_float(m->train, m->num_train, "grad_clip", "grad-clip", SEEN("grad-clip"),
                          &a->grad_clip);
    ts_launch_adopt_u64(m->train, m->num_train, "seed", "seed", SEEN("seed"), &a->seed);
    int shuffle = !a->no_shuffle; /* the window order is a function of (seed, epoch, index) */
    ts_launch_adopt_i(m->train, m->num_train, "shuffle", "no-shuffle", SEEN("no-shuffle"),
                      &shuffle);
    a->no_shuffle = !shuffle;
    ts_launch_adopt_i(m->train, m->num_train, "batch", "batch", SEEN("batch"), &a->batch);
    if (a->change_batch) {
        ts_launch_adopt_i(m->train, m->num_train, "grad_accum", "grad-accum", SEEN("grad-accum"),
                          &a->grad_accum);
        return TS_OK;
    }
    const int64_t G = m->global_batch, per_accum = (int64_t)a->batch * dp;
    if (SEEN("grad-accum")) {
        if (per_accum * a->grad_accum != G)
            return ts_error(TS_ERR_INVALID_ARG,
                            "--batch %d x --grad-accum %d x %d data-parallel rank(s) = %" PRId64
                            " sequences per step, but %s was trained with a global batch of "
                            "%" PRId64 "; pass --change-batch to change it",
                            a->batch, a->grad_accum, dp, per_accum * a->grad_accum, path, G);
    } else {
        if (G <= 0 || G % per_accum != 0)
            return ts_error(TS_ERR_INVALID_ARG,
                            "%s was trained with a global batch of %" PRId64
                            " sequences, which --batch %d x %d data-parallel rank(s) does not "
                            "divide; choose another --batch, or pass --change-batch",
                            path, G, a->batch, dp);
        a->grad_accum = (int)(G / per_accum);
    }
#undef SEEN
    return TS_OK;
}

/* The flags a checkpoint records and a resume takes back (apply_checkpoint). */
static ts_status record_flags(struct run *r, const struct train_args *a,
                              const struct ts_lr_schedule *lr) {
    struct ts_ckpt_kv *kv = r->kv;
    int *n = &r->num_kv;
    TS_CHECK(ts_ckpt_kv_add(kv, n, "data", "%s", a->data));
    TS_CHECK(ts_ckpt_kv_add(kv, n, "val_data", "%s", a->val_data ? a->val_data : ""));
    TS_CHECK(ts_ckpt_kv_add(kv, n, "seq_len", "%d", a->seq_len));
    TS_CHECK(ts_ckpt_kv_add(kv, n, "batch", "%d", a->batch));
    TS_CHECK(ts_ckpt_kv_add(kv, n, "grad_accum", "%d", a->grad_accum));
    TS_CHECK(ts_ckpt_kv_add(kv, n, "steps", "%d", a->steps));
    TS_CHECK(ts_ckpt_kv_add(kv, n, "lr", "%.9g", (double)a->lr));
    TS_CHECK(ts_ckpt_kv_add(kv, n, "warmup", "%d", lr->warmup));
    TS_CHECK(ts_ckpt_kv_add(kv, n, "min_lr_frac", "%.9g", (double)a->min_lr_frac));
    TS_CHECK(ts_ckpt_kv_add(kv, n, "weight_decay", "%.9g", (double)a->weight_decay));
    TS_CHECK(ts_ckpt_kv_add(kv, n, "beta1", "%.9g", (double)a->beta1));
    TS_CHECK(ts_ckpt_kv_add(kv, n, "beta2", "%.9g", (double)a->beta2));
    TS_CHECK(ts_ckpt_kv_add(kv, n, "eps", "%.9g", (double)a->eps));
    TS_CHECK(ts_ckpt_kv_add(kv, n, "grad_clip", "%.9g", (double)a->grad_clip));
    TS_CHECK(ts_ckpt_kv_add(kv, n, "seed", "%" PRIu64, a->seed));
    TS_CHECK(ts_ckpt_kv_add(kv, n, "shuffle", "%d", !a->no_shuffle));
    TS_CHECK(ts_ckpt_kv_add(kv, n, "zero", "%d", a->zero));
    TS_CHECK(ts_ckpt_kv_add(kv, n, "dp", "%d", r->grid.dp_size));
    return TS_OK;
}

static ts_status save_checkpoint(struct run *r, const struct train_args *a, int step) {
    char dir[4200], path[4400];
    snprintf(dir, sizeof(dir), "%s/checkpoints", a->out);
    struct ts_train_state_info info = {
        .tokens_seen = r->tokens_seen,
        .global_batch = r->global_batch,
        .layout = {.world_size = ts_comm_size(r->comm),
                   .dp = r->grid.dp_size,
                   .tp = 1,
                   .zero_stage = a->zero},
        .train = r->kv,
        .num_train = r->num_kv,
        .data = r->data,
        .num_data = r->num_data,
        .parent = r->parent,
        .data_manifest = r->data_manifest,
        .data_manifest_hash = r->data_manifest_hash,
        .build_version = TS_VERSION,
    };
    const double t0 = ts_launch_now_s();
    TS_CHECK(
        ts_train_state_save(r->trainer, r->comm, &info, dir, a->keep_last, path, sizeof(path)));
    const double dt = ts_launch_now_s() - t0;
    TS_LOG_I("checkpoint: step %d saved to %s in %.2f s", step, path, dt);
    return r->metrics ? ts_metrics_checkpoint(r->metrics, step, path, dt) : TS_OK;
}

/* Rank 0 decides where the run starts; every rank gets its decision (or its error). */
static ts_status decide_start(ts_comm_t *world, const struct train_args *a,
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

/* Setup failures are the user's input (exit 2); step-loop failures are runtime (exit 1). */
static int train(const struct train_args *given, const struct ts_flag *flags, int nflags, int *argc,
                 char ***argv) {
    struct run r = {0};
    struct train_args eff = *given;
    const struct train_args *a = &eff;
    int code = TS_EXIT_USAGE;
    ts_status st;
    char path[4200];
    bool agreed = false; /* failures before this point are the same on every rank */
    struct ts_start start;

    TS_CHECK_GOTO(ts_world_create(&r.comm, argc, argv), st, fail);
    const bool root = ts_comm_rank(r.comm) == 0;
    char canon[4096];
    canonical_config(a, canon, sizeof(canon));
    TS_CHECK_GOTO(ts_world_check_agreement(r.comm, canon), st, fail);
    TS_CHECK_GOTO(ts_grid_init(&r.grid, r.comm, 1), st, fail);
    TS_CHECK_GOTO(decide_start(r.comm, a, &start), st, fail);
    if (start.kind != TS_START_FRESH) {
        TS_CHECK_GOTO(ts_ckpt_open(&r.start, start.path), st, fail);
        TS_CHECK_GOTO(apply_checkpoint(&eff, flags, nflags, r.start, start.kind == TS_START_RESUME,
                                       r.grid.dp_size),
                      st, fail);
        TS_CHECK_GOTO(check_args(&eff), st, fail);
        snprintf(r.parent, sizeof(r.parent), "%s", start.path);
    }

    struct ts_gpt_config mc = {
        .max_seq_len = a->max_seq_len ? a->max_seq_len : a->seq_len,
        .vocab_size = a->vocab_size,
        .num_layers = a->layers,
        .num_heads = a->heads,
        .channels = a->channels,
    };
    struct ts_train_config tc = {
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
    if (tc.bucket_elems < 1)
        tc.bucket_elems = 1;
    TS_CHECK_GOTO(ts_gpt_config_finish(&mc), st, fail);

    /* Rank 0's view of --out decides for everyone (other hosts may not share the directory).
     * A model.bin is what runs of earlier versions left. */
    snprintf(path, sizeof(path), "%s/model.bin", a->out);
    double finished =
        root && start.kind == TS_START_FRESH && ts_launch_file_exists(path) && !a->overwrite;
    TS_CHECK_GOTO(ts_comm_all_reduce_host(r.comm, &finished, 1, TS_REDUCE_MAX), st, fail);
    if (finished != 0) {
        ts_error(TS_ERR_INVALID_ARG,
                 "%s already holds a finished run; pass --overwrite or "
                 "choose another --out",
                 a->out);
        goto fail;
    }
    agreed = true;
    if (root && start.kind == TS_START_FRESH && a->overwrite) {
        snprintf(path, sizeof(path), "%s/checkpoints", a->out);
        TS_CHECK_GOTO(ts_launch_remove_tree(path), st, fail);
    }

    /* Ranks sharing a host share its cores: split them unless --threads says otherwise. */
    int threads = a->threads;
    const int local = ts_comm_local_size(r.comm);
    if (threads == 0 && local > 1) {
        const long cores = sysconf(_SC_NPROCESSORS_ONLN);
        threads = cores > local ? (int)(cores / local) : 1;
    }
    TS_CHECK_GOTO(ts_launch_backend(&r.be, a->device, a->blas, threads), st, fail);
    TS_CHECK_GOTO(ts_launch_precision(r.be, a->precision, &mc.dtype), st, fail);
    if (ts_comm_size(r.comm) > 1 && strcmp(r.be->name, "cpu") != 0) {
        /* the MPI communicator reduces host buffers; device buffers need the NCCL backend */
        ts_error(TS_ERR_UNSUPPORTED,
                 "%d ranks on the %s backend need NCCL, which does not exist yet: train on one "
                 "GPU with a single process, or use --device cpu under mpirun",
                 ts_comm_size(r.comm), r.be->name);
        goto fail;
    }
    TS_CHECK_GOTO(ts_loader_create(&r.train, a->data, a->seq_len, a->vocab_size), st, fail);
    ts_loader_set_shuffle(r.train, !a->no_shuffle, a->seed);
    if (a->val_data != NULL)
        TS_CHECK_GOTO(ts_loader_create(&r.val, a->val_data, a->seq_len, a->vocab_size), st, fail);
    if (r.val != NULL && ts_loader_num_windows(r.val) < a->batch) {
        ts_error(TS_ERR_INVALID_ARG,
                 "--val-data holds %" PRId64 " windows of %d tokens, fewer "
                 "than one batch of %d",
                 ts_loader_num_windows(r.val), a->seq_len + 1, a->batch);
        goto fail;
    }
    if (root) {
        TS_CHECK_GOTO(ts_launch_data_files(a->data, &r.data, &r.num_data), st, fail);
        TS_CHECK_GOTO(ts_launch_data_lineage(a->data, r.data_manifest, sizeof(r.data_manifest),
                                             r.data_manifest_hash, sizeof(r.data_manifest_hash)),
                      st, fail);
    }
    TS_CHECK_GOTO(record_flags(&r, a, &tc.lr), st, fail);
    TS_CHECK_GOTO(ts_gpt_create(&r.gpt, &mc, r.be, a->batch, a->seq_len), st, fail);
    TS_CHECK_GOTO(ts_gpt_init(r.gpt, a->seed), st, fail);
    TS_CHECK_GOTO(ts_trainer_create(&r.trainer, r.gpt, r.train, r.grid.dp, &tc), st, fail);
    if (start.kind == TS_START_RESUME) {
        TS_CHECK_GOTO(ts_train_state_load(r.trainer, r.start), st, fail);
        r.tokens_seen = ts_ckpt_meta(r.start)->tokens_seen;
    } else if (start.kind == TS_START_INIT) {
        TS_CHECK_GOTO(ts_gpt_load_checkpoint(r.gpt, r.start), st, fail);
    }
    if (r.start != NULL)
        TS_LOG_I("%s %s (step %" PRId64 ")",
                 start.kind == TS_START_RESUME ? "resuming from" : "weights from", start.path,
                 ts_ckpt_meta(r.start)->step);
    ts_ckpt_close(r.start);
    r.start = NULL;
    const int first = ts_trainer_steps_done(r.trainer);
    if (root) {
        TS_CHECK_GOTO(ts_fs_mkdirs(a->out), st, fail);
        snprintf(path, sizeof(path), "%s/config.json", a->out);
        TS_CHECK_GOTO(write_config_json(path, &mc, a, &tc.lr), st, fail);
        snprintf(path, sizeof(path), "%s/metrics.jsonl", a->out);
        if (start.kind == TS_START_RESUME)
            TS_CHECK_GOTO(ts_launch_trim_metrics(path, first), st, fail);
        TS_CHECK_GOTO(ts_metrics_open(&r.metrics, path, start.kind == TS_START_RESUME), st, fail);
    }

    struct ts_backend_info info;
    r.be->info(r.be, &info);
    const int dp = r.grid.dp_size;
    int64_t global_batch = (int64_t)a->batch * a->grad_accum * dp;
    r.global_batch = global_batch;
    TS_CHECK_GOTO(ts_world_log_layout(r.comm, &r.grid), st, fail);
    TS_LOG_I("model: %d layers, %d heads, %d channels, vocab %d (padded %d), %.2fM parameters",
             mc.num_layers, mc.num_heads, mc.channels, mc.vocab_size, mc.padded_vocab_size,
             (double)ts_gpt_num_params(r.gpt) / 1e6);
    TS_LOG_I("data: %d shard(s), %" PRId64 " tokens, %" PRId64 " windows of %d per epoch",
             ts_loader_num_shards(r.train), ts_loader_num_tokens(r.train),
             ts_loader_num_windows(r.train), a->seq_len + 1);
    TS_LOG_I("global batch %" PRId64 " sequences = batch %d x grad-accum %d x dp %d (%" PRId64
             " tokens per step); world size %d",
             global_batch, a->batch, a->grad_accum, dp, global_batch * a->seq_len,
             ts_comm_size(r.comm));
    TS_LOG_I("gradients: %d bucket(s) of up to %.3g MB, %s, ZeRO-%d; data %s",
             ts_trainer_num_buckets(r.trainer), (double)a->bucket_mb,
             a->no_overlap ? "reduced after backward" : "reduced during backward", a->zero,
             a->no_shuffle ? "in file order" : "shuffled each epoch");
    TS_LOG_I("backend: %s (%s), %d threads, %s; lr %g, warmup %d, cosine to %g at step %d",
             info.name, info.detail, info.threads, mc.dtype == TS_DTYPE_BF16 ? "bf16" : "fp32",
             (double)a->lr, tc.lr.warmup, (double)(a->lr * a->min_lr_frac), a->steps);

    code = TS_EXIT_FAILURE;
    const int stop = a->stop_after > 0 && a->stop_after < a->steps ? a->stop_after : a->steps;
    if (first >= stop)
        TS_LOG_I("nothing to do: %d updates done, stopping at %d", first, stop);
    double t_start = ts_launch_now_s();
    for (int s = first; s < stop; s++) {
        struct ts_step_record rec;
        bool kill;
        if (ts_world_fault_due(ts_comm_rank(r.comm), s, &kill)) {
            ts_error(TS_ERR_IO, "cannot read token shard %s (failure injected by TS_FAULT_INJECT)",
                     a->data);
            goto fail;
        }
        TS_CHECK_GOTO(ts_trainer_step(r.trainer, &rec), st, fail);
        if (r.metrics != NULL)
            TS_CHECK_GOTO(ts_metrics_step(r.metrics, &rec), st, fail);
        r.tokens_seen += rec.tokens;
        int done = s + 1;
        if (done == 1 || done % a->log_every == 0 || done == a->steps)
            TS_LOG_I("step %5d/%d | loss %.6f | lr %.3e | norm %.4f | %.1f ms | %.0f tok/s", done,
                     a->steps, (double)rec.loss, (double)rec.lr, (double)rec.grad_norm, rec.step_ms,
                     rec.tok_per_s);
        if (r.val != NULL && a->eval_every > 0 && done % a->eval_every == 0 && done != a->steps)
            TS_CHECK_GOTO(run_eval(&r, a, done), st, fail);
        if ((a->ckpt_every > 0 && done % a->ckpt_every == 0) || done == stop)
            TS_CHECK_GOTO(save_checkpoint(&r, a, done), st, fail);
    }
    if (r.val != NULL && stop == a->steps && first < stop)
        TS_CHECK_GOTO(run_eval(&r, a, a->steps), st, fail);
    /* No rank reports success before rank 0 has committed the last checkpoint. */
    TS_CHECK_GOTO(ts_comm_barrier(r.comm), st, fail);
    TS_LOG_I("%s: %d steps in %.1f s; checkpoints in %s/checkpoints",
             stop == a->steps ? "done" : "stopped", stop - first, ts_launch_now_s() - t_start,
             a->out);
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

int ts_cmd_train(int argc, char **argv) {
    struct train_args a = {
        .device = "cpu",
        .blas = "auto",
        .precision = "auto",
        .vocab_size = 50257,
        .layers = 12,
        .heads = 12,
        .channels = 768,
        .seq_len = 1024,
        .batch = 4,
        .grad_accum = 1,
        .steps = 1000,
        .warmup = -1,
        .lr = 6e-4f,
        .min_lr_frac = 0.1f,
        .weight_decay = 0.1f,
        .beta1 = 0.9f,
        .beta2 = 0.95f,
        .eps = 1e-8f,
        .grad_clip = 1.0f,
        .seed = 1337,
        .eval_every = 0,
        .eval_batches = 8,
        .log_every = 10,
        .bucket_mb = 25.0f,
    };
    struct ts_flag flags[NFLAGS];
    build_flags(flags, &a);
    const char *pos[1];
    int npos = 0;
    bool help = false;
    if (ts_cli_parse(flags, NFLAGS, argc, argv, 2, pos, 0, &npos, &help) != TS_OK)
        return ts_launch_fail("train", TS_EXIT_USAGE);
    if (help) {
        ts_cli_print_help(usage, description, flags, NFLAGS);
        return TS_EXIT_OK;
    }
    if (ts_launch_manifest_vocab(a.data, ts_cli_seen(flags, NFLAGS, "vocab-size"), false,
                                 &a.vocab_size) != TS_OK ||
        check_args(&a) != TS_OK)
        return ts_launch_fail("train", TS_EXIT_USAGE);
    return train(&a, flags, NFLAGS, &argc, &argv);
}
