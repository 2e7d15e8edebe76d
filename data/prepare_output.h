/* prepare_output.h: the shards of one prepare, written safely.
 *
 * Tokens stream into hidden temporary files (".train_NNN.bin.part", ".val.bin.part") that no
 * `train_*.bin` glob matches; only when every input has been read does commit remove the old
 * manifest, rename the new shards into place (a job that has an old shard mapped keeps reading
 * the old file: rename never rewrites it), remove the shards of an earlier prepare that the new
 * set does not replace, and write manifest.json last. A failed prepare removes its temporaries
 * and leaves the directory as it was. A directory that already holds a prepared dataset is
 * refused unless overwrite. */
#ifndef TS_DATA_PREPARE_OUTPUT_H
#define TS_DATA_PREPARE_OUTPUT_H

#include <stdbool.h>
#include <stdint.h>

#include "data/data_manifest.h"
#include "kernels/status.h"

typedef struct ts_prep_out ts_prep_out_t;

/* Makes dir if needed and checks it: train_*.bin, val.bin or manifest.json there already is
 * TS_ERR_INVALID_ARG naming them unless overwrite. */
ts_status ts_prep_out_create(ts_prep_out_t **out, const char *dir, int64_t shard_tokens,
                             bool overwrite) TS_MUST_CHECK;
/* Appends ids (each < 65536) to the train stream (cut into shards of shard_tokens) or to val. */
ts_status ts_prep_out_append(ts_prep_out_t *o, const int32_t *ids, int64_t n,
                             bool val) TS_MUST_CHECK;
int64_t ts_prep_out_tokens(const ts_prep_out_t *o, bool val);
/* Finishes the shards, renames them into place, removes stale shards of an earlier prepare,
 * fills m's token counts and shard list and writes dir/manifest.json. */
ts_status ts_prep_out_commit(ts_prep_out_t *o, struct ts_data_manifest *m) TS_MUST_CHECK;
/* Removes whatever temporaries are left (after a failure) and frees o; NULL is a no-op. */
void ts_prep_out_destroy(ts_prep_out_t *o);

#endif
