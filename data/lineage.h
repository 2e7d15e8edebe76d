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
#include <stdint.h>

#include "checkpoint/ckpt.h"
#include "kernels/status.h"

/* The data files of a run, in the loader's order, each with its size, modification time and
 * "crc32c:<hex>" of its contents. Hashing reads at most 4 GiB per start (files past it are
 * recorded "unhashed"). With what a checkpoint recorded (rec, nrec; NULL, 0 for none), a file
 * whose path, size and modification time equal a recorded one's (with a known mtime and a hash)
 * takes that hash without being read: the trade-off is that a file rewritten to the same size
 * with its mtime set back (touch -d) is not noticed. hashed/reused count the two kinds. */
struct ts_data_files {
    struct ts_ckpt_data_file *files; /* malloc'ed, n of cap */
    int n, cap;
    int hashed, reused;
    uint64_t hashed_bytes;
};

/* Appends one file. */
ts_status ts_data_files_add(struct ts_data_files *fs, const char *path,
                            const struct ts_ckpt_data_file *rec, int nrec) TS_MUST_CHECK;
/* Appends the files a --data pattern matches (ts_shard_name_cmp order, as the loader reads). */
ts_status ts_data_files_add_glob(struct ts_data_files *fs, const char *pattern,
                                 const struct ts_ckpt_data_file *rec, int nrec) TS_MUST_CHECK;
void ts_data_files_deinit(struct ts_data_files *fs);

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
