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
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "comm/comm.h"
#include "comm/comm_nccl.h"
#include "comm/grid.h"
#include "data/data_manifest.h"
#include "data/lineage.h"
#include "data/mixture.h"
#include "kernels/fs.h"
#include "kernels/log.h"
#include "launch/cli.h"
#include "launch/commands.h"
#include "launch/common.h"
#include "launch/coordinator.h"
#include "launch/energy.h"
#include "launch/ledger.h"
#include "launch/metrics.h"
#include "launch/peak.h"
#include "launch/prices.h"
#include "launch/progress.h"
#include "launch/resume.h"
#include "launch/settings.h"
#include "launch/signals.h"
#include "launch/walltime.h"
#include "launch/world.h"
#include "trainer/run.h"

#ifndef TS_VERSION
#define TS_VERSION "unknown"
#endif

static const char usage[] =
    "tessera train --data PATTERN [--data PATH:WEIGHT ...] --out DIR [flags]";
static const char description[] =
    "Trains a GPT-2 style model on token shards (llm.c format: 256 x int32 header, uint16 ids).\n"
    "The global batch is batch x grad-accum x data-parallel size sequences of seq-len tokens.\n"
    "--data repeated is a mixture: --data web/:0.7 --data code/:0.3 draws each sequence from\n"
    "one source with those weights (split at the last ':'; a single --data is always a path).\n"
    "Under `mpirun -np N` or `srun --mpi=pmix -n N` the N ranks train one model together.\n"
    "Rank 0 writes DIR/metrics.jsonl (one line per step, eval and checkpoint) and "
    "DIR/config.json;\n"
    "checkpoints go to DIR/checkpoints/step_N (every --ckpt-every steps, at --stop-after and at\n"
    "the last step; DIR/checkpoints/latest is the newest; saved in the background unless\n"
    "--sync-save). --resume continues DIR from its latest\n"
    "checkpoint (or starts fresh when there is none) with every recorded setting (model, data,\n"
    "schedule, optimizer, batch, eval and checkpoint cadence, precision) unless given.\n"
    "A coordinator on rank 0 decides for every rank at each step boundary: eval, checkpoint,\n"
    "stop. SIGTERM, SIGUSR1 or SIGINT on any rank checkpoints and stops (a second SIGINT ends\n"
    "at once); --walltime (or the Slurm allocation's end) checkpoints and stops in time; a\n"
    "NaN/Inf loss or gradient norm (or a --spike-z spike) stops without saving.\n"
    "Exit codes (the same on every rank):\n"
    "  0  done, or --stop-after reached        3  stopped for time, checkpoint saved\n"
    "  1  failure while running                4  preempted by a signal, checkpoint saved\n"
    "  2  bad flags or bad input               5  diverged, not saved (latest is the last good)";

/* Everything a run holds, released in one place. */
struct run {
    const struct ts_train_settings *a;
    struct ts_backend *be;
    ts_comm_t *comm; /* the world */
    ts_comm_t *nccl; /* the world over NCCL on a device backend with several ranks, or NULL */
    struct ts_grid grid;
    ts_loader_t *train, *val;
    ts_gpt_t *gpt;
    ts_trainer_t *trainer;
    ts_metrics_t *metrics; /* rank 0 only */
    ts_coord_t *coord;
    ts_ledger_t *ledger;     /* rank 0 only: RUN/ledger.jsonl */
    struct ts_energy energy; /* rank 0's counter for the ledger */
    struct ts_peak peak;     /* one device's dense peak at the run's precision */
    struct ts_ledger_prices prices;
    struct ts_progress progress; /* rank 0's live line on a terminal */
    ts_ckpt_t *start; /* the checkpoint a resume or --init-from reads, closed once read */
    struct ts_train_state_info info; /* what every checkpoint of this run records */
    struct ts_ckpt_kv kv[TS_CKPT_MAX_KV];
    struct ts_data_files data; /* rank 0 only: the data files, hashes and mtimes */
    char parent[TS_PATH_MAX];
    char data_manifest[TS_PATH_MAX], data_manifest_hash[96];  /* rank 0 only */
    char data_pattern[TS_PATH_MAX], val_pattern[TS_PATH_MAX]; /* --data, --val-data as globs */
    char ckpt_dir[TS_PATH_MAX];
};

static void run_release(struct run *r) {
    ts_ckpt_close(r->start);
    ts_data_files_deinit(&r->data);
    ts_metrics_close(r->metrics);
    ts_coord_destroy(r->coord);
    ts_ledger_destroy(r->ledger);
    ts_trainer_destroy(r->trainer);
    ts_gpt_destroy(r->gpt);
    ts_loader_destroy(r->val);
    ts_loader_destroy(r->train);
    ts_grid_deinit(&r->grid);
    ts_comm_destroy(r->nccl); /* borrows the world */
    ts_comm_destroy(r->comm);
    ts_backend_destroy(r->be);
}

/* ---- the loop's reporting hooks ---- */

static ts_status before_step(void *ctx, int64_t step) {
    const struct run *r = ctx;
    bool kill;
    if (ts_world_fault_due(ts_comm_rank(r->comm), step, &kill))
        return ts_error(TS_ERR_IO,
                        "cannot read token shard %s (failure injected by TS_FAULT_INJECT)",
                        r->a->data);
    /* A test hook: a tiny model made as slow as a real one, so a job outlasts its allocation
     * without the compute (the Slurm requeue test). */
    const char *delay = getenv("TS_TEST_STEP_DELAY_MS");
    if (delay != NULL && atoi(delay) > 0)
        usleep((useconds_t)atoi(delay) * 1000u);
    return TS_OK;
}

/* The update --stop-after (when before --steps) or --steps ends the run at. */
static int64_t stop_step(const struct ts_train_settings *a) {
    return a->stop_after > 0 && a->stop_after < a->steps ? a->stop_after : a->steps;
}

static ts_status on_step(void *ctx, const struct ts_step_record *rec) {
    struct run *r = ctx;
    const int64_t done = rec->step + 1;
    if (rec->skipped && r->metrics != NULL) {
        ts_progress_close(&r->progress);
        TS_LOG_W("%s", ts_coord_detail(r->coord));
    }
    if (r->progress.live && r->metrics != NULL)
        ts_progress_draw(&r->progress, rec, r->a->steps, stop_step(r->a),
                         r->coord ? ts_coord_time_left(r->coord) : -1);
    else if (done == 1 || done % r->a->log_every == 0 || done == r->a->steps)
        TS_LOG_I("step %5" PRId64 "/%" PRId64
                 " | loss %.6f | lr %.3e | norm %.4f | %.1f ms | %.0f tok/s",
                 done, r->a->steps, (double)rec->loss, (double)rec->lr, (double)rec->grad_norm,
                 rec->step_ms, rec->tok_per_s);
    return r->metrics ? ts_metrics_step(r->metrics, rec) : TS_OK;
}

static ts_status decide(void *ctx, const struct ts_step_record *rec, struct ts_run_decision *d) {
    struct run *r = ctx;
    TS_CHECK(ts_coord_decide(r->coord, rec, d));
    if (d->actions & (TS_RUN_EVAL | TS_RUN_CHECKPOINT | TS_RUN_STOP))
        ts_progress_close(&r->progress);
    return TS_OK;
}

static ts_status on_eval(void *ctx, int64_t step, double loss, int64_t tokens, double seconds) {
    struct run *r = ctx;
    if (r->coord != NULL)
        ts_coord_note_eval(r->coord, seconds);
    if (r->metrics == NULL)
        return TS_OK; /* the dp ranks split the batches; rank 0 reports */
    ts_progress_close(&r->progress);
    TS_LOG_I("eval  step %" PRId64 " | val loss %.6f | %" PRId64 " tokens | %.1f s", step, loss,
             tokens, seconds);
    return ts_metrics_eval(r->metrics, step, loss, tokens);
}

static ts_status on_checkpoint(void *ctx, int64_t step, const char *path, double stall_s,
                               double save_s) {
    struct run *r = ctx;
    if (r->coord != NULL)
        ts_coord_note_checkpoint(r->coord, stall_s, save_s);
    ts_progress_close(&r->progress);
    TS_LOG_I("checkpoint: step %" PRId64 " saved to %s in %.2f s (training stalled %.2f s)", step,
             path, save_s, stall_s);
    return r->metrics ? ts_metrics_checkpoint(r->metrics, step, path, stall_s, save_s) : TS_OK;
}

/* <out>/exit.json: how the run ended, written (atomically) by rank 0 when train returns
 * normally. A batch script reads it to tell a run that ended from a step that never ran
 * (an srun whose tasks failed to launch can still exit 0). */
static ts_status write_exit_file(const char *out, int code, const struct ts_run_result *res) {
    char path[TS_PATH_MAX], tmp[TS_PATH_MAX];
    TS_CHECK(ts_path_join(path, sizeof(path), out, "exit.json"));
    TS_CHECK(ts_path_fmt(tmp, sizeof(tmp), "%s.tmp", path));
    FILE *f = fopen(tmp, "w");
    if (f == NULL)
        return ts_error(TS_ERR_IO, "cannot write %s: %s", tmp, strerror(errno));
    fprintf(f, "{\"code\":%d,\"reason\":\"%s\",\"step\":%" PRId64 ",\"steps_run\":%" PRId64 "}\n",
            code, ts_stop_reason_name(res->reason), res->last, res->last - res->first);
    if (fclose(f) != 0 || rename(tmp, path) != 0)
        return ts_error(TS_ERR_IO, "cannot write %s: %s", path, strerror(errno));
    return TS_OK;
}

/* ---- setup ---- */

/* A checkpoint read on another layout (dp, tp or ZeRO stage) is resharded through its boxes:
 * say so, and on a resume what the global batch became on this layout. */
static void log_layout_change(const struct run *r, const struct ts_ckpt_meta *m, bool resumed) {
    const struct ts_ckpt_layout *was = &m->layout;
    const int was_tp = was->tp > 0 ? was->tp : 1, was_dp = was->dp > 0 ? was->dp : 1;
    if (was_dp == r->grid.dp_size && was_tp == r->grid.tp_size &&
        (!resumed || was->zero_stage == r->a->zero))
        return;
    char batch[160] = "";
    if (resumed)
        snprintf(batch, sizeof(batch),
                 "; the global batch of %" PRId64 " is batch %d x grad-accum %d x dp %d",
                 r->info.global_batch, r->a->batch, r->a->grad_accum, r->grid.dp_size);
    TS_LOG_I("%s: saved on world %d = dp %d x tp %d (ZeRO-%d), read on world %d = dp %d x tp %d "
             "(ZeRO-%d): %s resharded from the checkpoint's boxes%s",
             resumed ? "resume" : "init", was->world_size, was_dp, was_tp, was->zero_stage,
             ts_comm_size(r->comm), r->grid.dp_size, r->grid.tp_size, r->a->zero,
             resumed ? "parameters and AdamW state" : "parameters", batch);
}

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

/* Rank 0's record of the data: every source's files in the loader's order (a mixture's
 * manifests among them), hashed unless a resumed checkpoint recorded them with the same size and
 * mtime; the manifest beside a single dataset. */
static ts_status record_data(struct run *r, const struct ts_data_mix *mix) {
    const struct ts_ckpt_meta *m = r->start != NULL ? ts_ckpt_meta(r->start) : NULL;
    const struct ts_ckpt_data_file *rec = m != NULL ? m->data : NULL;
    const int nrec = m != NULL ? m->num_data : 0;
    for (int i = 0; i < mix->n; i++) {
        TS_CHECK(ts_data_files_add_glob(&r->data, mix->path[i], rec, nrec));
        if (mix->n == 1)
            break;
        char mpath[TS_PATH_MAX];
        bool found = false;
        TS_CHECK(ts_data_manifest_find(mix->path[i], mpath, sizeof(mpath), &found));
        if (found)
            TS_CHECK(ts_data_files_add(&r->data, mpath, rec, nrec));
    }
    r->info.num_data = r->data.n;
    TS_LOG_I("data: %d file(s): hashed %d (%.1f MB read), %d kept the checkpoint's hash (same "
             "size and mtime; not read again)",
             r->data.n, r->data.hashed, (double)r->data.hashed_bytes / 1e6, r->data.reused);
    if (mix->n > 1)
        return TS_OK;
    return ts_data_lineage(mix->path[0], r->data_manifest, sizeof(r->data_manifest),
                           r->data_manifest_hash, sizeof(r->data_manifest_hash));
}

static ts_status open_data(struct run *r) {
    const struct ts_train_settings *a = r->a;
    struct ts_data_mix mix;
    TS_CHECK(ts_data_mix_parse(a->data, &mix));
    ts_status st = ts_data_mix_resolve(&mix);
    if (st == TS_OK && mix.n == 1) {
        st = ts_path_fmt(r->data_pattern, sizeof(r->data_pattern), "%s", mix.path[0]);
        if (st == TS_OK)
            st = ts_loader_create(&r->train, r->data_pattern, a->seq_len, a->vocab_size);
    } else if (st == TS_OK) {
        st = ts_loader_create_mix(&r->train, (const char *const *)mix.path, mix.weight, mix.n,
                                  a->seq_len, a->vocab_size);
    }
    if (st == TS_OK)
        ts_loader_set_shuffle(r->train, !a->no_shuffle, a->seed);
    if (st == TS_OK && a->val_data != NULL) {
        st = ts_data_resolve_val(a->val_data, r->val_pattern, sizeof(r->val_pattern));
        if (st == TS_OK)
            st = ts_loader_create(&r->val, r->val_pattern, a->seq_len, a->vocab_size);
    }
    if (st == TS_OK && r->val != NULL && ts_loader_num_windows(r->val) < a->batch)
        st = ts_error(TS_ERR_INVALID_ARG,
                      "--val-data holds %" PRId64 " windows of %d tokens, fewer than one "
                      "batch of %d",
                      ts_loader_num_windows(r->val), a->seq_len + 1, a->batch);
    if (st == TS_OK && ts_comm_rank(r->comm) == 0)
        st = record_data(r, &mix);
    ts_data_mix_deinit(&mix);
    return st;
}

/* How a mixture's weights changed since the checkpoint ("" when they did not, or for a single
 * dataset on both sides). */
static void compare_mixture(const char *then, const char *now, char *diff, size_t len) {
    diff[0] = '\0';
    if (!ts_data_is_mix(then) && !ts_data_is_mix(now))
        return;
    struct ts_data_mix a, b;
    if (ts_data_mix_parse(then, &a) != TS_OK) {
        snprintf(diff, len, "the recorded data mixture does not read: %s", ts_last_error());
        return;
    }
    if (ts_data_mix_parse(now, &b) != TS_OK) {
        ts_data_mix_deinit(&a);
        snprintf(diff, len, "the data mixture does not read: %s", ts_last_error());
        return;
    }
    bool same = a.n == b.n;
    for (int i = 0; same && i < a.n; i++)
        same = a.weight[i] == b.weight[i];
    if (!same) {
        size_t at = (size_t)snprintf(diff, len, "the mixture's weights were");
        for (int i = 0; i < a.n && at < len; i++)
            at += (size_t)snprintf(diff + at, len - at, "%s %.9g", i ? "," : "", a.weight[i]);
        if (at < len)
            at += (size_t)snprintf(diff + at, len - at, ", now");
        for (int i = 0; i < b.n && at < len; i++)
            at += (size_t)snprintf(diff + at, len - at, "%s %.9g", i ? "," : "", b.weight[i]);
    }
    ts_data_mix_deinit(&a);
    ts_data_mix_deinit(&b);
}

/* A resume on other data than the checkpoint recorded is refused unless --data-changed; rank 0
 * compares, every rank learns the verdict. Returns in *changed whether the loader restarts. */
static ts_status check_resumed_data(struct run *r, bool *changed) {
    char diff[1200] = "";
    double verdict = 0; /* 0 same, 1 changed */
    if (ts_comm_rank(r->comm) == 0) {
        const struct ts_ckpt_meta *m = ts_ckpt_meta(r->start);
        bool same = true;
        ts_data_compare(m->data, m->num_data, r->data.files, r->data.n, &same, diff, sizeof(diff));
        const char *then = ts_ckpt_kv_get(m->train, m->num_train, "data");
        char mixdiff[600];
        compare_mixture(then != NULL ? then : "", r->a->data, mixdiff, sizeof(mixdiff));
        if (same && mixdiff[0] != '\0') {
            same = false;
            snprintf(diff, sizeof(diff), "%s", mixdiff);
        }
        if (same && m->data_manifest_hash[0] != '\0' &&
            strcmp(m->data_manifest_hash, r->data_manifest_hash) != 0) {
            same = false;
            snprintf(diff, sizeof(diff), "the manifest %.900s was %s, now %s", m->data_manifest,
                     m->data_manifest_hash,
                     r->data_manifest_hash[0] ? r->data_manifest_hash : "gone");
        }
        verdict = same ? 0 : 1;
    }
    TS_CHECK(ts_comm_all_reduce_host(r->comm, &verdict, 1, TS_REDUCE_MAX));
    *changed = verdict != 0;
    if (*changed && !r->a->data_changed)
        return ts_error(TS_ERR_INVALID_ARG,
                        "the data differs from what the checkpoint trained on (%s); pass "
                        "--data-changed to continue on it from the start of a new epoch",
                        ts_comm_rank(r->comm) == 0 ? diff : "see rank 0");
    if (*changed)
        TS_LOG_I("data: changed since the checkpoint (%s); --data-changed: the loader restarts "
                 "at window 0 of the new data",
                 diff);
    return TS_OK;
}

/* What every checkpoint records about the run beyond the trainer's own state. */
static ts_status fill_record(struct run *r, int64_t global_batch) {
    struct ts_train_state_info *i = &r->info;
    TS_CHECK(ts_train_settings_record(r->a, r->kv, &i->num_train));
    TS_CHECK(ts_ckpt_kv_add(r->kv, &i->num_train, "dp", "%d", r->grid.dp_size));
    i->global_batch = global_batch;
    i->layout = (struct ts_ckpt_layout){.world_size = ts_comm_size(r->comm),
                                        .dp = r->grid.dp_size,
                                        .tp = r->grid.tp_size,
                                        .zero_stage = r->a->zero};
    i->train = r->kv;
    i->data = r->data.files;
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
            "\"num_layers\":%d,\"num_heads\":%d,\"channels\":%d},\n \"layout\":{\"tp\":%d},"
            "\n \"train\":",
            m->vocab_size, m->padded_vocab_size, m->max_seq_len, m->num_layers, m->num_heads,
            m->channels, a->tp);
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
    const int nsrc = ts_loader_num_sources(r->train);
    for (int i = 0; nsrc > 1 && i < nsrc; i++) {
        const ts_loader_t *src = ts_loader_source(r->train, i);
        TS_LOG_I("data: mixture source %d: weight %.4g, %d shard(s), %" PRId64 " windows per "
                 "epoch of its own",
                 i, ts_loader_source_weight(r->train, i), ts_loader_num_shards(src),
                 ts_loader_num_windows(src));
    }
    TS_LOG_I("global batch %" PRId64 " sequences = batch %d x grad-accum %d x dp %d (%" PRId64
             " tokens per step); world size %d",
             r->info.global_batch, a->batch, a->grad_accum, r->grid.dp_size,
             r->info.global_batch * a->seq_len, ts_comm_size(r->comm));
    TS_LOG_I("gradients: %d bucket(s) of up to %.3g MB, %s, ZeRO-%d; data %s",
             ts_trainer_num_buckets(r->trainer), (double)a->bucket_mb,
             a->no_overlap ? "reduced after backward" : "reduced during backward", a->zero,
             a->no_shuffle ? "in file order" : "shuffled each epoch");
    TS_LOG_I("backend: %s (%s), %d threads, %s; lr %g, warmup %" PRId64
             ", %s to %g at step %" PRId64,
             info.name, info.detail, info.threads, mc->dtype == TS_DTYPE_BF16 ? "bf16" : "fp32",
             (double)a->lr, tc->lr.warmup, ts_lr_kind_name(tc->lr.kind),
             (double)(a->lr * a->min_lr_frac), a->steps);
    if (a->batch_ramp != NULL)
        TS_LOG_I("batch ramp %s: grad-accum grows from %d to %d over %" PRId64 " tokens",
                 a->batch_ramp, ts_batch_ramp_accum(&tc->ramp, a->grad_accum, 0), a->grad_accum,
                 tc->ramp.ramp_tokens);
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
    /* checked with the settings (ts_train_settings_check) */
    if (ts_train_settings_schedule(a, &tc->lr, &tc->ramp) != TS_OK)
        TS_LOG_E("internal: the schedule passed its check once and fails now");
}

/* Batches of B windows (ts_eval_loss's unit, split over the dp ranks) such that the in-training
 * eval covers the same windows whatever the layout: --eval-batches counts global batches
 * (B x grad-accum x dp windows, which a resume on another layout keeps), as Megatron-LM's
 * --eval-iters does; 0 (the whole file) is the largest whole number of them. */
static int eval_batches(const struct run *r, int dp) {
    if (r->val == NULL)
        return 0;
    const int64_t per = (int64_t)r->a->batch * r->a->grad_accum * dp;
    int64_t n = ts_loader_num_windows(r->val) / per;
    if (r->a->eval_batches > 0 && r->a->eval_batches < n)
        n = r->a->eval_batches;
    return (int)(n * r->a->grad_accum * dp);
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
/* The exit code of a run that ended without failing. */
static int exit_code(enum ts_stop_reason why) {
    switch (why) {
    case TS_STOP_TIME:
        return TS_EXIT_TIME;
    case TS_STOP_PREEMPTED:
        return TS_EXIT_PREEMPTED;
    case TS_STOP_DIVERGED:
        return TS_EXIT_DIVERGED;
    case TS_STOP_NONE:
    case TS_STOP_DONE:
    case TS_STOP_AFTER:
        break;
    }
    return TS_EXIT_OK;
}

/* When the job must have exited (ts_launch_now_s() seconds; 0: no limit): --walltime from the
 * launch, and the Slurm allocation's end (rank 0 asks; only it decides). */
static double find_deadline(const struct run *r, double t_launch) {
    double left = -1;
    if (r->a->walltime != NULL && ts_walltime_parse(r->a->walltime, &left) == TS_OK)
        left -= ts_launch_now_s() - t_launch;
    char source[160] = "";
    const double slurm =
        ts_comm_rank(r->comm) == 0 ? ts_walltime_slurm_left(source, sizeof(source)) : -1;
    if (slurm >= 0 && (left < 0 || slurm < left)) {
        TS_LOG_I("time limit: the Slurm allocation ends in %.0f s (%s)", slurm, source);
        left = slurm;
    } else if (left >= 0) {
        TS_LOG_I("time limit: --walltime %s, %.1f s left", r->a->walltime, left);
    }
    return left >= 0 ? ts_launch_now_s() + (left > 0 ? left : 1e-3) : 0;
}

/* The checkpoint's bytes on all ranks: parameters, AdamW moments, master weights where they
 * exist, and model.h5 (fp32). */
static double state_bytes(const struct run *r, enum ts_dtype dtype) {
    const double n = (double)ts_gpt_num_params(r->gpt);
    return n * (dtype == TS_DTYPE_BF16 ? 2 + 4 + 8 + 4 : 4 + 8 + 4);
}

/* ---- the ledger (launch/ledger.h) ---- */

/* A float setting as the decimal it was given as (2.49, not 2.4900000095). */
static double price_setting(float v) {
    if (v < 0)
        return -1;
    char text[32];
    snprintf(text, sizeof(text), "%.7g", (double)v);
    return strtod(text, NULL);
}

/* The run's prices: the flags, the run's record on a resume, else the price table; written back
 * into the settings so checkpoints record what the job pays (a resume keeps it unless given). */
static ts_status resolve_prices(struct run *r, const struct ts_train_flags *flags, bool bf16) {
    struct ts_train_settings *a = (struct ts_train_settings *)r->a;
    ts_peak_of_backend(r->be, bf16, &r->peak);
    struct ts_backend_info info;
    r->be->info(r->be, &info);
    const bool given = ts_train_flags_given(flags, "price-per-gpu-hour") ||
                       ts_train_flags_given(flags, "price-per-kwh");
    TS_CHECK(ts_prices_resolve(a->prices, price_setting(a->price_per_gpu_hour),
                               price_setting(a->price_per_kwh),
                               r->peak.key[0] ? r->peak.key : info.name,
                               given ? "flags" : "the run's record", &r->prices));
    a->price_per_gpu_hour = (float)r->prices.usd_per_device_hour;
    a->price_per_kwh = (float)r->prices.usd_per_kwh;
    if (a->price_per_gpu_hour < 0)
        a->price_per_gpu_hour = -1;
    if (a->price_per_kwh < 0)
        a->price_per_kwh = -1;
    return TS_OK;
}

static double ledger_now(void *ctx) {
    (void)ctx;
    return ts_launch_now_s();
}

static bool ledger_energy(void *ctx, double *joules) { return ts_energy_read(ctx, joules); }

/* Rank 0's ledger. Energy is the job's only where rank 0's counter sees every device: one rank,
 * or CPU ranks all on rank 0's host (RAPL counts whole packages). */
static ts_status open_ledger(struct run *r, const struct ts_gpt_config *mc, double t_launch,
                             int64_t resumed_from) {
    const int n = ts_comm_size(r->comm);
    const bool cpu = strcmp(r->be->name, "cpu") == 0;
    ts_energy_init(&r->energy, r->be, "");
    if (n > 1 && (!cpu || ts_comm_local_size(r->comm) != n)) {
        r->energy = (struct ts_energy){0};
        snprintf(r->energy.what, sizeof(r->energy.what),
                 "not measured: rank 0's counter does not see every rank's device");
    }
    struct ts_backend_info info;
    r->be->info(r->be, &info);
    struct ts_ledger_config lc = {
        .devices = n,
        .cpu = cpu,
        .flops_per_token = ts_peak_flops_per_token((double)ts_gpt_num_flop_params(r->gpt),
                                                   mc->num_layers, mc->channels, r->a->seq_len),
        .peak_flops = r->peak.flops,
        .prices = r->prices,
        .src = {.ctx = &r->energy, .now_s = ledger_now, .energy_j = ledger_energy},
        .t_launch = t_launch,
        .resumed_from = resumed_from,
    };
    snprintf(lc.device_name, sizeof(lc.device_name), "%s", info.name);
    snprintf(lc.precision, sizeof(lc.precision), "%s", r->a->precision);
    snprintf(lc.peak_source, sizeof(lc.peak_source), "%s", r->peak.source);
    snprintf(lc.energy_source, sizeof(lc.energy_source), "%s", r->energy.what);
    char path[TS_PATH_MAX];
    TS_CHECK(ts_path_join(path, sizeof(path), r->a->out, "ledger.jsonl"));
    TS_CHECK(ts_ledger_create(&r->ledger, path, &lc));
    TS_LOG_I("ledger: %s; %.4g FLOP/token, peak %s; energy %s; %s", path, lc.flops_per_token,
             r->peak.source, r->energy.what,
             r->prices.usd_per_device_hour >= 0 ? "priced" : "no price given");
    return TS_OK;
}

/* Several ranks on a device backend: the NCCL communicator (in the CUDA plug-in) moves the
 * device buffers, the MPI world keeps the host values; the grid is rebuilt over it. Refused,
 * with the reason, where the plug-in has no usable NCCL. */
static ts_status use_nccl(struct run *r) {
    int version = 0;
    if (ts_comm_nccl_version(&version) != TS_OK)
        return ts_error(TS_ERR_UNSUPPORTED,
                        "%d ranks on the %s backend need NCCL, which is not available: %s; train "
                        "on one GPU with a single process, or use --device cpu under mpirun",
                        ts_comm_size(r->comm), r->be->name, ts_last_error());
    const struct ts_nccl_options o = {.timeout_s = r->a->comm_timeout};
    ts_comm_t *nccl = NULL;
    TS_CHECK(ts_comm_nccl_create(&nccl, r->comm, r->be, &o));
    TS_LOG_I("comm: NCCL %d.%d.%d over %d ranks (host values over MPI), --comm-timeout %.0f s",
             version / 10000, (version / 100) % 100, version % 100, ts_comm_size(nccl),
             (double)r->a->comm_timeout);
    ts_grid_deinit(&r->grid);
    ts_status st = ts_grid_init(&r->grid, nccl, 1);
    if (st != TS_OK) {
        ts_comm_destroy(nccl);
        return st;
    }
    r->nccl = nccl;
    return TS_OK;
}

/* --data and --val-data as absolute paths, so what config.json and every checkpoint record works
 * from any working directory (eval, sample, a resume started elsewhere). */
static ts_status absolute_data_paths(struct ts_train_settings *a) {
    static char data[8192], val[TS_PATH_MAX];
    if (a->data != NULL && a->data != data) {
        struct ts_data_mix m;
        TS_CHECK(ts_data_mix_parse(a->data, &m));
        ts_status st = TS_OK;
        char abs[TS_PATH_MAX];
        for (int i = 0; i < m.n && st == TS_OK; i++) {
            st = ts_launch_abs_path(m.path[i], abs, sizeof(abs));
            char *copy = st == TS_OK ? strdup(abs) : NULL;
            if (st == TS_OK && copy == NULL)
                st = ts_error(TS_ERR_OOM, "out of memory reading --data");
            if (copy != NULL) {
                free(m.path[i]);
                m.path[i] = copy;
            }
        }
        if (st == TS_OK)
            st = ts_data_mix_format(&m, data, sizeof(data));
        ts_data_mix_deinit(&m);
        TS_CHECK(st);
        a->data = data;
    }
    if (a->val_data != NULL && a->val_data != val) {
        TS_CHECK(ts_launch_abs_path(a->val_data, val, sizeof(val)));
        a->val_data = val;
    }
    return TS_OK;
}

static int train(struct ts_train_flags *flags, int *argc, char ***argv, double t_launch) {
    struct ts_train_settings *a = &flags->v;
    struct run r = {.a = a};
    int code = TS_EXIT_USAGE;
    ts_status st;
    bool agreed = false; /* failures before this point are the same on every rank */
    struct ts_start start;
    char canon[8192];

    const bool asked_resume = a->resume || a->resume_from != NULL; /* before a->resume changes */
    TS_CHECK_GOTO(ts_world_create(&r.comm, argc, argv), st, fail);
    const bool root = ts_comm_rank(r.comm) == 0;
    TS_CHECK_GOTO(absolute_data_paths(a), st, fail);
    TS_CHECK_GOTO(ts_train_settings_canonical(a, canon, sizeof(canon)), st, fail);
    TS_CHECK_GOTO(ts_world_check_agreement(r.comm, canon), st, fail);
    if (ts_comm_size(r.comm) % a->tp != 0) {
        ts_error(TS_ERR_INVALID_ARG,
                 "--tp %d does not divide the %d ranks: the world is split into groups of --tp "
                 "adjacent ranks",
                 a->tp, ts_comm_size(r.comm));
        goto fail;
    }
    TS_CHECK_GOTO(ts_grid_init(&r.grid, r.comm, a->tp), st, fail);
    TS_CHECK_GOTO(decide_start(r.comm, a, &start), st, fail);
    const bool resumed = start.kind == TS_START_RESUME;
    if (start.kind != TS_START_FRESH) {
        TS_CHECK_GOTO(ts_ckpt_open(&r.start, start.path), st, fail);
        TS_CHECK_GOTO(ts_train_settings_adopt(flags, ts_ckpt_meta(r.start), start.path, resumed,
                                              r.grid.dp_size),
                      st, fail);
        TS_CHECK_GOTO(ts_path_fmt(r.parent, sizeof(r.parent), "%s", start.path), st, fail);
        TS_CHECK_GOTO(absolute_data_paths(a), st, fail); /* adopted ones, as they were */
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
    if (root && a->overwrite && !a->resume) /* never the checkpoint this run reads */
        TS_CHECK_GOTO(ts_launch_clear_checkpoints(r.ckpt_dir,
                                                  start.kind == TS_START_FRESH ? NULL : start.path),
                      st, fail);

    struct ts_gpt_config mc;
    struct ts_train_config tc;
    make_configs(a, &mc, &tc);
    TS_CHECK_GOTO(ts_gpt_config_finish(&mc), st, fail);
    TS_CHECK_GOTO(ts_launch_backend_at(&r.be, a->device, a->blas, threads_per_rank(a, r.comm),
                                       ts_comm_local_rank(r.comm)),
                  st, fail);
    TS_CHECK_GOTO(ts_launch_precision(r.be, a->precision, &mc.dtype), st, fail);
    a->precision = mc.dtype == TS_DTYPE_BF16 ? "bf16" : "fp32"; /* recorded as run */
    if (a->warmup < 0)
        a->warmup = tc.lr.warmup; /* recorded as run */
    TS_CHECK_GOTO(resolve_prices(&r, flags, mc.dtype == TS_DTYPE_BF16), st, fail);
    if (a->tp > 1 && strcmp(r.be->name, "cpu") != 0) {
        ts_error(TS_ERR_UNSUPPORTED,
                 "--tp %d on the %s backend: tensor parallelism runs on the CPU backend only "
                 "for now (its collectives are not wired to NCCL yet); use --device cpu",
                 a->tp, r.be->name);
        goto fail;
    }
    if (ts_comm_size(r.comm) > 1 && ts_comm_check_backend(r.comm, r.be) != TS_OK)
        TS_CHECK_GOTO(use_nccl(&r), st, fail);
    TS_CHECK_GOTO(open_data(&r), st, fail);
    TS_CHECK_GOTO(fill_record(&r, (int64_t)a->batch * a->grad_accum * r.grid.dp_size), st, fail);
    if (a->tp > 1) {
        if (mc.num_heads % a->tp != 0) { /* the vocabulary is padded to fit (gpt.h) */
            ts_error(TS_ERR_INVALID_ARG,
                     "--tp %d must divide --heads (%d): each tensor-parallel rank holds "
                     "heads/tp heads",
                     a->tp, mc.num_heads);
            goto fail;
        }
        tc.tp = r.grid.tp;
    }
    const struct ts_gpt_tp gtp = ts_trainer_tp(a->tp > 1 ? r.grid.tp : NULL);
    TS_CHECK_GOTO(ts_gpt_create_tp(&r.gpt, &mc, r.be, a->batch, a->seq_len, &gtp), st, fail);
    TS_CHECK_GOTO(ts_gpt_init(r.gpt, a->seed), st, fail);
    TS_CHECK_GOTO(ts_trainer_create(&r.trainer, r.gpt, r.train, r.grid.dp, &tc), st, fail);
    if (resumed) {
        TS_CHECK_GOTO(ts_train_state_load(r.trainer, r.start), st, fail);
        bool changed = false;
        TS_CHECK_GOTO(check_resumed_data(&r, &changed), st, fail);
        if (changed)
            ts_loader_seek(r.train, 0);
        r.info.tokens_seen = ts_ckpt_meta(r.start)->tokens_seen;
    } else if (start.kind == TS_START_INIT) {
        TS_CHECK_GOTO(ts_gpt_load_checkpoint(r.gpt, r.start), st, fail);
    }
    if (r.start != NULL) {
        TS_LOG_I("%s %s (step %" PRId64 ")", resumed ? "resuming from" : "weights from", start.path,
                 ts_ckpt_meta(r.start)->step);
        log_layout_change(&r, ts_ckpt_meta(r.start), resumed);
    }
    ts_ckpt_close(r.start);
    r.start = NULL;
    if (root)
        TS_CHECK_GOTO(open_run_files(&r, &mc, resumed), st, fail);
    TS_CHECK_GOTO(ts_world_log_layout(r.comm, &r.grid), st, fail);
    log_run(&r, &mc, &tc);

    code = TS_EXIT_FAILURE;
    const int dp = r.grid.dp_size;
    const struct ts_run_config rc = {
        .steps = a->steps,
        .stop = stop_step(a),
        .eval_every = a->eval_every,
        .eval_batches = eval_batches(&r, dp),
        .eval_batch = a->batch,
        .ckpt_every = a->ckpt_every,
        .keep_last = a->keep_last,
        .ckpt_dir = r.ckpt_dir,
        .continues_dir = a->resume, /* --resume continued it: its checkpoints are this run's */
        .sync_save = a->sync_save,
    };
    struct ts_coord_config cc = {
        .run = &rc,
        .have_val = r.val != NULL,
        .deadline = find_deadline(&r, t_launch),
        .state_bytes = state_bytes(&r, mc.dtype),
        .spike_z = a->spike_z,
        .spike_window = a->spike_window,
        .spike_min = 20,
        .skip_spikes = a->skip_spikes,
    };
    if (root)
        TS_CHECK_GOTO(open_ledger(&r, &mc, t_launch,
                                  resumed        ? ts_trainer_steps_done(r.trainer)
                                  : asked_resume ? 0
                                                 : -1),
                      st, fail);
    cc.ledger = r.ledger;
    TS_CHECK_GOTO(ts_coord_create(&r.coord, r.comm, &cc), st, fail);
    if (a->skip_spikes)
        ts_trainer_set_update_gate(r.trainer, ts_coord_gate, r.coord);
    /* TS_COORD_BYPASS=1 (benchmarks only): the cadence alone, no reports, no signals, no time
     * limit, no divergence check; what the coordinator's per-step cost is measured against. */
    const char *bypass = getenv("TS_COORD_BYPASS");
    const bool coordinated = bypass == NULL || strcmp(bypass, "1") != 0;
    const struct ts_run_hooks hooks = {
        .ctx = &r,
        .before_step = before_step,
        .on_step = on_step,
        .decide = coordinated ? decide : NULL,
        .on_eval = on_eval,
        .on_checkpoint = on_checkpoint,
    };
    ts_progress_init(&r.progress, root, ts_trainer_steps_done(r.trainer));
    if (coordinated)
        ts_signals_install();
    if (ts_trainer_steps_done(r.trainer) >= rc.stop)
        TS_LOG_I("nothing to do: %" PRId64 " updates done, stopping at %" PRId64,
                 ts_trainer_steps_done(r.trainer), rc.stop);
    struct ts_run_result res;
    if (r.ledger != NULL)
        TS_CHECK_GOTO(ts_ledger_begin(r.ledger), st, fail);
    st = ts_run(r.trainer, r.comm, r.grid.dp, r.val, &rc, &r.info, &hooks, &res);
    ts_signals_restore();
    ts_progress_close(&r.progress);
    TS_CHECK_GOTO(st, st, fail);
    if (r.ledger != NULL)
        TS_CHECK_GOTO(ts_ledger_end(r.ledger, ts_stop_reason_name(res.reason)), st, fail);
    if (coordinated)
        ts_coord_log_summary(r.coord);
    const int ec = exit_code(res.reason);
    if (res.reason == TS_STOP_DIVERGED)
        TS_LOG_E("%s; %s/latest is the last good checkpoint", ts_coord_detail(r.coord), r.ckpt_dir);
    else if (ec != TS_EXIT_OK)
        TS_LOG_W("%s", ts_coord_detail(r.coord));
    TS_LOG_I("%s (%s, exit code %d): %" PRId64 " steps in %.3f s; checkpoints in %s",
             res.reason == TS_STOP_DONE ? "done" : "stopped", ts_stop_reason_name(res.reason), ec,
             res.last - res.first, res.seconds, r.ckpt_dir);
    if (root && write_exit_file(a->out, ec, &res) != TS_OK)
        TS_LOG_W("%s", ts_last_error()); /* the run itself is saved; only the note is missing */
    run_release(&r);
    return ec;
fail:
    if (r.ledger != NULL) /* the segment ends even when the run fails: its time was spent */
        TS_CHECK_KEEP(st, ts_ledger_end(r.ledger, "failed"));
    (void)st;
    if (agreed)
        /* aborts the job when it has several ranks (NCCL first, then MPI) */
        ts_world_fail(r.nccl != NULL ? r.nccl : r.comm, "train", code);
    else
        ts_launch_fail("train", code);
    run_release(&r);
    return code;
}

/* Before MPI starts, the launcher's environment says which rank this process will be: the same
 * log level and "[rank N] " prefix as launch/world.c sets once the world exists (a rank other
 * than 0 logs warnings only), so the lines logged before it (the data line) look like the rest.
 * The world size is OMPI_COMM_WORLD_SIZE or SLURM_NTASKS; unknown counts as several. */
static void log_as_launched_rank(void) {
    static const char *const ranks[] = {"OMPI_COMM_WORLD_RANK", "PMIX_RANK", "SLURM_PROCID"};
    static const char *const sizes[] = {"OMPI_COMM_WORLD_SIZE", "SLURM_NTASKS"};
    const char *rank = NULL, *size = NULL;
    for (size_t i = 0; i < sizeof(ranks) / sizeof(ranks[0]) && rank == NULL; i++)
        rank = getenv(ranks[i]);
    for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]) && size == NULL; i++)
        size = getenv(sizes[i]);
    if (rank == NULL || (size != NULL && strcmp(size, "1") == 0))
        return;
    char prefix[32];
    snprintf(prefix, sizeof(prefix), "[rank %.12s] ", rank);
    ts_log_set_prefix(prefix);
    if (strcmp(rank, "0") != 0 && getenv("TS_LOG") == NULL)
        ts_log_set_level(TS_LOG_WARN);
}

int ts_cmd_train(int argc, char **argv) {
    static struct ts_train_flags flags;        /* adopted strings live here until the run ends */
    const double t_launch = ts_launch_now_s(); /* --walltime counts from here */
    bool help = false;
    if (ts_train_flags_parse(&flags, argc, argv, 2, &help) != TS_OK)
        return ts_launch_fail("train", TS_EXIT_USAGE);
    if (help) {
        ts_train_flags_print_help(usage, description);
        return TS_EXIT_OK;
    }
    /* before the world exists, only the launcher's rank 0 logs (the data line, once, prefixed) */
    log_as_launched_rank();
    if ((flags.v.data != NULL &&
         ts_data_vocab(flags.v.data, ts_train_flags_given(&flags, "vocab-size"), false,
                       &flags.v.vocab_size) != TS_OK) ||
        ts_train_settings_check(&flags) != TS_OK)
        return ts_launch_fail("train", TS_EXIT_USAGE);
    if (flags.v.check_world > 0)
        return ts_train_check(&flags, flags.v.check_world);
    return train(&flags, &argc, &argv, t_launch);
}
