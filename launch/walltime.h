/* walltime.h: how long the job may run: --walltime, or the Slurm allocation's end.
 *
 * Under Slurm the end comes from SLURM_JOB_END_TIME (a Unix time, set in the job's environment
 * by recent Slurm versions) when it is set, else from `squeue -h -j $SLURM_JOB_ID -o %e` (one
 * subprocess at start, on rank 0 only). Both limits may hold; the earlier wins. */
#ifndef TS_LAUNCH_WALLTIME_H
#define TS_LAUNCH_WALLTIME_H

#include <stddef.h>

#include "kernels/status.h"

/* "HH:MM:SS", "MM:SS", "D-HH:MM:SS" (Slurm's spellings) or plain seconds ("90", "1.5") into
 * seconds > 0. TS_ERR_INVALID_ARG names the text. */
ts_status ts_walltime_parse(const char *text, double *seconds) TS_MUST_CHECK;

/* Seconds left in the Slurm allocation (now to its end), or a negative number when not under
 * Slurm or the end is unknown (unlimited). *source names where it came from (for the log). */
double ts_walltime_slurm_left(char *source, size_t len);

#endif
