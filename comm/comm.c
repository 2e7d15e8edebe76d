/* comm.c: the dispatching half of the communicator API (comm.h), and the launcher checks.
 *
 * Argument checks live here once; each backend's table implements the collectives. The
 * launcher functions read only the environment, so they serve every backend and are tested
 * without MPI. */
#include "comm/comm.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void ts_comm_destroy(ts_comm_t *comm) {
    if (comm == NULL)
        return;
    comm->ops->destroy(comm);
}

int ts_comm_rank(const ts_comm_t *comm) { return comm->rank; }
int ts_comm_size(const ts_comm_t *comm) { return comm->size; }
int ts_comm_local_rank(const ts_comm_t *comm) { return comm->local_rank; }
int ts_comm_local_size(const ts_comm_t *comm) { return comm->local_size; }
const char *ts_comm_name(const ts_comm_t *comm) { return comm->ops->name; }

/* What every device collective needs, checked once for all backends: a buffer of a dtype the
 * transports reduce, no more elements than the transport counts, in memory it can reach, and an
 * event only with a backend that can wait on it. */
static ts_status check_buf(const ts_comm_t *comm, const struct ts_backend *be,
                           const struct ts_tensor *t, const ts_event_t *ready, const char *what) {
    if (t == NULL || t->data == NULL)
        return ts_error(TS_ERR_INVALID_ARG, "%s: no buffer", what);
    if (t->dtype != TS_DTYPE_F32 && t->dtype != TS_DTYPE_BF16)
        return ts_error(TS_ERR_UNSUPPORTED, "%s: only f32 and bf16 buffers are supported, got %s",
                        what, ts_dtype_name(t->dtype));
    const int64_t n = ts_tensor_numel(t);
    if (n > comm->ops->max_count)
        return ts_error(TS_ERR_UNSUPPORTED,
                        "%s: %lld elements exceed the %s communicator's limit of %lld per "
                        "collective",
                        what, (long long)n, comm->ops->name, (long long)comm->ops->max_count);
    TS_CHECK(ts_comm_check_backend(comm, be));
    if (ready != NULL && (be == NULL || be->event_sync == NULL))
        return ts_error(TS_ERR_INVALID_ARG,
                        "%s: a ready event needs the backend it was recorded on (with events)",
                        what);
    return TS_OK;
}

ts_status ts_comm_check_backend(const ts_comm_t *comm, const struct ts_backend *be) {
    const bool host = be == NULL || be->host_memory;
    switch (comm->ops->memory) {
    case TS_COMM_MEM_HOST:
        if (!host)
            return ts_error(TS_ERR_UNSUPPORTED,
                            "the %s communicator moves host memory, but backend '%s' keeps its "
                            "buffers in device memory: device buffers need the NCCL "
                            "communicator (or use --device cpu)",
                            comm->ops->name, be->name);
        return TS_OK;
    case TS_COMM_MEM_DEVICE:
        if (host)
            return ts_error(TS_ERR_UNSUPPORTED,
                            "the %s communicator moves device memory, but the buffer is host "
                            "memory (backend %s)",
                            comm->ops->name, be == NULL ? "none" : be->name);
        return TS_OK;
    case TS_COMM_MEM_ANY:
        return TS_OK;
    }
    return ts_error(TS_ERR_INTERNAL, "comm: unknown memory kind %d", (int)comm->ops->memory);
}

ts_status ts_comm_all_reduce(ts_comm_t *comm, struct ts_backend *be, const struct ts_tensor *buf,
                             enum ts_reduce_op op, ts_event_t *ready) {
    TS_CHECK(check_buf(comm, be, buf, ready, "all_reduce"));
    if (op != TS_REDUCE_SUM && op != TS_REDUCE_AVG && op != TS_REDUCE_MAX)
        return ts_error(TS_ERR_INVALID_ARG, "all_reduce: unknown reduction %d", (int)op);
    return comm->ops->all_reduce(comm, be, buf, op, ready);
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

static ts_status check_req(struct ts_comm_req *req, const char *what) {
    if (req == NULL)
        return ts_error(TS_ERR_INVALID_ARG, "%s: no request", what);
    if (req->active)
        return ts_error(TS_ERR_INVALID_ARG, "%s: the request is still in flight", what);
    return TS_OK;
}

ts_status ts_comm_all_reduce_start(ts_comm_t *comm, struct ts_backend *be,
                                   const struct ts_tensor *buf, ts_event_t *ready,
                                   struct ts_comm_req *req) {
    TS_CHECK(check_buf(comm, be, buf, ready, "all_reduce_start"));
    TS_CHECK(check_req(req, "all_reduce_start"));
    return comm->ops->all_reduce_start(comm, be, buf, ready, req);
}

/* Counts must be >= 0 and their parts must fit the tensors. */
static ts_status check_counts(const ts_comm_t *comm, const int *counts, const int *displs,
                              int64_t room, const char *what) {
    if (counts == NULL)
        return ts_error(TS_ERR_INVALID_ARG, "%s: no counts", what);
    int64_t total = 0;
    for (int r = 0; r < comm->size; r++) {
        if (counts[r] < 0 || (displs != NULL && displs[r] < 0))
            return ts_error(TS_ERR_INVALID_ARG, "%s: negative count or offset for rank %d", what,
                            r);
        const int64_t end = displs != NULL ? (int64_t)displs[r] + counts[r] : total + counts[r];
        if (end > room)
            return ts_error(TS_ERR_INVALID_ARG,
                            "%s: rank %d's part ends at %lld, past the buffer's %lld elements",
                            what, r, (long long)end, (long long)room);
        total += counts[r];
    }
    return TS_OK;
}

ts_status ts_comm_reduce_scatter_start(ts_comm_t *comm, struct ts_backend *be,
                                       const struct ts_tensor *buf, const int *counts,
                                       ts_event_t *ready, struct ts_comm_req *req) {
    TS_CHECK(check_buf(comm, be, buf, ready, "reduce_scatter"));
    TS_CHECK(check_req(req, "reduce_scatter"));
    TS_CHECK(check_counts(comm, counts, NULL, ts_tensor_numel(buf), "reduce_scatter"));
    return comm->ops->reduce_scatter_start(comm, be, buf, counts, ready, req);
}

ts_status ts_comm_all_gather_start(ts_comm_t *comm, struct ts_backend *be,
                                   const struct ts_tensor *buf, const int *counts,
                                   const int *displs, ts_event_t *ready, struct ts_comm_req *req) {
    TS_CHECK(check_buf(comm, be, buf, ready, "all_gather"));
    TS_CHECK(check_req(req, "all_gather"));
    if (displs == NULL)
        return ts_error(TS_ERR_INVALID_ARG, "all_gather: no displacements");
    TS_CHECK(check_counts(comm, counts, displs, ts_tensor_numel(buf), "all_gather"));
    return comm->ops->all_gather_start(comm, be, buf, counts, displs, ready, req);
}

ts_status ts_comm_test(ts_comm_t *comm, struct ts_comm_req *req, bool *done) {
    if (req == NULL || !req->active) {
        *done = true;
        return TS_OK;
    }
    return comm->ops->test(comm, req, done);
}

ts_status ts_comm_wait(ts_comm_t *comm, struct ts_comm_req *req) {
    if (req == NULL || !req->active)
        return TS_OK;
    return comm->ops->wait(comm, req);
}

ts_status ts_comm_reduce_scatter(ts_comm_t *comm, struct ts_backend *be,
                                 const struct ts_tensor *buf, const int *counts,
                                 ts_event_t *ready) {
    struct ts_comm_req req = {0};
    TS_CHECK(ts_comm_reduce_scatter_start(comm, be, buf, counts, ready, &req));
    return ts_comm_wait(comm, &req);
}

ts_status ts_comm_all_gather(ts_comm_t *comm, struct ts_backend *be, const struct ts_tensor *buf,
                             const int *counts, const int *displs, ts_event_t *ready) {
    struct ts_comm_req req = {0};
    TS_CHECK(ts_comm_all_gather_start(comm, be, buf, counts, displs, ready, &req));
    return ts_comm_wait(comm, &req);
}

ts_status ts_comm_all_gather_u64(ts_comm_t *comm, uint64_t value, uint64_t *out) {
    if (out == NULL)
        return ts_error(TS_ERR_INVALID_ARG, "all_gather_u64: no output");
    return comm->ops->all_gather_u64(comm, value, out);
}

ts_status ts_comm_split(ts_comm_t *comm, int color, int key, ts_comm_t **out) {
    if (out == NULL)
        return ts_error(TS_ERR_INVALID_ARG, "comm split: out is NULL");
    *out = NULL;
    if (color < 0)
        return ts_error(TS_ERR_INVALID_ARG, "comm split: color must be >= 0, got %d", color);
    return comm->ops->split(comm, color, key, out);
}

void ts_comm_abort(ts_comm_t *comm, int code) {
    if (comm != NULL && comm->ops->abort != NULL)
        comm->ops->abort(comm, code);
}

/* ---- the launcher's environment ---- */

/* -1 when unset; -2 when set but not a non-negative integer. */
static long env_int(const char *name) {
    const char *v = getenv(name);
    if (v == NULL || *v == '\0')
        return -1;
    char *end;
    long x = strtol(v, &end, 10);
    return *end == '\0' && x >= 0 ? x : -2;
}

const char *ts_comm_detect_launcher(const char **err) {
    if (err != NULL)
        *err = NULL;
    if (getenv("OMPI_COMM_WORLD_SIZE") != NULL)
        return "mpirun";
    if (getenv("SLURM_STEP_ID") != NULL && getenv("SLURM_PROCID") != NULL) {
        if (getenv("PMIX_RANK") != NULL)
            return "srun";
        long n = env_int("SLURM_STEP_NUM_TASKS");
        if (n < 0)
            n = env_int("SLURM_NTASKS");
        if (n > 1 && err != NULL)
            *err = "srun started several tasks without PMIx, so they cannot join one job; "
                   "launch with `srun --mpi=pmix`";
    }
    return NULL;
}

static ts_status expect(const char *var, long want, const char *what) {
    const long got = env_int(var);
    if (got == -1)
        return TS_OK;
    if (got != want)
        return ts_error(TS_ERR_COMM,
                        "the launcher and MPI disagree: %s=%s but MPI says %s %ld; was this "
                        "binary built against the MPI that launched it?",
                        var, getenv(var), what, want);
    return TS_OK;
}

ts_status ts_comm_check_launcher_env(int rank, int size, int local_rank) {
    const char *launcher = ts_comm_detect_launcher(NULL);
    if (launcher == NULL)
        return TS_OK;
    TS_CHECK(expect("PMIX_RANK", rank, "rank"));
    if (strcmp(launcher, "mpirun") == 0) {
        TS_CHECK(expect("OMPI_COMM_WORLD_RANK", rank, "rank"));
        TS_CHECK(expect("OMPI_COMM_WORLD_SIZE", size, "size"));
        TS_CHECK(expect("OMPI_COMM_WORLD_LOCAL_RANK", local_rank, "local rank"));
        return TS_OK;
    }
    TS_CHECK(expect("SLURM_PROCID", rank, "rank"));
    TS_CHECK(
        expect(getenv("SLURM_STEP_NUM_TASKS") != NULL ? "SLURM_STEP_NUM_TASKS" : "SLURM_NTASKS",
               size, "size"));
    TS_CHECK(expect("SLURM_LOCALID", local_rank, "local rank"));
    return TS_OK;
}
