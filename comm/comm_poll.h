/* comm_poll.h: waiting for a device collective without hanging (the NCCL communicator's wait).
 *
 * A device transport cannot block in the driver for a collective whose peer died: the wait
 * would never return. Instead the host polls: whether the collective completed, whether the
 * transport reports an asynchronous error (ncclCommGetAsyncError), and how long it has waited.
 * Past the timeout, or on an error, the transport is aborted (ncclCommAbort, so no kernel
 * stays stuck on the device) and the wait fails naming the rank and the operation; launch/
 * then ends the job non-zero. Plain C without CUDA, so the logic is tested with a fake. */
#ifndef TS_COMM_POLL_H
#define TS_COMM_POLL_H

#include "kernels/status.h"

enum ts_poll_state {
    TS_POLL_DONE = 0,
    TS_POLL_PENDING = 1,
    TS_POLL_FAILED = 2, /* query set ts_error with the reason */
};

struct ts_comm_poll {
    void *ctx;
    enum ts_poll_state (*query)(void *ctx);   /* has the collective completed? */
    ts_status (*async_error)(void *ctx);      /* the transport's asynchronous error; TS_OK: none */
    void (*abort)(void *ctx);                 /* abort the transport (called at most once) */
    double (*now)(void *ctx);                 /* seconds; NULL: CLOCK_MONOTONIC */
    void (*pause)(void *ctx, double seconds); /* between polls; NULL: nanosleep */
};

/* Polls until done, an error or timeout_s seconds (<= 0: no limit). On an error or the
 * timeout, calls p->abort and returns TS_ERR_COMM naming `op`, rank and size. Synchronous. */
ts_status ts_comm_poll_wait(const struct ts_comm_poll *p, double timeout_s, const char *op,
                            int rank, int size) TS_MUST_CHECK;

#endif
