/* bench_ledger.c [--steps N] [--reps R] [--step-ms MS | --run DIR]: what writing the ledger
 * costs per step (issue 12: under 0.5% of a step on the demo model).
 *
 * Times ts_ledger_step (the clock, the energy read, one printf'd line, fflush) over N steps into
 * a fresh ledger in /tmp, R times, after a warm-up; checks that the summary reads back N steps
 * and their tokens; prints one JSON line with the median per-step cost and its share of the
 * step time given (--step-ms), or of a real run's mean step wall read from DIR/ledger.jsonl. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/utsname.h>
#include <unistd.h>

#include "bench_util.h"
#include "launch/ledger.h"

static double clock_now(void *ctx) {
    (void)ctx;
    return ts_bench_now_s();
}

static double run_once(const char *path, int steps) {
    struct ts_ledger_config c = {.devices = 1,
                                 .cpu = true,
                                 .flops_per_token = 1e7,
                                 .peak_flops = 1e11,
                                 .prices = {.usd_per_device_hour = 0.04, .usd_per_kwh = 0.12},
                                 .src = {.now_s = clock_now},
                                 .t_launch = ts_bench_now_s(),
                                 .resumed_from = -1};
    snprintf(c.precision, sizeof(c.precision), "fp32");
    ts_ledger_t *l;
    if (ts_ledger_create(&l, path, &c) != TS_OK || ts_ledger_begin(l) != TS_OK) {
        fprintf(stderr, "bench_ledger: %s\n", ts_last_error());
        exit(1);
    }
    const double t0 = ts_bench_now_s();
    for (int s = 1; s <= steps; s++)
        if (ts_ledger_step(l, s, 4096) != TS_OK) {
            fprintf(stderr, "bench_ledger: %s\n", ts_last_error());
            exit(1);
        }
    const double per = (ts_bench_now_s() - t0) / steps;
    if (ts_ledger_end(l, "done") != TS_OK)
        exit(1);
    ts_ledger_destroy(l);
    struct ts_ledger_summary s;
    if (ts_ledger_summarize(path, &s) != TS_OK || s.steps != steps ||
        s.tokens != (int64_t)steps * 4096) {
        fprintf(stderr, "bench_ledger: the ledger does not read back (%s)\n", ts_last_error());
        exit(1);
    }
    return per;
}

int main(int argc, char **argv) {
    int steps = 2000, reps = 5;
    double step_ms = 0;
    const char *run = NULL;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (strcmp(argv[i], "--steps") == 0)
            steps = atoi(argv[i + 1]);
        else if (strcmp(argv[i], "--reps") == 0)
            reps = atoi(argv[i + 1]);
        else if (strcmp(argv[i], "--step-ms") == 0)
            step_ms = atof(argv[i + 1]);
        else if (strcmp(argv[i], "--run") == 0)
            run = argv[i + 1];
    }
    if (steps < 1 || reps < 1 || reps > 100) {
        fprintf(stderr, "usage: bench_ledger [--steps N] [--reps R] [--step-ms MS | --run DIR]\n");
        return 2;
    }
    if (run != NULL) {
        char path[4096];
        snprintf(path, sizeof(path), "%s/ledger.jsonl", run);
        struct ts_ledger_summary s;
        if (ts_ledger_summarize(path, &s) != TS_OK || s.step_lines == 0) {
            fprintf(stderr, "bench_ledger: %s\n", ts_last_error());
            return 1;
        }
        step_ms = 1e3 * s.step_s / (double)s.step_lines;
    }
    char path[64];
    snprintf(path, sizeof(path), "/tmp/bench_ledger_%d.jsonl", (int)getpid());
    run_once(path, steps / 10 + 1); /* warm-up */
    double t[100];
    for (int r = 0; r < reps; r++)
        t[r] = run_once(path, steps);
    unlink(path);
    const double us = 1e6 * ts_bench_median(t, reps);
    struct utsname u;
    uname(&u);
    printf("{\"bench\":\"ledger_step\",\"machine\":\"%s %s, %ld cpus\",\"steps\":%d,\"reps\":%d,"
           "\"median_us_per_step\":%.3f",
           u.nodename, u.machine, sysconf(_SC_NPROCESSORS_ONLN), steps, reps, us);
    if (step_ms > 0)
        printf(",\"step_ms\":%.3f,\"share_of_step_pct\":%.5f", step_ms, 100 * us / 1e3 / step_ms);
    printf("}\n");
    return 0;
}
