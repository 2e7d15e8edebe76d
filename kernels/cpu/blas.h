/* blas.h: row-major sgemm from a BLAS chosen at run time.
 *
 * Debian's OpenBLAS 0.3.21 does not recognise recent Intel CPUs and falls back to SSE3 kernels
 * (5-8x slower); it reads OPENBLAS_CORETYPE once, when the library loads. Loading it with dlopen
 * lets Tessera pick the kernels from the CPU's features before that happens (unless the user set
 * OPENBLAS_CORETYPE), prefer the OpenMP build so that BLAS and our OpenMP loops share one thread
 * pool, and fall back to a reference matmul in binaries that must not depend on a BLAS. */
#ifndef TS_BLAS_H
#define TS_BLAS_H

#include <stdbool.h>

#include "kernels/cpu/cpu_backend.h"

struct ts_blas {
    bool is_reference;
    char description[160]; /* "OpenBLAS 0.3.21 (SkylakeX kernels, openmp)" or "reference" */
    void *handle;          /* dlopen handle, NULL for the reference */
    void (*sgemm)(const struct ts_blas *blas, bool trans_a, bool trans_b, int m, int n, int k,
                  float alpha, const float *a, int lda, const float *b, int ldb, float beta,
                  float *c, int ldc);
    void *fn_sgemm; /* cblas_sgemm when loaded */
};

/* Row-major C (m,n) = alpha op(A) op(B) + beta C, where op(A) is (m,k), op(B) is (k,n). */
ts_status ts_blas_load(struct ts_blas *out, enum ts_blas_choice choice, int threads) TS_MUST_CHECK;
void ts_blas_unload(struct ts_blas *blas);

#endif
