/* common.h: what the `tessera` subcommands share: backend selection from flags, run
 * directories, timing, and the one-line error report every failure ends in. */
#ifndef TS_LAUNCH_COMMON_H
#define TS_LAUNCH_COMMON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "kernels/backend.h"
#include "trainer/gpt.h"

/* Creates the backend a run asked for: --device (cpu|cuda|auto: the GPU when the CUDA plug-in
 * loads and finds one), --blas (auto|openblas|reference), --threads (0 = all cores; CPU only). */
ts_status ts_launch_backend(struct ts_backend **out, const char *device, const char *blas,
                            int threads) TS_MUST_CHECK;
/* The same for one rank of several: a GPU is chosen by local rank (local_rank modulo the devices
 * visible, so one GPU per rank under mpirun, and the one GPU Slurm's CUDA_VISIBLE_DEVICES leaves
 * a task); local_rank < 0: device 0. */
ts_status ts_launch_backend_at(struct ts_backend **out, const char *device, const char *blas,
                               int threads, int local_rank) TS_MUST_CHECK;

/* --precision fp32|bf16|auto (bf16 where the backend computes in it) as the model's dtype. */
ts_status ts_launch_precision(const struct ts_backend *be, const char *precision,
                              enum ts_dtype *out) TS_MUST_CHECK;

bool ts_launch_file_exists(const char *path);

/* path made absolute from the working directory, its directory part resolved (realpath); the
 * last part is kept as given, so a glob stays a glob. Recorded paths (config.json, checkpoints)
 * then work from any directory. */
ts_status ts_launch_abs_path(const char *path, char *out, size_t len) TS_MUST_CHECK;

/* The model file of a run directory or a path to the file itself. */
ts_status ts_launch_model_path(const char *ckpt, char *out, size_t len) TS_MUST_CHECK;

double ts_launch_now_s(void); /* monotonic seconds */

/* Prints "tessera <cmd>: <ts_last_error()>" to stderr (prefixed "[rank N] " in a multi-rank
 * job) and returns code. */
int ts_launch_fail(const char *cmd, int code);
void ts_launch_set_rank(int rank);

#endif
