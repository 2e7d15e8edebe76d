/* comm_poll.c: the polling wait of comm_poll.h. Polls start every 20 us and back off to 1 ms, so
 * a collective that completes quickly costs little host time and a long one costs little CPU. */
#include "comm/comm_poll.h"

#include <time.h>

static double mono_now(void *ctx) {
    (void)ctx;
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static void mono_pause(void *ctx, double seconds) {
    (void)ctx;
    struct timespec ts = {.tv_sec = (time_t)seconds,
                          .tv_nsec = (long)((seconds - (double)(time_t)seconds) * 1e9)};
    nanosleep(&ts, NULL);
}

ts_status ts_comm_poll_wait(const struct ts_comm_poll *p, double timeout_s, const char *op,
                            int rank, int size) {
    double (*now)(void *) = p->now != NULL ? p->now : mono_now;
    void (*pause)(void *, double) = p->pause != NULL ? p->pause : mono_pause;
    const double start = now(p->ctx);
    double delay = 20e-6;
    for (;;) {
        const enum ts_poll_state s = p->query(p->ctx);
        if (s == TS_POLL_DONE)
            return TS_OK;
        if (s == TS_POLL_FAILED) {
            p->abort(p->ctx);
            return ts_error_wrap(TS_ERR_COMM,
                                 "rank %d of %d: %s failed; the communicator was "
                                 "aborted",
                                 rank, size, op);
        }
        ts_status st = p->async_error(p->ctx);
        if (st != TS_OK) {
            p->abort(p->ctx);
            return ts_error_wrap(TS_ERR_COMM,
                                 "rank %d of %d: %s: the transport reported an error (a peer "
                                 "may have failed); the communicator was aborted",
                                 rank, size, op);
        }
        const double waited = now(p->ctx) - start;
        if (timeout_s > 0 && waited >= timeout_s) {
            p->abort(p->ctx);
            return ts_error(TS_ERR_COMM,
                            "rank %d of %d: %s did not complete within %.0f s (--comm-timeout); "
                            "the communicator was aborted (a peer is dead or stuck)",
                            rank, size, op, timeout_s);
        }
        pause(p->ctx, delay);
        if (delay < 1e-3)
            delay *= 2;
    }
}
