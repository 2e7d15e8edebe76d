/* bench_collectives.c: MPI collective bandwidth in the manner of nccl-tests.
 *
 * For each size from 1 KB to 256 MB (x4 steps) and each of all-reduce, reduce-scatter and
 * all-gather (the communicator's non-blocking forms the trainer uses, waited at once), plus the
 * blocking all-reduce for comparison (Open MPI's tuned blocking collectives and its libnbc
 * non-blocking ones choose different algorithms): fill, warm up, time
 * `iters` repetitions, check the result exactly (small integers in floats), and print one JSON
 * line on rank 0 with the median time, algbw = bytes / time and busbw = algbw x the ring factor
 * (2(n-1)/n for all-reduce, (n-1)/n for the others), which compares across rank counts.
 * `--dtype bf16` moves bf16 elements instead (values stay small integers, exact in bf16): MPI
 * has no bf16, so its sums run our user-defined op, and the all-gather is a 2-byte copy.
 * `--transport nccl` moves device buffers of the CUDA backend (one GPU per rank, by local rank)
 * over the NCCL communicator the trainer uses (comm_nccl.c in the plug-in, created over the MPI
 * world); fill and check stay on the host, outside the timed region, and a timed operation ends
 * when `wait` has seen NCCL's completion event, as the trainer's does. It needs one GPU per rank
 * and a libnccl.so.2 (2.18 or newer); NCCL refuses two ranks on one GPU.
 *
 *   mpirun -np N bench_collectives [--max-mb M] [--iters K] [--dtype f32|bf16]
 *                                  [--transport mpi|nccl] */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/utsname.h>
#include <time.h>

#include "bench_util.h"
#include "comm/comm_mpi.h"
#include "comm/comm_nccl.h"
#include "kernels/backend_load.h"
#include "kernels/bf16.h"

enum op { ALL_REDUCE, REDUCE_SCATTER, ALL_GATHER, ALL_REDUCE_BLOCKING, NUM_OPS };
static const char *op_names[] = {"all_reduce", "reduce_scatter", "all_gather",
                                 "all_reduce_blocking"};

static void fill(float *x, int64_t n, int rank, enum op op, const int *displs, const int *counts) {
    if (op == ALL_GATHER) {
        for (int64_t i = 0; i < n; i++)
            x[i] = -1.0f;
        for (int64_t i = displs[rank]; i < displs[rank] + counts[rank]; i++)
            x[i] = (float)(rank + 1);
        return;
    }
    for (int64_t i = 0; i < n; i++)
        x[i] = (float)((rank + 1) * (i % 5 + 1));
}

/* The result of one fill + collective, exactly. */
static int check(const float *x, int rank, int P, enum op op, const int *displs,
                 const int *counts) {
    const float tri = (float)(P * (P + 1) / 2);
    if (op == ALL_GATHER) {
        for (int r = 0; r < P; r++)
            for (int64_t i = displs[r]; i < displs[r] + counts[r]; i++)
                if (x[i] != (float)(r + 1))
                    return 0;
        return 1;
    }
    const int64_t from = op == REDUCE_SCATTER ? displs[rank] : 0; /* all-reduce: everything */
    const int64_t to =
        op == REDUCE_SCATTER ? displs[rank] + counts[rank] : displs[P - 1] + counts[P - 1];
    for (int64_t i = from; i < to; i++)
        if (x[i] != tri * (float)(i % 5 + 1))
            return 0;
    return 1;
}

/* The values to and from the buffer in its dtype (outside the timed region). */
static void to_buf(void *buf, const float *x, int64_t n, enum ts_dtype dtype) {
    if (dtype == TS_DTYPE_F32) {
        memcpy(buf, x, (size_t)n * sizeof(float));
        return;
    }
    uint16_t *h = buf;
    for (int64_t i = 0; i < n; i++)
        h[i] = ts_bf16_from_f32(x[i]);
}

static void from_buf(float *x, const void *buf, int64_t n, enum ts_dtype dtype) {
    if (dtype == TS_DTYPE_F32) {
        memcpy(x, buf, (size_t)n * sizeof(float));
        return;
    }
    const uint16_t *h = buf;
    for (int64_t i = 0; i < n; i++)
        x[i] = ts_f32_from_bf16(h[i]);
}

/* be: the CUDA backend whose device memory t is in (NCCL), NULL for host memory (MPI). */
static ts_status run_op(ts_comm_t *c, struct ts_backend *be, enum op op, struct ts_tensor *t,
                        const int *counts, const int *displs) {
    struct ts_comm_req req = {0};
    if (op == ALL_REDUCE_BLOCKING)
        return ts_comm_all_reduce(c, be, t, TS_REDUCE_SUM, NULL);
    if (op == ALL_REDUCE)
        TS_CHECK(ts_comm_all_reduce_start(c, be, t, NULL, &req));
    else if (op == REDUCE_SCATTER)
        TS_CHECK(ts_comm_reduce_scatter_start(c, be, t, counts, NULL, &req));
    else
        TS_CHECK(ts_comm_all_gather_start(c, be, t, counts, displs, NULL, &req));
    return ts_comm_wait(c, &req);
}

/* The NCCL communicator over world on the GPU of this rank's local rank, and a device buffer. */
static ts_status open_nccl(ts_comm_t *world, double timeout_s, size_t bytes, struct ts_backend **be,
                           ts_comm_t **nc, void **dbuf) {
    const struct ts_cuda_options o = {.device = ts_comm_local_rank(world)};
    TS_CHECK(ts_cuda_backend_create(be, &o));
    const struct ts_nccl_options no = {.timeout_s = timeout_s};
    TS_CHECK(ts_comm_nccl_create(nc, world, *be, &no));
    return (*be)->alloc(*be, bytes, dbuf);
}

int main(int argc, char **argv) {
    ts_comm_t *c = NULL;
    if (ts_comm_mpi_create_world(&c, &argc, &argv) != TS_OK) {
        fprintf(stderr, "bench_collectives: %s\n", ts_last_error());
        return 1;
    }
    double max_mb = 256;
    int iters_arg = 0;
    enum ts_dtype dtype = TS_DTYPE_F32;
    int nccl = 0;
    double timeout_s = 300;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (strcmp(argv[i], "--max-mb") == 0)
            max_mb = atof(argv[i + 1]);
        else if (strcmp(argv[i], "--iters") == 0)
            iters_arg = atoi(argv[i + 1]);
        else if (strcmp(argv[i], "--dtype") == 0)
            dtype = strcmp(argv[i + 1], "bf16") == 0 ? TS_DTYPE_BF16 : TS_DTYPE_F32;
        else if (strcmp(argv[i], "--transport") == 0)
            nccl = strcmp(argv[i + 1], "nccl") == 0;
        else if (strcmp(argv[i], "--comm-timeout") == 0)
            timeout_s = atof(argv[i + 1]);
    }
    const int64_t esize = (int64_t)ts_dtype_size(dtype);
    const int rank = ts_comm_rank(c), P = ts_comm_size(c);
    struct utsname un;
    uname(&un);
    const int64_t max_bytes = (int64_t)(max_mb * 1024 * 1024);
    void *buf = malloc((size_t)max_bytes); /* host: the MPI buffer, or NCCL's staging copy */
    struct ts_backend *be = NULL;
    ts_comm_t *nc = NULL;
    void *dbuf = NULL;
    if (nccl && open_nccl(c, timeout_s, (size_t)max_bytes, &be, &nc, &dbuf) != TS_OK) {
        fprintf(stderr, "[rank %d] bench_collectives --transport nccl: %s\n", rank,
                ts_last_error());
        ts_comm_abort(c, 1);
        return 1;
    }
    ts_comm_t *cc = nccl ? nc : c;                                     /* the communicator timed */
    float *vals = malloc((size_t)(max_bytes / esize) * sizeof(float)); /* fill and check */
    int *counts = malloc(sizeof(int) * (size_t)P), *displs = malloc(sizeof(int) * (size_t)P);
    int bad = 0;
    for (int64_t bytes = 1024; bytes <= max_bytes; bytes *= 4) {
        const int64_t n = bytes / esize;
        for (int r = 0; r < P; r++) {
            displs[r] = (int)(n * r / P);
            counts[r] = (int)(n * (r + 1) / P - n * r / P);
        }
        struct ts_tensor t = ts_tensor_1d(nccl ? dbuf : buf, dtype, n);
        const int iters = iters_arg > 0 ? iters_arg : bytes >= (64 << 20) ? 5 : 20;
        for (int o = 0; o < NUM_OPS; o++) {
            const enum op op = (enum op)o;
            double *times = malloc(sizeof(double) * (size_t)iters);
            int correct = 1;
            for (int it = -2; it < iters; it++) { /* two warm-ups */
                fill(vals, n, rank, op, displs, counts);
                to_buf(buf, vals, n, dtype);
                if ((nccl && be->copy_h2d(be, dbuf, buf, (size_t)bytes) != TS_OK) ||
                    ts_comm_barrier(c) != TS_OK) {
                    fprintf(stderr, "[rank %d] %s\n", rank, ts_last_error());
                    return 1;
                }
                const double t0 = ts_bench_now_s();
                if (run_op(cc, be, op, &t, counts, displs) != TS_OK) {
                    fprintf(stderr, "[rank %d] %s\n", rank, ts_last_error());
                    return 1;
                }
                const double dt = ts_bench_now_s() - t0;
                if (nccl && be->copy_d2h(be, buf, dbuf, (size_t)bytes) != TS_OK) {
                    fprintf(stderr, "[rank %d] %s\n", rank, ts_last_error());
                    return 1;
                }
                from_buf(vals, buf, n, dtype);
                correct &= check(vals, rank, P, op, displs, counts);
                if (it >= 0)
                    times[it] = dt;
            }
            /* Each rank's slowest view counts: the collective ends when the last rank ends. */
            double all_ok = correct;
            double med = ts_bench_median(times, iters);
            if (ts_comm_all_reduce_host(c, &all_ok, 1, TS_REDUCE_SUM) != TS_OK ||
                ts_comm_all_reduce_host(c, &med, 1, TS_REDUCE_MAX) != TS_OK)
                return 1;
            const double algbw = (double)bytes / med / 1e9;
            const double factor = op == ALL_REDUCE || op == ALL_REDUCE_BLOCKING
                                      ? 2.0 * (P - 1) / P
                                      : (double)(P - 1) / P;
            if (all_ok != P)
                bad++;
            if (rank == 0)
                printf("{\"bench\":\"collective\",\"op\":\"%s\",\"dtype\":\"%s\",\"ranks\":%d,"
                       "\"bytes\":%lld,\"iters\":%d,\"time_us\":%.1f,\"algbw_GBps\":%.3f,"
                       "\"busbw_GBps\":%.3f,\"correct\":%s,\"machine\":\"%s\","
                       "\"transport\":\"%s\"}\n",
                       op_names[o], ts_dtype_name(dtype), P, (long long)bytes, iters, med * 1e6,
                       algbw, algbw * factor, all_ok == P ? "true" : "false", un.nodename,
                       nccl ? "nccl" : "mpi ob1/vader");
            fflush(stdout);
            free(times);
        }
    }
    if (nccl) {
        ts_comm_destroy(nc);
        be->free(be, dbuf);
        ts_backend_destroy(be);
    }
    free(buf);
    free(vals);
    free(counts);
    free(displs);
    ts_comm_destroy(c);
    return bad == 0 ? 0 : 1;
}
