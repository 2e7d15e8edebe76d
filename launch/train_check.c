/* train_check.c: `tessera train --check-world N`: everything a job would check before its first
 * step, for N ranks, without joining a job, creating the model or touching a device.
 *
 * `tessera launch` runs it before it writes or submits anything, so a typo, missing data, a
 * model the layout cannot hold or a resume that cannot continue fails in a second on the login
 * node rather than after an hour in the queue. */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "data/data_manifest.h"
#include "data/mixture.h"
#include "data/shard.h"
#include "kernels/fs.h"
#include "kernels/log.h"
#include "launch/cli.h"
#include "launch/commands.h"
#include "launch/common.h"
#include "launch/resume.h"
#include "launch/settings.h"
#include "trainer/gpt.h"

static ts_status check(struct ts_train_flags *flags, int world, char *what, size_t len) {
    struct ts_train_settings *a = &flags->v;
    struct ts_start start;
    ts_ckpt_t *ck = NULL;
    ts_loader_t *train = NULL, *val = NULL;
    ts_status st;
    if (world % a->tp != 0)
        return ts_error(TS_ERR_INVALID_ARG,
                        "--tp %d does not divide the %d ranks: the world is split into groups of "
                        "--tp adjacent ranks",
                        a->tp, world);
    const int dp = world / a->tp; /* a checkpoint of any tp and dp reshards to this layout */
    TS_CHECK(ts_launch_find_start(a->out, a->resume, a->resume_from, a->init_from, a->overwrite,
                                  &start));
    if (start.kind != TS_START_FRESH) {
        TS_CHECK(ts_ckpt_open(&ck, start.path));
        st = ts_train_settings_adopt(flags, ts_ckpt_meta(ck), start.path,
                                     start.kind == TS_START_RESUME, dp);
        if (st != TS_OK)
            goto exit;
    }
    if (a->data == NULL) {
        st = ts_error(TS_ERR_INVALID_ARG,
                      "--data is required (there is no checkpoint to take it from)");
        goto exit;
    }
    a->resume = a->resume && start.kind == TS_START_RESUME;
    TS_CHECK_GOTO(ts_train_settings_check(flags), st, exit);
    struct ts_gpt_config mc = {.max_seq_len = a->max_seq_len ? a->max_seq_len : a->seq_len,
                               .vocab_size = a->vocab_size,
                               .num_layers = a->layers,
                               .num_heads = a->heads,
                               .channels = a->channels};
    TS_CHECK_GOTO(ts_gpt_config_finish(&mc), st, exit);
    if (mc.num_heads % a->tp != 0) { /* the vocabulary pads to fit tp (ts_gpt_padded_vocab) */
        st = ts_error(TS_ERR_INVALID_ARG,
                      "--tp %d must divide --heads (%d): each tensor-parallel rank holds heads/tp "
                      "heads",
                      a->tp, mc.num_heads);
        goto exit;
    }
    TS_CHECK_GOTO(ts_data_open(&train, a->data, a->seq_len, a->vocab_size), st, exit);
    if (a->val_data != NULL) {
        char pattern[TS_PATH_MAX];
        TS_CHECK_GOTO(ts_data_resolve_val(a->val_data, pattern, sizeof(pattern)), st, exit);
        TS_CHECK_GOTO(ts_loader_create(&val, pattern, a->seq_len, a->vocab_size), st, exit);
        if (ts_loader_num_windows(val) < a->batch) {
            st = ts_error(TS_ERR_INVALID_ARG,
                          "--val-data holds %" PRId64 " windows of %d tokens, fewer than one "
                          "batch of %d",
                          ts_loader_num_windows(val), a->seq_len + 1, a->batch);
            goto exit;
        }
    }
    const int64_t global = (int64_t)a->batch * a->grad_accum * dp;
    snprintf(what, len,
             "%s; %d layers x %d channels, vocab %d; global batch %" PRId64
             " = batch %d x grad-accum %d x %d data-parallel rank(s) (tp %d); %" PRId64
             " training windows",
             start.kind == TS_START_FRESH    ? "a fresh start"
             : start.kind == TS_START_RESUME ? "resumes from the run's checkpoint"
                                             : "weights from a checkpoint",
             a->layers, a->channels, a->vocab_size, global, a->batch, a->grad_accum, dp, a->tp,
             ts_loader_num_windows(train));
    st = TS_OK;
exit:
    ts_loader_destroy(val);
    ts_loader_destroy(train);
    ts_ckpt_close(ck);
    return st;
}

int ts_train_check(struct ts_train_flags *flags, int world) {
    char what[512];
    if (check(flags, world, what, sizeof(what)) != TS_OK)
        return ts_launch_fail("train", TS_EXIT_USAGE);
    fprintf(stderr, "train check: ok for %d rank(s): %s\n", world, what);
    return TS_EXIT_OK;
}
