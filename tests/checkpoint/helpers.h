/* helpers.h: what the checkpoint tests share: temp dirs, a fixture table of tensors with
 * values that are a function of (step, tensor, element), and a communicator of forked
 * processes so multi-rank saves run for real without MPI. */
#ifndef TS_TEST_CKPT_HELPERS_H
#define TS_TEST_CKPT_HELPERS_H

#include <stdbool.h>

#include "checkpoint/ckpt.h"

char *ck_mkdtemp(void);
void ck_rmdir(char *dir); /* recursive, frees dir */

/* A fixture model: params/wte.weight (Vp=16 x C=8, exported as V=13 rows), params/wpe.weight
 * (6 x 8), params/h.0.attn.c_attn.weight (8 x 24), params/h.0.ln_1.bias (8), a 3-D and a 4-D
 * tensor, and adam_m/ and adam_v/ copies of each. */
#define FIX_MAX 32
struct fixture {
    int n;
    struct ts_ckpt_tensor t[FIX_MAX];
    float *full[FIX_MAX]; /* the full tensors */
    struct ts_ckpt_meta meta;
    struct ts_ckpt_data_file data[2];
};

/* Values of tensor i at step: full[i][e] = step * 1000 + i * 10 + e * 1e-3 (exact in float
 * for the sizes used). Each rank holds the flat range [rank * n / world, (rank+1) * n / world)
 * of every tensor as boxes; data points at a per-rank packed copy. */
void fix_build(struct fixture *f, int64_t step, int rank, int world);
void fix_free(struct fixture *f);
float fix_value(int64_t step, int tensor, int64_t e);

/* Saves the fixture at step from this process as rank `rank` of comm. */
ts_status fix_save(ts_comm_t *comm, const char *dir, int64_t step, int keep_last, char *path,
                   size_t len);

/* Starts saving the fixture at step on writer w (f is built here and must stay until the save
 * is no longer in flight; fix_free it then). */
ts_status fix_begin(ts_ckpt_writer_t *w, struct fixture *f, ts_comm_t *comm, const char *dir,
                    int64_t step, int keep_last);

/* Opens path and checks every tensor (full reads) and blob equals the fixture at its step;
 * returns false with a Criterion-free message in msg. */
bool fix_check(const char *path, char *msg, size_t len, int64_t *step);

/* Runs fn(comm, rank, arg) in `world` forked processes joined by a shared-memory communicator;
 * returns how many of them failed (fn returning non-zero, or dying). */
int fork_ranks(int world, int (*fn)(ts_comm_t *comm, int rank, void *arg), void *arg);

/* Runs a shell command, returns its exit status. */
int ck_sh(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

#endif
