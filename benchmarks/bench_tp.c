/* bench_tp.c: tensor parallelism on the CPU backend: speed, bytes on the tp group, memory.
 *
 * Run under `mpirun -np W bench_tp --tp N` (N divides W; dp = W / N): every layout trains the
 * same model on the same global batch (batch = global / dp per rank, grad-accum 1), so tokens/s
 * across tp compare the same work. Per step it reads what each rank handed its tp group
 * (ts_gpt_tp_traffic) and checks it against Megatron's count for this model: per micro-batch
 * (4L + 2) all-reduces of (B,T,C) (two per layer forward, two backward, the vocabulary-parallel
 * embedding's and the classifier input gradient's) and 3 B*T floats for the cross-entropy's row
 * max and (sum of exponentials, target logit). A ring all-reduce moves 2 (tp-1)/tp of its payload
 * in and out of each rank: reported as bus bytes. It also reports each rank's memory: parameters,
 * gradients, AdamW's moments (2 f32 per parameter at ZeRO 0) and the activation arena, with the
 * logits' share. Checks its result: the counted bytes equal the formula and the losses are
 * finite (tp_bench.sh compares them across layouts). Rank 0 prints one JSON line.
 *
 *   mpirun -np W bench_tp --tp N [--layers L] [--channels C] [--heads NH] [--vocab V] [--seq T]
 *                         [--global-batch G] [--steps S] */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/utsname.h>
#include <unistd.h>

#include "bench_util.h"
#include "comm/comm_mpi.h"
#include "comm/grid.h"
#include "kernels/cpu/cpu_backend.h"
#include "kernels/rng.h"
#include "trainer/train.h"

struct args {
    int tp, layers, channels, heads, vocab, seq, global_batch, steps;
};

struct result {
    double tok_per_s, step_ms, first_loss, last_loss;
    int64_t tp_bytes, tp_calls; /* per step, this rank */
    int64_t param_bytes, grad_bytes, optim_bytes, act_bytes, logits_bytes;
};

static ts_status run(struct ts_grid *grid, const struct args *a, const char *shard, int threads,
                     struct result *out) {
    const int B = a->global_batch / grid->dp_size;
    struct ts_backend *be = NULL;
    ts_loader_t *loader = NULL;
    ts_gpt_t *gpt = NULL;
    ts_trainer_t *tr = NULL;
    double *tps = calloc((size_t)a->steps, sizeof(double));
    double *ms = calloc((size_t)a->steps, sizeof(double));
    ts_status st;
    struct ts_cpu_options opt = {.threads = threads, .blas = TS_BLAS_AUTO};
    TS_CHECK_GOTO(ts_cpu_backend_create(&be, &opt), st, exit);
    TS_CHECK_GOTO(ts_loader_create(&loader, shard, a->seq, a->vocab), st, exit);
    struct ts_gpt_config mc = {.max_seq_len = a->seq,
                               .vocab_size = a->vocab,
                               .num_layers = a->layers,
                               .num_heads = a->heads,
                               .channels = a->channels};
    const struct ts_gpt_tp tp = ts_trainer_tp(grid->tp_size > 1 ? grid->tp : NULL);
    TS_CHECK_GOTO(ts_gpt_create_tp(&gpt, &mc, be, B, a->seq, &tp), st, exit);
    TS_CHECK_GOTO(ts_gpt_init(gpt, 1), st, exit);
    struct ts_train_config tc = {
        .batch = B,
        .seq_len = a->seq,
        .grad_accum = 1,
        .lr = {.max_lr = 1e-3f, .warmup = 0, .total = a->steps + 2, .min_lr_frac = 1.0f},
        .adamw = ts_adamw_defaults(),
        .tp = grid->tp_size > 1 ? grid->tp : NULL,
    };
    TS_CHECK_GOTO(ts_trainer_create(&tr, gpt, loader, grid->dp, &tc), st, exit);
    for (int s = -2; s < a->steps; s++) {
        int64_t calls0, bytes0, calls1, bytes1;
        ts_gpt_tp_traffic(gpt, &calls0, &bytes0);
        struct ts_step_record rec;
        TS_CHECK_GOTO(ts_trainer_step(tr, &rec), st, exit);
        ts_gpt_tp_traffic(gpt, &calls1, &bytes1);
        out->tp_calls = calls1 - calls0;
        out->tp_bytes = bytes1 - bytes0;
        if (s == 0)
            out->first_loss = rec.loss;
        out->last_loss = rec.loss;
        if (s < 0)
            continue;
        double v = rec.step_ms; /* the slowest rank decides the step */
        TS_CHECK_GOTO(ts_comm_all_reduce_host(grid->world, &v, 1, TS_REDUCE_MAX), st, exit);
        ms[s] = v;
        tps[s] = (double)rec.tokens / (v * 1e-3);
    }
    out->tok_per_s = ts_bench_median(tps, a->steps);
    out->step_ms = ts_bench_median(ms, a->steps);
    out->param_bytes = (int64_t)ts_tensor_nbytes(ts_gpt_param_buffer(gpt));
    out->grad_bytes = (int64_t)ts_tensor_nbytes(ts_gpt_grad_buffer(gpt));
    out->optim_bytes = 2 * 4 * ts_gpt_num_params(gpt); /* AdamW m and v, f32, ZeRO 0 */
    out->act_bytes = ts_gpt_activation_bytes(gpt);
    struct ts_tensor logits;
    TS_CHECK_GOTO(ts_gpt_logits(gpt, &logits), st, exit);
    out->logits_bytes = (int64_t)ts_tensor_nbytes(&logits);
exit:
    ts_trainer_destroy(tr);
    ts_gpt_destroy(gpt);
    ts_loader_destroy(loader);
    ts_backend_destroy(be);
    free(tps);
    free(ms);
    return st;
}

static void parse(int argc, char **argv, struct args *a) {
    for (int i = 1; i + 1 < argc; i += 2) {
        int *dst = NULL;
        if (strcmp(argv[i], "--tp") == 0)
            dst = &a->tp;
        else if (strcmp(argv[i], "--layers") == 0)
            dst = &a->layers;
        else if (strcmp(argv[i], "--channels") == 0)
            dst = &a->channels;
        else if (strcmp(argv[i], "--heads") == 0)
            dst = &a->heads;
        else if (strcmp(argv[i], "--vocab") == 0)
            dst = &a->vocab;
        else if (strcmp(argv[i], "--seq") == 0)
            dst = &a->seq;
        else if (strcmp(argv[i], "--global-batch") == 0)
            dst = &a->global_batch;
        else if (strcmp(argv[i], "--steps") == 0)
            dst = &a->steps;
        if (dst != NULL)
            *dst = atoi(argv[i + 1]);
    }
}

int main(int argc, char **argv) {
    ts_comm_t *c = NULL;
    if (ts_comm_mpi_create_world(&c, &argc, &argv) != TS_OK) {
        fprintf(stderr, "bench_tp: %s\n", ts_last_error());
        return 1;
    }
    struct args a = {.tp = 1,
                     .layers = 4,
                     .channels = 256,
                     .heads = 4,
                     .vocab = 4096,
                     .seq = 128,
                     .global_batch = 8,
                     .steps = 6};
    parse(argc, argv, &a);
    const int rank = ts_comm_rank(c), W = ts_comm_size(c);
    if (a.tp < 1 || W % a.tp != 0 || a.global_batch % (W / a.tp) != 0 || a.heads % a.tp != 0 ||
        a.steps < 1) {
        if (rank == 0)
            fprintf(stderr,
                    "bench_tp: --tp %d must divide the %d ranks and --heads %d, and dp = %d "
                    "must divide --global-batch %d\n",
                    a.tp, W, a.heads, a.tp > 0 ? W / a.tp : 0, a.global_batch);
        ts_comm_destroy(c);
        return 2;
    }
    struct ts_grid grid;
    if (ts_grid_init(&grid, c, a.tp) != TS_OK) {
        fprintf(stderr, "bench_tp: %s\n", ts_last_error());
        ts_comm_abort(c, 1);
        return 1;
    }
    /* Rank 0 writes a shard of random tokens over the whole vocabulary; everyone reads it. */
    char shard[256] = {0};
    if (rank == 0) {
        snprintf(shard, sizeof(shard), "/tmp/tessera-bench-tp-%d.bin", (int)getpid());
        const int64_t n = (int64_t)a.seq * (a.global_batch * (a.steps + 4) + 1) + 1;
        uint16_t *tok = malloc((size_t)n * sizeof(uint16_t));
        for (int64_t i = 0; i < n; i++)
            tok[i] = (uint16_t)(ts_rng_u64(7, (uint64_t)i) % (uint64_t)a.vocab);
        if (ts_shard_write(shard, tok, n) != TS_OK)
            fprintf(stderr, "bench_tp: %s\n", ts_last_error());
        free(tok);
    }
    if (ts_comm_broadcast_host(c, shard, sizeof(shard), 0) != TS_OK)
        return 1;
    const int local = ts_comm_local_size(c);
    const long cores = sysconf(_SC_NPROCESSORS_ONLN);
    const int threads = cores > local ? (int)(cores / local) : 1;
    struct result r = {0};
    if (run(&grid, &a, shard, threads, &r) != TS_OK) {
        fprintf(stderr, "[rank %d] bench_tp: %s\n", rank, ts_last_error());
        ts_comm_abort(c, 1);
        return 1;
    }
    /* Megatron's count per micro-batch of B sequences on this rank (grad-accum 1). */
    const int64_t B = a.global_batch / grid.dp_size, BT = B * a.seq;
    const int64_t calls = a.tp > 1 ? 4LL * a.layers + 2 + 2 : 0;
    const int64_t formula = a.tp > 1 ? ((4LL * a.layers + 2) * BT * a.channels + 3 * BT) * 4 : 0;
    const double bus = (double)r.tp_bytes * 2.0 * (a.tp - 1) / a.tp;
    const bool ok = isfinite(r.last_loss) && r.tp_bytes == formula && r.tp_calls == calls;
    if (rank == 0) {
        struct utsname un;
        uname(&un);
        printf("{\"bench\":\"tp\",\"world\":%d,\"tp\":%d,\"dp\":%d,\"threads_per_rank\":%d,"
               "\"layers\":%d,\"channels\":%d,\"heads\":%d,\"vocab\":%d,\"seq\":%d,"
               "\"global_batch\":%d,\"tok_per_s\":%.0f,\"step_ms\":%.2f,"
               "\"tp_allreduces_per_step\":%lld,\"tp_bytes_per_step\":%lld,"
               "\"megatron_bytes_per_step\":%lld,\"tp_bus_bytes_per_step\":%.0f,"
               "\"param_bytes\":%lld,\"grad_bytes\":%lld,\"adamw_bytes\":%lld,"
               "\"activation_bytes\":%lld,\"logits_bytes\":%lld,\"first_loss\":%.6f,"
               "\"last_loss\":%.6f,\"traffic_matches_formula\":%s,\"machine\":\"%s\"}\n",
               W, a.tp, grid.dp_size, threads, a.layers, a.channels, a.heads, a.vocab, a.seq,
               a.global_batch, r.tok_per_s, r.step_ms, (long long)r.tp_calls, (long long)r.tp_bytes,
               (long long)formula, bus, (long long)r.param_bytes, (long long)r.grad_bytes,
               (long long)r.optim_bytes, (long long)r.act_bytes, (long long)r.logits_bytes,
               r.first_loss, r.last_loss, ok ? "true" : "false", un.nodename);
        unlink(shard);
    }
    if (!ok && rank == 0)
        fprintf(stderr,
                "bench_tp: counted %lld bytes in %lld all-reduces per step, Megatron's count "
                "is %lld in %lld\n",
                (long long)r.tp_bytes, (long long)r.tp_calls, (long long)formula, (long long)calls);
    ts_grid_deinit(&grid);
    ts_comm_destroy(c);
    return ok ? 0 : 1;
}
