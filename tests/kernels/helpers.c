/* helpers.c: shared test helpers (see helpers.h). */
#include "tests/kernels/helpers.h"

#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>

#include "kernels/rng.h"

struct ts_backend *th_backend(enum ts_blas_choice blas) {
    struct ts_cpu_options opt = {.threads = 0, .blas = blas};
    struct ts_backend *be = NULL;
    ts_status st = ts_cpu_backend_create(&be, &opt);
    cr_assert_eq(st, TS_OK, "cpu backend: %s", ts_last_error());
    return be;
}

bool th_have_openblas(void) {
    struct ts_cpu_options opt = {.threads = 0, .blas = TS_BLAS_OPENBLAS};
    struct ts_backend *be = NULL;
    if (ts_cpu_backend_create(&be, &opt) != TS_OK)
        return false;
    ts_backend_destroy(be);
    return true;
}

void th_rand(float *x, int64_t n, uint64_t seed, float scale) {
    for (int64_t i = 0; i < n; i++)
        x[i] = scale * (2.0f * ts_rng_uniform(seed, (uint64_t)i) - 1.0f);
}

float *th_alloc(int64_t n) {
    float *p = calloc((size_t)n, sizeof(float));
    cr_assert_not_null(p);
    return p;
}

void th_numgrad(th_objective f, void *ctx, float *x, int64_t n, float eps, double *num) {
    for (int64_t i = 0; i < n; i++) {
        float orig = x[i];
        x[i] = orig + eps;
        double up = f(ctx);
        float h_up = x[i] - orig; /* the step fp32 actually took */
        x[i] = orig - eps;
        double down = f(ctx);
        float h_down = orig - x[i];
        x[i] = orig;
        num[i] = (up - down) / ((double)h_up + (double)h_down);
    }
}

void th_check_grad(const char *name, const float *ana, const double *num, int64_t n, double tol) {
    double diff = 0.0, na = 0.0, nn = 0.0;
    int64_t worst = 0;
    double worst_d = -1.0;
    for (int64_t i = 0; i < n; i++) {
        double d = (double)ana[i] - num[i];
        diff += d * d;
        na += (double)ana[i] * ana[i];
        nn += num[i] * num[i];
        if (fabs(d) > worst_d) {
            worst_d = fabs(d);
            worst = i;
        }
    }
    double scale = fmax(fmax(sqrt(na), sqrt(nn)), 1e-6);
    double rel = sqrt(diff) / scale;
    cr_assert(rel <= tol,
              "%s: relative gradient error %.3g > %.3g (worst at %lld: analytic %.6g, numeric "
              "%.6g)",
              name, rel, tol, (long long)worst, (double)ana[worst], num[worst]);
}

double th_dot(const float *out, const float *w, int64_t n) {
    double s = 0.0;
    for (int64_t i = 0; i < n; i++)
        s += (double)out[i] * (double)w[i];
    return s;
}
