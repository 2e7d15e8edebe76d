/* helpers.h: what the kernel tests share: backends, random inputs, tensors over host arrays,
 * and the central-difference gradient check. */
#ifndef TS_TEST_KERNELS_HELPERS_H
#define TS_TEST_KERNELS_HELPERS_H

#include <stdint.h>

#include "kernels/cpu/cpu_backend.h"
#include "kernels/ops.h"

/* A CPU backend with the given matmul; fails the test if it cannot be created. */
struct ts_backend *th_backend(enum ts_blas_choice blas);
/* True when OpenBLAS can be loaded here (tests comparing it with the reference skip if not). */
bool th_have_openblas(void);

/* Uniform values in [-scale, scale), a pure function of seed. */
void th_rand(float *x, int64_t n, uint64_t seed, float scale);
float *th_alloc(int64_t n); /* zero-filled host floats, freed with free() */

/* The scalar objective a gradient check differentiates; evaluated in double around fp32 ops. */
typedef double (*th_objective)(void *ctx);

/* Central differences of f with respect to each x[i], step eps, into num[i]. */
void th_numgrad(th_objective f, void *ctx, float *x, int64_t n, float eps, double *num);

/* Asserts ||ana - num|| <= tol * max(||ana||, ||num||, floor) and names the gradient on failure. */
void th_check_grad(const char *name, const float *ana, const double *num, int64_t n, double tol);

/* sum(out * w) in double. */
double th_dot(const float *out, const float *w, int64_t n);

#endif
