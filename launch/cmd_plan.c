/* cmd_plan.c: `tessera plan`: which layout of a model on a described cluster is cheapest per
 * token, before renting it; `--calibrate RUN...` fits the model's efficiency terms to measured
 * runs first.
 *
 * The model is launch/plan.c (pure; docs/planner.md). This file reads flags, the CPU's peak for
 * `--device cpu` (peak.c, over this machine's cores), and measured runs (config.json and the
 * ledger's step lines), and prints the ranking as a table or JSON. */
#include <json-c/json.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "kernels/fs.h"
#include "launch/cli.h"
#include "launch/commands.h"
#include "launch/common.h"
#include "launch/ledger.h"
#include "launch/peak.h"
#include "launch/plan.h"

#define MAX_RUNS 64
#define GIB (1024.0 * 1024.0 * 1024.0)

static const char usage[] =
    "tessera plan --model M --device D --gpus N [--gpus-per-node N] [--seq-len T] "
    "[--global-batch B] [--tokens N] [--price-per-gpu-hour USD] [--json] [--calibrate RUN...]";
static const char description[] =
    "Predicts, for every layout Tessera supports (dp x tp, ZeRO 0/1, micro-batch x grad-accum\n"
    "making the global batch), the memory per device (refusing what does not fit), the step\n"
    "time, tokens/s, MFU, $ per 1M tokens and the time and cost of --tokens, and ranks them by\n"
    "cost per token (device-seconds per token without a price). docs/planner.md has the model.\n"
    "--model: 124m, 350m, 774m, 1.5b (GPT-2) or L,NH,C[,V]. --device: h100, h200, a100 (bf16)\n"
    "or cpu (fp32 ranks on hosts like this one; --gpus are ranks, --gpus-per-node ranks per\n"
    "host). --calibrate RUN... fits the matmul and memory efficiencies, the overlap and the\n"
    "per-step overhead to measured runs of the same device kind (RUN/config.json and\n"
    "RUN/ledger.jsonl) by least squares and prints each run's residual.\n"
    "--json prints an array of layouts, best first (refused ones last, with their reason).";

struct flags {
    const char *model, *device;
    int gpus, gpus_per_node, seq_len, top;
    int64_t global_batch;
    float tokens, price;
    float peak_tflops, memory_gb, mem_bw_gbs, intra_bw_gbs, inter_bw_gbs;
    float intra_lat_us, inter_lat_us, bucket_mb;
    float matmul_eff, memory_eff, overlap, overhead_ms;
    bool json;
};

/* ---- the device ---- */

static ts_status cpu_device(int ranks_per_node, float mem_bw_gbs, struct ts_plan_device *out) {
    struct ts_backend *be = NULL;
    TS_CHECK(ts_launch_backend(&be, "cpu", "auto", 0));
    struct ts_peak peak;
    ts_peak_of_backend(be, false, &peak);
    ts_backend_destroy(be);
    if (peak.flops <= 0)
        return ts_error(TS_ERR_UNSUPPORTED,
                        "--device cpu: this machine's peak is unknown (%s); pass --peak-tflops",
                        peak.source);
    const double mem = (double)sysconf(_SC_PHYS_PAGES) * (double)sysconf(_SC_PAGESIZE);
    ts_plan_device_cpu(peak.flops, mem, (double)mem_bw_gbs * 1e9, ranks_per_node, peak.source, out);
    return TS_OK;
}

static ts_status make_device(const struct flags *f, const struct ts_flag *tab, int ntab,
                             int ranks_per_node, struct ts_plan_device *d) {
    if (strcmp(f->device, "cpu") == 0)
        TS_CHECK(cpu_device(ranks_per_node, f->mem_bw_gbs, d));
    else
        TS_CHECK(ts_plan_device_gpu(f->device, d));
    if (ts_cli_seen(tab, ntab, "peak-tflops")) {
        d->peak_flops = (double)f->peak_tflops * 1e12;
        snprintf(d->source, sizeof(d->source), "--peak-tflops %g", (double)f->peak_tflops);
    }
    if (ts_cli_seen(tab, ntab, "memory-gb"))
        d->memory_bytes = (double)f->memory_gb * GIB;
    if (ts_cli_seen(tab, ntab, "mem-bw-gbs") && !d->cpu)
        d->mem_bw = (double)f->mem_bw_gbs * 1e9;
    if (ts_cli_seen(tab, ntab, "intra-bw-gbs"))
        d->intra_bw = (double)f->intra_bw_gbs * 1e9;
    if (ts_cli_seen(tab, ntab, "inter-bw-gbs"))
        d->inter_bw = (double)f->inter_bw_gbs * 1e9;
    if (ts_cli_seen(tab, ntab, "intra-latency-us"))
        d->intra_lat = (double)f->intra_lat_us * 1e-6;
    if (ts_cli_seen(tab, ntab, "inter-latency-us"))
        d->inter_lat = (double)f->inter_lat_us * 1e-6;
    return TS_OK;
}

/* ---- measured runs ---- */

static struct json_object *read_json_file(const char *path) {
    struct json_object *o = json_object_from_file(path);
    if (o == NULL)
        ts_error(TS_ERR_IO, "cannot read %s as JSON (a run directory holds config.json)", path);
    return o;
}

static bool get_int(struct json_object *o, const char *key, int *out) {
    struct json_object *v;
    if (!json_object_object_get_ex(o, key, &v) || !json_object_is_type(v, json_type_int))
        return false;
    *out = json_object_get_int(v);
    return true;
}

/* key's string, or "" when it is absent or not a string (null included). */
static const char *get_str(struct json_object *o, const char *key) {
    struct json_object *v;
    if (!json_object_object_get_ex(o, key, &v) || !json_object_is_type(v, json_type_string))
        return "";
    return json_object_get_string(v);
}

static int by_double(const void *a, const void *b) {
    const double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* The median wall of the ledger's steady steps (each segment's warm-up left out), the number of
 * devices and whether they were CPU ranks. */
static ts_status ledger_steps(const char *path, double *median, int *devices, bool *cpu,
                              double *peak) {
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return ts_error(TS_ERR_IO, "cannot read %s (a measured run has a ledger)", path);
    size_t cap = 256, n = 0;
    double *walls = malloc(cap * sizeof(double));
    int seg = -1;
    int64_t in_seg = 0;
    char line[8192];
    ts_status st = TS_OK;
    *devices = 0;
    *peak = 0;
    long at = 0;
    while (walls != NULL && fgets(line, sizeof(line), f) != NULL) {
        at++;
        struct json_object *o = json_tokener_parse(line), *v;
        if (o == NULL) {
            st = ts_error(TS_ERR_FORMAT, "%s:%ld is not JSON", path, at);
            break;
        }
        const char *type = get_str(o, "type");
        if (strcmp(type, "segment_start") == 0) {
            if (!get_int(o, "devices", devices) || *devices < 1 || *devices > (1 << 24)) {
                st = ts_error(TS_ERR_FORMAT, "%s:%ld: a segment_start without a device count", path,
                              at);
                json_object_put(o);
                break;
            }
            *cpu = strcmp(get_str(o, "device"), "cpu") == 0;
            get_int(o, "segment", &seg);
            if (json_object_object_get_ex(o, "peak_flops_per_device", &v))
                *peak = json_object_get_double(v);
            in_seg = 0;
        } else if (strcmp(type, "step") == 0 && json_object_object_get_ex(o, "wall_s", &v)) {
            if (n == cap) {
                cap *= 2;
                double *grown = realloc(walls, cap * sizeof(double));
                if (grown == NULL) {
                    free(walls);
                    walls = NULL;
                    json_object_put(o);
                    break;
                }
                walls = grown;
            }
            const double wall = json_object_get_double(v);
            if (!(wall > 0 && wall < 1e9)) {
                st = ts_error(TS_ERR_FORMAT, "%s:%ld: a step's wall_s is not a positive number",
                              path, at);
                json_object_put(o);
                break;
            }
            in_seg++;
            walls[n++] = wall;
        } else if (strcmp(type, "segment") == 0 && json_object_object_get_ex(o, "steps", &v)) {
            /* drop this segment's warm-up, ts_ledger_warmup_steps of its steps */
            const int64_t w = ts_ledger_warmup_steps(in_seg);
            if (w > 0 && (size_t)in_seg <= n) {
                memmove(walls + n - in_seg, walls + n - in_seg + w,
                        (size_t)(in_seg - w) * sizeof(double));
                n -= (size_t)w;
            }
            in_seg = 0;
        }
        json_object_put(o);
    }
    fclose(f);
    if (walls == NULL)
        return ts_error(TS_ERR_OOM, "reading %s: out of memory", path);
    if (st == TS_OK && in_seg > 0) { /* a segment without its end line (killed) */
        const int64_t w = ts_ledger_warmup_steps(in_seg);
        memmove(walls + n - in_seg, walls + n - in_seg + w, (size_t)(in_seg - w) * sizeof(double));
        n -= (size_t)w;
    }
    if (st == TS_OK && (n == 0 || *devices < 1))
        st = ts_error(TS_ERR_FORMAT, "%s records no steady steps to calibrate on", path);
    if (st == TS_OK) {
        qsort(walls, n, sizeof(double), by_double);
        *median = n % 2 ? walls[n / 2] : 0.5 * (walls[n / 2 - 1] + walls[n / 2]);
    }
    free(walls);
    return st;
}

/* One run as a calibration sample on the planned device kind. */
static ts_status read_sample(const char *run, const struct flags *fl, const struct ts_flag *tab,
                             int ntab, struct ts_plan_sample *s) {
    memset(s, 0, sizeof(*s));
    snprintf(s->name, sizeof(s->name), "%s", run);
    char path[TS_PATH_MAX];
    TS_CHECK(ts_path_join(path, sizeof(path), run, "ledger.jsonl"));
    double median = 0;
    int devices = 0;
    bool cpu = false;
    double ledger_peak = 0;
    TS_CHECK(ledger_steps(path, &median, &devices, &cpu, &ledger_peak));
    const bool want_cpu = strcmp(fl->device, "cpu") == 0;
    if (cpu != want_cpu)
        return ts_error(TS_ERR_INVALID_ARG,
                        "%s ran on %s but the plan is for --device %s: calibrate on runs of the "
                        "device you plan for",
                        run, cpu ? "CPU ranks" : "GPUs", fl->device);
    TS_CHECK(ts_path_join(path, sizeof(path), run, "config.json"));
    struct json_object *cfg = read_json_file(path), *model, *train, *layout, *v;
    if (cfg == NULL)
        return TS_ERR_IO;
    ts_status st = TS_OK;
    int L = 0, NH = 0, C = 0, V = 0, maxT = 0, B = 0, A = 0, T = 0, zero = 0, tp = 1;
    if (!json_object_object_get_ex(cfg, "model", &model) ||
        !json_object_object_get_ex(cfg, "train", &train) || !get_int(model, "num_layers", &L) ||
        !get_int(model, "num_heads", &NH) || !get_int(model, "channels", &C) ||
        !get_int(model, "vocab_size", &V) || !get_int(train, "batch", &B) ||
        !get_int(train, "grad_accum", &A) || !get_int(train, "seq_len", &T) ||
        !get_int(train, "zero", &zero)) {
        st = ts_error(TS_ERR_FORMAT, "%s lacks the model or train keys tessera train writes", path);
        goto done;
    }
    get_int(model, "max_seq_len", &maxT);
    /* runs before the layout key trained without tensor parallelism */
    if (json_object_object_get_ex(cfg, "layout", &layout))
        get_int(layout, "tp", &tp);
    if (tp < 1 || devices % tp != 0) {
        st = ts_error(TS_ERR_FORMAT, "%s: tp %d does not divide the ledger's %d devices", path, tp,
                      devices);
        goto done;
    }
    char spec[64];
    snprintf(spec, sizeof(spec), "%d,%d,%d,%d", L, NH, C, V);
    TS_CHECK_GOTO(ts_plan_model_parse(spec, &s->model), st, done);
    s->model.max_seq_len = maxT;
    /* the runs were measured on one host: every rank shares it */
    const int per_node =
        cpu ? devices : (devices < fl->gpus_per_node ? devices : fl->gpus_per_node);
    TS_CHECK_GOTO(make_device(fl, tab, ntab, per_node, &s->cluster.dev), st, done);
    /* A CPU rank's share of the host is its cores, fewer than host/ranks when it ran on fewer
     * threads (mpirun binds 1 or 2 ranks to a core each; --threads): the ledger's peak counts
     * the cores it used. Oversubscribed ranks share cores, so the smaller of the two holds. */
    struct ts_plan_device *d = &s->cluster.dev;
    if (cpu && ledger_peak > 0 && ledger_peak < d->peak_flops &&
        !ts_cli_seen(tab, ntab, "peak-tflops")) {
        d->mem_bw *= ledger_peak / d->peak_flops;
        d->peak_flops = ledger_peak;
    }
    s->cluster.dev.bf16 = strcmp(get_str(train, "precision"), "bf16") == 0;
    s->cluster.gpus = devices;
    s->cluster.gpus_per_node = per_node;
    s->layout = (struct ts_plan_layout){devices / tp, tp, zero, B, A};
    s->job.seq_len = T;
    s->job.global_batch = (int64_t)B * A * (devices / tp);
    s->job.usd_per_gpu_hour = -1;
    if (json_object_object_get_ex(train, "bucket_mb", &v))
        s->job.bucket_bytes = (int64_t)(json_object_get_double(v) * 1024.0 * 1024.0);
    s->step_s = median;
done:
    json_object_put(cfg);
    return st;
}

/* ---- printing ---- */

static struct json_object *jnum(double x) {
    if (!isfinite(x))
        return NULL;
    char text[40];
    snprintf(text, sizeof(text), "%.17g", x);
    return json_object_new_double_s(x, text);
}

static void print_json(const struct ts_plan_row *rows, int n) {
    struct json_object *arr = json_object_new_array();
    for (int i = 0; i < n; i++) {
        const struct ts_plan_row *r = &rows[i];
        struct json_object *o = json_object_new_object(), *mem = json_object_new_object(),
                           *t = json_object_new_object();
        json_object_object_add(o, "dp", json_object_new_int(r->layout.dp));
        json_object_object_add(o, "tp", json_object_new_int(r->layout.tp));
        json_object_object_add(o, "zero", json_object_new_int(r->layout.zero));
        json_object_object_add(o, "micro_batch", json_object_new_int(r->layout.micro_batch));
        json_object_object_add(o, "grad_accum", json_object_new_int(r->layout.grad_accum));
        json_object_object_add(o, "fits", json_object_new_boolean(r->fits));
        json_object_object_add(o, "refused", r->fits ? NULL : json_object_new_string(r->reason));
        json_object_object_add(o, "tokens_per_s", jnum(r->tokens_per_s));
        json_object_object_add(o, "mfu", jnum(r->mfu));
        json_object_object_add(o, "memory_bytes", jnum(r->mem.total));
        json_object_object_add(o, "usd_per_1m_tokens", jnum(r->usd_per_1m_tokens));
        json_object_object_add(o, "device_s_per_token", jnum(r->device_s_per_token));
        json_object_object_add(o, "step_s", jnum(r->time.step));
        json_object_object_add(o, "total_s", jnum(r->total_s));
        json_object_object_add(o, "total_usd", jnum(r->total_usd));
        json_object_object_add(mem, "params", jnum(r->mem.params));
        json_object_object_add(mem, "grads", jnum(r->mem.grads));
        json_object_object_add(mem, "optimizer", jnum(r->mem.optim));
        json_object_object_add(mem, "activations", jnum(r->mem.activations));
        json_object_object_add(mem, "other", jnum(r->mem.other));
        json_object_object_add(o, "memory", mem);
        json_object_object_add(t, "compute", jnum(r->time.compute));
        json_object_object_add(t, "memory_bound", jnum(r->time.memory));
        json_object_object_add(t, "dp_comm", jnum(r->time.dp_comm));
        json_object_object_add(t, "dp_exposed", jnum(r->time.dp_exposed));
        json_object_object_add(t, "tp_comm", jnum(r->time.tp_comm));
        json_object_object_add(t, "zero_gather", jnum(r->time.gather));
        json_object_object_add(t, "world_sync", jnum(r->time.sync));
        json_object_object_add(t, "overhead", jnum(r->time.overhead));
        json_object_object_add(o, "time_s", t);
        json_object_array_add(arr, o);
    }
    printf("%s\n", json_object_to_json_string_ext(arr, JSON_C_TO_STRING_PLAIN |
                                                           JSON_C_TO_STRING_NOSLASHESCAPE));
    json_object_put(arr);
}

static void human_time(double s, char *out, size_t len) {
    if (!isfinite(s))
        snprintf(out, len, "-");
    else if (s < 3600)
        snprintf(out, len, "%.1f min", s / 60);
    else if (s < 3 * 86400)
        snprintf(out, len, "%.1f h", s / 3600);
    else
        snprintf(out, len, "%.1f d", s / 86400);
}

/* a and b equal but for their numbers */
static bool same_words(const char *a, const char *b) {
    for (;;) {
        while (*a >= '0' && *a <= '9')
            a++;
        while (*b >= '0' && *b <= '9')
            b++;
        if (*a != *b)
            return false;
        if (*a == '\0')
            return true;
        a++;
        b++;
    }
}

static void print_table(const struct ts_plan_row *rows, int n, int top, bool priced) {
    printf("%4s %5s %4s %4s %6s %6s %9s %10s %12s %7s %11s %10s %11s\n", "rank", "dp", "tp", "zero",
           "micro", "accum", "mem GiB", "step ms", "tokens/s", "MFU%",
           priced ? "$/1M tok" : "dev-s/1M", "time", priced ? "total $" : "");
    int shown = 0, refused = 0;
    for (int i = 0; i < n; i++) {
        const struct ts_plan_row *r = &rows[i];
        if (!r->fits) {
            refused++;
            continue;
        }
        if (shown >= top)
            continue;
        char t[32], usd[32];
        human_time(r->total_s, t, sizeof(t));
        if (isfinite(r->total_usd))
            snprintf(usd, sizeof(usd), "%.0f", r->total_usd);
        else
            snprintf(usd, sizeof(usd), "%s", priced ? "-" : "");
        printf("%4d %5d %4d %4d %6d %6d %9.2f %10.3f %12.0f %7.2f %11.4g %10s %11s\n", ++shown,
               r->layout.dp, r->layout.tp, r->layout.zero, r->layout.micro_batch,
               r->layout.grad_accum, r->mem.total / GIB, r->time.step * 1e3, r->tokens_per_s,
               100 * r->mfu, priced ? r->usd_per_1m_tokens : r->device_s_per_token * 1e6, t, usd);
    }
    int fitting = 0;
    for (int i = 0; i < n; i++)
        fitting += rows[i].fits;
    if (fitting > shown)
        printf("(%d more layouts fit; --top N shows more, --json shows all)\n", fitting - shown);
    if (refused > 0) {
        printf("refused %d layout(s), e.g.:\n", refused);
        int said = 0;
        for (int i = 0; i < n && said < 4; i++) {
            if (rows[i].fits)
                continue;
            bool dup = false; /* one example per kind of reason (its words, not its numbers) */
            for (int j = 0; j < i && !dup; j++)
                dup = !rows[j].fits && same_words(rows[j].reason, rows[i].reason);
            if (dup)
                continue;
            printf("  dp %d x tp %d, ZeRO %d, micro-batch %d: %s\n", rows[i].layout.dp,
                   rows[i].layout.tp, rows[i].layout.zero, rows[i].layout.micro_batch,
                   rows[i].reason);
            said++;
        }
    }
}

/* ---- the command ---- */

static int fail_usage(const char *what) {
    ts_error(TS_ERR_INVALID_ARG, "%s", what);
    return ts_launch_fail("plan", TS_EXIT_USAGE);
}

static ts_status calibrate(const struct flags *fl, const struct ts_flag *tab, int ntab,
                           const char **runs, int nruns, struct ts_plan_eff *eff) {
    static struct ts_plan_sample samples[MAX_RUNS];
    double residual[MAX_RUNS];
    for (int i = 0; i < nruns; i++)
        TS_CHECK(read_sample(runs[i], fl, tab, ntab, &samples[i]));
    const struct ts_plan_eff start = *eff;
    TS_CHECK(ts_plan_calibrate(samples, nruns, &start, eff, residual));
    FILE *o = fl->json ? stderr : stdout;
    fprintf(o,
            "calibrated on %d run(s): matmul efficiency %.3f, memory efficiency %.3f, overlap "
            "%.3f, overhead %.3f ms/step, latency x%.4g\n",
            nruns, eff->matmul, eff->memory, eff->overlap, eff->overhead_s * 1e3, eff->latency);
    double sq = 0;
    for (int i = 0; i < nruns; i++) {
        const struct ts_plan_sample *s = &samples[i];
        fprintf(o,
                "  %-40s dp %d tp %d zero %d B %d accum %d: measured %.3f ms/step, predicted "
                "%.3f (%+.1f%%)\n",
                s->name, s->layout.dp, s->layout.tp, s->layout.zero, s->layout.micro_batch,
                s->layout.grad_accum, s->step_s * 1e3, s->step_s * (1 + residual[i]) * 1e3,
                100 * residual[i]);
        sq += residual[i] * residual[i];
    }
    fprintf(o, "  rms residual %.1f%%%s\n", 100 * sqrt(sq / nruns),
            nruns <= 4 ? " (as many runs as terms or fewer: the fit can be exact; add runs)" : "");
    return TS_OK;
}

int ts_cmd_plan(int argc, char **argv) {
    struct flags fl = {.model = NULL,
                       .device = "h100",
                       .gpus = 0,
                       .gpus_per_node = 0,
                       .seq_len = 1024,
                       .top = 10,
                       .global_batch = 512,
                       .tokens = 0,
                       .price = -1,
                       .mem_bw_gbs = 20,
                       .bucket_mb = 25};
    static const char *cal_items[MAX_RUNS];
    struct ts_flag_list cal = {.items = cal_items, .n = 0, .max = MAX_RUNS};
    struct ts_flag tab[] = {
        {"model", TS_FLAG_STRING, &fl.model, "M", "124m, 350m, 774m, 1.5b or L,NH,C[,V]", true},
        {"device", TS_FLAG_STRING, &fl.device, "D", "h100, h200, a100 or cpu"},
        {"gpus", TS_FLAG_INT, &fl.gpus, "N", "devices (CPU: ranks) in all", true},
        {"gpus-per-node", TS_FLAG_INT, &fl.gpus_per_node, "N",
         "devices per node (0: 8 GPUs, or every CPU rank on one host)"},
        {"seq-len", TS_FLAG_INT, &fl.seq_len, "T", "tokens per sequence"},
        {"global-batch", TS_FLAG_I64, &fl.global_batch, "B", "sequences per update"},
        {"tokens", TS_FLAG_FLOAT, &fl.tokens, "N", "tokens to train (0: no totals)"},
        {"price-per-gpu-hour", TS_FLAG_FLOAT, &fl.price, "USD", "device-hour price (-1: none)"},
        {"json", TS_FLAG_BOOL, &fl.json, NULL, "an array of layouts, best first"},
        {"calibrate", TS_FLAG_LIST, &cal, "RUN", "fit the efficiency terms to measured runs"},
        {"top", TS_FLAG_INT, &fl.top, "N", "layouts in the table"},
        {"peak-tflops", TS_FLAG_FLOAT, &fl.peak_tflops, "F", "override the device's dense peak"},
        {"memory-gb", TS_FLAG_FLOAT, &fl.memory_gb, "GIB", "override the memory per device"},
        {"mem-bw-gbs", TS_FLAG_FLOAT, &fl.mem_bw_gbs, "GB/S",
         "memory bandwidth (CPU: of a host; GPUs: override)"},
        {"intra-bw-gbs", TS_FLAG_FLOAT, &fl.intra_bw_gbs, "GB/S", "override: within a node"},
        {"inter-bw-gbs", TS_FLAG_FLOAT, &fl.inter_bw_gbs, "GB/S", "override: across nodes"},
        {"intra-latency-us", TS_FLAG_FLOAT, &fl.intra_lat_us, "US", "override: within a node"},
        {"inter-latency-us", TS_FLAG_FLOAT, &fl.inter_lat_us, "US", "override: across nodes"},
        {"bucket-mb", TS_FLAG_FLOAT, &fl.bucket_mb, "MB", "gradient bucket (train's --bucket-mb)"},
        {"matmul-eff", TS_FLAG_FLOAT, &fl.matmul_eff, "F", "override: matmul fraction of peak"},
        {"memory-eff", TS_FLAG_FLOAT, &fl.memory_eff, "F", "override: fraction of mem bandwidth"},
        {"overlap", TS_FLAG_FLOAT, &fl.overlap, "F", "override: gradient reduction hidden"},
        {"overhead-ms", TS_FLAG_FLOAT, &fl.overhead_ms, "MS", "override: per-step overhead"},
    };
    const int ntab = (int)(sizeof(tab) / sizeof(tab[0]));
    static const char *pos[MAX_RUNS];
    int npos = 0;
    bool help = false;
    if (ts_cli_parse(tab, ntab, argc, argv, 2, pos, MAX_RUNS, &npos, &help) != TS_OK)
        return ts_launch_fail("plan", TS_EXIT_USAGE);
    if (help) {
        ts_cli_print_help(usage, description, tab, ntab);
        return TS_EXIT_OK;
    }
    /* `--calibrate a b c`: the runs after the first are positional */
    if (npos > 0 && cal.n == 0)
        return fail_usage("unexpected argument; measured runs follow --calibrate");
    for (int i = 0; i < npos && cal.n < cal.max; i++)
        cal.items[cal.n++] = pos[i];
    if (fl.gpus < 1 || fl.gpus > 1 << 20)
        return fail_usage("--gpus must be in [1, 1048576]");
    if (fl.gpus_per_node < 0)
        return fail_usage("--gpus-per-node must be >= 1 (0: the default)");
    const bool cpu = strcmp(fl.device, "cpu") == 0;
    if (fl.gpus_per_node == 0)
        fl.gpus_per_node = cpu ? fl.gpus : (fl.gpus < 8 ? fl.gpus : 8);
    if (fl.gpus > fl.gpus_per_node && fl.gpus % fl.gpus_per_node != 0) {
        ts_error(TS_ERR_INVALID_ARG, "--gpus %d is not a whole number of nodes of %d", fl.gpus,
                 fl.gpus_per_node);
        return ts_launch_fail("plan", TS_EXIT_USAGE);
    }
    if (fl.seq_len < 1 || fl.seq_len > 65536)
        return fail_usage("--seq-len must be in [1, 65536]");
    if (fl.global_batch < 1 || fl.global_batch > ((int64_t)1 << 30))
        return fail_usage("--global-batch must be in [1, 2^30] sequences");
    if (!(fl.tokens >= 0) || !isfinite(fl.tokens))
        return fail_usage("--tokens must be >= 0");
    if (!(fl.price >= 0 || fl.price == -1) || !isfinite(fl.price))
        return fail_usage("--price-per-gpu-hour must be >= 0 (or -1: none)");
    if (fl.top < 1)
        return fail_usage("--top must be >= 1");
    const float *positive[] = {&fl.peak_tflops,  &fl.memory_gb,    &fl.mem_bw_gbs,
                               &fl.intra_bw_gbs, &fl.inter_bw_gbs, &fl.bucket_mb};
    const char *pnames[] = {"peak-tflops",  "memory-gb",    "mem-bw-gbs",
                            "intra-bw-gbs", "inter-bw-gbs", "bucket-mb"};
    for (int i = 0; i < 6; i++)
        if (ts_cli_seen(tab, ntab, pnames[i]) && !(*positive[i] > 0 && isfinite(*positive[i]))) {
            ts_error(TS_ERR_INVALID_ARG, "--%s must be > 0", pnames[i]);
            return ts_launch_fail("plan", TS_EXIT_USAGE);
        }
    const float *fracs[] = {&fl.matmul_eff, &fl.memory_eff};
    const char *fnames[] = {"matmul-eff", "memory-eff"};
    for (int i = 0; i < 2; i++)
        if (ts_cli_seen(tab, ntab, fnames[i]) && !(*fracs[i] > 0 && *fracs[i] <= 1)) {
            ts_error(TS_ERR_INVALID_ARG, "--%s must be in (0, 1]", fnames[i]);
            return ts_launch_fail("plan", TS_EXIT_USAGE);
        }
    if (ts_cli_seen(tab, ntab, "overlap") && !(fl.overlap >= 0 && fl.overlap <= 1))
        return fail_usage("--overlap must be in [0, 1]");
    if ((ts_cli_seen(tab, ntab, "intra-latency-us") && !(fl.intra_lat_us >= 0)) ||
        (ts_cli_seen(tab, ntab, "inter-latency-us") && !(fl.inter_lat_us >= 0)) ||
        (ts_cli_seen(tab, ntab, "overhead-ms") && !(fl.overhead_ms >= 0)))
        return fail_usage("latencies and --overhead-ms must be >= 0");

    struct ts_plan_model model;
    if (ts_plan_model_parse(fl.model, &model) != TS_OK)
        return ts_launch_fail("plan", TS_EXIT_USAGE);
    struct ts_plan_cluster cl = {.gpus = fl.gpus, .gpus_per_node = fl.gpus_per_node};
    if (make_device(&fl, tab, ntab, fl.gpus_per_node, &cl.dev) != TS_OK)
        return ts_launch_fail("plan", TS_EXIT_USAGE);
    struct ts_plan_eff eff = ts_plan_eff_defaults(&cl.dev);
    if (cal.n > 0 && calibrate(&fl, tab, ntab, cal.items, cal.n, &eff) != TS_OK)
        return ts_launch_fail("plan", TS_EXIT_USAGE);
    if (ts_cli_seen(tab, ntab, "matmul-eff"))
        eff.matmul = fl.matmul_eff;
    if (ts_cli_seen(tab, ntab, "memory-eff"))
        eff.memory = fl.memory_eff;
    if (ts_cli_seen(tab, ntab, "overlap"))
        eff.overlap = fl.overlap;
    if (ts_cli_seen(tab, ntab, "overhead-ms"))
        eff.overhead_s = fl.overhead_ms * 1e-3;
    const struct ts_plan_job job = {.seq_len = fl.seq_len,
                                    .global_batch = fl.global_batch,
                                    .tokens = fl.tokens,
                                    .usd_per_gpu_hour = fl.price,
                                    .bucket_bytes = (int64_t)(fl.bucket_mb * 1024.0 * 1024.0)};

    int n = 0;
    if (ts_plan_enumerate(&model, &cl, &eff, &job, NULL, 0, &n) != TS_OK)
        return ts_launch_fail("plan", TS_EXIT_USAGE);
    struct ts_plan_row *rows = calloc((size_t)(n > 0 ? n : 1), sizeof(*rows));
    if (rows == NULL) {
        ts_error(TS_ERR_OOM, "plan: out of memory for %d layouts", n);
        return ts_launch_fail("plan", TS_EXIT_FAILURE);
    }
    if (ts_plan_enumerate(&model, &cl, &eff, &job, rows, n, &n) != TS_OK) {
        free(rows);
        return ts_launch_fail("plan", TS_EXIT_USAGE);
    }
    if (fl.json) {
        print_json(rows, n);
    } else {
        const double params = (double)ts_plan_params_per_rank(&model, fl.seq_len, 1);
        printf("model   %s: L %d, NH %d, C %d, V %d (%.1fM parameters, %.3g FLOP/token)\n",
               model.name, model.layers, model.heads, model.channels, model.vocab, params / 1e6,
               ts_plan_flops_per_token(&model, fl.seq_len));
        printf("cluster %d x %s in nodes of %d: %.4g TFLOP/s peak (%s), %.1f GiB, %.0f GB/s "
               "memory; links %.4g GB/s %.3g us within a node, %.4g GB/s %.3g us across\n",
               cl.gpus, cl.dev.name, cl.gpus_per_node, cl.dev.peak_flops / 1e12,
               cl.dev.bf16 ? "bf16" : "fp32", cl.dev.memory_bytes / GIB, cl.dev.mem_bw / 1e9,
               cl.dev.intra_bw / 1e9, cl.dev.intra_lat * 1e6, cl.dev.inter_bw / 1e9,
               cl.dev.inter_lat * 1e6);
        printf("model   matmul efficiency %.3f, memory efficiency %.3f, overlap %.2f, overhead "
               "%.3f ms/step, latency x%.4g (%s)\n",
               eff.matmul, eff.memory, eff.overlap, eff.overhead_s * 1e3, eff.latency,
               cal.n > 0 ? "calibrated" : "defaults, uncalibrated");
        printf("job     global batch %lld x %d tokens%s\n\n", (long long)fl.global_batch,
               fl.seq_len, fl.price >= 0 ? "" : "; no price: ranked by device-seconds per token");
        print_table(rows, n, fl.top, fl.price >= 0);
        char why[1024];
        ts_plan_explain(rows, n, why, sizeof(why));
        printf("\n%s\n", why);
    }
    const bool any = n > 0 && rows[0].fits;
    free(rows);
    if (!any) {
        ts_error(TS_ERR_INVALID_ARG, "no layout fits; see the refused layouts' reasons");
        return ts_launch_fail("plan", TS_EXIT_USAGE);
    }
    return TS_EXIT_OK;
}
