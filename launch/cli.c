/* cli.c: the flag parser behind every `tessera` subcommand (cli.h).
 *
 * Values are parsed strictly: "12abc", "", out-of-range integers and non-finite floats are
 * refused with the flag's name, so a typo never silently becomes a default. */
#include "launch/cli.h"

#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static struct ts_flag *find_flag(struct ts_flag *flags, int nflags, const char *name, size_t len) {
    for (int i = 0; i < nflags; i++)
        if (strlen(flags[i].name) == len && strncmp(flags[i].name, name, len) == 0)
            return &flags[i];
    return NULL;
}

/* An integer's text: an optional '-' (when allowed) and digits, nothing else: strtoll and
 * strtoull also take leading spaces and '+', and strtoull turns " -1" into 2^64-1. */
static bool integer_text(const char *t, bool sign) {
    if (sign && *t == '-')
        t++;
    if (*t == '\0')
        return false;
    for (; *t; t++)
        if (*t < '0' || *t > '9')
            return false;
    return true;
}

static ts_status parse_value(struct ts_flag *f, const char *text) {
    char *end = NULL;
    errno = 0;
    switch (f->kind) {
    case TS_FLAG_INT: {
        if (!integer_text(text, true))
            return ts_error(TS_ERR_INVALID_ARG, "--%s expects an integer, got '%s'", f->name, text);
        long long v = strtoll(text, &end, 10);
        if (errno == ERANGE || v < INT_MIN || v > INT_MAX)
            return ts_error(TS_ERR_INVALID_ARG, "--%s must be in [%d, %d], got %s", f->name,
                            INT_MIN, INT_MAX, text);
        *(int *)f->dest = (int)v;
        return TS_OK;
    }
    case TS_FLAG_I64: {
        if (!integer_text(text, true))
            return ts_error(TS_ERR_INVALID_ARG, "--%s expects an integer, got '%s'", f->name, text);
        long long v = strtoll(text, &end, 10);
        if (errno == ERANGE)
            return ts_error(TS_ERR_INVALID_ARG, "--%s must be in [%lld, %lld], got %s", f->name,
                            LLONG_MIN, LLONG_MAX, text);
        *(int64_t *)f->dest = (int64_t)v;
        return TS_OK;
    }
    case TS_FLAG_U64: {
        if (!integer_text(text, false))
            return ts_error(TS_ERR_INVALID_ARG, "--%s expects a non-negative integer, got '%s'",
                            f->name, text);
        unsigned long long v = strtoull(text, &end, 10);
        if (errno == ERANGE)
            return ts_error(TS_ERR_INVALID_ARG, "--%s must be at most %llu, got %s", f->name,
                            ULLONG_MAX, text);
        *(uint64_t *)f->dest = (uint64_t)v;
        return TS_OK;
    }
    case TS_FLAG_FLOAT: {
        float v = strtof(text, &end);
        if (*text == '\0' || *end != '\0' || errno == ERANGE || !isfinite(v))
            return ts_error(TS_ERR_INVALID_ARG, "--%s expects a number, got '%s'", f->name, text);
        *(float *)f->dest = v;
        return TS_OK;
    }
    case TS_FLAG_STRING:
        *(const char **)f->dest = text;
        return TS_OK;
    case TS_FLAG_LIST: {
        struct ts_flag_list *l = f->dest;
        if (l->n >= l->max)
            return ts_error(TS_ERR_INVALID_ARG, "--%s given more than %d times", f->name, l->max);
        l->items[l->n++] = text;
        return TS_OK;
    }
    case TS_FLAG_BOOL:
        break;
    }
    return ts_error(TS_ERR_INTERNAL, "--%s: unexpected flag kind", f->name);
}

ts_status ts_cli_parse(struct ts_flag *flags, int nflags, int argc, char **argv, int first,
                       const char **positional, int max_positional, int *npositional, bool *help) {
    *help = false;
    *npositional = 0;
    bool only_positional = false;
    for (int i = first; i < argc; i++) {
        const char *arg = argv[i];
        if (only_positional || arg[0] != '-' || arg[1] == '\0') {
            if (*npositional >= max_positional)
                return ts_error(TS_ERR_INVALID_ARG, "unexpected argument '%s'", arg);
            positional[(*npositional)++] = arg;
            continue;
        }
        if (strcmp(arg, "--") == 0) {
            only_positional = true;
            continue;
        }
        if (strcmp(arg, "--help") == 0 || strcmp(arg, "-h") == 0) {
            *help = true;
            return TS_OK;
        }
        if (arg[1] != '-')
            return ts_error(TS_ERR_INVALID_ARG, "unknown flag '%s' (flags are spelled --name)",
                            arg);
        const char *name = arg + 2;
        const char *eq = strchr(name, '=');
        size_t len = eq ? (size_t)(eq - name) : strlen(name);
        struct ts_flag *f = find_flag(flags, nflags, name, len);
        if (f == NULL)
            return ts_error(TS_ERR_INVALID_ARG, "unknown flag '--%.*s'", (int)len, name);
        f->seen = true;
        if (f->kind == TS_FLAG_BOOL) {
            if (eq != NULL)
                return ts_error(TS_ERR_INVALID_ARG, "--%s takes no value", f->name);
            *(bool *)f->dest = true;
            continue;
        }
        const char *value = eq ? eq + 1 : NULL;
        if (value == NULL) {
            if (i + 1 >= argc)
                return ts_error(TS_ERR_INVALID_ARG, "--%s needs a value (%s)", f->name,
                                f->metavar ? f->metavar : "VALUE");
            value = argv[++i];
        }
        TS_CHECK(parse_value(f, value));
    }
    for (int i = 0; i < nflags; i++)
        if (flags[i].required && !flags[i].seen)
            return ts_error(TS_ERR_INVALID_ARG, "--%s is required", flags[i].name);
    return TS_OK;
}

static void format_default(const struct ts_flag *f, char *buf, size_t len) {
    buf[0] = '\0';
    switch (f->kind) {
    case TS_FLAG_INT:
        snprintf(buf, len, "%d", *(const int *)f->dest);
        break;
    case TS_FLAG_I64:
        snprintf(buf, len, "%" PRId64, *(const int64_t *)f->dest);
        break;
    case TS_FLAG_U64:
        snprintf(buf, len, "%" PRIu64, *(const uint64_t *)f->dest);
        break;
    case TS_FLAG_FLOAT:
        snprintf(buf, len, "%g", (double)*(const float *)f->dest);
        break;
    case TS_FLAG_STRING: {
        const char *s = *(const char *const *)f->dest;
        if (s != NULL)
            snprintf(buf, len, "%s", s);
        break;
    }
    case TS_FLAG_LIST:
    case TS_FLAG_BOOL:
        break;
    }
}

void ts_cli_print_help(const char *usage, const char *description, const struct ts_flag *flags,
                       int nflags) {
    printf("usage: %s\n\n%s\n\nflags:\n", usage, description);
    for (int i = 0; i < nflags; i++) {
        const struct ts_flag *f = &flags[i];
        char left[64], def[128];
        if (f->kind == TS_FLAG_BOOL)
            snprintf(left, sizeof(left), "--%s", f->name);
        else
            snprintf(left, sizeof(left), "--%s %s", f->name, f->metavar ? f->metavar : "VALUE");
        format_default(f, def, sizeof(def));
        printf("  %-26s %s", left, f->help);
        if (f->required)
            printf(" (required)");
        else if (def[0] != '\0')
            printf(" [%s]", def);
        printf("\n");
    }
    printf("  %-26s %s\n", "--help", "show this help");
}

bool ts_cli_seen(const struct ts_flag *flags, int nflags, const char *name) {
    for (int i = 0; i < nflags; i++)
        if (strcmp(flags[i].name, name) == 0)
            return flags[i].seen;
    return false;
}
