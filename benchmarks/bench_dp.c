/* bench_dp.c: data-parallel scaling and the overlap of the gradient reduction.
 *
 * Run under `mpirun -np N` (N = 1, 2, 4...): every rank trains the same model on the same global
 * batch (batch = global / N per rank, grad-accum 1), so tokens/s across N compare the same work.
 * Each configuration runs twice: with the bucketed reduction overlapped with backward, and with
 * every bucket posted only after backward (--no-overlap). Per step, the exposed reduction time
 * is from the moment the LAST rank finished backward to the moment the last rank's last bucket
 * completed (ranks share a host, hence CLOCK_MONOTONIC), so waiting for a slower rank (skew on
 * a loaded machine) is not counted as communication. With no overlap that is the whole
 * reduction, so
 *     hidden fraction = 1 - exposed(overlap) / exposed(no overlap)   (medians).
 * Also reported: buckets already complete when backward ended (out of all buckets).
 * Checks its result: losses finite and equal between the two modes (the buckets are fixed).
 * Rank 0 prints one JSON line per mode and one summary line.
 *
 *   mpirun -np N bench_dp [--layers L] [--channels C] [--seq T] [--global-batch G] [--steps S]
 *                         [--bucket-mb M] */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/utsname.h>
#include <unistd.h>

#include "bench_util.h"
#include "comm/comm_mpi.h"
#include "kernels/cpu/cpu_backend.h"
#include "kernels/rng.h"
#include "trainer/train.h"

struct args {
    int layers, channels, seq, global_batch, steps;
    double bucket_mb;
};

struct result {
    double tok_per_s, step_ms, wait_ms, first_loss, last_loss, done_in_backward;
    int buckets;
};

static ts_status run(ts_comm_t *c, const struct args *a, const char *shard, bool overlap,
                     int threads, struct result *out) {
    const int P = ts_comm_size(c), B = a->global_batch / P;
    struct ts_backend *be = NULL;
    ts_loader_t *loader = NULL;
    ts_gpt_t *gpt = NULL;
    ts_trainer_t *tr = NULL;
    double *tps = calloc((size_t)a->steps, sizeof(double));
    double *ms = calloc((size_t)a->steps, sizeof(double));
    double *wait = calloc((size_t)a->steps, sizeof(double));
    double *done = calloc((size_t)a->steps, sizeof(double));
    ts_status st;
    struct ts_cpu_options opt = {.threads = threads, .blas = TS_BLAS_AUTO};
    TS_CHECK_GOTO(ts_cpu_backend_create(&be, &opt), st, exit);
    TS_CHECK_GOTO(ts_loader_create(&loader, shard, a->seq, 256), st, exit);
    struct ts_gpt_config mc = {.max_seq_len = a->seq,
                               .vocab_size = 256,
                               .num_layers = a->layers,
                               .num_heads = a->channels / 64 > 0 ? a->channels / 64 : 1,
                               .channels = a->channels};
    TS_CHECK_GOTO(ts_gpt_create(&gpt, &mc, be, B, a->seq), st, exit);
    TS_CHECK_GOTO(ts_gpt_init(gpt, 1), st, exit);
    struct ts_train_config tc = {
        .batch = B,
        .seq_len = a->seq,
        .grad_accum = 1,
        .lr = {.max_lr = 1e-3f, .warmup = 0, .total = a->steps + 2, .min_lr_frac = 1.0f},
        .adamw = ts_adamw_defaults(),
        .bucket_elems = (int64_t)(a->bucket_mb * 1024 * 1024 / 4),
        .no_overlap = !overlap,
    };
    TS_CHECK_GOTO(ts_trainer_create(&tr, gpt, loader, c, &tc), st, exit);
    for (int s = -2; s < a->steps; s++) {
        struct ts_step_record rec;
        TS_CHECK_GOTO(ts_trainer_step(tr, &rec), st, exit);
        if (s == 0)
            out->first_loss = rec.loss;
        out->last_loss = rec.loss;
        if (s < 0)
            continue;
        /* The slowest rank decides the step; exposure starts when the last backward ends. */
        double v[4] = {rec.step_ms, rec.backward_end_ms, rec.reduce_end_ms,
                       -(double)rec.buckets_done_in_backward};
        TS_CHECK_GOTO(ts_comm_all_reduce_host(c, v, 4, TS_REDUCE_MAX), st, exit);
        ms[s] = v[0];
        wait[s] = v[2] > v[1] ? v[2] - v[1] : 0.0;
        done[s] = -v[3]; /* the fewest buckets any rank saw complete during backward */
        tps[s] = (double)rec.tokens / (v[0] * 1e-3);
    }
    out->tok_per_s = ts_bench_median(tps, a->steps);
    out->step_ms = ts_bench_median(ms, a->steps);
    out->wait_ms = ts_bench_median(wait, a->steps);
    out->done_in_backward = ts_bench_median(done, a->steps);
    out->buckets = ts_trainer_num_buckets(tr);
exit:
    ts_trainer_destroy(tr);
    ts_gpt_destroy(gpt);
    ts_loader_destroy(loader);
    ts_backend_destroy(be);
    free(tps);
    free(ms);
    free(wait);
    free(done);
    return st;
}

int main(int argc, char **argv) {
    ts_comm_t *c = NULL;
    if (ts_comm_mpi_create_world(&c, &argc, &argv) != TS_OK) {
        fprintf(stderr, "bench_dp: %s\n", ts_last_error());
        return 1;
    }
    struct args a = {
        .layers = 4, .channels = 256, .seq = 128, .global_batch = 16, .steps = 8, .bucket_mb = 1.0};
    for (int i = 1; i + 1 < argc; i += 2) {
        if (strcmp(argv[i], "--layers") == 0)
            a.layers = atoi(argv[i + 1]);
        else if (strcmp(argv[i], "--channels") == 0)
            a.channels = atoi(argv[i + 1]);
        else if (strcmp(argv[i], "--seq") == 0)
            a.seq = atoi(argv[i + 1]);
        else if (strcmp(argv[i], "--global-batch") == 0)
            a.global_batch = atoi(argv[i + 1]);
        else if (strcmp(argv[i], "--steps") == 0)
            a.steps = atoi(argv[i + 1]);
        else if (strcmp(argv[i], "--bucket-mb") == 0)
            a.bucket_mb = atof(argv[i + 1]);
    }
    const int rank = ts_comm_rank(c), P = ts_comm_size(c);
    if (a.global_batch % P != 0) {
        if (rank == 0)
            fprintf(stderr, "bench_dp: --global-batch %d is not a multiple of %d ranks\n",
                    a.global_batch, P);
        ts_comm_destroy(c);
        return 2;
    }
    /* Rank 0 writes a shard of random bytes; everyone reads it. */
    char shard[256] = {0};
    if (rank == 0) {
        snprintf(shard, sizeof(shard), "/tmp/tessera-bench-dp-%d.bin", (int)getpid());
        const int64_t n = (int64_t)a.seq * (a.global_batch * (a.steps + 4) + 1) + 1;
        uint16_t *tok = malloc((size_t)n * sizeof(uint16_t));
        for (int64_t i = 0; i < n; i++)
            tok[i] = (uint16_t)(ts_rng_u64(7, (uint64_t)i) % 256);
        if (ts_shard_write(shard, tok, n) != TS_OK)
            fprintf(stderr, "bench_dp: %s\n", ts_last_error());
        free(tok);
    }
    if (ts_comm_broadcast_host(c, shard, sizeof(shard), 0) != TS_OK)
        return 1;
    const int local = ts_comm_local_size(c);
    const long cores = sysconf(_SC_NPROCESSORS_ONLN);
    const int threads = cores > local ? (int)(cores / local) : 1;
    struct result ov = {0}, after = {0};
    int code = 0;
    if (run(c, &a, shard, true, threads, &ov) != TS_OK ||
        run(c, &a, shard, false, threads, &after) != TS_OK) {
        fprintf(stderr, "[rank %d] bench_dp: %s\n", rank, ts_last_error());
        ts_comm_abort(c, 1);
        return 1;
    }
    const bool ok = isfinite(ov.last_loss) && ov.last_loss == after.last_loss &&
                    ov.first_loss == after.first_loss;
    if (rank == 0) {
        struct utsname un;
        uname(&un);
        /* One rank reduces nothing: no fraction to report. */
        char hidden[32] = "null";
        if (P > 1 && after.wait_ms > 0)
            snprintf(hidden, sizeof(hidden), "%.3f", 1.0 - ov.wait_ms / after.wait_ms);
        printf("{\"bench\":\"dp_scaling\",\"dp\":%d,\"threads_per_rank\":%d,\"layers\":%d,"
               "\"channels\":%d,\"seq\":%d,\"global_batch\":%d,\"bucket_mb\":%g,"
               "\"tok_per_s\":%.0f,\"step_ms\":%.2f,\"tok_per_s_no_overlap\":%.0f,"
               "\"step_ms_no_overlap\":%.2f,\"exposed_comm_ms\":%.3f,"
               "\"exposed_comm_ms_no_overlap\":%.3f,\"hidden_fraction\":%s,"
               "\"buckets\":%d,\"buckets_done_in_backward\":%.1f,"
               "\"losses_match\":%s,\"machine\":\"%s\"}\n",
               P, threads, a.layers, a.channels, a.seq, a.global_batch, a.bucket_mb, ov.tok_per_s,
               ov.step_ms, after.tok_per_s, after.step_ms, ov.wait_ms, after.wait_ms, hidden,
               ov.buckets, ov.done_in_backward, ok ? "true" : "false", un.nodename);
        unlink(shard);
    }
    if (!ok) {
        if (rank == 0)
            fprintf(stderr, "bench_dp: losses differ between overlap modes\n");
        code = 1;
    }
    ts_comm_destroy(c);
    return code;
}
