/* metrics.c: metrics.jsonl writer (metrics.h). */
#include "launch/metrics.h"

#include <errno.h>
#include <inttypes.h>
#include <json-c/json.h>
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

/* One line per record, written by json-c, so strings (a checkpoint's path may hold quotes,
 * backslashes or control bytes) are escaped. Numbers keep the text they always had (%.9g,
 * %.17g): json-c prints a double given with its text verbatim, so the lines of a run are the
 * bytes they were before. */
static ts_status num(json_object *o, const char *key, const char *fmt, double v) {
    char buf[64];
    snprintf(buf, sizeof(buf), fmt, v);
    json_object *d = json_object_new_double_s(v, buf);
    if (d == NULL || json_object_object_add(o, key, d) != 0) {
        json_object_put(d);
        return ts_error(TS_ERR_OOM, "metrics: out of memory");
    }
    return TS_OK;
}

static ts_status i64(json_object *o, const char *key, int64_t v) {
    json_object *d = json_object_new_int64(v);
    if (d == NULL || json_object_object_add(o, key, d) != 0) {
        json_object_put(d);
        return ts_error(TS_ERR_OOM, "metrics: out of memory");
    }
    return TS_OK;
}

static ts_status str(json_object *o, const char *key, const char *v) {
    json_object *d = json_object_new_string(v);
    if (d == NULL || json_object_object_add(o, key, d) != 0) {
        json_object_put(d);
        return ts_error(TS_ERR_OOM, "metrics: out of memory");
    }
    return TS_OK;
}

/* Writes o as one line and releases it, whatever st says (st: the status of filling it). */
static ts_status emit(ts_metrics_t *m, json_object *o, ts_status st) {
    if (o == NULL)
        return ts_error(TS_ERR_OOM, "metrics: out of memory");
    if (st == TS_OK) {
        const char *text = json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN |
                                                                 JSON_C_TO_STRING_NOSLASHESCAPE);
        if (text == NULL)
            st = ts_error(TS_ERR_OOM, "metrics: out of memory");
        else if (fprintf(m->f, "%s\n", text) < 0 || fflush(m->f) != 0)
            st = ts_error(TS_ERR_IO, "writing %s: %s", m->path, strerror(errno));
    }
    json_object_put(o);
    return st;
}

ts_status ts_metrics_step(ts_metrics_t *m, const struct ts_step_record *r) {
    json_object *o = json_object_new_object();
    ts_status st = o == NULL ? TS_ERR_OOM : TS_OK;
    if (st == TS_OK)
        st = i64(o, "step", (int64_t)r->step + 1);
    if (st == TS_OK)
        st = num(o, "loss", "%.9g", (double)r->loss);
    if (st == TS_OK)
        st = num(o, "lr", "%.9g", (double)r->lr);
    if (st == TS_OK)
        st = num(o, "grad_norm", "%.9g", (double)r->grad_norm);
    if (st == TS_OK)
        st = i64(o, "tokens", r->tokens);
    if (st == TS_OK)
        st = num(o, "step_ms", "%.17g", r->step_ms);
    if (st == TS_OK)
        st = num(o, "tok_per_s", "%.17g", r->tok_per_s);
    if (st == TS_OK)
        st = num(o, "comm_wait_ms", "%.17g", r->comm_wait_ms);
    return emit(m, o, st);
}

ts_status ts_metrics_eval(ts_metrics_t *m, int64_t step, double val_loss, int64_t val_tokens) {
    json_object *o = json_object_new_object();
    ts_status st = o == NULL ? TS_ERR_OOM : TS_OK;
    if (st == TS_OK)
        st = i64(o, "step", step);
    if (st == TS_OK)
        st = num(o, "val_loss", "%.17g", val_loss);
    if (st == TS_OK)
        st = i64(o, "val_tokens", val_tokens);
    return emit(m, o, st);
}

ts_status ts_metrics_checkpoint(ts_metrics_t *m, int64_t step, const char *path, double stall_s,
                                double save_s) {
    json_object *o = json_object_new_object();
    ts_status st = o == NULL ? TS_ERR_OOM : TS_OK;
    if (st == TS_OK)
        st = i64(o, "step", step);
    if (st == TS_OK)
        st = str(o, "checkpoint", path);
    if (st == TS_OK)
        st = num(o, "checkpoint_s", "%.6f", stall_s);
    if (st == TS_OK)
        st = num(o, "save_s", "%.6f", save_s);
    return emit(m, o, st);
}
