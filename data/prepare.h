/* prepare.h: text files to token shards and a data manifest (what `tessera prepare` runs).
 *
 * Each input file is one document. With a BPE tokenizer (gpt2 or a trained directory) every
 * document is preceded by <|endoftext|>, as llm.c's data scripts do, so the model always sees a
 * document boundary; the bytes tokenizer has no spare id, so its documents are simply
 * concatenated. The stream's last val_fraction of tokens goes to val.bin, the rest to
 * train_NNN.bin shards (llm.c's format). Encoding runs on several threads
 * (ts_tok_encode_parallel, identical to a serial encode); manifest.json records the tokenizer
 * and every source's size and sha256. */
#ifndef TS_DATA_PREPARE_H
#define TS_DATA_PREPARE_H

#include <stddef.h>
#include <stdint.h>

#include "kernels/status.h"

struct ts_prepare_config {
    const char *tokenizer;     /* "gpt2", "bytes" or a directory from the tokenizer trainer */
    const char *const *inputs; /* num_inputs text files, one document each ("-": stdin) */
    int num_inputs;
    const char *out;      /* directory for train_NNN.bin, val.bin and manifest.json (made) */
    float val_fraction;   /* in [0, 1): the share of the stream's tail held out as val.bin */
    int64_t shard_tokens; /* tokens per train shard, >= 2 */
    int threads;          /* encoding threads, 0: all cores */
};

/* gpt2, 1% val, 100M tokens per shard, all cores; no inputs or out. */
struct ts_prepare_config ts_prepare_defaults(void);

/* What a run produced, for the caller to report. */
struct ts_prepare_result {
    char tokenizer[4096]; /* the tokenizer's name: "gpt2", "bytes" or its directory */
    int vocab_size;
    size_t bytes;   /* input bytes read */
    int64_t tokens; /* the whole stream, end-of-text ids included */
    int64_t train_tokens, val_tokens;
    int num_train_shards;
    double encode_s; /* loading the tokenizer and encoding (seconds, monotonic) */
};

/* Reads every input, encodes it, writes the shards and then the manifest into cfg->out (val.bin
 * of an earlier run is removed when val_fraction is 0). Sync; the caller owns cfg and out.
 * Fails with TS_ERR_INVALID_ARG for a bad config or an input too short to split, and with the
 * tokenizer's or the file system's status naming the input or file otherwise. */
ts_status ts_data_prepare(const struct ts_prepare_config *cfg,
                          struct ts_prepare_result *out) TS_MUST_CHECK;

#endif
