/* report_run.c: one run directory read for `tessera report` (report.h): its ledger's step and
 * segment lines, its metrics, config.json and exit.json.
 *
 * A bad line is skipped and reported with its file and line number, the way TensorBoard skips a
 * corrupt record and goes on: a report is for looking at a run, often one still being written,
 * and one bad line should not hide a thousand good ones (--strict refuses instead). The cost
 * table stays `tessera cost`'s arithmetic: ts_ledger_summarize reads the ledger, or, when lines
 * were skipped, a copy of the lines kept.
 *
 * Job time, the x axis of the wall-time plots: each segment starts where the one before ended
 * (its whole process wall, from its end line), then its start-up, then its steps' walls in
 * order. Evals and checkpoint stalls inside a segment are not steps: the ledger counts them per
 * segment, so a step's time is the process time less those. */
#include "launch/report.h"

#include <errno.h>
#include <json-c/json.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "kernels/fs.h"

static struct json_object *get(struct json_object *o, const char *key) {
    struct json_object *v = NULL;
    return json_object_object_get_ex(o, key, &v) ? v : NULL;
}

/* A number, or NaN for null, absent or not a number. */
static double num(struct json_object *o, const char *key) {
    struct json_object *v = get(o, key);
    if (v == NULL ||
        !(json_object_is_type(v, json_type_double) || json_object_is_type(v, json_type_int)))
        return NAN;
    return json_object_get_double(v);
}

/* Whether key is there, null included (get() cannot tell a null from an absent key). */
static bool has(struct json_object *o, const char *key) {
    return json_object_object_get_ex(o, key, NULL);
}

static bool is_int(struct json_object *o, const char *key) {
    struct json_object *v = get(o, key);
    return v != NULL && json_object_is_type(v, json_type_int);
}

static const char *str(struct json_object *o, const char *key) {
    struct json_object *v = get(o, key);
    return v != NULL && json_object_is_type(v, json_type_string) ? json_object_get_string(v) : "";
}

static ts_status grow(void **p, int64_t *cap, int64_t need, size_t size) {
    if (need <= *cap)
        return TS_OK;
    int64_t c = *cap ? *cap : 64;
    while (c < need)
        c *= 2;
    void *q = realloc(*p, (size_t)c * size);
    if (q == NULL)
        return ts_error(TS_ERR_OOM, "report: out of memory");
    *p = q;
    *cap = c;
    return TS_OK;
}

/* ---- lines ---- */

struct reading {
    struct rp_run *run;
    const char *path;
    bool strict;
    rp_warn_fn warn;
    void *warn_ctx;
    int64_t cap_steps, cap_metrics, cap_evals;
    char *kept; /* the ledger lines kept, for the summary when some were skipped */
    size_t kept_len, kept_cap;
};

/* A line to skip (strict: to refuse). */
static ts_status bad_line(struct reading *r, int lineno, const char *why) {
    if (r->strict)
        return ts_error(TS_ERR_FORMAT, "%s line %d: %s (--strict refuses it)", r->path, lineno,
                        why);
    r->run->warnings++;
    if (r->warn != NULL)
        r->warn(r->warn_ctx, r->path, lineno, why);
    return TS_OK;
}

/* metrics.jsonl prints a float that is not finite as %g does (nan, -nan, inf, -inf), which
 * json-c reads only in part: those values become null, which the report reads as "not finite".
 * Each replacement lengthens the line by at most one byte per ':' (line has room for it). */
static struct json_object *parse_line(char *line) {
    struct json_object *o = json_tokener_parse(line);
    if (o != NULL)
        return o;
    static const char *const words[] = {"-nan", "nan", "-inf", "inf"};
    bool changed = false;
    for (char *p = line; *p != '\0'; p++) {
        if (*p != ':')
            continue;
        for (size_t w = 0; w < sizeof(words) / sizeof(words[0]); w++) {
            const size_t n = strlen(words[w]);
            if (strncmp(p + 1, words[w], n) == 0 && (p[1 + n] == ',' || p[1 + n] == '}')) {
                memmove(p + 5, p + 1 + n, strlen(p + 1 + n) + 1);
                memcpy(p + 1, "null", 4);
                changed = true;
                break;
            }
        }
    }
    return changed ? json_tokener_parse(line) : NULL;
}

typedef ts_status (*line_fn)(struct reading *r, struct json_object *o, int lineno,
                             const char *text);

/* Calls fn for each complete line of r->path. A last line without its newline is one being
 * written (or cut by a kill) and is left out, as ts_ledger_summarize leaves it. */
static ts_status each_line(struct reading *r, line_fn fn) {
    FILE *f = fopen(r->path, "r");
    if (f == NULL)
        return ts_error(TS_ERR_IO, "cannot read %s: %s", r->path, strerror(errno));
    char *line = NULL, *copy = NULL;
    size_t cap = 0, copy_cap = 0;
    ssize_t n;
    int lineno = 0;
    ts_status st = TS_OK;
    while (st == TS_OK && (n = getline(&line, &cap, f)) > 0) {
        lineno++;
        if (line[n - 1] != '\n')
            break;
        if (n == 1)
            continue;                       /* an empty line */
        if (2 * (size_t)n + 1 > copy_cap) { /* parse_line may lengthen it: nan -> null */
            char *c = realloc(copy, 2 * (size_t)n + 1);
            if (c == NULL) {
                st = ts_error(TS_ERR_OOM, "report: out of memory");
                break;
            }
            copy = c;
            copy_cap = 2 * (size_t)n + 1;
        }
        memcpy(copy, line, (size_t)n + 1);
        struct json_object *o = parse_line(copy);
        if (o == NULL || !json_object_is_type(o, json_type_object))
            st = bad_line(r, lineno, "not a JSON object");
        else
            st = fn(r, o, lineno, line);
        json_object_put(o);
    }
    if (st == TS_OK && ferror(f))
        st = ts_error(TS_ERR_IO, "reading %s: %s", r->path, strerror(errno));
    free(line);
    free(copy);
    fclose(f);
    return st;
}

/* ---- the ledger ---- */

static ts_status keep_text(struct reading *r, const char *text) {
    const size_t n = strlen(text);
    if (r->kept_len + n + 1 > r->kept_cap) {
        size_t c = r->kept_cap ? r->kept_cap : 4096;
        while (c < r->kept_len + n + 1)
            c *= 2;
        char *k = realloc(r->kept, c);
        if (k == NULL)
            return ts_error(TS_ERR_OOM, "report: out of memory");
        r->kept = k;
        r->kept_cap = c;
    }
    memcpy(r->kept + r->kept_len, text, n + 1);
    r->kept_len += n;
    return TS_OK;
}

static ts_status segment_at(struct rp_run *run, int number, struct rp_segment **out) {
    if (number > run->nsegs) {
        struct rp_segment *g = realloc(run->segs, (size_t)number * sizeof(*g));
        if (g == NULL)
            return ts_error(TS_ERR_OOM, "report: out of memory");
        for (int i = run->nsegs; i < number; i++)
            g[i] = (struct rp_segment){
                .number = i + 1, .wall_s = NAN, .usd = NAN, .price_h = -1, .price_kwh = -1};
        run->segs = g;
        run->nsegs = number;
    }
    *out = &run->segs[number - 1];
    return TS_OK;
}

static double price(struct json_object *o, const char *key) {
    const double p = num(get(o, "prices"), key);
    return isfinite(p) && p >= 0 ? p : -1;
}

static ts_status ledger_line(struct reading *r, struct json_object *o, int lineno,
                             const char *text) {
    struct rp_run *run = r->run;
    struct json_object *t = get(o, "type");
    if (t == NULL || !json_object_is_type(t, json_type_string))
        return bad_line(r, lineno, "not a ledger line (no \"type\")");
    const char *type = json_object_get_string(t);
    const bool start = strcmp(type, "segment_start") == 0, step = strcmp(type, "step") == 0,
               end = strcmp(type, "segment") == 0;
    if (!start && !step && !end)
        return TS_OK; /* a kind of line this version does not plot */
    const double s = num(o, "segment");
    if (!is_int(o, "segment") || !(s >= 1 && s <= 100000))
        return bad_line(r, lineno, "a ledger line without a segment number");
    struct rp_segment *g = NULL;
    TS_CHECK(segment_at(run, (int)s, &g));
    if (start) {
        if (!is_int(o, "first_step") || !is_int(o, "devices") || !(num(o, "devices") >= 1) ||
            !(num(o, "devices") <= (double)(1 << 24)))
            return bad_line(r, lineno, "a segment_start line without first_step or devices");
        g->started = true;
        g->first_step = json_object_get_int64(get(o, "first_step"));
        g->end_step = g->first_step;
        g->lost_steps = is_int(o, "lost_steps") ? json_object_get_int64(get(o, "lost_steps")) : 0;
        g->devices = (int)num(o, "devices");
        g->startup_s = isfinite(num(o, "startup_s")) ? num(o, "startup_s") : 0;
        g->price_h = price(o, "usd_per_device_hour");
        g->price_kwh = price(o, "usd_per_kwh");
    } else if (step) {
        if (!g->started)
            return bad_line(r, lineno, "a step line before its segment's start");
        const double wall = num(o, "wall_s"), dev = num(o, "device_s");
        if (!is_int(o, "step") || !is_int(o, "tokens") || !isfinite(wall) || !isfinite(dev))
            return bad_line(r, lineno, "a step line without step, tokens, wall_s or device_s");
        TS_CHECK(grow((void **)&run->steps, &r->cap_steps, run->nsteps + 1, sizeof(*run->steps)));
        run->steps[run->nsteps++] = (struct rp_ledger_step){
            .segment = (int)s,
            .step = json_object_get_int64(get(o, "step")),
            .tokens = json_object_get_int64(get(o, "tokens")),
            .wall_s = wall,
            .pause_s = num(o, "pause_s") > 0 && num(o, "pause_s") < 1e9 ? num(o, "pause_s") : 0,
            .device_s = dev,
            .mfu = num(o, "mfu"),
            .energy_j = num(o, "energy_j"),
        };
        g->end_step = run->steps[run->nsteps - 1].step;
    } else {
        g->ended = true;
        g->wall_s = num(o, "wall_s");
        g->usd = num(o, "usd");
        if (is_int(o, "last_step"))
            g->last_step = json_object_get_int64(get(o, "last_step"));
        snprintf(g->exit, sizeof(g->exit), "%s", str(o, "exit"));
    }
    return keep_text(r, text);
}

/* Job time and cost along the ledger (the file's comment says how). */
static void job_time(struct rp_run *run) {
    double t = 0, usd = 0;
    int64_t i = 0;
    for (int k = 0; k < run->nsegs; k++) {
        struct rp_segment *g = &run->segs[k];
        const bool priced = g->price_h >= 0;
        g->t_start = t;
        if (!g->started) { /* its start line skipped as bad: it holds no steps (checked) */
            g->t_end = t;
            g->usd_end = usd;
            continue;
        }
        double ts = t + g->startup_s;
        double u = priced ? usd + g->startup_s * g->devices / 3600.0 * g->price_h : NAN;
        for (; i < run->nsteps && run->steps[i].segment == g->number; i++) {
            struct rp_ledger_step *x = &run->steps[i];
            ts += x->pause_s + x->wall_s;
            x->step_usd = NAN;
            if (priced) {
                x->step_usd = x->device_s / 3600.0 * g->price_h;
                if (isfinite(x->energy_j) && g->price_kwh >= 0)
                    x->step_usd += x->energy_j / 3.6e6 * g->price_kwh;
            }
            /* the pause before the step held the devices too: in the job's cost, not the
             * step's (whose $ per 1M tokens is the training's) */
            u += x->step_usd + (priced ? x->pause_s * g->devices / 3600.0 * g->price_h : 0);
            x->time_s = ts;
            x->usd = u;
        }
        const bool whole = g->ended && isfinite(g->wall_s);
        g->t_end = whole ? t + g->wall_s : ts;
        g->usd_end = whole && priced ? usd + g->usd : u;
        t = g->t_end;
        usd = g->usd_end;
    }
    bool any = false, all = true;
    for (int k = 0; k < run->nsegs; k++)
        if (run->segs[k].started) {
            any = true;
            all = all && run->segs[k].price_h >= 0;
        }
    run->priced = any && all;
}

/* Segments in the file are numbered in order; a step line's segment is one already started
 * (checked per line), so lines sorted by segment are the file's order: job_time walks both. */
static bool steps_in_segment_order(const struct rp_run *run) {
    for (int64_t i = 1; i < run->nsteps; i++)
        if (run->steps[i].segment < run->steps[i - 1].segment)
            return false;
    return true;
}

static ts_status read_ledger(struct reading *r, const char *path) {
    struct rp_run *run = r->run;
    r->path = path;
    const int before = run->warnings;
    TS_CHECK(each_line(r, ledger_line));
    if (!steps_in_segment_order(run))
        return ts_error(TS_ERR_FORMAT, "%s: step lines out of segment order", path);
    job_time(run);
    const bool skipped = run->warnings > before;
    char tmp[TS_PATH_MAX] = "";
    const char *summarize = path;
    if (skipped) { /* the summary of the lines kept */
        const char *dir = getenv("TMPDIR");
        TS_CHECK(ts_path_join(tmp, sizeof(tmp), dir != NULL && *dir ? dir : "/tmp",
                              "tessera-report-XXXXXX"));
        const int fd = mkstemp(tmp);
        if (fd < 0)
            return ts_error(TS_ERR_IO, "cannot make a temporary file %s: %s", tmp, strerror(errno));
        const ssize_t w = r->kept_len ? write(fd, r->kept, r->kept_len) : 0;
        close(fd);
        if (w != (ssize_t)r->kept_len) {
            unlink(tmp);
            return ts_error(TS_ERR_IO, "cannot write %s", tmp);
        }
        summarize = tmp;
    }
    /* A ledger without a segment has no summary; the plots still show what it holds. */
    if (ts_ledger_summarize(summarize, &run->summary) == TS_OK)
        run->has_summary = true;
    else
        snprintf(run->summary_error, sizeof(run->summary_error), "%s", ts_last_error());
    if (skipped)
        unlink(tmp);
    return TS_OK;
}

/* ---- metrics ---- */

static ts_status metrics_line(struct reading *r, struct json_object *o, int lineno,
                              const char *text) {
    (void)text;
    struct rp_run *run = r->run;
    if (!is_int(o, "step"))
        return bad_line(r, lineno, "a metrics line without an integer \"step\"");
    const int64_t step = json_object_get_int64(get(o, "step"));
    if (has(o, "loss")) {
        TS_CHECK(grow((void **)&run->metrics, &r->cap_metrics, run->nmetrics + 1,
                      sizeof(*run->metrics)));
        run->metrics[run->nmetrics++] = (struct rp_metric_step){
            .step = step,
            .loss = num(o, "loss"),
            .lr = num(o, "lr"),
            .grad_norm = num(o, "grad_norm"),
            .time_s = NAN,
        };
    } else if (has(o, "val_loss")) {
        TS_CHECK(grow((void **)&run->evals, &r->cap_evals, run->nevals + 1, sizeof(*run->evals)));
        run->evals[run->nevals++] =
            (struct rp_eval){.step = step, .val_loss = num(o, "val_loss"), .time_s = NAN};
    }
    return TS_OK; /* checkpoint lines and kinds to come: not plotted */
}

struct step_time {
    int64_t step, order;
    double t;
    int segment;
};

static int by_step_then_order(const void *a, const void *b) {
    const struct step_time *x = a, *y = b;
    if (x->step != y->step)
        return (x->step > y->step) - (x->step < y->step);
    return (x->order > y->order) - (x->order < y->order);
}

/* The time of step s: the last time the ledger trained it (a redone step's metrics line is the
 * redone one's: a resume cuts metrics.jsonl back to its checkpoint). */
static const struct step_time *find_step(const struct step_time *v, int64_t n, int64_t s) {
    int64_t lo = 0, hi = n; /* first index with step > s */
    while (lo < hi) {
        const int64_t mid = lo + (hi - lo) / 2;
        if (v[mid].step <= s)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo > 0 && v[lo - 1].step == s ? &v[lo - 1] : NULL;
}

static ts_status metrics_times(struct rp_run *run) {
    if (run->nsteps == 0)
        return TS_OK;
    struct step_time *v = malloc((size_t)run->nsteps * sizeof(*v));
    if (v == NULL)
        return ts_error(TS_ERR_OOM, "report: out of memory");
    for (int64_t i = 0; i < run->nsteps; i++)
        v[i] =
            (struct step_time){run->steps[i].step, i, run->steps[i].time_s, run->steps[i].segment};
    qsort(v, (size_t)run->nsteps, sizeof(*v), by_step_then_order);
    for (int64_t i = 0; i < run->nmetrics; i++) {
        const struct step_time *x = find_step(v, run->nsteps, run->metrics[i].step);
        if (x != NULL) {
            run->metrics[i].time_s = x->t;
            run->metrics[i].segment = x->segment;
        }
    }
    for (int64_t i = 0; i < run->nevals; i++) {
        const struct step_time *x = find_step(v, run->nsteps, run->evals[i].step);
        if (x != NULL) {
            run->evals[i].time_s = x->t;
            run->evals[i].segment = x->segment;
        }
    }
    free(v);
    return TS_OK;
}

/* ---- config.json, exit.json ---- */

static ts_status read_json_file(struct reading *r, const char *path, struct json_object **out) {
    *out = NULL;
    r->path = path;
    struct json_object *o = json_object_from_file(path);
    if (o == NULL || !json_object_is_type(o, json_type_object)) {
        json_object_put(o);
        return bad_line(r, 1, "not a JSON object");
    }
    *out = o;
    return TS_OK;
}

static ts_status read_exit(struct reading *r, const char *path) {
    struct rp_run *run = r->run;
    struct json_object *o = NULL;
    TS_CHECK(read_json_file(r, path, &o));
    if (o == NULL)
        return TS_OK;
    if (!is_int(o, "code")) {
        json_object_put(o);
        return bad_line(r, 1, "exit.json without an integer \"code\"");
    }
    run->has_exit = true;
    run->exit_code = json_object_get_int(get(o, "code"));
    snprintf(run->exit_reason, sizeof(run->exit_reason), "%s", str(o, "reason"));
    run->exit_step = is_int(o, "step") ? json_object_get_int64(get(o, "step")) : -1;
    json_object_put(o);
    return TS_OK;
}

ts_status rp_run_read(struct rp_run *run, const char *dir, bool strict, rp_warn_fn warn,
                      void *warn_ctx) {
    memset(run, 0, sizeof(*run));
    run->exit_code = -1;
    TS_CHECK(ts_path_fmt(run->dir, sizeof(run->dir), "%s", dir));
    size_t len = strlen(run->dir);
    while (len > 1 && run->dir[len - 1] == '/')
        run->dir[--len] = '\0';
    snprintf(run->name, sizeof(run->name), "%s",
             len < sizeof(run->name) ? run->dir : run->dir + len - (sizeof(run->name) - 1));
    struct stat sb;
    if (stat(dir, &sb) != 0)
        return ts_error(TS_ERR_IO, "%s: %s", dir, strerror(errno));
    if (!S_ISDIR(sb.st_mode))
        return ts_error(TS_ERR_IO, "%s is not a run directory (give the directory --out named)",
                        dir);
    char ledger[TS_PATH_MAX], metrics[TS_PATH_MAX], config[TS_PATH_MAX], exitp[TS_PATH_MAX];
    TS_CHECK(ts_path_join(ledger, sizeof(ledger), run->dir, "ledger.jsonl"));
    TS_CHECK(ts_path_join(metrics, sizeof(metrics), run->dir, "metrics.jsonl"));
    TS_CHECK(ts_path_join(config, sizeof(config), run->dir, "config.json"));
    TS_CHECK(ts_path_join(exitp, sizeof(exitp), run->dir, "exit.json"));
    run->has_ledger = access(ledger, F_OK) == 0;
    run->has_metrics = access(metrics, F_OK) == 0;
    if (!run->has_ledger && !run->has_metrics)
        return ts_error(TS_ERR_IO,
                        "%s holds neither ledger.jsonl nor metrics.jsonl: not a run directory of "
                        "tessera train",
                        dir);
    struct reading r = {.run = run, .strict = strict, .warn = warn, .warn_ctx = warn_ctx};
    ts_status st = TS_OK;
    if (run->has_ledger)
        st = read_ledger(&r, ledger);
    if (st == TS_OK && run->has_metrics) {
        r.path = metrics;
        st = each_line(&r, metrics_line);
    }
    if (st == TS_OK)
        st = metrics_times(run);
    if (st == TS_OK && access(config, F_OK) == 0) {
        st = read_json_file(&r, config, &run->config);
        run->has_config = run->config != NULL;
    }
    if (st == TS_OK && access(exitp, F_OK) == 0)
        st = read_exit(&r, exitp);
    free(r.kept);
    return st;
}

void rp_run_deinit(struct rp_run *run) {
    free(run->steps);
    free(run->segs);
    free(run->metrics);
    free(run->evals);
    json_object_put(run->config);
    memset(run, 0, sizeof(*run));
}
