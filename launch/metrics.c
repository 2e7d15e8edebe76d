/* metrics.c: metrics.jsonl writer (metrics.h). */
#include "launch/metrics.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/fs.h"

struct ts_metrics {
    FILE *f;
    char path[TS_PATH_MAX];
};

ts_status ts_metrics_open(ts_metrics_t **out, const char *path, bool append) {
    *out = NULL;
    ts_metrics_t *m = calloc(1, sizeof(*m));
    if (m == NULL)
        return ts_error(TS_ERR_OOM, "metrics: out of memory");
    ts_status st = ts_path_fmt(m->path, sizeof(m->path), "%s", path);
    if (st != TS_OK) {
        free(m);
        return st;
    }
    m->f = fopen(path, append ? "a" : "w");
    if (m->f == NULL) {
        st = ts_error(TS_ERR_IO, "cannot open %s for writing: %s", path, strerror(errno));
        free(m);
        return st;
    }
    *out = m;
    return TS_OK;
}

void ts_metrics_close(ts_metrics_t *m) {
    if (m == NULL)
        return;
    fclose(m->f);
    free(m);
}

static ts_status finish_line(ts_metrics_t *m, int written) {
    if (written < 0 || fflush(m->f) != 0)
        return ts_error(TS_ERR_IO, "writing %s: %s", m->path, strerror(errno));
    return TS_OK;
}

ts_status ts_metrics_step(ts_metrics_t *m, const struct ts_step_record *r) {
    int n = fprintf(m->f,
                    "{\"step\":%d,\"loss\":%.9g,\"lr\":%.9g,\"grad_norm\":%.9g,\"tokens\":%" PRId64
                    ",\"step_ms\":%.17g,\"tok_per_s\":%.17g,\"comm_wait_ms\":%.17g}\n",
                    r->step + 1, (double)r->loss, (double)r->lr, (double)r->grad_norm, r->tokens,
                    r->step_ms, r->tok_per_s, r->comm_wait_ms);
    return finish_line(m, n);
}

ts_status ts_metrics_eval(ts_metrics_t *m, int step, double val_loss, int64_t val_tokens) {
    int n = fprintf(m->f, "{\"step\":%d,\"val_loss\":%.17g,\"val_tokens\":%" PRId64 "}\n", step,
                    val_loss, val_tokens);
    return finish_line(m, n);
}

ts_status ts_metrics_checkpoint(ts_metrics_t *m, int step, const char *path, double stall_s,
                                double save_s) {
    int n =
        fprintf(m->f, "{\"step\":%d,\"checkpoint\":\"%s\",\"checkpoint_s\":%.6f,\"save_s\":%.6f}\n",
                step, path, stall_s, save_s);
    return finish_line(m, n);
}
