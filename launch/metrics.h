/* metrics.h: the run's metrics.jsonl, one JSON object per line.
 *
 * Lines are flushed as they are written so a killed run keeps every finished step. Floats are
 * printed with enough digits to read back as the same value (%.9g for float, %.17g for double). */
#ifndef TS_METRICS_H
#define TS_METRICS_H

#include <stdbool.h>

#include "trainer/train.h"

typedef struct ts_metrics ts_metrics_t;

/* Opens path for writing (append keeps existing lines). */
ts_status ts_metrics_open(ts_metrics_t **out, const char *path, bool append) TS_MUST_CHECK;
void ts_metrics_close(ts_metrics_t *m);

/* {"step":..,"loss":..,"lr":..,"grad_norm":..,"tokens":..,"step_ms":..,"tok_per_s":..,
 * "comm_wait_ms":..} where step counts updates done (1 after the first update) and
 * comm_wait_ms is the gradient reduction time backward did not hide. */
ts_status ts_metrics_step(ts_metrics_t *m, const struct ts_step_record *rec) TS_MUST_CHECK;
/* {"step":..,"val_loss":..,"val_tokens":..} */
ts_status ts_metrics_eval(ts_metrics_t *m, int64_t step, double val_loss,
                          int64_t val_tokens) TS_MUST_CHECK;

/* {"step":..,"checkpoint":"<dir>","checkpoint_s":..,"save_s":..}: the checkpoint of update
 * step, committed: checkpoint_s is the training stall it cost (copying the state; with
 * --sync-save the whole save), save_s its own duration from begin to commit. */
ts_status ts_metrics_checkpoint(ts_metrics_t *m, int64_t step, const char *path, double stall_s,
                                double save_s) TS_MUST_CHECK;

#endif
