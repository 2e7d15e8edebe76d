/* progress.h: the one live progress line rank 0 redraws on a terminal (step/total, loss,
 * tokens/s, ETA, time left in the allocation), at most ten times a second. Anything else printed
 * while it is on screen first ends it (ts_progress_close), so log lines never share its row. */
#ifndef TS_LAUNCH_PROGRESS_H
#define TS_LAUNCH_PROGRESS_H

#include <stdbool.h>
#include <stdint.h>

#include "trainer/train.h"

struct ts_progress {
    bool live;      /* draw at all: rank 0, stderr a terminal, TS_NO_LIVE unset */
    bool line_open; /* the line is on screen without its newline */
    double t_start; /* when the loop began (ts_launch_now_s) */
    int64_t first;  /* updates done when the loop began */
    double drawn;   /* when the line was last drawn */
};

/* Starts the clock; live as described above when `root`. */
void ts_progress_init(struct ts_progress *p, bool root, int64_t first);
/* Redraws after an update unless drawn less than 0.1 s ago (the last step always draws).
 * time_left_s < 0 prints "-". */
void ts_progress_draw(struct ts_progress *p, const struct ts_step_record *rec, int64_t steps,
                      int64_t stop, double time_left_s);
/* Ends the line (a newline) when it is on screen. */
void ts_progress_close(struct ts_progress *p);

#endif
