/* report.h: `tessera report`'s pieces, private to launch/: a run directory read into series
 * (report_run.c) and a plot of series drawn as inline SVG (report_svg.c); cmd_report.c makes
 * the page.
 *
 * Every plotted value is a value of the run's files (or arithmetic on them documented in
 * docs/report.md), carried as a double from json-c to the page's data-x/data-y
 * attributes (%.17g), so a reader of the page gets back the very doubles the files hold. */
#ifndef TS_LAUNCH_REPORT_H
#define TS_LAUNCH_REPORT_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "kernels/status.h"
#include "launch/ledger.h"

/* ---- a run directory (report_run.c) ---- */

/* One step line of the ledger, and what the report derives from it. */
struct rp_ledger_step {
    int segment;     /* 1-based */
    int64_t step;    /* updates done */
    int64_t tokens;  /* all ranks */
    double wall_s;   /* the ledger's step wall */
    double pause_s;  /* evals and checkpoint stalls before it (0 in older ledgers) */
    double device_s; /* devices x wall */
    double mfu;      /* a fraction; NaN: unknown */
    double energy_j; /* NaN: not measured */
    double time_s;   /* job time at the step's end (report_run.c: job_time) */
    double usd;      /* the job's cost up to the step's end; NaN: no price */
    double step_usd; /* this step's device time (and energy) at the segment's prices */
};

struct rp_segment {
    int number;
    bool started, ended;
    int64_t first_step, last_step, lost_steps;
    int devices;
    double startup_s, wall_s, usd; /* wall_s, usd: the end line's (NaN while open) */
    double price_h, price_kwh;     /* < 0: not given */
    double t_start;                /* job time when its process started */
    double t_end;                  /* job time at its end (a killed one: its last step's) */
    double usd_end;                /* the job's cost at its end; NaN: no price */
    char exit[32];                 /* "" while open (a killed segment) */
    int64_t end_step;              /* the last step it recorded (first_step if none) */
};

struct rp_metric_step {
    int64_t step;
    double loss, lr, grad_norm; /* NaN: null, absent or not finite in the file */
    double time_s;              /* the ledger's job time of that step; NaN: not in the ledger */
    int segment;                /* the ledger segment that trained it last; 0: unknown */
};

struct rp_eval {
    int64_t step;
    double val_loss;
    double time_s;
    int segment;
};

struct rp_run {
    char dir[4096];
    char name[256]; /* the label: dir as given, trailing '/' removed */
    bool has_ledger, has_metrics, has_config, has_exit;
    struct rp_ledger_step *steps; /* every step line, redone ones included, in file order */
    int64_t nsteps;
    struct rp_segment *segs;
    int nsegs;
    struct rp_metric_step *metrics; /* metrics.jsonl's step lines, in file order */
    int64_t nmetrics;
    struct rp_eval *evals;
    int64_t nevals;
    struct json_object *config; /* config.json, or NULL */
    int exit_code;              /* exit.json's; -1 without one */
    char exit_reason[32];
    int64_t exit_step;
    struct ts_ledger_summary summary; /* `tessera cost`'s numbers (has_summary) */
    bool has_summary;
    bool priced; /* every segment has a device-hour price */
    char summary_error[512];
    int warnings; /* lines skipped */
};

/* Called for each line skipped: path, 1-based line number, why. */
typedef void (*rp_warn_fn)(void *ctx, const char *path, int lineno, const char *why);

/* Reads dir's ledger.jsonl, metrics.jsonl, config.json and exit.json into run. A line that is
 * not what its file holds is skipped and reported through warn (strict: refused, TS_ERR_FORMAT
 * naming the file and line). TS_ERR_IO when dir is not a directory or holds neither a ledger
 * nor metrics. run is caller storage; release with rp_run_deinit (also after a failure). */
ts_status rp_run_read(struct rp_run *run, const char *dir, bool strict, rp_warn_fn warn,
                      void *warn_ctx) TS_MUST_CHECK;
void rp_run_deinit(struct rp_run *run);

/* ---- a plot (report_svg.c) ---- */

/* One unbroken line of a series: n points, x and y owned by the piece. */
struct rp_piece {
    int64_t n, cap;
    double *x, *y;
};

/* One run's line in one plot: pieces broken at restarts and at values not finite. */
struct rp_series {
    int run; /* index into the page's runs: its colour and legend entry */
    struct rp_piece *pieces;
    int npieces;
    int64_t points;      /* over all pieces */
    const char *missing; /* why this run has no line here ("no price"); NULL: it has one */
};

enum rp_marker_kind { RP_RESTART, RP_STOP, RP_DIVERGED, RP_KILLED };

struct rp_marker {
    int run;
    enum rp_marker_kind kind;
    double x;
    char label[64];
};

enum rp_format { RP_FMT_NUMBER, RP_FMT_PERCENT, RP_FMT_USD };

struct rp_plot {
    const char *id;     /* unique in the page: "train_loss-step" */
    const char *metric; /* "train_loss": the same for both axes */
    const char *title;
    const char *xlabel; /* "step" or "wall time" */
    bool x_time;        /* ticks in s, min or h */
    enum rp_format yfmt;
    struct rp_series *series; /* one per run, in run order */
    int nseries;
    struct rp_marker *markers;
    int nmarkers, cap_markers;
};

/* Appends (x, y) to series s: a y not finite ends the current piece instead (the gap shows);
 * new_piece starts another piece first (a restart). */
ts_status rp_series_add(struct rp_series *s, double x, double y, bool new_piece) TS_MUST_CHECK;
ts_status rp_plot_add_marker(struct rp_plot *p, int run, enum rp_marker_kind kind, double x,
                             const char *label) TS_MUST_CHECK;
void rp_plot_deinit(struct rp_plot *p);

/* Writes p as one <svg class="plot">: each series a <g class="series" data-run=i> of
 * <polyline data-x data-y points> pieces, axes whose data-* give the linear map from data to
 * pixels, markers as <line class="marker ..."> with data-x. A piece longer than max_points is
 * thinned to each bucket's lowest and highest point (all values still exact). colours[i] is
 * run i's. */
ts_status rp_plot_write_svg(FILE *f, const struct rp_plot *p, const char *const *colours,
                            const char *const *names, int64_t max_points) TS_MUST_CHECK;

/* Text written inside HTML or an attribute value: & < > " ' escaped. */
void rp_html_escape(FILE *f, const char *s);

#endif
