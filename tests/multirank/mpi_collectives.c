/* mpi_collectives.c: the MPI communicator's collectives checked under a real mpirun.
 *
 * Not a Criterion test itself (Criterion forks each test; MPI_Init must run once in a process
 * that mpirun started): test_multirank.c launches it with -np 2, 3 and 4. Values are small
 * integers in floats, so every sum is exact and compared with ==. Sizes are odd and parts
 * uneven (some empty) to catch offset mistakes. Exits 0 with "collectives: ok" on rank 0. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "comm/comm_mpi.h"
#include "comm/grid.h"

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
        OK(ts_comm_all_reduce_start(c, &t, &req));
        bool done = false;
        for (int spins = 0; !done && spins < 1000000; spins++)
            OK(ts_comm_test(c, &req, &done));
        OK(ts_comm_wait(c, &req));
    } else {
        OK(ts_comm_all_reduce(c, NULL, &t, TS_REDUCE_SUM));
    }
    const float tri = (float)(P * (P + 1) / 2);
    for (int64_t i = 0; i < n; i++)
        EXPECT(x[i] == tri * (float)(i % 7 + 1), "all_reduce n=%lld [%lld] = %g", (long long)n,
               (long long)i, (double)x[i]);
    /* avg and max */
    for (int64_t i = 0; i < n; i++)
        x[i] = (float)(rank * 2);
    OK(ts_comm_all_reduce(c, NULL, &t, TS_REDUCE_AVG));
    EXPECT(x[n - 1] == (float)(P - 1), "avg = %g", (double)x[n - 1]);
    for (int64_t i = 0; i < n; i++)
        x[i] = (float)rank;
    OK(ts_comm_all_reduce(c, NULL, &t, TS_REDUCE_MAX));
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
    OK(ts_comm_reduce_scatter_start(c, &t, counts, &req));
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
    OK(ts_comm_all_gather_start(c, &t, counts, displs, &req));
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
