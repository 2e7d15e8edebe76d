/* ledger.c: RUN/ledger.jsonl written step by step, and read back into a job's cost (ledger.h).
 *
 * Step lines are printf'd (numbers and two constant strings: the hot path); segment lines go
 * through json-c (they carry a price file's path). Numbers are written with %.17g, so a summary
 * recomputed from the file is the arithmetic the writer did. */
#include "launch/ledger.h"

#include <errno.h>
#include <inttypes.h>
#include <json-c/json.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/fs.h"

struct ts_ledger {
    FILE *f;
    char path[TS_PATH_MAX];
    struct ts_ledger_config cfg;
    int segment;        /* this segment's number, 1-based */
    int64_t lost_steps; /* redone by this segment */
    double t_begin, last_boundary;
    double noted_s; /* eval and save time since the last boundary */
    double step_s, eval_s, checkpoint_s;
    int64_t steps, tokens, first_step, last_step;
    bool have_energy;       /* the counter read at the start */
    double e_start, e_last; /* joules */
    bool energy_ok;         /* every read since the start worked */
    bool began, ended;
};

static double now(const ts_ledger_t *l) { return l->cfg.src.now_s(l->cfg.src.ctx); }

static bool energy(const ts_ledger_t *l, double *j) {
    return l->cfg.src.energy_j != NULL && l->cfg.src.energy_j(l->cfg.src.ctx, j);
}

/* ---- reading lines ---- */

static struct json_object *get(struct json_object *o, const char *key) {
    struct json_object *v = NULL;
    return json_object_object_get_ex(o, key, &v) ? v : NULL;
}

/* A number, or NaN for null or absent. */
static double num(struct json_object *o, const char *key) {
    struct json_object *v = get(o, key);
    if (v == NULL || json_object_is_type(v, json_type_null))
        return NAN;
    return json_object_get_double(v);
}

/* key as an integer in [lo, hi] (hi at most 2^62, exact in a double): false when it is missing,
 * not a number or out of range (a cast of such a double would be undefined). */
static bool int_at(struct json_object *o, const char *key, int64_t lo, int64_t hi, int64_t *out) {
    const double v = num(o, key);
    if (!(v >= (double)lo && v <= (double)hi))
        return false;
    *out = (int64_t)v;
    return true;
}

/* Bounds far past any run (Tessera's steps stop at 1e12) that keep every sum below 2^63. */
#define MAX_STEP ((int64_t)1000000000000)
#define MAX_STEP_TOKENS ((int64_t)1 << 40)

static const char *str(struct json_object *o, const char *key) {
    struct json_object *v = get(o, key);
    return v != NULL && json_object_is_type(v, json_type_string) ? json_object_get_string(v) : "";
}

/* Calls fn for each line of path, parsed; stops at the first error. A last line cut short by a
 * kill (no newline) is skipped. */
typedef ts_status (*line_fn)(void *ctx, struct json_object *o, const char *type, int lineno);

static ts_status each_line(const char *path, line_fn fn, void *ctx) {
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return ts_error(TS_ERR_IO, "cannot read %s: %s", path, strerror(errno));
    char *line = NULL;
    size_t cap = 0;
    ssize_t n;
    int lineno = 0;
    ts_status st = TS_OK;
    while (st == TS_OK && (n = getline(&line, &cap, f)) > 0) {
        lineno++;
        if (line[n - 1] != '\n')
            break;
        struct json_object *o = json_tokener_parse(line);
        if (o == NULL || !json_object_is_type(o, json_type_object) || get(o, "type") == NULL) {
            st = ts_error(TS_ERR_FORMAT, "%s line %d is not a ledger line", path, lineno);
        } else {
            st = fn(ctx, o, str(o, "type"), lineno);
        }
        json_object_put(o);
    }
    free(line);
    fclose(f);
    return st;
}

struct scan {
    int segments;
    int64_t furthest;
};

static ts_status scan_line(void *ctx, struct json_object *o, const char *type, int lineno) {
    (void)lineno;
    struct scan *s = ctx;
    const double seg = num(o, "segment");
    if (isfinite(seg) && seg > s->segments)
        s->segments = (int)seg;
    int64_t step;
    if (strcmp(type, "step") == 0 && int_at(o, "step", 0, MAX_STEP, &step) && step > s->furthest)
        s->furthest = step;
    return TS_OK;
}

/* ---- writing ---- */

ts_status ts_ledger_create(ts_ledger_t **out, const char *path,
                           const struct ts_ledger_config *cfg) {
    *out = NULL;
    if (cfg->src.now_s == NULL || cfg->devices < 1)
        return ts_error(TS_ERR_INVALID_ARG, "ledger: a clock and at least one device are needed");
    ts_ledger_t *l = calloc(1, sizeof(*l));
    if (l == NULL)
        return ts_error(TS_ERR_OOM, "ledger: out of memory");
    l->cfg = *cfg;
    ts_status st = ts_path_fmt(l->path, sizeof(l->path), "%s", path);
    struct scan s = {0, 0};
    const bool resume = cfg->resumed_from >= 0;
    FILE *probe = resume && st == TS_OK ? fopen(path, "r") : NULL;
    if (probe != NULL) {
        fclose(probe);
        st = each_line(path, scan_line, &s);
    }
    if (st == TS_OK) {
        l->f = fopen(path, resume ? "a" : "w");
        if (l->f == NULL)
            st = ts_error(TS_ERR_IO, "cannot open %s for writing: %s", path, strerror(errno));
    }
    if (st != TS_OK) {
        free(l);
        return st;
    }
    l->segment = s.segments + 1;
    l->lost_steps = resume && s.furthest > cfg->resumed_from ? s.furthest - cfg->resumed_from : 0;
    l->first_step = resume ? cfg->resumed_from : 0;
    l->last_step = l->first_step;
    l->have_energy = energy(l, &l->e_start);
    l->e_last = l->e_start;
    l->energy_ok = l->have_energy;
    *out = l;
    return TS_OK;
}

void ts_ledger_destroy(ts_ledger_t *l) {
    if (l == NULL)
        return;
    if (l->f != NULL)
        fclose(l->f);
    free(l);
}

static ts_status flushed(ts_ledger_t *l, int written) {
    if (written < 0 || fflush(l->f) != 0)
        return ts_error(TS_ERR_IO, "writing %s: %s", l->path, strerror(errno));
    return TS_OK;
}

static struct json_object *num_or_null(double x) {
    return isfinite(x) ? json_object_new_double(x) : NULL;
}

static struct json_object *prices_json(const struct ts_ledger_prices *p) {
    struct json_object *o = json_object_new_object();
    json_object_object_add(o, "usd_per_device_hour",
                           num_or_null(p->usd_per_device_hour >= 0 ? p->usd_per_device_hour : NAN));
    json_object_object_add(o, "usd_per_kwh",
                           num_or_null(p->usd_per_kwh >= 0 ? p->usd_per_kwh : NAN));
    json_object_object_add(o, "source", json_object_new_string(p->source));
    return o;
}

static ts_status write_object(ts_ledger_t *l, struct json_object *o) {
    const char *text =
        json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE);
    const int n = fprintf(l->f, "%s\n", text);
    json_object_put(o);
    return flushed(l, n);
}

ts_status ts_ledger_begin(ts_ledger_t *l) {
    const struct ts_ledger_config *c = &l->cfg;
    const double t = now(l);
    l->t_begin = t;
    l->last_boundary = t;
    l->began = true;
    struct json_object *o = json_object_new_object();
    json_object_object_add(o, "type", json_object_new_string("segment_start"));
    json_object_object_add(o, "segment", json_object_new_int(l->segment));
    json_object_object_add(o, "first_step", json_object_new_int64(l->first_step));
    json_object_object_add(o, "resumed_from", json_object_new_int64(c->resumed_from));
    json_object_object_add(o, "lost_steps", json_object_new_int64(l->lost_steps));
    json_object_object_add(o, "devices", json_object_new_int(c->devices));
    json_object_object_add(o, "device", json_object_new_string(c->cpu ? "cpu" : "gpu"));
    json_object_object_add(o, "device_name", json_object_new_string(c->device_name));
    json_object_object_add(o, "precision", json_object_new_string(c->precision));
    json_object_object_add(o, "flops_per_token", json_object_new_double(c->flops_per_token));
    json_object_object_add(o, "peak_flops_per_device",
                           num_or_null(c->peak_flops > 0 ? c->peak_flops : NAN));
    json_object_object_add(o, "peak", json_object_new_string(c->peak_source));
    json_object_object_add(o, "energy", json_object_new_string(c->energy_source));
    json_object_object_add(o, "prices", prices_json(&c->prices));
    json_object_object_add(o, "startup_s", json_object_new_double(t - c->t_launch));
    return write_object(l, o);
}

void ts_ledger_note_eval(ts_ledger_t *l, double seconds) {
    l->eval_s += seconds;
    l->noted_s += seconds;
}

void ts_ledger_note_checkpoint(ts_ledger_t *l, double seconds) {
    l->checkpoint_s += seconds;
    l->noted_s += seconds;
}

ts_status ts_ledger_step(ts_ledger_t *l, int64_t step, int64_t tokens) {
    const struct ts_ledger_config *c = &l->cfg;
    const double t = now(l);
    double wall = t - l->last_boundary - l->noted_s;
    if (wall < 0)
        wall = 0;
    const double pause = l->noted_s; /* evals and checkpoint stalls since the last step line */
    l->last_boundary = t;
    l->noted_s = 0;
    l->step_s += wall;
    l->steps++;
    l->tokens += tokens;
    l->last_step = step;
    const double dev_s = wall * c->devices;
    char mfu[32] = "null", joules[32] = "null", tps[32] = "null";
    if (c->peak_flops > 0 && dev_s > 0)
        snprintf(mfu, sizeof(mfu), "%.17g",
                 c->flops_per_token * (double)tokens / (dev_s * c->peak_flops));
    if (dev_s > 0)
        snprintf(tps, sizeof(tps), "%.17g", (double)tokens / dev_s);
    double e;
    if (l->energy_ok && energy(l, &e)) {
        snprintf(joules, sizeof(joules), "%.17g", e - l->e_last);
        l->e_last = e;
    } else {
        l->energy_ok = false;
    }
    const int n = fprintf(l->f,
                          "{\"type\":\"step\",\"segment\":%d,\"step\":%" PRId64
                          ",\"tokens\":%" PRId64 ",\"wall_s\":%.17g,\"pause_s\":%.17g,"
                          "\"devices\":%d,\"device\":\"%s\",\"device_s\":%.17g,"
                          "\"tokens_per_s_per_device\":%s,\"mfu\":%s,\"energy_j\":%s}\n",
                          l->segment, step, tokens, wall, pause, c->devices, c->cpu ? "cpu" : "gpu",
                          dev_s, tps, mfu, joules);
    return flushed(l, n);
}

ts_status ts_ledger_end(ts_ledger_t *l, const char *reason) {
    const struct ts_ledger_config *c = &l->cfg;
    if (l->ended)
        return TS_OK;
    l->ended = true;
    const double t = now(l);
    if (!l->began)
        l->t_begin = t; /* failed before the loop: all of it was start-up */
    const double wall = t - c->t_launch;
    double e = NAN, joules = NAN;
    if (l->energy_ok && energy(l, &e))
        joules = e - l->e_start;
    double usd = NAN;
    if (c->prices.usd_per_device_hour >= 0) {
        usd = wall * c->devices / 3600.0 * c->prices.usd_per_device_hour;
        if (isfinite(joules) && c->prices.usd_per_kwh >= 0)
            usd += joules / 3.6e6 * c->prices.usd_per_kwh;
    }
    struct json_object *o = json_object_new_object();
    json_object_object_add(o, "type", json_object_new_string("segment"));
    json_object_object_add(o, "segment", json_object_new_int(l->segment));
    json_object_object_add(o, "first_step", json_object_new_int64(l->first_step));
    json_object_object_add(o, "last_step", json_object_new_int64(l->last_step));
    json_object_object_add(o, "steps", json_object_new_int64(l->steps));
    json_object_object_add(o, "tokens", json_object_new_int64(l->tokens));
    json_object_object_add(o, "lost_steps", json_object_new_int64(l->lost_steps));
    json_object_object_add(o, "devices", json_object_new_int(c->devices));
    json_object_object_add(o, "device", json_object_new_string(c->cpu ? "cpu" : "gpu"));
    json_object_object_add(o, "startup_s", json_object_new_double(l->t_begin - c->t_launch));
    json_object_object_add(o, "step_s", json_object_new_double(l->step_s));
    json_object_object_add(o, "eval_s", json_object_new_double(l->eval_s));
    json_object_object_add(o, "checkpoint_s", json_object_new_double(l->checkpoint_s));
    json_object_object_add(o, "wall_s", json_object_new_double(wall));
    json_object_object_add(o, "device_s", json_object_new_double(wall * c->devices));
    json_object_object_add(o, "energy_j", num_or_null(joules));
    json_object_object_add(o, "prices", prices_json(&c->prices));
    json_object_object_add(o, "usd", num_or_null(usd));
    json_object_object_add(o, "exit", json_object_new_string(reason));
    return write_object(l, o);
}

/* ---- the summary ---- */

int64_t ts_ledger_warmup_steps(int64_t n) {
    if (n < 2)
        return 0;
    int64_t w = (n + 9) / 10;
    return w > 5 ? 5 : w;
}

struct seg {
    bool started, ended;
    int devices;
    double peak, fpt, price_h, price_kwh;
    double startup_s, wall_s, step_s, eval_s, ckpt_s, energy_j;
    int64_t lost, first_line, num_lines; /* its step lines in the step array */
};

struct step_line {
    int seg;
    int64_t step, tokens;
    double wall_s, pause_s, dev_s, energy_j;
};

struct reader {
    struct ts_ledger_summary *sum;
    struct seg *segs;
    int nsegs;
    struct step_line *steps;
    int64_t nsteps, cap;
    int open_seg; /* 1 + the segment whose step lines follow (0: none yet): each segment's lines
                   * are one run of the step array, from its first_line */
    const char *path;
};

static ts_status seg_of(struct reader *r, struct json_object *o, int lineno, struct seg **out) {
    const double s = num(o, "segment");
    if (!(s >= 1 && s <= 100000))
        return ts_error(TS_ERR_FORMAT, "%s line %d has no segment number", r->path, lineno);
    const int i = (int)s - 1;
    if (i >= r->nsegs) {
        struct seg *g = realloc(r->segs, (size_t)(i + 1) * sizeof(*g));
        if (g == NULL)
            return ts_error(TS_ERR_OOM, "ledger: out of memory");
        memset(g + r->nsegs, 0, (size_t)(i + 1 - r->nsegs) * sizeof(*g));
        r->segs = g;
        r->nsegs = i + 1;
    }
    *out = &r->segs[i];
    return TS_OK;
}

static double price(struct json_object *o, const char *key) {
    const double p = num(get(o, "prices"), key);
    return isfinite(p) ? p : -1;
}

static ts_status read_line(void *ctx, struct json_object *o, const char *type, int lineno) {
    struct reader *r = ctx;
    struct ts_ledger_summary *sum = r->sum;
    struct seg *g = NULL;
    TS_CHECK(seg_of(r, o, lineno, &g));
    const int si = (int)(g - r->segs);
    if (strcmp(type, "segment_start") == 0) {
        if (g->started)
            return ts_error(TS_ERR_FORMAT, "%s line %d: segment %d starts a second time", r->path,
                            lineno, si + 1);
        int64_t devices;
        if (!int_at(o, "devices", 1, 1 << 24, &devices))
            return ts_error(TS_ERR_FORMAT, "%s line %d: a segment_start without a device count",
                            r->path, lineno);
        g->started = true;
        g->devices = (int)devices;
        g->peak = num(o, "peak_flops_per_device");
        g->fpt = num(o, "flops_per_token");
        g->price_h = price(o, "usd_per_device_hour");
        g->price_kwh = price(o, "usd_per_kwh");
        g->startup_s = num(o, "startup_s");
        if (!int_at(o, "lost_steps", 0, MAX_STEP, &g->lost))
            g->lost = 0;
        g->first_line = r->nsteps;
        r->open_seg = si + 1;
        sum->devices = g->devices;
        sum->cpu = strcmp(str(o, "device"), "cpu") == 0;
        snprintf(sum->device_name, sizeof(sum->device_name), "%s", str(o, "device_name"));
        snprintf(sum->price_source, sizeof(sum->price_source), "%s",
                 str(get(o, "prices"), "source"));
        sum->usd_per_device_hour = g->price_h >= 0 ? g->price_h : NAN;
        sum->usd_per_kwh = g->price_kwh >= 0 ? g->price_kwh : NAN;
        sum->ended = false;
    } else if (strcmp(type, "step") == 0) {
        if (!g->started)
            return ts_error(TS_ERR_FORMAT, "%s line %d: a step before its segment's start", r->path,
                            lineno);
        if (r->open_seg != si + 1)
            return ts_error(TS_ERR_FORMAT,
                            "%s line %d: a step of segment %d after segment %d began", r->path,
                            lineno, si + 1, r->open_seg);
        if (r->nsteps == r->cap) {
            const int64_t cap = r->cap ? 2 * r->cap : 1024;
            struct step_line *p = realloc(r->steps, (size_t)cap * sizeof(*p));
            if (p == NULL)
                return ts_error(TS_ERR_OOM, "ledger: out of memory");
            r->steps = p;
            r->cap = cap;
        }
        int64_t step, tokens;
        if (!int_at(o, "step", 0, MAX_STEP, &step) ||
            !int_at(o, "tokens", 0, MAX_STEP_TOKENS, &tokens))
            return ts_error(TS_ERR_FORMAT, "%s line %d: a step line without its step or tokens",
                            r->path, lineno);
        r->steps[r->nsteps++] = (struct step_line){.seg = si,
                                                   .step = step,
                                                   .tokens = tokens,
                                                   .wall_s = num(o, "wall_s"),
                                                   .pause_s = num(o, "pause_s"),
                                                   .dev_s = num(o, "device_s"),
                                                   .energy_j = num(o, "energy_j")};
        g->num_lines++;
    } else if (strcmp(type, "segment") == 0) {
        g->ended = true;
        g->wall_s = num(o, "wall_s");
        g->step_s = num(o, "step_s");
        g->eval_s = num(o, "eval_s");
        g->ckpt_s = num(o, "checkpoint_s");
        g->energy_j = num(o, "energy_j");
        snprintf(sum->exit_reason, sizeof(sum->exit_reason), "%s", str(o, "exit"));
        sum->ended = true;
    }
    return TS_OK;
}

struct step_at {
    int64_t step, line;
};

static int cmp_step_at(const void *a, const void *b) {
    const struct step_at *x = a, *y = b;
    if (x->step != y->step)
        return x->step < y->step ? -1 : 1;
    return (x->line > y->line) - (x->line < y->line);
}

/* What the job cost, from its segments and step lines. */
static void compute(struct reader *r) {
    struct ts_ledger_summary *s = r->sum;
    s->segments = r->nsegs;
    s->restarts = r->nsegs > 0 ? r->nsegs - 1 : 0;
    s->step_lines = r->nsteps;
    /* a redone step counts once: the last time it was trained. The lines sorted by (step, line)
     * put each step's last line at the end of its run (a table indexed by step would need as
     * many entries as the largest step, 64-bit since steps are). */
    struct step_at *order = malloc((size_t)(r->nsteps > 0 ? r->nsteps : 1) * sizeof(*order));
    int64_t n = 0;
    for (int64_t i = 0; order != NULL && i < r->nsteps; i++)
        if (r->steps[i].step >= 0)
            order[n++] = (struct step_at){r->steps[i].step, i};
    if (order != NULL)
        qsort(order, (size_t)n, sizeof(*order), cmp_step_at);
    for (int64_t k = 0; k < n; k++)
        if (k + 1 == n || order[k + 1].step != order[k].step) {
            s->steps++;
            s->tokens += r->steps[order[k].line].tokens;
        }
    free(order);
    double energy = 0, usd = 0;
    bool energy_all = true, energy_priced = true;
    double st_usd = 0, st_dev = 0, st_flops = 0, st_peak = 0;
    int64_t st_tokens = 0;
    bool st_priced = true, st_peak_known = true;
    for (int k = 0; k < r->nsegs; k++) {
        const struct seg *g = &r->segs[k];
        double wall = g->ended ? g->wall_s : g->startup_s, steps_s = 0, pauses = 0, seg_e = 0;
        bool seg_e_known = true;
        for (int64_t i = g->first_line; i < g->first_line + g->num_lines; i++) {
            steps_s += r->steps[i].wall_s;
            if (r->steps[i].pause_s > 0) /* NaN (older ledgers: none) adds nothing */
                pauses += r->steps[i].pause_s;
            seg_e += r->steps[i].energy_j;
            seg_e_known = seg_e_known && isfinite(r->steps[i].energy_j);
        }
        if (!g->ended)
            wall += steps_s + pauses; /* a killed segment: what its lines know */
        else
            seg_e = g->energy_j, seg_e_known = isfinite(g->energy_j);
        s->wall_s += wall;
        s->device_seconds += wall * g->devices;
        s->startup_s += g->startup_s;
        s->step_s += g->ended ? g->step_s : steps_s;
        s->eval_s += g->ended ? g->eval_s : 0;
        s->checkpoint_s += g->ended ? g->ckpt_s : 0;
        s->lost_steps += g->lost;
        energy_all = energy_all && seg_e_known;
        energy += seg_e;
        if (g->price_h < 0) {
            usd = NAN;
        } else {
            usd += wall * g->devices / 3600.0 * g->price_h;
            if (seg_e_known && g->price_kwh >= 0)
                usd += seg_e / 3.6e6 * g->price_kwh;
            else
                energy_priced = false;
        }
        /* steady state: this segment's steps after its warm-up */
        const int64_t warm = ts_ledger_warmup_steps(g->num_lines);
        for (int64_t i = g->first_line + warm; i < g->first_line + g->num_lines; i++) {
            const struct step_line *x = &r->steps[i];
            st_tokens += x->tokens;
            st_dev += x->dev_s;
            st_flops += g->fpt * (double)x->tokens;
            if (g->peak > 0)
                st_peak += x->dev_s * g->peak;
            else
                st_peak_known = false;
            if (g->price_h < 0) {
                st_priced = false;
                continue;
            }
            st_usd += x->dev_s / 3600.0 * g->price_h;
            if (isfinite(x->energy_j) && g->price_kwh >= 0)
                st_usd += x->energy_j / 3.6e6 * g->price_kwh;
        }
    }
    s->energy_j = energy_all && r->nsegs > 0 ? energy : NAN;
    s->usd = r->nsegs > 0 ? usd : NAN;
    s->energy_priced = isfinite(s->usd) && energy_priced;
    s->goodput_usd_per_1m_tokens = s->tokens > 0 ? s->usd / (double)s->tokens * 1e6 : NAN;
    s->usd_per_1m_tokens = st_priced && st_tokens > 0 ? st_usd / (double)st_tokens * 1e6 : NAN;
    s->tokens_per_s_per_device = st_dev > 0 ? (double)st_tokens / st_dev : NAN;
    s->mfu = st_peak_known && st_peak > 0 ? st_flops / st_peak : NAN;
}

ts_status ts_ledger_summarize(const char *path, struct ts_ledger_summary *out) {
    memset(out, 0, sizeof(*out));
    out->usd_per_device_hour = out->usd_per_kwh = NAN;
    struct reader r = {.sum = out, .path = path};
    ts_status st = each_line(path, read_line, &r);
    if (st == TS_OK && r.nsegs == 0)
        st = ts_error(TS_ERR_FORMAT, "%s holds no segment", path);
    if (st == TS_OK)
        compute(&r);
    free(r.segs);
    free(r.steps);
    return st;
}
