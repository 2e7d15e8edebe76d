/* lineage.h: what a checkpoint records about the data a run trained on: the files a --data
 * pattern names, each with its size and content hash, and the data manifest beside them (which
 * names the tokenizer and every source text), so a checkpoint says what it was trained on.
 *
 * In its own library (ts_data_lineage): it fills checkpoint/'s records, and the rest of data/
 * (and the trainer above it) links no HDF5 or protobuf-c. */
#ifndef TS_DATA_LINEAGE_H
#define TS_DATA_LINEAGE_H

#include <stdbool.h>
#include <stddef.h>

#include "checkpoint/ckpt.h"
#include "kernels/status.h"

/* The files a --data pattern matches, in the loader's (sorted) order, each with its size and
 * "crc32c:<hex>" of its contents (read once, at start; files past 4 GiB in total are recorded
 * with their size only, hash "unhashed"). *files is malloc'ed. */
ts_status ts_data_files(const char *pattern, struct ts_ckpt_data_file **files,
                        int *n) TS_MUST_CHECK;

/* The data manifest beside the --data shards (manifest.json from `tessera prepare`: tokenizer,
 * vocabulary hash, sources and their sha256) and "sha256:<hex>" of the file, for lineage; both
 * "" when there is none. */
ts_status ts_data_lineage(const char *pattern, char *path, size_t path_len, char *hash,
                          size_t hash_len) TS_MUST_CHECK;

/* Compares the data a checkpoint recorded (rec) with the data now (now, from ts_data_files):
 * the same files in the same order, sizes and hashes ("unhashed" on either side matches any
 * hash). *same says whether they agree; otherwise diff holds the first difference in words
 * ("train_001.bin: crc32c:... then, crc32c:... now"). */
void ts_data_compare(const struct ts_ckpt_data_file *rec, int nrec,
                     const struct ts_ckpt_data_file *now, int nnow, bool *same, char *diff,
                     size_t len);

#endif
