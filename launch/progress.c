/* progress.c: the live progress line (progress.h). */
#include "launch/progress.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "launch/common.h"

void ts_progress_init(struct ts_progress *p, bool root, int64_t first) {
    *p = (struct ts_progress){
        .live = root && isatty(STDERR_FILENO) && getenv("TS_NO_LIVE") == NULL,
        .t_start = ts_launch_now_s(),
        .first = first,
    };
}

void ts_progress_close(struct ts_progress *p) {
    if (p->line_open) {
        fputc('\n', stderr);
        p->line_open = false;
    }
}

static void format_seconds(double s, char *buf, size_t len) {
    if (s < 0)
        snprintf(buf, len, "-");
    else if (s < 3600)
        snprintf(buf, len, "%dm%02ds", (int)s / 60, (int)s % 60);
    else
        snprintf(buf, len, "%dh%02dm", (int)(s / 3600), ((int)s % 3600) / 60);
}

void ts_progress_draw(struct ts_progress *p, const struct ts_step_record *rec, int64_t steps,
                      int64_t stop, double time_left_s) {
    const int64_t done = rec->step + 1;
    const double now = ts_launch_now_s();
    if (now - p->drawn < 0.1 && done != steps) /* at most 10 a second */
        return;
    const double per_step = done > p->first ? (now - p->t_start) / (double)(done - p->first) : 0;
    char eta[32], left[32];
    format_seconds(per_step * (double)(stop - done), eta, sizeof(eta));
    format_seconds(time_left_s, left, sizeof(left));
    fprintf(stderr,
            "\r\033[Kstep %" PRId64 "/%" PRId64 " | loss %.4f | %.0f tok/s | ETA %s | time left %s",
            done, steps, (double)rec->loss, rec->tok_per_s, eta, left);
    fflush(stderr);
    p->line_open = true;
    p->drawn = now;
}
