/* comm_single.c: the built-in communicator of one process.
 *
 * A group of one: every reduction of a single contribution is that contribution (sum, average
 * and max alike), broadcast and barrier have nothing to do. It lets the trainer call its
 * collectives unconditionally, so single-process and multi-rank runs share one code path. */
#include <stdlib.h>

#include "comm/comm.h"

static void single_destroy(ts_comm_t *comm) { free(comm); }

static ts_status single_all_reduce(ts_comm_t *comm, struct ts_backend *be,
                                   const struct ts_tensor *buf, enum ts_reduce_op op) {
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

static const struct ts_comm_ops single_ops = {
    .name = "single",
    .destroy = single_destroy,
    .all_reduce = single_all_reduce,
    .broadcast_host = single_broadcast_host,
    .all_reduce_host = single_all_reduce_host,
    .barrier = single_barrier,
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
    *out = comm;
    return TS_OK;
}
