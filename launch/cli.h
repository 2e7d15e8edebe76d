/* cli.h: a table-driven flag parser shared by every `tessera` subcommand.
 *
 * A subcommand declares its flags once (name, kind, destination, default, help); the same table
 * parses `--name value` and `--name=value`, rejects unknown flags and malformed values with one
 * line naming the flag, and prints --help. Only launch/ uses it. */
#ifndef TS_CLI_H
#define TS_CLI_H

#include <stdbool.h>
#include <stdint.h>

#include "kernels/status.h"

enum ts_flag_kind {
    TS_FLAG_INT,    /* int */
    TS_FLAG_I64,    /* int64_t */
    TS_FLAG_U64,    /* uint64_t */
    TS_FLAG_FLOAT,  /* float */
    TS_FLAG_STRING, /* const char * (points into argv) */
    TS_FLAG_BOOL,   /* bool, set by the bare flag */
    TS_FLAG_LIST,   /* struct ts_flag_list: every occurrence appends (points into argv) */
};

/* The destination of a TS_FLAG_LIST flag: caller-owned storage for up to max values. */
struct ts_flag_list {
    const char **items;
    int n, max;
};

struct ts_flag {
    const char *name; /* without the leading dashes */
    enum ts_flag_kind kind;
    void *dest;
    const char *metavar; /* shown in --help: "N", "PATH" */
    const char *help;    /* one line; the default is appended from dest's initial value */
    bool required;
    bool seen; /* set by the parser */
};

/* Exit codes every subcommand uses. `tessera train` adds three ways a run stops before its
 * end without failing, each distinct and below 64 (never 128+n, which shells give to a process
 * killed by signal n), the same on every rank. */
enum {
    TS_EXIT_OK = 0,        /* done (also reaching --stop-after) */
    TS_EXIT_FAILURE = 1,   /* something failed while running */
    TS_EXIT_USAGE = 2,     /* bad flags, bad configuration, bad or missing input */
    TS_EXIT_TIME = 3,      /* train: stopped for time (--walltime, the Slurm allocation), saved */
    TS_EXIT_PREEMPTED = 4, /* train: SIGTERM/SIGUSR1/SIGINT, checkpointed and stopped */
    TS_EXIT_DIVERGED = 5,  /* train: NaN/Inf or a loss spike; stopped without saving */
};

/* Parses argv[first..argc) into the table. Positional arguments are collected into
 * positional[0..*npositional) (at most max_positional). Returns TS_OK, or TS_ERR_INVALID_ARG with
 * ts_last_error() naming the flag. *help is set when --help/-h was given (parsing stops). */
ts_status ts_cli_parse(struct ts_flag *flags, int nflags, int argc, char **argv, int first,
                       const char **positional, int max_positional, int *npositional,
                       bool *help) TS_MUST_CHECK;

/* Prints "usage: <usage>", the description and every flag with its default to stdout. */
void ts_cli_print_help(const char *usage, const char *description, const struct ts_flag *flags,
                       int nflags);

/* Whether the flag of that name was given on the command line. */
bool ts_cli_seen(const struct ts_flag *flags, int nflags, const char *name);

#endif
