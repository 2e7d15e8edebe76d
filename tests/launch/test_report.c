/* test_report.c: `tessera report` pages read back: the page is well formed, every plot holds one
 * series per run, and every plotted point is the value the run's files hold (data-x, data-y as
 * doubles, equal to the ledger's and metrics' numbers or to the documented arithmetic on them),
 * placed where the plot's frame maps it; restarts, stops, divergence and killed segments are
 * marked; bad lines are skipped with their line numbers (or refused with --strict); bad input
 * exits 2. Synthetic runs are written here; one real `tessera train` run is stopped and resumed. */
#include <criterion/criterion.h>
#include <json-c/json.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli_util.h"

/* ---- a small reader for the page (the parts the report writes) ---- */

#define MAX_EL 20000

struct el {
    char name[16];
    int parent;
    const char *attrs; /* into the page text, up to attrs_len */
    size_t attrs_len;
};

struct page {
    char *text;
    struct el *els;
    int n;
};

/* Parses tags into elements, checking every element is closed in order; script and style bodies
 * are skipped as raw text. */
static void page_parse(struct page *p, char *text) {
    p->text = text;
    p->els = calloc(MAX_EL, sizeof(*p->els));
    p->n = 0;
    int stack[256], depth = 0;
    const char *s = text;
    while ((s = strchr(s, '<')) != NULL) {
        if (strncmp(s, "<!--", 4) == 0) {
            s = strstr(s, "-->");
            cr_assert_not_null(s, "an unclosed comment");
            continue;
        }
        if (s[1] == '!') { /* <!DOCTYPE html> */
            s = strchr(s, '>');
            cr_assert_not_null(s);
            continue;
        }
        const char *end = strchr(s, '>');
        cr_assert_not_null(end, "an unclosed tag at byte %ld", (long)(s - text));
        if (s[1] == '/') {
            char name[16] = "";
            sscanf(s + 2, "%15[a-zA-Z0-9]", name);
            cr_assert_gt(depth, 0, "</%s> closes nothing", name);
            cr_assert_str_eq(p->els[stack[depth - 1]].name, name, "<%s> closed by </%s>",
                             p->els[stack[depth - 1]].name, name);
            depth--;
            s = end + 1;
            continue;
        }
        cr_assert_lt(p->n, MAX_EL);
        struct el *e = &p->els[p->n];
        sscanf(s + 1, "%15[a-zA-Z0-9]", e->name);
        cr_assert_neq(e->name[0], '\0', "a tag without a name at byte %ld", (long)(s - text));
        e->parent = depth > 0 ? stack[depth - 1] : -1;
        e->attrs = s + 1 + strlen(e->name);
        e->attrs_len = (size_t)(end - e->attrs);
        const bool self_closed = end[-1] == '/';
        const int idx = p->n++;
        s = end + 1;
        if (strcmp(e->name, "script") == 0 || strcmp(e->name, "style") == 0) {
            char close[16];
            snprintf(close, sizeof(close), "</%s>", e->name);
            s = strstr(s, close);
            cr_assert_not_null(s, "an unclosed <%s>", e->name);
            s += strlen(close);
            continue;
        }
        if (!self_closed) {
            cr_assert_lt(depth, 256);
            stack[depth++] = idx;
        }
    }
    cr_assert_eq(depth, 0, "%d element(s) left open, the innermost <%s>", depth,
                 depth ? p->els[stack[depth - 1]].name : "");
}

static void page_free(struct page *p) {
    free(p->text);
    free(p->els);
}

/* The value of attribute name (unescaped, malloc'ed), or NULL. */
static char *attr(const struct el *e, const char *name) {
    char key[64];
    snprintf(key, sizeof(key), " %s=\"", name);
    const char *end = e->attrs + e->attrs_len;
    const char *a = e->attrs;
    size_t klen = strlen(key);
    for (; a + klen <= end; a++)
        if (strncmp(a, key, klen) == 0)
            break;
    if (a + klen > end)
        return NULL;
    a += klen;
    const char *q = memchr(a, '"', (size_t)(end - a));
    cr_assert_not_null(q);
    char *v = malloc((size_t)(q - a) + 1), *o = v;
    static const char *const ent[][2] = {
        {"&amp;", "&"}, {"&lt;", "<"}, {"&gt;", ">"}, {"&quot;", "\""}, {"&#39;", "'"}};
    while (a < q) {
        bool done = false;
        for (int i = 0; i < 5 && !done; i++)
            if (strncmp(a, ent[i][0], strlen(ent[i][0])) == 0) {
                *o++ = ent[i][1][0];
                a += strlen(ent[i][0]);
                done = true;
            }
        if (!done)
            *o++ = *a++;
    }
    *o = '\0';
    return v;
}

static bool has_class(const struct el *e, const char *cls) {
    char *c = attr(e, "class");
    bool yes = false;
    if (c != NULL) {
        for (char *t = strtok(c, " "); t != NULL && !yes; t = strtok(NULL, " "))
            yes = strcmp(t, cls) == 0;
        free(c);
    }
    return yes;
}

static int attr_int(const struct el *e, const char *name) {
    char *v = attr(e, name);
    cr_assert_not_null(v, "<%s> has no %s", e->name, name);
    const int x = atoi(v);
    free(v);
    return x;
}

static double attr_num(const struct el *e, const char *name) {
    char *v = attr(e, name);
    cr_assert_not_null(v, "<%s> has no %s", e->name, name);
    const double x = strtod(v, NULL);
    free(v);
    return x;
}

/* Numbers of a space-separated list into out (malloc'ed); returns the count. */
static int numbers(const char *list, double **out) {
    int cap = 16, n = 0;
    double *v = malloc((size_t)cap * sizeof(*v));
    const char *s = list;
    char *end;
    for (;;) {
        const double x = strtod(s, &end);
        if (end == s)
            break;
        if (n == cap)
            v = realloc(v, (size_t)(cap *= 2) * sizeof(*v));
        v[n++] = x;
        s = end;
        if (*s == ',')
            s++;
    }
    *out = v;
    return n;
}

/* ---- a plot's points ---- */

struct point {
    double x, y;
};

struct series {
    int run;
    char *missing;
    struct point *pts;
    int n, pieces;
};

struct plot {
    int el;
    char *metric, *axis;
    struct series s[8];
    int nseries;
    int markers[64];
    int nmarkers;
};

/* Each polyline's data-x/data-y, checked against its pixel points through the frame's map. */
static void read_polyline(const struct page *pg, const struct el *frame, const struct el *pl,
                          struct series *s) {
    char *xs = attr(pl, "data-x"), *ys = attr(pl, "data-y"), *pts = attr(pl, "points");
    cr_assert(xs && ys && pts, "a polyline without data-x, data-y or points");
    double *x, *y, *pp;
    const int nx = numbers(xs, &x), ny = numbers(ys, &y), np = numbers(pts, &pp);
    cr_assert_eq(nx, ny);
    cr_assert_eq(np, 2 * nx);
    const double x0 = attr_num(frame, "data-x0"), x1 = attr_num(frame, "data-x1"),
                 y0 = attr_num(frame, "data-y0"), y1 = attr_num(frame, "data-y1"),
                 px0 = attr_num(frame, "data-px0"), px1 = attr_num(frame, "data-px1"),
                 py0 = attr_num(frame, "data-py0"), py1 = attr_num(frame, "data-py1");
    s->pts = realloc(s->pts, (size_t)(s->n + nx) * sizeof(*s->pts));
    for (int i = 0; i < nx; i++) {
        const double ex = px0 + (x[i] - x0) / (x1 - x0) * (px1 - px0);
        const double ey = py0 + (y[i] - y0) / (y1 - y0) * (py1 - py0);
        cr_expect(fabs(pp[2 * i] - ex) <= 0.006 && fabs(pp[2 * i + 1] - ey) <= 0.006,
                  "point %d drawn at (%g, %g), its value maps to (%g, %g)", i, pp[2 * i],
                  pp[2 * i + 1], ex, ey);
        cr_expect(ex >= fmin(px0, px1) - 1e-9 && ex <= fmax(px0, px1) + 1e-9 &&
                      ey >= fmin(py0, py1) - 1e-9 && ey <= fmax(py0, py1) + 1e-9,
                  "point %d outside the frame", i);
        s->pts[s->n++] = (struct point){x[i], y[i]};
    }
    s->pieces++;
    (void)pg;
    free(x);
    free(y);
    free(pp);
    free(xs);
    free(ys);
    free(pts);
}

/* All plots of the page, each with its series (one per run, checked) and markers. */
static int read_plots(const struct page *pg, struct plot *plots, int max, int nruns) {
    int n = 0;
    for (int i = 0; i < pg->n; i++) {
        const struct el *e = &pg->els[i];
        if (strcmp(e->name, "svg") != 0 || !has_class(e, "plot"))
            continue;
        cr_assert_lt(n, max);
        struct plot *p = &plots[n++];
        memset(p, 0, sizeof(*p));
        p->el = i;
        p->metric = attr(e, "data-metric");
        p->axis = attr(e, "data-axis");
        int frame = -1;
        for (int j = i + 1; j < pg->n && frame < 0; j++)
            if (pg->els[j].parent == i && has_class(&pg->els[j], "frame"))
                frame = j;
        cr_assert_geq(frame, 0, "a plot without its frame");
        for (int j = i + 1; j < pg->n; j++) {
            const struct el *c = &pg->els[j];
            if (c->parent == i && strcmp(c->name, "g") == 0 && has_class(c, "series")) {
                cr_assert_lt(p->nseries, 8);
                struct series *s = &p->s[p->nseries++];
                s->run = attr_int(c, "data-run");
                s->missing = attr(c, "data-missing");
                bool thinned = false;
                for (int k = j + 1; k < pg->n; k++)
                    if (pg->els[k].parent == j && strcmp(pg->els[k].name, "polyline") == 0) {
                        read_polyline(pg, &pg->els[frame], &pg->els[k], s);
                        char *t = attr(&pg->els[k], "data-thinned");
                        thinned = thinned || t != NULL;
                        free(t);
                    }
                if (!thinned)
                    cr_expect_eq(s->n, attr_int(c, "data-points"), "%s: data-points", p->metric);
            } else if (c->parent == i && strcmp(c->name, "g") == 0 && has_class(c, "marker")) {
                cr_assert_lt(p->nmarkers, 64);
                p->markers[p->nmarkers++] = j;
            }
        }
        cr_assert_eq(p->nseries, nruns, "plot %s-%s has %d series for %d runs", p->metric, p->axis,
                     p->nseries, nruns);
        for (int r = 0; r < nruns; r++)
            cr_assert_eq(p->s[r].run, r, "series in run order");
    }
    return n;
}

static void plots_free(struct plot *plots, int n) {
    for (int i = 0; i < n; i++) {
        free(plots[i].metric);
        free(plots[i].axis);
        for (int j = 0; j < plots[i].nseries; j++) {
            free(plots[i].s[j].missing);
            free(plots[i].s[j].pts);
        }
    }
}

static struct plot *find_plot(struct plot *plots, int n, const char *metric, const char *axis) {
    for (int i = 0; i < n; i++)
        if (strcmp(plots[i].metric, metric) == 0 && strcmp(plots[i].axis, axis) == 0)
            return &plots[i];
    cr_assert_fail("no plot %s against %s", metric, axis);
    return NULL;
}

static void read_page(struct page *pg, const char *path) {
    FILE *f = fopen(path, "r");
    cr_assert_not_null(f, "no page at %s", path);
    fseek(f, 0, SEEK_END);
    const long len = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *text = malloc((size_t)len + 1);
    cr_assert_eq(fread(text, 1, (size_t)len, f), (size_t)len);
    text[len] = '\0';
    fclose(f);
    page_parse(pg, text);
}

/* ---- what the runs' files say ---- */

#define MAX_PTS 4096

struct expect {
    int n;
    struct point p[MAX_PTS];
};

static void add(struct expect *e, double x, double y) {
    if (!isfinite(x) || !isfinite(y))
        return;
    cr_assert_lt(e->n, MAX_PTS);
    e->p[e->n++] = (struct point){x, y};
}

static double jnum(struct json_object *o, const char *key) {
    struct json_object *v = NULL;
    if (o == NULL || !json_object_object_get_ex(o, key, &v) ||
        json_object_is_type(v, json_type_null))
        return NAN;
    return json_object_get_double(v);
}

static const char *jstr(struct json_object *o, const char *key) {
    struct json_object *v = NULL;
    return json_object_object_get_ex(o, key, &v) ? json_object_get_string(v) : "";
}

/* The values docs/report.md says each plot shows, recomputed from the files: ledger series
 * and the time of each step (the last time the ledger trained it). */
struct truth {
    struct expect step[8], time[8]; /* by metric index below */
    double step_time[1024];         /* the job time of step s */
    int step_seg[1024];
};

enum { M_LOSS, M_VAL, M_LR, M_GN, M_TPS, M_MFU, M_USD, M_USD1M, M_N };
static const char *const metric_key[M_N] = {"train_loss",   "val_loss", "lr",  "grad_norm",
                                            "tokens_per_s", "mfu",      "usd", "usd_per_1m_tokens"};

static void truth_from_ledger(struct truth *t, const char *dir) {
    char path[512], line[8192];
    snprintf(path, sizeof(path), "%s/ledger.jsonl", dir);
    FILE *f = fopen(path, "r");
    cr_assert_not_null(f, "%s", path);
    /* segments in order: their start and end lines, their steps */
    double seg_t = 0, seg_usd = 0, ts = 0, u = 0, price_h = -1, price_kwh = -1, startup = 0;
    int devices = 0;
    for (int i = 0; i < 1024; i++)
        t->step_time[i] = NAN;
    while (fgets(line, sizeof(line), f) != NULL) {
        struct json_object *o = json_tokener_parse(line);
        cr_assert_not_null(o, "%s", line);
        const char *type = jstr(o, "type");
        if (strcmp(type, "segment_start") == 0) {
            struct json_object *pr = NULL;
            json_object_object_get_ex(o, "prices", &pr);
            price_h =
                isfinite(jnum(pr, "usd_per_device_hour")) ? jnum(pr, "usd_per_device_hour") : -1;
            price_kwh = isfinite(jnum(pr, "usd_per_kwh")) ? jnum(pr, "usd_per_kwh") : -1;
            startup = jnum(o, "startup_s");
            devices = (int)jnum(o, "devices");
            ts = seg_t + startup;
            u = price_h >= 0 ? seg_usd + startup * devices / 3600.0 * price_h : NAN;
        } else if (strcmp(type, "step") == 0) {
            const double step = jnum(o, "step"), tokens = jnum(o, "tokens"),
                         wall = jnum(o, "wall_s"), dev = jnum(o, "device_s"),
                         energy = jnum(o, "energy_j");
            const double pause = jnum(o, "pause_s") > 0 ? jnum(o, "pause_s") : 0;
            ts += pause + wall;
            double su = NAN;
            if (price_h >= 0) {
                su = dev / 3600.0 * price_h;
                if (isfinite(energy) && price_kwh >= 0)
                    su += energy / 3.6e6 * price_kwh;
            }
            u += su + (price_h >= 0 ? pause * devices / 3600.0 * price_h : 0);
            const double y[M_N] = {
                [M_TPS] = wall > 0 ? tokens / wall : NAN,
                [M_MFU] = jnum(o, "mfu"),
                [M_USD] = u,
                [M_USD1M] = tokens > 0 ? su / tokens * 1e6 : NAN,
            };
            for (int m = M_TPS; m < M_N; m++) {
                add(&t->step[m], step, y[m]);
                add(&t->time[m], ts, y[m]);
            }
            cr_assert_lt(step, 1024);
            t->step_time[(int)step] = ts;
            t->step_seg[(int)step] = (int)jnum(o, "segment");
        } else if (strcmp(type, "segment") == 0) {
            seg_t += jnum(o, "wall_s");
            seg_usd = price_h >= 0 ? seg_usd + jnum(o, "usd") : NAN;
            ts = seg_t;
        }
        json_object_put(o);
    }
    fclose(f);
}

static void truth_from_metrics(struct truth *t, const char *dir) {
    char path[512], line[8192];
    snprintf(path, sizeof(path), "%s/metrics.jsonl", dir);
    FILE *f = fopen(path, "r");
    cr_assert_not_null(f, "%s", path);
    while (fgets(line, sizeof(line), f) != NULL) {
        struct json_object *o = json_tokener_parse(line);
        cr_assert_not_null(o, "%s", line);
        const double step = jnum(o, "step");
        const double time = step < 1024 ? t->step_time[(int)step] : NAN;
        struct json_object *v;
        if (json_object_object_get_ex(o, "loss", &v)) {
            add(&t->step[M_LOSS], step, jnum(o, "loss"));
            add(&t->time[M_LOSS], time, jnum(o, "loss"));
            add(&t->step[M_LR], step, jnum(o, "lr"));
            add(&t->time[M_LR], time, jnum(o, "lr"));
            add(&t->step[M_GN], step, jnum(o, "grad_norm"));
            add(&t->time[M_GN], time, jnum(o, "grad_norm"));
        } else if (json_object_object_get_ex(o, "val_loss", &v)) {
            add(&t->step[M_VAL], step, jnum(o, "val_loss"));
            add(&t->time[M_VAL], time, jnum(o, "val_loss"));
        }
        json_object_put(o);
    }
    fclose(f);
}

/* Every point of run r's series in every plot equals the files' value, in order. */
static void expect_plots_equal_truth(struct plot *plots, int nplots, int r, struct truth *t) {
    for (int m = 0; m < M_N; m++)
        for (int a = 0; a < 2; a++) {
            const struct plot *p = find_plot(plots, nplots, metric_key[m], a ? "time" : "step");
            const struct series *s = &p->s[r];
            const struct expect *e = a ? &t->time[m] : &t->step[m];
            if (e->n == 0) {
                cr_expect_not_null(s->missing, "%s-%s: run %d has no values but a line",
                                   metric_key[m], p->axis, r);
                continue;
            }
            cr_expect_null(s->missing, "%s-%s: run %d missing: %s", metric_key[m], p->axis, r,
                           s->missing);
            cr_expect_eq(s->n, e->n, "%s-%s: run %d plots %d points, the files hold %d",
                         metric_key[m], p->axis, r, s->n, e->n);
            for (int i = 0; i < s->n && i < e->n; i++)
                cr_expect(s->pts[i].x == e->p[i].x && s->pts[i].y == e->p[i].y,
                          "%s-%s run %d point %d: plotted (%.17g, %.17g), the files (%.17g, "
                          "%.17g)",
                          metric_key[m], p->axis, r, i, s->pts[i].x, s->pts[i].y, e->p[i].x,
                          e->p[i].y);
        }
}

/* ---- synthetic runs ---- */

static void write_file(const char *dir, const char *name, const char *text) {
    char path[512];
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    FILE *f = fopen(path, "w");
    cr_assert_not_null(f, "%s", path);
    fputs(text, f);
    fclose(f);
}

static void make_dir(char *out, size_t len, const char *root, const char *name) {
    snprintf(out, len, "%s/%s", root, name);
    cr_assert_eq(mkdir(out, 0777), 0, "mkdir %s", out);
}

#define START(seg, first, lost, price)                                                             \
    "{\"type\":\"segment_start\",\"segment\":" #seg ",\"first_step\":" #first                      \
    ",\"resumed_from\":-1,\"lost_steps\":" #lost                                                   \
    ",\"devices\":2,\"device\":\"gpu\",\"device_name\":\"fake\",\"precision\":\"bf16\","           \
    "\"flops_per_token\":1000,\"peak_flops_per_device\":1e9,\"peak\":\"test\",\"energy\":\"x\","   \
    "\"prices\":{\"usd_per_device_hour\":" price ",\"usd_per_kwh\":0.5,\"source\":\"flags\"},"     \
    "\"startup_s\":1.25}\n"
#define STEP(seg, step, wall, dev, mfu, joules)                                                    \
    "{\"type\":\"step\",\"segment\":" #seg ",\"step\":" #step ",\"tokens\":64,\"wall_s\":" #wall   \
    ",\"devices\":2,\"device\":\"gpu\",\"device_s\":" #dev ",\"tokens_per_s_per_device\":1,"       \
    "\"mfu\":" #mfu ",\"energy_j\":" #joules "}\n"
#define END(seg, first, last, wall, usd, exit)                                                     \
    "{\"type\":\"segment\",\"segment\":" #seg ",\"first_step\":" #first ",\"last_step\":" #last    \
    ",\"steps\":3,\"tokens\":192,\"lost_steps\":0,\"devices\":2,\"device\":\"gpu\","               \
    "\"startup_s\":1.25,\"step_s\":1,\"eval_s\":0,\"checkpoint_s\":0,\"wall_s\":" #wall            \
    ",\"device_s\":1,\"energy_j\":null,\"prices\":{\"usd_per_device_hour\":2,\"usd_per_kwh\":0.5," \
    "\"source\":\"flags\"},\"usd\":" #usd ",\"exit\":\"" exit "\"}\n"

static const char metrics_a[] =
    "{\"step\":1,\"loss\":4.5,\"lr\":0.0001,\"grad_norm\":2.5,\"tokens\":64,\"step_ms\":1,"
    "\"tok_per_s\":1,\"comm_wait_ms\":0}\n"
    "{\"step\":2,\"loss\":4.25,\"lr\":0.0002,\"grad_norm\":2,\"tokens\":64,\"step_ms\":1,"
    "\"tok_per_s\":1,\"comm_wait_ms\":0}\n"
    "{\"step\":2,\"val_loss\":4.375,\"val_tokens\":100}\n"
    "{\"step\":2,\"checkpoint\":\"/x/step_00000002\",\"checkpoint_s\":0.1,\"save_s\":0.2}\n"
    "{\"step\":3,\"loss\":4,\"lr\":0.0003,\"grad_norm\":1.5,\"tokens\":64,\"step_ms\":1,"
    "\"tok_per_s\":1,\"comm_wait_ms\":0}\n"
    "{\"step\":4,\"loss\":3.75,\"lr\":0.0004,\"grad_norm\":1.25,\"tokens\":64,\"step_ms\":1,"
    "\"tok_per_s\":1,\"comm_wait_ms\":0}\n"
    "{\"step\":4,\"val_loss\":3.875,\"val_tokens\":100}\n";

/* Run a: preempted after step 3, resumed from step 2 (one step lost), then diverged at 4.
 * Run b: one segment, no price, killed (no end line). */
static void write_synthetic(const char *root, char *a, char *b, size_t len) {
    make_dir(a, len, root, "a");
    write_file(a, "ledger.jsonl",
               START(1, 0, 0, "2") STEP(1, 1, 0.5, 1.0, 0.25, 10) STEP(1, 2, 0.25, 0.5, 0.5, 20)
                   STEP(1, 3, 0.125, 0.25, null, null) END(1, 0, 3, 3.5, 0.25, "preempted")
                       START(2, 2, 1, "2") STEP(2, 3, 0.5, 1.0, 0.125, 5)
                           STEP(2, 4, 0.75, 1.5, 0.0625, 5) END(2, 2, 4, 4, 0.5, "diverged"));
    write_file(a, "metrics.jsonl", metrics_a);
    write_file(a, "config.json",
               "{\"model\":{\"num_layers\":2,\"num_heads\":2,\"channels\":64,\"vocab_size\":64},"
               "\"train\":{\"seq_len\":16,\"batch\":2,\"grad_accum\":1,\"steps\":10,\"lr\":0.001,"
               "\"lr_schedule\":\"cosine\",\"precision\":\"bf16\",\"device\":\"cuda\"}}\n");
    write_file(a, "exit.json", "{\"code\":5,\"reason\":\"diverged\",\"step\":4,\"steps_run\":2}\n");
    make_dir(b, len, root, "b&<c>");
    write_file(b, "ledger.jsonl",
               START(1, 0, 0, "null") STEP(1, 1, 0.5, 1.0, 0.25, null)
                   STEP(1, 2, 0.5, 1.0, 0.25, null));
    write_file(b, "metrics.jsonl",
               "{\"step\":1,\"loss\":5,\"lr\":0.001,\"grad_norm\":1,\"tokens\":64}\n"
               "{\"step\":2,\"loss\":nan,\"lr\":0.001,\"grad_norm\":-nan,\"tokens\":64}\n");
}

Test(launch_report, synthetic_runs_plot_their_files_values, .timeout = 60) {
    char root[256], a[320], b[320], out[400];
    cli_tmpdir(root, sizeof(root));
    write_synthetic(root, a, b, sizeof(a));
    snprintf(out, sizeof(out), "%s/r.html", root);
    struct cli_result r;
    cli_run(&r, "report %s '%s' --out %s --title 'a & b'", a, b, out);
    cr_assert_eq(r.code, 0, "%s", r.err);
    struct page pg;
    read_page(&pg, out);
    static struct plot plots[32];
    const int n = read_plots(&pg, plots, 32, 2);
    cr_expect_eq(n, 16, "8 metrics against steps and against time");
    static struct truth ta, tb;
    memset(&ta, 0, sizeof(ta));
    memset(&tb, 0, sizeof(tb));
    truth_from_ledger(&ta, a);
    truth_from_metrics(&ta, a);
    truth_from_ledger(&tb, b);
    /* b's metrics: loss at step 1 only (nan at 2), grad norm -nan at 2 */
    add(&tb.step[M_LOSS], 1, 5);
    add(&tb.time[M_LOSS], tb.step_time[1], 5);
    add(&tb.step[M_LR], 1, 0.001);
    add(&tb.step[M_LR], 2, 0.001);
    add(&tb.time[M_LR], tb.step_time[1], 0.001);
    add(&tb.time[M_LR], tb.step_time[2], 0.001);
    add(&tb.step[M_GN], 1, 1);
    add(&tb.time[M_GN], tb.step_time[1], 1);
    expect_plots_equal_truth(plots, n, 0, &ta);
    expect_plots_equal_truth(plots, n, 1, &tb);

    /* hand-computed spot checks of the arithmetic: a's step 2 (segment 1) ends at 1.25 + 0.5 +
     * 0.25 s; its redone step 3 (segment 2) at 3.5 + 1.25 + 0.5; cumulative $ at a's first
     * step: (1.25 s x 2 devices + 1.0 device-s) / 3600 x $2 + 10 J / 3.6e6 x $0.5 */
    const struct plot *ut = find_plot(plots, n, "usd", "time");
    cr_expect_eq(ut->s[0].pts[1].x, 2.0);
    cr_expect_eq(ut->s[0].pts[3].x, 5.25);
    cr_expect_float_eq(ut->s[0].pts[0].y, (2.5 + 1.0) / 3600 * 2 + 10 / 3.6e6 * 0.5, 1e-15);
    cr_expect_float_eq(ut->s[0].pts[3].y, 0.25 + 2.5 / 3600 * 2 + 1.0 / 3600 * 2 + 5 / 3.6e6 * 0.5,
                       1e-15);
    /* a resumed run's loss keeps the redone step's time: step 3's in segment 2 */
    const struct plot *lt = find_plot(plots, n, "train_loss", "time");
    cr_expect_eq(lt->s[0].pts[2].x, 5.25);
    cr_expect_eq(lt->s[0].pieces, 2, "a restart breaks the line");
    cr_expect_eq(find_plot(plots, n, "train_loss", "step")->s[0].pieces, 1);
    /* MFU: null at a's step 3 of segment 1 */
    cr_expect_eq(find_plot(plots, n, "mfu", "step")->s[0].n, 4);
    /* b: no price, said so */
    cr_expect_str_eq(find_plot(plots, n, "usd", "step")->s[1].missing, "no price");
    cr_expect_str_eq(find_plot(plots, n, "usd_per_1m_tokens", "time")->s[1].missing, "no price");
    cr_expect_not_null(strstr(pg.text, "b&amp;&lt;c&gt;: no price"), "the plot's note");
    /* the title and a run's name escaped */
    cr_expect_not_null(strstr(pg.text, "<title>a &amp; b</title>"));
    plots_free(plots, n);
    page_free(&pg);
    cli_rmdir(root);
}

/* The markers of run a (restart from 2 with a lost step, preempted, diverged) and of b (no end
 * line), at the steps and times the ledger says, on every plot. */
Test(launch_report, restarts_stops_and_divergence_are_marked, .timeout = 60) {
    char root[256], a[320], b[320], out[400];
    cli_tmpdir(root, sizeof(root));
    write_synthetic(root, a, b, sizeof(a));
    snprintf(out, sizeof(out), "%s/r.html", root);
    struct cli_result r;
    cli_run(&r, "report %s '%s' --out %s", a, b, out);
    cr_assert_eq(r.code, 0, "%s", r.err);
    struct page pg;
    read_page(&pg, out);
    static struct plot plots[32];
    const int n = read_plots(&pg, plots, 32, 2);
    for (int i = 0; i < n; i++) {
        const bool time = strcmp(plots[i].axis, "time") == 0;
        struct {
            const char *cls;
            int run;
            double x;
            bool seen;
        } want[] = {
            {"stop", 0, time ? 3.5 : 3, false},     /* preempted: segment 1's end */
            {"restart", 0, time ? 3.5 : 2, false},  /* segment 2 from step 2 */
            {"diverged", 0, time ? 7.5 : 4, false}, /* 3.5 + segment 2's wall */
            {"killed", 1, time ? 2.25 : 2, false},  /* its last step */
        };
        cr_expect_eq(plots[i].nmarkers, 4, "%s-%s", plots[i].metric, plots[i].axis);
        for (int k = 0; k < plots[i].nmarkers; k++) {
            const struct el *e = &pg.els[plots[i].markers[k]];
            for (size_t w = 0; w < sizeof(want) / sizeof(want[0]); w++)
                if (has_class(e, want[w].cls) && attr_int(e, "data-run") == want[w].run &&
                    attr_num(e, "data-x") == want[w].x)
                    want[w].seen = true;
        }
        for (size_t w = 0; w < sizeof(want) / sizeof(want[0]); w++)
            cr_expect(want[w].seen, "%s-%s: no %s marker of run %d at %g", plots[i].metric,
                      plots[i].axis, want[w].cls, want[w].run, want[w].x);
    }
    cr_expect_not_null(strstr(pg.text, ">restart from 2 (1 lost)<"));
    cr_expect_not_null(strstr(pg.text, ">diverged (exit 5)<"), "the table's exit column");
    plots_free(plots, n);
    page_free(&pg);
    cli_rmdir(root);
}

/* A bad line is skipped with its file and line number on stderr and in the page; --strict
 * refuses it (exit 2). The cost table is still `tessera cost`'s over the lines kept. */
Test(launch_report, bad_lines_are_skipped_and_named, .timeout = 60) {
    char root[256], a[320], b[320], out[400], path[400];
    cli_tmpdir(root, sizeof(root));
    write_synthetic(root, a, b, sizeof(a));
    snprintf(path, sizeof(path), "%s/metrics.jsonl", a);
    FILE *f = fopen(path, "a");
    fputs("{\"step\":5,\"loss\":3.5,\n{\"loss\":3}\n", f);
    fclose(f);
    snprintf(path, sizeof(path), "%s/ledger.jsonl", b);
    f = fopen(path, "a");
    fputs("not json\n", f);
    fclose(f);
    snprintf(out, sizeof(out), "%s/r.html", root);
    struct cli_result r;
    cli_run(&r, "report %s '%s' --out %s", a, b, out);
    cr_assert_eq(r.code, 0, "%s", r.err);
    cr_expect_not_null(strstr(r.err, "a/metrics.jsonl line 8: not a JSON object; skipped"), "%s",
                       r.err);
    cr_expect_not_null(strstr(r.err, "a/metrics.jsonl line 9: a metrics line without an "
                                     "integer \"step\"; skipped"),
                       "%s", r.err);
    cr_expect_not_null(strstr(r.err, "c>/ledger.jsonl line 4: not a JSON object"), "%s", r.err);
    struct page pg;
    read_page(&pg, out);
    cr_expect_not_null(strstr(pg.text, "<li>"), "the page lists the warnings");
    cr_expect_not_null(strstr(pg.text, "3 line(s) could not be read"));
    static struct plot plots[32];
    const int n = read_plots(&pg, plots, 32, 2);
    cr_expect_eq(find_plot(plots, n, "train_loss", "step")->s[0].n, 4, "the good lines");
    plots_free(plots, n);
    page_free(&pg);

    cli_run(&r, "report %s '%s' --out %s/s.html --strict", a, b, root);
    cr_expect_eq(r.code, 2);
    cr_expect_not_null(strstr(r.err, "metrics.jsonl line 8: not a JSON object (--strict"), "%s",
                       r.err);
    snprintf(path, sizeof(path), "%s/s.html", root);
    cr_expect_neq(access(path, F_OK), 0, "no page from a refused run");
    cli_rmdir(root);
}

Test(launch_report, bad_input_exits_2_with_one_line, .timeout = 60) {
    char root[256], a[320], b[320], empty[320];
    cli_tmpdir(root, sizeof(root));
    write_synthetic(root, a, b, sizeof(a));
    make_dir(empty, sizeof(empty), root, "empty");
    struct cli_result r;
    cli_run(&r, "report %s/nowhere --out %s/r.html", root, root);
    cr_expect_eq(r.code, 2);
    cr_expect_not_null(strstr(r.err, "nowhere: No such file or directory"), "%s", r.err);
    cli_run(&r, "report %s --out %s/r.html", empty, root);
    cr_expect_eq(r.code, 2);
    cr_expect_not_null(strstr(r.err, "holds neither ledger.jsonl nor metrics.jsonl"), "%s", r.err);
    cli_run(&r, "report %s/ledger.jsonl --out %s/r.html", a, root);
    cr_expect_eq(r.code, 2);
    cr_expect_not_null(strstr(r.err, "is not a run directory"), "%s", r.err);
    cli_run(&r, "report %s", a);
    cr_expect_eq(r.code, 2);
    cr_expect_not_null(strstr(r.err, "--out is required"), "%s", r.err);
    cli_run(&r, "report --out %s/r.html", root);
    cr_expect_eq(r.code, 2);
    cr_expect_not_null(strstr(r.err, "usage: tessera report RUN"), "%s", r.err);
    cli_run(&r, "report %s --out %s/no/such/dir/r.html", a, root);
    cr_expect_eq(r.code, 2);
    cr_expect_not_null(strstr(r.err, "cannot write"), "%s", r.err);
    cli_run(&r, "report %s --out - --max-points 1", a);
    cr_expect_eq(r.code, 2);
    cli_run(&r, "report --help");
    cr_expect_eq(r.code, 0);
    cr_expect_not_null(strstr(r.out, "--strict"), "%s", r.out);
    cli_run(&r, "help");
    cr_expect_not_null(strstr(r.out, "  report "), "the top-level help lists it");
    /* a page to stdout */
    cli_run(&r, "report %s --out -", a);
    cr_expect_eq(r.code, 0, "%s", r.err);
    cr_expect_eq(strncmp(r.out, "<!DOCTYPE html>", 15), 0);
    cli_rmdir(root);
}

/* --max-points thins a long line to each bucket's lowest and highest point: every point drawn
 * is still one of the files' points, the first and last kept, the spike kept. */
Test(launch_report, thinned_lines_keep_exact_points_and_spikes, .timeout = 60) {
    char root[256], a[320], out[400];
    cli_tmpdir(root, sizeof(root));
    make_dir(a, sizeof(a), root, "long");
    char path[400];
    snprintf(path, sizeof(path), "%s/metrics.jsonl", a);
    FILE *f = fopen(path, "w");
    for (int s = 1; s <= 1000; s++)
        fprintf(f, "{\"step\":%d,\"loss\":%.9g,\"lr\":0.001,\"grad_norm\":%g,\"tokens\":1}\n", s,
                10.0 / s, s == 537 ? 100.0 : 1.0 + (s % 7) * 0.125);
    fclose(f);
    snprintf(out, sizeof(out), "%s/r.html", root);
    struct cli_result r;
    cli_run(&r, "report %s --out %s --max-points 50", a, out);
    cr_assert_eq(r.code, 0, "%s", r.err);
    struct page pg;
    read_page(&pg, out);
    static struct plot plots[32];
    const int n = read_plots(&pg, plots, 32, 1);
    const struct series *gn = &find_plot(plots, n, "grad_norm", "step")->s[0];
    cr_expect_leq(gn->n, 50);
    cr_expect_geq(gn->n, 25);
    bool spike = false;
    for (int i = 0; i < gn->n; i++) {
        const int s = (int)gn->pts[i].x;
        cr_expect_eq(gn->pts[i].x, s);
        cr_expect_eq(gn->pts[i].y, s == 537 ? 100.0 : 1.0 + (s % 7) * 0.125, "step %d", s);
        spike = spike || s == 537;
        if (i > 0)
            cr_expect_gt(gn->pts[i].x, gn->pts[i - 1].x, "in order");
    }
    cr_expect(spike, "the spike at step 537 is drawn");
    const struct series *loss = &find_plot(plots, n, "train_loss", "step")->s[0];
    cr_expect_eq(loss->pts[0].x, 1);
    cr_expect_eq(loss->pts[loss->n - 1].x, 1000);
    cr_expect_str_eq(find_plot(plots, n, "mfu", "step")->s[0].missing, "no ledger.jsonl");
    cr_expect_str_eq(find_plot(plots, n, "train_loss", "time")->s[0].missing,
                     "no ledger.jsonl: no wall time");
    cr_expect_not_null(strstr(pg.text, "data-thinned=\"1000\""));
    plots_free(plots, n);
    page_free(&pg);
    cli_rmdir(root);
}

/* Ranges that break naive axes: steps 1e16 and 1e16 + 2 (a tick step smaller than their
 * spacing in doubles), losses of +-1e300, equal values, a single point:
 * drawn, exact, in the frame, and no hang. */
Test(launch_report, odd_ranges_are_drawn, .timeout = 60) {
    char root[256], a[320], out[400];
    cli_tmpdir(root, sizeof(root));
    make_dir(a, sizeof(a), root, "odd");
    write_file(a, "metrics.jsonl",
               "{\"step\":10000000000000000,\"loss\":1e300,\"lr\":0,\"grad_norm\":2}\n"
               "{\"step\":10000000000000002,\"loss\":-1e300,\"lr\":0,\"grad_norm\":2}\n"
               "{\"step\":3,\"val_loss\":7}\n");
    snprintf(out, sizeof(out), "%s/r.html", root);
    struct cli_result r;
    cli_run(&r, "report %s --out %s", a, out);
    cr_assert_eq(r.code, 0, "%s", r.err);
    struct page pg;
    read_page(&pg, out);
    static struct plot plots[32];
    const int n = read_plots(&pg, plots, 32, 1);
    const struct series *loss = &find_plot(plots, n, "train_loss", "step")->s[0];
    cr_assert_eq(loss->n, 2);
    cr_expect_eq(loss->pts[0].x, 1e16);
    cr_expect_eq(loss->pts[1].x, 1e16 + 2);
    cr_expect_eq(loss->pts[0].y, 1e300);
    cr_expect_eq(loss->pts[1].y, -1e300);
    cr_expect_eq(find_plot(plots, n, "grad_norm", "step")->s[0].n, 2);
    cr_expect_eq(find_plot(plots, n, "lr", "step")->s[0].n, 2);
    cr_expect_eq(find_plot(plots, n, "val_loss", "step")->s[0].n, 1);
    plots_free(plots, n);
    page_free(&pg);
    cli_rmdir(root);
}

/* ---- a real run ---- */

#define V 64
#define RUN_FLAGS                                                                                  \
    "--vocab-size 64 --layers 2 --heads 2 --channels 64 --seq-len 16 --batch 2 --threads 1 "       \
    "--log-every 100 --steps 12 --eval-every 4 --eval-batches 2 --ckpt-every 4"

/* Two real runs, one priced and stopped at 5 then resumed (from its step-4 checkpoint: one step
 * redone), one without a price: every point of every plot is the files' value. */
Test(launch_report, real_runs_plot_their_ledgers, .timeout = 300) {
    char dir[256], data[320], a[320], b[320], out[400];
    cli_tmpdir(dir, sizeof(dir));
    snprintf(data, sizeof(data), "%s/train_000.bin", dir);
    cli_write_pattern_shard(data, 20000, V, 1);
    snprintf(a, sizeof(a), "%s/a", dir);
    snprintf(b, sizeof(b), "%s/b", dir);
    struct cli_result r;
    cli_run(&r,
            "train " RUN_FLAGS " --data %s --val-data %s --out %s --stop-after 5 "
            "--price-per-gpu-hour 1.5",
            data, data, a);
    cr_assert_eq(r.code, 0, "%s", r.err);
    cli_run(&r,
            "train --data %s --out %s --threads 1 --overwrite --resume-from "
            "%s/checkpoints/step_00000004",
            data, a, a);
    cr_assert_eq(r.code, 0, "%s", r.err);
    /* b: a price table without a row for the CPU, so no price */
    char prices[320];
    snprintf(prices, sizeof(prices), "%s/prices.json", dir);
    FILE *f = fopen(prices, "w");
    cr_assert_not_null(f);
    fputs("{\"usd_per_device_hour\":{}}\n", f);
    fclose(f);
    cli_run(&r, "train " RUN_FLAGS " --data %s --val-data %s --out %s --lr 1e-3 --prices %s", data,
            data, b, prices);
    cr_assert_eq(r.code, 0, "%s", r.err);
    snprintf(out, sizeof(out), "%s/r.html", dir);
    cli_run(&r, "report %s %s --out %s", a, b, out);
    cr_assert_eq(r.code, 0, "%s", r.err);
    struct page pg;
    read_page(&pg, out);
    static struct plot plots[32];
    const int n = read_plots(&pg, plots, 32, 2);
    static struct truth ta, tb;
    memset(&ta, 0, sizeof(ta));
    memset(&tb, 0, sizeof(tb));
    truth_from_ledger(&ta, a);
    truth_from_metrics(&ta, a);
    truth_from_ledger(&tb, b);
    truth_from_metrics(&tb, b);
    cr_expect_eq(ta.step[M_TPS].n, 13, "12 steps and the redone step 5");
    cr_expect_eq(ta.step[M_LOSS].n, 12);
    cr_expect_eq(ta.step[M_VAL].n, 3);
    expect_plots_equal_truth(plots, n, 0, &ta);
    expect_plots_equal_truth(plots, n, 1, &tb);
    cr_expect_str_eq(find_plot(plots, n, "usd", "time")->s[1].missing, "no price");
    /* the restart: at step 4 (the checkpoint resumed from), and a stop at 5 */
    const struct plot *p = find_plot(plots, n, "train_loss", "step");
    int restarts = 0, stops = 0;
    for (int k = 0; k < p->nmarkers; k++) {
        const struct el *e = &pg.els[p->markers[k]];
        restarts += has_class(e, "restart") && attr_num(e, "data-x") == 4;
        stops += has_class(e, "stop") && attr_num(e, "data-x") == 5;
    }
    cr_expect_eq(restarts, 1);
    cr_expect_eq(stops, 1);
    cr_expect_not_null(strstr(pg.text, ">restart from 4 (1 lost)<"));
    plots_free(plots, n);
    page_free(&pg);
    cli_rmdir(dir);
}
