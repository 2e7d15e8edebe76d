/* cpu_backend.h: the fp32 CPU backend, the oracle every other backend is checked against.
 *
 * Matmuls go through a BLAS loaded at run time (blas.h): OpenBLAS with the kernels chosen for
 * this CPU, or a plain reference matmul where no BLAS can be loaded (the GPU check binary runs
 * on machines without one). Everything else is C with OpenMP over one thread pool. */
#ifndef TS_CPU_BACKEND_H
#define TS_CPU_BACKEND_H

#include "kernels/backend.h"

enum ts_blas_choice {
    TS_BLAS_AUTO = 0,      /* OpenBLAS if it loads, else the reference matmul */
    TS_BLAS_OPENBLAS = 1,  /* OpenBLAS or fail */
    TS_BLAS_REFERENCE = 2, /* the built-in matmul (slow, dependency-free) */
};

struct ts_cpu_options {
    int threads;              /* 0: every core this process may use */
    enum ts_blas_choice blas; /* which matmul */
};

/* Creates the CPU backend; *out is NULL on failure. Destroy with ts_backend_destroy. */
ts_status ts_cpu_backend_create(struct ts_backend **out,
                                const struct ts_cpu_options *opt) TS_MUST_CHECK;

#endif
