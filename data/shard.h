/* shard.h: token shards in llm.c's format, and a loader of fixed-length windows.
 *
 * A shard is a 256 x int32 header (magic 20240520, version 1, token count, the rest 0) followed
 * by that many uint16 token ids. Shards are mapped read-only; offsets are 64-bit. Opening a shard
 * checks the header, the file length and that every id is below the vocabulary size, so a bad
 * shard fails at open with a message naming the file, never mid-run.
 *
 * The loader cuts the shards (in path order, numbers by value: ts_shard_name_cmp) into windows of
 * T+1 tokens: window w of a shard starts at token w*T (inputs are tokens [0,T), targets [1,T+1)).
 * Windows never span two shards. Its position is the count of windows consumed, a small state a
 * resume restores.
 *
 * Order: global window index g (counted across epochs) lies in epoch e = g / n at index
 * i = g % n, where n is the windows of one epoch. In order, g reads window i. Shuffled
 * (ts_loader_set_shuffle), g reads window perm(seed, e, i): a keyed bijection of [0, n) (a
 * Feistel network on the next even power of two, cycle-walked back into range), so the order
 * is a pure function of (seed, epoch, g), different each epoch, and costs O(1) memory. A
 * data-parallel trainer reads a step's global windows [p, p + global batch) by index
 * (ts_loader_read), rank r taking its contiguous part of each micro-step. */
#ifndef TS_SHARD_H
#define TS_SHARD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "kernels/status.h"

#define TS_SHARD_MAGIC 20240520
#define TS_SHARD_VERSION 1
#define TS_SHARD_HEADER_INTS 256

struct ts_shard {
    char path[4096];
    int fd;
    void *map; /* the whole file */
    uint64_t map_bytes;
    const uint16_t *tokens;
    int64_t num_tokens;
};

/* Opens and validates one shard; tokens must be < vocab_size. */
ts_status ts_shard_open(struct ts_shard *s, const char *path, int vocab_size) TS_MUST_CHECK;
void ts_shard_close(struct ts_shard *s);

/* Writes a shard (used by tests and tools); ids must fit in uint16. */
ts_status ts_shard_write(const char *path, const uint16_t *tokens, int64_t n) TS_MUST_CHECK;

/* The order the loader (and lineage) takes shard paths in: by name with runs of digits compared
 * as numbers, so train_999.bin < train_1000.bin (glob's own order would put train_1000.bin
 * before train_101.bin). ts_shard_sort_paths sorts an array of paths in place. */
int ts_shard_name_cmp(const char *a, const char *b);
void ts_shard_sort_paths(char **paths, size_t n);

typedef struct ts_loader ts_loader_t;

/* `pattern` is a path or a glob ('shards/train_*.bin'); matching files are sorted by
 * ts_shard_name_cmp.
 * Windows are T+1 tokens; a shard shorter than T+1 tokens is an error naming it. */
ts_status ts_loader_create(ts_loader_t **out, const char *pattern, int T,
                           int vocab_size) TS_MUST_CHECK;
void ts_loader_destroy(ts_loader_t *l);

int ts_loader_num_shards(const ts_loader_t *l);
int ts_loader_seq_len(const ts_loader_t *l);         /* T */
int64_t ts_loader_num_windows(const ts_loader_t *l); /* per epoch */
int64_t ts_loader_num_tokens(const ts_loader_t *l);

/* Shuffle each epoch with this seed (on), or read in file order (off, the default). */
void ts_loader_set_shuffle(ts_loader_t *l, bool on, uint64_t seed);

/* The window (index within an epoch, file order) that global window index g reads; for a
 * mixture, the window in the concatenation of its sources. */
int64_t ts_loader_window_at(const ts_loader_t *l, int64_t g);

/* Fills inputs and targets (B*T int32 each) with the next B windows in the loader's order,
 * crossing into the next epoch after the last; the position advances by B. */
ts_status ts_loader_next(ts_loader_t *l, int B, int32_t *inputs, int32_t *targets) TS_MUST_CHECK;

/* Fills inputs and targets with global windows [first, first + B) in the loader's order, or in
 * file order when `in_order` (eval; a mixture's sources one after the other). Does not move the
 * position. A mixture counts its draws from the position (from 0 when first is before it). */
ts_status ts_loader_read(const ts_loader_t *l, int64_t first, int B, bool in_order, int32_t *inputs,
                         int32_t *targets) TS_MUST_CHECK;

/* Position = windows consumed since the start (across epochs). A mixture's seek counts the
 * draws between its position and the new one (from 0 when seeking back). */
int64_t ts_loader_position(const ts_loader_t *l);
void ts_loader_seek(ts_loader_t *l, int64_t windows_consumed);

/* ---- mixtures ----
 *
 * A mixture loader reads several datasets with weights. Global window g is drawn from source
 * s = ts_loader_source_at(l, g): 53 bits of a hash of (seed, g) against the cumulative
 * normalised weights, so the source of every sequence is a pure function of (seed, g), i.e. of
 * (seed, step, position in the global batch), the same on any data-parallel layout. Source s
 * then reads its own next window: the k-th draw of s reads what global index k would read from
 * s alone (its own epochs and shuffle), so every source goes through its windows once per
 * epoch of its own, a small source repeating sooner. The loader's state is its position and
 * the count of draws each source has had before it (ts_loader_source_counts), which a
 * checkpoint keeps so a resume does not recount; recounting from 0 gives the same counts. */
#define TS_LOADER_MAX_SOURCES 16

/* n (2..TS_LOADER_MAX_SOURCES) plain loaders over patterns with weights > 0 (any scale). */
ts_status ts_loader_create_mix(ts_loader_t **out, const char *const *patterns,
                               const double *weights, int n, int T, int vocab_size) TS_MUST_CHECK;
int ts_loader_num_sources(const ts_loader_t *l);                  /* 1 for a plain loader */
const ts_loader_t *ts_loader_source(const ts_loader_t *l, int i); /* l itself when plain */
double ts_loader_source_weight(const ts_loader_t *l, int i);      /* normalised, sum 1 */
int ts_loader_source_at(const ts_loader_t *l, int64_t g);         /* 0 when plain */
/* The windows each source gave before the position (ts_loader_num_sources entries). */
void ts_loader_source_counts(const ts_loader_t *l, int64_t *counts);
/* Restores a position with its per-source counts (they must sum to it). */
ts_status ts_loader_seek_counts(ts_loader_t *l, int64_t position, const int64_t *counts,
                                int n) TS_MUST_CHECK;

#endif
