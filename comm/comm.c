/* comm.c: the dispatching half of the communicator API (comm.h).
 *
 * Argument checks live here once; each backend's table implements the collectives. */
#include "comm/comm.h"

#include <stdlib.h>

void ts_comm_destroy(ts_comm_t *comm) {
    if (comm == NULL)
        return;
    comm->ops->destroy(comm);
}

int ts_comm_rank(const ts_comm_t *comm) { return comm->rank; }
int ts_comm_size(const ts_comm_t *comm) { return comm->size; }
const char *ts_comm_name(const ts_comm_t *comm) { return comm->ops->name; }

ts_status ts_comm_all_reduce(ts_comm_t *comm, struct ts_backend *be, const struct ts_tensor *buf,
                             enum ts_reduce_op op) {
    if (buf == NULL || buf->data == NULL)
        return ts_error(TS_ERR_INVALID_ARG, "all_reduce: no buffer");
    if (buf->dtype != TS_DTYPE_F32)
        return ts_error(TS_ERR_UNSUPPORTED, "all_reduce: only f32 buffers are supported, got %s",
                        ts_dtype_name(buf->dtype));
    return comm->ops->all_reduce(comm, be, buf, op);
}

ts_status ts_comm_broadcast_host(ts_comm_t *comm, void *buf, size_t bytes, int root) {
    if (root < 0 || root >= comm->size)
        return ts_error(TS_ERR_INVALID_ARG, "broadcast: root %d outside [0, %d)", root, comm->size);
    if (bytes > 0 && buf == NULL)
        return ts_error(TS_ERR_INVALID_ARG, "broadcast: no buffer");
    return comm->ops->broadcast_host(comm, buf, bytes, root);
}

ts_status ts_comm_all_reduce_host(ts_comm_t *comm, double *buf, int count, enum ts_reduce_op op) {
    if (count < 0 || (count > 0 && buf == NULL))
        return ts_error(TS_ERR_INVALID_ARG, "all_reduce_host: bad buffer (count %d)", count);
    return comm->ops->all_reduce_host(comm, buf, count, op);
}

ts_status ts_comm_barrier(ts_comm_t *comm) { return comm->ops->barrier(comm); }
