/* mpi_collectives.c: the MPI communicator's collectives checked under a real mpirun.
 *
 * Not a Criterion test itself (Criterion forks each test; MPI_Init must run once in a process
 * that mpirun started): test_multirank.c launches it with -np 2, 3 and 4. Values are small
 * integers in floats, so every sum is exact and compared with ==. Sizes are odd and parts
 * uneven (some empty) to catch offset mistakes. bf16 buffers go through the same collectives: the
 * all-gather must copy every bit pattern, sums of small integers are exact in bf16 too, and one
 * sum that must round checks that the user-defined sum rounds per addition. A buffer of a device
 * backend is refused; a ready event is waited on with the backend's event_sync. Exits 0 with
 * "collectives: ok" on rank 0. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "comm/comm_mpi.h"
#include "comm/grid.h"
#include "kernels/bf16.h"

static int failures;

#define EXPECT(cond, ...)                                                                          \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            if (failures++ < 10) {                                                                 \
                fprintf(stderr, "[rank %d] %s:%d: ", rank, __FILE__, __LINE__);                    \
                fprintf(stderr, __VA_ARGS__);                                                      \
                fputc('\n', stderr);                                                               \
            }                                                                                      \
        }                                                                                          \
    } while (0)

#define OK(expr) EXPECT((expr) == TS_OK, "%s: %s", #expr, ts_last_error())

/* A host buffer as a 1-D f32 tensor. */
static struct ts_tensor host_f32(float *data, int64_t n) {
    return ts_tensor_1d(data, TS_DTYPE_F32, n);
}

static void check_all_reduce(ts_comm_t *c, int64_t n, bool nonblocking) {
    const int rank = ts_comm_rank(c), P = ts_comm_size(c);
    float *x = malloc((size_t)n * sizeof(float));
    for (int64_t i = 0; i < n; i++)
        x[i] = (float)((rank + 1) * (i % 7 + 1));
    struct ts_tensor t = host_f32(x, n);
    if (nonblocking) {
        struct ts_comm_req req = {0};
        OK(ts_comm_all_reduce_start(c, NULL, &t, NULL, &req));
        bool done = false;
        for (int spins = 0; !done && spins < 1000000; spins++)
            OK(ts_comm_test(c, &req, &done));
        OK(ts_comm_wait(c, &req));
    } else {
        OK(ts_comm_all_reduce(c, NULL, &t, TS_REDUCE_SUM, NULL));
    }
    const float tri = (float)(P * (P + 1) / 2);
    for (int64_t i = 0; i < n; i++)
        EXPECT(x[i] == tri * (float)(i % 7 + 1), "all_reduce n=%lld [%lld] = %g", (long long)n,
               (long long)i, (double)x[i]);
    /* avg and max */
    for (int64_t i = 0; i < n; i++)
        x[i] = (float)(rank * 2);
    OK(ts_comm_all_reduce(c, NULL, &t, TS_REDUCE_AVG, NULL));
    EXPECT(x[n - 1] == (float)(P - 1), "avg = %g", (double)x[n - 1]);
    for (int64_t i = 0; i < n; i++)
        x[i] = (float)rank;
    OK(ts_comm_all_reduce(c, NULL, &t, TS_REDUCE_MAX, NULL));
    EXPECT(x[0] == (float)(P - 1), "max = %g", (double)x[0]);
    free(x);
}

/* Parts: rank r gets base + r (uneven), rank 1 (if any) gets nothing when `empty`. */
static void make_counts(int P, int base, bool empty, int *counts, int *displs, int64_t *total) {
    int64_t off = 0;
    for (int r = 0; r < P; r++) {
        counts[r] = empty && r == 1 ? 0 : base + r;
        displs[r] = (int)off;
        off += counts[r];
    }
    *total = off;
}

static void check_reduce_scatter_all_gather(ts_comm_t *c, int base, bool empty) {
    const int rank = ts_comm_rank(c), P = ts_comm_size(c);
    int counts[64], displs[64];
    int64_t n;
    make_counts(P, base, empty, counts, displs, &n);
    float *x = malloc((size_t)(n > 0 ? n : 1) * sizeof(float));
    for (int64_t i = 0; i < n; i++)
        x[i] = (float)((rank + 1) * (i % 13 + 1));
    struct ts_tensor t = host_f32(x, n);
    struct ts_comm_req req = {0};
    OK(ts_comm_reduce_scatter_start(c, NULL, &t, counts, NULL, &req));
    OK(ts_comm_wait(c, &req));
    const float tri = (float)(P * (P + 1) / 2);
    for (int64_t i = displs[rank]; i < displs[rank] + counts[rank]; i++)
        EXPECT(x[i] == tri * (float)(i % 13 + 1), "reduce_scatter base %d [%lld] = %g", base,
               (long long)i, (double)x[i]);
    /* all-gather: my part is rank*100000 + i; everything else is garbage before. */
    for (int64_t i = 0; i < n; i++)
        x[i] = -1.0f;
    for (int64_t i = displs[rank]; i < displs[rank] + counts[rank]; i++)
        x[i] = (float)(rank * 100000 + i);
    OK(ts_comm_all_gather_start(c, NULL, &t, counts, displs, NULL, &req));
    bool done = false;
    for (int spins = 0; !done && spins < 1000000; spins++)
        OK(ts_comm_test(c, &req, &done));
    OK(ts_comm_wait(c, &req));
    for (int r = 0; r < P; r++)
        for (int64_t i = displs[r]; i < displs[r] + counts[r]; i++)
            EXPECT(x[i] == (float)(r * 100000 + i), "all_gather base %d [%lld] = %g", base,
                   (long long)i, (double)x[i]);
    free(x);
}

static uint16_t pattern(int64_t i, int rank) {
    return (uint16_t)(((uint64_t)i * 2654435761u >> 7) ^ (uint64_t)rank);
}

/* bf16: sums of small integers (exact), the avg and max, a reduce-scatter, and an all-gather of
 * arbitrary bit patterns (a copy, so NaNs and denormals must arrive untouched). */
static void check_bf16(ts_comm_t *c, int64_t n) {
    const int rank = ts_comm_rank(c), P = ts_comm_size(c);
    uint16_t *x = malloc((size_t)n * sizeof(uint16_t));
    struct ts_tensor t = ts_tensor_1d(x, TS_DTYPE_BF16, n);
    const float tri = (float)(P * (P + 1) / 2);
    for (int nb = 0; nb < 2; nb++) {
        for (int64_t i = 0; i < n; i++)
            x[i] = ts_bf16_from_f32((float)((rank + 1) * (i % 7 + 1)));
        if (nb) {
            struct ts_comm_req req = {0};
            OK(ts_comm_all_reduce_start(c, NULL, &t, NULL, &req));
            OK(ts_comm_wait(c, &req));
        } else {
            OK(ts_comm_all_reduce(c, NULL, &t, TS_REDUCE_SUM, NULL));
        }
        for (int64_t i = 0; i < n; i++)
            EXPECT(ts_f32_from_bf16(x[i]) == tri * (float)(i % 7 + 1),
                   "bf16 all_reduce n=%lld [%lld] = %g", (long long)n, (long long)i,
                   (double)ts_f32_from_bf16(x[i]));
    }
    /* A sum that must round: 1 + 3 * 2^-9 lies between the bf16 neighbours 1 and 1 + 2^-7 and
     * rounds to the nearer, 1 + 2^-7 (truncating would give 1). The other ranks add zeros, so
     * the result does not depend on MPI's order. */
    x[0] = ts_bf16_from_f32(rank == 0 ? 1.0f : rank == 1 ? 3.0f / 512.0f : 0.0f);
    struct ts_tensor one = ts_tensor_1d(x, TS_DTYPE_BF16, 1);
    OK(ts_comm_all_reduce(c, NULL, &one, TS_REDUCE_SUM, NULL));
    EXPECT(ts_f32_from_bf16(x[0]) == 1.0f + 1.0f / 128.0f, "bf16 rounded sum = %.9g",
           (double)ts_f32_from_bf16(x[0]));
    for (int64_t i = 0; i < n; i++)
        x[i] = ts_bf16_from_f32((float)(rank * 2));
    OK(ts_comm_all_reduce(c, NULL, &t, TS_REDUCE_AVG, NULL));
    EXPECT(ts_f32_from_bf16(x[n - 1]) == (float)(P - 1), "bf16 avg = %g",
           (double)ts_f32_from_bf16(x[n - 1]));
    for (int64_t i = 0; i < n; i++)
        x[i] = ts_bf16_from_f32((float)rank - 0.5f);
    OK(ts_comm_all_reduce(c, NULL, &t, TS_REDUCE_MAX, NULL));
    EXPECT(ts_f32_from_bf16(x[0]) == (float)(P - 1) - 0.5f, "bf16 max = %g",
           (double)ts_f32_from_bf16(x[0]));

    /* Reduce-scatter over uneven parts, then the all-gather of raw bit patterns. */
    int counts[64], displs[64];
    int64_t total = 0;
    for (int r = 0; r < P; r++) {
        counts[r] = (int)(n / P) + r;
        displs[r] = (int)total;
        total += counts[r];
    }
    uint16_t *y = malloc((size_t)total * sizeof(uint16_t));
    struct ts_tensor u = ts_tensor_1d(y, TS_DTYPE_BF16, total);
    for (int64_t i = 0; i < total; i++)
        y[i] = ts_bf16_from_f32((float)((rank + 1) * (i % 13 + 1)));
    OK(ts_comm_reduce_scatter(c, NULL, &u, counts, NULL));
    for (int64_t i = displs[rank]; i < displs[rank] + counts[rank]; i++)
        EXPECT(ts_f32_from_bf16(y[i]) == tri * (float)(i % 13 + 1),
               "bf16 reduce_scatter [%lld] = %g", (long long)i, (double)ts_f32_from_bf16(y[i]));
    for (int64_t i = 0; i < total; i++)
        y[i] = 0xdead;
    for (int64_t i = displs[rank]; i < displs[rank] + counts[rank]; i++)
        y[i] = pattern(i, rank); /* NaNs, denormals, anything */
    OK(ts_comm_all_gather(c, NULL, &u, counts, displs, NULL));
    for (int r = 0; r < P; r++)
        for (int64_t i = displs[r]; i < displs[r] + counts[r]; i++)
            EXPECT(y[i] == pattern(i, r), "bf16 all_gather [%lld] = 0x%04x", (long long)i, y[i]);
    free(x);
    free(y);
}

/* The host memory contract: a device backend's buffer is refused with a message, and a ready
 * event is waited on with the backend's event_sync (a host wait on that event) before posting. */
static int syncs;
static ts_status count_sync(struct ts_backend *be, ts_event_t *ev) {
    (void)be;
    (void)ev;
    syncs++;
    return TS_OK;
}

static void check_memory_and_events(ts_comm_t *c) {
    const int rank = ts_comm_rank(c), P = ts_comm_size(c);
    float x[3] = {1, 2, 3};
    struct ts_tensor t = host_f32(x, 3);
    struct ts_backend device = {.name = "gpu", .host_memory = false, .event_sync = count_sync};
    struct ts_backend host = {.name = "hostmem", .host_memory = true, .event_sync = count_sync};
    struct ts_comm_req req = {0};
    EXPECT(ts_comm_all_reduce_start(c, &device, &t, NULL, &req) == TS_ERR_UNSUPPORTED,
           "a device buffer was accepted");
    EXPECT(strstr(ts_last_error(), "NCCL") != NULL, "message: %s", ts_last_error());
    EXPECT(!req.active, "a refused post left the request active");
    ts_event_t *ev = (ts_event_t *)&host; /* count_sync ignores it */
    syncs = 0;
    OK(ts_comm_all_reduce_start(c, &host, &t, ev, &req));
    EXPECT(syncs == 1, "event_sync called %d times before the post", syncs);
    OK(ts_comm_wait(c, &req));
    EXPECT(x[2] == 3.0f * (float)P, "sum after an event = %g", (double)x[2]);
}

static void check_small(ts_comm_t *c) {
    const int rank = ts_comm_rank(c), P = ts_comm_size(c);
    double d[2] = {rank, 1.0};
    OK(ts_comm_all_reduce_host(c, d, 2, TS_REDUCE_SUM));
    EXPECT(d[0] == P * (P - 1) / 2.0 && d[1] == P, "all_reduce_host %g %g", d[0], d[1]);
    char msg[32] = {0};
    if (rank == P - 1)
        snprintf(msg, sizeof(msg), "from the last rank");
    OK(ts_comm_broadcast_host(c, msg, sizeof(msg), P - 1));
    EXPECT(strcmp(msg, "from the last rank") == 0, "broadcast got '%s'", msg);
    uint64_t all[64];
    OK(ts_comm_all_gather_u64(c, (uint64_t)rank * 3, all));
    for (int r = 0; r < P; r++)
        EXPECT(all[r] == (uint64_t)r * 3, "all_gather_u64[%d] = %llu", r,
               (unsigned long long)all[r]);
    OK(ts_comm_barrier(c));
}

static void check_grid(ts_comm_t *world) {
    const int rank = ts_comm_rank(world), P = ts_comm_size(world);
    struct ts_grid g;
    OK(ts_grid_init(&g, world, 1));
    EXPECT(g.dp_size == P && g.tp_size == 1 && ts_comm_size(g.dp) == P, "grid tp=1");
    ts_grid_deinit(&g);
    if (P % 2 != 0)
        return;
    OK(ts_grid_init(&g, world, 2));
    EXPECT(g.dp_size == P / 2 && ts_comm_rank(g.tp) == rank % 2, "grid tp=2 layout");
    /* A dp group sums only its own members: ranks with the same rank % 2. */
    double v = rank;
    OK(ts_comm_all_reduce_host(g.dp, &v, 1, TS_REDUCE_SUM));
    double want = 0;
    for (int r = rank % 2; r < P; r += 2)
        want += r;
    EXPECT(v == want, "dp group sum %g, want %g", v, want);
    ts_grid_deinit(&g);
}

int main(int argc, char **argv) {
    ts_comm_t *world = NULL;
    if (ts_comm_mpi_create_world(&world, &argc, &argv) != TS_OK) {
        fprintf(stderr, "mpi_collectives: %s\n", ts_last_error());
        return 1;
    }
    const int rank = ts_comm_rank(world);
    EXPECT(ts_comm_size(world) <= 64, "too many ranks for this test");
    const int64_t sizes[] = {1, 7, 1023, 65537, 1 << 20};
    for (size_t k = 0; k < sizeof(sizes) / sizeof(sizes[0]); k++) {
        check_all_reduce(world, sizes[k], false);
        check_all_reduce(world, sizes[k], true);
    }
    const int bases[] = {0, 1, 5, 4097};
    for (size_t k = 0; k < sizeof(bases) / sizeof(bases[0]); k++) {
        check_reduce_scatter_all_gather(world, bases[k], false);
        check_reduce_scatter_all_gather(world, bases[k], true);
    }
    const int64_t bf16_sizes[] = {1, 1023, 65537};
    for (size_t k = 0; k < sizeof(bf16_sizes) / sizeof(bf16_sizes[0]); k++)
        check_bf16(world, bf16_sizes[k]);
    check_memory_and_events(world);
    check_small(world);
    check_grid(world);
    double bad = failures;
    if (ts_comm_all_reduce_host(world, &bad, 1, TS_REDUCE_SUM) != TS_OK)
        bad = 1;
    if (rank == 0)
        printf(bad == 0 ? "collectives: ok on %d ranks\n" : "collectives: FAILED on %d ranks\n",
               ts_comm_size(world));
    ts_comm_destroy(world);
    return bad == 0 ? 0 : 1;
}
