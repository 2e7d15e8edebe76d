/* common.h: helpers shared by the trainer tests (backend, tiny configs, temp dirs, tokens). */
#ifndef TS_TEST_TRAINER_COMMON_H
#define TS_TEST_TRAINER_COMMON_H

#include <stddef.h>
#include <stdint.h>

#include "kernels/cpu/cpu_backend.h"
#include "trainer/gpt.h"

/* A CPU backend with `threads` OpenMP threads (1 keeps parallel Criterion workers apart);
 * fails the test on error. */
struct ts_backend *test_backend(int threads);

/* V=300 (Vp=384), maxT=32, L=2, NH=4, C=64. */
struct ts_gpt_config test_tiny_config(void);

/* A fresh directory under /tmp; the caller frees the string after test_rmdir. */
char *test_mkdtemp(void);
void test_rmdir(char *dir); /* removes it recursively, frees dir */

/* dir + "/" + name into a static-free heap string. */
char *test_path(const char *dir, const char *name);

/* n ids in [0, vocab) from a fixed LCG seeded by seed. */
void test_random_tokens(uint16_t *out, int64_t n, int vocab, uint64_t seed);

/* ||a - b|| / ||b|| in double; when ||b|| == 0 returns ||a||. */
double test_rel_err(const float *a, const double *b, int64_t n);

#endif
