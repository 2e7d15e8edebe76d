/* resume.h: where a `tessera train` run starts, and what a checkpoint fixes about it.
 *
 * --resume continues from the run's latest checkpoint and starts fresh where there is none (so a
 * requeued job can always pass it); --resume-from PATH names a checkpoint (or a run); --init-from
 * PATH takes the weights only. A flag the checkpoint fixes (the model's shape) is refused, naming
 * it, when given with another value, and taken from the checkpoint when not given.
 * metrics.jsonl is cut back to the checkpoint's step before it is appended to, so every step
 * appears once even when the interrupted run had logged steps past its last checkpoint. */
#ifndef TS_LAUNCH_RESUME_H
#define TS_LAUNCH_RESUME_H

#include <stdbool.h>
#include <stdint.h>

#include "checkpoint/ckpt.h"
#include "kernels/fs.h"
#include "trainer/gpt.h"

enum ts_start_kind {
    TS_START_FRESH,  /* initialise from the seed */
    TS_START_RESUME, /* everything from a checkpoint */
    TS_START_INIT,   /* weights from a checkpoint, the rest fresh (fine-tuning) */
};

struct ts_start {
    enum ts_start_kind kind;
    char path[TS_PATH_MAX]; /* the checkpoint directory (resolved) */
};

/* Decides the start from the flags. A run directory that already holds checkpoints is refused
 * unless `overwrite` (or --resume): a fresh run, --init-from and --resume-from alike. */
ts_status ts_launch_find_start(const char *out, bool resume, const char *resume_from,
                               const char *init_from, bool overwrite,
                               struct ts_start *start) TS_MUST_CHECK;

/* Keeps the lines of metrics.jsonl whose "step" is <= step (atomically: a new file renamed
 * over the old). A missing file is fine. */
ts_status ts_launch_trim_metrics(const char *path, int64_t step) TS_MUST_CHECK;

/* --overwrite: removes everything in a run's checkpoints directory except the checkpoint
 * `keep` (the one a --resume-from or --init-from reads, when it lies inside; NULL for none).
 * A missing directory is fine. */
ts_status ts_launch_clear_checkpoints(const char *ckpt_dir, const char *keep) TS_MUST_CHECK;

/* rm -rf path (nothing when it does not exist). */
ts_status ts_launch_remove_tree(const char *path) TS_MUST_CHECK;

/* The weights `--ckpt` names for eval and sample: a run directory (its latest checkpoint), a
 * checkpoint directory, or an earlier version's model.bin (or a run directory holding one). open
 * reads the model config; load fills a model created from it. */
struct ts_launch_weights {
    ts_ckpt_t *ck;          /* NULL for model.bin */
    char path[TS_PATH_MAX]; /* the checkpoint directory or the model.bin */
};
ts_status ts_launch_weights_open(struct ts_launch_weights *w, const char *spec,
                                 struct ts_gpt_config *cfg) TS_MUST_CHECK;
ts_status ts_launch_weights_load(struct ts_launch_weights *w, ts_gpt_t *gpt) TS_MUST_CHECK;
void ts_launch_weights_close(struct ts_launch_weights *w);

#endif
