/* comm_nccl.h: the NCCL communicator, which lives in the CUDA plug-in (comm_nccl.c built into
 * libtessera_cuda.so), and the core's side of creating it (comm_nccl_world.c).
 *
 * NCCL moves device buffers of the CUDA backend (TS_COMM_MEM_DEVICE); the host collectives
 * (losses, norms, flags, agreement hashes) go to the MPI communicator it wraps. The plug-in
 * never links MPI and opens libnccl.so.2 with dlopen, so it still loads where NCCL is absent;
 * `tessera` links neither. Creation: rank 0 asks the plug-in for an ncclUniqueId, the core
 * broadcasts its bytes over the MPI world, every rank hands them to the plug-in. */
#ifndef TS_COMM_NCCL_H
#define TS_COMM_NCCL_H

#include <stddef.h>

#include "comm/comm.h"

#define TS_NCCL_ID_BYTES 128 /* NCCL_UNIQUE_ID_BYTES */

struct ts_nccl_options {
    double timeout_s; /* a collective not complete after this long aborts NCCL; <= 0: none */
};

/* The plug-in's NCCL entry points (C linkage, dlsym'ed from the plug-in's handle). */
/* NCCL's version code (ncclGetVersion, e.g. 22809 for 2.28.9); an error saying why NCCL is
 * unusable (libnccl.so.2 not found, too old: 2.18 is the oldest, for ncclCommSplit). */
typedef ts_status (*ts_nccl_version_fn)(int *version);
/* A new ncclUniqueId into id (TS_NCCL_ID_BYTES); rank 0 only. */
typedef ts_status (*ts_nccl_id_fn)(unsigned char *id, size_t bytes);
/* The communicator of host->size ranks on be's device (be a CUDA backend of this plug-in),
 * collective over host. host stays owned by the caller and outlives the result. */
typedef ts_status (*ts_nccl_create_fn)(ts_comm_t **out, ts_comm_t *host, struct ts_backend *be,
                                       const unsigned char *id, size_t bytes,
                                       const struct ts_nccl_options *opt);
/* The table the communicator fills (for tests: every slot is set). */
typedef const struct ts_comm_ops *(*ts_nccl_ops_fn)(void);
#define TS_NCCL_SYM_VERSION "ts_cuda_plugin_nccl_version"
#define TS_NCCL_SYM_ID "ts_cuda_plugin_nccl_id"
#define TS_NCCL_SYM_CREATE "ts_cuda_plugin_nccl_create"
#define TS_NCCL_SYM_OPS "ts_cuda_plugin_nccl_ops"

/* ---- the core's side (comm_nccl_world.c; no CUDA, no NCCL) ---- */

/* Rank 0 calls make(ctx, id, bytes); its bytes (or its error) reach every rank of host over
 * host's broadcast. Every rank returns the same status. */
ts_status ts_comm_share_id(ts_comm_t *host,
                           ts_status (*make)(void *ctx, unsigned char *id, size_t bytes), void *ctx,
                           unsigned char *id, size_t bytes) TS_MUST_CHECK;

/* Loads the plug-in and asks it for NCCL's version; an error saying why NCCL cannot be used. */
ts_status ts_comm_nccl_version(int *version) TS_MUST_CHECK;

/* The NCCL communicator over host's ranks on be's device (collective over host). The result
 * borrows host, which must outlive it. */
ts_status ts_comm_nccl_create(ts_comm_t **out, ts_comm_t *host, struct ts_backend *be,
                              const struct ts_nccl_options *opt) TS_MUST_CHECK;

#endif
