/* comm.h: the communicator the trainer is written against.
 *
 * A communicator is a group of ranks with collectives over backend buffers. Two backends fill
 * the same table: the built-in single-process group (every collective is the identity) and MPI
 * (comm_mpi.h, host buffers, a separate library so binaries without MPI link only this one);
 * NCCL fills it in the CUDA plug-in. The process grid (grid.h) splits the world into data- and
 * tensor-parallel groups with `split`.
 *
 * Collectives are blocking unless named _start: a _start call posts the operation into a
 * caller-owned request and returns at once; ts_comm_test drives progress (Open MPI moves a
 * non-blocking collective forward only inside MPI calls) and ts_comm_wait completes it. The
 * buffers of a posted request must stay untouched until it completes.
 *
 * Float reductions use the backend's own algorithm: deterministic for a fixed group size and
 * buffer size (no timing dependence), but the summation order is the transport's. */
#ifndef TS_COMM_H
#define TS_COMM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "kernels/backend.h"

enum ts_reduce_op {
    TS_REDUCE_SUM = 0,
    TS_REDUCE_AVG = 1,
    TS_REDUCE_MAX = 2,
};

struct ts_comm;
typedef struct ts_comm ts_comm_t;

/* A posted non-blocking collective: caller-owned storage, so posting allocates nothing. */
struct ts_comm_req {
    bool active;
    _Alignas(8) unsigned char impl[48]; /* the backend's state (an MPI_Request, a fix-up) */
};

/* The backend's table. Implementations keep their state behind ctx. Counts are f32 elements;
 * buffers are in be's memory (the MPI backend needs host-addressable memory). */
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

    /* Non-blocking sum over n floats in place (data[0..n)). */
    ts_status (*all_reduce_start)(ts_comm_t *comm, float *data, int64_t n, struct ts_comm_req *req);
    /* Non-blocking reduce-scatter (sum) in place: data holds sum(counts) floats laid out rank
     * by rank; on completion rank r's own part (at offset counts[0] + ... + counts[r-1]) holds
     * the sum of that part over the group; the other parts are left undefined. */
    ts_status (*reduce_scatter_start)(ts_comm_t *comm, float *data, const int *counts,
                                      struct ts_comm_req *req);
    /* Non-blocking all-gather in place: rank r's part is data[displs[r] .. + counts[r]). */
    ts_status (*all_gather_start)(ts_comm_t *comm, float *data, const int *counts,
                                  const int *displs, struct ts_comm_req *req);
    /* *done = whether req completed (progress is made either way). */
    ts_status (*test)(ts_comm_t *comm, struct ts_comm_req *req, bool *done);
    ts_status (*wait)(ts_comm_t *comm, struct ts_comm_req *req);
    /* Host uint64 gather to every rank: out gets size values, rank order. */
    ts_status (*all_gather_u64)(ts_comm_t *comm, uint64_t value, uint64_t *out);
    /* A sub-communicator of the ranks with the same color, ordered by key (MPI_Comm_split). */
    ts_status (*split)(ts_comm_t *comm, int color, int key, ts_comm_t **out);
    /* Ends every process of the job with `code` (MPI_Abort); returns only where it cannot. */
    void (*abort)(ts_comm_t *comm, int code);
};

struct ts_comm {
    const struct ts_comm_ops *ops;
    void *ctx;
    int rank;
    int size;
    int local_rank; /* rank among the processes on this host */
    int local_size;
};

/* A communicator of one process. */
ts_status ts_comm_create_single(ts_comm_t **out) TS_MUST_CHECK;
void ts_comm_destroy(ts_comm_t *comm); /* NULL is a no-op */

int ts_comm_rank(const ts_comm_t *comm);
int ts_comm_size(const ts_comm_t *comm);
int ts_comm_local_rank(const ts_comm_t *comm);
int ts_comm_local_size(const ts_comm_t *comm);
const char *ts_comm_name(const ts_comm_t *comm);

ts_status ts_comm_all_reduce(ts_comm_t *comm, struct ts_backend *be, const struct ts_tensor *buf,
                             enum ts_reduce_op op) TS_MUST_CHECK;
ts_status ts_comm_broadcast_host(ts_comm_t *comm, void *buf, size_t bytes, int root) TS_MUST_CHECK;
ts_status ts_comm_all_reduce_host(ts_comm_t *comm, double *buf, int count,
                                  enum ts_reduce_op op) TS_MUST_CHECK;
ts_status ts_comm_barrier(ts_comm_t *comm) TS_MUST_CHECK;

/* Non-blocking forms over f32 tensors (host memory for MPI), all in place. all_reduce_start:
 * SUM (scale before or after for a mean). reduce_scatter_start: `buf` holds sum(counts) floats,
 * rank by rank; afterwards this rank's part holds the group's sum of it (other parts undefined).
 * all_gather_start: part r at displs[r] comes from rank r. counts/displs are read during the
 * call only. */
ts_status ts_comm_all_reduce_start(ts_comm_t *comm, const struct ts_tensor *buf,
                                   struct ts_comm_req *req) TS_MUST_CHECK;
ts_status ts_comm_reduce_scatter_start(ts_comm_t *comm, const struct ts_tensor *buf,
                                       const int *counts, struct ts_comm_req *req) TS_MUST_CHECK;
ts_status ts_comm_all_gather_start(ts_comm_t *comm, const struct ts_tensor *buf, const int *counts,
                                   const int *displs, struct ts_comm_req *req) TS_MUST_CHECK;
ts_status ts_comm_test(ts_comm_t *comm, struct ts_comm_req *req, bool *done) TS_MUST_CHECK;
ts_status ts_comm_wait(ts_comm_t *comm, struct ts_comm_req *req) TS_MUST_CHECK;

/* Blocking forms of the same. */
ts_status ts_comm_reduce_scatter(ts_comm_t *comm, const struct ts_tensor *buf,
                                 const int *counts) TS_MUST_CHECK;
ts_status ts_comm_all_gather(ts_comm_t *comm, const struct ts_tensor *buf, const int *counts,
                             const int *displs) TS_MUST_CHECK;

/* out (size entries) gets every rank's value, in rank order. */
ts_status ts_comm_all_gather_u64(ts_comm_t *comm, uint64_t value, uint64_t *out) TS_MUST_CHECK;
ts_status ts_comm_split(ts_comm_t *comm, int color, int key, ts_comm_t **out) TS_MUST_CHECK;

/* Ends the whole job with exit code `code`; only launch/ calls it, after logging why. Returns
 * (for a single process, or where the backend cannot abort) and the caller exits itself. */
void ts_comm_abort(ts_comm_t *comm, int code);

/* Cross-checks (rank, size, local rank) against the launcher's environment: mpirun's
 * OMPI_COMM_WORLD_{RANK,SIZE,LOCAL_RANK}, PMIX_RANK, and under srun SLURM_PROCID,
 * SLURM_STEP_NUM_TASKS (or SLURM_NTASKS), SLURM_LOCALID. A disagreement is an error naming
 * the variable and both values. */
ts_status ts_comm_check_launcher_env(int rank, int size, int local_rank) TS_MUST_CHECK;

/* Which launcher started this process, from the environment: "mpirun", "srun" or NULL (none:
 * a plain single process). *err gets a message when srun started several tasks without PMIx,
 * which MPI cannot join into one job. */
const char *ts_comm_detect_launcher(const char **err);

#endif
