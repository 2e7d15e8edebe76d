/* comm_nccl_world.c: the core's side of the NCCL communicator (comm_nccl.h): the id made on
 * rank 0 and broadcast as bytes over the MPI world, and the plug-in's NCCL entry points found in
 * the loaded plug-in. No CUDA and no NCCL here: `tessera` links neither. */
#include "comm/comm_nccl.h"

#include <dlfcn.h>
#include <stdio.h>
#include <string.h>

#include "kernels/backend_load.h"

/* What rank 0 broadcasts: its status, its message on failure, the id. */
struct id_msg {
    int32_t status;
    char error[480];
    unsigned char id[TS_NCCL_ID_BYTES];
};

ts_status ts_comm_share_id(ts_comm_t *host,
                           ts_status (*make)(void *ctx, unsigned char *id, size_t bytes), void *ctx,
                           unsigned char *id, size_t bytes) {
    if (bytes > TS_NCCL_ID_BYTES)
        return ts_error(TS_ERR_INVALID_ARG, "share id: %zu bytes, at most %d", bytes,
                        TS_NCCL_ID_BYTES);
    struct id_msg m;
    memset(&m, 0, sizeof m);
    if (ts_comm_rank(host) == 0) {
        m.status = (int32_t)make(ctx, m.id, bytes);
        if (m.status != TS_OK)
            snprintf(m.error, sizeof m.error, "%s", ts_last_error());
    }
    TS_CHECK(ts_comm_broadcast_host(host, &m, sizeof m, 0));
    if (m.status != TS_OK)
        return ts_error((ts_status)m.status, "rank 0 could not create the NCCL id: %s", m.error);
    memcpy(id, m.id, bytes);
    return TS_OK;
}

/* An entry point of the loaded plug-in (NULL: an error naming it). */
static ts_status plugin_sym(const char *name, void **out) {
    const struct ts_cuda_plugin *p;
    *out = NULL;
    TS_CHECK(ts_cuda_plugin_open(&p));
    *out = dlsym(p->handle, name);
    if (*out == NULL)
        return ts_error(TS_ERR_UNSUPPORTED, "%s has no %s: rebuild the plug-in", p->path, name);
    return TS_OK;
}

ts_status ts_comm_nccl_version(int *version) {
    *version = 0;
    void *s;
    TS_CHECK(plugin_sym(TS_NCCL_SYM_VERSION, &s));
    ts_nccl_version_fn fn;
    memcpy(&fn, &s, sizeof fn);
    return fn(version);
}

static ts_status make_id(void *ctx, unsigned char *id, size_t bytes) {
    ts_nccl_id_fn fn;
    memcpy(&fn, ctx, sizeof fn);
    return fn(id, bytes);
}

ts_status ts_comm_nccl_create(ts_comm_t **out, ts_comm_t *host, struct ts_backend *be,
                              const struct ts_nccl_options *opt) {
    *out = NULL;
    void *s_id, *s_create;
    TS_CHECK(plugin_sym(TS_NCCL_SYM_ID, &s_id));
    TS_CHECK(plugin_sym(TS_NCCL_SYM_CREATE, &s_create));
    ts_nccl_id_fn id_fn;
    ts_nccl_create_fn create_fn;
    memcpy(&id_fn, &s_id, sizeof id_fn);
    memcpy(&create_fn, &s_create, sizeof create_fn);
    unsigned char id[TS_NCCL_ID_BYTES];
    TS_CHECK(ts_comm_share_id(host, make_id, &id_fn, id, sizeof id));
    return create_fn(out, host, be, id, sizeof id, opt);
}
