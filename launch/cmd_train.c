/* cmd_train.c: `tessera train`: one process, or N data-parallel ranks under mpirun or srun.
 *
 * Reads flags, checks them all before touching data, joins the job (world.h: MPI or a single
 * process), checks that every rank got the same configuration, builds backend, loader, model
 * and trainer, then runs the step loop: a progress line every --log-every steps, one
 * metrics.jsonl line per step, an eval of --val-data every --eval-every steps and at the end,
 * and the final weights in <out>/model.bin (trainer/weights.h) with the run's configuration in
 * <out>/config.json. Rank 0 alone writes files and logs at info. A failure on any rank after
 * the agreement check aborts the whole job (ts_world_fail), so no rank waits forever in a
 * collective for a peer that is gone. */
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "comm/comm.h"
#include "comm/grid.h"
#include "kernels/log.h"
#include "launch/cli.h"
#include "launch/commands.h"
#include "launch/common.h"
#include "launch/metrics.h"
#include "launch/world.h"
#include "trainer/train.h"
#include "trainer/weights.h"

struct train_args {
    const char *data, *val_data, *out, *device, *blas, *precision;
    int vocab_size, layers, heads, channels, seq_len, max_seq_len;
    int batch, grad_accum, steps, warmup, eval_every, eval_batches, log_every, threads;
    int zero;
    float lr, min_lr_frac, weight_decay, beta1, beta2, eps, grad_clip, bucket_mb;
    uint64_t seed;
    bool overwrite, no_shuffle, no_overlap;
};

static const char usage[] = "tessera train --data PATTERN --out DIR [flags]";
static const char description[] =
    "Trains a GPT-2 style model on token shards (llm.c format: 256 x int32 header, uint16 ids).\n"
    "The global batch is batch x grad-accum x data-parallel size sequences of seq-len tokens.\n"
    "Under `mpirun -np N` or `srun --mpi=pmix -n N` the N ranks train one model together.\n"
    "Rank 0 writes DIR/metrics.jsonl (one line per step and per eval), DIR/config.json and the\n"
    "final weights DIR/model.bin.";

#define NFLAGS 33

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
             "shuffle=%d\neval-every=%d\neval-batches=%d\ndevice=%s\nprecision=%s\n",
             a->data, a->val_data ? a->val_data : "", a->out, a->vocab_size, a->layers, a->heads,
             a->channels, a->seq_len, a->max_seq_len, a->batch, a->grad_accum, a->steps,
             (double)a->lr, a->warmup, (double)a->min_lr_frac, (double)a->weight_decay,
             (double)a->beta1, (double)a->beta2, (double)a->eps, (double)a->grad_clip, a->seed,
             a->zero, (double)a->bucket_mb, !a->no_shuffle, a->eval_every, a->eval_batches,
             a->device, a->precision);
}

/* Everything a run holds, released in one place. */
struct run {
    struct ts_backend *be;
    ts_comm_t *comm; /* the world */
    struct ts_grid grid;
    ts_loader_t *train, *val;
    ts_gpt_t *gpt;
    ts_trainer_t *trainer;
    ts_metrics_t *metrics;
};

static void run_release(struct run *r) {
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
    TS_CHECK(ts_eval_loss(r->gpt, r->val, a->batch, a->eval_batches, &loss, &tokens));
    if (r->metrics == NULL)
        return TS_OK; /* every rank evaluates the same windows; rank 0 reports */
    TS_LOG_I("eval  step %d | val loss %.6f | %" PRId64 " tokens | %.1f s", step, loss, tokens,
             ts_launch_now_s() - t0);
    return ts_metrics_eval(r->metrics, step, loss, tokens);
}

/* Setup failures are the user's input (exit 2); step-loop failures are runtime (exit 1). */
static int train(const struct train_args *a, int *argc, char ***argv) {
    struct run r = {0};
    int code = TS_EXIT_USAGE;
    ts_status st;
    char path[4200];
    bool agreed = false; /* failures before this point are the same on every rank */

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

    TS_CHECK_GOTO(ts_world_create(&r.comm, argc, argv), st, fail);
    const bool root = ts_comm_rank(r.comm) == 0;
    char canon[4096];
    canonical_config(a, canon, sizeof(canon));
    TS_CHECK_GOTO(ts_world_check_agreement(r.comm, canon), st, fail);
    TS_CHECK_GOTO(ts_grid_init(&r.grid, r.comm, 1), st, fail);
    /* Rank 0's view of --out decides for everyone (other hosts may not share the directory). */
    snprintf(path, sizeof(path), "%s/model.bin", a->out);
    double finished = root && ts_launch_file_exists(path) && !a->overwrite;
    TS_CHECK_GOTO(ts_comm_all_reduce_host(r.comm, &finished, 1, TS_REDUCE_MAX), st, fail);
    if (finished != 0) {
        ts_error(TS_ERR_INVALID_ARG,
                 "%s already holds a finished run; pass --overwrite or "
                 "choose another --out",
                 a->out);
        goto fail;
    }
    agreed = true;

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
    TS_CHECK_GOTO(ts_gpt_create(&r.gpt, &mc, r.be, a->batch, a->seq_len), st, fail);
    TS_CHECK_GOTO(ts_gpt_init(r.gpt, a->seed), st, fail);
    TS_CHECK_GOTO(ts_trainer_create(&r.trainer, r.gpt, r.train, r.grid.dp, &tc), st, fail);
    if (root) {
        TS_CHECK_GOTO(ts_launch_mkdirs(a->out), st, fail);
        snprintf(path, sizeof(path), "%s/config.json", a->out);
        TS_CHECK_GOTO(write_config_json(path, &mc, a, &tc.lr), st, fail);
        snprintf(path, sizeof(path), "%s/metrics.jsonl", a->out);
        TS_CHECK_GOTO(ts_metrics_open(&r.metrics, path, false), st, fail);
    }

    struct ts_backend_info info;
    r.be->info(r.be, &info);
    const int dp = r.grid.dp_size;
    int64_t global_batch = (int64_t)a->batch * a->grad_accum * dp;
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
    double t_start = ts_launch_now_s();
    for (int s = 0; s < a->steps; s++) {
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
        int done = s + 1;
        if (done == 1 || done % a->log_every == 0 || done == a->steps)
            TS_LOG_I("step %5d/%d | loss %.6f | lr %.3e | norm %.4f | %.1f ms | %.0f tok/s", done,
                     a->steps, (double)rec.loss, (double)rec.lr, (double)rec.grad_norm, rec.step_ms,
                     rec.tok_per_s);
        if (r.val != NULL && a->eval_every > 0 && done % a->eval_every == 0 && done != a->steps)
            TS_CHECK_GOTO(run_eval(&r, a, done), st, fail);
    }
    if (r.val != NULL)
        TS_CHECK_GOTO(run_eval(&r, a, a->steps), st, fail);
    snprintf(path, sizeof(path), "%s/model.bin", a->out);
    if (root)
        TS_CHECK_GOTO(ts_weights_save(r.gpt, path), st, fail);
    /* No rank reports success before rank 0 has the weights on disk. */
    TS_CHECK_GOTO(ts_comm_barrier(r.comm), st, fail);
    TS_LOG_I("done: %d steps in %.1f s; weights in %s", a->steps, ts_launch_now_s() - t_start,
             path);
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
    return train(&a, &argc, &argv);
}
