/* prepare_input.h: the inputs of `tessera prepare` as byte streams: plain files, standard input
 * ("-"), and gzip or zstd compressed either, recognised by their magic bytes (not the name),
 * decompressed as they are read so memory stays a few buffers whatever the input's size. The raw
 * bytes read (before decompression) are counted and hashed (sha256) for the manifest.
 *
 * Also the expansion of --input patterns: a pattern holding * ? or [ is a glob, sorted; a
 * pattern that matches nothing is an error naming it. */
#ifndef TS_DATA_PREPARE_INPUT_H
#define TS_DATA_PREPARE_INPUT_H

#include <stddef.h>
#include <stdint.h>

#include "kernels/status.h"

typedef struct ts_prep_input ts_prep_input_t;

enum ts_prep_codec { TS_PREP_PLAIN, TS_PREP_GZIP, TS_PREP_ZSTD };

/* Opens path ("-": standard input, not closed at destroy). The caller owns *out. */
ts_status ts_prep_input_open(ts_prep_input_t **out, const char *path) TS_MUST_CHECK;
void ts_prep_input_destroy(ts_prep_input_t *in);
/* Reads up to cap decompressed bytes into buf; *got == 0 only at the end of the input. A
 * corrupt or truncated compressed stream is TS_ERR_FORMAT naming the input. */
ts_status ts_prep_input_read(ts_prep_input_t *in, uint8_t *buf, size_t cap,
                             size_t *got) TS_MUST_CHECK;
enum ts_prep_codec ts_prep_input_codec(const ts_prep_input_t *in);
/* Raw bytes consumed so far, and the file's size (-1 for a pipe or standard input). */
int64_t ts_prep_input_raw_bytes(const ts_prep_input_t *in);
int64_t ts_prep_input_raw_size(const ts_prep_input_t *in);
/* The sha256 (hex) of the raw bytes; valid once the input is read to its end. */
void ts_prep_input_sha256(ts_prep_input_t *in, char *hex);

/* Expands patterns[0..n) into *paths (malloc'ed array of malloc'ed strings, *npaths entries),
 * globs sorted, others (and "-") as given. Free with ts_prep_paths_free. */
ts_status ts_prep_expand_inputs(const char *const *patterns, int n, char ***paths,
                                int *npaths) TS_MUST_CHECK;
void ts_prep_paths_free(char **paths, int n);

#endif
