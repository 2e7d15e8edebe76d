/* fuzz_util.c: scratch files and input cutting for the harnesses (fuzz_util.h). */
#include "fuzz_util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/log.h"

static char dir[512];

const char *fuzz_dir(void) {
    if (dir[0] == '\0') {
        const char *tmp = getenv("TMPDIR");
        snprintf(dir, sizeof(dir), "%s/ts_fuzz_XXXXXX", tmp != NULL && tmp[0] ? tmp : "/tmp");
        if (mkdtemp(dir) == NULL) {
            perror("fuzz: mkdtemp");
            abort();
        }
        ts_log_set_level(TS_LOG_ERROR); /* readers' warnings would flood the run */
    }
    return dir;
}

void fuzz_path(char *out, size_t cap, const char *name) {
    snprintf(out, cap, "%s/%s", fuzz_dir(), name);
}

void fuzz_write(const char *name, const void *data, size_t n) {
    char path[1024];
    fuzz_path(path, sizeof(path), name);
    FILE *f = fopen(path, "wb");
    if (f == NULL || (n > 0 && fwrite(data, 1, n, f) != n) || fclose(f) != 0) {
        perror(path);
        abort();
    }
}

void fuzz_split(const uint8_t *data, size_t n, const char *sep, const uint8_t **a, size_t *an,
                const uint8_t **b, size_t *bn) {
    const size_t k = strlen(sep);
    *a = data;
    *an = n;
    *b = data + n;
    *bn = 0;
    for (size_t i = 0; i + k <= n; i++)
        if (memcmp(data + i, sep, k) == 0) {
            *an = i;
            *b = data + i + k;
            *bn = n - i - k;
            return;
        }
}

void fuzz_fail(const char *what) {
    fprintf(stderr, "fuzz: property failed: %s\n", what);
    abort();
}
