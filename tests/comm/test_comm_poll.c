/* test_comm_poll.c: the polling wait under the NCCL communicator (comm_poll.c) with a fake
 * transport and a fake clock: a collective that completes returns, one that never completes is
 * aborted at the timeout with an error naming rank and operation, an asynchronous error (a dead
 * peer) aborts at once, and a timeout of 0 waits for as long as it takes. */
#include <criterion/criterion.h>
#include <string.h>

#include "comm/comm_poll.h"

struct fake {
    int polls;    /* queries so far */
    int done_at;  /* the query that reports completion; -1: never */
    int error_at; /* the poll where the async error appears; -1: never */
    int aborts;
    double clock; /* seconds, advanced by pause */
};

static enum ts_poll_state fake_query(void *p) {
    struct fake *f = p;
    return f->polls++ == f->done_at ? TS_POLL_DONE : TS_POLL_PENDING;
}
static ts_status fake_async(void *p) {
    struct fake *f = p;
    if (f->error_at >= 0 && f->polls > f->error_at)
        return ts_error(TS_ERR_COMM, "ncclCommGetAsyncError: remote process exited");
    return TS_OK;
}
static void fake_abort(void *p) { ((struct fake *)p)->aborts++; }
static double fake_now(void *p) { return ((struct fake *)p)->clock; }
static void fake_pause(void *p, double s) { ((struct fake *)p)->clock += s > 0.5 ? s : 0.5; }

static struct ts_comm_poll poll_of(struct fake *f) {
    return (struct ts_comm_poll){.ctx = f,
                                 .query = fake_query,
                                 .async_error = fake_async,
                                 .abort = fake_abort,
                                 .now = fake_now,
                                 .pause = fake_pause};
}

Test(comm_poll, a_completed_collective_returns) {
    struct fake f = {.done_at = 3, .error_at = -1};
    const struct ts_comm_poll p = poll_of(&f);
    cr_assert_eq(ts_comm_poll_wait(&p, 600, "ncclAllReduce", 1, 4), TS_OK, "%s", ts_last_error());
    cr_assert_eq(f.aborts, 0);
    cr_assert_eq(f.polls, 4);
}

Test(comm_poll, a_collective_that_never_completes_is_aborted_at_the_timeout) {
    struct fake f = {.done_at = -1, .error_at = -1};
    const struct ts_comm_poll p = poll_of(&f);
    cr_assert_eq(ts_comm_poll_wait(&p, 30, "ncclReduceScatter", 2, 4), TS_ERR_COMM);
    cr_assert_eq(f.aborts, 1);
    cr_assert(f.clock >= 30 && f.clock < 31, "gave up at %g s", f.clock);
    const char *e = ts_last_error();
    cr_assert(strstr(e, "rank 2 of 4") != NULL, "%s", e);
    cr_assert(strstr(e, "ncclReduceScatter") != NULL, "%s", e);
    cr_assert(strstr(e, "--comm-timeout") != NULL, "%s", e);
}

Test(comm_poll, an_async_error_aborts_at_once) {
    struct fake f = {.done_at = -1, .error_at = 2};
    const struct ts_comm_poll p = poll_of(&f);
    cr_assert_eq(ts_comm_poll_wait(&p, 600, "ncclAllGather", 3, 8), TS_ERR_COMM);
    cr_assert_eq(f.aborts, 1);
    cr_assert(f.clock < 5, "waited %g s for a dead peer", f.clock);
    const char *e = ts_last_error();
    cr_assert(strstr(e, "rank 3 of 8") != NULL && strstr(e, "ncclAllGather") != NULL, "%s", e);
    cr_assert(strstr(e, "remote process exited") != NULL, "%s", e);
}

Test(comm_poll, no_timeout_waits_as_long_as_it_takes) {
    struct fake f = {.done_at = 5000, .error_at = -1};
    const struct ts_comm_poll p = poll_of(&f);
    cr_assert_eq(ts_comm_poll_wait(&p, 0, "ncclAllReduce", 0, 2), TS_OK, "%s", ts_last_error());
    cr_assert_eq(f.aborts, 0);
    cr_assert(f.clock > 2000);
}

Test(comm_poll, the_real_clock_times_out) {
    struct fake f = {.done_at = -1, .error_at = -1};
    struct ts_comm_poll p = poll_of(&f);
    p.now = NULL;
    p.pause = NULL;
    cr_assert_eq(ts_comm_poll_wait(&p, 0.05, "ncclAllReduce", 0, 2), TS_ERR_COMM);
    cr_assert_eq(f.aborts, 1);
}
