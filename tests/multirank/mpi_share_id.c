/* mpi_share_id.c: the NCCL id exchange (ts_comm_share_id) under a real mpirun, with a fake id
 * maker in place of ncclGetUniqueId (no GPU or NCCL needed): rank 0's bytes (random, different
 * every run) arrive identical on every rank, rank 0's maker is the only one called, and a maker
 * that fails on rank 0 fails every rank with rank 0's message. Exits 0 with "share id: ok" on
 * rank 0; test_multirank.c launches it with -np 2 and 3. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "comm/comm_mpi.h"
#include "comm/comm_nccl.h"

static int calls;

static ts_status fake_id(void *ctx, unsigned char *id, size_t bytes) {
    (void)ctx;
    calls++;
    srand((unsigned)time(NULL) ^ (unsigned)getpid());
    for (size_t i = 0; i < bytes; i++)
        id[i] = (unsigned char)(rand() & 0xff);
    return TS_OK;
}

static ts_status failing_id(void *ctx, unsigned char *id, size_t bytes) {
    (void)ctx;
    (void)id;
    (void)bytes;
    return ts_error(TS_ERR_UNSUPPORTED, "fake: no NCCL on this node");
}

static uint64_t fnv(const unsigned char *p, size_t n) {
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < n; i++) {
        h ^= p[i];
        h *= 1099511628211ull;
    }
    return h;
}

int main(int argc, char **argv) {
    ts_comm_t *w = NULL;
    if (ts_comm_mpi_create_world(&w, &argc, &argv) != TS_OK) {
        fprintf(stderr, "%s\n", ts_last_error());
        return 1;
    }
    const int rank = ts_comm_rank(w), n = ts_comm_size(w);
    int bad = 0;
    unsigned char id[TS_NCCL_ID_BYTES];
    memset(id, 0, sizeof id);
    if (ts_comm_share_id(w, fake_id, NULL, id, sizeof id) != TS_OK) {
        fprintf(stderr, "[rank %d] share_id: %s\n", rank, ts_last_error());
        bad++;
    }
    if (calls != (rank == 0 ? 1 : 0)) {
        fprintf(stderr, "[rank %d] the maker ran %d times\n", rank, calls);
        bad++;
    }
    uint64_t *all = calloc((size_t)n, sizeof *all);
    if (all == NULL || ts_comm_all_gather_u64(w, fnv(id, sizeof id), all) != TS_OK)
        return 1;
    for (int r = 1; r < n; r++)
        if (all[r] != all[0]) {
            fprintf(stderr, "[rank %d] rank %d's id differs from rank 0's\n", rank, r);
            bad++;
        }
    int zeros = 0;
    for (size_t i = 0; i < sizeof id; i++)
        zeros += id[i] == 0;
    if (zeros == (int)sizeof id) {
        fprintf(stderr, "[rank %d] the id arrived as zeros\n", rank);
        bad++;
    }
    /* rank 0's failure reaches everyone, with its message */
    if (ts_comm_share_id(w, failing_id, NULL, id, sizeof id) != TS_ERR_UNSUPPORTED ||
        strstr(ts_last_error(), "rank 0 could not create the NCCL id") == NULL ||
        strstr(ts_last_error(), "no NCCL on this node") == NULL) {
        fprintf(stderr, "[rank %d] a failed maker: %s\n", rank, ts_last_error());
        bad++;
    }
    double total = bad;
    if (ts_comm_all_reduce_host(w, &total, 1, TS_REDUCE_SUM) != TS_OK)
        return 1;
    if (rank == 0 && total == 0)
        printf("share id: ok (%d ranks, %d bytes)\n", n, TS_NCCL_ID_BYTES);
    free(all);
    ts_comm_destroy(w);
    return total == 0 ? 0 : 1;
}
