/* report_svg.c: one plot of `tessera report` as inline SVG (report.h), with no script and no
 * library: the axes, ticks, one polyline per unbroken piece of each run's series, and markers.
 *
 * The page is also a data file: every polyline carries its points' values (data-x, data-y, the
 * doubles at %.17g) and the frame carries the linear map from values to pixels, so a test (or a
 * user's script) reads back exactly what was plotted and where. */
#include "launch/report.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* The plot's box in pixels. */
#define W 520
#define H 300
#define LEFT 70
#define RIGHT 14
#define TOP 30
#define BOTTOM 46
#define MAX_TICKS 12

/* ---- series and markers ---- */

static ts_status new_piece(struct rp_series *s) {
    struct rp_piece *p = realloc(s->pieces, (size_t)(s->npieces + 1) * sizeof(*p));
    if (p == NULL)
        return ts_error(TS_ERR_OOM, "report: out of memory");
    s->pieces = p;
    s->pieces[s->npieces++] = (struct rp_piece){0};
    return TS_OK;
}

ts_status rp_series_add(struct rp_series *s, double x, double y, bool start_piece) {
    struct rp_piece *last = s->npieces ? &s->pieces[s->npieces - 1] : NULL;
    if (!isfinite(x) || !isfinite(y)) {
        if (last != NULL && last->n > 0)
            TS_CHECK(new_piece(s)); /* a gap */
        return TS_OK;
    }
    if (last == NULL || (start_piece && last->n > 0))
        TS_CHECK(new_piece(s));
    last = &s->pieces[s->npieces - 1];
    if (last->n == last->cap) {
        const int64_t cap = last->cap ? 2 * last->cap : 64;
        double *px = realloc(last->x, (size_t)cap * sizeof(double));
        if (px == NULL)
            return ts_error(TS_ERR_OOM, "report: out of memory");
        last->x = px;
        double *py = realloc(last->y, (size_t)cap * sizeof(double));
        if (py == NULL)
            return ts_error(TS_ERR_OOM, "report: out of memory");
        last->y = py;
        last->cap = cap;
    }
    last->x[last->n] = x;
    last->y[last->n] = y;
    last->n++;
    s->points++;
    return TS_OK;
}

ts_status rp_plot_add_marker(struct rp_plot *p, int run, enum rp_marker_kind kind, double x,
                             const char *label) {
    if (!isfinite(x))
        return TS_OK;
    if (p->nmarkers == p->cap_markers) {
        const int cap = p->cap_markers ? 2 * p->cap_markers : 8;
        struct rp_marker *m = realloc(p->markers, (size_t)cap * sizeof(*m));
        if (m == NULL)
            return ts_error(TS_ERR_OOM, "report: out of memory");
        p->markers = m;
        p->cap_markers = cap;
    }
    struct rp_marker *m = &p->markers[p->nmarkers++];
    *m = (struct rp_marker){.run = run, .kind = kind, .x = x};
    snprintf(m->label, sizeof(m->label), "%s", label);
    return TS_OK;
}

void rp_plot_deinit(struct rp_plot *p) {
    for (int i = 0; i < p->nseries; i++) {
        for (int j = 0; j < p->series[i].npieces; j++) {
            free(p->series[i].pieces[j].x);
            free(p->series[i].pieces[j].y);
        }
        free(p->series[i].pieces);
    }
    free(p->series);
    free(p->markers);
    p->series = NULL;
    p->markers = NULL;
    p->nseries = p->nmarkers = p->cap_markers = 0;
}

void rp_html_escape(FILE *f, const char *s) {
    for (; *s != '\0'; s++) {
        switch (*s) {
        case '&':
            fputs("&amp;", f);
            break;
        case '<':
            fputs("&lt;", f);
            break;
        case '>':
            fputs("&gt;", f);
            break;
        case '"':
            fputs("&quot;", f);
            break;
        case '\'':
            fputs("&#39;", f);
            break;
        default:
            fputc(*s, f);
        }
    }
}

/* ---- axes ---- */

/* 1, 2 or 5 times a power of ten, near range/ticks. */
static double nice_step(double range, int ticks) {
    const double raw = range / ticks;
    const double p = pow(10, floor(log10(raw)));
    const double m = raw / p;
    return (m < 1.5 ? 1 : m < 3.5 ? 2 : m < 7.5 ? 5 : 10) * p;
}

struct axis {
    double lo, hi;    /* data values at the ends */
    double unit;      /* ticks are shown divided by this (60: minutes) */
    const char *name; /* the unit's name, "" for none */
};

/* The span of the values, padded where all are equal. */
static void span(double *lo, double *hi) {
    if (!(*lo <= *hi)) { /* nothing plotted */
        *lo = 0;
        *hi = 1;
    } else if (*lo == *hi) {
        const double pad = *lo != 0 ? fabs(*lo) * 0.05 : 1;
        *lo -= pad;
        *hi += pad;
    }
}

static void tick_label(char *buf, size_t len, double v, double step, enum rp_format fmt) {
    if (fmt == RP_FMT_PERCENT) {
        v *= 100;
        step *= 100;
    }
    if (fabs(v) < step * 1e-6)
        v = 0; /* -0 and 1e-17 from the tick arithmetic */
    const int decimals = step >= 1 ? 0 : (int)ceil(-log10(step) - 1e-9);
    const char *pre = fmt == RP_FMT_USD ? "$" : "";
    const char *post = fmt == RP_FMT_PERCENT ? "%" : "";
    if (v != 0 && (fabs(v) >= 1e6 || decimals > 5))
        snprintf(buf, len, "%s%.3g%s", pre, v, post);
    else
        snprintf(buf, len, "%s%.*f%s", pre, decimals, v, post);
}

/* ---- the plot ---- */

struct frame {
    double x0, x1, y0, y1;     /* data */
    double px0, px1, py0, py1; /* pixels: x0 -> px0, y0 -> py0 (the bottom) */
};

static double px(const struct frame *fr, double x) {
    return fr->px0 + (x - fr->x0) / (fr->x1 - fr->x0) * (fr->px1 - fr->px0);
}

static double py(const struct frame *fr, double y) {
    return fr->py0 + (y - fr->y0) / (fr->y1 - fr->y0) * (fr->py1 - fr->py0);
}

/* The points of a piece to draw: all of them, or, past max, each bucket's lowest and highest
 * (in order), so a spike stays visible. Returns how many indices went to idx. */
static int64_t thin(const struct rp_piece *pc, int64_t max, int64_t *idx) {
    if (pc->n <= max) {
        for (int64_t i = 0; i < pc->n; i++)
            idx[i] = i;
        return pc->n;
    }
    const int64_t buckets = max / 2 > 1 ? max / 2 : 1;
    const int64_t size = (pc->n + buckets - 1) / buckets;
    int64_t m = 0;
    for (int64_t b = 0; b * size < pc->n; b++) {
        const int64_t s = b * size, e = s + size < pc->n ? s + size : pc->n;
        int64_t lo = s, hi = s;
        for (int64_t i = s; i < e; i++) {
            if (pc->y[i] < pc->y[lo])
                lo = i;
            if (pc->y[i] > pc->y[hi])
                hi = i;
        }
        const int64_t a = lo < hi ? lo : hi, c = lo < hi ? hi : lo;
        idx[m++] = a;
        if (c != a)
            idx[m++] = c;
    }
    return m;
}

static ts_status write_piece(FILE *f, const struct frame *fr, const struct rp_piece *pc,
                             int64_t max_points, bool dots) {
    int64_t *idx = malloc((size_t)pc->n * sizeof(*idx));
    if (idx == NULL)
        return ts_error(TS_ERR_OOM, "report: out of memory");
    const int64_t m = thin(pc, max_points, idx);
    fputs("<polyline data-x=\"", f);
    for (int64_t i = 0; i < m; i++)
        fprintf(f, "%s%.17g", i ? " " : "", pc->x[idx[i]]);
    fputs("\" data-y=\"", f);
    for (int64_t i = 0; i < m; i++)
        fprintf(f, "%s%.17g", i ? " " : "", pc->y[idx[i]]);
    if (m < pc->n)
        fprintf(f, "\" data-thinned=\"%lld", (long long)pc->n);
    fputs("\" points=\"", f);
    for (int64_t i = 0; i < m; i++)
        fprintf(f, "%s%.2f,%.2f", i ? " " : "", px(fr, pc->x[idx[i]]), py(fr, pc->y[idx[i]]));
    fputs("\"/>\n", f);
    if (dots)
        for (int64_t i = 0; i < m; i++)
            fprintf(f, "<circle class=\"dot\" cx=\"%.2f\" cy=\"%.2f\" r=\"2.5\"/>\n",
                    px(fr, pc->x[idx[i]]), py(fr, pc->y[idx[i]]));
    free(idx);
    return TS_OK;
}

static const char *marker_class(enum rp_marker_kind k) {
    switch (k) {
    case RP_RESTART:
        return "restart";
    case RP_STOP:
        return "stop";
    case RP_DIVERGED:
        return "diverged";
    case RP_KILLED:
        return "killed";
    }
    return "stop";
}

static void x_axis(const struct rp_plot *p, double lo, double hi, struct axis *a) {
    a->lo = lo;
    a->hi = hi;
    a->unit = 1;
    a->name = "";
    if (!p->x_time)
        return;
    a->name = "s";
    if (hi > 2 * 3600) {
        a->unit = 3600;
        a->name = "h";
    } else if (hi > 300) {
        a->unit = 60;
        a->name = "min";
    }
}

static void write_ticks(FILE *f, const struct frame *fr, const struct axis *xa,
                        enum rp_format yfmt) {
    char label[48];
    /* v from an index, at most MAX_TICKS: a range tiny beside its values (1e16 .. 1e16 + 2)
     * would never advance by adding the step */
    const double xs = nice_step((fr->x1 - fr->x0) / xa->unit, 5) * xa->unit;
    const double xfirst = ceil(fr->x0 / xs) * xs;
    for (int i = 0; i < MAX_TICKS && xfirst + i * xs <= fr->x1 + xs * 1e-9; i++) {
        const double v = xfirst + i * xs;
        const double x = px(fr, v);
        tick_label(label, sizeof(label), v / xa->unit, xs / xa->unit, RP_FMT_NUMBER);
        fprintf(f,
                "<line class=\"grid\" x1=\"%.2f\" y1=\"%d\" x2=\"%.2f\" y2=\"%d\"/>"
                "<text class=\"tick\" x=\"%.2f\" y=\"%d\" text-anchor=\"middle\">%s</text>\n",
                x, TOP, x, H - BOTTOM, x, H - BOTTOM + 14, label);
    }
    const double ys = nice_step(fr->y1 - fr->y0, 5);
    const double yfirst = ceil(fr->y0 / ys) * ys;
    for (int i = 0; i < MAX_TICKS && yfirst + i * ys <= fr->y1 + ys * 1e-9; i++) {
        const double v = yfirst + i * ys;
        const double y = py(fr, v);
        tick_label(label, sizeof(label), v, ys, yfmt);
        fprintf(f,
                "<line class=\"grid\" x1=\"%d\" y1=\"%.2f\" x2=\"%d\" y2=\"%.2f\"/>"
                "<text class=\"tick\" x=\"%d\" y=\"%.2f\" text-anchor=\"end\">%s</text>\n",
                LEFT, y, W - RIGHT, y, LEFT - 5, y + 4, label);
    }
}

ts_status rp_plot_write_svg(FILE *f, const struct rp_plot *p, const char *const *colours,
                            const char *const *names, int64_t max_points) {
    double xlo = INFINITY, xhi = -INFINITY, ylo = INFINITY, yhi = -INFINITY;
    for (int i = 0; i < p->nseries; i++)
        for (int j = 0; j < p->series[i].npieces; j++) {
            const struct rp_piece *pc = &p->series[i].pieces[j];
            for (int64_t k = 0; k < pc->n; k++) {
                xlo = fmin(xlo, pc->x[k]);
                xhi = fmax(xhi, pc->x[k]);
                ylo = fmin(ylo, pc->y[k]);
                yhi = fmax(yhi, pc->y[k]);
            }
        }
    const bool empty = !(xlo <= xhi);
    for (int i = 0; !empty && i < p->nmarkers; i++) {
        xlo = fmin(xlo, p->markers[i].x);
        xhi = fmax(xhi, p->markers[i].x);
    }
    if (p->x_time && !empty && xlo > 0)
        xlo = 0; /* the job's start: the gap before the first step is its start-up */
    span(&xlo, &xhi);
    span(&ylo, &yhi);
    const double pad = (yhi - ylo) * 0.05;
    struct frame fr = {xlo, xhi, ylo - pad, yhi + pad, LEFT, W - RIGHT, H - BOTTOM, TOP};
    struct axis xa;
    x_axis(p, xlo, xhi, &xa);

    fprintf(f,
            "<svg class=\"plot\" id=\"%s\" data-metric=\"%s\" data-axis=\"%s\" "
            "xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\" "
            "viewBox=\"0 0 %d %d\">\n",
            p->id, p->metric, p->x_time ? "time" : "step", W, H, W, H);
    fputs("<text class=\"title\" x=\"8\" y=\"18\">", f);
    rp_html_escape(f, p->title);
    fputs("</text>\n", f);
    fprintf(f,
            "<g class=\"frame\" data-x0=\"%.17g\" data-x1=\"%.17g\" data-y0=\"%.17g\" "
            "data-y1=\"%.17g\" data-px0=\"%.17g\" data-px1=\"%.17g\" data-py0=\"%.17g\" "
            "data-py1=\"%.17g\">\n",
            fr.x0, fr.x1, fr.y0, fr.y1, fr.px0, fr.px1, fr.py0, fr.py1);
    fprintf(f, "<rect class=\"box\" x=\"%d\" y=\"%d\" width=\"%d\" height=\"%d\"/>\n", LEFT, TOP,
            W - LEFT - RIGHT, H - TOP - BOTTOM);
    if (!empty)
        write_ticks(f, &fr, &xa, p->yfmt);
    fprintf(f, "<text class=\"label\" x=\"%d\" y=\"%d\" text-anchor=\"middle\">%s%s%s%s</text>\n",
            (LEFT + W - RIGHT) / 2, H - BOTTOM + 30, p->xlabel, *xa.name ? " (" : "", xa.name,
            *xa.name ? ")" : "");
    fputs("</g>\n", f);

    for (int i = 0; i < p->nseries; i++) {
        const struct rp_series *s = &p->series[i];
        fprintf(f, "<g class=\"series\" data-run=\"%d\" data-name=\"", s->run);
        rp_html_escape(f, names[s->run]);
        fprintf(f, "\" data-points=\"%lld\"", (long long)s->points);
        if (s->missing != NULL) {
            fputs(" data-missing=\"", f);
            rp_html_escape(f, s->missing);
            fputs("\"></g>\n", f);
            continue;
        }
        fprintf(f, " stroke=\"%s\" fill=\"%s\">\n<title>", colours[s->run], colours[s->run]);
        rp_html_escape(f, names[s->run]);
        fputs("</title>\n", f);
        for (int j = 0; j < s->npieces; j++)
            if (s->pieces[j].n > 0)
                TS_CHECK(write_piece(f, &fr, &s->pieces[j], max_points, s->points <= 60));
        fputs("</g>\n", f);
    }

    for (int i = 0; i < p->nmarkers; i++) {
        const struct rp_marker *m = &p->markers[i];
        const double x = px(&fr, m->x);
        const bool left = x > LEFT + (W - LEFT - RIGHT) * 0.7; /* its label left of the line */
        fprintf(f,
                "<g class=\"marker %s\" data-run=\"%d\" data-x=\"%.17g\" stroke=\"%s\">"
                "<line x1=\"%.2f\" y1=\"%d\" x2=\"%.2f\" y2=\"%d\"/>"
                "<text x=\"%.2f\" y=\"%d\" fill=\"%s\" text-anchor=\"%s\">",
                marker_class(m->kind), m->run, m->x, colours[m->run], x, TOP, x, H - BOTTOM,
                left ? x - 3 : x + 3, TOP + 11 + 11 * (i % 4), colours[m->run],
                left ? "end" : "start");
        rp_html_escape(f, m->label);
        fputs("</text></g>\n", f);
    }

    /* what is not drawn, and why */
    int notes = 0;
    for (int i = 0; i < p->nseries; i++) {
        const struct rp_series *s = &p->series[i];
        if (s->missing == NULL)
            continue;
        fprintf(f, "<text class=\"note\" x=\"%d\" y=\"%d\">", LEFT + 6,
                H - BOTTOM - 8 - 13 * notes);
        rp_html_escape(f, names[s->run]);
        fputs(": ", f);
        rp_html_escape(f, s->missing);
        fputs("</text>\n", f);
        notes++;
    }
    fputs("</svg>\n", f);
    return TS_OK;
}
