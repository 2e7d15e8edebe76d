/* mr_util.h: helpers the multirank suites share (mr_util.c). */
#ifndef TS_TEST_MR_UTIL_H
#define TS_TEST_MR_UTIL_H

struct run_result {
    int code;
    double seconds;
    char out[65536]; /* stdout and stderr together */
};

/* A run directory with one training shard (vocab 64). */
struct fixture {
    char dir[256];
    char data[320];
};

/* Runs a shell command (at most 120 s) with Open MPI's root/transport settings, capturing its
 * output. */
void sh_run(struct run_result *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
const char *build_dir(void);
void fixture_make(struct fixture *fx);
/* The values of `key` ("\"loss\":") in metrics.jsonl's lines of run `name`, at most max. */
int read_metric(const struct fixture *fx, const char *name, const char *key, double *v, int max);

#endif
