/* cli_util.h: runs the tessera binary from tests and captures what it printed. */
#ifndef TS_TEST_CLI_UTIL_H
#define TS_TEST_CLI_UTIL_H

#include <stdint.h>

struct cli_result {
    int code;        /* exit status, or -1 when it did not exit normally */
    char out[65536]; /* stdout (truncated) */
    char err[65536]; /* stderr (truncated) */
};

/* Runs "<build>/launch/tessera <args>" through the shell; args is appended verbatim. */
void cli_run(struct cli_result *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* A fresh directory under /tmp; the caller removes it with cli_rmdir. */
void cli_tmpdir(char *out, unsigned long len);
void cli_rmdir(const char *dir);

/* Writes a shard of n tokens drawn from a small repeating pattern (learnable) below vocab. */
void cli_write_pattern_shard(const char *path, int64_t n, int vocab, unsigned seed);

/* Counts lines of path containing needle. */
int cli_count_lines(const char *path, const char *needle);

#endif
