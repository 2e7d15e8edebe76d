/* settings.c: the table of `tessera train` settings and everything that walks it (settings.h).
 *
 * Parsing reuses the strict flag parser (cli.h) over flags generated from the rows. Values cross
 * into checkpoints and back as the text a flag would carry, so a recorded value reads back as
 * exactly the value that was used (floats with 9 significant digits). */
#include "launch/settings.h"

#include <inttypes.h>
#include <json-c/json.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "data/mixture.h"
#include "kernels/log.h"
#include "launch/cli.h"
#include "launch/walltime.h"
#include "trainer/gpt.h"

#define S(field) offsetof(struct ts_train_settings, field)
#define NOLIM 1.0, 0.0 /* min > max: no limits */
#define BIG 2147483647.0
#define STEPS ((double)TS_MAX_STEPS) /* exact in double */
#define TS_SETTING_TEXT 8192         /* a value as text: paths, a data mixture */

/* Per-launch settings (where the run starts, how many threads, the world layout) are neither
 * recorded nor adopted: a resume may run on another machine and another number of ranks. */
#define RUN (TS_SET_AGREE | TS_SET_RECORD | TS_SET_ADOPT)
#define MODEL (TS_SET_AGREE | TS_SET_RECORD | TS_SET_FIXED | TS_SET_MODEL)
#define SCHED (RUN | TS_SET_SCHEDULE)

const struct ts_setting ts_train_settings_table[] = {
    {"data", "data", TS_SET_STRING, S(data), NULL, NOLIM, "PATTERN",
     "training shards: a prepared directory, a path or a glob; repeated, a mixture of "
     "PATH:WEIGHT sources (--data web/:0.7 --data code/:0.3)",
     RUN | TS_SET_REQUIRED},
    {"val-data", "val_data", TS_SET_STRING, S(val_data), NULL, NOLIM, "PATTERN",
     "validation shards (optional; a prepared directory means its val.bin)", RUN},
    {"out", "out", TS_SET_STRING, S(out), NULL, NOLIM, "DIR", "run directory",
     TS_SET_AGREE | TS_SET_REQUIRED},
    {"overwrite", "overwrite", TS_SET_BOOL, S(overwrite), NULL, NOLIM, NULL,
     "replace a finished run in --out", 0},
    {"vocab-size", "vocab_size", TS_SET_INT, S(vocab_size), "50257", 2, TS_GPT_MAX_VOCAB, "V",
     "vocabulary size (default: the data's manifest.json, else GPT-2's 50257)", MODEL},
    {"layers", "num_layers", TS_SET_INT, S(layers), "12", 1, TS_GPT_MAX_LAYERS, "L",
     "transformer blocks", MODEL},
    {"heads", "num_heads", TS_SET_INT, S(heads), "12", 1, TS_GPT_MAX_HEADS, "NH",
     "attention heads (must divide channels)", MODEL},
    {"channels", "channels", TS_SET_INT, S(channels), "768", 1, TS_GPT_MAX_CHANNELS, "C",
     "model width", MODEL},
    {"seq-len", "seq_len", TS_SET_INT, S(seq_len), "1024", 1, TS_GPT_MAX_SEQ_LEN, "T",
     "tokens per training sequence", RUN},
    {"max-seq-len", "max_seq_len", TS_SET_INT, S(max_seq_len), "0", 0, TS_GPT_MAX_SEQ_LEN, "N",
     "positions in wpe (0: same as --seq-len)", MODEL},
    {"batch", "batch", TS_SET_INT, S(batch), "4", 1, 1 << 20, "B", "sequences per micro-step", RUN},
    {"grad-accum", "grad_accum", TS_SET_INT, S(grad_accum), "1", 1, 1 << 20, "N",
     "micro-steps per update", RUN},
    {"steps", "steps", TS_SET_I64, S(steps), "1000", 1, STEPS, "N",
     "optimizer updates (the schedule's horizon)", RUN},
    {"lr", "lr", TS_SET_FLOAT, S(lr), "6e-4", NOLIM, "LR", "peak learning rate", RUN},
    {"warmup", "warmup", TS_SET_I64, S(warmup), "-1", -1, STEPS, "N",
     "linear warmup steps (-1: 10% of --steps)", RUN},
    {"min-lr-frac", "min_lr_frac", TS_SET_FLOAT, S(min_lr_frac), "0.1", 0, 1, "F",
     "the schedule decays to this fraction of --lr", RUN},
    {"lr-schedule", "lr_schedule", TS_SET_STRING, S(lr_schedule), "cosine", NOLIM, "KIND",
     "after warmup: cosine, linear, wsd (constant, then linear decay) or constant", SCHED},
    {"decay-frac", "decay_frac", TS_SET_FLOAT, S(decay_frac), "0.2", 0, 1, "F",
     "wsd: the decay takes this fraction of --steps", SCHED},
    {"batch-ramp", "batch_ramp", TS_SET_STRING, S(batch_ramp), NULL, NOLIM, "TOKENS:DIV",
     "grow the global batch from 1/DIV to full over TOKENS (grad-accum grows; e.g. 2M:4)", SCHED},
    {"weight-decay", "weight_decay", TS_SET_FLOAT, S(weight_decay), "0.1", 0, 1e9, "W",
     "AdamW decay (matrices only)", RUN},
    {"beta1", "beta1", TS_SET_FLOAT, S(beta1), "0.9", 0, 1, "B1", "AdamW beta1", RUN},
    {"beta2", "beta2", TS_SET_FLOAT, S(beta2), "0.95", 0, 1, "B2", "AdamW beta2", RUN},
    {"eps", "eps", TS_SET_FLOAT, S(eps), "1e-8", NOLIM, "E", "AdamW epsilon", RUN},
    {"grad-clip", "grad_clip", TS_SET_FLOAT, S(grad_clip), "1", 0, 1e9, "N",
     "clip the global norm (0: off)", RUN},
    {"seed", "seed", TS_SET_U64, S(seed), "1337", NOLIM, "N", "initialisation seed", RUN},
    {"eval-every", "eval_every", TS_SET_I64, S(eval_every), "0", 0, STEPS, "N",
     "eval --val-data every N steps (0: end)", RUN},
    {"eval-batches", "eval_batches", TS_SET_INT, S(eval_batches), "8", 0, BIG, "N",
     "global batches per eval, the same windows on any layout (0: whole file)", RUN},
    {"log-every", "log_every", TS_SET_I64, S(log_every), "10", 1, STEPS, "N",
     "print progress every N steps", RUN},
    {"device", "device", TS_SET_STRING, S(device), "cpu", NOLIM, "DEV",
     "cpu, cuda or auto (the GPU if there is one)", TS_SET_AGREE | TS_SET_RECORD},
    {"precision", "precision", TS_SET_STRING, S(precision), "auto", NOLIM, "P",
     "fp32, bf16 (GPU: bf16 weights and activations, fp32 master weights) or auto", RUN},
    {"threads", "threads", TS_SET_INT, S(threads), "0", 0, 4096, "N", "CPU threads (0: all cores)",
     0},
    {"blas", "blas", TS_SET_STRING, S(blas), "auto", NOLIM, "NAME",
     "CPU matmul: auto, openblas or reference", 0},
    {"tp", "tp", TS_SET_INT, S(tp), "1", 1, 1024, "N",
     "tensor-parallel size: groups of N adjacent ranks split each layer (CPU backend; per "
     "launch: a resume may use another)",
     TS_SET_AGREE},
    {"zero", "zero", TS_SET_INT, S(zero), "0", 0, 1, "N",
     "ZeRO stage: 0, or 1 (shard AdamW state over dp)", RUN},
    {"bucket-mb", "bucket_mb", TS_SET_FLOAT, S(bucket_mb), "25", 0, 4096, "MB",
     "gradient all-reduce bucket size", RUN},
    {"no-shuffle", "no_shuffle", TS_SET_BOOL, S(no_shuffle), NULL, NOLIM, NULL,
     "read windows in file order", RUN},
    {"no-overlap", "no_overlap", TS_SET_BOOL, S(no_overlap), NULL, NOLIM, NULL,
     "reduce gradients only after backward (to measure the overlap)", TS_SET_AGREE},
    {"ckpt-every", "ckpt_every", TS_SET_I64, S(ckpt_every), "0", 0, STEPS, "N",
     "checkpoint every N steps (0: only at --stop-after and the end)", RUN},
    {"keep-last", "keep_last", TS_SET_INT, S(keep_last), "0", 0, BIG, "K",
     "keep the newest K checkpoints (0: all)", RUN},
    {"sync-save", "sync_save", TS_SET_BOOL, S(sync_save), NULL, NOLIM, NULL,
     "save checkpoints with training stopped (default: copy the state, write in the background)",
     TS_SET_AGREE},
    {"stop-after", "stop_after", TS_SET_I64, S(stop_after), "0", 0, STEPS, "N",
     "checkpoint and stop after update N; the schedule still ends at --steps (0: no)",
     TS_SET_AGREE},
    {"resume", "resume", TS_SET_BOOL, S(resume), NULL, NOLIM, NULL,
     "continue --out from its latest checkpoint (fresh when there is none)", TS_SET_AGREE},
    {"resume-from", "resume_from", TS_SET_STRING, S(resume_from), NULL, NOLIM, "PATH",
     "continue from this checkpoint (or run directory)", TS_SET_AGREE},
    {"init-from", "init_from", TS_SET_STRING, S(init_from), NULL, NOLIM, "PATH",
     "start from this checkpoint's weights only (fine-tuning)", TS_SET_AGREE},
    {"change-batch", "change_batch", TS_SET_BOOL, S(change_batch), NULL, NOLIM, NULL,
     "allow a resumed run a global batch other than the checkpoint's", TS_SET_AGREE},
    {"check-world", "check_world", TS_SET_INT, S(check_world), "0", 0, 1 << 20, "N",
     "only check flags, data, model and resume for N ranks, then exit (tessera launch)", 0},
    {"data-changed", "data_changed", TS_SET_BOOL, S(data_changed), NULL, NOLIM, NULL,
     "allow a resume on data other than the checkpoint's (the loader starts a new epoch 0)",
     TS_SET_AGREE},
    {"change-schedule", "change_schedule", TS_SET_BOOL, S(change_schedule), NULL, NOLIM, NULL,
     "allow a resumed run another --lr-schedule, --decay-frac or --batch-ramp", TS_SET_AGREE},
    {"walltime", "walltime", TS_SET_STRING, S(walltime), NULL, NOLIM, "HH:MM:SS",
     "checkpoint and stop before this much time has passed (or seconds; under Slurm also the "
     "allocation's end)",
     TS_SET_AGREE},
    {"comm-timeout", "comm_timeout", TS_SET_FLOAT, S(comm_timeout), "600", 0, 1e9, "SECONDS",
     "with NCCL: a collective not done after this long aborts the job, naming rank and "
     "operation (0: wait forever)",
     TS_SET_AGREE},
    {"spike-z", "spike_z", TS_SET_FLOAT, S(spike_z), "0", 0, 1e9, "Z",
     "stop when a loss's z-score over the recent losses exceeds Z (0: off)", RUN},
    {"spike-window", "spike_window", TS_SET_INT, S(spike_window), "100", 20, 100000, "N",
     "losses in the --spike-z window (the z-score counts from 20 on)", RUN},
    {"skip-spikes", "skip_spikes", TS_SET_BOOL, S(skip_spikes), NULL, NOLIM, NULL,
     "with --spike-z: skip a spiking update (logged) instead of stopping", RUN},
    {"prices", "prices", TS_SET_STRING, S(prices), NULL, NOLIM, "FILE",
     "price table for the ledger (default: the repository's prices.json)", RUN},
    {"price-per-gpu-hour", "price_per_gpu_hour", TS_SET_FLOAT, S(price_per_gpu_hour), "-1", -1, 1e6,
     "USD", "price of one device-hour, a CPU rank included (-1: from the price table)", RUN},
    {"price-per-kwh", "price_per_kwh", TS_SET_FLOAT, S(price_per_kwh), "-1", -1, 1e6, "USD",
     "price of a kWh of measured energy (-1: from the price table)", RUN},
};
const int ts_train_settings_count =
    (int)(sizeof(ts_train_settings_table) / sizeof(ts_train_settings_table[0]));
_Static_assert(sizeof(ts_train_settings_table) / sizeof(ts_train_settings_table[0]) <=
                   sizeof(((struct ts_train_flags *)0)->given) / sizeof(bool),
               "struct ts_train_flags.given has a slot per row");

#define ROWS ts_train_settings_table
#define NROWS ts_train_settings_count

static void *field(struct ts_train_settings *s, const struct ts_setting *row) {
    return (char *)s + row->offset;
}
static const void *cfield(const struct ts_train_settings *s, const struct ts_setting *row) {
    return (const char *)s + row->offset;
}

static size_t value_size(enum ts_setting_type t) {
    switch (t) {
    case TS_SET_INT:
        return sizeof(int);
    case TS_SET_I64:
        return sizeof(int64_t);
    case TS_SET_U64:
        return sizeof(uint64_t);
    case TS_SET_FLOAT:
        return sizeof(float);
    case TS_SET_STRING:
        return sizeof(const char *);
    case TS_SET_BOOL:
        break;
    }
    return sizeof(bool);
}

static int row_index(const char *flag) {
    for (int i = 0; i < NROWS; i++)
        if (strcmp(ROWS[i].flag, flag) == 0)
            return i;
    return -1;
}

static enum ts_flag_kind flag_kind(enum ts_setting_type t) {
    switch (t) {
    case TS_SET_INT:
        return TS_FLAG_INT;
    case TS_SET_I64:
        return TS_FLAG_I64;
    case TS_SET_U64:
        return TS_FLAG_U64;
    case TS_SET_FLOAT:
        return TS_FLAG_FLOAT;
    case TS_SET_STRING:
        return TS_FLAG_STRING;
    case TS_SET_BOOL:
        break;
    }
    return TS_FLAG_BOOL;
}

/* The parser's flags over the values in s. */
static void make_flags(struct ts_flag *flags, struct ts_train_settings *s) {
    for (int i = 0; i < NROWS; i++)
        flags[i] = (struct ts_flag){.name = ROWS[i].flag,
                                    .kind = flag_kind(ROWS[i].type),
                                    .dest = field(s, &ROWS[i]),
                                    .metavar = ROWS[i].metavar,
                                    .help = ROWS[i].help};
}

/* The value as a flag would spell it ("" for an absent string; "1"/"0" for a bool). */
static void format_value(const struct ts_train_settings *s, const struct ts_setting *row, char *buf,
                         size_t len) {
    const void *p = cfield(s, row);
    switch (row->type) {
    case TS_SET_INT:
        snprintf(buf, len, "%d", *(const int *)p);
        return;
    case TS_SET_I64:
        snprintf(buf, len, "%" PRId64, *(const int64_t *)p);
        return;
    case TS_SET_U64:
        snprintf(buf, len, "%" PRIu64, *(const uint64_t *)p);
        return;
    case TS_SET_FLOAT:
        snprintf(buf, len, "%.9g", (double)*(const float *)p);
        return;
    case TS_SET_STRING: {
        const char *v = *(const char *const *)p;
        snprintf(buf, len, "%s", v ? v : "");
        return;
    }
    case TS_SET_BOOL:
        snprintf(buf, len, "%d", *(const bool *)p ? 1 : 0);
        return;
    }
}

/* Sets the value from a flag's spelling, strictly (the same parser as the command line). */
static ts_status parse_into(struct ts_train_settings *s, const struct ts_setting *row,
                            const char *text) {
    if (row->type == TS_SET_BOOL) {
        if (strcmp(text, "0") != 0 && strcmp(text, "1") != 0)
            return ts_error(TS_ERR_FORMAT, "%s is '%s', not 0 or 1", row->key, text);
        *(bool *)field(s, row) = text[0] == '1';
        return TS_OK;
    }
    if (row->type == TS_SET_STRING) {
        *(const char **)field(s, row) = text[0] != '\0' ? text : NULL;
        return TS_OK;
    }
    struct ts_flag f = {.name = row->flag, .kind = flag_kind(row->type), .dest = field(s, row)};
    char *argv[] = {"", "", (char *)text};
    char flag[80];
    snprintf(flag, sizeof(flag), "--%s", row->flag);
    argv[1] = flag;
    const char *pos[1];
    int npos;
    bool help;
    return ts_cli_parse(&f, 1, 3, argv, 1, pos, 0, &npos, &help);
}

static bool same_value(const struct ts_train_settings *a, const struct ts_train_settings *b,
                       const struct ts_setting *row) {
    char x[TS_SETTING_TEXT], y[TS_SETTING_TEXT];
    format_value(a, row, x, sizeof(x));
    format_value(b, row, y, sizeof(y));
    return strcmp(x, y) == 0;
}

/* A step count beyond 64 bits fails in the flag parser, which names the int64 range; the limit a
 * user can reach is the table's, so say that one (as check_limits does below it). */
static ts_status steps_range_error(ts_status st) {
    const char *e = ts_last_error();
    for (int i = 0; i < NROWS; i++) {
        const size_t n = strlen(ROWS[i].flag);
        if (ROWS[i].max != STEPS || strncmp(e, "--", 2) != 0 ||
            strncmp(e + 2, ROWS[i].flag, n) != 0 || strncmp(e + 2 + n, " must be in [", 13) != 0)
            continue;
        const char *got = strstr(e, "], got ");
        char text[64];
        snprintf(text, sizeof(text), "%s", got ? got + 7 : "?");
        if (text[0] == '-')
            return ts_error(TS_ERR_INVALID_ARG, "--%s must be >= %.0f, got %s", ROWS[i].flag,
                            ROWS[i].min, text);
        return ts_error(TS_ERR_INVALID_ARG,
                        "--%s must be at most %lld steps (10^12, the most a run counts), got %s",
                        ROWS[i].flag, TS_MAX_STEPS, text);
    }
    return st;
}

static void set_defaults(struct ts_train_settings *s) {
    memset(s, 0, sizeof(*s));
    for (int i = 0; i < NROWS; i++)
        if (ROWS[i].def != NULL && parse_into(s, &ROWS[i], ROWS[i].def) != TS_OK)
            TS_LOG_E("internal: the default of --%s does not parse", ROWS[i].flag);
}

ts_status ts_train_flags_parse(struct ts_train_flags *f, int argc, char **argv, int first,
                               bool *help) {
    memset(f, 0, sizeof(*f));
    set_defaults(&f->v);
    struct ts_flag flags[sizeof(f->given) / sizeof(f->given[0])];
    make_flags(flags, &f->v);
    /* --data accumulates: one value is a path, several a mixture */
    const int data_row = row_index("data");
    struct ts_flag_list data = {f->data_args, 0, TS_LOADER_MAX_SOURCES};
    flags[data_row].kind = TS_FLAG_LIST;
    flags[data_row].dest = &data;
    const char *pos[1];
    int npos = 0;
    ts_status st = ts_cli_parse(flags, NROWS, argc, argv, first, pos, 0, &npos, help);
    if (st != TS_OK)
        return steps_range_error(st);
    for (int i = 0; i < NROWS; i++)
        f->given[i] = flags[i].seen;
    f->num_data_args = data.n;
    if (data.n > 0 && !*help) {
        TS_CHECK(ts_data_mix_from_args(f->data_args, data.n, f->data_text, sizeof(f->data_text)));
        f->v.data = f->data_text;
    }
    return TS_OK;
}

void ts_train_flags_print_help(const char *usage, const char *description) {
    struct ts_train_settings defaults;
    set_defaults(&defaults);
    struct ts_flag flags[64];
    make_flags(flags, &defaults);
    for (int i = 0; i < NROWS; i++)
        flags[i].required = (ROWS[i].flags & TS_SET_REQUIRED) != 0;
    ts_cli_print_help(usage, description, flags, NROWS);
}

bool ts_train_flags_given(const struct ts_train_flags *f, const char *flag) {
    const int i = row_index(flag);
    return i >= 0 && f->given[i];
}

/* ---- checks ---- */

static ts_status check_limits(const struct ts_train_settings *s, const struct ts_setting *row) {
    if (row->min > row->max || row->type == TS_SET_U64 || row->type == TS_SET_STRING ||
        row->type == TS_SET_BOOL)
        return TS_OK;
    const void *p = cfield(s, row);
    const double v = row->type == TS_SET_INT   ? (double)*(const int *)p
                     : row->type == TS_SET_I64 ? (double)*(const int64_t *)p
                                               : (double)*(const float *)p;
    if (v >= row->min && v <= row->max)
        return TS_OK;
    char got[64];
    format_value(s, row, got, sizeof(got));
    if (row->min == 1 && v < 1)
        return ts_error(TS_ERR_INVALID_ARG, "--%s must be positive, got %s", row->flag, got);
    if (v < row->min)
        return ts_error(TS_ERR_INVALID_ARG, "--%s must be >= %g, got %s", row->flag, row->min, got);
    if (row->max == STEPS)
        return ts_error(TS_ERR_INVALID_ARG,
                        "--%s must be at most %lld steps (10^12, the most a run counts), got %s",
                        row->flag, TS_MAX_STEPS, got);
    return ts_error(TS_ERR_INVALID_ARG, "--%s must be at most %.10g, got %s", row->flag, row->max,
                    got);
}

/* The message of the call that failed, copied out (ts_error formats into the same buffer). */
static ts_status flag_error(const char *fmt, const char *a, const char *b) {
    char why[512];
    snprintf(why, sizeof(why), "%s", ts_last_error());
    char what[256];
    snprintf(what, sizeof(what), fmt, a, b);
    return ts_error(TS_ERR_INVALID_ARG, "%s: %s", what, why);
}

ts_status ts_train_settings_schedule(const struct ts_train_settings *a, struct ts_lr_schedule *lr,
                                     struct ts_batch_ramp *ramp) {
    *lr = (struct ts_lr_schedule){.max_lr = a->lr,
                                  .warmup = a->warmup >= 0 ? a->warmup : a->steps / 10,
                                  .total = a->steps,
                                  .min_lr_frac = a->min_lr_frac,
                                  .decay_frac = a->decay_frac};
    *ramp = (struct ts_batch_ramp){0};
    if (ts_lr_kind_parse(a->lr_schedule, &lr->kind) != TS_OK)
        return flag_error("--lr-schedule %s%s", a->lr_schedule, "");
    if (ts_lr_schedule_check(lr) != TS_OK)
        return flag_error("--lr-schedule %s with --warmup, --steps, --min-lr-frac%s",
                          a->lr_schedule, lr->kind == TS_LR_WSD ? ", --decay-frac" : "");
    if (a->batch_ramp == NULL)
        return TS_OK;
    if (ts_batch_ramp_parse(a->batch_ramp, ramp) != TS_OK ||
        ts_batch_ramp_check(ramp, a->grad_accum) != TS_OK)
        return flag_error("--batch-ramp %s%s", a->batch_ramp, "");
    return TS_OK;
}

static ts_status check_schedule(const struct ts_train_settings *a) {
    struct ts_lr_schedule lr;
    struct ts_batch_ramp ramp;
    return ts_train_settings_schedule(a, &lr, &ramp);
}

ts_status ts_train_settings_check(const struct ts_train_flags *f) {
    const struct ts_train_settings *a = &f->v;
    const bool resuming = a->resume || a->resume_from != NULL;
    for (int i = 0; i < NROWS; i++) {
        const struct ts_setting *row = &ROWS[i];
        /* a resume may take a required setting from the checkpoint */
        if ((row->flags & TS_SET_REQUIRED) && *(const char *const *)cfield(a, row) == NULL &&
            !(resuming && (row->flags & TS_SET_ADOPT)))
            return ts_error(TS_ERR_INVALID_ARG, "--%s is required", row->flag);
        TS_CHECK(check_limits(a, row));
    }
    if (a->channels % a->heads != 0)
        return ts_error(TS_ERR_INVALID_ARG, "--heads %d does not divide --channels %d", a->heads,
                        a->channels);
    if (a->eval_every > 0 && a->val_data == NULL)
        return ts_error(TS_ERR_INVALID_ARG,
                        "--eval-every %" PRId64
                        " needs --val-data (there is nothing to evaluate on)",
                        a->eval_every);
    if (a->max_seq_len != 0 && a->max_seq_len < a->seq_len)
        return ts_error(TS_ERR_INVALID_ARG, "--max-seq-len %d is shorter than --seq-len %d",
                        a->max_seq_len, a->seq_len);
    if (!(a->lr > 0.0f))
        return ts_error(TS_ERR_INVALID_ARG, "--lr must be positive, got %g", (double)a->lr);
    if (!(a->eps > 0.0f))
        return ts_error(TS_ERR_INVALID_ARG, "--eps must be positive, got %g", (double)a->eps);
    if (a->beta1 >= 1.0f || a->beta2 >= 1.0f)
        return ts_error(TS_ERR_INVALID_ARG, "--beta1 and --beta2 must be in [0, 1)");
    if (!(a->bucket_mb > 0.0f))
        return ts_error(TS_ERR_INVALID_ARG, "--bucket-mb must be in (0, 4096], got %g",
                        (double)a->bucket_mb);
    if (check_schedule(a) != TS_OK) {
        /* a resume adopts the checkpoint's warmup as it ran (10% of the old --steps): say so when
         * that, not a flag given here, is what no longer fits */
        if (!resuming || ts_train_flags_given(f, "warmup") || a->warmup <= a->steps)
            return TS_ERR_INVALID_ARG;
        char why[512];
        snprintf(why, sizeof(why), "%s", ts_last_error());
        return ts_error(TS_ERR_INVALID_ARG,
                        "%s (the warmup of %" PRId64
                        " steps comes from the checkpoint; give --warmup with the new --steps)",
                        why, a->warmup);
    }
    if (a->walltime != NULL) {
        double w;
        TS_CHECK(ts_walltime_parse(a->walltime, &w));
    }
    if (a->skip_spikes && !(a->spike_z > 0.0f))
        return ts_error(TS_ERR_INVALID_ARG, "--skip-spikes needs --spike-z Z (Z > 0)");
    if (strcmp(a->precision, "auto") != 0 && strcmp(a->precision, "fp32") != 0 &&
        strcmp(a->precision, "bf16") != 0)
        return ts_error(TS_ERR_INVALID_ARG, "--precision must be fp32, bf16 or auto, got '%s'",
                        a->precision);
    return TS_OK;
}

/* ---- what other ranks, config.json and checkpoints see ---- */

ts_status ts_train_settings_canonical(const struct ts_train_settings *s, char *buf, size_t len) {
    size_t at = 0;
    buf[0] = '\0';
    for (int i = 0; i < NROWS; i++) {
        if (!(ROWS[i].flags & TS_SET_AGREE))
            continue;
        char v[TS_SETTING_TEXT];
        format_value(s, &ROWS[i], v, sizeof(v));
        const int n = snprintf(buf + at, len - at, "%s=%s\n", ROWS[i].flag, v);
        if (n < 0 || (size_t)n >= len - at)
            return ts_error(TS_ERR_INVALID_ARG,
                            "the settings do not fit the agreement check's %zu bytes (a path "
                            "too long?)",
                            len);
        at += (size_t)n;
    }
    return TS_OK;
}

ts_status ts_train_settings_record(const struct ts_train_settings *s, struct ts_ckpt_kv *kv,
                                   int *n) {
    for (int i = 0; i < NROWS; i++) {
        if (!(ROWS[i].flags & TS_SET_RECORD) || (ROWS[i].flags & TS_SET_MODEL))
            continue;
        char v[TS_SETTING_TEXT];
        format_value(s, &ROWS[i], v, sizeof(v));
        if (strlen(v) >= sizeof(kv[0].value))
            return ts_error(TS_ERR_INVALID_ARG,
                            "--%s is %zu bytes long; a checkpoint records at most %zu",
                            ROWS[i].flag, strlen(v), sizeof(kv[0].value) - 1);
        TS_CHECK(ts_ckpt_kv_add(kv, n, ROWS[i].key, "%s", v));
    }
    return TS_OK;
}

static struct json_object *json_value(const struct ts_train_settings *s,
                                      const struct ts_setting *row) {
    const void *p = cfield(s, row);
    char text[64];
    switch (row->type) {
    case TS_SET_INT:
        return json_object_new_int(*(const int *)p);
    case TS_SET_I64:
        return json_object_new_int64(*(const int64_t *)p);
    case TS_SET_U64:
        return json_object_new_uint64(*(const uint64_t *)p);
    case TS_SET_FLOAT:
        format_value(s, row, text, sizeof(text));
        return json_object_new_double_s((double)*(const float *)p, text);
    case TS_SET_STRING: {
        const char *v = *(const char *const *)p;
        return v ? json_object_new_string(v) : NULL;
    }
    case TS_SET_BOOL:
        break;
    }
    return json_object_new_boolean(*(const bool *)p);
}

ts_status ts_train_settings_write_json(const struct ts_train_settings *s, FILE *f) {
    struct json_object *o = json_object_new_object();
    if (o == NULL)
        return ts_error(TS_ERR_OOM, "config.json: out of memory");
    for (int i = 0; i < NROWS; i++)
        if ((ROWS[i].flags & TS_SET_RECORD) && !(ROWS[i].flags & TS_SET_MODEL))
            json_object_object_add(o, ROWS[i].key, json_value(s, &ROWS[i]));
    const char *text = json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN);
    const int n = fputs(text, f);
    json_object_put(o);
    return n < 0 ? ts_error(TS_ERR_IO, "cannot write config.json") : TS_OK;
}

/* ---- adoption on resume ---- */

/* Rows the global-batch logic below handles, not the generic walk. */
static bool shape_row(const struct ts_setting *row) {
    return strcmp(row->flag, "seq-len") == 0 || strcmp(row->flag, "max-seq-len") == 0 ||
           strcmp(row->flag, "batch") == 0 || strcmp(row->flag, "grad-accum") == 0;
}

static const char *recorded(const struct ts_ckpt_meta *m, const struct ts_setting *row) {
    return (row->flags & TS_SET_MODEL) ? ts_ckpt_kv_get(m->model, m->num_model, row->key)
                                       : ts_ckpt_kv_get(m->train, m->num_train, row->key);
}

/* The checkpoint's value of row into *into, or a message naming the key. */
static ts_status read_recorded(const struct ts_setting *row, const char *text,
                               struct ts_train_settings *into, const char *ckpt) {
    const ts_status st = parse_into(into, row, text);
    if (st != TS_OK)
        return ts_error(TS_ERR_FORMAT,
                        "checkpoint %s records %s = '%s', which does not read as "
                        "--%s",
                        ckpt, row->key, text, row->flag);
    return TS_OK;
}

static ts_status adopt_row(struct ts_train_flags *f, const struct ts_setting *row, const char *text,
                           const char *ckpt, bool resume) {
    struct ts_train_settings theirs = f->v;
    TS_CHECK(read_recorded(row, text, &theirs, ckpt));
    const int i = (int)(row - ROWS);
    if (same_value(&theirs, &f->v, row))
        return TS_OK;
    char mine[TS_SETTING_TEXT], saved[TS_SETTING_TEXT];
    format_value(&f->v, row, mine, sizeof(mine));
    format_value(&theirs, row, saved, sizeof(saved));
    if ((row->flags & TS_SET_SCHEDULE) && resume && f->given[i] && !f->v.change_schedule)
        return ts_error(TS_ERR_INVALID_ARG,
                        "--%s %s differs from the checkpoint's %s %s (%s): the run would not "
                        "continue its schedule; pass --change-schedule to change it",
                        row->flag, mine[0] ? mine : "(none)", row->key, saved[0] ? saved : "(none)",
                        ckpt);
    if (row->flags & TS_SET_FIXED) {
        if (f->given[i])
            return ts_error(TS_ERR_INVALID_ARG,
                            "--%s %s differs from the checkpoint's %s %s (%s): a resumed or "
                            "initialised run keeps the model; drop the flag or start a new run",
                            row->flag, mine, row->key, saved, ckpt);
    } else if (!resume || !(row->flags & TS_SET_ADOPT)) {
        return TS_OK;
    } else if (f->given[i]) {
        TS_LOG_W("--%s %s replaces the checkpoint's %s: the continuation will differ from an "
                 "uninterrupted run",
                 row->flag, mine, saved);
        return TS_OK;
    }
    if (row->type == TS_SET_STRING && saved[0] != '\0') {
        /* the checkpoint's record is closed before the run ends: keep a copy */
        if (f->num_held >= (int)(sizeof(f->held) / sizeof(f->held[0])))
            return ts_error(TS_ERR_INTERNAL, "settings: too many adopted strings");
        if (strlen(saved) >= sizeof(f->held[0])) /* a record holds less: never here */
            return ts_error(TS_ERR_INTERNAL, "settings: an adopted %s is too long", row->key);
        memcpy(f->held[f->num_held], saved, strlen(saved) + 1);
        *(const char **)field(&f->v, row) = f->held[f->num_held++];
        return TS_OK;
    }
    memcpy(field(&f->v, row), field(&theirs, row), value_size(row->type));
    return TS_OK;
}

static int int_of(const struct ts_ckpt_kv *kv, int n, const char *key, int fallback) {
    const char *v = ts_ckpt_kv_get(kv, n, key);
    char *end = NULL;
    const long x = v ? strtol(v, &end, 10) : fallback;
    return v && *end == '\0' && x >= INT_MIN && x <= INT_MAX ? (int)x : fallback;
}

/* The sequence length, the positions and the global batch: what the rows cannot say. */
static ts_status adopt_shape(struct ts_train_flags *f, const struct ts_ckpt_meta *m,
                             const char *ckpt, bool resume, int dp) {
    struct ts_train_settings *a = &f->v;
#define GIVEN(flag) ts_train_flags_given(f, flag)
    const int seq = int_of(m->train, m->num_train, "seq_len", a->seq_len);
    /* --max-seq-len 0 means --seq-len: compare what the model would get */
    if (!GIVEN("max-seq-len") && !GIVEN("seq-len"))
        a->seq_len = seq;
    if (resume && GIVEN("seq-len") && a->seq_len != seq && !a->change_batch)
        return ts_error(TS_ERR_INVALID_ARG,
                        "--seq-len %d differs from the checkpoint's seq_len %d (%s): it changes "
                        "the tokens per step; pass --change-batch to change it",
                        a->seq_len, seq, ckpt);
    const int saved_max = int_of(m->model, m->num_model, "max_seq_len", -1);
    const int max_seq = a->max_seq_len ? a->max_seq_len : a->seq_len;
    if (saved_max > 0 && max_seq != saved_max) {
        if (GIVEN("max-seq-len"))
            return ts_error(TS_ERR_INVALID_ARG,
                            "--max-seq-len %d differs from the checkpoint's max_seq_len %d (%s): "
                            "a resumed or initialised run keeps the model; drop the flag or "
                            "start a new run",
                            max_seq, saved_max, ckpt);
    }
    if (saved_max > 0)
        a->max_seq_len = saved_max;
    if (!resume)
        return TS_OK;

    const int saved_batch = int_of(m->train, m->num_train, "batch", a->batch);
    const int saved_accum = int_of(m->train, m->num_train, "grad_accum", a->grad_accum);
    if (!GIVEN("batch"))
        a->batch = saved_batch;
    if (a->change_batch) {
        if (!GIVEN("grad-accum"))
            a->grad_accum = saved_accum;
        return TS_OK;
    }
    const int64_t G = m->global_batch;
    if (GIVEN("grad-accum")) {
        const int64_t mine = (int64_t)a->batch * a->grad_accum * dp;
        if (mine != G)
            return ts_error(TS_ERR_INVALID_ARG,
                            "--batch %d x --grad-accum %d x %d data-parallel rank(s) = %" PRId64
                            " sequences per step, but %s was trained with a global batch of "
                            "%" PRId64 "; pass --change-batch to change it",
                            a->batch, a->grad_accum, dp, mine, ckpt, G);
        return TS_OK;
    }
    if (G > 0 && G % ((int64_t)a->batch * dp) == 0) {
        a->grad_accum = (int)(G / ((int64_t)a->batch * dp));
        return TS_OK;
    }
    if (G <= 0 || G % dp != 0 || GIVEN("batch"))
        return ts_error(TS_ERR_INVALID_ARG,
                        "%s was trained with a global batch of %" PRId64
                        " sequences, which --batch %d x %d data-parallel rank(s) does not "
                        "divide; choose another --batch, or pass --change-batch",
                        ckpt, G, a->batch, dp);
    /* Another dp size: the largest micro-batch up to the recorded one that keeps the global
     * batch (a per-rank share of G / dp sequences always divides by 1). */
    const int64_t share = G / dp;
    int b = a->batch;
    while (b > 1 && share % b != 0)
        b--;
    TS_LOG_I("resume: the global batch of %" PRId64 " on %d data-parallel rank(s) needs another "
             "micro-batch: --batch %d x --grad-accum %" PRId64 " (the checkpoint had %d x %d)",
             G, dp, b, share / b, saved_batch, saved_accum);
    a->batch = b;
    a->grad_accum = (int)(share / b);
#undef GIVEN
    return TS_OK;
}

ts_status ts_train_settings_adopt(struct ts_train_flags *f, const struct ts_ckpt_meta *meta,
                                  const char *ckpt_path, bool resume, int dp) {
    for (int i = 0; i < NROWS; i++) {
        const struct ts_setting *row = &ROWS[i];
        if (shape_row(row) || !(row->flags & (TS_SET_FIXED | TS_SET_ADOPT)))
            continue;
        const char *text = recorded(meta, row);
        /* checkpoints of earlier versions recorded "shuffle", the inverse of --no-shuffle */
        if (text == NULL && strcmp(row->flag, "no-shuffle") == 0) {
            const char *shuffle = ts_ckpt_kv_get(meta->train, meta->num_train, "shuffle");
            text = shuffle == NULL ? NULL : strcmp(shuffle, "0") == 0 ? "1" : "0";
        }
        if (text != NULL)
            TS_CHECK(adopt_row(f, row, text, ckpt_path, resume));
    }
    return adopt_shape(f, meta, ckpt_path, resume, dp);
}
