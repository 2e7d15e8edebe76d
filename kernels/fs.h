/* fs.h: file-system helpers every module shares (directories for runs, checkpoints, tokenizers;
 * whole text files for the data path and the CLI) and the one path limit with a checked join.
 *
 * Kept in kernels/, the bottom of the dependency order, so checkpoint/, trainer/ and launch/ use
 * one implementation with one error message. A path that does not fit is an error naming it,
 * never a silently shorter path (which would name another file). */
#ifndef TS_FS_H
#define TS_FS_H

#include <stddef.h>
#include <stdint.h>

#include "kernels/status.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Bytes of a path buffer, its terminating NUL included (Linux's PATH_MAX): every path buffer
 * and every path field of a file format is this size. */
#define TS_PATH_MAX 4096

/* out = a + "/" + b (no second '/' when a ends with one; just b when a is ""). Fails with
 * TS_ERR_INVALID_ARG naming the path (its start and end) when it needs more than cap bytes,
 * leaving out = "" so a cut path is never used. out may not overlap a or b. */
ts_status ts_path_join(char *out, size_t cap, const char *a, const char *b) TS_MUST_CHECK;

/* out = printf(fmt, ...), checked like ts_path_join: "%s/step_%08d", "%s.tmp-%d". out may not
 * be one of the arguments. */
ts_status ts_path_fmt(char *out, size_t cap, const char *fmt, ...) TS_PRINTF(3, 4) TS_MUST_CHECK;

/* mkdir -p: creates path and its missing parents (mode 0777 less the umask). Fails with
 * TS_ERR_IO naming the component that could not be made, or when path exists and is not a
 * directory. */
ts_status ts_fs_mkdirs(const char *path) TS_MUST_CHECK;

/* Reads a whole file ("-" is stdin) into a malloc'ed buffer (NUL-terminated, not counted) that
 * the caller frees. On error *data is NULL and *n is 0. */
ts_status ts_fs_read_file(const char *path, uint8_t **data, size_t *n) TS_MUST_CHECK;

/* Opens path read-only for random access: only a regular file is accepted. A FIFO, device or
 * directory fails at once with TS_ERR_IO naming it (the open does not block on a FIFO), so a
 * reader that seeks, maps or reads a file twice never waits forever. *fd (close it) and *size
 * (bytes) are set on success; on error *fd is -1. */
ts_status ts_fs_open_regular(const char *path, int *fd, int64_t *size) TS_MUST_CHECK;

/* The same check for a reader that opens the file itself (HDF5): path must name a regular
 * file (after symlinks); *size (may be NULL) gets its bytes. */
ts_status ts_fs_check_regular(const char *path, int64_t *size) TS_MUST_CHECK;

/* ts_fs_read_file for a file read whole at random (tokenizer files): regular files only, and
 * at most max_bytes, refused from the file's size before anything is allocated. */
ts_status ts_fs_read_regular_file(const char *path, int64_t max_bytes, uint8_t **data,
                                  size_t *n) TS_MUST_CHECK;

#ifdef __cplusplus
}
#endif

#endif
