/* cli_util.c: helpers for tests that drive the tessera binary (cli_util.h). */
#include "cli_util.h"

#include <criterion/criterion.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "data/shard.h"

static void slurp(const char *path, char *buf, size_t len) {
    buf[0] = '\0';
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return;
    size_t n = fread(buf, 1, len - 1, f);
    buf[n] = '\0';
    fclose(f);
}

void cli_run(struct cli_result *r, const char *fmt, ...) {
    const char *build = getenv("TS_BUILD_DIR");
    cr_assert_not_null(build, "TS_BUILD_DIR is not set (run the tests through meson)");
    char args[8192], dir[256], cmd[16384], outp[300], errp[300];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(args, sizeof(args), fmt, ap);
    va_end(ap);
    cli_tmpdir(dir, sizeof(dir));
    snprintf(outp, sizeof(outp), "%s/out", dir);
    snprintf(errp, sizeof(errp), "%s/err", dir);
    snprintf(cmd, sizeof(cmd), "%s/launch/tessera %s >%s 2>%s", build, args, outp, errp);
    int status = system(cmd);
    r->code = (status != -1 && WIFEXITED(status)) ? WEXITSTATUS(status) : -1;
    slurp(outp, r->out, sizeof(r->out));
    slurp(errp, r->err, sizeof(r->err));
    cli_rmdir(dir);
}

void cli_tmpdir(char *out, unsigned long len) {
    snprintf(out, len, "/tmp/tessera-test-XXXXXX");
    cr_assert_not_null(mkdtemp(out), "mkdtemp failed");
}

void cli_rmdir(const char *dir) {
    char cmd[600];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    if (system(cmd) != 0)
        cr_log_warn("could not remove %s", dir);
}

void cli_write_pattern_shard(const char *path, int64_t n, int vocab, unsigned seed) {
    uint16_t *tok = malloc((size_t)n * sizeof(uint16_t));
    cr_assert_not_null(tok);
    /* a few short "words" of a small alphabet, chosen by a linear congruential generator */
    uint32_t state = seed * 2654435761u + 1u;
    int64_t i = 0;
    while (i < n) {
        state = state * 1664525u + 1013904223u;
        int word = (int)(state >> 28) % 8;
        for (int k = 0; k < 4 && i < n; k++)
            tok[i++] = (uint16_t)((word * 7 + k * 3) % vocab);
    }
    cr_assert_eq(ts_shard_write(path, tok, n), TS_OK, "%s", ts_last_error());
    free(tok);
}

int cli_count_lines(const char *path, const char *needle) {
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return -1;
    char line[4096];
    int count = 0;
    while (fgets(line, sizeof(line), f) != NULL)
        if (strstr(line, needle) != NULL)
            count++;
    fclose(f);
    return count;
}
