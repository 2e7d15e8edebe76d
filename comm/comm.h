/* comm.h: the communicator the trainer is written against.
 *
 * A communicator is a group of ranks with collectives over backend buffers. Backends fill one
 * table: the built-in single-process group (every collective is the identity), MPI (comm_mpi.h,
 * host buffers, a separate library so binaries without MPI link only this one) and, in the CUDA
 * plug-in, NCCL (comm_nccl.c, device buffers; not written yet, its contract is below). The
 * process grid (grid.h) splits the world into data- and tensor-parallel groups with `split`.
 *
 * Buffers. A device collective takes a tensor (its dtype is the element type: f32 or bf16; sums
 * are in that type, so a bf16 sum rounds to bf16 after every addition, as NCCL's does), the
 * backend `be` whose memory holds it (NULL: ordinary host memory, e.g. malloc'd), and `ready`,
 * an event recorded on be (ts_op_event_record) after the work that produces the buffer, or NULL
 * when that work is already complete as far as the host knows (the host wrote the buffer, or
 * synchronised since). The caller owns the buffer, the event and the count arrays.
 *
 * Ordering (a collective is ordered after its producer by the event, never by a device sync):
 *   - host transports (MPI; ops->memory TS_COMM_MEM_HOST) need host-addressable memory (be NULL
 *     or be->host_memory) and wait for `ready` on the host with be->event_sync (that event only)
 *     before posting. Completion means the host and any later work see the result.
 *   - device transports (NCCL; TS_COMM_MEM_DEVICE) enqueue on the communicator's own stream,
 *     which first waits on `ready` (cudaStreamWaitEvent: the host does not block). ts_comm_test
 *     asks whether that stream has passed the collective; ts_comm_wait makes be's stream wait for
 *     it, so work issued on be afterwards sees the result (the host sees it through a download
 *     or a sync, as with any device work).
 * The post consumes `ready`: the caller may record it again as soon as the call returns.
 * Between a post and its completion the caller does not write the buffer, nor issue work on be
 * that writes it, nor read the parts the collective writes; the buffer, be and the count arrays
 * stay valid until completion (MPI reads a non-blocking collective's arrays until then).
 *
 * Collectives are blocking unless named _start: a _start call posts the operation into a
 * caller-owned request and returns at once; ts_comm_test drives progress (Open MPI moves a
 * non-blocking collective forward only inside MPI calls) and ts_comm_wait completes it.
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

/* What memory a transport moves (checked once, in comm.c, for every collective). */
enum ts_comm_memory {
    TS_COMM_MEM_ANY = 0,    /* nothing moves (the single process) */
    TS_COMM_MEM_HOST = 1,   /* host-addressable: be == NULL or be->host_memory (MPI) */
    TS_COMM_MEM_DEVICE = 2, /* a device backend's memory (NCCL) */
};

struct ts_comm;
typedef struct ts_comm ts_comm_t;

/* A posted non-blocking collective: caller-owned storage, so posting allocates nothing. */
struct ts_comm_req {
    bool active;
    _Alignas(8) unsigned char impl[48]; /* the backend's state (an MPI_Request, a fix-up) */
};

/* The backend's table. Implementations keep their state behind ctx and may assume the checks
 * of comm.c: buf is f32 or bf16 with at most max_count elements, in memory of the kind
 * `memory` says, counts and displacements inside it, `ready` NULL or an event of be. Counts
 * are elements of buf's dtype. */
struct ts_comm_ops {
    const char *name; /* "single", "mpi", "nccl" */
    enum ts_comm_memory memory;
    int64_t max_count; /* most elements one collective moves (MPI: INT_MAX, its count type) */
    void (*destroy)(ts_comm_t *comm);
    /* Blocking, in place. */
    ts_status (*all_reduce)(ts_comm_t *comm, struct ts_backend *be, const struct ts_tensor *buf,
                            enum ts_reduce_op op, ts_event_t *ready);
    /* Host bytes from root to every rank. */
    ts_status (*broadcast_host)(ts_comm_t *comm, void *buf, size_t bytes, int root);
    /* In place over host doubles (small control values: losses, norms, flags). */
    ts_status (*all_reduce_host)(ts_comm_t *comm, double *buf, int count, enum ts_reduce_op op);
    ts_status (*barrier)(ts_comm_t *comm);

    /* Non-blocking sum over buf in place. */
    ts_status (*all_reduce_start)(ts_comm_t *comm, struct ts_backend *be,
                                  const struct ts_tensor *buf, ts_event_t *ready,
                                  struct ts_comm_req *req);
    /* Non-blocking reduce-scatter (sum) in place: buf holds sum(counts) elements laid out rank
     * by rank; on completion rank r's own part (at offset counts[0] + ... + counts[r-1]) holds
     * the sum of that part over the group; the other parts are left undefined. */
    ts_status (*reduce_scatter_start)(ts_comm_t *comm, struct ts_backend *be,
                                      const struct ts_tensor *buf, const int *counts,
                                      ts_event_t *ready, struct ts_comm_req *req);
    /* Non-blocking all-gather in place: rank r's part is buf[displs[r] .. + counts[r]). */
    ts_status (*all_gather_start)(ts_comm_t *comm, struct ts_backend *be,
                                  const struct ts_tensor *buf, const int *counts, const int *displs,
                                  ts_event_t *ready, struct ts_comm_req *req);
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

/* Whether this communicator can move buffers in be's memory (NULL: host memory); an error
 * saying why not. The collectives check it too; a caller can ask once, up front. */
ts_status ts_comm_check_backend(const ts_comm_t *comm, const struct ts_backend *be) TS_MUST_CHECK;

/* Blocking all-reduce in place (sum, avg or max) over an f32 or bf16 tensor in be's memory,
 * after `ready` (see the top of this file). */
ts_status ts_comm_all_reduce(ts_comm_t *comm, struct ts_backend *be, const struct ts_tensor *buf,
                             enum ts_reduce_op op, ts_event_t *ready) TS_MUST_CHECK;
ts_status ts_comm_broadcast_host(ts_comm_t *comm, void *buf, size_t bytes, int root) TS_MUST_CHECK;
ts_status ts_comm_all_reduce_host(ts_comm_t *comm, double *buf, int count,
                                  enum ts_reduce_op op) TS_MUST_CHECK;
ts_status ts_comm_barrier(ts_comm_t *comm) TS_MUST_CHECK;

/* Non-blocking forms over f32 or bf16 tensors in be's memory, all in place, each posted after
 * `ready`. all_reduce_start: SUM (scale before or after for a mean). reduce_scatter_start:
 * `buf` holds sum(counts) elements, rank by rank; afterwards this rank's part holds the group's
 * sum of it (other parts undefined). all_gather_start: part r at displs[r] comes from rank r (a
 * copy: bf16 parameters travel as they are). counts/displs have one entry per rank and stay
 * valid until the request completes. */
ts_status ts_comm_all_reduce_start(ts_comm_t *comm, struct ts_backend *be,
                                   const struct ts_tensor *buf, ts_event_t *ready,
                                   struct ts_comm_req *req) TS_MUST_CHECK;
ts_status ts_comm_reduce_scatter_start(ts_comm_t *comm, struct ts_backend *be,
                                       const struct ts_tensor *buf, const int *counts,
                                       ts_event_t *ready, struct ts_comm_req *req) TS_MUST_CHECK;
ts_status ts_comm_all_gather_start(ts_comm_t *comm, struct ts_backend *be,
                                   const struct ts_tensor *buf, const int *counts,
                                   const int *displs, ts_event_t *ready,
                                   struct ts_comm_req *req) TS_MUST_CHECK;
/* Progress and completion (see the top of this file for what completion means per transport).
 * A request that is not active is complete. */
ts_status ts_comm_test(ts_comm_t *comm, struct ts_comm_req *req, bool *done) TS_MUST_CHECK;
ts_status ts_comm_wait(ts_comm_t *comm, struct ts_comm_req *req) TS_MUST_CHECK;

/* Blocking forms of the same (post, then wait). */
ts_status ts_comm_reduce_scatter(ts_comm_t *comm, struct ts_backend *be,
                                 const struct ts_tensor *buf, const int *counts,
                                 ts_event_t *ready) TS_MUST_CHECK;
ts_status ts_comm_all_gather(ts_comm_t *comm, struct ts_backend *be, const struct ts_tensor *buf,
                             const int *counts, const int *displs, ts_event_t *ready) TS_MUST_CHECK;

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
