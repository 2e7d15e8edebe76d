/* weights.h: the model file a run writes until sharded checkpoints exist.
 *
 * `model.bin`: a 256 x int32 header (magic 20261126, version 1, max_seq_len, vocab_size,
 * padded_vocab_size, num_layers, num_heads, channels, then 0), followed by every parameter as
 * little-endian fp32 in the parameter table's order (ts_gpt_params). The file is written to a
 * temporary name, fsync'ed and renamed, so a crash never leaves a half-written model.bin. */
#ifndef TS_WEIGHTS_H
#define TS_WEIGHTS_H

#include "trainer/gpt.h"

#define TS_WEIGHTS_MAGIC 20261126
#define TS_WEIGHTS_VERSION 1

ts_status ts_weights_save(ts_gpt_t *gpt, const char *path) TS_MUST_CHECK;
/* Reads only the header's config (to create a model of the right shape before loading). */
ts_status ts_weights_read_config(const char *path, struct ts_gpt_config *cfg) TS_MUST_CHECK;
/* Loads parameters into a model whose config must equal the file's. */
ts_status ts_weights_load(ts_gpt_t *gpt, const char *path) TS_MUST_CHECK;

#endif
