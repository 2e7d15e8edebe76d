/* mixture.h: what `--data` names for training: one dataset, or a weighted mixture of several.
 *
 * On the command line a mixture is `--data` repeated, each `PATH:WEIGHT` (`--data web/:0.7
 * --data code/:0.3`): the weight follows the LAST ':' and is a plain decimal number > 0. A single
 * `--data` is always a path, whatever it contains (a path with ':' works as before); a mixture
 * source may contain ':' too, since only the last one splits. Weights are relative (7 and 3 are
 * 0.7 and 0.3).
 *
 * A run records the mixture as one text, "PATH:WEIGHT" lines joined by '\n' with the weights
 * written "%.9g" (the canonical text): a single dataset's text has no '\n', so the two never
 * read as each other. The loader is built from that text, fresh or resumed, so a resumed run
 * draws with exactly the weights the first one did. */
#ifndef TS_DATA_MIXTURE_H
#define TS_DATA_MIXTURE_H

#include <stdbool.h>
#include <stddef.h>

#include "data/shard.h"
#include "kernels/status.h"

struct ts_data_mix {
    int n;                             /* 1 for a single dataset (weight 1) */
    char *path[TS_LOADER_MAX_SOURCES]; /* owned */
    double weight[TS_LOADER_MAX_SOURCES];
};

/* Whether a --data text (canonical) names a mixture. */
bool ts_data_is_mix(const char *data);

/* The canonical text of the repeated --data values args[0..n): args[0] itself when n == 1,
 * else each split at its last ':' and checked (TS_ERR_INVALID_ARG naming the value: no weight,
 * a weight that is not a number or not > 0, an empty path, a '\n' in a path, too many). */
ts_status ts_data_mix_from_args(const char *const *args, int n, char *text,
                                size_t len) TS_MUST_CHECK;

/* Reads a canonical text (a single path gives n = 1) into an empty m; _deinit frees it. */
ts_status ts_data_mix_parse(const char *text, struct ts_data_mix *m) TS_MUST_CHECK;
void ts_data_mix_deinit(struct ts_data_mix *m);
/* The canonical text of m (a single path as it is). */
ts_status ts_data_mix_format(const struct ts_data_mix *m, char *text, size_t len) TS_MUST_CHECK;

/* Each source as the loader's glob (ts_data_resolve: a prepared directory checked against its
 * manifest), in place. */
ts_status ts_data_mix_resolve(struct ts_data_mix *m) TS_MUST_CHECK;

/* The training loader for a --data text: a plain loader for one dataset, a mixture loader for
 * several; every source resolved and checked against its manifest first. */
ts_status ts_data_open(ts_loader_t **out, const char *data, int T, int vocab_size) TS_MUST_CHECK;

/* ts_data_manifest_vocab for a --data text: every source's manifest must agree on the
 * vocabulary (size and hash), else TS_ERR_INVALID_ARG naming the two sources. */
ts_status ts_data_vocab(const char *data, bool given, bool exact, int *vocab_size) TS_MUST_CHECK;

#endif
