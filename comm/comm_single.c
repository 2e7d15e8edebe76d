/* comm_single.c: the built-in communicator of one process.
 *
 * A group of one: every reduction of a single contribution is that contribution (sum, average
 * and max alike), broadcast and barrier have nothing to do, a reduce-scatter is a copy of the
 * one part, an all-gather in place has nothing to gather, in any memory and dtype; nothing is
 * read, so a ready event needs no wait. It lets code call collectives unconditionally; the
 * trainer still skips them with one data-parallel rank (no hooks, no buckets). */
#include <stdint.h>
#include <stdlib.h>

#include "comm/comm.h"

static void single_destroy(ts_comm_t *comm) { free(comm); }

static ts_status single_all_reduce(ts_comm_t *comm, struct ts_backend *be,
                                   const struct ts_tensor *buf, enum ts_reduce_op op,
                                   ts_event_t *ready) {
    return TS_OK;
}

static ts_status single_broadcast_host(ts_comm_t *comm, void *buf, size_t bytes, int root) {
    return TS_OK;
}

static ts_status single_all_reduce_host(ts_comm_t *comm, double *buf, int count,
                                        enum ts_reduce_op op) {
    return TS_OK;
}

static ts_status single_barrier(ts_comm_t *comm) { return TS_OK; }

static ts_status single_all_reduce_start(ts_comm_t *comm, struct ts_backend *be,
                                         const struct ts_tensor *buf, ts_event_t *ready,
                                         struct ts_comm_req *req) {
    return TS_OK;
}

static ts_status single_reduce_scatter_start(ts_comm_t *comm, struct ts_backend *be,
                                             const struct ts_tensor *buf, const int *counts,
                                             ts_event_t *ready, struct ts_comm_req *req) {
    return TS_OK;
}

static ts_status single_all_gather_start(ts_comm_t *comm, struct ts_backend *be,
                                         const struct ts_tensor *buf, const int *counts,
                                         const int *displs, ts_event_t *ready,
                                         struct ts_comm_req *req) {
    return TS_OK;
}

static ts_status single_test(ts_comm_t *comm, struct ts_comm_req *req, bool *done) {
    *done = true;
    return TS_OK;
}

static ts_status single_wait(ts_comm_t *comm, struct ts_comm_req *req) { return TS_OK; }

static ts_status single_all_gather_u64(ts_comm_t *comm, uint64_t value, uint64_t *out) {
    out[0] = value;
    return TS_OK;
}

static ts_status single_split(ts_comm_t *comm, int color, int key, ts_comm_t **out) {
    return ts_comm_create_single(out);
}

static const struct ts_comm_ops single_ops = {
    .name = "single",
    .memory = TS_COMM_MEM_ANY,
    .max_count = INT64_MAX,
    .destroy = single_destroy,
    .all_reduce = single_all_reduce,
    .broadcast_host = single_broadcast_host,
    .all_reduce_host = single_all_reduce_host,
    .barrier = single_barrier,
    .all_reduce_start = single_all_reduce_start,
    .reduce_scatter_start = single_reduce_scatter_start,
    .all_gather_start = single_all_gather_start,
    .test = single_test,
    .wait = single_wait,
    .all_gather_u64 = single_all_gather_u64,
    .split = single_split,
    .abort = NULL,
};

ts_status ts_comm_create_single(ts_comm_t **out) {
    *out = NULL;
    ts_comm_t *comm = calloc(1, sizeof(*comm));
    if (comm == NULL)
        return ts_error(TS_ERR_OOM, "comm: out of memory");
    comm->ops = &single_ops;
    comm->rank = 0;
    comm->size = 1;
    comm->local_rank = 0;
    comm->local_size = 1;
    *out = comm;
    return TS_OK;
}
