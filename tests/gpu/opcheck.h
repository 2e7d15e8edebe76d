/* opcheck.h: every backend op checked against the CPU backend, and the model checks, as a
 * library: the Criterion `cuda` suite and tessera-gpucheck both call it.
 *
 * An op check draws fresh random inputs (a pure function of the seed), rounds them to bf16 when
 * checking bf16 so both backends see the same values, poisons every output the op overwrites
 * with NaN (an unwritten element then fails), starts every "+=" output from the same random
 * values on both backends, runs the op on both, and compares each output by
 * ||dev - ref|| / ||ref|| and the count of non-finite elements the reference does not have. */
#ifndef TS_OPCHECK_H
#define TS_OPCHECK_H

#include <stdbool.h>
#include <stdint.h>

#include "kernels/backend.h"

struct ts_opcheck_result {
    char op[32];
    char dtype[8];
    char shape[48];  /* the case's dims, e.g. "B2 T13 C24 NH3 Vp64" */
    char output[16]; /* the worst output tensor */
    double rel_l2;   /* worst over the op's outputs */
    double max_abs;
    double tol;
    int64_t bad; /* non-finite where the reference is finite, or the reverse */
    bool pass;
};

typedef void (*ts_opcheck_report_fn)(const struct ts_opcheck_result *r, void *user);

/* Runs every op whose name contains `filter` (NULL: all) in dtype dt (f32 or bf16) on every
 * shape (small: the small shapes only), reporting each (op, shape) through report. *failures
 * counts failed checks. An error (not a failed comparison) returns its status. */
ts_status ts_opcheck_run(struct ts_backend *ref, struct ts_backend *dev, enum ts_dtype dt,
                         const char *filter, bool small, uint64_t seed, ts_opcheck_report_fn report,
                         void *user, int *failures) TS_MUST_CHECK;

/* Trains a small GPT (2 layers, C 64, one head of 64: the flash kernels run) for `steps` AdamW
 * steps from the same weights and tokens on both backends; dev in dtype dt, ref in f32 (from the
 * same bf16-rounded weights when dt is bf16). dev runs twice to check it repeats bit for bit.
 * Losses go to ref_losses/dev_losses (steps each); *max_rel is the largest |dev - ref| / ref;
 * *deterministic whether the two dev runs agreed exactly. */
ts_status ts_modelcheck_train(struct ts_backend *ref, struct ts_backend *dev, enum ts_dtype dt,
                              int steps, uint64_t seed, float *ref_losses, float *dev_losses,
                              double *max_rel, bool *deterministic) TS_MUST_CHECK;

struct ts_bench_result {
    double ms_per_step; /* median */
    double tokens_per_s;
    double mfu; /* (6N + 12 L C T) tokens/s / peak; peak 989 TFLOP/s (H100/H200) */
    double flops_per_token;
    uint64_t peak_bytes;     /* device memory in use at its highest */
    double joules_per_token; /* < 0 without an energy counter */
    float last_loss;
};

/* Times training steps of a GPT (L, C, NH, T; vocab 50257) at micro-batch B on dev in dtype dt:
 * `warmup` untimed steps, then `steps` timed ones. */
ts_status ts_modelcheck_bench(struct ts_backend *dev, enum ts_dtype dt, int L, int C, int NH, int T,
                              int B, int warmup, int steps,
                              struct ts_bench_result *out) TS_MUST_CHECK;

/* ---- op timing ---- */

struct ts_optime_result {
    char op[32];
    char dtype[8];
    char shape[48];
    double ms;    /* one call, the mean of `reps` back to back between two events */
    double bytes; /* the least the op must move: inputs and outputs once, "+=" and in-out twice */
    double flops; /* matmuls and attention (full T x T, as in 6N + 12 L C T); 0 elsewhere */
};

typedef void (*ts_optime_report_fn)(const struct ts_optime_result *r, void *user);

/* Times every op case whose name contains `filter` (NULL: all; the flash pair where C/NH is 64
 * or 128) on dev in dtype dt at one shape (B, T, C, NH, vocabulary V padded to 128): each
 * tensor allocated on dev and filled (token ids drawn, the rest a constant), one untimed call,
 * then `reps` calls between two events. Values do not change these kernels' speed. */
ts_status ts_optime_run(struct ts_backend *dev, enum ts_dtype dt, int B, int T, int C, int NH,
                        int V, const char *filter, int reps, ts_optime_report_fn report,
                        void *user) TS_MUST_CHECK;

#endif
