/* comm.h: the communicator the trainer is written against.
 *
 * A communicator is a group of ranks with collectives over backend buffers. This issue provides
 * the built-in single-process backend (a group of one, where every collective is the identity);
 * the MPI and NCCL backends fill the same table later, and the process grid (world, data-parallel
 * and tensor-parallel groups) is built on it. Collectives are blocking unless named _start. */
#ifndef TS_COMM_H
#define TS_COMM_H

#include <stddef.h>

#include "kernels/backend.h"

enum ts_reduce_op {
    TS_REDUCE_SUM = 0,
    TS_REDUCE_AVG = 1,
    TS_REDUCE_MAX = 2,
};

struct ts_comm;
typedef struct ts_comm ts_comm_t;

/* The backend's table. Implementations keep their state behind ctx. */
struct ts_comm_ops {
    const char *name; /* "single", "mpi", "nccl" */
    void (*destroy)(ts_comm_t *comm);
    /* In place over a tensor in be's memory. */
    ts_status (*all_reduce)(ts_comm_t *comm, struct ts_backend *be, const struct ts_tensor *buf,
                            enum ts_reduce_op op);
    /* Host bytes from root to every rank. */
    ts_status (*broadcast_host)(ts_comm_t *comm, void *buf, size_t bytes, int root);
    /* In place over host doubles (small control values: losses, norms, flags). */
    ts_status (*all_reduce_host)(ts_comm_t *comm, double *buf, int count, enum ts_reduce_op op);
    ts_status (*barrier)(ts_comm_t *comm);
};

struct ts_comm {
    const struct ts_comm_ops *ops;
    void *ctx;
    int rank;
    int size;
    int local_rank;
};

/* A communicator of one process. */
ts_status ts_comm_create_single(ts_comm_t **out) TS_MUST_CHECK;
void ts_comm_destroy(ts_comm_t *comm); /* NULL is a no-op */

int ts_comm_rank(const ts_comm_t *comm);
int ts_comm_size(const ts_comm_t *comm);
const char *ts_comm_name(const ts_comm_t *comm);

ts_status ts_comm_all_reduce(ts_comm_t *comm, struct ts_backend *be, const struct ts_tensor *buf,
                             enum ts_reduce_op op) TS_MUST_CHECK;
ts_status ts_comm_broadcast_host(ts_comm_t *comm, void *buf, size_t bytes, int root) TS_MUST_CHECK;
ts_status ts_comm_all_reduce_host(ts_comm_t *comm, double *buf, int count,
                                  enum ts_reduce_op op) TS_MUST_CHECK;
ts_status ts_comm_barrier(ts_comm_t *comm) TS_MUST_CHECK;

#endif
