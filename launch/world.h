/* world.h: the job's processes as `tessera train` sees them: the world communicator (MPI under
 * mpirun or srun, the single-process group otherwise), per-rank logging, the layout line, the
 * check that every rank got the same configuration, and the job-wide failure path. */
#ifndef TS_LAUNCH_WORLD_H
#define TS_LAUNCH_WORLD_H

#include <stdbool.h>
#include <stdint.h>

#include "comm/grid.h"

/* Under mpirun or srun (detected from the environment) initialises MPI and returns its world;
 * otherwise the single-process group, without touching MPI (so a plain `tessera train` needs no
 * MPI runtime and starts no helper daemon). Sets the log prefix "[rank N] " and, on ranks other
 * than 0, the level to warnings (unless TS_LOG asks for more). */
ts_status ts_world_create(ts_comm_t **out, int *argc, char ***argv) TS_MUST_CHECK;

/* Logs (rank 0, info) world/dp/tp sizes and every rank's host and local rank. Collective. */
ts_status ts_world_log_layout(ts_comm_t *world, const struct ts_grid *grid) TS_MUST_CHECK;

/* `canonical` is "key=value\n" lines of every setting that must match on all ranks. Collective:
 * every rank gets TS_ERR_INVALID_ARG with the same message naming the first rank and setting
 * that differ from rank 0 when any rank differs. */
ts_status ts_world_check_agreement(ts_comm_t *world, const char *canonical) TS_MUST_CHECK;

/* A failure on this rank that the others may not share: prints the error line (with the rank)
 * and, in a multi-rank job, aborts every rank (MPI_Abort) so no peer waits in a collective.
 * Returns code where it cannot abort (a single process). */
int ts_world_fail(ts_comm_t *world, const char *cmd, int code);

/* The test hook TS_FAULT_INJECT=RANK:STEP:KIND (KIND io, kill, term, usr1 or int): true when
 * this rank must fail before update STEP; *kill says whether to die by SIGKILL rather than return
 * an error. term, usr1 and int send this rank that signal before update STEP (as a scheduler
 * would) and return false. */
bool ts_world_fault_due(int rank, int64_t step, bool *kill);

#endif
