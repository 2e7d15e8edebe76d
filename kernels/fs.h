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

#ifdef __cplusplus
}
#endif

#endif
