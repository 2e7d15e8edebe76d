/* common.c: helpers shared by the trainer tests. */
#define _XOPEN_SOURCE 700
#include "common.h"

#include <criterion/criterion.h>
#include <ftw.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct ts_backend *test_backend(int threads) {
    struct ts_backend *be = NULL;
    struct ts_cpu_options opt = {.threads = threads, .blas = TS_BLAS_AUTO};
    ts_status st = ts_cpu_backend_create(&be, &opt);
    cr_assert_eq(st, TS_OK, "cpu backend: %s", ts_last_error());
    return be;
}

struct ts_gpt_config test_tiny_config(void) {
    return (struct ts_gpt_config){
        .max_seq_len = 32, .vocab_size = 300, .num_layers = 2, .num_heads = 4, .channels = 64};
}

char *test_mkdtemp(void) {
    char *dir = strdup("/tmp/ts_trainer_XXXXXX");
    cr_assert_not_null(dir);
    cr_assert_not_null(mkdtemp(dir), "mkdtemp failed");
    return dir;
}

static int rm_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw) {
    (void)sb;
    (void)flag;
    (void)ftw;
    return remove(path);
}

void test_rmdir(char *dir) {
    if (dir == NULL)
        return;
    nftw(dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
    free(dir);
}

char *test_path(const char *dir, const char *name) {
    size_t n = strlen(dir) + strlen(name) + 2;
    char *p = malloc(n);
    cr_assert_not_null(p);
    snprintf(p, n, "%s/%s", dir, name);
    return p;
}

void test_random_tokens(uint16_t *out, int64_t n, int vocab, uint64_t seed) {
    uint64_t s = seed * 6364136223846793005ULL + 1442695040888963407ULL;
    for (int64_t i = 0; i < n; i++) {
        s = s * 6364136223846793005ULL + 1442695040888963407ULL;
        out[i] = (uint16_t)((s >> 33) % (uint64_t)vocab);
    }
}

double test_rel_err(const float *a, const double *b, int64_t n) {
    double num = 0, den = 0;
    for (int64_t i = 0; i < n; i++) {
        const double d = (double)a[i] - b[i];
        num += d * d;
        den += b[i] * b[i];
    }
    return den > 0 ? sqrt(num / den) : sqrt(num);
}
