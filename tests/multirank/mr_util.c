/* mr_util.c: what the multirank suites share: running a shell command (mpirun, srun, sbatch)
 * with Open MPI's settings for root and capturing its output, the build directory, a fixture run
 * directory with one training shard, and reading metrics.jsonl. */
#include "mr_util.h"

#include <criterion/criterion.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>

#include "cli_util.h"

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* Runs a shell command with Open MPI's root/transport settings, capturing its output. */
void sh_run(struct run_result *r, const char *fmt, ...) {
    setenv("OMPI_ALLOW_RUN_AS_ROOT", "1", 1);
    setenv("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1", 1);
    setenv("OMPI_MCA_pml", "ob1", 1);
    setenv("OMPI_MCA_btl", "self,vader", 1);
    char cmd[8192], dir[256], path[300], full[9000];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cmd, sizeof(cmd), fmt, ap);
    va_end(ap);
    cli_tmpdir(dir, sizeof(dir));
    snprintf(path, sizeof(path), "%s/out", dir);
    /* A hard ceiling so a hang fails the test instead of the suite's timeout. */
    snprintf(full, sizeof(full), "timeout -k 5 120 %s >%s 2>&1", cmd, path);
    const double t0 = now_s();
    const int status = system(full);
    r->seconds = now_s() - t0;
    r->code = (status != -1 && WIFEXITED(status)) ? WEXITSTATUS(status) : -1;
    r->out[0] = '\0';
    FILE *f = fopen(path, "r");
    if (f != NULL) {
        size_t n = fread(r->out, 1, sizeof(r->out) - 1, f);
        r->out[n] = '\0';
        fclose(f);
    }
    cli_rmdir(dir);
}

const char *build_dir(void) {
    const char *b = getenv("TS_BUILD_DIR");
    cr_assert_not_null(b, "TS_BUILD_DIR is not set (run the tests through meson)");
    return b;
}

void fixture_make(struct fixture *fx) {
    cli_tmpdir(fx->dir, sizeof(fx->dir));
    snprintf(fx->data, sizeof(fx->data), "%s/train_000.bin", fx->dir);
    cli_write_pattern_shard(fx->data, 40000, 64, 11);
}

/* The values of `key` ("\"loss\":") in metrics.jsonl's step lines. */
int read_metric(const struct fixture *fx, const char *name, const char *key, double *v, int max) {
    char path[512], line[1024];
    snprintf(path, sizeof(path), "%s/%s/metrics.jsonl", fx->dir, name);
    FILE *f = fopen(path, "r");
    cr_assert_not_null(f, "no %s", path);
    int n = 0;
    while (n < max && fgets(line, sizeof(line), f) != NULL) {
        const char *p = strstr(line, key);
        if (p != NULL)
            v[n++] = strtod(p + strlen(key), NULL);
    }
    fclose(f);
    return n;
}
