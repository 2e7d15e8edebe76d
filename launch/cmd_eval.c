/* cmd_eval.c: `tessera eval`, the mean cross-entropy of a trained model on a token file.
 *
 * --ckpt takes a run directory (its latest checkpoint), a checkpoint directory, or, for runs of
 * earlier versions, a run directory holding model.bin or that file. Reads consecutive windows
 * from the start of the data, so the same file and flags give the same number every time; a
 * directory from `tessera prepare` means its val.bin. With
 * --json the output ends with one JSON line whose "loss" is the mean cross-entropy in nats per
 * token. */
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "data/data_manifest.h"
#include "kernels/log.h"
#include "launch/cli.h"
#include "launch/commands.h"
#include "launch/common.h"
#include "launch/resume.h"
#include "trainer/state.h"
#include "trainer/train.h"
#include "trainer/weights.h"

struct eval_args {
    const char *ckpt, *data, *device, *blas;
    int batch, seq_len, batches, threads;
    bool json;
};

#define NFLAGS 9

static int eval(const struct eval_args *a) {
    struct ts_backend *be = NULL;
    ts_loader_t *loader = NULL;
    ts_gpt_t *gpt = NULL;
    struct ts_launch_weights w = {0};
    int code = TS_EXIT_USAGE;
    ts_status st;
    struct ts_gpt_config cfg;

    /* a checkpoint where there is one; model.bin of earlier runs otherwise */
    TS_CHECK_GOTO(ts_launch_weights_open(&w, a->ckpt, &cfg), st, fail);
    int T = a->seq_len > 0 ? a->seq_len : cfg.max_seq_len;
    if (T > cfg.max_seq_len) {
        ts_error(TS_ERR_INVALID_ARG, "--seq-len %d exceeds the model's %d positions", T,
                 cfg.max_seq_len);
        goto fail;
    }
    TS_CHECK_GOTO(ts_data_manifest_vocab(a->data, true, true, &cfg.vocab_size), st, fail);
    char pattern[TS_PATH_MAX];
    TS_CHECK_GOTO(ts_data_resolve_val(a->data, pattern, sizeof(pattern)), st, fail);
    TS_CHECK_GOTO(ts_launch_backend(&be, a->device, a->blas, a->threads), st, fail);
    TS_CHECK_GOTO(ts_loader_create(&loader, pattern, T, cfg.vocab_size), st, fail);
    int64_t windows = ts_loader_num_windows(loader);
    int64_t need = (int64_t)a->batch * (a->batches > 0 ? a->batches : 1);
    if (windows < need) {
        ts_error(TS_ERR_INVALID_ARG,
                 "%s holds %" PRId64
                 " windows of %d tokens; --batches %d x --batch %d needs %" PRId64,
                 a->data, windows, T + 1, a->batches, a->batch, need);
        goto fail;
    }
    TS_CHECK_GOTO(ts_gpt_create(&gpt, &cfg, be, a->batch, T), st, fail);
    TS_CHECK_GOTO(ts_launch_weights_load(&w, gpt), st, fail);

    code = TS_EXIT_FAILURE;
    double loss = 0.0;
    int64_t tokens = 0;
    double t0 = ts_launch_now_s();
    TS_CHECK_GOTO(ts_eval_loss(gpt, loader, NULL, a->batch, a->batches, &loss, &tokens), st, fail);
    int batches = (int)(tokens / ((int64_t)a->batch * T));
    printf("eval: loss %.6f nats/token (perplexity %.2f) over %" PRId64
           " tokens, %d batches of %d x %d, %.2f s\n",
           loss, exp(loss), tokens, batches, a->batch, T, ts_launch_now_s() - t0);
    if (a->json)
        printf("{\"loss\":%.17g,\"perplexity\":%.17g,\"tokens\":%" PRId64
               ",\"batches\":%d,\"batch\":%d,\"seq_len\":%d}\n",
               loss, exp(loss), tokens, batches, a->batch, T);
    ts_launch_weights_close(&w);
    ts_gpt_destroy(gpt);
    ts_loader_destroy(loader);
    ts_backend_destroy(be);
    return TS_EXIT_OK;
fail:
    (void)st;
    ts_launch_fail("eval", code);
    ts_launch_weights_close(&w);
    ts_gpt_destroy(gpt);
    ts_loader_destroy(loader);
    ts_backend_destroy(be);
    return code;
}

int ts_cmd_eval(int argc, char **argv) {
    struct eval_args a = {.device = "cpu", .blas = "auto", .batch = 4, .batches = 8};
    struct ts_flag flags[NFLAGS] = {
        {"ckpt", TS_FLAG_STRING, &a.ckpt, "PATH", "a run or checkpoint directory (or a model.bin)",
         true},
        {"data", TS_FLAG_STRING, &a.data, "PATTERN",
         "token shards to evaluate on: a path, a glob, or a prepared directory (its val.bin)",
         true},
        {"batch", TS_FLAG_INT, &a.batch, "B", "sequences per batch"},
        {"seq-len", TS_FLAG_INT, &a.seq_len, "T", "tokens per sequence (0: the model's maximum)"},
        {"batches", TS_FLAG_INT, &a.batches, "N", "batches to average (0: the whole file)"},
        {"json", TS_FLAG_BOOL, &a.json, NULL, "end with a JSON line {\"loss\": ...}"},
        {"device", TS_FLAG_STRING, &a.device, "DEV", "cpu, cuda or auto"},
        {"threads", TS_FLAG_INT, &a.threads, "N", "CPU threads (0: all cores)"},
        {"blas", TS_FLAG_STRING, &a.blas, "NAME", "CPU matmul: auto, openblas or reference"},
    };
    const char *pos[1];
    int npos = 0;
    bool help = false;
    if (ts_cli_parse(flags, NFLAGS, argc, argv, 2, pos, 0, &npos, &help) != TS_OK)
        return ts_launch_fail("eval", TS_EXIT_USAGE);
    if (help) {
        ts_cli_print_help("tessera eval --ckpt PATH --data PATTERN [flags]",
                          "Mean cross-entropy (nats per token) of a trained model over consecutive "
                          "windows\nread from the start of the data.",
                          flags, NFLAGS);
        return TS_EXIT_OK;
    }
    if (a.batch <= 0 || a.batches < 0 || a.seq_len < 0) {
        ts_error(TS_ERR_INVALID_ARG, "--batch must be positive, --batches and --seq-len >= 0");
        return ts_launch_fail("eval", TS_EXIT_USAGE);
    }
    return eval(&a);
}
