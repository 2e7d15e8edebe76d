/* comm_mpi.c: the communicator over MPI, on host buffers.
 *
 * Each ts_comm owns a duplicated MPI communicator with MPI_ERRORS_RETURN, so a failed call
 * becomes a TS_ERR_COMM status with MPI's own message instead of MPI's default abort with no
 * context; the caller logs its rank and aborts the job. Non-blocking collectives are MPI-3's
 * MPI_I* forms; the request stores the MPI_Request and, for the in-place reduce-scatter, the
 * move that puts this rank's part back at its own offset (MPI_IN_PLACE leaves it at the start).
 * A buffer's producing work is waited for on the host (be->event_sync on the caller's ready
 * event) before MPI touches it.
 *
 * f32 is MPI_FLOAT with MPI's own sum and max. MPI has no bf16, so bf16 is a 2-byte datatype of
 * our own with user-defined sum and max (each addition in f32, rounded to bf16 to nearest even,
 * as NCCL's bf16 sum does); an all-gather of bf16 parameters is a plain copy. Float sums use
 * MPI's algorithm, which for a fixed size and group is deterministic. */
#include "comm/comm_mpi.h"

#include <limits.h>
#include <mpi.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/bf16.h"

struct mpi_ctx {
    MPI_Comm comm;
};

/* What a request holds between start and completion. */
struct mpi_req {
    MPI_Request req;
    char *move_dst; /* reduce-scatter fix-up: move move_bytes from move_src to move_dst */
    char *move_src;
    size_t move_bytes;
};
_Static_assert(sizeof(struct mpi_req) <= sizeof(((struct ts_comm_req *)0)->impl),
               "struct ts_comm_req.impl is too small for an MPI request");

static int live_comms; /* MPI is finalised when the last one goes */

/* bf16 for MPI: a datatype and the reductions over it, made once after MPI_Init. */
static MPI_Datatype bf16_type = MPI_DATATYPE_NULL;
static MPI_Op bf16_sum = MPI_OP_NULL, bf16_max = MPI_OP_NULL;
static void free_bf16(void);

static struct mpi_req *req_of(struct ts_comm_req *r) { return (struct mpi_req *)(void *)r->impl; }
static MPI_Comm comm_of(const ts_comm_t *c) { return ((const struct mpi_ctx *)c->ctx)->comm; }

static ts_status mpi_fail(int rc, const char *what, const ts_comm_t *c) {
    char msg[MPI_MAX_ERROR_STRING];
    int len = 0;
    if (MPI_Error_string(rc, msg, &len) != MPI_SUCCESS)
        snprintf(msg, sizeof(msg), "error %d", rc);
    return ts_error(TS_ERR_COMM, "%s failed on rank %d of %d: %s (a peer may have failed)", what,
                    c->rank, c->size, msg);
}

#define MPI_TRY(call, what, c)                                                                     \
    do {                                                                                           \
        int mpi_rc_ = (call);                                                                      \
        if (mpi_rc_ != MPI_SUCCESS)                                                                \
            return mpi_fail(mpi_rc_, (what), (c));                                                 \
    } while (0)

static void mpi_destroy(ts_comm_t *c) {
    struct mpi_ctx *ctx = c->ctx;
    if (ctx != NULL) {
        int finalized = 0;
        MPI_Finalized(&finalized);
        if (!finalized && ctx->comm != MPI_COMM_NULL)
            MPI_Comm_free(&ctx->comm);
        free(ctx);
    }
    free(c);
    if (--live_comms == 0) {
        int finalized = 0;
        MPI_Finalized(&finalized);
        if (!finalized) {
            free_bf16();
            MPI_Finalize();
        }
    }
}

/* ---- bf16 ---- */

/* MPI_User_function over bf16: inout[i] = in[i] (+ or max) inout[i], in f32, rounded. */
static void bf16_sum_fn(void *in, void *inout, int *len, MPI_Datatype *type) {
    (void)type;
    const uint16_t *a = in;
    uint16_t *b = inout;
    for (int i = 0; i < *len; i++)
        b[i] = ts_bf16_from_f32(ts_f32_from_bf16(a[i]) + ts_f32_from_bf16(b[i]));
}

static void bf16_max_fn(void *in, void *inout, int *len, MPI_Datatype *type) {
    (void)type;
    const uint16_t *a = in;
    uint16_t *b = inout;
    for (int i = 0; i < *len; i++)
        if (ts_f32_from_bf16(a[i]) > ts_f32_from_bf16(b[i]))
            b[i] = a[i];
}

static ts_status make_bf16(void) {
    if (bf16_type != MPI_DATATYPE_NULL)
        return TS_OK;
    if (MPI_Type_contiguous(1, MPI_UINT16_T, &bf16_type) != MPI_SUCCESS ||
        MPI_Type_commit(&bf16_type) != MPI_SUCCESS ||
        MPI_Op_create(bf16_sum_fn, 1, &bf16_sum) != MPI_SUCCESS ||
        MPI_Op_create(bf16_max_fn, 1, &bf16_max) != MPI_SUCCESS)
        return ts_error(TS_ERR_COMM, "MPI: cannot create the bf16 datatype and reductions");
    return TS_OK;
}

static void free_bf16(void) {
    if (bf16_sum != MPI_OP_NULL)
        MPI_Op_free(&bf16_sum);
    if (bf16_max != MPI_OP_NULL)
        MPI_Op_free(&bf16_max);
    if (bf16_type != MPI_DATATYPE_NULL)
        MPI_Type_free(&bf16_type);
}

static MPI_Datatype type_of(const struct ts_tensor *t) {
    return t->dtype == TS_DTYPE_BF16 ? bf16_type : MPI_FLOAT;
}

static MPI_Op op_of(const struct ts_tensor *t, enum ts_reduce_op op) {
    if (t->dtype == TS_DTYPE_BF16)
        return op == TS_REDUCE_MAX ? bf16_max : bf16_sum;
    return op == TS_REDUCE_MAX ? MPI_MAX : MPI_SUM;
}

/* The host waits for the buffer's producer (that event only, not the whole device). */
static ts_status wait_ready(struct ts_backend *be, ts_event_t *ready) {
    if (ready == NULL)
        return TS_OK;
    return be->event_sync(be, ready);
}

/* ---- collectives ---- */

static ts_status mpi_all_reduce(ts_comm_t *c, struct ts_backend *be, const struct ts_tensor *buf,
                                enum ts_reduce_op op, ts_event_t *ready) {
    TS_CHECK(wait_ready(be, ready));
    const int n = (int)ts_tensor_numel(buf); /* comm.c: n <= max_count = INT_MAX */
    MPI_TRY(MPI_Allreduce(MPI_IN_PLACE, buf->data, n, type_of(buf), op_of(buf, op), comm_of(c)),
            "MPI_Allreduce", c);
    if (op != TS_REDUCE_AVG)
        return TS_OK;
    if (buf->dtype == TS_DTYPE_F32) {
        float *data = buf->data;
        const float inv = 1.0f / (float)c->size;
        for (int i = 0; i < n; i++)
            data[i] *= inv;
    } else {
        uint16_t *data = buf->data;
        const float inv = 1.0f / (float)c->size;
        for (int i = 0; i < n; i++)
            data[i] = ts_bf16_from_f32(ts_f32_from_bf16(data[i]) * inv);
    }
    return TS_OK;
}

static ts_status mpi_broadcast_host(ts_comm_t *c, void *buf, size_t bytes, int root) {
    if (bytes > INT_MAX)
        return ts_error(TS_ERR_UNSUPPORTED, "broadcast: %zu bytes exceed MPI's int count", bytes);
    MPI_TRY(MPI_Bcast(buf, (int)bytes, MPI_BYTE, root, comm_of(c)), "MPI_Bcast", c);
    return TS_OK;
}

static ts_status mpi_all_reduce_host(ts_comm_t *c, double *buf, int count, enum ts_reduce_op op) {
    MPI_TRY(MPI_Allreduce(MPI_IN_PLACE, buf, count, MPI_DOUBLE,
                          op == TS_REDUCE_MAX ? MPI_MAX : MPI_SUM, comm_of(c)),
            "MPI_Allreduce", c);
    if (op == TS_REDUCE_AVG)
        for (int i = 0; i < count; i++)
            buf[i] /= (double)c->size;
    return TS_OK;
}

static ts_status mpi_barrier(ts_comm_t *c) {
    MPI_TRY(MPI_Barrier(comm_of(c)), "MPI_Barrier", c);
    return TS_OK;
}

static ts_status mpi_all_reduce_start(ts_comm_t *c, struct ts_backend *be,
                                      const struct ts_tensor *buf, ts_event_t *ready,
                                      struct ts_comm_req *r) {
    TS_CHECK(wait_ready(be, ready));
    struct mpi_req *q = req_of(r);
    memset(q, 0, sizeof(*q));
    const int n = (int)ts_tensor_numel(buf);
    MPI_TRY(MPI_Iallreduce(MPI_IN_PLACE, buf->data, n, type_of(buf), op_of(buf, TS_REDUCE_SUM),
                           comm_of(c), &q->req),
            "MPI_Iallreduce", c);
    r->active = true;
    return TS_OK;
}

static ts_status mpi_reduce_scatter_start(ts_comm_t *c, struct ts_backend *be,
                                          const struct ts_tensor *buf, const int *counts,
                                          ts_event_t *ready, struct ts_comm_req *r) {
    TS_CHECK(wait_ready(be, ready));
    struct mpi_req *q = req_of(r);
    memset(q, 0, sizeof(*q));
    const size_t esize = ts_dtype_size(buf->dtype);
    int64_t off = 0;
    for (int i = 0; i < c->rank; i++)
        off += counts[i];
    /* In place, MPI leaves this rank's sum at the start of the buffer; completion moves it. */
    q->move_src = buf->data;
    q->move_dst = (char *)buf->data + (size_t)off * esize;
    q->move_bytes = off > 0 ? (size_t)counts[c->rank] * esize : 0;
    MPI_TRY(MPI_Ireduce_scatter(MPI_IN_PLACE, buf->data, counts, type_of(buf),
                                op_of(buf, TS_REDUCE_SUM), comm_of(c), &q->req),
            "MPI_Ireduce_scatter", c);
    r->active = true;
    return TS_OK;
}

static ts_status mpi_all_gather_start(ts_comm_t *c, struct ts_backend *be,
                                      const struct ts_tensor *buf, const int *counts,
                                      const int *displs, ts_event_t *ready, struct ts_comm_req *r) {
    TS_CHECK(wait_ready(be, ready));
    struct mpi_req *q = req_of(r);
    memset(q, 0, sizeof(*q));
    MPI_TRY(MPI_Iallgatherv(MPI_IN_PLACE, 0, MPI_DATATYPE_NULL, buf->data, counts, displs,
                            type_of(buf), comm_of(c), &q->req),
            "MPI_Iallgatherv", c);
    r->active = true;
    return TS_OK;
}

static void finish(struct ts_comm_req *r) {
    struct mpi_req *q = req_of(r);
    if (q->move_bytes > 0)
        memmove(q->move_dst, q->move_src, q->move_bytes);
    r->active = false;
}

static ts_status mpi_test(ts_comm_t *c, struct ts_comm_req *r, bool *done) {
    int flag = 0;
    MPI_TRY(MPI_Test(&req_of(r)->req, &flag, MPI_STATUS_IGNORE), "MPI_Test", c);
    *done = flag != 0;
    if (*done)
        finish(r);
    return TS_OK;
}

static ts_status mpi_wait(ts_comm_t *c, struct ts_comm_req *r) {
    MPI_TRY(MPI_Wait(&req_of(r)->req, MPI_STATUS_IGNORE), "MPI_Wait", c);
    finish(r);
    return TS_OK;
}

static ts_status mpi_all_gather_u64(ts_comm_t *c, uint64_t value, uint64_t *out) {
    MPI_TRY(MPI_Allgather(&value, 1, MPI_UINT64_T, out, 1, MPI_UINT64_T, comm_of(c)),
            "MPI_Allgather", c);
    return TS_OK;
}

static void mpi_abort(ts_comm_t *c, int code) { MPI_Abort(comm_of(c), code); }

static ts_status wrap(ts_comm_t **out, MPI_Comm mc);

static ts_status mpi_split(ts_comm_t *c, int color, int key, ts_comm_t **out) {
    MPI_Comm sub;
    MPI_TRY(MPI_Comm_split(comm_of(c), color, key, &sub), "MPI_Comm_split", c);
    return wrap(out, sub);
}

static const struct ts_comm_ops mpi_ops = {
    .name = "mpi",
    .memory = TS_COMM_MEM_HOST,
    .max_count = INT_MAX, /* MPI 3's count type; Open MPI 4.1 has no large-count collectives */
    .destroy = mpi_destroy,
    .all_reduce = mpi_all_reduce,
    .broadcast_host = mpi_broadcast_host,
    .all_reduce_host = mpi_all_reduce_host,
    .barrier = mpi_barrier,
    .all_reduce_start = mpi_all_reduce_start,
    .reduce_scatter_start = mpi_reduce_scatter_start,
    .all_gather_start = mpi_all_gather_start,
    .test = mpi_test,
    .wait = mpi_wait,
    .all_gather_u64 = mpi_all_gather_u64,
    .split = mpi_split,
    .abort = mpi_abort,
};

/* Takes ownership of mc (freed on failure): errors return, rank/size/local rank filled in. */
static ts_status wrap(ts_comm_t **out, MPI_Comm mc) {
    *out = NULL;
    ts_comm_t *c = calloc(1, sizeof(*c));
    struct mpi_ctx *ctx = calloc(1, sizeof(*ctx));
    if (c == NULL || ctx == NULL) {
        free(c);
        free(ctx);
        MPI_Comm_free(&mc);
        return ts_error(TS_ERR_OOM, "comm: out of memory");
    }
    ctx->comm = mc;
    c->ops = &mpi_ops;
    c->ctx = ctx;
    live_comms++;
    MPI_Comm_set_errhandler(mc, MPI_ERRORS_RETURN);
    MPI_Comm_rank(mc, &c->rank);
    MPI_Comm_size(mc, &c->size);
    MPI_Comm node;
    int rc = MPI_Comm_split_type(mc, MPI_COMM_TYPE_SHARED, c->rank, MPI_INFO_NULL, &node);
    if (rc != MPI_SUCCESS) {
        ts_status st = mpi_fail(rc, "MPI_Comm_split_type", c);
        mpi_destroy(c);
        return st;
    }
    MPI_Comm_rank(node, &c->local_rank);
    MPI_Comm_size(node, &c->local_size);
    MPI_Comm_free(&node);
    *out = c;
    return TS_OK;
}

ts_status ts_comm_mpi_create_world(ts_comm_t **out, int *argc, char ***argv) {
    *out = NULL;
    int inited = 0, provided = 0;
    MPI_Initialized(&inited);
    if (!inited && MPI_Init_thread(argc, argv, MPI_THREAD_FUNNELED, &provided) != MPI_SUCCESS)
        return ts_error(TS_ERR_COMM, "MPI_Init_thread failed");
    MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
    ts_status st = make_bf16();
    if (st != TS_OK) {
        if (live_comms == 0) {
            free_bf16();
            MPI_Finalize();
        }
        return st;
    }
    MPI_Comm world;
    if (MPI_Comm_dup(MPI_COMM_WORLD, &world) != MPI_SUCCESS) {
        if (live_comms == 0) {
            free_bf16();
            MPI_Finalize();
        }
        return ts_error(TS_ERR_COMM, "MPI_Comm_dup of the world failed");
    }
    ts_comm_t *c;
    TS_CHECK(wrap(&c, world));
    st = ts_comm_check_launcher_env(c->rank, c->size, c->local_rank);
    if (st != TS_OK) {
        ts_error_wrap(st, "rank %d", c->rank);
        mpi_destroy(c);
        return st;
    }
    *out = c;
    return TS_OK;
}

ts_status ts_comm_mpi_host_names(ts_comm_t *c, char *out, size_t stride) {
    if (c->ops != &mpi_ops) {
        snprintf(out, stride, "localhost");
        return TS_OK;
    }
    if (stride < 2 || stride > INT_MAX)
        return ts_error(TS_ERR_INVALID_ARG, "host names: bad stride %zu", stride);
    char name[MPI_MAX_PROCESSOR_NAME + 1] = {0};
    int len = 0;
    MPI_Get_processor_name(name, &len);
    char *mine = calloc(1, stride);
    if (mine == NULL)
        return ts_error(TS_ERR_OOM, "host names: out of memory");
    snprintf(mine, stride, "%s", name);
    int rc = MPI_Allgather(mine, (int)stride, MPI_CHAR, out, (int)stride, MPI_CHAR, comm_of(c));
    free(mine);
    if (rc != MPI_SUCCESS)
        return mpi_fail(rc, "MPI_Allgather (host names)", c);
    return TS_OK;
}
