/* fs.h: file-system helpers every module shares (directories for runs, checkpoints, tokenizers;
 * whole text files for the data path and the CLI).
 *
 * Kept in kernels/, the bottom of the dependency order, so checkpoint/, trainer/ and launch/ use
 * one implementation with one error message. */
#ifndef TS_FS_H
#define TS_FS_H

#include <stddef.h>
#include <stdint.h>

#include "kernels/status.h"

/* mkdir -p: creates path and its missing parents (mode 0777 less the umask). Fails with
 * TS_ERR_IO naming the component that could not be made, or when path exists and is not a
 * directory. */
ts_status ts_fs_mkdirs(const char *path) TS_MUST_CHECK;

/* Reads a whole file ("-" is stdin) into a malloc'ed buffer (NUL-terminated, not counted) that
 * the caller frees. On error *data is NULL and *n is 0. */
ts_status ts_fs_read_file(const char *path, uint8_t **data, size_t *n) TS_MUST_CHECK;

#endif
