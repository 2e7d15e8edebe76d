/* settings.h: every setting of `tessera train`, declared once in one table.
 *
 * A row says a setting's flag, type, default, limits, help, and what a run does with it: whether
 * every rank must agree on it, whether config.json and every checkpoint record it, whether a
 * resume adopts it from the checkpoint when it is not given, whether a checkpoint fixes it (the
 * model's shape: another value is refused). The flag parser, --help, the limit checks,
 * config.json, the agreement hash, the checkpoint's record and the adoption on resume all walk
 * this table (in the spirit of Redis's static_configs[]), so a new setting is one row and one
 * field. What a row cannot say (the global batch kept across layouts, --max-seq-len 0 meaning
 * --seq-len) is written out once in settings.c. */
#ifndef TS_LAUNCH_SETTINGS_H
#define TS_LAUNCH_SETTINGS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "checkpoint/ckpt.h"
#include "data/shard.h"
#include "kernels/status.h"
#include "trainer/schedule.h"

/* The values. Strings point into argv, into the table's defaults, or into the checkpoint's
 * record held by the caller (a resume). */
struct ts_train_settings {
    /* data and run directory */
    const char *data, *val_data, *out;
    bool overwrite, sync_save;
    /* the model */
    int vocab_size, layers, heads, channels, seq_len, max_seq_len;
    /* batch and schedule */
    int batch, grad_accum;
    int64_t steps, warmup; /* at most TS_MAX_STEPS (trainer/schedule.h) */
    float lr, min_lr_frac;
    const char *lr_schedule, *batch_ramp;
    float decay_frac;
    /* the optimizer */
    float weight_decay, beta1, beta2, eps, grad_clip;
    uint64_t seed;
    /* eval, logging and checkpoints */
    int64_t eval_every, log_every, ckpt_every, stop_after; /* steps */
    int eval_batches, keep_last;
    /* where and how it runs */
    const char *device, *precision, *blas;
    int threads, zero, tp;
    float bucket_mb;
    float comm_timeout; /* seconds before a stuck NCCL collective aborts the job */
    bool no_shuffle, no_overlap;
    /* what the coordinator watches */
    const char *walltime;
    float spike_z;
    int spike_window;
    bool skip_spikes;
    /* what it costs (the ledger; recorded as resolved, so a resume keeps the job's prices) */
    const char *prices;
    float price_per_gpu_hour, price_per_kwh; /* < 0: from the prices table */
    /* where it starts */
    bool resume, change_batch, change_schedule, data_changed;
    const char *resume_from, *init_from;
    int check_world; /* > 0: only check the run for this many ranks (tessera launch) */
};

enum ts_setting_type {
    TS_SET_INT,    /* int */
    TS_SET_I64,    /* int64_t: step counts */
    TS_SET_U64,    /* uint64_t */
    TS_SET_FLOAT,  /* float */
    TS_SET_STRING, /* const char * */
    TS_SET_BOOL,   /* bool, set by the bare flag */
};

/* What a run does with a setting (a row's flags). */
enum {
    TS_SET_REQUIRED = 1 << 0, /* must be given, unless a resume adopts it */
    TS_SET_AGREE = 1 << 1,    /* every rank must have the same value (checked at start) */
    TS_SET_RECORD = 1 << 2,   /* written to config.json and to every checkpoint */
    TS_SET_ADOPT = 1 << 3,    /* a resume takes the checkpoint's value when not given; a given
                                 value that differs is used, with a warning */
    TS_SET_FIXED = 1 << 4,    /* the checkpoint fixes it (resume and --init-from): a given value
                                 that differs is refused, naming the flag */
    TS_SET_MODEL = 1 << 5,    /* recorded among the checkpoint's model keys, not its train keys */
    TS_SET_SCHEDULE = 1 << 6, /* part of the schedule: a resume refuses a given value that
                                 differs from the checkpoint's unless --change-schedule */
};

struct ts_setting {
    const char *flag; /* without dashes: "grad-accum" */
    const char *key;  /* in config.json and checkpoints: "grad_accum" */
    enum ts_setting_type type;
    size_t offset;       /* of the value in struct ts_train_settings */
    const char *def;     /* the default, spelled as on the command line (NULL: none) */
    double min, max;     /* inclusive limits of a number (none when min > max) */
    const char *metavar; /* in --help: "N", "PATH" */
    const char *help;
    unsigned flags; /* TS_SET_* */
};

extern const struct ts_setting ts_train_settings_table[];
extern const int ts_train_settings_count;

/* The values with what the user gave, so adoption knows what was not given. */
struct ts_train_flags {
    struct ts_train_settings v;
    bool given[64];     /* per table row */
    char held[8][1024]; /* strings adopted from a checkpoint */
    int num_held;
    /* --data may repeat (a mixture, data/mixture.h): the values, and v.data's canonical text */
    const char *data_args[TS_LOADER_MAX_SOURCES];
    int num_data_args;
    char data_text[8192];
};

/* Fills f with the table's defaults and parses argv[first..argc): `--name value`,
 * `--name=value`, the last of a repeated flag wins, except --data: repeated, it is a mixture
 * (each PATH:WEIGHT), and v.data is its canonical text (data/mixture.h). *help is set by --help
 * (parsing stops). TS_ERR_INVALID_ARG names the flag. */
ts_status ts_train_flags_parse(struct ts_train_flags *f, int argc, char **argv, int first,
                               bool *help) TS_MUST_CHECK;
void ts_train_flags_print_help(const char *usage, const char *description);
bool ts_train_flags_given(const struct ts_train_flags *f, const char *flag);

/* Every limit of the table, then what relates settings to each other (heads divide channels,
 * --max-seq-len >= --seq-len, ...), with a message naming the flags. */
ts_status ts_train_settings_check(const struct ts_train_flags *f) TS_MUST_CHECK;

/* The LR schedule and the batch ramp the settings describe (--warmup -1: 10% of --steps),
 * checked (ts_lr_schedule_check, ts_batch_ramp_check); TS_ERR_INVALID_ARG names the flags. */
ts_status ts_train_settings_schedule(const struct ts_train_settings *s, struct ts_lr_schedule *lr,
                                     struct ts_batch_ramp *ramp) TS_MUST_CHECK;

/* "key=value\n" for every setting every rank must agree on, into buf (checked length). */
ts_status ts_train_settings_canonical(const struct ts_train_settings *s, char *buf,
                                      size_t len) TS_MUST_CHECK;

/* Every recorded setting that is not the model's as checkpoint keys, appended to kv[*n]. */
ts_status ts_train_settings_record(const struct ts_train_settings *s, struct ts_ckpt_kv *kv,
                                   int *n) TS_MUST_CHECK;

/* The "train" object of config.json: every recorded setting, with JSON escaping. */
ts_status ts_train_settings_write_json(const struct ts_train_settings *s, FILE *f) TS_MUST_CHECK;

/* What a checkpoint decides about the run's settings. Always (resume and --init-from): the
 * model's shape, refused when given otherwise. On a resume also every adoptable setting that was
 * not given, and the global batch: kept (batch x grad-accum x dp), grad-accum derived for this
 * dp size, or, when --batch was not given and the recorded micro-batch cannot keep it on dp
 * ranks, the micro-batch derived too (logged); another global batch only with --change-batch;
 * another schedule (TS_SET_SCHEDULE rows) only with --change-schedule.
 * Adopted strings are copied into f. */
ts_status ts_train_settings_adopt(struct ts_train_flags *f, const struct ts_ckpt_meta *meta,
                                  const char *ckpt_path, bool resume, int dp) TS_MUST_CHECK;

#endif
