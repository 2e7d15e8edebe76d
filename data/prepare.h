/* prepare.h: text to token shards and a data manifest, streamed (what `tessera prepare` runs).
 *
 * Inputs are files, standard input ("-"), and gzip or zstd compressed either (by magic bytes).
 * As text (the default) each input is one document; with jsonl_field each line of an input is a
 * JSON object whose string field of that name is one document (blank lines skipped). With a BPE
 * tokenizer every document is preceded by <|endoftext|>, as llm.c's data scripts do; the bytes
 * tokenizer has no spare id, so its documents are simply concatenated.
 *
 * Streaming: a document is cut into segments of about TS_PREP_SEGMENT_BYTES at the places where
 * pre-splitting cannot be affected (ts_tok_safe_cut; anywhere for the bytes tokenizer), so the
 * ids equal one encode of the whole document. Segments are encoded in batches on all threads and
 * written in order; memory is a few segments per thread, whatever the corpus size. A run of more
 * than max_piece_bytes with no place to cut (/dev/zero: one pre-split chunk without end), or a
 * JSONL line longer than that, is an error naming the limit.
 *
 * The validation split needs no total: segments are numbered in stream order from 0 and segment
 * i goes to val.bin iff ceil((i+1) f) > ceil(i f) for f = val_fraction, i.e. segment 0 and then
 * one in every 1/f, spread evenly; a fraction f of the segments (and about f of the tokens). It
 * is a function of the input alone, so the same for any thread count. The rest go to
 * train_NNN.bin shards of shard_tokens each. The thread count never changes a byte of the output.
 * Shards are written under temporary names and renamed (prepare_output.h). */
#ifndef TS_DATA_PREPARE_H
#define TS_DATA_PREPARE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "kernels/status.h"

#define TS_PREP_SEGMENT_BYTES (8u << 10)
#define TS_PREP_MAX_PIECE_BYTES ((size_t)64 << 20)

struct ts_prepare_config {
    const char *tokenizer;     /* "gpt2", "bytes" or a directory from the tokenizer trainer */
    const char *const *inputs; /* num_inputs paths or globs (sorted), "-": stdin */
    int num_inputs;
    const char *out;         /* directory for train_NNN.bin, val.bin and manifest.json (made) */
    const char *jsonl_field; /* NULL: each input is one text document; else JSONL, this field */
    float val_fraction;      /* in [0, 1): the share of segments held out as val.bin */
    int64_t shard_tokens;    /* tokens per train shard, in [2, 2^31) */
    int64_t max_tokens;      /* stop after this many tokens (train + val); 0: no limit */
    size_t max_piece_bytes;  /* the longest run without a cut point, or JSONL line */
    int threads;             /* encoding threads, 0: all cores */
    bool overwrite;          /* replace a dataset already in out (else refuse) */
    bool progress;           /* a progress line (rate, ETA) on stderr about every 2 s */
};

/* gpt2, 1% val, 100M tokens per shard, no token limit, 64 MiB pieces, all cores. */
struct ts_prepare_config ts_prepare_defaults(void);

/* What a run produced, for the caller to report. */
struct ts_prepare_result {
    char tokenizer[4096]; /* the tokenizer's name: "gpt2", "bytes" or its directory */
    int vocab_size;
    int num_inputs;    /* after glob expansion */
    size_t bytes;      /* text bytes encoded (after decompression) */
    size_t raw_bytes;  /* bytes read from the inputs */
    int64_t documents; /* documents started */
    int64_t tokens;    /* the whole stream, end-of-text ids included */
    int64_t train_tokens, val_tokens;
    int num_train_shards;
    bool stopped;    /* max_tokens reached before the inputs ended */
    double encode_s; /* reading, encoding and writing (seconds, monotonic) */
};

/* Reads every input, encodes it, writes the shards and then the manifest into cfg->out. Sync;
 * the caller owns cfg and out. Fails with TS_ERR_INVALID_ARG for a bad config, a dataset already
 * in out (without overwrite) or an input too short to split, TS_ERR_FORMAT for a bad JSONL line
 * or compressed stream or a piece over the limit, naming the input, and with the tokenizer's or
 * the file system's status otherwise; a failure leaves out as it was. */
ts_status ts_data_prepare(const struct ts_prepare_config *cfg,
                          struct ts_prepare_result *out) TS_MUST_CHECK;

/* Whether segment i (counted from 0 in stream order) goes to val for fraction f. */
bool ts_prepare_is_val(int64_t i, double f);

#endif
