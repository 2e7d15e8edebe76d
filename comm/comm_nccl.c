/* comm_nccl.c: the communicator over NCCL, on the CUDA backend's device buffers. Built into the
 * CUDA plug-in (libtessera_cuda.so), never into `tessera`; comm_nccl.h has the contract.
 *
 * libnccl.so.2 is opened with dlopen on first use (NCCL's header gives the types only), so the
 * plug-in loads and runs one GPU where NCCL is absent. Each communicator has its own stream:
 * a post makes it wait on the caller's `ready` event (cudaStreamWaitEvent; the host does not
 * block), enqueues the NCCL call and records a completion event. `wait` polls that event and
 * ncclCommGetAsyncError on the host until it completes or --comm-timeout passes (comm_poll.c:
 * then ncclCommAbort and an error naming rank and operation), then makes the backend's stream
 * wait on the event. Host control values go to the wrapped MPI communicator (`host`).
 *
 * Reduce-scatter and all-gather in place with equal parts are NCCL's own in-place forms; with
 * unequal parts (the last ZeRO-1 shard) they are a group of per-root ncclReduce/ncclBroadcast. */
#include "comm/comm_nccl.h"

#include <dlfcn.h>
#include <limits.h>
#include <nccl.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "comm/comm_poll.h"
#include "kernels/cuda/cuda_handles.h"

#define EXPORT __attribute__((visibility("default")))

/* ---- libnccl.so.2, loaded at run time ---- */

struct nccl_api {
    ncclResult_t (*GetVersion)(int *);
    const char *(*GetErrorString)(ncclResult_t);
    ncclResult_t (*GetUniqueId)(ncclUniqueId *);
    ncclResult_t (*CommInitRank)(ncclComm_t *, int, ncclUniqueId, int);
    ncclResult_t (*CommSplit)(ncclComm_t, int, int, ncclComm_t *, ncclConfig_t *);
    ncclResult_t (*CommDestroy)(ncclComm_t);
    ncclResult_t (*CommAbort)(ncclComm_t);
    ncclResult_t (*CommGetAsyncError)(ncclComm_t, ncclResult_t *);
    ncclResult_t (*AllReduce)(const void *, void *, size_t, ncclDataType_t, ncclRedOp_t, ncclComm_t,
                              cudaStream_t);
    ncclResult_t (*ReduceScatter)(const void *, void *, size_t, ncclDataType_t, ncclRedOp_t,
                                  ncclComm_t, cudaStream_t);
    ncclResult_t (*AllGather)(const void *, void *, size_t, ncclDataType_t, ncclComm_t,
                              cudaStream_t);
    ncclResult_t (*Reduce)(const void *, void *, size_t, ncclDataType_t, ncclRedOp_t, int,
                           ncclComm_t, cudaStream_t);
    ncclResult_t (*Broadcast)(const void *, void *, size_t, ncclDataType_t, int, ncclComm_t,
                              cudaStream_t);
    ncclResult_t (*GroupStart)(void);
    ncclResult_t (*GroupEnd)(void);
    int version;
};

static pthread_mutex_t api_lock = PTHREAD_MUTEX_INITIALIZER;
static struct nccl_api api;
static ts_status api_status = TS_OK;
static char api_error[512];
static int api_tried;

#define MIN_VERSION 21800 /* 2.18: ncclCommSplit; bf16 and ncclAvg are 2.10 */

static void *sym(void *h, const char *name, const char **missing) {
    void *p = dlsym(h, name);
    if (p == NULL && *missing == NULL)
        *missing = name;
    return p;
}

/* TS_NCCL_LIBRARY names the library to open (a path, or a name the loader searches for);
 * unset, the loader's search finds libnccl.so.2. */
static ts_status load_api_locked(void) {
    const char *env = getenv("TS_NCCL_LIBRARY");
    const char *lib = env != NULL && env[0] != '\0' ? env : "libnccl.so.2";
    void *h = dlopen(lib, RTLD_NOW | RTLD_LOCAL);
    if (h == NULL) {
        const char *e = dlerror();
        snprintf(api_error, sizeof api_error,
                 "NCCL is not available: dlopen(%s): %s (install NCCL, add its lib directory to "
                 "LD_LIBRARY_PATH, or set TS_NCCL_LIBRARY to the library's path)",
                 lib, e != NULL ? e : "failed");
        return TS_ERR_UNSUPPORTED;
    }
    const char *missing = NULL;
#define LOAD(field, name)                                                                          \
    do {                                                                                           \
        void *p_ = sym(h, name, &missing);                                                         \
        memcpy(&api.field, &p_, sizeof p_);                                                        \
    } while (0)
    LOAD(GetVersion, "ncclGetVersion");
    LOAD(GetErrorString, "ncclGetErrorString");
    LOAD(GetUniqueId, "ncclGetUniqueId");
    LOAD(CommInitRank, "ncclCommInitRank");
    LOAD(CommSplit, "ncclCommSplit");
    LOAD(CommDestroy, "ncclCommDestroy");
    LOAD(CommAbort, "ncclCommAbort");
    LOAD(CommGetAsyncError, "ncclCommGetAsyncError");
    LOAD(AllReduce, "ncclAllReduce");
    LOAD(ReduceScatter, "ncclReduceScatter");
    LOAD(AllGather, "ncclAllGather");
    LOAD(Reduce, "ncclReduce");
    LOAD(Broadcast, "ncclBroadcast");
    LOAD(GroupStart, "ncclGroupStart");
    LOAD(GroupEnd, "ncclGroupEnd");
#undef LOAD
    if (missing != NULL) {
        snprintf(api_error, sizeof api_error,
                 "NCCL is not usable: %s lacks %s (NCCL 2.18 or newer is needed)", lib, missing);
        dlclose(h);
        return TS_ERR_UNSUPPORTED;
    }
    if (api.GetVersion(&api.version) != ncclSuccess || api.version < MIN_VERSION) {
        snprintf(api_error, sizeof api_error,
                 "NCCL is not usable: %s is version %d, 2.18 (21800) or newer is needed", lib,
                 api.version);
        dlclose(h);
        return TS_ERR_UNSUPPORTED;
    }
    return TS_OK; /* the handle stays open for the life of the process */
}

static ts_status load_api(void) {
    pthread_mutex_lock(&api_lock);
    if (!api_tried) {
        api_status = load_api_locked();
        api_tried = 1;
    }
    const ts_status st = api_status;
    pthread_mutex_unlock(&api_lock);
    if (st != TS_OK)
        return ts_error(st, "%s", api_error);
    return TS_OK;
}

static ts_status nccl_fail(ncclResult_t r, const char *what, const ts_comm_t *c) {
    return ts_error(TS_ERR_COMM, "%s failed on rank %d of %d: %s (NCCL_DEBUG=WARN says more)", what,
                    c != NULL ? c->rank : 0, c != NULL ? c->size : 0,
                    api.GetErrorString != NULL ? api.GetErrorString(r) : "NCCL error");
}

#define NCCL_TRY(call, what, c)                                                                    \
    do {                                                                                           \
        ncclResult_t nccl_r_ = (call);                                                             \
        if (nccl_r_ != ncclSuccess)                                                                \
            return nccl_fail(nccl_r_, (what), (c));                                                \
    } while (0)

#define CUDA_CALL(call, what)                                                                      \
    do {                                                                                           \
        cudaError_t cuda_e_ = (call);                                                              \
        if (cuda_e_ != cudaSuccess)                                                                \
            return ts_error(TS_ERR_CUDA, "nccl: %s: %s", (what), cudaGetErrorString(cuda_e_));     \
    } while (0)

/* ---- the communicator ---- */

struct nccl_ctx {
    ncclComm_t comm;
    cudaStream_t stream; /* the collectives' own stream */
    ts_comm_t *host;     /* MPI: host control values */
    bool owns_host;      /* a split's host communicator is ours */
    bool aborted;
    double timeout_s;
};

/* What a request holds between post and completion. */
struct nccl_req {
    cudaEvent_t done;       /* recorded on the comm stream after the collective */
    cudaStream_t be_stream; /* the stream `wait` orders after it */
    const char *op;
};
_Static_assert(sizeof(struct nccl_req) <= sizeof(((struct ts_comm_req *)0)->impl),
               "struct ts_comm_req.impl is too small for an NCCL request");

static struct nccl_ctx *ctx_of(const ts_comm_t *c) { return (struct nccl_ctx *)c->ctx; }
static struct nccl_req *req_of(struct ts_comm_req *r) { return (struct nccl_req *)(void *)r->impl; }

static ncclDataType_t type_of(const struct ts_tensor *t) {
    return t->dtype == TS_DTYPE_BF16 ? ncclBfloat16 : ncclFloat32;
}

static ncclRedOp_t red_of(enum ts_reduce_op op) {
    return op == TS_REDUCE_MAX ? ncclMax : op == TS_REDUCE_AVG ? ncclAvg : ncclSum;
}

static void nccl_destroy(ts_comm_t *c) {
    struct nccl_ctx *x = ctx_of(c);
    if (x != NULL) {
        if (x->stream != NULL)
            cudaStreamSynchronize(x->stream);
        if (x->comm != NULL) /* NULL after an abort */
            api.CommDestroy(x->comm);
        if (x->stream != NULL)
            cudaStreamDestroy(x->stream);
        if (x->owns_host && x->host != NULL)
            x->host->ops->destroy(x->host);
        free(x);
    }
    free(c);
}

/* The comm stream waits for the producer; the request gets its completion event. */
static ts_status begin(ts_comm_t *c, struct ts_backend *be, ts_event_t *ready,
                       struct ts_comm_req *r, const char *op) {
    struct nccl_ctx *x = ctx_of(c);
    if (x->aborted)
        return ts_error(TS_ERR_COMM, "rank %d: %s after the NCCL communicator was aborted", c->rank,
                        op);
    struct nccl_req *q = req_of(r);
    memset(q, 0, sizeof *q);
    q->op = op;
    q->be_stream = ts_cuda_backend_stream(be);
    if (ready != NULL)
        CUDA_CALL(cudaStreamWaitEvent(x->stream, ts_cuda_event_handle(ready), 0),
                  "cudaStreamWaitEvent (ready)");
    CUDA_CALL(cudaEventCreateWithFlags(&q->done, cudaEventDisableTiming), "cudaEventCreate");
    return TS_OK;
}

static ts_status end(ts_comm_t *c, struct ts_comm_req *r, ncclResult_t posted) {
    struct nccl_req *q = req_of(r);
    if (posted != ncclSuccess) {
        cudaEventDestroy(q->done);
        return nccl_fail(posted, q->op, c);
    }
    cudaError_t e = cudaEventRecord(q->done, ctx_of(c)->stream);
    if (e != cudaSuccess) {
        cudaEventDestroy(q->done);
        return ts_error(TS_ERR_CUDA, "nccl: %s: cudaEventRecord: %s", q->op, cudaGetErrorString(e));
    }
    r->active = true;
    return TS_OK;
}

static ts_status post_all_reduce(ts_comm_t *c, struct ts_backend *be, const struct ts_tensor *buf,
                                 enum ts_reduce_op op, ts_event_t *ready, struct ts_comm_req *r) {
    TS_CHECK(begin(c, be, ready, r, "ncclAllReduce"));
    struct nccl_ctx *x = ctx_of(c);
    return end(c, r,
               api.AllReduce(buf->data, buf->data, (size_t)ts_tensor_numel(buf), type_of(buf),
                             red_of(op), x->comm, x->stream));
}

/* ---- waiting (comm_poll.c does the polling and the timeout) ---- */

struct poll_ctx {
    ts_comm_t *c;
    cudaEvent_t done;
};

static enum ts_poll_state poll_query(void *p) {
    const struct poll_ctx *pc = p;
    const cudaError_t e = cudaEventQuery(pc->done);
    if (e == cudaSuccess)
        return TS_POLL_DONE;
    if (e == cudaErrorNotReady)
        return TS_POLL_PENDING;
    ts_error(TS_ERR_CUDA, "cudaEventQuery: %s", cudaGetErrorString(e));
    return TS_POLL_FAILED;
}

static ts_status poll_async(void *p) {
    const struct poll_ctx *pc = p;
    ncclResult_t async = ncclSuccess;
    const ncclResult_t r = api.CommGetAsyncError(ctx_of(pc->c)->comm, &async);
    if (r != ncclSuccess)
        return nccl_fail(r, "ncclCommGetAsyncError", pc->c);
    if (async != ncclSuccess && async != ncclInProgress)
        return nccl_fail(async, "NCCL (asynchronous error)", pc->c);
    return TS_OK;
}

static void poll_abort(void *p) {
    const struct poll_ctx *pc = p;
    struct nccl_ctx *x = ctx_of(pc->c);
    if (!x->aborted) {
        api.CommAbort(x->comm);
        x->comm = NULL;
        x->aborted = true;
    }
}

static ts_status nccl_test(ts_comm_t *c, struct ts_comm_req *r, bool *done) {
    struct nccl_req *q = req_of(r);
    struct poll_ctx pc = {c, q->done};
    *done = false;
    const enum ts_poll_state s = poll_query(&pc);
    if (s == TS_POLL_FAILED)
        return ts_error_wrap(TS_ERR_COMM, "rank %d: %s", c->rank, q->op);
    TS_CHECK(poll_async(&pc));
    if (s == TS_POLL_PENDING)
        return TS_OK;
    CUDA_CALL(cudaStreamWaitEvent(q->be_stream, q->done, 0), "cudaStreamWaitEvent (done)");
    cudaEventDestroy(q->done);
    r->active = false;
    *done = true;
    return TS_OK;
}

static ts_status nccl_wait(ts_comm_t *c, struct ts_comm_req *r) {
    struct nccl_req *q = req_of(r);
    struct poll_ctx pc = {c, q->done};
    const struct ts_comm_poll p = {
        .ctx = &pc, .query = poll_query, .async_error = poll_async, .abort = poll_abort};
    ts_status st = ts_comm_poll_wait(&p, ctx_of(c)->timeout_s, q->op, c->rank, c->size);
    if (st == TS_OK) {
        const cudaError_t e = cudaStreamWaitEvent(q->be_stream, q->done, 0);
        if (e != cudaSuccess)
            st = ts_error(TS_ERR_CUDA, "nccl: cudaStreamWaitEvent (done): %s",
                          cudaGetErrorString(e));
    }
    cudaEventDestroy(q->done);
    r->active = false;
    return st;
}

/* ---- collectives ---- */

static ts_status nccl_all_reduce(ts_comm_t *c, struct ts_backend *be, const struct ts_tensor *buf,
                                 enum ts_reduce_op op, ts_event_t *ready) {
    struct ts_comm_req r = {0};
    TS_CHECK(post_all_reduce(c, be, buf, op, ready, &r));
    return nccl_wait(c, &r);
}

static ts_status nccl_all_reduce_start(ts_comm_t *c, struct ts_backend *be,
                                       const struct ts_tensor *buf, ts_event_t *ready,
                                       struct ts_comm_req *r) {
    return post_all_reduce(c, be, buf, TS_REDUCE_SUM, ready, r);
}

static bool equal_parts(const ts_comm_t *c, const int *counts, const int *displs) {
    for (int i = 0; i < c->size; i++)
        if (counts[i] != counts[0] || (displs != NULL && displs[i] != i * counts[0]))
            return false;
    return true;
}

static ts_status nccl_reduce_scatter_start(ts_comm_t *c, struct ts_backend *be,
                                           const struct ts_tensor *buf, const int *counts,
                                           ts_event_t *ready, struct ts_comm_req *r) {
    TS_CHECK(begin(c, be, ready, r, "ncclReduceScatter"));
    struct nccl_ctx *x = ctx_of(c);
    const size_t esize = ts_dtype_size(buf->dtype);
    char *base = buf->data;
    if (equal_parts(c, counts, NULL)) {
        const size_t n = (size_t)counts[0];
        return end(c, r,
                   api.ReduceScatter(base, base + (size_t)c->rank * n * esize, n, type_of(buf),
                                     ncclSum, x->comm, x->stream));
    }
    /* Unequal parts: part i is reduced onto rank i, in place. */
    ncclResult_t res = api.GroupStart();
    size_t off = 0;
    for (int i = 0; i < c->size && res == ncclSuccess; i++) {
        if (counts[i] > 0)
            res = api.Reduce(base + off * esize, base + off * esize, (size_t)counts[i],
                             type_of(buf), ncclSum, i, x->comm, x->stream);
        off += (size_t)counts[i];
    }
    const ncclResult_t g = api.GroupEnd();
    return end(c, r, res != ncclSuccess ? res : g);
}

static ts_status nccl_all_gather_start(ts_comm_t *c, struct ts_backend *be,
                                       const struct ts_tensor *buf, const int *counts,
                                       const int *displs, ts_event_t *ready,
                                       struct ts_comm_req *r) {
    TS_CHECK(begin(c, be, ready, r, "ncclAllGather"));
    struct nccl_ctx *x = ctx_of(c);
    const size_t esize = ts_dtype_size(buf->dtype);
    char *base = buf->data;
    if (equal_parts(c, counts, displs)) {
        const size_t n = (size_t)counts[0];
        return end(c, r,
                   api.AllGather(base + (size_t)c->rank * n * esize, base, n, type_of(buf), x->comm,
                                 x->stream));
    }
    /* Unequal parts: part i is broadcast from rank i, in place. */
    ncclResult_t res = api.GroupStart();
    for (int i = 0; i < c->size && res == ncclSuccess; i++)
        if (counts[i] > 0)
            res = api.Broadcast(base + (size_t)displs[i] * esize, base + (size_t)displs[i] * esize,
                                (size_t)counts[i], type_of(buf), i, x->comm, x->stream);
    const ncclResult_t g = api.GroupEnd();
    return end(c, r, res != ncclSuccess ? res : g);
}

/* ---- host values: the MPI communicator ---- */

static ts_status nccl_broadcast_host(ts_comm_t *c, void *buf, size_t bytes, int root) {
    ts_comm_t *h = ctx_of(c)->host;
    return h->ops->broadcast_host(h, buf, bytes, root);
}

static ts_status nccl_all_reduce_host(ts_comm_t *c, double *buf, int count, enum ts_reduce_op op) {
    ts_comm_t *h = ctx_of(c)->host;
    return h->ops->all_reduce_host(h, buf, count, op);
}

static ts_status nccl_barrier(ts_comm_t *c) {
    ts_comm_t *h = ctx_of(c)->host;
    return h->ops->barrier(h);
}

static ts_status nccl_all_gather_u64(ts_comm_t *c, uint64_t value, uint64_t *out) {
    ts_comm_t *h = ctx_of(c)->host;
    return h->ops->all_gather_u64(h, value, out);
}

static void nccl_abort(ts_comm_t *c, int code) {
    struct nccl_ctx *x = ctx_of(c);
    if (!x->aborted && x->comm != NULL) {
        api.CommAbort(x->comm);
        x->comm = NULL;
        x->aborted = true;
    }
    if (x->host->ops->abort != NULL)
        x->host->ops->abort(x->host, code);
}

static ts_status wrap(ts_comm_t **out, ts_comm_t *host, bool owns_host, ncclComm_t nc, int device,
                      double timeout_s);

static ts_status nccl_split(ts_comm_t *c, int color, int key, ts_comm_t **out) {
    struct nccl_ctx *x = ctx_of(c);
    ts_comm_t *sub_host = NULL;
    TS_CHECK(x->host->ops->split(x->host, color, key, &sub_host));
    ncclComm_t sub = NULL;
    const ncclResult_t r = api.CommSplit(x->comm, color, key, &sub, NULL);
    if (r != ncclSuccess) {
        sub_host->ops->destroy(sub_host);
        return nccl_fail(r, "ncclCommSplit", c);
    }
    int device = 0;
    cudaGetDevice(&device);
    return wrap(out, sub_host, true, sub, device, x->timeout_s);
}

static const struct ts_comm_ops nccl_ops = {
    .name = "nccl",
    .memory = TS_COMM_MEM_DEVICE,
    .max_count = INT_MAX, /* counts and displacements are ints in the table */
    .destroy = nccl_destroy,
    .all_reduce = nccl_all_reduce,
    .broadcast_host = nccl_broadcast_host,
    .all_reduce_host = nccl_all_reduce_host,
    .barrier = nccl_barrier,
    .all_reduce_start = nccl_all_reduce_start,
    .reduce_scatter_start = nccl_reduce_scatter_start,
    .all_gather_start = nccl_all_gather_start,
    .test = nccl_test,
    .wait = nccl_wait,
    .all_gather_u64 = nccl_all_gather_u64,
    .split = nccl_split,
    .abort = nccl_abort,
};

/* Takes ownership of nc (and of host when owns_host), also on failure. */
static ts_status wrap(ts_comm_t **out, ts_comm_t *host, bool owns_host, ncclComm_t nc, int device,
                      double timeout_s) {
    *out = NULL;
    ts_comm_t *c = calloc(1, sizeof *c);
    struct nccl_ctx *x = calloc(1, sizeof *x);
    if (c == NULL || x == NULL) {
        free(c);
        free(x);
        api.CommDestroy(nc);
        if (owns_host)
            host->ops->destroy(host);
        return ts_error(TS_ERR_OOM, "nccl: out of memory");
    }
    c->ops = &nccl_ops;
    c->ctx = x;
    c->rank = host->rank;
    c->size = host->size;
    c->local_rank = host->local_rank;
    c->local_size = host->local_size;
    x->comm = nc;
    x->host = host;
    x->owns_host = owns_host;
    x->timeout_s = timeout_s;
    cudaError_t e = cudaSetDevice(device);
    if (e == cudaSuccess)
        e = cudaStreamCreateWithFlags(&x->stream, cudaStreamNonBlocking);
    if (e != cudaSuccess) {
        nccl_destroy(c);
        return ts_error(TS_ERR_CUDA, "nccl: cudaStreamCreate: %s", cudaGetErrorString(e));
    }
    *out = c;
    return TS_OK;
}

/* ---- the plug-in's entry points (comm_nccl.h) ---- */

EXPORT ts_status ts_cuda_plugin_nccl_version(int *version);
EXPORT ts_status ts_cuda_plugin_nccl_id(unsigned char *id, size_t bytes);
EXPORT ts_status ts_cuda_plugin_nccl_create(ts_comm_t **out, ts_comm_t *host, struct ts_backend *be,
                                            const unsigned char *id, size_t bytes,
                                            const struct ts_nccl_options *opt);
EXPORT const struct ts_comm_ops *ts_cuda_plugin_nccl_ops(void);

ts_status ts_cuda_plugin_nccl_version(int *version) {
    *version = 0;
    TS_CHECK(load_api());
    *version = api.version;
    return TS_OK;
}

ts_status ts_cuda_plugin_nccl_id(unsigned char *id, size_t bytes) {
    _Static_assert(sizeof(ncclUniqueId) == TS_NCCL_ID_BYTES, "ncclUniqueId's size changed");
    if (bytes != sizeof(ncclUniqueId))
        return ts_error(TS_ERR_INVALID_ARG, "nccl id: %zu bytes, NCCL's is %zu", bytes,
                        sizeof(ncclUniqueId));
    TS_CHECK(load_api());
    ncclUniqueId u;
    NCCL_TRY(api.GetUniqueId(&u), "ncclGetUniqueId", (const ts_comm_t *)NULL);
    memcpy(id, &u, sizeof u);
    return TS_OK;
}

ts_status ts_cuda_plugin_nccl_create(ts_comm_t **out, ts_comm_t *host, struct ts_backend *be,
                                     const unsigned char *id, size_t bytes,
                                     const struct ts_nccl_options *opt) {
    *out = NULL;
    int n = 0;
    if (cudaGetDeviceCount(&n) != cudaSuccess || n == 0) {
        cudaGetLastError();
        return ts_error(TS_ERR_UNSUPPORTED, "nccl: no GPU on rank %d: NCCL needs one per rank",
                        host != NULL ? host->rank : 0);
    }
    if (host == NULL || be == NULL || be->host_memory || strcmp(be->name, "cuda") != 0)
        return ts_error(TS_ERR_INVALID_ARG, "nccl: needs the MPI world and a CUDA backend");
    if (bytes != sizeof(ncclUniqueId))
        return ts_error(TS_ERR_INVALID_ARG, "nccl id: %zu bytes, NCCL's is %zu", bytes,
                        sizeof(ncclUniqueId));
    TS_CHECK(load_api());
    const int device = ts_cuda_backend_device(be);
    CUDA_CALL(cudaSetDevice(device), "cudaSetDevice");
    ncclUniqueId u;
    memcpy(&u, id, sizeof u);
    ncclComm_t nc = NULL;
    NCCL_TRY(api.CommInitRank(&nc, host->size, u, host->rank), "ncclCommInitRank", host);
    return wrap(out, host, false, nc, device, opt != NULL ? opt->timeout_s : 0);
}

const struct ts_comm_ops *ts_cuda_plugin_nccl_ops(void) { return &nccl_ops; }
