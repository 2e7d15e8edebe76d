/* comm_mpi.h: the MPI backend of the communicator (host buffers).
 *
 * Built as its own static library (ts_comm_mpi), linked only into binaries that may run under
 * mpirun or srun; the core and the GPU check link the single-process comm alone and need no MPI.
 * Every MPI communicator it makes returns errors (MPI_ERRORS_RETURN) as TS_ERR_COMM with MPI's
 * message, so the caller can log which rank failed and abort the job (ts_comm_abort). */
#ifndef TS_COMM_MPI_H
#define TS_COMM_MPI_H

#include <stddef.h>

#include "comm/comm.h"

/* Initialises MPI (thread level FUNNELED: only the calling thread talks MPI) and returns the
 * world communicator: rank, size, and the local rank and size among the processes of this
 * host, cross-checked against the launcher's environment (ts_comm_check_launcher_env). MPI is
 * finalised when the last communicator made by this backend is destroyed. */
ts_status ts_comm_mpi_create_world(ts_comm_t **out, int *argc, char ***argv) TS_MUST_CHECK;

/* The host name of every rank, gathered to all: out gets size rows of `stride` bytes each
 * (stride >= 64 recommended; longer names are cut). Collective. */
ts_status ts_comm_mpi_host_names(ts_comm_t *comm, char *out, size_t stride) TS_MUST_CHECK;

#endif
