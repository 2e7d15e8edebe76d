/* data_manifest.h: manifest.json beside a directory of token shards: which tokenizer made them
 * (name, vocabulary size, end-of-text id, vocabulary hash), how many tokens went to train and
 * val, and every source file with its size and sha256, the start of data lineage.
 *
 * `tessera prepare` writes it; `train` and `eval` read the vocabulary size from it, so a model
 * of a trained 4096-token tokenizer needs no --vocab-size; shards without one still work. */
#ifndef TS_DATA_MANIFEST_H
#define TS_DATA_MANIFEST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "data/sha256.h"
#include "kernels/status.h"

#define TS_DATA_MANIFEST_NAME "manifest.json"
#define TS_DATA_MANIFEST_VERSION 2 /* 2 adds "shards" and "val_split"; 1 is still read */

struct ts_data_source {
    char *path; /* as given to prepare (owned) */
    int64_t bytes;
    char sha256[TS_SHA256_HEX];
};

/* One train shard as prepare wrote it: its name in the manifest's directory and token count. */
struct ts_data_shard {
    char name[256];
    int64_t tokens;
};

struct ts_data_manifest {
    char tokenizer[4096]; /* "gpt2", "bytes" or a tokenizer directory */
    int vocab_size;
    int eot; /* -1: none (bytes) */
    char vocab_sha256[TS_SHA256_HEX];
    int64_t train_tokens, val_tokens;
    int num_train_shards;
    int num_sources;
    struct ts_data_source *sources; /* owned */
    int num_shards;                 /* listed shards; 0 for a version 1 manifest */
    struct ts_data_shard *shards;   /* owned, in training order */
    char val_split[256];            /* how val was chosen, in words ("" in version 1) */
};

void ts_data_manifest_init(struct ts_data_manifest *m);
void ts_data_manifest_deinit(struct ts_data_manifest *m); /* frees sources */

/* Appends a source (path copied). */
ts_status ts_data_manifest_add_source(struct ts_data_manifest *m, const char *path, int64_t bytes,
                                      const char *sha256) TS_MUST_CHECK;

/* Appends a train shard (name copied). */
ts_status ts_data_manifest_add_shard(struct ts_data_manifest *m, const char *name,
                                     int64_t tokens) TS_MUST_CHECK;
/* Writes path atomically (a temporary file renamed into place). */
ts_status ts_data_manifest_write(const struct ts_data_manifest *m, const char *path) TS_MUST_CHECK;

/* Reads and checks a manifest into an initialised m (deinit'ed first). */
ts_status ts_data_manifest_read(struct ts_data_manifest *m, const char *path) TS_MUST_CHECK;

/* The manifest path for shards named by a path or glob (its directory + "/manifest.json"), or by
 * a directory (DIR/manifest.json);
 * *found says whether that file exists. */
ts_status ts_data_manifest_find(const char *pattern, char *out, size_t len,
                                bool *found) TS_MUST_CHECK;

/* What `--data` names, as a glob for the loader: a directory prepared by `tessera prepare` becomes
 * DIR/train_*.bin (its manifest.json must exist), a path or glob stays itself. When a version 2
 * manifest lies beside the files, they are checked against it: a matched train shard it does not
 * list (a stale shard of an earlier prepare), one whose size differs from its token count, or
 * (for a directory or DIR/train_*.bin) a listed shard that is missing is TS_ERR_INVALID_ARG
 * naming the file and the difference; val.bin is checked against val_tokens. */
ts_status ts_data_resolve(const char *data, char *pattern, size_t len) TS_MUST_CHECK;
/* The same for data to evaluate on (`tessera eval --data`, `train --val-data`): a prepared
 * directory names its DIR/val.bin (an error when its manifest says it has no val tokens). */
ts_status ts_data_resolve_val(const char *data, char *pattern, size_t len) TS_MUST_CHECK;

/* The vocabulary size for shards named by `data` (a path or glob) from the manifest.json beside
 * them, when there is one. given: whether the user passed --vocab-size (*vocab_size holds it);
 * when not given the manifest's value replaces the default; when given it must be at least the
 * manifest's (exactly it when exact, e.g. a trained model in eval). */
ts_status ts_data_manifest_vocab(const char *data, bool given, bool exact,
                                 int *vocab_size) TS_MUST_CHECK;

#endif
