/* cmd_cost.c: `tessera cost RUN [RUN...] [--json] [--sort KEY]`: what runs cost, from their
 * ledgers (launch/ledger.h), one summarised or several side by side.
 *
 * Everything printed is computed by ts_ledger_summarize from the lines the runs wrote, with the
 * prices written in them: a later change of the price table changes no recorded run. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "kernels/fs.h"
#include "launch/cli.h"
#include "launch/commands.h"
#include "launch/common.h"
#include "launch/ledger.h"

#include <json-c/json.h>

static const char usage[] = "tessera cost RUN [RUN...] [--json] [--sort KEY]";
static const char description[] =
    "What each run cost, from RUN/ledger.jsonl (RUN a run directory or a ledger file): tokens,\n"
    "device-hours, energy, USD, USD per 1M tokens, goodput USD per 1M tokens, tokens/s per\n"
    "device and MFU. usd is the whole job: every segment, start-up, evals, checkpoint stalls,\n"
    "restarts and lost work. usd_per_1m_tokens is the steady state: step time only, each\n"
    "segment's warm-up left out (its first 10% of steps, at most 5, at least 1 from 2 steps).\n"
    "goodput_usd_per_1m_tokens = usd / tokens x 1e6, tokens counting a redone step once.\n"
    "A run without prices still reports tokens and device-hours, and says no price was given.\n"
    "--json prints one object per run per line, at full precision (null: not known).\n"
    "--sort KEY orders the runs by a --json number, ascending, unknown values last.";

#define MAX_RUNS 256

struct row {
    const char *run;
    struct ts_ledger_summary s;
};

/* The numbers --json prints, by key (also what --sort takes). */
static double key_value(const struct row *r, const char *key) {
    const struct ts_ledger_summary *s = &r->s;
    const struct {
        const char *key;
        double v;
    } keys[] = {
        {"tokens", (double)s->tokens},
        {"steps", (double)s->steps},
        {"device_seconds", s->device_seconds},
        {"device_hours", s->device_seconds / 3600.0},
        {"usd", s->usd},
        {"usd_per_1m_tokens", s->usd_per_1m_tokens},
        {"goodput_usd_per_1m_tokens", s->goodput_usd_per_1m_tokens},
        {"tokens_per_s_per_device", s->tokens_per_s_per_device},
        {"mfu", s->mfu},
        {"energy_j", s->energy_j},
        {"wall_s", s->wall_s},
        {"startup_s", s->startup_s},
        {"step_s", s->step_s},
        {"eval_s", s->eval_s},
        {"checkpoint_s", s->checkpoint_s},
        {"segments", (double)s->segments},
        {"restarts", (double)s->restarts},
        {"lost_steps", (double)s->lost_steps},
        {"devices", (double)s->devices},
        {"usd_per_device_hour", s->usd_per_device_hour},
        {"usd_per_kwh", s->usd_per_kwh},
    };
    for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++)
        if (strcmp(keys[i].key, key) == 0)
            return keys[i].v;
    return INFINITY; /* not a key: checked before sorting */
}

static const char *sort_key;

static int by_key(const void *a, const void *b) {
    const double x = key_value(a, sort_key), y = key_value(b, sort_key);
    if (isnan(x) || isnan(y))
        return isnan(x) - isnan(y);
    return (x > y) - (x < y);
}

static struct json_object *jnum(double x) {
    if (!isfinite(x))
        return NULL;
    char text[40];
    snprintf(text, sizeof(text), "%.17g", x);
    return json_object_new_double_s(x, text);
}

static void print_json(const struct row *r) {
    const struct ts_ledger_summary *s = &r->s;
    struct json_object *o = json_object_new_object();
    json_object_object_add(o, "run", json_object_new_string(r->run));
    const char *numbers[] = {"tokens",
                             "steps",
                             "device_seconds",
                             "device_hours",
                             "usd",
                             "usd_per_1m_tokens",
                             "goodput_usd_per_1m_tokens",
                             "tokens_per_s_per_device",
                             "mfu",
                             "energy_j",
                             "wall_s",
                             "startup_s",
                             "step_s",
                             "eval_s",
                             "checkpoint_s",
                             "segments",
                             "restarts",
                             "lost_steps",
                             "devices",
                             "usd_per_device_hour",
                             "usd_per_kwh"};
    for (size_t i = 0; i < sizeof(numbers) / sizeof(numbers[0]); i++) {
        const double v = key_value(r, numbers[i]);
        const bool integer = strcmp(numbers[i], "tokens") == 0 || strcmp(numbers[i], "steps") == 0;
        json_object_object_add(o, numbers[i],
                               integer ? json_object_new_int64((int64_t)v) : jnum(v));
    }
    json_object_object_add(o, "device", json_object_new_string(s->cpu ? "cpu" : "gpu"));
    json_object_object_add(o, "device_name", json_object_new_string(s->device_name));
    json_object_object_add(o, "priced", json_object_new_boolean(isfinite(s->usd)));
    json_object_object_add(o, "energy_priced", json_object_new_boolean(s->energy_priced));
    json_object_object_add(o, "price_source", json_object_new_string(s->price_source));
    json_object_object_add(o, "exit", json_object_new_string(s->ended ? s->exit_reason : ""));
    printf("%s\n", json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN |
                                                         JSON_C_TO_STRING_NOSLASHESCAPE));
    json_object_put(o);
}

static void fmt(char *buf, size_t len, const char *f, double x) {
    if (isfinite(x))
        snprintf(buf, len, f, x);
    else
        snprintf(buf, len, "-");
}

static void print_one(const struct row *r) {
    const struct ts_ledger_summary *s = &r->s;
    char a[32], b[32], c[32];
    printf("%s: %d segment(s), %d restart(s), %lld lost step(s); last exit: %s\n", r->run,
           s->segments, s->restarts, (long long)s->lost_steps,
           s->ended ? s->exit_reason : "(killed: no end line)");
    printf("  tokens          %lld in %lld steps (%lld trained, redone ones included)\n",
           (long long)s->tokens, (long long)s->steps, (long long)s->step_lines);
    printf("  devices         %d x %s (%s)\n", s->devices, s->cpu ? "cpu rank" : "gpu",
           s->device_name);
    printf("  time            %.3f s wall = start-up %.3f + steps %.3f + eval %.3f + checkpoint "
           "%.3f + other\n",
           s->wall_s, s->startup_s, s->step_s, s->eval_s, s->checkpoint_s);
    printf("  device-hours    %.6f (%.3f device-seconds)\n", s->device_seconds / 3600.0,
           s->device_seconds);
    fmt(a, sizeof(a), "%.1f J", s->energy_j);
    printf("  energy          %s\n", isfinite(s->energy_j) ? a : "not measured");
    fmt(a, sizeof(a), "%.4g", s->tokens_per_s_per_device);
    fmt(b, sizeof(b), "%.4f%%", 100 * s->mfu);
    printf("  steady state    %s tokens/s/device, MFU %s\n", a, isfinite(s->mfu) ? b : "unknown");
    if (!isfinite(s->usd)) {
        printf("  cost            no price was given (pass --price-per-gpu-hour or --prices)\n");
        return;
    }
    fmt(a, sizeof(a), "%.6g", s->usd);
    fmt(b, sizeof(b), "%.6g", s->usd_per_1m_tokens);
    fmt(c, sizeof(c), "%.6g", s->goodput_usd_per_1m_tokens);
    printf("  cost            $%s for the job%s; $%s per 1M tokens steady, $%s per 1M tokens "
           "goodput\n",
           a,
           s->energy_priced        ? " (energy included)"
           : isfinite(s->energy_j) ? " (energy not priced)"
                                   : " (energy not measured)",
           b, c);
    printf("  prices          $%.6g per device-hour, ", s->usd_per_device_hour);
    if (isfinite(s->usd_per_kwh))
        printf("$%.6g per kWh", s->usd_per_kwh);
    else
        printf("no kWh price");
    printf(" (%s)\n", s->price_source);
}

static void print_table(const struct row *rows, int n) {
    printf("%-28s %12s %10s %10s %10s %10s %10s %8s %9s %4s\n", "run", "tokens", "dev-hours", "usd",
           "$/1M", "goodput", "tok/s/dev", "MFU%", "energy_J", "rst");
    for (int i = 0; i < n; i++) {
        const struct ts_ledger_summary *s = &rows[i].s;
        char usd[32], per[32], good[32], tps[32], mfu[32], e[32];
        fmt(usd, sizeof(usd), "%.6f", s->usd);
        fmt(per, sizeof(per), "%.4f", s->usd_per_1m_tokens);
        fmt(good, sizeof(good), "%.4f", s->goodput_usd_per_1m_tokens);
        fmt(tps, sizeof(tps), "%.1f", s->tokens_per_s_per_device);
        fmt(mfu, sizeof(mfu), "%.3f", 100 * s->mfu);
        fmt(e, sizeof(e), "%.1f", s->energy_j);
        const char *slash = strrchr(rows[i].run, '/');
        const char *name = slash != NULL && slash[1] != '\0' ? slash + 1 : rows[i].run;
        const size_t len = strlen(name);
        printf("%-28s %12lld %10.6f %10s %10s %10s %10s %8s %9s %4d\n",
               len > 28 ? name + len - 28 : name, (long long)s->tokens, s->device_seconds / 3600.0,
               usd, per, good, tps, mfu, e, s->restarts);
    }
    for (int i = 0; i < n; i++)
        if (!isfinite(rows[i].s.usd)) {
            printf("(- in usd: no price was given for that run)\n");
            break;
        }
}

/* RUN/ledger.jsonl for a directory, else the path itself. */
static ts_status ledger_path(const char *run, char *out, size_t len) {
    struct stat st;
    if (stat(run, &st) == 0 && S_ISDIR(st.st_mode))
        return ts_path_join(out, len, run, "ledger.jsonl");
    return ts_path_fmt(out, len, "%s", run);
}

int ts_cmd_cost(int argc, char **argv) {
    bool json = false;
    const char *sort = NULL;
    struct ts_flag flags[] = {
        {"json", TS_FLAG_BOOL, &json, NULL, "one JSON object per run, full precision"},
        {"sort", TS_FLAG_STRING, &sort, "KEY",
         "order by a --json number (usd_per_1m_tokens, mfu, ...)"},
    };
    const int nflags = (int)(sizeof(flags) / sizeof(flags[0]));
    static const char *pos[MAX_RUNS];
    int npos = 0;
    bool help = false;
    if (ts_cli_parse(flags, nflags, argc, argv, 2, pos, MAX_RUNS, &npos, &help) != TS_OK)
        return ts_launch_fail("cost", TS_EXIT_USAGE);
    if (help) {
        ts_cli_print_help(usage, description, flags, nflags);
        return TS_EXIT_OK;
    }
    if (npos == 0) {
        fprintf(stderr, "tessera cost: usage: %s\n", usage);
        return TS_EXIT_USAGE;
    }
    static struct row rows[MAX_RUNS];
    if (sort != NULL && key_value(&rows[0], sort) == INFINITY) {
        ts_error(TS_ERR_INVALID_ARG,
                 "--sort %s is not a key; try usd_per_1m_tokens, usd, mfu, "
                 "tokens_per_s_per_device, goodput_usd_per_1m_tokens",
                 sort);
        return ts_launch_fail("cost", TS_EXIT_USAGE);
    }
    for (int i = 0; i < npos; i++) {
        char path[TS_PATH_MAX];
        rows[i].run = pos[i];
        if (ledger_path(pos[i], path, sizeof(path)) != TS_OK ||
            ts_ledger_summarize(path, &rows[i].s) != TS_OK)
            return ts_launch_fail("cost", TS_EXIT_USAGE);
    }
    if (sort != NULL) {
        sort_key = sort;
        qsort(rows, (size_t)npos, sizeof(rows[0]), by_key);
    }
    for (int i = 0; json && i < npos; i++)
        print_json(&rows[i]);
    if (!json && npos == 1)
        print_one(&rows[0]);
    else if (!json)
        print_table(rows, npos);
    return TS_EXIT_OK;
}
