/* cmd_report.c: `tessera report RUN... --out FILE`: one self-contained HTML page of runs,
 * plotted from their own files: train and val loss, learning rate, gradient norm, tokens/s,
 * MFU, cumulative $ and $ per 1M tokens, each against steps and against wall time, the runs
 * overlaid; their restarts, stops and divergence marked; a table of their settings and costs.
 *
 * The page needs no network and no script library: the plots are inline SVG written here
 * (report_svg.c); a few lines of inline script only toggle a run's lines from the legend. The
 * same runs give the same bytes (no timestamp), so a report can be diffed or committed. */
#include <errno.h>
#include <json-c/json.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/fs.h"
#include "launch/cli.h"
#include "launch/commands.h"
#include "launch/common.h"
#include "launch/report.h"

static const char usage[] = "tessera report RUN [RUN...] --out FILE [--title TEXT] [--strict]";
static const char description[] =
    "One HTML page of training runs (RUN: a directory `tessera train --out` wrote), viewable\n"
    "offline: train and val loss, learning rate, gradient norm, tokens/s, MFU, cumulative $ and\n"
    "$ per 1M tokens, each against steps and against wall time, several runs overlaid; restarts,\n"
    "stops and divergence marked on every plot; a table of the runs' settings and costs (the\n"
    "numbers of `tessera cost`). Reads RUN/ledger.jsonl, metrics.jsonl, config.json and\n"
    "exit.json. A line that cannot be read is skipped with a warning naming the file and line\n"
    "(the page lists them too); --strict refuses instead. --out - writes to stdout.\n"
    "Every plotted point carries its exact value (data-x, data-y): see docs/report.md.";

#define MAX_RUNS 64

static const char *const palette[] = {"#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd",
                                      "#8c564b", "#e377c2", "#17becf", "#7f7f7f", "#bcbd22"};
#define NPALETTE ((int)(sizeof(palette) / sizeof(palette[0])))

/* ---- warnings ---- */

#define MAX_SHOWN_WARNINGS 50

struct warnings {
    int n;
    char shown[MAX_SHOWN_WARNINGS][320];
};

static void warn(void *ctx, const char *path, int lineno, const char *why) {
    struct warnings *w = ctx;
    fprintf(stderr, "tessera report: warning: %s line %d: %s; skipped\n", path, lineno, why);
    if (w->n < MAX_SHOWN_WARNINGS)
        snprintf(w->shown[w->n], sizeof(w->shown[0]), "%s line %d: %s; skipped", path, lineno, why);
    w->n++;
}

/* ---- what each plot shows ---- */

enum metric { TRAIN_LOSS, VAL_LOSS, LR, GRAD_NORM, TOKENS_PER_S, MFU, USD, USD_PER_1M, NMETRICS };

static const struct {
    const char *key, *title;
    enum rp_format fmt;
} metrics[NMETRICS] = {
    [TRAIN_LOSS] = {"train_loss", "train loss", RP_FMT_NUMBER},
    [VAL_LOSS] = {"val_loss", "val loss", RP_FMT_NUMBER},
    [LR] = {"lr", "learning rate", RP_FMT_NUMBER},
    [GRAD_NORM] = {"grad_norm", "gradient norm (before clipping)", RP_FMT_NUMBER},
    [TOKENS_PER_S] = {"tokens_per_s", "tokens/s (all devices)", RP_FMT_NUMBER},
    [MFU] = {"mfu", "MFU", RP_FMT_PERCENT},
    [USD] = {"usd", "cumulative cost", RP_FMT_USD},
    [USD_PER_1M] = {"usd_per_1m_tokens", "$ per 1M tokens (each step)", RP_FMT_USD},
};

/* A metrics.jsonl series: loss, lr, grad norm. */
static double metric_value(const struct rp_metric_step *m, enum metric k) {
    return k == TRAIN_LOSS ? m->loss : k == LR ? m->lr : m->grad_norm;
}

/* A ledger series; tokens/s and $/1M are arithmetic on the step line (docs/report.md). */
static double ledger_value(const struct rp_ledger_step *x, enum metric k) {
    switch (k) {
    case TOKENS_PER_S:
        return x->wall_s > 0 ? (double)x->tokens / x->wall_s : NAN;
    case MFU:
        return x->mfu;
    case USD:
        return x->usd;
    case USD_PER_1M:
        return x->tokens > 0 ? x->step_usd / (double)x->tokens * 1e6 : NAN;
    default:
        return NAN;
    }
}

static ts_status fill_from_metrics(struct rp_series *s, const struct rp_run *run, enum metric k,
                                   bool time) {
    if (!run->has_metrics) {
        s->missing = "no metrics.jsonl";
        return TS_OK;
    }
    if (time && !run->has_ledger) {
        s->missing = "no ledger.jsonl: no wall time";
        return TS_OK;
    }
    if (k == VAL_LOSS) {
        for (int64_t i = 0; i < run->nevals; i++) {
            const struct rp_eval *e = &run->evals[i];
            const bool restart = i > 0 && (time ? e->segment != run->evals[i - 1].segment
                                                : e->step < run->evals[i - 1].step);
            TS_CHECK(rp_series_add(s, time ? e->time_s : (double)e->step, e->val_loss, restart));
        }
        if (s->points == 0)
            s->missing = run->nevals ? "no val loss in the ledger's steps" : "no evals";
        return TS_OK;
    }
    for (int64_t i = 0; i < run->nmetrics; i++) {
        const struct rp_metric_step *m = &run->metrics[i];
        const bool restart = i > 0 && (time ? m->segment != run->metrics[i - 1].segment
                                            : m->step < run->metrics[i - 1].step);
        TS_CHECK(rp_series_add(s, time ? m->time_s : (double)m->step, metric_value(m, k), restart));
    }
    if (s->points == 0)
        s->missing = run->nmetrics ? "no finite values" : "no steps logged";
    return TS_OK;
}

static ts_status fill_from_ledger(struct rp_series *s, const struct rp_run *run, enum metric k,
                                  bool time) {
    if (!run->has_ledger) {
        s->missing = "no ledger.jsonl";
        return TS_OK;
    }
    for (int64_t i = 0; i < run->nsteps; i++) {
        const struct rp_ledger_step *x = &run->steps[i];
        const bool restart = i > 0 && x->segment != run->steps[i - 1].segment;
        TS_CHECK(rp_series_add(s, time ? x->time_s : (double)x->step, ledger_value(x, k), restart));
    }
    if (s->points == 0)
        s->missing = run->nsteps == 0                ? "no steps in the ledger"
                     : (k == USD || k == USD_PER_1M) ? "no price"
                     : k == MFU                      ? "MFU unknown (no peak for the device)"
                                                     : "no finite values";
    return TS_OK;
}

/* Restarts, stops other than "done", divergence and segments with no end line. */
static ts_status add_markers(struct rp_plot *p, int ri, const struct rp_run *run, bool time) {
    char label[64];
    for (int k = 0; k < run->nsegs; k++) {
        const struct rp_segment *g = &run->segs[k];
        if (!g->started)
            continue;
        if (k > 0) {
            if (g->lost_steps > 0)
                snprintf(label, sizeof(label), "restart from %lld (%lld lost)",
                         (long long)g->first_step, (long long)g->lost_steps);
            else
                snprintf(label, sizeof(label), "restart from %lld", (long long)g->first_step);
            TS_CHECK(rp_plot_add_marker(p, ri, RP_RESTART,
                                        time ? g->t_start : (double)g->first_step, label));
        }
        const double x = time ? g->t_end : (double)g->end_step;
        if (!g->ended)
            TS_CHECK(rp_plot_add_marker(
                p, ri, RP_KILLED, x, k + 1 < run->nsegs ? "killed" : "no end: killed or running"));
        else if (strcmp(g->exit, "diverged") == 0)
            TS_CHECK(rp_plot_add_marker(p, ri, RP_DIVERGED, x, "diverged"));
        else if (strcmp(g->exit, "done") != 0)
            TS_CHECK(rp_plot_add_marker(p, ri, RP_STOP, x, g->exit));
    }
    /* a run without a ledger still says how it ended */
    if (!run->has_ledger && run->has_exit && !time && run->exit_step >= 0 &&
        strcmp(run->exit_reason, "done") != 0)
        TS_CHECK(rp_plot_add_marker(
            p, ri, strcmp(run->exit_reason, "diverged") == 0 ? RP_DIVERGED : RP_STOP,
            (double)run->exit_step, run->exit_reason));
    return TS_OK;
}

static ts_status build_plot(struct rp_plot *p, enum metric k, bool time, const struct rp_run *runs,
                            int nruns, char *id, size_t idlen) {
    snprintf(id, idlen, "%s-%s", metrics[k].key, time ? "time" : "step");
    *p = (struct rp_plot){.id = id,
                          .metric = metrics[k].key,
                          .title = metrics[k].title,
                          .xlabel = time ? "wall time" : "step",
                          .x_time = time,
                          .yfmt = metrics[k].fmt};
    p->series = calloc((size_t)nruns, sizeof(*p->series));
    if (p->series == NULL)
        return ts_error(TS_ERR_OOM, "report: out of memory");
    p->nseries = nruns;
    const bool from_metrics = k == TRAIN_LOSS || k == VAL_LOSS || k == LR || k == GRAD_NORM;
    for (int i = 0; i < nruns; i++) {
        p->series[i].run = i;
        TS_CHECK(from_metrics ? fill_from_metrics(&p->series[i], &runs[i], k, time)
                              : fill_from_ledger(&p->series[i], &runs[i], k, time));
        TS_CHECK(add_markers(p, i, &runs[i], time));
    }
    return TS_OK;
}

/* ---- the tables ---- */

static void cell(FILE *f, const char *text) {
    fputs("<td>", f);
    rp_html_escape(f, text);
    fputs("</td>", f);
}

static void cell_num(FILE *f, const char *fmt, double v, const char *unknown) {
    char buf[64];
    if (isfinite(v))
        snprintf(buf, sizeof(buf), fmt, v);
    else
        snprintf(buf, sizeof(buf), "%s", unknown);
    cell(f, buf);
}

/* config.json's value of section.key as text ("-" when absent). */
static const char *cfg(const struct rp_run *run, const char *section, const char *key) {
    struct json_object *s = NULL, *v = NULL;
    if (run->config == NULL || !json_object_object_get_ex(run->config, section, &s) ||
        !json_object_object_get_ex(s, key, &v) || v == NULL)
        return "-";
    if (json_object_is_type(v, json_type_double)) { /* 0.000600000028: a float's digits */
        static char text[32];
        snprintf(text, sizeof(text), "%.6g", json_object_get_double(v));
        return text;
    }
    return json_object_is_type(v, json_type_string) ? json_object_get_string(v)
                                                    : json_object_to_json_string(v);
}

static void write_settings_table(FILE *f, const struct rp_run *runs, int nruns) {
    fputs("<h2>Runs</h2>\n<div class=\"wide\"><table "
          "id=\"runs\">\n<tr><th>run</th><th>layers</th><th>heads</th>"
          "<th>channels</th><th>vocab</th><th>seq len</th><th>batch</th><th>grad accum</th>"
          "<th>lr</th><th>schedule</th><th>steps (done / set)</th><th>devices</th>"
          "<th>precision</th><th>tokens</th><th>segments</th><th>lost steps</th><th>exit</th>"
          "<th>last train loss</th><th>best val loss</th></tr>\n",
          f);
    for (int i = 0; i < nruns; i++) {
        const struct rp_run *r = &runs[i];
        const struct ts_ledger_summary *s = &r->summary;
        char buf[160];
        fprintf(f, "<tr data-run=\"%d\"><td><span class=\"swatch\" style=\"background:%s\"></span>",
                i, palette[i % NPALETTE]);
        rp_html_escape(f, r->name);
        fputs("</td>", f);
        cell(f, cfg(r, "model", "num_layers"));
        cell(f, cfg(r, "model", "num_heads"));
        cell(f, cfg(r, "model", "channels"));
        cell(f, cfg(r, "model", "vocab_size"));
        cell(f, cfg(r, "train", "seq_len"));
        cell(f, cfg(r, "train", "batch"));
        cell(f, cfg(r, "train", "grad_accum"));
        cell(f, cfg(r, "train", "lr"));
        cell(f, cfg(r, "train", "lr_schedule"));
        const int64_t done = r->has_summary ? s->steps
                             : r->nmetrics  ? r->metrics[r->nmetrics - 1].step
                                            : 0;
        snprintf(buf, sizeof(buf), "%lld / %s", (long long)done, cfg(r, "train", "steps"));
        cell(f, buf);
        if (r->has_summary)
            snprintf(buf, sizeof(buf), "%d x %s", s->devices, s->device_name);
        else
            snprintf(buf, sizeof(buf), "%s", cfg(r, "train", "device"));
        cell(f, buf);
        cell(f, cfg(r, "train", "precision"));
        cell_num(f, "%.0f", r->has_summary ? (double)s->tokens : NAN, "-");
        cell_num(f, "%.0f", r->has_summary ? (double)s->segments : NAN, "-");
        cell_num(f, "%.0f", r->has_summary ? (double)s->lost_steps : NAN, "-");
        if (r->has_exit)
            snprintf(buf, sizeof(buf), "%s (exit %d)", r->exit_reason, r->exit_code);
        else if (r->has_summary && s->ended)
            snprintf(buf, sizeof(buf), "%s", s->exit_reason);
        else
            snprintf(buf, sizeof(buf), "no end recorded (killed or running)");
        cell(f, buf);
        double last = NAN, best = NAN;
        for (int64_t j = 0; j < r->nmetrics; j++)
            if (isfinite(r->metrics[j].loss))
                last = r->metrics[j].loss;
        for (int64_t j = 0; j < r->nevals; j++)
            if (isfinite(r->evals[j].val_loss) && !(r->evals[j].val_loss >= best))
                best = r->evals[j].val_loss;
        cell_num(f, "%.4f", last, "-");
        cell_num(f, "%.4f", best, "-");
        fputs("</tr>\n", f);
    }
    fputs("</table></div>\n", f);
}

static void write_cost_table(FILE *f, const struct rp_run *runs, int nruns) {
    fputs("<h2>Cost</h2>\n<div class=\"wide\"><table "
          "id=\"cost\">\n<tr><th>run</th><th>wall</th><th>start-up</th>"
          "<th>steps</th><th>eval</th><th>checkpoint</th><th>device-hours</th><th>$</th>"
          "<th>$ / 1M tokens (steady)</th><th>$ / 1M tokens (goodput)</th>"
          "<th>tokens/s/device</th><th>MFU</th><th>energy</th><th>prices</th></tr>\n",
          f);
    for (int i = 0; i < nruns; i++) {
        const struct rp_run *r = &runs[i];
        const struct ts_ledger_summary *s = &r->summary;
        fprintf(f, "<tr data-run=\"%d\"><td><span class=\"swatch\" style=\"background:%s\"></span>",
                i, palette[i % NPALETTE]);
        rp_html_escape(f, r->name);
        fputs("</td>", f);
        if (!r->has_summary) {
            fputs("<td colspan=\"13\">", f);
            rp_html_escape(f, r->has_ledger ? r->summary_error : "no ledger.jsonl");
            fputs("</td></tr>\n", f);
            continue;
        }
        cell_num(f, "%.1f s", s->wall_s, "-");
        cell_num(f, "%.1f s", s->startup_s, "-");
        cell_num(f, "%.1f s", s->step_s, "-");
        cell_num(f, "%.1f s", s->eval_s, "-");
        cell_num(f, "%.1f s", s->checkpoint_s, "-");
        cell_num(f, "%.6f", s->device_seconds / 3600.0, "-");
        cell_num(f, "$%.6g", s->usd, "no price");
        cell_num(f, "$%.6g", s->usd_per_1m_tokens, "no price");
        cell_num(f, "$%.6g", s->goodput_usd_per_1m_tokens, "no price");
        cell_num(f, "%.1f", s->tokens_per_s_per_device, "-");
        cell_num(f, "%.3f%%", 100 * s->mfu, "unknown");
        cell_num(f, "%.1f J", s->energy_j, "not measured");
        char buf[320];
        const char *slash = strrchr(s->price_source, '/');
        if (isfinite(s->usd_per_device_hour))
            snprintf(buf, sizeof(buf), "$%g/device-hour%s (%s)", s->usd_per_device_hour,
                     s->energy_priced ? " + energy" : "",
                     slash != NULL ? slash + 1 : s->price_source);
        else
            snprintf(buf, sizeof(buf), "no price");
        cell(f, buf);
        fputs("</tr>\n", f);
    }
    fputs("</table></div>\n", f);
}

/* ---- the page ---- */

static const char css[] =
    "body{font:14px/1.4 system-ui,sans-serif;margin:16px;color:#222}"
    "h1{font-size:20px}h2{font-size:16px;margin-top:24px}"
    "table{border-collapse:collapse;font-size:12px}td,th{border:1px solid #ccc;padding:2px 6px;"
    "text-align:right;white-space:nowrap}td:first-child,th:first-child{text-align:left}"
    ".swatch{display:inline-block;width:10px;height:10px;margin-right:4px}"
    "#legend button{margin:0 6px 6px 0;border:1px solid #aaa;background:#fff;cursor:pointer;"
    "font:inherit;padding:2px 8px}#legend button.off{opacity:.35}"
    ".row{display:flex;flex-wrap:wrap;gap:8px}"
    "svg.plot{border:1px solid #ddd;background:#fff}.wide{overflow-x:auto}"
    ".plot .title{font-weight:600;font-size:13px}.plot .tick{font-size:10px;fill:#555}"
    ".plot .label{font-size:11px;fill:#333}.plot .note{font-size:10px;fill:#999}"
    ".plot .grid{stroke:#eee}.plot .box{fill:none;stroke:#bbb}"
    ".plot polyline{fill:none;stroke-width:1.5}.plot .dot{stroke:none}"
    ".plot .marker line{stroke-width:1;stroke-dasharray:4 3}.plot .marker text{font-size:9px;"
    "stroke:none}.plot .marker.diverged line{stroke:#d00;stroke-dasharray:none;stroke-width:2}"
    ".plot .marker.diverged text{fill:#d00}.plot .marker.killed line{stroke-dasharray:1 2}"
    ".hidden{display:none}.warn{color:#a40}#tip{position:absolute;display:none;background:#fff;"
    "border:1px solid #888;padding:2px 6px;font-size:12px;pointer-events:none}";

/* Clicking a run in the legend hides or shows its lines and markers in every plot; the pointer
 * over a plot shows the nearest point's run and exact values (read from data-x/data-y, placed by
 * the frame's map). With #selftest in the URL the page points at the first point of every plot
 * itself and keeps what the tip said in the plot's data-selftest (the browser test reads it). */
static const char script[] =
    "(function(){var bs=document.querySelectorAll('#legend button');"
    "for(var i=0;i<bs.length;i++){bs[i].addEventListener('click',function(ev){"
    "var b=ev.currentTarget,off=b.classList.toggle('off'),r=b.getAttribute('data-toggle');"
    "var es=document.querySelectorAll('.plot [data-run=\"'+r+'\"]');"
    "for(var j=0;j<es.length;j++)es[j].classList.toggle('hidden',off);});}"
    "var tip=document.createElement('div');tip.id='tip';document.body.appendChild(tip);"
    "function nums(s){return s?s.trim().split(/\\s+/).map(Number):[];}"
    "function frame(svg){var f=svg.querySelector('.frame'),m={};"
    "['x0','x1','y0','y1','px0','px1','py0','py1'].forEach(function(k){"
    "m[k]=Number(f.getAttribute('data-'+k));});return m;}"
    "function at(m,x,y){return[m.px0+(x-m.x0)/(m.x1-m.x0)*(m.px1-m.px0),"
    "m.py0+(y-m.y0)/(m.y1-m.y0)*(m.py1-m.py0)];}"
    "function points(svg){var ps=[],ls=svg.querySelectorAll('.series polyline');"
    "for(var j=0;j<ls.length;j++){var xs=nums(ls[j].getAttribute('data-x')),"
    "ys=nums(ls[j].getAttribute('data-y'));"
    "for(var k=0;k<xs.length;k++)ps.push([xs[k],ys[k],ls[j].parentNode]);}return ps;}"
    "function hover(svg,ev){var m=frame(svg),r=svg.getBoundingClientRect(),"
    "vb=svg.viewBox.baseVal,mx=(ev.clientX-r.left)*vb.width/r.width,"
    "my=(ev.clientY-r.top)*vb.height/r.height,ps=points(svg),best=null,bd=400;"
    "for(var k=0;k<ps.length;k++){if(ps[k][2].classList.contains('hidden'))continue;"
    "var q=at(m,ps[k][0],ps[k][1]),d=(q[0]-mx)*(q[0]-mx)+(q[1]-my)*(q[1]-my);"
    "if(d<bd){bd=d;best=ps[k];}}"
    "if(best===null){tip.style.display='none';return '';}"
    "tip.textContent=best[2].getAttribute('data-name')+': '+"
    "(svg.getAttribute('data-axis')==='time'?best[0]+' s':'step '+best[0])+', '+best[1];"
    "tip.style.display='block';tip.style.left=(ev.pageX+12)+'px';"
    "tip.style.top=(ev.pageY+12)+'px';return tip.textContent;}"
    "var svgs=document.querySelectorAll('svg.plot');"
    "for(var i=0;i<svgs.length;i++){svgs[i].addEventListener('mousemove',function(ev){"
    "hover(ev.currentTarget,ev);});svgs[i].addEventListener('mouseleave',function(){"
    "tip.style.display='none';});}"
    "if(location.hash==='#selftest'){for(var i=0;i<svgs.length;i++){var ps=points(svgs[i]);"
    "if(!ps.length)continue;var q=at(frame(svgs[i]),ps[0][0],ps[0][1]),"
    "r=svgs[i].getBoundingClientRect(),vb=svgs[i].viewBox.baseVal;"
    "var ev=new MouseEvent('mousemove',{clientX:r.left+q[0]*r.width/vb.width,"
    "clientY:r.top+q[1]*r.height/vb.height});"
    "svgs[i].setAttribute('data-selftest',hover(svgs[i],ev));}}"
    "document.documentElement.setAttribute('data-ready','1');})();";

static ts_status write_page(FILE *f, const char *title, const struct rp_run *runs, int nruns,
                            struct rp_plot plots[NMETRICS][2], const struct warnings *w,
                            int64_t max_points) {
    const char *names[MAX_RUNS], *colours[MAX_RUNS];
    for (int i = 0; i < nruns; i++) {
        names[i] = runs[i].name;
        colours[i] = palette[i % NPALETTE];
    }
    fputs("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\"/>\n<title>", f);
    rp_html_escape(f, title);
    fprintf(f, "</title>\n<style>%s</style>\n</head>\n<body>\n<h1>", css);
    rp_html_escape(f, title);
    fprintf(f,
            "</h1>\n<p>tessera %s report of %d run(s). Left: against steps; right: against "
            "wall time (the ledger's job time: each segment's start-up and steps, one segment "
            "after another; evals and checkpoint stalls inside a segment left out). Dashed "
            "lines: restarts and stops.</p>\n",
            TS_VERSION, nruns);
    fputs("<div id=\"legend\">", f);
    for (int i = 0; i < nruns; i++) {
        fprintf(f,
                "<button type=\"button\" data-toggle=\"%d\"><span class=\"swatch\" "
                "style=\"background:%s\"></span>",
                i, colours[i]);
        rp_html_escape(f, names[i]);
        fputs("</button>", f);
    }
    fputs("</div>\n", f);
    write_settings_table(f, runs, nruns);
    write_cost_table(f, runs, nruns);
    fputs("<h2>Plots</h2>\n", f);
    for (int k = 0; k < NMETRICS; k++) {
        fputs("<div class=\"row\">\n", f);
        for (int a = 0; a < 2; a++)
            TS_CHECK(rp_plot_write_svg(f, &plots[k][a], colours, names, max_points));
        fputs("</div>\n", f);
    }
    if (w->n > 0) {
        fprintf(f,
                "<h2>Warnings</h2>\n<p class=\"warn\">%d line(s) could not be read and were "
                "left out:</p>\n<ul id=\"warnings\">\n",
                w->n);
        for (int i = 0; i < w->n && i < MAX_SHOWN_WARNINGS; i++) {
            fputs("<li>", f);
            rp_html_escape(f, w->shown[i]);
            fputs("</li>\n", f);
        }
        if (w->n > MAX_SHOWN_WARNINGS)
            fprintf(f, "<li>and %d more (see stderr)</li>\n", w->n - MAX_SHOWN_WARNINGS);
        fputs("</ul>\n", f);
    }
    fprintf(f, "<script>%s</script>\n</body>\n</html>\n", script);
    return TS_OK;
}

/* Writes the page to out ("-": stdout) through a temporary file renamed at the end, so a
 * reader never sees half a page. */
static int write_out(const char *out, const char *title, const struct rp_run *runs, int nruns,
                     struct rp_plot plots[NMETRICS][2], const struct warnings *w,
                     int64_t max_points) {
    if (strcmp(out, "-") == 0) {
        if (write_page(stdout, title, runs, nruns, plots, w, max_points) != TS_OK)
            return ts_launch_fail("report", TS_EXIT_FAILURE);
        return fflush(stdout) == 0 ? TS_EXIT_OK : TS_EXIT_FAILURE;
    }
    char tmp[TS_PATH_MAX];
    if (ts_path_fmt(tmp, sizeof(tmp), "%s.tmp", out) != TS_OK)
        return ts_launch_fail("report", TS_EXIT_USAGE);
    FILE *f = fopen(tmp, "w");
    if (f == NULL) {
        ts_error(TS_ERR_IO, "cannot write %s: %s", tmp, strerror(errno));
        return ts_launch_fail("report", TS_EXIT_USAGE);
    }
    ts_status st = write_page(f, title, runs, nruns, plots, w, max_points);
    const bool bad = ferror(f) != 0;
    if (fclose(f) != 0 || bad) {
        if (st == TS_OK)
            st = ts_error(TS_ERR_IO, "writing %s failed (disk full?)", tmp);
    }
    if (st == TS_OK && rename(tmp, out) != 0)
        st = ts_error(TS_ERR_IO, "cannot rename %s to %s: %s", tmp, out, strerror(errno));
    if (st != TS_OK) {
        remove(tmp);
        return ts_launch_fail("report", TS_EXIT_FAILURE);
    }
    return TS_EXIT_OK;
}

int ts_cmd_report(int argc, char **argv) {
    const char *out = NULL, *title = "Tessera runs";
    bool strict = false;
    int max_points = 4000;
    struct ts_flag flags[] = {
        {"out", TS_FLAG_STRING, &out, "FILE", "the HTML page to write (- for stdout)", true},
        {"title", TS_FLAG_STRING, &title, "TEXT", "the page's title"},
        {"strict", TS_FLAG_BOOL, &strict, NULL,
         "refuse a line that cannot be read instead of skipping it with a warning"},
        {"max-points", TS_FLAG_INT, &max_points, "N",
         "points drawn per line at most; past it each bucket's lowest and highest"},
    };
    const int nflags = (int)(sizeof(flags) / sizeof(flags[0]));
    static const char *pos[MAX_RUNS + 1];
    int npos = 0;
    bool help = false;
    if (ts_cli_parse(flags, nflags, argc, argv, 2, pos, MAX_RUNS + 1, &npos, &help) != TS_OK)
        return ts_launch_fail("report", TS_EXIT_USAGE);
    if (help) {
        ts_cli_print_help(usage, description, flags, nflags);
        return TS_EXIT_OK;
    }
    if (npos == 0 || out == NULL) {
        fprintf(stderr, "tessera report: usage: %s\n", usage);
        return TS_EXIT_USAGE;
    }
    if (npos > MAX_RUNS) {
        fprintf(stderr, "tessera report: at most %d runs in one page\n", MAX_RUNS);
        return TS_EXIT_USAGE;
    }
    if (max_points < 2) {
        fprintf(stderr, "tessera report: --max-points must be at least 2\n");
        return TS_EXIT_USAGE;
    }
    static struct rp_run runs[MAX_RUNS];
    static struct warnings w;
    static struct rp_plot plots[NMETRICS][2];
    static char ids[NMETRICS][2][64];
    int code = TS_EXIT_OK, nread = 0;
    for (; nread < npos; nread++) {
        if (rp_run_read(&runs[nread], pos[nread], strict, warn, &w) != TS_OK) {
            code = ts_launch_fail("report", TS_EXIT_USAGE);
            nread++;
            goto done;
        }
    }
    for (int k = 0; k < NMETRICS; k++)
        for (int a = 0; a < 2; a++)
            if (build_plot(&plots[k][a], (enum metric)k, a == 1, runs, npos, ids[k][a],
                           sizeof(ids[k][a])) != TS_OK) {
                code = ts_launch_fail("report", TS_EXIT_FAILURE);
                goto done;
            }
    code = write_out(out, title, runs, npos, plots, &w, max_points);
    if (code == TS_EXIT_OK && strcmp(out, "-") != 0)
        fprintf(stderr, "tessera report: %d run(s) -> %s%s\n", npos, out,
                w.n ? " (lines were skipped: see the warnings above)" : "");
done:
    for (int k = 0; k < NMETRICS; k++)
        for (int a = 0; a < 2; a++)
            rp_plot_deinit(&plots[k][a]);
    for (int i = 0; i < nread; i++)
        rp_run_deinit(&runs[i]);
    return code;
}
